//! Which Gateway servers a gateway proxy serves (Istio's `MergeGateways`): the servers
//! of every Gateway whose selector its labels satisfy, grouped by port and bind address.

use std::collections::BTreeMap;

use mizzen_api::networking::Gateway;
use mizzen_api::types::Protocol;
use mizzen_api::{Kind, Object, Resource};

use crate::model::{Proxy, PushContext};

/// One server of a Gateway that selects the proxy.
#[derive(Debug, Clone)]
pub(crate) struct GatewayServer {
    /// The Gateway as VirtualServices name it: `namespace/name`.
    pub gateway: String,
    /// `server.hosts` with `./` made the Gateway's namespace and `*/` dropped (Istio's
    /// `sanitizeServerHostNamespace`).
    pub hosts: Vec<String>,
}

/// The plain HTTP servers sharing one port and bind address: one listener, one route
/// configuration.
#[derive(Debug, Clone)]
pub(crate) struct HttpPort<'a> {
    /// The port listened on.
    pub port: u16,
    /// The servers' `bind`, empty for the proxy's default address.
    pub bind: &'a str,
    /// The servers, in Gateway order.
    pub servers: Vec<GatewayServer>,
}

impl HttpPort<'_> {
    /// Istio's route configuration name for plain HTTP servers: `http.<port>`, with
    /// `.<bind>` when the servers bind an address.
    pub fn route_name(&self) -> String {
        route_name(self.port, self.bind)
    }
}

/// The route configuration name of plain HTTP servers on `port` and `bind`.
pub(crate) fn route_name(port: u16, bind: &str) -> String {
    if bind.is_empty() {
        format!("http.{port}")
    } else {
        format!("http.{port}.{bind}")
    }
}

/// The plain HTTP ports of the Gateways selecting `proxy`, by port and bind address.
///
/// Gateways apply in creation order (then namespace and name); on a port, the first
/// server decides whether it carries plain HTTP or TLS/TCP, and later servers of the
/// other kind are dropped, as Istio does. TLS, TCP and HTTPS-redirecting servers are
/// not served yet: they are skipped with a debug log.
pub(crate) fn http_ports<'a>(push: &'a PushContext, proxy: &Proxy) -> Vec<HttpPort<'a>> {
    let mut gateways: Vec<&Resource<Gateway>> = push
        .config
        .of_kind(Kind::Gateway)
        .filter_map(|o| match o.as_ref() {
            Object::Gateway(g) => Some(g),
            _ => None,
        })
        .filter(|g| {
            g.spec
                .selector
                .iter()
                .all(|(k, v)| proxy.labels.get(k) == Some(v))
        })
        .collect();
    gateways.sort_by(|a, b| {
        let key = |g: &&Resource<Gateway>| {
            (
                g.metadata.creation_timestamp.clone(),
                g.metadata.namespace.clone(),
                g.metadata.name.clone(),
            )
        };
        key(a).cmp(&key(b))
    });
    // Per (port, bind): the plain HTTP servers, or `None` once a TLS/TCP server holds it.
    let mut ports: BTreeMap<(u16, &str), Option<Vec<GatewayServer>>> = BTreeMap::new();
    for gateway in gateways {
        let namespace = gateway.metadata.namespace.as_deref().unwrap_or("");
        let name = gateway.metadata.name.as_deref().unwrap_or("");
        for server in &gateway.spec.servers {
            let Some(port) = server
                .port
                .as_ref()
                .and_then(|p| u16::try_from(p.number).ok())
            else {
                continue;
            };
            let plain_http = server
                .port
                .as_ref()
                .and_then(|p| p.protocol.parse::<Protocol>().ok())
                .is_some_and(Protocol::is_http);
            let slot = ports.entry((port, server.bind.as_str()));
            if !plain_http {
                tracing::debug!(
                    gateway = %format!("{namespace}/{name}"),
                    port,
                    "gateway server skipped: TLS and TCP servers are not translated yet"
                );
                slot.or_insert(None);
                continue;
            }
            if server.tls.as_ref().is_some_and(|t| t.https_redirect) {
                tracing::debug!(
                    gateway = %format!("{namespace}/{name}"),
                    port,
                    "gateway server skipped: httpsRedirect needs TLS servers, not translated yet"
                );
                continue;
            }
            match slot.or_insert_with(|| Some(Vec::new())) {
                Some(servers) => servers.push(GatewayServer {
                    gateway: format!("{namespace}/{name}"),
                    hosts: sanitize_hosts(&server.hosts, namespace),
                }),
                None => tracing::debug!(
                    gateway = %format!("{namespace}/{name}"),
                    port,
                    "gateway server skipped: the port carries TLS or TCP"
                ),
            }
        }
    }
    ports
        .into_iter()
        .filter_map(|((port, bind), servers)| {
            Some(HttpPort {
                port,
                bind,
                servers: servers?,
            })
        })
        .collect()
}

/// Istio's `sanitizeServerHostNamespace`: `./host` is the Gateway's namespace, `*/host`
/// any namespace (so just `host`), and `*/*` everything.
fn sanitize_hosts(hosts: &[String], namespace: &str) -> Vec<String> {
    let mut out = Vec::with_capacity(hosts.len());
    for host in hosts {
        match host.split_once('/') {
            Some((".", h)) => out.push(format!("{namespace}/{h}")),
            Some(("*", "*")) => return vec!["*".to_owned()],
            Some(("*", h)) => out.push(h.to_owned()),
            _ => out.push(host.clone()),
        }
    }
    out
}

/// Istio's `resolveGatewayName`: how a VirtualService names a Gateway (`name`, `ns/name`,
/// `./name` or the legacy `name.ns.svc.cluster.local`) as `ns/name`, short names
/// resolving in the VirtualService's namespace. `mesh` stays `mesh`.
pub(crate) fn resolve_gateway_name(name: &str, vs_namespace: &str) -> String {
    if name == mizzen_api::networking::MESH_GATEWAY {
        return name.to_owned();
    }
    match name.split_once('/') {
        Some((".", gw)) => format!("{vs_namespace}/{gw}"),
        Some(_) => name.to_owned(),
        None => match name.split_once('.') {
            None => format!("{vs_namespace}/{name}"),
            Some((gw, rest)) => {
                let namespace = rest.split('.').next().unwrap_or(rest);
                format!("{namespace}/{gw}")
            }
        },
    }
}

/// Istio's `NamesForNamespace`: the server hosts visible from `namespace` (no prefix,
/// `*/` or `namespace/`), without their namespace prefix.
pub(crate) fn hosts_for_namespace<'h>(hosts: &'h [String], namespace: &str) -> Vec<&'h str> {
    hosts
        .iter()
        .filter_map(|h| match h.split_once('/') {
            Some((ns, host)) => (ns == namespace || ns == "*").then_some(host),
            None => Some(h.as_str()),
        })
        .collect()
}
