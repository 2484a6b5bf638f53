//! Connections to upstream endpoints, pooled per endpoint: HTTP/1.1 connections carry
//! one request at a time and go back to the pool when their response ends; one HTTP/2
//! connection per endpoint carries every request concurrently.
//!
//! An HTTP/1.1 connection has no task of its own: the request that holds it writes and
//! reads it from the request's task, through [`http1`]'s codec; idle in its pool, nothing
//! polls it, and the next request to take it finds out whether it is still open. An
//! HTTP/2 connection, shared by many requests at once, runs in a task of its own on
//! hyper, as does an HTTP/1.1 connection that carries an upgrade.
//!
//! Pools are found by a lock-free lookup; a pool's own lock guards only a push or a pop.
//!
//! The cluster's circuit breakers bound connections and pending requests as Envoy's
//! pools do: a request that finds no idle connection is pending (while one is opened, or
//! until one comes back when `max_connections` is reached); beyond
//! `max_pending_requests` it overflows.

use std::collections::HashMap;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::task::{Context, Poll, ready};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http2;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::Notify;

use crate::config::{CircuitBreakers, Cluster};
use crate::http::RequestBody;
use crate::stats::{ClusterStats, Gauge, GaugeGuard};
use crate::tls::{Carried, Stream, Transport};

mod http1;

pub use http1::Http1Error;

/// What a pool is for: one endpoint, one HTTP version, one source address, one
/// transport (a TLS and a plaintext connection to one address are not interchangeable).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PoolKey {
    /// The endpoint.
    pub endpoint: SocketAddr,
    /// HTTP/2 when true, HTTP/1.1 otherwise.
    pub http2: bool,
    /// The source address to connect from, if set.
    pub bind: Option<SocketAddr>,
    /// Plaintext or TLS, and with which context.
    pub transport: Transport,
}

/// How connections of one pool behave.
#[derive(Debug, Clone, Copy)]
pub struct PoolSettings {
    /// How long a connection attempt may take.
    pub connect_timeout: Duration,
    /// How long a connection may stay idle before it is dropped.
    pub idle_timeout: Duration,
    /// How many requests one connection may carry.
    pub max_requests: Option<u32>,
    /// The cluster's connection and pending request limits.
    pub limits: CircuitBreakers,
    /// How many streams one HTTP/2 connection may carry at once.
    pub max_streams: Option<u32>,
}

impl PoolSettings {
    /// The settings `cluster` gives its pools.
    pub fn of(cluster: &Cluster) -> PoolSettings {
        PoolSettings {
            connect_timeout: cluster.connect_timeout,
            idle_timeout: cluster.idle_timeout,
            max_requests: cluster.max_requests_per_connection,
            limits: cluster.circuit_breakers,
            max_streams: cluster.max_concurrent_streams,
        }
    }
}

/// Why an upstream request failed before a response arrived.
#[derive(Debug, thiserror::Error)]
pub enum UpstreamError {
    /// The endpoint could not be reached or refused the connection; worded as Envoy
    /// words it in its 503 body (the cause is the error's source).
    #[error("remote connection failure")]
    Connect(#[source] io::Error),
    /// No connection could even be attempted: no socket, an unusable source address or
    /// an unresolved name; worded as Envoy words it.
    #[error("local connection failure")]
    LocalConnect(#[source] io::Error),
    /// The connection attempt took longer than the cluster's `connect_timeout`.
    #[error("connection timeout")]
    ConnectTimeout,
    /// The connection failed or was reset before response headers.
    #[error("{0}")]
    Http(#[from] HttpError),
    /// A circuit breaker turned the request away (`max_pending_requests`,
    /// `max_requests`); worded as Envoy's reset reason.
    #[error("overflow")]
    Overflow,
}

/// How an exchange on an upstream connection failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// On hyper: HTTP/2, and HTTP/1.1 upgrades.
    #[error(transparent)]
    Hyper(#[from] hyper::Error),
    /// On the proxy's own HTTP/1.1 codec.
    #[error(transparent)]
    Http1(#[from] Http1Error),
}

impl From<hyper::Error> for UpstreamError {
    fn from(e: hyper::Error) -> Self {
        UpstreamError::Http(e.into())
    }
}

impl From<Http1Error> for UpstreamError {
    fn from(e: Http1Error) -> Self {
        UpstreamError::Http(e.into())
    }
}

/// The identities a TLS connection to an upstream established, read once when it
/// opens: the certificates' first URI SANs, Istio's principals at the source. Each
/// response from the connection carries them (a response extension).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Identities {
    /// The certificate this proxy presented.
    pub local: Option<Arc<str>>,
    /// The certificate the upstream presented.
    pub peer: Option<Arc<str>>,
}

impl Identities {
    /// Those of `stream`, opened over `transport`; none over plaintext.
    pub fn of(stream: &Stream, transport: &Transport) -> Option<Arc<Identities>> {
        let Transport::Tls(tls) = transport else {
            return None;
        };
        Some(Arc::new(Identities {
            local: tls.tls.local_uri_san(),
            peer: stream.peer_uri_san(),
        }))
    }
}

/// Every pool of the proxy.
#[derive(Default)]
pub struct Upstreams {
    pools: ArcSwap<HashMap<PoolKey, Arc<Pool>>>,
    /// Serialises the (rare) creation of a pool.
    adding: Mutex<()>,
}

impl Upstreams {
    /// Sends `request` to the endpoint of `key` and returns its response head; the
    /// response body hands the connection back to the pool when it ends, unless the
    /// request is an upgrade (the connection then belongs to the tunnel).
    pub async fn send(
        &self,
        key: PoolKey,
        settings: PoolSettings,
        stats: &Arc<ClusterStats>,
        request: http::Request<RequestBody>,
    ) -> Result<http::Response<PooledBody>, UpstreamError> {
        let upgrade = request.headers().contains_key(http::header::UPGRADE);
        let pool = self.pool(&key);
        if key.http2 {
            let (mut sender, stream, identities) = pool.http2(settings, stats).await?;
            let mut response = sender.send_request(request).await?;
            if let Some(identities) = identities {
                response.extensions_mut().insert(identities);
            }
            return Ok(response.map(|body| {
                PooledBody(Pooled::Http2 {
                    body,
                    _stream: stream,
                })
            }));
        }
        let (connection, uses) = pool.http1(settings, stats).await?;
        let identities = connection.identities().cloned();
        if upgrade {
            return Ok(upgrade_on(connection, request)
                .await?
                .map(|body| PooledBody(Pooled::Upgrade(body))));
        }
        let mut exchange = connection.start(request);
        let head = std::future::poll_fn(|cx| exchange.poll_head(cx)).await?;
        let lease = Lease {
            exchange,
            pool,
            uses: uses + 1,
            max: settings.max_requests,
        };
        let mut response = head.map(|()| PooledBody(Pooled::Http1(Some(lease))));
        if let Some(identities) = identities {
            response.extensions_mut().insert(identities);
        }
        Ok(response)
    }

    fn pool(&self, key: &PoolKey) -> Arc<Pool> {
        if let Some(pool) = self.pools.load().get(key) {
            return pool.clone();
        }
        let _adding = self.adding.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.pools.load_full();
        if let Some(pool) = current.get(key) {
            return pool.clone();
        }
        let pool = Arc::new(Pool::new(key.clone()));
        let mut next = (*current).clone();
        next.insert(key.clone(), pool.clone());
        self.pools.store(Arc::new(next));
        pool
    }

    /// Drops the pools of endpoints no longer in `keep` (their connections close once
    /// their requests end).
    pub fn retain(&self, keep: impl Fn(&PoolKey) -> bool) {
        let _adding = self.adding.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = (*self.pools.load_full()).clone();
        next.retain(|k, _| keep(k));
        self.pools.store(Arc::new(next));
    }
}

/// The connections to one endpoint.
struct Pool {
    key: PoolKey,
    idle: Mutex<Vec<Idle>>,
    /// HTTP/2 connections, shared by concurrent requests up to `max_streams` each.
    shared: Mutex<Vec<Http2Connection>>,
    /// Connections open to the endpoint: a pool with none may always open one, as in
    /// Envoy, so that pending requests never wait on other endpoints' connections.
    connections: Arc<Gauge>,
    /// Wakes pending requests when a connection comes back idle or closes.
    freed: Notify,
}

/// What a request finds in its pool.
enum Found<T> {
    /// A connection (or stream) to use now.
    Ready(T),
    /// Room for a new connection, and the request's place among the pending ones.
    Open {
        slot: GaugeGuard,
        pending: Option<GaugeGuard>,
    },
}

/// An HTTP/2 connection of a pool, and how many streams it carries now.
struct Http2Connection {
    sender: http2::SendRequest<RequestBody>,
    streams: Arc<AtomicU32>,
    identities: Option<Arc<Identities>>,
}

/// A stream taken on an HTTP/2 connection: its sender, its count, the connection's
/// identities.
type Http2Taken = (
    http2::SendRequest<RequestBody>,
    Http2Stream,
    Option<Arc<Identities>>,
);

/// One stream on an HTTP/2 connection, counted until its response body ends; then a
/// request waiting for a stream may take its place.
struct Http2Stream {
    streams: Arc<AtomicU32>,
    pool: Arc<Pool>,
}

impl Http2Stream {
    fn open(connection: &Http2Connection, pool: &Arc<Pool>) -> Self {
        connection.streams.fetch_add(1, Ordering::Relaxed);
        Http2Stream {
            streams: connection.streams.clone(),
            pool: pool.clone(),
        }
    }
}

impl Drop for Http2Stream {
    fn drop(&mut self) {
        self.streams.fetch_sub(1, Ordering::Relaxed);
        self.pool.freed.notify_waiters();
    }
}

/// An HTTP/1.1 connection waiting for its next request.
struct Idle {
    connection: Box<http1::Connection>,
    since: Instant,
    uses: u32,
}

/// Counts a connection open, in its cluster (`upstream_cx_active`) and in its pool,
/// until dropped; then a request waiting for room to open one may.
pub(super) struct Open {
    counted: Option<(GaugeGuard, GaugeGuard)>,
    /// Weak: idle connections live in their pool.
    pool: Weak<Pool>,
}

impl Open {
    fn new(pool: &Arc<Pool>, slot: GaugeGuard) -> Open {
        Open {
            counted: Some((slot, pool.connections.track())),
            pool: Arc::downgrade(pool),
        }
    }
}

impl Drop for Open {
    fn drop(&mut self) {
        self.counted = None;
        if let Some(pool) = self.pool.upgrade() {
            pool.freed.notify_waiters();
        }
    }
}

/// Sends an upgrade request on hyper, which carries out a 101 and hands the connection
/// to the tunnel; the connection never comes back to the pool.
async fn upgrade_on(
    connection: Box<http1::Connection>,
    request: http::Request<RequestBody>,
) -> Result<http::Response<Incoming>, UpstreamError> {
    let (io, open) = connection
        .into_parts()
        .ok_or(Http1Error::invalid("connection", "holds unread bytes"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io)).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.with_upgrades().await {
            tracing::debug!(error = %e, "upstream HTTP/1.1 connection ended");
        }
        drop(open);
    });
    Ok(sender.send_request(request).await?)
}

impl Pool {
    fn new(key: PoolKey) -> Self {
        Self {
            key,
            idle: Mutex::new(Vec::new()),
            shared: Mutex::new(Vec::new()),
            connections: Arc::default(),
            freed: Notify::new(),
        }
    }

    /// Counts a new connection against the cluster's `max_connections`, or None when
    /// the limit is reached and the pool has connections of its own to wait for.
    fn open_slot(&self, settings: &PoolSettings, stats: &ClusterStats) -> Option<GaugeGuard> {
        let (max, open) = (
            settings.limits.max_connections,
            &stats.circuit_breakers.cx_open,
        );
        if let Some(slot) = stats.upstream_cx_active.track_within(max, open) {
            return Some(slot);
        }
        stats.upstream_cx_overflow.inc();
        (self.connections.get() == 0).then(|| stats.upstream_cx_active.track_beyond(max, open))
    }

    /// Counts the request as pending (waiting for a connection), unless
    /// `max_pending_requests` are already waiting.
    fn pending(settings: &PoolSettings, stats: &ClusterStats) -> Result<GaugeGuard, UpstreamError> {
        let pending = stats
            .upstream_rq_pending_active
            .track_within(
                settings.limits.max_pending_requests,
                &stats.circuit_breakers.rq_pending_open,
            )
            .ok_or_else(|| {
                stats.upstream_rq_pending_overflow.inc();
                UpstreamError::Overflow
            })?;
        stats.upstream_rq_pending_total.inc();
        Ok(pending)
    }

    /// Keeps a connection's task counted until it ends, then wakes pending requests.
    fn spawn_connection<F>(self: &Arc<Self>, slot: GaugeGuard, connection: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        let open = Open::new(self, slot);
        tokio::spawn(async move {
            connection.await;
            drop(open);
        });
    }

    /// What `take` finds (a connection or stream to use now), else the right to open a
    /// connection within `max_connections`, waiting for either while the pool is full;
    /// from the first miss the request counts as pending (within
    /// `max_pending_requests`), until its new connection is open.
    async fn take_or_open<T, F>(
        &self,
        settings: PoolSettings,
        stats: &ClusterStats,
        mut take: impl FnMut() -> F,
    ) -> Result<Found<T>, UpstreamError>
    where
        F: Future<Output = Option<T>>,
    {
        let mut pending = None;
        loop {
            // Registered before looking, so that a connection freed meanwhile wakes it.
            let freed = self.freed.notified();
            tokio::pin!(freed);
            freed.as_mut().enable();
            if let Some(found) = take().await {
                return Ok(Found::Ready(found));
            }
            if pending.is_none() {
                pending = Some(Self::pending(&settings, stats)?);
            }
            if let Some(slot) = self.open_slot(&settings, stats) {
                return Ok(Found::Open { slot, pending });
            }
            freed.await;
        }
    }

    /// An HTTP/1.1 connection ready for a request, and how many it carried. Without an
    /// idle one the request is pending until it opens one (within `max_connections`)
    /// or one comes back.
    async fn http1(
        self: &Arc<Self>,
        settings: PoolSettings,
        stats: &Arc<ClusterStats>,
    ) -> Result<(Box<http1::Connection>, u32), UpstreamError> {
        let reuse = || std::future::ready(self.reuse(settings));
        let (slot, _pending) = match self.take_or_open(settings, stats, reuse).await? {
            Found::Ready(reused) => return Ok(reused),
            Found::Open { slot, pending } => (slot, pending),
        };
        let io = self.connect(settings, stats).await?;
        let identities = Identities::of(&io, &self.key.transport);
        Ok((
            http1::Connection::new(io, identities, Open::new(self, slot)),
            0,
        ))
    }

    /// An idle HTTP/1.1 connection still fit for a request, if any.
    fn reuse(&self, settings: PoolSettings) -> Option<(Box<http1::Connection>, u32)> {
        loop {
            let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner()).pop()?;
            if idle.since.elapsed() < settings.idle_timeout && idle.connection.is_open() {
                return Some((idle.connection, idle.uses));
            }
        }
    }

    /// An HTTP/2 connection with a stream free for the request: a live one under
    /// `max_streams`, else a new one (within `max_connections`; beyond it the request is
    /// pending until a stream frees up).
    async fn http2(
        self: &Arc<Self>,
        settings: PoolSettings,
        stats: &Arc<ClusterStats>,
    ) -> Result<Http2Taken, UpstreamError> {
        let take = || std::future::ready(self.free_stream(settings.max_streams));
        let (slot, _pending) = match self.take_or_open(settings, stats, take).await? {
            Found::Ready(found) => return Ok(found),
            Found::Open { slot, pending } => (slot, pending),
        };
        let io = self.connect(settings, stats).await?;
        let identities = Identities::of(&io, &self.key.transport);
        let io = TokioIo::new(io);
        let (sender, connection) = http2::Builder::new(TokioExecutor::new())
            .keep_alive_interval(None)
            .handshake(io)
            .await?;
        self.spawn_connection(slot, async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "upstream HTTP/2 connection ended");
            }
        });
        let connection = Http2Connection {
            sender: sender.clone(),
            streams: Arc::default(),
            identities: identities.clone(),
        };
        let stream = Http2Stream::open(&connection, self);
        self.shared
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(connection);
        Ok((sender, stream, identities))
    }

    /// A stream on a live HTTP/2 connection below `max_streams`, if any; closed
    /// connections are forgotten on the way.
    fn free_stream(self: &Arc<Self>, max_streams: Option<u32>) -> Option<Http2Taken> {
        let mut connections = self.shared.lock().unwrap_or_else(|e| e.into_inner());
        connections.retain(|c| !c.sender.is_closed());
        let free = connections.iter().find(|c| {
            c.sender.is_ready()
                && max_streams.is_none_or(|max| c.streams.load(Ordering::Relaxed) < max)
        })?;
        let stream = Http2Stream::open(free, self);
        Some((free.sender.clone(), stream, free.identities.clone()))
    }

    async fn connect(
        &self,
        settings: PoolSettings,
        stats: &ClusterStats,
    ) -> Result<Stream, UpstreamError> {
        let carried = if self.key.http2 {
            Carried::Http2
        } else {
            Carried::Http1
        };
        connect(
            self.key.endpoint,
            self.key.bind,
            (&self.key.transport, carried),
            settings.connect_timeout,
            stats,
        )
        .await
    }

    fn give_back(&self, connection: Box<http1::Connection>, uses: u32) {
        self.idle
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push(Idle {
                connection,
                since: Instant::now(),
                uses,
            });
        self.freed.notify_waiters();
    }
}

/// Opens a connection to `endpoint`, from `bind` if set, over `transport` (a TLS
/// handshake whose ALPN suits what it will carry), within `timeout`, counting it in the
/// cluster's `stats`. A failed handshake is a failed connection, as in Envoy.
pub async fn connect(
    endpoint: SocketAddr,
    bind: Option<SocketAddr>,
    (transport, carried): (&Transport, Carried),
    timeout: Duration,
    stats: &ClusterStats,
) -> Result<Stream, UpstreamError> {
    let attempt = async {
        let tcp = open(endpoint, bind).await?;
        transport.wrap(tcp, carried, &stats.ssl).await.map_err(|e| {
            tracing::debug!(%endpoint, error = %e, "upstream TLS handshake failed");
            UpstreamError::Connect(io::Error::new(e.kind(), format!("TLS handshake: {e}")))
        })
    };
    let connected = tokio::time::timeout(timeout, attempt)
        .await
        .unwrap_or(Err(UpstreamError::ConnectTimeout));
    match &connected {
        Ok(_) => stats.upstream_cx_total.inc(),
        Err(_) => stats.upstream_cx_connect_fail.inc(),
    }
    connected
}

async fn open(endpoint: SocketAddr, bind: Option<SocketAddr>) -> Result<TcpStream, UpstreamError> {
    let socket = if endpoint.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(UpstreamError::LocalConnect)?;
    if let Some(bind) = bind {
        socket.bind(bind).map_err(UpstreamError::LocalConnect)?;
    }
    let stream = socket
        .connect(endpoint)
        .await
        .map_err(UpstreamError::Connect)?;
    stream.set_nodelay(true).map_err(UpstreamError::Connect)?;
    Ok(stream)
}

/// A response body from a pooled connection; an HTTP/1.1 connection is read as the body
/// is, and goes back to its pool when the exchange is complete (unless it carried its
/// maximum of requests).
pub struct PooledBody(Pooled);

enum Pooled {
    /// From an HTTP/1.1 exchange (None once the connection went back or was dropped).
    Http1(Option<Lease>),
    /// From an HTTP/2 stream, which it holds until the body ends.
    Http2 {
        body: Incoming,
        _stream: Http2Stream,
    },
    /// From an HTTP/1.1 connection that carried an upgrade request (on hyper).
    Upgrade(Incoming),
}

/// An HTTP/1.1 connection taken from its pool for one exchange.
struct Lease {
    exchange: http1::Exchange,
    pool: Arc<Pool>,
    uses: u32,
    max: Option<u32>,
}

impl Lease {
    /// Gives the connection back if the exchange completed and it may carry more.
    fn done(self) {
        if self.max.is_none_or(|max| self.uses < max)
            && let Some(connection) = self.exchange.into_reusable()
        {
            self.pool.give_back(connection, self.uses);
        }
    }
}

impl Body for PooledBody {
    type Data = Bytes;
    type Error = HttpError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, HttpError>>> {
        let lease = match &mut self.get_mut().0 {
            Pooled::Http1(lease) => lease,
            Pooled::Http2 { body, .. } | Pooled::Upgrade(body) => {
                return Pin::new(body)
                    .poll_frame(cx)
                    .map(|frame| frame.map(|f| f.map_err(HttpError::from)));
            }
        };
        let Some(leased) = lease else {
            return Poll::Ready(None);
        };
        let polled = ready!(leased.exchange.poll_data(cx));
        if leased.exchange.is_end_stream()
            && let Some(lease) = lease.take()
        {
            lease.done();
        }
        Poll::Ready(polled.map(|data| data.map(Frame::data).map_err(HttpError::from)))
    }

    fn is_end_stream(&self) -> bool {
        match &self.0 {
            Pooled::Http1(lease) => lease.as_ref().is_none_or(|l| l.exchange.is_end_stream()),
            Pooled::Http2 { body, .. } | Pooled::Upgrade(body) => body.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match &self.0 {
            Pooled::Http1(lease) => lease
                .as_ref()
                .map_or(SizeHint::with_exact(0), |l| l.exchange.size_hint()),
            Pooled::Http2 { body, .. } | Pooled::Upgrade(body) => body.size_hint(),
        }
    }
}

impl Drop for PooledBody {
    fn drop(&mut self) {
        // A body dropped before its end leaves the connection mid-response: not reusable
        // (`done` keeps only a complete exchange).
        if let Pooled::Http1(lease) = &mut self.0
            && let Some(lease) = lease.take()
        {
            lease.done();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_refused_connection_is_a_remote_connection_failure() {
        // Nothing listens on port 1; Envoy says "remote connection failure" in its 503.
        let refused = connect(
            SocketAddr::from(([127, 0, 0, 1], 1)),
            None,
            (&Transport::Plaintext, Carried::Opaque),
            Duration::from_secs(5),
            &ClusterStats::default(),
        )
        .await
        .unwrap_err();
        assert!(matches!(refused, UpstreamError::Connect(_)), "{refused:?}");
        assert_eq!(refused.to_string(), "remote connection failure");
    }

    #[tokio::test]
    async fn an_unusable_source_address_is_a_local_connection_failure() {
        // 203.0.113.254 (TEST-NET-3, for documentation) is no address of this host, so it
        // cannot be bound.
        let bind = Some(SocketAddr::from(([203, 0, 113, 254], 0)));
        let failed = connect(
            SocketAddr::from(([127, 0, 0, 1], 1)),
            bind,
            (&Transport::Plaintext, Carried::Opaque),
            Duration::from_secs(5),
            &ClusterStats::default(),
        )
        .await
        .unwrap_err();
        assert!(
            matches!(failed, UpstreamError::LocalConnect(_)),
            "{failed:?}"
        );
        assert_eq!(failed.to_string(), "local connection failure");
    }
}
