//! WebSocket through the proxy: the upgrade crosses it and the tunnel carries bytes
//! both ways.

mod common;

use std::convert::Infallible;

use bytes::Bytes;
use common::*;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// A backend that accepts WebSocket upgrades and echoes what the tunnel carries.
async fn websocket_echo() -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let service = service_fn(|mut req: Request<Incoming>| async move {
                    let upgrade = hyper::upgrade::on(&mut req);
                    tokio::spawn(async move {
                        let Ok(upgraded) = upgrade.await else { return };
                        let mut io = TokioIo::new(upgraded);
                        let mut buf = [0u8; 1024];
                        while let Ok(n) = io.read(&mut buf).await {
                            if n == 0 || io.write_all(&buf[..n]).await.is_err() {
                                return;
                            }
                        }
                    });
                    let response = Response::builder()
                        .status(StatusCode::SWITCHING_PROTOCOLS)
                        .header("connection", "upgrade")
                        .header("upgrade", "websocket")
                        .body(Full::new(Bytes::new()))
                        .unwrap();
                    Ok::<_, Infallible>(response)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .with_upgrades()
                    .await;
            });
        }
    });
    addr
}

#[tokio::test]
async fn websocket_upgrade_tunnels_bytes_both_ways() {
    let backend = websocket_echo().await;
    let yaml = http_bootstrap(
        r#"- name: all
  domains: ["*"]
  routes: [{match: {prefix: "/"}, route: {cluster: ws}}]
"#,
        &cluster("ws", &[backend]),
    )
    .replace(
        "          stat_prefix: ingress\n",
        "          stat_prefix: ingress\n          upgrade_configs: [{upgrade_type: websocket}]\n",
    );
    let proxy = proxy(&yaml).await;
    let addr = proxy.listener_addr("http").await;

    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(
            b"GET /chat HTTP/1.1\r\nHost: chat\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
              Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
        )
        .await
        .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        stream.read_exact(&mut byte).await.unwrap();
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap().to_ascii_lowercase();
    assert!(head.starts_with("http/1.1 101"), "{head}");
    assert!(head.contains("upgrade: websocket"), "{head}");

    for message in [&b"hello"[..], b"second frame"] {
        stream.write_all(message).await.unwrap();
        let mut echoed = vec![0u8; message.len()];
        stream.read_exact(&mut echoed).await.unwrap();
        assert_eq!(echoed, message);
    }
}

/// Sends a CONNECT for `authority` and returns the response head.
async fn connect(stream: &mut TcpStream, authority: &str) -> String {
    let request = format!("CONNECT {authority} HTTP/1.1\r\nHost: {authority}\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        if stream.read(&mut byte).await.unwrap() == 0 {
            break;
        }
        head.push(byte[0]);
    }
    String::from_utf8(head).unwrap()
}

#[tokio::test]
async fn connect_is_terminated_and_tunnelled_to_the_routes_cluster() {
    let db = echo("db").await;
    let yaml = http_bootstrap(
        r#"- name: all
  domains: ["*"]
  routes:
  - match: {connect_matcher: {}}
    route: {cluster: db, upgrade_configs: [{upgrade_type: CONNECT, connect_config: {}}]}
  - match: {prefix: "/"}
    direct_response: {status: 200, body: {inline_string: "plain"}}
"#,
        &cluster("db", &[db]),
    )
    .replace(
        "          stat_prefix: ingress\n",
        "          stat_prefix: ingress\n          upgrade_configs: [{upgrade_type: CONNECT}]\n",
    );
    let proxy = proxy(&yaml).await;
    let addr = proxy.listener_addr("http").await;

    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = connect(&mut stream, "db.example:5432").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    stream.write_all(b"ping").await.unwrap();
    let mut reply = [0u8; 7];
    stream.read_exact(&mut reply).await.unwrap();
    assert_eq!(&reply, b"db:ping");

    // Plain requests on the same listener still route.
    assert_eq!(send(addr, get("x", "/")).await.body, "plain");
}

#[tokio::test]
async fn connect_is_refused_where_the_listener_does_not_enable_it() {
    let db = echo("db").await;
    let yaml = http_bootstrap(
        r#"- name: all
  domains: ["*"]
  routes: [{match: {connect_matcher: {}}, route: {cluster: db}}]
"#,
        &cluster("db", &[db]),
    );
    let proxy = proxy(&yaml).await;
    let addr = proxy.listener_addr("http").await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = connect(&mut stream, "db.example:5432").await;
    assert!(head.starts_with("HTTP/1.1 403"), "{head}");
}
