//! Appending to the audit log inside the caller's transaction, and the "one transaction per fact" helper.

use std::sync::Arc;

use super::chain::{compute_entry_hash, parse_hash_hex, NewEntryFields};
use super::checkpoint::{Checkpoint, CheckpointSigner};
use super::store;
use super::stored::{self, Scope, Verdict};
use super::verify::{Problem, Summary};
use crate::clock::Clock;
use crate::db::{Db, DbConn};
use crate::error::{AppError, AppResult};

/// Who did something, from where, in which request. Built by the web layer, or by the CLI.
#[derive(Debug, Clone, Default)]
pub struct Actor {
    pub user_id: Option<String>,
    pub role: Option<String>,
    pub client_addr: Option<String>,
    pub request_id: Option<String>,
    /// The token hash of the session the act came from, if any (not recorded): a stream of protected content it
    /// opened goes on only while that session lives ([`crate::auth::sessions::still_streaming`]).
    pub session: Option<String>,
}

impl Actor {
    /// A command run on the host: recorded as `cli`, from the host's operator (see [`host_operator`]).
    pub fn cli() -> Actor {
        Actor {
            role: Some("cli".into()),
            client_addr: Some(host_operator()),
            ..Actor::default()
        }
    }

    /// The portal itself, for work nobody asked for in a request (the periodic sweep).
    pub fn system() -> Actor {
        Actor {
            role: Some("system".into()),
            client_addr: Some("local".into()),
            ..Actor::default()
        }
    }
}

/// Who ran a command on the host, as the host tells it: the process's user (its name where `/etc/passwd` has one,
/// and its uid) and, under sudo, whom sudo ran it for. It is the host's word, as the rest of a command's entry is,
/// but it tells operators apart in the log (a command's acts were all "local").
fn host_operator() -> String {
    use std::os::unix::fs::MetadataExt;
    match std::fs::metadata("/proc/self") {
        Ok(m) => operator_named(
            m.uid(),
            &std::fs::read_to_string("/etc/passwd").unwrap_or_default(),
            std::env::var("SUDO_USER").ok().as_deref(),
        ),
        Err(_) => "local".into(),
    }
}

fn operator_named(uid: u32, passwd: &str, sudo_user: Option<&str>) -> String {
    // A user name as the host's tools make them; anything else (a planted SUDO_USER) is left out.
    let plain = |n: &str| {
        (1..=32).contains(&n.len())
            && n.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    };
    let uid_text = uid.to_string();
    let name = passwd.lines().find_map(|line| {
        let mut fields = line.split(':');
        let name = fields.next()?;
        fields.next()?;
        (fields.next()? == uid_text && plain(name)).then_some(name)
    });
    let mut who = match name {
        Some(name) => format!("local: {name} (uid {uid})"),
        None => format!("local: uid {uid}"),
    };
    if let Some(by) = sudo_user.filter(|n| plain(n)) {
        who.push_str(&format!(", sudo from {by}"));
    }
    who
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Success,
    Failure,
    Refused,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Success => "success",
            Outcome::Failure => "failure",
            Outcome::Refused => "refused",
        }
    }
}

/// What happened, to what. Never content, passwords or tokens: only ids, names of actions and reasons.
#[derive(Debug, Clone)]
pub struct Event {
    pub action: &'static str,
    pub object_kind: Option<&'static str>,
    pub object_id: Option<String>,
    pub tracking_number: Option<String>,
    pub outcome: Outcome,
    pub reason: Option<String>,
}

impl Event {
    pub fn new(action: &'static str, outcome: Outcome) -> Event {
        Event {
            action,
            object_kind: None,
            object_id: None,
            tracking_number: None,
            outcome,
            reason: None,
        }
    }
    pub fn object(mut self, kind: &'static str, id: impl Into<String>) -> Event {
        self.object_kind = Some(kind);
        self.object_id = Some(id.into());
        self
    }
    pub fn tracking(mut self, tracking_number: Option<impl Into<String>>) -> Event {
        self.tracking_number = tracking_number.map(Into::into);
        self
    }
    pub fn reason(mut self, reason: impl Into<String>) -> Event {
        self.reason = Some(reason.into());
        self
    }
}

/// The audit log: appends chained entries and signs a checkpoint every `checkpoint_every` entries.
#[derive(Clone)]
pub struct AuditLog {
    signer: Arc<CheckpointSigner>,
    checkpoint_every: i64,
    /// Timestamps entries and checkpoints.
    clock: Clock,
}

impl AuditLog {
    pub fn new(signer: CheckpointSigner, checkpoint_every: i64) -> AuditLog {
        AuditLog {
            signer: Arc::new(signer),
            checkpoint_every: checkpoint_every.max(1),
            clock: Clock::system(),
        }
    }

    /// A log for a process that holds no signing key (the sealed portal, `backup`): it records entries but never
    /// signs a checkpoint (its key is a throwaway; none is due before `i64::MAX` entries). The portal's next
    /// checkpoint covers what it recorded.
    pub fn unsigned() -> AuditLog {
        let (signer, _seed) = CheckpointSigner::generate();
        AuditLog::new(signer, i64::MAX)
    }

    /// The same log, timestamping with `clock` (the portal's, so tests that advance it see it here too).
    pub fn with_clock(mut self, clock: Clock) -> AuditLog {
        self.clock = clock;
        self
    }

    pub fn public_key_hex(&self) -> String {
        self.signer.public_key_hex()
    }

    /// The last verify's stored result, its signature checked against this portal's key.
    pub fn last_verification(
        &self,
        conn: &mut DbConn,
    ) -> diesel::QueryResult<Option<store::LastVerification>> {
        store::last_verification(conn, Some(&self.public_key_hex()))
    }

    /// Runs `f` and records `event` in the same transaction: both commit, or neither does.
    /// The chain head row is locked first, so concurrent writers (threads or portal instances) queue up
    /// instead of deadlocking, and SQLite takes its write lock before any read.
    ///
    /// An act refused for a conflict of interest changes nothing, but the attempt is recorded: after the
    /// rollback, in its own transaction (see [`AuditLog::record_conflict`]).
    pub fn fact<T, F>(&self, conn: &mut DbConn, actor: &Actor, f: F) -> AppResult<T>
    where
        F: FnOnce(&mut DbConn) -> AppResult<(T, Event)>,
    {
        self.fact_if(conn, actor, |tx| {
            f(tx).map(|(value, event)| (value, Some(event)))
        })
    }

    /// [`AuditLog::fact`] for an act that can turn out to have done nothing (what it would end was already
    /// gone): `None` records nothing.
    pub fn fact_if<T, F>(&self, conn: &mut DbConn, actor: &Actor, f: F) -> AppResult<T>
    where
        F: FnOnce(&mut DbConn) -> AppResult<(T, Option<Event>)>,
    {
        // A failed COMMIT on SQLite is a rollback; on PostgreSQL a connection lost during it leaves the outcome
        // unknown (the server may have committed).
        let uncertain_commit = !matches!(conn, DbConn::Sqlite(_));
        let mut committing = false;
        let done = conn.transaction::<T, AppError, _>(|tx| {
            lock_head(tx)?;
            let (value, event) = f(tx)?;
            if let Some(event) = event {
                self.append(tx, actor, &event)?;
            }
            committing = true;
            Ok(value)
        });
        match done {
            Err(e @ AppError::ConflictOfInterest(_)) => Err(self.record_conflict(conn, actor, e)),
            // Only COMMIT failed after this point.
            Err(e) if committing && uncertain_commit => Err(AppError::Unconfirmed(Box::new(e))),
            done => done,
        }
    }

    /// Records a refusal for a conflict of interest (`conflict_of_interest.refused`: who, on what, why) and
    /// gives the error back to answer with; any other error passes untouched. If the entry cannot be
    /// written, that failure is the answer instead (the refusal stands either way).
    pub fn record_conflict(&self, conn: &mut DbConn, actor: &Actor, e: AppError) -> AppError {
        let AppError::ConflictOfInterest(c) = &e else {
            return e;
        };
        let event = Event::new("conflict_of_interest.refused", Outcome::Refused)
            .object(c.object_kind, c.object_id.clone())
            .tracking(c.tracking_number.clone())
            .reason(c.reason);
        match self.record(conn, actor, event) {
            Ok(()) => e,
            Err(failed) => failed,
        }
    }

    /// Like [`AuditLog::fact`] for actions that write several entries (e.g. a refusal plus nothing else).
    pub fn record(&self, conn: &mut DbConn, actor: &Actor, event: Event) -> AppResult<()> {
        self.fact(conn, actor, |_| Ok(((), event)))
    }

    /// The time entries are stamped with now: for an act recorded in the same fact, so that both agree.
    pub fn now(&self) -> i64 {
        self.clock.now()
    }

    /// Appends one entry. Must run inside a transaction that has called [`lock_head`].
    pub fn append(&self, tx: &mut DbConn, actor: &Actor, event: &Event) -> AppResult<i64> {
        let (head_seq, head_hash) = store::head(tx)?;
        let seq = head_seq + 1;
        let at = self.clock.now();
        let prev = parse_hash_hex(&head_hash)
            .ok_or_else(|| AppError::Internal("audit head is corrupt".into()))?;
        // Escaped against log injection before hashing, so the stored value is what the hash covers.
        let fields = NewEntryFields {
            actor_id: actor.user_id.clone(),
            actor_role: actor.role.clone(),
            client_addr: actor.client_addr.clone(),
            action: event.action.to_string(),
            object_kind: event.object_kind.map(str::to_string),
            object_id: event.object_id.clone(),
            tracking_number: event.tracking_number.clone(),
            outcome: event.outcome.as_str().to_string(),
            reason: event.reason.clone(),
            request_id: actor.request_id.clone(),
        }
        .escaped();
        let hash = hex::encode(compute_entry_hash(seq, at, &fields, &prev));
        store::insert_entry(tx, seq, at, &fields, &head_hash, &hash)?;
        if seq % self.checkpoint_every == 0 {
            self.write_checkpoint(tx, seq, &hash)?;
        }
        Ok(seq)
    }

    /// Signs a checkpoint over the entries since the previous one. Inside the caller's transaction.
    pub fn write_checkpoint(
        &self,
        tx: &mut DbConn,
        seq: i64,
        head: &str,
    ) -> AppResult<Option<Checkpoint>> {
        let from_seq = store::last_checkpoint_seq(tx)?.unwrap_or(0) + 1;
        if from_seq > seq {
            return Ok(None);
        }
        let hashes = store::entry_hashes(tx, from_seq, seq)?;
        let leaves = hashes
            .iter()
            .map(|h| parse_hash_hex(h))
            .collect::<Option<Vec<_>>>()
            .ok_or_else(|| AppError::Internal("audit entry hash is corrupt".into()))?;
        let root = super::chain::merkle_root(&leaves);
        let head = parse_hash_hex(head)
            .ok_or_else(|| AppError::Internal("audit head is corrupt".into()))?;
        let cp = self
            .signer
            .sign(seq, from_seq, &head, &root, self.clock.now());
        store::insert_checkpoint(tx, &cp)?;
        Ok(Some(cp))
    }

    /// Records the request and signs a checkpoint that covers it, in one transaction.
    pub fn checkpoint_now(
        &self,
        conn: &mut DbConn,
        actor: &Actor,
    ) -> AppResult<Option<Checkpoint>> {
        conn.transaction(|tx| {
            lock_head(tx)?;
            let seq = self.append(tx, actor, &Event::new("audit.checkpoint", Outcome::Success))?;
            let (_, head) = store::head(tx)?;
            // append() may already have written one at a multiple of N.
            if store::checkpoint_exists(tx, seq)? {
                return Ok(store::latest_checkpoint(tx)?);
            }
            self.write_checkpoint(tx, seq, &head)
        })
    }

    /// `audit verify` and "verify now": verifies the stored chain, in full or incrementally ([`stored`]),
    /// reading on connections of its own from `db` (two readers where there are two cores), then records
    /// that it did, whatever the outcome: the `audit.verify` entry, the result the auditor's page shows and,
    /// when it passed, where the next verify may start — in one transaction, so a failed verify never moves
    /// that forward. Trusts the key of `kept` checkpoints (kept outside the portal), else this portal's.
    pub fn verify_and_record_from(
        &self,
        db: &Db,
        actor: &Actor,
        kept: &[Checkpoint],
        scope: Scope,
    ) -> AppResult<Verdict> {
        let mut pooled = vec![db.get()?];
        if readers_wanted() > 1 {
            // If the pool has no second connection to spare (within its timeout), one reader does it all.
            if let Ok(c) = db.get() {
                pooled.push(c);
            }
        }
        let mut conns: Vec<&mut DbConn> = pooled.iter_mut().map(|c| &mut **c).collect();
        self.verify_on(&mut conns, actor, kept, scope)
    }

    /// [`verify_and_record_from`](Self::verify_and_record_from) in full, read on `conn` alone.
    pub fn verify_and_record(
        &self,
        conn: &mut DbConn,
        actor: &Actor,
        kept: &[Checkpoint],
    ) -> AppResult<Result<Summary, Problem>> {
        Ok(self
            .verify_on(&mut [conn], actor, kept, Scope::Full)?
            .result)
    }

    fn verify_on(
        &self,
        conns: &mut [&mut DbConn],
        actor: &Actor,
        kept: &[Checkpoint],
        scope: Scope,
    ) -> AppResult<Verdict> {
        let own_key = self.public_key_hex();
        let trusted = trusted_key(kept, Some(&own_key));
        // The result is dated when the verify began: the state of the log it read.
        let began = self.clock.now();
        let verdict = stored::verify(conns, kept, trusted.as_deref(), scope);
        let now = self.clock.now();
        // Only a statement under the trusted key can be trusted by the next verify: with a kept checkpoint of
        // another key, nothing is kept.
        let reached = match (&verdict.result, &verdict.reached) {
            (Ok(_), Some(cp)) if trusted.as_deref() == Some(own_key.as_str()) => {
                self.signer.sign_verified(cp, now)
            }
            _ => None,
        };
        let (outcome, summary) = match &verdict.result {
            Ok(s) => (
                Outcome::Success,
                format!("{}: {s}", verdict.start.describe()),
            ),
            Err(p) => (
                Outcome::Failure,
                format!("{}: {p}", verdict.start.describe()),
            ),
        };
        let mut record = store::Verification {
            at: began,
            ok: verdict.result.is_ok(),
            summary,
            after_checkpoint: verdict.start.after_checkpoint(),
            signature: None,
        };
        record.signature = Some(self.signer.sign_result(&record.result()));
        let summary = record.summary.clone();
        self.fact(conns[0], actor, |tx| {
            // Another verify (on another instance, or an earlier failure) may be the one to keep showing.
            if store::last_verification(tx, Some(&own_key))?
                .is_none_or(|stored| record.supersedes(&stored))
            {
                store::record_verification(tx, &record)?;
            }
            // Only forward: a verify that reached an earlier checkpoint than one recorded meanwhile (by a verify
            // on another instance) leaves the later one in place.
            // (A record that does not verify under this portal's key counts for nothing: it is replaced.)
            let key = self.public_key_hex();
            let recorded_seq = store::verified_through(tx)?
                .and_then(|json| {
                    serde_json::from_str::<super::checkpoint::VerifiedThrough>(&json).ok()
                })
                .filter(|v| v.verify(&key).is_ok())
                .map(|v| v.checkpoint.seq);
            if let Some(v) = reached
                .as_ref()
                .filter(|v| recorded_seq.is_none_or(|seq| v.checkpoint.seq >= seq))
            {
                let json = serde_json::to_string(v).map_err(|e| {
                    AppError::Internal(format!("encoding the verified checkpoint: {e}"))
                })?;
                store::record_verified_through(tx, &json)?;
            }
            Ok(((), Event::new("audit.verify", outcome).reason(summary)))
        })?;
        Ok(verdict)
    }
}

/// Readers a verify uses: one per core, at most [`stored::MAX_READERS`].
fn readers_wanted() -> usize {
    std::thread::available_parallelism()
        .map_or(1, std::num::NonZeroUsize::get)
        .min(stored::MAX_READERS)
}

/// A kept checkpoint's key is trusted; otherwise the portal's own signing key (a chain re-signed with
/// another key then fails).
fn trusted_key(kept: &[Checkpoint], own_key: Option<&str>) -> Option<String> {
    kept.first()
        .map(|c| c.public_key.clone())
        .or_else(|| own_key.map(str::to_string))
}

pub use super::store::lock_head;

/// Verifies the whole stored chain on `conn` (one reader). Returns a summary or the first problem.
pub fn verify_stored(
    conn: &mut DbConn,
    kept: &[Checkpoint],
    own_key: Option<&str>,
) -> Result<Summary, Problem> {
    let trusted = trusted_key(kept, own_key);
    stored::verify(&mut [conn], kept, trusted.as_deref(), Scope::Full).result
}

#[cfg(test)]
mod operator_tests {
    use super::operator_named;

    const PASSWD: &str =
        "root:x:0:0:root:/root:/bin/bash\nalice:x:1000:1000::/home/alice:/bin/sh\n";

    #[test]
    fn the_host_operator_is_named_by_uid_and_sudo_and_nothing_planted() {
        assert_eq!(
            operator_named(1000, PASSWD, None),
            "local: alice (uid 1000)"
        );
        assert_eq!(
            operator_named(0, PASSWD, Some("alice")),
            "local: root (uid 0), sudo from alice"
        );
        assert_eq!(operator_named(1234, PASSWD, None), "local: uid 1234");
        assert_eq!(
            operator_named(0, PASSWD, Some("alice\u{202e}; role admin")),
            "local: root (uid 0)"
        );
    }
}
