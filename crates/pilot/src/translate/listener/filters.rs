//! The pieces listeners are made of, in Istio's shapes: addresses, listener filters,
//! `tcp_proxy` and `http_connection_manager` network filters, filter chains.

use mizzen_api::types::Protocol;
use mizzen_xds::pb::envoy::config::core::v3::{
    Address, AggregatedConfigSource, ApiVersion, CidrRange, ConfigSource, Http1ProtocolOptions,
    Pipe, SocketAddress, address, config_source, socket_address,
};
use mizzen_xds::pb::envoy::config::listener::v3::{
    Filter, FilterChain, FilterChainMatch, ListenerFilter, filter, listener_filter,
};
use mizzen_xds::pb::envoy::config::route::v3::RouteConfiguration;
use mizzen_xds::pb::envoy::extensions::filters::http::cors::v3::Cors;
use mizzen_xds::pb::envoy::extensions::filters::http::fault::v3::HttpFault;
use mizzen_xds::pb::envoy::extensions::filters::http::router::v3::Router;
use mizzen_xds::pb::envoy::extensions::filters::listener::http_inspector::v3::HttpInspector;
use mizzen_xds::pb::envoy::extensions::filters::listener::original_dst::v3::OriginalDst;
use mizzen_xds::pb::envoy::extensions::filters::listener::tls_inspector::v3::TlsInspector;
use mizzen_xds::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter, Rds, http_connection_manager, http_filter,
};
use mizzen_xds::pb::envoy::extensions::filters::network::tcp_proxy::v3::{
    TcpProxy, tcp_proxy as tcp,
};
use mizzen_xds::pb::google::protobuf::{BoolValue, Duration, UInt32Value};

use super::stats::Telemetry;
use crate::translate::route::{CORS_FILTER, FAULT_FILTER, to_any};

/// `envoy.filters.network.http_connection_manager`.
pub(crate) const HTTP_CONNECTION_MANAGER: &str = "envoy.filters.network.http_connection_manager";
/// `envoy.filters.network.tcp_proxy`.
pub(crate) const TCP_PROXY: &str = "envoy.filters.network.tcp_proxy";
/// `envoy.filters.http.router`.
const ROUTER_FILTER: &str = "envoy.filters.http.router";
/// ALPN values the HTTP inspector reports for plaintext HTTP (Istio's
/// `plaintextHTTPALPNs`).
pub(crate) const PLAINTEXT_HTTP_ALPNS: [&str; 2] = ["http/1.1", "h2c"];
/// The transport protocol of plaintext connections.
pub(crate) const RAW_BUFFER: &str = "raw_buffer";
/// The transport protocol the TLS inspector reports for TLS connections.
pub(crate) const TLS_TRANSPORT: &str = "tls";
/// The name Istio gives a listener's fallback chain.
pub(crate) const PASSTHROUGH_FILTER_CHAIN: &str = "PassthroughFilterChain";

/// How a port's traffic is proxied.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ListenerProtocol {
    /// Through the HTTP connection manager.
    Http,
    /// As opaque TCP.
    Tcp,
    /// Sniffed: HTTP when the HTTP inspector says so, else TCP (Istio's "auto").
    Auto,
}

impl ListenerProtocol {
    /// Istio's `ModelProtocolToListenerProtocol`; `None` (sniffing) is [`Self::Auto`], UDP
    /// gets no listener.
    pub fn of(protocol: Option<Protocol>) -> Option<ListenerProtocol> {
        match protocol {
            None => Some(ListenerProtocol::Auto),
            Some(Protocol::Udp) => None,
            Some(p) if p.is_http() => Some(ListenerProtocol::Http),
            Some(_) => Some(ListenerProtocol::Tcp),
        }
    }

    /// Parses a Sidecar port's protocol: empty or unknown means sniffed.
    pub fn parse(protocol: &str) -> Option<ListenerProtocol> {
        ListenerProtocol::of(protocol.parse().ok())
    }
}

/// A socket address, or a Unix socket for `unix://` binds.
pub(crate) fn address(ip: &str, port: u16) -> Address {
    let inner = match ip.strip_prefix("unix://") {
        Some(path) => address::Address::Pipe(Pipe {
            path: path.to_owned(),
            ..Pipe::default()
        }),
        None => address::Address::SocketAddress(SocketAddress {
            address: ip.to_owned(),
            port_specifier: Some(socket_address::PortSpecifier::PortValue(u32::from(port))),
            ..SocketAddress::default()
        }),
    };
    Address {
        address: Some(inner),
    }
}

/// A listener filter with its empty typed config.
fn listener_filter<M: prost::Name + prost::Message>(name: &str, config: &M) -> ListenerFilter {
    ListenerFilter {
        name: name.to_owned(),
        config_type: Some(listener_filter::ConfigType::TypedConfig(to_any(config))),
        ..ListenerFilter::default()
    }
}

/// `envoy.filters.listener.original_dst`.
pub(crate) fn original_dst() -> ListenerFilter {
    listener_filter("envoy.filters.listener.original_dst", &OriginalDst {})
}

/// `envoy.filters.listener.tls_inspector`.
pub(crate) fn tls_inspector() -> ListenerFilter {
    listener_filter(
        "envoy.filters.listener.tls_inspector",
        &TlsInspector::default(),
    )
}

/// `envoy.filters.listener.http_inspector`.
pub(crate) fn http_inspector() -> ListenerFilter {
    listener_filter("envoy.filters.listener.http_inspector", &HttpInspector {})
}

/// The inspectors the chains' matches need: TLS for SNI, ALPN or the transport
/// protocol, HTTP for the plaintext HTTP ALPNs it detects.
pub(crate) fn inspectors(chains: &[FilterChain]) -> Vec<ListenerFilter> {
    let matches = || chains.iter().filter_map(|c| c.filter_chain_match.as_ref());
    let tls = matches().any(|m| {
        !m.application_protocols.is_empty()
            || !m.server_names.is_empty()
            || !m.transport_protocol.is_empty()
    });
    let http = matches().any(|m| {
        m.application_protocols
            .iter()
            .any(|p| PLAINTEXT_HTTP_ALPNS.contains(&p.as_str()))
    });
    let mut out = Vec::new();
    if tls {
        out.push(tls_inspector());
    }
    if http {
        out.push(http_inspector());
    }
    out
}

/// A zero duration (Envoy: disabled).
pub(crate) fn zero() -> Duration {
    Duration::default()
}

/// Where a `tcp_proxy` sends connections.
pub(crate) enum TcpTarget {
    /// One cluster.
    Cluster(String),
    /// Weighted clusters.
    Weighted(Vec<(String, u32)>),
}

/// A `tcp_proxy` network filter.
pub(crate) fn tcp_proxy(stat_prefix: &str, target: TcpTarget) -> Filter {
    let cluster_specifier = match target {
        TcpTarget::Cluster(c) => tcp::ClusterSpecifier::Cluster(c),
        TcpTarget::Weighted(clusters) => {
            tcp::ClusterSpecifier::WeightedClusters(tcp::WeightedCluster {
                clusters: clusters
                    .into_iter()
                    .map(|(name, weight)| tcp::weighted_cluster::ClusterWeight {
                        name,
                        weight,
                        ..tcp::weighted_cluster::ClusterWeight::default()
                    })
                    .collect(),
            })
        }
    };
    let proxy = TcpProxy {
        stat_prefix: stat_prefix.to_owned(),
        cluster_specifier: Some(cluster_specifier),
        ..TcpProxy::default()
    };
    Filter {
        name: TCP_PROXY.to_owned(),
        config_type: Some(filter::ConfigType::TypedConfig(to_any(&proxy))),
    }
}

/// Where an HTTP connection manager gets its routes.
pub(crate) enum Routes {
    /// From RDS over ADS, by name.
    Rds(String),
    /// Inline.
    Inline(Box<RouteConfiguration>),
}

/// Which side of the proxy an HTTP connection manager serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    /// The workload's own traffic out.
    Outbound,
    /// Traffic in to the workload.
    Inbound,
    /// The HTTP proxy listener: absolute URLs allowed.
    HttpProxy,
    /// A gateway's listener: the edge, where the peer is the client.
    Gateway,
}

/// An `http_connection_manager` network filter in Istio's sidecar shape. Its filter
/// chain always holds the fault and CORS filters (inert unless a route configures them)
/// before the router, as Istio's does, since routes arrive separately over RDS.
/// `telemetry`'s metadata exchange runs first, then `security` (authentication and
/// authorization), and its stats filter last before the router.
pub(crate) fn http_connection_manager(
    stat_prefix: &str,
    routes: Routes,
    side: Side,
    security: Vec<HttpFilter>,
    telemetry: &Telemetry,
) -> Filter {
    let route_specifier = match routes {
        Routes::Rds(name) => http_connection_manager::RouteSpecifier::Rds(Rds {
            config_source: Some(ConfigSource {
                initial_fetch_timeout: Some(zero()),
                resource_api_version: ApiVersion::V3 as i32,
                config_source_specifier: Some(config_source::ConfigSourceSpecifier::Ads(
                    AggregatedConfigSource {},
                )),
                ..ConfigSource::default()
            }),
            route_config_name: name,
        }),
        Routes::Inline(config) => http_connection_manager::RouteSpecifier::RouteConfig(*config),
    };
    let mut http_filters: Vec<HttpFilter> = telemetry.http_exchange().into_iter().collect();
    http_filters.extend(security);
    http_filters.extend([
        http_filter(FAULT_FILTER, &HttpFault::default()),
        http_filter(CORS_FILTER, &Cors {}),
    ]);
    http_filters.extend(telemetry.http_stats());
    http_filters.push(http_filter(ROUTER_FILTER, &Router::default()));
    let mut hcm = HttpConnectionManager {
        codec_type: http_connection_manager::CodecType::Auto as i32,
        stat_prefix: stat_prefix.to_owned(),
        http_filters,
        use_remote_address: Some(BoolValue { value: false }),
        upgrade_configs: vec![http_connection_manager::UpgradeConfig {
            upgrade_type: "websocket".to_owned(),
            ..http_connection_manager::UpgradeConfig::default()
        }],
        normalize_path: Some(BoolValue { value: true }),
        path_with_escaped_slashes_action:
            http_connection_manager::PathWithEscapedSlashesAction::KeepUnchanged as i32,
        stream_idle_timeout: Some(zero()),
        route_specifier: Some(route_specifier),
        ..HttpConnectionManager::default()
    };
    match side {
        Side::Inbound => {
            hcm.server_name = "istio-envoy".to_owned();
            // As Istio's inbound listeners: the app learns who called (the peer's
            // subject, URI and DNS SANs) from x-forwarded-client-cert.
            hcm.forward_client_cert_details =
                http_connection_manager::ForwardClientCertDetails::AppendForward as i32;
            hcm.set_current_client_cert_details =
                Some(http_connection_manager::SetCurrentClientCertDetails {
                    subject: Some(BoolValue { value: true }),
                    dns: true,
                    uri: true,
                    ..http_connection_manager::SetCurrentClientCertDetails::default()
                });
        }
        Side::HttpProxy => {
            hcm.http_protocol_options = Some(Http1ProtocolOptions {
                allow_absolute_url: Some(BoolValue { value: true }),
                ..Http1ProtocolOptions::default()
            });
        }
        Side::Gateway => {
            // Istio's buildGatewayConnectionManager: clients are outside the mesh, and
            // client certificate headers they send are replaced, never trusted.
            hcm.use_remote_address = Some(BoolValue { value: true });
            hcm.forward_client_cert_details =
                http_connection_manager::ForwardClientCertDetails::SanitizeSet as i32;
            hcm.set_current_client_cert_details =
                Some(http_connection_manager::SetCurrentClientCertDetails {
                    subject: Some(BoolValue { value: true }),
                    cert: true,
                    dns: true,
                    uri: true,
                    ..http_connection_manager::SetCurrentClientCertDetails::default()
                });
        }
        Side::Outbound => {}
    }
    Filter {
        name: HTTP_CONNECTION_MANAGER.to_owned(),
        config_type: Some(filter::ConfigType::TypedConfig(to_any(&hcm))),
    }
}

/// An HTTP filter with its typed config.
pub(crate) fn http_filter<M: prost::Name + prost::Message>(name: &str, config: &M) -> HttpFilter {
    HttpFilter {
        name: name.to_owned(),
        config_type: Some(http_filter::ConfigType::TypedConfig(to_any(config))),
        ..HttpFilter::default()
    }
}

/// A CIDR (`10.0.0.0/8`) or single address (`/32` or `/128`) as a prefix range.
pub(crate) fn cidr(text: &str) -> Option<CidrRange> {
    let (ip, len) = match text.split_once('/') {
        Some((ip, len)) => (ip, Some(len.parse::<u32>().ok()?)),
        None => (text, None),
    };
    let parsed: std::net::IpAddr = ip.parse().ok()?;
    let len = len.unwrap_or(if parsed.is_ipv4() { 32 } else { 128 });
    Some(CidrRange {
        address_prefix: ip.to_owned(),
        prefix_len: Some(UInt32Value { value: len }),
    })
}

/// A filter chain match on destination CIDRs and SNI names (empty parts match all).
pub(crate) fn chain_match(cidrs: &[String], server_names: &[String]) -> FilterChainMatch {
    FilterChainMatch {
        prefix_ranges: cidrs.iter().filter_map(|c| cidr(c)).collect(),
        server_names: server_names.to_vec(),
        ..FilterChainMatch::default()
    }
}

/// A match on the plaintext HTTP ALPNs the HTTP inspector sets.
pub(crate) fn http_alpn_match(mut base: FilterChainMatch) -> FilterChainMatch {
    base.application_protocols = PLAINTEXT_HTTP_ALPNS
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
    base.transport_protocol = RAW_BUFFER.to_owned();
    base
}
