//! Second factors, tried as the people who use them and as those who would get round them: an invited officer made
//! to enrol, a replayed code, a recovery code used twice, an auditor without a factor, a stale factor before an
//! export and a decision, a reset by two administrators, removal, an organisation's requirement, guessing, key
//! rotation; and no seed or code in clear in the database file or the audit export.

use std::io::Read;

use diesel::prelude::*;
use rocket::http::Status;

use crate::common::{self, code_for, complete_fields, Browser, TestApp, PASSWORD};
use pcii_portal::db::schema::{audit_entries, recovery_codes, sessions, totp_factors, users};
use pcii_portal::domain::Role;

fn audit_reasons(app: &TestApp, action: &str) -> Vec<String> {
    app.with_conn(|c| {
        audit_entries::table
            .filter(audit_entries::action.eq(action))
            .order(audit_entries::seq.asc())
            .select(audit_entries::reason)
            .load::<Option<String>>(c)
            .unwrap()
            .into_iter()
            .map(Option::unwrap_or_default)
            .collect()
    })
}

/// An officer invited by an administrator, who has set a password (but no second factor yet).
fn invited_officer<'a>(app: &'a TestApp, email: &str) -> Browser<'a> {
    let mut admin = app.login_as(Role::Administrator, "admin@example.gov", None);
    let res = admin.post(
        "/admin/accounts",
        &[
            ("display_name", "Olive Officer"),
            ("email", email),
            ("role", "officer"),
            ("agency", "CISA PCII Program Office"),
        ],
    );
    assert_eq!(res.status, Status::SeeOther, "{}", res.body);
    let link = app
        .mailed_link(email, "/invitations/")
        .expect("an invitation");
    let mut olive = app.browser();
    let res = olive.post(
        &link,
        &[
            ("display_name", "Olive Officer"),
            ("password", "olive's own long passphrase"),
        ],
    );
    assert_eq!(res.status, Status::SeeOther, "{}", res.body);
    olive
}

#[test]
fn an_invited_officer_must_enrol_then_signs_in_with_a_code_that_works_once() {
    let app = TestApp::new();
    let mut olive = invited_officer(&app, "olive@example.gov");
    // Password right, no factor yet: sent to enrol, and nothing of the role opens.
    let res = olive.post(
        "/login",
        &[
            ("email", "olive@example.gov"),
            ("password", "olive's own long passphrase"),
        ],
    );
    assert_eq!(res.header("Location"), Some("/account/security"));
    let security = olive.get("/account/security");
    assert_eq!(security.status, Status::Ok);
    assert!(security.body.contains("needs a second factor"));
    for page in ["/officer", "/dashboard", "/account"] {
        let res = olive.get(page);
        assert_eq!(res.status, Status::SeeOther, "{page}");
        assert_eq!(res.header("Location"), Some("/account/security"), "{page}");
    }
    // The setup page shows a QR code drawn here and the secret as text.
    let setup = olive.get("/account/security/totp");
    // (Tera escapes the slashes of attribute values; a browser reads them back.)
    assert!(setup.body.contains("src=\"data:image&#x2F;svg+xml;base64,"));
    assert_eq!(setup.header("Cache-Control"), Some("no-store"));
    let seed = common::shown_secret(&setup.body);
    // A wrong code keeps the same secret on the page.
    let wrong = olive.post("/account/security/totp", &[("code", "000000")]);
    assert_eq!(wrong.status, Status::UnprocessableEntity);
    assert_eq!(common::shown_secret(&wrong.body), seed);
    let code = code_for(&seed, 0, &app.state().clock);
    let done = olive.post("/account/security/totp", &[("code", &code)]);
    assert_eq!(done.status, Status::SeeOther, "{}", done.body);
    let codes = olive.recovery_codes_shown_once();
    assert_eq!(codes.len(), 10);
    // The form sent again (a reload) changes nothing and says where things stand.
    let twice = olive.post("/account/security/totp", &[("code", &code)]);
    assert_eq!(twice.header("Location"), Some("/account/security"));
    assert_eq!(olive.get("/officer").status, Status::Ok);

    // Out and in again: the password, then a code computed from the secret shown.
    olive.post("/logout", &[]);
    let res = olive.post(
        "/login",
        &[
            ("email", "olive@example.gov"),
            ("password", "olive's own long passphrase"),
        ],
    );
    assert_eq!(res.header("Location"), Some("/login/second-factor"));
    let before = olive.session_cookie().unwrap();
    assert_eq!(
        olive.get("/officer").header("Location"),
        Some("/login/second-factor")
    );
    let olive_id = app.user_id("olive@example.gov");
    let last_step: i64 = app.with_conn(|c| {
        totp_factors::table
            .find(&olive_id)
            .select(totp_factors::last_step)
            .first(c)
            .unwrap()
    });
    let code = code_for(&seed, last_step, &app.state().clock);
    let res = olive.post("/login/second-factor", &[("factor_code", &code)]);
    assert_eq!(res.status, Status::SeeOther, "{}", res.body);
    assert_ne!(
        olive.session_cookie().unwrap(),
        before,
        "a new session token"
    );
    assert_eq!(olive.get("/officer").status, Status::Ok);

    // The same code once more, from another browser: refused, and audited as a replay.
    let mut again = app.browser();
    let res = again.post(
        "/login",
        &[
            ("email", "olive@example.gov"),
            ("password", "olive's own long passphrase"),
        ],
    );
    assert_eq!(res.header("Location"), Some("/login/second-factor"));
    let res = again.post("/login/second-factor", &[("factor_code", &code)]);
    assert_eq!(res.status, Status::Unauthorized);
    assert_eq!(
        again.get("/officer").header("Location"),
        Some("/login/second-factor")
    );
    assert!(audit_reasons(&app, "mfa.failed")
        .iter()
        .any(|r| r.contains("an authenticator code already used")));
    assert!(audit_reasons(&app, "mfa.enrolled")[0].contains("10 recovery codes issued"));
    // The administrator's sign-in and Olive's, not the replay.
    assert_eq!(
        audit_reasons(&app, "mfa.verified"),
        vec!["sign-in: authenticator app".to_string(); 2]
    );
}

#[test]
fn an_auditor_without_a_factor_is_sent_to_enrol_and_a_submitter_without_one_submits() {
    let app = TestApp::new();
    let auditor = app.create_user(Role::Auditor, "u@example.gov", None);
    // This auditor lost its factor (it was never enrolled, or it was reset).
    app.with_conn(|c| {
        diesel::delete(totp_factors::table.find(&auditor))
            .execute(c)
            .unwrap()
    });
    let mut u = app.browser();
    assert_eq!(u.login("u@example.gov", PASSWORD), Status::SeeOther);
    let res = u.get("/audit");
    assert_eq!(res.status, Status::SeeOther);
    assert_eq!(res.header("Location"), Some("/account/security"));
    assert!(u.get("/audit/export").header("Location").is_some());
    // The refusal is audited like any other.
    assert!(audit_reasons(&app, "access.refused")
        .iter()
        .any(|r| r == "no second factor enrolled"));

    let mut sam = app.login_as(Role::Submitter, "sam@acme.example", Some("Acme"));
    assert_eq!(sam.get("/submissions/new").status, Status::Ok);
    let res = sam.post_multipart("/submissions", &complete_fields("A narrative", "submit"));
    assert_eq!(res.status, Status::SeeOther, "{}", res.body);
}

#[test]
fn a_recovery_code_works_once_and_says_how_many_are_left() {
    let app = TestApp::new();
    let mut olive = invited_officer(&app, "olive@example.gov");
    olive.login("olive@example.gov", "olive's own long passphrase");
    let (_, codes) = olive.enrol_authenticator_on_pages();
    olive.post("/logout", &[]);

    let sign_in_with = |b: &mut Browser<'_>, code: &str| {
        let res = b.post(
            "/login",
            &[
                ("email", "olive@example.gov"),
                ("password", "olive's own long passphrase"),
            ],
        );
        assert_eq!(res.header("Location"), Some("/login/second-factor"));
        b.post("/login/second-factor", &[("factor_code", code)])
    };
    let mut first = app.browser();
    // Typed as people type: upper case, spaces for dashes.
    let typed = codes[3].to_uppercase().replace('-', " ");
    let res = sign_in_with(&mut first, &typed);
    assert_eq!(res.status, Status::SeeOther, "{}", res.body);
    let home = first.get("/officer");
    assert_eq!(home.status, Status::Ok);
    assert!(
        home.body.contains("9 left"),
        "the notice says how many remain"
    );
    assert_eq!(
        audit_reasons(&app, "mfa.recovery_code_used"),
        vec!["sign-in: 9 recovery code(s) left".to_string()]
    );

    let mut second = app.browser();
    let res = sign_in_with(&mut second, &codes[3]);
    assert_eq!(res.status, Status::Unauthorized);
    assert!(audit_reasons(&app, "mfa.failed")
        .iter()
        .any(|r| r == "sign-in: a recovery code already used"));

    // New codes void the old set.
    let fresh = first.post("/account/security/recovery-codes", &[]);
    assert_eq!(fresh.status, Status::SeeOther, "{}", fresh.body);
    let new_codes = first.recovery_codes_shown_once();
    assert_eq!(new_codes.len(), 10);
    let mut third = app.browser();
    assert_eq!(
        sign_in_with(&mut third, &codes[4]).status,
        Status::Unauthorized
    );
    let mut fourth = app.browser();
    assert_eq!(
        sign_in_with(&mut fourth, &new_codes[0]).status,
        Status::SeeOther
    );
}

/// A submission by a member of "Acme", received: its id.
fn received_submission(app: &TestApp) -> String {
    let mut sam = app.login_as(Role::Submitter, "sam@acme.example", Some("Acme"));
    let res = sam.post_multipart(
        "/submissions",
        &complete_fields("Step-up narrative", "submit"),
    );
    crate::common::submission_id(&res)
}

#[test]
fn an_export_and_a_decision_twenty_minutes_after_sign_in_ask_for_the_factor_again_and_keep_what_was_typed(
) {
    let app = TestApp::new();
    let id = received_submission(&app);
    let mut officer = app.login_as(Role::Officer, "o@example.gov", None);
    let export = format!("/officer/submissions/{id}/export");
    let (status, _, _) = officer.get_bytes(&export);
    assert_eq!(status, Status::Ok, "a fresh factor exports at once");

    app.advance(20 * 60);
    // The export sends the officer to give the factor again, and back.
    let res = officer.get(&export);
    assert_eq!(res.status, Status::SeeOther);
    let to = res.header("Location").unwrap().to_string();
    assert!(to.starts_with("/account/step-up?next="), "{to}");
    // The refusal is recorded: who was asked for the factor again, on which route.
    let asked = |app: &TestApp| {
        audit_reasons(app, "access.refused")
            .into_iter()
            .filter(|r| {
                r.starts_with("step-up: second factor not used within the last 15 minute(s)")
            })
            .count()
    };
    assert_eq!(asked(&app), 1);
    let page = officer.get(&to);
    assert_eq!(page.status, Status::Ok);
    assert!(page.body.contains("Confirm it is you"));
    let next = format!("/officer/submissions/{id}/export");
    let code = common::totp_code(app.state(), "o@example.gov");
    let res = officer.post(
        "/account/step-up",
        &[("next", next.as_str()), ("factor_code", &code)],
    );
    assert_eq!(res.status, Status::SeeOther);
    assert_eq!(res.header("Location"), Some(next.as_str()));
    let (status, body, _) = officer.get_bytes(&next);
    assert_eq!(status, Status::Ok);
    assert!(body.unwrap().starts_with(b"PK"));
    assert!(audit_reasons(&app, "mfa.verified")
        .iter()
        .any(|r| r == "step-up: authenticator app"));

    // A decision posted with a stale factor: a page that asks for it and carries the reason typed.
    app.advance(20 * 60);
    let reason = "Not <b>critical</b> infrastructure: \"a shop's\" fire alarm & nothing more";
    let decision = format!("/officer/submissions/{id}/decision");
    let res = officer.post(
        &decision,
        &[("decision", "not_validated"), ("reason", reason)],
    );
    assert_eq!(res.status, Status::Unauthorized);
    assert!(res.body.contains("Confirm it is you"));
    assert!(res
        .body
        .contains(&format!("action=\"{}\"", decision.replace('/', "&#x2F;"))));
    assert!(res.body.contains(
        "value=\"Not &lt;b&gt;critical&lt;&#x2F;b&gt; infrastructure: &quot;a shop&#x27;s&quot; fire alarm &amp; nothing more\""
    ), "the reason is kept, escaped: {}", res.body);
    let status: String = app.with_conn(|c| {
        pcii_portal::db::schema::submissions::table
            .find(&id)
            .select(pcii_portal::db::schema::submissions::status)
            .first(c)
            .unwrap()
    });
    assert_eq!(status, "received", "nothing was decided yet");
    assert_eq!(
        asked(&app),
        2,
        "the decision asked for the factor: recorded"
    );
    // A wrong code asks again, still with the reason.
    let res = officer.post(
        &decision,
        &[
            ("decision", "not_validated"),
            ("reason", reason),
            ("factor_code", "123 456"),
        ],
    );
    assert_eq!(res.status, Status::Unauthorized);
    assert!(res.body.contains("That did not work"));
    assert!(res.body.contains("fire alarm &amp; nothing more"));
    assert_eq!(
        asked(&app),
        2,
        "a wrong answer is a failed factor, not another refusal"
    );
    assert!(audit_reasons(&app, "mfa.failed")
        .iter()
        .any(|r| r == "step-up: a wrong code"));
    // The page posts back what it carries, with the code: the decision goes on as first typed, to the page
    // that asks to confirm it (a final decision), and its button applies it.
    let code = common::totp_code(app.state(), "o@example.gov");
    let res = officer.post(
        &decision,
        &[
            ("decision", "not_validated"),
            ("reason", reason),
            ("factor_code", &code),
        ],
    );
    assert_eq!(res.status, Status::Ok, "{}", res.body);
    assert!(res.body.contains("Confirm: not validated"), "{}", res.body);
    assert!(res.body.contains("fire alarm &amp; nothing more"));
    let res = officer.post(
        &decision,
        &[
            ("decision", "not_validated"),
            ("reason", reason),
            ("confirm", "1"),
        ],
    );
    assert_eq!(res.status, Status::SeeOther, "{}", res.body);
    let status: String = app.with_conn(|c| {
        pcii_portal::db::schema::submissions::table
            .find(&id)
            .select(pcii_portal::db::schema::submissions::status)
            .first(c)
            .unwrap()
    });
    assert_eq!(status, "not_validated");
    // And within the next minutes no factor is asked for again.
    let (status, _, _) = officer.get_bytes(&export);
    assert_eq!(status, Status::Ok);
}

#[test]
fn two_administrators_reset_a_lost_factor_and_the_person_enrols_again() {
    let app = TestApp::new();
    let mut first = app.login_as(Role::Administrator, "first@example.gov", None);
    let mut second = app.login_as(Role::Administrator, "second@example.gov", None);
    let officer = app.create_user(Role::Officer, "o@example.gov", None);
    let mut o = app.browser();
    assert_eq!(o.login("o@example.gov", PASSWORD), Status::SeeOther);
    assert_eq!(o.get("/officer").status, Status::Ok);

    let page = first.get(&format!("/admin/accounts/{officer}"));
    assert!(page.body.contains("Reset second factors"));
    assert!(page.body.contains("Authenticator app set up."));
    let res = first.post(
        &format!("/admin/accounts/{officer}/reset-factors"),
        &[
            ("reason", "Lost phone; identity checked by video call"),
            ("confirm", "true"),
        ],
    );
    assert_eq!(res.header("Location"), Some("/admin/approvals"));
    // Nothing happened yet: one administrator alone cannot.
    assert_eq!(o.get("/officer").status, Status::Ok);
    let id: String = app.with_conn(|c| {
        pcii_portal::db::schema::privilege_requests::table
            .filter(pcii_portal::db::schema::privilege_requests::change.eq("reset_factors"))
            .select(pcii_portal::db::schema::privilege_requests::id)
            .first(c)
            .unwrap()
    });
    assert_eq!(
        first
            .post(&format!("/admin/requests/{id}"), &[("decision", "approve")])
            .status,
        Status::Conflict,
        "not by the one who asked"
    );
    assert!(second
        .get("/admin/approvals")
        .body
        .contains("Reset second factors"));
    let res = second.post(&format!("/admin/requests/{id}"), &[("decision", "approve")]);
    assert_eq!(res.status, Status::SeeOther, "{}", res.body);

    // Every factor is gone and the sessions ended; the next sign-in leads to enrolment.
    assert_eq!(o.get("/officer").status, Status::Unauthorized);
    let left: i64 = app.with_conn(|c| {
        totp_factors::table
            .filter(totp_factors::user_id.eq(&officer))
            .count()
            .get_result(c)
            .unwrap()
    });
    assert_eq!(left, 0);
    // The password went with them: whoever knew it (the factor was what stopped them) cannot sign in and enrol a
    // factor of their own before the person does.
    let mut intruder = app.browser();
    let res = intruder.post(
        "/login",
        &[("email", "o@example.gov"), ("password", PASSWORD)],
    );
    assert_eq!(res.status, Status::Unauthorized, "{}", res.body);
    // The person chooses a new one through the link mailed to the account's address, then enrols.
    let mut again = app.browser();
    again.post("/password/forgot", &[("email", "o@example.gov")]);
    let link = app
        .mailed_link("o@example.gov", "/password/reset/")
        .expect("a reset link");
    let new_password = "the officer's own new passphrase";
    let res = again.post(&link, &[("new_password", new_password)]);
    assert_eq!(res.status, Status::SeeOther, "{}", res.body);
    let res = again.post(
        "/login",
        &[("email", "o@example.gov"), ("password", new_password)],
    );
    assert_eq!(res.header("Location"), Some("/account/security"));
    again.enrol_authenticator_on_pages();
    assert_eq!(again.get("/officer").status, Status::Ok);
    let approve = audit_reasons(&app, "account.privilege_approve");
    assert!(approve[0].contains("mfa.reset"), "{approve:?}");
    assert!(approve[0].contains("1 authenticator app"), "{approve:?}");
    assert!(approve[0].contains("password voided"), "{approve:?}");
}

#[test]
fn removing_a_factor_needs_the_password_and_a_fresh_factor_and_staff_keep_one() {
    let app = TestApp::new();
    let mut sam = app.login_as(Role::Submitter, "sam@acme.example", Some("Acme"));
    // A submitter may enrol, and then signs in with it.
    sam.enrol_authenticator_on_pages();
    sam.post("/logout", &[]);
    assert_eq!(sam.login("sam@acme.example", PASSWORD), Status::SeeOther);
    assert_eq!(sam.get("/submissions").status, Status::Ok);
    let wrong = sam.post("/account/security/totp/remove", &[("password", "not it")]);
    assert_eq!(wrong.status, Status::UnprocessableEntity);
    app.advance(20 * 60);
    let stale = sam.post("/account/security/totp/remove", &[("password", PASSWORD)]);
    assert_eq!(
        stale.status,
        Status::Unauthorized,
        "a stale factor is asked for again"
    );
    // The page that asks for it does not write the typed password back into itself: it asks for it again.
    assert!(
        !stale.body.contains(PASSWORD),
        "the password is in the step-up page"
    );
    assert!(
        stale
            .body
            .contains(r#"name="password" type="password" autocomplete="current-password""#),
        "{}",
        stale.body
    );
    let code = common::totp_code(app.state(), "sam@acme.example");
    let done = sam.post(
        "/account/security/totp/remove",
        &[("password", PASSWORD), ("factor_code", &code)],
    );
    assert_eq!(done.status, Status::SeeOther, "{}", done.body);
    let sam_id = app.user_id("sam@acme.example");
    let codes: i64 = app.with_conn(|c| {
        recovery_codes::table
            .filter(recovery_codes::user_id.eq(&sam_id))
            .count()
            .get_result(c)
            .unwrap()
    });
    assert_eq!(codes, 0, "recovery codes go with the last factor");

    // Staff cannot remove their last factor.
    let mut o = app.login_as(Role::Officer, "o@example.gov", None);
    let res = o.post("/account/security/totp/remove", &[("password", PASSWORD)]);
    assert_eq!(res.status, Status::Conflict);
    assert_eq!(o.get("/officer").status, Status::Ok);
}

#[test]
fn an_organisation_that_requires_a_factor_sends_its_members_to_enrol() {
    let app = TestApp::new();
    let mut admin = app.login_as(Role::Submitter, "boss@acme.example", Some("Acme"));
    let mut member = app.login_as(Role::Submitter, "sam@acme.example", Some("Acme"));
    assert_eq!(member.get("/submissions").status, Status::Ok);
    let res = admin.post("/organisation/second-factor", &[("require", "yes")]);
    assert_eq!(res.status, Status::SeeOther, "{}", res.body);
    assert_eq!(
        audit_reasons(&app, "organisation.second_factor_requirement"),
        vec!["required".to_string()]
    );
    // The member's next step leads to enrolment; so does the administrator's own.
    assert_eq!(
        member.get("/submissions").header("Location"),
        Some("/account/security")
    );
    assert_eq!(
        admin.get("/organisation").header("Location"),
        Some("/account/security")
    );
    member.enrol_authenticator_on_pages();
    assert_eq!(member.get("/submissions").status, Status::Ok);
    // Another organisation's members are not affected.
    let mut other = app.login_as(Role::Submitter, "eve@other.example", Some("Other"));
    assert_eq!(other.get("/submissions").status, Status::Ok);
}

/// A session that gave a factor the account has since removed is sent to enrol once the organisation requires one,
/// as a member who never had one is (before, it stayed signed in and every step-up act passed with no factor at all).
#[test]
fn a_member_who_removed_the_factor_is_sent_to_enrol_once_the_organisation_requires_one() {
    let app = TestApp::new();
    let mut admin = app.login_as(Role::Submitter, "boss@acme.example", Some("Acme"));
    let mut sam = app.login_as(Role::Submitter, "sam@acme.example", Some("Acme"));
    sam.enrol_authenticator_on_pages();
    sam.post("/logout", &[]);
    assert_eq!(sam.login("sam@acme.example", PASSWORD), Status::SeeOther);
    let removed = sam.post("/account/security/totp/remove", &[("password", PASSWORD)]);
    assert_eq!(removed.status, Status::SeeOther, "{}", removed.body);
    assert_eq!(sam.get("/submissions").status, Status::Ok);
    let res = admin.post("/organisation/second-factor", &[("require", "yes")]);
    assert_eq!(res.status, Status::SeeOther, "{}", res.body);
    assert_eq!(
        sam.get("/submissions").header("Location"),
        Some("/account/security")
    );
    sam.enrol_authenticator_on_pages();
    assert_eq!(sam.get("/submissions").status, Status::Ok);
}

/// A browser that gave `email`'s password and is asked for its second factor.
fn password_only<'a>(app: &'a TestApp, email: &str) -> Browser<'a> {
    let mut b = app.browser();
    let res = b.post("/login", &[("email", email), ("password", PASSWORD)]);
    assert_eq!(res.header("Location"), Some("/login/second-factor"));
    b
}

#[test]
fn guessing_codes_is_throttled_per_account_and_audited() {
    let app = TestApp::new();
    app.create_user(Role::Officer, "o@example.gov", None);
    let mut b = password_only(&app, "o@example.gov");
    for guess in ["111111", "222222", "333333", "444444", "555555"] {
        let res = b.post("/login/second-factor", &[("factor_code", guess)]);
        assert_eq!(res.status, Status::Unauthorized);
    }
    // Locked: even the right code is refused now, and from another address too (the lock is the account's).
    let code = common::totp_code(app.state(), "o@example.gov");
    let res = b.post("/login/second-factor", &[("factor_code", &code)]);
    assert_eq!(res.status, Status::TooManyRequests);
    assert_eq!(audit_reasons(&app, "mfa.failed").len(), 6);
    let elsewhere: std::net::SocketAddr = "198.51.100.77:40000".parse().unwrap();
    let mut other = app.browser();
    assert_eq!(
        other.login_from("o@example.gov", PASSWORD, elsewhere),
        Status::SeeOther
    );
    let res = other.post_from("/login/second-factor", &[("factor_code", &code)], elsewhere);
    assert_eq!(res.status, Status::TooManyRequests);
    assert_eq!(audit_reasons(&app, "mfa.failed").len(), 7);
    assert!(audit_reasons(&app, "mfa.failed")
        .last()
        .unwrap()
        .ends_with("throttled"));
    // After the window the account signs in.
    app.advance(10 * 60);
    let code = common::totp_code(app.state(), "o@example.gov");
    let res = b.post("/login/second-factor", &[("factor_code", &code)]);
    assert_eq!(res.status, Status::SeeOther);
}

/// Guesses sent all at once: each request reads "not locked" before any of them has failed, so the lock must be
/// checked again inside the transaction that records the failure, or every one of them is checked.
#[test]
fn guesses_sent_in_parallel_are_checked_no_more_often_than_the_limit_allows() {
    use pcii_portal::audit::log::Actor;
    use pcii_portal::auth::second_factor::{self, Answer, Checked, Checker, Limits, Purpose};

    let app = TestApp::new();
    let id = app.create_user(Role::Officer, "o@example.gov", None);
    let state = app.state();
    let user = app.with_conn(|c| pcii_portal::models::account::find(c, &id).unwrap());
    let limits = Limits::from_settings(&state.settings);
    let limit = usize::try_from(state.settings.second_factor_max_failures).unwrap();
    let right = common::totp_code(state, "o@example.gov");
    let guesses: Vec<String> = (1..)
        .map(|n: u32| format!("{:06}", n * 7919 % 1_000_000))
        .filter(|g| *g != right)
        .take(limit * 3)
        .collect();
    let ring = state.current_keys();
    let checker = Checker {
        audit: &state.audit,
        ring: &ring,
        keys: &state.throttle_key,
        limits,
    };
    let answers = common::all_at_once(&guesses, |guess| {
        let mut conn = state.db.get().unwrap();
        second_factor::check(
            &mut conn,
            &checker,
            &Actor::cli(),
            &user,
            "no-session",
            Answer::Code(guess),
            Purpose::SignIn,
            state.clock.now(),
        )
        .unwrap()
    });
    let failed = answers
        .iter()
        .filter(|a| matches!(a, Checked::Failed))
        .count();
    let throttled = answers
        .iter()
        .filter(|a| matches!(a, Checked::Throttled))
        .count();
    assert_eq!(
        (failed, throttled),
        (limit, guesses.len() - limit),
        "of {} guesses sent at once, only the first {limit} may be checked",
        guesses.len()
    );
    let reasons = audit_reasons(&app, "mfa.failed");
    assert_eq!(reasons.len(), guesses.len());
    assert_eq!(
        reasons.iter().filter(|r| r.ends_with("throttled")).count(),
        guesses.len() - limit
    );
    // Locked now: the right code is refused too.
    let mut b = password_only(&app, "o@example.gov");
    let res = b.post("/login/second-factor", &[("factor_code", &right)]);
    assert_eq!(res.status, Status::TooManyRequests);
}

/// The records that let an authorized user read PCII (training, NDA) and the self-registration switch ask for a
/// recent second factor, like grants of privilege: a stolen session alone changes none of them.
#[test]
fn records_that_open_pcii_need_a_fresh_factor() {
    let app = TestApp::new();
    let mut admin = app.login_as(Role::Administrator, "admin@example.gov", None);
    let analyst = app.create_user(Role::AuthorizedUser, "ana@dhs.example.gov", None);
    let training = format!("/admin/accounts/{analyst}/training");
    let nda = format!("/admin/accounts/{analyst}/nda");
    let today = pcii_portal::time::date(app.now());
    app.advance(16 * 60);
    let training_at = |app: &TestApp| {
        app.with_conn(|c| {
            pcii_portal::models::account::find(c, &analyst)
                .unwrap()
                .training_completed_at
        })
    };
    for (uri, fields) in [
        (training.as_str(), vec![("date", today.as_str())]),
        (nda.as_str(), vec![("date", today.as_str())]),
        ("/admin/settings/registration", vec![("open", "false")]),
    ] {
        let res = admin.post(uri, &fields);
        assert_eq!(res.status, Status::Unauthorized, "{uri}: {}", res.body);
        assert!(res.body.contains("Confirm it is you"), "{uri}");
    }
    assert_eq!(training_at(&app), None);
    for action in [
        "account.training",
        "account.nda",
        "settings.self_registration",
    ] {
        assert_eq!(app.audit_count(action), 0, "{action}");
    }
    // With the factor given, the record is saved.
    let code = common::totp_code(app.state(), "admin@example.gov");
    let res = admin.post(
        &training,
        &[("date", today.as_str()), ("factor_code", &code)],
    );
    assert_eq!(res.status, Status::SeeOther, "{}", res.body);
    assert!(training_at(&app).is_some());
}

/// The lock bounds guessing; a passkey's signed answer cannot be guessed. Whoever holds only the password and locks
/// the account with wrong codes does not lock its owner's passkey out: a verified passkey passes the lock, a code
/// (even the right one) does not.
#[test]
fn a_verified_passkey_passes_a_lock_that_wrong_codes_set() {
    use pcii_portal::audit::log::Actor;
    use pcii_portal::auth::passkeys::Verdict;
    use pcii_portal::auth::second_factor::{
        self, Answer, Checked, Checker, Limits, Method, Purpose,
    };

    let app = TestApp::new();
    let id = app.create_user(Role::Officer, "o@example.gov", None);
    let state = app.state();
    let user = app.with_conn(|c| pcii_portal::models::account::find(c, &id).unwrap());
    let ring = state.current_keys();
    let checker = Checker {
        audit: &state.audit,
        ring: &ring,
        keys: &state.throttle_key,
        limits: Limits::from_settings(&state.settings),
    };
    let check = |answer: Answer<'_>| {
        second_factor::check(
            &mut state.db.get().unwrap(),
            &checker,
            &Actor::cli(),
            &user,
            "no-session",
            answer,
            Purpose::SignIn,
            state.clock.now(),
        )
        .unwrap()
    };
    let right = common::totp_code(state, "o@example.gov");
    let wrong = if right == "000000" {
        "111111"
    } else {
        "000000"
    };
    for _ in 0..state.settings.second_factor_max_failures {
        assert_eq!(check(Answer::Code(wrong)), Checked::Failed);
    }
    assert_eq!(check(Answer::Code(&right)), Checked::Throttled);
    assert_eq!(check(Answer::Passkey(Verdict::Refused)), Checked::Throttled);
    // A passing answer at sign-in needs the session that gave the password (it is replaced on a new token).
    let _signing_in = password_only(&app, "o@example.gov");
    let session: String = app.with_conn(|c| {
        sessions::table
            .filter(sessions::user_id.eq(&id))
            .select(sessions::token_hash)
            .first(c)
            .unwrap()
    });
    let passed = second_factor::check(
        &mut state.db.get().unwrap(),
        &checker,
        &Actor::cli(),
        &user,
        &session,
        Answer::Passkey(Verdict::Verified("Blue key".into())),
        Purpose::SignIn,
        state.clock.now(),
    )
    .unwrap();
    assert!(
        matches!(&passed, Checked::Passed(Method::Passkey { name }, Some(_)) if name == "Blue key"),
        "{passed:?}"
    );
}

/// A passkey that signs with a counter at or below the one stored (the WebAuthn sign of a copied key) is refused
/// and removed from the account in the same transaction as its audit entry, even while wrong codes hold the account
/// locked; the account's other passkeys stay. At sign-in the account's other sessions end; at a step-up this one
/// too (it may be the copy's); when it was the last factor, the account is reset as two administrators would (codes,
/// sessions, password). (The counter itself is compared in `auth::passkeys`, with a real authenticator in the
/// browser suite's passkey flow.)
#[test]
fn a_passkey_whose_counter_went_back_is_refused_removed_and_audited() {
    use pcii_portal::audit::log::Actor;
    use pcii_portal::auth::passkeys::{self, Verdict};
    use pcii_portal::auth::second_factor::{
        self, Answer, Checked, Checker, Ended, Limits, Purpose,
    };
    use pcii_portal::models::passkey::{self as passkey_rows, NewPasskey};

    let app = TestApp::new();
    let id = app.create_user(Role::Officer, "o@example.gov", None);
    let state = app.state();
    let user = app.with_conn(|c| pcii_portal::models::account::find(c, &id).unwrap());
    let now = state.clock.now();
    let sessions_of = |app: &TestApp| -> Vec<String> {
        app.with_conn(|c| {
            sessions::table
                .filter(sessions::user_id.eq(&id))
                .select(sessions::token_hash)
                .load(c)
                .unwrap()
        })
    };
    let names = |app: &TestApp| -> Vec<String> {
        let mut names: Vec<String> = app.with_conn(|c| {
            passkeys::list(c, &id)
                .unwrap()
                .into_iter()
                .map(|p| p.name)
                .collect()
        });
        names.sort();
        names
    };
    for (key_id, name) in [
        ("pk-copied", "Blue key"),
        ("pk-phone", "Phone"),
        ("pk-other", "Laptop"),
    ] {
        app.with_conn(|c| {
            passkey_rows::insert(
                c,
                &NewPasskey {
                    id: key_id,
                    user_id: &id,
                    name,
                    credential_id: key_id,
                    credential: "{}",
                    created_at: now,
                    last_used_at: None,
                },
            )
            .unwrap()
        });
    }
    let ring = state.current_keys();
    let checker = Checker {
        audit: &state.audit,
        ring: &ring,
        keys: &state.throttle_key,
        limits: Limits::from_settings(&state.settings),
    };
    let check = |session: &str, purpose: Purpose, answer: Answer<'_>| {
        second_factor::check(
            &mut state.db.get().unwrap(),
            &checker,
            &Actor::cli(),
            &user,
            session,
            answer,
            purpose,
            state.clock.now(),
        )
        .unwrap()
    };
    let copied = |key_id: &str, name: &str| {
        Answer::Passkey(Verdict::PossibleClone {
            id: key_id.into(),
            name: name.into(),
        })
    };
    let (_this, _other) = (
        password_only(&app, "o@example.gov"),
        password_only(&app, "o@example.gov"),
    );
    let this = sessions_of(&app)[0].clone();
    for _ in 0..state.settings.second_factor_max_failures {
        assert_eq!(
            check(&this, Purpose::SignIn, Answer::Code("000000x")),
            Checked::Failed
        );
    }

    // At sign-in: the others end, this one (which has not given its factor) stays.
    assert_eq!(
        check(&this, Purpose::SignIn, copied("pk-copied", "Blue key")),
        Checked::PasskeyRemoved {
            ended: Ended::Others
        }
    );
    assert_eq!(sessions_of(&app), vec![this.clone()]);
    assert_eq!(names(&app), vec!["Laptop".to_string(), "Phone".to_string()]);
    let (object, reason): (Option<String>, Option<String>) = app.with_conn(|c| {
        audit_entries::table
            .filter(audit_entries::action.eq("mfa.passkey_possible_clone"))
            .select((audit_entries::object_id, audit_entries::reason))
            .first(c)
            .unwrap()
    });
    assert_eq!(object.as_deref(), Some(id.as_str()));
    assert!(reason.unwrap().contains("\"Blue key\""));

    // At a step-up: this session ends too.
    assert_eq!(
        check(&this, Purpose::StepUp, copied("pk-phone", "Phone")),
        Checked::PasskeyRemoved { ended: Ended::All }
    );
    assert!(sessions_of(&app).is_empty());
    assert_eq!(names(&app), vec!["Laptop".to_string()]);

    // The last factor copied: the account is reset as two administrators would (its recovery codes gone, its
    // password voided), so that whoever holds the copy and the password cannot enrol a factor of their own.
    app.with_conn(|c| {
        diesel::delete(totp_factors::table.filter(totp_factors::user_id.eq(&id)))
            .execute(c)
            .unwrap();
        diesel::insert_into(recovery_codes::table)
            .values((
                recovery_codes::id.eq("rc-1"),
                recovery_codes::user_id.eq(&id),
                recovery_codes::code_sha256.eq("00"),
                recovery_codes::created_at.eq(now),
            ))
            .execute(c)
            .unwrap()
    });
    let _again = password_only(&app, "o@example.gov");
    let again = sessions_of(&app)[0].clone();
    assert_eq!(
        check(&again, Purpose::SignIn, copied("pk-other", "Laptop")),
        Checked::PasskeyRemoved {
            ended: Ended::AllAndPassword
        }
    );
    assert!(names(&app).is_empty());
    assert!(sessions_of(&app).is_empty(), "this session ended too");
    let codes: i64 = app.with_conn(|c| {
        recovery_codes::table
            .filter(recovery_codes::user_id.eq(&id))
            .count()
            .get_result(c)
            .unwrap()
    });
    assert_eq!(codes, 0);
    let hash: String = app.with_conn(|c| {
        users::table
            .find(&id)
            .select(users::password_hash)
            .first(c)
            .unwrap()
    });
    assert_eq!(hash, pcii_portal::auth::password::VOIDED);
    assert_ne!(
        app.browser().login("o@example.gov", PASSWORD),
        Status::SeeOther,
        "the voided password still signs in"
    );
    assert_eq!(app.audit_count("mfa.passkey_possible_clone"), 3);

    // Each removal queued a mail to the account's own address in its transaction (the web's check sends it at once;
    // here a notification round does): three mails, naming no passkey, saying what to do.
    assert_eq!(app.pending_mail(), 3);
    app.advance(pcii_portal::workflow::pending_mail::AT_ONCE_GRACE + 1);
    app.notification_round();
    assert_eq!(app.pending_mail(), 0);
    let mails: Vec<String> = app
        .outbox()
        .into_iter()
        .filter(|m| m.contains("A passkey was removed from your PCII portal account"))
        .collect();
    assert_eq!(mails.len(), 3, "{mails:?}");
    for m in &mails {
        assert!(m.contains("To: o@example.gov"), "{m}");
        assert!(m.contains("Forgot your password?"), "{m}");
        assert!(!m.contains("Blue key") && !m.contains("Laptop"), "{m}");
    }
    // The two that left factors link to them; the last, whose password was voided, to choosing a new one.
    let linking = |path: &str| mails.iter().filter(|m| m.contains(path)).count();
    assert_eq!(
        (linking("/account/security"), linking("/password/forgot")),
        (2, 1)
    );
}

/// A session that gave the password but not the factor it owes ends after a quarter of an hour, however often it is
/// used: it is all that a stolen password gets, and it held a place under the account's session cap for hours.
#[test]
fn a_session_still_owing_its_factor_ends_after_a_quarter_of_an_hour() {
    use pcii_portal::auth::sessions::PENDING_FACTOR_SECS;
    let app = TestApp::new();
    app.create_user(Role::Officer, "o@example.gov", None);
    let mut b = password_only(&app, "o@example.gov");
    // Used every few minutes, so never idle.
    for _ in 0..3 {
        app.advance(PENDING_FACTOR_SECS / 4);
        assert_eq!(b.get("/login/second-factor").status, Status::Ok);
    }
    app.advance(PENDING_FACTOR_SECS / 4 + 1);
    let res = b.get("/login/second-factor");
    assert_eq!(res.status, Status::SeeOther, "{}", res.body);
    let code = common::totp_code(app.state(), "o@example.gov");
    b.post("/login/second-factor", &[("factor_code", &code)]);
    assert_eq!(app.audit_count("mfa.verified"), 0);
    assert_eq!(app.audit_count("auth.session_expired"), 1);
    // A fresh sign-in gives the factor as usual.
    assert_eq!(b.login("o@example.gov", PASSWORD), Status::SeeOther);
}

/// The same for the password that removing a factor asks for: wrong passwords sent at once count no more than the
/// limit, and once they have locked the form the right one removes nothing.
#[test]
fn wrong_passwords_sent_in_parallel_to_remove_a_factor_are_checked_no_more_often_than_the_limit_allows(
) {
    use pcii_portal::audit::log::Actor;
    use pcii_portal::auth::second_factor::{self, Removal, RemovalResult};
    use pcii_portal::auth::throttle::Policy;

    let app = TestApp::new();
    let id = app.create_user(Role::Submitter, "ann@acme.example", Some("Acme"));
    app.enrol_authenticator(&id);
    let state = app.state();
    let user = app.with_conn(|c| pcii_portal::models::account::find(c, &id).unwrap());
    let policy = Policy::current_password(&state.settings);
    let limit = usize::try_from(policy.max_failures).unwrap();
    let remove = |password: &str| {
        second_factor::remove_own_with_password(
            &state.db,
            &state.audit,
            &state.hasher,
            &state.throttle_key,
            policy,
            &Actor::cli(),
            &user,
            false,
            password,
            Removal::AuthenticatorApp,
            state.clock.now(),
        )
        .unwrap()
    };
    let guesses: Vec<String> = (0..limit * 3)
        .map(|n| format!("not the password {n}"))
        .collect();
    let answers = common::all_at_once(&guesses, |guess| remove(guess));
    let wrong = answers
        .iter()
        .filter(|a| matches!(a, RemovalResult::WrongPassword))
        .count();
    let throttled = answers
        .iter()
        .filter(|a| matches!(a, RemovalResult::Throttled))
        .count();
    assert_eq!((wrong, throttled), (limit, guesses.len() - limit));
    assert!(matches!(remove(PASSWORD), RemovalResult::Throttled));
    let apps: i64 = app.with_conn(|c| {
        totp_factors::table
            .filter(totp_factors::user_id.eq(&id))
            .count()
            .get_result(c)
            .unwrap()
    });
    assert_eq!(apps, 1, "the authenticator app is still there");
}

/// Removing a factor with the password checks it against the hash read with the request; a password changed or
/// reset meanwhile (which ends the session too) is no longer the account's, and the commit refuses the removal.
#[test]
fn a_factor_removal_whose_password_changed_during_the_request_removes_nothing() {
    use diesel::prelude::*;
    use pcii_portal::audit::log::Actor;
    use pcii_portal::auth::second_factor::{self, Removal, RemovalResult};
    use pcii_portal::auth::throttle::Policy;
    use pcii_portal::db::schema::users;

    let app = TestApp::new();
    let id = app.create_user(Role::Submitter, "ann@acme.example", Some("Acme"));
    app.enrol_authenticator(&id);
    let state = app.state();
    // The account as the request read it, before the owner's password reset committed.
    let as_read = app.with_conn(|c| pcii_portal::models::account::find(c, &id).unwrap());
    let new_hash = state
        .hasher
        .hash("the owner's new long passphrase")
        .unwrap();
    app.with_conn(|c| {
        diesel::update(users::table.find(&id))
            .set(users::password_hash.eq(&new_hash))
            .execute(c)
            .unwrap()
    });
    let result = second_factor::remove_own_with_password(
        &state.db,
        &state.audit,
        &state.hasher,
        &state.throttle_key,
        Policy::current_password(&state.settings),
        &Actor::cli(),
        &as_read,
        false,
        PASSWORD,
        Removal::AuthenticatorApp,
        state.clock.now(),
    )
    .unwrap();
    assert!(matches!(result, RemovalResult::WrongPassword));
    let apps: i64 = app.with_conn(|c| {
        totp_factors::table
            .filter(totp_factors::user_id.eq(&id))
            .count()
            .get_result(c)
            .unwrap()
    });
    assert_eq!(apps, 1, "the authenticator app is still there");
}

#[test]
fn no_seed_or_code_is_in_clear_in_the_database_file_or_the_audit_export_and_rotation_reseals_the_seeds(
) {
    let app = TestApp::new();
    let mut olive = invited_officer(&app, "olive@example.gov");
    olive.login("olive@example.gov", "olive's own long passphrase");
    let (seed, codes) = olive.enrol_authenticator_on_pages();
    olive.post("/logout", &[]);
    // Sign in once with a recovery code, once with the app.
    let mut b = app.browser();
    b.post(
        "/login",
        &[
            ("email", "olive@example.gov"),
            ("password", "olive's own long passphrase"),
        ],
    );
    assert_eq!(
        b.post("/login/second-factor", &[("factor_code", &codes[0])])
            .status,
        Status::SeeOther
    );
    assert_eq!(
        olive.login("olive@example.gov", "olive's own long passphrase"),
        Status::SeeOther
    );

    // Rotation: the seeds are re-sealed to the new master identity, the old one is retired, sign-in still works.
    let keys = app.keys_dir();
    let mut ring = pcii_portal::crypto::keys::KeyRing::load(&keys, &[]).unwrap();
    let old = ring.current_key_id().to_string();
    let rotated = app
        .with_conn(|c| {
            pcii_portal::key_store::rotation::rotate(&mut ring, c, &app.state().audit, &mut |_| {})
        })
        .unwrap();
    assert_eq!(rotated.retired, vec![old.clone()]);
    let sealed_to: Vec<String> = app.with_conn(|c| {
        totp_factors::table
            .select(totp_factors::master_key_id)
            .load(c)
            .unwrap()
    });
    assert!(sealed_to.iter().all(|k| *k == rotated.current_key_id));
    let mut after = app.browser();
    assert_eq!(
        after.login("olive@example.gov", "olive's own long passphrase"),
        Status::SeeOther
    );
    assert_eq!(after.get("/officer").status, Status::Ok);

    // The database file: no seed (raw or as base32), no recovery code, no used code.
    let base32 = totp_rs::Secret::from(seed.clone()).to_base32();
    let mut auditor = app.login_as(Role::Auditor, "u@example.gov", None);
    let (status, export, _) = auditor.post_bytes("/audit/export", &[]);
    assert_eq!(status, Status::Ok);
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(export.unwrap())).unwrap();
    let mut exported = Vec::new();
    for i in 0..archive.len() {
        archive
            .by_index(i)
            .unwrap()
            .read_to_end(&mut exported)
            .unwrap();
    }
    // SQLite only (a PostgreSQL database is no file of ours): read it whole, with its write-ahead log.
    let mut db_bytes = Vec::new();
    if app.database_url.is_empty() {
        for name in ["pcii.sqlite3", "pcii.sqlite3-wal"] {
            if let Ok(b) = std::fs::read(app.data_dir().join(name)) {
                db_bytes.extend(b);
            }
        }
        assert!(!db_bytes.is_empty());
    }
    let contains = |hay: &[u8], needle: &[u8]| hay.windows(needle.len()).any(|w| w == needle);
    for (what, bytes) in [("database", &db_bytes), ("audit export", &exported)] {
        assert!(!contains(bytes, &seed), "the raw seed is in the {what}");
        assert!(
            !contains(bytes, base32.as_bytes()),
            "the seed in base32 is in the {what}"
        );
        for code in &codes {
            assert!(
                !contains(bytes, code.as_bytes()),
                "a recovery code is in the {what}"
            );
            let bare: String = code.chars().filter(|c| *c != '-').collect();
            assert!(
                !contains(bytes, bare.as_bytes()),
                "a recovery code is in the {what}"
            );
        }
    }
    // The session rows say when a factor was used, never with what.
    let used: Vec<Option<i64>> = app.with_conn(|c| {
        sessions::table
            .select(sessions::second_factor_at)
            .load(c)
            .unwrap()
    });
    assert!(used.iter().any(Option::is_some));
}

#[test]
fn on_a_host_name_origin_passkeys_are_offered_and_a_forged_answer_is_refused() {
    // WebAuthn needs a host name; an IP-address origin (the default) offers no passkeys.
    let plain = TestApp::new();
    let mut o = plain.login_as(Role::Officer, "o@example.gov", None);
    let page = o.get("/account/security");
    assert!(!page.body.contains("data-webauthn=\"register\""));
    assert!(page
        .body
        .contains("Passkeys need the portal to be reached by a host name"));

    let app = TestApp::with(|f| f.merge(("public_origin", "http://localhost:8000")));
    let mut o = app.login_as(Role::Officer, "o@example.gov", None);
    let page = o.get("/account/security");
    assert_eq!(page.status, Status::Ok);
    assert!(page.body.contains("data-webauthn=\"register\""));
    assert!(
        page.body.contains("challenge"),
        "the ceremony's options are on the page"
    );
    assert!(page.body.contains("/static/webauthn.js"));
    // A made-up answer adds nothing.
    let res = o.post(
        "/account/security/passkeys",
        &[
            ("name", "Forged key"),
            ("webauthn_registration", "{\"id\":\"x\"}"),
        ],
    );
    assert_eq!(res.status, Status::UnprocessableEntity, "{}", res.body);
    assert!(res.body.contains("The passkey could not be added"));
    assert_eq!(app.audit_count("mfa.enrolled"), 0);
    // Recorded as a failed enrolment, as a wrong code at an app's setup is, and the ceremony is used up: the same
    // answer again finds nothing to answer (it did: the refusal was an error that rolled the consumption back).
    assert_eq!(
        audit_reasons(&app, "mfa.failed"),
        ["enrolment: a passkey answer that did not verify"]
    );
    let again = o.post(
        "/account/security/passkeys",
        &[
            ("name", "Forged key"),
            ("webauthn_registration", "{\"id\":\"x\"}"),
        ],
    );
    assert_eq!(again.status, Status::UnprocessableEntity, "{}", again.body);
    assert!(
        again.body.contains("expired or was already used"),
        "{}",
        again.body
    );
    let listed = o.get("/account/security");
    assert!(!listed.body.contains("Forged key"));

    // With a stale factor, adding a passkey asks for the factor first, the registration's answer kept for after it:
    // it is not taken for the factor's answer (it was: checked as a sign-in answer, failed, counted as a wrong factor).
    // The field the page's registration form (and its script) puts the answer in:
    let form = &page.body[page.body.find("data-webauthn=\"register\"").unwrap()..];
    let form = &form[..form.find("</form>").unwrap()];
    let needle = "<input type=\"hidden\" name=\"webauthn_";
    let at = form.find(needle).expect("the answer's field") + needle.len() - "webauthn_".len();
    let field = &form[at..at + form[at..].find('"').unwrap()];
    app.advance(16 * 60);
    let failed = app.audit_count("mfa.failed");
    let res = o.post(
        "/account/security/passkeys",
        &[("name", "Laptop"), (field, "{\"id\":\"x\"}")],
    );
    assert_eq!(res.status, Status::Unauthorized, "{}", res.body);
    assert!(
        res.body.contains(&format!("name=\"{field}\"")),
        "kept for after the step-up: {}",
        res.body
    );
    assert_eq!(
        app.audit_count("mfa.failed"),
        failed,
        "not counted as a wrong factor"
    );

    // A made-up passkey answer at sign-in is a failure like a wrong code: refused, throttled, audited.
    let mut b = password_only(&app, "o@example.gov");
    let res = b.post(
        "/login/second-factor",
        &[("webauthn_response", "{\"id\":\"AAAA\",\"rawId\":\"AAAA\"}")],
    );
    assert_eq!(res.status, Status::Unauthorized);
    assert!(audit_reasons(&app, "mfa.failed")
        .iter()
        .any(|r| r == "sign-in: a passkey answer that did not verify"));
    assert_eq!(
        b.get("/officer").header("Location"),
        Some("/login/second-factor")
    );
}

#[test]
fn a_submitter_with_a_factor_gives_it_again_before_choosing_destruction() {
    let app = TestApp::new();
    let mut sam = app.login_as(Role::Submitter, "sam@acme.example", Some("Acme"));
    sam.enrol_authenticator_on_pages();
    let res = sam.post_multipart(
        "/submissions",
        &complete_fields("To be destroyed", "submit"),
    );
    let id = crate::common::submission_id(&res);
    let mut officer = app.login_as(Role::Officer, "o@example.gov", None);
    let res = officer.post(
        &format!("/officer/submissions/{id}/decision"),
        &[
            ("decision", "not_validated"),
            ("reason", "Not CII"),
            ("confirm", "1"),
        ],
    );
    assert_eq!(res.status, Status::SeeOther, "{}", res.body);

    app.advance(20 * 60);
    let choose = format!("/submissions/{id}/disposition");
    let res = sam.post(&choose, &[("disposition", "destroy"), ("confirm", "yes")]);
    assert_eq!(res.status, Status::Unauthorized);
    assert!(res.body.contains("Confirm it is you"));
    let status = |app: &TestApp| -> String {
        app.with_conn(|c| {
            pcii_portal::db::schema::submissions::table
                .find(&id)
                .select(pcii_portal::db::schema::submissions::status)
                .first(c)
                .unwrap()
        })
    };
    assert_eq!(status(&app), "not_validated", "nothing destroyed yet");
    let code = common::totp_code(app.state(), "sam@acme.example");
    let res = sam.post(
        &choose,
        &[
            ("disposition", "destroy"),
            ("confirm", "yes"),
            ("factor_code", &code),
        ],
    );
    assert_eq!(res.status, Status::SeeOther, "{}", res.body);
    assert_eq!(status(&app), "destroyed");
}

/// A `next` that is no valid local path (a space, a quote, a non-ASCII letter, another host) sends the person to
/// the dashboard once the factor is given: never a 500 after the code was accepted.
#[test]
fn a_step_up_with_a_next_that_is_no_local_path_ends_on_the_dashboard() {
    let app = TestApp::new();
    let mut officer = app.login_as(Role::Officer, "o@example.gov", None);
    for next in [
        "/a b",
        "/\u{e9}",
        "/\"x",
        "//evil.example/",
        "https://evil.example/",
    ] {
        app.advance(31); // a fresh time step: each code is accepted once
        let code = common::totp_code(app.state(), "o@example.gov");
        let res = officer.post(
            "/account/step-up",
            &[("next", next), ("factor_code", &code)],
        );
        assert_eq!(res.status, Status::SeeOther, "{next:?}: {}", res.body);
        assert_eq!(res.header("Location"), Some("/dashboard"), "{next:?}");
    }
}

#[test]
fn a_pending_app_setup_is_shown_only_to_its_session_and_not_after_fifteen_minutes() {
    let app = TestApp::new();
    let mut a = app.login_as(Role::Submitter, "sam@acme.example", Some("Acme"));
    // Someone else who knows the password signs in to the same account, in another browser.
    let mut b = app.browser();
    assert_eq!(b.login("sam@acme.example", PASSWORD), Status::SeeOther);

    let first = a.get("/account/security/totp");
    assert_eq!(first.status, Status::Ok, "{}", first.body);
    let seed_a = common::shown_secret(&first.body);
    // The session that started it sees it again.
    assert_eq!(
        common::shown_secret(&a.get("/account/security/totp").body),
        seed_a
    );
    // Another session of the account gets a seed of its own, which replaces A's.
    let seed_b = common::shown_secret(&b.get("/account/security/totp").body);
    assert_ne!(seed_a, seed_b);
    let clock = app.state().clock.clone();
    for who in [&mut a, &mut b] {
        let res = who.post(
            "/account/security/totp",
            &[("code", &common::code_for(&seed_a, 0, &clock))],
        );
        assert_ne!(
            res.header("Location"),
            Some("/account/security/recovery-codes"),
            "the replaced seed confirmed"
        );
    }
    let user = app.user_id("sam@acme.example");
    let factors: i64 = app.with_conn(|c| {
        totp_factors::table
            .filter(totp_factors::user_id.eq(&user))
            .count()
            .get_result(c)
            .unwrap()
    });
    assert_eq!(factors, 0);

    // A setup left for more than fifteen minutes is not shown again: a new seed.
    let seed_b2 = common::shown_secret(&b.get("/account/security/totp").body);
    assert_eq!(seed_b2, seed_b);
    app.advance(15 * 60 + 1);
    let seed_b3 = common::shown_secret(&b.get("/account/security/totp").body);
    assert_ne!(seed_b3, seed_b);
    let res = b.post(
        "/account/security/totp",
        &[("code", &common::code_for(&seed_b, 0, &clock))],
    );
    assert_ne!(
        res.header("Location"),
        Some("/account/security/recovery-codes")
    );
    // The fresh one is confirmed by its own session.
    b.enrol_authenticator_on_pages();
}

#[test]
fn a_password_change_or_reset_drops_a_pending_app_setup() {
    use pcii_portal::db::schema::totp_enrolments;
    let app = TestApp::new();
    let mut a = app.login_as(Role::Submitter, "sam@acme.example", Some("Acme"));
    let pending =
        || -> i64 { app.with_conn(|c| totp_enrolments::table.count().get_result(c).unwrap()) };
    assert_eq!(a.get("/account/security/totp").status, Status::Ok);
    assert_eq!(pending(), 1);
    let changed = a.post(
        "/account/password",
        &[
            ("current_password", PASSWORD),
            ("new_password", "a brand new changed passphrase"),
        ],
    );
    assert_eq!(changed.status, Status::SeeOther, "{}", changed.body);
    assert_eq!(pending(), 0);

    assert_eq!(a.get("/account/security/totp").status, Status::Ok);
    assert_eq!(pending(), 1);
    let mut anon = app.browser();
    anon.post("/password/forgot", &[("email", "sam@acme.example")]);
    let link = app
        .mailed_link("sam@acme.example", "/password/reset/")
        .expect("a reset link");
    let reset = anon.post(&link, &[("new_password", "a brand new reset passphrase")]);
    assert_eq!(reset.status, Status::SeeOther);
    assert_eq!(pending(), 0);
}

/// An account that must have a factor signs in with its password alone and is sent to enrol one. Enrolling it
/// completes the sign-in as giving it at the second step does: on a new session token, the one issued after the
/// password alone ended.
#[test]
fn enrolling_the_factor_an_account_must_have_finishes_signing_in_on_a_new_session_token() {
    use pcii_portal::db::schema::sessions;
    use std::collections::BTreeSet;
    let app = TestApp::new();
    let mut olive = invited_officer(&app, "olive@example.gov");
    olive.login("olive@example.gov", "olive's own long passphrase");
    let olive_id = app.user_id("olive@example.gov");
    let tokens = |app: &TestApp| -> BTreeSet<String> {
        app.with_conn(|c| {
            sessions::table
                .filter(sessions::user_id.eq(&olive_id))
                .select(sessions::token_hash)
                .load::<String>(c)
                .unwrap()
                .into_iter()
                .collect()
        })
    };
    let before = tokens(&app);
    olive.enrol_authenticator_on_pages();
    let after = tokens(&app);
    assert_eq!(
        before.difference(&after).count(),
        1,
        "the password-only token still lives"
    );
    assert_eq!(after.difference(&before).count(), 1, "no new token");
    // The new token holds the full sign-in.
    assert_eq!(olive.get("/officer").status, Status::Ok);
}

/// The token issued after the password alone never holds the full sign-in, whatever happens once the factor's check
/// has committed: the check itself (at sign-in, and at the enrolment an account owes) replaces the session in its
/// own transaction and hands back the new token. Called here as the pages call it, but with no response to set the
/// cookie (as after a crash or a busy database at that point): the old token is gone already, the new one holds
/// the full sign-in.
#[test]
fn the_factor_s_own_transaction_ends_the_password_only_token() {
    use pcii_portal::audit::log::Actor;
    use pcii_portal::auth::second_factor::{
        self, Answer, Checked, Checker, Enrolled, Limits, Method, Purpose,
    };
    use pcii_portal::auth::sessions::hash_token;

    let app = TestApp::new();
    let state = app.state();
    let ring = state.current_keys();
    let checker = Checker {
        audit: &state.audit,
        ring: &ring,
        keys: &state.throttle_key,
        limits: Limits::from_settings(&state.settings),
    };
    // (token hash, used a factor) of each of an account's sessions.
    let sessions_of = |user_id: &str| -> Vec<(String, bool)> {
        app.with_conn(|c| {
            sessions::table
                .filter(sessions::user_id.eq(user_id))
                .select((sessions::token_hash, sessions::second_factor_at))
                .load::<(String, Option<i64>)>(c)
                .unwrap()
                .into_iter()
                .map(|(hash, at)| (hash, at.is_some()))
                .collect()
        })
    };

    // At sign-in.
    let id = app.create_user(Role::Officer, "o@example.gov", None);
    let user = app.with_conn(|c| pcii_portal::models::account::find(c, &id).unwrap());
    let mut b = password_only(&app, "o@example.gov");
    let [(old, false)] = &sessions_of(&id)[..] else {
        panic!("one session owing its factor: {:?}", sessions_of(&id));
    };
    let code = common::totp_code(state, "o@example.gov");
    let checked = second_factor::check(
        &mut state.db.get().unwrap(),
        &checker,
        &Actor::cli(),
        &user,
        old,
        Answer::Code(&code),
        Purpose::SignIn,
        state.clock.now(),
    )
    .unwrap();
    let Checked::Passed(Method::AuthenticatorApp, Some(token)) = checked else {
        panic!("passed on a new token: {checked:?}");
    };
    assert_eq!(
        sessions_of(&id),
        vec![(hash_token(&token.into_cookie_value()), true)],
        "the password-only token outlived the factor's commit"
    );
    assert_ne!(b.get("/officer").status, Status::Ok);

    // At the enrolment the account owes.
    let mut olive = invited_officer(&app, "olive@example.gov");
    olive.login("olive@example.gov", "olive's own long passphrase");
    let olive_id = app.user_id("olive@example.gov");
    let olive_user = app.with_conn(|c| pcii_portal::models::account::find(c, &olive_id).unwrap());
    let setup = olive.get("/account/security/totp");
    assert_eq!(setup.status, Status::Ok, "{}", setup.body);
    let [(old, false)] = &sessions_of(&olive_id)[..] else {
        panic!("one session owing its factor: {:?}", sessions_of(&olive_id));
    };
    let code = code_for(&common::shown_secret(&setup.body), 0, &state.clock);
    let enrolled = second_factor::confirm_totp(
        &mut state.db.get().unwrap(),
        &checker,
        &Actor::cli(),
        &olive_user,
        old,
        &code,
        state.clock.now(),
    )
    .unwrap();
    let Enrolled::Done {
        renewed: Some(token),
        ..
    } = enrolled
    else {
        panic!("enrolled on a new token");
    };
    assert_eq!(
        sessions_of(&olive_id),
        vec![(hash_token(&token.into_cookie_value()), true)],
        "the password-only token outlived the enrolment's commit"
    );
    assert_ne!(olive.get("/officer").status, Status::Ok);
}

/// A key rotation re-seals each authenticator secret only if the row still holds the secret it read: a new
/// authenticator confirmed meanwhile (sealed to the same, old key) is not overwritten with the old one.
#[test]
fn a_rotation_does_not_put_back_an_authenticator_replaced_while_it_ran() {
    use pcii_portal::models::second_factor as model;
    let app = TestApp::new();
    let id = app.create_user(Role::Submitter, "ann@acme.example", Some("Acme"));
    app.enrol_authenticator(&id);
    // What the rotation read: every secret not sealed to the (new) current key.
    let rows = app.with_conn(|c| model::secrets_not_sealed_to(c, "the-new-master-key").unwrap());
    let row = rows
        .into_iter()
        .find(|r| r.user_id == id)
        .expect("the app's secret");
    // The owner replaces the app meanwhile; its secret is sealed to the same old key.
    app.with_conn(|c| {
        diesel::update(totp_factors::table.find(&id))
            .set(totp_factors::secret_sealed.eq("the new app's sealed secret"))
            .execute(c)
            .unwrap()
    });
    let stored = app.with_conn(|c| {
        model::reseal(c, &row, "the old secret re-sealed", "the-new-master-key").unwrap()
    });
    assert_eq!(stored, 0);
    let now: String = app.with_conn(|c| {
        totp_factors::table
            .find(&id)
            .select(totp_factors::secret_sealed)
            .first(c)
            .unwrap()
    });
    assert_eq!(now, "the new app's sealed secret");
}

/// One TOTP secret the key ring cannot open (damaged, or sealed to an identity no longer there) no longer stops a
/// rotation: it is left as it is and named, the others are re-sealed, and the identity it is sealed to is kept.
#[test]
fn a_rotation_re_seals_the_other_secrets_past_one_it_cannot_open() {
    let app = TestApp::new();
    let mut olive = invited_officer(&app, "olive@example.gov");
    olive.login("olive@example.gov", "olive's own long passphrase");
    olive.enrol_authenticator_on_pages();
    // An auditor made with its authenticator already set up: the secret to damage.
    app.login_as(Role::Auditor, "otto@example.gov", None);
    let otto_id = app.user_id("otto@example.gov");
    let keys = app.keys_dir();
    let mut ring = pcii_portal::crypto::keys::KeyRing::load(&keys, &[]).unwrap();
    let old = ring.current_key_id().to_string();
    app.with_conn(|c| {
        diesel::update(totp_factors::table.filter(totp_factors::user_id.eq(&otto_id)))
            .set(totp_factors::secret_sealed.eq(format!("age:{old}:bm90IGFuIGFnZSBmaWxl")))
            .execute(c)
            .unwrap()
    });
    let rotate = |ring: &mut pcii_portal::crypto::keys::KeyRing| {
        app.with_conn(|c| {
            pcii_portal::key_store::rotation::rotate(ring, c, &app.state().audit, &mut |_| {})
        })
    };
    let rotated = rotate(&mut ring).expect("the rotation goes past the damaged secret");
    assert_eq!(rotated.unopenable_secrets, vec![otto_id.clone()]);
    assert_eq!(rotated.kept, vec![old.clone()]);
    let sealed_to: Vec<(String, String)> = app.with_conn(|c| {
        totp_factors::table
            .select((totp_factors::user_id, totp_factors::master_key_id))
            .load(c)
            .unwrap()
    });
    for (user, key) in sealed_to {
        let expected = if user == otto_id {
            &old
        } else {
            &rotated.current_key_id
        };
        assert_eq!(&key, expected, "{user}");
    }
    // Olive still signs in with her app; a second rotation goes through too.
    assert_eq!(
        app.browser()
            .login("olive@example.gov", "olive's own long passphrase"),
        Status::SeeOther
    );
    assert!(rotate(&mut ring).is_ok());
}

/// An authenticator-app enrolment never confirmed is deleted by the hourly housekeeping round once past its 15
/// minutes: its sealed secret would otherwise stay for ever (and keep the master identity it is sealed to from
/// being retired).
#[test]
fn a_lapsed_enrolment_is_deleted_by_the_hourly_round() {
    use pcii_portal::db::schema::totp_enrolments;
    let app = TestApp::new();
    let mut b = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    assert_eq!(b.get("/account/security/totp").status, Status::Ok);
    let pending =
        || -> i64 { app.with_conn(|c| totp_enrolments::table.count().get_result(c).unwrap()) };
    assert_eq!(pending(), 1);
    let round = || {
        app.housekeeping_round()
            .expect("this instance holds the lease");
    };
    // Within its time (the test clock runs with the wall clock: a minute's leeway): kept.
    app.advance(14 * 60);
    round();
    assert_eq!(pending(), 1);
    app.advance(2 * 60);
    round();
    assert_eq!(pending(), 0);
}

/// A code's step is spent on the authenticator whose seed it was checked against (read before the transaction): an
/// authenticator set up again in between is another seed, and a code of the old one does not pass on it.
#[test]
fn a_step_is_spent_only_on_the_seed_it_was_checked_against() {
    use pcii_portal::models::second_factor as model;
    let app = TestApp::new();
    let olive = app.create_user(Role::Officer, "olive@example.gov", None);
    let now = app.state().clock.now();
    app.with_conn(|c| {
        model::put_totp(c, &olive, "sealed-old-seed", "master", 10, now).unwrap();
        // Set up again between the check and its transaction.
        model::put_totp(c, &olive, "sealed-new-seed", "master", 10, now).unwrap();
        assert_eq!(
            model::use_step(c, &olive, "sealed-old-seed", 11).unwrap(),
            0
        );
        assert_eq!(
            model::use_step(c, &olive, "sealed-new-seed", 11).unwrap(),
            1
        );
        // A replay on the right seed is still refused.
        assert_eq!(
            model::use_step(c, &olive, "sealed-new-seed", 11).unwrap(),
            0
        );
    });
}

/// Two requests counting one key whose run is over: both find the window closed, one restarts it; the other's
/// restart finds it restarted and counts in that window, so neither count is lost.
#[test]
fn a_count_that_loses_the_race_to_restart_a_window_counts_in_the_new_one() {
    use pcii_portal::models::throttle as model;
    let app = TestApp::new();
    let now = 1_000_000;
    let (opened_after, lock_ended_after) = (now - 600, now - 600);
    app.with_conn(|c| {
        model::insert_if_absent(c, "signin:test", now - 10_000).unwrap();
        // Both see the run over.
        assert!(!model::count_in_window(c, "signin:test", opened_after, lock_ended_after).unwrap());
        assert!(!model::count_in_window(c, "signin:test", opened_after, lock_ended_after).unwrap());
        // The first restarts it; the second's restart finds it restarted, and it counts in the new window.
        assert!(
            model::restart_window(c, "signin:test", now, opened_after, lock_ended_after).unwrap()
        );
        assert!(
            !model::restart_window(c, "signin:test", now, opened_after, lock_ended_after).unwrap()
        );
        assert!(model::count_in_window(c, "signin:test", opened_after, lock_ended_after).unwrap());
        assert_eq!(model::find(c, "signin:test").unwrap().unwrap().failures, 2);
    });
}
