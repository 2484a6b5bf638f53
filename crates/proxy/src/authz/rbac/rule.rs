//! One policy's permissions and principals, compiled into one tree of conditions: the
//! two proto trees share most of their leaves (headers, paths, metadata) and all their
//! combinators, so one evaluator serves both.

use std::net::IpAddr;

use mizzen_xds::pb::envoy::config::core::v3::{CidrRange, TypedExtensionConfig};
use mizzen_xds::pb::envoy::config::rbac::v3::{Permission, Principal, permission, principal};
use mizzen_xds::pb::envoy::r#type::matcher::v3::{PathMatcher, path_matcher};
use mizzen_xds::pb::envoy::r#type::v3::Int32Range;

use super::super::matcher::MetadataMatch;
use super::super::{Metadata, Subject};
use super::uri_template::UriTemplate;
use crate::config::Cidr;
use crate::route::{HeaderMatch, Invalid, Problem, StringMatch, Within};

/// A condition on a request or connection.
#[derive(Debug)]
pub(crate) enum Rule {
    Any,
    And(Vec<Rule>),
    Or(Vec<Rule>),
    Not(Box<Rule>),
    /// A request header (pseudo-headers included); never matches a connection.
    Header(HeaderMatch),
    /// The request's path without its query; never matches a connection.
    UrlPath(StringMatch),
    /// The request's path without its query, by a URI template.
    UriTemplate(UriTemplate),
    DestinationIp(Cidr),
    DestinationPort(u32),
    /// `[start, end)`.
    DestinationPorts(i32, i32),
    /// The TLS server name, matched as empty when there is none.
    ServerName(StringMatch),
    Metadata(MetadataMatch),
    /// A peer that presented a certificate, and whose principal matches when a matcher
    /// is given.
    Authenticated(Option<StringMatch>),
    /// The connection's source address.
    DirectRemoteIp(Cidr),
    /// The client's address as the connection manager trusts it (`x-forwarded-for`).
    RemoteIp(Cidr),
}

impl Rule {
    /// Compiles a `Permission`; errors name fields within it.
    #[allow(deprecated)] // `metadata` is deprecated, and Istio still emits it.
    pub(crate) fn permission(p: &Permission) -> Result<Rule, Invalid> {
        use permission::Rule as P;
        Ok(
            match p.rule.as_ref().ok_or_else(|| Problem::Missing.at("rule"))? {
                P::AndRules(set) => {
                    Rule::And(list(&set.rules, "and_rules.rules", Rule::permission)?)
                }
                P::OrRules(set) => Rule::Or(list(&set.rules, "or_rules.rules", Rule::permission)?),
                P::NotRule(inner) => {
                    Rule::Not(Box::new(Rule::permission(inner).within("not_rule")?))
                }
                P::Any(any) => any_rule(*any)?,
                P::Header(h) => Rule::Header(HeaderMatch::compile(h).within("header")?),
                P::UrlPath(path) => url_path(path).within("url_path")?,
                P::DestinationIp(range) => {
                    Rule::DestinationIp(cidr(range).within("destination_ip")?)
                }
                P::DestinationPort(port) => Rule::DestinationPort(*port),
                P::DestinationPortRange(range) => port_range(range)?,
                P::Metadata(m) => Rule::Metadata(MetadataMatch::compile(m).within("metadata")?),
                P::RequestedServerName(m) => {
                    Rule::ServerName(StringMatch::compile(m).within("requested_server_name")?)
                }
                P::UriTemplate(config) => {
                    Rule::UriTemplate(uri_template(config).within("uri_template")?)
                }
                P::Matcher(_) => return Err(Problem::Unsupported.at("matcher")),
                P::SourcedMetadata(_) => return Err(Problem::Unsupported.at("sourced_metadata")),
            },
        )
    }

    /// Compiles a `Principal`; errors name fields within it.
    pub(crate) fn principal(p: &Principal) -> Result<Rule, Invalid> {
        use principal::Identifier as I;
        #[allow(deprecated)] // `source_ip` and `metadata` are deprecated; Envoy honours them.
        let rule = match p
            .identifier
            .as_ref()
            .ok_or_else(|| Problem::Missing.at("identifier"))?
        {
            I::AndIds(set) => Rule::And(list(&set.ids, "and_ids.ids", Rule::principal)?),
            I::OrIds(set) => Rule::Or(list(&set.ids, "or_ids.ids", Rule::principal)?),
            I::NotId(inner) => Rule::Not(Box::new(Rule::principal(inner).within("not_id")?)),
            I::Any(any) => any_rule(*any)?,
            I::Authenticated(a) => Rule::Authenticated(
                a.principal_name
                    .as_ref()
                    .map(|m| StringMatch::compile(m).within("authenticated.principal_name"))
                    .transpose()?,
            ),
            I::SourceIp(range) => Rule::DirectRemoteIp(cidr(range).within("source_ip")?),
            I::DirectRemoteIp(range) => {
                Rule::DirectRemoteIp(cidr(range).within("direct_remote_ip")?)
            }
            I::RemoteIp(range) => Rule::RemoteIp(cidr(range).within("remote_ip")?),
            I::Header(h) => Rule::Header(HeaderMatch::compile(h).within("header")?),
            I::UrlPath(path) => url_path(path).within("url_path")?,
            I::Metadata(m) => Rule::Metadata(MetadataMatch::compile(m).within("metadata")?),
            I::FilterState(_) => return Err(Problem::Unsupported.at("filter_state")),
            I::SourcedMetadata(_) => return Err(Problem::Unsupported.at("sourced_metadata")),
            I::Custom(_) => return Err(Problem::Unsupported.at("custom")),
        };
        Ok(rule)
    }

    /// Whether the condition holds for `input`, whose request has `metadata`.
    pub(crate) fn matches(&self, input: &Subject<'_>, metadata: &Metadata) -> bool {
        let connection = &input.connection;
        match self {
            Rule::Any => true,
            Rule::And(rules) => rules.iter().all(|r| r.matches(input, metadata)),
            Rule::Or(rules) => rules.iter().any(|r| r.matches(input, metadata)),
            Rule::Not(rule) => !rule.matches(input, metadata),
            Rule::Header(h) => input.request.is_some_and(|req| h.matches(req)),
            Rule::UrlPath(m) => input
                .request
                .is_some_and(|req| !req.path.is_empty() && m.matches(req.path_only().as_bytes())),
            Rule::UriTemplate(t) => input
                .request
                .is_some_and(|req| !req.path.is_empty() && t.matches(req.path_only())),
            Rule::DestinationIp(range) => contains(range, connection.destination.ip()),
            Rule::DestinationPort(port) => u32::from(connection.destination.port()) == *port,
            Rule::DestinationPorts(start, end) => {
                (*start..*end).contains(&i32::from(connection.destination.port()))
            }
            Rule::ServerName(m) => m.matches(connection.server_name.unwrap_or("").as_bytes()),
            Rule::Metadata(m) => m.matches(metadata),
            Rule::Authenticated(m) => connection
                .principal
                .is_some_and(|p| m.as_ref().is_none_or(|m| m.matches(p.as_bytes()))),
            Rule::DirectRemoteIp(range) => contains(range, connection.source.ip()),
            Rule::RemoteIp(range) => contains(range, input.remote),
        }
    }
}

/// Compiles each element of a set with `compile`, naming its index on error.
fn list<T>(
    items: &[T],
    field: &str,
    compile: impl Fn(&T) -> Result<Rule, Invalid>,
) -> Result<Vec<Rule>, Invalid> {
    items
        .iter()
        .enumerate()
        .map(|(i, item)| compile(item).within(&format!("{field}[{i}]")))
        .collect()
}

/// `any`, which Envoy wants true (a rule matching nothing is written otherwise).
fn any_rule(any: bool) -> Result<Rule, Invalid> {
    if any {
        Ok(Rule::Any)
    } else {
        Err(Problem::invalid("must be true").at("any"))
    }
}

fn url_path(path: &PathMatcher) -> Result<Rule, Invalid> {
    match &path.rule {
        Some(path_matcher::Rule::Path(m)) => {
            Ok(Rule::UrlPath(StringMatch::compile(m).within("path")?))
        }
        None => Err(Problem::Missing.at("path")),
    }
}

fn cidr(range: &CidrRange) -> Result<Cidr, Invalid> {
    Cidr::parse(range).map_err(|reason| Problem::invalid(reason).at(""))
}

fn port_range(range: &Int32Range) -> Result<Rule, Invalid> {
    if range.start > range.end {
        return Err(Problem::invalid(format!(
            "start {} is greater than end {}",
            range.start, range.end
        ))
        .at("destination_port_range"));
    }
    Ok(Rule::DestinationPorts(range.start, range.end))
}

fn uri_template(config: &TypedExtensionConfig) -> Result<UriTemplate, Invalid> {
    let any = config
        .typed_config
        .as_ref()
        .ok_or_else(|| Problem::Missing.at("typed_config"))?;
    UriTemplate::from_any(any).within("typed_config")
}

/// Whether `ip` is in `range`, an IPv4-mapped IPv6 address counting as IPv4.
fn contains(range: &Cidr, ip: IpAddr) -> bool {
    range.contains(ip.to_canonical())
}
