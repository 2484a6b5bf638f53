//! Outbound listeners: one per HTTP port (`0.0.0.0_9080`, routes by RDS), one per TCP
//! service address and port (`10.0.0.5_3306`, `tcp_proxy`, with TCP and TLS
//! VirtualService routes as filter chains), sniffed ports with both (Istio's
//! `buildSidecarOutboundListeners`).

use std::collections::BTreeMap;
use std::sync::Arc;

use mizzen_api::networking::{CaptureMode, RouteDestination};
use mizzen_api::types::Protocol;
use mizzen_xds::pb::envoy::config::core::v3::TrafficDirection;
use mizzen_xds::pb::envoy::config::listener::v3::{FilterChain, FilterChainMatch, Listener};
use mizzen_xds::pb::google::protobuf::BoolValue;

use super::filters::{
    ListenerProtocol, PASSTHROUGH_FILTER_CHAIN, Routes, Side, TcpTarget, address, chain_match,
    http_alpn_match, http_connection_manager, inspectors, tcp_proxy, zero,
};
use super::stats::{Class, Telemetry};
use super::with_proxy;
use crate::model::{InterceptionMode, Proxy, PushContext, Service};
use crate::translate::names::{listener_name, outbound_cluster};
use crate::translate::route::destination_cluster;
use crate::translate::route::scope::{
    EgressScope, MeshVirtualService, SidecarScope, source_matches,
};

/// The wildcard address HTTP listeners share.
const WILDCARD: &str = "0.0.0.0";
/// Where bound egress listeners go without an explicit `bind` (Istio's local host).
const LOCALHOST: &str = "127.0.0.1";

/// One listener under construction.
struct Entry {
    address: String,
    port: u16,
    bind_to_port: bool,
    protocol: ListenerProtocol,
    chains: Vec<FilterChain>,
    /// Built for an egress listener with an explicit port: the catch-all adds nothing.
    locked: bool,
}

/// What one service port on one egress listener contributes.
struct Candidate<'a> {
    push: &'a PushContext,
    proxy: &'a Proxy,
    egress: &'a EgressScope<'a>,
    service: &'a Arc<Service>,
    port: u16,
    protocol: Option<Protocol>,
    bind: Option<String>,
    bind_to_port: bool,
}

/// The outbound listeners of `proxy`.
pub(crate) fn outbound_listeners(
    push: &PushContext,
    proxy: &Proxy,
    scope: &SidecarScope<'_>,
) -> Vec<Listener> {
    let none_mode = proxy.interception_mode == InterceptionMode::None;
    let mut entries: BTreeMap<(String, u16), Entry> = BTreeMap::new();
    for egress in &scope.egress {
        let listener = egress.listener;
        let bind_to_port = none_mode
            || listener.is_some_and(|l| {
                l.capture_mode == CaptureMode::None || l.bind.starts_with("unix://")
            });
        let bind = match listener.map(|l| l.bind.as_str()).filter(|b| !b.is_empty()) {
            Some(b) => Some(b.to_owned()),
            None if bind_to_port => Some(LOCALHOST.to_owned()),
            None => None,
        };
        match egress.port() {
            Some(port) => {
                let protocol = listener
                    .and_then(|l| l.port.as_ref())
                    .and_then(|p| p.protocol.parse().ok());
                for service in &egress.services {
                    add(
                        &mut entries,
                        Candidate {
                            push,
                            proxy,
                            egress,
                            service,
                            port,
                            protocol,
                            bind: bind.clone(),
                            bind_to_port,
                        },
                    );
                }
            }
            None => {
                for e in entries.values_mut() {
                    e.locked = true;
                }
                for service in &egress.services {
                    for p in &service.ports {
                        add(
                            &mut entries,
                            Candidate {
                                push,
                                proxy,
                                egress,
                                service,
                                port: p.port,
                                protocol: p.protocol,
                                bind: bind.clone(),
                                bind_to_port,
                            },
                        );
                    }
                }
            }
        }
    }
    let fallback = scope.catch_all_cluster();
    let telemetry = Telemetry::new(push, proxy, Class::SidecarOutbound);
    entries
        .into_values()
        .map(|e| finish(e, &fallback, &telemetry))
        .collect()
}

/// Adds one service port to the listener it belongs on, merging with what is there as
/// Istio does: HTTP and TCP on one address become a sniffed listener.
fn add(entries: &mut BTreeMap<(String, u16), Entry>, c: Candidate<'_>) {
    let http_proxy = c.protocol == Some(Protocol::HttpProxy);
    let Some(protocol) = ListenerProtocol::of(c.protocol) else {
        return;
    };
    let (address, cidr) = match (&c.bind, protocol) {
        (Some(b), _) => (b.clone(), None),
        (None, ListenerProtocol::Http) => (WILDCARD.to_owned(), None),
        (None, _) => service_address(&c.service.addresses),
    };
    let key = (address.clone(), c.port);
    let existing = entries.get(&key).map(|e| (e.locked, e.protocol));
    if existing.is_some_and(|(locked, _)| locked) {
        return;
    }
    let wildcard = address == WILDCARD;
    let cidrs: Vec<String> = cidr.into_iter().collect();
    let http_chain = |route_name: String, sniffed: bool| {
        let side = if http_proxy {
            Side::HttpProxy
        } else {
            Side::Outbound
        };
        let stat_prefix = format!("outbound_{}", listener_name(&address, c.port));
        let base = chain_match(&cidrs, &[]);
        FilterChain {
            filter_chain_match: Some(if sniffed { http_alpn_match(base) } else { base }),
            filters: vec![http_connection_manager(
                &stat_prefix,
                Routes::Rds(route_name),
                side,
                Vec::new(),
                &Telemetry::new(c.push, c.proxy, Class::SidecarOutbound),
            )],
            ..FilterChain::default()
        }
    };
    let (chains, protocol) = match protocol {
        ListenerProtocol::Http => match existing.map(|(_, p)| p) {
            Some(ListenerProtocol::Http | ListenerProtocol::Auto) => return,
            Some(ListenerProtocol::Tcp) => (
                vec![http_chain(c.port.to_string(), true)],
                ListenerProtocol::Auto,
            ),
            None => {
                let sniff = wildcard && !http_proxy;
                let protocol = if sniff {
                    ListenerProtocol::Auto
                } else {
                    ListenerProtocol::Http
                };
                (vec![http_chain(c.port.to_string(), sniff)], protocol)
            }
        },
        ListenerProtocol::Tcp => {
            let chains = tcp_chains(&c, &cidrs);
            let protocol = match existing.map(|(_, p)| p) {
                None => ListenerProtocol::Tcp,
                Some(ListenerProtocol::Tcp) => ListenerProtocol::Tcp,
                Some(_) => ListenerProtocol::Auto,
            };
            (chains, protocol)
        }
        ListenerProtocol::Auto => {
            if existing.map(|(_, p)| p) == Some(ListenerProtocol::Auto) {
                return;
            }
            if existing.map(|(_, p)| p) == Some(ListenerProtocol::Http) {
                entries.remove(&key);
            }
            let route_name = if wildcard {
                c.port.to_string()
            } else {
                format!("{}:{}", c.service.hostname, c.port)
            };
            let mut chains = tcp_chains(&c, &cidrs);
            chains.push(http_chain(route_name, true));
            (chains, ListenerProtocol::Auto)
        }
    };
    let entry = entries.entry(key).or_insert_with(|| Entry {
        address,
        port: c.port,
        bind_to_port: c.bind_to_port,
        protocol,
        chains: Vec::new(),
        locked: false,
    });
    entry.protocol = protocol;
    // Envoy refuses a listener with two chains of the same match: the first one wins.
    for chain in chains {
        if !entry
            .chains
            .iter()
            .any(|e| e.filter_chain_match == chain.filter_chain_match)
        {
            entry.chains.push(chain);
        }
    }
}

/// The address a TCP listener for a service binds: its VIP, or the wildcard with a CIDR
/// match when the address is a range, or the wildcard when it has none.
fn service_address(addresses: &[String]) -> (String, Option<String>) {
    match addresses.iter().find(|a| !a.is_empty()) {
        Some(a) if a.contains('/') => {
            let single = a.ends_with("/32") || a.ends_with("/128");
            match a.split_once('/') {
                Some((ip, _)) if single => (ip.to_owned(), None),
                _ => (WILDCARD.to_owned(), Some(a.clone())),
            }
        }
        Some(a) => (a.clone(), None),
        None => (WILDCARD.to_owned(), None),
    }
}

/// The VirtualServices of the egress listener naming the service.
fn virtual_services_for<'a>(
    c: &'a Candidate<'_>,
) -> impl Iterator<Item = &'a MeshVirtualService<'a>> {
    c.egress
        .virtual_services
        .iter()
        .filter(|vs| vs.covers(&c.service.hostname))
}

/// TLS routes (SNI matches, only on TLS or sniffed ports, where a client sends SNI) and
/// TCP routes of the service's VirtualServices, then its default chain unless a TCP
/// route already matches everything (Istio's `buildSidecarOutboundTCPListenerOpts`).
fn tcp_chains(c: &Candidate<'_>, cidrs: &[String]) -> Vec<FilterChain> {
    let mut out = Vec::new();
    let tls_port = c.protocol.is_none_or(Protocol::is_tls);
    let default_cluster = outbound_cluster(c.port, "", c.service.hostname.as_str());
    let telemetry = Telemetry::new(c.push, c.proxy, Class::SidecarOutbound);
    let chain = |m: FilterChainMatch, route: &[RouteDestination], vs: &MeshVirtualService<'_>| {
        FilterChain {
            filter_chain_match: Some(m),
            filters: with_proxy(
                telemetry.tcp_filters(Vec::new()),
                tcp_proxy(&default_cluster, tcp_target(c, vs, route)),
            ),
            ..FilterChain::default()
        }
    };
    if tls_port {
        for vs in virtual_services_for(c) {
            for tls in &vs.spec.tls {
                for m in &tls.r#match {
                    if (m.port != 0 && m.port != u32::from(c.port))
                        || !source_matches(
                            c.proxy,
                            &m.gateways,
                            &m.source_labels,
                            &m.source_namespace,
                        )
                    {
                        continue;
                    }
                    let subnets = if m.destination_subnets.is_empty() {
                        cidrs
                    } else {
                        &m.destination_subnets
                    };
                    out.push(chain(chain_match(subnets, &m.sni_hosts), &tls.route, vs));
                }
            }
        }
    }
    for vs in virtual_services_for(c) {
        for tcp in &vs.spec.tcp {
            if tcp.r#match.is_empty() {
                out.push(chain(chain_match(cidrs, &[]), &tcp.route, vs));
                return out;
            }
            for m in &tcp.r#match {
                if (m.port != 0 && m.port != u32::from(c.port))
                    || !source_matches(c.proxy, &m.gateways, &m.source_labels, &m.source_namespace)
                {
                    continue;
                }
                let subnets = if m.destination_subnets.is_empty() {
                    cidrs
                } else {
                    &m.destination_subnets
                };
                let chain = chain(chain_match(subnets, &[]), &tcp.route, vs);
                let catch_all = chain.filter_chain_match == Some(FilterChainMatch::default());
                out.push(chain);
                if catch_all {
                    return out;
                }
            }
        }
    }
    out.push(FilterChain {
        filter_chain_match: Some(chain_match(cidrs, &[])),
        filters: with_proxy(
            telemetry.tcp_filters(Vec::new()),
            tcp_proxy(
                &default_cluster,
                TcpTarget::Cluster(default_cluster.clone()),
            ),
        ),
        ..FilterChain::default()
    });
    out
}

fn tcp_target(
    c: &Candidate<'_>,
    vs: &MeshVirtualService<'_>,
    route: &[RouteDestination],
) -> TcpTarget {
    let cluster = |d: &RouteDestination| destination_cluster(c.push, vs, &d.destination, c.port);
    match route {
        [only] => TcpTarget::Cluster(cluster(only)),
        many => TcpTarget::Weighted(
            many.iter()
                .filter(|d| d.weight > 0)
                .map(|d| (cluster(d), d.weight.unsigned_abs()))
                .collect(),
        ),
    }
}

/// Turns an entry into a listener: a chain that matches everything becomes the default
/// chain (or the only one), else unmatched traffic passes through (Istio's
/// `buildListenerFromEntry`).
fn finish(entry: Entry, fallback: &str, telemetry: &Telemetry) -> Listener {
    let name = if entry.address.starts_with("unix://") {
        entry.address.clone()
    } else {
        listener_name(&entry.address, entry.port)
    };
    let listener_filters = inspectors(&entry.chains);
    let mut default_chain = None;
    let mut chains = Vec::new();
    for mut chain in entry.chains {
        if chain.filter_chain_match == Some(FilterChainMatch::default()) {
            chain.filter_chain_match = None;
            default_chain = Some(chain);
        } else {
            chains.push(chain);
        }
    }
    let default_chain = match default_chain {
        Some(chain) if chains.is_empty() => {
            chains.push(chain);
            None
        }
        Some(chain) => Some(chain),
        None => Some(FilterChain {
            filter_chain_match: Some(FilterChainMatch::default()),
            name: PASSTHROUGH_FILTER_CHAIN.to_owned(),
            filters: with_proxy(
                telemetry.tcp_filters(Vec::new()),
                tcp_proxy(fallback, TcpTarget::Cluster(fallback.to_owned())),
            ),
            ..FilterChain::default()
        }),
    };
    Listener {
        name,
        address: Some(address(&entry.address, entry.port)),
        filter_chains: chains,
        default_filter_chain: default_chain,
        listener_filters,
        listener_filters_timeout: Some(zero()),
        continue_on_listener_filters_timeout: true,
        traffic_direction: TrafficDirection::Outbound as i32,
        bind_to_port: (!entry.bind_to_port).then_some(BoolValue { value: false }),
        ..Listener::default()
    }
}
