//! A certificate the CA issued to this proxy, checked against what was asked for.

use std::fmt;
use std::time::{Duration, SystemTime};

use mizzen_xds::ca::SpiffeId;
use rcgen::{KeyPair, PublicKeyData};
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// The proxy's current certificate, its chain and its key.
#[derive(Clone)]
pub struct Certificate {
    identity: SpiffeId,
    /// PEM, one certificate each: the leaf first, the root last.
    chain: Vec<String>,
    key_pem: String,
    serial: String,
    not_before: SystemTime,
    not_after: SystemTime,
}

impl Certificate {
    /// Checks the CA's `chain` (leaf first, root last) against the `key` and
    /// `identity` the CSR asked for; the reason when it does not match.
    pub(super) fn new(
        chain: Vec<String>,
        key: &KeyPair,
        identity: &SpiffeId,
    ) -> Result<Certificate, String> {
        if chain.len() < 2 {
            return Err(format!(
                "the chain has {} certificate(s); expected the leaf and at least the root",
                chain.len()
            ));
        }
        let der = CertificateDer::from_pem_slice(chain[0].as_bytes())
            .map_err(|e| format!("the leaf is not PEM: {e}"))?;
        let (_, leaf) =
            X509Certificate::from_der(&der).map_err(|e| format!("the leaf does not parse: {e}"))?;
        if leaf.public_key().raw != key.subject_public_key_info().as_slice() {
            return Err("the leaf is not for the key the CSR carried".into());
        }
        let expected = identity.to_string();
        let names = leaf
            .subject_alternative_name()
            .map_err(|e| format!("the leaf's SANs do not parse: {e}"))?;
        let uris: Vec<&str> = names
            .iter()
            .flat_map(|san| san.value.general_names.iter())
            .filter_map(|name| match name {
                GeneralName::URI(uri) => Some(*uri),
                _ => None,
            })
            .collect();
        if uris != [expected.as_str()] {
            return Err(format!("the leaf names {uris:?}, not {expected}"));
        }
        let time = |t: x509_parser::time::ASN1Time| {
            SystemTime::UNIX_EPOCH + Duration::from_secs(t.timestamp().max(0).unsigned_abs())
        };
        let serial = hex_serial(leaf.raw_serial());
        let (not_before, not_after) = (
            time(leaf.validity().not_before),
            time(leaf.validity().not_after),
        );
        Ok(Certificate {
            identity: identity.clone(),
            chain,
            key_pem: key.serialize_pem(),
            serial,
            not_before,
            not_after,
        })
    }

    /// Whose certificate it is.
    pub fn identity(&self) -> &SpiffeId {
        &self.identity
    }

    /// The chain, PEM, one certificate each: the leaf first, the root last.
    pub fn chain(&self) -> &[String] {
        &self.chain
    }

    /// The root of the chain, PEM.
    pub fn root(&self) -> &str {
        self.chain.last().expect("a checked chain has a root")
    }

    /// The leaf's serial number in hex, as istioctl shows it.
    pub fn serial(&self) -> &str {
        &self.serial
    }

    /// When the leaf becomes valid.
    pub fn not_before(&self) -> SystemTime {
        self.not_before
    }

    /// When the leaf expires.
    pub fn not_after(&self) -> SystemTime {
        self.not_after
    }

    /// The private key, PEM (PKCS#8).
    pub(super) fn key_pem(&self) -> &str {
        &self.key_pem
    }

    /// When to renew: when `ratio` of the certificate's life is left, give or take 1% of
    /// it (Istio's `SECRET_GRACE_PERIOD_RATIO_JITTER`), so that workloads started
    /// together do not all renew together.
    pub(super) fn renewal_time(&self, ratio: f64) -> SystemTime {
        let life = self
            .not_after
            .duration_since(self.not_before)
            .unwrap_or_default();
        let jitter = (fastrand::f64() * 2.0 - 1.0) * 0.01;
        let left = life.mul_f64((ratio + jitter).clamp(0.0, 1.0));
        self.not_after.checked_sub(left).unwrap_or(self.not_before)
    }
}

impl fmt::Debug for Certificate {
    /// Never the key.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Certificate")
            .field("identity", &self.identity.to_string())
            .field("serial", &self.serial)
            .field("not_before", &self.not_before)
            .field("not_after", &self.not_after)
            .finish_non_exhaustive()
    }
}

/// A serial number as lowercase hex without leading zeros (Go's `big.Int.Text(16)`).
fn hex_serial(raw: &[u8]) -> String {
    let hex: String = raw.iter().map(|b| format!("{b:02x}")).collect();
    let trimmed = hex.trim_start_matches('0');
    if trimmed.is_empty() {
        "0".into()
    } else {
        trimmed.into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renewal_comes_when_the_ratio_of_the_life_is_left_give_or_take_one_percent() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        let cert = Certificate {
            identity: SpiffeId::new("cluster.local", "default", "sleep").unwrap(),
            chain: Vec::new(),
            key_pem: String::new(),
            serial: "1".into(),
            not_before: start,
            not_after: start + Duration::from_secs(1000),
        };
        for _ in 0..100 {
            let at = cert.renewal_time(0.5).duration_since(start).unwrap();
            assert!(
                at >= Duration::from_secs(490) && at <= Duration::from_secs(510),
                "{at:?}"
            );
            let late = cert.renewal_time(0.2).duration_since(start).unwrap();
            assert!(late >= Duration::from_secs(790) && late <= Duration::from_secs(810));
        }
    }

    #[test]
    fn serials_read_as_go_prints_them() {
        assert_eq!(hex_serial(&[0x00, 0x0a, 0xbc]), "abc");
        assert_eq!(hex_serial(&[0x00]), "0");
    }
}
