//! A routed request forwarded to an endpoint of its cluster: the upstream exchange up to
//! the response head, and what the client hears when it fails (Envoy's status codes,
//! bodies and response flags).

use std::time::Duration;

use http::header::{self, HeaderValue};
use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode, Uri, Version};
use hyper::body::Incoming;

use super::body::{Active, ProxyBody};
use super::headers;
use super::router::{Downstream, local};
use crate::Shared;
use crate::activity::IdleTimer;
use crate::balance::Outcome;
use crate::config::{ClusterState, UpstreamProtocol};
use crate::endpoint::{self, Unreachable};
use crate::flags::ResponseFlags;
use crate::stats::GaugeGuard;
use crate::upstream::{PoolKey, PoolSettings, PooledBody, UpstreamError};

/// Where a forwarded request goes, beyond its cluster.
pub(super) struct Target<'a> {
    /// The authority to send (after any host rewrite).
    pub(super) authority: &'a str,
    /// The path to send (after any rewrite).
    pub(super) path: &'a str,
    /// The request's hash, for consistent-hash balancers.
    pub(super) hash: Option<u64>,
    /// The route's timeout.
    pub(super) timeout: Option<Duration>,
    /// The stream's idle timer, when a stream idle timeout is in force.
    pub(super) idle: Option<IdleTimer>,
    /// Whether the authority becomes the picked endpoint's hostname, when it has one.
    pub(super) auto_host_rewrite: bool,
    /// Whether a rewritten authority is appended to `x-forwarded-host`.
    pub(super) append_x_forwarded_host: bool,
}

/// Why a forwarded request got no upstream response, and what Envoy answers then.
pub(super) enum Failure {
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
    /// The response flag Envoy records for the failure.
    pub(super) fn flags(&self) -> ResponseFlags {
        match self {
            Failure::NoHealthyUpstream => ResponseFlags::UH,
            Failure::Upstream(UpstreamError::Overflow) => ResponseFlags::UO,
            Failure::Upstream(UpstreamError::Http(_)) => ResponseFlags::UC,
            Failure::Upstream(_) => ResponseFlags::UF,
            Failure::Timeout => ResponseFlags::UT,
            Failure::StreamIdle => ResponseFlags::SI,
        }
    }

    /// The client's answer, carrying the failure's response flags.
    pub(super) fn response(self) -> Response<ProxyBody> {
        let flags = self.flags();
        let mut response = match self {
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
        };
        if flags.contains(ResponseFlags::UO) {
            // Envoy tells the client a circuit breaker, not the upstream, refused it.
            response
                .headers_mut()
                .insert("x-envoy-overloaded", HeaderValue::from_static("true"));
        }
        response.extensions_mut().insert(flags);
        response
    }
}

/// Sends the request to an endpoint of `cluster` and waits for the response head.
pub(super) async fn forward_to(
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
        limits: cluster.circuit_breakers,
    };
    let stats = &state.stats;
    // Until the response body ends: Envoy counts a request active till its response
    // completes, bounds that by `max_requests`, and LEAST_REQUEST balances on it.
    let admitted = admit(state)?;
    stats.upstream_rq_total.inc();
    let active = Active {
        endpoint: picked.into_in_flight(),
        request: admitted,
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
    let result = match &mut idle {
        Some(timer) => tokio::select! {
            response = timed => response,
            () = timer.expired() => Err(Failure::StreamIdle),
        },
        None => timed.await,
    };
    if let Some(outcome) = outcome(&result) {
        endpoint::report(state, active.endpoint.as_ref(), outcome);
    }
    let response = result?.map_err(Failure::Upstream)?;
    stats.upstream_rq.record(response.status().as_u16());
    Ok(response.map(|body| ProxyBody::relayed(body, active, idle)))
}

/// What outlier detection makes of an exchange: the upstream's status, or a failure
/// that is the endpoint's (not an overflow, not the client's idleness).
fn outcome(
    result: &Result<Result<Response<PooledBody>, UpstreamError>, Failure>,
) -> Option<Outcome> {
    match result {
        Ok(Ok(response)) => Some(Outcome::Response(response.status().as_u16())),
        Ok(Err(UpstreamError::Overflow)) => None,
        Ok(Err(_)) => Some(Outcome::LocalFailure),
        Err(Failure::Timeout) => Some(Outcome::Timeout),
        Err(_) => None,
    }
}

/// Counts the request active in its cluster, unless `max_requests` are already.
fn admit(state: &ClusterState) -> Result<GaugeGuard, Failure> {
    let stats = &state.stats;
    stats
        .upstream_rq_active
        .track_within(
            state.cluster.circuit_breakers.max_requests,
            &stats.circuit_breakers.rq_open,
        )
        .ok_or_else(|| {
            stats.upstream_rq_pending_overflow.inc();
            Failure::Upstream(UpstreamError::Overflow)
        })
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
