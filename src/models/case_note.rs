//! Officers' case notes on a submission: the body is sealed to the submission's data key (see
//! `workflow::sealed_text`), so it is destroyed with the submission's content.

use diesel::prelude::*;
use serde::Serialize;

use crate::db::schema::{case_notes, users};
use crate::db::DbConn;

#[derive(Insertable)]
#[diesel(table_name = case_notes)]
pub struct NewCaseNote<'a> {
    pub id: &'a str,
    pub submission_id: &'a str,
    pub author_id: &'a str,
    /// Sealed.
    pub body: &'a str,
    pub created_at: i64,
}

pub fn insert(conn: &mut DbConn, new: &NewCaseNote<'_>) -> QueryResult<()> {
    diesel::insert_into(case_notes::table)
        .values(new)
        .execute(conn)
        .map(|_| ())
}

/// A note as the officer's page lists it: its author's name, and the body as stored until the page opens it.
#[derive(Clone, Serialize, Queryable)]
pub struct CaseNoteView {
    pub id: String,
    pub author_name: String,
    pub body: String,
    pub created_at: i64,
}
debug_without_words!(CaseNoteView);

/// A submission's notes, oldest first.
pub fn notes_of(conn: &mut DbConn, submission_id: &str) -> QueryResult<Vec<CaseNoteView>> {
    case_notes::table
        .inner_join(users::table.on(users::id.eq(case_notes::author_id)))
        .filter(case_notes::submission_id.eq(submission_id))
        .order((case_notes::created_at.asc(), case_notes::id.asc()))
        .select((
            case_notes::id,
            users::display_name,
            case_notes::body,
            case_notes::created_at,
        ))
        .load(conn)
}

/// Every note's id, time and body of a submission (for the key custody's re-sealing).
pub fn cells_of(conn: &mut DbConn, submission_id: &str) -> QueryResult<Vec<(String, i64, String)>> {
    case_notes::table
        .filter(case_notes::submission_id.eq(submission_id))
        .select((case_notes::id, case_notes::created_at, case_notes::body))
        .load(conn)
}
