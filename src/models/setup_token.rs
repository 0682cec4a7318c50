//! One-time setup links (`setup_tokens`), which create the first administrator. The database keeps only the
//! SHA-256 of each token.

use diesel::prelude::*;

use crate::db::schema::setup_tokens;
use crate::db::DbConn;

/// Stores a new, unused token.
pub fn insert(conn: &mut DbConn, token_hash: &str, expires_at: i64) -> QueryResult<()> {
    diesel::insert_into(setup_tokens::table)
        .values((
            setup_tokens::token_hash.eq(token_hash),
            setup_tokens::expires_at.eq(expires_at),
            setup_tokens::used.eq(false),
        ))
        .execute(conn)
        .map(|_| ())
}

/// Marks every unused token used (a new link replaces them: only the newest printed one works). Returns how many.
pub fn retire_unused(conn: &mut DbConn) -> QueryResult<usize> {
    diesel::update(setup_tokens::table.filter(setup_tokens::used.eq(false)))
        .set(setup_tokens::used.eq(true))
        .execute(conn)
}

/// True when the token is unused and unexpired.
pub fn is_live(conn: &mut DbConn, token_hash: &str, now: i64) -> QueryResult<bool> {
    let n: i64 = setup_tokens::table
        .find(token_hash)
        .filter(setup_tokens::used.eq(false))
        .filter(setup_tokens::expires_at.gt(now))
        .count()
        .get_result(conn)?;
    Ok(n > 0)
}

/// Marks a live token used; the count is 1 exactly once per token.
pub fn spend(conn: &mut DbConn, token_hash: &str, now: i64) -> QueryResult<usize> {
    diesel::update(
        setup_tokens::table
            .find(token_hash)
            .filter(setup_tokens::used.eq(false))
            .filter(setup_tokens::expires_at.gt(now)),
    )
    .set(setup_tokens::used.eq(true))
    .execute(conn)
}
