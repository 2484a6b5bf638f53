use std::time::{Duration, UNIX_EPOCH};

use http::{HeaderMap, HeaderValue, Method, StatusCode, Version};
use mizzen_xds::pb::google::protobuf::Struct;

use super::*;
use crate::flags::ResponseFlags;

/// A GET answered by an upstream, as the router would record it.
fn record(headers: &Headers) -> Record {
    let mut request = HeaderMap::new();
    request.insert("host", HeaderValue::from_static("reviews:9080"));
    request.insert("user-agent", HeaderValue::from_static("curl/8.5.0"));
    request.insert("x-request-id", HeaderValue::from_static("1b2c"));
    let mut response = HeaderMap::new();
    response.insert(
        "x-envoy-upstream-service-time",
        HeaderValue::from_static("7"),
    );
    let mut r = Record::new(
        "10.0.0.2:9080".parse().unwrap(),
        "10.0.0.1:51000".parse().unwrap(),
    );
    r.start = UNIX_EPOCH + Duration::from_millis(1_460_751_420_310);
    r.duration = Duration::from_millis(12);
    r.request = Some((Method::GET, "/reviews/0".parse().unwrap()));
    r.request_headers = headers.capture_request(&request);
    r.response_headers = headers.capture_response(&response);
    r.protocol = Some(Version::HTTP_11);
    r.status = Some(StatusCode::OK);
    r.details = Some("via_upstream".into());
    r.bytes_sent = 295;
    r.upstream_host = Some("10.0.0.3:9080".parse().unwrap());
    r.upstream_cluster = Some("outbound|9080||reviews".into());
    r
}

fn text(format: &str) -> String {
    let mut headers = Headers::default();
    let format = Format::text(format, &mut headers).unwrap();
    let mut out = String::new();
    format.write(&record(&headers), &mut out);
    out
}

#[test]
fn envoys_default_format_prints_a_routed_request() {
    assert_eq!(
        text(DEFAULT_FORMAT),
        "[2016-04-15T20:17:00.310Z] \"GET /reviews/0 HTTP/1.1\" 200 - 0 295 12 7 \"-\" \"curl/8.5.0\" \"1b2c\" \"reviews:9080\" \"10.0.0.3:9080\"\n"
    );
}

#[test]
fn a_proxy_answer_prints_its_flags_and_dashes_for_what_it_lacks() {
    let mut headers = Headers::default();
    let format = Format::text(
        "%RESPONSE_CODE% %RESPONSE_FLAGS% %RESPONSE_CODE_DETAILS% %UPSTREAM_HOST% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)%",
        &mut headers,
    )
    .unwrap();
    let mut r = record(&headers);
    r.status = Some(StatusCode::SERVICE_UNAVAILABLE);
    r.flags = ResponseFlags::UH;
    r.details = Some("no_healthy_upstream".into());
    r.upstream_host = None;
    r.response_headers = headers.capture_response(&HeaderMap::new());
    let mut out = String::new();
    format.write(&r, &mut out);
    assert_eq!(out, "503 UH no_healthy_upstream - -");
}

#[test]
fn header_operators_fall_back_and_truncate() {
    assert_eq!(text("%REQ(X-ENVOY-ORIGINAL-PATH?:PATH)%"), "/reviews/0");
    assert_eq!(text("%REQ(USER-AGENT):4%"), "curl");
    assert_eq!(text("%REQ(:AUTHORITY)% %REQ(:METHOD)%"), "reviews:9080 GET");
    assert_eq!(text("%REQ(X-MISSING)%"), "-");
    assert_eq!(
        text(
            "%DOWNSTREAM_REMOTE_ADDRESS% %DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT% %UPSTREAM_CLUSTER%"
        ),
        "10.0.0.1:51000 10.0.0.2 outbound|9080||reviews"
    );
    // A lone percent sign is text.
    assert_eq!(text("100% %RESPONSE_CODE%"), "100% 200");
}

#[test]
fn unknown_operators_are_refused_by_name() {
    let e = Format::text("%NOT_A_THING%", &mut Headers::default()).unwrap_err();
    assert!(e.contains("NOT_A_THING"), "{e}");
}

fn json(fields: serde_json::Value) -> Struct {
    mizzen_xds::json::from_json(&fields).unwrap()
}

#[test]
fn json_values_are_typed() {
    let mut headers = Headers::default();
    let dictionary = json(serde_json::json!({
        "code": "%RESPONSE_CODE%",
        "bytes": "%BYTES_SENT%",
        "flags": "%RESPONSE_FLAGS%",
        "path": "%REQ(:PATH)%",
        "forwarded": "%REQ(X-FORWARDED-FOR)%",
        "mixed": "%REQ(:METHOD)% %REQ(X-FORWARDED-FOR)%",
        "fixed": 1.5,
        "nested": {"agent": "%REQ(USER-AGENT)%"},
    }));
    let format = Format::json(&dictionary, &mut headers).unwrap();
    let mut out = String::new();
    format.write(&record(&headers), &mut out);
    assert!(out.ends_with("}\n"), "{out}");
    let line: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(
        line,
        serde_json::json!({
            "code": 200,
            "bytes": 295,
            "flags": "-",
            "path": "/reviews/0",
            "forwarded": null,
            "mixed": "GET -",
            "fixed": 1.5,
            "nested": {"agent": "curl/8.5.0"},
        })
    );
}
