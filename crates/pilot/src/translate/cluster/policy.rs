//! DestinationRule traffic policy → Envoy cluster fields, field by field as Istio maps
//! them (`cluster_traffic_policy.go`): connection pool → circuit breakers and HTTP
//! protocol options, outlier detection, load balancer, HTTP/2 upgrade.

use mizzen_api::networking::{
    ConnectionPoolSettings, ConsistentHashLb, H2UpgradePolicy, LoadBalancerSettings,
    OutlierDetection as IstioOutlier, SimpleLb, TcpKeepalive as IstioKeepalive,
};
use mizzen_api::types::Protocol;
use mizzen_xds::pb::envoy::config::cluster::v3::{
    CircuitBreakers, Cluster, OutlierDetection, UpstreamConnectionOptions,
    circuit_breakers::Thresholds,
    cluster::{
        ClusterDiscoveryType, CommonLbConfig, DiscoveryType, LbConfig, LbPolicy,
        LeastRequestLbConfig, MaglevLbConfig, RingHashLbConfig, RoundRobinLbConfig,
        SlowStartConfig,
        common_lb_config::{LocalityConfigSpecifier, LocalityWeightedLbConfig},
    },
};
use mizzen_xds::pb::envoy::config::core::v3::{
    Http1ProtocolOptions, Http2ProtocolOptions, HttpProtocolOptions as CommonHttpOptions,
    TcpKeepalive,
};
use mizzen_xds::pb::envoy::extensions::upstreams::http::v3::{
    HttpProtocolOptions,
    http_protocol_options::{
        ExplicitHttpConfig, UpstreamProtocolOptions, UseDownstreamHttpConfig,
        explicit_http_config::ProtocolConfig,
    },
};
use mizzen_xds::pb::envoy::r#type::v3::Percent;

use super::proto::{duration, u32v, u64v};

/// Istio's default connect timeout (MeshConfig `connectTimeout`).
pub const DEFAULT_CONNECT_TIMEOUT_SECS: i64 = 10;

/// Envoy's default ring size, which Istio writes out for the deprecated
/// `minimumRingSize` form.
const DEFAULT_MINIMUM_RING_SIZE: u64 = 1024;

/// A cluster being built, with the upstream HTTP protocol options that are packed into
/// `typed_extension_protocol_options` at the end (Istio's `clusterWrapper`).
#[derive(Debug, Clone, Default)]
pub(crate) struct Building {
    /// The cluster.
    pub cluster: Cluster,
    /// `envoy.extensions.upstreams.http.v3.HttpProtocolOptions`, when any is set.
    pub http: Option<HttpProtocolOptions>,
}

/// The key of upstream HTTP options in `typed_extension_protocol_options`.
pub(crate) const HTTP_PROTOCOL_OPTIONS: &str =
    "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";

impl Building {
    /// The cluster's discovery type.
    pub fn discovery_type(&self) -> Option<DiscoveryType> {
        match self.cluster.cluster_discovery_type {
            Some(ClusterDiscoveryType::Type(t)) => DiscoveryType::try_from(t).ok(),
            _ => None,
        }
    }

    /// Sets the discovery type.
    pub fn set_discovery_type(&mut self, t: DiscoveryType) {
        self.cluster.cluster_discovery_type = Some(ClusterDiscoveryType::Type(t as i32));
    }

    /// The HTTP options, created empty when absent.
    fn http_mut(&mut self) -> &mut HttpProtocolOptions {
        self.http.get_or_insert_with(HttpProtocolOptions::default)
    }

    /// True when the upstream speaks HTTP/2 explicitly.
    pub fn is_http2(&self) -> bool {
        matches!(
            self.http
                .as_ref()
                .and_then(|h| h.upstream_protocol_options.as_ref()),
            Some(UpstreamProtocolOptions::ExplicitHttpConfig(
                ExplicitHttpConfig {
                    protocol_config: Some(ProtocolConfig::Http2ProtocolOptions(_))
                }
            ))
        )
    }

    /// Makes the upstream HTTP/2 (`explicit_http_config.http2_protocol_options`).
    pub fn set_http2(&mut self) {
        self.http_mut().upstream_protocol_options = Some(
            UpstreamProtocolOptions::ExplicitHttpConfig(ExplicitHttpConfig {
                protocol_config: Some(ProtocolConfig::Http2ProtocolOptions(
                    Http2ProtocolOptions::default(),
                )),
            }),
        );
    }

    /// Speaks upstream whatever the downstream spoke (`use_downstream_protocol_config`).
    pub fn set_use_downstream_protocol(&mut self) {
        self.http_mut().upstream_protocol_options = Some(use_downstream_protocol());
    }

    /// The finished cluster: HTTP options packed, with an explicit HTTP/1.1 choice when
    /// none was made (Envoy requires one).
    pub fn build(mut self) -> Cluster {
        if let Some(mut http) = self.http.take() {
            if http.upstream_protocol_options.is_none() {
                http.upstream_protocol_options = Some(UpstreamProtocolOptions::ExplicitHttpConfig(
                    ExplicitHttpConfig {
                        protocol_config: Some(ProtocolConfig::HttpProtocolOptions(
                            Http1ProtocolOptions::default(),
                        )),
                    },
                ));
            }
            self.cluster
                .typed_extension_protocol_options
                .insert(HTTP_PROTOCOL_OPTIONS.to_owned(), super::proto::any(&http));
        }
        self.cluster
    }
}

/// `use_downstream_protocol_config` with empty HTTP/1.1 and HTTP/2 options.
pub(crate) fn use_downstream_protocol() -> UpstreamProtocolOptions {
    UpstreamProtocolOptions::UseDownstreamProtocolConfig(UseDownstreamHttpConfig {
        http_protocol_options: Some(Http1ProtocolOptions::default()),
        http2_protocol_options: Some(Http2ProtocolOptions::default()),
        ..UseDownstreamHttpConfig::default()
    })
}

/// Istio's default circuit breaker thresholds: everything unlimited (`u32::MAX`), with
/// remaining-capacity stats.
pub(crate) fn default_thresholds() -> Thresholds {
    Thresholds {
        max_connections: Some(u32v(u32::MAX)),
        max_pending_requests: Some(u32v(u32::MAX)),
        max_requests: Some(u32v(u32::MAX)),
        max_retries: Some(u32v(u32::MAX)),
        track_remaining: true,
        ..Thresholds::default()
    }
}

/// A positive `i32` as `u32`, `None` for zero or less (Istio cannot tell unset from 0).
fn positive(v: i32) -> Option<u32> {
    u32::try_from(v).ok().filter(|v| *v > 0)
}

/// Connection pool settings → connect timeout, circuit breaker thresholds, TCP keepalive
/// and HTTP protocol options. Applied to every cluster, with empty settings when the
/// policy has none, so that Istio's defaults are always written.
pub(crate) fn apply_connection_pool(b: &mut Building, pool: Option<&ConnectionPoolSettings>) {
    let mut threshold = default_thresholds();
    let mut idle_timeout = None;
    let mut max_requests_per_connection = None;
    let mut max_concurrent_streams = None;
    let mut max_connection_duration = None;
    let http = pool.and_then(|p| p.http.as_ref());
    let tcp = pool.and_then(|p| p.tcp.as_ref());
    if let Some(http) = http {
        if let Some(v) = positive(http.http2_max_requests) {
            threshold.max_requests = Some(u32v(v));
        }
        if let Some(v) = positive(http.http1_max_pending_requests) {
            threshold.max_pending_requests = Some(u32v(v));
        }
        if let Some(v) = positive(http.max_retries) {
            threshold.max_retries = Some(u32v(v));
        }
        idle_timeout = http.idle_timeout;
        max_requests_per_connection = positive(http.max_requests_per_connection);
        max_concurrent_streams = positive(http.max_concurrent_streams);
    }
    b.cluster.connect_timeout = Some(super::proto::seconds(DEFAULT_CONNECT_TIMEOUT_SECS));
    if let Some(tcp) = tcp {
        if let Some(t) = tcp.connect_timeout {
            b.cluster.connect_timeout = Some(duration(t));
        }
        if let Some(v) = positive(tcp.max_connections) {
            threshold.max_connections = Some(u32v(v));
        }
        max_connection_duration = tcp.max_connection_duration;
        idle_timeout = idle_timeout.or(tcp.idle_timeout);
        if let Some(keepalive) = &tcp.tcp_keepalive {
            apply_tcp_keepalive(&mut b.cluster, keepalive);
        }
    }
    b.cluster.circuit_breakers = Some(CircuitBreakers {
        thresholds: vec![threshold],
        ..CircuitBreakers::default()
    });
    if idle_timeout.is_some()
        || max_requests_per_connection.is_some()
        || max_concurrent_streams.is_some()
        || max_connection_duration.is_some()
    {
        let http2 = b.is_http2();
        let options = b.http_mut();
        let common = options
            .common_http_protocol_options
            .get_or_insert_with(CommonHttpOptions::default);
        if let Some(t) = idle_timeout {
            common.idle_timeout = Some(duration(t));
        }
        if let Some(v) = max_requests_per_connection {
            common.max_requests_per_connection = Some(u32v(v));
        }
        if let Some(t) = max_connection_duration {
            common.max_connection_duration = Some(duration(t));
        }
        if let (true, Some(v)) = (http2, max_concurrent_streams)
            && let Some(UpstreamProtocolOptions::ExplicitHttpConfig(ExplicitHttpConfig {
                protocol_config: Some(ProtocolConfig::Http2ProtocolOptions(h2)),
            })) = options.upstream_protocol_options.as_mut()
        {
            h2.max_concurrent_streams = Some(u32v(v));
        }
    }
    if http.is_some_and(|h| h.use_client_protocol) {
        b.set_use_downstream_protocol();
    }
}

/// `tcpKeepalive` → `upstream_connection_options.tcp_keepalive` (whole seconds, as Istio).
fn apply_tcp_keepalive(cluster: &mut Cluster, keepalive: &IstioKeepalive) {
    let options = cluster
        .upstream_connection_options
        .get_or_insert_with(UpstreamConnectionOptions::default);
    let tcp = options
        .tcp_keepalive
        .get_or_insert_with(TcpKeepalive::default);
    if keepalive.probes > 0 {
        tcp.keepalive_probes = Some(u32v(keepalive.probes));
    }
    let secs =
        |d: mizzen_api::types::Duration| u32v(u32::try_from(d.get().as_secs()).unwrap_or(u32::MAX));
    if let Some(t) = keepalive.time {
        tcp.keepalive_time = Some(secs(t));
    }
    if let Some(t) = keepalive.interval {
        tcp.keepalive_interval = Some(secs(t));
    }
}

/// `h2UpgradePolicy: UPGRADE` makes the cluster HTTP/2 (the mesh default is not to
/// upgrade); `DO_NOT_UPGRADE` or a non-HTTP port leaves it alone.
pub(crate) fn apply_h2_upgrade(b: &mut Building, pool: Option<&ConnectionPoolSettings>) {
    let policy = pool
        .and_then(|p| p.http.as_ref())
        .map(|h| h.h2_upgrade_policy);
    if policy == Some(H2UpgradePolicy::Upgrade) {
        b.set_http2();
    }
}

/// Outlier detection → Envoy's, with success-rate ejection off and enforcement at 100%
/// for the consecutive-error detectors that are set; `minHealthPercent` becomes the
/// healthy panic threshold.
pub(crate) fn apply_outlier_detection(cluster: &mut Cluster, outlier: Option<&IstioOutlier>) {
    let Some(outlier) = outlier else {
        return;
    };
    let enforcing = |v: u32| u32v(if v > 0 { 100 } else { 0 });
    let mut out = OutlierDetection {
        enforcing_success_rate: Some(u32v(0)),
        ..OutlierDetection::default()
    };
    if let Some(v) = outlier.consecutive_5xx_errors {
        out.consecutive_5xx = Some(u32v(v));
        out.enforcing_consecutive_5xx = Some(enforcing(v));
    }
    if let Some(v) = outlier.consecutive_gateway_errors {
        out.consecutive_gateway_failure = Some(u32v(v));
        out.enforcing_consecutive_gateway_failure = Some(enforcing(v));
    }
    out.interval = outlier.interval.map(duration);
    out.base_ejection_time = outlier.base_ejection_time.map(duration);
    if let Some(v) = positive(outlier.max_ejection_percent) {
        out.max_ejection_percent = Some(u32v(v));
    }
    if outlier.split_external_local_origin_errors {
        out.split_external_local_origin_errors = true;
        if let Some(v) = outlier.consecutive_local_origin_failures.filter(|v| *v > 0) {
            out.consecutive_local_origin_failure = Some(u32v(v));
            out.enforcing_consecutive_local_origin_failure = Some(u32v(100));
        }
        out.enforcing_local_origin_success_rate = Some(u32v(0));
    }
    cluster.outlier_detection = Some(out);
    if outlier.min_health_percent >= 0 {
        common_lb_config(cluster).healthy_panic_threshold = Some(Percent {
            value: f64::from(outlier.min_health_percent),
        });
    }
}

/// The cluster's `common_lb_config`, created when absent.
pub(crate) fn common_lb_config(cluster: &mut Cluster) -> &mut CommonLbConfig {
    cluster
        .common_lb_config
        .get_or_insert_with(CommonLbConfig::default)
}

/// Turns on locality-weighted load balancing (`locality_weighted_lb_config: {}`), which
/// Istio does when `distribute` is set, or failover is set and can happen (outlier
/// detection present).
pub(crate) fn apply_locality_weighted(
    cluster: &mut Cluster,
    setting: Option<&mizzen_api::networking::LocalityLoadBalancerSetting>,
) {
    let Some(setting) = setting else {
        return;
    };
    let failover = cluster.outlier_detection.is_some()
        && (!setting.failover.is_empty() || !setting.failover_priority.is_empty());
    if failover || !setting.distribute.is_empty() {
        common_lb_config(cluster).locality_config_specifier = Some(
            LocalityConfigSpecifier::LocalityWeightedLbConfig(LocalityWeightedLbConfig {}),
        );
    }
}

/// The load balancer: `simple` (LEAST_REQUEST when unset, as Istio's default), slow start,
/// consistent hashing (ring hash or Maglev), and `PASSTHROUGH` turning the cluster into
/// ORIGINAL_DST. Original-destination clusters always use the cluster-provided balancer.
pub(crate) fn apply_load_balancer(b: &mut Building, lb: Option<&LoadBalancerSettings>) {
    if b.discovery_type() == Some(DiscoveryType::OriginalDst) {
        b.cluster.lb_policy = LbPolicy::ClusterProvided as i32;
        return;
    }
    let slow_start = lb.and_then(slow_start);
    match lb.and_then(|lb| lb.simple) {
        Some(SimpleLb::Random) => b.cluster.lb_policy = LbPolicy::Random as i32,
        Some(SimpleLb::RoundRobin) => {
            b.cluster.lb_policy = LbPolicy::RoundRobin as i32;
            b.cluster.lb_config = slow_start.map(|s| {
                LbConfig::RoundRobinLbConfig(RoundRobinLbConfig {
                    slow_start_config: Some(s),
                })
            });
        }
        Some(SimpleLb::Passthrough) => {
            b.cluster.lb_policy = LbPolicy::ClusterProvided as i32;
            b.set_discovery_type(DiscoveryType::OriginalDst);
            b.cluster.load_assignment = None;
        }
        Some(SimpleLb::LeastConn | SimpleLb::LeastRequest | SimpleLb::Unspecified) | None => {
            b.cluster.lb_policy = LbPolicy::LeastRequest as i32;
            b.cluster.lb_config = slow_start.map(|s| {
                LbConfig::LeastRequestLbConfig(LeastRequestLbConfig {
                    slow_start_config: Some(s),
                    ..LeastRequestLbConfig::default()
                })
            });
        }
    }
    if let Some(hash) = lb.and_then(|lb| lb.consistent_hash.as_ref()) {
        apply_consistent_hash(&mut b.cluster, hash);
    }
}

/// `warmupDurationSecs` or `warmup` → slow start.
fn slow_start(lb: &LoadBalancerSettings) -> Option<SlowStartConfig> {
    if let Some(warmup) = &lb.warmup {
        return Some(SlowStartConfig {
            slow_start_window: warmup.duration.map(duration),
            min_weight_percent: warmup.minimum_percent.map(|value| Percent { value }),
            ..SlowStartConfig::default()
        });
    }
    lb.warmup_duration_secs.map(|d| SlowStartConfig {
        slow_start_window: Some(duration(d)),
        ..SlowStartConfig::default()
    })
}

/// Consistent hashing on the cluster side: Maglev (with `tableSize`), ring hash (with
/// `minimumRingSize`), or ring hash with the deprecated top-level ring size (1024 when
/// unset). The hash key itself goes on routes (see [`super::hash`]).
fn apply_consistent_hash(cluster: &mut Cluster, hash: &ConsistentHashLb) {
    if let Some(maglev) = &hash.maglev {
        cluster.lb_policy = LbPolicy::Maglev as i32;
        cluster.lb_config = (maglev.table_size != 0).then(|| {
            LbConfig::MaglevLbConfig(MaglevLbConfig {
                table_size: Some(u64v(maglev.table_size)),
            })
        });
    } else if let Some(ring) = &hash.ring_hash {
        cluster.lb_policy = LbPolicy::RingHash as i32;
        cluster.lb_config = (ring.minimum_ring_size != 0).then(|| {
            LbConfig::RingHashLbConfig(RingHashLbConfig {
                minimum_ring_size: Some(u64v(ring.minimum_ring_size)),
                ..RingHashLbConfig::default()
            })
        });
    } else {
        let size = if hash.minimum_ring_size != 0 {
            hash.minimum_ring_size
        } else {
            DEFAULT_MINIMUM_RING_SIZE
        };
        cluster.lb_policy = LbPolicy::RingHash as i32;
        cluster.lb_config = Some(LbConfig::RingHashLbConfig(RingHashLbConfig {
            minimum_ring_size: Some(u64v(size)),
            ..RingHashLbConfig::default()
        }));
    }
}

/// Istio's `IsHTTP2`: ports whose upstream is always HTTP/2.
pub(crate) fn is_http2_protocol(protocol: Option<Protocol>) -> bool {
    matches!(
        protocol,
        Some(Protocol::Http2 | Protocol::Grpc | Protocol::GrpcWeb)
    )
}
