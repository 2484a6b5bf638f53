//! Trace context through the proxy: with the connection manager's `tracing` on, the
//! backend hears the caller's trace continued (a child span of the caller's) or a new
//! one; without it, the headers pass untouched.

mod common;

use common::*;

fn traced(sampling: &str, backend: std::net::SocketAddr) -> String {
    http_bootstrap(&all_to("backend"), &cluster("backend", &[backend])).replace(
        "          stat_prefix: ingress\n",
        &format!("          stat_prefix: ingress\n          tracing: {{random_sampling: {{value: {sampling}}}}}\n"),
    )
}

#[tokio::test]
async fn the_backend_hears_a_child_of_the_callers_span() {
    let backend = backend("b").await;
    let proxy = proxy(&traced("100", backend)).await;
    let addr = proxy.listener_addr("http").await;
    let mut request = get("shop", "/");
    request.headers_mut().insert(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            .parse()
            .unwrap(),
    );
    let seen = send(addr, request).await.seen();
    let parts: Vec<&str> = seen.headers["traceparent"].split('-').collect();
    assert_eq!(parts[1], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_ne!(parts[2], "00f067aa0ba902b7");
    assert_eq!(parts[3], "01");

    // No context: a new trace, sampled at 100 %, in both formats.
    let seen = send(addr, get("shop", "/")).await.seen();
    assert!(seen.headers["traceparent"].ends_with("-01"));
    assert!(seen.headers["traceparent"].contains(&seen.headers["x-b3-traceid"]));
    assert_eq!(seen.headers["x-b3-sampled"], "1");
}

#[tokio::test]
async fn without_tracing_the_headers_pass_untouched() {
    let backend = backend("b").await;
    let proxy = proxy(&http_bootstrap(
        &all_to("backend"),
        &cluster("backend", &[backend]),
    ))
    .await;
    let seen = send(proxy.listener_addr("http").await, get("shop", "/"))
        .await
        .seen();
    assert!(!seen.headers.contains_key("traceparent"));
    assert!(!seen.headers.contains_key("x-b3-traceid"));
}
