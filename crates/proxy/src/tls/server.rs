//! Downstream TLS (`DownstreamTlsContext`): terminating a connection's TLS after its
//! filter chain was chosen. The rustls configs are built once per context; the
//! certificate and the trusted CAs are read from their slots at each handshake, so a
//! rotated secret applies to the next handshake without touching the config.
//!
//! ALPN: when the client offers a protocol of the context's list, one is chosen; when it
//! offers only others (Istio's `istio-peer-exchange`, `istio`), the handshake goes on
//! without ALPN, as BoringSSL does, instead of failing as rustls would.

use std::io;
use std::sync::Arc;

use mizzen_xds::pb::envoy::extensions::transport_sockets::tls::v3::DownstreamTlsContext;
use rustls::client::danger::HandshakeSignatureValid;
use rustls::pki_types::{CertificateDer, UnixTime};
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::server::{Acceptor, ClientHello, ResolvesServerCert, ServerConfig};
use rustls::sign::CertifiedKey;
use rustls::{DigitallySignedStruct, DistinguishedName, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::LazyConfigAcceptor;
use tokio_rustls::server::TlsStream;

use super::cert::CertInfo;
use super::context::{Common, Held, Peer, Signatures, Validation};
use super::peer::{PeerCertificate, Session};
use super::provider::Side;
use super::secrets::{SecretSlot, Secrets};
use crate::stats::SslStats;

/// A compiled `DownstreamTlsContext`.
#[derive(Debug)]
pub struct ServerTls {
    common: Arc<Common>,
    /// Used when the client offers a protocol of the context's ALPN list.
    with_alpn: Arc<ServerConfig>,
    /// Used otherwise.
    without_alpn: Arc<ServerConfig>,
    stats: Arc<SslStats>,
}

impl ServerTls {
    /// Compiles a context, counting its handshakes in `stats`; errors are
    /// `(field, reason)`.
    pub fn compile(
        ctx: &DownstreamTlsContext,
        secrets: &Secrets,
        stats: Arc<SslStats>,
    ) -> Result<ServerTls, (String, String)> {
        let unsupported = [
            ("require_sni", ctx.require_sni.is_some_and(|b| b.value)),
            (
                "session_ticket_keys_type",
                ctx.session_ticket_keys_type.is_some(),
            ),
        ];
        if let Some((field, _)) = unsupported.iter().find(|(_, set)| *set) {
            return Err(((*field).into(), "is not supported".into()));
        }
        let Some(c) = &ctx.common_tls_context else {
            return Err(("common_tls_context".into(), "must be set".into()));
        };
        let common = Common::compile(c, Side::Server, secrets)
            .map_err(|(f, r)| (format!("common_tls_context.{f}"), r))?;
        if common.certificates.is_empty() {
            return Err((
                "common_tls_context".into(),
                "a server needs a certificate (tls_certificates or tls_certificate_sds_secret_configs)"
                    .into(),
            ));
        }
        let common = Arc::new(common);
        let require = ctx.require_client_certificate.is_some_and(|b| b.value);
        let verifier: Arc<dyn ClientCertVerifier> = match (&common.validation, require) {
            (None, false) => rustls::server::WebPkiClientVerifier::no_client_auth(),
            (validation, mandatory) => Arc::new(ClientVerifier {
                validation: validation.clone(),
                mandatory,
                signatures: Signatures(common.params.provider.clone()),
            }),
        };
        let config = ServerConfig::builder_with_provider(common.params.provider.clone())
            .with_protocol_versions(common.params.versions)
            .map_err(|e| ("common_tls_context.tls_params".to_owned(), e.to_string()))?
            .with_client_cert_verifier(verifier)
            .with_cert_resolver(Arc::new(Certificates(common.clone())));
        let mut with_alpn = config.clone();
        with_alpn.alpn_protocols = common.alpn.clone();
        Ok(ServerTls {
            common,
            with_alpn: Arc::new(with_alpn),
            without_alpn: Arc::new(config),
            stats,
        })
    }

    /// Every secret slot the context reads.
    pub fn slots(&self) -> impl Iterator<Item = &Arc<SecretSlot>> {
        self.common.slots()
    }

    /// The certificates it holds now.
    pub fn held(&self) -> Held {
        self.common.held()
    }

    /// Completes the server side of the handshake on `io` (whose ClientHello is next),
    /// counting it in the listener's `ssl.*` statistics.
    pub async fn accept<IO>(&self, io: IO) -> io::Result<(TlsStream<IO>, Session)>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let accepted = self.handshake(io).await;
        super::record_handshake(&self.stats, accepted.as_ref().map(|_| ()));
        if let Ok((_, session)) = &accepted
            && session.peer.is_none()
        {
            self.stats.no_certificate.inc();
        }
        accepted
    }

    async fn handshake<IO>(&self, io: IO) -> io::Result<(TlsStream<IO>, Session)>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let start = LazyConfigAcceptor::new(Acceptor::default(), io).await?;
        let hello = start.client_hello();
        let sni = hello.server_name().map(str::to_owned);
        let ours = |p: &[u8]| self.common.alpn.iter().any(|a| a == p);
        let config = if hello.alpn().is_some_and(|mut offered| offered.any(ours)) {
            self.with_alpn.clone()
        } else {
            self.without_alpn.clone()
        };
        let stream = start.into_stream(config).await?;
        let (_, conn) = stream.get_ref();
        let peer = match conn.peer_certificates() {
            Some([leaf, ..]) => Some(PeerCertificate {
                info: CertInfo::parse(leaf).map_err(io::Error::other)?,
                chain: conn
                    .peer_certificates()
                    .unwrap_or_default()
                    .iter()
                    .map(|c| c.clone().into_owned())
                    .collect(),
            }),
            _ => None,
        };
        let session = Session {
            sni,
            alpn: conn.alpn_protocol().map(<[u8]>::to_vec),
            peer,
            local_uri_sans: self.common.local_uri_sans(),
        };
        Ok((stream, session))
    }
}

/// Presents the context's first certificate whose key suits the client.
#[derive(Debug)]
struct Certificates(Arc<Common>);

impl ResolvesServerCert for Certificates {
    fn resolve(&self, hello: ClientHello<'_>) -> Option<Arc<CertifiedKey>> {
        let found = self.0.certificate(hello.signature_schemes());
        if found.is_none() {
            tracing::debug!("no certificate to present: its secret has not arrived");
        }
        found
    }
}

/// Asks for a client certificate and verifies it against the context's validation.
#[derive(Debug)]
struct ClientVerifier {
    /// None: any certificate is accepted (only its presence is required).
    validation: Option<Arc<Validation>>,
    mandatory: bool,
    signatures: Signatures,
}

impl ClientCertVerifier for ClientVerifier {
    fn client_auth_mandatory(&self) -> bool {
        self.mandatory
    }

    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        if let Some(v) = &self.validation {
            v.verify(
                Peer::Client,
                end_entity,
                intermediates,
                now,
                &self.signatures.0,
            )?;
        }
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.signatures.tls12(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.signatures.tls13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.signatures.schemes()
    }
}
