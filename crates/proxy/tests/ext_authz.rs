//! External authorization through the proxy (`envoy.filters.http.ext_authz`), with
//! small authorization servers made here: an HTTP one (200 allows) and a gRPC one
//! (`envoy.service.auth.v3.Authorization/Check`). Allowed requests reach the backend
//! with the headers the server added; denied ones get the server's answer; a server that
//! cannot be reached fails closed unless `failure_mode_allow`; Istio's CUSTOM action
//! checks only the requests its shadow RBAC rules select.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use common::*;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use mizzen_proxy::Proxy;
use mizzen_xds::pb::envoy::config::core::v3::{HeaderValue, HeaderValueOption};
use mizzen_xds::pb::envoy::service::auth::v3::authorization_server::{
    Authorization, AuthorizationServer,
};
use mizzen_xds::pb::envoy::service::auth::v3::{
    CheckRequest, CheckResponse, DeniedHttpResponse, OkHttpResponse, check_response,
};
use mizzen_xds::pb::envoy::r#type::v3::HttpStatus;
use mizzen_xds::pb::google::rpc::Status;
use tokio::net::TcpListener;

const EXT_AUTHZ: &str = "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz";

/// An HTTP authorization server: it allows requests whose `authorization` is
/// `let-me-in`, telling the upstream who the user is and the client its session, and
/// denies the others with 401, a reason header and a body. It answers on any path, and
/// reports the path it was asked in `x-checked-path`.
async fn http_authz() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service = service_fn(|req: Request<Incoming>| async move {
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
                Ok::<_, Infallible>(
                    response
                        .body(Full::new(Bytes::from_static(b"go away")))
                        .unwrap(),
                )
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    addr
}

/// A proxy with an ext_authz filter (`ExtAuthz` fields in YAML flow style) before the
/// router to a backend, and a cluster `authz` of `authz` (HTTP/2 when `h2`).
async fn proxy_with(ext_authz: &str, authz: SocketAddr, h2: bool) -> (Proxy, SocketAddr) {
    let backend = backend("b").await;
    let authz_cluster = match h2 {
        true => h2_cluster(authz),
        false => cluster("authz", &[authz]),
    };
    let filter = format!(
        "          - name: envoy.filters.http.ext_authz\n            typed_config: {{\"@type\": {EXT_AUTHZ}, {ext_authz}}}\n"
    );
    let yaml = http_bootstrap(
        &all_to("b"),
        &format!("{}{authz_cluster}", cluster("b", &[backend])),
    )
    .replace(
        "          http_filters:\n",
        &format!("          http_filters:\n{filter}"),
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
    let ext = format!(
        "{{\"@type\": {EXT_AUTHZ}, {HTTP_SERVICE}, filter_enabled_metadata: {{filter: envoy.filters.http.rbac, path: [{{key: istio_ext_authz_shadow_effective_policy_id}}], value: {{string_match: {{prefix: istio-ext-authz}}}}}}}}"
    );
    let filters = format!(
        "          - name: envoy.filters.http.rbac\n            typed_config: {rbac}\n          - name: envoy.filters.http.ext_authz\n            typed_config: {ext}\n"
    );
    let yaml = http_bootstrap(
        &all_to("b"),
        &format!("{}{}", cluster("b", &[backend]), cluster("authz", &[authz])),
    )
    .replace(
        "          http_filters:\n",
        &format!("          http_filters:\n{filters}"),
    );
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

/// A gRPC authorization server: `x-user: alice` is allowed (the upstream told
/// `x-authz-user`), everyone else denied with 418 and a body.
struct Grpc;

#[tonic::async_trait]
impl Authorization for Grpc {
    async fn check(
        &self,
        request: tonic::Request<CheckRequest>,
    ) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
        let http = request
            .into_inner()
            .attributes
            .and_then(|a| a.request)
            .and_then(|r| r.http)
            .unwrap_or_default();
        let header = |key: &str, value: &str| HeaderValueOption {
            header: Some(HeaderValue {
                key: key.into(),
                value: value.into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let response = if http.headers.get("x-user").map(String::as_str) == Some("alice") {
            CheckResponse {
                status: Some(Status::default()),
                http_response: Some(check_response::HttpResponse::OkResponse(OkHttpResponse {
                    headers: vec![
                        header("x-authz-user", "alice"),
                        header("x-checked", &http.path),
                    ],
                    response_headers_to_add: vec![header("x-session", "g1")],
                    ..Default::default()
                })),
                ..Default::default()
            }
        } else {
            CheckResponse {
                status: Some(Status {
                    code: 7,
                    ..Default::default()
                }),
                http_response: Some(check_response::HttpResponse::DeniedResponse(
                    DeniedHttpResponse {
                        status: Some(HttpStatus { code: 418 }),
                        headers: vec![header("x-reason", "not alice")],
                        body: "denied by grpc".into(),
                    },
                )),
                ..Default::default()
            }
        };
        Ok(tonic::Response::new(response))
    }
}

/// Starts the gRPC authorization server.
async fn grpc_authz() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let authz = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(AuthorizationServer::new(Grpc))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    authz
}

/// The HTTP/2 cluster `authz` of `addr` (YAML list item).
fn h2_cluster(addr: SocketAddr) -> String {
    cluster("authz", &[addr]).replace(
        "  connect_timeout: 1s\n",
        "  connect_timeout: 1s\n  typed_extension_protocol_options:\n    envoy.extensions.upstreams.http.v3.HttpProtocolOptions:\n      \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions\n      explicit_http_config: {http2_protocol_options: {}}\n",
    )
}

#[tokio::test]
async fn the_grpc_service_allows_and_denies() {
    let authz = grpc_authz().await;
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
    let authz = grpc_authz().await;
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
