//! What an HTTP route does besides forwarding: redirects, direct responses, rewrites,
//! retries, fault injection, mirrors and CORS, with Istio's webhook rules for each.

use serde::{Deserialize, Serialize};

use super::{Destination, check_percentage, check_regex_len};
use crate::types::{Duration, Percent, StringMatch, is_default, string_enum};
use crate::validate::{Validator, check_port, check_proto_duration, is_header_token};

string_enum! {
    /// `HTTPRedirect.RedirectPortSelection`: how a redirect picks its port.
    pub enum RedirectPortSelection {
        /// 80 for HTTP, 443 for HTTPS.
        FromProtocolDefault = "FROM_PROTOCOL_DEFAULT",
        /// The port the request came in on.
        FromRequestPort = "FROM_REQUEST_PORT",
    }
}

/// `HTTPRedirect`: a redirect response.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRedirect {
    /// Replace the path with this value.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uri: String,
    /// Replace the authority with this value.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub authority: String,
    /// Replace the port with this value (one of `port` and `derivePort`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<u32>,
    /// Derive the port (one of `port` and `derivePort`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub derive_port: Option<RedirectPortSelection>,
    /// Replace the scheme (`http` or `https`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub scheme: String,
    /// Status code of the redirect, 301 when unset.
    #[serde(default, skip_serializing_if = "is_default")]
    pub redirect_code: u32,
}

/// `HTTPDirectResponse`: a fixed response.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpDirectResponse {
    /// HTTP status code (required).
    #[serde(default, skip_serializing_if = "is_default")]
    pub status: u32,
    /// Response body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub body: Option<HttpBody>,
}

/// `HTTPBody`: a body given as text or as base64-encoded bytes.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "RawHttpBody", into = "RawHttpBody")]
pub enum HttpBody {
    /// `{}`: an empty body.
    #[default]
    Empty,
    /// `{string: …}`: text.
    String(String),
    /// `{bytes: …}`: base64-encoded bytes.
    Bytes(String),
}

#[derive(Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttpBody {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    string: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    bytes: Option<String>,
}

impl TryFrom<RawHttpBody> for HttpBody {
    type Error = &'static str;

    fn try_from(raw: RawHttpBody) -> Result<Self, Self::Error> {
        match (raw.string, raw.bytes) {
            (None, None) => Ok(HttpBody::Empty),
            (Some(s), None) => Ok(HttpBody::String(s)),
            (None, Some(b)) => Ok(HttpBody::Bytes(b)),
            _ => Err("only one of string or bytes may be set"),
        }
    }
}

impl From<HttpBody> for RawHttpBody {
    fn from(body: HttpBody) -> Self {
        match body {
            HttpBody::Empty => RawHttpBody::default(),
            HttpBody::String(s) => RawHttpBody {
                string: Some(s),
                bytes: None,
            },
            HttpBody::Bytes(b) => RawHttpBody {
                string: None,
                bytes: Some(b),
            },
        }
    }
}

/// `HTTPRewrite`: rewrite the request before forwarding.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRewrite {
    /// Replace the matched path (or prefix) with this value.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uri: String,
    /// Replace the authority with this value.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub authority: String,
    /// Rewrite the path with a regex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri_regex_rewrite: Option<RegexRewrite>,
}

/// `RegexRewrite`: a regex and its replacement.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RegexRewrite {
    /// RE2 regex to match.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub r#match: String,
    /// Replacement, may use numbered capture groups (`\1`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub rewrite: String,
}

/// `HTTPRetry`: retry policy.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRetry {
    /// Number of retries; 0 disables retries.
    #[serde(default, skip_serializing_if = "is_default")]
    pub attempts: i32,
    /// Timeout per attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub per_try_timeout: Option<Duration>,
    /// Comma-separated retry conditions (Envoy's `x-envoy-retry-on`/`-grpc-on`, status codes).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub retry_on: String,
    /// Whether retries may go to other localities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_remote_localities: Option<bool>,
    /// Whether retries avoid hosts already tried.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_ignore_previous_hosts: Option<bool>,
    /// Base interval between retries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<Duration>,
}

string_enum! {
    /// `CorsPolicy.UnmatchedPreflights`: what happens to preflights from unknown origins.
    pub enum UnmatchedPreflights {
        /// Default: forward.
        Unspecified = "UNSPECIFIED",
        /// Forward to the upstream.
        Forward = "FORWARD",
        /// Answer without CORS headers.
        Ignore = "IGNORE",
    }
}

/// `CorsPolicy`: cross-origin resource sharing.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CorsPolicy {
    /// Deprecated exact origins; use `allowOrigins`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_origin: Vec<String>,
    /// Origins allowed to make requests.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_origins: Vec<StringMatch>,
    /// Allowed methods (`Access-Control-Allow-Methods`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_methods: Vec<String>,
    /// Allowed request headers (`Access-Control-Allow-Headers`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow_headers: Vec<String>,
    /// Headers browsers may read (`Access-Control-Expose-Headers`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub expose_headers: Vec<String>,
    /// How long preflight results may be cached.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_age: Option<Duration>,
    /// Whether credentials may be sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_credentials: Option<bool>,
    /// Handling of preflights whose origin is not allowed.
    #[serde(default, skip_serializing_if = "is_default")]
    pub unmatched_preflights: UnmatchedPreflights,
}

/// `HTTPFaultInjection`: faults injected before forwarding.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpFaultInjection {
    /// Delay requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delay: Option<HttpFaultInjectionDelay>,
    /// Abort requests with an error.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub abort: Option<HttpFaultInjectionAbort>,
}

/// `HTTPFaultInjection.Delay`: one of `fixedDelay` and `exponentialDelay`, and a share.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpFaultInjectionDelay {
    /// Deprecated integer percentage; use `percentage`.
    #[serde(default, skip_serializing_if = "is_default")]
    pub percent: i32,
    /// Share of requests delayed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentage: Option<Percent>,
    /// A fixed delay.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fixed_delay: Option<Duration>,
    /// An exponential delay (not supported by Istio yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exponential_delay: Option<Duration>,
}

/// `HTTPFaultInjection.Abort`: one of `httpStatus`, `grpcStatus` and `http2Error`, and a share.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpFaultInjectionAbort {
    /// HTTP status to answer with.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_status: Option<i32>,
    /// gRPC status name to answer with, e.g. `UNAVAILABLE`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc_status: Option<String>,
    /// HTTP/2 error (not supported by Istio yet).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http2_error: Option<String>,
    /// Share of requests aborted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentage: Option<Percent>,
}

/// `HTTPMirrorPolicy`: one mirror destination and the share of traffic it gets.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpMirrorPolicy {
    /// Where to mirror to (required).
    #[serde(default, skip_serializing_if = "is_default")]
    pub destination: Destination,
    /// Share of traffic mirrored (100 when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentage: Option<Percent>,
}

/// Envoy's `x-envoy-retry-on` and `x-envoy-retry-grpc-on` conditions Istio accepts.
const RETRY_ON_POLICIES: &[&str] = &[
    "5xx",
    "gateway-error",
    "reset",
    "reset-before-request",
    "connect-failure",
    "retriable-4xx",
    "refused-stream",
    "retriable-status-codes",
    "retriable-headers",
    "envoy-ratelimited",
    "http3-post-connect-failure",
    "cancelled",
    "deadline-exceeded",
    "internal",
    "resource-exhausted",
    "unavailable",
];

/// The status codes Go's `net/http` knows (`http.StatusText` is not empty).
const KNOWN_HTTP_STATUS: &[i32] = &[
    100, 101, 102, 103, 200, 201, 202, 203, 204, 205, 206, 207, 208, 226, 300, 301, 302, 303, 304,
    305, 307, 308, 400, 401, 402, 403, 404, 405, 406, 407, 408, 409, 410, 411, 412, 413, 414, 415,
    416, 417, 418, 421, 422, 423, 424, 425, 426, 428, 429, 431, 451, 500, 501, 502, 503, 504, 505,
    506, 507, 508, 510, 511,
];

/// gRPC status names (https://github.com/grpc/grpc/blob/master/doc/statuscodes.md).
const GRPC_STATUS: &[&str] = &[
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// Methods CORS `allowMethods` accepts.
const CORS_METHODS: &[&str] = &[
    "GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE", "*",
];

const KB: usize = 1024;
const MB: usize = 1024 * KB;

impl CorsPolicy {
    pub(super) fn check(&self, v: &mut Validator<'_>) {
        v.each("allowOrigins", &self.allow_origins, |v, origin| {
            if origin.value().is_none_or(str::is_empty) {
                v.error(format!(
                    "'{}' is not a valid match type for CORS allow origins",
                    origin.value().unwrap_or("")
                ));
            } else if let Some(re) = origin.regex() {
                check_regex_len(v, re, "corsPolicy.allowOrigins");
            }
        });
        v.each("allowMethods", &self.allow_methods, |v, method| {
            if !CORS_METHODS.contains(&method.as_str()) {
                v.error(format!("{method:?} is not a supported HTTP method"));
            }
        });
        v.each("allowHeaders", &self.allow_headers, |v, name| {
            check_cors_header(v, name)
        });
        v.each("exposeHeaders", &self.expose_headers, |v, name| {
            check_cors_header(v, name)
        });
        if let Some(max_age) = self.max_age {
            v.field("maxAge", |v| {
                check_proto_duration(v, max_age);
                if max_age.get().subsec_nanos() > 0 {
                    v.error("max_age duration is accurate only to seconds precision");
                }
            });
        }
        if !self.allow_origin.is_empty() {
            v.warn_at(
                "allowOrigin",
                r#"using deprecated setting "allowOrigin", use "allowOrigins" instead"#,
            );
        }
    }
}

fn check_cors_header(v: &mut Validator<'_>, name: &str) {
    if name.is_empty() {
        v.error("header name cannot be empty");
    } else if name != "*" && !is_header_token(name) {
        v.error(format!("header name {name} is not a valid header name"));
    }
}

impl HttpFaultInjection {
    pub(super) fn check(&self, v: &mut Validator<'_>) {
        if self.abort.is_none() && self.delay.is_none() {
            v.error("HTTP fault injection must have an abort and/or a delay");
        }
        if let Some(abort) = &self.abort {
            v.field("abort", |v| abort.check(v));
        }
        if let Some(delay) = &self.delay {
            v.field("delay", |v| delay.check(v));
        }
    }
}

impl HttpFaultInjectionAbort {
    fn check(&self, v: &mut Validator<'_>) {
        if let Some(p) = self.percentage {
            v.field("percentage", |v| check_percentage(v, p));
        }
        let set = [
            self.http_status.is_some(),
            self.grpc_status.is_some(),
            self.http2_error.is_some(),
        ];
        match set.iter().filter(|s| **s).count() {
            0 => v.warn("abort configured, but error type not set"),
            1 => {}
            _ => v.error("only one of httpStatus, grpcStatus or http2Error may be set"),
        }
        if let Some(status) = &self.grpc_status
            && !GRPC_STATUS.contains(&status.as_str())
        {
            v.error_at(
                "grpcStatus",
                format!("gRPC status {status:?} is not supported. See https://github.com/grpc/grpc/blob/master/doc/statuscodes.md for a list of supported codes, for example 'NOT_FOUND'"),
            );
        }
        if self.http2_error.is_some() {
            v.error_at(
                "http2Error",
                "HTTP/2 abort fault injection not supported yet",
            );
        }
        if let Some(status) = self.http_status {
            v.field("httpStatus", |v| check_http_status(v, i64::from(status)));
        }
    }
}

/// Istio's `validateHTTPStatus` (which lets 600 through, as Istio does).
fn check_http_status(v: &mut Validator<'_>, status: i64) {
    if !(200..=600).contains(&status) {
        v.error(format!("HTTP status {status} is not in range 200-599"));
    }
}

impl HttpFaultInjectionDelay {
    fn check(&self, v: &mut Validator<'_>) {
        if let Some(p) = self.percentage {
            v.field("percentage", |v| check_percentage(v, p));
        }
        if self.fixed_delay.is_some() && self.exponential_delay.is_some() {
            v.error("only one of fixedDelay or exponentialDelay may be set");
        }
        if let Some(d) = self.fixed_delay {
            v.field("fixedDelay", |v| check_proto_duration(v, d));
        }
        if let Some(d) = self.exponential_delay {
            v.field("exponentialDelay", |v| {
                check_proto_duration(v, d);
                v.error("exponentialDelay not supported yet");
            });
        }
        if self.percent != 0 {
            v.warn_at(
                "percent",
                r#"using deprecated setting "percent", use "percentage" instead"#,
            );
        }
    }
}

impl HttpRedirect {
    pub(super) fn check(&self, v: &mut Validator<'_>) {
        if self.port.is_some() && self.derive_port.is_some() {
            v.error("only one of port or derivePort may be set");
        }
        let has_port = self.port.is_some() || self.derive_port.is_some();
        if self.uri.is_empty() && self.authority.is_empty() && !has_port && self.scheme.is_empty() {
            v.error("redirect must specify URI, authority, scheme, or port");
        }
        if self.redirect_code != 0 && !(300..=399).contains(&self.redirect_code) {
            v.error_at(
                "redirectCode",
                format!(
                    "{} is not a valid redirect code, must be 3xx",
                    self.redirect_code
                ),
            );
        }
        if !self.scheme.is_empty() && self.scheme != "http" && self.scheme != "https" {
            v.error_at(
                "scheme",
                r#"invalid redirect scheme, must be "http" or "https""#,
            );
        }
        if let Some(port) = self.port.filter(|p| *p > 0) {
            v.field("port", |v| check_port(v, port));
        }
    }
}

impl HttpDirectResponse {
    pub(super) fn check(&self, v: &mut Validator<'_>) {
        if let Some(body) = &self.body {
            let size = match body {
                HttpBody::Empty => Some(0),
                HttpBody::String(s) => Some(s.len()),
                HttpBody::Bytes(b) => base64_decoded_len(b),
            };
            v.field("body", |v| match size {
                None => v.error_at("bytes", "Invalid value: illegal base64 data"),
                Some(size) if size > MB => {
                    v.error("large direct_responses may impact control plane performance, must be less than 1MB")
                }
                Some(size) if size > 100 * KB => v.warn("large direct_responses may impact control plane performance"),
                Some(_) => {}
            });
        }
        v.field("status", |v| check_http_status(v, i64::from(self.status)));
    }
}

/// The decoded length of standard (padded) base64 text, or `None` when it is not base64
/// (the CRD's `format: byte`).
fn base64_decoded_len(text: &str) -> Option<usize> {
    let b = text.as_bytes();
    if !b.len().is_multiple_of(4) {
        return None;
    }
    let padding = b.iter().rev().take_while(|c| **c == b'=').count();
    let body = &b[..b.len() - padding];
    let alphabet = |c: &u8| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/';
    (padding <= 2 && body.iter().all(alphabet)).then(|| b.len() / 4 * 3 - padding)
}

impl HttpRetry {
    pub(super) fn check(&self, v: &mut Validator<'_>) {
        if self.attempts < 0 {
            v.error_at("attempts", "attempts cannot be negative");
        }
        if self.attempts == 0
            && (self.per_try_timeout.is_some()
                || !self.retry_on.is_empty()
                || self.retry_remote_localities.is_some())
        {
            v.error("http retry policy configured when attempts are set to 0 (disabled)");
        }
        if let Some(d) = self.per_try_timeout {
            v.field("perTryTimeout", |v| check_proto_duration(v, d));
        }
        if !self.retry_on.is_empty() {
            v.field("retryOn", |v| {
                for policy in self.retry_on.split(',') {
                    let status = policy
                        .parse::<i32>()
                        .ok()
                        .filter(|s| KNOWN_HTTP_STATUS.contains(s));
                    if status.is_none() && !RETRY_ON_POLICIES.contains(&policy) {
                        v.error(format!("{policy:?} is not a valid retryOn policy"));
                    }
                }
            });
        }
        if let Some(d) = self.backoff {
            v.field("backoff", |v| check_proto_duration(v, d));
        }
    }
}

impl HttpRewrite {
    pub(super) fn check(&self, v: &mut Validator<'_>) {
        if !self.uri.is_empty() && self.uri_regex_rewrite.is_some() {
            v.error("rewrite may only contain one of URI or UriRegexRewrite");
            return;
        }
        if self.uri.is_empty() && self.uri_regex_rewrite.is_none() && self.authority.is_empty() {
            v.error("rewrite must specify at least one of URI, UriRegexRewrite, or authority. Only one of URI or UriRegexRewrite may be specified");
            return;
        }
        if let Some(re) = &self.uri_regex_rewrite {
            v.field("uriRegexRewrite", |v| {
                if re.r#match.is_empty() || re.rewrite.is_empty() {
                    v.error("UriRegexRewrite has errors: UriRegexRewrite requires both Rewrite and Match fields to be specified");
                } else {
                    v.field("match", |v| check_regex_len(v, &re.r#match, "HTTPRewrite.UriRegexRewrite.Match"));
                }
            });
        }
    }
}
