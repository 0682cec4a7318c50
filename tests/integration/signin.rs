//! Signing in: one answer for an unknown account, a wrong password and a disabled account; throttling per
//! account and per client address.

use crate::common::{self, TestApp, PASSWORD};
use rocket::http::Status;

use pcii_portal::domain::Role;

#[test]
fn unknown_user_and_wrong_password_get_the_same_answer() {
    let app = TestApp::new();
    app.create_user(Role::Submitter, "real@acme.example", Some("Acme"));
    let mut b = app.browser();
    let wrong = b.post(
        "/login",
        &[
            ("email", "real@acme.example"),
            ("password", "not the right password"),
        ],
    );
    let unknown = b.post(
        "/login",
        &[
            ("email", "ghost@acme.example"),
            ("password", "not the right password"),
        ],
    );
    assert_eq!(wrong.status, Status::Unauthorized);
    assert_eq!(unknown.status, wrong.status);
    let message = |p: &common::Page| {
        p.body
            .lines()
            .find(|l| l.contains("error-summary"))
            .map(str::to_string)
    };
    assert_eq!(message(&wrong), message(&unknown));
    assert!(message(&wrong).unwrap().contains("not correct"));
}

#[test]
fn disabled_account_answers_like_a_wrong_password() {
    let app = TestApp::new();
    let id = app.create_user(Role::Officer, "off@example.gov", None);
    app.with_conn(|c| {
        pcii_portal::auth::accounts::change_account(
            c,
            &app.state().audit,
            &pcii_portal::audit::log::Actor::cli(),
            &id,
            pcii_portal::auth::accounts::AccountChange::Disable {
                reason: "test".into(),
            },
        )
        .unwrap()
    });
    let mut b = app.browser();
    let res = b.post(
        "/login",
        &[("email", "off@example.gov"), ("password", PASSWORD)],
    );
    assert_eq!(res.status, Status::Unauthorized);
    assert!(res.body.contains("not correct"));
}

#[test]
fn login_is_throttled_per_account_and_another_account_is_unaffected() {
    let app = TestApp::new();
    app.create_user(Role::Submitter, "victim@acme.example", Some("Acme"));
    app.create_user(Role::Submitter, "other@acme.example", Some("Acme"));
    let mut b = app.browser();
    let max = app.state().settings.login_max_failures;
    for _ in 0..max {
        assert_eq!(
            b.login("victim@acme.example", "wrong password, again"),
            Status::Unauthorized
        );
    }
    // The next attempt is refused, even with the right password: the form again, with when to come back.
    let page = b.post(
        "/login",
        &[("email", "victim@acme.example"), ("password", PASSWORD)],
    );
    assert_eq!(page.status, Status::TooManyRequests);
    assert_eq!(page.header("Retry-After"), Some("60"));
    assert_eq!(app.audit_count("auth.login"), max + 1);
    // Another account, from the same address, still signs in.
    let mut other = app.browser();
    assert_eq!(
        other.login("other@acme.example", PASSWORD),
        Status::SeeOther
    );
}

#[test]
fn login_is_throttled_per_client_address() {
    let app = TestApp::with(|f| f.merge(("login_max_failures", 2)));
    app.create_user(Role::Submitter, "someone@acme.example", Some("Acme"));
    let mut b = app.browser();
    // Per-address allowance is four times the per-account one: spread over many accounts.
    for i in 0..8 {
        assert_eq!(
            b.login(&format!("guess{i}@acme.example"), "wrong password, again"),
            Status::Unauthorized
        );
    }
    assert_eq!(
        b.login("someone@acme.example", PASSWORD),
        Status::TooManyRequests
    );
}
