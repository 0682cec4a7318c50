//! Blob storage for sealed (age-encrypted) submission files.
//!
//! A [`BlobStore`] holds opaque ciphertext blobs under server-generated random names. It never
//! sees plaintext: the crypto layer (`crypto::stream`) encrypts before writing and decrypts
//! after reading. Two stores implement it: a local directory ([`fs::FsBlobStore`], the default) and
//! an S3 bucket ([`s3::S3BlobStore`], `blob_store = "s3://bucket/prefix"`), for several instances.
//!
//! Writing is two-phase: [`BlobStore::create`] starts a blob under a temporary name, and
//! [`BlobWriter::commit`] makes it durable and visible under its final random name. A writer that
//! is dropped without commit removes its temporary, so an aborted upload leaves nothing behind.

pub mod fs;
pub mod s3;

use std::io;
use std::sync::Arc;
use std::time::Duration;

pub use fs::FsBlobStore;
pub use s3::S3BlobStore;

use crate::config::Settings;

/// The blob store the settings name: the directory `<data_dir>/blobs` when `blob_store` is empty, else the S3
/// bucket of `s3://bucket/prefix`.
pub fn open_configured(settings: &Settings) -> io::Result<Arc<dyn BlobStore>> {
    if settings.blob_store.is_empty() {
        return Ok(Arc::new(FsBlobStore::open(&settings.blob_dir())?));
    }
    let location = s3::S3Location::parse(&settings.blob_store).ok_or_else(|| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            "blob_store must be empty (the data directory) or s3://bucket[/prefix]",
        )
    })?;
    Ok(Arc::new(S3BlobStore::open(
        location,
        &settings.s3_options(),
    )?))
}

/// Length in hex characters of a committed blob name (32 random bytes).
pub const BLOB_NAME_LEN: usize = 64;

/// Bytes free for an unprivileged writer on the filesystem that holds `path`.
pub fn free_space(path: &std::path::Path) -> io::Result<u64> {
    let st = rustix::fs::statvfs(path)?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

/// A store of committed, immutable blobs.
pub trait BlobStore: Send + Sync + 'static {
    /// Starts a new blob under a temporary name; nothing is visible under a final name until commit.
    fn create(&self) -> io::Result<Box<dyn BlobWriter>>;
    /// Opens a committed blob for reading (NotFound if absent).
    fn open(&self, name: &str) -> io::Result<Box<dyn io::Read + Send>>;
    /// Removes a committed blob; Ok if it was already gone.
    fn delete(&self, name: &str) -> io::Result<()>;
    /// Whether a committed blob of that name exists.
    fn exists(&self, name: &str) -> io::Result<bool>;
    /// Committed blob names with their age (for the orphan sweep's grace period).
    fn list(&self) -> io::Result<Vec<(String, Duration)>>;
    /// Removes unfinished temporaries older than `older_than`; returns how many.
    fn sweep_temporaries(&self, older_than: Duration) -> io::Result<usize>;
    /// Whether the store answers now (for `/healthz`).
    fn is_available(&self) -> bool;
    /// Where the blobs are, for messages to the operator (no credentials).
    fn describe(&self) -> String;
}

/// A blob being written. Dropping it without [`BlobWriter::commit`] removes its temporary file.
pub trait BlobWriter: io::Write + Send {
    /// Flushes, fsyncs the file, renames it to a fresh server-generated random name, fsyncs the
    /// directory; returns the name.
    fn commit(self: Box<Self>) -> io::Result<String>;
}

/// Whether `name` has the shape of a committed blob name: exactly 64 lowercase hex digits.
///
/// Every store must check names it is given against this before touching storage, so that a
/// name taken from a database row or a request can never address anything else (no `/`, no `..`).
pub fn is_valid_blob_name(name: &str) -> bool {
    name.len() == BLOB_NAME_LEN
        && name
            .bytes()
            .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Returns `Err(InvalidInput)` unless `name` is a valid blob name. The error does not echo the
/// name (it may come from an attacker).
pub fn check_blob_name(name: &str) -> io::Result<()> {
    if is_valid_blob_name(name) {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "invalid blob name (expected 64 lowercase hex digits)",
        ))
    }
}

/// A fresh random blob name: 32 bytes from the OS CSPRNG, hex-encoded.
pub fn new_blob_name() -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut bytes);
    hex::encode(bytes)
}

/// What the orphan sweep did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Orphans {
    /// Orphans removed.
    pub removed: usize,
    /// Orphans the store failed to remove (the next sweep tries again).
    pub failed: usize,
}

/// Removes committed blobs older than `grace` (so a blob written by another instance whose row is not committed
/// yet survives) that nothing points to: `referenced` gets a batch of names and answers those among them that are
/// in use (all of them when it cannot tell). An error is returned only when the store cannot be listed (nothing
/// was removed then); an orphan the store fails to remove is counted and the sweep goes on (one it can never remove
/// does not keep it from those listed after), stopping after [`ORPHAN_FAILURES_IN_A_ROW`] failures in a row (the
/// store refuses everything now), so that what it did remove is still reported.
pub fn sweep_orphans(
    store: &dyn BlobStore,
    grace: Duration,
    referenced: &mut dyn FnMut(&[String]) -> std::collections::HashSet<String>,
) -> io::Result<Orphans> {
    let old: Vec<String> = store
        .list()?
        .into_iter()
        .filter(|(_, age)| *age >= grace)
        .map(|(name, _)| name)
        .collect();
    let mut swept = Orphans::default();
    let mut failed_in_a_row = 0;
    // Asked a batch at a time: one lookup per blob was two queries for every file the store holds, each sweep.
    for batch in old.chunks(ORPHAN_BATCH) {
        let used = referenced(batch);
        for name in batch.iter().filter(|n| !used.contains(*n)) {
            match store.delete(name) {
                Ok(()) => {
                    tracing::info!(blob = %name, "removed orphaned blob");
                    swept.removed += 1;
                    failed_in_a_row = 0;
                }
                Err(e) => {
                    tracing::warn!(blob = %name, error = %e, "removing an orphaned blob failed");
                    swept.failed += 1;
                    failed_in_a_row += 1;
                    if failed_in_a_row == ORPHAN_FAILURES_IN_A_ROW {
                        return Ok(swept); // the store refuses everything right now; the next sweep retries
                    }
                }
            }
        }
    }
    Ok(swept)
}

/// Failed removals in a row after which the orphan sweep stops for this round.
pub const ORPHAN_FAILURES_IN_A_ROW: usize = 10;

/// Blobs the orphan sweep looks up at once.
pub const ORPHAN_BATCH: usize = 500;
