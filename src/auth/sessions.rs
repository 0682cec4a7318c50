//! Server-side sessions: the cookie carries a random token; the database keeps only its SHA-256.

use crate::error::AppResult;
use rand::RngCore;
use sha2::{Digest, Sha256};

use crate::db::DbConn;
use crate::models::account::User;
use crate::models::session::{self as model, NewSession, Session};

use super::second_factor::{Obligation, Stage};

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
pub fn create(
    conn: &mut DbConn,
    user_id: &str,
    now: i64,
    client_addr: Option<&str>,
) -> AppResult<String> {
    create_with_agent(conn, user_id, now, client_addr, None)
}

/// The longest User-Agent kept with a session, in characters.
pub const USER_AGENT_CHARS: usize = 200;

/// A User-Agent as kept with a session: control characters and invisible direction or zero-width marks
/// dropped, whitespace runs made one space, at most [`USER_AGENT_CHARS`] characters; `None` when nothing is
/// left.
pub fn clean_user_agent(ua: &str) -> Option<String> {
    let invisible = |c: char| matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2069}' | '\u{FEFF}');
    let cleaned = ua
        .chars()
        .map(|c| if c.is_whitespace() { ' ' } else { c })
        .filter(|c| !c.is_control() && !invisible(*c))
        .collect::<String>();
    let cleaned = cleaned
        .split(' ')
        .filter(|w| !w.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    let cleaned: String = cleaned.chars().take(USER_AGENT_CHARS).collect();
    (!cleaned.is_empty()).then_some(cleaned)
}

/// Sessions one account may hold: signing in past it ends the least recently used ones. Signing in is cheap to
/// repeat (30 a minute per address), and every session is a row the account's page lists.
pub const SESSIONS_PER_ACCOUNT: i64 = 20;

/// Ends the account's least recently used sessions past [`SESSIONS_PER_ACCOUNT`], never the one whose cookie
/// token is `current` (call in the sign-in's audited transaction, which says how many). Returns how many ended.
pub fn end_beyond_cap(conn: &mut DbConn, user_id: &str, current: &str) -> AppResult<usize> {
    Ok(model::delete_beyond_newest(
        conn,
        user_id,
        &hash_token(current),
        SESSIONS_PER_ACCOUNT,
    )?)
}

/// Creates a session, keeping the client's address and (cleaned) User-Agent, and returns its cookie token.
pub fn create_with_agent(
    conn: &mut DbConn,
    user_id: &str,
    now: i64,
    client_addr: Option<&str>,
    user_agent: Option<&str>,
) -> AppResult<String> {
    let token = new_token();
    let user_agent = user_agent.and_then(clean_user_agent);
    model::insert(
        conn,
        &NewSession {
            token_hash: &hash_token(&token),
            user_id,
            csrf_token: &new_token(),
            created_at: now,
            last_seen_at: now,
            public_id: Some(&crate::db::new_id()),
            client_addr,
            user_agent: user_agent.as_deref(),
            second_factor_at: None,
        },
    )?;
    Ok(token)
}

/// A new session's cookie token: a bearer secret, so kept out of `Debug`.
#[derive(Clone, PartialEq, Eq)]
pub struct NewToken(String);

impl NewToken {
    /// The value for the session cookie.
    pub fn into_cookie_value(self) -> String {
        self.0
    }
}

impl std::fmt::Debug for NewToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("NewToken(..)")
    }
}

/// What recording a second factor's use did to the session.
#[derive(Debug)]
pub enum FactorUsed {
    /// It had used one before (a factor added to a full sign-in): marked in place, its token kept.
    Marked,
    /// It had used none (signing in, or enrolling the factor its account must have): it now holds the full sign-in,
    /// on a new token.
    Renewed(NewToken),
}

/// Records, in the caller's transaction (the one that checks the factor and writes its audit entry), that the
/// session used a second factor now. A session that had used none is replaced by one with a new token, keeping its
/// start time, address and browser: the token issued after the password alone never holds the full sign-in, not
/// even when what follows the commit fails (a crash, a busy database). `None`: the session is gone.
pub fn factor_used(conn: &mut DbConn, token_hash: &str, now: i64) -> AppResult<Option<FactorUsed>> {
    let Some((old, _)) = model::find_with_user(conn, token_hash)? else {
        return Ok(None);
    };
    if old.second_factor_at.is_some() {
        let marked = crate::models::second_factor::mark_session(conn, token_hash, now)? == 1;
        return Ok(marked.then_some(FactorUsed::Marked));
    }
    Ok(replace(conn, token_hash, now, |_| Some(now))?.map(|t| FactorUsed::Renewed(NewToken(t))))
}

/// Replaces a session with a new one (a new token and form token) where it stands: after a password change, so
/// that a copy of the old cookie taken before it opens nothing. Returns the new cookie token, or `None` if the
/// session is gone.
pub fn renew(conn: &mut DbConn, token_hash: &str, now: i64) -> AppResult<Option<String>> {
    replace(conn, token_hash, now, |kept| kept)
}

/// The new session's `second_factor_at` is `factor_at` of the old one's.
fn replace(
    conn: &mut DbConn,
    token_hash: &str,
    now: i64,
    factor_at: impl FnOnce(Option<i64>) -> Option<i64>,
) -> AppResult<Option<String>> {
    let Some((old, _)) = model::find_with_user(conn, token_hash)? else {
        return Ok(None);
    };
    let token = new_token();
    // One transaction: never both tokens alive, never neither. The old one is deleted first, and must still be
    // there: a password reset or "end my other sessions" that ended it after the read above wins, and no new
    // session takes its place.
    let replaced = conn.transaction(|tx| {
        if model::delete(tx, token_hash)? != 1 {
            return Ok::<_, diesel::result::Error>(false);
        }
        model::insert(
            tx,
            &NewSession {
                token_hash: &hash_token(&token),
                user_id: &old.user_id,
                csrf_token: &new_token(),
                created_at: old.created_at,
                last_seen_at: now,
                public_id: Some(&crate::db::new_id()),
                client_addr: old.client_addr.as_deref(),
                user_agent: old.user_agent.as_deref(),
                second_factor_at: factor_at(old.second_factor_at),
            },
        )?;
        Ok(true)
    })?;
    Ok(replaced.then_some(token))
}

/// A live session, its account, and where it stands with the account's second factor.
pub struct LiveSession {
    pub session: Session,
    pub user: User,
    pub stage: Stage,
    pub has_factor: bool,
    /// The account must have a second factor (staff, or a member of an organisation that requires one).
    pub factor_required: bool,
}

pub enum Lookup {
    Live(Box<LiveSession>),
    /// Exists but ran past its idle or absolute timeout (not yet deleted: see `login::end_expired`).
    Expired(Box<User>),
    Missing,
}

/// How long a session that gave the password but not yet the factor it owes lasts, from its sign-in: long enough to
/// find the phone or the key, not the full session's hours (it holds a ceremony's state and a place under the
/// account's session cap, and is all that a stolen password gets).
pub const PENDING_FACTOR_SECS: i64 = 15 * 60;

/// Finds a live session; deletes it when its account is disabled, and reports it when it has expired (a session
/// still owing its factor, after [`PENDING_FACTOR_SECS`]).
pub fn lookup(
    conn: &mut DbConn,
    token: &str,
    now: i64,
    idle_secs: i64,
    absolute_secs: i64,
) -> AppResult<Lookup> {
    let hash = hash_token(token);
    let Some((session, user)) = model::find_with_user(conn, &hash)? else {
        return Ok(Lookup::Missing);
    };
    let expired =
        now - session.last_seen_at > idle_secs || now - session.created_at > absolute_secs;
    if expired {
        // Left in place: the caller ends it and records the expiry in one transaction
        // (`login::end_expired`).
        return Ok(Lookup::Expired(Box::new(user)));
    }
    if user.disabled {
        model::delete(conn, &hash)?;
        return Ok(Lookup::Missing);
    }
    let owed = Obligation::of(conn, &user)?;
    let stage = owed.stage(session.second_factor_at);
    if stage == Stage::Pending && now - session.created_at > PENDING_FACTOR_SECS {
        return Ok(Lookup::Expired(Box::new(user)));
    }
    // Touch at most once a minute: a write per request would be needless load. The touch is best
    // effort: if the database is busy, the session is still live and the request goes on.
    let mut session = session;
    if now - session.last_seen_at >= 60 {
        match model::touch(conn, &hash, now) {
            // What the session now has left is counted from this touch (the page tells the browser).
            Ok(_) => session.last_seen_at = now,
            Err(e) => tracing::warn!(error = %e, "recording a session's last use failed"),
        }
    }
    Ok(Lookup::Live(Box::new(LiveSession {
        stage,
        has_factor: owed.has_factor,
        factor_required: owed.required,
        session,
        user,
    })))
}

/// Records a use of the session now, whenever it was last recorded (unlike the once-a-minute touch of
/// [`lookup`]): a keepalive, or a long upload that has just been saved, so that the next page still finds the
/// session live. Returns whether the session still exists.
pub fn touch_now(conn: &mut DbConn, token_hash: &str, now: i64) -> AppResult<bool> {
    Ok(model::touch(conn, token_hash, now)? > 0)
}

/// Whether the session a download or export came from (its token hash; `None` for one no session asked for, the
/// CLI's) still stands at `now`: its row is there (no sign-out, "end other sessions", factor reset or password
/// change ended it) and within its timeouts (`(idle, absolute)`, seconds). A stream that moves is the session's use,
/// recorded at most once a minute as a request is, so a long download does not idle out; one stalled past the idle
/// timeout has (its session is not brought back to life).
pub fn still_streaming(
    conn: &mut DbConn,
    session: Option<&str>,
    now: i64,
    (idle_secs, absolute_secs): (i64, i64),
) -> AppResult<bool> {
    let Some(token_hash) = session else {
        return Ok(true);
    };
    let Some((session, _)) = model::find_with_user(conn, token_hash)? else {
        return Ok(false);
    };
    if now - session.last_seen_at > idle_secs || now - session.created_at > absolute_secs {
        return Ok(false);
    }
    // Best effort, as a request's: a busy database does not end the stream.
    if now - session.last_seen_at >= 60 {
        if let Err(e) = model::touch(conn, token_hash, now) {
            tracing::warn!(error = %e, "recording a session's last use during a download failed");
        }
    }
    Ok(true)
}

/// Whether the session a long request came from (its token hash; `None` for the CLI's, which has none) still stands
/// as the request commits: its row is there (no sign-out, "end other sessions", factor reset or password change
/// ended it) and within its absolute lifetime (seconds). The idle timeout is not applied: an upload's body arriving
/// was the session's use for as long as it took.
pub fn still_open(
    conn: &mut DbConn,
    session: Option<&str>,
    now: i64,
    absolute_secs: i64,
) -> AppResult<bool> {
    let Some(token_hash) = session else {
        return Ok(true);
    };
    Ok(model::find_with_user(conn, token_hash)?
        .is_some_and(|(session, _)| now - session.created_at <= absolute_secs))
}

/// A keepalive: records a use of the session now and returns the seconds it then has left, or `None` if it is
/// gone.
pub fn keep_alive(
    conn: &mut DbConn,
    token_hash: &str,
    now: i64,
    idle_secs: i64,
    absolute_secs: i64,
) -> AppResult<Option<i64>> {
    if !touch_now(conn, token_hash, now)? {
        return Ok(None);
    }
    Ok(model::find_with_user(conn, token_hash)?
        .map(|(session, _)| seconds_left(&session, now, idle_secs, absolute_secs)))
}

/// Deletes the sessions idle for more than `idle_secs`, or opened more than `absolute_secs` ago, at `now`. A session
/// is ended when its cookie comes back late, but a browser closed without signing out never sends it again: without
/// this its row (the account, the client's address and browser) would stay for ever. Housekeeping of what is already
/// dead, so not audited.
pub fn delete_expired(
    conn: &mut DbConn,
    now: i64,
    idle_secs: i64,
    absolute_secs: i64,
) -> AppResult<usize> {
    // The same test as `lookup`'s (past it by a second or more), with the caller's margins.
    Ok(model::delete_expired(
        conn,
        now - idle_secs,
        now - absolute_secs,
    )?)
}

/// The seconds a session has left from `now`: to its idle timeout, or to its absolute one if that comes first.
pub fn seconds_left(session: &Session, now: i64, idle_secs: i64, absolute_secs: i64) -> i64 {
    let idle_end = session.last_seen_at + idle_secs;
    let absolute_end = session.created_at + absolute_secs;
    (idle_end.min(absolute_end) - now).max(0)
}

pub fn delete(conn: &mut DbConn, token_hash: &str) -> AppResult<usize> {
    Ok(model::delete(conn, token_hash)?)
}

/// [`delete`], telling whose session it was and its public id (`None`: there was none).
pub fn delete_returning_owner(
    conn: &mut DbConn,
    token_hash: &str,
) -> AppResult<Option<(String, Option<String>)>> {
    Ok(model::delete_returning_owner(conn, token_hash)?)
}

pub fn delete_others(conn: &mut DbConn, user_id: &str, keep_hash: &str) -> AppResult<usize> {
    Ok(model::delete_others(conn, user_id, keep_hash)?)
}

/// A live session as its owner sees it: never the token or its hash.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SessionView {
    /// `None` for sessions opened before sessions had a public id: listed, but they cannot be ended here.
    pub public_id: Option<String>,
    pub created_at: i64,
    pub last_seen_at: i64,
    pub client_addr: Option<String>,
    pub user_agent: Option<String>,
    pub current: bool,
}

/// The account's live sessions (not past their idle or absolute timeout), the most recently used first.
pub fn list_live(
    conn: &mut DbConn,
    user_id: &str,
    current_hash: &str,
    now: i64,
    idle_secs: i64,
    absolute_secs: i64,
) -> AppResult<Vec<SessionView>> {
    let rows = model::recent_of(conn, user_id, now - idle_secs, now - absolute_secs)?;
    Ok(rows
        .into_iter()
        .map(|s| SessionView {
            current: s.token_hash == current_hash,
            public_id: s.public_id,
            created_at: s.created_at,
            last_seen_at: s.last_seen_at,
            client_addr: s.client_addr,
            user_agent: s.user_agent,
        })
        .collect())
}

/// Ends one of the account's sessions by its public id, but not the current one (signing out does that).
/// Scoped by the account: another account's session id ends nothing. Returns whether a session ended.
pub fn delete_by_public_id(
    conn: &mut DbConn,
    user_id: &str,
    public_id: &str,
    current_hash: &str,
) -> AppResult<bool> {
    Ok(model::delete_by_public_id(conn, user_id, public_id, current_hash)? > 0)
}

/// Ends every session of the account but the current one; returns the public ids of those ended (`None` for
/// old sessions without one).
pub fn delete_others_listed(
    conn: &mut DbConn,
    user_id: &str,
    keep_hash: &str,
) -> AppResult<Vec<Option<String>>> {
    let ids = model::public_ids_of_others(conn, user_id, keep_hash)?;
    model::delete_others(conn, user_id, keep_hash)?;
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn user_agents_are_cleaned_and_truncated() {
        assert_eq!(
            clean_user_agent("Mozilla/5.0\r\n(X11;\u{1b}[31m Linux)\t x").as_deref(),
            Some("Mozilla/5.0 (X11;[31m Linux) x")
        );
        assert_eq!(clean_user_agent("\u{7}\u{0} \u{202E}"), None);
        let long = "a".repeat(500);
        assert_eq!(
            clean_user_agent(&long).map(|s| s.chars().count()),
            Some(USER_AGENT_CHARS)
        );
    }
}
