//! The stream idle timeout: a stream on which nothing moves for that long is ended —
//! with 408 `stream timeout` before the response began, by a reset after.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// A backend that answers with its headers and a first chunk, then stalls the body
/// (its sender stays alive as long as the connection).
async fn stalling() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (tx, rx) = mpsc::channel::<Result<Frame<Bytes>, Infallible>>(1);
            tx.send(Ok(Frame::data(Bytes::from_static(b"first"))))
                .await
                .unwrap();
            let body = std::sync::Mutex::new(Some(rx));
            let service = service_fn(move |_: Request<Incoming>| {
                let rx = body.lock().unwrap().take().expect("one request");
                async move {
                    Ok::<_, Infallible>(Response::new(StreamBody::new(ReceiverStream::new(rx))))
                }
            });
            tokio::spawn(async move {
                let _stalled = tx;
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// A proxy routing everything to `backend`; `hcm` and `route` add YAML fields to the
/// connection manager and the route action.
async fn proxy_to(backend: SocketAddr, hcm: &str, route: &str) -> mizzen_proxy::Proxy {
    let yaml = http_bootstrap(
        &format!(
            r#"- name: all
  domains: ["*"]
  routes: [{{match: {{prefix: "/"}}, route: {{cluster: b{route}}}}}]
"#
        ),
        &cluster("b", &[backend]),
    )
    .replace(
        "          stat_prefix: ingress\n",
        &format!("          stat_prefix: ingress\n{hcm}"),
    );
    proxy(&yaml).await
}

#[tokio::test]
async fn a_backend_that_never_answers_gets_408_stream_timeout() {
    // The route's idle_timeout overrides the connection manager's 5 minutes.
    let proxy = proxy_to(silent().await, "", ", idle_timeout: 0.1s").await;
    let addr = proxy.listener_addr("http").await;
    let got = send(addr, get("x", "/")).await;
    assert_eq!(got.status, 408);
    assert_eq!(got.body, "stream timeout");
}

#[tokio::test]
async fn a_stalled_response_body_is_reset_after_the_idle_timeout() {
    let hcm = "          stream_idle_timeout: 0.1s\n";
    let proxy = proxy_to(stalling().await, hcm, "").await;
    let addr = proxy.listener_addr("http").await;
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let response = sender.send_request(get("x", "/")).await.unwrap();
    assert_eq!(response.status(), 200);
    let mut body = response.into_body();
    let first = body.frame().await.unwrap().unwrap();
    assert_eq!(first.into_data().unwrap(), "first");
    assert!(
        body.collect().await.is_err(),
        "the stream is reset, not ended cleanly"
    );
    let stats = proxy.store().stats().cluster("b");
    assert_eq!(stats.upstream_rq_active.get(), 0, "the request ended");
}
