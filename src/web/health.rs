//! `GET /healthz`: is the database reachable and the key store usable. No secrets, no counts of content.

use rocket::http::Status;
use rocket::serde::json::{json, Value};
use rocket::State;

use crate::services::Services;

#[rocket::get("/healthz")]
async fn healthz(state: &State<Services>) -> (Status, Value) {
    let database = state
        .db
        .run(|c| Ok(crate::db::ping(c)))
        .await
        .unwrap_or(false);
    // The identity file and the audit signing key, in clear or sealed (`.age`) as the protection mode keeps them.
    let signing = state
        .settings
        .keys_dir
        .join(crate::key_store::AUDIT_SIGNING_FILE);
    let keys = state
        .keys
        .read()
        .map(|k| !k.current_key_id().is_empty() && k.path().exists())
        .unwrap_or(false)
        && (signing.exists() || signing.with_extension("key.age").exists());
    let blobs = state.settings.blob_dir().is_dir();
    let ok = database && keys && blobs;
    let status = if ok {
        Status::Ok
    } else {
        Status::ServiceUnavailable
    };
    let word = |b: bool| if b { "ok" } else { "unavailable" };
    (
        status,
        json!({
            "status": word(ok),
            "database": word(database),
            "backend": format!("{:?}", state.db.backend).to_lowercase(),
            "key_store": word(keys),
            "blob_store": word(blobs),
        }),
    )
}

pub fn routes() -> Vec<rocket::Route> {
    rocket::routes![healthz]
}
