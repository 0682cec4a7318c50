//! Issue 19, messages: a thread per submission between its organisation and the Program Office — sealed words and
//! files, content-free mail, unread counts on both sides, audited without words, scoped like the content, closed by
//! the final decision and destroyed with the submission.

use crate::common::{complete_fields, file_bytes, sha256_hex, Browser, Part, TestApp};
use diesel::prelude::*;
use rocket::http::Status;

use pcii_portal::db::schema::{audit_entries, blobs, message_files, messages, submissions};
use pcii_portal::domain::Role;
use pcii_portal::models::account::User;
use pcii_portal::workflow::messages::unread_for_user;

const TITLE: &str = "Substation 14 protection scheme";
const QUESTION: &str = "QuestionMarker5521: which relay settings does the scheme use?";
const ANSWER: &str = "AnswerMarker8830: see the attached settings file.";
const FILE_NAME: &str = "FileNameMarker-relay-settings.csv";

fn submit(b: &mut Browser<'_>) -> String {
    let parts = complete_fields("Messages narrative", "submit");
    let page = b.post_multipart("/submissions", &parts);
    crate::common::submission_id(&page)
}

fn tracking_number_of(app: &TestApp, id: &str) -> String {
    app.with_conn(|c| {
        submissions::table
            .find(id)
            .select(submissions::tracking_number)
            .first::<Option<String>>(c)
            .unwrap()
            .unwrap()
    })
}

fn user(app: &TestApp, email: &str) -> User {
    app.with_conn(|c| pcii_portal::models::account::find_by_email(c, email))
        .unwrap()
        .unwrap()
}

fn unread(app: &TestApp, email: &str, id: &str) -> i64 {
    let u = user(app, email);
    let counts = app
        .client
        .rocket()
        .state::<pcii_portal::services::Services>()
        .map(|s| rocket::async_main(unread_for_user(s, &u, vec![id.to_string()])))
        .unwrap()
        .unwrap();
    counts.get(id).copied().unwrap_or(0)
}

/// The id of the (first) message file of a submission's thread.
fn message_file_id(app: &TestApp, id: &str) -> String {
    app.with_conn(|c| {
        message_files::table
            .filter(message_files::submission_id.eq(id))
            .select(message_files::id)
            .first(c)
            .unwrap()
    })
}

fn mails_to(app: &TestApp, email: &str) -> Vec<String> {
    app.outbox()
        .into_iter()
        .filter(|m| m.to_lowercase().contains(&format!("to: {email}")))
        .collect()
}

fn audit_reasons(app: &TestApp, action: &str) -> Vec<Option<String>> {
    app.with_conn(|c| {
        audit_entries::table
            .filter(audit_entries::action.eq(action))
            .order(audit_entries::seq.asc())
            .select(audit_entries::reason)
            .load(c)
            .unwrap()
    })
}

#[test]
fn an_officer_asks_the_organisation_answers_with_a_file_and_destruction_takes_the_thread() {
    let app = TestApp::new();
    let mut ann = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    app.create_user(Role::Submitter, "bob@acme.example", Some("Acme"));
    let mut olga = app.login_as(Role::Officer, "olga@pcii.example.gov", None);
    let id = submit(&mut ann);
    let tn = tracking_number_of(&app, &id);
    let thread = format!("/submissions/{id}/messages");
    let officer_thread = format!("/officer/submissions/{id}/messages");

    let page = olga.get(&officer_thread);
    assert_eq!(page.status, Status::Ok, "{}", page.body);
    assert!(page.body.contains("No messages yet"));
    assert!(page.body.contains("Formal request for information"));

    // An empty message is refused next to its field, nothing sent; the checkbox stays as it was.
    let page = olga.post_multipart(
        &officer_thread,
        &[
            Part::Text("body", "  \r\n "),
            Part::Text("request_for_information", "yes"),
        ],
    );
    assert_eq!(page.status, Status::UnprocessableEntity);
    assert!(page.body.contains("id=\"body-error\""), "{}", page.body);
    assert!(page.body.contains("aria-invalid=\"true\""));
    assert!(page.body.contains("Write your message."));
    assert!(page.body.contains("value=\"yes\" checked"));
    assert!(app.outbox().is_empty());

    // The officer asks, as a formal request for information.
    let page = olga.post_multipart(
        &officer_thread,
        &[
            Part::Text("body", QUESTION),
            Part::Text("request_for_information", "yes"),
        ],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);

    // Both members of the organisation are told, without the submission's number or title or a word of it.
    for to in ["ann@acme.example", "bob@acme.example"] {
        let mails = mails_to(&app, to);
        assert_eq!(mails.len(), 1, "{to}");
        let mail = &mails[0];
        assert!(mail.contains("You have a new message about a submission"));
        assert!(mail.contains(&format!("/submissions/{id}/messages")));
        for secret in [tn.as_str(), TITLE, "QuestionMarker5521", "relay settings"] {
            assert!(!mail.contains(secret), "{secret} in the mail to {to}");
        }
    }
    assert!(mails_to(&app, "olga@pcii.example.gov").is_empty());

    // The submitter sees one unread message; opening the thread reads it.
    assert_eq!(unread(&app, "ann@acme.example", &id), 1);
    assert_eq!(unread(&app, "bob@acme.example", &id), 1);
    let page = ann.get(&thread);
    assert_eq!(page.status, Status::Ok);
    assert!(
        page.body.contains("id=\"unread-count\">1 new"),
        "{}",
        page.body
    );
    assert!(page
        .body
        .contains("which relay settings does the scheme use?"));
    assert!(page.body.contains("Request for information"));
    assert!(page.body.contains("Test olga@pcii.example.gov"));
    assert!(!page.body.contains("Formal request for information"));
    assert_eq!(unread(&app, "ann@acme.example", &id), 0);
    assert!(!ann.get(&thread).body.contains("unread-count"));
    // Another member's count is its own.
    assert_eq!(unread(&app, "bob@acme.example", &id), 1);

    // The submitter answers with a file.
    let file = file_bytes(300_000, 3, "FileContentMarker");
    let page = ann.post_multipart(
        &thread,
        &[
            Part::Text("body", ANSWER),
            Part::File("file_1", FILE_NAME, &file),
        ],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let mails = mails_to(&app, "olga@pcii.example.gov");
    assert_eq!(mails.len(), 1);
    assert!(mails[0].contains(&format!("/officer/submissions/{id}/messages")));
    for secret in [tn.as_str(), TITLE, "AnswerMarker8830", FILE_NAME] {
        assert!(!mails[0].contains(secret), "{secret} in the officer's mail");
    }
    // The writer's own side is not unread for it.
    assert_eq!(unread(&app, "ann@acme.example", &id), 0);

    // The officer sees the unread answer and downloads the file as it was sent.
    assert_eq!(unread(&app, "olga@pcii.example.gov", &id), 1);
    let (file_id, blob_id): (String, Option<String>) = app.with_conn(|c| {
        message_files::table
            .filter(message_files::submission_id.eq(&id))
            .select((message_files::id, message_files::blob_id))
            .first(c)
            .unwrap()
    });
    let blob_id = blob_id.expect("a stored file");
    let stored_name: String = app.with_conn(|c| {
        blobs::table
            .find(&blob_id)
            .select(blobs::storage_name)
            .first(c)
            .unwrap()
    });
    assert!(app.blob_exists(&stored_name));
    let page = olga.get(&officer_thread);
    assert!(
        page.body.contains("id=\"unread-count\">1 new"),
        "{}",
        page.body
    );
    assert!(page.body.contains("see the attached settings file."));
    assert!(page.body.contains(FILE_NAME));
    assert!(page
        .body
        .contains(&format!("href=\"{officer_thread}/files/{file_id}\"")));
    assert_eq!(unread(&app, "olga@pcii.example.gov", &id), 0);
    let file_url = format!("{officer_thread}/files/{file_id}");
    let (status, bytes, headers) = olga.get_bytes(&file_url);
    assert_eq!(status, Status::Ok);
    assert_eq!(bytes.as_deref(), Some(&file[..]), "byte-identical");
    assert!(crate::common::header(&headers, "Content-Disposition")
        .unwrap()
        .contains("FileNameMarker"));
    let (status, bytes, _) = ann.get_bytes(&format!("{thread}/files/{file_id}"));
    assert_eq!(status, Status::Ok);
    assert_eq!(bytes.as_deref(), Some(&file[..]));
    let downloads = audit_reasons(&app, "content.downloaded");
    assert_eq!(downloads.len(), 2);
    for reason in &downloads {
        assert_eq!(reason.as_deref(), Some("message file 1"));
    }

    // Another organisation, and the roles that have no thread, reach neither side's thread nor the file.
    let mut eve = app.login_as(Role::Submitter, "eve@globex.example", Some("Globex"));
    for url in [thread.clone(), format!("{thread}/files/{file_id}")] {
        let page = eve.get(&url);
        assert_eq!(page.status, Status::NotFound, "{url}");
        assert!(!page.body.contains("Marker"));
    }
    let page = eve.post_multipart(&thread, &[Part::Text("body", "Intruder's words")]);
    assert_eq!(page.status, Status::NotFound);
    let mut others = [
        app.login_as(Role::AuthorizedUser, "ana@dhs.example.gov", None),
        app.login_as(Role::Auditor, "aud@pcii.example.gov", None),
        app.login_as(Role::Administrator, "adm@pcii.example.gov", None),
    ];
    for b in others.iter_mut() {
        for url in [
            thread.clone(),
            officer_thread.clone(),
            format!("{thread}/files/{file_id}"),
            format!("{officer_thread}/files/{file_id}"),
        ] {
            let page = b.get(&url);
            assert!(
                matches!(page.status, Status::Forbidden | Status::NotFound),
                "{url}: {}",
                page.status
            );
            assert!(!page.body.contains("Marker"), "{url}");
        }
    }

    // Audited without words: who sent which message, a request for information said as such.
    let sent = audit_reasons(&app, "message.sent");
    assert_eq!(sent.len(), 2);
    assert!(sent[0]
        .as_deref()
        .unwrap()
        .contains("a formal request for information"));
    assert!(sent[1].as_deref().unwrap().contains("with 1 file(s)"));
    let tracked: Vec<Option<String>> = app.with_conn(|c| {
        audit_entries::table
            .filter(audit_entries::action.eq("message.sent"))
            .select(audit_entries::tracking_number)
            .load(c)
            .unwrap()
    });
    assert!(tracked.iter().all(|t| t.as_deref() == Some(tn.as_str())));
    for reason in sent.iter().flatten() {
        assert!(!reason.contains("Marker") && !reason.contains("relay"));
    }
    // Each binds its stored words by the SHA-256 of their ciphertext.
    let stored: Vec<String> = app.with_conn(|c| {
        messages::table
            .order(messages::seq.asc())
            .select(messages::body)
            .load(c)
            .unwrap()
    });
    assert_eq!(stored.len(), 2);
    for (reason, stored) in sent.iter().flatten().zip(&stored) {
        use base64::Engine;
        let armour = stored.rsplit(':').next().unwrap();
        let ciphertext = base64::engine::general_purpose::STANDARD
            .decode(armour)
            .unwrap();
        let bound = format!("; words sealed, sha256 {}", sha256_hex(&ciphertext));
        assert!(reason.ends_with(&bound), "{reason}");
    }

    // The words and the file name are sealed: not in the database or its WAL.
    if app.database_url.is_empty() {
        let mut bytes = Vec::new();
        for suffix in ["", "-wal"] {
            let path = format!("{}{suffix}", app.data_dir().join("pcii.sqlite3").display());
            if let Ok(b) = std::fs::read(&path) {
                bytes.extend(b);
            }
        }
        let text = String::from_utf8_lossy(&bytes);
        assert!(text.contains("message.sent"), "the scan sees the log");
        for words in [
            "QuestionMarker5521",
            "AnswerMarker8830",
            "FileNameMarker",
            "FileContentMarker",
        ] {
            assert!(!text.contains(words), "{words} in clear in the database");
        }
    }

    // Withdrawn with destruction: the thread shows what the content shows, the file is gone.
    let page = ann.post(
        &format!("/submissions/{id}/withdraw"),
        &[("disposition", "destroy"), ("confirm", "yes")],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    assert_eq!(app.status_of(&id), "destroyed");
    assert!(
        !app.blob_exists(&stored_name),
        "the file's ciphertext is gone"
    );
    assert!(!app.blob_files().iter().any(|n| n.contains(&stored_name)));
    let destroyed = pcii_portal::workflow::sealed_text::DESTROYED;
    for (b, url) in [(&mut ann, &thread), (&mut olga, &officer_thread)] {
        let page = b.get(url);
        assert_eq!(page.status, Status::Ok);
        assert!(page.body.contains(destroyed), "{}", page.body);
        for words in ["QuestionMarker5521", "AnswerMarker8830", "FileNameMarker"] {
            assert!(!page.body.contains(words));
        }
        assert!(!page.body.contains("Send the message"), "read-only");
        let (status, _, _) = b.get_bytes(&format!("{url}/files/{file_id}"));
        assert!(
            matches!(status, Status::Gone | Status::NotFound),
            "{status}"
        );
    }
    let page = ann.post_multipart(&thread, &[Part::Text("body", "After the end")]);
    assert_eq!(page.status, Status::Conflict);
    let row: Option<String> = app.with_conn(|c| {
        message_files::table
            .find(&file_id)
            .select(message_files::blob_id)
            .first(c)
            .unwrap()
    });
    assert!(row.is_none(), "the file's row keeps no blob");
}

/// A draft's thread is the organisation's alone; a thread stays open after "not validated" until the organisation
/// chooses return or destruction, and is closed by a withdrawal.
#[test]
fn a_draft_thread_is_the_organisations_and_stays_open_until_a_not_validated_ones_choice() {
    let app = TestApp::new();
    let mut ann = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let mut olga = app.login_as(Role::Officer, "olga@pcii.example.gov", None);
    // A draft: its organisation writes, officers neither see it nor hear of it.
    let page = ann.post_multipart("/submissions", &complete_fields("Draft narrative", "save"));
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let draft = page
        .header("Location")
        .unwrap()
        .trim_start_matches("/submissions/")
        .to_string();
    let page = ann.post_multipart(
        &format!("/submissions/{draft}/messages"),
        &[Part::Text("body", "A note to ourselves")],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    assert!(mails_to(&app, "olga@pcii.example.gov").is_empty());
    // And the submitter is told so, not that the message was sent to the Office.
    let thread = ann.get(&format!("/submissions/{draft}/messages"));
    assert!(thread
        .body
        .contains("the PCII Program Office does not see it until the draft is sent"));
    assert!(!thread.body.contains("Your message was sent"));
    assert!(thread.body.contains("Your message was saved"));
    assert_eq!(
        olga.get(&format!("/officer/submissions/{draft}/messages"))
            .status,
        Status::NotFound
    );
    assert_eq!(unread(&app, "olga@pcii.example.gov", &draft), 0);
    // The draft with its thread can still be deleted.
    let page = ann.post(
        &format!("/submissions/{draft}/delete"),
        &[("confirm", "yes")],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    assert_eq!(
        ann.get(&format!("/submissions/{draft}/messages")).status,
        Status::NotFound
    );

    // Not validated: the thread stays open on both sides while the organisation has its 30 days to choose return or
    // destruction (it may need to ask), and closes once it chose.
    let id = submit(&mut ann);
    let page = olga.post_multipart(
        &format!("/officer/submissions/{id}/messages"),
        &[Part::Text("body", "Before the decision")],
    );
    assert_eq!(page.status, Status::SeeOther);
    let page = olga.post(
        &format!("/officer/submissions/{id}/decision"),
        &[
            ("decision", "not_validated"),
            ("reason", "Customarily in the public domain"),
            ("confirm", "1"),
        ],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    for (b, url) in [
        (&mut ann, format!("/submissions/{id}/messages")),
        (&mut olga, format!("/officer/submissions/{id}/messages")),
    ] {
        let page = b.get(&url);
        assert_eq!(page.status, Status::Ok);
        assert!(page.body.contains("Before the decision"));
        assert!(!page.body.contains("no longer written"));
        assert!(page.body.contains("Send the message"));
        let page = b.post_multipart(&url, &[Part::Text("body", "Why was it not validated?")]);
        assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    }
    let page = ann.post(
        &format!("/submissions/{id}/disposition"),
        &[("disposition", "destroy"), ("confirm", "yes")],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    for (b, url) in [
        (&mut ann, format!("/submissions/{id}/messages")),
        (&mut olga, format!("/officer/submissions/{id}/messages")),
    ] {
        let page = b.get(&url);
        assert_eq!(page.status, Status::Ok);
        assert!(page.body.contains("no longer written"), "{}", page.body);
        assert!(!page.body.contains("Send the message"));
        let page = b.post_multipart(&url, &[Part::Text("body", "After the destruction")]);
        assert_eq!(page.status, Status::Conflict);
    }

    // A return chosen: closed (the return package is the record; a message written after it was taken would be
    // lost with the content). Withdrawn (the choice is made with the withdrawal): closed too.
    let id = submit(&mut ann);
    let page = olga.post(
        &format!("/officer/submissions/{id}/decision"),
        &[
            ("decision", "not_validated"),
            ("reason", "Customarily in the public domain"),
            ("confirm", "1"),
        ],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let page = ann.post(
        &format!("/submissions/{id}/disposition"),
        &[("disposition", "return"), ("confirm", "yes")],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let page = ann.get(&format!("/submissions/{id}/messages"));
    assert!(page.body.contains("A return was chosen"), "{}", page.body);
    let page = ann.post_multipart(
        &format!("/submissions/{id}/messages"),
        &[Part::Text("body", "After choosing the return")],
    );
    assert_eq!(page.status, Status::Conflict);
    let id = submit(&mut ann);
    let page = ann.post(
        &format!("/submissions/{id}/withdraw"),
        &[("disposition", "return"), ("confirm", "yes")],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let page = ann.post_multipart(
        &format!("/submissions/{id}/messages"),
        &[Part::Text("body", "After the withdrawal")],
    );
    assert_eq!(page.status, Status::Conflict);

    // An officer of the submitting organisation reads the thread but does not write in it.
    let id = submit(&mut ann);
    let mut oscar = app.login_as(Role::Officer, "oscar@acme.example", Some("Acme"));
    let oscar_page = oscar.get(&format!("/officer/submissions/{id}/messages"));
    assert_eq!(oscar_page.status, Status::Ok);
    assert!(oscar_page
        .body
        .contains("you may read this thread, not write in it"));
    assert!(!oscar_page.body.contains("Send the message"));
    let page = oscar.post_multipart(
        &format!("/officer/submissions/{id}/messages"),
        &[Part::Text("body", "Conflicted")],
    );
    assert_eq!(page.status, Status::Forbidden);
    assert_eq!(app.audit_count("conflict_of_interest.refused"), 1);
}

#[test]
fn a_data_key_rotation_reseals_the_words_and_the_files_of_a_thread() {
    let app = TestApp::new();
    let mut ann = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let mut olga = app.login_as(Role::Officer, "olga@pcii.example.gov", None);
    let id = submit(&mut ann);
    let thread = format!("/officer/submissions/{id}/messages");
    let file = file_bytes(40_000, 5, "");
    let page = olga.post_multipart(
        &thread,
        &[
            Part::Text("body", QUESTION),
            Part::File("file_1", FILE_NAME, &file),
        ],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let sealed_cells = |app: &TestApp| -> Vec<String> {
        app.with_conn(|c| {
            let mut cells: Vec<String> = pcii_portal::db::schema::messages::table
                .filter(pcii_portal::db::schema::messages::submission_id.eq(&id))
                .select(pcii_portal::db::schema::messages::body)
                .load(c)
                .unwrap();
            cells.extend(
                message_files::table
                    .filter(message_files::submission_id.eq(&id))
                    .select(message_files::name)
                    .load::<String>(c)
                    .unwrap(),
            );
            cells.extend(
                message_files::table
                    .filter(message_files::submission_id.eq(&id))
                    .select(message_files::sha256_sealed)
                    .load::<Option<String>>(c)
                    .unwrap()
                    .into_iter()
                    .flatten(),
            );
            cells
        })
    };
    let before = sealed_cells(&app);
    assert_eq!(before.len(), 3, "the body, the file's name and its digest");
    // The command renews data keys made before the second it starts in (by the system clock).
    std::thread::sleep(std::time::Duration::from_millis(1100));
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_pcii-portal"))
        .args(["keys", "rotate", "--data-keys"])
        .env("PCII_DATA_DIR", app.data_dir())
        .env("PCII_KEYS_DIR", app.keys_dir())
        .env("PCII_DATABASE_URL", &app.database_url)
        .env("PCII_CONFIG", "/nonexistent.toml")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let current = app.with_conn(|c| pcii_portal::models::data_key::current_of(c, &id).unwrap());
    let after = sealed_cells(&app);
    for (old, new) in before.iter().zip(&after) {
        assert_ne!(old, new);
        assert_eq!(
            pcii_portal::workflow::sealed_text::sealed_to(new),
            current.as_deref()
        );
    }
    let page = olga.get(&thread);
    assert!(page
        .body
        .contains("which relay settings does the scheme use?"));
    assert!(page.body.contains(FILE_NAME));
    assert!(page.body.contains(&crate::common::sha256_hex(&file)));
    let file_id = message_file_id(&app, &id);
    let (status, bytes, _) = olga.get_bytes(&format!("{thread}/files/{file_id}"));
    assert_eq!(status, Status::Ok);
    assert_eq!(bytes.as_deref(), Some(&file[..]));
}

/// The way in to a thread, with what is new: the submission pages link to it with the count of unread messages,
/// and the submitter's list and the officer's queue flag the submissions with unread messages.
#[test]
fn lists_and_submission_pages_show_unread_messages_until_the_thread_is_opened() {
    let app = TestApp::new();
    let mut ann = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let mut olga = app.login_as(Role::Officer, "olga@pcii.example.gov", None);
    let id = submit(&mut ann);
    assert!(!ann.get("/submissions").body.contains("data-unread"));
    let page = olga.post_multipart(
        &format!("/officer/submissions/{id}/messages"),
        &[Part::Text("body", "Which substation is this?")],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let list = ann.get("/submissions");
    assert!(
        list.body.contains("data-unread=\"1\">1 new message</a>"),
        "{}",
        list.body
    );
    let detail = ann.get(&format!("/submissions/{id}"));
    assert!(detail.body.contains("Messages with the Program Office <span class=\"tag tag-warn\" data-unread=\"1\">1 new</span>"), "{}", detail.body);
    assert_eq!(
        ann.get(&format!("/submissions/{id}/messages")).status,
        Status::Ok
    );
    assert!(!ann.get("/submissions").body.contains("data-unread"));
    assert!(!ann
        .get(&format!("/submissions/{id}"))
        .body
        .contains("data-unread"));

    // The answer: flagged in the officer's queue and on the officer's page until read.
    let page = ann.post_multipart(
        &format!("/submissions/{id}/messages"),
        &[Part::Text("body", "Substation 4, north yard.")],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    assert!(olga
        .get("/officer")
        .body
        .contains("data-unread=\"1\">1 new message</a>"));
    assert!(olga
        .get(&format!("/officer/submissions/{id}"))
        .body
        .contains("data-unread=\"1\""));
    olga.get(&format!("/officer/submissions/{id}/messages"));
    assert!(!olga.get("/officer").body.contains("data-unread"));
}

/// A package's members by name.
fn zip_members(bytes: &[u8]) -> std::collections::BTreeMap<String, Vec<u8>> {
    crate::common::zip_members(bytes).1.into_iter().collect()
}

#[test]
fn the_thread_goes_into_the_officer_s_and_the_organisation_s_packages_never_an_analyst_s() {
    let app = TestApp::new();
    let mut ann = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let mut olga = app.login_as(Role::Officer, "olga@pcii.example.gov", None);
    let file = file_bytes(20_000, 7, "FileContentMarker");
    let talk = |ann: &mut Browser<'_>, olga: &mut Browser<'_>, id: &str| {
        let page = olga.post_multipart(
            &format!("/officer/submissions/{id}/messages"),
            &[
                Part::Text("body", QUESTION),
                Part::Text("request_for_information", "yes"),
            ],
        );
        assert_eq!(page.status, Status::SeeOther, "{}", page.body);
        let page = ann.post_multipart(
            &format!("/submissions/{id}/messages"),
            &[
                Part::Text("body", ANSWER),
                Part::File("file_1", FILE_NAME, &file),
            ],
        );
        assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    };

    // The officer's export: the thread, marked, and the answer's file byte for byte.
    let id = submit(&mut ann);
    let tn = tracking_number_of(&app, &id);
    talk(&mut ann, &mut olga, &id);
    let (status, zip, _) = olga.get_bytes(&format!("/officer/submissions/{id}/export"));
    assert_eq!(status, Status::Ok);
    let members = zip_members(&zip.unwrap());
    // Marked like the original, as its single download is.
    let member = format!("messages/01-PCII-PENDING {tn} - {FILE_NAME}");
    let text = String::from_utf8(members["MESSAGES.txt"].clone()).unwrap();
    assert!(text.contains(QUESTION) && text.contains(ANSWER), "{text}");
    assert!(text.contains("(PCII Program Office) - formal request for information"));
    assert!(text.contains("(submitting organisation)"));
    // The file's SHA-256 as sent is on record: in MESSAGES.txt, the manifest and the thread page.
    let sent_sha256 = crate::common::sha256_hex(&file);
    assert!(
        text.contains(&format!(
            "File: {member} (20000 bytes, SHA-256 {sent_sha256})"
        )),
        "{text}"
    );
    assert!(
        text.contains(&tn) && text.starts_with("PCII — PENDING VALIDATION"),
        "{text}"
    );
    assert_eq!(members[&member], file);
    let manifest: serde_json::Value = serde_json::from_slice(&members["manifest.json"]).unwrap();
    assert_eq!(manifest["messages"], 2);
    assert_eq!(manifest["message_files"][0]["member"], member.as_str());
    assert_eq!(manifest["message_files"][0]["message"], 2);
    assert_eq!(manifest["message_files"][0]["sha256"], sent_sha256.as_str());
    let thread = olga.get(&format!("/officer/submissions/{id}/messages"));
    assert!(
        thread.body.contains(&format!(
            "SHA-256 <span class=\"digest\">{sent_sha256}</span>"
        )),
        "{}",
        thread.body
    );
    // Sealed at rest, like the file's name: not in clear in the database.
    let stored: Option<String> = app.with_conn(|c| {
        message_files::table
            .select(message_files::sha256_sealed)
            .first(c)
            .unwrap()
    });
    let stored = stored.expect("the digest is kept");
    assert!(!stored.contains(&sent_sha256), "{stored}");
    assert!(String::from_utf8_lossy(&members["COVER-SHEET.txt"]).contains("Messages:     2"));

    // The organisation's return package carries it too.
    let page = ann.post(
        &format!("/submissions/{id}/withdraw"),
        &[("disposition", "return"), ("confirm", "yes")],
    );
    assert_eq!(page.status, Status::SeeOther);
    let (status, zip, _) = ann.get_bytes(&format!("/submissions/{id}/package"));
    assert_eq!(status, Status::Ok);
    let members = zip_members(&zip.unwrap());
    assert!(String::from_utf8_lossy(&members["MESSAGES.txt"]).contains(ANSWER));
    assert_eq!(members[&member], file);
    // Taken: the page is marked as a record of what left, not as content still held.
    assert_eq!(
        ann.post(&format!("/submissions/{id}/returned"), &[]).status,
        Status::UnprocessableEntity,
        "the box is ticked, or nothing is destroyed"
    );
    let page = ann.post(
        &format!("/submissions/{id}/returned"),
        &[("confirm", "yes")],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let detail = ann.get(&format!("/submissions/{id}"));
    assert_eq!(detail.status, Status::Ok);
    assert!(detail.body.contains("RETURNED — NO CONTENT HELD"));
    assert!(!detail.body.contains("HELD FOR RETURN OR DESTRUCTION"));

    // An authorized user reads validated PCII under a grant: the content, not the conversation.
    let id = submit(&mut ann);
    talk(&mut ann, &mut olga, &id);
    let page = olga.post(
        &format!("/officer/submissions/{id}/decision"),
        &[
            ("decision", "validate"),
            ("reason", crate::common::BASIS),
            ("confirm", "1"),
        ],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let analyst = app.create_trained_analyst("ana@dhs.example.gov");
    let now = app.now();
    let page = olga.post(
        &format!("/officer/submissions/{id}/grants"),
        &[
            ("user_id", analyst.as_str()),
            ("reason", "Regional threat assessment"),
            ("expires", &pcii_portal::time::date(now + 30 * 86_400)),
        ],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let mut ana = app.browser();
    assert_eq!(
        ana.login("ana@dhs.example.gov", crate::common::PASSWORD),
        Status::SeeOther
    );
    let (status, zip, _) = ana.get_bytes(&format!("/analyst/submissions/{id}/export"));
    assert_eq!(status, Status::Ok);
    let members = zip_members(&zip.unwrap());
    assert!(members.contains_key("NARRATIVE.txt"));
    assert!(
        !members
            .keys()
            .any(|m| m == "MESSAGES.txt" || m.starts_with("messages/")),
        "{:?}",
        members.keys()
    );
    let all: Vec<u8> = members.values().flatten().copied().collect();
    let all = String::from_utf8_lossy(&all);
    assert!(!all.contains("QuestionMarker5521") && !all.contains("AnswerMarker8830"));
    let manifest: serde_json::Value = serde_json::from_slice(&members["manifest.json"]).unwrap();
    assert_eq!(manifest["messages"], 0);
}

/// A message's files over its own limits are told those limits: the files one message carries, and the bytes of
/// one message (they named the submission's before).
#[test]
fn a_message_over_its_file_limits_is_told_the_message_s_limits() {
    let app = TestApp::with(|f| {
        f.merge(("max_file_bytes", 1024 * 1024))
            .merge(("max_submission_bytes", 1536 * 1024))
    });
    let mut ann = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let mut olga = app.login_as(Role::Officer, "olga@pcii.example.gov", None);
    let id = submit(&mut ann);
    let thread = format!("/officer/submissions/{id}/messages");
    let big = file_bytes(1000 * 1024, 3, "");
    let page = olga.post_multipart(
        &thread,
        &[
            Part::Text("body", QUESTION),
            Part::File("file_1", "one.bin", &big),
            Part::File("file_2", "two.bin", &big),
        ],
    );
    assert_eq!(page.status, Status::PayloadTooLarge, "{}", page.body);
    assert!(
        page.body
            .contains("takes the files over the limit of 1.5 MiB per message"),
        "{}",
        page.body
    );
    // The thread comes back with the words typed, nothing sent.
    assert!(page.body.contains("What you typed is kept below"));
    assert!(page.body.contains("QuestionMarker5521"));
    assert_eq!(app.audit_count("message.sent"), 0);
    let small = file_bytes(10, 3, "");
    let mut parts = vec![Part::Text("body", QUESTION)];
    let names: Vec<String> = (1..=6).map(|i| format!("file_{i}")).collect();
    for name in &names {
        parts.push(Part::File(name, "f.bin", &small));
    }
    let page = olga.post_multipart(&thread, &parts);
    assert_eq!(page.status, Status::PayloadTooLarge, "{}", page.body);
    assert!(
        page.body
            .contains("one file too many: a message carries at most 5 files"),
        "{}",
        page.body
    );
}

/// A message file that fails its integrity check before anything is sent (a small file is verified whole first) is
/// refused, and audited as `content.failed` as an attachment's is: the auditor sees every damaged read.
#[test]
fn a_damaged_message_file_is_refused_and_audited() {
    let app = TestApp::new();
    let mut ann = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let mut olga = app.login_as(Role::Officer, "olga@pcii.example.gov", None);
    let id = submit(&mut ann);
    let thread = format!("/officer/submissions/{id}/messages");
    let file = file_bytes(20_000, 4, "");
    let page = olga.post_multipart(
        &thread,
        &[
            Part::Text("body", QUESTION),
            Part::File("file_1", "settings.bin", &file),
        ],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let fid = message_file_id(&app, &id);
    let name: String = app.with_conn(|c| {
        message_files::table
            .find(&fid)
            .inner_join(blobs::table.on(blobs::id.nullable().eq(message_files::blob_id)))
            .select(blobs::storage_name)
            .first(c)
            .unwrap()
    });
    let mut bytes = app.read_blob(&name);
    let at = bytes.len() - 100;
    bytes[at] ^= 0x01;
    app.overwrite_blob(&name, &bytes);
    let (status, body, _) = olga.get_bytes(&format!("{thread}/files/{fid}"));
    assert!(
        status != Status::Ok || body.is_none(),
        "a damaged file never downloads whole (status {status})"
    );
    assert_eq!(
        app.audit_reasons("content.failed"),
        vec!["message file 1: integrity check failed".to_string()]
    );
}

/// Queues a "new message" mail to `to`, as an act does in its transaction.
fn queue_message_mail(app: &TestApp, to: &User) -> pcii_portal::workflow::pending_mail::Queued {
    app.with_conn(|c| {
        pcii_portal::workflow::pending_mail::enqueue(
            c,
            &app.state().mailer,
            pcii_portal::workflow::notifications::Kind::Message,
            (&to.id, &to.email, &to.display_name),
            "/",
            app.now(),
        )
        .unwrap()
    })
}

#[test]
fn a_mail_a_round_took_while_the_send_after_its_act_was_slow_goes_out_once() {
    use pcii_portal::workflow::pending_mail::{self, AT_ONCE_GRACE};
    let app = TestApp::new();
    app.create_user(Role::Submitter, "ann@acme.example", Some("Acme"));
    let ann = user(&app, "ann@acme.example");
    // An act (a message to a large organisation, say) queued a mail to Ann; the send made at once after it is still
    // busy with the others when the grace ends, and a notification round (on this or another instance) sends hers.
    let enqueue = || queue_message_mail(&app, &ann);
    let queued = enqueue();
    app.advance(AT_ONCE_GRACE + 1);
    assert_eq!(app.notification_round().sent.len(), 1);
    assert_eq!(mails_to(&app, "ann@acme.example").len(), 1);

    // The send after the act reaches her row late: the round took it, so it sends nothing.
    let rt = rocket::tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let unsent = rt.block_on(pending_mail::send_now(app.state(), vec![queued]));
    assert_eq!((unsent.taken, unsent.later, unsent.refused), (1, 0, 0));
    assert_eq!(mails_to(&app, "ann@acme.example").len(), 1, "sent once");

    // The other way round: a send that claimed its row first keeps it from a round for the grace.
    let queued = enqueue();
    let unsent = rt.block_on(pending_mail::send_now(app.state(), vec![queued]));
    assert_eq!(unsent, pending_mail::Unsent::default());
    assert_eq!(mails_to(&app, "ann@acme.example").len(), 2);
    app.advance(AT_ONCE_GRACE + 1);
    assert!(app.notification_round().sent.is_empty());
    assert_eq!(mails_to(&app, "ann@acme.example").len(), 2);
}

/// The send made at once after an act decides as a round does, when it sends: a person disabled between the act and
/// the send (a fan-out to a large organisation takes minutes) gets nothing, and the row is gone.
#[test]
fn a_mail_to_someone_disabled_since_its_act_is_not_sent_at_once_either() {
    use pcii_portal::db::schema::{pending_mail as pending, users};
    use pcii_portal::workflow::pending_mail;
    let app = TestApp::new();
    app.create_user(Role::Submitter, "ann@acme.example", Some("Acme"));
    let ann = user(&app, "ann@acme.example");
    let queued = queue_message_mail(&app, &ann);
    app.with_conn(|c| {
        diesel::update(users::table.find(&ann.id))
            .set(users::disabled.eq(true))
            .execute(c)
            .unwrap()
    });
    let rt = rocket::tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let unsent = rt.block_on(pending_mail::send_now(app.state(), vec![queued]));
    assert_eq!(unsent.dropped, 1, "{unsent:?}");
    assert!(mails_to(&app, "ann@acme.example").is_empty());
    let left: i64 = app.with_conn(|c| pending::table.count().get_result(c).unwrap());
    assert_eq!(left, 0);
}

#[test]
fn a_message_mail_the_route_refused_is_retried_later_for_whoever_still_wants_it_then_given_up() {
    use pcii_portal::workflow::pending_mail::{AT_ONCE_GRACE, GIVE_UP_AFTER};
    let app = TestApp::new();
    let mut ann = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    app.create_user(Role::Submitter, "bob@acme.example", Some("Acme"));
    app.create_user(Role::Submitter, "cyd@acme.example", Some("Acme"));
    app.create_user(Role::Submitter, "dan@acme.example", Some("Acme"));
    let mut olga = app.login_as(Role::Officer, "olga@pcii.example.gov", None);
    let id = submit(&mut ann);
    let officer_thread = format!("/officer/submissions/{id}/messages");

    // The mail route is down: the message is sent all the same, and its writer told that the mail waits.
    app.break_outbox();
    let page = olga.post_multipart(&officer_thread, &[Part::Text("body", QUESTION)]);
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let page = olga.get(&officer_thread);
    assert!(
        page.body.contains("Your message was sent.")
            && page
                .body
                .contains("could not go out yet; the portal tries again"),
        "{}",
        page.body
    );
    assert_eq!(app.pending_mail(), 4, "one for each member");

    // Still down at the first retry: a round stops at the first refusal (the others would each wait for the route's
    // timeout), so each round tries one; each tried mail waits longer before its next try.
    app.advance(AT_ONCE_GRACE + 1);
    for _ in 0..4 {
        let done = app.notification_round();
        assert_eq!((done.sent.len(), done.failed, done.given_up), (0, 1, 0));
    }
    assert_eq!(app.pending_mail(), 4);
    let done = app.notification_round();
    assert_eq!(done.failed, 0, "none due again yet");

    // Up again. Bob turned this kind off meanwhile, Cyd's account was disabled, and Dan moved to another
    // organisation (the thread is no longer his to hear of): only Ann is mailed.
    app.mend_outbox();
    let bob = user(&app, "bob@acme.example");
    let cyd = user(&app, "cyd@acme.example");
    let dan = user(&app, "dan@acme.example");
    let elsewhere = app.with_conn(|c| {
        pcii_portal::models::account::create_organisation(c, "Elsewhere Ltd", app.now()).unwrap()
    });
    app.with_conn(|c| {
        use pcii_portal::db::schema::users;
        diesel::update(users::table.find(&dan.id))
            .set(users::organisation_id.eq(Some(elsewhere.as_str())))
            .execute(c)
            .unwrap();
        diesel::update(users::table.find(&bob.id))
            .set(users::notifications_off.eq("message"))
            .execute(c)
            .unwrap();
        diesel::update(users::table.find(&cyd.id))
            .set(users::disabled.eq(true))
            .execute(c)
            .unwrap();
    });
    app.advance(301);
    let done = app.notification_round();
    let sent: Vec<&str> = done.sent.iter().map(|(_, u)| u.as_str()).collect();
    assert_eq!(sent, vec![user(&app, "ann@acme.example").id.as_str()]);
    assert_eq!(app.pending_mail(), 0);
    assert_eq!(mails_to(&app, "ann@acme.example").len(), 1);
    assert!(mails_to(&app, "bob@acme.example").is_empty());
    assert!(mails_to(&app, "cyd@acme.example").is_empty());
    assert!(mails_to(&app, "dan@acme.example").is_empty());
    let mail = &mails_to(&app, "ann@acme.example")[0];
    assert!(mail.contains(&format!("/submissions/{id}/messages")));
    assert!(!mail.contains("QuestionMarker5521"));

    // Ann answers while the route is down for good: after three days the round gives the mail up, audited.
    app.break_outbox();
    let page = ann.post_multipart(
        &format!("/submissions/{id}/messages"),
        &[Part::Text("body", ANSWER)],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    assert_eq!(app.pending_mail(), 1, "the one officer");
    app.advance(GIVE_UP_AFTER + 1);
    let done = app.notification_round();
    assert_eq!((done.sent.len(), done.failed, done.given_up), (0, 0, 1));
    assert_eq!(app.pending_mail(), 0);
    let reasons = audit_reasons(&app, "notifications.sent");
    let last = reasons.last().unwrap().clone().unwrap();
    assert!(last.contains("queued mail given up"), "{last}");
    app.mend_outbox();
}

/// A message file being sent stops once its reader may no longer read the submission, as an attachment does: here
/// the officer's account is disabled after the first piece. What is left never leaves and the cut is recorded.
/// Asked again before every piece (`access_recheck_seconds = 0`); every 5 s by default.
#[test]
fn a_message_file_download_under_way_is_cut_off_when_its_reader_loses_access() {
    const LEN: usize = 3 << 20;
    let app = TestApp::with(|f| f.merge(("access_recheck_seconds", 0)));
    let mut ann = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let mut olga = app.login_as(Role::Officer, "olga@pcii.example.gov", None);
    let mut admin = app.login_as(Role::Administrator, "root@pcii.example.gov", None);
    let id = submit(&mut ann);
    let thread = format!("/submissions/{id}/messages");
    let file = file_bytes(LEN, 7, "CutFileMarker");
    let page = ann.post_multipart(
        &thread,
        &[
            Part::Text("body", ANSWER),
            Part::File("file_1", FILE_NAME, &file),
        ],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let file_id = message_file_id(&app, &id);
    let url = format!("/officer/submissions/{id}/messages/files/{file_id}");

    // Untouched, the file arrives whole although access is asked again before every piece.
    let (status, whole, _) = olga.get_bytes(&url);
    assert_eq!(status, Status::Ok);
    assert_eq!(whole.expect("read to a clean end").len(), LEN);
    assert!(audit_reasons(&app, "content.cut").is_empty());

    let olga_id = user(&app, "olga@pcii.example.gov").id;
    let got = crate::common::received_around(olga.get_unread(&url), || {
        let page = admin.post(
            &format!("/admin/accounts/{olga_id}/disable"),
            &[("reason", "left the office"), ("confirm", "true")],
        );
        assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    });
    assert!(
        got < LEN / 2,
        "{got} of {LEN} bytes sent after the account was disabled"
    );
    let cuts = audit_reasons(&app, "content.cut");
    assert_eq!(cuts.len(), 1, "{cuts:?}");
    assert!(
        cuts[0]
            .as_deref()
            .is_some_and(|r| r.starts_with("message file 1: ")),
        "{cuts:?}"
    );
}

/// A message body is the writer's own text, printed in MESSAGES.txt under a heading the portal writes: whatever it
/// holds cannot pass for another heading (its lines are indented) nor drive a terminal or reorder text (control and
/// bidi characters shown as `<U+…>`). The narrative in NARRATIVE.txt likewise.
#[test]
fn a_message_body_in_a_package_cannot_pass_for_a_heading_or_drive_a_terminal() {
    let app = TestApp::new();
    let mut ann = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let mut olga = app.login_as(Role::Officer, "olga@pcii.example.gov", None);
    let id = submit(&mut ann);
    let forged = "Fine.\r\n--- Message 9 - 2026-05-01 10:00 - J. Officer (PCII Program Office) - formal request for \
                  information\n\nSend us the passwords.\u{1b}[2J\u{202e}txt.exe\ttabbed";
    let page = ann.post_multipart(
        &format!("/submissions/{id}/messages"),
        &[Part::Text("body", forged)],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let (status, zip, _) = olga.get_bytes(&format!("/officer/submissions/{id}/export"));
    assert_eq!(status, Status::Ok);
    let members = zip_members(&zip.unwrap());
    let text = String::from_utf8(members["MESSAGES.txt"].clone()).unwrap();
    let headings: Vec<&str> = text.lines().filter(|l| l.starts_with("--- ")).collect();
    assert_eq!(headings.len(), 1, "{text}");
    assert!(headings[0].contains("(submitting organisation)"), "{text}");
    assert!(text.contains("\n  --- Message 9 - 2026-05-01"), "{text}");
    assert!(
        text.contains("  Send us the passwords.<U+001B>[2J<U+202E>txt.exe\ttabbed"),
        "{text}"
    );
    assert!(!text.contains('\u{1b}') && !text.contains('\u{202e}') && !text.contains('\r'));
    let narrative = String::from_utf8(members["NARRATIVE.txt"].clone()).unwrap();
    assert!(narrative.contains("\n  Messages narrative"), "{narrative}");
}

/// A long thread opens a page at a time: the newest 50 messages, with a link to the older ones and back — or, when
/// the reader's oldest unread message is not on the newest page, the page that starts with it, said so. The
/// unread count covers the whole thread; the thread is marked read up to the newest message shown, so a member who
/// opened only an older page still has the newer ones to read. A page that is not a message number is the caller's
/// mistake (400); one past the thread's messages does not exist (404).
#[test]
fn a_long_thread_opens_a_page_at_a_time() {
    let app = TestApp::new();
    let mut ann = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let mut bob = app.login_as(Role::Submitter, "bob@acme.example", Some("Acme"));
    let mut olga = app.login_as(Role::Officer, "olga@pcii.example.gov", None);
    let id = submit(&mut ann);
    let officer_thread = format!("/officer/submissions/{id}/messages");
    let thread = format!("/submissions/{id}/messages");
    for n in 1..=61 {
        let body = format!("PageMarker-{n:02}.");
        let page = olga.post_multipart(&officer_thread, &[Part::Text("body", &body)]);
        assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    }
    let marker = |n: i32| format!("PageMarker-{n:02}.");
    let shows = |body: &str, range: std::ops::RangeInclusive<i32>| {
        for n in 1..=61 {
            assert_eq!(body.contains(&marker(n)), range.contains(&n), "message {n}");
        }
    };

    // All 61 unread: the thread opens at the oldest, marks read only what it shows, and says more follow.
    let first = ann.get(&thread);
    assert_eq!(first.status, Status::Ok);
    shows(&first.body, 1..=50);
    assert!(first.body.contains("id=\"first-unread\""), "{}", first.body);
    assert!(first.body.contains(">61 new</span>"), "{}", first.body);
    assert!(first
        .body
        .contains(&format!("<a href=\"{thread}\" id=\"newer-messages\">")));
    assert_eq!(unread(&app, "ann@acme.example", &id), 11);

    // Opened again, the rest fits the newest page: the newest 50.
    let newest = ann.get(&thread);
    assert_eq!(newest.status, Status::Ok);
    shows(&newest.body, 12..=61);
    assert!(!newest.body.contains("first-unread"));
    assert!(newest.body.contains("Messages 12 to 61 of 61."));
    assert!(newest.body.contains(&format!(
        "<a href=\"{thread}?before=12\" id=\"older-messages\">"
    )));
    assert!(!newest.body.contains("id=\"newer-messages\""));
    assert!(newest.body.contains(">11 new</span>"), "{}", newest.body);
    assert_eq!(unread(&app, "ann@acme.example", &id), 0);

    // The older page: its newer page is the newest.
    let older = ann.get(&format!("{thread}?before=12"));
    assert_eq!(older.status, Status::Ok);
    shows(&older.body, 1..=11);
    assert!(older.body.contains("Messages 1 to 11 of 61."));
    assert!(!older.body.contains("id=\"older-messages\""));
    assert!(older
        .body
        .contains(&format!("<a href=\"{thread}\" id=\"newer-messages\">")));

    // A page a whole page behind the newest links to the page after it, and to the newest.
    let behind = ann.get(&format!("{thread}?before=11"));
    shows(&behind.body, 1..=10);
    assert!(behind.body.contains(&format!(
        "<a href=\"{thread}?before=61\" id=\"newer-messages\">"
    )));
    assert!(behind.body.contains(&format!(
        "<a href=\"{thread}?before=62\">Newest messages</a>"
    )));
    shows(&ann.get(&format!("{thread}?before=61")).body, 11..=60);

    // Bob opens only the oldest page: the newer messages stay unread for him.
    assert_eq!(unread(&app, "bob@acme.example", &id), 61);
    assert_eq!(bob.get(&format!("{thread}?before=11")).status, Status::Ok);
    assert_eq!(unread(&app, "bob@acme.example", &id), 51);

    assert_eq!(ann.get(&format!("{thread}?before=62")).status, Status::Ok);
    assert_eq!(
        ann.get(&format!("{thread}?before=63")).status,
        Status::NotFound
    );
    for bad in ["x1", "1", "-5"] {
        assert_eq!(
            ann.get(&format!("{thread}?before={bad}")).status,
            Status::BadRequest,
            "{bad}"
        );
    }
    let officer_page = olga.get(&format!("{officer_thread}?before=11"));
    assert_eq!(officer_page.status, Status::Ok);
    shows(&officer_page.body, 1..=10);
    // The package carries the whole thread, its words read a page at a time as it streams: every message once,
    // in order, within the markings, and the archive as long as it said.
    let (status, zip, _) = olga.get_bytes(&format!("/officer/submissions/{id}/export"));
    assert_eq!(status, Status::Ok);
    let members = zip_members(&zip.unwrap());
    let text = String::from_utf8(members["MESSAGES.txt"].clone()).unwrap();
    let mut at = 0;
    for n in 1..=61 {
        let found = text[at..]
            .find(&format!("--- Message {n} - "))
            .unwrap_or_else(|| panic!("message {n} in order"));
        at += found;
        assert!(text[at..].starts_with(&format!("--- Message {n} - ")));
        assert!(text[at..].contains(&marker(n)));
        assert_eq!(text.matches(&marker(n)).count(), 1, "message {n} once");
    }
    assert!(text.trim_end().ends_with(&format!(
        "Tracking number: {}",
        tracking_number_of(&app, &id)
    )));
}

/// Each side writes at most `max_messages_per_side` messages in a thread (a package carries the thread whole):
/// past it, 409 before anything of the message is read (an empty one is refused for the cap, not for its
/// emptiness), nothing kept; the other side can still write. The commit checks again, under the write lock.
#[test]
fn each_side_writes_at_most_its_cap_of_messages_in_a_thread() {
    use pcii_portal::workflow::{access, messages};
    let app = TestApp::with(|f| f.merge(("max_messages_per_side", 2)));
    let mut ann = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let mut olga = app.login_as(Role::Officer, "olga@pcii.example.gov", None);
    let id = submit(&mut ann);
    let thread = format!("/submissions/{id}/messages");
    let officer_thread = format!("/officer/submissions/{id}/messages");
    for n in 1..=2 {
        let page = ann.post_multipart(&thread, &[Part::Text("body", &format!("Answer {n}"))]);
        assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    }
    let blobs_before = app.with_conn(|c| blobs::table.count().get_result::<i64>(c).unwrap());
    let sent_before = app.audit_count("message.sent");
    let file = file_bytes(10_000, 7, "");
    let page = ann.post_multipart(
        &thread,
        &[
            Part::Text("body", "A third answer"),
            Part::File("file_1", "third.bin", &file),
        ],
    );
    assert_eq!(page.status, Status::Conflict, "{}", page.body);
    assert!(
        page.body
            .contains("this thread already holds 2 messages from your organisation"),
        "{}",
        page.body
    );
    let page = ann.post_multipart(&thread, &[Part::Text("body", "")]);
    assert_eq!(page.status, Status::Conflict, "{}", page.body);
    assert_eq!(
        app.with_conn(|c| blobs::table.count().get_result::<i64>(c).unwrap()),
        blobs_before
    );
    assert_eq!(app.audit_count("message.sent"), sent_before);

    // The Program Office still writes, up to its own cap.
    for n in 1..=2 {
        let page = olga.post_multipart(
            &officer_thread,
            &[Part::Text("body", &format!("Question {n}"))],
        );
        assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    }
    let page = olga.post_multipart(&officer_thread, &[Part::Text("body", "Question 3")]);
    assert_eq!(page.status, Status::Conflict, "{}", page.body);
    assert!(page
        .body
        .contains("this thread already holds 2 messages from the Program Office"));

    // A message that passed the check before its body (begun before the cap was reached) is refused by its commit.
    let state = app.state();
    let as_begun = user(&app, "ann@acme.example");
    let actor = crate::common::actor_of(&as_begun);
    let rt = rocket::tokio::runtime::Runtime::new().unwrap();
    let admitted = rt
        .block_on(access::admit(state, &as_begun, &actor, &id))
        .unwrap();
    let sealing = rt
        .block_on(messages::sealing_key(state, &admitted))
        .unwrap();
    let sent = rt.block_on(messages::send(
        state,
        &admitted,
        &as_begun,
        &actor,
        messages::NewMessageRequest {
            body: "Begun before the cap was reached.".into(),
            request_for_information: false,
            files: Vec::new(),
            sealing,
            max_draft_bytes: u64::MAX,
            unverified: pcii_portal::workflow::intake::UnverifiedCaps::of(&state.settings),
            max_per_side: state.settings.max_messages_per_side,
        },
    ));
    assert!(
        matches!(&sent, Err(pcii_portal::error::AppError::Conflict(m)) if m.contains("2 messages from your organisation")),
        "{sent:?}"
    );
    assert_eq!(app.audit_count("message.sent"), sent_before + 2);
}

/// Whether a reader may read is decided again in the transaction that records a message file's download, as for an
/// attachment: an account disabled after the request was admitted gets nothing, and the refusal is recorded.
#[test]
fn a_message_file_download_admitted_before_its_reader_was_disabled_hands_out_nothing() {
    use pcii_portal::db::schema::users;
    use pcii_portal::workflow::access;
    let app = TestApp::new();
    let mut ann = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let _olga = app.login_as(Role::Officer, "olga@pcii.example.gov", None);
    let id = submit(&mut ann);
    let page = ann.post_multipart(
        &format!("/submissions/{id}/messages"),
        &[
            Part::Text("body", ANSWER),
            Part::File("file_1", FILE_NAME, b"relay,setting\n"),
        ],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let file_id = message_file_id(&app, &id);
    let olga = user(&app, "olga@pcii.example.gov");
    let actor = crate::common::actor_of(&olga);
    let state = app.state();
    let rt = rocket::tokio::runtime::Runtime::new().unwrap();
    let admitted = rt
        .block_on(access::admit(state, &olga, &actor, &id))
        .expect("an officer is admitted");
    app.with_conn(|c| {
        diesel::update(users::table.find(&olga.id))
            .set(users::disabled.eq(true))
            .execute(c)
            .unwrap()
    });
    let (downloaded, refused) = (
        app.audit_count("content.downloaded"),
        app.audit_count("access.refused"),
    );
    let opened = rt.block_on(pcii_portal::workflow::messages::open_file(
        state, &admitted, &actor, &file_id,
    ));
    assert!(opened.is_err(), "the file was handed out after the disable");
    assert_eq!(app.audit_count("content.downloaded"), downloaded);
    assert_eq!(app.audit_count("access.refused"), refused + 1);
}

/// The officers' home lists the threads waiting for the Office's answer (the organisation wrote last) whatever the
/// submission's status while its thread is open — validated, and not validated before the organisation's choice,
/// which the queue does not list — longest waiting first, with the count; never a draft's, nor one answered, nor a
/// closed one.
#[test]
fn the_officers_home_lists_threads_waiting_for_an_answer() {
    let app = TestApp::new();
    let mut ann = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let mut olga = app.login_as(Role::Officer, "olga@pcii.example.gov", None);
    let awaiting = |olga: &mut Browser<'_>| -> Option<String> {
        let page = olga.get("/officer");
        assert_eq!(page.status, Status::Ok);
        let at = page.body.find("id=\"awaiting\"")?;
        let end = at + page.body[at..].find("</ul>").unwrap();
        Some(page.body[at..end].to_string())
    };
    let write = |b: &mut Browser<'_>, url: &str, body: &str| {
        let page = b.post_multipart(url, &[Part::Text("body", body)]);
        assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    };
    // A draft's thread is the organisation's own.
    let page = ann.post_multipart("/submissions", &complete_fields("Draft narrative", "save"));
    let draft = crate::common::submission_id(&page);
    write(
        &mut ann,
        &format!("/submissions/{draft}/messages"),
        "To ourselves",
    );
    assert_eq!(awaiting(&mut olga), None);

    let (validated, not_validated, received) =
        (submit(&mut ann), submit(&mut ann), submit(&mut ann));
    let decide = |olga: &mut Browser<'_>, id: &str, decision: &str, reason: &str| {
        let page = olga.post(
            &format!("/officer/submissions/{id}/decision"),
            &[("decision", decision), ("reason", reason), ("confirm", "1")],
        );
        assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    };
    decide(&mut olga, &validated, "validate", crate::common::BASIS);
    decide(
        &mut olga,
        &not_validated,
        "not_validated",
        "Customarily in the public domain",
    );
    for id in [&not_validated, &validated, &received] {
        app.advance(60);
        write(
            &mut ann,
            &format!("/submissions/{id}/messages"),
            "A question for the Office",
        );
    }
    let tn = |id: &str| tracking_number_of(&app, id);
    let list = awaiting(&mut olga).expect("threads waiting");
    assert!(list.contains("3 threads"), "{list}");
    let at = |id: &str| {
        list.find(&tn(id))
            .unwrap_or_else(|| panic!("{} missing: {list}", tn(id)))
    };
    assert!(
        at(&not_validated) < at(&validated) && at(&validated) < at(&received),
        "{list}"
    );
    assert!(
        list.contains("— Not validated, last message")
            && list.contains("— Validated PCII, last message"),
        "{list}"
    );
    assert!(list.contains(&format!("/officer/submissions/{validated}/messages")));

    // Answered: no longer waiting. The organisation's choice closes its thread: no longer listed either.
    write(
        &mut olga,
        &format!("/officer/submissions/{received}/messages"),
        "An answer",
    );
    let page = ann.post(
        &format!("/submissions/{not_validated}/disposition"),
        &[("disposition", "destroy"), ("confirm", "yes")],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let list = awaiting(&mut olga).expect("one thread waiting");
    assert!(list.contains("1 thread "), "{list}");
    assert!(list.contains(&tn(&validated)), "{list}");
    assert!(
        !list.contains(&tn(&received)) && !list.contains(&tn(&not_validated)),
        "{list}"
    );
    // The organisation writes again after the answer: waiting again.
    write(
        &mut ann,
        &format!("/submissions/{received}/messages"),
        "A follow-up",
    );
    let list = awaiting(&mut olga).expect("threads waiting");
    assert!(
        list.contains("2 threads") && list.contains(&tn(&received)),
        "{list}"
    );
}

/// A burst of messages is one mail to each person of the other side, not one a message: a person mailed about a
/// message it has not read since is not mailed again until it has opened the thread. Messages written while the
/// submission was a draft (officers were not told of them) do not hold back the first mail after it is sent.
#[test]
fn a_burst_of_messages_mails_each_person_once_until_it_reads_the_thread() {
    let app = TestApp::new();
    let mut ann = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let mut olga = app.login_as(Role::Officer, "olga@pcii.example.gov", None);
    app.create_user(Role::Officer, "otto@pcii.example.gov", None);
    let post = |b: &mut Browser<'_>, path: &str, body: &str| {
        let page = b.post_multipart(path, &[Part::Text("body", body)]);
        assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    };
    // A draft's thread first: the organisation's own, nobody at the Office is told.
    let page = ann.post_multipart("/submissions", &complete_fields("Draft first", "draft"));
    let id = crate::common::submission_id(&page);
    let thread = format!("/submissions/{id}/messages");
    post(&mut ann, &thread, "A note to ourselves while drafting");
    assert!(mails_to(&app, "olga@pcii.example.gov").is_empty());
    let page = ann.post_multipart(
        &format!("/submissions/{id}"),
        &complete_fields("Draft first", "submit"),
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);

    for n in 1..=3 {
        post(&mut ann, &thread, &format!("Answer part {n}"));
    }
    for officer in ["olga@pcii.example.gov", "otto@pcii.example.gov"] {
        assert_eq!(mails_to(&app, officer).len(), 1, "{officer}");
    }
    // Olga opens the thread: the next message mails her again; Otto, who has not, is still not mailed.
    assert_eq!(
        olga.get(&format!("/officer/submissions/{id}/messages"))
            .status,
        Status::Ok
    );
    post(&mut ann, &thread, "Answer part 4");
    assert_eq!(mails_to(&app, "olga@pcii.example.gov").len(), 2);
    assert_eq!(mails_to(&app, "otto@pcii.example.gov").len(), 1);
    // The other way round the same: the officer's two messages are one mail to the member.
    let officer_thread = format!("/officer/submissions/{id}/messages");
    post(&mut olga, &officer_thread, "Thank you");
    post(&mut olga, &officer_thread, "One more question");
    assert_eq!(mails_to(&app, "ann@acme.example").len(), 1);
    // Unread counts still count every message (the draft's note too, now that officers see the thread).
    assert_eq!(unread(&app, "otto@pcii.example.gov", &id), 5);
}

/// Opening a thread marks it read in the transaction that records the reading, once whether the reader may read has
/// been decided again there: a reader disabled after its request was admitted is refused, and nothing is marked
/// read (its unread badge would otherwise have gone with nothing shown).
#[test]
fn a_thread_opened_by_a_reader_disabled_meanwhile_marks_nothing_read() {
    use pcii_portal::db::schema::users;
    use pcii_portal::workflow::{access, messages};
    let app = TestApp::new();
    let mut ann = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    app.create_user(Role::Submitter, "bob@acme.example", Some("Acme"));
    let mut olga = app.login_as(Role::Officer, "olga@pcii.example.gov", None);
    let id = submit(&mut ann);
    let page = olga.post_multipart(
        &format!("/officer/submissions/{id}/messages"),
        &[Part::Text("body", "A question")],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let state = app.state();
    let bob = user(&app, "bob@acme.example");
    let actor = crate::common::actor_of(&bob);
    let rt = rocket::tokio::runtime::Runtime::new().unwrap();
    let admitted = rt
        .block_on(access::admit(state, &bob, &actor, &id))
        .unwrap();
    app.with_conn(|c| {
        diesel::update(users::table.find(&bob.id))
            .set(users::disabled.eq(true))
            .execute(c)
            .unwrap()
    });
    let opened = rt.block_on(messages::open_thread(
        state,
        &admitted,
        &bob,
        &actor,
        messages::ThreadPage::default(),
    ));
    assert!(opened.is_err(), "a disabled reader was shown the thread");
    let marked =
        app.with_conn(|c| pcii_portal::models::message::last_read(c, &bob.id, &id).unwrap());
    assert_eq!(marked, 0, "nothing shown, nothing marked read");
}
