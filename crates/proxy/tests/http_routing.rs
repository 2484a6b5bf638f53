//! HTTP through the proxy on loopback: routes by path and header, weighted clusters,
//! direct responses, redirects, rewrites and header mutations, HTTP/1.1 and HTTP/2, and
//! the headers the proxy itself sets as Envoy does.

mod common;

use bytes::Bytes;
use common::*;
use http_body_util::Full;
use hyper::Request;

#[tokio::test]
async fn forwards_to_the_routed_cluster_with_envoys_headers() {
    let v1 = backend("v1").await;
    let v2 = backend("v2").await;
    let yaml = http_bootstrap(
        r#"- name: reviews
  domains: ["reviews", "reviews:9080"]
  routes:
  - match: {prefix: "/", headers: [{name: end-user, string_match: {exact: jason}}]}
    route: {cluster: v2}
  - match: {prefix: "/"}
    route: {cluster: v1}
    request_headers_to_add: [{header: {key: x-added, value: yes}}]
    response_headers_to_add: [{header: {key: x-route, value: default}}]
"#,
        &(cluster("v1", &[v1]) + &cluster("v2", &[v2])),
    );
    let proxy = proxy(&yaml).await;
    let addr = proxy.listener_addr("http").await;

    let got = send(addr, get("reviews:9080", "/reviews/0")).await;
    assert_eq!(got.status, 200, "{}", got.body);
    let seen = got.seen();
    assert_eq!(seen.backend, "v1");
    assert_eq!(seen.path, "/reviews/0");
    assert_eq!(seen.headers["x-added"], "yes");
    assert_eq!(seen.headers["x-forwarded-proto"], "http");
    assert_eq!(seen.headers["x-request-id"].len(), 36);
    assert_eq!(seen.headers["host"], "reviews:9080");
    assert_eq!(got.headers["x-route"], "default");
    assert!(got.headers.contains_key("x-envoy-upstream-service-time"));

    let jason = Request::get("/reviews/0")
        .header("host", "reviews")
        .header("end-user", "jason")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(send(addr, jason).await.seen().backend, "v2");

    let unknown = send(addr, get("ratings", "/")).await;
    assert_eq!(unknown.status, 404, "no virtual host for the authority");
}

#[tokio::test]
async fn http2_downstream_reaches_an_http1_upstream() {
    let v1 = backend("v1").await;
    let yaml = http_bootstrap(&all_to("v1"), &cluster("v1", &[v1]));
    let proxy = proxy(&yaml).await;
    let addr = proxy.listener_addr("http").await;
    let request = Request::get("http://productpage:9080/index")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let got = send_h2(addr, request).await;
    assert_eq!(got.status, 200, "{}", got.body);
    let seen = got.seen();
    assert_eq!(seen.version, "HTTP/1.1");
    assert_eq!(seen.headers["host"], "productpage:9080");
    assert_eq!(seen.path, "/index");
}

#[tokio::test]
async fn direct_responses_redirects_and_rewrites() {
    let v1 = backend("v1").await;
    let yaml = http_bootstrap(
        r#"- name: all
  domains: ["*"]
  routes:
  - match: {path: "/health"}
    direct_response: {status: 418, body: {inline_string: "teapot"}}
  - match: {prefix: "/old"}
    redirect: {path_redirect: "/new", response_code: FOUND}
  - match: {prefix: "/api/"}
    route: {cluster: v1, prefix_rewrite: "/v2/"}
  - match: {safe_regex: {regex: "/items/([0-9]+)"}}
    route: {cluster: v1, regex_rewrite: {pattern: {regex: "^/items/([0-9]+)$"}, substitution: "/item?id=\\1"}}
"#,
        &cluster("v1", &[v1]),
    );
    let proxy = proxy(&yaml).await;
    let addr = proxy.listener_addr("http").await;

    let teapot = send(addr, get("x", "/health")).await;
    assert_eq!((teapot.status, teapot.body.as_str()), (418, "teapot"));

    let moved = send(addr, get("x", "/old/page")).await;
    assert_eq!(moved.status, 302);
    assert_eq!(moved.headers["location"], "http://x/new");

    let rewritten = send(addr, get("x", "/api/users?limit=1")).await.seen();
    assert_eq!(rewritten.path, "/v2/users?limit=1");
    assert_eq!(
        rewritten.headers["x-envoy-original-path"],
        "/api/users?limit=1"
    );

    let regex = send(addr, get("x", "/items/42")).await.seen();
    assert_eq!(regex.path, "/item?id=42");
}

#[tokio::test]
async fn weighted_clusters_split_traffic_by_weight() {
    let v1 = backend("v1").await;
    let v2 = backend("v2").await;
    let yaml = http_bootstrap(
        r#"- name: all
  domains: ["*"]
  routes:
  - match: {prefix: "/"}
    route:
      weighted_clusters:
        clusters: [{name: v1, weight: 80}, {name: v2, weight: 20}]
"#,
        &(cluster("v1", &[v1]) + &cluster("v2", &[v2])),
    );
    let proxy = proxy(&yaml).await;
    let addr = proxy.listener_addr("http").await;
    let n = 1000;
    let mut v2_count = 0;
    for _ in 0..n {
        if send(addr, get("x", "/")).await.seen().backend == "v2" {
            v2_count += 1;
        }
    }
    // Binomial(n=1000, p=0.2): mean 200, sd 12.6; 5 sd either side.
    let (mean, sd) = (200.0, (1000.0f64 * 0.2 * 0.8).sqrt());
    assert!(
        (f64::from(v2_count) - mean).abs() < 5.0 * sd,
        "v2 got {v2_count} of {n}, expected {mean} ± {:.0}",
        5.0 * sd
    );
}

#[tokio::test]
async fn a_cluster_without_endpoints_answers_503() {
    let yaml = http_bootstrap(
        r#"- name: all
  domains: ["*"]
  routes: [{match: {prefix: "/"}, route: {cluster: empty}}, {match: {prefix: "/"}, route: {cluster: missing}}]
"#,
        "- name: empty\n  type: STATIC\n  load_assignment: {cluster_name: empty}\n",
    );
    let proxy = proxy(&yaml).await;
    let addr = proxy.listener_addr("http").await;
    let got = send(addr, get("x", "/")).await;
    assert_eq!(
        (got.status, got.body.as_str()),
        (503, "no healthy upstream")
    );
}

#[tokio::test]
async fn the_client_hears_its_own_http_version() {
    // A backend that answers in HTTP/1.0 (as Python's http.server does).
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let old = listener.local_addr().unwrap();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        while let Ok((mut s, _)) = listener.accept().await {
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await;
            let _ = s
                .write_all(b"HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .await;
        }
    });
    let yaml = http_bootstrap(&all_to("old"), &cluster("old", &[old]));
    let proxy = proxy(&yaml).await;
    let addr = proxy.listener_addr("http").await;
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .unwrap();
    let mut buf = vec![0u8; 1024];
    let n = stream.read(&mut buf).await.unwrap();
    let text = String::from_utf8_lossy(&buf[..n]);
    assert!(text.starts_with("HTTP/1.1 200 OK"), "{text}");
}

#[tokio::test]
async fn the_proxys_own_answers_carry_the_routes_response_headers() {
    let v1 = backend("v1").await;
    let yaml = http_bootstrap(
        r#"- name: all
  domains: ["*"]
  response_headers_to_add: [{header: {key: x-vhost, value: all}}]
  routes:
  - match: {prefix: /by-header}
    route: {cluster_header: x-cluster}
  - match: {prefix: /empty}
    route: {cluster: empty}
  - match: {prefix: /created}
    direct_response: {status: 201}
"#,
        &(cluster("v1", &[v1])
            + "- name: empty\n  type: STATIC\n  load_assignment: {cluster_name: empty}\n"),
    );
    let proxy = proxy(&yaml).await;
    let addr = proxy.listener_addr("http").await;

    let missing = send(addr, get("x", "/by-header")).await;
    assert_eq!(missing.status, 503);
    assert_eq!(missing.headers["x-vhost"], "all");
    let empty = send(addr, get("x", "/empty")).await;
    assert_eq!(
        (empty.status, empty.body.as_str()),
        (503, "no healthy upstream")
    );
    assert_eq!(empty.headers["x-vhost"], "all");
    // Envoy gives a direct 201 or 3xx the request's own URL as its Location.
    let created = send(addr, get("x:8080", "/created?id=7")).await;
    assert_eq!(created.status, 201);
    assert_eq!(created.headers["location"], "http://x:8080/created?id=7");
    assert_eq!(created.headers["x-vhost"], "all");
}

#[tokio::test]
async fn host_rewrites_keep_the_original_host_as_envoy_does() {
    let v1 = backend("v1").await;
    let named = format!(
        "- name: named\n  type: STATIC\n  load_assignment:\n    cluster_name: named\n    endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: {}, port_value: {}}}}}, hostname: v1.internal}}}}]}}]\n",
        v1.ip(),
        v1.port()
    );
    let yaml = http_bootstrap(
        r#"- name: all
  domains: ["*"]
  routes:
  - match: {prefix: /literal}
    route: {cluster: v1, host_rewrite_literal: new.test, append_x_forwarded_host: true}
  - match: {prefix: /auto}
    route: {cluster: named, auto_host_rewrite: true}
"#,
        &(cluster("v1", &[v1]) + &named),
    );
    let proxy = proxy(&yaml).await;
    let addr = proxy.listener_addr("http").await;

    let literal = Request::get("/literal")
        .header("host", "old.test")
        .header("x-forwarded-host", "edge.test")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let seen = send(addr, literal).await.seen();
    assert_eq!(seen.headers["host"], "new.test");
    assert_eq!(seen.headers["x-envoy-original-host"], "old.test");
    assert_eq!(seen.headers["x-forwarded-host"], "edge.test,old.test");

    let auto = send(addr, get("old.test", "/auto")).await.seen();
    assert_eq!(auto.headers["host"], "v1.internal");
    assert_eq!(auto.headers["x-envoy-original-host"], "old.test");
}

#[tokio::test]
async fn routes_see_the_headers_the_connection_manager_sets() {
    let v1 = backend("v1").await;
    let yaml = http_bootstrap(
        r#"- name: all
  domains: ["*"]
  routes:
  - match: {prefix: /id, headers: [{name: x-request-id, present_match: true}]}
    direct_response: {status: 200, body: {inline_string: "has an id"}}
  - match: {prefix: /secure, headers: [{name: ":scheme", string_match: {exact: https}}]}
    redirect: {path_redirect: /moved}
  - match: {prefix: /}
    route: {cluster: v1}
"#,
        &cluster("v1", &[v1]),
    );
    let proxy = proxy(&yaml).await;
    let addr = proxy.listener_addr("http").await;

    let id = send(addr, get("x", "/id")).await;
    assert_eq!((id.status, id.body.as_str()), (200, "has an id"));
    // A client's x-forwarded-proto is trusted when the proxy is not at the edge, and it is
    // the request's scheme: route conditions and redirects go by it.
    let forwarded = Request::get("/secure")
        .header("host", "x")
        .header("x-forwarded-proto", "https")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let moved = send(addr, forwarded).await;
    assert_eq!(moved.status, 301);
    assert_eq!(moved.headers["location"], "https://x/moved");
    let plain = send(addr, get("x", "/secure")).await.seen();
    assert_eq!(plain.backend, "v1");
    // Proxy-steering headers from a client outside the mesh are not passed on.
    let steering = Request::get("/")
        .header("host", "x")
        .header("x-envoy-retry-on", "5xx")
        .header("x-envoy-internal", "true")
        .body(Full::new(Bytes::new()))
        .unwrap();
    let seen = send(addr, steering).await.seen();
    assert!(
        !seen.headers.contains_key("x-envoy-retry-on"),
        "{:?}",
        seen.headers
    );
    assert!(
        !seen.headers.contains_key("x-envoy-internal"),
        "{:?}",
        seen.headers
    );
}
