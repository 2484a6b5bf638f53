//! One sampled request's span at this hop, as Envoy's tracers make it with
//! `spawn_upstream_span` off: a SERVER span on inbound and ingress listeners, a CLIENT
//! span on outbound ones, named by the route's decorator (else `ingress` or
//! `egress <host>`, or for Zipkin the host), tagged as Envoy's connection manager tags it, and sent to the
//! exporter when the response ends.

use std::time::UNIX_EPOCH;

use http::{HeaderName, Request, Version, header};
use mizzen_xds::otlp::{self, SpanKind, StatusCode};

use super::Hop;
use super::context::Headers;
use super::export::Handle;
use super::tags::{self, tag};
use crate::access_log::Record;

/// The header that carries the caller's route decorator to this hop.
pub(super) const DECORATOR_OPERATION: HeaderName =
    HeaderName::from_static("x-envoy-decorator-operation");
/// Envoy's `x-envoy-downstream-service-cluster`, the caller's cluster, when it says.
const DOWNSTREAM_SERVICE_CLUSTER: HeaderName =
    HeaderName::from_static("x-envoy-downstream-service-cluster");
const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
const X_ENVOY_ORIGINAL_PATH: HeaderName = HeaderName::from_static("x-envoy-original-path");
const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");

/// A sampled request's span, open until its response ends.
#[derive(Debug)]
pub struct Span {
    span: otlp::Span,
    /// Whether the name came from the caller (`x-envoy-decorator-operation`), which
    /// the route's decorator does not override.
    named_by_caller: bool,
    exporter: Handle,
}

impl Span {
    /// Opens the span of `hop` for `request`, its request-time tags taken now.
    pub(super) fn open(
        tracing: &super::Tracing,
        hop: &Hop,
        request: &Request<impl Sized>,
        caller_name: Option<String>,
        exporter: Handle,
    ) -> Span {
        let headers = request.headers();
        let text = |name: &HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
        let named_by_caller = caller_name.is_some();
        let name = caller_name.unwrap_or_else(|| match (tracing.headers, tracing.kind) {
            // Envoy's Zipkin tracer names a span by its host until a decorator names it.
            (Headers::B3(_), _) => host(request).unwrap_or_default().to_owned(),
            (Headers::W3cOrB3, SpanKind::Client) => {
                format!("egress {}", host(request).unwrap_or_default())
            }
            (Headers::W3cOrB3, _) => "ingress".to_owned(),
        });
        let mut attributes = Vec::with_capacity(24 + tracing.custom_tags.len());
        attributes.push(tag(tags::NODE_ID, tracing.node_id.as_str()));
        attributes.push(tag(tags::ZONE, tracing.zone.as_str()));
        if let Some(id) = text(&X_REQUEST_ID) {
            attributes.push(tag(tags::REQUEST_ID, id));
        }
        attributes.push(tag(
            tags::HTTP_URL,
            url(request, tracing.max_path_tag_length),
        ));
        attributes.push(tag(tags::HTTP_METHOD, request.method().as_str()));
        attributes.push(tag(
            tags::DOWNSTREAM_CLUSTER,
            text(&DOWNSTREAM_SERVICE_CLUSTER).unwrap_or("-"),
        ));
        attributes.push(tag(
            tags::USER_AGENT,
            text(&header::USER_AGENT).unwrap_or("-"),
        ));
        attributes.extend(
            tracing
                .custom_tags
                .iter()
                .filter_map(|t| t.attribute(headers)),
        );
        Span {
            span: otlp::Span {
                trace_id: hop.span.trace_id.to_be_bytes().to_vec(),
                span_id: hop.span.span_id.to_be_bytes().to_vec(),
                trace_state: text(&super::context::TRACESTATE)
                    .unwrap_or_default()
                    .to_owned(),
                parent_span_id: hop
                    .parent
                    .map(|p| p.to_be_bytes().to_vec())
                    .unwrap_or_default(),
                name,
                kind: tracing.kind as i32,
                attributes,
                ..otlp::Span::default()
            },
            named_by_caller,
            exporter,
        }
    }

    /// Names the span after the route's decorator, unless the caller named it.
    pub fn decorate(&mut self, operation: &str) {
        if !self.named_by_caller && !operation.is_empty() {
            operation.clone_into(&mut self.span.name);
        }
    }

    /// Closes the span with what the exchange's `record` says happened, and queues it
    /// for export; a full queue drops it (counted), never waiting.
    pub fn end(mut self, record: &Record) {
        let start = record.start.duration_since(UNIX_EPOCH).unwrap_or_default();
        let span = &mut self.span;
        span.start_time_unix_nano = start.as_nanos() as u64;
        span.end_time_unix_nano = (start + record.duration).as_nanos() as u64;
        let attributes = &mut span.attributes;
        attributes.push(tag(tags::HTTP_PROTOCOL, protocol(record.protocol)));
        attributes.push(tag(
            tags::PEER_ADDRESS,
            record.downstream_remote.ip().to_string(),
        ));
        attributes.push(tag(tags::REQUEST_SIZE, record.bytes_received.to_string()));
        attributes.push(tag(tags::RESPONSE_SIZE, record.bytes_sent.to_string()));
        attributes.push(tag(tags::COMPONENT, "proxy"));
        if let Some(cluster) = &record.upstream_cluster {
            attributes.push(tag(tags::UPSTREAM_CLUSTER, &**cluster));
            attributes.push(tag(tags::UPSTREAM_CLUSTER_NAME, &**cluster));
        }
        let status = record.status.map_or(0, |s| s.as_u16());
        attributes.push(tag(tags::HTTP_STATUS_CODE, status.to_string()));
        attributes.push(tag(tags::RESPONSE_FLAGS, record.flags.to_string()));
        // Envoy marks a request that got no response, or a 5xx, as an error.
        if status == 0 || status >= 500 {
            attributes.push(tag(tags::ERROR, "true"));
        }
        span.status = error_status(span.kind, status);
        self.exporter.send(self.span);
    }
}

/// The span's status as Envoy's OpenTelemetry tracer derives it from `http.status_code`
/// (not from the `error` tag): ERROR on a 5xx, and on a 4xx for CLIENT spans; unset
/// otherwise, no answer (0) included.
pub(super) fn error_status(kind: i32, status: u16) -> Option<otlp::Status> {
    let client = kind == SpanKind::Client as i32;
    (status >= 500 || (client && status >= 400)).then(|| otlp::Status {
        code: StatusCode::Error as i32,
        message: String::new(),
    })
}

/// Envoy's `http.url`: `<x-forwarded-proto>://<host><path>`, the path before any rewrite
/// and cut to `max_path` bytes.
fn url(request: &Request<impl Sized>, max_path: usize) -> String {
    let headers = request.headers();
    let scheme = headers
        .get(X_FORWARDED_PROTO)
        .and_then(|v| v.to_str().ok())
        .or(request.uri().scheme_str())
        .unwrap_or("http");
    let path = headers
        .get(X_ENVOY_ORIGINAL_PATH)
        .and_then(|v| v.to_str().ok())
        .or_else(|| request.uri().path_and_query().map(|p| p.as_str()))
        .unwrap_or("/");
    let mut cut = path.len().min(max_path);
    while !path.is_char_boundary(cut) {
        cut -= 1;
    }
    format!(
        "{scheme}://{}{}",
        host(request).unwrap_or_default(),
        &path[..cut]
    )
}

/// The request's `:authority`, from the URI or `host`.
fn host(request: &Request<impl Sized>) -> Option<&str> {
    request.uri().authority().map(|a| a.as_str()).or_else(|| {
        let host = request.headers().get(header::HOST)?;
        host.to_str().ok()
    })
}

/// The protocol as Envoy names it in `http.protocol` (and `%PROTOCOL%`).
pub(super) fn protocol(version: Option<Version>) -> &'static str {
    match version {
        Some(Version::HTTP_10) => "HTTP/1.0",
        Some(Version::HTTP_2) => "HTTP/2",
        Some(Version::HTTP_3) => "HTTP/3",
        Some(_) => "HTTP/1.1",
        None => "-",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_status_is_an_error_on_a_5xx_and_on_a_clients_4xx() {
        let (server, client) = (SpanKind::Server as i32, SpanKind::Client as i32);
        let error = |kind, status| error_status(kind, status).is_some();
        assert!(error(server, 503) && error(client, 503) && error(client, 404));
        assert!(!error(server, 404) && !error(server, 0) && !error(client, 0));
        assert!(!error(client, 200));
    }

    #[test]
    fn the_url_is_the_forwarded_scheme_the_host_and_the_original_path_cut_short() {
        let request = Request::get("/a/long/path?q=1")
            .header("host", "shop:8080")
            .header("x-forwarded-proto", "https")
            .body(())
            .unwrap();
        assert_eq!(url(&request, 256), "https://shop:8080/a/long/path?q=1");
        assert_eq!(url(&request, 7), "https://shop:8080/a/long");
        let rewritten = Request::get("/new")
            .header("host", "shop")
            .header("x-envoy-original-path", "/old")
            .body(())
            .unwrap();
        assert_eq!(url(&rewritten, 256), "http://shop/old");
    }
}
