//! Authorized users' requests for need-to-know access to one validated submission, and an officer's decision on
//! each. The analyst's reason and the officer's refusal reason are stored sealed (`workflow::sealed_text`).

use diesel::backend::Backend;
use diesel::deserialize::{self, FromSql, FromSqlRow};
use diesel::expression::AsExpression;
use diesel::prelude::*;
use diesel::serialize::{self, Output, ToSql};
use diesel::sql_types::Text;
use serde::Serialize;

use crate::db::schema::{access_requests, organisations, submissions, users};
use crate::db::DbConn;
use crate::domain::Status;

/// Where a request stands: waiting for an officer, or decided.
#[derive(Debug, Clone, Copy, PartialEq, Eq, AsExpression, FromSqlRow, Serialize)]
#[serde(rename_all = "snake_case")]
#[diesel(sql_type = Text)]
pub enum RequestState {
    Pending,
    Granted,
    Refused,
}

impl RequestState {
    pub fn as_str(self) -> &'static str {
        match self {
            RequestState::Pending => "pending",
            RequestState::Granted => "granted",
            RequestState::Refused => "refused",
        }
    }

    pub fn parse(s: &str) -> Option<RequestState> {
        [
            RequestState::Pending,
            RequestState::Granted,
            RequestState::Refused,
        ]
        .into_iter()
        .find(|st| st.as_str() == s)
    }

    pub fn label(self) -> &'static str {
        match self {
            RequestState::Pending => "Pending — waiting for a PCII officer",
            RequestState::Granted => "Granted",
            RequestState::Refused => "Refused",
        }
    }
}

impl<DB: Backend> ToSql<Text, DB> for RequestState
where
    str: ToSql<Text, DB>,
{
    fn to_sql<'b>(&'b self, out: &mut Output<'b, '_, DB>) -> serialize::Result {
        self.as_str().to_sql(out)
    }
}

impl<DB: Backend> FromSql<Text, DB> for RequestState
where
    String: FromSql<Text, DB>,
{
    fn from_sql(bytes: DB::RawValue<'_>) -> deserialize::Result<Self> {
        let s = String::from_sql(bytes)?;
        RequestState::parse(&s).ok_or_else(|| format!("unknown request state `{s}`").into())
    }
}

#[derive(Insertable)]
#[diesel(table_name = access_requests, treat_none_as_default_value = false)]
pub struct NewAccessRequest<'a> {
    pub id: &'a str,
    pub submission_id: &'a str,
    pub user_id: &'a str,
    /// Sealed.
    pub reason: &'a str,
    pub state: RequestState,
    pub created_at: i64,
}

pub fn insert(conn: &mut DbConn, new: &NewAccessRequest<'_>) -> QueryResult<()> {
    diesel::insert_into(access_requests::table)
        .values(new)
        .execute(conn)
        .map(|_| ())
}

/// A submission an authorized user may ask for, by its tracking number: validated PCII only. Anything else —
/// no such number, a submission pending or not validated — is `None`, alike.
pub fn requestable_by_tracking(
    conn: &mut DbConn,
    tracking_number: &str,
) -> QueryResult<Option<(String, String)>> {
    submissions::table
        .filter(submissions::tracking_number.eq(tracking_number))
        .filter(submissions::status.eq(Status::Validated))
        .select((
            submissions::id,
            submissions::tracking_number.assume_not_null(),
        ))
        .first(conn)
        .optional()
}

/// Whether `user_id` has a request for `submission_id` that no officer decided yet.
pub fn has_pending(conn: &mut DbConn, user_id: &str, submission_id: &str) -> QueryResult<bool> {
    let n: i64 = access_requests::table
        .filter(access_requests::user_id.eq(user_id))
        .filter(access_requests::submission_id.eq(submission_id))
        .filter(access_requests::state.eq(RequestState::Pending))
        .count()
        .get_result(conn)?;
    Ok(n > 0)
}

/// How many of `user_id`'s requests no officer decided yet.
pub fn pending_count_of(conn: &mut DbConn, user_id: &str) -> QueryResult<i64> {
    access_requests::table
        .filter(access_requests::user_id.eq(user_id))
        .filter(access_requests::state.eq(RequestState::Pending))
        .count()
        .get_result(conn)
}

/// One of an analyst's own requests, as its home lists them (no reasons: they are sealed to a submission the
/// analyst may not read yet).
#[derive(Debug, Clone, Serialize, Queryable)]
pub struct OwnRequest {
    pub id: String,
    pub tracking_number: Option<String>,
    pub state: RequestState,
    pub created_at: i64,
    pub decided_at: Option<i64>,
}

/// The analyst's requests, newest first (the last `limit`).
pub fn of_user(
    conn: &mut DbConn,
    user_id: &str,
    limit: i64,
) -> QueryResult<crate::models::Capped<OwnRequest>> {
    let total = access_requests::table
        .inner_join(submissions::table)
        .filter(access_requests::user_id.eq(user_id))
        .count()
        .get_result(conn)?;
    let rows = access_requests::table
        .inner_join(submissions::table)
        .filter(access_requests::user_id.eq(user_id))
        .order((
            access_requests::created_at.desc(),
            access_requests::id.asc(),
        ))
        .limit(limit)
        .select((
            access_requests::id,
            submissions::tracking_number,
            access_requests::state,
            access_requests::created_at,
            access_requests::decided_at,
        ))
        .load(conn)?;
    Ok(crate::models::Capped { rows, total })
}

/// A pending request as the officers' page lists it: who asked (name, address, agency or organisation), for
/// which submission, why (sealed until the page opens it) and when.
#[derive(Debug, Clone, Serialize, Queryable)]
pub struct PendingView {
    pub id: String,
    pub submission_id: String,
    pub tracking_number: Option<String>,
    /// The submitting organisation: an officer of it does not decide.
    pub submission_organisation_id: String,
    pub user_id: String,
    pub user_name: String,
    pub user_email: String,
    pub user_agency: Option<String>,
    pub user_organisation: Option<String>,
    pub reason: String,
    pub created_at: i64,
    /// The analyst's training and NDA as on record: a grant made while they lapsed stands, but reading waits.
    pub training_completed_at: Option<i64>,
    pub nda_signed_at: Option<i64>,
    pub nda_expires_at: Option<i64>,
}

/// Pending requests, oldest first (the first `limit`).
pub fn pending(conn: &mut DbConn, limit: i64) -> QueryResult<Vec<PendingView>> {
    access_requests::table
        .inner_join(submissions::table)
        .inner_join(users::table.on(users::id.eq(access_requests::user_id)))
        .left_join(organisations::table.on(users::organisation_id.eq(organisations::id.nullable())))
        .filter(access_requests::state.eq(RequestState::Pending))
        .order((access_requests::created_at.asc(), access_requests::id.asc()))
        .limit(limit)
        .select((
            access_requests::id,
            access_requests::submission_id,
            submissions::tracking_number,
            submissions::organisation_id,
            access_requests::user_id,
            users::display_name,
            users::email,
            users::agency,
            organisations::name.nullable(),
            access_requests::reason,
            access_requests::created_at,
            users::training_completed_at,
            users::nda_signed_at,
            users::nda_expires_at,
        ))
        .load(conn)
}

pub fn pending_count(conn: &mut DbConn) -> QueryResult<i64> {
    access_requests::table
        .filter(access_requests::state.eq(RequestState::Pending))
        .count()
        .get_result(conn)
}

/// Who asked for what, and where the request stands.
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = access_requests)]
pub struct AccessRequest {
    pub id: String,
    pub submission_id: String,
    pub user_id: String,
    pub state: RequestState,
}

pub fn find(conn: &mut DbConn, id: &str) -> QueryResult<AccessRequest> {
    access_requests::table
        .find(id)
        .select(AccessRequest::as_select())
        .first(conn)
}

/// Marks a pending request granted (0 when it was no longer pending).
pub fn mark_granted(conn: &mut DbConn, id: &str, officer_id: &str, now: i64) -> QueryResult<usize> {
    diesel::update(
        access_requests::table
            .find(id)
            .filter(access_requests::state.eq(RequestState::Pending)),
    )
    .set((
        access_requests::state.eq(RequestState::Granted),
        access_requests::decided_at.eq(now),
        access_requests::decided_by.eq(officer_id),
    ))
    .execute(conn)
}

/// A pending request closed because it can no longer be granted.
#[derive(Debug, Clone)]
pub struct Closed {
    pub id: String,
    pub user_id: String,
    pub submission_id: String,
    pub tracking_number: Option<String>,
}

impl Closed {
    /// Its `access_request.refused` entry: closed for `why` (the system's words, no PCII).
    pub fn event(&self, why: &str) -> crate::audit::log::Event {
        crate::audit::log::Event::new(
            "access_request.refused",
            crate::audit::log::Outcome::Success,
        )
        .object("submission", self.submission_id.clone())
        .tracking(self.tracking_number.clone())
        .reason(format!(
            "request {} of account {}; closed: {why}",
            self.id, self.user_id
        ))
    }
}

/// Whose pending requests [`close_pending`] closes.
#[derive(Debug, Clone, Copy)]
pub enum PendingOf<'a> {
    /// For a submission that is no longer validated PCII.
    Submission(&'a str),
    /// Of an account that may no longer be granted access (disabled, or no longer an authorized user).
    User(&'a str),
}

/// Closes as refused, with no reason of an officer's, the pending requests `of` selects (`by`: who made the change
/// that closes them). What was closed.
pub fn close_pending(
    conn: &mut DbConn,
    of: PendingOf<'_>,
    by: Option<&str>,
    now: i64,
) -> QueryResult<Vec<Closed>> {
    let mut q = access_requests::table
        .inner_join(submissions::table)
        .filter(access_requests::state.eq(RequestState::Pending))
        .into_boxed();
    q = match of {
        PendingOf::Submission(id) => q.filter(access_requests::submission_id.eq(id.to_string())),
        PendingOf::User(id) => q.filter(access_requests::user_id.eq(id.to_string())),
    };
    let rows: Vec<(String, String, String, Option<String>)> = q
        .select((
            access_requests::id,
            access_requests::user_id,
            access_requests::submission_id,
            submissions::tracking_number,
        ))
        .load(conn)?;
    let ids: Vec<&String> = rows.iter().map(|r| &r.0).collect();
    if !ids.is_empty() {
        diesel::update(
            access_requests::table
                .filter(access_requests::id.eq_any(ids))
                .filter(access_requests::state.eq(RequestState::Pending)),
        )
        .set((
            access_requests::state.eq(RequestState::Refused),
            access_requests::decided_at.eq(now),
            access_requests::decided_by.eq(by),
        ))
        .execute(conn)?;
    }
    Ok(rows
        .into_iter()
        .map(|(id, user_id, submission_id, tracking_number)| Closed {
            id,
            user_id,
            submission_id,
            tracking_number,
        })
        .collect())
}

/// Marks a pending request refused with the officer's (sealed) reason (0 when it was no longer pending).
pub fn mark_refused(
    conn: &mut DbConn,
    id: &str,
    officer_id: &str,
    reason: &str,
    now: i64,
) -> QueryResult<usize> {
    diesel::update(
        access_requests::table
            .find(id)
            .filter(access_requests::state.eq(RequestState::Pending)),
    )
    .set((
        access_requests::state.eq(RequestState::Refused),
        access_requests::decided_at.eq(now),
        access_requests::decided_by.eq(officer_id),
        access_requests::refuse_reason.eq(reason),
    ))
    .execute(conn)
}
