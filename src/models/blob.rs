//! Rows that point at encrypted blobs in the blob store.

use diesel::prelude::*;

use crate::crypto::stream::{BlobRef, SealedBlob};
use crate::db::schema::{blobs, submissions};

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = blobs)]
pub struct BlobRow {
    pub id: String,
    pub submission_id: String,
    pub kind: String,
    pub storage_name: String,
    pub key_id: String,
    pub ciphertext_sha256: String,
    pub plaintext_len: i64,
    pub ciphertext_len: i64,
    pub created_at: i64,
}

fn digest(hex_str: &str) -> Result<[u8; 32], String> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(hex_str, &mut out)
        .map_err(|_| "a blob row holds a malformed digest".to_string())?;
    Ok(out)
}

impl BlobRow {
    /// What the crypto layer needs to open this blob and check it against the row.
    pub fn blob_ref(&self) -> Result<BlobRef, String> {
        Ok(BlobRef {
            name: self.storage_name.clone(),
            ciphertext_sha256: digest(&self.ciphertext_sha256)?,
        })
    }
}

/// Inserts the row for a sealed (already durable) blob. Runs inside the caller's transaction.
pub fn insert(
    conn: &mut crate::db::DbConn,
    id: &str,
    submission_id: &str,
    kind: &str,
    sealed: &SealedBlob,
    now: i64,
) -> QueryResult<()> {
    diesel::insert_into(blobs::table)
        .values((
            blobs::id.eq(id),
            blobs::submission_id.eq(submission_id),
            blobs::kind.eq(kind),
            blobs::storage_name.eq(&sealed.name),
            blobs::key_id.eq(&sealed.key_id),
            blobs::ciphertext_sha256.eq(hex::encode(sealed.ciphertext_sha256)),
            blobs::plaintext_len.eq(sealed.plaintext_len as i64),
            blobs::ciphertext_len.eq(sealed.ciphertext_len as i64),
            blobs::created_at.eq(now),
        ))
        .execute(conn)?;
    Ok(())
}

pub fn find(conn: &mut crate::db::DbConn, id: &str) -> QueryResult<BlobRow> {
    blobs::table
        .find(id)
        .select(BlobRow::as_select())
        .first(conn)
}

/// The blob row `id`, if it (still) exists.
pub fn find_opt(conn: &mut crate::db::DbConn, id: &str) -> QueryResult<Option<BlobRow>> {
    find(conn, id).optional()
}

/// Every blob row of a submission (content versions and files), oldest first.
pub fn of_submission(
    conn: &mut crate::db::DbConn,
    submission_id: &str,
) -> QueryResult<Vec<BlobRow>> {
    blobs::table
        .filter(blobs::submission_id.eq(submission_id))
        .order(blobs::created_at.asc())
        .select(BlobRow::as_select())
        .load(conn)
}

/// The store names of a submission's blobs, to delete from the store once their rows are gone.
pub fn storage_names_of(
    conn: &mut crate::db::DbConn,
    submission_id: &str,
) -> QueryResult<Vec<String>> {
    blobs::table
        .filter(blobs::submission_id.eq(submission_id))
        .select(blobs::storage_name)
        .load(conn)
}

/// Every blob's store name and the SHA-256 of its ciphertext (hex), in name order: what a backup copies.
pub fn all_stored(conn: &mut crate::db::DbConn) -> QueryResult<Vec<(String, String)>> {
    blobs::table
        .select((blobs::storage_name, blobs::ciphertext_sha256))
        .order(blobs::storage_name)
        .load(conn)
}

/// Those of `names` that a blob row stores (the orphan sweep keeps them).
pub fn storage_names_in_use(
    conn: &mut crate::db::DbConn,
    names: &[String],
) -> QueryResult<std::collections::HashSet<String>> {
    let used: Vec<String> = blobs::table
        .filter(blobs::storage_name.eq_any(names))
        .select(blobs::storage_name)
        .load(conn)?;
    Ok(used.into_iter().collect())
}

/// Deletes a blob row and returns its storage name, for deletion from the store after commit.
pub fn delete(conn: &mut crate::db::DbConn, id: &str) -> QueryResult<String> {
    let name: String = blobs::table
        .find(id)
        .select(blobs::storage_name)
        .first(conn)?;
    diesel::delete(blobs::table.find(id)).execute(conn)?;
    Ok(name)
}

/// Deletes every blob row of a submission (the store's files go after commit).
pub fn delete_of_submission(
    conn: &mut crate::db::DbConn,
    submission_id: &str,
) -> QueryResult<usize> {
    diesel::delete(blobs::table.filter(blobs::submission_id.eq(submission_id))).execute(conn)
}

/// How many blob rows each key id encrypts, by key id (data keys and, before conversion, master identities).
pub fn count_by_key(conn: &mut crate::db::DbConn) -> QueryResult<Vec<(String, i64)>> {
    blobs::table
        .group_by(blobs::key_id)
        .select((blobs::key_id, diesel::dsl::count_star()))
        .order(blobs::key_id.asc())
        .load(conn)
}

/// Blobs not sealed to their submission's current data key (from before data keys, or on a data key being
/// replaced).
#[diesel::dsl::auto_type]
fn off_current() -> _ {
    blobs::table.inner_join(submissions::table).filter(
        submissions::data_key_id
            .is_null()
            .or(submissions::data_key_id.ne(blobs::key_id.nullable())),
    )
}

/// How many blobs are not sealed to their submission's current data key.
pub fn count_off_current(conn: &mut crate::db::DbConn) -> QueryResult<i64> {
    off_current().count().get_result(conn)
}

/// Up to `limit` submissions (by id, after `after`) with blobs not sealed to their current data key.
pub fn submissions_off_current(
    conn: &mut crate::db::DbConn,
    after: &str,
    limit: i64,
) -> QueryResult<Vec<String>> {
    off_current()
        .filter(blobs::submission_id.gt(after))
        .select(blobs::submission_id)
        .distinct()
        .order(blobs::submission_id.asc())
        .limit(limit)
        .load(conn)
}

/// A submission's blobs not sealed to its current data key.
pub fn off_current_of(
    conn: &mut crate::db::DbConn,
    submission_id: &str,
) -> QueryResult<Vec<BlobRow>> {
    off_current()
        .filter(blobs::submission_id.eq(submission_id))
        .select(BlobRow::as_select())
        .load(conn)
}

/// Points a blob's row at its re-encrypted ciphertext, provided it still points at `old_storage_name`.
/// False when the row is gone (or was switched meanwhile): then nothing references `sealed`.
pub fn switch_ciphertext(
    conn: &mut crate::db::DbConn,
    id: &str,
    old_storage_name: &str,
    sealed: &SealedBlob,
) -> QueryResult<bool> {
    let updated = diesel::update(
        blobs::table
            .find(id)
            .filter(blobs::storage_name.eq(old_storage_name)),
    )
    .set((
        blobs::storage_name.eq(&sealed.name),
        blobs::key_id.eq(&sealed.key_id),
        blobs::ciphertext_sha256.eq(hex::encode(sealed.ciphertext_sha256)),
        blobs::ciphertext_len.eq(sealed.ciphertext_len as i64),
    ))
    .execute(conn)?;
    Ok(updated == 1)
}

/// How many blobs are sealed to `key_id`.
pub fn count_on_key(conn: &mut crate::db::DbConn, key_id: &str) -> QueryResult<i64> {
    blobs::table
        .filter(blobs::key_id.eq(key_id))
        .count()
        .get_result(conn)
}
