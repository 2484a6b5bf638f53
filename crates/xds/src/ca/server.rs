//! The CA's server side: a tonic service that decodes `CreateCertificate` and hands it
//! to an implementation of [`IstioCertificateService`].

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use tonic::body::Body;
use tonic::server::{NamedService, UnaryService};
use tonic::{Request, Response, Status};
use tonic_prost::ProstCodec;

use super::{CREATE_CERTIFICATE, IstioCertificateRequest, IstioCertificateResponse, SERVICE};

/// What a CA implements.
pub trait IstioCertificateService: Send + Sync + 'static {
    /// Signs the request's CSR for the authenticated caller.
    fn create_certificate(
        &self,
        request: Request<IstioCertificateRequest>,
    ) -> impl Future<Output = Result<Response<IstioCertificateResponse>, Status>> + Send;
}

/// A CA as a gRPC service, to add to a `tonic` server.
pub struct IstioCertificateServiceServer<T> {
    inner: Arc<T>,
}

impl<T> IstioCertificateServiceServer<T> {
    /// Serves `inner`.
    pub fn new(inner: Arc<T>) -> Self {
        Self { inner }
    }
}

impl<T> Clone for IstioCertificateServiceServer<T> {
    fn clone(&self) -> Self {
        Self {
            inner: self.inner.clone(),
        }
    }
}

impl<T> NamedService for IstioCertificateServiceServer<T> {
    const NAME: &'static str = SERVICE;
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send>>;

impl<T: IstioCertificateService> tower_service::Service<http::Request<Body>>
    for IstioCertificateServiceServer<T>
{
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = BoxFuture<Result<http::Response<Body>, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        if request.uri().path() != CREATE_CERTIFICATE {
            let status = Status::unimplemented(format!(
                "{} is not a method of {SERVICE}",
                request.uri().path()
            ));
            return Box::pin(std::future::ready(Ok(status.into_http())));
        }
        let method = CreateCertificate(self.inner.clone());
        Box::pin(async move {
            let codec = ProstCodec::<IstioCertificateResponse, IstioCertificateRequest>::default();
            Ok(tonic::server::Grpc::new(codec).unary(method, request).await)
        })
    }
}

/// The one method, as tonic's unary server drives it.
struct CreateCertificate<T>(Arc<T>);

impl<T: IstioCertificateService> UnaryService<IstioCertificateRequest> for CreateCertificate<T> {
    type Response = IstioCertificateResponse;
    type Future = BoxFuture<Result<Response<IstioCertificateResponse>, Status>>;

    fn call(&mut self, request: Request<IstioCertificateRequest>) -> Self::Future {
        let inner = self.0.clone();
        Box::pin(async move { inner.create_certificate(request).await })
    }
}
