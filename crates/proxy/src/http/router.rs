//! The router: one downstream request through the route table to an upstream endpoint
//! and back, or answered by the proxy itself (direct responses, redirects, errors with
//! Envoy's status codes and bodies: [`local_reply`]).

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::header::{self, HeaderMap, HeaderValue};
use http::uri::PathAndQuery;
use http::{Method, Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use super::body::ProxyBody;
use super::headers::{
    self, X_ENVOY_EXPECTED_RQ_TIMEOUT_MS, X_ENVOY_ORIGINAL_PATH, X_ENVOY_UPSTREAM_SERVICE_TIME,
    X_FORWARDED_PROTO,
};
use super::local_reply::{self, local};
use super::request_body::ClientBody;
use super::{connect, fault, forward, mirror};
use crate::Shared;
use crate::access_log::Exchange;
use crate::activity::{Activity, IdleTimer};
use crate::authz::{self, Outcome};
use crate::balance::HashInput;
use crate::config::HttpManager;
use crate::flags::ResponseFlags;
use crate::metrics::{self, UpstreamCluster, UpstreamHost};
use crate::route::{Action, NewHost, RequestHead};
use crate::tls::Session;

/// What the router knows of the downstream connection; cheap to clone (the TLS
/// session is shared).
#[derive(Debug, Clone)]
pub struct Downstream {
    /// The client.
    pub peer: SocketAddr,
    /// Where the client connected (its original destination when redirected).
    pub destination: SocketAddr,
    /// The connection's TLS session when it is TLS: the SNI asked for, the ALPN chosen
    /// and the client's verified certificate.
    pub tls: Option<Arc<Session>>,
}

impl Downstream {
    /// Whether the connection is TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The client's verified identity, as RBAC's `authenticated.principal_name` matches
    /// it (the first URI SAN of its certificate, else DNS SAN, else subject); None when
    /// it presented no certificate.
    pub fn principal(&self) -> Option<&str> {
        self.tls.as_deref().and_then(Session::principal)
    }

    /// What the authorization filters read of the connection.
    pub(crate) fn authz_connection(&self) -> authz::Connection<'_> {
        authz::Connection {
            source: self.peer,
            destination: self.destination,
            principal: self.principal(),
            server_name: self.tls.as_deref().and_then(|t| t.sni.as_deref()),
            tls: self.is_tls(),
        }
    }
}

/// Serves one request.
pub async fn serve(
    shared: Arc<Shared>,
    manager: Arc<HttpManager>,
    downstream: Downstream,
    activity: Arc<Activity>,
    request: Request<Incoming>,
) -> Result<Response<ProxyBody>, Infallible> {
    let stats = &manager.stats;
    stats.downstream_rq_total.inc();
    let _active = stats.downstream_rq_active.track();
    // Envoy answers a gRPC client's request in gRPC even when the proxy answers it.
    let grpc = crate::route::is_grpc(request.headers());
    let mut exchange =
        (!manager.access_log.is_empty()).then(|| Exchange::begin(&manager.access_log, &downstream));
    let mut telemetry = None;
    // Boxed: the routing future is large, and hyper moves the service's future into each
    // stream's task; a pointer moves cheaper than kilobytes of state.
    let routing = route(
        &shared,
        &manager,
        downstream,
        activity,
        request,
        &mut exchange,
        &mut telemetry,
    );
    let mut response = Box::pin(routing).await;
    if grpc {
        response = local_reply::for_grpc(response);
    }
    stats.downstream_rq.record(response.status().as_u16());
    manager.server_header.apply(response.headers_mut());
    let response = match telemetry {
        Some(telemetry) => telemetry.finish(response),
        None => response,
    };
    Ok(match exchange {
        Some(exchange) => exchange.respond(response),
        None => response,
    })
}

async fn route(
    shared: &Arc<Shared>,
    manager: &HttpManager,
    downstream: Downstream,
    activity: Arc<Activity>,
    request: Request<Incoming>,
    exchange: &mut Option<Exchange>,
    telemetry: &mut Option<metrics::Exchange>,
) -> Response<ProxyBody> {
    let snapshot = shared.store.snapshot();
    let mut request = request.map(ClientBody::new);
    let Some(table) = snapshot.route_table(manager) else {
        return flagged(local(StatusCode::NOT_FOUND, ""), ResponseFlags::NR);
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
    let remote = headers::sanitize_request(
        request.headers_mut(),
        manager,
        table.internal_only_headers(),
        downstream.peer,
        downstream.is_tls(),
    );
    manager
        .client_cert
        .apply(request.headers_mut(), downstream.tls.as_deref());
    // Istio's filters run after the connection manager's sanitizing, as Envoy's do: they
    // see its result, and it does not see the peer metadata they add.
    *telemetry = manager
        .telemetry
        .as_ref()
        .map(|t| t.begin(&mut request, &downstream));
    let mut upstream_spans = None;
    if let Some(tracing) = &manager.tracing
        && let Some(sampled) = tracing.trace(shared, &mut request)
    {
        upstream_spans = sampled.upstream;
        exchange
            .get_or_insert_with(|| Exchange::begin(&manager.access_log, &downstream))
            .trace(sampled.span);
    }
    if let Some(x) = exchange {
        x.request(&request);
    }
    // Cheap copies (shared bytes) that routing borrows from while the request changes.
    let connect = request.method() == Method::CONNECT;
    if connect && !manager.connect {
        // Envoy answers CONNECT with 403 unless the connection manager enables it.
        return local(StatusCode::FORBIDDEN, "");
    }
    // The authorization filters run before routing, in their configured order; what
    // they change in the request is what routing sees.
    let mut filtered = HeaderMap::new();
    if !manager.authz.is_empty() {
        let connection = downstream.authz_connection();
        match manager
            .authz
            .run(shared, connection, remote, &mut request)
            .await
        {
            Outcome::Respond(response) => return response,
            Outcome::Continue { response_headers } => filtered = response_headers,
        }
    }
    let uri = request.uri().clone();
    let host = request.headers().get(header::HOST).cloned();
    let authority = authority(&uri, host.as_ref());
    // A CONNECT names only an authority; it has no path to match.
    let path = uri
        .path_and_query()
        .map_or(if connect { "" } else { "/" }, PathAndQuery::as_str);
    let version = request.version();
    let head = RequestHead {
        authority,
        method: request.method(),
        path,
        scheme: scheme(request.uri(), request.headers(), downstream.is_tls()),
        headers: request.headers(),
    };
    let Some(selected) = table.select(&head) else {
        let mut response = flagged(local(StatusCode::NOT_FOUND, ""), ResponseFlags::NR);
        append(response.headers_mut(), &filtered);
        return response;
    };
    if let Some(x) = exchange {
        x.route(selected.route);
    }
    // The fault filter runs before the router, on the route it picked.
    let injected = match &manager.fault {
        Some(defaults) => fault::inject(defaults, &selected, &head, &manager.stats.fault).await,
        None => fault::Injected::default(),
    };
    // Every answer to a routed request carries the route's response headers, the proxy's
    // own answers (direct responses, redirects, errors) included, as in Envoy.
    let finish = |mut response: Response<ProxyBody>| {
        selected.apply_response_headers(response.headers_mut());
        append(response.headers_mut(), &filtered);
        fault::add_flags(&mut response, injected.flags);
        response
    };
    if let Some(abort) = injected.abort {
        return finish(abort);
    }
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
        let response = local(forward.cluster_not_found_response_code, "");
        return finish(flagged(response, ResponseFlags::NC));
    };
    // From here, answers name the cluster for Istio's metrics, when they are recorded
    // (an extension costs allocations per response).
    let metered = manager.telemetry.is_some();
    let finish = |mut response: Response<ProxyBody>| {
        if metered {
            let upstream = UpstreamCluster(cluster.cluster.clone());
            response.extensions_mut().insert(upstream);
        }
        finish(response)
    };
    if let Some(x) = exchange {
        x.cluster(&cluster.cluster.name);
    }
    if connect {
        if forward.terminate_connect {
            return finish(connect::terminate_connect(cluster, downstream, request).await);
        }
        // Not terminated: the CONNECT itself goes upstream, as Envoy proxies it, with
        // the route's header mutations like any forwarded request.
        selected.apply_request_headers(request.headers_mut());
        let timeout = super::timeout::for_request(
            forward.timeout,
            forward.max_stream_duration.as_ref(),
            request.headers(),
        );
        let mut response =
            connect::forward_connect(cluster, downstream, request, authority, timeout).await;
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
    let mirrors = mirror::select(&forward.request_mirror_policies, &snapshot, &head);

    let headers = request.headers_mut();
    if let Some((_, protocol)) = &upgrade {
        headers::keep_upgrade(headers, protocol.clone());
    }
    if let Some(t) = timeout {
        headers.insert(X_ENVOY_EXPECTED_RQ_TIMEOUT_MS, headers::millis(t));
    }
    selected.apply_request_headers(headers);
    if let Some(tracing) = &manager.tracing {
        tracing.propagate_decorator(headers, selected.route.decorator.as_ref());
    }
    if let Some(NewHost::Route(_)) = &new_host {
        headers::record_original_host(headers, authority, forward.append_x_forwarded_host);
    }
    if rewritten.is_some()
        && let Ok(original) = HeaderValue::from_str(path)
    {
        headers.insert(X_ENVOY_ORIGINAL_PATH, original);
    }

    let started = Instant::now();
    let mut upstream_host = None;
    let target = forward::Target {
        authority: new_host.as_ref().map_or(authority, NewHost::as_str),
        path: rewritten.as_deref().unwrap_or(path),
        hash: hashed.hash,
        timeout,
        timer: IdleTimer::new(
            super::timeout::idle(forward.idle_timeout, manager.stream_idle_timeout),
            activity,
        ),
        auto_host_rewrite: forward.auto_host_rewrite(),
        append_x_forwarded_host: forward.append_x_forwarded_host,
        retry: forward.retry_policy.as_ref(),
        attempt_count: forward.attempt_count,
        buffer_limit: forward.buffer_limit,
        mirrors,
        upstream_host: &mut upstream_host,
        spans: upstream_spans,
    };
    let result = forward::forward_to(shared, cluster, &downstream, request, target).await;
    if let Some(x) = exchange {
        x.upstream_host(upstream_host);
    }
    let mut response = match result {
        Ok(response) => response,
        Err(failure) => return finish(failure.response()),
    };
    if metered && let Some(host) = upstream_host {
        response.extensions_mut().insert(UpstreamHost(host));
    }
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
pub(super) async fn tunnel(client: hyper::upgrade::OnUpgrade, upstream: hyper::upgrade::OnUpgrade) {
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

/// What routing and authorization read of `request`, on a TLS connection or not.
pub(crate) fn request_head<B>(request: &Request<B>, tls: bool) -> RequestHead<'_> {
    let uri = request.uri();
    let connect = request.method() == Method::CONNECT;
    RequestHead {
        authority: authority(uri, request.headers().get(header::HOST)),
        method: request.method(),
        path: uri
            .path_and_query()
            .map_or(if connect { "" } else { "/" }, PathAndQuery::as_str),
        scheme: scheme(uri, request.headers(), tls),
        headers: request.headers(),
    }
}

/// Appends `extra` to `headers`.
fn append(headers: &mut HeaderMap, extra: &HeaderMap) {
    for (name, value) in extra {
        headers.append(name, value.clone());
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

/// The request's authority: `:authority` (HTTP/2, absolute-form) or the `host` header.
fn authority<'r>(uri: &'r Uri, host: Option<&'r HeaderValue>) -> &'r str {
    uri.authority()
        .map(|a| a.as_str())
        .or_else(|| host.and_then(|h| h.to_str().ok()))
        .unwrap_or_default()
}

/// `response` with the response flags that say why the proxy answered it.
pub(super) fn flagged(
    mut response: Response<ProxyBody>,
    flags: ResponseFlags,
) -> Response<ProxyBody> {
    response.extensions_mut().insert(flags);
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
