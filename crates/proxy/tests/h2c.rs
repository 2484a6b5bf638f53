//! h2c by `Upgrade: h2c` (RFC 7540 section 3.2) with a real client: curl asks for the
//! upgrade, gets 101, and the connection goes on in HTTP/2 with the first request's
//! response on stream 1.

mod common;

use std::net::SocketAddr;
use std::process::Command;
use std::time::Duration;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// What curl printed: the bodies (stdout) and its trace (stderr).
struct Curl {
    stdout: String,
    stderr: String,
}

/// Runs `curl --http2 -sv` on `urls` (one connection, reused across them).
async fn curl_http2(urls: Vec<String>) -> Curl {
    let output = tokio::task::spawn_blocking(move || {
        Command::new("curl")
            .args(["--http2", "-sv", "--max-time", "20"])
            .args(&urls)
            .output()
            .unwrap_or_else(|e| {
                panic!(
                    "this test needs curl on PATH (apt-get install curl; .ci/run installs it): {e}"
                )
            })
    })
    .await
    .unwrap();
    let curl = Curl {
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    };
    assert!(output.status.success(), "curl failed: {}", curl.stderr);
    curl
}

fn routed_bootstrap(backend: SocketAddr) -> String {
    http_bootstrap(&all_to("reviews"), &cluster("reviews", &[backend])) + ADMIN
}

#[tokio::test]
async fn curl_upgrades_to_h2c_and_both_requests_share_the_connection() {
    let reviews = backend("reviews").await;
    let proxy = proxy(&routed_bootstrap(reviews)).await;
    let addr = proxy.listener_addr("http").await;

    let curl = curl_http2(vec![
        format!("http://{addr}/first?x=1"),
        format!("http://{addr}/second"),
    ])
    .await;
    let trace = &curl.stderr;
    assert!(trace.contains("< HTTP/1.1 101"), "{trace}");
    assert!(
        trace.to_ascii_lowercase().contains("< upgrade: h2c"),
        "{trace}"
    );
    assert!(trace.contains("Re-using existing connection"), "{trace}");
    // Both responses came over HTTP/2, from the routed backend.
    assert_eq!(trace.matches("< HTTP/2 200").count(), 2, "{trace}");
    assert_eq!(trace.matches("< x-backend: reviews").count(), 2, "{trace}");
    assert!(
        curl.stdout.contains(r#""path":"/first?x=1""#),
        "{}",
        curl.stdout
    );
    assert!(
        curl.stdout.contains(r#""path":"/second""#),
        "{}",
        curl.stdout
    );
    // The upgrade's hop-by-hop headers did not reach the backend.
    for hop in ["upgrade", "http2-settings", "connection"] {
        assert!(
            !curl.stdout.contains(&format!(r#""{hop}":"#)),
            "{}",
            curl.stdout
        );
    }

    let stats = send(proxy.admin_addr().unwrap(), get("admin", "/stats"))
        .await
        .body;
    assert!(
        stats.contains("http.ingress.downstream_cx_total: 1\n"),
        "{stats}"
    );
    // The upgrade request is one request, answered on stream 1, not two.
    assert!(
        stats.contains("http.ingress.downstream_rq_total: 2\n"),
        "{stats}"
    );
    assert!(
        stats.contains("http.ingress.downstream_rq_2xx: 2\n"),
        "{stats}"
    );
}

/// Sends `request` on a fresh connection and returns the response's head and body as
/// text (the connection closes after it: the request asks for that).
async fn raw_exchange(addr: SocketAddr, request: &str) -> String {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    String::from_utf8_lossy(&response).into_owned()
}

const SETTINGS: &str = "AAMAAABkAAQCAAAAAAIAAAAA";

#[tokio::test]
async fn requests_with_a_body_or_invalid_settings_stay_http1() {
    let reviews = backend("reviews").await;
    let proxy = proxy(&routed_bootstrap(reviews)).await;
    let addr = proxy.listener_addr("http").await;

    let with_body = format!(
        "POST /form HTTP/1.1\r\nHost: reviews\r\nConnection: Upgrade, HTTP2-Settings, close\r\n\
         Upgrade: h2c\r\nHTTP2-Settings: {SETTINGS}\r\nContent-Length: 4\r\n\r\nbody"
    );
    let invalid_settings = "GET /bad HTTP/1.1\r\nHost: reviews\r\n\
         Connection: Upgrade, HTTP2-Settings, close\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMA+/\r\n\r\n";
    for (request, path) in [(with_body.as_str(), "/form"), (invalid_settings, "/bad")] {
        let response = raw_exchange(addr, request).await;
        assert!(response.starts_with("HTTP/1.1 200"), "{response}");
        assert!(
            response.contains(&format!(r#""path":"{path}""#)),
            "{response}"
        );
        // Envoy's way with an upgrade it does not take: the headers go.
        assert!(!response.contains(r#""upgrade":"#), "{response}");
    }
}

#[tokio::test]
async fn an_http1_only_codec_never_upgrades() {
    let reviews = backend("reviews").await;
    let yaml = routed_bootstrap(reviews).replace(
        "          stat_prefix: ingress\n",
        "          stat_prefix: ingress\n          codec_type: HTTP1\n",
    );
    let proxy = proxy(&yaml).await;
    let addr = proxy.listener_addr("http").await;
    let request = format!(
        "GET /plain HTTP/1.1\r\nHost: reviews\r\nConnection: Upgrade, HTTP2-Settings, close\r\n\
         Upgrade: h2c\r\nHTTP2-Settings: {SETTINGS}\r\n\r\n"
    );
    let response = raw_exchange(addr, &request).await;
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(response.contains(r#""path":"/plain""#), "{response}");
}

/// One HTTP/2 frame: (type, flags, stream, payload).
type Frame = (u8, u8, u32, Vec<u8>);

async fn read_frame(stream: &mut TcpStream) -> Option<Frame> {
    let mut header = [0u8; 9];
    stream.read_exact(&mut header).await.ok()?;
    let len = usize::from(header[0]) << 16 | usize::from(header[1]) << 8 | usize::from(header[2]);
    let id = u32::from_be_bytes([header[5], header[6], header[7], header[8]]) & 0x7fff_ffff;
    let mut payload = vec![0u8; len];
    stream.read_exact(&mut payload).await.ok()?;
    Some((header[3], header[4], id, payload))
}

const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
const DATA: u8 = 0x0;
const END_STREAM: u8 = 0x1;

/// Reads frames, answering pings as a client must, until `done` holds for one; `None`
/// when the connection closed first.
async fn until_frame(stream: &mut TcpStream, done: impl Fn(&Frame) -> bool) -> Option<Frame> {
    loop {
        let frame = read_frame(stream).await?;
        if frame.0 == PING && frame.1 == 0 {
            let mut ack = vec![0, 0, 8, PING, 0x1, 0, 0, 0, 0];
            ack.extend_from_slice(&frame.3);
            stream.write_all(&ack).await.ok()?;
        }
        if done(&frame) {
            return Some(frame);
        }
    }
}

#[tokio::test]
async fn an_upgraded_connection_is_drained_with_goaway_and_closed() {
    let reviews = backend("reviews").await;
    let proxy = proxy(&routed_bootstrap(reviews)).await;
    let addr = proxy.listener_addr("http").await;

    let mut stream = TcpStream::connect(addr).await.unwrap();
    let request = format!(
        "GET /drained HTTP/1.1\r\nHost: reviews\r\nConnection: Upgrade, HTTP2-Settings\r\n\
         Upgrade: h2c\r\nHTTP2-Settings: {SETTINGS}\r\n\r\n"
    );
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        head.push(stream.read_u8().await.unwrap());
    }
    let head = String::from_utf8(head).unwrap();
    assert!(head.starts_with("HTTP/1.1 101"), "{head}");
    // The client's preface and an empty SETTINGS frame.
    stream
        .write_all(b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
        .await
        .unwrap();
    let body = until_frame(&mut stream, |f| {
        f.0 == DATA && f.2 == 1 && f.1 & END_STREAM != 0
    })
    .await
    .expect("the response to the upgrade request, on stream 1");
    let body = String::from_utf8(body.3).unwrap();
    assert!(body.contains(r#""path":"/drained""#), "{body}");

    proxy.shutdown();
    let drained = async {
        let goaway = until_frame(&mut stream, |f| f.0 == GOAWAY)
            .await
            .expect("a GOAWAY when draining");
        assert_eq!(goaway.2, 0, "GOAWAY is for the connection");
        // The final GOAWAY names stream 1 as the last one processed, then the
        // connection closes.
        let last = until_frame(&mut stream, |f| {
            f.0 == GOAWAY && f.3[..4] == 1u32.to_be_bytes()
        })
        .await;
        assert!(last.is_some(), "a final GOAWAY naming stream 1");
        assert!(until_frame(&mut stream, |_| false).await.is_none());
    };
    tokio::time::timeout(Duration::from_secs(10), drained)
        .await
        .expect("the upgraded connection drains");
}
