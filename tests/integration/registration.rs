//! Self-registration: a new submitter with its new organisation, field errors and weak passwords, a taken
//! address answered like a new one, registration closed by an administrator, and the limits: per client address
//! (an IPv6 /64 counting as one address) and over all addresses.

use std::net::SocketAddr;

use crate::common::{TestApp, PASSWORD};
use diesel::prelude::*;
use rocket::http::Status;

use pcii_portal::db::schema::{audit_entries, organisations};
use pcii_portal::domain::Role;

fn addr(s: &str) -> SocketAddr {
    SocketAddr::new(s.parse().unwrap(), 40000)
}

fn register_fields(email: &str) -> [(&str, &str); 4] {
    [
        ("display_name", "Ann Operator"),
        ("organisation", "Acme Water"),
        ("email", email),
        ("password", PASSWORD),
    ]
}

fn organisation_count(app: &TestApp) -> i64 {
    app.with_conn(|c| organisations::table.count().get_result(c).unwrap())
}

/// Outcome and reason of every `account.register` entry, oldest first.
fn register_entries(app: &TestApp) -> Vec<(String, Option<String>)> {
    app.with_conn(|c| {
        audit_entries::table
            .filter(audit_entries::action.eq("account.register"))
            .order(audit_entries::seq.asc())
            .select((audit_entries::outcome, audit_entries::reason))
            .load(c)
            .unwrap()
    })
}

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

#[test]
fn addresses_in_one_ipv6_64_share_one_registration_allowance() {
    let app = TestApp::with(|f| f.merge(("registrations_per_hour", 2)));
    let mut visitor = app.browser();
    for (i, from) in ["2001:db8:1:2::1", "2001:db8:1:2:ffff:ffff:ffff:fffe"]
        .into_iter()
        .enumerate()
    {
        let res = visitor.post_from(
            "/register",
            &register_fields(&format!("v6-{i}@acme.example")),
            addr(from),
        );
        assert_eq!(res.status, Status::SeeOther, "registration {i} from {from}");
    }
    let before = organisation_count(&app);
    // A third address of the same /64 is the same network: refused, and no organisation made.
    let res = visitor.post_from(
        "/register",
        &register_fields("v6-2@acme.example"),
        addr("2001:db8:1:2:a:b:c:d"),
    );
    assert_eq!(res.status, Status::TooManyRequests, "{}", res.body);
    assert!(res
        .body
        .contains("Too many registrations from your network"));
    assert_eq!(organisation_count(&app), before);
    // The next /64 is another network.
    let res = visitor.post_from(
        "/register",
        &register_fields("v6-3@acme.example"),
        addr("2001:db8:1:3::1"),
    );
    assert_eq!(res.status, Status::SeeOther);
    // IPv4 addresses stay counted one by one (an IPv4-mapped IPv6 address too).
    for (i, from) in [
        "198.51.100.7",
        "198.51.100.7",
        "::ffff:198.51.100.8",
        "::ffff:198.51.100.9",
        "::ffff:198.51.100.10",
    ]
    .into_iter()
    .enumerate()
    {
        let res = visitor.post_from(
            "/register",
            &register_fields(&format!("v4-{i}@acme.example")),
            addr(from),
        );
        assert_eq!(res.status, Status::SeeOther, "registration {i} from {from}");
    }
    let entries = register_entries(&app);
    assert_eq!(
        entries
            .iter()
            .filter(|(o, r)| o == "refused" && r.as_deref() == Some("throttled"))
            .count(),
        1
    );
}

#[test]
fn registrations_over_all_addresses_are_capped_per_hour() {
    let app = TestApp::with(|f| {
        f.merge(("registrations_per_hour", 10))
            .merge(("registrations_per_hour_total", 3))
    });
    let mut visitor = app.browser();
    for i in 0..3 {
        let res = visitor.post_from(
            "/register",
            &register_fields(&format!("cap-{i}@acme.example")),
            addr(&format!("203.0.113.{}", i + 1)),
        );
        assert_eq!(res.status, Status::SeeOther, "registration {i}");
    }
    let before = organisation_count(&app);
    // A fresh address gets the same refusal as an address over its own limit, audited the same way.
    let res = visitor.post_from(
        "/register",
        &register_fields("cap-3@acme.example"),
        addr("203.0.113.200"),
    );
    assert_eq!(res.status, Status::TooManyRequests, "{}", res.body);
    assert!(res.body.contains("Too many registrations"), "{}", res.body);
    assert_eq!(organisation_count(&app), before);
    let entries = register_entries(&app);
    assert_eq!(
        entries.last(),
        Some(&("refused".to_string(), Some("throttled".to_string())))
    );
    // An hour later registrations open again.
    app.advance(3601);
    let res = visitor.post_from(
        "/register",
        &register_fields("cap-4@acme.example"),
        addr("203.0.113.201"),
    );
    assert_eq!(res.status, Status::SeeOther);
}

#[test]
fn the_default_overall_registration_cap_is_a_hundred_an_hour() {
    let app = TestApp::new();
    assert_eq!(app.state().settings.registrations_per_hour_total, 100);
}
