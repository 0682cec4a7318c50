//! Streaming verification of the audit chain against signed checkpoints.
//!
//! Usage, bounded memory (the checkpoints are known before the entries are read):
//!
//! ```ignore
//! let mut v = ChainVerifier::from_genesis().with_checkpoints(&checkpoints, Some(&portal_key));
//! for entry in entries_in_seq_order { v.feed(&entry)?; }
//! let summary = v.finish(&[], None)?;
//! ```
//!
//! Memory is O(number of checkpoints) plus O(log N) for the Merkle tree of the current range.
//! If the checkpoints are only passed to [`ChainVerifier::finish`] (no `with_checkpoints`
//! call), the verifier keeps every entry hash (32 bytes per entry) so that it can still check
//! them.
//!
//! The stored chain is read by several threads ([`super::stored`]): they work out what can be known of each
//! entry alone ([`Prehashed`]: its hash, its fields' escaping, its Merkle leaf), and
//! [`ChainVerifier::feed_prehashed`] only links and counts; an entry with anything wrong is fed whole to
//! [`ChainVerifier::feed`], which names the problem as it always does.
//!
//! The verifier stops at the first problem and names the first bad sequence number: problems
//! within entries are found in `seq` order; a checkpoint whose chain head or Merkle root does not
//! match (a consistently rewritten range) names the first entry of its range; a checkpoint with a
//! bad signature or an untrusted key names the first entry of its range; a checkpoint beyond the
//! last entry (truncated tail) names the first missing entry.

use std::fmt;

use super::chain::{
    field_is_clean, merkle_leaf, parse_hash_hex, AuditEntry, MerkleBuilder, GENESIS_HASH,
};
use super::checkpoint::Checkpoint;

/// The first thing wrong with the log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// The first bad sequence number; 0 when the problem is not tied to an entry (for instance an
    /// export that is not a zip archive).
    pub seq: i64,
    pub what: String,
}

impl fmt::Display for Problem {
    /// `entry #<seq>: <what>` (or `audit log: <what>` when `seq` is 0), with `what` escaped so
    /// that nothing read from a hostile file can drive the auditor's terminal.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = super::chain::escape_field(&self.what);
        if self.seq > 0 {
            write!(f, "entry #{}: {}", self.seq, what)
        } else {
            write!(f, "audit log: {what}")
        }
    }
}

impl std::error::Error for Problem {}

impl Problem {
    pub(crate) fn new(seq: i64, what: impl Into<String>) -> Self {
        Problem {
            seq,
            what: what.into(),
        }
    }
}

/// What an intact log looked like.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Summary {
    pub count: u64,
    /// First entry seen (the expected first seq, or 0, when there were none).
    pub first_seq: i64,
    /// Last entry seen (`first_seq - 1`, or 0, when there were none).
    pub last_seq: i64,
    /// `entry_hash` of the last entry (the start hash when there were none).
    pub chain_head: String,
    /// Checkpoints whose chain head and Merkle root were checked against the entries.
    pub checkpoints_checked: usize,
    /// Last seq covered by a checked checkpoint: entries after it are chained but not yet
    /// vouched for by a signature (a truncation there cannot be detected).
    pub last_checkpoint_seq: Option<i64>,
}

/// What [`ChainVerifier::feed`] works out about one entry from the entry alone, without the chain before it:
/// computed by the readers of a verify, in parallel, so that the verifier's own thread only links and counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prehashed {
    pub seq: i64,
    /// The stored `prev_hash` and `entry_hash`, parsed (`None` when not 64 lowercase hex characters).
    prev: Option<[u8; 32]>,
    stored: Option<[u8; 32]>,
    /// The stored `entry_hash` is the hash of the contents over the stored `prev_hash`, and every field is
    /// clean: nothing in the entry itself is wrong.
    sound: bool,
    /// RFC 6962 leaf hash of `stored`.
    leaf: [u8; 32],
}

impl Prehashed {
    /// From what a reader worked out itself: the stored hashes, parsed, and whether the entry is sound.
    pub(crate) fn from_parts(
        seq: i64,
        prev: Option<[u8; 32]>,
        stored: Option<[u8; 32]>,
        sound: bool,
    ) -> Prehashed {
        Prehashed {
            seq,
            prev,
            stored,
            sound,
            leaf: stored.map(|h| merkle_leaf(&h)).unwrap_or_default(),
        }
    }

    pub fn of(e: &AuditEntry) -> Prehashed {
        let prev = parse_hash_hex(&e.prev_hash);
        let stored = parse_hash_hex(&e.entry_hash);
        let sound = match (prev, stored) {
            (Some(prev), Some(stored)) => {
                e.computed_hash(&prev) == stored
                    && e.refs()
                        .named()
                        .iter()
                        .all(|(_, v)| v.is_none_or(field_is_clean))
            }
            _ => false,
        };
        Prehashed::from_parts(e.seq, prev, stored, sound)
    }
}

impl fmt::Display for Summary {
    /// `N entries (#a..#b), chain head H, K checkpoint(s) checked`: what the CLI prints, the auditor's page shows and
    /// the `audit.verify` entry records.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} entries (#{}..#{}), chain head {}, {} checkpoint(s) checked",
            self.count, self.first_seq, self.last_seq, self.chain_head, self.checkpoints_checked
        )
    }
}

struct Range {
    from: i64,
    to: i64,
    /// `(chain_head, merkle_root)` of every checkpoint with exactly this range.
    expect: Vec<([u8; 32], [u8; 32])>,
}

/// Checks checkpoint ranges as the entries stream past.
#[derive(Default)]
struct Tracker {
    /// Checkpoints whose signature verified: `(from, to, head, root)`, unsorted until sealed.
    valid: Vec<(i64, i64, [u8; 32], [u8; 32])>,
    /// Disjoint, sorted by `from`.
    ranges: Vec<Range>,
    next: usize,
    builder: Option<MerkleBuilder>,
    /// Problems found before streaming (bad signatures, overlaps), reported when the stream
    /// reaches their seq; sorted by seq once sealed.
    pending: Vec<Problem>,
    pending_next: usize,
    sealed: bool,
    checked: usize,
    last_checked: Option<i64>,
}

impl Tracker {
    fn add(&mut self, checkpoints: &[Checkpoint], trusted_key: Option<&str>) {
        debug_assert!(!self.sealed);
        for cp in checkpoints {
            let checked = cp.verify_signature(trusted_key).map(|()| {
                // verify_signature checked both hex fields.
                (
                    cp.chain_head_bytes().unwrap_or_default(),
                    cp.merkle_root_bytes().unwrap_or_default(),
                )
            });
            match checked {
                Ok((head, root)) => self.valid.push((cp.from_seq, cp.seq, head, root)),
                Err(e) => self.pending.push(Problem::new(
                    cp.from_seq,
                    format!("checkpoint #{}..#{}: {e}", cp.from_seq, cp.seq),
                )),
            }
        }
    }

    fn seal(&mut self) {
        if self.sealed {
            return;
        }
        self.sealed = true;
        let mut valid = std::mem::take(&mut self.valid);
        valid.sort_by_key(|&(from, to, ..)| (from, to));
        for (from, to, head, root) in valid {
            match self.ranges.last_mut() {
                Some(r) if r.from == from && r.to == to => r.expect.push((head, root)),
                Some(r) if from <= r.to => self.pending.push(Problem::new(
                    from,
                    format!(
                        "checkpoint #{from}..#{to} overlaps checkpoint #{}..#{}",
                        r.from, r.to
                    ),
                )),
                _ => self.ranges.push(Range {
                    from,
                    to,
                    expect: vec![(head, root)],
                }),
            }
        }
        self.pending.sort_by_key(|p| p.seq);
    }

    /// `leaf`: the entry's Merkle leaf hash when it was computed already (by a parallel reader).
    fn on_entry(
        &mut self,
        seq: i64,
        hash: &[u8; 32],
        leaf: Option<[u8; 32]>,
        first: bool,
    ) -> Result<(), Problem> {
        let mut found: Option<Problem> = None;
        if let Some(p) = self.pending.get(self.pending_next) {
            if p.seq <= seq {
                found = Some(p.clone());
            }
        }
        if first {
            if let Some(r) = self.ranges.get(self.next) {
                if r.from < seq && found.as_ref().is_none_or(|p| r.from < p.seq) {
                    found = Some(Problem::new(
                        r.from,
                        format!(
                            "log starts at #{seq} but checkpoint #{}..#{} covers earlier entries",
                            r.from, r.to
                        ),
                    ));
                }
            }
        }
        if let Some(p) = found {
            return Err(p);
        }
        let Some(r) = self.ranges.get(self.next) else {
            return Ok(());
        };
        if r.from == seq {
            self.builder = Some(MerkleBuilder::new());
        }
        if let Some(b) = self.builder.as_mut() {
            match leaf {
                Some(leaf) => b.push_leaf(leaf),
                None => b.push(hash),
            }
        }
        if r.to == seq {
            let root = self.builder.take().map(|b| b.root()).unwrap_or_default();
            for (head, want_root) in &r.expect {
                if head != hash {
                    return Err(Problem::new(
                        r.from,
                        format!(
                            "chain head #{} differs from signed checkpoint #{}..#{}: \
                             entries in this range were rewritten",
                            r.to, r.from, r.to
                        ),
                    ));
                }
                if *want_root != root {
                    return Err(Problem::new(
                        r.from,
                        format!(
                            "Merkle root differs from signed checkpoint #{}..#{}: \
                             entries in this range were rewritten",
                            r.from, r.to
                        ),
                    ));
                }
            }
            self.checked += r.expect.len();
            self.last_checked = Some(r.to);
            self.next += 1;
        }
        Ok(())
    }

    fn finish(&self, last: Option<i64>) -> Result<(), Problem> {
        let mut found = self.pending.get(self.pending_next).cloned();
        if let Some(r) = self.ranges.get(self.next) {
            let p = match last {
                None => Problem::new(
                    r.from,
                    format!(
                        "log is empty but checkpoint #{}..#{} covers entries",
                        r.from, r.to
                    ),
                ),
                Some(last) => Problem::new(
                    last + 1,
                    format!("log ends at #{last} but checkpoint covers #{}", r.to),
                ),
            };
            if found.as_ref().is_none_or(|f| p.seq < f.seq) {
                found = Some(p);
            }
        }
        match found {
            Some(p) => Err(p),
            None => Ok(()),
        }
    }
}

enum Mode {
    /// No checkpoints registered up front: keep every entry hash for `finish`.
    Retain(Vec<[u8; 32]>),
    /// Checkpoints registered up front: check them while streaming.
    Stream {
        tracker: Box<Tracker>,
        registered: Vec<Checkpoint>,
    },
}

/// Streaming verifier of the hash chain (see the module documentation).
pub struct ChainVerifier {
    expected_seq: Option<i64>,
    start_hash: [u8; 32],
    last_hash: [u8; 32],
    prev2_hash: Option<[u8; 32]>,
    first_seq: Option<i64>,
    last_seq: Option<i64>,
    count: u64,
    failed: Option<Problem>,
    mode: Mode,
}

impl ChainVerifier {
    /// `start = Some((first_seq, prev_hash))`: the first entry must be `first_seq` and link to
    /// `prev_hash` (use [`ChainVerifier::from_genesis`] for a whole log).
    /// `start = None`: the first entry is taken as the anchor (its `prev_hash` as given), except
    /// that entry #1 must still link to the genesis hash; checkpoints still bind the entries.
    pub fn new(start: Option<(i64, [u8; 32])>) -> Self {
        let (expected_seq, hash) = match start {
            Some((s, h)) => (Some(s), h),
            None => (None, GENESIS_HASH),
        };
        ChainVerifier {
            expected_seq,
            start_hash: hash,
            last_hash: hash,
            prev2_hash: None,
            first_seq: None,
            last_seq: None,
            count: 0,
            failed: None,
            mode: Mode::Retain(Vec::new()),
        }
    }

    /// A verifier for a whole log: the first entry must be #1, linked to [`GENESIS_HASH`].
    pub fn from_genesis() -> Self {
        Self::new(Some((1, GENESIS_HASH)))
    }

    /// Registers checkpoints before the first [`feed`](Self::feed) so they are checked while
    /// streaming, in bounded memory. Each one's signature is checked now (under
    /// `trusted_key` when given: then a checkpoint signed by any other key is a problem); a
    /// problem is reported when the stream reaches the checkpoint's range, so the first bad seq
    /// still wins. Any order is accepted; identical ranges are allowed, overlapping ones are a
    /// problem. May be called more than once (for instance with a different trusted key) and with
    /// an empty slice (no checkpoints, and no per-entry memory).
    pub fn with_checkpoints(
        mut self,
        checkpoints: &[Checkpoint],
        trusted_key: Option<&str>,
    ) -> Self {
        if self.count > 0 {
            self.failed.get_or_insert(Problem::new(
                0,
                "with_checkpoints() must be called before the first feed()",
            ));
            return self;
        }
        if let Mode::Retain(_) = self.mode {
            self.mode = Mode::Stream {
                tracker: Box::default(),
                registered: Vec::new(),
            };
        }
        if let Mode::Stream {
            tracker,
            registered,
        } = &mut self.mode
        {
            tracker.add(checkpoints, trusted_key);
            registered.extend_from_slice(checkpoints);
        }
        self
    }

    /// Checks the next entry (entries must come in `seq` order). After the first problem every
    /// call returns that problem again.
    pub fn feed(&mut self, entry: &AuditEntry) -> Result<(), Problem> {
        if let Some(p) = &self.failed {
            return Err(p.clone());
        }
        let r = self.feed_inner(entry);
        if let Err(p) = &r {
            self.failed = Some(p.clone());
        }
        r
    }

    /// Checks the next entry from what a reader worked out about it ([`Prehashed::of`]), with the same
    /// verdict as [`feed`](Self::feed). `Ok(false)`: not checked, because something is wrong with it that
    /// only `feed` with the whole entry can name; call `feed` with it (it returns that problem).
    pub fn feed_prehashed(&mut self, p: &Prehashed) -> Result<bool, Problem> {
        if let Some(problem) = &self.failed {
            return Err(problem.clone());
        }
        let (Some(expected), Some(prev), Some(stored)) = (self.expected_seq, p.prev, p.stored)
        else {
            return Ok(false);
        };
        if !p.sound || p.seq != expected || prev != self.last_hash {
            return Ok(false);
        }
        let first = self.count == 0;
        let r = self.accept(p.seq, stored, Some(p.leaf), first);
        if let Err(problem) = &r {
            self.failed = Some(problem.clone());
        }
        r.map(|()| true)
    }

    /// Takes an entry whose own checks passed: checkpoint ranges, then the chain's state.
    fn accept(
        &mut self,
        seq: i64,
        stored_hash: [u8; 32],
        leaf: Option<[u8; 32]>,
        first: bool,
    ) -> Result<(), Problem> {
        match &mut self.mode {
            Mode::Retain(hashes) => hashes.push(stored_hash),
            Mode::Stream { tracker, .. } => {
                tracker.seal();
                tracker.on_entry(seq, &stored_hash, leaf, first)?;
            }
        }
        // The last possible number has no successor: a chain that gets there (only a crafted one can) ends there.
        let next = seq
            .checked_add(1)
            .ok_or_else(|| Problem::new(seq, "sequence number out of range"))?;
        self.prev2_hash = Some(self.last_hash);
        self.last_hash = stored_hash;
        self.expected_seq = Some(next);
        self.first_seq.get_or_insert(seq);
        self.last_seq = Some(seq);
        self.count += 1;
        Ok(())
    }

    fn feed_inner(&mut self, e: &AuditEntry) -> Result<(), Problem> {
        let stored_prev = parse_hash_hex(&e.prev_hash);
        let first = self.count == 0;
        let expected = match self.expected_seq {
            Some(x) => x,
            None => {
                // Anchor on the first entry.
                if e.seq < 1 {
                    return Err(Problem::new(
                        e.seq,
                        format!("sequence numbers start at #1, found #{}", e.seq),
                    ));
                }
                if e.seq > 1 {
                    self.last_hash = stored_prev.ok_or_else(|| {
                        Problem::new(e.seq, "prev_hash is not 64 lowercase hex characters")
                    })?;
                }
                e.seq
            }
        };
        if e.seq != expected {
            return Err(self.diagnose_seq(expected, e, stored_prev));
        }
        let Some(prev) = stored_prev else {
            return Err(Problem::new(
                e.seq,
                "prev_hash is not 64 lowercase hex characters",
            ));
        };
        if prev != self.last_hash {
            if Some(prev) == self.prev2_hash {
                return Err(Problem::new(
                    e.seq - 1,
                    format!(
                        "does not belong to the chain: #{} links to the entry before it \
                         (inserted entry)",
                        e.seq
                    ),
                ));
            }
            // If this entry is consistent with the predecessor it names, it is the previous
            // entry that was changed (and re-hashed) or replaced.
            let self_consistent =
                parse_hash_hex(&e.entry_hash).is_some_and(|h| e.computed_hash(&prev) == h);
            if !first && self_consistent {
                return Err(Problem::new(
                    e.seq - 1,
                    format!(
                        "entry_hash differs from the prev_hash recorded in #{}: \
                         this entry was changed and re-hashed, or replaced",
                        e.seq
                    ),
                ));
            }
            let what = if first && e.seq == 1 {
                "prev_hash of the first entry is not the genesis hash".to_owned()
            } else if first {
                "prev_hash does not match the expected predecessor hash".to_owned()
            } else {
                format!("prev_hash does not match the entry_hash of #{}", e.seq - 1)
            };
            return Err(Problem::new(e.seq, what));
        }
        let Some(stored_hash) = parse_hash_hex(&e.entry_hash) else {
            return Err(Problem::new(
                e.seq,
                "entry_hash is not 64 lowercase hex characters",
            ));
        };
        if e.computed_hash(&prev) != stored_hash {
            return Err(Problem::new(
                e.seq,
                "entry_hash does not match the entry's contents (a field was changed)",
            ));
        }
        for (name, value) in e.refs().named() {
            if let Some(v) = value {
                if !field_is_clean(v) {
                    return Err(Problem::new(
                        e.seq,
                        format!(
                            "{name} holds an unescaped control or bidi character or is too long"
                        ),
                    ));
                }
            }
        }
        self.accept(e.seq, stored_hash, None, first)
    }

    /// Names the first bad seq when the entry's seq is not the expected one, using the links to
    /// tell a changed seq, an inserted entry and missing entries apart.
    fn diagnose_seq(
        &self,
        expected: i64,
        e: &AuditEntry,
        stored_prev: Option<[u8; 32]>,
    ) -> Problem {
        if stored_prev.is_some() && stored_prev == Some(self.last_hash) && self.count > 0 {
            Problem::new(
                expected,
                format!(
                    "seq is #{} but the entry links to #{}: its sequence number was changed",
                    e.seq,
                    expected - 1
                ),
            )
        } else if stored_prev.is_some() && stored_prev == self.prev2_hash {
            Problem::new(
                expected - 1,
                format!(
                    "does not belong to the chain: the next entry (#{}) links to the entry \
                     before it (inserted entry)",
                    e.seq
                ),
            )
        } else if e.seq > expected {
            Problem::new(
                expected,
                format!(
                    "missing: expected #{expected}, found #{} (deleted or reordered entries)",
                    e.seq
                ),
            )
        } else {
            Problem::new(
                expected,
                format!(
                    "expected #{expected}, found #{} again (duplicate or reordered entry)",
                    e.seq
                ),
            )
        }
    }

    /// Ends verification. `checkpoints` (with their `trusted_key`) are checked too: when
    /// checkpoints were registered with [`with_checkpoints`](Self::with_checkpoints), each one
    /// given here must be one of those (pass `&[]`); otherwise they are checked against the
    /// entry hashes kept during streaming. Also reports a checkpoint that covers entries
    /// beyond the last one (truncated tail).
    pub fn finish(
        mut self,
        checkpoints: &[Checkpoint],
        trusted_key: Option<&str>,
    ) -> Result<Summary, Problem> {
        if let Some(p) = self.failed.take() {
            return Err(p);
        }
        let (checked, last_checked) = match &mut self.mode {
            Mode::Retain(hashes) => {
                let mut tracker = Tracker::default();
                tracker.add(checkpoints, trusted_key);
                tracker.seal();
                let first = self.first_seq.unwrap_or(0);
                for (i, h) in hashes.iter().enumerate() {
                    tracker.on_entry(first + i as i64, h, None, i == 0)?;
                }
                tracker.finish(self.last_seq)?;
                (tracker.checked, tracker.last_checked)
            }
            Mode::Stream {
                tracker,
                registered,
            } => {
                if let Some(cp) = checkpoints.iter().find(|cp| !registered.contains(cp)) {
                    return Err(Problem::new(
                        cp.from_seq,
                        format!(
                            "checkpoint #{}..#{} was given only to finish(); register checkpoints \
                             with with_checkpoints() before feeding",
                            cp.from_seq, cp.seq
                        ),
                    ));
                }
                tracker.seal();
                tracker.finish(self.last_seq)?;
                (tracker.checked, tracker.last_checked)
            }
        };
        let start_seq = self.expected_seq.unwrap_or(0);
        Ok(Summary {
            count: self.count,
            first_seq: self.first_seq.unwrap_or(start_seq),
            last_seq: self.last_seq.unwrap_or(start_seq.saturating_sub(1).max(0)),
            chain_head: hex::encode(if self.count == 0 {
                self.start_hash
            } else {
                self.last_hash
            }),
            checkpoints_checked: checked,
            last_checkpoint_seq: last_checked,
        })
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::audit::chain::{
        chain_next, parse_hash_hex, MerkleBuilder, NewEntryFields, GENESIS_HASH,
    };
    use crate::audit::checkpoint::CheckpointSigner;

    /// A chain that starts at the last possible sequence number (only a crafted one can) is refused, not wrapped
    /// around to a negative number (release builds) or a panic (debug builds).
    #[test]
    fn an_entry_at_the_last_possible_sequence_number_is_a_problem_not_an_overflow() {
        let mut e = chain_next(None, 1, 1_700_000_000, fields(1)).unwrap();
        e.seq = i64::MAX;
        e.entry_hash = hex::encode(e.computed_hash(&GENESIS_HASH));
        let mut v = ChainVerifier::new(Some((i64::MAX, GENESIS_HASH)));
        let problem = v.feed(&e).unwrap_err();
        assert_eq!(problem.seq, i64::MAX);
        assert!(problem.what.contains("out of range"), "{}", problem.what);
    }

    pub(crate) fn fields(i: i64) -> NewEntryFields {
        NewEntryFields {
            actor_id: Some(format!("acct-{}", i % 7)),
            actor_role: Some(["submitter", "officer", "auditor"][(i % 3) as usize].into()),
            client_addr: Some(format!("198.51.100.{}", i % 250)),
            action: ["login", "submission.view", "grant.create"][(i % 3) as usize].into(),
            object_kind: Some("submission".into()),
            object_id: Some(format!("obj-{i}")),
            tracking_number: Some(format!("PCII-2024-{i:06}")),
            outcome: if i % 5 == 0 { "denied" } else { "allowed" }.into(),
            reason: Some(format!("reason {i}")),
            request_id: Some(format!("req-{i:08x}")),
        }
    }

    /// `n` chained entries.
    pub(crate) fn build_chain(n: i64) -> Vec<AuditEntry> {
        let mut out: Vec<AuditEntry> = Vec::new();
        for i in 1..=n {
            let e = chain_next(out.last(), i, 1_700_000_000 + i, fields(i)).unwrap();
            out.push(e);
        }
        out
    }

    /// Checkpoints every `every` entries (and one for the tail).
    pub(crate) fn checkpoints_for(
        entries: &[AuditEntry],
        every: usize,
        signer: &CheckpointSigner,
    ) -> Vec<Checkpoint> {
        let mut cps: Vec<Checkpoint> = Vec::new();
        for chunk in entries.chunks(every) {
            let cp = sign_entries(signer, cps.last(), chunk, 1_800_000_000 + chunk[0].seq).unwrap();
            cps.push(cp);
        }
        cps
    }

    /// Test checkpoints: verifies `entries` (the entries since `after`, in order, non-empty) and signs a checkpoint
    /// over them. The first entry must be `after.seq + 1` (or #1 when `after` is `None`) and
    /// link to `after.chain_head` (or to the genesis hash), so a checkpoint never vouches for a
    /// chain that is already broken.
    pub(crate) fn sign_entries(
        signer: &CheckpointSigner,
        after: Option<&Checkpoint>,
        entries: &[AuditEntry],
        at: i64,
    ) -> Result<Checkpoint, Problem> {
        let (first, prev) = match after {
            None => (1, GENESIS_HASH),
            Some(cp) => (
                cp.seq + 1,
                cp.chain_head_bytes().ok_or_else(|| Problem {
                    seq: cp.seq,
                    what: "previous checkpoint's chain_head is not 64 lowercase hex".into(),
                })?,
            ),
        };
        let mut verifier = ChainVerifier::new(Some((first, prev))).with_checkpoints(&[], None);
        let mut merkle = MerkleBuilder::new();
        for e in entries {
            verifier.feed(e)?;
            // feed() checked the hex form.
            merkle.push(&parse_hash_hex(&e.entry_hash).unwrap_or_default());
        }
        let summary = verifier.finish(&[], None)?;
        if summary.count == 0 {
            return Err(Problem {
                seq: first,
                what: "no entries to checkpoint".into(),
            });
        }
        let head = parse_hash_hex(&summary.chain_head).unwrap_or_default();
        Ok(signer.sign(summary.last_seq, first, &head, &merkle.root(), at))
    }

    pub(crate) fn signer() -> CheckpointSigner {
        CheckpointSigner::from_seed_hex(&"5a".repeat(32)).unwrap()
    }

    /// Verifies in streaming mode and, as a cross-check, in retain mode; both must agree.
    pub(crate) fn verify(
        entries: &[AuditEntry],
        cps: &[Checkpoint],
        trusted: Option<&str>,
    ) -> Result<Summary, Problem> {
        let mut v = ChainVerifier::from_genesis().with_checkpoints(cps, trusted);
        let streamed = entries
            .iter()
            .try_for_each(|e| v.feed(e))
            .and_then(|()| v.finish(&[], None));
        let mut r = ChainVerifier::from_genesis();
        let retained = entries
            .iter()
            .try_for_each(|e| r.feed(e))
            .and_then(|()| r.finish(cps, trusted));
        assert_eq!(
            streamed, retained,
            "streaming and retaining verifiers disagree"
        );
        // As the stored chain is verified: prehashed by the readers, the whole entry only for a problem, which
        // feed() must then name.
        let mut p = ChainVerifier::from_genesis().with_checkpoints(cps, trusted);
        let prehashed = entries
            .iter()
            .try_for_each(|e| {
                if p.feed_prehashed(&Prehashed::of(e))? {
                    return Ok(());
                }
                let named = p.feed(e);
                assert!(
                    named.is_err(),
                    "#{}: refused prehashed, passed whole",
                    e.seq
                );
                named
            })
            .and_then(|()| p.finish(&[], None));
        assert_eq!(streamed, prehashed, "prehashed and whole entries disagree");
        streamed
    }

    fn first_bad(r: Result<Summary, Problem>) -> i64 {
        match r {
            Ok(s) => panic!("tampering not detected: {s:?}"),
            Err(p) => {
                println!("{p}");
                p.seq
            }
        }
    }

    /// Re-chains entries from `from` (index) on, as someone with write access to the table
    /// would, so every link and hash is consistent again.
    fn rechain(entries: &mut [AuditEntry], from: usize) {
        for i in from..entries.len() {
            let prev = if i == 0 {
                GENESIS_HASH
            } else {
                parse_hash_hex(&entries[i - 1].entry_hash).unwrap()
            };
            let e = &mut entries[i];
            e.prev_hash = hex::encode(prev);
            e.entry_hash = hex::encode(e.computed_hash(&prev));
        }
    }

    fn setup() -> (Vec<AuditEntry>, Vec<Checkpoint>, String) {
        let s = signer();
        let entries = build_chain(50);
        let cps = checkpoints_for(&entries, 10, &s);
        (entries, cps, s.public_key_hex())
    }

    #[test]
    fn intact_chain_verifies() {
        let (entries, cps, key) = setup();
        let s = verify(&entries, &cps, Some(&key)).unwrap();
        assert_eq!(s.count, 50);
        assert_eq!(s.first_seq, 1);
        assert_eq!(s.last_seq, 50);
        assert_eq!(s.chain_head, entries[49].entry_hash);
        assert_eq!(s.checkpoints_checked, 5);
        assert_eq!(s.last_checkpoint_seq, Some(50));
        // No checkpoints at all: still a valid chain.
        let s = verify(&entries, &[], None).unwrap();
        assert_eq!(s.checkpoints_checked, 0);
        // Empty log.
        let s = verify(&[], &[], None).unwrap();
        assert_eq!((s.count, s.first_seq, s.last_seq), (0, 1, 0));
        assert_eq!(s.chain_head, hex::encode(GENESIS_HASH));
    }

    /// Changes one byte of `s` (an ASCII character) to another ASCII character.
    fn flip(s: &mut String, at: usize) {
        let mut b = std::mem::take(s).into_bytes();
        let i = at % b.len();
        b[i] = if b[i] == b'0' { b'1' } else { b'0' };
        *s = String::from_utf8(b).unwrap();
    }

    #[test]
    fn tamper_one_byte_of_each_field() {
        let (entries, cps, key) = setup();
        let k = 23usize; // entry #24
        let want = entries[k].seq;
        type Mutate = fn(&mut AuditEntry);
        let cases: Vec<(&str, Mutate)> = vec![
            ("seq +1", |e| e.seq ^= 1 << 3),
            ("seq -1", |e| e.seq -= 1),
            ("at", |e| e.at ^= 1 << 40),
            ("actor_id", |e| flip(e.actor_id.as_mut().unwrap(), 2)),
            ("actor_role", |e| flip(e.actor_role.as_mut().unwrap(), 0)),
            ("client_addr", |e| flip(e.client_addr.as_mut().unwrap(), 5)),
            ("action", |e| flip(&mut e.action, 1)),
            ("object_kind", |e| flip(e.object_kind.as_mut().unwrap(), 3)),
            ("object_id", |e| flip(e.object_id.as_mut().unwrap(), 4)),
            ("tracking_number", |e| {
                flip(e.tracking_number.as_mut().unwrap(), 9)
            }),
            ("outcome", |e| flip(&mut e.outcome, 0)),
            ("reason", |e| flip(e.reason.as_mut().unwrap(), 7)),
            ("request_id", |e| flip(e.request_id.as_mut().unwrap(), 6)),
            ("prev_hash", |e| flip(&mut e.prev_hash, 17)),
            ("prev_hash case", |e| {
                e.prev_hash = e.prev_hash.to_uppercase()
            }),
            ("entry_hash", |e| flip(&mut e.entry_hash, 40)),
            ("entry_hash case", |e| {
                e.entry_hash = e.entry_hash.to_uppercase()
            }),
            ("reason removed", |e| e.reason = None),
            ("raw newline", |e| e.action.push('\n')),
        ];
        for (name, mutate) in cases {
            let mut t = entries.clone();
            mutate(&mut t[k]);
            assert_ne!(t[k], entries[k], "{name}: no change made");
            assert_eq!(first_bad(verify(&t, &cps, Some(&key))), want, "{name}");
            // Without any checkpoint, the chain alone catches it too.
            assert_eq!(
                first_bad(verify(&t, &[], None)),
                want,
                "{name} (no checkpoints)"
            );
        }
    }

    #[test]
    fn tamper_field_changed_and_hash_recomputed() {
        // The entry's own hash is fixed up; the next link breaks, and the next entry is
        // self-consistent, so the changed one is named.
        let (mut t, cps, key) = setup();
        t[23].reason = Some("nothing to see".into());
        let prev = parse_hash_hex(&t[23].prev_hash).unwrap();
        t[23].entry_hash = hex::encode(t[23].computed_hash(&prev));
        assert_eq!(first_bad(verify(&t, &cps, Some(&key))), 24);
        // A raw control character written straight into the table, hash fixed up and the rest
        // re-chained: caught by the escaping check.
        let (mut t, _, _) = setup();
        t[23].actor_id = Some("evil\nFAKE".into());
        rechain(&mut t, 23);
        let p = verify(&t, &[], None).unwrap_err();
        assert_eq!(p.seq, 24);
        assert!(p.what.contains("actor_id"), "{p}");
    }

    #[test]
    fn tamper_delete_an_entry() {
        let (entries, cps, key) = setup();
        let mut t = entries.clone();
        t.remove(30); // #31
        assert_eq!(first_bad(verify(&t, &cps, Some(&key))), 31);
        // Deleted and the following ones renumbered.
        let mut t = entries.clone();
        t.remove(30);
        for e in &mut t[30..] {
            e.seq -= 1;
        }
        assert_eq!(first_bad(verify(&t, &cps, Some(&key))), 31);
        // The very first entry.
        let mut t = entries.clone();
        t.remove(0);
        assert_eq!(first_bad(verify(&t, &cps, Some(&key))), 1);
    }

    #[test]
    fn tamper_insert_an_entry() {
        let (entries, cps, key) = setup();
        // A forged entry correctly chained onto #16, taking #17; the rest renumbered.
        let forged = chain_next(
            Some(&entries[15]),
            17,
            entries[15].at,
            NewEntryFields {
                action: "login".into(),
                outcome: "allowed".into(),
                ..Default::default()
            },
        )
        .unwrap();
        let mut t = entries.clone();
        t.insert(16, forged.clone());
        for e in &mut t[17..] {
            e.seq += 1;
        }
        assert_eq!(first_bad(verify(&t, &cps, Some(&key))), 17);
        // Same forged entry, nothing renumbered (duplicate #17).
        let mut t = entries.clone();
        t.insert(16, forged);
        assert_eq!(first_bad(verify(&t, &cps, Some(&key))), 17);
        // A crude insertion whose hash does not chain.
        let mut t = entries.clone();
        let mut crude = entries[16].clone();
        crude.reason = Some("forged".into());
        t.insert(16, crude);
        assert_eq!(first_bad(verify(&t, &cps, Some(&key))), 17);
        // An old entry replayed at the end.
        let mut t = entries.clone();
        t.push(entries[3].clone());
        assert_eq!(first_bad(verify(&t, &cps, Some(&key))), 51);
    }

    #[test]
    fn tamper_swap_two_entries() {
        let (entries, cps, key) = setup();
        let mut t = entries.clone();
        t.swap(11, 12); // #12 and #13
        assert_eq!(first_bad(verify(&t, &cps, Some(&key))), 12);
        // Contents swapped, seq column left in order.
        let mut t = entries.clone();
        t.swap(11, 12);
        t[11].seq = 12;
        t[12].seq = 13;
        assert_eq!(first_bad(verify(&t, &cps, Some(&key))), 12);
        // Two distant entries.
        let mut t = entries.clone();
        t.swap(4, 40);
        assert_eq!(first_bad(verify(&t, &cps, Some(&key))), 5);
    }

    #[test]
    fn tamper_truncate_the_tail() {
        let (entries, cps, key) = setup();
        let t = &entries[..45];
        let p = verify(t, &cps, Some(&key)).unwrap_err();
        assert_eq!(p.seq, 46);
        assert_eq!(p.what, "log ends at #45 but checkpoint covers #50");
        assert_eq!(
            p.to_string(),
            "entry #46: log ends at #45 but checkpoint covers #50"
        );
        // Cut on a checkpoint boundary.
        assert_eq!(first_bad(verify(&entries[..40], &cps, Some(&key))), 41);
        // Everything deleted.
        assert_eq!(first_bad(verify(&[], &cps, Some(&key))), 1);
        // Without the checkpoints the truncation is invisible: that is what they are for.
        verify(t, &[], None).unwrap();
    }

    #[test]
    fn tamper_rewrite_the_whole_chain_consistently() {
        let (entries, cps, key) = setup();
        // An administrator edits #17 and re-chains everything after it, and signs a fresh set
        // of checkpoints with a key of their own.
        let mut t = entries.clone();
        t[16].outcome = "denied".into();
        rechain(&mut t, 0);
        let (attacker, _) = CheckpointSigner::generate();
        let forged_cps = checkpoints_for(&t, 10, &attacker);
        // Without a trusted key the forgery is self-consistent and passes.
        let s = verify(&t, &forged_cps, None).expect("uncaught without a trusted key");
        assert_eq!(s.checkpoints_checked, 5);
        // The auditor kept checkpoint #11..#20 (signed with the portal's key) outside the
        // portal: trusting its key catches the rewrite in that checkpoint's range...
        let kept = cps[1].clone();
        let p = verify(&t, std::slice::from_ref(&kept), Some(&kept.public_key)).unwrap_err();
        assert_eq!(p.seq, 11, "{p}");
        assert!(p.what.contains("rewritten"), "{p}");
        // ...and with the forged checkpoints present, their foreign key is reported first.
        let mut all = forged_cps.clone();
        all.push(kept.clone());
        let p = verify(&t, &all, Some(&kept.public_key)).unwrap_err();
        assert_eq!(p.seq, 1, "{p}");
        assert!(p.what.contains("not by the trusted key"), "{p}");
        // The portal's own (untampered) checkpoints catch it as well.
        assert_eq!(first_bad(verify(&t, &cps, Some(&key))), 11);
    }

    #[test]
    fn bad_checkpoint_signature() {
        let (entries, mut cps, key) = setup();
        flip(&mut cps[2].signature, 10);
        let p = verify(&entries, &cps, Some(&key)).unwrap_err();
        assert_eq!(p.seq, 21);
        assert!(p.what.contains("signature does not verify"), "{p}");
        // A field changed without re-signing.
        let (entries, mut cps, key) = setup();
        cps[3].merkle_root = hex::encode([7u8; 32]);
        assert_eq!(first_bad(verify(&entries, &cps, Some(&key))), 31);
        // An entry problem before the bad checkpoint wins.
        let mut t = entries.clone();
        t[4].action = "x".into();
        assert_eq!(first_bad(verify(&t, &cps, Some(&key))), 5);
        // A forged checkpoint past the end.
        let (entries, mut cps, key) = setup();
        let mut extra = cps[4].clone();
        extra.from_seq = 51;
        extra.seq = 60;
        cps.push(extra);
        assert_eq!(first_bad(verify(&entries, &cps, Some(&key))), 51);
    }

    #[test]
    fn overlapping_and_unsorted_checkpoints() {
        let (entries, mut cps, key) = setup();
        cps.reverse();
        verify(&entries, &cps, Some(&key)).unwrap();
        let s = signer();
        let mut merkle = MerkleBuilder::new();
        for e in &entries[4..15] {
            merkle.push(&parse_hash_hex(&e.entry_hash).unwrap());
        }
        let overlap = s.sign(
            15,
            5,
            &parse_hash_hex(&entries[14].entry_hash).unwrap(),
            &merkle.root(),
            0,
        );
        cps.push(overlap);
        assert_eq!(first_bad(verify(&entries, &cps, Some(&key))), 5);
    }

    #[test]
    fn partial_start_and_anchor() {
        let (entries, cps, key) = setup();
        // Verify #21.. starting from the head of checkpoint #20.
        let head = parse_hash_hex(&cps[1].chain_head).unwrap();
        let mut v = ChainVerifier::new(Some((21, head))).with_checkpoints(&cps[2..], Some(&key));
        for e in &entries[20..] {
            v.feed(e).unwrap();
        }
        let s = v.finish(&[], None).unwrap();
        assert_eq!((s.first_seq, s.last_seq, s.count), (21, 50, 30));
        // Anchor on whatever comes first; checkpoints before it are a problem.
        let mut v = ChainVerifier::new(None).with_checkpoints(&cps, Some(&key));
        let p = entries[20..]
            .iter()
            .try_for_each(|e| v.feed(e))
            .unwrap_err();
        assert_eq!(p.seq, 1);
        assert!(p.what.contains("log starts at #21"), "{p}");
        // Entry #1 must link to genesis even when anchoring.
        let mut t = entries.clone();
        t[0].prev_hash = hex::encode([1u8; 32]);
        t[0].entry_hash = hex::encode(t[0].computed_hash(&[1u8; 32]));
        let mut v = ChainVerifier::new(None);
        assert_eq!(v.feed(&t[0]).unwrap_err().seq, 1);
    }

    #[test]
    fn errors_are_sticky_and_misuse_fails_closed() {
        let (entries, cps, key) = setup();
        let mut v = ChainVerifier::from_genesis().with_checkpoints(&cps, Some(&key));
        v.feed(&entries[0]).unwrap();
        let p = v.feed(&entries[2]).unwrap_err();
        assert_eq!(v.feed(&entries[1]).unwrap_err(), p);
        assert_eq!(v.finish(&[], None).unwrap_err(), p);
        // Checkpoints passed only to finish() of a streaming verifier are refused.
        let mut v = ChainVerifier::from_genesis().with_checkpoints(&[], None);
        entries.iter().for_each(|e| v.feed(e).unwrap());
        assert_eq!(v.finish(&cps, Some(&key)).unwrap_err().seq, 1);
    }

    #[test]
    fn problem_display_escapes() {
        let p = Problem::new(3, "bad\nline\u{1b}[0m");
        assert_eq!(p.to_string(), "entry #3: bad\\nline\\u{1b}[0m");
        assert_eq!(Problem::new(0, "x").to_string(), "audit log: x");
    }
}
