//! Submission rows as lists show them: only what stays in clear (status, sector, dates, counts).

use diesel::prelude::*;
use serde::Serialize;

use crate::db::schema::{grants, submissions};
use crate::db::DbConn;

pub const PER_PAGE: i64 = 50;

#[derive(Debug, Clone, Queryable, Selectable, Serialize)]
#[diesel(table_name = submissions)]
pub struct SubmissionListRow {
    pub id: String,
    pub tracking_number: Option<String>,
    pub status: String,
    pub sector: String,
    pub file_count: i32,
    pub total_bytes: i64,
    pub created_at: i64,
    pub received_at: Option<i64>,
}

/// One organisation's submissions, newest first: the only submissions a submitter's list ever reads.
pub fn for_organisation(
    conn: &mut DbConn,
    organisation_id: &str,
    page: i64,
) -> QueryResult<(Vec<SubmissionListRow>, i64)> {
    let total = submissions::table
        .filter(submissions::organisation_id.eq(organisation_id))
        .count()
        .get_result(conn)?;
    let rows = submissions::table
        .filter(submissions::organisation_id.eq(organisation_id))
        .order((submissions::created_at.desc(), submissions::id.asc()))
        .limit(PER_PAGE)
        .offset(page.max(0) * PER_PAGE)
        .select(SubmissionListRow::as_select())
        .load(conn)?;
    Ok((rows, total))
}

#[derive(Debug, Clone, Serialize)]
pub struct GrantRow {
    pub submission_id: String,
    pub tracking_number: Option<String>,
    pub expires_at: i64,
    pub created_at: i64,
}

/// An authorized user's live grants (not revoked, not expired).
pub fn live_grants(conn: &mut DbConn, user_id: &str, now: i64) -> QueryResult<Vec<GrantRow>> {
    let rows: Vec<(String, Option<String>, i64, i64)> = grants::table
        .inner_join(submissions::table)
        .filter(grants::user_id.eq(user_id))
        .filter(grants::revoked_at.is_null())
        .filter(grants::expires_at.gt(now))
        .order(grants::expires_at.asc())
        .select((
            grants::submission_id,
            submissions::tracking_number,
            grants::expires_at,
            grants::created_at,
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(
            |(submission_id, tracking_number, expires_at, created_at)| GrantRow {
                submission_id,
                tracking_number,
                expires_at,
                created_at,
            },
        )
        .collect())
}

/// A whole submission row (clear metadata only; the content is in the blob `content_blob_id` points to).
#[derive(Debug, Clone, Queryable, Selectable, Serialize)]
#[diesel(table_name = submissions)]
pub struct Submission {
    pub id: String,
    pub tracking_number: Option<String>,
    pub organisation_id: String,
    pub submitter_id: String,
    pub status: String,
    pub sector: String,
    pub content_blob_id: Option<String>,
    pub statement_version: Option<String>,
    pub statement_affirmed_at: Option<i64>,
    pub certified_at: Option<i64>,
    pub file_count: i32,
    pub total_bytes: i64,
    pub created_at: i64,
    pub updated_at: i64,
    pub received_at: Option<i64>,
    pub defect_notice_at: Option<i64>,
    pub cure_due_at: Option<i64>,
    pub decided_at: Option<i64>,
    pub decided_by: Option<String>,
    pub disposition: Option<String>,
    pub closed_at: Option<i64>,
}

impl Submission {
    pub fn status(&self) -> crate::domain::Status {
        crate::domain::Status::parse(&self.status).unwrap_or(crate::domain::Status::Destroyed)
    }
}

/// Whose view a query serves. Every read of a submission goes through a scope, so a submitter's query cannot
/// return another organisation's row: it answers "not found", exactly like an id that does not exist.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    /// A submitter: its own organisation's submissions only.
    Organisation(&'a str),
    /// A PCII officer: every submission that left the draft stage (drafts are the submitter's alone).
    ProgramOffice,
}

pub fn find(conn: &mut DbConn, id: &str, scope: Scope<'_>) -> QueryResult<Submission> {
    let query = submissions::table
        .filter(submissions::id.eq(id))
        .select(Submission::as_select())
        .into_boxed();
    let query = match scope {
        Scope::Organisation(org) => query.filter(submissions::organisation_id.eq(org.to_string())),
        Scope::ProgramOffice => query.filter(submissions::status.ne("draft")),
    };
    query.first(conn)
}

/// The same scoped lookup by tracking number.
pub fn find_by_tracking(
    conn: &mut DbConn,
    tracking_number: &str,
    scope: Scope<'_>,
) -> QueryResult<Submission> {
    let id: String = submissions::table
        .filter(submissions::tracking_number.eq(tracking_number))
        .select(submissions::id)
        .first(conn)?;
    find(conn, &id, scope)
}

#[derive(Debug, Clone, Queryable, Selectable, Serialize)]
#[diesel(table_name = crate::db::schema::attachments)]
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
    use crate::db::schema::attachments;
    attachments::table
        .filter(attachments::submission_id.eq(submission_id))
        .order((attachments::position.asc(), attachments::id.asc()))
        .select(Attachment::as_select())
        .load(conn)
}

#[derive(Debug, Clone, Queryable, Serialize)]
pub struct EventRow {
    pub at: i64,
    pub actor_name: Option<String>,
    pub actor_role: Option<String>,
    pub from_status: Option<String>,
    pub to_status: String,
    pub reason: Option<String>,
}

/// The lifecycle history of one submission, oldest first.
pub fn events_of(conn: &mut DbConn, submission_id: &str) -> QueryResult<Vec<EventRow>> {
    use crate::db::schema::{submission_events as e, users};
    e::table
        .left_join(users::table.on(users::id.nullable().eq(e::actor_id)))
        .filter(e::submission_id.eq(submission_id))
        .order((e::at.asc(), e::id.asc()))
        .select((
            e::at,
            users::display_name.nullable(),
            users::role.nullable(),
            e::from_status,
            e::to_status,
            e::reason,
        ))
        .load(conn)
}

#[derive(Debug, Clone, Queryable, Serialize)]
pub struct NoticeRow {
    pub id: String,
    pub submission_id: String,
    pub tracking_number: Option<String>,
    pub created_at: i64,
    pub message: String,
    pub read_at: Option<i64>,
}

/// Notices to an organisation, newest first (optionally for one submission).
pub fn notices_for(
    conn: &mut DbConn,
    organisation_id: &str,
    submission_id: Option<&str>,
    limit: i64,
) -> QueryResult<Vec<NoticeRow>> {
    use crate::db::schema::notices as n;
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
        ))
        .load(conn)
}

/// How many of an organisation's notices nobody in it has opened yet.
pub fn unread_notices(conn: &mut DbConn, organisation_id: &str) -> QueryResult<i64> {
    use crate::db::schema::notices as n;
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
    use crate::db::schema::notices as n;
    diesel::update(
        n::table
            .filter(n::organisation_id.eq(organisation_id))
            .filter(n::submission_id.eq(submission_id))
            .filter(n::read_at.is_null()),
    )
    .set(n::read_at.eq(now))
    .execute(conn)
}

#[derive(Debug, Clone, Queryable, Serialize)]
pub struct DestructionRow {
    pub destroyed_at: i64,
    pub destroyed_by_name: Option<String>,
    pub reason: String,
    pub digests: String,
}

pub fn destruction_of(
    conn: &mut DbConn,
    submission_id: &str,
) -> QueryResult<Option<DestructionRow>> {
    use crate::db::schema::{destruction_records as d, users};
    d::table
        .left_join(users::table.on(users::id.nullable().eq(d::destroyed_by)))
        .filter(d::submission_id.eq(submission_id))
        .select((
            d::destroyed_at,
            users::display_name.nullable(),
            d::reason,
            d::digests,
        ))
        .first(conn)
        .optional()
}
