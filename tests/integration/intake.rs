//! Issue 4: a complete submission, encrypted before a byte touches disk; limits, aborts, integrity,
//! organisation scoping, withdrawal with crypto-shredding.

use std::path::Path;

use crate::common::{self, complete_fields, file_bytes, sha256_hex, Browser, Part, TestApp};
use diesel::prelude::*;
use rocket::http::Status;

use pcii_portal::db::schema::{attachments, blobs, submissions};
use pcii_portal::domain::Role;
use pcii_portal::models::account;

fn location(page: &common::Page) -> String {
    page.header("Location").expect("a redirect").to_string()
}

fn submission_id_from(loc: &str) -> String {
    loc.trim_start_matches("/submissions/")
        .split('/')
        .next()
        .unwrap()
        .to_string()
}

fn table_counts(app: &TestApp) -> (i64, i64, i64) {
    app.with_conn(|c| {
        (
            submissions::table.count().get_result(c).unwrap(),
            blobs::table.count().get_result(c).unwrap(),
            attachments::table.count().get_result(c).unwrap(),
        )
    })
}

/// What a save's body would have brought: a file of `len` bytes in slot `n`, sealed into the store to `allowance`'s
/// key. For the tests that drive saves through the workflow layer (the local client cannot interleave two bodies,
/// nor act while one is arriving).
fn sealed_file(
    app: &TestApp,
    runtime: &rocket::tokio::runtime::Runtime,
    allowance: &pcii_portal::workflow::intake::Allowance,
    n: u32,
    name: &str,
    len: usize,
) -> pcii_portal::workflow::intake::IncomingFile {
    use pcii_portal::crypto::stream::BlobSealer;
    use pcii_portal::workflow::intake::{FileSlot, IncomingFile};
    runtime.block_on(async {
        let mut sealer =
            BlobSealer::start(app.state().blobs.clone(), &allowance.sealing.recipients).unwrap();
        sealer
            .write(bytes::Bytes::from(file_bytes(len, n as u8, "")))
            .await
            .unwrap();
        IncomingFile {
            slot: FileSlot::Numbered(n),
            file_name: name.into(),
            sealed: sealer.finish().await.unwrap(),
        }
    })
}

/// A draft save titled `title` with `files` (to draft `submission_id`, or a new one), sealed under `allowance`'s key.
fn draft_request(
    submission_id: Option<String>,
    title: &str,
    files: Vec<pcii_portal::workflow::intake::IncomingFile>,
    allowance: pcii_portal::workflow::intake::Allowance,
) -> pcii_portal::workflow::intake::SaveRequest {
    use pcii_portal::workflow::content::FormFields;
    use pcii_portal::workflow::intake::{Intent, SaveRequest};
    SaveRequest {
        submission_id,
        fields: FormFields(
            [("title".to_string(), title.to_string())]
                .into_iter()
                .collect(),
        ),
        files,
        remove: Vec::new(),
        intent: Intent::Draft,
        checked_version: None,
        shown_version: None,
        form_token: None,
        sealing: allowance.sealing,
    }
}

/// Every file under `dir` whose bytes contain `needle` (only files modified since `since`, when given:
/// the shared temp dir holds other programs' large trees). With `strict`, an entry that cannot be listed, examined
/// or read, or a file too large to read, fails the test instead of being skipped: under a directory the portal
/// owns, a blind spot must not read as "not found". (The shared temp dir is scanned leniently: other users' and
/// programs' private directories there are not ours to read.)
fn files_containing(
    dir: &Path,
    needle: &[u8],
    since: Option<std::time::SystemTime>,
    strict: bool,
) -> Vec<String> {
    let mut hits = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let rd = match std::fs::read_dir(&d) {
            Ok(rd) => rd,
            Err(e) if strict => panic!("cannot list {}: {e}", d.display()),
            Err(_) => continue,
        };
        for e in rd {
            let e = match e {
                Ok(e) => e,
                Err(e) if strict => panic!("cannot list {}: {e}", d.display()),
                Err(_) => continue,
            };
            let p = e.path();
            let meta = match std::fs::symlink_metadata(&p) {
                Ok(m) => m,
                Err(e) if strict => panic!("cannot examine {}: {e}", p.display()),
                Err(_) => continue,
            };
            if meta.is_dir() {
                stack.push(p);
            } else if meta.is_file() && since.is_none_or(|t| meta.modified().is_ok_and(|m| m >= t))
            {
                if meta.len() >= 512 * 1024 * 1024 {
                    assert!(!strict, "too large to scan: {}", p.display());
                    continue;
                }
                let bytes = match std::fs::read(&p) {
                    Ok(b) => b,
                    Err(e) if strict => panic!("cannot read {}: {e}", p.display()),
                    Err(_) => continue,
                };
                if bytes.windows(needle.len()).any(|w| w == needle) {
                    hits.push(p.display().to_string());
                }
            }
        }
    }
    hits
}

fn submit_three(app: &TestApp, b: &mut Browser<'_>, marker: &str) -> (String, Vec<Vec<u8>>) {
    let files = vec![
        file_bytes(300_000, 1, marker),
        file_bytes(1, 2, ""),
        file_bytes(2_500_000, 3, marker),
    ];
    let narrative = format!("The narrative mentions {marker} once.");
    let mut parts = complete_fields(&narrative, "submit");
    parts.push(Part::Text("description_1", "One-line diagram"));
    parts.push(Part::File("file_1", "diagram.pdf", &files[0]));
    parts.push(Part::Text("description_2", "A single byte"));
    parts.push(Part::File("file_2", "one.bin", &files[1]));
    parts.push(Part::Text("description_3", "Relay settings"));
    parts.push(Part::File("file_3", "relays.xlsx", &files[2]));
    let page = b.post_multipart("/submissions", &parts);
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let loc = location(&page);
    assert!(loc.ends_with("/receipt"), "{loc}");
    let _ = app;
    (submission_id_from(&loc), files)
}

#[test]
fn a_submission_with_three_files_gets_a_receipt_and_its_files_back_byte_identical() {
    let app = TestApp::new();
    let mut b = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let marker = "MARKER-intake-5d1c9e";
    let (id, files) = submit_three(&app, &mut b, marker);

    assert!(
        b.get("/submissions/new").body.contains("Acme"),
        "the form names the organisation"
    );
    let receipt = b.get(&format!("/submissions/{id}/receipt"));
    assert_eq!(receipt.status, Status::Ok);
    let year = chrono::Utc::now().format("%Y").to_string();
    assert!(
        receipt.body.contains(&format!("PCII-{year}-000001")),
        "tracking number"
    );
    assert!(receipt.body.contains("This information is voluntarily submitted to the Federal Government in expectation of protection from disclosure as provided by the provisions of the Critical Infrastructure Information Act of 2002."));
    assert!(receipt.body.contains("PCII — PENDING VALIDATION"));
    for f in &files {
        assert!(
            receipt.body.contains(&sha256_hex(f)),
            "receipt lists each SHA-256"
        );
    }
    // The receipt names who affirmed the statement when it was sent, whoever opens it (PCII.md: who, when, which
    // text version), here a colleague of the organisation.
    let ann = app.with_conn(|c| account::find(c, &app.user_id("ann@acme.example")).unwrap());
    let mut colleague = app.login_as(Role::Submitter, "col@acme.example", Some("Acme"));
    for uri in [
        format!("/submissions/{id}/receipt"),
        format!("/submissions/{id}/receipt.txt"),
    ] {
        let body = colleague.get(&uri).body;
        let at = body.find("Submitted by").expect("a submitter line");
        let line: String = body[at..].chars().take(160).collect();
        assert!(line.contains("ann@acme.example"), "{line}");
        assert!(
            line.contains(&ann.display_name) && !line.contains("col@"),
            "{line}"
        );
    }
    let text = b.get(&format!("/submissions/{id}/receipt.txt"));
    assert_eq!(text.status, Status::Ok);
    assert!(text
        .header("Content-Type")
        .unwrap()
        .starts_with("text/plain"));
    assert!(text
        .body
        .contains(&format!("Tracking number:  PCII-{year}-000001")));
    assert!(text.body.contains("Received (UTC):"));
    for (f, name) in files.iter().zip(["diagram.pdf", "one.bin", "relays.xlsx"]) {
        assert!(text.body.contains(&sha256_hex(f)));
        assert!(text.body.contains(name));
        assert!(text.body.contains(&format!("size:    {} bytes", f.len())));
    }

    // The detail page lists the files; each downloads byte-identical, as an attachment, not cached.
    let detail = b.get(&format!("/submissions/{id}"));
    assert_eq!(detail.status, Status::Ok);
    assert!(detail
        .body
        .contains(&format!("The narrative mentions {marker} once.")));
    let att_ids = app.attachment_ids(&id);
    assert_eq!(att_ids.len(), 3);
    for (att, original) in att_ids.iter().zip(&files) {
        let href = format!("/submissions/{id}/files/{att}");
        assert!(
            detail.body.contains(att.as_str()),
            "the page links each file"
        );
        let (status, body, headers) = b.get_bytes(&href);
        assert_eq!(status, Status::Ok);
        assert_eq!(
            body.as_deref(),
            Some(&original[..]),
            "byte-identical download"
        );
        let h = |n: &str| common::header(&headers, n);
        assert!(h("Content-Disposition").unwrap().starts_with("attachment;"));
        assert!(h("Cache-Control").unwrap().contains("no-store"));
    }
    // Blob rows record the ciphertext digest and the key: the submission's own data key, not the master identity.
    // No plaintext digest is kept in clear.
    let rows: Vec<(String, String)> = app.with_conn(|c| {
        blobs::table
            .filter(blobs::submission_id.eq(&id))
            .filter(blobs::kind.eq("attachment"))
            .select((blobs::ciphertext_sha256, blobs::key_id))
            .load(c)
            .unwrap()
    });
    assert_eq!(rows.len(), 3);
    let data_key = app
        .with_conn(|c| pcii_portal::models::data_key::current_of(c, &id).unwrap())
        .unwrap();
    let master = app
        .state()
        .current_keys()
        .read()
        .unwrap()
        .current_key_id()
        .to_string();
    for (ct, key) in rows {
        assert_eq!(ct.len(), 64);
        assert_eq!(key, data_key);
        assert_ne!(key, master);
    }
    assert_eq!(app.audit_count("submission.received"), 1);
    assert!(app.audit_count("content.downloaded") >= 3);
}

#[test]
fn no_marker_in_the_data_dir_database_or_temp_dir_after_an_upload_and_after_an_abort() {
    let app = TestApp::new();
    let mut b = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let started = std::time::SystemTime::now() - std::time::Duration::from_secs(2);
    let marker = format!("MARKER-plain-{}", pcii_portal::db::new_id());
    let (_id, _) = submit_three(&app, &mut b, &marker);

    // An upload that breaks off halfway through a file (the client went away).
    let token = b.csrf();
    let big = file_bytes(3_000_000, 7, &marker);
    let narrative = format!("aborted narrative {marker}");
    let mut parts = vec![Part::Text("csrf", &token)];
    parts.extend(complete_fields(&narrative, "submit"));
    parts.push(Part::File("file_1", "half.bin", &big));
    let body = common::multipart_body(&parts);
    let cut = body.len() - 1_500_000;
    let before = (app.blob_files(), table_counts(&app));
    let page = b.post_multipart_raw("/submissions", body[..cut].to_vec());
    assert_eq!(page.status, Status::BadRequest, "{}", page.body);
    assert_eq!(
        (app.blob_files(), table_counts(&app)),
        before,
        "an aborted upload leaves nothing"
    );

    let needle = marker.as_bytes();
    assert_eq!(
        files_containing(app.dir.path(), needle, None, true),
        Vec::<String>::new()
    );
    assert_eq!(
        files_containing(&std::env::temp_dir(), needle, Some(started), false),
        Vec::<String>::new()
    );

    // Positive controls, with the same scan: it sees what is meant to be in clear. On SQLite the database lives
    // under the data dir, and an audit action name is stored in clear there (in the database or its WAL).
    if app.database_url.is_empty() {
        let db = app.data_dir().join("pcii.sqlite3").display().to_string();
        let found = files_containing(app.dir.path(), b"submission.received", None, true);
        assert!(
            found.iter().any(|f| f.starts_with(&db)),
            "the scan does not see the database's clear text: {found:?}"
        );
    }
    // And it finds the marker itself, nested below the data dir and in the temp dir, once a file holds it.
    let nested = app.data_dir().join("control").join("nested");
    std::fs::create_dir_all(&nested).unwrap();
    let control = nested.join("control.bin");
    std::fs::write(
        &control,
        [b"before ".as_slice(), needle, b" after"].concat(),
    )
    .unwrap();
    assert_eq!(
        files_containing(app.dir.path(), needle, None, true),
        vec![control.display().to_string()]
    );
    let temp_control = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(temp_control.path(), needle).unwrap();
    let mut found = files_containing(&std::env::temp_dir(), needle, Some(started), false);
    found.sort();
    // (The data dir is itself below the temp dir, so its control file is found there too.)
    let mut expected = vec![
        temp_control.path().display().to_string(),
        control.display().to_string(),
    ];
    if !control.starts_with(std::env::temp_dir()) {
        expected.pop();
    }
    expected.sort();
    assert_eq!(found, expected);
}

#[test]
fn over_a_limit_answers_413_and_leaves_store_and_tables_unchanged() {
    let app = TestApp::with(|f| {
        f.merge(("max_file_bytes", 1024 * 1024))
            .merge(("max_submission_bytes", 1536 * 1024))
            .merge(("max_files", 2))
    });
    let mut b = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let small = file_bytes(1000, 1, "");
    let big = file_bytes(1024 * 1024 + 1, 2, "");
    let half = file_bytes(800 * 1024, 3, "");
    let before = (app.blob_files(), table_counts(&app));
    let cases: Vec<(&str, Vec<Part<'_>>)> = vec![
        (
            "per file",
            vec![
                Part::File("file_1", "small.bin", &small),
                Part::File("file_2", "big.bin", &big),
            ],
        ),
        (
            "per submission",
            vec![
                Part::File("file_1", "a.bin", &half),
                Part::File("file_2", "b.bin", &half),
            ],
        ),
        (
            "file count",
            vec![
                Part::File("file_1", "a.bin", &small),
                Part::File("file_2", "b.bin", &small),
                Part::File("file_3", "c.bin", &small),
            ],
        ),
    ];
    for (what, files) in cases {
        let mut parts = complete_fields("n", "submit");
        parts.extend(files);
        let page = b.post_multipart("/submissions", &parts);
        assert_eq!(page.status, Status::PayloadTooLarge, "{what}");
        assert!(
            page.body.contains("Nothing was saved") || page.body.contains("at most 2 files"),
            "{what}: {}",
            page.body
        );
        assert!(
            !page.body.contains("panicked") && !page.body.contains("src/"),
            "no internals"
        );
        assert_eq!(
            (app.blob_files(), table_counts(&app)),
            before,
            "{what}: nothing left"
        );
    }
}

#[test]
fn a_flipped_byte_in_a_stored_blob_never_downloads_as_a_complete_200() {
    let app = TestApp::new();
    let mut b = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let (id, _files) = submit_three(&app, &mut b, "flip");
    let rows: Vec<(String, String)> = app.with_conn(|c| {
        attachments::table
            .inner_join(blobs::table.on(blobs::id.nullable().eq(attachments::blob_id)))
            .filter(attachments::submission_id.eq(&id))
            .order(attachments::position.asc())
            .select((attachments::id, blobs::storage_name))
            .load(c)
            .unwrap()
    });
    // File 1 is 300 kB (verified before headers), file 3 is 2.5 MB (streamed past the first megabyte).
    for (att, name) in [&rows[0], &rows[2]] {
        let mut bytes = app.read_blob(name);
        let at = bytes.len() - 100;
        bytes[at] ^= 0x01;
        app.overwrite_blob(name, &bytes);
        let (status, body, _) = b.get_bytes(&format!("/submissions/{id}/files/{att}"));
        assert!(
            status != Status::Ok || body.is_none(),
            "a damaged blob must not download completely (status {status})"
        );
    }
    // Both are in the audit log, with why: the one refused before anything went out (file 1), and the one that
    // failed midway (file 3, after its first megabyte), whose entry is written as the download fails, so it may
    // follow the answer by a moment.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while app.audit_count("content.failed") < 2 && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(
        app.audit_reasons("content.failed"),
        vec![
            "attachment 1: integrity check failed".to_string(),
            "attachment 3: integrity check failed".to_string()
        ]
    );
}

#[test]
fn another_organisation_gets_404_for_every_id_and_route() {
    let app = TestApp::new();
    let mut a = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let mut other = app.login_as(Role::Submitter, "bob@globex.example", Some("Globex"));
    let (id, _) = submit_three(&app, &mut a, "scope");
    let att = app.attachment_ids(&id).remove(0);
    for uri in [
        format!("/submissions/{id}"),
        format!("/submissions/{id}/edit"),
        format!("/submissions/{id}/receipt"),
        format!("/submissions/{id}/receipt.txt"),
        format!("/submissions/{id}/files/{att}"),
    ] {
        assert_eq!(other.get(&uri).status, Status::NotFound, "GET {uri}");
    }
    for (uri, fields) in [
        (
            format!("/submissions/{id}/withdraw"),
            vec![("disposition", "destroy"), ("confirm", "yes")],
        ),
        (
            format!("/submissions/{id}/disposition"),
            vec![("disposition", "destroy"), ("confirm", "yes")],
        ),
        (
            format!("/submissions/{id}/returned"),
            vec![("confirm", "yes")],
        ),
    ] {
        assert_eq!(
            other.post(&uri, &fields).status,
            Status::NotFound,
            "POST {uri}"
        );
    }
    let page = other.post_multipart(
        &format!("/submissions/{id}"),
        &complete_fields("x", "submit"),
    );
    assert_eq!(page.status, Status::NotFound);
    // The owner still sees it, unchanged.
    assert_eq!(a.get(&format!("/submissions/{id}")).status, Status::Ok);
    let status: String = app.with_conn(|c| {
        submissions::table
            .find(&id)
            .select(submissions::status)
            .first(c)
            .unwrap()
    });
    assert_eq!(status, "received");
}

#[test]
fn a_draft_is_kept_edited_and_submitted_later() {
    let app = TestApp::new();
    let mut b = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let f1 = file_bytes(5000, 1, "");
    // An incomplete draft is fine.
    let page = b.post_multipart(
        "/submissions",
        &[
            Part::Text("title", "Early notes"),
            Part::Text("description_1", "Sketch"),
            Part::File("file_1", "sketch.png", &f1),
            Part::Text("action", "draft"),
        ],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let id = submission_id_from(&location(&page));
    let (status, tn): (String, Option<String>) = app.with_conn(|c| {
        submissions::table
            .find(&id)
            .select((submissions::status, submissions::tracking_number))
            .first(c)
            .unwrap()
    });
    assert_eq!((status.as_str(), tn), ("draft", None));
    assert_eq!(app.audit_count("submission.draft_created"), 1);

    // Submitting it incomplete keeps the draft and names what is missing.
    let page = b.post_multipart(
        &format!("/submissions/{id}"),
        &[
            Part::Text("title", "Early notes"),
            Part::Text("action", "submit"),
        ],
    );
    assert_eq!(page.status, Status::UnprocessableEntity);
    assert!(page
        .body
        .contains("Choose the critical infrastructure sector."));
    assert!(page
        .body
        .contains("Tick the box to make the express statement"));
    assert!(
        page.body.contains("sketch.png"),
        "the draft's file is still there"
    );

    // Completed, it is received with a tracking number; the old content version of the draft is gone.
    let blobs_before = app.blob_files().len();
    let mut parts = complete_fields("Now complete", "submit");
    let att = app.attachment_ids(&id).remove(0);
    let desc_field = format!("attachment_description_{att}");
    parts.push(Part::Text(&desc_field, "Sketch of the yard"));
    let page = b.post_multipart(&format!("/submissions/{id}"), &parts);
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    assert_eq!(
        app.blob_files().len(),
        blobs_before,
        "one content version replaced another"
    );
    let (status, tn): (String, Option<String>) = app.with_conn(|c| {
        submissions::table
            .find(&id)
            .select((submissions::status, submissions::tracking_number))
            .first(c)
            .unwrap()
    });
    assert_eq!(status, "received");
    assert!(tn.unwrap().starts_with("PCII-"));
    // No more edits once received.
    let page = b.post_multipart(
        &format!("/submissions/{id}"),
        &complete_fields("changed", "draft"),
    );
    assert_eq!(page.status, Status::Conflict);
}

#[test]
fn a_draft_can_be_deleted_with_its_files_and_a_sent_submission_cannot() {
    let app = TestApp::new();
    let mut a = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let mut other = app.login_as(Role::Submitter, "bob@globex.example", Some("Globex"));
    let (sent, _) = submit_three(&app, &mut a, "kept");
    let before = (app.blob_files(), table_counts(&app));
    let (f1, f2) = (file_bytes(70_000, 1, ""), file_bytes(10, 2, ""));
    let page = a.post_multipart(
        "/submissions",
        &[
            Part::Text("title", "Early notes"),
            Part::Text("description_1", "Sketch"),
            Part::File("file_1", "sketch.png", &f1),
            Part::Text("description_2", "Note"),
            Part::File("file_2", "note.txt", &f2),
            Part::Text("action", "draft"),
        ],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let draft = submission_id_from(&location(&page));
    let with_draft = (app.blob_files(), table_counts(&app));
    assert_eq!(
        with_draft.0.len(),
        before.0.len() + 3,
        "content and two files"
    );
    let detail = a.get(&format!("/submissions/{draft}"));
    assert!(detail
        .body
        .contains(&format!("/submissions/{draft}/delete")));
    assert!(!a
        .get(&format!("/submissions/{sent}"))
        .body
        .contains("/delete\""));

    let delete = |b: &mut common::Browser<'_>, id: &str, fields: &[(&str, &str)]| {
        b.post(&format!("/submissions/{id}/delete"), fields).status
    };
    // Another organisation: 404. Without the confirmation: 422. Neither deletes anything.
    assert_eq!(
        delete(&mut other, &draft, &[("confirm", "yes")]),
        Status::NotFound
    );
    assert_eq!(delete(&mut a, &draft, &[]), Status::UnprocessableEntity);
    assert_eq!((app.blob_files(), table_counts(&app)), with_draft);
    // A sent submission can only be withdrawn.
    assert_eq!(
        delete(&mut a, &sent, &[("confirm", "yes")]),
        Status::Conflict
    );
    assert_eq!((app.blob_files(), table_counts(&app)), with_draft);

    let page = a.post(
        &format!("/submissions/{draft}/delete"),
        &[("confirm", "yes")],
    );
    assert_eq!(page.status, Status::SeeOther);
    assert_eq!(location(&page), "/submissions");
    assert_eq!(
        (app.blob_files(), table_counts(&app)),
        before,
        "every ciphertext and row of the draft is gone, the sent submission untouched"
    );
    assert_eq!(
        a.get(&format!("/submissions/{draft}")).status,
        Status::NotFound
    );
    assert_eq!(app.audit_count("submission.draft_deleted"), 1);
    assert_eq!(a.get(&format!("/submissions/{sent}")).status, Status::Ok);
}

#[test]
fn hostile_file_names_are_stored_as_data_and_shown_safely() {
    let app = TestApp::new();
    let mut b = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let long = "n".repeat(10 * 1024);
    let names = [
        "../../etc/passwd".to_string(),
        "invoice\u{202E}fdp.exe".to_string(),
        "tab\tand\u{9B}c1 control".to_string(),
        "<script>alert(1)</script>.html".to_string(),
        long.clone(),
    ];
    let data = file_bytes(100, 1, "");
    let mut parts = complete_fields("names", "submit");
    let slots: Vec<(String, String)> = (1..=names.len())
        .map(|i| (format!("file_{i}"), format!("description_{i}")))
        .collect();
    for (i, name) in names.iter().enumerate() {
        parts.push(Part::Text(&slots[i].1, "d"));
        parts.push(Part::File(&slots[i].0, name, &data));
    }
    let page = b.post_multipart("/submissions", &parts);
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let id = submission_id_from(&location(&page));
    let detail = b.get(&format!("/submissions/{id}"));
    assert!(!detail.body.contains("<script>alert(1)"), "escaped");
    assert!(
        detail
            .body
            .contains("&lt;script&gt;alert(1)&lt;&#x2F;script&gt;.html")
            || detail.body.contains("&lt;script&gt;")
    );
    assert!(
        !detail.body.contains('\u{202E}'),
        "no raw right-to-left override"
    );
    assert!(detail.body.contains("&lt;U+202E&gt;") || detail.body.contains("<U+202E>"));
    assert!(detail.body.contains(&long), "a 10 KB name is kept whole");
    assert!(detail.body.contains("..&#x2F;..&#x2F;etc&#x2F;passwd"));
    // Nothing was written outside the blob store under any of these names.
    assert!(!app.dir.path().join("etc").exists());
    // Downloads carry a safe Content-Disposition.
    let att_ids = app.attachment_ids(&id);
    let (_, _, headers) = b.get_bytes(&format!("/submissions/{id}/files/{}", att_ids[0]));
    let cd = common::header(&headers, "Content-Disposition").unwrap();
    assert!(!cd.contains('/') && !cd.contains("%2F"), "{cd}");
    assert!(!cd.contains(".."), "{cd}");
    let (_, _, headers) = b.get_bytes(&format!("/submissions/{id}/files/{}", att_ids[1]));
    let cd = common::header(&headers, "Content-Disposition").unwrap();
    assert!(
        !cd.contains('\u{202E}') && !cd.contains("%E2%80%AE"),
        "{cd}"
    );

    // Raw control characters in a part header (a NUL, ESC, a line break inside the quotes), which
    // browsers would have percent-encoded, are stored as data too.
    let token = b.csrf();
    let mut parts = vec![Part::Text("csrf", &token)];
    parts.extend(complete_fields("raw controls", "submit"));
    parts.push(Part::Text("description_1", "d"));
    parts.push(Part::File("file_1", "a\0b\x1b[31m\r\nc%00.txt", &data));
    let page = b.post_multipart_raw("/submissions", common::multipart_body(&parts));
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let id = submission_id_from(&location(&page));
    let shown = "a&lt;U+0000&gt;b&lt;U+001B&gt;[31m&lt;U+000D&gt;&lt;U+000A&gt;c%00.txt";
    let detail = b.get(&format!("/submissions/{id}"));
    assert!(detail.body.contains(shown), "{}", detail.body);
    let receipt = b.get(&format!("/submissions/{id}/receipt.txt"));
    assert!(
        receipt
            .body
            .contains("a<U+0000>b<U+001B>[31m<U+000D><U+000A>c%00.txt"),
        "{}",
        receipt.body
    );
    assert!(!receipt.body.contains('\0') && !receipt.body.contains('\x1b'));
    let att = app.attachment_ids(&id).remove(0);
    let (status, body, headers) = b.get_bytes(&format!("/submissions/{id}/files/{att}"));
    assert_eq!(status, Status::Ok);
    assert_eq!(body.unwrap(), data);
    let cd = common::header(&headers, "Content-Disposition").unwrap();
    assert!(!cd.chars().any(char::is_control), "{cd:?}");

    // A part header over 64 KiB (a 70 KB file name) is refused rather than buffered; nothing stored.
    let before = (app.blob_files(), table_counts(&app));
    let token = b.csrf();
    let huge = "n".repeat(70 * 1024);
    let mut parts = vec![Part::Text("csrf", &token)];
    parts.extend(complete_fields("huge", "submit"));
    parts.push(Part::File("file_1", &huge, &data));
    let page = b.post_multipart_raw("/submissions", common::multipart_body(&parts));
    assert_eq!(page.status, Status::BadRequest);
    assert!(page.body.contains("a header over 64 KiB"), "{}", page.body);
    assert_eq!((app.blob_files(), table_counts(&app)), before);

    // Bytes in a file part with an empty (or blank) name — no browser sends that — are refused, not kept nameless.
    for blank in ["", "  "] {
        let token = b.csrf();
        let mut parts = vec![Part::Text("csrf", &token)];
        parts.extend(complete_fields("nameless", "submit"));
        parts.push(Part::Text("description_1", "d"));
        parts.push(Part::File("file_1", blank, &data));
        let page = b.post_multipart_raw("/submissions", common::multipart_body(&parts));
        assert_eq!(page.status, Status::BadRequest, "{blank:?}: {}", page.body);
        assert!(page.body.contains("without a file name"), "{}", page.body);
        assert_eq!((app.blob_files(), table_counts(&app)), before);
    }

    // A field name no form of the portal has (200 bytes) is refused before it is kept: names are not a way
    // around the text caps (before, 499 names of 64 KiB each were kept whole, whatever the caps said).
    let token = b.csrf();
    let long_name = "%".repeat(200);
    let mut parts = vec![Part::Text("csrf", &token)];
    parts.extend(complete_fields("long name", "submit"));
    parts.push(Part::Text(&long_name, ""));
    let page = b.post_multipart_raw("/submissions", common::multipart_body(&parts));
    assert_eq!(page.status, Status::BadRequest);
    assert!(
        page.body.contains("A field name of the form is too long"),
        "{}",
        page.body
    );
    assert_eq!((app.blob_files(), table_counts(&app)), before);

    // Names count towards the form's 1 MiB of text: 499 empty fields of 120-byte names and one of 1 MiB less
    // 1 KiB fit the value caps alone, not with their names.
    let token = b.csrf();
    let names: Vec<String> = (0..480).map(|i| format!("{i:0>120}")).collect();
    let almost = "x".repeat(512 * 1024 - 1024);
    let mut parts = vec![Part::Text("csrf", &token)];
    parts.push(Part::Text("description_1", &almost));
    parts.push(Part::Text("description_2", &almost));
    parts.extend(names.iter().map(|n| Part::Text(n, "")));
    let page = b.post_multipart_raw("/submissions", common::multipart_body(&parts));
    assert_eq!(page.status, Status::PayloadTooLarge, "{}", page.body);
    assert_eq!((app.blob_files(), table_counts(&app)), before);
}

#[test]
fn the_form_token_is_checked_before_any_file_is_stored() {
    let app = TestApp::new();
    let mut b = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let data = file_bytes(100_000, 1, "");
    let before = (app.blob_files(), table_counts(&app));
    let mut parts = complete_fields("x", "submit");
    parts.push(Part::File("file_1", "a.bin", &data));
    // No token at all, then a wrong one.
    let page = b.post_multipart_raw("/submissions", common::multipart_body(&parts));
    assert_eq!(page.status, Status::Forbidden);
    let mut with_wrong = vec![Part::Text("csrf", "00ff")];
    with_wrong.extend(complete_fields("x", "submit"));
    let page = b.post_multipart_raw("/submissions", common::multipart_body(&with_wrong));
    assert_eq!(page.status, Status::Forbidden);
    assert_eq!((app.blob_files(), table_counts(&app)), before);
    assert_eq!(app.audit_count("csrf.refused"), 2);
}

#[test]
fn notices_are_new_until_their_submission_is_opened() {
    use pcii_portal::db::schema::notices;
    let app = TestApp::new();
    let mut a = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let (id, _) = submit_three(&app, &mut a, "notices");
    let page = a.post(
        &format!("/submissions/{id}/withdraw"),
        &[("disposition", "return"), ("confirm", "yes")],
    );
    assert_eq!(page.status, Status::SeeOther);
    let unread = || -> i64 {
        app.with_conn(|c| {
            notices::table
                .filter(notices::submission_id.eq(&id))
                .filter(notices::read_at.is_null())
                .count()
                .get_result(c)
                .unwrap()
        })
    };
    let n = unread();
    assert!(n >= 1, "the withdrawal left a notice");
    let home = a.get("/submissions");
    assert!(
        home.body.contains(&format!("{n} new</span>")),
        "{}",
        home.body
    );
    assert!(home.body.contains(">New</span>"));
    // The page that shows them marks them new this once, then they are read.
    let detail = a.get(&format!("/submissions/{id}"));
    assert!(detail.body.contains(">New</span>"), "{}", detail.body);
    assert_eq!(unread(), 0);
    let home = a.get("/submissions");
    assert!(!home.body.contains(" new</span>") && !home.body.contains(">New</span>"));
    assert!(home.body.contains("was withdrawn"), "still listed, as read");
    assert!(!a
        .get(&format!("/submissions/{id}"))
        .body
        .contains(">New</span>"));
}

#[test]
fn withdrawing_with_destroy_shreds_every_ciphertext_and_keeps_a_record() {
    let app = TestApp::new();
    let mut b = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let (id, files) = submit_three(&app, &mut b, "withdraw");
    let names: Vec<String> = app.with_conn(|c| {
        blobs::table
            .filter(blobs::submission_id.eq(&id))
            .select(blobs::storage_name)
            .load(c)
            .unwrap()
    });
    assert_eq!(names.len(), 4, "three files and the content");
    let stored: Vec<String> = app.with_conn(|c| {
        blobs::table
            .filter(blobs::submission_id.eq(&id))
            .filter(blobs::kind.eq("attachment"))
            .select(blobs::ciphertext_sha256)
            .load(c)
            .unwrap()
    });
    // Final, so the box is ticked or nothing happens.
    let page = b.post(
        &format!("/submissions/{id}/withdraw"),
        &[("disposition", "destroy")],
    );
    assert_eq!(page.status, Status::UnprocessableEntity);
    assert_eq!(app.status_of(&id), "received");
    assert!(names.iter().all(|n| app.blob_exists(n)));
    let page = b.post(
        &format!("/submissions/{id}/withdraw"),
        &[("disposition", "destroy"), ("confirm", "yes")],
    );
    assert_eq!(page.status, Status::SeeOther);
    for n in &names {
        assert!(!app.blob_exists(n), "ciphertext removed");
    }
    let detail = b.get(&format!("/submissions/{id}"));
    assert_eq!(detail.status, Status::Ok);
    assert!(detail.body.contains("Destruction record"));
    for d in &stored {
        assert!(
            detail.body.contains(d.as_str()),
            "the record lists the digest of each stored copy"
        );
    }
    for f in &files {
        assert!(
            !detail.body.contains(&sha256_hex(f)),
            "no plaintext digest is kept"
        );
    }
    assert_eq!(
        b.get(&format!("/submissions/{id}/receipt")).status,
        Status::Gone
    );
    let att = app.attachment_ids(&id).remove(0);
    assert_eq!(
        b.get(&format!("/submissions/{id}/files/{att}")).status,
        Status::Gone
    );
    assert_eq!(app.audit_count("submission.withdrawn"), 1);
    assert_eq!(app.audit_count("submission.destroyed"), 1);
    // Nothing further can happen to it.
    let page = b.post(
        &format!("/submissions/{id}/withdraw"),
        &[("disposition", "destroy"), ("confirm", "yes")],
    );
    assert_eq!(page.status, Status::Conflict);
}

#[test]
fn the_same_new_submission_form_sent_twice_creates_one_submission() {
    let app = TestApp::new();
    let mut b = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let form = b.get("/submissions/new");
    let marker = "name=\"form_token\" value=\"";
    let start = form.body.find(marker).expect("a form token") + marker.len();
    let token = form.body[start..start + 64].to_string();
    let data = file_bytes(20_000, 1, "");
    let mut parts = complete_fields("twice", "submit");
    parts.push(Part::Text("form_token", &token));
    parts.push(Part::Text("description_1", "d"));
    parts.push(Part::File("file_1", "a.bin", &data));
    let first = b.post_multipart("/submissions", &parts);
    assert_eq!(first.status, Status::SeeOther);
    let id = submission_id_from(&location(&first));
    let before = (app.blob_files(), table_counts(&app));
    let second = b.post_multipart("/submissions", &parts);
    assert_eq!(second.status, Status::SeeOther);
    assert_eq!(location(&second), format!("/submissions/{id}"));
    assert_eq!(
        (app.blob_files(), table_counts(&app)),
        before,
        "nothing added"
    );
    assert_eq!(app.audit_count("submission.received"), 1);
}

/// Two saves to one draft, each read against an allowance computed before its body from the draft as it was (no
/// files yet): each fits the limits alone (two files of `max_files` 3, 600 KiB of `max_submission_bytes` 1 MiB),
/// together they do not. The first commits; the second is refused (413) in its commit, under the write lock,
/// its blob removed and nothing of it committed. Driven through the workflow layer: the local client cannot
/// interleave two bodies.
#[test]
fn two_saves_each_within_the_draft_s_allowance_cannot_exceed_the_limits_together() {
    use pcii_portal::audit::log::Actor;
    use pcii_portal::error::AppError;
    use pcii_portal::workflow::intake::{self, SaveResult, Submitter};

    let app = TestApp::with(|f| {
        f.merge(("max_submission_bytes", 1024 * 1024))
            .merge(("max_files", 3))
    });
    let mut b = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let page = b.post_multipart(
        "/submissions",
        &[
            Part::Text("title", "Early notes"),
            Part::Text("action", "draft"),
        ],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let id = submission_id_from(&location(&page));
    let user_id = app.user_id("ann@acme.example");
    let organisation_id = app.organisation_id("Acme").unwrap();
    let who = Submitter {
        user_id,
        organisation_id,
    };
    let state = app.state();
    let runtime = rocket::tokio::runtime::Runtime::new().unwrap();

    // Both allowances first, as two requests whose bodies are read at the same time get them.
    let first = runtime
        .block_on(intake::allowance(state, &who, Some(&id)))
        .unwrap();
    let second = runtime
        .block_on(intake::allowance(state, &who, Some(&id)))
        .unwrap();
    assert_eq!((first.files, first.bytes), (3, 1024 * 1024));
    let seal = |allowance: &intake::Allowance, n: u32, len: usize| {
        sealed_file(&app, &runtime, allowance, n, &format!("f{n}.bin"), len)
    };
    let request = |allowance: intake::Allowance, files| {
        draft_request(Some(id.clone()), "Early notes", files, allowance)
    };
    // Files: 2 + 2 of 3. Bytes: 600 + 600 KiB of 1 MiB.
    let a = vec![seal(&first, 1, 300 * 1024), seal(&first, 2, 300 * 1024)];
    let b_files = vec![seal(&second, 3, 300 * 1024), seal(&second, 4, 300 * 1024)];
    let b_names: Vec<String> = b_files.iter().map(|f| f.sealed.name.clone()).collect();
    let actor = Actor::cli();
    let saved_a = runtime.block_on(intake::save(state, &who, &actor, request(first, a)));
    assert!(
        matches!(saved_a, Ok(SaveResult::Saved { .. })),
        "{saved_a:?}"
    );
    let saved_b = runtime.block_on(intake::save(state, &who, &actor, request(second, b_files)));
    assert!(matches!(saved_b, Err(AppError::TooLarge(_))), "{saved_b:?}");

    // Exactly the first save's two files are stored; the second's blobs are gone.
    let (count, bytes): (i32, i64) = app.with_conn(|c| {
        submissions::table
            .find(&id)
            .select((submissions::file_count, submissions::total_bytes))
            .first(c)
            .unwrap()
    });
    assert_eq!((count, bytes), (2, 600 * 1024));
    assert_eq!(app.attachment_ids(&id).len(), 2);
    for name in &b_names {
        assert!(!app.state().blobs.exists(name).unwrap(), "{name}");
    }
}

/// The second line behind the upload's window: a save whose new file is no longer in the store when it commits
/// (taken by a sweep, say) is refused (503) and commits nothing, rather than a row that points at nothing.
#[test]
fn a_save_whose_new_file_left_the_store_commits_nothing() {
    use pcii_portal::audit::log::Actor;
    use pcii_portal::error::AppError;
    use pcii_portal::workflow::intake::{self, Submitter};

    let app = TestApp::new();
    let _b = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let who = Submitter {
        user_id: app.user_id("ann@acme.example"),
        organisation_id: app.organisation_id("Acme").unwrap(),
    };
    let state = app.state();
    let runtime = rocket::tokio::runtime::Runtime::new().unwrap();
    let allowance = runtime
        .block_on(intake::allowance(state, &who, None))
        .unwrap();
    let file = sealed_file(&app, &runtime, &allowance, 1, "gone.bin", 4096);
    // The sweep took it while the request was still running.
    state.blobs.delete(&file.sealed.name).unwrap();
    let before = table_counts(&app);
    let saved = runtime.block_on(intake::save(
        state,
        &who,
        &Actor::cli(),
        draft_request(None, "Early notes", vec![file], allowance),
    ));
    assert!(matches!(saved, Err(AppError::Unavailable(_))), "{saved:?}");
    assert_eq!(table_counts(&app), before);
    assert_eq!(app.blob_files(), Vec::<String>::new());
}

/// An upload's body may take most of an hour: a session ended meanwhile (here signed out; a password reset, "end
/// other sessions" or a factor reset end it the same way) commits nothing, as a download from it is cut, and its
/// sealed files are removed. The same save from a session that still stands commits. Driven through the workflow
/// layer: the local client cannot end a session while a body is arriving.
#[test]
fn an_upload_whose_session_ended_while_its_body_arrived_commits_nothing() {
    use pcii_portal::audit::log::Actor;
    use pcii_portal::error::AppError;
    use pcii_portal::workflow::intake::{self, SaveResult, Submitter};

    let app = TestApp::new();
    let mut ann = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let who = Submitter {
        user_id: app.user_id("ann@acme.example"),
        organisation_id: app.organisation_id("Acme").unwrap(),
    };
    let from_session = |token_hash: &str| Actor {
        user_id: Some(who.user_id.clone()),
        role: Some("submitter".into()),
        client_addr: Some("127.0.0.1".into()),
        request_id: None,
        session: Some(token_hash.to_string()),
    };
    let state = app.state();
    let runtime = rocket::tokio::runtime::Runtime::new().unwrap();
    let save = |actor: &Actor, title: &str| {
        let allowance = runtime
            .block_on(intake::allowance(state, &who, None))
            .unwrap();
        let file = sealed_file(&app, &runtime, &allowance, 1, "notes.bin", 4096);
        runtime.block_on(intake::save(
            state,
            &who,
            actor,
            draft_request(None, title, vec![file], allowance),
        ))
    };
    // Her one session (the cookie is private: its token is not readable here).
    let session: String = app.with_conn(|c| {
        pcii_portal::db::schema::sessions::table
            .filter(pcii_portal::db::schema::sessions::user_id.eq(&who.user_id))
            .select(pcii_portal::db::schema::sessions::token_hash)
            .first(c)
            .unwrap()
    });
    let live = save(&from_session(&session), "From a live session");
    assert!(matches!(live, Ok(SaveResult::Saved { .. })), "{live:?}");
    let blobs = app.blob_files();
    // The session ends (signed out) while the next body is still arriving.
    let page = ann.post("/logout", &[]);
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let before = table_counts(&app);
    let ended = save(&from_session(&session), "After the sign-out");
    match &ended {
        Err(AppError::Refused(why)) => assert!(why.contains("session ended"), "{why}"),
        other => panic!("{other:?}"),
    }
    assert_eq!(table_counts(&app), before);
    assert_eq!(app.blob_files(), blobs);
}

/// A year's million tracking numbers used up is the portal's fault, not the sender's: 503 with the "try again" page
/// (no 500), and nothing half-sent is left behind.
#[test]
fn sending_when_the_years_tracking_numbers_are_used_up_is_a_503_and_leaves_nothing() {
    use pcii_portal::db::schema::tracking_counters;
    let app = TestApp::new();
    let mut ann = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let page = ann.post_multipart(
        "/submissions",
        &complete_fields("First of the year", "submit"),
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let count = || -> i64 { app.with_conn(|c| submissions::table.count().get_result(c).unwrap()) };
    assert_eq!(count(), 1);
    app.with_conn(|c| {
        diesel::update(tracking_counters::table)
            .set(tracking_counters::last_value.eq(999_999_i64))
            .execute(c)
            .unwrap()
    });
    let page = ann.post_multipart("/submissions", &complete_fields("One too many", "submit"));
    assert_eq!(page.status, Status::ServiceUnavailable, "{}", page.body);
    assert!(
        !page.body.contains("exhausted"),
        "internal detail stays in the log"
    );
    assert_eq!(count(), 1, "nothing half-sent");
}

/// What one organisation's drafts may hold together: a draft past the count is 409, files past the bytes 413 with
/// the organisation's limit named and nothing kept; another organisation is not touched, and deleting a draft (or
/// sending it) makes room again.
#[test]
fn an_organisations_drafts_are_capped_in_number_and_bytes_and_room_comes_back() {
    let app = TestApp::with(|f| {
        f.merge(("max_drafts_per_organisation", 2))
            .merge(("max_draft_bytes_per_organisation", 100_000))
    });
    let mut ann = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let mut bob = app.login_as(Role::Submitter, "bob@globex.example", Some("Globex"));
    let file = file_bytes(60_000, 1, "");
    let draft_with = |b: &mut Browser<'_>, file: Option<&[u8]>| {
        let mut parts = complete_fields("Draft narrative", "draft");
        if let Some(f) = file {
            parts.push(Part::Text("description_1", "desc"));
            parts.push(Part::File("file_1", "scan.pdf", f));
        }
        b.post_multipart("/submissions", &parts)
    };
    let blobs_now = || app.blob_files().len();

    let first = draft_with(&mut ann, Some(&file));
    assert_eq!(first.status, Status::SeeOther, "{}", first.body);
    let first = common::submission_id(&first);
    // 60,000 + 60,000 bytes would pass 100,000: refused, nothing kept, the limit named.
    let before = blobs_now();
    let over = draft_with(&mut ann, Some(&file));
    assert_eq!(over.status, Status::PayloadTooLarge, "{}", over.body);
    assert!(
        over.body.contains("your organisation&#x27;s drafts")
            || over.body.contains("your organisation's drafts"),
        "{}",
        over.body
    );
    assert_eq!(blobs_now(), before, "nothing kept");
    // A draft of text alone still fits; then the count is reached.
    let second = draft_with(&mut ann, None);
    assert_eq!(second.status, Status::SeeOther, "{}", second.body);
    // A draft's thread takes files too, and they count: refused the same way, nothing kept.
    let second = common::submission_id(&second);
    let before = blobs_now();
    let message = ann.post_multipart(
        &format!("/submissions/{second}/messages"),
        &[
            Part::Text("body", "The drawings, for ourselves"),
            Part::File("file_1", "drawings.pdf", &file),
        ],
    );
    assert_eq!(message.status, Status::PayloadTooLarge, "{}", message.body);
    assert_eq!(blobs_now(), before, "nothing kept");
    let third = draft_with(&mut ann, None);
    assert_eq!(third.status, Status::Conflict, "{}", third.body);
    assert!(third.body.contains("keeps 2 drafts"), "{}", third.body);
    // Another organisation has its own room.
    assert_eq!(draft_with(&mut bob, Some(&file)).status, Status::SeeOther);
    // Deleting the first draft frees its files' bytes and its place.
    let deleted = ann.post(
        &format!("/submissions/{first}/delete"),
        &[("confirm", "yes")],
    );
    assert_eq!(deleted.status, Status::SeeOther, "{}", deleted.body);
    assert_eq!(draft_with(&mut ann, Some(&file)).status, Status::SeeOther);
}

/// An organisation the Program Office has not verified yet may have only so much sent and held: self-registration
/// is open, and sending frees a draft's share of the drafts quota, so without a cap one account could fill the disk
/// by sending. Past the count, 409; past the bytes, 413; nothing of the refused send kept, a draft left as it was.
/// Verified, the organisation is not capped.
#[test]
fn an_unverified_organisation_may_have_only_so_much_sent() {
    let app = TestApp::with(|f| {
        f.merge(("max_unverified_sent_per_organisation", 2))
            .merge(("max_unverified_sent_bytes_per_organisation", 100_000))
            .merge(("max_unverified_sent_bytes_total", 150_000))
    });
    let mut ann = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let mut gus = app.login_as(Role::Submitter, "gus@globex.example", Some("Globex"));
    let mut officer = app.login_as(Role::Officer, "olga@pcii.example.gov", None);
    let send = |b: &mut Browser<'_>, bytes: usize, action: &str| {
        let file = file_bytes(bytes, 1, "");
        let mut parts = complete_fields("n", action);
        parts.push(Part::Text("description_1", "Diagram"));
        parts.push(Part::File("file_1", "d.bin", &file));
        b.post_multipart("/submissions", &parts)
    };
    for _ in 0..2 {
        assert_eq!(send(&mut ann, 1_000, "submit").status, Status::SeeOther);
    }
    let before = (app.blob_files(), table_counts(&app));
    let page = send(&mut ann, 1_000, "submit");
    assert_eq!(page.status, Status::Conflict, "{}", page.body);
    assert!(page.body.contains("has not been verified"), "{}", page.body);
    assert_eq!((app.blob_files(), table_counts(&app)), before);
    // Refused at the commit, after the form was read: the new form again with what was typed, not an error page.
    let file = file_bytes(1_000, 1, "");
    let mut parts = complete_fields("Typed before the cap was found", "submit");
    parts.push(Part::Text("description_1", "Diagram"));
    parts.push(Part::File("file_1", "d.bin", &file));
    let page = ann.post_multipart("/submissions", &parts);
    assert_eq!(page.status, Status::Conflict, "{}", page.body);
    assert!(page.body.contains("has not been verified"), "{}", page.body);
    assert!(
        page.body
            .contains(">Typed before the cap was found</textarea>"),
        "{}",
        page.body
    );
    assert!(page
        .body
        .contains("Files you attached must be attached again"));
    assert_eq!((app.blob_files(), table_counts(&app)), before);

    // A draft may still be kept; sending it is refused and leaves it a draft.
    let page = send(&mut ann, 1_000, "draft");
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let draft = submission_id_from(&location(&page));
    let page = ann.post_multipart(
        &format!("/submissions/{draft}"),
        &complete_fields("n", "submit"),
    );
    assert_eq!(page.status, Status::Conflict, "{}", page.body);
    assert!(page.body.contains("has not been verified"), "{}", page.body);
    assert_eq!(app.status_of(&draft), "draft");

    // The bytes: another organisation's one submission over them.
    let before = (app.blob_files(), table_counts(&app));
    let page = send(&mut gus, 100_001, "submit");
    assert_eq!(page.status, Status::PayloadTooLarge, "{}", page.body);
    assert!(page.body.contains("has not been verified"), "{}", page.body);
    assert!(
        page.body.contains(r#"name="narrative""#),
        "the form again: {}",
        page.body
    );
    assert_eq!((app.blob_files(), table_counts(&app)), before);

    // Files in a sent submission's thread count too.
    let sent: String = app.with_conn(|c| {
        submissions::table
            .filter(submissions::status.eq(pcii_portal::domain::Status::Received))
            .select(submissions::id)
            .first(c)
            .unwrap()
    });
    let big = file_bytes(99_000, 3, "");
    let before = (app.blob_files(), table_counts(&app));
    let page = ann.post_multipart(
        &format!("/submissions/{sent}/messages"),
        &[
            Part::Text("body", "More"),
            Part::File("file_1", "m.bin", &big),
        ],
    );
    assert_eq!(page.status, Status::PayloadTooLarge, "{}", page.body);
    // Refused as the file streams (its first bytes past the room), not after the whole upload.
    assert!(
        page.body
            .contains("takes what your organisation has sent past what it may hold"),
        "{}",
        page.body
    );
    assert_eq!((app.blob_files(), table_counts(&app)), before);

    // Every unverified organisation's files together are capped too: each registration makes one.
    let mut ivy = app.login_as(Role::Submitter, "ivy@initech.example", Some("Initech"));
    let mut uma = app.login_as(Role::Submitter, "uma@umbrella.example", Some("Umbrella"));
    assert_eq!(send(&mut ivy, 60_000, "submit").status, Status::SeeOther);
    let before = (app.blob_files(), table_counts(&app));
    let page = send(&mut uma, 90_000, "submit");
    assert_eq!(page.status, Status::PayloadTooLarge, "{}", page.body);
    assert!(
        page.body.contains("holds as much as it takes"),
        "{}",
        page.body
    );
    assert_eq!((app.blob_files(), table_counts(&app)), before);

    // An officer's files in the thread are not the organisation's: they do not count against it.
    let page = officer.post_multipart(
        &format!("/officer/submissions/{sent}/messages"),
        &[
            Part::Text("body", "Our notes"),
            Part::File("file_1", "o.bin", &big),
        ],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let small = file_bytes(1_000, 4, "");
    let page = ann.post_multipart(
        &format!("/submissions/{sent}/messages"),
        &[
            Part::Text("body", "Small"),
            Part::File("file_1", "s.bin", &small),
        ],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);

    // A cure's files count too: a sent submission grows.
    let page = officer.post(
        &format!("/officer/submissions/{sent}/decision"),
        &[
            ("decision", "defective"),
            ("reason", "File 1 is unreadable."),
        ],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let descs: Vec<String> = app
        .attachment_ids(&sent)
        .iter()
        .map(|a| format!("attachment_description_{a}"))
        .collect();
    let mut parts = complete_fields("n", "submit");
    parts.push(Part::Text("description_1", "Readable file"));
    parts.push(Part::File("file_1", "fixed.bin", &big));
    for d in &descs {
        parts.push(Part::Text(d, "desc"));
    }
    let before = (app.blob_files(), table_counts(&app));
    let page = ann.post_multipart(&format!("/submissions/{sent}"), &parts);
    assert_eq!(page.status, Status::PayloadTooLarge, "{}", page.body);
    // Refused as the file streams (its first bytes past the room), not after the whole upload.
    assert!(
        page.body
            .contains("takes what your organisation has sent past what it may hold"),
        "{}",
        page.body
    );
    assert_eq!((app.blob_files(), table_counts(&app)), before);
    assert_eq!(app.status_of(&sent), "defective");

    // Its administrator's page says so before anyone finds out by sending.
    let page = ann.get("/organisation");
    assert!(
        page.body
            .contains("may have 2 submissions (files of 100000 bytes together)"),
        "{}",
        page.body
    );

    // Verified by the Program Office, Acme sends.
    let acme = app.organisation_id("Acme").unwrap();
    let page = officer.post(
        &format!("/officer/organisations/{acme}/verify"),
        &[("method", "called the listed phone number of the company")],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let page = ann.post_multipart(
        &format!("/submissions/{draft}"),
        &complete_fields("n", "submit"),
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    assert_eq!(app.status_of(&draft), "received");
}

/// A HEAD on a file (or a page) of a submission is 405: Rocket would answer it by running the download and dropping
/// the body, decrypting the file and recording a download nobody received. The health check still answers HEAD.
#[test]
fn a_head_request_reads_and_records_nothing() {
    let app = TestApp::new();
    let mut b = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let (id, _files) = submit_three(&app, &mut b, "head");
    let att: String = app.with_conn(|c| {
        attachments::table
            .filter(attachments::submission_id.eq(&id))
            .select(attachments::id)
            .first(c)
            .unwrap()
    });
    let (downloaded, viewed) = (
        app.audit_count("content.downloaded"),
        app.audit_count("content.viewed"),
    );
    for uri in [
        format!("/submissions/{id}/files/{att}"),
        format!("/submissions/{id}"),
    ] {
        let mut req = app.client.head(uri.clone());
        for c in &b.cookies {
            req = req.cookie(c.clone());
        }
        assert_eq!(req.dispatch().status(), Status::MethodNotAllowed, "{uri}");
    }
    assert_eq!(app.audit_count("content.downloaded"), downloaded);
    assert_eq!(app.audit_count("content.viewed"), viewed);
    assert_eq!(app.client.head("/healthz").dispatch().status(), Status::Ok);
    // The same file by GET is still a download, recorded.
    let (status, _, _) = b.get_bytes(&format!("/submissions/{id}/files/{att}"));
    assert_eq!(status, Status::Ok);
    assert_eq!(app.audit_count("content.downloaded"), downloaded + 1);
}
