//! What the portal's own mail is about (`workflow::notifications`): the people each kind is due to now, and the
//! record of what was sent (`notifications_sent`), so that each is sent once.

use diesel::prelude::*;

use crate::db::schema::{access_requests, grants, notifications_sent, submissions, users};
use crate::db::DbConn;
use crate::domain::Role;

/// A person a notification is due to: who, and what it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Recipient {
    pub user_id: String,
    pub email: String,
    pub name: String,
    /// The subject's key in `notifications_sent` (what it is about and the date it counts from).
    pub subject: String,
    /// The date the mail names (a deadline, an expiry), Unix seconds.
    pub due_at: i64,
    /// The page the mail links to.
    pub path: String,
    /// The kinds this person turned off.
    pub off: String,
}

type Person = (String, String, String, String);

fn person_columns() -> (
    users::id,
    users::email,
    users::display_name,
    users::notifications_off,
) {
    (
        users::id,
        users::email,
        users::display_name,
        users::notifications_off,
    )
}

/// The members of an organisation who may be mailed about its submissions: submitters, active, address confirmed.
fn members(conn: &mut DbConn, organisation_id: &str) -> QueryResult<Vec<Person>> {
    users::table
        .filter(users::organisation_id.eq(organisation_id))
        .filter(users::role.eq(Role::Submitter))
        .filter(users::disabled.eq(false))
        .filter(users::email_verified_at.is_not_null())
        .select(person_columns())
        .load(conn)
}

/// How many of an organisation's members can be mailed (enabled, address confirmed), how many were sent `kind`
/// about `subject`, and when it first went.
pub fn reach(
    conn: &mut DbConn,
    organisation_id: &str,
    kind: &str,
    subject: &str,
) -> QueryResult<(i64, i64, Option<i64>)> {
    let mailable = members(conn, organisation_id)?.len() as i64;
    let (sent, first): (i64, Option<i64>) = notifications_sent::table
        .filter(notifications_sent::kind.eq(kind))
        .filter(notifications_sent::subject.eq(subject))
        .select((
            diesel::dsl::count_star(),
            diesel::dsl::min(notifications_sent::sent_at),
        ))
        .first(conn)?;
    Ok((mailable, sent, first))
}

/// The key a disposition reminder is recorded under: the submission and the deadline it names.
pub fn disposition_subject(submission_id: &str, due_at: i64) -> String {
    format!("{submission_id}@{due_at}")
}

fn recipient(p: Person, subject: String, due_at: i64, path: String) -> Recipient {
    Recipient {
        user_id: p.0,
        email: p.1,
        name: p.2,
        off: p.3,
        subject,
        due_at,
        path,
    }
}

/// Members of each defective submission's organisation, for its defect notice (subject: the submission and the
/// notice's time) — while the cure deadline has not passed.
pub fn defect_notices(conn: &mut DbConn, now: i64) -> QueryResult<Vec<Recipient>> {
    defective(conn, now, i64::MAX, |sid, notice_at, _| {
        format!("{sid}@{notice_at}")
    })
}

/// Members of each defective submission's organisation whose cure deadline is within `within` seconds and has not
/// passed (subject: the submission and its deadline).
pub fn cure_deadlines(conn: &mut DbConn, now: i64, within: i64) -> QueryResult<Vec<Recipient>> {
    defective(conn, now, within, |sid, _, due| format!("{sid}@{due}"))
}

fn defective(
    conn: &mut DbConn,
    now: i64,
    within: i64,
    subject: impl Fn(&str, i64, i64) -> String,
) -> QueryResult<Vec<Recipient>> {
    let rows: Vec<(String, String, Option<i64>, Option<i64>)> = submissions::table
        .filter(submissions::status.eq(crate::domain::Status::Defective))
        .filter(submissions::cure_due_at.gt(now))
        .filter(submissions::cure_due_at.le(now.saturating_add(within)))
        .select((
            submissions::id,
            submissions::organisation_id,
            submissions::defect_notice_at,
            submissions::cure_due_at,
        ))
        .load(conn)?;
    let mut out = Vec::new();
    for (sid, org, notice_at, due) in rows {
        let (Some(notice_at), Some(due)) = (notice_at, due) else {
            continue;
        };
        for p in members(conn, &org)? {
            out.push(recipient(
                p,
                subject(&sid, notice_at, due),
                due,
                // The list, not the submission: a mail names nothing of it, not even its id.
                "/submissions".into(),
            ));
        }
    }
    Ok(out)
}

/// Members of each organisation whose answer on a submission (return or destruction, or taking the return package it
/// chose) is due within `within` seconds and has not passed (subject: the submission and its deadline, so a return
/// chosen, which sets a new deadline, is reminded of again).
pub fn disposition_deadlines(
    conn: &mut DbConn,
    now: i64,
    within: i64,
) -> QueryResult<Vec<Recipient>> {
    let rows: Vec<(String, String, Option<i64>)> =
        crate::models::submission::awaiting_answer_due(now.saturating_add(within))
            .filter(submissions::disposition_due_at.gt(now))
            .select((
                submissions::id,
                submissions::organisation_id,
                submissions::disposition_due_at,
            ))
            .load(conn)?;
    let mut out = Vec::new();
    for (sid, org, due) in rows {
        let Some(due) = due else { continue };
        for p in members(conn, &org)? {
            out.push(recipient(
                p,
                disposition_subject(&sid, due),
                due,
                "/submissions".into(),
            ));
        }
    }
    Ok(out)
}

/// Holders of live grants on validated PCII that end within `within` seconds (subject: the grant). A grant on a
/// submission that is no longer validated gives no access, so there is nothing to renew.
pub fn grants_ending(conn: &mut DbConn, now: i64, within: i64) -> QueryResult<Vec<Recipient>> {
    let rows: Vec<(String, i64, Person)> = grants::table
        .inner_join(users::table.on(users::id.eq(grants::user_id)))
        .inner_join(submissions::table.on(submissions::id.eq(grants::submission_id)))
        .filter(submissions::status.eq(crate::domain::Status::Validated))
        .filter(grants::revoked_at.is_null())
        .filter(grants::expires_at.gt(now))
        .filter(grants::expires_at.le(now.saturating_add(within)))
        .filter(users::disabled.eq(false))
        .select((grants::id, grants::expires_at, person_columns()))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(gid, end, p)| recipient(p, gid, end, "/analyst".into()))
        .collect())
}

/// Authorized users whose training (valid `valid_for` seconds from its date) lapses within `within` seconds.
pub fn training_ending(
    conn: &mut DbConn,
    now: i64,
    valid_for: i64,
    within: i64,
) -> QueryResult<Vec<Recipient>> {
    let rows: Vec<(Option<i64>, Person)> = users::table
        .filter(users::role.eq(Role::AuthorizedUser))
        .filter(users::disabled.eq(false))
        .filter(users::training_completed_at.gt(now - valid_for))
        .filter(users::training_completed_at.le(now - valid_for + within))
        .select((users::training_completed_at, person_columns()))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .filter_map(|(at, p)| {
            let at = at?;
            let subject = format!("{}@{at}", p.0);
            Some(recipient(p, subject, at + valid_for, "/analyst".into()))
        })
        .collect())
}

/// Authorized users whose non-disclosure agreement expires within `within` seconds.
pub fn nda_ending(conn: &mut DbConn, now: i64, within: i64) -> QueryResult<Vec<Recipient>> {
    let rows: Vec<(Option<i64>, Person)> = users::table
        .filter(users::role.eq(Role::AuthorizedUser))
        .filter(users::disabled.eq(false))
        .filter(users::nda_expires_at.gt(now))
        .filter(users::nda_expires_at.le(now.saturating_add(within)))
        .select((users::nda_expires_at, person_columns()))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .filter_map(|(end, p)| {
            let end = end?;
            let subject = format!("{}@{end}", p.0);
            Some(recipient(p, subject, end, "/analyst".into()))
        })
        .collect())
}

/// Every active officer, for each pending access request (subject: the request).
pub fn access_requests_pending(conn: &mut DbConn) -> QueryResult<Vec<Recipient>> {
    let pending: Vec<(String, i64)> = access_requests::table
        .filter(access_requests::state.eq("pending"))
        .select((access_requests::id, access_requests::created_at))
        .load(conn)?;
    if pending.is_empty() {
        return Ok(Vec::new());
    }
    let officers: Vec<Person> = users::table
        .filter(users::role.eq(Role::Officer))
        .filter(users::disabled.eq(false))
        .select(person_columns())
        .load(conn)?;
    Ok(pending
        .iter()
        .flat_map(|(rid, at)| {
            officers.iter().map(move |p| {
                recipient(
                    p.clone(),
                    rid.clone(),
                    *at,
                    "/officer/access-requests".into(),
                )
            })
        })
        .collect())
}

/// Whether `kind` about `subject` was sent to `user_id` already.
pub fn was_sent(conn: &mut DbConn, kind: &str, subject: &str, user_id: &str) -> QueryResult<bool> {
    diesel::select(diesel::dsl::exists(
        notifications_sent::table
            .filter(notifications_sent::kind.eq(kind))
            .filter(notifications_sent::subject.eq(subject))
            .filter(notifications_sent::user_id.eq(user_id)),
    ))
    .get_result(conn)
}

/// Of `subjects`, which (subject, user id) pairs were sent `kind` already: one query per 500 subjects, where asking
/// [`was_sent`] of every candidate was a query per subject and person (each pending access request times each
/// officer, every round).
pub fn sent_among(
    conn: &mut DbConn,
    kind: &str,
    subjects: &[&str],
) -> QueryResult<std::collections::HashSet<(String, String)>> {
    let mut sent = std::collections::HashSet::new();
    for chunk in subjects.chunks(500) {
        let rows: Vec<(String, String)> = notifications_sent::table
            .filter(notifications_sent::kind.eq(kind))
            .filter(notifications_sent::subject.eq_any(chunk))
            .select((notifications_sent::subject, notifications_sent::user_id))
            .load(conn)?;
        sent.extend(rows);
    }
    Ok(sent)
}

/// Records that `kind` about `subject` went to `user_id` (a second record of the same is a no-op).
pub fn record_sent(
    conn: &mut DbConn,
    kind: &str,
    subject: &str,
    user_id: &str,
    now: i64,
) -> QueryResult<()> {
    if was_sent(conn, kind, subject, user_id)? {
        return Ok(());
    }
    diesel::insert_into(notifications_sent::table)
        .values((
            notifications_sent::kind.eq(kind),
            notifications_sent::subject.eq(subject),
            notifications_sent::user_id.eq(user_id),
            notifications_sent::sent_at.eq(now),
        ))
        .execute(conn)
        .map(|_| ())
}

/// The kinds `user_id` turned off (comma-separated).
pub fn turned_off(conn: &mut DbConn, user_id: &str) -> QueryResult<String> {
    users::table
        .find(user_id)
        .select(users::notifications_off)
        .first(conn)
}

pub fn set_turned_off(conn: &mut DbConn, user_id: &str, off: &str) -> QueryResult<usize> {
    diesel::update(users::table.find(user_id))
        .set(users::notifications_off.eq(off))
        .execute(conn)
}
