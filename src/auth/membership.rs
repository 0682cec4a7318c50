//! Membership rules: an organisation administrator removes members and hands its role on; the Program Office
//! verifies organisations and proposes merging duplicates, which each company's administrator accepts or refuses. Each change commits together with its audit entry.
//!
//! Everything an organisation administrator does is scoped by its own organisation's id: a member of another
//! organisation answers "not found", exactly like an id that does not exist.

use crate::audit::log::{Actor, AuditLog, Event, Outcome};
use crate::db::DbConn;
use crate::domain::Role;
use crate::error::{AppError, AppResult};
use crate::models::account::{self, User};
use crate::models::invitation::organisation_admins;
use crate::models::merge_proposal::{self as proposals, Side};
use crate::models::organisation as model;

/// The longest verification method or merge reason, in characters.
pub const NOTE_MAX: usize = 200;

/// A one-line note (how an organisation was verified, why two were merged): trimmed, 1..=200 characters,
/// no control characters.
fn one_line(text: &str, missing: &str) -> AppResult<String> {
    let t = text.trim();
    if t.is_empty() || t.chars().count() > NOTE_MAX || t.chars().any(char::is_control) {
        return Err(AppError::Invalid(missing.into()));
    }
    Ok(t.to_string())
}

/// What an organisation administrator's member id names: a member of its own organisation, or something
/// outside it. Outside answers 404, as an unknown id does; an id that is someone else's account (another
/// company's member, staff) is recorded as an `access.refused` entry, since an administrator holding it
/// learned it somewhere.
enum Reach {
    Member(User),
    Outside(Event),
}

fn reach(tx: &mut DbConn, organisation_id: &str, member_id: &str) -> AppResult<Reach> {
    if let Some(member) = model::member(tx, organisation_id, member_id)? {
        return Ok(Reach::Member(member));
    }
    if !account::exists(tx, member_id)? {
        return Err(AppError::NotFound);
    }
    Ok(Reach::Outside(
        Event::new("access.refused", Outcome::Refused)
            .object("account", member_id)
            .reason("member id outside the administrator's organisation"),
    ))
}

/// The acting administrator, read again under the write lock: one that another administrator's request removed,
/// disabled or demoted after its own request's guard let it in acts no more (two administrators removing each
/// other at once would otherwise leave the organisation with none).
pub(crate) fn still_administrator(
    tx: &mut DbConn,
    actor: &Actor,
    organisation_id: &str,
) -> AppResult<()> {
    let me = match actor.user_id.as_deref() {
        Some(id) => model::member(tx, organisation_id, id)?,
        None => None,
    };
    match me {
        Some(me) if me.org_admin && !me.disabled => Ok(()),
        _ => Err(AppError::Refused(
            "You are no longer an administrator of this organisation: nothing was changed.".into(),
        )),
    }
}

/// An organisation administrator removes a member of its organisation (never itself). The member's sessions
/// end at once; it loses the organisation and its administrator role, and its account is disabled (an
/// invitation can bring it back).
pub fn remove_member(
    conn: &mut DbConn,
    audit: &AuditLog,
    actor: &Actor,
    organisation_id: &str,
    who: &User,
    member_id: &str,
) -> AppResult<()> {
    audit.fact(conn, actor, |tx| {
        still_administrator(tx, actor, organisation_id)?;
        let member = match reach(tx, organisation_id, member_id)? {
            Reach::Member(member) => member,
            Reach::Outside(entry) => return Ok((Err(AppError::NotFound), entry)),
        };
        if member.id == who.id {
            return Err(AppError::Conflict(
                "You cannot remove yourself. Hand the administrator role on first, then ask the new administrator."
                    .into(),
            ));
        }
        if model::remove_member(tx, organisation_id, &member.id)? != 1 {
            return Err(AppError::NotFound);
        }
        // Its account is disabled with it: its reset links go, as for any disabled account.
        super::registration::void_reset_links(tx, &member.id, audit.now())?;
        let event = Event::new("organisation.member_remove", Outcome::Success)
            .object("account", &member.id)
            .reason(format!("organisation {organisation_id}"));
        Ok((Ok(()), event))
    })?
}

const LAST_MEMBER: &str =
    "You are the organisation's last member, and someone must answer for its submissions: \
                           invite a colleague and make them an administrator first.";
const ONLY_ADMINISTRATOR: &str =
    "You are the organisation's only administrator: make another member an administrator first, then leave.";

/// Why `who` cannot leave its organisation as it stands (its last enabled member, or its only administrator), for
/// the account page to say so rather than offer a button that is refused. [`leave`] checks the same again after
/// the change, in its transaction.
pub fn kept_from_leaving(
    conn: &mut DbConn,
    organisation_id: &str,
    who_id: &str,
) -> AppResult<Option<&'static str>> {
    let others = model::members(conn, organisation_id, false)?
        .iter()
        .any(|m| !m.disabled && m.id != who_id);
    if !others {
        return Ok(Some(LAST_MEMBER));
    }
    let was_admin = account::find(conn, who_id)?.org_admin;
    if was_admin
        && organisation_admins(conn, organisation_id)?
            .iter()
            .all(|a| a == who_id)
    {
        return Ok(Some(ONLY_ADMINISTRATOR));
    }
    Ok(None)
}

/// A member leaves its organisation of its own accord: the account is disabled (it belonged to the organisation
/// only) and signed out everywhere, as if an administrator had removed it. The organisation keeps an
/// administrator: its only one hands the role on first, and its last member stays (someone must answer for its
/// submissions). Returns the organisation's name.
pub fn leave(conn: &mut DbConn, audit: &AuditLog, actor: &Actor, who: &User) -> AppResult<String> {
    let org = match (who.role(), who.organisation_id.as_deref()) {
        (Role::Submitter, Some(org)) => org.to_string(),
        _ => {
            return Err(AppError::Conflict(
                "Only a member of a submitting organisation can leave it.".into(),
            ))
        }
    };
    audit.fact(conn, actor, |tx| {
        let name = account::organisation_name(tx, &org)?;
        let was_admin = account::find(tx, &who.id)?.org_admin;
        if model::remove_member(tx, &org, &who.id)? != 1 {
            return Err(AppError::NotFound);
        }
        super::registration::void_reset_links(tx, &who.id, audit.now())?;
        // Checked after the change, inside the transaction: an error rolls it back.
        let others = model::members(tx, &org, false)?.iter().any(|m| !m.disabled);
        if !others {
            return Err(AppError::Conflict(LAST_MEMBER.into()));
        }
        if was_admin && organisation_admins(tx, &org)?.is_empty() {
            return Err(AppError::Conflict(ONLY_ADMINISTRATOR.into()));
        }
        let event = Event::new("organisation.member_leave", Outcome::Success)
            .object("account", &who.id)
            .reason(format!("organisation {org}"));
        Ok((name, event))
    })
}

/// An organisation administrator makes another member an organisation administrator too. Only a confirmed,
/// active member can hold the role.
pub fn grant_admin(
    conn: &mut DbConn,
    audit: &AuditLog,
    actor: &Actor,
    organisation_id: &str,
    member_id: &str,
) -> AppResult<()> {
    audit.fact(conn, actor, |tx| {
        still_administrator(tx, actor, organisation_id)?;
        let member = match reach(tx, organisation_id, member_id)? {
            Reach::Member(member) => member,
            Reach::Outside(entry) => return Ok((Err(AppError::NotFound), entry)),
        };
        if member.org_admin {
            return Err(AppError::Conflict(
                "This member already administers the organisation.".into(),
            ));
        }
        if member.disabled || !member.email_verified() {
            return Err(AppError::Conflict(
                "Only a member with a confirmed email address and an active account can administer the organisation."
                    .into(),
            ));
        }
        model::set_org_admin(tx, organisation_id, &member.id, true)?;
        let event = Event::new("organisation.admin_grant", Outcome::Success)
            .object("account", &member.id)
            .reason(format!("organisation {organisation_id}"));
        Ok((Ok(()), event))
    })?
}

/// An organisation administrator withdraws the role from a member, or steps down itself, as long as at least
/// one confirmed, active organisation administrator remains.
pub fn revoke_admin(
    conn: &mut DbConn,
    audit: &AuditLog,
    actor: &Actor,
    organisation_id: &str,
    member_id: &str,
) -> AppResult<()> {
    audit.fact(conn, actor, |tx| {
        still_administrator(tx, actor, organisation_id)?;
        let member = match reach(tx, organisation_id, member_id)? {
            Reach::Member(member) => member,
            Reach::Outside(entry) => return Ok((Err(AppError::NotFound), entry)),
        };
        if !member.org_admin {
            return Err(AppError::Conflict(
                "This member does not administer the organisation.".into(),
            ));
        }
        model::set_org_admin(tx, organisation_id, &member.id, false)?;
        // Checked after the change, inside the transaction: the error rolls it back.
        if organisation_admins(tx, organisation_id)?.is_empty() {
            return Err(AppError::Conflict(
                "An organisation needs at least one administrator with a confirmed address: make another member an administrator first."
                    .into(),
            ));
        }
        let mut reason = format!("organisation {organisation_id}");
        if actor.user_id.as_deref() == Some(member.id.as_str()) {
            reason.push_str("; stepped down");
        }
        let event = Event::new("organisation.admin_revoke", Outcome::Success)
            .object("account", &member.id)
            .reason(reason);
        Ok((Ok(()), event))
    })?
}

/// An officer recorded against an organisation (a conflict of interest) decides nothing about it: not its
/// verification, not a merge, not an invitation into it (`invitations::approve`/`refuse`).
pub(crate) fn officer_may_act(officer: &User, organisation_ids: &[&str]) -> AppResult<()> {
    if officer.role() != Role::Officer {
        return Err(AppError::Refused("Only a PCII officer does this.".into()));
    }
    if let Some(own) = officer.organisation_id.as_deref() {
        if organisation_ids.contains(&own) {
            return Err(AppError::conflict_of_interest(
                "organisation",
                own,
                None,
                "the officer belongs to the organisation",
                "You belong to this organisation: another officer must decide.",
            ));
        }
    }
    Ok(())
}

/// A PCII officer records that it verified an organisation, and how.
pub fn verify(
    conn: &mut DbConn,
    audit: &AuditLog,
    actor: &Actor,
    officer: &User,
    organisation_id: &str,
    method: &str,
    now: i64,
) -> AppResult<()> {
    let method = one_line(
        method,
        "Say how you verified the organisation, in one line (up to 200 characters), for example: called the listed phone number of the company.",
    )?;
    audit.fact(conn, actor, |tx| {
        let org = model::find(tx, organisation_id)?;
        officer_may_act(officer, &[org.id.as_str()])?;
        if org.merged_into.is_some() {
            return Err(AppError::Conflict(
                "This organisation was merged into another: verify that one.".into(),
            ));
        }
        model::verify(tx, &org.id, &officer.id, &method, now)?;
        let event = Event::new("organisation.verify", Outcome::Success)
            .object("organisation", &org.id)
            .reason(method.clone());
        Ok(((), event))
    })
}

/// A PCII officer proposes to merge a duplicate organisation into another one (by id). Nothing moves yet: the
/// merge lets the duplicate's people into the target and shows each company's submissions to the other's people,
/// so an organisation administrator of each company must accept it first ([`answer_merge`]). One open proposal
/// per duplicate at a time. Each of those administrators is owed a mail, queued in the same transaction: returns
/// the proposal's id and the mails, to send once it has committed.
#[allow(clippy::too_many_arguments)]
pub fn propose_merge(
    conn: &mut DbConn,
    audit: &AuditLog,
    mailer: &crate::mail::Mailer,
    actor: &Actor,
    officer: &User,
    duplicate_id: &str,
    target_id: &str,
    reason: &str,
    now: i64,
) -> AppResult<(String, Vec<crate::workflow::pending_mail::Queued>)> {
    let reason = one_line(
        reason,
        "Give the reason for the merge, in one line (up to 200 characters).",
    )?;
    let target_id = target_id.trim().to_string();
    audit.fact(conn, actor, |tx| {
        let dup = model::find(tx, duplicate_id)?;
        if dup.merged_into.is_some() {
            return Err(AppError::Conflict(
                "This organisation was already merged into another.".into(),
            ));
        }
        if target_id.is_empty() {
            return Err(AppError::Invalid(
                "Give the id of the organisation to merge into.".into(),
            ));
        }
        if target_id == dup.id {
            return Err(AppError::Invalid(
                "An organisation cannot be merged into itself.".into(),
            ));
        }
        let Some(target) = account::find_organisation(tx, &target_id)? else {
            return Err(AppError::Invalid(
                "No organisation has this id, or it was itself merged into another: merge into the surviving one."
                    .into(),
            ));
        };
        officer_may_act(officer, &[dup.id.as_str(), target.id.as_str()])?;
        if proposals::open_conflicting(tx, &dup.id, &target.id)?.is_some() {
            return Err(AppError::Conflict(
                "A merge of this organisation is already proposed: wait for the companies' answers, or withdraw it first."
                    .into(),
            ));
        }
        let id = proposals::insert(tx, &dup.id, &target.id, &reason, &officer.id, now)?;
        let mut mails = Vec::new();
        for org in [&dup.id, &target.id] {
            for admin in organisation_admins(tx, org)? {
                let admin = account::find(tx, &admin)?;
                mails.push(crate::workflow::pending_mail::enqueue(
                    tx,
                    mailer,
                    crate::workflow::notifications::Kind::MergeProposed,
                    (&admin.id, &admin.email, &admin.display_name),
                    "/organisation",
                    now,
                )?);
            }
        }
        let event = Event::new("organisation.merge_propose", Outcome::Success)
            .object("organisation", &dup.id)
            .reason(format!(
                "proposed merging {} into {}: {reason} (proposal {id})",
                dup.id, target.id
            ));
        Ok(((id, mails), event))
    })
}

/// What became of an organisation administrator's answer to a merge proposal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MergeAnswer {
    /// Accepted; the other company has not yet.
    Accepted,
    /// Accepted second: the merge ran.
    Merged(model::Moved),
    /// Refused: the proposal is closed and nothing moved.
    Refused,
}

/// An organisation administrator of one of the two companies accepts or refuses an open merge proposal. Any
/// other organisation's administrator is answered 404, as for an unknown id, and the attempt is recorded. The
/// second acceptance runs the merge in the same transaction, after checking again that both organisations exist,
/// neither was merged away, and the proposal is still open. A refusal closes the proposal.
#[allow(clippy::too_many_arguments)]
pub fn answer_merge(
    conn: &mut DbConn,
    audit: &AuditLog,
    actor: &Actor,
    who: &User,
    organisation_id: &str,
    proposal_id: &str,
    accept: bool,
    now: i64,
) -> AppResult<MergeAnswer> {
    audit.fact(conn, actor, |tx| {
        let Some(p) = proposals::find(tx, proposal_id)? else {
            return Err(AppError::NotFound);
        };
        let Some(side) = p.side_of(organisation_id) else {
            return Ok((Err(AppError::NotFound), out_of_reach(&p.id)));
        };
        // The administrator answers for its own organisation, as it stands now.
        match model::member(tx, organisation_id, &who.id)? {
            Some(me) if me.org_admin && !me.disabled => {}
            _ => return Ok((Err(AppError::NotFound), out_of_reach(&p.id))),
        }
        if !p.is_open() {
            return Err(AppError::Conflict(
                "This merge proposal is closed: it was answered or withdrawn.".into(),
            ));
        }
        let side_name = match side {
            Side::Duplicate => "duplicate",
            Side::Target => "target",
        };
        if !accept {
            if proposals::close(tx, &p.id, proposals::REFUSED, &who.id, now)? != 1 {
                return Err(AppError::Conflict("This merge proposal is closed.".into()));
            }
            let event = Event::new("organisation.merge_refuse", Outcome::Success)
                .object("organisation", &p.duplicate_id)
                .reason(format!(
                    "refused merging {} into {} for the {side_name} {organisation_id} (proposal {})",
                    p.duplicate_id, p.target_id, p.id
                ));
            return Ok((Ok(MergeAnswer::Refused), event));
        }
        if proposals::accept(tx, &p.id, side, &who.id, now)? != 1 {
            return Err(AppError::Conflict(
                "Your organisation has already accepted this merge.".into(),
            ));
        }
        let accepted = Event::new("organisation.merge_accept", Outcome::Success)
            .object("organisation", &p.duplicate_id)
            .reason(format!(
                "accepted merging {} into {} for the {side_name} {organisation_id} (proposal {})",
                p.duplicate_id, p.target_id, p.id
            ));
        let (dup_by, target_by) = match side {
            Side::Duplicate => (Some(who.id.clone()), p.target_accepted_by.clone()),
            Side::Target => (p.duplicate_accepted_by.clone(), Some(who.id.clone())),
        };
        let (Some(dup_by), Some(target_by)) = (dup_by, target_by) else {
            return Ok((Ok(MergeAnswer::Accepted), accepted));
        };
        // The other company's acceptance counts only while whoever gave it is still one of its administrators: one
        // removed since (or disabled) could otherwise bring the merge, and with it a company of their own, in later.
        let (other_side, other_org, other_by) = match side {
            Side::Duplicate => (Side::Target, &p.target_id, &target_by),
            Side::Target => (Side::Duplicate, &p.duplicate_id, &dup_by),
        };
        let still_entitled = model::member(tx, other_org, other_by)?
            .is_some_and(|m| m.org_admin && !m.disabled);
        if !still_entitled {
            proposals::forget_acceptance(tx, &p.id, other_side)?;
            let accepted = accepted.reason(format!(
                "accepted merging {} into {} for the {side_name} {organisation_id} (proposal {}); the other \
                 organisation's acceptance was given by {other_by}, no longer its administrator, and is forgotten: \
                 it answers again",
                p.duplicate_id, p.target_id, p.id
            ));
            return Ok((Ok(MergeAnswer::Accepted), accepted));
        }
        // Both companies have accepted: the merge runs now, in this transaction, if it still can.
        let dup = model::find(tx, &p.duplicate_id)?;
        let target = model::find(tx, &p.target_id)?;
        if dup.merged_into.is_some() || target.merged_into.is_some() {
            return Err(AppError::Conflict(
                "One of the two organisations was merged into another since: this proposal can no longer be carried out. Ask the Program Office to withdraw it."
                    .into(),
            ));
        }
        audit.append(tx, actor, &accepted)?;
        let moved = model::merge(tx, &dup.id, &target.id, now)?;
        if proposals::close(tx, &p.id, proposals::MERGED, &who.id, now)? != 1 {
            return Err(AppError::Conflict("This merge proposal is closed.".into()));
        }
        let event = Event::new("organisation.merge", Outcome::Success)
            .object("organisation", &dup.id)
            .reason(format!(
                "merged {} into {}: {} ({} members, {} submissions, {} open invitations moved); proposed by {}, accepted by {dup_by} for the duplicate and {target_by} for the target (proposal {})",
                dup.id, target.id, p.reason, moved.members, moved.submissions, moved.invitations, p.proposed_by, p.id
            ));
        Ok((Ok(MergeAnswer::Merged(moved)), event))
    })?
}

/// An officer withdraws an open merge proposal (the one who made it, or any officer without a conflict of
/// interest in either organisation). Returns the duplicate's id.
pub fn withdraw_merge(
    conn: &mut DbConn,
    audit: &AuditLog,
    actor: &Actor,
    officer: &User,
    proposal_id: &str,
    now: i64,
) -> AppResult<String> {
    audit.fact(conn, actor, |tx| {
        let Some(p) = proposals::find(tx, proposal_id)? else {
            return Err(AppError::NotFound);
        };
        officer_may_act(officer, &[p.duplicate_id.as_str(), p.target_id.as_str()])?;
        if proposals::close(tx, &p.id, proposals::WITHDRAWN, &officer.id, now)? != 1 {
            return Err(AppError::Conflict(
                "This merge proposal is already closed.".into(),
            ));
        }
        let event = Event::new("organisation.merge_withdraw", Outcome::Success)
            .object("organisation", &p.duplicate_id)
            .reason(format!(
                "withdrew the proposal to merge {} into {} (proposal {})",
                p.duplicate_id, p.target_id, p.id
            ));
        Ok((p.duplicate_id, event))
    })
}

/// The entry for an administrator that reached for a merge proposal its organisation is no party to.
fn out_of_reach(proposal_id: &str) -> Event {
    Event::new("access.refused", Outcome::Refused)
        .object("merge_proposal", proposal_id)
        .reason("merge proposal outside the administrator's organisation")
}
