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
