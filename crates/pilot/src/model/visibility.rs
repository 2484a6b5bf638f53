//! Which services a proxy sees (Istio's `SidecarScope`): those exported to its namespace
//! (`exportTo`), narrowed by the egress `hosts` of the Sidecar resource that applies to
//! it, with one service per hostname.

use std::collections::BTreeMap;
use std::sync::Arc;

use mizzen_api::networking::{IstioEgressListener, Sidecar};
use mizzen_api::types::Protocol;
use mizzen_api::{Kind, Object, Resource};

use super::proxy::{NodeType, Proxy};
use super::service::{Hostname, Service};
use crate::store::Snapshot;

/// The Sidecar resource that configures `proxy`, as Istio picks it: in the proxy's
/// namespace, the oldest Sidecar whose `workloadSelector` its labels satisfy, else the
/// one without a selector; else the one without a selector in `root_namespace`.
/// Gateways (and proxies with no Sidecar) get `None`: they see every exported service.
pub fn sidecar_for<'a>(
    config: &'a Snapshot,
    root_namespace: &str,
    proxy: &Proxy,
) -> Option<&'a Resource<Sidecar>> {
    if proxy.node_type != NodeType::Sidecar {
        return None;
    }
    let mut sidecars: Vec<&Resource<Sidecar>> = config
        .of_kind(Kind::Sidecar)
        .filter_map(|object| match object.as_ref() {
            Object::Sidecar(sidecar) => Some(sidecar),
            _ => None,
        })
        .collect();
    sidecars.sort_by(|a, b| {
        a.metadata
            .creation_timestamp
            .cmp(&b.metadata.creation_timestamp)
    });
    let in_namespace = |ns: &str| -> Vec<&'a Resource<Sidecar>> {
        sidecars
            .iter()
            .copied()
            .filter(|s| s.metadata.namespace.as_deref() == Some(ns))
            .collect()
    };
    let own = in_namespace(&proxy.namespace);
    let selecting = own.iter().copied().find(|s| {
        s.spec.workload_selector.as_ref().is_some_and(|selector| {
            selector
                .labels
                .iter()
                .all(|(k, v)| proxy.labels.get(k) == Some(v))
        })
    });
    let namespace_wide = |candidates: Vec<&'a Resource<Sidecar>>| {
        candidates
            .into_iter()
            .find(|s| s.spec.workload_selector.is_none())
    };
    selecting
        .or_else(|| namespace_wide(own))
        .or_else(|| namespace_wide(in_namespace(root_namespace)))
}

/// The services one egress listener imports through its `hosts` (`namespace/dnsName`).
#[derive(Debug, Clone)]
pub struct EgressImports {
    /// Imports of a named namespace (`.` already replaced by the proxy's namespace).
    by_namespace: BTreeMap<String, Vec<Hostname>>,
    /// Imports of any namespace (`*/…`).
    any_namespace: Vec<Hostname>,
    /// The port a service must have, for a listener on a port that is not an HTTP proxy.
    port: Option<u16>,
}

impl EgressImports {
    /// The imports of `listener` for a proxy in `namespace` (which `.` stands for, also
    /// when the Sidecar comes from the root namespace). `~/…` imports nothing; a host
    /// without `/` is ignored, as Istio does.
    pub fn new(listener: &IstioEgressListener, namespace: &str) -> Self {
        let mut imports = EgressImports {
            by_namespace: BTreeMap::new(),
            any_namespace: Vec::new(),
            port: listener.port.as_ref().and_then(|p| {
                let proxy = p.protocol.parse::<Protocol>() == Ok(Protocol::HttpProxy);
                u16::try_from(p.number).ok().filter(|&n| n != 0 && !proxy)
            }),
        };
        for host in &listener.hosts {
            let Some((ns, name)) = host.split_once('/') else {
                continue;
            };
            let name = Hostname::new(name);
            match ns {
                "*" => imports.any_namespace.push(name),
                "." => imports
                    .by_namespace
                    .entry(namespace.to_owned())
                    .or_default()
                    .push(name),
                other => imports
                    .by_namespace
                    .entry(other.to_owned())
                    .or_default()
                    .push(name),
            }
        }
        imports
    }

    /// What a Sidecar without egress listeners imports: everything (`*/*`).
    pub fn everything() -> Self {
        EgressImports {
            by_namespace: BTreeMap::new(),
            any_namespace: vec![Hostname::new("*")],
            port: None,
        }
    }

    /// True when the listener imports `service`: a host of the service's namespace or
    /// of `*` covers its hostname (`*.example.com` covers `a.example.com`), and the
    /// service has the listener's port, if it must.
    pub fn imports(&self, service: &Service) -> bool {
        self.imports_host(&service.namespace, &service.hostname)
            && self.port.is_none_or(|port| service.port(port).is_some())
    }

    /// True when the listener imports `host` from `namespace` (for config such as a
    /// VirtualService, whose hosts may themselves be wildcards): an imported host
    /// covers it, or it covers an imported host.
    pub fn imports_host(&self, namespace: &str, host: &Hostname) -> bool {
        let covers = |hosts: &[Hostname]| {
            hosts
                .iter()
                .any(|h| h.matches(host) || (host.is_wildcard() && host.matches(h)))
        };
        self.by_namespace
            .get(namespace)
            .is_some_and(|hosts| covers(hosts))
            || covers(&self.any_namespace)
    }
}

/// The imports of every egress listener of `sidecar` for a proxy in `namespace`.
pub fn egress_imports(sidecar: &Sidecar, namespace: &str) -> Vec<EgressImports> {
    if sidecar.egress.is_empty() {
        return vec![EgressImports::everything()];
    }
    sidecar
        .egress
        .iter()
        .map(|listener| EgressImports::new(listener, namespace))
        .collect()
}

/// True when `service` is visible from `namespace` under its `exportTo` (empty: all).
pub fn exported_to(service: &Service, namespace: &str) -> bool {
    service.export_to.is_empty()
        || service
            .export_to
            .iter()
            .any(|e| e == "*" || e == namespace || (e == "." && service.namespace == namespace))
}

/// Keeps one service per hostname from `services` (grouped by hostname, each group in
/// registry order, Kubernetes Services first): the one defined in `namespace`, else the
/// first.
pub fn one_per_hostname<'a>(
    services: impl Iterator<Item = &'a Arc<Service>>,
    namespace: &str,
) -> Vec<&'a Arc<Service>> {
    let all: Vec<&Arc<Service>> = services.collect();
    all.chunk_by(|a, b| a.hostname == b.hostname)
        .filter_map(|group| {
            group
                .iter()
                .find(|s| s.namespace == namespace)
                .or_else(|| group.first())
                .copied()
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::push::{MeshConfig, PushContext};
    use crate::model::testing::snapshot;

    /// Services in three namespaces, one private, one hidden, one exported to `web`.
    const SERVICES: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec: {ports: [{name: http, port: 9080}]}
---
apiVersion: v1
kind: Service
metadata: {name: ratings, namespace: default}
spec: {ports: [{name: http, port: 9080}, {name: grpc, port: 9090}]}
---
apiVersion: v1
kind: Service
metadata:
  name: secret
  namespace: default
  annotations: {networking.istio.io/exportTo: "."}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: frontend, namespace: web}
spec: {ports: [{name: http, port: 80}]}
---
apiVersion: v1
kind: Service
metadata: {name: istiod, namespace: istio-system}
spec: {ports: [{name: grpc, port: 15010}]}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: external, namespace: egress}
spec:
  hosts: [api.example.com, db.example.org]
  ports: [{number: 443, name: tls, protocol: TLS}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: hidden, namespace: egress}
spec:
  hosts: [hidden.example.com]
  exportTo: ["~"]
  ports: [{number: 443, name: tls, protocol: TLS}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: for-web, namespace: egress}
spec:
  hosts: [web-only.example.com]
  exportTo: [web]
  ports: [{number: 443, name: tls, protocol: TLS}]
  resolution: DNS
"#;

    fn push(extra: &str) -> PushContext {
        let yaml = format!("{SERVICES}\n---\n{extra}");
        PushContext::new(Arc::new(snapshot(&yaml)), Arc::new(MeshConfig::default()))
    }

    fn sidecar_proxy(namespace: &str, app: &str) -> Proxy {
        let mut proxy = Proxy::from_node_id(&format!(
            "sidecar~127.0.0.9~{app}-1.{namespace}~{namespace}.svc.cluster.local"
        ))
        .unwrap();
        proxy.labels.insert("app".into(), app.into());
        proxy
    }

    fn visible(push: &PushContext, proxy: &Proxy) -> Vec<String> {
        push.visible_services(proxy)
            .map(|s| s.hostname.to_string())
            .collect()
    }

    fn sidecar_name(push: &PushContext, proxy: &Proxy) -> Option<String> {
        push.sidecar_for(proxy)
            .map(|s| s.metadata.name.clone().unwrap_or_default())
    }

    #[test]
    fn without_a_sidecar_every_exported_service_is_visible() {
        let push = push("");
        assert_eq!(
            visible(&push, &sidecar_proxy("default", "productpage")),
            [
                "api.example.com",
                "db.example.org",
                "frontend.web.svc.cluster.local",
                "istiod.istio-system.svc.cluster.local",
                "ratings.default.svc.cluster.local",
                "reviews.default.svc.cluster.local",
                "secret.default.svc.cluster.local",
            ]
        );
        let web = visible(&push, &sidecar_proxy("web", "frontend"));
        assert!(web.contains(&"web-only.example.com".to_owned()));
        assert!(!web.contains(&"secret.default.svc.cluster.local".to_owned()));
        assert!(!web.contains(&"hidden.example.com".to_owned()));
    }

    #[test]
    fn egress_hosts_limit_what_a_sidecar_sees() {
        let push = push(
            r#"
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: default}
spec:
  egress:
  - hosts: ["./*", "istio-system/*", "*/*.example.com"]
"#,
        );
        let proxy = sidecar_proxy("default", "productpage");
        assert_eq!(sidecar_name(&push, &proxy).as_deref(), Some("default"));
        assert_eq!(
            visible(&push, &proxy),
            [
                "api.example.com",
                "istiod.istio-system.svc.cluster.local",
                "ratings.default.svc.cluster.local",
                "reviews.default.svc.cluster.local",
                "secret.default.svc.cluster.local",
            ]
        );
        // Other namespaces have no Sidecar and see everything exported to them.
        assert_eq!(sidecar_name(&push, &sidecar_proxy("web", "frontend")), None);
        assert_eq!(visible(&push, &sidecar_proxy("web", "frontend")).len(), 7);
    }

    #[test]
    fn a_named_namespace_import_falls_back_to_wildcard_imports() {
        let push = push(
            r#"
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: web}
spec:
  egress:
  - hosts: ["default/reviews.default.svc.cluster.local", "*/ratings.default.svc.cluster.local", "egress/*", "~/*"]
"#,
        );
        assert_eq!(
            visible(&push, &sidecar_proxy("web", "frontend")),
            [
                "api.example.com",
                "db.example.org",
                "ratings.default.svc.cluster.local",
                "reviews.default.svc.cluster.local",
                "web-only.example.com",
            ]
        );
    }

    #[test]
    fn workload_sidecar_over_namespace_sidecar_over_root_default() {
        let push = push(
            r#"
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: mesh-default, namespace: istio-system}
spec:
  egress: [{hosts: ["./*", "istio-system/*"]}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: reviews-only, namespace: default}
spec:
  workloadSelector: {labels: {app: productpage}}
  egress: [{hosts: ["./reviews.default.svc.cluster.local"]}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: namespace-wide, namespace: default}
spec:
  egress: [{hosts: ["./*"]}]
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: ignored-selector, namespace: istio-system}
spec:
  workloadSelector: {labels: {app: frontend}}
  egress: [{hosts: ["~/*"]}]
"#,
        );
        let productpage = sidecar_proxy("default", "productpage");
        assert_eq!(
            sidecar_name(&push, &productpage).as_deref(),
            Some("reviews-only")
        );
        assert_eq!(
            visible(&push, &productpage),
            ["reviews.default.svc.cluster.local"]
        );

        let details = sidecar_proxy("default", "details");
        assert_eq!(
            sidecar_name(&push, &details).as_deref(),
            Some("namespace-wide")
        );
        assert_eq!(visible(&push, &details).len(), 3);

        // The root namespace's default applies where a namespace has none, with `.`
        // meaning the proxy's namespace.
        let frontend = sidecar_proxy("web", "frontend");
        assert_eq!(
            sidecar_name(&push, &frontend).as_deref(),
            Some("mesh-default")
        );
        assert_eq!(
            visible(&push, &frontend),
            [
                "frontend.web.svc.cluster.local",
                "istiod.istio-system.svc.cluster.local"
            ]
        );

        // Gateways are not configured by Sidecars.
        let mut gateway = sidecar_proxy("default", "productpage");
        gateway.node_type = NodeType::Router;
        assert_eq!(sidecar_name(&push, &gateway), None);
        assert_eq!(visible(&push, &gateway).len(), 7);
    }

    #[test]
    fn port_listeners_import_services_with_that_port() {
        let push = push(
            r#"
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: default}
spec:
  egress:
  - port: {number: 9090, protocol: GRPC, name: grpc}
    hosts: ["./*"]
  - port: {number: 15010, protocol: HTTP_PROXY, name: proxy}
    hosts: ["*/*.example.com"]
"#,
        );
        assert_eq!(
            visible(&push, &sidecar_proxy("default", "productpage")),
            ["api.example.com", "ratings.default.svc.cluster.local"]
        );
    }

    #[test]
    fn one_service_per_hostname_preferring_the_proxy_namespace() {
        let push = push(
            r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api-web, namespace: web}
spec:
  hosts: [api.example.com]
  ports: [{number: 8443, name: tls, protocol: TLS}]
  resolution: DNS
"#,
        );
        let port_of = |proxy: &Proxy| {
            push.visible_services(proxy)
                .find(|s| s.hostname.as_str() == "api.example.com")
                .map(|s| s.ports[0].port)
        };
        assert_eq!(port_of(&sidecar_proxy("web", "frontend")), Some(8443));
        assert_eq!(port_of(&sidecar_proxy("default", "productpage")), Some(443));
    }
}
