//! A submission's message thread: the messages (their words sealed, see `workflow::sealed_text`), their files (blobs
//! of the submission, their names sealed) and how far each person has read each thread.

use std::collections::HashMap;

use diesel::prelude::*;
use serde::Serialize;

use crate::db::schema::{message_files, message_reads, messages, submissions, users};
use crate::db::DbConn;
use crate::domain::{Role, Status};

/// Who wrote a message: the submitting organisation or the Program Office.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Side {
    Organisation,
    Office,
}

impl Side {
    pub fn as_str(self) -> &'static str {
        match self {
            Side::Organisation => "organisation",
            Side::Office => "office",
        }
    }

    pub fn parse(s: &str) -> Option<Side> {
        [Side::Organisation, Side::Office]
            .into_iter()
            .find(|side| side.as_str() == s)
    }

    /// The side whose messages this side has to read.
    pub fn other(self) -> Side {
        match self {
            Side::Organisation => Side::Office,
            Side::Office => Side::Organisation,
        }
    }

    /// The side a person writes on; `None` for the roles that have no thread.
    pub fn of(role: Role) -> Option<Side> {
        match role {
            Role::Submitter => Some(Side::Organisation),
            Role::Officer => Some(Side::Office),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = messages)]
pub struct MessageRow {
    pub id: String,
    pub submission_id: String,
    pub seq: i64,
    pub author_id: String,
    pub side: String,
    /// Sealed.
    pub body: String,
    pub is_request_for_information: bool,
    pub created_at: i64,
}

impl MessageRow {
    pub fn side(&self) -> Option<Side> {
        Side::parse(&self.side)
    }
}

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = message_files)]
pub struct MessageFileRow {
    pub id: String,
    pub message_id: String,
    pub submission_id: String,
    /// `None` once destroyed with the submission.
    pub blob_id: Option<String>,
    pub position: i32,
    pub size_bytes: i64,
    /// Sealed.
    pub name: String,
    pub created_at: i64,
    /// The file's SHA-256 as sent (hex), sealed; `None` for files sent before it was kept.
    pub sha256_sealed: Option<String>,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = messages)]
pub struct NewMessage<'a> {
    pub id: &'a str,
    pub submission_id: &'a str,
    pub seq: i64,
    pub author_id: &'a str,
    pub side: &'a str,
    pub body: &'a str,
    pub is_request_for_information: bool,
    pub created_at: i64,
}

#[derive(Debug, Insertable)]
#[diesel(table_name = message_files)]
pub struct NewMessageFile<'a> {
    pub id: &'a str,
    pub message_id: &'a str,
    pub submission_id: &'a str,
    pub blob_id: Option<&'a str>,
    pub position: i32,
    pub size_bytes: i64,
    pub name: &'a str,
    pub created_at: i64,
    /// Sealed, like the name.
    pub sha256_sealed: Option<&'a str>,
}

/// A message without its words: what a package lists of each before it opens the words a page at a time.
#[derive(Debug, Clone, Queryable)]
pub struct MessageHeader {
    pub id: String,
    pub seq: i64,
    pub side: String,
    pub is_request_for_information: bool,
    pub created_at: i64,
    /// Its author's display name.
    pub author: String,
}

impl MessageHeader {
    pub fn side(&self) -> Option<Side> {
        Side::parse(&self.side)
    }
}

/// A submission's messages without their words, oldest first (call only after the submission was found in scope).
pub fn headers_of(conn: &mut DbConn, submission_id: &str) -> QueryResult<Vec<MessageHeader>> {
    messages::table
        .inner_join(users::table.on(users::id.eq(messages::author_id)))
        .filter(messages::submission_id.eq(submission_id))
        .order(messages::seq.asc())
        .select((
            messages::id,
            messages::seq,
            messages::side,
            messages::is_request_for_information,
            messages::created_at,
            users::display_name,
        ))
        .load(conn)
}

/// The sealed words of a submission's messages `from..=to`, by number.
pub fn bodies_between(
    conn: &mut DbConn,
    submission_id: &str,
    from: i64,
    to: i64,
) -> QueryResult<Vec<(i64, String)>> {
    messages::table
        .filter(messages::submission_id.eq(submission_id))
        .filter(messages::seq.between(from, to))
        .order(messages::seq.asc())
        .select((messages::seq, messages::body))
        .load(conn)
}

/// A page of a submission's thread, oldest first: the newest `limit` messages before message `before` (all of
/// them when `None`), each with its author's display name (call only after the submission was found in scope).
pub fn page_of(
    conn: &mut DbConn,
    submission_id: &str,
    before: Option<i64>,
    limit: i64,
) -> QueryResult<Vec<(MessageRow, String)>> {
    let mut query = messages::table
        .inner_join(users::table.on(users::id.eq(messages::author_id)))
        .filter(messages::submission_id.eq(submission_id))
        .into_boxed();
    if let Some(before) = before {
        query = query.filter(messages::seq.lt(before));
    }
    let mut rows: Vec<(MessageRow, String)> = query
        .order(messages::seq.desc())
        .limit(limit)
        .select((MessageRow::as_select(), users::display_name))
        .load(conn)?;
    rows.reverse();
    Ok(rows)
}

/// The files of the messages `message_ids` of a submission's thread, in thread order.
pub fn files_of_messages(
    conn: &mut DbConn,
    submission_id: &str,
    message_ids: &[String],
) -> QueryResult<Vec<MessageFileRow>> {
    message_files::table
        .filter(message_files::submission_id.eq(submission_id))
        .filter(message_files::message_id.eq_any(message_ids))
        .order(message_files::position.asc())
        .select(MessageFileRow::as_select())
        .load(conn)
}

/// How many messages `side` wrote in a submission's thread, in all or after message `after`.
pub fn count_from(
    conn: &mut DbConn,
    submission_id: &str,
    side: Side,
    after: i64,
) -> QueryResult<i64> {
    messages::table
        .filter(messages::submission_id.eq(submission_id))
        .filter(messages::side.eq(side.as_str()))
        .filter(messages::seq.gt(after))
        .count()
        .get_result(conn)
}

/// The first message of `side` after message `after` (the oldest `side` wrote that a reader who read up to `after`
/// has not read), if any.
pub fn first_from(
    conn: &mut DbConn,
    submission_id: &str,
    side: Side,
    after: i64,
) -> QueryResult<Option<i64>> {
    messages::table
        .filter(messages::submission_id.eq(submission_id))
        .filter(messages::side.eq(side.as_str()))
        .filter(messages::seq.gt(after))
        .select(diesel::dsl::min(messages::seq))
        .first(conn)
}

/// The files of a submission's messages, in thread order.
pub fn files_of(conn: &mut DbConn, submission_id: &str) -> QueryResult<Vec<MessageFileRow>> {
    message_files::table
        .filter(message_files::submission_id.eq(submission_id))
        .order(message_files::position.asc())
        .select(MessageFileRow::as_select())
        .load(conn)
}

/// One file of a submission's messages.
pub fn file_of(
    conn: &mut DbConn,
    submission_id: &str,
    file_id: &str,
) -> QueryResult<Option<MessageFileRow>> {
    message_files::table
        .filter(message_files::submission_id.eq(submission_id))
        .filter(message_files::id.eq(file_id))
        .select(MessageFileRow::as_select())
        .first(conn)
        .optional()
}

/// The position of the thread's newest message (0 for none).
pub fn last_seq(conn: &mut DbConn, submission_id: &str) -> QueryResult<i64> {
    let max: Option<i64> = messages::table
        .filter(messages::submission_id.eq(submission_id))
        .select(diesel::dsl::max(messages::seq))
        .first(conn)?;
    Ok(max.unwrap_or(0))
}

/// The number the thread's next file gets.
pub fn next_file_position(conn: &mut DbConn, submission_id: &str) -> QueryResult<i32> {
    let max: Option<i32> = message_files::table
        .filter(message_files::submission_id.eq(submission_id))
        .select(diesel::dsl::max(message_files::position))
        .first(conn)?;
    Ok(max.unwrap_or(0) + 1)
}

pub fn insert(conn: &mut DbConn, new: &NewMessage<'_>) -> QueryResult<()> {
    diesel::insert_into(messages::table)
        .values(new)
        .execute(conn)
        .map(|_| ())
}

pub fn insert_file(conn: &mut DbConn, new: &NewMessageFile<'_>) -> QueryResult<()> {
    diesel::insert_into(message_files::table)
        .values(new)
        .execute(conn)
        .map(|_| ())
}

/// Detaches the files of a submission's messages from their blobs (which are about to be destroyed); the rows,
/// with their numbers and sizes, stay.
pub fn unlink_blobs_of(conn: &mut DbConn, submission_id: &str) -> QueryResult<usize> {
    diesel::update(message_files::table.filter(message_files::submission_id.eq(submission_id)))
        .set(message_files::blob_id.eq(None::<String>))
        .execute(conn)
}

/// How far `user_id` has read the thread (0: nothing yet).
pub fn last_read(conn: &mut DbConn, user_id: &str, submission_id: &str) -> QueryResult<i64> {
    Ok(message_reads::table
        .find((user_id, submission_id))
        .select(message_reads::last_read_seq)
        .first(conn)
        .optional()?
        .unwrap_or(0))
}

/// Whether `user_id` is to be mailed about message `seq` of the thread: not while it has not read the message it was
/// last mailed about (one mail per unread stretch); a yes records `seq` as the one it was mailed about. Run in the
/// message's transaction.
pub fn mail_turn(
    conn: &mut DbConn,
    user_id: &str,
    submission_id: &str,
    seq: i64,
) -> QueryResult<bool> {
    ensure_marks(conn, user_id, submission_id)?;
    let (read, mailed): (i64, i64) = message_reads::table
        .find((user_id, submission_id))
        .select((message_reads::last_read_seq, message_reads::last_mailed_seq))
        .first(conn)?;
    if mailed > read {
        return Ok(false);
    }
    diesel::update(message_reads::table.find((user_id, submission_id)))
        .set(message_reads::last_mailed_seq.eq(seq))
        .execute(conn)?;
    Ok(true)
}

/// Records that `user_id` has read the thread up to message `seq` (a mark never moves back).
pub fn mark_read(
    conn: &mut DbConn,
    user_id: &str,
    submission_id: &str,
    seq: i64,
    now: i64,
) -> QueryResult<()> {
    ensure_marks(conn, user_id, submission_id)?;
    diesel::update(
        message_reads::table
            .find((user_id, submission_id))
            .filter(message_reads::last_read_seq.lt(seq)),
    )
    .set((
        message_reads::last_read_seq.eq(seq),
        message_reads::last_read_at.eq(now),
    ))
    .execute(conn)?;
    Ok(())
}

/// Makes sure `user_id` has its row of marks for the thread: one that never opened it read nothing and was mailed
/// nothing. The insert has a savepoint of its own: the same person's other window, or a message's mail, may insert
/// the row at this moment, and on PostgreSQL a failed statement left in the transaction would abort it (the
/// reading's or the message's entry with it).
fn ensure_marks(conn: &mut DbConn, user_id: &str, submission_id: &str) -> QueryResult<()> {
    let exists = message_reads::table
        .find((user_id, submission_id))
        .select(message_reads::last_read_seq)
        .first::<i64>(conn)
        .optional()?
        .is_some();
    if exists {
        return Ok(());
    }
    let inserted = conn.transaction(|tx| {
        diesel::insert_into(message_reads::table)
            .values((
                message_reads::user_id.eq(user_id),
                message_reads::submission_id.eq(submission_id),
                message_reads::last_read_seq.eq(0),
                message_reads::last_read_at.eq(0),
                message_reads::last_mailed_seq.eq(0),
            ))
            .execute(tx)
    });
    match inserted {
        Ok(_)
        | Err(diesel::result::Error::DatabaseError(
            diesel::result::DatabaseErrorKind::UniqueViolation,
            _,
        )) => Ok(()),
        Err(e) => Err(e),
    }
}

/// For each of `among` (the submissions a page shows) that `user_id` can open on `side`'s thread page, how many
/// messages of the other side it has not read: the organisation's members see the office's messages on their
/// organisation's submissions, officers the organisations' messages on every submission that left the draft stage.
/// Submissions without unread messages are left out. Bounded by the page: never a count over every thread.
pub fn unread_by_submission(
    conn: &mut DbConn,
    user_id: &str,
    side: Side,
    organisation_id: Option<&str>,
    among: &[String],
) -> QueryResult<HashMap<String, i64>> {
    if among.is_empty() {
        return Ok(HashMap::new());
    }
    let reads = message_reads::table.on(message_reads::submission_id
        .eq(messages::submission_id)
        .and(message_reads::user_id.eq(user_id)));
    let unread = message_reads::last_read_seq
        .nullable()
        .is_null()
        .or(messages::seq
            .nullable()
            .gt(message_reads::last_read_seq.nullable()));
    let rows: Vec<(String, i64)> = match side {
        Side::Organisation => {
            let Some(org) = organisation_id else {
                return Ok(HashMap::new());
            };
            messages::table
                .inner_join(submissions::table)
                .left_join(reads)
                .filter(messages::side.eq(Side::Office.as_str()))
                .filter(submissions::organisation_id.eq(org))
                .filter(messages::submission_id.eq_any(among))
                .filter(unread)
                .group_by(messages::submission_id)
                .select((messages::submission_id, diesel::dsl::count_star()))
                .load(conn)?
        }
        Side::Office => messages::table
            .inner_join(submissions::table)
            .left_join(reads)
            .filter(messages::side.eq(Side::Organisation.as_str()))
            .filter(submissions::status.ne(Status::Draft))
            .filter(messages::submission_id.eq_any(among))
            .filter(unread)
            .group_by(messages::submission_id)
            .select((messages::submission_id, diesel::dsl::count_star()))
            .load(conn)?,
    };
    Ok(rows.into_iter().collect())
}

/// A thread whose last message is the organisation's: it waits for the Program Office's answer.
#[derive(Debug, Clone, Serialize, Queryable)]
pub struct AwaitingOffice {
    pub submission_id: String,
    pub tracking_number: Option<String>,
    pub organisation_id: String,
    pub status: Status,
    /// When the organisation's last message was written.
    pub last_at: i64,
}

/// The threads past the draft whose last message is the organisation's, on submissions whose thread is still open
/// (status in `open`, or in `open_until_choice` with no return or destruction chosen): the `limit` that have
/// waited longest, and how many there are in all.
pub fn awaiting_office(
    conn: &mut DbConn,
    open: &[Status],
    open_until_choice: &[Status],
    limit: i64,
) -> QueryResult<(Vec<AwaitingOffice>, i64)> {
    let later = diesel::alias!(messages as later);
    macro_rules! last_from_organisation {
        () => {
            messages::table
                .inner_join(submissions::table)
                .filter(messages::side.eq(Side::Organisation.as_str()))
                .filter(submissions::status.ne(Status::Draft))
                .filter(
                    submissions::status.eq_any(open.to_vec()).or(submissions::status
                        .eq_any(open_until_choice.to_vec())
                        .and(submissions::disposition.is_null())),
                )
                // No later message in the thread (the unique index on (submission_id, seq) answers it).
                .filter(diesel::dsl::not(diesel::dsl::exists(
                    later
                        .filter(later.field(messages::submission_id).eq(messages::submission_id))
                        .filter(later.field(messages::seq).gt(messages::seq)),
                )))
        };
    }
    let total = last_from_organisation!().count().get_result(conn)?;
    let rows = last_from_organisation!()
        .order((messages::created_at.asc(), messages::submission_id.asc()))
        .limit(limit)
        .select((
            messages::submission_id,
            submissions::tracking_number,
            submissions::organisation_id,
            submissions::status,
            messages::created_at,
        ))
        .load(conn)?;
    Ok((rows, total))
}

/// A person to tell of a new message: account id, address, name, the notifications turned off.
pub type MailRecipient = (String, String, String, String);

/// Whom to tell that a message arrived: enabled accounts with a confirmed address, as (email, display name, the
/// notification kinds they turned off). The organisation's members for a message of the office; every PCII officer
/// for a message of the organisation.
pub fn recipients(
    conn: &mut DbConn,
    to: Side,
    organisation_id: &str,
) -> QueryResult<Vec<MailRecipient>> {
    let base = users::table
        .filter(users::disabled.eq(false))
        .filter(users::email_verified_at.is_not_null())
        .select((
            users::id,
            users::email,
            users::display_name,
            users::notifications_off,
        ))
        .order(users::email.asc());
    match to {
        Side::Organisation => base
            .filter(users::role.eq(Role::Submitter))
            .filter(users::organisation_id.eq(organisation_id))
            .load(conn),
        Side::Office => base.filter(users::role.eq(Role::Officer)).load(conn),
    }
}
