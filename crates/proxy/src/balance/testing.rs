//! Builders for clusters and load assignments, and the statistical assertion the
//! balancer tests share.

use mizzen_xds::pb::envoy::config::cluster::v3::Cluster;
use mizzen_xds::pb::envoy::config::cluster::v3::cluster::{
    CommonLbConfig, LbPolicy,
    common_lb_config::{LocalityConfigSpecifier, LocalityWeightedLbConfig},
};
use mizzen_xds::pb::envoy::config::core::v3::{
    Address, HealthStatus, Locality as PbLocality, SocketAddress, address,
    socket_address::PortSpecifier,
};
use mizzen_xds::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint as PbEndpoint, LbEndpoint, LocalityLbEndpoints,
    lb_endpoint::HostIdentifier,
};
use mizzen_xds::pb::envoy::r#type::v3::Percent;
use mizzen_xds::pb::google::protobuf::UInt32Value;

/// An endpoint at `ip:port` with the given weight and health.
pub fn endpoint(ip: &str, port: u32, weight: u32, health: HealthStatus) -> LbEndpoint {
    LbEndpoint {
        health_status: health as i32,
        load_balancing_weight: Some(UInt32Value { value: weight }),
        host_identifier: Some(HostIdentifier::Endpoint(PbEndpoint {
            address: Some(socket_address(ip, port)),
            ..PbEndpoint::default()
        })),
        ..LbEndpoint::default()
    }
}

/// A healthy endpoint of weight 1 at `127.0.0.1:port`.
pub fn healthy(port: u32) -> LbEndpoint {
    endpoint("127.0.0.1", port, 1, HealthStatus::Healthy)
}

/// An endpoint of weight 1 at `127.0.0.1:port` with the given health.
pub fn with_health(port: u32, health: HealthStatus) -> LbEndpoint {
    endpoint("127.0.0.1", port, 1, health)
}

/// A healthy endpoint at `127.0.0.1:port` with the given weight.
pub fn weighted(port: u32, weight: u32) -> LbEndpoint {
    endpoint("127.0.0.1", port, weight, HealthStatus::Healthy)
}

/// The address `ip:port`.
pub fn socket_address(ip: &str, port: u32) -> Address {
    Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: ip.to_owned(),
            port_specifier: Some(PortSpecifier::PortValue(port)),
            ..SocketAddress::default()
        })),
    }
}

/// A locality group in zone `zone` at `priority`, weighted when `weight` is given.
pub fn group(
    zone: &str,
    priority: u32,
    weight: Option<u32>,
    endpoints: Vec<LbEndpoint>,
) -> LocalityLbEndpoints {
    LocalityLbEndpoints {
        locality: Some(PbLocality {
            region: "region".to_owned(),
            zone: zone.to_owned(),
            sub_zone: String::new(),
        }),
        lb_endpoints: endpoints,
        load_balancing_weight: weight.map(|value| UInt32Value { value }),
        priority,
        ..LocalityLbEndpoints::default()
    }
}

/// An assignment of the given groups.
pub fn assignment(groups: Vec<LocalityLbEndpoints>) -> ClusterLoadAssignment {
    ClusterLoadAssignment {
        cluster_name: "test".to_owned(),
        endpoints: groups,
        ..ClusterLoadAssignment::default()
    }
}

/// An assignment of one priority-0 group.
pub fn flat(endpoints: Vec<LbEndpoint>) -> ClusterLoadAssignment {
    assignment(vec![group("a", 0, None, endpoints)])
}

/// A cluster named "test" with the given policy and Envoy's defaults otherwise.
pub fn cluster(policy: LbPolicy) -> Cluster {
    Cluster {
        name: "test".to_owned(),
        lb_policy: policy as i32,
        ..Cluster::default()
    }
}

/// The common config of `cluster`, created if absent.
pub fn common(cluster: &mut Cluster) -> &mut CommonLbConfig {
    cluster
        .common_lb_config
        .get_or_insert_with(CommonLbConfig::default)
}

/// Turns on locality-weighted balancing.
pub fn locality_weighted(mut cluster: Cluster) -> Cluster {
    common(&mut cluster).locality_config_specifier = Some(
        LocalityConfigSpecifier::LocalityWeightedLbConfig(LocalityWeightedLbConfig {}),
    );
    cluster
}

/// Sets the healthy panic threshold, in percent.
pub fn panic_threshold(mut cluster: Cluster, percent: f64) -> Cluster {
    common(&mut cluster).healthy_panic_threshold = Some(Percent { value: percent });
    cluster
}

/// Asserts that `count` successes in `n` trials of probability `p` is within five
/// standard deviations of the mean (`5 × sqrt(n p (1 - p))`); `p` of 0 or 1 must be
/// met exactly.
#[track_caller]
pub fn assert_binomial(count: usize, n: usize, p: f64, what: &str) {
    let expected = n as f64 * p;
    let tolerance = 5.0 * (n as f64 * p * (1.0 - p)).sqrt();
    assert!(
        (count as f64 - expected).abs() <= tolerance,
        "{what}: {count} of {n}, expected {expected:.1} ± {tolerance:.1}"
    );
}

/// How many of `n` picks land on each endpoint, by index; `hash` gives each pick's hash.
pub fn pick_counts(
    balancer: &super::Balancer,
    n: usize,
    mut hash: impl FnMut() -> Option<u64>,
) -> Vec<usize> {
    let mut counts = vec![0; balancer.endpoints().len()];
    for _ in 0..n {
        let picked = balancer.pick(hash()).expect("an endpoint is usable");
        counts[picked.index()] += 1;
    }
    counts
}
