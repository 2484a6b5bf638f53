//! The proxy's bootstrap: Envoy's own `Bootstrap` (a YAML or JSON file, as
//! `envoy -c` reads), or one made from flags for a sidecar of a Mizzen pilot.

use std::net::SocketAddr;
use std::path::Path;

use mizzen_xds::Protocol;
use mizzen_xds::pb::envoy::config::bootstrap::v3::Bootstrap as PbBootstrap;
use mizzen_xds::pb::envoy::config::cluster::v3::Cluster as PbCluster;
use mizzen_xds::pb::envoy::config::core::v3::Node;
use mizzen_xds::pb::envoy::config::core::v3::api_config_source::ApiType;
use mizzen_xds::pb::envoy::config::core::v3::grpc_service::TargetSpecifier;
use mizzen_xds::pb::envoy::config::endpoint::v3::lb_endpoint::HostIdentifier;
use mizzen_xds::pb::envoy::config::listener::v3::Listener as PbListener;
use mizzen_xds::pb::envoy::extensions::transport_sockets::tls::v3::Secret as PbSecret;
use mizzen_xds::tls::ClientTls;

use crate::config::socket_address;

/// Why a bootstrap cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum BootstrapError {
    /// The file could not be read.
    #[error("cannot read bootstrap {path}")]
    Read {
        /// The file.
        path: String,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a valid Envoy bootstrap.
    #[error("bootstrap {path}")]
    Parse {
        /// The file.
        path: String,
        /// Why.
        source: mizzen_xds::json::JsonError,
    },
    /// A field holds something the proxy cannot use.
    #[error("bootstrap: {field}: {reason}")]
    Invalid {
        /// The field.
        field: String,
        /// Why.
        reason: String,
    },
}

/// What the proxy starts from.
#[derive(Debug, Clone)]
pub struct Bootstrap {
    /// Who the proxy is (sent to the xDS server).
    pub node: Node,
    /// Listeners that are always there.
    pub listeners: Vec<PbListener>,
    /// Clusters that are always there.
    pub clusters: Vec<PbCluster>,
    /// Secrets that are always there, for TLS contexts to name.
    pub secrets: Vec<PbSecret>,
    /// Where dynamic config comes from, if anywhere.
    pub ads: Option<Ads>,
    /// Where the admin server listens, if anywhere.
    pub admin: Option<SocketAddr>,
    /// The bootstrap as read, for `/config_dump`.
    pub raw: PbBootstrap,
}

/// An ADS server to take config from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ads {
    /// Its URI (`http://127.0.0.1:15010`, `https://127.0.0.1:15012`).
    pub endpoint: String,
    /// SotW (`GRPC`) or Delta (`DELTA_GRPC`).
    pub protocol: Protocol,
    /// TLS to it, verified against these roots and name; plaintext when `None`.
    pub tls: Option<ClientTls>,
}

impl Bootstrap {
    /// Reads an Envoy bootstrap file (YAML or JSON).
    pub fn from_file(path: &Path) -> Result<Bootstrap, BootstrapError> {
        let shown = path.display().to_string();
        let text = std::fs::read_to_string(path).map_err(|source| BootstrapError::Read {
            path: shown.clone(),
            source,
        })?;
        let raw = mizzen_xds::json::bootstrap_from_yaml(&text);
        // The bootstrap is read once; the type descriptors it took are not needed after.
        crate::release_memory();
        Bootstrap::from_pb(raw.map_err(|source| BootstrapError::Parse {
            path: shown,
            source,
        })?)
    }

    /// Reads the parts of an Envoy bootstrap the proxy uses.
    pub fn from_pb(raw: PbBootstrap) -> Result<Bootstrap, BootstrapError> {
        let invalid = |field: &str, reason: String| BootstrapError::Invalid {
            field: field.to_owned(),
            reason,
        };
        let statics = raw.static_resources.clone().unwrap_or_default();
        let admin = raw
            .admin
            .as_ref()
            .and_then(|a| a.address.as_ref())
            .map(|a| socket_address(a).map_err(|r| invalid("admin.address", r)))
            .transpose()?;
        let ads = match raw
            .dynamic_resources
            .as_ref()
            .and_then(|d| d.ads_config.as_ref())
        {
            None => None,
            Some(source) => {
                let protocol = match ApiType::try_from(source.api_type) {
                    Ok(ApiType::Grpc | ApiType::AggregatedGrpc) => Protocol::StateOfTheWorld,
                    Ok(ApiType::DeltaGrpc | ApiType::AggregatedDeltaGrpc) => Protocol::Delta,
                    _ => {
                        return Err(invalid(
                            "dynamic_resources.ads_config.api_type",
                            "only GRPC and DELTA_GRPC are supported".into(),
                        ));
                    }
                };
                let service = source.grpc_services.first().ok_or_else(|| {
                    invalid(
                        "dynamic_resources.ads_config.grpc_services",
                        "is empty".into(),
                    )
                })?;
                let endpoint = match &service.target_specifier {
                    Some(TargetSpecifier::EnvoyGrpc(grpc)) => {
                        let address = cluster_address(&statics.clusters, &grpc.cluster_name)
                            .map_err(|r| {
                                invalid(
                                    "dynamic_resources.ads_config.grpc_services[0].envoy_grpc",
                                    r,
                                )
                            })?;
                        format!("http://{address}")
                    }
                    Some(TargetSpecifier::GoogleGrpc(google)) => {
                        let target = google.target_uri.trim_start_matches("dns:///");
                        format!("http://{target}")
                    }
                    None => {
                        return Err(invalid(
                            "dynamic_resources.ads_config.grpc_services[0]",
                            "names no target".into(),
                        ));
                    }
                };
                Some(Ads {
                    endpoint,
                    protocol,
                    tls: None,
                })
            }
        };
        Ok(Bootstrap {
            node: raw.node.clone().unwrap_or_default(),
            listeners: statics.listeners,
            clusters: statics.clusters,
            secrets: statics.secrets,
            ads,
            admin,
            raw,
        })
    }

    /// A sidecar of the pilot at `pilot` (`host:port`, plaintext as on Istio's 15010),
    /// as `node`, with no static resources: everything comes over ADS.
    pub fn for_pilot(pilot: &str, node: Node, admin: Option<SocketAddr>) -> Bootstrap {
        Bootstrap::pilot(format!("http://{pilot}"), None, node, admin)
    }

    /// A sidecar of the pilot at `pilot` (`host:port`) over TLS verified by `tls`, as on
    /// Istio's 15012.
    pub fn for_pilot_tls(
        pilot: &str,
        tls: ClientTls,
        node: Node,
        admin: Option<SocketAddr>,
    ) -> Bootstrap {
        Bootstrap::pilot(format!("https://{pilot}"), Some(tls), node, admin)
    }

    fn pilot(
        endpoint: String,
        tls: Option<ClientTls>,
        node: Node,
        admin: Option<SocketAddr>,
    ) -> Bootstrap {
        let raw = PbBootstrap {
            node: Some(node.clone()),
            ..PbBootstrap::default()
        };
        Bootstrap {
            node,
            listeners: Vec::new(),
            clusters: Vec::new(),
            secrets: Vec::new(),
            ads: Some(Ads {
                endpoint,
                protocol: Protocol::StateOfTheWorld,
                tls,
            }),
            admin,
            raw,
        }
    }
}

/// The first endpoint of the static cluster `name`.
fn cluster_address(clusters: &[PbCluster], name: &str) -> Result<SocketAddr, String> {
    let cluster = clusters
        .iter()
        .find(|c| c.name == name)
        .ok_or_else(|| format!("static cluster {name:?} is not defined"))?;
    let endpoint = cluster
        .load_assignment
        .iter()
        .flat_map(|a| &a.endpoints)
        .flat_map(|l| &l.lb_endpoints)
        .find_map(|e| match &e.host_identifier {
            Some(HostIdentifier::Endpoint(ep)) => ep.address.as_ref(),
            _ => None,
        })
        .ok_or_else(|| format!("static cluster {name:?} has no endpoint"))?;
    socket_address(endpoint).map_err(|r| format!("cluster {name:?}: {r}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn istio_style_bootstrap_finds_its_ads_server() {
        let yaml = r#"
node: {id: "sidecar~10.0.0.1~productpage-v1.default~default.svc.cluster.local", cluster: productpage}
admin: {address: {socket_address: {address: 127.0.0.1, port_value: 15000}}}
dynamic_resources:
  ads_config:
    api_type: GRPC
    transport_api_version: V3
    grpc_services: [{envoy_grpc: {cluster_name: xds-grpc}}]
  cds_config: {ads: {}, resource_api_version: V3}
  lds_config: {ads: {}, resource_api_version: V3}
static_resources:
  clusters:
  - name: xds-grpc
    type: STATIC
    load_assignment:
      cluster_name: xds-grpc
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 15010}}}}]}]
"#;
        let raw = mizzen_xds::json::bootstrap_from_yaml(yaml).unwrap();
        let b = Bootstrap::from_pb(raw).unwrap();
        assert_eq!(
            b.ads,
            Some(Ads {
                endpoint: "http://127.0.0.1:15010".into(),
                protocol: Protocol::StateOfTheWorld,
                tls: None,
            })
        );
        assert_eq!(b.admin, Some("127.0.0.1:15000".parse().unwrap()));
        assert_eq!(b.clusters.len(), 1);
        assert!(b.node.id.starts_with("sidecar~"));
    }

    #[test]
    fn an_unknown_ads_cluster_is_named() {
        let yaml = r#"
dynamic_resources:
  ads_config: {api_type: GRPC, grpc_services: [{envoy_grpc: {cluster_name: nowhere}}]}
"#;
        let raw = mizzen_xds::json::bootstrap_from_yaml(yaml).unwrap();
        let e = Bootstrap::from_pb(raw).unwrap_err().to_string();
        assert!(e.contains("envoy_grpc") && e.contains("\"nowhere\""), "{e}");
    }
}
