//! Fault injection settings (`envoy.filters.http.fault`'s `HTTPFault`), compiled once:
//! which requests a fault applies to, and per request the sampled delay and abort.
//!
//! The settings come from the filter's own config (the defaults) or, more specifically,
//! from a route's, virtual host's or route configuration's `typed_per_filter_config`, as
//! Istio sets them per route for a VirtualService's `fault`.

use std::collections::HashSet;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderName, StatusCode};
use mizzen_xds::pb::envoy::extensions::filters::common::fault::v3::{
    FaultDelay, fault_delay::FaultDelaySecifier,
};
use mizzen_xds::pb::envoy::extensions::filters::http::fault::v3::{
    FaultAbort, HttpFault, fault_abort::ErrorType,
};
use mizzen_xds::pb::google::protobuf::Any;
use prost::{Message, Name};

use super::error::{Invalid, Problem, Within, unsupported};
use super::matcher::{Fraction, HeaderMatch};
use super::request::RequestHead;

/// The fault filter's name, under which routes carry its `typed_per_filter_config`.
pub const FAULT_FILTER: &str = "envoy.filters.http.fault";

/// `header_delay`: the delay in milliseconds a request asks for.
const DELAY_REQUEST: HeaderName = HeaderName::from_static("x-envoy-fault-delay-request");
/// `header_delay`: the percentage's numerator a request asks for (capped by config).
const DELAY_PERCENTAGE: HeaderName =
    HeaderName::from_static("x-envoy-fault-delay-request-percentage");
/// `header_abort`: the HTTP status a request asks to be aborted with.
const ABORT_REQUEST: HeaderName = HeaderName::from_static("x-envoy-fault-abort-request");
/// `header_abort`: the gRPC status a request asks to be aborted with.
const ABORT_GRPC_REQUEST: HeaderName = HeaderName::from_static("x-envoy-fault-abort-grpc-request");
/// `header_abort`: the percentage's numerator a request asks for (capped by config).
const ABORT_PERCENTAGE: HeaderName =
    HeaderName::from_static("x-envoy-fault-abort-request-percentage");
/// The downstream node a request says it comes from, for `downstream_nodes`.
const DOWNSTREAM_SERVICE_NODE: HeaderName =
    HeaderName::from_static("x-envoy-downstream-service-node");
/// Envoy's abort body when `response_body` is unset.
const DEFAULT_ABORT_BODY: &str = "fault filter abort";

/// An `HTTPFault`, compiled.
#[derive(Debug)]
pub struct Fault {
    delay: Option<Delay>,
    abort: Option<Abort>,
    upstream_cluster: Option<String>,
    downstream_nodes: HashSet<String>,
    headers: Vec<HeaderMatch>,
    /// At most this many requests may be under a fault at once (`max_active_faults`);
    /// `None`: no limit.
    pub max_active_faults: Option<u64>,
}

#[derive(Debug)]
struct Delay {
    source: DelaySource,
    percentage: Fraction,
}

#[derive(Debug)]
enum DelaySource {
    Fixed(Duration),
    /// `header_delay`: as long as `x-envoy-fault-delay-request` says, in milliseconds.
    Header,
}

#[derive(Debug)]
struct Abort {
    source: AbortSource,
    percentage: Fraction,
    body: Bytes,
}

#[derive(Debug)]
enum AbortSource {
    Status(AbortStatus),
    /// `header_abort`: as `x-envoy-fault-abort-request` (or its gRPC twin) says.
    Header,
}

/// The status an abort answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AbortStatus {
    /// This HTTP status.
    Http(StatusCode),
    /// This gRPC status, in a 200 response as gRPC carries errors.
    Grpc(u32),
}

/// An abort sampled for one request: its status and body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Aborted {
    /// The status to answer with.
    pub status: AbortStatus,
    /// The body (gRPC: the `grpc-message`).
    pub body: Bytes,
}

impl Fault {
    /// Compiles an `HTTPFault` given as an `Any` (a filter's `typed_config` or a
    /// `typed_per_filter_config` entry); errors name fields within it.
    pub(crate) fn from_any(any: &Any) -> Result<Fault, Invalid> {
        let type_name = any.type_url.rsplit('/').next().unwrap_or_default();
        if type_name != HttpFault::full_name() {
            return Err(Problem::invalid(format!(
                "expected {}, not {:?}",
                HttpFault::full_name(),
                any.type_url
            ))
            .at("@type"));
        }
        let fault = HttpFault::decode(any.value.as_slice())
            .map_err(|e| Problem::invalid(format!("cannot decode: {e}")).at(""))?;
        Fault::compile(&fault)
    }

    /// Compiles `f`; errors name fields within it.
    pub(crate) fn compile(f: &HttpFault) -> Result<Fault, Invalid> {
        // Throttling response bodies is not implemented; refused so that the proxy NACKs
        // rather than serve at full speed what Envoy would slow down.
        unsupported(&[("response_rate_limit", f.response_rate_limit.is_some())])?;
        Ok(Fault {
            delay: f
                .delay
                .as_ref()
                .map(|d| Delay::compile(d).within("delay"))
                .transpose()?,
            abort: f
                .abort
                .as_ref()
                .map(|a| Abort::compile(a).within("abort"))
                .transpose()?,
            upstream_cluster: Some(f.upstream_cluster.clone()).filter(|c| !c.is_empty()),
            downstream_nodes: f.downstream_nodes.iter().cloned().collect(),
            headers: f
                .headers
                .iter()
                .enumerate()
                .map(|(i, h)| HeaderMatch::compile(h).within(&format!("headers[{i}]")))
                .collect::<Result<_, _>>()?,
            max_active_faults: f.max_active_faults.map(|m| u64::from(m.value)),
        })
    }

    /// Whether the fault applies to a request routed to `cluster` (none: the route does
    /// not forward): Envoy's `upstream_cluster`, `downstream_nodes` and `headers` tests.
    pub fn applies(&self, req: &RequestHead<'_>, cluster: Option<&str>) -> bool {
        self.upstream_cluster
            .as_deref()
            .is_none_or(|want| cluster == Some(want))
            && (self.downstream_nodes.is_empty()
                || req
                    .headers
                    .get(DOWNSTREAM_SERVICE_NODE)
                    .and_then(|v| v.to_str().ok())
                    .is_some_and(|node| self.downstream_nodes.contains(node)))
            && self.headers.iter().all(|h| h.matches(req))
    }

    /// The delay to inject, if `random` falls within its percentage and the delay is
    /// positive (a header-given delay may be absent or 0).
    pub fn delay(&self, req: &RequestHead<'_>, random: u64) -> Option<Duration> {
        let delay = self.delay.as_ref()?;
        let duration = match delay.source {
            DelaySource::Fixed(d) => d,
            DelaySource::Header => Duration::from_millis(header_integer(req, &DELAY_REQUEST)?),
        };
        let percentage = match delay.source {
            DelaySource::Fixed(_) => delay.percentage,
            DelaySource::Header => header_percentage(req, &DELAY_PERCENTAGE, delay.percentage),
        };
        (percentage.admits(random) && !duration.is_zero()).then_some(duration)
    }

    /// The abort to inject, if `random` falls within its percentage and it has a status
    /// (a header-given one may be absent or invalid).
    pub fn abort(&self, req: &RequestHead<'_>, random: u64) -> Option<Aborted> {
        let abort = self.abort.as_ref()?;
        let (status, percentage) = match abort.source {
            AbortSource::Status(status) => (status, abort.percentage),
            AbortSource::Header => (
                header_abort_status(req)?,
                header_percentage(req, &ABORT_PERCENTAGE, abort.percentage),
            ),
        };
        percentage.admits(random).then(|| Aborted {
            status,
            body: abort.body.clone(),
        })
    }
}

impl Delay {
    fn compile(d: &FaultDelay) -> Result<Delay, Invalid> {
        let source = match &d.fault_delay_secifier {
            Some(FaultDelaySecifier::FixedDelay(fixed)) => {
                let duration = crate::config::duration(fixed)
                    .map_err(|r| Problem::invalid(r).at("fixed_delay"))?;
                if duration.is_zero() {
                    return Err(Problem::invalid("must be greater than 0").at("fixed_delay"));
                }
                DelaySource::Fixed(duration)
            }
            Some(FaultDelaySecifier::HeaderDelay(_)) => DelaySource::Header,
            None => return Err(Problem::Missing.at("fixed_delay")),
        };
        Ok(Delay {
            source,
            percentage: percentage(d.percentage.as_ref())?,
        })
    }
}

impl Abort {
    fn compile(a: &FaultAbort) -> Result<Abort, Invalid> {
        let source = match a.error_type {
            Some(ErrorType::HttpStatus(code)) => AbortSource::Status(AbortStatus::Http(
                abort_http_status(u64::from(code)).ok_or_else(|| {
                    Problem::invalid(format!("{code} is not in [200, 600)")).at("http_status")
                })?,
            )),
            Some(ErrorType::GrpcStatus(code)) => AbortSource::Status(AbortStatus::Grpc(code)),
            Some(ErrorType::HeaderAbort(_)) => AbortSource::Header,
            None => return Err(Problem::Missing.at("http_status")),
        };
        let body = if a.response_body.is_empty() {
            DEFAULT_ABORT_BODY
        } else {
            &a.response_body
        };
        Ok(Abort {
            source,
            percentage: percentage(a.percentage.as_ref())?,
            body: Bytes::copy_from_slice(body.as_bytes()),
        })
    }
}

/// A fault's percentage; Envoy reads an unset one as 0%.
fn percentage(
    p: Option<&mizzen_xds::pb::envoy::r#type::v3::FractionalPercent>,
) -> Result<Fraction, Invalid> {
    Fraction::compile(&p.cloned().unwrap_or_default()).within("percentage")
}

/// An HTTP status Envoy lets a fault abort with: `[200, 600)`.
fn abort_http_status(code: u64) -> Option<StatusCode> {
    u16::try_from(code)
        .ok()
        .filter(|c| (200..600).contains(c))
        .and_then(|c| StatusCode::from_u16(c).ok())
}

/// The status a `header_abort` request asks for: `x-envoy-fault-abort-request` when it is
/// a valid HTTP status, else `x-envoy-fault-abort-grpc-request`, as Envoy prefers them.
fn header_abort_status(req: &RequestHead<'_>) -> Option<AbortStatus> {
    if let Some(status) = header_integer(req, &ABORT_REQUEST).and_then(abort_http_status) {
        return Some(AbortStatus::Http(status));
    }
    let grpc = header_integer(req, &ABORT_GRPC_REQUEST)?;
    u32::try_from(grpc).ok().map(AbortStatus::Grpc)
}

/// The percentage a request asks for in `header`, capped by the configured one, whose
/// denominator it keeps; the configured one when the header is absent or not a number.
fn header_percentage(req: &RequestHead<'_>, header: &HeaderName, configured: Fraction) -> Fraction {
    match header_integer(req, header) {
        Some(numerator) => configured.at_most(numerator),
        None => configured,
    }
}

/// A header's value as a non-negative integer.
fn header_integer(req: &RequestHead<'_>, header: &HeaderName) -> Option<u64> {
    req.headers.get(header)?.to_str().ok()?.trim().parse().ok()
}
