//! Account rules: registration, creation by an administrator, login, password change, role/disable/training/NDA,
//! and the one-time setup link. Every change commits together with its audit entry.

use diesel::prelude::*;

use super::password::{check_policy, Hasher, MAX_BYTES};
use super::sessions;
use super::throttle::{self, Policy};
use crate::audit::log::{Actor, AuditLog, Event, Outcome};
use crate::db::schema::{setup_tokens, users};
use crate::db::{new_id, now, DbConn};
use crate::error::{AppError, AppResult};
use crate::models::account::{self, normalize_email, NewUser, Role, User};
use crate::models::settings;

/// Field-level problems with a form, shown next to each field.
#[derive(Debug, Default, Clone, serde::Serialize)]
pub struct FieldErrors(pub std::collections::BTreeMap<&'static str, String>);

impl FieldErrors {
    pub fn add(&mut self, field: &'static str, message: impl Into<String>) {
        self.0.entry(field).or_insert_with(|| message.into());
    }
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

pub struct NewAccount {
    pub email: String,
    pub display_name: String,
    pub role: Role,
    pub organisation: Option<String>,
    pub password: String,
}

fn validate_new_account(a: &NewAccount) -> FieldErrors {
    let mut errors = FieldErrors::default();
    let email = normalize_email(&a.email);
    if email.len() > 254 || !looks_like_email(&email) {
        errors.add("email", "Enter an email address like name@example.com.");
    }
    let name = a.display_name.trim();
    if name.is_empty() || name.chars().count() > 120 || name.chars().any(char::is_control) {
        errors.add("display_name", "Enter your name (up to 120 characters).");
    }
    if a.role == Role::Submitter {
        let org = a.organisation.as_deref().unwrap_or("").trim();
        if org.is_empty() || org.chars().count() > 200 || org.chars().any(char::is_control) {
            errors.add(
                "organisation",
                "Enter your organisation's name (up to 200 characters).",
            );
        }
    }
    if let Err(m) = check_policy(&a.password, &email) {
        errors.add("password", m);
    }
    errors
}

fn looks_like_email(e: &str) -> bool {
    let mut parts = e.splitn(2, '@');
    let (Some(local), Some(domain)) = (parts.next(), parts.next()) else {
        return false;
    };
    !local.is_empty()
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !e.chars().any(|c| c.is_whitespace() || c.is_control())
}

/// Creates an account. `Err(Invalid)` carries nothing secret; field errors come back as `Ok(Err(..))`.
/// A duplicate email is reported to administrators but not to self-registering visitors (no enumeration).
pub fn create(
    conn: &mut DbConn,
    audit: &AuditLog,
    hasher: &Hasher,
    actor: &Actor,
    new: NewAccount,
    self_registration: bool,
) -> AppResult<Result<Option<String>, FieldErrors>> {
    let errors = validate_new_account(&new);
    if !errors.is_empty() {
        return Ok(Err(errors));
    }
    let email = normalize_email(&new.email);
    let hash = hasher
        .hash(&new.password)
        .map_err(|e| AppError::Internal(format!("argon2: {e}")))?;
    let action = if self_registration {
        "account.register"
    } else {
        "account.create"
    };
    audit.fact(conn, actor, |tx| {
        if self_registration && !settings::self_registration_open(tx)? {
            return Err(AppError::Forbidden(
                "Self-registration is closed. Ask the PCII Program Office for an account.".into(),
            ));
        }
        if account::find_by_email(tx, &email)?.is_some() {
            let event = Event::new(action, Outcome::Failure).reason("email already registered");
            if self_registration {
                return Ok((Ok(None), event));
            }
            let mut errors = FieldErrors::default();
            errors.add("email", "An account with this email already exists.");
            return Ok((Err(errors), event));
        }
        let ts = now();
        let org_id = match (&new.organisation, new.role) {
            (Some(org), Role::Submitter | Role::Officer) if !org.trim().is_empty() => {
                Some(account::find_or_create_organisation(tx, org, ts)?)
            }
            _ => None,
        };
        let id = new_id();
        diesel::insert_into(users::table)
            .values(NewUser {
                id: &id,
                email: &email,
                display_name: new.display_name.trim(),
                role: new.role.as_str(),
                organisation_id: org_id.as_deref(),
                password_hash: &hash,
                disabled: false,
                created_at: ts,
                password_changed_at: ts,
            })
            .execute(tx)?;
        let event = Event::new(action, Outcome::Success)
            .object("account", &id)
            .reason(format!("role {}", new.role.as_str()));
        Ok((Ok(Some(id)), event))
    })
}

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
    pub account: Policy,
    pub address: Policy,
}

/// Checks the throttle, the password (a dummy hash for unknown accounts), and opens a session. The attempt and its
/// outcome are audited in the same transaction as the throttle counters and the new session.
pub fn login(
    conn: &mut DbConn,
    audit: &AuditLog,
    hasher: &Hasher,
    actor: &Actor,
    email: &str,
    password: &str,
    limits: &LoginLimits,
) -> AppResult<LoginResult> {
    let email = normalize_email(email);
    let account_key = throttle::account_key(&email);
    let address_key = throttle::address_key(actor.client_addr.as_deref().unwrap_or("unknown"));
    // Read and verify outside the transaction: the chain-head lock must not be held across an argon2 run.
    let ts = now();
    let user = if email.len() <= 254 {
        account::find_by_email(conn, &email)?
    } else {
        None
    };
    let locked = throttle::is_locked(conn, &account_key, ts)?
        || throttle::is_locked(conn, &address_key, ts)?;
    let password_ok =
        !locked && hasher.verify(password, user.as_ref().map(|u| u.password_hash.as_str()));
    let rehash = match &user {
        Some(u) if password_ok && hasher.needs_rehash(&u.password_hash) => {
            hasher.hash(password).ok()
        }
        _ => None,
    };
    audit.fact(conn, actor, |tx| {
        let ts = now();
        let mut event = Event::new("auth.login", Outcome::Refused);
        if let Some(u) = &user {
            event = event.object("account", &u.id);
        }
        // Checked again inside the transaction: a lock may have been set since the read above.
        if locked
            || throttle::is_locked(tx, &account_key, ts)?
            || throttle::is_locked(tx, &address_key, ts)?
        {
            return Ok((LoginResult::Throttled, event.reason("throttled")));
        }
        match user {
            Some(u) if password_ok && !u.disabled => {
                throttle::clear(tx, &account_key)?;
                if let Some(h) = rehash {
                    diesel::update(users::table.find(&u.id))
                        .set(users::password_hash.eq(h))
                        .execute(tx)?;
                }
                let token = sessions::create(tx, &u.id, ts)?;
                let event = Event::new("auth.login", Outcome::Success).object("account", &u.id);
                Ok((
                    LoginResult::Success {
                        token,
                        user: Box::new(u),
                    },
                    event,
                ))
            }
            other => {
                throttle::record_failure(tx, &account_key, limits.account, ts)?;
                throttle::record_failure(tx, &address_key, limits.address, ts)?;
                let reason = match other {
                    None if password.len() > MAX_BYTES => "password over the length cap",
                    None => "unknown account",
                    Some(u) if u.disabled => "account disabled",
                    Some(_) if password.len() > MAX_BYTES => "password over the length cap",
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

pub fn logout(
    conn: &mut DbConn,
    audit: &AuditLog,
    actor: &Actor,
    token_hash: &str,
) -> AppResult<()> {
    audit.fact(conn, actor, |tx| {
        sessions::delete(tx, token_hash)?;
        Ok(((), Event::new("auth.logout", Outcome::Success)))
    })
}

/// Changes the password after checking the current one; every other session of the account ends.
#[allow(clippy::too_many_arguments)]
pub fn change_password(
    conn: &mut DbConn,
    audit: &AuditLog,
    hasher: &Hasher,
    actor: &Actor,
    user: &User,
    session_hash: &str,
    current: &str,
    new: &str,
) -> AppResult<Result<(), FieldErrors>> {
    let mut errors = FieldErrors::default();
    if !hasher.verify(current, Some(&user.password_hash)) {
        errors.add("current_password", "This is not your current password.");
    }
    if let Err(m) = check_policy(new, &user.email) {
        errors.add("new_password", m);
    }
    if !errors.is_empty() {
        audit.record(
            conn,
            actor,
            Event::new("account.password", Outcome::Failure).object("account", &user.id),
        )?;
        return Ok(Err(errors));
    }
    let hash = hasher
        .hash(new)
        .map_err(|e| AppError::Internal(format!("argon2: {e}")))?;
    audit.fact(conn, actor, |tx| {
        diesel::update(users::table.find(&user.id))
            .set((
                users::password_hash.eq(&hash),
                users::password_changed_at.eq(now()),
            ))
            .execute(tx)?;
        let ended = sessions::delete_others(tx, &user.id, session_hash)?;
        let event = Event::new("account.password", Outcome::Success)
            .object("account", &user.id)
            .reason(format!("{ended} other session(s) ended"));
        Ok((Ok(()), event))
    })
}

pub enum AccountChange {
    Disable,
    Enable,
    Role(Role),
    Training(Option<i64>),
    Nda {
        signed_at: Option<i64>,
        reference: Option<String>,
    },
}

/// An administrator's change to an account. Disabling and role changes end every session of the account.
pub fn change_account(
    conn: &mut DbConn,
    audit: &AuditLog,
    actor: &Actor,
    user_id: &str,
    change: AccountChange,
) -> AppResult<()> {
    audit.fact(conn, actor, |tx| {
        let user = account::find(tx, user_id)?;
        if actor.user_id.as_deref() == Some(user_id)
            && matches!(change, AccountChange::Disable | AccountChange::Role(_))
        {
            return Err(AppError::Conflict(
                "You cannot disable your own account or change your own role.".into(),
            ));
        }
        let target = users::table.find(user_id);
        let (action, reason) = match &change {
            AccountChange::Disable => {
                diesel::update(target)
                    .set(users::disabled.eq(true))
                    .execute(tx)?;
                account::delete_sessions_of(tx, user_id)?;
                ("account.disable", None)
            }
            AccountChange::Enable => {
                diesel::update(target)
                    .set(users::disabled.eq(false))
                    .execute(tx)?;
                ("account.enable", None)
            }
            AccountChange::Role(role) => {
                if *role == Role::Submitter && user.organisation_id.is_none() {
                    return Err(AppError::Invalid(
                        "A submitter needs an organisation; create a new account instead.".into(),
                    ));
                }
                diesel::update(target)
                    .set(users::role.eq(role.as_str()))
                    .execute(tx)?;
                account::delete_sessions_of(tx, user_id)?;
                (
                    "account.role",
                    Some(format!("{} -> {}", user.role, role.as_str())),
                )
            }
            AccountChange::Training(at) => {
                diesel::update(target)
                    .set(users::training_completed_at.eq(at))
                    .execute(tx)?;
                (
                    "account.training",
                    Some(
                        at.map(crate::time::date)
                            .unwrap_or_else(|| "cleared".into()),
                    ),
                )
            }
            AccountChange::Nda {
                signed_at,
                reference,
            } => {
                diesel::update(target)
                    .set((
                        users::nda_signed_at.eq(signed_at),
                        users::nda_reference.eq(reference),
                    ))
                    .execute(tx)?;
                (
                    "account.nda",
                    Some(
                        signed_at
                            .map(crate::time::date)
                            .unwrap_or_else(|| "cleared".into()),
                    ),
                )
            }
        };
        let mut event = Event::new(action, Outcome::Success).object("account", user_id);
        if let Some(r) = reason {
            event = event.reason(r);
        }
        Ok(((), event))
    })
}

/// Issues a one-time setup link token when no administrator exists; `None` when one does.
pub fn issue_setup_token(
    conn: &mut DbConn,
    audit: &AuditLog,
    minutes: i64,
) -> AppResult<Option<String>> {
    audit.fact(conn, &Actor::cli(), |tx| {
        if account::any_administrator(tx)? {
            return Ok((
                None,
                Event::new("setup.link", Outcome::Refused).reason("an administrator exists"),
            ));
        }
        let token = sessions::new_token();
        diesel::insert_into(setup_tokens::table)
            .values((
                setup_tokens::token_hash.eq(sessions::hash_token(&token)),
                setup_tokens::expires_at.eq(now() + minutes * 60),
                setup_tokens::used.eq(false),
            ))
            .execute(tx)?;
        Ok((
            Some(token),
            Event::new("setup.link", Outcome::Success).reason(format!("expires in {minutes} min")),
        ))
    })
}

/// True when the token is live (unused, unexpired) and no administrator exists yet.
pub fn setup_token_live(conn: &mut DbConn, token: &str) -> AppResult<bool> {
    let live = setup_tokens::table
        .find(sessions::hash_token(token))
        .filter(setup_tokens::used.eq(false))
        .filter(setup_tokens::expires_at.gt(now()))
        .count()
        .get_result::<i64>(conn)?
        > 0;
    Ok(live && !account::any_administrator(conn)?)
}

/// Creates the first administrator with a live setup token, and spends the token, in one transaction.
#[allow(clippy::too_many_arguments)]
pub fn complete_setup(
    conn: &mut DbConn,
    audit: &AuditLog,
    hasher: &Hasher,
    actor: &Actor,
    token: &str,
    email: &str,
    display_name: &str,
    password: &str,
) -> AppResult<Result<String, FieldErrors>> {
    let new = NewAccount {
        email: email.into(),
        display_name: display_name.into(),
        role: Role::Administrator,
        organisation: None,
        password: password.into(),
    };
    let errors = validate_new_account(&new);
    if !errors.is_empty() {
        return Ok(Err(errors));
    }
    let hash = hasher
        .hash(password)
        .map_err(|e| AppError::Internal(format!("argon2: {e}")))?;
    let email = normalize_email(email);
    audit.fact(conn, actor, |tx| {
        let spent = diesel::update(
            setup_tokens::table
                .find(sessions::hash_token(token))
                .filter(setup_tokens::used.eq(false))
                .filter(setup_tokens::expires_at.gt(now())),
        )
        .set(setup_tokens::used.eq(true))
        .execute(tx)?;
        if spent != 1 || account::any_administrator(tx)? {
            return Err(AppError::Gone(
                "This setup link has been used or has expired. Restart the portal for a new one."
                    .into(),
            ));
        }
        if account::find_by_email(tx, &email)?.is_some() {
            return Err(AppError::Conflict(
                "An account with this email already exists.".into(),
            ));
        }
        let id = new_id();
        let ts = now();
        diesel::insert_into(users::table)
            .values(NewUser {
                id: &id,
                email: &email,
                display_name: display_name.trim(),
                role: Role::Administrator.as_str(),
                organisation_id: None,
                password_hash: &hash,
                disabled: false,
                created_at: ts,
                password_changed_at: ts,
            })
            .execute(tx)?;
        Ok((
            Ok(id.clone()),
            Event::new("setup.complete", Outcome::Success).object("account", &id),
        ))
    })
}
