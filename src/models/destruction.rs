//! Destruction records: who destroyed a submission's content, when, why, and what was destroyed (each file's number
//! and size, each ciphertext's SHA-256; no plaintext digest). They outlive the ciphertexts they describe.

use diesel::prelude::*;
use serde::Serialize;

use crate::db::schema::{destruction_records, users};
use crate::db::DbConn;

#[derive(Debug, Clone, Queryable, Serialize)]
pub struct DestructionRow {
    pub destroyed_at: i64,
    pub destroyed_by_name: Option<String>,
    pub reason: String,
    pub digests: String,
}

pub fn destruction_of(
    conn: &mut DbConn,
    submission_id: &str,
) -> QueryResult<Option<DestructionRow>> {
    use destruction_records as d;
    d::table
        .left_join(users::table.on(users::id.nullable().eq(d::destroyed_by)))
        .filter(d::submission_id.eq(submission_id))
        .select((
            d::destroyed_at,
            users::display_name.nullable(),
            d::reason,
            d::digests,
        ))
        .first(conn)
        .optional()
}

/// A destruction record; `destroyed_by` is `None` when no person did it, `digests` a JSON document.
#[derive(Insertable)]
#[diesel(table_name = destruction_records, treat_none_as_default_value = false)]
pub struct NewDestruction<'a> {
    pub id: &'a str,
    pub submission_id: &'a str,
    pub destroyed_at: i64,
    pub destroyed_by: Option<&'a str>,
    pub reason: &'a str,
    pub digests: &'a str,
}

pub fn insert(conn: &mut DbConn, new: &NewDestruction<'_>) -> QueryResult<()> {
    diesel::insert_into(destruction_records::table)
        .values(new)
        .execute(conn)
        .map(|_| ())
}
