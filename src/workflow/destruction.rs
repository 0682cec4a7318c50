//! Crypto-shredding: a destroyed submission's ciphertexts (every blob row it owns: content versions and
//! attachments, each sealed to the current key and the escrow keys in one file) are removed from the
//! store, and a destruction record keeps who, when, why and the SHA-256 of what was destroyed.

use serde_json::json;

use crate::db::DbConn;
use crate::domain::Status;
use crate::error::AppResult;
use crate::models::destruction::{self, NewDestruction};
use crate::models::submission::Submission;
use crate::models::{attachment, blob, submission};

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
    let files = attachment::digests_of(tx, &submission.id)?;
    let digests = json!({
        "files": files.iter().map(|f| json!({
            "position": f.position, "size_bytes": f.size_bytes, "sha256": f.sha256,
        })).collect::<Vec<_>>(),
        "ciphertexts": rows.iter().map(|b| json!({
            "kind": b.kind,
            "key_id": b.key_id,
            "plaintext_sha256": b.plaintext_sha256,
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
    attachment::unlink_blobs_of(tx, &submission.id)?;
    submission::close_destroyed(tx, &submission.id, final_status, now)?;
    blob::delete_of_submission(tx, &submission.id)?;
    Ok(rows.into_iter().map(|b| b.storage_name).collect())
}
