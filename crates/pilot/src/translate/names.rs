//! Istio's names for generated Envoy resources; other tools (istioctl, Kiali, dashboards)
//! parse them, so they are kept exactly.

use std::fmt;

/// Traffic direction of a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Direction {
    /// Towards a service (`outbound|…`).
    Outbound,
    /// Towards the local workload (`inbound|…`).
    Inbound,
}

/// A cluster name `direction|port|subset|host`, e.g.
/// `outbound|9080|v1|reviews.default.svc.cluster.local` or `inbound|9080||`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClusterName<'a> {
    /// Outbound or inbound.
    pub direction: Direction,
    /// The service port.
    pub port: u16,
    /// The DestinationRule subset, or empty.
    pub subset: &'a str,
    /// The service hostname, or empty (inbound).
    pub host: &'a str,
}

impl ClusterName<'_> {
    /// Parses `direction|port|subset|host`.
    pub fn parse(name: &str) -> Option<ClusterName<'_>> {
        let mut parts = name.split('|');
        let direction = match parts.next()? {
            "outbound" => Direction::Outbound,
            "inbound" => Direction::Inbound,
            _ => return None,
        };
        let port = parts.next()?.parse().ok()?;
        let subset = parts.next()?;
        let host = parts.next()?;
        parts.next().is_none().then_some(ClusterName {
            direction,
            port,
            subset,
            host,
        })
    }
}

impl fmt::Display for ClusterName<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let direction = match self.direction {
            Direction::Outbound => "outbound",
            Direction::Inbound => "inbound",
        };
        write!(f, "{direction}|{}|{}|{}", self.port, self.subset, self.host)
    }
}

/// The outbound cluster for `host`'s `port` (and `subset`, or `""`).
pub fn outbound_cluster(port: u16, subset: &str, host: &str) -> String {
    ClusterName {
        direction: Direction::Outbound,
        port,
        subset,
        host,
    }
    .to_string()
}

/// The inbound cluster for the workload's `port`: `inbound|9080||`.
pub fn inbound_cluster(port: u16) -> String {
    format!("inbound|{port}||")
}

/// Sends traffic to its original destination (unknown hosts with `ALLOW_ANY`).
pub const PASSTHROUGH_CLUSTER: &str = "PassthroughCluster";
/// Drops traffic (unknown hosts with `REGISTRY_ONLY`).
pub const BLACKHOLE_CLUSTER: &str = "BlackHoleCluster";
/// Sends inbound traffic for undeclared ports to the workload as addressed.
pub const INBOUND_PASSTHROUGH_CLUSTER: &str = "InboundPassthroughCluster";
/// The outbound capture listener (port 15001).
pub const VIRTUAL_OUTBOUND_LISTENER: &str = "virtualOutbound";
/// The inbound capture listener (port 15006).
pub const VIRTUAL_INBOUND_LISTENER: &str = "virtualInbound";

/// A listener name `address_port`, e.g. `0.0.0.0_9080`.
pub fn listener_name(address: &str, port: u16) -> String {
    format!("{address}_{port}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cluster_names_round_trip() {
        let name = outbound_cluster(9080, "v1", "reviews.default.svc.cluster.local");
        assert_eq!(name, "outbound|9080|v1|reviews.default.svc.cluster.local");
        let parsed = ClusterName::parse(&name).unwrap();
        assert_eq!(
            (parsed.port, parsed.subset, parsed.direction),
            (9080, "v1", Direction::Outbound)
        );
        assert_eq!(inbound_cluster(9080), "inbound|9080||");
        assert_eq!(ClusterName::parse("inbound|9080||").unwrap().host, "");
        assert!(ClusterName::parse("PassthroughCluster").is_none());
        assert_eq!(listener_name("0.0.0.0", 9080), "0.0.0.0_9080");
    }
}
