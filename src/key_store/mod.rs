//! The key store under `keys/`: the portal's age identities, Rocket's secret key and the audit signing key.
//! Generated on first start, reused afterwards, refused when group/world readable.
//! [`data_keys`]: each submission's data key, stored wrapped to the master identity and the escrow recipients;
//! [`rotation`] re-wraps every data key to a new master identity and retires the old ones.
//! [`in_use`] keeps the commands that rewrite `keys/` from running under each other or under a running portal.
//! [`protection`] is `master_key_protection`: the secrets in clear (`file`), or sealed to an unlock key
//! that rests under a passphrase or in custodians' [`shares`].

pub mod account_secrets;
pub mod data_keys;
pub mod in_use;
pub mod protection;
pub mod rotation;
pub mod shares;

use std::path::{Path, PathBuf};

use base64::Engine;
use rand::RngCore;
use zeroize::Zeroizing;

use crate::audit::checkpoint::CheckpointSigner;
use crate::audit::log::{Actor, AuditLog, Event, Outcome};
use crate::config::Settings;
use crate::crypto::keyfile::{AtRest, KeyFileError};
use crate::crypto::keys::KeyRing;
use crate::db::DbConn;
use crate::error::{AppError, AppResult};

pub const COOKIE_SECRET_FILE: &str = "rocket-secret.key";
pub const AUDIT_SIGNING_FILE: &str = "audit-signing.key";
/// The sealed portal's local unseal socket in the key directory (0700, so only the portal's own account reaches
/// it): what `pcii-portal unseal` on the same host talks to. One line in (the decrypted share), one line out.
pub const UNSEAL_SOCKET: &str = "unseal.sock";

/// Why the key store could not be opened or a rotation not finished. Names files and keys (public ids),
/// never key material.
#[derive(Debug, thiserror::Error)]
pub enum KeyStoreError {
    /// The key directory could not be created.
    #[error("creating the key directory {}: {source}", path.display())]
    CreateDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The key directory's metadata could not be read.
    #[error("reading {}: {source}", path.display())]
    ReadDir {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The key directory is world-writable: anyone could swap a key.
    #[error("the key directory {} is world-writable; refusing to use it", path.display())]
    WorldWritableDir { path: PathBuf },
    /// The `.gitignore` that keeps the keys out of git could not be written.
    #[error("writing {}: {source}", path.display())]
    WriteGitignore {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The age identity file is unreadable, wrongly permitted or corrupt, or an escrow recipient is invalid.
    #[error("age identities: {0}")]
    Identities(#[from] crate::crypto::keys::KeyRingError),
    /// A key file (cookie secret, audit signing key) could not be read (unreadable, group/world accessible,
    /// too large, not text) or written when generated.
    #[error(transparent)]
    KeyFile(#[from] KeyFileError),
    /// The audit signing key file does not hold a signing key seed.
    #[error("{}: {source}", path.display())]
    SigningKey {
        path: PathBuf,
        #[source]
        source: crate::audit::checkpoint::SigningKeyError,
    },
    /// Rotation: the new identity could not be generated and stored.
    #[error("generating the new identity: {0}")]
    NewIdentity(#[source] crate::crypto::keys::KeyRingError),
    /// Rotation: an old identity could not be removed from the identity file.
    #[error("retiring {key_id}: {source}")]
    Retire {
        key_id: String,
        #[source]
        source: crate::crypto::keys::KeyRingError,
    },
    /// Rotation: a blob row holds a malformed digest.
    #[error("re-wrapping data key {key_id}: {source}")]
    Rewrap {
        key_id: String,
        #[source]
        source: crate::crypto::data_key::DataKeyError,
    },
    /// Rotation: every other data key was re-wrapped, these the key ring could not open (see `keys list`).
    #[error(
        "{count} data key(s) could not be re-wrapped: no identity in the key ring opens them (or they are damaged); \
         `keys list` names the master identities they are wrapped to"
    )]
    RewrapIncomplete { count: usize },
    #[error("re-sealing the TOTP secret of account {user_id}: {source}")]
    ResealSecret {
        user_id: String,
        #[source]
        source: account_secrets::SecretError,
    },
    /// `keys rotate --data-keys` / `keys convert`: a submission's current data key does not open with this key ring
    /// (wrapped to a master identity that is not in it, or damaged), so nothing is re-encrypted to it.
    #[error(
        "submission {submission_id}: its current data key {key_id} (wrapped to {master_key_id}) does not open with \
         this key ring ({reason}); nothing was re-encrypted to it. Was it made with another keys_dir? `keys list` \
         names the master identities data keys are wrapped to"
    )]
    CurrentKeyUnopenable {
        submission_id: String,
        key_id: String,
        master_key_id: String,
        reason: String,
    },
    #[error("re-encrypting blob {id}: {source}")]
    Reseal {
        id: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Database(#[from] AppError),
    /// The key directory's lock could not be taken (not busy: the lock itself failed).
    #[error("locking {}: {source}", path.display())]
    Lock {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// Someone else is using the key directory in a way that excludes this use (see [`in_use`]).
    #[error("{why} ({})", path.display())]
    InUse { path: PathBuf, why: String },
    /// `file` mode configured, but the store on disk is protected.
    #[error(
        "the key store {} is protected ({on_disk}); set master_key_protection = \"{on_disk}\" \
         (refusing to generate clear keys beside it)",
        path.display()
    )]
    Protected {
        path: PathBuf,
        on_disk: &'static str,
    },
    /// A sealed mode configured, but the store holds clear keys.
    #[error(
        "the key store {} holds its keys in clear; convert it first with \
         `pcii-portal keys protect --mode {mode}`",
        path.display()
    )]
    NotProtected { path: PathBuf, mode: &'static str },
    /// A conversion was interrupted (clear files beside sealed ones, or two wrappers).
    #[error(
        "the key store {} is half converted; run `pcii-portal keys protect --mode {mode}` again \
         to finish",
        path.display()
    )]
    Interrupted { path: PathBuf, mode: &'static str },
    /// `keys protect` into the mode the store is already fully in: the passphrase or custodians given would
    /// be ignored, so nothing is done and the operator is told how to change them.
    #[error(
        "the key store {} is already protected ({mode}) and nothing was left to finish: nothing was changed. \
         To set a new passphrase or new custodians, run `pcii-portal keys protect --mode {mode} \
         --new-unlock-key ...`",
        path.display()
    )]
    AlreadyProtected { path: PathBuf, mode: &'static str },
    /// `shares` mode configured on a store that has no shares yet.
    #[error(
        "the key store {} has no shares; create them with \
         `pcii-portal keys protect --mode shares --threshold K --custodian age1... ...`",
        path.display()
    )]
    NoShares { path: PathBuf },
    /// The mode needs a person (a passphrase typed, or shares) and none can be asked here.
    #[error(
        "master_key_protection = \"{mode}\" needs the secret to open the keys: start with \
         `pcii-portal serve` (or set master_key_passphrase_file)"
    )]
    NeedsUnlock { mode: &'static str },
    /// The passphrase does not open `unlock.age`.
    #[error("the passphrase does not open {}", path.display())]
    WrongPassphrase { path: PathBuf },
    /// The passphrase file is empty.
    #[error("the passphrase file {} is empty", path.display())]
    EmptyPassphrase { path: PathBuf },
    /// The two passphrases typed differ.
    #[error("the two passphrases differ")]
    PassphraseMismatch,
    /// The chosen passphrase is too short.
    #[error("the passphrase must have at least {min} characters")]
    PassphraseTooShort { min: usize },
    /// The chosen passphrase is easy to guess offline.
    #[error(
        "the passphrase is too easy to guess for a secret a copy of keys/ can be tried against at leisure: use \
         five or more unrelated words, or a long random one"
    )]
    PassphraseWeak,
    /// The terminal could not be read.
    #[error("reading from the terminal: {0}")]
    Terminal(#[source] std::io::Error),
    /// Wrapping the unlock key failed.
    #[error("wrapping the unlock key failed")]
    Wrap,
    /// A share, the split or the manifest.
    #[error("shares: {0}")]
    Shares(#[from] shares::ShareError),
    /// A command that must not create keys found no master identity file in the key directory: a wrong
    /// `keys_dir`, or a store not yet made. Nothing was written.
    #[error(
        "no key store in {}: neither {IDENTITY} nor {IDENTITY}.age is there. Nothing was created: this command \
         only opens an existing key store (check keys_dir; a new one is made by `pcii-portal keys init` or the \
         portal's first start)",
        path.display(),
        IDENTITY = crate::crypto::keys::IDENTITY_FILE_NAME
    )]
    NoKeyStore { path: PathBuf },
    /// `keys protect` found sealed secret files without their clear counterparts and without the wrapper that
    /// opens them: no interrupted conversion leaves that (a partial restore, or a wrapper moved away).
    #[error(
        "the key store {} holds sealed key files ({}) but neither unlock.age nor shares/manifest.json to open \
         them, and no clear copy of them: not something an interrupted `keys protect` leaves (a partial restore, or \
         the wrapper moved away?). Nothing was changed: put the wrapper back, or move these files aside if they \
         are not wanted",
        path.display(),
        files.join(", ")
    )]
    SealedWithoutWrapper { path: PathBuf, files: Vec<String> },
    /// A `--share-file` holds no share of this store.
    #[error("{} holds no share of this key store", path.display())]
    BadShareFile { path: PathBuf },
}

/// How a newly generated master identity is named in `OpenedKeys::generated` (a new key store).
pub const GENERATED_MASTER: &str = "age identity ";

/// For a transaction of the key store's own (e.g. a rotation's count-and-retire under the audit head lock).
impl From<diesel::result::Error> for KeyStoreError {
    fn from(e: diesel::result::Error) -> Self {
        KeyStoreError::Database(AppError::from(e))
    }
}

pub struct OpenedKeys {
    pub keyring: KeyRing,
    pub cookie_secret: Zeroizing<String>,
    pub audit_signer: CheckpointSigner,
    /// Names of the keys generated by this start (empty on later starts).
    pub generated: Vec<String>,
    /// A `keys protect` that committed but was stopped before its audit entry: the entry's words, to record
    /// (then [`protection::forget_unrecorded`]).
    pub unrecorded_protection: Option<String>,
}

/// Creates the key directory (0700) with a `.gitignore` that keeps every key out of git.
pub(crate) fn prepare_dir(dir: &Path) -> Result<(), KeyStoreError> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if !dir.exists() {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| KeyStoreError::CreateDir {
                path: dir.to_path_buf(),
                source,
            })?;
    }
    let meta = std::fs::metadata(dir).map_err(|source| KeyStoreError::ReadDir {
        path: dir.to_path_buf(),
        source,
    })?;
    if meta.permissions().mode() & 0o002 != 0 {
        return Err(KeyStoreError::WorldWritableDir {
            path: dir.to_path_buf(),
        });
    }
    let ignore = dir.join(".gitignore");
    if !ignore.exists() {
        std::fs::write(&ignore, "*\n!.gitignore\n").map_err(|source| {
            KeyStoreError::WriteGitignore {
                path: ignore,
                source,
            }
        })?;
    }
    Ok(())
}

/// Opens (or generates) the key store without asking anyone: the `file` mode, or `passphrase` with a
/// passphrase file. Other modes answer [`KeyStoreError::NeedsUnlock`]; use [`open_unlocked`].
pub fn open_all(settings: &Settings) -> Result<OpenedKeys, KeyStoreError> {
    let at_rest = protection::unlock_non_interactive(settings)?;
    open_unlocked(settings, &at_rest)
}

/// Whether the key directory holds a master identity file, in clear or sealed: a store that exists, as opposed to
/// a missing or empty directory (or a wrong `keys_dir`). Reads nothing, writes nothing.
pub fn has_master_identity(dir: &Path) -> bool {
    let name = crate::crypto::keys::IDENTITY_FILE_NAME;
    AtRest::Clear.path(dir, name).exists() || dir.join(format!("{name}.age")).exists()
}

/// Refuses, with [`KeyStoreError::NoKeyStore`], a key directory that holds no master identity: for the commands
/// that only open a store (every one but `keys init`, `keys protect` and the portal's start), checked before they
/// unlock or write anything.
pub fn require_existing(dir: &Path) -> Result<(), KeyStoreError> {
    if has_master_identity(dir) {
        Ok(())
    } else {
        Err(KeyStoreError::NoKeyStore {
            path: dir.to_path_buf(),
        })
    }
}

/// Opens (or generates) the key store with its secret files resting as `at_rest` says. Refuses a store
/// whose layout does not match (a clear store in a sealed mode, a sealed one in `file` mode, a
/// half-finished conversion), so a misconfiguration never makes a second store.
pub fn open_unlocked(settings: &Settings, at_rest: &AtRest) -> Result<OpenedKeys, KeyStoreError> {
    open_store(settings, at_rest, true)
}

/// [`open_unlocked`] that never makes a new master identity: a store without one is
/// [`KeyStoreError::NoKeyStore`]. A new identity wrapped to a directory nobody meant (a wrong `keys_dir`) would
/// become the current master key of the database's next data keys.
pub fn open_existing(settings: &Settings, at_rest: &AtRest) -> Result<OpenedKeys, KeyStoreError> {
    require_existing(&settings.keys_dir)?;
    open_store(settings, at_rest, false)
}

fn open_store(
    settings: &Settings,
    at_rest: &AtRest,
    may_create: bool,
) -> Result<OpenedKeys, KeyStoreError> {
    let dir = settings.keys_dir.as_path();
    prepare_dir(dir)?;
    crate::crypto::keyfile::remove_abandoned_temporaries(dir)?;
    let mode = match at_rest {
        AtRest::Clear => protection::Mode::File,
        AtRest::Sealed(_) => match protection::Mode::of(settings) {
            protection::Mode::File => protection::Layout::scan(dir)
                .committed()
                .unwrap_or(protection::Mode::Passphrase),
            m => m,
        },
    };
    protection::check_layout(dir, mode)?;
    let mut generated = Vec::new();

    let (keyring, new_age) = if may_create {
        KeyRing::load_or_generate_with(dir, &settings.escrow_recipients, at_rest)?
    } else {
        match KeyRing::load_with(dir, &settings.escrow_recipients, at_rest) {
            Ok(ring) => (ring, false),
            Err(crate::crypto::keys::KeyRingError::Missing { .. }) => {
                return Err(KeyStoreError::NoKeyStore {
                    path: dir.to_path_buf(),
                })
            }
            Err(e) => return Err(e.into()),
        }
    };
    if new_age {
        generated.push(format!("{GENERATED_MASTER}{}", keyring.current_key_id()));
    }

    let (cookie_secret, new_secret) =
        open_cookie_secret(&at_rest.path(dir, COOKIE_SECRET_FILE), at_rest)?;
    if new_secret {
        generated.push("cookie secret key".into());
    }

    let (audit_signer, new_signer) =
        open_signing_key_with(&at_rest.path(dir, AUDIT_SIGNING_FILE), at_rest)?;
    if new_signer {
        generated.push(format!(
            "audit signing key {}",
            audit_signer.public_key_hex()
        ));
    }

    let unlock_key = match at_rest {
        AtRest::Clear => None,
        AtRest::Sealed(key) => Some(&**key),
    };
    let unrecorded_protection = protection::unrecorded(dir, unlock_key)?;
    Ok(OpenedKeys {
        keyring,
        cookie_secret,
        audit_signer,
        generated,
        unrecorded_protection,
    })
}

/// Reads Rocket's secret key, or generates one (64 random bytes, base64) if the file is missing.
/// The flag says whether it was generated.
fn open_cookie_secret(
    path: &Path,
    at_rest: &AtRest,
) -> Result<(Zeroizing<String>, bool), KeyStoreError> {
    if path.exists() {
        read_cookie_secret(path, at_rest)
    } else {
        generate_cookie_secret(path, at_rest)
    }
}

fn read_cookie_secret(
    path: &Path,
    at_rest: &AtRest,
) -> Result<(Zeroizing<String>, bool), KeyStoreError> {
    let s = at_rest.read(path)?;
    Ok((Zeroizing::new(s.trim().to_string()), false))
}

/// Creates the cookie secret exactly once: a process that starts beside this one and writes first wins, and its
/// secret is read back, so that both sign cookies with the one on disk.
fn generate_cookie_secret(
    path: &Path,
    at_rest: &AtRest,
) -> Result<(Zeroizing<String>, bool), KeyStoreError> {
    let mut bytes = Zeroizing::new([0u8; 64]);
    rand::rngs::OsRng.fill_bytes(bytes.as_mut());
    let encoded = Zeroizing::new(base64::engine::general_purpose::STANDARD.encode(&bytes[..]));
    if at_rest.create(path, encoded.as_bytes())? {
        Ok((encoded, true))
    } else {
        read_cookie_secret(path, at_rest)
    }
}

/// The audit public key where it can be read without a secret: from the signing key of a store whose keys rest in
/// clear (`file`), never generating one. `None` for a sealed store, a store with no key yet, or one that cannot
/// be read.
pub fn audit_public_key_in_clear(settings: &Settings) -> Option<String> {
    if protection::Mode::of(settings) != protection::Mode::File {
        return None;
    }
    let path = AtRest::Clear.path(&settings.keys_dir, AUDIT_SIGNING_FILE);
    let seed = AtRest::Clear.read(&path).ok()?;
    CheckpointSigner::from_seed_hex(seed.trim())
        .ok()
        .map(|s| s.public_key_hex())
}

/// Reads the audit signing key, or generates one if the file is missing (written 0600). The flag says
/// whether it was generated.
pub fn open_signing_key(path: &Path) -> Result<(CheckpointSigner, bool), KeyStoreError> {
    open_signing_key_with(path, &AtRest::Clear)
}

/// [`open_signing_key`] for a file resting as `at_rest` says.
pub fn open_signing_key_with(
    path: &Path,
    at_rest: &AtRest,
) -> Result<(CheckpointSigner, bool), KeyStoreError> {
    if path.exists() {
        read_signing_key(path, at_rest)
    } else {
        generate_signing_key(path, at_rest)
    }
}

fn read_signing_key(
    path: &Path,
    at_rest: &AtRest,
) -> Result<(CheckpointSigner, bool), KeyStoreError> {
    let seed = at_rest.read(path)?;
    let signer = CheckpointSigner::from_seed_hex(seed.trim()).map_err(|source| {
        KeyStoreError::SigningKey {
            path: path.to_path_buf(),
            source,
        }
    })?;
    Ok((signer, false))
}

/// Creates the audit signing key exactly once: when another process wrote one first, that one is read back and
/// used, so no process signs checkpoints with a key that is not on disk.
fn generate_signing_key(
    path: &Path,
    at_rest: &AtRest,
) -> Result<(CheckpointSigner, bool), KeyStoreError> {
    let (signer, seed_hex) = CheckpointSigner::generate();
    let seed_hex = Zeroizing::new(seed_hex);
    if at_rest.create(path, seed_hex.as_bytes())? {
        Ok((signer, true))
    } else {
        read_signing_key(path, at_rest)
    }
}

/// Audits the keys a start generated (names and public parts only).
pub fn record_generated(
    conn: &mut DbConn,
    audit: &AuditLog,
    generated: &[String],
) -> AppResult<()> {
    for name in generated {
        audit.record(
            conn,
            &Actor::cli(),
            Event::new("key.generate", Outcome::Success).reason(name.clone()),
        )?;
    }
    Ok(())
}

/// Audits a `keys protect` (`key.protect`, by the host's command line): `entry` says what it did, in public parts
/// only. Once recorded, the store's note of an unrecorded conversion goes.
pub fn record_protection(
    conn: &mut DbConn,
    audit: &AuditLog,
    keys_dir: &Path,
    entry: String,
) -> Result<(), KeyStoreError> {
    audit.record(
        conn,
        &Actor::cli(),
        Event::new("key.protect", Outcome::Success).reason(entry),
    )?;
    protection::forget_unrecorded(keys_dir)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two processes starting on an empty store both find the files missing; the second to write must take the
    /// first one's keys, not replace them (it used to, leaving the first signing with a key no longer on disk).
    #[test]
    fn a_process_that_loses_the_race_to_generate_uses_the_keys_on_disk() {
        let dir = tempfile::tempdir().unwrap();
        let at_rest = AtRest::Clear;
        let signing = dir.path().join(AUDIT_SIGNING_FILE);
        let (first, made) = generate_signing_key(&signing, &at_rest).unwrap();
        assert!(made);
        let on_disk = std::fs::read(&signing).unwrap();
        // The slower process, which saw no file a moment ago.
        let (second, made) = generate_signing_key(&signing, &at_rest).unwrap();
        assert!(!made);
        assert_eq!(second.public_key_hex(), first.public_key_hex());
        assert_eq!(std::fs::read(&signing).unwrap(), on_disk);

        let cookie = dir.path().join(COOKIE_SECRET_FILE);
        let (first, made) = generate_cookie_secret(&cookie, &at_rest).unwrap();
        assert!(made);
        let (second, made) = generate_cookie_secret(&cookie, &at_rest).unwrap();
        assert!(!made);
        assert_eq!(*second, *first);
        assert_eq!(std::fs::read_to_string(&cookie).unwrap(), *first);
        assert_eq!(crate::crypto::keyfile::key_files_in(dir.path()), 2);
    }

    #[test]
    fn signing_key_file_is_created_0600_and_reloaded() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("keys").join(AUDIT_SIGNING_FILE);
        let (a, generated) = open_signing_key(&path).unwrap();
        assert!(generated);
        let (b, generated) = open_signing_key(&path).unwrap();
        assert!(!generated);
        assert_eq!(a.public_key_hex(), b.public_key_hex());
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o644)).unwrap();
        assert!(matches!(
            open_signing_key(&path),
            Err(KeyStoreError::KeyFile(KeyFileError::Permissions { .. }))
        ));
    }
}
