//! Key rotation: a new current age identity, every blob re-encrypted to it, then the old identities retired;
//! and the per-key blob counts behind `keys list`.
//!
//! Resumable: a blob is switched over one at a time (row updated — only if it still points at the old
//! ciphertext — then the old ciphertext removed), and a later run continues with the blobs still on an old
//! key instead of generating yet another identity. What it does is reported through a callback, so that the
//! CLI (or a test) decides how to show it.

use crate::audit::log::{Actor, AuditLog, Event, Outcome};
use crate::crypto::keys::{KeyInfo, KeyRing};
use crate::db::DbConn;
use crate::error::AppError;
use crate::models::blob;
use crate::storage::BlobStore;

use super::KeyStoreError;

/// How many blob rows are read per query while re-encrypting.
const BATCH: i64 = 100;

/// A step of a rotation, in the order they happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress<'a> {
    /// An interrupted rotation to the current identity `key_id` is continued; no identity is generated.
    Resuming { key_id: &'a str },
    /// A new current identity was generated (and audited).
    NewIdentity { key_id: &'a str },
    /// Re-encryption starts: `total` blobs are sealed to an old key.
    Reencrypting { total: u64 },
    /// One more blob was handled (switched to the current identity, or found gone meanwhile).
    Reencrypted { blob_id: &'a str },
    /// No blob is left on an old key.
    ReencryptionDone,
    /// An old identity was kept: `blobs` blob(s) sealed to it arrived during the rotation.
    Kept { key_id: &'a str, blobs: i64 },
    /// An old identity was removed from the key store (and audited).
    Retired { key_id: &'a str },
}

/// What a finished rotation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotated {
    /// The identity every blob is encrypted to now.
    pub current_key_id: String,
    /// The identity this run generated; `None` when it resumed an interrupted rotation.
    pub generated: Option<String>,
    /// How many blobs this run re-encrypted (or found gone meanwhile).
    pub reencrypted: u64,
    /// The identities retired.
    pub retired: Vec<String>,
    /// The old identities kept because blobs sealed to them arrived during the rotation.
    pub kept: Vec<String>,
}

/// Rotates the key ring: a new identity (unless an interrupted rotation is resumed), every blob on an old key
/// re-encrypted to the current one, then every old identity no blob uses any more retired. Audits
/// `key.rotate` and `key.retire`.
pub fn rotate(
    keyring: &mut KeyRing,
    conn: &mut DbConn,
    audit: &AuditLog,
    store: &dyn BlobStore,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<Rotated, KeyStoreError> {
    let actor = Actor::cli();
    let pending = |conn: &mut DbConn, current: &str| -> Result<i64, KeyStoreError> {
        Ok(blob::count_not_on_key(conn, current).map_err(AppError::from)?)
    };

    let resuming = pending(conn, keyring.current_key_id())? > 0 && keyring.keys().len() > 1;
    let generated = if resuming {
        progress(Progress::Resuming {
            key_id: keyring.current_key_id(),
        });
        None
    } else {
        let new_id = keyring.rotate().map_err(KeyStoreError::NewIdentity)?;
        audit.record(
            conn,
            &actor,
            Event::new("key.rotate", Outcome::Success).reason(format!("new identity {new_id}")),
        )?;
        progress(Progress::NewIdentity { key_id: &new_id });
        Some(new_id)
    };

    let current = keyring.current_key_id().to_string();
    let total = pending(conn, &current)?;
    progress(Progress::Reencrypting {
        total: total as u64,
    });
    let mut reencrypted = 0;
    loop {
        let batch = blob::page_not_on_key(conn, &current, BATCH).map_err(AppError::from)?;
        if batch.is_empty() {
            break;
        }
        for row in batch {
            let old = row
                .blob_ref()
                .map_err(|reason| KeyStoreError::MalformedRow {
                    id: row.id.clone(),
                    reason,
                })?;
            let sealed = crate::crypto::stream::reseal(store, &old, keyring).map_err(|source| {
                KeyStoreError::Reseal {
                    id: row.id.clone(),
                    source,
                }
            })?;
            let switched = blob::switch_ciphertext(conn, &row.id, &row.storage_name, &sealed)
                .map_err(AppError::from)?;
            if switched {
                // The row points at the new ciphertext now; the old one is garbage.
                store.delete(&old.name).map_err(KeyStoreError::RemoveOld)?;
            } else {
                // The blob went away meanwhile (destroyed): the new copy is not referenced.
                store
                    .delete(&sealed.name)
                    .map_err(KeyStoreError::RemoveUnreferenced)?;
            }
            reencrypted += 1;
            progress(Progress::Reencrypted { blob_id: &row.id });
        }
    }
    progress(Progress::ReencryptionDone);

    let mut retired = Vec::new();
    let mut kept = Vec::new();
    for k in keyring.keys().into_iter().filter(|k| !k.current) {
        // Checked again right before retiring: an instance that had not reloaded the key ring may have
        // stored a blob sealed to the old key meanwhile (it refuses to once the key is gone).
        let still_used = blob::count_on_key(conn, &k.key_id).map_err(AppError::from)?;
        if still_used > 0 {
            progress(Progress::Kept {
                key_id: &k.key_id,
                blobs: still_used,
            });
            kept.push(k.key_id);
            continue;
        }
        keyring
            .retire(&k.key_id)
            .map_err(|source| KeyStoreError::Retire {
                key_id: k.key_id.clone(),
                source,
            })?;
        audit.record(
            conn,
            &actor,
            Event::new("key.retire", Outcome::Success).reason(format!("identity {}", k.key_id)),
        )?;
        progress(Progress::Retired { key_id: &k.key_id });
        retired.push(k.key_id);
    }
    Ok(Rotated {
        current_key_id: current,
        generated,
        reencrypted,
        retired,
        kept,
    })
}

/// An identity of the key ring and how many blobs are sealed to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyUsage {
    pub key: KeyInfo,
    pub blobs: i64,
}

/// The blob counts behind `keys list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobCounts {
    /// Every identity of the ring, in ring order (the current one last), with its blob count (0 if none).
    pub keys: Vec<KeyUsage>,
    /// Key ids blobs are sealed to that are not in the key store (those blobs cannot be read), with counts.
    pub missing: Vec<(String, i64)>,
}

/// How many blobs each identity of the ring encrypts, and which blobs are on keys the ring does not hold.
pub fn blob_counts(keyring: &KeyRing, conn: &mut DbConn) -> Result<BlobCounts, KeyStoreError> {
    let counts = blob::count_by_key(conn).map_err(AppError::from)?;
    let keys = keyring
        .keys()
        .into_iter()
        .map(|key| {
            let blobs = counts
                .iter()
                .find(|(id, _)| *id == key.key_id)
                .map(|(_, n)| *n)
                .unwrap_or(0);
            KeyUsage { key, blobs }
        })
        .collect();
    let missing = counts
        .into_iter()
        .filter(|(id, _)| !keyring.contains(id))
        .collect();
    Ok(BlobCounts { keys, missing })
}
