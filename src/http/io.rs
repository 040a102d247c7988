//! hyper 1.x on glommio: an adapter from glommio's `TcpStream` (futures-io traits) to hyper's
//! `rt::Read`/`rt::Write`, and an executor that spawns hyper's HTTP/2 tasks on the current
//! shard. Everything stays on the shard's thread: no `Send` required, nothing crosses cores.

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};
use std::time::Instant;

use crate::limits::READ_CHUNK_BYTES;
use futures_lite::{AsyncRead, AsyncWrite};
use glommio::net::TcpStream;

/// When the first byte of the request being received arrived, for request latency "first
/// byte to answer". The connection's reads set it when it is empty; the service takes it when
/// a request starts and empties it again when the answer is ready, so the next read that
/// brings bytes is the next request's first ([`FirstByte::take_for`]).
#[derive(Clone, Default)]
pub struct FirstByte(Rc<Cell<Option<Instant>>>);

impl FirstByte {
    fn saw_bytes(&self) {
        if self.0.get().is_none() {
            self.0.set(Some(Instant::now()));
        }
    }

    /// When the request of `version` started: its first byte for HTTP/1.x. Over HTTP/2
    /// streams interleave on the connection, so a stream's start is when hyper hands it over
    /// (its HEADERS frame, the stream's first, parsed). Now, if no read was seen (pipelined
    /// requests that arrived with the previous one).
    pub fn take_for(&self, version: hyper::Version) -> Instant {
        match version {
            hyper::Version::HTTP_2 => Instant::now(),
            _ => self.0.take().unwrap_or_else(Instant::now),
        }
    }

    /// The request's answer is ready: the next bytes read start the next request.
    pub fn rearm(&self) {
        self.0.set(None);
    }
}

/// A glommio TCP stream as hyper sees it.
pub struct GlommioIo {
    stream: TcpStream,
    /// Stamped by reads for HTTP/1.x request latency; `None` on the gRPC port, where calls
    /// start when hyper hands their stream over.
    first_byte: Option<FirstByte>,
}

impl GlommioIo {
    pub fn new(stream: TcpStream, first_byte: Option<FirstByte>) -> Self {
        GlommioIo { stream, first_byte }
    }
}

impl hyper::rt::Read for GlommioIo {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        mut buf: hyper::rt::ReadBufCursor<'_>,
    ) -> Poll<io::Result<()>> {
        // SAFETY: the slice is zero-filled before it is handed out as initialised bytes, and
        // `advance` is called with no more than the bytes the read wrote. At most
        // READ_CHUNK_BYTES are zeroed per read: hyper offers its whole free buffer (up to 64 KiB)
        // every time, and zeroing all of it for a small read showed in profiles.
        let n = unsafe {
            let uninit = buf.as_mut();
            let len = uninit.len().min(READ_CHUNK_BYTES);
            std::ptr::write_bytes(uninit.as_mut_ptr(), 0, len);
            let init = std::slice::from_raw_parts_mut(uninit.as_mut_ptr() as *mut u8, len);
            match Pin::new(&mut self.stream).poll_read(cx, init) {
                Poll::Ready(Ok(n)) => n,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            }
        };
        if n > 0 {
            if let Some(first_byte) = &self.first_byte {
                first_byte.saw_bytes();
            }
        }
        // SAFETY: `n` bytes were written by the read above.
        unsafe { buf.advance(n) };
        Poll::Ready(Ok(()))
    }
}

impl hyper::rt::Write for GlommioIo {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.stream).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.stream).poll_close(cx)
    }
}

/// Spawns hyper's background futures (HTTP/2 streams) on the current shard's executor.
#[derive(Clone, Copy, Debug, Default)]
pub struct LocalExec;

impl<F> hyper::rt::Executor<F> for LocalExec
where
    F: Future + 'static,
    F::Output: 'static,
{
    fn execute(&self, fut: F) {
        glommio::spawn_local(fut).detach();
    }
}

/// hyper's timer (header-read timeout, HTTP/2 keep-alive) on the shard's glommio timers.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct LocalTimer;

/// A glommio timer as hyper's `Sleep`, with the thread that made it.
struct LocalSleep(glommio::timer::Timer, std::thread::ThreadId);

// SAFETY: hyper requires `Sleep: Send + Sync`, but a `LocalSleep` never leaves the shard that
// created it: it lives inside a hyper connection future, which holds `Rc`s of shard state and
// so is itself `!Send`; no safe code can move it, or anything inside it, to another thread.
// It is created, polled and dropped on the shard's executor thread only.
unsafe impl Send for LocalSleep {}
// SAFETY: as above; it is never shared with another thread either.
unsafe impl Sync for LocalSleep {}

impl Future for LocalSleep {
    type Output = ();
    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        assert_eq!(
            std::thread::current().id(),
            self.1,
            "LocalSleep left its shard"
        );
        Pin::new(&mut self.0).poll(cx).map(|_| ())
    }
}

impl Drop for LocalSleep {
    fn drop(&mut self) {
        // Dropping a glommio timer elsewhere would touch another thread's reactor.
        if std::thread::current().id() != self.1 {
            std::process::abort();
        }
    }
}

impl hyper::rt::Sleep for LocalSleep {}

impl hyper::rt::Timer for LocalTimer {
    fn sleep(&self, duration: std::time::Duration) -> Pin<Box<dyn hyper::rt::Sleep>> {
        Box::pin(LocalSleep(
            glommio::timer::Timer::new(duration),
            std::thread::current().id(),
        ))
    }

    fn sleep_until(&self, deadline: std::time::Instant) -> Pin<Box<dyn hyper::rt::Sleep>> {
        let duration = deadline.saturating_duration_since(std::time::Instant::now());
        self.sleep(duration)
    }
}
