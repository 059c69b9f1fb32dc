//! [`WriteBuffer`]: the write buffer of every connection fresco's nodes accept, put in place of
//! tokio's `BufWriter` in pingora-core's L4 stream by the patch in `vendor/` (vendor/README.md).
//!
//! tokio's `BufWriter` sends a write that does not fit its buffer in two system calls: first
//! what it holds (a response header, say), then the write itself. Below its capacity it copies
//! every write, however large. `WriteBuffer` copies only small writes. A large one (at least
//! [`COPY_LIMIT`] bytes, or one that does not fit) leaves with the buffered bytes in one
//! `writev`: a header and a 200 KB body go out in one call instead of two, and a 30 KB body
//! is not copied at all.

use std::io::{self, IoSlice};
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// Writes shorter than this are copied into the buffer; longer ones are sent from where they
/// are. Above a TLS record (16 KiB and its overhead), so that records written one at a time
/// still gather in the buffer.
pub const COPY_LIMIT: usize = 24 * 1024;

/// The most slices one vectored write passes on; Linux accepts 1,024.
const MAX_SLICES: usize = 64;

/// A buffered writer over `W`: small writes are gathered, large ones leave at once with what is
/// gathered. Flush to send what is left; dropping it loses what it holds, as `BufWriter` does.
#[derive(Debug)]
pub struct WriteBuffer<W> {
    inner: W,
    buf: Vec<u8>,
    /// Bytes at the front of `buf` already sent.
    sent: usize,
    capacity: usize,
}

impl<W> WriteBuffer<W> {
    /// A zero capacity writes straight through.
    pub fn with_capacity(capacity: usize, inner: W) -> Self {
        WriteBuffer {
            inner,
            buf: Vec::with_capacity(capacity),
            sent: 0,
            capacity,
        }
    }

    /// The inner writer.
    pub fn get_ref(&self) -> &W {
        &self.inner
    }

    /// The inner writer; writing to it directly overtakes what is buffered.
    pub fn get_mut(&mut self) -> &mut W {
        &mut self.inner
    }

    /// The inner writer. Anything still buffered is lost.
    pub fn into_inner(self) -> W {
        self.inner
    }

    fn pending(&self) -> &[u8] {
        &self.buf[self.sent..]
    }

    /// Accounts for `n` bytes sent from the front of `pending() ++ data`, and returns how many
    /// of them were `data`'s.
    fn consume(&mut self, n: usize) -> usize {
        let pending = self.buf.len() - self.sent;
        if n < pending {
            self.sent += n;
            0
        } else {
            self.buf.clear();
            self.sent = 0;
            n - pending
        }
    }

    fn fits(&self, len: usize) -> bool {
        len < COPY_LIMIT && self.buf.len() - self.sent + len <= self.capacity
    }
}

impl<W: AsyncWrite + Unpin> WriteBuffer<W> {
    fn poll_send_pending(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.pending().is_empty() {
            let n = ready!(Pin::new(&mut self.inner).poll_write(cx, &self.buf[self.sent..]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            self.consume(n);
        }
        Poll::Ready(Ok(()))
    }
}

impl<W: AsyncWrite + Unpin> AsyncWrite for WriteBuffer<W> {
    fn poll_write(self: Pin<&mut Self>, cx: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
        self.poll_write_vectored(cx, &[IoSlice::new(data)])
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        let len: usize = data.iter().map(|s| s.len()).sum();
        loop {
            if this.fits(len) {
                for slice in data {
                    this.buf.extend_from_slice(slice);
                }
                return Poll::Ready(Ok(len));
            }
            if this.pending().is_empty() {
                return Pin::new(&mut this.inner).poll_write_vectored(cx, data);
            }
            let mut slices = [IoSlice::new(&[]); MAX_SLICES];
            slices[0] = IoSlice::new(&this.buf[this.sent..]);
            let count = 1 + data.len().min(MAX_SLICES - 1);
            slices[1..count].copy_from_slice(&data[..count - 1]);
            let n = ready!(Pin::new(&mut this.inner).poll_write_vectored(cx, &slices[..count]))?;
            if n == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            let written = this.consume(n);
            if written > 0 {
                return Poll::Ready(Ok(written));
            }
            // Only buffered bytes left: go round, `data` may now fit or go straight through.
        }
    }

    fn is_write_vectored(&self) -> bool {
        true
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_send_pending(cx))?;
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        ready!(self.poll_send_pending(cx))?;
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

impl<W: AsyncRead + Unpin> AsyncRead for WriteBuffer<W> {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncWriteExt;

    /// Records every write call, and accepts at most `limit` bytes per call.
    #[derive(Default)]
    struct Recorder {
        calls: Vec<Vec<u8>>,
        limit: usize,
    }

    impl AsyncWrite for Recorder {
        fn poll_write(mut self: Pin<&mut Self>, _: &mut Context<'_>, data: &[u8]) -> Poll<io::Result<usize>> {
            self.poll_write_vectored_inner(&[IoSlice::new(data)])
        }
        fn poll_write_vectored(
            mut self: Pin<&mut Self>,
            _: &mut Context<'_>,
            data: &[IoSlice<'_>],
        ) -> Poll<io::Result<usize>> {
            self.poll_write_vectored_inner(data)
        }
        fn is_write_vectored(&self) -> bool {
            true
        }
        fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
        fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<io::Result<()>> {
            Poll::Ready(Ok(()))
        }
    }

    impl Recorder {
        fn poll_write_vectored_inner(&mut self, data: &[IoSlice<'_>]) -> Poll<io::Result<usize>> {
            let all: Vec<u8> = data.iter().flat_map(|s| s.iter().copied()).collect();
            let n = all.len().min(self.limit);
            self.calls.push(all[..n].to_vec());
            Poll::Ready(Ok(n))
        }
    }

    fn recorder(limit: usize) -> Recorder {
        Recorder {
            calls: Vec::new(),
            limit,
        }
    }

    #[tokio::test]
    async fn header_and_large_body_leave_in_one_call() {
        let mut w = WriteBuffer::with_capacity(64 * 1024, recorder(usize::MAX));
        let body = vec![7u8; 200 * 1024];
        w.write_all(b"HTTP/1.1 200 OK\r\n\r\n").await.unwrap();
        w.write_all(&body).await.unwrap();
        w.flush().await.unwrap();
        let calls = &w.get_ref().calls;
        assert_eq!(calls.len(), 1);
        assert_eq!(calls[0].len(), 19 + body.len());
    }

    #[tokio::test]
    async fn a_write_above_the_copy_limit_is_sent_not_copied() {
        let mut w = WriteBuffer::with_capacity(64 * 1024, recorder(usize::MAX));
        w.write_all(b"header").await.unwrap();
        w.write_all(&[3u8; 30 * 1024]).await.unwrap();
        assert_eq!(w.get_ref().calls.len(), 1, "sent with the header before any flush");
        assert_eq!(w.get_ref().calls[0].len(), 6 + 30 * 1024);
    }

    #[tokio::test]
    async fn vectored_writes_leave_with_the_buffer_in_one_call() {
        let mut w = WriteBuffer::with_capacity(64 * 1024, recorder(usize::MAX));
        w.write_all(b"header").await.unwrap();
        let records = [vec![1u8; 16 * 1024 + 22], vec![2u8; 14 * 1024 + 22]];
        let slices = [IoSlice::new(&records[0]), IoSlice::new(&records[1])];
        let n = w.write_vectored(&slices).await.unwrap();
        assert_eq!(n, records[0].len() + records[1].len());
        assert_eq!(
            w.get_ref().calls,
            vec![[&b"header"[..], &records[0], &records[1]].concat()]
        );
    }

    #[tokio::test]
    async fn small_writes_gather_until_flush() {
        let mut w = WriteBuffer::with_capacity(64 * 1024, recorder(usize::MAX));
        for _ in 0..10 {
            w.write_all(&[1u8; 1000]).await.unwrap();
        }
        assert!(w.get_ref().calls.is_empty());
        w.flush().await.unwrap();
        assert_eq!(w.get_ref().calls.len(), 1);
        assert_eq!(w.get_ref().calls[0].len(), 10_000);
    }

    #[tokio::test]
    async fn partial_writes_keep_every_byte_in_order() {
        let mut w = WriteBuffer::with_capacity(4096, recorder(1000));
        let mut expected = Vec::new();
        for i in 0..50u32 {
            let chunk: Vec<u8> = (0..(i * 997 % 40_000)).map(|b| (b + i) as u8).collect();
            w.write_all(&chunk).await.unwrap();
            expected.extend_from_slice(&chunk);
        }
        w.flush().await.unwrap();
        let sent: Vec<u8> = w.get_ref().calls.concat();
        assert_eq!(sent, expected);
    }

    #[tokio::test]
    async fn zero_capacity_writes_straight_through() {
        let mut w = WriteBuffer::with_capacity(0, recorder(usize::MAX));
        w.write_all(b"abc").await.unwrap();
        assert_eq!(w.get_ref().calls, vec![b"abc".to_vec()]);
    }
}
