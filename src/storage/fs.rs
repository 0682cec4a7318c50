//! A [`BlobStore`] on a local directory.
//!
//! Layout: one flat directory (mode 0700). Committed blobs are files named by 64 hex digits (32
//! random bytes from the OS CSPRNG); blobs being written are `.tmp-<owner>-<32 hex digits>` in the same
//! directory, so the final `rename` is atomic. `<owner>` names the process writing it: each open store holds an
//! exclusive lock on `.owner-<owner>` for as long as it lives, so a temporary whose owner's lock is free belongs
//! to a process that is gone (a `kill -9`, a crash) and is removed by the next sweep whatever its age. Files are created 0600. Names handed to
//! [`BlobStore::open`], [`BlobStore::delete`] and [`BlobStore::exists`] are validated first, so no
//! path outside the directory can be reached.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufWriter, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use super::{check_blob_name, is_valid_blob_name, new_blob_name, BlobStore, BlobWriter};
use crate::workers::{self, Task};

/// Prefix of temporary (uncommitted) blob files.
const TMP_PREFIX: &str = ".tmp-";
/// Prefix of the lock file each open store holds while it lives.
const OWNER_PREFIX: &str = ".owner-";

/// This store's claim on its temporaries: `.owner-<id>`, locked (flock) until the store is dropped or the
/// process dies, whichever comes first.
#[derive(Debug)]
struct Owner {
    id: String,
    path: PathBuf,
    _lock: File,
}

impl Owner {
    /// Creates and locks the file under a temporary name, then renames it into place (the lock stays with the
    /// file): a sweep never finds `.owner-<id>` unlocked, which it would take for a dead owner's, removing it and
    /// then this store's temporaries with it. A claim cut short leaves `.tmp-<id>`, swept by age like any
    /// stalled temporary.
    fn claim(dir: &Path) -> io::Result<Owner> {
        let id = new_blob_name()[..16].to_string();
        let claiming = dir.join(format!("{TMP_PREFIX}{id}"));
        let lock = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&claiming)?;
        let path = dir.join(format!("{OWNER_PREFIX}{id}"));
        let placed = lock
            .try_lock()
            .map_err(io::Error::other)
            .and_then(|()| fs::rename(&claiming, &path));
        if let Err(e) = placed {
            let _ = fs::remove_file(&claiming);
            return Err(e);
        }
        Ok(Owner {
            id,
            path,
            _lock: lock,
        })
    }
}

impl Drop for Owner {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.path);
    }
}

/// Whether the process that owns `owner`'s temporaries is gone: its lock file is missing or nobody holds its lock.
fn owner_is_gone(dir: &Path, owner: &str) -> bool {
    let path = dir.join(format!("{OWNER_PREFIX}{owner}"));
    match OpenOptions::new().write(true).open(&path) {
        Ok(f) => match f.try_lock() {
            Ok(()) => true,
            Err(fs::TryLockError::WouldBlock) => false,
            // Cannot tell: leave it to the age rule.
            Err(fs::TryLockError::Error(_)) => false,
        },
        Err(e) => e.kind() == io::ErrorKind::NotFound,
    }
}
/// Buffer between the sealer and the file.
const WRITE_BUFFER: usize = 1024 * 1024;
/// Start writing back to disk after this many bytes, in the background, so that the fsync at
/// commit only has the tail left instead of the whole blob (with a large page cache, the kernel
/// would otherwise keep a 1 GiB upload dirty until commit and then write it all while the
/// client waits).
const WRITEBACK_EVERY: u64 = 32 * 1024 * 1024;

/// Blob store on a local directory.
#[derive(Debug, Clone)]
pub struct FsBlobStore {
    dir: PathBuf,
    owner: std::sync::Arc<Owner>,
}

impl FsBlobStore {
    /// Opens the store in `dir`, creating it (mode 0700, parents too) if needed.
    pub fn open(dir: &Path) -> io::Result<Self> {
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)?;
        let meta = fs::metadata(dir)?;
        if !meta.is_dir() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("blob store path {} is not a directory", dir.display()),
            ));
        }
        let mode = meta.permissions().mode() & 0o777;
        if mode & 0o077 != 0 {
            tracing::warn!(
                dir = %dir.display(),
                mode = format_args!("{mode:o}"),
                "blob store directory is accessible by group or others; 0700 is expected"
            );
        }
        Ok(FsBlobStore {
            dir: dir.to_path_buf(),
            owner: std::sync::Arc::new(Owner::claim(dir)?),
        })
    }

    /// The directory this store lives in.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn path_of(&self, name: &str) -> io::Result<PathBuf> {
        check_blob_name(name)?;
        Ok(self.dir.join(name))
    }
}

/// Fsyncs a directory so that a rename or unlink in it is durable.
fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Age of a directory entry from its modification time (zero if in the future).
fn age_of(meta: &fs::Metadata, now: SystemTime) -> Duration {
    meta.modified()
        .ok()
        .and_then(|m| now.duration_since(m).ok())
        .unwrap_or(Duration::ZERO)
}

impl BlobStore for FsBlobStore {
    fn create(&self) -> io::Result<Box<dyn BlobWriter>> {
        let tmp_path = self.dir.join(format!(
            "{TMP_PREFIX}{}-{}",
            self.owner.id,
            &new_blob_name()[..32]
        ));
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&tmp_path)?;
        Ok(Box::new(FsBlobWriter {
            out: Some(BufWriter::with_capacity(WRITE_BUFFER, file)),
            tmp_path,
            dir: self.dir.clone(),
            unsynced: 0,
            writeback: None,
            writeback_error: None,
        }))
    }

    fn open(&self, name: &str) -> io::Result<Box<dyn io::Read + Send>> {
        let path = self.path_of(name)?;
        let file = File::open(path)?;
        if !file.metadata()?.is_file() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "blob is not a regular file",
            ));
        }
        Ok(Box::new(file))
    }

    fn delete(&self, name: &str) -> io::Result<()> {
        let path = self.path_of(name)?;
        match fs::remove_file(path) {
            Ok(()) => sync_dir(&self.dir),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn exists(&self, name: &str) -> io::Result<bool> {
        let path = self.path_of(name)?;
        match fs::symlink_metadata(path) {
            Ok(meta) => Ok(meta.is_file()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(e),
        }
    }

    fn list(&self) -> io::Result<Vec<(String, Duration)>> {
        let now = SystemTime::now();
        let mut out = Vec::new();
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if !is_valid_blob_name(&name) {
                continue;
            }
            let meta = match entry.metadata() {
                Ok(m) => m,
                // Deleted between readdir and stat.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            if meta.is_file() {
                out.push((name, age_of(&meta, now)));
            }
        }
        Ok(out)
    }

    fn is_available(&self) -> bool {
        self.dir.is_dir()
    }

    fn describe(&self) -> String {
        format!("directory {}", self.dir.display())
    }

    fn sweep_temporaries(&self, older_than: Duration) -> io::Result<usize> {
        let now = SystemTime::now();
        let mut removed = 0;
        let mut gone_owners = Vec::new();
        // Each owner's lock is tried once per sweep, however many temporaries it left.
        let mut gone: std::collections::HashMap<String, bool> = std::collections::HashMap::new();
        let mut is_gone = |owner: &str| {
            *gone
                .entry(owner.to_string())
                .or_insert_with(|| owner_is_gone(&self.dir, owner))
        };
        for entry in fs::read_dir(&self.dir)? {
            let entry = entry?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            if let Some(owner) = name.strip_prefix(OWNER_PREFIX) {
                if owner != self.owner.id && is_gone(owner) {
                    gone_owners.push(entry.path());
                }
                continue;
            }
            let Some(rest) = name.strip_prefix(TMP_PREFIX) else {
                continue;
            };
            let meta = match entry.metadata() {
                Ok(m) => m,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(e),
            };
            if !meta.is_file() {
                continue;
            }
            // A dead process's temporary goes at once. Others (this process's, a live one's, or one named before
            // owners were) only when stalled: mtime moves while a writer is active.
            let dead = match rest.split_once('-') {
                Some((owner, _)) => owner != self.owner.id && is_gone(owner),
                None => false,
            };
            if !dead && age_of(&meta, now) < older_than {
                continue;
            }
            match fs::remove_file(entry.path()) {
                Ok(()) => removed += 1,
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        for path in gone_owners {
            let _ = fs::remove_file(path);
        }
        if removed > 0 {
            sync_dir(&self.dir)?;
            tracing::info!(removed, "removed blob temporaries of stopped writers");
        }
        Ok(removed)
    }
}

/// A blob being written to `.tmp-*` in the store directory.
struct FsBlobWriter {
    /// `None` once committed (or during commit).
    out: Option<BufWriter<File>>,
    tmp_path: PathBuf,
    dir: PathBuf,
    /// Bytes accepted since the last background writeback was started.
    unsynced: u64,
    /// Background `fdatasync` of the data written so far, if one is running.
    writeback: Option<Task<io::Result<()>>>,
    /// A failed background writeback fails the commit (Linux reports a writeback error only
    /// once per open file, so the final fsync might not see it again).
    writeback_error: Option<io::Error>,
}

impl FsBlobWriter {
    fn out(&mut self) -> io::Result<&mut BufWriter<File>> {
        self.out
            .as_mut()
            .ok_or_else(|| io::Error::other("blob writer already finished"))
    }

    /// Collects a finished (or, if `wait`, any) background writeback.
    fn reap_writeback(&mut self, wait: bool) {
        let done = match &mut self.writeback {
            Some(task) => wait || task.is_finished(),
            None => false,
        };
        if !done {
            return;
        }
        let result = self
            .writeback
            .take()
            .expect("checked above")
            .join()
            .and_then(|synced| synced);
        if let Err(e) = result {
            self.writeback_error.get_or_insert(e);
        }
    }

    fn note_written(&mut self, n: usize) {
        self.unsynced += n as u64;
        if self.unsynced < WRITEBACK_EVERY {
            return;
        }
        self.reap_writeback(false);
        if self.writeback.is_some() {
            return; // the previous one is still running; try again later
        }
        self.unsynced = 0;
        let Some(Ok(file)) = self.out.as_ref().map(|o| o.get_ref().try_clone()) else {
            return; // an optimization only
        };
        match workers::spawn(move || file.sync_data()) {
            Ok(h) => self.writeback = Some(h),
            Err(e) => tracing::debug!(error = %e, "could not start a background writeback"),
        }
    }
}

impl Write for FsBlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.out()?.write(buf)?;
        self.note_written(n);
        Ok(n)
    }

    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.out()?.write_all(buf)?;
        self.note_written(buf.len());
        Ok(())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.out()?.flush()
    }
}

impl BlobWriter for FsBlobWriter {
    fn commit(mut self: Box<Self>) -> io::Result<String> {
        let out = self
            .out
            .take()
            .ok_or_else(|| io::Error::other("blob writer already finished"))?;
        // On any error below, `self` is dropped and removes the temporary.
        let file = out.into_inner().map_err(|e| e.into_error())?;
        self.reap_writeback(true);
        if let Some(e) = self.writeback_error.take() {
            return Err(e);
        }
        file.sync_all()?;
        drop(file);
        let name = new_blob_name();
        let final_path = self.dir.join(&name);
        fs::rename(&self.tmp_path, &final_path)?;
        if let Err(e) = sync_dir(&self.dir) {
            // Not durable: do not hand out a name that might vanish after a crash.
            let _ = fs::remove_file(&final_path);
            return Err(e);
        }
        // Committed: nothing left for Drop to remove.
        self.tmp_path = PathBuf::new();
        Ok(name)
    }
}

impl Drop for FsBlobWriter {
    fn drop(&mut self) {
        if let Some(out) = self.out.take() {
            // Discard the buffer instead of flushing it into a file that is about to go.
            let (file, _discarded) = out.into_parts();
            drop(file);
        }
        if !self.tmp_path.as_os_str().is_empty() {
            if let Err(e) = fs::remove_file(&self.tmp_path) {
                if e.kind() != io::ErrorKind::NotFound {
                    tracing::warn!(
                        path = %self.tmp_path.display(),
                        error = %e,
                        "could not remove an aborted blob temporary; sweep_temporaries will"
                    );
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::sweep_orphans;
    use std::io::Read;

    /// The directory's files but the stores' own lock files.
    fn entries(dir: &Path) -> Vec<String> {
        let mut v: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| !n.starts_with(OWNER_PREFIX))
            .collect();
        v.sort();
        v
    }

    fn set_age(path: &Path, age: Duration) {
        let f = OpenOptions::new().write(true).open(path).unwrap();
        f.set_modified(SystemTime::now() - age).unwrap();
    }

    fn put(store: &FsBlobStore, data: &[u8]) -> String {
        let mut w = store.create().unwrap();
        w.write_all(data).unwrap();
        w.commit().unwrap()
    }

    #[test]
    fn create_commit_open_delete() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("blobs");
        let store = FsBlobStore::open(&dir).unwrap();
        assert_eq!(
            fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
            0o700
        );

        let mut w = store.create().unwrap();
        w.write_all(b"hello").unwrap();
        // Nothing under a final name before commit.
        assert!(store.list().unwrap().is_empty());
        let name = w.commit().unwrap();
        assert!(crate::storage::is_valid_blob_name(&name));
        assert_eq!(entries(&dir), vec![name.clone()]);
        assert_eq!(
            fs::metadata(dir.join(&name)).unwrap().permissions().mode() & 0o777,
            0o600
        );

        let mut s = String::new();
        store.open(&name).unwrap().read_to_string(&mut s).unwrap();
        assert_eq!(s, "hello");
        assert!(store.exists(&name).unwrap());
        let listed = store.list().unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].0, name);

        store.delete(&name).unwrap();
        store.delete(&name).unwrap(); // already gone is fine
        assert!(!store.exists(&name).unwrap());
        let err = store.open(&name).err().unwrap();
        assert_eq!(err.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn large_blob_with_background_writeback() {
        use sha2::{Digest, Sha256};
        let tmp = tempfile::tempdir().unwrap();
        let store = FsBlobStore::open(tmp.path()).unwrap();
        let mut w = store.create().unwrap();
        let mut hasher = Sha256::new();
        let block: Vec<u8> = (0..65_536u32).map(|i| (i % 251) as u8).collect();
        // Past several WRITEBACK_EVERY thresholds, with writes of both kinds.
        for i in 0..(3 * WRITEBACK_EVERY as usize / block.len() + 10) {
            let piece = &block[..block.len() - (i % 7)];
            hasher.update(piece);
            if i % 2 == 0 {
                w.write_all(piece).unwrap();
            } else {
                let mut rest = piece;
                while !rest.is_empty() {
                    let n = w.write(rest).unwrap();
                    rest = &rest[n..];
                }
            }
        }
        let name = w.commit().unwrap();
        let mut stored = Sha256::new();
        io::copy(&mut store.open(&name).unwrap(), &mut stored).unwrap();
        assert_eq!(stored.finalize(), hasher.finalize());
        assert_eq!(entries(tmp.path()), vec![name]);
    }

    #[test]
    fn names_are_random_and_distinct() {
        let tmp = tempfile::tempdir().unwrap();
        let store = FsBlobStore::open(tmp.path()).unwrap();
        let a = put(&store, b"same");
        let b = put(&store, b"same");
        assert_ne!(a, b);
    }

    #[test]
    fn dropped_writer_leaves_nothing() {
        let tmp = tempfile::tempdir().unwrap();
        let store = FsBlobStore::open(tmp.path()).unwrap();
        let mut w = store.create().unwrap();
        w.write_all(&[7u8; 3 * 1024 * 1024]).unwrap();
        assert_eq!(entries(tmp.path()).len(), 1);
        drop(w);
        assert!(entries(tmp.path()).is_empty());
    }

    #[test]
    fn name_validation_rejects_traversal() {
        let tmp = tempfile::tempdir().unwrap();
        let store = FsBlobStore::open(&tmp.path().join("blobs")).unwrap();
        fs::write(tmp.path().join("x"), b"outside").unwrap();
        let upper = "A".repeat(64);
        let tmp_like = format!(".tmp-{}", "0".repeat(32));
        for bad in [
            "../x",
            "..",
            "",
            "/etc/passwd",
            upper.as_str(),
            &"0".repeat(63),
            &"0".repeat(65),
            &format!("../{}", "0".repeat(61)),
            tmp_like.as_str(),
        ] {
            assert_eq!(
                store.open(bad).err().unwrap().kind(),
                io::ErrorKind::InvalidInput,
                "{bad:?}"
            );
            assert_eq!(
                store.delete(bad).unwrap_err().kind(),
                io::ErrorKind::InvalidInput
            );
            assert_eq!(
                store.exists(bad).unwrap_err().kind(),
                io::ErrorKind::InvalidInput
            );
        }
        assert!(tmp.path().join("x").exists());
    }

    #[test]
    fn temporaries_of_a_process_that_is_gone_are_swept_whatever_their_age() {
        let tmp = tempfile::tempdir().unwrap();
        let store = FsBlobStore::open(tmp.path()).unwrap();
        // Another live writer's fresh temporary stays.
        let live = FsBlobStore::open(tmp.path()).unwrap();
        let mut live_writer = live.create().unwrap();
        live_writer.write_all(b"still coming").unwrap();
        // A process killed mid-upload: its temporary stays on disk, its lock is released.
        let killed = FsBlobStore::open(tmp.path()).unwrap();
        let mut w = killed.create().unwrap();
        w.write_all(b"half an upload").unwrap();
        std::mem::forget(w);
        drop(killed);
        // One killed before it could remove its lock file: the file is there, nobody holds its lock.
        let owner = "0123456789abcdef";
        fs::write(tmp.path().join(format!("{OWNER_PREFIX}{owner}")), b"").unwrap();
        fs::write(
            tmp.path()
                .join(format!("{TMP_PREFIX}{owner}-{}", "0".repeat(32))),
            b"x",
        )
        .unwrap();
        assert_eq!(entries(tmp.path()).len(), 3);

        assert_eq!(
            store.sweep_temporaries(Duration::from_secs(3600)).unwrap(),
            2
        );
        assert_eq!(entries(tmp.path()).len(), 1, "the live writer's is kept");
        assert!(!tmp.path().join(format!("{OWNER_PREFIX}{owner}")).exists());
        let name = live_writer.commit().unwrap();
        assert!(store.exists(&name).unwrap());
    }

    /// What `Owner::claim` relies on: a claim under way is a `.tmp-<id>` file that a sweep keeps while it is fresh
    /// (one cut short goes by age), and the lock taken on it stays with the file once renamed into place. The race
    /// it closes (a sweep between creating `.owner-<id>` and locking it) is two system calls wide: no test here
    /// could hit it reliably, so the contract is tested instead.
    #[test]
    fn a_claim_under_way_is_kept_by_sweeps_and_its_lock_file_appears_locked() {
        let tmp = tempfile::tempdir().unwrap();
        let sweeper = FsBlobStore::open(tmp.path()).unwrap();
        let claiming = tmp.path().join(format!("{TMP_PREFIX}{}", "a".repeat(16)));
        fs::write(&claiming, b"").unwrap();
        assert_eq!(
            sweeper
                .sweep_temporaries(Duration::from_secs(3600))
                .unwrap(),
            0
        );
        assert!(claiming.exists(), "a fresh claim was swept");
        set_age(&claiming, Duration::from_secs(7200));
        assert_eq!(
            sweeper
                .sweep_temporaries(Duration::from_secs(3600))
                .unwrap(),
            1
        );

        let store = FsBlobStore::open(tmp.path()).unwrap();
        assert!(store.owner.path.exists());
        assert!(!owner_is_gone(tmp.path(), &store.owner.id), "not locked");
        assert!(
            !tmp.path()
                .join(format!("{TMP_PREFIX}{}", store.owner.id))
                .exists(),
            "its temporary name is left behind"
        );
        let mut w = store.create().unwrap();
        w.write_all(b"in progress").unwrap();
        assert_eq!(
            sweeper
                .sweep_temporaries(Duration::from_secs(3600))
                .unwrap(),
            0
        );
        assert!(store.owner.path.exists());
        assert!(store.exists(&w.commit().unwrap()).unwrap());
    }

    #[test]
    fn sweep_temporaries_respects_age() {
        let tmp = tempfile::tempdir().unwrap();
        let store = FsBlobStore::open(tmp.path()).unwrap();
        let committed = put(&store, b"keep");
        set_age(&tmp.path().join(&committed), Duration::from_secs(7200));

        // An abandoned temporary (e.g. from a crash): simulate with a stale file.
        let stale = tmp.path().join(".tmp-00000000000000000000000000000000");
        fs::write(&stale, b"x").unwrap();
        set_age(&stale, Duration::from_secs(7200));
        // An active writer.
        let mut active = store.create().unwrap();
        active.write_all(b"in progress").unwrap();

        assert_eq!(
            store.sweep_temporaries(Duration::from_secs(3600)).unwrap(),
            1
        );
        assert!(!stale.exists());
        // Committed blobs and fresh temporaries survive.
        assert!(store.exists(&committed).unwrap());
        let name = active.commit().unwrap();
        assert!(store.exists(&name).unwrap());
        assert_eq!(store.sweep_temporaries(Duration::ZERO).unwrap(), 0);
    }

    #[test]
    fn sweep_orphans_respects_grace_and_references() {
        let tmp = tempfile::tempdir().unwrap();
        let store = FsBlobStore::open(tmp.path()).unwrap();
        let referenced_old = put(&store, b"a");
        let orphan_old = put(&store, b"b");
        let orphan_new = put(&store, b"c"); // e.g. another instance's row not committed yet
        for n in [&referenced_old, &orphan_old] {
            set_age(&tmp.path().join(n), Duration::from_secs(2 * 86400));
        }
        // A temporary is never touched by the orphan sweep.
        let mut pending = store.create().unwrap();
        pending.write_all(b"d").unwrap();

        let mut asked = Vec::new();
        let removed = sweep_orphans(&store, Duration::from_secs(86400), &mut |names| {
            asked.extend(names.iter().cloned());
            names
                .iter()
                .filter(|n| **n == referenced_old)
                .cloned()
                .collect()
        })
        .unwrap()
        .removed;
        assert_eq!(removed, 1);
        assert!(!store.exists(&orphan_old).unwrap());
        assert!(store.exists(&referenced_old).unwrap());
        assert!(store.exists(&orphan_new).unwrap());
        assert!(
            !asked.contains(&orphan_new),
            "young blobs are not even looked up"
        );
        pending.commit().unwrap();
    }

    #[test]
    fn the_orphan_sweep_asks_about_blobs_a_batch_at_a_time() {
        let tmp = tempfile::tempdir().unwrap();
        let store = FsBlobStore::open(tmp.path()).unwrap();
        let names: Vec<String> = (0..1_100).map(|_| put(&store, b"x")).collect();
        let kept: std::collections::HashSet<String> = names.iter().step_by(3).cloned().collect();
        let mut batches = Vec::new();
        let removed = sweep_orphans(&store, Duration::ZERO, &mut |batch| {
            batches.push(batch.len());
            batch
                .iter()
                .filter(|n| kept.contains(*n))
                .cloned()
                .collect()
        })
        .unwrap()
        .removed;
        assert_eq!(batches, vec![500, 500, 100]);
        assert_eq!(removed, names.len() - kept.len());
        for name in &names {
            assert_eq!(store.exists(name).unwrap(), kept.contains(name), "{name}");
        }
    }

    /// The fs store, refusing to delete the names in `refused` (a retention lock, a permission).
    struct Refusing {
        inner: FsBlobStore,
        refused: std::collections::HashSet<String>,
    }

    impl BlobStore for Refusing {
        fn create(&self) -> io::Result<Box<dyn BlobWriter>> {
            self.inner.create()
        }
        fn open(&self, name: &str) -> io::Result<Box<dyn io::Read + Send>> {
            self.inner.open(name)
        }
        fn delete(&self, name: &str) -> io::Result<()> {
            if self.refused.contains(name) {
                return Err(io::Error::from(io::ErrorKind::PermissionDenied));
            }
            self.inner.delete(name)
        }
        fn exists(&self, name: &str) -> io::Result<bool> {
            self.inner.exists(name)
        }
        fn list(&self) -> io::Result<Vec<(String, Duration)>> {
            self.inner.list()
        }
        fn sweep_temporaries(&self, older_than: Duration) -> io::Result<usize> {
            self.inner.sweep_temporaries(older_than)
        }
        fn is_available(&self) -> bool {
            true
        }
        fn describe(&self) -> String {
            "refusing".into()
        }
    }

    /// An orphan the store can never remove, alone in its batch, does not keep the sweep from the orphans listed
    /// after it; a store that refuses everything stops the round after a few failures in a row.
    #[test]
    fn an_orphan_that_cannot_be_removed_does_not_stop_the_sweep() {
        let tmp = tempfile::tempdir().unwrap();
        let inner = FsBlobStore::open(tmp.path()).unwrap();
        for _ in 0..1_100 {
            put(&inner, b"x");
        }
        let listed: Vec<String> = inner.list().unwrap().into_iter().map(|(n, _)| n).collect();
        // The first batch's only orphan is refused; the last batch holds the other orphans.
        let stuck = listed[0].clone();
        let later: Vec<String> = listed[1_000..1_010].to_vec();
        let orphans: std::collections::HashSet<String> =
            later.iter().chain([&stuck]).cloned().collect();
        let referenced = |batch: &[String]| -> std::collections::HashSet<String> {
            batch
                .iter()
                .filter(|n| !orphans.contains(*n))
                .cloned()
                .collect()
        };
        let store = Refusing {
            inner,
            refused: [stuck.clone()].into(),
        };
        let swept = sweep_orphans(&store, Duration::ZERO, &mut |b| referenced(b)).unwrap();
        assert_eq!(
            swept,
            crate::storage::Orphans {
                removed: 10,
                failed: 1
            }
        );
        assert!(store.exists(&stuck).unwrap());
        assert!(later.iter().all(|n| !store.exists(n).unwrap()));

        // Everything refused: the round stops after ORPHAN_FAILURES_IN_A_ROW.
        let everything = Refusing {
            refused: listed.iter().cloned().collect(),
            inner: store.inner,
        };
        let swept =
            sweep_orphans(&everything, Duration::ZERO, &mut |_| Default::default()).unwrap();
        assert_eq!(
            (swept.removed, swept.failed),
            (0, crate::storage::ORPHAN_FAILURES_IN_A_ROW)
        );
    }

    #[test]
    fn list_ignores_foreign_files() {
        let tmp = tempfile::tempdir().unwrap();
        let store = FsBlobStore::open(tmp.path()).unwrap();
        fs::write(tmp.path().join("README"), b"x").unwrap();
        fs::create_dir(tmp.path().join("f".repeat(64))).unwrap();
        let name = put(&store, b"x");
        let names: Vec<String> = store.list().unwrap().into_iter().map(|x| x.0).collect();
        assert_eq!(names, vec![name]);
    }
}
