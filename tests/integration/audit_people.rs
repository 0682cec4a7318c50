//! The auditor's view of people (issue 18): names, emails and organisations next to the ids, a person filter,
//! actions by their labels, "who accessed this submission", the auditors' own reading folded away, and an
//! export that carries the names and still verifies offline.

use std::io::Read;

use crate::common::{complete_fields, file_bytes, Browser, Part, TestApp};
use pcii_portal::domain::Role;
use rocket::http::Status;

fn submit(b: &mut Browser<'_>, files: &[Vec<u8>]) -> String {
    let mut parts = complete_fields("Audit people narrative", "submit");
    let names: Vec<(String, String)> = (1..=files.len())
        .map(|i| (format!("file_{i}"), format!("description_{i}")))
        .collect();
    for (i, f) in files.iter().enumerate() {
        parts.push(Part::Text(&names[i].1, "desc"));
        parts.push(Part::File(&names[i].0, "report.pdf", f));
    }
    let page = b.post_multipart("/submissions", &parts);
    crate::common::submission_id(&page)
}

/// A submission of Acme read by an officer: two views of its page and two downloads of file 2.
fn read_by_an_officer(app: &TestApp) -> (String, String) {
    let mut sub = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme Water"));
    let mut officer = app.login_as(Role::Officer, "olga@pcii.example.gov", None);
    let id = submit(
        &mut sub,
        &[file_bytes(1_000, 1, ""), file_bytes(250_000, 2, "")],
    );
    for _ in 0..2 {
        assert_eq!(
            officer.get(&format!("/officer/submissions/{id}")).status,
            Status::Ok
        );
    }
    let second = app.attachment_ids(&id)[1].clone();
    for _ in 0..2 {
        let (status, _, _) =
            officer.get_bytes(&format!("/officer/submissions/{id}/files/{second}"));
        assert_eq!(status, Status::Ok);
    }
    let officer_id = app.with_conn(|c| {
        use diesel::prelude::*;
        use pcii_portal::db::schema::users;
        users::table
            .filter(users::email.eq("olga@pcii.example.gov"))
            .select(users::id)
            .first::<String>(c)
            .unwrap()
    });
    (id, officer_id)
}

#[test]
fn the_auditor_finds_who_opened_a_submission_by_email_and_sees_names_and_the_per_person_summary() {
    let app = TestApp::new();
    let (id, officer_id) = read_by_an_officer(&app);
    let mut auditor = app.login_as(Role::Auditor, "aud@pcii.example.gov", None);

    // By the person's email (part of it, any case): only that person's entries, each with name and email.
    let page = auditor.get("/audit?person=OLGA%40pcii&action=content.downloaded");
    assert_eq!(page.status, Status::Ok);
    assert!(
        page.body
            .contains("Entries by the one account that matches."),
        "{}",
        page.body
    );
    assert_eq!(
        page.body
            .matches("<code class=\"action\">content.downloaded</code>")
            .count(),
        2
    );
    assert!(page.body.contains("Test olga@pcii.example.gov"));
    assert!(page.body.contains("File downloaded"));
    // The submitter's entries are not among them.
    assert!(!page.body.contains("Test ann@acme.example"));
    // A text nobody's account contains finds nothing, and says so.
    let page = auditor.get("/audit?person=nobody-at-all");
    assert!(page
        .body
        .contains("No account&#x27;s name, email or organisation contains this text."));
    assert!(page.body.contains("No entries."));

    // Who accessed this submission: the officer, two views, two downloads of file 2 with its size; the submitter
    // (who made it, never opened it through a content page) is not a reader.
    let page = auditor.get(&format!("/audit/submissions/{id}"));
    assert_eq!(page.status, Status::Ok);
    let section = page
        .body
        .split("Who accessed this submission")
        .nth(1)
        .unwrap();
    let section = section.split("Every entry about it").next().unwrap();
    assert!(
        section.contains(&format!("data-reader=\"{officer_id}\"")),
        "{section}"
    );
    assert!(section.contains("Test olga@pcii.example.gov"));
    assert!(
        section.contains("<td>2</td>\n      <td>2</td>\n      <td>0</td>"),
        "{section}"
    );
    assert!(
        section.contains("File 2 (244.1 KiB) × 2") || section.contains("File 2 (250.0 KB) × 2"),
        "{section}"
    );
    assert_eq!(section.matches("data-reader=").count(), 1);
    // The organisation of an account is shown next to it (the submitter's, in its own entries).
    let page = auditor.get("/audit?person=acme+water");
    assert!(page.body.contains("Acme Water"), "{}", page.body);
}

#[test]
fn action_is_chosen_from_the_real_names_and_an_unknown_one_is_said() {
    let app = TestApp::new();
    let mut auditor = app.login_as(Role::Auditor, "aud@pcii.example.gov", None);
    let page = auditor.get("/audit");
    assert!(page
        .body
        .contains("<option value=\"content.viewed\">Content viewed (content.viewed)</option>"));
    let page = auditor.get("/audit?action=submission.view");
    assert_eq!(page.status, Status::UnprocessableEntity);
    assert!(page
        .body
        .contains("is not an action: choose one from the list."));
}

#[test]
fn the_auditors_own_reading_is_folded_away_unless_asked_for() {
    let app = TestApp::new();
    let mut auditor = app.login_as(Role::Auditor, "aud@pcii.example.gov", None);
    for _ in 0..3 {
        auditor.get("/audit");
    }
    let page = auditor.get("/audit");
    assert!(page.body.contains("data-reading-folded"));
    assert!(
        !page
            .body
            .contains("<code class=\"action\">audit.view</code>"),
        "{}",
        page.body
    );
    let page = auditor.get("/audit?reading=1");
    assert!(
        page.body
            .matches("<code class=\"action\">audit.view</code>")
            .count()
            >= 4
    );
    // Asked for by its action, it is shown too.
    let page = auditor.get("/audit?action=audit.view");
    assert!(
        page.body
            .matches("<code class=\"action\">audit.view</code>")
            .count()
            >= 5
    );
}

#[test]
fn the_export_carries_names_and_emails_and_still_verifies_offline_with_the_cli() {
    let app = TestApp::new();
    let (_id, officer_id) = read_by_an_officer(&app);
    let mut auditor = app.login_as(Role::Auditor, "aud@pcii.example.gov", None);
    let (status, bytes, _) = auditor.post_bytes("/audit/export", &[]);
    assert_eq!(status, Status::Ok);
    let bytes = bytes.unwrap();
    let mut zip = zip::ZipArchive::new(std::io::Cursor::new(bytes.clone())).unwrap();
    let mut csv = String::new();
    zip.by_name("entries.csv")
        .unwrap()
        .read_to_string(&mut csv)
        .unwrap();
    assert!(csv.starts_with(pcii_portal::audit::export::CSV_HEADER));
    let row = csv
        .lines()
        .find(|l| l.contains("content.downloaded"))
        .expect("a download row");
    assert!(
        row.contains(&format!("\"{officer_id}\""))
            && row.contains("\"Test olga@pcii.example.gov\",\"olga@pcii.example.gov\""),
        "{row}"
    );
    let mut jsonl = String::new();
    zip.by_name("entries.jsonl")
        .unwrap()
        .read_to_string(&mut jsonl)
        .unwrap();
    let line: serde_json::Value = serde_json::from_str(
        jsonl
            .lines()
            .find(|l| l.contains("content.downloaded"))
            .unwrap(),
    )
    .unwrap();
    assert_eq!(line["actor"]["email"], "olga@pcii.example.gov");
    let mut manifest = String::new();
    zip.by_name("manifest.json")
        .unwrap()
        .read_to_string(&mut manifest)
        .unwrap();
    assert!(
        manifest.contains("not part of the hash chain"),
        "{manifest}"
    );

    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("export.zip");
    std::fs::write(&path, &bytes).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pcii-portal"))
        .env("PCII_CONFIG", "/nonexistent.toml")
        .args(["audit", "verify", "--export"])
        .arg(&path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(String::from_utf8_lossy(&out.stdout).contains("export intact"));
}

#[test]
fn an_account_s_history_is_headed_by_its_name_and_email() {
    let app = TestApp::new();
    let (_id, officer_id) = read_by_an_officer(&app);
    let mut auditor = app.login_as(Role::Auditor, "aud@pcii.example.gov", None);
    let page = auditor.get(&format!("/audit/accounts/{officer_id}"));
    assert_eq!(page.status, Status::Ok);
    assert!(
        page.body
            .contains("Activity of Test olga@pcii.example.gov &lt;olga@pcii.example.gov&gt;"),
        "{}",
        page.body
    );
}
