//! Reading and writing private key files.
//!
//! Key files are 0600 in a 0700 directory. A file that the group or others could read is refused
//! outright rather than "fixed", because its secret may already have leaked. Errors name the file
//! and its mode but never its content.
//!
//! In the sealed modes (`master_key_protection` = `passphrase` or `shares`) every secret file is
//! age-encrypted to the in-memory [`UnlockKey`] and carries the suffix `.age`; [`AtRest`] says which,
//! so callers read and write through one API whatever the mode.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::fs::{DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;

use zeroize::Zeroizing;

/// Largest private key file accepted.
pub const MAX_KEY_FILE_SIZE: u64 = 64 * 1024;

/// Why a private key file could not be read or written. Never contains key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyFileError {
    /// An I/O error on the file (or its directory).
    #[error("key file {}: {source}", path.display())]
    Io {
        /// The file concerned.
        path: PathBuf,
        /// The underlying error.
        #[source]
        source: io::Error,
    },
    /// The file is readable or writable by group or others.
    #[error(
        "key file {} has mode {mode:04o}, which gives access to group or others; \
         it must be 0600 (chmod 600, and consider the key compromised if others could read it)",
        path.display()
    )]
    Permissions {
        /// The file concerned.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// The file is larger than [`MAX_KEY_FILE_SIZE`].
    #[error("key file {} is larger than {limit} bytes", path.display())]
    TooLarge {
        /// The file concerned.
        path: PathBuf,
        /// The limit.
        limit: u64,
    },
    /// The path is not a regular file.
    #[error("key file {} is not a regular file", path.display())]
    NotAFile {
        /// The file concerned.
        path: PathBuf,
    },
    /// The content is not UTF-8 text.
    #[error("key file {} is not UTF-8 text", path.display())]
    NotUtf8 {
        /// The file concerned.
        path: PathBuf,
    },
    /// A sealed key file does not open with the unlock key (another key store's, or tampered with).
    #[error("key file {} does not decrypt with the unlock key: {reason}", path.display())]
    Sealed {
        /// The file concerned.
        path: PathBuf,
        /// What failed (never key material).
        reason: &'static str,
    },
}

impl KeyFileError {
    fn io(path: &Path, source: io::Error) -> Self {
        KeyFileError::Io {
            path: path.to_path_buf(),
            source,
        }
    }

    /// True if the error is "the file does not exist".
    pub fn is_not_found(&self) -> bool {
        matches!(self, KeyFileError::Io { source, .. } if source.kind() == io::ErrorKind::NotFound)
    }
}

/// Reads a private key file as text. Refuses files with any group/other permission bit
/// (`mode & 0o077 != 0`), non-regular files, and files over [`MAX_KEY_FILE_SIZE`].
pub fn read_private(path: &Path) -> Result<Zeroizing<String>, KeyFileError> {
    let file = File::open(path).map_err(|e| KeyFileError::io(path, e))?;
    // Check the opened file itself, not the path, so a swap between check and read is useless.
    let meta = file.metadata().map_err(|e| KeyFileError::io(path, e))?;
    if !meta.is_file() {
        return Err(KeyFileError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyFileError::Permissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    if meta.len() > MAX_KEY_FILE_SIZE {
        return Err(KeyFileError::TooLarge {
            path: path.to_path_buf(),
            limit: MAX_KEY_FILE_SIZE,
        });
    }
    // Allocate once, up front, so that no reallocation leaves copies of the secret behind.
    let mut buf = Zeroizing::new(Vec::with_capacity(MAX_KEY_FILE_SIZE as usize + 1));
    file.take(MAX_KEY_FILE_SIZE + 1)
        .read_to_end(&mut buf)
        .map_err(|e| KeyFileError::io(path, e))?;
    if buf.len() as u64 > MAX_KEY_FILE_SIZE {
        return Err(KeyFileError::TooLarge {
            path: path.to_path_buf(),
            limit: MAX_KEY_FILE_SIZE,
        });
    }
    match String::from_utf8(std::mem::take(&mut *buf)) {
        Ok(s) => Ok(Zeroizing::new(s)),
        Err(e) => {
            let mut bytes = e.into_bytes();
            zeroize::Zeroize::zeroize(&mut bytes);
            Err(KeyFileError::NotUtf8 {
                path: path.to_path_buf(),
            })
        }
    }
}

/// Writes a private key file atomically: creates the parent directory (0700) if needed, writes
/// a 0600 temporary next to the target, fsyncs it, renames it over `path` and fsyncs the
/// directory. Readers see either the old or the new file, never a partial one.
pub fn write_private(path: &Path, bytes: &[u8]) -> Result<(), KeyFileError> {
    let _writing = WritersLock::take(parent_of(path))?;
    let tmp = write_temp(path, bytes)?;
    let result = fs::rename(&tmp, path).map_err(|e| KeyFileError::io(path, e));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result?;
    sync_parent(path)
}

/// Like [`write_private`], but never replaces an existing file: returns `Ok(false)` (and writes
/// nothing) if `path` already exists. Use it to create a key exactly once even when two processes
/// start at the same moment.
pub fn create_private(path: &Path, bytes: &[u8]) -> Result<bool, KeyFileError> {
    let _writing = WritersLock::take(parent_of(path))?;
    let tmp = write_temp(path, bytes)?;
    // link(2) fails with EEXIST instead of replacing: an atomic "create if absent".
    let linked = fs::hard_link(&tmp, path);
    let _ = fs::remove_file(&tmp);
    match linked {
        Ok(()) => {
            sync_parent(path)?;
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(KeyFileError::io(path, e)),
    }
}

/// Held by whoever writes a key file, from its temporary's creation to its rename: a temporary found while holding
/// it belongs to a writer that died (a `kill -9` mid-write) and may hold secrets in clear.
struct WritersLock {
    _file: File,
}

const WRITERS_LOCK: &str = ".key-writers.lock";

impl WritersLock {
    fn take(dir: &Path) -> Result<WritersLock, KeyFileError> {
        let (file, path) = open_lock_file(dir, WRITERS_LOCK)?;
        file.lock().map_err(|e| KeyFileError::io(&path, e))?;
        Ok(WritersLock { _file: file })
    }
}

/// Opens (creating it 0600, and the key directory 0700, when missing) the empty file `name` in `dir` that a lock is
/// taken on; the caller chooses the lock.
pub fn open_lock_file(dir: &Path, name: &str) -> Result<(File, std::path::PathBuf), KeyFileError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|e| KeyFileError::io(dir, e))?;
    let path = dir.join(name);
    let file = OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .mode(0o600)
        .open(&path)
        .map_err(|e| KeyFileError::io(&path, e))?;
    Ok((file, path))
}

/// How many files a key directory holds, not counting the writers' lock (for tests that no temporary is left).
#[cfg(test)]
pub fn key_files_in(dir: &Path) -> usize {
    fs::read_dir(dir)
        .unwrap()
        .filter(|e| e.as_ref().unwrap().file_name() != WRITERS_LOCK)
        .count()
}

/// Wipes and removes the temporaries of key-file writes that never finished (the writer was killed between
/// writing and renaming). A temporary that is a second name of a key file (a `create_private` killed between its link
/// and its unlink) is only unlinked. Returns how many. Called before the key store is opened, by the server and the CLI.
pub fn remove_abandoned_temporaries(dir: &Path) -> Result<usize, KeyFileError> {
    if !dir.is_dir() {
        return Ok(0);
    }
    let _writing = WritersLock::take(dir)?;
    let mut removed = 0;
    for entry in fs::read_dir(dir).map_err(|e| KeyFileError::io(dir, e))? {
        let entry = entry.map_err(|e| KeyFileError::io(dir, e))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') && name.contains(".tmp-") {
            let path = entry.path();
            // A `create_private` killed between its link and its unlink leaves the temporary as a second name of the
            // live key file: wiping it would wipe that file too, so such a name is only unlinked.
            let linked = fs::symlink_metadata(&path).map(|m| m.nlink() > 1);
            match linked {
                Ok(true) => {
                    fs::remove_file(&path).map_err(|e| KeyFileError::io(&path, e))?;
                    sync_parent(&path)?;
                }
                Ok(false) => destroy(&path)?,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(KeyFileError::io(&path, e)),
            }
            removed += 1;
        }
    }
    if removed > 0 {
        tracing::warn!(
            removed,
            "wiped key-file temporaries of writes that never finished (a process stopped mid-write)"
        );
    }
    Ok(removed)
}

fn parent_of(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Writes `bytes` to a fresh 0600 temporary beside `path` and fsyncs it.
fn write_temp(path: &Path, bytes: &[u8]) -> Result<PathBuf, KeyFileError> {
    // The directory exists: the writers' lock, taken first, made it.
    let dir = parent_of(path);
    let file_name = path
        .file_name()
        .ok_or_else(|| {
            KeyFileError::io(
                path,
                io::Error::new(io::ErrorKind::InvalidInput, "no file name"),
            )
        })?
        .to_string_lossy();
    let suffix = &crate::storage::new_blob_name()[..16];
    let tmp = dir.join(format!(".{file_name}.tmp-{suffix}"));
    let write = || -> io::Result<()> {
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()
    };
    if let Err(e) = write() {
        let _ = fs::remove_file(&tmp);
        return Err(KeyFileError::io(path, e));
    }
    Ok(tmp)
}

fn sync_parent(path: &Path) -> Result<(), KeyFileError> {
    let dir = parent_of(path);
    File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|e| KeyFileError::io(dir, e))
}

/// Overwrites a file with zeros, fsyncs it, then unlinks it (and fsyncs the directory). A journalling or
/// copy-on-write file system may still keep old blocks: this removes the easy copy, it is no shredder.
/// A file that is already gone is not an error (a re-run after an interruption).
pub fn destroy(path: &Path) -> Result<(), KeyFileError> {
    let file = match OpenOptions::new().write(true).open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(KeyFileError::io(path, e)),
    };
    let len = file
        .metadata()
        .map_err(|e| KeyFileError::io(path, e))?
        .len();
    let wipe = || -> io::Result<()> {
        let mut f = &file;
        let zeros = [0u8; 4096];
        let mut left = len;
        while left > 0 {
            let n = left.min(zeros.len() as u64) as usize;
            f.write_all(&zeros[..n])?;
            left -= n as u64;
        }
        f.sync_all()
    };
    wipe().map_err(|e| KeyFileError::io(path, e))?;
    drop(file);
    fs::remove_file(path).map_err(|e| KeyFileError::io(path, e))?;
    sync_parent(path)
}

/// The age X25519 identity that every secret file is encrypted to in the sealed modes. It exists in
/// memory only: at rest it is passphrase-encrypted or split into custodians' shares. Its `Debug`
/// shows the public recipient alone.
pub struct UnlockKey {
    identity: age::x25519::Identity,
}

impl fmt::Debug for UnlockKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UnlockKey")
            .field("recipient", &self.recipient())
            .finish()
    }
}

impl UnlockKey {
    /// A new random unlock key.
    pub fn generate() -> UnlockKey {
        UnlockKey {
            identity: age::x25519::Identity::generate(),
        }
    }

    /// Parses the `age-keygen` secret line. `None` if it is not one (the text is never echoed).
    pub fn from_secret(text: &str) -> Option<UnlockKey> {
        age::x25519::Identity::from_str(text.trim())
            .ok()
            .map(|identity| UnlockKey { identity })
    }

    /// The secret line, to be wrapped (passphrase) or split (shares); never to be written in clear.
    pub fn to_secret(&self) -> Zeroizing<String> {
        use age::secrecy::ExposeSecret;
        Zeroizing::new(self.identity.to_string().expose_secret().to_owned())
    }

    /// The public recipient (`age1...`) the secret files are encrypted to.
    pub fn recipient(&self) -> String {
        self.identity.to_public().to_string()
    }

    /// Encrypts `plaintext` to this key (X25519: cheap, unlike the scrypt of the passphrase).
    pub fn seal(&self, plaintext: &[u8]) -> Result<Vec<u8>, &'static str> {
        age::encrypt(&self.identity.to_public(), plaintext).map_err(|_| "age encryption failed")
    }

    /// Encrypts `plaintext` to this key and to `next` at once: either opens it. The state a secret file passes
    /// through while the store moves to a new unlock key, so that a crash at any point leaves it readable.
    pub fn seal_also_to(
        &self,
        next: &UnlockKey,
        plaintext: &[u8],
    ) -> Result<Vec<u8>, &'static str> {
        use std::io::Write;
        let (a, b) = (self.identity.to_public(), next.identity.to_public());
        let encryptor = age::Encryptor::with_recipients(
            [&a as &dyn age::Recipient, &b as &dyn age::Recipient].into_iter(),
        )
        .map_err(|_| "age encryption failed")?;
        let mut out = Vec::with_capacity(plaintext.len() + 512);
        let mut writer = encryptor
            .wrap_output(&mut out)
            .map_err(|_| "age encryption failed")?;
        writer
            .write_all(plaintext)
            .map_err(|_| "age encryption failed")?;
        writer.finish().map_err(|_| "age encryption failed")?;
        Ok(out)
    }

    /// Decrypts what [`UnlockKey::seal`] produced, into a buffer that is zeroized on drop.
    pub fn open(&self, ciphertext: &[u8]) -> Result<Zeroizing<Vec<u8>>, &'static str> {
        open_with(&self.identity, ciphertext)
    }
}

/// Decrypts a small age file with one identity into a zeroizing buffer allocated once (no
/// reallocation leaves a copy of the plaintext behind).
pub fn open_with(
    identity: &dyn age::Identity,
    ciphertext: &[u8],
) -> Result<Zeroizing<Vec<u8>>, &'static str> {
    let decryptor = age::Decryptor::new(ciphertext).map_err(|_| "not an age file")?;
    let reader = decryptor
        .decrypt(std::iter::once(identity))
        .map_err(|_| "no matching key")?;
    let mut out = Zeroizing::new(Vec::with_capacity(ciphertext.len()));
    reader
        .take(MAX_KEY_FILE_SIZE)
        .read_to_end(&mut out)
        .map_err(|_| "damaged ciphertext")?;
    Ok(out)
}

/// How secret key files rest on disk: in clear (`file` mode) or encrypted to the unlock key.
#[derive(Debug, Clone)]
pub enum AtRest {
    /// `master_key_protection = "file"`: today's 0600 files in clear.
    Clear,
    /// The sealed modes: `<name>.age`, encrypted to the unlock key held in memory.
    Sealed(Arc<UnlockKey>),
}

impl AtRest {
    /// The file that holds the secret called `name` (`name`, or `name.age` when sealed).
    pub fn path(&self, dir: &Path, name: &str) -> PathBuf {
        match self {
            AtRest::Clear => dir.join(name),
            AtRest::Sealed(_) => dir.join(format!("{name}.age")),
        }
    }

    /// Reads a secret file (see [`read_private`]), decrypting it when sealed.
    pub fn read(&self, path: &Path) -> Result<Zeroizing<String>, KeyFileError> {
        match self {
            AtRest::Clear => read_private(path),
            AtRest::Sealed(key) => {
                let bytes = read_private_bytes(path)?;
                let plain = key.open(&bytes).map_err(|reason| KeyFileError::Sealed {
                    path: path.to_path_buf(),
                    reason,
                })?;
                match std::str::from_utf8(&plain) {
                    Ok(s) => Ok(Zeroizing::new(s.to_owned())),
                    Err(_) => Err(KeyFileError::NotUtf8 {
                        path: path.to_path_buf(),
                    }),
                }
            }
        }
    }

    /// Writes a secret file atomically (see [`write_private`]), encrypted when sealed.
    pub fn write(&self, path: &Path, bytes: &[u8]) -> Result<(), KeyFileError> {
        write_private(path, &self.encode(path, bytes)?)
    }

    /// Creates a secret file exactly once (see [`create_private`]), encrypted when sealed.
    pub fn create(&self, path: &Path, bytes: &[u8]) -> Result<bool, KeyFileError> {
        create_private(path, &self.encode(path, bytes)?)
    }

    /// The bytes to write: in clear mode a copy of the secret itself, so it is zeroized when dropped like every
    /// other buffer of key material.
    fn encode(&self, path: &Path, bytes: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyFileError> {
        match self {
            AtRest::Clear => Ok(Zeroizing::new(bytes.to_vec())),
            AtRest::Sealed(key) => {
                key.seal(bytes)
                    .map(Zeroizing::new)
                    .map_err(|reason| KeyFileError::Sealed {
                        path: path.to_path_buf(),
                        reason,
                    })
            }
        }
    }
}

/// Reads a private file as bytes, with the same checks as [`read_private`] (for ciphertexts).
pub fn read_private_bytes(path: &Path) -> Result<Vec<u8>, KeyFileError> {
    let file = File::open(path).map_err(|e| KeyFileError::io(path, e))?;
    let meta = file.metadata().map_err(|e| KeyFileError::io(path, e))?;
    if !meta.is_file() {
        return Err(KeyFileError::NotAFile {
            path: path.to_path_buf(),
        });
    }
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(KeyFileError::Permissions {
            path: path.to_path_buf(),
            mode,
        });
    }
    let mut buf = Vec::new();
    file.take(MAX_KEY_FILE_SIZE + 1)
        .read_to_end(&mut buf)
        .map_err(|e| KeyFileError::io(path, e))?;
    if buf.len() as u64 > MAX_KEY_FILE_SIZE {
        return Err(KeyFileError::TooLarge {
            path: path.to_path_buf(),
            limit: MAX_KEY_FILE_SIZE,
        });
    }
    Ok(buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sealed_files_round_trip_and_hold_no_plaintext() {
        let tmp = tempfile::tempdir().unwrap();
        let key = Arc::new(UnlockKey::generate());
        let sealed = AtRest::Sealed(key.clone());
        let path = sealed.path(tmp.path(), "secret.key");
        assert!(path.to_string_lossy().ends_with("secret.key.age"));
        sealed.write(&path, b"SEALED-MARKER").unwrap();
        assert_eq!(mode_of(&path), 0o600);
        let raw = fs::read(&path).unwrap();
        assert!(!raw.windows(13).any(|w| w == b"SEALED-MARKER"));
        assert_eq!(sealed.read(&path).unwrap().as_str(), "SEALED-MARKER");
        // Another unlock key opens nothing, and says so without content.
        let other = AtRest::Sealed(Arc::new(UnlockKey::generate()));
        let err = other.read(&path).unwrap_err();
        assert!(matches!(err, KeyFileError::Sealed { .. }), "{err}");
        assert!(!format!("{err} {key:?}").contains("AGE-SECRET-KEY"));
        // Round trip of the key itself.
        let again = UnlockKey::from_secret(&key.to_secret()).unwrap();
        assert_eq!(again.recipient(), key.recipient());
        assert!(UnlockKey::from_secret("not a key").is_none());
    }

    #[test]
    fn destroy_overwrites_then_unlinks() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("k");
        write_private(&path, b"to be destroyed").unwrap();
        destroy(&path).unwrap();
        assert!(!path.exists());
        // Gone already: fine (a re-run after an interruption).
        destroy(&path).unwrap();
    }

    fn mode_of(p: &Path) -> u32 {
        fs::metadata(p).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn write_then_read() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("keys/sub/id.txt");
        write_private(&path, b"SECRET-CONTENT\n").unwrap();
        assert_eq!(mode_of(&path), 0o600);
        assert_eq!(mode_of(path.parent().unwrap()), 0o700);
        assert_eq!(read_private(&path).unwrap().as_str(), "SECRET-CONTENT\n");
        // Overwrite atomically; no temporaries left behind.
        write_private(&path, b"v2").unwrap();
        assert_eq!(read_private(&path).unwrap().as_str(), "v2");
        assert_eq!(
            crate::crypto::keyfile::key_files_in(path.parent().unwrap()),
            1
        );
    }

    #[test]
    fn group_or_world_readable_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("id.txt");
        write_private(&path, b"IDENTITY-FILE-MARKER").unwrap();
        for mode in [0o644, 0o640, 0o604, 0o660, 0o602] {
            fs::set_permissions(&path, fs::Permissions::from_mode(mode)).unwrap();
            let err = read_private(&path).unwrap_err();
            let msg = err.to_string();
            assert!(
                matches!(err, KeyFileError::Permissions { mode: m, .. } if m == mode),
                "{msg}"
            );
            assert!(msg.contains(&path.display().to_string()), "{msg}");
            assert!(msg.contains(&format!("{mode:04o}")), "{msg}");
            assert!(!msg.contains("MARKER"), "{msg}");
            assert!(!format!("{err:?}").contains("MARKER"));
        }
        fs::set_permissions(&path, fs::Permissions::from_mode(0o400)).unwrap();
        assert!(read_private(&path).is_ok());
    }

    #[test]
    fn oversized_and_missing_are_refused() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("big.txt");
        write_private(&path, &vec![b'a'; MAX_KEY_FILE_SIZE as usize + 1]).unwrap();
        assert!(matches!(
            read_private(&path).unwrap_err(),
            KeyFileError::TooLarge { .. }
        ));
        write_private(&path, &vec![b'a'; MAX_KEY_FILE_SIZE as usize]).unwrap();
        assert!(read_private(&path).is_ok());
        let err = read_private(&tmp.path().join("nope")).unwrap_err();
        assert!(err.is_not_found());
        let err = read_private(tmp.path()).unwrap_err();
        assert!(
            matches!(
                err,
                KeyFileError::NotAFile { .. } | KeyFileError::Permissions { .. }
            ),
            "{err}"
        );
    }

    #[test]
    fn a_temporary_left_by_a_killed_writer_is_wiped_and_a_finished_write_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("age-identities.txt");
        write_private(&path, b"kept").unwrap();
        // What a writer killed between writing and renaming leaves behind.
        let tmp = write_temp(&path, b"master identities in clear").unwrap();
        assert!(tmp.exists());
        assert_eq!(remove_abandoned_temporaries(dir.path()).unwrap(), 1);
        assert!(!tmp.exists());
        assert_eq!(fs::read(&path).unwrap(), b"kept");
        assert_eq!(remove_abandoned_temporaries(dir.path()).unwrap(), 0);
    }

    #[test]
    fn a_temporary_that_is_a_second_name_of_a_key_file_is_unlinked_not_wiped() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("unlock.age");
        // What `create_private` killed between its link and its unlink leaves: the key file and its temporary, one
        // inode under two names.
        let tmp = write_temp(&path, b"the live key").unwrap();
        fs::hard_link(&tmp, &path).unwrap();
        // And an ordinary abandoned temporary beside it, which must still be wiped.
        let other = dir.path().join("rocket-secret.key");
        let lone = write_temp(&other, b"secret in clear").unwrap();
        let mut before_wipe = File::open(&lone).unwrap();
        assert_eq!(remove_abandoned_temporaries(dir.path()).unwrap(), 2);
        assert!(!tmp.exists());
        assert!(!lone.exists());
        assert_eq!(fs::read(&path).unwrap(), b"the live key");
        assert_eq!(fs::metadata(&path).unwrap().nlink(), 1);
        // The lone temporary was overwritten before it went (read through a handle opened before the cleanup).
        let mut wiped = Vec::new();
        before_wipe.read_to_end(&mut wiped).unwrap();
        assert_eq!(wiped, vec![0u8; b"secret in clear".len()]);
    }

    #[test]
    fn the_clear_copy_of_a_secret_to_write_is_zeroizing() {
        // A type check as much as a test: the copy `encode` makes of the clear key is wiped when dropped.
        let encoded: Zeroizing<Vec<u8>> = AtRest::Clear
            .encode(Path::new("k"), b"clear key material")
            .unwrap();
        assert_eq!(&encoded[..], b"clear key material");
    }

    #[test]
    fn create_private_never_replaces() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("k");
        assert!(create_private(&path, b"first").unwrap());
        assert!(!create_private(&path, b"second").unwrap());
        assert_eq!(read_private(&path).unwrap().as_str(), "first");
        assert_eq!(crate::crypto::keyfile::key_files_in(tmp.path()), 1);
    }
}
