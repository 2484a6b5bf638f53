//! MeshConfig `extensionProviders`: the external authorizers CUSTOM AuthorizationPolicies
//! name (Istio's `envoyExtAuthzHttp` and `envoyExtAuthzGrpc`). Other kinds of provider
//! (tracing, access logs) are read and ignored here.

use std::collections::BTreeMap;

use mizzen_api::types::Duration;
use serde::Deserialize;

/// One named extension provider.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExtensionProvider {
    /// The name policies refer to it by.
    #[serde(default)]
    pub name: String,
    /// An authorizer spoken to over HTTP.
    #[serde(default)]
    pub envoy_ext_authz_http: Option<ExtAuthzHttp>,
    /// An authorizer spoken to over gRPC.
    #[serde(default)]
    pub envoy_ext_authz_grpc: Option<ExtAuthzGrpc>,
}

/// Istio's `EnvoyExternalAuthorizationHttpProvider`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExtAuthzHttp {
    /// `[NAMESPACE/]HOSTNAME` of the authorizer's service.
    #[serde(default)]
    pub service: String,
    /// Its port.
    #[serde(default)]
    pub port: u32,
    /// How long a check may take (600s when unset).
    #[serde(default)]
    pub timeout: Option<Duration>,
    /// Prepended to the request path of checks; must start with `/`.
    #[serde(default)]
    pub path_prefix: String,
    /// Let requests through when the authorizer fails.
    #[serde(default)]
    pub fail_open: bool,
    /// The HTTP status sent when the authorizer fails (`"403"`).
    #[serde(default)]
    pub status_on_error: String,
    /// Request headers sent in checks (deprecated by `includeRequestHeadersInCheck`).
    #[serde(default)]
    pub include_headers_in_check: Vec<String>,
    /// Request headers sent in checks.
    #[serde(default)]
    pub include_request_headers_in_check: Vec<String>,
    /// Headers added to every check request.
    #[serde(default)]
    pub include_additional_headers_in_check: BTreeMap<String, String>,
    /// Send the request body in checks.
    #[serde(default)]
    pub include_request_body_in_check: Option<RequestBody>,
    /// Authorizer response headers copied to the request when allowed.
    #[serde(default)]
    pub headers_to_upstream_on_allow: Vec<String>,
    /// Authorizer response headers copied to the response when denied.
    #[serde(default)]
    pub headers_to_downstream_on_deny: Vec<String>,
    /// Authorizer response headers copied to the response when allowed.
    #[serde(default)]
    pub headers_to_downstream_on_allow: Vec<String>,
}

/// Istio's `EnvoyExternalAuthorizationGrpcProvider`.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ExtAuthzGrpc {
    /// `[NAMESPACE/]HOSTNAME` of the authorizer's service.
    #[serde(default)]
    pub service: String,
    /// Its port.
    #[serde(default)]
    pub port: u32,
    /// How long a check may take (600s when unset).
    #[serde(default)]
    pub timeout: Option<Duration>,
    /// Let requests through when the authorizer fails.
    #[serde(default)]
    pub fail_open: bool,
    /// The HTTP status sent when the authorizer fails (`"403"`).
    #[serde(default)]
    pub status_on_error: String,
    /// Send the request body in checks.
    #[serde(default)]
    pub include_request_body_in_check: Option<RequestBody>,
}

/// How much of the request body a check carries.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestBody {
    /// At most this many bytes.
    #[serde(default)]
    pub max_request_bytes: u32,
    /// Send a partial body rather than refuse a larger one.
    #[serde(default)]
    pub allow_partial_message: bool,
    /// Send the body as bytes rather than UTF-8 text.
    #[serde(default)]
    pub pack_as_bytes: bool,
}
