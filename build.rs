// The migrations are embedded at compile time (`diesel_migrations::embed_migrations!` in src/db/mod.rs), which does
// not notice a new migration directory: rebuild the crate when anything under migrations/ changes.
fn main() {
    println!("cargo:rerun-if-changed=migrations");
}
