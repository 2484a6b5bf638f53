//! gRPC over TLS without tonic's own TLS features: rustls through `tokio-rustls`, with a
//! connector for clients ([`ClientTls`]) and an accepting stream for servers
//! ([`incoming`]). Both speak only HTTP/2 (ALPN `h2`), as gRPC over TLS does.
//!
//! Why not tonic's `tls-ring`: its client takes its roots and names from the URI at
//! connect time and brings its own server-side plumbing; a connector of our own is as
//! short, lets the proxy check the name Istio's agent checks (`ISTIOD_SAN`) whatever the
//! address, and shares one rustls setup (ring, explicitly) with the rest of the mesh.

mod client;
mod server;

pub use client::ClientTls;
pub use server::{TlsConnection, incoming, server_config};

use std::sync::Arc;

use rustls::crypto::CryptoProvider;
use rustls::pki_types::CertificateDer;
use rustls::pki_types::pem::PemObject;

/// gRPC's one protocol over TLS.
const H2: &[u8] = b"h2";

/// Why TLS settings cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// The PEM holds no certificate.
    #[error("{what}: no PEM certificate found")]
    NoCertificates {
        /// Which input.
        what: String,
    },
    /// The PEM is malformed.
    #[error("{what}: {source}")]
    Pem {
        /// Which input.
        what: String,
        /// Why.
        source: rustls::pki_types::pem::Error,
    },
    /// A certificate cannot be a trust anchor.
    #[error("{what}: {source}")]
    Root {
        /// Which input.
        what: String,
        /// Why.
        source: rustls::Error,
    },
    /// The name to verify is neither a DNS name nor an IP address.
    #[error("{name:?} is not a valid TLS server name")]
    ServerName {
        /// The name.
        name: String,
    },
}

/// The crypto the mesh uses, named rather than left to process-wide defaults.
fn provider() -> Arc<CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

/// Every certificate in a PEM bundle, in order; `what` names the input in errors.
pub fn certificates(pem: &[u8], what: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_slice_iter(pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|source| TlsError::Pem {
            what: what.to_owned(),
            source,
        })?;
    if certs.is_empty() {
        return Err(TlsError::NoCertificates {
            what: what.to_owned(),
        });
    }
    Ok(certs)
}
