//! `spawn_upstream_span`: besides the request's SERVER span, each upstream attempt of a
//! sampled request is a CLIENT span of its own, as Envoy's router makes one per
//! `UpstreamRequest`: named `router <cluster> egress`, the child of the SERVER span,
//! its context the one the upstream hears, tagged with the attempt's endpoint and
//! outcome (`retry.count` on retries), and ended when the attempt's response ends or
//! the attempt is abandoned.

use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use http::{HeaderMap, StatusCode, Version};
use mizzen_xds::otlp::{self, SpanKind};

use super::context::{Propagation, TRACESTATE, inject};
use super::export::Handle;
use super::tags::{self, tag};
use super::{Hop, SpanContext, Tracing, new_span_id, span};
use crate::flags::ResponseFlags;
use crate::upstream::UpstreamError;

/// What a sampled request's upstream attempts need to make their spans: the request's
/// SERVER span, the format its caller propagated, and the exporter.
#[derive(Debug, Clone)]
pub struct UpstreamSpans<'t> {
    tracing: &'t Tracing,
    server: SpanContext,
    propagation: Propagation,
    exporter: Handle,
}

/// One upstream attempt's CLIENT span, open until dropped: when the attempt's response
/// ends, or the attempt is retried, fails or is abandoned. Boxed: it rides in every
/// response body's state, which unsampled requests should not pay for.
#[derive(Debug)]
pub struct Attempt(Box<Open>);

/// An upstream attempt's span while it is open.
#[derive(Debug)]
struct Open {
    span: otlp::Span,
    endpoint: SocketAddr,
    /// The protocol the attempt speaks, known once its connection is up.
    protocol: Option<Version>,
    outcome: Outcome,
    exporter: Handle,
}

/// How an attempt ended, as far as its span tells.
#[derive(Debug, Clone, Copy)]
enum Outcome {
    /// The upstream answered.
    Response(StatusCode),
    /// The stream failed: Envoy's reset reason and response flag.
    Reset(&'static str, ResponseFlags),
    /// The proxy gave up on it (a timeout, the client went away).
    Canceled(ResponseFlags),
}

impl<'t> UpstreamSpans<'t> {
    /// The upstream side of the request whose SERVER span is `hop`.
    pub(super) fn new(
        tracing: &'t Tracing,
        hop: &Hop,
        propagation: Propagation,
        exporter: Handle,
    ) -> UpstreamSpans<'t> {
        UpstreamSpans {
            tracing,
            server: hop.span,
            propagation,
            exporter,
        }
    }

    /// Opens the span of attempt number `attempt` (from 1) of the request to `cluster`,
    /// sent to `endpoint` over HTTP/2 or HTTP/1.1 with `headers`, into which it writes
    /// its own context for the upstream.
    pub fn attempt(
        &self,
        headers: &mut HeaderMap,
        cluster: &str,
        endpoint: SocketAddr,
        attempt: u32,
        http2: bool,
    ) -> Attempt {
        let hop = Hop {
            span: SpanContext {
                span_id: new_span_id(),
                ..self.server
            },
            parent: Some(self.server.span_id),
        };
        inject(headers, &hop, self.propagation);
        let mut attributes = Vec::with_capacity(12 + self.tracing.custom_tags.len());
        if attempt > 1 {
            attributes.push(tag(tags::RETRY_COUNT, (attempt - 1).to_string()));
        }
        // Envoy reads custom tags from the request as the upstream gets it.
        attributes.extend(
            self.tracing
                .custom_tags
                .iter()
                .filter_map(|t| t.attribute(headers)),
        );
        attributes.push(tag(tags::UPSTREAM_CLUSTER, cluster));
        attributes.push(tag(tags::UPSTREAM_CLUSTER_NAME, cluster));
        let trace_state = headers
            .get(TRACESTATE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default();
        Attempt(Box::new(Open {
            span: otlp::Span {
                trace_id: hop.span.trace_id.to_be_bytes().to_vec(),
                span_id: hop.span.span_id.to_be_bytes().to_vec(),
                trace_state: trace_state.to_owned(),
                parent_span_id: self.server.span_id.to_be_bytes().to_vec(),
                name: format!("router {cluster} egress"),
                kind: SpanKind::Client as i32,
                start_time_unix_nano: unix_nanos(SystemTime::now()),
                attributes,
                ..otlp::Span::default()
            },
            endpoint,
            protocol: Some(if http2 {
                Version::HTTP_2
            } else {
                Version::HTTP_11
            }),
            // Until told otherwise, the attempt was abandoned.
            outcome: Outcome::Canceled(ResponseFlags::NONE),
            exporter: self.exporter.clone(),
        }))
    }
}

impl Attempt {
    /// The upstream answered with `status`.
    pub fn respond(&mut self, status: StatusCode) {
        self.0.outcome = Outcome::Response(status);
    }

    /// The attempt's stream failed with `error`.
    pub fn reset(&mut self, error: &UpstreamError) {
        let (reason, flag) = match error {
            UpstreamError::Connect(_) => ("remote connection failure", ResponseFlags::UF),
            UpstreamError::LocalConnect(_) => ("local connection failure", ResponseFlags::UF),
            UpstreamError::ConnectTimeout => ("connection timeout", ResponseFlags::UF),
            UpstreamError::Http(_) => ("connection termination", ResponseFlags::UC),
            UpstreamError::Overflow => ("overflow", ResponseFlags::UO),
        };
        // Envoy learns the protocol when the pool hands over a connection.
        if !matches!(error, UpstreamError::Http(_)) {
            self.0.protocol = None;
        }
        self.0.outcome = Outcome::Reset(reason, flag);
    }

    /// The proxy gave up on the attempt, `per_try` when its own timeout passed (`UT`).
    pub fn cancel(&mut self, per_try: bool) {
        let flags = match per_try {
            true => ResponseFlags::UT,
            false => ResponseFlags::NONE,
        };
        self.0.outcome = Outcome::Canceled(flags);
    }
}

impl Drop for Attempt {
    fn drop(&mut self) {
        let open = &mut *self.0;
        let span = &mut open.span;
        span.end_time_unix_nano = unix_nanos(SystemTime::now());
        let attributes = &mut span.attributes;
        let protocol = span::protocol(open.protocol);
        attributes.push(tag(tags::HTTP_PROTOCOL, protocol));
        let endpoint = open.endpoint.to_string();
        attributes.push(tag(tags::UPSTREAM_ADDRESS, endpoint.as_str()));
        attributes.push(tag(tags::PEER_ADDRESS, endpoint));
        attributes.push(tag(tags::COMPONENT, "proxy"));
        let (status, flags) = match open.outcome {
            Outcome::Response(status) => (status.as_u16(), ResponseFlags::NONE),
            Outcome::Reset(reason, flags) => {
                attributes.push(tag(tags::ERROR_REASON, reason));
                (0, flags)
            }
            Outcome::Canceled(flags) => {
                attributes.push(tag(tags::CANCELED, "true"));
                (0, flags)
            }
        };
        attributes.push(tag(tags::HTTP_STATUS_CODE, status.to_string()));
        attributes.push(tag(tags::RESPONSE_FLAGS, flags.to_string()));
        if status == 0 || status >= 500 {
            attributes.push(tag(tags::ERROR, "true"));
        }
        span.status = span::error_status(span.kind, status);
        open.exporter.send(std::mem::take(&mut open.span));
    }
}

/// Nanoseconds since the epoch, as OTLP times spans.
fn unix_nanos(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).unwrap_or_default().as_nanos() as u64
}
