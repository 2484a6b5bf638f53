//! Istio's telemetry filters as istiod (or Mizzen's pilot) sends them:
//! `istio.metadata_exchange` and `istio.stats`, in HTTP connection managers and before
//! TCP proxies. Their configs are istio-proxy's own types, in every shape Istio has sent:
//! native `Any`s, `TypedStruct`s wrapping them, and the null-VM Wasm plugins of older
//! releases; any other config is refused, naming its type.

use std::sync::Arc;

use mizzen_xds::istio::{MetadataExchange, PEER_METADATA_TYPE_URL, PluginConfig, TypedStruct};
use mizzen_xds::pb::envoy::config::cluster::v3::Cluster as PbCluster;
use mizzen_xds::pb::envoy::config::core::v3::{async_data_source, data_source};
use mizzen_xds::pb::envoy::extensions::filters::http::wasm::v3::Wasm;
use mizzen_xds::pb::envoy::extensions::wasm::v3::plugin_config::Vm;
use mizzen_xds::pb::google::protobuf::{Any, Struct, Value, value::Kind};
use prost::{Message, Name};

use super::Registry;
use super::overrides::Overrides;
use super::series::{Reporter, Service};

/// The metadata exchange filter's name, in HTTP and TCP chains alike.
pub const METADATA_EXCHANGE: &str = "istio.metadata_exchange";
/// The stats filter's name, in HTTP and TCP chains alike.
pub const STATS: &str = "istio.stats";

/// The null-VM plugin older Istio releases ran as the metadata exchange.
const WASM_METADATA_EXCHANGE: &str = "envoy.wasm.metadata_exchange";

/// Whether `name` is one of Istio's telemetry filters.
pub fn is_telemetry_filter(name: &str) -> bool {
    name == METADATA_EXCHANGE || name == STATS
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
#[derive(Debug, Clone)]
struct Filters {
    exchange: bool,
    reporter: Option<Reporter>,
    overrides: Option<Arc<Overrides>>,
}

/// The type an `Any` holds, without its `type.googleapis.com/` prefix.
fn type_name(type_url: &str) -> &str {
    type_url.rsplit('/').next().unwrap_or(type_url)
}

/// The config a `TypedStruct` wraps: its type and fields; None for other types.
fn typed_struct(any: &Any) -> Result<Option<(String, Struct)>, String> {
    match type_name(&any.type_url) {
        "udpa.type.v1.TypedStruct" | "xds.type.v3.TypedStruct" => {
            let typed = TypedStruct::decode(any.value.as_slice()).map_err(|e| e.to_string())?;
            Ok(Some((typed.type_url, typed.value.unwrap_or_default())))
        }
        _ => Ok(None),
    }
}

/// Checks a metadata exchange config: HTTP's `io.istio.http.peer_metadata.Config`, TCP's
/// `MetadataExchange`, either native or in a `TypedStruct`, or the Wasm plugin. Whatever
/// methods it names, the proxy exchanges Istio's headers and falls back to the
/// endpoints it knows, which is what Istio's sidecars configure.
fn exchange_config(any: Option<&Any>) -> Result<(), String> {
    let Some(any) = any else { return Ok(()) };
    let exchange = MetadataExchange::full_name();
    let peer_metadata = type_name(PEER_METADATA_TYPE_URL);
    let inner = match typed_struct(any)? {
        Some((type_url, _)) => type_url,
        None => any.type_url.clone(),
    };
    match type_name(&inner) {
        name if name == exchange || name == peer_metadata => {
            if name == exchange && inner == any.type_url {
                MetadataExchange::decode(any.value.as_slice()).map_err(|e| e.to_string())?;
            }
            Ok(())
        }
        "envoy.extensions.filters.http.wasm.v3.Wasm" => {
            let wasm = Wasm::decode(any.value.as_slice()).map_err(|e| e.to_string())?;
            let code = wasm
                .config
                .and_then(|c| c.vm)
                .and_then(|Vm::VmConfig(vm)| vm.code)
                .and_then(|code| code.specifier);
            match code {
                Some(async_data_source::Specifier::Local(local))
                    if local.specifier
                        == Some(data_source::Specifier::InlineString(
                            WASM_METADATA_EXCHANGE.to_owned(),
                        )) =>
                {
                    Ok(())
                }
                _ => Err(format!(
                    "a Wasm metadata exchange must be the null-VM plugin {WASM_METADATA_EXCHANGE:?}"
                )),
            }
        }
        other => Err(format!(
            "type {other:?} is not {peer_metadata}, {exchange} or a TypedStruct of either"
        )),
    }
}

/// A stats filter's `PluginConfig`: native, or the fields of a `TypedStruct`.
fn plugin_config(any: Option<&Any>) -> Result<PluginConfig, String> {
    let Some(any) = any else {
        return Ok(PluginConfig::default());
    };
    let plugin = PluginConfig::full_name();
    if let Some((type_url, value)) = typed_struct(any)? {
        if type_name(&type_url) != plugin {
            return Err(format!("type {type_url:?} is not {plugin}"));
        }
        return plugin_from_struct(&value);
    }
    if type_name(&any.type_url) != plugin {
        return Err(format!(
            "type {:?} is not {plugin} or a TypedStruct of it",
            any.type_url
        ));
    }
    PluginConfig::decode(any.value.as_slice()).map_err(|e| e.to_string())
}

/// The `PluginConfig` fields the proxy acts on, from their JSON form: the reporter and
/// the metric overrides.
fn plugin_from_struct(value: &Struct) -> Result<PluginConfig, String> {
    use mizzen_xds::istio::{MetricConfig, StatsReporter};
    let text = |v: &Value, at: &str| match &v.kind {
        Some(Kind::StringValue(s)) => Ok(s.clone()),
        _ => Err(format!("{at} is not a string")),
    };
    let list = |v: Option<&Value>, at: &str| match v.and_then(|v| v.kind.as_ref()) {
        None => Ok(Vec::new()),
        Some(Kind::ListValue(l)) => Ok(l.values.clone()),
        Some(_) => Err(format!("{at} is not a list")),
    };
    let mut metrics = Vec::new();
    for (i, m) in list(value.fields.get("metrics"), "metrics")?
        .iter()
        .enumerate()
    {
        let Some(Kind::StructValue(m)) = &m.kind else {
            return Err(format!("metrics[{i}] is not an object"));
        };
        let mut config = MetricConfig::default();
        for (key, v) in &m.fields {
            let at = format!("metrics[{i}].{key}");
            match (key.as_str(), &v.kind) {
                ("name", _) => config.name = text(v, &at)?,
                ("drop", Some(Kind::BoolValue(b))) => config.drop = *b,
                ("tags_to_remove" | "tagsToRemove", _) => {
                    for (j, tag) in list(Some(v), &at)?.iter().enumerate() {
                        config
                            .tags_to_remove
                            .push(text(tag, &format!("{at}[{j}]"))?);
                    }
                }
                ("dimensions", Some(Kind::StructValue(d))) => {
                    for (label, expression) in &d.fields {
                        let expression = text(expression, &format!("{at}.{label}"))?;
                        config.dimensions.insert(label.clone(), expression);
                    }
                }
                _ => return Err(format!("{at} is not supported")),
            }
        }
        metrics.push(config);
    }
    let reporter = match value.fields.get("reporter").and_then(|v| v.kind.as_ref()) {
        None => StatsReporter::Unspecified,
        Some(Kind::StringValue(r)) if r == "UNSPECIFIED" => StatsReporter::Unspecified,
        Some(Kind::StringValue(r)) if r == "SERVER_GATEWAY" => StatsReporter::ServerGateway,
        Some(Kind::StringValue(r)) => {
            return Err(format!(
                "reporter {r:?} is not UNSPECIFIED or SERVER_GATEWAY"
            ));
        }
        Some(_) => return Err("reporter is not a string".to_owned()),
    };
    Ok(PluginConfig {
        reporter: reporter as i32,
        metrics,
        ..PluginConfig::default()
    })
}

/// Who a chain reports as: a server gateway as the source, else by its direction.
fn reporter(config: &PluginConfig, choice: ReporterChoice) -> Result<Reporter, String> {
    use mizzen_xds::istio::StatsReporter;
    match StatsReporter::try_from(config.reporter) {
        Ok(StatsReporter::ServerGateway) => Ok(Reporter::Source),
        Ok(StatsReporter::Unspecified) => Ok(match choice {
            ReporterChoice::Inbound => Reporter::Destination,
            ReporterChoice::Outbound => Reporter::Source,
        }),
        Err(_) => Err(format!(
            "reporter {} is not UNSPECIFIED or SERVER_GATEWAY",
            config.reporter
        )),
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
        overrides: None,
    };
    for (i, name, any) in filters {
        match name {
            METADATA_EXCHANGE => {
                exchange_config(any).map_err(|r| (i, r))?;
                out.exchange = true;
            }
            STATS => {
                let config = plugin_config(any).map_err(|r| (i, r))?;
                out.reporter = Some(reporter(&config, choice).map_err(|r| (i, r))?);
                if !config.definitions.is_empty() {
                    return Err((i, "custom metric definitions are not supported".into()));
                }
                out.overrides = Overrides::compile(&config.metrics).map_err(|r| (i, r))?;
            }
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
    /// The stats config's changes to the metrics.
    pub overrides: Option<Arc<Overrides>>,
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
            overrides: read.overrides,
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
    /// The stats config's changes to the metrics.
    pub overrides: Option<Arc<Overrides>>,
}

impl TcpTelemetry {
    /// The telemetry of a chain whose filters before its TCP proxy are `filters`; None
    /// without `istio.stats`; errors are `(index, reason)`.
    pub fn compile<'a>(
        filters: impl Iterator<Item = (usize, &'a str, Option<&'a Any>)>,
        choice: ReporterChoice,
        registry: &Arc<Registry>,
    ) -> Result<Option<TcpTelemetry>, (usize, String)> {
        let read = read(filters, choice)?;
        Ok(read.reporter.map(|reporter| TcpTelemetry {
            registry: registry.clone(),
            reporter,
            overrides: read.overrides,
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

#[cfg(test)]
mod tests {
    use super::*;
    use mizzen_xds::istio::StatsReporter;

    fn any<M: Name + Message>(m: &M) -> Any {
        Any {
            type_url: M::type_url(),
            value: m.encode_to_vec(),
        }
    }

    fn typed(type_url: &str, fields: &[(&str, &str)]) -> Any {
        any(&TypedStruct {
            type_url: type_url.to_owned(),
            value: Some(Struct {
                fields: fields
                    .iter()
                    .map(|(k, v)| {
                        let v = Value {
                            kind: Some(Kind::StringValue((*v).to_owned())),
                        };
                        ((*k).to_owned(), v)
                    })
                    .collect(),
            }),
        })
    }

    fn one(name: &str, config: &Any, choice: ReporterChoice) -> Result<Filters, String> {
        read([(0, name, Some(config))].into_iter(), choice).map_err(|(_, r)| r)
    }

    #[test]
    fn the_stats_config_is_read_native_or_in_a_typed_struct() {
        let native = any(&PluginConfig {
            reporter: StatsReporter::ServerGateway as i32,
            ..PluginConfig::default()
        });
        let read = one(STATS, &native, ReporterChoice::Inbound).unwrap();
        assert_eq!(read.reporter, Some(Reporter::Source));
        let plain = any(&PluginConfig::default());
        let read = one(STATS, &plain, ReporterChoice::Inbound).unwrap();
        assert_eq!(read.reporter, Some(Reporter::Destination));
        let wrapped = typed(
            "type.googleapis.com/stats.PluginConfig",
            &[("reporter", "SERVER_GATEWAY")],
        );
        let read = one(STATS, &wrapped, ReporterChoice::Inbound).unwrap();
        assert_eq!(read.reporter, Some(Reporter::Source));
    }

    #[test]
    fn unknown_shapes_are_refused_naming_the_type() {
        let wrong = typed("type.googleapis.com/other.Config", &[]);
        let err = one(STATS, &wrong, ReporterChoice::Outbound).unwrap_err();
        assert!(err.contains("other.Config"), "{err}");
        let bad_reporter = typed(
            "type.googleapis.com/stats.PluginConfig",
            &[("reporter", "SIDECAR")],
        );
        let err = one(STATS, &bad_reporter, ReporterChoice::Outbound).unwrap_err();
        assert!(err.contains("SIDECAR"), "{err}");
        let err = one(
            METADATA_EXCHANGE,
            &any(&Struct::default()),
            ReporterChoice::Outbound,
        )
        .unwrap_err();
        assert!(err.contains("google.protobuf.Struct"), "{err}");
    }

    /// Every `istio.stats` and `istio.metadata_exchange` config in Istio's config dumps
    /// (native, TypedStruct, null-VM Wasm; listener and cluster filters) is accepted.
    #[test]
    fn every_shape_in_istios_config_dumps_is_accepted() {
        let Some(data) = crate::authz::testdata::istio_data() else {
            return;
        };
        fn walk(v: &serde_json::Value, out: &mut Vec<(String, serde_json::Value)>) {
            match v {
                serde_json::Value::Object(map) => {
                    if let (Some(name), Some(config)) = (
                        map.get("name").and_then(|n| n.as_str()),
                        map.get("typed_config"),
                    ) && is_telemetry_filter(name)
                    {
                        out.push((name.to_owned(), config.clone()));
                    }
                    map.values().for_each(|v| walk(v, out));
                }
                serde_json::Value::Array(items) => items.iter().for_each(|v| walk(v, out)),
                _ => {}
            }
        }
        let mut found = Vec::new();
        for file in [
            "istioctl/authz/testdata/configdump.yaml",
            "istioctl/describe/testdata/describe/http_config.json",
            "istioctl/writer/compare/testdata/configdump.json",
            "istioctl/writer/compare/testdata/configdump_diff.json",
        ] {
            let text = std::fs::read_to_string(data.join(file)).unwrap();
            walk(&serde_json::from_str(&text).unwrap(), &mut found);
        }
        assert!(found.len() > 50, "{} telemetry filters", found.len());
        let mut types = std::collections::BTreeSet::new();
        for (name, config) in &found {
            let any = mizzen_xds::json::any_from_json(config).unwrap();
            types.insert(any.type_url.clone());
            one(name, &any, ReporterChoice::Outbound)
                .unwrap_or_else(|e| panic!("{name} {config}: {e}"));
        }
        assert_eq!(types.len(), 4, "{types:?}");
    }
}
