//! Submission rows: the clear metadata (status, sector, dates, counts) and the tracking-number counter. What a
//! submission says is in the encrypted content blob; its files, history, notices, grants and destruction
//! record have their own modules.

use diesel::prelude::*;
use serde::Serialize;

use crate::db::schema::{submissions, tracking_counters};
use crate::db::DbConn;
use crate::domain::{Disposition, Status};

// Read queries that lived here before their tables got modules of their own; callers keep these paths.
pub use crate::models::attachment::{attachments_of, Attachment};
pub use crate::models::destruction::{destruction_of, DestructionRow};
pub use crate::models::event::{events_of, EventRow};
pub use crate::models::grant::{live_grants, GrantRow};
pub use crate::models::notice::{mark_notices_read, notices_for, unread_notices, NoticeRow};

pub const PER_PAGE: i64 = 50;

#[derive(Debug, Clone, Queryable, Selectable, Serialize)]
#[diesel(table_name = submissions)]
pub struct SubmissionListRow {
    pub id: String,
    pub tracking_number: Option<String>,
    pub status: Status,
    pub sector: String,
    /// A pending correction's sector (the organisation's list shows it, as it shows the correction's title).
    #[serde(skip)]
    pub saved_sector: Option<String>,
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

/// A whole submission row (clear metadata only; the content is in the blob `content_blob_id` points to).
#[derive(Debug, Clone, Queryable, Selectable, Serialize)]
#[diesel(table_name = submissions)]
pub struct Submission {
    pub id: String,
    pub tracking_number: Option<String>,
    pub organisation_id: String,
    pub submitter_id: String,
    /// Serialized as its snake_case text, the stored value.
    pub status: Status,
    /// The sector the Office holds: as received, or a draft's as saved (a correction's save leaves it, see
    /// `saved_sector`).
    pub sector: String,
    /// The sector of a correction saved and not sent (`None` when none is pending, see migration 26).
    #[serde(skip)]
    pub saved_sector: Option<String>,
    pub content_blob_id: Option<String>,
    /// The version the Office last received (the submission or its cure as sent); `None` for a draft, or one sent
    /// before this was kept whose version is not known (see migration 25).
    pub sent_content_blob_id: Option<String>,
    pub statement_version: Option<String>,
    pub statement_affirmed_at: Option<i64>,
    /// The account that affirmed them (`None` for submissions sent before this was kept).
    pub statement_affirmed_by: Option<String>,
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
    pub disposition: Option<Disposition>,
    /// Until when the organisation may choose return or destruction, or take its return package (not validated,
    /// withdrawn): past it, the Program Office may destroy the content.
    pub disposition_due_at: Option<i64>,
    pub closed_at: Option<i64>,
}

impl Submission {
    pub fn status(&self) -> Status {
        self.status
    }

    /// The sector as its organisation last saved it: a pending correction's, else the one the Office holds.
    pub fn saved_sector(&self) -> &str {
        self.saved_sector.as_deref().unwrap_or(&self.sector)
    }
}

/// Whose view a query serves. Every read of a submission goes through a scope, so a submitter's query cannot
/// return another organisation's row: it answers "not found", exactly like an id that does not exist.
#[derive(Debug, Clone, Copy)]
pub enum Scope<'a> {
    /// A submitter: its own organisation's submissions only.
    Organisation(&'a str),
    /// Every submission that left the draft stage (drafts are the submitter's alone): what a PCII officer may be
    /// shown, and what an authorized user's grant can name.
    Sent,
}

/// Submissions waiting on their organisation's answer — not validated with no choice made, or a return chosen (after
/// the decision or with a withdrawal) and its package not taken — whose deadline is `on_or_before` or earlier. The
/// SQL of `workflow::lifecycle::disposition_awaited`.
#[diesel::dsl::auto_type]
pub fn awaiting_answer_due(on_or_before: i64) -> _ {
    let not_validated: Status = Status::NotValidated;
    let open: [Status; 2] = [Status::NotValidated, Status::Withdrawn];
    let to_return: Disposition = Disposition::Return;
    submissions::table.filter(
        submissions::disposition_due_at.le(on_or_before).and(
            submissions::status
                .eq(not_validated)
                .and(submissions::disposition.is_null())
                .or(submissions::status
                    .eq_any(open)
                    .and(submissions::disposition.eq(to_return))),
        ),
    )
}

pub fn find(conn: &mut DbConn, id: &str, scope: Scope<'_>) -> QueryResult<Submission> {
    let query = submissions::table
        .filter(submissions::id.eq(id))
        .select(Submission::as_select())
        .into_boxed();
    let query = match scope {
        Scope::Organisation(org) => query.filter(submissions::organisation_id.eq(org.to_string())),
        Scope::Sent => query.filter(submissions::status.ne(Status::Draft)),
    };
    query.first(conn)
}

/// [`find`], with "not in scope" as `None`.
pub fn find_in_scope(
    conn: &mut DbConn,
    id: &str,
    scope: Scope<'_>,
) -> QueryResult<Option<Submission>> {
    find(conn, id, scope).optional()
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

/// [`find_by_tracking`], with "no such submission in this scope" as `None`.
pub fn lookup_by_tracking(
    conn: &mut DbConn,
    tracking_number: &str,
    scope: Scope<'_>,
) -> QueryResult<Option<Submission>> {
    find_by_tracking(conn, tracking_number, scope).optional()
}

/// The id of the submission a new-submission form (its random token) already created in an organisation.
pub fn id_made_by_form(
    conn: &mut DbConn,
    organisation_id: &str,
    form_token: &str,
) -> QueryResult<Option<String>> {
    submissions::table
        .filter(submissions::organisation_id.eq(organisation_id))
        .filter(submissions::form_token.eq(form_token))
        .select(submissions::id)
        .first(conn)
        .optional()
}

/// A new submission row; the counts and dates not named here start empty.
#[derive(Insertable)]
#[diesel(table_name = submissions, treat_none_as_default_value = false)]
pub struct NewSubmission<'a> {
    pub form_token: Option<&'a str>,
    pub id: &'a str,
    pub organisation_id: &'a str,
    pub submitter_id: &'a str,
    pub status: Status,
    pub sector: &'a str,
    pub created_at: i64,
    pub updated_at: i64,
}

pub fn insert(conn: &mut DbConn, new: &NewSubmission<'_>) -> QueryResult<()> {
    diesel::insert_into(submissions::table)
        .values(new)
        .execute(conn)
        .map(|_| ())
}

/// Points a submission at a new content version and records what its files now add up to. A draft's sector is its
/// `sector`; a sent submission's save (a correction) keeps the sector the Office holds there, and its own in
/// `saved_sector` until it is sent ([`set_status_affirmed`]).
#[allow(clippy::too_many_arguments)]
pub fn set_content(
    conn: &mut DbConn,
    id: &str,
    draft: bool,
    sector: &str,
    content_blob_id: &str,
    file_count: i32,
    total_bytes: i64,
    now: i64,
) -> QueryResult<usize> {
    let row = diesel::update(submissions::table.find(id));
    let rest = (
        submissions::content_blob_id.eq(content_blob_id),
        submissions::file_count.eq(file_count),
        submissions::total_bytes.eq(total_bytes),
        submissions::updated_at.eq(now),
    );
    if draft {
        row.set((submissions::sector.eq(sector), rest))
            .execute(conn)
    } else {
        row.set((submissions::saved_sector.eq(sector), rest))
            .execute(conn)
    }
}

/// Up to `limit` submission ids after `after`, in id order (key custody walks every submission).
pub fn ids_after(conn: &mut DbConn, after: &str, limit: i64) -> QueryResult<Vec<String>> {
    submissions::table
        .filter(submissions::id.gt(after))
        .order(submissions::id.asc())
        .limit(limit)
        .select(submissions::id)
        .load(conn)
}

/// The blob of a submission's current content document, whoever asks (key custody works below the scopes).
pub fn content_blob_of(conn: &mut DbConn, id: &str) -> QueryResult<Option<String>> {
    submissions::table
        .find(id)
        .select(submissions::content_blob_id)
        .first(conn)
}

/// Points a submission at a new content version, provided it still points at `old` (false otherwise); the version
/// the Office received moves with it when it was `old` (the same content, re-sealed).
pub fn replace_content_blob(
    conn: &mut DbConn,
    id: &str,
    old: &str,
    new: &str,
) -> QueryResult<bool> {
    let n = diesel::update(
        submissions::table
            .find(id)
            .filter(submissions::content_blob_id.eq(old)),
    )
    .set(submissions::content_blob_id.eq(new))
    .execute(conn)?;
    if n == 1 {
        diesel::update(
            submissions::table
                .find(id)
                .filter(submissions::sent_content_blob_id.eq(old)),
        )
        .set(submissions::sent_content_blob_id.eq(new))
        .execute(conn)?;
    }
    Ok(n == 1)
}

/// Records the receipt of a submission: its tracking number and when it was received.
pub fn set_received(
    conn: &mut DbConn,
    id: &str,
    tracking_number: &str,
    received_at: i64,
) -> QueryResult<usize> {
    diesel::update(submissions::table.find(id))
        .set((
            submissions::tracking_number.eq(tracking_number),
            submissions::received_at.eq(received_at),
        ))
        .execute(conn)
}

/// The submitter `by` sent the submission (or its cure): the new status, with the express statement it affirmed
/// and the certifications it made at `now`.
#[allow(clippy::too_many_arguments)]
pub fn set_status_affirmed(
    conn: &mut DbConn,
    id: &str,
    status: Status,
    sector: &str,
    statement_version: &str,
    by: &str,
    now: i64,
) -> QueryResult<usize> {
    diesel::update(submissions::table.find(id))
        .set((
            submissions::status.eq(status),
            submissions::statement_version.eq(statement_version),
            submissions::statement_affirmed_at.eq(now),
            submissions::statement_affirmed_by.eq(by),
            submissions::certified_at.eq(now),
            // Sent as it stands: the version and sector the Office now holds as received.
            submissions::sent_content_blob_id.eq(submissions::content_blob_id),
            submissions::sector.eq(sector),
            submissions::saved_sector.eq(None::<String>),
            submissions::sent_title_sealed.eq(submissions::title_sealed),
        ))
        .execute(conn)
}

/// A withdrawal: the new status with the return-or-destroy choice made with it, and until when the package may be
/// taken.
pub fn set_status_and_disposition(
    conn: &mut DbConn,
    id: &str,
    status: Status,
    disposition: Disposition,
    disposition_due_at: i64,
    now: i64,
) -> QueryResult<usize> {
    diesel::update(submissions::table.find(id))
        .set((
            submissions::status.eq(status),
            submissions::disposition.eq(disposition),
            submissions::disposition_due_at.eq(disposition_due_at),
            submissions::updated_at.eq(now),
        ))
        .execute(conn)
}

/// The submitter's return-or-destroy choice, the status unchanged, with the new deadline to take the package.
pub fn set_disposition(
    conn: &mut DbConn,
    id: &str,
    disposition: Disposition,
    disposition_due_at: i64,
    now: i64,
) -> QueryResult<usize> {
    diesel::update(submissions::table.find(id))
        .set((
            submissions::disposition.eq(disposition),
            submissions::disposition_due_at.eq(disposition_due_at),
            submissions::updated_at.eq(now),
        ))
        .execute(conn)
}

/// A defect notice sent at `now`: the new status and the cure deadline. A decision ends the "cured —
/// re-review" mark.
pub fn set_defect_notice(
    conn: &mut DbConn,
    id: &str,
    status: Status,
    cure_due_at: i64,
    now: i64,
) -> QueryResult<usize> {
    diesel::update(submissions::table.find(id))
        .set((
            submissions::status.eq(status),
            submissions::defect_notice_at.eq(now),
            submissions::cure_due_at.eq(cure_due_at),
            submissions::cured_at.eq(None::<i64>),
            submissions::updated_at.eq(now),
        ))
        .execute(conn)
}

/// An officer's decision taken at `now`: the new status, who decided and, for "not validated", until when the
/// organisation may choose return or destruction. It ends the "cured — re-review" mark.
pub fn set_decision(
    conn: &mut DbConn,
    id: &str,
    status: Status,
    decided_by: &str,
    disposition_due_at: Option<i64>,
    now: i64,
) -> QueryResult<usize> {
    diesel::update(submissions::table.find(id))
        .set((
            submissions::status.eq(status),
            submissions::disposition_due_at.eq(disposition_due_at),
            submissions::decided_at.eq(now),
            submissions::decided_by.eq(decided_by),
            submissions::cured_at.eq(None::<i64>),
            submissions::updated_at.eq(now),
        ))
        .execute(conn)
}

/// Closes a submission whose content was destroyed: no content version any more, the final status, closed
/// at `now`.
pub fn close_destroyed(
    conn: &mut DbConn,
    id: &str,
    final_status: Status,
    now: i64,
) -> QueryResult<usize> {
    diesel::update(submissions::table.find(id))
        .set((
            submissions::content_blob_id.eq(None::<String>),
            submissions::sent_content_blob_id.eq(None::<String>),
            // The sector received stays on record; a correction never sent goes with the content.
            submissions::saved_sector.eq(None::<String>),
            submissions::status.eq(final_status),
            submissions::disposition_due_at.eq(None::<i64>),
            submissions::closed_at.eq(Some(now)),
            submissions::updated_at.eq(now),
        ))
        .execute(conn)
}

/// Deletes the submission row itself (the rows that point to it must be gone first).
pub fn delete(conn: &mut DbConn, id: &str) -> QueryResult<usize> {
    diesel::delete(submissions::table.find(id)).execute(conn)
}

// (SUM of a BIGINT is NUMERIC on PostgreSQL: cast back.)
fn sum_total_bytes() -> diesel::expression::SqlLiteral<diesel::sql_types::BigInt> {
    diesel::dsl::sql("CAST(COALESCE(SUM(total_bytes), 0) AS BIGINT)")
}

fn sum_message_file_bytes() -> diesel::expression::SqlLiteral<diesel::sql_types::BigInt> {
    diesel::dsl::sql("CAST(COALESCE(SUM(message_files.size_bytes), 0) AS BIGINT)")
}

/// Statuses whose content the Program Office does not hold as sent: not sent yet, or gone.
const NOT_HELD_SENT: [Status; 3] = [Status::Draft, Status::Returned, Status::Destroyed];

/// How many drafts the organisation keeps, and the bytes of their files together: the drafts' attachments and the
/// files of messages in their threads (a draft's thread is the organisation's own, and takes files too).
pub fn draft_usage(conn: &mut DbConn, organisation_id: &str) -> QueryResult<(i64, i64)> {
    use crate::db::schema::message_files;
    let (count, attachments): (i64, i64) = submissions::table
        .filter(submissions::organisation_id.eq(organisation_id))
        .filter(submissions::status.eq(Status::Draft))
        .select((diesel::dsl::count_star(), sum_total_bytes()))
        .first(conn)?;
    let message_files: i64 = message_files::table
        .inner_join(submissions::table.on(submissions::id.eq(message_files::submission_id)))
        .filter(submissions::organisation_id.eq(organisation_id))
        .filter(submissions::status.eq(Status::Draft))
        .select(sum_message_file_bytes())
        .first(conn)?;
    Ok((count, attachments.saturating_add(message_files)))
}

/// What an organisation has sent and still holds (every status but draft, returned and destroyed): how many
/// submissions, and the bytes of their files and of the files its members put in their threads (not the officers').
pub fn sent_usage(conn: &mut DbConn, organisation_id: &str) -> QueryResult<(i64, i64)> {
    use crate::db::schema::{message_files, messages};
    let (count, attachments): (i64, i64) = submissions::table
        .filter(submissions::organisation_id.eq(organisation_id))
        .filter(submissions::status.ne_all(NOT_HELD_SENT))
        .select((diesel::dsl::count_star(), sum_total_bytes()))
        .first(conn)?;
    let message_files: i64 = message_files::table
        .inner_join(submissions::table.on(submissions::id.eq(message_files::submission_id)))
        .inner_join(messages::table.on(messages::id.eq(message_files::message_id)))
        .filter(submissions::organisation_id.eq(organisation_id))
        .filter(submissions::status.ne_all(NOT_HELD_SENT))
        .filter(messages::side.eq("organisation"))
        .select(sum_message_file_bytes())
        .first(conn)?;
    Ok((count, attachments.saturating_add(message_files)))
}

/// The bytes every organisation not verified yet holds sent, counted as [`sent_usage`] counts one organisation's.
pub fn unverified_sent_bytes(conn: &mut DbConn) -> QueryResult<i64> {
    use crate::db::schema::{message_files, messages, organisations};
    let unverified = || {
        organisations::table
            .filter(organisations::verified_at.is_null())
            .select(organisations::id)
    };
    let attachments: i64 = submissions::table
        .filter(submissions::organisation_id.eq_any(unverified()))
        .filter(submissions::status.ne_all(NOT_HELD_SENT))
        .select(sum_total_bytes())
        .first(conn)?;
    let message_files: i64 = message_files::table
        .inner_join(submissions::table.on(submissions::id.eq(message_files::submission_id)))
        .inner_join(messages::table.on(messages::id.eq(message_files::message_id)))
        .filter(submissions::organisation_id.eq_any(unverified()))
        .filter(submissions::status.ne_all(NOT_HELD_SENT))
        .filter(messages::side.eq("organisation"))
        .select(sum_message_file_bytes())
        .first(conn)?;
    Ok(attachments.saturating_add(message_files))
}

/// Counts one more tracking number for `year` and returns it (1 for the year's first). Read then written,
/// so the caller must hold the lock that serialises writers (the audit head lock every fact takes).
pub fn bump_tracking_counter(conn: &mut DbConn, year: i32) -> QueryResult<i64> {
    let last: Option<i64> = tracking_counters::table
        .find(year)
        .select(tracking_counters::last_value)
        .first(conn)
        .optional()?;
    let next = last.unwrap_or(0) + 1;
    if last.is_some() {
        diesel::update(tracking_counters::table.find(year))
            .set(tracking_counters::last_value.eq(next))
            .execute(conn)?;
    } else {
        diesel::insert_into(tracking_counters::table)
            .values((
                tracking_counters::year.eq(year),
                tracking_counters::last_value.eq(next),
            ))
            .execute(conn)?;
    }
    Ok(next)
}

/// A submission's case: who handles it and since when, whether it came back cured and awaits a new decision,
/// and its titles as stored (sealed; `None` for a row saved before titles were kept).
#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = submissions)]
pub struct CaseRow {
    pub assigned_to: Option<String>,
    pub assigned_at: Option<i64>,
    pub cured_at: Option<i64>,
    pub title_sealed: Option<String>,
    /// The title as the Office last received it (`None` while not yet indexed, see migration 26).
    pub sent_title_sealed: Option<String>,
}

pub fn case_of(conn: &mut DbConn, id: &str) -> QueryResult<CaseRow> {
    submissions::table
        .find(id)
        .select(CaseRow::as_select())
        .first(conn)
}

/// Hands the case to `assignee` (`None`: nobody) at `now`.
pub fn set_assignee(
    conn: &mut DbConn,
    id: &str,
    assignee: Option<&str>,
    now: i64,
) -> QueryResult<usize> {
    diesel::update(submissions::table.find(id))
        .set((
            submissions::assigned_to.eq(assignee),
            submissions::assigned_at.eq(assignee.map(|_| now)),
        ))
        .execute(conn)
}

/// The submitter cured a defect at `now`: flagged "cured — re-review" until the next decision.
pub fn set_cured(conn: &mut DbConn, id: &str, now: i64) -> QueryResult<usize> {
    diesel::update(submissions::table.find(id))
        .set(submissions::cured_at.eq(now))
        .execute(conn)
}

/// Which of a submission's titles a list shows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TitleAsOf {
    /// As last saved (`title_sealed`): the organisation's own lists, its drafts and unsent corrections included.
    Saved,
    /// As the Office last received it (`sent_title_sealed`): everyone outside the organisation.
    Sent,
}

/// The status and sealed title (sealed to the submission's data key) of each of `ids`, for a list's titles.
pub fn sealed_titles(
    conn: &mut DbConn,
    ids: &[String],
    as_of: TitleAsOf,
) -> QueryResult<Vec<(String, Status, Option<String>)>> {
    let query = submissions::table.filter(submissions::id.eq_any(ids));
    let rows: Vec<(String, String, Option<String>)> = match as_of {
        TitleAsOf::Saved => query
            .select((
                submissions::id,
                submissions::status,
                submissions::title_sealed,
            ))
            .load(conn)?,
        TitleAsOf::Sent => query
            .select((
                submissions::id,
                submissions::status,
                submissions::sent_title_sealed,
            ))
            .load(conn)?,
    };
    Ok(rows
        .into_iter()
        .filter_map(|(id, status, title)| Some((id, Status::parse(&status)?, title)))
        .collect())
}

pub fn set_title(conn: &mut DbConn, id: &str, title_sealed: &str) -> QueryResult<usize> {
    diesel::update(submissions::table.find(id))
        .set(submissions::title_sealed.eq(title_sealed))
        .execute(conn)
}

/// The dissemination log filtered by what the clear columns hold: the submission's tracking number (a prefix,
/// upper-case) and the release dates, newest first; with `window` (offset, limit) only that page of it. Returns
/// the number of matching releases and the rows. The recipient is sealed, so a caller that filters by it reads the
/// whole filtered log (`window` `None`) and matches each row once opened.
pub fn disseminations_filtered(
    conn: &mut DbConn,
    tracking_prefix: Option<&str>,
    released_from: Option<i64>,
    released_to: Option<i64>,
    window: Option<(i64, i64)>,
) -> QueryResult<(i64, Vec<crate::models::grant::DisseminationView>)> {
    use crate::db::schema::{disseminations, users};
    let tracking_range = tracking_prefix.map(|p| {
        let mut high: Vec<char> = p.chars().collect();
        if let Some(last) = high.pop() {
            high.push(char::from_u32(last as u32 + 1).unwrap_or(char::MAX));
        }
        (p.to_string(), high.into_iter().collect::<String>())
    });
    // The same filters for the count and the rows (a boxed query cannot be reused).
    macro_rules! filtered {
        () => {{
            let mut q = disseminations::table
                .inner_join(submissions::table)
                .inner_join(users::table.on(users::id.eq(disseminations::recorded_by)))
                .into_boxed();
            if let Some((low, high)) = &tracking_range {
                q = q
                    .filter(submissions::tracking_number.ge(low.clone()))
                    .filter(submissions::tracking_number.lt(high.clone()));
            }
            if let Some(from) = released_from {
                q = q.filter(disseminations::released_at.ge(from));
            }
            if let Some(to) = released_to {
                q = q.filter(disseminations::released_at.le(to));
            }
            q
        }};
    }
    let mut rows = filtered!()
        .select(crate::models::grant::dissemination_columns())
        .order((disseminations::released_at.desc(), disseminations::id.asc()));
    let (total, rows) = match window {
        Some((offset, limit)) => {
            let total = filtered!().count().get_result(conn)?;
            rows = rows.offset(offset).limit(limit);
            (total, rows.load(conn)?)
        }
        None => {
            let rows: Vec<crate::models::grant::DisseminationView> = rows.load(conn)?;
            (rows.len() as i64, rows)
        }
    };
    Ok((total, rows))
}

/// Fills the titles left empty (a row saved before titles were kept, or one sent before the title as sent was
/// kept) from content version `version`: the title as saved if that version is the current one, the title as
/// sent if it is the one the Office holds (or the current one, when which was sent is not known). Never overwrites
/// a title, so a save or a send in between wins.
pub fn fill_titles(
    conn: &mut DbConn,
    id: &str,
    version: &str,
    title_sealed: &str,
) -> QueryResult<usize> {
    let saved = diesel::update(
        submissions::table
            .find(id)
            .filter(submissions::title_sealed.is_null())
            .filter(submissions::content_blob_id.eq(version)),
    )
    .set(submissions::title_sealed.eq(title_sealed))
    .execute(conn)?;
    let sent = diesel::update(
        submissions::table
            .find(id)
            .filter(submissions::status.ne(Status::Draft))
            .filter(submissions::sent_title_sealed.is_null())
            .filter(
                submissions::sent_content_blob_id
                    .eq(version)
                    .or(submissions::sent_content_blob_id
                        .is_null()
                        .and(submissions::content_blob_id.eq(version))),
            ),
    )
    .set(submissions::sent_title_sealed.eq(title_sealed))
    .execute(conn)?;
    Ok(saved + sent)
}
