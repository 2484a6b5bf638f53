//! The dashboard's backend on fixture metrics: two scrapes of Bookinfo's proxies ten
//! seconds apart (`testdata/`, Istio's names, labels and buckets), read by the scraper
//! and through a fake Prometheus server, must give the same graph, exactly.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant, SystemTime};

use arc_swap::ArcSwap;
use axum::extract::{Query, State};
use mizzen_api::analyze::{Finding, Level};
use mizzen_api::load::Loader;
use mizzen_xds::StatusRegistry;
use serde_json::{Value, json};
use tokio::sync::Notify;

use super::*;
use crate::model::{MeshConfig, PushContext};
use crate::store::Snapshot;

const AT_0S: &str = include_str!("testdata/bookinfo-0s.prom");
const AT_10S: &str = include_str!("testdata/bookinfo-10s.prom");

const CONFIG: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: productpage, namespace: default}
spec: {selector: {app: productpage}, ports: [{name: http, port: 9080}]}
---
apiVersion: v1
kind: Service
metadata: {name: details, namespace: default}
spec: {selector: {app: details}, ports: [{name: http, port: 9080}]}
---
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec: {selector: {app: reviews}, ports: [{name: http, port: 9080}]}
---
apiVersion: v1
kind: Service
metadata: {name: ratings, namespace: default}
spec: {selector: {app: ratings}, ports: [{name: http, port: 9080}]}
---
apiVersion: v1
kind: Service
metadata: {name: httpbin, namespace: default}
spec: {selector: {app: httpbin}, ports: [{name: http, port: 8000}]}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
      weight: 90
    - destination: {host: reviews, subset: v2}
      weight: 10
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews.default.svc.cluster.local
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings, namespace: default}
spec: {host: ratings}
"#;

fn push_context() -> PushContext {
    let loaded = Loader::new().load_str(CONFIG, None);
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    let objects = loaded
        .objects
        .into_iter()
        .map(|l| (l.object.key(), Arc::new(l.object)))
        .collect::<BTreeMap<_, _>>();
    PushContext::new(
        Arc::new(Snapshot::new(1, objects)),
        Arc::new(MeshConfig::default()),
    )
}

/// The rates of the fixture's two scrapes, read as the scraper reads them.
fn scraped_rates() -> Vec<SeriesRate> {
    let mut scraper = Scraper::new(
        Arc::new(StaticTargets::default()),
        Duration::from_secs(60),
        Duration::from_secs(1),
    );
    let start = Instant::now();
    let endpoint = "http://127.0.10.1:15000/stats/prometheus";
    assert_eq!(scraper.record(endpoint, start, AT_0S).unwrap(), 110);
    let later = start + Duration::from_secs(10);
    scraper.record(endpoint, later, AT_10S).unwrap();
    scraper.rates(later)
}

fn expected_graph() -> Value {
    let workload = |ns: &str, name: &str, app: &str, version: &str| {
        json!({"id": format!("workload:{ns}/{name}"), "kind": "workload", "namespace": ns,
               "name": name, "app": app, "version": version, "idle": false})
    };
    let service = |name: &str, idle: bool| {
        json!({"id": format!("service:{name}.default.svc.cluster.local"), "kind": "service",
               "namespace": "default", "name": name,
               "host": format!("{name}.default.svc.cluster.local"), "idle": idle})
    };
    let svc = |name: &str| format!("service:{name}.default.svc.cluster.local");
    let wl = |name: &str| format!("workload:default/{name}");
    let edge = |source: String,
                target: String,
                rps: f64,
                error_pct: f64,
                p: Option<(f64, f64)>,
                mtls: bool| {
        let mut edge = json!({"source": source, "target": target, "protocol": "http",
                              "rps": rps, "error_pct": error_pct, "mtls": mtls});
        if let Some((p50, p99)) = p {
            edge["p50_ms"] = json!(p50);
            edge["p99_ms"] = json!(p99);
        }
        edge
    };
    json!({
        "nodes": [
            service("details", false),
            service("httpbin", true),
            service("productpage", false),
            service("ratings", false),
            service("reviews", false),
            workload("default", "details-v1", "details", "v1"),
            workload("default", "productpage-v1", "productpage", "v1"),
            workload("default", "ratings-v1", "ratings", "v1"),
            workload("default", "reviews-v1", "reviews", "v1"),
            workload("default", "reviews-v2", "reviews", "v2"),
            workload("istio-system", "istio-ingressgateway", "istio-ingressgateway", "latest"),
        ],
        "edges": [
            // 90 of the 100 answered, in 0.5-5 ms.
            edge(svc("details"), wl("details-v1"), 9.0, 0.0, Some((1.0, 4.92)), true),
            // Only the product page's proxy reported the ingress's calls.
            edge(svc("productpage"), wl("productpage-v1"), 10.0, 0.0, Some((25.0, 49.5)), true),
            edge(svc("ratings"), wl("ratings-v1"), 1.0, 0.0, None, true),
            // The split: 9 and 1 request/s; v2 took plaintext.
            edge(svc("reviews"), wl("reviews-v1"), 9.0, 0.0, Some((8.75, 77.5)), true),
            edge(svc("reviews"), wl("reviews-v2"), 1.0, 0.0, Some((8.75, 47.5)), false),
            // 10 requests/s, 1 of them a 503 (UF) that never reached details.
            edge(wl("productpage-v1"), svc("details"), 10.0, 10.0, Some((0.944, 4.911)), true),
            edge(wl("productpage-v1"), svc("reviews"), 10.0, 0.0, Some((8.75, 75.0)), false),
            edge(wl("reviews-v2"), svc("ratings"), 1.0, 0.0, None, true),
            edge("workload:istio-system/istio-ingressgateway".into(), svc("productpage"), 10.0, 0.0, Some((25.0, 49.5)), true),
        ],
    })
}

#[test]
fn scraped_fixture_metrics_give_rates_errors_latency_and_mtls_per_edge() {
    let traffic = Traffic::from_rates(&scraped_rates());
    let graph = Graph::build(&traffic, &push_context().registry);
    assert_eq!(serde_json::to_value(&graph).unwrap(), expected_graph());
}

#[test]
fn a_service_page_charts_its_traffic_and_lists_the_config_that_applies() {
    let traffic = Arc::new(Traffic::from_rates(&scraped_rates()));
    let mut history = History::new(2);
    for at in [1_000, 6_000, 11_000] {
        history.push(Tick {
            at: SystemTime::UNIX_EPOCH + Duration::from_millis(at),
            traffic: traffic.clone(),
        });
    }
    let push = push_context();
    let finding = |code: &str, origin: &str| Finding {
        code: code.into(),
        documentation_url: String::new(),
        level: Level::Error,
        message: format!("about {origin}"),
        origin: Some(origin.into()),
        reference: None,
    };
    let findings = Findings {
        revision: 1,
        messages: vec![
            finding("IST0101", "VirtualService default/reviews"),
            finding("IST0101", "DestinationRule default/ratings"),
            finding("IST0173", "DestinationRule default/reviews"),
            finding("IST0118", "Service default/reviews"),
        ],
    };
    let page = ServicePage::build(&push, &history, &findings, "default", "reviews").unwrap();
    let page = serde_json::to_value(&page).unwrap();
    assert_eq!(page["host"], "reviews.default.svc.cluster.local");
    let workloads: Vec<&str> = page["workloads"]
        .as_array()
        .unwrap()
        .iter()
        .map(|w| w["name"].as_str().unwrap())
        .collect();
    assert_eq!(workloads, ["reviews-v1", "reviews-v2"]);
    // Two ticks kept; in: the product page's 10 requests/s; out: reviews-v2's calls to
    // ratings.
    assert_eq!(
        page["inbound"],
        json!([
            {"t": 6000, "rps": 10.0, "error_pct": 0.0, "p50_ms": 8.75, "p99_ms": 75.0},
            {"t": 11000, "rps": 10.0, "error_pct": 0.0, "p50_ms": 8.75, "p99_ms": 75.0},
        ])
    );
    assert_eq!(
        page["outbound"][1],
        json!({"t": 11000, "rps": 1.0, "error_pct": 0.0, "p50_ms": null, "p99_ms": null})
    );
    let names = |list: &Value| -> Vec<String> {
        list.as_array()
            .unwrap()
            .iter()
            .map(|o| {
                format!(
                    "{} {}",
                    o["kind"].as_str().unwrap(),
                    o["metadata"]["name"].as_str().unwrap()
                )
            })
            .collect()
    };
    assert_eq!(names(&page["virtual_services"]), ["VirtualService reviews"]);
    assert_eq!(
        names(&page["destination_rules"]),
        ["DestinationRule reviews"]
    );
    // The findings about reviews, its VirtualService and DestinationRule; not ratings'.
    let origins: Vec<&str> = page["findings"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["origin"].as_str().unwrap())
        .collect();
    assert_eq!(
        origins,
        [
            "VirtualService default/reviews",
            "DestinationRule default/reviews",
            "Service default/reviews"
        ]
    );
    assert_eq!(page["findings"][0]["code"], "IST0101");
    assert!(ServicePage::build(&push, &history, &findings, "default", "nope").is_none());
}

/// A fake Prometheus: answers each `/api/v1/query` with the rates of the metric the
/// query names, and counts the queries.
#[derive(Clone)]
struct FakePrometheus {
    rates: Arc<Vec<SeriesRate>>,
    queries: Arc<AtomicUsize>,
    asked: Arc<Notify>,
}

async fn query(
    State(fake): State<FakePrometheus>,
    Query(params): Query<BTreeMap<String, String>>,
) -> axum::Json<Value> {
    let query = &params["query"];
    let metric = query
        .split("(rate(")
        .nth(1)
        .and_then(|rest| rest.split('[').next())
        .unwrap_or_default();
    let result: Vec<Value> = fake
        .rates
        .iter()
        .filter(|r| r.name == metric)
        .map(|r| {
            let labels: serde_json::Map<String, Value> = r
                .labels
                .iter()
                .map(|(k, v)| (k.clone(), json!(v)))
                .collect();
            json!({"metric": labels, "value": [1700000000.0, r.rate.to_string()]})
        })
        .collect();
    fake.queries.fetch_add(1, Ordering::SeqCst);
    fake.asked.notify_one();
    axum::Json(json!({"status": "success", "data": {"resultType": "vector", "result": result}}))
}

#[tokio::test]
async fn prometheus_mode_serves_the_same_graph_from_the_query_api() {
    let fake = FakePrometheus {
        rates: Arc::new(scraped_rates()),
        queries: Arc::default(),
        asked: Arc::default(),
    };
    let prometheus = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let prometheus_url = format!("http://{}", prometheus.local_addr().unwrap());
    let app = axum::Router::new()
        .route("/api/v1/query", axum::routing::get(query))
        .with_state(fake.clone());
    tokio::spawn(async move { axum::serve(prometheus, app).await });

    let options = DashboardOptions {
        metrics: MetricsSource::Prometheus(prometheus_url.parse().unwrap()),
        interval: Duration::from_millis(50),
        ..DashboardOptions::default()
    };
    let current = Arc::new(ArcSwap::from_pointee(Current::new(
        push_context(),
        "1".to_owned(),
    )));
    let findings = watch::channel(Arc::new(Findings {
        revision: 1,
        messages: Vec::new(),
    }))
    .1;
    let dashboard = Dashboard::new(
        options,
        current,
        StatusRegistry::default(),
        "pilot".into(),
        findings,
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(dashboard.serve(listener, std::future::pending()));

    // Collections run one after another: the first query of the second has been asked
    // only once the first collection is published.
    while fake.queries.load(Ordering::SeqCst) <= METRICS_READ {
        fake.asked.notified().await;
    }
    let get = |path: &str| {
        let uri = format!("{base}{path}").parse().unwrap();
        async move { fetch::get(&uri, Duration::from_secs(10)).await }
    };
    let mut graph: Value = serde_json::from_str(&get("/api/graph").await.unwrap()).unwrap();
    assert_eq!(graph["source"], "prometheus");
    assert_eq!(graph["problems"], json!([]));
    assert_eq!(graph["interval_ms"], 50);
    assert!(graph["at"].as_u64().unwrap() > 0);
    for field in ["source", "problems", "interval_ms", "window_secs", "at"] {
        graph.as_object_mut().unwrap().remove(field);
    }
    assert_eq!(graph, expected_graph());

    let page: Value =
        serde_json::from_str(&get("/api/services/default/reviews").await.unwrap()).unwrap();
    assert_eq!(
        page["inbound"].as_array().unwrap().last().unwrap()["rps"],
        10.0
    );
    let missing = get("/api/services/default/nope").await.unwrap_err();
    assert!(missing.reason.starts_with("404"), "{missing}");
    assert_eq!(get("/api/proxies").await.unwrap(), "[]");
    let index = get("/").await.unwrap();
    assert!(index.contains("<title>Mizzen"), "{index}");
    assert!(get("/app.js").await.unwrap().contains("/api/graph"));
}

/// How many queries one Prometheus collection makes.
const METRICS_READ: usize = prometheus::METRICS.len();

#[test]
fn each_connected_proxy_is_scraped_on_its_own_address() {
    let connected = |id: &str| mizzen_xds::ProxyStatus {
        connection_id: 1,
        node_id: id.to_owned(),
        node: mizzen_xds::pb::envoy::config::core::v3::Node {
            id: id.to_owned(),
            ..Default::default()
        },
        protocol: mizzen_xds::Protocol::StateOfTheWorld,
        connected_at: SystemTime::UNIX_EPOCH,
        types: BTreeMap::new(),
    };
    let sidecar = "sidecar~127.0.1.4~reviews-v1-1.default~default.svc.cluster.local";
    let targets = ProxyMetrics {
        port: 15020,
        path: "/stats/prometheus".to_owned(),
    }
    .targets(&[connected(sidecar), connected("not an istio node id")]);
    assert_eq!(
        targets,
        [ScrapeTarget {
            proxy: sidecar.to_owned(),
            uri: "http://127.0.1.4:15020/stats/prometheus".parse().unwrap(),
        }]
    );
}
