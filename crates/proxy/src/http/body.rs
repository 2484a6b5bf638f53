//! The body of a response the proxy sends downstream: relayed from upstream, or made
//! by the proxy itself (direct responses, redirects, local errors).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use crate::upstream::PooledBody;

/// A downstream response body.
pub enum ProxyBody {
    /// Relayed from an upstream response.
    Upstream(PooledBody),
    /// Relayed from an upstream connection of one request, never pooled (a forwarded
    /// CONNECT's).
    Unpooled(Incoming),
    /// Made by the proxy, whole.
    Local(Option<Bytes>),
}

impl ProxyBody {
    /// A body the proxy makes.
    pub fn local(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        ProxyBody::Local((!bytes.is_empty()).then_some(bytes))
    }

    /// No body.
    pub fn empty() -> Self {
        ProxyBody::Local(None)
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match self.get_mut() {
            ProxyBody::Upstream(body) => Pin::new(body).poll_frame(cx),
            ProxyBody::Unpooled(body) => Pin::new(body).poll_frame(cx),
            ProxyBody::Local(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Upstream(body) => body.is_end_stream(),
            ProxyBody::Unpooled(body) => body.is_end_stream(),
            ProxyBody::Local(bytes) => bytes.is_none(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Upstream(body) => body.size_hint(),
            ProxyBody::Unpooled(body) => body.size_hint(),
            ProxyBody::Local(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
        }
    }
}
