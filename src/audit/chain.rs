//! Audit entries, their hash chain and the Merkle tree over a checkpoint range.
//!
//! # Canonical entry encoding, version 1
//!
//! `entry_hash = SHA-256(E)` where `E` is the concatenation, in this order, of:
//!
//! | # | field             | encoding                                                   |
//! |---|-------------------|------------------------------------------------------------|
//! | 1 | version tag       | the 13 ASCII bytes `pcii-audit-v1` (no length, no NUL)     |
//! | 2 | `seq`             | 8 bytes, signed 64-bit two's complement, big-endian        |
//! | 3 | `at`              | 8 bytes, signed 64-bit two's complement, big-endian (Unix seconds UTC) |
//! | 4 | `actor_id`        | OPT                                                        |
//! | 5 | `actor_role`      | OPT                                                        |
//! | 6 | `client_addr`     | OPT                                                        |
//! | 7 | `action`          | STR                                                        |
//! | 8 | `object_kind`     | OPT                                                        |
//! | 9 | `object_id`       | OPT                                                        |
//! |10 | `tracking_number` | OPT                                                        |
//! |11 | `outcome`         | STR                                                        |
//! |12 | `reason`          | OPT                                                        |
//! |13 | `request_id`      | OPT                                                        |
//! |14 | `prev_hash`       | the 32 raw bytes (not hex) of the previous entry's `entry_hash`; 32 zero bytes for entry #1 |
//!
//! * `STR(s)` = length of the UTF-8 bytes of `s` as an unsigned 64-bit big-endian integer
//!   (8 bytes), followed by those bytes. No normalisation is applied: the bytes are exactly the
//!   stored (already escaped, see [`escape_field`]) value.
//! * `OPT(None)` = the single byte `0x00`; `OPT(Some(s))` = the byte `0x01` followed by `STR(s)`.
//!   So an absent value and an empty string hash differently.
//!
//! Every variable-length item is length-prefixed and the field order is fixed, so two different
//! entries never share an encoding. The hex strings stored in `prev_hash` / `entry_hash` are
//! lowercase, 64 characters; any other spelling is rejected by the verifier.
//!
//! # Merkle tree
//!
//! As RFC 6962 §2.1, over the raw 32-byte `entry_hash` values of a checkpoint range in `seq`
//! order: `MTH({}) = SHA-256()`, `leaf = SHA-256(0x00 || entry_hash)`,
//! `node = SHA-256(0x01 || left || right)`, with the left subtree holding the largest power of
//! two strictly smaller than the number of leaves.

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

/// Version of the canonical entry encoding (see the module documentation).
pub const CHAIN_VERSION: u32 = 1;
/// `prev_hash` of entry #1.
pub const GENESIS_HASH: [u8; 32] = [0; 32];
/// Domain-separation tag that starts the canonical encoding of version 1.
pub const ENTRY_HASH_TAG: &[u8] = b"pcii-audit-v1";
/// Longest stored field value, in characters, marker included.
pub const MAX_FIELD_CHARS: usize = 1024;
/// Appended to a value cut at [`MAX_FIELD_CHARS`].
pub const TRUNCATION_MARKER: &str = "…[truncated]";

/// One audit entry as stored (DB row and export line). Times are Unix seconds UTC.
///
/// Never put content, passwords, session ids or tokens in any field.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuditEntry {
    pub seq: i64,
    pub at: i64,
    pub actor_id: Option<String>,
    pub actor_role: Option<String>,
    pub client_addr: Option<String>,
    pub action: String,
    pub object_kind: Option<String>,
    pub object_id: Option<String>,
    pub tracking_number: Option<String>,
    pub outcome: String,
    pub reason: Option<String>,
    pub request_id: Option<String>,
    /// 64 lowercase hex characters.
    pub prev_hash: String,
    /// 64 lowercase hex characters.
    pub entry_hash: String,
}

/// The fields of an entry before it is chained (`seq`, `at`, `prev_hash` and `entry_hash` are
/// supplied by [`chain_next`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct NewEntryFields {
    pub actor_id: Option<String>,
    pub actor_role: Option<String>,
    pub client_addr: Option<String>,
    pub action: String,
    pub object_kind: Option<String>,
    pub object_id: Option<String>,
    pub tracking_number: Option<String>,
    pub outcome: String,
    pub reason: Option<String>,
    pub request_id: Option<String>,
}

/// Why [`chain_next`] refused to build an entry.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ChainError {
    #[error("sequence number {got} does not continue the chain (expected {expected})")]
    BadSeq { expected: i64, got: i64 },
    #[error("the previous entry's entry_hash is not 64 lowercase hex characters")]
    BadPrevHash,
}

/// Borrowed view of the hashed string fields, shared by [`NewEntryFields`] and [`AuditEntry`].
pub(crate) struct FieldRefs<'a> {
    pub actor_id: Option<&'a str>,
    pub actor_role: Option<&'a str>,
    pub client_addr: Option<&'a str>,
    pub action: &'a str,
    pub object_kind: Option<&'a str>,
    pub object_id: Option<&'a str>,
    pub tracking_number: Option<&'a str>,
    pub outcome: &'a str,
    pub reason: Option<&'a str>,
    pub request_id: Option<&'a str>,
}

impl FieldRefs<'_> {
    /// `(name, value)` of every string field, in encoding order.
    pub(crate) fn named(&self) -> [(&'static str, Option<&str>); 10] {
        [
            ("actor_id", self.actor_id),
            ("actor_role", self.actor_role),
            ("client_addr", self.client_addr),
            ("action", Some(self.action)),
            ("object_kind", self.object_kind),
            ("object_id", self.object_id),
            ("tracking_number", self.tracking_number),
            ("outcome", Some(self.outcome)),
            ("reason", self.reason),
            ("request_id", self.request_id),
        ]
    }
}

impl NewEntryFields {
    fn refs(&self) -> FieldRefs<'_> {
        FieldRefs {
            actor_id: self.actor_id.as_deref(),
            actor_role: self.actor_role.as_deref(),
            client_addr: self.client_addr.as_deref(),
            action: &self.action,
            object_kind: self.object_kind.as_deref(),
            object_id: self.object_id.as_deref(),
            tracking_number: self.tracking_number.as_deref(),
            outcome: &self.outcome,
            reason: self.reason.as_deref(),
            request_id: self.request_id.as_deref(),
        }
    }

    /// Every string field passed through [`escape_field`].
    pub fn escaped(&self) -> NewEntryFields {
        let opt = |v: &Option<String>| v.as_deref().map(escape_field);
        NewEntryFields {
            actor_id: opt(&self.actor_id),
            actor_role: opt(&self.actor_role),
            client_addr: opt(&self.client_addr),
            action: escape_field(&self.action),
            object_kind: opt(&self.object_kind),
            object_id: opt(&self.object_id),
            tracking_number: opt(&self.tracking_number),
            outcome: escape_field(&self.outcome),
            reason: opt(&self.reason),
            request_id: opt(&self.request_id),
        }
    }
}

impl AuditEntry {
    pub(crate) fn refs(&self) -> FieldRefs<'_> {
        FieldRefs {
            actor_id: self.actor_id.as_deref(),
            actor_role: self.actor_role.as_deref(),
            client_addr: self.client_addr.as_deref(),
            action: &self.action,
            object_kind: self.object_kind.as_deref(),
            object_id: self.object_id.as_deref(),
            tracking_number: self.tracking_number.as_deref(),
            outcome: &self.outcome,
            reason: self.reason.as_deref(),
            request_id: self.request_id.as_deref(),
        }
    }

    /// The hash this entry should carry given `prev_hash` (the stored values are hashed as they
    /// are; nothing is re-escaped).
    pub fn computed_hash(&self, prev_hash: &[u8; 32]) -> [u8; 32] {
        hash_refs(self.seq, self.at, &self.refs(), prev_hash)
    }

    /// The canonical version-1 encoding of this entry with `prev_hash` (the SHA-256 input).
    pub fn canonical_encoding(&self, prev_hash: &[u8; 32]) -> Vec<u8> {
        let mut out = Vec::with_capacity(256);
        encode(
            &mut |b: &[u8]| out.extend_from_slice(b),
            self.seq,
            self.at,
            &self.refs(),
            prev_hash,
        );
        out
    }
}

/// Whether `c` must be escaped: control characters (C0, DEL, C1), bidi embeddings, overrides,
/// isolates and marks, and the Unicode line / paragraph separators.
fn needs_escape(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}'
                | '\u{200E}'
                | '\u{200F}'
                | '\u{2028}'
                | '\u{2029}'
                | '\u{202A}'..='\u{202E}'
                | '\u{2066}'..='\u{2069}'
        )
}

/// Escapes a value for the audit log (called on every string field before hashing).
///
/// * `\` becomes `\\`; LF, CR and TAB become `\n`, `\r`, `\t`;
/// * every other control character (U+0000–U+001F, U+007F, U+0080–U+009F), the bidi characters
///   U+061C, U+200E, U+200F, U+202A–U+202E, U+2066–U+2069 and the separators U+2028, U+2029
///   become `\u{XXXX}` (lowercase hex, no padding, e.g. ESC → `\u{1b}`, RLO → `\u{202e}`);
/// * a result longer than [`MAX_FIELD_CHARS`] characters is cut on an escape boundary and ends
///   with the visible marker [`TRUNCATION_MARKER`], staying within the limit.
///
/// The output never holds a character that needs escaping, so escaping it again only doubles the
/// backslashes: harmless, and still free of control characters.
pub fn escape_field(s: &str) -> String {
    // Fast path: short, printable ASCII without backslash.
    if s.len() <= MAX_FIELD_CHARS && s.bytes().all(|b| (0x20..0x7f).contains(&b) && b != b'\\') {
        return s.to_owned();
    }
    let marker_chars = TRUNCATION_MARKER.chars().count();
    let keep_limit = MAX_FIELD_CHARS - marker_chars;
    let mut out = String::with_capacity(s.len().min(4 * MAX_FIELD_CHARS));
    let mut chars = 0usize;
    // Byte length of `out` at the last piece boundary that fits in `keep_limit` characters.
    let mut cut = 0usize;
    let mut piece = String::with_capacity(12);
    for c in s.chars() {
        piece.clear();
        match c {
            '\\' => piece.push_str("\\\\"),
            '\n' => piece.push_str("\\n"),
            '\r' => piece.push_str("\\r"),
            '\t' => piece.push_str("\\t"),
            c if needs_escape(c) => {
                use std::fmt::Write as _;
                // Writing to a String cannot fail.
                let _ = write!(piece, "\\u{{{:x}}}", u32::from(c));
            }
            c => piece.push(c),
        }
        let piece_chars = piece.chars().count();
        if chars + piece_chars > MAX_FIELD_CHARS {
            out.truncate(cut);
            out.push_str(TRUNCATION_MARKER);
            return out;
        }
        out.push_str(&piece);
        chars += piece_chars;
        if chars <= keep_limit {
            cut = out.len();
        }
    }
    out
}

/// Whether a stored value could have come out of [`escape_field`]: no character that needs
/// escaping and no more than [`MAX_FIELD_CHARS`] characters.
pub(crate) fn field_is_clean(s: &str) -> bool {
    if s.len() > MAX_FIELD_CHARS && s.chars().count() > MAX_FIELD_CHARS {
        return false;
    }
    if all_printable_ascii(s.as_bytes()) {
        return true;
    }
    !s.chars().any(needs_escape)
}

/// Whether every byte is printable ASCII (0x20..0x7f). It runs on every field of every entry a verify reads,
/// so it looks at fixed-size blocks (which compile to vector instructions) and never a byte at a time past the
/// first seven: the last block overlaps the one before it.
#[inline]
fn all_printable_ascii(b: &[u8]) -> bool {
    #[inline(always)]
    fn outside<const N: usize>(block: &[u8; N]) -> u8 {
        block.iter().fold(0u8, |acc, &b| {
            acc | u8::from(b < 0x20) | u8::from(b >= 0x7f)
        })
    }
    let n = b.len();
    let outside = if n >= 16 {
        let mut blocks = b.chunks_exact(16);
        let mut found = 0u8;
        for block in &mut blocks {
            found |= block.try_into().map_or(1, outside::<16>);
        }
        if !blocks.remainder().is_empty() {
            found |= b[n - 16..].try_into().map_or(1, outside::<16>);
        }
        found
    } else if n >= 8 {
        b[..8].try_into().map_or(1, outside::<8>) | b[n - 8..].try_into().map_or(1, outside::<8>)
    } else {
        b.iter().fold(0u8, |acc, &b| {
            acc | u8::from(b < 0x20) | u8::from(b >= 0x7f)
        })
    };
    outside == 0
}

/// Whether stored bytes are a clean field ([`field_is_clean`]); bytes that are not UTF-8 are not.
pub(crate) fn field_bytes_clean(b: &[u8]) -> bool {
    // Printable ASCII is UTF-8 and one character per byte.
    if all_printable_ascii(b) {
        return b.len() <= MAX_FIELD_CHARS;
    }
    std::str::from_utf8(b).is_ok_and(field_is_clean)
}

/// Whether each string field may be absent, in the order of the encoding ([`FieldRefs::named`]).
pub(crate) const FIELD_OPTIONAL: [bool; 10] = [
    true,  // actor_id
    true,  // actor_role
    true,  // client_addr
    false, // action
    true,  // object_kind
    true,  // object_id
    true,  // tracking_number
    false, // outcome
    true,  // reason
    true,  // request_id
];

/// Writes the canonical version-1 encoding (see the module documentation) into `sink`.
fn encode<S: FnMut(&[u8])>(
    sink: &mut S,
    seq: i64,
    at: i64,
    f: &FieldRefs<'_>,
    prev_hash: &[u8; 32],
) {
    put_header(sink, seq, at);
    for ((_, value), optional) in f.named().into_iter().zip(FIELD_OPTIONAL) {
        put_field(sink, optional, value.map(str::as_bytes));
    }
    sink(prev_hash);
}

/// What comes before the string fields.
fn put_header<S: FnMut(&[u8])>(sink: &mut S, seq: i64, at: i64) {
    sink(ENTRY_HASH_TAG);
    sink(&seq.to_be_bytes());
    sink(&at.to_be_bytes());
}

/// One string field: an optional one as a presence byte then, when present, its length and bytes; a
/// required one as its length and bytes.
fn put_field<S: FnMut(&[u8])>(sink: &mut S, optional: bool, value: Option<&[u8]>) {
    match (optional, value) {
        (true, None) => sink(&[0x00]),
        (true, Some(v)) => {
            sink(&[0x01]);
            sink(&(v.len() as u64).to_be_bytes());
            sink(v);
        }
        (false, v) => {
            let v = v.unwrap_or_default();
            sink(&(v.len() as u64).to_be_bytes());
            sink(v);
        }
    }
}

/// Entries whose encoding fits are encoded on the stack and hashed in one call: most are a few hundred
/// bytes, and some thirty small updates cost more than the copy (this runs once per entry when verifying).
const ENCODE_ON_STACK: usize = 1024;

/// SHA-256 of an entry's canonical encoding, written a field at a time: for [`hash_refs`], and for a reader
/// that holds each stored field only for a moment (a verify hashing rows where SQLite keeps them). The
/// string fields must come in the encoding's order, each with its [`FIELD_OPTIONAL`].
pub(crate) struct EntryHasher {
    buf: [u8; ENCODE_ON_STACK],
    len: usize,
    /// Where the buffer goes once an entry outgrows it.
    spill: Option<Sha256>,
}

impl EntryHasher {
    #[inline]
    pub(crate) fn new(seq: i64, at: i64) -> EntryHasher {
        let mut h = EntryHasher {
            buf: [0; ENCODE_ON_STACK],
            len: 0,
            spill: None,
        };
        put_header(&mut |b: &[u8]| h.write(b), seq, at);
        h
    }

    #[inline]
    pub(crate) fn field(&mut self, optional: bool, value: Option<&[u8]>) {
        put_field(&mut |b: &[u8]| self.write(b), optional, value);
    }

    #[inline]
    pub(crate) fn finish(mut self, prev_hash: &[u8; 32]) -> [u8; 32] {
        self.write(prev_hash);
        match self.spill {
            None => Sha256::digest(&self.buf[..self.len]).into(),
            Some(mut h) => {
                h.update(&self.buf[..self.len]);
                h.finalize().into()
            }
        }
    }

    #[inline]
    fn write(&mut self, b: &[u8]) {
        if let Some(to) = self.buf.get_mut(self.len..self.len + b.len()) {
            to.copy_from_slice(b);
            self.len += b.len();
        } else {
            let h = self.spill.get_or_insert_with(Sha256::new);
            h.update(&self.buf[..self.len]);
            h.update(b);
            self.len = 0;
        }
    }
}

pub(crate) fn hash_refs(seq: i64, at: i64, f: &FieldRefs<'_>, prev_hash: &[u8; 32]) -> [u8; 32] {
    let mut h = EntryHasher::new(seq, at);
    for ((_, value), optional) in f.named().into_iter().zip(FIELD_OPTIONAL) {
        h.field(optional, value.map(str::as_bytes));
    }
    h.finish(prev_hash)
}

/// SHA-256 over the canonical encoding of an entry (module documentation). The field values are
/// hashed exactly as given: pass values that were already escaped (as [`chain_next`] does).
pub fn compute_entry_hash(
    seq: i64,
    at: i64,
    fields: &NewEntryFields,
    prev_hash: &[u8; 32],
) -> [u8; 32] {
    hash_refs(seq, at, &fields.refs(), prev_hash)
}

/// Builds the next entry: escapes every string field, links it to `prev` (or to
/// [`GENESIS_HASH`] when `prev` is `None`) and computes its hash. `seq` must be `prev.seq + 1`,
/// or 1 when there is no previous entry.
///
/// Appends must be serialised (one writer, in a transaction that reads the current head), or
/// two entries will claim the same predecessor.
pub fn chain_next(
    prev: Option<&AuditEntry>,
    seq: i64,
    at: i64,
    fields: NewEntryFields,
) -> Result<AuditEntry, ChainError> {
    let (expected, prev_hash) = match prev {
        None => (1, GENESIS_HASH),
        Some(p) => (
            p.seq.checked_add(1).ok_or(ChainError::BadSeq {
                expected: i64::MAX,
                got: seq,
            })?,
            parse_hash_hex(&p.entry_hash).ok_or(ChainError::BadPrevHash)?,
        ),
    };
    if seq != expected {
        return Err(ChainError::BadSeq { expected, got: seq });
    }
    let f = fields.escaped();
    let entry_hash = compute_entry_hash(seq, at, &f, &prev_hash);
    Ok(AuditEntry {
        seq,
        at,
        actor_id: f.actor_id,
        actor_role: f.actor_role,
        client_addr: f.client_addr,
        action: f.action,
        object_kind: f.object_kind,
        object_id: f.object_id,
        tracking_number: f.tracking_number,
        outcome: f.outcome,
        reason: f.reason,
        request_id: f.request_id,
        prev_hash: hex::encode(prev_hash),
        entry_hash: hex::encode(entry_hash),
    })
}

/// Parses a hash written as exactly 64 lowercase hex characters (the only accepted spelling).
pub fn parse_hash_hex(s: &str) -> Option<[u8; 32]> {
    parse_hash_hex_bytes(s.as_bytes())
}

/// [`parse_hash_hex`] of stored bytes.
pub(crate) fn parse_hash_hex_bytes(b: &[u8]) -> Option<[u8; 32]> {
    parse_lower_hex_bytes::<32>(b)
}

/// A lowercase hex digit's value, and 1 when `c` is not one (arithmetic, no table: the loops below then
/// compile to vector instructions).
#[inline(always)]
fn lower_hex_digit(c: u8) -> (u8, u8) {
    let digit = c.wrapping_sub(b'0');
    let letter = c.wrapping_sub(b'a');
    let value = if digit < 10 {
        digit
    } else {
        letter.wrapping_add(10)
    };
    (value, u8::from(digit >= 10 && letter >= 6))
}

/// Parses exactly `2 * N` lowercase hex characters (this runs twice per entry when verifying).
pub(crate) fn parse_lower_hex<const N: usize>(s: &str) -> Option<[u8; N]> {
    parse_lower_hex_bytes(s.as_bytes())
}

fn parse_lower_hex_bytes<const N: usize>(b: &[u8]) -> Option<[u8; N]> {
    if b.len() != 2 * N {
        return None;
    }
    let mut out = [0u8; N];
    let mut bad = 0u8;
    // 32 characters at a time: each to its value first, then the pairs joined (a table lookup per character,
    // as before, took three times as long).
    for (bytes, chars) in out.chunks_mut(16).zip(b.chunks(32)) {
        let mut values = [0u8; 32];
        for (v, &c) in values.iter_mut().zip(chars) {
            let (value, not_hex) = lower_hex_digit(c);
            *v = value;
            bad |= not_hex;
        }
        for (byte, pair) in bytes.iter_mut().zip(values.chunks_exact(2)) {
            *byte = (pair[0] << 4) | pair[1];
        }
    }
    (bad == 0).then_some(out)
}

/// RFC 6962 leaf hash of an entry hash: `SHA-256(0x00 || entry_hash)`.
pub fn merkle_leaf(entry_hash: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([0x00]);
    h.update(entry_hash);
    h.finalize().into()
}

/// RFC 6962 interior node: `SHA-256(0x01 || left || right)`.
pub fn merkle_node(left: &[u8; 32], right: &[u8; 32]) -> [u8; 32] {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(left);
    h.update(right);
    h.finalize().into()
}

/// Computes the RFC 6962 Merkle root of a sequence of entry hashes in one pass, holding only
/// O(log n) subtree roots.
#[derive(Clone, Debug, Default)]
pub struct MerkleBuilder {
    /// Roots of perfect subtrees, left to right, with strictly decreasing sizes.
    stack: Vec<(u64, [u8; 32])>,
    len: u64,
}

impl MerkleBuilder {
    pub fn new() -> Self {
        Self::default()
    }

    /// Appends the next entry hash (the leaf hash is applied here).
    pub fn push(&mut self, entry_hash: &[u8; 32]) {
        self.push_leaf(merkle_leaf(entry_hash));
    }

    /// Appends the next leaf, already hashed with [`merkle_leaf`] (by the parallel readers of a verify).
    pub fn push_leaf(&mut self, leaf: [u8; 32]) {
        let mut node = leaf;
        let mut size = 1u64;
        while let Some(&(top_size, top)) = self.stack.last() {
            if top_size != size {
                break;
            }
            self.stack.pop();
            node = merkle_node(&top, &node);
            size *= 2;
        }
        self.stack.push((size, node));
        self.len += 1;
    }

    /// Number of leaves pushed.
    pub fn len(&self) -> u64 {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The root over every leaf pushed so far (`SHA-256("")` when empty).
    pub fn root(&self) -> [u8; 32] {
        let mut it = self.stack.iter().rev();
        let Some(&(_, mut acc)) = it.next() else {
            return Sha256::digest(b"").into();
        };
        for (_, left) in it {
            acc = merkle_node(left, &acc);
        }
        acc
    }
}

/// RFC 6962 Merkle root over `leaves` (entry hashes, in `seq` order).
pub fn merkle_root(leaves: &[[u8; 32]]) -> [u8; 32] {
    let mut b = MerkleBuilder::new();
    for l in leaves {
        b.push(l);
    }
    b.root()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample_fields() -> NewEntryFields {
        NewEntryFields {
            actor_id: Some("acct-42".into()),
            actor_role: Some("officer".into()),
            client_addr: Some("192.0.2.7".into()),
            action: "submission.view".into(),
            object_kind: Some("submission".into()),
            object_id: Some("7f3c".into()),
            tracking_number: Some("PCII-2024-000123".into()),
            outcome: "allowed".into(),
            reason: None,
            request_id: Some("req-0001".into()),
        }
    }

    #[test]
    fn hash_is_deterministic_and_matches_the_fixed_vector() {
        let e = chain_next(None, 1, 1_700_000_000, sample_fields()).unwrap();
        let again = chain_next(None, 1, 1_700_000_000, sample_fields()).unwrap();
        assert_eq!(e, again);
        assert_eq!(e.prev_hash, "0".repeat(64));
        // Fixed test vector: if this changes, the encoding changed and CHAIN_VERSION must too.
        assert_eq!(
            e.entry_hash,
            "e7d59c9c99e91941c5d2f91eb8008bcffbdf41ba02197d4567b59e12cac5cb4a"
        );
        let e2 = chain_next(
            Some(&e),
            2,
            1_700_000_001,
            NewEntryFields {
                action: "login".into(),
                outcome: "denied".into(),
                reason: Some("bad password".into()),
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(e2.prev_hash, e.entry_hash);
        assert_eq!(
            e2.entry_hash,
            "751182a143082cb76713a70f31c4cb65738800777f8441ee4ea16fe24994d75b"
        );
    }

    #[test]
    fn canonical_encoding_layout() {
        let e = chain_next(
            None,
            1,
            2,
            NewEntryFields {
                action: "a".into(),
                outcome: "ok".into(),
                reason: Some(String::new()),
                ..Default::default()
            },
        )
        .unwrap();
        let enc = e.canonical_encoding(&GENESIS_HASH);
        let mut want = b"pcii-audit-v1".to_vec();
        want.extend_from_slice(&1i64.to_be_bytes());
        want.extend_from_slice(&2i64.to_be_bytes());
        want.extend_from_slice(&[0, 0, 0]); // actor_id, actor_role, client_addr absent
        want.extend_from_slice(&1u64.to_be_bytes());
        want.extend_from_slice(b"a");
        want.extend_from_slice(&[0, 0, 0]); // object_kind, object_id, tracking_number absent
        want.extend_from_slice(&2u64.to_be_bytes());
        want.extend_from_slice(b"ok");
        want.push(1); // reason present, empty
        want.extend_from_slice(&0u64.to_be_bytes());
        want.push(0); // request_id absent
        want.extend_from_slice(&GENESIS_HASH);
        assert_eq!(enc, want);
        assert_eq!(
            hex::encode(Sha256::digest(&enc)),
            e.entry_hash,
            "entry_hash is SHA-256 of the canonical encoding"
        );
    }

    #[test]
    fn long_entries_hash_as_short_ones_do() {
        // Around the size hashed from the stack in one call, and far beyond it.
        for len in (500..800).chain([MAX_FIELD_CHARS]) {
            let f = NewEntryFields {
                reason: Some("r".repeat(len)),
                object_id: Some("é".repeat(len / 8)),
                ..sample_fields()
            };
            let e = chain_next(None, 1, 7, f).unwrap();
            assert_eq!(
                hex::encode(Sha256::digest(e.canonical_encoding(&GENESIS_HASH))),
                e.entry_hash,
                "reason of {len} characters"
            );
        }
    }

    #[test]
    fn none_and_empty_hash_differently() {
        let a = NewEntryFields {
            reason: None,
            ..sample_fields()
        };
        let b = NewEntryFields {
            reason: Some(String::new()),
            ..sample_fields()
        };
        assert_ne!(
            compute_entry_hash(1, 1, &a, &GENESIS_HASH),
            compute_entry_hash(1, 1, &b, &GENESIS_HASH)
        );
        // Moving bytes between adjacent fields changes the hash (length prefixes).
        let c = NewEntryFields {
            object_kind: Some("ab".into()),
            object_id: Some("c".into()),
            ..sample_fields()
        };
        let d = NewEntryFields {
            object_kind: Some("a".into()),
            object_id: Some("bc".into()),
            ..sample_fields()
        };
        assert_ne!(
            compute_entry_hash(1, 1, &c, &GENESIS_HASH),
            compute_entry_hash(1, 1, &d, &GENESIS_HASH)
        );
    }

    #[test]
    fn chain_next_checks_seq_and_prev() {
        assert_eq!(
            chain_next(None, 2, 0, sample_fields()).unwrap_err(),
            ChainError::BadSeq {
                expected: 1,
                got: 2
            }
        );
        let e = chain_next(None, 1, 0, sample_fields()).unwrap();
        assert!(matches!(
            chain_next(Some(&e), 3, 0, sample_fields()),
            Err(ChainError::BadSeq { expected: 2, .. })
        ));
        let mut bad = e.clone();
        bad.entry_hash = bad.entry_hash.to_uppercase();
        assert_eq!(
            chain_next(Some(&bad), 2, 0, sample_fields()).unwrap_err(),
            ChainError::BadPrevHash
        );
    }

    #[test]
    fn chain_next_escapes_every_field() {
        let f = NewEntryFields {
            actor_id: Some("a\nb".into()),
            action: "x\ry".into(),
            outcome: "o\u{1b}[31m".into(),
            reason: Some("evil\u{202e}txt".into()),
            ..Default::default()
        };
        let e = chain_next(None, 1, 0, f).unwrap();
        assert_eq!(e.actor_id.as_deref(), Some("a\\nb"));
        assert_eq!(e.action, "x\\ry");
        assert_eq!(e.outcome, "o\\u{1b}[31m");
        assert_eq!(e.reason.as_deref(), Some("evil\\u{202e}txt"));
    }

    #[test]
    fn escape_field_cases() {
        assert_eq!(escape_field("plain value"), "plain value");
        assert_eq!(escape_field("a\nb"), "a\\nb");
        assert_eq!(escape_field("a\r\nFAKE ENTRY"), "a\\r\\nFAKE ENTRY");
        assert_eq!(escape_field("tab\there"), "tab\\there");
        assert_eq!(escape_field("\u{1b}[2J"), "\\u{1b}[2J");
        assert_eq!(escape_field("\0"), "\\u{0}");
        assert_eq!(escape_field("\u{7f}\u{85}\u{9b}"), "\\u{7f}\\u{85}\\u{9b}");
        assert_eq!(escape_field("file\u{202e}fdp.exe"), "file\\u{202e}fdp.exe");
        assert_eq!(
            escape_field("\u{2066}\u{2069}\u{202a}\u{2028}"),
            "\\u{2066}\\u{2069}\\u{202a}\\u{2028}"
        );
        assert_eq!(escape_field("back\\slash"), "back\\\\slash");
        // A forged escape in the input cannot pass for a real one.
        assert_eq!(escape_field("\\n"), "\\\\n");
        assert_eq!(escape_field("héllo ✓"), "héllo ✓");
        assert_eq!(escape_field(""), "");
    }

    #[test]
    fn escape_field_truncates_visibly() {
        let long = "x".repeat(5000);
        let e = escape_field(&long);
        assert_eq!(e.chars().count(), MAX_FIELD_CHARS);
        assert!(e.ends_with(TRUNCATION_MARKER));
        assert!(e.starts_with("xxxx"));
        // Exactly at the limit: untouched.
        let exact = "y".repeat(MAX_FIELD_CHARS);
        assert_eq!(escape_field(&exact), exact);
        // Multi-byte characters count as characters, not bytes.
        let wide = "é".repeat(MAX_FIELD_CHARS);
        assert_eq!(escape_field(&wide), wide);
        // Never cuts inside an escape sequence.
        let esc = "\u{1b}".repeat(400);
        let e = escape_field(&esc);
        assert!(e.chars().count() <= MAX_FIELD_CHARS);
        let body = e.strip_suffix(TRUNCATION_MARKER).unwrap();
        assert_eq!(body.len() % "\\u{1b}".len(), 0);
        assert!(body.split("\\u{1b}").all(|p| p.is_empty()));
    }

    #[test]
    fn escape_field_output_is_clean_and_reescaping_is_harmless() {
        let nasty = "a\\b\n\r\t\u{1b}\u{202e}\u{85}\u{2029}z".repeat(200);
        let once = escape_field(&nasty);
        assert!(field_is_clean(&once));
        assert!(!once.chars().any(|c| c.is_control()));
        let twice = escape_field(&once);
        assert!(field_is_clean(&twice));
        assert!(twice.chars().count() <= MAX_FIELD_CHARS);
        // Without backslashes, escaping is idempotent.
        let s = escape_field("line1\u{7}");
        assert_eq!(escape_field(&escape_field("plain")), "plain");
        assert_ne!(s, escape_field(&s)); // only the backslash doubles
        assert_eq!(escape_field(&s), s.replace('\\', "\\\\"));
        assert!(!field_is_clean("raw\nnewline"));
        assert!(!field_is_clean(&"x".repeat(MAX_FIELD_CHARS + 1)));
    }

    /// RFC 6962 section 2.1's MTH, written out independently of the code under test (its own leaf and node
    /// hashes, with the 0x00 / 0x01 domain-separation prefixes).
    fn reference_root(leaves: &[[u8; 32]]) -> [u8; 32] {
        match leaves.len() {
            0 => Sha256::digest(b"").into(),
            1 => Sha256::digest([&[0x00u8][..], &leaves[0][..]].concat()).into(),
            n => {
                let mut k = 1;
                while k * 2 < n {
                    k *= 2;
                }
                let (left, right) = (reference_root(&leaves[..k]), reference_root(&leaves[k..]));
                Sha256::digest([&[0x01u8][..], &left[..], &right[..]].concat()).into()
            }
        }
    }

    #[test]
    fn merkle_matches_rfc6962_definition() {
        let leaves: Vec<[u8; 32]> = (0u8..40).map(|i| Sha256::digest([i]).into()).collect();
        for n in 0..=leaves.len() {
            assert_eq!(
                merkle_root(&leaves[..n]),
                reference_root(&leaves[..n]),
                "n={n}"
            );
        }
        assert_eq!(
            hex::encode(merkle_root(&[])),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        // Roots computed outside Rust, with the leaves above (SHA-256 of the single byte i):
        //   H = lambda b: hashlib.sha256(b).digest(); L = [H(bytes([i])) for i in range(40)]
        //   mth(d) = H(b"") if not d else H(b"\x00" + d[0]) if len(d) == 1
        //            else H(b"\x01" + mth(d[:k]) + mth(d[k:]))  (k the largest power of two < len(d))
        for (n, root) in [
            (
                1,
                "d9de27625445003d8a9739a851e3ff8d41c0683630b4d63a88327a6aaa37c409",
            ),
            (
                2,
                "604d540f09268b91672ab011394d5266ccd7d4484d0d109411a55848126a1b2c",
            ),
            (
                7,
                "bee2275db16667589a4515f63e0d053a2fa602c1d9f9703e98920a5bdad59baf",
            ),
            (
                40,
                "91868eb8851700818ff881d9e30dbbc011df50def2274a68ce70aca790eea038",
            ),
        ] {
            assert_eq!(hex::encode(merkle_root(&leaves[..n])), root, "n={n}");
        }
    }

    #[test]
    fn hex_parsing_is_strict() {
        let h = [0xabu8; 32];
        assert_eq!(parse_hash_hex(&hex::encode(h)), Some(h));
        assert_eq!(parse_hash_hex(&hex::encode(h).to_uppercase()), None);
        assert_eq!(parse_hash_hex("ab"), None);
        assert_eq!(parse_hash_hex(&"g".repeat(64)), None);
    }

    #[test]
    fn hex_parsing_accepts_lowercase_hex_only_at_every_position() {
        let bytes: Vec<u8> = (0..=255u8).collect();
        let good = hex::encode(&bytes[..32]);
        for at in 0..64 {
            for c in 0..=255u8 {
                let mut s = good.clone().into_bytes();
                s[at] = c;
                let want = matches!(c, b'0'..=b'9' | b'a'..=b'f')
                    .then(|| <[u8; 32]>::try_from(hex::decode(&s).unwrap()).unwrap());
                assert_eq!(parse_hash_hex_bytes(&s), want, "byte {c:#04x} at {at}");
            }
        }
        // Lengths that are not a multiple of the 32 characters taken at a time.
        for n in [1usize, 3, 17, 33, 64, 100] {
            let s = hex::encode(&bytes[..n]);
            assert_eq!(parse_lower_hex_any(&s, n), Some(bytes[..n].to_vec()));
            let mut upper = s.into_bytes();
            upper[2 * n - 1] = b'F';
            assert_eq!(
                parse_lower_hex_any(std::str::from_utf8(&upper).unwrap(), n),
                None
            );
        }
    }

    #[test]
    fn printable_ascii_is_checked_at_every_position_and_length() {
        for n in 0..70usize {
            let clean: Vec<u8> = (0..n).map(|i| b' ' + (i % 95) as u8).collect();
            assert!(all_printable_ascii(&clean), "length {n}");
            for at in 0..n {
                for c in [0x00u8, 0x1f, 0x7f, 0x80, 0xff] {
                    let mut dirty = clean.clone();
                    dirty[at] = c;
                    assert!(!all_printable_ascii(&dirty), "{c:#04x} at {at} of {n}");
                }
            }
        }
    }

    fn parse_lower_hex_any(s: &str, n: usize) -> Option<Vec<u8>> {
        match n {
            1 => parse_lower_hex::<1>(s).map(|b| b.to_vec()),
            3 => parse_lower_hex::<3>(s).map(|b| b.to_vec()),
            17 => parse_lower_hex::<17>(s).map(|b| b.to_vec()),
            33 => parse_lower_hex::<33>(s).map(|b| b.to_vec()),
            64 => parse_lower_hex::<64>(s).map(|b| b.to_vec()),
            100 => parse_lower_hex::<100>(s).map(|b| b.to_vec()),
            _ => unreachable!(),
        }
    }
}
