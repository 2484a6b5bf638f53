//! ADS as a gRPC service, written by hand rather than generated: requests are decoded
//! as usual, but responses leave as the chunks [`super::response`] framed, so the
//! resources they share are never copied into a per-stream buffer.

use std::convert::Infallible;
use std::future::{Ready, ready};
use std::pin::Pin;
use std::task::{Context, Poll, ready};

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, header};
use http_body::Frame;
use tokio::sync::mpsc;
use tonic::Status;
use tonic::body::Body;
use tonic::codec::{Codec, Streaming};
use tonic::server::NamedService;
use tonic_prost::ProstCodec;

use super::response::Framed;
use super::{AdsServer, delta::Delta, sotw::Sotw};
use crate::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DiscoveryRequest};
use crate::source::ResourceSource;

const SERVICE: &str = "envoy.service.discovery.v3.AggregatedDiscoveryService";
const SOTW_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/StreamAggregatedResources";
const DELTA_PATH: &str =
    "/envoy.service.discovery.v3.AggregatedDiscoveryService/DeltaAggregatedResources";

/// The biggest request a proxy may send (gRPC's usual limit).
const MAX_REQUEST: usize = 4 * 1024 * 1024;

/// What a stream's task hands its response body: a framed response, or the status
/// the stream ends with.
pub(super) type Outgoing = Result<Framed, Status>;

/// Envoy's `AggregatedDiscoveryService`, to add to a `tonic` server.
pub struct AdsService<S: ResourceSource> {
    server: AdsServer<S>,
}

impl<S: ResourceSource> AdsService<S> {
    pub(super) fn new(server: AdsServer<S>) -> Self {
        Self { server }
    }
}

impl<S: ResourceSource> Clone for AdsService<S> {
    fn clone(&self) -> Self {
        Self {
            server: self.server.clone(),
        }
    }
}

impl<S: ResourceSource> NamedService for AdsService<S> {
    const NAME: &'static str = SERVICE;
}

impl<S: ResourceSource> tower_service::Service<http::Request<Body>> for AdsService<S> {
    type Response = http::Response<Body>;
    type Error = Infallible;
    type Future = Ready<Result<Self::Response, Infallible>>;

    fn poll_ready(&mut self, _: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        Poll::Ready(Ok(()))
    }

    fn call(&mut self, request: http::Request<Body>) -> Self::Future {
        if let Some(encoding) = request.headers().get("grpc-encoding")
            && encoding != "identity"
        {
            let status =
                Status::unimplemented(format!("request compression {encoding:?} is not supported"));
            return ready(Ok(status.into_http()));
        }
        let response = match request.uri().path() {
            SOTW_PATH => {
                let inbound = decode::<DiscoveryRequest>(request.into_body());
                respond(self.server.spawn::<Sotw<S>>(inbound))
            }
            DELTA_PATH => {
                let inbound = decode::<DeltaDiscoveryRequest>(request.into_body());
                respond(self.server.spawn::<Delta<S>>(inbound))
            }
            path => {
                Status::unimplemented(format!("{path} is not a method of {SERVICE}")).into_http()
            }
        };
        ready(Ok(response))
    }
}

fn decode<M: prost::Message + Default + 'static>(body: Body) -> Streaming<M> {
    let mut codec = ProstCodec::<M, M>::default();
    Streaming::new_request(codec.decoder(), body, None, Some(MAX_REQUEST))
}

fn respond(outbox: mpsc::Receiver<Outgoing>) -> http::Response<Body> {
    let mut response = http::Response::new(Body::new(Outbox {
        rx: outbox,
        chunks: Vec::new().into_iter(),
        ended: false,
    }));
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    response
}

/// A stream's response body: the chunks of each response its task sends, then the
/// trailers with the stream's status.
struct Outbox {
    rx: mpsc::Receiver<Outgoing>,
    chunks: std::vec::IntoIter<Bytes>,
    ended: bool,
}

impl http_body::Body for Outbox {
    type Data = Bytes;
    type Error = Infallible;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Infallible>>> {
        loop {
            if let Some(chunk) = self.chunks.next() {
                return Poll::Ready(Some(Ok(Frame::data(chunk))));
            }
            if self.ended {
                return Poll::Ready(None);
            }
            let status = match ready!(self.rx.poll_recv(cx)) {
                Some(Ok(framed)) => {
                    self.chunks = framed.into_chunks().into_iter();
                    continue;
                }
                Some(Err(status)) => status,
                None => Status::ok(""),
            };
            self.ended = true;
            let mut trailers = HeaderMap::new();
            if let Err(status) = status.add_header(&mut trailers) {
                tracing::debug!(%status, "xDS stream status not encodable");
                Status::internal("").add_header(&mut trailers).ok();
            }
            return Poll::Ready(Some(Ok(Frame::trailers(trailers))));
        }
    }

    fn is_end_stream(&self) -> bool {
        self.ended && self.chunks.len() == 0
    }
}
