//! Mail a committed act promised and the mail route has not taken yet (`pending_mail`): see
//! `workflow::pending_mail`.

use diesel::prelude::*;

use crate::db::schema::pending_mail;
use crate::db::DbConn;

#[derive(Debug, Clone, PartialEq, Eq, Queryable, Selectable)]
#[diesel(table_name = pending_mail)]
pub struct PendingMail {
    pub id: String,
    /// A `workflow::notifications::Kind`, as stored.
    pub kind: String,
    pub user_id: String,
    /// The page the mail links to.
    pub path: String,
    pub created_at: i64,
    /// Attempts by notification rounds (the one made at once, after the act, is not counted).
    pub attempts: i64,
    pub next_attempt_at: i64,
}

pub fn insert(conn: &mut DbConn, mail: &PendingMail) -> QueryResult<()> {
    diesel::insert_into(pending_mail::table)
        .values((
            pending_mail::id.eq(&mail.id),
            pending_mail::kind.eq(&mail.kind),
            pending_mail::user_id.eq(&mail.user_id),
            pending_mail::path.eq(&mail.path),
            pending_mail::created_at.eq(mail.created_at),
            pending_mail::attempts.eq(mail.attempts),
            pending_mail::next_attempt_at.eq(mail.next_attempt_at),
        ))
        .execute(conn)
        .map(|_| ())
}

/// Those due by `now`, oldest first, at most `limit`.
pub fn due(conn: &mut DbConn, now: i64, limit: i64) -> QueryResult<Vec<PendingMail>> {
    pending_mail::table
        .filter(pending_mail::next_attempt_at.le(now))
        .order((pending_mail::created_at.asc(), pending_mail::id.asc()))
        .limit(limit)
        .select(PendingMail::as_select())
        .load(conn)
}

/// The rows of `kind` queued for `user_id` at `at`.
pub fn of_user_created_at(
    conn: &mut DbConn,
    user_id: &str,
    kind: &str,
    at: i64,
) -> QueryResult<Vec<PendingMail>> {
    pending_mail::table
        .filter(pending_mail::user_id.eq(user_id))
        .filter(pending_mail::kind.eq(kind))
        .filter(pending_mail::created_at.eq(at))
        .select(PendingMail::as_select())
        .load(conn)
}

/// The row `id`, if it is still queued.
pub fn find_opt(conn: &mut DbConn, id: &str) -> QueryResult<Option<PendingMail>> {
    pending_mail::table
        .find(id)
        .select(PendingMail::as_select())
        .first(conn)
        .optional()
}

/// Sent, or given up: gone (deleting one already gone is a no-op).
pub fn delete(conn: &mut DbConn, id: &str) -> QueryResult<()> {
    diesel::delete(pending_mail::table.find(id))
        .execute(conn)
        .map(|_| ())
}

/// Claims the row for one sender until `until`, provided no other sender claimed it since it was seen with
/// `seen` as its next attempt (false otherwise, or if it is gone): the send made at once after an act and a
/// notification round on another instance never both send one row.
pub fn claim(conn: &mut DbConn, id: &str, seen: i64, until: i64) -> QueryResult<bool> {
    diesel::update(
        pending_mail::table
            .find(id)
            .filter(pending_mail::next_attempt_at.eq(seen)),
    )
    .set(pending_mail::next_attempt_at.eq(until))
    .execute(conn)
    .map(|n| n == 1)
}

/// Not sent this time: tried again at `next_attempt_at`.
pub fn retry_at(
    conn: &mut DbConn,
    id: &str,
    attempts: i64,
    next_attempt_at: i64,
) -> QueryResult<()> {
    diesel::update(pending_mail::table.find(id))
        .set((
            pending_mail::attempts.eq(attempts),
            pending_mail::next_attempt_at.eq(next_attempt_at),
        ))
        .execute(conn)
        .map(|_| ())
}

/// The queue at a glance (the operator's view).
pub fn summary(conn: &mut DbConn) -> QueryResult<super::QueueSummary> {
    use diesel::dsl::{count_star, max, min};
    let (count, oldest_at, most): (i64, Option<i64>, Option<i64>) = pending_mail::table
        .select((
            count_star(),
            min(pending_mail::created_at),
            max(pending_mail::attempts),
        ))
        .first(conn)?;
    Ok(super::QueueSummary {
        count,
        oldest_at,
        most_attempts: most.unwrap_or(0),
    })
}

/// How many are waiting (the operator's view, and the tests').
pub fn count(conn: &mut DbConn) -> QueryResult<i64> {
    pending_mail::table.count().get_result(conn)
}
