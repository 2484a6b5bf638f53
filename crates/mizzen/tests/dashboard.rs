//! The dashboard in a real browser (Debian's headless Chromium, driven over the DevTools
//! protocol on a pipe): first on fixture metrics, so the UI is proven whatever the
//! proxies serve; then on the Bookinfo mesh `mizzen up` runs, under load, with Istio's
//! 90/10 rule applied and the reviews edges following it.
//!
//! Tests wait on what the page renders (each refresh fires `mizzen:rendered`), never
//! on sleeps. Screenshots go under target/tmp; their paths are printed.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::up::{ONE_MESH, Up, WAIT, bookinfo_config, try_http_get};

use mizzen_pilot::dashboard::{
    DashboardOptions, MetricsSource, ProxyMetrics, ScrapeTarget, StaticTargets,
};
use mizzen_pilot::server::{Pilot, PilotOptions};
use mizzen_pilot::store::DirStore;
use serde_json::{Value, json};

#[path = "dashboard/browser.rs"]
mod browser;
use browser::Browser;

/// The fixture: Bookinfo's proxies scraped ten seconds apart (Istio's metric names,
/// labels and buckets), as pilot's backend test reads them.
const AT_0S: &str = include_str!("../../pilot/src/dashboard/testdata/bookinfo-0s.prom");
const AT_10S: &str = include_str!("../../pilot/src/dashboard/testdata/bookinfo-10s.prom");

/// Serves the fixture's counters growing at its rates in real time, so that any two
/// scrapes give the fixture's rates.
fn serve_fixture_metrics() -> SocketAddr {
    let before = mizzen_pilot::dashboard::parse(AT_0S).unwrap();
    let after = mizzen_pilot::dashboard::parse(AT_10S).unwrap();
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let start = Instant::now();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let mut request = [0u8; 1024];
            let _ = stream.read(&mut request);
            let elapsed = start.elapsed().as_secs_f64();
            let mut body = String::new();
            for (a, b) in before.iter().zip(&after) {
                let labels: Vec<String> = a
                    .labels
                    .iter()
                    .map(|(k, v)| format!("{k}=\"{v}\""))
                    .collect();
                let value = a.value + (b.value - a.value) * elapsed / 10.0;
                body.push_str(&format!("{}{{{}}} {value}\n", a.name, labels.join(",")));
            }
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: text/plain; version=0.0.4\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    addr
}

/// What the graph shows: nodes by id, and each edge's numbers.
#[derive(Debug)]
struct Shown {
    nodes: Vec<String>,
    edges: Vec<ShownEdge>,
    window_secs: f64,
}

#[derive(Debug, Clone)]
struct ShownEdge {
    source: String,
    target: String,
    rps: f64,
    error_pct: f64,
    mtls: bool,
    red: bool,
    lock: bool,
    label: String,
}

impl Shown {
    fn edge(&self, source: &str, target: &str) -> Option<&ShownEdge> {
        self.edges
            .iter()
            .find(|e| e.source == source && e.target == target)
    }

    fn from_json(value: &Value) -> Shown {
        Shown {
            nodes: value["nodes"]
                .as_array()
                .unwrap()
                .iter()
                .map(|n| n.as_str().unwrap().to_owned())
                .collect(),
            edges: value["edges"]
                .as_array()
                .unwrap()
                .iter()
                .map(|e| ShownEdge {
                    source: e["source"].as_str().unwrap().to_owned(),
                    target: e["target"].as_str().unwrap().to_owned(),
                    rps: e["rps"].as_f64().unwrap(),
                    error_pct: e["error_pct"].as_f64().unwrap(),
                    mtls: e["mtls"].as_bool().unwrap(),
                    red: e["red"].as_bool().unwrap(),
                    lock: e["lock"].as_bool().unwrap(),
                    label: e["label"].as_str().unwrap().to_owned(),
                })
                .collect(),
            window_secs: value["window_secs"].as_f64().unwrap_or_default(),
        }
    }
}

/// JavaScript reading the rendered graph (what a user sees) into JSON.
const READ_GRAPH: &str = r#"() => {
  const svg = document.querySelector('#graph');
  if (!svg) return null;
  return {
    window_secs: +svg.dataset.windowSecs,
    nodes: [...svg.querySelectorAll('.node')].map(n => n.dataset.id),
    edges: [...svg.querySelectorAll('.edge')].map(e => ({
      source: e.dataset.source, target: e.dataset.target,
      rps: +e.dataset.rps, error_pct: +e.dataset.errorPct, mtls: e.dataset.mtls === 'true',
      red: e.classList.contains('error'), lock: !!e.querySelector('.lock'),
      label: e.querySelector('.edge-label').textContent,
    })),
  };
}"#;

/// Waits until the graph shows what `done` accepts, and returns it.
fn graph_until(browser: &Browser, wait: Duration, done: impl Fn(&Shown) -> bool) -> Shown {
    let deadline = Instant::now() + wait;
    let mut last = None;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let value = browser
            .next_render(READ_GRAPH, left)
            .unwrap_or_else(|page| {
                panic!("the graph never showed what was awaited: {page}; last drawn: {last:#?}")
            });
        let shown = Shown::from_json(&value);
        if done(&shown) {
            return shown;
        }
        last = Some(shown);
    }
}

fn screenshot(browser: &Browser, name: &str) {
    let path = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("{name}.png"));
    std::fs::write(&path, browser.screenshot()).unwrap();
    println!("screenshot: {}", path.display());
}

fn close(a: f64, b: f64, relative: f64) -> bool {
    (a - b).abs() <= relative * b.abs()
}

#[test]
fn the_dashboard_draws_fixture_traffic_in_a_browser() {
    let metrics = serve_fixture_metrics();
    let config = bookinfo_config();
    let runtime = tokio::runtime::Runtime::new().unwrap();
    let dashboard = runtime.block_on(async {
        let options = PilotOptions {
            dashboard_addr: Some("127.0.0.1:0".parse().unwrap()),
            dashboard: DashboardOptions {
                metrics: MetricsSource::Scrape(Arc::new(StaticTargets(vec![ScrapeTarget {
                    proxy: "fixture".into(),
                    uri: format!("http://{metrics}/stats/prometheus")
                        .parse()
                        .unwrap(),
                }]))),
                interval: Duration::from_millis(300),
                ..DashboardOptions::default()
            },
            ..PilotOptions::ephemeral()
        };
        let store = Arc::new(DirStore::open(config.path()).unwrap());
        let pilot = Pilot::bind(store, options).await.unwrap();
        let dashboard = pilot.dashboard_addr().unwrap();
        tokio::spawn(pilot.run(std::future::pending()));
        dashboard
    });

    let svc = |name: &str| format!("service:{name}.default.svc.cluster.local");
    let wl = |name: &str| format!("workload:default/{name}");
    // Each edge: its rate, errors in red, a lock where the destination saw mutual TLS.
    let expect = [
        (
            "workload:istio-system/istio-ingressgateway".to_owned(),
            svc("productpage"),
            10.0,
            false,
            true,
        ),
        (svc("productpage"), wl("productpage-v1"), 10.0, false, true),
        (wl("productpage-v1"), svc("details"), 10.0, true, true),
        (svc("details"), wl("details-v1"), 9.0, false, true),
        (wl("productpage-v1"), svc("reviews"), 10.0, false, false),
        (svc("reviews"), wl("reviews-v1"), 9.0, false, true),
        (svc("reviews"), wl("reviews-v2"), 1.0, false, false),
        (wl("reviews-v2"), svc("ratings"), 1.0, false, true),
        (svc("ratings"), wl("ratings-v1"), 1.0, false, true),
    ];
    let browser = Browser::launch();
    browser.open(&format!("http://{dashboard}/#/graph"));
    // Rates settle as the window fills: the fixture grows in real time between
    // scrapes, so they are compared within 2 %.
    let shown = graph_until(&browser, WAIT, |g| {
        g.edges.len() == expect.len()
            && expect
                .iter()
                .all(|(s, t, rps, ..)| g.edge(s, t).is_some_and(|e| close(e.rps, *rps, 0.02)))
    });
    screenshot(&browser, "dashboard-fixture-graph");

    let mut nodes = shown.nodes.clone();
    nodes.sort();
    let mut expected_nodes = vec![
        svc("details"),
        svc("productpage"),
        svc("ratings"),
        svc("reviews"),
        wl("details-v1"),
        wl("productpage-v1"),
        wl("ratings-v1"),
        wl("reviews-v1"),
        wl("reviews-v2"),
        "workload:istio-system/istio-ingressgateway".to_owned(),
    ];
    expected_nodes.sort();
    assert_eq!(nodes, expected_nodes);

    for (source, target, _, red, lock) in &expect {
        let edge = shown.edge(source, target).unwrap();
        assert_eq!(
            (edge.red, edge.lock, edge.mtls),
            (*red, *lock, *lock),
            "{edge:?}"
        );
        assert!(edge.label.contains(" rps · "), "{edge:?}");
    }
    let details = shown.edge(&wl("productpage-v1"), &svc("details")).unwrap();
    assert!(close(details.error_pct, 10.0, 0.02), "{details:?}");
    assert!(details.label.ends_with("10.0%"), "{details:?}");

    // A service's page: charts of its traffic and the config that applies.
    browser.go("#/services/default/reviews");
    let page = browser
        .next_render(
            r#"() => {
              const page = document.querySelector('#service');
              if (!page || page.querySelectorAll('polyline').length < 2) return null;
              return {
                heading: page.querySelector('h2').textContent,
                charts: page.querySelectorAll('figure.chart').length,
                config: [...page.querySelectorAll('details.config summary')].map(s => s.textContent),
                findings: page.querySelector('.findings') ? 'some' : 'none',
              };
            }"#,
            WAIT,
        )
        .unwrap();
    screenshot(&browser, "dashboard-fixture-service");
    assert!(
        page["heading"].as_str().unwrap().starts_with("reviews"),
        "{page}"
    );
    assert_eq!(page["charts"], 3);
    assert_eq!(page["config"], json!(["DestinationRule default/reviews"]));

    browser.go("#/proxies");
    let proxies = browser
        .next_render(
            "() => document.querySelector('#proxies') ? document.querySelectorAll('#proxies tbody tr').length : null",
            WAIT,
        )
        .unwrap();
    assert_eq!(proxies, 0, "no proxy connects to this pilot");
}

/// Product pages through the ingress, one after another, until dropped; counts the
/// pages served.
struct Load {
    stop: Arc<AtomicBool>,
    served: Arc<AtomicUsize>,
    first: mpsc::Receiver<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Load {
    fn start(ingress: SocketAddr) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let served = Arc::new(AtomicUsize::new(0));
        let (tx, first) = mpsc::channel();
        let thread = std::thread::spawn({
            let (stop, served) = (stop.clone(), served.clone());
            move || {
                while !stop.load(Ordering::Relaxed) {
                    // A failed page is not counted; the load goes on.
                    let ok = matches!(try_http_get(ingress, "/productpage"), Ok((200, _)));
                    if ok && served.fetch_add(1, Ordering::Relaxed) == 0 {
                        let _ = tx.send(());
                    }
                }
            }
        });
        Load {
            stop,
            served,
            first,
            thread: Some(thread),
        }
    }
}

impl Drop for Load {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[test]
fn bookinfo_under_load_shows_its_graph_and_follows_the_90_10_split() {
    let istio = mizzen_api::testdata::istio_data()
        .expect("Istio's samples ($MIZZEN_ISTIO_DATA or ../shared/istio)");
    let networking = istio.join("samples/bookinfo/networking");
    let _one = ONE_MESH.lock().unwrap_or_else(|e| e.into_inner());
    let mut up = Up::start_on(bookinfo_config(), None, "127.0.78.1");
    let dashboard = up
        .wait_for_line("Dashboard: ")
        .trim_start_matches("Dashboard: ")
        .to_owned();
    let ingress = up.ingress();
    assert_eq!(
        up.ctl_ok(&["dashboard"]).trim(),
        dashboard,
        "mizzen dashboard"
    );

    // The proxies page: every proxy of the mesh, its config synced.
    let browser = Browser::launch();
    browser.open(&format!("{dashboard}#/proxies"));
    let rows = browser
        .next_render(
            r#"() => {
              const rows = [...document.querySelectorAll('#proxies tbody tr')]
                .map(r => [...r.children].map(c => c.textContent));
              return rows.length === 7 && rows.every(r => r[8] !== '–') ? rows : null;
            }"#,
            WAIT,
        )
        .unwrap();
    screenshot(&browser, "dashboard-bookinfo-proxies");
    let mut names: Vec<&str> = Vec::new();
    for row in rows.as_array().unwrap() {
        let cells: Vec<&str> = row
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap())
            .collect();
        // Proxy, address, CDS, LDS, EDS, RDS, SDS, control plane, metrics.
        assert_eq!(cells[2..4], ["SYNCED", "SYNCED"], "{row}");
        names.push(cells[0]);
    }
    names.sort();
    assert_eq!(
        names,
        [
            "details-v1-1.default",
            "istio-ingressgateway-1.istio-system",
            "productpage-v1-1.default",
            "ratings-v1-1.default",
            "reviews-v1-1.default",
            "reviews-v2-1.default",
            "reviews-v3-1.default",
        ]
    );

    let load = Load::start(ingress);
    load.first
        .recv_timeout(WAIT)
        .expect("the product page is served through the ingress");

    // The graph needs Istio's standard metrics from the sidecars (issue 8, part 1).
    let ip = up.pod_ip("productpage-v1-1");
    let scraped = ProxyMetrics::default();
    let metrics_addr: SocketAddr = format!("{ip}:{}", scraped.port).parse().unwrap();
    let (status, text) = try_http_get(metrics_addr, &scraped.path).unwrap();
    assert_eq!(status, 200, "{text}");
    assert!(
        text.contains("istio_requests_total"),
        "the Istio standard metrics are missing: the productpage sidecar's http://{metrics_addr}{} \
         serves no istio_requests_total after {} product pages (issue 8 part 1, the proxy's \
         metrics, has not landed), so the dashboard cannot draw Bookinfo's edges",
        scraped.path,
        load.served.load(Ordering::Relaxed)
    );

    browser.go("#/graph");
    let svc = |name: &str| format!("service:{name}.default.svc.cluster.local");
    let wl = |name: &str| format!("workload:default/{name}");
    let calls = [
        (wl("productpage-v1"), svc("details")),
        (svc("details"), wl("details-v1")),
        (wl("productpage-v1"), svc("reviews")),
        (svc("reviews"), wl("reviews-v1")),
        (svc("reviews"), wl("reviews-v2")),
        (svc("reviews"), wl("reviews-v3")),
        (wl("reviews-v2"), svc("ratings")),
        (wl("reviews-v3"), svc("ratings")),
        (svc("ratings"), wl("ratings-v1")),
        (svc("productpage"), wl("productpage-v1")),
    ];
    let shown = graph_until(&browser, WAIT, |g| {
        calls
            .iter()
            .all(|(s, t)| g.edge(s, t).is_some_and(|e| e.rps > 0.0))
    });
    screenshot(&browser, "dashboard-bookinfo-graph");
    for (source, target) in &calls {
        let edge = shown.edge(source, target).unwrap();
        assert_eq!(edge.error_pct, 0.0, "{edge:?}");
        assert!(!edge.red, "{edge:?}");
    }

    // Istio's canary rule: once the window holds only traffic routed by it (reviews-v3
    // no longer served at all), v2 takes 10 % of reviews' requests (5σ binomial bound).
    for file in [
        "destination-rule-all.yaml",
        "virtual-service-reviews-90-10.yaml",
    ] {
        up.ctl_ok(&["apply", "-f", networking.join(file).to_str().unwrap()]);
    }
    let split = graph_until(&browser, Duration::from_secs(180), |g| {
        g.edge(&svc("reviews"), &wl("reviews-v3"))
            .is_none_or(|e| e.rps == 0.0)
            && g.edge(&svc("reviews"), &wl("reviews-v2"))
                .is_some_and(|e| e.rps > 0.0)
    });
    screenshot(&browser, "dashboard-bookinfo-90-10");
    let v1 = split.edge(&svc("reviews"), &wl("reviews-v1")).unwrap().rps;
    let v2 = split.edge(&svc("reviews"), &wl("reviews-v2")).unwrap().rps;
    let n = (v1 + v2) * split.window_secs;
    let share = v2 / (v1 + v2);
    let tolerance = 5.0 * (0.1 * 0.9 / n).sqrt();
    assert!(
        (share - 0.1).abs() <= tolerance,
        "v2 has {share:.3} of reviews' {n:.0} requests in the window at 90/10 (±{tolerance:.3})"
    );
    drop(load);
}
