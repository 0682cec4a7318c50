//! The PCII lifecycle of one submission as a single state machine (6 CFR 29.6 as `../shared/PCII.md`
//! describes it), and every rule that depends on where a submission stands in it. Services ask
//! [`check`] (or the rules below) before every change; handlers and templates show what
//! [`affordances`] derives from the same rules and never test a status themselves.

use crate::db::DbConn;
use crate::domain::{Disposition, Role, Status};
use crate::error::{AppError, AppResult};
use crate::models::account::User;
use crate::models::event::{self, NewEvent};
use crate::models::notice::{self, NewNotice};
use crate::models::submission::Submission;
use serde::Serialize;

/// Every step a person can take on a submission.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The submitter sends a draft: received, presumed protected.
    Submit,
    /// An officer finds a procedural defect (with the list of defects).
    MarkDefective,
    /// The submitter answers the defect notice.
    Cure,
    /// An officer validates: the information is PCII.
    Validate,
    /// An officer decides it is not PCII (with a reason); the submitter then chooses return or destroy.
    NotValidate,
    /// An officer removes the protection of validated PCII (with a reason): it was customarily in the public
    /// domain when submitted, or the submitter asked in writing (6 CFR 29.6(f)). Information not yet validated
    /// is decided "not validated" instead.
    RemoveProtection,
    /// The submitter withdraws before a final decision.
    Withdraw,
    /// The submitter chooses destruction after a withdrawal or a "not validated" decision.
    Destroy,
    /// The submitter took its last package back: the content is destroyed, the submission returned.
    Return,
    /// The Program Office destroys what the organisation left unanswered: no choice between return and destruction,
    /// or a return package not taken, by the deadline ([`disposition_lapsed`]).
    DestroyUnclaimed,
}

impl Step {
    pub fn action(self) -> &'static str {
        match self {
            Step::Submit => "submission.received",
            Step::MarkDefective => "decision.defective",
            Step::Cure => "submission.cured",
            Step::Validate => "decision.validated",
            Step::NotValidate => "decision.not_validated",
            Step::RemoveProtection => "decision.protection_removed",
            Step::Withdraw => "submission.withdrawn",
            Step::Destroy => "submission.destroyed",
            Step::Return => "submission.returned",
            Step::DestroyUnclaimed => "decision.destroyed_unclaimed",
        }
    }

    /// Whether a person must give a reason: every officer's decision (PCII.md: an officer never decides without
    /// leaving one), the defect list being a defect notice's reason.
    pub fn needs_reason(self) -> bool {
        matches!(
            self,
            Step::MarkDefective | Step::Validate | Step::NotValidate | Step::RemoveProtection
        )
    }

    fn who(self) -> Role {
        match self {
            Step::Submit | Step::Cure | Step::Withdraw | Step::Destroy | Step::Return => {
                Role::Submitter
            }
            Step::MarkDefective
            | Step::Validate
            | Step::NotValidate
            | Step::RemoveProtection
            | Step::DestroyUnclaimed => Role::Officer,
        }
    }
}

/// Why a step may not be taken, in words for the person who tried (shown as a conflict).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct StepRefused(String);

impl From<StepRefused> for AppError {
    fn from(e: StepRefused) -> AppError {
        AppError::Conflict(e.0)
    }
}

/// The state a step leads to from `from`, or why it may not be taken. `disposition` is what the submitter
/// chose (return / destroy) where that matters.
pub fn check(from: Status, step: Step, role: Role) -> Result<Status, StepRefused> {
    if role != step.who() {
        return Err(StepRefused(format!(
            "only a {} may do this",
            step.who().label().to_lowercase()
        )));
    }
    use Status::*;
    let to = match (step, from) {
        (Step::Submit, Draft) => Received,
        (Step::MarkDefective, Received) => Defective,
        (Step::Cure, Defective) => Received,
        (Step::Validate, Received) => Validated,
        (Step::NotValidate, Received | Defective) => NotValidated,
        (Step::RemoveProtection, Validated) => ProtectionRemoved,
        (Step::Withdraw, Received | Defective) => Withdrawn,
        (Step::Destroy, NotValidated | Withdrawn) => Destroyed,
        (Step::Return, NotValidated | Withdrawn) => Returned,
        (Step::DestroyUnclaimed, NotValidated | Withdrawn) => Destroyed,
        (step, from) => {
            return Err(StepRefused(format!(
                "a submission that is {} cannot be {}",
                from.label().to_lowercase(),
                match step {
                    Step::Submit => "submitted",
                    Step::MarkDefective => "marked defective",
                    Step::Cure => "cured",
                    Step::Validate => "validated",
                    Step::NotValidate => "marked not validated",
                    Step::RemoveProtection => "have its protection removed",
                    Step::Withdraw => "withdrawn",
                    Step::Destroy => "destroyed",
                    Step::Return => "returned",
                    Step::DestroyUnclaimed => "destroyed by the Program Office",
                }
            )))
        }
    };
    Ok(to)
}

/// The submitter may still change the content: a draft, or a defective submission being cured.
pub fn editable(status: Status) -> bool {
    may(status, Step::Submit, Role::Submitter) || may(status, Step::Cure, Role::Submitter)
}

/// The content is gone for good (crypto-shredded): returned or destroyed.
pub fn content_destroyed(status: Status) -> bool {
    matches!(status, Status::Returned | Status::Destroyed)
}

/// Files may be removed from a draft only; a cure adds a corrected file instead, so what the Program
/// Office received stays on record.
pub fn files_removable(status: Status) -> bool {
    status == Status::Draft
}

/// Only a draft may be deleted; a sent submission is withdrawn instead.
pub fn deletable(status: Status) -> bool {
    status == Status::Draft
}

/// Need-to-know grants, their revocation and dissemination records: for validated PCII only.
pub fn releasable(status: Status) -> bool {
    status == Status::Validated
}

/// Conflict of interest: an officer never acts on a submission of its own organisation.
pub fn own_organisation(officer: &User, sub: &Submission) -> bool {
    officer.organisation_id.as_deref() == Some(sub.organisation_id.as_str())
}

/// The submitter must still choose between return and destruction.
pub fn awaiting_disposition(sub: &Submission) -> bool {
    sub.status() == Status::NotValidated && sub.disposition.is_none()
}

/// The submitter chose "return" and has not yet confirmed it took its package back.
pub fn return_pending(sub: &Submission) -> bool {
    may(sub.status(), Step::Return, Role::Submitter) && sub.disposition == Some(Disposition::Return)
}

/// Until when the organisation may choose return or destruction, or take its return package, for a step taken at
/// `now` that opens that choice (a "not validated" decision, a withdrawal, a choice of return).
pub fn disposition_deadline(now: i64) -> i64 {
    now + crate::domain::DISPOSITION_DAYS * crate::time::DAY
}

/// The organisation's answer is still awaited (return or destruction not chosen, or the return package not taken)
/// and its deadline: `None` for any submission not waiting on it.
pub fn disposition_awaited(sub: &Submission) -> Option<i64> {
    let waiting = awaiting_disposition(sub) || return_pending(sub);
    sub.disposition_due_at.filter(|_| waiting)
}

/// The organisation's deadline passed without its answer: the Program Office may destroy the content
/// ([`Step::DestroyUnclaimed`]). Submissions that never had a deadline (none is set for them) stay as they are.
pub fn disposition_lapsed(sub: &Submission, now: i64) -> bool {
    disposition_awaited(sub).is_some_and(|due| due <= now)
}

fn may(from: Status, step: Step, role: Role) -> bool {
    check(from, step, role).is_ok()
}

/// What a person may do with one submission right now, from the rules above: the buttons and forms its
/// pages offer. The services check the same rules again when the action arrives.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Affordances {
    /// Open the form (a draft to finish, or a defect notice to answer).
    pub edit: bool,
    /// The submission is defective: the form answers the defect notice; the cure clock runs.
    pub cure: bool,
    pub remove_files: bool,
    pub withdraw: bool,
    pub delete: bool,
    pub choose_disposition: bool,
    pub take_return: bool,
    /// Until when the organisation may choose return or destruction, or take its return package.
    pub disposition_due: Option<i64>,
    /// The organisation's deadline passed without its answer: the officer may destroy the content.
    pub destroy_unclaimed: bool,
    /// The officer belongs to the submitting organisation: it may read, not act.
    pub own_organisation: bool,
    /// Record any of the decisions open at this stage.
    pub decide: bool,
    pub mark_defective: bool,
    pub validate: bool,
    pub not_validate: bool,
    pub remove_protection: bool,
    /// A defective submission's cure deadline while it is still ahead: "not validated" waits for it.
    pub cure_due: Option<i64>,
    /// Grant, revoke and record disseminations.
    pub release: bool,
    /// The grants and disseminations of validated PCII are listed.
    pub see_releases: bool,
}

/// The deadline of a defective submission's cure period while it runs (PCII.md: the submitter has 30 days to cure;
/// only if it is not cured may the office end the presumption). `None` once it has passed, or for any other status.
pub fn cure_period_runs(sub: &Submission, now: i64) -> Option<i64> {
    sub.cure_due_at
        .filter(|due| sub.status() == Status::Defective && *due > now)
}

pub fn affordances(sub: &Submission, user: &User, now: i64) -> Affordances {
    let status = sub.status();
    match user.role() {
        Role::Submitter
            if user.organisation_id.as_deref() == Some(sub.organisation_id.as_str()) =>
        {
            let s = Role::Submitter;
            Affordances {
                edit: editable(status),
                cure: may(status, Step::Cure, s),
                remove_files: files_removable(status),
                withdraw: may(status, Step::Withdraw, s),
                delete: deletable(status),
                choose_disposition: awaiting_disposition(sub),
                take_return: return_pending(sub),
                disposition_due: disposition_awaited(sub),
                ..Affordances::default()
            }
        }
        Role::Officer => {
            let own = own_organisation(user, sub);
            let o = Role::Officer;
            let cure_due = cure_period_runs(sub, now);
            let acts = |step| {
                !own && may(status, step, o) && !(step == Step::NotValidate && cure_due.is_some())
            };
            Affordances {
                cure: status == Status::Defective,
                own_organisation: own,
                decide: acts(Step::MarkDefective)
                    || acts(Step::Validate)
                    || acts(Step::NotValidate),
                mark_defective: acts(Step::MarkDefective),
                validate: acts(Step::Validate),
                not_validate: acts(Step::NotValidate),
                remove_protection: acts(Step::RemoveProtection),
                // What the officer may do once it passes: nothing, for an officer of the submitting organisation.
                cure_due: cure_due.filter(|_| !own),
                disposition_due: disposition_awaited(sub),
                destroy_unclaimed: acts(Step::DestroyUnclaimed) && disposition_lapsed(sub, now),
                release: !own && releasable(status),
                see_releases: releasable(status),
                ..Affordances::default()
            }
        }
        _ => Affordances::default(),
    }
}

/// One status change as the history and the submitter see it.
pub struct Change<'a> {
    pub from: Option<Status>,
    pub to: Status,
    pub reason: Option<&'a str>,
    /// The notice to the submitting organisation ("" for none).
    pub notice: &'a str,
}

/// Writes what every transition leaves behind, inside the caller's transaction: the status history row and
/// the in-portal notice to the submitting organisation. (The audit entry is the caller's `AuditLog::fact`.)
pub fn record_transition(
    tx: &mut DbConn,
    submission: &Submission,
    actor_id: Option<&str>,
    change: Change<'_>,
    now: i64,
) -> AppResult<()> {
    let Change {
        from,
        to,
        reason,
        notice: message,
    } = change;
    event::insert(
        tx,
        &NewEvent {
            id: &crate::db::new_id(),
            submission_id: &submission.id,
            at: now,
            actor_id,
            from_status: from,
            to_status: to,
            reason,
        },
    )?;
    if !message.is_empty() {
        notice::insert(
            tx,
            &NewNotice {
                id: &crate::db::new_id(),
                organisation_id: &submission.organisation_id,
                submission_id: &submission.id,
                created_at: now,
                message,
            },
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_documented_paths_are_allowed() {
        use Status::*;
        let s = Role::Submitter;
        let o = Role::Officer;
        assert_eq!(check(Draft, Step::Submit, s), Ok(Received));
        assert_eq!(check(Received, Step::MarkDefective, o), Ok(Defective));
        assert_eq!(check(Defective, Step::Cure, s), Ok(Received));
        assert_eq!(check(Received, Step::Validate, o), Ok(Validated));
        assert_eq!(check(Defective, Step::NotValidate, o), Ok(NotValidated));
        assert_eq!(check(NotValidated, Step::Destroy, s), Ok(Destroyed));
        assert_eq!(check(NotValidated, Step::Return, s), Ok(Returned));
        assert_eq!(check(Received, Step::Withdraw, s), Ok(Withdrawn));
        assert_eq!(
            check(Validated, Step::RemoveProtection, o),
            Ok(ProtectionRemoved)
        );
    }

    #[test]
    fn illegal_steps_and_wrong_roles_are_refused() {
        use Status::*;
        // Validation only from "received": a defect must be cured first.
        assert!(check(Defective, Step::Validate, Role::Officer).is_err());
        // Protection is removed from validated PCII only; before that the decision is "not validated".
        assert!(check(Received, Step::RemoveProtection, Role::Officer).is_err());
        assert!(check(Defective, Step::RemoveProtection, Role::Officer).is_err());
        // No withdrawal after a final decision.
        assert!(check(Validated, Step::Withdraw, Role::Submitter).is_err());
        // Terminal states go nowhere.
        for step in [Step::Submit, Step::Cure, Step::Destroy, Step::Return] {
            assert!(check(Destroyed, step, Role::Submitter).is_err());
            assert!(check(Returned, step, Role::Submitter).is_err());
        }
        // Submitters never decide; officers never submit; others do nothing.
        assert!(check(Received, Step::Validate, Role::Submitter).is_err());
        assert!(check(Draft, Step::Submit, Role::Officer).is_err());
        for role in [Role::Auditor, Role::Administrator, Role::AuthorizedUser] {
            assert!(check(Received, Step::Validate, role).is_err());
            assert!(check(Draft, Step::Submit, role).is_err());
        }
    }

    fn submission(status: Status, organisation: &str) -> Submission {
        Submission {
            id: "s".into(),
            tracking_number: None,
            organisation_id: organisation.into(),
            submitter_id: "u".into(),
            status,
            sector: "Energy".into(),
            content_blob_id: None,
            sent_content_blob_id: None,
            saved_sector: None,
            statement_version: None,
            statement_affirmed_at: None,
            statement_affirmed_by: None,
            certified_at: None,
            file_count: 0,
            total_bytes: 0,
            created_at: 0,
            updated_at: 0,
            received_at: None,
            defect_notice_at: None,
            cure_due_at: None,
            decided_at: None,
            decided_by: None,
            disposition: None,
            disposition_due_at: None,
            closed_at: None,
        }
    }

    fn person(role: Role, organisation: Option<&str>) -> User {
        User {
            id: "p".into(),
            email: "p@example.org".into(),
            display_name: "P".into(),
            role,
            organisation_id: organisation.map(str::to_string),
            password_hash: String::new(),
            disabled: false,
            training_completed_at: None,
            nda_signed_at: None,
            nda_reference: None,
            created_at: 0,
            password_changed_at: 0,
            org_admin: false,
            email_verified_at: Some(0),
            agency: None,
            nda_expires_at: None,
        }
    }

    #[test]
    fn affordances_follow_the_rules_for_each_status_and_person() {
        use Status::*;
        let submitter = person(Role::Submitter, Some("acme"));
        let stranger = person(Role::Submitter, Some("globex"));
        let officer = person(Role::Officer, None);
        let conflicted = person(Role::Officer, Some("acme"));
        for status in Status::ALL {
            let sub = submission(status, "acme");
            let mine = affordances(&sub, &submitter, 0);
            assert_eq!(mine.edit, matches!(status, Draft | Defective), "{status:?}");
            assert_eq!(mine.cure, status == Defective, "{status:?}");
            assert_eq!(
                mine.remove_files || mine.delete,
                status == Draft,
                "{status:?}"
            );
            assert_eq!(
                mine.withdraw,
                matches!(status, Received | Defective),
                "{status:?}"
            );
            assert!(!mine.decide && !mine.release, "{status:?}");
            assert_eq!(
                affordances(&sub, &stranger, 0),
                Affordances::default(),
                "{status:?}"
            );

            let po = affordances(&sub, &officer, 0);
            assert_eq!(po.validate, status == Received, "{status:?}");
            assert_eq!(po.mark_defective, status == Received, "{status:?}");
            assert_eq!(
                po.not_validate,
                matches!(status, Received | Defective),
                "{status:?}"
            );
            assert_eq!(
                po.decide,
                matches!(status, Received | Defective),
                "{status:?}"
            );
            assert_eq!(po.remove_protection, status == Validated, "{status:?}");
            assert_eq!(po.release, status == Validated, "{status:?}");
            assert!(!po.edit && !po.withdraw, "{status:?}");

            // Conflict of interest: the officer of the submitting organisation reads, never acts.
            let own = affordances(&sub, &conflicted, 0);
            assert!(own.own_organisation);
            assert!(
                !own.decide && !own.remove_protection && !own.release,
                "{status:?}"
            );
            assert_eq!(own.see_releases, status == Validated);
        }
        let mut chose = submission(NotValidated, "acme");
        assert!(affordances(&chose, &submitter, 0).choose_disposition);
        chose.disposition = Some(Disposition::Return);
        let after = affordances(&chose, &submitter, 0);
        assert!(!after.choose_disposition && after.take_return);
        for role in [Role::AuthorizedUser, Role::Auditor, Role::Administrator] {
            let sub = submission(Validated, "acme");
            assert_eq!(
                affordances(&sub, &person(role, None), 0),
                Affordances::default()
            );
        }
    }

    #[test]
    fn not_validated_waits_for_the_end_of_the_cure_period() {
        let officer = person(Role::Officer, None);
        let mut sub = submission(Status::Defective, "acme");
        sub.cure_due_at = Some(1_000);
        let during = affordances(&sub, &officer, 999);
        assert_eq!(cure_period_runs(&sub, 999), Some(1_000));
        assert!(!during.not_validate && !during.decide);
        assert_eq!(during.cure_due, Some(1_000));
        // An officer of the submitting organisation is not told what it may do after: it may do nothing.
        let own = affordances(&sub, &person(Role::Officer, Some("acme")), 999);
        assert_eq!(own.cure_due, None);
        for after in [1_000, 5_000] {
            let a = affordances(&sub, &officer, after);
            assert!(
                a.not_validate && a.decide && a.cure_due.is_none(),
                "{after}"
            );
        }
        // Only a defective submission has a cure period: a stale deadline on another status holds nothing up.
        sub.status = Status::Received;
        assert_eq!(cure_period_runs(&sub, 999), None);
        assert!(affordances(&sub, &officer, 999).not_validate);
    }

    #[test]
    fn the_office_may_destroy_only_what_waits_on_an_answer_past_its_deadline() {
        let officer = person(Role::Officer, None);
        let own = person(Role::Officer, Some("acme"));
        let submitter = person(Role::Submitter, Some("acme"));
        let mut sub = submission(Status::NotValidated, "acme");
        sub.disposition_due_at = Some(1_000);
        assert_eq!(disposition_awaited(&sub), Some(1_000));
        assert_eq!(
            affordances(&sub, &submitter, 0).disposition_due,
            Some(1_000)
        );
        assert!(!disposition_lapsed(&sub, 999));
        assert!(!affordances(&sub, &officer, 999).destroy_unclaimed);
        for at in [1_000, 5_000] {
            assert!(disposition_lapsed(&sub, at));
            assert!(affordances(&sub, &officer, at).destroy_unclaimed, "{at}");
            assert!(!affordances(&sub, &own, at).destroy_unclaimed, "{at}");
            assert!(!affordances(&sub, &submitter, at).destroy_unclaimed, "{at}");
        }
        // A return chosen and not taken waits too, after a withdrawal as after the decision.
        sub.disposition = Some(Disposition::Return);
        assert!(disposition_lapsed(&sub, 1_000));
        sub.status = Status::Withdrawn;
        assert!(affordances(&sub, &officer, 1_000).destroy_unclaimed);
        // Nothing waits on the organisation in any other state, whatever deadline the row still holds.
        for status in [
            Status::Validated,
            Status::ProtectionRemoved,
            Status::Destroyed,
            Status::Returned,
            Status::Received,
        ] {
            sub.status = status;
            assert_eq!(disposition_awaited(&sub), None, "{status:?}");
            assert!(
                !affordances(&sub, &officer, 5_000).destroy_unclaimed,
                "{status:?}"
            );
        }
        // A submission from before deadlines were kept has none: nothing lapses.
        let mut old = submission(Status::NotValidated, "acme");
        old.disposition_due_at = None;
        assert!(!disposition_lapsed(&old, i64::MAX));
        assert!(check(
            Status::NotValidated,
            Step::DestroyUnclaimed,
            Role::Submitter
        )
        .is_err());
        assert_eq!(
            check(Status::Withdrawn, Step::DestroyUnclaimed, Role::Officer),
            Ok(Status::Destroyed)
        );
    }
}
