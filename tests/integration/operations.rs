//! The operator's overview: `/admin/operations` for administrators and `pcii-portal status` on the host. It shows
//! the queues, the background jobs' leases, checkpoints, verification and backups, says what needs attention, and
//! names no submission, file or person.

use rocket::http::Status;

use crate::common::{complete_fields, Browser, Part, TestApp};
use pcii_portal::domain::Role;
use pcii_portal::models::{blob_deletion, pending_mail, settings};

const NARRATIVE: &str = "OperationsNarrativeMarker5521 the pump station's bypass";
const FILE_NAME: &str = "OperationsFileMarker7730.pdf";

fn status(app: &TestApp, json: bool) -> (i32, String) {
    let mut cmd = app.command();
    cmd.arg("status");
    if json {
        cmd.arg("--json");
    }
    let out = cmd.output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.is_empty(), "{stderr}");
    (
        out.status.code().unwrap(),
        String::from_utf8(out.stdout).unwrap(),
    )
}

/// The page as the administrator sees it after signing in again (time travel ends the earlier session).
fn operations_page_signed_in_again(app: &TestApp) -> crate::common::Page {
    let mut admin = app.browser();
    assert_eq!(
        admin.login("ada@pcii.example", crate::common::PASSWORD),
        Status::SeeOther
    );
    admin.get("/admin/operations")
}

#[test]
fn the_operations_overview_says_what_needs_attention_and_names_no_content() {
    let app = TestApp::new();
    let mut ann = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let mut parts = complete_fields(NARRATIVE, "submit");
    parts.push(Part::File("file_1", FILE_NAME, b"a diagram"));
    parts.push(Part::Text("description_1", "diagram"));
    crate::common::submission_id(&ann.post_multipart("/submissions", &parts));
    let mut admin = app.login_as(Role::Administrator, "ada@pcii.example", None);

    // A fresh portal: never backed up (SQLite), never verified; both queues empty.
    let page = admin.get("/admin/operations");
    assert_eq!(page.status, Status::Ok);
    let sqlite = !app.database_url.starts_with("postgres");
    assert_eq!(page.body.contains("No backup has been made"), sqlite);
    assert!(page.body.contains("The audit log has never been verified"));
    assert!(!page.body.contains("still wait to be deleted"));
    assert!(!page.body.contains("wait for the mail route"));

    // An auditor's verify answers one of them.
    let mut audrey = app.login_as(Role::Auditor, "audrey@pcii.example", None);
    assert_eq!(audrey.post("/audit/verify", &[]).status, Status::SeeOther);
    let page = admin.get("/admin/operations");
    assert!(!page.body.contains("never been verified"), "{}", page.body);
    assert!(page.body.contains("intact"));

    // Work that has waited too long: a deletion the store has not confirmed for two hours, and mail the route has
    // not taken for two days.
    let ada = app.with_conn(|c| {
        pcii_portal::models::account::find_by_email(c, "ada@pcii.example")
            .unwrap()
            .unwrap()
            .id
    });
    let now = app.now();
    app.with_conn(|c| {
        blob_deletion::enqueue(c, &["0123456789abcdef0123456789abcdef".into()], now).unwrap();
        blob_deletion::failed(c, "0123456789abcdef0123456789abcdef").unwrap();
        pending_mail::insert(
            c,
            &pending_mail::PendingMail {
                id: "m1".into(),
                kind: "message".into(),
                user_id: ada,
                path: "/dashboard".into(),
                created_at: now,
                attempts: 3,
                next_attempt_at: now,
            },
        )
        .unwrap();
    });
    app.advance(2 * 3600);
    let page = operations_page_signed_in_again(&app);
    assert!(
        page.body
            .contains("1 destroyed file(s) still wait to be deleted from the blob store"),
        "{}",
        page.body
    );
    assert!(page.body.contains("tried up to 1 times"), "{}", page.body);
    assert!(!page.body.contains("wait for the mail route"));
    app.advance(2 * 86400);
    let page = operations_page_signed_in_again(&app);
    assert!(
        page.body
            .contains("1 email(s) wait for the mail route (the oldest since"),
        "{}",
        page.body
    );
    // Counts and times only.
    for marker in [NARRATIVE, FILE_NAME, "ann@acme.example", "Acme"] {
        assert!(
            !page.body.contains(marker),
            "{marker} on the operations page"
        );
    }

    // The same overview on the host, needing no keys. It reads the host's clock, not the test's advanced one, so
    // the queued work is minutes old there; on SQLite the missing backup still needs attention (exit 2).
    let (code, text) = status(&app, false);
    assert_eq!(code, if sqlite { 2 } else { 0 }, "{text}");
    assert!(text.contains("mail waiting for the route: 1"), "{text}");
    let (code, json) = status(&app, true);
    assert_eq!(code, if sqlite { 2 } else { 0 });
    let o: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(o["deletions"]["count"], 1);
    assert_eq!(o["deletions"]["most_attempts"], 1);
    assert_eq!(o["mail"]["count"], 1);
    assert_eq!(o["mail"]["most_attempts"], 3);
    assert!(o["audit"]["entries"].as_i64().unwrap() > 0);
    assert_eq!(o["audit"]["last_verification"]["ok"], true);
    assert_eq!(o["key_generations"].as_array().unwrap().len(), 1);
    assert_eq!(
        o["attention"].as_array().unwrap().len(),
        usize::from(sqlite),
        "{json}"
    );
    for marker in [NARRATIVE, FILE_NAME, "ann@acme.example", "Acme"] {
        assert!(!json.contains(marker), "{marker} in the status");
    }

    // Once the queues are empty and (on SQLite) a backup is made, nothing needs attention: exit 0.
    app.with_conn(|c| {
        blob_deletion::done(c, "0123456789abcdef0123456789abcdef").unwrap();
        pending_mail::delete(c, "m1").unwrap();
    });
    if sqlite {
        let tmp = tempfile::tempdir().unwrap();
        let out = app
            .command()
            .args(["backup", "--to"])
            .arg(tmp.path().join("b"))
            .output()
            .unwrap();
        assert!(out.status.success());
    }
    let (code, text) = status(&app, false);
    assert_eq!(code, 0, "{text}");
    assert!(text.contains("needs attention: nothing"), "{text}");
}

#[test]
fn the_operations_page_is_the_administrators_only() {
    let app = TestApp::new();
    let mut anon = app.browser();
    assert_eq!(anon.get("/admin/operations").status, Status::Unauthorized);
    for (role, mut b) in app.one_browser_per_role() {
        let expected = if role == Role::Administrator {
            Status::Ok
        } else {
            Status::Forbidden
        };
        assert_eq!(b.get("/admin/operations").status, expected, "{role:?}");
    }
}

/// The last verify's result is kept in the database for the auditor's page and the operator's alerts. Rewritten
/// there by someone who cannot sign (a failed verify made to read as passed, a stale one as recent), it no longer
/// carries the portal's signature: every view says so instead of trusting it, until a new verify replaces it.
#[test]
fn a_verify_result_rewritten_in_the_database_is_not_trusted() {
    const UNTRUSTED: &str = "does not carry this portal&#x27;s signature";
    let app = TestApp::new();
    let mut audrey = app.login_as(Role::Auditor, "audrey@pcii.example", None);
    let mut admin = app.login_as(Role::Administrator, "ada@pcii.example", None);
    assert_eq!(audrey.post("/audit/verify", &[]).status, Status::SeeOther);
    let stored = app
        .with_conn(|c| settings::get(c, "audit.last_verified"))
        .unwrap()
        .expect("a result was stored");
    let genuine: serde_json::Value = serde_json::from_str(&stored).unwrap();
    assert_eq!(genuine["ok"], true);
    assert_eq!(genuine["signature"].as_str().map(str::len), Some(128));
    fn trusted(app: &TestApp, audrey: &mut Browser<'_>, admin: &mut Browser<'_>) {
        let log = audrey.get("/audit");
        assert!(
            log.body.contains("data-verification=\"ok\""),
            "{}",
            log.body
        );
        assert!(!log.body.contains("data-verification=\"unsigned\""));
        let ops = admin.get("/admin/operations");
        assert!(!ops.body.contains(UNTRUSTED), "{}", ops.body);
        let (_, text) = status(app, false);
        assert!(text.contains("last verification: "), "{text}");
        assert!(!text.contains("NOT SIGNED"), "{text}");
        assert!(!text.contains("signature not checked"), "{text}");
    }
    trusted(&app, &mut audrey, &mut admin);

    let later = genuine["at"].as_i64().unwrap() + 30 * 86_400;
    let forgeries: [(&str, serde_json::Value); 4] = [
        ("verdict", serde_json::json!(false)),
        ("retimed", serde_json::json!(later)),
        (
            "reworded",
            serde_json::json!("full verify: 1 entries (#1..#1)"),
        ),
        ("unsigned", serde_json::Value::Null),
    ];
    for (what, value) in forgeries {
        let mut forged = genuine.clone();
        let field = match what {
            "verdict" => "ok",
            "retimed" => "at",
            "reworded" => "summary",
            _ => "signature",
        };
        forged[field] = value;
        app.with_conn(|c| settings::set(c, "audit.last_verified", &forged.to_string()))
            .unwrap();
        let log = audrey.get("/audit");
        assert!(
            log.body.contains("data-verification=\"unsigned\""),
            "{what}: {}",
            log.body
        );
        assert!(!log.body.contains("data-verification=\"ok\""), "{what}");
        assert!(!log.body.contains("data-verification=\"failed\""), "{what}");
        let ops = admin.get("/admin/operations");
        assert!(ops.body.contains(UNTRUSTED), "{what}: {}", ops.body);
        assert!(ops.body.contains("not to be trusted"), "{what}");
        // The host's `status` reads the audit key where it rests in clear: it says so too, and needs attention.
        let (code, text) = status(&app, false);
        assert_ne!(code, 0, "{what}: {text}");
        assert!(
            text.contains("NOT SIGNED by this portal's audit key"),
            "{what}: {text}"
        );
        assert!(
            text.contains("does not carry this portal's signature"),
            "{what}: {text}"
        );
        let (_, json) = status(&app, true);
        let o: serde_json::Value = serde_json::from_str(&json).unwrap();
        assert_eq!(o["audit"]["last_verification"]["signed"], false, "{what}");
    }

    // The next verify replaces it with a signed result.
    assert_eq!(audrey.post("/audit/verify", &[]).status, Status::SeeOther);
    trusted(&app, &mut audrey, &mut admin);
    assert!(app.last_verification().unwrap().ok);
}
