//! Inbound listeners: `virtualInbound` (15006) with a filter chain per captured workload
//! port, and, for ports not captured (`captureMode: NONE`, local mode), listeners bound
//! on the workload's own address. Both forward to `inbound|PORT||`, each port's chains
//! shaped by its PeerAuthentication mode (Istio's inbound filter chain options) and
//! carrying the authentication and authorization filters of the policies selecting the
//! workload.

use mizzen_api::networking::CaptureMode;
use mizzen_xds::pb::envoy::config::core::v3::TrafficDirection;
use mizzen_xds::pb::envoy::config::listener::v3::{FilterChain, FilterChainMatch, Listener};
use mizzen_xds::pb::envoy::config::route::v3::{RouteConfiguration, VirtualHost};
use mizzen_xds::pb::google::protobuf::{BoolValue, UInt32Value};

use super::filters::{
    ListenerProtocol, PLAINTEXT_HTTP_ALPNS, RAW_BUFFER, Routes, Side, TLS_TRANSPORT, TcpTarget,
    address, http_connection_manager, inspectors, original_dst, tcp_proxy, zero,
};
use super::stats::{Class, Telemetry};
use super::with_proxy;
use crate::model::security::{MutualTls, PeerAuthn, peer_authentication};
use crate::model::{InterceptionMode, Proxy, PushContext};
use crate::translate::names::{
    BLACKHOLE_CLUSTER, INBOUND_PASSTHROUGH_CLUSTER, VIRTUAL_INBOUND_LISTENER, inbound_cluster,
    listener_name,
};
use crate::translate::route::default_inbound_route;
use crate::translate::security::{ServerFilters, mtls_transport_socket};
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

/// What every inbound chain of one proxy shares: its PeerAuthentication, the
/// security filters of the policies selecting it, and its telemetry filters.
struct Server {
    peer: PeerAuthn,
    filters: ServerFilters,
    telemetry: Telemetry,
}

/// The inbound listeners of `proxy`: `virtualInbound` unless interception is off, and a
/// bound listener per uncaptured port.
pub(crate) fn inbound_listeners(
    push: &PushContext,
    proxy: &Proxy,
    sidecar: Option<&Resource<Sidecar>>,
) -> Vec<Listener> {
    let ports = inbound_ports(push, proxy, sidecar);
    let server = Server {
        peer: peer_authentication(&push.config, &push.mesh.root_namespace, proxy),
        filters: ServerFilters::new(push, proxy),
        telemetry: Telemetry::new(push, proxy, Class::SidecarInbound),
    };
    let mut out = Vec::new();
    for p in ports.iter().filter(|p| !p.captured) {
        let chains = port_chains(p, &FilterChainMatch::default(), &p.bind, &server);
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
        out.push(virtual_inbound(&ports, &server));
    }
    out
}

/// `virtualInbound`: the original destination's port picks the chain; unknown ports
/// pass through to the workload, and connections to 15006 itself are dropped.
fn virtual_inbound(ports: &[InboundPort], server: &Server) -> Listener {
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
        chains.extend(port_chains(p, &on_port, WILDCARD, server));
    }
    let mut listener_filters = vec![original_dst()];
    listener_filters.extend(inspectors(&chains));
    chains.push(FilterChain {
        name: VIRTUAL_INBOUND_LISTENER.to_owned(),
        filters: with_proxy(
            server.telemetry.tcp_filters(Vec::new()),
            tcp_proxy(
                INBOUND_PASSTHROUGH_CLUSTER,
                TcpTarget::Cluster(INBOUND_PASSTHROUGH_CLUSTER.to_owned()),
            ),
        ),
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

/// One filter chain of a port, as Istio's `FilterChainMatchOptions`.
#[derive(Debug, Clone, Copy)]
struct ChainOption {
    /// ALPN values the chain matches (none: any).
    alpn: &'static [&'static str],
    /// `tls` or `raw_buffer`.
    transport: &'static str,
    /// HTTP connection manager or `tcp_proxy`.
    http: bool,
    /// Whether the chain terminates Istio mTLS.
    mtls: bool,
}

/// ALPN values mesh clients offer for HTTP over mTLS.
const MTLS_HTTP_ALPNS: &[&str] = &["istio-http/1.0", "istio-http/1.1", "istio-h2"];
/// ALPN values mesh clients offer for TCP over mTLS (metadata exchange first).
const MTLS_TCP_ALPNS: &[&str] = &["istio-peer-exchange", "istio"];
/// Every ALPN value a mesh client may offer.
const ALL_MTLS_ALPNS: &[&str] = &[
    "istio",
    "istio-peer-exchange",
    "istio-http/1.0",
    "istio-http/1.1",
    "istio-h2",
];

/// Istio's chain options for a port's protocol and mTLS mode: STRICT only terminates
/// mTLS; PERMISSIVE also takes plain text (and, for TCP, TLS the app terminates);
/// DISABLE only plain text.
fn chain_options(protocol: ListenerProtocol, mode: MutualTls) -> &'static [ChainOption] {
    use ListenerProtocol::{Auto, Http, Tcp};
    use MutualTls::{Disable, Permissive, Strict};
    const NONE: &[&str] = &[];
    match (protocol, mode) {
        (Http, Strict) => &[ChainOption {
            alpn: NONE,
            transport: TLS_TRANSPORT,
            http: true,
            mtls: true,
        }],
        (Http, Permissive) => &[
            ChainOption {
                alpn: ALL_MTLS_ALPNS,
                transport: TLS_TRANSPORT,
                http: true,
                mtls: true,
            },
            ChainOption {
                alpn: NONE,
                transport: RAW_BUFFER,
                http: true,
                mtls: false,
            },
        ],
        (Http, Disable) => &[ChainOption {
            alpn: NONE,
            transport: RAW_BUFFER,
            http: true,
            mtls: false,
        }],
        (Tcp, Strict) => &[ChainOption {
            alpn: NONE,
            transport: TLS_TRANSPORT,
            http: false,
            mtls: true,
        }],
        (Tcp, Permissive) => &[
            ChainOption {
                alpn: ALL_MTLS_ALPNS,
                transport: TLS_TRANSPORT,
                http: false,
                mtls: true,
            },
            ChainOption {
                alpn: NONE,
                transport: TLS_TRANSPORT,
                http: false,
                mtls: false,
            },
            ChainOption {
                alpn: NONE,
                transport: RAW_BUFFER,
                http: false,
                mtls: false,
            },
        ],
        (Tcp, Disable) => &[ChainOption {
            alpn: NONE,
            transport: RAW_BUFFER,
            http: false,
            mtls: false,
        }],
        (Auto, Strict) => &[
            ChainOption {
                alpn: MTLS_HTTP_ALPNS,
                transport: TLS_TRANSPORT,
                http: true,
                mtls: true,
            },
            ChainOption {
                alpn: NONE,
                transport: TLS_TRANSPORT,
                http: false,
                mtls: true,
            },
        ],
        (Auto, Permissive) => &[
            ChainOption {
                alpn: MTLS_HTTP_ALPNS,
                transport: TLS_TRANSPORT,
                http: true,
                mtls: true,
            },
            ChainOption {
                alpn: &PLAINTEXT_HTTP_ALPNS,
                transport: RAW_BUFFER,
                http: true,
                mtls: false,
            },
            ChainOption {
                alpn: MTLS_TCP_ALPNS,
                transport: TLS_TRANSPORT,
                http: false,
                mtls: true,
            },
            ChainOption {
                alpn: NONE,
                transport: RAW_BUFFER,
                http: false,
                mtls: false,
            },
            ChainOption {
                alpn: NONE,
                transport: TLS_TRANSPORT,
                http: false,
                mtls: false,
            },
        ],
        (Auto, Disable) => &[
            ChainOption {
                alpn: &PLAINTEXT_HTTP_ALPNS,
                transport: RAW_BUFFER,
                http: true,
                mtls: false,
            },
            ChainOption {
                alpn: NONE,
                transport: RAW_BUFFER,
                http: false,
                mtls: false,
            },
        ],
    }
}

/// The chains serving one port, by its protocol and mTLS mode.
fn port_chains(
    p: &InboundPort,
    base: &FilterChainMatch,
    address: &str,
    server: &Server,
) -> Vec<FilterChain> {
    let Some(protocol) = p.protocol else {
        return Vec::new();
    };
    let name = listener_name(address, p.port);
    let cluster = inbound_cluster(p.port);
    chain_options(protocol, server.peer.mode_for(p.port))
        .iter()
        .map(|o| {
            let mut m = base.clone();
            m.transport_protocol = o.transport.to_owned();
            m.application_protocols = o.alpn.iter().map(|a| (*a).to_owned()).collect();
            let filters = if o.http {
                vec![http_connection_manager(
                    &format!("inbound_{}", listener_name(WILDCARD, p.port)),
                    Routes::Inline(Box::new(inbound_route_config(p))),
                    Side::Inbound,
                    server.filters.http.clone(),
                    &server.telemetry,
                )]
            } else {
                with_proxy(
                    server.telemetry.tcp_filters(server.filters.network.clone()),
                    tcp_proxy(&cluster, TcpTarget::Cluster(cluster.clone())),
                )
            };
            let kind = match (protocol, o.http) {
                (ListenerProtocol::Auto, true) => "-http",
                _ => "",
            };
            let transport = match (o.mtls, o.transport) {
                (true, _) => "-mtls",
                (false, TLS_TRANSPORT) => "-tls",
                _ => "",
            };
            FilterChain {
                name: format!("{name}{kind}{transport}"),
                filter_chain_match: Some(m),
                filters,
                transport_socket: o.mtls.then(mtls_transport_socket),
                ..FilterChain::default()
            }
        })
        .collect()
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
