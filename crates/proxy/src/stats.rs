//! Envoy-style statistics: counters and gauges per cluster (`cluster.<name>.…`) and per
//! HTTP connection manager (`http.<stat_prefix>.…`), kept across config updates (a
//! cluster updated by CDS keeps counting), rendered as `/stats` text and in Envoy's
//! Prometheus form (`envoy_cluster_upstream_rq_total{envoy_cluster_name="…"}`).
//!
//! The request path only increments atomics it was handed at config time.

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// A monotonic count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// The count.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// A level that goes up and down.
#[derive(Debug, Default)]
pub struct Gauge(AtomicI64);

impl Gauge {
    /// Up by one until the returned guard drops.
    pub fn track(self: &Arc<Self>) -> GaugeGuard {
        self.0.fetch_add(1, Ordering::Relaxed);
        GaugeGuard(self.clone())
    }

    /// The level.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Holds a gauge up by one.
#[derive(Debug)]
pub struct GaugeGuard(Arc<Gauge>);

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        self.0.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Counts by response code class (1xx … 5xx).
#[derive(Debug, Default)]
pub struct ByClass([Counter; 5]);

impl ByClass {
    /// Counts one response with `status`.
    pub fn record(&self, status: u16) {
        if let Some(counter) = (status / 100)
            .checked_sub(1)
            .and_then(|i| self.0.get(usize::from(i)))
        {
            counter.inc();
        }
    }

    fn classes(&self) -> impl Iterator<Item = (usize, u64)> + '_ {
        self.0.iter().enumerate().map(|(i, c)| (i + 1, c.get()))
    }
}

/// One cluster's statistics.
#[derive(Debug, Default)]
pub struct ClusterStats {
    /// Requests sent upstream.
    pub upstream_rq_total: Counter,
    /// Upstream responses by class.
    pub upstream_rq: ByClass,
    /// Requests that timed out waiting for the upstream.
    pub upstream_rq_timeout: Counter,
    /// Requests in flight.
    pub upstream_rq_active: Arc<Gauge>,
    /// Connections opened.
    pub upstream_cx_total: Counter,
    /// Connections open.
    pub upstream_cx_active: Arc<Gauge>,
    /// Connection attempts that failed.
    pub upstream_cx_connect_fail: Counter,
}

/// One HTTP connection manager's statistics.
#[derive(Debug, Default)]
pub struct HttpStats {
    /// Requests received.
    pub downstream_rq_total: Counter,
    /// Responses sent, by class.
    pub downstream_rq: ByClass,
    /// Requests in flight.
    pub downstream_rq_active: Arc<Gauge>,
    /// Connections accepted.
    pub downstream_cx_total: Counter,
    /// Connections open.
    pub downstream_cx_active: Arc<Gauge>,
}

/// Every statistic of the proxy, by owner name.
#[derive(Debug, Default)]
pub struct Stats {
    clusters: Mutex<BTreeMap<String, Arc<ClusterStats>>>,
    http: Mutex<BTreeMap<String, Arc<HttpStats>>>,
}

impl Stats {
    /// The statistics of the cluster `name` (the same ones across updates).
    pub fn cluster(&self, name: &str) -> Arc<ClusterStats> {
        lock(&self.clusters)
            .entry(name.to_owned())
            .or_default()
            .clone()
    }

    /// The statistics of the connection managers with `stat_prefix`.
    pub fn http(&self, stat_prefix: &str) -> Arc<HttpStats> {
        lock(&self.http)
            .entry(stat_prefix.to_owned())
            .or_default()
            .clone()
    }

    /// Envoy's `/stats` text: `name: value` per line, sorted.
    pub fn text(&self) -> String {
        let mut lines = Vec::new();
        for (name, c) in lock(&self.clusters).iter() {
            let p = format!("cluster.{name}");
            lines.push(format!(
                "{p}.upstream_cx_active: {}",
                c.upstream_cx_active.get()
            ));
            lines.push(format!(
                "{p}.upstream_cx_connect_fail: {}",
                c.upstream_cx_connect_fail.get()
            ));
            lines.push(format!(
                "{p}.upstream_cx_total: {}",
                c.upstream_cx_total.get()
            ));
            for (class, n) in c.upstream_rq.classes() {
                lines.push(format!("{p}.upstream_rq_{class}xx: {n}"));
            }
            lines.push(format!(
                "{p}.upstream_rq_active: {}",
                c.upstream_rq_active.get()
            ));
            lines.push(format!(
                "{p}.upstream_rq_timeout: {}",
                c.upstream_rq_timeout.get()
            ));
            lines.push(format!(
                "{p}.upstream_rq_total: {}",
                c.upstream_rq_total.get()
            ));
        }
        for (prefix, h) in lock(&self.http).iter() {
            let p = format!("http.{prefix}");
            lines.push(format!(
                "{p}.downstream_cx_active: {}",
                h.downstream_cx_active.get()
            ));
            lines.push(format!(
                "{p}.downstream_cx_total: {}",
                h.downstream_cx_total.get()
            ));
            for (class, n) in h.downstream_rq.classes() {
                lines.push(format!("{p}.downstream_rq_{class}xx: {n}"));
            }
            lines.push(format!(
                "{p}.downstream_rq_active: {}",
                h.downstream_rq_active.get()
            ));
            lines.push(format!(
                "{p}.downstream_rq_total: {}",
                h.downstream_rq_total.get()
            ));
        }
        lines.sort();
        lines.into_iter().map(|l| l + "\n").collect()
    }

    /// Envoy's `/stats/prometheus`: tags extracted into labels as Envoy names them.
    pub fn prometheus(&self) -> String {
        let mut out = Families::default();
        for (name, c) in lock(&self.clusters).iter() {
            let l = format!("envoy_cluster_name=\"{}\"", escape(name));
            out.add(
                "envoy_cluster_upstream_cx_active",
                "gauge",
                &l,
                c.upstream_cx_active.get(),
            );
            out.add(
                "envoy_cluster_upstream_cx_connect_fail",
                "counter",
                &l,
                c.upstream_cx_connect_fail.get(),
            );
            out.add(
                "envoy_cluster_upstream_cx_total",
                "counter",
                &l,
                c.upstream_cx_total.get(),
            );
            for (class, n) in c.upstream_rq.classes() {
                let lc = format!("envoy_response_code_class=\"{class}\",{l}");
                out.add("envoy_cluster_upstream_rq_xx", "counter", &lc, n);
            }
            out.add(
                "envoy_cluster_upstream_rq_active",
                "gauge",
                &l,
                c.upstream_rq_active.get(),
            );
            out.add(
                "envoy_cluster_upstream_rq_timeout",
                "counter",
                &l,
                c.upstream_rq_timeout.get(),
            );
            out.add(
                "envoy_cluster_upstream_rq_total",
                "counter",
                &l,
                c.upstream_rq_total.get(),
            );
        }
        for (prefix, h) in lock(&self.http).iter() {
            let l = format!("envoy_http_conn_manager_prefix=\"{}\"", escape(prefix));
            out.add(
                "envoy_http_downstream_cx_active",
                "gauge",
                &l,
                h.downstream_cx_active.get(),
            );
            out.add(
                "envoy_http_downstream_cx_total",
                "counter",
                &l,
                h.downstream_cx_total.get(),
            );
            for (class, n) in h.downstream_rq.classes() {
                let lc = format!("envoy_response_code_class=\"{class}\",{l}");
                out.add("envoy_http_downstream_rq_xx", "counter", &lc, n);
            }
            out.add(
                "envoy_http_downstream_rq_active",
                "gauge",
                &l,
                h.downstream_rq_active.get(),
            );
            out.add(
                "envoy_http_downstream_rq_total",
                "counter",
                &l,
                h.downstream_rq_total.get(),
            );
        }
        out.render()
    }
}

/// Prometheus families: one `# TYPE` line, then every sample of the family.
#[derive(Default)]
struct Families(BTreeMap<&'static str, (&'static str, Vec<String>)>);

impl Families {
    fn add(
        &mut self,
        name: &'static str,
        kind: &'static str,
        labels: &str,
        value: impl std::fmt::Display,
    ) {
        let family = self.0.entry(name).or_insert((kind, Vec::new()));
        family.1.push(format!("{name}{{{labels}}} {value}"));
    }

    fn render(self) -> String {
        let mut out = String::new();
        for (name, (kind, samples)) in self.0 {
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for s in samples {
                let _ = writeln!(out, "{s}");
            }
        }
        out
    }
}

/// A Prometheus label value: backslash, quote and newline escaped.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stats_survive_lookups_and_render_as_envoy_does() {
        let stats = Stats::default();
        let c = stats.cluster("outbound|9080||reviews.default.svc.cluster.local");
        c.upstream_rq_total.inc();
        c.upstream_rq.record(200);
        c.upstream_rq.record(503);
        let active = c.upstream_cx_active.track();
        assert!(Arc::ptr_eq(
            &c,
            &stats.cluster("outbound|9080||reviews.default.svc.cluster.local")
        ));
        let text = stats.text();
        assert!(
            text.contains(
                "cluster.outbound|9080||reviews.default.svc.cluster.local.upstream_rq_2xx: 1\n"
            ),
            "{text}"
        );
        assert!(
            text.contains(".upstream_rq_5xx: 1\n") && text.contains(".upstream_cx_active: 1\n"),
            "{text}"
        );
        drop(active);
        let prom = stats.prometheus();
        assert!(
            prom.contains("# TYPE envoy_cluster_upstream_rq_total counter\n"),
            "{prom}"
        );
        assert!(prom.contains(
            "envoy_cluster_upstream_rq_xx{envoy_response_code_class=\"2\",envoy_cluster_name=\"outbound|9080||reviews.default.svc.cluster.local\"} 1\n"
        ), "{prom}");
        assert!(prom.contains("envoy_cluster_upstream_cx_active{envoy_cluster_name=\"outbound|9080||reviews.default.svc.cluster.local\"} 0\n"), "{prom}");
    }
}
