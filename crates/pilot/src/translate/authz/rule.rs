//! One AuthorizationPolicy rule as an Envoy RBAC policy (Istio's `authz/model`): its
//! `from` sources become principals, its `to` operations permissions, and each `when`
//! condition joins every one of them, on the side Envoy evaluates it.

// Istio writes the deprecated (still served) `metadata` permission and principal.
#![allow(deprecated)]

use mizzen_api::security::{Condition, Rule};
use mizzen_xds::pb::envoy::config::core::v3::TypedExtensionConfig;
use mizzen_xds::pb::envoy::config::rbac::v3::{
    Permission, Policy, Principal, permission, principal,
};
use mizzen_xds::pb::envoy::extensions::path::r#match::uri_template::v3::UriTemplateMatchConfig;
use mizzen_xds::pb::envoy::r#type::matcher::v3::StringMatcher;

use super::matcher;
use super::trust_domain::TrustDomainBundle;
use crate::translate::listener::cidr;
use crate::translate::route::to_any;

/// Why a rule, or one value of it, cannot be expressed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleError {
    /// A `when` key Istio does not know.
    #[error("unknown attribute {0}")]
    UnknownAttribute(String),
    /// An attribute only HTTP requests carry, on a TCP filter chain.
    #[error("{0:?} is HTTP only")]
    HttpOnly(String),
    /// A value that does not parse for its attribute.
    #[error("invalid value {value:?} for {key}: {reason}")]
    Value {
        /// The attribute.
        key: String,
        /// The value.
        value: String,
        /// Why.
        reason: &'static str,
    },
}

/// How a rule is turned into RBAC: for TCP or HTTP, and whether errors drop the whole
/// rule (ALLOW: a narrower allow) or only the offending values (DENY, AUDIT, CUSTOM:
/// a wider match).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Generation {
    /// True on TCP filter chains, where HTTP attributes are unknown.
    pub for_tcp: bool,
    /// True for ALLOW policies.
    pub strict: bool,
}

/// An attribute of a request or connection a rule constrains.
#[derive(Debug, Clone, PartialEq)]
enum Attribute {
    DestinationIp,
    DestinationPort,
    ConnectionSni,
    /// `experimental.envoy.filters.NAME[KEY]`: dynamic metadata of another filter.
    EnvoyFilter,
    SourceIp,
    RemoteIp,
    SourceNamespace,
    /// Service accounts, relative to the policy's namespace.
    SourceServiceAccount,
    SourcePrincipal,
    SourceTrustDomain,
    RequestPrincipal,
    RequestAudiences,
    RequestPresenter,
    RequestHeader,
    RequestInlineHeader,
    RequestClaims,
    Host,
    Path,
    Method,
}

impl Attribute {
    /// The attribute a `when` key names.
    fn of_key(key: &str) -> Result<Attribute, RuleError> {
        Ok(match key {
            "destination.ip" => Attribute::DestinationIp,
            "destination.port" => Attribute::DestinationPort,
            "connection.sni" => Attribute::ConnectionSni,
            "source.ip" => Attribute::SourceIp,
            "remote.ip" => Attribute::RemoteIp,
            "source.namespace" => Attribute::SourceNamespace,
            "source.serviceAccount" => Attribute::SourceServiceAccount,
            "source.principal" => Attribute::SourcePrincipal,
            "request.auth.principal" => Attribute::RequestPrincipal,
            "request.auth.audiences" => Attribute::RequestAudiences,
            "request.auth.presenter" => Attribute::RequestPresenter,
            k if k.starts_with("experimental.envoy.filters.") => Attribute::EnvoyFilter,
            k if k.starts_with("request.headers") => Attribute::RequestHeader,
            k if k.starts_with("request.experimental.inline.headers") => {
                Attribute::RequestInlineHeader
            }
            k if k.starts_with("request.auth.claims") => Attribute::RequestClaims,
            other => return Err(RuleError::UnknownAttribute(other.to_owned())),
        })
    }

    /// True for attributes only HTTP requests have.
    fn http_only(&self) -> bool {
        matches!(
            self,
            Attribute::RequestPrincipal
                | Attribute::RequestAudiences
                | Attribute::RequestPresenter
                | Attribute::RequestHeader
                | Attribute::RequestInlineHeader
                | Attribute::RequestClaims
                | Attribute::Host
                | Attribute::Path
                | Attribute::Method
        )
    }

    /// True for attributes whose values are matched together, as one matcher, rather
    /// than each on its own (Istio's "extended" generators).
    fn grouped(&self) -> bool {
        matches!(
            self,
            Attribute::EnvoyFilter
                | Attribute::RequestPrincipal
                | Attribute::RequestAudiences
                | Attribute::RequestPresenter
                | Attribute::RequestClaims
        )
    }
}

/// One constraint: an attribute with the values it must and must not have.
#[derive(Debug, Clone)]
struct Constraint {
    attribute: Attribute,
    key: String,
    values: Vec<String>,
    not_values: Vec<String>,
}

/// Constraints ANDed together.
type Conjunction = Vec<Constraint>;

/// A rule, its constraints sorted onto the permission or the principal side.
#[derive(Debug, Clone)]
pub(crate) struct RuleModel {
    permissions: Vec<Conjunction>,
    principals: Vec<Conjunction>,
    /// The policy's namespace, which relative service accounts live in.
    namespace: String,
}

impl RuleModel {
    /// The model of `rule` from a policy in `namespace`.
    pub fn new(namespace: &str, rule: &Rule) -> Result<Self, RuleError> {
        let mut base_permission = Conjunction::new();
        let mut base_principal = Conjunction::new();
        for Condition {
            key,
            values,
            not_values,
        } in &rule.when
        {
            let attribute = Attribute::of_key(key)?;
            let permission_side = matches!(
                attribute,
                Attribute::DestinationIp
                    | Attribute::DestinationPort
                    | Attribute::ConnectionSni
                    | Attribute::EnvoyFilter
            );
            let side = if permission_side {
                &mut base_permission
            } else {
                &mut base_principal
            };
            push_back(side, attribute, key, values, not_values);
        }

        let mut principals = Vec::new();
        for from in &rule.from {
            let mut merged = base_principal.clone();
            if let Some(s) = &from.source {
                use Attribute as A;
                // Inserted at the front in this order, so they read in reverse.
                let front = [
                    (A::SourceIp, "source.ip", &s.ip_blocks, &s.not_ip_blocks),
                    (
                        A::RemoteIp,
                        "remote.ip",
                        &s.remote_ip_blocks,
                        &s.not_remote_ip_blocks,
                    ),
                    (
                        A::SourceNamespace,
                        "source.namespace",
                        &s.namespaces,
                        &s.not_namespaces,
                    ),
                    (
                        A::SourceServiceAccount,
                        "source.serviceAccount",
                        &s.service_accounts,
                        &s.not_service_accounts,
                    ),
                    (
                        A::SourceTrustDomain,
                        "source.trustDomain",
                        &s.trust_domains,
                        &s.not_trust_domains,
                    ),
                    (
                        A::RequestPrincipal,
                        "request.auth.principal",
                        &s.request_principals,
                        &s.not_request_principals,
                    ),
                    (
                        A::SourcePrincipal,
                        "source.principal",
                        &s.principals,
                        &s.not_principals,
                    ),
                ];
                for (attribute, key, values, not_values) in front {
                    push_front(&mut merged, attribute, key, values, not_values);
                }
            }
            principals.push(merged);
        }
        if rule.from.is_empty() {
            principals.push(base_principal);
        }

        let mut permissions = Vec::new();
        for to in &rule.to {
            let mut merged = base_permission.clone();
            if let Some(o) = &to.operation {
                use Attribute as A;
                let front = [
                    (
                        A::DestinationPort,
                        "destination.port",
                        &o.ports,
                        &o.not_ports,
                    ),
                    (A::Path, "path-matcher", &o.paths, &o.not_paths),
                    (A::Method, ":method", &o.methods, &o.not_methods),
                    (A::Host, ":authority", &o.hosts, &o.not_hosts),
                ];
                for (attribute, key, values, not_values) in front {
                    push_front(&mut merged, attribute, key, values, not_values);
                }
            }
            permissions.push(merged);
        }
        if rule.to.is_empty() {
            permissions.push(base_permission);
        }
        Ok(Self {
            permissions,
            principals,
            namespace: namespace.to_owned(),
        })
    }

    /// Rewrites source principals for the trust domain and its aliases.
    pub fn migrate_trust_domain(&mut self, bundle: &TrustDomainBundle) {
        for conjunction in &mut self.principals {
            for c in conjunction.iter_mut() {
                if c.attribute == Attribute::SourcePrincipal {
                    c.values = bundle.expand(&c.values);
                    c.not_values = bundle.expand(&c.not_values);
                }
            }
        }
    }

    /// The RBAC policy: any permission, from any principal.
    pub fn generate(&self, g: Generation) -> Result<Policy, RuleError> {
        let mut permissions = Vec::new();
        for c in &self.permissions {
            let rules = self
                .conjunction(c, g)?
                .into_iter()
                .filter_map(Matcher::into_permission);
            permissions.push(permission_and(non_empty(rules.collect(), permission_any)));
        }
        let mut principals = Vec::new();
        for c in &self.principals {
            let ids = self
                .conjunction(c, g)?
                .into_iter()
                .filter_map(Matcher::into_principal);
            principals.push(principal_and(non_empty(ids.collect(), principal_any)));
        }
        Ok(Policy {
            permissions,
            principals,
            ..Policy::default()
        })
    }

    /// The matchers of one conjunction: per constraint, one for its values and the
    /// negation of one for its `not` values.
    fn conjunction(
        &self,
        constraints: &[Constraint],
        g: Generation,
    ) -> Result<Vec<Matcher>, RuleError> {
        let mut out = Vec::new();
        for c in constraints {
            for (values, negate) in [(&c.values, false), (&c.not_values, true)] {
                if values.is_empty() {
                    continue;
                }
                let matcher = if c.attribute.grouped() {
                    self.checked(g, self.grouped(c, values, g))?
                } else {
                    let mut each = Vec::new();
                    for v in values {
                        each.extend(self.checked(g, self.single(c, v, g))?);
                    }
                    (!each.is_empty()).then(|| or(each))
                };
                out.extend(matcher.map(|m| if negate { m.negated() } else { m }));
            }
        }
        Ok(out)
    }

    /// `result`, or nothing when the error may be ignored (not an ALLOW policy).
    fn checked(
        &self,
        g: Generation,
        result: Result<Matcher, RuleError>,
    ) -> Result<Option<Matcher>, RuleError> {
        match result {
            Ok(m) => Ok(Some(m)),
            Err(e) if g.strict => Err(e),
            Err(_) => Ok(None),
        }
    }

    /// The matcher of one value.
    fn single(&self, c: &Constraint, value: &str, g: Generation) -> Result<Matcher, RuleError> {
        if g.for_tcp && c.attribute.http_only() {
            return Err(RuleError::HttpOnly(c.key.clone()));
        }
        let bad = |reason| RuleError::Value {
            key: c.key.clone(),
            value: value.to_owned(),
            reason,
        };
        let range = || cidr(value).ok_or_else(|| bad("not an IP address or CIDR block"));
        Ok(match c.attribute {
            Attribute::DestinationIp => permission(permission::Rule::DestinationIp(range()?)),
            Attribute::DestinationPort => {
                let port = value
                    .parse::<u32>()
                    .ok()
                    .filter(|p| *p <= 65535)
                    .ok_or_else(|| bad("not a port"))?;
                permission(permission::Rule::DestinationPort(port))
            }
            Attribute::ConnectionSni => permission(permission::Rule::RequestedServerName(
                matcher::string(value),
            )),
            Attribute::Host => permission(permission::Rule::Header(matcher::header(
                ":authority",
                value,
                true,
            ))),
            Attribute::Method => permission(permission::Rule::Header(matcher::header(
                ":method", value, false,
            ))),
            Attribute::Path if is_path_template(value) => {
                permission(permission::Rule::UriTemplate(TypedExtensionConfig {
                    name: "uri-template".to_owned(),
                    typed_config: Some(to_any(&UriTemplateMatchConfig {
                        path_template: value.replace("{**}", "**").replace("{*}", "*"),
                    })),
                }))
            }
            Attribute::Path => permission(permission::Rule::UrlPath(matcher::path(value))),
            Attribute::SourceIp => principal(principal::Identifier::DirectRemoteIp(range()?)),
            Attribute::RemoteIp => principal(principal::Identifier::RemoteIp(range()?)),
            Attribute::SourceNamespace => {
                authenticated(matcher::regex(format!(".*/ns/{}/.*", glob_regex(value))))
            }
            Attribute::SourceServiceAccount => {
                let (ns, sa) = value.split_once('/').unwrap_or((&self.namespace, value));
                authenticated(matcher::regex(format!(
                    "spiffe://.+/ns/{}/(.+/|)sa/{}(/.+)?",
                    matcher::quote_meta(ns),
                    matcher::quote_meta(sa)
                )))
            }
            Attribute::SourcePrincipal => authenticated(matcher::with_prefix(value, "spiffe://")),
            Attribute::SourceTrustDomain => authenticated(trust_domain(value)),
            Attribute::RequestHeader | Attribute::RequestInlineHeader => {
                let prefix = if c.attribute == Attribute::RequestHeader {
                    "request.headers"
                } else {
                    "request.experimental.inline.headers"
                };
                let name = in_brackets(&c.key[prefix.len()..])
                    .ok_or_else(|| bad("the key is not NAME[HEADER]"))?;
                principal(principal::Identifier::Header(
                    if c.attribute == Attribute::RequestHeader {
                        matcher::header(name, value, false)
                    } else {
                        matcher::inline_header(name, value)
                    },
                ))
            }
            Attribute::EnvoyFilter
            | Attribute::RequestPrincipal
            | Attribute::RequestAudiences
            | Attribute::RequestPresenter
            | Attribute::RequestClaims => unreachable!("grouped attributes"),
        })
    }

    /// The one matcher of all `values` of a grouped attribute.
    fn grouped(
        &self,
        c: &Constraint,
        values: &[String],
        g: Generation,
    ) -> Result<Matcher, RuleError> {
        if g.for_tcp && c.attribute.http_only() {
            return Err(RuleError::HttpOnly(c.key.clone()));
        }
        let bad = |reason| RuleError::Value {
            key: c.key.clone(),
            value: values.join(","),
            reason,
        };
        Ok(match c.attribute {
            Attribute::EnvoyFilter => {
                let inner = c
                    .key
                    .strip_prefix("experimental.")
                    .unwrap_or(&c.key)
                    .trim_end_matches(']');
                let (filter, key) = inner
                    .split_once('[')
                    .ok_or_else(|| bad("the key is not experimental.envoy.filters.NAME[KEY]"))?;
                let each = values
                    .iter()
                    .map(
                        |v| match v.strip_prefix('[').and_then(|v| v.strip_suffix(']')) {
                            Some(item) => {
                                matcher::list_one_of(matcher::string_value(matcher::string(item)))
                            }
                            None => matcher::string_value(matcher::string(v)),
                        },
                    )
                    .collect();
                permission(permission::Rule::Metadata(matcher::metadata(
                    filter,
                    &[key],
                    matcher::or_values(each),
                )))
            }
            Attribute::RequestPrincipal => {
                let mut each: Vec<Principal> =
                    values.iter().map(|v| request_principal(v)).collect();
                Matcher::Principal(if each.len() == 1 {
                    each.remove(0)
                } else {
                    principal_or(each)
                })
            }
            Attribute::RequestAudiences | Attribute::RequestPresenter => {
                let claim = if c.attribute == Attribute::RequestAudiences {
                    "aud"
                } else {
                    "azp"
                };
                principal(principal::Identifier::Metadata(matcher::jwt_claim_list(
                    &[claim.to_owned()],
                    matcher::string_or(values),
                )))
            }
            Attribute::RequestClaims => {
                let claims = nested_brackets(&c.key["request.auth.claims".len()..])
                    .ok_or_else(|| bad("the key is not request.auth.claims[NAME]"))?;
                principal(principal::Identifier::Metadata(matcher::jwt_claim_list(
                    &claims,
                    matcher::string_or(values),
                )))
            }
            _ => unreachable!("single-value attributes"),
        })
    }
}

/// A matcher of either side.
#[derive(Debug, Clone)]
enum Matcher {
    Permission(Permission),
    Principal(Principal),
}

impl Matcher {
    fn into_permission(self) -> Option<Permission> {
        match self {
            Matcher::Permission(p) => Some(p),
            Matcher::Principal(_) => None,
        }
    }

    fn into_principal(self) -> Option<Principal> {
        match self {
            Matcher::Principal(p) => Some(p),
            Matcher::Permission(_) => None,
        }
    }

    fn negated(self) -> Matcher {
        match self {
            Matcher::Permission(p) => permission(permission::Rule::NotRule(Box::new(p))),
            Matcher::Principal(p) => principal(principal::Identifier::NotId(Box::new(p))),
        }
    }
}

/// The OR of matchers of one attribute (so all of one side).
fn or(each: Vec<Matcher>) -> Matcher {
    if matches!(each.first(), Some(Matcher::Permission(_))) {
        Matcher::Permission(permission_or(
            each.into_iter()
                .filter_map(Matcher::into_permission)
                .collect(),
        ))
    } else {
        Matcher::Principal(principal_or(
            each.into_iter()
                .filter_map(Matcher::into_principal)
                .collect(),
        ))
    }
}

fn push_front(
    list: &mut Conjunction,
    attribute: Attribute,
    key: &str,
    values: &[String],
    not_values: &[String],
) {
    if values.is_empty() && not_values.is_empty() {
        return;
    }
    list.insert(0, constraint(attribute, key, values, not_values));
}

fn push_back(
    list: &mut Conjunction,
    attribute: Attribute,
    key: &str,
    values: &[String],
    not_values: &[String],
) {
    if values.is_empty() && not_values.is_empty() {
        return;
    }
    list.push(constraint(attribute, key, values, not_values));
}

fn constraint(
    attribute: Attribute,
    key: &str,
    values: &[String],
    not_values: &[String],
) -> Constraint {
    Constraint {
        attribute,
        key: key.to_owned(),
        values: values.to_vec(),
        not_values: not_values.to_vec(),
    }
}

fn non_empty<T>(mut list: Vec<T>, any: fn() -> T) -> Vec<T> {
    if list.is_empty() {
        list.push(any());
    }
    list
}

/// True for Istio's path templates (`{*}` one segment, `{**}` any number).
fn is_path_template(path: &str) -> bool {
    path.contains("{*}") || path.contains("{**}")
}

/// A glob (`*` anywhere) as a regex, the rest quoted.
fn glob_regex(value: &str) -> String {
    matcher::quote_meta(value).replace(r"\*", ".*")
}

/// A trust domain as a match on the peer's SPIFFE URI: exact domains by prefix,
/// globs by regex within the authority.
fn trust_domain(value: &str) -> StringMatcher {
    if value == "*" {
        return matcher::regex("spiffe://[^/]+/.*");
    }
    if value.contains('*') {
        let pattern = matcher::quote_meta(value).replace(r"\*", "[^/]*");
        return matcher::regex(format!("spiffe://{pattern}/.*"));
    }
    matcher::prefix(format!("spiffe://{value}/"), false)
}

/// A request principal `ISS/SUB` (either side may carry `*`) as a match on the verified
/// token's `iss` and `sub` claims; the last `/` splits them, since issuers are URLs.
fn request_principal(value: &str) -> Principal {
    let split = value.rfind('/').map(|i| (&value[..i], &value[i + 1..]));
    let (iss, sub) = match split {
        _ if value == "*" => (matcher::any_value(), matcher::any_value()),
        Some((iss, sub)) if value.starts_with('*') => (
            if iss == "*" {
                matcher::any_value()
            } else {
                matcher::suffix(&iss[1..], false)
            },
            matcher::exact(sub, false),
        ),
        None if value.starts_with('*') => {
            (matcher::any_value(), matcher::suffix(&value[1..], false))
        }
        Some((iss, sub)) if value.ends_with('*') => (
            matcher::exact(iss, false),
            if sub == "*" {
                matcher::any_value()
            } else {
                matcher::prefix(&sub[..sub.len() - 1], false)
            },
        ),
        None if value.ends_with('*') => (
            matcher::prefix(&value[..value.len() - 1], false),
            matcher::any_value(),
        ),
        Some((iss, sub)) => (matcher::exact(iss, false), matcher::exact(sub, false)),
        None => (matcher::exact(value, false), matcher::exact("", false)),
    };
    principal_and(vec![
        principal_id(principal::Identifier::Metadata(matcher::jwt_claim(
            "iss", iss,
        ))),
        principal_id(principal::Identifier::Metadata(matcher::jwt_claim(
            "sub", sub,
        ))),
    ])
}

/// `[a]` → `a`.
fn in_brackets(s: &str) -> Option<&str> {
    s.strip_prefix('[')?.strip_suffix(']')
}

/// `[a][b]` → `[a, b]`; `[a.b]` → `[a.b]` (Istio's `extractNameInNestedBrackets`).
fn nested_brackets(s: &str) -> Option<Vec<String>> {
    let mut out = Vec::new();
    let mut rest = s;
    while !rest.is_empty() {
        let inner = rest.strip_prefix('[');
        let end = inner.and_then(|r| {
            let close = r.find(']')?;
            (!r[..close].contains('[')).then_some(close)
        });
        match (inner, end) {
            (Some(r), Some(close)) => {
                out.push(r[..close].to_owned());
                rest = &r[close + 1..];
            }
            _ => return in_brackets(s).map(|n| vec![n.to_owned()]),
        }
    }
    Some(out)
}

fn permission(rule: permission::Rule) -> Matcher {
    Matcher::Permission(Permission { rule: Some(rule) })
}

fn principal(id: principal::Identifier) -> Matcher {
    Matcher::Principal(principal_id(id))
}

fn principal_id(id: principal::Identifier) -> Principal {
    Principal {
        identifier: Some(id),
    }
}

fn authenticated(name: StringMatcher) -> Matcher {
    principal(principal::Identifier::Authenticated(
        principal::Authenticated {
            principal_name: Some(name),
        },
    ))
}

/// `any: true` on the permission side.
pub(crate) fn permission_any() -> Permission {
    Permission {
        rule: Some(permission::Rule::Any(true)),
    }
}

/// `any: true` on the principal side.
pub(crate) fn principal_any() -> Principal {
    principal_id(principal::Identifier::Any(true))
}

fn permission_and(rules: Vec<Permission>) -> Permission {
    Permission {
        rule: Some(permission::Rule::AndRules(permission::Set { rules })),
    }
}

fn permission_or(rules: Vec<Permission>) -> Permission {
    Permission {
        rule: Some(permission::Rule::OrRules(permission::Set { rules })),
    }
}

fn principal_and(ids: Vec<Principal>) -> Principal {
    principal_id(principal::Identifier::AndIds(principal::Set { ids }))
}

fn principal_or(ids: Vec<Principal>) -> Principal {
    principal_id(principal::Identifier::OrIds(principal::Set { ids }))
}

/// A policy that never matches (Istio's for a policy without rules).
pub(crate) fn match_never() -> Policy {
    Policy {
        permissions: vec![Permission {
            rule: Some(permission::Rule::NotRule(Box::new(permission_any()))),
        }],
        principals: vec![principal_id(principal::Identifier::NotId(Box::new(
            principal_any(),
        )))],
        ..Policy::default()
    }
}
