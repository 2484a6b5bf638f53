use std::net::SocketAddr;
use std::sync::Arc;

use http::{HeaderMap, Method, StatusCode};

use super::*;
use crate::tls::Session;

/// A request to `shop` for `/api/cart?id=1` with `x-user: alice`, answered `status`,
/// routed to cluster `outbound|80||shop` at 10.0.0.9:8080.
fn record(headers: &Headers, status: Option<u16>) -> Record {
    let local: SocketAddr = "10.0.0.2:80".parse().unwrap();
    let remote: SocketAddr = "10.0.0.1:40000".parse().unwrap();
    let mut record = Record::new(local, remote);
    record.request = Some((Method::GET, "/api/cart?id=1".parse().unwrap()));
    let mut request = HeaderMap::new();
    request.insert("host", "shop".parse().unwrap());
    request.insert("x-user", "alice".parse().unwrap());
    record.request_headers = headers.capture_request(&request);
    record.status = status.map(|s| StatusCode::from_u16(s).unwrap());
    record.upstream_cluster = Some("outbound|80||shop".into());
    record.upstream_host = Some("10.0.0.9:8080".parse().unwrap());
    record
}

fn passes(expression: &str, status: Option<u16>) -> bool {
    let mut headers = Headers::default();
    let compiled = Expression::compile(expression, &mut headers)
        .unwrap_or_else(|e| panic!("{expression}: {e}"));
    compiled.passes(&record(&headers, status))
}

#[test]
fn istio_telemetry_filters_evaluate_as_envoy_does() {
    let cases: &[(&str, Option<u16>, bool)] = &[
        ("response.code >= 400", Some(503), true),
        ("response.code >= 400", Some(200), false),
        (
            "response.code == 200 && request.method == 'GET'",
            Some(200),
            true,
        ),
        (
            "response.code != 200 || request.url_path == '/api/cart'",
            Some(200),
            true,
        ),
        ("!(response.code < 500)", Some(503), true),
        ("request.headers['x-user'] == 'alice'", Some(200), true),
        ("request.headers['X-User'] == \"alice\"", Some(200), true),
        ("request.url_path.startsWith('/api')", Some(200), true),
        ("request.path.endsWith('id=1')", Some(200), true),
        ("request.host.contains('sho')", Some(200), true),
        ("request.url_path.matches('^/api/[a-z]+$')", Some(200), true),
        ("response.code in [500, 502, 503]", Some(502), true),
        ("response.code in [500, 502, 503]", Some(200), false),
        (
            "upstream.address == '10.0.0.9:8080' && upstream.port == 8080",
            Some(200),
            true,
        ),
        ("xds.cluster_name == 'outbound|80||shop'", Some(200), true),
        (
            "source.address.startsWith('10.0.0.1:') && destination.port == 80",
            Some(200),
            true,
        ),
        ("connection.mtls", Some(200), false),
        ("has(request.headers.x_absent)", Some(200), false),
        ("has(request.headers.host)", Some(200), true),
        ("size(request.headers['x-user']) == 5", Some(200), true),
        ("response.code == 200u", Some(200), true),
    ];
    for (expression, status, expected) in cases {
        assert_eq!(passes(expression, *status), *expected, "{expression}");
    }
}

#[test]
fn an_error_is_false_unless_logic_decides_without_it() {
    // A missing header compared: an error, which the filter counts as false.
    assert!(!passes("request.headers['x-absent'] == 'y'", Some(200)));
    assert!(!passes("!(request.headers['x-absent'] == 'y')", Some(200)));
    // No response: `response.code` has no value.
    assert!(!passes("response.code >= 0", None));
    assert!(!passes("has(response.code)", None));
    // `||` and `&&` decide past an error on the other side.
    assert!(passes(
        "request.headers['x-absent'] == 'y' || true",
        Some(200)
    ));
    assert!(!passes(
        "false && request.headers['x-absent'] == 'y'",
        Some(200)
    ));
    // Comparing different kinds is unequal, not an error; ordering them is.
    assert!(passes("response.code != 'ok'", Some(200)));
    assert!(!passes("response.code > 'ok'", Some(200)));
}

#[test]
fn mtls_is_a_verified_client_certificate() {
    let mut headers = Headers::default();
    let expression = Expression::compile("connection.mtls", &mut headers).unwrap();
    let mut r = record(&headers, Some(200));
    r.tls = Some(Arc::new(Session::default()));
    assert!(!expression.passes(&r), "TLS without a client certificate");
}

#[test]
fn what_is_not_supported_is_refused_with_the_reason() {
    for (expression, reason) in [
        ("request.nope == 1", "unknown attribute request.nope"),
        ("response.code >= ", "unexpected end"),
        ("response.code ? 1 : 2", "conditional operator"),
        (
            "request.url_path.lowerAscii() == 'a'",
            "lowerAscii() is not supported",
        ),
        (
            "request.headers[request.method] == 'a'",
            "string literal key",
        ),
        ("'abc", "unterminated string"),
        ("response.code == 200 200", "after the expression"),
        ("request.url_path.matches('(')", "matches"),
    ] {
        let err = Expression::compile(expression, &mut Headers::default()).unwrap_err();
        assert!(err.contains(reason), "{expression}: {err}");
    }
}
