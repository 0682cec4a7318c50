//! The web layer: routes per audience, request guards, templates, headers, catchers.

pub mod account;
pub mod admin;
pub mod analyst;
pub mod audit;
pub mod catchers;
pub mod dashboard;
pub mod deliver;
pub mod downloads;
pub mod error;
pub mod fairings;
pub mod forms;
pub mod guards;
pub mod health;
pub mod multipart;
pub mod officer;
pub mod officer_organisations;
pub mod organisation;
pub mod pages;
pub mod public;
pub mod signin;
pub mod submissions;
pub mod views;

use rocket::{Build, Rocket};

/// Attaches every fairing, route and catcher: the one place the web surface is assembled.
pub fn mount(rocket: Rocket<Build>) -> Rocket<Build> {
    rocket
        // An empty Shield replaces Rocket's default; fairings::SecurityHeaders sets the full set.
        .attach(rocket::shield::Shield::new())
        .attach(fairings::RequestLog)
        .attach(fairings::SecurityHeaders)
        .attach(fairings::OriginCheck)
        .attach(pages::Templates::fairing())
        .mount("/", public::routes())
        .mount("/", signin::routes())
        .mount("/", account::routes())
        .mount("/", dashboard::routes())
        .mount("/", submissions::routes())
        .mount("/", officer::routes())
        .mount("/", officer_organisations::routes())
        .mount("/", organisation::routes())
        .mount("/", analyst::routes())
        .mount("/", health::routes())
        .mount("/admin", admin::routes())
        .mount("/audit", audit::routes())
        .register("/", catchers::catchers())
}
