//! Wrapped data keys (one current per submission, more only while `keys rotate --data-keys` re-encrypts it) and
//! the submission's pointer to its current one.

use diesel::prelude::*;

use crate::db::schema::{blobs, data_keys, submissions};
use crate::db::DbConn;

/// A wrapped data key as stored.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = data_keys)]
pub struct DataKeyRow {
    /// The data key's public recipient (`age1...`), the key id of the blobs sealed to it.
    pub key_id: String,
    pub submission_id: String,
    /// The secret, age-encrypted to `master_key_id` and the escrow recipients.
    pub wrapped: Vec<u8>,
    /// The master identity it is wrapped to.
    pub master_key_id: String,
    pub created_at: i64,
}

/// Stores a wrapped data key and makes it the submission's current one. Inside the caller's transaction.
pub fn insert_current(conn: &mut DbConn, row: &DataKeyRow) -> QueryResult<()> {
    diesel::insert_into(data_keys::table)
        .values((
            data_keys::key_id.eq(&row.key_id),
            data_keys::submission_id.eq(&row.submission_id),
            data_keys::wrapped.eq(&row.wrapped),
            data_keys::master_key_id.eq(&row.master_key_id),
            data_keys::created_at.eq(row.created_at),
        ))
        .execute(conn)?;
    diesel::update(submissions::table.find(&row.submission_id))
        .set(submissions::data_key_id.eq(&row.key_id))
        .execute(conn)?;
    Ok(())
}

/// The key id of the submission's current data key (`None`: a submission from before data keys).
pub fn current_of(conn: &mut DbConn, submission_id: &str) -> QueryResult<Option<String>> {
    submissions::table
        .find(submission_id)
        .select(submissions::data_key_id)
        .first(conn)
}

/// The wrapped key `key_id` of `submission_id`, if it (still) exists.
pub fn find(
    conn: &mut DbConn,
    submission_id: &str,
    key_id: &str,
) -> QueryResult<Option<DataKeyRow>> {
    data_keys::table
        .find(key_id)
        .filter(data_keys::submission_id.eq(submission_id))
        .select(DataKeyRow::as_select())
        .first(conn)
        .optional()
}

/// Deletes every wrapped key of a submission and its pointer (destruction). Returns how many keys went.
pub fn delete_of_submission(conn: &mut DbConn, submission_id: &str) -> QueryResult<usize> {
    diesel::update(submissions::table.find(submission_id))
        .set(submissions::data_key_id.eq(None::<String>))
        .execute(conn)?;
    diesel::delete(data_keys::table.filter(data_keys::submission_id.eq(submission_id)))
        .execute(conn)
}

/// Deletes the submission's data keys that are not current and that no blob is sealed to any more (the end of a
/// data-key rotation for it).
pub fn delete_retired_of_submission(conn: &mut DbConn, submission_id: &str) -> QueryResult<usize> {
    let current = current_of(conn, submission_id)?;
    let in_use = blobs::table
        .filter(blobs::submission_id.eq(submission_id))
        .select(blobs::key_id);
    let mut query = diesel::delete(
        data_keys::table
            .filter(data_keys::submission_id.eq(submission_id))
            .filter(data_keys::key_id.ne_all(in_use)),
    )
    .into_boxed();
    if let Some(current) = current {
        query = query.filter(data_keys::key_id.ne(current));
    }
    query.execute(conn)
}

/// How many data keys are wrapped to another master identity than `master_key_id` (what a rotation still has to
/// re-wrap).
pub fn count_not_wrapped_to(conn: &mut DbConn, master_key_id: &str) -> QueryResult<i64> {
    data_keys::table
        .filter(data_keys::master_key_id.ne(master_key_id))
        .count()
        .get_result(conn)
}

/// The first `limit` data keys (by key id, after `after`) wrapped to another master identity than `master_key_id`.
pub fn page_not_wrapped_to(
    conn: &mut DbConn,
    master_key_id: &str,
    after: &str,
    limit: i64,
) -> QueryResult<Vec<DataKeyRow>> {
    data_keys::table
        .filter(data_keys::master_key_id.ne(master_key_id))
        .filter(data_keys::key_id.gt(after))
        .order(data_keys::key_id.asc())
        .limit(limit)
        .select(DataKeyRow::as_select())
        .load(conn)
}

/// Replaces a data key's wrapping, provided it is still wrapped to `old_master` (false: it was destroyed or
/// re-wrapped meanwhile).
pub fn rewrap(
    conn: &mut DbConn,
    key_id: &str,
    old_master: &str,
    wrapped: &[u8],
    new_master: &str,
) -> QueryResult<bool> {
    let n = diesel::update(
        data_keys::table
            .find(key_id)
            .filter(data_keys::master_key_id.eq(old_master)),
    )
    .set((
        data_keys::wrapped.eq(wrapped),
        data_keys::master_key_id.eq(new_master),
    ))
    .execute(conn)?;
    Ok(n == 1)
}

/// How many data keys are wrapped to the master identity `master_key_id`.
pub fn count_wrapped_to(conn: &mut DbConn, master_key_id: &str) -> QueryResult<i64> {
    data_keys::table
        .filter(data_keys::master_key_id.eq(master_key_id))
        .count()
        .get_result(conn)
}

/// How many data keys each master identity wraps, by master key id.
pub fn count_by_master(conn: &mut DbConn) -> QueryResult<Vec<(String, i64)>> {
    data_keys::table
        .group_by(data_keys::master_key_id)
        .select((data_keys::master_key_id, diesel::dsl::count_star()))
        .order(data_keys::master_key_id.asc())
        .load(conn)
}

/// How many data keys exist.
pub fn count(conn: &mut DbConn) -> QueryResult<i64> {
    data_keys::table.count().get_result(conn)
}

/// The current data keys created before `cutoff` (what `keys rotate --data-keys` started at `cutoff` still has to
/// replace): how many, and up to `limit` of their submissions (by id, after `after`).
pub fn count_current_older_than(conn: &mut DbConn, cutoff: i64) -> QueryResult<i64> {
    submissions::table
        .inner_join(data_keys::table.on(submissions::data_key_id.eq(data_keys::key_id.nullable())))
        .filter(data_keys::created_at.lt(cutoff))
        .count()
        .get_result(conn)
}

/// See [`count_current_older_than`].
pub fn submissions_with_current_older_than(
    conn: &mut DbConn,
    cutoff: i64,
    after: &str,
    limit: i64,
) -> QueryResult<Vec<String>> {
    submissions::table
        .inner_join(data_keys::table.on(submissions::data_key_id.eq(data_keys::key_id.nullable())))
        .filter(data_keys::created_at.lt(cutoff))
        .filter(submissions::id.gt(after))
        .order(submissions::id.asc())
        .limit(limit)
        .select(submissions::id)
        .load(conn)
}

/// Submissions (ids after `after`, in order, at most `limit`) that hold a data key besides their current one: what
/// an interrupted `keys rotate --data-keys` leaves once a submission's blobs are on its new key but its texts may not
/// be and its old key is not yet deleted.
pub fn submissions_with_retired(
    conn: &mut DbConn,
    after: &str,
    limit: i64,
) -> QueryResult<Vec<String>> {
    data_keys::table
        .inner_join(submissions::table.on(submissions::id.eq(data_keys::submission_id)))
        .filter(
            submissions::data_key_id
                .is_null()
                .or(submissions::data_key_id.ne(data_keys::key_id.nullable())),
        )
        .filter(data_keys::submission_id.gt(after))
        .select(data_keys::submission_id)
        .distinct()
        .order(data_keys::submission_id.asc())
        .limit(limit)
        .load(conn)
}

/// Every wrapped data key of these submissions, asked for a bounded number at a time (SQLite takes at most 32,766
/// values in one statement).
pub fn of_submissions(
    conn: &mut DbConn,
    submission_ids: &[String],
) -> QueryResult<Vec<DataKeyRow>> {
    let mut rows = Vec::new();
    for ids in submission_ids.chunks(1_000) {
        rows.extend(
            data_keys::table
                .filter(data_keys::submission_id.eq_any(ids))
                .select(DataKeyRow::as_select())
                .load(conn)?,
        );
    }
    Ok(rows)
}
