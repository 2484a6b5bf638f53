//! Retries and per-try timeouts as Envoy makes them: each `retry_on` condition, back-off,
//! a different host on retry, the request body sent again, and Istio's default policy.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use tokio::net::TcpListener;

/// Response headers a scripted backend sends.
type Headers = &'static [(&'static str, &'static str)];

/// What a scripted backend answers: a status and headers, or no answer at all.
#[derive(Clone)]
enum Answer {
    Status(u16, &'static [(&'static str, &'static str)]),
    Silence,
}

/// A backend whose `n`-th request (0-based, across connections) gets `script(n)`; the
/// body echoes the request's body and the response names the request's number and
/// `x-envoy-attempt-count` in headers.
async fn scripted(script: impl Fn(u64) -> Answer + Send + Sync + 'static) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let script = Arc::new(script);
    let count = Arc::new(AtomicU64::new(0));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (script, count) = (script.clone(), count.clone());
            let service = service_fn(move |req: Request<Incoming>| {
                let n = count.fetch_add(1, Ordering::SeqCst);
                let answer = script(n);
                async move {
                    let attempt = req.headers().get("x-envoy-attempt-count").cloned();
                    let body = req.into_body().collect().await.unwrap().to_bytes();
                    let (status, headers) = match answer {
                        Answer::Status(status, headers) => (status, headers),
                        Answer::Silence => std::future::pending().await,
                    };
                    let mut response = Response::new(Full::new(body));
                    *response.status_mut() = status.try_into().unwrap();
                    for (name, value) in headers {
                        response.headers_mut().insert(*name, value.parse().unwrap());
                    }
                    response
                        .headers_mut()
                        .insert("x-request-number", n.to_string().parse().unwrap());
                    if let Some(attempt) = attempt {
                        response.headers_mut().insert("x-seen-attempt", attempt);
                    }
                    Ok::<_, Infallible>(response)
                }
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

/// Fails every other request (the first included) with `status`.
async fn alternating(status: u16, headers: &'static [(&'static str, &'static str)]) -> SocketAddr {
    scripted(move |n| {
        if n % 2 == 0 {
            Answer::Status(status, headers)
        } else {
            Answer::Status(200, &[])
        }
    })
    .await
}

/// A port nothing listens on.
async fn closed_port() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    listener.local_addr().unwrap()
}

/// A proxy routing everything to cluster `b` of `endpoints` with the route action's
/// extra YAML `route` (`, retry_policy: {...}`), the virtual host's `vhost`, and the
/// cluster's `cluster` fields.
async fn proxy_with(
    endpoints: &[SocketAddr],
    route: &str,
    vhost: &str,
    cluster_extra: &str,
) -> mizzen_proxy::Proxy {
    let clusters = cluster("b", endpoints).replace(
        "  connect_timeout: 1s\n",
        &format!("  connect_timeout: 1s\n{cluster_extra}"),
    );
    let yaml = http_bootstrap(
        &format!(
            r#"- name: all
  domains: ["*"]
{vhost}  routes: [{{match: {{prefix: "/"}}, route: {{cluster: b{route}}}}}]
"#
        ),
        &clusters,
    );
    proxy(&yaml).await
}

fn post(body: &'static str) -> Request<Full<Bytes>> {
    Request::post("/echo")
        .header("host", "shop")
        .body(Full::new(Bytes::from_static(body.as_bytes())))
        .unwrap()
}

const FAST: &str = "retry_back_off: {base_interval: 0.001s}";

#[tokio::test]
async fn a_backend_failing_half_the_time_is_hidden_by_retries() {
    // Each attempt fails with probability 1/2, independently: with 6 retries a request
    // fails only if all 7 attempts do, p = 1/128.
    let backend = scripted(|_| {
        if fastrand::bool() {
            Answer::Status(503, &[])
        } else {
            Answer::Status(200, &[])
        }
    })
    .await;
    let route = format!(", retry_policy: {{retry_on: 5xx, num_retries: 6, {FAST}}}");
    let proxy = proxy_with(&[backend], &route, "", "").await;
    let addr = proxy.listener_addr("http").await;
    let n = 400u32;
    let mut failed = 0u32;
    for _ in 0..n {
        if send(addr, get("shop", "/")).await.status != 200 {
            failed += 1;
        }
    }
    let p = 1.0 / 128.0;
    let bound = f64::from(n) * p + 5.0 * (f64::from(n) * p * (1.0 - p)).sqrt();
    assert!(
        f64::from(failed) <= bound,
        "{failed} of {n} failed (bound {bound:.1})"
    );
    let stats = proxy.store().stats().cluster("b");
    assert!(stats.upstream_rq_retry.get() > 0);
    assert_eq!(
        stats.upstream_rq_total.get(),
        u64::from(n) + stats.upstream_rq_retry.get(),
        "every retry is one more upstream request"
    );
}

#[tokio::test]
async fn alternating_failures_always_succeed_with_one_retry_and_count_it() {
    let backend = alternating(503, &[]).await;
    let route = format!(", retry_policy: {{retry_on: 5xx, {FAST}}}");
    let vhost =
        "  include_request_attempt_count: true\n  include_attempt_count_in_response: true\n";
    let proxy = proxy_with(&[backend], &route, vhost, "").await;
    let addr = proxy.listener_addr("http").await;
    for _ in 0..20 {
        let got = send(addr, get("shop", "/")).await;
        assert_eq!(got.status, 200);
        assert_eq!(
            got.headers["x-seen-attempt"], "2",
            "the retry says it is one"
        );
        assert_eq!(got.headers["x-envoy-attempt-count"], "2");
    }
    let stats = proxy.store().stats().cluster("b");
    assert_eq!(stats.upstream_rq_retry.get(), 20);
    assert_eq!(stats.upstream_rq_retry_success.get(), 20);
    assert_eq!(stats.retries_running.get(), 0);
}

#[tokio::test]
async fn exhausted_retries_give_the_last_answer_and_count_the_limit() {
    let backend = scripted(|_| Answer::Status(503, &[])).await;
    let route = format!(", retry_policy: {{retry_on: 5xx, num_retries: 2, {FAST}}}");
    let proxy = proxy_with(&[backend], &route, "", "").await;
    let addr = proxy.listener_addr("http").await;
    let got = send(addr, get("shop", "/")).await;
    assert_eq!(got.status, 503);
    assert_eq!(got.headers["x-request-number"], "2", "three attempts");
    let stats = proxy.store().stats().cluster("b");
    assert_eq!(stats.upstream_rq_retry.get(), 2);
    assert_eq!(stats.upstream_rq_retry_limit_exceeded.get(), 1);
    assert_eq!(stats.upstream_rq_retry_success.get(), 0);
}

/// Whether a request is retried by `retry_on` when a backend first answers `status`
/// (with `headers`), then 200.
async fn retried(
    status: u16,
    headers: &'static [(&'static str, &'static str)],
    retry_on: &str,
) -> bool {
    let backend = alternating(status, headers).await;
    let route = format!(
        ", retry_policy: {{retry_on: \"{retry_on}\", retriable_status_codes: [418], {FAST}}}"
    );
    let proxy = proxy_with(&[backend], &route, "", "").await;
    let got = send(proxy.listener_addr("http").await, get("shop", "/")).await;
    let second = got.headers["x-request-number"] == "1";
    if !second {
        assert_eq!(
            got.status, status,
            "not retried: the first answer is the client's"
        );
    }
    second
}

#[tokio::test]
async fn each_retry_on_condition_retries_its_own_failures() {
    assert!(retried(500, &[], "5xx").await);
    assert!(!retried(500, &[], "gateway-error").await);
    assert!(retried(502, &[], "gateway-error").await);
    assert!(retried(504, &[], "gateway-error").await);
    assert!(!retried(500, &[], "connect-failure").await);
    assert!(retried(409, &[], "retriable-4xx").await);
    assert!(!retried(404, &[], "retriable-4xx").await);
    assert!(retried(418, &[], "retriable-status-codes").await);
    assert!(!retried(418, &[], "5xx").await);
    assert!(retried(200, &[("grpc-status", "14")], "unavailable").await);
    assert!(retried(200, &[("grpc-status", "1")], "cancelled").await);
    assert!(retried(200, &[("grpc-status", "4")], "deadline-exceeded").await);
    assert!(retried(200, &[("grpc-status", "8")], "resource-exhausted").await);
    assert!(retried(200, &[("grpc-status", "13")], "internal").await);
    assert!(!retried(200, &[("grpc-status", "13")], "unavailable").await);
    assert!(!retried(503, &[("x-envoy-overloaded", "true")], "5xx").await);
}

#[tokio::test]
async fn a_grpc_status_not_listed_is_not_retried() {
    let backend = alternating(200, &[("grpc-status", "13")]).await;
    let route = format!(", retry_policy: {{retry_on: unavailable, {FAST}}}");
    let proxy = proxy_with(&[backend], &route, "", "").await;
    let got = send(proxy.listener_addr("http").await, get("shop", "/")).await;
    assert_eq!(got.headers["grpc-status"], "13");
    assert_eq!(
        proxy.store().stats().cluster("b").upstream_rq_retry.get(),
        0
    );
}

#[tokio::test]
async fn connect_failures_are_retried_on_another_host() {
    // Round robin over a dead and a live endpoint: every request that meets the dead
    // one first is retried on the live one.
    let endpoints = [
        closed_port().await,
        scripted(|_| Answer::Status(200, &[])).await,
    ];
    let route = format!(", retry_policy: {{retry_on: connect-failure, {FAST}}}");
    let proxy = proxy_with(&endpoints, &route, "", "").await;
    let addr = proxy.listener_addr("http").await;
    for _ in 0..10 {
        assert_eq!(send(addr, get("shop", "/")).await.status, 200);
    }
    // Without retries, the dead endpoint answers half of them with 503.
    let proxy = proxy_with(&endpoints, "", "", "").await;
    let addr = proxy.listener_addr("http").await;
    let mut statuses = Vec::new();
    for _ in 0..4 {
        statuses.push(send(addr, get("shop", "/")).await.status);
    }
    assert!(statuses.contains(&503), "{statuses:?}");
}

#[tokio::test]
async fn previous_hosts_makes_a_retry_pick_another_host() {
    // RANDOM balancing over a failing and a healthy endpoint. A request fails only if
    // its first pick is the failing one and so are all 6 picks of its retry (the
    // predicate re-picks 5 times): p = 1/2 × 1/64. Without the predicate, p = 1/4.
    let endpoints = [
        scripted(|_| Answer::Status(503, &[])).await,
        scripted(|_| Answer::Status(200, &[])).await,
    ];
    let route = format!(
        ", retry_policy: {{retry_on: 5xx, {FAST}, host_selection_retry_max_attempts: 5, \
         retry_host_predicate: [{{name: envoy.retry_host_predicates.previous_hosts, \
         typed_config: {{\"@type\": type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate}}}}]}}"
    );
    let proxy = proxy_with(&endpoints, &route, "", "  lb_policy: RANDOM\n").await;
    let addr = proxy.listener_addr("http").await;
    let n = 200u32;
    let mut failed = 0u32;
    for _ in 0..n {
        if send(addr, get("shop", "/")).await.status != 200 {
            failed += 1;
        }
    }
    let p = 1.0 / 128.0;
    let bound = f64::from(n) * p + 5.0 * (f64::from(n) * p * (1.0 - p)).sqrt();
    assert!(f64::from(failed) <= bound, "{failed} of {n} failed");
}

#[tokio::test]
async fn a_request_body_is_sent_again_on_retry() {
    let backend = alternating(503, &[]).await;
    let route = format!(", retry_policy: {{retry_on: 5xx, {FAST}}}");
    let proxy = proxy_with(&[backend], &route, "", "").await;
    let addr = proxy.listener_addr("http").await;
    let got = send(addr, post("the order: two apples")).await;
    assert_eq!(got.status, 200);
    assert_eq!(got.body, "the order: two apples");
    assert_eq!(got.headers["x-request-number"], "1");
}

#[tokio::test]
async fn a_body_over_the_buffer_limit_is_not_retried() {
    let backend = alternating(503, &[]).await;
    let route = format!(", retry_policy: {{retry_on: 5xx, {FAST}}}");
    let vhost = "  per_request_buffer_limit_bytes: 8\n";
    let proxy = proxy_with(&[backend], &route, vhost, "").await;
    let addr = proxy.listener_addr("http").await;
    let got = send(addr, post("more than eight bytes")).await;
    assert_eq!(
        got.status, 503,
        "sent once: the failure is the client's answer"
    );
    assert_eq!(got.body, "more than eight bytes", "the body streamed whole");
    assert_eq!(
        proxy.store().stats().cluster("b").upstream_rq_retry.get(),
        0
    );
    // Within the limit, the same request is retried.
    let got = send(addr, post("short")).await;
    assert_eq!(got.status, 200);
}

#[tokio::test]
async fn a_per_try_timeout_is_retried_and_else_answers_504() {
    // The first attempt gets no answer; its per-try timeout passes and the retry gets
    // one, long before the route's timeout.
    let backend = scripted(|n| {
        if n == 0 {
            Answer::Silence
        } else {
            Answer::Status(200, &[])
        }
    })
    .await;
    let route = format!(", retry_policy: {{retry_on: 5xx, per_try_timeout: 0.2s, {FAST}}}");
    let proxy = proxy_with(&[backend], &route, "", "").await;
    let got = send(proxy.listener_addr("http").await, get("shop", "/")).await;
    assert_eq!(got.status, 200);
    let stats = proxy.store().stats().cluster("b");
    assert_eq!(stats.upstream_rq_per_try_timeout.get(), 1);
    assert_eq!(stats.upstream_rq_timeout.get(), 0);

    // connect-failure does not retry a timeout: the client hears Envoy's 504.
    let silent = scripted(|_| Answer::Silence).await;
    let route = ", retry_policy: {retry_on: connect-failure, per_try_timeout: 0.1s}";
    let proxy = proxy_with(&[silent], route, "", "").await;
    let started = std::time::Instant::now();
    let got = send(proxy.listener_addr("http").await, get("shop", "/")).await;
    assert_eq!(got.status, 504);
    assert_eq!(got.body, "upstream request timeout");
    assert!(started.elapsed() >= std::time::Duration::from_millis(100));
}

#[tokio::test]
async fn the_route_timeout_covers_every_attempt() {
    // Each attempt times out per try; the route's timeout ends them all with 504.
    let silent = scripted(|_| Answer::Silence).await;
    let route = format!(
        ", timeout: 0.3s, retry_policy: {{retry_on: 5xx, num_retries: 100, per_try_timeout: 0.05s, {FAST}}}"
    );
    let proxy = proxy_with(&[silent], &route, "", "").await;
    let got = send(proxy.listener_addr("http").await, get("shop", "/")).await;
    assert_eq!(got.status, 504);
    assert_eq!(got.body, "upstream request timeout");
    let stats = proxy.store().stats().cluster("b");
    assert_eq!(stats.upstream_rq_timeout.get(), 1);
    assert!(stats.upstream_rq_per_try_timeout.get() >= 1);
}

#[tokio::test]
async fn max_retries_zero_overflows_every_retry() {
    let backend = alternating(503, &[]).await;
    let route = format!(", retry_policy: {{retry_on: 5xx, {FAST}}}");
    let cb = "  circuit_breakers: {thresholds: [{max_retries: 0}]}\n";
    let proxy = proxy_with(&[backend], &route, "", cb).await;
    let got = send(proxy.listener_addr("http").await, get("shop", "/")).await;
    assert_eq!(got.status, 503);
    let stats = proxy.store().stats().cluster("b");
    assert_eq!(stats.upstream_rq_retry_overflow.get(), 1);
    assert_eq!(stats.upstream_rq_retry.get(), 0);
}

#[tokio::test]
async fn istios_default_policy_retries_503_and_unavailable_but_not_500() {
    // What pilot emits for a route whose VirtualService sets no retries.
    let route = format!(
        ", retry_policy: {{retry_on: \"connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes\", \
         num_retries: 2, retriable_status_codes: [503], host_selection_retry_max_attempts: 5, {FAST}, \
         retry_host_predicate: [{{name: envoy.retry_host_predicates.previous_hosts, \
         typed_config: {{\"@type\": type.googleapis.com/envoy.extensions.retry.host.previous_hosts.v3.PreviousHostsPredicate}}}}]}}"
    );
    let cases: [(u16, Headers, u16); 3] = [
        (503, &[], 200),
        (200, &[("grpc-status", "14")], 200),
        (500, &[], 500),
    ];
    for (status, headers, expected) in cases {
        let proxy = proxy_with(&[alternating(status, headers).await], &route, "", "").await;
        let got = send(proxy.listener_addr("http").await, get("shop", "/")).await;
        assert_eq!(got.status, expected, "{status} {headers:?}");
    }
}
