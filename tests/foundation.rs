//! The foundation: start-up, headers, setup link, login throttling, sessions, CSRF, role guards, migrations.

mod common;

use common::{encode, Browser, TestApp, PASSWORD};
use rocket::http::{Header, Status};

use pcii_portal::domain::Role;

fn assert_security_headers(page: &common::Page) {
    let csp = page.header("Content-Security-Policy").expect("CSP header");
    assert!(
        csp.contains("default-src 'self'")
            && csp.contains("frame-ancestors 'none'")
            && csp.contains("form-action 'self'")
    );
    assert!(!csp.contains("unsafe-inline"));
    assert_eq!(page.header("X-Content-Type-Options"), Some("nosniff"));
    assert_eq!(page.header("Referrer-Policy"), Some("no-referrer"));
    assert_eq!(
        page.header("Cross-Origin-Opener-Policy"),
        Some("same-origin")
    );
    assert_eq!(page.header("Cache-Control"), Some("no-store"));
    assert!(page.header("X-Request-Id").is_some());
}

#[test]
fn login_page_and_error_pages_carry_the_security_headers() {
    let app = TestApp::new();
    let mut b = app.browser();
    let login = b.get("/login");
    assert_eq!(login.status, Status::Ok);
    assert!(login
        .body
        .contains("<form method=\"post\" action=\"/login\""));
    assert_security_headers(&login);
    let missing = b.get("/no/such/page");
    assert_eq!(missing.status, Status::NotFound);
    assert_security_headers(&missing);
    assert!(missing.body.contains("Not found"));
    let refused = b.get("/admin");
    assert_eq!(refused.status, Status::Unauthorized);
    assert_security_headers(&refused);
}

#[test]
fn healthz_reports_database_and_key_store() {
    let app = TestApp::new();
    let page = app.browser().get("/healthz");
    assert_eq!(page.status, Status::Ok);
    let v: serde_json::Value = serde_json::from_str(&page.body).unwrap();
    assert_eq!(v["status"], "ok");
    assert_eq!(v["database"], "ok");
    assert_eq!(v["key_store"], "ok");
    // The suite really runs on the backend CI asked for.
    let expected = if cfg!(feature = "postgres")
        && std::env::var("PCII_TEST_DATABASE_URL").is_ok_and(|u| !u.is_empty())
    {
        "postgres"
    } else {
        "sqlite"
    };
    assert_eq!(v["backend"], expected);
}

#[test]
fn keys_are_generated_private_and_reused() {
    use std::os::unix::fs::PermissionsExt;
    let app = TestApp::new();
    let keys = app.keys_dir();
    for name in [
        "age-identities.txt",
        "rocket-secret.key",
        "audit-signing.key",
    ] {
        let mode = std::fs::metadata(keys.join(name))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "{name} must be 0600");
    }
    assert!(std::fs::read_to_string(keys.join(".gitignore"))
        .unwrap()
        .contains('*'));
    let before = std::fs::read(keys.join("age-identities.txt")).unwrap();
    // A second start on the same directories reuses the keys.
    let figment = pcii_portal::figment()
        .merge(("data_dir", app.data_dir()))
        .merge(("keys_dir", keys.clone()))
        .merge(("database_url", app.database_url.clone()));
    let (_, startup) = pcii_portal::build(figment.clone()).unwrap();
    assert!(startup.generated_keys.is_empty());
    assert_eq!(
        before,
        std::fs::read(keys.join("age-identities.txt")).unwrap()
    );
    // A key file readable by others is refused at start.
    std::fs::set_permissions(
        keys.join("rocket-secret.key"),
        std::fs::Permissions::from_mode(0o644),
    )
    .unwrap();
    let err = pcii_portal::build(figment).err().expect("refused");
    assert!(err.contains("rocket-secret.key"), "{err}");
}

#[test]
fn setup_link_creates_the_first_administrator_once() {
    let app = TestApp::new();
    let token = app
        .setup_token
        .clone()
        .expect("a setup link at first start");
    let mut b = app.browser();
    assert_eq!(b.get(&format!("/setup/{token}")).status, Status::Ok);
    assert_eq!(b.get("/setup/not-a-token").status, Status::Gone);
    let done = b.post(
        &format!("/setup/{token}"),
        &[
            ("email", "admin@example.gov"),
            ("display_name", "Ada Admin"),
            ("password", PASSWORD),
        ],
    );
    assert_eq!(done.status, Status::SeeOther);
    assert_eq!(b.login("admin@example.gov", PASSWORD), Status::SeeOther);
    assert_eq!(b.get("/admin").status, Status::Ok);
    // Spent: the link no longer works, and no second administrator can be made with it.
    let mut other = app.browser();
    assert_eq!(other.get(&format!("/setup/{token}")).status, Status::Gone);
    let again = other.post(
        &format!("/setup/{token}"),
        &[
            ("email", "mallory@example.com"),
            ("display_name", "M"),
            ("password", PASSWORD),
        ],
    );
    assert_eq!(again.status, Status::Gone);
    assert_eq!(
        other.login("mallory@example.com", PASSWORD),
        Status::Unauthorized
    );
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
    // The next attempt is refused, even with the right password.
    assert_eq!(
        b.login("victim@acme.example", PASSWORD),
        Status::TooManyRequests
    );
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

#[test]
fn session_cookie_is_new_at_login_and_dead_after_logout() {
    let app = TestApp::new();
    app.create_user(Role::Submitter, "sam@acme.example", Some("Acme"));
    let mut b = app.browser();
    assert_eq!(b.login("sam@acme.example", PASSWORD), Status::SeeOther);
    let first = b.session_cookie().unwrap();
    let cookie_header = b.get("/account");
    assert_eq!(cookie_header.status, Status::Ok);
    // Logging in again gives a new session id.
    assert_eq!(b.login("sam@acme.example", PASSWORD), Status::SeeOther);
    let second = b.session_cookie().unwrap();
    assert_ne!(first, second);
    let stolen = b.cookies.clone();
    assert_eq!(b.post("/logout", &[]).status, Status::SeeOther);
    // The old cookie, replayed, no longer works: the server-side session is gone.
    let mut replay = Browser {
        client: &app.client,
        cookies: stolen,
    };
    assert_eq!(replay.get("/account").status, Status::Unauthorized);
}

#[test]
fn session_cookie_flags() {
    let app = TestApp::new();
    app.create_user(Role::Submitter, "sam@acme.example", Some("Acme"));
    let mut b = app.browser();
    let token = b.csrf();
    let res = app
        .client
        .post("/login")
        .header(rocket::http::ContentType::Form)
        .cookies(b.cookies.clone())
        .body(encode(&[
            ("csrf", &token),
            ("email", "sam@acme.example"),
            ("password", PASSWORD),
        ]))
        .dispatch();
    let set_cookie: Vec<String> = res
        .headers()
        .get("Set-Cookie")
        .map(str::to_string)
        .collect();
    let session = set_cookie
        .iter()
        .find(|c| c.starts_with("pcii_session="))
        .expect("session cookie");
    assert!(session.contains("HttpOnly"));
    assert!(session.contains("SameSite=Strict"));
    assert!(session.contains("Path=/"));
}

#[test]
fn disabling_an_account_kills_its_sessions() {
    let app = TestApp::new();
    let mut admin = app.login_as(Role::Administrator, "admin@example.gov", None);
    let mut sam = app.login_as(Role::Submitter, "sam@acme.example", Some("Acme"));
    assert_eq!(sam.get("/account").status, Status::Ok);
    let id = app.with_conn(|c| {
        pcii_portal::models::account::find_by_email(c, "sam@acme.example")
            .unwrap()
            .unwrap()
            .id
    });
    assert_eq!(
        admin
            .post(
                &format!("/admin/accounts/{id}/disable"),
                &[("reason", "left the company")]
            )
            .status,
        Status::UnprocessableEntity,
        "disabling asks for confirmation"
    );
    assert_eq!(sam.get("/account").status, Status::Ok);
    assert_eq!(
        admin
            .post(
                &format!("/admin/accounts/{id}/disable"),
                &[("reason", "left the company"), ("confirm", "true")]
            )
            .status,
        Status::SeeOther
    );
    let reason: Option<String> = app.with_conn(|c| {
        use diesel::prelude::*;
        use pcii_portal::db::schema::audit_entries;
        audit_entries::table
            .filter(audit_entries::action.eq("account.disable"))
            .select(audit_entries::reason)
            .first(c)
            .unwrap()
    });
    assert!(reason.unwrap().contains("left the company"));
    assert_eq!(sam.get("/account").status, Status::Unauthorized);
}

#[test]
fn role_change_kills_sessions_and_password_change_kills_the_others() {
    let app = TestApp::new();
    let mut admin = app.login_as(Role::Administrator, "admin@example.gov", None);
    let mut off = app.login_as(Role::Officer, "off@example.gov", None);
    let id = app.with_conn(|c| {
        pcii_portal::models::account::find_by_email(c, "off@example.gov")
            .unwrap()
            .unwrap()
            .id
    });
    assert_eq!(
        admin
            .post(
                &format!("/admin/accounts/{id}/role"),
                &[("role", "auditor")]
            )
            .status,
        Status::SeeOther
    );
    assert_eq!(off.get("/account").status, Status::Unauthorized);

    app.create_user(Role::Submitter, "sam@acme.example", Some("Acme"));
    let mut laptop = app.browser();
    let mut phone = app.browser();
    assert_eq!(laptop.login("sam@acme.example", PASSWORD), Status::SeeOther);
    assert_eq!(phone.login("sam@acme.example", PASSWORD), Status::SeeOther);
    let res = laptop.post(
        "/account/password",
        &[
            ("current_password", PASSWORD),
            ("new_password", "an entirely new passphrase"),
        ],
    );
    assert_eq!(res.status, Status::SeeOther);
    assert_eq!(laptop.get("/account").status, Status::Ok);
    assert_eq!(phone.get("/account").status, Status::Unauthorized);
    let mut again = app.browser();
    assert_eq!(
        again.login("sam@acme.example", "an entirely new passphrase"),
        Status::SeeOther
    );
}

#[test]
fn idle_session_expires_and_the_expiry_is_audited() {
    use diesel::prelude::*;
    use pcii_portal::db::schema::sessions;
    let app = TestApp::new();
    let mut b = app.login_as(Role::Submitter, "sam@acme.example", Some("Acme"));
    let idle = app.state().settings.session_idle_minutes * 60;
    app.with_conn(|c| {
        diesel::update(sessions::table)
            .set(sessions::last_seen_at.eq(pcii_portal::db::now() - idle - 5))
            .execute(c)
            .unwrap()
    });
    assert_eq!(b.get("/account").status, Status::Unauthorized);
    assert_eq!(app.audit_count("auth.session_expired"), 1);
}

#[test]
fn a_session_store_that_does_not_answer_is_a_503_not_a_logout() {
    use diesel::prelude::*;
    let app = TestApp::new();
    let mut b = app.login_as(Role::Submitter, "sam@acme.example", Some("Acme"));
    assert_eq!(b.get("/account").status, Status::Ok);
    let refused = app.audit_count("access.refused");
    let rename = |from: &str, to: &str| {
        app.with_conn(|c| {
            diesel::sql_query(format!("ALTER TABLE {from} RENAME TO {to}"))
                .execute(c)
                .unwrap()
        });
    };
    rename("sessions", "sessions_away");
    let page = b.get("/account");
    assert_eq!(page.status, Status::ServiceUnavailable, "{}", page.body);
    assert!(page.body.contains("Try again"), "{}", page.body);
    assert_eq!(
        app.audit_count("access.refused"),
        refused,
        "not recorded as someone not logged in"
    );
    rename("sessions_away", "sessions");
    assert_eq!(b.get("/account").status, Status::Ok, "the cookie was kept");
}

#[test]
fn a_failed_touch_of_the_session_does_not_fail_the_request() {
    use diesel::prelude::*;
    use pcii_portal::db::schema::sessions;
    let app = TestApp::new();
    let mut b = app.login_as(Role::Submitter, "sam@acme.example", Some("Acme"));
    let stale = pcii_portal::db::now() - 120;
    let refuse_updates = if app.database_url.starts_with("postgres") {
        "CREATE FUNCTION refuse_update() RETURNS trigger AS $$ BEGIN RAISE EXCEPTION 'busy'; END $$ \
         LANGUAGE plpgsql; CREATE TRIGGER sessions_busy BEFORE UPDATE ON sessions FOR EACH ROW \
         EXECUTE FUNCTION refuse_update();"
    } else {
        "CREATE TRIGGER sessions_busy BEFORE UPDATE ON sessions BEGIN SELECT RAISE(ABORT, 'busy'); END;"
    };
    app.with_conn(|c| {
        diesel::update(sessions::table)
            .set(sessions::last_seen_at.eq(stale))
            .execute(c)
            .unwrap();
        diesel::connection::SimpleConnection::batch_execute(c, refuse_updates).unwrap();
    });
    assert_eq!(b.get("/account").status, Status::Ok);
    let seen: i64 = app.with_conn(|c| {
        sessions::table
            .select(sessions::last_seen_at)
            .first(c)
            .unwrap()
    });
    assert_eq!(seen, stale, "the touch really failed");
}

#[test]
fn state_changing_posts_need_the_token_and_a_same_site_origin() {
    let app = TestApp::new();
    let mut sam = app.login_as(Role::Submitter, "sam@acme.example", Some("Acme"));
    let form = encode(&[
        ("current_password", PASSWORD),
        ("new_password", "an entirely new passphrase"),
    ]);
    // No token.
    assert_eq!(
        sam.post_raw("/account/password", form.clone(), None).status,
        Status::Forbidden
    );
    // A wrong token.
    let wrong = format!("csrf={}&{form}", "0".repeat(64));
    assert_eq!(
        sam.post_raw("/account/password", wrong, None).status,
        Status::Forbidden
    );
    // The right token but from another site.
    let token = sam.csrf();
    let good = format!("csrf={token}&{form}");
    let foreign = Header::new("Origin", "https://evil.example");
    assert_eq!(
        sam.post_raw("/account/password", good.clone(), Some(foreign))
            .status,
        Status::Forbidden
    );
    let cross = Header::new("Sec-Fetch-Site", "cross-site");
    assert_eq!(
        sam.post_raw("/account/password", good.clone(), Some(cross))
            .status,
        Status::Forbidden
    );
    assert_eq!(app.audit_count("csrf.refused"), 4);
    // Same origin with the token: accepted.
    let same = Header::new("Sec-Fetch-Site", "same-origin");
    assert_eq!(
        sam.post_raw("/account/password", good, Some(same)).status,
        Status::SeeOther
    );
    // Anonymous forms too: login without the token is refused before any password check.
    let mut anon = app.browser();
    let res = anon.post_raw(
        "/login",
        encode(&[("email", "sam@acme.example"), ("password", PASSWORD)]),
        None,
    );
    assert_eq!(res.status, Status::Forbidden);
}

#[test]
fn every_state_changing_route_refuses_a_missing_token() {
    let app = TestApp::new();
    // One signed-in browser per role, so the role guard passes and the token check is what answers.
    let mut browsers = app.one_browser_per_role();
    let posts: Vec<String> = app
        .client
        .rocket()
        .routes()
        .filter(|r| r.method != rocket::http::Method::Get)
        .map(|r| r.uri.path().to_string())
        .collect();
    assert!(
        posts.len() >= 10,
        "the portal has state-changing routes: {posts:?}"
    );
    for path in posts {
        let concrete = path
            .split('/')
            .map(|seg| {
                if seg.starts_with('<') {
                    "0123456789abcdef0123456789abcdef"
                } else {
                    seg
                }
            })
            .collect::<Vec<_>>()
            .join("/");
        let mut statuses = Vec::new();
        for (_, b) in browsers.iter_mut() {
            statuses.push(b.post_raw(&concrete, "x=1".into(), None).status);
        }
        // For whichever role the route belongs to, a missing token is 403; for the others the role guard
        // answers 403 first. Never a success and never a 404 that could hide a state change.
        assert!(
            statuses.iter().all(|s| *s == Status::Forbidden),
            "{path}: {statuses:?}"
        );
    }
}

#[test]
fn every_role_page_is_refused_to_every_other_role() {
    let app = TestApp::new();
    let pages: &[(&str, Role)] = &[
        ("/admin", Role::Administrator),
        ("/admin/accounts/new", Role::Administrator),
        ("/submissions", Role::Submitter),
        ("/officer", Role::Officer),
        ("/analyst", Role::AuthorizedUser),
        ("/audit", Role::Auditor),
    ];
    let mut browsers = app.one_browser_per_role();
    let mut anon = app.browser();
    for (path, owner) in pages {
        assert_eq!(
            anon.get(path).status,
            Status::Unauthorized,
            "anonymous {path}"
        );
        for (role, b) in browsers.iter_mut() {
            let expected = if role == owner {
                Status::Ok
            } else {
                Status::Forbidden
            };
            assert_eq!(b.get(path).status, expected, "{role:?} {path}");
        }
    }
}

#[test]
fn cli_creates_users_of_every_role() {
    let app = TestApp::new();
    let bin = env!("CARGO_BIN_EXE_pcii-portal");
    for (i, role) in [
        "submitter",
        "officer",
        "authorized_user",
        "auditor",
        "administrator",
    ]
    .iter()
    .enumerate()
    {
        let mut cmd = std::process::Command::new(bin);
        cmd.args([
            "user",
            "add",
            "--email",
            &format!("cli{i}@example.gov"),
            "--role",
            role,
            "--password-stdin",
        ])
        .env("PCII_DATA_DIR", app.data_dir())
        .env("PCII_KEYS_DIR", app.keys_dir())
        .env("PCII_DATABASE_URL", &app.database_url)
        .env("PCII_CONFIG", "/nonexistent.toml")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
        if *role == "submitter" {
            cmd.args(["--new-organisation", "CLI Org"]);
        }
        let mut child = cmd.spawn().unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{PASSWORD}\n").as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{role}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let mut b = app.browser();
        assert_eq!(
            b.login(&format!("cli{i}@example.gov"), PASSWORD),
            Status::SeeOther,
            "{role} can sign in"
        );
    }
    // A bad role is a clear error with a non-zero exit code.
    let out = std::process::Command::new(bin)
        .args([
            "user",
            "add",
            "--email",
            "x@example.gov",
            "--role",
            "superuser",
        ])
        .env("PCII_DATA_DIR", app.data_dir())
        .env("PCII_KEYS_DIR", app.keys_dir())
        .env("PCII_DATABASE_URL", &app.database_url)
        .env("PCII_CONFIG", "/nonexistent.toml")
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("unknown role"));
}

#[test]
fn templates_escape_what_people_type() {
    let app = TestApp::new();
    let mut b = app.browser();
    let res = b.post(
        "/login",
        &[
            ("email", "<script>alert(1)</script>@x.example"),
            ("password", "whatever password"),
        ],
    );
    assert!(!res.body.contains("<script>alert(1)</script>"));
    assert!(res.body.contains("&lt;script&gt;"));
}

#[test]
fn migrations_run_up_down_up_on_a_populated_database() {
    let app = TestApp::new();
    app.create_user(Role::Submitter, "sam@acme.example", Some("Acme"));
    let mut conn = app.state().db.get().unwrap();
    let reverted = pcii_portal::db::revert_all_migrations(&mut conn).unwrap();
    assert!(reverted >= 2);
    let applied = pcii_portal::db::run_migrations(&mut conn).unwrap();
    assert_eq!(applied, reverted);
    drop(conn);
    // The schema works again after up/down/up.
    app.create_user(Role::Submitter, "sam2@acme.example", Some("Acme"));
}

#[test]
fn cli_attaches_to_an_organisation_by_id_never_by_name() {
    let app = TestApp::new();
    let bin = env!("CARGO_BIN_EXE_pcii-portal");
    let run = |args: &[&str]| {
        let mut cmd = std::process::Command::new(bin);
        cmd.args(["user", "add", "--password-stdin"])
            .args(args)
            .env("PCII_DATA_DIR", app.data_dir())
            .env("PCII_KEYS_DIR", app.keys_dir())
            .env("PCII_DATABASE_URL", &app.database_url)
            .env("PCII_CONFIG", "/nonexistent.toml")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(format!("{PASSWORD}\n").as_bytes())
            .unwrap();
        child.wait_with_output().unwrap()
    };
    let first = run(&[
        "--email",
        "lead@acme.example",
        "--role",
        "submitter",
        "--new-organisation",
        "Acme",
        "--org-admin",
    ]);
    assert!(
        first.status.success(),
        "{}",
        String::from_utf8_lossy(&first.stderr)
    );
    let org = app.organisation_id("Acme").unwrap();
    assert!(String::from_utf8_lossy(&first.stdout).contains(&org));
    // The same name again is a second organisation, not a way in.
    let same_name = run(&[
        "--email",
        "other@else.example",
        "--role",
        "submitter",
        "--new-organisation",
        "Acme",
    ]);
    assert!(same_name.status.success());
    let join = run(&[
        "--email",
        "colleague@acme.example",
        "--role",
        "submitter",
        "--organisation-id",
        &org,
    ]);
    assert!(
        join.status.success(),
        "{}",
        String::from_utf8_lossy(&join.stderr)
    );
    let orgs = app.with_conn(|c| {
        let find = |c: &mut pcii_portal::db::DbConn, e: &str| {
            pcii_portal::models::account::find_by_email(c, e)
                .unwrap()
                .unwrap()
                .organisation_id
                .unwrap()
        };
        (
            find(c, "lead@acme.example"),
            find(c, "other@else.example"),
            find(c, "colleague@acme.example"),
        )
    });
    assert_eq!(orgs.0, org);
    assert_eq!(orgs.2, org);
    assert_ne!(orgs.1, org);
    let bogus = run(&[
        "--email",
        "x@acme.example",
        "--role",
        "submitter",
        "--organisation-id",
        "Acme",
    ]);
    assert!(!bogus.status.success());
    assert!(String::from_utf8_lossy(&bogus.stderr).contains("No organisation has this id"));
    // A submitter needs one or the other.
    let neither = run(&["--email", "y@acme.example", "--role", "submitter"]);
    assert!(!neither.status.success());
}
