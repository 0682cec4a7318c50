//! The operator's overview: is the portal's background work being done — mail going out, destroyed files'
//! ciphertexts collected, the audit log checkpointed and verified, backups made, key rotations finished — and what
//! needs attention. Counts and times only: nothing here names a submission, a person, an organisation or a file, so
//! administrators (who never read content) and the `status` command on the host may both see all of it.

use serde::Serialize;

use crate::audit::actions;
use crate::audit::store::{self as audit_store, Filter, LastVerification};
use crate::config::Settings;
use crate::db::{Backend, DbConn};
use crate::models::{blob_deletion, data_key, lease, pending_mail, QueueSummary};
use crate::workflow::{blobs, notifications, unconfirmed_purge};

/// A nightly backup (the shipped timer) that has not happened for this long is missed.
pub const BACKUP_LATE_SECS: i64 = 36 * 3600;
/// Mail the route has not taken for this long means the route is down, or an address is refused for good.
pub const MAIL_LATE_SECS: i64 = 24 * 3600;
/// Ciphertexts of destroyed content still in the store this long after the decision.
pub const DELETION_LATE_SECS: i64 = 3600;
/// An audit log not verified for this long.
pub const VERIFY_LATE_SECS: i64 = 7 * 24 * 3600;

/// The system's own recorded acts shown with their latest entry, in this order: none of them carries content.
const RECORDED: &[&str] = &[
    "backup.made",
    "blob.sweep",
    "notifications.sent",
    "audit.checkpoint",
    "audit.verify",
    "key.rotate",
    "key.rotate_data_keys",
    "key.retire",
    "key.unseal",
];

#[derive(Debug, Clone, Serialize)]
pub struct Overview {
    /// When it was taken (Unix seconds, the portal's clock).
    pub at: i64,
    pub database: &'static str,
    pub blob_store: String,
    pub blob_store_available: bool,
    /// Free space under the data directory, MiB (`None`: could not be read).
    pub free_disk_mib: Option<u64>,
    pub min_free_disk_mib: u64,
    pub key_protection: String,
    /// Data keys by the master key generation that wraps them; more than one means a rotation is unfinished.
    pub key_generations: Vec<Generation>,
    pub mail: QueueSummary,
    pub deletions: QueueSummary,
    /// Until when a backup holds deletions (`blobs::BACKUP_HOLD`), while it does: they wait for its copy.
    pub deletions_held_until: Option<i64>,
    pub background: Vec<Job>,
    pub audit: AuditState,
    /// The latest entry of each of the system's own acts (`RECORDED`), or `None` if it never happened.
    pub recorded: Vec<Recorded>,
    /// What an operator should look at, most pressing first; empty when all is well.
    pub attention: Vec<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Generation {
    pub master_key_id: String,
    pub data_keys: i64,
}

/// A periodic job that runs on one instance at a time, under a lease.
#[derive(Debug, Clone, Serialize)]
pub struct Job {
    pub name: &'static str,
    pub label: &'static str,
    /// This instance's configured interval (0: this instance never runs it).
    pub interval_seconds: u64,
    /// Who holds the lease (`None`: never taken, or released).
    pub holder: Option<String>,
    pub held_by_this_instance: bool,
    /// When the lease runs out, by the database's clock.
    pub lease_until: Option<i64>,
    /// The lease is held now: its holder's rounds are coming.
    pub live: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct AuditState {
    /// Entries in the log (the head's sequence number).
    pub entries: i64,
    pub checkpoint_every: i64,
    pub last_checkpoint_seq: Option<i64>,
    pub last_checkpoint_at: Option<i64>,
    pub since_checkpoint: i64,
    /// Its signature is checked when the overview was given the portal's audit key.
    pub last_verification: Option<LastVerification>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Recorded {
    pub action: &'static str,
    pub label: &'static str,
    pub last: Option<LastEntry>,
}

#[derive(Debug, Clone, Serialize)]
pub struct LastEntry {
    pub seq: i64,
    pub at: i64,
    pub outcome: String,
    pub reason: Option<String>,
}

/// What the caller knows that the database does not: whether the blob store answers, and free disk space.
pub struct Live {
    pub blob_store: String,
    pub blob_store_available: bool,
    pub free_disk_bytes: Option<u64>,
}

impl Live {
    /// Asks the blob store whether it answers and the data directory's file system for its free space (blocking:
    /// the S3 store answers over the network).
    pub fn of(store: &dyn crate::storage::BlobStore, data_dir: &std::path::Path) -> Live {
        Live {
            blob_store: store.describe(),
            blob_store_available: store.is_available(),
            free_disk_bytes: crate::storage::free_space(data_dir).ok(),
        }
    }
}

/// Takes the overview at `now`. With `audit_key` (the portal's audit public key) the last verify's stored result
/// is checked against its signature; without it, it is shown as stored.
pub fn overview(
    conn: &mut DbConn,
    settings: &Settings,
    backend: Backend,
    live: Live,
    audit_key: Option<&str>,
    now: i64,
) -> diesel::QueryResult<Overview> {
    let db_now = lease::database_now(conn)?;
    let background = [
        (
            blobs::SWEEP_LEASE,
            "Blob sweep (deletion queue, orphans)",
            settings.blob_sweep_interval_seconds,
        ),
        (
            notifications::LEASE,
            "Notification round (reminders, queued mail)",
            settings.notification_interval_seconds,
        ),
        (
            unconfirmed_purge::LEASE,
            "Purge of unconfirmed registrations",
            unconfirmed_purge::INTERVAL_SECS,
        ),
    ]
    .into_iter()
    .map(|(name, label, interval_seconds)| {
        let held = lease::find(conn, name)?;
        Ok(Job {
            name,
            label,
            interval_seconds,
            held_by_this_instance: held
                .as_ref()
                .is_some_and(|l| l.holder == blobs::lease_holder()),
            live: held.as_ref().is_some_and(|l| l.expires_at > db_now),
            lease_until: held.as_ref().map(|l| l.expires_at),
            holder: held.map(|l| l.holder),
        })
    })
    .collect::<diesel::QueryResult<Vec<_>>>()?;

    let (entries, _) = audit_store::head(conn)?;
    let checkpoint = audit_store::latest_checkpoint(conn)?;
    let audit = AuditState {
        entries,
        checkpoint_every: settings.audit_checkpoint_every,
        last_checkpoint_seq: checkpoint.as_ref().map(|c| c.seq),
        last_checkpoint_at: checkpoint.as_ref().map(|c| c.at),
        since_checkpoint: entries - checkpoint.as_ref().map_or(0, |c| c.seq),
        last_verification: audit_store::last_verification(conn, audit_key)?,
    };
    let recorded = RECORDED
        .iter()
        .map(|&action| {
            let filter = Filter {
                action: Some(action.to_string()),
                ..Filter::default()
            };
            let last = audit_store::search(conn, &filter, None, 1)?
                .into_iter()
                .next()
                .map(|e| LastEntry {
                    seq: e.seq,
                    at: e.at,
                    outcome: e.outcome,
                    reason: e.reason,
                });
            Ok(Recorded {
                action,
                label: actions::known_label(action).unwrap_or(action),
                last,
            })
        })
        .collect::<diesel::QueryResult<Vec<_>>>()?;

    let mut o = Overview {
        at: now,
        database: match backend {
            Backend::Sqlite => "SQLite",
            Backend::Postgres => "PostgreSQL",
        },
        blob_store: live.blob_store,
        blob_store_available: live.blob_store_available,
        free_disk_mib: live.free_disk_bytes.map(|b| b >> 20),
        min_free_disk_mib: settings.min_free_disk_mib,
        key_protection: settings.master_key_protection.clone(),
        key_generations: data_key::count_by_master(conn)?
            .into_iter()
            .map(|(master_key_id, data_keys)| Generation {
                master_key_id,
                data_keys,
            })
            .collect(),
        mail: pending_mail::summary(conn)?,
        deletions: blob_deletion::summary(conn)?,
        deletions_held_until: lease::find(conn, blobs::BACKUP_HOLD)?
            .map(|hold| hold.expires_at)
            .filter(|&until| until > db_now),
        background,
        audit,
        recorded,
        attention: Vec::new(),
    };
    o.attention = attention(&o, backend);
    Ok(o)
}

impl Overview {
    fn last(&self, action: &str) -> Option<&LastEntry> {
        self.recorded
            .iter()
            .find(|r| r.action == action)
            .and_then(|r| r.last.as_ref())
    }
}

/// What needs looking at, most pressing first.
fn attention(o: &Overview, backend: Backend) -> Vec<String> {
    let mut out = Vec::new();
    let ago = |t: i64| crate::time::datetime(t);
    if !o.blob_store_available {
        out.push(format!(
            "The blob store ({}) does not answer: uploads and downloads fail until it does.",
            o.blob_store
        ));
    }
    match o.free_disk_mib {
        Some(free) if free < o.min_free_disk_mib => out.push(format!(
            "Free space under the data directory is {free} MiB, below the {} MiB the portal keeps: uploads are \
             refused.",
            o.min_free_disk_mib
        )),
        None => out.push("Free space under the data directory could not be read.".into()),
        _ => {}
    }
    match &o.audit.last_verification {
        Some(v) if !v.trusted() => out.push(
            "The stored result of the last audit verification does not carry this portal's signature: it was \
             written outside the portal (or before results were signed), so neither its verdict nor its time can \
             be trusted. Verify the log again: an auditor's \"Verify now\", or `pcii-portal audit verify`."
                .into(),
        ),
        Some(v) if !v.record.ok => out.push(format!(
            "The last verification of the audit log ({}) found a problem: {}",
            ago(v.record.at),
            v.record.summary
        )),
        _ => {}
    }
    if o.audit.checkpoint_every > 0 && o.audit.since_checkpoint >= o.audit.checkpoint_every {
        out.push(format!(
            "{} audit entries since the last signed checkpoint, though one is signed every {}: signing failed \
             (see the log), or `pcii-portal audit checkpoint` is needed.",
            o.audit.since_checkpoint, o.audit.checkpoint_every
        ));
    }
    if o.key_generations.len() > 1 {
        out.push(format!(
            "A key rotation is unfinished: data keys are wrapped to {} master key generations. Run `pcii-portal \
             keys rotate` again to finish it (it resumes).",
            o.key_generations.len()
        ));
    }
    if let Some(oldest) = o.deletions.oldest_at {
        if o.at - oldest > DELETION_LATE_SECS && o.deletions_held_until.is_none() {
            out.push(format!(
                "{} destroyed file(s) still wait to be deleted from the blob store (the oldest since {}, tried up \
                 to {} times). Their data keys are gone, so they cannot be read, but the store should be checked.",
                o.deletions.count,
                ago(oldest),
                o.deletions.most_attempts
            ));
        }
    }
    if let Some(oldest) = o.mail.oldest_at {
        if o.at - oldest > MAIL_LATE_SECS {
            out.push(format!(
                "{} email(s) wait for the mail route (the oldest since {}, tried up to {} times): is the SMTP \
                 server reachable?",
                o.mail.count,
                ago(oldest),
                o.mail.most_attempts
            ));
        }
    }
    for job in &o.background {
        match (&job.lease_until, job.live) {
            (Some(until), false) if job.interval_seconds > 0 => out.push(format!(
                "{}: its lease ran out at {} and no instance has taken it since: is any instance running it?",
                job.label,
                ago(*until)
            )),
            _ => {}
        }
    }
    if backend == Backend::Sqlite {
        match o.last("backup.made") {
            None => out.push(
                "No backup has been made: `pcii-portal backup --to DIR` (see the README's \"Backups\").".into(),
            ),
            Some(b) if o.at - b.at > BACKUP_LATE_SECS => out.push(format!(
                "The last backup was made at {}, over {} hours ago.",
                ago(b.at),
                BACKUP_LATE_SECS / 3600
            )),
            _ => {}
        }
    }
    match &o.audit.last_verification {
        None if o.audit.entries > 0 => out.push(
            "The audit log has never been verified: an auditor's \"Verify now\", or `pcii-portal audit verify`."
                .into(),
        ),
        Some(v) if v.trusted() && v.record.ok && o.at - v.record.at > VERIFY_LATE_SECS => {
            out.push(format!(
                "The audit log was last verified at {}, over {} days ago.",
                ago(v.record.at),
                VERIFY_LATE_SECS / 86400
            ))
        }
        _ => {}
    }
    out
}

/// The overview as plain text for a terminal: what needs attention first, then the figures.
pub fn as_text(o: &Overview) -> String {
    use std::fmt::Write;
    let when = |t: Option<i64>| t.map_or_else(|| "-".to_string(), crate::time::datetime);
    let mut s = String::new();
    let _ = writeln!(s, "as of {}", crate::time::datetime(o.at));
    if o.attention.is_empty() {
        let _ = writeln!(s, "needs attention: nothing");
    } else {
        let _ = writeln!(s, "needs attention:");
        for a in &o.attention {
            let _ = writeln!(s, "  - {a}");
        }
    }
    let _ = writeln!(s, "database: {}", o.database);
    let _ = writeln!(
        s,
        "blob store: {} ({})",
        o.blob_store,
        if o.blob_store_available {
            "answers"
        } else {
            "DOES NOT ANSWER"
        }
    );
    let _ = writeln!(
        s,
        "free space under the data directory: {} (uploads refused below {} MiB)",
        o.free_disk_mib
            .map_or_else(|| "unknown".to_string(), |m| format!("{m} MiB")),
        o.min_free_disk_mib
    );
    let _ = writeln!(s, "master key protection: {}", o.key_protection);
    for g in &o.key_generations {
        let _ = writeln!(
            s,
            "data keys wrapped to {}: {}",
            g.master_key_id, g.data_keys
        );
    }
    for (name, q) in [
        ("mail waiting for the route", &o.mail),
        ("destroyed files waiting for deletion", &o.deletions),
    ] {
        let _ = writeln!(
            s,
            "{name}: {} (oldest since {}, most tries {})",
            q.count,
            when(q.oldest_at),
            q.most_attempts
        );
    }
    if let Some(until) = o.deletions_held_until {
        let _ = writeln!(
            s,
            "a backup is copying the blob store: deletions wait for it (its hold lasts until {} unless renewed)",
            when(Some(until))
        );
    }
    for j in &o.background {
        let lease = match (&j.holder, j.live) {
            (None, _) => "lease not held".to_string(),
            (Some(h), true) => format!("lease held by {h} until {}", when(j.lease_until)),
            (Some(_), false) => format!("lease LAPSED at {}", when(j.lease_until)),
        };
        let _ = writeln!(
            s,
            "{}: every {} s on this configuration; {lease}",
            j.label, j.interval_seconds
        );
    }
    let a = &o.audit;
    let checkpoint = match (a.last_checkpoint_seq, a.last_checkpoint_at) {
        (Some(seq), Some(at)) => format!("last checkpoint #{seq} at {}", crate::time::datetime(at)),
        _ => "no checkpoint yet".to_string(),
    };
    let _ = writeln!(
        s,
        "audit log: {} entries; {checkpoint} ({} entries since, one every {})",
        a.entries, a.since_checkpoint, a.checkpoint_every
    );
    match &a.last_verification {
        Some(v) => {
            let _ = writeln!(
                s,
                "last verification: {} {}{}: {}",
                crate::time::datetime(v.record.at),
                if v.record.ok { "intact" } else { "PROBLEM" },
                match v.signed {
                    Some(true) => "",
                    Some(false) => " (NOT SIGNED by this portal's audit key: not to be trusted)",
                    None => " (signature not checked)",
                },
                v.record.summary
            );
        }
        None => {
            let _ = writeln!(s, "last verification: never");
        }
    }
    for r in &o.recorded {
        match &r.last {
            Some(e) => {
                let _ = writeln!(
                    s,
                    "last {}: {} ({}){}",
                    r.label.to_lowercase(),
                    crate::time::datetime(e.at),
                    e.outcome,
                    e.reason
                        .as_deref()
                        .map(|r| format!(": {r}"))
                        .unwrap_or_default()
                );
            }
            None => {
                let _ = writeln!(s, "last {}: never", r.label.to_lowercase());
            }
        }
    }
    s
}
