//! Load balancing through the proxy: round robin spreads requests evenly, consistent
//! hashing keeps a key on one endpoint, a cookie hash policy hands out its cookie, and
//! least request counts a request until its response body ends.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

fn with_header(name: &str, value: &str) -> Request<Full<Bytes>> {
    Request::get("/")
        .header("host", "x")
        .header(name, value)
        .body(Full::new(Bytes::new()))
        .unwrap()
}

async fn three_backends() -> Vec<std::net::SocketAddr> {
    vec![backend("a").await, backend("b").await, backend("c").await]
}

#[tokio::test]
async fn round_robin_spreads_requests_evenly() {
    let backends = three_backends().await;
    let yaml = http_bootstrap(&all_to("pool"), &cluster("pool", &backends));
    let proxy = proxy(&yaml).await;
    let addr = proxy.listener_addr("http").await;
    let mut counts = BTreeMap::new();
    for _ in 0..300 {
        *counts
            .entry(send(addr, get("x", "/")).await.seen().backend)
            .or_insert(0) += 1;
    }
    // Round robin is exact per cycle: 100 each whatever the starting point.
    assert_eq!(
        counts,
        BTreeMap::from([("a".into(), 100), ("b".into(), 100), ("c".into(), 100)])
    );
}

#[tokio::test]
async fn ring_hash_keeps_each_key_on_one_endpoint() {
    let backends = three_backends().await;
    let yaml = http_bootstrap(
        r#"- name: all
  domains: ["*"]
  routes:
  - match: {prefix: "/"}
    route: {cluster: pool, hash_policy: [{header: {header_name: x-user}}]}
"#,
        &cluster("pool", &backends).replace(
            "  type: STATIC\n",
            "  type: STATIC\n  lb_policy: RING_HASH\n",
        ),
    );
    let proxy = proxy(&yaml).await;
    let addr = proxy.listener_addr("http").await;
    let mut used = BTreeSet::new();
    for user in 0..30 {
        let user = format!("user-{user}");
        let first = send(addr, with_header("x-user", &user))
            .await
            .seen()
            .backend;
        for _ in 0..4 {
            assert_eq!(
                send(addr, with_header("x-user", &user))
                    .await
                    .seen()
                    .backend,
                first,
                "{user} moved"
            );
        }
        used.insert(first);
    }
    // 30 keys over 3 endpoints: the chance that one endpoint gets none is 3·(2/3)^30 ≈ 1.5e-5.
    assert_eq!(used.len(), 3, "keys spread over every endpoint: {used:?}");
}

#[tokio::test]
async fn cookie_hash_policy_sets_its_cookie_and_sticks_to_it() {
    let backends = three_backends().await;
    let yaml = http_bootstrap(
        r#"- name: all
  domains: ["*"]
  routes:
  - match: {prefix: "/"}
    route: {cluster: pool, hash_policy: [{cookie: {name: session, ttl: 60s, path: /}}]}
"#,
        &cluster("pool", &backends)
            .replace("  type: STATIC\n", "  type: STATIC\n  lb_policy: MAGLEV\n"),
    );
    let proxy = proxy(&yaml).await;
    let addr = proxy.listener_addr("http").await;
    let first = send(addr, get("x", "/")).await;
    let cookie = first.headers["set-cookie"].to_str().unwrap().to_owned();
    assert!(
        cookie.starts_with("session=")
            && cookie.contains("Max-Age=60")
            && cookie.contains("Path=/"),
        "{cookie}"
    );
    let value = cookie.split(';').next().unwrap().to_owned();
    let backend = send(addr, with_header("cookie", &value))
        .await
        .seen()
        .backend;
    for _ in 0..10 {
        let again = send(addr, with_header("cookie", &value)).await;
        assert_eq!(again.seen().backend, backend);
        assert!(
            !again.headers.contains_key("set-cookie"),
            "no new cookie when one is sent"
        );
    }
}

/// Where a backend leaves the rest of a held response body.
type Held = Arc<Mutex<Option<mpsc::Sender<Result<Frame<Bytes>, Infallible>>>>>;

/// A backend naming itself in `x-backend` and its body; on `/hold` it sends one chunk
/// and keeps the body open until the sender it leaves in `held` is dropped.
async fn holding_backend(name: &'static str, held: Held) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let held = held.clone();
            let service = service_fn(move |req: Request<Incoming>| {
                let held = held.clone();
                async move {
                    let (tx, rx) = mpsc::channel(1);
                    tx.send(Ok(Frame::data(Bytes::from(name)))).await.unwrap();
                    if req.uri().path() == "/hold" {
                        *held.lock().unwrap() = Some(tx);
                    }
                    let body = StreamBody::new(ReceiverStream::new(rx));
                    let mut response = Response::new(body);
                    response
                        .headers_mut()
                        .insert("x-backend", name.parse().unwrap());
                    Ok::<_, Infallible>(response)
                }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    addr
}

#[tokio::test]
async fn least_request_counts_a_request_until_its_response_body_ends() {
    let held = Arc::new(Mutex::new(None));
    let backends = vec![
        holding_backend("a", held.clone()).await,
        holding_backend("b", held.clone()).await,
    ];
    let yaml = http_bootstrap(
        &all_to("pool"),
        &cluster("pool", &backends).replace(
            "  type: STATIC\n",
            "  type: STATIC\n  lb_policy: LEAST_REQUEST\n",
        ),
    );
    let proxy = proxy(&yaml).await;
    let addr = proxy.listener_addr("http").await;
    let stats = proxy.store().stats().cluster("pool");

    // A response whose body is still streaming: its request stays active.
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut slow = sender.send_request(get("x", "/hold")).await.unwrap();
    let busy = slow.headers()["x-backend"].to_str().unwrap().to_owned();
    let first = slow.body_mut().frame().await.unwrap().unwrap();
    assert_eq!(first.into_data().unwrap(), busy.as_bytes());
    assert_eq!(stats.upstream_rq_active.get(), 1);

    // Two choices over two endpoints: the busy one is picked only when both choices
    // fall on it, p = 1/4 (it would be 1/2 if its request no longer counted).
    let n = 400.0;
    let mut to_busy = 0.0;
    for _ in 0..400 {
        if send(addr, get("x", "/")).await.body == busy {
            to_busy += 1.0;
        }
    }
    let (p, tolerance) = (0.25, 5.0 * f64::sqrt(n * 0.25 * 0.75));
    assert!(
        (to_busy - n * p).abs() <= tolerance,
        "{to_busy} of {n} requests went to the busy endpoint; expected {} ± {tolerance}",
        n * p
    );

    // The body ends: the request is no longer active.
    drop(held.lock().unwrap().take());
    let rest = slow.into_body().collect().await.unwrap().to_bytes();
    assert!(rest.is_empty());
    assert_eq!(stats.upstream_rq_active.get(), 0);
}
