//! One HTTP request on its way through the router, recorded for the access log and the
//! request's span: the router fills the record in as it learns things (the request as
//! routed, the route, the cluster, the endpoint), and the response body, wrapped in
//! [`Observed`], counts the bytes sent and logs the record (and ends the span) when the
//! response ends.

use std::net::SocketAddr;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use bytes::Bytes;
use http::{Request, Response, Version, header};
use http_body::{Body as _, Frame};

use super::AccessLog;
use super::record::Record;
use crate::flags::ResponseFlags;
use crate::http::{BodyError, Downstream, ProxyBody};
use crate::route::Route;
use crate::trace::Span;
use crate::upstream::UpstreamError;

/// An HTTP request being recorded. Dropped before a response was made (the client went
/// away), it is logged with the `DC` flag, as Envoy logs a downstream disconnect.
#[derive(Debug)]
pub struct Exchange {
    log: Arc<AccessLog>,
    record: Record,
    started: Instant,
    logged: bool,
    /// The request's span, when it is sampled.
    span: Option<Span>,
}

impl Exchange {
    /// Starts recording a request that arrived on the connection `downstream`.
    pub fn begin(log: &Arc<AccessLog>, downstream: &Downstream) -> Exchange {
        let mut record = Record::new(downstream.destination, downstream.peer);
        record.tls = downstream.tls.clone();
        Exchange {
            log: log.clone(),
            record,
            started: Instant::now(),
            logged: false,
            span: None,
        }
    }

    /// Records the request's span too, ended with the exchange.
    pub fn trace(&mut self, span: Span) {
        self.span = Some(span);
    }

    /// Records the request as the router saw it (after the connection manager's header
    /// changes, before the route's).
    pub fn request<B>(&mut self, request: &Request<B>) {
        let record = &mut self.record;
        record.request = Some((request.method().clone(), request.uri().clone()));
        record.protocol = Some(request.version());
        record.request_headers = self.log.headers().capture_request(request.headers());
        // The body streams upstream untouched; its declared length is what arrives.
        record.bytes_received = request
            .headers()
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok()?.parse().ok())
            .unwrap_or(0);
    }

    /// Records the route matched; its decorator names the span.
    pub fn route(&mut self, route: &Route) {
        let name = &route.name;
        self.record.route_name = (!name.is_empty()).then(|| name.as_str().into());
        if let (Some(span), Some(decorator)) = (&mut self.span, &route.decorator) {
            span.decorate(&decorator.operation);
        }
    }

    /// Records the cluster routed to.
    pub fn cluster(&mut self, name: &str) {
        self.record.upstream_cluster = Some(name.into());
    }

    /// Records the endpoint last tried.
    pub fn upstream_host(&mut self, host: Option<SocketAddr>) {
        self.record.upstream_host = host;
    }

    /// Records the response and returns it with its body observed: the exchange is
    /// logged when the body ends (or is dropped unfinished).
    pub fn respond(mut self, response: Response<ProxyBody>) -> Response<ProxyBody> {
        let record = &mut self.record;
        record.status = Some(response.status());
        record.flags = response
            .extensions()
            .get::<ResponseFlags>()
            .copied()
            .unwrap_or_default();
        record.details = Some(match response.extensions().get::<Details>() {
            Some(Details(details)) => details.clone(),
            None => details(response.body(), record.flags).into(),
        });
        record.response_headers = self.log.headers().capture_response(response.headers());
        if record.protocol.is_none() {
            record.protocol = Some(Version::HTTP_11);
        }
        response.map(|body| {
            let ended = body.is_end_stream();
            ProxyBody::Observed(Box::new(Observed {
                body,
                sent: 0,
                ended,
                exchange: Some(self),
            }))
        })
    }

    fn finish(mut self, sent: u64, complete: bool) {
        self.record.bytes_sent = sent;
        if !complete {
            self.record.flags.insert(ResponseFlags::DC);
        }
        self.emit();
    }

    fn emit(&mut self) {
        self.logged = true;
        self.record.duration = self.started.elapsed();
        self.log.log(&self.record);
        if let Some(span) = self.span.take() {
            span.end(&self.record);
        }
    }
}

impl Drop for Exchange {
    fn drop(&mut self) {
        if !self.logged {
            self.record.flags.insert(ResponseFlags::DC);
            self.emit();
        }
    }
}

/// Envoy's `%RESPONSE_CODE_DETAILS%` for an answer the proxy made, when its response
/// flags do not say enough (the failure's own words), carried in the response's
/// extensions.
#[derive(Debug, Clone)]
pub struct Details(pub Arc<str>);

impl Details {
    /// Envoy's details of an upstream failure before response headers:
    /// `upstream_reset_before_response_started{<reset reason>[|<transport failure>]}`.
    pub fn upstream_reset(error: &UpstreamError) -> Details {
        let reason = match error {
            UpstreamError::Connect(_) => "remote_connection_failure",
            UpstreamError::LocalConnect(_) => "local_connection_failure",
            UpstreamError::ConnectTimeout => "connection_timeout",
            UpstreamError::Http(_) => "connection_termination",
            UpstreamError::Overflow => "overflow",
        };
        let transport = match error {
            UpstreamError::Connect(io) => io
                .raw_os_error()
                .map(|code| format!("|delayed_connect_error:_{}", strerror(code))),
            _ => None,
        };
        Details(
            format!(
                "upstream_reset_before_response_started{{{reason}{}}}",
                transport.unwrap_or_default()
            )
            .into(),
        )
    }
}

/// The system's words for an errno, spaces as underscores (as Envoy writes them).
fn strerror(code: i32) -> String {
    let text = std::io::Error::from_raw_os_error(code).to_string();
    // Rust appends " (os error N)" to the system's message.
    let text = text.split(" (os error").next().unwrap_or_default();
    text.replace(' ', "_")
}

/// Envoy's `%RESPONSE_CODE_DETAILS%` for a response: the upstream's, or why the proxy
/// made its own.
fn details(body: &ProxyBody, flags: ResponseFlags) -> &'static str {
    const BY_FLAG: [(ResponseFlags, &str); 6] = [
        (ResponseFlags::FI, "fault_filter_abort"),
        (ResponseFlags::NR, "route_not_found"),
        (ResponseFlags::NC, "cluster_not_found"),
        (ResponseFlags::UH, "no_healthy_upstream"),
        (ResponseFlags::UT, "response_timeout"),
        (ResponseFlags::SI, "stream_idle_timeout"),
    ];
    if body.is_relayed() {
        return "via_upstream";
    }
    BY_FLAG
        .iter()
        .find(|(flag, _)| flags.contains(*flag))
        .map_or("direct_response", |(_, details)| details)
}

/// A response body counted on its way to the client; its exchange is logged when it
/// ends.
pub struct Observed {
    body: ProxyBody,
    sent: u64,
    ended: bool,
    exchange: Option<Exchange>,
}

impl Observed {
    /// Polls the inner body, counting its data.
    pub fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let polled = std::pin::Pin::new(&mut self.body).poll_frame(cx);
        match &polled {
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    self.sent += data.len() as u64;
                }
                if self.body.is_end_stream() {
                    self.end(true);
                }
            }
            Poll::Ready(None) => self.end(true),
            Poll::Ready(Some(Err(_))) => self.end(false),
            Poll::Pending => {}
        }
        polled
    }

    /// The inner body.
    pub fn inner(&self) -> &ProxyBody {
        &self.body
    }

    fn end(&mut self, complete: bool) {
        self.ended = true;
        if let Some(exchange) = self.exchange.take() {
            exchange.finish(self.sent, complete);
        }
    }
}

impl Drop for Observed {
    fn drop(&mut self) {
        let ended = self.ended;
        self.end(ended);
    }
}
