//! Services and endpoints, whichever kind of config they came from.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;

use mizzen_api::types::{Labels, Protocol};

/// A fully qualified service name (`reviews.default.svc.cluster.local`,
/// `api.example.com`, `*.example.com`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Hostname(Arc<str>);

impl Hostname {
    /// Wraps a fully qualified name (lowercased, as Istio compares hosts).
    pub fn new(name: &str) -> Self {
        Self(name.to_ascii_lowercase().into())
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// True for a wildcard name (`*.example.com`, `*`).
    pub fn is_wildcard(&self) -> bool {
        self.0.starts_with('*')
    }

    /// Istio's host matching: equal, or `self` is a wildcard that covers `other`
    /// (`*.example.com` matches `a.example.com` and `*.b.example.com`).
    pub fn matches(&self, other: &Hostname) -> bool {
        if self == other || self.as_str() == "*" {
            return true;
        }
        match self.0.strip_prefix('*') {
            Some(suffix) => other.0.trim_start_matches('*').ends_with(suffix),
            None => false,
        }
    }
}

impl fmt::Display for Hostname {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// One port of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServicePort {
    /// The port's name (`http`, `grpc-web`…); Istio derives the protocol from it when
    /// no protocol or `appProtocol` is given.
    pub name: String,
    /// The port clients connect to.
    pub port: u16,
    /// The protocol, or `None` when it must be sniffed.
    pub protocol: Option<Protocol>,
}

/// How a service's endpoints are found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// Endpoints come from the registry and are balanced by the proxy (EDS).
    ClientSideLb,
    /// The hostname (or each endpoint's address) is resolved by DNS, all addresses used.
    Dns,
    /// The hostname is resolved by DNS and one address used per connection.
    DnsRoundRobin,
    /// Connect to the address the caller asked for (ServiceEntry `resolution: NONE`).
    Passthrough,
}

/// Inside or outside the mesh, which decides mTLS and telemetry defaults.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Location {
    /// Part of the mesh: endpoints run sidecars.
    MeshInternal,
    /// Outside the mesh.
    MeshExternal,
}

/// A service, from a Kubernetes Service or a ServiceEntry host.
#[derive(Debug, Clone, PartialEq)]
pub struct Service {
    /// The fully qualified name.
    pub hostname: Hostname,
    /// The namespace of the object that defined it.
    pub namespace: String,
    /// Ports, in declaration order.
    pub ports: Vec<ServicePort>,
    /// Virtual IPs (Kubernetes cluster IPs, ServiceEntry addresses; may be CIDRs).
    pub addresses: Vec<String>,
    /// How endpoints are found.
    pub resolution: Resolution,
    /// Inside or outside the mesh.
    pub location: Location,
    /// Namespaces the service is visible to: `*` (all), `.` resolved to its own, or names.
    pub export_to: Vec<String>,
    /// The defining object's labels.
    pub labels: Labels,
    /// Identities its workloads run as (`spiffe://…` or SANs from a ServiceEntry).
    pub service_accounts: Vec<String>,
}

impl Service {
    /// The port numbered `port`, if the service has it.
    pub fn port(&self, port: u16) -> Option<&ServicePort> {
        self.ports.iter().find(|p| p.port == port)
    }
}

/// Whether an endpoint may receive traffic.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum HealthStatus {
    /// Ready.
    #[default]
    Healthy,
    /// Not ready; sent to proxies so that they know it exists.
    Unhealthy,
}

/// One instance of a service on one port: where to connect, and what it is.
#[derive(Debug, Clone, PartialEq)]
pub struct Endpoint {
    /// IP address, or hostname for DNS-resolved services, or `unix://` path.
    pub address: String,
    /// The port to connect to (the service port's target on this endpoint).
    pub port: u16,
    /// The service port (by name) this endpoint serves.
    pub service_port_name: String,
    /// The workload's labels (used to select DestinationRule subsets).
    pub labels: Labels,
    /// `region/zone/subzone`, possibly empty.
    pub locality: String,
    /// Relative load-balancing weight (1 when unset).
    pub weight: u32,
    /// The workload's service account, when known.
    pub service_account: String,
    /// The network the endpoint is on, when set.
    pub network: String,
    /// Ready or not.
    pub health: HealthStatus,
    /// The workload's name (Pod or WorkloadEntry), for debugging and telemetry.
    pub workload: String,
    /// The workload's namespace.
    pub workload_namespace: String,
}

impl Endpoint {
    /// The address as an IP, when it is one.
    pub fn ip(&self) -> Option<IpAddr> {
        self.address.parse().ok()
    }
}

/// Endpoints of one service, keyed by service port number.
pub type EndpointsByPort = BTreeMap<u16, Vec<Endpoint>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_hosts_match_as_istio_does() {
        let h = Hostname::new;
        assert!(h("*.example.com").matches(&h("a.example.com")));
        assert!(h("*.example.com").matches(&h("*.b.example.com")));
        assert!(!h("*.example.com").matches(&h("example.com")));
        assert!(h("*").matches(&h("anything.local")));
        assert!(
            h("Reviews.Default.svc.cluster.local").matches(&h("reviews.default.svc.cluster.local"))
        );
        assert!(!h("a.example.com").matches(&h("*.example.com")));
    }
}
