//! Who is using the key directory, so that the commands that rewrite it never run under each other or under a
//! running portal that holds the old keys in memory.
//!
//! Two advisory locks (`flock`) in `keys/`, each held for as long as its holder runs and released by the kernel
//! when the process dies, however it dies:
//! - `.serving.lock`, held *shared* by every `pcii-portal serve` from its start (sealed or not) to its exit;
//! - `.changing.lock`, held *exclusively* by `keys rotate`, `keys convert` and `keys protect` while they work.
//!
//! Two key operations at once could each rewrite a file the other just wrote: a `keys rotate` sealing the
//! identity file to the unlock key that a `keys protect --new-unlock-key` is discarding would leave the master
//! identities under a key nobody holds. `keys protect` also takes `.serving.lock` exclusively, so it refuses while
//! a portal on this directory runs: a running portal keeps the old unlock key and could no longer read the files
//! it reloads. The locks span every process that sees the same directory with working `flock` (one host, or a
//! shared mount that supports it); copies of `keys/` kept in step by a secret store are the operator's to order.

use std::fs::{File, TryLockError};
use std::path::{Path, PathBuf};

use super::KeyStoreError;

/// Held shared by every running portal.
pub const SERVING_LOCK: &str = ".serving.lock";
/// Held exclusively by a key operation.
pub const CHANGING_LOCK: &str = ".changing.lock";

/// A running portal's hold on the key directory (shared with the other portals on it).
#[derive(Debug)]
pub struct Serving {
    _file: File,
}

/// A key operation's hold on the key directory (exclusive).
#[derive(Debug)]
pub struct Changing {
    _change: File,
    _no_portal: Option<File>,
}

/// What a key operation needs besides the other key operations to stay away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Needs {
    /// Nothing more: the operation is made to run beside portals (`keys rotate`, `keys convert`), which reload a
    /// changed ring.
    Nothing,
    /// No portal running on the directory either (`keys protect`).
    NoPortal,
}

fn open_lock(dir: &Path, name: &str) -> Result<(File, PathBuf), KeyStoreError> {
    Ok(crate::crypto::keyfile::open_lock_file(dir, name)?)
}

/// Taken by `serve` before it opens the keys, and held until it exits. A `keys protect` under way makes the start
/// fail with [`KeyStoreError::InUse`] (start again once it has finished) rather than read files half rewritten. A
/// `keys rotate` does not: it replaces each file whole, and portals reload the ring it changes.
pub fn serving(dir: &Path) -> Result<Serving, KeyStoreError> {
    let (file, path) = open_lock(dir, SERVING_LOCK)?;
    try_take(
        &file,
        &path,
        false,
        "a `keys protect` is under way on this key directory; start the portal once it has finished",
    )?;
    Ok(Serving { _file: file })
}

/// Taken by a key operation for as long as it runs.
pub fn changing(dir: &Path, needs: Needs) -> Result<Changing, KeyStoreError> {
    let (change, change_path) = open_lock(dir, CHANGING_LOCK)?;
    try_take(
        &change,
        &change_path,
        true,
        "another key operation (`keys rotate`, `keys convert` or `keys protect`) is under way; let it finish",
    )?;
    let no_portal = match needs {
        Needs::Nothing => None,
        Needs::NoPortal => {
            let (file, path) = open_lock(dir, SERVING_LOCK)?;
            try_take(
                &file,
                &path,
                true,
                "a portal is running on this key directory; stop every instance first",
            )?;
            Some(file)
        }
    };
    Ok(Changing {
        _change: change,
        _no_portal: no_portal,
    })
}

fn try_take(file: &File, path: &Path, exclusive: bool, busy: &str) -> Result<(), KeyStoreError> {
    let taken = if exclusive {
        file.try_lock()
    } else {
        file.try_lock_shared()
    };
    match taken {
        Ok(()) => Ok(()),
        Err(TryLockError::WouldBlock) => Err(KeyStoreError::InUse {
            path: path.to_path_buf(),
            why: busy.to_owned(),
        }),
        Err(TryLockError::Error(source)) => Err(KeyStoreError::Lock {
            path: path.to_path_buf(),
            source,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn portals_share_the_directory_and_keep_protect_out() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("keys");
        let a = serving(&dir).unwrap();
        let b = serving(&dir).unwrap();
        // A rotation runs beside portals; a protect does not.
        let rotation = changing(&dir, Needs::Nothing).unwrap();
        drop(rotation);
        let err = changing(&dir, Needs::NoPortal).unwrap_err();
        assert!(err.to_string().contains("a portal is running"), "{err}");
        drop(a);
        assert!(
            changing(&dir, Needs::NoPortal).is_err(),
            "one portal still runs"
        );
        drop(b);
        let protect = changing(&dir, Needs::NoPortal).unwrap();
        // Meanwhile no portal starts and no other key operation either.
        let err = serving(&dir).unwrap_err();
        assert!(
            err.to_string().contains("a `keys protect` is under way"),
            "{err}"
        );
        let err = changing(&dir, Needs::Nothing).unwrap_err();
        assert!(err.to_string().contains("another key operation"), "{err}");
        drop(protect);
        let _served = serving(&dir).unwrap();
    }

    #[test]
    fn a_rotation_under_way_holds_off_another_operation_but_not_a_start() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("keys");
        let rotation = changing(&dir, Needs::Nothing).unwrap();
        assert!(changing(&dir, Needs::Nothing).is_err());
        assert!(changing(&dir, Needs::NoPortal).is_err());
        // A portal (re)started during a rotation reads whole files and reloads the ring as it changes.
        let served = serving(&dir).unwrap();
        drop(rotation);
        assert!(changing(&dir, Needs::NoPortal).is_err());
        drop(served);
        let _protect = changing(&dir, Needs::NoPortal).unwrap();
    }
}
