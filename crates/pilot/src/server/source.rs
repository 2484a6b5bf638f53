//! What pilot serves over ADS: for each connected proxy and requested type, the
//! translation of the current push context.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::error::Error;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use mizzen_xds::pb::envoy::config::core::v3::Node;
use mizzen_xds::pb::google::protobuf::Struct;
use mizzen_xds::pb::google::protobuf::value::Kind;
use mizzen_xds::{Generated, NamedResource, ResourceSource, ResourceType, Subscription};
use prost::Name;

use crate::model::{InterceptionMode, NodeType, Proxy, PushContext};
use crate::translate::endpoint::proxy_locality;
use crate::translate::{cluster, endpoint, gateway, listener, route};

/// The current push context and its version; swapped atomically on each push.
#[derive(Debug)]
pub struct Current {
    /// Everything translation needs.
    pub push: PushContext,
    /// The version proxies are told (the config revision it was built from).
    pub version: String,
    /// Resources already built for this version.
    cache: Cache,
}

/// Resources built once per [`Scope`] and shared, encoded, by every proxy in it (Istio
/// caches the same way): a thousand sidecars of one namespace cost one translation and
/// one copy in memory.
#[derive(Debug, Default)]
struct Cache {
    /// Outbound clusters, `BlackHoleCluster`, `PassthroughCluster`.
    clusters: Shared<Scope>,
    /// Outbound listeners, unless they bind the proxy's own address.
    listeners: Shared<Scope>,
    /// Route configurations, by the names asked for.
    routes: Shared<(Scope, Names)>,
    /// Cluster load assignments, by the names asked for.
    endpoints: Shared<(Scope, Names)>,
}

/// The names a proxy subscribed to (shared among proxies that ask for the same).
type Names = Arc<BTreeSet<String>>;

/// Built resources by key.
#[derive(Debug)]
struct Shared<K>(Mutex<HashMap<K, Arc<[NamedResource]>>>);

impl<K> Default for Shared<K> {
    fn default() -> Self {
        Self(Mutex::default())
    }
}

impl<K: Hash + Eq> Shared<K> {
    /// The resources built for `key`, building them now if need be. `build` says
    /// whether what it built may be shared.
    fn get_or_build(
        &self,
        key: K,
        build: impl FnOnce() -> (Vec<NamedResource>, bool),
    ) -> Arc<[NamedResource]> {
        if let Some(built) = self.lock().get(&key) {
            return built.clone();
        }
        let (built, shareable) = build();
        let built: Arc<[NamedResource]> = built.into();
        if shareable {
            self.lock().insert(key, built.clone());
        }
        built
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, Arc<[NamedResource]>>> {
        // A panic while building leaves at worst a missing entry; keep serving.
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// What translation reads of a proxy besides its own workload (name, addresses,
/// identity): proxies alike in all of these get the same outbound resources.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct Scope {
    node_type: NodeType,
    namespace: String,
    labels: BTreeMap<String, String>,
    dns_domain: String,
    interception_mode: InterceptionMode,
    /// Istio's own filters go only to Istio's proxies.
    istio_proxy: bool,
    cluster_id: String,
    /// Region, zone and sub-zone, which locality-aware endpoints depend on.
    locality: [String; 3],
    /// DNS clusters resolve IPv6 only for a proxy with only IPv6 addresses.
    ipv6_only: bool,
}

impl Scope {
    fn of(push: &PushContext, proxy: &Proxy) -> Self {
        let locality = proxy_locality(push, proxy);
        Self {
            node_type: proxy.node_type,
            namespace: proxy.namespace.clone(),
            labels: proxy.labels.clone(),
            dns_domain: proxy.dns_domain.clone(),
            interception_mode: proxy.interception_mode,
            istio_proxy: !proxy.istio_version.is_empty(),
            cluster_id: proxy.cluster_id.clone(),
            locality: [locality.region, locality.zone, locality.sub_zone],
            ipv6_only: !proxy.ips.is_empty() && proxy.ips.iter().all(IpAddr::is_ipv6),
        }
    }
}

impl Current {
    /// The push context `push` at `version`, with nothing built yet.
    pub fn new(push: PushContext, version: String) -> Self {
        Self {
            push,
            version,
            cache: Cache::default(),
        }
    }

    /// `proxy`'s resources of type `ty` for `subscription`: the shared part from the
    /// cache, the part that depends on its own workload built for it.
    pub fn resources(
        &self,
        proxy: &Proxy,
        ty: ResourceType,
        subscription: &Subscription,
    ) -> Vec<NamedResource> {
        let push = &self.push;
        let scope = Scope::of(push, proxy);
        let names = &subscription.names;
        let requested = || names.iter().cloned().collect::<Vec<_>>();
        let mut out = match ty {
            ResourceType::Cluster => {
                let shared = self.cache.clusters.get_or_build(scope, || {
                    (
                        encode(cluster::outbound_side(push, proxy), |c| &c.name),
                        true,
                    )
                });
                let own = encode(cluster::inbound_side(push, proxy), |c| &c.name);
                own_side_wins(&shared, own)
            }
            ResourceType::Listener if proxy.node_type == NodeType::Router => {
                let built = self.cache.listeners.get_or_build(scope, || {
                    let listeners = gateway::listeners(push, proxy);
                    (
                        encode(listeners, |l| &l.name),
                        !gateway::binds_own_address(proxy),
                    )
                });
                built.to_vec()
            }
            ResourceType::Listener => {
                let shared = self.cache.listeners.get_or_build(scope, || {
                    let side = listener::outbound_side(push, proxy);
                    (encode(side.listeners, |l| &l.name), !side.address_bound)
                });
                let own = encode(listener::inbound_side(push, proxy), |l| &l.name);
                own_side_wins(&shared, own)
            }
            ResourceType::Route => {
                let routes = self.cache.routes.get_or_build((scope, names.clone()), || {
                    let names = requested();
                    let built = match proxy.node_type {
                        NodeType::Router => gateway::routes(push, proxy, &names),
                        NodeType::Sidecar => route::routes(push, proxy, &names),
                    };
                    (encode(built, |r| &r.name), true)
                });
                routes.to_vec()
            }
            ResourceType::Endpoint => {
                let endpoints = self
                    .cache
                    .endpoints
                    .get_or_build((scope, names.clone()), || {
                        let names = requested();
                        let built = endpoint::endpoints(push, proxy, &names);
                        (encode(built, |e| &e.cluster_name), true)
                    });
                endpoints.to_vec()
            }
            // Secrets come with the CA (workload identity); nothing to serve yet.
            ResourceType::Secret => Vec::new(),
        };
        if !subscription.wildcard {
            out.retain(|r| subscription.wants(r.name()));
        }
        out
    }
}

/// Pilot's [`ResourceSource`]: parses nodes into [`Proxy`]s and translates on demand.
#[derive(Debug, Clone)]
pub struct Source {
    current: Arc<ArcSwap<Current>>,
}

impl Source {
    /// A source serving whatever `current` holds at each request.
    pub fn new(current: Arc<ArcSwap<Current>>) -> Self {
        Self { current }
    }
}

impl ResourceSource for Source {
    type Proxy = Proxy;

    fn connect(&self, node: &Node) -> Result<Proxy, Box<dyn Error + Send + Sync>> {
        Ok(proxy_from_node(node)?)
    }

    fn generate(&self, proxy: &Proxy, ty: ResourceType, subscription: &Subscription) -> Generated {
        let current = self.current.load();
        Generated {
            version: current.version.clone(),
            resources: current.resources(proxy, ty, subscription),
        }
    }
}

/// `items`, encoded together (see [`NamedResource::batch`]).
fn encode<M: prost::Message + Name>(
    items: Vec<M>,
    name: impl Fn(&M) -> &String,
) -> Vec<NamedResource> {
    NamedResource::batch(items.iter().map(|item| (name(item).as_str(), item)))
}

/// Builds a [`Proxy`] from Istio's node id and the metadata Istio's agent sends:
/// `LABELS`, `NAMESPACE`, `SERVICE_ACCOUNT`, `INSTANCE_IPS`, `CLUSTER_ID`,
/// `INTERCEPTION_MODE`, `ISTIO_VERSION`.
pub fn proxy_from_node(node: &Node) -> Result<Proxy, crate::model::ProxyError> {
    let mut proxy = Proxy::from_node_id(&node.id)?;
    let Some(metadata) = &node.metadata else {
        return Ok(proxy);
    };
    let text = |key: &str| string_field(metadata, key);
    if let Some(Kind::StructValue(labels)) =
        metadata.fields.get("LABELS").and_then(|v| v.kind.as_ref())
    {
        proxy.labels = labels
            .fields
            .keys()
            .filter_map(|k| string_field(labels, k).map(|v| (k.clone(), v)))
            .collect::<BTreeMap<_, _>>();
    }
    if let Some(ns) = text("NAMESPACE").filter(|ns| !ns.is_empty()) {
        proxy.namespace = ns;
    }
    proxy.service_account = text("SERVICE_ACCOUNT").unwrap_or_default();
    proxy.cluster_id = text("CLUSTER_ID").unwrap_or_default();
    proxy.istio_version = text("ISTIO_VERSION").unwrap_or_default();
    if let Some(ips) = text("INSTANCE_IPS") {
        let parsed: Result<Vec<IpAddr>, _> = ips
            .split(',')
            .filter(|s| !s.is_empty())
            .map(str::parse)
            .collect();
        match parsed {
            Ok(list) if !list.is_empty() => proxy.ips = list,
            Ok(_) => {}
            Err(_) => {
                return Err(crate::model::ProxyError::Ip {
                    id: node.id.clone(),
                    ip: ips,
                });
            }
        }
    }
    proxy.interception_mode = match text("INTERCEPTION_MODE").as_deref() {
        Some("NONE") => InterceptionMode::None,
        Some("TPROXY") => InterceptionMode::Tproxy,
        _ => InterceptionMode::Redirect,
    };
    Ok(proxy)
}

fn string_field(s: &Struct, key: &str) -> Option<String> {
    match s.fields.get(key)?.kind.as_ref()? {
        Kind::StringValue(v) => Some(v.clone()),
        _ => None,
    }
}

/// The shared (outbound) resources and the proxy's own (inbound) ones; where both name
/// one resource — an egress listener on the workload's own address and port, in local
/// mode — the inbound one wins, as in Istio, and the proxy gets each name once.
fn own_side_wins(shared: &[NamedResource], own: Vec<NamedResource>) -> Vec<NamedResource> {
    let mut out: Vec<NamedResource> = shared
        .iter()
        .filter(|s| !own.iter().any(|o| o.name() == s.name()))
        .cloned()
        .collect();
    out.extend(own);
    out
}
