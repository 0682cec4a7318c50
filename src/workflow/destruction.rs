//! Crypto-shredding: in the decision's own transaction, a destroyed submission's wrapped data keys are deleted —
//! from that commit on, no key the portal or the escrow holders have opens any copy of its blobs — and its
//! ciphertexts are queued for deletion from the store (garbage collection, see `workflow::blobs`). A destruction
//! record keeps who, when, why and what was destroyed: each file's number and size (the submitter's receipt lists
//! the same) and each ciphertext's digest and length; no plaintext digest, which would let a copy of the database
//! confirm a guessed file.

use serde_json::json;

use crate::db::DbConn;
use crate::domain::Status;
use crate::error::AppResult;
use crate::models::destruction::{self, NewDestruction};
use crate::models::submission::Submission;
use crate::models::{attachment, blob, blob_deletion, data_key, submission, text_cell};
use crate::workflow::sealed_text::{sealed_to, DESTROYED};

/// After a destruction (or a draft's deletion) committed: on SQLite, the write-ahead log checkpointed and truncated,
/// so that the deleted wrapped data keys are left neither in the log nor in the database file's old pages (see
/// [`crate::db::checkpoint_truncate`]). Best effort: readers still busy with an older snapshot can keep it from
/// finishing; that is logged, SQLite's automatic checkpoint catches up, and the request stands.
pub async fn checkpoint_after(state: &crate::services::Services) {
    let done = state
        .db
        .run(|c| Ok(crate::db::checkpoint_truncate(c)))
        .await;
    match done {
        Ok(Ok(true)) => {}
        Ok(Ok(false)) => tracing::warn!(
            "after a destruction, the database's write-ahead log was not truncated: readers were busy; \
             SQLite's automatic checkpoint will catch up"
        ),
        Ok(Err(e)) => tracing::warn!(error = %e, "after a destruction, checkpointing the database's write-ahead log failed"),
        Err(e) => tracing::warn!(error = %e, "after a destruction, checkpointing the database's write-ahead log failed"),
    }
}

/// The database half of a destruction, inside the caller's transaction: writes the record, unlinks
/// every blob row and sets the final status. Returns the storage names to delete once the transaction
/// has committed (until then the blobs stay, so a rollback loses nothing).
pub fn destroy_in_tx(
    tx: &mut DbConn,
    submission: &Submission,
    final_status: Status,
    by: Option<&str>,
    reason: &str,
    now: i64,
) -> AppResult<Vec<String>> {
    let rows = blob::of_submission(tx, &submission.id)?;
    let files = attachment::attachments_of(tx, &submission.id)?;
    let digests = json!({
        "files": files.iter().map(|f| json!({
            "position": f.position, "size_bytes": f.size_bytes, "stored_sha256": f.stored_sha256,
        })).collect::<Vec<_>>(),
        "ciphertexts": rows.iter().map(|b| json!({
            "kind": b.kind,
            "key_id": b.key_id,
            "ciphertext_sha256": b.ciphertext_sha256,
            "ciphertext_len": b.ciphertext_len,
        })).collect::<Vec<_>>(),
    });
    destruction::insert(
        tx,
        &NewDestruction {
            id: &crate::db::new_id(),
            submission_id: &submission.id,
            destroyed_at: now,
            destroyed_by: by,
            reason,
            digests: &digests.to_string(),
        },
    )?;
    // On a store not yet converted (`keys convert`), files' plaintext digests and officers' texts written before
    // sealing rest in clear: deleting the data key cannot make them unreadable, so they go with the content here.
    attachment::clear_legacy_digests(tx, &submission.id)?;
    // (Kept: the words of this very act — its event and notice, written at `now` — which quote no content.)
    for cell in text_cell::cells_of(tx, &submission.id)? {
        let this_act = cell.at >= now
            && matches!(
                cell.column,
                text_cell::Column::EventReason | text_cell::Column::NoticeMessage
            );
        if sealed_to(&cell.value).is_none() && cell.value != DESTROYED && !this_act {
            text_cell::replace(tx, &cell, DESTROYED)?;
        }
    }
    attachment::unlink_blobs_of(tx, &submission.id)?;
    crate::models::message::unlink_blobs_of(tx, &submission.id)?;
    submission::close_destroyed(tx, &submission.id, final_status, now)?;
    blob::delete_of_submission(tx, &submission.id)?;
    data_key::delete_of_submission(tx, &submission.id)?;
    let names: Vec<String> = rows.into_iter().map(|b| b.storage_name).collect();
    blob_deletion::enqueue(tx, &names, now)?;
    Ok(names)
}
