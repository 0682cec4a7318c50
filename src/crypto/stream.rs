//! Sealing (encrypt + hash + store) and verified opening of blobs.
//!
//! Every blob is an age file encrypted to the key ring's current recipient plus the escrow
//! recipients, with a fresh file key per blob. The caller stores, next to the blob name, the
//! SHA-256 of the ciphertext and of the plaintext ([`SealedBlob`]); [`open_verified`] checks both
//! when the plaintext reaches EOF, so a truncated, altered or swapped blob never reads to a clean
//! end.
//!
//! Plaintext never touches disk: it only exists in memory between the caller and age's
//! `StreamWriter`. Errors never contain plaintext or key material.

use std::io::{self, BufReader, Read, Write};
use std::pin::Pin;
use std::str::FromStr;
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use bytes::Bytes;
use sha2::{Digest, Sha256};
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::mpsc;
use zeroize::Zeroizing;

use super::keys::KeyRing;
use crate::storage::{BlobStore, BlobWriter};
use crate::streaming::{stream_blocking, BlockingBody};
use crate::workers::{self, Task};

/// Largest piece of plaintext handed between pipeline stages; bigger chunks are split.
const PIECE_MAX: usize = 256 * 1024;
/// Pieces queued between the caller and the hashing stage, and between hashing and encryption
/// (each at most [`PIECE_MAX`]).
const PLAINTEXT_QUEUE: usize = 4;
/// Ciphertext batches queued between encryption and writing (each about 64 KiB).
const CIPHERTEXT_QUEUE: usize = 8;
/// Size of ciphertext batches sent to the writing stage (one age chunk is 64 KiB + 16).
const CIPHERTEXT_BATCH: usize = 64 * 1024;
/// Read size for the blocking paths and for async downloads.
const IO_CHUNK: usize = 64 * 1024;

/// What was stored: the blob name plus everything needed to bind it to its database row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SealedBlob {
    /// Name of the committed blob in the store.
    pub name: String,
    /// Key id (`age1...`) of the ring's current identity the blob was sealed to.
    pub key_id: String,
    /// Length of the plaintext in bytes.
    pub plaintext_len: u64,
    /// SHA-256 of the plaintext.
    pub plaintext_sha256: [u8; 32],
    /// Length of the stored ciphertext in bytes.
    pub ciphertext_len: u64,
    /// SHA-256 of the stored ciphertext.
    pub ciphertext_sha256: [u8; 32],
}

impl SealedBlob {
    /// The reference to store in a row and pass to [`open_verified`] / [`reseal`].
    pub fn blob_ref(&self) -> BlobRef {
        BlobRef {
            name: self.name.clone(),
            ciphertext_sha256: self.ciphertext_sha256,
        }
    }
}

/// A stored blob as a database row knows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobRef {
    /// Name of the blob in the store.
    pub name: String,
    /// Expected SHA-256 of the ciphertext.
    pub ciphertext_sha256: [u8; 32],
}

/// Whom a blob is sealed to: a submission's data key (the normal case), or — for the legacy layout
/// and the unit tests — the key ring's current identity plus the escrow recipients.
#[derive(Clone)]
pub struct Recipients {
    key_id: String,
    list: Vec<age::x25519::Recipient>,
}

impl std::fmt::Debug for Recipients {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Recipients")
            .field("key_id", &self.key_id)
            .field("count", &self.list.len())
            .finish()
    }
}

impl Recipients {
    /// One data key: its recipient string is the blob's key id.
    pub fn data_key(recipient: &age::x25519::Recipient) -> Recipients {
        Recipients {
            key_id: recipient.to_string(),
            list: vec![recipient.clone()],
        }
    }

    /// One data key, from its key id (`age1...`, public).
    pub fn from_key_id(key_id: &str) -> io::Result<Recipients> {
        let r = age::x25519::Recipient::from_str(key_id)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, format!("key id: {e}")))?;
        Ok(Recipients::data_key(&r))
    }

    /// The key id recorded with blobs sealed to these recipients.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    fn encryptor(&self) -> io::Result<age::Encryptor> {
        age::Encryptor::with_recipients(self.list.iter().map(|r| r as &dyn age::Recipient))
            .map_err(|e| io::Error::other(format!("cannot encrypt to the recipients: {e}")))
    }
}

impl From<&KeyRing> for Recipients {
    fn from(ring: &KeyRing) -> Recipients {
        // Both are age1 strings the ring itself parsed; a failure here is a bug, not an input error.
        let list = std::iter::once(ring.current_key_id().to_owned())
            .chain(ring.escrow_ids())
            .map(|id| {
                age::x25519::Recipient::from_str(&id).expect("the key ring holds valid recipients")
            })
            .collect();
        Recipients {
            key_id: ring.current_key_id().to_owned(),
            list,
        }
    }
}

/// Whatever holds the identities that may open a blob: a submission's unwrapped data key, or the key ring.
pub trait Identities {
    /// The identities to try, in order.
    fn identities(&self) -> Vec<&dyn age::Identity>;
}

impl Identities for KeyRing {
    fn identities(&self) -> Vec<&dyn age::Identity> {
        KeyRing::identities(self).collect()
    }
}

// ---------------------------------------------------------------------------------------------
// Pipelined sealing
// ---------------------------------------------------------------------------------------------

enum Plain {
    Data(Bytes),
    End,
}

enum Cipher {
    Data(Vec<u8>),
    End,
}

/// First real error seen by any stage (kind + message, or the OS error code; never plaintext).
#[derive(Clone, Default)]
struct ErrorSlot(Arc<Mutex<Option<Recorded>>>);

/// An error as recorded: its kind, its message, its OS error code if it has one.
type Recorded = (io::ErrorKind, String, Option<i32>);

impl ErrorSlot {
    fn record(&self, e: &io::Error) {
        let mut slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        if slot.is_none() {
            *slot = Some((e.kind(), e.to_string(), e.raw_os_error()));
        }
    }

    /// The error again. An OS error comes back as itself: its code is what tells a passing fault (out of file
    /// descriptors: 503) from a bug (500), and a kind alone does not say it.
    fn get(&self) -> Option<io::Error> {
        let slot = self.0.lock().unwrap_or_else(|p| p.into_inner());
        slot.as_ref().map(|(kind, msg, code)| match code {
            Some(code) => io::Error::from_raw_os_error(*code),
            None => io::Error::new(*kind, msg.clone()),
        })
    }
}

type HashOutput = Option<(u64, [u8; 32])>;

/// What the writing stage hands back after a clean end: the uncommitted writer and the
/// ciphertext length and digest.
struct Written {
    writer: Box<dyn BlobWriter>,
    len: u64,
    sha256: [u8; 32],
}

/// Everything the three stages produced, before commit.
struct Joined {
    plaintext_len: u64,
    plaintext_sha256: [u8; 32],
    written: Written,
}

struct Workers {
    hash: Task<HashOutput>,
    encrypt: Task<io::Result<bool>>,
    write: Task<io::Result<Option<Written>>>,
}

impl Workers {
    /// Waits for all three stages (blocking).
    fn join(self, errors: &ErrorSlot) -> io::Result<Joined> {
        let hashed = self.hash.join()?;
        let encrypted = self.encrypt.join()?;
        let written = self.write.join()?;
        if let Some(e) = errors.get() {
            return Err(e);
        }
        let stopped = || io::Error::other("blob sealing pipeline stopped");
        if !encrypted? {
            return Err(stopped());
        }
        let written = written?.ok_or_else(stopped)?;
        let (plaintext_len, plaintext_sha256) = hashed.ok_or_else(stopped)?;
        Ok(Joined {
            plaintext_len,
            plaintext_sha256,
            written,
        })
    }
}

/// Hands ciphertext from age's `StreamWriter` to the writing stage in ~64 KiB batches.
struct ChannelWriter {
    tx: std_mpsc::SyncSender<Cipher>,
    batch: Vec<u8>,
}

impl ChannelWriter {
    fn send_batch(&mut self) -> io::Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::replace(&mut self.batch, Vec::with_capacity(CIPHERTEXT_BATCH + 64));
        self.tx
            .send(Cipher::Data(batch))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "blob writer stopped"))
    }

    fn end(mut self) -> io::Result<()> {
        self.send_batch()?;
        self.tx
            .send(Cipher::End)
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "blob writer stopped"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.batch.extend_from_slice(buf);
        if self.batch.len() >= CIPHERTEXT_BATCH {
            self.send_batch()?;
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send_batch()
    }
}

/// A pipelined encryptor for uploads, fed from async code.
///
/// Three stages run in parallel on reused [`workers`] threads: (1) SHA-256 of the plaintext,
/// (2) age encryption (`StreamWriter`, fresh file key), (3) SHA-256 of the ciphertext and
/// writing to the [`BlobWriter`]. The queues between them are bounded (pieces of at most
/// 256 KiB), so only a few MiB are in flight whatever the size of the chunks fed in.
///
/// [`BlobSealer::finish`] commits the blob; dropping the sealer without `finish` aborts: the
/// threads stop and the temporary file is removed (asynchronously; use [`BlobSealer::abort`] to
/// wait for it).
pub struct BlobSealer {
    tx: Option<mpsc::Sender<Plain>>,
    workers: Option<Workers>,
    errors: ErrorSlot,
    key_id: String,
    plaintext_len: u64,
    /// Set while a write is in progress; stays set if it was cancelled or failed.
    poisoned: bool,
}

impl std::fmt::Debug for BlobSealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlobSealer")
            .field("key_id", &self.key_id)
            .field("plaintext_len", &self.plaintext_len)
            .finish_non_exhaustive()
    }
}

impl BlobSealer {
    /// Starts the stages and a new blob in `store`, encrypted to
    /// `keys.encryption_recipients()`. Does no blocking I/O on the calling thread.
    pub fn start(store: Arc<dyn BlobStore>, to: &Recipients) -> io::Result<BlobSealer> {
        let encryptor = to.encryptor()?;
        let errors = ErrorSlot::default();
        let (tx1, rx1) = mpsc::channel::<Plain>(PLAINTEXT_QUEUE);
        let (tx2, rx2) = std_mpsc::sync_channel::<Plain>(PLAINTEXT_QUEUE);
        let (tx3, rx3) = std_mpsc::sync_channel::<Cipher>(CIPHERTEXT_QUEUE);

        // If a spawn fails, the channels of the stages already started are dropped with this
        // frame, so they see a disconnect and stop without committing anything.
        let write = {
            let errors = errors.clone();
            workers::spawn(move || {
                let result = write_stage(&*store, &rx3);
                if let Err(e) = &result {
                    errors.record(e);
                }
                // The receiver goes only now, after the error is recorded, so the root cause
                // wins over the "writer stopped" seen upstream.
                drop(rx3);
                result
            })?
        };
        let encrypt = {
            let errors = errors.clone();
            workers::spawn(move || {
                let result = encrypt_stage(encryptor, &rx2, tx3);
                if let Err(e) = &result {
                    errors.record(e);
                }
                drop(rx2);
                result
            })?
        };
        let hash = workers::spawn(move || hash_stage(rx1, tx2))?;

        Ok(BlobSealer {
            tx: Some(tx1),
            workers: Some(Workers {
                hash,
                encrypt,
                write,
            }),
            errors,
            key_id: to.key_id().to_owned(),
            plaintext_len: 0,
            poisoned: false,
        })
    }

    /// Plaintext bytes accepted so far (for enforcing size limits as bytes arrive).
    pub fn plaintext_len(&self) -> u64 {
        self.plaintext_len
    }

    /// Key id the blob is being sealed to.
    pub fn key_id(&self) -> &str {
        &self.key_id
    }

    fn failure(&self) -> io::Error {
        self.errors.get().unwrap_or_else(|| {
            io::Error::other(
                "blob sealing pipeline stopped (an earlier write failed or was cancelled)",
            )
        })
    }

    /// Feeds plaintext. Awaits (without blocking the executor) while the pipeline is full.
    /// If this future is cancelled, the sealer is unusable and must be dropped.
    pub async fn write(&mut self, mut chunk: Bytes) -> io::Result<()> {
        if self.poisoned {
            return Err(self.failure());
        }
        let Some(tx) = self.tx.as_ref() else {
            return Err(self.failure());
        };
        self.poisoned = true;
        while !chunk.is_empty() {
            let piece = if chunk.len() > PIECE_MAX {
                chunk.split_to(PIECE_MAX)
            } else {
                std::mem::take(&mut chunk)
            };
            let len = piece.len() as u64;
            if tx.send(Plain::Data(piece)).await.is_err() {
                return Err(self.failure());
            }
            self.plaintext_len += len;
        }
        self.poisoned = false;
        Ok(())
    }

    /// Ends the plaintext, finishes the age stream (`StreamWriter::finish`), waits for the
    /// workers on a blocking thread, then commits the blob (fsync + rename + directory fsync).
    ///
    /// If this future is dropped after the end was signalled, the blob may still be committed
    /// without anyone recording it; the orphan sweep removes it after its grace period.
    pub async fn finish(mut self) -> io::Result<SealedBlob> {
        if self.poisoned {
            return Err(self.failure());
        }
        let tx = self.tx.take().ok_or_else(|| self.failure())?;
        if tx.send(Plain::End).await.is_err() {
            return Err(self.failure());
        }
        drop(tx);
        let workers = self.workers.take().ok_or_else(|| self.failure())?;
        let errors = self.errors.clone();
        let key_id = std::mem::take(&mut self.key_id);
        let expected_len = self.plaintext_len;
        tokio::task::spawn_blocking(move || {
            let joined = workers.join(&errors)?;
            if joined.plaintext_len != expected_len {
                return Err(io::Error::other("blob sealing lost plaintext"));
            }
            let Written {
                writer,
                len: ciphertext_len,
                sha256: ciphertext_sha256,
            } = joined.written;
            let name = writer.commit()?;
            Ok(SealedBlob {
                name,
                key_id,
                plaintext_len: joined.plaintext_len,
                plaintext_sha256: joined.plaintext_sha256,
                ciphertext_len,
                ciphertext_sha256,
            })
        })
        .await
        .map_err(|_| io::Error::other("blob sealing task failed"))?
    }

    /// Aborts and waits until the workers have stopped and the temporary file is gone.
    pub async fn abort(mut self) {
        self.tx = None;
        if let Some(workers) = self.workers.take() {
            let errors = self.errors.clone();
            let _ = tokio::task::spawn_blocking(move || {
                // Without an end marker every stage stops and the writer is dropped uncommitted.
                let _ = workers.join(&errors);
            })
            .await;
        }
    }
}

impl Drop for BlobSealer {
    fn drop(&mut self) {
        if let Some(workers) = self.workers.take() {
            // Closing the input without an end marker makes every stage stop; the writing stage
            // drops its BlobWriter, which removes the temporary. The stages are not waited for,
            // so that dropping never blocks the async executor.
            self.tx = None;
            drop(workers);
            tracing::debug!("blob sealing aborted");
        }
    }
}

fn hash_stage(mut rx: mpsc::Receiver<Plain>, tx: std_mpsc::SyncSender<Plain>) -> HashOutput {
    let mut hasher = Sha256::new();
    let mut len = 0u64;
    loop {
        match rx.blocking_recv()? {
            Plain::Data(piece) => {
                // Forward first (a cheap reference count) so encryption runs while we hash.
                tx.send(Plain::Data(piece.clone())).ok()?;
                hasher.update(&piece);
                len += piece.len() as u64;
            }
            Plain::End => {
                tx.send(Plain::End).ok()?;
                return Some((len, hasher.finalize().into()));
            }
        }
    }
}

/// Returns `Ok(true)` when the age stream was finished, `Ok(false)` when aborted.
fn encrypt_stage(
    encryptor: age::Encryptor,
    rx: &std_mpsc::Receiver<Plain>,
    tx: std_mpsc::SyncSender<Cipher>,
) -> io::Result<bool> {
    let out = ChannelWriter {
        tx,
        batch: Vec::with_capacity(CIPHERTEXT_BATCH + 64),
    };
    let mut stream = encryptor.wrap_output(out)?;
    loop {
        match rx.recv() {
            Ok(Plain::Data(piece)) => stream.write_all(&piece)?,
            Ok(Plain::End) => {
                // Without finish() the last chunk is missing and the file would not decrypt.
                stream.finish()?.end()?;
                return Ok(true);
            }
            // Aborted: the StreamWriter and its sender are dropped unfinished.
            Err(_) => return Ok(false),
        }
    }
}

fn write_stage(
    store: &dyn BlobStore,
    rx: &std_mpsc::Receiver<Cipher>,
) -> io::Result<Option<Written>> {
    let mut writer = store.create()?;
    let mut hasher = Sha256::new();
    let mut len = 0u64;
    loop {
        match rx.recv() {
            Ok(Cipher::Data(batch)) => {
                hasher.update(&batch);
                writer.write_all(&batch)?;
                len += batch.len() as u64;
            }
            Ok(Cipher::End) => {
                writer.flush()?;
                return Ok(Some(Written {
                    writer,
                    len,
                    sha256: hasher.finalize().into(),
                }));
            }
            // Aborted: dropping the writer removes the temporary.
            Err(_) => return Ok(None),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Blocking sealing
// ---------------------------------------------------------------------------------------------

/// Write adapter that hashes and counts what passes through.
struct HashingWriter<W> {
    inner: W,
    hasher: Sha256,
    len: u64,
}

impl<W: Write> Write for HashingWriter<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.hasher.update(&buf[..n]);
        self.len += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

/// Seals everything `reader` yields on the calling thread (blocking): for small documents, the
/// CLI and [`reseal`]. The blob is committed only if `reader` reaches EOF without error.
pub fn seal_reader(
    store: &dyn BlobStore,
    to: &Recipients,
    mut reader: impl Read,
) -> io::Result<SealedBlob> {
    let encryptor = to.encryptor()?;
    let writer = store.create()?;
    let mut stream = encryptor.wrap_output(HashingWriter {
        inner: writer,
        hasher: Sha256::new(),
        len: 0,
    })?;
    let mut hasher = Sha256::new();
    let mut plaintext_len = 0u64;
    let mut buf = Zeroizing::new(vec![0u8; IO_CHUNK]);
    loop {
        let n = match reader.read(&mut buf[..]) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // The writer (and its temporary) is dropped on the way out.
            Err(e) => return Err(e),
        };
        hasher.update(&buf[..n]);
        plaintext_len += n as u64;
        stream.write_all(&buf[..n])?;
    }
    let mut out = stream.finish()?;
    out.flush()?;
    let name = out.inner.commit()?;
    Ok(SealedBlob {
        name,
        key_id: to.key_id().to_owned(),
        plaintext_len,
        plaintext_sha256: hasher.finalize().into(),
        ciphertext_len: out.len,
        ciphertext_sha256: out.hasher.finalize().into(),
    })
}

// ---------------------------------------------------------------------------------------------
// Verified reading
// ---------------------------------------------------------------------------------------------

/// The raw blob plus a running hash of every byte taken from it.
struct Tap {
    inner: Box<dyn Read + Send>,
    hasher: Sha256,
    len: u64,
}

#[derive(Clone)]
struct TapReader(Arc<Mutex<Tap>>);

impl Read for TapReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mut tap = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = tap.inner.read(buf)?;
        tap.hasher.update(&buf[..n]);
        tap.len += n as u64;
        Ok(n)
    }
}

enum ReadState {
    Reading,
    Verified,
    Failed(io::ErrorKind, String),
}

/// Decrypts a blob as it is read and, at the end of the plaintext, checks the SHA-256 of the
/// ciphertext against its record. age authenticates every 64 KiB chunk and marks the last one, so a
/// changed or truncated plaintext cannot read to the end; the ciphertext digest binds the row to
/// exactly this file (no swapped or re-encrypted copy, nothing appended). No plaintext digest is
/// kept in clear: it would let anyone holding a copy of the database confirm a guessed file. Any mismatch, truncation or decryption failure makes `read`
/// return an error (`InvalidData` for integrity failures) instead of `Ok(0)`, and every later
/// read returns the same error: only a fully verified blob reads to a clean EOF.
///
/// Bytes returned before the end are not yet verified: a consumer must treat the content as
/// complete only once `read` returned `Ok(0)`.
pub struct VerifiedReader {
    name: String,
    stream: age::stream::StreamReader<BufReader<TapReader>>,
    tap: TapReader,
    len: u64,
    expected_ciphertext_sha256: [u8; 32],
    state: ReadState,
}

impl std::fmt::Debug for VerifiedReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VerifiedReader")
            .field("name", &self.name)
            .field("plaintext_read", &self.len)
            .finish_non_exhaustive()
    }
}

fn decrypt_error(name: &str, e: age::DecryptError) -> io::Error {
    match e {
        age::DecryptError::Io(e) => io::Error::new(e.kind(), format!("blob {name}: {e}")),
        age::DecryptError::NoMatchingKeys => io::Error::new(
            io::ErrorKind::InvalidData,
            format!("blob {name}: no identity in the key ring can decrypt it"),
        ),
        e => io::Error::new(
            io::ErrorKind::InvalidData,
            format!("blob {name} cannot be decrypted: {e}"),
        ),
    }
}

/// Opens a blob for verified, streaming decryption with any identity of `identities`.
///
/// Fails early (NotFound, no matching key, bad header); everything else is reported by
/// [`VerifiedReader`]'s `read`.
pub fn open_verified(
    store: &dyn BlobStore,
    name: &str,
    identities: &dyn Identities,
    expected_ciphertext_sha256: &[u8; 32],
) -> io::Result<VerifiedReader> {
    let tap = TapReader(Arc::new(Mutex::new(Tap {
        inner: store.open(name)?,
        hasher: Sha256::new(),
        len: 0,
    })));
    let input = BufReader::with_capacity(IO_CHUNK, tap.clone());
    let decryptor = age::Decryptor::new_buffered(input).map_err(|e| decrypt_error(name, e))?;
    let stream = decryptor
        .decrypt(identities.identities().into_iter())
        .map_err(|e| decrypt_error(name, e))?;
    Ok(VerifiedReader {
        name: name.to_owned(),
        stream,
        tap,
        len: 0,
        expected_ciphertext_sha256: *expected_ciphertext_sha256,
        state: ReadState::Reading,
    })
}

impl VerifiedReader {
    /// Plaintext bytes returned so far.
    pub fn plaintext_read(&self) -> u64 {
        self.len
    }

    fn fail(&mut self, kind: io::ErrorKind, msg: String) -> io::Error {
        tracing::warn!(blob = %self.name, error = %msg, "blob failed verification");
        self.state = ReadState::Failed(kind, msg.clone());
        io::Error::new(kind, msg)
    }

    /// Called when the plaintext ended cleanly: hash whatever follows the final age chunk (so
    /// appended bytes are caught) and compare the ciphertext digest.
    fn verify(&mut self) -> io::Result<usize> {
        if let Err(e) = io::copy(&mut self.tap.clone(), &mut io::sink()) {
            return Err(self.fail(e.kind(), format!("blob {}: {e}", self.name)));
        }
        let ciphertext_sha256: [u8; 32] = {
            let mut tap = self.tap.0.lock().unwrap_or_else(|p| p.into_inner());
            std::mem::take(&mut tap.hasher).finalize().into()
        };
        if ciphertext_sha256 != self.expected_ciphertext_sha256 {
            return Err(self.fail(
                io::ErrorKind::InvalidData,
                format!(
                    "blob {}: ciphertext SHA-256 does not match its record",
                    self.name
                ),
            ));
        }
        self.state = ReadState::Verified;
        Ok(0)
    }
}

impl Read for VerifiedReader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &self.state {
            ReadState::Reading => {}
            ReadState::Verified => return Ok(0),
            ReadState::Failed(kind, msg) => return Err(io::Error::new(*kind, msg.clone())),
        }
        if buf.is_empty() {
            return Ok(0);
        }
        match self.stream.read(buf) {
            Ok(0) => self.verify(),
            Ok(n) => {
                self.len += n as u64;
                Ok(n)
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Err(e),
            Err(e) => {
                // age reports a missing final chunk as UnexpectedEof and a bad chunk as
                // InvalidData; both are integrity failures of the stored blob.
                let kind = match e.kind() {
                    io::ErrorKind::UnexpectedEof | io::ErrorKind::InvalidData => {
                        io::ErrorKind::InvalidData
                    }
                    other => other,
                };
                let msg = format!("blob {} failed to decrypt: {e}", self.name);
                Err(self.fail(kind, msg))
            }
        }
    }
}

/// A [`VerifiedReader`] held to the plaintext length its row records, for a response that declares that length:
/// a byte more is an error, an end before it is an error, and the last byte is given only once the blob has
/// verified (its ciphertext digest checked). A longer blob copied over this one (same data key, so it decrypts)
/// would otherwise fill the declared length and end as a complete download before the digest check ran.
pub struct ExactVerified {
    inner: VerifiedReader,
    left: u64,
}

impl ExactVerified {
    pub fn new(inner: VerifiedReader, len: u64) -> Self {
        ExactVerified { inner, left: len }
    }

    fn wrong_length(&mut self, what: &str) -> io::Error {
        let msg = format!("blob {}: {what} than its recorded length", self.inner.name);
        self.inner.fail(io::ErrorKind::InvalidData, msg)
    }

    /// True once the reader has reached its verified end; an error if anything follows.
    fn ends_verified(&mut self) -> io::Result<()> {
        let mut extra = [0u8; 1];
        loop {
            match self.inner.read(&mut extra) {
                Ok(0) => return Ok(()),
                Ok(_) => return Err(self.wrong_length("longer")),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    }
}

impl Read for ExactVerified {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        if self.left == 0 {
            // An empty file, or the end: nothing is returned before the blob verified.
            self.ends_verified()?;
            return Ok(0);
        }
        if self.left == 1 {
            let mut last = [0u8; 1];
            if self.inner.read(&mut last)? == 0 {
                return Err(self.wrong_length("shorter"));
            }
            self.ends_verified()?;
            self.left = 0;
            buf[0] = last[0];
            return Ok(1);
        }
        // All but the last byte may go as they come.
        let want = buf
            .len()
            .min(usize::try_from(self.left - 1).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(self.wrong_length("shorter"));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

// ---------------------------------------------------------------------------------------------
// Async download
// ---------------------------------------------------------------------------------------------

/// An `AsyncRead` over a [`VerifiedReader`] running on its own thread: reaches EOF only after
/// the blob verified; any failure surfaces as an `io::Error` from `poll_read`.
/// Dropping it stops the thread.
pub struct AsyncBlobReader {
    inner: BlockingBody,
}

impl std::fmt::Debug for AsyncBlobReader {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncBlobReader").finish_non_exhaustive()
    }
}

impl AsyncRead for AsyncBlobReader {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

/// Moves a [`VerifiedReader`] to a blocking thread that decrypts in 64 KiB pieces into a small
/// bounded channel ([`stream_blocking`]), and returns the async side, for streaming an HTTP response.
///
/// Open the reader first (e.g. in `spawn_blocking`), so that a missing blob or a wrong key is an
/// error before any response is started.
pub fn decrypt_to_async(mut reader: impl Read + Send + 'static) -> io::Result<AsyncBlobReader> {
    let inner = stream_blocking("blob download", move |out| {
        // Plaintext: wiped when the download ends.
        let mut buf = zeroize::Zeroizing::new(vec![0u8; IO_CHUNK]);
        loop {
            match reader.read(&mut buf) {
                // EOF from a VerifiedReader (or an ExactVerified) means the blob verified.
                Ok(0) => return Ok(()),
                Ok(n) => out.write_all(&buf[..n])?,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
    });
    Ok(AsyncBlobReader { inner })
}

// ---------------------------------------------------------------------------------------------
// Re-encryption
// ---------------------------------------------------------------------------------------------

/// Decrypts `old` with `from` and re-encrypts it to `to` into a new blob, verifying the old blob
/// on the way (a tampered blob is refused and leaves nothing). Does not delete the old blob: the
/// caller does, after its row commits.
pub fn reseal(
    store: &dyn BlobStore,
    old: &BlobRef,
    from: &dyn Identities,
    to: &Recipients,
) -> io::Result<SealedBlob> {
    let reader = open_verified(store, &old.name, from, &old.ciphertext_sha256)?;
    // seal_reader commits only after the reader reached a verified EOF.
    seal_reader(store, to, reader)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_os_error_a_stage_meets_keeps_its_code() {
        let slot = ErrorSlot::default();
        slot.record(&io::Error::from_raw_os_error(24));
        slot.record(&io::Error::other("later"));
        let again = slot.get().unwrap();
        assert_eq!(again.raw_os_error(), Some(24));
        assert!(matches!(
            crate::error::AppError::io("sealing an upload", again),
            crate::error::AppError::Unavailable(_)
        ));
        let slot = ErrorSlot::default();
        slot.record(&io::Error::new(io::ErrorKind::InvalidData, "bad"));
        let again = slot.get().unwrap();
        assert_eq!(
            (again.kind(), again.to_string()),
            (io::ErrorKind::InvalidData, "bad".into())
        );
    }
    use crate::storage::FsBlobStore;
    use std::fs;
    use std::path::Path;
    use std::time::{Duration, Instant};
    use tokio::io::AsyncReadExt;

    const MARKER: &[u8] = b"PCII-MARKER-7f3a9c-CONFIDENTIAL";
    const MIB: usize = 1024 * 1024;

    struct Env {
        _tmp: tempfile::TempDir,
        blob_dir: std::path::PathBuf,
        store: Arc<dyn BlobStore>,
        ring: KeyRing,
    }

    fn env() -> Env {
        env_with_escrow(&[])
    }

    fn env_with_escrow(escrow: &[String]) -> Env {
        let tmp = tempfile::tempdir().unwrap();
        let blob_dir = tmp.path().join("blobs");
        let store: Arc<dyn BlobStore> = Arc::new(FsBlobStore::open(&blob_dir).unwrap());
        let (ring, _) = KeyRing::load_or_generate(&tmp.path().join("keys"), escrow).unwrap();
        Env {
            _tmp: tmp,
            blob_dir,
            store,
            ring,
        }
    }

    /// Pseudo-random bytes with the marker sprinkled in.
    fn data(len: usize) -> Vec<u8> {
        let mut x: u64 = 0x9E37_79B9_7F4A_7C15 ^ len as u64;
        let mut v: Vec<u8> = (0..len)
            .map(|_| {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                x as u8
            })
            .collect();
        let mut i = 0;
        while i + MARKER.len() <= len {
            v[i..i + MARKER.len()].copy_from_slice(MARKER);
            i += 4096;
        }
        v
    }

    fn sha(b: &[u8]) -> [u8; 32] {
        Sha256::digest(b).into()
    }

    fn contains(hay: &[u8], needle: &[u8]) -> bool {
        hay.windows(needle.len()).any(|w| w == needle)
    }

    /// The store's files but its own lock file (`.owner-*`).
    fn dir_files(dir: &Path) -> Vec<std::path::PathBuf> {
        fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                !p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with(".owner-")
            })
            .collect()
    }

    async fn seal_async(env: &Env, input: &[u8], chunk: usize) -> SealedBlob {
        let mut sealer =
            BlobSealer::start(env.store.clone(), &Recipients::from(&env.ring)).unwrap();
        let all = Bytes::copy_from_slice(input);
        let mut off = 0;
        while off < all.len() {
            let end = (off + chunk).min(all.len());
            sealer.write(all.slice(off..end)).await.unwrap();
            off = end;
            assert_eq!(sealer.plaintext_len(), off as u64);
        }
        sealer.finish().await.unwrap()
    }

    fn read_back(env: &Env, r: &BlobRef, ring: &KeyRing) -> io::Result<Vec<u8>> {
        let mut reader = open_verified(&*env.store, &r.name, ring, &r.ciphertext_sha256)?;
        let mut out = Vec::new();
        reader.read_to_end(&mut out)?;
        // Stays at a clean EOF.
        assert_eq!(reader.read(&mut [0u8; 16])?, 0);
        Ok(out)
    }

    async fn read_back_async(env: &Env, r: &BlobRef) -> io::Result<Vec<u8>> {
        let reader = open_verified(&*env.store, &r.name, &env.ring, &r.ciphertext_sha256)?;
        let mut out = Vec::new();
        decrypt_to_async(reader)?.read_to_end(&mut out).await?;
        Ok(out)
    }

    fn check_sealed(env: &Env, sealed: &SealedBlob, input: &[u8]) {
        assert_eq!(sealed.plaintext_len, input.len() as u64);
        assert_eq!(sealed.plaintext_sha256, sha(input));
        assert_eq!(sealed.key_id, env.ring.current_key_id());
        let stored = fs::read(env.blob_dir.join(&sealed.name)).unwrap();
        assert_eq!(sealed.ciphertext_len, stored.len() as u64);
        assert_eq!(sealed.ciphertext_sha256, sha(&stored));
        assert!(stored.starts_with(b"age-encryption.org/v1\n"));
        assert!(
            !contains(&stored, MARKER),
            "plaintext marker in the stored blob"
        );
        // Only the committed blob is left: no temporaries.
        let files = dir_files(&env.blob_dir);
        assert!(files
            .iter()
            .all(|p| !p.file_name().unwrap().to_string_lossy().starts_with('.')));
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn pipeline_round_trip_sizes() {
        let env = env();
        for (len, chunk) in [
            (0, 1),
            (1, 1),
            (64 * 1024, 10_000),
            (128 * 1024 + 1, 64 * 1024),
            (5 * MIB, 64 * 1024),
            (5 * MIB, 3 * MIB), // larger than a piece: split
        ] {
            let input = data(len);
            let sealed = seal_async(&env, &input, chunk).await;
            check_sealed(&env, &sealed, &input);
            assert_eq!(
                read_back(&env, &sealed.blob_ref(), &env.ring).unwrap(),
                input
            );
            assert_eq!(
                read_back_async(&env, &sealed.blob_ref()).await.unwrap(),
                input
            );
        }
    }

    #[test]
    fn seal_reader_round_trip_sizes() {
        let env = env();
        for len in [0, 1, 64 * 1024, 5 * MIB] {
            let input = data(len);
            let sealed =
                seal_reader(&*env.store, &Recipients::from(&env.ring), &input[..]).unwrap();
            check_sealed(&env, &sealed, &input);
            assert_eq!(
                read_back(&env, &sealed.blob_ref(), &env.ring).unwrap(),
                input
            );
        }
    }

    #[test]
    fn each_blob_gets_a_fresh_file_key() {
        let env = env();
        let input = data(1000);
        let a = seal_reader(&*env.store, &Recipients::from(&env.ring), &input[..]).unwrap();
        let b = seal_reader(&*env.store, &Recipients::from(&env.ring), &input[..]).unwrap();
        assert_eq!(a.plaintext_sha256, b.plaintext_sha256);
        assert_ne!(a.ciphertext_sha256, b.ciphertext_sha256);
    }

    /// The failure must be an error, never a clean EOF, and must not echo plaintext.
    fn assert_fails(result: io::Result<Vec<u8>>, what: &str) {
        let err = result.expect_err(what);
        let shown = format!("{err} {err:?}");
        assert!(!contains(shown.as_bytes(), MARKER), "{what}: {shown}");
    }

    fn sealed_with_file(env: &Env, len: usize) -> (SealedBlob, Vec<u8>, std::path::PathBuf) {
        let sealed =
            seal_reader(&*env.store, &Recipients::from(&env.ring), &data(len)[..]).unwrap();
        let path = env.blob_dir.join(&sealed.name);
        let bytes = fs::read(&path).unwrap();
        (sealed, bytes, path)
    }

    #[test]
    fn flipped_byte_never_reads_clean() {
        let env = env();
        let (sealed, original, path) = sealed_with_file(&env, 300 * 1024);
        let header_end = original.windows(4).position(|w| w == b"\n---").unwrap();
        let n = original.len();
        for pos in [
            0,
            5,
            30,
            header_end + 2,
            header_end + 60,
            n / 2,
            n - 17,
            n - 1,
        ] {
            for bit in [0x01u8, 0x80] {
                let mut bytes = original.clone();
                bytes[pos] ^= bit;
                fs::write(&path, &bytes).unwrap();
                assert_fails(
                    read_back(&env, &sealed.blob_ref(), &env.ring),
                    &format!("flip at {pos}"),
                );
            }
        }
        fs::write(&path, &original).unwrap();
        assert!(read_back(&env, &sealed.blob_ref(), &env.ring).is_ok());
    }

    #[test]
    fn truncated_or_extended_blob_never_reads_clean() {
        let env = env();
        // 128 KiB: two full chunks, so dropping the whole last chunk ends on a chunk boundary.
        for len in [0, 1000, 128 * 1024, 300 * 1024] {
            let (sealed, original, path) = sealed_with_file(&env, len);
            let n = original.len();
            let mut cuts = vec![0, 10, n / 2, n - 1, n - 16];
            if len == 128 * 1024 {
                cuts.push(n - (64 * 1024 + 16));
            }
            for cut in cuts {
                fs::write(&path, &original[..cut]).unwrap();
                assert_fails(
                    read_back(&env, &sealed.blob_ref(), &env.ring),
                    &format!("len {len} cut at {cut}"),
                );
            }
            // Trailing bytes after the final chunk.
            let mut longer = original.clone();
            longer.extend_from_slice(b"x");
            fs::write(&path, &longer).unwrap();
            assert_fails(
                read_back(&env, &sealed.blob_ref(), &env.ring),
                "appended byte",
            );
            // Restored: reads again.
            fs::write(&path, &original).unwrap();
            assert_eq!(
                read_back(&env, &sealed.blob_ref(), &env.ring).unwrap(),
                data(len)
            );
        }
    }

    #[test]
    fn swapped_blob_never_reads_clean() {
        let env = env();
        let (a, _, a_path) = sealed_with_file(&env, 5000);
        let (b, b_bytes, _) = sealed_with_file(&env, 7000);
        // The row of A pointing at B's blob.
        let mut wrong = a.blob_ref();
        wrong.name = b.name.clone();
        assert_fails(
            read_back(&env, &wrong, &env.ring),
            "row points at another blob",
        );
        // B's bytes copied over A's file.
        fs::write(&a_path, &b_bytes).unwrap();
        assert_fails(read_back(&env, &a.blob_ref(), &env.ring), "blob replaced");
        // Same plaintext, fresh encryption (valid age, right plaintext digest) is still caught
        // by the ciphertext digest.
        let same = seal_reader(&*env.store, &Recipients::from(&env.ring), &data(7000)[..]).unwrap();
        let mut r = b.blob_ref();
        r.name = same.name;
        assert_fails(read_back(&env, &r, &env.ring), "re-encrypted copy");
    }

    /// Every blob of a submission is sealed to one data key, so age alone would accept another of them (or an
    /// older copy) in a file's place: the ciphertext digest of the row is what refuses it, also in large blobs.
    #[test]
    fn a_blob_of_the_same_key_swapped_in_or_changed_late_is_refused() {
        let env = env();
        let len = 3 * MIB + 12_345;
        let (sealed, original, path) = sealed_with_file(&env, len);
        assert_eq!(
            read_back(&env, &sealed.blob_ref(), &env.ring).unwrap(),
            data(len)
        );
        let (other, other_bytes, _) = sealed_with_file(&env, len);
        fs::write(&path, &other_bytes).unwrap();
        assert_fails(
            read_back(&env, &sealed.blob_ref(), &env.ring),
            "swapped for a blob of the same key",
        );
        let mut wrong = other.blob_ref();
        wrong.ciphertext_sha256 = sealed.ciphertext_sha256;
        assert_fails(read_back(&env, &wrong, &env.ring), "row of another blob");
        let mut flipped = original.clone();
        flipped[2 * MIB] ^= 1;
        fs::write(&path, &flipped).unwrap();
        assert_fails(
            read_back(&env, &sealed.blob_ref(), &env.ring),
            "flipped late",
        );
        let mut longer = original.clone();
        longer.extend_from_slice(b"tail");
        fs::write(&path, &longer).unwrap();
        assert_fails(
            read_back(&env, &sealed.blob_ref(), &env.ring),
            "appended tail",
        );
    }

    #[test]
    fn failures_are_sticky() {
        let env = env();
        let (sealed, mut bytes, path) = sealed_with_file(&env, 200 * 1024);
        let mid = bytes.len() / 2;
        bytes[mid] ^= 1;
        fs::write(&path, &bytes).unwrap();
        let r = sealed.blob_ref();
        let mut reader =
            open_verified(&*env.store, &r.name, &env.ring, &r.ciphertext_sha256).unwrap();
        let mut buf = vec![0u8; 8192];
        let err = loop {
            match reader.read(&mut buf) {
                Ok(0) => panic!("clean EOF on a tampered blob"),
                Ok(_) => {}
                Err(e) => break e,
            }
        };
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        for _ in 0..3 {
            assert!(reader.read(&mut buf).is_err());
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn async_download_surfaces_errors() {
        let env = env();
        let (sealed, mut bytes, path) = sealed_with_file(&env, MIB);
        let mid = bytes.len() / 2;
        bytes[mid] ^= 0x10;
        fs::write(&path, &bytes).unwrap();
        let r = sealed.blob_ref();
        let reader = open_verified(&*env.store, &r.name, &env.ring, &r.ciphertext_sha256).unwrap();
        let mut body = decrypt_to_async(reader).unwrap();
        let mut got = Vec::new();
        let err = body.read_to_end(&mut got).await.unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(got.len() < MIB);
        // Still an error, not EOF, if polled again.
        assert!(body.read(&mut [0u8; 10]).await.is_err());

        // Truncated: also an error through the async path.
        bytes[mid] ^= 0x10;
        fs::write(&path, &bytes[..bytes.len() - 1]).unwrap();
        assert_fails(read_back_async(&env, &r).await, "async truncated");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dropped_async_reader_stops_thread() {
        let env = env();
        let (sealed, _, _) = sealed_with_file(&env, 2 * MIB);
        let r = sealed.blob_ref();
        let reader = open_verified(&*env.store, &r.name, &env.ring, &r.ciphertext_sha256).unwrap();
        let mut body = decrypt_to_async(reader).unwrap();
        let mut first = [0u8; 100];
        body.read_exact(&mut first).await.unwrap();
        assert_eq!(&first[..], &data(2 * MIB)[..100]);
        drop(body); // the pump thread sees the closed channel and exits
    }

    #[test]
    fn missing_blob_and_wrong_key() {
        let other = env();
        let env = env();
        let (sealed, _, _) = sealed_with_file(&env, 100);
        let r = sealed.blob_ref();
        let err = open_verified(&*env.store, &"0".repeat(64), &env.ring, &[0; 32]).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
        let err = open_verified(
            &*env.store,
            "../keys/age-identities.txt",
            &env.ring,
            &[0; 32],
        )
        .unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        let err =
            open_verified(&*env.store, &r.name, &other.ring, &r.ciphertext_sha256).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("no identity"), "{err}");
    }

    fn wait_until_empty(dir: &Path) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !dir_files(dir).is_empty() {
            assert!(
                Instant::now() < deadline,
                "aborted upload left {:?}",
                dir_files(dir)
            );
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn dropped_sealer_leaves_no_file() {
        let env = env();
        let mut sealer =
            BlobSealer::start(env.store.clone(), &Recipients::from(&env.ring)).unwrap();
        let input = Bytes::from(data(4 * MIB));
        for piece in input.chunks(64 * 1024) {
            sealer.write(Bytes::copy_from_slice(piece)).await.unwrap();
        }
        // The temporary exists mid-stream and holds no plaintext.
        let deadline = Instant::now() + Duration::from_secs(10);
        while dir_files(&env.blob_dir).is_empty() {
            assert!(Instant::now() < deadline);
            std::thread::sleep(Duration::from_millis(5));
        }
        for f in dir_files(&env.blob_dir) {
            let name = f.file_name().unwrap().to_string_lossy().into_owned();
            assert!(name.starts_with(".tmp-"), "{name}");
            assert!(!contains(&fs::read(&f).unwrap(), MARKER));
        }
        drop(sealer);
        wait_until_empty(&env.blob_dir);
        assert!(env.store.list().unwrap().is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn aborted_sealer_leaves_no_file() {
        let env = env();
        let mut sealer =
            BlobSealer::start(env.store.clone(), &Recipients::from(&env.ring)).unwrap();
        sealer.write(Bytes::from(data(3 * MIB))).await.unwrap();
        assert_eq!(sealer.plaintext_len(), 3 * MIB as u64);
        sealer.abort().await;
        assert!(dir_files(&env.blob_dir).is_empty());
        // Aborting right after start (before the writer even created its file) is fine too.
        BlobSealer::start(env.store.clone(), &Recipients::from(&env.ring))
            .unwrap()
            .abort()
            .await;
        assert!(dir_files(&env.blob_dir).is_empty());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn store_failure_is_reported() {
        let env = env();
        // The writer cannot create its temporary: the directory is gone.
        fs::remove_dir_all(&env.blob_dir).unwrap();
        let mut sealer =
            BlobSealer::start(env.store.clone(), &Recipients::from(&env.ring)).unwrap();
        let mut result = Ok(());
        for _ in 0..64 {
            result = sealer.write(Bytes::from(vec![1u8; 256 * 1024])).await;
            if result.is_err() {
                break;
            }
        }
        let err = match result {
            Err(e) => e,
            Ok(()) => sealer.finish().await.unwrap_err(),
        };
        assert_eq!(err.kind(), io::ErrorKind::NotFound, "{err}");
    }

    #[test]
    fn rotate_reseal_retire() {
        let mut env = env();
        let input = data(200 * 1024);
        let old = seal_reader(&*env.store, &Recipients::from(&env.ring), &input[..]).unwrap();
        let old_key = env.ring.current_key_id().to_owned();
        let new_key = env.ring.rotate().unwrap();
        assert_eq!(old.key_id, old_key);

        // Still readable with the rotated ring (old identity kept).
        assert_eq!(read_back(&env, &old.blob_ref(), &env.ring).unwrap(), input);
        let resealed = reseal(
            &*env.store,
            &old.blob_ref(),
            &env.ring,
            &Recipients::from(&env.ring),
        )
        .unwrap();
        assert_eq!(resealed.key_id, new_key);
        assert_eq!(resealed.plaintext_sha256, old.plaintext_sha256);
        assert_ne!(resealed.name, old.name);
        assert!(
            env.store.exists(&old.name).unwrap(),
            "reseal must not delete the old blob"
        );

        env.ring.retire(&old_key).unwrap();
        let ring = KeyRing::load(env.ring.path().parent().unwrap(), &[]).unwrap();
        assert_eq!(ring.keys().len(), 1);
        assert_eq!(read_back(&env, &resealed.blob_ref(), &ring).unwrap(), input);
        // The old blob is now unreadable, as expected after retirement.
        assert!(read_back(&env, &old.blob_ref(), &ring).is_err());
    }

    #[test]
    fn reseal_refuses_a_tampered_blob_and_leaves_nothing() {
        let env = env();
        let (sealed, mut bytes, path) = sealed_with_file(&env, 150 * 1024);
        let n = bytes.len();
        bytes[n - 5] ^= 1;
        fs::write(&path, &bytes).unwrap();
        assert!(reseal(
            &*env.store,
            &sealed.blob_ref(),
            &env.ring,
            &Recipients::from(&env.ring)
        )
        .is_err());
        assert_eq!(dir_files(&env.blob_dir), vec![path]);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn escrow_identity_alone_decrypts() {
        let tmp = tempfile::tempdir().unwrap();
        // The escrow holder's identity lives offline; the server only gets its public key.
        let (escrow_ring, _) = KeyRing::load_or_generate(tmp.path(), &[]).unwrap();
        let env = env_with_escrow(&[escrow_ring.current_key_id().to_owned()]);
        assert_eq!(env.ring.encryption_recipients().len(), 2);
        let input = data(300 * 1024);
        let sealed = seal_async(&env, &input, 64 * 1024).await;
        assert_eq!(
            read_back(&env, &sealed.blob_ref(), &escrow_ring).unwrap(),
            input
        );
        let small = seal_reader(&*env.store, &Recipients::from(&env.ring), &input[..1000]).unwrap();
        assert_eq!(
            read_back(&env, &small.blob_ref(), &escrow_ring).unwrap(),
            &input[..1000]
        );
        // And a ring that is neither cannot.
        let stranger = self::env();
        assert!(read_back(&env, &sealed.blob_ref(), &stranger.ring).is_err());
    }

    #[test]
    fn futures_and_readers_are_send() {
        fn send<T: Send>(_: &T) {}
        fn send_static<T: Send + 'static>() {}
        send_static::<BlobSealer>();
        send_static::<VerifiedReader>();
        send_static::<AsyncBlobReader>();
        let env = env();
        let mut sealer =
            BlobSealer::start(env.store.clone(), &Recipients::from(&env.ring)).unwrap();
        send(&sealer.write(Bytes::new()));
        send(&sealer.finish());
    }
}
