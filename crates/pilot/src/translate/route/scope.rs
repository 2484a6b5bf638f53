//! What one sidecar sees: the Sidecar resource that applies to it, and for each of its
//! egress listeners the services and VirtualServices it may reach (Istio's
//! `SidecarScope`). Listeners and routes are both built from this.

use std::sync::Arc;

use mizzen_api::networking::{
    IstioEgressListener, MESH_GATEWAY, OutboundTrafficPolicyMode, Sidecar, VirtualService,
};
use mizzen_api::{Kind, Object, Resource};

use crate::model::{Hostname, Proxy, PushContext, Service};

/// The egress hosts Istio gives a proxy with no Sidecar: everything visible.
const DEFAULT_EGRESS_HOSTS: &str = "*/*";

/// A VirtualService bound to the mesh, with its hosts made fully qualified.
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
        resolve_host(host, self.namespace, &push.mesh.domain_suffix)
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
        let sidecar = sidecar_for(push, proxy);
        let sidecar_namespace = sidecar
            .and_then(|s| s.metadata.namespace.as_deref())
            .unwrap_or(&proxy.namespace);
        let default_hosts = [DEFAULT_EGRESS_HOSTS.to_owned()];
        let virtual_services = mesh_virtual_services(push, proxy);
        let mut egress = Vec::new();
        let listeners: Vec<Option<&IstioEgressListener>> = match sidecar {
            Some(s) if !s.spec.egress.is_empty() => s.spec.egress.iter().map(Some).collect(),
            _ => vec![None],
        };
        for listener in listeners {
            let hosts: &[String] = listener.map_or(&default_hosts, |l| &l.hosts);
            let imports = hosts
                .iter()
                .filter_map(|h| EgressHost::parse(h, sidecar_namespace))
                .collect::<Vec<_>>();
            let services = visible_services(push, proxy, &imports);
            let virtual_services = virtual_services
                .iter()
                .filter(|vs| {
                    vs.hosts
                        .iter()
                        .any(|h| imports.iter().any(|i| i.imports(vs.namespace, h)))
                })
                .cloned()
                .collect();
            egress.push(EgressScope {
                listener,
                services,
                virtual_services,
            });
        }
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

/// The Sidecar that applies to `proxy`: one in its namespace whose selector matches its
/// labels, else its namespace's one without selector, else the root namespace's one
/// without selector. Ties go to the first by name.
pub(crate) fn sidecar_for<'a>(
    push: &'a PushContext,
    proxy: &Proxy,
) -> Option<&'a Resource<Sidecar>> {
    let sidecars: Vec<&Resource<Sidecar>> = push
        .config
        .of_kind(Kind::Sidecar)
        .filter_map(|o| match o.as_ref() {
            Object::Sidecar(s) => Some(s),
            _ => None,
        })
        .collect();
    let in_namespace =
        |s: &&Resource<Sidecar>, ns: &str| s.metadata.namespace.as_deref().unwrap_or("") == ns;
    let selected = sidecars.iter().find(|s| {
        in_namespace(s, &proxy.namespace)
            && s.spec.workload_selector.as_ref().is_some_and(|sel| {
                !sel.labels.is_empty()
                    && sel
                        .labels
                        .iter()
                        .all(|(k, v)| proxy.labels.get(k) == Some(v))
            })
    });
    let unselected = |ns: &str| {
        sidecars
            .iter()
            .find(|s| {
                in_namespace(s, ns)
                    && s.spec
                        .workload_selector
                        .as_ref()
                        .is_none_or(|sel| sel.labels.is_empty())
            })
            .copied()
    };
    selected
        .copied()
        .or_else(|| unselected(&proxy.namespace))
        .or_else(|| unselected(&push.mesh.root_namespace))
}

/// Makes `host` fully qualified: a name without dots is a Kubernetes service in
/// `namespace` (Istio's `ResolveShortnameToFQDN`).
pub(crate) fn resolve_host(host: &str, namespace: &str, domain_suffix: &str) -> Hostname {
    if host.contains('.') || host == "*" {
        Hostname::new(host)
    } else {
        Hostname::new(&format!("{host}.{namespace}.svc.{domain_suffix}"))
    }
}

/// One `namespace/dnsName` entry of an egress listener's `hosts`.
#[derive(Debug, Clone)]
struct EgressHost {
    /// `None`: any namespace; `Some("")`: none (`~`).
    namespace: Option<String>,
    host: Hostname,
}

impl EgressHost {
    fn parse(entry: &str, sidecar_namespace: &str) -> Option<EgressHost> {
        let (ns, host) = entry.split_once('/')?;
        let namespace = match ns {
            "*" => None,
            "." => Some(sidecar_namespace.to_owned()),
            "~" => Some(String::new()),
            other => Some(other.to_owned()),
        };
        Some(EgressHost {
            namespace,
            host: Hostname::new(host),
        })
    }

    fn imports(&self, namespace: &str, host: &Hostname) -> bool {
        let ns_ok = match &self.namespace {
            None => true,
            Some(ns) => !ns.is_empty() && ns == namespace,
        };
        ns_ok && (self.host.matches(host) || host.is_wildcard() && host.matches(&self.host))
    }
}

/// The services exported to the proxy and imported by `imports`, one per hostname (the
/// one in the proxy's namespace first, as Istio prefers), in hostname order.
fn visible_services<'a>(
    push: &'a PushContext,
    proxy: &'a Proxy,
    imports: &[EgressHost],
) -> Vec<&'a Arc<Service>> {
    let mut out: Vec<&Arc<Service>> = Vec::new();
    for service in push.visible_services(proxy) {
        if !imports
            .iter()
            .any(|i| i.imports(&service.namespace, &service.hostname))
        {
            continue;
        }
        match out.iter_mut().find(|s| s.hostname == service.hostname) {
            Some(existing) => {
                if service.namespace == proxy.namespace && existing.namespace != proxy.namespace {
                    *existing = service;
                }
            }
            None => out.push(service),
        }
    }
    out
}

/// VirtualServices exported to the proxy's namespace and bound to the mesh (no
/// `gateways`, or `mesh` among them), with hosts resolved; delegates (no hosts) are
/// left out, as Istio only uses them through their root.
fn mesh_virtual_services<'a>(push: &'a PushContext, proxy: &Proxy) -> Vec<MeshVirtualService<'a>> {
    push.config
        .of_kind(Kind::VirtualService)
        .filter_map(|o| match o.as_ref() {
            Object::VirtualService(vs) => Some(vs),
            _ => None,
        })
        .filter_map(|vs| {
            let namespace = vs.metadata.namespace.as_deref().unwrap_or("");
            let spec = &vs.spec;
            let bound = spec.gateways.is_empty() || spec.gateways.iter().any(|g| g == MESH_GATEWAY);
            let exported = spec.export_to.is_empty()
                || spec.export_to.iter().any(|e| {
                    e == "*" || e == &proxy.namespace || (e == "." && namespace == proxy.namespace)
                });
            (bound && exported && !spec.hosts.is_empty()).then(|| MeshVirtualService {
                namespace,
                name: vs.metadata.name.as_deref().unwrap_or(""),
                spec,
                hosts: spec
                    .hosts
                    .iter()
                    .map(|h| resolve_host(h, namespace, &push.mesh.domain_suffix))
                    .collect(),
            })
        })
        .collect()
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
    source_labels
        .iter()
        .all(|(k, v)| proxy.labels.get(k) == Some(v))
        && (source_namespace.is_empty() || source_namespace == proxy.namespace)
}
