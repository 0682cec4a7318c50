//! The portal's own mail: what is due is read from the state of things (a defect notice sent, a cure deadline
//! near, a grant, training or NDA about to lapse, an access request waiting), sent, and recorded as sent, so that
//! each goes once. A round runs every `notification_interval_seconds` on whichever instance holds the lease
//! [`LEASE`], so several instances send once between them. Nothing is queued at the act: a notice committed just
//! before a crash is still mailed by the next round. Mail is content-free — what happened and a link, never a
//! tracking number, a title or an officer's words.
//!
//! Delivery is at least once: a message is recorded as sent after the mail route took it, so a crash in between
//! sends it again; a message the route refuses (SMTP down) is tried again next round. A round stops at the first
//! sign that the route is down (not a refusal of one message), so an outage costs a round one timeout, not one per
//! message, and leaves the queued mail untried.

use std::time::Duration;

use serde::Serialize;

use crate::audit::log::{Actor, Event, Outcome};
use crate::db::DbConn;
use crate::error::{AppError, AppResult};
use crate::mail::Mail;
use crate::models::lease;
use crate::models::notification::{self as model, Recipient};
use crate::services::Services;
use crate::time::DAY;

/// The lease the instances take turns on for a round.
pub const LEASE: &str = "notifications";

/// What a notification is about. Defect notices and cure reminders cannot be turned off: a submitter who does not
/// sign in must still learn that the 30-day cure clock runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    DefectNotice,
    CureReminder7,
    CureReminder2,
    GrantEnding,
    TrainingEnding,
    NdaEnding,
    AccessRequest,
    /// A message in a submission's thread (sent at once after it, `pending_mail`; a round retries what failed).
    Message,
    /// The decision on an analyst's access request (sent like a message's).
    AccessDecided,
    /// An officer's proposal to merge the organisation with another, to its administrators (sent like a
    /// message's): the merge needs their consent, so they must learn of it.
    MergeProposed,
    /// A final decision on one of the organisation's submissions, to its members (sent like a message's): "not
    /// validated" waits for their choice of return or destruction (PCII.md: the submitter is notified).
    Decided,
    /// A reminder 7 days before the organisation's answer on a submission not validated or withdrawn is due (return
    /// or destruction, or taking the return package): after it the Program Office may destroy the information.
    DispositionReminder,
    /// The Program Office destroyed a submission whose organisation let that deadline pass (sent like a message's).
    Destroyed,
    /// A passkey of the person's account was refused and removed as a possible copy (sent like a message's, to the
    /// account's own address, whatever its role): whoever holds the copy may be signing in as the person, who must
    /// learn of it before the next sign-in, and reset a password voided with it.
    PasskeyRemoved,
}

impl Kind {
    pub const ALL: [Kind; 14] = [
        Kind::DefectNotice,
        Kind::CureReminder7,
        Kind::CureReminder2,
        Kind::GrantEnding,
        Kind::TrainingEnding,
        Kind::NdaEnding,
        Kind::AccessRequest,
        Kind::Message,
        Kind::AccessDecided,
        Kind::MergeProposed,
        Kind::Decided,
        Kind::DispositionReminder,
        Kind::Destroyed,
        Kind::PasskeyRemoved,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::DefectNotice => "defect_notice",
            Kind::CureReminder7 => "cure_reminder_7",
            Kind::CureReminder2 => "cure_reminder_2",
            Kind::GrantEnding => "grant_ending",
            Kind::TrainingEnding => "training_ending",
            Kind::NdaEnding => "nda_ending",
            Kind::AccessRequest => "access_request",
            Kind::Message => "message",
            Kind::AccessDecided => "access_request_decided",
            Kind::MergeProposed => "merge_proposed",
            Kind::Decided => "decision",
            Kind::DispositionReminder => "disposition_reminder",
            Kind::Destroyed => "destroyed_unclaimed",
            Kind::PasskeyRemoved => "passkey_removed",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// What the account page calls it.
    pub fn label(self) -> &'static str {
        match self {
            Kind::DefectNotice => "A defect notice about one of your organisation's submissions",
            Kind::CureReminder7 => "A reminder 7 days before a cure deadline",
            Kind::CureReminder2 => "A reminder 2 days before a cure deadline",
            Kind::GrantEnding => "A need-to-know grant ending within 14 days",
            Kind::TrainingEnding => "Your PCII training lapsing within 30 days",
            Kind::NdaEnding => "Your non-disclosure agreement expiring within 30 days",
            Kind::AccessRequest => "An analyst's access request waiting for a decision",
            Kind::Message => "A new message about a submission",
            Kind::AccessDecided => "The decision on your access request",
            Kind::MergeProposed => {
                "A proposal to merge your organisation with another (to its administrators)"
            }
            Kind::Decided => "A decision on one of your organisation's submissions",
            Kind::DispositionReminder => {
                "A reminder 7 days before your organisation must choose return or destruction, or take a return"
            }
            Kind::Destroyed => {
                "The Program Office destroying a submission whose return-or-destroy deadline passed"
            }
            Kind::PasskeyRemoved => "A passkey of your account removed because it may have been copied",
        }
    }

    /// Why a kind that cannot be turned off is always sent (what the account page says beside it).
    pub fn always_because(self) -> Option<&'static str> {
        match self {
            Kind::DefectNotice
            | Kind::CureReminder7
            | Kind::CureReminder2
            | Kind::DispositionReminder => Some("a deadline runs"),
            Kind::AccessDecided => Some("your request waits on it"),
            Kind::MergeProposed => Some("nothing merges without your organisation's consent"),
            Kind::Decided => Some("a decision may wait for your organisation's choice"),
            Kind::Destroyed => Some("a destruction record is owed to your organisation"),
            Kind::PasskeyRemoved => Some("it is about who can sign in as you"),
            _ => None,
        }
    }

    /// Whether a person may turn it off (an analyst always learns that a request was decided).
    pub fn optional(self) -> bool {
        self.always_because().is_none()
    }

    /// The kinds a person of `role` receives.
    pub fn for_role(role: crate::domain::Role) -> Vec<Kind> {
        use crate::domain::Role;
        match role {
            Role::Submitter => vec![
                Kind::DefectNotice,
                Kind::CureReminder7,
                Kind::CureReminder2,
                Kind::Decided,
                Kind::DispositionReminder,
                Kind::Destroyed,
                Kind::Message,
                Kind::MergeProposed,
            ],
            Role::Officer => vec![Kind::AccessRequest, Kind::Message],
            Role::AuthorizedUser => {
                vec![Kind::GrantEnding, Kind::TrainingEnding, Kind::NdaEnding]
            }
            _ => Vec::new(),
        }
    }

    fn mail(self, r: &Recipient, link: &str) -> Mail {
        let date = crate::time::date(r.due_at);
        // A cure deadline is a second, not a day: "not validated" opens at it.
        let deadline = crate::time::datetime(r.due_at);
        let name = &r.name;
        let (subject, what) = match self {
            Kind::DefectNotice => (
                "A defect notice about a PCII submission".to_string(),
                format!(
                    "A PCII officer found a defect in one of your organisation's submissions and sent a notice \
                     saying what to correct. It must be corrected by {deadline}; otherwise the Program Office \
                     may decide that it is not protected."
                ),
            ),
            Kind::CureReminder7 | Kind::CureReminder2 => (
                format!("Reminder: a PCII submission must be corrected by {deadline}"),
                format!(
                    "One of your organisation's submissions still has a defect to correct. The deadline is \
                     {deadline}; after it the Program Office may decide that it is not protected."
                ),
            ),
            Kind::DispositionReminder => (
                format!("Reminder: choose what happens to a PCII submission by {deadline}"),
                format!(
                    "One of your organisation's submissions waits for your organisation to choose whether it is \
                     returned or destroyed, or to take the return package it chose. The deadline is {deadline}; \
                     after it the Program Office may destroy the information without returning it."
                ),
            ),
            Kind::GrantEnding => (
                format!("Your access to a PCII submission ends on {date}"),
                format!(
                    "One of your need-to-know grants ends on {date} (UTC). If you still need the information, \
                     ask the Program Office to renew it."
                ),
            ),
            Kind::TrainingEnding => (
                format!("Your PCII training lapses on {date}"),
                format!(
                    "Your PCII training counts until {date} (UTC). After that you cannot read PCII until it is \
                     renewed and recorded."
                ),
            ),
            Kind::NdaEnding => (
                format!("Your PCII non-disclosure agreement expires on {date}"),
                format!(
                    "Your non-disclosure agreement expires on {date} (UTC). After that you cannot read PCII until \
                     a new one is on file."
                ),
            ),
            Kind::AccessRequest => (
                "An access request is waiting for a PCII officer".to_string(),
                "An authorized user asked for need-to-know access to a submission.".to_string(),
            ),
            // The mails acts queue (`pending_mail`): the texts they are sent with at once.
            Kind::Message => return crate::mail::messages::new_message(&r.email, name, link),
            Kind::AccessDecided => {
                return crate::mail::messages::access_request_decided(&r.email, name, link)
            }
            Kind::MergeProposed => return crate::mail::messages::merge_proposed(&r.email, name, link),
            Kind::Decided => return crate::mail::messages::decided(&r.email, name, link),
            Kind::Destroyed => return crate::mail::messages::destroyed(&r.email, name, link),
            Kind::PasskeyRemoved => {
                return crate::mail::messages::passkey_removed(&r.email, name, link)
            }
        };
        Mail {
            to: r.email.clone(),
            subject,
            body: format!(
                "Hello {name},\n\n{what}\n\nSign in to read it:\n\n{link}\n\nYou can choose which optional \
                 messages you get on your account page.\n-- \nPCII Program Office intake portal\n"
            ),
        }
    }
}

/// Whether `kind` may go to a person whose turned-off kinds are `off` (comma-separated).
pub fn wanted(kind: Kind, off: &str) -> bool {
    !kind.optional() || !off.split(',').any(|k| k.trim() == kind.as_str())
}

/// One kind as a person's account page shows it.
#[derive(Debug, Clone, Serialize)]
pub struct Preference {
    pub kind: &'static str,
    pub label: &'static str,
    pub optional: bool,
    /// Why it is always sent, when it cannot be turned off.
    pub always_because: Option<&'static str>,
    pub on: bool,
}

/// The kinds a person of `role` receives, each on or off by `off` (mandatory ones always on).
pub fn preferences(role: crate::domain::Role, off: &str) -> Vec<Preference> {
    Kind::for_role(role)
        .into_iter()
        .map(|k| Preference {
            kind: k.as_str(),
            label: k.label(),
            optional: k.optional(),
            always_because: k.always_because(),
            on: wanted(k, off),
        })
        .collect()
}

/// Keeps on exactly the optional kinds of `user`'s role named in `on` (unknown names and mandatory kinds are
/// ignored: those cannot be turned off), audited as `account.notifications`.
pub fn set_preferences(
    conn: &mut DbConn,
    audit: &crate::audit::log::AuditLog,
    actor: &Actor,
    user: &crate::models::account::User,
    on: &[String],
) -> AppResult<()> {
    let off: Vec<&str> = Kind::for_role(user.role())
        .into_iter()
        .filter(|k| k.optional() && !on.iter().any(|o| o == k.as_str()))
        .map(Kind::as_str)
        .collect();
    let off = off.join(",");
    let uid = user.id.clone();
    audit.fact(conn, actor, |tx| {
        model::set_turned_off(tx, &uid, &off)?;
        let event = Event::new("account.notifications", Outcome::Success)
            .object("account", uid.clone())
            .reason(if off.is_empty() {
                "every notification on".to_string()
            } else {
                format!("turned off: {off}")
            });
        Ok(((), event))
    })
}

/// How long before its deadline an organisation is reminded to answer for a submission not validated.
const DISPOSITION_REMINDER_BEFORE: i64 = 7 * DAY;

/// Whether an organisation hears by email that its answer is awaited: for the officer who may destroy what it
/// leaves unanswered. `None` when no answer is awaited.
#[derive(Debug, Serialize)]
pub struct DispositionReach {
    /// Members who can be mailed now (enabled, address confirmed).
    pub mailable: i64,
    /// Members the reminder went to, and when it first went.
    pub reminded: i64,
    pub reminded_at: Option<i64>,
    /// When the reminder is due, and whether that time has come.
    pub reminder_from: i64,
    pub reminder_due: bool,
}

pub async fn disposition_reach(
    state: &Services,
    sub: &crate::models::submission::Submission,
) -> AppResult<Option<DispositionReach>> {
    let Some(due) = crate::workflow::lifecycle::disposition_awaited(sub) else {
        return Ok(None);
    };
    let oid = sub.organisation_id.clone();
    let subject = model::disposition_subject(&sub.id, due);
    let (mailable, reminded, reminded_at) = state
        .db
        .run(move |c| {
            Ok(model::reach(
                c,
                &oid,
                Kind::DispositionReminder.as_str(),
                &subject,
            )?)
        })
        .await?;
    let reminder_from = due - DISPOSITION_REMINDER_BEFORE;
    Ok(Some(DispositionReach {
        mailable,
        reminded,
        reminded_at,
        reminder_from,
        reminder_due: state.clock.now() >= reminder_from,
    }))
}

/// Everything due now that was not sent yet and the person did not turn off.
pub fn due(conn: &mut DbConn, now: i64) -> AppResult<Vec<(Kind, Recipient)>> {
    let training_valid = crate::domain::TRAINING_VALID_DAYS * DAY;
    let mut all: Vec<(Kind, Recipient)> = Vec::new();
    let tag = |kind: Kind, v: Vec<Recipient>| v.into_iter().map(move |r| (kind, r));
    all.extend(tag(Kind::DefectNotice, model::defect_notices(conn, now)?));
    // Within 2 days: the 2-day reminder only (the 7-day one would say the same, later than due).
    let two = model::cure_deadlines(conn, now, 2 * DAY)?;
    let seven: Vec<Recipient> = model::cure_deadlines(conn, now, 7 * DAY)?
        .into_iter()
        .filter(|r| r.due_at - now > 2 * DAY)
        .collect();
    all.extend(tag(Kind::CureReminder2, two));
    all.extend(tag(Kind::CureReminder7, seven));
    all.extend(tag(
        Kind::DispositionReminder,
        model::disposition_deadlines(conn, now, DISPOSITION_REMINDER_BEFORE)?,
    ));
    all.extend(tag(
        Kind::GrantEnding,
        model::grants_ending(conn, now, 14 * DAY)?,
    ));
    all.extend(tag(
        Kind::TrainingEnding,
        model::training_ending(conn, now, training_valid, 30 * DAY)?,
    ));
    all.extend(tag(
        Kind::NdaEnding,
        model::nda_ending(conn, now, 30 * DAY)?,
    ));
    all.extend(tag(
        Kind::AccessRequest,
        model::access_requests_pending(conn)?,
    ));
    // What was sent already is read a kind at a time, for all its subjects at once.
    let mut sent = std::collections::HashMap::new();
    let kinds: std::collections::BTreeSet<&'static str> =
        all.iter().map(|(k, _)| k.as_str()).collect();
    for kind in kinds {
        let mut subjects: Vec<&str> = all
            .iter()
            .filter(|(k, _)| k.as_str() == kind)
            .map(|(_, r)| r.subject.as_str())
            .collect();
        subjects.sort_unstable();
        subjects.dedup();
        sent.insert(kind, model::sent_among(conn, kind, &subjects)?);
    }
    Ok(all
        .into_iter()
        .filter(|(kind, r)| {
            wanted(*kind, &r.off)
                && !sent
                    .get(kind.as_str())
                    .is_some_and(|s| s.contains(&(r.subject.clone(), r.user_id.clone())))
        })
        .collect())
}

/// What a round did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Round {
    pub sent: Vec<(Kind, String)>,
    /// Refused by the mail route: tried again next round (or, for a queued mail, after its delay).
    pub failed: usize,
    /// Queued mail dropped: not sent within three days, or refused for good (`pending_mail`).
    pub given_up: usize,
    /// Another instance took the lease over while this round ran (it lasted longer than the lease, renewals
    /// included): the round stopped before its next mail, which that instance's round sends.
    pub lease_lost: bool,
}

/// What a round needs of the services (owned, so that the periodic task can keep it).
#[derive(Clone)]
struct Parts {
    db: crate::db::Db,
    audit: crate::audit::log::AuditLog,
    mailer: std::sync::Arc<crate::mail::Mailer>,
    clock: crate::clock::Clock,
}

impl Parts {
    fn of(state: &Services) -> Parts {
        Parts {
            db: state.db.clone(),
            audit: state.audit.clone(),
            mailer: state.mailer.clone(),
            clock: state.clock.clone(),
        }
    }
}

/// One round: when this instance holds the lease (taken for `lease_secs`), sends what is due and records it;
/// `None` when another instance holds it. Audited (`notifications.sent`, the counts per kind, no addresses) when
/// it sent or failed anything.
pub async fn round(state: &Services, lease_secs: i64) -> AppResult<Option<Round>> {
    round_with(&Parts::of(state), lease_secs).await
}

async fn round_with(parts: &Parts, lease_secs: i64) -> AppResult<Option<Round>> {
    let now = parts.clock.now();
    let held = lease::Held {
        name: LEASE,
        holder: crate::workflow::blobs::lease_holder(),
        seconds: lease_secs,
    };
    let due = parts
        .db
        .run(move |c| {
            if !held.renew(c)? {
                return Ok(None);
            }
            Ok(Some(due(c, now)?))
        })
        .await?;
    let Some(due) = due else {
        return Ok(None);
    };
    let mut done = Round::default();
    let mut route_down = false;
    // A database fault after mail went: the round stops, but what it sent is still audited before the error is
    // returned (nothing else could record it).
    let mut stopped: Option<AppError> = None;
    let total = due.len();
    for (i, (kind, r)) in due.into_iter().enumerate() {
        // Each mail may wait for the SMTP timeout: the lease is renewed before each, so that a long round keeps it
        // and no other instance starts sending the same mails meanwhile.
        if i > 0 {
            match parts.db.run(move |c| Ok(held.renew(c)?)).await {
                Ok(true) => {}
                Ok(false) => {
                    tracing::warn!(
                        not_sent = total - i,
                        "another instance took the notification lease over; this round stops"
                    );
                    done.lease_lost = true;
                    break;
                }
                Err(e) => {
                    done.failed += total - i;
                    stopped = Some(e);
                    break;
                }
            }
        }
        let mail = kind.mail(&r, &parts.mailer.link(&r.path));
        match crate::mail::send_off_executor(&parts.mailer, mail).await {
            Ok(()) => {}
            // This message only: the others may go.
            Err(e) if !e.route_is_down() => {
                tracing::warn!(kind = kind.as_str(), error = %e, "a notification could not be sent; the next round tries again");
                done.failed += 1;
                continue;
            }
            // The route is down: the rest would each wait for its timeout, holding the lease. They stay due (their
            // state has not changed) for the next round.
            Err(e) => {
                let not_tried = total - i - 1;
                tracing::warn!(kind = kind.as_str(), error = %e, not_tried, "the mail route is down; the next round tries again");
                done.failed += 1 + not_tried;
                route_down = true;
                break;
            }
        }
        // The mail went: a passing fault here would send it again next round, so the record is retried.
        let (subject, user) = (r.subject.clone(), r.user_id.clone());
        let recorded = parts
            .db
            .run_retried(move |c| Ok(model::record_sent(c, kind.as_str(), &subject, &user, now)?))
            .await;
        done.sent.push((kind, r.user_id));
        if let Err(e) = recorded {
            done.failed += total - i - 1;
            stopped = Some(e);
            break;
        }
    }
    // Then the mail acts promised and the route did not take at once (`pending_mail`), unless the route is down:
    // they stay due, untried, without counting an attempt.
    if !route_down && !done.lease_lost && stopped.is_none() {
        match crate::workflow::pending_mail::retry_due(&parts.db, &parts.mailer, held, now).await {
            Ok(retried) => {
                done.lease_lost = retried.lease_lost;
                done.sent.extend(retried.sent);
                done.failed += retried.failed;
                done.given_up = retried.given_up;
                stopped = retried.stopped.map(AppError::Unavailable);
            }
            Err(e) => stopped = Some(e),
        }
    }
    if !done.sent.is_empty() || done.failed > 0 || done.given_up > 0 {
        let mut counts: std::collections::BTreeMap<&str, usize> = Default::default();
        for (k, _) in &done.sent {
            *counts.entry(k.as_str()).or_default() += 1;
        }
        let summary = counts
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect::<Vec<_>>()
            .join(", ");
        let outcome = if done.failed == 0 && done.given_up == 0 {
            Outcome::Success
        } else {
            Outcome::Failure
        };
        let mut reason = format!(
            "sent: {}; not sent (tried again next round): {}",
            if summary.is_empty() {
                "none".into()
            } else {
                summary
            },
            done.failed
        );
        if done.lease_lost {
            reason.push_str("; stopped: another instance took the lease over and sends the rest");
        }
        if stopped.is_some() {
            reason
                .push_str("; stopped: the database did not answer (the rest are tried next round)");
        }
        if done.given_up > 0 {
            reason.push_str(&format!(
                "; queued mail given up (not sent within 3 days, or an unusable address): {}",
                done.given_up
            ));
        }
        let event = Event::new("notifications.sent", outcome).reason(reason);
        let audit = parts.audit.clone();
        parts
            .db
            .run(move |c| audit.record(c, &Actor::system(), event))
            .await?;
    }
    if let Some(e) = stopped {
        return Err(e);
    }
    Ok(Some(done))
}

/// At start: see [`lease::clear_own_at_start`].
pub fn clear_lease_at_start(conn: &mut DbConn) -> diesel::QueryResult<()> {
    lease::clear_own_at_start(conn, LEASE)
}

/// Runs a round every `notification_interval_seconds` (0: never) on the current Tokio runtime.
pub fn spawn_periodic(state: &Services) {
    let every = state.settings.notification_interval_seconds;
    if every == 0 {
        return;
    }
    let parts = Parts::of(state);
    let lease_secs = crate::workflow::blobs::lease_seconds(every);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(every));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = round_with(&parts, lease_secs).await {
                tracing::warn!(error = %e, "a notification round failed; the next one tries again");
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defect_and_cure_mail_cannot_be_turned_off_and_the_others_can() {
        let off = "defect_notice,cure_reminder_7,cure_reminder_2,grant_ending,message";
        assert!(wanted(Kind::DefectNotice, off));
        assert!(wanted(Kind::CureReminder7, off));
        assert!(wanted(Kind::CureReminder2, off));
        assert!(!wanted(Kind::GrantEnding, off));
        assert!(!wanted(Kind::Message, off));
        assert!(wanted(Kind::NdaEnding, off));
        for k in Kind::ALL {
            assert_eq!(Kind::parse(k.as_str()), Some(k));
        }
    }

    #[test]
    fn mail_names_neither_submission_nor_title() {
        let r = Recipient {
            user_id: "u".into(),
            email: "ann@acme.example".into(),
            name: "Ann".into(),
            subject: "sub-id@1700000000".into(),
            due_at: 1_700_000_000,
            path: "/submissions".into(),
            off: String::new(),
        };
        for k in Kind::ALL {
            let m = k.mail(&r, &format!("https://portal.example{}", r.path));
            assert!(
                !m.body.contains("sub-id") && !m.subject.contains("sub-id"),
                "{k:?}"
            );
            assert!(!m.body.contains("PCII-"), "{k:?}");
        }
    }
}
