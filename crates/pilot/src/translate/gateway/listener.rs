//! Gateway listeners: one per port and bind address of the plain HTTP servers, with an
//! HTTP connection manager taking its routes from RDS.

use mizzen_xds::pb::envoy::config::core::v3::TrafficDirection;
use mizzen_xds::pb::envoy::config::listener::v3::{FilterChain, Listener};

use super::servers::{HttpPort, http_ports};
use crate::model::{InterceptionMode, Proxy, PushContext};
use crate::translate::listener::{
    Class, Routes, Side, Telemetry, address, http_connection_manager,
};
use crate::translate::names::listener_name;
use crate::translate::security::ServerFilters;
use mizzen_xds::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpFilter;

/// Builds the listeners of a gateway proxy: one per port (and bind address) of its
/// Gateways' plain HTTP servers, named `<address>_<port>`, with the authentication and
/// authorization filters of the policies selecting the gateway.
pub fn listeners(push: &PushContext, proxy: &Proxy) -> Vec<Listener> {
    let security = ServerFilters::new(push, proxy);
    let telemetry = Telemetry::new(push, proxy, Class::Gateway);
    let mut out: Vec<Listener> = http_ports(push, proxy)
        .iter()
        .map(|port| http_listener(proxy, port, &security.http, &telemetry))
        .collect();
    crate::translate::telemetry::apply(push, proxy, &mut out);
    out
}

/// True when the proxy's listeners bind its own address rather than the wildcard:
/// without traffic capture (`INTERCEPTION_MODE=NONE`, Mizzen's local mode) every
/// workload has its own loopback address, so `0.0.0.0` would collide with theirs.
pub fn binds_own_address(proxy: &Proxy) -> bool {
    proxy.interception_mode == InterceptionMode::None && !proxy.ips.is_empty()
}

/// Where a server without `bind` listens: the wildcard, as Istio's
/// `getActualWildcardAndLocalHost`, or the proxy's own address in local mode.
fn default_bind(proxy: &Proxy) -> String {
    match proxy.ips.first() {
        Some(ip) if binds_own_address(proxy) => ip.to_string(),
        Some(ip) if ip.is_ipv6() && proxy.ips.iter().all(|ip| ip.is_ipv6()) => "::".to_owned(),
        _ => "0.0.0.0".to_owned(),
    }
}

fn http_listener(
    proxy: &Proxy,
    port: &HttpPort<'_>,
    security: &[HttpFilter],
    telemetry: &Telemetry,
) -> Listener {
    let bind = if port.bind.is_empty() {
        default_bind(proxy)
    } else {
        port.bind.to_owned()
    };
    let name = listener_name(&bind, port.port);
    Listener {
        address: Some(address(&bind, port.port)),
        filter_chains: vec![FilterChain {
            filters: vec![http_connection_manager(
                &format!("outbound_{name}"),
                Routes::Rds(port.route_name()),
                Side::Gateway,
                security.to_vec(),
                telemetry,
            )],
            ..FilterChain::default()
        }],
        traffic_direction: TrafficDirection::Outbound as i32,
        name,
        ..Listener::default()
    }
}
