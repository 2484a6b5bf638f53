//! What pilot serves over ADS: for each connected proxy and requested type, the
//! translation of the current push context.

use std::collections::BTreeMap;
use std::collections::HashMap;
use std::error::Error;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};

use arc_swap::ArcSwap;
use mizzen_xds::pb::envoy::config::core::v3::Node;
use mizzen_xds::pb::google::protobuf::value::Kind;
use mizzen_xds::pb::google::protobuf::{Any, Struct};
use mizzen_xds::{Generated, NamedResource, ResourceSource, ResourceType, Subscription};
use prost::Name;

use crate::model::{InterceptionMode, Proxy, PushContext};
use crate::translate::{cluster, endpoint, listener, route};

/// The current push context and its version; swapped atomically on each push.
#[derive(Debug)]
pub struct Current {
    /// Everything translation needs.
    pub push: PushContext,
    /// The version proxies are told (the config revision it was built from).
    pub version: String,
    /// Route configurations already built for this version, shared by every proxy
    /// with the same [`RouteScope`] (Istio caches them the same way): routes do not
    /// depend on a proxy's addresses, so a thousand sidecars of one namespace cost one
    /// translation.
    routes: Mutex<HashMap<RouteScope, Arc<[NamedResource]>>>,
    /// Outbound listeners already built for this version, shared the same way when they
    /// do not bind the proxy's own address.
    outbound_listeners: Mutex<HashMap<ListenerScope, Arc<[NamedResource]>>>,
}

impl Current {
    /// The push context `push` at `version`, with an empty route cache.
    pub fn new(push: PushContext, version: String) -> Self {
        Self {
            push,
            version,
            routes: Mutex::default(),
            outbound_listeners: Mutex::default(),
        }
    }

    /// `proxy`'s listeners: the outbound side built once per listener scope (unless it
    /// binds the proxy's own address), the inbound side for this proxy.
    fn listeners(&self, proxy: &Proxy) -> Vec<NamedResource> {
        let scope = ListenerScope {
            namespace: proxy.namespace.clone(),
            labels: proxy.labels.clone(),
            dns_domain: proxy.dns_domain.clone(),
            interception_mode: proxy.interception_mode,
        };
        let cached = lock(&self.outbound_listeners).get(&scope).cloned();
        let mut out = match cached {
            Some(shared) => shared.to_vec(),
            None => {
                let side = listener::outbound_side(&self.push, proxy);
                let built = named(side.listeners, |l| l.name.clone());
                if !side.address_bound {
                    lock(&self.outbound_listeners).insert(scope, built.clone().into());
                }
                built
            }
        };
        out.extend(named(listener::inbound_side(&self.push, proxy), |l| {
            l.name.clone()
        }));
        out
    }

    /// The route configurations `names` for `proxy`, built once per route scope.
    fn routes(&self, proxy: &Proxy, names: Vec<String>) -> Arc<[NamedResource]> {
        let scope = RouteScope {
            namespace: proxy.namespace.clone(),
            labels: proxy.labels.clone(),
            dns_domain: proxy.dns_domain.clone(),
            names,
        };
        let cached = lock(&self.routes).get(&scope).cloned();
        cached.unwrap_or_else(|| {
            let built: Arc<[NamedResource]> =
                named(route::routes(&self.push, proxy, &scope.names), |r| {
                    r.name.clone()
                })
                .into();
            lock(&self.routes).insert(scope, built.clone());
            built
        })
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A panic while building leaves at worst a missing entry; keep serving.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// What the outbound listeners read of a proxy (when they do not bind its address).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ListenerScope {
    namespace: String,
    labels: BTreeMap<String, String>,
    dns_domain: String,
    interception_mode: InterceptionMode,
}

/// What route translation reads of a proxy: everything else about it (addresses,
/// identity) leaves its routes unchanged.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct RouteScope {
    namespace: String,
    labels: BTreeMap<String, String>,
    dns_domain: String,
    names: Vec<String>,
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
        let resources = match ty {
            ResourceType::Route => {
                let names = subscription.names.iter().cloned().collect();
                current.routes(proxy, names).to_vec()
            }
            ResourceType::Listener => current.listeners(proxy),
            _ => resources(&current.push, proxy, ty, subscription),
        };
        Generated {
            version: current.version.clone(),
            resources,
        }
    }
}

/// The resources of type `ty` that `proxy` should have, filtered by `subscription`.
pub fn resources(
    push: &PushContext,
    proxy: &Proxy,
    ty: ResourceType,
    subscription: &Subscription,
) -> Vec<NamedResource> {
    let requested: Vec<String> = subscription.names.iter().cloned().collect();
    match ty {
        ResourceType::Cluster => named(cluster::clusters(push, proxy), |c| c.name.clone()),
        ResourceType::Endpoint => named(endpoint::endpoints(push, proxy, &requested), |e| {
            e.cluster_name.clone()
        }),
        ResourceType::Listener => named(listener::listeners(push, proxy), |l| l.name.clone()),
        ResourceType::Route => named(route::routes(push, proxy, &requested), |r| r.name.clone()),
        // Secrets come with the CA (workload identity); nothing to serve yet.
        ResourceType::Secret => Vec::new(),
    }
    .into_iter()
    .filter(|r| subscription.wildcard || subscription.wants(&r.name))
    .collect()
}

fn named<M: prost::Message + Name>(
    items: Vec<M>,
    name: impl Fn(&M) -> String,
) -> Vec<NamedResource> {
    items
        .into_iter()
        .map(|item| NamedResource {
            name: name(&item),
            resource: Any {
                type_url: M::type_url(),
                value: item.encode_to_vec(),
            },
        })
        .collect()
}

/// Builds a [`Proxy`] from Istio's node id and the metadata Istio's agent sends:
/// `LABELS`, `NAMESPACE`, `SERVICE_ACCOUNT`, `INSTANCE_IPS`, `CLUSTER_ID`,
/// `INTERCEPTION_MODE`.
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
