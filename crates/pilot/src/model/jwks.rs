//! Public key sets fetched from RequestAuthentication `jwksUri`s. The fetching happens
//! outside translation (`server/jwks.rs`); a push carries what was fetched, and
//! translation inlines it. A URI that could not be fetched gets a key nobody holds, so
//! its tokens are refused rather than let through (Istio's fail-closed `FakeJwks`).

use std::collections::{BTreeMap, BTreeSet};

use mizzen_api::Object;
use mizzen_api::security::JwtRule;

use crate::store::Snapshot;

/// An RSA public key whose private half was never kept: every token fails against it.
pub const FAIL_CLOSED_JWKS: &str = concat!(
    r#"{"keys":[{"kty":"RSA","alg":"RS256","kid":"mizzen-unreachable-jwks","e":"AQAB","n":""#,
    "wQ5Xn_NxD4CMxIQQRUEspulyIoOrDa-egQw5uMOkNenCLvq2ks8JdBqjqxm1DSN8NN0uNSEv4lxkZP8zkK6o21F8",
    "_LkxrdrJYz3suPd5XsTaqPJ3GSP0EHTWWQfacwWPUmaEvwNS2TaV-CGO40zL9tKSwC02Ep9ZaXiD7UIeH1FCDXXo",
    "xjjDWO_oTa47rRcjHkF1UI_Q3oGjWnbt8t3qG77OtFIX8UtPEwGfiz1OgfdCoYFWuBAmKsUNNLI8W_3PwqK44mig",
    "3_Vci5DNYK_uXrjrbRDfNSNf3v3L3bQ1mqEy3ZiPcDVvygI8_nxZ2mEWxeQNG276Z_FBnxSfgSatGw",
    r#""}]}"#
);

/// Fetched key sets by `jwksUri`: the JWKS JSON, or why it could not be had.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct JwksKeys {
    by_uri: BTreeMap<String, Result<String, String>>,
}

impl JwksKeys {
    /// Records what fetching `uri` gave.
    pub fn insert(&mut self, uri: &str, fetched: Result<String, String>) {
        self.by_uri.insert(uri.to_owned(), fetched);
    }

    /// The key set to inline for `uri`: the fetched one, or [`FAIL_CLOSED_JWKS`] when the
    /// fetch failed or has not happened.
    pub fn inline_for(&self, uri: &str) -> &str {
        match self.by_uri.get(uri) {
            Some(Ok(jwks)) => jwks,
            _ => FAIL_CLOSED_JWKS,
        }
    }

    /// The fetch result for `uri`, if any.
    pub fn get(&self, uri: &str) -> Option<&Result<String, String>> {
        self.by_uri.get(uri)
    }
}

/// Every `jwksUri` RequestAuthentications in `config` name (without inline `jwks`).
pub fn jwks_uris(config: &Snapshot) -> BTreeSet<String> {
    config
        .of_kind(mizzen_api::Kind::RequestAuthentication)
        .filter_map(|o| match o.as_ref() {
            Object::RequestAuthentication(r) => Some(r),
            _ => None,
        })
        .flat_map(|r| r.spec.jwt_rules.iter())
        .filter_map(fetched_uri)
        .map(str::to_owned)
        .collect()
}

/// The `jwksUri` pilot fetches for `rule`: none when its keys are inline (`jwks`).
pub fn fetched_uri(rule: &JwtRule) -> Option<&str> {
    (rule.jwks.is_empty() && !rule.jwks_uri.is_empty()).then_some(rule.jwks_uri.as_str())
}
