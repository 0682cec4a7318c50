//! `/dashboard` sends each role to its own home page.

use rocket::response::Redirect;

use crate::models::account::Role;
use crate::web::guards::CurrentUser;

pub fn routes() -> Vec<rocket::Route> {
    rocket::routes![dashboard]
}

pub fn home_of(role: Role) -> &'static str {
    match role {
        Role::Submitter => "/submissions",
        Role::Officer => "/officer",
        Role::AuthorizedUser => "/analyst",
        Role::Auditor => "/audit",
        Role::Administrator => "/admin",
    }
}

#[rocket::get("/dashboard")]
fn dashboard(user: CurrentUser<'_>) -> Redirect {
    Redirect::to(home_of(user.role))
}
