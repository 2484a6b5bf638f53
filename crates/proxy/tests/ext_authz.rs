//! External authorization through the proxy (`envoy.filters.http.ext_authz`), with
//! small authorization servers made here: an HTTP one (200 allows) and a gRPC one
//! (`envoy.service.auth.v3.Authorization/Check`). Allowed requests reach the backend
//! with the headers the server added; denied ones get the server's answer; a server that
//! cannot be reached fails closed unless `failure_mode_allow`; Istio's CUSTOM action
//! checks only the requests its shadow RBAC rules select.

mod common;

use std::net::SocketAddr;

use bytes::Bytes;
use common::ext_authz::{Decision, bootstrap, ext_authz_filter, grpc_authz, h2_cluster, serve};
use common::*;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::{Request, Response};
use mizzen_proxy::Proxy;
use tokio::net::TcpListener;

/// An HTTP authorization server: it allows requests whose `authorization` is
/// `let-me-in`, telling the upstream who the user is and the client its session, and
/// denies the others with 401, a reason header and a body. It answers on any path, and
/// reports the path it was asked in `x-checked-path`.
async fn http_authz() -> SocketAddr {
    serve(|req: Request<Incoming>| async move {
        let allowed = req
            .headers()
            .get("authorization")
            .is_some_and(|v| v == "let-me-in");
        let path = req.uri().path_and_query().unwrap().to_string();
        let custom = req
            .headers()
            .get("x-custom-id")
            .map(|v| v.to_str().unwrap().to_owned())
            .unwrap_or_default();
        let response = if allowed {
            Response::builder()
                .status(200)
                .header("x-authz-user", "alice")
                .header("x-authz-custom", custom)
                .header("x-not-forwarded", "1")
                .header("x-session", "s1")
                .header("x-checked-path", path)
        } else {
            Response::builder()
                .status(401)
                .header("x-reason", "no key")
                .header("x-checked-path", path)
        };
        response
            .body(Full::new(Bytes::from_static(b"go away")))
            .unwrap()
    })
    .await
}

/// A gRPC authorization server: `x-user: alice` is allowed (the upstream told
/// `x-authz-user`), everyone else denied with 418 and a body.
async fn alice_only() -> SocketAddr {
    grpc_authz(|http| {
        if http.headers.get("x-user").map(String::as_str) == Some("alice") {
            Decision::Allow {
                upstream: vec![("x-authz-user", "alice".into()), ("x-checked", http.path)],
                client: vec![("x-session", "g1".into())],
            }
        } else {
            Decision::Deny {
                status: 418,
                headers: vec![("x-reason", "not alice".into())],
                body: "denied by grpc".into(),
            }
        }
    })
    .await
}

/// A proxy with an ext_authz filter (`ExtAuthz` fields in YAML flow style) before the
/// router to a backend, and a cluster `authz` of `authz` (HTTP/2 when `h2`).
async fn proxy_with(ext_authz: &str, authz: SocketAddr, h2: bool) -> (Proxy, SocketAddr) {
    let authz_cluster = match h2 {
        true => h2_cluster(authz),
        false => cluster("authz", &[authz]),
    };
    let yaml = bootstrap(
        &ext_authz_filter(ext_authz),
        backend("b").await,
        &authz_cluster,
    );
    let proxy = proxy(&yaml).await;
    let addr = proxy.listener_addr("http").await;
    (proxy, addr)
}

/// Istio's HTTP provider config: headers into the check, out to the upstream and client.
const HTTP_SERVICE: &str = "http_service: {server_uri: {uri: 'http://authz.foo.svc.cluster.local', cluster: authz, timeout: 5s}, path_prefix: /check, authorization_response: {allowed_upstream_headers: {patterns: [{prefix: x-authz-}]}, allowed_client_headers_on_success: {patterns: [{exact: x-session}]}}}, allowed_headers: {patterns: [{exact: authorization}, {exact: x-custom-id}]}";

fn with_key(path: &str, key: &str) -> Request<Full<Bytes>> {
    let mut request = get("shop", path);
    request
        .headers_mut()
        .insert("authorization", key.parse().unwrap());
    request
}

#[tokio::test]
async fn an_allowed_request_carries_what_the_server_added() {
    let authz = http_authz().await;
    let (proxy, addr) = proxy_with(HTTP_SERVICE, authz, false).await;
    let mut request = with_key("/orders?id=7", "let-me-in");
    request
        .headers_mut()
        .insert("x-custom-id", "c-42".parse().unwrap());
    let got = send(addr, request).await;
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(got.headers["x-session"], "s1");
    let seen = got.seen();
    assert_eq!(seen.headers["x-authz-user"], "alice");
    assert_eq!(
        seen.headers["x-authz-custom"], "c-42",
        "allowed_headers go into the check"
    );
    assert!(!seen.headers.contains_key("x-not-forwarded"));
    assert_eq!(seen.path, "/orders?id=7");
    let stats = proxy.store().stats().http("ingress");
    assert_eq!(stats.counter("ext_authz.ok").get(), 1);
}

#[tokio::test]
async fn a_denied_request_gets_the_servers_answer() {
    let authz = http_authz().await;
    let (proxy, addr) = proxy_with(HTTP_SERVICE, authz, false).await;
    let got = send(addr, with_key("/orders", "guess")).await;
    assert_eq!(got.status, 401);
    assert_eq!(got.body, "go away");
    assert_eq!(got.headers["x-reason"], "no key");
    // The check went to the path prefix, with the request's own path after it.
    assert_eq!(got.headers["x-checked-path"], "/check/orders");
    assert_eq!(
        proxy.store().stats().cluster("b").upstream_rq_total.get(),
        0
    );
    assert_eq!(
        proxy
            .store()
            .stats()
            .http("ingress")
            .counter("ext_authz.denied")
            .get(),
        1
    );
}

#[tokio::test]
async fn an_unreachable_server_fails_closed_unless_told_otherwise() {
    // A port nothing listens on.
    let closed = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let (proxy, addr) = proxy_with(
        &format!("{HTTP_SERVICE}, status_on_error: {{code: ServiceUnavailable}}"),
        closed,
        false,
    )
    .await;
    assert_eq!(send(addr, with_key("/", "let-me-in")).await.status, 503);
    assert_eq!(
        proxy
            .store()
            .stats()
            .http("ingress")
            .counter("ext_authz.error")
            .get(),
        1
    );
    // A server that never answers: the check's timeout.
    let silent = silent().await;
    let (_open, open) = proxy_with(
        &format!(
            "{}, failure_mode_allow: true, failure_mode_allow_header_add: true",
            HTTP_SERVICE.replace("timeout: 5s", "timeout: 0.2s")
        ),
        silent,
        false,
    )
    .await;
    let got = send(open, with_key("/", "anything")).await;
    assert_eq!(got.status, 200);
    assert_eq!(
        got.seen().headers["x-envoy-auth-failure-mode-allowed"],
        "true"
    );
}

#[tokio::test]
async fn istio_custom_checks_only_what_its_shadow_rules_select() {
    let authz = http_authz().await;
    let backend = backend("b").await;
    // Istio's CUSTOM action: an RBAC filter with shadow rules marks the requests to
    // check; ext_authz runs where the mark is.
    let rbac = "{\"@type\": type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC, shadow_rules: {action: DENY, policies: {'istio-ext-authz-ns[foo]-policy[p]-rule[0]': {permissions: [{url_path: {path: {prefix: /private}}}], principals: [{any: true}]}}}, shadow_rules_stat_prefix: istio_ext_authz_}";
    let ext = ext_authz_filter(&format!(
        "{HTTP_SERVICE}, filter_enabled_metadata: {{filter: envoy.filters.http.rbac, path: [{{key: istio_ext_authz_shadow_effective_policy_id}}], value: {{string_match: {{prefix: istio-ext-authz}}}}}}"
    ));
    let filters = format!(
        "          - name: envoy.filters.http.rbac\n            typed_config: {rbac}\n{ext}"
    );
    let yaml = bootstrap(&filters, backend, &cluster("authz", &[authz]));
    let proxy = proxy(&yaml).await;
    let addr = proxy.listener_addr("http").await;
    assert_eq!(send(addr, get("shop", "/public")).await.status, 200);
    assert_eq!(send(addr, get("shop", "/private/x")).await.status, 401);
    assert_eq!(
        send(addr, with_key("/private/x", "let-me-in")).await.status,
        200
    );
    let stats = proxy.store().stats().http("ingress");
    assert_eq!(stats.counter("ext_authz.disabled").get(), 1);
    assert_eq!(stats.counter("ext_authz.ok").get(), 1);
}

#[tokio::test]
async fn the_grpc_service_allows_and_denies() {
    let authz = alice_only().await;
    let (_proxy, addr) = proxy_with(
        "grpc_service: {envoy_grpc: {cluster_name: authz, authority: authz.foo.svc.cluster.local}, timeout: 5s}, transport_api_version: V3",
        authz,
        true,
    )
    .await;
    let mut alice = get("shop", "/orders?id=1");
    alice
        .headers_mut()
        .insert("x-user", "alice".parse().unwrap());
    let got = send(addr, alice).await;
    assert_eq!(got.status, 200, "{}", got.body);
    assert_eq!(got.headers["x-session"], "g1");
    let seen = got.seen();
    assert_eq!(seen.headers["x-authz-user"], "alice");
    assert_eq!(seen.headers["x-checked"], "/orders?id=1");
    let mut bob = get("shop", "/orders");
    bob.headers_mut().insert("x-user", "bob".parse().unwrap());
    let got = send(addr, bob).await;
    assert_eq!((got.status, got.body.as_str()), (418, "denied by grpc"));
    assert_eq!(got.headers["x-reason"], "not alice");
}

#[tokio::test]
async fn istio_custom_on_tcp_checks_the_connections_its_shadow_rules_select() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    // The gRPC server denies every connection check (it looks for an HTTP header).
    let authz = alice_only().await;
    let echo = echo("db").await;
    let listener = |name: &str, port_rule: &str| {
        format!(
            r#"  - name: {name}
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.rbac
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC
          stat_prefix: tcp.
          shadow_rules_stat_prefix: istio_ext_authz_
          shadow_rules: {{action: DENY, policies: {{istio-ext-authz-p: {{permissions: [{port_rule}], principals: [{{any: true}}]}}}}}}
      - name: envoy.filters.network.ext_authz
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.ext_authz.v3.ExtAuthz
          stat_prefix: tcp.
          grpc_service: {{envoy_grpc: {{cluster_name: authz}}, timeout: 5s}}
          filter_enabled_metadata: {{filter: envoy.filters.network.rbac, path: [{{key: istio_ext_authz_shadow_effective_policy_id}}], value: {{string_match: {{prefix: istio-ext-authz}}}}}}
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: db
          cluster: db
"#
        )
    };
    let yaml = format!(
        "static_resources:\n  listeners:\n{}{}  clusters:\n{}\n{}\n",
        listener("checked", "{any: true}"),
        listener("unchecked", "{destination_port: 1}"),
        indent(&cluster("db", &[echo]), 2),
        indent(&h2_cluster(authz), 2)
    );
    let proxy = proxy(&yaml).await;
    let relayed = |addr: SocketAddr| async move {
        let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
        if stream.write_all(b"ping").await.is_err() {
            return false;
        }
        let mut buf = [0u8; 7];
        stream.read_exact(&mut buf).await.is_ok() && &buf == b"db:ping"
    };
    assert!(!relayed(proxy.listener_addr("checked").await).await);
    assert!(relayed(proxy.listener_addr("unchecked").await).await);
    let stats = proxy.store().stats();
    assert_eq!(stats.counter("ext_authz.tcp.denied").get(), 1);
    assert_eq!(stats.counter("ext_authz.tcp.disabled").get(), 1);
}
