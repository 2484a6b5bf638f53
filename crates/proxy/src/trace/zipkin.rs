//! Envoy's Zipkin tracer (`envoy.tracers.zipkin`): the spans the proxy makes, sent as
//! Zipkin v2 JSON (`POST` of a list of spans) to the collector cluster's
//! `collector_endpoint`, and B3 trace context ([`B3Context`]; with
//! `USE_B3_WITH_W3C_PROPAGATION`, W3C `traceparent` too).
//!
//! Each span is written as Envoy writes it: hex ids (the trace id in 16 digits unless its
//! high half is set), `kind`, times in microseconds, the proxy's `localEndpoint` (its
//! service cluster and, from the node id, its address), every non-empty tag, the closing
//! annotation (`ss` or `cr`), and `shared: true` on SERVER spans when the tracer shares
//! span context with the caller.

use std::net::IpAddr;

use bytes::Bytes;
use mizzen_xds::otlp::{self, SpanKind};
use mizzen_xds::pb::envoy::config::trace::v3::ZipkinConfig;
use mizzen_xds::pb::envoy::config::trace::v3::zipkin_config::{
    CollectorEndpointVersion, TraceContextOption,
};
use mizzen_xds::pb::google::protobuf::Any;
use mizzen_xds::pb::opentelemetry::proto::common::v1::any_value;
use prost::Message;
use serde_json::{Map, Value, json};

use super::context::B3Context;
use super::export::{Collector, DEFAULT_TIMEOUT, http_collector};
use crate::stats::Stats;

/// The Zipkin tracer's type URL.
pub(super) const ZIPKIN_CONFIG: &str = "type.googleapis.com/envoy.config.trace.v3.ZipkinConfig";

/// A Zipkin tracer's span encoding and trace context, compiled.
#[derive(Debug)]
pub(super) struct Zipkin {
    context: B3Context,
    /// The `localEndpoint` of every span, made once.
    local_endpoint: Value,
}

impl Zipkin {
    /// Compiles a `ZipkinConfig` for the proxy whose node `stats` names; errors are
    /// `(field, reason)` within it.
    pub(super) fn compile(
        any: &Any,
        stats: &Stats,
    ) -> Result<(Collector, Zipkin), (String, String)> {
        let raw = ZipkinConfig::decode(any.value.as_slice())
            .map_err(|e| (String::new(), format!("cannot decode: {e}")))?;
        let refuse = |field: &str, reason: &str| Err((field.to_owned(), reason.to_owned()));
        if raw.collector_endpoint_version != CollectorEndpointVersion::HttpJson as i32 {
            return refuse(
                "collector_endpoint_version",
                "only HTTP_JSON (Zipkin v2 JSON) is supported",
            );
        }
        let w3c = match TraceContextOption::try_from(raw.trace_context_option) {
            Ok(TraceContextOption::UseB3) => false,
            Ok(TraceContextOption::UseB3WithW3cPropagation) => true,
            Err(_) => {
                return refuse("trace_context_option", "is not a known option");
            }
        };
        // Deprecated in the API, yet Envoy still honours it: refused, not ignored.
        #[allow(deprecated)]
        let split_spans_for_request = raw.split_spans_for_request;
        if split_spans_for_request {
            return refuse(
                "split_spans_for_request",
                "is not supported; use the connection manager's spawn_upstream_span",
            );
        }
        if raw.timestamp_trace_ids {
            return refuse("timestamp_trace_ids", "is not supported");
        }
        let collector = match &raw.collector_service {
            Some(service) => {
                http_collector(service).map_err(|(f, r)| (format!("collector_service.{f}"), r))?
            }
            None if raw.collector_cluster.is_empty() => {
                return refuse(
                    "collector_cluster",
                    "is empty (and there is no collector_service)",
                );
            }
            None if raw.collector_endpoint.is_empty() => {
                return refuse("collector_endpoint", "is empty");
            }
            None => Collector {
                authority: match raw.collector_hostname.is_empty() {
                    true => raw.collector_cluster.clone(),
                    false => raw.collector_hostname.clone(),
                },
                cluster: raw.collector_cluster.clone(),
                path: raw.collector_endpoint.clone(),
                timeout: DEFAULT_TIMEOUT,
                headers: Vec::new(),
            },
        };
        let zipkin = Zipkin {
            context: B3Context {
                shared_span_context: raw.shared_span_context.as_ref().is_none_or(|b| b.value),
                trace_id_128bit: raw.trace_id_128bit,
                w3c,
            },
            local_endpoint: local_endpoint(stats),
        };
        Ok((collector, zipkin))
    }

    /// How the tracer reads and continues B3 context.
    pub(super) fn context(&self) -> B3Context {
        self.context
    }

    /// The spans as one Zipkin v2 JSON list.
    pub(super) fn encode(&self, spans: &[otlp::Span]) -> Bytes {
        let list: Vec<Value> = spans.iter().map(|s| self.span(s)).collect();
        Bytes::from(serde_json::to_vec(&list).expect("JSON values serialize"))
    }

    fn span(&self, span: &otlp::Span) -> Value {
        let server = span.kind == SpanKind::Server as i32;
        let start = span.start_time_unix_nano / 1000;
        let end = span.end_time_unix_nano / 1000;
        let tags: Map<String, Value> = span
            .attributes
            .iter()
            .filter_map(|kv| match kv.value.as_ref()?.value.as_ref()? {
                // Envoy's Zipkin spans keep no empty tag.
                any_value::Value::StringValue(v) if !v.is_empty() => {
                    Some((kv.key.clone(), Value::String(v.clone())))
                }
                _ => None,
            })
            .collect();
        let mut out = json!({
            "traceId": trace_id_hex(&span.trace_id),
            "id": hex(&span.span_id),
            "name": span.name,
            "kind": if server { "SERVER" } else { "CLIENT" },
            "timestamp": start,
            "duration": end.saturating_sub(start),
            "localEndpoint": self.local_endpoint,
            "tags": tags,
            "annotations": [{"timestamp": end, "value": if server { "ss" } else { "cr" }}],
        });
        let fields = out.as_object_mut().expect("a span is an object");
        if !span.parent_span_id.is_empty() {
            fields.insert("parentId".into(), hex(&span.parent_span_id).into());
        }
        if server && self.context.shared_span_context {
            fields.insert("shared".into(), true.into());
        }
        out
    }
}

/// The proxy as Zipkin names it: its service cluster, and its address (the node id's
/// second field, as Istio writes it: `sidecar~<ip>~<pod>.<ns>~<domain>`), port 0.
fn local_endpoint(stats: &Stats) -> Value {
    let mut endpoint = Map::new();
    if let Some(ip) = stats
        .node_id()
        .split('~')
        .nth(1)
        .and_then(|ip| ip.parse::<IpAddr>().ok())
    {
        let key = if ip.is_ipv4() { "ipv4" } else { "ipv6" };
        endpoint.insert(key.into(), ip.to_string().into());
    }
    endpoint.insert("port".into(), 0.into());
    if !stats.node_cluster().is_empty() {
        endpoint.insert("serviceName".into(), stats.node_cluster().into());
    }
    Value::Object(endpoint)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// A trace id in 16 hex digits when it fits in 64 bits, else 32, as Envoy writes it.
fn trace_id_hex(bytes: &[u8]) -> String {
    match bytes.split_at_checked(8) {
        Some((high, low)) if high.iter().all(|b| *b == 0) => hex(low),
        _ => hex(bytes),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::trace::tags::tag;

    fn zipkin(shared: bool) -> Zipkin {
        Zipkin {
            context: B3Context {
                shared_span_context: shared,
                trace_id_128bit: false,
                w3c: false,
            },
            local_endpoint: json!({"serviceName": "b.default", "ipv4": "10.1.2.3", "port": 0}),
        }
    }

    fn span(kind: SpanKind, trace_id: u128, parent: Option<u64>) -> otlp::Span {
        otlp::Span {
            trace_id: trace_id.to_be_bytes().to_vec(),
            span_id: 0xa2fb4a1d1a96d312u64.to_be_bytes().to_vec(),
            parent_span_id: parent.map(|p| p.to_be_bytes().to_vec()).unwrap_or_default(),
            name: "shop:80/*".into(),
            kind: kind as i32,
            start_time_unix_nano: 1_000_000_000,
            end_time_unix_nano: 1_002_500_000,
            attributes: vec![tag("http.status_code", "200"), tag("zone", "")],
            ..otlp::Span::default()
        }
    }

    #[test]
    fn a_server_span_is_written_as_envoy_writes_it() {
        let server = span(SpanKind::Server, 0x463ac35c9f6413ad, Some(1));
        let json: Value = serde_json::from_slice(&zipkin(true).encode(&[server])).unwrap();
        assert_eq!(
            json,
            json!([{
                "traceId": "463ac35c9f6413ad",
                "id": "a2fb4a1d1a96d312",
                "parentId": "0000000000000001",
                "name": "shop:80/*",
                "kind": "SERVER",
                "timestamp": 1_000_000,
                "duration": 2_500,
                "localEndpoint": {"serviceName": "b.default", "ipv4": "10.1.2.3", "port": 0},
                "tags": {"http.status_code": "200"},
                "annotations": [{"timestamp": 1_002_500, "value": "ss"}],
                "shared": true,
            }])
        );
    }

    #[test]
    fn client_spans_and_unshared_servers_are_not_shared() {
        let trace = 0x80f198ee56343ba864fe8b2a57d3eff7;
        let spans = [
            span(SpanKind::Client, trace, None),
            span(SpanKind::Server, trace, None),
        ];
        let json: Value = serde_json::from_slice(&zipkin(false).encode(&spans)).unwrap();
        for span in json.as_array().unwrap() {
            assert_eq!(span["traceId"], "80f198ee56343ba864fe8b2a57d3eff7");
            assert!(span.get("shared").is_none() && span.get("parentId").is_none());
        }
        assert_eq!(json[0]["annotations"][0]["value"], "cr");
    }
}
