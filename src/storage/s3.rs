//! The S3 blob store: committed blobs are objects `<prefix>/<name>` in one bucket of an S3-compatible store (AWS S3,
//! SeaweedFS, MinIO, ...), through `object_store`'s S3 client.
//!
//! Only ciphertext reaches it: the crypto layer seals before [`BlobStore::create`]'s writer sees a byte. The writer
//! buffers one part (5 MiB, S3's smallest) at a time: a blob that fits in one part is a single PUT at commit; a larger
//! one streams into a multipart upload, at most [`PARTS_IN_FLIGHT`] parts on the wire while the next fills, so memory
//! stays at about 15 MiB per upload whatever the size. Nothing is visible under the name until commit
//! (CompleteMultipartUpload); a writer dropped without commit aborts its multipart upload, so a refused or broken
//! upload leaves no object and no stored parts. Parts of a process killed mid-upload stay in the bucket, invisible,
//! until the bucket's lifecycle rule (`AbortIncompleteMultipartUpload`, see README) removes them: `object_store` cannot
//! list multipart uploads, so [`BlobStore::sweep_temporaries`] has nothing to do here.
//!
//! The trait is blocking (its callers are worker threads that also encrypt and hash), the client is async: every call
//! runs on a small runtime of this module's own, and the caller waits for it. Downloads stream: a task pulls the
//! object's body into a bounded channel that the reader drains.

use std::collections::VecDeque;
use std::future::Future;
use std::io::{self, Read};
use std::path::Path as FsPath;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{
    ClientOptions, MultipartUpload, ObjectStore, ObjectStoreExt, PutPayload, RetryConfig,
};
use tokio::task::JoinHandle;

use super::{check_blob_name, is_valid_blob_name, new_blob_name, BlobStore, BlobWriter};

/// S3's smallest part (all but the last); also the most a blob's writer holds before sending.
pub const PART_SIZE: usize = 5 << 20;
/// Parts of one blob on the wire at once while the next one fills.
pub const PARTS_IN_FLIGHT: usize = 2;
/// Chunks of a download buffered ahead of its reader (each as the HTTP client delivers it, typically 16 KiB).
const READ_AHEAD_CHUNKS: usize = 16;

/// Where blobs go: `s3://bucket` or `s3://bucket/prefix`, and how to reach the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct S3Location {
    pub bucket: String,
    /// Without leading or trailing `/`; empty for the bucket's root.
    pub prefix: String,
}

impl S3Location {
    /// Parses `s3://bucket[/prefix]`; `None` when `url` is not such a URL.
    pub fn parse(url: &str) -> Option<S3Location> {
        let rest = url.strip_prefix("s3://")?;
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let prefix = prefix.trim_matches('/');
        let bucket_ok = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.');
        // Path segments that object_store would refuse or that could address something else.
        let prefix_ok = prefix.split('/').all(|s| {
            !s.is_empty() && s != "." && s != ".." && !s.contains(['\\', '*', '?', '#', '%'])
        }) || prefix.is_empty();
        (bucket_ok && prefix_ok).then(|| S3Location {
            bucket: bucket.to_string(),
            prefix: prefix.to_string(),
        })
    }
}

/// How to reach the store, from configuration. Empty strings leave the choice to the standard AWS variables
/// (`AWS_ENDPOINT`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`) and then to
/// object_store's defaults.
#[derive(Debug, Clone, Default)]
pub struct S3Options {
    /// e.g. `http://127.0.0.1:8333` (SeaweedFS) or `https://s3.eu-west-1.amazonaws.com`.
    pub endpoint: String,
    pub region: String,
    /// `https://endpoint/bucket/key` (true) or `https://bucket.endpoint/key` (false).
    pub path_style: bool,
    /// An AWS shared-credentials file (`[default]` / `aws_access_key_id = ...`); the profile is `AWS_PROFILE` or
    /// `default`. Empty: the standard variables.
    pub credentials_file: std::path::PathBuf,
}

/// The runtime every S3 call runs on: two threads, made on first use, never dropped (a runtime may not be dropped
/// from async code, and the store lives as long as the process).
fn runtime() -> io::Result<&'static tokio::runtime::Runtime> {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt);
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("pcii-s3")
        .enable_all()
        .build()?;
    if let Err(lost) = RUNTIME.set(rt) {
        // Another thread made one first; this one is left undropped too (it may be async code that got here).
        std::mem::forget(lost);
    }
    RUNTIME
        .get()
        .ok_or_else(|| io::Error::other("no S3 client runtime"))
}

/// Runs `fut` on the S3 runtime and waits for it, from any thread (async callers included: it blocks the thread, but
/// never needs the caller's runtime to make progress).
fn run<T: Send + 'static>(fut: impl Future<Output = T> + Send + 'static) -> io::Result<T> {
    let task = runtime()?.spawn(fut);
    wait(task)
}

fn wait<T>(task: JoinHandle<T>) -> io::Result<T> {
    futures::executor::block_on(task).map_err(|_| io::Error::other("an S3 client task failed"))
}

/// An object_store error as an I/O error of the right kind: a missing object is `NotFound`; anything else (no answer,
/// a 5xx, a cut connection, and credentials the store refuses — expired or revoked since the start, which checked
/// them) `ConnectionAborted`, which the web layer answers 503 "try again": each is the portal's fault, not the
/// caller's, and passes once the store or its credentials are mended. Messages say what failed without credentials
/// (object_store's hold none); the log names refused credentials as such.
fn io_error(e: object_store::Error) -> io::Error {
    use object_store::Error as E;
    match &e {
        E::NotFound { .. } => io::Error::new(io::ErrorKind::NotFound, "no such blob"),
        E::PermissionDenied { .. } | E::Unauthenticated { .. } => {
            // An error, not the warning a passing 503 gets: it does not pass until someone mends the credentials.
            tracing::error!(error = %e, "the S3 store refused the portal's credentials");
            io::Error::new(
                io::ErrorKind::ConnectionAborted,
                format!("S3 refused the portal's credentials (expired or revoked?): {e}"),
            )
        }
        _ => io::Error::new(io::ErrorKind::ConnectionAborted, format!("S3: {e}")),
    }
}

/// Reads `[profile]`'s key pair from an AWS shared-credentials file.
fn read_credentials_file(path: &FsPath) -> io::Result<(String, String, Option<String>)> {
    // A secret like the key files: refused when others may read it.
    let text = crate::crypto::keyfile::read_private(path)
        .map_err(|e| io::Error::new(io::ErrorKind::PermissionDenied, e.to_string()))?;
    let profile = std::env::var("AWS_PROFILE").unwrap_or_else(|_| "default".into());
    let (mut in_profile, mut id, mut secret, mut token) = (false, None, None, None);
    for line in text.lines().map(str::trim) {
        if line.starts_with('#') || line.starts_with(';') || line.is_empty() {
            continue;
        }
        if let Some(section) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
            in_profile = section.trim() == profile;
            continue;
        }
        let Some((key, value)) = line.split_once('=') else {
            continue;
        };
        if in_profile {
            let value = Some(value.trim().to_string());
            match key.trim() {
                "aws_access_key_id" => id = value,
                "aws_secret_access_key" => secret = value,
                "aws_session_token" => token = value,
                _ => {}
            }
        }
    }
    match (id, secret) {
        (Some(id), Some(secret)) => Ok((id, secret, token)),
        // The message names the file and profile, never a value read from it.
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidData,
            format!(
                "{}: no aws_access_key_id and aws_secret_access_key in profile [{profile}]",
                path.display()
            ),
        )),
    }
}

/// Blobs in an S3 bucket.
pub struct S3BlobStore {
    store: Arc<dyn ObjectStore>,
    prefix: Path,
    location: S3Location,
}

impl std::fmt::Debug for S3BlobStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("S3BlobStore")
            .field("location", &self.location)
            .finish_non_exhaustive()
    }
}

impl S3BlobStore {
    /// Connects to the bucket (one request, so that a wrong endpoint, bucket or key is said at start).
    pub fn open(location: S3Location, options: &S3Options) -> io::Result<S3BlobStore> {
        // reqwest's rustls takes the process's crypto provider; ring is the one this binary carries.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let mut builder = AmazonS3Builder::from_env().with_bucket_name(&location.bucket);
        if !options.endpoint.is_empty() {
            builder = builder.with_endpoint(&options.endpoint);
        }
        if !options.region.is_empty() {
            builder = builder.with_region(&options.region);
        }
        if !options.credentials_file.as_os_str().is_empty() {
            let (id, secret, token) = read_credentials_file(&options.credentials_file)?;
            builder = builder
                .with_access_key_id(id)
                .with_secret_access_key(secret);
            if let Some(token) = token {
                builder = builder.with_token(token);
            }
        }
        let client = ClientOptions::new()
            // Plain HTTP only when the endpoint says so (a store on loopback); only ciphertext and signed requests
            // travel, but https is the default everywhere else.
            .with_allow_http(options.endpoint.starts_with("http://"))
            .with_connect_timeout(Duration::from_secs(5))
            // No limit on a whole request: a download is read as fast as its browser takes it. A connection that
            // stops answering for a minute is cut.
            .with_timeout_disabled()
            .with_read_timeout(Duration::from_secs(60));
        let store = builder
            .with_virtual_hosted_style_request(!options.path_style)
            .with_client_options(client)
            // Retried, but briefly: a request waiting on a store that is down is answered 503 within seconds.
            .with_retry(RetryConfig {
                max_retries: 3,
                retry_timeout: Duration::from_secs(20),
                ..RetryConfig::default()
            })
            .build()
            .map_err(io_error)?;
        let prefix = Path::from(location.prefix.as_str());
        let store = S3BlobStore {
            store: Arc::new(store),
            prefix,
            location,
        };
        store.check_reachable(Duration::from_secs(30))?;
        Ok(store)
    }

    pub fn location(&self) -> &S3Location {
        &self.location
    }

    /// Replaces a committed blob's bytes. Nothing in the portal rewrites a blob (they are immutable); tests use it to
    /// play an intruder with write access to the bucket, whose change the integrity checks must catch.
    pub fn overwrite(&self, name: &str, bytes: Vec<u8>) -> io::Result<()> {
        let path = self.path_of(name)?;
        let store = self.store.clone();
        run(async move { store.put(&path, PutPayload::from(bytes)).await })?
            .map(|_| ())
            .map_err(io_error)
    }

    fn path_of(&self, name: &str) -> io::Result<Path> {
        check_blob_name(name)?;
        Ok(self.prefix.clone().join(name))
    }

    /// One listing request (its first page): the bucket exists and the credentials may read it. Within `limit`
    /// (retries included), so that a health probe answers in time.
    fn check_reachable(&self, limit: Duration) -> io::Result<()> {
        let store = self.store.clone();
        let prefix = self.prefix.clone();
        run(async move {
            let mut listing = store.list(Some(&prefix));
            tokio::time::timeout(limit, listing.next()).await
        })?
        .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "S3: no answer in time"))?
        .transpose()
        .map(|_| ())
        .map_err(io_error)
    }
}

impl BlobStore for S3BlobStore {
    fn create(&self) -> io::Result<Box<dyn BlobWriter>> {
        let name = new_blob_name();
        Ok(Box::new(S3BlobWriter {
            store: self.store.clone(),
            path: self.path_of(&name)?,
            name,
            part: Vec::new(),
            upload: None,
            in_flight: VecDeque::new(),
        }))
    }

    fn open(&self, name: &str) -> io::Result<Box<dyn Read + Send>> {
        let path = self.path_of(name)?;
        let store = self.store.clone();
        // Waits for the response's head, so that a missing object is NotFound here, as with files.
        let body = run(async move { store.get(&path).await })?
            .map_err(io_error)?
            .into_stream();
        let (tx, rx) = tokio::sync::mpsc::channel(READ_AHEAD_CHUNKS);
        runtime()?.spawn(async move {
            let mut body = body;
            while let Some(chunk) = body.next().await {
                let end = chunk.is_err();
                // The reader went away (download cancelled): stop pulling; dropping the body closes the connection.
                if tx.send(chunk.map_err(io_error)).await.is_err() || end {
                    break;
                }
            }
        });
        Ok(Box::new(S3Reader {
            rx,
            chunk: Bytes::new(),
            done: false,
        }))
    }

    fn delete(&self, name: &str) -> io::Result<()> {
        let path = self.path_of(name)?;
        let store = self.store.clone();
        match run(async move { store.delete(&path).await })? {
            Ok(()) => Ok(()),
            Err(object_store::Error::NotFound { .. }) => Ok(()),
            Err(e) => Err(io_error(e)),
        }
    }

    fn exists(&self, name: &str) -> io::Result<bool> {
        let path = self.path_of(name)?;
        let store = self.store.clone();
        match run(async move { store.head(&path).await })? {
            Ok(_) => Ok(true),
            Err(object_store::Error::NotFound { .. }) => Ok(false),
            Err(e) => Err(io_error(e)),
        }
    }

    fn list(&self) -> io::Result<Vec<(String, Duration)>> {
        let store = self.store.clone();
        let prefix = self.prefix.clone();
        let objects = run(async move {
            store
                .list(Some(&prefix))
                .try_collect::<Vec<object_store::ObjectMeta>>()
                .await
        })?
        .map_err(io_error)?;
        let now = chrono::Utc::now();
        let depth = self.prefix.parts().count() + 1;
        Ok(objects
            .into_iter()
            .filter(|o| o.location.parts().count() == depth)
            .filter_map(|o| {
                let name = o.location.filename()?.to_string();
                is_valid_blob_name(&name).then(|| {
                    let age = (now - o.last_modified).to_std().unwrap_or(Duration::ZERO);
                    (name, age)
                })
            })
            .collect())
    }

    /// Nothing to sweep that object_store can see: an unfinished multipart upload is invisible until completed, and
    /// a crashed writer's stored parts are the bucket lifecycle rule's to remove (see the module comment).
    fn sweep_temporaries(&self, _older_than: Duration) -> io::Result<usize> {
        Ok(0)
    }

    fn is_available(&self) -> bool {
        self.check_reachable(Duration::from_secs(2)).is_ok()
    }

    fn describe(&self) -> String {
        format!(
            "S3 bucket {} prefix {:?}",
            self.location.bucket, self.location.prefix
        )
    }
}

/// A blob being written: one part filling, up to [`PARTS_IN_FLIGHT`] on the wire.
struct S3BlobWriter {
    store: Arc<dyn ObjectStore>,
    path: Path,
    name: String,
    part: Vec<u8>,
    /// Started when the first part is full; a blob smaller than a part is one PUT at commit.
    upload: Option<Box<dyn MultipartUpload>>,
    in_flight: VecDeque<JoinHandle<object_store::Result<()>>>,
}

impl S3BlobWriter {
    /// Sends the filled part, first waiting for the oldest part on the wire when enough are.
    fn send_part(&mut self) -> io::Result<()> {
        if self.upload.is_none() {
            let store = self.store.clone();
            let path = self.path.clone();
            self.upload =
                Some(run(async move { store.put_multipart(&path).await })?.map_err(io_error)?);
        }
        while self.in_flight.len() >= PARTS_IN_FLIGHT {
            if let Some(oldest) = self.in_flight.pop_front() {
                wait(oldest)?.map_err(io_error)?;
            }
        }
        let data = std::mem::take(&mut self.part);
        let upload = self
            .upload
            .as_mut()
            .ok_or_else(|| io::Error::other("no multipart upload"))?;
        let sending = upload.put_part(PutPayload::from(data));
        self.in_flight.push_back(runtime()?.spawn(sending));
        Ok(())
    }

    fn wait_for_parts(&mut self) -> io::Result<()> {
        while let Some(part) = self.in_flight.pop_front() {
            wait(part)?.map_err(io_error)?;
        }
        Ok(())
    }
}

impl io::Write for S3BlobWriter {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let room = PART_SIZE - self.part.len();
        let n = buf.len().min(room);
        if self.part.len() + n > self.part.capacity().max(1 << 20) {
            // Past 1 MiB, room for exactly one part: grown by doubling it would reach 8 MiB. (Small blobs, the
            // content documents, stay small.)
            self.part.reserve_exact(room);
        }
        self.part.extend_from_slice(&buf[..n]);
        if self.part.len() == PART_SIZE {
            self.send_part()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl BlobWriter for S3BlobWriter {
    fn commit(mut self: Box<Self>) -> io::Result<String> {
        if self.upload.is_none() {
            let store = self.store.clone();
            let path = self.path.clone();
            let data = PutPayload::from(std::mem::take(&mut self.part));
            run(async move { store.put(&path, data).await })?.map_err(io_error)?;
            return Ok(std::mem::take(&mut self.name));
        }
        if !self.part.is_empty() {
            self.send_part()?;
        }
        self.wait_for_parts()?;
        let mut upload = self
            .upload
            .take()
            .ok_or_else(|| io::Error::other("no multipart upload"))?;
        match run(async move {
            let done = upload.complete().await;
            (done, upload)
        })? {
            (Ok(_), _) => Ok(std::mem::take(&mut self.name)),
            (Err(e), upload) => {
                // Dropped below with the writer: the failed upload is aborted.
                self.upload = Some(upload);
                Err(io_error(e))
            }
        }
    }
}

impl Drop for S3BlobWriter {
    /// Not committed: the parts on the wire are let finish, then the multipart upload is aborted, so the store
    /// keeps nothing of it.
    fn drop(&mut self) {
        let Some(mut upload) = self.upload.take() else {
            return;
        };
        for part in self.in_flight.drain(..) {
            let _ = wait(part);
        }
        match run(async move { upload.abort().await }) {
            Ok(Ok(())) => {}
            Ok(Err(e)) => {
                tracing::warn!(error = %e, "aborting an unfinished S3 multipart upload failed; the bucket's lifecycle rule removes its parts")
            }
            Err(e) => tracing::warn!(error = %e, "aborting an unfinished S3 multipart upload"),
        }
    }
}

/// Reads an object's body as the download task delivers it.
struct S3Reader {
    rx: tokio::sync::mpsc::Receiver<io::Result<Bytes>>,
    chunk: Bytes,
    done: bool,
}

impl Read for S3Reader {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        while self.chunk.is_empty() {
            if self.done {
                return Ok(0);
            }
            match futures::executor::block_on(self.rx.recv()) {
                Some(Ok(chunk)) => self.chunk = chunk,
                Some(Err(e)) => {
                    self.done = true;
                    return Err(e);
                }
                None => self.done = true,
            }
        }
        let n = buf.len().min(self.chunk.len());
        buf[..n].copy_from_slice(&self.chunk[..n]);
        let _ = self.chunk.split_to(n);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Credentials refused after the start (expired, revoked) are the portal's fault and pass once mended: a 503,
    /// like a store that does not answer, not a 500; a missing object is still a missing object.
    #[test]
    fn refused_credentials_and_an_unanswering_store_are_unavailable_not_a_fault() {
        use crate::error::AppError;
        let source = || -> Box<dyn std::error::Error + Send + Sync> { "403 AccessDenied".into() };
        let path = "blobs/x".to_string();
        for e in [
            object_store::Error::PermissionDenied {
                path: path.clone(),
                source: source(),
            },
            object_store::Error::Unauthenticated {
                path: path.clone(),
                source: source(),
            },
            object_store::Error::Generic {
                store: "S3",
                source: source(),
            },
        ] {
            let app = AppError::from(io_error(e));
            assert!(matches!(app, AppError::Unavailable(_)), "{app:?}");
        }
        let missing = io_error(object_store::Error::NotFound {
            path,
            source: source(),
        });
        assert_eq!(missing.kind(), io::ErrorKind::NotFound);
    }

    #[test]
    fn locations_parse_and_refuse_what_could_address_elsewhere() {
        assert_eq!(
            S3Location::parse("s3://pcii-blobs"),
            Some(S3Location {
                bucket: "pcii-blobs".into(),
                prefix: String::new()
            })
        );
        assert_eq!(
            S3Location::parse("s3://pcii-blobs/prod/portal/"),
            Some(S3Location {
                bucket: "pcii-blobs".into(),
                prefix: "prod/portal".into()
            })
        );
        for bad in [
            "s3://",
            "s3://ab",
            "s3://Upper",
            "s3://b_b_b",
            "s3://bucket/../x",
            "s3://bucket/a//b",
            "s3://bucket/a/./b",
            "file:///tmp",
            "/tmp/blobs",
        ] {
            assert_eq!(S3Location::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn credentials_come_from_the_named_profile_and_errors_name_no_value() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("credentials");
        std::fs::write(
            &path,
            "[default]\naws_access_key_id = A\naws_secret_access_key = B\n",
        )
        .unwrap();
        // Readable by others (the umask's 0644): refused, like a key file.
        let err = read_credentials_file(&path).unwrap_err().to_string();
        assert!(err.contains("0600"), "{err}");
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        std::fs::write(
            &path,
            "# comment\n[other]\naws_access_key_id = WRONG\naws_secret_access_key = WRONG\n\n[default]\naws_access_key_id = AKIDEXAMPLE\naws_secret_access_key = s3cr3t-MARKER\n",
        )
        .unwrap();
        let (id, secret, token) = read_credentials_file(&path).unwrap();
        assert_eq!(
            (id.as_str(), secret.as_str(), token),
            ("AKIDEXAMPLE", "s3cr3t-MARKER", None)
        );

        std::fs::write(&path, "[default]\naws_access_key_id = ONLY-ID-MARKER\n").unwrap();
        let err = read_credentials_file(&path).unwrap_err().to_string();
        assert!(
            err.contains("[default]") && !err.contains("MARKER"),
            "{err}"
        );
    }
}
