//! Accounts as an auditor reads them next to an id in the audit log: name, email, organisation. Joined when
//! a page or an export is made — the chain records ids only, and stays as it is.

use std::collections::HashMap;

use diesel::prelude::*;

use crate::audit::export::{Named, Names};
use crate::db::schema::{organisations, users};
use crate::db::DbConn;
use crate::models::organisation::{like_pattern, lower};

/// Most accounts a name or email filter stands for (a filter matching more is asked to be narrower).
pub const MATCH_LIMIT: i64 = 200;
/// Ids per `IN (...)` list (well under SQLite's and PostgreSQL's bind limits).
const CHUNK: usize = 500;

type Row = (String, String, String, Option<String>);

fn named(rows: Vec<Row>) -> Names {
    rows.into_iter()
        .map(|(id, name, email, organisation)| {
            (
                id,
                Named {
                    name,
                    email,
                    organisation,
                },
            )
        })
        .collect()
}

/// The accounts among `ids` (unknown ids are left out).
pub fn by_ids<'a>(conn: &mut DbConn, ids: impl IntoIterator<Item = &'a str>) -> QueryResult<Names> {
    let mut ids: Vec<&str> = ids.into_iter().collect();
    ids.sort_unstable();
    ids.dedup();
    let mut out = HashMap::with_capacity(ids.len());
    for chunk in ids.chunks(CHUNK) {
        let rows: Vec<Row> = users::table
            .left_join(organisations::table)
            .filter(users::id.eq_any(chunk))
            .select((
                users::id,
                users::display_name,
                users::email,
                organisations::name.nullable(),
            ))
            .load(conn)?;
        out.extend(named(rows));
    }
    Ok(out)
}

/// Every account (for an export: one query, held while the export streams; accounts number thousands at most).
pub fn all(conn: &mut DbConn) -> QueryResult<Names> {
    let rows: Vec<Row> = users::table
        .left_join(organisations::table)
        .select((
            users::id,
            users::display_name,
            users::email,
            organisations::name.nullable(),
        ))
        .load(conn)?;
    Ok(named(rows))
}

/// The ids of the accounts whose email, name or organisation's name contains `text` (any case), at most
/// [`MATCH_LIMIT`] + 1 of them so that the caller can tell "too many".
pub fn ids_matching(conn: &mut DbConn, text: &str) -> QueryResult<Vec<String>> {
    let pattern = like_pattern(text.trim());
    users::table
        .left_join(organisations::table)
        .filter(
            lower(users::email)
                .like(pattern.clone())
                .escape('\\')
                .or(lower(users::display_name)
                    .like(pattern.clone())
                    .escape('\\'))
                .or(lower(organisations::name.assume_not_null())
                    .like(pattern)
                    .escape('\\')
                    .and(organisations::name.is_not_null())),
        )
        .select(users::id)
        .order(users::id.asc())
        .limit(MATCH_LIMIT + 1)
        .load(conn)
}
