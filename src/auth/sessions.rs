//! Server-side sessions: the cookie carries a random token; the database keeps only its SHA-256.

use diesel::prelude::*;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::db::schema::{sessions, users};
use crate::db::DbConn;
use crate::models::account::{Session, User};

/// 256 bits from the OS CSPRNG.
pub fn new_token() -> String {
    let mut b = [0u8; 32];
    rand::rngs::OsRng.fill_bytes(&mut b);
    hex::encode(b)
}

pub fn hash_token(token: &str) -> String {
    hex::encode(Sha256::digest(token.as_bytes()))
}

/// Creates a session and returns its cookie token.
pub fn create(conn: &mut DbConn, user_id: &str, now: i64) -> QueryResult<String> {
    let token = new_token();
    diesel::insert_into(sessions::table)
        .values((
            sessions::token_hash.eq(hash_token(&token)),
            sessions::user_id.eq(user_id),
            sessions::csrf_token.eq(new_token()),
            sessions::created_at.eq(now),
            sessions::last_seen_at.eq(now),
        ))
        .execute(conn)?;
    Ok(token)
}

pub enum Lookup {
    Live(Box<(Session, User)>),
    /// Existed but ran past its idle or absolute timeout (now deleted).
    Expired(Box<User>),
    Missing,
}

/// Finds a live session; deletes it when it has expired or its account is disabled.
pub fn lookup(
    conn: &mut DbConn,
    token: &str,
    now: i64,
    idle_secs: i64,
    absolute_secs: i64,
) -> QueryResult<Lookup> {
    let hash = hash_token(token);
    let found: Option<(Session, User)> = sessions::table
        .inner_join(users::table)
        .filter(sessions::token_hash.eq(&hash))
        .select((Session::as_select(), User::as_select()))
        .first(conn)
        .optional()?;
    let Some((session, user)) = found else {
        return Ok(Lookup::Missing);
    };
    let expired =
        now - session.last_seen_at > idle_secs || now - session.created_at > absolute_secs;
    if expired || user.disabled {
        diesel::delete(sessions::table.find(&hash)).execute(conn)?;
        return Ok(if expired {
            Lookup::Expired(Box::new(user))
        } else {
            Lookup::Missing
        });
    }
    // Touch at most once a minute: a write per request would be needless load. The touch is best
    // effort: if the database is busy, the session is still live and the request goes on.
    if now - session.last_seen_at >= 60 {
        if let Err(e) = diesel::update(sessions::table.find(&hash))
            .set(sessions::last_seen_at.eq(now))
            .execute(conn)
        {
            tracing::warn!(error = %e, "recording a session's last use failed");
        }
    }
    Ok(Lookup::Live(Box::new((session, user))))
}

pub fn delete(conn: &mut DbConn, token_hash: &str) -> QueryResult<usize> {
    diesel::delete(sessions::table.find(token_hash)).execute(conn)
}

pub fn delete_others(conn: &mut DbConn, user_id: &str, keep_hash: &str) -> QueryResult<usize> {
    diesel::delete(
        sessions::table
            .filter(sessions::user_id.eq(user_id))
            .filter(sessions::token_hash.ne(keep_hash)),
    )
    .execute(conn)
}
