//! LDS for sidecars (Istio's `listener.go` and `listener_builder.go`): outbound listeners
//! per port, the HTTP proxy listener, `virtualOutbound` (15001) and the inbound side.

mod filters;
mod inbound;
mod outbound;
mod stats;

#[cfg(test)]
mod tests;

use mizzen_api::networking::CaptureMode;
use mizzen_xds::pb::envoy::config::core::v3::TrafficDirection;
use mizzen_xds::pb::envoy::config::listener::v3::{
    Filter, FilterChain, FilterChainMatch, Listener,
};
use mizzen_xds::pb::google::protobuf::{BoolValue, UInt32Value};

pub(crate) use filters::{
    HTTP_CONNECTION_MANAGER, Routes, Side, TCP_PROXY, address, cidr, http_connection_manager,
};
use filters::{TcpTarget, tcp_proxy};
pub use inbound::VIRTUAL_INBOUND_PORT;
pub(crate) use stats::{Class, Telemetry};

use crate::model::{InterceptionMode, Proxy, PushContext};
use crate::translate::names::{BLACKHOLE_CLUSTER, VIRTUAL_OUTBOUND_LISTENER, listener_name};
use crate::translate::route::HTTP_PROXY_ROUTE;
use crate::translate::route::scope::SidecarScope;

/// The port iptables redirects outbound traffic to.
pub const VIRTUAL_OUTBOUND_PORT: u16 = 15001;
/// The port of the HTTP proxy listener a workload's `HTTP_PROXY` points at when traffic
/// is not captured (Istio leaves it to `meshConfig.proxyHttpPort`; Mizzen's local mode
/// always needs one).
pub const HTTP_PROXY_PORT: u16 = 15080;

/// Builds the listeners of a sidecar: outbound ones, the HTTP proxy listener when some
/// traffic is not captured, `virtualOutbound` when it is, and the inbound side; each
/// name once.
pub fn listeners(push: &PushContext, proxy: &Proxy) -> Vec<Listener> {
    let inbound = inbound_side(push, proxy);
    // An egress listener on the workload's own address and port (local mode) gives way
    // to the inbound one of that name, as in Istio.
    let mut out: Vec<Listener> = outbound_side(push, proxy)
        .listeners
        .into_iter()
        .filter(|l| !inbound.iter().any(|i| i.name == l.name))
        .collect();
    out.extend(inbound);
    out
}

/// A sidecar's outbound listeners, and whether they depend on its own address.
#[derive(Debug, Clone)]
pub struct OutboundSide {
    /// Outbound listeners, the HTTP proxy listener, `virtualOutbound`.
    pub listeners: Vec<Listener>,
    /// True when some traffic is not captured, so a listener binds the proxy's own
    /// address; otherwise proxies that see the same services can share these.
    pub address_bound: bool,
}

/// The outbound side of [`listeners`]: what the proxy's Sidecar scope lets it reach.
pub fn outbound_side(push: &PushContext, proxy: &Proxy) -> OutboundSide {
    let scope = SidecarScope::new(push, proxy);
    let none_mode = proxy.interception_mode == InterceptionMode::None;
    let mut out = outbound::outbound_listeners(push, proxy, &scope);
    let uncaptured = scope.sidecar.is_some_and(|s| {
        s.spec
            .egress
            .iter()
            .any(|l| l.capture_mode == CaptureMode::None)
            || s.spec
                .ingress
                .iter()
                .any(|l| l.capture_mode == CaptureMode::None)
    });
    if none_mode || uncaptured {
        out.push(http_proxy_listener(push, proxy));
    }
    if !none_mode {
        out.push(virtual_outbound(push, proxy, &scope));
    }
    crate::translate::telemetry::apply(push, proxy, &mut out);
    OutboundSide {
        listeners: out,
        address_bound: none_mode || uncaptured,
    }
}

/// The inbound side of [`listeners`]: `virtualInbound` and the workload's own ports.
pub fn inbound_side(push: &PushContext, proxy: &Proxy) -> Vec<Listener> {
    let mut out = inbound::inbound_listeners(push, proxy, push.sidecar_for(proxy));
    crate::translate::telemetry::apply(push, proxy, &mut out);
    out
}

/// The HTTP proxy listener, bound on the workload's own address (in local mode every
/// workload has its own loopback address, so `127.0.0.1` would collide).
fn http_proxy_listener(push: &PushContext, proxy: &Proxy) -> Listener {
    let ip = proxy
        .ips
        .first()
        .map_or_else(|| "127.0.0.1".to_owned(), ToString::to_string);
    let name = listener_name(&ip, HTTP_PROXY_PORT);
    Listener {
        address: Some(address(&ip, HTTP_PROXY_PORT)),
        filter_chains: vec![FilterChain {
            filters: vec![http_connection_manager(
                &format!("outbound_{name}"),
                Routes::Rds(HTTP_PROXY_ROUTE.to_owned()),
                Side::HttpProxy,
                Vec::new(),
                &Telemetry::new(push, proxy, Class::SidecarOutbound),
            )],
            ..FilterChain::default()
        }],
        traffic_direction: TrafficDirection::Outbound as i32,
        name,
        ..Listener::default()
    }
}

/// `virtualOutbound`: receives redirected connections and hands each to the listener
/// of its original destination; what no listener takes goes to the catch-all cluster,
/// and connections to 15001 itself are dropped (Istio's
/// `buildVirtualOutboundListener`).
fn virtual_outbound(push: &PushContext, proxy: &Proxy, scope: &SidecarScope<'_>) -> Listener {
    let fallback = scope.catch_all_cluster();
    let telemetry = Telemetry::new(push, proxy, Class::SidecarOutbound);
    Listener {
        name: VIRTUAL_OUTBOUND_LISTENER.to_owned(),
        address: Some(address("0.0.0.0", VIRTUAL_OUTBOUND_PORT)),
        use_original_dst: Some(BoolValue { value: true }),
        transparent: (proxy.interception_mode == InterceptionMode::Tproxy)
            .then_some(BoolValue { value: true }),
        filter_chains: vec![
            FilterChain {
                name: format!("{VIRTUAL_OUTBOUND_LISTENER}-blackhole"),
                filter_chain_match: Some(FilterChainMatch {
                    destination_port: Some(UInt32Value {
                        value: u32::from(VIRTUAL_OUTBOUND_PORT),
                    }),
                    ..FilterChainMatch::default()
                }),
                filters: vec![tcp_proxy(
                    BLACKHOLE_CLUSTER,
                    TcpTarget::Cluster(BLACKHOLE_CLUSTER.to_owned()),
                )],
                ..FilterChain::default()
            },
            FilterChain {
                name: format!("{VIRTUAL_OUTBOUND_LISTENER}-catchall-tcp"),
                filters: with_proxy(
                    telemetry.tcp_filters(Vec::new()),
                    tcp_proxy(&fallback, TcpTarget::Cluster(fallback.clone())),
                ),
                ..FilterChain::default()
            },
        ],
        traffic_direction: TrafficDirection::Outbound as i32,
        ..Listener::default()
    }
}

/// `filters` followed by a chain's terminal `tcp_proxy`.
pub(crate) fn with_proxy(mut filters: Vec<Filter>, tcp_proxy: Filter) -> Vec<Filter> {
    filters.push(tcp_proxy);
    filters
}
