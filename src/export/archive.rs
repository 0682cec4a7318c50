//! A zip written front to back into any `Write` (no `Seek`, no temporary file), on the `zip`
//! crate's streaming writer, that never looks complete unless it was finished.
//!
//! Members are stored (not compressed) and each is followed by a data descriptor, since its size
//! and CRC are only known at its end. A member whose size is not known in advance is started with
//! `large_file`, so that it may pass 4 GiB: the crate cannot go back to add ZIP64 fields in a
//! stream, and without them it refuses to write past 4 GiB.
//!
//! The crate finalises an unfinished `ZipWriter` when it is dropped, writing the central directory
//! after whatever was written so far. After a failed source read that would make a truncated
//! archive look whole, so the output goes through a gate: dropping a [`ZipOut`] that was not
//! finished, or any error from the output, shuts the gate, and nothing after that reaches it.

use std::io::{self, Write};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use zip::write::{SimpleFileOptions, StreamWriter};
use zip::{CompressionMethod, ZipWriter};

/// Mode of every member: a regular file, 0644.
const MEMBER_MODE: u32 = 0o644;

/// The output behind a gate: once shut, writes are swallowed instead of reaching it.
struct Gate<W: Write> {
    inner: W,
    open: Arc<AtomicBool>,
}

impl<W: Write> Gate<W> {
    fn shut_on_error<T>(&self, r: io::Result<T>) -> io::Result<T> {
        if let Err(e) = &r {
            if e.kind() != io::ErrorKind::Interrupted {
                self.open.store(false, Ordering::Release);
            }
        }
        r
    }
}

impl<W: Write> Write for Gate<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        if !self.open.load(Ordering::Acquire) {
            // Only the zip crate's drop-time finalisation writes here: let it go nowhere.
            return Ok(buf.len());
        }
        let r = self.inner.write(buf);
        self.shut_on_error(r)
    }

    fn flush(&mut self) -> io::Result<()> {
        if !self.open.load(Ordering::Acquire) {
            return Ok(());
        }
        let r = self.inner.flush();
        self.shut_on_error(r)
    }
}

/// A zip being streamed to `W`. Start a member with [`start`](Self::start), write its contents
/// through `Write`, and [`finish`](Self::finish) to write the central directory. Dropped
/// unfinished (an error, a panic), the output ends where it stopped, without a central directory.
pub struct ZipOut<W: Write> {
    zip: Option<ZipWriter<StreamWriter<Gate<W>>>>,
    open: Arc<AtomicBool>,
    modified: zip::DateTime,
}

fn zip_err(e: zip::result::ZipError) -> io::Error {
    io::Error::from(e)
}

fn closed() -> io::Error {
    io::Error::new(io::ErrorKind::BrokenPipe, "the zip archive is closed")
}

/// `unix` seconds (UTC) as a zip timestamp; 1980-01-01 outside the range zip can hold.
pub fn zip_time(unix: i64) -> zip::DateTime {
    use chrono::{Datelike, Timelike};
    chrono::DateTime::from_timestamp(unix, 0)
        .and_then(|t| {
            zip::DateTime::from_date_and_time(
                u16::try_from(t.year()).ok()?,
                t.month() as u8,
                t.day() as u8,
                t.hour() as u8,
                t.minute() as u8,
                t.second() as u8,
            )
            .ok()
        })
        .unwrap_or_default()
}

impl<W: Write> ZipOut<W> {
    /// Starts an archive whose members are dated `modified_unix` (seconds, UTC).
    pub fn new(out: W, modified_unix: i64) -> Self {
        let open = Arc::new(AtomicBool::new(true));
        let gate = Gate {
            inner: out,
            open: open.clone(),
        };
        ZipOut {
            zip: Some(ZipWriter::new_stream(gate)),
            open,
            modified: zip_time(modified_unix),
        }
    }

    fn zip(&mut self) -> io::Result<&mut ZipWriter<StreamWriter<Gate<W>>>> {
        self.zip.as_mut().ok_or_else(closed)
    }

    /// Sets the archive comment (written with the end record; at most 65,535 bytes).
    pub fn set_comment(&mut self, comment: &str) -> io::Result<()> {
        if comment.len() > usize::from(u16::MAX) {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the zip comment is longer than 65,535 bytes",
            ));
        }
        self.zip()?.set_comment(comment).map_err(zip_err)
    }

    /// Ends the current member, if any, and starts a stored member `name`. `large` allows it to
    /// exceed 4 GiB (ZIP64 fields; use it whenever the size is not known to be smaller).
    pub fn start(&mut self, name: &str, large: bool) -> io::Result<()> {
        let options = SimpleFileOptions::default()
            .compression_method(CompressionMethod::Stored)
            .unix_permissions(MEMBER_MODE)
            .last_modified_time(self.modified)
            .large_file(large);
        self.zip()?.start_file(name, options).map_err(zip_err)
    }

    /// Tests only: ZIP64 end records whatever the size (an empty ZIP64 extensible data sector).
    #[cfg(test)]
    pub(crate) fn force_zip64_end(&mut self) {
        if let Some(z) = self.zip.as_mut() {
            z.set_raw_zip64_extensible_data_sector(Box::new([]));
        }
    }

    /// Ends the last member and writes the central directory and end records; returns the output
    /// (flushed).
    pub fn finish(mut self) -> io::Result<W> {
        let zip = self.zip.take().ok_or_else(closed)?;
        let mut gate = zip.finish().map_err(zip_err)?.into_inner();
        // An output error that the crate did not pass on would have shut the gate.
        if !self.open.load(Ordering::Acquire) {
            return Err(io::Error::other(
                "the zip output failed while the archive was written",
            ));
        }
        gate.flush()?;
        Ok(gate.inner)
    }
}

impl<W: Write> Write for ZipOut<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.zip()?.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.zip()?.flush()
    }
}

impl<W: Write> Drop for ZipOut<W> {
    fn drop(&mut self) {
        if self.zip.is_some() {
            // Unfinished: shut the gate before the ZipWriter (dropped after this) finalises.
            self.open.store(false, Ordering::Release);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Cursor, Read};

    /// Index of the last end-of-central-directory signature in `raw`, if any.
    pub(crate) fn eocd(raw: &[u8]) -> Option<usize> {
        raw.windows(4).rposition(|w| w == b"PK\x05\x06")
    }

    #[test]
    fn finished_archive_reads_back() {
        let mut z = ZipOut::new(Vec::new(), 1_700_000_000);
        z.set_comment("MARKING").unwrap();
        z.start("a.txt", false).unwrap();
        z.write_all(b"alpha").unwrap();
        z.start("b.bin", true).unwrap();
        z.write_all(&[0u8, 1, 2, 255]).unwrap();
        let raw = z.finish().unwrap();
        let mut a = zip::ZipArchive::new(Cursor::new(&raw)).unwrap();
        assert_eq!(a.comment(), b"MARKING");
        assert_eq!(a.len(), 2);
        let mut s = Vec::new();
        a.by_name("b.bin").unwrap().read_to_end(&mut s).unwrap();
        assert_eq!(s, [0u8, 1, 2, 255]);
        let f = a.by_name("a.txt").unwrap();
        assert_eq!(f.unix_mode(), Some(0o100_644));
        assert_eq!(f.compression(), CompressionMethod::Stored);
        let t = f.last_modified().unwrap();
        assert_eq!((t.year(), t.month(), t.day()), (2023, 11, 14));
    }

    #[test]
    fn an_unfinished_archive_gets_no_central_directory() {
        let mut raw = Vec::new();
        {
            let mut z = ZipOut::new(&mut raw, 0);
            z.start("a.txt", false).unwrap();
            z.write_all(b"partial").unwrap();
        }
        assert!(raw.starts_with(b"PK\x03\x04"));
        assert!(raw.ends_with(b"partial"), "nothing written after the data");
        assert_eq!(eocd(&raw), None);
        assert!(zip::ZipArchive::new(Cursor::new(&raw)).is_err());
    }

    #[test]
    fn an_output_error_shuts_the_gate() {
        /// Accepts `left` bytes, then fails.
        struct Failing {
            got: Vec<u8>,
            left: usize,
        }
        impl Write for Failing {
            fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
                if self.left == 0 {
                    return Err(io::Error::other("disk full"));
                }
                let n = buf.len().min(self.left);
                self.left -= n;
                self.got.extend_from_slice(&buf[..n]);
                Ok(n)
            }
            fn flush(&mut self) -> io::Result<()> {
                Ok(())
            }
        }
        let mut out = Failing {
            got: Vec::new(),
            left: 100,
        };
        let mut z = ZipOut::new(&mut out, 0);
        z.start("a.txt", false).unwrap();
        assert!(z.write_all(&[7u8; 200]).is_err());
        drop(z);
        assert_eq!(out.got.len(), 100);
        assert_eq!(eocd(&out.got), None);
    }

    #[test]
    fn zip64_end_records_are_readable() {
        let mut z = ZipOut::new(Vec::new(), 0);
        z.force_zip64_end();
        z.start("big", true).unwrap();
        z.write_all(b"0123456789").unwrap();
        z.start("small", false).unwrap();
        z.write_all(b"x").unwrap();
        let raw = z.finish().unwrap();
        assert!(
            raw.windows(4).any(|w| w == b"PK\x06\x06"),
            "ZIP64 end record"
        );
        let mut a = zip::ZipArchive::new(Cursor::new(&raw)).unwrap();
        let mut s = String::new();
        a.by_name("big").unwrap().read_to_string(&mut s).unwrap();
        assert_eq!(s, "0123456789");
    }

    #[test]
    fn an_overlong_comment_is_refused() {
        let mut z = ZipOut::new(Vec::new(), 0);
        let e = z.set_comment(&"x".repeat(70_000)).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    }
}
