//! Self-registration: a new submitter with its new organisation, field errors and weak passwords, a taken
//! address answered like a new one, and registration closed by an administrator.

use crate::common::{TestApp, PASSWORD};
use rocket::http::Status;

use pcii_portal::domain::Role;

#[test]
fn registration_creates_a_submitter_with_its_organisation() {
    let app = TestApp::new();
    let mut b = app.browser();
    let res = b.post(
        "/register",
        &[
            ("display_name", "Sam Submitter"),
            ("organisation", "Acme Water"),
            ("email", "Sam@Acme.example"),
            ("password", PASSWORD),
        ],
    );
    assert_eq!(res.status, Status::SeeOther);
    assert_eq!(b.login("sam@acme.example", PASSWORD), Status::SeeOther);
    let account = b.get("/account");
    assert!(account.body.contains("Acme Water"));
    assert!(account.body.contains("Submitter"));
    // Its organisation's pages wait for the emailed confirmation.
    assert_eq!(b.get("/submissions").status, Status::Forbidden);
    let dashboard = b.get("/dashboard");
    assert_eq!(dashboard.header("Location"), Some("/verify-email"));
}

#[test]
fn registration_shows_field_errors_and_refuses_weak_passwords() {
    let app = TestApp::new();
    let mut b = app.browser();
    let res = b.post(
        "/register",
        &[
            ("display_name", ""),
            ("organisation", "Acme"),
            ("email", "nope"),
            ("password", "qwerty123456"),
        ],
    );
    assert_eq!(res.status, Status::UnprocessableEntity);
    assert!(res.body.contains("commonly used"));
    assert!(res.body.contains("Enter an email address"));
    let long = "x".repeat(300);
    let res = b.post(
        "/register",
        &[
            ("display_name", "A"),
            ("organisation", "Acme"),
            ("email", "a@b.example"),
            ("password", &long),
        ],
    );
    assert_eq!(res.status, Status::UnprocessableEntity);
    assert!(res.body.contains("at most 256 bytes"));
}

#[test]
fn duplicate_registration_answers_like_a_new_one() {
    let app = TestApp::new();
    app.create_user(Role::Submitter, "taken@acme.example", Some("Acme"));
    let mut b = app.browser();
    let res = b.post(
        "/register",
        &[
            ("display_name", "X"),
            ("organisation", "Other"),
            ("email", "taken@acme.example"),
            ("password", "a different long passphrase"),
        ],
    );
    assert_eq!(res.status, Status::SeeOther);
    assert_eq!(res.header("Location"), Some("/login"));
    // The existing account is untouched.
    assert_eq!(b.login("taken@acme.example", PASSWORD), Status::SeeOther);
}

#[test]
fn self_registration_can_be_closed_by_an_administrator() {
    let app = TestApp::new();
    let mut admin = app.login_as(Role::Administrator, "admin@example.gov", None);
    assert_eq!(
        admin
            .post("/admin/settings/registration", &[("open", "false")])
            .status,
        Status::SeeOther
    );
    let mut b = app.browser();
    let res = b.post(
        "/register",
        &[
            ("display_name", "X"),
            ("organisation", "Acme"),
            ("email", "x@acme.example"),
            ("password", PASSWORD),
        ],
    );
    assert_eq!(res.status, Status::Forbidden);
    assert!(res.body.contains("Self-registration is closed"));
}
