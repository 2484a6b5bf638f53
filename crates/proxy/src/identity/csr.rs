//! The proxy's key and its certificate signing request.

use mizzen_xds::ca::SpiffeId;
use rcgen::{CertificateParams, DistinguishedName, KeyPair, PKCS_ECDSA_P256_SHA256, SanType};

/// A fresh ECDSA P-256 key and a PEM CSR for `identity`, its one URI SAN (as Istio's
/// agent asks). A new key for every certificate: a renewal also rotates the key.
pub(super) fn key_and_csr(identity: &SpiffeId) -> Result<(KeyPair, String), rcgen::Error> {
    let key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256)?;
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.subject_alt_names = vec![SanType::URI(identity.to_string().try_into()?)];
    let csr = params.serialize_request(&key)?.pem()?;
    Ok((key, csr))
}

#[cfg(test)]
mod tests {
    use rcgen::{CertificateSigningRequestParams, PublicKeyData};

    use super::*;

    #[test]
    fn the_csr_names_the_identity_and_carries_the_key() {
        let id = SpiffeId::new("cluster.local", "default", "sleep").unwrap();
        let (key, csr) = key_and_csr(&id).unwrap();
        let parsed = CertificateSigningRequestParams::from_pem(&csr).unwrap();
        let uris: Vec<&str> = parsed
            .params
            .subject_alt_names
            .iter()
            .filter_map(|n| match n {
                SanType::URI(uri) => Some(uri.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(uris, ["spiffe://cluster.local/ns/default/sa/sleep"]);
        assert_eq!(parsed.public_key.der_bytes(), key.der_bytes());
        assert!(!csr.contains("PRIVATE KEY"));
    }
}
