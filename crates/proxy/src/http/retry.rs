//! Retries as Envoy's router makes them: which outcomes a route's `retry_policy`
//! retries, how long to back off, how many retries a cluster lets run at once
//! (circuit breakers' `max_retries`, `retry_budget`), and the counters that go with it.

use std::net::SocketAddr;
use std::time::Duration;

use http::{HeaderMap, HeaderName, StatusCode};
use mizzen_xds::pb::envoy::config::route::v3::RetryPolicy as PbRetryPolicy;

use crate::config::{ClusterState, RetryLimit};
use crate::stats::GaugeGuard;
use crate::upstream::{HttpError, UpstreamError};

/// Envoy's default `retry_back_off.base_interval`.
const DEFAULT_BASE_INTERVAL: Duration = Duration::from_millis(25);
/// The attempt a request is on, sent upstream and downstream when the virtual host asks.
pub const X_ENVOY_ATTEMPT_COUNT: HeaderName = HeaderName::from_static("x-envoy-attempt-count");
/// The name of Envoy's previous-hosts retry host predicate, which Istio sets.
const PREVIOUS_HOSTS: &str = "envoy.retry_host_predicates.previous_hosts";

/// Why a retry policy is refused.
#[derive(Debug, thiserror::Error)]
pub enum InvalidPolicy {
    /// A field this proxy does not implement.
    #[error("{0}: not supported by this proxy")]
    Unsupported(&'static str),
    /// A field with a value Envoy refuses.
    #[error("{field}: {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        reason: String,
    },
}

/// The conditions a policy retries on (`retry_on`), one bit each.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetryOn(u16);

impl RetryOn {
    const FIVE_XX: RetryOn = RetryOn(1);
    const GATEWAY_ERROR: RetryOn = RetryOn(1 << 1);
    const RESET: RetryOn = RetryOn(1 << 2);
    const CONNECT_FAILURE: RetryOn = RetryOn(1 << 3);
    const RETRIABLE_4XX: RetryOn = RetryOn(1 << 4);
    const REFUSED_STREAM: RetryOn = RetryOn(1 << 5);
    const RETRIABLE_STATUS_CODES: RetryOn = RetryOn(1 << 6);
    const GRPC_CANCELLED: RetryOn = RetryOn(1 << 7);
    const GRPC_DEADLINE_EXCEEDED: RetryOn = RetryOn(1 << 8);
    const GRPC_INTERNAL: RetryOn = RetryOn(1 << 9);
    const GRPC_RESOURCE_EXHAUSTED: RetryOn = RetryOn(1 << 10);
    const GRPC_UNAVAILABLE: RetryOn = RetryOn(1 << 11);
    /// A failure before any of the request reached the upstream (Istio's inbound default).
    const RESET_BEFORE_REQUEST: RetryOn = RetryOn(1 << 12);

    /// Parses Envoy's comma-separated `retry_on`; names it does not know are ignored,
    /// as Envoy ignores them in route config.
    pub fn parse(list: &str) -> RetryOn {
        let mut on = RetryOn::default();
        for name in list.split(',').map(str::trim) {
            on.0 |= match name {
                "5xx" => Self::FIVE_XX,
                "gateway-error" => Self::GATEWAY_ERROR,
                "reset" => Self::RESET,
                "reset-before-request" => Self::RESET_BEFORE_REQUEST,
                "connect-failure" => Self::CONNECT_FAILURE,
                "retriable-4xx" => Self::RETRIABLE_4XX,
                "refused-stream" => Self::REFUSED_STREAM,
                "retriable-status-codes" => Self::RETRIABLE_STATUS_CODES,
                "cancelled" => Self::GRPC_CANCELLED,
                "deadline-exceeded" => Self::GRPC_DEADLINE_EXCEEDED,
                "internal" => Self::GRPC_INTERNAL,
                "resource-exhausted" => Self::GRPC_RESOURCE_EXHAUSTED,
                "unavailable" => Self::GRPC_UNAVAILABLE,
                _ => RetryOn::default(),
            }
            .0;
        }
        on
    }

    fn has(self, any: RetryOn) -> bool {
        self.0 & any.0 != 0
    }

    fn grpc(code: u32) -> RetryOn {
        match code {
            1 => Self::GRPC_CANCELLED,
            4 => Self::GRPC_DEADLINE_EXCEEDED,
            8 => Self::GRPC_RESOURCE_EXHAUSTED,
            13 => Self::GRPC_INTERNAL,
            14 => Self::GRPC_UNAVAILABLE,
            _ => RetryOn::default(),
        }
    }
}

/// A route's retry policy, compiled.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// How many retries a request may make (Envoy: 1 unless set).
    pub num_retries: u32,
    on: RetryOn,
    retriable_status_codes: Box<[u16]>,
    /// How long one attempt may wait for its response head.
    pub per_try_timeout: Option<Duration>,
    back_off: BackOff,
    /// Whether a retry avoids the hosts already tried (`previous_hosts`).
    previous_hosts: bool,
    /// How many picks may be made to find a host not yet tried.
    host_selection_attempts: u32,
}

/// Jittered exponential back-off between retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct BackOff {
    base: Duration,
    max: Duration,
}

impl RetryPolicy {
    /// Compiles `p`.
    pub fn compile(p: &PbRetryPolicy) -> Result<RetryPolicy, InvalidPolicy> {
        let unsupported = [
            ("retriable_headers", !p.retriable_headers.is_empty()),
            (
                "retriable_request_headers",
                !p.retriable_request_headers.is_empty(),
            ),
            ("per_try_idle_timeout", p.per_try_idle_timeout.is_some()),
            (
                "retry_options_predicates",
                !p.retry_options_predicates.is_empty(),
            ),
        ];
        if let Some((field, _)) = unsupported.iter().find(|(_, set)| *set) {
            return Err(InvalidPolicy::Unsupported(field));
        }
        let mut previous_hosts = false;
        for predicate in &p.retry_host_predicate {
            if predicate.name != PREVIOUS_HOSTS {
                return Err(InvalidPolicy::Unsupported("retry_host_predicate"));
            }
            previous_hosts = true;
        }
        let retriable_status_codes = p
            .retriable_status_codes
            .iter()
            .map(|&code| {
                u16::try_from(code)
                    .ok()
                    .filter(|c| StatusCode::from_u16(*c).is_ok())
                    .ok_or_else(|| InvalidPolicy::Invalid {
                        field: "retriable_status_codes",
                        reason: format!("{code} is not an HTTP status"),
                    })
            })
            .collect::<Result<_, _>>()?;
        let duration = |d: &mizzen_xds::pb::google::protobuf::Duration, field| {
            crate::config::duration(d).map_err(|reason| InvalidPolicy::Invalid { field, reason })
        };
        let back_off = match &p.retry_back_off {
            None => BackOff::new(DEFAULT_BASE_INTERVAL, None),
            Some(b) => {
                let base = b
                    .base_interval
                    .as_ref()
                    .map(|d| duration(d, "retry_back_off.base_interval"))
                    .transpose()?
                    .filter(|d| !d.is_zero())
                    .ok_or(InvalidPolicy::Invalid {
                        field: "retry_back_off.base_interval",
                        reason: "must be set and greater than 0".into(),
                    })?;
                let max = b
                    .max_interval
                    .as_ref()
                    .map(|d| duration(d, "retry_back_off.max_interval"))
                    .transpose()?;
                if max.is_some_and(|max| max < base) {
                    return Err(InvalidPolicy::Invalid {
                        field: "retry_back_off.max_interval",
                        reason: "must be greater than or equal to the base_interval".into(),
                    });
                }
                BackOff::new(base, max)
            }
        };
        Ok(RetryPolicy {
            num_retries: p.num_retries.map_or(1, |n| n.value),
            on: RetryOn::parse(&p.retry_on),
            retriable_status_codes,
            per_try_timeout: p
                .per_try_timeout
                .as_ref()
                .map(|d| duration(d, "per_try_timeout"))
                .transpose()?
                .filter(|d| !d.is_zero()),
            back_off,
            previous_hosts,
            // Envoy makes one more pick unless told otherwise.
            host_selection_attempts: u32::try_from(p.host_selection_retry_max_attempts)
                .unwrap_or(0)
                .max(1),
        })
    }

    /// Whether a response with `status` and `headers` is retried.
    pub fn retries_response(&self, status: StatusCode, headers: &HeaderMap) -> bool {
        // Envoy never retries what an Envoy upstream of it refused for overload or
        // rate limiting.
        if headers.contains_key("x-envoy-overloaded") || headers.contains_key("x-envoy-ratelimited")
        {
            return false;
        }
        let code = status.as_u16();
        let on = self.on;
        (on.has(RetryOn::FIVE_XX) && status.is_server_error())
            || (on.has(RetryOn::GATEWAY_ERROR) && matches!(code, 502..=504))
            || (on.has(RetryOn::RETRIABLE_4XX) && status == StatusCode::CONFLICT)
            || (on.has(RetryOn::RETRIABLE_STATUS_CODES)
                && self.retriable_status_codes.contains(&code))
            || headers
                .get("grpc-status")
                .and_then(|v| std::str::from_utf8(v.as_bytes()).ok()?.parse().ok())
                .is_some_and(|grpc| on.has(RetryOn::grpc(grpc)))
    }

    /// Whether an attempt that got no response is retried.
    pub fn retries_failure(&self, failure: &AttemptFailure) -> bool {
        let on = self.on;
        let any_reset = on.has(RetryOn::FIVE_XX | RetryOn::GATEWAY_ERROR | RetryOn::RESET);
        match failure {
            // Neither a connection never made nor a refused stream carried any of the
            // request to the upstream.
            AttemptFailure::ConnectFailure => {
                any_reset
                    || on.has(RetryOn::CONNECT_FAILURE)
                    || on.has(RetryOn::RESET_BEFORE_REQUEST)
            }
            AttemptFailure::RefusedStream => {
                any_reset
                    || on.has(RetryOn::REFUSED_STREAM)
                    || on.has(RetryOn::RESET_BEFORE_REQUEST)
            }
            AttemptFailure::Reset | AttemptFailure::PerTryTimeout => any_reset,
            AttemptFailure::Overflow => false,
        }
    }

    /// Whether a retry should go to a host not tried yet, and how many picks may be
    /// made to find one.
    pub fn avoids_previous_hosts(&self) -> Option<u32> {
        self.previous_hosts.then_some(self.host_selection_attempts)
    }
}

impl std::ops::BitOr for RetryOn {
    type Output = RetryOn;

    fn bitor(self, other: RetryOn) -> RetryOn {
        RetryOn(self.0 | other.0)
    }
}

impl BackOff {
    fn new(base: Duration, max: Option<Duration>) -> BackOff {
        BackOff {
            base,
            max: max.unwrap_or(base * 10),
        }
    }

    /// The wait before retry `n` (1 for the first): uniformly random below
    /// `base × 2^(n-1)`, capped at `max`, as Envoy's jittered back-off.
    fn delay(&self, n: u32) -> Duration {
        let ceiling = self
            .base
            .saturating_mul(1 << (n.saturating_sub(1)).min(30))
            .min(self.max);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX).max(1);
        Duration::from_nanos(fastrand::u64(..nanos))
    }
}

/// How an attempt failed without a response, as retry conditions see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AttemptFailure {
    /// No connection could be made (`connect-failure`).
    ConnectFailure,
    /// An HTTP/2 upstream refused the stream (`refused-stream`).
    RefusedStream,
    /// The connection or stream was reset (`reset`).
    Reset,
    /// The attempt's `per_try_timeout` passed.
    PerTryTimeout,
    /// A circuit breaker turned it away (Envoy never retries an overflow).
    Overflow,
}

impl AttemptFailure {
    /// How `e` counts.
    pub fn of(e: &UpstreamError) -> AttemptFailure {
        match e {
            UpstreamError::Connect(_)
            | UpstreamError::LocalConnect(_)
            | UpstreamError::ConnectTimeout => AttemptFailure::ConnectFailure,
            UpstreamError::Http(HttpError::Hyper(e)) if refused_stream(e) => {
                AttemptFailure::RefusedStream
            }
            UpstreamError::Http(_) => AttemptFailure::Reset,
            UpstreamError::Overflow => AttemptFailure::Overflow,
        }
    }
}

/// Whether an HTTP/2 stream was refused (`REFUSED_STREAM`); hyper exposes the reason only
/// through its error's source, an `h2` error that names it.
fn refused_stream(e: &hyper::Error) -> bool {
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        if cause.to_string().contains("refused stream") {
            return true;
        }
        source = cause.source();
    }
    false
}

/// What to do after an attempt's outcome.
#[derive(Debug, PartialEq, Eq)]
pub enum Decision {
    /// Give the outcome to the client.
    Done,
    /// The outcome would be retried, but the request made all its retries (`URX`).
    LimitExceeded,
    /// The outcome would be retried, but the cluster has too many retries running
    /// (`UO`).
    Overflow,
    /// Retry after this back-off.
    Retry(Duration),
}

/// One request's retries so far.
pub struct Retries<'p> {
    policy: &'p RetryPolicy,
    remaining: u32,
    made: u32,
    /// Holds the retry counted in the cluster's running retries, from its decision to
    /// the next decision (as Envoy's retries resource).
    running: Option<GaugeGuard>,
    /// The hosts tried, when retries avoid them.
    tried: Vec<SocketAddr>,
}

impl<'p> Retries<'p> {
    /// No retry made yet under `policy`.
    pub fn new(policy: &'p RetryPolicy) -> Retries<'p> {
        Retries {
            policy,
            remaining: policy.num_retries,
            made: 0,
            running: None,
            tried: Vec::new(),
        }
    }

    /// The policy.
    pub fn policy(&self) -> &'p RetryPolicy {
        self.policy
    }

    /// Which attempt comes next, 1 for the first.
    pub fn attempt(&self) -> u32 {
        self.made + 1
    }

    /// Notes that `host` was tried.
    pub fn tried(&mut self, host: SocketAddr) {
        if self.policy.previous_hosts {
            self.tried.push(host);
        }
    }

    /// Whether `host` was tried already, so a retry should pick another.
    pub fn was_tried(&self, host: SocketAddr) -> bool {
        self.tried.contains(&host)
    }

    /// Decides on an outcome the policy would (`retriable`) or would not retry, counting
    /// it in `state`'s cluster as Envoy does.
    pub fn decide(&mut self, retriable: bool, state: &ClusterState) -> Decision {
        let stats = &state.stats;
        // The last retry's outcome is in: it no longer counts as running.
        if self.running.take().is_some() && !retriable {
            stats.upstream_rq_retry_success.inc();
        }
        if !retriable {
            return Decision::Done;
        }
        if self.remaining == 0 {
            stats.upstream_rq_retry_limit_exceeded.inc();
            return Decision::LimitExceeded;
        }
        self.remaining -= 1;
        let running = stats.retries_running.get();
        let allowed = match state.cluster.retry_limit {
            RetryLimit::Concurrent(max) => i64::from(max),
            RetryLimit::Budget {
                percent,
                min_concurrency,
            } => {
                let active = stats.upstream_rq_active.get() as f64;
                i64::from(min_concurrency).max((active * percent / 100.0) as i64)
            }
        };
        if running >= allowed {
            stats.upstream_rq_retry_overflow.inc();
            return Decision::Overflow;
        }
        self.running = Some(stats.retries_running.track());
        stats.upstream_rq_retry.inc();
        self.made += 1;
        Decision::Retry(self.policy.back_off.delay(self.made))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mizzen_xds::pb::envoy::config::route::v3::retry_policy::{
        RetryBackOff, RetryHostPredicate,
    };
    use mizzen_xds::pb::google::protobuf::{Duration as PbDuration, UInt32Value};

    fn policy(retry_on: &str, codes: &[u32]) -> RetryPolicy {
        RetryPolicy::compile(&PbRetryPolicy {
            retry_on: retry_on.into(),
            retriable_status_codes: codes.to_vec(),
            ..Default::default()
        })
        .unwrap()
    }

    fn grpc(status: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("grpc-status", status.parse().unwrap());
        h
    }

    #[test]
    fn envoy_defaults_apply() {
        let p = policy("5xx", &[]);
        assert_eq!(p.num_retries, 1);
        assert_eq!(p.per_try_timeout, None);
        assert_eq!(p.back_off.base, Duration::from_millis(25));
        assert_eq!(p.back_off.max, Duration::from_millis(250));
        assert_eq!(p.avoids_previous_hosts(), None);
    }

    #[test]
    fn each_condition_retries_its_responses_only() {
        let none = HeaderMap::new();
        let s = |c| StatusCode::from_u16(c).unwrap();
        let five = policy("5xx", &[]);
        assert!(five.retries_response(s(500), &none) && five.retries_response(s(503), &none));
        assert!(!five.retries_response(s(409), &none) && !five.retries_response(s(200), &none));
        let gateway = policy("gateway-error", &[]);
        assert!(gateway.retries_response(s(502), &none) && gateway.retries_response(s(504), &none));
        assert!(!gateway.retries_response(s(500), &none));
        let conflict = policy("retriable-4xx", &[]);
        assert!(conflict.retries_response(s(409), &none));
        assert!(!conflict.retries_response(s(404), &none));
        let codes = policy("retriable-status-codes", &[418, 503]);
        assert!(codes.retries_response(s(418), &none));
        assert!(!codes.retries_response(s(500), &none));
        // The codes mean nothing unless retry_on names them.
        assert!(!policy("5xx", &[418]).retries_response(s(418), &none));
        // Istio's default policy.
        let istio = policy(
            "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes",
            &[503],
        );
        assert!(istio.retries_response(s(503), &none));
        assert!(!istio.retries_response(s(500), &none));
        assert!(istio.retries_response(s(200), &grpc("14")));
        assert!(istio.retries_response(s(200), &grpc("1")));
        assert!(!istio.retries_response(s(200), &grpc("13")));
        assert!(!istio.retries_response(s(200), &grpc("0")));
    }

    #[test]
    fn an_overloaded_or_rate_limited_answer_is_never_retried() {
        let mut h = HeaderMap::new();
        h.insert("x-envoy-overloaded", "true".parse().unwrap());
        assert!(!policy("5xx", &[]).retries_response(StatusCode::SERVICE_UNAVAILABLE, &h));
    }

    #[test]
    fn failures_are_retried_by_reset_conditions_and_their_own() {
        use AttemptFailure::*;
        let connect = policy("connect-failure", &[]);
        assert!(connect.retries_failure(&ConnectFailure));
        assert!(!connect.retries_failure(&Reset) && !connect.retries_failure(&PerTryTimeout));
        for any in ["5xx", "gateway-error", "reset"] {
            let p = policy(any, &[]);
            for f in [ConnectFailure, RefusedStream, Reset, PerTryTimeout] {
                assert!(p.retries_failure(&f), "{any} {f:?}");
            }
        }
        let refused = policy("refused-stream", &[]);
        assert!(refused.retries_failure(&RefusedStream) && !refused.retries_failure(&Reset));
        assert!(!policy("retriable-4xx", &[]).retries_failure(&ConnectFailure));
        // Istio's inbound policy: only what never reached the workload, never an overflow.
        let inbound = policy("reset-before-request", &[]);
        assert!(
            inbound.retries_failure(&ConnectFailure) && inbound.retries_failure(&RefusedStream)
        );
        assert!(!inbound.retries_failure(&Reset) && !inbound.retries_failure(&PerTryTimeout));
        assert!(!policy("5xx", &[]).retries_failure(&Overflow));
    }

    #[test]
    fn back_off_is_jittered_below_an_exponential_ceiling() {
        let b = BackOff::new(Duration::from_millis(10), Some(Duration::from_millis(35)));
        for _ in 0..1000 {
            assert!(b.delay(1) < Duration::from_millis(10));
            assert!(b.delay(2) < Duration::from_millis(20));
            assert!(b.delay(3) < Duration::from_millis(35));
            assert!(b.delay(40) < Duration::from_millis(35));
        }
        // Uniform below the ceiling: the mean of n draws is ceiling/2 within 5 sigma
        // (sigma of one draw: ceiling/sqrt(12)).
        let n = 10_000;
        let mean = (0..n).map(|_| b.delay(1).as_secs_f64()).sum::<f64>() / n as f64;
        let tolerance = 5.0 * 0.010 / 12f64.sqrt() / (n as f64).sqrt();
        assert!((mean - 0.005).abs() < tolerance, "{mean}");
    }

    #[test]
    fn invalid_policies_are_refused_by_field() {
        let zero = PbRetryPolicy {
            retry_back_off: Some(RetryBackOff {
                base_interval: Some(PbDuration::default()),
                max_interval: None,
            }),
            ..Default::default()
        };
        let e = RetryPolicy::compile(&zero).unwrap_err().to_string();
        assert!(e.starts_with("retry_back_off.base_interval"), "{e}");
        let canary = PbRetryPolicy {
            retry_host_predicate: vec![RetryHostPredicate {
                name: "envoy.retry_host_predicates.omit_canary_hosts".into(),
                config_type: None,
            }],
            ..Default::default()
        };
        assert!(matches!(
            RetryPolicy::compile(&canary),
            Err(InvalidPolicy::Unsupported("retry_host_predicate"))
        ));
        let istio = PbRetryPolicy {
            num_retries: Some(UInt32Value { value: 2 }),
            retry_host_predicate: vec![RetryHostPredicate {
                name: PREVIOUS_HOSTS.into(),
                config_type: None,
            }],
            host_selection_retry_max_attempts: 5,
            ..Default::default()
        };
        let p = RetryPolicy::compile(&istio).unwrap();
        assert_eq!((p.num_retries, p.avoids_previous_hosts()), (2, Some(5)));
    }
}
