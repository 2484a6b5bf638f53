//! Fault injection (`envoy.filters.http.fault`), as Istio configures it for a
//! VirtualService's `fault`: per route in `typed_per_filter_config`, with the filter's
//! own config as the defaults. Delays hold requests before they go upstream; aborts
//! answer in the upstream's stead with Envoy's `fault filter abort`.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::Request;
use hyper_util::rt::{TokioExecutor, TokioIo};
use mizzen_proxy::Proxy;
use mizzen_proxy::stats::HttpStats;
use tokio::net::TcpStream;

const HTTP_FAULT: &str = "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault";

/// A proxy whose connection manager has the fault filter with `defaults` (an `HTTPFault`
/// in YAML flow style, `{}` for none) before the router, and one virtual host with
/// `routes` (a YAML list) to cluster `b`.
async fn proxy_with(defaults: &str, routes: &str) -> (Proxy, SocketAddr) {
    let backend = backend("b").await;
    let yaml = http_bootstrap(
        &format!("- name: all\n  domains: [\"*\"]\n  routes:\n{}", indent(routes, 2)),
        &cluster("b", &[backend]),
    )
    .replace(
        "          http_filters:\n",
        &format!(
            "          http_filters:\n          - name: envoy.filters.http.fault\n            typed_config: {{\"@type\": {HTTP_FAULT}{}}}\n",
            fields(defaults)
        ),
    );
    let proxy = proxy(&yaml).await;
    let addr = proxy.listener_addr("http").await;
    (proxy, addr)
}

/// The fields of a YAML flow mapping (`{a: 1}`), to follow others: `, a: 1`.
fn fields(mapping: &str) -> String {
    let mapping = mapping.trim();
    let inner = mapping
        .strip_prefix('{')
        .and_then(|m| m.strip_suffix('}'))
        .unwrap_or(mapping)
        .trim();
    if inner.is_empty() {
        String::new()
    } else {
        format!(", {inner}")
    }
}

/// A route for `prefix` to `b`, with `fault` (an `HTTPFault`'s fields in YAML flow
/// style) as its fault filter config, or none when empty.
fn route(prefix: &str, fault: &str) -> String {
    let per_filter = if fault.is_empty() {
        String::new()
    } else {
        format!(
            "\n  typed_per_filter_config:\n    envoy.filters.http.fault: {{\"@type\": {HTTP_FAULT}, {fault}}}"
        )
    };
    format!("- match: {{prefix: \"{prefix}\"}}\n  route: {{cluster: b}}{per_filter}\n")
}

fn fault_stats(proxy: &Proxy) -> Arc<HttpStats> {
    proxy.store().stats().http("ingress")
}

/// `n` GETs of `path` on one HTTP/1.1 connection; the status of each.
async fn statuses(addr: SocketAddr, path: &str, n: usize) -> Vec<u16> {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let mut out = Vec::with_capacity(n);
    for _ in 0..n {
        let response = sender.send_request(get("x", path)).await.unwrap();
        out.push(response.status().as_u16());
        response.into_body().collect().await.unwrap();
    }
    out
}

#[tokio::test]
async fn half_of_the_requests_are_aborted_at_50_percent() {
    let (proxy, addr) = proxy_with(
        "{}",
        &route(
            "/",
            "abort: {http_status: 503, percentage: {numerator: 50, denominator: HUNDRED}}",
        ),
    )
    .await;
    let n = 2_000;
    let got = statuses(addr, "/", n).await;
    let aborted = got.iter().filter(|s| **s == 503).count();
    let passed = got.iter().filter(|s| **s == 200).count();
    assert_eq!(aborted + passed, n, "only aborts and upstream answers");
    let (n, p) = (n as f64, 0.5);
    let tolerance = 5.0 * (n * p * (1.0 - p)).sqrt();
    assert!(
        (aborted as f64 - n * p).abs() <= tolerance,
        "{aborted} of {n} aborted, expected {} ± {tolerance:.0}",
        n * p
    );
    let stats = fault_stats(&proxy);
    assert_eq!(stats.fault.aborts_injected.get(), aborted as u64);
    assert_eq!(stats.fault.delays_injected.get(), 0);
    let upstream = proxy.store().stats().cluster("b");
    assert_eq!(upstream.upstream_rq_total.get(), passed as u64);
}

#[tokio::test]
async fn an_abort_answers_with_envoys_body_and_the_routes_headers() {
    let (_proxy, addr) = proxy_with(
        "{}",
        "- match: {prefix: \"/\"}\n  route: {cluster: b}\n  response_headers_to_add: [{header: {key: x-route, value: r1}}]\n  typed_per_filter_config:\n    envoy.filters.http.fault:\n      \"@type\": type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault\n      abort: {http_status: 418, percentage: {numerator: 100}}\n",
    )
    .await;
    let got = send(addr, get("x", "/")).await;
    assert_eq!(got.status, 418);
    assert_eq!(got.body, "fault filter abort");
    assert_eq!(got.headers["content-type"], "text/plain");
    assert_eq!(got.headers["x-route"], "r1");
}

#[tokio::test]
async fn a_delay_holds_the_request_at_least_as_long_as_configured() {
    let delay = Duration::from_millis(200);
    let (proxy, addr) = proxy_with(
        "{}",
        &route(
            "/",
            "delay: {fixed_delay: 0.2s, percentage: {numerator: 1000000, denominator: MILLION}}",
        ),
    )
    .await;
    let started = Instant::now();
    let got = send(addr, get("x", "/")).await;
    assert!(started.elapsed() >= delay, "{:?}", started.elapsed());
    assert_eq!(got.status, 200, "a delayed request still goes upstream");
    assert_eq!(got.seen().backend, "b");
    let stats = fault_stats(&proxy);
    assert_eq!(stats.fault.delays_injected.get(), 1);
    assert_eq!(stats.fault.active_faults.get(), 0, "the delay is over");
}

#[tokio::test]
async fn a_grpc_abort_answers_grpc_clients_as_envoy_does() {
    let (_proxy, addr) = proxy_with(
        "{}",
        &route(
            "/",
            "abort: {grpc_status: 14, percentage: {numerator: 100, denominator: HUNDRED}}",
        ),
    )
    .await;
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let request = Request::post("http://x/helloworld.Greeter/SayHello")
        .header("content-type", "application/grpc")
        .header("te", "trailers")
        .body(Full::new(Bytes::from_static(b"\0\0\0\0\0")))
        .unwrap();
    let response = sender.send_request(request).await.unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.headers()["content-type"], "application/grpc");
    assert_eq!(response.headers()["grpc-status"], "14");
    assert_eq!(response.headers()["grpc-message"], "fault filter abort");
}

#[tokio::test]
async fn delay_and_abort_combine_the_abort_after_the_delay() {
    let delay = Duration::from_millis(100);
    let (proxy, addr) = proxy_with(
        "{}",
        &route(
            "/",
            "delay: {fixed_delay: 0.1s, percentage: {numerator: 100}}, abort: {http_status: 503, percentage: {numerator: 100}}",
        ),
    )
    .await;
    let started = Instant::now();
    let got = send(addr, get("x", "/")).await;
    assert!(started.elapsed() >= delay, "{:?}", started.elapsed());
    assert_eq!(got.status, 503);
    assert_eq!(got.body, "fault filter abort");
    let stats = fault_stats(&proxy);
    assert_eq!(stats.fault.delays_injected.get(), 1);
    assert_eq!(stats.fault.aborts_injected.get(), 1);
    let upstream = proxy.store().stats().cluster("b");
    assert_eq!(
        upstream.upstream_rq_total.get(),
        0,
        "an abort never goes upstream"
    );
}

#[tokio::test]
async fn a_routes_fault_overrides_the_filters_defaults() {
    let defaults = "{abort: {http_status: 418, percentage: {numerator: 100}}}";
    let routes = route(
        "/own",
        "abort: {http_status: 503, percentage: {numerator: 100}}",
    ) + &route("/", "");
    let (_proxy, addr) = proxy_with(defaults, &routes).await;
    assert_eq!(send(addr, get("x", "/own")).await.status, 503);
    assert_eq!(send(addr, get("x", "/other")).await.status, 418);
}

#[tokio::test]
async fn without_the_filter_a_routes_fault_does_nothing() {
    let backend = backend("b").await;
    let yaml = http_bootstrap(
        &format!(
            "- name: all\n  domains: [\"*\"]\n  routes:\n{}",
            indent(
                &route(
                    "/",
                    "abort: {http_status: 503, percentage: {numerator: 100}}"
                ),
                2
            )
        ),
        &cluster("b", &[backend]),
    );
    let proxy = proxy(&yaml).await;
    let addr = proxy.listener_addr("http").await;
    assert_eq!(send(addr, get("x", "/")).await.status, 200);
}

#[tokio::test]
async fn header_aborts_and_delays_follow_the_request_headers() {
    let (_proxy, addr) = proxy_with(
        "{}",
        &route(
            "/",
            "abort: {header_abort: {}, percentage: {numerator: 100}}, delay: {header_delay: {}, percentage: {numerator: 100}}",
        ),
    )
    .await;
    let asked = |name: &str, value: &str| {
        Request::get("/")
            .header("host", "x")
            .header(name, value)
            .body(Full::new(Bytes::new()))
            .unwrap()
    };
    assert_eq!(
        send(addr, asked("x-envoy-fault-abort-request", "429"))
            .await
            .status,
        429
    );
    // A request asking for 0% is not aborted: the header caps the configured percentage.
    let mut zero = asked("x-envoy-fault-abort-request", "429");
    zero.headers_mut().insert(
        "x-envoy-fault-abort-request-percentage",
        "0".parse().unwrap(),
    );
    assert_eq!(send(addr, zero).await.status, 200);
    let started = Instant::now();
    let delayed = send(addr, asked("x-envoy-fault-delay-request", "100")).await;
    assert_eq!(delayed.status, 200);
    assert!(started.elapsed() >= Duration::from_millis(100));
    // No header, no fault.
    assert_eq!(send(addr, get("x", "/")).await.status, 200);
}

#[tokio::test]
async fn max_active_faults_lets_requests_past_while_the_limit_is_reached() {
    let (proxy, addr) = proxy_with(
        "{}",
        &route(
            "/",
            "max_active_faults: 1, delay: {fixed_delay: 0.5s, percentage: {numerator: 100}}",
        ),
    )
    .await;
    let stats = fault_stats(&proxy);
    let first = tokio::spawn(send(addr, get("x", "/")));
    while stats.fault.active_faults.get() == 0 {
        tokio::task::yield_now().await;
    }
    let started = Instant::now();
    let second = send(addr, get("x", "/")).await;
    assert_eq!(second.status, 200);
    assert!(
        started.elapsed() < Duration::from_millis(500),
        "the second request is not delayed: {:?}",
        started.elapsed()
    );
    assert_eq!(stats.fault.faults_overflow.get(), 1);
    assert_eq!(first.await.unwrap().status, 200);
    assert_eq!(stats.fault.delays_injected.get(), 1);
}

#[tokio::test]
async fn fault_stats_render_under_the_connection_managers_prefix() {
    let (proxy, addr) = proxy_with(
        "{}",
        &route(
            "/",
            "abort: {http_status: 503, percentage: {numerator: 100}}",
        ),
    )
    .await;
    send(addr, get("x", "/")).await;
    let text = proxy.store().stats().text();
    assert!(
        text.contains("http.ingress.fault.aborts_injected: 1\n"),
        "{text}"
    );
    let prometheus = proxy.store().stats().prometheus();
    assert!(
        prometheus.contains(
            "envoy_http_fault_aborts_injected{envoy_http_conn_manager_prefix=\"ingress\"} 1\n"
        ),
        "{prometheus}"
    );
}
