//! Sealing and opening a submission's encrypted documents: the content JSON and the attachments.
//! Everything here runs the blocking crypto and file work off the async executor. Opening is private to
//! `workflow`: web, exports and the CLI reach content only through `workflow::access`, which decides and
//! records; inside, intake reads the submitter's own draft to update it.

use std::io::{Cursor, Read};
use std::pin::Pin;

use tokio::io::{AsyncRead, AsyncReadExt};
use zeroize::Zeroizing;

use crate::audit::log::Actor;
use crate::crypto::stream::{decrypt_to_async, seal_reader, ExactVerified, Recipients, SealedBlob};
use crate::error::{AppError, AppResult};
use crate::key_store::data_keys::{blob_keys, open_blob_shared as open_sealed};
use crate::models::blob;
use crate::services::Services;
use crate::slots::{Full, Slot};
use crate::workflow::content::Content;

/// The largest content document accepted back from the store (the form caps it far below).
const CONTENT_MAX: u64 = 16 * 1024 * 1024;
/// Read (and so verified, for files this small) before a download's headers are sent.
const FIRST_PIECE: usize = 1024 * 1024;

/// What [`integrity_error`] tells of a stored document that failed to open or verify.
pub(crate) const INTEGRITY_FAILED: &str = "a stored document failed its integrity check";

pub(crate) fn integrity_error(e: std::io::Error) -> AppError {
    // The detail (blob name, what failed) goes to the log; the person is told only that it failed.
    match AppError::io("opening a stored document", e) {
        AppError::Internal(detail) => {
            tracing::error!(error = %detail, "a stored document failed to open or verify");
            AppError::Internal(INTEGRITY_FAILED.into())
        }
        // The store did not answer (S3 away, a read-only disk): 503 "try again", not a damaged document.
        passing => {
            tracing::warn!(error = ?passing, "a stored document could not be read now");
            passing
        }
    }
}

/// A slot to send a file, a package or an export to `actor`: 429 when the account has as many under way as it may,
/// 503 when the portal sends as many as it will. Taken before anything is decrypted; the body holds it until it
/// is dropped (`slots::HeldBody`), so a client that reads slowly, or not at all, holds only its own slots.
pub fn download_slot(state: &Services, actor: &Actor) -> AppResult<Slot> {
    let account = actor.user_id.as_deref().unwrap_or("-");
    state.downloads.enter(account).map_err(|full| match full {
        Full::Account(mine) => AppError::Throttled(format!(
            "You already have {mine} downloads under way. Wait until one has finished, then try again."
        )),
        Full::All => AppError::Unavailable("every download slot is in use".into()),
    })
}

/// Encrypts a content document into a new blob (durable before this returns).
pub async fn seal_content(
    state: &Services,
    to: &Recipients,
    content: &Content,
) -> AppResult<SealedBlob> {
    let json = Zeroizing::new(content.to_json());
    let to = to.clone();
    let store = state.blobs.clone();
    tokio::task::spawn_blocking(move || seal_reader(&*store, &to, &json[..]))
        .await
        .map_err(|_| AppError::Internal("sealing task failed".into()))?
        .map_err(|e| AppError::io("sealing content", e))
}

/// What a person is told when the content version a page was opening was replaced meanwhile.
const VERSION_REPLACED: &str =
    "What this page was opening changed meanwhile (a draft saved again in another window \
     or tab, or content destroyed). Reload the page.";

/// Decrypts and verifies a content document. A version deleted while it was being opened (a draft saved again in
/// another tab replaces its version) is a 409 that says so; a stored file missing while its row remains is a failed
/// integrity check, as before.
pub(in crate::workflow) async fn read_content(
    state: &Services,
    blob_id: &str,
) -> AppResult<Content> {
    match read_content_once(state, blob_id).await {
        Err(AppError::NotFound) => {
            let id = blob_id.to_string();
            let row = state
                .db
                .run(move |c| Ok(crate::models::blob::find_opt(c, &id)?))
                .await?;
            Err(match row {
                None => AppError::Conflict(VERSION_REPLACED.into()),
                Some(_) => integrity_error(std::io::Error::new(
                    std::io::ErrorKind::NotFound,
                    "a stored document's file is missing",
                )),
            })
        }
        other => other,
    }
}

async fn read_content_once(state: &Services, blob_id: &str) -> AppResult<Content> {
    let keys_of_blob = {
        let id = blob_id.to_string();
        state.db.run(move |c| Ok(blob_keys(c, &id)?)).await?
    };
    let keys = state.current_keys();
    let store = state.blobs.clone();
    tokio::task::spawn_blocking(move || {
        let reader = open_sealed(&*store, &keys, &keys_of_blob).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                AppError::NotFound
            } else {
                integrity_error(e)
            }
        })?;
        let mut json = Zeroizing::new(Vec::new());
        // One byte over the cap is read: a document that ends within it ended at the reader's verified end (age's
        // final chunk and the ciphertext digest checked), and one over it is refused, never parsed as a prefix.
        reader
            .take(CONTENT_MAX + 1)
            .read_to_end(&mut json)
            .map_err(integrity_error)?;
        if json.len() as u64 > CONTENT_MAX {
            return Err(integrity_error(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                "a content document over its cap",
            )));
        }
        Content::from_json(&json).map_err(AppError::Internal)
    })
    .await
    .map_err(|_| AppError::Internal("decryption task failed".into()))?
}

/// A decrypting stream of one blob's plaintext. Its first megabyte was read (and, for a file that small,
/// fully verified) before this returned, so a missing, undecryptable or damaged small file is an error
/// page rather than a broken download. For larger files a later failure ends the stream with an error:
/// the download never completes cleanly.
pub type PlaintextStream = Pin<Box<dyn AsyncRead + Send>>;

pub(in crate::workflow) async fn open_blob(
    state: &Services,
    blob_id: &str,
) -> AppResult<(PlaintextStream, u64)> {
    let keys_of_blob = {
        let id = blob_id.to_string();
        state.db.run(move |c| Ok(blob_keys(c, &id)?)).await?
    };
    let len = keys_of_blob.blob.plaintext_len.max(0) as u64;
    let keys = state.current_keys();
    let store = state.blobs.clone();
    let opened_as = keys_of_blob.blob.storage_name.clone();
    let opened = tokio::task::spawn_blocking(move || {
        // Held to the recorded length, which the response declares (see `ExactVerified`).
        let mut reader = ExactVerified::new(open_sealed(&*store, &keys, &keys_of_blob)?, len);
        // Plaintext: wiped when the response is done with it.
        let mut first = Zeroizing::new(vec![0u8; FIRST_PIECE]);
        let mut filled = 0;
        while filled < first.len() {
            match reader.read(&mut first[filled..]) {
                Ok(0) => {
                    first.truncate(filled);
                    return Ok((first, None));
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok((first, Some(reader)))
    })
    .await
    .map_err(|_| AppError::Internal("decryption task failed".into()))?;
    let (first, rest) = match opened {
        Ok(opened) => opened,
        Err(e) => return Err(moved_meanwhile(state, blob_id, opened_as, e).await),
    };
    let stream: PlaintextStream = match rest {
        None => Box::pin(Cursor::new(first)),
        Some(reader) => {
            let rest = decrypt_to_async(reader).map_err(integrity_error)?;
            Box::pin(AsyncReadExt::chain(Cursor::new(first), rest))
        }
    };
    Ok((stream, len))
}

/// Why a blob failed to open: if its row went (a destruction or a deletion committed after the row was read, and
/// the ciphertext was collected) or now names another ciphertext (`keys rotate --data-keys` re-encrypted it), the
/// file moved under the reader, which is no fault of the content: 410 or 503 "try again", not a failed integrity
/// check. Otherwise what failed ([`integrity_error`]).
async fn moved_meanwhile(
    state: &Services,
    blob_id: &str,
    opened_as: String,
    e: std::io::Error,
) -> AppError {
    let id = blob_id.to_string();
    let now = state.db.run(move |c| Ok(blob::find_opt(c, &id)?)).await;
    let moved = match now {
        Ok(None) => {
            AppError::Gone("This file was removed or destroyed while it was being opened.".into())
        }
        Ok(Some(row)) if row.storage_name != opened_as => AppError::Unavailable(
            "This file was being re-encrypted as it was opened. Try again.".into(),
        ),
        Ok(Some(_)) => return integrity_error(e),
        // Whether it moved cannot be told now: a passing state of the database (503), not a damaged file.
        Err(db) => return db,
    };
    tracing::info!(blob = %blob_id, error = %e, "a blob moved while it was being opened");
    moved
}

/// Removes blobs from the store after the rows that pointed to them are gone (or never committed).
/// Failures are logged; the orphan sweep removes whatever is left.
pub async fn delete_blobs(state: &Services, names: Vec<String>) {
    if names.is_empty() {
        return;
    }
    let store = state.blobs.clone();
    let _ = tokio::task::spawn_blocking(move || {
        for name in names {
            if let Err(e) = store.delete(&name) {
                tracing::warn!(blob = %name, error = %e, "deleting a blob failed; the sweep will retry");
            }
        }
    })
    .await;
}
