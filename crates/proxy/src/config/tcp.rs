//! The TCP proxy (`envoy.filters.network.tcp_proxy`): a chain's connections relayed as
//! bytes to one cluster, or to one of several by weight.

use std::sync::Arc;
use std::time::Duration;

use mizzen_xds::pb::envoy::extensions::filters::network::tcp_proxy::v3::{
    TcpProxy as PbTcpProxy, tcp_proxy::ClusterSpecifier,
};

use super::duration;
use crate::access_log::AccessLog;
use crate::authz::NetworkAuthz;
use crate::metrics::TcpTelemetry;

/// Envoy's default idle timeout of proxied TCP connections.
const DEFAULT_IDLE_TIMEOUT: Duration = Duration::from_secs(3600);

/// One TCP proxy, compiled.
#[derive(Debug, Clone)]
pub struct TcpProxy {
    /// The prefix of its stats (`tcp.<stat_prefix>.…`).
    pub stat_prefix: String,
    /// Where connections go.
    pub target: TcpTarget,
    /// A connection with no bytes either way for this long is closed (none: never).
    pub idle_timeout: Option<Duration>,
    /// The network authorization filters before it, in order: a connection any of them
    /// denies is closed before an upstream is chosen.
    pub authz: Arc<[NetworkAuthz]>,
    /// Istio's TCP metrics, when `istio.stats` precedes the proxy in its chain.
    pub telemetry: Option<Arc<TcpTelemetry>>,
    /// Its access loggers, one line per connection.
    pub access_log: Arc<AccessLog>,
}

/// Where a TCP proxy sends connections.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TcpTarget {
    /// One cluster.
    Cluster(String),
    /// Clusters by weight; the weights sum to `total` (> 0).
    Weighted {
        /// Cluster names and weights.
        clusters: Vec<(String, u32)>,
        /// The sum of the weights.
        total: u64,
    },
}

impl TcpTarget {
    /// The cluster for a connection, given a uniformly random `draw`.
    pub fn pick(&self, draw: u64) -> &str {
        match self {
            TcpTarget::Cluster(name) => name,
            TcpTarget::Weighted { clusters, total } => {
                let mut point = draw % total;
                for (name, weight) in clusters {
                    if point < u64::from(*weight) {
                        return name;
                    }
                    point -= u64::from(*weight);
                }
                &clusters[clusters.len() - 1].0
            }
        }
    }
}

impl TcpProxy {
    /// Compiles a TCP proxy behind the network authorization filters `authz`, with the
    /// `telemetry` of the filters before it; errors are `(field, reason)`.
    pub fn compile(
        raw: &PbTcpProxy,
        authz: Vec<NetworkAuthz>,
        telemetry: Option<TcpTelemetry>,
    ) -> Result<TcpProxy, (String, String)> {
        let field = |f: &str, r: String| (f.to_owned(), r);
        let target = match &raw.cluster_specifier {
            Some(ClusterSpecifier::Cluster(name)) if !name.is_empty() => {
                TcpTarget::Cluster(name.clone())
            }
            Some(ClusterSpecifier::WeightedClusters(w)) => {
                let clusters: Vec<(String, u32)> = w
                    .clusters
                    .iter()
                    .filter(|c| c.weight > 0)
                    .map(|c| (c.name.clone(), c.weight))
                    .collect();
                let total = clusters.iter().map(|(_, w)| u64::from(*w)).sum();
                if total == 0 {
                    return Err(field("weighted_clusters", "the weights sum to 0".into()));
                }
                TcpTarget::Weighted { clusters, total }
            }
            _ => return Err(field("cluster", "no cluster is named".into())),
        };
        let idle_timeout = match &raw.idle_timeout {
            Some(d) => {
                Some(duration(d).map_err(|r| field("idle_timeout", r))?).filter(|d| !d.is_zero())
            }
            None => Some(DEFAULT_IDLE_TIMEOUT),
        };
        let access_log =
            AccessLog::compile(&raw.access_log).map_err(|e| (e.field_path(), e.reason))?;
        Ok(TcpProxy {
            access_log: Arc::new(access_log),
            stat_prefix: raw.stat_prefix.clone(),
            target,
            idle_timeout,
            authz: authz.into(),
            telemetry: telemetry.map(Arc::new),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mizzen_xds::pb::envoy::extensions::filters::network::tcp_proxy::v3::tcp_proxy::{
        WeightedCluster, weighted_cluster::ClusterWeight,
    };

    #[test]
    fn weighted_picks_follow_the_weights() {
        let raw = PbTcpProxy {
            cluster_specifier: Some(ClusterSpecifier::WeightedClusters(WeightedCluster {
                clusters: vec![
                    ClusterWeight {
                        name: "a".into(),
                        weight: 1,
                        ..Default::default()
                    },
                    ClusterWeight {
                        name: "b".into(),
                        weight: 3,
                        ..Default::default()
                    },
                ],
            })),
            ..Default::default()
        };
        let proxy = TcpProxy::compile(&raw, Vec::new(), None).unwrap();
        // Draws are uniform over [0, 4): 0 → a, 1..4 → b.
        assert_eq!(proxy.target.pick(0), "a");
        assert_eq!(proxy.target.pick(1), "b");
        assert_eq!(proxy.target.pick(7), "b");
        assert_eq!(proxy.target.pick(8), "a");
        assert_eq!(proxy.idle_timeout, Some(DEFAULT_IDLE_TIMEOUT));
    }

    #[test]
    fn a_proxy_without_cluster_is_refused() {
        let (field, _) = TcpProxy::compile(&PbTcpProxy::default(), Vec::new(), None).unwrap_err();
        assert_eq!(field, "cluster");
    }
}
