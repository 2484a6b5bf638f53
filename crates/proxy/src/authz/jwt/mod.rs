//! Envoy's JWT authentication filter (`envoy.filters.http.jwt_authn`), as Istio's
//! RequestAuthentication configures it: providers (issuer, audiences, an inline JWKS,
//! where the token is), and per request the requirement of the first rule that matches
//! (`requires_any` of the providers and `allow_missing`). A verified token's payload
//! goes into dynamic metadata for RBAC; a failing one gets Envoy's 401.

pub mod base64url;
mod error;
mod jwk;
mod token;

#[cfg(test)]
mod tests;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Method, Response, StatusCode};
use mizzen_xds::pb::envoy::config::core::v3::{DataSource, data_source::Specifier};
use mizzen_xds::pb::envoy::extensions::filters::http::jwt_authn::v3::{
    JwtAuthentication, JwtProvider, JwtRequirement, jwt_provider::JwksSourceSpecifier,
    jwt_requirement::RequiresType, requirement_rule::RequirementType,
};
use serde_json::Value;

use super::Metadata;
use crate::http::{ProxyBody, local};
use crate::route::{Invalid, Problem, RequestHead, RouteMatch, Within};
use crate::stats::{Counter, HttpStats};
use error::JwtError;
use jwk::Jwk;
use token::{Jwt, Location};

/// The JWT filter's name, and its namespace in dynamic metadata.
pub const JWT_AUTHN: &str = "envoy.filters.http.jwt_authn";
/// Envoy's `clock_skew_seconds` when unset.
const DEFAULT_CLOCK_SKEW: u64 = 60;

/// A `JwtAuthentication`, compiled.
#[derive(Debug)]
pub struct JwtAuthn {
    providers: Vec<Provider>,
    /// By order: the first rule whose match fits the request gives its requirement.
    rules: Vec<(RouteMatch, Arc<Requirement>)>,
    bypass_cors_preflight: bool,
    allowed: Arc<Counter>,
    denied: Arc<Counter>,
}

#[derive(Debug)]
struct Provider {
    /// Its name, as requirements refer to it.
    name: String,
    /// The issuer tokens must name; empty: any.
    issuer: String,
    /// The audiences a token must name one of; empty: any.
    audiences: Vec<String>,
    keys: Keys,
    locations: Vec<Location>,
    forward: bool,
    forward_payload_header: Option<HeaderName>,
    pad_forward_payload_header: bool,
    payload_in_metadata: Option<String>,
    /// Claims written into metadata as lists of their space-separated words (`scope`).
    space_delimited_claims: Vec<String>,
    /// Headers set from claims (a claim path is its dot-separated names).
    claim_to_headers: Vec<(HeaderName, Vec<String>)>,
    clock_skew: u64,
}

/// Where a provider's keys come from.
#[derive(Debug)]
enum Keys {
    Local(Vec<Jwk>),
    /// `remote_jwks`: the proxy fetches nothing (Istio's pilot inlines JWKS), so every
    /// token fails as Envoy's do when the fetch fails.
    Remote,
}

/// What a request must present.
#[derive(Debug)]
enum Requirement {
    /// A valid token of this provider.
    Provider(usize),
    Any(Vec<Requirement>),
    All(Vec<Requirement>),
    /// No token at all, or a valid one.
    AllowMissing,
    /// Anything: valid tokens are still used.
    AllowMissingOrFailed,
}

/// What the filter does to a request it lets through.
#[derive(Debug, Default)]
pub(crate) struct Passed {
    /// Headers to set (forwarded payloads, claims).
    set: Vec<(HeaderName, HeaderValue)>,
    /// Headers to remove (tokens not forwarded).
    remove: Vec<HeaderName>,
    /// Metadata to set: key and value in the filter's namespace.
    metadata: Vec<(String, Value)>,
}

impl Passed {
    /// Applies the filter's changes to the request's headers and metadata.
    pub(crate) fn apply(self, headers: &mut HeaderMap, metadata: &mut Metadata) {
        for name in self.remove {
            headers.remove(name);
        }
        for (name, value) in self.set {
            headers.insert(name, value);
        }
        for (key, value) in self.metadata {
            metadata.set(JWT_AUTHN, &key, value);
        }
    }
}

impl JwtAuthn {
    /// Compiles the filter, its counters under `http.<stat_prefix>.jwt_authn.`; errors
    /// name fields within its config.
    pub(crate) fn compile(
        config: &JwtAuthentication,
        stats: &HttpStats,
    ) -> Result<JwtAuthn, Invalid> {
        if config.filter_state_rules.is_some() {
            return Err(Problem::Unsupported.at("filter_state_rules"));
        }
        let mut names: Vec<&String> = config.providers.keys().collect();
        names.sort();
        let providers = names
            .iter()
            .map(|name| {
                Provider::compile(name, &config.providers[*name])
                    .within(&format!("providers[{name:?}]"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let index: HashMap<&str, usize> = providers
            .iter()
            .enumerate()
            .map(|(i, p)| (p.name.as_str(), i))
            .collect();
        let mut map = HashMap::new();
        for (name, requirement) in &config.requirement_map {
            let compiled = Requirement::compile(requirement, &index)
                .within(&format!("requirement_map[{name:?}]"))?;
            map.insert(name.as_str(), Arc::new(compiled));
        }
        let rules = config
            .rules
            .iter()
            .enumerate()
            .map(|(i, rule)| {
                let at = format!("rules[{i}]");
                let route = rule
                    .r#match
                    .as_ref()
                    .ok_or_else(|| Problem::Missing.at(format!("{at}.match")))?;
                let matcher = RouteMatch::compile(route).within(&format!("{at}.match"))?;
                let requirement = match &rule.requirement_type {
                    Some(RequirementType::Requires(r)) => {
                        Arc::new(Requirement::compile(r, &index).within(&format!("{at}.requires"))?)
                    }
                    Some(RequirementType::RequirementName(name)) => {
                        map.get(name.as_str()).cloned().ok_or_else(|| {
                            Problem::invalid(format!("no requirement named {name:?}"))
                                .at(format!("{at}.requirement_name"))
                        })?
                    }
                    // No requirement: verification is off for these requests.
                    None => Arc::new(Requirement::AllowMissingOrFailed),
                };
                Ok((matcher, requirement))
            })
            .collect::<Result<_, Invalid>>()?;
        Ok(JwtAuthn {
            providers,
            rules,
            bypass_cors_preflight: config.bypass_cors_preflight,
            allowed: stats.counter("jwt_authn.allowed"),
            denied: stats.counter("jwt_authn.denied"),
        })
    }

    /// Verifies `req` against the requirement of the first rule it matches: what to
    /// change in it, or why it fails.
    pub(crate) fn check(&self, req: &RequestHead<'_>) -> Result<Passed, Rejected> {
        if self.bypass_cors_preflight && is_cors_preflight(req) {
            return Ok(Passed::default());
        }
        let path = req.path_only();
        let Some((_, requirement)) = self.rules.iter().find(|(m, _)| m.matches(req, path, 0))
        else {
            return Ok(Passed::default());
        };
        let mut session = Session {
            authn: self,
            req,
            now: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            results: (0..self.providers.len()).map(|_| None).collect(),
        };
        match session.satisfy(requirement) {
            Ok(()) => {
                self.allowed.inc();
                Ok(session.passed())
            }
            Err(e) => {
                self.denied.inc();
                tracing::debug!(error = %e, "jwt_authn: request rejected");
                Err(Rejected {
                    error: e,
                    // Envoy's realm is the request's URL, query included.
                    realm: format!("{}://{}{}", req.scheme, req.authority, req.path),
                })
            }
        }
    }
}

/// A request whose token failed, and the realm (its URL) to name in the challenge.
#[derive(Debug)]
pub(crate) struct Rejected {
    error: JwtError,
    realm: String,
}

impl Rejected {
    /// Envoy's answer: 401, the reason as the body, and `www-authenticate` naming the
    /// realm and, for a token that was there, `error="invalid_token"`. Envoy answers a
    /// token whose audience is not allowed with 403; Istio documents every invalid token,
    /// a wrong audience among them, as rejected with 401, and the mesh follows Istio.
    pub(crate) fn response(&self) -> Response<ProxyBody> {
        let mut response = local(StatusCode::UNAUTHORIZED, self.error.to_string());
        let mut challenge = format!("Bearer realm=\"{}\"", self.realm);
        if self.error != JwtError::Missing {
            challenge.push_str(", error=\"invalid_token\"");
        }
        if let Ok(value) = HeaderValue::from_str(&challenge) {
            response
                .headers_mut()
                .insert(header::WWW_AUTHENTICATE, value);
        }
        response
    }
}

/// A CORS preflight: `OPTIONS` with `Origin` and `Access-Control-Request-Method`.
fn is_cors_preflight(req: &RequestHead<'_>) -> bool {
    *req.method == Method::OPTIONS
        && req.headers.contains_key(header::ORIGIN)
        && req
            .headers
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD)
}

/// One request's verification: each provider's token verified at most once.
struct Session<'a, 'r> {
    authn: &'a JwtAuthn,
    req: &'a RequestHead<'r>,
    now: u64,
    results: Vec<Option<Result<Verified<'r>, JwtError>>>,
}

/// A token a provider accepted.
struct Verified<'r> {
    location: usize,
    jwt: Jwt<'r>,
}

impl<'r> Session<'_, 'r> {
    fn satisfy(&mut self, requirement: &Requirement) -> Result<(), JwtError> {
        match requirement {
            Requirement::Provider(i) => self.provider(*i),
            Requirement::All(all) => all.iter().try_for_each(|r| self.satisfy(r)),
            Requirement::Any(any) => {
                let mut failure = None;
                for r in any {
                    match self.satisfy(r) {
                        Ok(()) => return Ok(()),
                        // The first failure of a token that was there says most.
                        Err(e) if e != JwtError::Missing => {
                            failure.get_or_insert(e);
                        }
                        Err(_) => {}
                    }
                }
                Err(failure.unwrap_or(JwtError::Missing))
            }
            Requirement::AllowMissing => {
                let mut outcome = Ok(());
                for i in 0..self.authn.providers.len() {
                    match self.provider(i) {
                        Ok(()) => return Ok(()),
                        Err(JwtError::Missing) => {}
                        Err(e) => outcome = outcome.and(Err(e)),
                    }
                }
                outcome
            }
            Requirement::AllowMissingOrFailed => {
                for i in 0..self.authn.providers.len() {
                    let _ = self.provider(i);
                }
                Ok(())
            }
        }
    }

    /// Whether provider `i` accepts the request's token for it (verified once).
    fn provider(&mut self, i: usize) -> Result<(), JwtError> {
        if self.results[i].is_none() {
            let provider = &self.authn.providers[i];
            let found = provider
                .locations
                .iter()
                .enumerate()
                .find_map(|(at, l)| l.find(self.req).map(|token| (at, token)));
            self.results[i] = Some(match found {
                None => Err(JwtError::Missing),
                Some((location, token)) => provider
                    .verify(token, self.now)
                    .map(|jwt| Verified { location, jwt }),
            });
        }
        match &self.results[i] {
            Some(Ok(_)) => Ok(()),
            Some(Err(e)) => Err(*e),
            None => unreachable!("set above"),
        }
    }

    /// What every accepted token asks to change in the request.
    fn passed(self) -> Passed {
        let mut passed = Passed::default();
        for (provider, result) in self.authn.providers.iter().zip(self.results) {
            if let Some(Ok(verified)) = result {
                provider.effects(&verified, &mut passed);
            }
        }
        passed
    }
}

impl Provider {
    fn compile(name: &str, p: &JwtProvider) -> Result<Provider, Invalid> {
        let set = |field: &'static str, is_set: bool| match is_set {
            true => Err(Problem::Unsupported.at(field)),
            false => Ok(()),
        };
        set("subjects", p.subjects.is_some())?;
        set("require_expiration", p.require_expiration)?;
        set("max_lifetime", p.max_lifetime.is_some())?;
        set("header_in_metadata", !p.header_in_metadata.is_empty())?;
        set(
            "failed_status_in_metadata",
            !p.failed_status_in_metadata.is_empty(),
        )?;
        let keys = match &p.jwks_source_specifier {
            Some(JwksSourceSpecifier::LocalJwks(source)) => {
                let text = inline(source).within("local_jwks")?;
                Keys::Local(
                    jwk::parse_jwks(text).map_err(|r| Problem::invalid(r).at("local_jwks"))?,
                )
            }
            Some(JwksSourceSpecifier::RemoteJwks(_)) => Keys::Remote,
            None => return Err(Problem::Missing.at("local_jwks")),
        };
        let mut locations = Vec::new();
        for (i, h) in p.from_headers.iter().enumerate() {
            let name = HeaderName::from_bytes(h.name.as_bytes()).map_err(|_| {
                Problem::InvalidHeaderName(h.name.clone()).at(format!("from_headers[{i}].name"))
            })?;
            locations.push(Location::Header {
                name,
                prefix: h.value_prefix.clone(),
            });
        }
        locations.extend(p.from_params.iter().cloned().map(Location::Param));
        locations.extend(p.from_cookies.iter().cloned().map(Location::Cookie));
        if locations.is_empty() {
            locations = Location::defaults();
        }
        let header = |field: String, value: &str| {
            HeaderName::from_bytes(value.as_bytes())
                .map_err(|_| Problem::InvalidHeaderName(value.to_owned()).at(field))
        };
        Ok(Provider {
            name: name.to_owned(),
            issuer: p.issuer.clone(),
            audiences: p.audiences.clone(),
            keys,
            locations,
            forward: p.forward,
            forward_payload_header: Some(&p.forward_payload_header)
                .filter(|h| !h.is_empty())
                .map(|h| header("forward_payload_header".into(), h))
                .transpose()?,
            pad_forward_payload_header: p.pad_forward_payload_header,
            payload_in_metadata: Some(p.payload_in_metadata.clone()).filter(|m| !m.is_empty()),
            space_delimited_claims: p
                .normalize_payload_in_metadata
                .as_ref()
                .map(|n| n.space_delimited_claims.clone())
                .unwrap_or_default(),
            claim_to_headers: p
                .claim_to_headers
                .iter()
                .enumerate()
                .map(|(i, c)| {
                    let name =
                        header(format!("claim_to_headers[{i}].header_name"), &c.header_name)?;
                    Ok((name, c.claim_name.split('.').map(str::to_owned).collect()))
                })
                .collect::<Result<_, Invalid>>()?,
            clock_skew: if p.clock_skew_seconds == 0 {
                DEFAULT_CLOCK_SKEW
            } else {
                u64::from(p.clock_skew_seconds)
            },
        })
    }

    /// Verifies `token` as this provider's, at `now` (seconds since the epoch), in
    /// Envoy's order: form, issuer, time, audience, key, signature.
    fn verify<'t>(&self, token: &'t str, now: u64) -> Result<Jwt<'t>, JwtError> {
        let jwt = Jwt::parse(token)?;
        let issuer = jwt.payload.get("iss").and_then(Value::as_str);
        if !self.issuer.is_empty() && issuer != Some(self.issuer.as_str()) {
            return Err(JwtError::UnknownIssuer);
        }
        if jwt
            .time("nbf")
            .is_some_and(|nbf| now + self.clock_skew < nbf)
        {
            return Err(JwtError::NotYetValid);
        }
        if jwt
            .time("exp")
            .is_some_and(|exp| now > exp + self.clock_skew)
        {
            return Err(JwtError::Expired);
        }
        if !self.audiences.is_empty()
            && !jwt
                .audiences()
                .iter()
                .any(|a| self.audiences.iter().any(|b| a == b))
        {
            return Err(JwtError::AudienceNotAllowed);
        }
        let keys = match &self.keys {
            Keys::Local(keys) => keys,
            Keys::Remote => return Err(JwtError::JwksFetchFailed),
        };
        let mut fitting = keys
            .iter()
            .filter(|k| k.fits(jwt.alg, jwt.kid.as_deref()))
            .peekable();
        if fitting.peek().is_none() {
            return Err(JwtError::NoMatchingKey);
        }
        if fitting.any(|k| k.verify(jwt.alg, jwt.signed.as_bytes(), &jwt.signature)) {
            Ok(jwt)
        } else {
            Err(JwtError::VerificationFails)
        }
    }

    /// What an accepted token asks to change in the request.
    fn effects(&self, verified: &Verified<'_>, passed: &mut Passed) {
        let jwt = &verified.jwt;
        if !self.forward
            && let Location::Header { name, .. } = &self.locations[verified.location]
        {
            passed.remove.push(name.clone());
        }
        if let Some(name) = &self.forward_payload_header {
            let text = match self.pad_forward_payload_header {
                true => base64url::encode(
                    &base64url::decode(jwt.payload_text).unwrap_or_default(),
                    true,
                ),
                false => jwt.payload_text.to_owned(),
            };
            if let Ok(value) = HeaderValue::from_str(&text) {
                passed.set.push((name.clone(), value));
            }
        }
        for (name, path) in &self.claim_to_headers {
            let claim = path
                .iter()
                .try_fold(None::<&Value>, |at, key| match at {
                    None => jwt.payload.get(key).map(Some),
                    Some(v) => v.get(key).map(Some),
                })
                .flatten();
            let text = match claim {
                Some(Value::String(s)) => s.clone(),
                Some(v @ (Value::Number(_) | Value::Bool(_))) => v.to_string(),
                _ => continue,
            };
            if let Ok(value) = HeaderValue::from_str(&text) {
                passed.set.push((name.clone(), value));
            }
        }
        if let Some(key) = &self.payload_in_metadata {
            let mut payload = jwt.payload.clone();
            for claim in &self.space_delimited_claims {
                if let Some(Value::String(words)) = payload.get(claim) {
                    let list = words
                        .split(' ')
                        .filter(|w| !w.is_empty())
                        .map(|w| Value::String(w.to_owned()))
                        .collect();
                    payload.insert(claim.clone(), Value::Array(list));
                }
            }
            passed.metadata.push((key.clone(), Value::Object(payload)));
        }
    }
}

impl Requirement {
    fn compile(
        r: &JwtRequirement,
        providers: &HashMap<&str, usize>,
    ) -> Result<Requirement, Invalid> {
        let list = |items: &[JwtRequirement], field: &str| {
            items
                .iter()
                .enumerate()
                .map(|(i, r)| Requirement::compile(r, providers).within(&format!("{field}[{i}]")))
                .collect::<Result<Vec<_>, _>>()
        };
        Ok(match &r.requires_type {
            Some(RequiresType::ProviderName(name)) => {
                Requirement::Provider(*providers.get(name.as_str()).ok_or_else(|| {
                    Problem::invalid(format!("no provider named {name:?}")).at("provider_name")
                })?)
            }
            Some(RequiresType::RequiresAny(any)) => {
                Requirement::Any(list(&any.requirements, "requires_any.requirements")?)
            }
            Some(RequiresType::RequiresAll(all)) => {
                Requirement::All(list(&all.requirements, "requires_all.requirements")?)
            }
            Some(RequiresType::AllowMissing(_)) => Requirement::AllowMissing,
            Some(RequiresType::AllowMissingOrFailed(_)) => Requirement::AllowMissingOrFailed,
            Some(RequiresType::ProviderAndAudiences(_)) => {
                return Err(Problem::Unsupported.at("provider_and_audiences"));
            }
            Some(RequiresType::ExtractOnlyWithoutValidation(_)) => {
                return Err(Problem::Unsupported.at("extract_only_without_validation"));
            }
            None => return Err(Problem::Missing.at("requires_type")),
        })
    }
}

/// The text of an inline data source (a JWKS the control plane put in the config).
fn inline(source: &DataSource) -> Result<&str, Invalid> {
    match &source.specifier {
        Some(Specifier::InlineString(text)) => Ok(text),
        Some(Specifier::InlineBytes(bytes)) => std::str::from_utf8(bytes)
            .map_err(|_| Problem::invalid("is not UTF-8").at("inline_bytes")),
        Some(Specifier::Filename(_)) => Err(Problem::Unsupported.at("filename")),
        Some(Specifier::EnvironmentVariable(_)) => {
            Err(Problem::Unsupported.at("environment_variable"))
        }
        None => Err(Problem::Missing.at("inline_string")),
    }
}
