//! HTTP/1.1 on a pooled upstream connection, with no task of its own: the request that
//! holds the connection writes its head and body and reads the response from its own
//! task — the head through [`Exchange::poll_head`], the rest as the response body is
//! polled — so nothing is handed between tasks and each socket event is one poll.
//!
//! One read buffer per connection: the response head is parsed in place (`httparse`)
//! and its header values, like body chunks, are slices of that buffer, so a response
//! costs no copy; the buffer's memory comes back once they are dropped. Request heads
//! are written with one vectored write together with the start of the body.
//!
//! What the proxy needs of RFC 9112 and no more: bodies delimited by `content-length`,
//! `chunked` or the connection's close; `1xx` heads skipped; no body for `HEAD`, `204`
//! and `304`; keep-alive unless `connection: close` (or an HTTP/1.0 answer without
//! keep-alive); response trailers dropped. Upgrades do not come here: they stay on hyper.

use std::collections::VecDeque;
use std::io::{self, IoSlice};
use std::mem::MaybeUninit;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use bytes::{Buf, Bytes, BytesMut};
use http::header::{CONNECTION, CONTENT_LENGTH, HeaderName, HeaderValue, TRANSFER_ENCODING};
use http::{HeaderMap, Method, Request, Response, StatusCode, Version};
use http_body::{Body, SizeHint};
use tokio::io::{AsyncReadExt, AsyncWrite};

use super::{Identities, Open};
use crate::http::{RequestBody, RequestBodyError};
use crate::tls::Stream;

/// Headers a response head may carry (hyper's and Envoy's default limit).
const MAX_HEADERS: usize = 100;
/// Bytes a response head may take (hyper's default read buffer limit).
const MAX_HEAD: usize = 8192 + 4096 * 100;
/// How much the read buffer grows by when it runs out of room.
const READ_CHUNK: usize = 8192;
/// Below this much room, the read buffer grows before a read.
const MIN_READ: usize = 1024;

/// Why an HTTP/1.1 exchange with an upstream failed.
#[derive(Debug, thiserror::Error)]
pub enum Http1Error {
    /// Reading from or writing to the upstream connection failed.
    #[error("upstream HTTP/1.1 connection: {0}")]
    Io(#[from] io::Error),
    /// The upstream closed the connection before its response was complete.
    #[error("upstream HTTP/1.1 connection closed before the response was complete")]
    Closed,
    /// The response head is not HTTP/1.1.
    #[error("upstream HTTP/1.1 response head: {0}")]
    Head(#[from] httparse::Error),
    /// The response head is larger than the proxy reads.
    #[error("upstream HTTP/1.1 response head: larger than {MAX_HEAD} bytes")]
    HeadTooLarge,
    /// A field of the response is unusable: which one, and why.
    #[error("upstream HTTP/1.1 response: {field} {reason}")]
    Invalid {
        /// The field.
        field: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The request body failed, or did not match its `content-length`.
    #[error("upstream HTTP/1.1 request body: {0}")]
    RequestBody(#[from] RequestBodyError),
    /// The request body sent more or fewer bytes than its `content-length` said.
    #[error("upstream HTTP/1.1 request body: {sent} bytes against a content-length of {length}")]
    RequestBodyLength {
        /// What the `content-length` said.
        length: u64,
        /// What the body had sent when the mismatch showed.
        sent: u64,
    },
}

impl Http1Error {
    pub(super) fn invalid(field: &'static str, reason: &'static str) -> Http1Error {
        Http1Error::Invalid { field, reason }
    }
}

/// An HTTP/1.1 connection to an upstream, between exchanges.
pub(super) struct Connection {
    io: Stream,
    /// What was read and not yet consumed; parsed heads and body chunks are split off.
    read: BytesMut,
    /// Where request heads and chunk sizes are written before they are sent.
    scratch: BytesMut,
    /// What is to be written, in order.
    queue: VecDeque<Bytes>,
    /// The response head's header names and where their values are in the head.
    fields: Vec<(HeaderName, usize, usize)>,
    /// Where the current request stands.
    outbound: Outbound,
    /// Where the current response stands.
    inbound: Decoder,
    /// Whether the current response leaves the connection open.
    keep_alive: bool,
    /// What its TLS handshake established, if any.
    identities: Option<Arc<Identities>>,
    /// Counts the connection open until it is dropped.
    _open: Open,
}

impl Connection {
    /// A connection over `io`, whose TLS handshake established `identities`, counted
    /// open by `open`.
    pub(super) fn new(
        io: Stream,
        identities: Option<Arc<Identities>>,
        open: Open,
    ) -> Box<Connection> {
        Box::new(Connection {
            io,
            read: BytesMut::with_capacity(READ_CHUNK),
            scratch: BytesMut::new(),
            queue: VecDeque::new(),
            fields: Vec::new(),
            outbound: Outbound::Sent,
            inbound: Decoder::Done,
            keep_alive: false,
            identities,
            _open: open,
        })
    }

    /// What its TLS handshake established, if any.
    pub(super) fn identities(&self) -> Option<&Arc<Identities>> {
        self.identities.as_ref()
    }

    /// Whether the upstream may still take a request: an idle connection that became
    /// readable was closed by the upstream (or sent what no request asked for). Does not
    /// wait; when nothing is readable, tokio answers from its cached readiness.
    pub(super) fn is_open(&mut self) -> bool {
        let mut cx = Context::from_waker(std::task::Waker::noop());
        self.read.is_empty() && self.poll_fill(&mut cx).is_pending()
    }

    /// The connection's transport and what counts it open, for a protocol that takes it
    /// over (an upgrade, on hyper); None when it holds unread bytes.
    pub(super) fn into_parts(self: Box<Self>) -> Option<(Stream, Open)> {
        let Connection {
            io, read, _open, ..
        } = *self;
        read.is_empty().then_some((io, _open))
    }

    /// Starts an exchange: queues the request head (and decides the body's framing);
    /// nothing is written until the exchange is polled.
    pub(super) fn start(mut self: Box<Self>, request: Request<RequestBody>) -> Exchange {
        let (parts, body) = request.into_parts();
        let framing = Framing::of(&parts.method, &parts.headers, &body);
        self.write_head(&parts.method, &parts.uri, &parts.headers, &framing);
        self.outbound = match framing.body {
            Some(framing) => Outbound::Body(body, framing, 0),
            None => Outbound::Flushing,
        };
        self.inbound = Decoder::Head {
            head_request: parts.method == Method::HEAD,
        };
        self.keep_alive = false;
        Exchange(self)
    }

    fn write_head(
        &mut self,
        method: &Method,
        uri: &http::Uri,
        headers: &HeaderMap,
        framing: &Framing,
    ) {
        let target = uri.path_and_query().map_or("/", |p| p.as_str());
        let buf = &mut self.scratch;
        buf.reserve(64 + target.len() + headers.len() * 32);
        buf.extend_from_slice(method.as_str().as_bytes());
        buf.extend_from_slice(b" ");
        buf.extend_from_slice(target.as_bytes());
        buf.extend_from_slice(b" HTTP/1.1\r\n");
        for (name, value) in headers {
            if (framing.skip_transfer_encoding && name == TRANSFER_ENCODING)
                || (framing.skip_content_length && name == CONTENT_LENGTH)
            {
                continue;
            }
            buf.extend_from_slice(name.as_str().as_bytes());
            buf.extend_from_slice(b": ");
            buf.extend_from_slice(value.as_bytes());
            buf.extend_from_slice(b"\r\n");
        }
        match framing.add {
            Some(Added::ContentLength(length)) => {
                buf.extend_from_slice(b"content-length: ");
                buf.extend_from_slice(itoa(length, &mut [0; 20]));
                buf.extend_from_slice(b"\r\n");
            }
            Some(Added::Chunked) => buf.extend_from_slice(b"transfer-encoding: chunked\r\n"),
            None => {}
        }
        buf.extend_from_slice(b"\r\n");
        let head = buf.split().freeze();
        self.queue.push_back(head);
    }

    /// Writes what is queued; ready once it is all written and flushed.
    fn poll_write_queue(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        while !self.queue.is_empty() {
            let mut slices = [IoSlice::new(&[]); 8];
            let count = self.queue.len().min(slices.len());
            for (slice, bytes) in slices.iter_mut().zip(&self.queue) {
                *slice = IoSlice::new(bytes);
            }
            let mut written =
                ready!(Pin::new(&mut self.io).poll_write_vectored(cx, &slices[..count]))?;
            if written == 0 {
                return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
            }
            while written > 0 {
                let Some(front) = self.queue.front_mut() else {
                    break;
                };
                if written < front.len() {
                    front.advance(written);
                    break;
                }
                written -= front.len();
                self.queue.pop_front();
            }
        }
        Pin::new(&mut self.io).poll_flush(cx)
    }

    /// Reads more into the read buffer: how many bytes came (0 at the end of the stream).
    fn poll_fill(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        if self.read.capacity() - self.read.len() < MIN_READ {
            self.read.reserve(READ_CHUNK);
        }
        let read = self.io.read_buf(&mut self.read);
        std::pin::pin!(read).poll(cx)
    }

    /// A complete response head at the front of the read buffer, split off it; None
    /// until one is there.
    fn parse_head(&mut self) -> Result<Option<Response<()>>, Http1Error> {
        let Connection { read, fields, .. } = self;
        let mut slots = [const { MaybeUninit::uninit() }; MAX_HEADERS];
        let mut parsed = httparse::Response::new(&mut []);
        let length = match httparse::ParserConfig::default().parse_response_with_uninit_headers(
            &mut parsed,
            read,
            &mut slots,
        )? {
            httparse::Status::Complete(length) => length,
            httparse::Status::Partial if read.len() > MAX_HEAD => {
                return Err(Http1Error::HeadTooLarge);
            }
            httparse::Status::Partial => return Ok(None),
        };
        let (Some(code), Some(minor)) = (parsed.code, parsed.version) else {
            return Err(Http1Error::Head(httparse::Error::Status));
        };
        let status = StatusCode::from_u16(code)
            .map_err(|_| Http1Error::invalid("status", "is not a status code"))?;
        let base = read.as_ptr().addr();
        fields.clear();
        for header in parsed.headers.iter() {
            let name = HeaderName::from_bytes(header.name.as_bytes())
                .map_err(|_| Http1Error::invalid("header name", "is not a token"))?;
            let start = header.value.as_ptr().addr() - base;
            fields.push((name, start, start + header.value.len()));
        }
        let head = read.split_to(length).freeze();
        let mut headers = HeaderMap::with_capacity(fields.len());
        for (name, start, end) in fields.drain(..) {
            let value = HeaderValue::from_maybe_shared(head.slice(start..end))
                .map_err(|_| Http1Error::invalid("header value", "has a control character"))?;
            headers.append(name, value);
        }
        let mut response = Response::new(());
        *response.status_mut() = status;
        *response.version_mut() = if minor == 0 {
            Version::HTTP_10
        } else {
            Version::HTTP_11
        };
        *response.headers_mut() = headers;
        Ok(Some(response))
    }
}

/// How a request body is framed on the wire, and what that changes in its head; as
/// hyper's client decides it, so that requests go upstream as they did through hyper.
struct Framing {
    /// None: no body is sent.
    body: Option<BodyFraming>,
    add: Option<Added>,
    skip_transfer_encoding: bool,
    skip_content_length: bool,
}

#[derive(Clone, Copy)]
enum BodyFraming {
    /// Exactly this many bytes.
    Length(u64),
    /// Chunked.
    Chunked,
}

/// A framing header the proxy adds.
enum Added {
    ContentLength(u64),
    Chunked,
}

impl Framing {
    fn of(method: &Method, headers: &HeaderMap, body: &RequestBody) -> Framing {
        let mut framing = Framing {
            body: None,
            add: None,
            skip_transfer_encoding: false,
            skip_content_length: false,
        };
        if body.is_end_stream() {
            framing.skip_transfer_encoding = true;
            return framing;
        }
        if let Some(te) = headers.get(TRANSFER_ENCODING) {
            framing.skip_content_length = true;
            framing.body = Some(BodyFraming::Chunked);
            if !ends_in_chunked(te) {
                framing.add = Some(Added::Chunked);
            }
            return framing;
        }
        match content_length(headers) {
            Ok(Some(length)) => {
                framing.body = Some(BodyFraming::Length(length));
                return framing;
            }
            Ok(None) => {}
            // An unusable content-length gives way to one the proxy knows.
            Err(_) => framing.skip_content_length = true,
        }
        if let Some(length) = body.size_hint().exact() {
            framing.body = Some(BodyFraming::Length(length));
            framing.add = Some(Added::ContentLength(length));
        } else if !matches!(*method, Method::GET | Method::HEAD | Method::CONNECT) {
            // GET, HEAD and CONNECT almost never have a body: hyper sends none there.
            framing.body = Some(BodyFraming::Chunked);
            framing.add = Some(Added::Chunked);
        }
        framing
    }
}

/// Whether a `transfer-encoding` value ends in `chunked`.
fn ends_in_chunked(value: &HeaderValue) -> bool {
    value
        .as_bytes()
        .rsplit(|&b| b == b',')
        .next()
        .is_some_and(|last| last.trim_ascii().eq_ignore_ascii_case(b"chunked"))
}

/// The message's `content-length`: None when absent, an error when its values are not
/// one and the same number.
fn content_length(headers: &HeaderMap) -> Result<Option<u64>, Http1Error> {
    let invalid = || Http1Error::invalid("content-length", "is not one number");
    let mut length = None;
    for value in headers.get_all(CONTENT_LENGTH) {
        for item in value.as_bytes().split(|&b| b == b',') {
            let item = item.trim_ascii();
            if item.is_empty() || !item.iter().all(u8::is_ascii_digit) || item.len() > 19 {
                return Err(invalid());
            }
            let n = item.iter().fold(0u64, |n, d| n * 10 + u64::from(d - b'0'));
            if length.is_some_and(|l| l != n) {
                return Err(invalid());
            }
            length = Some(n);
        }
    }
    Ok(length)
}

/// `n` in decimal, in `buf`.
fn itoa(mut n: u64, buf: &mut [u8; 20]) -> &[u8] {
    let mut at = buf.len();
    loop {
        at -= 1;
        buf[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            return &buf[at..];
        }
    }
}

/// Whether the connection stays open after a response with this version and headers.
fn keeps_alive(version: Version, headers: &HeaderMap) -> bool {
    let says = |token: &[u8]| {
        headers.get_all(CONNECTION).iter().any(|v| {
            v.as_bytes()
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(token))
        })
    };
    match version {
        Version::HTTP_10 => says(b"keep-alive"),
        _ => !says(b"close"),
    }
}

/// Where the request stands.
enum Outbound {
    /// Its body is being sent; with the bytes sent so far.
    Body(RequestBody, BodyFraming, u64),
    /// All of it is queued; the queue is being written.
    Flushing,
    /// All of it is written.
    Sent,
    /// Sending failed after the response began: the response goes on, the connection
    /// is not used again.
    Abandoned,
}

/// Where the response stands.
enum Decoder {
    /// Its head has not arrived.
    Head { head_request: bool },
    /// This many body bytes are still to come.
    Length(u64),
    /// A chunked body.
    Chunked(Chunk),
    /// The body runs until the upstream closes the connection.
    UntilClose,
    /// The response is complete.
    Done,
}

/// Where a chunked body stands.
#[derive(Clone, Copy)]
enum Chunk {
    /// A chunk size line is next.
    Size,
    /// This many bytes of the current chunk are still to come.
    Data(u64),
    /// The CRLF after a chunk's data is next.
    DataEnd,
    /// Trailer lines, up to an empty line, are next (and dropped).
    Trailers,
}

/// One request and its response on a connection (whose box holds the exchange's state,
/// so that the exchange moves as a pointer from the request's future to its body).
pub(super) struct Exchange(Box<Connection>);

/// One step of a body's decoding.
enum Step {
    Data(Bytes),
    /// Nothing usable is buffered: read more.
    More,
    /// The body ended.
    End,
}

impl Exchange {
    /// Sends the request and reads until its (final) response head, which it returns.
    pub(super) fn poll_head(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Result<Response<()>, Http1Error>> {
        loop {
            // What is buffered first: an upstream may answer before it read the request.
            if let Some(response) = self.next_head()? {
                return Poll::Ready(Ok(response));
            }
            if let Poll::Ready(Err(e)) = self.poll_send(cx) {
                return Poll::Ready(Err(e));
            }
            if ready!(self.0.poll_fill(cx))? == 0 {
                return Poll::Ready(Err(Http1Error::Closed));
            }
        }
    }

    /// The next final response head in the read buffer, past any 1xx.
    fn next_head(&mut self) -> Result<Option<Response<()>>, Http1Error> {
        let Decoder::Head { head_request } = self.0.inbound else {
            return Err(Http1Error::invalid("status", "came twice"));
        };
        while let Some(response) = self.0.parse_head()? {
            let status = response.status();
            if status == StatusCode::SWITCHING_PROTOCOLS {
                return Err(Http1Error::invalid("status", "101 without an upgrade"));
            }
            if status.is_informational() {
                continue;
            }
            self.0.inbound = decoder(&response, head_request)?;
            self.0.keep_alive = !matches!(self.0.inbound, Decoder::UntilClose)
                && keeps_alive(response.version(), response.headers());
            return Ok(Some(response));
        }
        Ok(None)
    }

    /// Writes the request on: ready when it is all written, pending while the socket or
    /// the request body is.
    fn poll_send(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Http1Error>> {
        loop {
            ready!(self.0.poll_write_queue(cx))?;
            let (body, framing, sent) = match &mut self.0.outbound {
                Outbound::Sent | Outbound::Abandoned => return Poll::Ready(Ok(())),
                Outbound::Flushing => {
                    self.0.outbound = Outbound::Sent;
                    return Poll::Ready(Ok(()));
                }
                Outbound::Body(body, framing, sent) => (body, *framing, sent),
            };
            let Some(frame) = ready!(Pin::new(&mut *body).poll_frame(cx)) else {
                match framing {
                    BodyFraming::Length(length) if *sent != length => {
                        return Poll::Ready(Err(Http1Error::RequestBodyLength {
                            length,
                            sent: *sent,
                        }));
                    }
                    BodyFraming::Length(_) => {}
                    BodyFraming::Chunked => {
                        self.0.queue.push_back(Bytes::from_static(b"0\r\n\r\n"));
                    }
                }
                self.0.outbound = Outbound::Flushing;
                continue;
            };
            // Trailers are dropped, as hyper drops those no `trailer` header announced.
            let Ok(data) = frame?.into_data() else {
                continue;
            };
            if data.is_empty() {
                continue;
            }
            let len = data.len() as u64;
            *sent += len;
            match framing {
                BodyFraming::Length(length) if *sent > length => {
                    return Poll::Ready(Err(Http1Error::RequestBodyLength {
                        length,
                        sent: *sent,
                    }));
                }
                BodyFraming::Length(_) => self.0.queue.push_back(data),
                BodyFraming::Chunked => {
                    let scratch = &mut self.0.scratch;
                    scratch.extend_from_slice(chunk_size_line(len, &mut [0; 18]));
                    let size = scratch.split().freeze();
                    let queue = &mut self.0.queue;
                    queue.push_back(size);
                    queue.push_back(data);
                    queue.push_back(Bytes::from_static(b"\r\n"));
                }
            }
        }
    }

    /// The next chunk of the response body; sending the request body on meanwhile.
    pub(super) fn poll_data(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Bytes, Http1Error>>> {
        if matches!(self.0.outbound, Outbound::Body(..) | Outbound::Flushing)
            && let Poll::Ready(Err(e)) = self.poll_send(cx)
        {
            tracing::debug!(error = %e, "request body not sent whole; the response goes on");
            self.0.outbound = Outbound::Abandoned;
        }
        loop {
            match self.step() {
                Ok(Step::Data(data)) => return Poll::Ready(Some(Ok(data))),
                Ok(Step::End) => {
                    self.0.inbound = Decoder::Done;
                    return Poll::Ready(None);
                }
                Ok(Step::More) => {}
                Err(e) => {
                    self.0.inbound = Decoder::Done;
                    self.0.keep_alive = false;
                    return Poll::Ready(Some(Err(e)));
                }
            }
            match ready!(self.0.poll_fill(cx)) {
                Ok(0) if matches!(self.0.inbound, Decoder::UntilClose) => {
                    self.0.inbound = Decoder::Done;
                    return Poll::Ready(None);
                }
                Ok(0) => {
                    self.0.inbound = Decoder::Done;
                    self.0.keep_alive = false;
                    return Poll::Ready(Some(Err(Http1Error::Closed)));
                }
                Ok(_) => {}
                Err(e) => {
                    self.0.inbound = Decoder::Done;
                    self.0.keep_alive = false;
                    return Poll::Ready(Some(Err(e.into())));
                }
            }
        }
    }

    /// Decodes what the read buffer holds of the body.
    fn step(&mut self) -> Result<Step, Http1Error> {
        let read = &mut self.0.read;
        loop {
            match &mut self.0.inbound {
                Decoder::Head { .. } | Decoder::Done | Decoder::Length(0) => return Ok(Step::End),
                Decoder::Length(rest) => {
                    if read.is_empty() {
                        return Ok(Step::More);
                    }
                    let take = (*rest).min(read.len() as u64);
                    *rest -= take;
                    return Ok(Step::Data(read.split_to(take as usize).freeze()));
                }
                Decoder::UntilClose if read.is_empty() => return Ok(Step::More),
                Decoder::UntilClose => return Ok(Step::Data(read.split().freeze())),
                Decoder::Chunked(chunk) => match *chunk {
                    Chunk::Size => match httparse::parse_chunk_size(read) {
                        Ok(httparse::Status::Complete((at, size))) => {
                            read.advance(at);
                            *chunk = if size == 0 {
                                Chunk::Trailers
                            } else {
                                Chunk::Data(size)
                            };
                        }
                        Ok(httparse::Status::Partial) if read.len() > MIN_READ => {
                            return Err(Http1Error::invalid("chunk size", "line too long"));
                        }
                        Ok(httparse::Status::Partial) => return Ok(Step::More),
                        Err(_) => return Err(Http1Error::invalid("chunk size", "is not hex")),
                    },
                    Chunk::Data(rest) => {
                        if read.is_empty() {
                            return Ok(Step::More);
                        }
                        let take = rest.min(read.len() as u64);
                        *chunk = match rest - take {
                            0 => Chunk::DataEnd,
                            rest => Chunk::Data(rest),
                        };
                        return Ok(Step::Data(read.split_to(take as usize).freeze()));
                    }
                    Chunk::DataEnd => match read.get(..2) {
                        None => return Ok(Step::More),
                        Some(b"\r\n") => {
                            read.advance(2);
                            *chunk = Chunk::Size;
                        }
                        Some(_) => {
                            return Err(Http1Error::invalid("chunk", "has no CRLF after its data"));
                        }
                    },
                    Chunk::Trailers => match read.windows(2).position(|w| w == b"\r\n") {
                        Some(0) => {
                            read.advance(2);
                            return Ok(Step::End);
                        }
                        Some(line) => read.advance(line + 2),
                        None if read.len() > MAX_HEAD => return Err(Http1Error::HeadTooLarge),
                        None => return Ok(Step::More),
                    },
                },
            }
        }
    }

    /// Whether the response body has ended.
    pub(super) fn is_end_stream(&self) -> bool {
        matches!(self.0.inbound, Decoder::Done | Decoder::Length(0))
    }

    /// What is left of the response body, when known.
    pub(super) fn size_hint(&self) -> SizeHint {
        match self.0.inbound {
            Decoder::Length(rest) => SizeHint::with_exact(rest),
            Decoder::Done => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }

    /// The connection, when the exchange is over and it can carry another.
    pub(super) fn into_reusable(self) -> Option<Box<Connection>> {
        let complete = self.is_end_stream() && matches!(self.0.outbound, Outbound::Sent);
        (complete && self.0.keep_alive && self.0.read.is_empty()).then_some(self.0)
    }
}

/// How the body of `response` (to a HEAD request or not) is delimited, as RFC 9112
/// section 6.3 says.
fn decoder(response: &Response<()>, head_request: bool) -> Result<Decoder, Http1Error> {
    let status = response.status();
    if head_request || status == StatusCode::NO_CONTENT || status == StatusCode::NOT_MODIFIED {
        return Ok(Decoder::Length(0));
    }
    let headers = response.headers();
    if let Some(te) = headers.get(TRANSFER_ENCODING) {
        if response.version() == Version::HTTP_10 {
            return Err(Http1Error::invalid(
                "transfer-encoding",
                "in an HTTP/1.0 response",
            ));
        }
        return Ok(if ends_in_chunked(te) {
            Decoder::Chunked(Chunk::Size)
        } else {
            Decoder::UntilClose
        });
    }
    Ok(match content_length(headers)? {
        Some(length) => Decoder::Length(length),
        None => Decoder::UntilClose,
    })
}

/// `n` in hex followed by CRLF (a chunk size line), in `buf`.
fn chunk_size_line(mut n: u64, buf: &mut [u8; 18]) -> &[u8] {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut at = buf.len() - 2;
    buf[at..].copy_from_slice(b"\r\n");
    loop {
        at -= 1;
        buf[at] = DIGITS[(n & 0xf) as usize];
        n >>= 4;
        if n == 0 {
            return &buf[at..];
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_written_in_decimal_and_chunk_sizes_in_hex() {
        assert_eq!(itoa(0, &mut [0; 20]), b"0");
        assert_eq!(itoa(u64::MAX, &mut [0; 20]), b"18446744073709551615");
        assert_eq!(chunk_size_line(0, &mut [0; 18]), b"0\r\n");
        assert_eq!(chunk_size_line(0x1f40, &mut [0; 18]), b"1f40\r\n");
        assert_eq!(
            chunk_size_line(u64::MAX, &mut [0; 18]),
            b"ffffffffffffffff\r\n"
        );
    }

    #[test]
    fn content_length_is_one_number_or_an_error() {
        let with = |values: &[&'static str]| {
            let mut headers = HeaderMap::new();
            for v in values {
                headers.append(CONTENT_LENGTH, HeaderValue::from_static(v));
            }
            content_length(&headers).ok()
        };
        assert_eq!(with(&[]), Some(None));
        assert_eq!(with(&["42"]), Some(Some(42)));
        assert_eq!(with(&["42", "42"]), Some(Some(42)));
        assert_eq!(with(&["42, 42"]), Some(Some(42)));
        assert_eq!(with(&["42", "43"]), None);
        assert_eq!(with(&["-1"]), None);
        assert_eq!(with(&[""]), None);
    }

    #[test]
    fn keep_alive_follows_the_version_and_the_connection_header() {
        let with = |version, value: Option<&'static str>| {
            let mut headers = HeaderMap::new();
            if let Some(v) = value {
                headers.insert(CONNECTION, HeaderValue::from_static(v));
            }
            keeps_alive(version, &headers)
        };
        assert!(with(Version::HTTP_11, None));
        assert!(!with(Version::HTTP_11, Some("Close")));
        assert!(!with(Version::HTTP_11, Some("te, close")));
        assert!(!with(Version::HTTP_10, None));
        assert!(with(Version::HTTP_10, Some("keep-alive")));
    }
}
