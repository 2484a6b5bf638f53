//! Istio's MeshConfig: mesh-wide settings, as a user writes them in the `mesh` key of
//! the `istio` ConfigMap (or a file). Unset fields take Istio's defaults; fields Mizzen
//! does not know are kept, not refused, since Istio is lenient here too.

mod provider;

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use crate::telemetry::CustomTag;
use crate::types::string_enum;
use crate::{Object, ObjectKey};

pub use provider::{
    ExtAuthzGrpc, ExtAuthzHttp, ExtensionProvider, FileAccessLog, HttpHeader, LogFormat,
    OpenTelemetry, OtelAccessLog, OtlpGrpc, OtlpHttp, Provider, RequestBody, ResourceDetectors,
    TraceContextOption, UnsupportedKind, Zipkin,
};

/// The ConfigMap holding MeshConfig, in the root namespace.
pub const CONFIG_MAP: &str = "istio";
/// The key of that ConfigMap's `data` holding MeshConfig YAML.
pub const CONFIG_MAP_KEY: &str = "mesh";
/// The built-in access log provider Istio adds: a file provider writing to stdout.
pub const ENVOY_PROVIDER: &str = "envoy";
/// The built-in metrics provider Istio adds and enables by default.
pub const PROMETHEUS_PROVIDER: &str = "prometheus";
/// Sampling when neither Telemetry nor `defaultConfig.tracing.sampling` set one
/// (Istio's `PILOT_TRACE_SAMPLING` default), in percent.
pub const DEFAULT_TRACE_SAMPLING: f64 = 1.0;

/// A MeshConfig or MeshNetworks document that could not be used.
#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    /// The file could not be read.
    #[error("reading {}: {source}", path.display())]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The text is not a MeshConfig.
    #[error("{what}: {field}: {reason}")]
    Parse {
        /// `mesh config`, and where it came from.
        what: String,
        /// The field at fault (`.` for the document).
        field: String,
        /// Why.
        reason: String,
    },
    /// A field has a value Istio refuses.
    #[error("{what}: {}", problems.iter().map(|(f, r)| format!("{f}: {r}")).collect::<Vec<_>>().join("; "))]
    Invalid {
        /// `mesh config`, and where it came from.
        what: String,
        /// Each field at fault and why.
        problems: Vec<(String, String)>,
    },
}

impl MeshError {
    /// The same error, saying where the document came from (`mesh config FILE`).
    pub fn from_source(self, source: &str) -> MeshError {
        match self {
            MeshError::Parse {
                what,
                field,
                reason,
            } => MeshError::Parse {
                what: format!("{what} {source}"),
                field,
                reason,
            },
            MeshError::Invalid { what, problems } => MeshError::Invalid {
                what: format!("{what} {source}"),
                problems,
            },
            io => io,
        }
    }
}

string_enum! {
    /// How the built-in file access log encodes lines (`accessLogEncoding`).
    pub enum AccessLogEncoding {
        /// Envoy's text format.
        Text = "TEXT",
        /// One JSON object per line.
        Json = "JSON",
    }
}

string_enum! {
    /// Where traffic to unknown destinations goes (`outboundTrafficPolicy.mode`).
    pub enum OutboundTrafficMode {
        /// Refused: only services in the registry are reachable.
        RegistryOnly = "REGISTRY_ONLY",
        /// Passed through to its original destination (the mesh default).
        AllowAny = "ALLOW_ANY",
    }
}

string_enum! {
    /// How Istio treats Kubernetes Ingress objects (`ingressControllerMode`).
    pub enum IngressControllerMode {
        /// Only Ingress objects of Istio's class are handled.
        Strict = "STRICT",
        /// Ingress objects are ignored: no default ingress gateway exists.
        Off = "OFF",
        /// Ingress objects of Istio's class or of no class are handled.
        Default = "DEFAULT",
    }
}

/// Mesh-wide settings (Istio's `MeshConfig`), with Istio's defaults for what is unset.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct MeshConfig {
    /// The namespace whose config applies mesh-wide (`istio-system`).
    pub root_namespace: String,
    /// The SPIFFE trust domain (`cluster.local`).
    pub trust_domain: String,
    /// Other trust domains whose identities count as this one's, for authorization
    /// during a trust domain migration.
    pub trust_domain_aliases: Vec<String>,
    /// Clients use mTLS to endpoints whose workloads have a proxy without being told
    /// (on by default).
    pub enable_auto_mtls: bool,
    /// The built-in access log's file; empty turns it off (the default).
    pub access_log_file: String,
    /// The built-in access log's encoding (TEXT).
    pub access_log_encoding: AccessLogEncoding,
    /// The built-in access log's format: a text template, or a JSON object of labels
    /// for JSON; Istio's default format when empty.
    pub access_log_format: String,
    /// Trace context handling in the connection managers when no Telemetry configures
    /// tracing (on by default).
    pub enable_tracing: bool,
    /// Defaults for every proxy (Istio's `ProxyConfig`).
    pub default_config: ProxyConfig,
    /// The providers used when Telemetry resources name none.
    pub default_providers: DefaultProviders,
    /// The named providers Telemetry, policies and defaults refer to.
    pub extension_providers: Vec<ExtensionProvider>,
    /// Where traffic to unknown destinations goes.
    pub outbound_traffic_policy: OutboundTrafficPolicy,
    /// The Service of the ingress gateway (`istio-ingressgateway`).
    pub ingress_service: String,
    /// Which Kubernetes Ingress objects are handled (STRICT).
    pub ingress_controller_mode: IngressControllerMode,
    /// Every other field, as written.
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

/// Defaults for every proxy (the `defaultConfig` field).
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ProxyConfig {
    /// The mesh's id, in span tags and peer metadata; the trust domain when empty.
    pub mesh_id: String,
    /// Tracing defaults.
    pub tracing: Option<ProxyTracing>,
    /// Environment given to every proxy.
    pub proxy_metadata: BTreeMap<String, String>,
    /// The proxy image variant.
    pub image: Option<ProxyImage>,
    /// Every other field, as written.
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

/// `defaultConfig.tracing`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ProxyTracing {
    /// Percentage of requests sampled (0–100); 0 means Istio's default (1%).
    pub sampling: f64,
    /// Tags added to spans when Telemetry sets none.
    pub custom_tags: BTreeMap<String, CustomTag>,
    /// The longest path tag recorded.
    pub max_path_tag_length: u32,
    /// Add Istio's own tags (`istio.canonical_service`…) to spans (default on).
    pub enable_istio_tags: Option<bool>,
    /// Every other field (the legacy tracer settings), as written.
    #[serde(flatten)]
    pub other: BTreeMap<String, Value>,
}

/// `defaultConfig.image`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct ProxyImage {
    /// The variant (`distroless`, `debug`).
    pub image_type: String,
}

/// `defaultProviders`: provider names per signal.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct DefaultProviders {
    /// For metrics (`prometheus`).
    pub metrics: Vec<String>,
    /// For tracing (none).
    pub tracing: Vec<String>,
    /// For access logs (none).
    pub access_logging: Vec<String>,
}

impl Default for DefaultProviders {
    fn default() -> Self {
        Self {
            metrics: vec![PROMETHEUS_PROVIDER.to_owned()],
            tracing: Vec::new(),
            access_logging: Vec::new(),
        }
    }
}

/// `outboundTrafficPolicy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase", default)]
pub struct OutboundTrafficPolicy {
    /// ALLOW_ANY (the default) or REGISTRY_ONLY.
    pub mode: OutboundTrafficMode,
}

impl Default for OutboundTrafficPolicy {
    fn default() -> Self {
        Self {
            mode: OutboundTrafficMode::AllowAny,
        }
    }
}

impl Default for MeshConfig {
    fn default() -> Self {
        Self {
            root_namespace: "istio-system".into(),
            trust_domain: "cluster.local".into(),
            trust_domain_aliases: Vec::new(),
            enable_auto_mtls: true,
            access_log_file: String::new(),
            access_log_encoding: AccessLogEncoding::Text,
            access_log_format: String::new(),
            enable_tracing: true,
            default_config: ProxyConfig::default(),
            default_providers: DefaultProviders::default(),
            extension_providers: Vec::new(),
            outbound_traffic_policy: OutboundTrafficPolicy::default(),
            ingress_service: "istio-ingressgateway".into(),
            ingress_controller_mode: IngressControllerMode::Strict,
            other: BTreeMap::new(),
        }
        .with_builtin_providers()
    }
}

impl MeshConfig {
    /// Parses and validates MeshConfig YAML; unset fields keep Istio's defaults.
    pub fn from_yaml(text: &str) -> Result<Self, MeshError> {
        let what = || "mesh config".to_owned();
        let value: Value = serde_yaml_ng::from_str(text).map_err(|e| MeshError::Parse {
            what: what(),
            field: ".".into(),
            reason: e.to_string(),
        })?;
        let value = match value {
            Value::Null => Value::Object(Default::default()),
            v => v,
        };
        let mesh: MeshConfig =
            serde_path_to_error::deserialize(value).map_err(|e| MeshError::Parse {
                what: what(),
                field: e.path().to_string(),
                reason: e.inner().to_string(),
            })?;
        let mesh = mesh.with_builtin_providers();
        let problems = mesh.problems();
        if problems.is_empty() {
            Ok(mesh)
        } else {
            Err(MeshError::Invalid {
                what: what(),
                problems,
            })
        }
    }

    /// Reads MeshConfig from a YAML file.
    pub fn from_file(path: &Path) -> Result<Self, MeshError> {
        let text = std::fs::read_to_string(path).map_err(|source| MeshError::Io {
            path: path.to_owned(),
            source,
        })?;
        Self::from_yaml(&text).map_err(|e| e.from_source(&path.display().to_string()))
    }

    /// The key of the `istio` ConfigMap in `root_namespace`.
    pub fn config_map_key(root_namespace: &str) -> ObjectKey {
        ObjectKey {
            kind: "ConfigMap".into(),
            namespace: root_namespace.to_owned(),
            name: CONFIG_MAP.to_owned(),
        }
    }

    /// Reads MeshConfig from an `istio` ConfigMap's `data.mesh`; `None` when `object`
    /// is not a ConfigMap with that key.
    pub fn from_config_map(object: &Object) -> Option<Result<Self, MeshError>> {
        let Object::Other(map) = object else {
            return None;
        };
        if map.kind != "ConfigMap" {
            return None;
        }
        let text = map.rest.get("data")?.get(CONFIG_MAP_KEY)?.as_str()?;
        let source = format!(
            "ConfigMap {}/{}",
            map.metadata.namespace.as_deref().unwrap_or_default(),
            map.metadata.name.as_deref().unwrap_or_default()
        );
        Some(Self::from_yaml(text).map_err(|e| e.from_source(&source)))
    }

    /// The provider named `name` (case-insensitive, as Istio matches them).
    pub fn provider(&self, name: &str) -> Option<&ExtensionProvider> {
        self.extension_providers
            .iter()
            .find(|p| p.name.eq_ignore_ascii_case(name))
    }

    /// The mesh id in span tags: `defaultConfig.meshId`, else the trust domain.
    pub fn mesh_id(&self) -> &str {
        if self.default_config.mesh_id.is_empty() {
            &self.trust_domain
        } else {
            &self.default_config.mesh_id
        }
    }

    /// The default sampling percentage: `defaultConfig.tracing.sampling` when set
    /// (values above 100 read as 1, as in Istio), else 1%.
    pub fn default_sampling(&self) -> f64 {
        match self.default_config.tracing.as_ref().map(|t| t.sampling) {
            Some(s) if s > 100.0 => 1.0,
            Some(s) if s > 0.0 => s,
            _ => DEFAULT_TRACE_SAMPLING,
        }
    }

    /// Istio adds `prometheus`, `stackdriver` and `envoy` (a file provider writing to
    /// stdout) to the declared providers, unless one of that name is declared.
    fn with_builtin_providers(mut self) -> Self {
        let builtins = [
            (PROMETHEUS_PROVIDER, Provider::Prometheus),
            (
                "stackdriver",
                Provider::Unsupported(UnsupportedKind::Stackdriver),
            ),
            (
                ENVOY_PROVIDER,
                Provider::EnvoyFileAccessLog(FileAccessLog {
                    path: "/dev/stdout".into(),
                    ..FileAccessLog::default()
                }),
            ),
        ];
        for (name, provider) in builtins {
            if self.provider(name).is_none() {
                self.extension_providers.push(ExtensionProvider {
                    name: name.to_owned(),
                    provider,
                });
            }
        }
        self
    }

    /// Istio's MeshConfig validation: each field at fault and why.
    fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut problem = |field: String, reason: &str| out.push((field, reason.to_owned()));
        if self.root_namespace.is_empty() {
            problem("rootNamespace".into(), "must not be empty");
        }
        if self.trust_domain.is_empty() {
            problem("trustDomain".into(), "must not be empty");
        }
        for (i, alias) in self.trust_domain_aliases.iter().enumerate() {
            if alias.is_empty() {
                problem(format!("trustDomainAliases[{i}]"), "must not be empty");
            }
        }
        if let Some(t) = &self.default_config.tracing
            && !(0.0..=100.0).contains(&t.sampling)
        {
            problem(
                "defaultConfig.tracing.sampling".into(),
                "must be between 0.0 and 100.0",
            );
        }
        let mut seen = std::collections::HashSet::new();
        for (i, p) in self.extension_providers.iter().enumerate() {
            let at = |field: &str| format!("extensionProviders[{i}]{field}");
            if p.name.is_empty() {
                problem(at(".name"), "must not be empty");
            } else if !seen.insert(p.name.to_ascii_lowercase()) {
                problem(
                    at(".name"),
                    &format!("duplicate provider name {:?}", p.name),
                );
            }
            let service = match &p.provider {
                Provider::EnvoyExtAuthzHttp(c) => Some((&c.service, c.port)),
                Provider::EnvoyExtAuthzGrpc(c) => Some((&c.service, c.port)),
                Provider::EnvoyOtelAls(c) => Some((&c.service, c.port)),
                Provider::Opentelemetry(c) => Some((&c.service, c.port)),
                Provider::Zipkin(c) => Some((&c.service, c.port)),
                _ => None,
            };
            if let Some((service, port)) = service {
                let key = p.provider.key();
                if service.is_empty() {
                    problem(at(&format!(".{key}.service")), "must not be empty");
                }
                if !(1..=65535).contains(&port) {
                    problem(
                        at(&format!(".{key}.port")),
                        &format!("must be between 1 and 65535, found {port}"),
                    );
                }
            }
            if let Provider::Opentelemetry(OpenTelemetry {
                http: Some(http), ..
            }) = &p.provider
            {
                for (j, h) in http.headers.iter().enumerate() {
                    if h.name.is_empty() {
                        problem(
                            at(&format!(".opentelemetry.http.headers[{j}].name")),
                            "must not be empty",
                        );
                    }
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests;
