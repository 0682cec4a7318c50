//! Master-key rotation (`keys rotate`): a new master identity; every data key re-wrapped to it (no blob is
//! touched); then every old master identity that wraps nothing any more retired from the key store. The blobs
//! themselves are re-encrypted by `workflow::custody` (`keys rotate --data-keys`, `keys convert`).
//!
//! Resumable: a data key is re-wrapped only if it is still wrapped to the old master, batch by batch, and a later
//! run continues with what is left instead of generating yet another identity. What happens is reported through a
//! callback, so that the CLI (or a test) decides how to show it.

use std::thread;

use crate::audit::log::{lock_head, Actor, AuditLog, Event, Outcome};
use crate::crypto::data_key::DataKey;
use crate::crypto::keys::{KeyInfo, KeyRing};
use crate::db::DbConn;
use crate::error::AppError;
use crate::models::blob;
use crate::models::data_key::{self, DataKeyRow};

use super::KeyStoreError;

/// How many data keys are re-wrapped per transaction.
const REWRAP_BATCH: i64 = 2000;

/// A step of a master-key rotation, in the order they happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Progress<'a> {
    /// An interrupted rotation to the current identity `key_id` is continued; no identity is generated.
    Resuming { key_id: &'a str },
    /// A new current identity was generated (and audited).
    NewIdentity { key_id: &'a str },
    /// Re-wrapping starts: `total` data keys are wrapped to an old identity.
    Rewrapping { total: u64 },
    /// `count` more data keys were re-wrapped (or found destroyed meanwhile).
    Rewrapped { count: u64 },
    /// A data key no identity of the ring opens (its master identity is gone, or it is damaged): left as it is, and
    /// the rotation carries on with the others. Reported once per run.
    Unopenable { key_id: &'a str, reason: String },
    /// No data key is left wrapped to an old identity.
    RewrapDone,
    /// An account's TOTP secret the ring cannot open: left as it is (its identity is then kept), and the rotation
    /// carries on.
    SecretUnopenable { user_id: &'a str, reason: String },
    /// An old identity was kept: data keys wrapped to it arrived during the rotation, or blobs from before data
    /// keys are still sealed straight to it (`keys convert` first).
    Kept {
        key_id: &'a str,
        data_keys: i64,
        legacy_blobs: i64,
        /// TOTP secrets sealed to it that arrived during the rotation.
        account_secrets: i64,
    },
    /// An old identity was removed from the key store (and audited).
    Retired { key_id: &'a str },
}

/// What a finished master-key rotation did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rotated {
    /// The master identity every data key is wrapped to now.
    pub current_key_id: String,
    /// The identity this run generated; `None` when it resumed an interrupted rotation.
    pub generated: Option<String>,
    /// How many data keys this run re-wrapped.
    pub rewrapped: u64,
    /// The identities retired.
    pub retired: Vec<String>,
    /// The old identities kept (see [`Progress::Kept`]).
    pub kept: Vec<String>,
    /// The data keys left as they were because the ring could not open them (see [`Progress::Unopenable`]).
    pub unopenable: Vec<String>,
    /// The accounts whose TOTP secret was left as it was (see [`Progress::SecretUnopenable`]).
    pub unopenable_secrets: Vec<String>,
    /// Whether the old wrappings are gone from the SQLite write-ahead log and the database file's old pages (see
    /// [`crate::db::checkpoint_truncate`]); always true on PostgreSQL.
    pub wal_truncated: bool,
}

pub(crate) fn db(e: diesel::result::Error) -> KeyStoreError {
    KeyStoreError::Database(AppError::from(e))
}

/// Rotates the master key: a new identity (unless an interrupted rotation is resumed), every data key re-wrapped
/// to it, then every old identity that wraps no data key and seals no blob retired. Audits `key.rotate` and
/// `key.retire`.
pub fn rotate(
    keyring: &mut KeyRing,
    conn: &mut DbConn,
    audit: &AuditLog,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<Rotated, KeyStoreError> {
    let actor = Actor::cli();
    let pending = |conn: &mut DbConn, current: &str| {
        data_key::count_not_wrapped_to(conn, current).map_err(db)
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
    progress(Progress::Rewrapping {
        total: total as u64,
    });
    let mut rewrapped = 0u64;
    let mut unopenable = std::collections::BTreeSet::new();
    // Keys wrapped by an instance that had not reloaded the ring yet may arrive meanwhile: a few passes.
    for _pass in 0..3 {
        rewrapped += rewrap_pass(keyring, conn, &current, &mut unopenable, progress)?;
        if pending(conn, &current)? <= unopenable.len() as i64 {
            break;
        }
    }
    progress(Progress::RewrapDone);
    // The accounts' TOTP secrets are sealed to the master identity alone: re-sealed too, before it goes.
    let mut unopenable_secrets = Vec::new();
    super::account_secrets::reseal_all(keyring, conn, &mut |user_id, e| {
        progress(Progress::SecretUnopenable {
            user_id,
            reason: e.to_string(),
        });
        unopenable_secrets.push(user_id.to_string());
    })?;

    let mut retired = Vec::new();
    let mut kept = Vec::new();
    for k in keyring.keys().into_iter().filter(|k| !k.current) {
        // Counted and retired in one transaction under the audit chain-head lock, the lock every portal write takes
        // first, including the one that stores a new data key: a data key wrapped to the old identity by a portal
        // that had not reloaded the key ring yet (a long upload's key was wrapped when it began) is either stored
        // before the count, which keeps the identity, or after the identity file changed, and is then wrapped
        // again to the current identity as it is stored (`WrappedKey::insert_current`).
        let counted = conn.transaction::<_, KeyStoreError, _>(|tx| {
            lock_head(tx).map_err(db)?;
            let data_keys = data_key::count_wrapped_to(tx, &k.key_id).map_err(db)?;
            let legacy_blobs = blob::count_on_key(tx, &k.key_id).map_err(db)?;
            let account_secrets = super::account_secrets::count_sealed_to(tx, &k.key_id)?;
            if data_keys + legacy_blobs + account_secrets > 0 {
                return Ok(Some((data_keys, legacy_blobs, account_secrets)));
            }
            keyring
                .retire(&k.key_id)
                .map_err(|source| KeyStoreError::Retire {
                    key_id: k.key_id.clone(),
                    source,
                })?;
            audit.append(
                tx,
                &actor,
                &Event::new("key.retire", Outcome::Success)
                    .reason(format!("identity {}", k.key_id)),
            )?;
            Ok(None)
        })?;
        if let Some((data_keys, legacy_blobs, account_secrets)) = counted {
            progress(Progress::Kept {
                key_id: &k.key_id,
                data_keys,
                legacy_blobs,
                account_secrets,
            });
            kept.push(k.key_id);
            continue;
        }
        progress(Progress::Retired { key_id: &k.key_id });
        retired.push(k.key_id);
    }
    // The old wrappings (to identities now retired) are overwritten in the database file, not left in its log.
    let wal_truncated = crate::db::checkpoint_truncate(conn).unwrap_or(false);
    Ok(Rotated {
        wal_truncated,
        current_key_id: current,
        generated,
        rewrapped,
        retired,
        kept,
        unopenable: unopenable.into_iter().collect(),
        unopenable_secrets,
    })
}

/// One pass over the data keys not wrapped to `current`, batch by batch, in key id order: each batch is re-wrapped
/// on every core while the previous one is written (one transaction per batch, one conditional UPDATE per key), so
/// the database work overlaps the age work. A key the ring cannot open is left as it is, added to `unopenable` (and
/// reported the first time). Returns how many keys were handled.
fn rewrap_pass(
    keyring: &KeyRing,
    conn: &mut DbConn,
    current: &str,
    unopenable: &mut std::collections::BTreeSet<String>,
    progress: &mut dyn FnMut(Progress<'_>),
) -> Result<u64, KeyStoreError> {
    let mut rewrapped = 0u64;
    let mut after = String::new();
    thread::scope(|s| {
        let mut in_flight: Option<thread::ScopedJoinHandle<'_, _>> = None;
        loop {
            // The next batch is read (and its re-wrapping started) before the previous one is written: it starts
            // after the previous batch's last key id, whatever the database says about that batch meanwhile.
            let rows =
                data_key::page_not_wrapped_to(conn, current, &after, REWRAP_BATCH).map_err(db)?;
            let next = rows.last().map(|last| last.key_id.clone()).map(|last| {
                after = last;
                s.spawn(move || {
                    let wrapped = rewrap_all(keyring, &rows);
                    (rows, wrapped)
                })
            });
            if let Some(handle) = in_flight.take() {
                let (rows, wrapped): (Vec<DataKeyRow>, Vec<Result<Vec<u8>, KeyStoreError>>) =
                    handle.join().expect("a re-wrapping thread panicked");
                let mut done = Vec::with_capacity(rows.len());
                for (row, new) in rows.iter().zip(wrapped) {
                    match new {
                        Ok(new) => done.push((row, new)),
                        Err(e) => {
                            if unopenable.insert(row.key_id.clone()) {
                                progress(Progress::Unopenable {
                                    key_id: &row.key_id,
                                    reason: e.to_string(),
                                });
                            }
                        }
                    }
                }
                write_batch(conn, &done, current)?;
                rewrapped += done.len() as u64;
                progress(Progress::Rewrapped {
                    count: rows.len() as u64,
                });
            }
            match next {
                Some(handle) => in_flight = Some(handle),
                None => break,
            }
        }
        Ok(rewrapped)
    })
}

/// Stores a re-wrapped batch in one transaction. A key no longer wrapped to its old master (destroyed, or
/// re-wrapped by another run, meanwhile) is left alone.
fn write_batch(
    conn: &mut DbConn,
    rewrapped: &[(&DataKeyRow, Vec<u8>)],
    current: &str,
) -> Result<(), KeyStoreError> {
    conn.transaction(|tx| {
        for (row, new) in rewrapped {
            data_key::rewrap(tx, &row.key_id, &row.master_key_id, new, current)?;
        }
        Ok::<_, diesel::result::Error>(())
    })
    .map_err(db)
}

/// Unwraps each data key with the ring and wraps it to the ring's current identity (and the escrow), on every core:
/// this is the whole per-submission cost of a rotation. Each key's own result, in order.
fn rewrap_all(ring: &KeyRing, rows: &[DataKeyRow]) -> Vec<Result<Vec<u8>, KeyStoreError>> {
    let threads = thread::available_parallelism().map_or(1, |n| n.get());
    let per = rows.len().div_ceil(threads).max(1);
    let rewrap = |row: &DataKeyRow| -> Result<Vec<u8>, KeyStoreError> {
        let fail = |source| KeyStoreError::Rewrap {
            key_id: row.key_id.clone(),
            source,
        };
        DataKey::unwrap(&row.wrapped, ring)
            .and_then(|key| key.wrap(ring))
            .map_err(fail)
    };
    thread::scope(|s| {
        let workers: Vec<_> = rows
            .chunks(per)
            .map(|chunk| s.spawn(move || chunk.iter().map(rewrap).collect::<Vec<_>>()))
            .collect();
        let mut out = Vec::with_capacity(rows.len());
        for w in workers {
            out.extend(w.join().expect("a re-wrapping thread panicked"));
        }
        out
    })
}

/// A master identity of the ring and what depends on it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyUsage {
    pub key: KeyInfo,
    /// Data keys wrapped to it.
    pub data_keys: i64,
    /// Blobs from before data keys sealed straight to it.
    pub legacy_blobs: i64,
}

/// The counts behind `keys list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyCounts {
    /// Every identity of the ring, in ring order (the current one last).
    pub keys: Vec<KeyUsage>,
    /// Master key ids that data keys are wrapped to, or legacy blobs sealed to, but that are not in the key store
    /// (what depends on them cannot be read), with counts.
    pub missing: Vec<(String, i64)>,
    /// Data keys in all.
    pub data_keys: i64,
    /// Blobs not on their submission's current data key (`keys convert` moves those from before data keys).
    pub blobs_off_current: i64,
}

/// What each master identity wraps or seals, and what depends on identities the ring does not hold.
pub fn key_counts(keyring: &KeyRing, conn: &mut DbConn) -> Result<KeyCounts, KeyStoreError> {
    let wrapped = data_key::count_by_master(conn).map_err(db)?;
    let sealed = blob::count_by_key(conn).map_err(db)?;
    let count_of = |list: &[(String, i64)], id: &str| {
        list.iter()
            .find(|(k, _)| k == id)
            .map(|(_, n)| *n)
            .unwrap_or(0)
    };
    let keys = keyring
        .keys()
        .into_iter()
        .map(|key| KeyUsage {
            data_keys: count_of(&wrapped, &key.key_id),
            legacy_blobs: count_of(&sealed, &key.key_id),
            key,
        })
        .collect();
    let missing = wrapped
        .iter()
        .filter(|(id, _)| !keyring.contains(id))
        .cloned()
        .collect();
    Ok(KeyCounts {
        keys,
        missing,
        data_keys: data_key::count(conn).map_err(db)?,
        blobs_off_current: blob::count_off_current(conn).map_err(db)?,
    })
}
