//! Lets a part header carry any byte, so a hostile file name is stored as data.
//!
//! multer hands each part's header block to httparse, which refuses control characters (RFC 7578
//! allows none there). Browsers percent-encode them, but a hand-made request can put a raw NUL, ESC
//! or line break inside `filename="…"`, and the whole form would be refused. This adapter sits in
//! front of multer. It follows the multipart framing and, only inside part header blocks,
//! percent-escapes `%` and every control character that would break the header: DEL and the C0
//! controls other than tab, CR and LF only inside a quoted parameter value (elsewhere they end
//! lines). [`file_name`] undoes it. Body bytes pass through untouched and uncopied. Finding the
//! delimiters costs one SIMD substring search over the body (memchr's, the same one multer runs).
//!
//! It also caps the preamble and each header block, which multer would otherwise buffer without
//! limit while it waits for a delimiter or a blank line.

use std::borrow::Cow;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::{Bytes, BytesMut};
use futures::Stream;
use memchr::memmem::Finder;
use percent_encoding::{percent_decode_str, percent_encode_byte};

/// Bytes allowed before the first delimiter (browsers send none).
const PREAMBLE_MAX: usize = 64 * 1024;
/// Bytes allowed in one part's header block, before escaping: room for a 10 KB file name written
/// as multi-byte characters, with its headers.
pub const HEADER_BLOCK_MAX: usize = 64 * 1024;

/// The error the stream yields when the preamble or a header block is over its cap.
#[derive(Debug)]
pub struct HeaderTooLong;

impl std::fmt::Display for HeaderTooLong {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a multipart part header or preamble is over its size limit")
    }
}

impl std::error::Error for HeaderTooLong {}

impl HeaderTooLong {
    /// Whether multer's error is this one, passed through from the stream.
    pub fn caused(e: &multer::Error) -> bool {
        matches!(e, multer::Error::StreamReadFailed(inner)
            if inner
                .downcast_ref::<std::io::Error>()
                .and_then(|e| e.get_ref())
                .is_some_and(|e| e.is::<HeaderTooLong>()))
    }
}

/// A file name as the client sent it, from the name multer parsed out of an escaped header.
pub fn file_name(escaped: &str) -> String {
    // Every `%` in a header block was escaped, so each `%XX` here is ours and decodes to an ASCII
    // byte: the result is the original text (lossy only if that invariant were broken).
    match percent_decode_str(escaped).decode_utf8_lossy() {
        Cow::Borrowed(s) => s.to_string(),
        Cow::Owned(s) => s,
    }
}

enum Phase {
    /// Body bytes (or the preamble): looking for the next delimiter.
    Seeking,
    /// After a delimiter, up to and including the line break that ends its line. `dashes` counts
    /// leading `-` (two make it the closing delimiter).
    DelimiterLine { dashes: u8 },
    /// A part's header block, up to and including the blank line.
    Headers {
        /// How much of `\r\n\r\n` (outside quotes) was just seen.
        blank: u8,
        /// The last byte outside quotes, spaces aside, was `=`: a `"` now opens a quoted string
        /// (a parameter value, as multer reads `name=` and `filename=`).
        after_equals: bool,
        quoted: bool,
        /// Inside quotes, the last byte was `\`: a `"` now does not close (multer's rule).
        backslash: bool,
    },
    /// After the closing delimiter: the epilogue, which multer never reads.
    Done,
}

pub struct PartHeaderEscaper<S> {
    inner: S,
    /// `--boundary` until the first one is found, `\r\n--boundary` after (as multer looks for them).
    finder: Finder<'static>,
    /// The `\r\n--boundary` finder while still in the preamble; `None` once the first was found.
    later: Option<Finder<'static>>,
    phase: Phase,
    /// The last few body bytes, too few to hold a delimiter: one may continue in the next chunk.
    tail: Vec<u8>,
    /// Bytes of the preamble or of the current delimiter line and header block so far.
    counted: usize,
}

impl<S> PartHeaderEscaper<S> {
    pub fn new(inner: S, boundary: &str) -> Self {
        PartHeaderEscaper {
            inner,
            finder: Finder::new(format!("--{boundary}").as_bytes()).into_owned(),
            later: Some(Finder::new(format!("\r\n--{boundary}").as_bytes()).into_owned()),
            phase: Phase::Seeking,
            tail: Vec::new(),
            counted: 0,
        }
    }

    /// Where the delimiter that ends the body bytes from `chunk[from..]` on ends, if it is in this
    /// chunk (it may have started in the previous one).
    fn find_delimiter(&self, chunk: &[u8], from: usize) -> Option<usize> {
        let n = self.finder.needle().len();
        if from == 0 && !self.tail.is_empty() {
            let mut window = self.tail.clone();
            window.extend_from_slice(&chunk[..chunk.len().min(n - 1)]);
            if let Some(i) = self.finder.find(&window) {
                return Some(i + n - self.tail.len());
            }
        }
        self.finder.find(&chunk[from..]).map(|i| from + i + n)
    }

    /// Keeps the last `needle - 1` body bytes seen, for a delimiter split across chunks.
    fn keep_tail(&mut self, rest: &[u8]) {
        let keep = self.finder.needle().len() - 1;
        if rest.len() >= keep {
            self.tail.clear();
            self.tail.extend_from_slice(&rest[rest.len() - keep..]);
        } else {
            self.tail.extend_from_slice(rest);
            let excess = self.tail.len().saturating_sub(keep);
            self.tail.drain(..excess);
        }
    }

    fn too_long() -> std::io::Error {
        std::io::Error::new(std::io::ErrorKind::InvalidData, HeaderTooLong)
    }

    /// The chunk as multer should see it: unchanged (and uncopied) unless it holds header bytes.
    fn escape(&mut self, chunk: Bytes) -> std::io::Result<Bytes> {
        let mut out: Option<BytesMut> = None;
        let mut pos = 0;
        while pos < chunk.len() {
            match &mut self.phase {
                Phase::Seeking => {
                    let found = self.find_delimiter(&chunk, pos);
                    let end = found.unwrap_or(chunk.len());
                    if self.later.is_some() {
                        self.counted += end - pos;
                        if self.counted > PREAMBLE_MAX + self.finder.needle().len() {
                            return Err(Self::too_long());
                        }
                    }
                    if found.is_none() {
                        self.keep_tail(&chunk[pos..]);
                    }
                    if let Some(o) = out.as_mut() {
                        o.extend_from_slice(&chunk[pos..end]);
                    }
                    pos = end;
                    if found.is_some() {
                        if let Some(later) = self.later.take() {
                            self.finder = later;
                        }
                        self.tail.clear();
                        self.counted = 0;
                        self.phase = Phase::DelimiterLine { dashes: 0 };
                    }
                }
                Phase::DelimiterLine { dashes } => {
                    let b = chunk[pos];
                    pos += 1;
                    // Only leading dashes count: every byte of the line so far was one.
                    if b == b'-' && *dashes as usize == self.counted {
                        *dashes += 1;
                    }
                    self.counted += 1;
                    if let Some(o) = out.as_mut() {
                        o.extend_from_slice(&[b]);
                    }
                    if *dashes == 2 {
                        self.phase = Phase::Done;
                    } else if b == b'\n' {
                        self.phase = Phase::Headers {
                            blank: 0,
                            after_equals: false,
                            quoted: false,
                            backslash: false,
                        };
                    } else if self.counted > HEADER_BLOCK_MAX {
                        return Err(Self::too_long());
                    }
                }
                Phase::Headers {
                    blank,
                    after_equals,
                    quoted,
                    backslash,
                } => {
                    // The first header byte: from here on this chunk is rebuilt.
                    let o = out.get_or_insert_with(|| {
                        let mut o = BytesMut::with_capacity(chunk.len() + 64);
                        o.extend_from_slice(&chunk[..pos]);
                        o
                    });
                    let b = chunk[pos];
                    pos += 1;
                    self.counted += 1;
                    if self.counted > HEADER_BLOCK_MAX {
                        return Err(Self::too_long());
                    }
                    let control = (b < 0x20 && b != b'\t') || b == 0x7f;
                    let line_break = b == b'\r' || b == b'\n';
                    if b == b'%' || (control && (*quoted || !line_break)) {
                        o.extend_from_slice(percent_encode_byte(b).as_bytes());
                    } else {
                        o.extend_from_slice(&[b]);
                    }
                    if *quoted {
                        *quoted = b != b'"' || *backslash;
                        *backslash = b == b'\\';
                        continue;
                    }
                    if b == b'"' && *after_equals {
                        *quoted = true;
                    } else if b != b' ' && b != b'\t' {
                        *after_equals = b == b'=';
                    }
                    *blank = match (b, *blank) {
                        (b'\r', 0 | 2) | (b'\n', 1 | 3) => *blank + 1,
                        (b'\r', _) => 1,
                        _ => 0,
                    };
                    if *blank == 4 {
                        self.counted = 0;
                        self.phase = Phase::Seeking;
                    }
                }
                Phase::Done => {
                    if let Some(o) = out.as_mut() {
                        o.extend_from_slice(&chunk[pos..]);
                    }
                    pos = chunk.len();
                }
            }
        }
        Ok(match out {
            Some(o) => o.freeze(),
            None => chunk,
        })
    }
}

impl<S: Stream<Item = std::io::Result<Bytes>> + Unpin> Stream for PartHeaderEscaper<S> {
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<S::Item>> {
        match Pin::new(&mut self.inner).poll_next(cx) {
            Poll::Ready(Some(Ok(chunk))) => Poll::Ready(Some(self.escape(chunk))),
            other => other,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;

    const BOUNDARY: &str = "XyZ-boundary-42";

    fn part(name: &str, file_name: Option<&[u8]>, body: &[u8]) -> Vec<u8> {
        let mut v =
            format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"{name}\"").into_bytes();
        if let Some(f) = file_name {
            v.extend_from_slice(b"; filename=\"");
            v.extend_from_slice(f);
            v.extend_from_slice(b"\"\r\nContent-Type: application/octet-stream");
        }
        v.extend_from_slice(b"\r\n\r\n");
        v.extend_from_slice(body);
        v.extend_from_slice(b"\r\n");
        v
    }

    fn form(parts: &[Vec<u8>]) -> Vec<u8> {
        let mut v = parts.concat();
        v.extend_from_slice(format!("--{BOUNDARY}--\r\n").as_bytes());
        v
    }

    /// Field name, file name as decoded, body.
    type Parsed = (String, Option<String>, Vec<u8>);

    /// Every part multer reads from `body` sent through the escaper in chunks of `size` bytes.
    fn parse(body: &[u8], size: usize) -> multer::Result<Vec<Parsed>> {
        let chunks: Vec<std::io::Result<Bytes>> = body
            .chunks(size)
            .map(|c| Ok(Bytes::copy_from_slice(c)))
            .collect();
        let stream = PartHeaderEscaper::new(futures::stream::iter(chunks), BOUNDARY);
        futures::executor::block_on(async {
            let mut mp = multer::Multipart::new(stream, BOUNDARY);
            let mut out = Vec::new();
            while let Some(mut field) = mp.next_field().await? {
                let name = field.name().unwrap_or("").to_string();
                let file = field.file_name().map(file_name);
                let mut data = Vec::new();
                while let Some(c) = field.chunk().await? {
                    data.extend_from_slice(&c);
                }
                out.push((name, file, data));
            }
            Ok(out)
        })
    }

    /// Body bytes that look like framing: delimiters without the line break, blank lines, quotes,
    /// percent signs and every byte value.
    fn tricky_body() -> Vec<u8> {
        let mut v: Vec<u8> = (0..=255u8).collect();
        // (Not `\r\n--boundary`: that ends a part's body, as RFC 2046 says.)
        v.extend_from_slice(format!("\r\n-{BOUNDARY}\"%00\r\n\r\n\"--{BOUNDARY}").as_bytes());
        v.extend((0..3000u32).map(|i| (i * 7919 % 251) as u8));
        v.extend_from_slice(b"\r\n\r");
        v
    }

    #[test]
    fn hostile_file_names_come_through_as_sent_and_bodies_unchanged() {
        let names: [&[u8]; 8] = [
            b"a\0b",
            b"line\r\nbreak\rand\nfeed",
            b"esc\x1b[31mred\x7f",
            b"100%25 not decoded twice %",
            b"quote \\\" inside",
            b"\xe2\x80\xaeright-to-left",
            b"../../x",
            b"tab\tkept",
        ];
        let body = tricky_body();
        let mut parts = vec![part("csrf", None, b"t0ken")];
        for (i, n) in names.iter().enumerate() {
            parts.push(part(&format!("file_{i}"), Some(n), &body));
        }
        let sent = form(&parts);
        // Every chunking, including one byte at a time, splits delimiters and escapes differently.
        for size in [1, 2, 3, 7, 16, 17, 64, 1000, 65536] {
            let got = parse(&sent, size).unwrap_or_else(|e| panic!("chunks of {size}: {e}"));
            assert_eq!(got.len(), names.len() + 1, "chunks of {size}");
            assert_eq!(got[0], ("csrf".into(), None, b"t0ken".to_vec()));
            for (i, n) in names.iter().enumerate() {
                let expected = String::from_utf8(n.to_vec()).unwrap().replace("\\\"", "\""); // multer unescapes \" in a quoted string
                let (field, file, data) = &got[i + 1];
                assert_eq!(field, &format!("file_{i}"));
                assert_eq!(file.as_deref(), Some(expected.as_str()), "chunks of {size}");
                assert_eq!(data, &body, "chunks of {size}");
            }
        }
    }

    #[test]
    fn only_a_quote_after_equals_opens_a_quoted_string() {
        // A stray quote in another header must not swallow the blank line that ends the block.
        let mut sent = format!(
            "--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"x\"; filename = \"a\r\nb\"\r\n\
             X-Note: a 5\" screen\r\n\r\nbody\r\n"
        )
        .into_bytes();
        sent.extend(form(&[part("y", None, b"2")]));
        for size in [1, 3, 1000] {
            let got = parse(&sent, size).unwrap();
            assert_eq!(
                got[0],
                ("x".into(), Some("a\r\nb".into()), b"body".to_vec())
            );
            assert_eq!(got[1], ("y".into(), None, b"2".to_vec()));
        }
    }

    #[test]
    fn body_chunks_pass_through_without_a_copy() {
        let head = form(&[part("file_1", Some(b"a"), b"")]);
        let cut = head.len() - format!("\r\n--{BOUNDARY}--\r\n").len();
        let data = Bytes::from(vec![7u8; 100_000]);
        let mut escaper =
            PartHeaderEscaper::new(futures::stream::empty::<std::io::Result<Bytes>>(), BOUNDARY);
        escaper
            .escape(Bytes::copy_from_slice(&head[..cut]))
            .unwrap();
        let out = escaper.escape(data.clone()).unwrap();
        assert_eq!(out.as_ptr(), data.as_ptr(), "the same buffer, not a copy");
    }

    #[test]
    fn an_unclosed_quote_or_an_endless_header_is_refused_not_buffered() {
        let mut sent = format!("--{BOUNDARY}\r\nContent-Disposition: form-data; name=\"a\r\n\r\n")
            .into_bytes();
        sent.extend(std::iter::repeat_n(b'x', HEADER_BLOCK_MAX));
        let err = parse(&sent, 4096).unwrap_err();
        assert!(HeaderTooLong::caused(&err), "{err:?}");
        let preamble = vec![b'p'; PREAMBLE_MAX + 4096];
        assert!(parse(&preamble, 4096).is_err());
        // A preamble under the cap is fine, as multer allows it.
        let mut sent = b"preamble\r\n".to_vec();
        sent.extend(form(&[part("x", None, b"1")]));
        assert_eq!(parse(&sent, 5).unwrap()[0].2, b"1");
    }

    #[test]
    fn the_epilogue_is_left_alone() {
        let mut sent = form(&[part("x", None, b"1")]);
        sent.extend_from_slice(b"\0\0 epilogue \x01");
        let chunks = vec![Ok(Bytes::from(sent.clone()))];
        let out: Vec<_> = futures::executor::block_on(
            PartHeaderEscaper::new(futures::stream::iter(chunks), BOUNDARY).collect::<Vec<_>>(),
        );
        let out = out
            .into_iter()
            .map(Result::unwrap)
            .collect::<Vec<_>>()
            .concat();
        assert!(out.ends_with(b"--\r\n\0\0 epilogue \x01"));
    }
}
