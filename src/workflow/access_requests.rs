//! Authorized users at work: their live grants as their home lists them (title, reason, days left), their
//! requests for need-to-know access to validated PCII by tracking number, and the officers' decision on each
//! request. Every act is one transaction with its audit entry; the analyst's and the officer's words are sealed
//! with the submission's data key; a grant goes through `decisions::grant_in`, so all of its rules apply.

use std::collections::{HashMap, HashSet};

use crate::audit::log::{Actor, Event, Outcome};
use crate::db::DbConn;
use crate::error::{AppError, AppResult};
use crate::key_store::data_keys::WrappedKey;
use crate::mail::Mailer;
use crate::models::access_request::{self, NewAccessRequest, PendingView, RequestState};
use crate::models::account::{self, User};
use crate::models::grant::{self, GrantRow};
use crate::models::submission::{self, Scope};
use crate::services::Services;
use crate::time::DAY;
use crate::workflow::access::{self, Refusal};
use crate::workflow::content::{is_tracking_number, FieldErrors};
use crate::workflow::decisions;
use crate::workflow::documents;
use crate::workflow::lifecycle;
use crate::workflow::notifications::Kind;
use crate::workflow::pending_mail::{self, Queued};
use crate::workflow::sealed_text::{Sealer, Texts};

/// A grant this close to its end is shown with a warning, and its holder may ask for it to be renewed.
pub const EXPIRY_WARNING_DAYS: i64 = 14;
/// Longest reason, the analyst's or the officer's.
pub const REASON_MAX: usize = 4000;
/// The most pending requests the officers' page lists at once (oldest first).
pub const PENDING_SHOWN: i64 = 200;
/// The most of its own requests an analyst's home lists (newest first).
pub const OWN_SHOWN: i64 = 50;

/// What an analyst is told for a number that is not a validated submission's, whether no submission has it or
/// one has that is not validated: the answer must not tell the two apart.
pub const NO_VALIDATED_SUBMISSION: &str =
    "No validated PCII has this tracking number. Check the number: access is granted to validated PCII only.";

/// Numbers that are not validated PCII's one analyst may ask about in [`MISSES_WINDOW_SECS`] before every request of
/// theirs is refused until the window has passed: typos are few, a sweep of tracking numbers to learn which are
/// validated PCII is many.
pub const MISSES_ALLOWED: i64 = 10;
pub const MISSES_WINDOW_SECS: i64 = 3600;
/// What an analyst whose misses are throttled is told, for every number alike (a hit must not show through the lock).
pub const TOO_MANY_MISSES: &str =
    "Too many requests named a number that is not validated PCII. Try again in an hour, \
     or ask the PCII Program Office for the right tracking number.";

/// Requests one analyst may have waiting for an officer's decision at once. Each hit of a sweep of tracking numbers
/// files one, so the cap bounds what a sweep learns (which numbers are validated PCII) to this many until officers
/// decide, and keeps one analyst from filling the officers' list; it is checked before the number is looked at.
pub const PENDING_ALLOWED: i64 = 10;
/// What an analyst at [`PENDING_ALLOWED`] is told, for every number alike.
pub const TOO_MANY_PENDING: &str =
    "You have 10 requests waiting for a PCII officer's decision, as many as one person may: ask again once some \
     are decided.";

fn misses_policy() -> crate::auth::throttle::Policy {
    crate::auth::throttle::Policy {
        max_failures: MISSES_ALLOWED,
        window_secs: MISSES_WINDOW_SECS,
    }
}

/// The analyst's request as typed: its problems under the form's fields (`tracking`, `reason`), or the
/// tracking number (upper-cased) and the cleaned reason.
pub fn check_request(tracking: &str, reason: &str) -> Result<(String, String), FieldErrors> {
    let mut errors = FieldErrors::new();
    let tn = tracking.trim().to_uppercase();
    if tn.is_empty() {
        errors.insert(
            "tracking".into(),
            "Enter the tracking number of the submission.".into(),
        );
    } else if !is_tracking_number(&tn) {
        errors.insert(
            "tracking".into(),
            "Enter a tracking number like PCII-2026-000123.".into(),
        );
    }
    let reason = clean(reason);
    if reason.is_empty() {
        errors.insert(
            "reason".into(),
            "Give your need to know: the homeland-security duty this submission serves.".into(),
        );
    } else if reason.chars().count() > REASON_MAX {
        errors.insert(
            "reason".into(),
            format!("The reason is too long (at most {REASON_MAX} characters)."),
        );
    }
    if errors.is_empty() {
        Ok((tn, reason))
    } else {
        Err(errors)
    }
}

fn clean(text: &str) -> String {
    text.trim().replace("\r\n", "\n")
}

/// Whether the person may work with PCII at all now (training current, NDA on file and current), by the very
/// rules the content-access service applies before it looks at any grant: `access::decide` checks the person
/// first, and with an id no grant names it answers nothing but that check ("no grant" when the person passes).
pub fn person_refusal(conn: &mut DbConn, user: &User, now: i64) -> AppResult<Option<Refusal>> {
    Ok(match access::decide(conn, user, "", now)? {
        Err(Refusal::NoGrant) => None,
        Err(r) => Some(r),
        // Unreachable: no grant names an empty id; refused all the same.
        Ok(_) => Some(Refusal::NotFound),
    })
}

/// The checks of a request against the stored state, in the order that tells nothing: the person first (an
/// analyst whose training lapsed learns that and nothing about the number), then how many it has waiting, then the
/// number, answered alike for
/// no submission and one not validated, then what the analyst already holds or asked for. `Ok(Err(_))` is the
/// form's problem, under its field; an `Err` is a refusal of the person.
fn check_against_state(
    conn: &mut DbConn,
    user: &User,
    tn: &str,
    now: i64,
) -> AppResult<Result<String, FieldErrors>> {
    if let Some(refusal) = person_refusal(conn, user, now)? {
        return Err(refusal.into_error());
    }
    let field = |m: &str| {
        let mut e = FieldErrors::new();
        e.insert("tracking".into(), m.to_string());
        Ok(Err(e))
    };
    // Before the number is looked at: the answer must not depend on it.
    if access_request::pending_count_of(conn, &user.id)? >= PENDING_ALLOWED {
        return field(TOO_MANY_PENDING);
    }
    let Some((sid, _)) = access_request::requestable_by_tracking(conn, tn)? else {
        return field(NO_VALIDATED_SUBMISSION);
    };
    // A live grant far from its end needs no request; one about to end may be renewed.
    let live_until = grant::terms_held(conn, &user.id, &sid)?
        .iter()
        .filter(|g| g.revoked_at.is_none() && g.expires_at > now)
        .map(|g| g.expires_at)
        .max();
    if live_until.is_some_and(|end| end - now > EXPIRY_WARNING_DAYS * DAY) {
        return field(
            "You already hold a live grant for this submission: it is in your list of grants.",
        );
    }
    if access_request::has_pending(conn, &user.id, &sid)? {
        return field(
            "You already asked for access to this submission; a PCII officer has not decided yet.",
        );
    }
    Ok(Ok(sid))
}

/// Records an authorized user's request for access to a validated submission (`access_request.created`), its
/// reason sealed. `Ok(Err(_))` carries the form's problems, under its fields, with nothing recorded.
pub async fn request(
    state: &Services,
    user: &User,
    actor: &Actor,
    tracking: &str,
    reason: &str,
) -> AppResult<Result<(), FieldErrors>> {
    let (tn, reason) = match check_request(tracking, reason) {
        Ok(v) => v,
        Err(errors) => return Ok(Err(errors)),
    };
    let now = state.clock.now();
    let misses_key = state.throttle_key.access_request_misses(&user.id);
    let (spare, keys) = (spare_key(state)?, state.keys.clone());
    let (audit, actor, user) = (state.audit.clone(), actor.clone(), user.clone());
    // The lock, the look-up, the count of a miss and the request filed are one fact (under the audit head's lock):
    // requests sent at once cannot all pass the lock before any miss is counted, nor the cap of waiting requests
    // before any is filed (a hit refused by a second check would then answer otherwise than a miss).
    state
        .db
        .run(move |c| {
            audit.fact_if(c, &actor, |tx| {
                let missed = |why: &str| {
                    Event::new("access_request.missed", Outcome::Refused)
                        .tracking(Some(tn.clone()))
                        .reason(why)
                };
                // Before the number is looked at: while throttled, a hit is refused like a miss.
                if crate::auth::throttle::is_locked(tx, &misses_key, now)? {
                    let mut errors = FieldErrors::new();
                    errors.insert("tracking".into(), TOO_MANY_MISSES.into());
                    let event = missed("throttled: too many numbers that are not validated PCII");
                    return Ok((Err(errors), Some(event)));
                }
                let sid = match check_against_state(tx, &user, &tn, now)? {
                    Ok(sid) => sid,
                    // Recorded, so that an auditor sees a sweep of tracking numbers (each hit is an
                    // `access_request.created`), and counted.
                    Err(errors) if has_message(&errors, NO_VALIDATED_SUBMISSION) => {
                        crate::auth::throttle::record_failure(
                            tx,
                            &misses_key,
                            misses_policy(),
                            now,
                        )?;
                        let event = missed("no validated PCII has this tracking number");
                        return Ok((Err(errors), Some(event)));
                    }
                    // Recorded too (a sweep stopped by the cap shows), not counted: the number was not looked at.
                    Err(errors) if has_message(&errors, TOO_MANY_PENDING) => {
                        let event = missed("throttled: too many requests waiting for a decision");
                        return Ok((Err(errors), Some(event)));
                    }
                    Err(errors) => return Ok((Err(errors), None)),
                };
                let sealed = Sealer::for_submission(tx, &sid, &spare, &keys, now)?.seal(&reason)?;
                let id = crate::db::new_id();
                access_request::insert(
                    tx,
                    &NewAccessRequest {
                        id: &id,
                        submission_id: &sid,
                        user_id: &user.id,
                        reason: &sealed.stored,
                        state: RequestState::Pending,
                        created_at: now,
                    },
                )?;
                let event = Event::new("access_request.created", Outcome::Success)
                    .object("submission", sid)
                    .tracking(Some(tn.clone()))
                    .reason(format!("request {id}; reason {}", sealed.audit_ref()));
                Ok((Ok(()), Some(event)))
            })
        })
        .await
}

/// Whether the form's problems are the tracking number's `message`.
fn has_message(errors: &FieldErrors, message: &str) -> bool {
    errors.get("tracking").is_some_and(|m| m == message)
}

/// A data key for a submission from before data keys, in case the one asked about has none yet.
fn spare_key(state: &Services) -> AppResult<WrappedKey> {
    let keys = state.current_keys();
    let ring = keys.read().unwrap_or_else(|p| p.into_inner());
    WrappedKey::generate(&ring).map_err(|e| AppError::Internal(format!("making a data key: {e}")))
}

/// One live grant as its holder's home shows it. `title` and `reason` only while the holder may read the
/// submission (training current, NDA on file, content not destroyed): what the person may not read, it is not
/// shown in a list either.
#[derive(Clone, serde::Serialize)]
pub struct GrantLine {
    pub submission_id: String,
    pub tracking_number: Option<String>,
    pub title: Option<String>,
    pub reason: Option<String>,
    pub created_at: i64,
    pub expires_at: i64,
    /// Whole days until it ends (0 on its last day).
    pub days_left: i64,
    /// Ends within [`EXPIRY_WARNING_DAYS`].
    pub expiring: bool,
    pub readable: bool,
}
debug_without_words!(GrantLine);

/// The authorized user's live grants (one line per submission, the grant that runs longest), with the title of
/// each submission and the officer's reason for the grant.
///
/// Each submission is admitted by the content-access service's own decision (`access::decide`, the rules of every
/// reading); its title is opened from its sealed title column (the content document only for a submission saved
/// before titles were kept), rather than by `access::read_content`, which records a `content.viewed` entry per
/// submission for a full reading: titles in a list of the analyst's own grants are recorded once, as one
/// `grants.listed` entry naming the submissions, before the page leaves.
pub async fn grants_list(
    state: &Services,
    user: &User,
    actor: &Actor,
) -> AppResult<Vec<GrantLine>> {
    let now = state.clock.now();
    let u = user.clone();
    let (rows, admitted) = state
        .db
        .run(move |c| {
            let mut best: Vec<GrantRow> = Vec::new();
            for g in grant::live_grants(c, &u.id, now)? {
                match best.iter_mut().find(|b| b.submission_id == g.submission_id) {
                    Some(b) if b.expires_at < g.expires_at => *b = g,
                    Some(_) => {}
                    None => best.push(g),
                }
            }
            // The content blob of each submission this person may read now (`None` once destroyed).
            let mut admitted: HashMap<String, Option<String>> = HashMap::new();
            for g in &best {
                if let Ok(sub) = access::decide(c, &u, &g.submission_id, now)? {
                    // The version the Office holds (validated PCII: the current one).
                    let blob = sub
                        .sent_content_blob_id
                        .clone()
                        .or_else(|| sub.content_blob_id.clone())
                        .filter(|_| !lifecycle::content_destroyed(sub.status()));
                    admitted.insert(sub.id.clone(), blob);
                }
            }
            Ok((best, admitted))
        })
        .await?;
    let texts = Texts::load(state, admitted.keys().cloned().collect()).await?;
    // The titles from their sealed column: no content document is read for a list.
    let with_content: Vec<String> = admitted
        .iter()
        .filter(|(_, blob)| blob.is_some())
        .map(|(sid, _)| sid.clone())
        .collect();
    let mut titles = crate::workflow::cases::titles_for(
        state,
        with_content,
        crate::models::submission::TitleAsOf::Sent,
    )
    .await?;
    // A submission saved before titles were kept has none there: its document, as the title's only source.
    for (sid, blob) in &admitted {
        let Some(blob) = blob else { continue };
        if titles.contains_key(sid) {
            continue;
        }
        // A document that does not open now costs its title, not the analyst's whole home: the submission's
        // own page reports the failure when it is opened.
        match documents::read_content(state, blob).await {
            Ok(content) => {
                titles.insert(sid.clone(), content.title.clone());
            }
            Err(e) => {
                tracing::warn!(submission = %sid, error = %e, "a title for the grants list did not open")
            }
        }
    }
    // Decided again in the transaction that records the titles shown: a grant revoked (protection removed, the
    // account changed) since the first decision wins, and that line shows neither title nor reason.
    let ended: HashSet<String> = if titles.is_empty() {
        HashSet::new()
    } else {
        let order: Vec<(String, String)> = rows
            .iter()
            .filter(|g| titles.contains_key(&g.submission_id))
            .map(|g| {
                let shown = g
                    .tracking_number
                    .clone()
                    .unwrap_or_else(|| g.submission_id.clone());
                (g.submission_id.clone(), shown)
            })
            .collect();
        let (audit, actor, u) = (state.audit.clone(), actor.clone(), user.clone());
        let now = state.clock.now();
        state
            .db
            .run(move |c| {
                audit.fact_if(c, &actor, |tx| {
                    let mut ended = HashSet::new();
                    let mut shown = Vec::new();
                    for (sid, number) in order {
                        if access::decide(tx, &u, &sid, now)?.is_ok() {
                            shown.push(number);
                        } else {
                            ended.insert(sid);
                        }
                    }
                    if shown.is_empty() {
                        return Ok((ended, None));
                    }
                    let event = Event::new("grants.listed", Outcome::Success)
                        .object("account", u.id.clone())
                        .reason(format!(
                            "titles of {} granted submission{} shown: {}",
                            shown.len(),
                            if shown.len() == 1 { "" } else { "s" },
                            shown.join(", ")
                        ));
                    Ok((ended, Some(event)))
                })
            })
            .await?
    };
    titles.retain(|sid, _| !ended.contains(sid));
    let lines: Vec<GrantLine> = rows
        .into_iter()
        .map(|g| {
            let readable =
                admitted.contains_key(&g.submission_id) && !ended.contains(&g.submission_id);
            let days_left = crate::time::days_between(now, g.expires_at);
            GrantLine {
                title: titles.get(&g.submission_id).cloned(),
                reason: readable.then(|| texts.open(&g.reason)),
                expiring: g.expires_at - now <= EXPIRY_WARNING_DAYS * DAY,
                days_left,
                readable,
                created_at: g.created_at,
                expires_at: g.expires_at,
                tracking_number: g.tracking_number,
                submission_id: g.submission_id,
            }
        })
        .collect();
    drop(texts);
    Ok(lines)
}

/// The analyst's own requests, the [`OWN_SHOWN`] newest, and how many it made in all.
pub async fn own_requests(
    state: &Services,
    user: &User,
) -> AppResult<crate::models::Capped<access_request::OwnRequest>> {
    let uid = user.id.clone();
    state
        .db
        .run(move |c| Ok(access_request::of_user(c, &uid, OWN_SHOWN)?))
        .await
}

/// The pending requests for officers, oldest first, each reason opened (officers read every sent submission's
/// texts), and how many are pending in all.
pub async fn pending(state: &Services) -> AppResult<(Vec<PendingView>, i64)> {
    let (mut rows, total) = state
        .db
        .run(|c| {
            Ok((
                access_request::pending(c, PENDING_SHOWN)?,
                access_request::pending_count(c)?,
            ))
        })
        .await?;
    let ids: Vec<String> = rows
        .iter()
        .map(|r| r.submission_id.clone())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let texts = Texts::load(state, ids).await?;
    for r in &mut rows {
        r.reason = texts.open(&r.reason);
    }
    Ok((rows, total))
}

/// A pending request, or why it cannot be decided: 404 for none, 409 once decided.
async fn pending_request(
    state: &Services,
    request_id: &str,
) -> AppResult<access_request::AccessRequest> {
    let id = request_id.to_string();
    let req = state
        .db
        .run(move |c| Ok(access_request::find(c, &id)?))
        .await?;
    if req.state != RequestState::Pending {
        return Err(already_decided());
    }
    Ok(req)
}

fn already_decided() -> AppError {
    AppError::Conflict("This request was already decided.".into())
}

/// Queues, in the decision's transaction, the message that tells the analyst a request was decided, and nothing
/// else (not which, not how).
fn queue_decided_mail(
    tx: &mut DbConn,
    mailer: &Mailer,
    analyst: &User,
    now: i64,
) -> AppResult<Queued> {
    pending_mail::enqueue(
        tx,
        mailer,
        Kind::AccessDecided,
        (&analyst.id, &analyst.email, &analyst.display_name),
        "/analyst",
        now,
    )
}

/// Grants a pending request with every rule of [`decisions::grant`] (validated PCII, not the officer's own
/// organisation, an active authorized user, a reason, an end within the longest grant) and marks it granted, in
/// one transaction with both entries (`grant.created`, `access_request.granted`): should another officer have
/// decided the request meanwhile, nothing is granted and this answers 409. Returns the message for the analyst,
/// queued in the same transaction, to send once committed.
pub async fn grant(
    state: &Services,
    officer: &User,
    actor: &Actor,
    request_id: &str,
    reason: &str,
    expires_at: i64,
) -> AppResult<Queued> {
    let req = pending_request(state, request_id).await?;
    let now = state.clock.now();
    let reason =
        decisions::check_grant_terms(reason, expires_at, now).map_err(decisions::invalid)?;
    let (audit, entry_actor, mailer) = (state.audit.clone(), actor.clone(), state.mailer.clone());
    let submission_id = req.submission_id.clone();
    decisions::officer_fact(
        state,
        officer,
        actor,
        &submission_id,
        move |tx, officer, sub, sealer| {
            // The analyst's standing was checked when it asked; reading checks it again.
            let (created, _) = decisions::grant_in(
                tx,
                officer,
                sub,
                sealer,
                &req.user_id,
                &reason,
                expires_at,
                now,
            )?;
            audit.append(tx, &entry_actor, &created)?;
            if access_request::mark_granted(tx, &req.id, &officer.id, now)? != 1 {
                return Err(AppError::Conflict(
                    "Another officer has meanwhile decided this request; nothing was granted."
                        .into(),
                ));
            }
            let analyst = account::find(tx, &req.user_id)?;
            let event = Event::new("access_request.granted", Outcome::Success)
                .object("submission", sub.id.clone())
                .tracking(sub.tracking_number.clone())
                .reason(format!(
                    "request {} of account {}; granted until {}",
                    req.id,
                    req.user_id,
                    crate::time::datetime(expires_at)
                ));
            Ok((queue_decided_mail(tx, &mailer, &analyst, now)?, event))
        },
    )
    .await
}

/// The officer's reason for a refusal, cleaned, or what is wrong with it.
pub fn check_refusal(reason: &str) -> Result<String, String> {
    let reason = clean(reason);
    if reason.is_empty() {
        Err("Give the reason for the refusal; it is kept, sealed, with the request.".into())
    } else if reason.chars().count() > REASON_MAX {
        Err(format!(
            "The reason is too long (at most {REASON_MAX} characters)."
        ))
    } else {
        Ok(reason)
    }
}

/// Refuses a pending request (`access_request.refused`), the reason sealed. An officer never decides on a
/// submission of its own organisation. Returns the message for the analyst, queued in the same transaction, to send
/// once committed.
pub async fn refuse(
    state: &Services,
    officer: &User,
    actor: &Actor,
    request_id: &str,
    reason: &str,
) -> AppResult<Queued> {
    let reason = check_refusal(reason).map_err(AppError::Invalid)?;
    let (spare, keys) = (spare_key(state)?, state.keys.clone());
    let now = state.clock.now();
    let (audit, actor, officer, id, mailer) = (
        state.audit.clone(),
        actor.clone(),
        officer.clone(),
        request_id.to_string(),
        state.mailer.clone(),
    );
    state
        .db
        .run(move |c| {
            audit.fact(c, &actor, |tx| {
                crate::workflow::access::still_as_read(tx, &officer)?;
                let req = access_request::find(tx, &id)?;
                if req.state != RequestState::Pending {
                    return Err(already_decided());
                }
                let sub = submission::find(tx, &req.submission_id, Scope::Sent)?;
                decisions::not_own(&officer, &sub)?;
                let sealed =
                    Sealer::for_submission(tx, &sub.id, &spare, &keys, now)?.seal(&reason)?;
                if access_request::mark_refused(tx, &req.id, &officer.id, &sealed.stored, now)? != 1
                {
                    return Err(already_decided());
                }
                let analyst = account::find(tx, &req.user_id)?;
                let event = Event::new("access_request.refused", Outcome::Success)
                    .object("submission", sub.id.clone())
                    .tracking(sub.tracking_number.clone())
                    .reason(format!(
                        "request {} of account {}; reason {}",
                        req.id,
                        req.user_id,
                        sealed.audit_ref()
                    ));
                Ok((queue_decided_mail(tx, &mailer, &analyst, now)?, event))
            })
        })
        .await
}

/// Whether `officer` may decide requests for `sub`'s submission (for the page: rows it may not decide show why).
pub fn may_decide(officer: &User, submission_organisation_id: &str) -> bool {
    officer.organisation_id.as_deref() != Some(submission_organisation_id)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_request_needs_a_well_formed_number_and_a_reason() {
        let e = check_request("", " ").unwrap_err();
        assert_eq!(e.keys().collect::<Vec<_>>(), ["reason", "tracking"]);
        let e = check_request("PCII-26-1", "Duty").unwrap_err();
        assert!(e["tracking"].contains("like PCII-2026-000123"));
        let e = check_request("pcii-2026-000001", &"x".repeat(REASON_MAX + 1)).unwrap_err();
        assert_eq!(e.keys().collect::<Vec<_>>(), ["reason"]);
        assert_eq!(
            check_request(" pcii-2026-000001 ", " Grid resilience study \r\n").unwrap(),
            (
                "PCII-2026-000001".to_string(),
                "Grid resilience study".to_string()
            )
        );
    }

    #[test]
    fn a_refusal_needs_its_reason() {
        assert!(check_refusal("  ").is_err());
        assert!(check_refusal(&"x".repeat(REASON_MAX + 1)).is_err());
        assert_eq!(check_refusal(" No duty shown ").unwrap(), "No duty shown");
    }
}
