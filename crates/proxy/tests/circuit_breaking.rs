//! Circuit breaking: a cluster's `max_connections`, `max_pending_requests` and
//! `max_requests`. What goes beyond them is answered at once with Envoy's 503
//! (`x-envoy-overloaded: true`, reset reason `overflow`) and counted.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use mizzen_proxy::stats::ClusterStats;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// An HTTP/1.1 backend that reports each request it receives and never answers.
async fn hanging() -> (SocketAddr, mpsc::UnboundedReceiver<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let tx = tx.clone();
            let service = service_fn(move |_: Request<Incoming>| {
                let _ = tx.send(());
                async {
                    std::future::pending::<()>().await;
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
                }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    (addr, rx)
}

/// A proxy routing everything to the cluster `b` of `backend`, with `thresholds` (YAML
/// flow mapping) as its default-priority circuit breaker thresholds.
async fn proxy_to(backend: SocketAddr, thresholds: &str) -> mizzen_proxy::Proxy {
    let vhosts = &all_to("b");
    let cluster = format!(
        "{}  circuit_breakers: {{thresholds: [{thresholds}]}}\n",
        cluster("b", &[backend])
    );
    proxy(&(http_bootstrap(vhosts, &cluster) + ADMIN)).await
}

/// Waits until `level` reads `want` (the proxy got that far with a request).
async fn until(stats: &ClusterStats, level: impl Fn(&ClusterStats) -> i64, want: i64) {
    tokio::time::timeout(Duration::from_secs(10), async {
        // The proxy's tasks run on this test's runtime: yielding lets them progress.
        while level(stats) != want {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the proxy reached the awaited state");
}

/// Sends a request that will hang, in the background.
fn hang(addr: SocketAddr) {
    tokio::spawn(send(addr, get("x", "/")));
}

fn assert_overflowed(got: &Got) {
    assert_eq!(got.status, 503);
    assert_eq!(
        got.headers.get("x-envoy-overloaded").map(|v| v.as_bytes()),
        Some(&b"true"[..])
    );
    assert_eq!(
        got.body,
        "upstream connect error or disconnect/reset before headers. reset reason: overflow"
    );
}

#[tokio::test]
async fn requests_beyond_the_connections_and_pending_queue_overflow() {
    let (backend, mut received) = hanging().await;
    let proxy = proxy_to(backend, "{max_connections: 1, max_pending_requests: 1}").await;
    let addr = proxy.listener_addr("http").await;
    let stats = proxy.store().stats().cluster("b");

    // The one connection carries the first request; the second waits for it.
    hang(addr);
    received.recv().await.unwrap();
    hang(addr);
    until(&stats, |s| s.upstream_rq_pending_active.get(), 1).await;

    let got = send(addr, get("x", "/")).await;
    assert_overflowed(&got);
    assert_eq!(stats.upstream_rq_pending_overflow.get(), 1);
    assert_eq!(stats.upstream_rq_pending_total.get(), 2);
    assert_eq!(stats.upstream_cx_total.get(), 1, "one connection only");
    assert!(stats.upstream_cx_overflow.get() >= 1);
    assert!(received.try_recv().is_err(), "the backend saw one request");

    let text = send(proxy.admin_addr().unwrap(), get("admin", "/stats"))
        .await
        .body;
    for line in [
        "cluster.b.circuit_breakers.default.cx_open: 1\n",
        "cluster.b.circuit_breakers.default.rq_pending_open: 1\n",
        "cluster.b.circuit_breakers.default.rq_open: 0\n",
        "cluster.b.upstream_rq_pending_overflow: 1\n",
        "cluster.b.upstream_rq_pending_active: 1\n",
    ] {
        assert!(text.contains(line), "{line:?} in:\n{text}");
    }
    let prom = send(
        proxy.admin_addr().unwrap(),
        get("admin", "/stats/prometheus"),
    )
    .await
    .body;
    assert!(
        prom.contains(
            "envoy_cluster_circuit_breakers_default_cx_open{envoy_cluster_name=\"b\"} 1\n"
        ),
        "{prom}"
    );
}

#[tokio::test]
async fn requests_beyond_max_requests_overflow_and_the_rest_go_through() {
    let (backend, mut received) = hanging().await;
    let proxy = proxy_to(backend, "{max_requests: 3}").await;
    let addr = proxy.listener_addr("http").await;
    let stats: Arc<ClusterStats> = proxy.store().stats().cluster("b");

    for _ in 0..3 {
        hang(addr);
        received.recv().await.unwrap();
    }
    let got = send(addr, get("x", "/")).await;
    assert_overflowed(&got);
    assert_eq!(stats.upstream_rq_pending_overflow.get(), 1);
    assert_eq!(stats.upstream_rq_active.get(), 3);
    assert_eq!(stats.circuit_breakers.rq_open.get(), 1);
    assert_eq!(
        stats.upstream_rq_total.get(),
        3,
        "the refused one was never sent"
    );
}

/// An HTTP/2 backend that reports each connection it accepts and each request it
/// receives, and never answers.
async fn hanging_h2() -> (
    SocketAddr,
    mpsc::UnboundedReceiver<()>,
    mpsc::UnboundedReceiver<()>,
) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (accepted_tx, accepted) = mpsc::unbounded_channel();
    let (received_tx, received) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = accepted_tx.send(());
            let received = received_tx.clone();
            let service = service_fn(move |_: Request<Incoming>| {
                let _ = received.send(());
                async {
                    std::future::pending::<()>().await;
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::new())))
                }
            });
            tokio::spawn(
                hyper::server::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    (addr, accepted, received)
}

#[tokio::test]
async fn an_http2_connection_carries_at_most_max_concurrent_streams() {
    let (backend, mut accepted, mut received) = hanging_h2().await;
    let vhosts = &all_to("b");
    let cluster = cluster("b", &[backend])
        + "  typed_extension_protocol_options:\n    envoy.extensions.upstreams.http.v3.HttpProtocolOptions:\n      \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions\n      explicit_http_config: {http2_protocol_options: {max_concurrent_streams: 2}}\n";
    let proxy = proxy(&http_bootstrap(vhosts, &cluster)).await;
    let addr = proxy.listener_addr("http").await;

    // Two streams share the first connection; the third opens a second one.
    for _ in 0..2 {
        hang(addr);
        received.recv().await.unwrap();
    }
    accepted.recv().await.unwrap();
    assert!(
        accepted.try_recv().is_err(),
        "one connection for two streams"
    );
    hang(addr);
    tokio::time::timeout(Duration::from_secs(10), accepted.recv())
        .await
        .expect("a second connection opens for the third stream");
    received.recv().await.unwrap();
    let stats = proxy.store().stats().cluster("b");
    assert_eq!(stats.upstream_cx_total.get(), 2);
}
