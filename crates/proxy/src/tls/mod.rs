//! TLS in the proxy, as Envoy's `envoy.transport_sockets.tls` does it.
//!
//! - Secrets ([`Secrets`]) come from the bootstrap, inline in a TLS context, from SDS
//!   over ADS, or from the proxy's own agent (`sds-grpc`: its workload identity). Each
//!   is parsed once when it arrives ([`Material`]) and swapped into its slot; the next
//!   handshake uses it, existing connections keep theirs.
//! - Downstream ([`ServerTls`]): TLS terminated after the filter chain is chosen, the
//!   client's certificate verified against the trusted CA and SAN matchers; the
//!   handshake's [`Session`] (SNI, ALPN, the peer's identity) goes with the connection.
//! - Upstream ([`Transport`], [`Transports`]): TLS originated to endpoints, chosen per
//!   endpoint by `transport_socket_matches`, the server's SANs verified.

mod cert;
mod client;
mod context;
mod peer;
mod provider;
mod san;
mod secret;
mod secrets;
mod server;
mod stream;
#[cfg(test)]
pub(crate) mod testing;
mod transport;

use std::io;

pub use cert::CertInfo;
pub use client::{Carried, ClientTls};
pub use context::Held;
pub use peer::{PeerCertificate, Session};
pub use provider::{Params, Side};
pub use secret::{Identity, Material, SecretError, Trust};
pub use secrets::{AGENT_SDS_CLUSTER, Provided, SecretSlot, SecretSource, Secrets};
pub use server::ServerTls;
pub use stream::Stream;
pub use transport::{RAW_BUFFER, TLS, Transport, Transports, UpstreamTls};

use crate::stats::SslStats;

/// Counts a handshake's outcome in Envoy's `ssl.*` statistics.
pub(crate) fn record_handshake(stats: &SslStats, outcome: Result<(), &io::Error>) {
    let Err(e) = outcome else {
        stats.handshake.inc();
        return;
    };
    stats.connection_error.inc();
    match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::InvalidCertificate(
            rustls::CertificateError::ApplicationVerificationFailure,
        )) => stats.fail_verify_san.inc(),
        Some(rustls::Error::InvalidCertificate(_)) => stats.fail_verify_error.inc(),
        Some(rustls::Error::NoCertificatesPresented) => stats.fail_verify_no_cert.inc(),
        _ => {}
    }
}

impl Transport {
    /// Makes `tcp` a connection of this transport: as it is, or after a TLS handshake
    /// (counted in `stats`) whose ALPN suits what it will carry.
    pub async fn wrap(
        &self,
        tcp: tokio::net::TcpStream,
        carried: Carried,
        stats: &SslStats,
    ) -> io::Result<Stream> {
        match self {
            Transport::Plaintext => Ok(Stream::Plain(tcp)),
            Transport::Tls(t) => {
                let connected = t.tls.connect(tcp, carried).await;
                record_handshake(stats, connected.as_ref().map(|_| ()));
                Ok(Stream::Tls(Box::new(connected?)))
            }
        }
    }
}
