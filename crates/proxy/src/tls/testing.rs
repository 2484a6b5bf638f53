//! A throwaway CA for unit tests: leaf certificates with SPIFFE URI SANs, as secrets.

use mizzen_xds::pb::envoy::config::core::v3::{DataSource, data_source::Specifier};
use mizzen_xds::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, Secret, TlsCertificate, secret::Type,
};
use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType};

/// A self-signed CA.
pub(crate) struct Ca {
    issuer: Issuer<'static, KeyPair>,
    /// Its certificate, PEM.
    pub(crate) pem: String,
}

/// A certificate signed by a [`Ca`], with its key.
pub(crate) struct Leaf {
    /// The certificate, PEM.
    pub(crate) cert_pem: String,
    /// Its private key, PEM.
    pub(crate) key_pem: String,
}

impl Ca {
    pub(crate) fn new() -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params
            .distinguished_name
            .push(DnType::CommonName, "Mizzen test CA");
        let key = KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        Ca {
            issuer: Issuer::new(params, key),
            pem,
        }
    }

    /// A leaf with the URI SAN `uri`.
    pub(crate) fn leaf(&self, uri: &str) -> Leaf {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .subject_alt_names
            .push(SanType::URI(uri.try_into().unwrap()));
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Leaf {
            cert_pem: cert.pem(),
            key_pem: key.serialize_pem(),
        }
    }
}

impl Leaf {
    /// The leaf as a `tls_certificate` secret named `name`.
    pub(crate) fn secret(&self, name: &str) -> Secret {
        Secret {
            name: name.into(),
            r#type: Some(Type::TlsCertificate(TlsCertificate {
                certificate_chain: Some(inline(&self.cert_pem)),
                private_key: Some(inline(&self.key_pem)),
                ..Default::default()
            })),
        }
    }
}

/// A `validation_context` secret trusting `pem`.
pub(crate) fn root_secret(name: &str, pem: &str) -> Secret {
    Secret {
        name: name.into(),
        r#type: Some(Type::ValidationContext(CertificateValidationContext {
            trusted_ca: Some(inline(pem)),
            ..Default::default()
        })),
    }
}

/// `text` as an inline data source.
pub(crate) fn inline(text: &str) -> DataSource {
    DataSource {
        specifier: Some(Specifier::InlineString(text.into())),
        ..Default::default()
    }
}
