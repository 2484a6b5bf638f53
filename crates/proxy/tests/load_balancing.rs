//! Load balancing through the proxy: round robin spreads requests evenly, consistent
//! hashing keeps a key on one endpoint, and a cookie hash policy hands out its cookie.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use bytes::Bytes;
use common::*;
use http_body_util::Full;
use hyper::Request;

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
    let yaml = http_bootstrap(
        r#"- name: all
  domains: ["*"]
  routes: [{match: {prefix: "/"}, route: {cluster: pool}}]
"#,
        &cluster("pool", &backends),
    );
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
