//! The mesh's certificate authority: it signs workload CSRs into SPIFFE certificates
//! (`spiffe://<trust domain>/ns/<namespace>/sa/<service account>`) and serves Istio's
//! CA API to authenticated callers.
//!
//! Its key and certificates come from a directory in Istio's `cacerts` layout: either
//! plugged in by the operator (a root, or an intermediate with its chain) or a
//! self-signed root made on first start and reused after ([`Ca::load_or_create`]).

mod auth;
mod files;
mod service;
mod serving;
#[cfg(test)]
mod tests;

use std::fmt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use mizzen_xds::ca::SpiffeId;
use rcgen::{
    BasicConstraints, CertificateParams, CertificateSigningRequestParams, DistinguishedName,
    DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose, PublicKeyData,
    SanType, SerialNumber,
};
use ring::rand::{SecureRandom, SystemRandom};
use rustls::pki_types::CertificateDer;
use x509_parser::prelude::{FromDer, X509Certificate};

pub use auth::{AuthError, CallerAuthenticator, LocalTokens, ServiceAccount};
pub use files::{CA_CERT, CA_KEY, CERT_CHAIN, ROOT_CERT};
pub use service::CaService;
pub use serving::ISTIOD_SAN;
pub(crate) use serving::ServingCert;

use files::CaFiles;

/// How long a self-made root lives (Istio's `CITADEL_SELF_SIGNED_CA_CERT_TTL`, 10 years).
const ROOT_TTL: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// How long workload certificates live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CertTtl {
    /// When the caller asks for none (Istio's `DEFAULT_WORKLOAD_CERT_TTL`, 24 h).
    pub default: Duration,
    /// The longest a caller may ask for (Istio's `MAX_WORKLOAD_CERT_TTL`, 90 days).
    pub max: Duration,
}

impl Default for CertTtl {
    fn default() -> Self {
        CertTtl {
            default: Duration::from_secs(24 * 3600),
            max: Duration::from_secs(90 * 24 * 3600),
        }
    }
}

/// Why the CA's files cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CaError {
    /// A file cannot be read.
    #[error("CA file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file holds something the CA cannot use.
    #[error("CA file {path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A file cannot be written.
    #[error("writing {path}: {source}")]
    Write {
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The root could not be made.
    #[error("making the CA's root certificate: {0}")]
    Generate(rcgen::Error),
}

/// Why a CSR was not signed.
#[derive(Debug, thiserror::Error)]
pub enum SignError {
    /// The CSR cannot be parsed or its signature does not verify.
    #[error("the CSR is not a valid PEM certificate signing request: {reason}")]
    Csr {
        /// Why.
        reason: String,
    },
    /// The CSR names an identity other than the caller's.
    #[error("the CSR asks for identity {requested}, but the caller is {caller}")]
    Identity {
        /// What the CSR names.
        requested: String,
        /// Who the caller is.
        caller: SpiffeId,
    },
    /// The requested lifetime is beyond the CA's limit.
    #[error("requested TTL {}s is greater than the max allowed TTL {}s", requested.as_secs(), max.as_secs())]
    Ttl {
        /// What was asked.
        requested: Duration,
        /// The limit.
        max: Duration,
    },
    /// Signing itself failed.
    #[error("signing the certificate: {0}")]
    Sign(#[from] rcgen::Error),
}

/// A certificate authority: a signing key and certificate, and the chain up to the root.
pub struct Ca {
    issuer: Issuer<'static, KeyPair>,
    /// What follows a leaf in a chain: the signing certificate and its intermediates
    /// (when the CA is an intermediate), then the root; PEM, one certificate each.
    chain: Vec<String>,
    ttl: CertTtl,
}

/// A signed leaf and what a peer needs to verify it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// PEM certificates, one each: the leaf first, the root last.
    pub chain: Vec<String>,
    /// When the leaf expires.
    pub not_after: SystemTime,
}

impl Ca {
    /// The self-signed root kept in `dir`: loaded when `dir` holds one, made (for
    /// `trust_domain`) and written there otherwise, with `ca-key.pem` mode 0600.
    pub fn load_or_create(dir: &Path, trust_domain: &str) -> Result<Ca, CaError> {
        if !dir.join(CA_KEY).exists() {
            let key = KeyPair::generate().map_err(CaError::Generate)?;
            let mut params = CertificateParams::default();
            params.distinguished_name = DistinguishedName::new();
            // Istio's self-signed root names the trust domain as its organization.
            params
                .distinguished_name
                .push(DnType::OrganizationName, trust_domain);
            params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
            params.key_usages = vec![
                KeyUsagePurpose::KeyCertSign,
                KeyUsagePurpose::CrlSign,
                KeyUsagePurpose::DigitalSignature,
            ];
            let now = SystemTime::now();
            params.not_before = now.into();
            params.not_after = (now + ROOT_TTL).into();
            params.serial_number = Some(random_serial());
            let cert = params.self_signed(&key).map_err(CaError::Generate)?;
            files::write_root(dir, &cert.pem(), &key)?;
        }
        Ca::load(dir)
    }

    /// The CA plugged in at `dir` in Istio's `cacerts` layout: `ca-cert.pem` and
    /// `ca-key.pem` sign, `root-cert.pem` is the root, and `cert-chain.pem` (optional)
    /// is the chain from `ca-cert.pem` up to the root.
    pub fn load(dir: &Path) -> Result<Ca, CaError> {
        let files = CaFiles::read(dir)?;
        let ca_path = files.path(CA_CERT);
        let invalid = |path: PathBuf, reason: String| CaError::Invalid { path, reason };
        let ca = parse(&files.ca_cert).map_err(|r| invalid(ca_path.clone(), r))?;
        if !ca.is_ca() {
            return Err(invalid(
                ca_path,
                "is not a CA certificate (basic constraints CA:FALSE or absent)".into(),
            ));
        }
        if !ca.validity().is_valid() {
            return Err(invalid(
                ca_path,
                format!(
                    "is not valid now (valid {} to {})",
                    ca.validity().not_before,
                    ca.validity().not_after
                ),
            ));
        }
        if ca.public_key().raw != files.ca_key.subject_public_key_info().as_slice() {
            return Err(invalid(
                files.path(CA_KEY),
                format!("is not the key of {}", ca_path.display()),
            ));
        }
        let chain = verified_chain(&files)?;
        let issuer = Issuer::from_ca_cert_der(&files.ca_cert, files.ca_key)
            .map_err(|e| invalid(ca_path, e.to_string()))?;
        Ok(Ca {
            issuer,
            chain,
            ttl: CertTtl::default(),
        })
    }

    /// The same CA with other workload certificate lifetimes.
    pub fn with_ttl(self, ttl: CertTtl) -> Ca {
        Ca { ttl, ..self }
    }

    /// The root certificate, PEM: what workloads trust.
    pub fn root_pem(&self) -> &str {
        self.chain.last().expect("a chain ends at its root")
    }

    /// Signs the PEM `csr` for `caller`'s identity, for `ttl` (the default when
    /// `None`). The certificate names the caller only; a CSR that names another URI
    /// identity is refused.
    pub fn sign_workload(
        &self,
        csr: &str,
        caller: &SpiffeId,
        ttl: Option<Duration>,
    ) -> Result<Signed, SignError> {
        let request =
            CertificateSigningRequestParams::from_pem(csr).map_err(|e| SignError::Csr {
                reason: e.to_string(),
            })?;
        let identity = caller.to_string();
        for name in &request.params.subject_alt_names {
            if let SanType::URI(uri) = name
                && uri.as_str() != identity
            {
                return Err(SignError::Identity {
                    requested: uri.as_str().to_owned(),
                    caller: caller.clone(),
                });
            }
        }
        let ttl = match ttl {
            None => self.ttl.default,
            Some(requested) if requested > self.ttl.max => {
                return Err(SignError::Ttl {
                    requested,
                    max: self.ttl.max,
                });
            }
            Some(requested) => requested,
        };
        let uri = identity.try_into()?;
        self.sign(&request.public_key, vec![SanType::URI(uri)], ttl)
    }

    /// Signs a leaf for `key` with `names`, for `ttl`.
    fn sign(
        &self,
        key: &impl PublicKeyData,
        names: Vec<SanType>,
        ttl: Duration,
    ) -> Result<Signed, SignError> {
        let mut params = CertificateParams::default();
        // As Istio's workload certificates: no subject, so the SAN extension is critical.
        params.distinguished_name = DistinguishedName::new();
        params.subject_alt_names = names;
        let now = SystemTime::now();
        params.not_before = now.into();
        params.not_after = (now + ttl).into();
        params.serial_number = Some(random_serial());
        params.is_ca = IsCa::ExplicitNoCa;
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        params.use_authority_key_identifier_extension = true;
        let leaf = params.signed_by(key, &self.issuer)?;
        let mut chain = Vec::with_capacity(self.chain.len() + 1);
        chain.push(leaf.pem());
        chain.extend(self.chain.iter().cloned());
        Ok(Signed {
            chain,
            not_after: now + ttl,
        })
    }

    /// Signs pilot's own serving certificate for `key` with `names`.
    pub(crate) fn sign_server(
        &self,
        key: &KeyPair,
        names: Vec<SanType>,
    ) -> Result<Signed, SignError> {
        self.sign(key, names, self.ttl.default)
    }
}

impl fmt::Debug for Ca {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Ca")
            .field("chain", &self.chain.len())
            .field("ttl", &self.ttl)
            .finish_non_exhaustive()
    }
}

/// A random positive 128-bit serial number, as RFC 5280 asks of CAs.
fn random_serial() -> SerialNumber {
    let mut bytes = [0u8; 16];
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("the system's random source works");
    bytes[0] &= 0x7f;
    SerialNumber::from_slice(&bytes)
}

fn parse<'a>(der: &'a CertificateDer<'_>) -> Result<X509Certificate<'a>, String> {
    X509Certificate::from_der(der)
        .map(|(_, cert)| cert)
        .map_err(|e| format!("not an X.509 certificate: {e}"))
}

/// The PEM certificates that follow a leaf: the signing certificate and the
/// intermediates of `cert-chain.pem` (when the CA is not the root itself), then the
/// root. Each is checked to be signed by the next, so a broken layout is found at start,
/// not by the first peer that fails to verify a workload.
fn verified_chain(files: &CaFiles) -> Result<Vec<String>, CaError> {
    let mut path: Vec<&CertificateDer<'static>> = Vec::new();
    if files.ca_cert != files.root {
        path.push(&files.ca_cert);
        // Istio's cert-chain.pem starts with ca-cert.pem and often ends with the root.
        let between = files.chain.iter().flatten();
        path.extend(between.filter(|c| **c != files.ca_cert && **c != files.root));
    }
    path.push(&files.root);
    for pair in path.windows(2) {
        let (child, parent) = (parse(pair[0]), parse(pair[1]));
        let signed = match (&child, &parent) {
            (Ok(child), Ok(parent)) => child.verify_signature(Some(parent.public_key())).is_ok(),
            _ => false,
        };
        if !signed {
            let which = |c: &Result<X509Certificate<'_>, String>| match c {
                Ok(c) => c.subject().to_string(),
                Err(e) => e.clone(),
            };
            return Err(CaError::Invalid {
                path: files.path(if files.chain.is_some() {
                    CERT_CHAIN
                } else {
                    CA_CERT
                }),
                reason: format!(
                    "{:?} is not signed by {:?}: the chain from {CA_CERT} does not reach {ROOT_CERT}",
                    which(&child),
                    which(&parent)
                ),
            });
        }
    }
    Ok(path.into_iter().map(pem).collect())
}

/// A certificate in PEM, 64 base64 characters a line (RFC 7468).
fn pem(der: &CertificateDer<'_>) -> String {
    use base64::Engine;
    let text = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = String::from("-----BEGIN CERTIFICATE-----\n");
    for line in text.as_bytes().chunks(64) {
        out.push_str(std::str::from_utf8(line).expect("base64 is ASCII"));
        out.push('\n');
    }
    out.push_str("-----END CERTIFICATE-----\n");
    out
}
