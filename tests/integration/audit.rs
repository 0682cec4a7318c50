//! The auditor's workspace, through the front door.

use std::process::Command;

use crate::common::{self, header, TestApp};
use pcii_portal::domain::Role;
use rocket::http::Status;

const GET_ROUTES: &[&str] = &[
    "/audit",
    "/audit?action=auth.login",
    "/audit/checkpoints",
    "/audit/checkpoints.json",
    "/audit/export",
    "/audit/accounts/0123456789abcdef",
    "/audit/submissions/PCII-0001",
];

fn cli(app: &TestApp) -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_pcii-portal"));
    cmd.env("PCII_DATA_DIR", app.data_dir())
        .env("PCII_KEYS_DIR", app.keys_dir())
        .env("PCII_DATABASE_URL", &app.database_url)
        .env("PCII_CONFIG", "/nonexistent.toml");
    cmd
}

fn get_bytes(b: &common::Browser<'_>, uri: &str) -> (Status, Vec<(String, String)>, Vec<u8>) {
    let mut req = b.client.get(uri.to_string());
    for c in &b.cookies {
        req = req.cookie(c.clone());
    }
    let res = req.dispatch();
    let status = res.status();
    let headers = res
        .headers()
        .iter()
        .map(|h| (h.name().to_string(), h.value().to_string()))
        .collect();
    (status, headers, res.into_bytes().unwrap_or_default())
}

#[test]
fn only_auditors_reach_the_workspace() {
    let app = TestApp::new();
    let mut auditor = app.login_as(Role::Auditor, "u@example.gov", None);
    let mut others = [
        app.login_as(Role::Submitter, "s@acme.example", Some("Acme")),
        app.login_as(Role::Officer, "o@example.gov", None),
        app.login_as(Role::AuthorizedUser, "a@example.gov", None),
        app.login_as(Role::Administrator, "ad@example.gov", None),
    ];
    let mut anon = app.browser();
    for path in GET_ROUTES {
        assert_eq!(auditor.get(path).status, Status::Ok, "auditor {path}");
        assert_eq!(
            anon.get(path).status,
            Status::Unauthorized,
            "anonymous {path}"
        );
        for b in others.iter_mut() {
            assert_eq!(b.get(path).status, Status::Forbidden, "other role {path}");
        }
    }
    for path in ["/audit/verify", "/audit/checkpoint"] {
        for b in others.iter_mut() {
            assert_eq!(b.post(path, &[]).status, Status::Forbidden, "{path}");
        }
        assert_eq!(
            auditor.post_raw(path, "x=1".into(), None).status,
            Status::Forbidden,
            "{path} without a token"
        );
    }
}

#[test]
fn the_log_is_filtered_paginated_and_viewing_is_audited() {
    let app = TestApp::new();
    let auditor_id = app.create_user(Role::Auditor, "u@example.gov", None);
    let mut auditor = app.browser();
    assert_eq!(
        auditor.login("u@example.gov", common::PASSWORD),
        Status::SeeOther
    );
    let officer_id = app.create_user(Role::Officer, "o@example.gov", None);
    let mut officer = app.browser();
    assert_eq!(
        officer.login("o@example.gov", common::PASSWORD),
        Status::SeeOther
    );

    let views = app.audit_count("audit.view");
    let page = auditor.get("/audit?action=auth.login");
    assert_eq!(page.status, Status::Ok);
    assert_eq!(app.audit_count("audit.view"), views + 1);
    assert!(page.body.contains("auth.login"));
    assert!(!page.body.contains("account.create"), "filter applies");
    assert!(page.body.contains("<caption>"));
    assert!(page.body.contains("scope=\"col\""));
    assert!(page.body.contains("for=\"f-action\""));
    assert!(page.body.contains("Chain head"));

    // A filter that matches nothing, and dates.
    let page = auditor.get("/audit?action=no.such.action");
    assert!(page.body.contains("No entries."));
    let page = auditor.get("/audit?action=auth.login&from=2000-01-01&to=2000-01-02");
    assert!(page.body.contains("No entries."));
    let page = auditor.get("/audit?action=auth.login&from=2000-01-01&to=2999-01-01");
    assert!(!page.body.contains("No entries."));

    // Per-account activity: what the account did.
    let page = auditor.get(&format!("/audit/accounts/{auditor_id}"));
    assert_eq!(page.status, Status::Ok);
    assert!(page.body.contains("audit.view"));
    assert!(!page.body.contains("account.create"));
    // Entries about an account (its logins) through the object filter.
    let page = auditor.get(&format!("/audit?object={officer_id}"));
    assert!(page.body.contains("auth.login"));
    assert!(page.body.contains("account.create"));
    // Per-submission history (no submissions yet: an empty, working page).
    let page = auditor.get("/audit/submissions/PCII-2026-0001");
    assert_eq!(page.status, Status::Ok);
    assert!(page.body.contains("No entries."));

    // Pagination: more than a page of entries.
    for _ in 0..60 {
        auditor.get("/audit/checkpoints");
    }
    let first = auditor.get("/audit?action=audit.view");
    assert!(first.body.contains("Older entries"));
    let marker = "href=\"";
    let link_start = first
        .body
        .find("rel=\"next\"")
        .and_then(|i| first.body[..i].rfind(marker))
        .expect("an older link")
        + marker.len();
    let link_end = first.body[link_start..].find('"').unwrap() + link_start;
    let link = first.body[link_start..link_end]
        .replace("&amp;", "&")
        .replace("&#x2F;", "/")
        .replace("&#x3D;", "=");
    assert!(link.contains("before="), "{link}");
    assert!(link.contains("action=audit.view"), "{link}");
    let second = auditor.get(&link);
    assert_eq!(second.status, Status::Ok);
    assert!(second.body.contains("audit.view"));
}

#[test]
fn verify_and_checkpoint_from_the_portal() {
    let app = TestApp::new();
    let mut auditor = app.login_as(Role::Auditor, "u@example.gov", None);
    let res = auditor.post("/audit/verify", &[]);
    assert_eq!(res.status, Status::SeeOther);
    assert_eq!(app.audit_count("audit.verify"), 1);
    let v = app
        .with_conn(pcii_portal::audit::store::last_verification)
        .unwrap()
        .expect("a verification was recorded");
    assert!(v.ok, "{}", v.summary);
    let page = auditor.get("/audit");
    assert!(page.body.contains("Audit log intact"), "notice shown");
    assert!(page.body.contains("data-verification=\"ok\""));

    let before = app.with_conn(|c| pcii_portal::audit::store::checkpoints(c).unwrap().len());
    let res = auditor.post("/audit/checkpoint", &[]);
    assert_eq!(res.status, Status::SeeOther);
    let after = app.with_conn(|c| pcii_portal::audit::store::checkpoints(c).unwrap().len());
    assert_eq!(after, before + 1);
    let page = auditor.get("/audit/checkpoints");
    assert!(page.body.contains("Merkle root"));
}

#[test]
fn the_export_streams_a_verifiable_archive() {
    let app = TestApp::new();
    let auditor = app.login_as(Role::Auditor, "u@example.gov", None);
    let (status, headers, bytes) = get_bytes(&auditor, "/audit/export");
    assert_eq!(status, Status::Ok);
    assert_eq!(header(&headers, "Content-Type"), Some("application/zip"));
    assert_eq!(
        header(&headers, "Content-Disposition"),
        Some("attachment; filename=\"pcii-audit-export.zip\"")
    );
    assert_eq!(app.audit_count("audit.export"), 1);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("export.zip");
    std::fs::write(&path, &bytes).unwrap();
    let summary = pcii_portal::audit::export::verify_export(&path, None).expect("export verifies");
    let export_seq = app.with_conn(|c| {
        use diesel::prelude::*;
        use pcii_portal::db::schema::audit_entries;
        audit_entries::table
            .filter(audit_entries::action.eq("audit.export"))
            .select(audit_entries::seq)
            .first::<i64>(c)
            .unwrap()
    });
    assert!(
        summary.last_seq >= export_seq,
        "the export includes its own entry"
    );
    assert!(summary.checkpoints_checked >= 1);

    let out = cli(&app)
        .args(["audit", "verify", "--export"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // A damaged archive does not verify.
    let mut broken = bytes.clone();
    let mid = broken.len() / 2;
    broken[mid] ^= 0x55;
    std::fs::write(&path, &broken).unwrap();
    assert!(pcii_portal::audit::export::verify_export(&path, None).is_err());
}

#[test]
fn kept_checkpoints_verify_and_tampering_is_named() {
    let app = TestApp::new();
    let mut auditor = app.login_as(Role::Auditor, "u@example.gov", None);
    assert_eq!(
        auditor.post("/audit/checkpoint", &[]).status,
        Status::SeeOther
    );
    let (status, headers, bytes) = get_bytes(&auditor, "/audit/checkpoints.json");
    assert_eq!(status, Status::Ok);
    assert!(header(&headers, "Content-Disposition")
        .unwrap_or_default()
        .starts_with("attachment"));
    assert_eq!(app.audit_count("audit.checkpoints_download"), 1);
    let cps: Vec<serde_json::Value> = serde_json::from_slice(&bytes).expect("a JSON array");
    assert!(!cps.is_empty());
    let dir = tempfile::tempdir().unwrap();
    let kept = dir.path().join("checkpoints.json");
    std::fs::write(&kept, &bytes).unwrap();
    let out = cli(&app)
        .args(["audit", "verify", "--checkpoint"])
        .arg(&kept)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    if app.database_url.starts_with("postgres") {
        return;
    }
    use diesel::prelude::*;
    let target: i64 = 3;
    app.with_conn(|c| {
        diesel::sql_query("DROP TRIGGER audit_entries_no_update")
            .execute(c)
            .unwrap();
        diesel::sql_query("DROP TRIGGER audit_entries_no_delete")
            .execute(c)
            .unwrap();
        let n = diesel::sql_query(format!(
            "UPDATE audit_entries SET reason = 'nothing happened' WHERE seq = {target}"
        ))
        .execute(c)
        .unwrap();
        assert_eq!(n, 1);
    });
    let out = cli(&app).args(["audit", "verify"]).output().unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("entry #{target}")), "{stderr}");

    // The portal's own verification reports the failure too.
    auditor.post("/audit/verify", &[]);
    let v = app
        .with_conn(pcii_portal::audit::store::last_verification)
        .unwrap()
        .unwrap();
    assert!(!v.ok);
    assert!(
        v.summary.contains(&format!("entry #{target}")),
        "{}",
        v.summary
    );
}
