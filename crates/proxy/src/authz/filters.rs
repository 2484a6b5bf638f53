//! The HTTP filters that run before the router, in the order of the connection
//! manager's `http_filters` (Istio's: jwt_authn, ext_authz, then RBAC), each on the
//! request as the ones before it left it.

use std::net::IpAddr;

use http::header::HeaderMap;
use http::{Request, Response, StatusCode};
use mizzen_xds::pb::envoy::extensions::filters::http::ext_authz::v3::ExtAuthz as PbExtAuthz;
use mizzen_xds::pb::envoy::extensions::filters::http::jwt_authn::v3::JwtAuthentication;
use mizzen_xds::pb::envoy::extensions::filters::http::rbac::v3::Rbac as PbHttpRbac;
use mizzen_xds::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpFilter as PbHttpFilter, http_filter,
};
use mizzen_xds::pb::google::protobuf::Any;
use prost::{Message, Name};

use super::ext_authz::{Decision, EXT_AUTHZ, ExtAuthz};
use super::jwt::{JWT_AUTHN, JwtAuthn};
use super::rbac::{self, HTTP_RBAC, Rbac};
use super::{Connection, Metadata, Subject};
use crate::Shared;
use crate::http::{ClientBody, ProxyBody, local, request_head};
use crate::route::{Invalid, Problem};
use crate::stats::HttpStats;

/// The names of the filters this module runs.
pub const FILTERS: [&str; 3] = [JWT_AUTHN, EXT_AUTHZ, HTTP_RBAC];

/// A connection manager's authorization filters, in order.
#[derive(Debug, Default)]
pub struct HttpFilters(Vec<HttpFilter>);

#[derive(Debug)]
enum HttpFilter {
    Jwt(JwtAuthn),
    // Boxed: it is the largest by far, and one list holds them all.
    ExtAuthz(Box<ExtAuthz>),
    Rbac(Rbac),
}

/// What the filters decided about a request.
pub enum Outcome {
    /// On to the router; `response_headers` go onto its response.
    Continue {
        /// Headers for the client's response (ext_authz's `allowed_client_headers_on_success`).
        response_headers: HeaderMap,
    },
    /// Answered by a filter.
    Respond(Response<ProxyBody>),
}

impl HttpFilters {
    /// Compiles the authorization filters among `filters` (others are left to their own
    /// modules); errors are `(field, reason)` within the connection manager.
    pub fn compile(
        filters: &[PbHttpFilter],
        stats: &HttpStats,
    ) -> Result<HttpFilters, (String, String)> {
        let mut compiled = Vec::new();
        for (i, f) in filters.iter().enumerate() {
            if f.disabled || !FILTERS.contains(&f.name.as_str()) {
                continue;
            }
            let at = format!("http_filters[{i}].typed_config");
            let Some(http_filter::ConfigType::TypedConfig(any)) = &f.config_type else {
                return Err((at, format!("filter {:?} has no typed_config", f.name)));
            };
            let placed = |e: Invalid| match e.field.as_str() {
                "" => (at.clone(), e.problem.to_string()),
                inner => (format!("{at}.{inner}"), e.problem.to_string()),
            };
            let filter = match f.name.as_str() {
                JWT_AUTHN => HttpFilter::Jwt(
                    decode::<JwtAuthentication>(any)
                        .and_then(|c| JwtAuthn::compile(&c, stats))
                        .map_err(placed)?,
                ),
                EXT_AUTHZ => HttpFilter::ExtAuthz(Box::new(
                    decode::<PbExtAuthz>(any)
                        .and_then(|c| ExtAuthz::compile(&c, stats))
                        .map_err(placed)?,
                )),
                HTTP_RBAC => HttpFilter::Rbac(
                    decode::<PbHttpRbac>(any)
                        .and_then(|c| Rbac::http(&c, stats))
                        .map_err(placed)?,
                ),
                _ => unreachable!("FILTERS lists the names matched here"),
            };
            compiled.push(filter);
        }
        Ok(HttpFilters(compiled))
    }

    /// Whether there is no filter to run.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Runs the filters on `request` from `connection`; `remote` is the client's
    /// trusted address.
    pub async fn run(
        &self,
        shared: &Shared,
        connection: Connection<'_>,
        remote: IpAddr,
        request: &mut Request<ClientBody>,
    ) -> Outcome {
        let mut metadata = Metadata::default();
        let mut response_headers = HeaderMap::new();
        for filter in &self.0 {
            match filter {
                HttpFilter::Jwt(jwt) => {
                    let checked = jwt.check(&request_head(request, connection.tls));
                    match checked {
                        Ok(passed) => passed.apply(request.headers_mut(), &mut metadata),
                        Err(rejected) => return Outcome::Respond(rejected.response()),
                    }
                }
                HttpFilter::ExtAuthz(ext) => {
                    if !ext.enabled(&metadata) {
                        continue;
                    }
                    let body = match ext.read_body(request.body_mut()).await {
                        Ok(body) => body,
                        Err(response) => return Outcome::Respond(response),
                    };
                    let head = request_head(request, connection.tls);
                    let decision = ext
                        .check(shared, &connection, Some(&head), body.as_ref())
                        .await;
                    match decision {
                        Decision::Denied(response) => return Outcome::Respond(response),
                        Decision::Allowed(allowed) => {
                            allowed.apply(request.headers_mut(), &mut response_headers);
                        }
                    }
                }
                HttpFilter::Rbac(rbac) => {
                    let head = request_head(request, connection.tls);
                    let subject = Subject {
                        connection,
                        remote,
                        request: Some(&head),
                    };
                    if !rbac.check(&subject, &mut metadata) {
                        return Outcome::Respond(local(StatusCode::FORBIDDEN, rbac::DENIED_BODY));
                    }
                }
            }
        }
        Outcome::Continue { response_headers }
    }
}

/// Decodes a filter's `typed_config` of type `M`; errors name `@type` or the config.
pub(crate) fn decode<M: Message + Name + Default>(any: &Any) -> Result<M, Invalid> {
    let type_name = any.type_url.rsplit('/').next().unwrap_or_default();
    if type_name != M::full_name() {
        return Err(Problem::invalid(format!(
            "expected {}, not {:?}",
            M::full_name(),
            any.type_url
        ))
        .at("@type"));
    }
    M::decode(any.value.as_slice())
        .map_err(|e| Problem::invalid(format!("cannot decode: {e}")).at(""))
}
