//! Membership and privilege are granted, never asserted. On the web, the only ways into an existing
//! organisation or a staff role are:
//! - an organisation administrator invites a colleague into its own organisation;
//! - an administrator invites a company's person into an existing organisation, which takes effect only when
//!   that organisation's administrator (or, where it has none, a PCII officer) approves;
//! - an administrator invites staff (officer, authorized user, auditor, administrator), or changes an
//!   account's role to one of them, which takes effect only when a *second* administrator approves while
//!   the portal has two or more active administrators (the two-person rule).
//!
//! The invitee chooses its own password from the emailed single-use link; no page lets anyone set or see
//! another person's password. Every step commits with its audit entry, naming both people where two act.

use super::accounts::{valid_name, validate_person, FieldErrors, Membership};
use super::password::{check_policy, Hasher};
use super::sessions::{hash_token, new_token};
use crate::audit::log::{Actor, AuditLog, Event, Outcome};
use crate::config::Settings;
use crate::db::{new_id, Db, DbConn};
use crate::domain::Role;
use crate::error::{AppError, AppResult};
use crate::mail::{messages, Mail, Mailer};
use crate::models::account::{self, normalize_email, NewUser, User};
use crate::models::invitation::{
    self as model, Approval, Invitation, NewInvitation, ACCEPTED, AWAITING_APPROVAL, REFUSED,
    REVOKED,
};

const DAY: i64 = 86_400;

/// Invitations one organisation's administrators may make in an hour, all of them together (each new member made an
/// administrator must not bring twenty more an hour). Each is a mail carrying names its organisation typed to any
/// address; a company onboarding its staff stays well under it. (Office staff are not capped.)
pub const ORGANISATION_INVITATIONS_PER_HOUR: i64 = 20;
/// Organisations that may invite one address in a day (an organisation inviting the same address again, after a
/// typo, does not count twice): the portal's mail must not be a way to flood one inbox from many shell companies.
pub const ORGANISATIONS_PER_ADDRESS_PER_DAY: i64 = 3;

/// What the inviter typed.
pub struct InvitationRequest {
    pub email: String,
    pub display_name: String,
    pub role: Role,
    /// For a submitter: the organisation by id, or a new one (whose first administrator the invitee becomes).
    /// For an officer: optionally the organisation it must never decide for (conflict of interest).
    pub membership: Membership,
    /// The agency or office of a staff account (required for staff).
    pub agency: Option<String>,
}

/// What became of a new invitation.
pub enum Invited {
    /// The link is on its way.
    Sent { id: String, mail: Mail },
    /// It waits for someone else's approval before any link exists.
    AwaitingApproval { id: String, approver: &'static str },
}

fn is_org_admin(u: &User) -> bool {
    u.role() == Role::Submitter
        && u.org_admin
        && !u.disabled
        && u.email_verified()
        && u.organisation_id.is_some()
}

/// Whether the PCII Program Office has verified the organisation an invitation is into, and who invited: anyone may
/// register an organisation under a real company's name, and a new hire invited into such a lookalike would submit
/// to whoever made it. Said first and on its own line (mail) or paragraph (page), so that a name the organisation
/// chose cannot come before it and claim otherwise. `None` for an invitation that is not into an organisation.
fn standing(conn: &mut DbConn, inv: &Invitation) -> AppResult<Option<String>> {
    let (Role::Submitter, Some(org)) = (inv.role(), &inv.organisation_id) else {
        return Ok(None);
    };
    let organisation = crate::models::organisation::find(conn, org)?;
    let verified = if organisation.verified_at.is_some() {
        "This organisation has been verified by the PCII Program Office."
    } else {
        "This organisation has NOT been verified by the PCII Program Office: anyone can register one under any \
         name. Accept only if you know the invitation comes from your own company."
    };
    // A member of the organisation is named (the invitee can ask it); staff are the Office.
    let by = match &inv.invited_by {
        Some(id) => match account::find_opt(conn, id)? {
            Some(u) if u.organisation_id.as_deref() == Some(org.as_str()) => {
                format!(" You were invited by {} <{}>.", u.display_name, u.email)
            }
            Some(_) => " You were invited by the PCII Program Office.".to_string(),
            None => String::new(),
        },
        None => String::new(),
    };
    Ok(Some(format!("{verified}{by}")))
}

/// What the invitee is invited as, for the message and the acceptance page (an organisation's name quoted: it is
/// whatever its registrant typed).
fn what(conn: &mut DbConn, inv: &Invitation) -> AppResult<String> {
    Ok(
        match (inv.role(), &inv.organisation_id, &inv.new_organisation) {
            (Role::Submitter, Some(org), _) => {
                format!(
                    "as a member of \"{}\"",
                    account::organisation_name(conn, org)?
                )
            }
            (Role::Submitter, None, Some(name)) => {
                format!("to register {name} as its organisation administrator")
            }
            (role, _, _) => format!("as {}", article(role.label())),
        },
    )
}

fn article(label: &str) -> String {
    let vowel = label
        .chars()
        .next()
        .is_some_and(|c| "AEIOUaeiou".contains(c));
    format!("{} {label}", if vowel { "an" } else { "a" })
}

/// Issues the link of an invitation that may go out now, and the message carrying it.
fn send_now(
    conn: &mut DbConn,
    mailer: &Mailer,
    settings: &Settings,
    inv: &Invitation,
    approved_by: Option<&str>,
    now: i64,
) -> AppResult<Mail> {
    let token = new_token();
    model::mark_sent(
        conn,
        &inv.id,
        &hash_token(&token),
        now + settings.invitation_days * DAY,
        approved_by,
    )?;
    Ok(messages::invitation(
        &inv.email,
        &inv.display_name,
        standing(conn, inv)?.as_deref(),
        &what(conn, inv)?,
        &mailer.link(&format!("/invitations/{token}")),
        settings.invitation_days,
    ))
}

fn refuse_field(field: &'static str, message: &str) -> AppResult<Result<Invited, FieldErrors>> {
    let mut errors = FieldErrors::default();
    errors.add(field, message);
    Ok(Err(errors))
}

/// Creates an invitation on behalf of `inviter` (an organisation administrator or an administrator).
#[allow(clippy::too_many_arguments)]
pub fn invite(
    conn: &mut DbConn,
    audit: &AuditLog,
    mailer: &Mailer,
    settings: &Settings,
    actor: &Actor,
    inviter: &User,
    req: InvitationRequest,
    now: i64,
) -> AppResult<Result<Invited, FieldErrors>> {
    let mut errors = validate_person(&req.email, &req.display_name, None);
    let agency = req
        .agency
        .as_deref()
        .map(str::trim)
        .filter(|a| !a.is_empty())
        .map(str::to_string);
    let staff = req.role != Role::Submitter;
    if let Some(a) = &agency {
        if !valid_name(a) {
            errors.add(
                "agency",
                "Enter the agency or office (up to 200 characters).",
            );
        }
    } else if staff {
        errors.add(
            "agency",
            "Enter the agency or office this person works for.",
        );
    }
    // Who may invite whom, and whose approval it then needs.
    let (membership, org_admin, approval) = match (inviter.role(), req.role) {
        (Role::Submitter, Role::Submitter) if is_org_admin(inviter) => (
            Membership::Existing(inviter.organisation_id.clone().unwrap_or_default()),
            false,
            None,
        ),
        (Role::Submitter, _) => {
            return Err(AppError::Refused(
                "Only your organisation's administrator invites its members.".into(),
            ))
        }
        (Role::Administrator, Role::Submitter) => match &req.membership {
            Membership::Existing(id) => (
                Membership::Existing(id.trim().to_string()),
                false,
                Some(Approval::Organisation),
            ),
            Membership::New(name) => {
                if !valid_name(name) {
                    errors.add(
                        "organisation",
                        "Enter the new organisation's name (up to 200 characters, without control or text-direction characters).",
                    );
                }
                (Membership::New(name.trim().to_string()), true, None)
            }
            Membership::None => {
                errors.add(
                    "organisation",
                    "A company's person belongs to an organisation: give its id, or name a new one.",
                );
                (Membership::None, false, None)
            }
        },
        (Role::Administrator, _) => {
            // A second administrator's approval, if the portal has one: counted in the fact, under its lock.
            let membership = match &req.membership {
                Membership::Existing(id) if !id.trim().is_empty() => {
                    Membership::Existing(id.trim().to_string())
                }
                _ => Membership::None,
            };
            (membership, false, Some(Approval::SecondAdministrator))
        }
        _ => {
            return Err(AppError::Refused(
                "Your role does not invite anyone.".into(),
            ))
        }
    };
    if !errors.is_empty() {
        return Ok(Err(errors));
    }
    let email = normalize_email(&req.email);
    let id = new_id();
    let result = audit.fact(conn, actor, |tx| {
        // The inviter as it stands now, under the fact's lock: one disabled, given another role, moved to another
        // organisation or no longer its administrator since its request was read invites no one.
        let current = account::find(tx, &inviter.id)?;
        let still_entitled = !current.disabled
            && current.role() == inviter.role()
            && current.organisation_id == inviter.organisation_id
            && (inviter.role() != Role::Submitter || is_org_admin(&current));
        if !still_entitled {
            let event = Event::new("invitation.create", Outcome::Refused)
                .reason("the inviter's role or membership changed while it was asked");
            return Ok((
                Err(AppError::Refused(
                    "Your account's role or membership changed while this was sent: you can no longer invite \
                     this way. Nothing was sent."
                        .into(),
                )),
                event,
            ));
        }
        let approval = match approval {
            Some(Approval::SecondAdministrator)
                if !(settings.two_person_rule && model::active_administrators(tx)? >= 2) =>
            {
                None
            }
            other => other,
        };
        if inviter.role() == Role::Submitter {
            let organisation = inviter.organisation_id.as_deref().unwrap_or_default();
            let refusal = if model::made_for_organisation_since(tx, organisation, now - DAY / 24)?
                >= ORGANISATION_INVITATIONS_PER_HOUR
            {
                Some(format!(
                    "Your organisation made {ORGANISATION_INVITATIONS_PER_HOUR} invitations in the last hour, the \
                     most allowed. Try again later."
                ))
            } else if model::organisations_inviting_since(tx, &email, organisation, now - DAY)?
                >= ORGANISATIONS_PER_ADDRESS_PER_DAY
            {
                Some("This address cannot be sent another invitation today. Try again tomorrow.".to_string())
            } else {
                None
            };
            if let Some(refusal) = refusal {
                let event = Event::new("invitation.create", Outcome::Refused).reason("throttled");
                return Ok((Err(AppError::Throttled(refusal)), event));
            }
        }
        let organisation_id = match &membership {
            Membership::Existing(org) => match account::find_organisation(tx, org)? {
                Some(o) => Some(o.id),
                None => {
                    let event = Event::new("invitation.create", Outcome::Failure)
                        .reason("unknown organisation id");
                    return Ok((
                        refuse_field("organisation", "No organisation has this id."),
                        event,
                    ));
                }
            },
            _ => None,
        };
        let new_organisation = match &membership {
            Membership::New(name) => Some(name.as_str()),
            _ => None,
        };
        // A newer invitation to the same address by the same person replaces its open one (never someone
        // else's: another organisation must not withdraw an invitation by inviting the same address).
        for old in model::open_ids_for(tx, &email, &inviter.id)? {
            model::close(tx, &old, REVOKED, Some(&inviter.id), None, now)?;
        }
        model::insert(
            tx,
            &NewInvitation {
                id: &id,
                token_hash: None,
                email: &email,
                display_name: req.display_name.trim(),
                role: req.role,
                organisation_id: organisation_id.as_deref(),
                new_organisation,
                org_admin,
                agency: agency.as_deref(),
                invited_by: Some(&inviter.id),
                approval: approval.map(Approval::as_str),
                state: AWAITING_APPROVAL,
                created_at: now,
                expires_at: now + settings.invitation_days * DAY,
            },
        )?;
        let inv = model::find(tx, &id)?;
        let mut reason = format!("role {}", req.role.as_str());
        if let Some(org) = &organisation_id {
            reason.push_str(&format!(", organisation {org}"));
        }
        if new_organisation.is_some() {
            reason.push_str(", new organisation");
        }
        let (invited, state) = match approval {
            None => {
                let mail = send_now(tx, mailer, settings, &inv, None, now)?;
                (
                    Invited::Sent {
                        id: id.clone(),
                        mail,
                    },
                    "sent",
                )
            }
            Some(Approval::SecondAdministrator) => (
                Invited::AwaitingApproval {
                    id: id.clone(),
                    approver: "a second administrator",
                },
                "awaiting a second administrator",
            ),
            Some(Approval::Organisation) => {
                let approver = if !model::organisation_has_administrator(
                    tx,
                    organisation_id.as_deref().unwrap_or(""),
                )? {
                    "a PCII officer (the organisation has no administrator)"
                } else {
                    "the organisation's administrator"
                };
                (
                    Invited::AwaitingApproval {
                        id: id.clone(),
                        approver,
                    },
                    "awaiting the organisation",
                )
            }
        };
        let event = Event::new("invitation.create", Outcome::Success)
            .object("invitation", &id)
            .reason(format!("{reason}; {state}"));
        Ok((Ok(Ok(invited)), event))
    })?;
    result
}

/// May `who` approve or refuse this invitation? (Never the person who made it.) An officer who would decide
/// for an organisation without an administrator, but is recorded against it, is refused with the conflict of
/// interest (403, and recorded), as verifying or merging it would be.
fn may_approve(conn: &mut DbConn, who: &User, inv: &Invitation) -> AppResult<bool> {
    if inv.invited_by.as_deref() == Some(who.id.as_str()) {
        return Ok(false);
    }
    Ok(match inv.approval() {
        Some(Approval::SecondAdministrator) => who.role() == Role::Administrator && !who.disabled,
        Some(Approval::Organisation) => {
            let org = inv.organisation_id.as_deref().unwrap_or("");
            if is_org_admin(who) && who.organisation_id.as_deref() == Some(org) {
                true
            } else if who.role() == Role::Officer
                && !who.disabled
                && !model::organisation_has_administrator(conn, org)?
            {
                super::membership::officer_may_act(who, &[org])?;
                true
            } else {
                false
            }
        }
        None => false,
    })
}

/// Approves an invitation waiting for `who`: its link goes out now. Returns the message to send.
#[allow(clippy::too_many_arguments)]
pub fn approve(
    conn: &mut DbConn,
    audit: &AuditLog,
    mailer: &Mailer,
    settings: &Settings,
    actor: &Actor,
    who: &User,
    invitation_id: &str,
    now: i64,
) -> AppResult<Mail> {
    audit.fact(conn, actor, |tx| {
        // As the person stands now, not as the request's guard read them before a slow body.
        let who = &account::find(tx, &who.id)?;
        let inv = model::find(tx, invitation_id)?;
        if inv.state != AWAITING_APPROVAL || !may_approve(tx, who, &inv)? {
            return refused(who, &inv);
        }
        let mail = send_now(tx, mailer, settings, &inv, Some(&who.id), now)?;
        let event = Event::new("invitation.approve", Outcome::Success)
            .object("invitation", &inv.id)
            .reason(format!(
                "role {}; invited by {}, approved by {}",
                inv.role.as_str(),
                inv.invited_by.as_deref().unwrap_or("cli"),
                who.id
            ));
        Ok((Ok(mail), event))
    })?
}

/// Refuses an invitation waiting for `who`: it never takes effect.
pub fn refuse(
    conn: &mut DbConn,
    audit: &AuditLog,
    actor: &Actor,
    who: &User,
    invitation_id: &str,
    now: i64,
) -> AppResult<()> {
    audit.fact(conn, actor, |tx| {
        let who = &account::find(tx, &who.id)?;
        let inv = model::find(tx, invitation_id)?;
        if inv.state != AWAITING_APPROVAL || !may_approve(tx, who, &inv)? {
            return refused(who, &inv);
        }
        model::close(tx, &inv.id, REFUSED, Some(&who.id), None, now)?;
        let event = Event::new("invitation.refuse", Outcome::Success)
            .object("invitation", &inv.id)
            .reason(format!(
                "role {}; invited by {}, refused by {}",
                inv.role.as_str(),
                inv.invited_by.as_deref().unwrap_or("cli"),
                who.id
            ));
        Ok((Ok(()), event))
    })?
}

/// An invitation outside the asker's reach answers 404, as an unknown id does, and the attempt is recorded
/// ([`out_of_reach`]); the inviter's own and a closed invitation are conflicts of state, not recorded.
fn refused<T>(who: &User, inv: &Invitation) -> AppResult<(AppResult<T>, Event)> {
    match refusal(who, inv) {
        AppError::NotFound => Ok((Err(AppError::NotFound), out_of_reach(inv))),
        e => Err(e),
    }
}

/// The entry for someone who reached for an invitation that is not theirs to decide or withdraw.
fn out_of_reach(inv: &Invitation) -> Event {
    Event::new("access.refused", Outcome::Refused)
        .object("invitation", &inv.id)
        .reason("invitation outside the asker's reach")
}

/// The answer to someone who may not decide an invitation: 404 to anyone outside the organisation (it
/// must not learn the invitation exists), 409 to the inviter itself and to a closed invitation its asker could
/// know of: any, for an administrator; for the company's people, an invitation of a company's person into their
/// organisation (a staff invitation naming it as a conflict of interest does not exist for them, open or closed).
fn refusal(who: &User, inv: &Invitation) -> AppError {
    let knows_of = who.role() == Role::Administrator
        || (who.role() == Role::Submitter
            && inv.role() == Role::Submitter
            && who.organisation_id.is_some()
            && who.organisation_id == inv.organisation_id);
    if inv.invited_by.as_deref() == Some(who.id.as_str()) {
        AppError::Conflict("Someone else must approve the invitations you made.".into())
    } else if inv.state != AWAITING_APPROVAL && knows_of {
        AppError::Conflict("This invitation is no longer waiting for approval.".into())
    } else {
        AppError::NotFound
    }
}

/// Withdraws an open invitation: its link stops working at once. An organisation administrator withdraws
/// invitations of its company's people into its organisation (not a staff invitation that names it as a
/// conflict of interest: to the company that one does not exist); an administrator those that administrators
/// made.
pub fn revoke(
    conn: &mut DbConn,
    audit: &AuditLog,
    actor: &Actor,
    who: &User,
    invitation_id: &str,
    now: i64,
) -> AppResult<()> {
    audit.fact(conn, actor, |tx| {
        let who = &account::find(tx, &who.id)?;
        let inv = model::find(tx, invitation_id)?;
        let by_admin = match &inv.invited_by {
            Some(id) => account::find(tx, id)?.role() == Role::Administrator,
            None => false,
        };
        let entitled = (is_org_admin(who)
            && inv.role() == Role::Submitter
            && inv.organisation_id.is_some()
            && who.organisation_id == inv.organisation_id)
            || (who.role() == Role::Administrator && by_admin);
        if !entitled {
            return Ok((Err(AppError::NotFound), out_of_reach(&inv)));
        }
        if model::close(tx, &inv.id, REVOKED, Some(&who.id), None, now)? != 1 {
            return Err(AppError::Conflict(
                "This invitation is already closed.".into(),
            ));
        }
        Ok((
            Ok(()),
            Event::new("invitation.revoke", Outcome::Success).object("invitation", &inv.id),
        ))
    })?
}

/// What the acceptance page shows.
#[derive(Debug, Clone, serde::Serialize)]
pub struct InvitationView {
    pub email: String,
    pub display_name: String,
    pub role_label: &'static str,
    pub what: String,
    /// The organisation's verification and who invited (see `standing`).
    pub standing: Option<String>,
}

const SUSPENDED: &str = "The Program Office has disabled the account at this address: an invitation cannot enable it again. Ask the Program Office.";
const INVITATION_GONE: &str = "This invitation has been used, withdrawn or has expired. Ask whoever invited you for a new one.";

pub fn view(conn: &mut DbConn, token: &str, now: i64) -> AppResult<InvitationView> {
    let inv = model::find_live_by_token(conn, &hash_token(token), now)?
        .ok_or_else(|| AppError::Gone(INVITATION_GONE.into()))?;
    if !inviter_still_entitled(conn, &inv)? {
        return Err(AppError::Gone(INVITATION_GONE.into()));
    }
    Ok(InvitationView {
        what: what(conn, &inv)?,
        standing: standing(conn, &inv)?,
        role_label: inv.role().label(),
        email: inv.email,
        display_name: inv.display_name,
    })
}

/// Accepts an invitation: the invitee's account is made (or a removed member's account re-attached) with the
/// password it chose, its address counted as confirmed (the link reached it). Returns the account id.
#[allow(clippy::too_many_arguments)]
pub fn accept(
    db: &Db,
    audit: &AuditLog,
    hasher: &Hasher,
    actor: &Actor,
    token: &str,
    display_name: &str,
    password: &str,
    now: i64,
) -> AppResult<Result<String, FieldErrors>> {
    let token_hash = hash_token(token);
    let inv = model::find_live_by_token(&mut *db.get()?, &token_hash, now)?
        .ok_or_else(|| AppError::Gone(INVITATION_GONE.into()))?;
    let mut errors = validate_person(&inv.email, display_name, None);
    if let Err(m) = check_policy(password, &inv.email) {
        errors.add("password", m);
    }
    if !errors.is_empty() {
        return Ok(Err(errors));
    }
    // Hashed with no connection held.
    let hash = hasher.hash(password)?;
    audit.fact(&mut *db.get()?, actor, |tx| {
        let Some(inv) = model::find_live_by_token(tx, &token_hash, now)? else {
            return Err(AppError::Gone(INVITATION_GONE.into()));
        };
        let lapsed = if !inviter_still_entitled(tx, &inv)? {
            Some("the inviter no longer holds the authority it invited with: invitation withdrawn")
        } else if !approver_still_entitled(tx, &inv)? {
            Some("whoever approved it no longer holds the authority it approved with: invitation withdrawn")
        } else {
            None
        };
        if let Some(why) = lapsed {
            model::close(tx, &inv.id, REVOKED, None, None, now)?;
            let event = Event::new("invitation.accept", Outcome::Refused)
                .object("invitation", &inv.id)
                .reason(why);
            return Ok((Err(AppError::Gone(INVITATION_GONE.into())), event));
        }
        let organisation_id = match (&inv.organisation_id, &inv.new_organisation) {
            (Some(org), _) => match account::find_organisation(tx, org)? {
                Some(o) => Some(o.id),
                None => return Err(AppError::Gone(INVITATION_GONE.into())),
            },
            (None, Some(name)) => Some(account::create_organisation(tx, name, now)?),
            (None, None) => None,
        };
        let existing = account::find_by_email(tx, &inv.email)?;
        let id = match existing {
            // A member removed from its organisation earlier, invited back.
            Some(u)
                if u.role() == Role::Submitter
                    && inv.role() == Role::Submitter
                    && u.organisation_id.is_none() =>
            {
                // An account the Program Office disabled stays so: removing it from its organisation and
                // inviting it back must not undo an administrator's decision.
                let rejoined = account::rejoin(
                    tx,
                    &u.id,
                    organisation_id.as_deref(),
                    inv.org_admin,
                    display_name.trim(),
                    &hash,
                    now,
                )?;
                if rejoined != 1 {
                    return Err(AppError::Conflict(SUSPENDED.into()));
                }
                u.id
            }
            Some(_) => {
                return Err(AppError::Conflict(
                    "This address already has an account. Sign in with it, or ask whoever invited you to use another address.".into(),
                ))
            }
            None => {
                let id = new_id();
                account::insert(
                    tx,
                    &NewUser {
                        id: &id,
                        email: &inv.email,
                        display_name: display_name.trim(),
                        role: inv.role(),
                        organisation_id: organisation_id.as_deref(),
                        password_hash: &hash,
                        disabled: false,
                        created_at: now,
                        password_changed_at: now,
                        org_admin: inv.org_admin && organisation_id.is_some(),
                        email_verified_at: Some(now),
                        agency: inv.agency.as_deref(),
                    },
                )?;
                id
            }
        };
        model::close(tx, &inv.id, ACCEPTED, Some(&id), Some(&id), now)?;
        let event = Event::new("invitation.accept", Outcome::Success)
            .object("account", &id)
            .reason(format!("invitation {}, role {}", inv.id, inv.role.as_str()));
        Ok((Ok(Ok(id)), event))
    })?
}

/// An invitation carries its inviter's authority and lapses with it: an organisation administrator's is
/// accepted only while that person still administers the organisation it names (not after leaving, being
/// removed, stepping down or being disabled: else a member about to be removed could invite an address of
/// its own and come back), an administrator's only while that person is an active administrator. One made on
/// the command line (the operator's) has no inviter to lose it.
fn inviter_still_entitled(conn: &mut DbConn, inv: &Invitation) -> AppResult<bool> {
    let Some(by) = inv.invited_by.as_deref() else {
        return Ok(true);
    };
    if !account::exists(conn, by)? {
        return Ok(false);
    }
    let inviter = account::find(conn, by)?;
    Ok(match inviter.role() {
        Role::Submitter => {
            is_org_admin(&inviter)
                && inv.role() == Role::Submitter
                && inv.organisation_id.is_some()
                && inviter.organisation_id == inv.organisation_id
        }
        Role::Administrator => !inviter.disabled,
        _ => false,
    })
}

/// An approval carries its approver's authority as an invitation carries its inviter's: an organisation
/// administrator's counts only while that person still administers the organisation, an officer's or a second
/// administrator's only while that account is enabled in that role (else a removed administrator's approval of an
/// address of its own still let it back in).
fn approver_still_entitled(conn: &mut DbConn, inv: &Invitation) -> AppResult<bool> {
    let Some(by) = inv.approved_by.as_deref() else {
        return Ok(true);
    };
    if !account::exists(conn, by)? {
        return Ok(false);
    }
    let approver = account::find(conn, by)?;
    Ok(match approver.role() {
        Role::Submitter => {
            is_org_admin(&approver)
                && inv.organisation_id.is_some()
                && approver.organisation_id == inv.organisation_id
        }
        Role::Officer | Role::Administrator => !approver.disabled,
        _ => false,
    })
}

// ---- changes of privilege under the two-person rule ----

pub use crate::models::invitation::PrivilegeChange;

pub enum Applied {
    /// Done (and audited) at once.
    Now,
    /// Waits for a second administrator.
    Pending,
}

/// Does this change grant privilege, so that the two-person rule holds it for a second administrator?
/// A staff role; enabling a disabled staff account (its role comes back); disabling an administrator (else
/// one administrator could disable the other and then grant alone).
fn grants_privilege(target: &User, change: &PrivilegeChange) -> bool {
    match change {
        PrivilegeChange::Role(role) => *role != Role::Submitter,
        PrivilegeChange::Enable => target.role() != Role::Submitter,
        PrivilegeChange::Disable { .. } => target.role() == Role::Administrator,
        // Whoever resets a factor could enrol their own in its place at the next sign-in, with the password: two
        // administrators agree to it, whatever the account's role.
        PrivilegeChange::ResetFactors { .. } => true,
    }
}

fn as_account_change(change: PrivilegeChange) -> super::accounts::AccountChange {
    use super::accounts::AccountChange;
    match change {
        PrivilegeChange::Role(role) => AccountChange::Role(role),
        PrivilegeChange::Disable { reason } => AccountChange::Disable { reason },
        PrivilegeChange::Enable => AccountChange::Enable,
        PrivilegeChange::ResetFactors { reason } => AccountChange::ResetFactors { reason },
    }
}

/// An administrator's change of an account's role or status. What grants privilege waits for a second
/// administrator while the portal has two or more active ones; anything else applies at once.
#[allow(clippy::too_many_arguments)]
pub fn change_privilege(
    conn: &mut DbConn,
    audit: &AuditLog,
    settings: &Settings,
    actor: &Actor,
    who: &User,
    account_id: &str,
    change: PrivilegeChange,
    now: i64,
) -> AppResult<Applied> {
    let target = account::find(conn, account_id)?;
    if target.id == who.id {
        return Err(AppError::Conflict(
            "You cannot change your own account here (its role, its status or its second factors): another administrator does, or use your own Account page.".into(),
        ));
    }
    let needs_second = grants_privilege(&target, &change)
        && who.role() == Role::Administrator
        && settings.two_person_rule
        && model::active_administrators(conn)? >= 2;
    if !needs_second {
        super::accounts::change_account(conn, audit, actor, account_id, as_account_change(change))?;
        return Ok(Applied::Now);
    }
    if let PrivilegeChange::Role(Role::Submitter) = change {
        unreachable!("a submitter role grants no privilege");
    }
    audit.fact(conn, actor, |tx| {
        // A request replaces its asker's own earlier one, never another administrator's: that one is decided (or
        // refused) first, so that no administrator can quietly cancel another's, e.g. a colleague's request to
        // disable a rogue account.
        let others_waiting = model::pending_privilege_requesters(tx, account_id)?
            .iter()
            .any(|by| by.as_deref() != Some(who.id.as_str()));
        if others_waiting {
            return Err(AppError::Conflict(
                "Another change to this account is waiting for a decision (Administration > Approvals). Approve or refuse it first: a new request does not replace someone else's.".into(),
            ));
        }
        let id = new_id();
        model::insert_privilege_request(tx, &id, account_id, &change, Some(&who.id), now)?;
        let what = match &change {
            PrivilegeChange::Role(role) => format!("{} -> {}", target.role.as_str(), role.as_str()),
            PrivilegeChange::Disable { reason } => format!("disable: {reason}"),
            PrivilegeChange::Enable => "enable".to_string(),
            PrivilegeChange::ResetFactors { reason } => format!("reset second factors: {reason}"),
        };
        let event = Event::new("account.privilege_request", Outcome::Success)
            .object("account", account_id)
            .reason(format!(
                "{what}; awaiting a second administrator (request {id})"
            ));
        Ok((Applied::Pending, event))
    })
}

/// The deciding administrator as it stands in the transaction: still an enabled administrator (one disabled or moved
/// to another role while its request's body arrived decides nothing).
fn still_an_administrator(tx: &mut DbConn, who: &User) -> AppResult<()> {
    let now = account::find(tx, &who.id)?;
    if now.role() != Role::Administrator || now.disabled {
        return Err(AppError::Refused(
            "Your account may no longer decide this.".into(),
        ));
    }
    Ok(())
}

/// A request is approved only while whoever asked for it is still an enabled administrator (as an invitation lapses
/// with its inviter's authority): one disabled or moved to another role since (an incident) leaves nothing that a
/// second administrator could approve. It can still be refused. (A request with no asker, which nothing files
/// today, is not refused for it.)
fn requester_still_entitled(tx: &mut DbConn, req: &model::PrivilegeRequest) -> AppResult<()> {
    let Some(asker) = req.requested_by.as_deref() else {
        return Ok(());
    };
    let asker = account::find(tx, asker)?;
    if asker.role() != Role::Administrator || asker.disabled {
        return Err(AppError::Conflict(
            "The administrator who asked for this change may no longer ask for it (disabled, or no longer an administrator): refuse it, or ask for it yourself.".into(),
        ));
    }
    Ok(())
}

/// A second administrator decides a pending change of privilege. Approval applies it as the approver (and a
/// role change or disabling ends the account's sessions).
pub fn decide_privilege_request(
    conn: &mut DbConn,
    audit: &AuditLog,
    actor: &Actor,
    who: &User,
    request_id: &str,
    approve: bool,
    now: i64,
) -> AppResult<()> {
    if who.role() != Role::Administrator {
        return Err(AppError::NotFound);
    }
    let req = model::find_privilege_request(conn, request_id)?;
    if req.requested_by.as_deref() == Some(who.id.as_str()) {
        return Err(AppError::Conflict(
            "Someone else must approve the changes you asked for.".into(),
        ));
    }
    if req.account_id == who.id {
        return Err(AppError::Conflict(
            "You cannot decide a change of your own account.".into(),
        ));
    }
    let change = req
        .change()
        .ok_or_else(|| AppError::Internal(format!("unknown change in request {}", req.id)))?;
    let state = if approve { "approved" } else { "refused" };
    if approve {
        // The change and the request's decision commit together: apply it inside the same fact.
        let requester = req.requested_by.clone().unwrap_or_else(|| "cli".into());
        return audit.fact(conn, actor, |tx| {
            still_an_administrator(tx, who)?;
            requester_still_entitled(tx, &req)?;
            if model::decide_privilege_request(tx, &req.id, state, &who.id, now)? != 1 {
                return Err(AppError::Conflict(
                    "This request is no longer pending.".into(),
                ));
            }
            let target = account::find(tx, &req.account_id)?;
            let (action, reason) = super::accounts::apply_change(
                tx,
                audit,
                actor,
                &target,
                as_account_change(change),
            )?;
            let what = match reason {
                Some(r) => format!("{action} ({r})"),
                None => action.to_string(),
            };
            let event = Event::new("account.privilege_approve", Outcome::Success)
                .object("account", &req.account_id)
                .reason(format!(
                    "{what}; requested by {requester}, approved by {} (request {})",
                    who.id, req.id
                ));
            Ok(((), event))
        });
    }
    audit.fact(conn, actor, |tx| {
        still_an_administrator(tx, who)?;
        if model::decide_privilege_request(tx, &req.id, state, &who.id, now)? != 1 {
            return Err(AppError::Conflict(
                "This request is no longer pending.".into(),
            ));
        }
        let event = Event::new("account.privilege_refuse", Outcome::Success)
            .object("account", &req.account_id)
            .reason(format!(
                "{} {}; requested by {}, refused by {} (request {})",
                req.change,
                req.role.map(Role::as_str).unwrap_or(""),
                req.requested_by.as_deref().unwrap_or("cli"),
                who.id,
                req.id
            ));
        Ok(((), event))
    })
}
