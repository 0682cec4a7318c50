//! The submission package: a zip of named members (cover sheet, manifest, narrative, decrypted
//! attachments) streamed front to back, with the marking text as the archive comment.
//!
//! Nothing is held whole: a member read from a [`Read`] goes through a 64 KiB buffer. A read
//! error (a blob that fails verification) fails the whole write and leaves the archive without
//! its central directory, so a broken export never looks complete.

use std::collections::HashSet;
use std::io::{self, Read, Write};

use super::archive::ZipOut;
use super::{stream_blocking, BlockingBody};

/// Read size for members read from a [`Read`].
const COPY_BUF: usize = 64 * 1024;
/// Longest member name accepted by [`write_package`], in bytes.
const MAX_NAME_BYTES: usize = 512;
/// Longest base name (after the position prefix) made by [`safe_member_name`], in bytes.
const MAX_BASE_BYTES: usize = 100;
/// Longest extension kept apart when a base name is shortened, in bytes.
const MAX_EXT_BYTES: usize = 10;
/// Folder of the attachments inside the package.
pub const ATTACHMENTS_DIR: &str = "attachments";
/// Where the files of the submission's messages go.
pub const MESSAGES_DIR: &str = "messages";

/// Where a member's contents come from.
pub enum EntrySource {
    /// Contents held in memory (cover sheet, manifest, narrative).
    Bytes(Vec<u8>),
    /// Contents read to EOF while the member is written (a decrypting `VerifiedReader`); an
    /// error fails the whole package. With `len`, the reader must give exactly that many bytes
    /// (fewer or more fails the package), and the archive's length can be known before it is
    /// written ([`package_length`]).
    Reader {
        reader: Box<dyn Read + Send>,
        len: Option<u64>,
    },
}

impl std::fmt::Debug for EntrySource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EntrySource::Bytes(b) => write!(f, "Bytes({} bytes)", b.len()),
            EntrySource::Reader { len, .. } => write!(f, "Reader({len:?} bytes)"),
        }
    }
}

/// One member of a package. `name` must be safe (see [`is_safe_member_name`]): fixed names, or
/// names made by [`safe_member_name`].
#[derive(Debug)]
pub struct PackageEntry {
    pub name: String,
    pub source: EntrySource,
}

impl PackageEntry {
    pub fn bytes(name: impl Into<String>, bytes: impl Into<Vec<u8>>) -> Self {
        PackageEntry {
            name: name.into(),
            source: EntrySource::Bytes(bytes.into()),
        }
    }

    pub fn reader(name: impl Into<String>, reader: impl Read + Send + 'static) -> Self {
        PackageEntry {
            name: name.into(),
            source: EntrySource::Reader {
                reader: Box::new(reader),
                len: None,
            },
        }
    }

    /// A member read from `reader`, which must give exactly `len` bytes.
    pub fn reader_of_len(
        name: impl Into<String>,
        reader: impl Read + Send + 'static,
        len: u64,
    ) -> Self {
        PackageEntry {
            name: name.into(),
            source: EntrySource::Reader {
                reader: Box::new(reader),
                len: Some(len),
            },
        }
    }

    /// The same member with a reader's contents replaced by zeros, of its length or (`empty`) of none; `None` for a
    /// reader of unknown length. The archive's layout depends on names and lengths only.
    fn same_shape(&self, empty: bool) -> Option<PackageEntry> {
        let source = match &self.source {
            EntrySource::Bytes(b) => EntrySource::Bytes(b.clone()),
            EntrySource::Reader { len: Some(len), .. } => {
                let len = if empty { 0 } else { *len };
                EntrySource::Reader {
                    reader: Box::new(io::repeat(0).take(len)),
                    len: Some(len),
                }
            }
            EntrySource::Reader { len: None, .. } => return None,
        };
        Some(PackageEntry {
            name: self.name.clone(),
            source,
        })
    }
}

/// A reader that must give exactly `left` more bytes: an early end or a byte past them is an error.
struct ExactLen<'a> {
    inner: &'a mut dyn Read,
    left: u64,
}

impl Read for ExactLen<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.left == 0 {
            // Past the promised length: one byte more fails it.
            let mut extra = [0u8; 1];
            return match self.inner.read(&mut extra)? {
                0 => Ok(0),
                _ => Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "longer than its recorded length",
                )),
            };
        }
        let want = buf
            .len()
            .min(usize::try_from(self.left).unwrap_or(usize::MAX));
        let n = self.inner.read(&mut buf[..want])?;
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "shorter than its recorded length",
            ));
        }
        self.left -= n as u64;
        Ok(n)
    }
}

/// The exact length of the archive [`write_package`] makes of `entries` with `comment`, when every reader's length
/// is known (`None` otherwise), found without reading them: the same archive is written, counted and not kept,
/// with the readers' contents left out, and their lengths added. That holds while every size and offset stays
/// under 4 GiB (a stored member's bytes change only its CRC, whose size is fixed; past 4 GiB ZIP64 fields come in):
/// a larger archive is written whole with zeros for contents instead (a CRC pass over its length, no memory). With
/// it the archive can be sent with `Content-Length`, so that one cut short by a failing source is seen as cut by
/// every client.
pub fn package_length(entries: &[PackageEntry], comment: &str) -> io::Result<Option<u64>> {
    let shapes = |empty| {
        entries
            .iter()
            .map(|e| e.same_shape(empty))
            .collect::<Option<Vec<_>>>()
    };
    let Some(empty) = shapes(true) else {
        return Ok(None);
    };
    let contents: u64 = entries
        .iter()
        .map(|e| match e.source {
            EntrySource::Reader { len: Some(len), .. } => len,
            _ => 0,
        })
        .sum();
    let length = write_package(io::sink(), empty, comment)?.saturating_add(contents);
    if length < u64::from(u32::MAX) {
        return Ok(Some(length));
    }
    match shapes(false) {
        Some(whole) => write_package(io::sink(), whole, comment).map(Some),
        None => Ok(None),
    }
}

/// Counts the bytes that reach the output (`io::sink()` for a length alone).
pub(crate) struct Counting<W: Write> {
    pub(crate) inner: W,
    pub(crate) count: u64,
}

impl<W: Write> Write for Counting<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.inner.write(buf)?;
        self.count += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

fn invalid(msg: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidInput, msg.into())
}

/// Bidirectional formatting controls (embeddings, overrides, isolates, marks), which can make a
/// name display differently from what it is (`evil\u{202E}fdp.exe` shows as `evilexe.pdf`).
pub(crate) fn is_bidi_control(c: char) -> bool {
    matches!(
        c,
        '\u{061C}' | '\u{200E}' | '\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}'
    )
}

/// Characters that may appear in a member name: no control, format or bidi characters, nothing
/// that Windows refuses in a file name (`\` and `:` among them), `/` only as the separator.
fn is_safe_name_char(c: char) -> bool {
    !(c.is_control()
        || is_bidi_control(c)
        || matches!(c, '\\' | ':' | '*' | '?' | '"' | '<' | '>' | '|')
        || matches!(
            c,
            '\u{200B}'..='\u{200D}' | '\u{2028}' | '\u{2029}' | '\u{FEFF}'
        ))
}

/// Whether `name` is a safe member name: relative, `/`-separated, no empty, `.` or `..`
/// component, no component starting with `.` or ending in `.` or space, only safe characters,
/// at most [`MAX_NAME_BYTES`].
pub fn is_safe_member_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME_BYTES
        && name.chars().all(is_safe_name_char)
        && name.split('/').all(|part| {
            !part.is_empty()
                && !part.starts_with(['.', ' '])
                && !part.ends_with(['.', ' '])
                && !part.contains("..")
        })
}

/// Whether the comment can be shown safely (`unzip -z` prints it to a terminal): at most 65,535
/// bytes, no control characters but tab and line breaks (so no end-record signature either), no
/// bidi controls.
fn check_comment(comment: &str) -> io::Result<()> {
    if comment.len() > usize::from(u16::MAX) {
        return Err(invalid("the package comment is longer than 65,535 bytes"));
    }
    if comment
        .chars()
        .any(|c| (c.is_control() && !matches!(c, '\t' | '\n' | '\r')) || is_bidi_control(c))
    {
        return Err(invalid("the package comment holds control characters"));
    }
    Ok(())
}

/// Copies `r` to EOF into `w` through a fixed buffer; read errors are reported as such.
fn copy_member(r: &mut dyn Read, w: &mut impl Write, index: usize) -> io::Result<u64> {
    let mut buf = vec![0u8; COPY_BUF];
    let mut total = 0u64;
    loop {
        let n = match r.read(&mut buf) {
            Ok(0) => return Ok(total),
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            // The position, never the name: names are submission data.
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("reading package member {index}: {e}"),
                ))
            }
        };
        w.write_all(&buf[..n])?;
        total += n as u64;
    }
}

/// Writes the package to `out` (a plain `Write`, no `Seek`): the entries in order, each stored,
/// then the central directory with `comment` as the archive comment. Returns the archive's
/// length.
///
/// Fails before writing anything on an unsafe or duplicate name (compared ignoring case, as
/// Windows and macOS would on extraction) or an unfit comment. A `Reader` source that returns an
/// error makes the whole write fail: the archive is left without its central directory, so it
/// never looks complete.
pub fn write_package(
    out: impl Write,
    entries: impl IntoIterator<Item = PackageEntry>,
    comment: &str,
) -> io::Result<u64> {
    check_comment(comment)?;
    let mut zip = ZipOut::new(
        Counting {
            inner: out,
            count: 0,
        },
        chrono::Utc::now().timestamp(),
    );
    zip.set_comment(comment)?;
    let mut seen = HashSet::new();
    for (index, entry) in entries.into_iter().enumerate() {
        if !is_safe_member_name(&entry.name) {
            return Err(invalid(format!(
                "package member {index} has an unsafe name"
            )));
        }
        if !seen.insert(entry.name.to_lowercase()) {
            return Err(invalid(format!(
                "package member {index} repeats an earlier name"
            )));
        }
        match entry.source {
            EntrySource::Bytes(bytes) => {
                let large = bytes.len() as u64 >= u64::from(u32::MAX);
                zip.start(&entry.name, large)?;
                zip.write_all(&bytes)?;
            }
            EntrySource::Reader { mut reader, len } => {
                // Size unknown (or not trusted) until EOF: ZIP64 fields from the start.
                zip.start(&entry.name, true)?;
                match len {
                    Some(len) => copy_member(
                        &mut ExactLen {
                            inner: reader.as_mut(),
                            left: len,
                        },
                        &mut zip,
                        index,
                    )?,
                    None => copy_member(reader.as_mut(), &mut zip, index)?,
                };
            }
        }
    }
    let out = zip.finish()?;
    Ok(out.count)
}

/// Streams [`write_package`] from a thread of its own through a small bounded channel (at most a
/// few 64 KiB chunks in memory) and returns the async side, for a streamed response body. The
/// body fails (never ends cleanly) if writing failed; dropping it stops the thread at its next
/// write.
pub fn package_stream(entries: Vec<PackageEntry>, comment: String) -> BlockingBody {
    stream_blocking("submission export", move |out| {
        write_package(out, entries, &comment).map(|_| ())
    })
}

/// Replaces what is not a letter, digit or one of ` -_.()+,` by `_`, collapses runs of `_`,
/// spaces and dots, and trims dots, spaces and `_` from both ends.
fn readable(base: &str) -> String {
    let mut s = String::with_capacity(base.len());
    for c in base.chars() {
        let c = if c.is_alphanumeric() || matches!(c, ' ' | '-' | '_' | '.' | '(' | ')' | '+' | ',')
        {
            c
        } else {
            '_'
        };
        if matches!(c, '_' | ' ' | '.') && s.ends_with(c) {
            continue;
        }
        s.push(c);
    }
    s.trim_matches(['.', ' ', '_']).to_owned()
}

/// Cuts `s` to at most `max` bytes at a character boundary, without trailing dots or spaces.
fn cut(s: &str, max: usize) -> &str {
    let mut end = s.len().min(max);
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].trim_end_matches(['.', ' ', '_'])
}

/// Splits off a sensible extension: short, ASCII letters and digits, after a non-empty stem.
fn split_ext(name: &str) -> (&str, Option<&str>) {
    match name.rsplit_once('.') {
        Some((stem, ext))
            if !stem.is_empty()
                && (1..=MAX_EXT_BYTES).contains(&ext.len())
                && ext.bytes().all(|b| b.is_ascii_alphanumeric()) =>
        {
            (stem, Some(ext))
        }
        _ => (name, None),
    }
}

/// A safe, unique member name for an attachment: `attachments/NN-<base>`, where NN is
/// `position` (two digits at least) and `<base>` a readable form of the original's last path
/// component (letters and digits of any script, ` -_.()+,`; everything else `_`; no leading or
/// trailing dots or spaces; at most ~100 bytes, keeping a short extension), or `file` when
/// nothing is left. If the name (ignoring case) is in `used`, ` (2)`, ` (3)`... is added before
/// the extension. The name returned is added to `used`.
pub fn safe_member_name(position: usize, original: &str, used: &mut HashSet<String>) -> String {
    safe_member_name_in(ATTACHMENTS_DIR, position, original, used)
}

/// The last part of a name that came with a path (either separator), blank parts skipped: "" if it has none.
pub fn last_path_part(name: &str) -> &str {
    name.rsplit(['/', '\\'])
        .find(|p| !p.trim().is_empty())
        .unwrap_or("")
}

/// [`safe_member_name`] under the folder `dir` (one of this module's `*_DIR` names) instead of
/// `attachments/`.
pub fn safe_member_name_in(
    dir: &str,
    position: usize,
    original: &str,
    used: &mut HashSet<String>,
) -> String {
    let mut base = readable(last_path_part(original));
    if base.is_empty() {
        base = "file".to_owned();
    }
    let (stem, ext) = split_ext(&base);
    let taken = |candidate: &str, used: &HashSet<String>| {
        let lower = candidate.to_lowercase();
        used.iter().any(|u| u.to_lowercase() == lower)
    };
    let mut n = 1usize;
    loop {
        let suffix = if n == 1 {
            String::new()
        } else {
            format!(" ({n})")
        };
        let ext_part = ext.map(|e| format!(".{e}")).unwrap_or_default();
        let stem_room = MAX_BASE_BYTES.saturating_sub(suffix.len() + ext_part.len());
        let mut stem_cut = cut(stem, stem_room);
        if stem_cut.is_empty() {
            stem_cut = "file";
        }
        let candidate = format!("{dir}/{position:02}-{stem_cut}{suffix}{ext_part}");
        if !taken(&candidate, used) {
            debug_assert!(is_safe_member_name(&candidate), "{candidate:?}");
            used.insert(candidate.clone());
            return candidate;
        }
        n += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;
    use std::path::Path;
    use std::process::Command;

    /// A deterministic, non-repeating-ish byte stream of `len` bytes, generated on the fly.
    struct Generated {
        pos: u64,
        len: u64,
    }

    fn byte_at(i: u64) -> u8 {
        let x = i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        (x >> 56) as u8 ^ (i as u8)
    }

    impl Read for Generated {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            let n = (buf.len() as u64).min(self.len - self.pos) as usize;
            for (k, b) in buf[..n].iter_mut().enumerate() {
                *b = byte_at(self.pos + k as u64);
            }
            self.pos += n as u64;
            Ok(n)
        }
    }

    /// Yields `ok` bytes, then an error like a blob failing verification.
    struct FailsAfter(usize);

    impl Read for FailsAfter {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.0 == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    "blob 00ff failed verification",
                ));
            }
            let n = buf.len().min(self.0);
            buf[..n].fill(b'x');
            self.0 -= n;
            Ok(n)
        }
    }

    /// Records the total and the largest single write.
    struct Meter<W> {
        inner: W,
        total: u64,
        max_write: usize,
    }

    impl<W: Write> Write for Meter<W> {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.max_write = self.max_write.max(buf.len());
            let n = self.inner.write(buf)?;
            self.total += n as u64;
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            self.inner.flush()
        }
    }

    const MARKING: &str = "PROTECTED CRITICAL INFRASTRUCTURE INFORMATION\r\n\
Requirements for use (nondisclosure) apply: 6 U.S.C. 671-674; 6 CFR part 29.";

    fn sample_entries() -> (Vec<PackageEntry>, Vec<(String, Vec<u8>)>) {
        let binary: Vec<u8> = (0..300_000u32).map(|i| byte_at(u64::from(i))).collect();
        let mut used = HashSet::new();
        let a1 = safe_member_name(1, "Plan Überprüfung.pdf", &mut used);
        let a2 = safe_member_name(2, "empty.txt", &mut used);
        let expected = vec![
            ("COVER-SHEET.txt".to_owned(), MARKING.as_bytes().to_vec()),
            ("manifest.json".to_owned(), b"{\"files\":2}\n".to_vec()),
            ("narrative.txt".to_owned(), "Narrative – ünïcödé\n".into()),
            (a1.clone(), binary.clone()),
            (a2.clone(), Vec::new()),
        ];
        let entries = vec![
            PackageEntry::bytes("COVER-SHEET.txt", MARKING),
            PackageEntry::bytes("manifest.json", "{\"files\":2}\n"),
            PackageEntry::bytes("narrative.txt", "Narrative – ünïcödé\n"),
            PackageEntry::reader(a1, Cursor::new(binary)),
            PackageEntry::reader(a2, io::empty()),
        ];
        (entries, expected)
    }

    fn eocd(raw: &[u8]) -> Option<usize> {
        raw.windows(4).rposition(|w| w == b"PK\x05\x06")
    }

    /// `unzip -t -q` on `path`. A missing unzip fails the test: the check is part of what the suite
    /// verifies (CI installs it), so it is never skipped.
    fn unzip_test(path: &Path) -> std::process::Output {
        match Command::new("unzip").arg("-tq").arg(path).output() {
            Ok(o) => o,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                panic!("unzip is required for the unzip -t check (apt-get install unzip): {e}")
            }
            Err(e) => panic!("running unzip: {e}"),
        }
    }

    #[test]
    fn package_round_trips_byte_identical_with_the_marking_as_comment() {
        let (entries, expected) = sample_entries();
        let mut raw = Vec::new();
        let len = write_package(&mut raw, entries, MARKING).unwrap();
        assert_eq!(len, raw.len() as u64);
        let mut z = zip::ZipArchive::new(Cursor::new(&raw)).unwrap();
        assert_eq!(z.comment(), MARKING.as_bytes());
        assert_eq!(z.len(), expected.len());
        assert!(!z.has_duplicate_names());
        for (i, (name, bytes)) in expected.iter().enumerate() {
            let mut f = z.by_index(i).unwrap();
            assert_eq!(f.name().unwrap(), name.as_str());
            assert!(f.is_file() && !f.is_symlink() && f.enclosed_name().is_some());
            assert_eq!(f.compression(), zip::CompressionMethod::Stored);
            let mut got = Vec::new();
            f.read_to_end(&mut got).unwrap();
            assert!(got == *bytes, "{name} differs");
        }
    }

    /// The same members, every reader with its length.
    fn sized(entries: Vec<PackageEntry>) -> Vec<PackageEntry> {
        entries
            .into_iter()
            .map(|e| match e.source {
                EntrySource::Reader { mut reader, .. } => {
                    let mut bytes = Vec::new();
                    reader.read_to_end(&mut bytes).unwrap();
                    let len = bytes.len() as u64;
                    PackageEntry::reader_of_len(e.name, Cursor::new(bytes), len)
                }
                bytes => PackageEntry {
                    name: e.name,
                    source: bytes,
                },
            })
            .collect()
    }

    #[test]
    fn the_length_known_before_writing_is_the_length_written() {
        let (entries, expected) = sample_entries();
        // A reader of unknown length: no length before writing.
        assert_eq!(package_length(&entries, MARKING).unwrap(), None);
        let mut entries = sized(entries);
        let mut used = HashSet::new();
        let big: Vec<u8> = (0..2_500_000u64).map(byte_at).collect();
        entries.push(PackageEntry::reader_of_len(
            safe_member_name_in(MESSAGES_DIR, 1, "Réponse (finale).xlsx", &mut used),
            Cursor::new(big.clone()),
            big.len() as u64,
        ));
        let known = package_length(&entries, MARKING).unwrap().unwrap();
        let mut raw = Vec::new();
        let written = write_package(&mut raw, entries, MARKING).unwrap();
        assert_eq!((known, written), (raw.len() as u64, raw.len() as u64));
        let z = zip::ZipArchive::new(Cursor::new(&raw)).unwrap();
        assert_eq!(z.len(), expected.len() + 1);
    }

    #[test]
    fn a_member_shorter_or_longer_than_its_length_fails_the_package() {
        let member = |len| {
            vec![PackageEntry::reader_of_len(
                "attachments/01-a.bin",
                Cursor::new(vec![7u8; 100_000]),
                len,
            )]
        };
        for wrong in [99_999, 100_001, 0] {
            let mut raw = Vec::new();
            let err = write_package(&mut raw, member(wrong), MARKING).unwrap_err();
            assert!(err.to_string().contains("package member 0"), "{err}");
            assert_eq!(eocd(&raw), None, "{wrong}: no central directory");
        }
        let mut raw = Vec::new();
        assert!(write_package(&mut raw, member(100_000), MARKING).is_ok());
    }

    #[test]
    fn unzip_tests_the_package_clean() {
        let (entries, expected) = sample_entries();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("package.zip");
        write_package(std::fs::File::create(&path).unwrap(), entries, MARKING).unwrap();
        let out = unzip_test(&path);
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{stdout}{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(stdout.contains("No errors detected"), "{stdout}");
        // unzip extracts the same bytes under the same names.
        let x = dir.path().join("x");
        let st = Command::new("unzip")
            .arg("-qo")
            .arg(&path)
            .arg("-d")
            .arg(&x)
            .status()
            .unwrap();
        assert!(st.success());
        for (name, bytes) in &expected {
            assert!(std::fs::read(x.join(name)).unwrap() == *bytes, "{name}");
        }
    }

    #[test]
    fn a_failing_reader_fails_the_write_and_leaves_no_central_directory() {
        let mut raw = Vec::new();
        let entries = vec![
            PackageEntry::bytes("COVER-SHEET.txt", MARKING),
            PackageEntry::reader("attachments/01-a.bin", FailsAfter(200_000)),
            PackageEntry::bytes("never.txt", "not reached"),
        ];
        let e = write_package(&mut raw, entries, MARKING).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidData);
        assert_eq!(
            e.to_string(),
            "reading package member 1: blob 00ff failed verification"
        );
        assert!(raw.len() > 200_000, "streamed up to the failure");
        assert!(raw.ends_with(&[b'x'; 1000]), "nothing after the failure");
        assert_eq!(eocd(&raw), None, "no end of central directory record");
        assert!(!raw.windows(4).any(|w| w == b"PK\x01\x02"));
        assert!(zip::ZipArchive::new(Cursor::new(&raw)).is_err());
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("broken.zip");
        std::fs::write(&path, &raw).unwrap();
        let out = unzip_test(&path);
        assert!(!out.status.success());
    }

    #[test]
    fn unsafe_names_duplicates_and_bad_comments_are_refused_before_writing() {
        for name in [
            "../x",
            "/etc/passwd",
            "a//b",
            "a/./b",
            ".hidden",
            "a\\b",
            "C:x",
            "a\u{202E}b",
            "nul\0",
            "",
            "dir/",
        ] {
            let mut raw = Vec::new();
            let e = write_package(&mut raw, [PackageEntry::bytes(name, "x")], "").unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput, "{name:?}");
            assert!(raw.is_empty(), "{name:?}");
        }
        let dup = [
            PackageEntry::bytes("a.txt", "1"),
            PackageEntry::bytes("A.TXT", "2"),
        ];
        assert!(write_package(io::sink(), dup, "").is_err());
        for comment in ["PK\x05\x06", "\x1b[2J", "a\u{202E}b", &"x".repeat(70_000)] {
            let mut raw = Vec::new();
            let e = write_package(&mut raw, [PackageEntry::bytes("a", "x")], comment).unwrap_err();
            assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
            assert!(raw.is_empty());
        }
    }

    #[test]
    fn hostile_names_become_safe_and_unique() {
        let hostile = [
            "../../x",
            "/etc/passwd",
            "..\\..\\windows\\system32\\evil.dll",
            "C:\\Users\\x\\report.pdf",
            "nul\0byte.txt",
            &"A".repeat(10_240),
            &format!("{}.pdf", "ü".repeat(5_000)),
            "bell\x07tab\tnewline\n.txt",
            "invoice\u{202E}fdp.exe",
            "iso\u{2066}late\u{2069}.txt",
            ".",
            "..",
            "...",
            "",
            "   ",
            "/",
            ".bashrc",
            "report.pdf",
            "report.pdf",
            "REPORT.PDF",
            "a:b*c?d\"e<f>g|h",
            "zero\u{200B}width\u{FEFF}.txt",
            "trailing dot. ",
            "file.tar.gz",
        ];
        let mut used = HashSet::new();
        used.insert("attachments/18-report.pdf".to_owned());
        let mut names = Vec::new();
        for (i, original) in hostile.iter().enumerate() {
            let pos = if original.starts_with("report") || *original == "REPORT.PDF" {
                18
            } else {
                i + 1
            };
            let name = safe_member_name(pos, original, &mut used);
            assert!(is_safe_member_name(&name), "{original:?} -> {name:?}");
            let rest = name.strip_prefix("attachments/").unwrap();
            assert!(!rest.contains('/'), "{name:?}");
            assert!(rest.len() <= 100 + 10, "{name:?} ({} bytes)", rest.len());
            assert!(!name.contains(".."), "{name:?}");
            assert!(!name.chars().any(|c| c.is_control() || is_bidi_control(c)));
            names.push(name);
        }
        let lower: HashSet<String> = names.iter().map(|n| n.to_lowercase()).collect();
        assert_eq!(lower.len(), names.len(), "{names:#?}");
        assert_eq!(names[0], "attachments/01-x");
        assert_eq!(names[1], "attachments/02-passwd");
        assert_eq!(names[2], "attachments/03-evil.dll");
        assert_eq!(names[3], "attachments/04-report.pdf");
        assert_eq!(names[4], "attachments/05-nul_byte.txt");
        assert!(names[6].ends_with(".pdf") && names[6].contains("üü"));
        assert_eq!(names[7], "attachments/08-bell_tab_newline.txt");
        assert_eq!(names[8], "attachments/09-invoice_fdp.exe");
        for i in [10, 11, 12, 13, 14, 15] {
            assert_eq!(names[i], format!("attachments/{:02}-file", i + 1));
        }
        assert_eq!(names[16], "attachments/17-bashrc");
        // Taken by the caller, then by each other (case-insensitively).
        assert_eq!(names[17], "attachments/18-report (2).pdf");
        assert_eq!(names[18], "attachments/18-report (3).pdf");
        assert_eq!(names[19], "attachments/18-REPORT (4).PDF");
        assert_eq!(names[20], "attachments/21-a_b_c_d_e_f_g_h");
        assert_eq!(names[21], "attachments/22-zero_width.txt");
        assert_eq!(names[22], "attachments/23-trailing dot");
        assert_eq!(names[23], "attachments/24-file.tar.gz");
        assert!(used.len() == names.len() + 1);

        // Every one of them goes into a package that reads back.
        let entries: Vec<PackageEntry> = names
            .iter()
            .map(|n| PackageEntry::bytes(n.clone(), n.clone()))
            .collect();
        let mut raw = Vec::new();
        write_package(&mut raw, entries, "").unwrap();
        let mut z = zip::ZipArchive::new(Cursor::new(&raw)).unwrap();
        assert_eq!(z.len(), names.len());
        for n in &names {
            let mut s = String::new();
            z.by_name(n).unwrap().read_to_string(&mut s).unwrap();
            assert_eq!(&s, n);
        }
    }

    #[test]
    fn a_large_reader_entry_streams_through_small_writes() {
        const LEN: u64 = 256 << 20;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("large.zip");
        let mut meter = Meter {
            inner: std::fs::File::create(&path).unwrap(),
            total: 0,
            max_write: 0,
        };
        let entries = vec![
            PackageEntry::bytes("COVER-SHEET.txt", MARKING),
            PackageEntry::reader("attachments/01-large.bin", Generated { pos: 0, len: LEN }),
        ];
        let written = write_package(&mut meter, entries, MARKING).unwrap();
        assert_eq!(written, meter.total);
        assert!(written > LEN);
        // Never more than one copy buffer at a time, whatever the entry's size.
        assert!(meter.max_write <= COPY_BUF, "{}", meter.max_write);
        drop(meter);

        let mut z = zip::ZipArchive::new(std::fs::File::open(&path).unwrap()).unwrap();
        let mut f = z.by_name("attachments/01-large.bin").unwrap();
        assert_eq!(f.size(), LEN);
        let mut buf = vec![0u8; COPY_BUF];
        let mut pos = 0u64;
        loop {
            let n = f.read(&mut buf).unwrap();
            if n == 0 {
                break;
            }
            assert!(
                buf[..n]
                    .iter()
                    .enumerate()
                    .all(|(k, &b)| b == byte_at(pos + k as u64)),
                "differs near {pos}"
            );
            pos += n as u64;
        }
        assert_eq!(pos, LEN);
        drop(f);
        let out = unzip_test(&path);
        assert!(out.status.success(), "{out:?}");
    }

    #[tokio::test]
    async fn package_stream_delivers_the_archive_and_fails_on_a_bad_blob() {
        use tokio::io::AsyncReadExt;
        let (entries, expected) = sample_entries();
        let mut body = package_stream(entries, MARKING.to_owned());
        let mut raw = Vec::new();
        body.read_to_end(&mut raw).await.unwrap();
        let z = zip::ZipArchive::new(Cursor::new(&raw)).unwrap();
        assert_eq!(z.len(), expected.len());
        assert_eq!(z.comment(), MARKING.as_bytes());

        let entries = vec![
            PackageEntry::bytes("COVER-SHEET.txt", MARKING),
            PackageEntry::reader("attachments/01-a.bin", FailsAfter(300_000)),
        ];
        let mut body = package_stream(entries, MARKING.to_owned());
        let mut raw = Vec::new();
        let e = body.read_to_end(&mut raw).await.unwrap_err();
        // The client learns only that it failed.
        assert_eq!(e.to_string(), "the submission export failed");
        assert_eq!(eocd(&raw), None);
    }

    #[test]
    fn a_tampered_blob_fails_the_package_and_an_intact_one_is_byte_identical() {
        use crate::crypto::keys::KeyRing;
        use crate::crypto::stream::{open_verified, seal_reader};
        use crate::storage::FsBlobStore;
        let tmp = tempfile::tempdir().unwrap();
        let store = FsBlobStore::open(&tmp.path().join("blobs")).unwrap();
        let (ring, _) = KeyRing::load_or_generate(&tmp.path().join("keys"), &[]).unwrap();
        let plain: Vec<u8> = (0..300_000u64).map(byte_at).collect();
        let sealed = seal_reader(&store, &(&ring).into(), &plain[..]).unwrap();
        let open = || {
            let b = sealed.blob_ref();
            open_verified(&store, &b.name, &ring, &b.ciphertext_sha256).unwrap()
        };
        let package = |reader| {
            let mut raw = Vec::new();
            let entries = vec![
                PackageEntry::bytes("COVER-SHEET.txt", MARKING),
                PackageEntry::reader("attachments/01-a.bin", reader),
            ];
            let r = write_package(&mut raw, entries, MARKING);
            (r, raw)
        };

        let (r, raw) = package(open());
        r.unwrap();
        let mut z = zip::ZipArchive::new(Cursor::new(&raw)).unwrap();
        let mut got = Vec::new();
        z.by_name("attachments/01-a.bin")
            .unwrap()
            .read_to_end(&mut got)
            .unwrap();
        assert!(got == plain);

        // One bit flipped in the middle of the stored ciphertext.
        let path = tmp.path().join("blobs").join(&sealed.name);
        let mut blob = std::fs::read(&path).unwrap();
        let mid = blob.len() / 2;
        blob[mid] ^= 0x01;
        std::fs::write(&path, &blob).unwrap();
        let (r, raw) = package(open());
        assert_eq!(r.unwrap_err().kind(), io::ErrorKind::InvalidData);
        assert_eq!(eocd(&raw), None);
        assert!(zip::ZipArchive::new(Cursor::new(&raw)).is_err());
    }

    #[test]
    #[ignore = "writes a 4.2 GiB file; run by hand"]
    fn an_entry_over_4_gib_uses_zip64() {
        const LEN: u64 = (4 << 30) + (200 << 20);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("huge.zip");
        let entries = vec![PackageEntry::reader_of_len(
            "attachments/01-huge.bin",
            Generated { pos: 0, len: LEN },
            LEN,
        )];
        // Past 4 GiB the length known before writing comes from the whole archive written with zeros.
        let known = package_length(&entries, MARKING).unwrap();
        let out = io::BufWriter::new(std::fs::File::create(&path).unwrap());
        let written = write_package(out, entries, MARKING).unwrap();
        assert_eq!(known, Some(written));
        assert_eq!(std::fs::metadata(&path).unwrap().len(), written);
        let mut z = zip::ZipArchive::new(std::fs::File::open(&path).unwrap()).unwrap();
        let mut f = z.by_index(0).unwrap();
        assert_eq!(f.size(), LEN);
        assert_eq!(io::copy(&mut f, &mut io::sink()).unwrap(), LEN);
        drop(f);
        let out = unzip_test(&path);
        assert!(out.status.success(), "{out:?}");
    }
}
