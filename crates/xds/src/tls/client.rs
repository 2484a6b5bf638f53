//! The client side: a connector that opens TCP, verifies the server against the given
//! roots and name, and hands tonic an HTTP/2 stream.

use std::fmt;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use http::Uri;
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use rustls::{ClientConfig, RootCertStore};
use tokio::net::TcpStream;
use tokio_rustls::TlsConnector;
use tokio_rustls::client::TlsStream;
use tonic::transport::{Channel, Endpoint};

use super::{H2, TlsError, certificates, provider};

/// Whom a client trusts and which name the server must prove; cheap to clone.
#[derive(Clone)]
pub struct ClientTls {
    connector: TlsConnector,
    server_name: ServerName<'static>,
    roots: Arc<[CertificateDer<'static>]>,
}

impl ClientTls {
    /// Trusts the certificates in `roots_pem` (a bundle) and expects the server to
    /// present a certificate for `server_name` (a DNS name or an IP address).
    pub fn new(roots_pem: &[u8], server_name: &str) -> Result<ClientTls, TlsError> {
        let roots: Arc<[CertificateDer<'static>]> =
            certificates(roots_pem, "root certificates")?.into();
        let mut store = RootCertStore::empty();
        for root in roots.iter() {
            store.add(root.clone()).map_err(|source| TlsError::Root {
                what: "root certificates".into(),
                source,
            })?;
        }
        let server_name =
            ServerName::try_from(server_name.to_owned()).map_err(|_| TlsError::ServerName {
                name: server_name.to_owned(),
            })?;
        let mut config = ClientConfig::builder_with_provider(provider())
            .with_safe_default_protocol_versions()
            .expect("ring supports the default TLS versions")
            .with_root_certificates(store)
            .with_no_client_auth();
        config.alpn_protocols = vec![H2.to_vec()];
        Ok(ClientTls {
            connector: TlsConnector::from(Arc::new(config)),
            server_name,
            roots,
        })
    }

    /// The name the server must prove.
    pub fn server_name(&self) -> String {
        self.server_name.to_str().into_owned()
    }

    /// Opens a channel to `endpoint` (an `https://host:port` URI) over TLS.
    pub async fn connect(&self, endpoint: Endpoint) -> Result<Channel, tonic::transport::Error> {
        endpoint
            .connect_with_connector(Connector {
                tls: self.connector.clone(),
                server_name: self.server_name.clone(),
            })
            .await
    }
}

impl fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientTls")
            .field("server_name", &self.server_name)
            .field("roots", &self.roots.len())
            .finish()
    }
}

/// Equal when they trust the same roots and expect the same name.
impl PartialEq for ClientTls {
    fn eq(&self, other: &Self) -> bool {
        self.server_name == other.server_name && self.roots == other.roots
    }
}

impl Eq for ClientTls {}

/// What tonic calls to open a connection.
#[derive(Clone)]
struct Connector {
    tls: TlsConnector,
    server_name: ServerName<'static>,
}

impl tower_service::Service<Uri> for Connector {
    type Response = TokioIo<TlsStream<TcpStream>>;
    type Error = io::Error;
    type Future = Pin<Box<dyn Future<Output = io::Result<Self::Response>> + Send>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, uri: Uri) -> Self::Future {
        let (tls, server_name) = (self.tls.clone(), self.server_name.clone());
        Box::pin(async move {
            let host = uri
                .host()
                .ok_or_else(|| {
                    io::Error::new(io::ErrorKind::InvalidInput, format!("{uri} names no host"))
                })?
                .trim_start_matches('[')
                .trim_end_matches(']');
            let port = uri.port_u16().unwrap_or(443);
            let tcp = TcpStream::connect((host, port)).await?;
            tcp.set_nodelay(true)?;
            let stream = tls.connect(server_name, tcp).await?;
            if stream.get_ref().1.alpn_protocol() != Some(H2) {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("{uri} did not agree to HTTP/2 (ALPN h2) over TLS"),
                ));
            }
            Ok(TokioIo::new(stream))
        })
    }
}
