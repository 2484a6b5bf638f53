//! What several analyzers share: Istio's host matching, Kubernetes label selectors,
//! and how short names resolve to namespaced ones.

use std::collections::{BTreeMap, HashMap};

use k8s_openapi::api::core::v1::{Container, Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;

use crate::Kind;
use crate::Resource;
use crate::analyze::{Collection, Context, Entry};
use crate::networking::ServiceEntry;
use crate::types::Labels;

/// The Kubernetes cluster domain Istio assumes.
pub const CLUSTER_DOMAIN: &str = "svc.cluster.local";

/// The gateway name that means "the sidecars" in a VirtualService.
pub const MESH_GATEWAY: &str = "mesh";

/// The name of the sidecar container Istio injects.
pub const PROXY_CONTAINER: &str = "istio-proxy";

/// The namespace label that turns sidecar injection on (`enabled`) or off.
pub const INJECTION_LABEL: &str = "istio-injection";

/// The namespace or workload label naming the control-plane revision that injects it.
pub const REVISION_LABEL: &str = "istio.io/rev";

/// The workload label (or annotation) that asks for or refuses a sidecar.
pub const SIDECAR_INJECT: &str = "sidecar.istio.io/inject";

/// True for objects of Istio's own control plane (`util.IsIstioControlPlane`): those
/// labelled `istio`, or `release: istio`.
pub fn is_control_plane(entry: &Entry) -> bool {
    entry.label("istio").is_some() || entry.label("release") == Some("istio")
}

/// True for objects Istio's gateway controllers create and manage (waypoints, gateways).
pub fn is_gateway_managed(entry: &Entry) -> bool {
    matches!(
        entry.label("gateway.istio.io/managed"),
        Some(
            "istio.io-gateway-controller"
                | "istio.io-mesh-controller"
                | "istio.io-eastwest-controller"
        )
    )
}

/// True when `containers` include Istio's sidecar with an image.
pub fn has_proxy(containers: &[Container]) -> bool {
    containers
        .iter()
        .any(|c| c.name == PROXY_CONTAINER && c.image.as_deref().is_some_and(|i| !i.is_empty()))
}

/// True when a workload whose pods carry `labels`, `annotations` and `containers` runs a
/// sidecar in `namespace` (`util.DeploymentInMesh`): it has one already, or its pods ask
/// for one (label first, then annotation), or its namespace has injection enabled.
pub fn in_mesh(
    ctx: &Context,
    namespace: &str,
    labels: Option<&Labels>,
    annotations: Option<&Labels>,
    containers: &[Container],
) -> bool {
    if has_proxy(containers) {
        return true;
    }
    let asked = |map: Option<&Labels>| map?.get(SIDECAR_INJECT).map(|v| v == "true");
    if let Some(inject) = asked(labels).or_else(|| asked(annotations)) {
        return inject;
    }
    ctx.find(Collection::of(Kind::Namespace), "", namespace)
        .is_some_and(|ns| ns.label(INJECTION_LABEL) == Some("enabled"))
}

pub use crate::kube::service_port_protocol as port_protocol;

/// True when a Kubernetes label selector selects `labels`: a missing selector selects
/// everything, as a webhook's does; a malformed one selects nothing.
pub fn label_selector_matches(selector: Option<&LabelSelector>, labels: &Labels) -> bool {
    let Some(selector) = selector else {
        return true;
    };
    let exact = selector
        .match_labels
        .iter()
        .flatten()
        .all(|(k, v)| labels.get(k) == Some(v));
    exact
        && selector.match_expressions.iter().flatten().all(|e| {
            let values = e.values.as_deref().unwrap_or_default();
            let value = labels.get(&e.key);
            match e.operator.as_str() {
                "In" => !values.is_empty() && value.is_some_and(|v| values.contains(v)),
                "NotIn" => !values.is_empty() && value.is_none_or(|v| !values.contains(v)),
                "Exists" => value.is_some() && values.is_empty(),
                "DoesNotExist" => value.is_none() && values.is_empty(),
                _ => false,
            }
        })
}

/// A list as Go's `%v` prints a slice: `[a b c]`.
pub fn go_list<T: std::fmt::Display>(items: impl IntoIterator<Item = T>) -> String {
    let items: Vec<String> = items.into_iter().map(|i| i.to_string()).collect();
    format!("[{}]", items.join(" "))
}

/// True when Istio host `a` matches `b` (`host.Name.Matches`): wildcards match by suffix,
/// either side may be one.
pub fn host_matches(a: &str, b: &str) -> bool {
    match (a.strip_prefix('*'), b.strip_prefix('*')) {
        (Some(a), Some(b)) if a.len() < b.len() => b.ends_with(a),
        (Some(a), Some(b)) => a.ends_with(b),
        (Some(a), None) => b.ends_with(a),
        (None, Some(b)) => a.ends_with(b),
        (None, None) => a == b,
    }
}

/// The hosts of `hosts` (`namespace/host` or plain) visible from `namespace`, with
/// their namespace part removed (`host.NamesForNamespace`).
pub fn names_for_namespace<'a>(hosts: &'a [String], namespace: &str) -> Vec<&'a str> {
    hosts
        .iter()
        .filter_map(|h| match h.split_once('/') {
            Some((ns, host)) if ns == namespace || ns == "*" => Some(host),
            Some(_) => None,
            None => Some(h.as_str()),
        })
        .collect()
}

/// A label selector as Kubernetes prints it: `a=1,b=2`, sorted by key; empty for
/// "everything".
pub fn selector_string(selector: &BTreeMap<String, String>) -> String {
    selector
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect::<Vec<_>>()
        .join(",")
}

/// True when `labels` carry every label of `selector` (an empty selector selects all).
pub fn selects(selector: &BTreeMap<String, String>, labels: Option<&Labels>) -> bool {
    selector
        .iter()
        .all(|(k, v)| labels.and_then(|l| l.get(k)) == Some(v))
}

/// The pods of `namespace` whose labels carry every label of `selector`.
pub fn selected_pods<'a>(
    ctx: &'a Context,
    namespace: &'a str,
    selector: &'a BTreeMap<String, String>,
) -> impl Iterator<Item = &'a Entry> + 'a {
    ctx.collection(Collection::of(Kind::Pod))
        .filter(move |pod| {
            pod.namespace() == namespace && selects(selector, pod.meta().labels.as_ref())
        })
}

/// The message path of a selector's first label (`{prefix}[label]`), where selector
/// messages point (`util.ExtractLabelFromSelectorString`).
pub fn first_label_path(prefix: &str, selector: &BTreeMap<String, String>) -> String {
    match selector.keys().next() {
        Some(label) => format!("{prefix}[{label}]"),
        None => prefix.to_owned(),
    }
}

/// True when ztunnel redirects the pod's traffic (ambient mode): a sidecar-era policy
/// selecting it has no effect (`util.PodInAmbientMode`).
pub fn pod_in_ambient(pod: &Entry) -> bool {
    pod.annotation("ambient.istio.io/redirection") == Some("enabled")
}

/// True when the namespace is labelled for ambient mode and not also for sidecar
/// injection (`util.NamespaceInAmbientMode`).
pub fn namespace_in_ambient(namespace: Option<&Entry>) -> bool {
    let Some(namespace) = namespace else {
        return false;
    };
    namespace.label("istio-injection") != Some("enabled")
        && namespace.label("istio.io/rev").is_none_or(str::is_empty)
        && namespace.label("istio.io/dataplane-mode") == Some("ambient")
}

/// True when the pod runs a sidecar or will be injected with one: an `istio-proxy`
/// container with an image, else the pod's `sidecar.istio.io/inject` label or annotation,
/// else its namespace's `istio-injection` label (`util.PodInMesh`).
pub fn pod_in_mesh(ctx: &Context, entry: &Entry, pod: &Pod) -> bool {
    let spec = pod.spec.as_ref();
    let containers = spec
        .map(|s| {
            s.containers
                .iter()
                .chain(s.init_containers.iter().flatten())
        })
        .into_iter()
        .flatten();
    let proxy = containers.into_iter().find(|c| c.name == "istio-proxy");
    if proxy.is_some_and(|p| p.image.as_deref().is_some_and(|i| !i.is_empty())) {
        return true;
    }
    const INJECT: &str = "sidecar.istio.io/inject";
    if let Some(inject) = entry.label(INJECT).or_else(|| entry.annotation(INJECT)) {
        return inject == "true";
    }
    ctx.find(Collection::of(Kind::Namespace), "", entry.namespace())
        .is_some_and(|ns| ns.label("istio-injection") == Some("enabled"))
}

/// `(namespace, name)` of a reference written `name` or `namespace/name`
/// (`resource.NewShortOrFullName`).
pub fn short_or_full_name<'a>(namespace: &'a str, name: &'a str) -> (&'a str, &'a str) {
    name.split_once('/').unwrap_or((namespace, name))
}

/// `host` as a fully qualified name: short names (no dot, no wildcard) get
/// `.namespace.svc.cluster.local` (`util.ConvertHostToFQDN`).
pub fn fqdn(namespace: &str, host: &str) -> String {
    if host.starts_with('*') || host.contains('.') {
        host.to_owned()
    } else {
        format!("{host}.{namespace}.{CLUSTER_DOMAIN}")
    }
}

/// `(namespace, name)` of the Service a host names: `name.namespace.svc.cluster.local`
/// (or `name.namespace`… as Istio's pattern reads it), else a short name in
/// `namespace` (`util.GetResourceNameFromHost`).
pub fn service_of_host(namespace: &str, host: &str) -> (String, String) {
    match service_of_fqdn(host) {
        Some((name, ns)) => (ns.to_owned(), name.to_owned()),
        None => (namespace.to_owned(), host.to_owned()),
    }
}

/// `(name, namespace)` of `name.namespace.svc.cluster.local`; Istio's `fqdnPattern`
/// (`^(.+)\.(.+)\.svc\.cluster\.local$`), whose first group is greedy.
pub fn service_of_fqdn(host: &str) -> Option<(&str, &str)> {
    let rest = host.strip_suffix(".svc.cluster.local")?;
    let (name, namespace) = rest.rsplit_once('.')?;
    (!name.is_empty() && !namespace.is_empty()).then_some((name, namespace))
}

/// Every Service and ServiceEntry host, by the namespaces it is visible in (`*` for
/// all), with its ports: what a destination host must be (`util.InitServiceEntryHostMap`).
pub struct ScopedHosts {
    /// `scope/fqdn` → the service.
    hosts: HashMap<String, ScopedService>,
}

/// What a destination host resolves to: a Service or ServiceEntry's ports and the
/// labels of the workloads behind it.
#[derive(Debug, Clone)]
pub struct ScopedService {
    /// The port numbers.
    pub ports: Vec<u32>,
    /// The workload selector (a Service's selector, a ServiceEntry's `workloadSelector`).
    pub selector: Labels,
}

impl ScopedHosts {
    /// Collects the hosts of `ctx`'s ServiceEntries and Services.
    pub fn new(ctx: &Context) -> Self {
        let mut hosts = HashMap::new();
        for (entry, se) in ctx.each::<Resource<ServiceEntry>>() {
            let service = ScopedService {
                ports: se.spec.ports.iter().map(|p| p.number).collect(),
                selector: se
                    .spec
                    .workload_selector
                    .as_ref()
                    .map(|s| s.labels.clone())
                    .unwrap_or_default(),
            };
            let ns = entry.namespace();
            let scopes: Vec<&str> =
                if se.spec.export_to.is_empty() || se.spec.export_to.iter().any(|e| e == "*") {
                    vec!["*"]
                } else {
                    se.spec
                        .export_to
                        .iter()
                        .map(|e| if e == "." { ns } else { e.as_str() })
                        .collect()
                };
            for host in &se.spec.hosts {
                for scope in &scopes {
                    hosts.insert(format!("{scope}/{}", fqdn(ns, host)), service.clone());
                }
            }
        }
        for (entry, svc) in ctx.each::<Service>() {
            let spec = svc.spec.as_ref();
            let service = ScopedService {
                ports: spec
                    .and_then(|s| s.ports.as_deref())
                    .unwrap_or_default()
                    .iter()
                    .map(|p| p.port as u32)
                    .collect(),
                selector: spec.and_then(|s| s.selector.clone()).unwrap_or_default(),
            };
            let ns = entry.namespace();
            let scopes: Vec<&str> = match entry.annotation("networking.istio.io/exportTo") {
                None | Some("") => vec!["*"],
                Some(list) => list
                    .split(',')
                    .map(|e| if e == "." { ns } else { e })
                    .collect(),
            };
            for scope in scopes {
                hosts.insert(
                    format!("{scope}/{}", fqdn(ns, entry.name())),
                    service.clone(),
                );
            }
        }
        Self { hosts }
    }

    /// The ports of the service `host` names, as seen from a VirtualService in
    /// `namespace` exported to `export_to`; `None` when no service has that host.
    pub fn lookup(&self, namespace: &str, export_to: &[String], host: &str) -> Option<&[u32]> {
        self.service(namespace, export_to, host)
            .map(|s| s.ports.as_slice())
    }

    /// The service `host` names, as seen from an object in `namespace` exported to
    /// `export_to` (`util.GetDestinationHost`).
    pub fn service(
        &self,
        namespace: &str,
        export_to: &[String],
        host: &str,
    ) -> Option<&ScopedService> {
        let fq = fqdn(namespace, host);
        let get = |scope: &str| self.hosts.get(&format!("{scope}/{fq}"));
        if let Some(service) = get("*") {
            return Some(service);
        }
        let found = if export_to.is_empty() {
            get(namespace)
        } else {
            export_to
                .iter()
                .find_map(|e| get(if e == "." { namespace } else { e }))
        };
        if found.is_some() {
            return found;
        }
        // Wildcard hosts last: visible to all or to this namespace, matched by suffix.
        let bare = fq.trim_start_matches('*');
        self.hosts.iter().find_map(|(scoped, service)| {
            let (scope, se_host) = scoped.split_once('/')?;
            let suffix = se_host.strip_prefix('*')?;
            ((scope == "*" || scope == namespace) && bare.ends_with(suffix)).then_some(service)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_match_by_wildcard_suffix() {
        assert!(host_matches("*.example.com", "a.example.com"));
        assert!(host_matches("a.example.com", "*.example.com"));
        assert!(host_matches("*.com", "*.example.com"));
        assert!(host_matches("*", "anything"));
        assert!(!host_matches("a.example.com", "b.example.com"));
    }

    #[test]
    fn label_selectors_match_as_kubernetes_matches_them() {
        use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelectorRequirement;
        let labels: Labels = [("istio-injection".to_owned(), "enabled".to_owned())].into();
        let expr = |key: &str, operator: &str, values: &[&str]| LabelSelector {
            match_expressions: Some(vec![LabelSelectorRequirement {
                key: key.into(),
                operator: operator.into(),
                values: Some(values.iter().map(|v| v.to_string()).collect()),
            }]),
            ..Default::default()
        };
        assert!(label_selector_matches(None, &labels));
        assert!(label_selector_matches(
            Some(&expr("istio-injection", "In", &["enabled"])),
            &labels
        ));
        assert!(!label_selector_matches(
            Some(&expr("istio-injection", "NotIn", &["enabled"])),
            &labels
        ));
        assert!(label_selector_matches(
            Some(&expr("istio.io/rev", "DoesNotExist", &[])),
            &labels
        ));
        assert!(!label_selector_matches(
            Some(&expr("istio.io/rev", "In", &[])),
            &labels
        ));
    }

    #[test]
    fn hosts_resolve_to_services() {
        assert_eq!(
            service_of_host("default", "reviews.prod.svc.cluster.local"),
            ("prod".into(), "reviews".into())
        );
        assert_eq!(
            service_of_host("default", "reviews"),
            ("default".into(), "reviews".into())
        );
        assert_eq!(fqdn("ns", "reviews"), "reviews.ns.svc.cluster.local");
        assert_eq!(short_or_full_name("a", "b/c"), ("b", "c"));
    }
}
