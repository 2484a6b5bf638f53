//! Pilot's own TLS certificate for 15012, signed by its CA for the names proxies dial
//! (`istiod.istio-system.svc`, `localhost`, `127.0.0.1`), and renewed at half its life
//! while connections keep running.

use std::convert::Infallible;
use std::fmt;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use rcgen::{KeyPair, SanType};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::{ClientHello, ResolvesServerCert};
use rustls::sign::CertifiedKey;

use super::{Ca, SignError};

/// Istio's name for the control plane's service: pilot's certificate carries it, and
/// proxies verify it (Istio's agent does unless `ISTIOD_SAN` says otherwise).
pub const ISTIOD_SAN: &str = "istiod.istio-system.svc";
/// How long to wait before trying again when renewal fails.
const RETRY: Duration = Duration::from_secs(60);

/// The certificate pilot serves TLS with; the TLS server asks it at each handshake.
pub(crate) struct ServingCert {
    ca: Arc<Ca>,
    names: Vec<SanType>,
    current: ArcSwap<CertifiedKey>,
}

impl ServingCert {
    /// Issues the first certificate, for the usual names and `ip` (the address pilot
    /// listens on, when it is a specific one).
    pub(crate) fn new(ca: Arc<Ca>, ip: IpAddr) -> Result<Arc<ServingCert>, SignError> {
        let mut names = vec![
            SanType::DnsName(ISTIOD_SAN.try_into()?),
            SanType::DnsName("localhost".try_into()?),
            SanType::IpAddress(IpAddr::from([127, 0, 0, 1])),
        ];
        if !ip.is_unspecified() && ip != IpAddr::from([127, 0, 0, 1]) {
            names.push(SanType::IpAddress(ip));
        }
        let (first, _) = issue(&ca, &names)?;
        Ok(Arc::new(ServingCert {
            ca,
            names,
            current: ArcSwap::from_pointee(first),
        }))
    }

    /// Renews the certificate at half its life, for as long as it is polled.
    pub(crate) async fn renew(&self) -> Infallible {
        let mut next = self.ca.ttl.default / 2;
        loop {
            tokio::time::sleep(next).await;
            next = match issue(&self.ca, &self.names) {
                Ok((key, lifetime)) => {
                    self.current.store(Arc::new(key));
                    lifetime / 2
                }
                Err(e) => {
                    tracing::error!(error = %e, "renewing pilot's serving certificate");
                    RETRY
                }
            };
        }
    }
}

/// A fresh key and its certificate chain, and how long it lives.
fn issue(ca: &Ca, names: &[SanType]) -> Result<(CertifiedKey, Duration), SignError> {
    let key = KeyPair::generate()?;
    let signed = ca.sign_server(&key, names.to_vec())?;
    let chain = signed
        .chain
        .iter()
        .map(|pem| CertificateDer::from_pem_slice(pem.as_bytes()))
        .collect::<Result<Vec<_>, _>>()
        .expect("the CA writes valid PEM");
    let der = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
    let signing = rustls::crypto::ring::sign::any_ecdsa_type(&der)
        .expect("rcgen makes ECDSA P-256 keys, which ring signs with");
    let lifetime = signed
        .not_after
        .duration_since(SystemTime::now())
        .unwrap_or_default();
    Ok((CertifiedKey::new(chain, signing), lifetime))
}

impl ResolvesServerCert for ServingCert {
    fn resolve(&self, _: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        Some(self.current.load_full())
    }
}

impl fmt::Debug for ServingCert {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ServingCert")
            .field("names", &self.names)
            .finish_non_exhaustive()
    }
}
