//! The network filters before a TCP proxy that decide whether a connection goes on:
//! RBAC (`envoy.filters.network.rbac`) and ext_authz (`envoy.filters.network.ext_authz`),
//! in the chain's order, as Istio emits them for TCP ports.

use mizzen_xds::pb::envoy::config::listener::v3::{Filter, filter};
use mizzen_xds::pb::envoy::extensions::filters::network::ext_authz::v3::ExtAuthz as PbNetworkExtAuthz;
use mizzen_xds::pb::envoy::extensions::filters::network::rbac::v3::Rbac as PbNetworkRbac;

use super::ext_authz::{ExtAuthz, NETWORK_EXT_AUTHZ};
use super::rbac::{NETWORK_RBAC, Rbac};
use super::{Connection, Metadata, Subject, decode};
use crate::Shared;
use crate::route::Invalid;
use crate::stats::Stats;

/// One network authorization filter, compiled.
#[derive(Debug)]
pub enum NetworkAuthz {
    /// Network RBAC.
    Rbac(Rbac),
    /// Network ext_authz (gRPC).
    ExtAuthz(Box<ExtAuthz>),
}

impl NetworkAuthz {
    /// Compiles a network filter that runs before a chain's TCP proxy; errors are
    /// `(field, reason)` within the filter.
    pub(crate) fn compile(f: &Filter, stats: &Stats) -> Result<NetworkAuthz, (String, String)> {
        let Some(filter::ConfigType::TypedConfig(any)) = &f.config_type else {
            return Err(("typed_config".into(), "is missing".into()));
        };
        let placed = |e: Invalid| match e.field.as_str() {
            "" => ("typed_config".to_owned(), e.problem.to_string()),
            inner => (format!("typed_config.{inner}"), e.problem.to_string()),
        };
        match f.name.as_str() {
            NETWORK_RBAC => decode::<PbNetworkRbac>(any)
                .and_then(|c| Rbac::network(&c, stats))
                .map(NetworkAuthz::Rbac)
                .map_err(placed),
            NETWORK_EXT_AUTHZ => decode::<PbNetworkExtAuthz>(any)
                .and_then(|c| ExtAuthz::network(&c, stats))
                .map(|e| NetworkAuthz::ExtAuthz(Box::new(e)))
                .map_err(placed),
            other => Err((
                "name".into(),
                format!("network filter {other:?} is not supported"),
            )),
        }
    }
}

/// Whether every filter of `filters` lets `connection` through, in order (RBAC's shadow
/// result tells ext_authz whether to check, as in Istio's CUSTOM action).
pub async fn admit(filters: &[NetworkAuthz], shared: &Shared, connection: Connection<'_>) -> bool {
    let subject = Subject {
        connection,
        remote: connection.source.ip().to_canonical(),
        request: None,
    };
    let mut metadata = Metadata::default();
    for filter in filters {
        let admitted = match filter {
            NetworkAuthz::Rbac(rbac) => rbac.check(&subject, &mut metadata),
            NetworkAuthz::ExtAuthz(ext) => {
                !ext.enabled(&metadata) || ext.check_connection(shared, &connection).await
            }
        };
        if !admitted {
            return false;
        }
    }
    true
}
