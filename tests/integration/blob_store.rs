//! The blob-store contract, run against both stores: the directory (always) and an S3 bucket (the `s3_` tests, which
//! need `PCII_TEST_BLOB_STORE=s3://bucket` plus `PCII_S3_ENDPOINT` and the `AWS_*` credentials; `.ci/run` starts
//! SeaweedFS and runs them with `--include-ignored`).

use std::io::{Read, Write};
use std::sync::Arc;
use std::time::Duration;

use pcii_portal::storage::s3::{S3Location, S3Options, PART_SIZE};
use pcii_portal::storage::{self, BlobStore, FsBlobStore, S3BlobStore};

use crate::common::{file_bytes, s3_test_store, sha256_hex};

const NEEDS_S3: &str =
    "needs an S3 store (PCII_TEST_BLOB_STORE, PCII_S3_ENDPOINT, AWS_*): see .ci/run";

/// A fresh store of each kind: a temp directory, or a fresh prefix in the test bucket.
enum Kind {
    Fs,
    S3,
}

fn s3_options() -> S3Options {
    let var = |k: &str| std::env::var(k).unwrap_or_default();
    S3Options {
        endpoint: var("PCII_S3_ENDPOINT"),
        region: var("PCII_S3_REGION"),
        path_style: true,
        credentials_file: var("PCII_S3_CREDENTIALS_FILE").into(),
    }
}

fn fresh(kind: Kind) -> (Arc<dyn BlobStore>, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn BlobStore> = match kind {
        Kind::Fs => Arc::new(FsBlobStore::open(&dir.path().join("blobs")).unwrap()),
        Kind::S3 => {
            let bucket = s3_test_store().expect(NEEDS_S3);
            let name = dir.path().file_name().unwrap().to_string_lossy();
            let url = format!("{bucket}/contract-{}", name.trim_start_matches('.'));
            Arc::new(S3BlobStore::open(S3Location::parse(&url).unwrap(), &s3_options()).unwrap())
        }
    };
    (store, dir)
}

fn put(store: &dyn BlobStore, data: &[u8]) -> String {
    let mut w = store.create().unwrap();
    // In odd-sized writes, as the sealing pipeline's are.
    for chunk in data.chunks(64 * 1024 + 17) {
        w.write_all(chunk).unwrap();
    }
    w.commit().unwrap()
}

fn read(store: &dyn BlobStore, name: &str) -> Vec<u8> {
    let mut out = Vec::new();
    store.open(name).unwrap().read_to_end(&mut out).unwrap();
    out
}

fn names(store: &dyn BlobStore) -> Vec<String> {
    let mut n: Vec<String> = store.list().unwrap().into_iter().map(|(n, _)| n).collect();
    n.sort();
    n
}

fn round_trip(kind: Kind) {
    let (store, _dir) = fresh(kind);
    assert!(store.is_available());
    assert!(names(store.as_ref()).is_empty());
    // Empty, small, exactly one part, and several parts with a short last one (the multipart path).
    for len in [0, 1000, PART_SIZE, 2 * PART_SIZE + 12345] {
        let data = if len == 0 {
            Vec::new()
        } else {
            file_bytes(len, 7, "contract")
        };
        let name = put(store.as_ref(), &data);
        assert!(storage::is_valid_blob_name(&name));
        assert!(store.exists(&name).unwrap());
        assert_eq!(
            sha256_hex(&read(store.as_ref(), &name)),
            sha256_hex(&data),
            "{len} bytes"
        );
        assert!(names(store.as_ref()).contains(&name));
        store.delete(&name).unwrap();
        assert!(!store.exists(&name).unwrap());
        // Deleting what is gone is not an error (a retried deletion).
        store.delete(&name).unwrap();
        let err = store
            .open(&name)
            .err()
            .expect("a deleted blob does not open");
        assert_eq!(err.kind(), std::io::ErrorKind::NotFound);
    }
    assert!(names(store.as_ref()).is_empty());
}

fn uncommitted_writers_leave_nothing(kind: Kind) {
    let (store, _dir) = fresh(kind);
    let kept = put(store.as_ref(), b"kept");
    // Dropped after several parts went out (a multipart upload was started), and before any part was full.
    for len in [3 * PART_SIZE + 1, 1000] {
        let mut w = store.create().unwrap();
        w.write_all(&file_bytes(len, 3, "dropped")).unwrap();
        drop(w);
    }
    store.sweep_temporaries(Duration::ZERO).unwrap();
    assert_eq!(names(store.as_ref()), vec![kept]);
}

fn names_that_could_address_anything_else_are_refused(kind: Kind) {
    let (store, _dir) = fresh(kind);
    for bad in ["../x", "a/b", "", &"A".repeat(64), &"0".repeat(63)] {
        assert_eq!(
            store.open(bad).err().map(|e| e.kind()),
            Some(std::io::ErrorKind::InvalidInput),
            "{bad:?}"
        );
        assert!(store.delete(bad).is_err());
        assert!(store.exists(bad).is_err());
    }
}

fn the_orphan_sweep_spares_young_and_referenced_blobs(kind: Kind) {
    let (store, _dir) = fresh(kind);
    let referenced = put(store.as_ref(), b"referenced");
    let orphan = put(store.as_ref(), b"orphan");
    // Everything is young: nothing goes.
    let mut in_use = |names: &[String]| {
        names
            .iter()
            .filter(|n| **n == referenced)
            .cloned()
            .collect()
    };
    let removed = storage::sweep_orphans(store.as_ref(), Duration::from_secs(3600), &mut in_use)
        .unwrap()
        .removed;
    assert_eq!(removed, 0);
    // No grace: only the orphan goes.
    let removed = storage::sweep_orphans(store.as_ref(), Duration::ZERO, &mut in_use)
        .unwrap()
        .removed;
    assert_eq!(removed, 1);
    assert_eq!(names(store.as_ref()), vec![referenced]);
    assert!(!store.exists(&orphan).unwrap());
}

fn a_reader_dropped_early_is_fine_and_reads_are_independent(kind: Kind) {
    let (store, _dir) = fresh(kind);
    let data = file_bytes(PART_SIZE + 999, 9, "reader");
    let name = put(store.as_ref(), &data);
    let mut first = store.open(&name).unwrap();
    let mut head = [0u8; 1000];
    first.read_exact(&mut head).unwrap();
    assert_eq!(&head[..], &data[..1000]);
    drop(first);
    assert_eq!(read(store.as_ref(), &name), data);
}

#[test]
fn fs_round_trip() {
    round_trip(Kind::Fs)
}
#[test]
fn fs_uncommitted_writers_leave_nothing() {
    uncommitted_writers_leave_nothing(Kind::Fs)
}
#[test]
fn fs_names_that_could_address_anything_else_are_refused() {
    names_that_could_address_anything_else_are_refused(Kind::Fs)
}
#[test]
fn fs_the_orphan_sweep_spares_young_and_referenced_blobs() {
    the_orphan_sweep_spares_young_and_referenced_blobs(Kind::Fs)
}
#[test]
fn fs_a_reader_dropped_early_is_fine_and_reads_are_independent() {
    a_reader_dropped_early_is_fine_and_reads_are_independent(Kind::Fs)
}

#[test]
#[ignore = "needs an S3 store: see .ci/run"]
fn s3_round_trip() {
    round_trip(Kind::S3)
}
#[test]
#[ignore = "needs an S3 store: see .ci/run"]
fn s3_uncommitted_writers_leave_nothing() {
    uncommitted_writers_leave_nothing(Kind::S3)
}
#[test]
#[ignore = "needs an S3 store: see .ci/run"]
fn s3_names_that_could_address_anything_else_are_refused() {
    names_that_could_address_anything_else_are_refused(Kind::S3)
}
#[test]
#[ignore = "needs an S3 store: see .ci/run"]
fn s3_the_orphan_sweep_spares_young_and_referenced_blobs() {
    the_orphan_sweep_spares_young_and_referenced_blobs(Kind::S3)
}
#[test]
#[ignore = "needs an S3 store: see .ci/run"]
fn s3_a_reader_dropped_early_is_fine_and_reads_are_independent() {
    a_reader_dropped_early_is_fine_and_reads_are_independent(Kind::S3)
}

#[test]
#[ignore = "needs an S3 store: see .ci/run"]
fn s3_wrong_credentials_or_bucket_are_said_at_start_without_the_secret() {
    let bucket = s3_test_store().expect(NEEDS_S3);
    let dir = tempfile::tempdir().unwrap();
    let creds = dir.path().join("credentials");
    std::fs::write(
        &creds,
        "[default]\naws_access_key_id = nobody\naws_secret_access_key = wrong-secret-MARKER\n",
    )
    .unwrap();
    // 0600, as a key file must be: otherwise the portal refuses the file itself, and the wrong credentials would
    // never reach the store.
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&creds, std::fs::Permissions::from_mode(0o600)).unwrap();
    }
    let options = S3Options {
        credentials_file: creds,
        ..s3_options()
    };
    let err = S3BlobStore::open(S3Location::parse(&bucket).unwrap(), &options)
        .expect_err("wrong credentials are refused at open");
    assert!(!err.to_string().contains("MARKER"), "{err}");
    // The store refused them (S3 answers an unknown key 403), and that answer is said.
    assert!(err.to_string().contains("403 Forbidden"), "{err}");
    let err = S3BlobStore::open(
        S3Location::parse("s3://no-such-bucket-pcii").unwrap(),
        &s3_options(),
    )
    .expect_err("a missing bucket is refused at open");
    // The message names the bucket and says it does not exist.
    assert!(err.to_string().contains("no-such-bucket-pcii"), "{err}");
    assert!(err.to_string().contains("NoSuchBucket"), "{err}");
}

/// Deletions queued by a request's commit are made with no database connection held while the store is asked: a
/// slow store (S3 in a brownout, 20 s a call) must not take the pool's few connections with it.
#[test]
fn queued_deletions_hold_no_database_connection_while_the_store_answers() {
    use pcii_portal::models::blob_deletion;
    let dir = tempfile::tempdir().unwrap();
    let url = dir.path().join("portal.db").display().to_string();
    let db = pcii_portal::db::Db::open(&url, 2).unwrap();
    // How many database connections were taken while the store was asked to delete.
    let in_use_at_delete = Arc::new(std::sync::Mutex::new(Vec::new()));
    let store = crate::common::BeforeDelete {
        inner: Arc::new(FsBlobStore::open(&dir.path().join("blobs")).unwrap()),
        before_delete: {
            let (db, seen) = (db.clone(), in_use_at_delete.clone());
            move |_: &str| seen.lock().unwrap().push(db.connections_in_use())
        },
    };
    let names: Vec<String> = (0..3).map(|i| put(&store, &[i; 10])).collect();
    blob_deletion::enqueue(&mut db.get().unwrap(), &names, 0).unwrap();
    let (deleted, failed) =
        pcii_portal::workflow::blobs::delete_queued(&db, &store, Some(&names)).unwrap();
    assert_eq!((deleted, failed), (3, 0));
    assert_eq!(*in_use_at_delete.lock().unwrap(), vec![0, 0, 0]);
    assert_eq!(blob_deletion::count(&mut db.get().unwrap()).unwrap(), 0);
    for name in &names {
        assert!(!store.exists(name).unwrap());
    }
}
