//! The audit log's own store, the one place its tables are read and written: appending an entry and
//! moving the head, checkpoints, pages for verification and export, filtered lists for the auditor, and
//! the last verification's result. The rules (chaining, escaping, when to checkpoint) are in `log`.

use diesel::prelude::*;
use serde::Serialize;

use crate::audit::chain::{
    field_bytes_clean, parse_hash_hex_bytes, AuditEntry, EntryHasher, NewEntryFields,
    FIELD_OPTIONAL,
};
use crate::audit::checkpoint::{Checkpoint, VerifyResult};
use crate::audit::verify::Prehashed;
use crate::db::schema::{audit_checkpoints, audit_entries, audit_head};
use crate::db::DbConn;

#[allow(clippy::type_complexity)]
type Row = (
    i64,
    i64,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    Option<String>,
    Option<String>,
    Option<String>,
    String,
    Option<String>,
    Option<String>,
    String,
    String,
);

#[allow(clippy::type_complexity)]
fn columns() -> (
    audit_entries::seq,
    audit_entries::at,
    audit_entries::actor_id,
    audit_entries::actor_role,
    audit_entries::client_addr,
    audit_entries::action,
    audit_entries::object_kind,
    audit_entries::object_id,
    audit_entries::tracking_number,
    audit_entries::outcome,
    audit_entries::reason,
    audit_entries::request_id,
    audit_entries::prev_hash,
    audit_entries::entry_hash,
) {
    use audit_entries::*;
    (
        seq,
        at,
        actor_id,
        actor_role,
        client_addr,
        action,
        object_kind,
        object_id,
        tracking_number,
        outcome,
        reason,
        request_id,
        prev_hash,
        entry_hash,
    )
}

fn to_entry(r: Row) -> AuditEntry {
    AuditEntry {
        seq: r.0,
        at: r.1,
        actor_id: r.2,
        actor_role: r.3,
        client_addr: r.4,
        action: r.5,
        object_kind: r.6,
        object_id: r.7,
        tracking_number: r.8,
        outcome: r.9,
        reason: r.10,
        request_id: r.11,
        prev_hash: r.12,
        entry_hash: r.13,
    }
}

/// Entries with seq > `after`, oldest first (for streaming verification and export).
pub fn page_after(conn: &mut DbConn, after: i64, limit: i64) -> QueryResult<Vec<AuditEntry>> {
    let rows: Vec<Row> = audit_entries::table
        .filter(audit_entries::seq.gt(after))
        .order(audit_entries::seq.asc())
        .limit(limit)
        .select(columns())
        .load(conn)?;
    Ok(rows.into_iter().map(to_entry).collect())
}

/// Calls `f` with what a verify needs of each entry of `from..=to` ([`Prehashed`]), oldest first: one page of
/// a verify, read by seq range so that several readers can each take their own pages (the sequence is
/// gapless, so a range holds the same entries as a keyset page; a gap left by a deleted entry makes a page
/// short). Row by row, never a page of rows at once. On SQLite each row is hashed where SQLite holds it
/// ([`InPlace`]): a full verify reads a million rows, and copying their fourteen columns into `String`s cost
/// more than hashing them.
pub fn each_prehashed_in_range(
    conn: &mut DbConn,
    from: i64,
    to: i64,
    mut f: impl FnMut(Prehashed),
) -> QueryResult<()> {
    let in_range = audit_entries::table
        .filter(audit_entries::seq.ge(from))
        .filter(audit_entries::seq.le(to))
        .order(audit_entries::seq.asc());
    match conn {
        DbConn::Sqlite(conn) => {
            let rows = in_range
                .select(diesel::dsl::sql::<InPlaceTypes>(IN_PLACE_COLUMNS))
                .load_iter::<InPlace, diesel::connection::DefaultLoadingMode>(conn)?;
            for row in rows {
                f(row?.0);
            }
        }
        #[cfg(feature = "postgres")]
        DbConn::Postgres(conn) => {
            let rows = in_range
                .select(columns())
                .load_iter::<Row, diesel::connection::DefaultLoadingMode>(conn)?;
            for row in rows {
                f(Prehashed::of(&to_entry(row?)));
            }
        }
    }
    Ok(())
}

/// [`columns`] with the text read as bytes: SQLite hands a BLOB over as it stores it, where reading TEXT
/// through Diesel checks its UTF-8 twice. The string fields are in the encoding's order ([`FIELD_OPTIONAL`]).
const IN_PLACE_COLUMNS: &str = "seq, at, CAST(actor_id AS BLOB), CAST(actor_role AS BLOB), \
    CAST(client_addr AS BLOB), CAST(action AS BLOB), CAST(object_kind AS BLOB), CAST(object_id AS BLOB), \
    CAST(tracking_number AS BLOB), CAST(outcome AS BLOB), CAST(reason AS BLOB), CAST(request_id AS BLOB), \
    CAST(prev_hash AS BLOB), CAST(entry_hash AS BLOB)";

type InPlaceTypes = (
    diesel::sql_types::BigInt,
    diesel::sql_types::BigInt,
    diesel::sql_types::Nullable<diesel::sql_types::Binary>,
    diesel::sql_types::Nullable<diesel::sql_types::Binary>,
    diesel::sql_types::Nullable<diesel::sql_types::Binary>,
    diesel::sql_types::Binary,
    diesel::sql_types::Nullable<diesel::sql_types::Binary>,
    diesel::sql_types::Nullable<diesel::sql_types::Binary>,
    diesel::sql_types::Nullable<diesel::sql_types::Binary>,
    diesel::sql_types::Binary,
    diesel::sql_types::Nullable<diesel::sql_types::Binary>,
    diesel::sql_types::Nullable<diesel::sql_types::Binary>,
    diesel::sql_types::Binary,
    diesel::sql_types::Binary,
);

/// A SQLite row of [`IN_PLACE_COLUMNS`] prehashed, read in SQLite's own buffers a column at a time.
struct InPlace(Prehashed);

impl diesel::deserialize::FromSqlRow<InPlaceTypes, diesel::sqlite::Sqlite> for InPlace {
    fn build_from_row<'a>(
        row: &impl diesel::row::Row<'a, diesel::sqlite::Sqlite>,
    ) -> diesel::deserialize::Result<Self> {
        use diesel::row::Field as _;
        use diesel::sql_types::BigInt;
        /// Column `i`'s bytes to `f` (`None` for NULL).
        fn with_bytes<'a, R>(
            row: &impl diesel::row::Row<'a, diesel::sqlite::Sqlite>,
            i: usize,
            f: impl FnOnce(Option<&[u8]>) -> R,
        ) -> R {
            let field = row.get(i);
            let mut value = field.as_ref().and_then(|field| field.value());
            f(value.as_mut().map(|v| v.read_blob()))
        }
        let seq = row.get_value::<BigInt, i64, _>(0)?;
        let at = row.get_value::<BigInt, i64, _>(1)?;
        let mut hasher = EntryHasher::new(seq, at);
        let mut clean = true;
        for (i, optional) in FIELD_OPTIONAL.into_iter().enumerate() {
            with_bytes(row, i + 2, |value| {
                clean &= value.map_or(optional, field_bytes_clean);
                hasher.field(optional, value);
            });
        }
        let prev = with_bytes(row, 12, |v| v.and_then(parse_hash_hex_bytes));
        let stored = with_bytes(row, 13, |v| v.and_then(parse_hash_hex_bytes));
        let sound = clean
            && match (prev, stored) {
                (Some(prev), Some(stored)) => hasher.finish(&prev) == stored,
                _ => false,
            };
        Ok(InPlace(Prehashed::from_parts(seq, prev, stored, sound)))
    }
}

/// The lowest stored sequence number. The chain starts at #1: anything lower was put there by hand, outside the
/// chain, and a verify must say so (it reads from #1 up, and the pages below list only entries from #1).
pub fn min_seq(conn: &mut DbConn) -> QueryResult<Option<i64>> {
    audit_entries::table
        .select(diesel::dsl::min(audit_entries::seq))
        .first(conn)
}

/// The highest stored sequence number (not the head row: a verify reads what is stored).
pub fn max_seq(conn: &mut DbConn) -> QueryResult<Option<i64>> {
    audit_entries::table
        .select(diesel::dsl::max(audit_entries::seq))
        .first(conn)
}

/// The stored `entry_hash` of each of `seqs` that exists, as `(seq, entry_hash)`.
pub fn entry_hashes_at(conn: &mut DbConn, seqs: &[i64]) -> QueryResult<Vec<(i64, String)>> {
    let mut out = Vec::with_capacity(seqs.len());
    // In chunks, to stay far below the backends' limits on bound parameters.
    for chunk in seqs.chunks(500) {
        out.extend(
            audit_entries::table
                .filter(audit_entries::seq.eq_any(chunk))
                .select((audit_entries::seq, audit_entries::entry_hash))
                .load::<(i64, String)>(conn)?,
        );
    }
    Ok(out)
}

/// The auditor's filters. Every field optional; all that are given must hold.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Filter {
    pub actor: Option<String>,
    /// Any of these actors (the accounts a name or email filter matched; empty matches nothing).
    pub actors: Option<Vec<String>>,
    pub action: Option<String>,
    /// Leave this action out (the auditors' own reading of the log, folded away by default).
    pub hide_action: Option<String>,
    pub object: Option<String>,
    pub outcome: Option<String>,
    pub from: Option<i64>,
    pub to: Option<i64>,
}

/// One page of entries, newest first, using keyset pagination on `seq` (fast at any depth).
pub fn search(
    conn: &mut DbConn,
    f: &Filter,
    before: Option<i64>,
    limit: i64,
) -> QueryResult<Vec<AuditEntry>> {
    let mut q = audit_entries::table
        .select(columns())
        .filter(audit_entries::seq.ge(1))
        .order(audit_entries::seq.desc())
        .limit(limit)
        .into_boxed();
    if let Some(b) = before {
        q = q.filter(audit_entries::seq.lt(b));
    }
    if let Some(a) = &f.actor {
        q = q.filter(audit_entries::actor_id.eq(a.clone()));
    }
    if let Some(ids) = &f.actors {
        q = q.filter(audit_entries::actor_id.eq_any(ids.clone()));
    }
    if let Some(a) = &f.action {
        q = q.filter(audit_entries::action.eq(a.clone()));
    }
    if let Some(a) = &f.hide_action {
        q = q.filter(audit_entries::action.ne(a.clone()));
    }
    if let Some(o) = &f.object {
        q = q.filter(
            audit_entries::object_id
                .eq(o.clone())
                .or(audit_entries::tracking_number.eq(o.clone())),
        );
    }
    if let Some(o) = &f.outcome {
        q = q.filter(audit_entries::outcome.eq(o.clone()));
    }
    if let Some(t) = f.from {
        q = q.filter(audit_entries::at.ge(t));
    }
    if let Some(t) = f.to {
        q = q.filter(audit_entries::at.lt(t));
    }
    let rows: Vec<Row> = q.load(conn)?;
    Ok(rows.into_iter().map(to_entry).collect())
}

pub fn head(conn: &mut DbConn) -> QueryResult<(i64, String)> {
    audit_head::table
        .find(1)
        .select((audit_head::seq, audit_head::entry_hash))
        .first(conn)
}

pub fn checkpoints(conn: &mut DbConn) -> QueryResult<Vec<Checkpoint>> {
    checkpoints_after(conn, 0)
}

/// The checkpoints that end after entry `seq`, oldest first (an incremental verify's).
pub fn checkpoints_after(conn: &mut DbConn, seq: i64) -> QueryResult<Vec<Checkpoint>> {
    load_checkpoints(
        audit_checkpoints::table
            .filter(audit_checkpoints::seq.gt(seq))
            .order(audit_checkpoints::seq.asc())
            .into_boxed::<crate::db::MultiBackend>(),
        conn,
    )
}

/// Up to `limit` checkpoints, newest first, that end before entry `before` (all when `None`), and whether
/// older ones remain: the auditor's page, which a long-lived log (a checkpoint an hour) cannot show whole.
pub fn checkpoints_newest(
    conn: &mut DbConn,
    before: Option<i64>,
    limit: i64,
) -> QueryResult<(Vec<Checkpoint>, bool)> {
    let mut query = audit_checkpoints::table
        .order(audit_checkpoints::seq.desc())
        .limit(limit + 1)
        .into_boxed::<crate::db::MultiBackend>();
    if let Some(before) = before {
        query = query.filter(audit_checkpoints::seq.lt(before));
    }
    let mut page = load_checkpoints(query, conn)?;
    let more = page.len() as i64 > limit;
    page.truncate(limit as usize);
    Ok((page, more))
}

pub fn checkpoint_count(conn: &mut DbConn) -> QueryResult<i64> {
    audit_checkpoints::table.count().get_result(conn)
}

pub fn latest_checkpoint(conn: &mut DbConn) -> QueryResult<Option<Checkpoint>> {
    Ok(checkpoints_newest(conn, None, 1)?.0.pop())
}

fn load_checkpoints(
    query: audit_checkpoints::BoxedQuery<'_, crate::db::MultiBackend>,
    conn: &mut DbConn,
) -> QueryResult<Vec<Checkpoint>> {
    let rows: Vec<(i64, i64, String, String, i64, String, String)> = query
        .select((
            audit_checkpoints::seq,
            audit_checkpoints::from_seq,
            audit_checkpoints::chain_head,
            audit_checkpoints::merkle_root,
            audit_checkpoints::at,
            audit_checkpoints::public_key,
            audit_checkpoints::signature,
        ))
        .load(conn)?;
    Ok(rows
        .into_iter()
        .map(
            |(seq, from_seq, chain_head, merkle_root, at, public_key, signature)| Checkpoint {
                version: crate::audit::checkpoint::CHECKPOINT_VERSION,
                seq,
                from_seq,
                chain_head,
                merkle_root,
                at,
                public_key,
                signature,
            },
        )
        .collect())
}

const LAST_VERIFIED: &str = "audit.last_verified";
const VERIFIED_THROUGH: &str = "audit.verified_through";

/// The last verification's result, for the auditor's page and the operator's alerts.
#[derive(Debug, Clone, Serialize, serde::Deserialize)]
pub struct Verification {
    pub at: i64,
    pub ok: bool,
    pub summary: String,
    /// The seq of the verified checkpoint an incremental verify started after; `None` for a full verify
    /// (and for results recorded before verifies were incremental).
    #[serde(default)]
    pub after_checkpoint: Option<i64>,
    /// The portal's audit key's signature over the fields above ([`VerifyResult`]); `None` in results recorded
    /// before they were signed.
    #[serde(default)]
    pub signature: Option<String>,
}

impl Verification {
    /// Whether this result, just reached, is the one to show instead of `stored`. A failure stays shown until a
    /// pass that began after it and read at least what it read (a full verify, or an incremental one starting at
    /// or before the failed one's checkpoint): an incremental pass does not hide a full verify's failure. Otherwise
    /// the verify that began last is shown, so one that began earlier and ended later (on another instance) does
    /// not replace fresher news. A failure always replaces a pass; a stored result not signed by the portal is
    /// always replaced.
    pub fn supersedes(&self, stored: &LastVerification) -> bool {
        let old = &stored.record;
        if !stored.trusted() {
            return true;
        }
        match (old.ok, self.ok) {
            (true, false) => true,
            (false, true) => {
                let read_as_much = match (self.after_checkpoint, old.after_checkpoint) {
                    (None, _) => true,
                    (Some(_), None) => false,
                    (Some(new), Some(old)) => new <= old,
                };
                self.at >= old.at && read_as_much
            }
            _ => self.at >= old.at,
        }
    }

    /// The signed fields.
    pub fn result(&self) -> VerifyResult<'_> {
        VerifyResult {
            at: self.at,
            ok: self.ok,
            after_checkpoint: self.after_checkpoint,
            summary: &self.summary,
        }
    }
}

/// The stored result of the last verify, and whether it carries the portal's signature.
#[derive(Debug, Clone, Serialize)]
pub struct LastVerification {
    #[serde(flatten)]
    pub record: Verification,
    /// `Some(true)`: signed by the portal's audit key; `Some(false)`: not (written outside the portal, or before
    /// results were signed), so neither its verdict nor its time can be trusted; `None`: not checked (the
    /// reader had no key).
    pub signed: Option<bool>,
}

impl LastVerification {
    /// Whether what it says can be relied on: signed, or not checked.
    pub fn trusted(&self) -> bool {
        self.signed != Some(false)
    }
}

/// Stores `v` (signed by the caller) as the last verification's result.
pub fn record_verification(conn: &mut DbConn, v: &Verification) -> QueryResult<()> {
    crate::models::settings::set(
        conn,
        LAST_VERIFIED,
        &serde_json::to_string(v).unwrap_or_default(),
    )
}

/// The last verification's result, its signature checked against `audit_key` (the portal's audit public key, 64
/// lowercase hex) when one is given.
pub fn last_verification(
    conn: &mut DbConn,
    audit_key: Option<&str>,
) -> QueryResult<Option<LastVerification>> {
    Ok(crate::models::settings::get(conn, LAST_VERIFIED)?
        .and_then(|s| serde_json::from_str::<Verification>(&s).ok())
        .map(|record| {
            let signed = audit_key.map(|key| {
                record
                    .signature
                    .as_deref()
                    .is_some_and(|sig| record.result().signed_by(key, sig))
            });
            LastVerification { record, signed }
        }))
}

/// What the last successful verify established (a [`VerifiedThrough`](crate::audit::VerifiedThrough), as
/// JSON), as stored: read, checked and trusted or refused by the verify that starts from it.
pub fn verified_through(conn: &mut DbConn) -> QueryResult<Option<String>> {
    crate::models::settings::get(conn, VERIFIED_THROUGH)
}

pub fn record_verified_through(conn: &mut DbConn, json: &str) -> QueryResult<()> {
    crate::models::settings::set(conn, VERIFIED_THROUGH, json)
}

/// Takes the chain head's row lock (PostgreSQL) / the write lock (SQLite) at the start of a transaction.
pub fn lock_head(tx: &mut DbConn) -> QueryResult<()> {
    diesel::update(audit_head::table.find(1))
        .set(audit_head::seq.eq(audit_head::seq))
        .execute(tx)?;
    Ok(())
}

/// Writes entry `seq` (its fields already escaped, its hash computed) and moves the head to it.
pub fn insert_entry(
    tx: &mut DbConn,
    seq: i64,
    at: i64,
    fields: &NewEntryFields,
    prev_hash: &str,
    entry_hash: &str,
) -> QueryResult<()> {
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
            audit_entries::prev_hash.eq(prev_hash),
            audit_entries::entry_hash.eq(entry_hash),
        ))
        .execute(tx)?;
    diesel::update(audit_head::table.find(1))
        .set((
            audit_head::seq.eq(seq),
            audit_head::entry_hash.eq(entry_hash),
        ))
        .execute(tx)?;
    Ok(())
}

/// The sequence number of the newest checkpoint, if any.
pub fn last_checkpoint_seq(conn: &mut DbConn) -> QueryResult<Option<i64>> {
    audit_checkpoints::table
        .select(diesel::dsl::max(audit_checkpoints::seq))
        .first::<Option<i64>>(conn)
}

pub fn checkpoint_exists(conn: &mut DbConn, seq: i64) -> QueryResult<bool> {
    let n: i64 = audit_checkpoints::table
        .filter(audit_checkpoints::seq.eq(seq))
        .count()
        .get_result(conn)?;
    Ok(n > 0)
}

/// The entry hashes of `from..=to`, in order: the leaves of a checkpoint's Merkle tree.
pub fn entry_hashes(conn: &mut DbConn, from: i64, to: i64) -> QueryResult<Vec<String>> {
    audit_entries::table
        .filter(audit_entries::seq.ge(from))
        .filter(audit_entries::seq.le(to))
        .order(audit_entries::seq.asc())
        .select(audit_entries::entry_hash)
        .load(conn)
}

pub fn insert_checkpoint(tx: &mut DbConn, cp: &Checkpoint) -> QueryResult<()> {
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
    Ok(())
}

/// The reading of one submission's protected content by one account, from the log.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct ContentAccess {
    pub actor_id: String,
    pub views: i64,
    pub downloads: i64,
    pub exports: i64,
    pub first_at: i64,
    pub last_at: i64,
    /// The attachments downloaded, by their number on the submission, with how many times each.
    pub files: Vec<(i32, i64)>,
}

/// The actions that read a submission's content.
pub const CONTENT_ACTIONS: [&str; 3] = ["content.viewed", "content.downloaded", "content.exported"];

/// Who read the content of the submission `object` (its id or tracking number), per account, most recent
/// reader first; and the submission's id as the entries name it. One grouped query, and one for the files.
pub fn content_access(
    conn: &mut DbConn,
    object: &str,
) -> QueryResult<(Vec<ContentAccess>, Option<String>)> {
    use diesel::dsl::{count_star, max, min};
    // Entries of the chain only (see `min_seq`).
    let about = || {
        audit_entries::seq.ge(1).and(
            audit_entries::object_id
                .eq(object.to_string())
                .or(audit_entries::tracking_number.eq(object.to_string())),
        )
    };
    /// Actor, action, count, first and last time.
    type Tally = (Option<String>, String, i64, Option<i64>, Option<i64>);
    let rows: Vec<Tally> = audit_entries::table
        .filter(about())
        .filter(audit_entries::action.eq_any(CONTENT_ACTIONS))
        .filter(audit_entries::outcome.eq("success"))
        .group_by((audit_entries::actor_id, audit_entries::action))
        .select((
            audit_entries::actor_id,
            audit_entries::action,
            count_star(),
            min(audit_entries::at),
            max(audit_entries::at),
        ))
        .load(conn)?;
    let mut by_actor: std::collections::BTreeMap<String, ContentAccess> = Default::default();
    for (actor, action, n, first, last) in rows {
        let actor = actor.unwrap_or_default();
        let a = by_actor
            .entry(actor.clone())
            .or_insert_with(|| ContentAccess {
                actor_id: actor,
                first_at: i64::MAX,
                ..ContentAccess::default()
            });
        match action.as_str() {
            "content.viewed" => a.views += n,
            "content.downloaded" => a.downloads += n,
            _ => a.exports += n,
        }
        a.first_at = a.first_at.min(first.unwrap_or(i64::MAX));
        a.last_at = a.last_at.max(last.unwrap_or(0));
    }
    // Downloads name their file as "attachment N" (its number, never its name).
    let files: Vec<(Option<String>, Option<String>, i64)> = audit_entries::table
        .filter(about())
        .filter(audit_entries::action.eq("content.downloaded"))
        .filter(audit_entries::outcome.eq("success"))
        .group_by((audit_entries::actor_id, audit_entries::reason))
        .select((audit_entries::actor_id, audit_entries::reason, count_star()))
        .load(conn)?;
    for (actor, reason, n) in files {
        // "attachment 3", or "attachment 3 (as last sent)" for the version received while a correction was pending:
        // the same file, counted once.
        let number = reason
            .as_deref()
            .and_then(|r| r.strip_prefix("attachment "))
            .and_then(|n| n.split(' ').next())
            .and_then(|n| n.parse::<i32>().ok());
        if let (Some(a), Some(number)) = (by_actor.get_mut(&actor.unwrap_or_default()), number) {
            match a.files.iter_mut().find(|(f, _)| *f == number) {
                Some((_, times)) => *times += n,
                None => a.files.push((number, n)),
            }
        }
    }
    let submission_id: Option<String> = audit_entries::table
        .filter(about())
        .filter(audit_entries::object_kind.eq("submission"))
        .select(audit_entries::object_id)
        .first::<Option<String>>(conn)
        .optional()?
        .flatten();
    let mut out: Vec<ContentAccess> = by_actor.into_values().collect();
    for a in &mut out {
        a.files.sort_unstable();
    }
    out.sort_by(|a, b| {
        b.last_at
            .cmp(&a.last_at)
            .then_with(|| a.actor_id.cmp(&b.actor_id))
    });
    Ok((out, submission_id))
}

#[cfg(test)]
mod tests {
    use super::{LastVerification, Verification};

    fn result(at: i64, ok: bool, after_checkpoint: Option<i64>) -> Verification {
        Verification {
            at,
            ok,
            summary: String::new(),
            after_checkpoint,
            signature: None,
        }
    }

    fn stored(v: Verification, signed: bool) -> LastVerification {
        LastVerification {
            record: v,
            signed: Some(signed),
        }
    }

    #[test]
    fn a_failure_stays_shown_until_a_later_pass_that_read_as_much() {
        let full_failed = stored(result(100, false, None), true);
        assert!(!result(200, true, Some(50)).supersedes(&full_failed));
        assert!(result(200, true, None).supersedes(&full_failed));
        assert!(
            !result(90, true, None).supersedes(&full_failed),
            "began before it"
        );
        let incremental_failed = stored(result(100, false, Some(50)), true);
        assert!(result(200, true, Some(50)).supersedes(&incremental_failed));
        assert!(result(200, true, Some(40)).supersedes(&incremental_failed));
        assert!(!result(200, true, Some(60)).supersedes(&incremental_failed));
        assert!(result(200, false, Some(60)).supersedes(&incremental_failed));
        assert!(!result(90, false, Some(60)).supersedes(&incremental_failed));
    }

    #[test]
    fn the_verify_that_began_last_is_shown_but_a_failure_replaces_any_pass() {
        let passed = stored(result(100, true, Some(50)), true);
        assert!(result(100, true, Some(60)).supersedes(&passed));
        assert!(!result(90, true, None).supersedes(&passed), "older news");
        assert!(result(90, false, None).supersedes(&passed));
        // A result the portal did not sign counts for nothing.
        let forged = stored(result(1000, false, None), false);
        assert!(result(10, true, Some(5)).supersedes(&forged));
    }
}
