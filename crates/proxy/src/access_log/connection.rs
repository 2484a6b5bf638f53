//! One TCP connection through the TCP proxy, recorded for the access log: the relay
//! notes the cluster, the endpoint and why it failed (response flags), the downstream
//! stream counts its bytes through [`Counted`], and the connection is logged when its
//! record drops, however the relay ended.

use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Instant;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

use super::AccessLog;
use super::record::Record;
use crate::flags::ResponseFlags;
use crate::http::Downstream;

/// A TCP connection being recorded; inert when the proxy has no access log.
#[derive(Debug, Default)]
pub struct Connection(Option<Box<Recording>>);

#[derive(Debug)]
struct Recording {
    log: Arc<AccessLog>,
    record: Record,
    started: Instant,
    bytes: Arc<Bytes>,
}

/// Bytes from and to the client, counted as they move.
#[derive(Debug, Default)]
struct Bytes {
    received: AtomicU64,
    sent: AtomicU64,
}

impl Connection {
    /// Starts recording the connection `downstream` for `log` (nothing when it has no
    /// loggers).
    pub fn begin(log: &Arc<AccessLog>, downstream: &Downstream) -> Connection {
        if log.is_empty() {
            return Connection(None);
        }
        let mut record = Record::new(downstream.destination, downstream.peer);
        record.tls = downstream.tls.clone();
        Connection(Some(Box::new(Recording {
            log: log.clone(),
            record,
            started: Instant::now(),
            bytes: Arc::default(),
        })))
    }

    /// Records the cluster the connection goes to.
    pub fn cluster(&mut self, name: &str) {
        if let Some(r) = &mut self.0 {
            r.record.upstream_cluster = Some(name.into());
        }
    }

    /// Records the endpoint chosen.
    pub fn upstream_host(&mut self, host: SocketAddr) {
        if let Some(r) = &mut self.0 {
            r.record.upstream_host = Some(host);
        }
    }

    /// Records why the connection failed.
    pub fn flag(&mut self, flag: ResponseFlags) {
        if let Some(r) = &mut self.0 {
            r.record.flags.insert(flag);
        }
    }

    /// `stream` (the client's side), its bytes counted into the record.
    pub fn count<S>(&self, stream: S) -> Counted<S> {
        Counted {
            inner: stream,
            bytes: self.0.as_ref().map(|r| r.bytes.clone()),
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if let Some(r) = &mut self.0 {
            let record = &mut r.record;
            record.duration = r.started.elapsed();
            record.bytes_received = r.bytes.received.load(Ordering::Relaxed);
            record.bytes_sent = r.bytes.sent.load(Ordering::Relaxed);
            r.log.log(record);
        }
    }
}

/// A client stream whose bytes are counted for the access log.
pub struct Counted<S> {
    inner: S,
    bytes: Option<Arc<Bytes>>,
}

impl<S: AsyncRead + Unpin> AsyncRead for Counted<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let before = buf.filled().len();
        let polled = Pin::new(&mut self.inner).poll_read(cx, buf);
        if let Some(bytes) = &self.bytes {
            let read = (buf.filled().len() - before) as u64;
            bytes.received.fetch_add(read, Ordering::Relaxed);
        }
        polled
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Counted<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, data);
        if let (Some(bytes), Poll::Ready(Ok(n))) = (&self.bytes, &polled) {
            bytes.sent.fetch_add(*n as u64, Ordering::Relaxed);
        }
        polled
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}
