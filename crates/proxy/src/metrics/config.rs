//! Istio's telemetry filters as pilot sends them: `istio.metadata_exchange` and
//! `istio.stats` (each a `TypedStruct` wrapping Istio's own config, whose protos are not
//! Envoy's), in HTTP connection managers and before TCP proxies.

use std::sync::Arc;

use mizzen_xds::pb::envoy::config::cluster::v3::Cluster as PbCluster;
use mizzen_xds::pb::google::protobuf::{Any, Struct, Value, value::Kind};
use prost::Message;

use super::Registry;
use super::series::{Reporter, Service};

/// The metadata exchange filter's name, in HTTP and TCP chains alike.
pub const METADATA_EXCHANGE: &str = "istio.metadata_exchange";
/// The stats filter's name, in HTTP and TCP chains alike.
pub const STATS: &str = "istio.stats";

/// Whether `name` is one of Istio's telemetry filters.
pub fn is_telemetry_filter(name: &str) -> bool {
    name == METADATA_EXCHANGE || name == STATS
}

/// `udpa.type.v1.TypedStruct` (and `xds.type.v3.TypedStruct`, the same message): a
/// config of a type the proxy has no proto for, as JSON-like `Struct`.
#[derive(Clone, PartialEq, Message)]
struct TypedStruct {
    #[prost(string, tag = "1")]
    type_url: String,
    #[prost(message, optional, tag = "2")]
    value: Option<Struct>,
}

/// Who reports the metrics of a chain, when its stats filter does not say: Istio's stats
/// filter reports as the destination on inbound listeners, as the source elsewhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReporterChoice {
    /// An inbound listener (`traffic_direction: INBOUND`).
    Inbound,
    /// Any other listener.
    Outbound,
}

/// What a chain's telemetry filters ask for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Filters {
    exchange: bool,
    reporter: Option<Reporter>,
}

/// A stats filter's `PluginConfig` (`stats.PluginConfig` in a TypedStruct): the reporter.
fn plugin_reporter(any: Option<&Any>, choice: ReporterChoice) -> Result<Reporter, String> {
    let value = match any {
        Some(any) if any.type_url.ends_with("TypedStruct") => {
            let typed = TypedStruct::decode(any.value.as_slice()).map_err(|e| e.to_string())?;
            if !typed.type_url.ends_with("stats.PluginConfig") {
                return Err(format!(
                    "type {:?} is not stats.PluginConfig",
                    typed.type_url
                ));
            }
            typed.value.unwrap_or_default()
        }
        Some(any) => return Err(format!("type {:?} is not a TypedStruct", any.type_url)),
        None => Struct::default(),
    };
    match value.fields.get("reporter").and_then(|v| v.kind.as_ref()) {
        Some(Kind::StringValue(r)) if r == "SERVER_GATEWAY" => Ok(Reporter::Source),
        Some(Kind::StringValue(r)) if r != "UNSPECIFIED" => Err(format!(
            "reporter {r:?} is not UNSPECIFIED or SERVER_GATEWAY"
        )),
        _ => Ok(match choice {
            ReporterChoice::Inbound => Reporter::Destination,
            ReporterChoice::Outbound => Reporter::Source,
        }),
    }
}

/// Reads the telemetry filters among `(index, name, config)`; errors are `(index,
/// reason)`.
fn read<'a>(
    filters: impl Iterator<Item = (usize, &'a str, Option<&'a Any>)>,
    choice: ReporterChoice,
) -> Result<Filters, (usize, String)> {
    let mut out = Filters {
        exchange: false,
        reporter: None,
    };
    for (i, name, any) in filters {
        match name {
            METADATA_EXCHANGE => out.exchange = true,
            STATS => out.reporter = Some(plugin_reporter(any, choice).map_err(|r| (i, r))?),
            _ => {}
        }
    }
    Ok(out)
}

/// An HTTP connection manager's telemetry: the metadata exchange and the metrics.
#[derive(Debug)]
pub struct HttpTelemetry {
    /// Where series are recorded.
    pub registry: Arc<Registry>,
    /// Who the chain reports as.
    pub reporter: Reporter,
    /// Whether peers exchange metadata headers.
    pub exchange: bool,
    /// Whether requests are recorded (the stats filter is in the chain).
    pub record: bool,
}

impl HttpTelemetry {
    /// The telemetry of a connection manager with `filters` (`(name, typed_config)`),
    /// None when it has neither of Istio's filters; errors are `(index, reason)`.
    pub fn compile<'a>(
        filters: impl Iterator<Item = (&'a str, Option<&'a Any>)>,
        choice: ReporterChoice,
        registry: &Arc<Registry>,
    ) -> Result<Option<HttpTelemetry>, (usize, String)> {
        let read = read(filters.enumerate().map(|(i, (n, a))| (i, n, a)), choice)?;
        if !read.exchange && read.reporter.is_none() {
            return Ok(None);
        }
        let fallback = match choice {
            ReporterChoice::Inbound => Reporter::Destination,
            ReporterChoice::Outbound => Reporter::Source,
        };
        Ok(Some(HttpTelemetry {
            registry: registry.clone(),
            reporter: read.reporter.unwrap_or(fallback),
            exchange: read.exchange,
            record: read.reporter.is_some(),
        }))
    }
}

/// A TCP proxy's telemetry: its connections recorded.
#[derive(Debug)]
pub struct TcpTelemetry {
    /// Where series are recorded.
    pub registry: Arc<Registry>,
    /// Who the chain reports as.
    pub reporter: Reporter,
}

impl TcpTelemetry {
    /// The telemetry of a chain whose filters before its TCP proxy are `filters`; None
    /// without `istio.stats`; errors are `(index, reason)`.
    pub fn compile<'a>(
        filters: impl Iterator<Item = (usize, &'a str, Option<&'a Any>)>,
        choice: ReporterChoice,
        registry: &Arc<Registry>,
    ) -> Result<Option<TcpTelemetry>, (usize, String)> {
        Ok(read(filters, choice)?
            .reporter
            .map(|reporter| TcpTelemetry {
                registry: registry.clone(),
                reporter,
            }))
    }
}

/// The first service in a cluster's `istio.services` metadata (inbound clusters name
/// no service in their name).
pub fn service_metadata(cluster: &PbCluster) -> Option<Service> {
    let istio = cluster.metadata.as_ref()?.filter_metadata.get("istio")?;
    let Some(Kind::ListValue(services)) = istio.fields.get("services")?.kind.as_ref() else {
        return None;
    };
    let Some(Kind::StructValue(first)) = services.values.first()?.kind.as_ref() else {
        return None;
    };
    let text = |key: &str| match first.fields.get(key).and_then(|v: &Value| v.kind.as_ref()) {
        Some(Kind::StringValue(s)) => s.clone(),
        _ => String::new(),
    };
    Some(Service {
        host: text("host"),
        name: text("name"),
        namespace: text("namespace"),
    })
}
