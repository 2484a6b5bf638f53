//! Where a request or connection goes within its cluster: an endpoint its balancer picks
//! (static, EDS and resolved DNS endpoints alike), or the connection's original
//! destination.

use std::net::SocketAddr;
use std::time::Instant;

use crate::balance::{InFlight, Outcome};
use crate::config::{ClusterState, Discovery};

/// The endpoint chosen for one request or connection.
pub struct Chosen<'s> {
    /// Where to connect.
    pub address: SocketAddr,
    /// Its hostname (empty when it has none), for `auto_host_rewrite`.
    pub hostname: &'s str,
    /// Counts the request in flight at the endpoint (LEAST_REQUEST reads it) while held.
    in_flight: Option<InFlight>,
}

impl Chosen<'_> {
    /// The guard that counts the request in flight at the endpoint, to keep until the
    /// request ends (its response body finishes).
    pub fn into_in_flight(self) -> Option<InFlight> {
        self.in_flight
    }
}

/// Why no endpoint could be chosen.
#[derive(Debug, thiserror::Error)]
pub enum Unreachable {
    /// The cluster has no usable endpoint (Envoy's `UH`): none healthy, a warming EDS
    /// cluster, a DNS name that resolved to nothing.
    #[error("no healthy upstream")]
    NoHealthyEndpoint,
}

/// Chooses the endpoint of `state`'s cluster for a request with `hash` (consistent-hash
/// balancers) whose connection was meant for `destination` (original-destination
/// clusters). Nothing here waits: DNS names are resolved in the background.
pub fn choose(
    state: &ClusterState,
    destination: SocketAddr,
    hash: Option<u64>,
) -> Result<Chosen<'_>, Unreachable> {
    if state.cluster.discovery == Discovery::OriginalDst {
        return Ok(Chosen {
            address: destination,
            hostname: "",
            in_flight: None,
        });
    }
    let balancer = state
        .balancer
        .as_ref()
        .ok_or(Unreachable::NoHealthyEndpoint)?;
    if let Some(od) = &state.cluster.outlier_detection {
        // The interval's sweep runs on the traffic that would see its result.
        balancer.sweep(od, &state.stats.outlier_detection, Instant::now());
    }
    let in_flight = balancer
        .pick_owned(hash)
        .ok_or(Unreachable::NoHealthyEndpoint)?;
    Ok(Chosen {
        address: in_flight.endpoint().address,
        hostname: &balancer.endpoints()[in_flight.index()].hostname,
        in_flight: Some(in_flight),
    })
}

/// Tells the cluster's outlier detection (when it has one) what became of a request to
/// the endpoint `in_flight` counts it at.
pub fn report(state: &ClusterState, in_flight: Option<&InFlight>, outcome: Outcome) {
    if let (Some(od), Some(in_flight)) = (&state.cluster.outlier_detection, in_flight) {
        in_flight.balancer().report(
            in_flight.index(),
            outcome,
            od,
            &state.stats.outlier_detection,
        );
    }
}
