//! `master_key_protection`: how the secrets under `keys/` rest, how they are unlocked, and the conversion
//! of a store from one way to another (`keys protect`).
//!
//! The hierarchy in the sealed modes: an **unlock key** (an age X25519 identity, in memory only) to which
//! every secret file is encrypted (`age-identities.txt.age`, `rocket-secret.key.age`,
//! `audit-signing.key.age`); the unlock key itself rests passphrase-encrypted (`unlock.age`, age scrypt)
//! or split among custodians (`shares/`). Reading a secret file is then an X25519 decryption, cheap enough
//! for the key ring's frequent "changed on disk?" check; only unlocking pays for scrypt.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;

use age::secrecy::SecretString;
use zeroize::Zeroizing;

use super::shares::{self, Collector, Manifest, Offered, ShareError, SHARES_DIR};
use super::{KeyStoreError, AUDIT_SIGNING_FILE, COOKIE_SECRET_FILE};
use crate::config::Settings;
use crate::crypto::keyfile::{self, AtRest, UnlockKey};
use crate::crypto::keys::IDENTITY_FILE_NAME;

/// The passphrase-encrypted unlock key.
pub const UNLOCK_FILE: &str = "unlock.age";
/// Every secret file of the store, by its clear name.
pub const SECRET_FILES: [&str; 3] = [IDENTITY_FILE_NAME, COOKIE_SECRET_FILE, AUDIT_SIGNING_FILE];
/// Written before a conversion's commit point and removed once its `key.protect` audit entry is recorded: a run
/// killed between the two leaves it, and whoever next opens the store with its secret records the conversion (see
/// [`unrecorded`]). Public parts only: the entry's text (mode, custodians' and unlock key's recipients).
pub const UNRECORDED_FILE: &str = "protect-unrecorded.json";
/// Shortest passphrase accepted when one is chosen (the same floor as account passwords).
pub const MIN_PASSPHRASE_CHARS: usize = 12;

/// `master_key_protection`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    File,
    Passphrase,
    Shares,
}

impl Mode {
    pub fn parse(s: &str) -> Option<Mode> {
        match s {
            "file" => Some(Mode::File),
            "passphrase" => Some(Mode::Passphrase),
            "shares" => Some(Mode::Shares),
            _ => None,
        }
    }

    /// The configured mode (validated by `Settings::validate`; unknown values read as `file` never
    /// happen there).
    pub fn of(settings: &Settings) -> Mode {
        Mode::parse(&settings.master_key_protection).unwrap_or(Mode::File)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Mode::File => "file",
            Mode::Passphrase => "passphrase",
            Mode::Shares => "shares",
        }
    }
}

/// What lies in a key directory.
#[derive(Debug, Clone, Default)]
pub struct Layout {
    /// Clear secret files present.
    pub clear: Vec<&'static str>,
    /// Sealed secret files (`*.age`) present.
    pub sealed: Vec<&'static str>,
    /// `unlock.age` present (passphrase mode committed).
    pub passphrase: bool,
    /// `shares/manifest.json` present (shares mode committed).
    pub shares: bool,
}

impl Layout {
    pub fn scan(dir: &Path) -> Layout {
        let sealed_path = |n: &str| dir.join(format!("{n}.age"));
        Layout {
            clear: SECRET_FILES
                .into_iter()
                .filter(|n| dir.join(n).exists())
                .collect(),
            sealed: SECRET_FILES
                .into_iter()
                .filter(|n| sealed_path(n).exists())
                .collect(),
            passphrase: dir.join(UNLOCK_FILE).exists(),
            shares: Manifest::path(dir).exists(),
        }
    }

    /// The sealed mode the store is committed to, if any (a finished or interrupted conversion may leave
    /// both wrappers; the caller decides).
    pub fn committed(&self) -> Option<Mode> {
        match (self.passphrase, self.shares) {
            (true, false) => Some(Mode::Passphrase),
            (false, true) => Some(Mode::Shares),
            (true, true) => Some(Mode::Shares),
            (false, false) => None,
        }
    }
}

/// Checks that the key directory matches how it is about to be opened, so that a misconfiguration
/// never generates a second, clear key store beside a protected one (or the reverse).
pub fn check_layout(dir: &Path, mode: Mode) -> Result<(), KeyStoreError> {
    let layout = Layout::scan(dir);
    let committed = layout.committed();
    match (mode, committed) {
        (Mode::File, Some(on_disk)) => Err(KeyStoreError::Protected {
            path: dir.to_path_buf(),
            on_disk: on_disk.as_str(),
        }),
        (Mode::File, None) => Ok(()),
        (_, Some(_)) if !layout.clear.is_empty() => Err(KeyStoreError::Interrupted {
            path: dir.to_path_buf(),
            mode: mode.as_str(),
        }),
        (_, Some(on_disk)) if on_disk != mode || (layout.passphrase && layout.shares) => {
            Err(KeyStoreError::Interrupted {
                path: dir.to_path_buf(),
                mode: on_disk.as_str(),
            })
        }
        (_, Some(_)) => Ok(()),
        (_, None) if !layout.clear.is_empty() => Err(KeyStoreError::NotProtected {
            path: dir.to_path_buf(),
            mode: mode.as_str(),
        }),
        (Mode::Shares, None) => Err(KeyStoreError::NoShares {
            path: dir.to_path_buf(),
        }),
        (_, None) => Ok(()),
    }
}

// ----- the passphrase ---------------------------------------------------------------------------

/// A lower scrypt work factor for the test suites only (0 = age's default, about a second). Nothing in
/// the binary sets it.
static TEST_SCRYPT_LOG_N: AtomicU8 = AtomicU8::new(0);

/// Lowers the scrypt work factor of passphrases set from now on in this process. For tests only: a
/// production store must keep age's default.
#[doc(hidden)]
pub fn weaken_scrypt_for_tests(log_n: u8) {
    TEST_SCRYPT_LOG_N.store(log_n, Ordering::Relaxed);
}

/// The unlock key encrypted under `passphrase` (age scrypt recipient).
pub fn wrap_with_passphrase(key: &UnlockKey, passphrase: &str) -> Result<Vec<u8>, KeyStoreError> {
    let mut recipient = age::scrypt::Recipient::new(SecretString::from(passphrase.to_owned()));
    let log_n = TEST_SCRYPT_LOG_N.load(Ordering::Relaxed);
    if log_n > 0 {
        recipient.set_work_factor(log_n);
    }
    age::encrypt(&recipient, key.to_secret().as_bytes()).map_err(|_| KeyStoreError::Wrap)
}

/// Opens `keys/unlock.age` with the passphrase.
pub fn unwrap_with_passphrase(dir: &Path, passphrase: &str) -> Result<UnlockKey, KeyStoreError> {
    let path = dir.join(UNLOCK_FILE);
    let bytes = keyfile::read_private_bytes(&path)?;
    let identity = age::scrypt::Identity::new(SecretString::from(passphrase.to_owned()));
    let plain = keyfile::open_with(&identity, &bytes)
        .map_err(|_| KeyStoreError::WrongPassphrase { path: path.clone() })?;
    std::str::from_utf8(&plain)
        .ok()
        .and_then(UnlockKey::from_secret)
        .ok_or(KeyStoreError::WrongPassphrase { path })
}

/// Reads the passphrase from a file (`master_key_passphrase_file`, `--passphrase-file`): 0600 or
/// 0400 like a key file; one trailing line break is not part of it.
pub fn read_passphrase_file(path: &Path) -> Result<Zeroizing<String>, KeyStoreError> {
    let text = keyfile::read_private(path)?;
    let trimmed = text.strip_suffix('\n').unwrap_or(&text);
    let trimmed = trimmed.strip_suffix('\r').unwrap_or(trimmed);
    if trimmed.is_empty() {
        return Err(KeyStoreError::EmptyPassphrase {
            path: path.to_path_buf(),
        });
    }
    Ok(Zeroizing::new(trimmed.to_owned()))
}

/// Asks on the terminal, without echo.
pub fn prompt_secret(prompt: &str) -> Result<Zeroizing<String>, KeyStoreError> {
    rpassword::prompt_password(prompt)
        .map(Zeroizing::new)
        .map_err(KeyStoreError::Terminal)
}

/// A new passphrase: from the file if one is named, else asked twice on the terminal. At least
/// [`MIN_PASSPHRASE_CHARS`] characters.
pub fn new_passphrase(file: Option<&Path>) -> Result<Zeroizing<String>, KeyStoreError> {
    let passphrase = match file {
        Some(path) => read_passphrase_file(path)?,
        None => {
            let first = prompt_secret("New master-key passphrase: ")?;
            let again = prompt_secret("The same passphrase again: ")?;
            if *first != *again {
                return Err(KeyStoreError::PassphraseMismatch);
            }
            first
        }
    };
    if passphrase.chars().count() < MIN_PASSPHRASE_CHARS {
        return Err(KeyStoreError::PassphraseTooShort {
            min: MIN_PASSPHRASE_CHARS,
        });
    }
    if !hard_to_guess(&passphrase) {
        return Err(KeyStoreError::PassphraseWeak);
    }
    Ok(passphrase)
}

/// Whether zxcvbn puts the passphrase out of reach of an offline attack (score 4: over 10^10 guesses). It is the
/// one secret a copy of `keys/` can be tried against at leisure (one scrypt run a guess), and it guards every data
/// key: a length alone let "aaaaaaaaaaaa" through.
fn hard_to_guess(passphrase: &str) -> bool {
    // zxcvbn's matching grows faster than linearly with the length; a passphrase strong in its first 100
    // characters is strong.
    let head: String = passphrase.chars().take(100).collect();
    zxcvbn::zxcvbn(&head, &[]).score() >= zxcvbn::Score::Four
}

/// The configured passphrase file, if any.
fn passphrase_file(settings: &Settings) -> Option<&Path> {
    let p = settings.master_key_passphrase_file.as_path();
    (!p.as_os_str().is_empty()).then_some(p)
}

/// Unlocks a passphrase store, or creates one on first start (a new unlock key, wrapped under a new
/// passphrase). `interactive` allows asking on the terminal when no passphrase file is configured.
pub fn unlock_passphrase(
    settings: &Settings,
    interactive: bool,
) -> Result<UnlockKey, KeyStoreError> {
    let dir = settings.keys_dir.as_path();
    super::prepare_dir(dir)?;
    check_layout(dir, Mode::Passphrase)?;
    let file = passphrase_file(settings);
    if file.is_none() && !interactive {
        return Err(KeyStoreError::NeedsUnlock { mode: "passphrase" });
    }
    if dir.join(UNLOCK_FILE).exists() {
        let passphrase = match file {
            Some(path) => read_passphrase_file(path)?,
            None => prompt_secret("Master-key passphrase: ")?,
        };
        return unwrap_with_passphrase(dir, &passphrase);
    }
    // A new store: nothing to convert, so the keys are generated already sealed.
    let passphrase = new_passphrase(file)?;
    let key = UnlockKey::generate();
    let wrapped = wrap_with_passphrase(&key, &passphrase)?;
    if keyfile::create_private(&dir.join(UNLOCK_FILE), &wrapped)? {
        Ok(key)
    } else {
        // Another process created it meanwhile: unlock theirs.
        unwrap_with_passphrase(dir, &passphrase)
    }
}

// ----- shares -----------------------------------------------------------------------------------

/// Unlocks a shares store from the terminal: shares read from `share_files` first, then asked (without
/// echo) until the threshold is reached. A wrong share is said so; three wrong ones end the attempt.
pub fn unlock_shares_cli(
    settings: &Settings,
    share_files: &[PathBuf],
) -> Result<UnlockKey, KeyStoreError> {
    let dir = settings.keys_dir.as_path();
    check_layout(dir, Mode::Shares)?;
    let mut collector = Collector::new(Manifest::read(dir)?);
    for path in share_files {
        let text = shares::read_share_file(path)?;
        match collector.offer(&text) {
            Ok(Offered::Complete(key)) => return Ok(key),
            Ok(_) => {}
            Err(ShareError::NotAShare) => {
                return Err(KeyStoreError::BadShareFile { path: path.clone() })
            }
            Err(e) => return Err(e.into()),
        }
    }
    let mut wrong = 0;
    loop {
        let prompt = format!(
            "Share {} of the {} needed (input hidden): ",
            collector.have() + 1,
            collector.need()
        );
        let text = prompt_secret(&prompt)?;
        match collector.offer(&text) {
            Ok(Offered::Complete(key)) => return Ok(key),
            Ok(Offered::Duplicate { .. }) => eprintln!("that share was given already"),
            Ok(Offered::Accepted { .. }) => {}
            Err(ShareError::NotAShare) => {
                wrong += 1;
                eprintln!("that is not a share of this key store");
                if wrong >= 3 {
                    return Err(ShareError::NotAShare.into());
                }
            }
            Err(e) => return Err(e.into()),
        }
    }
}

// ----- resolving how to open ------------------------------------------------------------------------

/// How to open the store without asking anyone: `file`, or `passphrase` with a passphrase file. The
/// `shares` mode (and `passphrase` without a file) needs a person: `NeedsUnlock`.
pub fn unlock_non_interactive(settings: &Settings) -> Result<AtRest, KeyStoreError> {
    match Mode::of(settings) {
        Mode::File => Ok(AtRest::Clear),
        Mode::Passphrase => Ok(AtRest::Sealed(Arc::new(unlock_passphrase(
            settings, false,
        )?))),
        Mode::Shares => Err(KeyStoreError::NeedsUnlock { mode: "shares" }),
    }
}

/// How the CLI opens the store: the passphrase from its file or the terminal; shares from files or the
/// terminal.
pub fn unlock_interactive(
    settings: &Settings,
    share_files: &[PathBuf],
) -> Result<AtRest, KeyStoreError> {
    match Mode::of(settings) {
        Mode::File => Ok(AtRest::Clear),
        Mode::Passphrase => Ok(AtRest::Sealed(Arc::new(unlock_passphrase(settings, true)?))),
        Mode::Shares => Ok(AtRest::Sealed(Arc::new(unlock_shares_cli(
            settings,
            share_files,
        )?))),
    }
}

// ----- converting a store ---------------------------------------------------------------------------

/// What `keys protect` is to produce.
pub enum Target {
    /// The unlock key under this passphrase.
    Passphrase(Zeroizing<String>),
    /// The unlock key split `threshold`-of-n among these custodians' recipients.
    Shares {
        threshold: usize,
        custodians: Vec<String>,
    },
}

impl Target {
    pub fn mode(&self) -> Mode {
        match self {
            Target::Passphrase(_) => Mode::Passphrase,
            Target::Shares { .. } => Mode::Shares,
        }
    }

    /// The mode and, for shares, the threshold and the custodians' public recipients.
    pub fn describe(&self) -> String {
        match self {
            Target::Passphrase(_) => "passphrase".to_owned(),
            Target::Shares {
                threshold,
                custodians,
            } => format!(
                "shares, {threshold} of {}: {}",
                custodians.len(),
                custodians.join(", ")
            ),
        }
    }

    /// The `key.protect` entry's words for a conversion to this target sealed to `key` (public parts only).
    fn entry(&self, key: &UnlockKey, new_unlock_key: bool) -> String {
        let new = if new_unlock_key {
            "; a new unlock key"
        } else {
            ""
        };
        format!("{}; unlock key {}{new}", self.describe(), key.recipient())
    }
}

/// The note [`UNRECORDED_FILE`] holds.
#[derive(Debug, serde::Serialize, serde::Deserialize)]
struct Unrecorded {
    mode: String,
    unlock_recipient: String,
    entry: String,
}

/// Notes a conversion to `target` sealed to `key` as not yet recorded (before its commit point).
fn note_unrecorded(
    dir: &Path,
    target: &Target,
    key: &UnlockKey,
    new_unlock_key: bool,
) -> Result<(), KeyStoreError> {
    let note = Unrecorded {
        mode: target.mode().as_str().into(),
        unlock_recipient: key.recipient(),
        entry: target.entry(key, new_unlock_key),
    };
    let json = serde_json::to_vec_pretty(&note).map_err(|_| KeyStoreError::Wrap)?;
    keyfile::write_private(&dir.join(UNRECORDED_FILE), &json)?;
    Ok(())
}

/// The `key.protect` entry a conversion left unrecorded, when it committed: the store is sealed in its mode to
/// the unlock key it names, `current` (the key the store was just opened with). A note whose run stopped before
/// its commit point (the store in clear, another mode, or another unlock key in force) says nothing happened; it
/// can never match later (its unlock key was made for that run, or the mode it names is committed only by a run
/// that writes its own note), and it is left for the next `keys protect`, which holds the store's lock, to replace
/// or forget: a command opening the store meanwhile could be beside a conversion under way.
pub fn unrecorded(
    dir: &Path,
    current: Option<&UnlockKey>,
) -> Result<Option<String>, KeyStoreError> {
    let path = dir.join(UNRECORDED_FILE);
    if !path.exists() {
        return Ok(None);
    }
    let note: Option<Unrecorded> = serde_json::from_str(&keyfile::read_private(&path)?).ok();
    let committed = Layout::scan(dir).committed().map(Mode::as_str);
    match (note, current) {
        (Some(note), Some(key))
            if committed == Some(note.mode.as_str())
                && note.unlock_recipient == key.recipient() =>
        {
            Ok(Some(format!(
                "{}; recorded by a later run (the converting run stopped before it could)",
                note.entry
            )))
        }
        _ => Ok(None),
    }
}

/// The conversion's entry is in the audit log (or its note was stale): the note goes.
pub fn forget_unrecorded(dir: &Path) -> Result<(), KeyStoreError> {
    keyfile::destroy(&dir.join(UNRECORDED_FILE))?;
    Ok(())
}

/// What a conversion did, for the operator (file names and public ids only).
#[derive(Debug, Default)]
pub struct Protected {
    /// The store was already in the target mode; only leftovers were removed.
    pub finished_only: bool,
    /// Clear files (or an old wrapper) removed.
    pub removed: Vec<String>,
    /// Share files written, with their custodians' recipients.
    pub share_files: Vec<(PathBuf, String)>,
    /// The unlock key's recipient (public).
    pub unlock_recipient: Option<String>,
    /// The unlock key the store is now sealed to (`None` when a re-run only finished removing leftovers): so
    /// that the command can open the audit signing key and record what it did without asking again.
    pub unlock: Option<Arc<UnlockKey>>,
    /// The `key.protect` entry's words for what it converted (`None` when a re-run only finished: then the note
    /// its interrupted run left says it, see [`unrecorded`]).
    pub entry: Option<String>,
    /// The store moved from one unlock key to a new one (see [`rekey`]): old wrappers open nothing current.
    pub new_unlock_key: bool,
}

/// Converts the key store to `target`. New files are written (and fsynced) first, the wrapper of the
/// unlock key last — that write is the commit point — and only then are the clear files (or the old
/// wrapper) overwritten and unlinked. Interrupted before the commit, the clear store is untouched and a
/// re-run starts again with a new unlock key; interrupted after it, a re-run only finishes the removal.
/// A store already sealed in the other mode moves to a new unlock key, as [`rekey`] does: `unlock_current` is
/// asked for the current unlock key (the passphrase or the shares of the current protection).
pub fn protect(
    settings: &Settings,
    target: Target,
    unlock_current: &mut dyn FnMut() -> Result<UnlockKey, KeyStoreError>,
) -> Result<Protected, KeyStoreError> {
    let dir = settings.keys_dir.as_path();
    super::prepare_dir(dir)?;
    let layout = Layout::scan(dir);
    let mode = target.mode();
    let mut done = Protected::default();
    let target_committed = match mode {
        Mode::Passphrase => layout.passphrase,
        _ => layout.shares,
    };
    if layout.passphrase && layout.shares {
        // A move to a new unlock key in the other mode stopped after its commit point, before the old wrapper went:
        // the files may still open with the old key too. Done again, with yet another new key, as `rekey` does.
        return rekey(settings, target, unlock_current);
    }
    if target_committed {
        // A re-run: the target wrapper was written (after every sealed file), so what is left is removal.
        done.finished_only = true;
        finish(dir, mode, &mut done)?;
        // With a note left, the caller opens the store and records the conversion if it committed.
        if done.removed.is_empty() && !dir.join(UNRECORDED_FILE).exists() {
            return Err(KeyStoreError::AlreadyProtected {
                path: dir.to_path_buf(),
                mode: mode.as_str(),
            });
        }
        return Ok(done);
    }

    if let Some(current) = layout.committed() {
        // Sealed in the other mode. Re-wrapping the unlock key in force would leave an old copy of its wrapper (an
        // `unlock.age` and its old passphrase, or k old shares) opening today's files, as a same-mode change would:
        // a new unlock key, every file re-encrypted to it. Clear files a conversion to the current mode left after
        // its commit point go first (`rekey` refuses a store with clear files).
        finish(dir, current, &mut done)?;
        let mut rekeyed = rekey(settings, target, unlock_current)?;
        done.removed.append(&mut rekeyed.removed);
        rekeyed.removed = done.removed;
        return Ok(rekeyed);
    }
    // A run of this command interrupted before its commit point seals only files it has in clear, and removes no
    // clear file before that point: a sealed file with neither its clear copy nor a wrapper came from elsewhere,
    // and the wrapper that opens it may yet be found.
    let orphans: Vec<String> = layout
        .sealed
        .iter()
        .filter(|n| !layout.clear.contains(n))
        .map(|n| format!("{n}.age"))
        .collect();
    if !orphans.is_empty() {
        return Err(KeyStoreError::SealedWithoutWrapper {
            path: dir.to_path_buf(),
            files: orphans,
        });
    }
    let key = {
        let key = Arc::new(UnlockKey::generate());
        note_unrecorded(dir, &target, &key, false)?;
        let sealed = AtRest::Sealed(key.clone());
        for name in SECRET_FILES {
            let clear = dir.join(name);
            let target_path = sealed.path(dir, name);
            // A sealed leftover beside its clear file (an interrupted run's, to a key never committed) is replaced.
            if clear.exists() {
                let text = keyfile::read_private(&clear)?;
                sealed.write(&target_path, text.as_bytes())?;
            }
        }
        key
    };

    write_wrapper(dir, &key, &target, None, &mut done)?;
    done.unlock_recipient = Some(key.recipient());
    finish(dir, mode, &mut done)?;
    done.entry = Some(target.entry(&key, false));
    done.unlock = Some(key);
    Ok(done)
}

/// Writes the wrapper of `key` that `target` names — the commit point of a conversion: `unlock.age` under the
/// passphrase, or a share file per custodian and then the manifest. Share files are named `share-<id>.age`, or
/// `share-<id>-<tag>.age` when `tag` is given (so that the files of a split in force are not overwritten before the
/// manifest that replaces it). Returns the share files written (none for a passphrase).
fn write_wrapper(
    dir: &Path,
    key: &UnlockKey,
    target: &Target,
    tag: Option<&str>,
    done: &mut Protected,
) -> Result<Vec<String>, KeyStoreError> {
    match target {
        Target::Passphrase(passphrase) => {
            let wrapped = wrap_with_passphrase(key, passphrase)?;
            keyfile::write_private(&dir.join(UNLOCK_FILE), &wrapped)?;
            Ok(Vec::new())
        }
        Target::Shares {
            threshold,
            custodians,
        } => {
            let mut split = shares::split(key, *threshold, custodians)?;
            if let Some(tag) = tag {
                for (entry, (file, _)) in split.manifest.shares.iter_mut().zip(&mut split.files) {
                    *file = format!("share-{}-{tag}.age", entry.id);
                    entry.file = file.clone();
                }
            }
            let shares_dir = dir.join(SHARES_DIR);
            for (file, ciphertext) in &split.files {
                keyfile::write_private(&shares_dir.join(file), ciphertext)?;
            }
            for (s, (file, _)) in split.manifest.shares.iter().zip(&split.files) {
                done.share_files
                    .push((shares_dir.join(file), s.custodian.clone()));
            }
            let json =
                serde_json::to_vec_pretty(&split.manifest).map_err(|_| KeyStoreError::Wrap)?;
            // The commit point: written after every share file.
            keyfile::write_private(&Manifest::path(dir), &json)?;
            Ok(split.files.into_iter().map(|(file, _)| file).collect())
        }
    }
}

/// `keys protect --new-unlock-key`: moves a sealed store to a *new* unlock key, wrapped as `target` says (a new
/// passphrase, or shares among a new set of custodians; either mode). Re-wrapping the same unlock key would leave an
/// old copy of the wrapper (an old `unlock.age` with its old passphrase, or k old shares) opening the secret files;
/// after this, it opens none of the files on disk. In steps, each safe to interrupt:
///
/// 1. every secret file is encrypted to both the current and the new unlock key (each file replaced atomically);
/// 2. the new wrapper is written: `unlock.age` replaced, or new share files under new names and then the manifest
///    (the commit point);
/// 3. the old wrapper is removed;
/// 4. every secret file is encrypted to the new key alone; share files no manifest names are removed.
///
/// So whichever wrapper is on disk opens every file at every moment, and running the same command again completes
/// it (with yet another new unlock key). Running portals keep the master identities they hold; each is restarted
/// (with the new passphrase, or unsealed with the new shares) before the next `keys rotate`, which it could not
/// read otherwise.
pub fn rekey(
    settings: &Settings,
    target: Target,
    unlock_current: &mut dyn FnMut() -> Result<UnlockKey, KeyStoreError>,
) -> Result<Protected, KeyStoreError> {
    let dir = settings.keys_dir.as_path();
    super::prepare_dir(dir)?;
    let mode = target.mode();
    let layout = Layout::scan(dir);
    if layout.committed().is_none() || !layout.clear.is_empty() {
        // In clear (or half converted from clear): `keys protect` makes a new unlock key anyway.
        return Err(KeyStoreError::NotProtected {
            path: dir.to_path_buf(),
            mode: mode.as_str(),
        });
    }
    let mut done = Protected::default();
    if layout.passphrase && layout.shares {
        // A run stopped between steps 2 and 3: every file opens with either wrapper, so keep the target's.
        finish(dir, mode, &mut done)?;
    }
    let current = unlock_current()?;
    let next = UnlockKey::generate();
    note_unrecorded(dir, &target, &next, true)?;
    let sealed_names: Vec<&str> = SECRET_FILES
        .into_iter()
        .filter(|n| dir.join(format!("{n}.age")).exists())
        .collect();
    let current = Arc::new(current);
    let opened = AtRest::Sealed(current.clone());
    // 1. Both keys open every file.
    for name in &sealed_names {
        let path = dir.join(format!("{name}.age"));
        let text = opened.read(&path)?;
        let both = current
            .seal_also_to(&next, text.as_bytes())
            .map_err(|reason| {
                KeyStoreError::KeyFile(keyfile::KeyFileError::Sealed {
                    path: path.clone(),
                    reason,
                })
            })?;
        keyfile::write_private(&path, &both)?;
    }
    // 2. The new wrapper: the commit point. New share-file names, so that the split in force stays whole until then.
    let tag: String = next.recipient().chars().skip(4).take(8).collect();
    let manifest_files = write_wrapper(dir, &next, &target, Some(&tag), &mut done)?;
    // 3. The other mode's wrapper, if the mode changed.
    finish(dir, mode, &mut done)?;
    // 4. The new key alone; the split no longer in force.
    let next = Arc::new(next);
    let fresh = AtRest::Sealed(next.clone());
    for name in &sealed_names {
        let path = dir.join(format!("{name}.age"));
        let text = fresh.read(&path)?;
        fresh.write(&path, text.as_bytes())?;
    }
    if mode == Mode::Shares {
        if let Ok(entries) = std::fs::read_dir(dir.join(SHARES_DIR)) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().into_owned();
                if name.ends_with(".age") && !manifest_files.contains(&name) {
                    keyfile::destroy(&e.path())?;
                    done.removed.push(format!("{SHARES_DIR}/{name}"));
                }
            }
        }
    }
    done.unlock_recipient = Some(next.recipient());
    done.entry = Some(target.entry(&next, true));
    done.new_unlock_key = true;
    done.unlock = Some(next);
    Ok(done)
}

/// After the commit: removes the clear files whose sealed copy exists, and the other mode's wrapper.
fn finish(dir: &Path, mode: Mode, done: &mut Protected) -> Result<(), KeyStoreError> {
    for name in SECRET_FILES {
        let clear = dir.join(name);
        if clear.exists() {
            if !dir.join(format!("{name}.age")).exists() {
                // Never remove a secret that has no sealed copy.
                return Err(KeyStoreError::Interrupted {
                    path: dir.to_path_buf(),
                    mode: mode.as_str(),
                });
            }
            keyfile::destroy(&clear)?;
            done.removed.push(name.to_string());
        }
    }
    match mode {
        Mode::Passphrase if Manifest::path(dir).exists() => {
            let shares_dir = dir.join(SHARES_DIR);
            // Manifest first: without it the share files are inert, whatever is left.
            keyfile::destroy(&Manifest::path(dir))?;
            if let Ok(entries) = std::fs::read_dir(&shares_dir) {
                for e in entries.flatten() {
                    keyfile::destroy(&e.path())?;
                }
            }
            let _ = std::fs::remove_dir(&shares_dir);
            done.removed.push(format!("{SHARES_DIR}/"));
        }
        Mode::Shares if dir.join(UNLOCK_FILE).exists() => {
            keyfile::destroy(&dir.join(UNLOCK_FILE))?;
            done.removed.push(UNLOCK_FILE.to_string());
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_master_key_passphrase_must_be_out_of_reach_of_an_offline_attack() {
        for weak in [
            "aaaaaaaaaaaa",
            "passwordpassword",
            "Summer2026!!!",
            "qwertyuiop123",
        ] {
            assert!(!super::hard_to_guess(weak), "{weak}");
        }
        // The suites' own passphrases, and a few unrelated words.
        for strong in [
            "a passphrase for the test suite",
            "the passphrase of last year",
            "the passphrase of this year",
            "the passphrase of the test",
            "correct horse battery staple",
        ] {
            assert!(super::hard_to_guess(strong), "{strong}");
        }
    }

    use super::*;

    fn settings(dir: &Path, mode: &str) -> Settings {
        Settings {
            keys_dir: dir.join("keys"),
            data_dir: dir.join("data"),
            master_key_protection: mode.into(),
            ..Settings::default()
        }
    }

    #[test]
    fn passphrase_wrap_round_trip() {
        weaken_scrypt_for_tests(4);
        let tmp = tempfile::tempdir().unwrap();
        let key = UnlockKey::generate();
        let wrapped = wrap_with_passphrase(&key, "a long enough passphrase").unwrap();
        keyfile::write_private(&tmp.path().join(UNLOCK_FILE), &wrapped).unwrap();
        let back = unwrap_with_passphrase(tmp.path(), "a long enough passphrase").unwrap();
        assert_eq!(back.recipient(), key.recipient());
        let err = unwrap_with_passphrase(tmp.path(), "the wrong passphrase").unwrap_err();
        assert!(
            matches!(err, KeyStoreError::WrongPassphrase { .. }),
            "{err}"
        );
        assert!(!err.to_string().contains("passphrase\""));
    }

    #[test]
    fn protect_passphrase_converts_a_clear_store_and_a_rerun_finishes() {
        weaken_scrypt_for_tests(4);
        let tmp = tempfile::tempdir().unwrap();
        let clear = settings(tmp.path(), "file");
        let opened = super::super::open_all(&clear).unwrap();
        let key_id = opened.keyring.current_key_id().to_owned();
        let cookie = opened.cookie_secret.clone();
        let dir = clear.keys_dir.clone();
        let pass = "correct horse battery staple";
        let done = protect(
            &clear,
            Target::Passphrase(Zeroizing::new(pass.into())),
            &mut || unreachable!(),
        )
        .unwrap();
        assert_eq!(done.removed.len(), 3);
        let layout = Layout::scan(&dir);
        assert!(layout.clear.is_empty() && layout.passphrase && layout.sealed.len() == 3);
        // An interrupted removal: a clear file put back is removed by the re-run.
        keyfile::write_private(&dir.join(COOKIE_SECRET_FILE), cookie.as_bytes()).unwrap();
        let sealed_settings = settings(tmp.path(), "passphrase");
        assert!(matches!(
            check_layout(&dir, Mode::Passphrase),
            Err(KeyStoreError::Interrupted { .. })
        ));
        let again = protect(
            &sealed_settings,
            Target::Passphrase(Zeroizing::new(pass.into())),
            &mut || unreachable!(),
        )
        .unwrap();
        assert!(again.finished_only);
        assert_eq!(again.removed, vec![COOKIE_SECRET_FILE.to_string()]);
        // The command records the conversion, then forgets its note (kept, a re-run would record it).
        assert!(dir.join(UNRECORDED_FILE).exists());
        forget_unrecorded(&dir).unwrap();
        // Once more, with nothing left to finish: a new passphrase given this way would be ignored, so it is
        // refused (and the old passphrase still opens the store).
        let ignored = protect(
            &sealed_settings,
            Target::Passphrase(Zeroizing::new("another passphrase, ignored".into())),
            &mut || unreachable!(),
        );
        assert!(
            matches!(
                ignored,
                Err(KeyStoreError::AlreadyProtected {
                    mode: "passphrase",
                    ..
                })
            ),
            "{ignored:?}"
        );
        // The file mode now refuses the store instead of generating clear keys beside it.
        assert!(matches!(
            super::super::open_all(&clear),
            Err(KeyStoreError::Protected { .. })
        ));
        let key = unwrap_with_passphrase(&dir, pass).unwrap();
        let reopened =
            super::super::open_unlocked(&sealed_settings, &AtRest::Sealed(Arc::new(key))).unwrap();
        assert_eq!(reopened.keyring.current_key_id(), key_id);
        assert_eq!(*reopened.cookie_secret, *cookie);
        assert!(reopened.generated.is_empty());
    }

    #[test]
    fn protect_before_commit_leaves_the_clear_store_usable() {
        weaken_scrypt_for_tests(4);
        let tmp = tempfile::tempdir().unwrap();
        let clear = settings(tmp.path(), "file");
        let opened = super::super::open_all(&clear).unwrap();
        let dir = clear.keys_dir.clone();
        // What an interruption before the commit leaves: sealed copies to a lost key, no wrapper.
        let lost = AtRest::Sealed(Arc::new(UnlockKey::generate()));
        keyfile::write_private(&lost.path(&dir, COOKIE_SECRET_FILE), b"x").unwrap();
        let still = super::super::open_all(&clear).unwrap();
        assert_eq!(
            still.keyring.current_key_id(),
            opened.keyring.current_key_id()
        );
        // The re-run converts with a fresh key, overwriting the leftover.
        let (ids, custodians): (Vec<_>, Vec<_>) = (0..3)
            .map(|_| {
                let i = age::x25519::Identity::generate();
                let r = i.to_public().to_string();
                (i, r)
            })
            .unzip();
        let done = protect(
            &clear,
            Target::Shares {
                threshold: 2,
                custodians,
            },
            &mut || unreachable!(),
        )
        .unwrap();
        assert_eq!(done.share_files.len(), 3);
        let manifest = Manifest::read(&dir).unwrap();
        let mut c = Collector::new(manifest);
        let mut key = None;
        for (i, (path, _)) in done.share_files.iter().enumerate().take(2) {
            let ct = std::fs::read(path).unwrap();
            let text = keyfile::open_with(&ids[i], &ct).unwrap();
            if let Offered::Complete(k) = c.offer(std::str::from_utf8(&text).unwrap()).unwrap() {
                key = Some(k);
            }
        }
        let shares_settings = settings(tmp.path(), "shares");
        let reopened =
            super::super::open_unlocked(&shares_settings, &AtRest::Sealed(Arc::new(key.unwrap())))
                .unwrap();
        assert_eq!(
            reopened.keyring.current_key_id(),
            opened.keyring.current_key_id()
        );
    }

    /// Sealed files with no wrapper and no clear copy (a partial restore) are refused, never wiped: the wrapper that
    /// opens them may be found.
    #[test]
    fn protect_refuses_sealed_files_that_have_neither_a_wrapper_nor_a_clear_copy() {
        weaken_scrypt_for_tests(4);
        let tmp = tempfile::tempdir().unwrap();
        let clear = settings(tmp.path(), "file");
        let dir = clear.keys_dir.clone();
        let somewhere = Arc::new(UnlockKey::generate());
        let sealed = AtRest::Sealed(somewhere.clone());
        for name in SECRET_FILES {
            sealed
                .write(&sealed.path(&dir, name), format!("the {name}").as_bytes())
                .unwrap();
        }
        let before: Vec<Vec<u8>> = SECRET_FILES
            .iter()
            .map(|n| std::fs::read(sealed.path(&dir, n)).unwrap())
            .collect();
        let refused = protect(
            &clear,
            Target::Passphrase(Zeroizing::new("correct horse battery staple".into())),
            &mut || unreachable!(),
        );
        match refused {
            Err(KeyStoreError::SealedWithoutWrapper { files, .. }) => {
                assert_eq!(files.len(), 3, "{files:?}");
                assert!(files.contains(&format!("{IDENTITY_FILE_NAME}.age")));
            }
            other => panic!("{other:?}"),
        }
        for (name, bytes) in SECRET_FILES.iter().zip(&before) {
            assert_eq!(&std::fs::read(sealed.path(&dir, name)).unwrap(), bytes);
        }
        assert!(!dir.join(UNLOCK_FILE).exists());
        assert!(!dir.join(UNRECORDED_FILE).exists());
        // The wrapper, found again, opens them all.
        assert_eq!(opens_all(&dir, &somewhere).unwrap().len(), 3);
    }

    /// A copy of the key directory (what a backup, or an intruder, would hold).
    fn copy_dir(from: &Path, to: &Path) {
        std::fs::create_dir_all(to).unwrap();
        for e in std::fs::read_dir(from).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                copy_dir(&e.path(), &to.join(e.file_name()));
            } else {
                std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
            }
        }
    }

    /// Every sealed secret file of `dir` opens with `key` (each one's clear text), or none does.
    fn opens_all(dir: &Path, key: &UnlockKey) -> Option<Vec<Zeroizing<String>>> {
        let at_rest = AtRest::Sealed(Arc::new(UnlockKey::from_secret(&key.to_secret()).unwrap()));
        SECRET_FILES
            .into_iter()
            .map(|n| at_rest.read(&dir.join(format!("{n}.age"))).ok())
            .collect()
    }

    fn custodians(n: usize) -> (Vec<age::x25519::Identity>, Vec<String>) {
        (0..n)
            .map(|_| {
                let i = age::x25519::Identity::generate();
                let r = i.to_public().to_string();
                (i, r)
            })
            .unzip()
    }

    /// The unlock key from the first `k` of `files`, decrypted by their custodians `ids`.
    fn combine(
        dir: &Path,
        ids: &[age::x25519::Identity],
        files: &[(PathBuf, String)],
        k: usize,
    ) -> UnlockKey {
        let mut c = Collector::new(Manifest::read(dir).unwrap());
        for (i, (path, _)) in files.iter().enumerate().take(k) {
            let text = keyfile::open_with(&ids[i], &std::fs::read(path).unwrap()).unwrap();
            if let Offered::Complete(key) = c.offer(std::str::from_utf8(&text).unwrap()).unwrap() {
                return key;
            }
        }
        panic!("{k} shares did not unlock");
    }

    #[test]
    fn a_new_passphrase_with_a_new_unlock_key_leaves_an_old_copy_of_the_store_opening_nothing_current(
    ) {
        weaken_scrypt_for_tests(4);
        let tmp = tempfile::tempdir().unwrap();
        let sealed = settings(tmp.path(), "passphrase");
        let dir = sealed.keys_dir.clone();
        let (old_pass, new_pass) = ("the first long passphrase", "the second long passphrase");
        let opened = super::super::open_all(&settings(tmp.path(), "file")).unwrap();
        protect(
            &sealed,
            Target::Passphrase(Zeroizing::new(old_pass.into())),
            &mut || unreachable!(),
        )
        .unwrap();
        let backup = tmp.path().join("backup");
        copy_dir(&dir, &backup);
        let old_key = unwrap_with_passphrase(&dir, old_pass).unwrap();
        let before = opens_all(&dir, &old_key).expect("the old key opens the store");

        let done = rekey(
            &sealed,
            Target::Passphrase(Zeroizing::new(new_pass.into())),
            &mut || unwrap_with_passphrase(&dir, old_pass),
        )
        .unwrap();
        let new_key = unwrap_with_passphrase(&dir, new_pass).unwrap();
        assert_eq!(done.unlock_recipient, Some(new_key.recipient()));
        assert_ne!(new_key.recipient(), old_key.recipient());
        // The same secrets, under the new key only.
        let after = opens_all(&dir, &new_key).expect("the new key opens the store");
        assert!(before.iter().zip(&after).all(|(a, b)| **a == **b));
        assert!(matches!(
            unwrap_with_passphrase(&dir, old_pass),
            Err(KeyStoreError::WrongPassphrase { .. })
        ));
        // The old wrapper from the backup, with the old passphrase, opens none of today's files.
        let from_backup = unwrap_with_passphrase(&backup, old_pass).unwrap();
        for n in SECRET_FILES {
            let at_rest = AtRest::Sealed(Arc::new(
                UnlockKey::from_secret(&from_backup.to_secret()).unwrap(),
            ));
            assert!(at_rest.read(&dir.join(format!("{n}.age"))).is_err(), "{n}");
        }
        let reopened =
            super::super::open_unlocked(&sealed, &AtRest::Sealed(Arc::new(new_key))).unwrap();
        assert_eq!(
            reopened.keyring.current_key_id(),
            opened.keyring.current_key_id()
        );
        assert!(reopened.generated.is_empty());
    }

    #[test]
    fn a_re_split_among_new_custodians_and_an_interrupted_mode_change_both_complete() {
        weaken_scrypt_for_tests(4);
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("keys");
        let shares_settings = settings(tmp.path(), "shares");
        let opened = super::super::open_all(&settings(tmp.path(), "file")).unwrap();
        let (old_ids, old_custodians) = custodians(3);
        let first = protect(
            &shares_settings,
            Target::Shares {
                threshold: 2,
                custodians: old_custodians,
            },
            &mut || unreachable!(),
        )
        .unwrap();
        let old_key = combine(&dir, &old_ids, &first.share_files, 2);

        // Re-split 2-of-3 among three new custodians.
        let (new_ids, new_custodians) = custodians(3);
        let again = rekey(
            &shares_settings,
            Target::Shares {
                threshold: 2,
                custodians: new_custodians,
            },
            &mut || Ok(UnlockKey::from_secret(&old_key.to_secret()).unwrap()),
        )
        .unwrap();
        let new_key = combine(&dir, &new_ids, &again.share_files, 2);
        assert!(opens_all(&dir, &new_key).is_some());
        assert!(
            opens_all(&dir, &old_key).is_none(),
            "old shares open nothing current"
        );
        // Only the new split's files are left (the old ones were overwritten, then unlinked).
        let mut left: Vec<String> = std::fs::read_dir(dir.join(SHARES_DIR))
            .unwrap()
            .flatten()
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|f| !f.starts_with('.'))
            .collect();
        left.sort();
        assert_eq!(left.len(), 4, "{left:?}");
        assert!(
            left.iter()
                .all(|f| f == "manifest.json" || f.contains('-') && f.matches('-').count() == 2),
            "{left:?}"
        );
        assert_eq!(again.removed.len(), 3, "{:?}", again.removed);

        // Stopped between writing a new wrapper and removing the old one: both wrappers are on disk and every file
        // opens with either. Made here by hand: the files encrypted to both keys, a passphrase wrapper of a new key.
        let between = UnlockKey::generate();
        for n in SECRET_FILES {
            let path = dir.join(format!("{n}.age"));
            let text = AtRest::Sealed(Arc::new(
                UnlockKey::from_secret(&new_key.to_secret()).unwrap(),
            ))
            .read(&path)
            .unwrap();
            keyfile::write_private(
                &path,
                &new_key.seal_also_to(&between, text.as_bytes()).unwrap(),
            )
            .unwrap();
        }
        let pass = "a passphrase for the move";
        keyfile::write_private(
            &dir.join(UNLOCK_FILE),
            &wrap_with_passphrase(&between, pass).unwrap(),
        )
        .unwrap();
        assert!(matches!(
            check_layout(&dir, Mode::Passphrase),
            Err(KeyStoreError::Interrupted { .. })
        ));
        // Running the command again keeps the target's wrapper, then moves on to yet another key.
        let passphrase_settings = settings(tmp.path(), "passphrase");
        let done = rekey(
            &passphrase_settings,
            Target::Passphrase(Zeroizing::new("the final long passphrase".into())),
            &mut || unwrap_with_passphrase(&dir, pass),
        )
        .unwrap();
        assert!(
            done.removed.contains(&format!("{SHARES_DIR}/")),
            "{:?}",
            done.removed
        );
        check_layout(&dir, Mode::Passphrase).unwrap();
        let last = unwrap_with_passphrase(&dir, "the final long passphrase").unwrap();
        assert!(opens_all(&dir, &last).is_some());
        assert!(opens_all(&dir, &between).is_none());
        assert!(opens_all(&dir, &new_key).is_none());
        let reopened =
            super::super::open_unlocked(&passphrase_settings, &AtRest::Sealed(Arc::new(last)))
                .unwrap();
        assert_eq!(
            reopened.keyring.current_key_id(),
            opened.keyring.current_key_id()
        );
    }

    #[test]
    fn a_new_unlock_key_is_refused_for_a_store_in_clear() {
        let tmp = tempfile::tempdir().unwrap();
        let clear = settings(tmp.path(), "file");
        super::super::open_all(&clear).unwrap();
        let err = rekey(
            &clear,
            Target::Passphrase(Zeroizing::new("x".repeat(20))),
            &mut || unreachable!(),
        )
        .unwrap_err();
        assert!(matches!(err, KeyStoreError::NotProtected { .. }), "{err}");
    }
}
