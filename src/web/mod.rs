//! The web layer: routes per audience (`public`, `account` for anyone signed in, `submitter`, `officer`,
//! `analyst`, `auditor`, `admin`), request guards, view models, templates, headers, catchers. The only
//! layer that knows HTTP; everything it does with a submission goes through `workflow`, `auth` or `audit`.

// Shared by every audience: guards, forms, pages and views, errors, headers, uploads and downloads.
pub mod catchers;
pub mod deliver;
pub mod downloads;
pub mod error;
pub mod fairings;
pub mod forms;
pub mod guards;
pub mod health;
pub mod multipart;
pub mod pages;
// The sealed portal that answers until the custodians' shares unlock the keys (`shares` mode).
pub mod sealed;
pub mod security;
pub mod session;
pub mod step_up;
pub mod views;

// The audiences, each with its `routes()`.
pub mod account;
pub mod admin;
pub mod analyst;
pub mod auditor;
pub mod officer;
pub mod public;
pub mod submitter;

use rocket::{Build, Rocket};

/// Attaches every fairing, route and catcher: the one place the web surface is assembled.
pub fn mount(rocket: Rocket<Build>, public_origin: &str) -> Rocket<Build> {
    rocket
        .manage(guards::PublicOrigin(public_origin.to_string()))
        // An empty Shield replaces Rocket's default; fairings::SecurityHeaders sets the full set.
        .attach(rocket::shield::Shield::new())
        .attach(fairings::RequestLog)
        .attach(fairings::SecurityHeaders)
        .attach(fairings::HostCheck {
            public_origin: public_origin.to_string(),
        })
        .attach(fairings::OriginCheck)
        .attach(fairings::NulCheck)
        .attach(fairings::RedirectAsJson)
        .attach(pages::Templates::fairing())
        .attach(rocket::fairing::AdHoc::on_liftoff("blob sweep", |rocket| {
            Box::pin(async move {
                if let Some(state) = rocket.state::<crate::services::Services>() {
                    crate::workflow::blobs::spawn_periodic_sweep(state);
                    crate::workflow::notifications::spawn_periodic(state);
                    crate::workflow::unconfirmed_purge::spawn_periodic(state);
                    crate::audit::refusals::spawn_periodic_flush(state);
                }
            })
        }))
        .attach(rocket::fairing::AdHoc::on_shutdown(
            "mail under way",
            |rocket| {
                Box::pin(async move {
                    // A password-reset mail is handed off without being awaited (its request answers first): let it
                    // finish, for as long as Rocket lets a shutdown fairing run (`grace` + `mercy`).
                    if let Some(state) = rocket.state::<crate::services::Services>() {
                        let shutdown = &rocket.config().shutdown;
                        let wait = std::time::Duration::from_secs(u64::from(
                            shutdown.grace.saturating_add(shutdown.mercy),
                        ));
                        let mailer = state.mailer.clone();
                        let done = rocket::tokio::task::spawn_blocking(move || {
                            mailer.wait_for_detached(wait)
                        })
                        .await
                        .unwrap_or(false);
                        if !done {
                            tracing::warn!(
                                "shut down while a mail was still being sent (a password-reset link: the person can ask again)"
                            );
                        }
                    }
                })
            },
        ))
        .attach(rocket::fairing::AdHoc::on_shutdown(
            "folded refusals",
            |rocket| {
                Box::pin(async move {
                    if let Some(state) = rocket.state::<crate::services::Services>() {
                        crate::audit::refusals::flush_all(state).await;
                    }
                })
            },
        ))
        .mount("/", public::routes())
        .manage(health::LastCheck::default())
        .mount("/", health::routes())
        .mount("/", fairings::refusal_routes())
        .mount("/", account::routes())
        .mount("/", security::routes())
        .mount("/", session::routes())
        .mount("/", submitter::routes())
        .mount("/", officer::routes())
        .mount("/", analyst::routes())
        .mount("/audit", auditor::routes())
        .mount("/admin", admin::routes())
        .register("/", catchers::catchers())
}
