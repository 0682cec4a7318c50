//! Sessions: one row per signed-in browser, keyed by the SHA-256 of its cookie token (never the token).
//! Timeouts are the caller's rule: these functions take the cut-off times, not the durations.

use diesel::prelude::*;

use crate::db::schema::{sessions, users};
use crate::db::DbConn;
use crate::models::account::User;

#[derive(Debug, Clone, Queryable, Selectable)]
#[diesel(table_name = sessions)]
pub struct Session {
    pub token_hash: String,
    pub user_id: String,
    pub csrf_token: String,
    pub created_at: i64,
    pub last_seen_at: i64,
    /// A random name for the session that its owner may see and end (never the token or its hash).
    pub public_id: Option<String>,
    pub client_addr: Option<String>,
    pub user_agent: Option<String>,
    /// When this session last used a second factor; `None`: signed in with the password only.
    pub second_factor_at: Option<i64>,
}

/// A new session row. `None` stores NULL (not a column default).
#[derive(Insertable)]
#[diesel(table_name = sessions)]
#[diesel(treat_none_as_default_value = false)]
pub struct NewSession<'a> {
    pub token_hash: &'a str,
    pub user_id: &'a str,
    pub csrf_token: &'a str,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub public_id: Option<&'a str>,
    pub client_addr: Option<&'a str>,
    pub user_agent: Option<&'a str>,
    pub second_factor_at: Option<i64>,
}

pub fn insert(conn: &mut DbConn, new: &NewSession<'_>) -> QueryResult<()> {
    diesel::insert_into(sessions::table)
        .values(new)
        .execute(conn)
        .map(|_| ())
}

/// The session with this token hash and its account, in one query.
pub fn find_with_user(conn: &mut DbConn, token_hash: &str) -> QueryResult<Option<(Session, User)>> {
    sessions::table
        .inner_join(users::table)
        .filter(sessions::token_hash.eq(token_hash))
        .select((Session::as_select(), User::as_select()))
        .first(conn)
        .optional()
}

/// Records a session's last use.
pub fn touch(conn: &mut DbConn, token_hash: &str, now: i64) -> QueryResult<usize> {
    diesel::update(sessions::table.find(token_hash))
        .set(sessions::last_seen_at.eq(now))
        .execute(conn)
}

pub fn delete(conn: &mut DbConn, token_hash: &str) -> QueryResult<usize> {
    diesel::delete(sessions::table.find(token_hash)).execute(conn)
}

/// Ends the session with this token hash: whose it was and its public id, `None` when there was none. Run it in
/// a transaction that holds the write lock (the audit head's), so that the row read is the row deleted.
pub fn delete_returning_owner(
    conn: &mut DbConn,
    token_hash: &str,
) -> QueryResult<Option<(String, Option<String>)>> {
    let owner = sessions::table
        .find(token_hash)
        .select((sessions::user_id, sessions::public_id))
        .first::<(String, Option<String>)>(conn)
        .optional()?;
    if owner.is_some() {
        delete(conn, token_hash)?;
    }
    Ok(owner)
}

/// Ends every session of an account (disabled, role changed, removed, password reset).
pub fn delete_all_of(conn: &mut DbConn, user_id: &str) -> QueryResult<usize> {
    diesel::delete(sessions::table.filter(sessions::user_id.eq(user_id))).execute(conn)
}

/// Ends every session of an account but the one with `keep_hash`.
pub fn delete_others(conn: &mut DbConn, user_id: &str, keep_hash: &str) -> QueryResult<usize> {
    diesel::delete(
        sessions::table
            .filter(sessions::user_id.eq(user_id))
            .filter(sessions::token_hash.ne(keep_hash)),
    )
    .execute(conn)
}

/// Deletes the account's sessions past its `keep` most recently used ones, never the one with `current_hash` (it
/// counts among them: sessions made in the same second tie). Sessions that gave the second factor are kept before
/// those that did not: someone holding only the password, signing in again and again, ends their own half-done
/// sessions and not the owner's. Returns how many.
pub fn delete_beyond_newest(
    conn: &mut DbConn,
    user_id: &str,
    current_hash: &str,
    keep: i64,
) -> QueryResult<usize> {
    let older: Vec<String> = sessions::table
        .filter(sessions::user_id.eq(user_id))
        .filter(sessions::token_hash.ne(current_hash))
        .order((
            sessions::second_factor_at.is_null().asc(),
            sessions::last_seen_at.desc(),
            sessions::created_at.desc(),
        ))
        .offset((keep - 1).max(0))
        .limit(1_000)
        .select(sessions::token_hash)
        .load(conn)?;
    if older.is_empty() {
        return Ok(0);
    }
    diesel::delete(sessions::table.filter(sessions::token_hash.eq_any(&older))).execute(conn)
}

/// Deletes every session last used before `seen_before` or opened before `created_before` (past its idle or
/// absolute timeout: no cookie opens it any more). Returns how many.
pub fn delete_expired(
    conn: &mut DbConn,
    seen_before: i64,
    created_before: i64,
) -> QueryResult<usize> {
    diesel::delete(
        sessions::table.filter(
            sessions::last_seen_at
                .lt(seen_before)
                .or(sessions::created_at.lt(created_before)),
        ),
    )
    .execute(conn)
}

/// The account's sessions last used at or after `seen_since` and opened at or after `created_since`, the most
/// recently used first.
pub fn recent_of(
    conn: &mut DbConn,
    user_id: &str,
    seen_since: i64,
    created_since: i64,
) -> QueryResult<Vec<Session>> {
    sessions::table
        .filter(sessions::user_id.eq(user_id))
        .filter(sessions::last_seen_at.ge(seen_since))
        .filter(sessions::created_at.ge(created_since))
        .order((sessions::last_seen_at.desc(), sessions::created_at.desc()))
        .select(Session::as_select())
        .load(conn)
}

/// Ends the account's session with this public id unless it is the one with `keep_hash`. Scoped by the
/// account: another account's public id ends nothing.
pub fn delete_by_public_id(
    conn: &mut DbConn,
    user_id: &str,
    public_id: &str,
    keep_hash: &str,
) -> QueryResult<usize> {
    diesel::delete(
        sessions::table
            .filter(sessions::user_id.eq(user_id))
            .filter(sessions::public_id.eq(public_id))
            .filter(sessions::token_hash.ne(keep_hash)),
    )
    .execute(conn)
}

/// The public ids of every session of the account but the one with `keep_hash` (`None` for sessions opened
/// before sessions had one).
pub fn public_ids_of_others(
    conn: &mut DbConn,
    user_id: &str,
    keep_hash: &str,
) -> QueryResult<Vec<Option<String>>> {
    sessions::table
        .filter(sessions::user_id.eq(user_id))
        .filter(sessions::token_hash.ne(keep_hash))
        .select(sessions::public_id)
        .load(conn)
}
