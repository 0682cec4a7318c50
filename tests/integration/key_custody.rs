//! Key custody as an intruder would try it: a destroyed submission's ciphertexts, copied aside before the
//! destruction, open with no key the portal or the escrow holders have; a crash between the decision's commit and
//! the deletion of the files leaves nothing readable and the sweep finishes the job; other submissions still open.

use std::str::FromStr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use crate::common::{complete_fields, file_bytes, Browser, Part, TestApp};
use diesel::connection::{Instrumentation, InstrumentationEvent};
use diesel::prelude::*;
use rocket::http::Status;

use pcii_portal::db::schema::{blobs, data_keys};
use pcii_portal::domain::Role;
use pcii_portal::key_store::data_keys::{blob_keys, open_blob};
use pcii_portal::models::blob_deletion;

const MARKER: &str = "CUSTODY-MARKER-5d1e";

fn submit(b: &mut Browser<'_>, narrative: &str, files: &[Vec<u8>]) -> String {
    let mut parts = complete_fields(narrative, "submit");
    let names: Vec<(String, String)> = (1..=files.len())
        .map(|i| (format!("file_{i}"), format!("description_{i}")))
        .collect();
    for (i, f) in files.iter().enumerate() {
        parts.push(Part::Text(&names[i].1, "desc"));
        parts.push(Part::File(&names[i].0, "report.bin", f));
    }
    let page = b.post_multipart("/submissions", &parts);
    crate::common::submission_id(&page)
}

fn storage_names(app: &TestApp, id: &str) -> Vec<String> {
    app.with_conn(|c| {
        blobs::table
            .filter(blobs::submission_id.eq(id))
            .select(blobs::storage_name)
            .load(c)
            .unwrap()
    })
}

/// Every identity an intruder could take from `keys/` (as `rage -d -i keys/age-identities.txt` would use them).
fn identities_on_disk(app: &TestApp) -> Vec<Box<dyn age::Identity + Send + Sync>> {
    let path = app.keys_dir().join("age-identities.txt");
    age::IdentityFile::from_file(path.to_string_lossy().into_owned())
        .unwrap()
        .into_identities()
        .unwrap()
}

fn opens_with(ciphertext: &[u8], identities: &[&dyn age::Identity]) -> bool {
    let Ok(decryptor) = age::Decryptor::new(ciphertext) else {
        return false;
    };
    let Ok(mut reader) = decryptor.decrypt(identities.iter().copied()) else {
        return false;
    };
    let mut out = Vec::new();
    std::io::Read::read_to_end(&mut reader, &mut out).is_ok()
}

#[test]
fn copies_of_a_destroyed_submission_open_for_no_key_and_a_crash_before_deleting_its_files_leaves_nothing_readable(
) {
    let escrow = age::x25519::Identity::generate();
    let escrow_public = escrow.to_public().to_string();
    let app = TestApp::with(|f| f.merge(("escrow_recipients", vec![escrow_public.clone()])));
    let mut sub = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let mut officer = app.login_as(Role::Officer, "olga@pcii.example.gov", None);
    let files = vec![file_bytes(50_000, 1, MARKER), file_bytes(70_000, 2, MARKER)];
    let doomed = submit(&mut sub, &format!("doomed {MARKER}"), &files);
    let kept = submit(&mut sub, "kept narrative", &[file_bytes(30_000, 3, "")]);
    let page = officer.post(
        &format!("/officer/submissions/{doomed}/decision"),
        &[
            ("decision", "not_validated"),
            ("reason", "Public domain"),
            ("confirm", "1"),
        ],
    );
    assert_eq!(page.status, Status::SeeOther);

    // The intruder's copy, taken before the destruction: every blob of the submission.
    let blob_dir = app.data_dir().join("blobs");
    let names = storage_names(&app, &doomed);
    assert_eq!(names.len(), 3, "a content document and two files");
    let copies: Vec<(String, Vec<u8>)> = names
        .iter()
        .map(|n| (n.clone(), std::fs::read(blob_dir.join(n)).unwrap()))
        .collect();
    // Before: the blobs open with the submission's data key (unwrapped by the portal), not with keys/ directly.
    let on_disk = identities_on_disk(&app);
    let on_disk: Vec<&dyn age::Identity> = on_disk
        .iter()
        .map(|i| i.as_ref() as &dyn age::Identity)
        .collect();
    for (_, bytes) in &copies {
        assert!(
            !opens_with(bytes, &on_disk),
            "blobs are sealed to the data key only"
        );
        assert!(!opens_with(bytes, &[&escrow]));
    }
    // ... and the data key, wrapped in the database, opens with the master key and with the escrow key.
    let wrapped: Vec<Vec<u8>> = app.with_conn(|c| {
        data_keys::table
            .filter(data_keys::submission_id.eq(&doomed))
            .select(data_keys::wrapped)
            .load(c)
            .unwrap()
    });
    assert_eq!(wrapped.len(), 1);
    // Positive control: the identities on disk are the real master key (they open the wrapped data key), so the
    // "opens with keys/" checks use a key that opens something.
    assert!(
        opens_with(&wrapped[0], &on_disk),
        "the identities in keys/ do not open the wrapped data key"
    );
    let data_key = {
        let d = age::Decryptor::new(&wrapped[0][..]).unwrap();
        let mut r = d
            .decrypt(std::iter::once(&escrow as &dyn age::Identity))
            .unwrap();
        let mut s = String::new();
        std::io::Read::read_to_string(&mut r, &mut s).unwrap();
        age::x25519::Identity::from_str(s.trim()).unwrap()
    };
    assert!(copies.iter().all(|(_, b)| opens_with(b, &[&data_key])));
    drop(data_key);

    // The destruction, through the normal flow; then the state a `kill -9` right after its commit would leave: the
    // files still on disk (put back from the copy) and still queued for deletion.
    let page = sub.post(
        &format!("/submissions/{doomed}/disposition"),
        &[("disposition", "destroy"), ("confirm", "yes")],
    );
    assert_eq!(page.status, Status::SeeOther);
    for (name, bytes) in &copies {
        std::fs::write(blob_dir.join(name), bytes).unwrap();
    }
    app.with_conn(|c| blob_deletion::enqueue(c, &names, 0).unwrap());

    // From the commit on: no wrapped key is left, and no key anyone holds opens any copy.
    let left: i64 = app.with_conn(|c| {
        data_keys::table
            .filter(data_keys::submission_id.eq(&doomed))
            .count()
            .get_result(c)
            .unwrap()
    });
    assert_eq!(left, 0);
    let on_disk = identities_on_disk(&app);
    let on_disk: Vec<&dyn age::Identity> = on_disk
        .iter()
        .map(|i| i.as_ref() as &dyn age::Identity)
        .collect();
    for (name, bytes) in &copies {
        assert!(!opens_with(bytes, &on_disk), "{name} opens with keys/");
        assert!(
            !opens_with(bytes, &[&escrow]),
            "{name} opens with the escrow key"
        );
    }
    // The other submission still opens, through the portal and with its data key.
    let page = sub.get(&format!("/submissions/{kept}"));
    assert_eq!(page.status, Status::Ok);
    assert!(page.body.contains("kept narrative"));
    let ring = app.state().current_keys();
    for name in storage_names(&app, &kept) {
        let id: String = app.with_conn(|c| {
            blobs::table
                .filter(blobs::storage_name.eq(&name))
                .select(blobs::id)
                .first(c)
                .unwrap()
        });
        let keys = app.with_conn(|c| blob_keys(c, &id).unwrap());
        assert!(open_blob(&*app.state().blobs, &ring.read().unwrap(), &keys).is_ok());
    }

    // A restart sweeps the queue: the files go, the queue empties, and the sweep is audited.
    let startup = app.restart(|f| f.merge(("escrow_recipients", vec![escrow_public.clone()])));
    assert_eq!(startup.swept_blobs, 3);
    for name in &names {
        assert!(!blob_dir.join(name).exists(), "{name} survived the sweep");
    }
    assert_eq!(app.with_conn(|c| blob_deletion::count(c).unwrap()), 0);
    assert_eq!(app.audit_count("blob.sweep"), 1);
}

#[test]
fn the_periodic_sweep_deletes_queued_files_while_the_server_runs() {
    let app = TestApp::with(|f| f.merge(("blob_sweep_interval_seconds", 1)));
    // A file left behind by a crash after its row was gone: queued, on disk.
    let store = app.state().blobs.clone();
    let mut w = store.create().unwrap();
    std::io::Write::write_all(&mut w, b"age-encryption.org/v1 leftover").unwrap();
    let name = w.commit().unwrap();
    app.with_conn(|c| blob_deletion::enqueue(c, std::slice::from_ref(&name), 0).unwrap());
    // The sweep runs on the server's runtime; a request drives the client's runtime while we wait.
    let mut b = app.browser();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    // Done when the file is gone, its name dequeued and the sweep audited (the sweep does these in that order).
    let done = || {
        !store.exists(&name).unwrap()
            && app.with_conn(|c| blob_deletion::count(c).unwrap()) == 0
            && app.audit_count("blob.sweep") >= 1
    };
    while !done() && std::time::Instant::now() < deadline {
        assert_eq!(b.get("/healthz").status, Status::Ok);
        std::thread::sleep(std::time::Duration::from_millis(200));
    }
    assert!(
        !store.exists(&name).unwrap(),
        "the periodic sweep never ran"
    );
    assert_eq!(app.with_conn(|c| blob_deletion::count(c).unwrap()), 0);
    assert!(app.audit_count("blob.sweep") >= 1);
}

/// A blob store that answers as the portal's does, but refuses to list (`refuse_list`) or to delete one name.
struct FailingStore {
    inner: Arc<dyn pcii_portal::storage::BlobStore>,
    refuse_list: bool,
    refuse_delete: Option<String>,
}

impl pcii_portal::storage::BlobStore for FailingStore {
    fn create(&self) -> std::io::Result<Box<dyn pcii_portal::storage::BlobWriter>> {
        self.inner.create()
    }
    fn open(&self, name: &str) -> std::io::Result<Box<dyn std::io::Read + Send>> {
        self.inner.open(name)
    }
    fn delete(&self, name: &str) -> std::io::Result<()> {
        if self.refuse_delete.as_deref() == Some(name) {
            return Err(std::io::Error::other("refused by the test"));
        }
        self.inner.delete(name)
    }
    fn exists(&self, name: &str) -> std::io::Result<bool> {
        self.inner.exists(name)
    }
    fn list(&self) -> std::io::Result<Vec<(String, std::time::Duration)>> {
        if self.refuse_list {
            return Err(std::io::Error::other("refused by the test"));
        }
        self.inner.list()
    }
    fn sweep_temporaries(&self, older_than: std::time::Duration) -> std::io::Result<usize> {
        self.inner.sweep_temporaries(older_than)
    }
    fn is_available(&self) -> bool {
        true
    }
    fn describe(&self) -> String {
        "a failing test store".into()
    }
}

/// A sweep whose later step fails (the store cannot be listed, an orphan cannot be removed) still records what it
/// did: the queued files it deleted are gone from the queue, so no later sweep could record them.
#[test]
fn a_sweep_that_fails_part_way_still_audits_what_it_removed() {
    use pcii_portal::audit::log::Actor;
    use pcii_portal::db::schema::audit_entries;
    use pcii_portal::workflow::blobs;

    let app = TestApp::new();
    let state = app.state();
    let put = |bytes: &[u8]| {
        let mut w = state.blobs.create().unwrap();
        std::io::Write::write_all(&mut w, bytes).unwrap();
        w.commit().unwrap()
    };
    let sweep = |store: &FailingStore| {
        let mut conn = state.db.get().unwrap();
        blobs::sweep(
            &mut &mut *conn,
            store,
            &state.audit,
            &Actor::cli(),
            std::time::Duration::ZERO,
            None,
        )
    };
    let last_sweep = || -> (String, String) {
        app.with_conn(|c| {
            audit_entries::table
                .filter(audit_entries::action.eq("blob.sweep"))
                .order(audit_entries::seq.desc())
                .select((audit_entries::outcome, audit_entries::reason))
                .first::<(String, Option<String>)>(c)
                .map(|(o, r)| (o, r.unwrap_or_default()))
                .unwrap()
        })
    };

    // The queue is worked through, then the listing fails: an error, and the deletion is recorded with it.
    let queued = put(b"age-encryption.org/v1 destroyed");
    app.with_conn(|c| blob_deletion::enqueue(c, std::slice::from_ref(&queued), 0).unwrap());
    let refusing_lists = FailingStore {
        inner: state.blobs.clone(),
        refuse_list: true,
        refuse_delete: None,
    };
    assert!(sweep(&refusing_lists).is_err());
    assert!(!state.blobs.exists(&queued).unwrap());
    assert_eq!(app.with_conn(|c| blob_deletion::count(c).unwrap()), 0);
    assert_eq!(app.audit_count("blob.sweep"), 1);
    let (outcome, reason) = last_sweep();
    assert_eq!(outcome, "failure");
    assert!(
        reason.starts_with("deleted 1 queued, 0 failed")
            && reason.ends_with("then listing the store for orphans failed"),
        "{reason}"
    );

    // An orphan the store refuses to remove does not hide the one it removed.
    let (kept, removed) = (put(b"orphan one"), put(b"orphan two"));
    let refusing_one = FailingStore {
        inner: state.blobs.clone(),
        refuse_list: false,
        refuse_delete: Some(kept.clone()),
    };
    let swept = sweep(&refusing_one).unwrap();
    assert_eq!((swept.orphans, swept.orphans_failed), (1, 1));
    assert!(state.blobs.exists(&kept).unwrap());
    assert!(!state.blobs.exists(&removed).unwrap());
    let (outcome, reason) = last_sweep();
    assert_eq!(outcome, "failure");
    assert!(reason.ends_with("1 orphans, 1 orphans failed"), "{reason}");
}

/// Unzips everything in a zip (the auditor's export) into one lossy string.
fn zip_text(bytes: &[u8]) -> String {
    let mut z = zip::ZipArchive::new(std::io::Cursor::new(bytes.to_vec())).expect("a zip");
    let mut out = String::new();
    for i in 0..z.len() {
        let mut f = z.by_index(i).unwrap();
        let mut v = Vec::new();
        std::io::Read::read_to_end(&mut f, &mut v).unwrap();
        out.push_str(&String::from_utf8_lossy(&v));
    }
    out
}

#[test]
fn officers_words_are_sealed_shown_to_those_admitted_and_destroyed_with_the_content() {
    use pcii_portal::db::schema::users;
    let app = TestApp::new();
    let mut sub = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let mut officer = app.login_as(Role::Officer, "olga@pcii.example.gov", None);
    let mut auditor = app.login_as(Role::Auditor, "aud@oig.example.gov", None);
    let analyst_id = app.create_user(Role::AuthorizedUser, "ana@dhs.example.gov", None);
    let now = app.now();
    app.with_conn(|c| {
        diesel::update(users::table.find(&analyst_id))
            .set((
                users::training_completed_at.eq(Some(now)),
                users::nda_signed_at.eq(Some(now)),
            ))
            .execute(c)
            .unwrap()
    });
    let markers = [
        "DEFECT-MARKER-a1",
        "REASON-MARKER-b2",
        "GRANT-MARKER-c3",
        "REVOKE-MARKER-d4",
        "RECIPIENT-MARKER-e5",
        "ARRANGEMENT-MARKER-f6",
        "WHAT-MARKER-g7",
        "REMOVED-MARKER-h8",
        "BASIS-MARKER-i9",
        "CONSENT-MARKER-j10",
    ];

    // One submission found defective, then not validated; another validated, granted, revoked, disseminated.
    let doomed = submit(&mut sub, "first narrative", &[]);
    let kept = submit(&mut sub, "second narrative", &[]);
    let decide = |o: &mut Browser<'_>, id: &str, decision: &str, reason: &str| {
        let page = o.post(
            &format!("/officer/submissions/{id}/decision"),
            &[("decision", decision), ("reason", reason), ("confirm", "1")],
        );
        assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    };
    decide(&mut officer, &doomed, "defective", markers[0]);
    // "Not validated" waits for the end of the cure period; everyone signs in again after it.
    app.advance(31 * pcii_portal::time::DAY);
    for (b, email) in [
        (&mut sub, "ann@acme.example"),
        (&mut officer, "olga@pcii.example.gov"),
        (&mut auditor, "aud@oig.example.gov"),
    ] {
        assert_eq!(b.login(email, crate::common::PASSWORD), Status::SeeOther);
    }
    decide(&mut officer, &doomed, "not_validated", markers[1]);
    decide(&mut officer, &kept, "validate", markers[8]);
    let expires = pcii_portal::time::date(app.now() + 30 * pcii_portal::time::DAY);
    let page = officer.post(
        &format!("/officer/submissions/{kept}/grants"),
        &[
            ("user_id", &analyst_id),
            ("reason", markers[2]),
            ("expires", &expires),
        ],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let grant_id: String = app.with_conn(|c| {
        pcii_portal::db::schema::grants::table
            .select(pcii_portal::db::schema::grants::id)
            .first(c)
            .unwrap()
    });
    let page = officer.post(
        &format!("/officer/submissions/{kept}/grants/{grant_id}/revoke"),
        &[("reason", markers[3])],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let today = pcii_portal::time::date(app.now());
    let page = officer.post(
        &format!("/officer/submissions/{kept}/disseminations"),
        &[
            ("recipient", markers[4]),
            ("recipient_kind", "state"),
            ("arrangement", markers[5]),
            ("what", markers[6]),
            ("released_on", &today),
            ("sanitized", "yes"),
            ("removed", markers[7]),
            ("purpose", "regulatory"),
            ("consent", markers[9]),
        ],
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);

    // Those admitted read them: the submitter its notices and history, the officer everything.
    let page = sub.get(&format!("/submissions/{doomed}"));
    assert!(
        page.body.contains(markers[0]) && page.body.contains(markers[1]),
        "{}",
        page.body
    );
    assert!(
        sub.get("/submissions").body.contains(markers[1]),
        "the home page's notices"
    );
    let page = officer.get(&format!("/officer/submissions/{kept}"));
    for m in &markers[2..] {
        assert!(page.body.contains(m), "{m} on the officer's page");
    }
    let log = officer.get("/officer/disseminations");
    assert!(log.body.contains(markers[4]) && log.body.contains(markers[6]));
    // The auditor sees that they were given, never their words — not in the log, not in its export.
    let log = auditor.get("/audit/");
    assert_eq!(log.status, Status::Ok);
    assert!(
        log.body.contains("sealed, sha256"),
        "the entries bind the texts by digest"
    );
    let (status, export, _) = auditor.post_bytes("/audit/export", &[]);
    assert_eq!(status, Status::Ok);
    let export = zip_text(&export.unwrap());
    // Nothing on disk holds them: the database, its WAL (not checkpointed) and the audit export.
    let mut scanned = vec![("audit export".to_string(), export)];
    if app.database_url.is_empty() {
        for suffix in ["", "-wal"] {
            let path = format!("{}{suffix}", app.data_dir().join("pcii.sqlite3").display());
            let bytes = std::fs::read(&path).unwrap();
            scanned.push((path, String::from_utf8_lossy(&bytes).into_owned()));
        }
    }
    // Positive controls: the scans do see what is meant to be in clear.
    assert!(scanned[0].1.contains("dissemination.recorded"));
    if scanned.len() == 3 {
        let db_and_wal = format!("{}{}", scanned[1].1, scanned[2].1);
        assert!(db_and_wal.contains("ana@dhs.example.gov") && db_and_wal.contains("grant.revoked"));
    }
    for (what, text) in &scanned {
        for m in &markers {
            assert!(!text.contains(m), "{m} in clear in {what}");
        }
    }

    // Destroyed with the content: the submitter's history no longer has the words, only the fact.
    let page = sub.post(
        &format!("/submissions/{doomed}/disposition"),
        &[("disposition", "destroy"), ("confirm", "yes")],
    );
    assert_eq!(page.status, Status::SeeOther);
    let page = sub.get(&format!("/submissions/{doomed}"));
    assert_eq!(page.status, Status::Ok);
    assert!(!page.body.contains(markers[0]) && !page.body.contains(markers[1]));
    assert!(page.body.contains("destroyed with it"), "{}", page.body);
    let page = officer.get(&format!("/officer/submissions/{doomed}"));
    assert_eq!(page.status, Status::Ok);
    assert!(!page.body.contains(markers[1]));
    // The other submission's texts still open.
    assert!(officer
        .get(&format!("/officer/submissions/{kept}"))
        .body
        .contains(markers[2]));

    // A data-key rotation re-seals them to the new data key before the old one goes; they still read.
    let old_key = app
        .with_conn(|c| pcii_portal::models::data_key::current_of(c, &kept).unwrap())
        .unwrap();
    let ring = app.state().current_keys();
    let done = app.with_conn(|c| {
        pcii_portal::workflow::custody::rekey(
            &ring.read().unwrap(),
            c,
            &app.state().audit,
            &*app.state().blobs,
            pcii_portal::workflow::custody::Rekey::DataKeys,
            app.now() + 1,
            &mut |_| {},
        )
        .unwrap()
    });
    assert!(done.texts_sealed >= 6, "{done:?}");
    let new_key = app
        .with_conn(|c| pcii_portal::models::data_key::current_of(c, &kept).unwrap())
        .unwrap();
    assert_ne!(old_key, new_key);
    let stored: Vec<String> = app.with_conn(|c| {
        pcii_portal::db::schema::grants::table
            .select(pcii_portal::db::schema::grants::reason)
            .load(c)
            .unwrap()
    });
    assert!(stored.iter().all(|r| r.contains(&new_key)));
    let page = officer.get(&format!("/officer/submissions/{kept}"));
    for m in &markers[2..] {
        assert!(page.body.contains(m), "{m} after the data-key rotation");
    }
}

/// A store upgraded but not yet converted (`keys convert`) still holds some things in clear: a file's plaintext
/// digest and officers' texts written before sealing. Deleting the data key cannot make those unreadable, so a
/// destruction replaces them in its own transaction.
#[test]
fn a_destruction_before_keys_convert_leaves_no_legacy_digest_or_clear_text_behind() {
    use pcii_portal::db::schema::{attachments, submissions};
    let app = TestApp::new();
    let mut ann = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let file = file_bytes(20_000, 3, MARKER);
    let id = submit(&mut ann, "legacy leftovers", std::slice::from_ref(&file));
    let digest = crate::common::sha256_hex(&file);
    // What an unconverted store keeps in clear, as the older portal wrote it.
    app.with_conn(|c| {
        diesel::update(attachments::table.filter(attachments::submission_id.eq(&id)))
            .set(attachments::legacy_sha256.eq(Some(&digest)))
            .execute(c)
            .unwrap();
        diesel::update(submissions::table.find(&id))
            .set(submissions::title_sealed.eq(Some("LegacyTitleMarker the substation")))
            .execute(c)
            .unwrap();
    });
    app.advance(5);
    let res = ann.post(
        &format!("/submissions/{id}/withdraw"),
        &[("disposition", "destroy"), ("confirm", "yes")],
    );
    assert_eq!(res.status, Status::SeeOther, "{}", res.body);
    let (digests, title): (Vec<Option<String>>, Option<String>) = app.with_conn(|c| {
        (
            attachments::table
                .filter(attachments::submission_id.eq(&id))
                .select(attachments::legacy_sha256)
                .load(c)
                .unwrap(),
            submissions::table
                .find(&id)
                .select(submissions::title_sealed)
                .first(c)
                .unwrap(),
        )
    });
    assert!(digests.iter().all(Option::is_none), "{digests:?}");
    assert_eq!(
        title.as_deref(),
        Some(pcii_portal::workflow::sealed_text::DESTROYED)
    );
}

/// A destruction deletes the submission's wrapped data key in its transaction; on SQLite the write-ahead log is then
/// checkpointed and truncated, so that no copy of the key is left in the log or in the database file's old pages
/// (`secure_delete` zeroes it in the new ones).
#[test]
fn a_destroyed_submissions_wrapped_data_key_is_left_in_neither_the_database_file_nor_its_wal() {
    let app = TestApp::new();
    if !app.database_url.is_empty() {
        return; // PostgreSQL: no file of its own to scan, and nothing to checkpoint.
    }
    let mut sub = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let mut officer = app.login_as(Role::Officer, "olga@pcii.example.gov", None);
    let doomed = submit(&mut sub, "doomed", &[file_bytes(20_000, 4, "")]);
    let page = officer.post(
        &format!("/officer/submissions/{doomed}/decision"),
        &[
            ("decision", "not_validated"),
            ("reason", "Public domain"),
            ("confirm", "1"),
        ],
    );
    assert_eq!(page.status, Status::SeeOther);
    let wrapped: Vec<u8> = app.with_conn(|c| {
        data_keys::table
            .filter(data_keys::submission_id.eq(&doomed))
            .select(data_keys::wrapped)
            .first(c)
            .unwrap()
    });
    // The end of the wrapped key: ciphertext of the key itself, found nowhere else.
    let needle = &wrapped[wrapped.len() - 48..];
    let files = || database_files(&app);
    let holds = |bytes: &[u8]| bytes.windows(needle.len()).any(|w| w == needle);
    // Positive control: before, the scan finds it.
    assert!(files().iter().any(|(_, b)| holds(b)));

    let page = sub.post(
        &format!("/submissions/{doomed}/disposition"),
        &[("disposition", "destroy"), ("confirm", "yes")],
    );
    assert_eq!(page.status, Status::SeeOther);
    assert_eq!(app.status_of(&doomed), "destroyed");
    for (path, bytes) in files() {
        assert!(!holds(&bytes), "the destroyed data key is still in {path}");
    }
}

/// The database file and its write-ahead log, as `(path, bytes)`, for a scan. Copied by another process: closing a
/// descriptor of the file in this one would drop the POSIX locks this process's connections hold on it (the CLI
/// would then take itself for the last user, and remove the log and shared memory from under them).
fn database_files(app: &TestApp) -> Vec<(String, Vec<u8>)> {
    let db = app.data_dir().join("pcii.sqlite3");
    let copies = tempfile::tempdir().unwrap();
    ["", "-wal"]
        .iter()
        .map(|suffix| std::path::PathBuf::from(format!("{}{suffix}", db.display())))
        .filter(|p| p.exists())
        .map(|p| {
            let copy = copies.path().join("copy");
            let status = std::process::Command::new("cp")
                .arg(&p)
                .arg(&copy)
                .status()
                .unwrap();
            assert!(status.success());
            (p.display().to_string(), std::fs::read(&copy).unwrap())
        })
        .collect()
}

/// What a rotation replaces goes as a destruction's keys do: `keys rotate` leaves no data key wrapped to the retired
/// master identity, and `keys rotate --data-keys` no deleted data key, in the database file or its log.
#[test]
fn what_a_rotation_replaces_is_left_in_neither_the_database_file_nor_its_wal() {
    let app = TestApp::new();
    if !app.database_url.is_empty() {
        return; // PostgreSQL: no file of its own to scan, and nothing to checkpoint.
    }
    let mut sub = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let id = submit(&mut sub, "rotated", &[file_bytes(20_000, 5, "")]);
    let wrapped = || -> Vec<u8> {
        app.with_conn(|c| {
            data_keys::table
                .filter(data_keys::submission_id.eq(&id))
                .select(data_keys::wrapped)
                .first(c)
                .unwrap()
        })
    };
    let left_anywhere = |wrapped: &[u8]| {
        // The end of the wrapped key: ciphertext of the key itself, found nowhere else.
        let needle = &wrapped[wrapped.len() - 48..];
        database_files(&app)
            .into_iter()
            .filter(|(_, bytes)| bytes.windows(needle.len()).any(|w| w == needle))
            .map(|(path, _)| path)
            .collect::<Vec<_>>()
    };
    for args in [&["keys", "rotate"][..], &["keys", "rotate", "--data-keys"]] {
        let before = wrapped();
        // Positive control: the scan finds the key as it is stored now.
        assert!(!left_anywhere(&before).is_empty());
        // The command's clock is the system's: a data key is replaced when it is older than the run (by a second).
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let out = app.command().args(args).output().unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(!stdout.contains("could not be truncated"), "{stdout}");
        assert_ne!(
            wrapped(),
            before,
            "{args:?} replaced the stored key: {stdout}"
        );
        assert_eq!(
            left_anywhere(&before),
            Vec::<String>::new(),
            "after {args:?}"
        );
    }
    // And the submission still opens.
    let page = sub.get(&format!("/submissions/{id}"));
    assert_eq!(page.status, Status::Ok);
    assert!(page.body.contains("rotated"), "{}", page.body);
}

/// The data keys of many submissions at once (a dissemination log filtered by recipient opens every matching
/// release) are asked for a bounded number at a time: one statement with 40,000 ids failed on SQLite (at most
/// 32,766 values).
#[test]
fn the_data_keys_of_tens_of_thousands_of_submissions_are_read_in_bounded_statements() {
    let app = TestApp::new();
    let mut ann = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let id = submit(&mut ann, "One of many", &[]);
    let mut ids: Vec<String> = (0..40_000).map(|n| format!("{n:032x}")).collect();
    ids.push(id.clone());
    let statements = Arc::new(AtomicUsize::new(0));
    let rows = app
        .with_conn(|c| {
            c.set_instrumentation(Counter(statements.clone()));
            let rows = pcii_portal::models::data_key::of_submissions(c, &ids);
            c.set_instrumentation(Counter(Arc::new(AtomicUsize::new(0))));
            rows
        })
        .expect("read in bounded statements");
    // One statement per thousand ids: 41 for 40,001, on either backend (PostgreSQL would take them in one).
    assert_eq!(statements.load(Ordering::SeqCst), ids.len().div_ceil(1_000));
    assert_eq!(rows.len(), 1, "the one real submission's data key");
    assert_eq!(rows[0].submission_id, id);
}

/// Counts the statements a connection runs.
struct Counter(Arc<AtomicUsize>);

impl Instrumentation for Counter {
    fn on_connection_event(&mut self, event: InstrumentationEvent<'_>) {
        if let InstrumentationEvent::StartQuery { .. } = event {
            self.0.fetch_add(1, Ordering::SeqCst);
        }
    }
}

/// A command pointed at a key directory with no store in it (a wrong `keys_dir`, missing or empty) refuses, writes
/// nothing there, and changes nothing in the database: it used to make a new store on the spot, and
/// `keys rotate --data-keys` then made new current data keys wrapped to that stray identity.
#[test]
fn commands_on_a_key_directory_without_a_store_refuse_and_create_nothing() {
    let app = TestApp::new();
    let mut sub = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let id = submit(&mut sub, "kept where it is", &[file_bytes(5_000, 3, "")]);
    let data_keys_before =
        app.with_conn(|c| data_keys::table.count().get_result::<i64>(c).unwrap());
    let entries = || {
        use pcii_portal::db::schema::audit_entries;
        app.with_conn(|c| audit_entries::table.count().get_result::<i64>(c).unwrap())
    };
    let entries_before = entries();
    let elsewhere = tempfile::tempdir().unwrap();
    let missing = elsewhere.path().join("keys");
    let empty = elsewhere.path().join("empty-keys");
    std::fs::create_dir(&empty).unwrap();
    for dir in [&missing, &empty] {
        for args in [
            &["keys", "list"][..],
            &["keys", "rotate"],
            &["keys", "rotate", "--data-keys"],
            &["keys", "convert"],
            &["audit", "verify"],
            &["audit", "checkpoint"],
            &["user", "disable", "--email", "ann@acme.example"],
        ] {
            let out = app
                .command()
                .env("PCII_KEYS_DIR", dir)
                .args(args)
                .output()
                .unwrap();
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(!out.status.success(), "{args:?} in {}", dir.display());
            assert!(stderr.contains("no key store in"), "{args:?}: {stderr}");
            assert!(stderr.contains("keys init"), "{args:?}: {stderr}");
        }
    }
    assert!(!missing.exists(), "nothing was made where no store was");
    assert_eq!(std::fs::read_dir(&empty).unwrap().count(), 0);
    assert_eq!(
        app.with_conn(|c| data_keys::table.count().get_result::<i64>(c).unwrap()),
        data_keys_before
    );
    assert_eq!(entries(), entries_before);
    // `keys init` is how a new store is made on purpose.
    let out = app
        .command()
        .env("PCII_KEYS_DIR", &empty)
        .args(["keys", "init"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(empty.join("age-identities.txt").exists());
    // The real store still works, and the submission still opens.
    let out = app.command().args(["keys", "list"]).output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let page = sub.get(&format!("/submissions/{id}"));
    assert!(page.body.contains("kept where it is"), "{}", page.body);
}

/// A current data key the key ring cannot open (made by a run on another key store) is never the target of a
/// re-encryption: `keys convert` refuses, naming it, and leaves every blob where it was, still readable.
#[test]
fn nothing_is_re_encrypted_to_a_current_data_key_the_key_ring_cannot_open() {
    use pcii_portal::crypto::keys::KeyRing;
    use pcii_portal::key_store::data_keys::WrappedKey;
    let app = TestApp::new();
    let mut sub = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let id = submit(
        &mut sub,
        "not moved to a stray key",
        &[file_bytes(5_000, 3, "")],
    );
    let names = storage_names(&app, &id);
    // What a `keys rotate --data-keys` on a stray store leaves: a new current data key wrapped to its identity.
    let stray_dir = tempfile::tempdir().unwrap();
    let (stray, _) = KeyRing::load_or_generate(stray_dir.path(), &[]).unwrap();
    let stray_key = WrappedKey::generate(&stray).unwrap();
    app.with_conn(|c| {
        pcii_portal::models::data_key::insert_current(c, &stray_key.row(&id, app.now())).unwrap()
    });
    let out = app.command().args(["keys", "convert"]).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert_eq!(storage_names(&app, &id), names, "no blob was re-encrypted");
    assert!(
        stderr.contains("does not open with this key ring"),
        "{stderr}"
    );
    assert!(stderr.contains(&stray_key.key_id), "{stderr}");
    let ids: Vec<String> = app.with_conn(|c| {
        blobs::table
            .filter(blobs::submission_id.eq(&id))
            .select(blobs::id)
            .load(c)
            .unwrap()
    });
    for blob in ids {
        let keys = app.with_conn(|c| blob_keys(c, &blob).unwrap());
        let ring = app.state().keys.read().unwrap();
        assert!(open_blob(&*app.state().blobs, &ring, &keys).is_ok());
    }
}
