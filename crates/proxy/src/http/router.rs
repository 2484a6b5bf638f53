//! The router: one downstream request through the route table to an upstream endpoint
//! and back, or answered by the proxy itself (direct responses, redirects, errors with
//! Envoy's status codes and bodies).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{self, HeaderMap, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use super::body::{Active, ProxyBody};
use super::headers::{
    self, X_ENVOY_EXPECTED_RQ_TIMEOUT_MS, X_ENVOY_ORIGINAL_PATH, X_ENVOY_UPSTREAM_SERVICE_TIME,
    X_FORWARDED_PROTO,
};
use super::timeout::{Activity, IdleTimer};
use crate::Shared;
use crate::balance::HashInput;
use crate::config::{ClusterState, HttpManager, Snapshot, UpstreamProtocol};
use crate::endpoint::{self, Unreachable};
use crate::route::{Action, NewHost, RequestHead};
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
    activity: Arc<Activity>,
    request: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let snapshot = shared.store.snapshot();
    let stats = &manager.stats;
    stats.downstream_rq_total.inc();
    let _active = stats.downstream_rq_active.track();
    // Boxed: the routing future is large, and hyper moves the service's future into each
    // stream's task; a pointer moves cheaper than kilobytes of state.
    let routing = route(&shared, &snapshot, &manager, downstream, activity, request);
    let mut response = Box::pin(routing).await;
    stats.downstream_rq.record(response.status().as_u16());
    manager.server_header.apply(response.headers_mut());
    Ok(response)
}

async fn route(
    shared: &Shared,
    snapshot: &Snapshot,
    manager: &HttpManager,
    downstream: Downstream,
    activity: Arc<Activity>,
    mut request: Request<Incoming>,
) -> Response<ProxyBody> {
    let Some(table) = snapshot.route_table(manager) else {
        return local(StatusCode::NOT_FOUND, "");
    };
    // A WebSocket upgrade: the client's half of the tunnel, taken before the request
    // moves upstream (and before hop-by-hop headers go); upgrades are HTTP/1.1 end to end.
    let upgrade = (manager.websocket
        && request.version() == Version::HTTP_11
        && headers::is_websocket_upgrade(request.headers()))
    .then(|| {
        let protocol = request.headers()[header::UPGRADE].clone();
        (hyper::upgrade::on(&mut request), protocol)
    });
    // Envoy's connection manager changes these before routing, so routes see its result
    // (a route may match on `x-forwarded-proto`, say).
    headers::sanitize_request(
        request.headers_mut(),
        manager,
        table.internal_only_headers(),
        downstream.peer,
        downstream.tls,
    );
    // Cheap copies (shared bytes) that routing borrows from while the request changes.
    let uri = request.uri().clone();
    let host = request.headers().get(header::HOST).cloned();
    let authority = authority(&uri, host.as_ref());
    let connect = request.method() == Method::CONNECT;
    if connect && !manager.connect {
        // Envoy answers CONNECT with 403 unless the connection manager enables it.
        return local(StatusCode::FORBIDDEN, "");
    }
    // A CONNECT names only an authority; it has no path to match.
    let path = uri
        .path_and_query()
        .map_or(if connect { "" } else { "/" }, PathAndQuery::as_str);
    let version = request.version();
    let head = RequestHead {
        authority,
        method: request.method(),
        path,
        scheme: scheme(request.uri(), request.headers(), downstream.tls),
        headers: request.headers(),
    };
    let Some(selected) = table.select(&head) else {
        return local(StatusCode::NOT_FOUND, "");
    };
    // Every answer to a routed request carries the route's response headers, the proxy's
    // own answers (direct responses, redirects, errors) included, as in Envoy.
    let finish = |mut response: Response<ProxyBody>| {
        selected.apply_response_headers(response.headers_mut());
        response
    };
    let forward = match &selected.route.action {
        Action::DirectResponse(direct) => {
            let mut response = local(direct.status, direct.body.clone());
            set_location(&mut response, direct.location(&head).as_deref());
            return finish(response);
        }
        Action::Redirect(redirect) => {
            let (status, location) = redirect.location(&head);
            let mut response = local(status, "");
            set_location(&mut response, Some(&location));
            return finish(response);
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
        return finish(local(forward.cluster_not_found_response_code, ""));
    };
    if connect {
        if forward.terminate_connect {
            return finish(terminate_connect(cluster, downstream, request).await);
        }
        // Not terminated: the CONNECT itself goes upstream, as Envoy proxies it, with
        // the route's header mutations like any forwarded request.
        selected.apply_request_headers(request.headers_mut());
        let timeout = super::timeout::for_request(
            forward.timeout,
            forward.max_stream_duration.as_ref(),
            request.headers(),
        );
        let mut response = forward_connect(cluster, downstream, request, authority, timeout).await;
        *response.version_mut() = version;
        return finish(response);
    }
    let rewritten = forward.rewrite_path(path);
    // Owned, for the request's headers are about to change.
    let new_host = forward.rewrite_host(target, &head).map(NewHost::into_owned);
    let timeout = super::timeout::for_request(
        forward.timeout,
        forward.max_stream_duration.as_ref(),
        request.headers(),
    );
    // Envoy hashes requests only for clusters whose balancer uses the hash.
    let hashed = cluster
        .balancer
        .as_ref()
        .filter(|b| b.hashes_requests())
        .map(|_| {
            forward.hasher.hash(&HashInput {
                headers: head.headers,
                authority: Some(authority),
                path: Some(path),
                remote: Some(downstream.peer),
                local: Some(downstream.destination),
            })
        })
        .unwrap_or_default();

    let headers = request.headers_mut();
    if let Some((_, protocol)) = &upgrade {
        headers::keep_upgrade(headers, protocol.clone());
    }
    if let Some(t) = timeout {
        headers.insert(X_ENVOY_EXPECTED_RQ_TIMEOUT_MS, headers::millis(t));
    }
    selected.apply_request_headers(headers);
    if let Some(NewHost::Route(_)) = &new_host {
        headers::record_original_host(headers, authority, forward.append_x_forwarded_host);
    }
    if rewritten.is_some()
        && let Ok(original) = HeaderValue::from_str(path)
    {
        headers.insert(X_ENVOY_ORIGINAL_PATH, original);
    }

    let started = Instant::now();
    let target = Target {
        authority: new_host.as_ref().map_or(authority, NewHost::as_str),
        path: rewritten.as_deref().unwrap_or(path),
        hash: hashed.hash,
        timeout,
        idle: super::timeout::idle(forward.idle_timeout, manager.stream_idle_timeout)
            .map(|t| IdleTimer::new(t, activity)),
        auto_host_rewrite: forward.auto_host_rewrite(),
        append_x_forwarded_host: forward.append_x_forwarded_host,
    };
    let result = forward_to(shared, cluster, downstream, request, target).await;
    let mut response = match result {
        Ok(response) => response,
        Err(failure) => return finish(failure.response()),
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
    let mut response = finish(response);
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

/// The request's scheme, as Envoy sets `:scheme`: the one the client sent (HTTP/2, or an
/// HTTP/1.1 absolute URL), else `x-forwarded-proto` when it is `http` or `https` (the
/// connection manager has already decided whether to trust it), else the connection's.
fn scheme<'r>(uri: &'r Uri, headers: &'r HeaderMap, tls: bool) -> &'r str {
    if let Some(scheme) = uri.scheme_str() {
        return scheme;
    }
    match headers.get(X_FORWARDED_PROTO).and_then(|v| v.to_str().ok()) {
        Some(proto @ ("http" | "https")) => proto,
        _ if tls => "https",
        _ => "http",
    }
}

/// Sets the response's `Location`, when there is one.
fn set_location(response: &mut Response<ProxyBody>, location: Option<&str>) {
    if let Some(value) = location.and_then(|l| HeaderValue::from_str(l).ok()) {
        response.headers_mut().insert(header::LOCATION, value);
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
    /// The stream's idle timer, when a stream idle timeout is in force.
    idle: Option<IdleTimer>,
    /// Whether the authority becomes the picked endpoint's hostname, when it has one.
    auto_host_rewrite: bool,
    /// Whether a rewritten authority is appended to `x-forwarded-host`.
    append_x_forwarded_host: bool,
}

/// Why a forwarded request got no upstream response, and what Envoy answers then.
enum Failure {
    /// No endpoint could take it (`UH`).
    NoHealthyUpstream,
    /// Connecting or exchanging failed (`UF`, `URX`).
    Upstream(UpstreamError),
    /// The route's timeout passed (`UT`).
    Timeout,
    /// Nothing moved for the stream idle timeout before the response began.
    StreamIdle,
}

impl From<Unreachable> for Failure {
    fn from(unreachable: Unreachable) -> Self {
        match unreachable {
            Unreachable::NoHealthyEndpoint => Failure::NoHealthyUpstream,
        }
    }
}

impl Failure {
    fn response(self) -> Response<ProxyBody> {
        match self {
            Failure::NoHealthyUpstream => {
                local(StatusCode::SERVICE_UNAVAILABLE, "no healthy upstream")
            }
            Failure::Upstream(e) => {
                // The body names the failure as Envoy does; the cause goes to the log.
                let cause = std::error::Error::source(&e).map(ToString::to_string);
                tracing::debug!(error = %e, cause, "upstream request failed");
                local(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "upstream connect error or disconnect/reset before headers. reset reason: {e}"
                    ),
                )
            }
            Failure::Timeout => local(StatusCode::GATEWAY_TIMEOUT, "upstream request timeout"),
            Failure::StreamIdle => local(StatusCode::REQUEST_TIMEOUT, "stream timeout"),
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
    let picked = endpoint::choose(state, downstream.destination, target.hash)?;
    let (endpoint, hostname) = (picked.address, picked.hostname);
    let authority = if target.auto_host_rewrite && !hostname.is_empty() {
        headers::record_original_host(
            request.headers_mut(),
            target.authority,
            target.append_x_forwarded_host,
        );
        hostname
    } else {
        target.authority
    };
    let http2 = match cluster.protocol {
        _ if request.headers().contains_key(header::UPGRADE) => false,
        UpstreamProtocol::Http1 => false,
        UpstreamProtocol::Http2 => true,
        UpstreamProtocol::Downstream => request.version() == Version::HTTP_2,
    };
    set_upstream_target(&mut request, authority, target.path, http2);
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
    // Until the response body ends: Envoy counts a request active till its response
    // completes, and LEAST_REQUEST balances on that.
    let active = Active {
        endpoint: picked.into_in_flight(),
        request: stats.upstream_rq_active.track(),
    };
    let send = shared.upstreams.send(key, settings, stats, request);
    let timed = async {
        match target.timeout {
            Some(t) => tokio::time::timeout(t, send).await.map_err(|_| {
                stats.upstream_rq_timeout.inc();
                Failure::Timeout
            }),
            None => Ok(send.await),
        }
    };
    let mut idle = target.idle;
    let response = match &mut idle {
        Some(timer) => tokio::select! {
            response = timed => response,
            () = timer.expired() => Err(Failure::StreamIdle),
        },
        None => timed.await,
    }?
    .map_err(Failure::Upstream)?;
    stats.upstream_rq.record(response.status().as_u16());
    Ok(response.map(|body| ProxyBody::relayed(body, active, idle)))
}

/// A TCP connection to an endpoint of `state`'s cluster, for a CONNECT's tunnel; else
/// the answer the client gets.
async fn connect_upstream(
    state: &ClusterState,
    downstream: Downstream,
) -> Result<tokio::net::TcpStream, Response<ProxyBody>> {
    let picked = endpoint::choose(state, downstream.destination, None)
        .map_err(|unreachable| Failure::from(unreachable).response())?;
    let cluster = &state.cluster;
    crate::upstream::connect(
        picked.address,
        cluster.bind,
        cluster.connect_timeout,
        &state.stats,
    )
    .await
    .map_err(|e| Failure::Upstream(e).response())
}

/// A CONNECT the route terminates: a TCP connection to an endpoint of the cluster, then
/// 200 to the client and the tunnel's bytes relayed both ways.
async fn terminate_connect(
    state: &ClusterState,
    downstream: Downstream,
    mut request: Request<Incoming>,
) -> Response<ProxyBody> {
    let upstream = match connect_upstream(state, downstream).await {
        Ok(stream) => stream,
        Err(response) => return response,
    };
    let client = hyper::upgrade::on(&mut request);
    let open = state.stats.upstream_cx_active.track();
    tokio::spawn(async move {
        let _open = open;
        match client.await {
            Ok(client) => {
                let mut client = TokioIo::new(client);
                let mut upstream = upstream;
                if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
                    tracing::debug!(error = %e, "CONNECT tunnel ended");
                }
            }
            Err(e) => tracing::debug!(error = %e, "CONNECT upgrade failed"),
        }
    });
    local(StatusCode::OK, "")
}

/// A CONNECT forwarded as a request to an endpoint of the cluster, on a connection of
/// its own: a 2xx answer opens the tunnel between the client and that connection; any
/// other answer is the client's response. `timeout` bounds the wait for the answer.
async fn forward_connect(
    state: &ClusterState,
    downstream: Downstream,
    mut request: Request<Incoming>,
    authority: &str,
    timeout: Option<Duration>,
) -> Response<ProxyBody> {
    let client = hyper::upgrade::on(&mut request);
    // The headers were sanitized (hop-by-hop ones gone) before routing.
    let Some(connect) = super::connect::request(authority, request.into_parts().0.headers) else {
        return local(StatusCode::BAD_REQUEST, "");
    };
    let upstream = match connect_upstream(state, downstream).await {
        Ok(stream) => stream,
        Err(response) => return response,
    };
    let stats = &state.stats;
    stats.upstream_rq_total.inc();
    let active = stats.upstream_rq_active.track();
    let send = super::connect::send(upstream, connect);
    let sent = match timeout {
        Some(t) => tokio::time::timeout(t, send).await.map_err(|_| {
            stats.upstream_rq_timeout.inc();
            Failure::Timeout
        }),
        None => Ok(send.await),
    };
    drop(active);
    let mut response = match sent.and_then(|r| r.map_err(|e| Failure::Upstream(e.into()))) {
        Ok(response) => response,
        Err(failure) => return failure.response(),
    };
    stats.upstream_rq.record(response.status().as_u16());
    headers::strip_hop_by_hop(response.headers_mut());
    if response.status().is_success() {
        let upstream = hyper::upgrade::on(&mut response);
        let open = stats.upstream_cx_active.track();
        tokio::spawn(async move {
            let _open = open;
            tunnel(client, upstream).await;
        });
        // The tunnel carries what follows; a 2xx answer to CONNECT has no body.
        return response.map(|_| ProxyBody::empty());
    }
    response.map(ProxyBody::Unpooled)
}

/// Shapes the request line for the upstream's HTTP version: origin-form with a `host`
/// header for HTTP/1.1, scheme and authority in the URI for HTTP/2.
fn set_upstream_target(request: &mut Request<Incoming>, authority: &str, path: &str, http2: bool) {
    if http2 {
        if let Ok(uri) = format!("http://{authority}{path}").parse::<Uri>() {
            *request.uri_mut() = uri;
        }
        *request.version_mut() = Version::HTTP_2;
        request.headers_mut().remove(header::HOST);
        return;
    }
    // The common case, an origin-form request forwarded unchanged, keeps its URI and host.
    let uri = request.uri();
    let unchanged =
        uri.authority().is_none() && uri.path_and_query().map_or("/", PathAndQuery::as_str) == path;
    if !unchanged && let Ok(uri) = path.parse::<Uri>() {
        *request.uri_mut() = uri;
    }
    *request.version_mut() = Version::HTTP_11;
    let headers = request.headers_mut();
    if headers
        .get(header::HOST)
        .is_none_or(|h| h.as_bytes() != authority.as_bytes())
        && let Ok(host) = HeaderValue::from_str(authority)
    {
        headers.insert(header::HOST, host);
    }
}

/// The request's authority: `:authority` (HTTP/2, absolute-form) or the `host` header.
fn authority<'r>(uri: &'r Uri, host: Option<&'r HeaderValue>) -> &'r str {
    uri.authority()
        .map(|a| a.as_str())
        .or_else(|| host.and_then(|h| h.to_str().ok()))
        .unwrap_or_default()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scheme_is_the_clients_then_x_forwarded_proto_then_the_connections() {
        let absolute: Uri = "https://shop/cart".parse().unwrap();
        let origin: Uri = "/cart".parse().unwrap();
        let forwarded = |proto: &'static str| {
            let mut h = HeaderMap::new();
            h.insert(X_FORWARDED_PROTO, HeaderValue::from_static(proto));
            h
        };
        let none = HeaderMap::new();
        assert_eq!(scheme(&absolute, &forwarded("http"), false), "https");
        assert_eq!(scheme(&origin, &forwarded("https"), false), "https");
        assert_eq!(scheme(&origin, &forwarded("http"), true), "http");
        // Envoy takes only `http` and `https` from x-forwarded-proto.
        assert_eq!(scheme(&origin, &forwarded("wss"), false), "http");
        assert_eq!(scheme(&origin, &none, true), "https");
        assert_eq!(scheme(&origin, &none, false), "http");
    }
}
