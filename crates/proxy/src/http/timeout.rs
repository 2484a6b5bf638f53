//! The timeout a forwarded request gets: the route's, or for gRPC requests on routes
//! with `max_stream_duration.grpc_timeout_header_max`, the client's `grpc-timeout`
//! (capped, offset), as Envoy's router computes it. And the stream idle timeout: a
//! stream with no bytes moving either way for that long is ended.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use http::HeaderMap;
use http::header::CONTENT_TYPE;
use mizzen_xds::pb::envoy::config::route::v3::route_action::MaxStreamDuration;

use crate::route::Timeout;

/// The request's timeout; `None` waits as long as the upstream takes.
pub fn for_request(
    route: Timeout,
    max_stream: Option<&MaxStreamDuration>,
    headers: &HeaderMap,
) -> Option<Duration> {
    let route = match route {
        Timeout::Disabled => None,
        Timeout::After(t) => Some(t),
    };
    let Some(max) = max_stream.and_then(|m| m.grpc_timeout_header_max.as_ref()) else {
        return route;
    };
    if !is_grpc(headers) {
        return route;
    }
    let max = to_duration(max);
    let mut timeout = headers
        .get("grpc-timeout")
        .and_then(|v| parse_grpc_timeout(v.as_bytes()))
        .unwrap_or(Duration::ZERO);
    if let Some(offset) = max_stream.and_then(|m| m.grpc_timeout_header_offset.as_ref()) {
        let offset = to_duration(offset);
        if offset < timeout {
            timeout -= offset;
        }
    }
    // A zero maximum means no cap; a missing header means no limit but the cap.
    if !max.is_zero() && (timeout.is_zero() || timeout > max) {
        timeout = max;
    }
    (!timeout.is_zero()).then_some(timeout)
}

/// gRPC over HTTP: `content-type: application/grpc` (with any suffix).
fn is_grpc(headers: &HeaderMap) -> bool {
    headers
        .get(CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/grpc"))
}

/// `grpc-timeout`: up to 8 digits and a unit (`H`, `M`, `S`, `m`, `u`, `n`).
fn parse_grpc_timeout(value: &[u8]) -> Option<Duration> {
    let (unit, digits) = value.split_last()?;
    if digits.is_empty() || digits.len() > 8 || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    Some(match unit {
        b'H' => Duration::from_secs(n * 3600),
        b'M' => Duration::from_secs(n * 60),
        b'S' => Duration::from_secs(n),
        b'm' => Duration::from_millis(n),
        b'u' => Duration::from_micros(n),
        b'n' => Duration::from_nanos(n),
        _ => return None,
    })
}

fn to_duration(d: &mizzen_xds::pb::google::protobuf::Duration) -> Duration {
    Duration::new(d.seconds.max(0) as u64, d.nanos.max(0) as u32)
}

/// The stream idle timeout in force: the route's `idle_timeout` if it sets one (0
/// disables), else the connection manager's.
pub fn idle(route: Option<Timeout>, manager: Option<Duration>) -> Option<Duration> {
    match route {
        Some(Timeout::Disabled) => None,
        Some(Timeout::After(t)) => Some(t),
        None => manager,
    }
}

/// When bytes last moved on a downstream connection, either way.
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
}

#[cfg(test)]
mod tests {
    use super::*;
    use mizzen_xds::pb::google::protobuf::Duration as PbDuration;

    fn grpc(timeout: Option<&str>) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(CONTENT_TYPE, "application/grpc+proto".parse().unwrap());
        if let Some(t) = timeout {
            h.insert("grpc-timeout", t.parse().unwrap());
        }
        h
    }

    fn max(secs: i64) -> MaxStreamDuration {
        MaxStreamDuration {
            grpc_timeout_header_max: Some(PbDuration {
                seconds: secs,
                nanos: 0,
            }),
            ..Default::default()
        }
    }

    const ROUTE: Timeout = Timeout::After(Duration::from_secs(15));

    #[test]
    fn a_routes_idle_timeout_overrides_the_connection_managers() {
        let manager = Some(Duration::from_secs(300));
        assert_eq!(idle(None, manager), manager);
        assert_eq!(idle(Some(ROUTE), manager), Some(Duration::from_secs(15)));
        assert_eq!(idle(Some(Timeout::Disabled), manager), None);
        assert_eq!(idle(None, None), None);
    }

    #[test]
    fn grpc_timeout_parses_every_unit() {
        assert_eq!(parse_grpc_timeout(b"2H"), Some(Duration::from_secs(7200)));
        assert_eq!(parse_grpc_timeout(b"3M"), Some(Duration::from_secs(180)));
        assert_eq!(
            parse_grpc_timeout(b"250m"),
            Some(Duration::from_millis(250))
        );
        assert_eq!(parse_grpc_timeout(b"7u"), Some(Duration::from_micros(7)));
        assert_eq!(parse_grpc_timeout(b"9n"), Some(Duration::from_nanos(9)));
        for bad in [&b"10"[..], b"S", b"123456789S", b"1.5S", b"10x"] {
            assert_eq!(parse_grpc_timeout(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn the_route_timeout_applies_unless_the_route_honours_grpc_timeout() {
        let headers = grpc(Some("2S"));
        assert_eq!(
            for_request(ROUTE, None, &headers),
            Some(Duration::from_secs(15))
        );
        assert_eq!(for_request(Timeout::Disabled, None, &headers), None);
        // Not gRPC: the header means nothing.
        let mut plain = headers.clone();
        plain.remove(CONTENT_TYPE);
        assert_eq!(
            for_request(ROUTE, Some(&max(0)), &plain),
            Some(Duration::from_secs(15))
        );
    }

    #[test]
    fn grpc_timeout_is_capped_offset_and_unlimited_when_absent() {
        assert_eq!(
            for_request(ROUTE, Some(&max(0)), &grpc(Some("2S"))),
            Some(Duration::from_secs(2))
        );
        assert_eq!(
            for_request(ROUTE, Some(&max(1)), &grpc(Some("2S"))),
            Some(Duration::from_secs(1))
        );
        assert_eq!(
            for_request(ROUTE, Some(&max(0)), &grpc(None)),
            None,
            "no header, no cap: no limit"
        );
        assert_eq!(
            for_request(ROUTE, Some(&max(5)), &grpc(None)),
            Some(Duration::from_secs(5))
        );
        let offset = MaxStreamDuration {
            grpc_timeout_header_offset: Some(PbDuration {
                seconds: 0,
                nanos: 500_000_000,
            }),
            ..max(0)
        };
        assert_eq!(
            for_request(ROUTE, Some(&offset), &grpc(Some("2S"))),
            Some(Duration::from_millis(1500))
        );
    }
}
