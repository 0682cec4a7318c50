//! Single-use, expiring links sent by mail to an account: email confirmation and password reset. The
//! database keeps only the SHA-256 of each token.

use diesel::prelude::*;

use crate::auth::sessions::{hash_token, new_token};
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

/// Issues a new token, voiding the account's earlier unused tokens of the same purpose (only the newest
/// link works). Returns the token for the link.
pub fn issue(
    conn: &mut DbConn,
    user_id: &str,
    purpose: Purpose,
    now: i64,
    lifetime_secs: i64,
) -> QueryResult<String> {
    void(conn, user_id, purpose, now)?;
    let token = new_token();
    diesel::insert_into(account_tokens::table)
        .values((
            account_tokens::token_hash.eq(hash_token(&token)),
            account_tokens::user_id.eq(user_id),
            account_tokens::purpose.eq(purpose.as_str()),
            account_tokens::created_at.eq(now),
            account_tokens::expires_at.eq(now + lifetime_secs),
        ))
        .execute(conn)?;
    Ok(token)
}

/// The account a live (unused, unexpired) token belongs to, without spending it.
pub fn peek(
    conn: &mut DbConn,
    token: &str,
    purpose: Purpose,
    now: i64,
) -> QueryResult<Option<String>> {
    account_tokens::table
        .find(hash_token(token))
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
    token: &str,
    purpose: Purpose,
    now: i64,
) -> QueryResult<Option<String>> {
    let Some(user_id) = peek(conn, token, purpose, now)? else {
        return Ok(None);
    };
    let spent = diesel::update(
        account_tokens::table
            .find(hash_token(token))
            .filter(account_tokens::used_at.is_null()),
    )
    .set(account_tokens::used_at.eq(now))
    .execute(conn)?;
    Ok((spent == 1).then_some(user_id))
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
