//! HTTP served on a connection: HTTP/1.1 and HTTP/2 (h2c by prior knowledge) through
//! the router.

mod body;
pub mod headers;
mod host_address;
mod router;
mod timeout;

use std::sync::Arc;

use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::io::{AsyncRead, AsyncWrite};

pub use body::ProxyBody;
pub use router::{Downstream, local};

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
    match manager.codec {
        Codec::Auto => {}
        Codec::Http1 => builder = builder.http1_only(),
        Codec::Http2 => builder = builder.http2_only(),
    }
    builder
        .http1()
        .keep_alive(true)
        .timer(hyper_util::rt::TokioTimer::new());
    // None turns off hyper's own default (30 s): Envoy has none.
    builder
        .http1()
        .header_read_timeout(manager.request_headers_timeout);
    let activity = timeout::Activity::new();
    let io = timeout::Tracked::new(io, activity.clone());
    let service = service_fn(move |request| {
        router::serve(
            shared.clone(),
            manager.clone(),
            downstream,
            activity.clone(),
            request,
        )
    });
    let connection = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::pin!(connection);
    tokio::select! {
        result = connection.as_mut() => {
            if let Err(e) = result {
                tracing::debug!(error = %e, peer = %downstream.peer, "downstream connection ended");
            }
        }
        () = drain.signaled() => {
            connection.as_mut().graceful_shutdown();
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, peer = %downstream.peer, "downstream connection ended while draining");
            }
        }
    }
}
