//! The admin API in Envoy's shapes: readiness, statistics (text and Prometheus), the
//! config dump, clusters, listeners, and `/quitquitquit`.

mod common;

use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::Full;
use hyper::Request;

async fn admin_get(proxy: &mizzen_proxy::Proxy, path: &str) -> Got {
    send(proxy.admin_addr().unwrap(), get("admin", path)).await
}

#[tokio::test]
async fn admin_reports_config_and_counts_requests() {
    let v1 = backend("v1").await;
    let yaml = http_bootstrap(&all_to("v1"), &cluster("v1", &[v1])) + ADMIN;
    let proxy = proxy(&yaml).await;
    let addr = proxy.listener_addr("http").await;
    for _ in 0..3 {
        assert_eq!(send(addr, get("x", "/")).await.status, 200);
    }

    let ready = admin_get(&proxy, "/ready").await;
    assert_eq!((ready.status, ready.body.as_str()), (200, "LIVE\n"));

    let stats = admin_get(&proxy, "/stats").await.body;
    assert!(stats.contains("cluster.v1.upstream_rq_2xx: 3\n"), "{stats}");
    assert!(
        stats.contains("cluster.v1.upstream_rq_total: 3\n"),
        "{stats}"
    );
    assert!(
        stats.contains("http.ingress.downstream_rq_2xx: 3\n"),
        "{stats}"
    );
    assert!(stats.contains("cluster.v1.upstream_cx_total: "), "{stats}");

    let prom = admin_get(&proxy, "/stats/prometheus").await.body;
    assert!(
        prom.contains("envoy_cluster_upstream_rq_xx{envoy_response_code_class=\"2\",envoy_cluster_name=\"v1\"} 3\n"),
        "{prom}"
    );
    assert!(
        prom.contains("# TYPE envoy_http_downstream_rq_total counter\n"),
        "{prom}"
    );

    let dump: serde_json::Value =
        serde_json::from_str(&admin_get(&proxy, "/config_dump").await.body).unwrap();
    let types: Vec<&str> = dump["configs"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["@type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump",
            "type.googleapis.com/envoy.admin.v3.ClustersConfigDump",
            "type.googleapis.com/envoy.admin.v3.ListenersConfigDump",
            "type.googleapis.com/envoy.admin.v3.RoutesConfigDump",
            "type.googleapis.com/envoy.admin.v3.SecretsConfigDump",
        ]
    );
    let listener = &dump["configs"][2]["static_listeners"][0]["listener"];
    assert_eq!(listener["name"], "http");
    assert_eq!(
        listener["@type"],
        "type.googleapis.com/envoy.config.listener.v3.Listener"
    );
    assert_eq!(
        dump["configs"][1]["static_clusters"][0]["cluster"]["name"],
        "v1"
    );

    let with_eds: serde_json::Value =
        serde_json::from_str(&admin_get(&proxy, "/config_dump?include_eds").await.body).unwrap();
    let eds = with_eds["configs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["@type"] == "type.googleapis.com/envoy.admin.v3.EndpointsConfigDump")
        .expect("an EDS section");
    assert_eq!(
        eds["static_endpoint_configs"][0]["endpoint_config"]["cluster_name"],
        "v1"
    );

    let clusters = admin_get(&proxy, "/clusters").await.body;
    assert!(
        clusters.contains(&format!("v1::{v1}::health_flags::healthy\n")),
        "{clusters}"
    );
    let listeners = admin_get(&proxy, "/listeners").await.body;
    assert_eq!(listeners, format!("http::{addr}\n"));

    let quit = Request::post("/quitquitquit")
        .header("host", "admin")
        .body(Full::new(Bytes::new()))
        .unwrap();
    assert_eq!(send(proxy.admin_addr().unwrap(), quit).await.status, 200);
    tokio::time::timeout(Duration::from_secs(10), proxy.stopped())
        .await
        .expect("quitquitquit stops the proxy");
}
