//! Tracing (the connection manager's `tracing`): each request through the proxy is a
//! span of a trace, carried to the next hop in the request's headers as Envoy does, in
//! W3C Trace Context (`traceparent`, `tracestate`) and B3 (`x-b3-*`, single `b3`).
//!
//! A request that comes with a trace continues it: same trace id, the sampling decision
//! it carries, a fresh span id for this hop whose parent is the caller's span. A request
//! without one starts a trace, sampled at the configured `random_sampling` percentage.
//! With a `provider`, each sampled request's span is recorded ([`span`]) and exported
//! ([`export`]): over OTLP for OpenTelemetry, as Zipkin v2 JSON for Zipkin ([`zipkin`],
//! whose tracer reads and writes B3 only and may share the caller's span); with
//! `spawn_upstream_span`, each of its upstream attempts is a span too ([`upstream`]).

mod context;
mod export;
mod span;
mod tags;
mod upstream;
mod zipkin;

use std::sync::Arc;

use http::{HeaderMap, HeaderValue, Request};
use mizzen_xds::otlp::SpanKind;
use mizzen_xds::pb::envoy::config::route::v3::Decorator;
use mizzen_xds::pb::envoy::config::trace::v3::tracing::http::ConfigType;
use mizzen_xds::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_connection_manager::Tracing as PbTracing;

use crate::Shared;
use crate::stats::Stats;
pub use context::{
    B3, B3Context, Headers, Propagation, SpanContext, extract, extract_b3, extract_zipkin, inject,
    inject_traceparent,
};
pub use export::{Exporter, Handle};
pub use span::Span;
pub use tags::CustomTag;
pub use upstream::{Attempt, UpstreamSpans};

/// Envoy's default `random_sampling`: every new trace is sampled.
const DEFAULT_SAMPLING: f64 = 100.0;
/// Envoy's default `max_path_tag_length`: how much of the path `http.url` keeps.
const DEFAULT_MAX_PATH_TAG_LENGTH: usize = 256;

/// A connection manager's tracing, compiled.
#[derive(Debug, Clone)]
pub struct Tracing {
    /// The percentage of new traces that are sampled (0–100).
    pub random_sampling: f64,
    /// Which way requests go: outbound hops pass their route's decorator on, inbound
    /// ones take their name from it.
    operation: Operation,
    /// SERVER on inbound and ingress listeners and wherever upstream attempts have
    /// spans of their own (the proxy is then a hop of its own), else CLIENT.
    kind: SpanKind,
    /// Whether each upstream attempt of a sampled request is a CLIENT span.
    spawn_upstream_span: bool,
    /// The span tags `node_id` and `zone`.
    node_id: String,
    zone: String,
    custom_tags: Vec<CustomTag>,
    max_path_tag_length: usize,
    /// The trace context headers read and written: the tracer's.
    headers: Headers,
    /// Where spans go; none: context is propagated, no span is recorded.
    exporter: Option<Arc<Exporter>>,
}

/// Which way a connection manager's requests go, as its listener's `traffic_direction`
/// says; Envoy's tracing `operation_name`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    /// Requests into the mesh or the workload (inbound, or unspecified): SERVER spans.
    Ingress,
    /// Requests out of the workload (outbound): CLIENT spans.
    Egress,
}

/// A sampled request's spans: its own, and, with `spawn_upstream_span`, what its
/// upstream attempts need to make theirs.
#[derive(Debug)]
pub struct Sampled<'t> {
    /// The request's span at this hop.
    pub span: Span,
    /// Its upstream attempts' spans, when they have their own.
    pub upstream: Option<UpstreamSpans<'t>>,
}

/// This hop's span of a request's trace.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hop {
    /// This hop's span.
    pub span: SpanContext,
    /// The caller's span, when the request continued a trace.
    pub parent: Option<u64>,
}

impl Tracing {
    /// Tracing that propagates context, sampling new traces at `random_sampling` percent,
    /// and records no spans.
    pub fn propagating(random_sampling: f64) -> Tracing {
        Tracing {
            random_sampling,
            operation: Operation::Ingress,
            kind: SpanKind::Server,
            spawn_upstream_span: false,
            node_id: String::new(),
            zone: String::new(),
            custom_tags: Vec::new(),
            max_path_tag_length: DEFAULT_MAX_PATH_TAG_LENGTH,
            headers: Headers::W3cOrB3,
            exporter: None,
        }
    }

    /// Compiles the connection manager's `tracing` for requests going `operation`, its
    /// exporter's counters in `stats`; errors are `(field, reason)`.
    pub fn compile(
        raw: &PbTracing,
        operation: Operation,
        stats: &Stats,
    ) -> Result<Tracing, (String, String)> {
        let random_sampling = raw
            .random_sampling
            .as_ref()
            .map_or(DEFAULT_SAMPLING, |p| p.value);
        if !(0.0..=100.0).contains(&random_sampling) {
            return Err((
                "tracing.random_sampling".into(),
                format!("{random_sampling} is not a percentage"),
            ));
        }
        let spawn_upstream_span = raw.spawn_upstream_span.as_ref().is_some_and(|b| b.value);
        let custom_tags = raw
            .custom_tags
            .iter()
            .enumerate()
            .map(|(i, t)| {
                CustomTag::compile(t).map_err(|(f, r)| (format!("tracing.custom_tags[{i}].{f}"), r))
            })
            .collect::<Result<_, _>>()?;
        let exporter = raw
            .provider
            .as_ref()
            .map(|provider| {
                let any = provider.config_type.as_ref().map(|t| match t {
                    ConfigType::TypedConfig(any) => any,
                });
                let any = any.ok_or_else(|| {
                    (
                        "tracing.provider.typed_config".to_owned(),
                        "is missing".to_owned(),
                    )
                })?;
                Exporter::compile(any, stats).map_err(|(f, r)| {
                    let at = "tracing.provider.typed_config";
                    (
                        if f.is_empty() {
                            at.to_owned()
                        } else {
                            format!("{at}.{f}")
                        },
                        r,
                    )
                })
            })
            .transpose()?
            .map(Arc::new);
        Ok(Tracing {
            headers: exporter.as_ref().map_or(Headers::W3cOrB3, |e| e.headers()),
            random_sampling,
            operation,
            // As Envoy's OpenTelemetry and Zipkin tracers kind it.
            kind: match operation {
                Operation::Egress if !spawn_upstream_span => SpanKind::Client,
                _ => SpanKind::Server,
            },
            spawn_upstream_span,
            node_id: stats.node_id().to_owned(),
            zone: stats.zone().to_owned(),
            custom_tags,
            max_path_tag_length: raw
                .max_path_tag_length
                .as_ref()
                .map_or(DEFAULT_MAX_PATH_TAG_LENGTH, |v| v.value as usize),
            exporter,
        })
    }

    /// On an outbound connection manager, tells the next hop the route's decorator
    /// (`x-envoy-decorator-operation`), which names its inbound span, as Envoy does
    /// unless the decorator says `propagate: false`.
    pub fn propagate_decorator(&self, headers: &mut HeaderMap, decorator: Option<&Decorator>) {
        let Some(decorator) = decorator else {
            return;
        };
        let propagate = decorator.propagate.as_ref().is_none_or(|p| p.value);
        if self.operation == Operation::Egress
            && propagate
            && !decorator.operation.is_empty()
            && let Ok(operation) = HeaderValue::from_str(&decorator.operation)
        {
            headers.insert(span::DECORATOR_OPERATION, operation);
        }
    }

    /// Starts this hop's span of `request`'s trace, writes its context into the request
    /// for the next hop, and opens the span when the trace is sampled and spans are
    /// exported (`shared` runs the exporter).
    pub fn trace<B>(&self, shared: &Arc<Shared>, request: &mut Request<B>) -> Option<Sampled<'_>> {
        // The caller's route decorator names an inbound span; it goes no further.
        let caller_name = match self.operation {
            Operation::Egress => None,
            Operation::Ingress => request
                .headers_mut()
                .remove(span::DECORATOR_OPERATION)
                .and_then(|v| v.to_str().ok().map(str::to_owned))
                .filter(|name| !name.is_empty()),
        };
        let (hop, propagation) = self.begin(request.headers_mut());
        let exporter = self.exporter.as_ref().filter(|_| hop.span.sampled)?;
        let exporter = exporter.handle(shared);
        let upstream = self
            .spawn_upstream_span
            .then(|| UpstreamSpans::new(self, &hop, propagation, exporter.clone()));
        Some(Sampled {
            span: Span::open(self, &hop, request, caller_name, exporter),
            upstream,
        })
    }

    /// Starts this hop's span of the request's trace and writes its context into the
    /// request's headers for the next hop.
    pub fn start(&self, headers: &mut HeaderMap) -> Hop {
        self.begin(headers).0
    }

    /// Starts this hop's span, writes its context into `headers` and says in which
    /// format the caller sent it.
    fn begin(&self, headers: &mut HeaderMap) -> (Hop, Propagation) {
        let (hop, propagation) = match self.headers {
            Headers::W3cOrB3 => self.continue_any(headers),
            Headers::B3(b3) => self.continue_b3(headers, b3),
        };
        inject(headers, &hop, propagation);
        if let Headers::B3(B3Context { w3c: true, .. }) = self.headers {
            inject_traceparent(headers, &hop.span);
        }
        (hop, propagation)
    }

    /// W3C or B3: the caller's trace with a child span, else a new trace.
    fn continue_any(&self, headers: &HeaderMap) -> (Hop, Propagation) {
        match extract(headers) {
            Some((parent, propagation)) => (
                Hop {
                    span: SpanContext {
                        span_id: new_span_id(),
                        ..parent
                    },
                    parent: Some(parent.span_id),
                },
                propagation,
            ),
            None => (
                Hop {
                    span: SpanContext {
                        trace_id: new_trace_id(),
                        span_id: new_span_id(),
                        sampled: self.sample(),
                    },
                    parent: None,
                },
                Propagation::New,
            ),
        }
    }

    /// B3 as Envoy's Zipkin tracer continues it: a SERVER span shares the caller's span
    /// (its id and parent) when `shared_span_context` says so, any other span is the
    /// caller's child; a trace without a decision takes the local one. A new trace's
    /// root span id is its trace id's low half, and it goes out as `x-b3-*` headers.
    fn continue_b3(&self, headers: &HeaderMap, b3: B3Context) -> (Hop, Propagation) {
        match extract_zipkin(headers, b3.w3c) {
            Some((caller, propagation)) => {
                let sampled = caller.sampled.unwrap_or_else(|| self.sample());
                let shares = b3.shared_span_context && self.kind == SpanKind::Server;
                let (span_id, parent) = match shares {
                    true => (caller.span_id, caller.parent),
                    false => (new_span_id(), Some(caller.span_id)),
                };
                let span = SpanContext {
                    trace_id: caller.trace_id,
                    span_id,
                    sampled,
                };
                (Hop { span, parent }, propagation)
            }
            None => {
                let low = new_span_id();
                let high = match b3.trace_id_128bit {
                    true => fastrand::u64(..),
                    false => 0,
                };
                let span = SpanContext {
                    trace_id: u128::from(high) << 64 | u128::from(low),
                    span_id: low,
                    sampled: self.sample(),
                };
                let hop = Hop { span, parent: None };
                (hop, Propagation::B3Multi)
            }
        }
    }

    /// The local sampling decision for a trace that comes without one.
    fn sample(&self) -> bool {
        fastrand::f64() * 100.0 < self.random_sampling
    }
}

/// A random, non-zero trace id (zero means "none" in both formats).
fn new_trace_id() -> u128 {
    loop {
        let id = fastrand::u128(..);
        if id != 0 {
            return id;
        }
    }
}

/// A random, non-zero span id.
fn new_span_id() -> u64 {
    fastrand::u64(1..)
}

#[cfg(test)]
mod tests;
