//! Sign-in hardening: throttling per (account, address) and per address, what the throttle table keeps, weak
//! passwords, browser-session cookies, the account's live sessions, the throttled current-password check,
//! per-address limits on registration and reset requests, and email normalisation.

use std::net::SocketAddr;

use crate::common::{self, Browser, TestApp, PASSWORD};
use diesel::prelude::*;
use rocket::http::{Header, Status};

use pcii_portal::db::schema::{audit_entries, login_throttle, sessions, users};
use pcii_portal::domain::Role;

fn addr(s: &str) -> SocketAddr {
    format!("{s}:40000").parse().unwrap()
}

fn register_fields<'a>(email: &'a str, password: &'a str) -> [(&'a str, &'a str); 4] {
    [
        ("display_name", "Ann Operator"),
        ("organisation", "Acme Water"),
        ("email", email),
        ("password", password),
    ]
}

/// Every row of the throttle table, every column.
/// The counting rows (not the `~forgotten:<kind>` markers of when each kind's finished rows were last forgotten).
fn throttle_rows(app: &TestApp) -> Vec<(String, i64, i64, i64)> {
    app.with_conn(|c| {
        login_throttle::table
            .filter(login_throttle::throttle_key.not_like("~forgotten:%"))
            .select((
                login_throttle::throttle_key,
                login_throttle::failures,
                login_throttle::window_start,
                login_throttle::locked_until,
            ))
            .load(c)
            .unwrap()
    })
}

#[test]
fn a_stranger_guessing_from_one_address_does_not_lock_the_owner_out_elsewhere() {
    let app = TestApp::new();
    app.create_user(Role::Submitter, "victim@acme.example", Some("Acme"));
    app.create_user(Role::Submitter, "other@acme.example", Some("Acme"));
    let max = app.state().settings.login_max_failures;
    let (a, b) = (addr("198.51.100.1"), addr("198.51.100.2"));

    let mut stranger = app.browser();
    for _ in 0..max {
        assert_eq!(
            stranger.login_from("victim@acme.example", "wrong password, again", a),
            Status::Unauthorized
        );
    }
    // The owner, from another address, signs in.
    let mut owner = app.browser();
    assert_eq!(
        owner.login_from("victim@acme.example", PASSWORD, b),
        Status::SeeOther
    );
    assert_eq!(owner.get("/account").status, Status::Ok);
    // From address A, this account is locked, even with the right password.
    assert_eq!(
        stranger.login_from("victim@acme.example", PASSWORD, a),
        Status::TooManyRequests
    );
    // Address A as a whole is not: another account signs in from it.
    let mut colleague = app.browser();
    assert_eq!(
        colleague.login_from("other@acme.example", PASSWORD, a),
        Status::SeeOther
    );
}

#[test]
fn many_accounts_tried_from_one_address_lock_that_address() {
    let app = TestApp::new();
    app.create_user(Role::Submitter, "someone@acme.example", Some("Acme"));
    let max = app.state().settings.login_max_failures;
    let (c, d) = (addr("198.51.100.3"), addr("198.51.100.4"));
    let mut b = app.browser();
    // The per-address allowance is four times the per-account one, spread over many accounts.
    for i in 0..max * 4 {
        assert_eq!(
            b.login_from(
                &format!("guess{i}@acme.example"),
                "wrong password, again",
                c
            ),
            Status::Unauthorized,
            "attempt {i}"
        );
    }
    assert_eq!(
        b.login_from("someone@acme.example", PASSWORD, c),
        Status::TooManyRequests
    );
    // Another address is unaffected.
    let mut elsewhere = app.browser();
    assert_eq!(
        elsewhere.login_from("someone@acme.example", PASSWORD, d),
        Status::SeeOther
    );
}

#[test]
fn the_throttle_table_never_holds_an_email_or_an_address() {
    let app = TestApp::new();
    app.create_user(Role::Submitter, "victim@acme.example", Some("Acme"));
    let ip = "203.0.113.77";
    let mut b = app.browser();
    for _ in 0..2 {
        b.login_from("Victim@Acme.example", "wrong password, again", addr(ip));
    }
    b.post_from(
        "/register",
        &register_fields("newcomer@acme.example", PASSWORD),
        addr(ip),
    );
    b.post_from(
        "/password/forgot",
        &[("email", "victim@acme.example")],
        addr(ip),
    );
    let rows = throttle_rows(&app);
    assert!(
        rows.len() >= 4,
        "login per account+address, per address, registration, reset: {rows:?}"
    );
    let all = rows
        .iter()
        .map(|(k, f, w, l)| format!("{k}|{f}|{w}|{l}"))
        .collect::<Vec<_>>()
        .join("\n")
        .to_lowercase();
    for clear in [
        "victim",
        "acme.example",
        "newcomer",
        "@",
        ip,
        "203.0.113",
        "unknown",
    ] {
        assert!(
            !all.contains(clear),
            "{clear:?} in the throttle table:\n{all}"
        );
    }
}

#[test]
fn throttle_rows_are_forgotten_after_their_window() {
    let app = TestApp::new();
    let window = app.state().settings.login_window_seconds;
    let mut b = app.browser();
    b.login_from(
        "ghost@acme.example",
        "wrong password, again",
        addr("198.51.100.5"),
    );
    let old: Vec<String> = throttle_rows(&app).into_iter().map(|r| r.0).collect();
    assert_eq!(
        old.len(),
        3,
        "failures per account+address and per address, attempts per address: {old:?}"
    );
    // Their window closes.
    app.advance(window + 10);
    // Another failure of the same kinds, from elsewhere.
    b.login_from(
        "ghost@acme.example",
        "wrong password, again",
        addr("198.51.100.6"),
    );
    let now_rows: Vec<String> = throttle_rows(&app).into_iter().map(|r| r.0).collect();
    assert_eq!(now_rows.len(), 3, "{now_rows:?}");
    for k in &old {
        assert!(!now_rows.contains(k), "{k} outlived its window");
    }
}

#[test]
fn weak_passwords_are_refused_with_zxcvbn_feedback() {
    let app = TestApp::new();
    let mut visitor = app.browser();
    for weak in ["123456789012", "passwordpassword", "qwertyuiopasdfgh"] {
        let res = visitor.post("/register", &register_fields("ann@acme.example", weak));
        assert_eq!(res.status, Status::UnprocessableEntity, "{weak}");
        assert!(
            res.body.contains("too easy to guess"),
            "{weak}: {}",
            res.body
        );
        assert!(res.body.contains("Add another word or two"), "{weak}");
    }
    // The email is a known word: a password made of it is weak for that person.
    let res = visitor.post(
        "/register",
        &register_fields(
            "annabelle.quartermaine@acme.example",
            "annabelle.quartermaine2024",
        ),
    );
    assert_eq!(res.status, Status::UnprocessableEntity);
    assert!(res.body.contains("too easy to guess"));
    let registered: i64 = app.with_conn(|c| users::table.count().get_result(c).unwrap());
    assert_eq!(registered, 0);

    let mut sam = app.login_as(Role::Submitter, "sam@acme.example", Some("Acme"));
    for weak in ["123456789012", "passwordpassword", "qwertyuiopasdfgh"] {
        let res = sam.post(
            "/account/password",
            &[("current_password", PASSWORD), ("new_password", weak)],
        );
        assert_eq!(res.status, Status::UnprocessableEntity, "{weak}");
        assert!(res.body.contains("too easy to guess"), "{weak}");
        assert!(res.body.contains("Add another word or two"), "{weak}");
    }
    // Still the old password, and still signed in.
    assert_eq!(sam.get("/account").status, Status::Ok);
    let mut again = app.browser();
    assert_eq!(again.login("sam@acme.example", PASSWORD), Status::SeeOther);
}

#[test]
fn the_session_cookie_has_no_expiry() {
    let app = TestApp::new();
    app.create_user(Role::Submitter, "sam@acme.example", Some("Acme"));
    let mut b = app.browser();
    let token = b.csrf();
    let res = app
        .client
        .post("/login")
        .header(rocket::http::ContentType::Form)
        .cookies(b.cookies.clone())
        .body(common::encode(&[
            ("csrf", &token),
            ("email", "sam@acme.example"),
            ("password", PASSWORD),
        ]))
        .dispatch();
    assert_eq!(res.status(), Status::SeeOther);
    let set_cookie: Vec<String> = res
        .headers()
        .get("Set-Cookie")
        .map(str::to_string)
        .collect();
    let session = set_cookie
        .iter()
        .find(|c| c.starts_with("pcii_session="))
        .expect("session cookie");
    let lower = session.to_lowercase();
    assert!(!lower.contains("expires"), "{session}");
    assert!(!lower.contains("max-age"), "{session}");
}

/// The public id of the account's session opened from `client_addr`.
fn public_id_from(app: &TestApp, client_addr: &str) -> String {
    app.with_conn(|c| {
        sessions::table
            .filter(sessions::client_addr.eq(client_addr))
            .select(sessions::public_id)
            .first::<Option<String>>(c)
            .unwrap()
            .expect("a public id")
    })
}

#[test]
fn the_account_page_lists_live_sessions_and_ends_another() {
    let app = TestApp::new();
    app.create_user(Role::Submitter, "sam@acme.example", Some("Acme"));
    let (a, b) = ("192.0.2.11", "192.0.2.12");
    let mut laptop = app.browser();
    let mut phone = app.browser();
    let ua = Header::new("User-Agent", "HardeningLaptop/1.0\u{7} (X11)");
    assert_eq!(
        laptop
            .post_with(
                "/login",
                &[("email", "sam@acme.example"), ("password", PASSWORD)],
                addr(a),
                &[ua],
            )
            .status,
        Status::SeeOther
    );
    assert_eq!(
        phone.login_from("sam@acme.example", PASSWORD, addr(b)),
        Status::SeeOther
    );

    let page = laptop.get("/account");
    assert_eq!(page.status, Status::Ok);
    assert!(
        page.body.contains(a) && page.body.contains(b),
        "{}",
        page.body
    );
    // The User-Agent is kept cleaned (the BEL dropped) and shown (Tera escapes its "/").
    let agent: Option<String> = app.with_conn(|c| {
        sessions::table
            .filter(sessions::client_addr.eq(a))
            .select(sessions::user_agent)
            .first(c)
            .unwrap()
    });
    assert_eq!(agent.as_deref(), Some("HardeningLaptop/1.0 (X11)"));
    assert!(
        page.body.contains("HardeningLaptop&#x2F;1.0 (X11)"),
        "{}",
        page.body
    );
    assert_eq!(page.body.matches("This session").count(), 1);
    let phone_id = public_id_from(&app, b);
    let laptop_id = public_id_from(&app, a);
    let end_phone = format!("/account/sessions/{phone_id}/end");
    assert!(page.body.contains(&end_phone));
    assert!(!page
        .body
        .contains(&format!("/account/sessions/{laptop_id}/end")));
    // Never the token's hash (nor, of course, the token).
    let hashes: Vec<String> = app.with_conn(|c| {
        sessions::table
            .select(sessions::token_hash)
            .load(c)
            .unwrap()
    });
    assert_eq!(hashes.len(), 2);
    for h in &hashes {
        assert!(!page.body.contains(h.as_str()));
    }

    // Another account cannot end it, nor can an unknown id be ended.
    let mut mallory = app.login_as(Role::Submitter, "mallory@other.example", Some("Other"));
    assert_eq!(mallory.post(&end_phone, &[]).status, Status::NotFound);
    assert_eq!(
        laptop
            .post(
                "/account/sessions/0123456789abcdef0123456789abcdef/end",
                &[]
            )
            .status,
        Status::NotFound
    );
    assert_eq!(phone.get("/account").status, Status::Ok);

    // The owner ends it: the phone's next request is not signed in.
    let res = laptop.post(&end_phone, &[]);
    assert_eq!(res.status, Status::SeeOther);
    assert_eq!(res.header("Location"), Some("/account"));
    assert_eq!(phone.get("/account").status, Status::Unauthorized);
    assert_eq!(laptop.get("/account").status, Status::Ok);
    let ended: i64 = app.with_conn(|c| {
        audit_entries::table
            .filter(audit_entries::action.eq("session.end"))
            .filter(audit_entries::outcome.eq("success"))
            .filter(audit_entries::object_id.eq(&phone_id))
            .count()
            .get_result(c)
            .unwrap()
    });
    assert_eq!(ended, 1);
    assert_eq!(
        app.audit_count("session.end"),
        3,
        "the two refusals are audited too"
    );
}

#[test]
fn ending_all_other_sessions_keeps_only_this_one() {
    let app = TestApp::new();
    app.create_user(Role::Submitter, "sam@acme.example", Some("Acme"));
    let mut browsers: Vec<Browser<'_>> = (0..3).map(|_| app.browser()).collect();
    for (i, b) in browsers.iter_mut().enumerate() {
        assert_eq!(
            b.login_from(
                "sam@acme.example",
                PASSWORD,
                addr(&format!("192.0.2.{}", 20 + i))
            ),
            Status::SeeOther
        );
    }
    // An old session, from before sessions had a public id: listed, without an end button.
    app.with_conn(|c| {
        diesel::update(sessions::table.filter(sessions::client_addr.eq("192.0.2.22")))
            .set(sessions::public_id.eq(None::<String>))
            .execute(c)
            .unwrap()
    });
    let mut rest = browsers.split_off(1);
    let me = &mut browsers[0];
    let page = me.get("/account");
    assert!(page.body.contains("192.0.2.22"));
    assert_eq!(page.body.matches("End this session").count(), 1);
    let res = me.post("/account/sessions/end-others", &[]);
    assert_eq!(res.status, Status::SeeOther);
    for b in rest.iter_mut() {
        assert_eq!(b.get("/account").status, Status::Unauthorized);
    }
    assert_eq!(me.get("/account").status, Status::Ok);
    assert_eq!(
        app.audit_count("session.end"),
        2,
        "one entry per session ended"
    );
    let left: i64 = app.with_conn(|c| sessions::table.count().get_result(c).unwrap());
    assert_eq!(left, 1);
}

/// A signed-in account (a stranger's fresh one too) cannot use the password form to keep the password workers busy:
/// a new password the policy refuses is answered without checking the current one, and every check, right or wrong,
/// counts against `Policy::CURRENT_PASSWORD_CHECKS` (10 an hour).
#[test]
fn the_password_form_costs_the_password_workers_a_few_checks_an_hour_at_most() {
    use pcii_portal::auth::throttle::Policy;
    let app = TestApp::new();
    let mut sam = app.login_as(Role::Submitter, "sam@acme.example", Some("Acme"));
    let runs = app.state().hasher.runs();
    for _ in 0..30 {
        let res = sam.post(
            "/account/password",
            &[("current_password", PASSWORD), ("new_password", "short")],
        );
        assert_eq!(res.status, Status::UnprocessableEntity);
    }
    assert_eq!(
        app.state().hasher.runs(),
        runs,
        "a refused new password costs no check"
    );
    let limit = Policy::CURRENT_PASSWORD_CHECKS;
    let mut current = PASSWORD.to_string();
    let change = |sam: &mut Browser, current: &str, i: i64| {
        sam.post(
            "/account/password",
            &[
                ("current_password", current),
                (
                    "new_password",
                    &format!("an entirely new passphrase, number {i}"),
                ),
            ],
        )
    };
    for i in 0..limit.max_failures {
        let res = change(&mut sam, &current, i);
        assert_eq!(res.status, Status::SeeOther, "change {i}: {}", res.body);
        current = format!("an entirely new passphrase, number {i}");
    }
    let before = app.state().hasher.runs();
    let res = change(&mut sam, &current, 99);
    assert_eq!(res.status, Status::TooManyRequests);
    assert_eq!(app.state().hasher.runs(), before, "refused unchecked");
    // The window over, the form checks again.
    app.advance(limit.window_secs + 1);
    let mut sam = app.browser();
    assert_eq!(sam.login("sam@acme.example", &current), Status::SeeOther);
    let res = change(&mut sam, &current, 100);
    assert_eq!(res.status, Status::SeeOther, "{}", res.body);
}

#[test]
fn wrong_current_passwords_end_the_session() {
    let app = TestApp::new();
    let mut sam = app.login_as(Role::Submitter, "sam@acme.example", Some("Acme"));
    let max = app.state().settings.login_max_failures;
    let stolen = sam.cookies.clone();
    let wrong = [
        ("current_password", "not my password at all"),
        ("new_password", "an entirely new passphrase"),
    ];
    for i in 1..max {
        let res = sam.post("/account/password", &wrong);
        assert_eq!(res.status, Status::UnprocessableEntity, "attempt {i}");
        assert!(res.body.contains("not your current password"));
        assert_eq!(sam.get("/account").status, Status::Ok);
    }
    let res = sam.post("/account/password", &wrong);
    assert_eq!(res.status, Status::SeeOther);
    assert_eq!(res.header("Location"), Some("/login"));
    assert!(sam.session_cookie().is_none(), "the cookie is removed");
    assert_eq!(sam.get("/account").status, Status::Unauthorized);
    // The session is gone on the server too: the old cookie, replayed, is not signed in.
    let mut replay = Browser {
        client: &app.client,
        cookies: stolen,
    };
    assert_eq!(replay.get("/account").status, Status::Unauthorized);
    let ended: Vec<(String, Option<String>)> = app.with_conn(|c| {
        audit_entries::table
            .filter(audit_entries::action.eq("account.password"))
            .order(audit_entries::seq.asc())
            .select((audit_entries::outcome, audit_entries::reason))
            .load(c)
            .unwrap()
    });
    assert_eq!(ended.len() as i64, max, "every attempt is audited");
    let (outcome, reason) = ended.last().unwrap();
    assert_eq!(outcome, "refused");
    assert!(reason.as_deref().unwrap_or("").contains("session ended"));

    // Signed in again, the check stays locked for a while: even the right password is refused.
    assert_eq!(sam.login("sam@acme.example", PASSWORD), Status::SeeOther);
    let res = sam.post(
        "/account/password",
        &[
            ("current_password", PASSWORD),
            ("new_password", "an entirely new passphrase"),
        ],
    );
    assert_eq!(res.status, Status::TooManyRequests);
    assert_eq!(sam.get("/account").status, Status::Ok);
    let mut again = app.browser();
    assert_eq!(again.login("sam@acme.example", PASSWORD), Status::SeeOther);
}

#[test]
fn registrations_and_reset_requests_are_limited_per_address() {
    let app = TestApp::with(|f| {
        f.merge(("registrations_per_hour", 3))
            .merge(("password_resets_per_hour", 2))
    });
    let (a, b) = (addr("198.51.100.31"), addr("198.51.100.32"));
    let mut visitor = app.browser();
    for i in 0..3 {
        let email = format!("reg{i}@acme.example");
        assert_eq!(
            visitor
                .post_from("/register", &register_fields(&email, PASSWORD), a)
                .status,
            Status::SeeOther,
            "registration {i}"
        );
    }
    let res = visitor.post_from(
        "/register",
        &register_fields("reg3@acme.example", PASSWORD),
        a,
    );
    assert_eq!(res.status, Status::TooManyRequests);
    let res = visitor.post_from(
        "/register",
        &register_fields("reg4@acme.example", PASSWORD),
        b,
    );
    assert_eq!(
        res.status,
        Status::SeeOther,
        "another address still registers"
    );

    for _ in 0..2 {
        assert_eq!(
            visitor
                .post_from("/password/forgot", &[("email", "reg0@acme.example")], a)
                .status,
            Status::SeeOther
        );
    }
    assert_eq!(
        visitor
            .post_from("/password/forgot", &[("email", "reg0@acme.example")], a)
            .status,
        Status::TooManyRequests
    );
    assert_eq!(
        visitor
            .post_from("/password/forgot", &[("email", "reg0@acme.example")], b)
            .status,
        Status::SeeOther
    );

    // A flood of refused requests from the throttled address costs the log no entry each: they fold into the
    // refusal already recorded within the minute (counted, written as one entry when the minute closes). (At most
    // one more entry each, should the flood outlast that minute.)
    let refusals = |action: &str| -> i64 {
        use pcii_portal::db::schema::audit_entries;
        app.with_conn(|c| {
            audit_entries::table
                .filter(audit_entries::action.eq(action))
                .filter(audit_entries::outcome.eq("refused"))
                .count()
                .get_result(c)
                .unwrap()
        })
    };
    let before = (
        refusals("account.register"),
        refusals("account.reset_request"),
    );
    for i in 0..20 {
        let refused = visitor.post_from(
            "/register",
            &register_fields(&format!("flood{i}@acme.example"), PASSWORD),
            a,
        );
        assert_eq!(refused.status, Status::TooManyRequests);
        let refused = visitor.post_from("/password/forgot", &[("email", "reg0@acme.example")], a);
        assert_eq!(refused.status, Status::TooManyRequests);
    }
    assert!(refusals("account.register") - before.0 <= 1);
    assert!(refusals("account.reset_request") - before.1 <= 1);
}

#[test]
fn the_default_registration_limit_is_ten_an_hour() {
    let app = TestApp::new();
    assert_eq!(app.state().settings.registrations_per_hour, 10);
}

fn outbox(app: &TestApp) -> Vec<String> {
    let dir = app.data_dir().join("outbox");
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    entries
        .filter_map(|e| std::fs::read_to_string(e.ok()?.path()).ok())
        .collect()
}

#[test]
fn emails_are_normalised_and_confusable_addresses_refused() {
    let app = TestApp::new();
    let mut visitor = app.browser();
    let res = visitor.post("/register", &register_fields("ann@example.com", PASSWORD));
    assert_eq!(res.status, Status::SeeOther);
    // Fullwidth letters are the same address after NFKC: the same answer, no second account.
    let res = visitor.post(
        "/register",
        &register_fields(
            "\u{FF21}\u{FF2E}\u{FF2E}@example.com",
            "a different long passphrase",
        ),
    );
    assert_eq!(res.status, Status::SeeOther);
    let emails: Vec<String> = app.with_conn(|c| users::table.select(users::email).load(c).unwrap());
    assert_eq!(emails, vec!["ann@example.com".to_string()]);
    let mail = outbox(&app);
    assert_eq!(mail.len(), 2, "a confirmation link, then the note");
    assert_eq!(
        mail.iter()
            .filter(|m| m.contains("Someone tried to register"))
            .count(),
        1
    );
    // The first password still signs in (on the confirmation link's page); the second did nothing.
    let link = app
        .mailed_link("ann@example.com", "/verify-email/")
        .expect("a confirmation link");
    assert_eq!(
        visitor
            .confirm_address(&link, "ann@example.com", "a different long passphrase")
            .status,
        Status::Unauthorized
    );
    assert_eq!(
        visitor
            .confirm_address(&link, "ann@example.com", PASSWORD)
            .status,
        Status::SeeOther
    );

    let mut other = app.browser();
    for (email, says) in [
        ("ann\u{200B}@example.com", "invisible character"),
        // A Cyrillic "а" among Latin letters, in the local part and in a domain label.
        ("p\u{0430}ypal@example.com", "different alphabets"),
        ("ann@ex\u{0430}mple.com", "different alphabets"),
        // Addresses the mail server would never be sent to: no confirmation link could reach them.
        ("a,b@example.com", "like name@example.com"),
        ("a..b@example.com", "like name@example.com"),
        ("a(b)@example.com", "like name@example.com"),
        // A name with the address in brackets: stored as one address, mailed to another.
        ("x<ann@example.com>", "like name@example.com"),
        ("ops.example.com<me@evil.example>", "like name@example.com"),
    ] {
        let res = other.post("/register", &register_fields(email, PASSWORD));
        assert_eq!(res.status, Status::UnprocessableEntity, "{email:?}");
        assert!(res.body.contains(says), "{email:?}");
    }
    // A right-to-left override in a person's or a company's name (it would read otherwise in mails and lists).
    for (field, value) in [
        ("display_name", "Ann \u{202E}troppus"),
        ("organisation", "Acme \u{2066}Water"),
    ] {
        let mut fields = register_fields("bob@example.com", PASSWORD);
        fields.iter_mut().find(|(k, _)| *k == field).unwrap().1 = value;
        let res = other.post("/register", &fields);
        assert_eq!(res.status, Status::UnprocessableEntity, "{field}");
        assert!(res.body.contains("text-direction characters"), "{field}");
    }
    // A zero-width non-joiner, as Persian names carry, is kept.
    let mut fields = register_fields("mahsa@example.com", PASSWORD);
    fields[0].1 = "Mahsa Mi\u{200C}rza";
    assert_eq!(other.post("/register", &fields).status, Status::SeeOther);
    let count: i64 = app.with_conn(|c| users::table.count().get_result(c).unwrap());
    assert_eq!(count, 2);
}

/// A search text longer than any name is the caller's mistake (422 with the reason): matched with LIKE, a text of
/// 50,000 characters made a pattern past SQLite's limit, and the database's refusal was a 500.
#[test]
fn an_overlong_search_text_answers_422_not_500() {
    let app = TestApp::new();
    // SQLite checks the pattern's length when it compares a row: there must be rows.
    app.create_user(Role::Submitter, "ann@acme.example", Some("Acme"));
    let mut officer = app.login_as(Role::Officer, "o@example.gov", None);
    let mut auditor = app.login_as(Role::Auditor, "u@example.gov", None);
    let long = "a".repeat(50_000);
    let page = officer.get(&format!("/officer/organisations?q={long}"));
    assert_eq!(page.status, Status::UnprocessableEntity);
    assert!(page
        .body
        .contains("Enter at most 200 characters of the organisation"));
    let page = auditor.get(&format!("/audit?person={long}"));
    assert_eq!(page.status, Status::UnprocessableEntity);
    assert!(page
        .body
        .contains("Enter at most 200 characters of the name"));
    // 200 characters are still a search.
    let most = "a".repeat(200);
    assert_eq!(
        officer
            .get(&format!("/officer/organisations?q={most}"))
            .status,
        Status::Ok
    );
    assert_eq!(
        auditor.get(&format!("/audit?person={most}")).status,
        Status::Ok
    );
}

/// A NUL character, in a form field, a path or a search, is the caller's mistake on either database: PostgreSQL's
/// text cannot hold one, and its refusal was a 500 there (SQLite stores it, and finds nothing).
#[test]
fn a_nul_character_anywhere_is_the_callers_mistake_not_a_500() {
    let app = TestApp::new();
    app.create_user(Role::Submitter, "ann@acme.example", Some("Acme"));
    let mut anon = app.browser();
    let page = anon.post(
        "/login",
        &[("email", "ann\0@acme.example"), ("password", "x")],
    );
    assert!(
        page.status.code >= 400 && page.status.code < 500,
        "{}",
        page.status
    );
    let mut ann = app.login_as(Role::Submitter, "bob@acme.example", Some("Acme"));
    let mut officer = app.login_as(Role::Officer, "o@example.gov", None);
    let pages = [
        ann.get("/submissions/%00"),
        officer.get("/officer/submissions/a%00b"),
        officer.get("/officer/organisations?q=a%00b"),
    ];
    // In a path or a query: refused before any handler reads it, on either database.
    for page in pages {
        assert_eq!(page.status, Status::BadRequest, "{}", page.body);
    }
}

/// Page numbers out of range, negative or not numbers are the caller's mistake: 422 with the reason, never a 500 (an
/// overflowing offset) and never a silent first page.
#[test]
fn bad_page_numbers_answer_422_on_every_paged_list() {
    let app = TestApp::new();
    let mut sam = app.login_as(Role::Submitter, "sam@acme.example", Some("Acme"));
    let mut officer = app.login_as(Role::Officer, "o@example.gov", None);
    let mut admin = app.login_as(Role::Administrator, "ad@example.gov", None);
    let check = |b: &mut Browser<'_>, list: &str| {
        assert_eq!(
            b.get(&format!("{list}?page=0")).status,
            Status::Ok,
            "{list}"
        );
        assert_eq!(
            b.get(&format!("{list}?page=3")).status,
            Status::Ok,
            "{list}"
        );
        for bad in ["9223372036854775807", "100001", "-1", "abc", "1e3"] {
            let res = b.get(&format!("{list}?page={bad}"));
            assert_eq!(res.status, Status::UnprocessableEntity, "{list}?page={bad}");
            assert!(res.body.contains("page"), "{list}: the reason is given");
        }
    };
    check(&mut sam, "/submissions");
    check(&mut admin, "/admin");
    for list in ["/officer/disseminations", "/officer/organisations"] {
        check(&mut officer, list);
    }
    // The queue too (its page is checked with its other filters, so the form is shown again).
    check(&mut officer, "/officer");
}

/// An auditor who mistypes a date is told so, not shown the whole log as if filtered; unknown values in the
/// auditor's and the administrator's filters are refused the same way.
#[test]
fn bad_filter_values_answer_422_with_the_reason() {
    let app = TestApp::new();
    let mut auditor = app.login_as(Role::Auditor, "u@example.gov", None);
    let mut admin = app.login_as(Role::Administrator, "ad@example.gov", None);
    let views = app.audit_count("audit.view");
    for (query, reason) in [
        ("from=2026-13-45", "is not a date"),
        ("to=yesterday", "is not a date"),
        ("from=2026-12-02&to=2026-12-01", "before the start date"),
        ("outcome=sucess", "is not an outcome"),
    ] {
        let res = auditor.get(&format!("/audit?{query}"));
        assert_eq!(res.status, Status::UnprocessableEntity, "{query}");
        assert!(res.body.contains(reason), "{query}: {reason}");
        assert!(
            res.body.contains("0 entries shown"),
            "{query}: no entries are shown"
        );
    }
    assert_eq!(app.audit_count("audit.view"), views, "nothing was viewed");
    assert_eq!(
        auditor.get("/audit?before=abc").status,
        Status::UnprocessableEntity
    );
    assert_eq!(
        auditor.get("/audit?from=2026-01-01&outcome=success").status,
        Status::Ok
    );
    assert_eq!(
        admin.get("/admin?role=superuser").status,
        Status::UnprocessableEntity
    );
    assert_eq!(admin.get("/admin?role=officer").status, Status::Ok);
}

#[test]
fn failures_counted_at_once_on_one_key_are_all_counted_and_none_collides() {
    use pcii_portal::auth::throttle::{self, Policy};
    let app = TestApp::new();
    let db = app.state().db.clone();
    let now = app.now();
    let policy = Policy {
        max_failures: 1000,
        window_secs: 60,
    };
    // A flood from one address: every request counts the same key at the same moment, each on its own connection.
    std::thread::scope(|s| {
        for _ in 0..16 {
            let db = &db;
            s.spawn(move || {
                for _ in 0..5 {
                    let mut conn = db.get().unwrap();
                    throttle::record_failure(&mut conn, "login-rate:flood", policy, now).unwrap();
                }
            });
        }
    });
    let counted: i64 = app.with_conn(|c| {
        use diesel::prelude::*;
        use pcii_portal::db::schema::login_throttle as t;
        t::table
            .find("login-rate:flood")
            .select(t::failures)
            .first(c)
            .unwrap()
    });
    assert_eq!(counted, 80);
}

#[test]
fn a_failure_soon_after_a_sign_in_lock_ended_doubles_the_lock_and_a_success_resets_it() {
    let app = TestApp::new();
    app.create_user(Role::Submitter, "victim@acme.example", Some("Acme"));
    let max = app.state().settings.login_max_failures;
    let window = app.state().settings.login_window_seconds;
    let a = addr("198.51.100.9");
    let mut b = app.browser();
    for _ in 0..max {
        assert_eq!(
            b.login_from("victim@acme.example", "wrong password, again", a),
            Status::Unauthorized
        );
    }
    assert_eq!(
        b.login_from("victim@acme.example", PASSWORD, a),
        Status::TooManyRequests
    );
    // The first lock (one window) ends; one more failure soon after continues the run.
    app.advance(window + 1);
    assert_eq!(
        b.login_from("victim@acme.example", "wrong password, again", a),
        Status::Unauthorized
    );
    // Locked for two windows now: still refused, even the right password, a window and more later.
    app.advance(window + 1);
    assert_eq!(
        b.login_from("victim@acme.example", PASSWORD, a),
        Status::TooManyRequests
    );
    // Once the doubled lock has passed, the right password signs in and the run is over.
    app.advance(window);
    assert_eq!(
        b.login_from("victim@acme.example", PASSWORD, a),
        Status::SeeOther
    );
    let mut again = app.browser();
    for _ in 0..max - 1 {
        assert_eq!(
            again.login_from("victim@acme.example", "wrong password, again", a),
            Status::Unauthorized
        );
    }
    assert_eq!(
        again.login_from("victim@acme.example", PASSWORD, a),
        Status::SeeOther,
        "a success starts the count again"
    );
}

#[test]
fn each_lock_after_the_first_doubles_up_to_an_hour_and_a_quiet_window_ends_the_run() {
    use pcii_portal::auth::throttle::{self, Policy};
    let app = TestApp::new();
    let db = app.state().db.clone();
    let policy = Policy {
        max_failures: 5,
        window_secs: 300,
    };
    let key = "2fa-acct:doubling";
    let mut conn = db.get().unwrap();
    let mut now = app.now();
    for _ in 0..5 {
        throttle::record_failure(&mut conn, key, policy, now).unwrap();
    }
    let mut lock = 300;
    assert!(throttle::is_locked(&mut conn, key, now + lock - 1).unwrap());
    for expected in [600, 1200, 2400, 3600, 3600] {
        // A failure shortly after the lock ended; meanwhile another key of the kind is counted (which forgets
        // the kind's finished rows), and this row stays.
        now += lock + 10;
        throttle::record_failure(&mut conn, "2fa-acct:other", policy, now).unwrap();
        throttle::record_failure(&mut conn, key, policy, now).unwrap();
        assert!(throttle::is_locked(&mut conn, key, now + expected - 1).unwrap());
        assert!(!throttle::is_locked(&mut conn, key, now + expected).unwrap());
        lock = expected;
    }
    // A whole window after the lock ended without a failure: the run is over, one failure locks nothing.
    now += lock + 300;
    throttle::record_failure(&mut conn, key, policy, now).unwrap();
    assert!(!throttle::is_locked(&mut conn, key, now).unwrap());
}

#[test]
fn a_rate_limit_does_not_double_once_its_lock_has_ended() {
    use pcii_portal::auth::throttle::{self, Policy};
    let app = TestApp::new();
    let db = app.state().db.clone();
    let policy = Policy {
        max_failures: 3,
        window_secs: 60,
    };
    let key = "reset:rate";
    let mut conn = db.get().unwrap();
    let now = app.now();
    for _ in 0..3 {
        assert!(throttle::allow(&mut conn, key, policy, now).unwrap());
    }
    assert!(!throttle::allow(&mut conn, key, policy, now + 1).unwrap());
    // The lock has ended: the next attempts are allowed again, as many as the limit.
    for _ in 0..3 {
        assert!(throttle::allow(&mut conn, key, policy, now + 61).unwrap());
    }

    // A burst of requests at once all find the key unlocked before the first past the limit locks it, and each is
    // counted: the last of 40 sees 40 in the window. It is refused and locks the key for one window, not an hour.
    use pcii_portal::models::throttle as model;
    let burst = "login-rate:burst";
    assert!(throttle::allow(&mut conn, burst, policy, now).unwrap());
    let counted = model::Counter {
        failures: 39,
        window_start: now,
        locked_until: 0,
    };
    model::update(&mut conn, burst, counted).unwrap();
    assert!(!throttle::allow(&mut conn, burst, policy, now).unwrap());
    assert!(throttle::is_locked(&mut conn, burst, now + 59).unwrap());
    assert!(!throttle::is_locked(&mut conn, burst, now + 60).unwrap());
    assert!(throttle::allow(&mut conn, burst, policy, now + 61).unwrap());
}

/// A kind's finished throttle rows are forgotten by a counted attempt, but at most once a minute per process: the
/// forgetting reads every row of the kind, and whoever is throttled can grow their number.
#[test]
fn finished_throttle_rows_are_forgotten_at_most_once_a_minute() {
    use pcii_portal::auth::throttle::{self, Policy};
    use pcii_portal::models::throttle as model;
    let app = TestApp::new();
    let db = app.state().db.clone();
    let policy = Policy {
        max_failures: 5,
        window_secs: 10,
    };
    let mut conn = db.get().unwrap();
    let t0 = app.now();
    let kept =
        |conn: &mut pcii_portal::db::DbConn, key: &str| model::find(conn, key).unwrap().is_some();
    // (This first attempt of the kind forgets what there is: nothing.)
    throttle::record_failure(&mut conn, "gc-once-a-minute:a", policy, t0).unwrap();
    // A minute on: the next attempt of the kind forgets the finished row.
    let t1 = t0 + 60;
    throttle::record_failure(&mut conn, "gc-once-a-minute:b", policy, t1).unwrap();
    assert!(!kept(&mut conn, "gc-once-a-minute:a"));
    // Within the minute, a finished row stays (nothing reads the kind again)...
    throttle::record_failure(&mut conn, "gc-once-a-minute:c", policy, t1 + 30).unwrap();
    assert!(kept(&mut conn, "gc-once-a-minute:b"));
    // ...until a minute has passed.
    throttle::record_failure(&mut conn, "gc-once-a-minute:d", policy, t1 + 60).unwrap();
    assert!(!kept(&mut conn, "gc-once-a-minute:b"));
    assert!(kept(&mut conn, "gc-once-a-minute:d"));
}
