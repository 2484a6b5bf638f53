//! ext_authz `with_request_body`, as Envoy does it: the request body is read up to
//! `max_request_bytes` and sent in the check (an HTTP service's check body; a gRPC
//! service's `attributes.request.http.body`, or `raw_body` with `pack_as_bytes`), and
//! the whole body then goes upstream. A longer body is refused with 413 unless
//! `allow_partial_message`, which checks its first `max_request_bytes`.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
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

/// Serves `service` (HTTP/1.1 and h2c) on a fresh port.
async fn serve<F, R>(service: F) -> SocketAddr
where
    F: Fn(Request<Incoming>) -> R + Clone + Send + Sync + 'static,
    R: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service = service.clone();
            let service = service_fn(move |r| {
                let answer = service(r);
                async move { Ok::<_, Infallible>(answer.await) }
            });
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

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
        let body = match http.raw_body.is_empty() {
            true => format!("text:{}", http.body),
            false => format!("raw:{}", String::from_utf8_lossy(&http.raw_body)),
        };
        let partial = http
            .headers
            .get("x-envoy-auth-partial-body")
            .cloned()
            .unwrap_or_default();
        let header = |key: &str, value: &str| HeaderValueOption {
            header: Some(HeaderValue {
                key: key.into(),
                value: value.into(),
                ..Default::default()
            }),
            ..Default::default()
        };
        let allowed = body.contains("let-me-in");
        let response = CheckResponse {
            status: Some(Status {
                code: if allowed { 0 } else { 7 },
                ..Default::default()
            }),
            http_response: Some(match allowed {
                true => check_response::HttpResponse::OkResponse(OkHttpResponse {
                    headers: vec![
                        header("x-authz-body", &body),
                        header("x-authz-partial", &partial),
                    ],
                    ..Default::default()
                }),
                false => check_response::HttpResponse::DeniedResponse(DeniedHttpResponse {
                    status: Some(HttpStatus { code: 403 }),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        };
        Ok(tonic::Response::new(response))
    }
}

async fn grpc_authz() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(AuthorizationServer::new(Grpc))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    addr
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
    let authz_cluster = cluster("authz", &[authz]).replace(
        "  connect_timeout: 1s\n",
        "  connect_timeout: 1s\n  typed_extension_protocol_options:\n    envoy.extensions.upstreams.http.v3.HttpProtocolOptions:\n      \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions\n      explicit_http_config: {http2_protocol_options: {}}\n",
    );
    let filter = format!(
        "          - name: envoy.filters.http.ext_authz\n            typed_config: {{\"@type\": {EXT_AUTHZ}, {ext_authz}}}\n"
    );
    http_bootstrap(
        &all_to("b"),
        &format!("{}{authz_cluster}", cluster("b", &[backend])),
    )
    .replace(
        "          http_filters:\n",
        &format!("          http_filters:\n{filter}"),
    )
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
    let authz = grpc_authz().await;
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
