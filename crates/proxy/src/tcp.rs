//! The TCP proxy at run time: a connection relayed byte for byte to an endpoint of its
//! cluster, until either side closes or the idle timeout passes.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf, copy_bidirectional};

use crate::Shared;
use crate::config::TcpProxy;
use crate::{endpoint, upstream};

/// Relays `downstream` to the proxy's target; `destination` is where the client meant
/// to connect (used by original-destination clusters).
pub async fn relay<S>(
    shared: &Shared,
    proxy: &TcpProxy,
    mut downstream: S,
    destination: SocketAddr,
) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let snapshot = shared.store.snapshot();
    let name = proxy.target.pick(fastrand::u64(..));
    let Some(state) = snapshot.clusters.get(name) else {
        return Err(io::Error::other(format!("cluster {name:?} not found")));
    };
    let cluster = &state.cluster;
    let chosen = endpoint::choose(state, destination, None)
        .map_err(|e| io::Error::other(format!("cluster {name:?}: {e}")))?;
    let mut upstream = upstream::connect(
        chosen.address,
        cluster.bind,
        cluster.connect_timeout,
        &state.stats,
    )
    .await
    .map_err(io::Error::other)?;
    let _open = state.stats.upstream_cx_active.track();
    let Some(idle) = proxy.idle_timeout else {
        return copy_bidirectional(&mut downstream, &mut upstream)
            .await
            .map(|_| ());
    };
    let activity = Activity::default();
    let mut downstream = Tracked {
        io: downstream,
        activity: &activity,
    };
    let copy = copy_bidirectional(&mut downstream, &mut upstream);
    tokio::pin!(copy);
    loop {
        let deadline = activity.last() + idle;
        tokio::select! {
            done = &mut copy => return done.map(|_| ()),
            () = tokio::time::sleep_until(deadline) => {
                if activity.last() + idle <= tokio::time::Instant::now() {
                    return Ok(()); // idle: close both sides
                }
            }
        }
    }
}

/// When bytes last moved on a relayed connection.
struct Activity {
    start: tokio::time::Instant,
    /// Milliseconds after `start`.
    last: AtomicU64,
}

impl Default for Activity {
    fn default() -> Self {
        Self {
            start: tokio::time::Instant::now(),
            last: AtomicU64::new(0),
        }
    }
}

impl Activity {
    fn last(&self) -> tokio::time::Instant {
        self.start + Duration::from_millis(self.last.load(Ordering::Relaxed))
    }
    fn touch(&self) {
        let now = self.start.elapsed().as_millis() as u64;
        self.last.store(now, Ordering::Relaxed);
    }
}

/// The downstream side, noting activity: every byte either way passes through it.
struct Tracked<'a, S> {
    io: S,
    activity: &'a Activity,
}

impl<S: AsyncRead + Unpin> AsyncRead for Tracked<'_, S> {
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

impl<S: AsyncWrite + Unpin> AsyncWrite for Tracked<'_, S> {
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
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
