//! Mail a committed act promised: a new message in a thread (to the other side), an access request decided (to the
//! analyst), a merge of organisations proposed (to each company's administrators), a final decision on a submission
//! (to its organisation's members). The act writes one `pending_mail` row per person in its own transaction ([`enqueue`]); once it has
//! committed the mail is sent at once and its row deleted ([`send_now`]). What the mail route refused (SMTP down)
//! and what a crash left unsent, the notification round sends later ([`retry_due`]), with a growing delay, for at
//! most [`GIVE_UP_AFTER`]. A person disabled meanwhile, or who turned the kind off, gets nothing. Delivery is at
//! least once, like the round's own mail. A row holds neither address nor text: the mail is built when it is sent.

use crate::db::DbConn;
use crate::error::AppResult;
use crate::mail::{messages as mails, send_off_executor, Mail};
use crate::models::account;
use crate::models::notification as notification_model;
use crate::models::pending_mail::{self as model, PendingMail};
use crate::services::Services;
use crate::time::DAY;
use crate::workflow::notifications::{wanted, Kind};

/// How long a round leaves a new row alone: the send made at once after the act is still under way.
pub const AT_ONCE_GRACE: i64 = 120;
/// The delay before a round's first retry of a row; it doubles with each failed retry, up to [`RETRY_MAX`].
const RETRY_FIRST: i64 = 300;
const RETRY_MAX: i64 = 6 * 3600;
/// After this, a mail still not sent is dropped (and counted in the round's audit entry): a message or a decision
/// three days old is better seen on the person's home page than announced.
pub const GIVE_UP_AFTER: i64 = 3 * DAY;
/// Rows one round takes at most (the rest wait for the next).
const PER_ROUND: i64 = 500;

/// A mail promised by an act that has committed, to send now.
#[derive(Debug)]
pub struct Queued {
    id: String,
    /// The row's next attempt as the act wrote it: the send claims the row from this value, so that a round that
    /// took the row meanwhile (the send was slow) is the only one to send it.
    next_attempt_at: i64,
}

/// What claiming a queued row for the send made at once found.
enum Claimed {
    /// A round took it meanwhile: it is the round's to send.
    Taken,
    /// The person is no longer one to tell (disabled, moved, turned the kind off since the act): dropped.
    Dropped,
    Send(Mail),
}

/// The mail of `kind` to `email` (greeted as `name`), linking to `link`: the same text whether it goes at once or
/// later. Only the kinds an act queues have one.
fn build(kind: Kind, email: &str, name: &str, link: &str) -> Option<Mail> {
    match kind {
        Kind::Message => Some(mails::new_message(email, name, link)),
        Kind::AccessDecided => Some(mails::access_request_decided(email, name, link)),
        Kind::MergeProposed => Some(mails::merge_proposed(email, name, link)),
        Kind::Decided => Some(mails::decided(email, name, link)),
        Kind::Destroyed => Some(mails::destroyed(email, name, link)),
        Kind::PasskeyRemoved => Some(mails::passkey_removed(email, name, link)),
        _ => None,
    }
}

/// Records, in the act's transaction `tx`, that the person `(user_id, email, name)` is owed a mail of `kind` linking to `path`; returns it, to
/// send once the transaction has committed.
pub fn enqueue(
    tx: &mut DbConn,
    mailer: &crate::mail::Mailer,
    kind: Kind,
    (user_id, email, name): (&str, &str, &str),
    path: &str,
    now: i64,
) -> AppResult<Queued> {
    // Built when it is sent (see `plan`); a kind that has no mail is refused here, in the act.
    build(kind, email, name, &mailer.link(path)).ok_or_else(|| no_mail(kind))?;
    insert(tx, kind, user_id, path, now)
}

fn no_mail(kind: Kind) -> crate::error::AppError {
    crate::error::AppError::Internal(format!("no queued mail of kind {}", kind.as_str()))
}

/// [`enqueue`] for a mail to the account's own address, by an act that has no mailer at hand (a second-factor check):
/// the address and name are read when it is sent, as always.
pub fn enqueue_to_account(
    tx: &mut DbConn,
    kind: Kind,
    user_id: &str,
    path: &str,
    now: i64,
) -> AppResult<Queued> {
    build(kind, "", "", path).ok_or_else(|| no_mail(kind))?;
    insert(tx, kind, user_id, path, now)
}

fn insert(tx: &mut DbConn, kind: Kind, user_id: &str, path: &str, now: i64) -> AppResult<Queued> {
    let row = PendingMail {
        id: crate::db::new_id(),
        kind: kind.as_str().to_string(),
        user_id: user_id.to_string(),
        path: path.to_string(),
        created_at: now,
        attempts: 0,
        next_attempt_at: now + AT_ONCE_GRACE,
    };
    model::insert(tx, &row)?;
    Ok(Queued {
        id: row.id,
        next_attempt_at: row.next_attempt_at,
    })
}

/// The mail of `kind` queued for `user_id` at `at` by an act that could not hand its [`Queued`] back (a check made
/// below the web layer, which then sends it with [`send_now`]).
pub fn queued_at(conn: &mut DbConn, user_id: &str, kind: Kind, at: i64) -> AppResult<Vec<Queued>> {
    Ok(model::of_user_created_at(conn, user_id, kind.as_str(), at)?
        .into_iter()
        .map(|row| Queued {
            id: row.id,
            next_attempt_at: row.next_attempt_at,
        })
        .collect())
}

/// What [`send_now`] did not send.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Unsent {
    /// Left on the queue, the mail route being down: a notification round tries again.
    pub later: usize,
    /// Refused for good (the mail server refused it, or the address is unusable): taken off the queue, since no
    /// later try would go better.
    pub refused: usize,
    /// Taken by a notification round meanwhile (on this instance or another): it sends them, not this send.
    pub taken: usize,
    /// Not sent: the person was disabled, moved or turned the kind off between the act and the send.
    pub dropped: usize,
}

/// Hands each mail to the mail route and deletes the row of each it took, or of each refused for good. Stops at
/// the first sign that the route is down: the rest wait for a round rather than keep the person's page waiting one
/// timeout each. Holds no database connection during an SMTP exchange. Each row is claimed for [`AT_ONCE_GRACE`]
/// before its mail is sent: one a round took meanwhile (a long fan-out outlasts the grace) is left to the round.
pub async fn send_now(state: &Services, queued: Vec<Queued>) -> Unsent {
    let mut unsent = Unsent::default();
    let total = queued.len();
    for (i, q) in queued.into_iter().enumerate() {
        let id = q.id;
        let now = state.clock.now();
        let (seen, until) = (q.next_attempt_at, now + AT_ONCE_GRACE);
        let (claim_id, mailer) = (id.clone(), state.mailer.clone());
        let claimed = state
            .db
            .run(move |c| {
                if !model::claim(c, &claim_id, seen, until)? {
                    return Ok(Claimed::Taken);
                }
                let Some(row) = model::find_opt(c, &claim_id)? else {
                    return Ok(Claimed::Taken);
                };
                // Decided as a round decides, now: a fan-out to a large organisation takes minutes, and whoever was
                // disabled, removed or turned the kind off meanwhile must not be mailed from the act's old list.
                Ok(match plan(c, &|path| mailer.link(path), &row, now)? {
                    Plan::Send { mail, .. } => Claimed::Send(mail),
                    Plan::Drop { .. } => {
                        model::delete(c, &claim_id)?;
                        Claimed::Dropped
                    }
                })
            })
            .await;
        let mail = match claimed {
            Ok(Claimed::Send(mail)) => mail,
            Ok(Claimed::Taken) => {
                unsent.taken += 1;
                continue;
            }
            Ok(Claimed::Dropped) => {
                unsent.dropped += 1;
                continue;
            }
            Err(e) => {
                // The row stays due: a round sends it.
                tracing::warn!(error = %e, "a queued mail could not be claimed; a notification round sends it");
                unsent.later += total - i;
                break;
            }
        };
        match send_off_executor(&state.mailer, mail).await {
            Ok(()) => {
                if let Err(e) = state.db.run(move |c| Ok(model::delete(c, &id)?)).await {
                    // Sent but still queued: a round sends it again (at least once).
                    tracing::warn!(error = %e, "a sent mail could not be taken off the queue");
                }
            }
            Err(e) if !e.route_is_down() => {
                tracing::warn!(error = %e, "a mail was refused for good and is dropped");
                if let Err(e) = state.db.run(move |c| Ok(model::delete(c, &id)?)).await {
                    // A round meets the same refusal and drops it then.
                    tracing::warn!(error = %e, "a refused mail could not be taken off the queue");
                }
                unsent.refused += 1;
            }
            Err(e) => {
                tracing::warn!(error = %e, "a mail could not be sent now; a notification round tries again");
                unsent.later += total - i;
                break;
            }
        }
    }
    unsent
}

/// What a round's retries did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Retried {
    /// Sent: the kind and the person's account id.
    pub sent: Vec<(Kind, String)>,
    /// Refused again by the mail route: tried again later.
    pub failed: usize,
    /// Dropped: not sent within [`GIVE_UP_AFTER`], or refused for good (an address the route cannot use).
    pub given_up: usize,
    /// Stopped: another instance took the round's lease over.
    pub lease_lost: bool,
    /// Stopped: the database did not take the record of a mail sent (what went is in `sent`).
    pub stopped: Option<String>,
}

/// The delay before retry number `attempts` + 1.
fn backoff(attempts: i64) -> i64 {
    let doublings = u32::try_from(attempts.clamp(0, 16)).unwrap_or(16);
    RETRY_FIRST.saturating_mul(1 << doublings).min(RETRY_MAX)
}

/// What to do with one due row, decided from the database (no mail sent here).
enum Plan {
    Drop { given_up: bool },
    Send { kind: Kind, mail: Mail },
}

fn plan(
    conn: &mut DbConn,
    state_link: &dyn Fn(&str) -> String,
    row: &PendingMail,
    now: i64,
) -> AppResult<Plan> {
    let Some(kind) = Kind::parse(&row.kind) else {
        return Ok(Plan::Drop { given_up: true });
    };
    if now - row.created_at > GIVE_UP_AFTER {
        return Ok(Plan::Drop { given_up: true });
    }
    let user = account::find(conn, &row.user_id)?;
    let off = notification_model::turned_off(conn, &row.user_id)?;
    if user.disabled || !wanted(kind, &off) || !still_concerned(conn, &user, &row.path)? {
        return Ok(Plan::Drop { given_up: false });
    }
    Ok(
        match build(
            kind,
            &user.email,
            &user.display_name,
            &state_link(&row.path),
        ) {
            Some(mail) => Plan::Send { kind, mail },
            None => Plan::Drop { given_up: true },
        },
    )
}

/// Whether the person is still one the mail was meant for, by the page it links to: a submission's page (a
/// decision, a message to the organisation) only for a member of the organisation that holds it, an officer's page
/// for an officer, an analyst's for an authorized user, the organisation page for its administrators. Someone moved
/// or demoted since the act hears nothing of it.
fn still_concerned(conn: &mut DbConn, user: &account::User, path: &str) -> AppResult<bool> {
    use crate::domain::Role;
    use crate::models::submission::{self, Scope};
    if let Some(rest) = path.strip_prefix("/submissions/") {
        let id = rest.split('/').next().unwrap_or_default();
        return Ok(match (user.role(), user.organisation_id.as_deref()) {
            (Role::Submitter, Some(org)) => {
                submission::find_in_scope(conn, id, Scope::Organisation(org))?.is_some()
            }
            _ => false,
        });
    }
    Ok(if path.starts_with("/officer/") {
        user.role() == Role::Officer
    } else if path.starts_with("/analyst") {
        user.role() == Role::AuthorizedUser
    } else if path.starts_with("/organisation") {
        user.role() == Role::Submitter && user.org_admin
    } else {
        true
    })
}

/// Sends the rows due by `now` (run by the round, on the instance holding its lease `held`, renewed before each).
pub(crate) async fn retry_due(
    db: &crate::db::Db,
    mailer: &std::sync::Arc<crate::mail::Mailer>,
    held: crate::models::lease::Held,
    now: i64,
) -> AppResult<Retried> {
    let rows = db.run(move |c| Ok(model::due(c, now, PER_ROUND)?)).await?;
    let mut done = Retried::default();
    for row in rows {
        let (m, r) = (mailer.clone(), row.clone());
        let plan = db
            .run(move |c| {
                if !held.renew(c)? {
                    return Ok(None);
                }
                let plan = plan(c, &|path| m.link(path), &r, now)?;
                // The send made at once after the act may have claimed the row since it was read: then it is
                // that send's.
                if matches!(plan, Plan::Send { .. })
                    && !model::claim(c, &r.id, r.next_attempt_at, now + AT_ONCE_GRACE)?
                {
                    return Ok(Some(None));
                }
                Ok(Some(Some(plan)))
            })
            .await?;
        let Some(plan) = plan else {
            tracing::warn!("another instance took the notification lease over; its round sends the queued mail");
            done.lease_lost = true;
            break;
        };
        let Some(plan) = plan else {
            continue;
        };
        let (kind, mail) = match plan {
            Plan::Drop { given_up } => {
                if given_up {
                    tracing::warn!(kind = %row.kind, "a queued mail was not sent within three days and is dropped");
                    done.given_up += 1;
                }
                let id = row.id.clone();
                db.run(move |c| Ok(model::delete(c, &id)?)).await?;
                continue;
            }
            Plan::Send { kind, mail } => (kind, mail),
        };
        let id = row.id.clone();
        match send_off_executor(mailer, mail).await {
            Ok(()) => {
                done.sent.push((kind, row.user_id));
                // The mail went: a passing fault here would send it again later, so the delete is retried; then
                // the round stops, with what it sent still reported.
                if let Err(e) = db.run_retried(move |c| Ok(model::delete(c, &id)?)).await {
                    done.stopped = Some(e.to_string());
                    break;
                }
            }
            // The route will never take it: no use trying again.
            Err(e) if !e.route_is_down() => {
                tracing::warn!(kind = kind.as_str(), error = %e, "a queued mail cannot be sent and is dropped");
                db.run(move |c| Ok(model::delete(c, &id)?)).await?;
                done.given_up += 1;
            }
            Err(e) => {
                tracing::warn!(kind = kind.as_str(), error = %e, "a queued mail could not be sent; tried again later");
                let attempts = row.attempts + 1;
                let next = now + backoff(row.attempts);
                db.run(move |c| Ok(model::retry_at(c, &id, attempts, next)?))
                    .await?;
                done.failed += 1;
                // The route is down: the rest would wait for its timeout one by one, holding the lease. They stay
                // due for the next round.
                break;
            }
        }
    }
    Ok(done)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retries_wait_longer_each_time_up_to_six_hours() {
        assert_eq!(backoff(0), 300);
        assert_eq!(backoff(1), 600);
        assert_eq!(backoff(2), 1200);
        assert_eq!(backoff(6), 300 * 64);
        assert_eq!(backoff(7), 6 * 3600);
        assert_eq!(backoff(1000), 6 * 3600);
    }

    #[test]
    fn only_the_kinds_an_act_queues_have_a_mail_and_it_is_content_free() {
        for kind in Kind::ALL {
            let mail = build(
                kind,
                "ann@acme.example",
                "Ann",
                "https://portal.example/analyst",
            );
            assert_eq!(
                mail.is_some(),
                matches!(
                    kind,
                    Kind::Message
                        | Kind::AccessDecided
                        | Kind::MergeProposed
                        | Kind::Decided
                        | Kind::Destroyed
                        | Kind::PasskeyRemoved
                ),
                "{kind:?}"
            );
            if let Some(m) = mail {
                assert!(m.body.contains("https://portal.example/analyst"));
                assert!(!m.body.contains("PCII-"));
            }
        }
    }
}
