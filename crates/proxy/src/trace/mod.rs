//! Tracing (the connection manager's `tracing`): each request through the proxy is a
//! span of a trace, carried to the next hop in the request's headers as Envoy does, in
//! W3C Trace Context (`traceparent`, `tracestate`) and B3 (`x-b3-*`, single `b3`).
//!
//! A request that comes with a trace continues it: same trace id, the sampling decision
//! it carries, a fresh span id for this hop whose parent is the caller's span. A request
//! without one starts a trace, sampled at the configured `random_sampling` percentage.

mod context;

use http::HeaderMap;
use mizzen_xds::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_connection_manager::Tracing as PbTracing;

pub use context::{Propagation, SpanContext, extract, inject};

/// Envoy's default `random_sampling`: every new trace is sampled.
const DEFAULT_SAMPLING: f64 = 100.0;

/// A connection manager's tracing, compiled.
#[derive(Debug, Clone, PartialEq)]
pub struct Tracing {
    /// The percentage of new traces that are sampled (0–100).
    pub random_sampling: f64,
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
    /// Compiles the connection manager's `tracing`; errors are `(field, reason)`.
    pub fn compile(raw: &PbTracing) -> Result<Tracing, (String, String)> {
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
        Ok(Tracing { random_sampling })
    }

    /// Starts this hop's span of the request's trace and writes its context into the
    /// request's headers for the next hop.
    pub fn start(&self, headers: &mut HeaderMap) -> Hop {
        let (hop, propagation) = match extract(headers) {
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
                        sampled: fastrand::f64() * 100.0 < self.random_sampling,
                    },
                    parent: None,
                },
                Propagation::New,
            ),
        };
        inject(headers, &hop, propagation);
        hop
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
