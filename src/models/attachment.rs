//! A submission's files: one row per file, pointing at its encrypted blob (none once destroyed). The names and
//! descriptions are in the encrypted content document; only sizes and digests stay in clear.

use diesel::prelude::*;
use serde::Serialize;

use crate::db::schema::attachments;
use crate::db::DbConn;

#[derive(Debug, Clone, Queryable, Selectable, Serialize)]
#[diesel(table_name = attachments)]
pub struct Attachment {
    pub id: String,
    pub submission_id: String,
    pub blob_id: Option<String>,
    pub position: i32,
    pub size_bytes: i64,
    pub sha256: String,
    pub added_at: i64,
}

/// A submission's attachments in upload order (call only after the submission was found in scope).
pub fn attachments_of(conn: &mut DbConn, submission_id: &str) -> QueryResult<Vec<Attachment>> {
    attachments::table
        .filter(attachments::submission_id.eq(submission_id))
        .order((attachments::position.asc(), attachments::id.asc()))
        .select(Attachment::as_select())
        .load(conn)
}

/// What a destruction record keeps of one file.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = attachments)]
pub struct AttachmentDigest {
    pub position: i32,
    pub size_bytes: i64,
    pub sha256: String,
}

/// The digests of a submission's files, by position.
pub fn digests_of(conn: &mut DbConn, submission_id: &str) -> QueryResult<Vec<AttachmentDigest>> {
    attachments::table
        .filter(attachments::submission_id.eq(submission_id))
        .order(attachments::position.asc())
        .select(AttachmentDigest::as_select())
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
    pub sha256: &'a str,
    pub added_at: i64,
}

pub fn insert(conn: &mut DbConn, new: &NewAttachment<'_>) -> QueryResult<()> {
    diesel::insert_into(attachments::table)
        .values(new)
        .execute(conn)
        .map(|_| ())
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
/// sizes and digests, stay.
pub fn unlink_blobs_of(conn: &mut DbConn, submission_id: &str) -> QueryResult<usize> {
    diesel::update(attachments::table.filter(attachments::submission_id.eq(submission_id)))
        .set(attachments::blob_id.eq(None::<String>))
        .execute(conn)
}
