//! `pcii-portal backup --to DIR`: a consistent copy of what the portal stores, taken while it runs, that discloses
//! nothing without the keys.
//!
//! - The database (SQLite) is copied by `VACUUM INTO`: one read transaction, so the copy is a snapshot of one
//!   moment, made beside running instances. It holds no protected text in clear (content, officers' words and
//!   data keys are sealed), only ciphertext and the wrapped data keys.
//! - The blobs the snapshot names are then copied from the blob store (directory or S3, through the same trait),
//!   each checked against the SHA-256 of its ciphertext recorded in the snapshot as it is copied: a backup holds
//!   exactly the files its database refers to, each verified. Before the snapshot the backup takes a hold on
//!   deletions ([`BACKUP_HOLD`]): a file the portal makes obsolete meanwhile (a destruction, a replaced draft, a
//!   re-encryption) stays queued until the copy is done, so every file the snapshot names is there to copy, and one
//!   that is not was lost from the store: the backup stops and names it.
//! - `manifest.json` is written last (the database's SHA-256, the counts): a backup without it did not finish.
//! - `keys/` is not copied: it must be kept apart (with `master_key_protection = "file"` it holds the master key in
//!   clear, and a backup beside it would open). Every file is written 0600 in a 0700 directory, then fsynced.
//!
//! PostgreSQL has its own tool for a consistent copy (`pg_dump`); on PostgreSQL the command refuses and says so.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::audit::log::{Actor, AuditLog, Event, Outcome};
use crate::db::{Db, DbConn};
use crate::models::lease;
use crate::storage::BlobStore;
use crate::workflow::blobs::{lease_holder, BACKUP_HOLD};

/// How long the hold on deletions lasts unless renewed: a backup renews it every [`HOLD_RENEW_SECS`] while it copies
/// (however long one file takes); one killed midway stops holding deletions within this time.
const HOLD_SECS: i64 = 300;
const HOLD_RENEW_SECS: u64 = 60;

/// The database's file name in a backup (as under `data/`).
pub const DATABASE_FILE: &str = "pcii.sqlite3";
/// The blobs' directory in a backup (as under `data/`).
pub const BLOB_DIR: &str = "blobs";
/// Written last: what the backup holds, with the database's SHA-256.
pub const MANIFEST_FILE: &str = "manifest.json";

/// What a backup holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Made {
    pub database: PathBuf,
    /// Blobs copied and checked.
    pub blobs: usize,
    /// Their bytes (ciphertext).
    pub bytes: u64,
}

#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    #[error(
        "the database is PostgreSQL: back it up with pg_dump (a consistent snapshot), and the blob store with \
         its own means (see the README, \"Backups\")"
    )]
    Postgres,
    #[error("{}: {why}", path.display())]
    Target { path: PathBuf, why: String },
    #[error("{}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: io::Error,
    },
    #[error("copying the database: {0}")]
    Database(String),
    #[error("blob {name}: {why}")]
    Blob { name: String, why: String },
    #[error(
        "another backup is copying the blob store now (it holds deletions for up to {HOLD_SECS} s at a time); \
         take this one after it"
    )]
    Busy,
    #[error("the hold on deletions: {0}")]
    Hold(String),
    #[error(transparent)]
    App(#[from] crate::error::AppError),
}

fn io_at(path: &Path) -> impl FnOnce(io::Error) -> BackupError + '_ {
    move |source| BackupError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Makes a backup in `to` (created 0700; refused unless missing or empty) and records it in the audit log
/// (`backup.made`, by the operator).
pub fn make(
    db: &Db,
    store: &dyn BlobStore,
    audit: &AuditLog,
    to: &Path,
    now: i64,
) -> Result<Made, BackupError> {
    let mut conn = db.get()?;
    if !matches!(&*conn, DbConn::Sqlite(_)) {
        return Err(BackupError::Postgres);
    }
    prepare(to)?;
    let hold_error = |e: diesel::result::Error| BackupError::Hold(e.to_string());
    if !lease::acquire(&mut conn, BACKUP_HOLD, lease_holder(), HOLD_SECS).map_err(hold_error)? {
        return Err(BackupError::Busy);
    }
    let copied = std::thread::scope(|scope| {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        scope.spawn(move || keep_holding(db, &stopped));
        let copied = copy_everything(&mut conn, store, to, now);
        drop(stop);
        copied
    });
    // Given up however the copy ended (a kill leaves it to lapse).
    let released = lease::release(&mut conn, BACKUP_HOLD, lease_holder());
    let made = copied.inspect_err(|_| discard(to))?;
    released.map_err(hold_error)?;

    let event = Event::new("backup.made", Outcome::Success).reason(format!(
        "database snapshot and {} stored file(s), {} bytes of ciphertext, each checked; keys not included",
        made.blobs, made.bytes
    ));
    audit.record(&mut conn, &Actor::cli(), event)?;
    Ok(made)
}

/// Renews the hold every [`HOLD_RENEW_SECS`] until `stopped` says the copy ended. A renewal that fails is logged
/// and tried again at the next; were the hold to lapse meanwhile, a file deleted in that time stops the copy as
/// missing, so a backup never finishes without a file its snapshot names.
fn keep_holding(db: &Db, stopped: &std::sync::mpsc::Receiver<()>) {
    use std::sync::mpsc::RecvTimeoutError;
    let every = std::time::Duration::from_secs(HOLD_RENEW_SECS);
    while let Err(RecvTimeoutError::Timeout) = stopped.recv_timeout(every) {
        let renewed = db.get().map_err(|e| e.to_string()).and_then(|mut c| {
            lease::acquire(&mut c, BACKUP_HOLD, lease_holder(), HOLD_SECS)
                .map_err(|e| e.to_string())
        });
        match renewed {
            Ok(true) => {}
            Ok(false) => {
                tracing::warn!("the backup's hold on deletions was taken by another backup")
            }
            Err(e) => tracing::warn!(error = %e, "renewing the backup's hold on deletions failed"),
        }
    }
}

/// The snapshot, then every file it names, then the manifest (under the hold on deletions).
fn copy_everything(
    conn: &mut DbConn,
    store: &dyn BlobStore,
    to: &Path,
    now: i64,
) -> Result<Made, BackupError> {
    let database = to.join(DATABASE_FILE);
    snapshot(conn, &database)?;

    let blob_dir = to.join(BLOB_DIR);
    fs::DirBuilder::new()
        .mode(0o700)
        .create(&blob_dir)
        .map_err(io_at(&blob_dir))?;
    let mut made = Made {
        database: database.clone(),
        blobs: 0,
        bytes: 0,
    };
    for (name, sha256) in stored_blobs(&database)? {
        made.bytes += copy_blob(store, &name, &sha256, &blob_dir)?;
        made.blobs += 1;
    }
    sync_dir(&blob_dir)?;
    write_manifest(to, &made, now)?;
    sync_dir(to)?;
    Ok(made)
}

/// Removes what a backup that failed wrote into `to` (found empty, or made, by [`prepare`]): its database snapshot
/// holds every wrapped data key and sealed text, and a directory without a manifest is not one an operator keeps
/// track of (or prunes) as a backup. A removal that fails is logged.
fn discard(to: &Path) {
    let removed = [
        fs::remove_file(to.join(MANIFEST_FILE)),
        fs::remove_file(to.join(DATABASE_FILE)),
        fs::remove_dir_all(to.join(BLOB_DIR)),
    ];
    for e in removed.into_iter().filter_map(Result::err) {
        if e.kind() != io::ErrorKind::NotFound {
            tracing::warn!(
                dir = %to.display(),
                error = %e,
                "could not remove what the failed backup wrote; delete it"
            );
        }
    }
}

/// `to` missing (created 0700) or an empty directory (tightened to 0700).
fn prepare(to: &Path) -> Result<(), BackupError> {
    match fs::read_dir(to) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(BackupError::Target {
                    path: to.to_path_buf(),
                    why: "not empty; a backup goes into a new or empty directory".into(),
                });
            }
            use std::os::unix::fs::PermissionsExt;
            fs::set_permissions(to, fs::Permissions::from_mode(0o700)).map_err(io_at(to))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(to)
            .map_err(io_at(to)),
        Err(e) => Err(io_at(to)(e)),
    }
}

/// `VACUUM INTO` a file made empty and 0600 first (SQLite writes into an empty file and keeps its mode).
fn snapshot(conn: &mut DbConn, database: &Path) -> Result<(), BackupError> {
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(database)
        .map_err(io_at(database))?;
    let path = database.to_str().ok_or_else(|| BackupError::Target {
        path: database.to_path_buf(),
        why: "the path is not UTF-8".into(),
    })?;
    crate::db::copy_into(conn, path)
        .ok_or(BackupError::Postgres)?
        .map_err(|e| BackupError::Database(e.to_string()))?;
    File::open(database)
        .and_then(|f| f.sync_all())
        .map_err(io_at(database))
}

/// The blobs the snapshot names, with the SHA-256 of their ciphertext: read from the copy, so that the files
/// copied are exactly those its database refers to.
fn stored_blobs(database: &Path) -> Result<Vec<(String, String)>, BackupError> {
    let mut conn =
        crate::db::open_copy(database).map_err(|e| BackupError::Database(e.to_string()))?;
    crate::models::blob::all_stored(&mut conn).map_err(|e| BackupError::Database(e.to_string()))
}

/// Copies one blob into `dir` (0600, fsynced), hashing it on the way; returns its length.
fn copy_blob(
    store: &dyn BlobStore,
    name: &str,
    sha256: &str,
    dir: &Path,
) -> Result<u64, BackupError> {
    let blob_error = |why: String| BackupError::Blob {
        name: name.to_owned(),
        why,
    };
    // The name comes from the database: checked like every name a store is given, before it names a file here.
    crate::storage::check_blob_name(name).map_err(|e| blob_error(e.to_string()))?;
    let mut from = match store.open(name) {
        Ok(r) => r,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(blob_error(
                "the database names it but the blob store does not have it: it was lost from the store (deletions \
                 wait while a backup copies, unless its hold lapsed: see the log); the backup stops here"
                    .into(),
            ))
        }
        Err(e) => return Err(blob_error(e.to_string())),
    };
    let path = dir.join(name);
    let mut to = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(io_at(&path))?;
    let mut hasher = Sha256::new();
    let mut len = 0u64;
    let mut buf = vec![0u8; 256 * 1024];
    loop {
        let n = match from.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(blob_error(e.to_string())),
        };
        hasher.update(&buf[..n]);
        to.write_all(&buf[..n]).map_err(io_at(&path))?;
        len += n as u64;
    }
    if hex::encode(hasher.finalize()) != sha256 {
        return Err(blob_error(
            "its ciphertext differs from the digest the database records: the stored copy is damaged or was \
             replaced; the backup stops here"
                .into(),
        ));
    }
    to.sync_all().map_err(io_at(&path))?;
    Ok(len)
}

/// `manifest.json`, written last: a backup without it did not finish. Names the database file with its SHA-256 (so
/// that a copy of the backup can be checked) and the counts.
fn write_manifest(to: &Path, made: &Made, now: i64) -> Result<(), BackupError> {
    let database = &made.database;
    let mut hasher = Sha256::new();
    io::copy(
        &mut File::open(database).map_err(io_at(database))?,
        &mut hasher,
    )
    .map_err(io_at(database))?;
    let manifest = serde_json::json!({
        "format": "pcii-portal backup 1",
        "made_at": crate::time::rfc3339(now),
        "database": { "file": DATABASE_FILE, "sha256": hex::encode(hasher.finalize()) },
        "blobs": { "dir": BLOB_DIR, "files": made.blobs, "bytes": made.bytes },
        // Deletions wait while a backup copies, so none is missing; kept for `check` of older backups, which
        // counted files destroyed after their snapshot.
        "destroyed_after_the_snapshot": 0,
        "keys": "not included",
    });
    let path = to.join(MANIFEST_FILE);
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&path)
        .map_err(io_at(&path))?;
    f.write_all(format!("{manifest:#}\n").as_bytes())
        .and_then(|()| f.sync_all())
        .map_err(io_at(&path))
}

/// What [`check`] found in a backup that holds together.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checked {
    pub made_at: String,
    /// Stored files present and matching their digests.
    pub blobs: usize,
    pub bytes: u64,
    /// Files the database names that the backup does not hold: exactly those its manifest counts as destroyed
    /// after the snapshot (none since backups hold deletions while they copy).
    pub destroyed: usize,
}

/// `backup --check DIR`: the backup finished (its manifest is there), its database file is the one the manifest
/// names (SHA-256), and every stored file that database names is there with the digest it records, except the
/// ones the manifest counts as destroyed after the snapshot. Reads the copy only; needs no keys and no portal.
pub fn check(dir: &Path) -> Result<Checked, BackupError> {
    let target = |why: &str| BackupError::Target {
        path: dir.to_path_buf(),
        why: why.to_owned(),
    };
    let manifest_path = dir.join(MANIFEST_FILE);
    let manifest: serde_json::Value = match fs::read(&manifest_path) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|_| target("manifest.json is not a backup manifest"))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(target("no manifest.json: this backup did not finish"))
        }
        Err(e) => return Err(io_at(&manifest_path)(e)),
    };
    let database = dir.join(DATABASE_FILE);
    let mut hasher = Sha256::new();
    io::copy(
        &mut File::open(&database).map_err(io_at(&database))?,
        &mut hasher,
    )
    .map_err(io_at(&database))?;
    if manifest["database"]["sha256"].as_str() != Some(&hex::encode(hasher.finalize())) {
        return Err(target(
            "the database file differs from the one the manifest names (SHA-256): damaged or replaced",
        ));
    }
    let blob_dir = dir.join(BLOB_DIR);
    let mut checked = Checked {
        made_at: manifest["made_at"].as_str().unwrap_or_default().to_owned(),
        blobs: 0,
        bytes: 0,
        destroyed: 0,
    };
    for (name, sha256) in stored_blobs(&database)? {
        crate::storage::check_blob_name(&name).map_err(|e| BackupError::Blob {
            name: name.clone(),
            why: e.to_string(),
        })?;
        let path = blob_dir.join(&name);
        let mut file = match File::open(&path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                checked.destroyed += 1;
                continue;
            }
            Err(e) => return Err(io_at(&path)(e)),
        };
        let mut hasher = Sha256::new();
        checked.bytes += io::copy(&mut file, &mut hasher).map_err(io_at(&path))?;
        if hex::encode(hasher.finalize()) != sha256 {
            return Err(BackupError::Blob {
                name,
                why: "its ciphertext differs from the digest the backup's database records: damaged or replaced"
                    .into(),
            });
        }
        checked.blobs += 1;
    }
    let expected = manifest["destroyed_after_the_snapshot"].as_u64();
    if expected != Some(checked.destroyed as u64) {
        return Err(target(&format!(
            "{} stored file(s) the database names are missing, where the manifest counts {} destroyed after the \
             snapshot",
            checked.destroyed,
            expected.map_or("no number".to_owned(), |n| n.to_string())
        )));
    }
    Ok(checked)
}

fn sync_dir(dir: &Path) -> Result<(), BackupError> {
    File::open(dir)
        .and_then(|f| f.sync_all())
        .map_err(io_at(dir))
}
