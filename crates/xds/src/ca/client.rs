//! The CA's client: one unary call over a channel (plaintext or [`crate::tls`]).

use http::uri::PathAndQuery;
use tonic::transport::Channel;
use tonic::{IntoRequest, Response, Status};
use tonic_prost::ProstCodec;

use super::{CREATE_CERTIFICATE, IstioCertificateRequest, IstioCertificateResponse};

/// A client of `istio.v1.auth.IstioCertificateService`.
#[derive(Debug, Clone)]
pub struct IstioCertificateServiceClient {
    grpc: tonic::client::Grpc<Channel>,
}

impl IstioCertificateServiceClient {
    /// A client that calls over `channel`.
    pub fn new(channel: Channel) -> Self {
        Self {
            grpc: tonic::client::Grpc::new(channel),
        }
    }

    /// Asks the CA to sign a CSR. Callers authenticate with request metadata
    /// (`authorization: Bearer <token>`, as istio-agent sends its JWT).
    pub async fn create_certificate(
        &mut self,
        request: impl IntoRequest<IstioCertificateRequest>,
    ) -> Result<Response<IstioCertificateResponse>, Status> {
        self.grpc
            .ready()
            .await
            .map_err(|e| Status::unavailable(format!("CA channel not ready: {e}")))?;
        let codec = ProstCodec::<IstioCertificateRequest, IstioCertificateResponse>::default();
        let path = PathAndQuery::from_static(CREATE_CERTIFICATE);
        self.grpc.unary(request.into_request(), path, codec).await
    }
}
