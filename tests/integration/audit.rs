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
    assert!(
        !page
            .body
            .contains("<code class=\"action\">account.create</code>"),
        "filter applies"
    );
    assert!(page.body.contains("<caption>"));
    assert!(page.body.contains("scope=\"col\""));
    assert!(page.body.contains("for=\"f-action\""));
    assert!(page.body.contains("Chain head"));

    // An action that is not one (422, said next to the field), a filter that matches nothing, and dates.
    let page = auditor.get("/audit?action=no.such.action");
    assert_eq!(page.status, Status::UnprocessableEntity);
    assert!(page.body.contains("No entries."));
    let page = auditor.get("/audit?action=grant.revoked");
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
        .last_verification()
        .expect("a verification was recorded");
    assert!(v.ok, "{}", v.summary);
    let page = auditor.get("/audit");
    assert!(page.body.contains("Audit log intact"), "notice shown");
    assert!(page.body.contains("data-verification=\"ok\""));

    // One verify at a time on an instance: while one runs (its slot held here), another is refused and
    // records nothing; once it has ended, the next goes through.
    let running = app.state().verifies.enter("").unwrap();
    for full in ["", "1"] {
        let res = auditor.post("/audit/verify", &[("full", full)]);
        assert_eq!(res.status, Status::TooManyRequests, "full={full:?}");
        assert!(res.body.contains("already running"), "{}", res.body);
    }
    assert_eq!(app.audit_count("audit.verify"), 1);
    drop(running);
    let res = auditor.post("/audit/verify", &[("full", "1")]);
    assert_eq!(res.status, Status::SeeOther);
    assert_eq!(app.audit_count("audit.verify"), 2);
    assert_eq!(app.state().verifies.in_use(), 0, "the slot comes back");

    let before = app.with_conn(|c| pcii_portal::audit::store::checkpoints(c).unwrap().len());
    let res = auditor.post("/audit/checkpoint", &[]);
    assert_eq!(res.status, Status::SeeOther);
    let after = app.with_conn(|c| pcii_portal::audit::store::checkpoints(c).unwrap().len());
    assert_eq!(after, before + 1);
    let page = auditor.get("/audit/checkpoints");
    assert!(page.body.contains("Merkle root"));
}

#[test]
fn checkpoints_are_listed_a_page_at_a_time_newest_first() {
    let app = TestApp::new();
    let mut auditor = app.login_as(Role::Auditor, "u@example.gov", None);
    for _ in 0..53 {
        assert_eq!(
            auditor.post("/audit/checkpoint", &[]).status,
            Status::SeeOther
        );
    }
    let all = app.with_conn(|c| pcii_portal::audit::store::checkpoints(c).unwrap());
    assert!(all.len() >= 53, "{}", all.len());
    let first = auditor.get("/audit/checkpoints");
    assert_eq!(first.status, Status::Ok);
    assert!(
        first
            .body
            .contains(&format!("{} checkpoints in all; 50 shown", all.len())),
        "{}",
        first.body
    );
    let older = format!("/audit/checkpoints?before={}", all[all.len() - 50].seq);
    assert!(
        first.body.contains(&older.replace('/', "&#x2F;")),
        "the older link starts below the page's oldest: {}",
        first.body
    );
    let second = auditor.get(&older);
    assert_eq!(second.status, Status::Ok);
    assert!(second.body.contains("(older page)"));
    assert!(!second.body.contains("rel=\"next\""), "no third page");
    // Each checkpoint on exactly one page, the newest on the first.
    for (i, cp) in all.iter().enumerate() {
        let on_first = first.body.contains(&cp.chain_head);
        let on_second = second.body.contains(&cp.chain_head);
        assert!(on_first != on_second, "checkpoint #{} on one page", cp.seq);
        assert_eq!(on_first, i >= all.len() - 50, "checkpoint #{}", cp.seq);
    }
    assert_eq!(
        auditor.get("/audit/checkpoints?before=x").status,
        Status::UnprocessableEntity
    );
}

#[test]
fn the_export_streams_a_verifiable_archive() {
    let app = TestApp::new();
    let mut auditor = app.login_as(Role::Auditor, "u@example.gov", None);
    // A GET shows what an export does and changes nothing; a POST without the form's token is refused.
    let checkpoints =
        || app.with_conn(|c| pcii_portal::audit::store::checkpoints(c).unwrap().len());
    let before = checkpoints();
    let page = auditor.get("/audit/export");
    assert_eq!(page.status, Status::Ok);
    assert!(page
        .body
        .contains("form method=\"post\" action=\"/audit/export\""));
    let page = auditor.post_raw("/audit/export", String::new(), None);
    assert_eq!(page.status, Status::Forbidden);
    assert_eq!(app.audit_count("audit.export"), 0);
    assert_eq!(
        checkpoints(),
        before,
        "no checkpoint signed by a GET or a forged POST"
    );
    let (status, bytes, headers) = auditor.post_bytes("/audit/export", &[]);
    let bytes = bytes.unwrap_or_default();
    assert_eq!(status, Status::Ok);
    assert_eq!(checkpoints(), before + 1);
    assert_eq!(header(&headers, "Content-Type"), Some("application/zip"));
    assert_eq!(
        header(&headers, "Content-Disposition"),
        Some("attachment; filename=\"pcii-audit-export.zip\"")
    );
    // Its length is declared (an export cut short by a failing source then ends visibly short of it).
    assert_eq!(
        header(&headers, "Content-Length"),
        Some(bytes.len().to_string().as_str())
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

    // Twenty minutes on, the export asks for the factor again (nothing exported, nothing signed), then goes
    // through from that page.
    app.advance(20 * 60);
    let page = auditor.post("/audit/export", &[]);
    assert_eq!(page.status, Status::Unauthorized);
    assert!(page.body.contains("Confirm it is you"), "{}", page.body);
    assert_eq!(app.audit_count("audit.export"), 1);
    assert_eq!(checkpoints(), before + 1);
    let code = common::totp_code(app.state(), "u@example.gov");
    let (status, bytes, _) = auditor.post_bytes("/audit/export", &[("factor_code", &code)]);
    assert_eq!(status, Status::Ok);
    assert!(bytes.unwrap().starts_with(b"PK"));
    assert_eq!(app.audit_count("audit.export"), 2);
}

/// The database failing while an export streams: the answer had declared the archive's length, and the body ends
/// short of it, never as a complete archive; nothing in the log is lost.
#[test]
fn an_export_whose_log_fails_to_read_midway_ends_short_of_its_declared_length() {
    use diesel::connection::SimpleConnection;
    use rocket::http::ContentType;
    use std::io::Read;

    let app = TestApp::new();
    let mut auditor = app.login_as(Role::Auditor, "u@example.gov", None);
    // More entries than one page of the export reads at a time, and more bytes than its queue holds.
    app.with_conn(|c| {
        let actor = pcii_portal::audit::log::Actor::default();
        for i in 0..6_000 {
            let event = pcii_portal::audit::log::Event::new(
                "access.refused",
                pcii_portal::audit::log::Outcome::Refused,
            )
            .object("route", format!("/filler/{i}"));
            app.state().audit.record(c, &actor, event).unwrap();
        }
    });
    let token = auditor.csrf();
    let mut req = auditor
        .client
        .post("/audit/export")
        .header(ContentType::Form)
        .body(format!("csrf={token}"));
    for c in &auditor.cookies {
        req = req.cookie(c.clone());
    }
    let mut res = req.dispatch();
    assert_eq!(res.status(), Status::Ok);
    let declared: usize = res
        .headers()
        .get_one("Content-Length")
        .expect("a declared length")
        .parse()
        .unwrap();
    // The log's table goes away while the archive is being sent: after its first bytes, while its writer waits
    // for the client with the rest of the first page of entries.
    let mut got = vec![0u8; 2];
    res.read_exact(&mut got).unwrap();
    assert_eq!(got, b"PK");
    app.with_conn(|c| {
        c.batch_execute("ALTER TABLE audit_entries RENAME TO audit_entries_away")
            .unwrap()
    });
    let read = res.read_to_end(&mut got);
    app.with_conn(|c| {
        c.batch_execute("ALTER TABLE audit_entries_away RENAME TO audit_entries")
            .unwrap()
    });
    assert!(read.is_err(), "the body never ends cleanly");
    assert!(got.len() < declared, "{} of {declared} bytes", got.len());
    // Nothing stored was lost: the chain is whole, and the next export is complete.
    assert!(app
        .with_conn(|c| pcii_portal::audit::log::verify_stored(c, &[], None))
        .is_ok());
    let (status, bytes, headers) = auditor.post_bytes("/audit/export", &[]);
    assert_eq!(status, Status::Ok);
    let bytes = bytes.expect("a complete archive");
    assert_eq!(
        header(&headers, "Content-Length"),
        Some(bytes.len().to_string().as_str())
    );
    assert!(bytes.len() > declared);
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
    // The verify with the kept checkpoints found the log intact up to the newest checkpoint, which is after the
    // changed entry: the next verify starts after it and does not read the entry again; the whole chain does.
    let out = cli(&app).args(["audit", "verify"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("incremental verify"));
    let out = cli(&app)
        .args(["audit", "verify", "--full"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains(&format!("entry #{target}")), "{stderr}");
    assert!(stderr.contains("full verify"), "{stderr}");

    // The portal's own verification of the whole chain reports the failure too (its own run: the CLI's failed run
    // above was already recorded, so the page's answer and a new audit entry are what show that it ran).
    let verifies = app.audit_count("audit.verify");
    let res = auditor.post("/audit/verify", &[("full", "1")]);
    assert_eq!(res.status, Status::SeeOther, "{}", res.body);
    assert_eq!(app.audit_count("audit.verify"), verifies + 1);
    let v = app.last_verification().unwrap();
    assert!(!v.ok);
    assert!(
        v.summary.contains(&format!("entry #{target}")),
        "{}",
        v.summary
    );
}

/// What the last successful verify left for the next one to start from: the seq of its checkpoint.
fn verified_through(app: &TestApp) -> Option<i64> {
    let json = app.with_conn(|c| pcii_portal::audit::store::verified_through(c).unwrap())?;
    let v: pcii_portal::audit::VerifiedThrough = serde_json::from_str(&json).unwrap();
    Some(v.checkpoint.seq)
}

fn run_ok(app: &TestApp, args: &[&str]) -> String {
    let out = cli(app).args(args).output().unwrap();
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn run_failing(app: &TestApp, args: &[&str]) -> String {
    let out = cli(app).args(args).output().unwrap();
    assert!(!out.status.success(), "{args:?} passed");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn head_seq(app: &TestApp) -> i64 {
    app.with_conn(|c| pcii_portal::audit::store::head(c).unwrap().0)
}

/// Changes an entry's reason behind the portal's back (the guards dropped, as a database administrator could);
/// returns the reason it had.
fn change_reason(app: &TestApp, seq: i64, reason: &str) -> Option<String> {
    use diesel::prelude::*;
    let was = app.with_conn(|c| {
        pcii_portal::audit::store::page_after(c, seq - 1, 1).unwrap()[0]
            .reason
            .clone()
    });
    app.with_conn(|c| {
        diesel::sql_query("DROP TRIGGER IF EXISTS audit_entries_no_update")
            .execute(c)
            .unwrap();
        let n = diesel::sql_query("UPDATE audit_entries SET reason = ? WHERE seq = ?")
            .bind::<diesel::sql_types::Text, _>(reason)
            .bind::<diesel::sql_types::BigInt, _>(seq)
            .execute(c)
            .unwrap();
        assert_eq!(n, 1);
    });
    was
}

#[test]
fn incremental_verify_reads_only_what_follows_the_verified_checkpoint() {
    let app = TestApp::new();
    app.create_user(Role::Auditor, "u@example.gov", None);
    app.create_user(Role::Officer, "o@example.gov", None);
    run_ok(&app, &["audit", "checkpoint"]);
    let out = run_ok(&app, &["audit", "verify"]);
    assert!(
        out.contains("full verify, from the first entry; no earlier verify to start from"),
        "{out}"
    );
    let kept = verified_through(&app).expect("the verify kept its checkpoint");
    assert_eq!(
        kept,
        head_seq(&app) - 1,
        "the checkpoint, then the verify's own entry"
    );
    app.create_user(Role::Officer, "o2@example.gov", None);
    let out = run_ok(&app, &["audit", "verify"]);
    assert!(
        out.contains(&format!("incremental verify, after checkpoint #{kept}")),
        "{out}"
    );
    // It read only the entries after the checkpoint.
    assert!(
        out.contains(&format!(
            "{} entries (#{}..#{})",
            head_seq(&app) - 1 - kept,
            kept + 1,
            head_seq(&app) - 1
        )),
        "{out}"
    );
    if app.database_url.starts_with("postgres") {
        return; // the append-only trigger there needs the table owner to drop; covered on SQLite
    }
    // An entry changed before the verified checkpoint: not read again by the incremental verify, found by the
    // whole chain's.
    let was = change_reason(&app, 2, "nothing happened");
    let out = run_ok(&app, &["audit", "verify"]);
    assert!(out.contains("incremental verify"), "{out}");
    let err = run_failing(&app, &["audit", "verify", "--full"]);
    assert!(err.contains("entry #2:"), "{err}");
    assert!(err.contains("full verify"), "{err}");
    change_reason(&app, 2, was.as_deref().unwrap_or_default());
    run_ok(&app, &["audit", "verify", "--full"]);
    // One changed after it: found by both.
    let after = kept + 1;
    change_reason(&app, after, "nothing happened");
    let err = run_failing(&app, &["audit", "verify"]);
    assert!(err.contains(&format!("entry #{after}:")), "{err}");
    assert!(
        err.contains(&format!("incremental verify, after checkpoint #{kept}")),
        "{err}"
    );
    let err = run_failing(&app, &["audit", "verify", "--full"]);
    assert!(err.contains(&format!("entry #{after}:")), "{err}");
    // Every verify was recorded, the failed ones too.
    assert_eq!(app.audit_count("audit.verify"), 7);
}

#[test]
fn a_failed_verify_does_not_move_the_verified_checkpoint() {
    let app = TestApp::new();
    app.create_user(Role::Auditor, "u@example.gov", None);
    run_ok(&app, &["audit", "checkpoint"]);
    run_ok(&app, &["audit", "verify"]);
    let first = verified_through(&app).unwrap();
    app.create_user(Role::Officer, "o@example.gov", None);
    if app.database_url.starts_with("postgres") {
        // No tampering there (see above); a passing verify moves it to the newest checkpoint.
        run_ok(&app, &["audit", "checkpoint"]);
        run_ok(&app, &["audit", "verify"]);
        assert!(verified_through(&app).unwrap() > first);
        return;
    }
    let changed = first + 2;
    let was = change_reason(&app, changed, "nothing happened");
    // A checkpoint signed over it after the change: a passing verify would move to it.
    run_ok(&app, &["audit", "checkpoint"]);
    let second = app.with_conn(|c| {
        pcii_portal::audit::store::last_checkpoint_seq(c)
            .unwrap()
            .unwrap()
    });
    assert!(second > changed);
    for args in [&["audit", "verify"][..], &["audit", "verify", "--full"]] {
        let err = run_failing(&app, args);
        assert!(err.contains(&format!("entry #{changed}:")), "{err}");
        assert_eq!(verified_through(&app), Some(first), "{args:?} moved it");
    }
    // The auditor's page says it failed, and the incremental verify still starts at the first checkpoint.
    let v = app.last_verification().unwrap();
    assert!(!v.ok);
    assert_eq!(v.after_checkpoint, None);
    change_reason(&app, changed, was.as_deref().unwrap_or_default());
    let out = run_ok(&app, &["audit", "verify"]);
    assert!(
        out.contains(&format!("incremental verify, after checkpoint #{first}")),
        "{out}"
    );
    assert_eq!(verified_through(&app), Some(second));
    // The full verify's failure is still what the auditor's page shows: the incremental pass did not read the
    // whole chain. A full pass, later, replaces it.
    let v = app.last_verification().unwrap();
    assert!(!v.ok && v.after_checkpoint.is_none(), "{}", v.summary);
    run_ok(&app, &["audit", "verify", "--full"]);
    let v = app.last_verification().unwrap();
    assert!(v.ok && v.after_checkpoint.is_none(), "{}", v.summary);
}

#[test]
fn verify_now_is_incremental_and_the_whole_chain_on_request() {
    let app = TestApp::new();
    let mut auditor = app.login_as(Role::Auditor, "u@example.gov", None);
    let page = auditor.get("/audit");
    assert!(
        page.body.contains("Verify the whole chain"),
        "{}",
        page.body
    );
    assert!(page.body.contains("name=\"full\" value=\"1\""));
    assert_eq!(
        auditor.post("/audit/checkpoint", &[]).status,
        Status::SeeOther
    );
    let last = |app: &TestApp| app.last_verification().unwrap();

    assert_eq!(auditor.post("/audit/verify", &[]).status, Status::SeeOther);
    let page = auditor.get("/audit");
    assert!(
        page.body
            .contains("full verify, from the first entry; no earlier verify to start from"),
        "{}",
        page.body
    );
    let kept = verified_through(&app).unwrap();

    assert_eq!(auditor.post("/audit/verify", &[]).status, Status::SeeOther);
    let v = last(&app);
    assert!(v.ok, "{}", v.summary);
    assert_eq!(v.after_checkpoint, Some(kept));
    let page = auditor.get("/audit");
    assert!(
        page.body.contains(&format!(
            "Audit log intact (incremental verify, after checkpoint #{kept}"
        )),
        "{}",
        page.body
    );
    assert!(page
        .body
        .contains("data-verification-scope=\"incremental\""));

    assert_eq!(
        auditor.post("/audit/verify", &[("full", "1")]).status,
        Status::SeeOther
    );
    let v = last(&app);
    assert!(v.ok, "{}", v.summary);
    assert_eq!(v.after_checkpoint, None);
    assert!(
        v.summary.starts_with("full verify, from the first entry:"),
        "{}",
        v.summary
    );
    let page = auditor.get("/audit");
    assert!(page
        .body
        .contains("Audit log intact (full verify, from the first entry)"));
    assert!(page.body.contains("data-verification-scope=\"full\""));
    assert_eq!(app.audit_count("audit.verify"), 3);
    // Still the auditor's alone, token and all.
    assert_eq!(
        auditor
            .post_raw("/audit/verify", "full=1".into(), None)
            .status,
        Status::Forbidden
    );
    let mut officer = app.login_as(Role::Officer, "o@example.gov", None);
    assert_eq!(
        officer.post("/audit/verify", &[("full", "1")]).status,
        Status::Forbidden
    );
    assert_eq!(app.audit_count("audit.verify"), 3);
}

/// An audit export being sent stops once its auditor may no longer read the log: untouched it arrives whole (access
/// asked again before every page here, `access_recheck_seconds = 0`); with the account disabled after the first
/// piece, nothing more is read, the client sees the archive end short of its declared length, and the cut is
/// recorded.
#[test]
fn an_audit_export_under_way_is_cut_off_when_its_auditor_is_disabled() {
    use pcii_portal::audit::log::{lock_head, Actor, Event, Outcome};
    let app = TestApp::with(|f| f.merge(("access_recheck_seconds", 0)));
    let mut auditor = app.login_as(Role::Auditor, "ada@pcii.example.gov", None);
    let mut admin = app.login_as(Role::Administrator, "root@pcii.example.gov", None);
    // Pages of 5,000 entries: enough for several, each reason different (the archive is compressed).
    let audit = app.state().audit.clone();
    app.with_conn(|c| {
        c.transaction::<_, pcii_portal::error::AppError, _>(|tx| {
            lock_head(tx)?;
            for i in 0..16_000 {
                let event = Event::new("test.filler", Outcome::Success)
                    .reason(common::sha256_hex(format!("filler {i}").as_bytes()));
                audit.append(tx, &Actor::cli(), &event)?;
            }
            Ok(())
        })
        .unwrap()
    });

    let (status, whole, headers) = auditor.post_bytes("/audit/export", &[]);
    assert_eq!(status, Status::Ok);
    let whole = whole.expect("an untouched export reads to a clean end");
    assert_eq!(
        header(&headers, "Content-Length"),
        Some(whole.len().to_string().as_str())
    );
    assert_eq!(app.audit_count("audit.export_cut"), 0);

    let ada = app.user_id("ada@pcii.example.gov");
    let got = common::received_around(auditor.post_unread("/audit/export", &[]), || {
        let page = admin.post(
            &format!("/admin/accounts/{ada}/disable"),
            &[("reason", "left the office"), ("confirm", "true")],
        );
        assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    });
    assert!(
        got < whole.len() / 2,
        "{got} of about {} bytes sent after the account was disabled",
        whole.len()
    );
    assert_eq!(app.audit_count("audit.export_cut"), 1);
    assert_eq!(
        app.audit_reasons("audit.export_cut"),
        vec!["account disabled".to_string()]
    );

    // Another auditor's export, cut when the session it came from is signed out from another of its sessions.
    let mut ida = app.login_as(Role::Auditor, "ida@pcii.example.gov", None);
    let mut owner = app.browser();
    assert_eq!(
        owner.login("ida@pcii.example.gov", common::PASSWORD),
        Status::SeeOther
    );
    let got = common::received_around(ida.post_unread("/audit/export", &[]), || {
        let page = owner.post("/account/sessions/end-others", &[]);
        assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    });
    assert!(
        got < whole.len() / 2,
        "{got} of about {} bytes sent after the session ended",
        whole.len()
    );
    assert_eq!(
        app.audit_reasons("audit.export_cut"),
        vec!["account disabled".to_string(), "session ended".to_string()]
    );
}

/// An export waiting for a client that does not read holds none of the pool's connections: with a pool of two,
/// two exports stalled mid-archive leave the next page free to answer (it waited for a connection, then 503,
/// when each export kept one for as long as it streamed).
#[test]
fn an_export_to_a_client_that_does_not_read_holds_no_database_connection() {
    use pcii_portal::audit::log::{Actor, Event, Outcome};
    let app = TestApp::with(|f| f.merge(("db_pool_size", 2)));
    let mut auditor = app.login_as(Role::Auditor, "u@example.gov", None);
    // Enough entries that the archive is far longer than what the stream buffers ahead of its client.
    let state = app.state();
    app.with_conn(|c| {
        state
            .audit
            .fact_if(c, &Actor::system(), |tx| {
                for _ in 0..4000 {
                    let event = Event::new("auth.logout", Outcome::Success);
                    state.audit.append(tx, &Actor::system(), &event)?;
                }
                Ok(((), None))
            })
            .unwrap()
    });
    let mut other = common::Browser {
        client: &app.client,
        cookies: auditor.cookies.clone(),
    };
    let first = auditor.post_unread("/audit/export", &[]);
    assert_eq!(first.status(), Status::Ok);
    let second = other.post_unread("/audit/export", &[]);
    assert_eq!(second.status(), Status::Ok);
    // Both are still streaming (neither client has read a byte); the log's page needs a connection.
    assert_eq!(auditor.get("/audit").status, Status::Ok);
    assert_eq!(auditor.get("/audit/checkpoints").status, Status::Ok);
    drop((first, second));
}
