//! MeshConfig `extensionProviders`: the named services Telemetry, AuthorizationPolicy
//! (CUSTOM) and the mesh defaults refer to. Each provider is one of Istio's kinds; the
//! kinds Mizzen has no use for yet are kept by name so that a reference to them fails
//! with a clear message instead of "not found".

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Map, Value};

use crate::types::{Duration, string_enum};

/// One named extension provider.
#[derive(Debug, Clone, PartialEq)]
pub struct ExtensionProvider {
    /// The name Telemetry resources and policies refer to it by (unique in the mesh).
    pub name: String,
    /// What it is.
    pub provider: Provider,
}

/// The kind of an extension provider, with its settings.
#[derive(Debug, Clone, PartialEq)]
pub enum Provider {
    /// An external authorizer spoken to over HTTP (`envoyExtAuthzHttp`).
    EnvoyExtAuthzHttp(ExtAuthzHttp),
    /// An external authorizer spoken to over gRPC (`envoyExtAuthzGrpc`).
    EnvoyExtAuthzGrpc(ExtAuthzGrpc),
    /// Access logs written to a file or stdout (`envoyFileAccessLog`).
    EnvoyFileAccessLog(FileAccessLog),
    /// Access logs sent over OTLP gRPC (`envoyOtelAls`).
    EnvoyOtelAls(OtelAccessLog),
    /// Spans exported over OTLP (`opentelemetry`).
    Opentelemetry(OpenTelemetry),
    /// Spans sent to a Zipkin collector (`zipkin`).
    Zipkin(Zipkin),
    /// Istio's standard metrics, scraped by Prometheus (`prometheus`).
    Prometheus,
    /// A kind Istio knows and Mizzen does not implement.
    Unsupported(UnsupportedKind),
}

/// Provider kinds Istio has and Mizzen does not implement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnsupportedKind {
    /// `skywalking` tracing.
    Skywalking,
    /// `datadog` tracing.
    Datadog,
    /// `stackdriver` metrics, logs and traces.
    Stackdriver,
    /// `lightstep` tracing (deprecated by Istio in favour of OpenTelemetry).
    Lightstep,
    /// `opencensus` tracing (removed from Envoy).
    Opencensus,
    /// `envoyHttpAls` gRPC access log service.
    EnvoyHttpAls,
    /// `envoyTcpAls` gRPC access log service.
    EnvoyTcpAls,
    /// `sds` secret providers.
    Sds,
}

impl UnsupportedKind {
    const ALL: [UnsupportedKind; 8] = [
        Self::Skywalking,
        Self::Datadog,
        Self::Stackdriver,
        Self::Lightstep,
        Self::Opencensus,
        Self::EnvoyHttpAls,
        Self::EnvoyTcpAls,
        Self::Sds,
    ];

    /// The field naming this kind in MeshConfig.
    pub const fn key(self) -> &'static str {
        match self {
            Self::Skywalking => "skywalking",
            Self::Datadog => "datadog",
            Self::Stackdriver => "stackdriver",
            Self::Lightstep => "lightstep",
            Self::Opencensus => "opencensus",
            Self::EnvoyHttpAls => "envoyHttpAls",
            Self::EnvoyTcpAls => "envoyTcpAls",
            Self::Sds => "sds",
        }
    }
}

impl Provider {
    /// The field naming this kind in MeshConfig (`opentelemetry`, `envoyFileAccessLog`…).
    pub const fn key(&self) -> &'static str {
        match self {
            Provider::EnvoyExtAuthzHttp(_) => "envoyExtAuthzHttp",
            Provider::EnvoyExtAuthzGrpc(_) => "envoyExtAuthzGrpc",
            Provider::EnvoyFileAccessLog(_) => "envoyFileAccessLog",
            Provider::EnvoyOtelAls(_) => "envoyOtelAls",
            Provider::Opentelemetry(_) => "opentelemetry",
            Provider::Zipkin(_) => "zipkin",
            Provider::Prometheus => "prometheus",
            Provider::Unsupported(kind) => kind.key(),
        }
    }
}

/// Istio's `EnvoyExternalAuthorizationHttpProvider`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ExtAuthzHttp {
    /// `[NAMESPACE/]HOSTNAME` of the authorizer's service.
    pub service: String,
    /// Its port.
    pub port: u32,
    /// How long a check may take (600s when unset).
    pub timeout: Option<Duration>,
    /// Prepended to the request path of checks; must start with `/`.
    pub path_prefix: String,
    /// Let requests through when the authorizer fails.
    pub fail_open: bool,
    /// The HTTP status sent when the authorizer fails (`"403"`).
    pub status_on_error: String,
    /// Request headers sent in checks (deprecated by `includeRequestHeadersInCheck`).
    pub include_headers_in_check: Vec<String>,
    /// Request headers sent in checks.
    pub include_request_headers_in_check: Vec<String>,
    /// Headers added to every check request.
    pub include_additional_headers_in_check: BTreeMap<String, String>,
    /// Send the request body in checks.
    pub include_request_body_in_check: Option<RequestBody>,
    /// Authorizer response headers copied to the request when allowed.
    pub headers_to_upstream_on_allow: Vec<String>,
    /// Authorizer response headers copied to the response when denied.
    pub headers_to_downstream_on_deny: Vec<String>,
    /// Authorizer response headers copied to the response when allowed.
    pub headers_to_downstream_on_allow: Vec<String>,
}

/// Istio's `EnvoyExternalAuthorizationGrpcProvider`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ExtAuthzGrpc {
    /// `[NAMESPACE/]HOSTNAME` of the authorizer's service.
    pub service: String,
    /// Its port.
    pub port: u32,
    /// How long a check may take (600s when unset).
    pub timeout: Option<Duration>,
    /// Let requests through when the authorizer fails.
    pub fail_open: bool,
    /// The HTTP status sent when the authorizer fails (`"403"`).
    pub status_on_error: String,
    /// Send the request body in checks.
    pub include_request_body_in_check: Option<RequestBody>,
}

/// How much of the request body an authorization check carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct RequestBody {
    /// At most this many bytes.
    pub max_request_bytes: u32,
    /// Send a partial body rather than refuse a larger one.
    pub allow_partial_message: bool,
    /// Send the body as bytes rather than UTF-8 text.
    pub pack_as_bytes: bool,
}

/// Istio's `EnvoyFileAccessLogProvider`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct FileAccessLog {
    /// Where lines go; `/dev/stdout` when empty.
    pub path: String,
    /// The line format; Istio's default text format when unset.
    pub log_format: Option<LogFormat>,
    /// Leave out empty values (text: nothing; JSON: the key).
    pub omit_empty_values: bool,
}

/// An access log format: a text template or JSON labels.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct LogFormat {
    /// A text template of Envoy command operators (a newline is added if missing).
    pub text: Option<String>,
    /// JSON: each key's value is a command operator or a literal.
    pub labels: Option<Map<String, Value>>,
}

/// Istio's `EnvoyOpenTelemetryLogProvider`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct OtelAccessLog {
    /// `[NAMESPACE/]HOSTNAME` of the collector.
    pub service: String,
    /// Its OTLP gRPC port.
    pub port: u32,
    /// The log name reported.
    pub log_name: String,
    /// The body and attributes of each record.
    pub log_format: Option<LogFormat>,
}

/// Istio's `OpenTelemetryTracingProvider`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct OpenTelemetry {
    /// `[NAMESPACE/]HOSTNAME` of the collector.
    pub service: String,
    /// Its OTLP port (gRPC, or HTTP when `http` is set).
    pub port: u32,
    /// The longest path tag recorded; Envoy's default (256) when 0.
    pub max_tag_length: u32,
    /// Export over OTLP/HTTP instead of gRPC.
    pub http: Option<OtlpHttp>,
    /// gRPC export settings.
    pub grpc: Option<OtlpGrpc>,
    /// Resource detectors adding attributes to the exported resource.
    pub resource_detectors: Option<ResourceDetectors>,
}

/// OTLP/HTTP export settings.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct OtlpHttp {
    /// The path spans are POSTed to (`/v1/traces`).
    pub path: String,
    /// How long an export may take.
    pub timeout: Option<Duration>,
    /// Headers added to export requests.
    pub headers: Vec<HttpHeader>,
}

/// OTLP/gRPC export settings.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct OtlpGrpc {
    /// How long an export may take.
    pub timeout: Option<Duration>,
    /// Metadata added to export calls.
    pub initial_metadata: Vec<HttpHeader>,
}

/// A header added to export requests: a fixed value, or read from the environment.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct HttpHeader {
    /// The header name.
    pub name: String,
    /// A fixed value.
    pub value: String,
    /// The environment variable (of pilot) the value is read from, instead.
    pub env_name: String,
}

/// Which resource detectors the OpenTelemetry tracer runs.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ResourceDetectors {
    /// `OTEL_RESOURCE_ATTRIBUTES` of the proxy's environment.
    pub environment: Option<Map<String, Value>>,
    /// Dynatrace's host files.
    pub dynatrace: Option<Map<String, Value>>,
}

/// Istio's `ZipkinTracingProvider`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct Zipkin {
    /// `[NAMESPACE/]HOSTNAME` of the collector.
    pub service: String,
    /// Its port.
    pub port: u32,
    /// The longest path tag recorded; Envoy's default (256) when 0.
    pub max_tag_length: u32,
    /// Use 64-bit trace ids (Istio's default is 128-bit).
    #[serde(rename = "enable64bitTraceId")]
    pub enable_64bit_trace_id: bool,
    /// The collector's endpoint path (`/api/v2/spans`).
    pub path: String,
    /// Which trace headers the proxy reads and writes besides B3.
    pub trace_context_option: TraceContextOption,
}

string_enum! {
    /// `ZipkinTracingProvider.TraceContextOption`: the propagation formats.
    pub enum TraceContextOption {
        /// Istio's default: B3 only.
        Unspecified = "UNSPECIFIED",
        /// B3 only.
        UseB3 = "USE_B3",
        /// B3 and W3C `traceparent`: reads W3C when there is no B3, writes both.
        UseB3WithW3cPropagation = "USE_B3_WITH_W3C_PROPAGATION",
    }
}

/// The kinds a provider entry may hold, by field name.
const KINDS: [&str; 7] = [
    "envoyExtAuthzHttp",
    "envoyExtAuthzGrpc",
    "envoyFileAccessLog",
    "envoyOtelAls",
    "opentelemetry",
    "zipkin",
    "prometheus",
];

impl<'de> Deserialize<'de> for ExtensionProvider {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let mut fields = Map::deserialize(d)?;
        let name = match fields.remove("name") {
            Some(Value::String(name)) => name,
            Some(other) => {
                return Err(serde::de::Error::custom(format!(
                    "name: expected a string, found {other}"
                )));
            }
            None => String::new(),
        };
        let provider = provider_of(fields).map_err(|reason| {
            serde::de::Error::custom(if name.is_empty() {
                reason
            } else {
                format!("provider {name:?}: {reason}")
            })
        })?;
        Ok(ExtensionProvider { name, provider })
    }
}

/// The one provider kind set in `fields`; other fields are ignored, as Istio does for
/// fields it does not know.
fn provider_of(fields: Map<String, Value>) -> Result<Provider, String> {
    let is_kind =
        |key: &str| KINDS.contains(&key) || UnsupportedKind::ALL.iter().any(|k| k.key() == key);
    let mut kinds = fields.into_iter().filter(|(key, _)| is_kind(key));
    let Some((key, value)) = kinds.next() else {
        return Err(format!(
            "no provider kind is set (one of {}, …)",
            KINDS.join(", ")
        ));
    };
    if let Some((second, _)) = kinds.next() {
        return Err(format!(
            "only one provider kind may be set, found {key} and {second}"
        ));
    }
    fn typed<T: serde::de::DeserializeOwned>(key: &str, value: Value) -> Result<T, String> {
        let value = if value.is_null() {
            Value::Object(Map::new())
        } else {
            value
        };
        serde_path_to_error::deserialize(value).map_err(|e| {
            let path = e.path().to_string();
            if path == "." {
                format!("{key}: {}", e.inner())
            } else {
                format!("{key}.{path}: {}", e.inner())
            }
        })
    }
    Ok(match key.as_str() {
        "envoyExtAuthzHttp" => Provider::EnvoyExtAuthzHttp(typed(&key, value)?),
        "envoyExtAuthzGrpc" => Provider::EnvoyExtAuthzGrpc(typed(&key, value)?),
        "envoyFileAccessLog" => Provider::EnvoyFileAccessLog(typed(&key, value)?),
        "envoyOtelAls" => Provider::EnvoyOtelAls(typed(&key, value)?),
        "opentelemetry" => Provider::Opentelemetry(typed(&key, value)?),
        "zipkin" => Provider::Zipkin(typed(&key, value)?),
        "prometheus" => Provider::Prometheus,
        other => Provider::Unsupported(
            *UnsupportedKind::ALL
                .iter()
                .find(|k| k.key() == other)
                .expect("is_kind accepted it"),
        ),
    })
}
