//! HTTP/1.1 upstream connections, pooled per endpoint: one connection carries request
//! after request, a large body streams both ways through it, `max_requests_per_connection`
//! retires it, and one the upstream closed while idle is not used again. The wire forms
//! of an HTTP/1.1 response all arrive whole: chunked (extensions and trailers), delimited
//! by the connection's close, after `1xx` heads, bodiless (`HEAD`, `204`); `connection:
//! close` and HTTP/1.0 answers retire their connection.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use common::*;
use http_body::Frame;
use http_body_util::{BodyExt, Full, StreamBody};
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

/// A backend that answers each request head with the canned bytes `answer` gives for its
/// request line, closing the connection after it when told to; reports each connection.
async fn scripted(
    answer: fn(&str) -> (&'static str, bool),
) -> (SocketAddr, mpsc::UnboundedReceiver<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (accepted, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let _ = accepted.send(());
            tokio::spawn(async move {
                let mut pending = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    while let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                        let head = String::from_utf8_lossy(&pending[..end]).into_owned();
                        pending.drain(..end + 4);
                        let line = head.lines().next().unwrap_or_default();
                        let (bytes, close) = answer(line);
                        stream.write_all(bytes.as_bytes()).await.unwrap();
                        if close {
                            return;
                        }
                    }
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => pending.extend_from_slice(&buf[..n]),
                    }
                }
            });
        }
    });
    (addr, rx)
}

fn request(method: &str, path: &str) -> Request<Full<Bytes>> {
    Request::builder()
        .method(method)
        .uri(path)
        .header("host", "x")
        .body(Full::new(Bytes::new()))
        .unwrap()
}

#[tokio::test]
async fn chunked_and_close_delimited_bodies_arrive_whole() {
    let (backend, mut accepted) = scripted(|line| match line {
        "GET /chunked HTTP/1.1" => (
            "HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n\
             5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nchecksum: x\r\n\r\n",
            false,
        ),
        _ => ("HTTP/1.1 200 OK\r\n\r\nuntil the end", true),
    })
    .await;
    let proxy = proxy_to(backend, "").await;
    let addr = proxy.listener_addr("http").await;
    for _ in 0..2 {
        let got = send(addr, request("GET", "/chunked")).await;
        assert_eq!((got.status, got.body.as_str()), (200, "hello world"));
    }
    assert_eq!(
        connections(&mut accepted),
        1,
        "a chunked response keeps it alive"
    );
    for _ in 0..3 {
        let got = send(addr, request("GET", "/close")).await;
        assert_eq!((got.status, got.body.as_str()), (200, "until the end"));
    }
    // The first went on the kept connection; each close-delimited body ended its own.
    assert_eq!(connections(&mut accepted), 2);
}

#[tokio::test]
async fn informational_heads_are_skipped_and_bodiless_answers_carry_no_body() {
    let (backend, mut accepted) = scripted(|line| match line {
        "GET /continue HTTP/1.1" => (
            "HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok",
            false,
        ),
        // A HEAD's answer names the length the GET would have, and sends nothing.
        "HEAD /head HTTP/1.1" => ("HTTP/1.1 200 OK\r\ncontent-length: 10\r\n\r\n", false),
        _ => ("HTTP/1.1 204 No Content\r\n\r\n", false),
    })
    .await;
    let proxy = proxy_to(backend, "").await;
    let addr = proxy.listener_addr("http").await;
    let got = send(addr, request("GET", "/continue")).await;
    assert_eq!((got.status, got.body.as_str()), (200, "ok"));
    let got = send(addr, request("HEAD", "/head")).await;
    assert_eq!((got.status, got.body.as_str()), (200, ""));
    assert_eq!(got.headers["content-length"], "10");
    let got = send(addr, request("GET", "/empty")).await;
    assert_eq!((got.status, got.body.as_str()), (204, ""));
    let got = send(addr, request("GET", "/continue")).await;
    assert_eq!((got.status, got.body.as_str()), (200, "ok"));
    assert_eq!(
        connections(&mut accepted),
        1,
        "every answer left the connection usable"
    );
}

#[tokio::test]
async fn connection_close_and_http_1_0_answers_retire_their_connection() {
    // The backend keeps its end open: the proxy must not use it again all the same.
    let (backend, mut accepted) = scripted(|line| match line {
        "GET /close HTTP/1.1" => (
            "HTTP/1.1 200 OK\r\nconnection: close\r\ncontent-length: 2\r\n\r\nok",
            false,
        ),
        _ => ("HTTP/1.0 200 OK\r\ncontent-length: 2\r\n\r\nok", false),
    })
    .await;
    let proxy = proxy_to(backend, "").await;
    let addr = proxy.listener_addr("http").await;
    for path in ["/close", "/close", "/old", "/old"] {
        let got = send(addr, request("GET", path)).await;
        assert_eq!((got.status, got.body.as_str()), (200, "ok"));
    }
    assert_eq!(connections(&mut accepted), 4);
}

#[tokio::test]
async fn a_body_of_unknown_length_goes_up_chunked_and_comes_back_whole() {
    let (backend, mut accepted) = echoing().await;
    let proxy = proxy_to(backend, "").await;
    let addr = proxy.listener_addr("http").await;
    for _ in 0..2 {
        let frames = ["one ", "two ", "three"]
            .map(|s| Ok::<_, Infallible>(Frame::data(Bytes::from_static(s.as_bytes()))));
        let body = StreamBody::new(tokio_stream::iter(frames));
        let stream = TcpStream::connect(addr).await.unwrap();
        let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .unwrap();
        tokio::spawn(conn);
        let request = Request::post("/").header("host", "x").body(body).unwrap();
        let response = sender.send_request(request).await.unwrap();
        assert_eq!(response.status(), 200);
        let echoed = response.into_body().collect().await.unwrap().to_bytes();
        assert_eq!(echoed, "one two three");
    }
    assert_eq!(connections(&mut accepted), 1);
}
