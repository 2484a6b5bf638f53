//! What an access log knows of one finished request or connection: a record filled in
//! as the exchange goes, read by formats and filters when it ends.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, Uri, Version};

use crate::flags::ResponseFlags;
use crate::tls::Session;

/// One request (or TCP connection) as the access log sees it.
#[derive(Debug, Clone)]
pub struct Record {
    /// When the first byte arrived.
    pub start: SystemTime,
    /// From the first byte in to the last byte out.
    pub duration: Duration,
    /// The request's method and URI (none for TCP).
    pub request: Option<(Method, Uri)>,
    /// The request headers the formats need, by [`Headers`] slot.
    pub request_headers: Box<[Option<HeaderValue>]>,
    /// The response headers the formats need, by [`Headers`] slot.
    pub response_headers: Box<[Option<HeaderValue>]>,
    /// The HTTP version the client spoke (none for TCP).
    pub protocol: Option<Version>,
    /// The response status (none for TCP, or when no response was sent).
    pub status: Option<StatusCode>,
    /// Why the exchange ended as it did.
    pub flags: ResponseFlags,
    /// Envoy's `%RESPONSE_CODE_DETAILS%`: who made the response and why.
    pub details: Option<Arc<str>>,
    /// Body bytes from the client (all bytes for TCP).
    pub bytes_received: u64,
    /// Body bytes to the client (all bytes for TCP).
    pub bytes_sent: u64,
    /// The upstream endpoint last tried.
    pub upstream_host: Option<SocketAddr>,
    /// The cluster routed to.
    pub upstream_cluster: Option<Arc<str>>,
    /// The route matched, when it has a name.
    pub route_name: Option<Arc<str>>,
    /// Where the client connected.
    pub downstream_local: SocketAddr,
    /// The client.
    pub downstream_remote: SocketAddr,
    /// The downstream connection's TLS session, when it is TLS.
    pub tls: Option<Arc<Session>>,
}

impl Record {
    /// A record of an exchange that starts now.
    pub fn new(downstream_local: SocketAddr, downstream_remote: SocketAddr) -> Record {
        Record {
            start: SystemTime::now(),
            duration: Duration::ZERO,
            request: None,
            request_headers: Box::default(),
            response_headers: Box::default(),
            protocol: None,
            status: None,
            flags: ResponseFlags::NONE,
            details: None,
            bytes_received: 0,
            bytes_sent: 0,
            upstream_host: None,
            upstream_cluster: None,
            route_name: None,
            downstream_local,
            downstream_remote,
            tls: None,
        }
    }

    /// The request's `:authority`: the URI's (HTTP/2, absolute form), else `host`.
    pub fn authority(&self, host_slot: Option<usize>) -> Option<&str> {
        let from_uri = self
            .request
            .as_ref()
            .and_then(|(_, uri)| uri.authority())
            .map(|a| a.as_str());
        from_uri.or_else(|| {
            host_slot
                .and_then(|slot| self.request_headers.get(slot)?.as_ref())
                .and_then(|v| v.to_str().ok())
        })
    }
}

/// The header names a set of formats reads, each given a slot, so that an exchange
/// copies exactly those values (cheap, shared bytes) and nothing else.
#[derive(Debug, Clone, Default)]
pub struct Headers {
    request: Vec<HeaderName>,
    response: Vec<HeaderName>,
}

impl Headers {
    /// The slot of request header `name`, added when new.
    pub fn request_slot(&mut self, name: HeaderName) -> usize {
        slot(&mut self.request, name)
    }

    /// The slot of response header `name`, added when new.
    pub fn response_slot(&mut self, name: HeaderName) -> usize {
        slot(&mut self.response, name)
    }

    /// Whether no header is read.
    pub fn is_empty(&self) -> bool {
        self.request.is_empty() && self.response.is_empty()
    }

    /// The values of the request headers read, by slot.
    pub fn capture_request(&self, headers: &HeaderMap) -> Box<[Option<HeaderValue>]> {
        capture(&self.request, headers)
    }

    /// The values of the response headers read, by slot.
    pub fn capture_response(&self, headers: &HeaderMap) -> Box<[Option<HeaderValue>]> {
        capture(&self.response, headers)
    }
}

fn slot(names: &mut Vec<HeaderName>, name: HeaderName) -> usize {
    names.iter().position(|n| *n == name).unwrap_or_else(|| {
        names.push(name);
        names.len() - 1
    })
}

fn capture(names: &[HeaderName], headers: &HeaderMap) -> Box<[Option<HeaderValue>]> {
    names.iter().map(|n| headers.get(n).cloned()).collect()
}
