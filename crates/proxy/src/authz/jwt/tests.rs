use http::{HeaderMap, Method};
use serde_json::json;

use super::*;

fn compile(yaml: &str) -> Result<JwtAuthn, Invalid> {
    let config: JwtAuthentication = mizzen_xds::json::from_yaml(yaml).unwrap();
    JwtAuthn::compile(&config, &HttpStats::default())
}

const JWKS: &str = r#"{"keys": [{"kty": "OKP", "crv": "Ed25519", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#;

#[test]
fn configs_are_refused_by_field() {
    let field = |yaml: &str| compile(yaml).unwrap_err().field;
    assert_eq!(
        field("providers: {p: {remote_jwks: {}, subjects: {prefix: x}}}"),
        "providers[\"p\"].subjects"
    );
    assert_eq!(
        field("providers: {p: {local_jwks: {inline_string: 'nope'}}}"),
        "providers[\"p\"].local_jwks"
    );
    assert_eq!(
        field(
            "providers: {p: {remote_jwks: {}}}\nrules: [{match: {prefix: /}, requires: {provider_name: q}}]"
        ),
        "rules[0].requires.provider_name"
    );
    assert_eq!(
        field(
            "providers: {p: {remote_jwks: {}}}\nrules: [{match: {prefix: /}, requirement_name: r}]"
        ),
        "rules[0].requirement_name"
    );
}

#[test]
fn tokens_are_read_apart_with_envoys_errors() {
    assert_eq!(Jwt::parse("a.b").unwrap_err(), JwtError::BadFormat);
    assert_eq!(Jwt::parse("a.b.c.d").unwrap_err(), JwtError::BadFormat);
    assert_eq!(Jwt::parse("!.b.c").unwrap_err(), JwtError::HeaderBadBase64);
    let b64 = |v: serde_json::Value| base64url::encode(v.to_string().as_bytes(), false);
    let header = b64(json!({"alg": "HS256"}));
    assert_eq!(
        Jwt::parse(&format!("{header}.e30.")).unwrap_err(),
        JwtError::HeaderBadAlg,
        "HMAC is not a public-key algorithm"
    );
    let header = b64(json!({"alg": "ES256", "kid": "k"}));
    assert_eq!(
        Jwt::parse(&format!("{header}.W10.")).unwrap_err(),
        JwtError::PayloadBadJson,
        "a payload is an object"
    );
    let token = format!("{header}.{}.AQ", b64(json!({"aud": ["a", "b"], "exp": 5})));
    let jwt = Jwt::parse(&token).unwrap();
    assert_eq!(jwt.kid.as_deref(), Some("k"));
    assert_eq!(jwt.audiences(), ["a", "b"]);
    assert_eq!(jwt.time("exp"), Some(5));
    assert_eq!(jwt.signature, [1]);
}

#[test]
fn jwks_keep_the_keys_they_can_use() {
    let keys = jwk::parse_jwks(
        r#"{"keys": [{"kty": "oct", "k": "AQ"}, {"kty": "OKP", "crv": "Ed25519", "kid": "a", "x": "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo"}]}"#,
    )
    .unwrap();
    assert_eq!(keys.len(), 1);
    assert!(keys[0].fits(jwk::Alg::EdDsa, Some("a")));
    assert!(keys[0].fits(jwk::Alg::EdDsa, None));
    assert!(!keys[0].fits(jwk::Alg::EdDsa, Some("b")));
    assert!(!keys[0].fits(jwk::Alg::Es256, Some("a")));
    assert!(jwk::parse_jwks(r#"{"keys": [{"kty": "oct", "k": "AQ"}]}"#).is_err());
    assert!(jwk::parse_jwks("[]").is_err());
}

#[test]
fn rules_pick_the_requirement_and_cors_preflights_pass() {
    let authn = compile(&format!(
        "providers: {{p: {{local_jwks: {{inline_string: '{JWKS}'}}}}}}\nrules: [{{match: {{prefix: /public}}}}, {{match: {{prefix: /}}, requires: {{provider_name: p}}}}]\nbypass_cors_preflight: true"
    ))
    .unwrap();
    let mut headers = HeaderMap::new();
    let check = |method: &Method, path: &str, headers: &HeaderMap| {
        let head = RequestHead {
            authority: "shop",
            method,
            path,
            scheme: "http",
            headers,
        };
        authn
            .check(&head)
            .map(|_| ())
            .map_err(|r| r.response().status().as_u16())
    };
    assert_eq!(check(&Method::GET, "/public/a", &headers), Ok(()));
    assert_eq!(check(&Method::GET, "/private", &headers), Err(401));
    assert_eq!(check(&Method::OPTIONS, "/private", &headers), Err(401));
    headers.insert("origin", "https://ui".parse().unwrap());
    headers.insert("access-control-request-method", "POST".parse().unwrap());
    assert_eq!(check(&Method::OPTIONS, "/private", &headers), Ok(()));
}
