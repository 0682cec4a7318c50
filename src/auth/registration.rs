//! Self-service: registering a new organisation, confirming an email address, and resetting a forgotten
//! password. Each answers a visitor the same way whether or not an address has an account; what happened is
//! in the audit log and, for the owner of an address, in its mailbox.

use super::accounts::{valid_name, validate_person, FieldErrors};
use super::password::{check_policy, Hasher};
use super::sessions::{hash_token, new_token};
use super::throttle::{self, Policy, ThrottleKey};
use crate::audit::log::{Actor, AuditLog, Event, Outcome};
use crate::audit::refusals::{record_anonymous, RefusalTally};
use crate::config::Settings;
use crate::db::{new_id, Db, DbConn};
use crate::domain::Role;
use crate::error::{AppError, AppResult};
use crate::mail::{messages, Mail, Mailer};
use crate::models::account::{self, normalize_email, NewUser, User};
use crate::models::account_token::{self, Purpose};
use crate::models::session;
use crate::models::settings;

const HOUR: i64 = 3600;

/// Issues a mailed link's token for an account, voiding its earlier unused tokens of the same purpose (only
/// the newest link works). Returns the token for the link.
fn issue_link(
    conn: &mut DbConn,
    user_id: &str,
    purpose: Purpose,
    now: i64,
    lifetime_secs: i64,
) -> AppResult<String> {
    account_token::void(conn, user_id, purpose, now)?;
    let token = new_token();
    account_token::insert(
        conn,
        &hash_token(&token),
        user_id,
        purpose,
        now,
        now + lifetime_secs,
    )?;
    Ok(token)
}

pub struct Registration {
    pub email: String,
    pub display_name: String,
    pub organisation: String,
    pub password: String,
}

/// Registers a person with a *new* organisation, of which it becomes the first organisation administrator.
/// It never joins an existing organisation, whatever the name typed: names identify nothing. Returns the
/// message to send (a confirmation link, or to the owner of an address already registered a note saying so).
#[allow(clippy::too_many_arguments)]
pub fn register(
    db: &Db,
    audit: &AuditLog,
    refusals: &RefusalTally,
    hasher: &Hasher,
    keys: &ThrottleKey,
    mailer: &Mailer,
    settings: &Settings,
    actor: &Actor,
    reg: Registration,
    now: i64,
) -> AppResult<Result<Mail, FieldErrors>> {
    let mut errors = validate_person(&reg.email, &reg.display_name, Some(&reg.password));
    if !valid_name(&reg.organisation) {
        errors.add(
            "organisation",
            "Enter your organisation's name (up to 200 characters, without control or text-direction characters).",
        );
    }
    if !errors.is_empty() {
        return Ok(Err(errors));
    }
    let addr = actor.client_addr.as_deref().unwrap_or("unknown");
    let per_network = Policy {
        max_failures: settings.registrations_per_hour,
        window_secs: HOUR,
    };
    // Each registration makes an organisation before its address is confirmed: many networks together are
    // limited too, not only each one.
    let overall = Policy {
        max_failures: settings.registrations_per_hour_total,
        window_secs: HOUR,
    };
    if !throttle::allow_all(
        &mut *db.get()?,
        &[
            (&keys.registration(addr), per_network),
            (&keys.registrations_overall(), overall),
        ],
        now,
    )? {
        // Folded like other anonymous refusals: a flood costs the log one entry and a count per minute.
        record_anonymous(
            &mut *db.get()?,
            audit,
            refusals,
            actor,
            Event::new("account.register", Outcome::Refused)
                .object("route", "/register")
                .reason("throttled"),
            now,
        )?;
        return Err(AppError::Throttled(
            "Too many registrations from your network. Try again in an hour.".into(),
        ));
    }
    let email = normalize_email(&reg.email);
    // Hashed with no connection held.
    let hash = hasher.hash(&reg.password)?;
    let verify_secs = settings.email_verification_hours * HOUR;
    audit.fact(&mut *db.get()?, actor, |tx| {
        if !settings::self_registration_open(tx)? {
            return Err(AppError::Refused(
                "Self-registration is closed. Ask the PCII Program Office for an account.".into(),
            ));
        }
        if account::find_by_email(tx, &email)?.is_some() {
            let mail = messages::already_registered(&email, &mailer.link("/password/forgot"));
            let event =
                Event::new("account.register", Outcome::Failure).reason("email already registered");
            return Ok((Ok(mail), event));
        }
        let org_id = account::create_organisation(tx, &reg.organisation, now)?;
        let id = new_id();
        account::insert(
            tx,
            &NewUser {
                id: &id,
                email: &email,
                display_name: reg.display_name.trim(),
                role: Role::Submitter,
                organisation_id: Some(&org_id),
                password_hash: &hash,
                disabled: false,
                created_at: now,
                password_changed_at: now,
                org_admin: true,
                email_verified_at: None,
                agency: None,
            },
        )?;
        let token = issue_link(tx, &id, Purpose::VerifyEmail, now, verify_secs)?;
        let mail = messages::verify_email(
            &email,
            &mailer.link(&format!("/verify-email/{token}")),
            settings.email_verification_hours,
            settings.unconfirmed_account_days,
        );
        let event = Event::new("account.register", Outcome::Success)
            .object("account", &id)
            .reason(format!(
                "new organisation {org_id}, organisation administrator"
            ));
        Ok((Ok(mail), event))
    })
}

/// True while a link of this purpose is live (for the page in front of the form).
pub fn link_live(conn: &mut DbConn, token: &str, purpose: Purpose, now: i64) -> AppResult<bool> {
    Ok(account_token::peek(conn, &hash_token(token), purpose, now)?.is_some())
}

const LINK_GONE: &str =
    "This link has been used or has expired. Ask for a new one with \"Forgot your password?\" on the sign-in page.";

/// Confirms the address of `user_id` with its single-use link, inside the transaction of the sign-in that gave the
/// password chosen at registration ([`crate::auth::login::login`]): a link confirms nothing for whoever merely
/// receives it, or someone who registered another's address (a squatter) would have it confirmed by the owner's
/// click, and the account would pass for the owner's. `false`, nothing spent, when the link is not live or is
/// another account's.
pub fn confirm_by_link(
    tx: &mut DbConn,
    audit: &AuditLog,
    actor: &Actor,
    token: &str,
    user_id: &str,
    now: i64,
) -> AppResult<bool> {
    let hash = hash_token(token);
    if account_token::peek(tx, &hash, Purpose::VerifyEmail, now)?.as_deref() != Some(user_id)
        || account_token::spend(tx, &hash, Purpose::VerifyEmail, now)?.is_none()
    {
        return Ok(false);
    }
    account::set_email_verified(tx, user_id, now)?;
    audit.append(
        tx,
        actor,
        &Event::new("account.verify_email", Outcome::Success).object("account", user_id),
    )?;
    Ok(true)
}

/// The account a live confirmation link was sent for (for the page in front of the sign-in it takes).
pub fn confirmation_for(conn: &mut DbConn, token: &str, now: i64) -> AppResult<Option<User>> {
    match account_token::peek(conn, &hash_token(token), Purpose::VerifyEmail, now)? {
        Some(user_id) => Ok(account::find_opt(conn, &user_id)?.filter(|u| !u.email_verified())),
        None => Ok(None),
    }
}

/// "Forgot your password?": mails a reset link when the address has a live account, and answers the same
/// either way. Rate-limited per client address.
#[allow(clippy::too_many_arguments)]
pub fn request_reset(
    conn: &mut DbConn,
    audit: &AuditLog,
    refusals: &RefusalTally,
    keys: &ThrottleKey,
    mailer: &Mailer,
    settings: &Settings,
    actor: &Actor,
    email: &str,
    now: i64,
) -> AppResult<Option<Mail>> {
    let addr = actor.client_addr.as_deref().unwrap_or("unknown");
    let limit = Policy {
        max_failures: settings.password_resets_per_hour,
        window_secs: HOUR,
    };
    let (per_address, per_site) = (keys.password_reset(addr), keys.password_reset_site(addr));
    let limits = throttle::per_address_and_site(&per_address, per_site.as_deref(), limit);
    if !throttle::allow_all(conn, &limits, now)? {
        record_anonymous(
            conn,
            audit,
            refusals,
            actor,
            Event::new("account.reset_request", Outcome::Refused)
                .object("route", "/password/forgot")
                .reason("throttled"),
            now,
        )?;
        return Err(AppError::Throttled(
            "Too many requests from your network. Try again in an hour.".into(),
        ));
    }
    let email = normalize_email(email);
    let minutes = settings.password_reset_minutes;
    audit.fact(conn, actor, |tx| {
        let user = if account::email_problem(&email).is_none() {
            account::find_by_email(tx, &email)?
        } else {
            None
        };
        match user {
            // Asked from many networks, one address still gets at most this many links an hour: past it the
            // answer stays the same (it must not tell whether the address has an account) and no mail goes.
            Some(u)
                if !u.disabled
                    && account_token::issued_since(
                        tx,
                        &u.id,
                        Purpose::ResetPassword,
                        now - HOUR,
                    )? >= settings.password_resets_per_hour =>
            {
                Ok((
                    None,
                    Event::new("account.reset_request", Outcome::Refused)
                        .object("account", &u.id)
                        .reason("throttled for this account"),
                ))
            }
            Some(u) if !u.disabled => {
                let token = issue_link(tx, &u.id, Purpose::ResetPassword, now, minutes * 60)?;
                // The name is the registrant's own words until the address is confirmed (whoever registered it may
                // not be its owner): the mail greets no one by it till then.
                let name = u
                    .email_verified_at
                    .is_some()
                    .then_some(u.display_name.as_str());
                let mail = messages::reset_password(
                    &u.email,
                    name,
                    &mailer.link(&format!("/password/reset/{token}")),
                    minutes,
                );
                Ok((
                    Some(mail),
                    Event::new("account.reset_request", Outcome::Success).object("account", &u.id),
                ))
            }
            Some(u) => Ok((
                None,
                Event::new("account.reset_request", Outcome::Refused)
                    .object("account", &u.id)
                    .reason("account disabled"),
            )),
            None => Ok((
                None,
                Event::new("account.reset_request", Outcome::Failure).reason("unknown address"),
            )),
        }
    })
}

/// Voids an account's unused reset links, as its account is disabled (by the Program Office, or with its removal
/// from its organisation): one mailed before would still set a password, in place once the account is enabled again.
pub(crate) fn void_reset_links(tx: &mut DbConn, user_id: &str, now: i64) -> AppResult<()> {
    account_token::void(tx, user_id, Purpose::ResetPassword, now)?;
    Ok(())
}

/// Sets a new password with a live reset link. Every session of the account ends, every other reset link
/// is void, and the address counts as confirmed (the link reached it).
pub fn reset_password(
    db: &Db,
    audit: &AuditLog,
    hasher: &Hasher,
    actor: &Actor,
    token: &str,
    new_password: &str,
    now: i64,
) -> AppResult<Result<(), FieldErrors>> {
    let (user_id, user) = {
        let conn = &mut db.get()?;
        let Some(user_id) =
            account_token::peek(conn, &hash_token(token), Purpose::ResetPassword, now)?
        else {
            return Err(AppError::Gone(LINK_GONE.into()));
        };
        let user = account::find(conn, &user_id)?;
        (user_id, user)
    };
    if let Err(m) = check_policy(new_password, &user.email) {
        let mut errors = FieldErrors::default();
        errors.add("new_password", m);
        return Ok(Err(errors));
    }
    // Hashed with no connection held.
    let hash = hasher.hash(new_password)?;
    audit.fact(&mut *db.get()?, actor, |tx| {
        if account_token::spend(tx, &hash_token(token), Purpose::ResetPassword, now)?.as_deref()
            != Some(user_id.as_str())
        {
            return Err(AppError::Gone(LINK_GONE.into()));
        }
        // The account as it stands now. Disabled meanwhile (its links are voided when it is): no password is set
        // for an account the Program Office or its organisation closed. Confirmed meanwhile (its owner's link): its
        // second factors are the owner's, and stay.
        let user = account::find(tx, &user_id)?;
        if user.disabled {
            return Err(AppError::Gone(LINK_GONE.into()));
        }
        // The address counts as confirmed (the link reached it), from its first confirmation if it had one.
        let verified_at = user.email_verified_at.unwrap_or(now);
        account::set_password_with_email_verified(tx, &user_id, &hash, now, verified_at)?;
        account_token::void(tx, &user_id, Purpose::ResetPassword, now)?;
        super::second_factor::forget_pending_totp(tx, &user_id)?;
        let mut reason = String::new();
        if user.email_verified_at.is_none() {
            // The address is proved only now: whatever second factor the account had was set up by whoever
            // registered it without proving it (possibly squatting it), not by its owner.
            reason = format!(
                "; address confirmed by this reset, {}",
                super::second_factor::delete_all(tx, &user_id)?
            );
        }
        let ended = session::delete_all_of(tx, &user_id)?;
        Ok((
            Ok(()),
            Event::new("account.password_reset", Outcome::Success)
                .object("account", &user_id)
                .reason(format!("{ended} session(s) ended{reason}")),
        ))
    })
}
