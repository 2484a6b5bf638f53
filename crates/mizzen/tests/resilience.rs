//! Istio's resilience tutorials, end to end: timeouts, fault injection, mirroring,
//! retries, circuit breaking and outlier detection, each applied from the Istio YAML
//! under `examples/traffic/` to a local mesh and judged on real traffic through the
//! client's sidecar (docs/traffic-management.md walks through the same files).

mod common;

use std::time::{Duration, Instant};

use common::backend::Mode;
use common::client::Response;
use common::mesh::Mesh;
use common::{REVIEWS, WAIT, answered_by, assert_binomial};

/// Requests per statistical sample (5σ is ±8% of the sample at p = 0.5).
const SAMPLE: usize = 1000;
/// Application connections sending a sample at once.
const CONNECTIONS: usize = 8;

#[tokio::test]
async fn a_route_timeout_answers_504_after_the_set_time() {
    let mesh = Mesh::start(&["timeout.yaml"]).await;
    let mut client = mesh.client();
    let quick = client.get(REVIEWS, &[]).await;
    assert_eq!(quick.status, 200, "{quick:?}");

    // reviews takes 3 s; the route gives it 0.5 s.
    let slow = client.get(REVIEWS, &[("x-backend-delay-ms", "3000")]).await;
    assert_eq!(slow.status, 504, "{slow:?}");
    assert_eq!(slow.body, "upstream request timeout");
    assert!(
        slow.elapsed >= Duration::from_millis(500) && slow.elapsed < Duration::from_millis(1500),
        "answered after {:?}, expected 0.5 s",
        slow.elapsed
    );
}

#[tokio::test]
async fn a_fault_delays_half_the_requests() {
    let mesh = Mesh::start(&["fault-delay.yaml"]).await;
    let delay = Duration::from_millis(500);
    // Every request in flight at once, so the sample takes one delay, not hundreds.
    let n = 200;
    let responses = mesh.send(REVIEWS, &[], n, n).await;
    assert!(responses.iter().all(|r| r.status == 200), "{responses:?}");
    // A request on loopback takes milliseconds: only the injected delay reaches 0.5 s.
    let delayed = responses.iter().filter(|r| r.elapsed >= delay).count();
    assert_binomial("delayed requests", delayed, n, 0.5);
}

#[tokio::test]
async fn a_fault_aborts_half_the_requests() {
    let mesh = Mesh::start(&["fault-abort.yaml"]).await;
    let responses = mesh.send(REVIEWS, &[], SAMPLE, CONNECTIONS).await;
    let aborted: Vec<&Response> = responses.iter().filter(|r| r.status == 500).collect();
    for response in &aborted {
        assert_eq!(response.body, "fault filter abort", "{response:?}");
        assert_eq!(response.instance(), None, "{response:?}");
    }
    let answered = answered_by(&responses, "reviews-v1");
    assert_eq!(
        aborted.len() + answered,
        SAMPLE,
        "every request is either aborted or answered"
    );
    // Aborted requests never reach reviews.
    assert_eq!(mesh.backend("reviews-v1").count(), answered);
    assert_binomial("aborted requests", aborted.len(), SAMPLE, 0.5);
}

#[tokio::test]
async fn a_mirror_gets_a_copy_and_its_failures_stay_invisible() {
    let mesh = Mesh::start(&["mirror.yaml"]).await;
    let v2 = mesh.backend("reviews-v2");
    // v2 first hangs on every copy, then fails them: callers see v1 either way, as
    // fast as v1 answers.
    v2.set(Mode::Hold);
    let n = 50;
    let held = tokio::time::timeout(WAIT, mesh.send(REVIEWS, &[], n, 1))
        .await
        .expect("callers are answered while the mirror hangs");
    v2.wait_for_requests(n).await;
    v2.set(Mode::Fail(500));
    let failed = mesh.send(REVIEWS, &[], n, 1).await;
    for response in held.iter().chain(&failed) {
        assert_eq!(response.status, 200, "{response:?}");
        assert_eq!(response.instance(), Some("reviews-v1"), "{response:?}");
    }
    v2.wait_for_requests(2 * n).await;
    assert_eq!(mesh.backend("reviews-v1").count(), 2 * n);
    // Envoy marks a copy by suffixing the host with `-shadow`.
    for seen in v2.seen() {
        let host = seen.header("host").unwrap_or_default();
        let name = host.split(':').next().unwrap_or_default();
        assert!(name.ends_with("-shadow"), "mirrored with host {host:?}");
    }
}

#[tokio::test]
async fn retries_hide_a_backend_failing_half_the_time() {
    let mesh = Mesh::start(&["route-all-v1.yaml"]).await;
    let v1 = mesh.backend("reviews-v1");
    // Every other request fails: one retry always lands on a success, whereas
    // independent failures at 50% would leave 1/16 failing after 3 retries.
    v1.set(Mode::Flaky(500));
    let n = 100;
    let without = mesh.send(REVIEWS, &[], n, 1).await;
    let failed = without.iter().filter(|r| r.status == 500).count();
    assert_eq!(failed, n / 2, "without retries half the requests fail");

    mesh.apply("retries.yaml").await;
    v1.set(Mode::Flaky(500));
    let with = mesh.send(REVIEWS, &[], n, 1).await;
    let ok = with.iter().filter(|r| r.status == 200).count();
    assert!(ok * 100 >= n * 99, "with 3 attempts {ok} of {n} succeed");
    // The failures were retried, not avoided: each success took a second try.
    assert!(v1.count() >= n + 2 * ok, "{} attempts", v1.count() - n);
}

#[tokio::test]
async fn a_circuit_breaker_trips_beyond_the_configured_concurrency() {
    let mesh = Mesh::start(&["circuit-breaker.yaml"]).await;
    let v1 = mesh.backend("reviews-v1").clone();
    v1.set(Mode::Hold);
    // One request on the one connection allowed…
    let mut first = mesh.client();
    let first = tokio::spawn(async move { first.get(REVIEWS, &[]).await });
    v1.wait_for_requests(1).await;
    // …then five more at once: one may wait for the connection, four overflow.
    let (done_tx, mut done) = tokio::sync::mpsc::unbounded_channel();
    for _ in 0..5 {
        let mut client = mesh.client();
        let done_tx = done_tx.clone();
        tokio::spawn(async move {
            let _ = done_tx.send(client.get(REVIEWS, &[]).await);
        });
    }
    let mut overflowed = Vec::new();
    for _ in 0..4 {
        let response = tokio::time::timeout(WAIT, done.recv())
            .await
            .expect("overflowing requests are answered while reviews holds the others")
            .unwrap();
        overflowed.push(response);
    }
    for response in &overflowed {
        assert_eq!(response.status, 503, "{response:?}");
        assert_eq!(
            response.header("x-envoy-overloaded"),
            Some("true"),
            "{response:?}"
        );
    }
    assert_eq!(v1.count(), 1, "the waiting request is not sent yet");

    v1.set(Mode::Answer);
    let first = tokio::time::timeout(WAIT, first).await.unwrap().unwrap();
    assert_eq!(first.status, 200, "{first:?}");
    let pending = tokio::time::timeout(WAIT, done.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        pending.status, 200,
        "the waiting request goes once the connection is free: {pending:?}"
    );
    assert_eq!(v1.count(), 2);
    assert_eq!(v1.max_in_flight(), 1);
}

#[tokio::test]
async fn outlier_detection_ejects_a_failing_endpoint_and_brings_it_back() {
    let mesh = Mesh::start(&["outlier-detection.yaml"]).await;
    let v1 = mesh.backend("reviews-v1");
    v1.set(Mode::Fail(500));
    let mut client = mesh.client();
    // Round robin over three endpoints: v1's third 5xx in a row comes within 9
    // requests and ejects it; nothing reaches it after that.
    let mut failures = 0;
    let mut ejected_at = None;
    for _ in 0..30 {
        if client.get(REVIEWS, &[]).await.status == 500 {
            failures += 1;
            if failures == 3 {
                ejected_at = Some(Instant::now());
            }
        }
    }
    let ejected_at = ejected_at.expect("v1 failed three times in a row");
    assert_eq!(failures, 3, "an ejected endpoint gets no requests");
    assert_eq!(v1.count(), 3);

    // Healed, it is back after its ejection time (1 s), at the next check (every
    // 100 ms). Each probe takes 10 ms at reviews, which paces the loop.
    v1.set(Mode::Answer);
    let back = tokio::time::timeout(WAIT, async {
        loop {
            let response = client.get(REVIEWS, &[("x-backend-delay-ms", "10")]).await;
            assert_eq!(response.status, 200, "{response:?}");
            if response.instance() == Some("reviews-v1") {
                return ejected_at.elapsed();
            }
        }
    })
    .await
    .expect("the ejected endpoint comes back");
    assert!(
        back >= Duration::from_millis(900) && back < Duration::from_millis(2100),
        "back after {back:?}, expected 1 s to 1.1 s"
    );
}
