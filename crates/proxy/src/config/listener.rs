//! Listeners from LDS or the bootstrap: an address, the inspectors that read a new
//! connection's first bytes, and the filter chains that decide how it is served.

use std::net::SocketAddr;
use std::sync::Arc;

use mizzen_xds::pb::envoy::config::core::v3::TrafficDirection;
use mizzen_xds::pb::envoy::config::listener::v3::{
    Filter, FilterChain as PbFilterChain, Listener as PbListener, filter, listener_filter,
};
use mizzen_xds::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
use mizzen_xds::pb::envoy::extensions::filters::network::tcp_proxy::v3::TcpProxy as PbTcpProxy;
use prost::Message;

use mizzen_xds::pb::envoy::config::core::v3::{TransportSocket, transport_socket::ConfigType};
use mizzen_xds::pb::envoy::extensions::transport_sockets::tls::v3::DownstreamTlsContext;

use super::chain::{self, ChainMatch, ConnectionInfo};
use super::{ConfigError, HttpManager, TcpProxy, socket_address};
use crate::authz::NetworkAuthz;
use crate::metrics::{ReporterChoice, TcpTelemetry, is_telemetry_filter};
use crate::stats::{SslStats, Stats};
use crate::tls::{RAW_BUFFER, Secrets, ServerTls, TLS};
use crate::trace::Operation;

const HTTP_CONNECTION_MANAGER: &str = "envoy.filters.network.http_connection_manager";
const TCP_PROXY: &str = "envoy.filters.network.tcp_proxy";
const ORIGINAL_DST: &str = "envoy.filters.listener.original_dst";
const TLS_INSPECTOR: &str = "envoy.filters.listener.tls_inspector";
const HTTP_INSPECTOR: &str = "envoy.filters.listener.http_inspector";

/// One listener, compiled.
#[derive(Debug)]
pub struct Listener {
    /// Its name (`virtualOutbound`, `0.0.0.0_9080`).
    pub name: String,
    /// Where it listens (or, when not bound, which original destinations it serves).
    pub address: SocketAddr,
    /// Whether it owns a socket; Istio's per-port listeners do not, and receive
    /// connections `virtualOutbound` hands over by original destination.
    pub bind_to_port: bool,
    /// Whether connections are handed to the listener of their original destination.
    pub use_original_dst: bool,
    /// Whether the TLS inspector reads SNI and ALPN from a ClientHello.
    pub inspect_tls: bool,
    /// Whether the HTTP inspector tells HTTP/1.1 and h2c from other bytes.
    pub inspect_http: bool,
    /// The filter chains, in order.
    pub chains: Vec<FilterChain>,
    /// The chain for connections no chain matches.
    pub default_chain: Option<FilterChain>,
    /// The resource as received, for `/config_dump`.
    pub raw: Arc<PbListener>,
}

/// One filter chain: when it applies and what serves its connections.
#[derive(Debug)]
pub struct FilterChain {
    /// Its name, if it has one.
    pub name: String,
    /// When it applies.
    pub criteria: ChainMatch,
    /// The TLS its connections are terminated with (`transport_socket`), if any.
    pub tls: Option<Arc<ServerTls>>,
    /// What serves its connections.
    pub filter: NetworkFilter,
}

/// The terminal network filter of a chain.
#[derive(Debug, Clone)]
pub enum NetworkFilter {
    /// Served as HTTP.
    Http(Arc<HttpManager>),
    /// Relayed as TCP.
    Tcp(Arc<TcpProxy>),
}

impl Listener {
    /// Compiles a listener, refusing what the proxy cannot honour; its TLS contexts
    /// take the secrets they name from `secrets`.
    pub fn compile(
        raw: PbListener,
        stats: &Stats,
        secrets: &Secrets,
    ) -> Result<Listener, ConfigError> {
        let name = raw.name.clone();
        let err = |field: &str, reason: String| ConfigError::new("listener", &name, field, reason);
        let address = raw
            .address
            .as_ref()
            .ok_or_else(|| err("address", "is missing".into()))
            .and_then(|a| socket_address(a).map_err(|r| err("address", r)))?;

        let mut use_original_dst = raw.use_original_dst.is_some_and(|b| b.value);
        let mut inspect_tls = false;
        let mut inspect_http = false;
        for (i, f) in raw.listener_filters.iter().enumerate() {
            if let Some(listener_filter::ConfigType::ConfigDiscovery(_)) = f.config_type {
                return Err(err(
                    &format!("listener_filters[{i}]"),
                    "config discovery is not supported".into(),
                ));
            }
            match f.name.as_str() {
                ORIGINAL_DST => use_original_dst = true,
                TLS_INSPECTOR => inspect_tls = true,
                HTTP_INSPECTOR => inspect_http = true,
                other => {
                    return Err(err(
                        &format!("listener_filters[{i}]"),
                        format!("listener filter {other:?} is not supported"),
                    ));
                }
            }
        }

        let direction = if raw.traffic_direction == TrafficDirection::Inbound as i32 {
            ReporterChoice::Inbound
        } else {
            ReporterChoice::Outbound
        };
        let operation = if raw.traffic_direction == TrafficDirection::Outbound as i32 {
            Operation::Egress
        } else {
            Operation::Ingress
        };
        let ssl = stats.listener(address).ssl.clone();
        let compile = |c: &PbFilterChain| {
            FilterChain::compile(c, stats, secrets, &ssl, (direction, operation))
        };
        let chains = raw
            .filter_chains
            .iter()
            .enumerate()
            .map(|(i, c)| compile(c).map_err(|(f, r)| err(&format!("filter_chains[{i}].{f}"), r)))
            .collect::<Result<Vec<_>, _>>()?;
        let default_chain = raw
            .default_filter_chain
            .as_ref()
            .map(|c| compile(c).map_err(|(f, r)| err(&format!("default_filter_chain.{f}"), r)))
            .transpose()?;
        if chains.iter().chain(&default_chain).any(|c| c.tls.is_some()) {
            ssl.enable();
        }
        if chains.is_empty() && default_chain.is_none() {
            return Err(err(
                "filter_chains",
                "a listener needs at least one filter chain".into(),
            ));
        }
        Ok(Listener {
            name,
            address,
            bind_to_port: raw.bind_to_port.is_none_or(|b| b.value),
            use_original_dst,
            inspect_tls,
            inspect_http,
            chains,
            default_chain,
            raw: Arc::new(raw),
        })
    }

    /// Whether any chain needs a TLS ClientHello read to be chosen.
    pub fn wants_client_hello(&self) -> bool {
        self.inspect_tls
            && self
                .chains
                .iter()
                .any(|c| c.criteria.needs_tls_inspection())
    }

    /// The chain that serves `conn`: the most specific match, else the default chain.
    pub fn select(&self, conn: &ConnectionInfo<'_>) -> Option<&FilterChain> {
        match chain::select(&self.chains, |c| &c.criteria, conn) {
            Some(i) => Some(&self.chains[i]),
            None => self.default_chain.as_ref(),
        }
    }
}

impl FilterChain {
    fn compile(
        raw: &PbFilterChain,
        stats: &Stats,
        secrets: &Secrets,
        ssl: &Arc<SslStats>,
        (direction, operation): (ReporterChoice, Operation),
    ) -> Result<FilterChain, (String, String)> {
        let criteria = match &raw.filter_chain_match {
            Some(m) => ChainMatch::compile(m)?,
            None => ChainMatch::default(),
        };
        let tls = raw
            .transport_socket
            .as_ref()
            .map(|socket| {
                downstream_tls(socket, secrets, ssl)
                    .map_err(|(f, r)| (format!("transport_socket.{f}"), r))
            })
            .transpose()?
            .flatten();
        let Some((last, leading)) = raw.filters.split_last() else {
            return Err(("filters".into(), "a chain needs a network filter".into()));
        };
        // Istio's telemetry filters record; every other filter before the last authorizes.
        let (telemetry, authz): (Vec<_>, Vec<_>) = leading
            .iter()
            .enumerate()
            .partition(|(_, f)| is_telemetry_filter(&f.name));
        let authz = authz
            .into_iter()
            .map(|(i, f)| {
                NetworkAuthz::compile(f, stats).map_err(|(f, r)| (format!("filters[{i}].{f}"), r))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let telemetry = TcpTelemetry::compile(
            telemetry.into_iter().map(|(i, f)| {
                let any = match &f.config_type {
                    Some(filter::ConfigType::TypedConfig(any)) => Some(any),
                    _ => None,
                };
                (i, f.name.as_str(), any)
            }),
            direction,
            stats.istio(),
        )
        .map_err(|(i, r)| (format!("filters[{i}].typed_config"), r))?;
        let i = raw.filters.len() - 1;
        let filter = terminal_filter(last, stats, authz, (direction, operation), telemetry)
            .map_err(|(f, r)| (format!("filters[{i}].{f}"), r))?;
        Ok(FilterChain {
            name: raw.name.clone(),
            criteria,
            tls,
            filter,
        })
    }
}

/// The TLS a chain's `transport_socket` terminates, or None for plaintext.
fn downstream_tls(
    socket: &TransportSocket,
    secrets: &Secrets,
    ssl: &Arc<SslStats>,
) -> Result<Option<Arc<ServerTls>>, (String, String)> {
    let any = socket
        .config_type
        .as_ref()
        .map(|ConfigType::TypedConfig(any)| any);
    match (
        socket.name.as_str(),
        any.map(|a| a.type_url.rsplit('/').next()),
    ) {
        (_, Some(Some("envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext"))) => {
            let bytes = any.map_or(&[][..], |a| a.value.as_slice());
            let ctx = DownstreamTlsContext::decode(bytes)
                .map_err(|e| ("typed_config".to_owned(), e.to_string()))?;
            let tls = ServerTls::compile(&ctx, secrets, ssl.clone())
                .map_err(|(f, r)| (format!("typed_config.{f}"), r))?;
            Ok(Some(Arc::new(tls)))
        }
        (_, Some(Some("envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer")))
        | (RAW_BUFFER, None) => Ok(None),
        (TLS, None) => Err((
            "typed_config".into(),
            "a DownstreamTlsContext is needed to terminate TLS".into(),
        )),
        (name, _) => Err((
            "name".into(),
            format!("transport socket {name:?} is not supported; expected {TLS} or {RAW_BUFFER}"),
        )),
    }
}

/// Decodes and compiles a chain's terminal filter, behind the network authorization
/// filters `authz`; a TCP proxy records into `telemetry`.
fn terminal_filter(
    f: &Filter,
    stats: &Stats,
    authz: Vec<NetworkAuthz>,
    (direction, operation): (ReporterChoice, Operation),
    telemetry: Option<TcpTelemetry>,
) -> Result<NetworkFilter, (String, String)> {
    let Some(filter::ConfigType::TypedConfig(any)) = &f.config_type else {
        return Err((
            "typed_config".into(),
            format!("filter {:?} has no typed_config", f.name),
        ));
    };
    let decode_err = |e: prost::DecodeError| ("typed_config".to_owned(), e.to_string());
    match any.type_url.rsplit('/').next() {
        Some(
            "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        ) => {
            if !authz.is_empty() {
                return Err((
                    "name".into(),
                    "network authorization filters are supported before tcp_proxy only (HTTP chains use the HTTP filters)".into(),
                ));
            }
            let hcm = HttpConnectionManager::decode(any.value.as_slice()).map_err(decode_err)?;
            let manager = HttpManager::compile(&hcm, stats, direction, operation)
                .map_err(|(field, r)| (format!("typed_config.{field}"), r))?;
            Ok(NetworkFilter::Http(Arc::new(manager)))
        }
        Some("envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy") => {
            let tcp = PbTcpProxy::decode(any.value.as_slice()).map_err(decode_err)?;
            let proxy = TcpProxy::compile(&tcp, authz, telemetry)
                .map_err(|(field, r)| (format!("typed_config.{field}"), r))?;
            Ok(NetworkFilter::Tcp(Arc::new(proxy)))
        }
        _ => Err((
            "typed_config".into(),
            format!(
                "network filter {:?} ({}) is not supported; expected {HTTP_CONNECTION_MANAGER} or {TCP_PROXY}",
                f.name, any.type_url
            ),
        )),
    }
}
