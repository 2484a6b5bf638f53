//! One TCP connection's telemetry: opened and closed, and its bytes counted as they
//! move (received from the downstream, sent to it), as Istio's TCP metrics count them.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::config::TcpTelemetry;
use super::series::{Principals, Reporter, TcpKey, TcpSeries};
use crate::config::Cluster;
use crate::flags::ResponseFlags;
use crate::http::Downstream;
use crate::upstream::Identities;

/// A downstream connection whose bytes count into its series, if it has one; counted
/// closed when dropped.
pub struct Metering<S> {
    inner: S,
    series: Option<Arc<TcpSeries>>,
}

impl<S> Metering<S> {
    /// Counts a connection from `downstream` relayed to `upstream` in `cluster` as
    /// opened, and meters `stream` until it is dropped; without `telemetry`, only relays.
    /// `identities` reads what the upstream connection's TLS established, for the
    /// source's principals, when they are recorded.
    pub fn new(
        telemetry: Option<&TcpTelemetry>,
        stream: S,
        downstream: &Downstream,
        (upstream, identities): (SocketAddr, impl FnOnce() -> Option<Arc<Identities>>),
        cluster: &Cluster,
    ) -> Metering<S> {
        Metering {
            inner: stream,
            series: telemetry.map(|t| t.open(downstream, (upstream, identities), cluster)),
        }
    }
}

impl TcpTelemetry {
    /// The series of a connection from `downstream` to `upstream` in `cluster`,
    /// counted opened.
    fn open(
        &self,
        downstream: &Downstream,
        (upstream, identities): (SocketAddr, impl FnOnce() -> Option<Arc<Identities>>),
        cluster: &Cluster,
    ) -> Arc<TcpSeries> {
        let registry = &self.registry;
        let peer = match self.reporter {
            Reporter::Source => registry.peer_at(upstream.ip()),
            Reporter::Destination => registry.peer_at(downstream.peer.ip()),
        };
        let (mut principals, security) = Principals::of(self.reporter, downstream.tls.as_deref());
        if self.reporter == Reporter::Source
            && let Some(identities) = identities()
        {
            principals = Principals::upstream(&identities);
        }
        let custom = self.overrides.as_ref().map(|o| {
            let ends = match self.reporter {
                Reporter::Source => (registry.local(), &*peer),
                Reporter::Destination => (&*peer, registry.local()),
            };
            o.evaluate(None, None, ends)
        });
        let key = TcpKey {
            custom,
            reporter: self.reporter,
            peer,
            service: registry.service_of(cluster),
            flags: ResponseFlags::NONE,
            security,
            principals,
        };
        let series = registry
            .tcp
            .get_or_insert(&key, || (key.clone(), TcpSeries::default()));
        series.opened.add(1);
        series
    }
}

impl<S> Drop for Metering<S> {
    fn drop(&mut self) {
        if let Some(series) = &self.series {
            series.closed.add(1);
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Metering<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Some(series) = &self.series {
            series.received.add((buf.filled().len() - before) as u64);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Metering<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let (Poll::Ready(Ok(n)), Some(series)) = (&polled, &self.series) {
            series.sent.add(*n as u64);
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
