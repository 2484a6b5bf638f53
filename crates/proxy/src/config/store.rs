//! The proxy's current config: an immutable [`Snapshot`] swapped whole when a resource
//! type changes. A new set is compiled and checked before anything is swapped, so a
//! rejected set (a NACK) leaves the last good config serving.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use mizzen_xds::ResourceType;
use mizzen_xds::pb::envoy::config::cluster::v3::Cluster as PbCluster;
use mizzen_xds::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use mizzen_xds::pb::envoy::config::listener::v3::Listener as PbListener;
use mizzen_xds::pb::envoy::config::route::v3::RouteConfiguration;
use mizzen_xds::pb::google::protobuf::Any;
use prost::Message;
use tokio::sync::watch;

use super::{
    Cluster, ConfigError, Discovery, HttpManager, Listener, NetworkFilter, RouteSource, dns,
};
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
    /// None while an EDS cluster waits for its endpoints, for a DNS cluster whose names
    /// resolved to nothing, and for original-destination clusters. A changed DNS cluster
    /// keeps its previous balancer until its names are resolved again.
    pub balancer: Option<Arc<Balancer>>,
    /// False while the cluster waits for its first endpoints (an EDS assignment, a DNS
    /// resolution): Envoy's warming.
    pub warm: bool,
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
        for state in self.clusters.values().filter(|s| !s.warm) {
            let what = match state.cluster.discovery {
                Discovery::Dns(_) => "DNS resolution",
                _ => "endpoints",
            };
            out.push(format!("{what} of cluster {:?}", state.cluster.name));
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
    /// Held while a new snapshot is made from the current one, so that concurrent
    /// updates (xDS, DNS resolutions) never lose each other's changes.
    updating: Mutex<()>,
}

impl ConfigStore {
    /// A store holding the bootstrap's static listeners and clusters; `dynamic` when
    /// more will come over xDS.
    pub fn new(
        listeners: Vec<PbListener>,
        clusters: Vec<PbCluster>,
        dynamic: bool,
    ) -> Result<ConfigStore, ConfigError> {
        Self::with_stats(listeners, clusters, dynamic, Stats::default())
    }

    /// [`ConfigStore::new`], counting into `stats`.
    pub fn with_stats(
        listeners: Vec<PbListener>,
        clusters: Vec<PbCluster>,
        dynamic: bool,
        stats: Stats,
    ) -> Result<ConfigStore, ConfigError> {
        let stats = Arc::new(stats);
        let mut snapshot = Snapshot::default();
        for raw in clusters {
            let cluster = Cluster::compile(raw)?;
            snapshot.static_names.insert(cluster.name.clone());
            let state = cluster_state(cluster, &snapshot.assignments, None, &stats)?;
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
            updating: Mutex::new(()),
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
        self.apply_if(ty, resources, |_| Ok(()))
    }

    /// [`ConfigStore::apply`], with `accept` asked before anything changes: its error
    /// rejects the set (binding a new listener's socket fails, say), its value is
    /// returned once the new snapshot is in place.
    pub fn apply_if<T>(
        &self,
        ty: ResourceType,
        resources: &BTreeMap<String, Any>,
        accept: impl FnOnce(&Snapshot) -> Result<T, String>,
    ) -> Result<T, String> {
        let _updating = self.updating.lock().unwrap_or_else(|e| e.into_inner());
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
                    let previous = current.clusters.get(&raw.name);
                    // An unchanged cluster keeps its state (balancer, resolved names),
                    // as Envoy leaves a cluster whose config hash did not change.
                    if let Some(previous) = previous.filter(|p| *p.cluster.raw == raw) {
                        next.clusters.insert(raw.name.clone(), previous.clone());
                        continue;
                    }
                    let cluster = Cluster::compile(raw).map_err(|e| e.to_string())?;
                    let state = cluster_state(
                        cluster,
                        &next.assignments,
                        previous.map(|p| &**p),
                        &self.stats,
                    )
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
                        let rebuilt = cluster_state(
                            state.cluster.clone(),
                            &next.assignments,
                            Some(state),
                            &self.stats,
                        )
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
            ResourceType::Secret => return accept(&current),
        }
        next.received.insert(ty);
        let accepted = accept(&next)?;
        self.commit(next);
        Ok(accepted)
    }

    /// Gives the DNS cluster `cluster` the endpoints its names resolved to, and counts
    /// it as warm. Nothing changes when the cluster was changed or removed meanwhile
    /// (its new resolver takes over).
    pub fn apply_resolved(
        &self,
        cluster: &Arc<Cluster>,
        addresses: &BTreeMap<String, Vec<IpAddr>>,
    ) -> Result<(), ConfigError> {
        let Discovery::Dns(settings) = &cluster.discovery else {
            return Ok(());
        };
        let _updating = self.updating.lock().unwrap_or_else(|e| e.into_inner());
        let current = self.current.load_full();
        let Some(state) = current
            .clusters
            .get(&cluster.name)
            .filter(|s| Arc::ptr_eq(&s.cluster, cluster))
        else {
            return Ok(());
        };
        let assignment = dns::assignment(&cluster.raw, settings.kind, addresses);
        let balancer = Some(balancer(cluster, &assignment, Some(state))?);
        let mut clusters = current.clusters.clone();
        clusters.insert(
            cluster.name.clone(),
            Arc::new(ClusterState {
                cluster: cluster.clone(),
                balancer,
                warm: true,
                stats: state.stats.clone(),
            }),
        );
        self.commit(Snapshot {
            listeners: current.listeners.clone(),
            clusters,
            routes: current.routes.clone(),
            assignments: current.assignments.clone(),
            static_names: current.static_names.clone(),
            received: current.received.clone(),
        });
        Ok(())
    }

    /// Makes `next` the current snapshot and tells whoever watches.
    fn commit(&self, next: Snapshot) {
        let wanted = next.wanted();
        self.current.store(Arc::new(next));
        self.wanted.send_if_modified(|w| {
            let changed = *w != wanted;
            *w = wanted;
            changed
        });
        self.generation.send_modify(|g| *g += 1);
    }
}

/// A cluster with the balancer over its endpoints, when it has a list of them. A DNS
/// cluster's endpoints come later, from its resolver; until then it keeps the
/// balancer of `previous`, the cluster it replaces.
fn cluster_state(
    cluster: impl Into<Arc<Cluster>>,
    assignments: &HashMap<String, Arc<ClusterLoadAssignment>>,
    previous: Option<&ClusterState>,
    stats: &Stats,
) -> Result<ClusterState, ConfigError> {
    let cluster = cluster.into();
    let (balancer, warm) = match &cluster.discovery {
        Discovery::Static => match cluster.static_assignment() {
            Some(a) => (Some(balancer(&cluster, a, previous)?), true),
            None => (None, true),
        },
        Discovery::Eds(name) => match assignments.get(name) {
            Some(a) => (Some(balancer(&cluster, a, previous)?), true),
            None => (None, false),
        },
        Discovery::OriginalDst => (None, true),
        Discovery::Dns(settings) => {
            // Whatever the names resolve to, the balancer builds: checked now, on
            // placeholder addresses, so that a bad cluster is refused when it arrives.
            let placeholder = vec![IpAddr::V4(Ipv4Addr::UNSPECIFIED)];
            let addresses = settings
                .names
                .iter()
                .map(|n| (n.clone(), placeholder.clone()))
                .collect();
            balancer(
                &cluster,
                &dns::assignment(&cluster.raw, settings.kind, &addresses),
                None,
            )?;
            (previous.and_then(|p| p.balancer.clone()), false)
        }
    };
    Ok(ClusterState {
        stats: stats.cluster(&cluster.name),
        cluster,
        balancer,
        warm,
    })
}

/// The cluster's balancer over `assignment`, keeping what the endpoints that remain
/// had in `previous`'s balancer (requests in flight, ejections), as Envoy keeps hosts.
fn balancer(
    cluster: &Cluster,
    assignment: &ClusterLoadAssignment,
    previous: Option<&ClusterState>,
) -> Result<Arc<Balancer>, ConfigError> {
    Balancer::new(&cluster.raw, assignment)
        .map(|b| match previous.and_then(|p| p.balancer.as_deref()) {
            Some(before) => b.carry_over(before, cluster.outlier_detection.is_some()),
            None => b,
        })
        .map(Arc::new)
        .map_err(|e| ConfigError::new("cluster", &cluster.name, "load_assignment", e.to_string()))
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
