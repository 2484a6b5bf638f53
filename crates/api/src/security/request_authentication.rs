//! `security.istio.io` RequestAuthentication: which JSON Web Tokens a workload accepts,
//! where it finds them, and what it forwards once they are verified.

use serde::de::Deserializer;
use serde::{Deserialize, Serialize};

use super::peer_authentication::{refuse_dry_run_annotation, warn_empty_selector};
use crate::types::{Duration, PolicyTargetReference, WorkloadSelector, is_default, string_enum};
use crate::validate::{
    Validate, Validator, check_duration_at_least, check_max_items, check_policy_targets,
    is_header_token,
};

/// The `(group, kind)`s a security policy's `targetRef`/`targetRefs` may name, as Istio
/// allows them: Services, ServiceEntries, Gateway API Gateways and GatewayClasses.
pub(crate) const POLICY_TARGET_KINDS: &[(&str, &str)] = &[
    ("", "Service"),
    ("networking.istio.io", "ServiceEntry"),
    ("gateway.networking.k8s.io", "Gateway"),
    ("gateway.networking.k8s.io", "GatewayClass"),
];

/// The CRD's `maxItems` for `targetRefs`.
const MAX_TARGET_REFS: usize = 16;
/// The CRD's `maxItems` for `jwtRules`.
const MAX_JWT_RULES: usize = 4096;
/// The CRD's `maxItems` for `spaceDelimitedClaims`.
const MAX_SPACE_DELIMITED_CLAIMS: usize = 64;
/// The CRD's `maxLength` for `jwksUri`.
const MAX_JWKS_URI: usize = 2048;

/// `RequestAuthentication`: the JWTs the selected workloads validate. A request with an
/// invalid token is refused; one without a token is accepted unauthenticated (pair it
/// with an AuthorizationPolicy to require one).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RequestAuthentication {
    /// The workloads the policy applies to; absent means every workload in its namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<WorkloadSelector>,
    /// A single resource (Gateway, Service…) the policy attaches to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_ref: Option<PolicyTargetReference>,
    /// The resources the policy attaches to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_refs: Vec<PolicyTargetReference>,
    /// The JWT issuers and how their tokens are validated.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub jwt_rules: Vec<JwtRule>,
}

/// Istio's `JWTRule`: one issuer, its keys, where tokens are found and what is output.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JwtRule {
    /// The token's expected `iss` claim; may be empty only when `jwksUri` is set.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub issuer: String,
    /// Accepted `aud` values; empty accepts any audience.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub audiences: Vec<String>,
    /// URL of the issuer's public key set (`http://` or `https://`); also read as
    /// `jwks_uri`.
    #[serde(default, alias = "jwks_uri", skip_serializing_if = "String::is_empty")]
    pub jwks_uri: String,
    /// The public key set inline, as JWKS JSON; mutually exclusive with `jwksUri`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub jwks: String,
    /// Headers the token is read from; with no location at all,
    /// `Authorization: Bearer <token>` and the `access_token` query parameter.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from_headers: Vec<JwtHeader>,
    /// Query parameters the token is read from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from_params: Vec<String>,
    /// Cookies the token is read from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from_cookies: Vec<String>,
    /// Header the verified payload (base64url JSON) is written to for the backend.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub output_payload_to_header: String,
    /// Keeps the original token in the request forwarded upstream.
    #[serde(default, skip_serializing_if = "is_default")]
    pub forward_original_token: bool,
    /// Claims copied into request headers once the token is verified.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub output_claim_to_headers: Vec<ClaimToHeader>,
    /// How long fetching the JWKS from `jwksUri` may take (Istio's default is 5s).
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "jwks_timeout"
    )]
    pub timeout: Option<Duration>,
    /// Claims holding space-separated values, split before matching (in addition to
    /// `scope` and `permission`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub space_delimited_claims: Vec<String>,
    /// Whether a token must be present in the request.
    #[serde(default, skip_serializing_if = "is_default")]
    pub presence: JwtPresence,
}

/// Istio's `JWTHeader`: a header carrying the token, and the prefix before it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct JwtHeader {
    /// The header name; required.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Stripped from the value before decoding, e.g. `Bearer `.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub prefix: String,
}

/// Istio's `ClaimToHeader`: a claim copied into a request header.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClaimToHeader {
    /// The header to create; letters, digits, `-` and `_` only.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub header: String,
    /// The claim to copy; nested claims use `.` (`a.b`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub claim: String,
}

string_enum! {
    /// Whether a JWT must be present (`JWTRule.presence`).
    pub enum JwtPresence {
        /// A request without a token is let through unauthenticated.
        Optional = "OPTIONAL",
        /// A request without a token is refused.
        Required = "REQUIRED",
    }
}

impl JwtRule {
    /// True when the rule names no token location, and so reads tokens from the
    /// defaults: the `Authorization: Bearer` header and the `access_token` parameter.
    pub fn uses_default_locations(&self) -> bool {
        self.from_headers.is_empty() && self.from_params.is_empty() && self.from_cookies.is_empty()
    }
}

impl Validate for RequestAuthentication {
    fn validate(&self, v: &mut Validator<'_>) {
        refuse_dry_run_annotation(v, "RequestAuthentication");
        check_policy_targets(
            v,
            self.selector.as_ref(),
            self.target_ref.as_ref(),
            &self.target_refs,
            POLICY_TARGET_KINDS,
        );
        warn_empty_selector(v, self.selector.as_ref());
        check_max_items(v, "targetRefs", self.target_refs.len(), MAX_TARGET_REFS);
        check_max_items(v, "jwtRules", self.jwt_rules.len(), MAX_JWT_RULES);
        v.each("jwtRules", &self.jwt_rules, |v, rule| rule.validate(v));
    }
}

impl Validate for JwtRule {
    fn validate(&self, v: &mut Validator<'_>) {
        if self.issuer.is_empty() && self.jwks_uri.is_empty() {
            v.error_at(
                "issuer",
                "Required value: issuer or jwksUri must be non-empty string",
            );
        }
        v.each("audiences", &self.audiences, |v, audience| {
            if audience.is_empty() {
                min_length_one(v, "audience must be non-empty string");
            }
        });
        if !self.jwks_uri.is_empty() {
            v.field("jwksUri", |v| {
                if let Some(e) = jwks_uri_error(&self.jwks_uri) {
                    v.error(format!("Invalid value: {:?}: {e}", self.jwks_uri));
                }
            });
        }
        if !self.jwks_uri.is_empty() && !self.jwks.is_empty() {
            v.error("only one of jwks or jwksUri can be set");
        }
        if let Err(e) = check_jwks(&self.jwks) {
            v.error_at("jwks", format!("jwks parse error: {e}"));
        }
        v.each("fromHeaders", &self.from_headers, |v, header| {
            if header.name.is_empty() {
                v.field("name", |v| {
                    required_non_empty(v, "location header name must be non-empty string")
                });
            }
        });
        v.each("fromParams", &self.from_params, |v, param| {
            if param.is_empty() {
                min_length_one(v, "location query must be non-empty string");
            }
        });
        v.each("fromCookies", &self.from_cookies, |v, cookie| {
            if cookie.is_empty() {
                min_length_one(v, "cookie name must be non-empty string");
            }
        });
        if !self.output_payload_to_header.is_empty()
            && !is_header_token(&self.output_payload_to_header)
        {
            v.error_at(
                "outputPayloadToHeader",
                format!(
                    "header name {} is not a valid header name",
                    self.output_payload_to_header
                ),
            );
        }
        v.each(
            "outputClaimToHeaders",
            &self.output_claim_to_headers,
            |v, c| c.validate(v),
        );
        if let Some(timeout) = self.timeout {
            v.field("timeout", |v| {
                check_duration_at_least(v, timeout, Duration::from_millis(1));
                if timeout.get().subsec_nanos() % 1_000_000 != 0 {
                    v.error("only durations to ms precision are supported");
                }
            });
        }
        check_max_items(
            v,
            "spaceDelimitedClaims",
            self.space_delimited_claims.len(),
            MAX_SPACE_DELIMITED_CLAIMS,
        );
        v.each(
            "spaceDelimitedClaims",
            &self.space_delimited_claims,
            |v, claim| {
                if claim.is_empty() {
                    min_length_one(v, "claim name must be non-empty string");
                }
            },
        );
    }
}

impl Validate for ClaimToHeader {
    fn validate(&self, v: &mut Validator<'_>) {
        const ISTIO: &str = "outputClaimToHeaders header and claim value must be non-empty string";
        if self.header.is_empty() {
            v.field("header", |v| required_non_empty(v, ISTIO));
        } else if !is_strict_header_name(&self.header) {
            v.field("header", |v| {
                let path = v.path().to_owned();
                v.error(format!(
                    "Invalid value: {:?}: {path} in body should match '^[-_A-Za-z0-9]+$' (header name {} is not a valid header name)",
                    self.header, self.header
                ));
            });
        }
        if self.claim.is_empty() {
            v.field("claim", |v| required_non_empty(v, ISTIO));
        }
    }
}

/// Reports an empty string where the CRD has `minLength: 1`, in the API server's words,
/// followed by Istio's webhook wording.
fn min_length_one(v: &mut Validator<'_>, istio: &str) {
    let path = v.path().to_owned();
    v.error(format!(
        "Invalid value: \"\": {path} in body should be at least 1 chars long ({istio})"
    ));
}

/// Reports a required string (CRD `required` and `minLength: 1`) that is absent or
/// empty; proto3 cannot tell the two apart, so the message names both rules.
fn required_non_empty(v: &mut Validator<'_>, istio: &str) {
    let path = v.path().to_owned();
    v.error(format!(
        "Required value: {path} in body should be at least 1 chars long ({istio})"
    ));
}

/// Istio's strict header names (`ValidateStrictHTTPHeaderName`), also the CRD pattern
/// `^[-_A-Za-z0-9]+$`.
fn is_strict_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// Why `uri` is not an absolute `http`/`https` URL, as Istio's `ParseJwksURI` and the
/// CRD's `url(self).getScheme() in ["http", "https"]` rule require.
fn jwks_uri_error(uri: &str) -> Option<String> {
    const SCHEME: &str = "url must have scheme http:// or https://";
    if uri.len() > MAX_JWKS_URI {
        return Some(format!("Too long: may not be longer than {MAX_JWKS_URI}"));
    }
    if uri.bytes().any(|b| b < 0x20 || b == 0x7f || b == b' ') {
        return Some(format!("{SCHEME} (invalid character in URL)"));
    }
    let Some((scheme, rest)) = uri.split_once(':') else {
        return Some(format!("{SCHEME} (missing scheme)"));
    };
    let scheme_ok = scheme
        .as_bytes()
        .first()
        .is_some_and(u8::is_ascii_alphabetic)
        && scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'-' | b'.'));
    if !scheme_ok {
        return Some(format!("{SCHEME} (missing scheme)"));
    }
    let scheme = scheme.to_ascii_lowercase();
    if scheme != "http" && scheme != "https" {
        return Some(format!("{SCHEME} (URI scheme {scheme:?} is not supported)"));
    }
    if let Some(authority) = rest.strip_prefix("//") {
        let authority = authority.split(['/', '?', '#']).next().unwrap_or_default();
        let host_port = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
        let port = match host_port.rsplit_once(']') {
            Some((_, after)) => after.strip_prefix(':'),
            None => host_port.split_once(':').map(|(_, p)| p),
        };
        if let Some(port) = port.filter(|p| !p.bytes().all(|b| b.is_ascii_digit())) {
            return Some(format!("invalid port {:?} after host", format!(":{port}")));
        }
    }
    None
}

/// Checks that `jwks`, when set, is a JSON Web Key or Key Set whose keys carry the
/// members their key type needs, as the JWK parser Istio uses insists.
fn check_jwks(jwks: &str) -> Result<(), String> {
    if jwks.is_empty() {
        return Ok(());
    }
    let value: serde_json::Value =
        serde_json::from_str(jwks).map_err(|e| format!("failed to unmarshal JWK set: {e}"))?;
    let object = value
        .as_object()
        .ok_or("failed to unmarshal JWK set: expected a JSON object")?;
    match object.get("keys") {
        Some(serde_json::Value::Array(keys)) => keys.iter().enumerate().try_for_each(|(i, key)| {
            check_jwk(key).map_err(|e| format!("failed to parse key #{i}: {e}"))
        }),
        Some(_) => Err("failed to unmarshal JWK set: \"keys\" must be an array".into()),
        None => check_jwk(&value).map_err(|e| format!("failed to parse key: {e}")),
    }
}

fn check_jwk(key: &serde_json::Value) -> Result<(), String> {
    let key = key.as_object().ok_or("key must be a JSON object")?;
    let member = |name: &str| {
        key.get(name)
            .and_then(serde_json::Value::as_str)
            .is_some_and(|s| !s.is_empty())
    };
    let kty = key
        .get("kty")
        .and_then(serde_json::Value::as_str)
        .ok_or("required field kty is missing")?;
    let required: &[&str] = match kty {
        "RSA" => &["n", "e"],
        "EC" => &["crv", "x", "y"],
        "OKP" => &["crv", "x"],
        "oct" => &["k"],
        other => return Err(format!("invalid key type from JSON ({other})")),
    };
    match required.iter().find(|name| !member(name)) {
        Some(name) => Err(format!("required field {name} is missing for {kty} key")),
        None => Ok(()),
    }
}

/// Reads `timeout`, reporting unparsable durations with the CRD rule's wording.
fn jwks_timeout<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
    let text = Option::<String>::deserialize(d)?;
    text.map(|t| {
        t.parse::<Duration>().map_err(|e| {
            serde::de::Error::custom(format!("must be a valid duration greater than 1ms: {e}"))
        })
    })
    .transpose()
}

#[cfg(test)]
mod tests {
    use crate::object::Object;
    use crate::testing::{self, messages};
    use crate::validate::{Issue, Severity};

    fn load(yaml: &str) -> Result<Object, String> {
        testing::load(yaml)
    }

    fn errors(issues: &[Issue]) -> Vec<String> {
        messages(issues, Severity::Error)
    }

    fn spec(body: &str) -> String {
        format!(
            "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata:\n  name: ra\n  namespace: foo\nspec:\n{body}"
        )
    }

    fn validate(body: &str) -> Vec<String> {
        errors(&load(&spec(body)).expect("loads").validate())
    }

    /// Validates one JWT rule written as YAML lines indented for `jwtRules:`.
    fn rule(lines: &str) -> Vec<String> {
        validate(&format!("  jwtRules:\n  - {lines}\n"))
    }

    const FULL: &str = r#"  targetRefs:
  - group: ""
    kind: Service
    name: foo
  jwtRules:
  - issuer: "example.com"
    audiences: [a, b]
    jwksUri: https://example.com/.well-known/jwks.json
    forwardOriginalToken: true
    fromCookies: [foo]
    fromParams: [token]
    fromHeaders:
      - name: foo
        prefix: baz
    outputClaimToHeaders:
    - claim: abc
      header: def
    timeout: 5s
    outputPayloadToHeader: header
    spaceDelimitedClaims:
    - "custom_scope"
    - "provider.login.scope"
    presence: REQUIRED
"#;

    #[test]
    fn valid_policies_load_validate_and_round_trip() {
        let jwks = r#"{"keys":[{"kty":"RSA","n":"xAE7eB6qugXyCAG3yhh7pkDkT65pHymX-P7KfIupjf59vsdo91bSP9C8H07pSAGQO1MV_xFj9VswgsCg4R6otmg5PV2He95lZdHtOcU5DXIg_pbhLdKXbi66GlVeK6ABZOUW3WYtnNHD-91gVuoeJT_DwtGGcp4ignkgXfkiEm4sw-4sfb4qdt5oLbyVpmW6x9cfa7vs2WTfURiCrBoUqgBo_-4WTiULmmHSGZHOjzwa8WtrtOQGsAFjIbno85jp6MnGGGZPYZbDAa_b3y5u-YpW7ypZrvD8BgtKVjgtQgZhLAGezMt0ua3DRrWnKqTZ0BJ_EyxOGuHJrLsn00fnMQ","e":"AQAB"}]}"#;
        for body in [
            FULL.to_owned(),
            "  selector:\n    matchLabels:\n      app: httpbin\n  jwtRules:\n  - issuer: issuer-foo\n    jwks_uri: http://example.com:8080/jwks\n".to_owned(),
            "  jwtRules:\n  - jwksUri: HTTPS://example.com/jwks\n".to_owned(),
            format!("  jwtRules:\n  - issuer: foo\n    jwks: '{jwks}'\n"),
            "  jwtRules:\n  - issuer: foo\n    jwks: '{\"kty\":\"EC\",\"crv\":\"P-256\",\"x\":\"a\",\"y\":\"b\"}'\n".to_owned(),
            "  targetRef:\n    group: gateway.networking.k8s.io\n    kind: Gateway\n    name: gw\n".to_owned(),
            "  {}\n".to_owned(),
        ] {
            let object = load(&spec(&body)).expect("loads");
            assert_eq!(errors(&object.validate()), Vec::<String>::new(), "{body}");
            let text = serde_yaml_ng::to_string(&object).unwrap();
            assert_eq!(load(&text).unwrap(), object, "{text}");
        }
    }

    #[test]
    fn jwks_uri_alias_is_read_and_written_as_jwks_uri() {
        let Object::RequestAuthentication(ra) = load(&spec(
            "  jwtRules:\n  - issuer: a\n    jwks_uri: https://a/jwks\n",
        ))
        .unwrap() else {
            panic!("not a RequestAuthentication")
        };
        assert_eq!(ra.spec.jwt_rules[0].jwks_uri, "https://a/jwks");
        let json = serde_json::to_string(&ra.spec).unwrap();
        assert!(json.contains("\"jwksUri\""), "{json}");
        assert!(ra.spec.jwt_rules[0].uses_default_locations());
    }

    #[test]
    fn issuer_or_jwks_uri_is_required() {
        assert_eq!(
            rule("audiences: [a]"),
            ["spec.jwtRules[0].issuer: Required value: issuer or jwksUri must be non-empty string"]
        );
    }

    #[test]
    fn empty_strings_are_refused() {
        let errs = rule(
            "issuer: example\n    audiences: [\"\"]\n    fromParams: [\"\"]\n    fromCookies: [\"\"]\n    spaceDelimitedClaims: [\"\"]",
        );
        assert_eq!(errs.len(), 4, "{errs:?}");
        for (err, field) in errs.iter().zip([
            "audiences[0]",
            "fromParams[0]",
            "fromCookies[0]",
            "spaceDelimitedClaims[0]",
        ]) {
            assert!(
                err.contains(&format!("{field} in body should be at least 1 chars long")),
                "{err}"
            );
        }
    }

    #[test]
    fn jwks_uri_must_be_http_or_https() {
        for uri in [
            "\"hTPp\\\\\\blah\"",
            "ftp://example.com/jwks",
            "example.com/jwks",
            "\"http://a b\"",
            "http://example.com:abc/jwks",
        ] {
            let errs = rule(&format!("issuer: example\n    jwksUri: {uri}"));
            assert_eq!(errs.len(), 1, "{uri}: {errs:?}");
            assert!(
                errs[0].starts_with("spec.jwtRules[0].jwksUri: Invalid value"),
                "{errs:?}"
            );
        }
        let errs = rule("issuer: example\n    jwksUri: ftp://example.com/jwks");
        assert!(errs[0].contains("url must have scheme"), "{errs:?}");
        let long = format!("https://example.com/{}", "a".repeat(2048));
        let errs = rule(&format!("issuer: example\n    jwksUri: {long}"));
        assert!(errs[0].contains("Too long"), "{errs:?}");
    }

    #[test]
    fn jwks_and_jwks_uri_are_exclusive() {
        let errs = rule("issuer: example\n    jwksUri: https://a/jwks\n    jwks: '{\"keys\":[]}'");
        assert_eq!(
            errs,
            ["spec.jwtRules[0]: only one of jwks or jwksUri can be set"]
        );
    }

    #[test]
    fn inline_jwks_must_parse() {
        for jwks in [
            "not json",
            "[1]",
            "{\"keys\":[{\"kty\":\"RSA\",\"n\":\"x\"}]}",
            "{\"kty\":\"XYZ\"}",
            "{\"keys\":{}}",
        ] {
            let errs = rule(&format!("issuer: example\n    jwks: '{jwks}'"));
            assert_eq!(errs.len(), 1, "{jwks}: {errs:?}");
            assert!(
                errs[0].starts_with("spec.jwtRules[0].jwks: jwks parse error: "),
                "{errs:?}"
            );
        }
    }

    #[test]
    fn token_locations_are_checked() {
        let errs = rule("issuer: example\n    fromHeaders:\n    - prefix: baz\n    - name: \"\"");
        assert_eq!(
            errs,
            [
                "spec.jwtRules[0].fromHeaders[0].name: Required value: spec.jwtRules[0].fromHeaders[0].name in body should be at least 1 chars long (location header name must be non-empty string)",
                "spec.jwtRules[0].fromHeaders[1].name: Required value: spec.jwtRules[0].fromHeaders[1].name in body should be at least 1 chars long (location header name must be non-empty string)",
            ]
        );
    }

    #[test]
    fn claim_to_headers_are_checked() {
        let errs = rule(
            "issuer: example\n    outputClaimToHeaders:\n    - claim: \"\"\n      header: h\n    - claim: x\n      header: \"\"\n    - claim: x\n      header: \":authority\"",
        );
        assert_eq!(errs.len(), 3, "{errs:?}");
        assert!(errs[0].starts_with("spec.jwtRules[0].outputClaimToHeaders[0].claim: Required value: spec.jwtRules[0].outputClaimToHeaders[0].claim in body should be at least 1 chars long"), "{errs:?}");
        assert!(
            errs[1]
                .starts_with("spec.jwtRules[0].outputClaimToHeaders[1].header: Required value: "),
            "{errs:?}"
        );
        assert!(
            errs[2]
                .contains("spec.jwtRules[0].outputClaimToHeaders[2].header in body should match"),
            "{errs:?}"
        );
        let errs = rule("issuer: example\n    outputPayloadToHeader: \"bad header\"");
        assert_eq!(
            errs,
            [
                "spec.jwtRules[0].outputPayloadToHeader: header name bad header is not a valid header name"
            ]
        );
    }

    #[test]
    fn timeout_must_be_at_least_a_millisecond() {
        let err = load(&spec(
            "  jwtRules:\n  - issuer: example\n    timeout: apple\n",
        ))
        .unwrap_err();
        assert!(
            err.contains("must be a valid duration greater than"),
            "{err}"
        );
        let errs = rule("issuer: example\n    timeout: 0s");
        assert_eq!(
            errs,
            ["spec.jwtRules[0].timeout: must be a valid duration greater than 1ms, got 0s"]
        );
        let errs = rule("issuer: example\n    timeout: 1500us");
        assert_eq!(
            errs,
            ["spec.jwtRules[0].timeout: only durations to ms precision are supported"]
        );
    }

    #[test]
    fn unknown_presence_is_refused_at_load() {
        let err = load(&spec(
            "  jwtRules:\n  - issuer: example\n    presence: MANDATORY\n",
        ))
        .unwrap_err();
        assert!(err.contains(r#"Unsupported value: "MANDATORY""#), "{err}");
    }

    #[test]
    fn null_entries_are_refused() {
        // YAML may read a null entry as an empty object, which lacks the required fields.
        assert_eq!(
            validate("  jwtRules:\n  -\n"),
            ["spec.jwtRules[0].issuer: Required value: issuer or jwksUri must be non-empty string"]
        );
        assert!(
            load(&spec(
                "  jwtRules:\n  - issuer: example\n    outputClaimToHeaders:\n    - ~\n"
            ))
            .is_err()
        );
    }

    #[test]
    fn targets_are_checked() {
        let errs = validate(
            "  selector:\n    matchLabels:\n      a: b\n  targetRef:\n    kind: Service\n    name: foo\n",
        );
        assert_eq!(
            errs,
            ["spec: only one of targetRefs or selector can be set"]
        );
        let errs = validate("  targetRef:\n    kind: Service\n");
        assert_eq!(errs, ["spec.targetRef.name: Required value"]);
        let errs = validate("  targetRef:\n    kind: Service\n    name: foo\n    namespace: bar\n");
        assert_eq!(
            errs,
            ["spec.targetRef.namespace: cross namespace referencing is not currently supported"]
        );
        let errs = validate("  targetRef:\n    kind: Deployment\n    name: foo\n");
        assert_eq!(errs.len(), 1, "{errs:?}");
        let refs: String = (0..17)
            .map(|i| format!("  - kind: Service\n    name: s{i}\n"))
            .collect();
        let errs = validate(&format!("  targetRefs:\n{refs}"));
        assert_eq!(
            errs,
            ["spec.targetRefs: Too many: 17: must have at most 16 items"]
        );
    }
}
