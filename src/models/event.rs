//! The lifecycle history of a submission: one row per status change, with who made it and why.

use diesel::prelude::*;
use serde::Serialize;

use crate::db::schema::{submission_events, users};
use crate::db::DbConn;
use crate::domain::Status;

#[derive(Debug, Clone, Queryable, Serialize)]
pub struct EventRow {
    pub at: i64,
    pub actor_name: Option<String>,
    pub actor_role: Option<String>,
    pub from_status: Option<String>,
    pub to_status: String,
    pub reason: Option<String>,
}

/// The lifecycle history of one submission, oldest first.
pub fn events_of(conn: &mut DbConn, submission_id: &str) -> QueryResult<Vec<EventRow>> {
    use submission_events as e;
    e::table
        .left_join(users::table.on(users::id.nullable().eq(e::actor_id)))
        .filter(e::submission_id.eq(submission_id))
        .order((e::at.asc(), e::id.asc()))
        .select((
            e::at,
            users::display_name.nullable(),
            users::role.nullable(),
            e::from_status,
            e::to_status,
            e::reason,
        ))
        .load(conn)
}

/// One status change; `from_status` is `None` for the row a new draft starts with.
#[derive(Insertable)]
#[diesel(table_name = submission_events, treat_none_as_default_value = false)]
pub struct NewEvent<'a> {
    pub id: &'a str,
    pub submission_id: &'a str,
    pub at: i64,
    pub actor_id: Option<&'a str>,
    pub from_status: Option<Status>,
    pub to_status: Status,
    pub reason: Option<&'a str>,
}

pub fn insert(conn: &mut DbConn, new: &NewEvent<'_>) -> QueryResult<()> {
    diesel::insert_into(submission_events::table)
        .values(new)
        .execute(conn)
        .map(|_| ())
}

/// Deletes a submission's history (only a deleted draft loses it).
pub fn delete_of(conn: &mut DbConn, submission_id: &str) -> QueryResult<usize> {
    diesel::delete(
        submission_events::table.filter(submission_events::submission_id.eq(submission_id)),
    )
    .execute(conn)
}
