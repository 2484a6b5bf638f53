//! JSON Web Keys (RFC 7517) as `ring` public keys, and the JWS algorithms (RFC 7518) a
//! token may be signed with: RS256/384/512, PS256/384/512, ES256, ES384, EdDSA.

use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde_json::Value;

use super::base64url;

/// A token's signing algorithm (its header's `alg`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Alg {
    Rs256,
    Rs384,
    Rs512,
    Ps256,
    Ps384,
    Ps512,
    Es256,
    Es384,
    EdDsa,
}

impl Alg {
    /// The algorithm named `name`, if this proxy verifies it.
    pub(crate) fn parse(name: &str) -> Option<Alg> {
        Some(match name {
            "RS256" => Alg::Rs256,
            "RS384" => Alg::Rs384,
            "RS512" => Alg::Rs512,
            "PS256" => Alg::Ps256,
            "PS384" => Alg::Ps384,
            "PS512" => Alg::Ps512,
            "ES256" => Alg::Es256,
            "ES384" => Alg::Es384,
            "EdDSA" => Alg::EdDsa,
            _ => return None,
        })
    }
}

/// One public key of a JWKS.
#[derive(Debug)]
pub(crate) struct Jwk {
    kid: Option<String>,
    /// The key's own `alg`, when it names one: tokens of other algorithms are not
    /// verified with it.
    alg: Option<Alg>,
    key: Key,
}

#[derive(Debug)]
enum Key {
    Rsa {
        n: Vec<u8>,
        e: Vec<u8>,
    },
    /// An uncompressed point (`0x04 || x || y`) on P-256.
    P256(Vec<u8>),
    /// An uncompressed point on P-384.
    P384(Vec<u8>),
    Ed25519(Vec<u8>),
}

/// Reads a JWKS document (`{"keys": [...]}`); keys of kinds this proxy cannot use are
/// skipped, as Envoy skips them. Errors say why the document is unusable.
pub(crate) fn parse_jwks(text: &str) -> Result<Vec<Jwk>, String> {
    let doc: Value = serde_json::from_str(text).map_err(|e| format!("not JSON: {e}"))?;
    let keys = doc
        .get("keys")
        .and_then(Value::as_array)
        .ok_or("no \"keys\" array")?;
    let usable: Vec<Jwk> = keys.iter().filter_map(Jwk::parse).collect();
    if usable.is_empty() {
        return Err("no usable public key".into());
    }
    Ok(usable)
}

impl Jwk {
    fn parse(jwk: &Value) -> Option<Jwk> {
        let field = |name: &str| jwk.get(name).and_then(Value::as_str);
        let bytes = |name: &str| field(name).and_then(base64url::decode);
        let alg = match field("alg") {
            Some(name) => Some(Alg::parse(name)?),
            None => None,
        };
        let key = match (field("kty")?, field("crv")) {
            ("RSA", _) => Key::Rsa {
                n: bytes("n")?,
                e: bytes("e")?,
            },
            ("EC", Some(crv @ ("P-256" | "P-384"))) => {
                let (x, y) = (bytes("x")?, bytes("y")?);
                let size = if crv == "P-256" { 32 } else { 48 };
                if x.len() != size || y.len() != size {
                    return None;
                }
                let point = [&[4u8][..], &x, &y].concat();
                if crv == "P-256" {
                    Key::P256(point)
                } else {
                    Key::P384(point)
                }
            }
            ("OKP", Some("Ed25519")) => Key::Ed25519(bytes("x")?),
            _ => return None,
        };
        Some(Jwk {
            kid: field("kid").map(str::to_owned),
            alg,
            key,
        })
    }

    /// Whether this key may verify a token with `alg` and `kid` (a token without `kid`
    /// may be verified by any key of its algorithm).
    pub(crate) fn fits(&self, alg: Alg, kid: Option<&str>) -> bool {
        let family = match self.key {
            Key::Rsa { .. } => matches!(
                alg,
                Alg::Rs256 | Alg::Rs384 | Alg::Rs512 | Alg::Ps256 | Alg::Ps384 | Alg::Ps512
            ),
            Key::P256(_) => alg == Alg::Es256,
            Key::P384(_) => alg == Alg::Es384,
            Key::Ed25519(_) => alg == Alg::EdDsa,
        };
        family
            && self.alg.is_none_or(|a| a == alg)
            && kid.is_none_or(|kid| self.kid.as_deref() == Some(kid))
    }

    /// Whether `signature` signs `message` with this key under `alg`.
    pub(crate) fn verify(&self, alg: Alg, message: &[u8], signature: &[u8]) -> bool {
        match &self.key {
            Key::Rsa { n, e } => {
                let params: &signature::RsaParameters = match alg {
                    Alg::Rs256 => &signature::RSA_PKCS1_2048_8192_SHA256,
                    Alg::Rs384 => &signature::RSA_PKCS1_2048_8192_SHA384,
                    Alg::Rs512 => &signature::RSA_PKCS1_2048_8192_SHA512,
                    Alg::Ps256 => &signature::RSA_PSS_2048_8192_SHA256,
                    Alg::Ps384 => &signature::RSA_PSS_2048_8192_SHA384,
                    Alg::Ps512 => &signature::RSA_PSS_2048_8192_SHA512,
                    _ => return false,
                };
                RsaPublicKeyComponents { n, e }
                    .verify(params, message, signature)
                    .is_ok()
            }
            Key::P256(point) => UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                .verify(message, signature)
                .is_ok(),
            Key::P384(point) => UnparsedPublicKey::new(&signature::ECDSA_P384_SHA384_FIXED, point)
                .verify(message, signature)
                .is_ok(),
            Key::Ed25519(x) => UnparsedPublicKey::new(&signature::ED25519, x)
                .verify(message, signature)
                .is_ok(),
        }
    }
}
