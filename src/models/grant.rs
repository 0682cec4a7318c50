//! Need-to-know grants of validated PCII to authorized users, and the log of disseminations to state,
//! local, tribal and territorial entities (6 CFR 29.8).

use diesel::prelude::*;
use serde::Serialize;

use crate::db::schema::{disseminations, grants, submissions, users};
use crate::db::DbConn;

/// One of an authorized user's live grants. `reason` is the officer's need-to-know reason as stored (sealed: the
/// page opens it for the grantee only).
#[derive(Debug, Clone, Serialize, Queryable)]
pub struct GrantRow {
    pub id: String,
    pub submission_id: String,
    pub tracking_number: Option<String>,
    pub reason: String,
    pub expires_at: i64,
    pub created_at: i64,
}

/// An authorized user's live grants (not revoked, not expired), the soonest to expire first.
pub fn live_grants(conn: &mut DbConn, user_id: &str, now: i64) -> QueryResult<Vec<GrantRow>> {
    grants::table
        .inner_join(submissions::table)
        .filter(grants::user_id.eq(user_id))
        .filter(grants::revoked_at.is_null())
        .filter(grants::expires_at.gt(now))
        .order((grants::expires_at.asc(), grants::id.asc()))
        .select((
            grants::id,
            grants::submission_id,
            submissions::tracking_number,
            grants::reason,
            grants::expires_at,
            grants::created_at,
        ))
        .load(conn)
}

/// How long a grant runs and whether it was revoked.
#[derive(Debug, Clone, Copy, Queryable, Selectable)]
#[diesel(table_name = grants)]
pub struct GrantTerm {
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
}

/// Every grant one user ever received for one submission, live or not: the access check tells an expired
/// or revoked grant from none.
pub fn terms_held(
    conn: &mut DbConn,
    user_id: &str,
    submission_id: &str,
) -> QueryResult<Vec<GrantTerm>> {
    grants::table
        .filter(grants::user_id.eq(user_id))
        .filter(grants::submission_id.eq(submission_id))
        .select(GrantTerm::as_select())
        .load(conn)
}

/// The live grants (not revoked, not expired) one user holds for one submission: id and end.
pub fn live_held(
    conn: &mut DbConn,
    user_id: &str,
    submission_id: &str,
    now: i64,
) -> QueryResult<Vec<(String, i64)>> {
    grants::table
        .filter(grants::user_id.eq(user_id))
        .filter(grants::submission_id.eq(submission_id))
        .filter(grants::revoked_at.is_null())
        .filter(grants::expires_at.gt(now))
        .select((grants::id, grants::expires_at))
        .load(conn)
}

/// Who holds a grant and whether it was revoked.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = grants)]
pub struct GrantHolder {
    pub user_id: String,
    pub revoked_at: Option<i64>,
}

/// One grant on one submission (`Err(NotFound)` for a grant of another submission).
pub fn holder(conn: &mut DbConn, grant_id: &str, submission_id: &str) -> QueryResult<GrantHolder> {
    grants::table
        .filter(grants::id.eq(grant_id))
        .filter(grants::submission_id.eq(submission_id))
        .select(GrantHolder::as_select())
        .first(conn)
}

#[derive(Insertable)]
#[diesel(table_name = grants, treat_none_as_default_value = false)]
pub struct NewGrant<'a> {
    pub id: &'a str,
    pub submission_id: &'a str,
    pub user_id: &'a str,
    pub granted_by: &'a str,
    pub reason: &'a str,
    pub created_at: i64,
    pub expires_at: i64,
}

pub fn insert(conn: &mut DbConn, new: &NewGrant<'_>) -> QueryResult<()> {
    diesel::insert_into(grants::table)
        .values(new)
        .execute(conn)
        .map(|_| ())
}

/// Revokes a grant as of `now`.
pub fn revoke(
    conn: &mut DbConn,
    grant_id: &str,
    revoked_by: &str,
    reason: &str,
    now: i64,
) -> QueryResult<usize> {
    diesel::update(grants::table.find(grant_id))
        .set((
            grants::revoked_at.eq(now),
            grants::revoked_by.eq(revoked_by),
            grants::revoke_reason.eq(reason),
        ))
        .execute(conn)
}

/// Revokes every live grant of one account as of `now` (its account disabled, or no longer an authorized
/// user): the grants revoked.
pub fn revoke_all_live(
    conn: &mut DbConn,
    user_id: &str,
    revoked_by: Option<&str>,
    reason: &str,
    now: i64,
) -> QueryResult<Vec<GrantRow>> {
    let live = live_grants(conn, user_id, now)?;
    revoke_ids(
        conn,
        live.iter().map(|g| g.id.as_str()),
        revoked_by,
        reason,
        now,
    )?;
    Ok(live)
}

/// Revokes every live grant on one submission as of `now` (it is no longer validated PCII): the grantees'
/// account ids.
pub fn revoke_all_live_of_submission(
    conn: &mut DbConn,
    submission_id: &str,
    revoked_by: &str,
    reason: &str,
    now: i64,
) -> QueryResult<Vec<String>> {
    let live = grants::table
        .filter(grants::submission_id.eq(submission_id))
        .filter(grants::revoked_at.is_null())
        .filter(grants::expires_at.gt(now))
        .select((grants::id, grants::user_id))
        .order(grants::created_at.asc())
        .load::<(String, String)>(conn)?;
    let ids = live.iter().map(|(id, _)| id.as_str());
    revoke_ids(conn, ids, Some(revoked_by), reason, now)?;
    Ok(live.into_iter().map(|(_, user)| user).collect())
}

/// Revokes the grants with these ids as of `now`, with the same reason (nothing when there are none).
fn revoke_ids<'a>(
    conn: &mut DbConn,
    ids: impl ExactSizeIterator<Item = &'a str>,
    revoked_by: Option<&str>,
    reason: &str,
    now: i64,
) -> QueryResult<()> {
    if ids.len() > 0 {
        diesel::update(grants::table.filter(grants::id.eq_any(ids)))
            .set((
                grants::revoked_at.eq(now),
                grants::revoked_by.eq(revoked_by),
                grants::revoke_reason.eq(reason),
            ))
            .execute(conn)?;
    }
    Ok(())
}

/// One logged release; `removed` says what a sanitized release left out (`None` when not sanitized).
#[derive(Insertable)]
#[diesel(table_name = disseminations, treat_none_as_default_value = false)]
pub struct NewDisseminationRow<'a> {
    pub id: &'a str,
    pub submission_id: &'a str,
    pub recorded_by: &'a str,
    pub recipient: &'a str,
    pub recipient_kind: &'a str,
    pub arrangement: &'a str,
    pub what: &'a str,
    pub released_at: i64,
    pub sanitized: bool,
    pub removed: Option<&'a str>,
    pub created_at: i64,
    pub purpose: &'a str,
    pub consent: Option<&'a str>,
}

pub fn insert_dissemination(conn: &mut DbConn, new: &NewDisseminationRow<'_>) -> QueryResult<()> {
    diesel::insert_into(disseminations::table)
        .values(new)
        .execute(conn)
        .map(|_| ())
}

/// A grant as the officer's page lists it, with its holder.
#[derive(Debug, Serialize, Queryable)]
pub struct GrantView {
    pub id: String,
    pub user_name: String,
    pub user_email: String,
    pub reason: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub revoked_at: Option<i64>,
    pub revoke_reason: Option<String>,
}

/// A dissemination record with its submission's tracking number and who recorded it.
#[derive(Debug, Serialize, Queryable)]
pub struct DisseminationView {
    pub submission_id: String,
    pub tracking_number: Option<String>,
    pub recipient: String,
    pub recipient_kind: String,
    pub arrangement: String,
    pub what: String,
    pub released_at: i64,
    pub sanitized: bool,
    pub removed: Option<String>,
    pub recorded_by: String,
    /// `homeland_security` or `regulatory` (`workflow::decisions::PURPOSES`).
    pub purpose: String,
    /// For a regulatory purpose: where the written consents are on file.
    pub consent: Option<String>,
}

pub type DisseminationColumns = (
    disseminations::submission_id,
    submissions::tracking_number,
    disseminations::recipient,
    disseminations::recipient_kind,
    disseminations::arrangement,
    disseminations::what,
    disseminations::released_at,
    disseminations::sanitized,
    disseminations::removed,
    users::display_name,
    disseminations::purpose,
    disseminations::consent,
);

/// What a [`DisseminationView`] is read from (the release, its submission's tracking number, who recorded it).
pub fn dissemination_columns() -> DisseminationColumns {
    (
        disseminations::submission_id,
        submissions::tracking_number,
        disseminations::recipient,
        disseminations::recipient_kind,
        disseminations::arrangement,
        disseminations::what,
        disseminations::released_at,
        disseminations::sanitized,
        disseminations::removed,
        users::display_name,
        disseminations::purpose,
        disseminations::consent,
    )
}

/// Every grant of a submission, newest first, with its holder's name and address.
pub fn grants_of(conn: &mut DbConn, submission_id: &str) -> QueryResult<Vec<GrantView>> {
    grants::table
        .inner_join(users::table.on(users::id.eq(grants::user_id)))
        .filter(grants::submission_id.eq(submission_id))
        .order(grants::created_at.desc())
        .select((
            grants::id,
            users::display_name,
            users::email,
            grants::reason,
            grants::created_at,
            grants::expires_at,
            grants::revoked_at,
            grants::revoke_reason,
        ))
        .load(conn)
}

/// A submission's dissemination records, newest first.
pub fn disseminations_of(
    conn: &mut DbConn,
    submission_id: &str,
) -> QueryResult<Vec<DisseminationView>> {
    disseminations::table
        .inner_join(submissions::table)
        .inner_join(users::table.on(users::id.eq(disseminations::recorded_by)))
        .filter(disseminations::submission_id.eq(submission_id))
        .order(disseminations::released_at.desc())
        .select(dissemination_columns())
        .load(conn)
}
