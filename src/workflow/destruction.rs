//! Crypto-shredding: a destroyed submission's ciphertexts (every blob row it owns: content versions and
//! attachments, each sealed to the current key and the escrow keys in one file) are removed from the
//! store, and a destruction record keeps who, when, why and the SHA-256 of what was destroyed.

use diesel::prelude::*;
use serde_json::json;

use crate::db::schema::{attachments, blobs, destruction_records, submissions};
use crate::db::DbConn;
use crate::domain::Status;
use crate::error::AppResult;
use crate::models::blob::BlobRow;
use crate::models::submission::Submission;

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
    let rows: Vec<BlobRow> = blobs::table
        .filter(blobs::submission_id.eq(&submission.id))
        .order(blobs::created_at.asc())
        .select(BlobRow::as_select())
        .load(tx)?;
    let files: Vec<(i32, i64, String)> = attachments::table
        .filter(attachments::submission_id.eq(&submission.id))
        .order(attachments::position.asc())
        .select((
            attachments::position,
            attachments::size_bytes,
            attachments::sha256,
        ))
        .load(tx)?;
    let digests = json!({
        "files": files.iter().map(|(position, size, sha)| json!({
            "position": position, "size_bytes": size, "sha256": sha,
        })).collect::<Vec<_>>(),
        "ciphertexts": rows.iter().map(|b| json!({
            "kind": b.kind,
            "key_id": b.key_id,
            "plaintext_sha256": b.plaintext_sha256,
            "ciphertext_sha256": b.ciphertext_sha256,
            "ciphertext_len": b.ciphertext_len,
        })).collect::<Vec<_>>(),
    });
    diesel::insert_into(destruction_records::table)
        .values((
            destruction_records::id.eq(crate::db::new_id()),
            destruction_records::submission_id.eq(&submission.id),
            destruction_records::destroyed_at.eq(now),
            destruction_records::destroyed_by.eq(by),
            destruction_records::reason.eq(reason),
            destruction_records::digests.eq(digests.to_string()),
        ))
        .execute(tx)?;
    diesel::update(attachments::table.filter(attachments::submission_id.eq(&submission.id)))
        .set(attachments::blob_id.eq(None::<String>))
        .execute(tx)?;
    diesel::update(submissions::table.find(&submission.id))
        .set((
            submissions::content_blob_id.eq(None::<String>),
            submissions::status.eq(final_status.as_str()),
            submissions::closed_at.eq(Some(now)),
            submissions::updated_at.eq(now),
        ))
        .execute(tx)?;
    diesel::delete(blobs::table.filter(blobs::submission_id.eq(&submission.id))).execute(tx)?;
    Ok(rows.into_iter().map(|b| b.storage_name).collect())
}
