//! HTTP served on a connection: HTTP/1.1 and HTTP/2 (h2c by prior knowledge or by
//! `Upgrade: h2c`) through the router.

mod body;
mod connect;
mod fault;
mod forward;
mod h2c;
pub mod headers;
mod host_address;
mod local_reply;
mod mirror;
mod request_body;
mod retry;
mod router;
mod timeout;
mod xfcc;

use std::fmt::Display;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};

pub use body::{BodyError, ProxyBody};
pub use local_reply::local;
pub use mirror::{InvalidMirror, MirrorPolicy};
pub use request_body::{ClientBody, Kept, ReadError, RequestBody, RequestBodyError};
pub use retry::{InvalidPolicy, RetryPolicy};
pub use router::Downstream;
pub(crate) use router::request_head;
pub use xfcc::{ClientCertPolicy, X_FORWARDED_CLIENT_CERT};

use crate::Shared;
use crate::config::{Codec, HttpManager};
use crate::drain::DrainWatch;

/// Serves HTTP on `io` until the client closes it, or until drained (then in-flight
/// requests finish and the connection closes gracefully).
pub async fn serve<I>(
    shared: Arc<Shared>,
    manager: Arc<HttpManager>,
    downstream: Downstream,
    io: I,
    drain: DrainWatch,
) where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    manager.stats.downstream_cx_total.inc();
    let _open = manager.stats.downstream_cx_active.track();
    let mut builder = auto::Builder::new(TokioExecutor::new());
    // Over TLS, ALPN chose the protocol where the manager serves both.
    let alpn = downstream.tls.as_ref().and_then(|s| s.alpn.as_deref());
    match (manager.codec, alpn) {
        (Codec::Auto, Some(b"h2")) | (Codec::Http2, _) => builder = builder.http2_only(),
        (Codec::Auto, Some(b"http/1.1")) | (Codec::Http1, _) => builder = builder.http1_only(),
        (Codec::Auto, _) => {}
    }
    builder
        .http1()
        .keep_alive(true)
        .timer(hyper_util::rt::TokioTimer::new());
    // None turns off hyper's own default (30 s): Envoy has none.
    builder
        .http1()
        .header_read_timeout(manager.request_headers_timeout);
    let activity = crate::activity::Activity::new();
    let io = crate::activity::Tracked::new(io, activity.clone());
    // HTTP/1.1 may become HTTP/2 by `Upgrade: h2c` only where both are served, and
    // only in cleartext (over TLS, ALPN chooses the protocol).
    let h2c = (manager.codec == Codec::Auto && !downstream.is_tls()).then(h2c::Slot::default);
    let peer = downstream.peer;
    let route = move |request| {
        router::serve(
            shared.clone(),
            manager.clone(),
            downstream.clone(),
            activity.clone(),
            request,
        )
    };
    let service = {
        let (route, h2c) = (route.clone(), h2c.clone());
        service_fn(move |mut request| {
            let granted = h2c.as_ref().is_some_and(|slot| slot.grant(&mut request));
            let routed = (!granted).then(|| route(request));
            async move {
                match routed {
                    Some(routed) => routed.await,
                    None => Ok(h2c::switching_protocols()),
                }
            }
        })
    };
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    until_drained(connection, drain.clone(), |c| c.graceful_shutdown(), peer).await;
    if let Some(granted) = h2c.and_then(|slot| slot.take()) {
        h2c::serve(granted, route, drain, peer).await;
    }
}

/// Runs a connection until it ends, or until drained: then `graceful_shutdown` lets its
/// in-flight requests finish before it closes.
async fn until_drained<C, E>(
    connection: C,
    drain: DrainWatch,
    graceful_shutdown: impl FnOnce(Pin<&mut C>),
    peer: SocketAddr,
) where
    C: Future<Output = Result<(), E>>,
    E: Display,
{
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(error = %e, %peer, "downstream connection ended");
            }
        }
        () = drain.signaled() => {
            graceful_shutdown(connection.as_mut());
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, %peer, "downstream connection ended while draining");
            }
        }
    }
}
