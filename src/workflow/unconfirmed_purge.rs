//! The round that removes self-registrations never confirmed (`auth::unconfirmed`): at start and every hour while the
//! server runs, on whichever instance holds the lease [`LEASE`], so that several instances purge once between them.
//! Registrations become due by the day, so an hour late costs nothing. The same round deletes sessions past their
//! idle or absolute timeout whose cookie never came back (`auth::sessions::delete_expired`), and authenticator-app
//! enrolments past their time (`auth::second_factor::delete_lapsed_enrolments`).

use std::time::Duration;

use crate::audit::log::{Actor, AuditLog};
use crate::auth::unconfirmed::{self, Purge};
use crate::clock::Clock;
use crate::db::{Db, DbConn};
use crate::error::AppResult;
use crate::models::lease;
use crate::services::Services;
use crate::workflow::blobs::{lease_holder, lease_seconds};

/// The lease the instances take turns on for a round.
pub const LEASE: &str = "unconfirmed-purge";

/// How often the running server purges.
pub const INTERVAL_SECS: u64 = 3600;

/// What a round needs of the services (owned, so that the periodic task can keep it).
#[derive(Clone)]
struct Parts {
    db: Db,
    audit: AuditLog,
    clock: Clock,
    days: i64,
    idle_secs: i64,
    absolute_secs: i64,
}

impl Parts {
    fn of(state: &Services) -> Parts {
        Parts {
            db: state.db.clone(),
            audit: state.audit.clone(),
            clock: state.clock.clone(),
            days: state.settings.unconfirmed_account_days,
            // An upload without the page's keep-alive may run past the idle timeout (up to the sweep's grace): its
            // row must still be there when it ends, so that the save lands the person on its receipt. A session past
            // its timeout opens nothing meanwhile (`auth::sessions::lookup` refuses it, `auth::login::end_expired`
            // ends it).
            idle_secs: state
                .settings
                .session_idle_minutes
                .saturating_mul(60)
                .saturating_add(
                    i64::try_from(state.settings.blob_sweep_grace_minutes)
                        .unwrap_or(i64::MAX)
                        .saturating_mul(60),
                ),
            absolute_secs: state.settings.session_absolute_hours.saturating_mul(3600),
        }
    }
}

/// One round: when this instance holds the lease (taken for `lease_secs`), the purge, audited as the system;
/// `None` when another instance holds it.
pub async fn round(state: &Services, lease_secs: i64) -> AppResult<Option<Purge>> {
    round_with(&Parts::of(state), lease_secs).await
}

async fn round_with(parts: &Parts, lease_secs: i64) -> AppResult<Option<Purge>> {
    let (audit, days, now) = (parts.audit.clone(), parts.days, parts.clock.now());
    let (idle, absolute) = (parts.idle_secs, parts.absolute_secs);
    parts
        .db
        .run(move |c| {
            if !lease::acquire(c, LEASE, lease_holder(), lease_secs)? {
                return Ok(None);
            }
            let purge = unconfirmed::purge(c, &audit, &Actor::system(), days, now, false)?;
            let sessions = crate::auth::sessions::delete_expired(c, now, idle, absolute)?;
            if sessions > 0 {
                tracing::info!(sessions, "expired sessions deleted");
            }
            let enrolments = crate::auth::second_factor::delete_lapsed_enrolments(c, now)?;
            if enrolments > 0 {
                tracing::info!(enrolments, "lapsed authenticator enrolments deleted");
            }
            Ok(Some(purge))
        })
        .await
}

/// At start: see [`lease::clear_own_at_start`].
pub fn clear_lease_at_start(conn: &mut DbConn) -> diesel::QueryResult<()> {
    lease::clear_own_at_start(conn, LEASE)
}

/// Runs a round now and then every [`INTERVAL_SECS`] on the current Tokio runtime.
pub fn spawn_periodic(state: &Services) {
    let parts = Parts::of(state);
    let lease_secs = lease_seconds(INTERVAL_SECS);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(INTERVAL_SECS));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if let Err(e) = round_with(&parts, lease_secs).await {
                tracing::warn!(error = %e, "purging unconfirmed registrations failed; the next round tries again");
            }
        }
    });
}
