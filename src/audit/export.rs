//! Auditor export: a zip holding `entries.jsonl`, `entries.csv`, `checkpoints.json` and
//! `manifest.json` (written last), and its offline verification.
//!
//! # Writing
//!
//! The archive is streamed to any `Write` (no `Seek`, no temporary file, nothing buffered beyond
//! one line) through [`ZipOut`] (the `zip` crate's streaming writer): members are *stored* (not
//! compressed), each followed by a data descriptor; the two entry files carry ZIP64 fields so
//! that they may pass 4 GiB. An export that fails midway is left without its central directory.
//!
//! Entries go through two members, so they are read twice: [`write_export`] takes a closure that
//! yields a fresh iterator; the first pass writes `entries.jsonl`, the second `entries.csv`.
//! The second pass must yield the same entries (it is cut to the first pass's count, and its
//! JSON must hash to the same digest as `entries.jsonl`, or the export fails). Callers that
//! cannot provide such a closure drive [`ExportWriter`] by hand.
//!
//! Create an on-demand checkpoint just before exporting, so the whole export is covered.
//!
//! # Verifying
//!
//! [`verify_export`] never extracts anything: it opens members by name, caps every read, checks
//! that the archive holds exactly the four expected, non-overlapping, uniquely named regular
//! files, streams `entries.jsonl` through [`ChainVerifier`] while comparing `entries.csv` row by
//! row, and checks the manifest and every checkpoint.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use super::chain::{AuditEntry, CHAIN_VERSION, GENESIS_HASH};
use super::checkpoint::Checkpoint;
use super::verify::{ChainVerifier, Problem, Summary};
use crate::export::archive::ZipOut;
use crate::export::package::Counting;

/// Version of the export layout and manifest. Version 2 adds the names joined at export time (see [`Named`]);
/// version 1 exports still verify.
pub const EXPORT_VERSION: u32 = 2;
pub const ENTRIES_JSONL: &str = "entries.jsonl";
pub const ENTRIES_CSV: &str = "entries.csv";
pub const CHECKPOINTS_JSON: &str = "checkpoints.json";
pub const MANIFEST_JSON: &str = "manifest.json";
/// Column names of `entries.csv` in version 1 exports (`at_utc` is `at` as RFC 3339, derived, not hashed).
pub const CSV_HEADER_V1: &str = "seq,at,at_utc,actor_id,actor_role,client_addr,action,object_kind,\
object_id,tracking_number,outcome,reason,request_id,prev_hash,entry_hash\r\n";
/// Column names of `entries.csv`: version 1's, then the names joined at export time (not hashed).
pub const CSV_HEADER: &str = "seq,at,at_utc,actor_id,actor_role,client_addr,action,object_kind,\
object_id,tracking_number,outcome,reason,request_id,prev_hash,entry_hash,actor_name,actor_email,\
actor_organisation,object_name,object_email,object_organisation\r\n";
/// What the manifest says about the names (version 2).
pub const NAMES_NOTE: &str = "actor_name/actor_email/actor_organisation and object_name/object_email/\
object_organisation (entries.csv), and \"actor\" and \"object_account\" (entries.jsonl), were joined from the \
portal's accounts when this export was made: they are not part of the hash chain and show each account as it \
was at export time, not at the time of the entry.";

/// An account as an auditor reads it next to its id: joined at export (and display) time, never hashed.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Named {
    pub name: String,
    pub email: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organisation: Option<String>,
}

/// Account id → the account's name, email and organisation.
pub type Names = std::collections::HashMap<String, Named>;

/// An `entries.jsonl` line: the entry's own fields (what the chain hashes), then the names joined for its
/// actor and, when the object is an account, for the object.
#[derive(Serialize)]
struct LineOut<'a> {
    #[serde(flatten)]
    entry: &'a AuditEntry,
    #[serde(skip_serializing_if = "Option::is_none")]
    actor: Option<&'a Named>,
    #[serde(skip_serializing_if = "Option::is_none")]
    object_account: Option<&'a Named>,
}

/// An `entries.jsonl` line read back (version 1 lines have no names).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LineIn {
    seq: i64,
    at: i64,
    actor_id: Option<String>,
    actor_role: Option<String>,
    client_addr: Option<String>,
    action: String,
    object_kind: Option<String>,
    object_id: Option<String>,
    tracking_number: Option<String>,
    outcome: String,
    reason: Option<String>,
    request_id: Option<String>,
    prev_hash: String,
    entry_hash: String,
    #[serde(default)]
    actor: Option<Named>,
    #[serde(default)]
    object_account: Option<Named>,
}

impl LineIn {
    fn split(self) -> (AuditEntry, Option<Named>, Option<Named>) {
        (
            AuditEntry {
                seq: self.seq,
                at: self.at,
                actor_id: self.actor_id,
                actor_role: self.actor_role,
                client_addr: self.client_addr,
                action: self.action,
                object_kind: self.object_kind,
                object_id: self.object_id,
                tracking_number: self.tracking_number,
                outcome: self.outcome,
                reason: self.reason,
                request_id: self.request_id,
                prev_hash: self.prev_hash,
                entry_hash: self.entry_hash,
            },
            self.actor,
            self.object_account,
        )
    }
}

/// The names of `e`'s actor and, if its object is an account, of its object.
fn names_of<'a>(names: &'a Names, e: &AuditEntry) -> (Option<&'a Named>, Option<&'a Named>) {
    let actor = e.actor_id.as_ref().and_then(|id| names.get(id));
    let object = match (e.object_kind.as_deref(), &e.object_id) {
        (Some("account"), Some(id)) => names.get(id),
        _ => None,
    };
    (actor, object)
}

/// Largest `manifest.json`, `checkpoints.json` or kept checkpoint file read.
const MAX_JSON_BYTES: u64 = 64 << 20;
/// Largest `entries.jsonl` / `entries.csv` accepted (declared size).
const MAX_DATA_BYTES: u64 = 1 << 40;
/// Longest line of `entries.jsonl` (an entry is at most ~45 KiB of JSON).
const MAX_LINE_BYTES: usize = 1 << 20;
/// Highest accepted compression ratio of a deflated member (ours are stored).
const MAX_RATIO: u64 = 1000;

/// SHA-256 and length of a member.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FileDigest {
    pub sha256: String,
    pub bytes: u64,
}

/// `manifest.json`, the last member of an export.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportManifest {
    pub version: u32,
    /// Version of the canonical entry encoding ([`CHAIN_VERSION`]).
    pub chain_version: u32,
    pub generated_at: i64,
    /// First and last seq exported (both 0 for an empty export).
    pub first_seq: i64,
    pub last_seq: i64,
    pub count: u64,
    /// `entry_hash` of the last entry (the genesis hash for an empty export).
    pub chain_head: String,
    /// The portal's checkpoint public key (64 hex).
    pub public_key: String,
    /// The checkpoints that lie entirely within `first_seq..=last_seq` (as `checkpoints.json`).
    pub checkpoints: Vec<Checkpoint>,
    /// Version 2: how the names next to the account ids were joined ([`NAMES_NOTE`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub names: Option<String>,
    /// Digest of `entries.jsonl`, `entries.csv` and `checkpoints.json`.
    pub files: BTreeMap<String, FileDigest>,
}

/// Why an export could not be written.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error("writing the export: {0}")]
    Io(#[from] io::Error),
    #[error("reading the audit entries: {0}")]
    Source(Box<dyn std::error::Error + Send + Sync>),
    #[error("encoding JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("export aborted: {0}")]
    Inconsistent(String),
}

// ---------------------------------------------------------------------------------------------
// Members: the container is written by `crate::export::archive::ZipOut` (the `zip` crate's
// streaming writer); this adds each member's digest for the manifest.

struct Member {
    sha: Sha256,
    size: u64,
}

struct Members<W: Write> {
    zip: ZipOut<W>,
    current: Option<Member>,
}

impl<W: Write> Members<W> {
    fn new(out: W, generated_at: i64) -> Self {
        Members {
            zip: ZipOut::new(out, generated_at),
            current: None,
        }
    }

    /// Starts member `name`; `large` if it may pass 4 GiB (the entry files).
    fn begin(&mut self, name: &str, large: bool) -> io::Result<()> {
        self.zip.start(name, large)?;
        self.current = Some(Member {
            sha: Sha256::new(),
            size: 0,
        });
        Ok(())
    }

    /// Adds `n` bytes to the current member's size without writing them (a run that only finds the length).
    fn count_unwritten(&mut self, n: u64) -> io::Result<()> {
        let m = self
            .current
            .as_mut()
            .ok_or_else(|| io::Error::other("no zip member open"))?;
        m.size += n;
        Ok(())
    }

    /// Closes the current member's digest.
    fn end(&mut self) -> io::Result<FileDigest> {
        let m = self
            .current
            .take()
            .ok_or_else(|| io::Error::other("no zip member open"))?;
        Ok(FileDigest {
            sha256: hex::encode(m.sha.finalize()),
            bytes: m.size,
        })
    }

    fn finish(self) -> io::Result<W> {
        self.zip.finish()
    }
}

impl<W: Write> Write for Members<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let m = self
            .current
            .as_mut()
            .ok_or_else(|| io::Error::other("no zip member open"))?;
        let n = self.zip.write(buf)?;
        m.sha.update(&buf[..n]);
        m.size += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.zip.flush()
    }
}

// ---------------------------------------------------------------------------------------------
// CSV

/// Appends one RFC 4180 text cell, always quoted, with `"` doubled; a cell that a spreadsheet
/// would take for a formula (starting with `=`, `+`, `-`, `@`, TAB, CR or their full-width
/// forms) gets a leading `'`.
pub fn csv_cell(out: &mut Vec<u8>, s: &str) {
    out.push(b'"');
    if s.starts_with([
        '=', '+', '-', '@', '\t', '\r', '\u{FF1D}', '\u{FF0B}', '\u{FF0D}', '\u{FF20}',
    ]) {
        out.push(b'\'');
    }
    for part in s.split('"').enumerate() {
        if part.0 > 0 {
            out.extend_from_slice(b"\"\"");
        }
        out.extend_from_slice(part.1.as_bytes());
    }
    out.push(b'"');
}

fn opt(v: &Option<String>) -> &str {
    v.as_deref().unwrap_or("")
}

/// Appends the CSV row of `e` (CRLF-terminated).
pub fn csv_row(out: &mut Vec<u8>, e: &AuditEntry) {
    use std::io::Write as _;
    // Writing to a Vec cannot fail.
    let _ = write!(out, "{},{},", e.seq, e.at);
    let utc = chrono::DateTime::from_timestamp(e.at, 0)
        .map(|t| t.format("%Y-%m-%dT%H:%M:%SZ").to_string())
        .unwrap_or_default();
    csv_cell(out, &utc);
    let cells: [&str; 12] = [
        opt(&e.actor_id),
        opt(&e.actor_role),
        opt(&e.client_addr),
        &e.action,
        opt(&e.object_kind),
        opt(&e.object_id),
        opt(&e.tracking_number),
        &e.outcome,
        opt(&e.reason),
        opt(&e.request_id),
        &e.prev_hash,
        &e.entry_hash,
    ];
    for c in cells {
        out.push(b',');
        csv_cell(out, c);
    }
    out.extend_from_slice(b"\r\n");
}

/// Appends the six name cells of version 2 (`actor`, then `object`), after `csv_row`'s last cell (its CRLF
/// removed by the caller) — empty cells for an account not known.
fn csv_names(out: &mut Vec<u8>, actor: Option<&Named>, object: Option<&Named>) {
    for n in [actor, object] {
        let (name, email, org) = match n {
            Some(n) => (
                n.name.as_str(),
                n.email.as_str(),
                n.organisation.as_deref().unwrap_or(""),
            ),
            None => ("", "", ""),
        };
        for c in [name, email, org] {
            out.push(b',');
            csv_cell(out, c);
        }
    }
}

/// The whole version-2 CSV row of `e`.
fn csv_row_named(out: &mut Vec<u8>, e: &AuditEntry, actor: Option<&Named>, object: Option<&Named>) {
    csv_row(out, e);
    out.truncate(out.len() - 2);
    csv_names(out, actor, object);
    out.extend_from_slice(b"\r\n");
}

// ---------------------------------------------------------------------------------------------
// Writing

#[derive(PartialEq, Eq)]
enum Phase {
    Jsonl,
    Csv,
}

/// Writes an export step by step: [`push_jsonl`](Self::push_jsonl) every entry in seq order,
/// [`start_csv`](Self::start_csv), [`push_csv`](Self::push_csv) the same entries again, then
/// [`finish`](Self::finish). If any step fails, discard the output.
pub struct ExportWriter<W: Write> {
    zip: Members<BufWriter<W>>,
    phase: Phase,
    generated_at: i64,
    count: u64,
    first_seq: Option<i64>,
    last_seq: i64,
    chain_head: Option<String>,
    jsonl: Option<FileDigest>,
    csv_count: u64,
    /// SHA-256 over the JSON lines of the second pass: must equal entries.jsonl's digest.
    pass2: Sha256,
    buf: Vec<u8>,
    names: Names,
    /// A run that counts the entry files' bytes instead of writing them ([`ExportWriter::count_entry`]), and the
    /// CSV rows' bytes counted so far.
    counting: bool,
    csv_unwritten: u64,
}

impl<W: Write> ExportWriter<W> {
    /// Starts an export generated now.
    pub fn new(out: W) -> Result<Self, ExportError> {
        Self::with_time(out, chrono::Utc::now().timestamp())
    }

    /// Starts an export with an explicit `generated_at` (Unix seconds UTC).
    pub fn with_time(out: W, generated_at: i64) -> Result<Self, ExportError> {
        let mut zip = Members::new(BufWriter::with_capacity(1 << 16, out), generated_at);
        zip.begin(ENTRIES_JSONL, true)?;
        Ok(ExportWriter {
            zip,
            phase: Phase::Jsonl,
            generated_at,
            count: 0,
            first_seq: None,
            last_seq: 0,
            chain_head: None,
            jsonl: None,
            csv_count: 0,
            pass2: Sha256::new(),
            buf: Vec::with_capacity(1024),
            names: Names::new(),
            counting: false,
            csv_unwritten: 0,
        })
    }

    /// Joins these names next to the account ids (the same for both passes).
    pub fn with_names(mut self, names: Names) -> Self {
        self.names = names;
        self
    }

    fn write_line(&mut self, e: &AuditEntry) -> Result<(), ExportError> {
        let (actor, object_account) = names_of(&self.names, e);
        serde_json::to_writer(
            &mut self.buf,
            &LineOut {
                entry: e,
                actor,
                object_account,
            },
        )?;
        self.buf.push(b'\n');
        Ok(())
    }

    /// First pass: appends `e` to `entries.jsonl`.
    pub fn push_jsonl(&mut self, e: &AuditEntry) -> Result<(), ExportError> {
        if self.phase != Phase::Jsonl {
            return Err(ExportError::Inconsistent(
                "push_jsonl after start_csv".into(),
            ));
        }
        self.buf.clear();
        self.write_line(e)?;
        self.zip.write_all(&self.buf)?;
        self.count += 1;
        self.first_seq.get_or_insert(e.seq);
        self.last_seq = e.seq;
        self.chain_head = Some(e.entry_hash.clone());
        Ok(())
    }

    /// The length-only run ([`export_length`]): counts `e`'s line of `entries.jsonl` and its row of
    /// `entries.csv`, both in one pass over the entries, and writes neither.
    fn count_entry(&mut self, e: &AuditEntry) -> Result<(), ExportError> {
        if self.phase != Phase::Jsonl || !self.counting {
            return Err(ExportError::Inconsistent(
                "count_entry outside a count".into(),
            ));
        }
        self.buf.clear();
        self.write_line(e)?;
        self.zip.count_unwritten(self.buf.len() as u64)?;
        self.buf.clear();
        let (actor, object) = names_of(&self.names, e);
        csv_row_named(&mut self.buf, e, actor, object);
        self.csv_unwritten += self.buf.len() as u64;
        self.count += 1;
        self.first_seq.get_or_insert(e.seq);
        self.last_seq = e.seq;
        self.chain_head = Some(e.entry_hash.clone());
        Ok(())
    }

    /// Ends `entries.jsonl` and starts `entries.csv`.
    pub fn start_csv(&mut self) -> Result<(), ExportError> {
        if self.phase != Phase::Jsonl {
            return Err(ExportError::Inconsistent("start_csv called twice".into()));
        }
        self.jsonl = Some(self.zip.end()?);
        self.zip.begin(ENTRIES_CSV, true)?;
        self.zip.write_all(CSV_HEADER.as_bytes())?;
        if self.counting {
            self.zip.count_unwritten(self.csv_unwritten)?;
            self.csv_count = self.count;
        }
        self.phase = Phase::Csv;
        Ok(())
    }

    /// Second pass: appends `e` to `entries.csv`; the entries must be the first pass's.
    pub fn push_csv(&mut self, e: &AuditEntry) -> Result<(), ExportError> {
        if self.phase != Phase::Csv {
            return Err(ExportError::Inconsistent(
                "push_csv before start_csv".into(),
            ));
        }
        if self.csv_count >= self.count {
            return Err(ExportError::Inconsistent(
                "the second pass yielded more entries than the first".into(),
            ));
        }
        self.buf.clear();
        self.write_line(e)?;
        self.pass2.update(&self.buf);
        self.buf.clear();
        let (actor, object) = names_of(&self.names, e);
        csv_row_named(&mut self.buf, e, actor, object);
        self.zip.write_all(&self.buf)?;
        self.csv_count += 1;
        Ok(())
    }

    /// Writes `checkpoints.json` (those of `checkpoints` lying entirely within the exported
    /// range) and `manifest.json`, closes the archive and returns the manifest.
    pub fn finish(
        mut self,
        checkpoints: &[Checkpoint],
        public_key_hex: &str,
    ) -> Result<ExportManifest, ExportError> {
        if self.phase == Phase::Jsonl {
            self.start_csv()?;
        }
        let jsonl = self
            .jsonl
            .take()
            .ok_or_else(|| ExportError::Inconsistent("entries.jsonl not written".into()))?;
        if self.csv_count != self.count
            || (!self.counting
                && hex::encode(std::mem::take(&mut self.pass2).finalize()) != jsonl.sha256)
        {
            return Err(ExportError::Inconsistent(
                "the second pass over the entries differs from the first".into(),
            ));
        }
        let csv = self.zip.end()?;
        let (first, last) = match self.first_seq {
            Some(f) => (f, self.last_seq),
            None => (0, 0),
        };
        let mut cps: Vec<Checkpoint> = checkpoints
            .iter()
            .filter(|cp| self.count > 0 && cp.from_seq >= first && cp.seq <= last)
            .cloned()
            .collect();
        cps.sort_by_key(|cp| (cp.seq, cp.from_seq));
        self.zip.begin(CHECKPOINTS_JSON, false)?;
        serde_json::to_writer_pretty(&mut self.zip, &cps)?;
        self.zip.write_all(b"\n")?;
        let cps_digest = self.zip.end()?;
        let mut files = BTreeMap::new();
        files.insert(ENTRIES_JSONL.to_owned(), jsonl);
        files.insert(ENTRIES_CSV.to_owned(), csv);
        files.insert(CHECKPOINTS_JSON.to_owned(), cps_digest);
        let manifest = ExportManifest {
            version: EXPORT_VERSION,
            chain_version: CHAIN_VERSION,
            generated_at: self.generated_at,
            first_seq: first,
            last_seq: last,
            count: self.count,
            chain_head: self
                .chain_head
                .take()
                .unwrap_or_else(|| hex::encode(GENESIS_HASH)),
            public_key: public_key_hex.trim().to_owned(),
            checkpoints: cps,
            names: Some(NAMES_NOTE.to_owned()),
            files,
        };
        self.zip.begin(MANIFEST_JSON, false)?;
        serde_json::to_writer_pretty(&mut self.zip, &manifest)?;
        self.zip.write_all(b"\n")?;
        self.zip.end()?;
        let mut inner = self.zip.finish()?;
        inner.flush()?;
        Ok(manifest)
    }
}

fn source_err<E: Into<Box<dyn std::error::Error + Send + Sync>>>(e: E) -> ExportError {
    ExportError::Source(e.into())
}

/// Streams an export of the entries yielded by `entries` into `out` (see the module
/// documentation), generated now. See [`write_export_at`].
pub fn write_export<W, F, I, E>(
    out: W,
    entries: F,
    checkpoints: &[Checkpoint],
    public_key_hex: &str,
    names: Names,
) -> Result<ExportManifest, ExportError>
where
    W: Write,
    F: FnMut() -> Result<I, E>,
    I: IntoIterator<Item = Result<AuditEntry, E>>,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let now = chrono::Utc::now().timestamp();
    write_export_at(out, now, entries, checkpoints, public_key_hex, names)
}

/// Streams an export of the entries yielded by `entries` into `out` (see the module
/// documentation), stamped `generated_at`. `entries` is called twice and must yield the same entries, in seq
/// order, each time (query `seq <= last` so that entries appended meanwhile do not matter; the second pass is
/// cut at the first pass's count). `checkpoints` may hold every checkpoint: those outside the
/// exported range are left out. `public_key_hex` is the portal's checkpoint key. `names` are joined next to
/// the account ids (see [`NAMES_NOTE`]).
pub fn write_export_at<W, F, I, E>(
    out: W,
    generated_at: i64,
    mut entries: F,
    checkpoints: &[Checkpoint],
    public_key_hex: &str,
    names: Names,
) -> Result<ExportManifest, ExportError>
where
    W: Write,
    F: FnMut() -> Result<I, E>,
    I: IntoIterator<Item = Result<AuditEntry, E>>,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut w = ExportWriter::with_time(out, generated_at)?.with_names(names);
    for e in entries().map_err(source_err)? {
        w.push_jsonl(&e.map_err(source_err)?)?;
    }
    w.start_csv()?;
    let count = usize::try_from(w.count).unwrap_or(usize::MAX);
    for e in entries().map_err(source_err)?.into_iter().take(count) {
        w.push_csv(&e.map_err(source_err)?)?;
    }
    w.finish(checkpoints, public_key_hex)
}

/// The exact length of the archive [`write_export_at`] makes of the same arguments, found without writing it (with
/// it an export is sent with `Content-Length`, see [`write_export_of_len`], so that one cut short by a failing source
/// is seen as cut by every client). One pass over the entries counts both encodings of each; the archive is written
/// around them with the two entry files left empty, and their lengths added. That holds while every size and offset
/// stays under 4 GiB (a stored member's bytes change only its CRC and digest, whose sizes are fixed; past 4 GiB ZIP64
/// fields come in): a larger export is written whole into a counter instead, reading the entries twice more.
pub fn export_length<F, I, E>(
    generated_at: i64,
    mut entries: F,
    checkpoints: &[Checkpoint],
    public_key_hex: &str,
    names: &Names,
) -> Result<u64, ExportError>
where
    F: FnMut() -> Result<I, E>,
    I: IntoIterator<Item = Result<AuditEntry, E>>,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut counter = Counting {
        inner: io::sink(),
        count: 0,
    };
    let mut w = ExportWriter::with_time(&mut counter, generated_at)?.with_names(names.clone());
    w.counting = true;
    for e in entries().map_err(source_err)? {
        w.count_entry(&e.map_err(source_err)?)?;
    }
    let manifest = w.finish(checkpoints, public_key_hex)?;
    let unwritten: u64 = [ENTRIES_JSONL, ENTRIES_CSV]
        .iter()
        .filter_map(|name| manifest.files.get(*name))
        .map(|f| f.bytes)
        .sum::<u64>()
        - CSV_HEADER.len() as u64;
    let counted = counter.count.saturating_add(unwritten);
    if counted < u64::from(u32::MAX) {
        return Ok(counted);
    }
    written_length(generated_at, entries, checkpoints, public_key_hex, names)
}

/// The archive's length from writing it whole into a counter (the entries read twice).
fn written_length<F, I, E>(
    generated_at: i64,
    entries: F,
    checkpoints: &[Checkpoint],
    public_key_hex: &str,
    names: &Names,
) -> Result<u64, ExportError>
where
    F: FnMut() -> Result<I, E>,
    I: IntoIterator<Item = Result<AuditEntry, E>>,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut counter = Counting {
        inner: io::sink(),
        count: 0,
    };
    write_export_at(
        &mut counter,
        generated_at,
        entries,
        checkpoints,
        public_key_hex,
        names.clone(),
    )?;
    Ok(counter.count)
}

/// [`write_export_at`] for an answer that declared `len` bytes ([`export_length`] of the same arguments): a byte
/// past them fails the export instead of reaching `out`, and an export that ends short of them fails as well.
#[allow(clippy::too_many_arguments)]
pub fn write_export_of_len<W, F, I, E>(
    out: W,
    len: u64,
    generated_at: i64,
    entries: F,
    checkpoints: &[Checkpoint],
    public_key_hex: &str,
    names: Names,
) -> Result<ExportManifest, ExportError>
where
    W: Write,
    F: FnMut() -> Result<I, E>,
    I: IntoIterator<Item = Result<AuditEntry, E>>,
    E: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let mut capped = AtMost {
        inner: out,
        left: len,
    };
    let manifest = write_export_at(
        &mut capped,
        generated_at,
        entries,
        checkpoints,
        public_key_hex,
        names,
    )?;
    if capped.left != 0 {
        return Err(ExportError::Inconsistent(format!(
            "the export came out {} byte(s) shorter than its declared length",
            capped.left
        )));
    }
    Ok(manifest)
}

/// Passes at most `left` more bytes on; a write past them fails (nothing of it is written).
struct AtMost<W: Write> {
    inner: W,
    left: u64,
}

impl<W: Write> Write for AtMost<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if buf.len() as u64 > self.left {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the export came out longer than its declared length",
            ));
        }
        let n = self.inner.write(buf)?;
        self.left -= n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

// ---------------------------------------------------------------------------------------------
// Verifying

type Archive = zip::ZipArchive<BufReader<File>>;

fn structural(what: impl Into<String>) -> Problem {
    Problem {
        seq: 0,
        what: what.into(),
    }
}

fn open_archive(path: &Path) -> Result<Archive, Problem> {
    let f =
        File::open(path).map_err(|e| structural(format!("cannot open {}: {e}", path.display())))?;
    zip::ZipArchive::new(BufReader::new(f)).map_err(|e| {
        structural(format!(
            "{} is not a readable zip archive: {e}",
            path.display()
        ))
    })
}

/// Exactly the four expected members: regular files, unique names, sane sizes, no overlap.
fn check_members(zip: &mut Archive) -> Result<(), Problem> {
    const NAMES: [&str; 4] = [ENTRIES_JSONL, ENTRIES_CSV, CHECKPOINTS_JSON, MANIFEST_JSON];
    // The archive keeps only one of duplicate names; it still counts them.
    if zip.has_duplicate_names() {
        return Err(structural("the export holds duplicate file names"));
    }
    if zip.len() != NAMES.len() {
        return Err(structural(format!(
            "the export holds {} files; expected exactly {}",
            zip.len(),
            NAMES.join(", ")
        )));
    }
    let cd_start = zip.central_directory_start();
    let mut spans = Vec::new();
    for i in 0..zip.len() {
        let f = zip
            .by_index_raw(i)
            .map_err(|e| structural(format!("unreadable zip member {i}: {e}")))?;
        let name = f
            .name()
            .map_err(|e| structural(format!("zip member {i} has an unreadable name: {e}")))?
            .into_owned();
        if !NAMES.contains(&name.as_str()) {
            return Err(structural(format!(
                "unexpected file {name:?} in the export"
            )));
        }
        if !f.is_file() || f.is_symlink() || f.enclosed_name().is_none() || f.encrypted() {
            return Err(structural(format!("{name} is not a plain file")));
        }
        let cap = if name == ENTRIES_JSONL || name == ENTRIES_CSV {
            MAX_DATA_BYTES
        } else {
            MAX_JSON_BYTES
        };
        let ok_method = match f.compression() {
            zip::CompressionMethod::Stored => f.size() == f.compressed_size(),
            zip::CompressionMethod::Deflated => {
                f.size()
                    <= f.compressed_size()
                        .saturating_mul(MAX_RATIO)
                        .saturating_add(4096)
            }
            _ => false,
        };
        if !ok_method || f.size() > cap {
            return Err(structural(format!(
                "{name}: unsupported compression, implausible ratio or too large"
            )));
        }
        let start = f
            .data_start()
            .ok_or_else(|| structural(format!("{name}: its data cannot be located")))?;
        let end = start.saturating_add(f.compressed_size());
        spans.push((f.header_start(), end, name));
    }
    spans.sort();
    for w in spans.windows(2) {
        if w[0].1 > w[1].0 {
            return Err(structural(format!("{} and {} overlap", w[0].2, w[1].2)));
        }
    }
    if spans.last().is_some_and(|s| s.1 > cd_start) {
        return Err(structural("a member overlaps the zip directory"));
    }
    Ok(())
}

/// Reads a small JSON member: `(value, digest)`.
fn read_json_member<T: serde::de::DeserializeOwned>(
    zip: &mut Archive,
    name: &str,
) -> Result<(T, FileDigest), Problem> {
    let f = zip
        .by_name(name)
        .map_err(|e| structural(format!("the export lacks {name}: {e}")))?;
    let mut bytes = Vec::new();
    f.take(MAX_JSON_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| structural(format!("reading {name}: {e}")))?;
    if bytes.len() as u64 > MAX_JSON_BYTES {
        return Err(structural(format!("{name} is too large")));
    }
    let v = serde_json::from_slice(&bytes)
        .map_err(|e| structural(format!("{name} is not valid: {e}")))?;
    let digest = FileDigest {
        sha256: hex::encode(Sha256::digest(&bytes)),
        bytes: bytes.len() as u64,
    };
    Ok((v, digest))
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(Checkpoint),
    Many(Vec<Checkpoint>),
}

/// Reads a kept checkpoint file: one checkpoint or an array, all with the same key.
fn read_kept(path: &Path) -> Result<Vec<Checkpoint>, Problem> {
    let f =
        File::open(path).map_err(|e| structural(format!("cannot open {}: {e}", path.display())))?;
    let mut bytes = Vec::new();
    f.take(MAX_JSON_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| structural(format!("reading {}: {e}", path.display())))?;
    if bytes.len() as u64 > MAX_JSON_BYTES {
        return Err(structural(format!("{} is too large", path.display())));
    }
    let kept = match serde_json::from_slice::<OneOrMany>(&bytes) {
        Ok(OneOrMany::One(c)) => vec![c],
        Ok(OneOrMany::Many(v)) => v,
        Err(_) => {
            return Err(structural(format!(
                "{} holds neither a checkpoint nor an array of checkpoints",
                path.display()
            )))
        }
    };
    let Some(first) = kept.first() else {
        return Err(structural(format!(
            "{} holds no checkpoint",
            path.display()
        )));
    };
    if kept.iter().any(|c| c.public_key != first.public_key) {
        return Err(structural(
            "the kept checkpoints are signed by different keys",
        ));
    }
    Ok(kept)
}

enum LineRead {
    Eof,
    Complete,
    TooLong,
}

/// Reads up to and including the next `\n` into `buf`, refusing lines over `cap` bytes.
fn read_line_capped<R: BufRead>(r: &mut R, buf: &mut Vec<u8>, cap: usize) -> io::Result<LineRead> {
    buf.clear();
    loop {
        let avail = r.fill_buf()?;
        if avail.is_empty() {
            return Ok(if buf.is_empty() {
                LineRead::Eof
            } else {
                LineRead::Complete
            });
        }
        let (take, done) = match avail.iter().position(|&b| b == b'\n') {
            Some(i) => (i + 1, true),
            None => (avail.len(), false),
        };
        if buf.len() + take > cap {
            return Ok(LineRead::TooLong);
        }
        buf.extend_from_slice(&avail[..take]);
        r.consume(take);
        if done {
            return Ok(LineRead::Complete);
        }
    }
}

/// Verifies an export offline (see the module documentation). With `kept_checkpoint` (a JSON
/// file holding one checkpoint or an array, kept by the auditor outside the portal) its public
/// key becomes the trusted key: every checkpoint in the export must be signed by it, and the kept
/// checkpoints must lie within the export and match its entries. Without it the manifest's key is
/// used, which proves consistency only: whoever rewrites everything can sign with a new key.
pub fn verify_export(zip_path: &Path, kept_checkpoint: Option<&Path>) -> Result<Summary, Problem> {
    let mut zip = open_archive(zip_path)?;
    check_members(&mut zip)?;
    let (manifest, _) = read_json_member::<ExportManifest>(&mut zip, MANIFEST_JSON)?;
    let named = manifest.version >= 2;
    if !(1..=EXPORT_VERSION).contains(&manifest.version)
        || manifest.chain_version != CHAIN_VERSION
        || named != manifest.names.is_some()
    {
        return Err(structural(format!(
            "unsupported export version {} / chain version {}",
            manifest.version, manifest.chain_version
        )));
    }
    let (cps, cps_digest) = read_json_member::<Vec<Checkpoint>>(&mut zip, CHECKPOINTS_JSON)?;
    if cps != manifest.checkpoints {
        return Err(structural(
            "manifest.json and checkpoints.json list different checkpoints",
        ));
    }
    let kept = kept_checkpoint.map(read_kept).transpose()?;
    let trusted = match &kept {
        Some(k) => k[0].public_key.clone(),
        None => manifest.public_key.clone(),
    };
    let mut verifier = ChainVerifier::new(None).with_checkpoints(&cps, Some(&trusted));
    if let Some(k) = &kept {
        verifier = verifier.with_checkpoints(k, Some(&trusted));
    }

    // Stream entries.jsonl, and entries.csv in step through a second handle.
    let mut zip_csv = open_archive(zip_path)?;
    let jf = zip
        .by_name(ENTRIES_JSONL)
        .map_err(|e| structural(format!("the export lacks {ENTRIES_JSONL}: {e}")))?;
    let jsize = jf.size();
    // One byte past the declared size, so that the reader reaches EOF and checks the CRC.
    let mut jr = BufReader::with_capacity(1 << 16, jf.take(jsize + 1));
    let cf = zip_csv
        .by_name(ENTRIES_CSV)
        .map_err(|e| structural(format!("the export lacks {ENTRIES_CSV}: {e}")))?;
    let csize = cf.size();
    let mut cr = BufReader::with_capacity(1 << 16, cf.take(csize + 1));

    let mut jsha = Sha256::new();
    let mut csha = Sha256::new();
    let (mut jbytes, mut cbytes) = (0u64, 0u64);
    let header = if named { CSV_HEADER } else { CSV_HEADER_V1 };
    let mut got = vec![0u8; header.len()];
    cr.read_exact(&mut got)
        .map_err(|e| structural(format!("reading {ENTRIES_CSV}: {e}")))?;
    if got != header.as_bytes() {
        return Err(structural(format!(
            "{ENTRIES_CSV} has an unexpected header"
        )));
    }
    csha.update(&got);
    cbytes += got.len() as u64;

    let mut line = Vec::with_capacity(1024);
    let mut row = Vec::with_capacity(1024);
    let mut next_seq = if manifest.count > 0 {
        manifest.first_seq
    } else {
        1
    };
    let mut line_no = 0u64;
    loop {
        let read = read_line_capped(&mut jr, &mut line, MAX_LINE_BYTES)
            .map_err(|e| Problem::new(next_seq, format!("reading {ENTRIES_JSONL}: {e}")))?;
        match read {
            LineRead::Eof => break,
            LineRead::TooLong => {
                return Err(Problem::new(
                    next_seq,
                    format!("{ENTRIES_JSONL} line {} is too long", line_no + 1),
                ))
            }
            LineRead::Complete => {}
        }
        line_no += 1;
        jsha.update(&line);
        jbytes += line.len() as u64;
        let Some(body) = line.strip_suffix(b"\n") else {
            return Err(Problem::new(
                next_seq,
                format!("{ENTRIES_JSONL} line {line_no} is not terminated"),
            ));
        };
        let parsed: LineIn = serde_json::from_slice(body).map_err(|e| {
            Problem::new(
                next_seq,
                format!("{ENTRIES_JSONL} line {line_no} is not a valid audit entry: {e}"),
            )
        })?;
        let (entry, actor, object) = parsed.split();
        if !named && (actor.is_some() || object.is_some()) {
            return Err(Problem::new(
                entry.seq,
                format!(
                    "{ENTRIES_JSONL} line {line_no} has names, which a version 1 export has not"
                ),
            ));
        }
        verifier.feed(&entry)?;
        row.clear();
        if named {
            csv_row_named(&mut row, &entry, actor.as_ref(), object.as_ref());
        } else {
            csv_row(&mut row, &entry);
        }
        got.resize(row.len(), 0);
        let same = cr.read_exact(&mut got).is_ok() && got == row;
        if !same {
            return Err(Problem::new(
                entry.seq,
                format!("{ENTRIES_CSV} row differs from {ENTRIES_JSONL}"),
            ));
        }
        csha.update(&row);
        cbytes += row.len() as u64;
        next_seq = entry
            .seq
            .checked_add(1)
            .ok_or_else(|| Problem::new(entry.seq, "sequence number out of range"))?;
    }
    let mut rest = [0u8; 1];
    match cr.read(&mut rest) {
        Ok(0) => {}
        Ok(_) => {
            return Err(Problem::new(
                next_seq,
                format!("{ENTRIES_CSV} has rows after the last entry"),
            ))
        }
        Err(e) => return Err(structural(format!("reading {ENTRIES_CSV}: {e}"))),
    }
    if jbytes != jsize || cbytes != csize {
        return Err(structural(
            "a data file's length differs from its zip header",
        ));
    }

    let summary = verifier.finish(&[], None)?;

    // The manifest against what was read.
    let (m_first, m_last) = (manifest.first_seq, manifest.last_seq);
    if summary.count != manifest.count || (summary.count > 0 && summary.last_seq != m_last) {
        let at = if summary.count == 0 {
            m_first.max(1)
        } else {
            summary.last_seq.min(m_last) + 1
        };
        return Err(Problem::new(
            at,
            format!(
                "manifest lists {} entries ending at #{m_last}, {ENTRIES_JSONL} holds {} ending at #{}",
                manifest.count, summary.count, summary.last_seq
            ),
        ));
    }
    if summary.count > 0 && summary.first_seq != m_first {
        return Err(Problem::new(
            summary.first_seq.min(m_first),
            format!(
                "manifest says the export starts at #{m_first}, {ENTRIES_JSONL} at #{}",
                summary.first_seq
            ),
        ));
    }
    if summary.count > 0 && summary.chain_head != manifest.chain_head {
        return Err(Problem::new(
            summary.last_seq,
            "chain head differs from the manifest",
        ));
    }
    let digest = |sha: Sha256, bytes| FileDigest {
        sha256: hex::encode(sha.finalize()),
        bytes,
    };
    let computed = [
        (ENTRIES_JSONL, digest(jsha, jbytes)),
        (ENTRIES_CSV, digest(csha, cbytes)),
        (CHECKPOINTS_JSON, cps_digest),
    ];
    if manifest.files.len() != computed.len() {
        return Err(structural("manifest lists unexpected files"));
    }
    for (name, d) in computed {
        if manifest.files.get(name) != Some(&d) {
            return Err(structural(format!(
                "{name} does not match its digest in the manifest"
            )));
        }
    }
    if manifest.public_key != trusted {
        return Err(Problem::new(
            summary.first_seq,
            format!(
                "the export names key {} but the kept checkpoint is signed by {trusted}",
                manifest.public_key
            ),
        ));
    }
    Ok(summary)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::audit::chain::{chain_next, parse_hash_hex, NewEntryFields};
    use crate::audit::checkpoint::CheckpointSigner;
    use crate::audit::verify::tests::{build_chain, checkpoints_for, signer};
    use std::io::Cursor;
    use std::path::PathBuf;

    fn export(
        dir: &Path,
        name: &str,
        entries: &[AuditEntry],
        cps: &[Checkpoint],
        key: &str,
    ) -> (PathBuf, ExportManifest) {
        let path = dir.join(name);
        let out = File::create(&path).unwrap();
        let m = write_export(
            out,
            || Ok::<_, io::Error>(entries.iter().cloned().map(Ok)),
            cps,
            key,
            Names::new(),
        )
        .unwrap();
        (path, m)
    }

    /// Reads every member of a (small, test-made) zip.
    fn members(path: &Path) -> Vec<(String, Vec<u8>)> {
        let mut z = zip::ZipArchive::new(File::open(path).unwrap()).unwrap();
        (0..z.len())
            .map(|i| {
                let mut f = z.by_index(i).unwrap();
                let mut b = Vec::new();
                f.read_to_end(&mut b).unwrap();
                (f.name().unwrap().into_owned(), b)
            })
            .collect()
    }

    /// Writes a zip with the `zip` crate's own (seekable) writer, as a tamperer would.
    fn repack(path: &Path, files: &[(String, Vec<u8>)]) {
        let mut z = zip::ZipWriter::new(File::create(path).unwrap());
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated);
        for (name, bytes) in files {
            z.start_file(name.as_str(), opts).unwrap();
            z.write_all(bytes).unwrap();
        }
        z.finish().unwrap();
    }

    fn edit(files: &mut [(String, Vec<u8>)], name: &str, f: impl FnOnce(&mut Vec<u8>)) {
        f(&mut files.iter_mut().find(|(n, _)| n == name).unwrap().1);
    }

    fn lines(bytes: &[u8]) -> Vec<String> {
        String::from_utf8(bytes.to_vec())
            .unwrap()
            .lines()
            .map(str::to_owned)
            .collect()
    }

    fn setup() -> (tempfile::TempDir, Vec<AuditEntry>, Vec<Checkpoint>, String) {
        let s = signer();
        let entries = build_chain(50);
        let cps = checkpoints_for(&entries, 10, &s);
        (
            tempfile::tempdir().unwrap(),
            entries,
            cps,
            s.public_key_hex(),
        )
    }

    #[test]
    fn round_trip() {
        let (dir, entries, cps, key) = setup();
        let (path, m) = export(dir.path(), "a.zip", &entries, &cps, &key);
        assert_eq!((m.first_seq, m.last_seq, m.count), (1, 50, 50));
        assert_eq!(m.chain_head, entries[49].entry_hash);
        assert_eq!(m.checkpoints, cps);
        let s = verify_export(&path, None).unwrap();
        assert_eq!((s.count, s.first_seq, s.last_seq), (50, 1, 50));
        assert_eq!(s.checkpoints_checked, 5);
        // The members, read back with the zip crate.
        let files = members(&path);
        let names: Vec<&str> = files.iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(
            names,
            [ENTRIES_JSONL, ENTRIES_CSV, CHECKPOINTS_JSON, MANIFEST_JSON]
        );
        let jl = lines(&files[0].1);
        assert_eq!(jl.len(), 50);
        let back: AuditEntry = serde_json::from_str(&jl[6]).unwrap();
        assert_eq!(back, entries[6]);
        let csv = lines(&files[1].1);
        assert_eq!(csv.len(), 51);
        assert!(
            csv[1].starts_with("1,1700000001,\"2023-11-14T22:13:21Z\",\"acct-1\""),
            "{}",
            csv[1]
        );
        let manifest: ExportManifest = serde_json::from_slice(&files[3].1).unwrap();
        assert_eq!(manifest, m);
        assert_eq!(
            m.files[ENTRIES_JSONL].sha256,
            hex::encode(Sha256::digest(&files[0].1))
        );
        // A kept checkpoint signed with the same key verifies too.
        let kept = dir.path().join("kept.json");
        std::fs::write(&kept, serde_json::to_vec(&cps[2]).unwrap()).unwrap();
        assert_eq!(
            verify_export(&path, Some(&kept))
                .unwrap()
                .checkpoints_checked,
            6
        );
        std::fs::write(&kept, serde_json::to_vec(&cps[..2]).unwrap()).unwrap();
        verify_export(&path, Some(&kept)).unwrap();
        // A repacked (deflated) but otherwise identical export is fine.
        let re = dir.path().join("re.zip");
        repack(&re, &files);
        verify_export(&re, None).unwrap();
    }

    #[test]
    fn names_are_joined_next_to_the_ids_and_the_export_still_verifies() {
        let (dir, entries, cps, key) = setup();
        let mut names = Names::new();
        names.insert(
            "acct-1".into(),
            Named {
                name: "Ada Auditor".into(),
                email: "ada@example.gov".into(),
                organisation: Some("=Program Office".into()),
            },
        );
        let path = dir.path().join("named.zip");
        let m = write_export(
            File::create(&path).unwrap(),
            || Ok::<_, io::Error>(entries.iter().cloned().map(Ok)),
            &cps,
            &key,
            names,
        )
        .unwrap();
        assert_eq!(m.version, 2);
        assert_eq!(m.names.as_deref(), Some(NAMES_NOTE));
        assert_eq!(verify_export(&path, None).unwrap().count, 50);
        let files = members(&path);
        let csv = lines(&files[1].1);
        assert_eq!(format!("{}\r\n", csv[0]), CSV_HEADER);
        // Entry 1's actor is acct-1: its name, email and organisation (a formula neutralised) end the row.
        assert!(
            csv[1].ends_with(
                ",\"Ada Auditor\",\"ada@example.gov\",\"'=Program Office\",\"\",\"\",\"\""
            ),
            "{}",
            csv[1]
        );
        let jl = lines(&files[0].1);
        let line: serde_json::Value = serde_json::from_str(&jl[0]).unwrap();
        assert_eq!(line["actor"]["email"], "ada@example.gov");
        // The entry's own fields are unchanged: the chain verifies on them alone.
        let (entry, actor, _) = serde_json::from_str::<LineIn>(&jl[0]).unwrap().split();
        assert_eq!(entry, entries[0]);
        assert_eq!(actor.unwrap().name, "Ada Auditor");
        // A name changed in entries.csv only is a row that differs from entries.jsonl.
        let mut files = files;
        edit(&mut files, ENTRIES_CSV, |b| {
            let t =
                String::from_utf8(b.clone())
                    .unwrap()
                    .replacen("Ada Auditor", "Eve Intruder", 1);
            *b = t.into_bytes();
        });
        let re = dir.path().join("named-edited.zip");
        repack(&re, &files);
        let p = verify_export(&re, None).unwrap_err();
        assert!(p.what.contains("row differs"), "{p:?}");
    }

    #[test]
    fn a_version_1_export_still_verifies() {
        let (dir, entries, cps, key) = setup();
        let (path, _) = export(dir.path(), "v2.zip", &entries, &cps, &key);
        // Rewrite it as version 1 wrote it: the old header, no names, no note in the manifest.
        let mut files = members(&path);
        edit(&mut files, ENTRIES_CSV, |b| {
            let t = String::from_utf8(b.clone()).unwrap();
            let mut out = CSV_HEADER_V1.to_string();
            for row in t.split("\r\n").skip(1).filter(|r| !r.is_empty()) {
                let cut = row.len() - ",\"\"".len() * 6;
                out.push_str(&row[..cut]);
                out.push_str("\r\n");
            }
            *b = out.into_bytes();
        });
        let csv = files
            .iter()
            .find(|(n, _)| n == ENTRIES_CSV)
            .unwrap()
            .1
            .clone();
        edit(&mut files, MANIFEST_JSON, |b| {
            let mut m: ExportManifest = serde_json::from_slice(b).unwrap();
            m.version = 1;
            m.names = None;
            m.files.insert(
                ENTRIES_CSV.into(),
                FileDigest {
                    sha256: hex::encode(Sha256::digest(&csv)),
                    bytes: csv.len() as u64,
                },
            );
            *b = serde_json::to_vec_pretty(&m).unwrap();
        });
        let v1 = dir.path().join("v1.zip");
        repack(&v1, &files);
        assert_eq!(verify_export(&v1, None).unwrap().count, 50);
    }

    #[test]
    fn partial_and_empty_exports() {
        let (dir, entries, cps, key) = setup();
        let (path, m) = export(dir.path(), "p.zip", &entries[15..43], &cps, &key);
        assert_eq!((m.first_seq, m.last_seq), (16, 43));
        assert_eq!(m.checkpoints, cps[2..4].to_vec()); // #21..#30, #31..#40
        let s = verify_export(&path, None).unwrap();
        assert_eq!((s.count, s.checkpoints_checked), (28, 2));
        let (path, m) = export(dir.path(), "e.zip", &[], &cps, &key);
        assert_eq!((m.count, m.checkpoints.len()), (0, 0));
        assert_eq!(verify_export(&path, None).unwrap().count, 0);
    }

    #[test]
    fn tampered_line_in_the_zip() {
        let (dir, entries, cps, key) = setup();
        let (path, _) = export(dir.path(), "a.zip", &entries, &cps, &key);
        let mut files = members(&path);
        edit(&mut files, ENTRIES_JSONL, |b| {
            let mut l = lines(b);
            l[36] = l[36].replace("\"allowed\"", "\"denied\"");
            *b = (l.join("\n") + "\n").into_bytes();
        });
        let bad = dir.path().join("bad.zip");
        repack(&bad, &files);
        let p = verify_export(&bad, None).unwrap_err();
        assert_eq!(p.seq, 37, "{p}");
        // A line that is no longer JSON.
        let mut files = members(&path);
        edit(&mut files, ENTRIES_JSONL, |b| {
            let mut l = lines(b);
            l[9].truncate(20);
            *b = (l.join("\n") + "\n").into_bytes();
        });
        repack(&bad, &files);
        assert_eq!(verify_export(&bad, None).unwrap_err().seq, 10);
        // A changed CSV cell.
        let mut files = members(&path);
        edit(&mut files, ENTRIES_CSV, |b| {
            let mut l = lines(b);
            l[12] = l[12].replace("acct-", "acct+");
            *b = (l.join("\r\n") + "\r\n").into_bytes();
        });
        repack(&bad, &files);
        let p = verify_export(&bad, None).unwrap_err();
        assert_eq!(p.seq, 12, "{p}");
        // A byte flipped in the stored archive itself: the CRC or the hash catches it.
        let mut raw = std::fs::read(&path).unwrap();
        let at = raw.windows(7).position(|w| w == b"acct-3\"").unwrap();
        raw[at + 4] = b'_';
        std::fs::write(&bad, &raw).unwrap();
        assert!(verify_export(&bad, None).is_err());
    }

    #[test]
    fn truncated_export() {
        let (dir, entries, cps, key) = setup();
        let (path, _) = export(dir.path(), "a.zip", &entries, &cps, &key);
        // Tail cut, manifest left alone.
        let mut files = members(&path);
        edit(&mut files, ENTRIES_JSONL, |b| {
            *b = (lines(b)[..45].join("\n") + "\n").into_bytes()
        });
        edit(&mut files, ENTRIES_CSV, |b| {
            *b = (lines(b)[..46].join("\r\n") + "\r\n").into_bytes()
        });
        let bad = dir.path().join("bad.zip");
        repack(&bad, &files);
        let p = verify_export(&bad, None).unwrap_err();
        assert_eq!(p.seq, 46, "{p}");
        // Tail cut and the manifest "fixed" (count, head, digests, last checkpoint dropped):
        // only the auditor's kept checkpoint still shows it.
        let cut = &entries[..45];
        let (fixed, _) = export(dir.path(), "fixed.zip", cut, &cps[..4], &key);
        verify_export(&fixed, None).unwrap();
        let kept = dir.path().join("kept.json");
        std::fs::write(&kept, serde_json::to_vec(&cps[4]).unwrap()).unwrap();
        let p = verify_export(&fixed, Some(&kept)).unwrap_err();
        assert_eq!(p.seq, 46, "{p}");
        assert_eq!(p.what, "log ends at #45 but checkpoint covers #50");
    }

    #[test]
    fn rewritten_chain_with_a_new_key_needs_the_kept_checkpoint() {
        let (dir, entries, cps, _key) = setup();
        let mut t = entries.clone();
        t[26].reason = Some("covered up".into());
        let mut prev = parse_hash_hex(&t[25].entry_hash).unwrap();
        for e in &mut t[26..] {
            e.prev_hash = hex::encode(prev);
            prev = e.computed_hash(&prev);
            e.entry_hash = hex::encode(prev);
        }
        let (attacker, _) = CheckpointSigner::generate();
        let forged = checkpoints_for(&t, 10, &attacker);
        let (path, _) = export(
            dir.path(),
            "forged.zip",
            &t,
            &forged,
            &attacker.public_key_hex(),
        );
        // Self-consistent: passes without an outside reference.
        verify_export(&path, None).expect("uncaught without a kept checkpoint");
        // The auditor's kept checkpoint #21..#30 names that range.
        let kept = dir.path().join("kept.json");
        std::fs::write(&kept, serde_json::to_vec(&[cps[2].clone()]).unwrap()).unwrap();
        let p = verify_export(&path, Some(&kept)).unwrap_err();
        assert_eq!(p.seq, 1, "{p}"); // the export's first checkpoint is under a foreign key
        assert!(p.what.contains("not by the trusted key"), "{p}");
        // Even with the portal's real checkpoints for the untouched ranges kept in the export,
        // the rewritten range is named.
        let mut mixed = cps[..2].to_vec();
        mixed.extend(forged[2..].iter().cloned());
        let (path, _) = export(
            dir.path(),
            "mixed.zip",
            &t,
            &mixed,
            &attacker.public_key_hex(),
        );
        let p = verify_export(&path, Some(&kept)).unwrap_err();
        assert_eq!(p.seq, 21, "{p}");
    }

    #[test]
    fn hostile_archives_are_refused() {
        let (dir, entries, cps, key) = setup();
        let (path, _) = export(dir.path(), "a.zip", &entries[..12], &cps, &key);
        let files = members(&path);
        let bad = dir.path().join("bad.zip");
        // An extra file.
        let mut more = files.clone();
        more.push(("../evil.sh".into(), b"rm -rf /".to_vec()));
        repack(&bad, &more);
        assert_eq!(verify_export(&bad, None).unwrap_err().seq, 0);
        // A missing file.
        repack(&bad, &files[..3]);
        assert_eq!(verify_export(&bad, None).unwrap_err().seq, 0);
        // Not a zip at all.
        std::fs::write(&bad, b"not a zip").unwrap();
        assert_eq!(verify_export(&bad, None).unwrap_err().seq, 0);
        // A duplicate name (the zip crate refuses to write one: written under another name of
        // the same length, then renamed in the raw bytes).
        let mut more = files.clone();
        more.push(("entries.jsonX".into(), b"{}\n".to_vec()));
        repack(&bad, &more);
        let mut raw = std::fs::read(&bad).unwrap();
        let mut renamed = 0;
        while let Some(at) = raw.windows(13).position(|w| w == b"entries.jsonX") {
            raw[at + 12] = b'l';
            renamed += 1;
        }
        assert_eq!(renamed, 2, "local header and central directory");
        std::fs::write(&bad, &raw).unwrap();
        let p = verify_export(&bad, None).unwrap_err();
        assert!(p.what.contains("duplicate"), "{p}");
        // A manifest that is not JSON.
        let mut m = files.clone();
        edit(&mut m, MANIFEST_JSON, |b| b.truncate(10));
        repack(&bad, &m);
        assert_eq!(verify_export(&bad, None).unwrap_err().seq, 0);
        // A manifest digest that does not match.
        let mut m = files.clone();
        edit(&mut m, MANIFEST_JSON, |b| {
            let mut man: ExportManifest = serde_json::from_slice(b).unwrap();
            man.files.get_mut(ENTRIES_CSV).unwrap().sha256 = "00".repeat(32);
            *b = serde_json::to_vec(&man).unwrap();
        });
        repack(&bad, &m);
        let p = verify_export(&bad, None).unwrap_err();
        assert!(p.what.contains("digest"), "{p}");
    }

    #[test]
    fn zip64_records_are_readable() {
        let (dir, entries, cps, key) = setup();
        let path = dir.path().join("z64.zip");
        let mut w = ExportWriter::with_time(File::create(&path).unwrap(), 1_700_000_000).unwrap();
        w.zip.zip.force_zip64_end();
        for e in &entries {
            w.push_jsonl(e).unwrap();
        }
        w.start_csv().unwrap();
        for e in &entries {
            w.push_csv(e).unwrap();
        }
        w.finish(&cps, &key).unwrap();
        let raw = std::fs::read(&path).unwrap();
        assert!(
            raw.windows(4).any(|x| x == b"PK\x06\x06"),
            "ZIP64 end record"
        );
        assert!(raw.windows(4).any(|x| x == b"PK\x06\x07"), "ZIP64 locator");
        let s = verify_export(&path, None).unwrap();
        assert_eq!(s.count, 50);
    }

    #[test]
    fn an_interrupted_export_has_no_central_directory() {
        let (_dir, entries, _cps, _key) = setup();
        let mut raw = Vec::new();
        {
            let mut w = ExportWriter::with_time(&mut raw, 1_700_000_000).unwrap();
            for e in &entries {
                w.push_jsonl(e).unwrap();
            }
            // Dropped here, as when the second pass fails.
        }
        assert!(raw.starts_with(b"PK\x03\x04"));
        assert!(!raw.windows(4).any(|x| x == b"PK\x05\x06"));
        assert!(!raw.windows(4).any(|x| x == b"PK\x01\x02"));
        assert!(zip::ZipArchive::new(Cursor::new(&raw)).is_err());
    }

    #[test]
    fn unzip_tests_an_export_clean() {
        let (dir, entries, cps, key) = setup();
        let (path, _) = export(dir.path(), "a.zip", &entries, &cps, &key);
        match std::process::Command::new("unzip")
            .arg("-tq")
            .arg(&path)
            .output()
        {
            Ok(out) => assert!(
                out.status.success(),
                "{}{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr)
            ),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                panic!("unzip is required for the unzip -t check (apt-get install unzip): {e}")
            }
            Err(e) => panic!("running unzip: {e}"),
        }
    }

    #[test]
    fn csv_guards_against_formulas_and_quotes() {
        let cell = |s: &str| {
            let mut v = Vec::new();
            csv_cell(&mut v, s);
            String::from_utf8(v).unwrap()
        };
        assert_eq!(
            cell("=HYPERLINK(\"http://x\")"),
            "\"'=HYPERLINK(\"\"http://x\"\")\""
        );
        assert_eq!(cell("+1"), "\"'+1\"");
        assert_eq!(cell("-2+3"), "\"'-2+3\"");
        assert_eq!(cell("@SUM(A1)"), "\"'@SUM(A1)\"");
        assert_eq!(cell("\tx"), "\"'\tx\"");
        assert_eq!(cell("\rx"), "\"'\rx\"");
        assert_eq!(cell("＝1+1"), "\"'＝1+1\"");
        assert_eq!(cell("a,b"), "\"a,b\"");
        assert_eq!(cell("plain"), "\"plain\"");
        assert_eq!(cell(""), "\"\"");
        // Through the whole export.
        let e = chain_next(
            None,
            1,
            0,
            NewEntryFields {
                actor_id: Some("=cmd|' /C calc'!A0".into()),
                action: "@x".into(),
                outcome: "-1".into(),
                reason: Some("say \"hi\", then\nleave".into()),
                ..Default::default()
            },
        )
        .unwrap();
        let mut row = Vec::new();
        csv_row(&mut row, &e);
        let row = String::from_utf8(row).unwrap();
        assert!(row.contains(",\"'=cmd|' /C calc'!A0\","), "{row}");
        assert!(row.contains(",\"'@x\","), "{row}");
        assert!(row.contains(",\"'-1\","), "{row}");
        assert!(row.contains(",\"say \"\"hi\"\", then\\nleave\","), "{row}");
        assert_eq!(row.matches("\r\n").count(), 1);
        assert!(row.ends_with("\r\n"));
    }

    #[test]
    fn second_pass_must_match_the_first() {
        let (_dir, entries, cps, key) = setup();
        let mut calls = 0;
        let r = write_export(
            Vec::new(),
            || {
                calls += 1;
                let mut v = entries.clone();
                if calls == 2 {
                    v[3].reason = Some("changed between passes".into());
                }
                Ok::<_, io::Error>(v.into_iter().map(Ok))
            },
            &cps,
            &key,
            Names::new(),
        );
        assert!(matches!(r, Err(ExportError::Inconsistent(_))), "{r:?}");
        // A source error surfaces as such.
        let r = write_export(
            Vec::new(),
            || Ok::<_, io::Error>(vec![Err(io::Error::other("db down"))].into_iter()),
            &cps,
            &key,
            Names::new(),
        );
        assert!(matches!(r, Err(ExportError::Source(_))), "{r:?}");
    }

    #[test]
    fn the_length_found_before_writing_is_the_length_written_and_any_other_fails_the_export() {
        let (_dir, mut entries, cps, key) = setup();
        // Cells that CSV and JSON escape differently (quoted, a formula, a line break, a control, not ASCII).
        entries[0].reason = Some("=\"quoted\", ünïcode\nline\u{1}".into());
        let mut names = Names::new();
        names.insert(
            entries[0].actor_id.clone().unwrap_or_default(),
            Named {
                name: "Ann \"Auditor\" Ünal".into(),
                email: "ann@example.gov".into(),
                organisation: Some("Acme, Inc.".into()),
            },
        );
        let at = 1_790_000_000;
        for take in [0, 1, 50] {
            let source = || Ok::<_, io::Error>(entries[..take].iter().cloned().map(Ok));
            let len = export_length(at, source, &cps, &key, &names).unwrap();
            let mut written = Vec::new();
            write_export_at(&mut written, at, source, &cps, &key, names.clone()).unwrap();
            assert_eq!(len, written.len() as u64, "{take} entries");
            // The way taken past 4 GiB (the archive written whole into a counter) finds the same.
            let whole = written_length(at, source, &cps, &key, &names).unwrap();
            assert_eq!(whole, len, "{take} entries");
            let mut exact = Vec::new();
            write_export_of_len(&mut exact, len, at, source, &cps, &key, names.clone()).unwrap();
            assert_eq!(exact, written);
            // Declared one byte short: nothing past it is written, and the export fails.
            let mut cut = Vec::new();
            let r = write_export_of_len(&mut cut, len - 1, at, source, &cps, &key, names.clone());
            assert!(r.is_err(), "{r:?}");
            assert!(cut.len() < len as usize);
            // Declared one byte long: the export ends short of it and fails.
            let r = write_export_of_len(Vec::new(), len + 1, at, source, &cps, &key, names.clone());
            assert!(matches!(r, Err(ExportError::Inconsistent(_))), "{r:?}");
        }
        // Entries the source yields longer between the count and the export (a reason changed) fail it.
        let len = export_length(
            at,
            || Ok::<_, io::Error>(entries.clone().into_iter().map(Ok)),
            &cps,
            &key,
            &Names::new(),
        )
        .unwrap();
        let mut changed = entries.clone();
        changed[7].reason = Some("longer than it was when the export was counted".into());
        let r = write_export_of_len(
            Vec::new(),
            len,
            at,
            || Ok::<_, io::Error>(changed.clone().into_iter().map(Ok)),
            &cps,
            &key,
            Names::new(),
        );
        assert!(r.is_err(), "{r:?}");
    }
}
