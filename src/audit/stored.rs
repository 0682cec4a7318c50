//! Verifying the chain as stored: in full from the first entry, or incrementally from the last signed
//! checkpoint an earlier verify vouched for ([`VerifiedThrough`], kept in the database).
//!
//! The entries are read in pages by seq range by up to [`MAX_READERS`] threads, each on its own connection,
//! which also hash them ([`Prehashed`]); the calling thread links them in order and checks the checkpoints.
//! Reading is most of the cost (SQLite through Diesel spends more per row than SHA-256 does), so the readers
//! share it; memory stays bounded, each reader being at most [`AHEAD`] pages ahead of the verifier.
//!
//! An incremental verify trusts what the earlier one established about the entries up to its checkpoint: it
//! checks that statement's signature and the checkpoint's, and that the stored entry at the checkpoint still
//! has the checkpoint's hash, then reads only the entries after it. A change before that entry which leaves
//! the entry itself alone (an edited row, not re-chained) is therefore left to `--full`.

use std::sync::mpsc;

use super::chain::GENESIS_HASH;
use super::checkpoint::{Checkpoint, VerifiedThrough};
use super::store;
use super::verify::{ChainVerifier, Prehashed, Problem, Summary};
use crate::db::DbConn;

/// Entries per page: enough that a query's own cost vanishes, few enough that the pages in flight stay small.
pub const PAGE: i64 = 8192;
/// Pages a reader may have read ahead of the verifier.
const AHEAD: usize = 2;
/// Readers at most: the command line's pool holds two connections, and two cores is what a portal has.
pub const MAX_READERS: usize = 2;

/// What the caller asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scope {
    /// The whole chain, from the first entry.
    Full,
    /// After the last checkpoint an earlier verify vouched for (in full when there is none).
    Incremental,
}

/// Where a verify started.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Start {
    /// From the first entry, as asked.
    Full,
    /// From the first entry: an incremental verify was asked, but it had nothing to start from (why).
    FullInstead(String),
    /// After entry `seq`: the last checkpoint an earlier verify vouched for.
    After(i64),
}

impl Start {
    /// The checkpoint an incremental verify started after.
    pub fn after_checkpoint(&self) -> Option<i64> {
        match self {
            Start::After(seq) => Some(*seq),
            Start::Full | Start::FullInstead(_) => None,
        }
    }

    /// For the command line, the auditor's page and the `audit.verify` entry.
    pub fn describe(&self) -> String {
        match self {
            Start::Full => "full verify, from the first entry".to_owned(),
            Start::FullInstead(why) => format!("full verify, from the first entry; {why}"),
            Start::After(seq) => {
                format!("incremental verify, after checkpoint #{seq}, which an earlier verify found intact")
            }
        }
    }
}

/// What a verify found.
#[derive(Debug, Clone)]
pub struct Verdict {
    pub start: Start,
    pub result: Result<Summary, Problem>,
    /// The last checkpoint it checked, when it passed: where the next verify may start.
    pub reached: Option<Checkpoint>,
}

fn reading(seq: i64, e: impl std::fmt::Display) -> Problem {
    Problem::new(seq, format!("reading the log: {e}"))
}

/// Verifies the chain stored on `conns` (one reader each; the first also does the few single reads), trusting
/// `trusted` (a kept checkpoint's key, or the portal's own) and checking `kept` checkpoints too.
pub fn verify(
    conns: &mut [&mut DbConn],
    kept: &[Checkpoint],
    trusted: Option<&str>,
    scope: Scope,
) -> Verdict {
    verify_in_pages(conns, kept, trusted, scope, PAGE)
}

/// [`verify`] reading `page` entries at a time (tests use small pages to cross page boundaries).
fn verify_in_pages(
    conns: &mut [&mut DbConn],
    kept: &[Checkpoint],
    trusted: Option<&str>,
    scope: Scope,
    page: i64,
) -> Verdict {
    let begin = match starting_point(conns, scope, trusted) {
        Ok(begin) => begin,
        Err(problem) => {
            return Verdict {
                start: Start::FullInstead("the record of the last verify could not be read".into()),
                result: Err(problem),
                reached: None,
            }
        }
    };
    let start = match &begin {
        Begin::First(start) => start.clone(),
        Begin::After(v) => Start::After(v.checkpoint.seq),
    };
    // What an earlier verify established, read before this one reads the chain: a verify on another instance that
    // records a later checkpoint meanwhile is not a checkpoint this one lost.
    let earlier = match &begin {
        Begin::First(_) => last_verified(conns, trusted)
            .ok()
            .and_then(Result::ok)
            .map(|v| v.checkpoint.seq),
        Begin::After(_) => None,
    };
    match check(conns, &begin, kept, trusted, page) {
        Ok((summary, reached)) => match lost_checkpoint(earlier, reached.as_ref()) {
            Some(problem) => Verdict {
                start,
                result: Err(problem),
                reached: None,
            },
            None => Verdict {
                start,
                result: Ok(summary),
                reached,
            },
        },
        Err(problem) => Verdict {
            start,
            result: Err(problem),
            reached: None,
        },
    }
}

/// A verify from the first entry that ended before the checkpoint the last verify established (its record signed
/// right under `trusted`): checkpoints an earlier verify found intact are no longer stored, so the entries they
/// signed became an unsigned tail that could have been rewritten. An incremental verify finds this in `check_base`.
fn lost_checkpoint(earlier: Option<i64>, reached: Option<&Checkpoint>) -> Option<Problem> {
    let seq = earlier?;
    (reached.map_or(0, |c| c.seq) < seq).then(|| {
        Problem::new(
            seq,
            format!(
                "the checkpoint at #{seq}, which an earlier verify found intact, is no longer stored: checkpoints \
                 were deleted, and the entries they signed may have been rewritten since"
            ),
        )
    })
}

/// Where a verify begins.
enum Begin {
    /// From the first entry (as asked, or for want of anything to start from).
    First(Start),
    /// After what an earlier verify established, its record checked.
    After(VerifiedThrough),
}

/// Where to begin. A record of the last verify that is missing, for another key, unreadable or not signed
/// right is not trusted: the verify runs in full and says why. That is sound (a full verify finds whatever a
/// changed record could hide) and visible.
fn starting_point(
    conns: &mut [&mut DbConn],
    scope: Scope,
    trusted: Option<&str>,
) -> Result<Begin, Problem> {
    if scope == Scope::Full {
        return Ok(Begin::First(Start::Full));
    }
    Ok(match last_verified(conns, trusted)? {
        Ok(verified) => Begin::After(verified),
        Err(why) => Begin::First(Start::FullInstead(why)),
    })
}

/// The record of the last verify, checked: `Ok` when it is there, readable and signed right under `trusted`;
/// otherwise why it cannot be trusted.
fn last_verified(
    conns: &mut [&mut DbConn],
    trusted: Option<&str>,
) -> Result<Result<VerifiedThrough, String>, Problem> {
    let Some(trusted) = trusted.map(str::trim) else {
        return Ok(Err("no trusted key to check an earlier verify with".into()));
    };
    let Some(json) = store::verified_through(conns[0]).map_err(|e| reading(0, e))? else {
        return Ok(Err("no earlier verify to start from".into()));
    };
    let Ok(verified) = serde_json::from_str::<VerifiedThrough>(&json) else {
        return Ok(Err("the record of the last verify is unreadable".into()));
    };
    if verified.checkpoint.public_key != trusted {
        return Ok(Err("the last verify trusted another key".into()));
    }
    if let Err(e) = verified.verify(trusted) {
        return Ok(Err(format!(
            "the record of the last verify does not verify ({e}): it was changed"
        )));
    }
    Ok(Ok(verified))
}

/// Checks the entries from where `begin` says, and the checkpoints over them: the summary and the last
/// checkpoint checked.
fn check(
    conns: &mut [&mut DbConn],
    begin: &Begin,
    kept: &[Checkpoint],
    trusted: Option<&str>,
    page: i64,
) -> Result<(Summary, Option<Checkpoint>), Problem> {
    let (after, start_hash) = match begin {
        Begin::First(_) => (0, GENESIS_HASH),
        Begin::After(v) => {
            check_base(conns, v)?;
            // VerifiedThrough::verify checked its form.
            let head = v.checkpoint.chain_head_bytes().unwrap_or_default();
            (v.checkpoint.seq, head)
        }
    };
    // Before #1 there is no chain to read: a row numbered there was inserted by hand (a full verify and an
    // incremental one alike look, with one query).
    if let Some(lowest) = store::min_seq(conns[0])
        .map_err(|e| reading(1, e))?
        .filter(|seq| *seq < 1)
    {
        return Err(Problem::new(
            lowest,
            "numbered before the first entry (#1): not part of the chain; it was inserted by hand",
        ));
    }
    let checkpoints = checkpoints_from(conns, after, kept, trusted)?;
    let to = store::max_seq(conns[0])
        .map_err(|e| reading(after + 1, e))?
        .unwrap_or(0);
    let verifier = || {
        ChainVerifier::new(Some((after + 1, start_hash))).with_checkpoints(&checkpoints, trusted)
    };
    let summary = scan(conns, after + 1, to, page, verifier)?.finish(&[], None)?;
    no_gap(&checkpoints, after)?;
    let reached = summary.last_checkpoint_seq.and_then(|seq| {
        checkpoints
            .iter()
            .find(|c| c.seq == seq && Some(c.public_key.as_str()) == trusted)
            .cloned()
    });
    Ok((summary, reached))
}

/// The checkpoints after `after` (sorted by their last entry) must leave no entry unsigned between them: the portal
/// signs each one from the entry after the previous (`AuditLog::write_checkpoint`), so a gap is checkpoints
/// deleted, and the entries they signed may have been rewritten since. How many entries may wait after the last
/// one is not bounded here: a sealed portal appends without signing and the interval may change, so a bound would
/// cry wolf; the latest checkpoints deleted show against kept ones and the signed record of the last verify.
fn no_gap(checkpoints: &[Checkpoint], after: i64) -> Result<(), Problem> {
    let mut next = after + 1;
    for c in checkpoints {
        if c.from_seq > next {
            return Err(Problem::new(
                next,
                format!(
                    "entries #{next}..#{} are signed by no checkpoint (the next one, #{}..#{}, starts after \
                     them): checkpoints were deleted, and the entries they signed may have been rewritten",
                    c.from_seq - 1,
                    c.from_seq,
                    c.seq
                ),
            ));
        }
        next = next.max(c.seq.saturating_add(1));
    }
    Ok(())
}

/// The entry an incremental verify starts after must still be the one that was verified.
fn check_base(conns: &mut [&mut DbConn], v: &VerifiedThrough) -> Result<(), Problem> {
    let cp = &v.checkpoint;
    let stored = store::entry_hashes_at(conns[0], &[cp.seq]).map_err(|e| reading(cp.seq, e))?;
    match stored.first() {
        Some((_, hash)) if *hash == cp.chain_head => Ok(()),
        Some(_) => Err(Problem::new(
            cp.seq,
            format!(
                "entry_hash differs from checkpoint #{}..#{}, which an earlier verify found intact: \
                 the log was changed since (`audit verify --full` names the first change)",
                cp.from_seq, cp.seq
            ),
        )),
        None => {
            let last = store::max_seq(conns[0])
                .map_err(|e| reading(cp.seq, e))?
                .unwrap_or(0);
            Err(if last < cp.seq {
                Problem::new(
                    last + 1,
                    format!(
                        "log ends at #{last} but checkpoint #{}..#{}, which an earlier verify found \
                         intact, covers #{}",
                        cp.from_seq, cp.seq, cp.seq
                    ),
                )
            } else {
                Problem::new(
                    cp.seq,
                    format!(
                        "missing, but checkpoint #{}..#{}, which an earlier verify found intact, ends \
                         with it",
                        cp.from_seq, cp.seq
                    ),
                )
            })
        }
    }
}

/// The checkpoints to check while reading the entries after `after` (all of them when 0): the stored ones
/// and the kept ones, sorted, duplicates dropped. A kept checkpoint that ends at or before `after` is
/// checked here against the stored entry it ends with (its Merkle root would need its whole range: that is
/// for `--full`).
fn checkpoints_from(
    conns: &mut [&mut DbConn],
    after: i64,
    kept: &[Checkpoint],
    trusted: Option<&str>,
) -> Result<Vec<Checkpoint>, Problem> {
    let mut checkpoints =
        store::checkpoints_after(conns[0], after).map_err(|e| reading(after + 1, e))?;
    let (before, later): (Vec<&Checkpoint>, Vec<&Checkpoint>) =
        kept.iter().partition(|c| c.seq <= after);
    checkpoints.extend(later.into_iter().cloned());
    checkpoints.sort_by_key(|c| c.seq);
    checkpoints.dedup_by(|a, b| a.seq == b.seq && a.signature == b.signature);
    if let Some(c) = checkpoints.iter().find(|c| c.from_seq <= after) {
        return Err(Problem::new(
            c.from_seq,
            format!(
                "checkpoint #{}..#{} overlaps the checkpoint ending at #{after}, which an earlier \
                 verify found intact",
                c.from_seq, c.seq
            ),
        ));
    }
    if !before.is_empty() {
        let seqs: Vec<i64> = before.iter().map(|c| c.seq).collect();
        let stored = store::entry_hashes_at(conns[0], &seqs).map_err(|e| reading(1, e))?;
        let mut before = before;
        before.sort_by_key(|c| c.from_seq);
        for c in before {
            if let Err(e) = c.verify_signature(trusted) {
                return Err(Problem::new(
                    c.from_seq,
                    format!("checkpoint #{}..#{}: {e}", c.from_seq, c.seq),
                ));
            }
            match stored.iter().find(|(seq, _)| *seq == c.seq) {
                Some((_, hash)) if *hash == c.chain_head => {}
                Some(_) => {
                    return Err(Problem::new(
                        c.from_seq,
                        format!(
                            "chain head #{} differs from kept checkpoint #{}..#{}: entries in this \
                             range were rewritten",
                            c.seq, c.from_seq, c.seq
                        ),
                    ))
                }
                None => {
                    return Err(Problem::new(
                        c.seq,
                        format!(
                            "missing, but kept checkpoint #{}..#{} ends with it",
                            c.from_seq, c.seq
                        ),
                    ))
                }
            }
        }
    }
    Ok(checkpoints)
}

/// One page as a reader hands it over.
type Page = Result<Vec<Prehashed>, Problem>;

/// Feeds `pages` pages from `channels` (page `i` from channel `i % channels.len()`) to `verifier`, in order:
/// where it stopped before the end, if it did.
fn take_pages(
    channels: &[mpsc::Receiver<Page>],
    from: i64,
    pages: usize,
    page_size: i64,
    verifier: &mut ChainVerifier,
) -> Result<Option<Stop>, Problem> {
    let mut last = from - 1;
    for page in 0..pages {
        let lo = from + page as i64 * page_size;
        let entries = channels[page % channels.len()]
            .recv()
            .map_err(|_| reading(lo, "a reader stopped"))??;
        if entries.is_empty() {
            return Ok(Some(Stop::After(last)));
        }
        for p in &entries {
            if !verifier.feed_prehashed(p)? {
                return Ok(Some(Stop::Entry(p.seq)));
            }
            last = p.seq;
        }
    }
    Ok(None)
}

/// Why the verifier stopped taking pages before the end.
enum Stop {
    /// This entry has a problem only the whole entry can name.
    Entry(i64),
    /// A page came back empty: the first entry after `seq` names the gap.
    After(i64),
}

/// How many pages of `page` entries `from..=to` takes.
fn page_count(from: i64, to: i64, page: i64) -> usize {
    if to < from {
        0
    } else {
        usize::try_from((to - from) / page + 1).unwrap_or(usize::MAX)
    }
}

/// Feeds the stored entries `from..=to` to the verifier `start` makes, in order, `page_size` at a time, and
/// returns it. Page `i` is read by reader `i % readers`, each on its own connection and with its own bounded
/// channel, so the verifier takes them in order and no reader runs more than [`AHEAD`] pages ahead. The
/// verifier is made once the readers have started: it checks the checkpoints' signatures (a thousand take
/// some 50 ms), which then overlaps with reading the first pages.
fn scan(
    conns: &mut [&mut DbConn],
    from: i64,
    to: i64,
    page_size: i64,
    start: impl FnOnce() -> ChainVerifier,
) -> Result<ChainVerifier, Problem> {
    let pages = page_count(from, to, page_size);
    let readers = conns.len().min(pages).clamp(1, MAX_READERS);
    let (mut verifier, stopped) = std::thread::scope(|s| {
        let mut channels = Vec::with_capacity(readers);
        for (first, conn) in conns.iter_mut().take(readers).enumerate() {
            let (tx, rx) = mpsc::sync_channel::<Page>(AHEAD);
            channels.push(rx);
            s.spawn(move || {
                for page in (first..pages).step_by(readers) {
                    let lo = from + page as i64 * page_size;
                    let hi = (lo + page_size - 1).min(to);
                    let mut prehashed = Vec::with_capacity(usize::try_from(page_size).unwrap_or(0));
                    let read = store::each_prehashed_in_range(conn, lo, hi, |p| prehashed.push(p))
                        .map(|()| prehashed)
                        .map_err(|e| reading(lo, e));
                    let failed = read.is_err();
                    // The verifier hung up (it stopped early): nothing more to do.
                    if tx.send(read).is_err() || failed {
                        break;
                    }
                }
            });
        }
        let mut verifier = start();
        let stopped = take_pages(&channels, from, pages, page_size, &mut verifier)?;
        Ok::<_, Problem>((verifier, stopped))
        // Returning drops the channels: readers still running see it at their next page and stop.
    })?;
    let (after, what) = match stopped {
        None => return Ok(verifier),
        Some(Stop::Entry(seq)) => (seq - 1, seq),
        Some(Stop::After(seq)) => (seq, seq + 1),
    };
    // The readers are done with the connections: read the whole entry on the first, and let feed() name it.
    let next = store::page_after(conns[0], after, 1).map_err(|e| reading(what, e))?;
    match next.first() {
        Some(e) => {
            verifier.feed(e)?;
            Err(Problem::new(
                e.seq,
                "changed while it was being verified: verify again",
            ))
        }
        None => Err(Problem::new(
            what,
            "deleted while the log was being verified: verify again",
        )),
    }
}

#[cfg(test)]
mod tests {
    use diesel::RunQueryDsl;

    use super::*;
    use crate::audit::checkpoint::CheckpointSigner;
    use crate::audit::log::{lock_head, Actor, AuditLog, Event, Outcome};
    use crate::db::Db;
    use crate::error::AppError;

    struct Log {
        _dir: tempfile::TempDir,
        db: Db,
        audit: AuditLog,
        key: String,
    }

    fn signer() -> CheckpointSigner {
        CheckpointSigner::from_seed_hex(&"5a".repeat(32)).unwrap()
    }

    /// `n` entries on a fresh SQLite database, a checkpoint every `every`, the tables' guards dropped (as a
    /// database administrator could) so that tests can change them.
    fn log(n: i64, every: i64) -> Log {
        let dir = tempfile::tempdir().unwrap();
        let db = Db::open(dir.path().join("audit.sqlite3").to_str().unwrap(), 3).unwrap();
        let log = Log {
            _dir: dir,
            db,
            audit: AuditLog::new(signer(), every),
            key: signer().public_key_hex(),
        };
        append(&log, n);
        sql(&log, "DROP TRIGGER audit_entries_no_update");
        sql(&log, "DROP TRIGGER audit_entries_no_delete");
        log
    }

    fn append(log: &Log, n: i64) {
        let mut c = log.db.get().unwrap();
        c.transaction(|tx| {
            lock_head(tx)?;
            for i in 0..n {
                let event = Event::new("test.entry", Outcome::Success).reason(format!("entry {i}"));
                log.audit.append(tx, &Actor::cli(), &event)?;
            }
            Ok::<_, AppError>(())
        })
        .unwrap();
    }

    fn reason(log: &Log, seq: i64) -> String {
        let e = store::page_after(&mut log.db.get().unwrap(), seq - 1, 1).unwrap();
        e[0].reason.clone().unwrap()
    }

    fn sql(log: &Log, q: &str) {
        diesel::sql_query(q)
            .execute(&mut *log.db.get().unwrap())
            .unwrap();
    }

    fn run(log: &Log, scope: Scope, page: i64, readers: usize) -> Verdict {
        let mut pooled: Vec<_> = (0..readers).map(|_| log.db.get().unwrap()).collect();
        let mut conns: Vec<&mut DbConn> = pooled.iter_mut().map(|c| &mut **c).collect();
        verify_in_pages(&mut conns, &[], Some(&log.key), scope, page)
    }

    /// The verifier fed every stored entry in one pass, on one thread: what the paged readers must agree with.
    fn one_pass(log: &Log) -> Result<Summary, Problem> {
        let mut c = log.db.get().unwrap();
        let checkpoints = store::checkpoints(&mut c).unwrap();
        let mut v = ChainVerifier::from_genesis().with_checkpoints(&checkpoints, Some(&log.key));
        for e in store::page_after(&mut c, 0, 1_000_000).unwrap() {
            v.feed(&e)?;
        }
        v.finish(&[], None)
    }

    fn one_pass_reads_fail(log: &Log) -> bool {
        store::page_after(&mut log.db.get().unwrap(), 0, 1_000_000).is_err()
    }

    fn assert_paged_agree(log: &Log, first_bad: Option<i64>) {
        let want = one_pass(log);
        assert_eq!(want.as_ref().err().map(|p| p.seq), first_bad, "{want:?}");
        for page in [1, 3, 7, 64] {
            for readers in [1, 2] {
                let got = run(log, Scope::Full, page, readers);
                assert_eq!(got.start, Start::Full);
                assert_eq!(got.result, want, "page {page}, {readers} reader(s)");
            }
        }
    }

    #[test]
    fn paged_readers_agree_with_one_pass() {
        let log = log(50, 10);
        assert_paged_agree(&log, None);
        let v = run(&log, Scope::Full, 7, 2);
        let s = v.result.unwrap();
        assert_eq!((s.first_seq, s.last_seq, s.count), (1, 50, 50));
        assert_eq!(v.reached.map(|c| c.seq), Some(50));
        // A field changed; a hash changed; entries deleted, within a page and for whole pages; the tail cut.
        sql(&log, "UPDATE audit_entries SET reason = 'x' WHERE seq = 23");
        assert_paged_agree(&log, Some(23));
        sql(
            &log,
            "UPDATE audit_entries SET reason = 'entry 22' WHERE seq = 23",
        );
        assert_paged_agree(&log, None);
        sql(
            &log,
            "DELETE FROM audit_entries WHERE seq BETWEEN 17 AND 30",
        );
        assert_paged_agree(&log, Some(17));
        sql(&log, "DELETE FROM audit_entries WHERE seq > 44");
        assert_paged_agree(&log, Some(17));
        sql(&log, "DELETE FROM audit_entries WHERE seq < 31");
        assert_paged_agree(&log, Some(1));
    }

    /// Sets entry `seq`'s reason to `bytes`, stored as `stored_as` (an SQL expression of `?`, the bytes as a
    /// blob literal), and its entry_hash to the hash over what is then stored, as a forger would.
    fn store_reason_rehashed(log: &Log, seq: i64, bytes: &[u8], stored_as: &str) {
        use crate::audit::chain::{parse_hash_hex, EntryHasher, FIELD_OPTIONAL};
        let e = store::page_after(&mut log.db.get().unwrap(), seq - 1, 1)
            .unwrap()
            .remove(0);
        let mut hasher = EntryHasher::new(e.seq, e.at);
        for ((name, value), optional) in e.refs().named().into_iter().zip(FIELD_OPTIONAL) {
            let value = if name == "reason" {
                Some(bytes)
            } else {
                value.map(str::as_bytes)
            };
            hasher.field(optional, value);
        }
        let hash = hasher.finish(&parse_hash_hex(&e.prev_hash).unwrap());
        let value = stored_as.replace('?', &format!("X'{}'", hex::encode(bytes)));
        sql(
            log,
            &format!(
                "UPDATE audit_entries SET reason = {value}, entry_hash = '{}' WHERE seq = {seq}",
                hex::encode(hash)
            ),
        );
    }

    /// On SQLite the readers hash each row where SQLite holds it, as bytes; the one-pass verifier reads it into
    /// `String`s. They agree on what the log never writes: text that is not UTF-8, control characters, a
    /// value stored as a BLOB; and on what it does: non-ASCII text, an entry too long to hash on the stack.
    #[test]
    fn readers_in_place_agree_with_one_pass_on_stored_bytes() {
        // The last checkpoint is at #50: #51 can be rewritten, rehashed, without breaking a signature.
        let log = log(51, 10);
        store_reason_rehashed(&log, 51, "réseau électrique".as_bytes(), "CAST(? AS TEXT)");
        assert_paged_agree(&log, None);
        store_reason_rehashed(&log, 51, "réseau électrique".as_bytes(), "?");
        assert_paged_agree(&log, None);
        store_reason_rehashed(&log, 51, &"x".repeat(1000).into_bytes(), "CAST(? AS TEXT)");
        assert_paged_agree(&log, None);
        store_reason_rehashed(&log, 51, b"bell \x07", "CAST(? AS TEXT)");
        assert_paged_agree(&log, Some(51));
        // Text that is not UTF-8 cannot be read into a `String`: the one-pass reader stops with an error. The
        // readers name the entry.
        for stored_as in ["CAST(? AS TEXT)", "?"] {
            store_reason_rehashed(&log, 51, b"not \xff UTF-8", stored_as);
            assert!(one_pass_reads_fail(&log));
            for page in [1, 3, 7, 64] {
                for readers in [1, 2] {
                    let problem = run(&log, Scope::Full, page, readers).result.unwrap_err();
                    assert_eq!(problem.seq, 51, "{problem}");
                }
            }
            sql(
                &log,
                "UPDATE audit_entries SET reason = 'entry 50' WHERE seq = 51",
            );
        }
        store_reason_rehashed(&log, 51, &"x".repeat(1025).into_bytes(), "CAST(? AS TEXT)");
        assert_paged_agree(&log, Some(51));
        store_reason_rehashed(&log, 51, b"entry 50", "CAST(? AS TEXT)");
        assert_paged_agree(&log, None);
    }

    /// A row numbered 0 or below (hashes or not) is outside the chain that is read from #1: the verify names it,
    /// full or incremental, and the auditor's search and "who read this submission" never list it.
    #[test]
    fn an_entry_numbered_before_the_first_is_named_and_never_listed() {
        let log = log(25, 10);
        let incremental = verify_now(&log, Scope::Incremental);
        assert!(incremental.result.is_ok(), "{incremental:?}");
        assert!(verified_through(&log).is_some());
        sql(
            &log,
            "INSERT INTO audit_entries SELECT -1, at, 'officer-x', 'officer', client_addr, 'content.viewed', \
             'submission', 'sub-1', tracking_number, 'success', reason, request_id, 'zz', 'zz' \
             FROM audit_entries WHERE seq = 20",
        );
        for scope in [Scope::Full, Scope::Incremental] {
            let p = run(&log, scope, 7, 2).result.unwrap_err();
            assert_eq!(p.seq, -1, "{scope:?}: {p}");
            assert!(p.what.contains("inserted by hand"), "{p}");
        }
        let mut c = log.db.get().unwrap();
        let listed = store::search(&mut c, &store::Filter::default(), None, 100).unwrap();
        // The 25 and the verify's own entry.
        assert_eq!(listed.len(), 26);
        assert!(listed.iter().all(|e| e.seq >= 1));
        let (readers, _) = store::content_access(&mut c, "sub-1").unwrap();
        assert!(readers.is_empty(), "{readers:?}");
    }

    #[test]
    fn a_seq_far_beyond_the_end_is_named_without_reading_the_gap() {
        let log = log(20, 10);
        sql(
            &log,
            "UPDATE audit_entries SET seq = 1000000000000 WHERE seq = 20",
        );
        let v = run(&log, Scope::Full, 5, 2);
        let p = v.result.unwrap_err();
        assert_eq!(p.seq, 20, "{p}");
        assert!(p.what.contains("#1000000000000"), "{p}");
        // An entry inserted far beyond the end.
        sql(
            &log,
            "UPDATE audit_entries SET seq = 20 WHERE seq = 1000000000000",
        );
        sql(
            &log,
            "INSERT INTO audit_entries SELECT 2000000000000, at, actor_id, actor_role, client_addr, action, \
             object_kind, object_id, tracking_number, outcome, reason, request_id, prev_hash, entry_hash \
             FROM audit_entries WHERE seq = 20",
        );
        let got = run(&log, Scope::Full, 5, 2).result;
        assert!(got.is_err());
        assert_eq!(got, one_pass(&log));
    }

    /// Checkpoints deleted after a verify found them (their triggers dropped, as a database administrator could):
    /// a full verify names the checkpoint the last verify reached, and records nothing newer over it.
    #[test]
    fn a_full_verify_names_checkpoints_deleted_since_the_last_verify() {
        let log = log(30, 10);
        assert!(verify_now(&log, Scope::Full).result.is_ok());
        assert_eq!(verified_through(&log).unwrap().checkpoint.seq, 30);
        sql(&log, "DROP TRIGGER audit_checkpoints_no_delete");
        sql(&log, "DELETE FROM audit_checkpoints WHERE seq > 10");
        let v = verify_now(&log, Scope::Full);
        let p = v.result.unwrap_err();
        assert_eq!(p.seq, 30, "{p}");
        assert!(p.what.contains("no longer stored"), "{p}");
        assert_eq!(verified_through(&log).unwrap().checkpoint.seq, 30);
    }

    /// A checkpoint deleted between two others (its trigger dropped, as a database administrator could) leaves its
    /// entries signed by none: they could have been rewritten and re-chained. A verify names the first of them.
    #[test]
    fn entries_left_signed_by_no_checkpoint_fail_the_verify() {
        let latest = log(35, 10);
        let log = log(35, 10);
        assert!(run(&log, Scope::Full, 8, 2).result.is_ok());
        sql(&log, "DROP TRIGGER audit_checkpoints_no_delete");
        sql(&log, "DELETE FROM audit_checkpoints WHERE seq = 20");
        let p = run(&log, Scope::Full, 8, 2).result.unwrap_err();
        assert_eq!(p.seq, 11, "{p}");
        assert!(
            p.what
                .contains("#11..#20 are signed by no checkpoint (the next one, #21..#30"),
            "{p}"
        );
        // The latest deleted leaves a longer tail waiting, which this check does not bound.
        sql(&latest, "DROP TRIGGER audit_checkpoints_no_delete");
        sql(&latest, "DELETE FROM audit_checkpoints WHERE seq > 10");
        assert!(run(&latest, Scope::Full, 8, 2).result.is_ok());
    }

    fn verified_through(log: &Log) -> Option<VerifiedThrough> {
        let json = store::verified_through(&mut log.db.get().unwrap()).unwrap()?;
        Some(serde_json::from_str(&json).unwrap())
    }

    fn verify_now(log: &Log, scope: Scope) -> Verdict {
        log.audit
            .verify_and_record_from(&log.db, &Actor::cli(), &[], scope)
            .unwrap()
    }

    #[test]
    fn incremental_starts_after_the_last_verified_checkpoint() {
        let log = log(30, 10);
        let v = verify_now(&log, Scope::Incremental);
        assert_eq!(
            v.start,
            Start::FullInstead("no earlier verify to start from".into())
        );
        assert_eq!(verified_through(&log).unwrap().checkpoint.seq, 30);
        // #31 is that verify's own entry.
        append(&log, 12);
        let v = verify_now(&log, Scope::Incremental);
        assert_eq!(v.start, Start::After(30));
        let s = v.result.unwrap();
        assert_eq!((s.first_seq, s.last_seq, s.count), (31, 43, 13));
        assert_eq!(verified_through(&log).unwrap().checkpoint.seq, 40);

        // Before the verified checkpoint: left to --full.
        let was = reason(&log, 5);
        sql(&log, "UPDATE audit_entries SET reason = 'x' WHERE seq = 5");
        let v = verify_now(&log, Scope::Incremental);
        assert_eq!(v.start, Start::After(40));
        assert!(v.result.is_ok());
        let v = verify_now(&log, Scope::Full);
        assert_eq!(v.result.unwrap_err().seq, 5);
        assert_eq!(verified_through(&log).unwrap().checkpoint.seq, 40);
        sql(
            &log,
            &format!("UPDATE audit_entries SET reason = '{was}' WHERE seq = 5"),
        );

        // After it: found, and the kept checkpoint stays where it was.
        append(&log, 20);
        let was = reason(&log, 47);
        sql(&log, "UPDATE audit_entries SET reason = 'x' WHERE seq = 47");
        for scope in [Scope::Incremental, Scope::Full] {
            let v = verify_now(&log, scope);
            assert_eq!(v.result.unwrap_err().seq, 47);
            assert_eq!(verified_through(&log).unwrap().checkpoint.seq, 40);
        }
        sql(
            &log,
            &format!("UPDATE audit_entries SET reason = '{was}' WHERE seq = 47"),
        );
        let v = verify_now(&log, Scope::Incremental);
        assert_eq!(v.start, Start::After(40));
        assert!(v.result.is_ok(), "{:?}", v.result);
        assert_eq!(verified_through(&log).unwrap().checkpoint.seq, 60);
    }

    #[test]
    fn the_kept_record_is_checked_before_it_is_trusted() {
        let log = log(30, 10);
        verify_now(&log, Scope::Full);
        let kept = verified_through(&log).unwrap();
        assert_eq!(kept.checkpoint.seq, 30);
        append(&log, 20);
        let later = store::checkpoints(&mut log.db.get().unwrap())
            .unwrap()
            .pop()
            .unwrap();
        assert_eq!(later.seq, 50);
        let put = |v: &str| store::record_verified_through(&mut log.db.get().unwrap(), v).unwrap();

        // Moved forward onto a later checkpoint by someone without the key: not trusted, a full verify instead.
        let moved = VerifiedThrough {
            checkpoint: later,
            ..kept.clone()
        };
        put(&serde_json::to_string(&moved).unwrap());
        let v = run(&log, Scope::Incremental, 8, 2);
        assert!(
            matches!(&v.start, Start::FullInstead(why) if why.contains("does not verify")),
            "{:?}",
            v.start
        );
        assert!(v.result.is_ok());
        put("{not json");
        let v = run(&log, Scope::Incremental, 8, 2);
        assert!(matches!(&v.start, Start::FullInstead(why) if why.contains("unreadable")));
        // Under another trusted key (a kept checkpoint file's): in full.
        put(&serde_json::to_string(&kept).unwrap());
        let (other, _) = CheckpointSigner::generate();
        let mut c = log.db.get().unwrap();
        let v = verify_in_pages(
            &mut [&mut c],
            &[],
            Some(&other.public_key_hex()),
            Scope::Incremental,
            8,
        );
        assert_eq!(
            v.start,
            Start::FullInstead("the last verify trusted another key".into())
        );
        drop(c);

        // Put back: trusted again.
        let v = run(&log, Scope::Incremental, 8, 2);
        assert_eq!(v.start, Start::After(30));
        assert!(v.result.is_ok());
        // The entry it ends with, re-hashed (a rewrite re-chained from there): named.
        sql(
            &log,
            &format!(
                "UPDATE audit_entries SET entry_hash = '{}' WHERE seq = 30",
                "ab".repeat(32)
            ),
        );
        let p = run(&log, Scope::Incremental, 8, 2).result.unwrap_err();
        assert_eq!(p.seq, 30, "{p}");
        assert!(p.what.contains("earlier verify found intact"), "{p}");
        // The log cut below it.
        sql(&log, "DELETE FROM audit_entries WHERE seq >= 25");
        let p = run(&log, Scope::Incremental, 8, 2).result.unwrap_err();
        assert_eq!(p.seq, 25, "{p}");
    }

    #[test]
    fn checkpoints_around_the_start_are_checked() {
        let log = log(50, 10);
        verify_now(&log, Scope::Full);
        let mut c = log.db.get().unwrap();
        let all = store::checkpoints(&mut c).unwrap();
        // A kept checkpoint before the start is checked against the entry it ends with.
        let kept = [all[1].clone()];
        let v = verify_in_pages(&mut [&mut c], &kept, Some(&log.key), Scope::Incremental, 8);
        assert_eq!(v.start, Start::After(50));
        assert!(v.result.is_ok(), "{:?}", v.result);
        drop(c);
        sql(
            &log,
            &format!(
                "UPDATE audit_entries SET entry_hash = '{}' WHERE seq = 20",
                "cd".repeat(32)
            ),
        );
        let mut c = log.db.get().unwrap();
        let p = verify_in_pages(&mut [&mut c], &kept, Some(&log.key), Scope::Incremental, 8)
            .result
            .unwrap_err();
        assert_eq!(p.seq, 11, "{p}");
        assert!(p.what.contains("kept checkpoint #11..#20"), "{p}");

        // A checkpoint that reaches back over the start overlaps what was verified.
        let entries = store::page_after(&mut c, 45, 10).unwrap();
        let leaves: Vec<[u8; 32]> = entries
            .iter()
            .map(|e| crate::audit::parse_hash_hex(&e.entry_hash).unwrap())
            .collect();
        let across = signer().sign(
            entries.last().unwrap().seq,
            46,
            leaves.last().unwrap(),
            &crate::audit::merkle_root(&leaves),
            0,
        );
        store::insert_checkpoint(&mut c, &across).unwrap();
        drop(c);
        let p = run(&log, Scope::Incremental, 8, 1).result.unwrap_err();
        assert_eq!(p.seq, 46, "{p}");
        assert!(p.what.contains("overlaps"), "{p}");
    }

    #[test]
    fn pages_cover_the_range() {
        assert_eq!(page_count(1, 0, 10), 0);
        assert_eq!(page_count(1, 1, 10), 1);
        assert_eq!(page_count(1, 10, 10), 1);
        assert_eq!(page_count(1, 11, 10), 2);
        assert_eq!(page_count(11, 30, 10), 2);
    }
}
