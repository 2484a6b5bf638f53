//! Envoy's external authorization filter (`envoy.filters.http.ext_authz`): each request
//! is checked with an authorization service — an HTTP service (the request's method,
//! path and chosen headers, answered 200 to allow) or the gRPC service
//! `envoy.service.auth.v3.Authorization/Check` — reached through one of the proxy's
//! clusters. Istio's CUSTOM action enables it per request with
//! `filter_enabled_metadata` on the shadow result of an RBAC filter before it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::BodyExt;
use mizzen_xds::pb::envoy::config::core::v3::{
    GrpcService, HeaderValueOption, grpc_service::TargetSpecifier, http_uri::HttpUpstreamType,
};
use mizzen_xds::pb::envoy::extensions::filters::http::ext_authz::v3::{
    ExtAuthz as PbExtAuthz, HttpService, ext_authz::Services,
};
use mizzen_xds::pb::envoy::extensions::filters::network::ext_authz::v3::ExtAuthz as PbNetworkExtAuthz;
use mizzen_xds::pb::envoy::service::auth::v3::{
    AttributeContext, CheckRequest, CheckResponse, attribute_context, check_response,
};
use mizzen_xds::pb::envoy::r#type::matcher::v3::ListStringMatcher;
use prost::Message;

use super::matcher::MetadataMatch;
use super::{Connection, Metadata};
use crate::Shared;
use crate::config::UpstreamProtocol;
use crate::flags::ResponseFlags;
use crate::http::{ClientBody, Kept, ProxyBody, ReadError, RequestBody, local};
use crate::route::{Invalid, Problem, RequestHead, StringMatch, Within};
use crate::stats::{Counter, HttpStats, Stats};
use crate::upstream::{PoolKey, PoolSettings};

/// The ext_authz filter's name.
pub const EXT_AUTHZ: &str = "envoy.filters.http.ext_authz";
/// The network ext_authz filter's name.
pub const NETWORK_EXT_AUTHZ: &str = "envoy.filters.network.ext_authz";
/// Envoy's timeout of a check when the service names none.
const DEFAULT_TIMEOUT: Duration = Duration::from_millis(200);
/// The gRPC method of Envoy's authorization service.
const CHECK_PATH: &str = "/envoy.service.auth.v3.Authorization/Check";
/// The header of a gRPC check that says whether its body was cut at `max_request_bytes`.
const PARTIAL_BODY: &str = "x-envoy-auth-partial-body";
/// The header Envoy adds to a request let through by `failure_mode_allow`.
const FAILURE_MODE_ALLOWED: HeaderName =
    HeaderName::from_static("x-envoy-auth-failure-mode-allowed");

/// An `ExtAuthz` filter, compiled.
#[derive(Debug)]
pub struct ExtAuthz {
    service: Service,
    cluster: String,
    timeout: Duration,
    failure_mode_allow: bool,
    failure_mode_allow_header_add: bool,
    status_on_error: StatusCode,
    /// Which request headers go into the check (none given: all for gRPC, and for HTTP
    /// only `authorization`).
    allowed_headers: Option<Vec<StringMatch>>,
    /// When set, requests whose metadata does not match are not checked.
    enabled: Option<MetadataMatch>,
    /// How much of a request's body goes into its check (`with_request_body`).
    body: Option<BodySettings>,
    stats: ExtAuthzStats,
}

/// Envoy's `BufferSettings`: the request body is read up to `max` bytes before the
/// check, which carries it.
#[derive(Debug, Clone, Copy)]
struct BodySettings {
    max: usize,
    /// Check with the first `max` bytes of a longer body rather than refuse it (413).
    partial: bool,
    /// gRPC: the body in `raw_body` (bytes) rather than `body` (text).
    pack_as_bytes: bool,
}

/// The part of a request's body a check carries.
#[derive(Debug)]
pub(crate) struct CheckBody {
    bytes: Bytes,
    /// The body was longer than what the check carries.
    partial: bool,
}

#[derive(Debug)]
enum Service {
    Http {
        /// The authority of check requests (the service URI's).
        authority: String,
        path_prefix: String,
        headers_to_add: Vec<(HeaderName, HeaderValue)>,
        /// Response headers set on the upstream request when allowed.
        upstream: Vec<StringMatch>,
        /// Response headers appended to the upstream request when allowed.
        upstream_append: Vec<StringMatch>,
        /// Response headers the client gets when denied (none given: all).
        client: Option<Vec<StringMatch>>,
        /// Response headers the client gets when allowed.
        client_on_success: Vec<StringMatch>,
    },
    Grpc {
        authority: String,
    },
}

#[derive(Debug)]
struct ExtAuthzStats {
    ok: Arc<Counter>,
    denied: Arc<Counter>,
    error: Arc<Counter>,
    failure_mode_allowed: Arc<Counter>,
    disabled: Arc<Counter>,
}

impl ExtAuthzStats {
    /// Envoy's counters, named by `counter` from their last part.
    fn new(counter: impl Fn(&str) -> Arc<Counter>) -> ExtAuthzStats {
        ExtAuthzStats {
            ok: counter("ok"),
            denied: counter("denied"),
            error: counter("error"),
            failure_mode_allowed: counter("failure_mode_allowed"),
            disabled: counter("disabled"),
        }
    }
}

/// What a check decided.
pub(crate) enum Decision {
    /// Let through, with headers to change.
    Allowed(Allowed),
    /// Answered in the upstream's stead.
    Denied(Response<ProxyBody>),
}

/// What the authorization service asks to change in a request it allows.
#[derive(Debug, Default)]
pub(crate) struct Allowed {
    /// Headers set on the upstream request.
    upstream_set: Vec<(HeaderName, HeaderValue)>,
    /// Headers appended to the upstream request.
    upstream_append: Vec<(HeaderName, HeaderValue)>,
    /// Headers removed from the upstream request.
    upstream_remove: Vec<HeaderName>,
    /// Headers added to the client's response.
    response: Vec<(HeaderName, HeaderValue)>,
}

impl Allowed {
    /// Applies the changes to the request's headers and the headers its response will get.
    pub(crate) fn apply(self, request: &mut HeaderMap, response: &mut HeaderMap) {
        for name in self.upstream_remove {
            request.remove(name);
        }
        for (name, value) in self.upstream_set {
            request.insert(name, value);
        }
        for (name, value) in self.upstream_append {
            request.append(name, value);
        }
        for (name, value) in self.response {
            response.append(name, value);
        }
    }
}

impl ExtAuthz {
    /// Compiles the filter, its counters under `http.<stat_prefix>.ext_authz.`; errors
    /// name fields within its config.
    pub(crate) fn compile(config: &PbExtAuthz, stats: &HttpStats) -> Result<ExtAuthz, Invalid> {
        let unsupported = [
            ("filter_enabled", config.filter_enabled.is_some()),
            ("deny_at_disable", config.deny_at_disable.is_some()),
            ("disallowed_headers", config.disallowed_headers.is_some()),
            ("include_peer_certificate", config.include_peer_certificate),
            ("include_tls_session", config.include_tls_session),
            ("shadow_mode", config.shadow_mode),
        ];
        if let Some((field, _)) = unsupported.iter().find(|(_, set)| *set) {
            return Err(Problem::Unsupported.at(*field));
        }
        let (service, cluster, timeout) = match &config.services {
            Some(Services::HttpService(http)) => http_service(http).within("http_service")?,
            Some(Services::GrpcService(grpc)) => grpc_service(grpc).within("grpc_service")?,
            None => return Err(Problem::Missing.at("http_service")),
        };
        let status_on_error = match &config.status_on_error {
            Some(status) => u16::try_from(status.code)
                .ok()
                .and_then(|c| StatusCode::from_u16(c).ok())
                .ok_or_else(|| {
                    Problem::invalid(format!("{} is not an HTTP status", status.code))
                        .at("status_on_error.code")
                })?,
            None => StatusCode::FORBIDDEN,
        };
        let body =
            config
                .with_request_body
                .as_ref()
                .map(|b| match b.max_request_bytes {
                    0 => Err(Problem::invalid("must be above 0")
                        .at("with_request_body.max_request_bytes")),
                    max => Ok(BodySettings {
                        max: max as usize,
                        partial: b.allow_partial_message,
                        pack_as_bytes: b.pack_as_bytes,
                    }),
                })
                .transpose()?;
        Ok(ExtAuthz {
            service,
            cluster,
            timeout,
            failure_mode_allow: config.failure_mode_allow,
            failure_mode_allow_header_add: config.failure_mode_allow_header_add,
            status_on_error,
            allowed_headers: config
                .allowed_headers
                .as_ref()
                .map(|l| patterns(l).within("allowed_headers"))
                .transpose()?,
            enabled: config
                .filter_enabled_metadata
                .as_ref()
                .map(|m| MetadataMatch::compile(m).within("filter_enabled_metadata"))
                .transpose()?,
            body,
            stats: ExtAuthzStats::new(|name| stats.counter(&format!("ext_authz.{name}"))),
        })
    }

    /// Compiles a network ext_authz filter (`envoy.filters.network.ext_authz`, gRPC
    /// only), its counters `ext_authz.<stat_prefix>.…`; errors name fields within it.
    pub(crate) fn network(config: &PbNetworkExtAuthz, stats: &Stats) -> Result<ExtAuthz, Invalid> {
        let unsupported = [
            ("include_peer_certificate", config.include_peer_certificate),
            ("include_tls_session", config.include_tls_session),
            ("send_tls_alert_on_denial", config.send_tls_alert_on_denial),
            ("shadow_mode", config.shadow_mode),
        ];
        if let Some((field, _)) = unsupported.iter().find(|(_, set)| *set) {
            return Err(Problem::Unsupported.at(*field));
        }
        let grpc = config
            .grpc_service
            .as_ref()
            .ok_or_else(|| Problem::Missing.at("grpc_service"))?;
        let (service, cluster, timeout) = grpc_service(grpc).within("grpc_service")?;
        let prefix = config.stat_prefix.trim_end_matches('.');
        Ok(ExtAuthz {
            service,
            cluster,
            timeout,
            failure_mode_allow: config.failure_mode_allow,
            failure_mode_allow_header_add: false,
            status_on_error: StatusCode::FORBIDDEN,
            allowed_headers: None,
            enabled: config
                .filter_enabled_metadata
                .as_ref()
                .map(|m| MetadataMatch::compile(m).within("filter_enabled_metadata"))
                .transpose()?,
            body: None,
            stats: ExtAuthzStats::new(|name| stats.counter(&format!("ext_authz.{prefix}.{name}"))),
        })
    }

    /// Checks a connection (no request): whether the service lets it through.
    pub(crate) async fn check_connection(
        &self,
        shared: &Shared,
        connection: &Connection<'_>,
    ) -> bool {
        matches!(
            self.check(shared, connection, None, None).await,
            Decision::Allowed(_)
        )
    }

    /// Reads as much of the request's `body` as its check carries (none unless
    /// `with_request_body`); the body keeps what was read, to send on. Else the answer
    /// the client gets: Envoy's 413 for a body over the limit.
    pub(crate) async fn read_body(
        &self,
        body: &mut ClientBody,
    ) -> Result<Option<CheckBody>, Response<ProxyBody>> {
        let Some(settings) = self.body else {
            return Ok(None);
        };
        match body.read_up_to(settings.max, settings.partial).await {
            Ok(read) => {
                let bytes = read.slice(..read.len().min(settings.max));
                let partial = bytes.len() != read.len();
                Ok(Some(CheckBody { bytes, partial }))
            }
            Err(ReadError::TooLarge(_)) => {
                Err(local(StatusCode::PAYLOAD_TOO_LARGE, "Payload Too Large"))
            }
            Err(ReadError::Client(e)) => {
                tracing::debug!(error = %e, "ext_authz: reading the request body");
                Err(local(StatusCode::BAD_REQUEST, ""))
            }
        }
    }

    /// Whether the request with `metadata` is to be checked.
    pub(crate) fn enabled(&self, metadata: &Metadata) -> bool {
        let enabled = self.enabled.as_ref().is_none_or(|m| m.matches(metadata));
        if !enabled {
            self.stats.disabled.inc();
        }
        enabled
    }

    /// Checks `req` with what was read of its body (none: the connection alone) from
    /// `connection` with the authorization service.
    pub(crate) async fn check(
        &self,
        shared: &Shared,
        connection: &Connection<'_>,
        req: Option<&RequestHead<'_>>,
        body: Option<&CheckBody>,
    ) -> Decision {
        let call = self.call(shared, connection, req, body);
        let outcome = tokio::time::timeout(self.timeout, call).await;
        match outcome {
            Ok(Ok(decision)) => {
                match &decision {
                    Decision::Allowed(_) => self.stats.ok.inc(),
                    Decision::Denied(_) => self.stats.denied.inc(),
                }
                decision
            }
            Ok(Err(e)) => self.failed(&e),
            Err(_) => self.failed("timed out"),
        }
    }

    /// A check that got no answer: let through under `failure_mode_allow`, else
    /// `status_on_error`.
    fn failed(&self, why: &str) -> Decision {
        self.stats.error.inc();
        tracing::debug!(cluster = %self.cluster, error = why, "ext_authz: check failed");
        if self.failure_mode_allow {
            self.stats.failure_mode_allowed.inc();
            let upstream_set = match self.failure_mode_allow_header_add {
                true => vec![(FAILURE_MODE_ALLOWED, HeaderValue::from_static("true"))],
                false => Vec::new(),
            };
            return Decision::Allowed(Allowed {
                upstream_set,
                ..Allowed::default()
            });
        }
        Decision::Denied(unauthorized(local(self.status_on_error, "")))
    }

    async fn call(
        &self,
        shared: &Shared,
        connection: &Connection<'_>,
        req: Option<&RequestHead<'_>>,
        body: Option<&CheckBody>,
    ) -> Result<Decision, String> {
        let request = match (&self.service, req) {
            (Service::Http { .. }, None) => {
                return Err("an HTTP service checks requests only".into());
            }
            (
                Service::Http {
                    authority,
                    path_prefix,
                    headers_to_add,
                    ..
                },
                Some(req),
            ) => {
                let sent = body.map_or_else(Bytes::new, |b| b.bytes.clone());
                let mut check = Request::builder()
                    .method(req.method.clone())
                    .uri(format!("{path_prefix}{}", req.path))
                    .header(header::HOST, authority.as_str())
                    .header(header::CONTENT_LENGTH, sent.len());
                for (name, value) in req.headers {
                    let allowed = match &self.allowed_headers {
                        Some(patterns) => matches_any(patterns, name),
                        None => name == header::AUTHORIZATION,
                    };
                    if allowed && name != header::HOST && name != header::CONTENT_LENGTH {
                        check = check.header(name, value);
                    }
                }
                for (name, value) in headers_to_add {
                    check = check.header(name, value);
                }
                let frames = (!sent.is_empty()).then_some(Kept::Data(sent));
                check
                    .body(RequestBody::Whole(frames.into_iter().collect()))
                    .map_err(|e| e.to_string())?
            }
            (Service::Grpc { authority }, _) => {
                let message = self.check_request(connection, req, body).encode_to_vec();
                let mut framed = BytesMut::with_capacity(5 + message.len());
                framed.put_u8(0);
                framed.put_u32(message.len() as u32);
                framed.put_slice(&message);
                Request::post(CHECK_PATH)
                    .header(header::HOST, authority.as_str())
                    .header(header::CONTENT_TYPE, "application/grpc")
                    .header(header::TE, "trailers")
                    .body(RequestBody::Whole([Kept::Data(framed.freeze())].into()))
                    .map_err(|e| e.to_string())?
            }
        };
        let grpc = matches!(self.service, Service::Grpc { .. });
        let (status, headers, body, trailers) =
            self.exchange(shared, connection, request, grpc).await?;
        match &self.service {
            Service::Http {
                upstream,
                upstream_append,
                client,
                client_on_success,
                ..
            } => Ok(if status == StatusCode::OK {
                Decision::Allowed(Allowed {
                    upstream_set: picked(&headers, upstream),
                    upstream_append: picked(&headers, upstream_append),
                    upstream_remove: Vec::new(),
                    response: picked(&headers, client_on_success),
                })
            } else {
                let mut response = local(status, body);
                for (name, value) in &headers {
                    let allowed = match client {
                        Some(patterns) => matches_any(patterns, name) || always_to_client(name),
                        None => name != header::HOST,
                    };
                    if allowed && !is_framing(name) {
                        response.headers_mut().append(name, value.clone());
                    }
                }
                Decision::Denied(unauthorized(response))
            }),
            Service::Grpc { .. } => grpc_decision(&headers, trailers.as_ref(), body),
        }
    }

    /// Sends `request` to an endpoint of the service's cluster: the response's status,
    /// headers, body and trailers.
    async fn exchange(
        &self,
        shared: &Shared,
        connection: &Connection<'_>,
        mut request: Request<RequestBody>,
        grpc: bool,
    ) -> Result<(StatusCode, HeaderMap, Bytes, Option<HeaderMap>), String> {
        let snapshot = shared.store.snapshot();
        let state = snapshot
            .clusters
            .get(&self.cluster)
            .ok_or_else(|| format!("cluster {:?} not found", self.cluster))?;
        let chosen = crate::endpoint::choose(state, connection.destination, None)
            .map_err(|e| e.to_string())?;
        let key = PoolKey {
            endpoint: chosen.address,
            http2: grpc || state.cluster.protocol == UpstreamProtocol::Http2,
            bind: state.cluster.bind,
            transport: state.transport(chosen.address).clone(),
        };
        // HTTP/2 carries the authority in the URI (`:authority`), not in `host`.
        if key.http2
            && let Some(host) = request.headers_mut().remove(header::HOST)
        {
            let host = host.to_str().map_err(|e| e.to_string())?;
            let path = request.uri().path_and_query().map_or("/", |p| p.as_str());
            *request.uri_mut() = format!("http://{host}{path}")
                .parse()
                .map_err(|e: http::uri::InvalidUri| e.to_string())?;
            *request.version_mut() = http::Version::HTTP_2;
        }
        let response = shared
            .upstreams
            .send(key, PoolSettings::of(&state.cluster), &state.stats, request)
            .await
            .map_err(|e| e.to_string())?;
        let (parts, body) = response.into_parts();
        let collected = body.collect().await.map_err(|e| e.to_string())?;
        let trailers = collected.trailers().cloned();
        Ok((parts.status, parts.headers, collected.to_bytes(), trailers))
    }

    /// The gRPC `CheckRequest` for `req` (none: for the connection alone).
    fn check_request(
        &self,
        connection: &Connection<'_>,
        req: Option<&RequestHead<'_>>,
        body: Option<&CheckBody>,
    ) -> CheckRequest {
        let peer = |address: SocketAddr, principal: Option<&str>| attribute_context::Peer {
            address: Some(socket_address(address)),
            principal: principal.unwrap_or_default().to_owned(),
            ..Default::default()
        };
        CheckRequest {
            attributes: Some(AttributeContext {
                source: Some(peer(connection.source, connection.principal)),
                destination: Some(peer(connection.destination, None)),
                request: req.map(|req| self.request_attributes(req, body)),
                ..Default::default()
            }),
        }
    }

    /// What a `CheckRequest` tells of an HTTP request.
    fn request_attributes(
        &self,
        req: &RequestHead<'_>,
        body: Option<&CheckBody>,
    ) -> attribute_context::Request {
        let body = body.filter(|b| !b.bytes.is_empty());
        let mut headers: std::collections::HashMap<String, String> = req
            .headers
            .iter()
            .filter(|(name, _)| {
                self.allowed_headers
                    .as_ref()
                    .is_none_or(|patterns| matches_any(patterns, name))
            })
            .filter_map(|(name, value)| Some((name.to_string(), value.to_str().ok()?.to_owned())))
            .chain([
                (":authority".to_owned(), req.authority.to_owned()),
                (":method".to_owned(), req.method.to_string()),
                (":path".to_owned(), req.path.to_owned()),
            ])
            .collect();
        let (mut text, mut raw_body) = (String::new(), Vec::new());
        if let Some(body) = body {
            headers.insert(PARTIAL_BODY.to_owned(), body.partial.to_string());
            match self.body.is_some_and(|s| s.pack_as_bytes) {
                true => raw_body = body.bytes.to_vec(),
                false => text = String::from_utf8_lossy(&body.bytes).into_owned(),
            }
        }
        attribute_context::Request {
            http: Some(attribute_context::HttpRequest {
                body: text,
                raw_body,
                id: req
                    .headers
                    .get("x-request-id")
                    .and_then(|v| v.to_str().ok())
                    .unwrap_or_default()
                    .to_owned(),
                method: req.method.to_string(),
                headers,
                path: req.path.to_owned(),
                host: req.authority.to_owned(),
                scheme: req.scheme.to_owned(),
                ..Default::default()
            }),
            ..Default::default()
        }
    }
}

/// An address as the authorization service reads it.
fn socket_address(address: SocketAddr) -> mizzen_xds::pb::envoy::config::core::v3::Address {
    use mizzen_xds::pb::envoy::config::core::v3::{
        Address, SocketAddress, address, socket_address,
    };
    Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: address.ip().to_string(),
            port_specifier: Some(socket_address::PortSpecifier::PortValue(u32::from(
                address.port(),
            ))),
            ..Default::default()
        })),
    }
}

/// Whether an OK response's header is appended rather than set: its (deprecated, and
/// still what servers send) `append`.
#[allow(deprecated)]
fn appends(option: &HeaderValueOption) -> bool {
    option.append.as_ref().is_some_and(|a| a.value)
}

/// The decision in a gRPC `CheckResponse`: its status says allowed (OK) or denied;
/// a call that failed (no message, a gRPC error) is an error.
fn grpc_decision(
    headers: &HeaderMap,
    trailers: Option<&HeaderMap>,
    mut body: Bytes,
) -> Result<Decision, String> {
    let grpc_status = trailers
        .and_then(|t| t.get("grpc-status"))
        .or_else(|| headers.get("grpc-status"))
        .and_then(|v| v.to_str().ok())
        .unwrap_or("0");
    if grpc_status != "0" {
        return Err(format!("grpc-status {grpc_status}"));
    }
    if body.len() < 5 {
        return Err("no CheckResponse".into());
    }
    let _compressed = body.get_u8();
    let length = body.get_u32() as usize;
    let message = body.get(..length).ok_or("a truncated CheckResponse")?;
    let response = CheckResponse::decode(message).map_err(|e| e.to_string())?;
    let code = response.status.as_ref().map_or(0, |s| s.code);
    if code == 0 {
        let (mut upstream_set, mut upstream_append, mut upstream_remove, mut client) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        if let Some(check_response::HttpResponse::OkResponse(ok)) = &response.http_response {
            for option in &ok.headers {
                if let Some(pair) = header_pair(option) {
                    match appends(option) {
                        true => upstream_append.push(pair),
                        false => upstream_set.push(pair),
                    }
                }
            }
            upstream_remove = ok
                .headers_to_remove
                .iter()
                .filter_map(|n| HeaderName::from_bytes(n.as_bytes()).ok())
                .collect();
            client = ok
                .response_headers_to_add
                .iter()
                .filter_map(header_pair)
                .collect();
        }
        return Ok(Decision::Allowed(Allowed {
            upstream_set,
            upstream_append,
            upstream_remove,
            response: client,
        }));
    }
    let mut status = StatusCode::FORBIDDEN;
    let mut response = match &response.http_response {
        Some(check_response::HttpResponse::DeniedResponse(denied)) => {
            if let Some(s) = denied
                .status
                .as_ref()
                .and_then(|s| u16::try_from(s.code).ok())
                .and_then(|c| StatusCode::from_u16(c).ok())
                .filter(|s| s.as_u16() >= 200)
            {
                status = s;
            }
            let mut response = local(status, denied.body.clone());
            for pair in denied.headers.iter().filter_map(header_pair) {
                response.headers_mut().insert(pair.0, pair.1);
            }
            response
        }
        _ => local(status, ""),
    };
    *response.status_mut() = status;
    Ok(Decision::Denied(unauthorized(response)))
}

/// A `HeaderValueOption` as a header.
fn header_pair(option: &HeaderValueOption) -> Option<(HeaderName, HeaderValue)> {
    let h = option.header.as_ref()?;
    let value = if h.raw_value.is_empty() {
        HeaderValue::from_str(&h.value).ok()?
    } else {
        HeaderValue::from_bytes(&h.raw_value).ok()?
    };
    Some((HeaderName::from_bytes(h.key.as_bytes()).ok()?, value))
}

/// A denial as Envoy records it: response flag `UAEX`.
fn unauthorized(mut response: Response<ProxyBody>) -> Response<ProxyBody> {
    response.extensions_mut().insert(ResponseFlags::UAEX);
    response
}

/// The headers of `headers` that `patterns` pick.
fn picked(headers: &HeaderMap, patterns: &[StringMatch]) -> Vec<(HeaderName, HeaderValue)> {
    headers
        .iter()
        .filter(|(name, _)| matches_any(patterns, name))
        .map(|(n, v)| (n.clone(), v.clone()))
        .collect()
}

fn matches_any(patterns: &[StringMatch], name: &HeaderName) -> bool {
    patterns.iter().any(|p| p.matches(name.as_str().as_bytes()))
}

/// Headers Envoy always passes on from a denial once `allowed_client_headers` is set.
fn always_to_client(name: &HeaderName) -> bool {
    [header::WWW_AUTHENTICATE, header::LOCATION].contains(name)
}

/// Headers that frame a message, which the proxy sets itself.
fn is_framing(name: &HeaderName) -> bool {
    [
        header::CONTENT_LENGTH,
        header::TRANSFER_ENCODING,
        header::CONNECTION,
    ]
    .contains(name)
}

fn patterns(list: &ListStringMatcher) -> Result<Vec<StringMatch>, Invalid> {
    list.patterns
        .iter()
        .enumerate()
        .map(|(i, p)| StringMatch::compile(p).within(&format!("patterns[{i}]")))
        .collect()
}

fn http_service(http: &HttpService) -> Result<(Service, String, Duration), Invalid> {
    if !http.path_override.is_empty() {
        return Err(Problem::Unsupported.at("path_override"));
    }
    if http.retry_policy.is_some() {
        return Err(Problem::Unsupported.at("retry_policy"));
    }
    let uri = http
        .server_uri
        .as_ref()
        .ok_or_else(|| Problem::Missing.at("server_uri"))?;
    let cluster = match &uri.http_upstream_type {
        Some(HttpUpstreamType::Cluster(c)) if !c.is_empty() => c.clone(),
        _ => return Err(Problem::Missing.at("server_uri.cluster")),
    };
    let authority = uri
        .uri
        .parse::<http::Uri>()
        .ok()
        .and_then(|u| u.authority().map(|a| a.to_string()))
        .ok_or_else(|| {
            Problem::invalid(format!("{:?} is not a URL", uri.uri)).at("server_uri.uri")
        })?;
    let timeout = match &uri.timeout {
        Some(d) => {
            crate::config::duration(d).map_err(|r| Problem::invalid(r).at("server_uri.timeout"))?
        }
        None => DEFAULT_TIMEOUT,
    };
    let request = http.authorization_request.as_ref();
    let response = http.authorization_response.as_ref();
    let list = |l: Option<&ListStringMatcher>, field: &str| {
        l.map(|l| patterns(l).within(field)).transpose()
    };
    let headers_to_add = request
        .map(|r| r.headers_to_add.as_slice())
        .unwrap_or_default()
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let at = format!("authorization_request.headers_to_add[{i}]");
            Ok((
                HeaderName::from_bytes(h.key.as_bytes())
                    .map_err(|_| Problem::InvalidHeaderName(h.key.clone()).at(at.clone()))?,
                HeaderValue::from_str(&h.value)
                    .map_err(|_| Problem::InvalidHeaderValue(h.value.clone()).at(at))?,
            ))
        })
        .collect::<Result<_, Invalid>>()?;
    let service = Service::Http {
        authority,
        path_prefix: http.path_prefix.clone(),
        headers_to_add,
        upstream: list(
            response.and_then(|r| r.allowed_upstream_headers.as_ref()),
            "authorization_response.allowed_upstream_headers",
        )?
        .unwrap_or_default(),
        upstream_append: list(
            response.and_then(|r| r.allowed_upstream_headers_to_append.as_ref()),
            "authorization_response.allowed_upstream_headers_to_append",
        )?
        .unwrap_or_default(),
        client: list(
            response.and_then(|r| r.allowed_client_headers.as_ref()),
            "authorization_response.allowed_client_headers",
        )?,
        client_on_success: list(
            response.and_then(|r| r.allowed_client_headers_on_success.as_ref()),
            "authorization_response.allowed_client_headers_on_success",
        )?
        .unwrap_or_default(),
    };
    Ok((service, cluster, timeout))
}

fn grpc_service(grpc: &GrpcService) -> Result<(Service, String, Duration), Invalid> {
    let Some(TargetSpecifier::EnvoyGrpc(target)) = &grpc.target_specifier else {
        return Err(Problem::Unsupported.at("google_grpc"));
    };
    if target.cluster_name.is_empty() {
        return Err(Problem::Missing.at("envoy_grpc.cluster_name"));
    }
    let timeout = match &grpc.timeout {
        Some(d) => crate::config::duration(d).map_err(|r| Problem::invalid(r).at("timeout"))?,
        None => DEFAULT_TIMEOUT,
    };
    let authority = if target.authority.is_empty() {
        target.cluster_name.clone()
    } else {
        target.authority.clone()
    };
    Ok((
        Service::Grpc { authority },
        target.cluster_name.clone(),
        timeout,
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::authz::decode;
    use crate::authz::testdata::{istio_data, istio_filters};

    #[test]
    fn every_ext_authz_filter_istio_generates_compiles() {
        let stats = HttpStats::default();
        let compiled: Vec<ExtAuthz> = istio_filters("http")
            .into_iter()
            .filter(|f| f.name == EXT_AUTHZ)
            .map(|f| {
                decode::<PbExtAuthz>(&f.config)
                    .and_then(|c| ExtAuthz::compile(&c, &stats))
                    .unwrap_or_else(|e| panic!("{}: {}: {}", f.file, e.field, e.problem))
            })
            .collect();
        if istio_data().is_some() {
            assert_eq!(compiled.len(), 6);
            assert!(
                compiled
                    .iter()
                    .all(|c| c.failure_mode_allow && c.enabled.is_some())
            );
        }
    }

    #[test]
    fn unsupported_settings_are_refused_by_field() {
        let refuse = |yaml: &str| {
            let config: PbExtAuthz = mizzen_xds::json::from_yaml(yaml).unwrap();
            ExtAuthz::compile(&config, &HttpStats::default())
                .unwrap_err()
                .field
        };
        assert_eq!(
            refuse("grpc_service: {google_grpc: {target_uri: x}}"),
            "grpc_service.google_grpc"
        );
        assert_eq!(
            refuse("http_service: {server_uri: {uri: 'http://a'}}"),
            "http_service.server_uri.cluster"
        );
        assert_eq!(
            refuse(
                "{http_service: {server_uri: {uri: 'http://a', cluster: c}}, status_on_error: {code: 99}}"
            ),
            "status_on_error.code"
        );
        assert_eq!(refuse("{}"), "http_service");
    }
}
