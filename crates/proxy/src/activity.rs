//! When bytes last moved on a connection, and the idle timer that reads it: a
//! connection or stream with nothing moving either way for its idle timeout is ended.
//! Activity costs one relaxed store per read or write; the timer is never touched by it.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// When bytes last moved on a connection, either way.
#[derive(Debug)]
pub struct Activity {
    start: Instant,
    /// Milliseconds after `start`.
    last: AtomicU64,
}

impl Activity {
    /// Activity now.
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity {
            start: Instant::now(),
            last: AtomicU64::new(0),
        })
    }

    fn last(&self) -> Instant {
        self.start + Duration::from_millis(self.last.load(Ordering::Relaxed))
    }

    fn touch(&self) {
        let now = self.start.elapsed().as_millis() as u64;
        self.last.store(now, Ordering::Relaxed);
    }
}

/// A connection that notes its [`Activity`]: one relaxed store per read or write.
pub struct Tracked<S> {
    io: S,
    activity: Arc<Activity>,
}

impl<S> Tracked<S> {
    /// `io`, noting when bytes move in `activity`.
    pub fn new(io: S, activity: Arc<Activity>) -> Self {
        Tracked { io, activity }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.io).poll_read(cx, buf);
        if buf.filled().len() > before {
            self.activity.touch();
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write(cx, data);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.io).poll_write_vectored(cx, bufs);
        if matches!(polled, Poll::Ready(Ok(n)) if n > 0) {
            self.activity.touch();
        }
        polled
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}

/// What a timer watching a deadline and the stream's idleness saw first.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// The stream was idle for the timeout.
    Idle,
    /// The deadline passed.
    Deadline,
}

/// A stream's idle timer. Activity never touches the timer: when it fires, it re-arms
/// at the last activity plus the timeout, and expires only if that has passed.
pub struct IdleTimer {
    timeout: Duration,
    activity: Arc<Activity>,
    sleep: Pin<Box<Sleep>>,
}

impl IdleTimer {
    /// A timer expiring after `timeout` without activity.
    pub fn new(timeout: Duration, activity: Arc<Activity>) -> IdleTimer {
        activity.touch();
        IdleTimer {
            sleep: Box::pin(tokio::time::sleep(timeout)),
            timeout,
            activity,
        }
    }

    /// Ready once the stream has been idle for the timeout.
    pub fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.poll_until(cx, None).map(drop)
    }

    /// Ready once the stream has been idle for the timeout, or once `deadline` passed:
    /// one timer watches both, re-armed for whichever comes first.
    pub fn poll_until(&mut self, cx: &mut Context<'_>, deadline: Option<Instant>) -> Poll<Expiry> {
        if let Some(d) = deadline
            && d < self.sleep.deadline()
        {
            self.sleep.as_mut().reset(d);
        }
        loop {
            ready!(self.sleep.as_mut().poll(cx));
            let now = Instant::now();
            if deadline.is_some_and(|d| d <= now) {
                return Poll::Ready(Expiry::Deadline);
            }
            let idle = self.activity.last() + self.timeout;
            if idle <= now {
                return Poll::Ready(Expiry::Idle);
            }
            self.sleep
                .as_mut()
                .reset(deadline.map_or(idle, |d| d.min(idle)));
        }
    }

    /// Resolves once the stream has been idle for the timeout.
    pub async fn expired(&mut self) {
        std::future::poll_fn(|cx| self.poll_expired(cx)).await;
    }
}
