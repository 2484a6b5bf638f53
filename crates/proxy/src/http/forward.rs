//! A routed request forwarded to an endpoint of its cluster: the upstream exchange up to
//! the response head, and what the client hears when it fails (Envoy's status codes,
//! bodies and response flags).

use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderValue};
use http::request::Parts;
use http::uri::PathAndQuery;
use http::{Request, Response, StatusCode, Uri, Version};
use http_body::Body as _;
use tokio::time::Instant;

use super::body::{Active, ProxyBody};
use super::headers::{self, X_ENVOY_EXPECTED_RQ_TIMEOUT_MS};
use super::local_reply::local;
use super::mirror::{self, Mirror};
use super::request_body::{ClientBody, Replayable, RequestBody};
use super::retry::{AttemptFailure, Decision, Retries, RetryPolicy, X_ENVOY_ATTEMPT_COUNT};
use super::router::Downstream;
use crate::Shared;
use crate::activity::{Expiry, IdleTimer};
use crate::balance::Outcome;
use crate::config::{ClusterState, UpstreamProtocol};
use crate::endpoint::{self, Unreachable};
use crate::flags::ResponseFlags;
use crate::route::AttemptCount;
use crate::stats::{ClusterStats, GaugeGuard};
use crate::trace::UpstreamSpans;
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
    /// The stream's timer (and its idle timeout, when one is in force).
    pub(super) timer: IdleTimer,
    /// Whether the authority becomes the picked endpoint's hostname, when it has one.
    pub(super) auto_host_rewrite: bool,
    /// Whether a rewritten authority is appended to `x-forwarded-host`.
    pub(super) append_x_forwarded_host: bool,
    /// The route's retry policy.
    pub(super) retry: Option<&'a RetryPolicy>,
    /// Where `x-envoy-attempt-count` goes.
    pub(super) attempt_count: AttemptCount,
    /// How many request body bytes may be kept for retries and mirrors.
    pub(super) buffer_limit: usize,
    /// The mirrors that get a copy of this request.
    pub(super) mirrors: Vec<Mirror>,
    /// Where the endpoint last tried is noted (for the access log).
    pub(super) upstream_host: &'a mut Option<std::net::SocketAddr>,
    /// Each attempt's span, when the request is sampled and attempts have their own.
    pub(super) spans: Option<UpstreamSpans<'a>>,
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
                let details = crate::access_log::Details::upstream_reset(&e);
                let mut response = local(
                    StatusCode::SERVICE_UNAVAILABLE,
                    format!(
                        "upstream connect error or disconnect/reset before headers. reset reason: {e}"
                    ),
                );
                response.extensions_mut().insert(details);
                response
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

/// A failure with the response flags the retries added (`URX`, `UO`).
pub(super) struct Failed {
    failure: Failure,
    flags: ResponseFlags,
}

impl Failed {
    /// The client's answer, carrying the failure's response flags.
    pub(super) fn response(self) -> Response<ProxyBody> {
        let mut response = self.failure.response();
        if let Some(flags) = response.extensions_mut().get_mut::<ResponseFlags>() {
            flags.insert(self.flags);
        }
        response
    }
}

impl From<Failure> for Failed {
    fn from(failure: Failure) -> Self {
        Failed {
            failure,
            flags: ResponseFlags::NONE,
        }
    }
}

/// How an attempt ended without a response head.
enum AttemptError {
    /// The upstream exchange failed.
    Upstream(UpstreamError),
    /// The attempt's `per_try_timeout` passed.
    PerTryTimeout,
    /// A failure no retry helps.
    Final(Failure),
}

/// Sends the request to an endpoint of `cluster` and waits for the response head,
/// retrying as the route's policy says and copying it to the route's mirrors.
pub(super) async fn forward_to(
    shared: &Arc<Shared>,
    state: &ClusterState,
    downstream: &Downstream,
    request: Request<ClientBody>,
    target: Target<'_>,
) -> Result<Response<ProxyBody>, Failed> {
    let cluster = &state.cluster;
    let stats = &state.stats;
    let (mut template, body) = request.into_parts();
    let http2 = match cluster.protocol {
        _ if template.headers.contains_key(header::UPGRADE) => false,
        UpstreamProtocol::Http1 => false,
        UpstreamProtocol::Http2 => true,
        UpstreamProtocol::Downstream => template.version == Version::HTTP_2,
    };
    let mut retries = target.retry.map(Retries::new);
    let may_retry = target.retry.is_some_and(|p| p.num_retries > 0);
    let mut body = Source::new(
        body,
        may_retry || !target.mirrors.is_empty(),
        target.buffer_limit,
    );
    if !target.mirrors.is_empty() {
        let follower = match &body {
            Source::Kept(kept) => Some(kept.follower()),
            _ => None,
        };
        mirror::launch(
            shared,
            target.mirrors,
            &template,
            (target.authority, target.path),
            follower.as_ref(),
            target.timeout,
        );
    }
    let route_deadline = target.timeout.map(|t| Instant::now() + t);
    let per_try = target.retry.and_then(|p| p.per_try_timeout);
    let mut timer = target.timer;
    let mut flags = ResponseFlags::NONE;
    let settings = PoolSettings::of(cluster);
    loop {
        let attempt = retries.as_ref().map_or(1, Retries::attempt);
        let picked = pick(state, downstream, target.hash, retries.as_ref())?;
        let (endpoint, hostname) = (picked.address, picked.hostname);
        *target.upstream_host = Some(endpoint);
        if let Some(r) = &mut retries {
            r.tried(endpoint);
        }
        let authority = if target.auto_host_rewrite && !hostname.is_empty() {
            if attempt == 1 {
                headers::record_original_host(
                    &mut template.headers,
                    target.authority,
                    target.append_x_forwarded_host,
                );
            }
            hostname
        } else {
            target.authority
        };
        // The deadline of this attempt: the route's, or sooner its own.
        let deadline = match (route_deadline, per_try.map(|t| Instant::now() + t)) {
            (Some(route), Some(own)) => Some(route.min(own)),
            (route, own) => route.or(own),
        };
        let mut parts = if may_retry {
            copy(&template)
        } else {
            std::mem::replace(&mut template, Request::new(()).into_parts().0)
        };
        set_upstream_target(&mut parts, authority, target.path, http2);
        if per_try.is_some()
            && let Some(d) = deadline
        {
            parts.headers.insert(
                X_ENVOY_EXPECTED_RQ_TIMEOUT_MS,
                headers::millis(d.saturating_duration_since(Instant::now())),
            );
        }
        if target.attempt_count.request {
            parts.headers.insert(X_ENVOY_ATTEMPT_COUNT, attempt.into());
        }
        let mut span = (target.spans.as_ref())
            .map(|s| s.attempt(&mut parts.headers, &cluster.name, endpoint, attempt, http2));
        let request = Request::from_parts(parts, body.for_attempt());
        let key = PoolKey {
            endpoint,
            http2,
            bind: cluster.bind,
            transport: state.transport(endpoint).clone(),
        };
        // Until the response body ends: Envoy counts a request active till its response
        // completes, bounds that by `max_requests`, and LEAST_REQUEST balances on it.
        let admitted = admit(state).map_err(|failure| {
            if let (Some(span), Failure::Upstream(e)) = (&mut span, &failure) {
                span.reset(e);
            }
            Failed { failure, flags }
        })?;
        stats.upstream_rq_total.inc();
        let mut active = Active {
            endpoint: picked.into_in_flight(),
            request: admitted,
            span,
        };
        let send = shared.upstreams.send(key, settings, stats, request);
        let outcome = tokio::select! {
            biased;
            sent = send => sent.map_err(AttemptError::Upstream),
            expiry = std::future::poll_fn(|cx| timer.poll_until(cx, deadline)) => Err(match expiry {
                Expiry::Idle => AttemptError::Final(Failure::StreamIdle),
                Expiry::Deadline if route_deadline.is_some_and(|d| d <= Instant::now()) => {
                    stats.upstream_rq_timeout.inc();
                    AttemptError::Final(Failure::Timeout)
                }
                Expiry::Deadline => {
                    stats.upstream_rq_per_try_timeout.inc();
                    AttemptError::PerTryTimeout
                }
            }),
        };
        if let Some(span) = &mut active.span {
            match &outcome {
                Ok(response) => span.respond(response.status()),
                Err(AttemptError::Upstream(e)) => span.reset(e),
                Err(e) => span.cancel(matches!(e, AttemptError::PerTryTimeout)),
            }
        }
        if let Some(outcome) = outlier_outcome(&outcome) {
            endpoint::report(state, active.endpoint.as_ref(), outcome);
        }
        let replayable = body.can_replay();
        let (retriable, failure) = match outcome {
            Ok(response) => {
                stats.upstream_rq.record(response.status().as_u16());
                let retriable = replayable
                    && retries.as_ref().is_some_and(|r| {
                        r.policy()
                            .retries_response(response.status(), response.headers())
                    });
                let decision = match &mut retries {
                    Some(r) if replayable => r.decide(retriable, state),
                    _ => Decision::Done,
                };
                match decision {
                    Decision::Retry(back_off) => {
                        drop((response, active));
                        wait(&mut timer, back_off, route_deadline, stats)
                            .await
                            .map_err(|failure| Failed { failure, flags })?;
                        continue;
                    }
                    Decision::LimitExceeded => flags.insert(ResponseFlags::URX),
                    Decision::Overflow => flags.insert(ResponseFlags::UO),
                    Decision::Done => {}
                }
                let mut response = response.map(|body| {
                    ProxyBody::relayed(body, active, timer.watches_idleness().then_some(timer))
                });
                if target.attempt_count.response {
                    response
                        .headers_mut()
                        .insert(X_ENVOY_ATTEMPT_COUNT, attempt.into());
                }
                if !flags.is_empty() {
                    response.extensions_mut().insert(flags);
                }
                return Ok(response);
            }
            Err(AttemptError::Final(failure)) => return Err(Failed { failure, flags }),
            Err(AttemptError::Upstream(e)) => {
                let kind = AttemptFailure::of(&e);
                let retriable = retries
                    .as_ref()
                    .is_some_and(|r| r.policy().retries_failure(&kind));
                (retriable, Failure::Upstream(e))
            }
            Err(AttemptError::PerTryTimeout) => {
                let retriable = retries
                    .as_ref()
                    .is_some_and(|r| r.policy().retries_failure(&AttemptFailure::PerTryTimeout));
                (retriable, Failure::Timeout)
            }
        };
        drop(active);
        let decision = match &mut retries {
            Some(r) if replayable => r.decide(retriable, state),
            _ => Decision::Done,
        };
        match decision {
            Decision::Retry(back_off) => {
                wait(&mut timer, back_off, route_deadline, stats)
                    .await
                    .map_err(|failure| Failed { failure, flags })?;
            }
            Decision::LimitExceeded => {
                flags.insert(ResponseFlags::URX);
                return Err(Failed { failure, flags });
            }
            Decision::Overflow => {
                flags.insert(ResponseFlags::UO);
                return Err(Failed { failure, flags });
            }
            Decision::Done => return Err(Failed { failure, flags }),
        }
    }
}

/// What outlier detection makes of an attempt: the upstream's status, or a failure that
/// is the endpoint's (not an overflow, not the client's idleness).
fn outlier_outcome(outcome: &Result<Response<PooledBody>, AttemptError>) -> Option<Outcome> {
    match outcome {
        Ok(response) => Some(Outcome::Response(response.status().as_u16())),
        Err(AttemptError::Upstream(UpstreamError::Overflow)) => None,
        Err(AttemptError::Upstream(_)) => Some(Outcome::LocalFailure),
        Err(AttemptError::PerTryTimeout | AttemptError::Final(Failure::Timeout)) => {
            Some(Outcome::Timeout)
        }
        Err(AttemptError::Final(_)) => None,
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

/// Picks the attempt's endpoint; a retry that avoids previous hosts picks again, a few
/// times, while the pick was tried already (then takes the last pick, as Envoy).
fn pick<'s>(
    state: &'s ClusterState,
    downstream: &Downstream,
    hash: Option<u64>,
    retries: Option<&Retries<'_>>,
) -> Result<endpoint::Chosen<'s>, Failure> {
    let mut picked = endpoint::choose(state, downstream.destination, hash)?;
    if let Some(r) = retries
        && let Some(picks) = r.policy().avoids_previous_hosts()
    {
        for _ in 0..picks {
            if !r.was_tried(picked.address) {
                break;
            }
            picked = endpoint::choose(state, downstream.destination, hash)?;
        }
    }
    Ok(picked)
}

/// Waits out a retry's back-off, unless the route's deadline or the stream's idle
/// timeout comes first.
async fn wait(
    timer: &mut IdleTimer,
    back_off: Duration,
    route_deadline: Option<Instant>,
    stats: &ClusterStats,
) -> Result<(), Failure> {
    let until = Instant::now() + back_off;
    let deadline = route_deadline.map_or(until, |d| d.min(until));
    match std::future::poll_fn(|cx| timer.poll_until(cx, Some(deadline))).await {
        Expiry::Idle => Err(Failure::StreamIdle),
        Expiry::Deadline if route_deadline.is_some_and(|d| d <= Instant::now()) => {
            stats.upstream_rq_timeout.inc();
            Err(Failure::Timeout)
        }
        Expiry::Deadline => Ok(()),
    }
}

/// A copy of the request head, for one attempt.
fn copy(template: &Parts) -> Parts {
    let mut request = Request::new(());
    *request.method_mut() = template.method.clone();
    *request.uri_mut() = template.uri.clone();
    *request.version_mut() = template.version;
    *request.headers_mut() = template.headers.clone();
    request.into_parts().0
}

/// The request body, as each attempt gets it.
enum Source {
    /// Sent once, never kept.
    Once(Option<ClientBody>),
    /// No body: every attempt sends none.
    Empty,
    /// Kept for replay.
    Kept(Replayable),
}

impl Source {
    fn new(body: ClientBody, keep: bool, limit: usize) -> Source {
        if body.is_end_stream() {
            Source::Empty
        } else if keep {
            Source::Kept(Replayable::new(body, limit))
        } else {
            Source::Once(Some(body))
        }
    }

    fn for_attempt(&mut self) -> RequestBody {
        match self {
            Source::Once(body) => body
                .take()
                .map_or(RequestBody::Empty, RequestBody::Streaming),
            Source::Empty => RequestBody::Empty,
            Source::Kept(kept) => kept.attempt(),
        }
    }

    /// Whether another attempt can send the body again.
    fn can_replay(&self) -> bool {
        match self {
            Source::Once(_) => false,
            Source::Empty => true,
            Source::Kept(kept) => kept.can_replay(),
        }
    }
}

/// Shapes the request line for the upstream's HTTP version: origin-form with a `host`
/// header for HTTP/1.1, scheme and authority in the URI for HTTP/2.
pub(super) fn set_upstream_target(request: &mut Parts, authority: &str, path: &str, http2: bool) {
    if http2 {
        if let Ok(uri) = format!("http://{authority}{path}").parse::<Uri>() {
            request.uri = uri;
        }
        request.version = Version::HTTP_2;
        request.headers.remove(header::HOST);
        return;
    }
    // The common case, an origin-form request forwarded unchanged, keeps its URI and host.
    let uri = &request.uri;
    let unchanged =
        uri.authority().is_none() && uri.path_and_query().map_or("/", PathAndQuery::as_str) == path;
    if !unchanged && let Ok(uri) = path.parse::<Uri>() {
        request.uri = uri;
    }
    request.version = Version::HTTP_11;
    let headers = &mut request.headers;
    if headers
        .get(header::HOST)
        .is_none_or(|h| h.as_bytes() != authority.as_bytes())
        && let Ok(host) = HeaderValue::from_str(authority)
    {
        headers.insert(header::HOST, host);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failure_after_retries_carries_its_own_flag_and_the_retries_flag() {
        let failed = Failed {
            failure: Failure::Upstream(UpstreamError::ConnectTimeout),
            flags: ResponseFlags::URX,
        };
        let response = failed.response();
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        let flags = response.extensions().get::<ResponseFlags>().copied();
        assert_eq!(flags.map(|f| f.to_string()).as_deref(), Some("UF,URX"));
        let timed_out = Failed {
            failure: Failure::Timeout,
            flags: ResponseFlags::UO,
        };
        let flags = timed_out
            .response()
            .extensions()
            .get::<ResponseFlags>()
            .copied();
        assert_eq!(flags, Some(ResponseFlags::UT | ResponseFlags::UO));
    }
}
