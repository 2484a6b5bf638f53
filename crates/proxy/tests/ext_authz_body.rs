//! ext_authz `with_request_body`, as Envoy does it: the request body is read up to
//! `max_request_bytes` and sent in the check (an HTTP service's check body; a gRPC
//! service's `attributes.request.http.body`, or `raw_body` with `pack_as_bytes`), and
//! the whole body then goes upstream. A longer body is refused with 413 unless
//! `allow_partial_message`, which checks its first `max_request_bytes`.

mod common;

use std::net::SocketAddr;

use bytes::Bytes;
use common::ext_authz::{Decision, ext_authz_filter, grpc_authz, h2_cluster, serve};
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::{Request, Response};
use mizzen_proxy::Proxy;

/// A backend answering with the body it got, and the `x-authz-*` headers the check
/// added.
async fn echo_backend() -> SocketAddr {
    serve(|request: Request<Incoming>| async move {
        let (parts, body) = request.into_parts();
        let body = body.collect().await.unwrap().to_bytes();
        let mut response = Response::new(Full::new(body));
        for (name, value) in &parts.headers {
            if name.as_str().starts_with("x-authz-") {
                response.headers_mut().insert(name, value.clone());
            }
        }
        response
    })
    .await
}

/// An HTTP authorization service allowing checks whose body holds `let-me-in`, telling
/// the upstream the body it was sent (`x-authz-body`); others get 403.
async fn http_authz() -> SocketAddr {
    serve(|request: Request<Incoming>| async move {
        let length = request.headers().get("content-length").cloned();
        let body = request.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&body).into_owned();
        let status = if text.contains("let-me-in") { 200 } else { 403 };
        let mut response = Response::builder()
            .status(status)
            .header("x-authz-body", text);
        if let Some(length) = length {
            response = response.header("x-authz-length", length);
        }
        response.body(Full::new(Bytes::new())).unwrap()
    })
    .await
}

/// A gRPC authorization service allowing checks whose body (`body` or `raw_body`) holds
/// `let-me-in`, telling the upstream the body and whether it was partial.
async fn body_grpc_authz() -> SocketAddr {
    grpc_authz(|http| {
        let body = match http.raw_body.is_empty() {
            true => format!("text:{}", http.body),
            false => format!("raw:{}", String::from_utf8_lossy(&http.raw_body)),
        };
        let partial = http
            .headers
            .get("x-envoy-auth-partial-body")
            .cloned()
            .unwrap_or_default();
        if body.contains("let-me-in") {
            Decision::Allow {
                upstream: vec![("x-authz-body", body), ("x-authz-partial", partial)],
                client: Vec::new(),
            }
        } else {
            Decision::Deny {
                status: 403,
                headers: Vec::new(),
                body: String::new(),
            }
        }
    })
    .await
}

/// A proxy whose ext_authz filter (`ExtAuthz` fields in YAML flow style) checks with
/// the cluster `authz` of `authz` before routing to an echo backend.
async fn proxy_with(ext_authz: &str, authz: SocketAddr) -> (Proxy, SocketAddr) {
    let proxy = proxy(&bootstrap(ext_authz, authz, echo_backend().await)).await;
    let addr = proxy.listener_addr("http").await;
    (proxy, addr)
}

/// The bootstrap of [`proxy_with`], to the backend `backend`.
fn bootstrap(ext_authz: &str, authz: SocketAddr, backend: SocketAddr) -> String {
    common::ext_authz::bootstrap(&ext_authz_filter(ext_authz), backend, &h2_cluster(authz))
}

fn post(body: &'static str) -> Request<Full<Bytes>> {
    Request::post("/orders")
        .header("host", "shop")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap()
}

const HTTP_SERVICE: &str = "http_service: {server_uri: {uri: 'http://authz', cluster: authz, timeout: 5s}, authorization_response: {allowed_upstream_headers: {patterns: [{prefix: x-authz-}]}}}";
const GRPC_SERVICE: &str =
    "grpc_service: {envoy_grpc: {cluster_name: authz}, timeout: 5s}, transport_api_version: V3";

#[tokio::test]
async fn an_http_service_checks_the_body_and_the_upstream_gets_it_whole() {
    let authz = http_authz().await;
    let (_proxy, addr) = proxy_with(
        &format!("{HTTP_SERVICE}, with_request_body: {{max_request_bytes: 16}}"),
        authz,
    )
    .await;
    let allowed = send(addr, post("let-me-in, ok?")).await;
    assert_eq!(allowed.status, 200, "{}", allowed.body);
    assert_eq!(allowed.body, "let-me-in, ok?");
    assert_eq!(allowed.headers["x-authz-body"], "let-me-in, ok?");
    assert_eq!(allowed.headers["x-authz-length"], "14");
    assert_eq!(send(addr, post("no key")).await.status, 403);
    // Longer than the limit, with no partial message allowed: Envoy's 413.
    let refused = send(addr, post("let-me-in, and a great deal more")).await;
    assert_eq!(
        (refused.status, refused.body.as_str()),
        (413, "Payload Too Large")
    );
}

#[tokio::test]
async fn a_partial_message_checks_the_start_of_a_longer_body() {
    let authz = http_authz().await;
    let (_proxy, addr) = proxy_with(
        &format!(
            "{HTTP_SERVICE}, with_request_body: {{max_request_bytes: 9, allow_partial_message: true}}"
        ),
        authz,
    )
    .await;
    let allowed = send(addr, post("let-me-in, and a great deal more")).await;
    assert_eq!(allowed.status, 200, "{}", allowed.body);
    assert_eq!(allowed.headers["x-authz-body"], "let-me-in");
    assert_eq!(allowed.body, "let-me-in, and a great deal more");
}

#[tokio::test]
async fn a_grpc_service_reads_the_body_as_text_or_bytes() {
    let authz = body_grpc_authz().await;
    let (_proxy, addr) = proxy_with(
        &format!(
            "{GRPC_SERVICE}, with_request_body: {{max_request_bytes: 9, allow_partial_message: true}}"
        ),
        authz,
    )
    .await;
    let allowed = send(addr, post("let-me-in, and more")).await;
    assert_eq!(allowed.status, 200, "{}", allowed.body);
    assert_eq!(allowed.headers["x-authz-body"], "text:let-me-in");
    assert_eq!(allowed.headers["x-authz-partial"], "true");
    assert_eq!(allowed.body, "let-me-in, and more");
    assert_eq!(send(addr, post("go")).await.status, 403);

    let (_proxy, addr) = proxy_with(
        &format!(
            "{GRPC_SERVICE}, with_request_body: {{max_request_bytes: 64, pack_as_bytes: true}}"
        ),
        authz,
    )
    .await;
    let allowed = send(addr, post("let-me-in")).await;
    assert_eq!(allowed.headers["x-authz-body"], "raw:let-me-in");
    assert_eq!(allowed.headers["x-authz-partial"], "false");
    assert_eq!(allowed.body, "let-me-in");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_checks_and_forwards_bodies_alike() {
    let (authz, backend) = (http_authz().await, echo_backend().await);
    let mut differences = Vec::new();
    for settings in [
        "{max_request_bytes: 16}",
        "{max_request_bytes: 9, allow_partial_message: true}",
    ] {
        let yaml = format!(
            "{}{ADMIN}",
            bootstrap(
                &format!("{HTTP_SERVICE}, with_request_body: {settings}"),
                authz,
                backend
            )
        );
        let Some(envoy) = common::envoy::Envoy::start(&yaml).await else {
            return;
        };
        let mizzen = proxy(&yaml).await;
        let (ours, theirs) = (
            mizzen.listener_addr("http").await,
            envoy.listener_addr("http").await,
        );
        for body in [
            "let-me-in, ok?",
            "let-me-in",
            "no key",
            "let-me-in, and a great deal more",
            "",
        ] {
            let answer = |got: Got| {
                let header = |name| {
                    got.headers
                        .get(name)
                        .map(|v: &http::HeaderValue| v.to_str().unwrap().to_owned())
                };
                let checked = (header("x-authz-body"), header("x-authz-length"));
                let body = if got.status == 403 {
                    String::new()
                } else {
                    got.body
                };
                (got.status, body, checked)
            };
            let (a, b) = (
                answer(send(ours, post(body)).await),
                answer(send(theirs, post(body)).await),
            );
            if a != b {
                differences.push(format!(
                    "{settings} {body:?}:\n  mizzen {a:?}\n  envoy  {b:?}"
                ));
            }
        }
    }
    assert!(differences.is_empty(), "{}", differences.join("\n"));
}
