//! When bytes last moved on a connection, and the idle timer that reads it: a
//! connection or stream with nothing moving either way for its idle timeout is ended.
//! Activity costs one relaxed store per read or write; the timer is never touched by it.
//! Streams of a connection reuse one timer.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// When bytes last moved on a connection, either way; and the timer its last stream
/// left, for the next.
#[derive(Debug)]
pub struct Activity {
    start: Instant,
    /// Milliseconds after `start`.
    last: AtomicU64,
    /// A timer no stream uses now. Streams of a connection follow one another (HTTP/1.1)
    /// or overlap a little (HTTP/2), so one spare saves nearly every stream from
    /// allocating a timer and from taking the timer wheel's lock to add and remove it.
    spare: Mutex<Option<Pin<Box<Sleep>>>>,
}

impl Activity {
    /// Activity now.
    pub fn new() -> Arc<Activity> {
        Arc::new(Activity {
            start: Instant::now(),
            last: AtomicU64::new(0),
            spare: Mutex::new(None),
        })
    }

    /// The spare timer, or a new one; the caller arms it.
    fn take_spare(&self) -> Pin<Box<Sleep>> {
        let spare = self.spare.lock().unwrap_or_else(|e| e.into_inner()).take();
        spare.unwrap_or_else(|| Box::pin(tokio::time::sleep_until(self.start)))
    }

    /// Keeps `sleep` for the next stream, unless a spare is kept already.
    fn put_spare(&self, sleep: Pin<Box<Sleep>>) {
        let mut spare = self.spare.lock().unwrap_or_else(|e| e.into_inner());
        if spare.is_none() {
            *spare = Some(sleep);
        }
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

/// The one timer a stream waits on: its idle timeout, when one is in force, and the
/// deadline it waits for. Activity never touches the timer: when it fires, it re-arms at
/// the last activity plus the timeout, and expires only if that has passed.
///
/// The timer is the connection's spare when it has one (see [`Activity`]), and goes back
/// to it when the stream ends.
pub struct IdleTimer {
    timeout: Option<Duration>,
    activity: Arc<Activity>,
    sleep: Option<Pin<Box<Sleep>>>,
    /// The deadline the timer was last armed for, once armed for this stream.
    armed: Option<Option<Instant>>,
}

impl IdleTimer {
    /// A timer expiring after `timeout` without activity (never, when `None`: it then
    /// watches only the deadlines it is polled with).
    pub fn new(timeout: impl Into<Option<Duration>>, activity: Arc<Activity>) -> IdleTimer {
        let timeout = timeout.into();
        if timeout.is_some() {
            activity.touch();
        }
        IdleTimer {
            timeout,
            activity,
            sleep: None,
            armed: None,
        }
    }

    /// Whether an idle timeout is in force.
    pub fn watches_idleness(&self) -> bool {
        self.timeout.is_some()
    }

    /// Ready once the stream has been idle for the timeout.
    pub fn poll_expired(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        self.poll_until(cx, None).map(drop)
    }

    /// Ready once the stream has been idle for the timeout, or once `deadline` passed:
    /// one timer watches both, armed for whichever comes first.
    pub fn poll_until(&mut self, cx: &mut Context<'_>, deadline: Option<Instant>) -> Poll<Expiry> {
        let timeout = self.timeout;
        if timeout.is_none() && deadline.is_none() {
            return Poll::Pending;
        }
        let idle_at = |activity: &Activity| timeout.map(|t| activity.last() + t);
        let wake_at = |idle: Option<Instant>| match (deadline, idle) {
            (Some(d), Some(i)) => d.min(i),
            (d, i) => d.or(i).expect("a deadline or an idle timeout"),
        };
        let sleep = self.sleep.get_or_insert_with(|| self.activity.take_spare());
        if self.armed != Some(deadline) {
            // A stream's deadlines lie later than the last stream's, so re-arming its
            // timer moves it in the timer wheel without the wheel's lock.
            sleep.as_mut().reset(wake_at(idle_at(&self.activity)));
            self.armed = Some(deadline);
        }
        loop {
            ready!(sleep.as_mut().poll(cx));
            let now = Instant::now();
            if deadline.is_some_and(|d| d <= now) {
                return Poll::Ready(Expiry::Deadline);
            }
            let idle = idle_at(&self.activity);
            if idle.is_some_and(|i| i <= now) {
                return Poll::Ready(Expiry::Idle);
            }
            sleep.as_mut().reset(wake_at(idle));
        }
    }

    /// Resolves once the stream has been idle for the timeout.
    pub async fn expired(&mut self) {
        std::future::poll_fn(|cx| self.poll_expired(cx)).await;
    }
}

impl Drop for IdleTimer {
    fn drop(&mut self) {
        if let Some(sleep) = self.sleep.take() {
            self.activity.put_spare(sleep);
        }
    }
}
