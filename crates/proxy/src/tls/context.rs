//! What downstream and upstream TLS contexts share (`CommonTlsContext`): parameters, the
//! certificates to present, how to verify the peer's, and ALPN. Certificates and
//! trusted CAs are slots (inline ones filled at once, SDS ones when they arrive), read
//! at each handshake.

use std::sync::Arc;

use mizzen_xds::pb::envoy::extensions::transport_sockets::tls::v3::{
    CommonTlsContext, SdsSecretConfig, Secret as PbSecret,
    common_tls_context::ValidationContextType, secret::Type,
};
use rustls::client::danger::HandshakeSignatureValid;
use rustls::client::verify_server_cert_signed_by_trust_anchor;
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::ParsedCertificate;
use rustls::{CertificateError, DigitallySignedStruct, Error, SignatureScheme};

use super::cert::CertInfo;
use super::provider::{Params, Side};
use super::san::SanMatchers;
use super::secret::{Identity, Material, Trust};
use super::secrets::{SecretSlot, SecretSource, Secrets};

/// A compiled `CommonTlsContext`.
#[derive(Debug)]
pub(super) struct Common {
    /// Versions, suites and curves.
    pub(super) params: Params,
    /// The certificates to present, in order of preference.
    pub(super) certificates: Vec<Arc<SecretSlot>>,
    /// How to verify the peer's certificate, if at all.
    pub(super) validation: Option<Arc<Validation>>,
    /// ALPN protocols, in order of preference.
    pub(super) alpn: Vec<Vec<u8>>,
}

impl Common {
    /// Compiles `c` for `side`, taking named secrets from `secrets`; errors are
    /// `(field, reason)`, the field within the `CommonTlsContext`.
    pub(super) fn compile(
        c: &CommonTlsContext,
        side: Side,
        secrets: &Secrets,
    ) -> Result<Common, (String, String)> {
        #[allow(deprecated)]
        let unsupported = [
            (
                "tls_certificate_provider_instance",
                c.tls_certificate_provider_instance.is_some(),
            ),
            (
                "custom_tls_certificate_selector",
                c.custom_tls_certificate_selector.is_some(),
            ),
            (
                "tls_certificate_certificate_provider",
                c.tls_certificate_certificate_provider.is_some(),
            ),
            (
                "tls_certificate_certificate_provider_instance",
                c.tls_certificate_certificate_provider_instance.is_some(),
            ),
            ("custom_handshaker", c.custom_handshaker.is_some()),
            ("key_log", c.key_log.is_some()),
        ];
        if let Some((field, _)) = unsupported.iter().find(|(_, set)| *set) {
            return Err(((*field).into(), "is not supported".into()));
        }
        let params = Params::compile(c.tls_params.as_ref(), side)?;
        let mut certificates = Vec::new();
        for (i, cert) in c.tls_certificates.iter().enumerate() {
            let identity = Identity::compile(cert)
                .map_err(|(f, r)| (format!("tls_certificates[{i}].{f}"), r))?;
            let raw = PbSecret {
                name: String::new(),
                r#type: Some(Type::TlsCertificate(cert.clone())),
            };
            certificates.push(SecretSlot::inline(
                Material::Identity(Arc::new(identity)),
                raw,
            ));
        }
        for (i, config) in c.tls_certificate_sds_secret_configs.iter().enumerate() {
            certificates.push(
                named(config, secrets)
                    .map_err(|r| (format!("tls_certificate_sds_secret_configs[{i}]"), r))?,
            );
        }
        let validation = match &c.validation_context_type {
            None => None,
            Some(ValidationContextType::ValidationContext(v)) => {
                let base =
                    Trust::compile(v).map_err(|(f, r)| (format!("validation_context.{f}"), r))?;
                Some(Validation::new(base, None).map_err(|r| ("validation_context".into(), r))?)
            }
            Some(ValidationContextType::ValidationContextSdsSecretConfig(config)) => {
                let slot = named(config, secrets)
                    .map_err(|r| ("validation_context_sds_secret_config".to_owned(), r))?;
                Some(
                    Validation::new(Trust::default(), Some(slot))
                        .map_err(|r| ("validation_context_sds_secret_config".to_owned(), r))?,
                )
            }
            Some(ValidationContextType::CombinedValidationContext(combined)) => {
                let at = |f: &str| format!("combined_validation_context.{f}");
                let base = match &combined.default_validation_context {
                    Some(v) => Trust::compile(v)
                        .map_err(|(f, r)| (at(&format!("default_validation_context.{f}")), r))?,
                    None => Trust::default(),
                };
                let Some(config) = &combined.validation_context_sds_secret_config else {
                    return Err((
                        at("validation_context_sds_secret_config"),
                        "must be set".into(),
                    ));
                };
                let slot = named(config, secrets)
                    .map_err(|r| (at("validation_context_sds_secret_config"), r))?;
                Some(Validation::new(base, Some(slot)).map_err(|r| (at(""), r))?)
            }
            #[allow(deprecated)]
            Some(_) => {
                return Err((
                    "validation_context_type".into(),
                    "certificate providers are not supported".into(),
                ));
            }
        };
        Ok(Common {
            params,
            certificates,
            validation: validation.map(Arc::new),
            alpn: c
                .alpn_protocols
                .iter()
                .map(|p| p.as_bytes().to_vec())
                .collect(),
        })
    }

    /// Every secret slot the context reads.
    pub(super) fn slots(&self) -> impl Iterator<Item = &Arc<SecretSlot>> {
        self.certificates
            .iter()
            .chain(self.validation.iter().filter_map(|v| v.dynamic.as_ref()))
    }

    /// The certificate to present to a peer that accepts `schemes`: the first whose key
    /// can sign with one of them.
    pub(super) fn certificate(
        &self,
        schemes: &[rustls::SignatureScheme],
    ) -> Option<Arc<rustls::sign::CertifiedKey>> {
        self.certificates
            .iter()
            .filter_map(|slot| slot.identity())
            .find(|id| id.key.key.choose_scheme(schemes).is_some())
            .map(|id| id.key.clone())
    }

    /// The certificates the context holds now.
    pub(super) fn held(&self) -> Held {
        Held {
            cas: self
                .validation
                .as_ref()
                .map(|v| v.cas())
                .unwrap_or_default(),
            chain: self
                .certificates
                .iter()
                .find_map(|slot| slot.identity())
                .map(|id| id.chain.clone())
                .unwrap_or_default(),
        }
    }

    /// The URI SANs of the certificate presented first, for `x-forwarded-client-cert`'s
    /// `By`.
    pub(super) fn local_uri_sans(&self) -> Vec<String> {
        self.certificates
            .iter()
            .find_map(|slot| slot.identity())
            .map(|id| id.leaf().uri_sans.clone())
            .unwrap_or_default()
    }
}

/// The certificates a TLS context holds at one moment (Envoy's `/certs`).
#[derive(Debug, Clone, Default)]
pub struct Held {
    /// The trusted CAs peers are verified against.
    pub cas: Vec<CertInfo>,
    /// The chain presented to peers, leaf first.
    pub chain: Vec<CertInfo>,
}

/// The slot an `SdsSecretConfig` names; a static secret must already be there, as
/// Envoy refuses a context naming an unknown one.
fn named(config: &SdsSecretConfig, secrets: &Secrets) -> Result<Arc<SecretSlot>, String> {
    if config.name.is_empty() {
        return Err("name: must be set".into());
    }
    let source = SecretSource::of(config);
    if source == SecretSource::Static {
        return secrets
            .get(source, &config.name)
            .filter(|s| s.is_ready())
            .ok_or_else(|| format!("static secret {:?} is not defined", config.name));
    }
    Ok(secrets.slot(source, &config.name))
}

/// Whose certificate is verified, which decides the key usage it must allow.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Peer {
    /// A downstream client's.
    Client,
    /// An upstream server's.
    Server,
}

/// How a peer's certificate is verified: the inline (default) validation context,
/// merged with the one an SDS secret holds, as Envoy's combined context merges them
/// (the secret's trusted CA wins; SAN matchers add up).
#[derive(Debug)]
pub(super) struct Validation {
    base: Trust,
    dynamic: Option<Arc<SecretSlot>>,
}

impl Validation {
    fn new(base: Trust, dynamic: Option<Arc<SecretSlot>>) -> Result<Validation, String> {
        if dynamic.is_none() && base.anchors().is_none() && !base.sans.is_empty() {
            // Envoy's words: matching SANs of a certificate no CA vouches for proves nothing.
            return Err(
                "SAN-based verification of peer certificates without trusted CA is insecure and not allowed"
                    .into(),
            );
        }
        Ok(Validation { base, dynamic })
    }

    /// The trusted CAs in force: the secret's, else the inline ones.
    fn cas(&self) -> Vec<CertInfo> {
        let dynamic = self.dynamic.as_ref().and_then(|slot| slot.trust());
        match dynamic.filter(|t| !t.cas().is_empty()) {
            Some(t) => t.cas().to_vec(),
            None => self.base.cas().to_vec(),
        }
    }

    /// Verifies `end_entity` (sent with `intermediates`) at `now`: chained to a trusted
    /// CA (when one is configured) and with a SAN the matchers accept.
    pub(super) fn verify(
        &self,
        peer: Peer,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
        provider: &CryptoProvider,
    ) -> Result<(), Error> {
        let dynamic = match &self.dynamic {
            Some(slot) => Some(slot.trust().ok_or_else(|| {
                Error::General(format!(
                    "validation context secret {:?} has not arrived",
                    slot.name()
                ))
            })?),
            None => None,
        };
        let anchors = dynamic
            .as_ref()
            .and_then(|t| t.anchors())
            .or_else(|| self.base.anchors());
        match (anchors, peer) {
            (Some((_, clients)), Peer::Client) => {
                clients.verify_client_cert(end_entity, intermediates, now)?;
            }
            (Some((roots, _)), Peer::Server) => {
                let parsed = ParsedCertificate::try_from(end_entity)?;
                verify_server_cert_signed_by_trust_anchor(
                    &parsed,
                    roots,
                    intermediates,
                    now,
                    provider.signature_verification_algorithms.all,
                )?;
            }
            (None, _) if !self.base.sans.is_empty() => {
                return Err(Error::General(
                    "no trusted CA to verify the peer's SANs against".into(),
                ));
            }
            (None, _) => {}
        }
        let none = SanMatchers::default();
        let more = dynamic.as_ref().map_or(&none, |t| &t.sans);
        if self.base.sans.is_empty() && more.is_empty() {
            return Ok(());
        }
        let info = CertInfo::parse(end_entity).map_err(Error::General)?;
        if self.base.sans.accept(more, &info) {
            return Ok(());
        }
        tracing::debug!(
            uri_sans = ?info.uri_sans,
            dns_sans = ?info.dns_sans,
            "peer certificate rejected: no SAN matches match_subject_alt_names"
        );
        Err(Error::InvalidCertificate(
            CertificateError::ApplicationVerificationFailure,
        ))
    }
}

/// Checks handshake signatures with a provider's algorithms, for both verifiers.
#[derive(Debug)]
pub(super) struct Signatures(pub(super) Arc<CryptoProvider>);

impl Signatures {
    pub(super) fn tls12(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    pub(super) fn tls13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    pub(super) fn schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}
