//! In-portal notices to a submitting organisation about its submissions (receipt, defects, decisions).

use diesel::prelude::*;
use serde::Serialize;

use crate::db::schema::{notices, submissions};
use crate::db::DbConn;

#[derive(Debug, Clone, Queryable, Serialize)]
pub struct NoticeRow {
    pub id: String,
    pub submission_id: String,
    pub tracking_number: Option<String>,
    pub created_at: i64,
    pub message: String,
    pub read_at: Option<i64>,
    /// The submission's status now: a notice quotes officers' words about it, so a page listing it is marked as
    /// the submission is.
    #[serde(skip)]
    pub status: crate::domain::Status,
}

/// Notices to an organisation, newest first (optionally for one submission).
pub fn notices_for(
    conn: &mut DbConn,
    organisation_id: &str,
    submission_id: Option<&str>,
    limit: i64,
) -> QueryResult<Vec<NoticeRow>> {
    use notices as n;
    let mut q = n::table
        .inner_join(submissions::table)
        .filter(n::organisation_id.eq(organisation_id.to_string()))
        .into_boxed();
    if let Some(sid) = submission_id {
        q = q.filter(n::submission_id.eq(sid.to_string()));
    }
    q.order((n::created_at.desc(), n::id.asc()))
        .limit(limit)
        .select((
            n::id,
            n::submission_id,
            submissions::tracking_number,
            n::created_at,
            n::message,
            n::read_at,
            submissions::status,
        ))
        .load(conn)
}

/// How many of an organisation's notices nobody in it has opened yet.
pub fn unread_notices(conn: &mut DbConn, organisation_id: &str) -> QueryResult<i64> {
    use notices as n;
    n::table
        .filter(n::organisation_id.eq(organisation_id))
        .filter(n::read_at.is_null())
        .count()
        .get_result(conn)
}

/// Marks an organisation's notices about one submission as read: its page, which shows them, was
/// opened by someone of that organisation.
pub fn mark_notices_read(
    conn: &mut DbConn,
    organisation_id: &str,
    submission_id: &str,
    now: i64,
) -> QueryResult<usize> {
    use notices as n;
    diesel::update(
        n::table
            .filter(n::organisation_id.eq(organisation_id))
            .filter(n::submission_id.eq(submission_id))
            .filter(n::read_at.is_null()),
    )
    .set(n::read_at.eq(now))
    .execute(conn)
}

/// A new, unread notice.
#[derive(Insertable)]
#[diesel(table_name = notices, treat_none_as_default_value = false)]
pub struct NewNotice<'a> {
    pub id: &'a str,
    pub organisation_id: &'a str,
    pub submission_id: &'a str,
    pub created_at: i64,
    pub message: &'a str,
}

pub fn insert(conn: &mut DbConn, new: &NewNotice<'_>) -> QueryResult<()> {
    diesel::insert_into(notices::table)
        .values(new)
        .execute(conn)
        .map(|_| ())
}

/// Deletes every notice about a submission (only a deleted draft loses them).
pub fn delete_of(conn: &mut DbConn, submission_id: &str) -> QueryResult<usize> {
    diesel::delete(notices::table.filter(notices::submission_id.eq(submission_id))).execute(conn)
}
