//! The mesh dashboard (`mizzen dashboard`, pilot's 20001): a live service graph, a page
//! per service and the proxies' sync status, from Istio's standard metrics.
//!
//! Every `interval`, a collector reads the rates of `istio_requests_total`, the
//! request duration histogram and the TCP byte counters — scraping the proxies itself
//! ([`MetricsSource::Scrape`]) or asking a Prometheus server
//! ([`MetricsSource::Prometheus`]) — folds them into [`Traffic`], and publishes the
//! last few windows; the JSON API and the embedded single-page app read what was last
//! published, so a page load never waits on a scrape.

mod api;
mod exposition;
mod fetch;
mod graph;
mod histogram;
mod history;
mod prometheus;
mod scrape;
mod service;
mod traffic;
mod window;

#[cfg(test)]
mod tests;

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use arc_swap::ArcSwap;
use axum::http::Uri;
use mizzen_xds::StatusRegistry;
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use exposition::{ParseError, Sample, parse};
pub use graph::{Edge, Graph, Node, NodeKind, Summary};
pub use scrape::{ProxyMetrics, ScrapeTarget, ScrapeTargets, StaticTargets};
pub use service::{Point, ServicePage};
pub use traffic::{SeriesRate, Traffic};

use crate::server::{Current, Findings};
use history::{History, Tick};
use prometheus::PrometheusApi;
use scrape::Scraper;

/// Pilot's dashboard address in local mode (Kiali's 20001).
pub const DEFAULT_ADDR: std::net::SocketAddr = std::net::SocketAddr::V4(
    std::net::SocketAddrV4::new(std::net::Ipv4Addr::LOCALHOST, 20001),
);

/// Where the dashboard reads Istio's metrics.
#[derive(Clone)]
pub enum MetricsSource {
    /// Pilot scrapes these endpoints itself and computes the rates.
    Scrape(Arc<dyn ScrapeTargets>),
    /// A Prometheus server's query API (`http://prometheus:9090`).
    Prometheus(Uri),
}

impl std::fmt::Debug for MetricsSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            MetricsSource::Scrape(_) => f.write_str("Scrape"),
            MetricsSource::Prometheus(uri) => write!(f, "Prometheus({uri})"),
        }
    }
}

/// What the dashboard reads, and how often.
#[derive(Debug, Clone)]
pub struct DashboardOptions {
    /// Where the metrics come from.
    pub metrics: MetricsSource,
    /// How often they are read, and how often the pages refresh.
    pub interval: Duration,
    /// The span rates are computed over (PromQL's `rate(…[1m])`).
    pub window: Duration,
    /// How many intervals the charts go back.
    pub history: usize,
}

impl Default for DashboardOptions {
    /// Scrape each connected proxy's admin every 5 s, rates over a minute, charts over
    /// ten minutes.
    fn default() -> Self {
        DashboardOptions {
            metrics: MetricsSource::Scrape(Arc::new(ProxyMetrics::default())),
            interval: Duration::from_secs(5),
            window: Duration::from_secs(60),
            history: 120,
        }
    }
}

/// How reading one endpoint went, for the proxies page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct TargetStatus {
    /// The proxy's node id (empty for a Prometheus query).
    pub proxy: String,
    /// What was read.
    pub url: String,
    /// Why it failed, if it did.
    pub error: Option<String>,
    /// How many series of Istio's metrics it had.
    pub series: usize,
}

/// What one collection yields.
#[derive(Debug, Clone, Default)]
pub(crate) struct Collected {
    /// The rate of each series over the window.
    pub rates: Vec<SeriesRate>,
    /// How each endpoint went.
    pub targets: Vec<TargetStatus>,
    /// Why the collection as a whole failed, if it did.
    pub error: Option<String>,
}

/// What the collector last published.
#[derive(Debug, Clone)]
pub(crate) struct Published {
    /// The last windows.
    pub history: History,
    /// How each endpoint went in the last collection.
    pub targets: Vec<TargetStatus>,
    /// Why the last collection failed as a whole, if it did.
    pub error: Option<String>,
}

/// What the API handlers read.
pub(crate) struct Shared {
    /// How the dashboard was set up.
    pub options: DashboardOptions,
    /// Pilot's config and registry.
    pub current: Arc<ArcSwap<Current>>,
    /// The connected proxies.
    pub status: StatusRegistry,
    /// Pilot's instance name, shown as each proxy's control plane.
    pub pilot: String,
    /// What the analyzers last found in the config.
    pub findings: watch::Receiver<Arc<Findings>>,
    /// What the collector last published.
    pub published: ArcSwap<Published>,
}

/// The dashboard of one pilot: its collector and its HTTP server.
pub struct Dashboard {
    shared: Arc<Shared>,
}

impl Dashboard {
    /// A dashboard over the config (`current`), connected proxies (`status`) and
    /// analysis (`findings`) of the pilot instance `pilot`.
    pub fn new(
        options: DashboardOptions,
        current: Arc<ArcSwap<Current>>,
        status: StatusRegistry,
        pilot: String,
        findings: watch::Receiver<Arc<Findings>>,
    ) -> Dashboard {
        let published = ArcSwap::from_pointee(Published {
            history: History::new(options.history),
            targets: Vec::new(),
            error: None,
        });
        Dashboard {
            shared: Arc::new(Shared {
                options,
                current,
                status,
                pilot,
                findings,
                published,
            }),
        }
    }

    /// Serves on `listener` and collects metrics until `shutdown` completes.
    pub async fn serve(
        self,
        listener: TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> std::io::Result<()> {
        let server = axum::serve(listener, api::router(self.shared.clone()))
            .with_graceful_shutdown(shutdown);
        tokio::select! {
            served = server => served,
            never = collect(self.shared) => match never {},
        }
    }
}

/// Reads the metrics every interval and publishes the windows, forever.
async fn collect(shared: Arc<Shared>) -> std::convert::Infallible {
    let options = &shared.options;
    // A scrape that does not answer within an interval is late for the next one.
    let timeout = options.interval.max(Duration::from_millis(500));
    let mut source = match &options.metrics {
        MetricsSource::Scrape(targets) => {
            Collector::Scrape(Scraper::new(targets.clone(), options.window, timeout))
        }
        MetricsSource::Prometheus(url) => {
            Collector::Prometheus(PrometheusApi::new(url, options.window, timeout))
        }
    };
    let mut history = History::new(options.history);
    let mut ticks = tokio::time::interval(options.interval);
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        ticks.tick().await;
        let collected = match &mut source {
            Collector::Scrape(scraper) => scraper.collect(&shared.status.snapshot()).await,
            Collector::Prometheus(api) => api.collect().await,
        };
        history.push(Tick {
            at: SystemTime::now(),
            traffic: Arc::new(Traffic::from_rates(&collected.rates)),
        });
        shared.published.store(Arc::new(Published {
            history: history.clone(),
            targets: collected.targets,
            error: collected.error,
        }));
    }
}

/// The collector of the configured source.
enum Collector {
    Scrape(Scraper),
    Prometheus(PrometheusApi),
}
