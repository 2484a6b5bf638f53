//! HTTP/1.1 upstream connections, pooled per endpoint: one connection carries request
//! after request, a large body streams both ways through it, `max_requests_per_connection`
//! retires it, and one the upstream closed while idle is not used again.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

/// An HTTP/1.1 backend that answers each request with its body, reporting each
/// connection it accepts.
async fn echoing() -> (SocketAddr, mpsc::UnboundedReceiver<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (accepted, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let _ = accepted.send(());
            let service = service_fn(|request: Request<Incoming>| async move {
                Ok::<_, Infallible>(Response::new(request.into_body()))
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    (addr, rx)
}

/// A proxy routing everything to the cluster `b` of `backend`, with `extra` (YAML lines
/// of the cluster).
async fn proxy_to(backend: SocketAddr, extra: &str) -> mizzen_proxy::Proxy {
    let cluster = cluster("b", &[backend]) + extra;
    proxy(&http_bootstrap(&all_to("b"), &cluster)).await
}

fn connections(accepted: &mut mpsc::UnboundedReceiver<()>) -> usize {
    std::iter::from_fn(|| accepted.try_recv().ok()).count()
}

#[tokio::test]
async fn sequential_requests_share_one_upstream_connection() {
    let (backend, mut accepted) = echoing().await;
    let proxy = proxy_to(backend, "").await;
    let addr = proxy.listener_addr("http").await;
    for i in 0..20 {
        let body = format!("request {i}");
        let request = Request::post("/")
            .header("host", "x")
            .body(Full::new(Bytes::from(body.clone())))
            .unwrap();
        let got = send(addr, request).await;
        assert_eq!((got.status, got.body), (200, body));
    }
    assert_eq!(connections(&mut accepted), 1);
    let stats = proxy.store().stats().cluster("b");
    assert_eq!(stats.upstream_cx_total.get(), 1);
    assert_eq!(stats.upstream_cx_active.get(), 1);
}

#[tokio::test]
async fn a_large_body_streams_up_and_back_down_on_a_pooled_connection() {
    let (backend, mut accepted) = echoing().await;
    let proxy = proxy_to(backend, "").await;
    let addr = proxy.listener_addr("http").await;
    // Larger than every buffer on the way, so it moves in many frames each way.
    let body: Vec<u8> = (0..4 << 20).map(|i: u32| (i % 251) as u8).collect();
    for _ in 0..2 {
        let stream = TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        let request = Request::post("/")
            .header("host", "x")
            .body(Full::new(Bytes::from(body.clone())))
            .unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), 200);
        let echoed = response.into_body().collect().await.unwrap().to_bytes();
        assert!(echoed == body, "the body came back whole");
    }
    assert_eq!(connections(&mut accepted), 1);
}

#[tokio::test]
async fn max_requests_per_connection_retires_a_connection() {
    let (backend, mut accepted) = echoing().await;
    let proxy = proxy_to(backend, "  max_requests_per_connection: 2\n").await;
    let addr = proxy.listener_addr("http").await;
    for _ in 0..5 {
        assert_eq!(send(addr, get("x", "/")).await.status, 200);
    }
    assert_eq!(connections(&mut accepted), 3);
}

#[tokio::test]
async fn a_connection_the_upstream_closed_while_idle_is_not_used_again() {
    // Answers one request per connection, then closes it without saying so first.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let backend = listener.local_addr().unwrap();
    let (closed, mut closings) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let closed = closed.clone();
            tokio::spawn(async move {
                let mut head = Vec::new();
                let mut buf = [0u8; 1024];
                while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => head.extend_from_slice(&buf[..n]),
                    }
                }
                let response = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
                stream.write_all(response).await.unwrap();
                drop(stream);
                let _ = closed.send(());
            });
        }
    });
    let proxy = proxy_to(backend, "").await;
    let addr = proxy.listener_addr("http").await;
    for _ in 0..3 {
        let got = send(addr, get("x", "/")).await;
        assert_eq!((got.status, got.body.as_str()), (200, "ok"));
        closings.recv().await.unwrap();
    }
    let stats = proxy.store().stats().cluster("b");
    assert_eq!(stats.upstream_cx_total.get(), 3);
}
