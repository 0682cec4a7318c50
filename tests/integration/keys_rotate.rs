//! Key custody from the CLI: `keys convert` (a store from before data keys), `keys rotate` (a new master key, every
//! data key re-wrapped, no blob touched), `keys rotate --data-keys` (fresh data keys, blobs re-encrypted). Each is
//! interrupted midway and resumed; afterwards every blob opens with the new keys alone.

use std::collections::{HashMap, HashSet};

use crate::common::{self, TestApp};
use diesel::prelude::*;

use pcii_portal::crypto::keys::KeyRing;
use pcii_portal::crypto::stream::{seal_reader, Recipients};
use pcii_portal::db::schema::{blobs, data_keys, submissions};
use pcii_portal::domain::Role;
use pcii_portal::key_store::data_keys::{blob_keys, open_blob, WrappedKey};
use pcii_portal::models::blob::{self, BlobRow};
use pcii_portal::models::data_key;
use pcii_portal::storage::fs::FsBlobStore;
use pcii_portal::storage::BlobStore;
use pcii_portal::workflow::custody::{self as rotation, Rekey, RekeyProgress};

fn cli(app: &TestApp, args: &[&str]) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_pcii-portal"))
        .args(args)
        .env("PCII_DATA_DIR", app.data_dir())
        .env("PCII_KEYS_DIR", app.keys_dir())
        .env("PCII_DATABASE_URL", &app.database_url)
        .env("PCII_CONFIG", "/nonexistent.toml")
        .output()
        .unwrap()
}

fn ok(out: &std::process::Output) -> String {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// `n` submissions of one organisation, inserted directly (the CLI under test does not care how they came).
fn submissions(app: &TestApp, n: usize) -> Vec<String> {
    let user_id = app.create_user(Role::Submitter, "sam@acme.example", Some("Acme"));
    let org = app.with_conn(|c| {
        pcii_portal::models::account::find(c, &user_id)
            .unwrap()
            .organisation_id
            .unwrap()
    });
    let now = app.now();
    (0..n)
        .map(|i| {
            let sub = format!("s{i:03}-{}", pcii_portal::db::new_id());
            app.with_conn(|c| {
                diesel::insert_into(submissions::table)
                    .values((
                        submissions::id.eq(&sub),
                        submissions::organisation_id.eq(&org),
                        submissions::submitter_id.eq(&user_id),
                        submissions::status.eq("draft"),
                        submissions::sector.eq("Energy"),
                        submissions::created_at.eq(now),
                        submissions::updated_at.eq(now),
                    ))
                    .execute(c)
                    .unwrap();
            });
            sub
        })
        .collect()
}

fn all_blobs(app: &TestApp) -> Vec<BlobRow> {
    app.with_conn(|c| {
        blobs::table
            .order(blobs::id.asc())
            .select(BlobRow::as_select())
            .load(c)
            .unwrap()
    })
}

/// Opens every blob the way the portal does (its data key unwrapped with `ring`) and compares it with what was
/// sealed; also checks each is on its submission's current data key.
fn assert_all_readable(
    app: &TestApp,
    store: &FsBlobStore,
    ring: &KeyRing,
    texts: &HashMap<String, String>,
) {
    let rows = all_blobs(app);
    assert_eq!(rows.len(), texts.len());
    for row in rows {
        let keys = app.with_conn(|c| blob_keys(c, &row.id).unwrap());
        let current = app.with_conn(|c| data_key::current_of(c, &row.submission_id).unwrap());
        assert_eq!(
            current.as_deref(),
            Some(row.key_id.as_str()),
            "blob {} not on its data key",
            row.id
        );
        assert!(
            keys.data_key.is_some(),
            "blob {} has no stored data key",
            row.id
        );
        let mut reader = open_blob(store, ring, &keys).unwrap();
        let mut back = String::new();
        std::io::Read::read_to_string(&mut reader, &mut back).unwrap();
        assert_eq!(&back, &texts[&row.id]);
    }
}

#[test]
fn a_legacy_store_converted_with_an_interruption_midway_then_rotated_opens_with_the_new_master_key_alone(
) {
    let app = TestApp::new();
    let subs = submissions(&app, 20);
    let store = FsBlobStore::open(&app.data_dir().join("blobs")).unwrap();
    let old_ring = KeyRing::load(&app.keys_dir(), &[]).unwrap();
    let old_key = old_ring.current_key_id().to_string();
    let now = app.now();
    // The layout before data keys: 200 blobs sealed straight to the master identity.
    let mut texts = HashMap::new();
    for i in 0..200 {
        let text = format!("blob {i}: ").repeat(i * 37 + 1);
        let sealed = seal_reader(&store, &Recipients::from(&old_ring), text.as_bytes()).unwrap();
        let id = format!("b{i:03}");
        app.with_conn(|c| blob::insert(c, &id, &subs[i % 20], "attachment", &sealed, now).unwrap());
        texts.insert(id, text);
    }
    assert!(ok(&cli(&app, &["keys", "list"])).contains("keys convert"));

    // `keys convert` killed after 7 submissions (a panic in its progress callback stands in for `kill -9` between
    // two steps; each step committed on its own).
    let audit = app.state().audit.clone();
    let killed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut done = 0;
        app.with_conn(|c| {
            rotation::rekey(
                &old_ring,
                c,
                &audit,
                &store,
                Rekey::Convert,
                now,
                &mut |p| {
                    if let RekeyProgress::Submission { .. } = p {
                        done += 1;
                        if done == 7 {
                            panic!("killed");
                        }
                    }
                },
            )
        })
    }));
    assert!(killed.is_err());
    let converted = app.with_conn(|c| data_key::count(c).unwrap());
    assert_eq!(converted, 7);
    // Nothing is lost: every blob still opens, converted or not.
    for row in all_blobs(&app) {
        let keys = app.with_conn(|c| blob_keys(c, &row.id).unwrap());
        let mut back = String::new();
        std::io::Read::read_to_string(&mut open_blob(&store, &old_ring, &keys).unwrap(), &mut back)
            .unwrap();
        assert_eq!(back, texts[&row.id]);
    }

    let out = ok(&cli(&app, &["keys", "convert"]));
    assert!(out.contains("13 new data key(s)"), "{out}");
    assert_all_readable(&app, &store, &old_ring, &texts);
    // Each old ciphertext went (queued, then deleted): the store holds exactly the 200 re-encrypted blobs.
    assert_eq!(store.list().unwrap().len(), 200);
    assert_eq!(
        app.with_conn(|c| pcii_portal::models::blob_deletion::count(c).unwrap()),
        0
    );
    // No blob is sealed to the master identity any more: it alone opens none of them.
    for row in all_blobs(&app) {
        assert_ne!(row.key_id, old_key);
        let r = row.blob_ref().unwrap();
        assert!(pcii_portal::crypto::stream::open_verified(
            &store,
            &r.name,
            &old_ring,
            &r.ciphertext_sha256
        )
        .is_err());
    }

    // Now the master key can be rotated and the old one retired: 20 data keys re-wrapped, no blob touched.
    let before: Vec<String> = all_blobs(&app)
        .into_iter()
        .map(|b| b.storage_name)
        .collect();
    let out = ok(&cli(&app, &["keys", "rotate"]));
    assert!(out.contains("20 data key(s) re-wrapped"), "{out}");
    assert!(out.contains(&format!("retired {old_key}")), "{out}");
    let after: Vec<String> = all_blobs(&app)
        .into_iter()
        .map(|b| b.storage_name)
        .collect();
    assert_eq!(before, after, "a master-key rotation re-encrypts no blob");
    let ring = KeyRing::load(&app.keys_dir(), &[]).unwrap();
    assert_eq!(ring.keys().len(), 1);
    assert!(!ring.contains(&old_key));
    assert_all_readable(&app, &store, &ring, &texts);
    // The old master key no longer opens any data key.
    let wrapped: Vec<Vec<u8>> =
        app.with_conn(|c| data_keys::table.select(data_keys::wrapped).load(c).unwrap());
    for w in wrapped {
        assert!(pcii_portal::crypto::data_key::DataKey::unwrap(&w, &old_ring).is_err());
    }
    let listing = ok(&cli(&app, &["keys", "list"]));
    assert!(
        listing
            .lines()
            .any(|l| l.contains("current") && l.contains(" 20 ")),
        "{listing}"
    );
}

#[test]
fn an_interrupted_master_key_rotation_resumes_and_a_data_key_rotation_reencrypts_every_blob() {
    let app = TestApp::new();
    let subs = submissions(&app, 30);
    let store = FsBlobStore::open(&app.data_dir().join("blobs")).unwrap();
    let ring = KeyRing::load(&app.keys_dir(), &[]).unwrap();
    let old_key = ring.current_key_id().to_string();
    let now = app.now();
    let mut texts = HashMap::new();
    for (i, sub) in subs.iter().enumerate() {
        let key = WrappedKey::generate(&ring).unwrap();
        app.with_conn(|c| data_key::insert_current(c, &key.row(sub, now)).unwrap());
        for j in 0..3 {
            let text = format!("{sub} file {j} ").repeat(i * 11 + j + 1);
            let sealed = seal_reader(
                &store,
                &Recipients::from_key_id(&key.key_id).unwrap(),
                text.as_bytes(),
            )
            .unwrap();
            let id = format!("b{i:03}-{j}");
            app.with_conn(|c| blob::insert(c, &id, sub, "attachment", &sealed, now).unwrap());
            texts.insert(id, text);
        }
    }

    // A rotation interrupted after the new identity was made and 12 of the 30 data keys were re-wrapped.
    let mut new_ring = KeyRing::load(&app.keys_dir(), &[]).unwrap();
    let new_key = new_ring.rotate().unwrap();
    let rows = app.with_conn(|c| data_key::page_not_wrapped_to(c, &new_key, "", 12).unwrap());
    for row in rows {
        let key = pcii_portal::crypto::data_key::DataKey::unwrap(&row.wrapped, &new_ring).unwrap();
        let w = key.wrap(&new_ring).unwrap();
        app.with_conn(|c| {
            assert!(data_key::rewrap(c, &row.key_id, &old_key, &w, &new_key).unwrap())
        });
    }
    drop(new_ring);
    let out = ok(&cli(&app, &["keys", "rotate"]));
    assert!(out.contains("resuming"), "{out}");
    assert!(out.contains("18 data key(s) re-wrapped"), "{out}");
    let ring = KeyRing::load(&app.keys_dir(), &[]).unwrap();
    assert_eq!(ring.current_key_id(), new_key);
    assert_eq!(ring.keys().len(), 1);
    assert_all_readable(&app, &store, &ring, &texts);

    // `keys rotate --data-keys`, killed after 10 submissions, then run again: it resumes (same cutoff), and every
    // submission ends with one fresh data key, its blobs re-encrypted to it, its old key deleted.
    let old_data_keys: Vec<String> =
        app.with_conn(|c| data_keys::table.select(data_keys::key_id).load(c).unwrap());
    app.advance(5);
    let audit = app.state().audit.clone();
    let killed = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        let mut done = 0;
        app.with_conn(|c| {
            rotation::rekey(
                &ring,
                c,
                &audit,
                &store,
                Rekey::DataKeys,
                app.now(),
                &mut |p| {
                    if let RekeyProgress::Submission { .. } = p {
                        done += 1;
                        if done == 10 {
                            panic!("killed");
                        }
                    }
                },
            )
        })
    }));
    assert!(killed.is_err());
    app.advance(5);
    let out = ok(&cli(&app, &["keys", "rotate", "--data-keys"]));
    assert!(out.contains("resuming"), "{out}");
    assert!(out.contains("20 new data key(s)"), "{out}");
    assert_all_readable(&app, &store, &ring, &texts);
    let now_keys: Vec<String> =
        app.with_conn(|c| data_keys::table.select(data_keys::key_id).load(c).unwrap());
    assert_eq!(now_keys.len(), 30);
    assert!(now_keys.iter().all(|k| !old_data_keys.contains(k)));
    assert_eq!(store.list().unwrap().len(), 90);
    // Done: a later run starts afresh.
    let out = ok(&cli(&app, &["keys", "rotate", "--data-keys"]));
    assert!(!out.contains("resuming"), "{out}");
}

#[test]
fn a_running_portal_wraps_to_the_new_master_key_after_a_cli_rotation_and_old_uploads_stay_readable()
{
    let app = TestApp::new();
    let mut b = app.login_as(Role::Submitter, "sam@acme.example", Some("Acme"));
    let upload = |b: &mut common::Browser<'_>, data: &[u8]| {
        let mut parts = common::complete_fields("rotation", "submit");
        parts.push(common::Part::Text("description_1", "d"));
        parts.push(common::Part::File("file_1", "f.bin", data));
        let page = b.post_multipart("/submissions", &parts);
        assert_eq!(page.status, rocket::http::Status::SeeOther, "{}", page.body);
        page.header("Location")
            .unwrap()
            .split('/')
            .nth(2)
            .unwrap()
            .to_string()
    };
    let first = common::file_bytes(100_000, 1, "");
    let id1 = upload(&mut b, &first);
    let out = cli(&app, &["keys", "rotate"]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let new_key = KeyRing::load(&app.keys_dir(), &[])
        .unwrap()
        .current_key_id()
        .to_string();
    // Read first: the running portal must pick up the new identity to open the resealed blobs.
    let page = b.get(&format!("/submissions/{id1}"));
    assert_eq!(page.status, rocket::http::Status::Ok);
    assert!(page.body.contains("rotation"));
    let id2 = upload(&mut b, &first);
    // The new upload is sealed to its own data key, wrapped to the new master identity.
    let keys: Vec<String> = app.with_conn(|c| {
        blobs::table
            .filter(blobs::submission_id.eq(&id2))
            .select(blobs::key_id)
            .load(c)
            .unwrap()
    });
    let current = app
        .with_conn(|c| data_key::current_of(c, &id2).unwrap())
        .unwrap();
    assert!(
        !keys.is_empty() && keys.iter().all(|k| *k == current && *k != new_key),
        "{keys:?}"
    );
    let master: Vec<String> = app.with_conn(|c| {
        data_keys::table
            .filter(data_keys::submission_id.eq(&id2))
            .select(data_keys::master_key_id)
            .load(c)
            .unwrap()
    });
    assert_eq!(master, vec![new_key]);
}

#[test]
fn a_populated_store_from_before_data_keys_migrates_and_converts_and_keeps_no_plaintext_digest_in_clear(
) {
    use diesel::sql_query;
    use pcii_portal::workflow::content::{AttachmentInfo, Content};

    let app = TestApp::new();
    let mut b = app.login_as(Role::Submitter, "sam@acme.example", Some("Acme"));
    let (user_id, org): (String, String) = app.with_conn(|c| {
        let u = pcii_portal::models::account::find_by_email(c, "sam@acme.example")
            .unwrap()
            .unwrap();
        (u.id.clone(), u.organisation_id.clone().unwrap())
    });
    let store = FsBlobStore::open(&app.data_dir().join("blobs")).unwrap();
    let ring = KeyRing::load(&app.keys_dir(), &[]).unwrap();
    let master = Recipients::from(&ring);
    let now = app.now();

    // The schema before data keys, and a store written the old way: every blob sealed straight to the master
    // identity, plaintext digests in clear (blob rows, attachment rows, a destruction record).
    // (Every migration that came after data keys — second factors, leases, ... — goes first, then data keys'.)
    while app.with_conn(|c| {
        sql_query("SELECT 1 FROM data_keys LIMIT 1")
            .execute(c)
            .is_ok()
    }) {
        app.with_conn(|c| pcii_portal::db::revert_last_migration(c).unwrap());
    }
    let files = [
        common::file_bytes(40_000, 1, "LEGACY"),
        common::file_bytes(9_000, 2, ""),
    ];
    let digests: Vec<String> = files.iter().map(|f| common::sha256_hex(f)).collect();
    let mut content = Content::default();
    content.title = "Legacy report".into();
    content.narrative = "Written before data keys".into();
    for i in 0..2 {
        content.attachments.insert(
            format!("att{i}"),
            AttachmentInfo {
                name: format!("old-{i}.bin"),
                description: "d".into(),
                sha256: String::new(),
            },
        );
    }
    let json = String::from_utf8(content.to_json())
        .unwrap()
        .replace(r#","sha256":"""#, "");
    assert!(!json.contains("sha256"));
    let exec = |sql: String| app.with_conn(|c| sql_query(sql).execute(c).unwrap());
    let blob_row = |id: &str,
                    sub: &str,
                    kind: &str,
                    sealed: &pcii_portal::crypto::stream::SealedBlob| {
        format!(
            "INSERT INTO blobs (id, submission_id, kind, storage_name, key_id, plaintext_sha256, \
             ciphertext_sha256, plaintext_len, ciphertext_len, created_at) VALUES ('{id}', '{sub}', '{kind}', \
             '{}', '{}', '{}', '{}', {}, {}, {now})",
            sealed.name,
            sealed.key_id,
            hex::encode(sealed.plaintext_sha256),
            hex::encode(sealed.ciphertext_sha256),
            sealed.plaintext_len,
            sealed.ciphertext_len
        )
    };
    let doc = seal_reader(&store, &master, json.as_bytes()).unwrap();
    exec(format!(
        "INSERT INTO submissions (id, tracking_number, organisation_id, submitter_id, status, sector, \
         content_blob_id, statement_version, statement_affirmed_at, certified_at, file_count, total_bytes, \
         created_at, updated_at, received_at) VALUES ('legacy', 'PCII-2026-000777', '{org}', '{user_id}', \
         'received', 'Energy', 'legacy-doc', '2026-11', {now}, {now}, 2, {}, {now}, {now}, {now})",
        files[0].len() + files[1].len()
    ));
    exec(blob_row("legacy-doc", "legacy", "content", &doc));
    for (i, f) in files.iter().enumerate() {
        let sealed = seal_reader(&store, &master, &f[..]).unwrap();
        exec(blob_row(
            &format!("legacy-f{i}"),
            "legacy",
            "attachment",
            &sealed,
        ));
        exec(format!(
            "INSERT INTO attachments (id, submission_id, blob_id, position, size_bytes, sha256, added_at) \
             VALUES ('att{i}', 'legacy', 'legacy-f{i}', {}, {}, '{}', {now})",
            i + 1,
            f.len(),
            digests[i]
        ));
    }
    // A submission destroyed back then: its file rows and its record kept the plaintext digest.
    exec(format!(
        "INSERT INTO submissions (id, tracking_number, organisation_id, submitter_id, status, sector, \
         file_count, total_bytes, created_at, updated_at) VALUES ('gone', 'PCII-2026-000778', '{org}', \
         '{user_id}', 'destroyed', 'Energy', 1, 5, {now}, {now})"
    ));
    let gone_digest = common::sha256_hex(b"destroyed long ago");
    exec(format!(
        "INSERT INTO attachments (id, submission_id, blob_id, position, size_bytes, sha256, added_at) \
         VALUES ('gone1', 'gone', NULL, 1, 5, '{gone_digest}', {now})"
    ));
    exec(format!(
        "INSERT INTO destruction_records (id, submission_id, destroyed_at, destroyed_by, reason, digests) \
         VALUES ('rec', 'gone', {now}, NULL, 'destroyed at the submitter''s request', \
         '{{\"files\":[{{\"position\":1,\"size_bytes\":5,\"sha256\":\"{gone_digest}\"}}],\
         \"ciphertexts\":[{{\"kind\":\"attachment\",\"key_id\":\"age1x\",\"plaintext_sha256\":\"{gone_digest}\",\
         \"ciphertext_sha256\":\"{}\",\"ciphertext_len\":99}}]}}')",
        "ab".repeat(32)
    ));

    // Officers' words written in clear back then: a defect list for the live one; a reason (before) and the
    // destruction's own words (at the destruction) for the destroyed one.
    exec(format!(
        "INSERT INTO submission_events (id, submission_id, at, actor_id, from_status, to_status, reason) VALUES \
         ('ev1', 'legacy', {now}, NULL, 'received', 'defective', 'LEGACY-DEFECT-MARKER'), \
         ('ev2', 'gone', {}, NULL, 'received', 'not_validated', 'LEGACY-REASON-MARKER'), \
         ('ev3', 'gone', {now}, NULL, 'not_validated', 'destroyed', 'destroyed at the submitter''s request')",
        now - 10
    ));
    exec(format!(
        "INSERT INTO notices (id, organisation_id, submission_id, created_at, message) VALUES \
         ('n1', '{org}', 'legacy', {now}, 'Cure it: LEGACY-DEFECT-MARKER'), \
         ('n2', '{org}', 'gone', {}, 'Not validated: LEGACY-REASON-MARKER')",
        now - 10
    ));

    // Upgrading: the migration moves the clear digests aside and scrubs them from the destruction record.
    app.with_conn(|c| pcii_portal::db::run_migrations(c).unwrap());
    let record: String = app.with_conn(|c| {
        pcii_portal::models::destruction::destruction_of(c, "gone")
            .unwrap()
            .unwrap()
            .digests
    });
    assert!(!record.contains(&gone_digest), "{record}");
    assert!(record.contains(&"ab".repeat(32)), "{record}");
    // The running portal still reads the legacy submission, with its digests.
    let page = b.get("/submissions/legacy/receipt");
    assert_eq!(page.status, rocket::http::Status::Ok, "{}", page.body);
    assert!(digests.iter().all(|d| page.body.contains(d.as_str())));

    let out = ok(&cli(&app, &["keys", "convert"]));
    assert!(
        out.contains("1 new data key(s), 3 blob(s) re-encrypted"),
        "{out}"
    );
    // Every digest left clear: sealed into a new content version (the live submission) or dropped (destroyed).
    let legacy: Vec<Option<String>> = app.with_conn(|c| {
        pcii_portal::db::schema::attachments::table
            .select(pcii_portal::db::schema::attachments::legacy_sha256)
            .load(c)
            .unwrap()
    });
    assert!(legacy.iter().all(Option::is_none), "{legacy:?}");
    // The officers' words: sealed for the live submission (still shown to its submitter), destroyed for the other.
    let page = b.get("/submissions/legacy");
    assert!(page.body.contains("LEGACY-DEFECT-MARKER"), "{}", page.body);
    let page = b.get("/submissions/gone");
    assert!(!page.body.contains("LEGACY-REASON-MARKER"));
    assert!(page.body.contains("destroyed with it") && page.body.contains("at the submitter"));
    let page = b.get("/submissions/legacy/receipt");
    assert_eq!(page.status, rocket::http::Status::Ok);
    assert!(digests.iter().all(|d| page.body.contains(d.as_str())));
    assert!(page.body.contains("Legacy report"));
    let atts = app.attachment_ids("legacy");
    for (att, f) in atts.iter().zip(&files) {
        let (status, body, _) = b.get_bytes(&format!("/submissions/legacy/files/{att}"));
        assert_eq!(status, rocket::http::Status::Ok);
        assert_eq!(body.as_deref(), Some(&f[..]));
    }
    // No blob is on the master key any more, so `keys rotate` can retire it.
    let out = ok(&cli(&app, &["keys", "rotate"]));
    assert!(out.contains("retired"), "{out}");
    // And the database keeps no plaintext digest of any file, live or destroyed.
    app.with_conn(|c| {
        sql_query("PRAGMA wal_checkpoint(TRUNCATE)").execute(c).ok();
    });
    if app.database_url.is_empty() {
        let db_dir = app.data_dir();
        assert!(db_dir.join("pcii.sqlite3").is_file());
        // A positive control: the scan finds what is still there (an attachment's ciphertext digest).
        let stored: String = app.with_conn(|c| {
            blobs::table
                .filter(blobs::kind.eq("attachment"))
                .select(blobs::ciphertext_sha256)
                .first(c)
                .unwrap()
        });
        let db_text = String::from_utf8_lossy(&std::fs::read(db_dir.join("pcii.sqlite3")).unwrap())
            .into_owned();
        assert!(db_text.contains(&stored));
        for entry in std::fs::read_dir(&db_dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_file() {
                let bytes = std::fs::read(&path).unwrap();
                let text = String::from_utf8_lossy(&bytes);
                for d in digests.iter().chain([&gone_digest]) {
                    assert!(
                        !text.contains(d.as_str()),
                        "{} holds a plaintext digest",
                        path.display()
                    );
                }
                for m in ["LEGACY-DEFECT-MARKER", "LEGACY-REASON-MARKER"] {
                    assert!(!text.contains(m), "{} holds {m}", path.display());
                }
            }
        }
    }
}

/// Runs the CLI and kills it (SIGKILL) once `reached()` holds, looked at every millisecond; true if the run had
/// finished first. The kill waits on the run's own progress, not on a clock, so that it lands midway on a fast
/// machine as on a slow one.
fn cli_killed_when(app: &TestApp, args: &[&str], mut reached: impl FnMut() -> bool) -> bool {
    let mut child = app
        .command()
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let give_up = std::time::Instant::now() + std::time::Duration::from_secs(120);
    let finished = loop {
        if child.try_wait().unwrap().is_some() {
            break Some(true);
        }
        if reached() {
            break Some(false);
        }
        if std::time::Instant::now() > give_up {
            break None;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    };
    let _ = child.kill();
    let _ = child.wait();
    finished.unwrap_or_else(|| panic!("{args:?} neither finished nor got there in two minutes"))
}

/// Runs the CLI and kills it (SIGKILL) after `ms` milliseconds; true if it had already finished.
fn cli_killed_after(app: &TestApp, args: &[&str], ms: u64) -> bool {
    let start = std::time::Instant::now();
    cli_killed_when(app, args, || {
        start.elapsed() >= std::time::Duration::from_millis(ms)
    })
}

#[test]
fn kill_9_at_any_moment_of_a_data_key_rotation_or_a_master_key_rotation_loses_nothing() {
    let app = TestApp::new();
    let subs = submissions(&app, 40);
    let store = FsBlobStore::open(&app.data_dir().join("blobs")).unwrap();
    let ring = KeyRing::load(&app.keys_dir(), &[]).unwrap();
    let now = app.now();
    let mut texts = HashMap::new();
    for (i, sub) in subs.iter().enumerate() {
        let key = WrappedKey::generate(&ring).unwrap();
        app.with_conn(|c| data_key::insert_current(c, &key.row(sub, now)).unwrap());
        for j in 0..4 {
            let text = format!("{sub} file {j} ").repeat(300 + i * 10);
            let sealed = seal_reader(
                &store,
                &Recipients::from_key_id(&key.key_id).unwrap(),
                text.as_bytes(),
            )
            .unwrap();
            let id = format!("b{i:03}-{j}");
            app.with_conn(|c| blob::insert(c, &id, sub, "attachment", &sealed, now).unwrap());
            texts.insert(id, text);
        }
    }
    // Every blob opens, with the data key its row names, whatever the state a kill left.
    let all_open = |ring: &KeyRing| {
        for row in all_blobs(&app) {
            let keys = app.with_conn(|c| blob_keys(c, &row.id).unwrap());
            let mut back = String::new();
            std::io::Read::read_to_string(&mut open_blob(&store, ring, &keys).unwrap(), &mut back)
                .unwrap();
            assert_eq!(back, texts[&row.id]);
        }
    };
    // Killed ever later in the work until a run completes: first as it starts, then once 1, 20, ... of the 160
    // blobs have moved to fresh data keys (counted from the copies the run began with).
    let first_copies: HashSet<String> = all_blobs(&app)
        .into_iter()
        .map(|row| row.storage_name)
        .collect();
    let moved = || {
        all_blobs(&app)
            .iter()
            .filter(|row| !first_copies.contains(&row.storage_name))
            .count()
    };
    let args = ["keys", "rotate", "--data-keys"];
    cli_killed_after(&app, &args, 5);
    all_open(&ring);
    let mut killed_midway = 0;
    let mut finished = false;
    for target in [1, 20, 60, 100, 140, 159] {
        app.advance(2);
        finished = cli_killed_when(&app, &args, || moved() >= target);
        all_open(&ring);
        if finished {
            break;
        }
        if (1..160).contains(&moved()) {
            killed_midway += 1;
        }
    }
    assert!(
        killed_midway > 0,
        "no run was killed with part of its blobs moved"
    );
    if !finished {
        let out = ok(&cli(&app, &["keys", "rotate", "--data-keys"]));
        assert!(out.contains("resuming"), "{out}");
    }
    all_open(&ring);
    assert_all_readable(&app, &store, &ring, &texts);
    // Old copies were queued in the switching transactions; what a kill left queued the sweep finishes.
    app.restart(|f| f);
    assert_eq!(
        app.with_conn(|c| pcii_portal::models::blob_deletion::count(c).unwrap()),
        0
    );

    // The master key: killed during the re-wrap, then resumed; the old identity is retired only at the end.
    for ms in [30, 80, 150, 300] {
        if cli_killed_after(&app, &["keys", "rotate"], ms) {
            break;
        }
        let ring = KeyRing::load(&app.keys_dir(), &[]).unwrap();
        all_open(&ring);
    }
    ok(&cli(&app, &["keys", "rotate"]));
    let ring = KeyRing::load(&app.keys_dir(), &[]).unwrap();
    all_open(&ring);
}

/// A new submission's data key is made, and wrapped to the master identity of the moment, when its upload begins. A
/// `keys rotate` that runs to completion during the upload re-wraps only the keys already stored, so it retires that
/// identity. Stored afterwards, the key is wrapped again to the new identity: the submission opens, and the next
/// rotation goes through. (Driven through the library: the local client cannot hold an upload open across a CLI run.)
#[test]
fn a_data_key_made_before_a_rotation_and_stored_after_it_is_wrapped_to_the_new_master_key() {
    use pcii_portal::workflow::content::FormFields;
    use pcii_portal::workflow::intake::{
        self, FileSlot, IncomingFile, Intent, SaveRequest, SaveResult, Submitter,
    };
    let app = TestApp::new();
    let mut b = app.login_as(Role::Submitter, "sam@acme.example", Some("Acme"));
    let user_id = app.user_id("sam@acme.example");
    let who = Submitter {
        user_id: user_id.clone(),
        organisation_id: app.organisation_id("Acme").unwrap(),
    };
    let actor = pcii_portal::audit::log::Actor {
        user_id: Some(user_id),
        role: Some("submitter".into()),
        client_addr: None,
        request_id: None,
        session: None,
    };
    let state = app.state();
    let rt = rocket::tokio::runtime::Runtime::new().unwrap();
    let old_master = KeyRing::load(&app.keys_dir(), &[])
        .unwrap()
        .current_key_id()
        .to_string();

    // The upload begins: its data key is made, wrapped to the current master identity, and the file sealed to it.
    let allowance = rt.block_on(intake::allowance(state, &who, None)).unwrap();
    assert_eq!(
        allowance.sealing.new.as_ref().unwrap().master_key_id,
        old_master
    );
    let data = common::file_bytes(200_000, 7, "");
    let sealed = seal_reader(&*state.blobs, &allowance.sealing.recipients, &data[..]).unwrap();

    // Meanwhile a rotation runs to completion: no stored key is wrapped to the old identity, so it is retired.
    let out = ok(&cli(&app, &["keys", "rotate"]));
    let ring = KeyRing::load(&app.keys_dir(), &[]).unwrap();
    assert!(!ring.contains(&old_master), "{out}");

    // The upload ends and is saved.
    let mut fields = HashMap::new();
    for part in common::complete_fields("made before the rotation", "submit") {
        if let common::Part::Text(k, v) = part {
            fields.insert(k.to_string(), v.to_string());
        }
    }
    fields.insert("description_1".into(), "d".into());
    let saved = rt
        .block_on(intake::save(
            state,
            &who,
            &actor,
            SaveRequest {
                submission_id: None,
                fields: FormFields(fields),
                files: vec![IncomingFile {
                    slot: FileSlot::Numbered(1),
                    file_name: "f.bin".into(),
                    sealed,
                }],
                remove: Vec::new(),
                intent: Intent::Submit,
                checked_version: None,
                shown_version: None,
                form_token: None,
                sealing: allowance.sealing,
            },
        ))
        .unwrap();
    let SaveResult::Saved { id, .. } = saved else {
        panic!("not saved: {saved:?}");
    };

    // The file downloads byte-identical: its data key is wrapped to the new master identity.
    let att = app.attachment_ids(&id);
    assert_eq!(att.len(), 1);
    let download = |b: &mut common::Browser<'_>| {
        let (status, body, _) = b.get_bytes(&format!("/submissions/{id}/files/{}", att[0]));
        assert_eq!(status, rocket::http::Status::Ok);
        assert!(body.as_deref() == Some(&data[..]), "not byte-identical");
    };
    download(&mut b);
    let masters: Vec<String> = app.with_conn(|c| {
        data_keys::table
            .filter(data_keys::submission_id.eq(&id))
            .select(data_keys::master_key_id)
            .load(c)
            .unwrap()
    });
    assert_eq!(masters, vec![ring.current_key_id().to_string()]);
    // The next rotation re-wraps it and retires the identity it replaces; the file still opens.
    let out = ok(&cli(&app, &["keys", "rotate"]));
    assert!(out.contains("1 data key(s) re-wrapped"), "{out}");
    let after = KeyRing::load(&app.keys_dir(), &[]).unwrap();
    assert_eq!(after.keys().len(), 1);
    download(&mut b);
}

/// An authenticator's setup sealed by a server whose ring was read before a `keys rotate` that retired that ring's
/// identity is sealed to the new master identity (read again from disk under the chain-head lock), not to the retired
/// one: before, its setup page failed for its 15 minutes and no rotation could re-seal it.
#[test]
fn an_authenticator_setup_begun_across_a_rotation_is_sealed_to_the_new_master_key() {
    use pcii_portal::db::schema::totp_enrolments;
    let app = TestApp::new();
    app.create_user(Role::Submitter, "sam@acme.example", Some("Acme"));
    let user = app
        .with_conn(|c| pcii_portal::models::account::find_by_email(c, "sam@acme.example"))
        .unwrap()
        .unwrap();
    let old_master = KeyRing::load(&app.keys_dir(), &[])
        .unwrap()
        .current_key_id()
        .to_string();
    // The server holds its ring as read at start; a rotation runs to completion meanwhile (nothing sealed to the old
    // identity, so it is retired).
    let out = ok(&cli(&app, &["keys", "rotate"]));
    let ring = KeyRing::load(&app.keys_dir(), &[]).unwrap();
    assert!(!ring.contains(&old_master), "{out}");
    assert!(app.state().keys.read().unwrap().contains(&old_master));

    app.with_conn(|c| {
        pcii_portal::auth::second_factor::begin_totp(
            c,
            &app.state().keys,
            &user,
            "a session's hash",
            app.now(),
        )
    })
    .unwrap();
    let sealed_to: Vec<String> = app.with_conn(|c| {
        totp_enrolments::table
            .select(totp_enrolments::master_key_id)
            .load(c)
            .unwrap()
    });
    assert_eq!(sealed_to, vec![ring.current_key_id().to_string()]);
}

/// A data key the key ring cannot open (wrapped to an identity no longer in `keys/`, or damaged) is reported and left
/// as it is; the rotation re-wraps every other key and retires the old identity, and says it did not finish (exit
/// status). Before, the first such key stopped every rotation, for good.
#[test]
fn a_data_key_no_identity_opens_is_reported_and_the_rotation_carries_on_with_the_others() {
    let app = TestApp::new();
    let subs = submissions(&app, 4);
    let ring = KeyRing::load(&app.keys_dir(), &[]).unwrap();
    let old_master = ring.current_key_id().to_string();
    let elsewhere = tempfile::tempdir().unwrap();
    let (stranger, _) = KeyRing::load_or_generate(elsewhere.path(), &[]).unwrap();
    let now = app.now();
    let lost = WrappedKey::generate(&stranger).unwrap();
    app.with_conn(|c| data_key::insert_current(c, &lost.row(&subs[0], now)).unwrap());
    for sub in &subs[1..] {
        let key = WrappedKey::generate(&ring).unwrap();
        app.with_conn(|c| data_key::insert_current(c, &key.row(sub, now)).unwrap());
    }

    let out = cli(&app, &["keys", "rotate"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stdout}");
    assert!(
        stdout.contains(&format!("left data key {}", lost.key_id)),
        "{stdout}{stderr}"
    );
    assert!(
        stderr.contains("1 data key(s) could not be re-wrapped"),
        "{stderr}"
    );
    let ring = KeyRing::load(&app.keys_dir(), &[]).unwrap();
    assert_eq!(ring.keys().len(), 1, "the old identity retired: {stdout}");
    assert_ne!(ring.current_key_id(), old_master);
    let masters: Vec<(String, String)> = app.with_conn(|c| {
        data_keys::table
            .select((data_keys::key_id, data_keys::master_key_id))
            .load(c)
            .unwrap()
    });
    for (key_id, master) in &masters {
        let expected = if *key_id == lost.key_id {
            stranger.current_key_id()
        } else {
            ring.current_key_id()
        };
        assert_eq!(master, expected, "{key_id}");
    }
    // The next rotation goes through the same way.
    let out = cli(&app, &["keys", "rotate"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("3 data key(s) re-wrapped"), "{stdout}");
}

/// `keys rotate --data-keys` killed after it gave a submission its new key and moved every blob to it, but before
/// it moved the officers' texts and deleted the old key: the run that resumes must still finish that submission.
/// Neither of the resumed run's first two passes sees it (its current key is not older than the run, no blob is off
/// it), so the old key (the one a rotation of data keys is there to retire) would stay, with the run saying
/// "finished".
#[test]
fn a_data_key_rotation_killed_between_moving_the_blobs_and_deleting_the_old_key_finishes_on_resume()
{
    let app = TestApp::new();
    let sub = submissions(&app, 1).remove(0);
    let store = FsBlobStore::open(&app.data_dir().join("blobs")).unwrap();
    let ring = KeyRing::load(&app.keys_dir(), &[]).unwrap();
    let t0 = app.now();
    let old = WrappedKey::generate(&ring).unwrap();
    app.with_conn(|c| data_key::insert_current(c, &old.row(&sub, t0)).unwrap());
    let text = "the file of the interrupted rotation ".repeat(100);
    let sealed = seal_reader(
        &store,
        &Recipients::from_key_id(&old.key_id).unwrap(),
        text.as_bytes(),
    )
    .unwrap();
    app.with_conn(|c| blob::insert(c, "b-1", &sub, "attachment", &sealed, t0).unwrap());

    // What the killed run left: its mark (its start, T), the submission's new key made at T and current, the blob
    // re-encrypted to it and switched; the old key still stored.
    app.advance(5);
    let t = app.now();
    app.with_conn(|c| {
        pcii_portal::models::settings::set(c, "data_key_rotation_started_at", &t.to_string())
            .unwrap()
    });
    let new = WrappedKey::generate(&ring).unwrap();
    app.with_conn(|c| data_key::insert_current(c, &new.row(&sub, t)).unwrap());
    let resealed = seal_reader(
        &store,
        &Recipients::from_key_id(&new.key_id).unwrap(),
        text.as_bytes(),
    )
    .unwrap();
    app.with_conn(|c| assert!(blob::switch_ciphertext(c, "b-1", &sealed.name, &resealed).unwrap()));
    store.delete(&sealed.name).unwrap();
    let keys_of = |app: &TestApp| -> Vec<String> {
        app.with_conn(|c| {
            data_keys::table
                .filter(data_keys::submission_id.eq(&sub))
                .select(data_keys::key_id)
                .load(c)
                .unwrap()
        })
    };
    assert_eq!(keys_of(&app).len(), 2);

    app.advance(5);
    let out = ok(&cli(&app, &["keys", "rotate", "--data-keys"]));
    assert!(out.contains("resuming"), "{out}");
    assert_eq!(
        keys_of(&app),
        vec![new.key_id.clone()],
        "the old data key survived the resumed run: {out}"
    );
    let texts = HashMap::from([("b-1".to_string(), text)]);
    assert_all_readable(&app, &store, &ring, &texts);
}
