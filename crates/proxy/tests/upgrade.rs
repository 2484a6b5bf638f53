//! WebSocket and CONNECT through the proxy: the upgrade crosses it (or a CONNECT is
//! terminated, or forwarded to a CONNECT-speaking upstream) and the tunnel carries
//! bytes both ways.

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
    let yaml = http_bootstrap(&all_to("ws"), &cluster("ws", &[backend])).replace(
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

/// An HTTP/1.1 CONNECT proxy upstream: it reads one CONNECT head and answers `answer`
/// with the request line, `Host` and `x-via-route` it saw as headers; after a 2xx it echoes what the
/// tunnel carries, prefixed with `up:`.
async fn connect_upstream(answer: &'static str) -> std::net::SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let mut head = Vec::new();
                while !head.ends_with(b"\r\n\r\n") {
                    let Ok(byte) = stream.read_u8().await else {
                        return;
                    };
                    head.push(byte);
                }
                let head = String::from_utf8(head).unwrap();
                let line = head.lines().next().unwrap_or_default().to_string();
                let header = |name: &str| {
                    let prefix = format!("{name}: ");
                    let value = head.lines().find_map(|l| l.strip_prefix(prefix.as_str()));
                    value.unwrap_or_default().to_string()
                };
                let (host, via) = (header("host"), header("x-via-route"));
                let (status, rest) = answer.split_once("\r\n").unwrap();
                let response = format!(
                    "{status}\r\nx-seen-line: {line}\r\nx-seen-host: {host}\r\nx-seen-via: {via}\r\n{rest}"
                );
                if stream.write_all(response.as_bytes()).await.is_err() {
                    return;
                }
                let mut buf = [0u8; 1024];
                while let Ok(n) = stream.read(&mut buf).await {
                    let reply = [&b"up:"[..], &buf[..n]].concat();
                    if n == 0 || stream.write_all(&reply).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// A proxy whose connection manager enables CONNECT and whose one route forwards it,
/// unterminated, to `upstream`.
async fn forwarding_proxy(upstream: std::net::SocketAddr) -> mizzen_proxy::Proxy {
    forwarding_proxy_with(upstream, "{cluster: corporate}").await
}

/// [`forwarding_proxy`] with the route's action given as YAML.
async fn forwarding_proxy_with(
    upstream: std::net::SocketAddr,
    action: &str,
) -> mizzen_proxy::Proxy {
    let routes = format!(
        r#"- name: all
  domains: ["*"]
  routes:
  - match: {{connect_matcher: {{}}}}
    route: {action}
    request_headers_to_add: [{{header: {{key: x-via-route, value: connect}}}}]
"#
    );
    let yaml = http_bootstrap(&routes, &cluster("corporate", &[upstream])).replace(
        "          stat_prefix: ingress\n",
        "          stat_prefix: ingress\n          upgrade_configs: [{upgrade_type: CONNECT}]\n",
    );
    proxy(&yaml).await
}

#[tokio::test]
async fn connect_without_connect_config_is_forwarded_and_a_2xx_opens_the_tunnel() {
    let upstream = connect_upstream("HTTP/1.1 200 Connection Established\r\n\r\n").await;
    let proxy = forwarding_proxy(upstream).await;
    let addr = proxy.listener_addr("http").await;

    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = connect(&mut stream, "db.example:5432").await;
    assert!(head.starts_with("HTTP/1.1 200"), "{head}");
    // The CONNECT itself reached the upstream, as HTTP/1.1 with its authority.
    let lower = head.to_ascii_lowercase();
    assert!(
        lower.contains("x-seen-line: connect db.example:5432 http/1.1\r\n"),
        "{head}"
    );
    assert!(lower.contains("x-seen-host: db.example:5432\r\n"), "{head}");
    // The route's header mutations apply, as to any forwarded request.
    assert!(lower.contains("x-seen-via: connect\r\n"), "{head}");

    for message in [&b"ping"[..], b"and more"] {
        stream.write_all(message).await.unwrap();
        let mut echoed = vec![0u8; message.len() + 3];
        stream.read_exact(&mut echoed).await.unwrap();
        assert_eq!(echoed, [&b"up:"[..], message].concat());
    }
}

#[tokio::test]
async fn a_forwarded_connects_non_2xx_answer_is_the_clients_response() {
    let upstream = connect_upstream(
        "HTTP/1.1 407 Proxy Authentication Required\r\n\
         Proxy-Authenticate: Basic realm=\"corp\"\r\nContent-Length: 6\r\n\r\ndenied",
    )
    .await;
    let proxy = forwarding_proxy(upstream).await;
    let addr = proxy.listener_addr("http").await;

    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = connect(&mut stream, "db.example:5432").await;
    assert!(head.starts_with("HTTP/1.1 407"), "{head}");
    let lower = head.to_ascii_lowercase();
    assert!(
        lower.contains("proxy-authenticate: basic realm=\"corp\"\r\n"),
        "{head}"
    );
    let mut body = [0u8; 6];
    stream.read_exact(&mut body).await.unwrap();
    assert_eq!(&body, b"denied");
}

#[tokio::test]
async fn an_http2_clients_connect_is_forwarded_as_http1_and_tunnelled_on_its_stream() {
    let upstream = connect_upstream("HTTP/1.1 200 Connection Established\r\n\r\n").await;
    let proxy = forwarding_proxy(upstream).await;
    let addr = proxy.listener_addr("http").await;

    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let request = Request::connect("db.example:5432")
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    let mut response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(
        response.headers()["x-seen-line"],
        "CONNECT db.example:5432 HTTP/1.1"
    );
    let mut tunnel = TokioIo::new(hyper::upgrade::on(&mut response).await.unwrap());
    tunnel.write_all(b"over h2").await.unwrap();
    let mut echoed = [0u8; 10];
    tunnel.read_exact(&mut echoed).await.unwrap();
    assert_eq!(&echoed, b"up:over h2");
}

#[tokio::test]
async fn a_forwarded_connect_unanswered_within_the_route_timeout_gets_504() {
    // An upstream that takes the connection and never answers.
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let upstream = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((stream, _)) = listener.accept().await {
            held.push(stream);
        }
    });
    let proxy = forwarding_proxy_with(upstream, "{cluster: corporate, timeout: 0.2s}").await;
    let addr = proxy.listener_addr("http").await;

    let mut stream = TcpStream::connect(addr).await.unwrap();
    let head = connect(&mut stream, "db.example:5432").await;
    assert!(head.starts_with("HTTP/1.1 504"), "{head}");
}
