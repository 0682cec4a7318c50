//! The PCII officer's queue: received and defective submissions with their two 30-day clocks, filtered, sorted
//! and paged with one query for the page and one count, whatever the filters; and the officers' search across
//! every status (two statements for the page, one for the count).

use diesel::dsl::{count_star, max, min};
use diesel::expression::BoxableExpression;
use diesel::prelude::*;
use diesel::sql_types::{Bool, Nullable};
use serde::Serialize;

use crate::db::schema::{organisations, submissions, users};
use crate::db::{DbConn, MultiBackend};
use crate::domain::{Role, Status};
use crate::time::{days_between, DAY};

pub const PER_PAGE: i64 = 50;
/// The defect-notice window (`domain::DEFECT_NOTICE_DAYS`) in seconds.
pub const NOTICE_WINDOW: i64 = crate::domain::DEFECT_NOTICE_DAYS * DAY;

const RECEIVED: Status = Status::Received;
const DEFECTIVE: Status = Status::Defective;
/// The open statuses. `StatusTest::Range` and the clock orders rely on 'defective' sorting before 'received'.
const OPEN: [Status; 2] = [RECEIVED, DEFECTIVE];

/// The status filter: one of the two open states, or the overdue ones of both.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueStatus {
    Received,
    Defective,
    /// Received and the defect-notice window passed, or defective and the cure deadline passed.
    Overdue,
    /// Received again after the submitter cured a defect, and not decided since: to be reviewed again.
    Cured,
}

impl QueueStatus {
    pub const ALL: [QueueStatus; 4] = [
        QueueStatus::Received,
        QueueStatus::Defective,
        QueueStatus::Overdue,
        QueueStatus::Cured,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            QueueStatus::Received => "received",
            QueueStatus::Defective => "defective",
            QueueStatus::Overdue => "overdue",
            QueueStatus::Cured => "cured",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            QueueStatus::Received => "Received",
            QueueStatus::Defective => "Defective",
            QueueStatus::Overdue => "Overdue",
            QueueStatus::Cured => "Cured — re-review",
        }
    }

    pub fn parse(s: &str) -> Option<QueueStatus> {
        QueueStatus::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// The order of the queue. Every order ends with the id, so pages never overlap or skip a row.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum QueueSort {
    /// Oldest receipt first.
    #[default]
    Oldest,
    /// Newest receipt first.
    Newest,
    /// Received submissions by defect-notice deadline (receipt + 30 days), earliest first; then the defective
    /// ones, which have no notice to send, oldest first.
    Notice,
    /// Defective submissions by cure deadline, earliest first; then the received ones, oldest first.
    Cure,
}

impl QueueSort {
    pub const ALL: [QueueSort; 4] = [
        QueueSort::Oldest,
        QueueSort::Newest,
        QueueSort::Notice,
        QueueSort::Cure,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            QueueSort::Oldest => "oldest",
            QueueSort::Newest => "newest",
            QueueSort::Notice => "notice",
            QueueSort::Cure => "cure",
        }
    }

    pub fn label(self) -> &'static str {
        match self {
            QueueSort::Oldest => "Oldest received first",
            QueueSort::Newest => "Newest received first",
            QueueSort::Notice => "Defect-notice deadline, earliest first",
            QueueSort::Cure => "Cure deadline, earliest first",
        }
    }

    pub fn parse(s: &str) -> Option<QueueSort> {
        QueueSort::ALL.into_iter().find(|v| v.as_str() == s)
    }
}

/// Who handles the submissions asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Assignee {
    /// Nobody yet.
    Unassigned,
    /// This officer (an account id).
    Officer(String),
}

/// What the officer asked for. Values are already checked (the sector is one of `sectors::SECTORS`, the
/// organisations existing ids, the assignee an officer); an unknown value here simply matches nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueFilter {
    pub sector: Option<String>,
    pub status: Option<QueueStatus>,
    /// The organisations whose name matched the filter (at most `organisation::NAME_MATCHES_MAX`).
    pub organisation_ids: Option<Vec<String>>,
    pub assignee: Option<Assignee>,
    pub sort: QueueSort,
    /// Zero-based; clamped to the last page.
    pub page: i64,
}

/// One row of the queue, clocks computed against the `now` the page was asked at.
#[derive(Clone, PartialEq, Eq, Serialize)]
pub struct QueueRow {
    pub id: String,
    pub tracking_number: Option<String>,
    pub organisation: String,
    pub sector: String,
    pub status: String,
    /// "Received" or "Defective", for the queue's status column.
    pub status_label: &'static str,
    pub received_at: Option<i64>,
    pub days_since_receipt: Option<i64>,
    /// Received only: receipt + 30 days, and the whole days left before it (once it has passed: minus the whole
    /// days since, so 0 can be either side and `overdue` tells which).
    pub notice_due_at: Option<i64>,
    pub notice_days_left: Option<i64>,
    /// Defective or cured only: when the defect notice went out.
    pub defect_notice_at: Option<i64>,
    /// Defective only: the cure deadline, and the whole days left before it (counted like `notice_days_left`).
    pub cure_due_at: Option<i64>,
    pub cure_days_left: Option<i64>,
    pub overdue: bool,
    /// Cured by the submitter and not decided since: "Cured — re-review".
    pub cured: bool,
    /// The officer handling it: account id and display name.
    pub assigned_to: Option<String>,
    pub handled_by: Option<String>,
    /// The title as the Office received it (sealed); the page opens it into `title` for its own rows only.
    #[serde(skip)]
    pub title_sealed: Option<String>,
    pub title: Option<String>,
}
debug_without_words!(QueueRow);

#[derive(Debug, Clone, Serialize)]
pub struct QueuePage {
    pub rows: Vec<QueueRow>,
    /// Rows matching the filter, over all pages.
    pub total: i64,
    /// The page shown (the one asked for, clamped to the last).
    pub page: i64,
    pub pages: i64,
}

/// How the status test reaches the indexes; the choice decides which plan both databases take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum StatusTest {
    /// `status = ...` or `status IN (...)`: a status index finds the rows. For counts, and for one status,
    /// which every queue index keeps in receipt order.
    Index,
    /// Both open statuses as the one range `'defective'..='received'` of a status index, read in index order
    /// (the closed statuses that sort between them are skipped on the index entries). For the two clock orders,
    /// which start with the status: an `IN (...)` would give the rows, but PostgreSQL (before 17) does not
    /// return them in index order and sorts the whole open set on every page.
    Range,
    /// `status || ''`, which no index serves (the unary-`+` idiom of
    /// <https://sqlite.org/optoverview.html#disqualifying_where_clause_terms_using_unary_>, in a form PostgreSQL
    /// accepts too). For receipt order over both open statuses, which no status index holds: given a usable
    /// status test both planners read every open row and sort, where walking `submissions_queue_receipt` stops
    /// after the page. And when a sector or an organisation is chosen: its index should pick the rows (a small
    /// subset, sorted from index entries), not a status index reading the table for every row.
    Hidden,
}

fn status_test(f: &QueueFilter, page: bool) -> StatusTest {
    let one_status = matches!(
        f.status,
        Some(QueueStatus::Received | QueueStatus::Defective)
    );
    // One officer's cases and the cured ones are small subsets, served by their own indexes like a sector's.
    let subset = f.sector.is_some()
        || f.organisation_ids.is_some()
        || matches!(f.assignee, Some(Assignee::Officer(_)))
        || f.status == Some(QueueStatus::Cured);
    let by_receipt = matches!(f.sort, QueueSort::Oldest | QueueSort::Newest);
    if subset {
        StatusTest::Hidden
    } else if !page || one_status {
        StatusTest::Index
    } else if by_receipt {
        StatusTest::Hidden
    } else {
        StatusTest::Range
    }
}

/// The filter as boxed predicates on `submissions` for backend `$backend`.
macro_rules! predicates {
    ($backend:ty, $f:expr, $now:expr, $test:expr) => {{
        use crate::db::schema::submissions::dsl as s;
        let (f, now, test): (&QueueFilter, i64, StatusTest) = ($f, $now, $test);
        let notice_cutoff = now - NOTICE_WINDOW;
        let hidden = || s::status.concat("");
        let mut out: Vec<
            Box<dyn BoxableExpression<submissions::table, $backend, SqlType = Nullable<Bool>>>,
        > = Vec::new();
        let one = match f.status {
            Some(QueueStatus::Received | QueueStatus::Cured) => Some(RECEIVED),
            Some(QueueStatus::Defective) => Some(DEFECTIVE),
            Some(QueueStatus::Overdue) | None => None,
        };
        match (one, test) {
            (Some(status), StatusTest::Hidden) => out.push(Box::new(hidden().eq(status).nullable())),
            (Some(status), _) => out.push(Box::new(s::status.eq(status).nullable())),
            (None, StatusTest::Index) => out.push(Box::new(s::status.eq_any(OPEN).nullable())),
            (None, StatusTest::Range) => {
                out.push(Box::new(s::status.between(DEFECTIVE, RECEIVED).nullable()));
                out.push(Box::new(hidden().eq_any(OPEN).nullable()));
            }
            (None, StatusTest::Hidden) => out.push(Box::new(hidden().eq_any(OPEN).nullable())),
        }
        if f.status == Some(QueueStatus::Overdue) {
            // Never on the status indexes itself: an OR of two ranges would be planned as two index searches
            // and a merge of row ids, slower than testing the index entries the plan reads anyway.
            out.push(Box::new(
                hidden()
                    .eq(RECEIVED)
                    .and(s::received_at.lt(notice_cutoff))
                    .and(s::cured_at.is_null())
                    .or(hidden().eq(DEFECTIVE).and(s::cure_due_at.le(now))),
            ));
        }
        if f.status == Some(QueueStatus::Cured) {
            out.push(Box::new(s::cured_at.is_not_null().nullable()));
        }
        if let Some(sector) = &f.sector {
            out.push(Box::new(s::sector.eq(sector.clone()).nullable()));
        }
        if let Some(ids) = &f.organisation_ids {
            out.push(Box::new(s::organisation_id.eq_any(ids.clone()).nullable()));
        }
        match &f.assignee {
            // Tested on the entries of whichever queue index the plan reads (each carries the assignee). Never
            // through the assignee index: most open submissions may be unassigned, and reading them all from it to
            // sort them costs more than walking an index already in the page's order (`x || ''` is NULL exactly
            // when `x` is, the idiom of `StatusTest::Hidden`).
            Some(Assignee::Unassigned) => {
                out.push(Box::new(s::assigned_to.concat("").is_null().nullable()))
            }
            Some(Assignee::Officer(id)) => out.push(Box::new(s::assigned_to.eq(id.clone()))),
            None => {}
        }
        out
    }};
}

/// Orders a boxed query on `submissions` the way `$sort` says.
macro_rules! sorted {
    ($query:expr, $sort:expr) => {{
        use crate::db::schema::submissions::dsl as s;
        let q = $query;
        match $sort {
            QueueSort::Oldest => q.order((s::received_at.asc(), s::id.asc())),
            QueueSort::Newest => q.order((s::received_at.desc(), s::id.desc())),
            // 'received' sorts after 'defective', so descending status puts the received rows first.
            QueueSort::Notice => q.order((s::status.desc(), s::received_at.asc(), s::id.asc())),
            QueueSort::Cure => q.order((
                s::status.asc(),
                s::cure_due_at.asc(),
                s::received_at.asc(),
                s::id.asc(),
            )),
        }
    }};
}

type RawRow = (
    String,
    Option<String>,
    Option<String>,
    String,
    Status,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<i64>,
    Option<String>,
    Option<String>,
    Option<String>,
);

/// The page's rows in one statement: a subquery picks the page's ids from the index entries alone (filter,
/// order, offset), and only those rows are read, with their organisation's name.
///
/// `span` is the range of receipt times of the matching rows, from the count: as a range on `received_at` it
/// lets a walk in receipt order start at the oldest open submission instead of reading its way through years
/// of closed ones. (Open submissions always have a receipt time: the workflow sets it on receipt.) The clock
/// orders go without it: there it would only tempt PostgreSQL into reading the span and sorting it.
///
/// Written once per backend because Diesel's `MultiConnection` cannot put a boxed subquery inside another
/// statement; the SQL is the same on both.
macro_rules! load_page {
    ($conn:expr, $backend:ty, $f:expr, $now:expr, $span:expr, $offset:expr) => {{
        let (f, now, span, offset): (&QueueFilter, i64, (Option<i64>, Option<i64>), i64) =
            ($f, $now, $span, $offset);
        let mut ids = submissions::table
            .select(submissions::id)
            .into_boxed::<$backend>();
        for p in predicates!($backend, f, now, status_test(f, true)) {
            ids = ids.filter(p);
        }
        if let (QueueSort::Oldest | QueueSort::Newest, (Some(first), Some(last))) = (f.sort, span) {
            ids = ids.filter(submissions::received_at.between(first, last));
        }
        let ids = sorted!(ids, f.sort).limit(PER_PAGE).offset(offset);
        let organisation = organisations::table
            .filter(organisations::id.eq(submissions::organisation_id))
            .select(organisations::name)
            .single_value();
        let handler = users::table
            .filter(users::id.nullable().eq(submissions::assigned_to))
            .select(users::display_name)
            .single_value();
        let rows = submissions::table
            .filter(submissions::id.eq_any(ids))
            .select((
                submissions::id,
                submissions::tracking_number,
                organisation,
                submissions::sector,
                submissions::status,
                submissions::received_at,
                submissions::defect_notice_at,
                submissions::cure_due_at,
                submissions::cured_at,
                submissions::assigned_to,
                handler,
                // The title as the Office received it: a correction being drafted is the organisation's own.
                submissions::sent_title_sealed,
            ))
            .into_boxed::<$backend>();
        sorted!(rows, f.sort).load::<RawRow>($conn)
    }};
}

/// Whole days in a span, truncated toward zero: 19 days 23 hours is 19, minus 10 days 1 hour is -10.
fn whole_days(span: i64) -> i64 {
    span / DAY
}

/// One page of the queue and the number of matching rows: two statements (the count with the range of receipt
/// times, then the page), whatever the page or the filters.
pub fn queue(conn: &mut DbConn, f: &QueueFilter, now: i64) -> QueryResult<QueuePage> {
    let mut count = submissions::table
        .select((
            count_star(),
            min(submissions::received_at),
            max(submissions::received_at),
        ))
        .into_boxed::<MultiBackend>();
    for p in predicates!(MultiBackend, f, now, status_test(f, false)) {
        count = count.filter(p);
    }
    let (total, first, last): (i64, Option<i64>, Option<i64>) = count.get_result(conn)?;
    let pages = (total + PER_PAGE - 1) / PER_PAGE;
    let page = f.page.clamp(0, (pages - 1).max(0));
    if total == 0 {
        return Ok(QueuePage {
            rows: Vec::new(),
            total,
            page,
            pages,
        });
    }
    let offset = page * PER_PAGE;
    let raw = match conn {
        DbConn::Sqlite(c) => load_page!(c, diesel::sqlite::Sqlite, f, now, (first, last), offset)?,
        #[cfg(feature = "postgres")]
        DbConn::Postgres(c) => load_page!(c, diesel::pg::Pg, f, now, (first, last), offset)?,
    };
    let rows = raw
        .into_iter()
        .map(
            |(
                id,
                tracking_number,
                organisation,
                sector,
                status,
                received_at,
                defect_notice_at,
                cure_due_at,
                cured_at,
                assigned_to,
                handled_by,
                title_sealed,
            )| {
                let received = status == RECEIVED;
                let defective = status == DEFECTIVE;
                // A cured submission had its notice: the Office's 30 days from receipt no longer run.
                let cured = received && cured_at.is_some();
                let notice_due_at = received_at
                    .filter(|_| received && !cured)
                    .map(|r| r + NOTICE_WINDOW);
                let cure_due_at = cure_due_at.filter(|_| defective);
                QueueRow {
                    id,
                    tracking_number,
                    organisation: organisation.unwrap_or_default(),
                    sector,
                    days_since_receipt: received_at.map(|r| days_between(r, now)),
                    notice_days_left: notice_due_at.map(|d| whole_days(d - now)),
                    cure_days_left: cure_due_at.map(|d| whole_days(d - now)),
                    // A cure is overdue from its deadline's second on, when "not validated" opens
                    // (`lifecycle::cure_period_runs`); the filter above agrees.
                    overdue: notice_due_at.is_some_and(|d| d < now)
                        || cure_due_at.is_some_and(|d| d <= now),
                    defect_notice_at: defect_notice_at.filter(|_| defective || cured),
                    status: status.as_str().to_string(),
                    status_label: if defective {
                        QueueStatus::Defective.label()
                    } else {
                        QueueStatus::Received.label()
                    },
                    received_at,
                    notice_due_at,
                    cure_due_at,
                    cured,
                    assigned_to,
                    handled_by,
                    title_sealed,
                    title: None,
                }
            },
        )
        .collect();
    Ok(QueuePage {
        rows,
        total,
        page,
        pages,
    })
}

/// A submission whose organisation let its deadline pass without choosing return or destruction, or without taking
/// the return package it chose (`workflow::lifecycle::disposition_lapsed`): the office may destroy it.
#[derive(Debug, Clone, Serialize, Queryable)]
pub struct Unanswered {
    pub id: String,
    pub tracking_number: Option<String>,
    pub organisation_id: String,
    pub status: Status,
    pub disposition: Option<crate::domain::Disposition>,
    pub disposition_due_at: Option<i64>,
}

/// The `limit` longest overdue of those, oldest deadline first, and how many there are in all.
pub fn unanswered(conn: &mut DbConn, now: i64, limit: i64) -> QueryResult<(Vec<Unanswered>, i64)> {
    use crate::models::submission::awaiting_answer_due;
    let total = awaiting_answer_due(now).count().get_result(conn)?;
    let rows = awaiting_answer_due(now)
        .order((submissions::disposition_due_at.asc(), submissions::id.asc()))
        .limit(limit)
        .select((
            submissions::id,
            submissions::tracking_number,
            submissions::organisation_id,
            submissions::status,
            submissions::disposition,
            submissions::disposition_due_at,
        ))
        .load(conn)?;
    Ok((rows, total))
}

/// An officer who may handle cases: id, display name and organisation (an officer never handles its own
/// organisation's submissions). Active accounts only, by name.
#[derive(Debug, Clone, Serialize)]
pub struct OfficerChoice {
    pub id: String,
    pub display_name: String,
    pub email: String,
    #[serde(skip)]
    pub organisation_id: Option<String>,
}

pub fn officers(conn: &mut DbConn) -> QueryResult<Vec<OfficerChoice>> {
    let rows: Vec<(String, String, String, Option<String>)> = users::table
        .filter(users::role.eq(Role::Officer.as_str()))
        .filter(users::disabled.eq(false))
        .order((users::display_name.asc(), users::id.asc()))
        .select((
            users::id,
            users::display_name,
            users::email,
            users::organisation_id,
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(|(id, display_name, email, organisation_id)| OfficerChoice {
            id,
            display_name,
            email,
            organisation_id,
        })
        .collect())
}

/// The officers' search: every submission past the draft stage, whatever its status. Values are already
/// checked; `organisation_ids` is the organisations whose name matched (an empty list matches nothing).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchFilter {
    /// Upper-case; matched as a prefix of the tracking number (a whole number matches itself).
    pub tracking_prefix: Option<String>,
    pub organisation_ids: Option<Vec<String>>,
    pub sector: Option<String>,
    pub status: Option<Status>,
    /// Received at or after, and at or before (Unix seconds).
    pub received_from: Option<i64>,
    pub received_to: Option<i64>,
    pub assignee: Option<Assignee>,
    /// Zero-based; clamped to the last page.
    pub page: i64,
}

impl SearchFilter {
    /// Whether anything was asked for beyond the page.
    pub fn is_empty(&self) -> bool {
        SearchFilter {
            page: 0,
            ..self.clone()
        } == SearchFilter::default()
    }
}

/// One search result; the title is opened by the page for its own rows.
#[derive(Clone, Serialize)]
pub struct SearchRow {
    pub id: String,
    pub tracking_number: Option<String>,
    pub organisation: String,
    pub sector: String,
    pub status: Status,
    pub status_label: &'static str,
    pub received_at: Option<i64>,
    pub cured: bool,
    pub handled_by: Option<String>,
    #[serde(skip)]
    pub title_sealed: Option<String>,
    pub title: Option<String>,
}
debug_without_words!(SearchRow);

#[derive(Debug, Clone, Serialize)]
pub struct SearchPage {
    pub rows: Vec<SearchRow>,
    pub total: i64,
    pub page: i64,
    pub pages: i64,
}

/// The tracking numbers that start with `prefix` as a range (`>= prefix` and `< prefix` with its last character
/// bumped), which the unique index on tracking numbers serves on both databases, where `LIKE` would not.
fn prefix_range(prefix: &str) -> (String, String) {
    let mut upper: Vec<char> = prefix.chars().collect();
    if let Some(last) = upper.pop() {
        upper.push(char::from_u32(last as u32 + 1).unwrap_or(char::MAX));
    }
    (prefix.to_string(), upper.into_iter().collect())
}

/// The search as boxed predicates on `submissions` (the same for the count and the page's ids).
macro_rules! search_predicates {
    ($f:expr) => {{
        use crate::db::schema::submissions::dsl as s;
        let f: &SearchFilter = $f;
        let mut out: Vec<
            Box<dyn BoxableExpression<submissions::table, MultiBackend, SqlType = Nullable<Bool>>>,
        > = Vec::new();
        match f.status {
            Some(st) => out.push(Box::new(s::status.eq(st).nullable())),
            None => out.push(Box::new(s::status.ne(Status::Draft).nullable())),
        }
        if let Some(p) = &f.tracking_prefix {
            let (low, high) = prefix_range(p);
            out.push(Box::new(
                s::tracking_number.ge(low).and(s::tracking_number.lt(high)),
            ));
        }
        if let Some(ids) = &f.organisation_ids {
            out.push(Box::new(s::organisation_id.eq_any(ids.clone()).nullable()));
        }
        if let Some(sector) = &f.sector {
            out.push(Box::new(s::sector.eq(sector.clone()).nullable()));
        }
        if let Some(from) = f.received_from {
            out.push(Box::new(s::received_at.ge(from)));
        }
        if let Some(to) = f.received_to {
            out.push(Box::new(s::received_at.le(to)));
        }
        match &f.assignee {
            // As in the queue: not through the assignee index.
            Some(Assignee::Unassigned) => {
                out.push(Box::new(s::assigned_to.concat("").is_null().nullable()))
            }
            Some(Assignee::Officer(id)) => out.push(Box::new(s::assigned_to.eq(id.clone()))),
            None => {}
        }
        out
    }};
}

/// One page of the search, newest receipt first: the count, the page's ids (from index entries: the receipt
/// index, or an organisation's, a sector's or an officer's), then only those rows.
pub fn search(conn: &mut DbConn, f: &SearchFilter) -> QueryResult<SearchPage> {
    let mut count = submissions::table.count().into_boxed::<MultiBackend>();
    for p in search_predicates!(f) {
        count = count.filter(p);
    }
    let total: i64 = count.get_result(conn)?;
    let pages = (total + PER_PAGE - 1) / PER_PAGE;
    let page = f.page.clamp(0, (pages - 1).max(0));
    if total == 0 {
        return Ok(SearchPage {
            rows: Vec::new(),
            total,
            page,
            pages,
        });
    }
    let mut ids = submissions::table
        .select(submissions::id)
        .into_boxed::<MultiBackend>();
    for p in search_predicates!(f) {
        ids = ids.filter(p);
    }
    let ids: Vec<String> = ids
        .order((submissions::received_at.desc(), submissions::id.desc()))
        .limit(PER_PAGE)
        .offset(page * PER_PAGE)
        .load(conn)?;
    let organisation = organisations::table
        .filter(organisations::id.eq(submissions::organisation_id))
        .select(organisations::name)
        .single_value();
    let handler = users::table
        .filter(users::id.nullable().eq(submissions::assigned_to))
        .select(users::display_name)
        .single_value();
    type Raw = (
        String,
        Option<String>,
        Option<String>,
        String,
        Status,
        Option<i64>,
        Option<i64>,
        Option<String>,
        Option<String>,
    );
    let raw: Vec<Raw> = submissions::table
        .filter(submissions::id.eq_any(&ids))
        .select((
            submissions::id,
            submissions::tracking_number,
            organisation,
            submissions::sector,
            submissions::status,
            submissions::received_at,
            submissions::cured_at,
            handler,
            submissions::sent_title_sealed,
        ))
        .load(conn)?;
    let mut by_id: std::collections::HashMap<String, Raw> =
        raw.into_iter().map(|r| (r.0.clone(), r)).collect();
    let rows = ids
        .iter()
        .filter_map(|id| by_id.remove(id))
        .map(
            |(
                id,
                tracking_number,
                organisation,
                sector,
                status,
                received_at,
                cured_at,
                handled_by,
                title_sealed,
            )| {
                SearchRow {
                    id,
                    tracking_number,
                    organisation: organisation.unwrap_or_default(),
                    sector,
                    status_label: status.label(),
                    cured: status == RECEIVED && cured_at.is_some(),
                    status,
                    received_at,
                    handled_by,
                    title_sealed,
                    title: None,
                }
            },
        )
        .collect();
    Ok(SearchPage {
        rows,
        total,
        page,
        pages,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defective_sorts_before_received() {
        // The notice order (status descending) and the open range depend on it.
        assert!(DEFECTIVE.as_str() < RECEIVED.as_str());
    }

    #[test]
    fn a_prefix_is_a_range_of_tracking_numbers() {
        assert_eq!(
            prefix_range("PCII-2026-00"),
            ("PCII-2026-00".to_string(), "PCII-2026-01".to_string())
        );
        let (low, high) = prefix_range("PCII-2026-000123");
        assert!(low.as_str() <= "PCII-2026-000123" && "PCII-2026-000123" < high.as_str());
        assert!("PCII-2026-000124" >= high.as_str());
    }

    #[test]
    fn whole_days_truncate_toward_zero() {
        assert_eq!(whole_days(19 * DAY + 23 * 3600), 19);
        assert_eq!(whole_days(-(10 * DAY + 3600)), -10);
        assert_eq!(whole_days(-3600), 0);
    }

    #[test]
    fn status_reaches_the_indexes_the_way_each_plan_needs() {
        let f = |status, sort, sector: Option<&str>| QueueFilter {
            status,
            sort,
            sector: sector.map(String::from),
            ..QueueFilter::default()
        };
        let overdue = Some(QueueStatus::Overdue);
        let received = Some(QueueStatus::Received);
        assert_eq!(
            status_test(&f(None, QueueSort::Oldest, None), false),
            StatusTest::Index
        );
        assert_eq!(
            status_test(&f(None, QueueSort::Oldest, None), true),
            StatusTest::Hidden
        );
        assert_eq!(
            status_test(&f(overdue, QueueSort::Newest, None), true),
            StatusTest::Hidden
        );
        assert_eq!(
            status_test(&f(None, QueueSort::Notice, None), true),
            StatusTest::Range
        );
        assert_eq!(
            status_test(&f(overdue, QueueSort::Cure, None), true),
            StatusTest::Range
        );
        assert_eq!(
            status_test(&f(received, QueueSort::Cure, None), true),
            StatusTest::Index
        );
        let energy = Some("Energy");
        assert_eq!(
            status_test(&f(received, QueueSort::Oldest, energy), true),
            StatusTest::Hidden
        );
        assert_eq!(
            status_test(&f(None, QueueSort::Notice, energy), false),
            StatusTest::Hidden
        );
    }
}
