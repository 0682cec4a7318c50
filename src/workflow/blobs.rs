//! Blob bookkeeping that spans the store and the database: the deletion queue and the sweep.
//!
//! Whatever a transaction makes obsolete (a destroyed submission's ciphertexts, a replaced content version, a
//! removed file, an old copy after re-encryption) is queued in that same transaction and deleted after commit.
//! A crash before the deletion leaves the names queued; the sweep — at start and every
//! `blob_sweep_interval_seconds` while the server runs — retries them, and removes temporaries and orphans (files
//! no row points to) older than the grace period. After a destruction nothing here is urgent for secrecy: its data
//! keys went in the decision's transaction, so the queued ciphertexts already open for nobody.
//!
//! Several instances on one database sweep once between them, not once each: a round sweeps only on the instance
//! that holds the lease [`SWEEP_LEASE`] (see [`lease_seconds`]); the others skip it.

use std::sync::OnceLock;
use std::time::Duration;

use crate::audit::log::{Actor, AuditLog, Event, Outcome};
use crate::config::Settings;
use crate::db::{Connections, Db, DbConn};
use crate::error::{AppError, AppResult};
use crate::models::{blob, blob_deletion, lease};
use crate::services::Services;
use crate::storage::{sweep_orphans, BlobStore};

/// How many queued names are handled per query.
const BATCH: i64 = 200;

/// The lease the instances on one database take turns on: a sweep round runs on whichever holds it.
pub const SWEEP_LEASE: &str = "blob-sweep";

/// The hold a backup takes while it copies the blob store (see `crate::backup`): while anyone holds it, queued
/// ciphertexts stay queued (and so are no orphans either), so that every file the backup's database snapshot names
/// is still there when its turn to be copied comes. A sweep after the hold ends deletes them.
pub const BACKUP_HOLD: &str = "backup-hold";

/// What a round's lease lasts beyond the interval, at least: see [`lease_seconds`].
const LEASE_MARGIN_MIN_SECS: u64 = 5;

/// This instance's name on leases: random, made once per process (an instance is a process).
pub fn lease_holder() -> &'static str {
    static HOLDER: OnceLock<String> = OnceLock::new();
    HOLDER.get_or_init(crate::db::new_id)
}

/// How long a round's lease lasts when the sweep runs every `interval_secs`: the interval and half again (at least
/// 5 s more). The holder's next round renews it before it lapses even when that round starts late (a busy runtime,
/// a slow sweep, a full pool), so the others skip every round while the holder runs; one that stopped or crashed
/// loses it within that time, and the first other instance whose round comes after takes over. A lapse only ever
/// lengthens the time between two sweeps: a taker's round is past the lapsed lease's end, i.e. over an interval
/// after the holder's last sweep. (With no periodic sweep, interval 0, the lease covers the start-up sweep, which
/// releases it.)
pub fn lease_seconds(interval_secs: u64) -> i64 {
    let margin = (interval_secs / 2).max(LEASE_MARGIN_MIN_SECS);
    i64::try_from(interval_secs.saturating_add(margin)).unwrap_or(i64::MAX / 2)
}

/// What an upload's window keeps back from the sweep's grace, at most (see [`upload_window_secs`]).
const UPLOAD_MARGIN_SECS: i64 = 5 * 60;

/// How long an upload request may last, in seconds from its start to the last byte of its body: the sweep's grace
/// less five minutes (half the grace when that is ten minutes or less). Every blob a request writes is committed
/// after it began, so when its row commits (right after the body) the blob is still younger than the grace and no
/// sweep — of this instance or another sharing the store — takes it for an orphan. The margin covers the commit
/// itself and a clock that differs between instances and the store (the age of an S3 object is the store's
/// last-modified time). An upload past its window is refused and its blobs are deleted
/// (`web::multipart`); the save's commit checks once more that every new blob is still in the store.
pub fn upload_window_secs(grace_minutes: u64) -> i64 {
    let grace = i64::try_from(grace_minutes.saturating_mul(60)).unwrap_or(i64::MAX / 2);
    if grace <= 2 * UPLOAD_MARGIN_SECS {
        grace / 2
    } else {
        grace - UPLOAD_MARGIN_SECS
    }
}

/// Called right before a save's transaction (not inside it, so that no store request is made under the write
/// lock): every blob of `names` (the save's new ones) is still in the store. The upload's window keeps them younger
/// than the orphan sweep's grace; should one be gone all the same, nothing is committed (503) rather than a row that
/// points at nothing. One stat (a HEAD on S3) per blob.
pub fn still_stored<'a>(
    store: &dyn BlobStore,
    names: impl IntoIterator<Item = &'a String>,
) -> AppResult<()> {
    for name in names {
        match store.exists(name) {
            Ok(true) => {}
            Ok(false) => {
                return Err(AppError::Unavailable(
                    "a new blob is no longer in the store; nothing was committed".into(),
                ))
            }
            Err(e) => return Err(AppError::io("checking a new blob", e)),
        }
    }
    Ok(())
}

/// What a sweep did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Swept {
    /// Queued ciphertexts deleted from the store.
    pub deleted: usize,
    /// Queued ciphertexts the store failed to delete (still queued).
    pub failed: usize,
    /// Temporaries of interrupted writes removed.
    pub temporaries: usize,
    /// Files no row points to, removed.
    pub orphans: usize,
    /// Files no row points to that the store failed to remove (the next sweep tries again).
    pub orphans_failed: usize,
}

impl Swept {
    fn is_empty(&self) -> bool {
        *self == Swept::default()
    }

    fn describe(&self) -> String {
        let mut said = format!(
            "deleted {} queued, {} failed (still queued), {} temporaries, {} orphans",
            self.deleted, self.failed, self.temporaries, self.orphans
        );
        if self.orphans_failed > 0 {
            said.push_str(&format!(", {} orphans failed", self.orphans_failed));
        }
        said
    }
}

/// Deletes queued ciphertexts from the store — `names` only, or the whole queue — and dequeues each once the
/// store confirms it is gone; nothing while a backup holds deletions ([`BACKUP_HOLD`]). Returns (deleted, failed).
pub fn delete_queued(
    mut conns: impl Connections,
    store: &dyn BlobStore,
    names: Option<&[String]>,
) -> AppResult<(usize, usize)> {
    delete_queued_under(&mut conns, store, names, None)
}

/// [`delete_queued`], renewing `lease` (the sweep's) before each page of the queue and stopping once another
/// instance holds it: a long queue (after a store outage) is not worked through by two instances at once.
fn delete_queued_under(
    conns: &mut impl Connections,
    store: &dyn BlobStore,
    names: Option<&[String]>,
    lease: Option<lease::Held>,
) -> AppResult<(usize, usize)> {
    let (mut deleted, mut failed) = (0, 0);
    // Looked at after the names to delete were read: a name a backup's snapshot still holds was queued after that
    // snapshot, so after the backup took its hold, which is then seen here. (Looked at before reading a page of
    // the queue, it could miss a hold taken, and a name queued, in between.)
    let held = |conn: &mut DbConn| -> AppResult<bool> {
        let held = lease::is_held(conn, BACKUP_HOLD)?;
        if held {
            tracing::info!("queued blob deletions wait while a backup copies the blob store");
        }
        Ok(held)
    };
    let mut count = |ok: bool| {
        if ok {
            deleted += 1
        } else {
            failed += 1
        }
        ok
    };
    match names {
        Some(names) => {
            // Queued by a commit the caller made before this call.
            if conns.with(held)? {
                return Ok((0, 0));
            }
            for name in names {
                count(delete_one(conns, store, name)?);
            }
        }
        None => {
            // Each pass sees every name at most once: failures move to the back (more attempts).
            let total = conns.with(|c| Ok(blob_deletion::count(c)?))?;
            let mut seen = 0;
            while seen < total {
                if let Some(held) = lease {
                    if !conns.with(|c| Ok(held.renew(c)?))? {
                        tracing::warn!(
                            lease = held.name,
                            "another instance took the blob sweep over; it goes on"
                        );
                        break;
                    }
                }
                let page = conns.with(|c| Ok(blob_deletion::pending(c, BATCH)?))?;
                if page.is_empty() || conns.with(held)? {
                    break;
                }
                let mut failed_here = 0;
                for name in &page {
                    failed_here += usize::from(!count(delete_one(conns, store, name)?));
                }
                seen += page.len() as i64;
                if failed_here == page.len() {
                    break; // the store refuses everything right now; the next sweep retries
                }
            }
        }
    }
    Ok((deleted, failed))
}

/// Deletes one queued ciphertext and dequeues it once the store confirms it is gone (true), or counts a failed
/// attempt (false). The store is asked between two database steps, with no connection taken for it when the
/// caller lends none (see [`Connections`]).
fn delete_one(conns: &mut impl Connections, store: &dyn BlobStore, name: &str) -> AppResult<bool> {
    match store.delete(name) {
        Ok(()) => {
            conns.with(|c| Ok(blob_deletion::done(c, name)?))?;
            Ok(true)
        }
        Err(e) => {
            tracing::warn!(blob = %name, error = %e, "deleting a queued blob failed; it stays queued");
            conns.with(|c| Ok(blob_deletion::failed(c, name)?))?;
            Ok(false)
        }
    }
}

/// After a commit that queued `names`: deletes them now (failures stay queued for the sweep).
pub async fn delete_after_commit(state: &Services, names: Vec<String>) {
    if names.is_empty() {
        return;
    }
    let store = state.blobs.clone();
    let result = state
        .db
        .run_lazily(move |db| delete_queued(db, &*store, Some(&names)))
        .await;
    if let Err(e) = result {
        tracing::warn!(error = %e, "deleting queued blobs failed; the sweep will retry");
    }
}

/// A full sweep: the deletion queue, then temporaries and orphans older than `grace`. Audited (`blob.sweep`) when
/// it removed or failed to remove anything. Under `lease` (the periodic round's), renewed before each page of the
/// queue and each batch of orphans: once another instance holds it, this round deletes nothing more.
///
/// The store is asked between database steps, each on a connection taken for it when `conns` lends none (the
/// periodic round's): a slow S3 holds no connection of the pool through a round.
pub fn sweep(
    conns: &mut impl Connections,
    store: &dyn BlobStore,
    audit: &AuditLog,
    actor: &Actor,
    grace: Duration,
    lease: Option<lease::Held>,
) -> AppResult<Swept> {
    let (deleted, failed) = delete_queued_under(conns, store, None, lease)?;
    let mut swept = Swept {
        deleted,
        failed,
        ..Swept::default()
    };
    swept.temporaries = match store.sweep_temporaries(grace) {
        Ok(n) => n,
        Err(e) => return stopped(conns, audit, actor, &swept, "sweeping temporaries", e),
    };
    let mut lookup_failure = None;
    let mut lease_lost = false;
    let orphans = sweep_orphans(store, grace, &mut |names| {
        if let Some(held) = lease.filter(|_| !lease_lost) {
            lease_lost = !conns.with(|c| Ok(held.renew(c)?)).unwrap_or(false);
        }
        if lease_lost {
            // Another instance sweeps now (or the lease could not be renewed): keep them all.
            return names.iter().cloned().collect();
        }
        let referenced = conns.with(|c| {
            let mut used = blob::storage_names_in_use(c, names)?;
            used.extend(blob_deletion::queued_among(c, names)?);
            Ok(used)
        });
        referenced.unwrap_or_else(|e| {
            // When in doubt, keep the blobs.
            lookup_failure = Some(e.to_string());
            names.iter().cloned().collect()
        })
    });
    let orphans = match orphans {
        Ok(orphans) => orphans,
        Err(e) => {
            return stopped(
                conns,
                audit,
                actor,
                &swept,
                "listing the store for orphans",
                e,
            )
        }
    };
    if let Some(e) = lookup_failure {
        tracing::warn!(error = %e, "blob sweep could not check some blobs; they were kept");
    }
    if lease_lost {
        tracing::warn!(
            lease = SWEEP_LEASE,
            "another instance took the blob sweep over; it looks at the orphans"
        );
    }
    swept.orphans = orphans.removed;
    swept.orphans_failed = orphans.failed;
    if !swept.is_empty() {
        tracing::info!(
            deleted = swept.deleted,
            failed = swept.failed,
            temporaries = swept.temporaries,
            orphans = swept.orphans,
            orphans_failed = swept.orphans_failed,
            "blob sweep removed unreferenced files"
        );
        let outcome = if swept.failed > 0 || swept.orphans_failed > 0 {
            Outcome::Failure
        } else {
            Outcome::Success
        };
        let event = Event::new("blob.sweep", outcome).reason(swept.describe());
        conns.with(|c| audit.record(c, actor, event))?;
    }
    Ok(swept)
}

/// A sweep's step that failed after the queue's deletions: they are still audited, with the failure (their queue
/// rows are gone, so no later sweep could record them).
fn stopped(
    conns: &mut impl Connections,
    audit: &AuditLog,
    actor: &Actor,
    swept: &Swept,
    what: &str,
    e: std::io::Error,
) -> AppResult<Swept> {
    if !swept.is_empty() {
        let event = Event::new("blob.sweep", Outcome::Failure)
            .reason(format!("{}; then {what} failed", swept.describe()));
        conns.with(|c| audit.record(c, actor, event))?;
    }
    Err(AppError::Unavailable(format!("{what}: {e}")))
}

/// One round of the sweep for `holder`: the sweep when `holder` holds the lease [`SWEEP_LEASE`] (taking or
/// renewing it for `lease_secs`), `None` when another instance does — that one sweeps this round.
pub fn sweep_if_leased(
    conns: &mut impl Connections,
    store: &dyn BlobStore,
    audit: &AuditLog,
    grace: Duration,
    holder: &'static str,
    lease_secs: i64,
) -> AppResult<Option<Swept>> {
    if !conns.with(|c| Ok(lease::acquire(c, SWEEP_LEASE, holder, lease_secs)?))? {
        tracing::debug!(
            lease = SWEEP_LEASE,
            "blob sweep skipped: another instance holds the lease"
        );
        return Ok(None);
    }
    let started = std::time::Instant::now();
    let held = lease::Held {
        name: SWEEP_LEASE,
        holder,
        seconds: lease_secs,
    };
    let swept = sweep(conns, store, audit, &Actor::system(), grace, Some(held))?;
    // took_ms: a round's start is its log line's time less this (the cluster suite spaces the rounds' starts).
    tracing::debug!(
        lease = SWEEP_LEASE,
        took_ms = started.elapsed().as_millis() as u64,
        "blob sweep ran: {}",
        swept.describe()
    );
    Ok(Some(swept))
}

/// The sweep at start (before the server takes requests), unless another instance holds the lease: then its next
/// round sweeps (what this instance's own crash may have left, too).
///
/// On SQLite there is one instance (a database file is one machine's, and the README says never to share it), so a
/// lease found at start is this instance's own from before a restart — after a `kill -9`, one that would not lapse
/// for up to an interval and a half. It is taken over at once: a crash's leftovers are swept at the restart.
pub fn sweep_at_start(
    conn: &mut DbConn,
    store: &dyn BlobStore,
    audit: &AuditLog,
    settings: &Settings,
) -> AppResult<Swept> {
    let grace = Duration::from_secs(settings.blob_sweep_grace_minutes * 60);
    let every = settings.blob_sweep_interval_seconds;
    let holder = lease_holder();
    lease::clear_own_at_start(conn, SWEEP_LEASE)?;
    let swept = sweep_if_leased(
        &mut &mut *conn,
        store,
        audit,
        grace,
        holder,
        lease_seconds(every),
    )?;
    if every == 0 && swept.is_some() {
        // No periodic round will renew it: the next instance to start sweeps at once.
        lease::release(conn, SWEEP_LEASE, holder)?;
    }
    Ok(swept.unwrap_or_default())
}

/// Runs a sweep round every `blob_sweep_interval_seconds` (0: never) on the current Tokio runtime, until it stops:
/// the sweep on the instance that holds the lease, nothing on the others.
pub fn spawn_periodic_sweep(state: &Services) {
    let every = state.settings.blob_sweep_interval_seconds;
    if every == 0 {
        return;
    }
    let (db, store, audit): (Db, _, AuditLog) =
        (state.db.clone(), state.blobs.clone(), state.audit.clone());
    let grace = Duration::from_secs(state.settings.blob_sweep_grace_minutes * 60);
    let lease_secs = lease_seconds(every);
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(every));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await; // the first tick is immediate; start-up already swept (or another instance did)
        loop {
            tick.tick().await;
            let (store, audit) = (store.clone(), audit.clone());
            // No connection held through the round: each step takes one (see `sweep`).
            let result = db
                .run_lazily(move |db| {
                    sweep_if_leased(
                        &mut { db },
                        &*store,
                        &audit,
                        grace,
                        lease_holder(),
                        lease_secs,
                    )
                })
                .await;
            if let Err(e) = result {
                tracing::warn!(error = %e, "the periodic blob sweep failed; it runs again later");
            }
        }
    });
}

#[cfg(test)]
mod tests {
    use super::lease_seconds;

    #[test]
    fn an_upload_s_window_ends_before_the_sweep_s_grace() {
        use super::upload_window_secs;
        assert_eq!(upload_window_secs(60), 55 * 60);
        assert_eq!(upload_window_secs(10), 5 * 60);
        assert_eq!(upload_window_secs(1), 30);
        assert_eq!(upload_window_secs(0), 0);
        assert!(upload_window_secs(u64::MAX) > 0);
    }

    #[test]
    fn a_round_s_lease_outlasts_its_interval_so_that_the_holder_renews_it_in_time() {
        assert_eq!(lease_seconds(300), 450);
        assert_eq!(lease_seconds(2), 7);
        // At start only: the start-up sweep's own time.
        assert_eq!(lease_seconds(0), 5);
        assert!(lease_seconds(u64::MAX) > 0);
    }
}
