//! What one sidecar sees: the Sidecar resource that applies to it, and for each of its
//! egress listeners the services and VirtualServices it may reach (Istio's
//! `SidecarScope`). Listeners and routes are both built from this.

use std::sync::Arc;

use mizzen_api::networking::{
    HttpMatchRequest, IstioEgressListener, MESH_GATEWAY, OutboundTrafficPolicyMode, Sidecar,
    VirtualService,
};
use mizzen_api::{Kind, Object, Resource};

use crate::model::{EgressImports, Hostname, Proxy, PushContext, Service, resolve_host};
use crate::translate::gateway::resolve_gateway_name;

/// A VirtualService with its hosts made fully qualified, as routes are built from it
/// (sidecars use those bound to the mesh, gateways those bound to their Gateways).
#[derive(Debug, Clone)]
pub(crate) struct MeshVirtualService<'a> {
    /// Its namespace (short names resolve in it).
    pub namespace: &'a str,
    /// Its name.
    pub name: &'a str,
    /// The spec.
    pub spec: &'a VirtualService,
    /// `spec.hosts`, fully qualified.
    pub hosts: Vec<Hostname>,
}

impl MeshVirtualService<'_> {
    /// Makes a host named in this VirtualService fully qualified.
    pub fn resolve(&self, host: &str, push: &PushContext) -> Hostname {
        resolve_host(host, self.namespace, &push.mesh)
    }

    /// True when one of its hosts covers `host` (either may be a wildcard).
    pub fn covers(&self, host: &Hostname) -> bool {
        self.hosts
            .iter()
            .any(|h| h.matches(host) || host.matches(h))
    }
}

/// One egress listener of the proxy's scope and what it reaches.
#[derive(Debug, Clone)]
pub(crate) struct EgressScope<'a> {
    /// The Sidecar's listener, or `None` for the default catch-all.
    pub listener: Option<&'a IstioEgressListener>,
    /// Reachable services, one per hostname, in hostname order.
    pub services: Vec<&'a Arc<Service>>,
    /// VirtualServices bound to the mesh that apply to this listener's hosts.
    pub virtual_services: Vec<MeshVirtualService<'a>>,
}

impl EgressScope<'_> {
    /// The listener's port, when it names one.
    pub fn port(&self) -> Option<u16> {
        self.listener
            .and_then(|l| l.port.as_ref())
            .and_then(|p| u16::try_from(p.number).ok())
            .filter(|p| *p != 0)
    }
}

/// The proxy's Sidecar (if any) and its egress scopes, in the Sidecar's order.
#[derive(Debug, Clone)]
pub(crate) struct SidecarScope<'a> {
    /// The Sidecar resource that applies to the proxy.
    pub sidecar: Option<&'a Resource<Sidecar>>,
    /// Egress listeners; a proxy without Sidecar egress has one catch-all.
    pub egress: Vec<EgressScope<'a>>,
}

impl<'a> SidecarScope<'a> {
    /// Computes what `proxy` sees in `push`.
    pub fn new(push: &'a PushContext, proxy: &'a Proxy) -> Self {
        let sidecar = push.sidecar_for(proxy);
        let virtual_services = mesh_virtual_services(push, proxy);
        let listeners: Vec<(Option<&IstioEgressListener>, EgressImports)> = match sidecar {
            Some(s) if !s.spec.egress.is_empty() => s
                .spec
                .egress
                .iter()
                .map(|l| (Some(l), EgressImports::new(l, &proxy.namespace)))
                .collect(),
            _ => vec![(None, EgressImports::everything())],
        };
        let egress = listeners
            .into_iter()
            .map(|(listener, imports)| EgressScope {
                listener,
                services: push.services_imported_by(proxy, &imports),
                virtual_services: virtual_services
                    .iter()
                    .filter(|vs| {
                        vs.hosts
                            .iter()
                            .any(|h| imports.imports_host(vs.namespace, h))
                    })
                    .cloned()
                    .collect(),
            })
            .collect();
        SidecarScope { sidecar, egress }
    }

    /// The egress scope serving route `port` (0: the catch-all, as for the HTTP proxy):
    /// the listener on that port, else the catch-all (Istio's `GetEgressListenerForRDS`).
    pub fn egress_for_port(&self, port: u16) -> Option<&EgressScope<'a>> {
        let on_port = (port != 0)
            .then(|| self.egress.iter().find(|e| e.port() == Some(port)))
            .flatten();
        on_port.or_else(|| self.egress.iter().find(|e| e.port().is_none()))
    }

    /// True unless the Sidecar restricts outbound traffic to the registry.
    pub fn allow_any(&self) -> bool {
        self.sidecar
            .and_then(|s| s.spec.outbound_traffic_policy.as_ref())
            .is_none_or(|p| p.mode != OutboundTrafficPolicyMode::RegistryOnly)
    }

    /// Where unknown outbound traffic goes: the Sidecar's egress proxy, else
    /// `PassthroughCluster` (ALLOW_ANY) or `BlackHoleCluster` (REGISTRY_ONLY).
    pub fn catch_all_cluster(&self) -> String {
        use crate::translate::names::{BLACKHOLE_CLUSTER, PASSTHROUGH_CLUSTER, outbound_cluster};
        if !self.allow_any() {
            return BLACKHOLE_CLUSTER.to_owned();
        }
        let egress_proxy = self
            .sidecar
            .and_then(|s| s.spec.outbound_traffic_policy.as_ref())
            .and_then(|p| p.egress_proxy.as_ref());
        match egress_proxy {
            Some(e) => {
                let port = e
                    .port
                    .as_ref()
                    .and_then(|p| u16::try_from(p.number).ok())
                    .unwrap_or(0);
                outbound_cluster(port, &e.subset, &e.host.to_ascii_lowercase())
            }
            None => PASSTHROUGH_CLUSTER.to_owned(),
        }
    }
}

/// VirtualServices exported to the proxy's namespace and bound to the mesh (no
/// `gateways`, or `mesh` among them), with hosts resolved; delegates (no hosts) are
/// left out, as Istio only uses them through their root.
fn mesh_virtual_services<'a>(push: &'a PushContext, proxy: &Proxy) -> Vec<MeshVirtualService<'a>> {
    virtual_services_for(push, proxy)
        .filter(|vs| {
            let gateways = &vs.spec.gateways;
            gateways.is_empty() || gateways.iter().any(|g| g == MESH_GATEWAY)
        })
        .map(|vs| MeshVirtualService::of(push, vs))
        .collect()
}

/// The VirtualServices exported to `proxy`'s namespace, roots merged with their
/// delegates, delegates themselves (no hosts) left out.
pub(crate) fn virtual_services_for<'a>(
    push: &'a PushContext,
    proxy: &Proxy,
) -> impl Iterator<Item = &'a Resource<VirtualService>> {
    let proxy_namespace = proxy.namespace.clone();
    push.config
        .of_kind(Kind::VirtualService)
        .filter_map(|o| match o.as_ref() {
            Object::VirtualService(vs) => Some(push.delegation.resolve(vs)),
            _ => None,
        })
        .filter(move |vs| {
            let namespace = vs.metadata.namespace.as_deref().unwrap_or("");
            let spec = &vs.spec;
            let exported = spec.export_to.is_empty()
                || spec.export_to.iter().any(|e| {
                    e == "*" || e == &proxy_namespace || (e == "." && namespace == proxy_namespace)
                });
            exported && !spec.hosts.is_empty()
        })
}

impl<'a> MeshVirtualService<'a> {
    /// `vs` with its hosts made fully qualified in its namespace.
    pub fn of(push: &PushContext, vs: &'a Resource<VirtualService>) -> Self {
        let namespace = vs.metadata.namespace.as_deref().unwrap_or("");
        MeshVirtualService {
            namespace,
            name: vs.metadata.name.as_deref().unwrap_or(""),
            spec: &vs.spec,
            hosts: vs
                .spec
                .hosts
                .iter()
                .map(|h| resolve_host(h, namespace, &push.mesh))
                .collect(),
        }
    }
}

/// Istio's source matching for route matches: `sourceLabels` are all on the proxy and
/// `sourceNamespace` (if set) is the proxy's; a match naming `gateways` applies to the
/// sidecar only when it names `mesh`.
pub(crate) fn source_matches(
    proxy: &Proxy,
    gateways: &[String],
    source_labels: &mizzen_api::types::Labels,
    source_namespace: &str,
) -> bool {
    if !gateways.is_empty() {
        return gateways.iter().any(|g| g == MESH_GATEWAY);
    }
    source_labels_match(proxy, source_labels, source_namespace)
}

/// `sourceLabels` are all on the proxy and `sourceNamespace` (if set) is the proxy's.
fn source_labels_match(
    proxy: &Proxy,
    source_labels: &mizzen_api::types::Labels,
    source_namespace: &str,
) -> bool {
    source_labels
        .iter()
        .all(|(k, v)| proxy.labels.get(k) == Some(v))
        && (source_namespace.is_empty() || source_namespace == proxy.namespace)
}

/// Whom HTTP routes are built for, which decides the matches that apply: sidecars (the
/// `mesh` gateway) or one Gateway, named `namespace/name`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Binding<'a> {
    /// A sidecar.
    Mesh,
    /// A gateway proxy serving the Gateway `namespace/name`.
    Gateway(&'a str),
}

impl Binding<'_> {
    /// Istio's `sourceMatchHTTP`: a match naming `gateways` applies only to them (names
    /// resolved in the VirtualService's namespace `vs_namespace`), else its source labels
    /// and namespace must fit the proxy.
    pub fn matches(&self, proxy: &Proxy, vs_namespace: &str, m: &HttpMatchRequest) -> bool {
        match self {
            Binding::Mesh => {
                source_matches(proxy, &m.gateways, &m.source_labels, &m.source_namespace)
            }
            Binding::Gateway(name) if !m.gateways.is_empty() => m
                .gateways
                .iter()
                .any(|g| resolve_gateway_name(g, vs_namespace) == *name),
            Binding::Gateway(_) => {
                source_labels_match(proxy, &m.source_labels, &m.source_namespace)
            }
        }
    }
}
