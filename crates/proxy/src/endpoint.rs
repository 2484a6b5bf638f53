//! Where a request or connection goes within its cluster: an endpoint its balancer picks,
//! a DNS name resolved now, or the connection's original destination.

use std::io;
use std::net::SocketAddr;

use crate::balance::Picked;
use crate::config::{ClusterState, Discovery};

/// The endpoint chosen for one request or connection.
pub struct Chosen<'s> {
    /// Where to connect.
    pub address: SocketAddr,
    /// Its hostname (empty when it has none), for `auto_host_rewrite`.
    pub hostname: &'s str,
    /// Counts the request in flight at the endpoint (LEAST_REQUEST reads it) while held.
    _in_flight: Option<Picked<'s>>,
}

/// Why no endpoint could be chosen.
#[derive(Debug, thiserror::Error)]
pub enum Unreachable {
    /// The cluster has no usable endpoint (Envoy's `UH`).
    #[error("no healthy upstream")]
    NoHealthyEndpoint,
    /// A DNS cluster's name did not resolve.
    #[error("cannot resolve {host}")]
    Resolve {
        /// The name.
        host: String,
        /// Why.
        source: io::Error,
    },
}

/// Chooses the endpoint of `state`'s cluster for a request with `hash` (consistent-hash
/// balancers) whose connection was meant for `destination` (original-destination
/// clusters).
pub async fn choose(
    state: &ClusterState,
    destination: SocketAddr,
    hash: Option<u64>,
) -> Result<Chosen<'_>, Unreachable> {
    match &state.cluster.discovery {
        Discovery::OriginalDst => Ok(Chosen {
            address: destination,
            hostname: "",
            _in_flight: None,
        }),
        Discovery::Dns(targets) => {
            let (host, port) = &targets[fastrand::usize(..targets.len())];
            let resolve = |source| Unreachable::Resolve {
                host: host.clone(),
                source,
            };
            let address = tokio::net::lookup_host((host.as_str(), *port))
                .await
                .map_err(resolve)?
                .next()
                .ok_or_else(|| resolve(io::ErrorKind::NotFound.into()))?;
            Ok(Chosen {
                address,
                hostname: host,
                _in_flight: None,
            })
        }
        Discovery::Static | Discovery::Eds(_) => {
            let picked = state
                .balancer
                .as_ref()
                .and_then(|b| b.pick(hash))
                .ok_or(Unreachable::NoHealthyEndpoint)?;
            let endpoint = picked.endpoint();
            Ok(Chosen {
                address: endpoint.address,
                hostname: &endpoint.hostname,
                _in_flight: Some(picked),
            })
        }
    }
}
