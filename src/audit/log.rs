//! Appending to the audit log inside the caller's transaction, and the "one transaction per fact" helper.

use crate::clock::Clock;
use std::sync::Arc;

use diesel::prelude::*;

use super::chain::{compute_entry_hash, parse_hash_hex, NewEntryFields};
use super::checkpoint::{Checkpoint, CheckpointSigner};
use crate::db::schema::{audit_checkpoints, audit_entries, audit_head};
use crate::db::DbConn;
use crate::error::{AppError, AppResult};

/// Who did something, from where, in which request. Built by the web layer, or by the CLI.
#[derive(Debug, Clone, Default)]
pub struct Actor {
    pub user_id: Option<String>,
    pub role: Option<String>,
    pub client_addr: Option<String>,
    pub request_id: Option<String>,
}

impl Actor {
    pub fn cli() -> Actor {
        Actor {
            role: Some("cli".into()),
            client_addr: Some("local".into()),
            ..Actor::default()
        }
    }
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

    /// The same log, timestamping with `clock` (the portal's, so tests that advance it see it here too).
    pub fn with_clock(mut self, clock: Clock) -> AuditLog {
        self.clock = clock;
        self
    }

    pub fn public_key_hex(&self) -> String {
        self.signer.public_key_hex()
    }

    /// Runs `f` and records `event` in the same transaction: both commit, or neither does.
    /// The chain head row is locked first, so concurrent writers (threads or portal instances) queue up
    /// instead of deadlocking, and SQLite takes its write lock before any read.
    pub fn fact<T, F>(&self, conn: &mut DbConn, actor: &Actor, f: F) -> AppResult<T>
    where
        F: FnOnce(&mut DbConn) -> AppResult<(T, Event)>,
    {
        conn.transaction::<T, AppError, _>(|tx| {
            lock_head(tx)?;
            let (value, event) = f(tx)?;
            self.append(tx, actor, &event)?;
            Ok(value)
        })
    }

    /// Like [`AuditLog::fact`] for actions that write several entries (e.g. a refusal plus nothing else).
    pub fn record(&self, conn: &mut DbConn, actor: &Actor, event: Event) -> AppResult<()> {
        self.fact(conn, actor, |_| Ok(((), event)))
    }

    /// Appends one entry. Must run inside a transaction that has called [`lock_head`].
    pub fn append(&self, tx: &mut DbConn, actor: &Actor, event: &Event) -> AppResult<i64> {
        let (head_seq, head_hash): (i64, String) = audit_head::table
            .find(1)
            .select((audit_head::seq, audit_head::entry_hash))
            .first(tx)?;
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
        diesel::insert_into(audit_entries::table)
            .values((
                audit_entries::seq.eq(seq),
                audit_entries::at.eq(at),
                audit_entries::actor_id.eq(&fields.actor_id),
                audit_entries::actor_role.eq(&fields.actor_role),
                audit_entries::client_addr.eq(&fields.client_addr),
                audit_entries::action.eq(&fields.action),
                audit_entries::object_kind.eq(&fields.object_kind),
                audit_entries::object_id.eq(&fields.object_id),
                audit_entries::tracking_number.eq(&fields.tracking_number),
                audit_entries::outcome.eq(&fields.outcome),
                audit_entries::reason.eq(&fields.reason),
                audit_entries::request_id.eq(&fields.request_id),
                audit_entries::prev_hash.eq(&head_hash),
                audit_entries::entry_hash.eq(&hash),
            ))
            .execute(tx)?;
        diesel::update(audit_head::table.find(1))
            .set((audit_head::seq.eq(seq), audit_head::entry_hash.eq(&hash)))
            .execute(tx)?;
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
        let last: Option<i64> = audit_checkpoints::table
            .select(diesel::dsl::max(audit_checkpoints::seq))
            .first::<Option<i64>>(tx)?;
        let from_seq = last.unwrap_or(0) + 1;
        if from_seq > seq {
            return Ok(None);
        }
        let hashes: Vec<String> = audit_entries::table
            .filter(audit_entries::seq.ge(from_seq))
            .filter(audit_entries::seq.le(seq))
            .order(audit_entries::seq.asc())
            .select(audit_entries::entry_hash)
            .load(tx)?;
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
        diesel::insert_into(audit_checkpoints::table)
            .values((
                audit_checkpoints::seq.eq(cp.seq),
                audit_checkpoints::from_seq.eq(cp.from_seq),
                audit_checkpoints::chain_head.eq(&cp.chain_head),
                audit_checkpoints::merkle_root.eq(&cp.merkle_root),
                audit_checkpoints::at.eq(cp.at),
                audit_checkpoints::public_key.eq(&cp.public_key),
                audit_checkpoints::signature.eq(&cp.signature),
            ))
            .execute(tx)?;
        Ok(Some(cp))
    }
}

/// Takes the chain head's row lock (PostgreSQL) / the write lock (SQLite) at the start of a transaction.
pub fn lock_head(tx: &mut DbConn) -> AppResult<()> {
    diesel::update(audit_head::table.find(1))
        .set(audit_head::seq.eq(audit_head::seq))
        .execute(tx)?;
    Ok(())
}
