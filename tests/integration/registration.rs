//! Self-registration: a new submitter with its new organisation, field errors and weak passwords, a taken
//! address answered like a new one, registration closed by an administrator, and the limits: per client address
//! (an IPv6 /64 counting as one address) and over all addresses. Registrations never confirmed are removed after
//! `unconfirmed_account_days` — by the server's round (once across instances) or the operator's command — unless
//! anything else refers to them.

use std::net::SocketAddr;

use crate::common::{complete_fields, Part, TestApp, PASSWORD};
use diesel::prelude::*;
use rocket::http::Status;

use pcii_portal::audit::log::Actor;
use pcii_portal::auth::accounts::{self, AccountChange};
use pcii_portal::db::schema::{account_tokens, audit_entries, organisations, sessions};
use pcii_portal::domain::Role;
use pcii_portal::models::{account, lease};
use pcii_portal::workflow::blobs::lease_holder;
use pcii_portal::workflow::unconfirmed_purge;

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
    // Until its address is confirmed the account does not sign in: refused as a wrong password is, so that a
    // stranger who registers an address and signs in cannot tell whether it had an account already.
    let refused = b.post(
        "/login",
        &[("email", "sam@acme.example"), ("password", PASSWORD)],
    );
    assert_eq!(refused.status, Status::Unauthorized);
    assert!(refused
        .body
        .contains("The email or password is not correct."));
    let wrong = app.browser().post(
        "/login",
        &[
            ("email", "sam@acme.example"),
            ("password", "not the password at all"),
        ],
    );
    assert_eq!(wrong.status, refused.status);
    // The same page as a wrong password's, but for its form token and request id.
    let strip = |body: &str| -> String {
        body.lines()
            .filter(|l| !l.contains("name=\"csrf\"") && !l.to_lowercase().contains("request"))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert_eq!(strip(&wrong.body), strip(&refused.body));
    assert!(app
        .audit_reasons("auth.login")
        .contains(&"address not confirmed: no live confirmation link given".to_string()));
    // The mailed link's page signs in with the password chosen, and that confirms the address.
    let link = app
        .mailed_link("sam@acme.example", "/verify-email/")
        .expect("a confirmation link");
    let done = b.confirm_address(&link, "sam@acme.example", PASSWORD);
    assert_eq!(done.status, Status::SeeOther, "{}", done.body);
    let account = b.get("/account");
    assert!(account.body.contains("Acme Water"));
    assert!(account.body.contains("Submitter"));
    assert_eq!(b.get("/submissions").status, Status::Ok);
    assert_eq!(app.audit_count("account.verify_email"), 1);
    // Spent: the link's page says so, and the account now signs in as any other.
    assert_eq!(app.browser().get(&link).status, Status::Gone);
    assert_eq!(
        app.browser().login("sam@acme.example", PASSWORD),
        Status::SeeOther
    );
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

const DAY: i64 = 86_400;

/// Registers `email` with a new organisation named `organisation`.
fn register(app: &TestApp, email: &str, organisation: &str) {
    let res = app.browser().post(
        "/register",
        &[
            ("display_name", "Ann Operator"),
            ("organisation", organisation),
            ("email", email),
            ("password", PASSWORD),
        ],
    );
    assert_eq!(res.status, Status::SeeOther, "{}", res.body);
}

/// Opens a confirmation link and signs in on its page with the password chosen (the only way it confirms).
fn confirm_in_own_session(app: &TestApp, email: &str, link: &str) -> Status {
    app.browser().confirm_address(link, email, PASSWORD).status
}

/// (account id, organisation id) of the account with this address, if it exists.
fn registered(app: &TestApp, email: &str) -> Option<(String, String)> {
    app.with_conn(|c| account::find_by_email(c, email).unwrap())
        .map(|u| (u.id, u.organisation_id.expect("an organisation")))
}

fn organisation_exists(app: &TestApp, id: &str) -> bool {
    app.with_conn(|c| {
        organisations::table
            .find(id)
            .count()
            .get_result::<i64>(c)
            .unwrap()
            == 1
    })
}

/// (actor role, object id, reason) of every `account.purge_unconfirmed` entry, oldest first.
type PurgeEntry = (
    Option<String>,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// The purge entries' actor role, object, reason and client address, oldest first.
fn purge_entries(app: &TestApp) -> Vec<PurgeEntry> {
    app.with_conn(|c| {
        audit_entries::table
            .filter(audit_entries::action.eq("account.purge_unconfirmed"))
            .order(audit_entries::seq.asc())
            .select((
                audit_entries::actor_role,
                audit_entries::object_id,
                audit_entries::reason,
                audit_entries::client_addr,
            ))
            .load(c)
            .unwrap()
    })
}

fn assert_audit_verifies(app: &TestApp) {
    let out = app
        .command()
        .args(["audit", "verify", "--full"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

#[test]
fn an_unconfirmed_registration_is_removed_after_the_limit_and_its_address_can_register_again() {
    let app = TestApp::new();
    register(&app, "late@acme.example", "Acme Water");
    let (id, org) = registered(&app, "late@acme.example").unwrap();
    // Unconfirmed, it does not sign in (its confirmation link's page is the way in).
    let mut registrant = app.browser();
    assert_eq!(
        registrant.login("late@acme.example", PASSWORD),
        Status::Unauthorized
    );

    // A minute short of seven days: not yet.
    app.advance(7 * DAY - 60);
    assert!(app.housekeeping_round().unwrap().removed.is_empty());
    assert!(registered(&app, "late@acme.example").is_some());

    app.advance(61);
    let done = app.housekeeping_round().unwrap();
    assert_eq!(done.removed, vec![(id.clone(), org.clone())]);
    assert!(registered(&app, "late@acme.example").is_none());
    assert!(!organisation_exists(&app, &org));
    let (sessions_left, tokens_left): (i64, i64) = app.with_conn(|c| {
        (
            sessions::table
                .filter(sessions::user_id.eq(&id))
                .count()
                .get_result(c)
                .unwrap(),
            account_tokens::table
                .filter(account_tokens::user_id.eq(&id))
                .count()
                .get_result(c)
                .unwrap(),
        )
    });
    assert_eq!((sessions_left, tokens_left), (0, 0));

    // Audited as the portal itself, by ids: no address, name or organisation name.
    let entries = purge_entries(&app);
    assert_eq!(entries.len(), 1);
    let (actor, object, reason, _) = &entries[0];
    assert_eq!(actor.as_deref(), Some("system"));
    assert_eq!(object.as_deref(), Some(id.as_str()));
    let reason = reason.as_deref().unwrap();
    assert!(reason.contains(&org), "{reason}");
    for personal in ["late@acme.example", "Ann Operator", "Acme Water"] {
        assert!(!reason.contains(personal), "{reason}");
    }
    assert_audit_verifies(&app);

    // The address is free again: a new registration gets a confirmation link, not the "already registered" note.
    let before = app.outbox().len();
    register(&app, "late@acme.example", "Acme Water");
    let mails = app.outbox();
    assert_eq!(mails.len(), before + 1);
    let mail = mails.last().unwrap();
    assert!(mail.contains("late@acme.example"), "{mail}");
    assert!(mail.contains("/verify-email/"), "{mail}");
    assert!(!mail.contains("already has one"), "{mail}");
    let (new_id, _) = registered(&app, "late@acme.example").unwrap();
    assert_ne!(new_id, id);
    let link = app
        .mailed_link("late@acme.example", "/verify-email/")
        .unwrap();
    assert_eq!(
        confirm_in_own_session(&app, "late@acme.example", &link),
        Status::SeeOther
    );
}

#[test]
fn confirmed_young_disabled_and_accompanied_registrations_are_kept() {
    let app = TestApp::new();

    // Confirmed by its link.
    register(&app, "confirmed@a.example", "Confirmed Ltd");
    let link = app
        .mailed_link("confirmed@a.example", "/verify-email/")
        .unwrap();
    assert_eq!(
        confirm_in_own_session(&app, "confirmed@a.example", &link),
        Status::SeeOther
    );

    // A colleague attached to its organisation (by id, as the operator's `user add` does).
    register(&app, "accompanied@b.example", "Accompanied Ltd");
    app.create_user(
        Role::Submitter,
        "colleague@b.example",
        Some("Accompanied Ltd"),
    );

    // A draft of the organisation's, its author gone since.
    register(&app, "drafted@c.example", "Drafted Ltd");
    let mut drafter = app.login_as(Role::Submitter, "drafter@c.example", Some("Drafted Ltd"));
    let mut parts = complete_fields("draft text", "draft");
    parts.retain(|p| !matches!(p, Part::Text("express_statement", _)));
    let page = drafter.post_multipart("/submissions", &parts);
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let page = drafter.post("/account/leave-organisation", &[("confirm", "yes")]);
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);

    // Disabled by the operator.
    register(&app, "disabled@d.example", "Disabled Ltd");
    let (disabled_id, _) = registered(&app, "disabled@d.example").unwrap();
    app.with_conn(|c| {
        accounts::change_account(
            c,
            &app.state().audit,
            &Actor::cli(),
            &disabled_id,
            AccountChange::Disable {
                reason: "looks like a stranger's".into(),
            },
        )
        .unwrap()
    });

    // Nothing of the kind: removed, so the round did run.
    register(&app, "alone@e.example", "Alone Ltd");
    let alone = registered(&app, "alone@e.example").unwrap();

    // Five days before the round.
    app.advance(2 * DAY);
    register(&app, "young@f.example", "Young Ltd");

    app.advance(5 * DAY + 1);
    let done = app.housekeeping_round().unwrap();
    assert_eq!(done.removed, vec![alone]);
    assert_eq!(done.kept, 2, "the accompanied and the drafted ones");
    assert_eq!(done.failed, 0);
    for email in [
        "confirmed@a.example",
        "accompanied@b.example",
        "colleague@b.example",
        "drafted@c.example",
        "drafter@c.example",
        "disabled@d.example",
        "young@f.example",
    ] {
        let Some(u) = app.with_conn(|c| account::find_by_email(c, email).unwrap()) else {
            panic!("{email} was removed");
        };
        if let Some(org) = u.organisation_id {
            assert!(organisation_exists(&app, &org), "{email}'s organisation");
        }
    }
    assert_eq!(purge_entries(&app).len(), 1);

    // The young one goes once it is old enough.
    app.advance(2 * DAY);
    let (young, _) = registered(&app, "young@f.example").unwrap();
    let done = app.housekeeping_round().unwrap();
    assert_eq!(done.removed.len(), 1);
    assert_eq!(done.removed[0].0, young);
}

#[test]
fn the_operator_s_command_removes_them_too_and_its_dry_run_changes_nothing() {
    let app = TestApp::new();
    // The command reads the host's clock: the registration is made eight days back.
    app.advance(-8 * DAY);
    register(&app, "old@acme.example", "Old Ltd");
    app.advance(8 * DAY);
    register(&app, "new@acme.example", "New Ltd");
    let (old, org) = registered(&app, "old@acme.example").unwrap();

    let stdout = purge_command(&app, &["user", "purge-unconfirmed", "--dry-run"]);
    assert!(
        stdout.contains(&format!(
            "would remove account {old} with organisation {org}"
        )),
        "{stdout}"
    );
    assert!(
        stdout.contains("would remove 1 unconfirmed registration(s) older than 7 days; 0 kept"),
        "{stdout}"
    );
    assert!(registered(&app, "old@acme.example").is_some());
    assert!(organisation_exists(&app, &org));
    assert!(purge_entries(&app).is_empty());

    let stdout = purge_command(&app, &["user", "purge-unconfirmed"]);
    assert!(
        stdout.contains(&format!("removed account {old} with organisation {org}")),
        "{stdout}"
    );
    assert!(registered(&app, "old@acme.example").is_none());
    assert!(!organisation_exists(&app, &org));
    assert!(registered(&app, "new@acme.example").is_some());
    let entries = purge_entries(&app);
    assert_eq!(entries.len(), 1);
    assert_eq!(entries[0].0.as_deref(), Some("cli"));
    assert_eq!(entries[0].1.as_deref(), Some(old.as_str()));
    // The command's entry names the host's operator: its uid, as this process has it.
    let uid = {
        use std::os::unix::fs::MetadataExt;
        std::fs::metadata("/proc/self").unwrap().uid()
    };
    let from = entries[0].3.as_deref().unwrap_or_default();
    assert!(
        from.starts_with("local: ") && from.contains(&format!("uid {uid})")),
        "{from}"
    );
    assert_audit_verifies(&app);
}

#[test]
fn the_round_runs_on_the_instance_that_holds_its_lease() {
    const OTHER: &str = "another-instance";
    let app = TestApp::new();
    register(&app, "late@acme.example", "Acme Water");
    app.advance(8 * DAY);
    app.with_conn(|c| {
        lease::release(c, unconfirmed_purge::LEASE, lease_holder()).unwrap();
        assert!(lease::acquire(c, unconfirmed_purge::LEASE, OTHER, 600).unwrap());
    });
    assert_eq!(app.housekeeping_round(), None);
    assert!(registered(&app, "late@acme.example").is_some());
    // The other instance stopped: its lease given up, this one takes it.
    app.with_conn(|c| assert!(lease::release(c, unconfirmed_purge::LEASE, OTHER).unwrap()));
    assert_eq!(app.housekeeping_round().unwrap().removed.len(), 1);
    assert!(registered(&app, "late@acme.example").is_none());
}

#[test]
fn the_page_and_the_confirmation_mail_say_when_an_unconfirmed_registration_is_removed() {
    let app = TestApp::with(|f| f.merge(("unconfirmed_account_days", 9)));
    let page = app.browser().get("/register");
    assert!(
        page.body
            .contains("A registration not confirmed within 9 days is removed"),
        "{}",
        page.body
    );
    register(&app, "told@acme.example", "Acme Water");
    let mail = app.outbox().pop().unwrap();
    assert!(
        mail.contains("A registration not confirmed within 9 days is removed"),
        "{mail}"
    );
    assert_eq!(app.state().settings.unconfirmed_account_days, 9);
    assert_eq!(TestApp::new().state().settings.unconfirmed_account_days, 7);
}

/// Runs `pcii-portal ARGS` on the app's data; it must succeed. Its standard output.
fn purge_command(app: &TestApp, args: &[&str]) -> String {
    let out = app.command().args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}
