//! Istio's telemetry filters in listeners: the metadata exchange that tells each end of a
//! request who the other is (Istio's `appendMxFilter` and `TCPListenerMx`), and the
//! stats filter that records Istio's standard metrics (the Telemetry API's prometheus
//! provider: `HTTPFilters` and `TCPFilters`), in the shapes istiod writes them.
//!
//! Both are istio-proxy's own filters, which a plain Envoy rejects along with the whole
//! listener; so they go only to proxies that say they are Istio's (`ISTIO_VERSION` in
//! their node metadata, as Istio's agent and Mizzen's proxies send it).
//!
//! The stats filter follows the Telemetry API's metrics for the chain's side: none when
//! the `prometheus` provider is off or all its metrics disabled, else its overrides as
//! the stats config's `metrics` (Istio's `generateStatsConfig`). A tag override whose
//! expression the proxy cannot evaluate is left out with a warning naming it.

use std::sync::Arc;

use mizzen_xds::istio::{
    Attribute, MetadataExchange, MetricConfig, PEER_METADATA_TYPE_URL, PluginConfig,
    STANDARD_METRICS, TypedStruct,
};
use mizzen_xds::pb::envoy::config::listener::v3::{Filter, filter};
use mizzen_xds::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpFilter;
use mizzen_xds::pb::google::protobuf::{ListValue, Struct, Value, value::Kind};

use super::filters::http_filter;
use mizzen_api::mesh::Provider;

use crate::model::telemetry::{MetricsConfig, TrafficSide};
use crate::model::{Proxy, PushContext};
use crate::translate::route::to_any;

/// Both filters' name, in HTTP and TCP chains alike.
const METADATA_EXCHANGE: &str = "istio.metadata_exchange";
/// The stats filter's name, in HTTP and TCP chains alike.
const STATS: &str = "istio.stats";
/// The ALPN of Istio's in-band TCP metadata exchange.
const PEER_EXCHANGE_ALPN: &str = "istio-peer-exchange";

/// Istio's listener classes, as its telemetry filters tell them apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Class {
    /// A sidecar's inbound chains: reports as the destination.
    SidecarInbound,
    /// A sidecar's outbound chains (and its HTTP proxy listener): reports as the source.
    SidecarOutbound,
    /// A gateway's chains: reports as the source, as Istio's gateways do.
    Gateway,
}

/// The telemetry filters of one proxy's chains of one class.
#[derive(Debug, Clone)]
pub(crate) struct Telemetry {
    class: Class,
    /// Whether the proxy runs Istio's filters at all.
    istio: bool,
    /// The stats filter's config; None: no stats filter.
    stats: Option<Arc<PluginConfig>>,
}

impl Telemetry {
    /// The telemetry of `proxy`'s chains of `class`.
    pub(crate) fn new(push: &PushContext, proxy: &Proxy, class: Class) -> Telemetry {
        let istio = !proxy.istio_version.is_empty();
        let side = match class {
            Class::SidecarInbound => TrafficSide::Server,
            Class::SidecarOutbound | Class::Gateway => TrafficSide::Client,
        };
        let stats = istio
            .then(|| plugin_config(&push.telemetry().metrics(proxy, side), class, proxy))
            .flatten()
            .map(Arc::new);
        Telemetry {
            class,
            istio,
            stats,
        }
    }

    /// The HTTP metadata exchange, first among a connection manager's filters (before
    /// authorization, which may read the peer): inbound reads the client's headers and
    /// answers with its own; outbound and gateways send theirs and read the server's.
    pub(crate) fn http_exchange(&self) -> Option<HttpFilter> {
        self.istio.then(|| {
            let (discovery, propagation) = match self.class {
                Class::SidecarInbound => ("downstream_discovery", "downstream_propagation"),
                Class::SidecarOutbound | Class::Gateway => {
                    ("upstream_discovery", "upstream_propagation")
                }
            };
            let method = |name: &str| object([(name, object([]))]);
            let config = [
                (
                    discovery,
                    list([method("istio_headers"), method("workload_discovery")]),
                ),
                (propagation, list([method("istio_headers")])),
            ];
            http_filter(
                METADATA_EXCHANGE,
                &TypedStruct {
                    type_url: PEER_METADATA_TYPE_URL.to_owned(),
                    value: Some(fields(config)),
                },
            )
        })
    }

    /// The HTTP stats filter, last before the router.
    pub(crate) fn http_stats(&self) -> Option<HttpFilter> {
        self.stats
            .as_deref()
            .map(|config| http_filter(STATS, config))
    }

    /// The network filters a TCP chain's `tcp_proxy` comes after: the metadata exchange
    /// (inbound only: outbound, Istio puts it on the cluster), then `authz`, then stats.
    pub(crate) fn tcp_filters(&self, authz: Vec<Filter>) -> Vec<Filter> {
        let exchange = (self.istio && self.class == Class::SidecarInbound).then(|| {
            network_filter(
                METADATA_EXCHANGE,
                &TypedStruct {
                    type_url: <MetadataExchange as prost::Name>::type_url(),
                    value: Some(fields([
                        ("protocol", text(PEER_EXCHANGE_ALPN)),
                        ("enable_discovery", boolean(true)),
                    ])),
                },
            )
        });
        let stats = self
            .stats
            .as_deref()
            .map(|config| network_filter(STATS, config));
        exchange.into_iter().chain(authz).chain(stats).collect()
    }
}

/// The stats filter's config for `metrics` (Istio's `generateStatsConfig`): None without
/// the prometheus provider. The `Host` header is no source of the destination service
/// where it comes from outside the mesh.
fn plugin_config(metrics: &MetricsConfig, class: Class, proxy: &Proxy) -> Option<PluginConfig> {
    let prometheus = metrics
        .providers
        .iter()
        .find(|p| p.provider.provider == Provider::Prometheus)?;
    let overrides = prometheus.overrides.iter().map(|o| {
        let name = STANDARD_METRICS
            .iter()
            .find(|(api, _)| *api == o.metric)
            .map_or(o.metric.as_str(), |(_, prometheus)| prometheus);
        let mut config = MetricConfig {
            name: name.to_owned(),
            drop: o.disabled,
            ..MetricConfig::default()
        };
        for tag in &o.tags {
            match &tag.value {
                None => config.tags_to_remove.push(tag.name.clone()),
                Some(value) => match Attribute::parse(value) {
                    Ok(_) => {
                        config.dimensions.insert(tag.name.clone(), value.clone());
                    }
                    Err(reason) => tracing::warn!(
                        proxy = %proxy.id,
                        metric = %o.metric,
                        "Telemetry metrics tagOverrides[{:?}].value left out: {reason}",
                        tag.name
                    ),
                },
            }
        }
        config
    });
    Some(PluginConfig {
        disable_host_header_fallback: matches!(class, Class::SidecarInbound | Class::Gateway),
        tcp_reporting_duration: prometheus
            .reporting_interval
            .map(crate::translate::cluster::proto::duration),
        metrics: overrides.collect(),
        ..PluginConfig::default()
    })
}

fn network_filter<M: prost::Name + prost::Message>(name: &str, config: &M) -> Filter {
    Filter {
        name: name.to_owned(),
        config_type: Some(filter::ConfigType::TypedConfig(to_any(config))),
    }
}

fn fields<'a>(entries: impl IntoIterator<Item = (&'a str, Value)>) -> Struct {
    Struct {
        fields: entries
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v))
            .collect(),
    }
}

fn object<'a>(entries: impl IntoIterator<Item = (&'a str, Value)>) -> Value {
    Value {
        kind: Some(Kind::StructValue(fields(entries))),
    }
}

fn list(values: impl IntoIterator<Item = Value>) -> Value {
    Value {
        kind: Some(Kind::ListValue(ListValue {
            values: values.into_iter().collect(),
        })),
    }
}

fn text(s: &str) -> Value {
    Value {
        kind: Some(Kind::StringValue(s.to_owned())),
    }
}

fn boolean(b: bool) -> Value {
    Value {
        kind: Some(Kind::BoolValue(b)),
    }
}
