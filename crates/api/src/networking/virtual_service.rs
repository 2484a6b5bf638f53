//! `networking.istio.io` VirtualService: routing rules for HTTP, TLS and TCP traffic, with
//! validation equivalent to Istio's webhook (`ValidateVirtualService`) and the CRD schema.

mod actions;
mod headers;
mod http;

pub use http::*;

use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::types::{Labels, Percent, StringMatch, is_default};
use crate::validate::{
    Finding, Validate, Validator, check_export_to, check_ip_or_cidr, check_labels, check_port,
    check_regex, fqdn_error, is_istio_label, wildcard_domain_error,
};

/// The reserved gateway name standing for every sidecar in the mesh.
pub const MESH_GATEWAY: &str = "mesh";

/// `VirtualService`: how requests to a set of hosts are routed.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VirtualService {
    /// Destination hosts the rules apply to (names, wildcards or IPs); empty for a delegate.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Gateways (`namespace/name`) and/or `mesh` the rules apply to; `mesh` when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateways: Vec<String>,
    /// HTTP routes, evaluated in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http: Vec<HttpRoute>,
    /// Routes for unterminated TLS and HTTPS, by SNI.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tls: Vec<TlsRoute>,
    /// Routes for opaque TCP traffic.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tcp: Vec<TcpRoute>,
    /// Namespaces the VirtualService is visible to (`.`, `*` or names).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub export_to: Vec<String>,
}

/// `Destination`: a service (and optionally a subset and port) to send traffic to.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Destination {
    /// Service name from the registry (short names resolve in the rule's namespace).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub host: String,
    /// Subset defined in a DestinationRule for the host.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subset: String,
    /// Port on the host; needed when the service exposes several.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<PortSelector>,
}

/// `PortSelector`: a port of a service, by number.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortSelector {
    /// The port number.
    #[serde(default, skip_serializing_if = "is_default")]
    pub number: u32,
}

/// `RouteDestination`: a weighted destination of a TCP or TLS route.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RouteDestination {
    /// Where to forward the connection (required).
    #[serde(default, skip_serializing_if = "is_default")]
    pub destination: Destination,
    /// Relative share of connections.
    #[serde(default, skip_serializing_if = "is_default")]
    pub weight: i32,
}

/// `TCPRoute`: match conditions and destinations for TCP traffic.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpRoute {
    /// Conditions, any of which activates the rule.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub r#match: Vec<L4MatchAttributes>,
    /// Weighted destinations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub route: Vec<RouteDestination>,
}

/// `TLSRoute`: match conditions (by SNI) and destinations for unterminated TLS traffic.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsRoute {
    /// Conditions, any of which activates the rule (required).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub r#match: Vec<TlsMatchAttributes>,
    /// Weighted destinations.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub route: Vec<RouteDestination>,
}

/// `L4MatchAttributes`: conditions on a TCP connection.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct L4MatchAttributes {
    /// Destination IPs or subnets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destination_subnets: Vec<String>,
    /// Port the host is addressed on.
    #[serde(default, skip_serializing_if = "is_default")]
    pub port: u32,
    /// Source IP or subnet.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source_subnet: String,
    /// Labels of the source workloads.
    #[serde(default, skip_serializing_if = "Labels::is_empty")]
    pub source_labels: Labels,
    /// Gateways the match applies to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateways: Vec<String>,
    /// Namespace of the source workloads.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source_namespace: String,
}

/// `TLSMatchAttributes`: conditions on a TLS connection.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsMatchAttributes {
    /// SNI values to match (required); each must be covered by the VirtualService's hosts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sni_hosts: Vec<String>,
    /// Destination IPs or subnets.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub destination_subnets: Vec<String>,
    /// Port the host is addressed on.
    #[serde(default, skip_serializing_if = "is_default")]
    pub port: u32,
    /// Labels of the source workloads.
    #[serde(default, skip_serializing_if = "Labels::is_empty")]
    pub source_labels: Labels,
    /// Gateways the match applies to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub gateways: Vec<String>,
    /// Namespace of the source workloads.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub source_namespace: String,
}

impl VirtualService {
    /// True when the rules apply to gateways only: `gateways` does not name `mesh`
    /// (Istio's `isGateway`, which is also true for an empty list).
    fn is_gateway(&self) -> bool {
        !self.gateways.iter().any(|g| g == MESH_GATEWAY)
    }

    /// True when some TLS match names SNI hosts.
    fn has_sni_hosts(&self) -> bool {
        self.tls
            .iter()
            .flat_map(|t| &t.r#match)
            .any(|m| !m.sni_hosts.is_empty())
    }

    fn check_hosts(&self, v: &mut Validator<'_>, applies_to_mesh: bool, applies_to_gateway: bool) {
        let sni = self.has_sni_hosts();
        let mut all_valid = true;
        v.each("hosts", &self.hosts, |v, host| {
            let err = if applies_to_gateway {
                gateway_bound_domain_error(sni, host)
            } else {
                wildcard_domain_error(host)
            };
            match err {
                Some(e) if host.parse::<IpAddr>().is_err() => {
                    v.error(e);
                    all_valid = false;
                }
                Some(_) => {}
                None if applies_to_mesh && host == "*" => {
                    v.error("wildcard host * is not allowed for virtual services bound to the mesh gateway");
                    all_valid = false;
                }
                None => {}
            }
        });
        if !all_valid {
            return;
        }
        for (i, a) in self.hosts.iter().enumerate() {
            for b in &self.hosts[i + 1..] {
                if host_matches(a, b) {
                    v.error_at(
                        "hosts",
                        format!("duplicate hosts in virtual service: {a} & {b}"),
                    );
                }
            }
        }
    }

    /// Routing on JWT claims works only on gateways.
    fn check_jwt_claim_routes(&self, v: &mut Validator<'_>) {
        let gateways = format!("[{}]", self.gateways.join(" "));
        v.each("http", &self.http, |v, route| {
            v.each("match", &route.r#match, |v, m| {
                for (field, headers) in [("headers", &m.headers), ("withoutHeaders", &m.without_headers)] {
                    for key in headers.keys().filter(|k| is_jwt_claim_route(k)) {
                        v.field(field, |v| {
                            v.key(key, |v| {
                                v.error(format!(
                                    "JWT claim based routing (key: {key}) is only supported for gateway, found no gateways: {gateways}"
                                ))
                            })
                        });
                    }
                }
            });
        });
    }

    /// `exportTo`: the shared checks, plus `~` (only ServiceEntries may hide themselves) and
    /// `.` given next to the object's own namespace.
    fn check_export_to(&self, v: &mut Validator<'_>) {
        check_export_to(v, &self.export_to);
        let namespace = v.namespace();
        v.field("exportTo", |v| {
            if self.export_to.iter().any(|e| e == "~") {
                v.error("exportTo ~ (none) is not allowed for Istio configuration objects");
            }
            if self.export_to.iter().any(|e| e == ".")
                && self.export_to.iter().any(|e| e == namespace)
            {
                v.error(format!(
                    "duplicate entries in exportTo: . and current namespace {namespace}"
                ));
            }
        });
    }
}

impl Validate for VirtualService {
    fn validate(&self, v: &mut Validator<'_>) {
        let delegate = self.hosts.is_empty();
        if delegate {
            if !self.gateways.is_empty() {
                v.error_at(
                    "gateways",
                    "delegate virtual service must have no gateways specified",
                );
            }
            if !self.tls.is_empty() {
                v.error_at(
                    "tls",
                    "delegate virtual service must have no tls route specified",
                );
            }
            if !self.tcp.is_empty() {
                v.error_at(
                    "tcp",
                    "delegate virtual service must have no tcp route specified",
                );
            }
        }
        let (applies_to_mesh, applies_to_gateway) = if self.gateways.is_empty() {
            (true, false)
        } else {
            check_gateway_names(v, &self.gateways);
            (!self.is_gateway(), self.is_gateway())
        };
        if !applies_to_gateway {
            self.check_jwt_claim_routes(v);
        }
        self.check_hosts(v, applies_to_mesh, applies_to_gateway);
        if self.http.is_empty() && self.tcp.is_empty() && self.tls.is_empty() {
            v.error("http, tcp or tls must be provided in virtual service");
        }
        v.each("http", &self.http, |v, route| route.check(v, delegate));
        v.each("tls", &self.tls, |v, route| route.check(v, self));
        v.each("tcp", &self.tcp, |v, route| route.check(v));
        self.check_export_to(v);
        analyze_unreachable(v, "http", &self.http);
        analyze_unreachable(v, "tls", &self.tls);
        analyze_unreachable(v, "tcp", &self.tcp);
        analyze_overlapping_prefixes(v, &self.http);
    }
}

impl TlsRoute {
    fn check(&self, v: &mut Validator<'_>, vs: &VirtualService) {
        if self.r#match.is_empty() {
            v.error_at("match", "TLS route must have at least one match condition");
        }
        v.each("match", &self.r#match, |v, m| m.check(v, vs));
        if self.route.is_empty() {
            v.error_at("route", "TLS route is required");
        }
        check_route_destinations(v, &self.route);
    }
}

impl TlsMatchAttributes {
    fn check(&self, v: &mut Validator<'_>, vs: &VirtualService) {
        if self.sni_hosts.is_empty() {
            v.error_at("sniHosts", "TLS match must have at least one SNI host");
        }
        v.each("sniHosts", &self.sni_hosts, |v, sni| {
            check_sni_host(v, sni, vs)
        });
        v.each("destinationSubnets", &self.destination_subnets, |v, s| {
            check_ip_or_cidr(v, s)
        });
        if self.port != 0 {
            v.field("port", |v| check_port(v, self.port));
        }
        v.field("sourceLabels", |v| check_labels(v, &self.source_labels));
        check_gateway_names(v, &self.gateways);
    }
}

/// An SNI host must be a (possibly wildcarded) domain covered by one of the hosts.
fn check_sni_host(v: &mut Validator<'_>, sni: &str, vs: &VirtualService) {
    let err = if vs.is_gateway() {
        gateway_bound_domain_error(true, sni)
    } else {
        wildcard_domain_error(sni)
    };
    if let Some(e) = err {
        if sni.parse::<IpAddr>().is_ok() {
            v.warn(format!("using an IP address ({sni:?}) goes against SNI spec and most clients do not support this"));
        } else {
            v.error(e);
        }
        return;
    }
    if !vs.hosts.iter().any(|h| host_subset_of(sni, h)) {
        v.error(format!(
            "SNI host {sni:?} is not a compatible subset of any of the virtual service hosts: [{}]",
            vs.hosts.join(", ")
        ));
    }
}

impl TcpRoute {
    fn check(&self, v: &mut Validator<'_>) {
        v.each("match", &self.r#match, |v, m| {
            v.each("destinationSubnets", &m.destination_subnets, |v, s| {
                check_ip_or_cidr(v, s)
            });
            if m.port != 0 {
                v.field("port", |v| check_port(v, m.port));
            }
            v.field("sourceLabels", |v| check_labels(v, &m.source_labels));
            check_gateway_names(v, &m.gateways);
        });
        if self.route.is_empty() {
            v.error_at("route", "TCP route is required");
        }
        check_route_destinations(v, &self.route);
    }
}

fn check_route_destinations(v: &mut Validator<'_>, route: &[RouteDestination]) {
    v.each("route", route, |v, d| {
        check_weighted(v, &d.destination, d.weight)
    });
    let total: i64 = route.iter().map(|d| i64::from(d.weight)).sum();
    if route.len() > 1 && total == 0 {
        v.error_at("route", "total destination weight = 0");
    }
}

/// The checks of one weighted destination (HTTP, TCP or TLS).
fn check_weighted(v: &mut Validator<'_>, destination: &Destination, weight: i32) {
    if *destination == Destination::default() {
        v.required("destination");
    } else {
        v.field("destination", |v| check_destination(v, destination));
    }
    if weight < 0 {
        v.error_at("weight", format!("weight {weight} < 0"));
    }
}

/// Istio's `validateDestination`: a host (not `*`), a valid subset name, a valid port.
fn check_destination(v: &mut Validator<'_>, d: &Destination) {
    if d.host.is_empty() {
        v.required("host");
    } else if d.host == "*" {
        v.error_at("host", format!("invalid destination host {}", d.host));
    } else if let Some(e) = wildcard_domain_error(&d.host) {
        v.error_at("host", e);
    }
    if !d.subset.is_empty() && !is_istio_label(&d.subset) {
        v.error_at("subset", format!("subset name is invalid: {}", d.subset));
    }
    if let Some(port) = d.port {
        v.field("port.number", |v| check_port(v, port.number));
    }
}

/// Istio's `validateGatewayNames`: `namespace/name`, or a legacy (warned) FQDN, or `mesh`.
fn check_gateway_names(v: &mut Validator<'_>, names: &[String]) {
    v.each("gateways", names, |v, name| match name.split_once('/') {
        None => {
            let parts: Vec<&str> = name.split('.').collect();
            if parts.len() > 1 {
                v.warn(format!(
                    "using legacy gatewayName format {name:?}; prefer the <namespace>/<name> format: \"{}/{}\"",
                    parts[1], parts[0]
                ));
            }
            if let Some(e) = fqdn_error(name) {
                v.error(e);
            }
        }
        Some((namespace, gateway)) => {
            if namespace.is_empty() || gateway.is_empty() {
                v.error("config namespace and gateway name cannot be empty");
            }
            if !is_istio_label(namespace) {
                v.error(format!("invalid value for namespace: {namespace:?}"));
            }
            if !is_istio_label(gateway) {
                v.error(format!("invalid value for gateway name: {gateway:?}"));
            }
        }
    });
}

/// Istio's `validatePercentage`: 0, or within [0.0001, 100].
fn check_percentage(v: &mut Validator<'_>, p: Percent) {
    if p.value < 0.0 || p.value > 100.0 || (p.value > 0.0 && p.value < 0.0001) {
        v.error(format!(
            "percentage {} is neither 0.0, nor in range [0.0001, 100.0]",
            p.value
        ));
    }
}

/// A regex Envoy accepts: at most 1024 bytes (Envoy's program size limit) and valid RE2.
fn check_regex_len(v: &mut Validator<'_>, re: &str, place: &str) {
    if re.len() > 1024 {
        v.error(format!(
            "{place:?}: regex is too large, max length allowed is 1024"
        ));
    } else {
        check_regex(v, re);
    }
}

/// Istio's `validateStringMatch`: no empty prefix (unless `empty_prefix_ok`, as for the
/// URI) and no empty or invalid regex.
fn check_string_match(v: &mut Validator<'_>, m: &StringMatch, place: &str, empty_prefix_ok: bool) {
    match m {
        StringMatch::Prefix(p) if p.is_empty() && !empty_prefix_ok => {
            v.error(format!(
                "{place:?}: prefix string match should not be empty"
            ));
        }
        StringMatch::Regex(re) if re.is_empty() => {
            v.error(format!("{place:?}: regex string match should not be empty"));
        }
        StringMatch::Regex(re) => check_regex_len(v, re, place),
        _ => {}
    }
}

/// Istio's `ValidateWildcardDomainForVirtualServiceBoundToGateway`: for SNI hosts, also
/// accepts the names AUTO_PASSTHROUGH generates (`outbound_.<PORT>_._.<HOSTNAME>`).
fn gateway_bound_domain_error(sni: bool, domain: &str) -> Option<String> {
    const FORMAT: &str = "outbound_.<PORT>_._.<HOSTNAME>";
    if domain.is_empty() || domain.len() > 255 || !(sni && domain.starts_with("outbound_")) {
        return wildcard_domain_error(domain);
    }
    let parts: Vec<&str> = domain.split('_').collect();
    if parts.len() < 4 {
        return Some(format!(
            "domain name {domain} invalid, should follow '{FORMAT}' format"
        ));
    }
    let port = parts[1].trim_matches('.');
    if !port.bytes().any(|b| b.is_ascii_digit()) {
        return Some(format!(
            "domain name {domain:?} invalid (label {port:?} invalid). should follow {FORMAT} format"
        ));
    }
    let hostname = parts[3].trim_matches('.');
    if !hostname.bytes().any(|b| b.is_ascii_alphabetic()) {
        return Some(format!(
            "domain name {domain:?} invalid (label {hostname:?} invalid). should follow {FORMAT} format"
        ));
    }
    None
}

/// Istio's `host.Name.Matches`: the two (possibly wildcarded) names overlap.
fn host_matches(a: &str, b: &str) -> bool {
    match (a.strip_prefix('*'), b.strip_prefix('*')) {
        (Some(sa), Some(sb)) => {
            if a.len() < b.len() {
                sb.ends_with(sa)
            } else {
                sa.ends_with(sb)
            }
        }
        (Some(sa), None) => b.ends_with(sa),
        (None, Some(sb)) => a.ends_with(sb),
        (None, None) => a == b,
    }
}

/// Istio's `host.Name.SubsetOf`: every name `a` matches is matched by `b`.
fn host_subset_of(a: &str, b: &str) -> bool {
    match (a.strip_prefix('*'), b.strip_prefix('*')) {
        (Some(sa), Some(sb)) => a.len() >= b.len() && sa.ends_with(sb),
        (Some(_), None) => false,
        (None, Some(sb)) => a.ends_with(sb),
        (None, None) => a == b,
    }
}

/// A route whose matches can be compared for the unreachable-rule warnings.
trait Matches {
    /// The match type, compared with its name cleared.
    type Match: PartialEq + Clone;
    /// The route's name as Istio shows it (`"name"` or `#index`).
    fn label(&self, index: usize) -> String;
    /// The route's matches.
    fn matches(&self) -> &[Self::Match];
    /// A match as Istio shows it (`"name"` or `#index`), and the match without its name.
    fn match_label(m: &Self::Match, index: usize) -> (String, Self::Match);
}

impl Matches for HttpRoute {
    type Match = HttpMatchRequest;
    fn label(&self, index: usize) -> String {
        if self.name.is_empty() {
            format!("#{index}")
        } else {
            format!("{:?}", self.name)
        }
    }
    fn matches(&self) -> &[HttpMatchRequest] {
        &self.r#match
    }
    fn match_label(m: &HttpMatchRequest, index: usize) -> (String, HttpMatchRequest) {
        let label = if m.name.is_empty() {
            format!("#{index}")
        } else {
            format!("{:?}", m.name)
        };
        (
            label,
            HttpMatchRequest {
                name: String::new(),
                ..m.clone()
            },
        )
    }
}

impl Matches for TcpRoute {
    type Match = L4MatchAttributes;
    fn label(&self, index: usize) -> String {
        format!("#{index}")
    }
    fn matches(&self) -> &[L4MatchAttributes] {
        &self.r#match
    }
    fn match_label(m: &L4MatchAttributes, index: usize) -> (String, L4MatchAttributes) {
        (format!("#{index}"), m.clone())
    }
}

impl Matches for TlsRoute {
    type Match = TlsMatchAttributes;
    fn label(&self, index: usize) -> String {
        format!("#{index}")
    }
    fn matches(&self) -> &[TlsMatchAttributes] {
        &self.r#match
    }
    fn match_label(m: &TlsMatchAttributes, index: usize) -> (String, TlsMatchAttributes) {
        (format!("#{index}"), m.clone())
    }
}

fn unreachable(rule: &str, reason: &str) -> Finding {
    Finding::UnreachableRule {
        rule: rule.to_owned(),
        reason: reason.to_owned(),
    }
}

/// Warns about rules that can never be reached: after a rule without matches, or whose
/// matches all repeat earlier ones (Istio's `analyzeUnreachable*Rules`).
fn analyze_unreachable<R: Matches>(v: &mut Validator<'_>, field: &str, routes: &[R]) {
    let mut seen: Vec<(R::Match, usize)> = Vec::new();
    let mut catch_all = false;
    for (index, route) in routes.iter().enumerate() {
        let name = route.label(index);
        if route.matches().is_empty() {
            if catch_all {
                let finding = unreachable(&name, "only the last rule can have no matches");
                v.field(field, |v| v.index(index, |v| v.warn_finding(finding)));
            }
            catch_all = true;
            continue;
        }
        let mut duplicates = 0;
        let mut findings = Vec::new();
        for (i, m) in route.matches().iter().enumerate() {
            if catch_all {
                findings.push(unreachable(&name, "route without matches defined before"));
                continue;
            }
            let (match_name, bare) = R::match_label(m, i);
            if let Some((_, prior)) = seen.iter().find(|(s, _)| *s == bare) {
                findings.push(Finding::IneffectiveMatch {
                    rule: name.clone(),
                    matched: match_name,
                    earlier: routes[*prior].label(*prior),
                });
                duplicates += 1;
            } else {
                seen.push((bare, index));
            }
        }
        if duplicates == route.matches().len() {
            findings.push(unreachable(&name, "all matches used by prior rules"));
        }
        v.field(field, |v| {
            v.index(index, |v| {
                findings.into_iter().for_each(|f| v.warn_finding(f))
            })
        });
    }
}

/// A URI-prefix match reduced to what the overlap check compares.
struct PrefixMatch {
    route: usize,
    route_name: String,
    match_name: String,
    prefix: String,
    port: u32,
    method: String,
    authority: String,
    headers: Vec<(String, String)>,
    query_params: Vec<(String, String)>,
    without_headers: Vec<(String, String)>,
}

fn exact_or_prefix(m: Option<&StringMatch>) -> String {
    match m {
        Some(StringMatch::Exact(e)) if !e.is_empty() => format!("exact:{e}"),
        Some(StringMatch::Prefix(p)) if !p.is_empty() => format!("prefix:{p}"),
        _ => String::new(),
    }
}

fn reduce(map: &std::collections::BTreeMap<String, StringMatch>) -> Vec<(String, String)> {
    map.iter()
        .map(|(k, m)| (k.clone(), exact_or_prefix(Some(m))))
        .collect()
}

/// True when every request `b` matches is already taken by `a` (Istio's `coveredValidation`).
fn covers(a: &PrefixMatch, b: &PrefixMatch) -> bool {
    let covered = |x: &str, y: &str| x == y || x.starts_with(y);
    let maps = |x: &[(String, String)], y: &[(String, String)]| {
        x.len() == y.len()
            && x.iter().all(|(k, xv)| {
                y.iter()
                    .find(|(yk, _)| yk == k)
                    .is_some_and(|(_, yv)| covered(xv, yv))
            })
    };
    b.prefix.starts_with(&a.prefix)
        && a.port == b.port
        && covered(&a.method, &b.method)
        && covered(&a.authority, &b.authority)
        && maps(&a.headers, &b.headers)
        && maps(&a.query_params, &b.query_params)
        && maps(&a.without_headers, &b.without_headers)
}

/// Warns about URI-prefix matches shadowed by a shorter prefix in an earlier rule.
fn analyze_overlapping_prefixes(v: &mut Validator<'_>, routes: &[HttpRoute]) {
    let mut seen: Vec<HttpMatchRequest> = Vec::new();
    let mut prefixes = Vec::new();
    // Rules after one without matches are unreachable anyway (reported above).
    let reachable = routes
        .iter()
        .position(|r| r.r#match.is_empty())
        .map_or(routes.len(), |i| i + 1);
    for (r, route) in routes[..reachable].iter().enumerate() {
        for (i, m) in route.r#match.iter().enumerate() {
            let (match_name, bare) = HttpRoute::match_label(m, i);
            if seen.contains(&bare) {
                continue;
            }
            seen.push(bare);
            let Some(StringMatch::Prefix(prefix)) = &m.uri else {
                continue;
            };
            if prefix.is_empty() {
                continue;
            }
            let method = match exact_or_prefix(m.method.as_ref()) {
                s if s.is_empty() => "exact:GET".to_owned(),
                s => s,
            };
            prefixes.push(PrefixMatch {
                route: r,
                route_name: route.label(r),
                match_name,
                prefix: prefix.clone(),
                port: m.port,
                method,
                authority: exact_or_prefix(m.authority.as_ref()),
                headers: reduce(&m.headers),
                query_params: reduce(&m.query_params),
                without_headers: reduce(&m.without_headers),
            });
        }
    }
    for (i, a) in prefixes.iter().enumerate() {
        for b in &prefixes[i + 1..] {
            if b.prefix != a.prefix && covers(a, b) {
                let finding = Finding::IneffectiveMatch {
                    rule: b.route_name.clone(),
                    matched: format!("{} of prefix {}", b.match_name, b.prefix),
                    earlier: format!(
                        "{} of prefix {} on {}",
                        a.match_name, a.prefix, a.route_name
                    ),
                };
                v.field("http", |v| v.index(b.route, |v| v.warn_finding(finding)));
            }
        }
    }
}

#[cfg(test)]
mod tests;
