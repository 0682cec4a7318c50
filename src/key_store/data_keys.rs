//! Data keys in the store: creating one for a submission, finding the key a blob opens with, opening it.
//!
//! A submission's blobs are sealed to its current data key, whose public half is all sealing needs. Opening a
//! blob unwraps the data key its row names with the key ring's master identities, for as long as the open takes.
//! A blob whose key id names no stored data key is either from before data keys (sealed straight to a master
//! identity still in the ring: `keys convert` moves it) or destroyed (its data key is gone: it opens for nobody).

use std::io;
use std::sync::{Arc, RwLock};

use crate::crypto::data_key::{DataKey, DataKeyError};
use crate::crypto::keys::KeyRing;
use crate::crypto::stream::{open_verified, Recipients, VerifiedReader};
use crate::db::DbConn;
use crate::error::{AppError, AppResult};
use crate::models::blob::{self, BlobRow};
use crate::models::data_key::{self, DataKeyRow};
use crate::storage::BlobStore;

/// A freshly made data key, already wrapped. Its secret stays in memory until this is dropped (zeroized then), so
/// that [`WrappedKey::insert_current`] can wrap it again if the master identity changed before it was stored.
#[derive(Debug, Clone)]
pub struct WrappedKey {
    /// The data key's public recipient (`age1...`).
    pub key_id: String,
    /// The secret, age-encrypted to `master_key_id` and the escrow recipients.
    pub wrapped: Vec<u8>,
    /// The master identity it is wrapped to.
    pub master_key_id: String,
    key: Arc<DataKey>,
}

impl WrappedKey {
    /// Makes a new data key and wraps it to the ring's current master identity and the escrow recipients.
    pub fn generate(ring: &KeyRing) -> Result<WrappedKey, DataKeyError> {
        let key = DataKey::generate();
        Ok(WrappedKey {
            key_id: key.key_id(),
            wrapped: key.wrap(ring)?,
            master_key_id: ring.current_key_id().to_owned(),
            key: Arc::new(key),
        })
    }

    /// The row that stores it for `submission_id`, wrapped as it was made. Only for a caller that keeps master-key
    /// rotations out while it works (the CLI under its key lock, tests, benchmarks); the portal stores a new key
    /// with [`WrappedKey::insert_current`].
    pub fn row(&self, submission_id: &str, now: i64) -> DataKeyRow {
        DataKeyRow {
            key_id: self.key_id.clone(),
            submission_id: submission_id.to_owned(),
            wrapped: self.wrapped.clone(),
            master_key_id: self.master_key_id.clone(),
            created_at: now,
        }
    }

    /// The row that stores it for `submission_id`, wrapped to `ring`'s current master identity: as made if that is
    /// still the one it was wrapped to, wrapped again (to it and the escrow recipients) otherwise.
    pub fn row_for(
        &self,
        ring: &KeyRing,
        submission_id: &str,
        now: i64,
    ) -> Result<DataKeyRow, DataKeyError> {
        if ring.current_key_id() == self.master_key_id {
            return Ok(self.row(submission_id, now));
        }
        Ok(DataKeyRow {
            wrapped: self.key.wrap(ring)?,
            master_key_id: ring.current_key_id().to_owned(),
            ..self.row(submission_id, now)
        })
    }

    /// Stores it as `submission_id`'s current data key, inside the caller's transaction, which must hold the audit
    /// chain-head lock (every audited fact takes it first). It was wrapped when it was made, before an upload that
    /// can take minutes; a `keys rotate` meanwhile re-wraps only the keys already stored and may retire the master
    /// identity this one is wrapped to. `keys rotate` retires an identity only under the same lock, so the identity
    /// file as read here stands until this commits: the ring is read again from it if it changed, and the key is
    /// wrapped again to its current identity if that is another one. A key stored after a retirement is never
    /// wrapped to the retired identity alone, and one stored before is counted by the rotation, which keeps the
    /// identity.
    pub fn insert_current(
        &self,
        tx: &mut DbConn,
        submission_id: &str,
        now: i64,
        keys: &RwLock<KeyRing>,
    ) -> AppResult<()> {
        let row = keys
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .as_on_disk(|ring| self.row_for(ring, submission_id, now))
            .map_err(|e| AppError::Internal(format!("reading the changed key ring: {e}")))?
            .map_err(|e| AppError::Internal(format!("wrapping a data key: {e}")))?;
        data_key::insert_current(tx, &row)?;
        Ok(())
    }
}

/// What new blobs of a submission are sealed to: its current data key, or a new one to be stored with them.
#[derive(Debug, Clone)]
pub struct SealingKey {
    /// Whom to seal to.
    pub recipients: Recipients,
    /// A data key made for this save (a new submission, or one from before data keys): stored, and made current,
    /// in the transaction that records the blobs sealed to it.
    pub new: Option<WrappedKey>,
}

impl SealingKey {
    /// A new data key (for a submission that does not exist yet, or has none).
    pub fn generate(ring: &KeyRing) -> Result<SealingKey, DataKeyError> {
        let new = WrappedKey::generate(ring)?;
        let recipients = Recipients::from_key_id(&new.key_id)
            .map_err(|_| DataKeyError::Wrap("a fresh key id did not parse".into()))?;
        Ok(SealingKey {
            recipients,
            new: Some(new),
        })
    }

    /// The key id of the blobs sealed with this.
    pub fn key_id(&self) -> &str {
        self.recipients.key_id()
    }
}

/// The submission's sealing key: its current data key if it has one (only its public half is read). A database
/// that cannot answer is the database's error (a busy or locked one is a 503, as everywhere); a stored key id that
/// is no recipient is an internal one.
pub fn current_recipients(conn: &mut DbConn, submission_id: &str) -> AppResult<Option<Recipients>> {
    let current = data_key::current_of(conn, submission_id)?;
    current
        .map(|k| Recipients::from_key_id(&k))
        .transpose()
        .map_err(|e| AppError::Internal(format!("data key: {e}")))
}

/// A blob's row and the wrapped data key it opens with (`None`: before data keys, or destroyed).
#[derive(Debug, Clone)]
pub struct BlobKeys {
    pub blob: BlobRow,
    pub data_key: Option<DataKeyRow>,
}

/// Reads a blob's row and its wrapped data key.
pub fn blob_keys(conn: &mut DbConn, blob_id: &str) -> diesel::QueryResult<BlobKeys> {
    let blob = blob::find(conn, blob_id)?;
    let data_key = data_key::find(conn, &blob.submission_id, &blob.key_id)?;
    Ok(BlobKeys { blob, data_key })
}

/// Opens a blob for verified, streaming decryption: unwraps its data key with the ring (the unwrapped key is
/// dropped, zeroized, when this returns; the reader keeps only age's per-file stream key), or — for a blob from
/// before data keys — uses the ring's identities directly.
pub fn open_blob(
    store: &dyn BlobStore,
    ring: &KeyRing,
    keys: &BlobKeys,
) -> io::Result<VerifiedReader> {
    let reference = keys
        .blob
        .blob_ref()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    match &keys.data_key {
        Some(row) => {
            let key = unwrap_for(row, ring, &reference.name)?;
            open_verified(store, &reference.name, &key, &reference.ciphertext_sha256)
        }
        None => {
            legacy_identity(ring, keys, &reference.name)?;
            open_verified(store, &reference.name, ring, &reference.ciphertext_sha256)
        }
    }
}

/// [`open_blob`] with the portal's shared ring: the data key is unwrapped under the ring's read lock, which is let go
/// before the store is asked for the blob (a GET on S3, retried for seconds when the store is slow), so that a
/// reload after `keys rotate` (a write lock) waits for no store, and nor does every reader queued behind it. (A blob
/// from before data keys is opened with the ring's identities themselves, under the lock.)
pub fn open_blob_shared(
    store: &dyn BlobStore,
    ring: &RwLock<KeyRing>,
    keys: &BlobKeys,
) -> io::Result<VerifiedReader> {
    let read = || ring.read().unwrap_or_else(|p| p.into_inner());
    let Some(row) = &keys.data_key else {
        return open_blob(store, &read(), keys);
    };
    let reference = keys
        .blob
        .blob_ref()
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
    let key = unwrap_for(row, &read(), &reference.name)?;
    open_verified(store, &reference.name, &key, &reference.ciphertext_sha256)
}

fn unwrap_for(row: &DataKeyRow, ring: &KeyRing, blob_name: &str) -> io::Result<DataKey> {
    DataKey::unwrap(&row.wrapped, ring).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidData,
            format!("blob {blob_name}: data key {}: {e}", row.key_id),
        )
    })
}

/// A blob with no data key row opens with the ring's identities only if it was sealed to one of them (from before
/// data keys); otherwise its data key was destroyed.
fn legacy_identity(ring: &KeyRing, keys: &BlobKeys, blob_name: &str) -> io::Result<()> {
    if ring.contains(&keys.blob.key_id) {
        return Ok(());
    }
    Err(io::Error::new(
        io::ErrorKind::InvalidData,
        format!(
            "blob {blob_name}: its data key {} is not stored (destroyed)",
            keys.blob.key_id
        ),
    ))
}
