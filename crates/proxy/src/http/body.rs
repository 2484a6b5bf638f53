//! The body of a response the proxy sends downstream: relayed from upstream, or made
//! by the proxy itself (direct responses, redirects, local errors).

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use crate::activity::IdleTimer;
use crate::balance::InFlight;
use crate::metrics::Metered;
use crate::stats::GaugeGuard;
use crate::upstream::{HttpError, PooledBody};

/// A downstream response body.
pub enum ProxyBody {
    /// Relayed from an upstream response.
    Upstream(Relayed),
    /// Relayed from an upstream connection of one request, never pooled (a forwarded
    /// CONNECT's).
    Unpooled(Incoming),
    /// Made by the proxy, whole.
    Local(Option<Bytes>),
    /// Any of these, recording its request in Istio's metrics when it ends.
    Metered(Box<Metered>),
    /// Another body, counted for the access log.
    Observed(Box<crate::access_log::Observed>),
}

/// An upstream response body, with what counts its request as active until it ends,
/// and the stream's idle timer.
pub struct Relayed {
    body: PooledBody,
    active: Option<Active>,
    idle: Option<IdleTimer>,
}

/// Why a relayed body ended early.
#[derive(Debug, thiserror::Error)]
pub enum BodyError {
    /// The upstream failed.
    #[error(transparent)]
    Upstream(#[from] HttpError),
    /// Nothing moved for the stream idle timeout: the stream is reset, as in Envoy.
    #[error("stream idle timeout")]
    Idle,
}

/// Counts a request as active, as Envoy does until its response completes.
pub struct Active {
    /// In flight at its endpoint (LEAST_REQUEST balances on it).
    pub endpoint: Option<InFlight>,
    /// In the cluster's `upstream_rq_active`.
    pub request: GaugeGuard,
    /// The attempt's span, ended with the response.
    pub span: Option<crate::trace::Attempt>,
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

    /// Whether the body comes from an upstream (not made by the proxy).
    pub fn is_relayed(&self) -> bool {
        match self {
            ProxyBody::Upstream(_) | ProxyBody::Unpooled(_) => true,
            ProxyBody::Local(_) => false,
            ProxyBody::Observed(observed) => observed.inner().is_relayed(),
            ProxyBody::Metered(metered) => metered.inner().is_relayed(),
        }
    }

    /// An upstream body; `active` is released when it ends, fails or is dropped; the
    /// body fails if `idle` expires first.
    pub fn relayed(body: PooledBody, active: Active, idle: Option<IdleTimer>) -> Self {
        ProxyBody::Upstream(Relayed {
            body,
            active: Some(active),
            idle,
        })
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            ProxyBody::Upstream(relayed) => {
                let polled = Pin::new(&mut relayed.body).poll_frame(cx);
                if polled.is_pending()
                    && let Some(idle) = &mut relayed.idle
                    && idle.poll_expired(cx).is_ready()
                {
                    relayed.active = None;
                    return Poll::Ready(Some(Err(BodyError::Idle)));
                }
                if matches!(polled, Poll::Ready(None | Some(Err(_))))
                    || relayed.body.is_end_stream()
                {
                    relayed.active = None;
                }
                polled.map(|frame| frame.map(|f| f.map_err(BodyError::from)))
            }
            ProxyBody::Unpooled(body) => Pin::new(body)
                .poll_frame(cx)
                .map(|frame| frame.map(|f| f.map_err(|e| BodyError::Upstream(e.into())))),
            ProxyBody::Local(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            ProxyBody::Metered(metered) => Pin::new(metered.as_mut()).poll_frame(cx),
            ProxyBody::Observed(observed) => observed.poll_frame(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Upstream(relayed) => relayed.body.is_end_stream(),
            ProxyBody::Unpooled(body) => body.is_end_stream(),
            ProxyBody::Local(bytes) => bytes.is_none(),
            ProxyBody::Metered(metered) => metered.is_end_stream(),
            ProxyBody::Observed(observed) => observed.inner().is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Upstream(relayed) => relayed.body.size_hint(),
            ProxyBody::Unpooled(body) => body.size_hint(),
            ProxyBody::Local(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            ProxyBody::Metered(metered) => metered.size_hint(),
            ProxyBody::Observed(observed) => observed.inner().size_hint(),
        }
    }
}
