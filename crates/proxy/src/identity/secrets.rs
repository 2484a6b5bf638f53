//! The certificate as Envoy secrets, named as Istio's agent names them over SDS.

use mizzen_xds::pb::envoy::config::core::v3::DataSource;
use mizzen_xds::pb::envoy::config::core::v3::data_source::Specifier;
use mizzen_xds::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, Secret, TlsCertificate, secret,
};

use super::Certificate;

/// The workload's certificate chain and key.
pub const WORKLOAD_CERT: &str = "default";
/// The roots that peers' certificates are verified against.
pub const ROOT_CA: &str = "ROOTCA";

/// `default` (the whole chain, as the CA returned it, and the key) and `ROOTCA` (the
/// chain's root).
pub(super) fn secrets(cert: &Certificate) -> [Secret; 2] {
    let inline = |text: String| DataSource {
        specifier: Some(Specifier::InlineBytes(text.into_bytes())),
        ..DataSource::default()
    };
    let workload = Secret {
        name: WORKLOAD_CERT.into(),
        r#type: Some(secret::Type::TlsCertificate(TlsCertificate {
            certificate_chain: Some(inline(cert.chain().concat())),
            private_key: Some(inline(cert.key_pem().to_owned())),
            ..TlsCertificate::default()
        })),
    };
    let roots = Secret {
        name: ROOT_CA.into(),
        r#type: Some(secret::Type::ValidationContext(
            CertificateValidationContext {
                trusted_ca: Some(inline(cert.root().to_owned())),
                ..CertificateValidationContext::default()
            },
        )),
    };
    [workload, roots]
}
