//! Access logging and tracing on the connection managers and TCP proxies of a proxy's
//! listeners, in Istio's shapes (`accesslog.go`, `telemetry_logging.go`, `tracing.go`),
//! from what [`crate::model::telemetry`] resolves for the listener's side.
//!
//! Listener builders stay unaware of telemetry: [`apply`] fills the filters of finished
//! listeners in, once per listener set (the outbound set is built once per scope).

use std::collections::BTreeMap;

use mizzen_api::mesh::{
    AccessLogEncoding, ExtensionProvider, FileAccessLog, HttpHeader, OpenTelemetry, Provider,
    TraceContextOption, Zipkin,
};
use mizzen_api::telemetry::CustomTag;
use mizzen_xds::pb::envoy::config::accesslog::v3::{
    AccessLog as EnvoyAccessLog, AccessLogFilter, ExtensionFilter, access_log, access_log_filter,
    extension_filter,
};
use mizzen_xds::pb::envoy::config::core::v3::{
    DataSource, GrpcService, HeaderValue, HeaderValueOption, HttpService, HttpUri,
    JsonFormatOptions, SubstitutionFormatString, TrafficDirection, data_source, grpc_service,
    header_value_option, http_uri, substitution_format_string,
};
use mizzen_xds::pb::envoy::config::listener::v3::{Filter, Listener, filter};
use mizzen_xds::pb::envoy::config::trace::v3::{
    OpenTelemetryConfig, ZipkinConfig, tracing as trace, zipkin_config,
};
use mizzen_xds::pb::envoy::extensions::access_loggers::file::v3::{
    FileAccessLog as EnvoyFileAccessLog, file_access_log,
};
use mizzen_xds::pb::envoy::extensions::access_loggers::filters::cel::v3::ExpressionFilter;
use mizzen_xds::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, http_connection_manager::Tracing as HcmTracing,
};
use mizzen_xds::pb::envoy::extensions::filters::network::tcp_proxy::v3::TcpProxy;
use mizzen_xds::pb::envoy::r#type::metadata::v3::{
    MetadataKey, MetadataKind, metadata_key, metadata_kind,
};
use mizzen_xds::pb::envoy::r#type::tracing::v3::{CustomTag as EnvoyTag, custom_tag};
use mizzen_xds::pb::envoy::r#type::v3::Percent;
use mizzen_xds::pb::google::protobuf::{self as pbuf, BoolValue, UInt32Value, value::Kind};
use prost::Message;

use crate::model::telemetry::{AccessLog, LogSink, TracingConfig, TrafficSide};
use crate::model::{NodeType, Proxy, PushContext};
use crate::translate::authz::extauthz;
use crate::translate::listener::{HTTP_CONNECTION_MANAGER, TCP_PROXY};
use crate::translate::route::to_any;

/// Istio's default text format for file access logs (`EnvoyTextLogFormat`).
pub const ISTIO_TEXT_FORMAT: &str = "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %CONNECTION_TERMINATION_DETAILS% \"%UPSTREAM_TRANSPORT_FAILURE_REASON%\" %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" \"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\" %UPSTREAM_CLUSTER_RAW% %UPSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS% %DOWNSTREAM_REMOTE_ADDRESS% %REQUESTED_SERVER_NAME% %ROUTE_NAME%\n";

/// Istio's default JSON labels for file access logs (`EnvoyJSONLogFormatIstio`).
const ISTIO_JSON_FORMAT: [(&str, &str); 24] = [
    ("start_time", "%START_TIME%"),
    ("route_name", "%ROUTE_NAME%"),
    ("method", "%REQ(:METHOD)%"),
    ("path", "%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%"),
    ("protocol", "%PROTOCOL%"),
    ("response_code", "%RESPONSE_CODE%"),
    ("response_flags", "%RESPONSE_FLAGS%"),
    ("response_code_details", "%RESPONSE_CODE_DETAILS%"),
    (
        "connection_termination_details",
        "%CONNECTION_TERMINATION_DETAILS%",
    ),
    ("bytes_received", "%BYTES_RECEIVED%"),
    ("bytes_sent", "%BYTES_SENT%"),
    ("duration", "%DURATION%"),
    (
        "upstream_service_time",
        "%RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%",
    ),
    ("x_forwarded_for", "%REQ(X-FORWARDED-FOR)%"),
    ("user_agent", "%REQ(USER-AGENT)%"),
    ("request_id", "%REQ(X-REQUEST-ID)%"),
    ("authority", "%REQ(:AUTHORITY)%"),
    ("upstream_host", "%UPSTREAM_HOST%"),
    ("upstream_cluster", "%UPSTREAM_CLUSTER_RAW%"),
    ("upstream_local_address", "%UPSTREAM_LOCAL_ADDRESS%"),
    ("downstream_local_address", "%DOWNSTREAM_LOCAL_ADDRESS%"),
    ("downstream_remote_address", "%DOWNSTREAM_REMOTE_ADDRESS%"),
    ("requested_server_name", "%REQUESTED_SERVER_NAME%"),
    (
        "upstream_transport_failure_reason",
        "%UPSTREAM_TRANSPORT_FAILURE_REASON%",
    ),
];

const FILE_ACCESS_LOG: &str = "envoy.access_loggers.file";
const CEL_FILTER: &str = "envoy.access_loggers.extension_filters.cel";
const OPENTELEMETRY_TRACER: &str = "envoy.tracers.opentelemetry";
const ZIPKIN_TRACER: &str = "envoy.tracers.zipkin";
/// Where RBAC's shadow (dry-run) results land in request metadata.
const RBAC_FILTER: &str = "envoy.filters.http.rbac";

/// Adds access logs and tracing to the connection managers and TCP proxies of
/// `listeners`, per listener side: inbound listeners are the server, the others the
/// client.
pub fn apply(push: &PushContext, proxy: &Proxy, listeners: &mut [Listener]) {
    let mut built: BTreeMap<bool, Side> = BTreeMap::new();
    for listener in listeners {
        let inbound = listener.traffic_direction == TrafficDirection::Inbound as i32;
        let side = built.entry(inbound).or_insert_with(|| {
            let side = if inbound {
                TrafficSide::Server
            } else {
                TrafficSide::Client
            };
            Side::new(push, proxy, side)
        });
        if side.is_empty() {
            continue;
        }
        for chain in &mut listener.filter_chains {
            for f in &mut chain.filters {
                side.fill(f);
            }
        }
    }
}

/// What one side's filters get.
struct Side {
    access_log: Vec<EnvoyAccessLog>,
    tracing: Option<HcmTracing>,
}

impl Side {
    fn new(push: &PushContext, proxy: &Proxy, side: TrafficSide) -> Side {
        let telemetry = push.telemetry();
        Side {
            access_log: telemetry
                .access_logs(proxy, side)
                .iter()
                .map(|l| access_log(push, l))
                .collect(),
            tracing: telemetry
                .tracing(proxy, side)
                .and_then(|t| tracing(push, proxy, &t)),
        }
    }

    fn is_empty(&self) -> bool {
        self.access_log.is_empty() && self.tracing.is_none()
    }

    fn fill(&self, f: &mut Filter) {
        let Some(filter::ConfigType::TypedConfig(any)) = &mut f.config_type else {
            return;
        };
        if f.name == HTTP_CONNECTION_MANAGER {
            let Ok(mut hcm) = HttpConnectionManager::decode(any.value.as_slice()) else {
                return;
            };
            hcm.access_log.extend(self.access_log.iter().cloned());
            if self.tracing.is_some() {
                hcm.tracing = self.tracing.clone();
            }
            any.value = hcm.encode_to_vec();
        } else if f.name == TCP_PROXY && !self.access_log.is_empty() {
            let Ok(mut tcp) = TcpProxy::decode(any.value.as_slice()) else {
                return;
            };
            tcp.access_log.extend(self.access_log.iter().cloned());
            any.value = tcp.encode_to_vec();
        }
    }
}

/// One `access_log` entry: the file logger, behind the CEL filter when Telemetry set one.
fn access_log(push: &PushContext, log: &AccessLog) -> EnvoyAccessLog {
    let config = match &log.sink {
        LogSink::MeshFormat { path } => mesh_file_log(push, path),
        LogSink::File(file) => provider_file_log(file),
    };
    EnvoyAccessLog {
        name: FILE_ACCESS_LOG.to_owned(),
        filter: log.filter.as_ref().map(|expression| cel_filter(expression)),
        config_type: Some(access_log::ConfigType::TypedConfig(to_any(&config))),
    }
}

/// Istio's `FileAccessLogFromMeshConfig`: the mesh's encoding and format.
fn mesh_file_log(push: &PushContext, path: &str) -> EnvoyFileAccessLog {
    let mesh = &push.mesh;
    let format = match mesh.access_log_encoding {
        AccessLogEncoding::Text => text_format(&mesh.access_log_format, false),
        AccessLogEncoding::Json => {
            // Istio falls back to its default labels when the format is not JSON.
            let labels = serde_json::from_str::<serde_json::Map<_, _>>(&mesh.access_log_format)
                .ok()
                .filter(|_| !mesh.access_log_format.is_empty());
            json_format(labels.as_ref(), false)
        }
    };
    file_log(path, format)
}

/// Istio's `fileAccessLogFromTelemetry`: the provider's own format.
fn provider_file_log(file: &FileAccessLog) -> EnvoyFileAccessLog {
    let path = if file.path.is_empty() {
        "/dev/stdout"
    } else {
        &file.path
    };
    let format = match &file.log_format {
        Some(f) if f.labels.is_some() => json_format(f.labels.as_ref(), file.omit_empty_values),
        Some(f) => text_format(
            f.text.as_deref().unwrap_or_default(),
            file.omit_empty_values,
        ),
        None => text_format("", file.omit_empty_values),
    };
    file_log(path, format)
}

fn file_log(path: &str, format: SubstitutionFormatString) -> EnvoyFileAccessLog {
    EnvoyFileAccessLog {
        path: path.to_owned(),
        access_log_format: Some(file_access_log::AccessLogFormat::LogFormat(format)),
    }
}

/// A text format; Istio's default when empty, a newline added when missing.
fn text_format(text: &str, omit_empty_values: bool) -> SubstitutionFormatString {
    let text = match text {
        "" => ISTIO_TEXT_FORMAT.to_owned(),
        t if t.ends_with('\n') => t.to_owned(),
        t => format!("{t}\n"),
    };
    SubstitutionFormatString {
        format: Some(substitution_format_string::Format::TextFormatSource(
            DataSource {
                specifier: Some(data_source::Specifier::InlineString(text)),
                ..DataSource::default()
            },
        )),
        omit_empty_values,
        ..SubstitutionFormatString::default()
    }
}

/// A JSON format of `labels`; Istio's default labels when none are given.
fn json_format(
    labels: Option<&serde_json::Map<String, serde_json::Value>>,
    omit_empty_values: bool,
) -> SubstitutionFormatString {
    let fields = match labels {
        Some(labels) if !labels.is_empty() => labels
            .iter()
            .map(|(k, v)| (k.clone(), proto_value(v)))
            .collect(),
        _ => ISTIO_JSON_FORMAT
            .iter()
            .map(|(k, v)| (k.to_string(), proto_value(&serde_json::json!(v))))
            .collect(),
    };
    SubstitutionFormatString {
        format: Some(substitution_format_string::Format::JsonFormat(
            pbuf::Struct { fields },
        )),
        // Istio sets `sort_properties: false`, the default: an empty message.
        json_format_options: Some(JsonFormatOptions::default()),
        omit_empty_values,
        ..SubstitutionFormatString::default()
    }
}

fn proto_value(v: &serde_json::Value) -> pbuf::Value {
    use serde_json::Value as J;
    let kind = match v {
        J::Null => Kind::NullValue(0),
        J::Bool(b) => Kind::BoolValue(*b),
        J::Number(n) => Kind::NumberValue(n.as_f64().unwrap_or_default()),
        J::String(s) => Kind::StringValue(s.clone()),
        J::Array(items) => Kind::ListValue(pbuf::ListValue {
            values: items.iter().map(proto_value).collect(),
        }),
        J::Object(fields) => Kind::StructValue(pbuf::Struct {
            fields: fields
                .iter()
                .map(|(k, v)| (k.clone(), proto_value(v)))
                .collect(),
        }),
    };
    pbuf::Value { kind: Some(kind) }
}

/// Istio's `buildAccessLogFilterFromTelemetry`: Envoy's CEL extension filter.
fn cel_filter(expression: &str) -> AccessLogFilter {
    let cel = ExpressionFilter {
        expression: expression.to_owned(),
        ..ExpressionFilter::default()
    };
    AccessLogFilter {
        filter_specifier: Some(access_log_filter::FilterSpecifier::ExtensionFilter(
            ExtensionFilter {
                name: CEL_FILTER.to_owned(),
                config_type: Some(extension_filter::ConfigType::TypedConfig(to_any(&cel))),
            },
        )),
    }
}

/// The connection manager's `tracing` (Istio's `configureTracingFromTelemetry`), or
/// `None` when the provider's collector is not in the registry (logged).
fn tracing(push: &PushContext, proxy: &Proxy, config: &TracingConfig) -> Option<HcmTracing> {
    let mut out = HcmTracing::default();
    if let Some(provider) = &config.provider {
        match tracer(push, proxy, provider) {
            Ok((tracer, max_tag_length)) => {
                out.provider = Some(tracer);
                out.max_path_tag_length = (max_tag_length != 0).then_some(UInt32Value {
                    value: max_tag_length,
                });
            }
            Err(reason) => {
                tracing::warn!(provider = %provider.name, %reason, "tracing provider not configured");
                return None;
            }
        }
        // Istio's PILOT_SPAWN_UPSTREAM_SPAN_FOR_GATEWAY (on): a gateway's hop to its
        // upstream is a span of its own.
        if proxy.node_type == NodeType::Router {
            out.spawn_upstream_span = Some(BoolValue { value: true });
        }
    }
    let percent = |value| Some(Percent { value });
    out.client_sampling = percent(100.0);
    out.random_sampling = percent(config.sampling);
    out.overall_sampling = percent(100.0);
    let mut tags = Vec::new();
    if config.istio_tags {
        tags.extend(istio_tags(push, proxy));
    }
    tags.extend(
        config
            .custom_tags
            .iter()
            .filter_map(|(name, tag)| custom_tag(name, tag)),
    );
    tags.sort_by(|a, b| a.tag.cmp(&b.tag));
    out.custom_tags = tags;
    if out.max_path_tag_length.is_none()
        && let Some(len) = push
            .mesh
            .default_config
            .tracing
            .as_ref()
            .map(|t| t.max_path_tag_length)
            .filter(|l| *l != 0)
    {
        out.max_path_tag_length = Some(UInt32Value { value: len });
    }
    Some(out)
}

/// The tracer of a tracing provider and its `maxTagLength`.
fn tracer(
    push: &PushContext,
    proxy: &Proxy,
    provider: &ExtensionProvider,
) -> Result<(trace::Http, u32), String> {
    let (name, config, max_tag_length) = match &provider.provider {
        Provider::Opentelemetry(otel) => (
            OPENTELEMETRY_TRACER,
            to_any(&opentelemetry(push, proxy, otel)?),
            otel.max_tag_length,
        ),
        Provider::Zipkin(zipkin) => (
            ZIPKIN_TRACER,
            to_any(&self::zipkin(push, zipkin)?),
            zipkin.max_tag_length,
        ),
        other => return Err(format!("a {} provider does not trace", other.key())),
    };
    Ok((
        trace::Http {
            name: name.to_owned(),
            config_type: Some(trace::http::ConfigType::TypedConfig(config)),
        },
        max_tag_length,
    ))
}

/// The collector's hostname and outbound cluster (Istio's `LookupCluster`).
fn collector(push: &PushContext, service: &str, port: u32) -> Result<(String, String), String> {
    let port = u16::try_from(port).map_err(|_| format!("port {port} is out of range"))?;
    extauthz::service(&push.registry, service, port).map_err(|r| format!("service: {r}"))
}

/// Istio's `otelConfig`: gRPC export to the collector's cluster, or HTTP when `http`
/// is set; the service name is the workload's `canonical-service.namespace`.
fn opentelemetry(
    push: &PushContext,
    proxy: &Proxy,
    otel: &OpenTelemetry,
) -> Result<OpenTelemetryConfig, String> {
    let (hostname, cluster) = collector(push, &otel.service, otel.port)?;
    let mut config = OpenTelemetryConfig {
        service_name: format!("{}.{}", canonical(proxy).0, proxy.namespace),
        ..OpenTelemetryConfig::default()
    };
    match &otel.http {
        Some(http) => {
            let path = http.path.trim_start_matches('/');
            config.http_service = Some(HttpService {
                http_uri: Some(HttpUri {
                    uri: format!("{hostname}/{path}"),
                    timeout: http.timeout.map(duration),
                    http_upstream_type: Some(http_uri::HttpUpstreamType::Cluster(cluster)),
                }),
                request_headers_to_add: http
                    .headers
                    .iter()
                    .map(|h| HeaderValueOption {
                        header: Some(header(h)),
                        append_action:
                            header_value_option::HeaderAppendAction::OverwriteIfExistsOrAdd as i32,
                        ..HeaderValueOption::default()
                    })
                    .collect(),
                ..HttpService::default()
            });
        }
        None => {
            let grpc = otel.grpc.clone().unwrap_or_default();
            config.grpc_service = Some(GrpcService {
                target_specifier: Some(grpc_service::TargetSpecifier::EnvoyGrpc(
                    grpc_service::EnvoyGrpc {
                        cluster_name: cluster,
                        authority: hostname,
                        ..grpc_service::EnvoyGrpc::default()
                    },
                )),
                timeout: grpc.timeout.map(duration),
                initial_metadata: grpc.initial_metadata.iter().map(header).collect(),
                ..GrpcService::default()
            });
        }
    }
    Ok(config)
}

/// Istio's `zipkinConfig`: JSON v2 spans, 128-bit trace ids unless told otherwise.
fn zipkin(push: &PushContext, zipkin: &Zipkin) -> Result<ZipkinConfig, String> {
    let (hostname, cluster) = collector(push, &zipkin.service, zipkin.port)?;
    Ok(ZipkinConfig {
        collector_cluster: cluster,
        collector_endpoint: if zipkin.path.is_empty() {
            "/api/v2/spans".to_owned()
        } else {
            zipkin.path.clone()
        },
        collector_endpoint_version: zipkin_config::CollectorEndpointVersion::HttpJson as i32,
        collector_hostname: hostname,
        trace_id_128bit: !zipkin.enable_64bit_trace_id,
        shared_span_context: Some(BoolValue { value: false }),
        trace_context_option: match zipkin.trace_context_option {
            TraceContextOption::UseB3WithW3cPropagation => {
                zipkin_config::TraceContextOption::UseB3WithW3cPropagation
            }
            TraceContextOption::Unspecified | TraceContextOption::UseB3 => {
                zipkin_config::TraceContextOption::UseB3
            }
        } as i32,
        ..ZipkinConfig::default()
    })
}

/// A header with its value, read from pilot's environment for `envName`.
fn header(h: &HttpHeader) -> HeaderValue {
    let value = if h.env_name.is_empty() {
        h.value.clone()
    } else {
        std::env::var(&h.env_name).unwrap_or_default()
    };
    HeaderValue {
        key: h.name.clone(),
        value,
        ..HeaderValue::default()
    }
}

fn duration(d: mizzen_api::types::Duration) -> pbuf::Duration {
    let d = d.get();
    pbuf::Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or_default(),
    }
}

/// The workload's canonical service and revision, with the injector's fallbacks.
fn canonical(proxy: &Proxy) -> (String, String) {
    let label = |keys: &[&str]| keys.iter().find_map(|k| proxy.labels.get(*k).cloned());
    let service = label(&[
        "service.istio.io/canonical-name",
        "app.kubernetes.io/name",
        "app",
    ])
    .unwrap_or_else(|| proxy.name.clone());
    let revision = label(&[
        "service.istio.io/canonical-revision",
        "app.kubernetes.io/version",
        "version",
    ])
    .unwrap_or_else(|| "latest".to_owned());
    (service, revision)
}

/// Istio's `buildServiceTags` and the authorization dry-run tags.
fn istio_tags(push: &PushContext, proxy: &Proxy) -> Vec<EnvoyTag> {
    let (service, revision) = canonical(proxy);
    let or_unknown = |s: &str| {
        if s.is_empty() {
            "unknown".to_owned()
        } else {
            s.to_owned()
        }
    };
    let literal = |tag: &str, value: String| EnvoyTag {
        tag: tag.to_owned(),
        r#type: Some(custom_tag::Type::Literal(custom_tag::Literal { value })),
    };
    let dry_run = |tag: &str, key: &str| EnvoyTag {
        tag: tag.to_owned(),
        r#type: Some(custom_tag::Type::Metadata(custom_tag::Metadata {
            kind: Some(MetadataKind {
                kind: Some(metadata_kind::Kind::Request(metadata_kind::Request {})),
            }),
            metadata_key: Some(MetadataKey {
                key: RBAC_FILTER.to_owned(),
                path: vec![metadata_key::PathSegment {
                    segment: Some(metadata_key::path_segment::Segment::Key(key.to_owned())),
                }],
            }),
            ..custom_tag::Metadata::default()
        })),
    };
    vec![
        dry_run(
            "istio.authorization.dry_run.allow_policy.name",
            "istio_dry_run_allow_shadow_effective_policy_id",
        ),
        dry_run(
            "istio.authorization.dry_run.allow_policy.result",
            "istio_dry_run_allow_shadow_engine_result",
        ),
        dry_run(
            "istio.authorization.dry_run.deny_policy.name",
            "istio_dry_run_deny_shadow_effective_policy_id",
        ),
        dry_run(
            "istio.authorization.dry_run.deny_policy.result",
            "istio_dry_run_deny_shadow_engine_result",
        ),
        literal("istio.canonical_revision", revision),
        literal("istio.canonical_service", service),
        literal("istio.cluster_id", or_unknown(&proxy.cluster_id)),
        literal("istio.mesh_id", or_unknown(push.mesh.mesh_id())),
        literal(
            "istio.namespace",
            if proxy.namespace.is_empty() {
                "default".to_owned()
            } else {
                proxy.namespace.clone()
            },
        ),
    ]
}

/// A Telemetry custom tag as Envoy's; formatter tags have no Envoy equivalent on the
/// connection manager and are left out, as Istio does.
fn custom_tag(name: &str, tag: &CustomTag) -> Option<EnvoyTag> {
    let r#type = match tag {
        CustomTag::Literal(l) => custom_tag::Type::Literal(custom_tag::Literal {
            value: l.value.clone(),
        }),
        CustomTag::Environment(e) => custom_tag::Type::Environment(custom_tag::Environment {
            name: e.name.clone(),
            default_value: e.default_value.clone(),
        }),
        CustomTag::Header(h) => custom_tag::Type::RequestHeader(custom_tag::Header {
            name: h.name.clone(),
            default_value: h.default_value.clone(),
        }),
        CustomTag::Formatter(_) | CustomTag::Unset => return None,
    };
    Some(EnvoyTag {
        tag: name.to_owned(),
        r#type: Some(r#type),
    })
}

#[cfg(test)]
mod tests;
