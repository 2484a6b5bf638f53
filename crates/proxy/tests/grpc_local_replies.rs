//! Local replies as a gRPC client hears them: every answer the proxy makes itself (an
//! RBAC or JWT denial, a direct response, a redirect, no route, no healthy upstream) is a
//! trailers-only HTTP/2 `200` with `grpc-status` mapped from the HTTP status and the body
//! text in `grpc-message`, header for header as Envoy sends it.

mod common;

use std::net::SocketAddr;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpStream;

const RBAC: &str = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC";
const JWT_AUTHN: &str =
    "type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication";
/// RFC 7517's example P-256 public key: the JWKS only has to be valid, for no token
/// these tests send verifies.
const JWKS: &str = r#"{"keys":[{"kty":"EC","crv":"P-256","x":"MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4","y":"4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM","use":"sig","kid":"1"}]}"#;

/// A bootstrap whose listener runs jwt_authn (a token required under `/shop.Orders/`),
/// then RBAC (denying `/shop.Admin/`), before routes that answer locally, and one to a
/// cluster with no endpoints; everything else goes to `backend`.
fn bootstrap(backend: SocketAddr) -> String {
    let jwt = format!(
        "          - name: envoy.filters.http.jwt_authn\n            typed_config: {{\"@type\": {JWT_AUTHN}, providers: {{origins-0: {{issuer: 'https://issuer.test', local_jwks: {{inline_string: '{JWKS}'}}}}}}, rules: [{{match: {{prefix: /shop.Orders/}}, requires: {{provider_name: origins-0}}}}]}}\n"
    );
    let rbac = format!(
        "          - name: envoy.filters.http.rbac\n            typed_config: {{\"@type\": {RBAC}, rules: {{action: DENY, policies: {{p: {{permissions: [{{url_path: {{path: {{prefix: /shop.Admin/}}}}}}], principals: [{{any: true}}]}}}}}}}}\n"
    );
    let hosts = r#"- name: shop
  domains: ["*"]
  routes:
  - {match: {prefix: /shop.Gone/}, direct_response: {status: 503, body: {inline_string: "gone for good"}}}
  - {match: {prefix: /shop.Teapot/}, direct_response: {status: 418}}
  - {match: {prefix: /shop.Moved/}, redirect: {host_redirect: other.test}}
  - {match: {prefix: /shop.Empty/}, route: {cluster: empty}}
  - {match: {prefix: /shop.}, route: {cluster: b}}
"#;
    let clusters = format!("{}{}", cluster("b", &[backend]), cluster("empty", &[]));
    let yaml = http_bootstrap(hosts, &clusters).replace(
        "          http_filters:\n",
        &format!("          http_filters:\n{jwt}{rbac}"),
    );
    format!("{yaml}{ADMIN}")
}

/// What a gRPC client reads of an answer: status, headers (but `date`), body and trailers.
#[derive(Debug, PartialEq)]
struct Heard {
    status: u16,
    headers: Vec<(String, String)>,
    body: Bytes,
    trailers: Option<Vec<(String, String)>>,
}

fn listed(headers: &http::HeaderMap) -> Vec<(String, String)> {
    let mut list: Vec<_> = headers
        .iter()
        .filter(|(name, _)| *name != "date")
        .map(|(n, v)| {
            (
                n.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    list.sort();
    list
}

/// A unary gRPC call to `path` over HTTP/2, with `token` as a bearer token.
async fn call(addr: SocketAddr, path: &str, token: Option<&str>) -> Heard {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let mut request = Request::post(format!("http://shop.test{path}"))
        .header("content-type", "application/grpc")
        .header("te", "trailers");
    if let Some(token) = token {
        request = request.header("authorization", format!("Bearer {token}"));
    }
    // An empty message: the compressed flag and a zero length.
    let request = request
        .body(Full::new(Bytes::from_static(&[0, 0, 0, 0, 0])))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    let (parts, body) = response.into_parts();
    let collected = body.collect().await.unwrap();
    let trailers = collected.trailers().map(listed);
    Heard {
        status: parts.status.as_u16(),
        headers: listed(&parts.headers),
        body: collected.to_bytes(),
        trailers,
    }
}

fn header<'h>(heard: &'h Heard, name: &str) -> Option<&'h str> {
    heard
        .headers
        .iter()
        .find(|(n, _)| n == name)
        .map(|(_, v)| v.as_str())
}

/// The calls both proxies answer, and the gRPC status and message each must get.
const CALLS: &[(&str, Option<&str>, &str, Option<&str>)] = &[
    ("/shop.Admin/Delete", None, "7", Some("RBAC: access denied")),
    ("/shop.Orders/List", None, "16", Some("Jwt is missing")),
    (
        "/shop.Orders/List",
        Some("abc"),
        "16",
        Some("Jwt is not in the form of Header.Payload.Signature with two dots and 3 sections"),
    ),
    ("/shop.Gone/Get", None, "14", Some("gone for good")),
    ("/shop.Teapot/Brew", None, "2", None),
    ("/shop.Moved/Get", None, "2", None),
    ("/shop.Empty/Get", None, "14", Some("no healthy upstream")),
    ("/elsewhere.Service/Get", None, "12", None),
];

#[tokio::test]
async fn every_local_reply_is_trailers_only_grpc() {
    let proxy = proxy(&bootstrap(backend("b").await)).await;
    let addr = proxy.listener_addr("http").await;
    for &(path, token, status, message) in CALLS {
        let heard = call(addr, path, token).await;
        assert_eq!(heard.status, 200, "{path}: {heard:?}");
        assert_eq!(header(&heard, "content-type"), Some("application/grpc"));
        assert_eq!(header(&heard, "grpc-status"), Some(status), "{path}");
        assert_eq!(header(&heard, "grpc-message"), message, "{path}");
        assert_eq!(header(&heard, "content-length"), None, "{path}");
        assert!(heard.body.is_empty() && heard.trailers.is_none(), "{path}");
    }
    // A JWT denial keeps its challenge.
    let jwt = call(addr, "/shop.Orders/List", Some("abc")).await;
    assert_eq!(
        header(&jwt, "www-authenticate"),
        Some("Bearer realm=\"http://shop.test/shop.Orders/List\", error=\"invalid_token\"")
    );
    // A request the backend answers is the backend's.
    let served = call(addr, "/shop.Catalog/List", None).await;
    assert_eq!(header(&served, "x-backend"), Some("b"));
    assert_eq!(header(&served, "grpc-status"), None);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_answers_grpc_clients_alike() {
    let yaml = bootstrap(backend("b").await);
    let Some(envoy) = common::envoy::Envoy::start(&yaml).await else {
        return;
    };
    let mizzen = proxy(&yaml).await;
    let (ours, theirs) = (
        mizzen.listener_addr("http").await,
        envoy.listener_addr("http").await,
    );
    let mut differences = Vec::new();
    for &(path, token, _, _) in CALLS {
        let (a, b) = (
            call(ours, path, token).await,
            call(theirs, path, token).await,
        );
        if a != b {
            differences.push(format!("{path} {token:?}:\n  mizzen {a:?}\n  envoy  {b:?}"));
        }
    }
    assert!(differences.is_empty(), "{}", differences.join("\n"));
}
