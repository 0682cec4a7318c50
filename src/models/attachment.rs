//! A submission's files: one row per file, pointing at its encrypted blob (none once destroyed). The names and
//! descriptions and plaintext digests are in the encrypted content document; only sizes stay in clear.

use diesel::prelude::*;
use serde::Serialize;

use crate::db::schema::{attachments, blobs};
use crate::db::DbConn;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = attachments)]
struct AttachmentRow {
    id: String,
    submission_id: String,
    blob_id: Option<String>,
    position: i32,
    size_bytes: i64,
    legacy_sha256: Option<String>,
    added_at: i64,
    replaced_by: Option<String>,
    replaced_at: Option<i64>,
}

/// One file of a submission, with the digest of its stored ciphertext (while it is stored).
#[derive(Debug, Clone, Serialize)]
pub struct Attachment {
    pub id: String,
    pub submission_id: String,
    pub blob_id: Option<String>,
    pub position: i32,
    pub size_bytes: i64,
    /// The plaintext digest of a file uploaded before digests moved into the sealed content document (`keys
    /// convert` moves it there and clears this).
    pub legacy_sha256: Option<String>,
    /// SHA-256 of the file's stored ciphertext; `None` once destroyed.
    pub stored_sha256: Option<String>,
    pub added_at: i64,
    /// The file that took this one's place in a cure (its attachment id); this one stays on record.
    pub replaced_by: Option<String>,
    pub replaced_at: Option<i64>,
}

impl Attachment {
    /// Still one of the submission's files (not replaced by a corrected one).
    pub fn is_current(&self) -> bool {
        self.replaced_by.is_none()
    }
}

/// A submission's attachments in upload order, replaced ones included (call only after the submission was found
/// in scope).
pub fn attachments_of(conn: &mut DbConn, submission_id: &str) -> QueryResult<Vec<Attachment>> {
    let rows: Vec<(AttachmentRow, Option<String>)> = attachments::table
        .left_join(blobs::table.on(attachments::blob_id.eq(blobs::id.nullable())))
        .filter(attachments::submission_id.eq(submission_id))
        .order((attachments::position.asc(), attachments::id.asc()))
        .select((
            AttachmentRow::as_select(),
            blobs::ciphertext_sha256.nullable(),
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(a, stored_sha256)| Attachment {
            id: a.id,
            submission_id: a.submission_id,
            blob_id: a.blob_id,
            position: a.position,
            size_bytes: a.size_bytes,
            legacy_sha256: a.legacy_sha256,
            stored_sha256,
            added_at: a.added_at,
            replaced_by: a.replaced_by,
            replaced_at: a.replaced_at,
        })
        .collect())
}

/// The legacy plaintext digests of a submission's files, by attachment id (see [`Attachment::legacy_sha256`]).
pub fn legacy_digests_of(
    conn: &mut DbConn,
    submission_id: &str,
) -> QueryResult<Vec<(String, String)>> {
    let rows: Vec<(String, Option<String>)> = attachments::table
        .filter(attachments::submission_id.eq(submission_id))
        .filter(attachments::legacy_sha256.is_not_null())
        .select((attachments::id, attachments::legacy_sha256))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .filter_map(|(id, d)| d.map(|d| (id, d)))
        .collect())
}

/// Clears the legacy plaintext digests of a submission's files (they are in its sealed content document now).
pub fn clear_legacy_digests(conn: &mut DbConn, submission_id: &str) -> QueryResult<usize> {
    diesel::update(attachments::table.filter(attachments::submission_id.eq(submission_id)))
        .set(attachments::legacy_sha256.eq(None::<String>))
        .execute(conn)
}

/// Submissions with legacy plaintext digests in clear (up to `limit`, by id after `after`).
pub fn submissions_with_legacy_digests(
    conn: &mut DbConn,
    after: &str,
    limit: i64,
) -> QueryResult<Vec<String>> {
    attachments::table
        .filter(attachments::legacy_sha256.is_not_null())
        .filter(attachments::submission_id.gt(after))
        .select(attachments::submission_id)
        .distinct()
        .order(attachments::submission_id.asc())
        .limit(limit)
        .load(conn)
}

/// A submission's files with their sizes: what ticking "Remove this file" gives back to a save's allowance.
pub fn ids_and_sizes(conn: &mut DbConn, submission_id: &str) -> QueryResult<Vec<(String, i64)>> {
    attachments::table
        .filter(attachments::submission_id.eq(submission_id))
        .select((attachments::id, attachments::size_bytes))
        .load(conn)
}

/// The sizes of a submission's files, for its clear file count and total.
pub fn sizes_of(conn: &mut DbConn, submission_id: &str) -> QueryResult<Vec<i64>> {
    attachments::table
        .filter(attachments::submission_id.eq(submission_id))
        .select(attachments::size_bytes)
        .load(conn)
}

/// The highest position a submission's files take (`None` without files): new files go after it.
pub fn last_position(conn: &mut DbConn, submission_id: &str) -> QueryResult<Option<i32>> {
    attachments::table
        .filter(attachments::submission_id.eq(submission_id))
        .select(diesel::dsl::max(attachments::position))
        .first(conn)
}

/// The blob of one of a submission's files: `Err(NotFound)` when the submission has no such file, `None` when
/// its blob is gone.
pub fn blob_of(
    conn: &mut DbConn,
    submission_id: &str,
    attachment_id: &str,
) -> QueryResult<Option<String>> {
    attachments::table
        .filter(attachments::id.eq(attachment_id))
        .filter(attachments::submission_id.eq(submission_id))
        .select(attachments::blob_id)
        .first(conn)
}

#[derive(Insertable)]
#[diesel(table_name = attachments, treat_none_as_default_value = false)]
pub struct NewAttachment<'a> {
    pub id: &'a str,
    pub submission_id: &'a str,
    pub blob_id: &'a str,
    pub position: i32,
    pub size_bytes: i64,
    pub added_at: i64,
}

pub fn insert(conn: &mut DbConn, new: &NewAttachment<'_>) -> QueryResult<()> {
    diesel::insert_into(attachments::table)
        .values(new)
        .execute(conn)
        .map(|_| ())
}

/// Marks file `old` of a submission as replaced by `new` at `now`; false when it is not a current file of it.
pub fn mark_replaced(
    conn: &mut DbConn,
    submission_id: &str,
    old: &str,
    new: &str,
    now: i64,
) -> QueryResult<bool> {
    let n = diesel::update(
        attachments::table
            .filter(attachments::id.eq(old))
            .filter(attachments::submission_id.eq(submission_id))
            .filter(attachments::replaced_by.is_null()),
    )
    .set((
        attachments::replaced_by.eq(new),
        attachments::replaced_at.eq(now),
    ))
    .execute(conn)?;
    Ok(n == 1)
}

/// Deletes one file's row (its blob row is the caller's to delete).
pub fn delete(conn: &mut DbConn, attachment_id: &str) -> QueryResult<usize> {
    diesel::delete(attachments::table.find(attachment_id)).execute(conn)
}

/// Deletes every file row of a submission.
pub fn delete_of(conn: &mut DbConn, submission_id: &str) -> QueryResult<usize> {
    diesel::delete(attachments::table.filter(attachments::submission_id.eq(submission_id)))
        .execute(conn)
}

/// Detaches a submission's files from their blobs (which are about to be destroyed); the rows, with their
/// numbers and sizes, stay.
pub fn unlink_blobs_of(conn: &mut DbConn, submission_id: &str) -> QueryResult<usize> {
    diesel::update(attachments::table.filter(attachments::submission_id.eq(submission_id)))
        .set(attachments::blob_id.eq(None::<String>))
        .execute(conn)
}
