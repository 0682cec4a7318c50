//! Self-registrations never confirmed are removed `unconfirmed_account_days` after they were made, with the
//! organisation made for each: otherwise a stranger who registers someone's address keeps its owner from registering
//! it, and every registration's organisation stays in the officers' lists for good.
//!
//! Only what nobody else could have acted on goes: an enabled submitter whose address was never confirmed (accounts
//! made by the host CLI or from an invitation are confirmed when made), alone in an organisation made with it that is
//! not verified, not merged, and has no submission (drafts included), invitation or notice, and with nothing else in
//! the database referring to the account. Each removal is one transaction with its audit entry; the periodic round is
//! `workflow::unconfirmed_purge`, the operator's command `pcii-portal user purge-unconfirmed`.

use crate::audit::log::{Actor, AuditLog, Event, Outcome};
use crate::db::DbConn;
use crate::error::{AppError, AppResult};
use crate::models::unconfirmed::{self as model, Registration};
use crate::time::DAY;

/// Candidates read per query.
const BATCH: i64 = 200;

/// What a purge did (or, dry, would do).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Purge {
    /// (account id, organisation id) of each registration removed, oldest first.
    pub removed: Vec<(String, String)>,
    /// Old enough, but something else refers to it (or it changed meanwhile): left in place.
    pub kept: usize,
    /// Its removal failed (the next purge tries again).
    pub failed: usize,
}

/// Removes every unconfirmed registration made more than `days` days before `now` that nothing else refers to, each
/// in its own transaction with its `account.purge_unconfirmed` entry. With `dry_run`, only says which would go.
pub fn purge(
    conn: &mut DbConn,
    audit: &AuditLog,
    actor: &Actor,
    days: i64,
    now: i64,
    dry_run: bool,
) -> AppResult<Purge> {
    let created_before = now.saturating_sub(days.saturating_mul(DAY));
    let mut done = Purge::default();
    let mut after: Option<(i64, String)> = None;
    loop {
        let page = model::candidates(
            conn,
            created_before,
            after.as_ref().map(|(at, id)| (*at, id.as_str())),
            BATCH,
        )?;
        let Some(last) = page.last() else {
            break;
        };
        after = Some((last.created_at, last.account_id.clone()));
        let full = page.len() as i64 == BATCH;
        for r in page {
            if let Some(what) = model::referenced_by(conn, &r)? {
                tracing::debug!(account = %r.account_id, referred_to_by = what, "an unconfirmed registration is kept");
                done.kept += 1;
                continue;
            }
            if dry_run {
                done.removed.push((r.account_id, r.organisation_id));
                continue;
            }
            match remove(conn, audit, actor, &r, created_before, days) {
                Ok(true) => done.removed.push((r.account_id, r.organisation_id)),
                Ok(false) => done.kept += 1,
                Err(e) => {
                    tracing::warn!(account = %r.account_id, error = %e, "removing an unconfirmed registration failed; the next purge tries again");
                    done.failed += 1;
                }
            }
        }
        if !full {
            break;
        }
    }
    if !dry_run && (!done.removed.is_empty() || done.failed > 0) {
        tracing::info!(
            removed = done.removed.len(),
            kept = done.kept,
            failed = done.failed,
            "unconfirmed registrations purged"
        );
    }
    Ok(done)
}

/// Removes one registration if, inside the transaction, it still is one and nothing refers to it; `false` when it
/// changed meanwhile (confirmed, a colleague invited, ...): then nothing is written.
fn remove(
    conn: &mut DbConn,
    audit: &AuditLog,
    actor: &Actor,
    r: &Registration,
    created_before: i64,
    days: i64,
) -> AppResult<bool> {
    const CHANGED: &str = "the registration changed meanwhile";
    let removed = audit.fact(conn, actor, |tx| {
        let Some(r) = model::candidate(tx, &r.account_id, created_before)? else {
            return Err(AppError::Conflict(CHANGED.into()));
        };
        if model::referenced_by(tx, &r)?.is_some() {
            return Err(AppError::Conflict(CHANGED.into()));
        }
        model::delete(tx, &r)?;
        let event = Event::new("account.purge_unconfirmed", Outcome::Success)
            .object("account", &r.account_id)
            .reason(format!(
                "address not confirmed within {days} days of registering; its organisation {} removed with it",
                r.organisation_id
            ));
        Ok(((), event))
    });
    match removed {
        Ok(()) => Ok(true),
        Err(AppError::Conflict(m)) if m == CHANGED => Ok(false),
        Err(e) => Err(e),
    }
}
