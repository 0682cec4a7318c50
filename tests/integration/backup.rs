//! `pcii-portal backup --to DIR`, through the binary beside a running portal: a snapshot of the database and the
//! stored files it names, each checked; nothing in it readable without the keys; a portal started on a restored
//! copy (with the keys, kept apart) opens the submission as before; audited; never into a directory in use.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use rocket::http::Status;

use crate::common::{complete_fields, files_under, Part, TestApp};
use pcii_portal::domain::Role;

const NARRATIVE: &str = "BackupNarrativeMarker4417 the relay settings";
const FILE: &[u8] = b"BackupFileMarker9023 one-line diagram of the substation";

/// `backup --check DIR`: needs neither the keys nor the portal's settings.
fn check(dir: &Path) -> std::process::Output {
    std::process::Command::new(env!("CARGO_BIN_EXE_pcii-portal"))
        .args(["backup", "--check"])
        .arg(dir)
        .env("PCII_CONFIG", "/nonexistent.toml")
        .env("PCII_DATA_DIR", dir.join("no-data-here"))
        .env("PCII_KEYS_DIR", dir.join("no-keys-here"))
        .env("PCII_LOG", "warn")
        .output()
        .unwrap()
}

fn backup(app: &TestApp, to: &Path) -> std::process::Output {
    app.command()
        .args(["backup", "--to"])
        .arg(to)
        .output()
        .unwrap()
}

#[test]
fn a_backup_taken_beside_a_running_portal_discloses_nothing_and_restores_with_the_keys() {
    let app = TestApp::new();
    let mut ann = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let mut parts = complete_fields(NARRATIVE, "submit");
    parts.push(Part::File("file_1", "diagram.pdf", FILE));
    parts.push(Part::Text("description_1", "diagram"));
    let id = crate::common::submission_id(&ann.post_multipart("/submissions", &parts));

    let tmp = tempfile::tempdir().unwrap();
    let to = tmp.path().join("backup");
    let out = backup(&app, &to);
    let (stdout, stderr) = (
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr),
    );
    if app.database_url.starts_with("postgres") {
        // pg_dump is PostgreSQL's tool for a consistent copy: the command says so and writes nothing.
        assert!(!out.status.success());
        assert!(stderr.contains("pg_dump"), "{stderr}");
        assert!(!to.exists() || std::fs::read_dir(&to).unwrap().next().is_none());
        return;
    }
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(stdout.contains("keys/ is not in the backup"), "{stdout}");
    assert_eq!(app.audit_count("backup.made"), 1);

    // Private, and nothing in it readable: no marker of the narrative or the file, no key.
    assert_eq!(
        std::fs::metadata(&to).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let files = files_under(&to);
    let blobs: Vec<&PathBuf> = files
        .iter()
        .filter(|p| p.parent().unwrap().ends_with("blobs"))
        .collect();
    // The content document and the attachment, at least.
    assert!(blobs.len() >= 2, "{files:?}");
    assert!(
        stdout.contains(&format!("{} stored file(s)", blobs.len())),
        "{stdout}"
    );
    for f in &files {
        assert_eq!(
            std::fs::metadata(f).unwrap().permissions().mode() & 0o777,
            0o600,
            "{}",
            f.display()
        );
        let bytes = std::fs::read(f).unwrap();
        for marker in [
            &b"BackupNarrativeMarker4417"[..],
            b"BackupFileMarker9023",
            concat!("AGE-SECRET-", "KEY-").as_bytes(),
        ] {
            assert!(
                !bytes.windows(marker.len()).any(|w| w == marker),
                "{} holds {}",
                f.display(),
                String::from_utf8_lossy(marker)
            );
        }
    }

    // Written last, naming the database by its digest.
    let manifest: serde_json::Value =
        serde_json::from_slice(&std::fs::read(to.join("manifest.json")).unwrap()).unwrap();
    let db_bytes = std::fs::read(to.join("pcii.sqlite3")).unwrap();
    assert_eq!(
        manifest["database"]["sha256"],
        hex::encode(<sha2::Sha256 as sha2::Digest>::digest(&db_bytes))
    );
    assert_eq!(manifest["blobs"]["files"], blobs.len());
    assert_eq!(manifest["keys"], "not included");

    // It checks out: finished, its database the one the manifest names, every file matching its digest.
    let checked = check(&to);
    let out = String::from_utf8_lossy(&checked.stdout);
    assert!(
        checked.status.success(),
        "{out}{}",
        String::from_utf8_lossy(&checked.stderr)
    );
    assert!(out.contains("holds together"), "{out}");
    assert!(
        out.contains(&format!("{} stored file(s)", blobs.len())),
        "{out}"
    );
    assert!(!to.join("no-keys-here").exists() && !to.join("no-data-here").exists());

    // Never into a directory that holds anything (not even its own last backup).
    let again = backup(&app, &to);
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("not empty"),
        "{}",
        String::from_utf8_lossy(&again.stderr)
    );

    // Restored into a fresh data directory, with the keys (kept apart): the submission opens as before.
    let restored = tmp.path().join("restored");
    std::fs::create_dir_all(restored.join("blobs")).unwrap();
    std::fs::copy(to.join("pcii.sqlite3"), restored.join("pcii.sqlite3")).unwrap();
    for b in &blobs {
        std::fs::copy(b, restored.join("blobs").join(b.file_name().unwrap())).unwrap();
    }
    let keys = app.keys_dir();
    let copy = TestApp::with(|f| {
        f.merge(("data_dir", &restored))
            .merge(("keys_dir", &keys))
            .merge(("database_url", ""))
            .merge(("blob_store", ""))
    });
    let mut ann = copy.browser();
    assert_eq!(
        ann.login("ann@acme.example", crate::common::PASSWORD),
        Status::SeeOther
    );
    let page = ann.get(&format!("/submissions/{id}"));
    assert_eq!(page.status, Status::Ok, "{}", page.body);
    assert!(
        page.body.contains("BackupNarrativeMarker4417"),
        "{}",
        page.body
    );
    assert!(
        copy.audit_count("backup.made") == 0,
        "the snapshot predates its own entry"
    );
    let verify = std::process::Command::new(env!("CARGO_BIN_EXE_pcii-portal"))
        .args(["audit", "verify", "--full"])
        .env("PCII_CONFIG", "/nonexistent.toml")
        .env("PCII_DATA_DIR", &restored)
        .env("PCII_KEYS_DIR", &keys)
        .env("PCII_DATABASE_URL", "")
        .env("PCII_LOG", "warn")
        .output()
        .unwrap();
    assert!(
        verify.status.success(),
        "{}{}",
        String::from_utf8_lossy(&verify.stdout),
        String::from_utf8_lossy(&verify.stderr)
    );

    // A damaged file is named; a backup without its manifest did not finish.
    let mut bytes = std::fs::read(blobs[0]).unwrap();
    let last = bytes.len() - 1;
    bytes[last] ^= 1;
    std::fs::write(blobs[0], &bytes).unwrap();
    let damaged = check(&to);
    let err = String::from_utf8_lossy(&damaged.stderr);
    assert!(!damaged.status.success());
    let name = blobs[0].file_name().unwrap().to_string_lossy();
    assert!(
        err.contains(&*name) && err.contains("damaged or replaced"),
        "{err}"
    );
    bytes[last] ^= 1;
    std::fs::write(blobs[0], &bytes).unwrap();
    assert!(check(&to).status.success());
    std::fs::remove_file(blobs[1]).unwrap();
    let missing = check(&to);
    assert!(!missing.status.success());
    assert!(
        String::from_utf8_lossy(&missing.stderr)
            .contains("1 stored file(s) the database names are missing"),
        "{}",
        String::from_utf8_lossy(&missing.stderr)
    );
    std::fs::remove_file(to.join("manifest.json")).unwrap();
    let unfinished = check(&to);
    assert!(!unfinished.status.success());
    assert!(
        String::from_utf8_lossy(&unfinished.stderr).contains("did not finish"),
        "{}",
        String::from_utf8_lossy(&unfinished.stderr)
    );
}

/// A backup holds deletions from before its snapshot until its last copy: what the portal makes obsolete meanwhile
/// (here a draft's replaced content version) stays in the store, queued, and the sweep after the hold deletes it.
/// So a file the snapshot names that the store does not have was lost, not destroyed: the backup stops and names
/// it, writes no manifest, and gives the hold up.
#[test]
fn deletions_wait_while_a_backup_holds_them_and_a_file_lost_from_the_store_stops_the_backup() {
    use pcii_portal::models::{blob_deletion, lease};
    use pcii_portal::workflow::blobs::BACKUP_HOLD;
    let app = TestApp::new();
    let sqlite = !app.database_url.starts_with("postgres");
    let tmp = tempfile::tempdir().unwrap();
    let mut ann = app.login_as(Role::Submitter, "ann@acme.example", Some("Acme"));
    let draft = crate::common::submission_id(
        &ann.post_multipart("/submissions", &complete_fields("First words", "save")),
    );
    let before = app.blob_files();

    // As `backup --to` takes it.
    assert!(app.with_conn(|c| lease::acquire(c, BACKUP_HOLD, "a-backup", 300).unwrap()));
    let page = ann.post_multipart(
        &format!("/submissions/{draft}"),
        &complete_fields("Second words", "save"),
    );
    assert_eq!(page.status, Status::SeeOther, "{}", page.body);
    let during = app.blob_files();
    assert_eq!(during.len(), before.len() + 1, "the new version is stored");
    assert!(
        before.iter().all(|name| during.contains(name)),
        "the replaced version is kept while the hold lasts"
    );
    assert_eq!(app.with_conn(|c| blob_deletion::count(c).unwrap()), 1);
    // The operator's overview says why they wait.
    let status = app.command().arg("status").output().unwrap();
    assert!(
        String::from_utf8_lossy(&status.stdout)
            .contains("a backup is copying the blob store: deletions wait for it"),
        "{}",
        String::from_utf8_lossy(&status.stdout)
    );
    // A sweep meanwhile (here the one at a restart) leaves it too.
    app.restart(|f| f);
    assert_eq!(app.blob_files(), during);
    if sqlite {
        // One backup at a time: another meanwhile is refused and writes nothing.
        let second = tmp.path().join("second");
        let out = backup(&app, &second);
        assert!(!out.status.success());
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("another backup is copying"), "{err}");
        assert!(!second.join("manifest.json").exists());
    }

    // The hold ends: the next sweep deletes what waited.
    assert!(app.with_conn(|c| lease::release(c, BACKUP_HOLD, "a-backup").unwrap()));
    app.restart(|f| f);
    assert_eq!(app.blob_files().len(), before.len());
    assert_eq!(app.with_conn(|c| blob_deletion::count(c).unwrap()), 0);
    if !sqlite {
        return; // `backup --to` is SQLite's (pg_dump is PostgreSQL's): see the test above
    }

    // The store loses a file the database names: the backup stops with its name.
    let lost = app.blob_files().remove(0);
    app.state().blobs.delete(&lost).unwrap();
    let to = tmp.path().join("backup");
    let out = backup(&app, &to);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains(&lost) && err.contains("lost from the store"),
        "{err}"
    );
    assert!(!to.join("manifest.json").exists());
    // Nothing of it is left: its database snapshot holds every wrapped data key.
    assert_eq!(std::fs::read_dir(&to).unwrap().count(), 0);
    assert_eq!(app.audit_count("backup.made"), 0);
    assert_eq!(
        app.with_conn(|c| lease::find(c, BACKUP_HOLD).unwrap()),
        None,
        "the failed backup gave its hold up"
    );
}
