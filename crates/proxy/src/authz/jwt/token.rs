//! Where a provider finds its token in a request (`from_headers`, `from_params`,
//! `from_cookies`, or Envoy's default: `Authorization: Bearer …` and `access_token`),
//! and a token's three parts, decoded and checked.

use http::HeaderName;
use serde_json::{Map, Value};

use super::base64url;
use super::error::JwtError;
use super::jwk::Alg;
use crate::route::RequestHead;

/// One place a token may be.
#[derive(Debug)]
pub(crate) enum Location {
    /// A header's value after `prefix` (`Bearer `).
    Header { name: HeaderName, prefix: String },
    /// A query parameter.
    Param(String),
    /// A cookie.
    Cookie(String),
}

impl Location {
    /// Envoy's locations when a provider names none.
    pub(crate) fn defaults() -> Vec<Location> {
        vec![
            Location::Header {
                name: http::header::AUTHORIZATION,
                prefix: "Bearer ".to_owned(),
            },
            Location::Param("access_token".to_owned()),
        ]
    }

    /// The token at this location in `req`, if there is one.
    pub(crate) fn find<'r>(&self, req: &RequestHead<'r>) -> Option<&'r str> {
        let token = match self {
            Location::Header { name, prefix } => req
                .headers
                .get_all(name)
                .iter()
                .filter_map(|v| v.to_str().ok())
                .find_map(|v| v.strip_prefix(prefix.as_str()))?,
            Location::Param(name) => {
                query(req.path)
                    .split('&')
                    .find_map(|pair| pair.split_once('=').filter(|(n, _)| n == name))?
                    .1
            }
            Location::Cookie(name) => {
                req.headers
                    .get_all(http::header::COOKIE)
                    .iter()
                    .filter_map(|v| v.to_str().ok())
                    .flat_map(|v| v.split(';'))
                    .find_map(|pair| pair.trim().split_once('=').filter(|(n, _)| n == name))?
                    .1
            }
        };
        // The token ends where JWT characters end (a header may carry more after it).
        let end = token
            .find(|c: char| !(c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '=')))
            .unwrap_or(token.len());
        Some(&token[..end]).filter(|t| !t.is_empty())
    }
}

fn query(path: &str) -> &str {
    let query = path.split_once('?').map_or("", |(_, q)| q);
    query.split_once('#').map_or(query, |(q, _)| q)
}

/// A token read apart: its header's `alg` and `kid`, its payload, and what was signed.
#[derive(Debug)]
pub(crate) struct Jwt<'t> {
    pub(crate) alg: Alg,
    pub(crate) kid: Option<String>,
    pub(crate) payload: Map<String, Value>,
    /// The payload as it was in the token (base64url), for `forward_payload_header`.
    pub(crate) payload_text: &'t str,
    /// `header.payload`: what the signature signs.
    pub(crate) signed: &'t str,
    pub(crate) signature: Vec<u8>,
}

impl<'t> Jwt<'t> {
    /// Reads `token`; errors are Envoy's.
    pub(crate) fn parse(token: &'t str) -> Result<Jwt<'t>, JwtError> {
        let mut parts = token.split('.');
        let (Some(header), Some(payload), Some(signature), None) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(JwtError::BadFormat);
        };
        let header: Value =
            serde_json::from_slice(&base64url::decode(header).ok_or(JwtError::HeaderBadBase64)?)
                .map_err(|_| JwtError::HeaderBadJson)?;
        let alg = header
            .get("alg")
            .and_then(Value::as_str)
            .and_then(Alg::parse)
            .ok_or(JwtError::HeaderBadAlg)?;
        let kid = header.get("kid").and_then(Value::as_str).map(str::to_owned);
        let Value::Object(claims) =
            serde_json::from_slice(&base64url::decode(payload).ok_or(JwtError::PayloadBadBase64)?)
                .map_err(|_| JwtError::PayloadBadJson)?
        else {
            return Err(JwtError::PayloadBadJson);
        };
        Ok(Jwt {
            alg,
            kid,
            payload: claims,
            payload_text: payload,
            signed: &token[..token.len() - signature.len() - 1],
            signature: base64url::decode(signature).ok_or(JwtError::SignatureBadBase64)?,
        })
    }

    /// A claim as a number of seconds, if the token has it.
    pub(crate) fn time(&self, claim: &str) -> Option<u64> {
        self.payload.get(claim).and_then(Value::as_u64)
    }

    /// The `aud` claim: one string or a list of them.
    pub(crate) fn audiences(&self) -> Vec<&str> {
        match self.payload.get("aud") {
            Some(Value::String(one)) => vec![one.as_str()],
            Some(Value::Array(many)) => many.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        }
    }
}
