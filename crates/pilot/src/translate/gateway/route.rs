//! Gateway route configurations (Istio's `buildGatewayHTTPRouteConfig`): one virtual
//! host per server host a bound VirtualService covers, with that VirtualService's routes
//! translated as for sidecars.

use std::collections::BTreeMap;

use mizzen_api::Resource;
use mizzen_api::networking::VirtualService;
use mizzen_xds::pb::envoy::config::route::v3::{Route, RouteConfiguration, VirtualHost};
use mizzen_xds::pb::google::protobuf::BoolValue;

use super::servers::{HttpPort, hosts_for_namespace, http_ports, resolve_gateway_name};
use crate::model::{Hostname, Proxy, PushContext};
use crate::translate::route::scope::virtual_services_for;
use crate::translate::route::{
    Binding, Hashes, MeshVirtualService, is_catch_all, route_config_base, vs_routes,
};

/// Builds the route configurations `names` for a gateway proxy, in the order asked. A
/// name no server of its Gateways uses gets an empty configuration, as Istio sends
/// while a deleted Gateway's listener drains.
pub fn routes(push: &PushContext, proxy: &Proxy, names: &[String]) -> Vec<RouteConfiguration> {
    let ports = http_ports(push, proxy);
    let hashes = Hashes::new(push, proxy);
    let virtual_services = GatewayVirtualService::all(push, proxy);
    names
        .iter()
        .map(
            |name| match ports.iter().find(|p| p.route_name() == *name) {
                Some(port) => route_configuration(push, proxy, &hashes, &virtual_services, port),
                None => RouteConfiguration {
                    name: name.clone(),
                    validate_clusters: Some(BoolValue { value: false }),
                    ..RouteConfiguration::default()
                },
            },
        )
        .collect()
}

/// A VirtualService visible to the proxy, with the Gateways it binds to as `ns/name`.
struct GatewayVirtualService<'a> {
    vs: MeshVirtualService<'a>,
    gateways: Vec<String>,
}

impl<'a> GatewayVirtualService<'a> {
    /// The VirtualServices exported to the proxy's namespace, in creation order (then
    /// namespace and name), as Istio's push context orders them.
    fn all(push: &'a PushContext, proxy: &Proxy) -> Vec<Self> {
        let mut resources: Vec<&Resource<VirtualService>> =
            virtual_services_for(push, proxy).collect();
        resources.sort_by(|a, b| {
            let key = |r: &&Resource<VirtualService>| {
                (
                    r.metadata.creation_timestamp.clone(),
                    r.metadata.namespace.clone(),
                    r.metadata.name.clone(),
                )
            };
            key(a).cmp(&key(b))
        });
        resources
            .into_iter()
            .map(|resource| {
                let vs = MeshVirtualService::of(push, resource);
                let gateways = vs
                    .spec
                    .gateways
                    .iter()
                    .map(|g| resolve_gateway_name(g, vs.namespace))
                    .collect();
                GatewayVirtualService { vs, gateways }
            })
            .collect()
    }
}

fn route_configuration(
    push: &PushContext,
    proxy: &Proxy,
    hashes: &Hashes<'_>,
    virtual_services: &[GatewayVirtualService<'_>],
    port: &HttpPort<'_>,
) -> RouteConfiguration {
    // Routes are built once per Gateway and VirtualService, shared by the hosts they serve.
    let mut built: Vec<((&str, usize), Vec<Route>)> = Vec::new();
    // Per host: the route lists (indexes into `built`) it takes, in order.
    let mut vhosts: BTreeMap<Hostname, Vec<usize>> = BTreeMap::new();
    for server in &port.servers {
        for (index, gvs) in virtual_services.iter().enumerate() {
            if !gvs.gateways.contains(&server.gateway) {
                continue;
            }
            let server_hosts: Vec<Hostname> = hosts_for_namespace(&server.hosts, gvs.vs.namespace)
                .into_iter()
                .map(Hostname::new)
                .collect();
            let hosts = intersection(&server_hosts, &gvs.vs.hosts);
            if hosts.is_empty() {
                continue;
            }
            let key = (server.gateway.as_str(), index);
            let part = match built.iter().position(|(k, _)| *k == key) {
                Some(part) => part,
                None => {
                    let binding = Binding::Gateway(&server.gateway);
                    let routes = vs_routes(push, proxy, binding, hashes, &gvs.vs, port.port);
                    built.push((key, routes));
                    built.len() - 1
                }
            };
            for host in hosts {
                vhosts.entry(host).or_default().push(part);
            }
        }
    }
    let mut virtual_hosts = if vhosts.is_empty() {
        vec![not_found_vhost(port.port)]
    } else {
        collapse(vhosts, &built, port.port)
    };
    virtual_hosts.sort_by(|a, b| a.name.cmp(&b.name));
    RouteConfiguration {
        virtual_hosts,
        ignore_port_in_host_matching: true,
        ..route_config_base(&port.route_name())
    }
}

/// Istio's `Names.Intersection`: the server hosts a VirtualService host covers, and the
/// VirtualService hosts a server host covers (`*.example.com` and `a.example.com` give
/// `a.example.com`), each once.
fn intersection(server_hosts: &[Hostname], vs_hosts: &[Hostname]) -> Vec<Hostname> {
    let mut out: Vec<Hostname> = Vec::new();
    for s in server_hosts {
        for v in vs_hosts {
            let common = if v.matches(s) {
                s
            } else if s.matches(v) {
                v
            } else {
                continue;
            };
            if !out.contains(common) {
                out.push(common.clone());
            }
        }
    }
    out
}

/// The virtual hosts, hosts with the same routes sharing one (Istio's
/// `collapseDuplicateRoutes`: the alphabetically first host names it), each host's
/// routes in VirtualService order with catch-all routes last (`SortVHostRoutes`).
fn collapse(
    vhosts: BTreeMap<Hostname, Vec<usize>>,
    built: &[((&str, usize), Vec<Route>)],
    port: u16,
) -> Vec<VirtualHost> {
    let mut out: Vec<(Vec<usize>, VirtualHost)> = Vec::new();
    for (host, parts) in vhosts {
        if let Some((_, existing)) = out.iter_mut().find(|(p, _)| *p == parts) {
            existing.domains.push(host.to_string());
            continue;
        }
        let (mut routes, catch_all): (Vec<Route>, Vec<Route>) = parts
            .iter()
            .flat_map(|&part| built[part].1.iter().cloned())
            .partition(|r| !r.r#match.as_ref().is_some_and(is_catch_all));
        routes.extend(catch_all);
        let virtual_host = VirtualHost {
            name: format!("{host}:{port}"),
            domains: vec![host.to_string()],
            routes,
            include_request_attempt_count: true,
            ..VirtualHost::default()
        };
        out.push((parts, virtual_host));
    }
    out.into_iter().map(|(_, v)| v).collect()
}

/// Istio's vhost for a port no VirtualService serves: no routes, so every request gets
/// Envoy's 404 (`NR`).
fn not_found_vhost(port: u16) -> VirtualHost {
    VirtualHost {
        name: format!("blackhole:{port}"),
        domains: vec!["*".to_owned()],
        ..VirtualHost::default()
    }
}
