//! Inbound listeners: `virtualInbound` (15006) with a filter chain per captured workload
//! port, and, for ports not captured (`captureMode: NONE`, local mode), listeners bound
//! on the workload's own address. Both forward to `inbound|PORT||`.

use mizzen_api::networking::CaptureMode;
use mizzen_xds::pb::envoy::config::core::v3::TrafficDirection;
use mizzen_xds::pb::envoy::config::listener::v3::{FilterChain, FilterChainMatch, Listener};
use mizzen_xds::pb::envoy::config::route::v3::{RouteConfiguration, VirtualHost};
use mizzen_xds::pb::google::protobuf::{BoolValue, UInt32Value};

use super::filters::{
    ListenerProtocol, Routes, Side, TcpTarget, address, http_alpn_match, http_connection_manager,
    inspectors, original_dst, tcp_proxy, zero,
};
use crate::model::{InterceptionMode, Proxy, PushContext};
use crate::translate::names::{
    BLACKHOLE_CLUSTER, INBOUND_PASSTHROUGH_CLUSTER, VIRTUAL_INBOUND_LISTENER, inbound_cluster,
    listener_name,
};
use crate::translate::route::default_inbound_route;
use mizzen_api::Resource;
use mizzen_api::networking::Sidecar;

/// The port iptables redirects inbound traffic to.
pub const VIRTUAL_INBOUND_PORT: u16 = 15006;
/// The wildcard address.
const WILDCARD: &str = "0.0.0.0";

/// One port the workload serves.
#[derive(Debug, Clone, PartialEq)]
struct InboundPort {
    port: u16,
    protocol: Option<ListenerProtocol>,
    /// The service host, for trace operations (empty when only a Sidecar names it).
    hostname: String,
    /// Whether traffic is captured (virtualInbound) or arrives on a bound listener.
    captured: bool,
    /// Where a bound listener binds.
    bind: String,
}

/// The workload's ports: its Sidecar's ingress listeners when it has some, else the
/// target ports of the services whose endpoints are this workload.
fn inbound_ports(
    push: &PushContext,
    proxy: &Proxy,
    sidecar: Option<&Resource<Sidecar>>,
) -> Vec<InboundPort> {
    let none_mode = proxy.interception_mode == InterceptionMode::None;
    let own_ip = proxy
        .ips
        .first()
        .map_or_else(|| "127.0.0.1".to_owned(), ToString::to_string);
    let mut out: Vec<InboundPort> = Vec::new();
    let ingress = sidecar
        .map(|s| s.spec.ingress.as_slice())
        .unwrap_or_default();
    if !ingress.is_empty() {
        for listener in ingress {
            let Some(port) = listener.port.as_ref() else {
                continue;
            };
            let Ok(number) = u16::try_from(port.number) else {
                continue;
            };
            out.push(InboundPort {
                port: number,
                protocol: ListenerProtocol::parse(&port.protocol),
                hostname: String::new(),
                captured: !none_mode && listener.capture_mode != CaptureMode::None,
                bind: if listener.bind.is_empty() {
                    own_ip.clone()
                } else {
                    listener.bind.clone()
                },
            });
        }
        return out;
    }
    for found in push.registry.instances_at(&proxy.ips) {
        if out.iter().any(|p| p.port == found.endpoint.port) {
            continue;
        }
        out.push(InboundPort {
            port: found.endpoint.port,
            protocol: ListenerProtocol::of(found.port.protocol),
            hostname: found.service.hostname.to_string(),
            captured: !none_mode,
            bind: own_ip.clone(),
        });
    }
    out
}

/// The inbound listeners of `proxy`: `virtualInbound` unless interception is off, and a
/// bound listener per uncaptured port.
pub(crate) fn inbound_listeners(
    push: &PushContext,
    proxy: &Proxy,
    sidecar: Option<&Resource<Sidecar>>,
) -> Vec<Listener> {
    let ports = inbound_ports(push, proxy, sidecar);
    let mut out = Vec::new();
    for p in ports.iter().filter(|p| !p.captured) {
        let chains = port_chains(p, &FilterChainMatch::default(), &p.bind);
        out.push(Listener {
            name: listener_name(&p.bind, p.port),
            address: Some(address(&p.bind, p.port)),
            listener_filters: inspectors(&chains),
            listener_filters_timeout: Some(zero()),
            continue_on_listener_filters_timeout: true,
            filter_chains: chains
                .into_iter()
                .map(|mut c| {
                    if c.filter_chain_match == Some(FilterChainMatch::default()) {
                        c.filter_chain_match = None;
                    }
                    c
                })
                .collect(),
            traffic_direction: TrafficDirection::Inbound as i32,
            ..Listener::default()
        });
    }
    if proxy.interception_mode != InterceptionMode::None {
        out.push(virtual_inbound(&ports));
    }
    out
}

/// `virtualInbound`: the original destination's port picks the chain; unknown ports
/// pass through to the workload, and connections to 15006 itself are dropped.
fn virtual_inbound(ports: &[InboundPort]) -> Listener {
    let mut chains = vec![FilterChain {
        name: format!("{VIRTUAL_INBOUND_LISTENER}-blackhole"),
        filter_chain_match: Some(FilterChainMatch {
            destination_port: Some(UInt32Value {
                value: u32::from(VIRTUAL_INBOUND_PORT),
            }),
            ..FilterChainMatch::default()
        }),
        filters: vec![tcp_proxy(
            BLACKHOLE_CLUSTER,
            TcpTarget::Cluster(BLACKHOLE_CLUSTER.to_owned()),
        )],
        ..FilterChain::default()
    }];
    for p in ports.iter().filter(|p| p.captured) {
        let on_port = FilterChainMatch {
            destination_port: Some(UInt32Value {
                value: u32::from(p.port),
            }),
            ..FilterChainMatch::default()
        };
        chains.extend(port_chains(p, &on_port, WILDCARD));
    }
    let mut listener_filters = vec![original_dst()];
    listener_filters.extend(inspectors(&chains));
    chains.push(FilterChain {
        name: VIRTUAL_INBOUND_LISTENER.to_owned(),
        filters: vec![tcp_proxy(
            INBOUND_PASSTHROUGH_CLUSTER,
            TcpTarget::Cluster(INBOUND_PASSTHROUGH_CLUSTER.to_owned()),
        )],
        ..FilterChain::default()
    });
    Listener {
        name: VIRTUAL_INBOUND_LISTENER.to_owned(),
        address: Some(address(WILDCARD, VIRTUAL_INBOUND_PORT)),
        filter_chains: chains,
        listener_filters,
        listener_filters_timeout: Some(zero()),
        continue_on_listener_filters_timeout: true,
        traffic_direction: TrafficDirection::Inbound as i32,
        ..Listener::default()
    }
}

/// The chains serving one port: HTTP, TCP, or both behind the HTTP inspector.
fn port_chains(p: &InboundPort, base: &FilterChainMatch, address: &str) -> Vec<FilterChain> {
    let name = listener_name(address, p.port);
    let cluster = inbound_cluster(p.port);
    let tcp = |m: FilterChainMatch, name: String| FilterChain {
        name,
        filter_chain_match: Some(m),
        filters: vec![tcp_proxy(&cluster, TcpTarget::Cluster(cluster.clone()))],
        ..FilterChain::default()
    };
    let http = |m: FilterChainMatch, name: String| FilterChain {
        name,
        filter_chain_match: Some(m),
        filters: vec![http_connection_manager(
            &format!("inbound_{}", listener_name(WILDCARD, p.port)),
            Routes::Inline(Box::new(inbound_route_config(p))),
            Side::Inbound,
        )],
        ..FilterChain::default()
    };
    match p.protocol {
        None => Vec::new(),
        Some(ListenerProtocol::Http) => vec![http(base.clone(), name)],
        Some(ListenerProtocol::Tcp) => vec![tcp(base.clone(), name)],
        Some(ListenerProtocol::Auto) => vec![
            http(http_alpn_match(base.clone()), format!("{name}-http")),
            tcp(base.clone(), name),
        ],
    }
}

/// The inline route of an inbound HTTP chain: all requests to the workload (Istio's
/// `buildSidecarInboundHTTPRouteConfig`).
fn inbound_route_config(p: &InboundPort) -> RouteConfiguration {
    let cluster = inbound_cluster(p.port);
    let operation = format!("{}:{}/*", p.hostname, p.port);
    RouteConfiguration {
        name: cluster.clone(),
        virtual_hosts: vec![VirtualHost {
            name: format!("inbound|http|{}", p.port),
            domains: vec!["*".to_owned()],
            routes: vec![default_inbound_route(cluster, operation)],
            ..VirtualHost::default()
        }],
        validate_clusters: Some(BoolValue { value: false }),
        ..RouteConfiguration::default()
    }
}
