//! The PCII Program Office's side: decisions on a submission (defective, validated, not validated,
//! protection removed), need-to-know grants and their revocation, and the dissemination log. Each is one
//! transaction with its audit entry; the submitter is notified in the portal, and of a final decision by mail.

use crate::audit::log::{Actor, AuditLog, Event, Outcome};
use crate::db::DbConn;
use crate::domain::Role;
use crate::domain::Status;
use crate::domain::CURE_DAYS;
use crate::error::{AppError, AppResult};
use crate::key_store::data_keys::WrappedKey;
use crate::models::account::{self, User};
use crate::models::grant::{self, NewDisseminationRow, NewGrant};
use crate::models::message::Side;
use crate::models::submission::{self, Scope, Submission};
use crate::services::Services;
use crate::time::DAY;
use crate::workflow::content::FieldErrors;
use crate::workflow::lifecycle::{self, check, record_transition, Change, Step};
use crate::workflow::notifications::Kind;
use crate::workflow::pending_mail::{self, Queued, Unsent};
use crate::workflow::sealed_text::{Sealed, Sealer};

/// Longest need-to-know grant an officer may give.
pub const GRANT_MAX_DAYS: i64 = 366;
const REASON_MAX: usize = 4000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Decision {
    Defective,
    Validate,
    NotValidate,
    RemoveProtection,
}

impl Decision {
    pub fn parse(s: &str) -> Option<Decision> {
        match s {
            "defective" => Some(Decision::Defective),
            "validate" => Some(Decision::Validate),
            "not_validated" => Some(Decision::NotValidate),
            "remove_protection" => Some(Decision::RemoveProtection),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Decision::Defective => "defective",
            Decision::Validate => "validate",
            Decision::NotValidate => "not_validated",
            Decision::RemoveProtection => "remove_protection",
        }
    }

    fn step(self) -> Step {
        match self {
            Decision::Defective => Step::MarkDefective,
            Decision::Validate => Step::Validate,
            Decision::NotValidate => Step::NotValidate,
            Decision::RemoveProtection => Step::RemoveProtection,
        }
    }

    /// Ends the presumption of protection or the protection itself, and cannot be undone: the officer
    /// is shown what follows and confirms it first. A defect notice only starts the cure clock.
    pub fn is_final(self) -> bool {
        self != Decision::Defective
    }

    pub fn needs_reason(self) -> bool {
        self.step().needs_reason()
    }

    /// What the officer is told when the reason this decision needs is missing.
    pub fn missing_reason(self) -> &'static str {
        match self {
            Decision::Defective => "List the defects the submitter must cure.",
            Decision::Validate => {
                "Give the basis for validating (what you checked); the submitter reads it in the history."
            }
            _ => "Give the reason for this decision; the submitter is told it.",
        }
    }
}

fn clean_reason(reason: &str) -> AppResult<Option<String>> {
    let r = reason.trim().replace("\r\n", "\n");
    if r.chars().count() > REASON_MAX {
        return Err(AppError::Invalid(format!(
            "The reason is too long (at most {REASON_MAX} characters)."
        )));
    }
    Ok((!r.is_empty()).then_some(r))
}

/// The one check every officer action on a submission shares: an officer never acts on a submission of
/// its own organisation (nor is given one to handle, `workflow::cases`).
pub(crate) fn not_own(officer: &User, sub: &Submission) -> AppResult<()> {
    if lifecycle::own_organisation(officer, sub) {
        return Err(AppError::conflict_of_interest(
            "submission",
            &sub.id,
            sub.tracking_number.as_deref(),
            "the officer belongs to the submitting organisation",
            "You may not act on a submission of your own organisation; another officer must.",
        ));
    }
    Ok(())
}

/// The answer of a check made before an act (a form's pre-check), with a refusal for a conflict of interest
/// recorded, as [`AuditLog::fact`](crate::audit::log::AuditLog::fact) records one inside an act.
pub async fn recorded<T>(state: &Services, actor: &Actor, answer: AppResult<T>) -> AppResult<T> {
    match answer {
        Err(e @ AppError::ConflictOfInterest(_)) => {
            let (audit, actor) = (state.audit.clone(), actor.clone());
            let answer = state
                .db
                .run(move |c| Ok(audit.record_conflict(c, &actor, e)))
                .await;
            Err(answer.unwrap_or_else(|failed| failed))
        }
        answer => answer,
    }
}

/// Runs one officer action on a submission as one audited fact: the submission is looked up in the
/// Program Office's scope and refused if it is of the officer's own organisation, then `act` changes it
/// and names the event, in the same transaction. `act` gets a [`Sealer`] for the submission's data key, to seal
/// the officer's words with (a submission from before data keys gets one in the same transaction).
pub(crate) async fn officer_fact<T, F>(
    state: &Services,
    officer: &User,
    actor: &Actor,
    submission_id: &str,
    act: F,
) -> AppResult<T>
where
    T: Send + 'static,
    F: FnOnce(&mut DbConn, &User, &Submission, &Sealer) -> AppResult<(T, Event)> + Send + 'static,
{
    let spare = {
        let keys = state.current_keys();
        let ring = keys.read().unwrap_or_else(|p| p.into_inner());
        WrappedKey::generate(&ring)
            .map_err(|e| AppError::Internal(format!("making a data key: {e}")))?
    };
    let (now, keys) = (state.clock.now(), state.keys.clone());
    let (audit, actor, officer, id) = (
        state.audit.clone(),
        actor.clone(),
        officer.clone(),
        submission_id.to_string(),
    );
    state
        .db
        .run(move |c| {
            audit.fact(c, &actor, |tx| {
                crate::workflow::access::still_as_read(tx, &officer)?;
                let sub = submission::find(tx, &id, Scope::Sent)?;
                not_own(&officer, &sub)?;
                let sealer = Sealer::for_submission(tx, &sub.id, &spare, &keys, now)?;
                act(tx, &officer, &sub, &sealer)
            })
        })
        .await
}

/// What a page showed an officer of a submission: its status, the content version officers are shown (the one the
/// Office received), when it was last sent and last decided, and how many messages its organisation wrote in the
/// thread (`org_messages`; the Office's own do not count, or an officer's message would stale its own page). A
/// decision posted from that page carries it, and is refused when the submission is no longer as shown (a cure
/// sent, another officer's decision, a withdrawal, an answer written in the thread): an officer decides on what it
/// read. A correction the organisation saves and has not sent is not the Office's yet: it changes nothing officers
/// see, so it does not make their pages stale either.
pub fn seen_token(sub: &Submission, org_messages: i64) -> String {
    let at = |t: Option<i64>| t.map_or_else(String::new, |t| t.to_string());
    format!(
        "{}-{}-{}-{}-{}-{}-{}-{org_messages}",
        sub.status.as_str(),
        sub.sent_content_blob_id
            .as_deref()
            .or(sub.content_blob_id.as_deref())
            .unwrap_or(""),
        at(sub.statement_affirmed_at),
        at(sub.defect_notice_at),
        at(sub.decided_at),
        sub.disposition.map_or("", |d| d.as_str()),
        at(sub.closed_at),
    )
}

/// How many messages the organisation wrote in the submission's thread ([`seen_token`]).
fn org_messages(conn: &mut DbConn, submission_id: &str) -> AppResult<i64> {
    Ok(crate::models::message::count_from(
        conn,
        submission_id,
        Side::Organisation,
        0,
    )?)
}

/// [`seen_token`] of `sub` as it stands now, its thread read.
pub async fn seen_now(state: &Services, sub: &Submission) -> AppResult<String> {
    let sid = sub.id.clone();
    let written = state.db.run(move |c| org_messages(c, &sid)).await?;
    Ok(seen_token(sub, written))
}

/// Refuses a decision taken on a page that showed the submission otherwise than it is now (`now`: its
/// [`seen_token`]).
pub fn still_as_seen(now: &str, seen: Option<&str>) -> AppResult<()> {
    match seen {
        Some(seen) if seen != now => Err(AppError::Conflict(
            "This submission changed after your page showed it (the submitter sent a cure, withdrew it or wrote in \
             its thread, or another officer decided). Nothing was recorded: review it again before deciding."
                .into(),
        )),
        _ => Ok(()),
    }
}

/// The officer's words for a decision, cleaned (`None` when none were given and none are needed), or why
/// they will not do: missing where the decision needs them, or too long.
pub fn decision_reason(decision: Decision, reason: &str) -> AppResult<Option<String>> {
    let reason = clean_reason(reason)?;
    if decision.needs_reason() && reason.is_none() {
        return Err(AppError::Invalid(decision.missing_reason().into()));
    }
    Ok(reason)
}

/// Whether `officer` may take `decision` on `sub` as it stands at `now`, and the status it leads to: the checks
/// [`decide`] makes again in its transaction, for a page that asks the officer to confirm first.
pub fn may_decide(
    officer: &User,
    sub: &Submission,
    decision: Decision,
    now: i64,
) -> AppResult<Status> {
    not_own(officer, sub)?;
    let to = check(sub.status(), decision.step(), Role::Officer)?;
    cure_period_over(sub, decision, now)?;
    Ok(to)
}

/// "Not validated" on a defective submission waits for the end of its cure period: until then the submitter may
/// still cure it (PCII.md: 30 days to cure; if not cured, the office may decide "not validated").
fn cure_period_over(sub: &Submission, decision: Decision, now: i64) -> AppResult<()> {
    match lifecycle::cure_period_runs(sub, now) {
        Some(due) if decision == Decision::NotValidate => Err(AppError::Conflict(format!(
            "The submitter has until {} to cure the defects. Decide \"not validated\" once that time has \
             passed without a cure.",
            crate::time::datetime(due)
        ))),
        _ => Ok(()),
    }
}

/// Whether `officer` may grant access to `sub` and record its releases now: validated PCII, not of the
/// officer's own organisation. [`grant`] and [`record_dissemination`] check it again in their transaction.
pub fn may_release(officer: &User, sub: &Submission) -> AppResult<()> {
    not_own(officer, sub)?;
    if !lifecycle::releasable(sub.status()) {
        return Err(AppError::Conflict(format!(
            "This submission is {}: access is granted, and releases are recorded, for validated PCII only (6 CFR 29.8).",
            sub.status().label().to_lowercase()
        )));
    }
    Ok(())
}

/// A decision recorded: the submission's new status, and the mail to its organisation that did not go out at once
/// (a notification round sends what the route could not take).
#[derive(Debug)]
pub struct Decided {
    pub status: Status,
    pub unsent: Unsent,
}

/// What a removal of protection records on each grant it ends (the system's words, no PCII).
const GRANTS_END_WITH_PROTECTION: &str =
    "its protection was removed: need-to-know grants are for validated PCII only";

/// Records a decision. Every decision needs its reason: the list of defects for "defective", the basis for
/// "validated", the reason for "not validated" and "protection removed"; the submitter reads each in the history.
/// A final decision is mailed to the organisation's members (content-free; queued in the decision's transaction,
/// sent once it has committed); a defect notice goes with the notification round, which also reminds of its
/// deadline.
pub async fn decide(
    state: &Services,
    officer: &User,
    actor: &Actor,
    submission_id: &str,
    decision: Decision,
    reason: &str,
    seen: Option<String>,
) -> AppResult<Decided> {
    let reason = decision_reason(decision, reason)?;
    let now = state.clock.now();
    let (audit, mailer, act_as) = (state.audit.clone(), state.mailer.clone(), actor.clone());
    let (status, mails) = officer_fact(
        state,
        officer,
        actor,
        submission_id,
        move |tx, officer, sub, sealer| {
            // In the transaction: a cure committed after the page's own check is caught here.
            let now_seen = seen_token(sub, org_messages(tx, &sub.id)?);
            still_as_seen(&now_seen, seen.as_deref())?;
            let (status, event) = apply_decision(
                tx,
                &audit,
                &act_as,
                officer,
                sub,
                sealer,
                decision,
                reason.as_deref(),
                now,
            )?;
            let mails = match decision {
                Decision::Defective => Vec::new(),
                _ => queue_to_members(tx, &mailer, Kind::Decided, sub, now)?,
            };
            Ok(((status, mails), event))
        },
    )
    .await?;
    let unsent = pending_mail::send_now(state, mails).await;
    Ok(Decided { status, unsent })
}

/// Destroys, for the Program Office, a submission whose organisation let its deadline pass without answering: it
/// did not choose between return and destruction after a "not validated" decision, or did not take the return package
/// it asked for ([`lifecycle::disposition_lapsed`]). PCII.md has the information returned or destroyed; a submitter
/// that never answers would otherwise leave it on record, presumed protected or not, for ever. The reason is the
/// lapse itself (the deadline, in words that quote nothing); the destruction is the submitter's own in every other
/// respect: wrapped data keys deleted in this transaction, ciphertexts queued for deletion, a destruction record,
/// the organisation told in the portal and by a content-free mail.
pub async fn destroy_unclaimed(
    state: &Services,
    officer: &User,
    actor: &Actor,
    submission_id: &str,
) -> AppResult<Decided> {
    let now = state.clock.now();
    let mailer = state.mailer.clone();
    let (shredded, mails) = officer_fact(
        state,
        officer,
        actor,
        submission_id,
        move |tx, officer, sub, _sealer| {
            let from = sub.status();
            let to = check(from, Step::DestroyUnclaimed, Role::Officer)?;
            let Some(due) = lifecycle::disposition_awaited(sub) else {
                return Err(AppError::Conflict(
                    "This submission is not waiting for its organisation to choose return or destruction, or to \
                     take a return package: the Program Office has nothing to destroy in its place."
                        .into(),
                ));
            };
            if due > now {
                return Err(AppError::Conflict(format!(
                    "The organisation has until {} to answer. The Program Office may destroy the content only once \
                     that time has passed without an answer.",
                    crate::time::datetime(due)
                )));
            }
            let what = if lifecycle::return_pending(sub) {
                "had not taken the return package it asked for"
            } else {
                "had not chosen return or destruction"
            };
            let reason = format!(
                "destroyed by the PCII Program Office: the organisation {what} by {}",
                crate::time::datetime(due)
            );
            let names = crate::workflow::destruction::destroy_in_tx(
                tx,
                sub,
                to,
                Some(&officer.id),
                &reason,
                now,
            )?;
            let tn = sub.tracking_number.clone().unwrap_or_default();
            record_transition(
                tx,
                sub,
                Some(&officer.id),
                Change {
                    from: Some(from),
                    to,
                    reason: Some(&reason),
                    notice: &format!(
                        "{tn} was destroyed by the PCII Program Office: your organisation {what} by {}. A \
                         destruction record remains.",
                        crate::time::datetime(due)
                    ),
                },
                now,
            )?;
            let mails = queue_to_members(tx, &mailer, Kind::Destroyed, sub, now)?;
            let event = Event::new(Step::DestroyUnclaimed.action(), Outcome::Success)
                .object("submission", sub.id.clone())
                .tracking(sub.tracking_number.clone())
                .reason(reason);
            Ok(((names, mails), event))
        },
    )
    .await?;
    crate::workflow::destruction::checkpoint_after(state).await;
    crate::workflow::blobs::delete_after_commit(state, shredded).await;
    let unsent = pending_mail::send_now(state, mails).await;
    Ok(Decided {
        status: Status::Destroyed,
        unsent,
    })
}

/// Queues, in the decision's transaction, the content-free mail of a final decision (`kind`) to the organisation's
/// members.
fn queue_to_members(
    tx: &mut DbConn,
    mailer: &crate::mail::Mailer,
    kind: Kind,
    sub: &Submission,
    now: i64,
) -> AppResult<Vec<Queued>> {
    let path = format!("/submissions/{}", sub.id);
    crate::models::message::recipients(tx, Side::Organisation, &sub.organisation_id)?
        .into_iter()
        .map(|(id, email, name, _)| {
            pending_mail::enqueue(tx, mailer, kind, (&id, &email, &name), &path, now)
        })
        .collect()
}

#[allow(clippy::too_many_arguments)]
fn apply_decision(
    tx: &mut DbConn,
    audit: &AuditLog,
    actor: &Actor,
    officer: &User,
    sub: &Submission,
    sealer: &Sealer,
    decision: Decision,
    reason: Option<&str>,
    now: i64,
) -> AppResult<(Status, Event)> {
    let from = sub.status();
    let step = decision.step();
    let to = check(from, step, Role::Officer)?;
    cure_period_over(sub, decision, now)?;
    // Grants are for validated PCII only: what leaves that state ends them, each with its own entry, in this
    // transaction (reading was already refused by the status; now the grant lists and reminders agree).
    if from == Status::Validated && to != Status::Validated {
        for grantee in grant::revoke_all_live_of_submission(
            tx,
            &sub.id,
            &officer.id,
            GRANTS_END_WITH_PROTECTION,
            now,
        )? {
            let event = Event::new("grant.revoked", Outcome::Success)
                .object("submission", sub.id.clone())
                .tracking(sub.tracking_number.clone())
                .reason(format!(
                    "from account {grantee}; {GRANTS_END_WITH_PROTECTION}"
                ));
            audit.append(tx, actor, &event)?;
        }
        // Requests waiting for access to it can no longer be granted: closed, each with its entry.
        use crate::models::access_request::{close_pending, PendingOf};
        for closed in close_pending(tx, PendingOf::Submission(&sub.id), Some(&officer.id), now)? {
            audit.append(
                tx,
                actor,
                &closed.event("the submission is no longer validated PCII"),
            )?;
        }
    }
    let tn = sub.tracking_number.clone().unwrap_or_default();
    let notice = match decision {
        Decision::Defective => {
            let due = now + CURE_DAYS * DAY;
            submission::set_defect_notice(tx, &sub.id, to, due, now)?;
            format!(
                "The PCII Program Office found {tn} defective. Cure it by {} (30 days): {}",
                crate::time::datetime(due),
                reason.unwrap_or_default()
            )
        }
        _ => {
            let disposition_due =
                (to == Status::NotValidated).then(|| lifecycle::disposition_deadline(now));
            submission::set_decision(tx, &sub.id, to, &officer.id, disposition_due, now)?;
            match decision {
                Decision::Validate => format!(
                    "{tn} was validated as Protected Critical Infrastructure Information."
                ),
                Decision::NotValidate => format!(
                    "{tn} was not validated as PCII: {}. Choose by {} whether it is returned to you or destroyed; \
                     after that the PCII Program Office may destroy it.",
                    reason.unwrap_or_default(),
                    crate::time::datetime(lifecycle::disposition_deadline(now))
                ),
                _ => format!(
                    "The PCII protection of {tn} was removed: {}",
                    reason.unwrap_or_default()
                ),
            }
        }
    };
    // The officer's words, and the notices that quote them, are sealed; a notice without them stays clear.
    let sealed_reason: Option<Sealed> = reason.map(|r| sealer.seal(r)).transpose()?;
    let notice = match reason {
        Some(_) => sealer.seal(&notice)?.stored,
        None => notice,
    };
    record_transition(
        tx,
        sub,
        Some(&officer.id),
        Change {
            from: Some(from),
            to,
            reason: sealed_reason.as_ref().map(|s| s.stored.as_str()),
            notice: &notice,
        },
        now,
    )?;
    let mut event = Event::new(step.action(), Outcome::Success)
        .object("submission", sub.id.clone())
        .tracking(sub.tracking_number.clone());
    if let Some(r) = &sealed_reason {
        event = event.reason(format!("reason {}", r.audit_ref()));
    }
    Ok((to, event))
}

/// One message for a form's problems, for a caller that did not check the fields itself.
pub(crate) fn invalid(errors: FieldErrors) -> AppError {
    AppError::Invalid(errors.into_values().collect::<Vec<_>>().join(" "))
}

/// A grant's terms as typed, each problem under its form field (`reason`, `expires`): the need-to-know reason
/// is required, and the grant ends in the future but within [`GRANT_MAX_DAYS`]. The cleaned reason when they hold.
pub fn check_grant_terms(reason: &str, expires_at: i64, now: i64) -> Result<String, FieldErrors> {
    let mut errors = FieldErrors::new();
    let reason = match clean_reason(reason) {
        Ok(Some(r)) => Some(r),
        Ok(None) => {
            errors.insert(
                "reason".into(),
                "Give the need-to-know reason for the grant.".into(),
            );
            None
        }
        Err(e) => {
            errors.insert("reason".into(), e.public_message().unwrap_or_default());
            None
        }
    };
    if expires_at <= now {
        errors.insert(
            "expires".into(),
            "The expiry date must be in the future.".into(),
        );
    } else if expires_at > now + GRANT_MAX_DAYS * DAY {
        errors.insert(
            "expires".into(),
            format!("A grant lasts at most {GRANT_MAX_DAYS} days; renew it when it ends."),
        );
    }
    match reason {
        Some(r) if errors.is_empty() => Ok(r),
        _ => Err(errors),
    }
}

/// Grants an authorized user need-to-know access to one validated submission until `expires_at`.
pub async fn grant(
    state: &Services,
    officer: &User,
    actor: &Actor,
    submission_id: &str,
    grantee_id: &str,
    reason: &str,
    expires_at: i64,
) -> AppResult<Granted> {
    let now = state.clock.now();
    let reason = check_grant_terms(reason, expires_at, now).map_err(invalid)?;
    let grantee = grantee_id.to_string();
    officer_fact(
        state,
        officer,
        actor,
        submission_id,
        move |tx, officer, sub, sealer| {
            let (event, granted) =
                grant_in(tx, officer, sub, sealer, &grantee, &reason, expires_at, now)?;
            Ok((granted, event))
        },
    )
    .await
}

/// A grant made: to whom, and what keeps that person from using it now (training, NDA), for the officer's notice.
/// The grant stands either way (training may be under way); reading waits until the record is complete.
#[derive(Debug)]
pub struct Granted {
    pub grantee: String,
    pub cannot_read_yet: Option<crate::workflow::access::Refusal>,
}

/// The grant itself, in the transaction of an [`officer_fact`] (which found `sub` and checked it is not the
/// officer's own): validated PCII, an active authorized user, the reason sealed, the row; the `grant.created`
/// event for the caller to record. `reason` was checked by [`check_grant_terms`].
#[allow(clippy::too_many_arguments)]
pub(crate) fn grant_in(
    tx: &mut DbConn,
    officer: &User,
    sub: &Submission,
    sealer: &Sealer,
    grantee: &str,
    reason: &str,
    expires_at: i64,
    now: i64,
) -> AppResult<(Event, Granted)> {
    may_release(officer, sub)?;
    // An account that does not exist is refused like a disabled one or one of another role.
    let person =
        account::find_opt(tx, grantee)?.filter(|u| !u.disabled && u.role == Role::AuthorizedUser);
    let Some(person) = person else {
        return Err(AppError::Invalid(
            "Choose an active authorized user.".into(),
        ));
    };
    // One live grant per person and submission. A form sent twice (a double click) made two, and revoking the one
    // the page showed left its twin live: one that runs as long is refused. One that runs longer renews: it
    // replaces the live one (revoked in this transaction), as an analyst near a grant's end asks. Checked inside
    // the fact, so two sent at once cannot both pass.
    let live = grant::live_held(tx, grantee, &sub.id, now)?;
    if let Some(until) = live.iter().map(|(_, end)| *end).max() {
        if until >= expires_at {
            // The form's mistake, said at its person field (a 409 would send the page to the generic error).
            return Err(AppError::Invalid(format!(
                "{} already holds a live grant for this submission, until {}. Revoke it first to grant on shorter \
                 terms.",
                person.display_name,
                crate::time::datetime(until)
            )));
        }
    }
    let granted = Granted {
        grantee: person.display_name.clone(),
        cannot_read_yet: crate::workflow::access::standing(
            person.training_completed_at,
            person.nda_signed_at,
            person.nda_expires_at,
            now,
        ),
    };
    let reason = sealer.seal(reason)?;
    let id = crate::db::new_id();
    grant::insert(
        tx,
        &NewGrant {
            id: &id,
            submission_id: &sub.id,
            user_id: grantee,
            granted_by: &officer.id,
            reason: &reason.stored,
            created_at: now,
            expires_at,
        },
    )?;
    let mut renews = String::new();
    if !live.is_empty() {
        let replaced = sealer.seal(&format!("Renewed: replaced by grant {id}."))?;
        for (old, _) in &live {
            grant::revoke(tx, old, &officer.id, &replaced.stored, now)?;
        }
        let ids: Vec<&str> = live.iter().map(|(old, _)| old.as_str()).collect();
        renews = format!("; renews grant {}", ids.join(", "));
    }
    let event = Event::new("grant.created", Outcome::Success)
        .object("submission", sub.id.clone())
        .tracking(sub.tracking_number.clone())
        .reason(format!(
            "to account {grantee} until {}; reason {}{renews}",
            crate::time::datetime(expires_at),
            reason.audit_ref()
        ));
    Ok((event, granted))
}

/// Revokes a grant (effective immediately).
pub async fn revoke(
    state: &Services,
    officer: &User,
    actor: &Actor,
    submission_id: &str,
    grant_id: &str,
    reason: &str,
) -> AppResult<()> {
    let reason = clean_reason(reason)?
        .ok_or_else(|| AppError::Invalid("Give the reason for the revocation.".into()))?;
    let gid = grant_id.to_string();
    let now = state.clock.now();
    officer_fact(
        state,
        officer,
        actor,
        submission_id,
        move |tx, officer, sub, sealer| {
            let held = grant::holder(tx, &gid, &sub.id)?;
            if held.revoked_at.is_some() {
                return Err(AppError::Conflict("This grant was already revoked.".into()));
            }
            let reason = sealer.seal(&reason)?;
            grant::revoke(tx, &gid, &officer.id, &reason.stored, now)?;
            let grantee = &held.user_id;
            let event = Event::new("grant.revoked", Outcome::Success)
                .object("submission", sub.id.clone())
                .tracking(sub.tracking_number.clone())
                .reason(format!(
                    "from account {grantee}; reason {}",
                    reason.audit_ref()
                ));
            Ok(((), event))
        },
    )
    .await
}

/// One release of PCII to a state, local, tribal or territorial entity (6 CFR 29.8).
#[derive(Clone)]
pub struct NewDissemination {
    pub recipient: String,
    pub recipient_kind: String,
    pub arrangement: String,
    pub what: String,
    pub released_at: i64,
    pub sanitized: bool,
    pub removed: String,
    /// One of [`PURPOSES`].
    pub purpose: String,
    /// For a regulatory purpose: where the written consents of the Program Manager and of the submitter are on file.
    pub consent: String,
}
debug_without_words!(NewDissemination);

pub const RECIPIENT_KINDS: [&str; 4] = ["state", "local", "tribal", "territorial"];

/// What a release is for. PCII.md: PCII may not be used for a regulatory purpose without the written consent of
/// both the Program Manager and the submitter, so a regulatory release records where both are on file.
pub const PURPOSES: [&str; 2] = ["homeland_security", "regulatory"];
pub const REGULATORY: &str = "regulatory";

/// A release as typed, each problem under its form field: the recipient, the arrangement and what was
/// released are required, the kind of entity is one of [`RECIPIENT_KINDS`], a sanitized release says what was
/// removed, and the release date is not in the future.
pub fn check_dissemination(d: &NewDissemination, now: i64) -> FieldErrors {
    let mut errors = FieldErrors::new();
    for (field, value, what) in [
        ("recipient", &d.recipient, "the recipient"),
        ("arrangement", &d.arrangement, "the arrangement"),
        ("what", &d.what, "what was released"),
        ("removed", &d.removed, "what was removed"),
        ("consent", &d.consent, "the consents"),
    ] {
        if value.chars().count() > REASON_MAX {
            errors.insert(
                field.into(),
                format!("This is too long (at most {REASON_MAX} characters)."),
            );
        } else if value.trim().is_empty() && !matches!(field, "removed" | "consent") {
            errors.insert(field.into(), format!("Enter {what}."));
        }
    }
    if !RECIPIENT_KINDS.contains(&d.recipient_kind.as_str()) {
        errors.insert(
            "recipient_kind".into(),
            "Choose whether the recipient is a state, local, tribal or territorial entity.".into(),
        );
    }
    if !PURPOSES.contains(&d.purpose.as_str()) {
        errors.insert(
            "purpose".into(),
            "Choose whether the release serves homeland security or a regulatory purpose.".into(),
        );
    } else if d.purpose == REGULATORY && d.consent.trim().is_empty() {
        errors.insert(
            "consent".into(),
            "A regulatory use needs the written consent of both the Program Manager and the submitter: say \
             where each is on file."
                .into(),
        );
    }
    if d.sanitized && d.removed.trim().is_empty() {
        errors.insert(
            "removed".into(),
            "Say what was removed from the sanitized release.".into(),
        );
    }
    // The date is a day (midnight UTC): today's is the last one allowed (an office west of UTC is never ahead).
    if d.released_at > now - now.rem_euclid(DAY) {
        errors.insert(
            "released_on".into(),
            "The release date cannot be in the future.".into(),
        );
    }
    errors
}

/// A release is of validated PCII: its date is not before the day the submission was validated.
fn released_after_validation(d: &NewDissemination, sub: &Submission) -> AppResult<()> {
    let Some(validated) = sub.decided_at else {
        return Ok(());
    };
    if d.released_at < validated - validated.rem_euclid(DAY) {
        let mut errors = FieldErrors::new();
        errors.insert(
            "released_on".into(),
            format!(
                "The release date cannot be before the submission was validated ({}).",
                crate::time::date(validated)
            ),
        );
        return Err(invalid(errors));
    }
    Ok(())
}

pub async fn record_dissemination(
    state: &Services,
    officer: &User,
    actor: &Actor,
    submission_id: &str,
    d: NewDissemination,
) -> AppResult<()> {
    let now = state.clock.now();
    let errors = check_dissemination(&d, now);
    if !errors.is_empty() {
        return Err(invalid(errors));
    }
    officer_fact(
        state,
        officer,
        actor,
        submission_id,
        move |tx, officer, sub, sealer| {
            may_release(officer, sub)?;
            released_after_validation(&d, sub)?;
            let recipient = sealer.seal(d.recipient.trim())?;
            let arrangement = sealer.seal(d.arrangement.trim())?;
            let what = sealer.seal(d.what.trim())?;
            let removed = d
                .sanitized
                .then(|| sealer.seal(d.removed.trim()))
                .transpose()?;
            let regulatory = d.purpose == REGULATORY;
            let consent = regulatory
                .then(|| sealer.seal(d.consent.trim()))
                .transpose()?;
            grant::insert_dissemination(
                tx,
                &NewDisseminationRow {
                    id: &crate::db::new_id(),
                    submission_id: &sub.id,
                    recorded_by: &officer.id,
                    recipient: &recipient.stored,
                    recipient_kind: &d.recipient_kind,
                    arrangement: &arrangement.stored,
                    what: &what.stored,
                    released_at: d.released_at,
                    sanitized: d.sanitized,
                    removed: removed.as_ref().map(|r| r.stored.as_str()),
                    created_at: now,
                    purpose: if regulatory { REGULATORY } else { PURPOSES[0] },
                    consent: consent.as_ref().map(|c| c.stored.as_str()),
                },
            )?;
            let digests: Vec<&str> = [
                Some(&recipient),
                Some(&arrangement),
                Some(&what),
                removed.as_ref(),
                consent.as_ref(),
            ]
            .into_iter()
            .flatten()
            .map(|s| s.digest.as_str())
            .collect();
            let event = Event::new("dissemination.recorded", Outcome::Success)
                .object("submission", sub.id.clone())
                .tracking(sub.tracking_number.clone())
                .reason(format!(
                    "to a {} entity{}{}; recipient, arrangement, what{}{} sealed, sha256 {}",
                    d.recipient_kind,
                    if regulatory {
                        ", for a regulatory purpose with written consents"
                    } else {
                        ""
                    },
                    if d.sanitized { ", sanitized" } else { "" },
                    if d.sanitized { ", removed" } else { "" },
                    if regulatory { ", consents" } else { "" },
                    digests.join(" ")
                ));
            Ok(((), event))
        },
    )
    .await
}
