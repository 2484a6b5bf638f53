//! Request mirroring: a copy of the request, body included, goes to the mirror cluster
//! with a `-shadow` authority; the client's answer never waits for it or depends on it.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// A copy as the mirror backend saw it.
#[derive(Debug)]
struct Copy {
    host: String,
    path: String,
    body: Bytes,
}

/// A backend that reports each request it gets on the channel and answers 200.
async fn recording() -> (SocketAddr, mpsc::UnboundedReceiver<Copy>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (tx, rx) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let tx = tx.clone();
            let service = service_fn(move |req: Request<Incoming>| {
                let tx = tx.clone();
                async move {
                    let host = req
                        .uri()
                        .authority()
                        .map(|a| a.to_string())
                        .or_else(|| {
                            req.headers()
                                .get("host")
                                .map(|h| h.to_str().unwrap().to_owned())
                        })
                        .unwrap_or_default();
                    let path = req.uri().path().to_owned();
                    let body = req.into_body().collect().await.unwrap().to_bytes();
                    let _ = tx.send(Copy { host, path, body });
                    Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"mirror"))))
                }
            });
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, rx)
}

/// A proxy routing to cluster `v1` (`primary`) and mirroring to `v2` (`mirror`) by the
/// route's `request_mirror_policies` YAML `policies`.
async fn mirroring(primary: SocketAddr, mirror: SocketAddr, policies: &str) -> mizzen_proxy::Proxy {
    let yaml = http_bootstrap(
        &format!(
            r#"- name: all
  domains: ["*"]
  routes: [{{match: {{prefix: "/"}}, route: {{cluster: v1, request_mirror_policies: {policies}}}}}]
"#
        ),
        &format!("{}{}", cluster("v1", &[primary]), cluster("v2", &[mirror])),
    );
    proxy(&yaml).await
}

const TO_V2: &str = "[{cluster: v2}]";

#[tokio::test]
async fn the_mirror_gets_a_copy_with_a_shadow_host_and_the_body() {
    let (v2, mut copies) = recording().await;
    let proxy = mirroring(backend("v1").await, v2, TO_V2).await;
    let addr = proxy.listener_addr("http").await;
    let got = send(addr, get("shop:8080", "/cart")).await;
    assert_eq!(got.seen().backend, "v1", "the client hears the primary");
    let copy = copies.recv().await.unwrap();
    assert_eq!(copy.host, "shop-shadow:8080");
    assert_eq!(copy.path, "/cart");

    let order = Request::post("/order")
        .header("host", "shop")
        .body(Full::new(Bytes::from_static(b"two apples")))
        .unwrap();
    let got = send(addr, order).await;
    assert_eq!(got.status, 200);
    let copy = copies.recv().await.unwrap();
    assert_eq!(
        (copy.host.as_str(), &copy.body[..]),
        ("shop-shadow", &b"two apples"[..])
    );
}

#[tokio::test]
async fn the_host_is_kept_when_the_suffix_is_disabled() {
    let (v2, mut copies) = recording().await;
    let policies = "[{cluster: v2, disable_shadow_host_suffix_append: true}]";
    let proxy = mirroring(backend("v1").await, v2, policies).await;
    send(proxy.listener_addr("http").await, get("shop", "/")).await;
    assert_eq!(copies.recv().await.unwrap().host, "shop");
}

#[tokio::test]
async fn a_hanging_or_dead_mirror_never_reaches_the_client() {
    let proxy = mirroring(backend("v1").await, silent().await, TO_V2).await;
    let addr = proxy.listener_addr("http").await;
    // The copy is still waiting for its answer when the client has its own.
    let got = tokio::time::timeout(Duration::from_secs(5), send(addr, get("shop", "/")))
        .await
        .expect("the client's answer does not wait for the mirror");
    assert_eq!(got.seen().backend, "v1");
    let v2 = proxy.store().stats().cluster("v2");
    assert_eq!(v2.upstream_rq_total.get(), 1);
    assert_eq!(v2.upstream_rq_active.get(), 1, "the copy hangs on");

    let dead = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let proxy = mirroring(backend("v1").await, dead, TO_V2).await;
    let got = send(proxy.listener_addr("http").await, get("shop", "/")).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.seen().backend, "v1");
}

#[tokio::test]
async fn a_fraction_of_requests_is_mirrored() {
    let (v2, _copies) = recording().await;
    let policies =
        "[{cluster: v2, runtime_fraction: {default_value: {numerator: 25, denominator: HUNDRED}}}]";
    let proxy = mirroring(backend("v1").await, v2, policies).await;
    let addr = proxy.listener_addr("http").await;
    let n = 1000u32;
    for _ in 0..n {
        assert_eq!(send(addr, get("shop", "/")).await.status, 200);
    }
    // A copy is counted on its cluster as it is made, with its request.
    let mirrored = proxy.store().stats().cluster("v2").upstream_rq_total.get() as f64;
    let (n, p) = (f64::from(n), 0.25);
    let tolerance = 5.0 * (n * p * (1.0 - p)).sqrt();
    assert!(
        (mirrored - n * p).abs() <= tolerance,
        "{mirrored} of {n} mirrored, expected {} ± {tolerance:.0}",
        n * p
    );
}

#[tokio::test]
async fn a_body_over_the_buffer_limit_is_not_mirrored() {
    let (v2, mut copies) = recording().await;
    let yaml = http_bootstrap(
        r#"- name: all
  domains: ["*"]
  per_request_buffer_limit_bytes: 4
  routes: [{match: {prefix: "/"}, route: {cluster: v1, request_mirror_policies: [{cluster: v2}]}}]
"#,
        &format!(
            "{}{}",
            cluster("v1", &[backend("v1").await]),
            cluster("v2", &[v2])
        ),
    );
    let proxy = proxy(&yaml).await;
    let addr = proxy.listener_addr("http").await;
    let big = Request::post("/big")
        .header("host", "shop")
        .body(Full::new(Bytes::from_static(b"more than four bytes")))
        .unwrap();
    assert_eq!(send(addr, big).await.status, 200);
    // A later small request's copy is the first the mirror sees.
    let small = Request::post("/small")
        .header("host", "shop")
        .body(Full::new(Bytes::from_static(b"ok")))
        .unwrap();
    assert_eq!(send(addr, small).await.status, 200);
    assert_eq!(copies.recv().await.unwrap().path, "/small");
}
