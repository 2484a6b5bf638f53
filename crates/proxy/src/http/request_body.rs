//! The body of a request sent upstream: the client's, streamed through untouched, or
//! kept while it streams so that a retry can send it again and a mirror can copy it.
//!
//! A kept body is read from the client by the current attempt only; its frames are
//! kept (cheap `Bytes` clones) up to a limit. Past the limit nothing more is kept and
//! the body can no longer be replayed: the attempt in flight streams on, and there is
//! no retry and no mirror, as in Envoy.

use std::collections::VecDeque;
use std::pin::Pin;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use bytes::Bytes;
use http::HeaderMap;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use tokio::sync::Notify;

/// The client's request body: what a filter already read of it (ext_authz reads the
/// start of a body to check it), then the rest as the client sends it.
pub struct ClientBody {
    read: VecDeque<Kept>,
    rest: Option<Incoming>,
}

/// Why a filter could not read the start of a client's body.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// The body is longer than the filter may hold.
    #[error("request body longer than {0} bytes")]
    TooLarge(usize),
    /// The client's body failed.
    #[error("request body: {0}")]
    Client(#[from] hyper::Error),
}

impl ClientBody {
    /// The client's body, unread.
    pub fn new(body: Incoming) -> ClientBody {
        ClientBody {
            read: VecDeque::new(),
            rest: (!body.is_end_stream()).then_some(body),
        }
    }

    /// Reads the body until it ends or `limit` bytes are read (`partial`), or fails when
    /// it is longer than `limit` (not `partial`); the data read (all of it, which may
    /// pass `limit` by part of a frame) stays to be sent on.
    pub async fn read_up_to(&mut self, limit: usize, partial: bool) -> Result<Bytes, ReadError> {
        use http_body_util::BodyExt;
        let mut size = self.data().map(Bytes::len).sum::<usize>();
        while let Some(rest) = &mut self.rest
            && !(partial && size >= limit)
        {
            match rest.frame().await.transpose()? {
                None => self.rest = None,
                Some(frame) => {
                    let kept = match frame.into_data() {
                        Ok(data) => {
                            size += data.len();
                            Kept::Data(data)
                        }
                        Err(frame) => match frame.into_trailers() {
                            Ok(trailers) => Kept::Trailers(trailers),
                            Err(_) => continue,
                        },
                    };
                    self.read.push_back(kept);
                    if !partial && size > limit {
                        return Err(ReadError::TooLarge(limit));
                    }
                }
            }
            if self.rest.as_ref().is_some_and(Body::is_end_stream) {
                self.rest = None;
            }
        }
        let mut data = bytes::BytesMut::with_capacity(size);
        for chunk in self.data() {
            data.extend_from_slice(chunk);
        }
        Ok(data.freeze())
    }

    /// The data frames read so far.
    fn data(&self) -> impl Iterator<Item = &Bytes> {
        self.read.iter().filter_map(|k| match k {
            Kept::Data(data) => Some(data),
            Kept::Trailers(_) => None,
        })
    }
}

impl Body for ClientBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = self.get_mut();
        if let Some(kept) = this.read.pop_front() {
            return Poll::Ready(Some(Ok(kept.frame())));
        }
        match &mut this.rest {
            Some(rest) => Pin::new(rest).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.read.is_empty() && self.rest.as_ref().is_none_or(Body::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        let read = self.data().map(|d| d.len() as u64).sum::<u64>();
        let rest = self
            .rest
            .as_ref()
            .map_or(SizeHint::with_exact(0), Body::size_hint);
        let mut hint = SizeHint::new();
        hint.set_lower(read + rest.lower());
        if let Some(upper) = rest.upper() {
            hint.set_upper(read + upper);
        }
        hint
    }
}

/// A request body on its way upstream.
pub enum RequestBody {
    /// The client's, streamed through (nothing may replay it).
    Streaming(ClientBody),
    /// No body at all.
    Empty,
    /// One attempt's reading of a kept body.
    Replay(Reader),
    /// A complete kept body, for a mirror.
    Whole(VecDeque<Kept>),
}

/// Why a request body ended early.
#[derive(Debug, thiserror::Error)]
pub enum RequestBodyError {
    /// The client's body failed.
    #[error("request body: {0}")]
    Client(#[from] hyper::Error),
    /// A later attempt took over the body: this one was given up.
    #[error("request body: the attempt was superseded by a retry")]
    Superseded,
}

/// One frame of a kept body.
#[derive(Debug, Clone)]
pub enum Kept {
    /// Data.
    Data(Bytes),
    /// Trailers (gRPC's, say).
    Trailers(HeaderMap),
}

impl Kept {
    fn frame(self) -> Frame<Bytes> {
        match self {
            Kept::Data(bytes) => Frame::data(bytes),
            Kept::Trailers(trailers) => Frame::trailers(trailers),
        }
    }
}

/// A client's body kept for replay while it streams; each handle (the router's, each
/// attempt's) may still read it from the client.
pub struct Replayable {
    inner: Arc<Inner>,
}

/// A mirror's view of a [`Replayable`] body: it waits for the body, never reads it.
#[derive(Clone)]
pub struct Follower {
    inner: Arc<Inner>,
}

struct Inner {
    state: Mutex<State>,
    /// Wakes those waiting for the body to end ([`Follower::complete`]).
    settled: Notify,
    /// How many [`Replayable`] handles are alive: none left, no one reads the rest.
    readers: AtomicUsize,
}

impl Clone for Replayable {
    fn clone(&self) -> Self {
        self.inner.readers.fetch_add(1, Ordering::Relaxed);
        Replayable {
            inner: self.inner.clone(),
        }
    }
}

impl Drop for Replayable {
    fn drop(&mut self) {
        // A mirror waiting for the body learns when it may never come.
        if self.inner.readers.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.inner.settled.notify_waiters();
        }
    }
}

struct State {
    /// Still reading from the client; `None` once it ended.
    source: Option<ClientBody>,
    kept: Vec<Kept>,
    size: usize,
    limit: usize,
    /// More than `limit` bytes came: nothing is kept any longer.
    overflowed: bool,
    /// The client's body failed.
    failed: bool,
    /// Which attempt reads from the client now.
    current: u32,
}

impl Replayable {
    /// Keeps `body` for replay, up to `limit` bytes.
    pub fn new(body: ClientBody, limit: usize) -> Replayable {
        Replayable {
            inner: Arc::new(Inner {
                state: Mutex::new(State {
                    source: Some(body),
                    kept: Vec::new(),
                    size: 0,
                    limit,
                    overflowed: false,
                    failed: false,
                    current: 0,
                }),
                settled: Notify::new(),
                readers: AtomicUsize::new(1),
            }),
        }
    }

    fn state(&self) -> MutexGuard<'_, State> {
        self.inner.state()
    }

    /// A view of the body for a mirror.
    pub fn follower(&self) -> Follower {
        Follower {
            inner: self.inner.clone(),
        }
    }

    /// Whether another attempt could send the body again (nothing was dropped).
    pub fn can_replay(&self) -> bool {
        let state = self.state();
        !state.overflowed && !state.failed
    }

    /// The body for a new attempt: what was kept, then the rest from the client. Any
    /// earlier attempt's reader stops: only the newest reads from the client.
    pub fn attempt(&self) -> RequestBody {
        let mut state = self.state();
        state.current += 1;
        RequestBody::Replay(Reader {
            body: self.clone(),
            attempt: state.current,
            next: 0,
        })
    }

    fn settle(&self) {
        self.inner.settled.notify_waiters();
    }
}

impl Inner {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Follower {
    /// The whole body once the client sent it all, or `None` when it cannot be had: it
    /// overflowed the limit, failed, or no one reads it any more.
    pub async fn complete(&self) -> Option<RequestBody> {
        loop {
            let settled = self.inner.settled.notified();
            {
                let state = self.inner.state();
                if state.overflowed || state.failed {
                    return None;
                }
                if state.source.is_none() {
                    return Some(RequestBody::Whole(state.kept.iter().cloned().collect()));
                }
            }
            if self.inner.readers.load(Ordering::Acquire) == 0 {
                return None;
            }
            settled.await;
        }
    }
}

/// One attempt's reading of a [`Replayable`] body.
pub struct Reader {
    body: Replayable,
    attempt: u32,
    /// The next kept frame to send.
    next: usize,
}

impl Reader {
    fn poll_frame(
        &mut self,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, RequestBodyError>>> {
        let mut state = self.body.state();
        if state.current != self.attempt {
            return Poll::Ready(Some(Err(RequestBodyError::Superseded)));
        }
        if let Some(kept) = state.kept.get(self.next) {
            self.next += 1;
            return Poll::Ready(Some(Ok(kept.clone().frame())));
        }
        let Some(source) = state.source.as_mut() else {
            return Poll::Ready(None);
        };
        let polled = Pin::new(source).poll_frame(cx);
        let settled = match &polled {
            Poll::Pending => return Poll::Pending,
            Poll::Ready(None) => {
                state.source = None;
                true
            }
            Poll::Ready(Some(Err(_))) => {
                state.source = None;
                state.failed = true;
                true
            }
            Poll::Ready(Some(Ok(frame))) => {
                let kept = state.keep(frame);
                if state.source.as_ref().is_some_and(Body::is_end_stream) {
                    state.source = None;
                }
                if kept {
                    self.next += 1;
                }
                state.overflowed || state.source.is_none()
            }
        };
        drop(state);
        if settled {
            self.body.settle();
        }
        polled.map(|frame| frame.map(|f| f.map_err(RequestBodyError::from)))
    }
}

impl State {
    /// Keeps a copy of `frame` unless that passes the limit; whether it was kept.
    fn keep(&mut self, frame: &Frame<Bytes>) -> bool {
        if self.overflowed {
            return false;
        }
        let kept = if let Some(data) = frame.data_ref() {
            self.size += data.len();
            Kept::Data(data.clone())
        } else if let Some(trailers) = frame.trailers_ref() {
            Kept::Trailers(trailers.clone())
        } else {
            return false;
        };
        if self.size > self.limit {
            self.overflowed = true;
            self.kept = Vec::new();
            return false;
        }
        self.kept.push(kept);
        true
    }
}

impl Body for RequestBody {
    type Data = Bytes;
    type Error = RequestBodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, RequestBodyError>>> {
        match self.get_mut() {
            RequestBody::Streaming(body) => Pin::new(body)
                .poll_frame(cx)
                .map(|frame| frame.map(|f| f.map_err(RequestBodyError::from))),
            RequestBody::Empty => Poll::Ready(None),
            RequestBody::Replay(reader) => reader.poll_frame(cx),
            RequestBody::Whole(frames) => Poll::Ready(frames.pop_front().map(|f| Ok(f.frame()))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            RequestBody::Streaming(body) => body.is_end_stream(),
            RequestBody::Empty => true,
            RequestBody::Replay(_) => false,
            RequestBody::Whole(frames) => frames.is_empty(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            RequestBody::Streaming(body) => body.size_hint(),
            RequestBody::Empty => SizeHint::with_exact(0),
            RequestBody::Replay(_) => SizeHint::default(),
            RequestBody::Whole(frames) => SizeHint::with_exact(
                frames
                    .iter()
                    .map(|f| match f {
                        Kept::Data(d) => d.len() as u64,
                        Kept::Trailers(_) => 0,
                    })
                    .sum(),
            ),
        }
    }
}
