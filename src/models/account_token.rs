//! Single-use, expiring links sent by mail to an account: email confirmation and password reset. The
//! database keeps only the SHA-256 of each token: every function here takes the hash (`auth` makes the
//! tokens and hashes them).

use diesel::prelude::*;

use crate::db::schema::account_tokens;
use crate::db::DbConn;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    VerifyEmail,
    ResetPassword,
}

impl Purpose {
    pub fn as_str(self) -> &'static str {
        match self {
            Purpose::VerifyEmail => "verify_email",
            Purpose::ResetPassword => "reset_password",
        }
    }
}

/// Stores a new, unused token of an account.
pub fn insert(
    conn: &mut DbConn,
    token_hash: &str,
    user_id: &str,
    purpose: Purpose,
    now: i64,
    expires_at: i64,
) -> QueryResult<()> {
    diesel::insert_into(account_tokens::table)
        .values((
            account_tokens::token_hash.eq(token_hash),
            account_tokens::user_id.eq(user_id),
            account_tokens::purpose.eq(purpose.as_str()),
            account_tokens::created_at.eq(now),
            account_tokens::expires_at.eq(expires_at),
        ))
        .execute(conn)
        .map(|_| ())
}

/// The account a live (unused, unexpired) token belongs to, without spending it.
pub fn peek(
    conn: &mut DbConn,
    token_hash: &str,
    purpose: Purpose,
    now: i64,
) -> QueryResult<Option<String>> {
    account_tokens::table
        .find(token_hash)
        .filter(account_tokens::purpose.eq(purpose.as_str()))
        .filter(account_tokens::used_at.is_null())
        .filter(account_tokens::expires_at.gt(now))
        .select(account_tokens::user_id)
        .first(conn)
        .optional()
}

/// Spends a live token: `Some(account id)` exactly once per token.
pub fn spend(
    conn: &mut DbConn,
    token_hash: &str,
    purpose: Purpose,
    now: i64,
) -> QueryResult<Option<String>> {
    let Some(user_id) = peek(conn, token_hash, purpose, now)? else {
        return Ok(None);
    };
    let spent = diesel::update(
        account_tokens::table
            .find(token_hash)
            .filter(account_tokens::used_at.is_null()),
    )
    .set(account_tokens::used_at.eq(now))
    .execute(conn)?;
    Ok((spent == 1).then_some(user_id))
}

/// How many links of `purpose` the account was issued at or after `since` (used, voided or live).
pub fn issued_since(
    conn: &mut DbConn,
    user_id: &str,
    purpose: Purpose,
    since: i64,
) -> QueryResult<i64> {
    account_tokens::table
        .filter(account_tokens::user_id.eq(user_id))
        .filter(account_tokens::purpose.eq(purpose.as_str()))
        .filter(account_tokens::created_at.ge(since))
        .count()
        .get_result(conn)
}

/// Voids every unused token of one purpose for an account (a newer link was sent, or the password changed).
pub fn void(conn: &mut DbConn, user_id: &str, purpose: Purpose, now: i64) -> QueryResult<usize> {
    diesel::update(
        account_tokens::table
            .filter(account_tokens::user_id.eq(user_id))
            .filter(account_tokens::purpose.eq(purpose.as_str()))
            .filter(account_tokens::used_at.is_null()),
    )
    .set(account_tokens::used_at.eq(now))
    .execute(conn)
}
