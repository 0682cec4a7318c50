//! Signing in and out, and the signed-in person's password change: each attempt is throttled and audited in
//! the same transaction as its effect.

use super::accounts::FieldErrors;
use super::password::{check_policy, Hasher, MAX_BYTES};
use super::sessions;
use super::throttle::{self, Policy};
use crate::audit::log::{Actor, AuditLog, Event, Outcome};
use crate::audit::refusals::{record_anonymous, RefusalTally};
use crate::db::{Db, DbConn};
use crate::error::AppResult;
use crate::models::account::{self, normalize_email, User};

pub enum LoginResult {
    /// The session token for the cookie.
    Success {
        token: String,
        user: Box<User>,
    },
    /// Wrong email, wrong password, or disabled account: one answer for all three.
    Failed,
    Throttled,
}

pub struct LoginLimits {
    /// Failures of one account from one client address.
    pub account_address: Policy,
    /// Failures from one client address, whatever the account (a shared office tries several).
    pub address: Policy,
    /// Attempts from one client address, right or wrong: a flood is refused before any password is checked.
    pub attempts: Policy,
}

/// Checks the throttle, the password (a dummy hash for unknown accounts), and opens a session. The attempt and its
/// outcome are audited in the same transaction as the throttle counters and the new session. On success the
/// session the browser held before (`earlier_session`, its token's hash) ends in that transaction: its cookie is
/// replaced, and a copy of it taken earlier must not outlive it.
#[allow(clippy::too_many_arguments)]
pub fn login(
    db: &Db,
    audit: &AuditLog,
    hasher: &Hasher,
    keys: &throttle::ThrottleKey,
    actor: &Actor,
    refusals: &RefusalTally,
    email: &str,
    password: &str,
    limits: &LoginLimits,
    user_agent: Option<&str>,
    earlier_session: Option<&str>,
    confirmation: Option<&str>,
    now: i64,
) -> AppResult<LoginResult> {
    let email = normalize_email(email);
    let addr = actor.client_addr.as_deref().unwrap_or("unknown");
    // Never per account alone: a stranger typing someone's address must not lock its owner out.
    let account_key = keys.login_account_address(&email, addr);
    let address_key = keys.login_address(addr);
    // Read, then verify with no connection held (the chain-head lock, or a pooled connection, must not wait on
    // an argon2 run), then record in one transaction.
    let (user, locked) = {
        let conn = &mut db.get()?;
        let (per_address, per_site) = (keys.login_attempts(addr), keys.login_attempts_site(addr));
        let attempts =
            throttle::per_address_and_site(&per_address, per_site.as_deref(), limits.attempts);
        if !throttle::allow_all(conn, &attempts, now)? {
            // Folded like other anonymous refusals: a flood costs the log one entry and a count per minute.
            let event = Event::new("auth.login", Outcome::Refused)
                .object("route", "/login")
                .reason("too many sign-in attempts from this address");
            record_anonymous(conn, audit, refusals, actor, event, now)?;
            return Ok(LoginResult::Throttled);
        }
        let user = if email.len() <= 254 {
            account::find_by_email(conn, &email)?
        } else {
            None
        };
        let locked = throttle::is_locked(conn, &account_key, now)?
            || throttle::is_locked(conn, &address_key, now)?;
        (user, locked)
    };
    let password_ok =
        !locked && hasher.verify(password, user.as_ref().map(|u| u.password_hash.as_str()))?;
    let rehash = match &user {
        Some(u) if password_ok && hasher.needs_rehash(&u.password_hash) => {
            hasher.hash(password).ok()
        }
        _ => None,
    };
    let conn = &mut db.get()?;
    audit.fact(conn, actor, |tx| {
        let mut event = Event::new("auth.login", Outcome::Refused);
        if let Some(u) = &user {
            event = event.object("account", &u.id);
        }
        // Checked again inside the transaction: a lock may have been set since the read above.
        if locked
            || throttle::is_locked(tx, &account_key, now)?
            || throttle::is_locked(tx, &address_key, now)?
        {
            return Ok((LoginResult::Throttled, event.reason("throttled")));
        }
        // Read again under the write lock: a reset, a password change or a disable committed since the read above
        // wins. The password was checked against the hash read then; a session made on it now would outlive the
        // reset that was to end them all, and its re-hash would put the old password back.
        let (user, password_ok) = match user {
            Some(u) => {
                let current = account::find_opt(tx, &u.id)?;
                let unchanged = current
                    .as_ref()
                    .is_some_and(|c| c.password_hash == u.password_hash);
                (current, password_ok && unchanged)
            }
            None => (None, false),
        };
        // An address nobody has confirmed signs in only with its confirmation link, spent here: otherwise anyone
        // could learn whether an address has an account by registering it and signing in (a new address's account
        // takes the registrant's password; a taken one's does not). Refused like a wrong password, counted alike.
        let mut user = user;
        let mut confirmed_now = false;
        if let Some(u) = user.as_mut().filter(|u| password_ok && !u.disabled) {
            if !u.email_verified() {
                if let Some(token) = confirmation {
                    confirmed_now =
                        super::registration::confirm_by_link(tx, audit, actor, token, &u.id, now)?;
                }
                if confirmed_now {
                    u.email_verified_at = Some(now);
                }
            }
        }
        match user {
            Some(u) if password_ok && !u.disabled && u.email_verified() => {
                // Only this account's count from this address: clearing the address's count would let
                // one's own successful sign-in reset a guessing run against others.
                throttle::clear(tx, &account_key)?;
                if let Some(h) = rehash {
                    account::replace_password_hash(tx, &u.id, &h)?;
                }
                let ended = match earlier_session {
                    Some(hash) => sessions::delete(tx, hash)?,
                    None => 0,
                };
                let token = sessions::create_with_agent(
                    tx,
                    &u.id,
                    now,
                    actor.client_addr.as_deref(),
                    user_agent,
                )?;
                let capped = sessions::end_beyond_cap(tx, &u.id, &token)?;
                let mut reasons = Vec::new();
                if confirmed_now {
                    reasons.push("address confirmed by its link".to_string());
                }
                if ended > 0 {
                    reasons.push("ended the session this browser held before".to_string());
                }
                if capped > 0 {
                    reasons.push(format!(
                        "ended the {capped} least recently used session(s) past {}",
                        sessions::SESSIONS_PER_ACCOUNT
                    ));
                }
                let mut event = Event::new("auth.login", Outcome::Success).object("account", &u.id);
                if !reasons.is_empty() {
                    event = event.reason(reasons.join("; "));
                }
                Ok((
                    LoginResult::Success {
                        token,
                        user: Box::new(u),
                    },
                    event,
                ))
            }
            other => {
                throttle::record_failure(tx, &account_key, limits.account_address, now)?;
                throttle::record_failure(tx, &address_key, limits.address, now)?;
                let reason = match other {
                    None if password.len() > MAX_BYTES => "password over the length cap",
                    None => "unknown account",
                    Some(u) if u.disabled => "account disabled",
                    Some(_) if password.len() > MAX_BYTES => "password over the length cap",
                    Some(_) if password_ok => {
                        "address not confirmed: no live confirmation link given"
                    }
                    Some(_) => "wrong password",
                };
                let event = Event {
                    outcome: Outcome::Failure,
                    ..event
                }
                .reason(reason);
                Ok((LoginResult::Failed, event))
            }
        }
    })
}

/// Why a session is ended on request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionEnd {
    /// The person chose "Sign out".
    SignedOut,
    /// The page signed out by itself at the idle timeout (its script counts the idle time the server set): recorded
    /// as the expiry it is, not as a choice the person made.
    IdleTimeout,
}

pub fn logout(
    conn: &mut DbConn,
    audit: &AuditLog,
    actor: &Actor,
    token_hash: &str,
    ending: SessionEnd,
) -> AppResult<()> {
    audit.fact(conn, actor, |tx| {
        sessions::delete(tx, token_hash)?;
        let event = match ending {
            SessionEnd::SignedOut => Event::new("auth.logout", Outcome::Success),
            SessionEnd::IdleTimeout => Event::new("auth.session_expired", Outcome::Success)
                .reason("signed out by the page at the idle timeout"),
        };
        Ok(((), event))
    })
}

/// Ends a session found past its idle or absolute timeout and records `auth.session_expired`, in one
/// transaction: the entry is there exactly when the session is gone, and two requests that bring the same late
/// cookie at once record it once. The actor names the session's account.
pub fn end_expired(
    conn: &mut DbConn,
    audit: &AuditLog,
    actor: &Actor,
    token_hash: &str,
    account_id: &str,
) -> AppResult<bool> {
    audit.fact_if(conn, actor, |tx| {
        let ended = sessions::delete(tx, token_hash)? > 0;
        let event = ended.then(|| {
            Event::new("auth.session_expired", Outcome::Success).object("account", account_id)
        });
        Ok((ended, event))
    })
}

/// A flow that leaves the browser signed out once it has committed, ending the session the browser held.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LeftBy {
    PasswordReset,
    InvitationAccepted,
}

/// Ends the session a browser held when a flow that leaves it signed out has committed (a password reset, an
/// accepted invitation): a `session.end` entry names whose it was, as a logout would; nothing is recorded when
/// it had already ended (a reset ends every session of its own account first). The actor is the flow's.
pub fn end_left_session(
    conn: &mut DbConn,
    audit: &AuditLog,
    actor: &Actor,
    token_hash: &str,
    by: LeftBy,
) -> AppResult<bool> {
    audit.fact_if(conn, actor, |tx| {
        let Some((owner, public_id)) = sessions::delete_returning_owner(tx, token_hash)? else {
            return Ok((false, None));
        };
        let flow = match by {
            LeftBy::PasswordReset => "a password reset",
            LeftBy::InvitationAccepted => "an accepted invitation",
        };
        // Named by its session like the other `session.end` entries, its account in the reason (the actor is
        // whoever completed the flow, not necessarily the session's owner).
        let why = format!("of account {owner}, held by this browser: {flow} signs the browser out");
        let event = match public_id {
            Some(id) => Event::new("session.end", Outcome::Success).object("session", id),
            None => Event::new("session.end", Outcome::Success).object("account", owner.clone()),
        }
        .reason(why);
        Ok((true, Some(event)))
    })
}

pub enum PasswordChange {
    /// Changed; the session goes on under this new token (the old one is gone with the others).
    Changed { token: String },
    /// The current password was wrong, or the new one is refused: the fields say which.
    Invalid(FieldErrors),
    /// Too many wrong current passwords lately: refused without checking (no argon2 run).
    Throttled,
    /// This wrong current password reached the limit: the session asking has been ended.
    SessionEnded,
}

/// The audit reason of a current-password check refused by [`Policy::CURRENT_PASSWORD_CHECKS`].
pub const TOO_MANY_CHECKS: &str = "throttled: more current-password checks than a person needs";

/// Why a signed-in person's current password may not be checked now — the account's wrong-password lock
/// ("throttled"), or more checks than [`Policy::CURRENT_PASSWORD_CHECKS`] allow ([`TOO_MANY_CHECKS`]) — or `None`,
/// and then this check is counted. For the password change and removing a factor alike.
pub(crate) fn current_password_check_refused(
    conn: &mut DbConn,
    keys: &throttle::ThrottleKey,
    user_id: &str,
    now: i64,
) -> AppResult<Option<&'static str>> {
    if throttle::is_locked(conn, &keys.password_check(user_id), now)? {
        return Ok(Some("throttled"));
    }
    let checks = keys.password_checks_made(user_id);
    if !throttle::allow(conn, &checks, Policy::CURRENT_PASSWORD_CHECKS, now)? {
        return Ok(Some(TOO_MANY_CHECKS));
    }
    Ok(None)
}

/// Changes the password after checking the current one; every other session of the account ends.
///
/// Wrong current passwords are counted per account like sign-in failures (`policy`): whoever holds a session
/// (a borrowed or stolen one) cannot use this form to guess the password. When the count reaches the limit,
/// the session asking ends; while the account's count is locked, the form is refused unchecked. A new password the
/// policy refuses is answered before the current one is checked, and every check, right or wrong, counts against
/// [`Policy::CURRENT_PASSWORD_CHECKS`]: an argon2 run on the shared workers is not free for the asking.
#[allow(clippy::too_many_arguments)]
pub fn change_password(
    db: &Db,
    audit: &AuditLog,
    hasher: &Hasher,
    keys: &throttle::ThrottleKey,
    policy: Policy,
    actor: &Actor,
    user: &User,
    session_hash: &str,
    current: &str,
    new: &str,
    now: i64,
) -> AppResult<PasswordChange> {
    let key = keys.password_check(&user.id);
    let event =
        |outcome: Outcome| Event::new("account.password", outcome).object("account", &user.id);
    let mut errors = FieldErrors::default();
    if let Err(m) = check_policy(new, &user.email) {
        errors.add("new_password", m);
        audit.record(
            &mut *db.get()?,
            actor,
            event(Outcome::Failure).reason("new password refused (the current one not checked)"),
        )?;
        return Ok(PasswordChange::Invalid(errors));
    }
    // Bound first: a connection taken in the `if let` itself would be held through its block, beside the next.
    let refusal = current_password_check_refused(&mut *db.get()?, keys, &user.id, now)?;
    if let Some(reason) = refusal {
        audit.record(
            &mut *db.get()?,
            actor,
            event(Outcome::Refused).reason(reason),
        )?;
        return Ok(PasswordChange::Throttled);
    }
    // No connection is held while the password is checked or hashed.
    let current_ok = hasher.verify(current, Some(&user.password_hash))?;
    if !current_ok {
        errors.add("current_password", "This is not your current password.");
        return audit.fact(&mut *db.get()?, actor, |tx| {
            // Checked again inside the transaction: a parallel request may have set the lock meanwhile.
            if throttle::is_locked(tx, &key, now)? {
                return Ok((
                    PasswordChange::Throttled,
                    event(Outcome::Refused).reason("throttled"),
                ));
            }
            let failures = throttle::record_failure(tx, &key, policy, now)?;
            if failures >= policy.max_failures {
                sessions::delete(tx, session_hash)?;
                return Ok((
                    PasswordChange::SessionEnded,
                    event(Outcome::Refused)
                        .reason(format!("{failures} wrong current passwords: session ended")),
                ));
            }
            Ok((
                PasswordChange::Invalid(errors),
                event(Outcome::Failure).reason("wrong current password"),
            ))
        });
    }
    let hash = hasher.hash(new)?;
    audit.fact(&mut *db.get()?, actor, |tx| {
        // Checked again here too: the right password sent among parallel guesses must not count once the wrong
        // ones have locked the form (and ended this session).
        if throttle::is_locked(tx, &key, now)? {
            return Ok((
                PasswordChange::Throttled,
                event(Outcome::Refused).reason("throttled"),
            ));
        }
        account::set_password(tx, &user.id, &hash, now)?;
        throttle::clear(tx, &key)?;
        super::second_factor::forget_pending_totp(tx, &user.id)?;
        // A reset link asked for earlier would set the password again behind the one just chosen.
        crate::models::account_token::void(
            tx,
            &user.id,
            crate::models::account_token::Purpose::ResetPassword,
            now,
        )?;
        let ended = sessions::delete_others(tx, &user.id, session_hash)?;
        let token = sessions::renew(tx, session_hash, now)?.ok_or_else(|| {
            crate::error::AppError::Conflict(
                "This session ended while the password was being changed; nothing was changed. \
                 Sign in again."
                    .into(),
            )
        })?;
        let event = event(Outcome::Success)
            .reason(format!("{ended} other session(s) ended, this one renewed"));
        Ok((PasswordChange::Changed { token }, event))
    })
}

/// Ends one of the account's other sessions, named by its public id. `false` (and nothing audited as done)
/// when the account has no such session: another account's session, the current one, or an unknown id.
pub fn end_session(
    conn: &mut DbConn,
    audit: &AuditLog,
    actor: &Actor,
    user_id: &str,
    current_hash: &str,
    public_id: &str,
) -> AppResult<bool> {
    audit.fact(conn, actor, |tx| {
        let ended = sessions::delete_by_public_id(tx, user_id, public_id, current_hash)?;
        let event = if ended {
            Event::new("session.end", Outcome::Success).object("session", public_id)
        } else {
            Event::new("session.end", Outcome::Refused)
                .object("account", user_id)
                .reason("no such session of this account")
        };
        Ok((ended, event))
    })
}

/// Ends every other session of the account: one `session.end` entry per session ended (one entry saying so
/// when there was none). Returns how many ended.
pub fn end_other_sessions(
    conn: &mut DbConn,
    audit: &AuditLog,
    actor: &Actor,
    user_id: &str,
    current_hash: &str,
) -> AppResult<usize> {
    audit.fact(conn, actor, |tx| {
        let mut ended = sessions::delete_others_listed(tx, user_id, current_hash)?;
        let n = ended.len();
        let entry = |id: Option<String>| match id {
            Some(id) => Event::new("session.end", Outcome::Success)
                .object("session", id)
                .reason("all other sessions ended"),
            None => Event::new("session.end", Outcome::Success)
                .object("account", user_id)
                .reason("all other sessions ended (a session without a public id)"),
        };
        let last = match ended.pop() {
            Some(id) => entry(id),
            None => Event::new("session.end", Outcome::Success)
                .object("account", user_id)
                .reason("all other sessions ended: there were none"),
        };
        for id in ended {
            audit.append(tx, actor, &entry(id))?;
        }
        Ok((n, last))
    })
}
