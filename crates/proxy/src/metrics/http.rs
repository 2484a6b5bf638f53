//! One HTTP request's telemetry: the peer metadata headers exchanged as Istio's metadata
//! exchange does (the client's proxy sends its own on requests and reads the server's on
//! responses; the server's proxy reads the client's and answers with its own; neither
//! app sees them), and the request recorded when its response's last byte is sent.

use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::header::{CONTENT_LENGTH, CONTENT_TYPE};
use http::{HeaderMap, HeaderName, Request, Response};
use http_body::{Body, Frame, SizeHint};

use super::config::HttpTelemetry;
use super::series::{HttpKey, HttpSeries, Principals, Protocol, Reporter, Security};
use super::workload::Peer;
use crate::config::Cluster;
use crate::flags::ResponseFlags;
use crate::http::{BodyError, Downstream, ProxyBody};
use crate::upstream::Identities;

/// The peer's metadata: base64 of a protobuf `Struct`.
const PEER_METADATA: HeaderName = HeaderName::from_static("x-envoy-peer-metadata");
/// The peer's node id.
const PEER_METADATA_ID: HeaderName = HeaderName::from_static("x-envoy-peer-metadata-id");
const GRPC_STATUS: HeaderName = HeaderName::from_static("grpc-status");

/// The cluster a request was routed to (a response extension), for the service labels.
#[derive(Debug, Clone)]
pub struct UpstreamCluster(pub Arc<Cluster>);

/// The endpoint that answered (a response extension), for the peer when it sent no
/// metadata.
#[derive(Debug, Clone, Copy)]
pub struct UpstreamHost(pub SocketAddr);

/// A request between its head and its response's head.
pub struct Exchange {
    telemetry: Arc<HttpTelemetry>,
    started: Instant,
    /// The client's workload, when it sent it (destination reporter).
    downstream: Option<Peer>,
    downstream_ip: IpAddr,
    request_bytes: u64,
    protocol: Protocol,
    security: Security,
    principals: Principals,
    /// What the chain's overrides read of the request, kept only when it has some.
    request: Option<Box<RequestView>>,
}

/// The parts of a request that override attributes read.
struct RequestView {
    method: http::Method,
    uri: http::Uri,
    headers: HeaderMap,
}

impl HttpTelemetry {
    /// Starts a request's telemetry: takes the client proxy's metadata off the request
    /// (destination), or puts this proxy's on (source).
    pub fn begin<B>(self: &Arc<Self>, request: &mut Request<B>, from: &Downstream) -> Exchange {
        let headers = request.headers_mut();
        let request_bytes = header_bytes(headers) + content_length(headers);
        let protocol = match headers.get(CONTENT_TYPE) {
            Some(t) if t.as_bytes().starts_with(b"application/grpc") => Protocol::Grpc,
            _ => Protocol::Http,
        };
        let mut downstream = None;
        if self.exchange {
            match self.reporter {
                Reporter::Destination => {
                    downstream = headers
                        .remove(PEER_METADATA)
                        .and_then(|v| self.registry.peer_of_header(v.as_bytes()));
                    headers.remove(PEER_METADATA_ID);
                }
                Reporter::Source => self.registry.identify(headers),
            }
        }
        let (principals, security) = Principals::of(self.reporter, from.tls.as_deref());
        let view = self.overrides.as_ref().map(|_| {
            Box::new(RequestView {
                method: request.method().clone(),
                uri: request.uri().clone(),
                headers: request.headers().clone(),
            })
        });
        Exchange {
            request: view,
            telemetry: self.clone(),
            started: Instant::now(),
            downstream,
            downstream_ip: from.peer.ip(),
            request_bytes,
            protocol,
            security,
            principals,
        }
    }
}

impl Exchange {
    /// At the response's head: takes the server proxy's metadata off it (source), or
    /// puts this proxy's on (destination), and has its body record the request when it
    /// ends.
    pub fn finish(self, mut response: Response<ProxyBody>) -> Response<ProxyBody> {
        let telemetry = &self.telemetry;
        let registry = &telemetry.registry;
        let headers = response.headers_mut();
        let mut upstream = None;
        if telemetry.exchange {
            match telemetry.reporter {
                Reporter::Source => {
                    upstream = headers
                        .remove(PEER_METADATA)
                        .and_then(|v| registry.peer_of_header(v.as_bytes()));
                    headers.remove(PEER_METADATA_ID);
                }
                Reporter::Destination => registry.identify(headers),
            }
        }
        if !telemetry.record {
            return response;
        }
        let peer = match telemetry.reporter {
            Reporter::Source => upstream.unwrap_or_else(|| {
                response
                    .extensions()
                    .get::<UpstreamHost>()
                    .map_or_else(|| registry.unknown.clone(), |h| registry.peer_at(h.0.ip()))
            }),
            Reporter::Destination => self
                .downstream
                .unwrap_or_else(|| registry.peer_at(self.downstream_ip)),
        };
        let service = response.extensions().get::<UpstreamCluster>().map_or_else(
            || registry.no_service.clone(),
            |c| registry.service_of(&c.0),
        );
        let custom = telemetry.overrides.as_ref().map(|o| {
            let view = self.request.as_deref();
            let ends = match telemetry.reporter {
                Reporter::Source => (registry.local(), &*peer),
                Reporter::Destination => (&*peer, registry.local()),
            };
            o.evaluate(
                view.map(|v| &v.headers),
                view.map(|v| (&v.method, &v.uri)),
                ends,
            )
        });
        let principals = match telemetry.reporter {
            Reporter::Source => response
                .extensions()
                .get::<Arc<Identities>>()
                .map_or_else(Principals::default, |ids| Principals::upstream(ids)),
            Reporter::Destination => self.principals,
        };
        let key = HttpKey {
            custom,
            reporter: telemetry.reporter,
            peer,
            service,
            protocol: self.protocol,
            code: response.status().as_u16(),
            grpc: grpc_status(response.headers()),
            flags: response
                .extensions()
                .get::<ResponseFlags>()
                .copied()
                .unwrap_or_default(),
            security: self.security,
            principals,
        };
        let pending = Pending {
            telemetry: self.telemetry,
            key,
            started: self.started,
            request_bytes: self.request_bytes,
            response_bytes: header_bytes(response.headers()),
        };
        if response.body().is_end_stream() {
            pending.record();
            return response;
        }
        response.map(|inner| {
            ProxyBody::Metered(Box::new(Metered {
                inner,
                pending: Some(pending),
            }))
        })
    }
}

/// What a request's series learns when its response ends.
struct Pending {
    telemetry: Arc<HttpTelemetry>,
    key: HttpKey,
    started: Instant,
    request_bytes: u64,
    response_bytes: u64,
}

impl Pending {
    fn record(self) {
        let registry = &self.telemetry.registry;
        let series = registry
            .http
            .get_or_insert(&self.key, || (self.key.clone(), HttpSeries::default()));
        series.requests.add(1);
        let micros = u64::try_from(self.started.elapsed().as_micros()).unwrap_or(u64::MAX);
        series.duration.observe_milli(micros);
        series.request_bytes.observe(self.request_bytes);
        series.response_bytes.observe(self.response_bytes);
    }
}

/// A response body that records its request when it ends (or is dropped unfinished:
/// the client went away, Envoy's `DC`).
pub struct Metered {
    inner: ProxyBody,
    pending: Option<Pending>,
}

impl Metered {
    /// The body it meters.
    pub fn inner(&self) -> &ProxyBody {
        &self.inner
    }

    fn end(&mut self, flags: ResponseFlags) {
        if let Some(mut pending) = self.pending.take() {
            pending.key.flags.insert(flags);
            pending.record();
        }
    }
}

impl Drop for Metered {
    fn drop(&mut self) {
        self.end(ResponseFlags::DC);
    }
}

impl Body for Metered {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.inner).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(pending) = &mut this.pending {
                    if let Some(data) = frame.data_ref() {
                        pending.response_bytes += data.len() as u64;
                    } else if let Some(trailers) = frame.trailers_ref() {
                        pending.key.grpc = grpc_status(trailers).or(pending.key.grpc);
                        pending.response_bytes += header_bytes(trailers);
                    }
                }
                if this.inner.is_end_stream() {
                    this.end(ResponseFlags::NONE);
                }
            }
            Poll::Ready(None) => this.end(ResponseFlags::NONE),
            Poll::Ready(Some(Err(BodyError::Idle))) => this.end(ResponseFlags::SI),
            Poll::Ready(Some(Err(_))) => this.end(ResponseFlags::UR),
            Poll::Pending => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// The size of headers as Envoy counts them: names and values.
fn header_bytes(headers: &HeaderMap) -> u64 {
    headers
        .iter()
        .map(|(name, value)| (name.as_str().len() + value.len()) as u64)
        .sum()
}

fn content_length(headers: &HeaderMap) -> u64 {
    headers
        .get(CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse().ok())
        .unwrap_or(0)
}

fn grpc_status(headers: &HeaderMap) -> Option<u32> {
    headers.get(GRPC_STATUS)?.to_str().ok()?.parse().ok()
}

impl super::Registry {
    /// Puts this proxy's metadata on a request or response for its peer.
    fn identify(&self, headers: &mut HeaderMap) {
        headers.insert(PEER_METADATA, self.local_header.clone());
        headers.insert(PEER_METADATA_ID, self.local_id.clone());
    }
}
