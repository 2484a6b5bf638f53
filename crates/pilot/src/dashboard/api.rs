//! The dashboard's HTTP surface: the JSON API (`/api/graph`, `/api/services/{ns}/{name}`,
//! `/api/proxies`) and the single-page app, embedded in the binary.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use mizzen_xds::ProxySync;
use serde::Serialize;

use super::graph::Graph;
use super::service::ServicePage;
use super::{MetricsSource, Shared, TargetStatus};
use crate::server::source::proxy_from_node;

/// The app's files: no build step, nothing fetched from the internet.
const ASSETS: [(&str, &str, &str); 3] = [
    (
        "/",
        "text/html; charset=utf-8",
        include_str!("assets/index.html"),
    ),
    (
        "/app.js",
        "text/javascript; charset=utf-8",
        include_str!("assets/app.js"),
    ),
    (
        "/style.css",
        "text/css; charset=utf-8",
        include_str!("assets/style.css"),
    ),
];

/// The dashboard's router.
pub(crate) fn router(shared: Arc<Shared>) -> axum::Router {
    let mut router = axum::Router::new()
        .route("/api/graph", get(graph))
        .route("/api/services/{namespace}/{name}", get(service))
        .route("/api/proxies", get(proxies));
    for (path, content_type, body) in ASSETS {
        router = router.route(
            path,
            get(move || async move {
                (
                    [
                        (header::CONTENT_TYPE, content_type),
                        (header::CACHE_CONTROL, "no-cache"),
                    ],
                    body,
                )
            }),
        );
    }
    router.with_state(shared)
}

/// `/api/graph`: the graph of the last window, and how it was measured.
#[derive(Serialize)]
struct GraphAnswer {
    /// When the window ended (Unix milliseconds; 0 before the first collection).
    at: u64,
    /// How often the page should ask again.
    interval_ms: u64,
    /// The span rates are computed over.
    window_secs: u64,
    /// `scrape` or `prometheus`.
    source: &'static str,
    /// Endpoints that could not be read in the last collection.
    problems: Vec<String>,
    #[serde(flatten)]
    graph: Graph,
}

async fn graph(State(shared): State<Arc<Shared>>) -> Json<GraphAnswer> {
    let published = shared.published.load();
    let current = shared.current.load();
    let latest = published.history.latest();
    let graph = match latest {
        Some(tick) => Graph::build(&tick.traffic, &current.push.registry),
        None => Graph::build(&Default::default(), &current.push.registry),
    };
    let problems = published
        .error
        .iter()
        .cloned()
        .chain(
            published
                .targets
                .iter()
                .filter_map(|t| Some(format!("{}: {}", t.url, t.error.as_ref()?))),
        )
        .collect();
    Json(GraphAnswer {
        at: latest.map_or(0, |t| t.unix_ms()),
        interval_ms: shared.options.interval.as_millis() as u64,
        window_secs: shared.options.window.as_secs(),
        source: match shared.options.metrics {
            MetricsSource::Scrape(_) => "scrape",
            MetricsSource::Prometheus(_) => "prometheus",
        },
        problems,
        graph,
    })
}

async fn service(
    State(shared): State<Arc<Shared>>,
    Path((namespace, name)): Path<(String, String)>,
) -> Response {
    let published = shared.published.load();
    let current = shared.current.load();
    let findings = shared.findings.borrow().clone();
    match ServicePage::build(
        &current.push,
        &published.history,
        &findings,
        &namespace,
        &name,
    ) {
        Some(page) => Json(page).into_response(),
        None => (
            StatusCode::NOT_FOUND,
            format!("no service {namespace}/{name} in the registry\n"),
        )
            .into_response(),
    }
}

/// A row of the proxies page: `proxy-status`'s, with the proxy's address and how its
/// metrics were last read.
#[derive(Serialize)]
struct ProxyRow {
    #[serde(flatten)]
    sync: ProxySync,
    /// The proxy's primary address.
    address: Option<String>,
    /// How its metrics were last read, when pilot scrapes it.
    scrape: Option<TargetStatus>,
}

async fn proxies(State(shared): State<Arc<Shared>>) -> Json<Vec<ProxyRow>> {
    let published = shared.published.load();
    Json(
        shared
            .status
            .snapshot()
            .iter()
            .map(|status| {
                let sync = status.to_sync(&shared.pilot);
                ProxyRow {
                    address: proxy_from_node(&status.node)
                        .ok()
                        .and_then(|p| p.ips.first().map(ToString::to_string)),
                    scrape: published
                        .targets
                        .iter()
                        .find(|t| t.proxy == status.node_id)
                        .cloned(),
                    sync,
                }
            })
            .collect(),
    )
}
