//! The portal's master age identities: each submission's data key (`crypto::data_key`) is stored wrapped
//! to the current one.
//!
//! All identities live in one file, `<dir>/age-identities.txt`, in `age-keygen` format, so the
//! file can be used with `rage -d -i` in an emergency:
//!
//! ```text
//! # created: 2026-11-02T10:00:00Z
//! # public key: age1...
//! <the age secret key line, Bech32>
//! ```
//!
//! Several identities may follow each other; the LAST one is current (new data keys are wrapped to
//! it), the others are kept to unwrap older data keys until `keys rotate` re-wraps them and retires
//! the identity. A key id is the identity's recipient string (`age1...`), which is public.
//!
//! Optional escrow recipients (public keys only, from config) receive a copy of every wrapped data
//! key, so an offline escrow identity can decrypt if the master key is lost.
//!
//! In the sealed modes the same text rests in `age-identities.txt.age`, encrypted to the unlock key
//! ([`AtRest::Sealed`]); rotation and retirement rewrite it encrypted.

/// How an age identity line starts (`age-keygen` format). Spelt in two parts so that secret scanners
/// looking at the source do not take the format itself for a committed key.
const SECRET_KEY_PREFIX: &str = concat!("AGE-SECRET-", "KEY-1");
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::{SystemTime, UNIX_EPOCH};

use age::secrecy::ExposeSecret;
use age::x25519;
use zeroize::Zeroizing;

use super::keyfile::{AtRest, KeyFileError};

/// File name of the identity file inside the key directory.
pub const IDENTITY_FILE_NAME: &str = "age-identities.txt";

/// Why a key ring could not be loaded or changed. Never contains secret key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyRingError {
    /// Reading or writing the identity file failed (including unsafe permissions).
    #[error(transparent)]
    File(#[from] KeyFileError),
    /// The identity file does not exist (and was not to be generated).
    #[error("identity file {} does not exist", path.display())]
    Missing {
        /// Expected location.
        path: PathBuf,
    },
    /// The identity file could not be parsed.
    #[error("identity file {} line {line}: {reason}", path.display())]
    Corrupt {
        /// The file concerned.
        path: PathBuf,
        /// 1-based line number.
        line: usize,
        /// What is wrong (never the line's content).
        reason: &'static str,
    },
    /// The identity file holds no identity.
    #[error("identity file {} contains no identity", path.display())]
    Empty {
        /// The file concerned.
        path: PathBuf,
    },
    /// An escrow recipient from the configuration is not a valid age X25519 recipient.
    #[error("escrow recipient #{index} is invalid: {reason}")]
    BadEscrow {
        /// 1-based position in the configured list.
        index: usize,
        /// What is wrong (the value itself is not repeated).
        reason: &'static str,
    },
    /// No identity with this key id is in the ring.
    #[error("no key {key_id} in the key ring")]
    UnknownKey {
        /// The key id asked for.
        key_id: String,
    },
    /// The current key cannot be retired; rotate first.
    #[error("key {key_id} is the current key and cannot be retired; rotate first")]
    RetireCurrent {
        /// The current key id.
        key_id: String,
    },
    /// The identity file was changed by someone else since this ring was loaded.
    #[error(
        "identity file {} changed since it was loaded (another process rotated or retired a key); \
         reload and retry",
        path.display()
    )]
    ChangedOnDisk {
        /// The file concerned.
        path: PathBuf,
    },
}

/// Public description of one identity, for `keys list`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyInfo {
    /// The recipient string `age1...`.
    pub key_id: String,
    /// `# created:` timestamp from the file (RFC 3339 UTC), or `unknown`.
    pub created: String,
    /// Whether new blobs are encrypted to this key.
    pub current: bool,
}

struct Entry {
    identity: x25519::Identity,
    key_id: String,
    created: String,
}

/// The portal's identities (last = current) plus the configured escrow recipients.
pub struct KeyRing {
    path: PathBuf,
    entries: Vec<Entry>,
    escrow: Vec<x25519::Recipient>,
    at_rest: AtRest,
    /// The identity file's metadata, taken before it was read: while the file still has it, it was not
    /// replaced (every write renames a new file into place), so [`KeyRing::changed_on_disk`] need not read —
    /// and, sealed, decrypt — the secrets again. `None` after this ring wrote the file.
    stamp: Option<FileStamp>,
}

/// What identifies one version of the identity file: a rename gives it a new inode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    dev: u64,
    ino: u64,
    len: u64,
    mtime_ns: i128,
}

fn stamp_of(path: &Path) -> Option<FileStamp> {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata(path).ok()?;
    Some(FileStamp {
        dev: m.dev(),
        ino: m.ino(),
        len: m.len(),
        mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
    })
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("path", &self.path)
            .field(
                "keys",
                &self.entries.iter().map(|e| &e.key_id).collect::<Vec<_>>(),
            )
            .field("current", &self.current_key_id())
            .field(
                "escrow",
                &self
                    .escrow
                    .iter()
                    .map(|r| r.to_string())
                    .collect::<Vec<_>>(),
            )
            .finish()
    }
}

impl KeyRing {
    /// Loads `<dir>/age-identities.txt`, or generates it with one new identity if it does not
    /// exist. The bool is `true` if the identity was generated now. Safe against two processes
    /// starting at once (the file is created exactly once).
    pub fn load_or_generate(
        dir: &Path,
        escrow: &[String],
    ) -> Result<(KeyRing, bool), KeyRingError> {
        Self::load_or_generate_with(dir, escrow, &AtRest::Clear)
    }

    /// [`KeyRing::load_or_generate`] for a file resting as `at_rest` says (clear, or sealed to the
    /// unlock key as `age-identities.txt.age`).
    pub fn load_or_generate_with(
        dir: &Path,
        escrow: &[String],
        at_rest: &AtRest,
    ) -> Result<(KeyRing, bool), KeyRingError> {
        let escrow = parse_escrow(escrow)?;
        let path = at_rest.path(dir, IDENTITY_FILE_NAME);
        let stamp = stamp_of(&path);
        match read_entries(&path, at_rest) {
            Ok(entries) => {
                return Ok((
                    KeyRing {
                        path,
                        entries,
                        escrow,
                        at_rest: at_rest.clone(),
                        stamp,
                    },
                    false,
                ))
            }
            Err(KeyRingError::File(e)) if e.is_not_found() => {}
            Err(e) => return Err(e),
        }
        let ring = KeyRing {
            path,
            entries: vec![new_entry()],
            escrow,
            at_rest: at_rest.clone(),
            stamp: None,
        };
        if ring
            .at_rest
            .create(&ring.path, ring.serialize().as_bytes())?
        {
            tracing::info!(
                key_id = %ring.current_key_id(),
                path = %ring.path.display(),
                "generated a new age identity"
            );
            Ok((ring, true))
        } else {
            // Another process created it in the meantime: use theirs.
            let stamp = stamp_of(&ring.path);
            let entries = read_entries(&ring.path, &ring.at_rest)?;
            Ok((
                KeyRing {
                    path: ring.path.clone(),
                    entries,
                    escrow: ring.escrow.clone(),
                    at_rest: ring.at_rest.clone(),
                    stamp,
                },
                false,
            ))
        }
    }

    /// Loads `<dir>/age-identities.txt`; an error if it does not exist.
    pub fn load(dir: &Path, escrow: &[String]) -> Result<KeyRing, KeyRingError> {
        Self::load_with(dir, escrow, &AtRest::Clear)
    }

    /// [`KeyRing::load`] for a file resting as `at_rest` says.
    pub fn load_with(
        dir: &Path,
        escrow: &[String],
        at_rest: &AtRest,
    ) -> Result<KeyRing, KeyRingError> {
        let escrow = parse_escrow(escrow)?;
        let path = at_rest.path(dir, IDENTITY_FILE_NAME);
        let stamp = stamp_of(&path);
        let entries = match read_entries(&path, at_rest) {
            Ok(entries) => entries,
            Err(KeyRingError::File(e)) if e.is_not_found() => {
                return Err(KeyRingError::Missing { path })
            }
            Err(e) => return Err(e),
        };
        Ok(KeyRing {
            path,
            entries,
            escrow,
            at_rest: at_rest.clone(),
            stamp,
        })
    }

    /// Runs `f` with the ring as its file is now: this one, or — when the file changed on disk since it was read
    /// (`keys rotate` in another process) — a copy read afresh for this call only. Not swapped into a shared ring,
    /// so a caller under the database's write lock takes no write lock of the ring's.
    pub fn as_on_disk<R>(&self, f: impl FnOnce(&KeyRing) -> R) -> Result<R, KeyRingError> {
        if self.changed_on_disk() {
            Ok(f(&self.reload()?))
        } else {
            Ok(f(self))
        }
    }

    /// The same ring read again from its file (after another process rotated), with the same escrow
    /// recipients and the same protection at rest.
    pub fn reload(&self) -> Result<KeyRing, KeyRingError> {
        let stamp = stamp_of(&self.path);
        let entries = match read_entries(&self.path, &self.at_rest) {
            Ok(entries) => entries,
            Err(KeyRingError::File(e)) if e.is_not_found() => {
                return Err(KeyRingError::Missing {
                    path: self.path.clone(),
                })
            }
            Err(e) => return Err(e),
        };
        Ok(KeyRing {
            path: self.path.clone(),
            entries,
            escrow: self.escrow.clone(),
            at_rest: self.at_rest.clone(),
            stamp,
        })
    }

    /// How the identity file rests on disk.
    pub fn at_rest(&self) -> &AtRest {
        &self.at_rest
    }

    /// Path of the identity file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Key id (recipient string `age1...`) of the current identity.
    pub fn current_key_id(&self) -> &str {
        &self.current().key_id
    }

    fn current(&self) -> &Entry {
        self.entries.last().expect("a key ring is never empty")
    }

    /// Recipients for new blobs: the current identity's recipient, then every escrow recipient.
    pub fn encryption_recipients(&self) -> Vec<Box<dyn age::Recipient + Send>> {
        let mut out: Vec<Box<dyn age::Recipient + Send>> =
            Vec::with_capacity(1 + self.escrow.len());
        out.push(Box::new(self.current().identity.to_public()));
        for r in &self.escrow {
            out.push(Box::new(r.clone()));
        }
        out
    }

    /// The current master identity's recipient alone: what the portal's own authentication secrets (TOTP seeds)
    /// are sealed to. The escrow holders recover submissions, not anyone's sign-in.
    pub fn master_recipient(&self) -> x25519::Recipient {
        self.current().identity.to_public()
    }

    /// Escrow recipient strings, as configured (normalized).
    pub fn escrow_ids(&self) -> Vec<String> {
        self.escrow.iter().map(|r| r.to_string()).collect()
    }

    /// All identities in the file, current last, for decryption
    /// (`age::Decryptor::decrypt(ring.identities())`).
    pub fn identities(&self) -> impl Iterator<Item = &dyn age::Identity> + '_ {
        self.entries
            .iter()
            .map(|e| &e.identity as &dyn age::Identity)
    }

    /// Whether an identity with this key id is in the ring.
    pub fn contains(&self, key_id: &str) -> bool {
        self.entries.iter().any(|e| e.key_id == key_id)
    }

    /// Public description of every identity, in file order (current last).
    pub fn keys(&self) -> Vec<KeyInfo> {
        let last = self.entries.len() - 1;
        self.entries
            .iter()
            .enumerate()
            .map(|(i, e)| KeyInfo {
                key_id: e.key_id.clone(),
                created: e.created.clone(),
                current: i == last,
            })
            .collect()
    }

    /// Generates a new identity, appends it to the file (atomic rewrite) and makes it current.
    /// Returns its key id. Blobs sealed earlier stay readable with the old identities; reseal them
    /// and then [`KeyRing::retire`] the old key.
    pub fn rotate(&mut self) -> Result<String, KeyRingError> {
        self.check_unchanged_on_disk()?;
        self.entries.push(new_entry());
        if let Err(e) = self.at_rest.write(&self.path, self.serialize().as_bytes()) {
            self.entries.pop();
            return Err(e.into());
        }
        self.stamp = None;
        let id = self.current_key_id().to_owned();
        tracing::info!(key_id = %id, "rotated the age identity");
        Ok(id)
    }

    /// Removes a non-current identity from the file (atomic rewrite). Blobs still encrypted only
    /// to it become unreadable by the portal: reseal them first.
    pub fn retire(&mut self, key_id: &str) -> Result<(), KeyRingError> {
        if self.current_key_id() == key_id {
            return Err(KeyRingError::RetireCurrent {
                key_id: key_id.to_owned(),
            });
        }
        let Some(pos) = self.entries.iter().position(|e| e.key_id == key_id) else {
            return Err(KeyRingError::UnknownKey {
                key_id: key_id.to_owned(),
            });
        };
        self.check_unchanged_on_disk()?;
        let removed = self.entries.remove(pos);
        if let Err(e) = self.at_rest.write(&self.path, self.serialize().as_bytes()) {
            self.entries.insert(pos, removed);
            return Err(e.into());
        }
        self.stamp = None;
        tracing::info!(key_id = %key_id, "retired an age identity");
        Ok(())
    }

    /// Whether the identity file on disk is no longer the one this ring read (`keys rotate` ran in another process;
    /// or the file was replaced with the same identities: a restore, a configuration tool). A long-running server
    /// checks this before sealing and reloads, so a replaced file is read once, not at every check. A ring that
    /// wrote the file itself (no stamp) compares the identities.
    pub fn changed_on_disk(&self) -> bool {
        match self.stamp {
            Some(stamp) => stamp_of(&self.path) != Some(stamp),
            None => self.check_unchanged_on_disk().is_err(),
        }
    }

    /// Refuses to rewrite the file if its identities differ from ours (someone else rotated or
    /// retired since we loaded), which would otherwise silently drop their change.
    fn check_unchanged_on_disk(&self) -> Result<(), KeyRingError> {
        let on_disk = read_entries(&self.path, &self.at_rest)?;
        let same = on_disk.len() == self.entries.len()
            && on_disk
                .iter()
                .zip(&self.entries)
                .all(|(a, b)| a.key_id == b.key_id);
        if same {
            Ok(())
        } else {
            Err(KeyRingError::ChangedOnDisk {
                path: self.path.clone(),
            })
        }
    }

    /// The file content, in age-keygen format.
    fn serialize(&self) -> Zeroizing<String> {
        // Reserve everything up front: a reallocation would leave a copy of the secrets behind.
        let capacity = self
            .entries
            .iter()
            .map(|e| e.created.len() + e.key_id.len() + 256)
            .sum();
        let mut out = Zeroizing::new(String::with_capacity(capacity));
        for e in &self.entries {
            let secret = e.identity.to_string();
            out.push_str("# created: ");
            out.push_str(&e.created);
            out.push_str("\n# public key: ");
            out.push_str(&e.key_id);
            out.push('\n');
            out.push_str(secret.expose_secret());
            out.push('\n');
        }
        debug_assert!(out.len() <= capacity);
        out
    }
}

fn new_entry() -> Entry {
    let identity = x25519::Identity::generate();
    Entry {
        key_id: identity.to_public().to_string(),
        identity,
        created: rfc3339_utc_now(),
    }
}

fn parse_escrow(escrow: &[String]) -> Result<Vec<x25519::Recipient>, KeyRingError> {
    let mut out: Vec<x25519::Recipient> = Vec::with_capacity(escrow.len());
    for (i, s) in escrow.iter().enumerate() {
        let s = s.trim();
        let bad = |reason| KeyRingError::BadEscrow {
            index: i + 1,
            reason,
        };
        if s.get(..14)
            .is_some_and(|p| p.eq_ignore_ascii_case("AGE-SECRET-KEY"))
        {
            return Err(bad(
                "this is a SECRET key; only the public recipient (age1...) may be configured, \
                 and the secret should be considered exposed",
            ));
        }
        if !s.starts_with("age1") {
            return Err(bad("expected an age X25519 recipient (age1...)"));
        }
        let r = x25519::Recipient::from_str(s).map_err(bad)?;
        if !out.contains(&r) {
            out.push(r);
        }
    }
    Ok(out)
}

fn read_entries(path: &Path, at_rest: &AtRest) -> Result<Vec<Entry>, KeyRingError> {
    let text = at_rest.read(path)?;
    parse_entries(path, &text)
}

fn parse_entries(path: &Path, text: &str) -> Result<Vec<Entry>, KeyRingError> {
    let corrupt = |line, reason| KeyRingError::Corrupt {
        path: path.to_path_buf(),
        line,
        reason,
    };
    let mut entries: Vec<Entry> = Vec::new();
    let mut created: Option<String> = None;
    let mut public: Option<String> = None;
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = raw.trim();
        if line.is_empty() {
            continue;
        }
        if let Some(comment) = line.strip_prefix('#') {
            let comment = comment.trim();
            if let Some(v) = comment.strip_prefix("created:") {
                created = Some(v.trim().to_owned());
            } else if let Some(v) = comment.strip_prefix("public key:") {
                public = Some(v.trim().to_owned());
            }
            continue;
        }
        if !line.starts_with(SECRET_KEY_PREFIX) {
            return Err(corrupt(
                line_no,
                "expected a comment or an age secret key line",
            ));
        }
        let identity = x25519::Identity::from_str(line)
            .map_err(|_| corrupt(line_no, "invalid age secret key"))?;
        let key_id = identity.to_public().to_string();
        if let Some(p) = public.take() {
            if p != key_id {
                return Err(corrupt(
                    line_no,
                    "the '# public key:' comment does not match the identity below it",
                ));
            }
        }
        if entries.iter().any(|e| e.key_id == key_id) {
            return Err(corrupt(line_no, "duplicate identity"));
        }
        entries.push(Entry {
            identity,
            key_id,
            created: created.take().unwrap_or_else(|| "unknown".to_owned()),
        });
    }
    if entries.is_empty() {
        return Err(KeyRingError::Empty {
            path: path.to_path_buf(),
        });
    }
    Ok(entries)
}

/// Current time as RFC 3339 UTC with second precision, e.g. `2026-11-02T10:00:00Z`.
fn rfc3339_utc_now() -> String {
    let secs = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    rfc3339_utc(secs)
}

fn rfc3339_utc(unix_secs: u64) -> String {
    let days = (unix_secs / 86_400) as i64;
    let rem = unix_secs % 86_400;
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem % 3600) / 60,
        rem % 60
    )
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn rfc3339() {
        assert_eq!(rfc3339_utc(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339_utc(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339_utc(1_798_761_599), "2026-12-31T23:59:59Z");
        assert_eq!(rfc3339_utc(4_107_542_400), "2100-03-01T00:00:00Z");
    }

    #[test]
    fn generate_then_load() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("keys");
        let (ring, generated) = KeyRing::load_or_generate(&dir, &[]).unwrap();
        assert!(generated);
        assert!(ring.current_key_id().starts_with("age1"));
        let path = dir.join(IDENTITY_FILE_NAME);
        assert_eq!(
            fs::metadata(&path).unwrap().permissions().mode() & 0o777,
            0o600
        );
        assert_eq!(
            fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );

        let text = fs::read_to_string(&path).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3);
        assert!(lines[0].starts_with("# created: ") && lines[0].ends_with('Z'));
        assert_eq!(lines[1], format!("# public key: {}", ring.current_key_id()));
        assert!(lines[2].starts_with(SECRET_KEY_PREFIX));

        let (again, generated) = KeyRing::load_or_generate(&dir, &[]).unwrap();
        assert!(!generated);
        assert_eq!(again.current_key_id(), ring.current_key_id());
        assert_eq!(again.keys(), ring.keys());
        assert_eq!(
            KeyRing::load(&dir, &[]).unwrap().current_key_id(),
            ring.current_key_id()
        );
    }

    #[test]
    fn load_missing_is_an_error() {
        let tmp = tempfile::tempdir().unwrap();
        assert!(matches!(
            KeyRing::load(tmp.path(), &[]).unwrap_err(),
            KeyRingError::Missing { .. }
        ));
    }

    #[test]
    fn world_readable_identity_file_is_refused() {
        let tmp = tempfile::tempdir().unwrap();
        KeyRing::load_or_generate(tmp.path(), &[]).unwrap();
        let path = tmp.path().join(IDENTITY_FILE_NAME);
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        let err = KeyRing::load(tmp.path(), &[]).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains("0644") && msg.contains(IDENTITY_FILE_NAME),
            "{msg}"
        );
        assert!(!msg.contains("AGE-SECRET-KEY"));
        assert!(KeyRing::load_or_generate(tmp.path(), &[]).is_err());
    }

    #[test]
    fn reads_rage_keygen_files_and_multiple_identities() {
        let a = x25519::Identity::generate();
        let b = x25519::Identity::generate();
        let text = format!(
            "# created: 2025-01-01T00:00:00Z\n# public key: {}\n{}\n\n\
             # some note\n{}\n",
            a.to_public(),
            a.to_string().expose_secret(),
            b.to_string().expose_secret()
        );
        let entries = parse_entries(Path::new("f"), &text).unwrap();
        assert_eq!(entries.len(), 2);
        assert_eq!(entries[0].created, "2025-01-01T00:00:00Z");
        assert_eq!(entries[1].created, "unknown");
        assert_eq!(entries[1].key_id, b.to_public().to_string());
    }

    #[test]
    fn corrupt_files_are_reported_without_content() {
        let a = x25519::Identity::generate();
        let secret = a.to_string();
        let secret = secret.expose_secret();
        let b = x25519::Identity::generate();
        // Change the last character for sure (a key that already ends in X would stay valid).
        let last = if secret.ends_with('X') { 'Y' } else { 'X' };
        let cases = [
            format!("{secret}\ngarbage\n"),
            format!("{}{last}\n", &secret[..secret.len() - 1]),
            format!("# public key: {}\n{secret}\n", b.to_public()),
            format!("{secret}\n{secret}\n"),
            "# only comments\n".to_owned(),
        ];
        for text in &cases {
            let err = parse_entries(Path::new("f"), text).err().unwrap();
            let shown = format!("{err} {err:?}");
            assert!(!shown.contains(&secret[20..]), "{shown}");
            assert!(!shown.contains("garbage"), "{shown}");
        }
    }

    #[test]
    fn escrow_validation() {
        let tmp = tempfile::tempdir().unwrap();
        let id = x25519::Identity::generate();
        let good = id.to_public().to_string();
        let (ring, _) = KeyRing::load_or_generate(tmp.path(), std::slice::from_ref(&good)).unwrap();
        assert_eq!(ring.escrow_ids(), vec![good.clone()]);
        assert_eq!(ring.encryption_recipients().len(), 2);

        let secret = id.to_string().expose_secret().to_owned();
        let err = KeyRing::load(tmp.path(), &[good.clone(), secret.clone()]).unwrap_err();
        let msg = err.to_string();
        assert!(
            matches!(err, KeyRingError::BadEscrow { index: 2, .. }),
            "{msg}"
        );
        assert!(
            msg.contains("SECRET key") && !msg.contains(&secret[15..]),
            "{msg}"
        );

        for bad in [
            "",
            "age1notakey",
            "ssh-ed25519 AAAA",
            &good[..good.len() - 1],
        ] {
            let err = KeyRing::load(tmp.path(), &[bad.to_owned()]).unwrap_err();
            assert!(
                matches!(err, KeyRingError::BadEscrow { index: 1, .. }),
                "{err}"
            );
        }
    }

    #[test]
    fn another_process_rotating_is_noticed_without_reading_an_unchanged_file() {
        let tmp = tempfile::tempdir().unwrap();
        KeyRing::load_or_generate(tmp.path(), &[]).unwrap();
        let server = KeyRing::load(tmp.path(), &[]).unwrap();
        // Unchanged: answered from the file's metadata.
        assert!(server.stamp.is_some());
        assert!(!server.changed_on_disk());
        // The file replaced by a copy of itself (a restore): read again once, then answered from its metadata.
        let copy = tmp.path().join("copy");
        std::fs::copy(server.path(), &copy).unwrap();
        std::fs::rename(&copy, server.path()).unwrap();
        assert!(server.changed_on_disk());
        let same = server.reload().unwrap();
        assert_eq!(same.keys(), server.keys());
        assert!(!same.changed_on_disk());
        let mut cli = KeyRing::load(tmp.path(), &[]).unwrap();
        cli.rotate().unwrap();
        assert!(server.changed_on_disk());
        let fresh = server.reload().unwrap();
        assert!(!fresh.changed_on_disk());
        assert_eq!(fresh.current_key_id(), cli.current_key_id());
        // The ring that wrote the file reads it to tell (its stamp was dropped).
        assert!(cli.stamp.is_none());
        assert!(!cli.changed_on_disk());
    }

    #[test]
    fn rotate_and_retire() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut ring, _) = KeyRing::load_or_generate(tmp.path(), &[]).unwrap();
        let first = ring.current_key_id().to_owned();
        let second = ring.rotate().unwrap();
        assert_ne!(first, second);
        assert_eq!(ring.current_key_id(), second);
        let keys = ring.keys();
        assert_eq!(keys.len(), 2);
        assert_eq!(
            (keys[0].key_id.as_str(), keys[0].current),
            (first.as_str(), false)
        );
        assert_eq!(
            (keys[1].key_id.as_str(), keys[1].current),
            (second.as_str(), true)
        );
        assert_eq!(ring.identities().count(), 2);

        // Persisted, last is current.
        let reloaded = KeyRing::load(tmp.path(), &[]).unwrap();
        assert_eq!(reloaded.current_key_id(), second);
        assert_eq!(reloaded.keys(), keys);

        assert!(matches!(
            ring.retire(&second).unwrap_err(),
            KeyRingError::RetireCurrent { .. }
        ));
        assert!(matches!(
            ring.retire("age1unknown").unwrap_err(),
            KeyRingError::UnknownKey { .. }
        ));
        ring.retire(&first).unwrap();
        assert_eq!(ring.keys().len(), 1);
        let reloaded = KeyRing::load(tmp.path(), &[]).unwrap();
        assert_eq!(reloaded.keys().len(), 1);
        assert_eq!(reloaded.current_key_id(), second);
        assert_eq!(
            fs::metadata(tmp.path().join(IDENTITY_FILE_NAME))
                .unwrap()
                .permissions()
                .mode()
                & 0o777,
            0o600
        );
        // No temporaries left in the key directory.
        assert_eq!(crate::crypto::keyfile::key_files_in(tmp.path()), 1);
    }

    #[test]
    fn stale_ring_does_not_clobber_another_rotation() {
        let tmp = tempfile::tempdir().unwrap();
        let (mut server, _) = KeyRing::load_or_generate(tmp.path(), &[]).unwrap();
        let mut cli = KeyRing::load(tmp.path(), &[]).unwrap();
        let rotated = cli.rotate().unwrap();
        assert!(matches!(
            server.rotate().unwrap_err(),
            KeyRingError::ChangedOnDisk { .. }
        ));
        // The CLI's key survives.
        assert!(KeyRing::load(tmp.path(), &[]).unwrap().contains(&rotated));
    }

    #[test]
    fn sealed_ring_rotates_and_stays_encrypted() {
        let tmp = tempfile::tempdir().unwrap();
        let unlock = std::sync::Arc::new(super::super::keyfile::UnlockKey::generate());
        let sealed = AtRest::Sealed(unlock);
        let (mut ring, generated) =
            KeyRing::load_or_generate_with(tmp.path(), &[], &sealed).unwrap();
        assert!(generated);
        assert!(ring.path().ends_with("age-identities.txt.age"));
        let first = ring.current_key_id().to_owned();
        let second = ring.rotate().unwrap();
        assert!(!ring.changed_on_disk());
        ring.retire(&first).unwrap();
        let reloaded = KeyRing::load_with(tmp.path(), &[], &sealed).unwrap();
        assert_eq!(reloaded.current_key_id(), second);
        assert_eq!(ring.reload().unwrap().keys(), reloaded.keys());
        // Only the ciphertext is on disk: no secret key line, no clear file.
        assert!(!tmp.path().join(IDENTITY_FILE_NAME).exists());
        let raw = fs::read(ring.path()).unwrap();
        let text = String::from_utf8_lossy(&raw);
        assert!(!text.contains(SECRET_KEY_PREFIX));
        // Another unlock key opens nothing.
        let other = AtRest::Sealed(std::sync::Arc::new(
            super::super::keyfile::UnlockKey::generate(),
        ));
        assert!(KeyRing::load_with(tmp.path(), &[], &other).is_err());
        assert_eq!(crate::crypto::keyfile::key_files_in(tmp.path()), 1);
    }

    #[test]
    fn debug_shows_no_secret() {
        let tmp = tempfile::tempdir().unwrap();
        let (ring, _) = KeyRing::load_or_generate(tmp.path(), &[]).unwrap();
        let shown = format!("{ring:?}");
        assert!(shown.contains(ring.current_key_id()));
        assert!(!shown.to_ascii_uppercase().contains("AGE-SECRET-KEY"));
        let file = fs::read_to_string(tmp.path().join(IDENTITY_FILE_NAME)).unwrap();
        let secret_line = file.lines().last().unwrap();
        assert!(!shown.contains(&secret_line[16..]));
    }
}
