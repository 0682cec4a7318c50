//! Account rules: direct creation (host CLI), an administrator's changes (role, disable, training, NDA), and
//! the one-time setup link. Every change commits together with its audit entry.

use super::password::{check_policy, Hasher};
use super::sessions;
use crate::audit::log::{Actor, AuditLog, Event, Outcome};
use crate::db::{new_id, Db, DbConn};
use crate::domain::Role;
use crate::error::{AppError, AppResult};
use crate::models::account::{self, normalize_email, NewUser};
use crate::models::{grant, session, setup_token};

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

/// Which organisation a new account belongs to: by id, or a new one made for it. Never by name.
#[derive(Debug, Clone)]
pub enum Membership {
    None,
    Existing(String),
    New(String),
}

/// An account made directly by someone who holds the server's files (the host CLI, tests): its email counts
/// as verified. People on the web register (a new organisation) or are invited.
pub struct NewAccount {
    pub email: String,
    pub display_name: String,
    pub role: Role,
    pub membership: Membership,
    /// Whether it administers its organisation's membership.
    pub org_admin: bool,
    /// The agency or office of a staff account.
    pub agency: Option<String>,
    pub password: String,
}

/// Problems with the fields every new account has: email, name, password.
pub fn validate_person(email: &str, display_name: &str, password: Option<&str>) -> FieldErrors {
    let mut errors = FieldErrors::default();
    let email = normalize_email(email);
    if let Some(m) = account::email_problem(&email) {
        errors.add("email", m);
    }
    let name = display_name.trim();
    if name.is_empty() || name.chars().count() > 120 || name.chars().any(unfit_in_a_name) {
        errors.add(
            "display_name",
            "Enter the person's name (up to 120 characters, without control or text-direction characters).",
        );
    }
    if let Some(p) = password {
        if let Err(m) = check_policy(p, &email) {
            errors.add("password", m);
        }
    }
    errors
}

/// A one-line name (an organisation, an agency): trimmed, 1..=200 characters, no control characters.
pub fn valid_name(name: &str) -> bool {
    let n = name.trim();
    !n.is_empty() && n.chars().count() <= 200 && !n.chars().any(unfit_in_a_name)
}

/// Control characters, and those that reorder or hide text: bidirectional embeddings, overrides and isolates
/// (`U+202E` before `moc.elpmaxe` shows it as `example.com` in a mail or a list), zero-width spaces and the BOM.
/// Joiners and direction marks, which real Persian, Urdu and Indic names carry, are kept.
fn unfit_in_a_name(c: char) -> bool {
    c.is_control()
        || matches!(c, '\u{200B}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

fn validate_new_account(a: &NewAccount) -> FieldErrors {
    let mut errors = validate_person(&a.email, &a.display_name, Some(&a.password));
    match (&a.membership, a.role) {
        (Membership::New(name), _) if !valid_name(name) => errors.add(
            "organisation",
            "Enter the organisation's name (up to 200 characters, without control or text-direction characters).",
        ),
        (Membership::None, Role::Submitter) => errors.add(
            "organisation",
            "A submitter belongs to an organisation: give its id, or create a new one.",
        ),
        _ => {}
    }
    if let Some(agency) = &a.agency {
        if !agency.trim().is_empty() && !valid_name(agency) {
            errors.add(
                "agency",
                "Enter the agency or office (up to 200 characters).",
            );
        }
    }
    errors
}

/// Creates an account directly (host CLI, tests). Field errors come back as `Ok(Err(..))`.
pub fn create(
    db: &Db,
    audit: &AuditLog,
    hasher: &Hasher,
    actor: &Actor,
    new: NewAccount,
    now: i64,
) -> AppResult<Result<String, FieldErrors>> {
    let errors = validate_new_account(&new);
    if !errors.is_empty() {
        return Ok(Err(errors));
    }
    let email = normalize_email(&new.email);
    // Hashed with no connection held.
    let hash = hasher.hash(&new.password)?;
    audit.fact(&mut *db.get()?, actor, |tx| {
        if account::find_by_email(tx, &email)?.is_some() {
            let mut errors = FieldErrors::default();
            errors.add("email", "An account with this email already exists.");
            let event =
                Event::new("account.create", Outcome::Failure).reason("email already registered");
            return Ok((Err(errors), event));
        }
        let org_id = match &new.membership {
            Membership::None => None,
            Membership::Existing(id) => match account::find_organisation(tx, id.trim())? {
                Some(o) => Some(o.id),
                None => {
                    let mut errors = FieldErrors::default();
                    errors.add("organisation", "No organisation has this id.");
                    let event = Event::new("account.create", Outcome::Failure)
                        .reason("unknown organisation id");
                    return Ok((Err(errors), event));
                }
            },
            Membership::New(name) => Some(account::create_organisation(tx, name, now)?),
        };
        let id = new_id();
        let agency = new
            .agency
            .as_deref()
            .map(str::trim)
            .filter(|a| !a.is_empty());
        account::insert(
            tx,
            &NewUser {
                id: &id,
                email: &email,
                display_name: new.display_name.trim(),
                role: new.role,
                organisation_id: org_id.as_deref(),
                password_hash: &hash,
                disabled: false,
                created_at: now,
                password_changed_at: now,
                // Only a company's person administers its membership, never a staff account.
                org_admin: new.org_admin && org_id.is_some() && new.role == Role::Submitter,
                email_verified_at: Some(now),
                agency,
            },
        )?;
        let mut reason = format!("role {}", new.role.as_str());
        if let Some(org) = &org_id {
            reason.push_str(&format!(", organisation {org}"));
            if matches!(new.membership, Membership::New(_)) {
                reason.push_str(" (new)");
            }
        }
        let event = Event::new("account.create", Outcome::Success)
            .object("account", &id)
            .reason(reason);
        Ok((Ok(id), event))
    })
}

pub enum AccountChange {
    /// Asks for a reason, kept in the audit entry.
    Disable {
        reason: String,
    },
    Enable,
    Role(Role),
    /// Every second factor deleted, every session ended and the password voided: the person chooses a new password
    /// through a mailed reset link, then enrols again at the next sign-in.
    ResetFactors {
        reason: String,
    },
    Training(Option<i64>),
    Nda {
        signed_at: Option<i64>,
        expires_at: Option<i64>,
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
            && matches!(
                change,
                AccountChange::Disable { .. } | AccountChange::Role(_)
            )
        {
            return Err(AppError::Conflict(
                "You cannot disable your own account or change your own role.".into(),
            ));
        }
        let (action, reason) = apply_change(tx, audit, actor, &user, change)?;
        let mut event = Event::new(action, Outcome::Success).object("account", user_id);
        if let Some(r) = reason {
            event = event.reason(r);
        }
        Ok(((), event))
    })
}

/// Applies one change to an account inside the caller's fact (its transaction, the audit head locked): the
/// audit action and its reason. Disabling and role changes end every session of the account; disabling an
/// authorized user, or moving it to another role, also revokes its live need-to-know grants (one
/// `grant.revoked` entry each), so that re-enabling it or moving it back does not give PCII back without
/// an officer's new grant.
pub fn apply_change(
    tx: &mut DbConn,
    audit: &AuditLog,
    actor: &Actor,
    user: &crate::models::account::User,
    change: AccountChange,
) -> AppResult<(&'static str, Option<String>)> {
    let user_id = user.id.as_str();
    let applied = match &change {
        AccountChange::Disable { reason } => {
            account::set_disabled(tx, user_id, true)?;
            let ended = session::delete_all_of(tx, user_id)?;
            super::registration::void_reset_links(tx, user_id, audit.now())?;
            let revoked = revoke_grants(tx, audit, actor, user_id, "the account was disabled")?;
            (
                "account.disable",
                Some(format!(
                    "{reason} ({ended} session(s) ended{})",
                    grants_note(revoked)
                )),
            )
        }
        AccountChange::Enable => {
            account::set_disabled(tx, user_id, false)?;
            ("account.enable", None)
        }
        AccountChange::Role(role) => {
            // Membership is granted by the organisation, never by a role change: a staff account (which
            // may carry a company's id as its conflict of interest) never turns into that company's member.
            if *role == Role::Submitter && user.role() != Role::Submitter {
                return Err(AppError::Invalid(
                        "A staff account cannot become a company's member. The company's administrator invites the person instead.".into(),
                    ));
            }
            account::set_role(tx, user_id, *role)?;
            session::delete_all_of(tx, user_id)?;
            let revoked = if user.role() == Role::AuthorizedUser && *role != Role::AuthorizedUser {
                let why = format!("the account's role changed to {}", role.as_str());
                revoke_grants(tx, audit, actor, user_id, &why)?
            } else {
                0
            };
            (
                "account.role",
                Some(format!(
                    "{} -> {}{}",
                    user.role.as_str(),
                    role.as_str(),
                    grants_note(revoked)
                )),
            )
        }
        AccountChange::ResetFactors { reason } => {
            let what = super::second_factor::delete_all(tx, user_id)?;
            let ended = session::delete_all_of(tx, user_id)?;
            // The password goes too: whoever knows it (the factor was what stopped them) would otherwise enrol a
            // factor of their own at the next sign-in, before the person. A new one is chosen through a link mailed
            // to the account's address ("Forgot your password?"), so the mailbox stands before the new factor.
            account::set_password(tx, user_id, super::password::VOIDED, audit.now())?;
            (
                "mfa.reset",
                Some(format!(
                    "{reason}; {what}; {ended} session(s) ended; password voided"
                )),
            )
        }
        AccountChange::Training(at) => {
            account::set_training_completed(tx, user_id, *at)?;
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
            expires_at,
            reference,
        } => {
            account::set_nda(tx, user_id, *signed_at, *expires_at, reference.as_deref())?;
            (
                "account.nda",
                Some(match (signed_at, expires_at) {
                    (None, _) => "cleared".to_string(),
                    (Some(s), None) => crate::time::date(*s),
                    (Some(s), Some(e)) => {
                        format!(
                            "{}, expires {}",
                            crate::time::date(*s),
                            crate::time::date(*e)
                        )
                    }
                }),
            )
        }
    };
    Ok(applied)
}

/// Revokes the account's live grants with `why` as the stored reason (the system's words, no PCII), each with
/// its own `grant.revoked` entry on the submission, and closes its pending access requests (`access_request.refused`
/// each): how many grants.
fn revoke_grants(
    tx: &mut DbConn,
    audit: &AuditLog,
    actor: &Actor,
    user_id: &str,
    why: &str,
) -> AppResult<usize> {
    let now = audit.now();
    let revoked = grant::revoke_all_live(tx, user_id, actor.user_id.as_deref(), why, now)?;
    for g in &revoked {
        let event = Event::new("grant.revoked", Outcome::Success)
            .object("submission", g.submission_id.clone())
            .tracking(g.tracking_number.clone())
            .reason(format!("from account {user_id}; {why}"));
        audit.append(tx, actor, &event)?;
    }
    // Its requests waiting for access can no longer be granted either: closed, each with its entry.
    use crate::models::access_request::{close_pending, PendingOf};
    let closed = close_pending(tx, PendingOf::User(user_id), actor.user_id.as_deref(), now)?;
    for c in &closed {
        audit.append(tx, actor, &c.event(why))?;
    }
    Ok(revoked.len())
}

fn grants_note(revoked: usize) -> String {
    match revoked {
        0 => String::new(),
        n => format!("; {n} need-to-know grant(s) revoked"),
    }
}

/// Issues a one-time setup link token when no administrator exists; `None` when one does.
pub fn issue_setup_token(
    conn: &mut DbConn,
    audit: &AuditLog,
    minutes: i64,
    now: i64,
) -> AppResult<Option<String>> {
    audit.fact(conn, &Actor::cli(), |tx| {
        if account::any_administrator(tx)? {
            return Ok((
                None,
                Event::new("setup.link", Outcome::Refused).reason("an administrator exists"),
            ));
        }
        // Each start prints a new link: the ones printed before stop working (they stayed live, one per restart,
        // each in the journal).
        setup_token::retire_unused(tx)?;
        let token = sessions::new_token();
        setup_token::insert(tx, &sessions::hash_token(&token), now + minutes * 60)?;
        Ok((
            Some(token),
            Event::new("setup.link", Outcome::Success).reason(format!("expires in {minutes} min")),
        ))
    })
}

/// True when the token is live (unused, unexpired) and no administrator exists yet.
pub fn setup_token_live(conn: &mut DbConn, token: &str, now: i64) -> AppResult<bool> {
    let live = setup_token::is_live(conn, &sessions::hash_token(token), now)?;
    Ok(live && !account::any_administrator(conn)?)
}

fn setup_link_gone() -> AppError {
    AppError::Gone(
        "This setup link has been used or has expired. Restart the portal for a new one.".into(),
    )
}

/// Creates the first administrator with a live setup token, and spends the token, in one transaction.
#[allow(clippy::too_many_arguments)]
pub fn complete_setup(
    db: &Db,
    audit: &AuditLog,
    hasher: &Hasher,
    actor: &Actor,
    token: &str,
    email: &str,
    display_name: &str,
    password: &str,
    now: i64,
) -> AppResult<Result<String, FieldErrors>> {
    // Checked first, as a reset or an invitation link is: a made-up or spent link costs a read, not the password
    // policy's estimate or an argon2 run (and again in the transaction, where it is spent).
    if !setup_token_live(&mut *db.get()?, token, now)? {
        return Err(setup_link_gone());
    }
    let errors = validate_person(email, display_name, Some(password));
    if !errors.is_empty() {
        return Ok(Err(errors));
    }
    // Hashed with no connection held.
    let hash = hasher.hash(password)?;
    let email = normalize_email(email);
    audit.fact(&mut *db.get()?, actor, |tx| {
        let spent = setup_token::spend(tx, &sessions::hash_token(token), now)?;
        if spent != 1 || account::any_administrator(tx)? {
            return Err(setup_link_gone());
        }
        if account::find_by_email(tx, &email)?.is_some() {
            return Err(AppError::Conflict(
                "An account with this email already exists.".into(),
            ));
        }
        let id = new_id();
        account::insert(
            tx,
            &NewUser {
                id: &id,
                email: &email,
                display_name: display_name.trim(),
                role: Role::Administrator,
                organisation_id: None,
                password_hash: &hash,
                disabled: false,
                created_at: now,
                password_changed_at: now,
                org_admin: false,
                email_verified_at: Some(now),
                agency: None,
            },
        )?;
        Ok((
            Ok(id.clone()),
            Event::new("setup.complete", Outcome::Success).object("account", &id),
        ))
    })
}
