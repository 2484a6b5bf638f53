//! Who is asking for config: a proxy as Istio identifies it, from its node id
//! (`sidecar~10.1.0.7~reviews-v1-abc.default~default.svc.cluster.local`) and metadata.

use std::net::IpAddr;

use mizzen_api::types::Labels;

/// What the proxy is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NodeType {
    /// A workload's sidecar.
    Sidecar,
    /// A standalone gateway (ingress or egress).
    Router,
}

/// How traffic reaches the proxy (`INTERCEPTION_MODE` metadata).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum InterceptionMode {
    /// iptables REDIRECT to 15001/15006, original destination from `SO_ORIGINAL_DST`.
    #[default]
    Redirect,
    /// iptables TPROXY.
    Tproxy,
    /// No capture: the proxy binds the workload's ports and acts as an HTTP proxy; what
    /// Mizzen's local mode uses (Sidecar `captureMode: NONE`).
    None,
}

/// A connected proxy and everything translation needs to know about it.
#[derive(Debug, Clone, PartialEq)]
pub struct Proxy {
    /// Sidecar or gateway.
    pub node_type: NodeType,
    /// The node id as sent.
    pub id: String,
    /// The workload's name (pod or WorkloadEntry name), from the node id.
    pub name: String,
    /// The namespace its config comes from.
    pub namespace: String,
    /// Its IP addresses; the first is its primary.
    pub ips: Vec<IpAddr>,
    /// The DNS domain of its namespace (`default.svc.cluster.local`).
    pub dns_domain: String,
    /// The workload's labels (`LABELS`).
    pub labels: Labels,
    /// The workload's service account (`SERVICE_ACCOUNT`).
    pub service_account: String,
    /// The cluster it runs in (`CLUSTER_ID`).
    pub cluster_id: String,
    /// How traffic reaches it (`INTERCEPTION_MODE`).
    pub interception_mode: InterceptionMode,
    /// The Istio version its agent reports (`ISTIO_VERSION`); empty for a plain Envoy,
    /// which lacks istio-proxy's own filters.
    pub istio_version: String,
}

/// Why a node could not be understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProxyError {
    /// The node id is not `type~ip~name.namespace~domain`.
    #[error(
        "node id {0:?} is not Istio's `sidecar~IP~NAME.NAMESPACE~NAMESPACE.svc.cluster.local` format"
    )]
    NodeId(String),
    /// The node type is neither `sidecar` nor `router`.
    #[error("node id {id:?}: unknown node type {kind:?} (expected sidecar or router)")]
    NodeType {
        /// The node id.
        id: String,
        /// The type it named.
        kind: String,
    },
    /// An IP address in the node id or `INSTANCE_IPS` does not parse.
    #[error("node id {id:?}: {ip:?} is not an IP address")]
    Ip {
        /// The node id.
        id: String,
        /// The bad address.
        ip: String,
    },
}

impl Proxy {
    /// Parses Istio's node id. Metadata (labels, service account, interception mode…)
    /// is filled in by the caller from the node's metadata.
    pub fn from_node_id(id: &str) -> Result<Proxy, ProxyError> {
        let parts: Vec<&str> = id.split('~').collect();
        let [kind, ip, workload, domain] = parts[..] else {
            return Err(ProxyError::NodeId(id.to_owned()));
        };
        let node_type = match kind {
            "sidecar" => NodeType::Sidecar,
            "router" => NodeType::Router,
            other => {
                return Err(ProxyError::NodeType {
                    id: id.to_owned(),
                    kind: other.to_owned(),
                });
            }
        };
        let ip: IpAddr = ip.parse().map_err(|_| ProxyError::Ip {
            id: id.to_owned(),
            ip: ip.to_owned(),
        })?;
        let (name, namespace) = workload
            .rsplit_once('.')
            .ok_or_else(|| ProxyError::NodeId(id.to_owned()))?;
        if name.is_empty() || namespace.is_empty() {
            return Err(ProxyError::NodeId(id.to_owned()));
        }
        Ok(Proxy {
            node_type,
            id: id.to_owned(),
            name: name.to_owned(),
            namespace: namespace.to_owned(),
            ips: vec![ip],
            dns_domain: domain.to_owned(),
            labels: Labels::new(),
            service_account: String::new(),
            cluster_id: String::new(),
            interception_mode: InterceptionMode::default(),
            istio_version: String::new(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_istio_node_ids() {
        let p = Proxy::from_node_id(
            "sidecar~10.1.0.7~reviews-v1-abc.default~default.svc.cluster.local",
        )
        .unwrap();
        assert_eq!(p.node_type, NodeType::Sidecar);
        assert_eq!(
            (p.name.as_str(), p.namespace.as_str()),
            ("reviews-v1-abc", "default")
        );
        assert_eq!(p.ips, ["10.1.0.7".parse::<IpAddr>().unwrap()]);
        assert_eq!(p.dns_domain, "default.svc.cluster.local");
        let gw = Proxy::from_node_id(
            "router~127.0.0.1~istio-ingressgateway-1.istio-system~istio-system.svc.cluster.local",
        )
        .unwrap();
        assert_eq!(gw.node_type, NodeType::Router);
        assert_eq!(gw.name, "istio-ingressgateway-1");
    }

    #[test]
    fn refuses_malformed_ids_with_the_reason() {
        for bad in [
            "",
            "sidecar~1.2.3.4~name",
            "sidecar~1.2.3.4~noname~d",
            "sidecar~x~a.b~d",
        ] {
            assert!(Proxy::from_node_id(bad).is_err(), "{bad}");
        }
        let e = Proxy::from_node_id("waypoint~1.2.3.4~a.b~d").unwrap_err();
        assert!(e.to_string().contains("unknown node type \"waypoint\""));
    }
}
