//! Submitters: their organisation's submissions — the form, receipts, downloads, withdrawal, the choice of
//! return or destruction — and, for the organisation's administrator, its membership.

pub mod home;
pub mod messages;
pub mod organisation;
pub mod submissions;

pub fn routes() -> Vec<rocket::Route> {
    let mut routes = home::routes();
    routes.extend(submissions::routes());
    routes.extend(organisation::routes());
    routes.extend(messages::routes());
    routes
}
