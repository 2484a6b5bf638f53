//! TLS parameters (`tls_params`) as a rustls crypto provider and protocol versions:
//! Envoy's defaults (TLS 1.2 to 1.3 for servers, TLS 1.2 only for clients), its
//! OpenSSL-style cipher names (`[A|B]` groups too) and curve names. Cipher suites
//! rustls does not implement (CBC, RSA key exchange) are left out, as a list Istio
//! writes names some of them; names no TLS library knows are refused.

use std::sync::Arc;

use mizzen_xds::pb::envoy::extensions::transport_sockets::tls::v3::{
    TlsParameters, tls_parameters::TlsProtocol,
};
use rustls::crypto::ring::{cipher_suite as suite, kx_group};
use rustls::crypto::{CryptoProvider, SupportedKxGroup};
use rustls::{SupportedCipherSuite, SupportedProtocolVersion, version};

/// The ring provider with everything it supports.
pub(crate) fn default() -> CryptoProvider {
    rustls::crypto::ring::default_provider()
}

/// Which end of a connection the parameters are for; their defaults differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// Originating TLS upstream.
    Client,
    /// Terminating TLS downstream.
    Server,
}

/// Compiled `tls_params`.
#[derive(Debug, Clone)]
pub struct Params {
    /// The suites, curves and signature algorithms allowed.
    pub provider: Arc<CryptoProvider>,
    /// The protocol versions allowed.
    pub versions: &'static [&'static SupportedProtocolVersion],
}

static TLS12_ONLY: &[&SupportedProtocolVersion] = &[&version::TLS12];
static TLS13_ONLY: &[&SupportedProtocolVersion] = &[&version::TLS13];
static TLS12_AND_13: &[&SupportedProtocolVersion] = &[&version::TLS13, &version::TLS12];

/// OpenSSL names of TLS 1.2 suites that rustls does not implement, and TLS 1.3 names
/// (which Envoy's list does not govern): skipped rather than refused.
const SKIPPED: &[&str] = &[
    "AES128-GCM-SHA256",
    "AES256-GCM-SHA384",
    "AES128-SHA",
    "AES256-SHA",
    "AES128-SHA256",
    "AES256-SHA256",
    "DES-CBC3-SHA",
    "ECDHE-ECDSA-AES128-SHA",
    "ECDHE-ECDSA-AES256-SHA",
    "ECDHE-RSA-AES128-SHA",
    "ECDHE-RSA-AES256-SHA",
    "ECDHE-ECDSA-AES128-SHA256",
    "ECDHE-ECDSA-AES256-SHA384",
    "ECDHE-RSA-AES128-SHA256",
    "ECDHE-RSA-AES256-SHA384",
    "ECDHE-PSK-AES128-CBC-SHA",
    "ECDHE-PSK-AES256-CBC-SHA",
    "ECDHE-PSK-CHACHA20-POLY1305",
    "PSK-AES128-CBC-SHA",
    "PSK-AES256-CBC-SHA",
    "TLS_AES_128_GCM_SHA256",
    "TLS_AES_256_GCM_SHA384",
    "TLS_CHACHA20_POLY1305_SHA256",
];

fn tls12_suite(name: &str) -> Option<SupportedCipherSuite> {
    Some(match name {
        "ECDHE-ECDSA-AES128-GCM-SHA256" => suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
        "ECDHE-ECDSA-AES256-GCM-SHA384" => suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
        "ECDHE-ECDSA-CHACHA20-POLY1305" => suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
        "ECDHE-RSA-AES128-GCM-SHA256" => suite::TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
        "ECDHE-RSA-AES256-GCM-SHA384" => suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
        "ECDHE-RSA-CHACHA20-POLY1305" => suite::TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
        _ => return None,
    })
}

fn curve(name: &str) -> Option<&'static dyn SupportedKxGroup> {
    Some(match name {
        "X25519" => kx_group::X25519,
        "P-256" => kx_group::SECP256R1,
        "P-384" => kx_group::SECP384R1,
        _ => return None,
    })
}

impl Params {
    /// Compiles `tls_params` for `side`; errors are `(field, reason)`.
    pub fn compile(p: Option<&TlsParameters>, side: Side) -> Result<Params, (String, String)> {
        let field = |f: &str, r: String| (format!("tls_params.{f}"), r);
        let default = default();
        let Some(p) = p else {
            return Ok(Params {
                provider: Arc::new(default),
                versions: versions(None, None, side).map_err(|r| field("", r))?,
            });
        };
        if !p.signature_algorithms.is_empty() {
            return Err(field("signature_algorithms", "is not supported".into()));
        }
        let protocol = |v: i32, f: &str| {
            TlsProtocol::try_from(v)
                .map(|p| Some(p).filter(|p| *p != TlsProtocol::TlsAuto))
                .map_err(|_| field(f, format!("unknown version {v}")))
        };
        let min = protocol(
            p.tls_minimum_protocol_version,
            "tls_minimum_protocol_version",
        )?;
        let max = protocol(
            p.tls_maximum_protocol_version,
            "tls_maximum_protocol_version",
        )?;
        let versions =
            versions(min, max, side).map_err(|r| field("tls_maximum_protocol_version", r))?;
        let mut provider = default;
        if !p.cipher_suites.is_empty() {
            let mut tls12 = Vec::new();
            for (i, entry) in p.cipher_suites.iter().enumerate() {
                let group = entry.trim_start_matches('[').trim_end_matches(']');
                for name in group.split('|') {
                    match tls12_suite(name) {
                        Some(s) => tls12.push(s),
                        None if SKIPPED.contains(&name) => {}
                        None => {
                            return Err(field(
                                &format!("cipher_suites[{i}]"),
                                format!("unknown cipher suite {name:?}"),
                            ));
                        }
                    }
                }
            }
            if tls12.is_empty() && versions == TLS12_ONLY {
                return Err(field(
                    "cipher_suites",
                    "no cipher suite this proxy implements is listed".into(),
                ));
            }
            let tls13 = provider
                .cipher_suites
                .iter()
                .filter(|s| s.version() == &version::TLS13)
                .copied();
            provider.cipher_suites = tls13.chain(tls12).collect();
        }
        if !p.ecdh_curves.is_empty() {
            provider.kx_groups = p
                .ecdh_curves
                .iter()
                .enumerate()
                .map(|(i, name)| {
                    curve(name).ok_or_else(|| {
                        field(
                            &format!("ecdh_curves[{i}]"),
                            format!("unknown or unsupported curve {name:?}"),
                        )
                    })
                })
                .collect::<Result<_, _>>()?;
        }
        Ok(Params {
            provider: Arc::new(provider),
            versions,
        })
    }
}

/// The versions between `min` and `max` (Envoy's defaults where unset). rustls has no
/// TLS 1.0 or 1.1: a minimum below 1.2 means 1.2, a maximum below it is refused.
fn versions(
    min: Option<TlsProtocol>,
    max: Option<TlsProtocol>,
    side: Side,
) -> Result<&'static [&'static SupportedProtocolVersion], String> {
    let max = max.unwrap_or(match side {
        Side::Client => TlsProtocol::TlSv12,
        Side::Server => TlsProtocol::TlSv13,
    });
    let min = min.unwrap_or(TlsProtocol::TlSv12);
    match (min, max) {
        (_, TlsProtocol::TlSv10 | TlsProtocol::TlSv11) => {
            Err("TLS versions below 1.2 are not supported".into())
        }
        (TlsProtocol::TlSv13, TlsProtocol::TlSv12) => {
            Err("is below tls_minimum_protocol_version".into())
        }
        (TlsProtocol::TlSv13, _) => Ok(TLS13_ONLY),
        (_, TlsProtocol::TlSv12) => Ok(TLS12_ONLY),
        _ => Ok(TLS12_AND_13),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn envoy_defaults_differ_by_side() {
        let server = Params::compile(None, Side::Server).unwrap();
        assert_eq!(server.versions, TLS12_AND_13);
        let client = Params::compile(None, Side::Client).unwrap();
        assert_eq!(client.versions, TLS12_ONLY);
    }

    #[test]
    fn istios_cipher_list_keeps_what_rustls_implements() {
        let p = TlsParameters {
            tls_minimum_protocol_version: TlsProtocol::TlSv12 as i32,
            cipher_suites: [
                "ECDHE-ECDSA-AES256-GCM-SHA384",
                "ECDHE-RSA-AES256-GCM-SHA384",
                "[ECDHE-ECDSA-AES128-GCM-SHA256|ECDHE-ECDSA-CHACHA20-POLY1305]",
                "AES256-GCM-SHA384",
                "AES128-GCM-SHA256",
            ]
            .map(String::from)
            .to_vec(),
            ..Default::default()
        };
        let params = Params::compile(Some(&p), Side::Server).unwrap();
        let tls12: Vec<_> = params
            .provider
            .cipher_suites
            .iter()
            .filter(|s| s.version() == &version::TLS12)
            .map(|s| s.suite())
            .collect();
        assert_eq!(
            tls12,
            [
                suite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384.suite(),
                suite::TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384.suite(),
                suite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256.suite(),
                suite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256.suite(),
            ]
        );
    }

    #[test]
    fn unknown_names_and_impossible_versions_are_refused() {
        let p = TlsParameters {
            cipher_suites: vec!["NOT-A-SUITE".into()],
            ..Default::default()
        };
        let (field, reason) = Params::compile(Some(&p), Side::Server).unwrap_err();
        assert_eq!(field, "tls_params.cipher_suites[0]");
        assert!(reason.contains("NOT-A-SUITE"), "{reason}");
        let p = TlsParameters {
            tls_maximum_protocol_version: TlsProtocol::TlSv11 as i32,
            ..Default::default()
        };
        assert!(Params::compile(Some(&p), Side::Server).is_err());
        let p = TlsParameters {
            tls_minimum_protocol_version: TlsProtocol::TlSv13 as i32,
            ..Default::default()
        };
        // A client's default maximum (1.2) is below the minimum asked for.
        assert!(Params::compile(Some(&p), Side::Client).is_err());
        assert_eq!(
            Params::compile(Some(&p), Side::Server).unwrap().versions,
            TLS13_ONLY
        );
    }
}
