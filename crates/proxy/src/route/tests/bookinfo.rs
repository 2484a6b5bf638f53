//! A route configuration shaped as Istio generates it for Bookinfo's port 9080 (see
//! `crates/pilot/tests/golden/bookinfo`), with the reviews-jason-v2-v3 and
//! ratings-test-abort VirtualServices and a 90/10 split for details.

use std::sync::LazyLock;

use http::Method;
use mizzen_xds::json::from_yaml;

use super::*;
use crate::route::{Action, Timeout};

const CONFIG: &str = r#"
name: "9080"
validate_clusters: false
max_direct_response_body_size_bytes: 1048576
virtual_hosts:
- name: details.default.svc.cluster.local:9080
  domains: [details.default.svc.cluster.local, "details.default.svc.cluster.local:9080",
            details, "details:9080", details.default.svc, "details.default.svc:9080",
            details.default, "details.default:9080"]
  include_request_attempt_count: true
  routes:
  - match: {prefix: /, case_sensitive: true}
    metadata: {filter_metadata: {istio: {config: /apis/networking.istio.io/v1/namespaces/default/virtual-service/details}}}
    decorator: {operation: "details:9080/*"}
    route:
      weighted_clusters:
        clusters:
        - {name: "outbound|9080|v1|details.default.svc.cluster.local", weight: 90}
        - {name: "outbound|9080|v2|details.default.svc.cluster.local", weight: 10}
      timeout: 0s
      max_stream_duration: {grpc_timeout_header_max: 0s}
      retry_policy: &retry
        retry_on: connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes
        num_retries: 2
        retry_host_predicate:
        - name: envoy.retry_host_predicates.previous_hosts
          typed_config: {"@type": type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate}
        host_selection_retry_max_attempts: 5
        retriable_status_codes: [503]
- name: ratings.default.svc.cluster.local:9080
  domains: [ratings.default.svc.cluster.local, "ratings.default.svc.cluster.local:9080",
            ratings, "ratings:9080", ratings.default.svc, "ratings.default.svc:9080",
            ratings.default, "ratings.default:9080"]
  include_request_attempt_count: true
  routes:
  - match:
      prefix: /
      case_sensitive: true
      headers: [{name: end-user, string_match: {exact: jason}}]
    decorator: {operation: "ratings.default.svc.cluster.local:9080/*"}
    typed_per_filter_config:
      envoy.filters.http.fault:
        "@type": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault
        abort: {http_status: 500, percentage: {numerator: 100}}
    route:
      cluster: "outbound|9080|v1|ratings.default.svc.cluster.local"
      timeout: 0s
      max_stream_duration: {grpc_timeout_header_max: 0s}
      retry_policy: *retry
  - match: {prefix: /, case_sensitive: true}
    decorator: {operation: "ratings.default.svc.cluster.local:9080/*"}
    route:
      cluster: "outbound|9080|v1|ratings.default.svc.cluster.local"
      timeout: 0s
      max_stream_duration: {grpc_timeout_header_max: 0s}
      retry_policy: *retry
- name: reviews.default.svc.cluster.local:9080
  domains: [reviews.default.svc.cluster.local, "reviews.default.svc.cluster.local:9080",
            reviews, "reviews:9080", reviews.default.svc, "reviews.default.svc:9080",
            reviews.default, "reviews.default:9080"]
  include_request_attempt_count: true
  routes:
  - match:
      prefix: /
      case_sensitive: true
      headers: [{name: end-user, string_match: {exact: jason}}]
    decorator: {operation: "reviews.default.svc.cluster.local:9080/*"}
    route:
      cluster: "outbound|9080|v2|reviews.default.svc.cluster.local"
      timeout: 0s
      max_stream_duration: {grpc_timeout_header_max: 0s}
      retry_policy: *retry
  - match: {prefix: /, case_sensitive: true}
    decorator: {operation: "reviews.default.svc.cluster.local:9080/*"}
    route:
      cluster: "outbound|9080|v3|reviews.default.svc.cluster.local"
      timeout: 0s
      max_stream_duration: {grpc_timeout_header_max: 0s}
      retry_policy: *retry
- name: allow_any
  domains: ["*"]
  include_request_attempt_count: true
  routes:
  - name: allow_any
    match: {prefix: /}
    route:
      cluster: PassthroughCluster
      timeout: 0s
      max_stream_duration: {grpc_timeout_header_max: 0s}
"#;

static TABLE: LazyLock<RouteTable> =
    LazyLock::new(|| compile(from_yaml(CONFIG).unwrap_or_else(|e| panic!("{e}"))));

fn to(authority: &str) -> Request {
    Request::get(authority, "/reviews/0")
}

#[test]
fn jason_sees_reviews_v2_and_everyone_else_v3() {
    assert_eq!(TABLE.name(), "9080");
    let v2 = "outbound|9080|v2|reviews.default.svc.cluster.local";
    let v3 = "outbound|9080|v3|reviews.default.svc.cluster.local";
    let jason = to("reviews:9080").header("end-user", "jason");
    assert_eq!(cluster_for(&TABLE, &jason, 0), Some(v2));
    let sam = to("reviews:9080").header("end-user", "sam");
    assert_eq!(cluster_for(&TABLE, &sam, 0), Some(v3));
    for authority in [
        "reviews",
        "reviews.default.svc.cluster.local:9080",
        "Reviews.Default:9080",
    ] {
        assert_eq!(
            cluster_for(&TABLE, &to(authority), 0),
            Some(v3),
            "{authority}"
        );
    }
}

#[test]
fn unknown_hosts_pass_through_without_a_timeout() {
    let req = to("httpbin.org").method(Method::POST);
    let selected = TABLE.select(&req.head()).unwrap();
    assert_eq!(selected.virtual_host.name, "allow_any");
    assert_eq!(
        selected.cluster.unwrap().name(&req.head()),
        Some("PassthroughCluster")
    );
    let Action::Forward(forward) = &selected.route.action else {
        panic!("allow_any forwards");
    };
    assert_eq!(forward.timeout, Timeout::Disabled);
    assert!(forward.retry_policy.is_none());
}

#[test]
fn istios_route_extras_are_kept_for_filters() {
    let jason = to("ratings:9080").header("end-user", "jason");
    let selected = TABLE.select(&jason.head()).unwrap();
    let fault = &selected.route.typed_per_filter_config["envoy.filters.http.fault"];
    assert!(
        fault
            .type_url
            .ends_with("envoy.extensions.filters.http.fault.v3.HTTPFault")
    );
    assert_eq!(
        selected.route.decorator.as_ref().unwrap().operation,
        "ratings.default.svc.cluster.local:9080/*"
    );
    let Action::Forward(forward) = &selected.route.action else {
        panic!("ratings forwards");
    };
    assert_eq!(forward.timeout, Timeout::Disabled);
    let retry = forward.retry_policy.as_ref().unwrap();
    assert_eq!(retry.num_retries, 2);
    let none = http::HeaderMap::new();
    assert!(retry.retries_response(http::StatusCode::SERVICE_UNAVAILABLE, &none));
    assert!(!retry.retries_response(http::StatusCode::INTERNAL_SERVER_ERROR, &none));
    assert!(forward.max_stream_duration.is_some());
    let others = TABLE.select(&to("ratings:9080").head()).unwrap();
    assert!(others.route.typed_per_filter_config.is_empty());
}

#[test]
fn details_splits_90_10() {
    let req = to("details:9080");
    let v1 = "outbound|9080|v1|details.default.svc.cluster.local";
    let v2 = "outbound|9080|v2|details.default.svc.cluster.local";
    assert_eq!(cluster_for(&TABLE, &req, 89), Some(v1));
    assert_eq!(cluster_for(&TABLE, &req, 90), Some(v2));
    let n = 10_000;
    let hits = (0..n)
        .filter(|_| {
            TABLE
                .select(&req.head())
                .unwrap()
                .cluster
                .unwrap()
                .name(&req.head())
                == Some(v2)
        })
        .count();
    assert_binomial(hits, n, 0.1, "details v2");
}
