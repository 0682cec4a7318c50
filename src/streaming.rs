//! A blocking writer on a thread of its own behind an async reader, for streamed response bodies
//! (decrypted downloads, zip packages, audit exports): bounded memory, and a body that ends cleanly
//! only when the writer succeeded.

use std::io::{self, Write};
use std::pin::Pin;
use std::task::{ready, Context, Poll};

use bytes::Bytes;
use tokio::io::{AsyncRead, ReadBuf};
use tokio::sync::mpsc;
use tokio_util::io::StreamReader;

/// Bytes handed to the response at a time.
pub const CHUNK: usize = 64 * 1024;
/// Chunks queued between the writing thread and the response: with [`CHUNK`], the most a
/// download holds in memory, whatever its size.
const QUEUE: usize = 4;

enum Piece {
    Data(Bytes),
    Failed(io::Error),
    Done,
}

/// The `Write` handed to a [`stream_blocking`] writer: sends what it is given to the response
/// in [`CHUNK`]-sized pieces, waiting while the queue is full (a slow client slows the writer
/// down). Fails with `BrokenPipe` once the response is gone.
pub struct ChannelWriter {
    tx: mpsc::Sender<Piece>,
    buf: Vec<u8>,
}

impl ChannelWriter {
    fn send_buf(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let chunk = Bytes::from(std::mem::replace(&mut self.buf, Vec::with_capacity(CHUNK)));
        self.tx
            .blocking_send(Piece::Data(chunk))
            .map_err(|_| io::Error::new(io::ErrorKind::BrokenPipe, "the download was cancelled"))
    }
}

impl Write for ChannelWriter {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        // Never more than one chunk buffered, however large the caller's writes.
        let n = data.len().min(CHUNK - self.buf.len());
        self.buf.extend_from_slice(&data[..n]);
        if self.buf.len() >= CHUNK {
            self.send_buf()?;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.send_buf()
    }
}

enum StreamState {
    Open,
    Done,
    Failed(io::ErrorKind, String),
}

/// Receiving side: ends only on the writer's explicit `Done`; a writer that vanished without it
/// (a panic) is an error, and after an error every poll is an error.
struct PieceStream {
    rx: mpsc::Receiver<Piece>,
    state: StreamState,
}

impl futures::Stream for PieceStream {
    type Item = io::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        match &self.state {
            StreamState::Open => {}
            StreamState::Done => return Poll::Ready(None),
            StreamState::Failed(kind, msg) => {
                return Poll::Ready(Some(Err(io::Error::new(*kind, msg.clone()))))
            }
        }
        let e = match ready!(self.rx.poll_recv(cx)) {
            Some(Piece::Data(bytes)) => return Poll::Ready(Some(Ok(bytes))),
            Some(Piece::Done) => {
                self.state = StreamState::Done;
                return Poll::Ready(None);
            }
            Some(Piece::Failed(e)) => e,
            None => io::Error::other("the download stopped unexpectedly"),
        };
        self.state = StreamState::Failed(e.kind(), e.to_string());
        Poll::Ready(Some(Err(e)))
    }
}

/// The async side of a [`stream_blocking`] writer: reaches EOF only if the writer returned `Ok`;
/// otherwise `poll_read` fails, so a response streamed from it never ends cleanly. Dropping it
/// makes the writer's next write fail, which ends the thread.
pub struct BlockingBody(StreamReader<PieceStream, Bytes>);

impl std::fmt::Debug for BlockingBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BlockingBody").finish_non_exhaustive()
    }
}

impl AsyncRead for BlockingBody {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

/// Runs `write` on a reused [`crate::workers`] thread, writing into a bounded channel, and
/// returns the reading side. Failures are logged under `what` (never content: errors here carry
/// none); the client sees only that the download failed.
pub fn stream_blocking<F>(what: &'static str, write: F) -> BlockingBody
where
    F: FnOnce(&mut ChannelWriter) -> io::Result<()> + Send + 'static,
{
    let (tx, rx) = mpsc::channel(QUEUE);
    let failed_tx = tx.clone();
    let spawned = crate::workers::spawn(move || {
        let mut out = ChannelWriter {
            tx: tx.clone(),
            buf: Vec::with_capacity(CHUNK),
        };
        let result = write(&mut out).and_then(|()| out.flush());
        match result {
            Ok(()) => {
                let _ = tx.blocking_send(Piece::Done);
            }
            Err(_) if tx.is_closed() => {
                tracing::info!(what, "download cancelled by the client");
            }
            Err(e) => {
                tracing::error!(what, error = %e, "streaming a download failed");
                // The kind survives (an integrity failure stays InvalidData); the detail is logged.
                let _ = tx.blocking_send(Piece::Failed(io::Error::new(
                    e.kind(),
                    format!("the {what} failed"),
                )));
            }
        }
    });
    if let Err(e) = spawned {
        tracing::error!(what, error = %e, "cannot start a download thread");
        let _ = failed_tx.try_send(Piece::Failed(io::Error::other(format!(
            "the {what} failed"
        ))));
    }
    BlockingBody(StreamReader::new(PieceStream {
        rx,
        state: StreamState::Open,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    #[tokio::test]
    async fn a_writer_that_succeeds_reaches_eof() {
        let mut body = stream_blocking("test", |out| {
            for i in 0..200u32 {
                out.write_all(&[i as u8; 1000])?;
            }
            Ok(())
        });
        let mut got = Vec::new();
        body.read_to_end(&mut got).await.unwrap();
        assert_eq!(got.len(), 200_000);
        assert_eq!(got[199_999], 199);
    }

    #[tokio::test]
    async fn a_writer_that_fails_or_panics_never_ends_cleanly() {
        let mut body = stream_blocking("test", |out| {
            out.write_all(&[1u8; 100_000])?;
            Err(io::Error::other("source broke"))
        });
        let mut got = Vec::new();
        let e = body.read_to_end(&mut got).await.unwrap_err();
        assert_eq!(e.to_string(), "the test failed");
        assert!(body.read_to_end(&mut got).await.is_err(), "stays failed");

        let mut body = stream_blocking("test", |out| {
            out.write_all(b"some")?;
            panic!("writer bug");
        });
        assert!(body.read_to_end(&mut Vec::new()).await.is_err());
    }

    #[tokio::test]
    async fn dropping_the_body_stops_the_writer() {
        let (done_tx, done_rx) = std::sync::mpsc::channel();
        let mut body = stream_blocking("test", move |out| {
            let mut written = 0u64;
            let r = loop {
                if let Err(e) = out.write_all(&[0u8; 4096]) {
                    break e;
                }
                written += 4096;
            };
            done_tx.send((written, r.kind())).unwrap();
            Err(r)
        });
        let mut first = [0u8; 10];
        body.read_exact(&mut first).await.unwrap();
        drop(body);
        let (written, kind) = tokio::task::spawn_blocking(move || {
            done_rx.recv_timeout(std::time::Duration::from_secs(60))
        })
        .await
        .unwrap()
        .expect("the writer stopped");
        assert_eq!(kind, io::ErrorKind::BrokenPipe);
        // The queue, the chunk being filled and the one handed over, nothing more.
        assert!(written <= ((QUEUE + 3) * CHUNK) as u64, "{written}");
    }
}
