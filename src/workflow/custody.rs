//! Re-encrypting blobs to data keys: `keys rotate --data-keys` gives every submission a fresh data key and
//! re-encrypts its blobs to it (for the rarer case of a data-key compromise); `keys convert` moves a store from
//! before data keys (blobs sealed straight to a master identity) onto data keys of their submissions.
//!
//! Resumable: each step commits on its own (a new current data key; a blob's row switched only if it still points at
//! the old ciphertext, the old ciphertext queued for deletion in the same transaction; old data keys deleted once no
//! blob uses them), and a later run continues with what is left. An interrupted `--data-keys` run keeps the time it
//! started, so that the next run replaces only the keys made before it.

use crate::audit::log::{lock_head, Actor, AuditLog, Event, Outcome};
use crate::crypto::data_key::DataKey;
use crate::crypto::keys::KeyRing;
use crate::crypto::stream::{seal_reader, Recipients};
use crate::db::DbConn;
use crate::key_store::data_keys::{blob_keys, open_blob, WrappedKey};
use crate::key_store::rotation::db;
use crate::key_store::KeyStoreError;
use crate::models::data_key;
use crate::models::text_cell;
use crate::models::{attachment, blob, blob_deletion, destruction, settings, submission};
use crate::storage::BlobStore;
use crate::workflow::blobs::delete_queued;
use crate::workflow::content::Content;
use crate::workflow::sealed_text::{sealed_to, Sealer, Texts, DESTROYED};

/// How many submissions are read per query.
const REKEY_BATCH: i64 = 100;
/// Where an interrupted `keys rotate --data-keys` keeps the time it started (data keys made before it are replaced).
const DATA_KEY_ROTATION_MARK: &str = "data_key_rotation_started_at";

/// Which blobs [`rekey`] re-encrypts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Rekey {
    /// Blobs sealed straight to a master identity (before data keys) go to a data key of their submission.
    Convert,
    /// Every submission gets a fresh data key and all its blobs are re-encrypted to it.
    DataKeys,
}

/// A step of a re-keying.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RekeyProgress {
    /// An interrupted `--data-keys` run (started at this Unix time) is continued.
    Resuming { started_at: i64 },
    /// Work starts: about `submissions` submissions, `blobs` blobs to re-encrypt (a first estimate).
    Starting { submissions: u64, blobs: u64 },
    /// One more submission is done.
    Submission { blobs: u64 },
    /// Nothing is left.
    Done,
}

/// What a finished re-keying did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Rekeyed {
    /// Submissions given a new data key.
    pub new_data_keys: u64,
    /// Blobs re-encrypted.
    pub blobs: u64,
    /// Old data keys deleted (no blob used them any more).
    pub retired_data_keys: u64,
    /// Whether the deleted keys are gone from the SQLite write-ahead log and the database file's old pages (see
    /// [`crate::db::checkpoint_truncate`]); always true on PostgreSQL.
    pub wal_truncated: bool,
    /// File digests moved from clear into a sealed content document (or cleared, for destroyed content).
    pub digests_sealed: u64,
    /// Officers' texts sealed to the current data key (or, for destroyed content, replaced by a marker).
    pub texts_sealed: u64,
}

/// Re-encrypts blobs to their submissions' data keys (see [`Rekey`]). Resumable; audited at start and end
/// (`key.convert` / `key.rotate_data_keys`).
pub fn rekey(
    keyring: &KeyRing,
    conn: &mut DbConn,
    audit: &AuditLog,
    store: &dyn BlobStore,
    mode: Rekey,
    now: i64,
    progress: &mut dyn FnMut(RekeyProgress),
) -> Result<Rekeyed, KeyStoreError> {
    let actor = Actor::cli();
    let action = match mode {
        Rekey::Convert => "key.convert",
        Rekey::DataKeys => "key.rotate_data_keys",
    };
    let cutoff = match mode {
        Rekey::Convert => None,
        Rekey::DataKeys => {
            let mark = settings::get(conn, DATA_KEY_ROTATION_MARK)
                .map_err(db)?
                .and_then(|v| v.parse::<i64>().ok());
            match mark {
                Some(started_at) => {
                    progress(RekeyProgress::Resuming { started_at });
                    Some(started_at)
                }
                None => {
                    settings::set(conn, DATA_KEY_ROTATION_MARK, &now.to_string()).map_err(db)?;
                    Some(now)
                }
            }
        }
    };
    let renew = match cutoff {
        Some(c) => data_key::count_current_older_than(conn, c).map_err(db)?,
        None => 0,
    };
    let off = blob::count_off_current(conn).map_err(db)?;
    progress(RekeyProgress::Starting {
        submissions: renew as u64,
        blobs: off as u64,
    });
    audit.record(
        conn,
        &actor,
        Event::new(action, Outcome::Success).reason(format!(
            "started: {renew} data key(s) to replace, {off} blob(s) to re-encrypt"
        )),
    )?;

    let mut done = Rekeyed::default();
    // First, a fresh data key for each submission whose current one is older than the run.
    if let Some(cutoff) = cutoff {
        each_listed(
            conn,
            |c, after| data_key::submissions_with_current_older_than(c, cutoff, after, REKEY_BATCH),
            |c, id| {
                let replaced = new_current_key(keyring, c, id, Some(cutoff), now)?;
                done.new_data_keys += u64::from(replaced);
                let n = reencrypt_submission(keyring, c, store, id, &mut done, now)?;
                progress(RekeyProgress::Submission { blobs: n });
                Ok(())
            },
        )?;
    }
    // Then every blob not on its submission's current data key (from before data keys, or left by an interrupted
    // run).
    each_listed(
        conn,
        |c, after| blob::submissions_off_current(c, after, REKEY_BATCH),
        |c, id| {
            if data_key::current_of(c, id).map_err(db)?.is_none() {
                done.new_data_keys += u64::from(new_current_key(keyring, c, id, None, now)?);
            }
            let n = reencrypt_submission(keyring, c, store, id, &mut done, now)?;
            progress(RekeyProgress::Submission { blobs: n });
            Ok(())
        },
    )?;
    // Then every submission that still holds an old data key: a run killed after it moved a submission's blobs to
    // the new key, but before it moved the texts and deleted the old one, leaves it so, and neither pass above sees
    // it again (its current key is not older than the run, no blob is off it).
    each_listed(
        conn,
        |c, after| data_key::submissions_with_retired(c, after, REKEY_BATCH),
        |c, id| {
            let n = reencrypt_submission(keyring, c, store, id, &mut done, now)?;
            progress(RekeyProgress::Submission { blobs: n });
            Ok(())
        },
    )?;
    // Officers' texts written in clear before they were sealed (a conversion walks every submission).
    if mode == Rekey::Convert {
        each_listed(
            conn,
            |c, after| submission::ids_after(c, after, REKEY_BATCH),
            |c, id| {
                done.texts_sealed += reseal_texts(keyring, c, id)?;
                Ok(())
            },
        )?;
    }
    // Last, file digests still in clear from before they moved into the sealed content document.
    each_listed(
        conn,
        |c, after| attachment::submissions_with_legacy_digests(c, after, REKEY_BATCH),
        |c, id| {
            done.digests_sealed += absorb_legacy_digests(keyring, c, store, id, now)?;
            Ok(())
        },
    )?;
    if cutoff.is_some() {
        settings::set(conn, DATA_KEY_ROTATION_MARK, "").map_err(db)?;
    }
    audit.record(
        conn,
        &actor,
        Event::new(action, Outcome::Success).reason(format!(
            "finished: {} new data key(s), {} blob(s) re-encrypted, {} old data key(s) deleted, {} file \
             digest(s) and {} text(s) sealed",
            done.new_data_keys,
            done.blobs,
            done.retired_data_keys,
            done.digests_sealed,
            done.texts_sealed
        )),
    )?;
    // The deleted data keys are overwritten in the database file, not left in its log (as after a destruction).
    done.wal_truncated = crate::db::checkpoint_truncate(conn).unwrap_or(false);
    progress(RekeyProgress::Done);
    Ok(done)
}

/// Calls `each` for every submission id that `list` gives, a batch at a time, each batch listed after the last id
/// of the one before (so a pass ends even when `each` leaves a submission as it was).
fn each_listed(
    conn: &mut DbConn,
    mut list: impl FnMut(&mut DbConn, &str) -> diesel::QueryResult<Vec<String>>,
    mut each: impl FnMut(&mut DbConn, &str) -> Result<(), KeyStoreError>,
) -> Result<(), KeyStoreError> {
    let mut after = String::new();
    loop {
        let ids = list(conn, &after).map_err(db)?;
        let Some(last) = ids.last() else {
            return Ok(());
        };
        after = last.clone();
        for id in &ids {
            each(conn, id)?;
        }
    }
}

/// Gives a submission a new current data key, provided its current one is still older than `older_than` (or, with
/// `None`, that it still has none). False when another run did it meanwhile.
fn new_current_key(
    keyring: &KeyRing,
    conn: &mut DbConn,
    submission_id: &str,
    older_than: Option<i64>,
    now: i64,
) -> Result<bool, KeyStoreError> {
    let new = WrappedKey::generate(keyring).map_err(|source| KeyStoreError::Rewrap {
        key_id: "(new data key)".into(),
        source,
    })?;
    conn.transaction(|tx| {
        // Under the lock every audited fact takes first, so that no save is between reading the current key and
        // committing blobs sealed to it while the key changes (see `reencrypt_submission`).
        lock_head(tx)?;
        let current = data_key::current_of(tx, submission_id)?;
        let due = match (older_than, &current) {
            // A submission destroyed meanwhile (its blob rows went with its keys) gets no new key.
            (None, None) => !blob::of_submission(tx, submission_id)?.is_empty(),
            (Some(cutoff), Some(k)) => {
                data_key::find(tx, submission_id, k)?.is_none_or(|row| row.created_at < cutoff)
            }
            _ => false,
        };
        if due {
            data_key::insert_current(tx, &new.row(submission_id, now))?;
        }
        Ok::<_, diesel::result::Error>(due)
    })
    .map_err(db)
}

/// Re-encrypts a submission's blobs that are not on its current data key, then deletes its data keys no blob uses.
/// Returns how many blobs it re-encrypted.
fn reencrypt_submission(
    keyring: &KeyRing,
    conn: &mut DbConn,
    store: &dyn BlobStore,
    submission_id: &str,
    done: &mut Rekeyed,
    now: i64,
) -> Result<u64, KeyStoreError> {
    let Some(current) = data_key::current_of(conn, submission_id).map_err(db)? else {
        return Ok(0);
    };
    // Sealing needs only the public half, so a current key wrapped to a master identity this ring lacks (made by a
    // run on a wrong keys_dir) would take the blobs and texts where no key here reaches: it must open first.
    let row = data_key::find(conn, submission_id, &current).map_err(db)?;
    let unopenable = |master_key_id: &str, reason: String| KeyStoreError::CurrentKeyUnopenable {
        submission_id: submission_id.to_owned(),
        key_id: current.clone(),
        master_key_id: master_key_id.to_owned(),
        reason,
    };
    match &row {
        None => return Err(unopenable("-", "it is not stored".into())),
        Some(row) => match DataKey::unwrap(&row.wrapped, keyring) {
            Ok(key) if key.key_id() == current => {}
            Ok(_) => {
                return Err(unopenable(
                    &row.master_key_id,
                    "it holds another key".into(),
                ))
            }
            Err(e) => return Err(unopenable(&row.master_key_id, e.to_string())),
        },
    }
    let to = Recipients::from_key_id(&current).map_err(|source| KeyStoreError::Reseal {
        id: submission_id.to_owned(),
        source,
    })?;
    let mut n = 0;
    for row in blob::off_current_of(conn, submission_id).map_err(db)? {
        let keys = blob_keys(conn, &row.id).map_err(db)?;
        let reseal = || -> std::io::Result<_> {
            let reader = open_blob(store, keyring, &keys)?;
            // seal_reader commits only after the reader reached a verified end.
            seal_reader(store, &to, reader)
        };
        let sealed = reseal().map_err(|source| KeyStoreError::Reseal {
            id: row.id.clone(),
            source,
        })?;
        let switched = conn
            .transaction(|tx| {
                // Under the facts' lock: a destruction reading this submission's blobs either runs before (the row
                // is gone: the new copy is queued below) or after (it sees the new copy, and queues it).
                lock_head(tx)?;
                let switched = blob::switch_ciphertext(tx, &row.id, &row.storage_name, &sealed)?;
                let garbage = if switched {
                    &row.storage_name // the old copy
                } else {
                    &sealed.name // the blob went away meanwhile (destroyed): the new copy is not referenced
                };
                blob_deletion::enqueue(tx, std::slice::from_ref(garbage), now)?;
                Ok::<_, diesel::result::Error>(switched)
            })
            .map_err(db)?;
        let garbage = if switched {
            &row.storage_name
        } else {
            &sealed.name
        };
        delete_queued(&mut *conn, store, Some(std::slice::from_ref(garbage)))?;
        n += 1;
    }
    done.blobs += n;
    // The officers' texts move to the current key too, before the old key goes.
    done.texts_sealed += reseal_texts(keyring, conn, submission_id)?;
    // Under the facts' lock too: a save that read the old key commits its blobs before this looks at which keys
    // blobs still use (they are re-encrypted by the next pass), or finds the key replaced and is refused.
    done.retired_data_keys += conn
        .transaction(|tx| {
            lock_head(tx)?;
            data_key::delete_retired_of_submission(tx, submission_id)
        })
        .map_err(db)? as u64;
    Ok(n)
}

/// Moves a submission's file digests still kept in clear into a new version of its sealed content document (sealed
/// to its current data key), then clears them; for a submission whose content was destroyed, only clears them (a
/// plaintext digest of destroyed content is exactly what must not survive it). Returns how many were handled.
fn absorb_legacy_digests(
    keyring: &KeyRing,
    conn: &mut DbConn,
    store: &dyn BlobStore,
    submission_id: &str,
    now: i64,
) -> Result<u64, KeyStoreError> {
    let legacy = attachment::legacy_digests_of(conn, submission_id).map_err(db)?;
    let content_blob = submission::content_blob_of(conn, submission_id).map_err(db)?;
    let current = data_key::current_of(conn, submission_id).map_err(db)?;
    let (Some(old), Some(current)) = (content_blob, current) else {
        // Destroyed (no content, no data key): nothing to keep the digests for.
        attachment::clear_legacy_digests(conn, submission_id).map_err(db)?;
        return Ok(legacy.len() as u64);
    };
    let mut reseal = || -> std::io::Result<_> {
        let keys = blob_keys(conn, &old).map_err(std::io::Error::other)?;
        let mut json = zeroize::Zeroizing::new(Vec::new());
        std::io::Read::read_to_end(&mut open_blob(store, keyring, &keys)?, &mut json)?;
        let mut content = Content::from_json(&json)
            .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))?;
        for (id, digest) in &legacy {
            if let Some(info) = content.attachments.get_mut(id) {
                if info.sha256.is_empty() {
                    info.sha256.clone_from(digest);
                }
            }
        }
        let to = Recipients::from_key_id(&current)?;
        seal_reader(store, &to, &zeroize::Zeroizing::new(content.to_json())[..])
    };
    let sealed = reseal().map_err(|source| KeyStoreError::Reseal {
        id: old.clone(),
        source,
    })?;
    let new_id = crate::db::new_id();
    let switched = conn
        .transaction(|tx| {
            if submission::content_blob_of(tx, submission_id)?.as_deref() != Some(old.as_str()) {
                return Ok(false);
            }
            blob::insert(tx, &new_id, submission_id, "content", &sealed, now)?;
            submission::replace_content_blob(tx, submission_id, &old, &new_id)?;
            attachment::clear_legacy_digests(tx, submission_id)?;
            Ok::<_, diesel::result::Error>(true)
        })
        .map_err(db)?;
    if !switched {
        // Changed meanwhile (a save): the next run sees the new version.
        let _ = store.delete(&sealed.name);
        return Ok(0);
    }
    Ok(legacy.len() as u64)
}

/// Seals a submission's officers' texts to its current data key: a text sealed to an older data key is re-sealed
/// (before that key is deleted), one in clear from before sealing is sealed. A submission whose content was
/// destroyed has no data key: its texts in clear written before the destruction quoted what was destroyed and are
/// replaced by [`DESTROYED`]; those of the destruction itself stay. Returns how many texts changed.
fn reseal_texts(
    keyring: &KeyRing,
    conn: &mut DbConn,
    submission_id: &str,
) -> Result<u64, KeyStoreError> {
    let current = data_key::current_of(conn, submission_id).map_err(db)?;
    let cells = text_cell::cells_of(conn, submission_id).map_err(db)?;
    let stale = |value: &str| match (sealed_to(value), &current) {
        (Some(k), Some(c)) => k != c,
        (Some(_), None) => false, // its key is gone: nothing to do
        (None, _) => value != DESTROYED,
    };
    let cells: Vec<_> = cells.into_iter().filter(|c| stale(&c.value)).collect();
    if cells.is_empty() {
        return Ok(0);
    }
    let sealer = current.as_deref().map(Sealer::to_key).transpose()?;
    let texts = Texts::load_blocking(conn, keyring, &[submission_id.to_owned()])?;
    let destroyed_at = match sealer {
        Some(_) => None,
        None => destruction::destruction_of(conn, submission_id)
            .map_err(db)?
            .map(|d| d.destroyed_at),
    };
    let mut changed = 0;
    conn.transaction(|tx| {
        // Read again under the facts' lock: an act since the read above may have written a cell (a send copies the
        // title as saved into the title as sent), and a cell this pass skips would stay sealed to a key about to be
        // deleted.
        crate::audit::log::lock_head(tx)?;
        let cells: Vec<_> = text_cell::cells_of(tx, submission_id)?
            .into_iter()
            .filter(|c| stale(&c.value))
            .collect();
        for cell in &cells {
            let new = match (&sealer, destroyed_at) {
                (Some(sealer), _) => match texts.try_open(&cell.value) {
                    Some(text) => sealer.seal(&text)?.stored,
                    None => continue, // sealed to a key that is gone
                },
                (None, Some(at)) if cell.at < at => DESTROYED.to_owned(),
                (None, _) => continue, // a draft without a data key yet, or the destruction's own words
            };
            changed += u64::from(text_cell::replace(tx, cell, &new)?);
        }
        Ok::<_, crate::error::AppError>(())
    })?;
    Ok(changed)
}
