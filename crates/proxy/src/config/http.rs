//! The HTTP connection manager (`envoy.filters.network.http_connection_manager`): how a
//! chain's connections are served as HTTP, and which route table they use.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use mizzen_xds::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, http_connection_manager::CodecType,
    http_connection_manager::RouteSpecifier, http_connection_manager::ServerHeaderTransformation,
    http_filter,
};

use super::cidr::Cidr;
use super::duration;
use crate::access_log::AccessLog;
use crate::authz::{self, HttpFilters};
use crate::http::ClientCertPolicy;
use crate::metrics::{self, HttpTelemetry, ReporterChoice};
use crate::route::{FAULT_FILTER, Fault, RouteTable};
use crate::stats::{HttpStats, Stats};
use crate::trace::{Operation, Tracing};

/// The router filter, which every filter list must end with.
const ROUTER: &str = "envoy.filters.http.router";
/// HTTP filters the proxy accepts besides the authorization ones. CORS is accepted and
/// not acted on.
const KNOWN_FILTERS: [&str; 3] = [ROUTER, FAULT_FILTER, "envoy.filters.http.cors"];
/// Envoy's default `stream_idle_timeout`.
const DEFAULT_STREAM_IDLE_TIMEOUT: Duration = Duration::from_secs(300);

/// One HTTP connection manager, compiled.
#[derive(Debug)]
pub struct HttpManager {
    /// The prefix of its stats (`http.<stat_prefix>.…`).
    pub stat_prefix: String,
    /// Where its routes come from.
    pub routes: RouteSource,
    /// Which HTTP versions it serves.
    pub codec: Codec,
    /// How the forwarding headers of requests are treated.
    pub forwarding: Forwarding,
    /// Whether requests without an `x-request-id` get one.
    pub generate_request_id: bool,
    /// What becomes of `x-forwarded-client-cert`.
    pub client_cert: ClientCertPolicy,
    /// A stream with no activity for this long is ended (none: never).
    pub stream_idle_timeout: Option<Duration>,
    /// How long a client may take to send a request's headers (none: no limit).
    pub request_headers_timeout: Option<Duration>,
    /// What becomes of the `server` header of responses.
    pub server_header: ServerHeader,
    /// Whether WebSocket upgrades are proxied (`upgrade_configs`).
    pub websocket: bool,
    /// Whether CONNECT requests are accepted (`upgrade_configs` CONNECT).
    pub connect: bool,
    /// The fault filter's own settings, when the filter is in the chain (and enabled):
    /// the defaults for requests whose route carries none of its own.
    pub fault: Option<Fault>,
    /// The authorization filters (JWT, ext_authz, RBAC), run in order before routing.
    pub authz: HttpFilters,
    /// Its statistics (shared by every manager with the same `stat_prefix`).
    pub stats: Arc<HttpStats>,
    /// Istio's metadata exchange and metrics, when its filters are in the chain.
    pub telemetry: Option<Arc<HttpTelemetry>>,
    /// Its access loggers.
    pub access_log: Arc<AccessLog>,
    /// Its tracing, when configured.
    pub tracing: Option<Tracing>,
}

/// How a connection manager treats the forwarding headers of requests
/// (`x-forwarded-*`, `x-envoy-*`, `x-request-id`).
#[derive(Debug, Clone, Default)]
pub struct Forwarding {
    /// `use_remote_address`: the connection's peer is the client, as at the edge of the
    /// mesh. Its address goes into `x-forwarded-for`, `x-forwarded-proto` comes from the
    /// connection, and what the client says in `x-envoy-*` headers is not trusted.
    pub use_remote_address: bool,
    /// `xff_num_trusted_hops`: how many proxies in front of this one set
    /// `x-forwarded-for` and `x-forwarded-proto` truthfully.
    pub xff_num_trusted_hops: u32,
    /// `skip_xff_append`: leave `x-forwarded-for` as the client sent it.
    pub skip_xff_append: bool,
    /// `preserve_external_request_id`: keep an edge client's `x-request-id`.
    pub preserve_external_request_id: bool,
    /// `internal_address_config.cidr_ranges`: the client addresses trusted as inside the
    /// mesh (none by default, as in Envoy since 1.33).
    internal: Vec<Cidr>,
}

impl Forwarding {
    /// Whether a request from `client` comes from inside the mesh, so that its `x-envoy-*`
    /// headers are trusted.
    pub fn is_internal(&self, client: IpAddr) -> bool {
        let client = client.to_canonical();
        self.internal.iter().any(|range| range.contains(client))
    }
}

/// The `server` response header (`server_name`, `server_header_transformation`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ServerHeader {
    /// Always this value (Envoy's default, `envoy` when `server_name` is unset).
    Overwrite(HeaderValue),
    /// This value when the upstream sent none.
    AppendIfAbsent(HeaderValue),
    /// Whatever the upstream sent.
    PassThrough,
}

impl ServerHeader {
    fn compile(hcm: &HttpConnectionManager) -> Result<ServerHeader, String> {
        let name = if hcm.server_name.is_empty() {
            "envoy"
        } else {
            &hcm.server_name
        };
        let value = HeaderValue::from_str(name)
            .map_err(|_| format!("{name:?} is not a valid header value"))?;
        Ok(
            match ServerHeaderTransformation::try_from(hcm.server_header_transformation) {
                Ok(ServerHeaderTransformation::AppendIfAbsent) => {
                    ServerHeader::AppendIfAbsent(value)
                }
                Ok(ServerHeaderTransformation::PassThrough) => ServerHeader::PassThrough,
                _ => ServerHeader::Overwrite(value),
            },
        )
    }

    /// Applies the rule to a response's headers.
    pub fn apply(&self, headers: &mut http::HeaderMap) {
        match self {
            ServerHeader::Overwrite(v) => {
                headers.insert(http::header::SERVER, v.clone());
            }
            ServerHeader::AppendIfAbsent(v) => {
                headers
                    .entry(http::header::SERVER)
                    .or_insert_with(|| v.clone());
            }
            ServerHeader::PassThrough => {}
        }
    }
}

/// Where an HTTP connection manager's route table comes from.
#[derive(Debug, Clone)]
pub enum RouteSource {
    /// From RDS, by name.
    Rds(String),
    /// Inline in the listener.
    Inline(Arc<RouteTable>),
}

/// The HTTP versions a connection manager serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Codec {
    /// HTTP/1.1 or HTTP/2 (prior knowledge), told apart by the connection preface.
    Auto,
    /// HTTP/1.1 only.
    Http1,
    /// HTTP/2 only.
    Http2,
}

impl HttpManager {
    /// Compiles a connection manager; errors are `(field, reason)` for the caller to
    /// place in its listener.
    pub fn compile(
        hcm: &HttpConnectionManager,
        stats: &Stats,
        direction: ReporterChoice,
        operation: Operation,
    ) -> Result<HttpManager, (String, String)> {
        let field = |f: &str, r: String| (f.to_owned(), r);
        let routes = match &hcm.route_specifier {
            Some(RouteSpecifier::Rds(rds)) if !rds.route_config_name.is_empty() => {
                RouteSource::Rds(rds.route_config_name.clone())
            }
            Some(RouteSpecifier::Rds(_)) => {
                return Err(field("rds.route_config_name", "is empty".into()));
            }
            Some(RouteSpecifier::RouteConfig(config)) => RouteSource::Inline(Arc::new(
                RouteTable::compile(config).map_err(|e| field("route_config", e.to_string()))?,
            )),
            Some(_) => {
                return Err(field(
                    "route_specifier",
                    "only rds and route_config are supported".into(),
                ));
            }
            None => return Err(field("route_specifier", "is missing".into())),
        };
        let codec = match CodecType::try_from(hcm.codec_type) {
            Ok(CodecType::Auto) => Codec::Auto,
            Ok(CodecType::Http1) => Codec::Http1,
            Ok(CodecType::Http2) => Codec::Http2,
            _ => {
                return Err(field(
                    "codec_type",
                    format!("{} is not supported", hcm.codec_type),
                ));
            }
        };
        for (i, filter) in hcm.http_filters.iter().enumerate() {
            let name = filter.name.as_str();
            if !KNOWN_FILTERS.contains(&name)
                && !authz::FILTERS.contains(&name)
                && !metrics::is_telemetry_filter(name)
            {
                let optional = matches!(
                    &filter.config_type,
                    Some(http_filter::ConfigType::TypedConfig(_))
                ) && filter.is_optional;
                if !optional {
                    return Err(field(
                        &format!("http_filters[{i}]"),
                        format!("filter {:?} is not supported", filter.name),
                    ));
                }
            }
        }
        let fault = hcm
            .http_filters
            .iter()
            .enumerate()
            .find(|(_, f)| f.name == FAULT_FILTER && !f.disabled)
            .map(|(i, f)| {
                let compiled = match &f.config_type {
                    Some(http_filter::ConfigType::TypedConfig(any)) => Fault::from_any(any),
                    _ => Fault::compile(&Default::default()),
                };
                compiled.map_err(|e| {
                    let at = format!("http_filters[{i}].typed_config");
                    match e.field.as_str() {
                        "" => field(&at, e.problem.to_string()),
                        inner => field(&format!("{at}.{inner}"), e.problem.to_string()),
                    }
                })
            })
            .transpose()?;
        let telemetry = HttpTelemetry::compile(
            hcm.http_filters.iter().map(|f| {
                let any = match &f.config_type {
                    Some(http_filter::ConfigType::TypedConfig(any)) => Some(any),
                    _ => None,
                };
                (f.name.as_str(), any)
            }),
            direction,
            stats.istio(),
        )
        .map_err(|(i, r)| field(&format!("http_filters[{i}].typed_config"), r))?
        .map(Arc::new);
        match hcm.http_filters.last() {
            Some(last) if last.name == ROUTER => {}
            _ => {
                return Err(field(
                    "http_filters",
                    format!("the last filter must be {ROUTER:?}"),
                ));
            }
        }
        let internal = hcm
            .internal_address_config
            .iter()
            .flat_map(|c| c.cidr_ranges.iter().enumerate())
            .map(|(i, range)| {
                Cidr::parse(range)
                    .map_err(|r| field(&format!("internal_address_config.cidr_ranges[{i}]"), r))
            })
            .collect::<Result<_, _>>()?;
        let stream_idle_timeout = match &hcm.stream_idle_timeout {
            Some(d) => Some(duration(d).map_err(|r| field("stream_idle_timeout", r))?)
                .filter(|d| !d.is_zero()),
            None => Some(DEFAULT_STREAM_IDLE_TIMEOUT),
        };
        let request_headers_timeout = hcm
            .request_headers_timeout
            .as_ref()
            .map(|d| duration(d).map_err(|r| field("request_headers_timeout", r)))
            .transpose()?
            .filter(|d| !d.is_zero());
        let tracing = hcm
            .tracing
            .as_ref()
            .map(|t| Tracing::compile(t, operation, stats))
            .transpose()?;
        let stats = stats.http(&hcm.stat_prefix);
        let authz = HttpFilters::compile(&hcm.http_filters, &stats)?;
        let access_log =
            AccessLog::compile(&hcm.access_log).map_err(|e| (e.field_path(), e.reason))?;
        Ok(HttpManager {
            access_log: Arc::new(access_log),
            tracing,
            stat_prefix: hcm.stat_prefix.clone(),
            routes,
            codec,
            forwarding: Forwarding {
                use_remote_address: hcm.use_remote_address.is_some_and(|b| b.value),
                xff_num_trusted_hops: hcm.xff_num_trusted_hops,
                skip_xff_append: hcm.skip_xff_append,
                preserve_external_request_id: hcm.preserve_external_request_id,
                internal,
            },
            generate_request_id: hcm.generate_request_id.is_none_or(|b| b.value),
            client_cert: ClientCertPolicy::compile(hcm)?,
            stream_idle_timeout,
            request_headers_timeout,
            server_header: ServerHeader::compile(hcm).map_err(|r| field("server_name", r))?,
            stats,
            telemetry,
            fault,
            authz,
            connect: hcm.upgrade_configs.iter().any(|u| {
                u.upgrade_type.eq_ignore_ascii_case("CONNECT") && u.enabled.is_none_or(|e| e.value)
            }),
            websocket: hcm.upgrade_configs.iter().any(|u| {
                u.upgrade_type.eq_ignore_ascii_case("websocket")
                    && u.enabled.is_none_or(|e| e.value)
            }),
        })
    }
}

#[cfg(test)]
mod tests {
    use mizzen_xds::pb::envoy::config::core::v3::CidrRange;
    use mizzen_xds::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
        HttpFilter, Rds, http_connection_manager::InternalAddressConfig,
    };
    use mizzen_xds::pb::google::protobuf::UInt32Value;

    use super::*;

    fn with_internal(ranges: &[(&str, u32)]) -> Result<HttpManager, (String, String)> {
        HttpManager::compile(
            &HttpConnectionManager {
                route_specifier: Some(RouteSpecifier::Rds(Rds {
                    route_config_name: "r".to_owned(),
                    ..Rds::default()
                })),
                http_filters: vec![HttpFilter {
                    name: ROUTER.to_owned(),
                    ..HttpFilter::default()
                }],
                internal_address_config: Some(InternalAddressConfig {
                    cidr_ranges: ranges
                        .iter()
                        .map(|(prefix, len)| CidrRange {
                            address_prefix: (*prefix).to_owned(),
                            prefix_len: Some(UInt32Value { value: *len }),
                        })
                        .collect(),
                    ..InternalAddressConfig::default()
                }),
                ..HttpConnectionManager::default()
            },
            &crate::stats::Stats::default(),
            ReporterChoice::Outbound,
            Operation::Egress,
        )
    }

    #[test]
    fn only_the_configured_ranges_are_internal() {
        let m = with_internal(&[("10.0.0.0", 8), ("fd00::", 8)]).unwrap();
        let internal = |ip: &str| m.forwarding.is_internal(ip.parse().unwrap());
        assert!(internal("10.1.2.3"));
        assert!(internal("::ffff:10.1.2.3"));
        assert!(internal("fd00::1"));
        assert!(!internal("192.168.0.1"));
        assert!(!internal("127.0.0.1"));
        // Envoy trusts no address unless told to (since 1.33).
        let none = with_internal(&[]).unwrap();
        assert!(!none.forwarding.is_internal("10.1.2.3".parse().unwrap()));
    }

    #[test]
    fn a_bad_range_is_refused_by_position() {
        let (field, reason) = with_internal(&[("10.0.0.0", 8), ("10.0.0.0", 33)]).unwrap_err();
        assert_eq!(field, "internal_address_config.cidr_ranges[1]");
        assert!(reason.contains("33"), "{reason}");
    }
}
