//! The columns that hold officers' free text about a submission (sealed with its data key, see
//! `workflow::sealed_text`), read and rewritten one cell at a time by `keys convert` and `keys rotate --data-keys`.

use diesel::prelude::*;

use crate::db::schema::{
    access_requests, case_notes, disseminations, grants, message_files, messages, notices,
    submission_events, submissions,
};
use crate::db::DbConn;

/// Which column a cell is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Column {
    EventReason,
    NoticeMessage,
    GrantReason,
    GrantRevokeReason,
    DisseminationRecipient,
    DisseminationArrangement,
    DisseminationWhat,
    DisseminationRemoved,
    DisseminationConsent,
    AccessRequestReason,
    AccessRequestRefuseReason,
    /// A case note's body (`models::case_note`).
    CaseNoteBody,
    /// The submission's title as last saved, for its organisation's lists (`submissions.title_sealed`).
    SubmissionTitle,
    /// The title as the Office last received it, for the officers' lists (`submissions.sent_title_sealed`).
    SubmissionSentTitle,
    MessageBody,
    MessageFileName,
    /// A message file's SHA-256 as sent (`message_files.sha256_sealed`).
    MessageFileSha256,
}

/// One stored text.
#[derive(Debug, Clone)]
pub struct Cell {
    pub column: Column,
    pub row_id: String,
    /// When its row was written.
    pub at: i64,
    pub value: String,
}

/// Every non-empty officers' text cell of a submission.
pub fn cells_of(conn: &mut DbConn, submission_id: &str) -> QueryResult<Vec<Cell>> {
    let mut out = Vec::new();
    let mut push = |column, row_id: &str, at, value: Option<String>| {
        if let Some(value) = value.filter(|v| !v.is_empty()) {
            out.push(Cell {
                column,
                row_id: row_id.to_owned(),
                at,
                value,
            });
        }
    };
    let events: Vec<(String, i64, Option<String>)> = submission_events::table
        .filter(submission_events::submission_id.eq(submission_id))
        .select((
            submission_events::id,
            submission_events::at,
            submission_events::reason,
        ))
        .load(conn)?;
    for (id, at, reason) in events {
        push(Column::EventReason, &id, at, reason);
    }
    let rows: Vec<(String, i64, String)> = notices::table
        .filter(notices::submission_id.eq(submission_id))
        .select((notices::id, notices::created_at, notices::message))
        .load(conn)?;
    for (id, at, message) in rows {
        push(Column::NoticeMessage, &id, at, Some(message));
    }
    let rows: Vec<(String, i64, String, Option<String>)> = grants::table
        .filter(grants::submission_id.eq(submission_id))
        .select((
            grants::id,
            grants::created_at,
            grants::reason,
            grants::revoke_reason,
        ))
        .load(conn)?;
    for (id, at, reason, revoke) in rows {
        push(Column::GrantReason, &id, at, Some(reason));
        push(Column::GrantRevokeReason, &id, at, revoke);
    }
    type Dissemination = (
        String,
        i64,
        String,
        String,
        String,
        Option<String>,
        Option<String>,
    );
    let rows: Vec<Dissemination> = disseminations::table
        .filter(disseminations::submission_id.eq(submission_id))
        .select((
            disseminations::id,
            disseminations::created_at,
            disseminations::recipient,
            disseminations::arrangement,
            disseminations::what,
            disseminations::removed,
            disseminations::consent,
        ))
        .load(conn)?;
    for (id, at, recipient, arrangement, what, removed, consent) in rows {
        push(Column::DisseminationRecipient, &id, at, Some(recipient));
        push(Column::DisseminationArrangement, &id, at, Some(arrangement));
        push(Column::DisseminationWhat, &id, at, Some(what));
        push(Column::DisseminationRemoved, &id, at, removed);
        push(Column::DisseminationConsent, &id, at, consent);
    }
    let rows: Vec<(String, i64, String, Option<String>)> = access_requests::table
        .filter(access_requests::submission_id.eq(submission_id))
        .select((
            access_requests::id,
            access_requests::created_at,
            access_requests::reason,
            access_requests::refuse_reason,
        ))
        .load(conn)?;
    for (id, at, reason, refuse) in rows {
        push(Column::AccessRequestReason, &id, at, Some(reason));
        push(Column::AccessRequestRefuseReason, &id, at, refuse);
    }
    for (id, at, body) in crate::models::case_note::cells_of(conn, submission_id)? {
        push(Column::CaseNoteBody, &id, at, Some(body));
    }
    let titles: Option<(i64, Option<String>, Option<String>)> = submissions::table
        .find(submission_id)
        .select((
            submissions::updated_at,
            submissions::title_sealed,
            submissions::sent_title_sealed,
        ))
        .first(conn)
        .optional()?;
    if let Some((at, title, sent_title)) = titles {
        push(Column::SubmissionTitle, submission_id, at, title);
        push(Column::SubmissionSentTitle, submission_id, at, sent_title);
    }
    let rows: Vec<(String, i64, String)> = messages::table
        .filter(messages::submission_id.eq(submission_id))
        .select((messages::id, messages::created_at, messages::body))
        .load(conn)?;
    for (id, at, body) in rows {
        push(Column::MessageBody, &id, at, Some(body));
    }
    let rows: Vec<(String, i64, String, Option<String>)> = message_files::table
        .filter(message_files::submission_id.eq(submission_id))
        .select((
            message_files::id,
            message_files::created_at,
            message_files::name,
            message_files::sha256_sealed,
        ))
        .load(conn)?;
    for (id, at, name, sha256) in rows {
        push(Column::MessageFileName, &id, at, Some(name));
        push(Column::MessageFileSha256, &id, at, sha256);
    }
    Ok(out)
}

/// Replaces a cell's text, provided it still holds what was read (false otherwise).
pub fn replace(conn: &mut DbConn, cell: &Cell, value: &str) -> QueryResult<bool> {
    let (id, old) = (cell.row_id.as_str(), cell.value.as_str());
    let n = match cell.column {
        Column::EventReason => diesel::update(
            submission_events::table
                .find(id)
                .filter(submission_events::reason.eq(old)),
        )
        .set(submission_events::reason.eq(value))
        .execute(conn)?,
        Column::NoticeMessage => {
            diesel::update(notices::table.find(id).filter(notices::message.eq(old)))
                .set(notices::message.eq(value))
                .execute(conn)?
        }
        Column::GrantReason => {
            diesel::update(grants::table.find(id).filter(grants::reason.eq(old)))
                .set(grants::reason.eq(value))
                .execute(conn)?
        }
        Column::GrantRevokeReason => {
            diesel::update(grants::table.find(id).filter(grants::revoke_reason.eq(old)))
                .set(grants::revoke_reason.eq(value))
                .execute(conn)?
        }
        Column::DisseminationRecipient => diesel::update(
            disseminations::table
                .find(id)
                .filter(disseminations::recipient.eq(old)),
        )
        .set(disseminations::recipient.eq(value))
        .execute(conn)?,
        Column::DisseminationArrangement => diesel::update(
            disseminations::table
                .find(id)
                .filter(disseminations::arrangement.eq(old)),
        )
        .set(disseminations::arrangement.eq(value))
        .execute(conn)?,
        Column::DisseminationWhat => diesel::update(
            disseminations::table
                .find(id)
                .filter(disseminations::what.eq(old)),
        )
        .set(disseminations::what.eq(value))
        .execute(conn)?,
        Column::DisseminationRemoved => diesel::update(
            disseminations::table
                .find(id)
                .filter(disseminations::removed.eq(old)),
        )
        .set(disseminations::removed.eq(value))
        .execute(conn)?,
        Column::DisseminationConsent => diesel::update(
            disseminations::table
                .find(id)
                .filter(disseminations::consent.eq(old)),
        )
        .set(disseminations::consent.eq(value))
        .execute(conn)?,
        Column::AccessRequestReason => diesel::update(
            access_requests::table
                .find(id)
                .filter(access_requests::reason.eq(old)),
        )
        .set(access_requests::reason.eq(value))
        .execute(conn)?,
        Column::AccessRequestRefuseReason => diesel::update(
            access_requests::table
                .find(id)
                .filter(access_requests::refuse_reason.eq(old)),
        )
        .set(access_requests::refuse_reason.eq(value))
        .execute(conn)?,
        Column::CaseNoteBody => {
            diesel::update(case_notes::table.find(id).filter(case_notes::body.eq(old)))
                .set(case_notes::body.eq(value))
                .execute(conn)?
        }
        Column::SubmissionTitle => diesel::update(
            submissions::table
                .find(id)
                .filter(submissions::title_sealed.eq(old)),
        )
        .set(submissions::title_sealed.eq(value))
        .execute(conn)?,
        Column::SubmissionSentTitle => diesel::update(
            submissions::table
                .find(id)
                .filter(submissions::sent_title_sealed.eq(old)),
        )
        .set(submissions::sent_title_sealed.eq(value))
        .execute(conn)?,
        Column::MessageBody => {
            diesel::update(messages::table.find(id).filter(messages::body.eq(old)))
                .set(messages::body.eq(value))
                .execute(conn)?
        }
        Column::MessageFileName => diesel::update(
            message_files::table
                .find(id)
                .filter(message_files::name.eq(old)),
        )
        .set(message_files::name.eq(value))
        .execute(conn)?,
        Column::MessageFileSha256 => diesel::update(
            message_files::table
                .find(id)
                .filter(message_files::sha256_sealed.eq(old)),
        )
        .set(message_files::sha256_sealed.eq(value))
        .execute(conn)?,
    };
    Ok(n == 1)
}
