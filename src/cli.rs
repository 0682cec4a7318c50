//! Command-line operations that are more than a call into a service: key rotation and audit verification.
//! The work is done by the services (`key_store::rotation`, `audit`); this module wires them to the terminal.

use std::path::{Path, PathBuf};

use indicatif::{ProgressBar, ProgressStyle};

use crate::audit::checkpoint::Checkpoint;
use crate::audit::log::{Actor, AuditLog};
use crate::audit::stored::Scope;
use crate::audit::verify::Problem;
use crate::config::Settings;
use crate::db::Db;
use crate::error::AppError;
use crate::key_store::rotation::{self, Progress};
use crate::key_store::{in_use, KeyStoreError};
use crate::workflow::custody;

/// Why a CLI operation failed. Printed by `main` as `pcii-portal: <message>`; never holds key material.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The key store could not be opened, or a rotation not finished.
    #[error(transparent)]
    KeyStore(#[from] KeyStoreError),
    /// The database could not be opened or migrated.
    #[error("{0}")]
    OpenDatabase(#[from] crate::db::DbError),
    /// A database or audit-log operation failed.
    #[error(transparent)]
    App(#[from] AppError),
    /// The blob store could not be opened.
    #[error("opening the blob store {what}: {source}")]
    BlobStore {
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The progress bar's template is invalid.
    #[error("progress bar: {0}")]
    ProgressTemplate(#[from] indicatif::style::TemplateError),
    /// A kept checkpoint file could not be read.
    #[error("reading {}: {source}", path.display())]
    ReadCheckpoints {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A kept checkpoint file holds neither a checkpoint nor an array of them.
    #[error("{} is not a checkpoint file: {source}", path.display())]
    NotACheckpointFile {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    /// A checkpoint could not be encoded for printing.
    #[error("{0}")]
    EncodeCheckpoint(#[source] serde_json::Error),
    /// `audit verify` of the live database found a problem.
    #[error("audit log NOT intact ({start}): {problem}")]
    AuditNotIntact { start: String, problem: Problem },
    /// `audit verify --export` found a problem in the export.
    #[error("export NOT intact: {0}")]
    ExportNotIntact(Problem),
    /// `unseal`: the sealed portal could not be reached, or refused the share.
    #[error("unseal: {0}")]
    Unseal(String),
    /// `backup` did not complete.
    #[error("backup: {0}")]
    Backup(#[from] crate::backup::BackupError),
}

/// The portal's database for a host command (made if missing), with the configured busy timeout.
pub fn open_db(settings: &Settings) -> Result<Db, CliError> {
    Ok(Db::open_with(
        &settings.database_url(),
        2,
        settings.database_busy_timeout_ms,
    )?)
}

/// The portal's database, which must exist (see [`Db::open_existing`]): for every command that reports on it or acts
/// on what it holds. Only the start, `migrate`, `keys init` (and `keys protect` making a new store) and `user add`
/// make one.
pub fn open_existing_db(settings: &Settings) -> Result<Db, CliError> {
    Ok(Db::open_existing_with(
        &settings.database_url(),
        2,
        settings.database_busy_timeout_ms,
    )?)
}

fn open_audit(settings: &Settings) -> Result<AuditLog, CliError> {
    let opened = open_keys(settings)?;
    Ok(AuditLog::new(
        opened.audit_signer,
        settings.audit_checkpoint_every,
    ))
}

/// `keys list`: every master identity with its creation time and how many data keys it wraps.
pub fn keys_list(settings: &Settings) -> Result<(), CliError> {
    let opened = open_keys(settings)?;
    let db = open_existing_db(settings)?;
    let mut conn = db.get()?;
    let counts = rotation::key_counts(&opened.keyring, &mut conn)?;
    println!(
        "{:<10} {:<27} {:>9} {:>12}  key",
        "state", "created", "data keys", "legacy blobs"
    );
    for k in &counts.keys {
        let state = if k.key.current { "current" } else { "old" };
        println!(
            "{state:<10} {:<27} {:>9} {:>12}  {}",
            k.key.created, k.data_keys, k.legacy_blobs, k.key.key_id
        );
    }
    for e in opened.keyring.escrow_ids() {
        println!(
            "{:<10} {:<27} {:>9} {:>12}  {e}",
            "escrow", "-", "(all)", "(all)"
        );
    }
    for (id, n) in &counts.missing {
        println!(
            "{:<10} {:<27} {n:>9} {:>12}  {id}  (NOT IN THE KEY STORE: these data keys cannot be opened)",
            "missing", "-", "-"
        );
    }
    println!("{} data key(s) in all", counts.data_keys);
    if counts.blobs_off_current > 0 {
        println!(
            "{} blob(s) are not on their submission's data key: run `pcii-portal keys convert`",
            counts.blobs_off_current
        );
    }
    Ok(())
}

fn open_store(
    settings: &Settings,
) -> Result<std::sync::Arc<dyn crate::storage::BlobStore>, CliError> {
    crate::storage::open_configured(settings).map_err(|source| CliError::BlobStore {
        what: if settings.blob_store.is_empty() {
            settings.blob_dir().display().to_string()
        } else {
            settings.blob_store.clone()
        },
        source,
    })
}

/// `keys rotate`: a new master identity, every data key re-wrapped to it, then old identities retired (see
/// `key_store::rotation::rotate`), shown with a progress bar. With `data_keys`, instead every submission gets a
/// fresh data key and its blobs are re-encrypted (`custody::rekey`).
pub fn keys_rotate(settings: &Settings, data_keys: bool) -> Result<(), CliError> {
    if data_keys {
        return rekey(settings, custody::Rekey::DataKeys);
    }
    // Before the lock, whose file would make the directory.
    crate::key_store::require_existing(&settings.keys_dir)?;
    let _changing = in_use::changing(&settings.keys_dir, in_use::Needs::Nothing)?;
    let opened = open_keys(settings)?;
    let mut keyring = opened.keyring;
    let audit = AuditLog::new(opened.audit_signer, settings.audit_checkpoint_every);
    let db = open_existing_db(settings)?;
    let mut conn = db.get()?;
    let style = ProgressStyle::with_template(
        "{spinner} re-wrapping [{bar:40}] {pos}/{len} data keys ({eta} left)",
    )?
    .progress_chars("=> ");
    let mut bar: Option<ProgressBar> = None;
    let rotated = rotation::rotate(&mut keyring, &mut conn, &audit, &mut |step| match step {
        Progress::Resuming { key_id } => {
            println!("resuming an interrupted rotation to {key_id}")
        }
        Progress::NewIdentity { key_id } => println!("new master identity {key_id}"),
        Progress::Rewrapping { total } => {
            let b = ProgressBar::new(total);
            b.set_style(style.clone());
            bar = Some(b);
        }
        Progress::Rewrapped { count } => {
            if let Some(b) = &bar {
                b.inc(count);
            }
        }
        Progress::Unopenable { key_id, reason } => {
            let line = format!("left data key {key_id} as it was: {reason}");
            match &bar {
                Some(b) => b.suspend(|| println!("{line}")),
                None => println!("{line}"),
            }
        }
        Progress::SecretUnopenable { user_id, reason } => {
            let line = format!("left account {user_id}'s authenticator secret as it was: {reason}");
            match &bar {
                Some(b) => b.suspend(|| println!("{line}")),
                None => println!("{line}"),
            }
        }
        Progress::RewrapDone => {
            if let Some(b) = &bar {
                b.finish();
            }
        }
        Progress::Kept {
            key_id,
            data_keys,
            legacy_blobs,
            account_secrets,
        } => {
            if legacy_blobs > 0 {
                println!(
                    "kept {key_id}: {legacy_blobs} blob(s) from before data keys are sealed straight to it; \
                     run `pcii-portal keys convert`, then `keys rotate` again"
                )
            } else {
                println!(
                    "kept {key_id}: {data_keys} data key(s) and {account_secrets} TOTP secret(s) sealed to it \
                     arrived during the rotation; run `keys rotate` again"
                )
            }
        }
        Progress::Retired { key_id } => println!("retired {key_id}"),
    })?;
    if !rotated.unopenable_secrets.is_empty() {
        println!(
            "{} account(s)' authenticator secret could not be opened (above): reset their second factors \
             (`pcii-portal user reset-factors`); an old identity a secret is sealed to is kept until then",
            rotated.unopenable_secrets.len()
        );
    }
    if !rotated.unopenable.is_empty() {
        println!(
            "rotation done but for the data keys above: {} data key(s) re-wrapped to {}",
            rotated.rewrapped, rotated.current_key_id
        );
        return Err(KeyStoreError::RewrapIncomplete {
            count: rotated.unopenable.len(),
        }
        .into());
    }
    println!(
        "rotation complete: {} data key(s) re-wrapped; every data key is wrapped to {}",
        rotated.rewrapped, rotated.current_key_id
    );
    if !rotated.wal_truncated {
        println!("{WAL_NOT_TRUNCATED}");
    }
    Ok(())
}

/// After a rotation whose checkpoint readers kept from finishing.
const WAL_NOT_TRUNCATED: &str = "note: the database's write-ahead log could not be truncated (readers were busy): \
    what this run replaced stays in it, and in the database file's old pages, until SQLite's automatic checkpoint \
    catches up";

/// `backup --to DIR`: the database snapshot and the blobs it names, checked (see [`crate::backup`]).
pub fn backup(settings: &Settings, to: &std::path::Path) -> Result<(), CliError> {
    // A backup needs no key: its one entry (`backup.made`) is recorded unsigned, as the sealed portal's are.
    // Opening the key store would ask a nightly job for the passphrase or the custodians' shares, and hold the master
    // identities in its memory.
    let audit = AuditLog::unsigned();
    let db = open_existing_db(settings)?;
    let store = open_store(settings)?;
    let now = crate::clock::Clock::system().now();
    let made = crate::backup::make(&db, store.as_ref(), &audit, to, now)?;
    println!(
        "backup in {}: the database ({}) and {} stored file(s), {} bytes, each checked against its recorded digest",
        crate::config::display_path(to),
        crate::backup::DATABASE_FILE,
        made.blobs,
        made.bytes
    );
    println!("keys/ is not in the backup: keep a copy of it apart (see the README, \"Backups\")");
    Ok(())
}

/// `status`: the operator's overview (`workflow::operations`), as text or JSON. Needs no secret: the last verify's
/// signature is checked with the audit key where it rests in clear (`file`), else shown as not checked. Returns
/// whether anything needs attention.
pub fn status(settings: &Settings, json: bool) -> Result<bool, CliError> {
    let db = open_existing_db(settings)?;
    let store = open_store(settings)?;
    let live = crate::workflow::operations::Live::of(&*store, &settings.data_dir);
    let now = crate::clock::Clock::system().now();
    let mut conn = db.get()?;
    let audit_key = crate::key_store::audit_public_key_in_clear(settings);
    let o = crate::workflow::operations::overview(
        &mut conn,
        settings,
        db.backend,
        live,
        audit_key.as_deref(),
        now,
    )
    .map_err(AppError::from)?;
    if json {
        // The overview is plain data: encoding it cannot fail.
        println!("{}", serde_json::to_string_pretty(&o).unwrap_or_default());
    } else {
        print!("{}", crate::workflow::operations::as_text(&o));
    }
    Ok(!o.attention.is_empty())
}

/// `backup --check DIR` (see [`crate::backup::check`]).
pub fn backup_check(dir: &std::path::Path) -> Result<(), CliError> {
    let checked = crate::backup::check(dir)?;
    // Only a backup made before backups held deletions can miss files (counted in its manifest).
    let missing = match checked.destroyed {
        0 => String::new(),
        n => format!(" ({n} destroyed after the snapshot, as the manifest says)"),
    };
    println!(
        "backup in {} (made {}) holds together: its database is the one its manifest names, and {} stored file(s), \
         {} bytes, match the digests it records{missing}",
        crate::config::display_path(dir),
        checked.made_at,
        checked.blobs,
        checked.bytes,
    );
    Ok(())
}

/// `keys convert`: blobs sealed straight to a master identity (before data keys) re-encrypted to a data key of
/// their submission. Resumable.
pub fn keys_convert(settings: &Settings) -> Result<(), CliError> {
    rekey(settings, custody::Rekey::Convert)
}

fn rekey(settings: &Settings, mode: custody::Rekey) -> Result<(), CliError> {
    // Before the lock, whose file would make the directory.
    crate::key_store::require_existing(&settings.keys_dir)?;
    let _changing = in_use::changing(&settings.keys_dir, in_use::Needs::Nothing)?;
    let opened = open_keys(settings)?;
    let audit = AuditLog::new(opened.audit_signer, settings.audit_checkpoint_every);
    let db = open_existing_db(settings)?;
    let mut conn = db.get()?;
    let store = open_store(settings)?;
    let style = ProgressStyle::with_template(
        "{spinner} re-encrypting [{bar:40}] {pos}/{len} blobs ({eta} left)",
    )?
    .progress_chars("=> ");
    let mut bar: Option<ProgressBar> = None;
    let now = crate::clock::Clock::system().now();
    let done = custody::rekey(
        &opened.keyring,
        &mut conn,
        &audit,
        store.as_ref(),
        mode,
        now,
        &mut |step| match step {
            custody::RekeyProgress::Resuming { started_at } => println!(
                "resuming the data-key rotation started at {}",
                crate::time::rfc3339(started_at)
            ),
            custody::RekeyProgress::Starting { blobs, .. } => {
                let b = ProgressBar::new(blobs);
                b.set_style(style.clone());
                bar = Some(b);
            }
            custody::RekeyProgress::Submission { blobs } => {
                if let Some(b) = &bar {
                    if b.position() + blobs > b.length().unwrap_or(0) {
                        b.set_length(b.position() + blobs);
                    }
                    b.inc(blobs);
                }
            }
            custody::RekeyProgress::Done => {
                if let Some(b) = &bar {
                    b.finish();
                }
            }
        },
    )?;
    println!(
        "done: {} new data key(s), {} blob(s) re-encrypted, {} old data key(s) deleted",
        done.new_data_keys, done.blobs, done.retired_data_keys
    );
    if !done.wal_truncated {
        println!("{WAL_NOT_TRUNCATED}");
    }
    Ok(())
}

/// Reads a checkpoint file kept outside the portal: one checkpoint or an array of them.
pub fn read_kept_checkpoints(path: &Path) -> Result<Vec<Checkpoint>, CliError> {
    let text = std::fs::read_to_string(path).map_err(|source| CliError::ReadCheckpoints {
        path: path.to_path_buf(),
        source,
    })?;
    if let Ok(one) = serde_json::from_str::<Checkpoint>(&text) {
        return Ok(vec![one]);
    }
    serde_json::from_str::<Vec<Checkpoint>>(&text).map_err(|source| CliError::NotACheckpointFile {
        path: path.to_path_buf(),
        source,
    })
}

/// `audit verify`: incrementally from the last verified checkpoint, or the whole chain with `full`.
pub fn audit_verify_live(
    settings: &Settings,
    kept: Option<&Path>,
    full: bool,
) -> Result<(), CliError> {
    let db = open_existing_db(settings)?;
    let audit = open_audit(settings)?;
    let kept = kept
        .map(read_kept_checkpoints)
        .transpose()?
        .unwrap_or_default();
    let scope = if full {
        Scope::Full
    } else {
        Scope::Incremental
    };
    let verdict = audit.verify_and_record_from(&db, &Actor::cli(), &kept, scope)?;
    match verdict.result {
        Ok(s) => {
            println!("audit log intact ({}): {s}", verdict.start.describe());
            if let Some(seq) = verdict.start.after_checkpoint() {
                println!(
                    "entries up to #{seq} were verified earlier and not read again; `audit verify --full` reads them"
                );
            }
            Ok(())
        }
        Err(problem) => Err(CliError::AuditNotIntact {
            start: verdict.start.describe(),
            problem,
        }),
    }
}

pub fn audit_verify_export(path: &Path, kept: Option<&Path>) -> Result<(), CliError> {
    match crate::audit::export::verify_export(path, kept) {
        Ok(s) => {
            println!("export intact: {s}");
            Ok(())
        }
        Err(p) => Err(CliError::ExportNotIntact(p)),
    }
}

/// `audit checkpoint`: signs a checkpoint of the current head now.
pub fn audit_checkpoint(settings: &Settings) -> Result<(), CliError> {
    let db = open_existing_db(settings)?;
    let audit = open_audit(settings)?;
    let mut conn = db.get()?;
    let cp = audit.checkpoint_now(&mut conn, &Actor::cli())?;
    match cp {
        Some(cp) => println!(
            "{}",
            serde_json::to_string_pretty(&cp).map_err(CliError::EncodeCheckpoint)?
        ),
        None => println!("nothing new to checkpoint"),
    }
    Ok(())
}

/// Where the CLI takes shares from in `shares` mode (`--share-file`, before asking on the terminal).
static SHARE_FILES: std::sync::OnceLock<Vec<PathBuf>> = std::sync::OnceLock::new();

/// Sets the decrypted share files the CLI reads before asking for more (`--share-file`, once, at start).
pub fn set_share_files(files: Vec<PathBuf>) {
    let _ = SHARE_FILES.set(files);
}

/// Opens the existing key store for a CLI command in any `master_key_protection` mode: the passphrase from
/// `master_key_passphrase_file` or the terminal, shares from `--share-file`s or the terminal. A key directory
/// without a master identity is refused before anything is asked or written (`KeyStoreError::NoKeyStore`): only
/// `keys init` ([`init_keys`]) and the portal's start make a new store.
pub fn open_keys(settings: &Settings) -> Result<crate::key_store::OpenedKeys, CliError> {
    crate::key_store::require_existing(&settings.keys_dir)?;
    open_keys_creating(settings, false)
}

/// `keys init`: opens the key store, generating whatever is missing (a new store in an empty directory).
pub fn init_keys(settings: &Settings) -> Result<crate::key_store::OpenedKeys, CliError> {
    open_keys_creating(settings, true)
}

fn open_keys_creating(
    settings: &Settings,
    may_create: bool,
) -> Result<crate::key_store::OpenedKeys, CliError> {
    let files = SHARE_FILES.get().map(Vec::as_slice).unwrap_or(&[]);
    let at_rest = crate::key_store::protection::unlock_interactive(settings, files)?;
    let opened = if may_create {
        crate::key_store::open_unlocked(settings, &at_rest)?
    } else {
        crate::key_store::open_existing(settings, &at_rest)?
    };
    if !opened.generated.is_empty() || opened.unrecorded_protection.is_some() {
        record_host_act(
            settings,
            &at_rest,
            &opened.generated,
            opened.unrecorded_protection.clone(),
        )?;
    }
    Ok(opened)
}

/// Records an act on the key store done from this host's command line, as the server records its own: the keys a
/// command `generated` because they were missing (`key.generate`, names and public parts only) and, when
/// `protected` says what a `keys protect` did (or the store holds a note of one left unrecorded), a `key.protect`
/// entry. The store is opened again as `at_rest` says for its audit signing key (every key file exists by now; any
/// still missing would be generated and recorded).
fn record_host_act(
    settings: &Settings,
    at_rest: &crate::crypto::keyfile::AtRest,
    generated: &[String],
    protected: Option<String>,
) -> Result<(), CliError> {
    let opened = crate::key_store::open_unlocked(settings, at_rest)?;
    let audit = AuditLog::new(opened.audit_signer, settings.audit_checkpoint_every);
    // A new key store (`keys init`, `keys protect` on an empty `keys/`) may start its database. An existing store's
    // act goes to the database it has, never to a new one a wrong data_dir would make: the note of a conversion then
    // stays, for the next command (or start) with the right data_dir to record.
    let new_store = generated
        .iter()
        .chain(&opened.generated)
        .any(|g| g.starts_with(crate::key_store::GENERATED_MASTER));
    let db = if new_store {
        open_db(settings)?
    } else {
        open_existing_db(settings)?
    };
    let mut conn = db.get()?;
    crate::key_store::record_generated(&mut conn, &audit, generated)?;
    crate::key_store::record_generated(&mut conn, &audit, &opened.generated)?;
    if let Some(entry) = protected.or(opened.unrecorded_protection) {
        crate::key_store::record_protection(&mut conn, &audit, &settings.keys_dir, entry)?;
    }
    Ok(())
}

/// `keys protect`: converts the key store to `passphrase` or `shares` (see
/// `key_store::protection::protect`), asking for the current secret when it is sealed in the other mode; with
/// `new_unlock_key`, moves a sealed store to a new unlock key (`key_store::protection::rekey`), asking for the
/// current secret.
pub fn keys_protect(
    settings: &Settings,
    target: crate::key_store::protection::Target,
    new_unlock_key: bool,
) -> Result<(), CliError> {
    use crate::crypto::keyfile::{AtRest, UnlockKey};
    use crate::key_store::protection::{self, Layout, Mode};
    let dir = settings.keys_dir.clone();
    // Every file is rewritten under a new key: no portal may hold the old one, no other key operation run.
    let _changing = in_use::changing(&dir, in_use::Needs::NoPortal)?;
    let unlock_current = || match Layout::scan(&dir).committed() {
        Some(Mode::Passphrase) => {
            let mut s = settings.clone();
            s.master_key_protection = "passphrase".into();
            protection::unlock_passphrase(&s, true)
        }
        _ => {
            let mut s = settings.clone();
            s.master_key_protection = "shares".into();
            let files = SHARE_FILES.get().map(Vec::as_slice).unwrap_or(&[]);
            protection::unlock_shares_cli(&s, files)
        }
    };
    let described = target.describe();
    let mode = target.mode().as_str();
    // A conversion a killed run left unrecorded is recorded before this run changes the store again (its note would
    // be replaced); the secret asked for it serves this run too.
    let mut unlocked: Option<std::sync::Arc<UnlockKey>> = None;
    let mut recorded_before = false;
    if dir.join(protection::UNRECORDED_FILE).exists() && Layout::scan(&dir).committed().is_some() {
        let key = std::sync::Arc::new(unlock_current()?);
        if let Some(entry) = protection::unrecorded(&dir, Some(&key))? {
            record_host_act(settings, &AtRest::Sealed(key.clone()), &[], Some(entry))?;
            println!("recorded the conversion an interrupted run had not");
            recorded_before = true;
        }
        unlocked = Some(key);
    }
    let mut unlock_current = || match &unlocked {
        Some(key) => UnlockKey::from_secret(&key.to_secret()).ok_or(KeyStoreError::Wrap),
        None => unlock_current(),
    };
    let converted = if new_unlock_key {
        protection::rekey(settings, target, &mut unlock_current)
    } else {
        protection::protect(settings, target, &mut unlock_current)
    };
    let mut done = match converted {
        // Recording that conversion was all there was to do.
        Err(KeyStoreError::AlreadyProtected { .. }) if recorded_before => return Ok(()),
        other => other?,
    };
    // What to record. A note of a conversion that committed was recorded above, so a run that converted nothing
    // has only leftovers to account for.
    let record = match (done.unlock.take(), done.entry.take()) {
        (Some(key), Some(entry)) => Some((key, entry)),
        // Removal finished, for the conversion recorded above.
        _ if recorded_before => None,
        // Nothing to remove, only a stale note (its run stopped before committing).
        _ if done.removed.is_empty() => {
            protection::forget_unrecorded(&dir)?;
            return Err(KeyStoreError::AlreadyProtected { path: dir, mode }.into());
        }
        // Removal finished, for a conversion interrupted by a version that left no note: it asks for the secret.
        _ => {
            let key = std::sync::Arc::new(unlock_current()?);
            Some((
                key,
                format!("{described}; finishing an interrupted conversion"),
            ))
        }
    };
    if done.finished_only && !done.removed.is_empty() {
        println!("the key store was already converted; finished removing what was left");
    }
    if let Some(r) = &done.unlock_recipient {
        println!("unlock key {r}");
    }
    for name in &done.removed {
        println!("removed {name} (overwritten, then unlinked)");
    }
    for (path, custodian) in &done.share_files {
        println!(
            "share for {custodian}: {} (give it to that custodian; keep a copy offline)",
            path.display()
        );
    }
    println!(
        "set master_key_protection in the configuration to match; back up keys/ (it holds only ciphertext now)"
    );
    if done.new_unlock_key {
        println!(
            "a new unlock key: the old passphrase or shares open nothing current; restart every instance with the new one"
        );
    }
    match record {
        Some((key, entry)) => record_host_act(settings, &AtRest::Sealed(key), &[], Some(entry)),
        None => Ok(()),
    }
}

/// `pcii-portal unseal`: gives this custodian's decrypted share (from `--share-file`, else asked on the terminal
/// without echo) to the sealed portal running on this host, through `keys/unseal.sock`, and prints its answer.
pub fn unseal_local(settings: &Settings) -> Result<(), CliError> {
    use std::io::{BufRead, Write};
    let socket = settings.keys_dir.join(crate::key_store::UNSEAL_SOCKET);
    // One custodian gives one share per run: a second file would otherwise be dropped without a word.
    if SHARE_FILES.get().is_some_and(|f| f.len() > 1) {
        return Err(CliError::Unseal(
            "give one --share-file per run: each custodian unseals with their own share".into(),
        ));
    }
    let share = match SHARE_FILES.get().and_then(|f| f.first()) {
        Some(path) => crate::crypto::keyfile::read_private(path)
            .map_err(|e| CliError::KeyStore(KeyStoreError::KeyFile(e)))?,
        None => crate::key_store::protection::prompt_secret(
            "Your decrypted share (pcii-share-v1:...), not echoed: ",
        )?,
    };
    let mut stream = std::os::unix::net::UnixStream::connect(&socket).map_err(|source| {
        CliError::Unseal(format!(
            "no sealed portal listens on {} ({source}); is it running with master_key_protection = \"shares\"?",
            socket.display()
        ))
    })?;
    let mut send = || -> std::io::Result<String> {
        stream.write_all(share.trim().as_bytes())?;
        stream.write_all(b"\n")?;
        stream.shutdown(std::net::Shutdown::Write)?;
        let mut answer = String::new();
        std::io::BufReader::new(&stream).read_line(&mut answer)?;
        Ok(answer.trim().to_owned())
    };
    let answer = send().map_err(|e| CliError::Unseal(format!("talking to the portal: {e}")))?;
    if answer.starts_with("accepted") || answer.starts_with("unsealed") {
        println!("{answer}");
        Ok(())
    } else {
        Err(CliError::Unseal(answer))
    }
}
