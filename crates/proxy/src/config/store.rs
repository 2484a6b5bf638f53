//! The proxy's current config: an immutable [`Snapshot`] swapped whole when a resource
//! type changes. A new set is compiled and checked before anything is swapped, so a
//! rejected set (a NACK) leaves the last good config serving.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use mizzen_xds::ResourceType;
use mizzen_xds::pb::envoy::config::cluster::v3::Cluster as PbCluster;
use mizzen_xds::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use mizzen_xds::pb::envoy::config::endpoint::v3::lb_endpoint::HostIdentifier;
use mizzen_xds::pb::envoy::config::listener::v3::Listener as PbListener;
use mizzen_xds::pb::envoy::config::route::v3::RouteConfiguration;
use mizzen_xds::pb::envoy::extensions::transport_sockets::tls::v3::Secret as PbSecret;
use mizzen_xds::pb::google::protobuf::Any;
use prost::Message;
use tokio::sync::watch;

use super::{
    Cluster, ConfigError, Discovery, HttpManager, Listener, NetworkFilter, RouteSource, dns,
    socket_address,
};
use crate::balance::Balancer;
use crate::route::RouteTable;
use crate::stats::{ClusterStats, Stats};
use crate::tls::{SecretError, SecretSlot, SecretSource, Secrets, Transport};

/// Everything the proxy serves with, at one moment.
#[derive(Default, Clone)]
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
    /// The transport of each endpoint that `transport_socket_matches` give one of
    /// their own; the others use the cluster's default.
    transports: HashMap<SocketAddr, Transport>,
}

impl ClusterState {
    /// How connections to `endpoint` are made.
    pub fn transport(&self, endpoint: SocketAddr) -> &Transport {
        self.transports
            .get(&endpoint)
            .unwrap_or(&self.cluster.transports.default)
    }
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
        let secrets: BTreeSet<String> = self
            .secret_slots()
            .filter(|slot| !slot.is_ready())
            .map(|slot| format!("secret {:?}", slot.name()))
            .collect();
        out.extend(secrets);
        out.sort();
        out
    }

    /// Every secret slot the listeners' and clusters' TLS contexts read.
    pub fn secret_slots(&self) -> impl Iterator<Item = &Arc<SecretSlot>> {
        let listeners = self
            .listeners
            .values()
            .flat_map(|l| l.chains.iter().chain(&l.default_chain))
            .filter_map(|c| c.tls.as_ref())
            .flat_map(|tls| tls.slots());
        let clusters = self
            .clusters
            .values()
            .flat_map(|s| s.cluster.transports.all())
            .flat_map(Transport::slots);
        listeners.chain(clusters)
    }

    /// The EDS, RDS and SDS names the clusters and listeners refer to.
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
        let secrets = self
            .secret_slots()
            .filter(|slot| slot.source() == Some(SecretSource::Ads))
            .map(|slot| slot.name().to_owned())
            .collect();
        Wanted {
            endpoints,
            routes,
            secrets,
        }
    }
}

/// The names the proxy subscribes to over EDS, RDS and SDS.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Wanted {
    /// EDS service names.
    pub endpoints: BTreeSet<String>,
    /// Route configuration names.
    pub routes: BTreeSet<String>,
    /// Secrets fetched over ADS.
    pub secrets: BTreeSet<String>,
}

/// The current snapshot and who to tell when it changes.
pub struct ConfigStore {
    current: ArcSwap<Snapshot>,
    generation: watch::Sender<u64>,
    wanted: watch::Sender<Wanted>,
    /// True when config comes from xDS too, not only from the bootstrap.
    dynamic: bool,
    stats: Arc<Stats>,
    /// Named secrets, which TLS contexts read at each handshake.
    secrets: Secrets,
    /// Held while a new snapshot is made from the current one, so that concurrent
    /// updates (xDS, DNS resolutions) never lose each other's changes.
    updating: Mutex<()>,
}

impl ConfigStore {
    /// A store holding the bootstrap's static secrets, listeners and clusters;
    /// `dynamic` when more will come over xDS.
    pub fn new(
        secrets: Vec<PbSecret>,
        listeners: Vec<PbListener>,
        clusters: Vec<PbCluster>,
        dynamic: bool,
    ) -> Result<ConfigStore, ConfigError> {
        Self::with_stats(secrets, listeners, clusters, dynamic, Stats::default())
    }

    /// [`ConfigStore::new`], counting into `stats`.
    pub fn with_stats(
        secrets: Vec<PbSecret>,
        listeners: Vec<PbListener>,
        clusters: Vec<PbCluster>,
        dynamic: bool,
        stats: Stats,
    ) -> Result<ConfigStore, ConfigError> {
        let stats = Arc::new(stats);
        let named = Secrets::default();
        named
            .provide(SecretSource::Static, secrets)
            .map_err(secret_error)?;
        let secrets = named;
        let mut snapshot = Snapshot::default();
        for raw in clusters {
            let cluster = Cluster::compile(raw, &secrets)?;
            snapshot.static_names.insert(cluster.name.clone());
            let state = cluster_state(cluster, &snapshot.assignments, None, &stats)?;
            snapshot
                .clusters
                .insert(state.cluster.name.clone(), Arc::new(state));
        }
        for raw in listeners {
            let listener = Listener::compile(raw, &stats, &secrets)?;
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
            secrets,
            updating: Mutex::new(()),
        })
    }

    /// The named secrets.
    pub fn secrets(&self) -> &Secrets {
        &self.secrets
    }

    /// Makes `secret` current for the proxy's own agent (`sds-grpc`): the workload
    /// identity (`default`) or its trust bundle (`ROOTCA`). The next handshakes use it;
    /// connections already made keep theirs. A secret that does not parse is refused
    /// and the previous one stays.
    pub fn provide_secret(&self, secret: PbSecret) -> Result<(), SecretError> {
        self.secrets.provide(SecretSource::Agent, vec![secret])?;
        // Listeners and clusters waiting for it may be ready now.
        let _updating = self.updating.lock().unwrap_or_else(|e| e.into_inner());
        self.commit((*self.current.load_full()).clone());
        Ok(())
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
        let mut next = (*current).clone();
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
                    let cluster =
                        Cluster::compile(raw, &self.secrets).map_err(|e| e.to_string())?;
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
                    let listener = Listener::compile(raw, &self.stats, &self.secrets)
                        .map_err(|e| e.to_string())?;
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
            ResourceType::Secret => {
                let secrets = decode::<PbSecret>(resources, "secret")?;
                self.secrets
                    .provide(SecretSource::Ads, secrets)
                    .map_err(|e| e.to_string())?;
            }
        }
        next.received.insert(ty);
        let accepted = accept(&next)?;
        self.commit(next);
        // Secrets of contexts that are gone are forgotten (an in-flight request may
        // still hold an old context; its secret goes with a later update).
        self.secrets.prune(SecretSource::Ads);
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
        let mut next = (*current).clone();
        next.clusters.insert(
            cluster.name.clone(),
            Arc::new(ClusterState {
                cluster: cluster.clone(),
                balancer,
                warm: true,
                stats: state.stats.clone(),
                transports: endpoint_transports(cluster, &assignment),
            }),
        );
        self.commit(next);
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
    let cluster: Arc<Cluster> = cluster.into();
    let mut assignment = None;
    let (balancer, warm) = match &cluster.discovery {
        Discovery::Static => match cluster.static_assignment() {
            Some(a) => {
                assignment = Some(a);
                (Some(balancer(&cluster, a, previous)?), true)
            }
            None => (None, true),
        },
        Discovery::Eds(name) => match assignments.get(name) {
            Some(a) => {
                assignment = Some(&**a);
                (Some(balancer(&cluster, a, previous)?), true)
            }
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
    let stats = stats.cluster(&cluster.name);
    if cluster
        .transports
        .all()
        .any(|t| matches!(t, Transport::Tls(_)))
    {
        stats.ssl.enable();
    }
    let transports = match assignment {
        Some(a) => endpoint_transports(&cluster, a),
        // A DNS cluster keeps its endpoints' transports until its names resolve again.
        None => previous.map(|p| p.transports.clone()).unwrap_or_default(),
    };
    Ok(ClusterState {
        stats,
        cluster,
        balancer,
        warm,
        transports,
    })
}

/// The endpoints of `assignment` whose metadata selects a transport socket match.
fn endpoint_transports(
    cluster: &Cluster,
    assignment: &ClusterLoadAssignment,
) -> HashMap<SocketAddr, Transport> {
    if !cluster.transports.by_endpoint() {
        return HashMap::new();
    }
    assignment
        .endpoints
        .iter()
        .flat_map(|l| &l.lb_endpoints)
        .filter_map(|e| {
            let Some(HostIdentifier::Endpoint(ep)) = &e.host_identifier else {
                return None;
            };
            let address = socket_address(ep.address.as_ref()?).ok()?;
            Some((
                address,
                cluster.transports.select(e.metadata.as_ref()).clone(),
            ))
        })
        .collect()
}

/// A secret refused, as the config error it is.
fn secret_error(e: SecretError) -> ConfigError {
    ConfigError::new("secret", e.name(), e.field(), e.reason())
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
