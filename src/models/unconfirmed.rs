//! Self-registrations never confirmed (`users` with `email_verified_at` NULL, and the organisation made with each):
//! finding them, telling what else refers to one, and deleting one with everything that is only its own. The rules —
//! which of them go, and when — are in `auth::unconfirmed`.

use diesel::dsl::exists;
use diesel::prelude::*;

use crate::db::schema::{
    access_requests, account_tokens, case_notes, destruction_records, disseminations, grants,
    invitations, merge_proposals, message_reads, messages, notices, notifications_sent,
    organisations, passkeys, pending_mail, privilege_requests, recovery_codes, sessions,
    submission_events, submissions, totp_enrolments, totp_factors, users,
};
use crate::db::{DbConn, MultiBackend};
use crate::domain::Role;

/// An unconfirmed registration: the account and the organisation made with it.
#[derive(Debug, Clone, PartialEq, Eq, Queryable)]
pub struct Registration {
    pub account_id: String,
    pub organisation_id: String,
    pub created_at: i64,
}

/// The columns of a [`Registration`]; the organisation id is not NULL in the join's rows.
type Columns = (
    users::id,
    diesel::dsl::AssumeNotNull<users::organisation_id>,
    users::created_at,
);

fn columns() -> Columns {
    (
        users::id,
        users::organisation_id.assume_not_null(),
        users::created_at,
    )
}

/// The conditions of [`candidates`], on a row of users joined with their organisations.
fn unconfirmed_registration(
    created_before: i64,
) -> Box<
    dyn BoxableExpression<
        diesel::dsl::InnerJoinQuerySource<users::table, organisations::table>,
        MultiBackend,
        SqlType = diesel::sql_types::Bool,
    >,
> {
    Box::new(
        users::role
            .eq(Role::Submitter)
            .and(users::email_verified_at.is_null())
            .and(users::disabled.eq(false))
            .and(users::created_at.lt(created_before))
            .and(organisations::created_at.eq(users::created_at))
            .and(organisations::verified_at.is_null())
            .and(organisations::merged_into.is_null()),
    )
}

/// Accounts that look like untouched self-registrations made before `created_before`: a submitter, enabled, its
/// address never confirmed (registration is the only way an account is made without a confirmed address), and its
/// organisation made in the same instant (registration makes both in one transaction), neither verified nor merged.
/// Ordered by (created_at, id), at most `limit` after the key `after`, so that a caller pages through them once
/// even when it leaves some in place.
pub fn candidates(
    conn: &mut DbConn,
    created_before: i64,
    after: Option<(i64, &str)>,
    limit: i64,
) -> QueryResult<Vec<Registration>> {
    let mut q = users::table
        .inner_join(organisations::table)
        .filter(unconfirmed_registration(created_before))
        .order((users::created_at.asc(), users::id.asc()))
        .select(columns())
        .limit(limit)
        .into_boxed();
    if let Some((at, id)) = after {
        q = q.filter(
            users::created_at
                .gt(at)
                .or(users::created_at.eq(at).and(users::id.gt(id.to_string()))),
        );
    }
    q.load(conn)
}

/// The same registration, if it still is one by the conditions of [`candidates`] (for the re-check inside the
/// purge's transaction).
pub fn candidate(
    conn: &mut DbConn,
    account_id: &str,
    created_before: i64,
) -> QueryResult<Option<Registration>> {
    users::table
        .inner_join(organisations::table)
        .filter(users::id.eq(account_id))
        .filter(unconfirmed_registration(created_before))
        .select(columns())
        .first(conn)
        .optional()
}

/// What refers to the registration besides the account's own sign-in state, if anything: another account in the
/// organisation (a colleague, or an officer recorded against it), a submission or draft, an invitation, a notice, an
/// organisation merged into it, a merge proposal naming it, or anything the account did or received that another table keeps. `None`: nothing.
pub fn referenced_by(conn: &mut DbConn, r: &Registration) -> QueryResult<Option<&'static str>> {
    let (uid, org) = (r.account_id.as_str(), r.organisation_id.as_str());
    macro_rules! unless_any {
        ($what:expr, $rows:expr) => {
            if diesel::select(exists($rows)).get_result::<bool>(conn)? {
                return Ok(Some($what));
            }
        };
    }
    unless_any!(
        "another account of the organisation",
        users::table
            .filter(users::organisation_id.eq(org))
            .filter(users::id.ne(uid))
    );
    unless_any!(
        "a submission",
        submissions::table.filter(
            submissions::organisation_id
                .eq(org)
                .or(submissions::submitter_id.eq(uid))
                .or(submissions::decided_by.eq(uid))
                .or(submissions::assigned_to.eq(uid))
        )
    );
    unless_any!(
        "an invitation",
        invitations::table.filter(
            invitations::organisation_id
                .eq(org)
                .or(invitations::invited_by.eq(uid))
                .or(invitations::approved_by.eq(uid))
                .or(invitations::decided_by.eq(uid))
                .or(invitations::account_id.eq(uid))
        )
    );
    unless_any!(
        "a notice",
        notices::table.filter(notices::organisation_id.eq(org))
    );
    unless_any!(
        "an organisation merged into it, or verified by the account",
        organisations::table.filter(
            organisations::merged_into
                .eq(org)
                .or(organisations::verified_by.eq(uid))
        )
    );
    unless_any!(
        "a merge proposal",
        merge_proposals::table.filter(
            merge_proposals::duplicate_id
                .eq(org)
                .or(merge_proposals::target_id.eq(org))
                .or(merge_proposals::duplicate_accepted_by.eq(uid))
                .or(merge_proposals::target_accepted_by.eq(uid))
                .or(merge_proposals::closed_by.eq(uid))
        )
    );
    unless_any!(
        "a privilege request",
        privilege_requests::table.filter(
            privilege_requests::account_id
                .eq(uid)
                .or(privilege_requests::requested_by.eq(uid))
                .or(privilege_requests::decided_by.eq(uid))
        )
    );
    unless_any!(
        "a submission's history",
        submission_events::table.filter(submission_events::actor_id.eq(uid))
    );
    unless_any!(
        "a grant",
        grants::table.filter(
            grants::user_id
                .eq(uid)
                .or(grants::granted_by.eq(uid))
                .or(grants::revoked_by.eq(uid))
        )
    );
    unless_any!(
        "a dissemination record",
        disseminations::table.filter(disseminations::recorded_by.eq(uid))
    );
    unless_any!(
        "a destruction record",
        destruction_records::table.filter(destruction_records::destroyed_by.eq(uid))
    );
    unless_any!(
        "an access request",
        access_requests::table.filter(
            access_requests::user_id
                .eq(uid)
                .or(access_requests::decided_by.eq(uid))
        )
    );
    unless_any!(
        "a case note",
        case_notes::table.filter(case_notes::author_id.eq(uid))
    );
    unless_any!(
        "a message",
        messages::table.filter(messages::author_id.eq(uid))
    );
    unless_any!(
        "a message read",
        message_reads::table.filter(message_reads::user_id.eq(uid))
    );
    unless_any!(
        "mail sent about something",
        notifications_sent::table.filter(notifications_sent::user_id.eq(uid))
    );
    unless_any!(
        "mail queued about something",
        pending_mail::table.filter(pending_mail::user_id.eq(uid))
    );
    Ok(None)
}

/// Deletes the account with its own sign-in state (sessions, mailed links, second factors) and then the
/// organisation made with it. Run it inside a transaction, after [`referenced_by`] found nothing.
pub fn delete(conn: &mut DbConn, r: &Registration) -> QueryResult<()> {
    let uid = r.account_id.as_str();
    diesel::delete(sessions::table.filter(sessions::user_id.eq(uid))).execute(conn)?;
    diesel::delete(account_tokens::table.filter(account_tokens::user_id.eq(uid))).execute(conn)?;
    diesel::delete(totp_enrolments::table.filter(totp_enrolments::user_id.eq(uid)))
        .execute(conn)?;
    diesel::delete(totp_factors::table.filter(totp_factors::user_id.eq(uid))).execute(conn)?;
    diesel::delete(recovery_codes::table.filter(recovery_codes::user_id.eq(uid))).execute(conn)?;
    diesel::delete(passkeys::table.filter(passkeys::user_id.eq(uid))).execute(conn)?;
    diesel::delete(users::table.find(uid)).execute(conn)?;
    diesel::delete(organisations::table.find(&r.organisation_id)).execute(conn)?;
    Ok(())
}
