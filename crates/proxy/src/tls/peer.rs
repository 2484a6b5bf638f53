//! What a downstream TLS handshake established: the server name asked for, the protocol
//! ALPN chose, and the client's verified certificate, the input of RBAC's
//! `authenticated.principal_name` and of `x-forwarded-client-cert`.

use std::sync::Arc;

use rustls::pki_types::CertificateDer;

use super::cert::CertInfo;

/// A downstream connection's TLS session.
#[derive(Debug, Clone, Default)]
pub struct Session {
    /// The server name (SNI) the client asked for.
    pub sni: Option<String>,
    /// The protocol ALPN chose, if any.
    pub alpn: Option<Vec<u8>>,
    /// The client's certificate, verified, when it presented one.
    pub peer: Option<PeerCertificate>,
    /// The URI SANs of the certificate the proxy presented (`x-forwarded-client-cert`'s
    /// `By`).
    pub local_uri_sans: Vec<String>,
}

/// A verified client certificate.
#[derive(Debug, Clone)]
pub struct PeerCertificate {
    /// Its names and dates.
    pub info: CertInfo,
    /// The certificates the client sent, its own first.
    pub chain: Vec<CertificateDer<'static>>,
}

impl Session {
    /// The peer's principal, as RBAC's `authenticated.principal_name` matches it: the
    /// first URI SAN (a SPIFFE identity), else the first DNS SAN, else the subject.
    pub fn principal(&self) -> Option<&str> {
        self.peer.as_ref().map(|p| p.info.principal())
    }

    /// The peer's first URI SAN.
    pub fn uri_san(&self) -> Option<&str> {
        self.peer
            .as_ref()
            .and_then(|p| p.info.uri_sans.first())
            .map(String::as_str)
    }

    /// The peer's DNS SANs.
    pub fn dns_sans(&self) -> &[String] {
        self.peer.as_ref().map_or(&[], |p| &p.info.dns_sans)
    }
}

impl PeerCertificate {
    /// The client's own certificate.
    pub fn leaf(&self) -> &CertificateDer<'static> {
        &self.chain[0]
    }

    /// The SHA-256 digest of the client's certificate in lowercase hex
    /// (`x-forwarded-client-cert`'s `Hash`), computed when the handshake read it.
    pub fn sha256(&self) -> Arc<str> {
        self.info.sha256.clone()
    }
}
