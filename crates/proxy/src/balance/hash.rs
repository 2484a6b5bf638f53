//! The request hash for RING_HASH and MAGLEV clusters, from a route's hash policies,
//! computed as Envoy computes it.
//!
//! Each policy that produces a value hashes it with xxHash64 (seed 0); the results
//! combine as `hash = hash.rotate_left(1) ^ next`, and a `terminal` policy that
//! produced a hash (its own or an earlier one) ends the evaluation. Header policies
//! hash all values of the header, sorted (so their order doesn't matter), chaining each
//! value's hash as the next one's seed. A cookie policy with a `ttl` whose cookie is
//! absent generates one from the downstream connection's addresses and asks for it to
//! be set on the response. Filter-state policies never produce a hash here.

use std::borrow::Cow;
use std::fmt::{self, Write as _};
use std::net::SocketAddr;

use http::HeaderMap;
use http::header::{COOKIE, HeaderName};
use mizzen_xds::pb::envoy::config::route::v3::route_action::{
    HashPolicy,
    hash_policy::{self, PolicySpecifier},
};
use mizzen_xds::pb::envoy::r#type::matcher::v3::RegexMatchAndSubstitute;
use regex::bytes::Regex;
use xxhash_rust::xxh64::xxh64;

/// What a request offers to hash on.
#[derive(Debug, Clone, Copy)]
pub struct HashInput<'a> {
    /// The request headers.
    pub headers: &'a HeaderMap,
    /// The `:authority` (the `Host` header in HTTP/1.1), for policies on `:authority`.
    pub authority: Option<&'a str>,
    /// The `:path` with its query string, for `:path` and query parameter policies.
    pub path: Option<&'a str>,
    /// The downstream peer's address as the connection manager sees it (after any
    /// trusted `x-forwarded-for` processing), for `source_ip` and generated cookies.
    pub remote: Option<SocketAddr>,
    /// The downstream connection's local address, for generated cookies.
    pub local: Option<SocketAddr>,
}

/// The outcome of hashing a request.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RequestHash {
    /// The hash, or None when no policy produced one (the balancer then picks at random).
    pub hash: Option<u64>,
    /// A full `Set-Cookie` header value to add to the response, when a cookie policy
    /// generated its cookie.
    pub set_cookie: Option<String>,
}

/// A route's hash policies, compiled.
#[derive(Debug, Default)]
pub struct RequestHasher {
    methods: Box<[Method]>,
}

#[derive(Debug)]
struct Method {
    source: Source,
    terminal: bool,
}

#[derive(Debug)]
enum Source {
    Header {
        header: HeaderSource,
        rewrite: Option<Rewrite>,
    },
    Cookie(CookiePolicy),
    ConnectionSourceIp,
    QueryParameter(String),
    /// Filter state isn't available here, so this never yields a hash; a terminal one
    /// still ends evaluation after an earlier policy's hash, as in Envoy.
    FilterState,
}

#[derive(Debug)]
enum HeaderSource {
    Map(HeaderName),
    Authority,
    Path,
}

/// A regex substitution applied to header values before hashing.
#[derive(Debug)]
struct Rewrite {
    regex: Regex,
    /// In the regex crate's replacement syntax.
    replacement: Vec<u8>,
}

#[derive(Debug)]
struct CookiePolicy {
    name: String,
    path: String,
    /// Whole seconds; a cookie is generated only when set.
    ttl: Option<i64>,
    attributes: Vec<(String, String)>,
}

/// Why a route's hash policy could not be compiled.
#[derive(Debug, thiserror::Error)]
#[error("hash_policy[{index}]: {field}: {reason}")]
pub struct HashPolicyError {
    /// The policy's position in the route's `hash_policy` list.
    pub index: usize,
    /// The offending field within the policy.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: HashPolicyReason,
}

/// What is wrong with a hash policy field.
#[derive(Debug, thiserror::Error)]
pub enum HashPolicyReason {
    /// A required field is empty or absent.
    #[error("is required")]
    Missing,
    /// The header name is not a valid HTTP header name.
    #[error("{0:?} is not a valid header name")]
    HeaderName(String),
    /// A pseudo-header the request hash has no access to.
    #[error("pseudo-header {0:?} cannot be hashed (only :authority and :path can)")]
    PseudoHeader(String),
    /// The pattern does not compile.
    #[error("invalid regex {pattern:?}: {error}")]
    Regex {
        /// The pattern.
        pattern: String,
        /// The compiler's complaint.
        error: regex::Error,
    },
    /// The substitution has a backslash not followed by a digit or a backslash.
    #[error("substitution {0:?} has an invalid escape")]
    Escape(String),
    /// The substitution refers to a capture group the pattern lacks.
    #[error("substitution {substitution:?} refers to group {group} but the pattern has {groups}")]
    MissingGroup {
        /// The substitution.
        substitution: String,
        /// The group referred to.
        group: usize,
        /// How many groups the pattern has.
        groups: usize,
    },
}

impl RequestHasher {
    /// Compiles a route's `hash_policy` list.
    pub fn new(policies: &[HashPolicy]) -> Result<RequestHasher, HashPolicyError> {
        let mut methods = Vec::with_capacity(policies.len());
        for (index, policy) in policies.iter().enumerate() {
            let error = |field, reason| HashPolicyError {
                index,
                field,
                reason,
            };
            let source = match &policy.policy_specifier {
                None => return Err(error("policy_specifier", HashPolicyReason::Missing)),
                Some(PolicySpecifier::Header(h)) => Source::Header {
                    header: header_source(&h.header_name)
                        .map_err(|r| error("header.header_name", r))?,
                    rewrite: h
                        .regex_rewrite
                        .as_ref()
                        .map(Rewrite::new)
                        .transpose()
                        .map_err(|r| error("header.regex_rewrite", r))?,
                },
                Some(PolicySpecifier::Cookie(c)) => {
                    if c.name.is_empty() {
                        return Err(error("cookie.name", HashPolicyReason::Missing));
                    }
                    Source::Cookie(CookiePolicy::new(c))
                }
                Some(PolicySpecifier::ConnectionProperties(p)) if p.source_ip => {
                    Source::ConnectionSourceIp
                }
                // Envoy adds no hash method for these.
                Some(PolicySpecifier::ConnectionProperties(_)) => continue,
                Some(PolicySpecifier::FilterState(_)) => Source::FilterState,
                Some(PolicySpecifier::QueryParameter(q)) => {
                    if q.name.is_empty() {
                        return Err(error("query_parameter.name", HashPolicyReason::Missing));
                    }
                    Source::QueryParameter(q.name.clone())
                }
            };
            methods.push(Method {
                source,
                terminal: policy.terminal,
            });
        }
        Ok(RequestHasher {
            methods: methods.into_boxed_slice(),
        })
    }

    /// Whether no policy can ever produce a hash.
    pub fn is_empty(&self) -> bool {
        self.methods
            .iter()
            .all(|m| matches!(m.source, Source::FilterState))
    }

    /// The request's hash. Call it only for clusters whose balancer hashes requests
    /// ([`super::Balancer::hashes_requests`]), as Envoy does: a generated cookie is
    /// only meant for those.
    pub fn hash(&self, input: &HashInput<'_>) -> RequestHash {
        let mut out = RequestHash::default();
        for method in &self.methods {
            if let Some(next) = method.source.evaluate(input, &mut out.set_cookie) {
                // Rotating keeps two equal policies from cancelling each other out.
                out.hash = Some(out.hash.map_or(0, |h| h.rotate_left(1)) ^ next);
            }
            if method.terminal && out.hash.is_some() {
                break;
            }
        }
        out
    }
}

/// Where a header policy reads its values.
fn header_source(name: &str) -> Result<HeaderSource, HashPolicyReason> {
    match name.to_ascii_lowercase().as_str() {
        "" => Err(HashPolicyReason::Missing),
        ":authority" => Ok(HeaderSource::Authority),
        ":path" => Ok(HeaderSource::Path),
        pseudo if pseudo.starts_with(':') => Err(HashPolicyReason::PseudoHeader(name.to_owned())),
        lower => HeaderName::from_bytes(lower.as_bytes())
            .map(HeaderSource::Map)
            .map_err(|_| HashPolicyReason::HeaderName(name.to_owned())),
    }
}

impl Rewrite {
    fn new(spec: &RegexMatchAndSubstitute) -> Result<Rewrite, HashPolicyReason> {
        let pattern = spec.pattern.as_ref().map_or("", |p| p.regex.as_str());
        let regex = Regex::new(pattern).map_err(|error| HashPolicyReason::Regex {
            pattern: pattern.to_owned(),
            error,
        })?;
        let replacement = replacement(&spec.substitution, regex.captures_len() - 1)?;
        Ok(Rewrite { regex, replacement })
    }

    fn apply<'v>(&self, value: &'v [u8]) -> Cow<'v, [u8]> {
        self.regex.replace_all(value, self.replacement.as_slice())
    }
}

/// An RE2 substitution (`\1` for a group, `\\` for a backslash) in the regex crate's
/// replacement syntax (`${1}`, with `$` escaped as `$$`).
fn replacement(substitution: &str, groups: usize) -> Result<Vec<u8>, HashPolicyReason> {
    let mut out = Vec::with_capacity(substitution.len());
    let mut chars = substitution.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('\\') => out.push(b'\\'),
                Some(d) if d.is_ascii_digit() => {
                    let group = (d as u8 - b'0') as usize;
                    if group > groups {
                        return Err(HashPolicyReason::MissingGroup {
                            substitution: substitution.to_owned(),
                            group,
                            groups,
                        });
                    }
                    out.extend_from_slice(format!("${{{group}}}").as_bytes());
                }
                _ => return Err(HashPolicyReason::Escape(substitution.to_owned())),
            },
            '$' => out.extend_from_slice(b"$$"),
            c => out.extend_from_slice(c.encode_utf8(&mut [0; 4]).as_bytes()),
        }
    }
    Ok(out)
}

impl CookiePolicy {
    fn new(cookie: &hash_policy::Cookie) -> CookiePolicy {
        CookiePolicy {
            name: cookie.name.clone(),
            path: cookie.path.clone(),
            // Envoy keeps whole seconds only.
            ttl: cookie.ttl.map(|d| d.seconds),
            attributes: cookie
                .attributes
                .iter()
                .map(|a| (a.name.clone(), a.value.clone()))
                .collect(),
        }
    }

    fn evaluate(&self, input: &HashInput<'_>, set_cookie: &mut Option<String>) -> Option<u64> {
        match find_cookie(input.headers, self.name.as_bytes()) {
            Some(value) if !value.is_empty() => Some(xxh64(value, 0)),
            _ => {
                let ttl = self.ttl?;
                let value = generated_cookie(input.remote?, input.local?);
                *set_cookie = Some(self.set_cookie(&value, ttl));
                Some(xxh64(value.as_bytes(), 0))
            }
        }
    }

    /// The `Set-Cookie` value, formatted as Envoy formats it.
    fn set_cookie(&self, value: &str, ttl: i64) -> String {
        let mut header = format!("{}=\"{value}\"", self.name);
        if ttl != 0 {
            write!(header, "; Max-Age={ttl}").expect("writing to a String cannot fail");
        }
        if !self.path.is_empty() {
            write!(header, "; Path={}", self.path).expect("writing to a String cannot fail");
        }
        for (name, value) in &self.attributes {
            if value.is_empty() {
                write!(header, "; {name}").expect("writing to a String cannot fail");
            } else {
                write!(header, "; {name}={value}").expect("writing to a String cannot fail");
            }
        }
        header.push_str("; HttpOnly");
        header
    }
}

/// Envoy's generated cookie value: xxHash64 of the remote then local address (as
/// `ip:port` strings), as 16 lowercase hex digits.
fn generated_cookie(remote: SocketAddr, local: SocketAddr) -> String {
    let mut both = StackText::<128>::new();
    write!(both, "{remote}{local}").expect("two socket addresses fit in 128 bytes");
    format!("{:016x}", xxh64(both.as_bytes(), 0))
}

/// The first value of cookie `name` in the `Cookie` headers, quotes removed, parsed as
/// Envoy parses it.
fn find_cookie<'h>(headers: &'h HeaderMap, name: &[u8]) -> Option<&'h [u8]> {
    for header in headers.get_all(COOKIE) {
        for pair in header.as_bytes().split(|&b| b == b';') {
            let Some(eq) = pair.iter().position(|&b| b == b'=') else {
                continue;
            };
            let start = pair.iter().position(|&b| b != b' ').unwrap_or(eq);
            if &pair[start..eq] != name {
                continue;
            }
            let value = &pair[eq + 1..];
            return Some(match value {
                [b'"', inner @ .., b'"'] => inner,
                _ => value,
            });
        }
    }
    None
}

impl Source {
    fn evaluate(&self, input: &HashInput<'_>, set_cookie: &mut Option<String>) -> Option<u64> {
        match self {
            Source::Header { header, rewrite } => {
                let rewrite = rewrite.as_ref();
                match header {
                    HeaderSource::Map(name) => hash_values(
                        input.headers.get_all(name).iter().map(|v| v.as_bytes()),
                        rewrite,
                    ),
                    HeaderSource::Authority => {
                        hash_values(input.authority.map(str::as_bytes).into_iter(), rewrite)
                    }
                    HeaderSource::Path => {
                        hash_values(input.path.map(str::as_bytes).into_iter(), rewrite)
                    }
                }
            }
            Source::Cookie(cookie) => cookie.evaluate(input, set_cookie),
            Source::ConnectionSourceIp => {
                let mut ip = StackText::<64>::new();
                write!(ip, "{}", input.remote?.ip()).expect("an IP address fits in 64 bytes");
                Some(xxh64(ip.as_bytes(), 0))
            }
            Source::QueryParameter(name) => {
                let (_, query) = input.path?.split_once('?')?;
                query
                    .split('&')
                    .map(|param| param.split_once('=').unwrap_or((param, "")))
                    .find(|(key, _)| key == name)
                    .map(|(_, value)| xxh64(value.as_bytes(), 0))
            }
            Source::FilterState => None,
        }
    }
}

/// The hash of a header's values: sorted, each hashed with the previous hash as seed.
fn hash_values<'v>(
    mut values: impl Iterator<Item = &'v [u8]>,
    rewrite: Option<&Rewrite>,
) -> Option<u64> {
    let first = values.next()?;
    let second = values.next();
    let rewritten = |v: &'v [u8]| rewrite.map_or(Cow::Borrowed(v), |r| r.apply(v));
    let Some(second) = second else {
        return Some(xxh64(&rewritten(first), 0));
    };
    let mut all: Vec<Cow<'v, [u8]>> = [first, second]
        .into_iter()
        .chain(values)
        .map(rewritten)
        .collect();
    all.sort();
    Some(all.iter().fold(0, |seed, v| xxh64(v, seed)))
}

/// A small fixed-capacity text buffer, so that formatting addresses for hashing
/// doesn't allocate.
struct StackText<const N: usize> {
    bytes: [u8; N],
    len: usize,
}

impl<const N: usize> StackText<N> {
    fn new() -> Self {
        StackText {
            bytes: [0; N],
            len: 0,
        }
    }

    fn as_bytes(&self) -> &[u8] {
        &self.bytes[..self.len]
    }
}

impl<const N: usize> fmt::Write for StackText<N> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        let end = self.len + s.len();
        self.bytes
            .get_mut(self.len..end)
            .ok_or(fmt::Error)?
            .copy_from_slice(s.as_bytes());
        self.len = end;
        Ok(())
    }
}

#[cfg(test)]
mod tests;
