//! Span export: finished spans queue for a background task that batches them and sends
//! each batch to the tracer's collector through one of the proxy's clusters, as OTLP
//! (`envoy.tracers.opentelemetry`: gRPC `TraceService/Export` or protobuf `POST`) or as
//! Zipkin v2 JSON (`envoy.tracers.zipkin`, [`super::zipkin`]).
//!
//! As in Envoy, a batch goes when it holds `min_flush_spans` (5) spans or every
//! `flush_interval_ms` (5 s); the queue holds `max_cache_size` spans (1024) and a span
//! that finds it full is dropped and counted (`tracing.<tracer>.spans_dropped`): a
//! request never waits for the collector. The task starts with the first sampled span.

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock, Weak};
use std::time::Duration;

use bytes::{BufMut, Bytes, BytesMut};
use http::header::{self, HeaderName, HeaderValue};
use http::{Request, StatusCode, Uri};
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

use super::context::Headers;
use super::tags::tag;
use super::zipkin::{self, Zipkin};
use crate::Shared;
use crate::config::UpstreamProtocol;
use crate::http::{Kept, RequestBody};
use crate::stats::{Counter, Stats};
use crate::upstream::{PoolKey, PoolSettings};

/// The OpenTelemetry tracer's type URL.
const OPEN_TELEMETRY_CONFIG: &str = "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig";
const ENVIRONMENT_DETECTOR: &str = "type.googleapis.com/envoy.extensions.tracers.opentelemetry.resource_detectors.v3.EnvironmentResourceDetectorConfig";
/// Envoy's defaults for its runtime keys `tracing.<tracer>.min_flush_spans` and
/// `tracing.<tracer>.flush_interval_ms`.
const MIN_FLUSH_SPANS: usize = 5;
const FLUSH_INTERVAL: Duration = Duration::from_secs(5);
/// Envoy's default `max_cache_size`.
const DEFAULT_MAX_CACHE_SIZE: u32 = 1024;
/// How long an export may take when the service sets no timeout (and Envoy's
/// `tracing.zipkin.request_timeout`).
pub(super) const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);
/// Envoy's `service.name` when the config names none.
const UNKNOWN_SERVICE: &str = "unknown_service:envoy";
/// The SDK and instrumentation scope the spans name (Envoy names itself, `envoy`).
const SDK_NAME: &str = "mizzen";

/// A tracer's exporter, compiled; the batching task starts on first use.
#[derive(Debug)]
pub struct Exporter {
    delivery: Arc<Delivery>,
    capacity: usize,
    /// The trace context headers the tracer reads and writes.
    headers: Headers,
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

/// What the batching task needs: the collector, how spans are written for it, the
/// counters.
#[derive(Debug)]
struct Delivery {
    collector: Collector,
    format: Format,
    stats: ExportStats,
}

/// The collector and the way to it.
#[derive(Debug)]
pub(super) struct Collector {
    pub(super) cluster: String,
    /// The `:authority` (or `host`) of export requests.
    pub(super) authority: String,
    pub(super) path: String,
    pub(super) timeout: Duration,
    pub(super) headers: Vec<(HeaderName, HeaderValue)>,
}

/// How a batch of spans is written for the collector.
#[derive(Debug)]
enum Format {
    /// An OTLP export request, gRPC-framed or as a protobuf body.
    Otlp {
        grpc: bool,
        resource: Resource,
        scope: Option<InstrumentationScope>,
    },
    /// A Zipkin v2 JSON list of spans.
    Zipkin(Zipkin),
}

/// A tracer's counters: Envoy's `tracing.opentelemetry.*` or `tracing.zipkin.*`.
#[derive(Debug)]
struct ExportStats {
    spans_sent: Arc<Counter>,
    spans_dropped: Arc<Counter>,
    timer_flushed: Arc<Counter>,
    reports: Reports,
}

/// How each tracer counts its export requests' outcomes.
#[derive(Debug)]
enum Reports {
    /// OTLP/gRPC: not counted.
    Grpc,
    /// OTLP/HTTP: sent, and answered 2xx or not.
    Http {
        sent: Arc<Counter>,
        success: Arc<Counter>,
        failed: Arc<Counter>,
    },
    /// Zipkin: answered 202 (`sent`) or otherwise (`dropped`), not answered (`failed`),
    /// or not sent for want of the cluster (`skipped_no_cluster`).
    Zipkin {
        sent: Arc<Counter>,
        dropped: Arc<Counter>,
        failed: Arc<Counter>,
        skipped_no_cluster: Arc<Counter>,
    },
}

/// Why an export request got no answer.
#[derive(Debug, thiserror::Error)]
enum ExportError {
    #[error("cluster {0:?} not found")]
    NoCluster(String),
    #[error("timed out")]
    TimedOut,
    #[error("{0}")]
    Failed(String),
}

/// The collector's answer to an export request.
struct Answer {
    status: StatusCode,
    /// `grpc-status`, from the trailers or the headers.
    grpc_status: Option<String>,
}

impl Exporter {
    /// Compiles the tracer's `typed_config` (OpenTelemetry or Zipkin); errors are
    /// `(field, reason)` within it.
    pub fn compile(any: &Any, stats: &Stats) -> Result<Exporter, (String, String)> {
        match any.type_url.as_str() {
            OPEN_TELEMETRY_CONFIG => opentelemetry(any, stats),
            zipkin::ZIPKIN_CONFIG => {
                let (collector, zipkin) = Zipkin::compile(any, stats)?;
                let counter = |name: &str| stats.counter(&format!("tracing.zipkin.{name}"));
                Ok(Exporter {
                    headers: Headers::B3(zipkin.context()),
                    delivery: Arc::new(Delivery {
                        collector,
                        format: Format::Zipkin(zipkin),
                        stats: ExportStats {
                            spans_sent: counter("spans_sent"),
                            spans_dropped: counter("spans_dropped"),
                            timer_flushed: counter("timer_flushed"),
                            reports: Reports::Zipkin {
                                sent: counter("reports_sent"),
                                dropped: counter("reports_dropped"),
                                failed: counter("reports_failed"),
                                skipped_no_cluster: counter("reports_skipped_no_cluster"),
                            },
                        },
                    }),
                    capacity: DEFAULT_MAX_CACHE_SIZE as usize,
                    handle: OnceLock::new(),
                })
            }
            other => Err((
                "type_url".into(),
                format!(
                    "tracer {other:?} is not supported; expected {OPEN_TELEMETRY_CONFIG} or {}",
                    zipkin::ZIPKIN_CONFIG
                ),
            )),
        }
    }

    /// The trace context headers this tracer reads and writes.
    pub fn headers(&self) -> Headers {
        self.headers
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

/// Compiles an `OpenTelemetryConfig`.
fn opentelemetry(any: &Any, stats: &Stats) -> Result<Exporter, (String, String)> {
    let raw = OpenTelemetryConfig::decode(any.value.as_slice())
        .map_err(|e| (String::new(), format!("cannot decode: {e}")))?;
    let (grpc, collector) = match (&raw.grpc_service, &raw.http_service) {
        (Some(grpc), None) => (
            true,
            grpc_collector(grpc).map_err(|(f, r)| (format!("grpc_service.{f}"), r))?,
        ),
        (None, Some(http)) => (
            false,
            http_collector(http).map_err(|(f, r)| (format!("http_service.{f}"), r))?,
        ),
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
    let reports = match grpc {
        true => Reports::Grpc,
        false => Reports::Http {
            sent: counter("http_reports_sent"),
            success: counter("http_reports_success"),
            failed: counter("http_reports_failed"),
        },
    };
    Ok(Exporter {
        delivery: Arc::new(Delivery {
            collector,
            format: Format::Otlp {
                grpc,
                resource: resource(&raw)?,
                scope: enabled(raw.set_instrumentation_scope.as_ref()).then(|| {
                    InstrumentationScope {
                        name: SDK_NAME.to_owned(),
                        version: env!("CARGO_PKG_VERSION").to_owned(),
                        ..InstrumentationScope::default()
                    }
                }),
            },
            stats: ExportStats {
                spans_sent: counter("spans_sent"),
                spans_dropped: counter("spans_dropped"),
                timer_flushed: counter("timer_flushed"),
                reports,
            },
        }),
        capacity,
        headers: Headers::W3cOrB3,
        handle: OnceLock::new(),
    })
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
        let (body, content_type) = self.encode(spans);
        let Some(shared) = shared.upgrade() else {
            return;
        };
        if let Reports::Http { sent, .. } = &self.stats.reports {
            sent.inc();
        }
        let sent = tokio::time::timeout(
            self.collector.timeout,
            self.export(&shared, body, content_type),
        )
        .await;
        let outcome = sent.unwrap_or(Err(ExportError::TimedOut));
        let accepted = match (&self.stats.reports, &outcome) {
            (Reports::Grpc, Ok(answer)) => {
                answer.status.is_success() && answer.grpc_status.as_deref() == Some("0")
            }
            (
                Reports::Http {
                    success, failed, ..
                },
                Ok(answer),
            ) => {
                let ok = answer.status.is_success();
                if ok { success } else { failed }.inc();
                ok
            }
            (Reports::Http { failed, .. }, Err(_)) => {
                failed.inc();
                false
            }
            // Envoy's Zipkin reporter counts a report sent only when it is accepted.
            (Reports::Zipkin { sent, dropped, .. }, Ok(answer)) => {
                let ok = answer.status == StatusCode::ACCEPTED;
                if ok { sent } else { dropped }.inc();
                ok
            }
            (
                Reports::Zipkin {
                    skipped_no_cluster, ..
                },
                Err(ExportError::NoCluster(_)),
            ) => {
                skipped_no_cluster.inc();
                false
            }
            (Reports::Zipkin { failed, .. }, Err(_)) => {
                failed.inc();
                false
            }
            (Reports::Grpc, Err(_)) => false,
        };
        if !accepted {
            tracing::debug!(
                cluster = %self.collector.cluster,
                outcome = ?outcome.map(|a| (a.status, a.grpc_status)),
                "span export failed"
            );
        }
    }

    /// The batch as the collector reads it, and its content type.
    fn encode(&self, spans: Vec<otlp::Span>) -> (Bytes, &'static str) {
        match &self.format {
            Format::Otlp {
                grpc,
                resource,
                scope,
            } => {
                let message = ExportTraceServiceRequest {
                    resource_spans: vec![ResourceSpans {
                        resource: Some(resource.clone()),
                        scope_spans: vec![ScopeSpans {
                            scope: scope.clone(),
                            spans,
                            schema_url: String::new(),
                        }],
                        schema_url: String::new(),
                    }],
                }
                .encode_to_vec();
                if *grpc {
                    let mut framed = BytesMut::with_capacity(5 + message.len());
                    framed.put_u8(0);
                    framed.put_u32(message.len() as u32);
                    framed.put_slice(&message);
                    (framed.freeze(), "application/grpc")
                } else {
                    (Bytes::from(message), "application/x-protobuf")
                }
            }
            Format::Zipkin(zipkin) => (zipkin.encode(&spans), "application/json"),
        }
    }

    /// Sends one export request to an endpoint of the collector's cluster.
    async fn export(
        &self,
        shared: &Shared,
        body: Bytes,
        content_type: &'static str,
    ) -> Result<Answer, ExportError> {
        let collector = &self.collector;
        let failed = |e: &dyn std::fmt::Display| ExportError::Failed(e.to_string());
        let snapshot = shared.store.snapshot();
        let state = snapshot
            .clusters
            .get(&collector.cluster)
            .ok_or_else(|| ExportError::NoCluster(collector.cluster.clone()))?;
        // No downstream connection: an original-destination cluster has nothing to go by.
        let unspecified = SocketAddr::from(([0, 0, 0, 0], 0));
        let chosen = crate::endpoint::choose(state, unspecified, None).map_err(|e| failed(&e))?;
        let grpc = matches!(self.format, Format::Otlp { grpc: true, .. });
        let key = PoolKey {
            endpoint: chosen.address,
            http2: grpc || state.cluster.protocol == UpstreamProtocol::Http2,
            bind: state.cluster.bind,
            transport: state.transport(chosen.address).clone(),
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
            .map_err(|e| failed(&e))?;
        // HTTP/2 carries the authority in `:authority`, HTTP/1.1 in `host`.
        if key.http2 {
            *request.uri_mut() = format!("http://{}{}", collector.authority, collector.path)
                .parse::<Uri>()
                .map_err(|e| failed(&e))?;
            *request.version_mut() = http::Version::HTTP_2;
        } else {
            let host = HeaderValue::from_str(&collector.authority).map_err(|e| failed(&e))?;
            request.headers_mut().insert(header::HOST, host);
        }
        let response = shared
            .upstreams
            .send(key, PoolSettings::of(&state.cluster), &state.stats, request)
            .await
            .map_err(|e| failed(&e))?;
        let (parts, body) = response.into_parts();
        let collected = body.collect().await.map_err(|e| failed(&e))?;
        let grpc_status = collected
            .trailers()
            .and_then(|t| t.get("grpc-status"))
            .or_else(|| parts.headers.get("grpc-status"))
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        Ok(Answer {
            status: parts.status,
            grpc_status,
        })
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
pub(super) fn http_collector(raw: &HttpService) -> Result<Collector, (String, String)> {
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
