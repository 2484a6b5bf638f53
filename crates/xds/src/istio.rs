//! The configs of istio-proxy's own filters, which Envoy's types lack: Istio's
//! `istio.stats` (`stats.PluginConfig`) and `istio.metadata_exchange`
//! (`io.istio.http.peer_metadata.Config` in HTTP chains,
//! `envoy.tcp.metadataexchange.config.MetadataExchange` in TCP ones), and the
//! `TypedStruct` Istio often wraps them in. Pilot writes them and the proxy reads them;
//! `build.rs` gives the JSON mapping the same schema.

use std::collections::HashMap;

use crate::pb::google::protobuf::{Duration, Struct};

/// `stats.PluginConfig`: what Istio's stats filter records.
#[derive(Clone, PartialEq, prost::Message)]
pub struct PluginConfig {
    /// Do not fall back to the `Host` header for `destination_service` (inbound and
    /// gateway chains, where the header comes from outside the mesh).
    #[prost(bool, tag = "6")]
    pub disable_host_header_fallback: bool,
    /// How often long TCP connections report.
    #[prost(message, optional, tag = "7")]
    pub tcp_reporting_duration: Option<Duration>,
    /// Overrides of the standard metrics (by name without `istio_`) or of all of them.
    #[prost(message, repeated, tag = "8")]
    pub metrics: Vec<MetricConfig>,
    /// Custom metrics.
    #[prost(message, repeated, tag = "9")]
    pub definitions: Vec<MetricDefinition>,
    /// Who reports: by the listener's direction, or always as a server gateway.
    #[prost(enumeration = "StatsReporter", tag = "10")]
    pub reporter: i32,
    /// How often unused series are dropped.
    #[prost(message, optional, tag = "11")]
    pub rescoping_duration: Option<Duration>,
    /// How long a dropped series lingers.
    #[prost(message, optional, tag = "12")]
    pub scope_grace_period_duration: Option<Duration>,
}

impl prost::Name for PluginConfig {
    const NAME: &'static str = "PluginConfig";
    const PACKAGE: &'static str = "stats";

    fn type_url() -> String {
        format!("type.googleapis.com/{}", Self::full_name())
    }
}

/// `stats.MetricConfig`: an override of one metric (`name`) or of all (empty `name`).
#[derive(Clone, PartialEq, prost::Message)]
pub struct MetricConfig {
    /// Labels to add or replace, each a CEL expression.
    #[prost(map = "string, string", tag = "1")]
    pub dimensions: HashMap<String, String>,
    /// The metric, without the `istio_` prefix (`requests_total`); empty for all.
    #[prost(string, tag = "2")]
    pub name: String,
    /// Labels to drop.
    #[prost(string, repeated, tag = "3")]
    pub tags_to_remove: Vec<String>,
    /// Unimplemented in Istio: a condition for the override.
    #[prost(string, tag = "4")]
    pub r#match: String,
    /// Do not record the metric at all.
    #[prost(bool, tag = "5")]
    pub drop: bool,
}

/// `stats.MetricDefinition`: a custom metric.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MetricDefinition {
    /// Its name.
    #[prost(string, tag = "1")]
    pub name: String,
    /// Its value, a CEL expression.
    #[prost(string, tag = "2")]
    pub value: String,
    /// Counter, gauge or histogram.
    #[prost(int32, tag = "3")]
    pub r#type: i32,
}

/// `stats.Reporter`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
pub enum StatsReporter {
    /// By the listener's direction: inbound reports as the destination.
    Unspecified = 0,
    /// A shared server gateway (a waypoint).
    ServerGateway = 1,
}

/// `envoy.tcp.metadataexchange.config.MetadataExchange`: the TCP metadata exchange.
#[derive(Clone, PartialEq, prost::Message)]
pub struct MetadataExchange {
    /// The ALPN protocol of the in-band exchange (`istio-peer-exchange`).
    #[prost(string, tag = "1")]
    pub protocol: String,
    /// Also look peers up among the workloads the proxy knows.
    #[prost(bool, tag = "2")]
    pub enable_discovery: bool,
    /// Extra peer labels to carry.
    #[prost(string, repeated, tag = "3")]
    pub additional_labels: Vec<String>,
}

impl prost::Name for MetadataExchange {
    const NAME: &'static str = "MetadataExchange";
    const PACKAGE: &'static str = "envoy.tcp.metadataexchange.config";

    fn type_url() -> String {
        format!("type.googleapis.com/{}", Self::full_name())
    }
}

/// `io.istio.http.peer_metadata.Config`'s type URL, the HTTP metadata exchange (always a
/// `TypedStruct` in Istio's config: its fields are read from there).
pub const PEER_METADATA_TYPE_URL: &str = "type.googleapis.com/io.istio.http.peer_metadata.Config";

/// `udpa.type.v1.TypedStruct` (and `xds.type.v3.TypedStruct`, the same message): a
/// config whose type the sender has no proto for, as a JSON-like `Struct`.
#[derive(Clone, PartialEq, prost::Message)]
pub struct TypedStruct {
    /// The config's type.
    #[prost(string, tag = "1")]
    pub type_url: String,
    /// The config.
    #[prost(message, optional, tag = "2")]
    pub value: Option<Struct>,
}

impl prost::Name for TypedStruct {
    const NAME: &'static str = "TypedStruct";
    const PACKAGE: &'static str = "udpa.type.v1";

    fn type_url() -> String {
        format!("type.googleapis.com/{}", Self::full_name())
    }
}

/// The standard metrics' names in a `MetricConfig` (Istio's `metricToPrometheusMetric`),
/// by the Telemetry API's names for them.
pub const STANDARD_METRICS: [(&str, &str); 8] = [
    ("REQUEST_COUNT", "requests_total"),
    ("REQUEST_DURATION", "request_duration_milliseconds"),
    ("REQUEST_SIZE", "request_bytes"),
    ("RESPONSE_SIZE", "response_bytes"),
    ("TCP_OPENED_CONNECTIONS", "tcp_connections_opened_total"),
    ("TCP_CLOSED_CONNECTIONS", "tcp_connections_closed_total"),
    ("TCP_SENT_BYTES", "tcp_sent_bytes_total"),
    ("TCP_RECEIVED_BYTES", "tcp_received_bytes_total"),
];

/// What a peer's metadata says about it, as the stats filter's `upstream_peer` and
/// `downstream_peer` objects name the fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerField {
    /// `workload`.
    Workload,
    /// `namespace`.
    Namespace,
    /// `service`: the canonical service.
    Service,
    /// `revision`: the canonical revision.
    Revision,
    /// `app`.
    App,
    /// `version`.
    Version,
    /// `cluster`.
    Cluster,
}

/// The value of a metric label a Telemetry `tagOverrides` sets: the subset of Istio's
/// CEL attributes its docs use, each evaluated once per request.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Attribute {
    /// A string literal (`'canary'`).
    Literal(String),
    /// `request.host`: the `:authority`.
    Host,
    /// `request.method`.
    Method,
    /// `request.path` (with the query) or `request.url_path` (without).
    Path {
        /// Keep the query.
        query: bool,
    },
    /// `request.headers['name']`, the name lowercased.
    Header(String),
    /// A field of the server's (`upstream_peer`) or the client's (`downstream_peer`)
    /// metadata.
    Peer {
        /// `upstream_peer`: the server.
        upstream: bool,
        /// The field.
        field: PeerField,
    },
}

impl Attribute {
    /// Parses an expression; the error says what is supported.
    pub fn parse(expression: &str) -> Result<Attribute, String> {
        let e = expression.trim();
        let quoted = |s: &str| {
            let inner = s
                .strip_prefix('\'')
                .and_then(|s| s.strip_suffix('\''))
                .or_else(|| s.strip_prefix('"').and_then(|s| s.strip_suffix('"')))?;
            (!inner.contains(['\'', '"', '\\'])).then(|| inner.to_owned())
        };
        if let Some(literal) = quoted(e) {
            return Ok(Attribute::Literal(literal));
        }
        if let Some(name) = e
            .strip_prefix("request.headers[")
            .and_then(|s| s.strip_suffix(']'))
            .and_then(quoted)
        {
            return Ok(Attribute::Header(name.to_ascii_lowercase()));
        }
        let peer = |upstream: bool, field: &str| {
            let field = match field {
                "workload" => PeerField::Workload,
                "namespace" => PeerField::Namespace,
                "service" => PeerField::Service,
                "revision" => PeerField::Revision,
                "app" => PeerField::App,
                "version" => PeerField::Version,
                "cluster" => PeerField::Cluster,
                _ => return None,
            };
            Some(Attribute::Peer { upstream, field })
        };
        let parsed = match e {
            "request.host" => Some(Attribute::Host),
            "request.method" => Some(Attribute::Method),
            "request.path" => Some(Attribute::Path { query: true }),
            "request.url_path" => Some(Attribute::Path { query: false }),
            _ => e
                .strip_prefix("upstream_peer.")
                .and_then(|f| peer(true, f))
                .or_else(|| {
                    e.strip_prefix("downstream_peer.")
                        .and_then(|f| peer(false, f))
                }),
        };
        parsed.ok_or_else(|| {
            format!(
                "expression {expression:?} is not supported: use a 'string literal', \
                 request.host, request.method, request.path, request.url_path, \
                 request.headers['NAME'], or upstream_peer./downstream_peer. with \
                 workload, namespace, service, revision, app, version or cluster"
            )
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cel_subset_of_istios_tag_override_docs_parses() {
        assert_eq!(Attribute::parse("request.host"), Ok(Attribute::Host));
        assert_eq!(
            Attribute::parse("request.headers['User-Agent']"),
            Ok(Attribute::Header("user-agent".into()))
        );
        assert_eq!(
            Attribute::parse("'canary'"),
            Ok(Attribute::Literal("canary".into()))
        );
        assert_eq!(
            Attribute::parse("upstream_peer.version"),
            Ok(Attribute::Peer {
                upstream: true,
                field: PeerField::Version
            })
        );
        let err = Attribute::parse("string(destination.port)").unwrap_err();
        assert!(err.contains("destination.port"), "{err}");
        assert!(Attribute::parse("'a' + 'b'").is_err());
    }
}
