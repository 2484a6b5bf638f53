//! Istio's standard metrics on a real `mizzen up` of Bookinfo: a known number of product
//! pages through the ingress gateway, with Istio's rule pinning reviews to v3 (the
//! version that calls ratings), and every proxy's 15020 `/stats/prometheus` scraped
//! before and after. Each call is counted exactly once on each side that sees it,
//! with Istio's full label set as istio-proxy's `istio.stats` fills it in; the
//! histograms count the same requests; the text passes `promtool check metrics`.
//!
//! The test waits on the mesh's readiness and the pages' answers, never on sleeps.

mod common;

use std::collections::BTreeMap;
use std::fmt;
use std::io::Write;
use std::net::{IpAddr, SocketAddr};
use std::process::{Command, Stdio};
use std::time::Instant;

use common::up::{ONE_MESH, Up, WAIT, bookinfo_config, http_get};
use mizzen_pilot::dashboard::{ProxyMetrics, Sample};

/// Product pages sent: each makes one call on every edge of [`edges`].
const PAGES: u64 = 25;

/// The HTTP families Istio records per request, each counted once per request (the
/// histograms by their `_count`).
const PER_REQUEST: [&str; 4] = [
    "istio_requests_total",
    "istio_request_duration_milliseconds_count",
    "istio_request_bytes_count",
    "istio_response_bytes_count",
];

/// A workload of the mesh as Istio labels it.
#[derive(Debug, Clone, Copy)]
struct Workload {
    /// Its proxy's pod, as pilot names it (`details-v1-1.default`).
    pod: &'static str,
    name: &'static str,
    namespace: &'static str,
    app: &'static str,
    /// The `version` label; `unknown` where there is none (the gateway).
    version: &'static str,
    /// `service.istio.io/canonical-revision`: the version, else `latest`.
    revision: &'static str,
    account: &'static str,
}

impl Workload {
    const fn bookinfo(
        pod: &'static str,
        name: &'static str,
        app: &'static str,
        account: &'static str,
    ) -> Workload {
        Workload {
            pod,
            name,
            namespace: "default",
            app,
            version: "v1",
            revision: "v1",
            account,
        }
    }

    fn principal(&self) -> String {
        format!(
            "spiffe://cluster.local/ns/{}/sa/{}",
            self.namespace, self.account
        )
    }
}

const GATEWAY: Workload = Workload {
    pod: "istio-ingressgateway-1.istio-system",
    name: "istio-ingressgateway",
    namespace: "istio-system",
    app: "istio-ingressgateway",
    version: "unknown",
    revision: "latest",
    account: "istio-ingressgateway-service-account",
};
const PRODUCTPAGE: Workload = Workload::bookinfo(
    "productpage-v1-1.default",
    "productpage-v1",
    "productpage",
    "bookinfo-productpage",
);
const DETAILS: Workload = Workload::bookinfo(
    "details-v1-1.default",
    "details-v1",
    "details",
    "bookinfo-details",
);
const REVIEWS_V3: Workload = Workload {
    version: "v3",
    revision: "v3",
    ..Workload::bookinfo(
        "reviews-v3-1.default",
        "reviews-v3",
        "reviews",
        "bookinfo-reviews",
    )
};
const RATINGS: Workload = Workload::bookinfo(
    "ratings-v1-1.default",
    "ratings-v1",
    "ratings",
    "bookinfo-ratings",
);

/// One call of a product page: who calls which service, served by whom.
#[derive(Debug, Clone, Copy)]
struct Edge {
    from: Workload,
    service: &'static str,
    to: Workload,
}

/// Who reports a request: the client's proxy or the server's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reporter {
    Source,
    Destination,
}

/// Bookinfo's calls for one product page with reviews pinned to v3.
fn edges() -> [Edge; 4] {
    let edge = |from, service, to| Edge { from, service, to };
    [
        edge(GATEWAY, "productpage", PRODUCTPAGE),
        edge(PRODUCTPAGE, "details", DETAILS),
        edge(PRODUCTPAGE, "reviews", REVIEWS_V3),
        edge(REVIEWS_V3, "ratings", RATINGS),
    ]
}

/// The labels of `edge`'s successful HTTP requests as `reporter` records them, as
/// istio-proxy's `istio.stats` fills them in (`populatePeerInfo`) between sidecars
/// with mutual TLS: each side knows the other from the metadata exchange and the
/// certificates; `connection_security_policy` is known only to the destination.
fn labels(edge: &Edge, reporter: Reporter) -> Labels {
    let Edge { from, service, to } = edge;
    let (reporter, policy) = match reporter {
        Reporter::Source => ("source", "unknown"),
        Reporter::Destination => ("destination", "mutual_tls"),
    };
    let host = format!("{service}.default.svc.cluster.local");
    Labels(
        [
            ("reporter", reporter),
            ("source_workload", from.name),
            ("source_canonical_service", from.app),
            ("source_canonical_revision", from.revision),
            ("source_workload_namespace", from.namespace),
            ("source_principal", &from.principal()),
            ("source_app", from.app),
            ("source_version", from.version),
            ("source_cluster", "Kubernetes"),
            ("destination_workload", to.name),
            ("destination_workload_namespace", to.namespace),
            ("destination_principal", &to.principal()),
            ("destination_app", to.app),
            ("destination_version", to.version),
            ("destination_service", &host),
            ("destination_service_name", service),
            ("destination_service_namespace", to.namespace),
            ("destination_canonical_service", to.app),
            ("destination_canonical_revision", to.revision),
            ("destination_cluster", "Kubernetes"),
            ("request_protocol", "http"),
            ("response_code", "200"),
            ("grpc_response_status", ""),
            ("response_flags", "-"),
            ("connection_security_policy", policy),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .collect(),
    )
}

/// A series' labels, shown as Prometheus writes them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Labels(BTreeMap<String, String>);

impl fmt::Display for Labels {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let pairs: Vec<String> = self.0.iter().map(|(k, v)| format!("{k}={v:?}")).collect();
        write!(f, "{{{}}}", pairs.join(", "))
    }
}

/// A series of one proxy: the proxy's pod, the sample's name, its labels.
type Series = (String, String, Labels);

/// Every proxy's samples, by series.
#[derive(Debug, Default)]
struct Scrape(BTreeMap<Series, f64>);

impl Scrape {
    /// Every proxy's 15020 `/stats/prometheus`, as the dashboard scrapes them; each text
    /// checked by `promtool`.
    fn take(proxies: &[(String, IpAddr)]) -> Scrape {
        let metrics = ProxyMetrics::default();
        let mut samples = BTreeMap::new();
        for (pod, ip) in proxies {
            let addr = SocketAddr::new(*ip, metrics.port);
            let (status, text) = http_get(addr, &metrics.path);
            assert_eq!(
                status, 200,
                "{pod} at http://{addr}{}: {text}",
                metrics.path
            );
            promtool_check(pod, &text);
            let parsed = mizzen_pilot::dashboard::parse(&text)
                .unwrap_or_else(|e| panic!("{pod}'s metrics: {e}\n{text}"));
            for Sample {
                name,
                labels,
                value,
            } in parsed
            {
                let key = (pod.clone(), name, Labels(labels.into_iter().collect()));
                samples.insert(key, value);
            }
        }
        Scrape(samples)
    }

    /// The Istio series that moved since `before`, and by how much.
    fn moved_since(&self, before: &Scrape) -> BTreeMap<Series, f64> {
        self.0
            .iter()
            .filter(|((_, name, _), _)| name.starts_with("istio_") && name != "istio_build")
            .map(|(key, value)| (key, value - before.0.get(key).copied().unwrap_or(0.0)))
            .filter(|(_, delta)| *delta != 0.0)
            .map(|(key, delta)| (key.clone(), delta))
            .collect()
    }
}

/// `promtool check metrics`, Prometheus' own parser and linter: the text must parse, and
/// Istio's families lint clean but for the unit Istio chose for durations.
fn promtool_check(pod: &str, text: &str) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus) runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    // 1: the text does not parse; 3: it parses, with lint problems.
    assert_ne!(
        out.status.code(),
        Some(1),
        "{pod}: promtool: {report}\n{text}"
    );
    let istio: Vec<&str> = report
        .lines()
        .filter(|l| l.starts_with("istio_"))
        .filter(|l| !l.starts_with("istio_request_duration_milliseconds use base unit"))
        .collect();
    assert!(istio.is_empty(), "{pod}: promtool: {report}");
}

/// Every per-request series that `PAGES` product pages move, and by how much: each
/// edge once per page, at the client's proxy as the source and at the server's as the
/// destination (the gateway has no client proxy in front of it).
fn expected() -> BTreeMap<Series, f64> {
    let mut expected = BTreeMap::new();
    for edge in edges() {
        for (reporter, at) in [
            (Reporter::Source, edge.from),
            (Reporter::Destination, edge.to),
        ] {
            for family in PER_REQUEST {
                let key = (
                    at.pod.to_owned(),
                    family.to_owned(),
                    labels(&edge, reporter),
                );
                expected.insert(key, PAGES as f64);
            }
        }
    }
    expected
}

/// The per-request series among `moved`, with their histograms' `+Inf` buckets checked
/// against their `_count`s and their `_sum`s present.
fn per_request(moved: &BTreeMap<Series, f64>) -> BTreeMap<Series, f64> {
    for ((pod, name, labels), delta) in moved {
        let Some(family) = name.strip_suffix("_count") else {
            continue;
        };
        let mut bucket = labels.clone();
        bucket.0.insert("le".to_owned(), "+Inf".to_owned());
        let inf = moved.get(&(pod.clone(), format!("{family}_bucket"), bucket));
        assert_eq!(
            inf,
            Some(delta),
            "{pod} {family}{labels}: +Inf bucket and count"
        );
        let sum = moved.get(&(pod.clone(), format!("{family}_sum"), labels.clone()));
        if family != "istio_request_duration_milliseconds" {
            // Every request and response has headers: bytes are never 0.
            assert!(sum.is_some_and(|s| *s > 0.0), "{pod} {family}_sum{labels}");
        }
    }
    moved
        .iter()
        .filter(|((_, name, _), _)| {
            let histogram = ["_bucket", "_sum", "_count"]
                .iter()
                .any(|suffix| name.ends_with(suffix));
            !histogram || PER_REQUEST.contains(&name.as_str())
        })
        .map(|(key, delta)| (key.clone(), *delta))
        .collect()
}

/// What differs between the series that moved and those expected to, one per line.
fn difference(moved: &BTreeMap<Series, f64>, expected: &BTreeMap<Series, f64>) -> String {
    let mut lines = Vec::new();
    for ((pod, name, labels), want) in expected {
        match moved.get(&(pod.clone(), name.clone(), labels.clone())) {
            Some(got) if got == want => {}
            got => lines.push(format!(
                "{pod}: {name}{labels} moved {got:?}, expected {want}"
            )),
        }
    }
    for ((pod, name, labels), got) in moved {
        if !expected.contains_key(&(pod.clone(), name.clone(), labels.clone())) {
            lines.push(format!("{pod}: {name}{labels} moved {got}, unexpected"));
        }
    }
    lines.join("\n")
}

/// `GET /productpage` through the ingress: a page whose reviews come from v3 (red
/// stars), or the status and body.
fn product_page(ingress: SocketAddr) -> Result<(), String> {
    match http_get(ingress, "/productpage") {
        (200, page) if page.contains("Reviews served by:") && page.contains("color: red") => Ok(()),
        (status, page) => Err(format!("{status}: {page}")),
    }
}

#[test]
fn bookinfo_traffic_is_counted_exactly_on_both_reporters() {
    let istio = mizzen_api::testdata::istio_data()
        .expect("Istio's samples ($MIZZEN_ISTIO_DATA or ../shared/istio)");
    let _one = ONE_MESH.lock().unwrap_or_else(|e| e.into_inner());
    // Istio's own rule pins reviews to v3: each page makes exactly one call per edge.
    let config = bookinfo_config();
    std::fs::copy(
        istio.join("samples/bookinfo/networking/virtual-service-reviews-v3.yaml"),
        config.path().join("virtual-service-reviews-v3.yaml"),
    )
    .unwrap();
    let mut up = Up::start_on(config, None, "127.0.79.1");
    let ingress = up.ingress();

    // The apps may still be starting when the proxies are ready: the first page whose
    // calls all succeed says they are up. What the mesh counted until then is the
    // baseline.
    let deadline = Instant::now() + WAIT;
    while let Err(page) = product_page(ingress) {
        assert!(
            Instant::now() < deadline,
            "the product page never came: {page}"
        );
    }
    let proxies = up.proxies();
    let mut pods: Vec<&str> = proxies.iter().map(|(pod, _)| pod.as_str()).collect();
    pods.sort();
    assert_eq!(
        pods,
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
    let before = Scrape::take(&proxies);

    for _ in 0..PAGES {
        product_page(ingress).unwrap();
    }

    // A proxy records a request when it takes the response's last bytes to send on,
    // before the hop in front can read them: a page read to its end has been counted at
    // every hop, and one scrape says it all.
    let moved = Scrape::take(&proxies).moved_since(&before);
    let expected = expected();
    let counted = per_request(&moved);
    assert!(
        counted == expected,
        "after {PAGES} product pages:\n{}",
        difference(&counted, &expected)
    );
}
