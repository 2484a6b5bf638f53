//! `VirtualService.http`: HTTP routes, their matches and weighted destinations, with
//! Istio's `validateHTTPRoute` rules (the actions a route carries are in `actions`, header
//! manipulation in `headers`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::headers::is_authority_header;
use super::{Destination, check_destination, check_gateway_names, check_string_match};
use crate::types::{Duration, Labels, Percent, StringMatch, is_default};
use crate::validate::{
    Validator, check_labels, check_port, check_proto_duration, is_dns1123_label, is_header_token,
};

pub use super::actions::*;
pub use super::headers::{HeaderOperations, Headers};

/// `HTTPRoute`: match conditions and the actions for HTTP/1.1, HTTP/2 and gRPC traffic.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRoute {
    /// Name of the route, for debugging; concatenated with match names in access logs.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Conditions, any of which activates the rule (OR); all fields of one match are ANDed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub r#match: Vec<HttpMatchRequest>,
    /// Weighted destinations to forward to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub route: Vec<HttpRouteDestination>,
    /// Send a 301 redirect instead of forwarding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub redirect: Option<HttpRedirect>,
    /// Answer directly with a fixed status and body instead of forwarding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub direct_response: Option<HttpDirectResponse>,
    /// Hand this route over to another (delegate) VirtualService.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub delegate: Option<Delegate>,
    /// Rewrite the URI or authority before forwarding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rewrite: Option<HttpRewrite>,
    /// Timeout for the whole request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// Retry policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retries: Option<HttpRetry>,
    /// Fault injection (delays and aborts).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fault: Option<HttpFaultInjection>,
    /// Mirror traffic to this destination too (see also `mirrors`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror: Option<Destination>,
    /// Mirror traffic to several destinations, each with its own percentage.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub mirrors: Vec<HttpMirrorPolicy>,
    /// Deprecated integer percentage of traffic mirrored by `mirror`; use `mirrorPercentage`.
    #[serde(
        default,
        alias = "mirror_percent",
        skip_serializing_if = "Option::is_none"
    )]
    pub mirror_percent: Option<u32>,
    /// Percentage of traffic mirrored by `mirror` (100 when unset).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mirror_percentage: Option<Percent>,
    /// Cross-origin resource sharing policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cors_policy: Option<CorsPolicy>,
    /// Header manipulation for requests and responses.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<Headers>,
}

/// `HTTPMatchRequest`: conditions on a request, all of which must hold.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpMatchRequest {
    /// Name of the match, for debugging.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// URI (path) matcher.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<StringMatch>,
    /// URI scheme matcher.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scheme: Option<StringMatch>,
    /// HTTP method matcher.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub method: Option<StringMatch>,
    /// Authority (host) matcher.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub authority: Option<StringMatch>,
    /// Header matchers, keyed by lowercase header name (or `@request.auth.claims…`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, StringMatch>,
    /// Port the host is addressed on.
    #[serde(default, skip_serializing_if = "is_default")]
    pub port: u32,
    /// Labels of the source (client) workloads the rule applies to.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub source_labels: Labels,
    /// Gateways the match applies to (overrides the VirtualService's `gateways`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateways: Vec<String>,
    /// Query parameter matchers (`exact` and `regex` only).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub query_params: BTreeMap<String, StringMatch>,
    /// Match the URI case-insensitively.
    #[serde(default, skip_serializing_if = "is_default")]
    pub ignore_uri_case: bool,
    /// Headers that must NOT match.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub without_headers: BTreeMap<String, StringMatch>,
    /// Namespace of the source workloads the rule applies to.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source_namespace: String,
    /// Prefix for the route's statistics.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub stat_prefix: String,
}

/// `HTTPRouteDestination`: a destination, its weight and header manipulation.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpRouteDestination {
    /// Where to send the request (required).
    #[serde(default, skip_serializing_if = "is_default")]
    pub destination: Destination,
    /// Relative share of traffic; weights of one route should add up to 100.
    #[serde(default, skip_serializing_if = "is_default")]
    pub weight: i32,
    /// Header manipulation when this destination is chosen.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<Headers>,
}

/// `Delegate`: the VirtualService an HTTP route is delegated to.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Delegate {
    /// Name of the delegate VirtualService.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Its namespace; the root's namespace when empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
}

/// HTTP/2 pseudo headers, valid in matches.
const PSEUDO_HEADERS: &[&str] = &[":method", ":scheme", ":authority", ":path", ":status"];

/// What an HTTP route is, for the delegation rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RouteKind {
    /// A route of an ordinary VirtualService.
    Independent,
    /// A route of a root VirtualService that delegates.
    Root,
    /// A route of a delegate VirtualService (one without hosts).
    Delegate,
}

impl HttpRoute {
    /// Checks the route as Istio's `validateHTTPRoute` does; `delegate` is true inside a
    /// delegate VirtualService (one without hosts).
    pub(super) fn check(&self, v: &mut Validator<'_>, delegate: bool) {
        let kind = if delegate {
            RouteKind::Delegate
        } else if self.delegate.is_some() {
            RouteKind::Root
        } else {
            RouteKind::Independent
        };
        self.check_conflicts(v, kind);
        v.each("match", &self.r#match, |v, m| m.check(v));
        if let Some(headers) = &self.headers {
            v.field("headers", |v| headers.check(v));
        }
        if let Some(cors) = &self.cors_policy {
            v.field("corsPolicy", |v| cors.check(v));
        }
        if let Some(fault) = &self.fault {
            v.field("fault", |v| fault.check(v));
        }
        if let Some(percent) = self.mirror_percent {
            v.field("mirrorPercent", |v| {
                if percent > 100 {
                    v.error(format!(
                        "mirror_percent must have a max value of 100 (it has {percent})"
                    ));
                }
                v.warn(
                    r#"using deprecated setting "mirrorPercent", use "mirrorPercentage" instead"#,
                );
            });
        }
        if let Some(p) = self.mirror_percentage {
            v.field("mirrorPercentage", |v| {
                check_mirror_percentage(v, p, "mirror_percentage")
            });
        }
        if let Some(mirror) = &self.mirror {
            v.field("mirror", |v| check_destination(v, mirror));
        }
        v.each("mirrors", &self.mirrors, |v, m| {
            if m.destination == Destination::default() {
                v.error_at(
                    "destination",
                    "Required value: destination is required for mirrors",
                );
                return;
            }
            v.field("destination", |v| check_destination(v, &m.destination));
            if let Some(p) = m.percentage {
                v.field("percentage", |v| {
                    check_mirror_percentage(v, p, "mirror percentage")
                });
            }
        });
        if let Some(redirect) = &self.redirect {
            v.field("redirect", |v| redirect.check(v));
        }
        if let Some(direct) = &self.direct_response {
            v.field("directResponse", |v| direct.check(v));
        }
        if let Some(retries) = &self.retries {
            v.field("retries", |v| retries.check(v));
        }
        if let Some(rewrite) = &self.rewrite {
            v.field("rewrite", |v| rewrite.check(v));
        }
        self.check_authority_rewrite(v);
        check_http_route_destinations(v, &self.route);
        if let Some(timeout) = self.timeout {
            v.field("timeout", |v| check_proto_duration(v, timeout));
        }
    }

    fn check_conflicts(&self, v: &mut Validator<'_>, kind: RouteKind) {
        if kind == RouteKind::Root {
            if self.redirect.is_some() {
                v.error_at(
                    "redirect",
                    format!("root HTTP route {} must not specify redirect", self.name),
                );
            }
            if !self.route.is_empty() {
                v.error_at(
                    "route",
                    format!("root HTTP route {} must not specify route", self.name),
                );
            }
            return;
        }
        if kind == RouteKind::Delegate && self.delegate.is_some() {
            v.error_at("delegate", "delegate HTTP route cannot contain delegate");
        }
        if self.redirect.is_some() {
            if !self.route.is_empty() {
                v.error("HTTP route cannot contain both route and redirect");
            }
            if self.fault.is_some() {
                v.error("HTTP route cannot contain both fault and redirect");
            }
            if self.rewrite.is_some() {
                v.error("HTTP route rule cannot contain both rewrite and redirect");
            }
            if self.direct_response.is_some() {
                v.error("HTTP route rule cannot contain both direct_response and redirect");
            }
        } else if self.direct_response.is_some() {
            if !self.route.is_empty() {
                v.error("HTTP route cannot contain both route and direct_response");
            }
            if self.fault.is_some() {
                v.error("HTTP route cannot contain both fault and direct_response");
            }
            if self.rewrite.is_some() {
                v.error("HTTP route rule cannot contain both rewrite and direct_response");
            }
        } else if self.route.is_empty() {
            v.error("HTTP route, redirect or direct_response is required");
        }
        if self.mirror.is_some() && !self.mirrors.is_empty() {
            v.error("HTTP route cannot contain both mirror and mirrors");
        }
    }

    /// The authority may be rewritten in one place only: `rewrite.authority` or one
    /// `headers.request` `set`/`add` of `:authority`/`host`.
    fn check_authority_rewrite(&self, v: &mut Validator<'_>) {
        let mut current = self
            .rewrite
            .as_ref()
            .map(|r| r.authority.as_str())
            .unwrap_or("");
        let Some(request) = self.headers.as_ref().and_then(|h| h.request.as_ref()) else {
            return;
        };
        for (name, value) in request.set.iter().chain(&request.add) {
            if !is_authority_header(name) {
                continue;
            }
            if !current.is_empty() {
                v.error_at(
                    "headers.request",
                    format!("authority header cannot be set multiple times: have {current:?}, attempting to set {value:?}"),
                );
                return;
            }
            current = value;
        }
    }
}

fn check_mirror_percentage(v: &mut Validator<'_>, p: Percent, what: &str) {
    if p.value > 100.0 {
        v.error(format!(
            "{what} must have a max value of 100 (it has {:.6})",
            p.value
        ));
    }
    if p.value < 0.0 {
        v.error(format!(
            "{what} must have a min value of 0 (it has {:.6})",
            p.value
        ));
    }
}

/// Checks weighted HTTP destinations: each destination, its headers, non-negative weights
/// that do not all add up to 0.
fn check_http_route_destinations(v: &mut Validator<'_>, route: &[HttpRouteDestination]) {
    v.each("route", route, |v, d| {
        if let Some(headers) = &d.headers {
            v.field("headers", |v| headers.check(v));
        }
        super::check_weighted(v, &d.destination, d.weight);
    });
    let total: i64 = route.iter().map(|d| i64::from(d.weight)).sum();
    if route.len() > 1 && total == 0 {
        v.error_at("route", "total destination weight = 0");
    }
}

impl HttpMatchRequest {
    fn check(&self, v: &mut Validator<'_>) {
        v.field("headers", |v| {
            for (name, m) in &self.headers {
                v.key(name, |v| {
                    check_match_header_name(v, name);
                    check_string_match(v, m, "headers", false);
                });
            }
        });
        v.field("withoutHeaders", |v| {
            for (name, m) in &self.without_headers {
                v.key(name, |v| {
                    check_match_header_name(v, name);
                    // `*` is not a regex: it stands for "header present".
                    if m.regex() != Some("*") {
                        check_string_match(v, m, "withoutHeaders", false);
                    }
                });
            }
        });
        // An empty URI prefix is allowed (Envoy accepts it); other matchers' are not.
        if let Some(uri) = &self.uri {
            v.field("uri", |v| check_string_match(v, uri, "uri", true));
        }
        for (field, m) in [
            ("scheme", &self.scheme),
            ("method", &self.method),
            ("authority", &self.authority),
        ] {
            if let Some(m) = m {
                v.field(field, |v| check_string_match(v, m, field, false));
            }
        }
        v.field("queryParams", |v| {
            for (name, m) in &self.query_params {
                v.key(name, |v| check_string_match(v, m, "queryParams", false));
            }
        });
        if self.port != 0 {
            v.field("port", |v| check_port(v, self.port));
        }
        v.field("sourceLabels", |v| check_labels(v, &self.source_labels));
        check_gateway_names(v, &self.gateways);
        if !self.source_namespace.is_empty() && !is_dns1123_label(&self.source_namespace) {
            v.error_at(
                "sourceNamespace",
                format!("sourceNamespace match {} is invalid", self.source_namespace),
            );
        }
    }
}

/// True for a header key that routes on a JWT claim (`@request.auth.claims.x` or `…[x]`).
pub(super) fn is_jwt_claim_route(name: &str) -> bool {
    const PREFIX: &str = "@request.auth.claims";
    let Some(rest) = name
        .get(..PREFIX.len())
        .filter(|p| p.eq_ignore_ascii_case(PREFIX))
        .map(|_| &name[PREFIX.len()..])
    else {
        return false;
    };
    (rest.starts_with('.') && rest.len() > 1)
        || (rest.starts_with('[') && rest.ends_with(']') && rest.len() > 2)
}

/// A header name in a match: a JWT claim, an HTTP/2 pseudo header or an HTTP token.
/// Istio's reference requires lowercase keys ("The header keys must be lowercase"), and
/// so does Mizzen: an uppercase name never matches what the proxy sees.
fn check_match_header_name(v: &mut Validator<'_>, name: &str) {
    if name.is_empty() {
        v.error("header name cannot be empty");
    } else if is_jwt_claim_route(name) || PSEUDO_HEADERS.contains(&name) {
    } else if !is_header_token(name) {
        v.error(format!("header name {name} is not a valid header name"));
    } else if name.bytes().any(|b| b.is_ascii_uppercase()) {
        v.error(format!("header name {name:?} must be lowercase"));
    }
}
