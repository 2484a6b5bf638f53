//! OTLP export (`envoy.tracers.opentelemetry`): finished spans queue for a background
//! task that batches them and sends each batch to the collector through one of the
//! proxy's clusters, as OTLP/gRPC (`TraceService/Export`) or OTLP/HTTP (protobuf `POST`).
//!
//! As in Envoy, a batch goes when it holds `min_flush_spans` (5) spans or every
//! `flush_interval_ms` (5 s); the queue holds `max_cache_size` spans (1024) and a span
//! that finds it full is dropped and counted (`tracing.opentelemetry.spans_dropped`): a
//! request never waits for the collector. The task starts with the first sampled span.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{self, HeaderName, HeaderValue};
use http::{Request, Uri};
use http_body_util::BodyExt;
use mizzen_xds::otlp::{self, ExportTraceServiceRequest, Resource, ResourceSpans, ScopeSpans};
use mizzen_xds::pb::envoy::config::core::v3::{
    GrpcService, HeaderValueOption, HttpService, grpc_service::TargetSpecifier,
    http_uri::HttpUpstreamType,
};
use mizzen_xds::pb::envoy::config::trace::v3::OpenTelemetryConfig;
use mizzen_xds::pb::google::protobuf::{Any, BoolValue};
use mizzen_xds::pb::opentelemetry::proto::common::v1::InstrumentationScope;
use prost::Message;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::tags::tag;
use crate::Shared;
use crate::config::UpstreamProtocol;
use crate::http::{Kept, RequestBody};
use crate::stats::{Counter, Stats};
use crate::upstream::{PoolKey, PoolSettings};

/// The tracer's type URL.
const OPEN_TELEMETRY_CONFIG: &str = "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig";
const ENVIRONMENT_DETECTOR: &str = "type.googleapis.com/envoy.extensions.tracers.opentelemetry.resource_detectors.v3.EnvironmentResourceDetectorConfig";
/// Envoy's defaults for its runtime keys `tracing.opentelemetry.min_flush_spans` and
/// `tracing.opentelemetry.flush_interval_ms`.
const MIN_FLUSH_SPANS: usize = 5;
const FLUSH_INTERVAL: Duration = Duration::from_secs(5);
/// Envoy's default `max_cache_size`.
const DEFAULT_MAX_CACHE_SIZE: u32 = 1024;
/// How long an export may take when the service sets no timeout.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Envoy's `service.name` when the config names none.
const UNKNOWN_SERVICE: &str = "unknown_service:envoy";
/// The SDK and instrumentation scope the spans name (Envoy names itself, `envoy`).
const SDK_NAME: &str = "mizzen";

/// An OpenTelemetry tracer's exporter, compiled; the batching task starts on first use.
#[derive(Debug)]
pub struct Exporter {
    delivery: Arc<Delivery>,
    capacity: usize,
    handle: OnceLock<Handle>,
}

/// Where finished spans are queued for export; cheap to clone.
#[derive(Debug, Clone)]
pub struct Handle {
    queue: mpsc::Sender<otlp::Span>,
    dropped: Arc<Counter>,
}

impl Handle {
    /// Queues `span`, or drops it (counted) when the queue is full.
    pub fn send(&self, span: otlp::Span) {
        if self.queue.try_send(span).is_err() {
            self.dropped.inc();
        }
    }
}

/// What the batching task needs: the collector, the resource and scope, the counters.
#[derive(Debug)]
struct Delivery {
    collector: Collector,
    resource: Resource,
    scope: Option<InstrumentationScope>,
    stats: ExportStats,
}

/// The OTLP collector and the way to it.
#[derive(Debug)]
struct Collector {
    protocol: Protocol,
    cluster: String,
    authority: String,
    path: String,
    timeout: Duration,
    headers: Vec<(HeaderName, HeaderValue)>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Protocol {
    Grpc,
    Http,
}

/// Envoy's `tracing.opentelemetry.*` counters.
#[derive(Debug)]
struct ExportStats {
    spans_sent: Arc<Counter>,
    spans_dropped: Arc<Counter>,
    timer_flushed: Arc<Counter>,
    http_reports_sent: Arc<Counter>,
    http_reports_success: Arc<Counter>,
    http_reports_failed: Arc<Counter>,
}

impl Exporter {
    /// Compiles the tracer's `typed_config`; errors are `(field, reason)` within it.
    pub fn compile(any: &Any, stats: &Stats) -> Result<Exporter, (String, String)> {
        if any.type_url != OPEN_TELEMETRY_CONFIG {
            return Err((
                "type_url".into(),
                format!(
                    "tracer {:?} is not supported; expected {OPEN_TELEMETRY_CONFIG}",
                    any.type_url
                ),
            ));
        }
        let raw = OpenTelemetryConfig::decode(any.value.as_slice())
            .map_err(|e| (String::new(), format!("cannot decode: {e}")))?;
        let collector = match (&raw.grpc_service, &raw.http_service) {
            (Some(grpc), None) => {
                grpc_collector(grpc).map_err(|(f, r)| (format!("grpc_service.{f}"), r))?
            }
            (None, Some(http)) => {
                http_collector(http).map_err(|(f, r)| (format!("http_service.{f}"), r))?
            }
            (Some(_), Some(_)) => {
                return Err((
                    "http_service".into(),
                    "only one of grpc_service and http_service may be set".into(),
                ));
            }
            (None, None) => {
                return Err((
                    "grpc_service".into(),
                    "a collector is needed (grpc_service or http_service)".into(),
                ));
            }
        };
        if raw.sampler.is_some() {
            return Err(("sampler".into(), "samplers are not supported".into()));
        }
        let capacity = raw
            .max_cache_size
            .as_ref()
            .map_or(DEFAULT_MAX_CACHE_SIZE, |v| v.value)
            .max(1) as usize;
        let counter = |name: &str| stats.counter(&format!("tracing.opentelemetry.{name}"));
        Ok(Exporter {
            delivery: Arc::new(Delivery {
                collector,
                resource: resource(&raw)?,
                scope: enabled(raw.set_instrumentation_scope.as_ref()).then(|| {
                    InstrumentationScope {
                        name: SDK_NAME.to_owned(),
                        version: env!("CARGO_PKG_VERSION").to_owned(),
                        ..InstrumentationScope::default()
                    }
                }),
                stats: ExportStats {
                    spans_sent: counter("spans_sent"),
                    spans_dropped: counter("spans_dropped"),
                    timer_flushed: counter("timer_flushed"),
                    http_reports_sent: counter("http_reports_sent"),
                    http_reports_success: counter("http_reports_success"),
                    http_reports_failed: counter("http_reports_failed"),
                },
            }),
            capacity,
            handle: OnceLock::new(),
        })
    }

    /// Where to queue spans, starting the batching task for `shared` the first time.
    pub fn handle(&self, shared: &Arc<Shared>) -> Handle {
        self.handle
            .get_or_init(|| {
                let (queue, spans) = mpsc::channel(self.capacity);
                // Weak: the task must not keep the proxy (whose config holds this
                // exporter) alive; it ends when the exporter and its spans are gone.
                let shared = Arc::downgrade(shared);
                tokio::spawn(batch(self.delivery.clone(), shared, spans));
                Handle {
                    queue,
                    dropped: self.delivery.stats.spans_dropped.clone(),
                }
            })
            .clone()
    }
}

/// Collects spans into batches and exports each, in order, until every sender is gone.
async fn batch(
    delivery: Arc<Delivery>,
    shared: Weak<Shared>,
    mut spans: mpsc::Receiver<otlp::Span>,
) {
    let mut pending = Vec::with_capacity(MIN_FLUSH_SPANS);
    let mut tick = Instant::now() + FLUSH_INTERVAL;
    loop {
        tokio::select! {
            span = spans.recv() => match span {
                Some(span) => {
                    pending.push(span);
                    if pending.len() >= MIN_FLUSH_SPANS {
                        delivery.flush(&shared, &mut pending).await;
                    }
                }
                None => {
                    delivery.flush(&shared, &mut pending).await;
                    return;
                }
            },
            () = tokio::time::sleep_until(tick) => {
                delivery.stats.timer_flushed.inc();
                delivery.flush(&shared, &mut pending).await;
                tick = Instant::now() + FLUSH_INTERVAL;
            }
        }
    }
}

impl Delivery {
    /// Exports the pending spans, if any; a failed export loses them, as in Envoy.
    async fn flush(&self, shared: &Weak<Shared>, pending: &mut Vec<otlp::Span>) {
        if pending.is_empty() {
            return;
        }
        let spans = std::mem::take(pending);
        self.stats.spans_sent.inc_by(spans.len() as u64);
        let request = ExportTraceServiceRequest {
            resource_spans: vec![ResourceSpans {
                resource: Some(self.resource.clone()),
                scope_spans: vec![ScopeSpans {
                    scope: self.scope.clone(),
                    spans,
                    schema_url: String::new(),
                }],
                schema_url: String::new(),
            }],
        };
        let Some(shared) = shared.upgrade() else {
            return;
        };
        let http = self.collector.protocol == Protocol::Http;
        if http {
            self.stats.http_reports_sent.inc();
        }
        let sent =
            tokio::time::timeout(self.collector.timeout, self.export(&shared, &request)).await;
        let outcome = sent.unwrap_or_else(|_| Err("timed out".into()));
        match (&outcome, http) {
            (Ok(()), true) => self.stats.http_reports_success.inc(),
            (Err(_), true) => self.stats.http_reports_failed.inc(),
            _ => {}
        }
        if let Err(e) = outcome {
            tracing::debug!(cluster = %self.collector.cluster, error = %e, "OTLP export failed");
        }
    }

    /// Sends one export request to an endpoint of the collector's cluster.
    async fn export(
        &self,
        shared: &Shared,
        export: &ExportTraceServiceRequest,
    ) -> Result<(), String> {
        let collector = &self.collector;
        let snapshot = shared.store.snapshot();
        let state = snapshot
            .clusters
            .get(&collector.cluster)
            .ok_or_else(|| format!("cluster {:?} not found", collector.cluster))?;
        // No downstream connection: an original-destination cluster has nothing to go by.
        let unspecified = SocketAddr::from(([0, 0, 0, 0], 0));
        let chosen =
            crate::endpoint::choose(state, unspecified, None).map_err(|e| e.to_string())?;
        let grpc = collector.protocol == Protocol::Grpc;
        let key = PoolKey {
            endpoint: chosen.address,
            http2: grpc || state.cluster.protocol == UpstreamProtocol::Http2,
            bind: state.cluster.bind,
            transport: state.transport(chosen.address).clone(),
        };
        let message = export.encode_to_vec();
        let (body, content_type) = if grpc {
            let mut framed = BytesMut::with_capacity(5 + message.len());
            framed.put_u8(0);
            framed.put_u32(message.len() as u32);
            framed.put_slice(&message);
            (framed.freeze(), "application/grpc")
        } else {
            (Bytes::from(message), "application/x-protobuf")
        };
        let mut request = Request::post(&collector.path)
            .header(header::CONTENT_TYPE, content_type)
            .header(header::CONTENT_LENGTH, body.len());
        if grpc {
            request = request.header(header::TE, "trailers");
        }
        for (name, value) in &collector.headers {
            request = request.header(name, value);
        }
        let mut request = request
            .body(RequestBody::Whole([Kept::Data(body)].into()))
            .map_err(|e| e.to_string())?;
        // HTTP/2 carries the authority in `:authority`, HTTP/1.1 in `host`.
        if key.http2 {
            *request.uri_mut() = format!("http://{}{}", collector.authority, collector.path)
                .parse::<Uri>()
                .map_err(|e| e.to_string())?;
            *request.version_mut() = http::Version::HTTP_2;
        } else {
            let host = HeaderValue::from_str(&collector.authority).map_err(|e| e.to_string())?;
            request.headers_mut().insert(header::HOST, host);
        }
        let response = shared
            .upstreams
            .send(key, PoolSettings::of(&state.cluster), &state.stats, request)
            .await
            .map_err(|e| e.to_string())?;
        let (parts, body) = response.into_parts();
        let collected = body.collect().await.map_err(|e| e.to_string())?;
        if !parts.status.is_success() {
            return Err(format!("the collector answered {}", parts.status));
        }
        if grpc {
            let status = collected
                .trailers()
                .and_then(|t| t.get("grpc-status"))
                .or_else(|| parts.headers.get("grpc-status"))
                .and_then(|v| v.to_str().ok());
            if status != Some("0") {
                return Err(format!("gRPC status {}", status.unwrap_or("missing")));
            }
        }
        Ok(())
    }
}

/// The collector of a `grpc_service` (Envoy's gRPC client to a cluster).
fn grpc_collector(raw: &GrpcService) -> Result<Collector, (String, String)> {
    let Some(TargetSpecifier::EnvoyGrpc(envoy)) = &raw.target_specifier else {
        return Err((
            "google_grpc".into(),
            "only envoy_grpc (a cluster) is supported".into(),
        ));
    };
    if envoy.cluster_name.is_empty() {
        return Err(("envoy_grpc.cluster_name".into(), "is empty".into()));
    }
    let headers = raw
        .initial_metadata
        .iter()
        .enumerate()
        .map(|(i, h)| {
            header_pair(&h.key, &h.value).map_err(|r| (format!("initial_metadata[{i}]"), r))
        })
        .collect::<Result<_, _>>()?;
    Ok(Collector {
        protocol: Protocol::Grpc,
        authority: if envoy.authority.is_empty() {
            envoy.cluster_name.clone()
        } else {
            envoy.authority.clone()
        },
        cluster: envoy.cluster_name.clone(),
        path: otlp::EXPORT_PATH.to_owned(),
        timeout: timeout(raw.timeout.as_ref()).map_err(|r| ("timeout".to_owned(), r))?,
        headers,
    })
}

/// The collector of an `http_service`: its URI's authority and path, through its cluster.
fn http_collector(raw: &HttpService) -> Result<Collector, (String, String)> {
    let uri = raw
        .http_uri
        .as_ref()
        .ok_or_else(|| ("http_uri".to_owned(), "is missing".to_owned()))?;
    let Some(HttpUpstreamType::Cluster(cluster)) = &uri.http_upstream_type else {
        return Err(("http_uri.cluster".into(), "is missing".into()));
    };
    let parsed: Uri = uri
        .uri
        .parse()
        .map_err(|e| ("http_uri.uri".to_owned(), format!("{:?}: {e}", uri.uri)))?;
    let authority = parsed
        .authority()
        .map(|a| a.as_str().to_owned())
        .ok_or_else(|| {
            (
                "http_uri.uri".to_owned(),
                format!("{:?} has no host", uri.uri),
            )
        })?;
    let headers = raw
        .request_headers_to_add
        .iter()
        .enumerate()
        .map(|(i, option)| {
            option_pair(option).map_err(|r| (format!("request_headers_to_add[{i}]"), r))
        })
        .collect::<Result<_, _>>()?;
    Ok(Collector {
        protocol: Protocol::Http,
        cluster: cluster.clone(),
        authority,
        path: parsed
            .path_and_query()
            .map_or(otlp::HTTP_PATH, |p| p.as_str())
            .to_owned(),
        timeout: timeout(uri.timeout.as_ref()).map_err(|r| ("http_uri.timeout".to_owned(), r))?,
        headers,
    })
}

fn option_pair(option: &HeaderValueOption) -> Result<(HeaderName, HeaderValue), String> {
    let header = option.header.as_ref().ok_or("header is missing")?;
    header_pair(&header.key, &header.value)
}

fn header_pair(name: &str, value: &str) -> Result<(HeaderName, HeaderValue), String> {
    Ok((
        HeaderName::try_from(name).map_err(|_| format!("{name:?} is not a header name"))?,
        HeaderValue::try_from(value).map_err(|_| format!("{value:?} is not a header value"))?,
    ))
}

fn timeout(raw: Option<&mizzen_xds::pb::google::protobuf::Duration>) -> Result<Duration, String> {
    match raw {
        Some(d) => {
            crate::config::duration(d).map(|d| if d.is_zero() { DEFAULT_TIMEOUT } else { d })
        }
        None => Ok(DEFAULT_TIMEOUT),
    }
}

/// Whether an optional switch that defaults to on is on.
fn enabled(switch: Option<&BoolValue>) -> bool {
    switch.is_none_or(|b| b.value)
}

/// The resource the spans come from: `service.name` and the SDK (each unless switched
/// off, as in Envoy), then what the resource detectors find (the environment detector
/// reads `OTEL_RESOURCE_ATTRIBUTES`, once, as Envoy does).
fn resource(raw: &OpenTelemetryConfig) -> Result<Resource, (String, String)> {
    let service = if raw.service_name.is_empty() {
        UNKNOWN_SERVICE
    } else {
        &raw.service_name
    };
    let mut attributes = Vec::new();
    if enabled(raw.set_service_name_resource_attribute.as_ref()) {
        attributes.push(tag("service.name", service));
    }
    if enabled(raw.set_telemetry_sdk_resource_attributes.as_ref()) {
        attributes.push(tag("telemetry.sdk.language", "rust"));
        attributes.push(tag("telemetry.sdk.name", SDK_NAME));
        attributes.push(tag("telemetry.sdk.version", env!("CARGO_PKG_VERSION")));
    }
    for (i, detector) in raw.resource_detectors.iter().enumerate() {
        match detector.typed_config.as_ref().map(|a| a.type_url.as_str()) {
            Some(ENVIRONMENT_DETECTOR) => {
                let env = std::env::var("OTEL_RESOURCE_ATTRIBUTES").unwrap_or_default();
                attributes.extend(
                    env.split(',')
                        .filter_map(|pair| pair.split_once('='))
                        .map(|(k, v)| tag(k.trim(), v.trim())),
                );
            }
            other => {
                return Err((
                    format!("resource_detectors[{i}]"),
                    format!(
                        "resource detector {other:?} is not supported (the environment detector is)"
                    ),
                ));
            }
        }
    }
    Ok(Resource {
        attributes,
        dropped_attributes_count: 0,
    })
}
