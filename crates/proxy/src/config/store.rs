//! The proxy's current config: an immutable [`Snapshot`] swapped whole when a resource
//! type changes. A new set is compiled and checked before anything is swapped, so a
//! rejected set (a NACK) leaves the last good config serving.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use arc_swap::ArcSwap;
use mizzen_xds::ResourceType;
use mizzen_xds::pb::envoy::config::cluster::v3::Cluster as PbCluster;
use mizzen_xds::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use mizzen_xds::pb::envoy::config::listener::v3::Listener as PbListener;
use mizzen_xds::pb::envoy::config::route::v3::RouteConfiguration;
use mizzen_xds::pb::google::protobuf::Any;
use prost::Message;
use tokio::sync::watch;

use super::{Cluster, ConfigError, Discovery, HttpManager, Listener, NetworkFilter, RouteSource};
use crate::balance::Balancer;
use crate::route::RouteTable;
use crate::stats::{ClusterStats, Stats};

/// Everything the proxy serves with, at one moment.
#[derive(Default)]
pub struct Snapshot {
    /// Listeners by name.
    pub listeners: BTreeMap<String, Arc<Listener>>,
    /// Clusters by name, with their endpoints' balancer once those arrived.
    pub clusters: HashMap<String, Arc<ClusterState>>,
    /// Route tables from RDS, by name.
    pub routes: HashMap<String, Arc<RouteTable>>,
    /// Endpoints from EDS, by service name.
    pub assignments: HashMap<String, Arc<ClusterLoadAssignment>>,
    /// Names of the bootstrap's listeners and clusters, which xDS never replaces.
    pub static_names: BTreeSet<String>,
    /// Which dynamic types have arrived at least once.
    pub received: BTreeSet<ResourceType>,
}

/// A cluster and, once its endpoints are known, their load balancer.
pub struct ClusterState {
    /// The cluster.
    pub cluster: Arc<Cluster>,
    /// None while an EDS cluster waits for its endpoints (warming), and for clusters
    /// without endpoint lists (original destination, DNS).
    pub balancer: Option<Arc<Balancer>>,
    /// Its statistics (the same across updates of the cluster).
    pub stats: Arc<ClusterStats>,
}

impl Snapshot {
    /// The route table an HTTP connection manager uses, if it arrived.
    pub fn route_table(&self, manager: &HttpManager) -> Option<Arc<RouteTable>> {
        match &manager.routes {
            RouteSource::Inline(table) => Some(table.clone()),
            RouteSource::Rds(name) => self.routes.get(name).cloned(),
        }
    }

    /// What the proxy still waits for before its config is complete.
    pub fn warming(&self) -> Vec<String> {
        let mut out = Vec::new();
        for state in self.clusters.values() {
            if let Discovery::Eds(name) = &state.cluster.discovery
                && !self.assignments.contains_key(name)
            {
                out.push(format!("endpoints of cluster {:?}", state.cluster.name));
            }
        }
        for name in self.wanted().routes {
            if !self.routes.contains_key(&name) {
                out.push(format!("route config {name:?}"));
            }
        }
        out.sort();
        out
    }

    /// The EDS and RDS names the clusters and listeners refer to.
    pub fn wanted(&self) -> Wanted {
        let endpoints = self
            .clusters
            .values()
            .filter_map(|s| match &s.cluster.discovery {
                Discovery::Eds(name) => Some(name.clone()),
                _ => None,
            })
            .collect();
        let routes = self
            .listeners
            .values()
            .flat_map(|l| l.chains.iter().chain(&l.default_chain))
            .filter_map(|c| match &c.filter {
                NetworkFilter::Http(m) => match &m.routes {
                    RouteSource::Rds(name) => Some(name.clone()),
                    RouteSource::Inline(_) => None,
                },
                NetworkFilter::Tcp(_) => None,
            })
            .collect();
        Wanted { endpoints, routes }
    }
}

/// The names the proxy subscribes to over EDS and RDS.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Wanted {
    /// EDS service names.
    pub endpoints: BTreeSet<String>,
    /// Route configuration names.
    pub routes: BTreeSet<String>,
}

/// The current snapshot and who to tell when it changes.
pub struct ConfigStore {
    current: ArcSwap<Snapshot>,
    generation: watch::Sender<u64>,
    wanted: watch::Sender<Wanted>,
    /// True when config comes from xDS too, not only from the bootstrap.
    dynamic: bool,
    stats: Arc<Stats>,
}

impl ConfigStore {
    /// A store holding the bootstrap's static listeners and clusters; `dynamic` when
    /// more will come over xDS.
    pub fn new(
        listeners: Vec<PbListener>,
        clusters: Vec<PbCluster>,
        dynamic: bool,
    ) -> Result<ConfigStore, ConfigError> {
        let stats = Arc::new(Stats::default());
        let mut snapshot = Snapshot::default();
        for raw in clusters {
            let cluster = Cluster::compile(raw)?;
            snapshot.static_names.insert(cluster.name.clone());
            let state = cluster_state(cluster, &snapshot.assignments, &stats)?;
            snapshot
                .clusters
                .insert(state.cluster.name.clone(), Arc::new(state));
        }
        for raw in listeners {
            let listener = Listener::compile(raw, &stats)?;
            snapshot.static_names.insert(listener.name.clone());
            snapshot
                .listeners
                .insert(listener.name.clone(), Arc::new(listener));
        }
        let wanted = snapshot.wanted();
        Ok(ConfigStore {
            current: ArcSwap::from_pointee(snapshot),
            generation: watch::channel(0).0,
            wanted: watch::channel(wanted).0,
            dynamic,
            stats,
        })
    }

    /// The proxy's statistics.
    pub fn stats(&self) -> &Stats {
        &self.stats
    }

    /// The config now.
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Ticks whenever the snapshot changes.
    pub fn changes(&self) -> watch::Receiver<u64> {
        self.generation.subscribe()
    }

    /// The EDS and RDS names to subscribe to, kept current.
    pub fn wanted(&self) -> watch::Receiver<Wanted> {
        self.wanted.subscribe()
    }

    /// True once the initial config is complete: listeners and clusters arrived (when
    /// dynamic), and every endpoint list and route table they refer to.
    pub fn is_ready(&self) -> bool {
        let s = self.current.load();
        let fetched = !self.dynamic
            || (s.received.contains(&ResourceType::Cluster)
                && s.received.contains(&ResourceType::Listener));
        fetched && s.warming().is_empty()
    }

    /// Compiles and applies the complete new set of one type; on error nothing
    /// changes and the reason is what the NACK says.
    pub fn apply(&self, ty: ResourceType, resources: &BTreeMap<String, Any>) -> Result<(), String> {
        let current = self.current.load_full();
        let mut next = Snapshot {
            listeners: current.listeners.clone(),
            clusters: current.clusters.clone(),
            routes: current.routes.clone(),
            assignments: current.assignments.clone(),
            static_names: current.static_names.clone(),
            received: current.received.clone(),
        };
        match ty {
            ResourceType::Cluster => {
                let clusters = decode::<PbCluster>(resources, "cluster")?;
                next.clusters
                    .retain(|name, _| next.static_names.contains(name));
                for raw in clusters {
                    if next.static_names.contains(&raw.name) {
                        continue;
                    }
                    let cluster = Cluster::compile(raw).map_err(|e| e.to_string())?;
                    let state = cluster_state(cluster, &next.assignments, &self.stats)
                        .map_err(|e| e.to_string())?;
                    next.clusters
                        .insert(state.cluster.name.clone(), Arc::new(state));
                }
                let wanted = next.wanted().endpoints;
                next.assignments.retain(|name, _| wanted.contains(name));
            }
            ResourceType::Endpoint => {
                let assignments = decode::<ClusterLoadAssignment>(resources, "endpoints")?;
                next.assignments = assignments
                    .into_iter()
                    .map(|a| (a.cluster_name.clone(), Arc::new(a)))
                    .collect();
                for state in next.clusters.values_mut() {
                    if matches!(state.cluster.discovery, Discovery::Eds(_)) {
                        let rebuilt =
                            cluster_state(state.cluster.clone(), &next.assignments, &self.stats)
                                .map_err(|e| e.to_string())?;
                        *state = Arc::new(rebuilt);
                    }
                }
            }
            ResourceType::Listener => {
                let listeners = decode::<PbListener>(resources, "listener")?;
                next.listeners
                    .retain(|name, _| next.static_names.contains(name));
                for raw in listeners {
                    if next.static_names.contains(&raw.name) {
                        continue;
                    }
                    let listener =
                        Listener::compile(raw, &self.stats).map_err(|e| e.to_string())?;
                    next.listeners
                        .insert(listener.name.clone(), Arc::new(listener));
                }
                let wanted = next.wanted().routes;
                next.routes.retain(|name, _| wanted.contains(name));
            }
            ResourceType::Route => {
                let configs = decode::<RouteConfiguration>(resources, "route config")?;
                next.routes = configs
                    .iter()
                    .map(|c| {
                        RouteTable::compile(c)
                            .map(|t| (c.name.clone(), Arc::new(t)))
                            .map_err(|e| e.to_string())
                    })
                    .collect::<Result<_, _>>()?;
            }
            // Secrets come with workload identity; nothing uses them yet.
            ResourceType::Secret => return Ok(()),
        }
        next.received.insert(ty);
        let wanted = next.wanted();
        self.current.store(Arc::new(next));
        self.wanted.send_if_modified(|w| {
            let changed = *w != wanted;
            *w = wanted;
            changed
        });
        self.generation.send_modify(|g| *g += 1);
        Ok(())
    }
}

/// A cluster with the balancer over its endpoints, when it has a list of them.
fn cluster_state(
    cluster: impl Into<Arc<Cluster>>,
    assignments: &HashMap<String, Arc<ClusterLoadAssignment>>,
    stats: &Stats,
) -> Result<ClusterState, ConfigError> {
    let cluster = cluster.into();
    let assignment = match &cluster.discovery {
        Discovery::Static => cluster.static_assignment(),
        Discovery::Eds(name) => assignments.get(name).map(|a| &**a),
        Discovery::OriginalDst | Discovery::Dns(_) => None,
    };
    let balancer = assignment
        .map(|a| {
            Balancer::new(&cluster.raw, a).map(Arc::new).map_err(|e| {
                ConfigError::new("cluster", &cluster.name, "load_assignment", e.to_string())
            })
        })
        .transpose()?;
    Ok(ClusterState {
        stats: stats.cluster(&cluster.name),
        cluster,
        balancer,
    })
}

/// Decodes every resource of a set, naming the one that fails.
fn decode<M: Message + Default>(
    resources: &BTreeMap<String, Any>,
    kind: &str,
) -> Result<Vec<M>, String> {
    resources
        .iter()
        .map(|(name, any)| {
            M::decode(any.value.as_slice())
                .map_err(|e| format!("{kind} {name:?}: cannot decode: {e}"))
        })
        .collect()
}
