//! A secret's content, parsed once when it arrives: a certificate chain with its key
//! ready to sign handshakes ([`Identity`]), or trusted CAs with the verifier built on
//! them ([`Trust`]). PEM comes inline (`inline_bytes`, `inline_string`), from a file
//! or from an environment variable, as Envoy's `DataSource` says.

use std::sync::Arc;

use mizzen_xds::pb::envoy::config::core::v3::{DataSource, data_source::Specifier};
use mizzen_xds::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, Secret as PbSecret, TlsCertificate,
    certificate_validation_context::TrustChainVerification, secret::Type,
};
use rustls::RootCertStore;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::server::danger::ClientCertVerifier;
use rustls::sign::CertifiedKey;

use super::cert::CertInfo;
use super::provider;
use super::san::SanMatchers;

/// A secret the proxy refuses: the secret, the field at fault and why (a NACK's text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("secret {name:?}: {field}: {reason}")]
pub struct SecretError {
    name: String,
    field: String,
    reason: String,
}

impl SecretError {
    /// An error in `field` of the secret `name`.
    pub fn new(name: &str, field: &str, reason: impl Into<String>) -> SecretError {
        SecretError {
            name: name.to_owned(),
            field: field.to_owned(),
            reason: reason.into(),
        }
    }

    /// The secret's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The field at fault.
    pub fn field(&self) -> &str {
        &self.field
    }

    /// Why it is refused.
    pub fn reason(&self) -> &str {
        &self.reason
    }
}

/// What a secret holds, parsed.
#[derive(Debug, Clone)]
pub enum Material {
    /// A certificate chain and its private key.
    Identity(Arc<Identity>),
    /// How to verify peers: trusted CAs and SAN matchers.
    Trust(Arc<Trust>),
}

impl Material {
    /// Parses a `Secret`; errors name it and the field at fault.
    pub fn compile(secret: &PbSecret) -> Result<Material, SecretError> {
        let name = &secret.name;
        match &secret.r#type {
            Some(Type::TlsCertificate(c)) => Identity::compile(c)
                .map(|i| Material::Identity(Arc::new(i)))
                .map_err(|(f, r)| SecretError::new(name, &format!("tls_certificate.{f}"), r)),
            Some(Type::ValidationContext(v)) => Trust::compile(v)
                .map(|t| Material::Trust(Arc::new(t)))
                .map_err(|(f, r)| SecretError::new(name, &format!("validation_context.{f}"), r)),
            Some(Type::SessionTicketKeys(_)) => Err(SecretError::new(
                name,
                "session_ticket_keys",
                "is not supported",
            )),
            Some(Type::GenericSecret(_)) => {
                Err(SecretError::new(name, "generic_secret", "is not supported"))
            }
            None => Err(SecretError::new(name, "type", "must be set")),
        }
    }
}

/// A certificate chain and the key that signs with it.
#[derive(Debug)]
pub struct Identity {
    /// What rustls presents and signs with.
    pub key: Arc<CertifiedKey>,
    /// The chain's certificates, leaf first.
    pub chain: Vec<CertInfo>,
}

impl Identity {
    /// Parses a `TlsCertificate`; errors are `(field, reason)`.
    pub fn compile(c: &TlsCertificate) -> Result<Identity, (String, String)> {
        let unsupported = [
            ("pkcs12", c.pkcs12.is_some()),
            ("private_key_provider", c.private_key_provider.is_some()),
            ("password", c.password.is_some()),
        ];
        if let Some((field, _)) = unsupported.iter().find(|(_, set)| *set) {
            return Err(((*field).into(), "is not supported".into()));
        }
        let pem = required(c.certificate_chain.as_ref(), "certificate_chain")?;
        let chain = certificates(&pem).map_err(|r| ("certificate_chain".to_owned(), r))?;
        let pem = required(c.private_key.as_ref(), "private_key")?;
        let key = PrivateKeyDer::from_pem_slice(&pem)
            .map_err(|e| ("private_key".to_owned(), format!("no PEM private key: {e}")))?;
        let info = chain
            .iter()
            .map(|der| CertInfo::parse(der))
            .collect::<Result<_, _>>()
            .map_err(|r| ("certificate_chain".to_owned(), r))?;
        let key = CertifiedKey::from_der(chain, key, &provider::default())
            .map_err(|e| ("private_key".to_owned(), e.to_string()))?;
        Ok(Identity {
            key: Arc::new(key),
            chain: info,
        })
    }

    /// The leaf certificate.
    pub fn leaf(&self) -> &CertInfo {
        &self.chain[0]
    }
}

/// How peer certificates are verified: chained to trusted CAs (when some are given)
/// and with SANs the matchers accept.
#[derive(Debug, Default)]
pub struct Trust {
    anchors: Option<Anchors>,
    /// The SAN matchers of the validation context.
    pub sans: SanMatchers,
}

/// Trusted CAs and the verifiers built on them once.
#[derive(Debug)]
struct Anchors {
    roots: Arc<RootCertStore>,
    clients: Arc<dyn ClientCertVerifier>,
    cas: Vec<CertInfo>,
}

impl Trust {
    /// Parses a `CertificateValidationContext`; errors are `(field, reason)`.
    pub fn compile(v: &CertificateValidationContext) -> Result<Trust, (String, String)> {
        let unsupported = [
            (
                "verify_certificate_spki",
                !v.verify_certificate_spki.is_empty(),
            ),
            (
                "verify_certificate_hash",
                !v.verify_certificate_hash.is_empty(),
            ),
            ("crl", v.crl.is_some()),
            (
                "custom_validator_config",
                v.custom_validator_config.is_some(),
            ),
            ("allow_expired_certificate", v.allow_expired_certificate),
            (
                "trust_chain_verification",
                v.trust_chain_verification == TrustChainVerification::AcceptUntrusted as i32,
            ),
            (
                "ca_certificate_provider_instance",
                v.ca_certificate_provider_instance.is_some(),
            ),
            ("system_root_certs", v.system_root_certs.is_some()),
        ];
        if let Some((field, _)) = unsupported.iter().find(|(_, set)| *set) {
            return Err(((*field).into(), "is not supported".into()));
        }
        let sans = SanMatchers::compile(v)?;
        let anchors = match &v.trusted_ca {
            None => None,
            Some(source) => {
                let pem = read(source).map_err(|r| ("trusted_ca".to_owned(), r))?;
                Some(Anchors::compile(&pem).map_err(|r| ("trusted_ca".to_owned(), r))?)
            }
        };
        Ok(Trust { anchors, sans })
    }

    /// The trusted CAs, with the client verifier built on them, if any were given.
    pub(super) fn anchors(&self) -> Option<(&Arc<RootCertStore>, &Arc<dyn ClientCertVerifier>)> {
        self.anchors.as_ref().map(|a| (&a.roots, &a.clients))
    }

    /// The trusted CA certificates.
    pub fn cas(&self) -> &[CertInfo] {
        self.anchors.as_ref().map_or(&[], |a| &a.cas)
    }
}

impl Anchors {
    fn compile(pem: &[u8]) -> Result<Anchors, String> {
        let ders = certificates(pem)?;
        let mut roots = RootCertStore::empty();
        let mut cas = Vec::with_capacity(ders.len());
        for der in ders {
            cas.push(CertInfo::parse(&der)?);
            roots
                .add(der)
                .map_err(|e| format!("not a usable CA certificate: {e}"))?;
        }
        let roots = Arc::new(roots);
        // Whether a certificate is required is the context's call; this verifier only
        // checks what is presented.
        let clients = WebPkiClientVerifier::builder_with_provider(
            roots.clone(),
            Arc::new(provider::default()),
        )
        .allow_unauthenticated()
        .build()
        .map_err(|e| e.to_string())?;
        Ok(Anchors {
            roots,
            clients,
            cas,
        })
    }
}

/// The certificates of a PEM bundle, at least one.
fn certificates(pem: &[u8]) -> Result<Vec<CertificateDer<'static>>, String> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| format!("invalid PEM: {e}"))?;
    if certs.is_empty() {
        return Err("no PEM certificate found".into());
    }
    Ok(certs)
}

/// The content of a data source that must be set.
fn required(source: Option<&DataSource>, field: &str) -> Result<Vec<u8>, (String, String)> {
    let source = source.ok_or_else(|| (field.to_owned(), "must be set".to_owned()))?;
    read(source).map_err(|r| (field.to_owned(), r))
}

/// What a `DataSource` holds.
pub(crate) fn read(source: &DataSource) -> Result<Vec<u8>, String> {
    match &source.specifier {
        Some(Specifier::InlineBytes(b)) => Ok(b.clone()),
        Some(Specifier::InlineString(s)) => Ok(s.clone().into_bytes()),
        Some(Specifier::Filename(path)) => {
            std::fs::read(path).map_err(|e| format!("cannot read {path:?}: {e}"))
        }
        Some(Specifier::EnvironmentVariable(name)) => std::env::var(name)
            .map(String::into_bytes)
            .map_err(|_| format!("environment variable {name:?} is not set")),
        None => Err("no data source is set".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::testing;

    #[test]
    fn a_certificate_secret_is_parsed_once_into_a_signing_key() {
        let ca = testing::Ca::new();
        let leaf = ca.leaf("spiffe://cluster.local/ns/default/sa/sleep");
        let Material::Identity(identity) = Material::compile(&leaf.secret("default")).unwrap()
        else {
            panic!("not an identity");
        };
        assert_eq!(
            identity.leaf().uri_sans,
            ["spiffe://cluster.local/ns/default/sa/sleep"]
        );
        assert_eq!(identity.chain.len(), 1);
    }

    #[test]
    fn bad_pem_is_refused_naming_the_secret_and_field() {
        let ca = testing::Ca::new();
        let mut secret = ca.leaf("spiffe://td/x").secret("default");
        if let Some(Type::TlsCertificate(c)) = &mut secret.r#type {
            c.certificate_chain = Some(testing::inline("not a certificate"));
        }
        let e = Material::compile(&secret).unwrap_err().to_string();
        assert_eq!(
            e,
            "secret \"default\": tls_certificate.certificate_chain: no PEM certificate found"
        );
        // A key that is not the certificate's.
        let other = ca.leaf("spiffe://td/y");
        let mut secret = ca.leaf("spiffe://td/x").secret("default");
        if let Some(Type::TlsCertificate(c)) = &mut secret.r#type {
            c.private_key = Some(testing::inline(&other.key_pem));
        }
        let e = Material::compile(&secret).unwrap_err().to_string();
        assert!(
            e.starts_with("secret \"default\": tls_certificate.private_key: "),
            "{e}"
        );
        let e = Material::compile(&testing::root_secret("ROOTCA", "garbage"))
            .unwrap_err()
            .to_string();
        assert!(
            e.starts_with("secret \"ROOTCA\": validation_context.trusted_ca: "),
            "{e}"
        );
    }

    #[test]
    fn a_validation_secret_holds_its_cas() {
        let ca = testing::Ca::new();
        let Material::Trust(trust) =
            Material::compile(&testing::root_secret("ROOTCA", &ca.pem)).unwrap()
        else {
            panic!("not a trust");
        };
        assert_eq!(trust.cas().len(), 1);
        assert!(trust.cas()[0].is_ca);
    }
}
