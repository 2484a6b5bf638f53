//! Upstream TLS (`UpstreamTlsContext`): originating TLS on a connection to an endpoint,
//! with the context's SNI, ALPN and client certificate, verifying the server's
//! certificate against the trusted CA and `match_subject_alt_names` (not against the
//! SNI: as in Envoy, the SAN matchers say who the server must be).
//!
//! ALPN: the context's list when it has one; otherwise, as Envoy's connection pools
//! do, the protocol the pool speaks (`h2` or `http/1.1`), and none for TCP.

use std::io;
use std::sync::Arc;

use mizzen_xds::pb::envoy::extensions::transport_sockets::tls::v3::UpstreamTlsContext;
use rustls::client::ResolvesClientCert;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::sign::CertifiedKey;
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;

use super::context::{Common, Held, Peer, Signatures, Validation};
use super::provider::Side;
use super::secrets::{SecretSlot, Secrets};

/// What an upstream connection will carry, which picks the ALPN fallback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Carried {
    /// HTTP/1.1 requests.
    Http1,
    /// HTTP/2 requests.
    Http2,
    /// A TCP relay's bytes.
    Opaque,
}

/// A compiled `UpstreamTlsContext`.
#[derive(Debug)]
pub struct ClientTls {
    common: Arc<Common>,
    /// The server name sent, or a placeholder when none is (SNI turned off).
    server_name: ServerName<'static>,
    /// By what the connection carries: HTTP/1.1, HTTP/2, TCP.
    configs: [Arc<ClientConfig>; 3],
}

impl ClientTls {
    /// Compiles a context; errors are `(field, reason)`.
    pub fn compile(
        ctx: &UpstreamTlsContext,
        secrets: &Secrets,
    ) -> Result<ClientTls, (String, String)> {
        let unsupported = [
            ("auto_host_sni", ctx.auto_host_sni),
            ("auto_sni_san_validation", ctx.auto_sni_san_validation),
            ("allow_renegotiation", ctx.allow_renegotiation),
        ];
        if let Some((field, _)) = unsupported.iter().find(|(_, set)| *set) {
            return Err(((*field).into(), "is not supported".into()));
        }
        let common = match &ctx.common_tls_context {
            Some(c) => Common::compile(c, Side::Client, secrets)
                .map_err(|(f, r)| (format!("common_tls_context.{f}"), r))?,
            None => Common::compile(&Default::default(), Side::Client, secrets)?,
        };
        let common = Arc::new(common);
        let (server_name, sni) = match ctx.sni.as_str() {
            "" => (
                ServerName::try_from("invalid").expect("a valid name"),
                false,
            ),
            sni => (
                ServerName::try_from(sni.to_owned())
                    .map_err(|e| ("sni".to_owned(), format!("{sni:?}: {e}")))?,
                true,
            ),
        };
        let mut config = ClientConfig::builder_with_provider(common.params.provider.clone())
            .with_protocol_versions(common.params.versions)
            .map_err(|e| ("common_tls_context.tls_params".to_owned(), e.to_string()))?
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(ServerVerifier {
                validation: common.validation.clone(),
                signatures: Signatures(common.params.provider.clone()),
            }))
            .with_client_cert_resolver(Arc::new(Certificates(common.clone())));
        config.enable_sni = sni;
        let with = |fallback: &[u8]| {
            let mut c = config.clone();
            c.alpn_protocols = match (common.alpn.is_empty(), fallback.is_empty()) {
                (false, _) => common.alpn.clone(),
                (true, false) => vec![fallback.to_vec()],
                (true, true) => Vec::new(),
            };
            Arc::new(c)
        };
        Ok(ClientTls {
            configs: [with(b"http/1.1"), with(b"h2"), with(b"")],
            common,
            server_name,
        })
    }

    /// Every secret slot the context reads.
    pub fn slots(&self) -> impl Iterator<Item = &Arc<SecretSlot>> {
        self.common.slots()
    }

    /// The first URI SAN of the certificate it presents now, if any (Istio's
    /// `source_principal` at the source).
    pub fn local_uri_san(&self) -> Option<std::sync::Arc<str>> {
        let sans = self.common.local_uri_sans();
        sans.into_iter().next().map(Into::into)
    }

    /// The certificates it holds now.
    pub fn held(&self) -> Held {
        self.common.held()
    }

    /// Completes the client side of the handshake on `io`.
    pub async fn connect<IO>(&self, io: IO, carried: Carried) -> io::Result<TlsStream<IO>>
    where
        IO: AsyncRead + AsyncWrite + Unpin,
    {
        let config = &self.configs[match carried {
            Carried::Http1 => 0,
            Carried::Http2 => 1,
            Carried::Opaque => 2,
        }];
        TlsConnector::from(config.clone())
            .connect(self.server_name.clone(), io)
            .await
    }
}

/// Presents the context's first certificate whose key suits the server, if any.
#[derive(Debug)]
struct Certificates(Arc<Common>);

impl ResolvesClientCert for Certificates {
    fn resolve(&self, _hints: &[&[u8]], schemes: &[SignatureScheme]) -> Option<Arc<CertifiedKey>> {
        self.0.certificate(schemes)
    }

    fn has_certs(&self) -> bool {
        !self.0.certificates.is_empty()
    }
}

/// Verifies the server's certificate against the context's validation; with none, any
/// certificate is accepted, as in Envoy.
#[derive(Debug)]
struct ServerVerifier {
    validation: Option<Arc<Validation>>,
    signatures: Signatures,
}

impl ServerCertVerifier for ServerVerifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if let Some(v) = &self.validation {
            v.verify(
                Peer::Server,
                end_entity,
                intermediates,
                now,
                &self.signatures.0,
            )?;
        }
        Ok(ServerCertVerified::assertion())
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
