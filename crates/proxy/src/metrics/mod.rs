//! Istio's standard metrics (`istio_requests_total`, `istio_request_duration_milliseconds`,
//! `istio_request_bytes`, `istio_response_bytes`, `istio_tcp_*`), as Istio's `istio.stats`
//! filter records them, and the peer metadata exchange that labels both ends.
//!
//! Connection managers and TCP proxies whose chains carry Istio's filters record into the
//! proxy's one [`Registry`]. A series is found per request in a read-mostly table
//! ([`interned`]): a label set seen before costs a hash and atomic increments, no lock.

mod config;
mod histogram;
mod http;
mod interned;
mod overrides;
mod render;
mod series;
mod tcp;
mod workload;

use std::cell::RefCell;
use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;
use mizzen_xds::pb::envoy::config::core::v3::Node;

pub use config::{HttpTelemetry, ReporterChoice, TcpTelemetry, is_telemetry_filter};
pub use http::{Exchange, Metered, UpstreamCluster, UpstreamHost};
pub use series::{Reporter, Security};
pub use tcp::Metering;
pub use workload::{Peer, Workload};

use interned::{Digested, Interned};
use series::{HttpKey, HttpSeries, Service, TcpKey, TcpSeries};

use crate::config::Snapshot;

/// At most this many distinct peer headers are remembered; past it a header is parsed
/// each time, so that clients sending made-up metadata cannot grow the proxy.
const MAX_PEERS: usize = 4096;

thread_local! {
    /// The peer header this thread read last, and its peer: a kept-alive connection
    /// brings the same ~240 bytes on every request or response, and comparing them costs
    /// less than hashing them for the table. A peer is a function of the header alone,
    /// so one entry serves every registry.
    static LAST_PEER: RefCell<LastPeer> = const {
        RefCell::new(LastPeer { header: Vec::new(), peer: None })
    };
}

/// A peer header and the peer it names (`None`: it does not parse, or is empty).
struct LastPeer {
    header: Vec<u8>,
    peer: Option<Peer>,
}

/// Every Istio series of the proxy, and what labels them.
pub struct Registry {
    local: Peer,
    local_header: ::http::HeaderValue,
    local_id: ::http::HeaderValue,
    http: Interned<HttpKey, HttpSeries>,
    tcp: Interned<TcpKey, TcpSeries>,
    /// Peers by the `x-envoy-peer-metadata` value they sent.
    peers: Interned<Box<[u8]>, Peer>,
    /// Services by cluster name.
    services: Interned<Box<str>, Digested<Service>>,
    /// The workloads of the endpoints EDS gave, by address.
    endpoints: ArcSwap<HashMap<IpAddr, Peer>>,
    unknown: Peer,
    no_service: Digested<Service>,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry")
            .field("local", &self.local)
            .finish_non_exhaustive()
    }
}

impl Default for Registry {
    fn default() -> Self {
        Registry::for_node(&Node::default())
    }
}

impl Registry {
    /// A registry for the proxy `node`, its workload read from the node's metadata.
    pub fn for_node(node: &Node) -> Registry {
        let local = Workload::from_node(node);
        Registry {
            local_header: local.to_header(),
            local_id: ::http::HeaderValue::from_str(&node.id)
                .unwrap_or_else(|_| ::http::HeaderValue::from_static("")),
            local: Peer::new(local),
            http: Interned::default(),
            tcp: Interned::default(),
            peers: Interned::default(),
            services: Interned::default(),
            endpoints: ArcSwap::default(),
            unknown: Peer::new(Workload::default()),
            no_service: Digested::new(Service::default()),
        }
    }

    /// The proxy's own workload.
    pub fn local(&self) -> &Workload {
        &self.local
    }

    /// The peer that sent `header` as its `x-envoy-peer-metadata`, if it parses.
    fn peer_of_header(&self, header: &[u8]) -> Option<Peer> {
        LAST_PEER.with_borrow_mut(|last| {
            if *last.header != *header {
                last.peer = self.lookup_peer(header);
                last.header.clear();
                last.header.extend_from_slice(header);
            }
            last.peer.clone()
        })
    }

    fn lookup_peer(&self, header: &[u8]) -> Option<Peer> {
        if self.peers.len() >= MAX_PEERS {
            return Workload::from_header(header).map(Peer::new);
        }
        let peer = self.peers.get_or_insert(header, || {
            let peer =
                Workload::from_header(header).map_or_else(|| self.unknown.clone(), Peer::new);
            (header.into(), peer)
        });
        Some(Peer::clone(&peer)).filter(|p| *p != self.unknown)
    }

    /// The workload at `ip`, as EDS described its endpoint.
    fn peer_at(&self, ip: IpAddr) -> Peer {
        self.endpoints
            .load()
            .get(&ip.to_canonical())
            .cloned()
            .unwrap_or_else(|| self.unknown.clone())
    }

    /// The service of the cluster `name`, learnt from its name or its `istio.services`
    /// metadata the first time it is asked for.
    fn service_of(&self, cluster: &crate::config::Cluster) -> Digested<Service> {
        let found = self.services.get_or_insert(cluster.name.as_str(), || {
            let service = Service::of_cluster(&cluster.name)
                .or_else(|| config::service_metadata(&cluster.raw))
                .map_or_else(|| self.no_service.clone(), Digested::new);
            (cluster.name.as_str().into(), service)
        });
        Digested::clone(&found)
    }

    /// Learns the workloads of the endpoints in `snapshot` (their `istio.workload`
    /// metadata), for peers that send no metadata of their own.
    pub fn learn_endpoints(&self, snapshot: &Snapshot) {
        let endpoints = snapshot
            .clusters
            .values()
            .filter_map(|c| c.balancer.as_ref())
            .flat_map(|b| b.endpoints().iter())
            .filter_map(|e| Some((e.address.ip().to_canonical(), e.workload.clone()?)))
            .collect();
        self.endpoints.store(Arc::new(endpoints));
    }

    /// Istio's metrics in Prometheus' text format.
    pub fn prometheus(&self) -> String {
        render::prometheus(&self.local, &self.http.snapshot(), &self.tcp.snapshot())
    }
}

/// Keeps the registry's endpoint workloads current as config changes.
pub async fn follow_endpoints(shared: Arc<crate::Shared>) {
    let mut changes = shared.store.changes();
    loop {
        shared
            .store
            .stats()
            .istio()
            .learn_endpoints(&shared.store.snapshot());
        if changes.changed().await.is_err() {
            return;
        }
    }
}
