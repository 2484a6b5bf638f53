//! Local mode: pilot scrapes the proxies' Prometheus text itself, keeps each counter's
//! samples over the window, and turns them into rates.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::http::Uri;
use mizzen_xds::ProxyStatus;

use super::exposition;
use super::fetch;
use super::traffic::{self, SeriesRate};
use super::window::CounterWindow;
use super::{Collected, TargetStatus};
use crate::server::source::proxy_from_node;

/// One endpoint to scrape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScrapeTarget {
    /// Whose metrics they are (a proxy's node id), shown on the proxies page.
    pub proxy: String,
    /// Where its Prometheus text is served.
    pub uri: Uri,
}

/// Which endpoints pilot scrapes. The seam where a deployment says where its proxies'
/// metrics are.
pub trait ScrapeTargets: Send + Sync + 'static {
    /// The endpoints to scrape now, given the proxies connected to pilot.
    fn targets(&self, connected: &[ProxyStatus]) -> Vec<ScrapeTarget>;
}

/// Every connected proxy's metrics at `http://IP:PORT/PATH`, IP being the proxy's
/// primary address (Istio's merged 15020 `/stats/prometheus`, where Prometheus's
/// `prometheus.io/port` annotation points in an Istio mesh).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyMetrics {
    /// The port on each proxy's address.
    pub port: u16,
    /// The path.
    pub path: String,
}

impl Default for ProxyMetrics {
    /// The merged endpoint (15020), which local-mode proxies serve on their pod address.
    fn default() -> Self {
        ProxyMetrics {
            port: 15020,
            path: "/stats/prometheus".to_owned(),
        }
    }
}

impl ScrapeTargets for ProxyMetrics {
    fn targets(&self, connected: &[ProxyStatus]) -> Vec<ScrapeTarget> {
        connected
            .iter()
            .filter_map(|status| {
                let proxy = proxy_from_node(&status.node).ok()?;
                let ip = proxy.ips.first()?;
                let host = match ip {
                    std::net::IpAddr::V4(ip) => ip.to_string(),
                    std::net::IpAddr::V6(ip) => format!("[{ip}]"),
                };
                let uri = format!("http://{host}:{}{}", self.port, self.path)
                    .parse()
                    .ok()?;
                Some(ScrapeTarget {
                    proxy: status.node_id.clone(),
                    uri,
                })
            })
            .collect()
    }
}

/// A fixed list of endpoints, whoever is connected.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StaticTargets(pub Vec<ScrapeTarget>);

impl ScrapeTargets for StaticTargets {
    fn targets(&self, _: &[ProxyStatus]) -> Vec<ScrapeTarget> {
        self.0.clone()
    }
}

/// A series on one endpoint: equal labels on two replicas are two counters.
type SeriesKey = (Arc<str>, String, Vec<(String, String)>);

/// The scraper: targets, and each counter's samples within the window.
pub(crate) struct Scraper {
    targets: Arc<dyn ScrapeTargets>,
    window: Duration,
    timeout: Duration,
    counters: BTreeMap<SeriesKey, CounterWindow>,
}

impl Scraper {
    /// A scraper of `targets` computing rates over `window`, giving each scrape
    /// `timeout`.
    pub fn new(targets: Arc<dyn ScrapeTargets>, window: Duration, timeout: Duration) -> Self {
        Scraper {
            targets,
            window,
            timeout,
            counters: BTreeMap::new(),
        }
    }

    /// Records the samples of the metrics the dashboard reads from `text`, scraped
    /// from `endpoint` at `at`; returns how many series it had.
    pub fn record(
        &mut self,
        endpoint: &str,
        at: Instant,
        text: &str,
    ) -> Result<usize, exposition::ParseError> {
        let endpoint: Arc<str> = endpoint.into();
        let mut series = 0;
        for sample in exposition::parse(text)? {
            if traffic::reads(&sample.name) {
                series += 1;
                self.counters
                    .entry((endpoint.clone(), sample.name, sample.labels))
                    .or_default()
                    .push(at, sample.value, self.window);
            }
        }
        Ok(series)
    }

    /// Every counter's rate over the window ending `now`; counters with no sample left
    /// in it are forgotten.
    pub fn rates(&mut self, now: Instant) -> Vec<SeriesRate> {
        self.counters.retain(|_, counter| {
            counter.expire(now, self.window);
            !counter.is_empty()
        });
        self.counters
            .iter()
            .filter_map(|((_, name, labels), counter)| {
                Some(SeriesRate {
                    name: name.clone(),
                    labels: labels.clone(),
                    rate: counter.rate()?,
                })
            })
            .collect()
    }

    /// Scrapes every target at once and returns the rates over the window.
    pub async fn collect(&mut self, connected: &[ProxyStatus]) -> Collected {
        let targets = self.targets.targets(connected);
        let mut scrapes = tokio::task::JoinSet::new();
        for (i, target) in targets.iter().enumerate() {
            let (uri, timeout) = (target.uri.clone(), self.timeout);
            scrapes.spawn(async move {
                let text = fetch::get(&uri, timeout).await;
                (i, Instant::now(), text)
            });
        }
        let mut statuses: Vec<TargetStatus> = targets
            .iter()
            .map(|t| TargetStatus {
                proxy: t.proxy.clone(),
                url: t.uri.to_string(),
                error: None,
                series: 0,
            })
            .collect();
        while let Some(Ok((i, at, text))) = scrapes.join_next().await {
            let status = &mut statuses[i];
            match text.map_err(|e| e.reason).and_then(|text| {
                self.record(&status.url, at, &text)
                    .map_err(|e| format!("not Prometheus text: {e}"))
            }) {
                Ok(series) => status.series = series,
                Err(reason) => status.error = Some(reason),
            }
        }
        let rates = self.rates(Instant::now());
        Collected {
            rates,
            targets: statuses,
            error: None,
        }
    }
}
