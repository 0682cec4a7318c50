//! tracing output never holds passwords, session tokens, form tokens or setup tokens: a flow with marker
//! strings in every field, with the log captured at TRACE level — including a whole submission with a
//! marker in every field, in a file and in its name, then its receipt, detail page and download.

use std::io::Write;
use std::sync::{Arc, Mutex};

use crate::common::{self, TestApp};
use rocket::http::Status;

#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

#[test]
fn no_secret_or_typed_value_reaches_the_log() {
    let captured = Captured::default();
    let writer = captured.clone();
    let subscriber = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(move || writer.clone())
        .with_ansi(false)
        .finish();
    // Global, so events from blocking threads (database work) are captured too. The other tests of this binary
    // log here as well while it runs: their values are no markers of this test's, and the portal must not log
    // what they type either.
    tracing::subscriber::set_global_default(subscriber).unwrap();

    let app = TestApp::new();
    let setup_token = app.setup_token.clone().unwrap();
    let admin_password = "MARKER-ADMIN-PASSWORD-7f3a horse";
    let mut admin = app.browser();
    let res = admin.post(
        &format!("/setup/{setup_token}"),
        &[
            ("email", "marker-admin@example.gov"),
            ("display_name", "MARKER-NAME-1"),
            ("password", admin_password),
        ],
    );
    assert_eq!(res.status, Status::SeeOther);
    assert_eq!(
        admin.login("marker-admin@example.gov", admin_password),
        Status::SeeOther
    );
    // The administrator enrols an authenticator app (its seed and recovery codes are shown on pages), then signs
    // in again with a wrong code, a recovery code and a good code.
    let (seed, recovery) = admin.enrol_authenticator_on_pages();
    let seed_base32 = totp_rs::Secret::from(seed).to_base32();
    admin.post("/logout", &[]);
    admin.post(
        "/login",
        &[
            ("email", "marker-admin@example.gov"),
            ("password", admin_password),
        ],
    );
    admin.post("/login/second-factor", &[("factor_code", "MARKER-CODE-9")]);
    assert_eq!(
        admin
            .post("/login/second-factor", &[("factor_code", &recovery[0])])
            .status,
        Status::SeeOther
    );
    let session = admin.session_cookie().unwrap();
    let csrf = admin.csrf();

    let submitter_password = "MARKER-SUBMITTER-PASSWORD-91 staple";
    let mut sam = app.browser();
    let res = sam.post(
        "/register",
        &[
            ("display_name", "MARKER-NAME-2"),
            ("organisation", "MARKER-ORG"),
            ("email", "marker-sam@example.com"),
            ("password", submitter_password),
        ],
    );
    assert_eq!(res.status, Status::SeeOther);
    // The emailed confirmation link is a credential too: it must not reach the log either.
    let confirm = app
        .mailed_link("marker-sam@example.com", "/verify-email/")
        .expect("a confirmation link");
    let confirm_token = confirm.trim_start_matches("/verify-email/").to_string();
    // Confirmed by signing in on the link's page.
    assert_eq!(
        sam.confirm_address(&confirm, "marker-sam@example.com", submitter_password)
            .status,
        Status::SeeOther
    );
    // A failed login, a wrong-password change, a good one.
    assert_eq!(
        sam.login("marker-sam@example.com", "MARKER-WRONG-PASSWORD-x"),
        Status::Unauthorized
    );
    assert_eq!(
        sam.login("marker-sam@example.com", submitter_password),
        Status::SeeOther
    );
    let new_password = "MARKER-NEW-PASSWORD-22 battery";
    sam.post(
        "/account/password",
        &[
            ("current_password", "MARKER-WRONG-CURRENT"),
            ("new_password", new_password),
        ],
    );
    sam.post(
        "/account/password",
        &[
            ("current_password", submitter_password),
            ("new_password", new_password),
        ],
    );
    // A whole submission with a marker in every field and in the file and its name; then every view of it.
    assert_eq!(
        sam.login("marker-sam@example.com", new_password),
        Status::SeeOther
    );
    let file = b"head MARKER-FILE-CONTENT tail".repeat(1000);
    let mut parts = vec![
        common::Part::Text("sector", "Energy"),
        common::Part::Text("title", "MARKER-TITLE"),
        common::Part::Text("narrative", "MARKER-NARRATIVE"),
        common::Part::Text("primary_name", "MARKER-CONTACT"),
        common::Part::Text("primary_email", "marker-contact@example.com"),
        common::Part::Text("primary_phone", "MARKER-PHONE"),
        common::Part::Text("secondary_name", "MARKER-SECOND"),
        common::Part::Text("secondary_email", "marker-second@example.com"),
        common::Part::Text("federal_requirement", "yes"),
        common::Part::Text("federal_agency", "MARKER-AGENCY"),
        common::Part::Text("federal_authority", "MARKER-AUTHORITY"),
        common::Part::Text("description_1", "MARKER-DESCRIPTION"),
        common::Part::File("file_1", "MARKER-FILENAME.bin", &file),
    ];
    for (k, v) in common::STATEMENT_PARTS {
        parts.push(common::Part::Text(k, v));
    }
    parts.push(common::Part::Text("action", "submit"));
    let res = sam.post_multipart("/submissions", &parts);
    assert_eq!(res.status, Status::SeeOther, "{}", res.body);
    let receipt = res.header("Location").unwrap().to_string();
    let id = receipt.split('/').nth(2).unwrap().to_string();
    assert!(sam.get(&receipt).body.contains("MARKER-FILENAME.bin"));
    sam.get(&format!("{receipt}.txt"));
    let detail = sam.get(&format!("/submissions/{id}"));
    assert!(detail.body.contains("MARKER-NARRATIVE"));
    let att = detail
        .body
        .split("files/")
        .nth(1)
        .map(|s| s[..32].to_string())
        .expect("a file link");
    let (status, body, _) = sam.get_bytes(&format!("/submissions/{id}/files/{att}"));
    assert_eq!(status, Status::Ok);
    assert_eq!(body.unwrap(), file);
    // An upload refused over the token, one broken off halfway.
    sam.post_multipart_raw("/submissions", common::multipart_body(&parts));
    let mut body = common::multipart_body(&parts);
    body.truncate(body.len() - 20_000);
    sam.post_multipart_raw("/submissions", body);

    // Something that fails with a 500-class path would be logged in detail; a 404 and a refused role too.
    sam.get("/admin");
    sam.get("/MARKER-PATH-SEGMENT");

    let log = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
    // The requests were logged, by their route template only.
    assert!(
        log.contains("/setup/<token>"),
        "the log was captured: {log}"
    );
    for secret in [
        "MARKER-ADMIN-PASSWORD",
        "MARKER-SUBMITTER-PASSWORD",
        "MARKER-WRONG-PASSWORD",
        "MARKER-NEW-PASSWORD",
        "MARKER-WRONG-CURRENT",
        "MARKER-NAME",
        "MARKER-ORG",
        "MARKER-PATH-SEGMENT",
        "MARKER-TITLE",
        "MARKER-NARRATIVE",
        "MARKER-CONTACT",
        "marker-contact",
        "MARKER-PHONE",
        "MARKER-SECOND",
        "marker-second",
        "MARKER-AGENCY",
        "MARKER-AUTHORITY",
        "MARKER-DESCRIPTION",
        "MARKER-FILENAME",
        "MARKER-FILE-CONTENT",
        "MARKER-CODE",
        seed_base32.as_str(),
        recovery[0].as_str(),
        recovery[1].as_str(),
        setup_token.as_str(),
        confirm_token.as_str(),
        session.as_str(),
        csrf.as_str(),
    ] {
        assert!(!log.contains(secret), "the log holds {secret}");
    }
}

/// Rocket logs a request it has no route for at error level with the whole URI ("No matching routes for GET
/// /password/reset/<token>/x."), and a request it salvaged or found odd at warn level, under its own targets; a
/// token in the path of such a request (a reset, invitation or setup link with a segment added) must not reach the
/// log. Tried on the real binary, logging as an operator would set it (`PCII_LOG=trace`, the most it can ask): no
/// line carries the marker. Rocket's launch errors still do: a second portal on the same port says why it stops.
#[test]
fn rocket_s_own_lines_never_carry_a_request_s_uri() {
    use std::io::{Read, Write};
    use std::process::{Command, Stdio};
    use std::time::{Duration, Instant};

    const MARKER: &str = "MARKERPATHTOKEN5e1d";
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let start = |dir: &std::path::Path| {
        let log = std::fs::File::create(dir.join("portal.log")).unwrap();
        Command::new(env!("CARGO_BIN_EXE_pcii-portal"))
            .env("PCII_PORT", port.to_string())
            .env("PCII_ADDRESS", "127.0.0.1")
            .env("PCII_DATA_DIR", dir.join("data"))
            .env("PCII_KEYS_DIR", dir.join("keys"))
            .env("PCII_DATABASE_URL", "")
            .env("PCII_CONFIG", "/nonexistent.toml")
            .env("PCII_LOG", "trace")
            .env_remove("PCII_TEST_DATABASE_URL")
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .stdin(Stdio::null())
            .spawn()
            .unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let mut portal = start(dir.path());
    let ask = |path: &str| -> Option<String> {
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        s.write_all(
            format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n")
                .as_bytes(),
        )
        .ok()?;
        let mut out = String::new();
        let _ = s.read_to_string(&mut out);
        Some(out)
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    while ask("/healthz").is_none_or(|a| !a.starts_with("HTTP/1.1 200")) {
        assert!(Instant::now() < deadline, "the portal did not start");
        assert!(portal.try_wait().unwrap().is_none(), "the portal stopped");
        std::thread::sleep(Duration::from_millis(100));
    }
    for path in [
        format!("/password/reset/{MARKER}/x"),
        format!("/invitations/{MARKER}/x"),
        format!("/setup/{MARKER}/x"),
        format!("/nothing/{MARKER}?token={MARKER}"),
    ] {
        let answer = ask(&path).expect("an answer");
        assert!(answer.starts_with("HTTP/1.1 404"), "{path}: {answer}");
    }

    // A second portal on the same port: Rocket's launch error is logged.
    let other = tempfile::tempdir().unwrap();
    let second = start(other.path()).wait_with_output().unwrap();
    assert!(!second.status.success());
    let second_log = std::fs::read_to_string(other.path().join("portal.log")).unwrap();

    let _ = portal.kill();
    let _ = portal.wait();
    let log = std::fs::read_to_string(dir.path().join("portal.log")).unwrap();
    assert!(
        !log.contains(MARKER),
        "a request's URI reached the log:\n{log}"
    );
    // Positive control on this same log: the four requests reached it, as the portal's own request lines (the
    // route's template, `-` when none matched, in place of the URI).
    // (The lines are coloured: ANSI escapes taken out first.)
    let plain = {
        let mut out = String::with_capacity(log.len());
        let mut chars = log.chars();
        while let Some(c) = chars.next() {
            if c == '\u{1b}' {
                for c in chars.by_ref() {
                    if c.is_ascii_alphabetic() {
                        break;
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    };
    let refused = plain
        .lines()
        .filter(|l| {
            l.contains(" request ") && l.contains(" route=- ") && l.contains(" status=404 ")
        })
        .count();
    assert_eq!(refused, 4, "the four requests' lines:\n{plain}");
    assert!(
        second_log.contains("binding failed: Address already in use"),
        "the launch error is said:\n{second_log}"
    );
}

/// Every server of the shipped nginx sites logs with the portal's own line (`pcii_portal`: tokens in links replaced,
/// no query string); a server without its own `access_log` falls back to nginx's default, which logs the whole
/// request line (reset, invitation and setup tokens with it). The proxy suite checks that line's output.
#[test]
fn every_shipped_nginx_server_logs_without_tokens() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("deploy/nginx");
    for site in ["pcii-portal.conf", "pcii-portal-cluster.conf"] {
        let text = std::fs::read_to_string(root.join(site)).unwrap();
        let servers: Vec<&str> = text.split("\nserver {").skip(1).collect();
        assert!(!servers.is_empty(), "{site} has no server block");
        for (i, server) in servers.iter().enumerate() {
            let body = server.split("\n}").next().unwrap();
            let logs: Vec<&str> = body
                .lines()
                .map(str::trim)
                .filter(|l| l.starts_with("access_log"))
                .collect();
            assert!(
                !logs.is_empty() && logs.iter().all(|l| l.contains(" pcii_portal;")),
                "{site}, server block {}: {logs:?}",
                i + 1
            );
        }
    }
}
