//! Clusters from CDS or the bootstrap: how to reach a group of upstream endpoints.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mizzen_xds::pb::envoy::config::cluster::v3::{Cluster as PbCluster, cluster};
use mizzen_xds::pb::envoy::config::core::v3::HttpProtocolOptions as CommonOptions;
use mizzen_xds::pb::envoy::config::core::v3::RoutingPriority;
use mizzen_xds::pb::envoy::extensions::upstreams::http::v3::HttpProtocolOptions;
use mizzen_xds::pb::envoy::extensions::upstreams::http::v3::http_protocol_options::{
    UpstreamProtocolOptions, explicit_http_config::ProtocolConfig,
};
use prost::Message;

use super::dns::{Dns, DnsKind};
use super::{ConfigError, duration, ip_port};
use crate::tls::{Secrets, Transports};

mod breakers;
mod outlier;

pub use breakers::CircuitBreakers;
pub use outlier::OutlierDetection;

/// The key of `typed_extension_protocol_options` that carries HTTP upstream options.
const HTTP_PROTOCOL_OPTIONS: &str = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";
/// Envoy's default `connect_timeout`.
const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Envoy's default circuit breaker `max_retries`.
const DEFAULT_MAX_RETRIES: u32 = 3;
/// Envoy's default idle timeout of upstream HTTP connections.
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

/// One cluster, compiled.
#[derive(Debug)]
pub struct Cluster {
    /// The cluster's name (`outbound|9080||reviews.default.svc.cluster.local`).
    pub name: String,
    /// Where its endpoints come from.
    pub discovery: Discovery,
    /// How long a connection attempt may take.
    pub connect_timeout: Duration,
    /// Which HTTP version to speak upstream.
    pub protocol: UpstreamProtocol,
    /// The source address of upstream connections (`upstream_bind_config`).
    pub bind: Option<SocketAddr>,
    /// How long an upstream connection may stay idle in the pool.
    pub idle_timeout: Duration,
    /// How many requests one upstream connection may carry (none: unlimited).
    pub max_requests_per_connection: Option<u32>,
    /// How many streams one HTTP/2 connection may carry at once (`max_concurrent_streams`
    /// of its HTTP/2 options); beyond it, another connection opens.
    pub max_concurrent_streams: Option<u32>,
    /// How many connections and requests it may have at once.
    pub circuit_breakers: CircuitBreakers,
    /// When set, endpoints that fail in a row are ejected for a while.
    pub outlier_detection: Option<OutlierDetection>,
    /// How connections to its endpoints are made (`transport_socket`,
    /// `transport_socket_matches`).
    pub transports: Transports,
    /// How many retries may run at once (the default-priority circuit breaker).
    pub retry_limit: RetryLimit,
    /// The resource as received, for `/config_dump` and the load balancer.
    pub raw: Arc<PbCluster>,
}

/// Where a cluster's endpoints come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Discovery {
    /// Listed in the cluster's own `load_assignment`.
    Static,
    /// From EDS, under this name (`eds_cluster_config.service_name`, else the cluster's).
    Eds(String),
    /// The connection's original destination (`PassthroughCluster`).
    OriginalDst,
    /// Host names from the cluster's `load_assignment`, resolved in the background
    /// (`STRICT_DNS` and `LOGICAL_DNS`: Istio's DNS ServiceEntries).
    Dns(Dns),
}

/// How many retries may run at once across a cluster's requests.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RetryLimit {
    /// At most this many (`max_retries`; Envoy's default is 3).
    Concurrent(u32),
    /// A share of the requests in flight, but always at least `min_concurrency`
    /// (`retry_budget`, which replaces `max_retries` when set).
    Budget {
        /// The share, in percent.
        percent: f64,
        /// Retries always allowed, however few requests are in flight.
        min_concurrency: u32,
    },
}

impl RetryLimit {
    /// Reads the default-priority thresholds of `circuit_breakers`.
    fn compile(raw: &PbCluster) -> Result<RetryLimit, (&'static str, String)> {
        let Some(t) = raw.circuit_breakers.as_ref().and_then(|c| {
            c.thresholds
                .iter()
                .find(|t| t.priority == RoutingPriority::Default as i32)
        }) else {
            return Ok(RetryLimit::Concurrent(DEFAULT_MAX_RETRIES));
        };
        let Some(budget) = &t.retry_budget else {
            return Ok(RetryLimit::Concurrent(
                t.max_retries.map_or(DEFAULT_MAX_RETRIES, |m| m.value),
            ));
        };
        let percent = budget.budget_percent.as_ref().map_or(20.0, |p| p.value);
        if !(0.0..=100.0).contains(&percent) {
            return Err((
                "circuit_breakers.thresholds.retry_budget.budget_percent",
                format!("{percent} is not in 0..=100"),
            ));
        }
        Ok(RetryLimit::Budget {
            percent,
            min_concurrency: budget.min_retry_concurrency.map_or(3, |m| m.value),
        })
    }
}

/// The HTTP version spoken to a cluster's endpoints.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpstreamProtocol {
    /// HTTP/1.1.
    Http1,
    /// HTTP/2 (prior knowledge).
    Http2,
    /// Whatever the downstream request used.
    Downstream,
}

impl Cluster {
    /// Compiles a cluster, refusing what the proxy cannot honour; its TLS contexts take
    /// the secrets they name from `secrets`.
    pub fn compile(raw: PbCluster, secrets: &Secrets) -> Result<Cluster, ConfigError> {
        let name = raw.name.clone();
        let err = |field: &str, reason: String| ConfigError::new("cluster", &name, field, reason);
        if name.is_empty() {
            return Err(err("name", "is empty".into()));
        }
        let discovery = match raw.cluster_discovery_type {
            None => Discovery::Static,
            Some(cluster::ClusterDiscoveryType::Type(t)) => {
                match cluster::DiscoveryType::try_from(t) {
                    Ok(cluster::DiscoveryType::Static) => Discovery::Static,
                    Ok(cluster::DiscoveryType::Eds) => Discovery::Eds(
                        raw.eds_cluster_config
                            .as_ref()
                            .map(|c| c.service_name.clone())
                            .filter(|s| !s.is_empty())
                            .unwrap_or_else(|| name.clone()),
                    ),
                    Ok(cluster::DiscoveryType::OriginalDst) => Discovery::OriginalDst,
                    Ok(cluster::DiscoveryType::StrictDns) => Discovery::Dns(
                        Dns::compile(&raw, DnsKind::Strict).map_err(|(f, r)| err(&f, r))?,
                    ),
                    Ok(cluster::DiscoveryType::LogicalDns) => Discovery::Dns(
                        Dns::compile(&raw, DnsKind::Logical).map_err(|(f, r)| err(&f, r))?,
                    ),
                    Err(_) => return Err(err("type", format!("unknown discovery type {t}"))),
                }
            }
            Some(cluster::ClusterDiscoveryType::ClusterType(ref custom)) => {
                return Err(err(
                    "cluster_type",
                    format!("custom cluster type {:?} is not supported", custom.name),
                ));
            }
        };
        let connect_timeout = match &raw.connect_timeout {
            Some(d) => duration(d).map_err(|r| err("connect_timeout", r))?,
            None => DEFAULT_CONNECT_TIMEOUT,
        };
        let bind = raw
            .upstream_bind_config
            .as_ref()
            .and_then(|b| b.source_address.as_ref())
            .map(|a| ip_port(a).map_err(|r| err("upstream_bind_config.source_address", r)))
            .transpose()?;

        let options = match raw
            .typed_extension_protocol_options
            .get(HTTP_PROTOCOL_OPTIONS)
        {
            Some(any) => Some(
                HttpProtocolOptions::decode(any.value.as_slice()).map_err(|e| {
                    err(
                        &format!("typed_extension_protocol_options[{HTTP_PROTOCOL_OPTIONS:?}]"),
                        e.to_string(),
                    )
                })?,
            ),
            None => None,
        };
        let upstream_options = options
            .as_ref()
            .and_then(|o| o.upstream_protocol_options.as_ref());
        #[allow(deprecated)]
        let http2_options = match upstream_options {
            Some(UpstreamProtocolOptions::ExplicitHttpConfig(explicit)) => {
                match &explicit.protocol_config {
                    Some(ProtocolConfig::Http2ProtocolOptions(h2)) => Some(h2),
                    _ => None,
                }
            }
            Some(UpstreamProtocolOptions::UseDownstreamProtocolConfig(d)) => {
                d.http2_protocol_options.as_ref()
            }
            Some(UpstreamProtocolOptions::AutoConfig(a)) => a.http2_protocol_options.as_ref(),
            None => raw.http2_protocol_options.as_ref(),
        };
        let max_concurrent_streams = http2_options
            .and_then(|h2| h2.max_concurrent_streams)
            .map(|v| v.value)
            .filter(|v| *v > 0);
        let protocol = match upstream_options {
            Some(UpstreamProtocolOptions::ExplicitHttpConfig(explicit)) => {
                match explicit.protocol_config {
                    Some(ProtocolConfig::Http2ProtocolOptions(_)) => UpstreamProtocol::Http2,
                    Some(ProtocolConfig::Http3ProtocolOptions(_)) => {
                        return Err(err(
                            "typed_extension_protocol_options",
                            "HTTP/3 upstreams are not supported".into(),
                        ));
                    }
                    _ => UpstreamProtocol::Http1,
                }
            }
            Some(UpstreamProtocolOptions::UseDownstreamProtocolConfig(_)) => {
                UpstreamProtocol::Downstream
            }
            Some(UpstreamProtocolOptions::AutoConfig(_)) => UpstreamProtocol::Downstream,
            #[allow(deprecated)]
            None if raw.http2_protocol_options.is_some() => UpstreamProtocol::Http2,
            None => UpstreamProtocol::Http1,
        };
        #[allow(deprecated)]
        let common: Option<&CommonOptions> = options
            .as_ref()
            .and_then(|o| o.common_http_protocol_options.as_ref())
            .or(raw.common_http_protocol_options.as_ref());
        let idle_timeout = match common.and_then(|c| c.idle_timeout.as_ref()) {
            Some(d) => {
                duration(d).map_err(|r| err("common_http_protocol_options.idle_timeout", r))?
            }
            None => DEFAULT_IDLE_TIMEOUT,
        };
        #[allow(deprecated)]
        let max_requests_per_connection = common
            .and_then(|c| c.max_requests_per_connection)
            .or(raw.max_requests_per_connection)
            .map(|v| v.value)
            .filter(|v| *v > 0);

        let outlier_detection = raw
            .outlier_detection
            .as_ref()
            .map(OutlierDetection::compile)
            .transpose()
            .map_err(|(field, reason)| err(&format!("outlier_detection.{field}"), reason))?;

        let retry_limit = RetryLimit::compile(&raw).map_err(|(f, r)| err(f, r))?;
        let transports = Transports::compile(&raw, secrets).map_err(|(f, r)| err(&f, r))?;
        Ok(Cluster {
            transports,
            retry_limit,
            name,
            discovery,
            connect_timeout,
            protocol,
            bind,
            idle_timeout,
            max_requests_per_connection,
            max_concurrent_streams,
            circuit_breakers: CircuitBreakers::compile(raw.circuit_breakers.as_ref()),
            outlier_detection,
            raw: Arc::new(raw),
        })
    }

    /// The endpoints a static cluster lists itself.
    pub fn static_assignment(
        &self,
    ) -> Option<&mizzen_xds::pb::envoy::config::endpoint::v3::ClusterLoadAssignment> {
        (self.discovery == Discovery::Static)
            .then_some(self.raw.load_assignment.as_ref())
            .flatten()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mizzen_xds::pb::envoy::config::cluster::v3::cluster::EdsClusterConfig;
    use mizzen_xds::pb::google::protobuf::{Any, Duration as PbDuration};

    fn eds(name: &str) -> PbCluster {
        PbCluster {
            name: name.into(),
            cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
                cluster::DiscoveryType::Eds as i32,
            )),
            eds_cluster_config: Some(EdsClusterConfig::default()),
            ..Default::default()
        }
    }

    #[test]
    fn eds_clusters_default_to_their_own_name_and_envoy_defaults() {
        let c = Cluster::compile(eds("outbound|9080||reviews"), &Secrets::default()).unwrap();
        assert_eq!(c.discovery, Discovery::Eds("outbound|9080||reviews".into()));
        assert_eq!(c.connect_timeout, DEFAULT_CONNECT_TIMEOUT);
        assert_eq!(c.protocol, UpstreamProtocol::Http1);
        assert_eq!(c.max_requests_per_connection, None);
    }

    #[test]
    fn istio_protocol_options_are_read() {
        let mut raw = eds("c");
        raw.connect_timeout = Some(PbDuration {
            seconds: 10,
            nanos: 0,
        });
        let options = HttpProtocolOptions {
            upstream_protocol_options: Some(UpstreamProtocolOptions::UseDownstreamProtocolConfig(
                Default::default(),
            )),
            common_http_protocol_options: Some(CommonOptions {
                max_requests_per_connection: Some(mizzen_xds::pb::google::protobuf::UInt32Value {
                    value: 7,
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        raw.typed_extension_protocol_options.insert(
            HTTP_PROTOCOL_OPTIONS.into(),
            Any {
                type_url: String::new(),
                value: options.encode_to_vec(),
            },
        );
        let c = Cluster::compile(raw, &Secrets::default()).unwrap();
        assert_eq!(c.protocol, UpstreamProtocol::Downstream);
        assert_eq!(c.connect_timeout, Duration::from_secs(10));
        assert_eq!(c.max_requests_per_connection, Some(7));
    }

    #[test]
    fn retries_are_limited_by_max_retries_or_a_budget() {
        use mizzen_xds::pb::envoy::config::cluster::v3::CircuitBreakers;
        use mizzen_xds::pb::envoy::config::cluster::v3::circuit_breakers::Thresholds;
        use mizzen_xds::pb::envoy::config::cluster::v3::circuit_breakers::thresholds::RetryBudget;
        use mizzen_xds::pb::envoy::r#type::v3::Percent;
        use mizzen_xds::pb::google::protobuf::UInt32Value;
        let with = |t: Thresholds| {
            let mut raw = eds("c");
            raw.circuit_breakers = Some(CircuitBreakers {
                thresholds: vec![t],
                ..Default::default()
            });
            Cluster::compile(raw, &Secrets::default())
        };
        assert_eq!(
            Cluster::compile(eds("c"), &Secrets::default())
                .unwrap()
                .retry_limit,
            RetryLimit::Concurrent(3)
        );
        let max = Thresholds {
            max_retries: Some(UInt32Value { value: 7 }),
            ..Default::default()
        };
        assert_eq!(with(max).unwrap().retry_limit, RetryLimit::Concurrent(7));
        let budget = Thresholds {
            max_retries: Some(UInt32Value { value: 7 }),
            retry_budget: Some(RetryBudget::default()),
            ..Default::default()
        };
        assert_eq!(
            with(budget).unwrap().retry_limit,
            RetryLimit::Budget {
                percent: 20.0,
                min_concurrency: 3
            }
        );
        let over = Thresholds {
            retry_budget: Some(RetryBudget {
                budget_percent: Some(Percent { value: 120.0 }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let e = with(over).unwrap_err().to_string();
        assert!(e.contains("budget_percent") && e.contains("120"), "{e}");
    }

    #[test]
    fn dns_clusters_without_endpoints_are_refused_by_name() {
        let mut raw = eds("dns");
        raw.cluster_discovery_type = Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::LogicalDns as i32,
        ));
        let e = Cluster::compile(raw, &Secrets::default())
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("cluster \"dns\"") && e.contains("load_assignment"),
            "{e}"
        );
    }
}
