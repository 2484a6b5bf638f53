//! Outlier detection with real traffic: an endpoint that keeps failing is ejected (all
//! traffic goes to the others, `/clusters` flags it `/failed_outlier_check`), and comes
//! back once its ejection time is over.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

/// An HTTP/1.1 backend that answers every request with 500.
async fn failing() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service = service_fn(|_: Request<Incoming>| async {
                let mut response = Response::new(Full::new(Bytes::from_static(b"broken")));
                *response.status_mut() = StatusCode::INTERNAL_SERVER_ERROR;
                Ok::<_, Infallible>(response)
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    addr
}

/// The test cluster's `base_ejection_time`.
const BASE_EJECTION_TIME: Duration = Duration::from_secs(1);

/// The `health_flags` `/clusters` shows for `host` in cluster `b`.
async fn health_flags(proxy: &mizzen_proxy::Proxy, host: SocketAddr) -> String {
    let clusters = send(proxy.admin_addr().unwrap(), get("admin", "/clusters"))
        .await
        .body;
    let prefix = format!("b::{host}::health_flags::");
    clusters
        .lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .unwrap_or_else(|| panic!("{prefix} in:\n{clusters}"))
        .to_owned()
}

#[tokio::test]
async fn a_failing_endpoint_is_ejected_then_comes_back() {
    let good = backend("good").await;
    let bad = failing().await;
    let vhosts = &all_to("b");
    let cluster = cluster("b", &[good, bad])
        + "  outlier_detection: {consecutive_5xx: 3, interval: 0.05s, base_ejection_time: 1s, max_ejection_percent: 50}\n";
    let proxy = proxy(&(http_bootstrap(vhosts, &cluster) + ADMIN)).await;
    let addr = proxy.listener_addr("http").await;
    assert_eq!(health_flags(&proxy, bad).await, "healthy");

    // Round robin: the bad endpoint answers every other request, until its third 500.
    let mut failures = 0;
    for _ in 0..20 {
        if send(addr, get("x", "/")).await.status == 500 {
            failures += 1;
            if failures == 3 {
                break;
            }
        }
    }
    assert_eq!(failures, 3);
    let ejected = tokio::time::Instant::now();
    assert_eq!(health_flags(&proxy, bad).await, "/failed_outlier_check");
    assert_eq!(health_flags(&proxy, good).await, "healthy");
    let stats = proxy.store().stats().cluster("b");
    let od = &stats.outlier_detection;
    assert_eq!(od.ejections_enforced_total.get(), 1);
    assert_eq!(od.ejections_enforced_consecutive_5xx.get(), 1);
    assert_eq!(od.ejections_active.get(), 1);

    // Ejected: everything goes to the good endpoint.
    for _ in 0..10 {
        let got = send(addr, get("x", "/")).await;
        assert_eq!(got.status, 200);
        assert_eq!(got.headers["x-backend"], "good");
    }

    // Back once the base ejection time (1 s) has passed: the sweep that runs when
    // /clusters is read returns it (sweeps run at most every `interval`, 50 ms).
    tokio::time::sleep_until(ejected + BASE_EJECTION_TIME).await;
    tokio::time::timeout(Duration::from_secs(10), async {
        while health_flags(&proxy, bad).await != "healthy" {
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("the endpoint comes back");
    assert_eq!(od.ejections_active.get(), 0);
    let mut statuses = Vec::new();
    for _ in 0..2 {
        statuses.push(send(addr, get("x", "/")).await.status);
    }
    statuses.sort();
    assert_eq!(statuses, [200, 500], "round robin over both again");

    let text = send(proxy.admin_addr().unwrap(), get("admin", "/stats"))
        .await
        .body;
    assert!(
        text.contains("cluster.b.outlier_detection.ejections_enforced_total: 1\n"),
        "{text}"
    );
}
