//! The router: one downstream request through the route table to an upstream endpoint
//! and back, or answered by the proxy itself (direct responses, redirects, errors with
//! Envoy's status codes and bodies).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{self, HeaderValue};
use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use super::body::ProxyBody;
use super::headers::{
    self, X_ENVOY_EXPECTED_RQ_TIMEOUT_MS, X_ENVOY_ORIGINAL_PATH, X_ENVOY_UPSTREAM_SERVICE_TIME,
};
use crate::Shared;
use crate::balance::HashInput;
use crate::config::{ClusterState, Discovery, HttpManager, Snapshot, UpstreamProtocol};
use crate::route::{Action, RequestHead, Timeout};
use crate::upstream::{PoolKey, PoolSettings, UpstreamError};

/// What the router knows of the downstream connection.
#[derive(Debug, Clone, Copy)]
pub struct Downstream {
    /// The client.
    pub peer: SocketAddr,
    /// Where the client connected (its original destination when redirected).
    pub destination: SocketAddr,
    /// Whether the connection is TLS.
    pub tls: bool,
}

/// Serves one request.
pub async fn serve(
    shared: Arc<Shared>,
    manager: Arc<HttpManager>,
    downstream: Downstream,
    request: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let snapshot = shared.store.snapshot();
    let stats = &manager.stats;
    stats.downstream_rq_total.inc();
    let _active = stats.downstream_rq_active.track();
    let mut response = route(&shared, &snapshot, &manager, downstream, request).await;
    stats.downstream_rq.record(response.status().as_u16());
    if let Some(server) = &manager.server_name
        && let Ok(value) = HeaderValue::from_str(server)
    {
        response.headers_mut().insert(header::SERVER, value);
    }
    Ok(response)
}

async fn route(
    shared: &Shared,
    snapshot: &Snapshot,
    manager: &HttpManager,
    downstream: Downstream,
    mut request: Request<Incoming>,
) -> Response<ProxyBody> {
    let Some(table) = snapshot.route_table(manager) else {
        return local(StatusCode::NOT_FOUND, "");
    };
    let authority = authority(&request);
    let path = request
        .uri()
        .path_and_query()
        .map_or("/", PathAndQuery::as_str)
        .to_owned();
    let scheme = if downstream.tls { "https" } else { "http" };
    let version = request.version();
    let head = RequestHead {
        authority: &authority,
        method: request.method(),
        path: &path,
        scheme,
        headers: request.headers(),
    };
    let Some(selected) = table.select(&head) else {
        return local(StatusCode::NOT_FOUND, "");
    };
    let forward = match &selected.route.action {
        Action::DirectResponse(direct) => {
            let mut response = local(direct.status, direct.body.clone());
            selected.apply_response_headers(response.headers_mut());
            return response;
        }
        Action::Redirect(redirect) => {
            let (status, location) = redirect.location(&head);
            let mut response = local(status, "");
            if let Ok(value) = HeaderValue::from_str(&location) {
                response.headers_mut().insert(header::LOCATION, value);
            }
            selected.apply_response_headers(response.headers_mut());
            return response;
        }
        Action::Forward(forward) => forward,
    };
    let target = selected
        .cluster
        .expect("a forwarding route has its cluster picked");
    let Some(cluster) = target
        .name(&head)
        .and_then(|name| snapshot.clusters.get(name))
    else {
        return local(forward.cluster_not_found_response_code, "");
    };
    let rewritten = forward.rewrite_path(&path);
    let host = forward
        .rewrite_host(target, &head)
        .map(|h| h.into_owned())
        .unwrap_or_else(|| authority.clone());
    let timeout = match forward.timeout {
        Timeout::Disabled => None,
        Timeout::After(t) => Some(t),
    };
    // Envoy hashes requests only for clusters whose balancer uses the hash.
    let hashed = cluster
        .balancer
        .as_ref()
        .filter(|b| b.hashes_requests())
        .map(|_| {
            forward.hasher.hash(&HashInput {
                headers: head.headers,
                authority: Some(&authority),
                path: Some(&path),
                remote: Some(downstream.peer),
                local: Some(downstream.destination),
            })
        })
        .unwrap_or_default();

    // A WebSocket upgrade: the client's half of the tunnel, taken before the request
    // moves upstream; upgrades are HTTP/1.1 end to end.
    let upgrade = (manager.websocket
        && request.version() == Version::HTTP_11
        && headers::is_websocket_upgrade(request.headers()))
    .then(|| {
        let protocol = request.headers()[header::UPGRADE].clone();
        (hyper::upgrade::on(&mut request), protocol)
    });
    let headers = request.headers_mut();
    headers::strip_hop_by_hop(headers);
    if let Some((_, protocol)) = &upgrade {
        headers::keep_upgrade(headers, protocol.clone());
    }
    if manager.use_remote_address {
        headers::append_forwarded_for(headers, downstream.peer.ip());
    }
    headers::set_forwarded_proto(headers, downstream.tls);
    if manager.generate_request_id {
        headers::ensure_request_id(headers);
    }
    if let Some(t) = timeout {
        headers.insert(X_ENVOY_EXPECTED_RQ_TIMEOUT_MS, headers::millis(t));
    }
    selected.apply_request_headers(headers);
    if rewritten.is_some()
        && let Ok(original) = HeaderValue::from_str(&path)
    {
        headers.insert(X_ENVOY_ORIGINAL_PATH, original);
    }

    let started = Instant::now();
    let target = Target {
        authority: &host,
        path: rewritten.as_deref().unwrap_or(&path),
        hash: hashed.hash,
        timeout,
    };
    let result = forward_to(shared, cluster, downstream, request, target).await;
    let mut response = match result {
        Ok(response) => response,
        Err(failure) => return failure.response(),
    };
    headers::strip_hop_by_hop(response.headers_mut());
    // The client hears its own HTTP version, whatever the upstream spoke.
    *response.version_mut() = version;
    if let Some((client, protocol)) = upgrade
        && response.status() == StatusCode::SWITCHING_PROTOCOLS
    {
        headers::keep_upgrade(response.headers_mut(), protocol);
        tokio::spawn(tunnel(client, hyper::upgrade::on(&mut response)));
    }
    response.headers_mut().insert(
        X_ENVOY_UPSTREAM_SERVICE_TIME,
        headers::millis(started.elapsed()),
    );
    selected.apply_response_headers(response.headers_mut());
    if let Some(cookie) = hashed
        .set_cookie
        .and_then(|c| HeaderValue::from_str(&c).ok())
    {
        response.headers_mut().append(header::SET_COOKIE, cookie);
    }
    response
}

/// Relays an upgraded connection (a WebSocket) between the client and the upstream
/// until either side closes.
async fn tunnel(client: hyper::upgrade::OnUpgrade, upstream: hyper::upgrade::OnUpgrade) {
    let (client, upstream) = tokio::join!(client, upstream);
    match (client, upstream) {
        (Ok(client), Ok(upstream)) => {
            let mut client = TokioIo::new(client);
            let mut upstream = TokioIo::new(upstream);
            if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
                tracing::debug!(error = %e, "upgraded connection ended");
            }
        }
        (Err(e), _) | (_, Err(e)) => tracing::debug!(error = %e, "upgrade failed"),
    }
}

/// Where a forwarded request goes, beyond its cluster.
struct Target<'a> {
    /// The authority to send (after any host rewrite).
    authority: &'a str,
    /// The path to send (after any rewrite).
    path: &'a str,
    /// The request's hash, for consistent-hash balancers.
    hash: Option<u64>,
    /// The route's timeout.
    timeout: Option<Duration>,
}

/// Why a forwarded request got no upstream response, and what Envoy answers then.
enum Failure {
    /// No endpoint could take it (`UH`).
    NoHealthyUpstream,
    /// Connecting or exchanging failed (`UF`, `URX`).
    Upstream(UpstreamError),
    /// The route's timeout passed (`UT`).
    Timeout,
}

impl Failure {
    fn response(self) -> Response<ProxyBody> {
        match self {
            Failure::NoHealthyUpstream => {
                local(StatusCode::SERVICE_UNAVAILABLE, "no healthy upstream")
            }
            Failure::Upstream(e) => local(
                StatusCode::SERVICE_UNAVAILABLE,
                format!(
                    "upstream connect error or disconnect/reset before headers. reset reason: {e}"
                ),
            ),
            Failure::Timeout => local(StatusCode::GATEWAY_TIMEOUT, "upstream request timeout"),
        }
    }
}

/// Sends the request to an endpoint of `cluster` and waits for the response head.
async fn forward_to(
    shared: &Shared,
    state: &ClusterState,
    downstream: Downstream,
    mut request: Request<Incoming>,
    target: Target<'_>,
) -> Result<Response<ProxyBody>, Failure> {
    let cluster = &state.cluster;
    // Held until the response head arrives: LEAST_REQUEST counts requests in flight.
    let mut _picked = None;
    let endpoint = match &cluster.discovery {
        Discovery::OriginalDst => downstream.destination,
        Discovery::Dns(targets) => {
            let (host, port) = &targets[fastrand::usize(..targets.len())];
            resolve(host, *port)
                .await
                .map_err(|e| Failure::Upstream(UpstreamError::Connect(e)))?
        }
        Discovery::Static | Discovery::Eds(_) => {
            let balancer = state.balancer.as_ref().ok_or(Failure::NoHealthyUpstream)?;
            let picked = balancer
                .pick(target.hash)
                .ok_or(Failure::NoHealthyUpstream)?;
            _picked.insert(picked).endpoint().address
        }
    };
    let http2 = match cluster.protocol {
        _ if request.headers().contains_key(header::UPGRADE) => false,
        UpstreamProtocol::Http1 => false,
        UpstreamProtocol::Http2 => true,
        UpstreamProtocol::Downstream => request.version() == Version::HTTP_2,
    };
    set_upstream_target(&mut request, target.authority, target.path, http2);
    let key = PoolKey {
        endpoint,
        http2,
        bind: cluster.bind,
    };
    let settings = PoolSettings {
        connect_timeout: cluster.connect_timeout,
        idle_timeout: cluster.idle_timeout,
        max_requests: cluster.max_requests_per_connection,
    };
    let stats = &state.stats;
    stats.upstream_rq_total.inc();
    let _active = stats.upstream_rq_active.track();
    let send = shared.upstreams.send(key, settings, stats, request);
    let response = match target.timeout {
        Some(t) => tokio::time::timeout(t, send).await.map_err(|_| {
            stats.upstream_rq_timeout.inc();
            Failure::Timeout
        })?,
        None => send.await,
    }
    .map_err(Failure::Upstream)?;
    stats.upstream_rq.record(response.status().as_u16());
    Ok(response.map(ProxyBody::Upstream))
}

/// Shapes the request line for the upstream's HTTP version: origin-form with a `host`
/// header for HTTP/1.1, scheme and authority in the URI for HTTP/2.
fn set_upstream_target(request: &mut Request<Incoming>, authority: &str, path: &str, http2: bool) {
    let uri = if http2 {
        format!("http://{authority}{path}")
    } else {
        path.to_owned()
    };
    if let Ok(uri) = uri.parse::<Uri>() {
        *request.uri_mut() = uri;
    }
    if http2 {
        *request.version_mut() = Version::HTTP_2;
        request.headers_mut().remove(header::HOST);
    } else {
        *request.version_mut() = Version::HTTP_11;
        if let Ok(host) = HeaderValue::from_str(authority) {
            request.headers_mut().insert(header::HOST, host);
        }
    }
}

/// The request's authority: `:authority` (HTTP/2, absolute-form) or the `host` header.
fn authority(request: &Request<Incoming>) -> String {
    request
        .uri()
        .authority()
        .map(|a| a.as_str().to_owned())
        .or_else(|| {
            request
                .headers()
                .get(header::HOST)
                .and_then(|h| h.to_str().ok())
                .map(str::to_owned)
        })
        .unwrap_or_default()
}

async fn resolve(host: &str, port: u16) -> std::io::Result<SocketAddr> {
    tokio::net::lookup_host((host, port))
        .await?
        .next()
        .ok_or_else(|| {
            std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!("{host} has no address"),
            )
        })
}

/// A response the proxy makes itself.
pub fn local(status: StatusCode, body: impl Into<bytes::Bytes>) -> Response<ProxyBody> {
    let body = body.into();
    let mut response = Response::new(ProxyBody::local(body.clone()));
    *response.status_mut() = status;
    if !body.is_empty() {
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    }
    response
}
