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
