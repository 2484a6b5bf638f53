//! RDS for sidecars: route configurations named by port (`9080`), by sniffed service
//! (`reviews.default.svc.cluster.local:9080`) or `http_proxy`, with one virtual host per
//! reachable HTTP service and the VirtualService routes that apply to it (Istio's
//! `httproute.go` and `route/route.go`).

mod actions;
mod matches;
pub(crate) mod scope;

#[cfg(test)]
pub(crate) mod tests;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use mizzen_api::types::Protocol;

use mizzen_xds::pb::envoy::config::route::v3::route_action::HashPolicy;
use mizzen_xds::pb::envoy::config::route::v3::{
    DirectResponseAction, Route, RouteAction, RouteConfiguration, VirtualHost, route, route_action,
};
use mizzen_xds::pb::google::protobuf::{Any, BoolValue, UInt32Value};
use prost::Message;

pub(crate) use actions::{CORS_FILTER, FAULT_FILTER, default_inbound_route, destination_cluster};
use actions::{default_outbound_route, duration, translate_route};
pub(crate) use matches::is_catch_all;
use matches::match_all;
use scope::SidecarScope;
pub(crate) use scope::{Binding, MeshVirtualService};

use crate::model::{Hostname, Proxy, PushContext, Service};
use crate::translate::cluster::{DestinationRules, hash_policies};
use crate::translate::names::outbound_cluster;

/// The route configuration an HTTP-proxy listener uses (Istio's `RDSHttpProxy`).
pub const HTTP_PROXY_ROUTE: &str = "http_proxy";
/// The catch-all virtual host for unknown hosts with `ALLOW_ANY`.
pub const ALLOW_ANY_VHOST: &str = "allow_any";
/// The catch-all virtual host for unknown hosts with `REGISTRY_ONLY`.
pub const BLOCK_ALL_VHOST: &str = "block_all";
/// Istio's cap on direct response bodies (1 MiB, what validation allows).
const MAX_DIRECT_RESPONSE_BODY_BYTES: u32 = 1024 * 1024;

/// Builds the route configurations `names` for a sidecar, in the order asked. An
/// unknown name gets an empty configuration, as Istio sends.
pub fn routes(push: &PushContext, proxy: &Proxy, names: &[String]) -> Vec<RouteConfiguration> {
    let scope = SidecarScope::new(push, proxy);
    let hashes = Hashes::new(push, proxy);
    names
        .iter()
        .map(|name| route_configuration(push, proxy, &scope, &hashes, name))
        .collect()
}

/// What a route hashes for consistent-hash balancing: the key its destination's
/// DestinationRule names (`consistentHash`), as Istio puts it on the route.
pub(crate) struct Hashes<'a> {
    proxy: &'a Proxy,
    rules: DestinationRules<'a>,
}

impl<'a> Hashes<'a> {
    /// The hash keys of `proxy`'s routes, from the DestinationRules of `push`.
    pub(crate) fn new(push: &'a PushContext, proxy: &'a Proxy) -> Self {
        Hashes {
            proxy,
            rules: DestinationRules::new(push),
        }
    }

    /// The hash policies for traffic to `subset` (or `""`) of `service` on `port`.
    pub(crate) fn of_service(&self, service: &Service, port: u16, subset: &str) -> Vec<HashPolicy> {
        let rule = self.rules.for_service(self.proxy, service);
        hash_policies(rule.map(|r| r.spec), port, subset)
    }

    /// The hash policies for traffic to `subset` of the service named `host` on `port`;
    /// none for a host the registry does not know.
    pub(crate) fn of_host(
        &self,
        push: &PushContext,
        host: &Hostname,
        port: u16,
        subset: &str,
    ) -> Vec<HashPolicy> {
        push.registry
            .services_named(host)
            .first()
            .map(|service| self.of_service(service, port, subset))
            .unwrap_or_default()
    }
}

/// What a route name asks for.
enum RouteName<'a> {
    /// Every HTTP service on one port (`9080`).
    Port(u16),
    /// One sniffed service on one port (`reviews.default.svc.cluster.local:9080`).
    Service(&'a str, u16),
    /// Every HTTP service on every port, for the HTTP proxy listener.
    HttpProxy,
}

impl RouteName<'_> {
    fn parse(name: &str) -> Option<RouteName<'_>> {
        if name == HTTP_PROXY_ROUTE {
            return Some(RouteName::HttpProxy);
        }
        match name.rsplit_once(':') {
            Some((host, port)) => Some(RouteName::Service(host, port.parse().ok()?)),
            None => name.parse().ok().map(RouteName::Port),
        }
    }
}

fn route_configuration(
    push: &PushContext,
    proxy: &Proxy,
    scope: &SidecarScope<'_>,
    hashes: &Hashes<'_>,
    name: &str,
) -> RouteConfiguration {
    let empty = RouteConfiguration {
        name: name.to_owned(),
        validate_clusters: Some(BoolValue { value: false }),
        ..RouteConfiguration::default()
    };
    let Some(parsed) = RouteName::parse(name) else {
        return empty;
    };
    let listen_port = match parsed {
        RouteName::Port(p) | RouteName::Service(_, p) => p,
        RouteName::HttpProxy => 0,
    };
    let Some(egress) = scope.egress_for_port(listen_port) else {
        return empty;
    };
    // A Sidecar egress port declared HTTP_PROXY serves every service, like `http_proxy`.
    let declared = egress
        .listener
        .and_then(|l| l.port.as_ref())
        .and_then(|p| p.protocol.parse::<Protocol>().ok());
    let parsed = match parsed {
        RouteName::Port(_) if declared == Some(Protocol::HttpProxy) => RouteName::HttpProxy,
        other => other,
    };
    let mut vhosts = match parsed {
        RouteName::Port(port) => {
            let by_port = virtual_hosts(push, proxy, hashes, egress, &[port]);
            by_port.into_values().flatten().collect()
        }
        RouteName::HttpProxy => {
            let ports: BTreeSet<u16> = egress
                .services
                .iter()
                .flat_map(|s| &s.ports)
                .filter(|p| p.protocol.is_none_or(|p| p.is_http()))
                .map(|p| p.port)
                .collect();
            let ports: Vec<u16> = ports.into_iter().collect();
            let by_port = virtual_hosts(push, proxy, hashes, egress, &ports);
            merge_ports(by_port)
        }
        RouteName::Service(host, port) => {
            let by_port = virtual_hosts(push, proxy, hashes, egress, &[port]);
            let mut matching: Vec<VirtualHost> = by_port
                .into_values()
                .flatten()
                .filter(|v| v.domains.iter().any(|d| d == host || *d == name))
                .collect();
            if let [only] = matching.as_mut_slice() {
                only.domains = vec!["*".to_owned()];
            }
            return RouteConfiguration {
                virtual_hosts: matching,
                ..route_config_base(name)
            };
        }
    };
    vhosts.sort_by(|a, b| a.name.cmp(&b.name));
    vhosts.push(catch_all_vhost(scope));
    RouteConfiguration {
        virtual_hosts: vhosts,
        ..route_config_base(name)
    }
}

/// An empty route configuration `name` with Istio's settings.
pub(crate) fn route_config_base(name: &str) -> RouteConfiguration {
    RouteConfiguration {
        name: name.to_owned(),
        validate_clusters: Some(BoolValue { value: false }),
        max_direct_response_body_size_bytes: Some(UInt32Value {
            value: MAX_DIRECT_RESPONSE_BODY_BYTES,
        }),
        ..RouteConfiguration::default()
    }
}

/// For the HTTP proxy: every port's virtual hosts, but on ports other than 80 only the
/// domains that carry a port (a bare host means port 80 to an HTTP proxy).
fn merge_ports(by_port: BTreeMap<u16, Vec<VirtualHost>>) -> Vec<VirtualHost> {
    let mut out = Vec::new();
    for (port, vhosts) in by_port {
        for mut vhost in vhosts {
            if port != 80 {
                vhost.domains.retain(|d| d.contains(':'));
            }
            if !vhost.domains.is_empty() {
                out.push(vhost);
            }
        }
    }
    out
}

/// Unknown hosts: to the passthrough (or egress proxy) cluster with `ALLOW_ANY`, a 502
/// with `REGISTRY_ONLY`.
fn catch_all_vhost(scope: &SidecarScope<'_>) -> VirtualHost {
    let (name, action) = if scope.allow_any() {
        let zero = duration(Default::default());
        let action = RouteAction {
            cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(
                scope.catch_all_cluster(),
            )),
            timeout: Some(zero),
            max_stream_duration: Some(route_action::MaxStreamDuration {
                grpc_timeout_header_max: Some(zero),
                ..route_action::MaxStreamDuration::default()
            }),
            ..RouteAction::default()
        };
        (ALLOW_ANY_VHOST, route::Action::Route(action))
    } else {
        let action = DirectResponseAction {
            status: 502,
            ..DirectResponseAction::default()
        };
        (BLOCK_ALL_VHOST, route::Action::DirectResponse(action))
    };
    VirtualHost {
        name: name.to_owned(),
        domains: vec!["*".to_owned()],
        routes: vec![Route {
            name: name.to_owned(),
            r#match: Some(match_all()),
            action: Some(action),
            ..Route::default()
        }],
        include_request_attempt_count: true,
        ..VirtualHost::default()
    }
}

/// The services of `egress` with an HTTP (or sniffed) port `port`.
fn http_services_on<'a>(egress: &scope::EgressScope<'a>, port: u16) -> Vec<&'a Arc<Service>> {
    egress
        .services
        .iter()
        .filter(|s| {
            s.port(port)
                .is_some_and(|p| p.protocol.is_none_or(|p| p.is_http()))
        })
        .copied()
        .collect()
}

/// A group of hosts sharing routes on one port.
struct VhostGroup<'a> {
    port: u16,
    services: Vec<&'a Arc<Service>>,
    /// VirtualService hosts that are no service in the registry.
    other_hosts: Vec<Hostname>,
    routes: Vec<Route>,
}

/// The virtual hosts of each of `ports`, keyed by port; domains are unique across all
/// of them (the first claimant keeps a domain, as in Istio).
fn virtual_hosts(
    push: &PushContext,
    proxy: &Proxy,
    hashes: &Hashes<'_>,
    egress: &scope::EgressScope<'_>,
    ports: &[u16],
) -> BTreeMap<u16, Vec<VirtualHost>> {
    let mut groups: Vec<VhostGroup<'_>> = Vec::new();
    for &port in ports {
        let services = http_services_on(egress, port);
        let mut claimed: BTreeSet<&Hostname> = BTreeSet::new();
        // Exact hosts bind before wildcards, so the most specific VirtualService wins.
        let mut assignments: Vec<(usize, Vec<&Arc<Service>>)> = Vec::new();
        for exact in [true, false] {
            for (i, vs) in egress.virtual_services.iter().enumerate() {
                let mine: Vec<&Arc<Service>> = services
                    .iter()
                    .filter(|s| !claimed.contains(&s.hostname))
                    .filter(|s| {
                        vs.hosts.iter().any(|h| {
                            (h == &s.hostname) == exact
                                && (h.matches(&s.hostname) || s.hostname.matches(h))
                        })
                    })
                    .copied()
                    .collect();
                if mine.is_empty() {
                    continue;
                }
                claimed.extend(mine.iter().map(|s| &s.hostname));
                match assignments.iter_mut().find(|(j, _)| *j == i) {
                    Some((_, list)) => list.extend(mine),
                    None => assignments.push((i, mine)),
                }
            }
        }
        assignments.sort_by_key(|(i, _)| *i);
        for (i, mut services) in assignments {
            let vs = &egress.virtual_services[i];
            let routes = vs_routes(push, proxy, Binding::Mesh, hashes, vs, port);
            if routes.is_empty() {
                // Nothing applies here: the services keep their default routes.
                for s in &services {
                    claimed.remove(&s.hostname);
                }
                continue;
            }
            services.sort_by(|a, b| a.hostname.cmp(&b.hostname));
            let other_hosts = vs
                .hosts
                .iter()
                .filter(|h| !h.is_wildcard() && !services.iter().any(|s| &s.hostname == *h))
                .filter(|h| push.registry.services_named(h).is_empty())
                .cloned()
                .collect();
            groups.push(VhostGroup {
                port,
                services,
                other_hosts,
                routes,
            });
        }
        for service in services.iter().filter(|s| !claimed.contains(&s.hostname)) {
            let cluster = outbound_cluster(port, "", service.hostname.as_str());
            let operation = format!("{}:{port}/*", service.hostname);
            groups.push(VhostGroup {
                port,
                services: vec![service],
                other_hosts: Vec::new(),
                routes: vec![default_outbound_route(
                    cluster,
                    operation,
                    hashes.of_service(service, port, ""),
                )],
            });
        }
    }
    let known_fqdns: BTreeSet<String> = groups
        .iter()
        .flat_map(|g| {
            g.services
                .iter()
                .flat_map(move |s| [s.hostname.to_string(), format!("{}:{}", s.hostname, g.port)])
        })
        .collect();
    let mut used_names = BTreeSet::new();
    let mut used_domains = BTreeSet::new();
    let mut out: BTreeMap<u16, Vec<VirtualHost>> = BTreeMap::new();
    for group in groups {
        let mut hosts: Vec<(String, Vec<String>, Vec<String>)> = group
            .other_hosts
            .iter()
            .map(|h| {
                let host = h.to_string();
                (
                    host.clone(),
                    vec![host.clone(), format!("{host}:{}", group.port)],
                    Vec::new(),
                )
            })
            .collect();
        for s in &group.services {
            let (domains, alt) = service_domains(s, group.port, &proxy.dns_domain);
            hosts.push((s.hostname.to_string(), domains, alt));
        }
        for (host, domains, alt) in hosts {
            let name = format!("{host}:{}", group.port);
            if !used_names.insert(name.clone()) {
                continue;
            }
            let domains: Vec<String> = domains
                .into_iter()
                .filter(|d| !(alt.contains(d) && known_fqdns.contains(d)))
                .filter(|d| used_domains.insert(d.to_ascii_lowercase()))
                .collect();
            if domains.is_empty() {
                continue;
            }
            out.entry(group.port).or_default().push(VirtualHost {
                name,
                domains,
                routes: group.routes.clone(),
                include_request_attempt_count: true,
                ..VirtualHost::default()
            });
        }
    }
    out
}

/// The routes of one VirtualService on `port` for `binding` (the mesh or a Gateway), in
/// order, stopping after a route that matches everything (Istio's
/// `BuildHTTPRoutesForVirtualService`).
pub(crate) fn vs_routes(
    push: &PushContext,
    proxy: &Proxy,
    binding: Binding<'_>,
    hashes: &Hashes<'_>,
    vs: &MeshVirtualService<'_>,
    port: u16,
) -> Vec<Route> {
    let mut out = Vec::new();
    for http in &vs.spec.http {
        let mut catch_all = false;
        if http.r#match.is_empty() {
            out.extend(translate_route(
                push, proxy, binding, hashes, vs, http, None, port,
            ));
            catch_all = true;
        } else {
            for m in &http.r#match {
                let r = translate_route(push, proxy, binding, hashes, vs, http, Some(m), port);
                if let Some(r) = r {
                    let all = r.r#match.as_ref().is_some_and(is_catch_all);
                    out.push(r);
                    if all {
                        catch_all = true;
                        break;
                    }
                }
            }
        }
        if catch_all {
            break;
        }
    }
    out
}

/// The domains a service answers to on `port`, and which of them are alternative (short)
/// names (Istio's `generateVirtualHostDomains`): its FQDN, the short names usable from
/// the proxy's DNS domain, and its addresses, each bare and with `:port`.
fn service_domains(service: &Service, port: u16, dns_domain: &str) -> (Vec<String>, Vec<String>) {
    let host = service.hostname.as_str();
    let alt = alt_hosts(host, port, dns_domain);
    let mut domains = with_port(host, port);
    domains.extend(alt.iter().cloned());
    for address in &service.addresses {
        if address.is_empty() || address == "0.0.0.0" || address.contains('/') {
            continue;
        }
        domains.extend(with_port(&ipv6_compliant(address), port));
    }
    (domains, alt)
}

fn with_port(domain: &str, port: u16) -> Vec<String> {
    vec![domain.to_owned(), format!("{domain}:{port}")]
}

/// IPv6 addresses are written in brackets in a Host header.
fn ipv6_compliant(address: &str) -> String {
    if address.contains(':') && !address.starts_with('[') {
        format!("[{address}]")
    } else {
        address.to_owned()
    }
}

/// Istio's `GenerateAltVirtualHosts`: the shorter names `host` is reachable by from a
/// proxy whose DNS domain is `dns_domain`.
fn alt_hosts(host: &str, port: u16, dns_domain: &str) -> Vec<String> {
    if let Some(idx) = dns_domain.find(".svc.") {
        let cluster_suffix = &dns_domain[idx..];
        if !host.ends_with(cluster_suffix) {
            return Vec::new();
        }
        let Some(ih) = host.find(".svc.") else {
            return Vec::new();
        };
        let Some(ns) = host.find('.') else {
            return Vec::new();
        };
        if ns + 1 > ih {
            return Vec::new();
        }
        let name_ns = &host[..ih];
        let svc = format!("{name_ns}.svc");
        let mut out = Vec::new();
        if host[ns + 1..ih] == dns_domain[..idx] {
            out.extend(with_port(&host[..ns], port));
            out.extend(with_port(&svc, port));
            out.extend(with_port(name_ns, port));
        } else {
            out.extend(with_port(name_ns, port));
            out.extend(with_port(&svc, port));
        }
        return out;
    }
    let host_parts: Vec<&str> = host.split('.').collect();
    let domain_parts: Vec<&str> = dns_domain.split('.').collect();
    let shared = host_parts
        .iter()
        .rev()
        .zip(domain_parts.iter().rev())
        .take_while(|(a, b)| a == b)
        .count();
    if shared == 0 || dns_domain.is_empty() {
        return Vec::new();
    }
    let unique = &host_parts[..host_parts.len() - shared];
    if unique.is_empty() {
        return Vec::new();
    }
    let unique_host = unique.join(".");
    let mut out = with_port(&unique_host, port);
    if unique.len() == 2 {
        let first_shared = domain_parts[domain_parts.len() - shared];
        out.extend(with_port(&format!("{unique_host}.{first_shared}"), port));
    }
    out
}

/// Wraps a message in `Any` with its `type.googleapis.com/…` URL.
pub(crate) fn to_any<M: prost::Name + Message>(message: &M) -> Any {
    Any {
        type_url: M::type_url(),
        value: message.encode_to_vec(),
    }
}
