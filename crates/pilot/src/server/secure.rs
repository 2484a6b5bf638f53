//! Istio's 15012: ADS and the CA on one gRPC server over TLS, with pilot's own
//! certificate signed by its CA.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mizzen_xds::AdsServer;
use mizzen_xds::ca::IstioCertificateServiceServer;
use tokio::net::TcpListener;

use super::Source;
use crate::ca::{Ca, CaService, CallerAuthenticator, ServingCert, SignError};

/// What pilot needs to serve xDS and its CA over TLS.
#[derive(Clone)]
pub struct SecureOptions {
    /// Where to listen (Istio's 15012).
    pub addr: SocketAddr,
    /// The CA that signs workload certificates and pilot's own.
    pub ca: Arc<Ca>,
    /// Who callers are: a certificate is signed for the caller's identity only.
    pub callers: Arc<dyn CallerAuthenticator>,
}

impl fmt::Debug for SecureOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SecureOptions")
            .field("addr", &self.addr)
            .field("ca", &self.ca)
            .finish_non_exhaustive()
    }
}

/// The bound TLS server, not yet serving.
pub(super) struct Secure {
    listener: TcpListener,
    ca: Arc<CaService>,
    cert: Arc<ServingCert>,
}

impl Secure {
    /// Signs pilot's certificate for the names proxies dial and the address bound.
    pub(super) fn new(
        listener: TcpListener,
        options: SecureOptions,
        trust_domain: &str,
    ) -> Result<Secure, SignError> {
        let ip = listener
            .local_addr()
            .expect("bound listener has an address")
            .ip();
        let cert = ServingCert::new(options.ca.clone(), ip)?;
        let ca = Arc::new(CaService::new(options.ca, options.callers, trust_domain));
        Ok(Secure { listener, ca, cert })
    }

    /// Where it listens.
    pub(super) fn addr(&self) -> SocketAddr {
        self.listener
            .local_addr()
            .expect("bound listener has an address")
    }

    /// Serves ADS and the CA until `shutdown`, then ends the ADS streams.
    pub(super) async fn serve(
        self,
        ads: &AdsServer<Source>,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), tonic::transport::Error> {
        let config = mizzen_xds::tls::server_config(self.cert.clone());
        let closing = ads.clone();
        let serving = tonic::transport::Server::builder()
            // As plaintext ADS: a proxy that vanished is found out here.
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)))
            .add_service(ads.service())
            .add_service(IstioCertificateServiceServer::new(self.ca))
            .serve_with_incoming_shutdown(
                mizzen_xds::tls::incoming(self.listener, config),
                async move {
                    shutdown.await;
                    closing.close_streams();
                },
            );
        // Renewal runs exactly as long as the server does.
        tokio::select! {
            served = serving => served,
            never = self.cert.renew() => match never {},
        }
    }
}
