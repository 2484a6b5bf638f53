//! Envoy-style statistics: counters and gauges per cluster (`cluster.<name>.…`) and per
//! HTTP connection manager (`http.<stat_prefix>.…`), kept across config updates (a
//! cluster updated by CDS keeps counting), rendered as `/stats` text and in Envoy's
//! Prometheus form (`envoy_cluster_upstream_rq_total{envoy_cluster_name="…"}`).
//!
//! The request path only increments atomics it was handed at config time.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use mizzen_xds::pb::envoy::config::core::v3::Node;

use crate::metrics::Registry;

/// A monotonic count.
#[derive(Debug, Default)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds one.
    pub fn inc(&self) {
        self.0.fetch_add(1, Ordering::Relaxed);
    }

    /// Adds `n`.
    pub fn inc_by(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
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
        GaugeGuard {
            gauge: self.clone(),
            bound: None,
        }
    }

    /// Up by one until the returned guard drops, unless the level is already `max`:
    /// then None. `open` is 1 while the level is at `max` (Envoy's circuit breaker
    /// `*_open` gauges).
    pub fn track_within(self: &Arc<Self>, max: u32, open: &Arc<Gauge>) -> Option<GaugeGuard> {
        let max = i64::from(max);
        let before = self.0.fetch_add(1, Ordering::AcqRel);
        if before >= max {
            self.0.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        if before + 1 >= max {
            open.set(1);
        }
        Some(GaugeGuard {
            gauge: self.clone(),
            bound: Some((max, open.clone())),
        })
    }

    /// [`Gauge::track_within`] that counts even past `max`, for what Envoy lets through
    /// regardless (a pool's first connection).
    pub fn track_beyond(self: &Arc<Self>, max: u32, open: &Arc<Gauge>) -> GaugeGuard {
        let max = i64::from(max);
        if self.0.fetch_add(1, Ordering::AcqRel) + 1 >= max {
            open.set(1);
        }
        GaugeGuard {
            gauge: self.clone(),
            bound: Some((max, open.clone())),
        }
    }

    /// Sets the level.
    pub fn set(&self, value: i64) {
        self.0.store(value, Ordering::Relaxed);
    }

    /// The level.
    pub fn get(&self) -> i64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Holds a gauge up by one (and, when bounded, clears its `open` gauge on the way
/// back under the bound).
#[derive(Debug)]
pub struct GaugeGuard {
    gauge: Arc<Gauge>,
    bound: Option<(i64, Arc<Gauge>)>,
}

impl Drop for GaugeGuard {
    fn drop(&mut self) {
        let after = self.gauge.0.fetch_sub(1, Ordering::AcqRel) - 1;
        if let Some((max, open)) = &self.bound
            && after < *max
        {
            open.set(0);
        }
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
    /// Connections the cluster's `max_connections` kept from being opened.
    pub upstream_cx_overflow: Counter,
    /// Requests that waited for a connection.
    pub upstream_rq_pending_total: Counter,
    /// Requests waiting for a connection.
    pub upstream_rq_pending_active: Arc<Gauge>,
    /// Requests refused by `max_pending_requests` or `max_requests` (Envoy counts both
    /// here).
    pub upstream_rq_pending_overflow: Counter,
    /// Whether each default-priority circuit breaker is at its limit.
    pub circuit_breakers: BreakerStats,
    /// Outlier detection's ejections.
    pub outlier_detection: OutlierStats,
    /// Attempts that passed their retry policy's `per_try_timeout`.
    pub upstream_rq_per_try_timeout: Counter,
    /// Retries made.
    pub upstream_rq_retry: Counter,
    /// Retries whose outcome needed no further retry.
    pub upstream_rq_retry_success: Counter,
    /// Retries not made because the cluster had too many running.
    pub upstream_rq_retry_overflow: Counter,
    /// Retries not made because the request had made all it may.
    pub upstream_rq_retry_limit_exceeded: Counter,
    /// Retries running now (the circuit breakers' retries resource).
    pub retries_running: Arc<Gauge>,
    /// TLS handshakes to its endpoints (shown once the cluster originates TLS).
    pub ssl: SslStats,
}

/// Envoy's `outlier_detection.*` statistics of a cluster.
#[derive(Debug, Default)]
pub struct OutlierStats {
    /// Endpoints ejected now.
    pub ejections_active: Gauge,
    /// Ejections refused by `max_ejection_percent`.
    pub ejections_overflow: Counter,
    /// Ejections carried out, whatever the cause.
    pub ejections_enforced_total: Counter,
    /// Runs of consecutive 5xx detected.
    pub ejections_detected_consecutive_5xx: Counter,
    /// Ejections for consecutive 5xx.
    pub ejections_enforced_consecutive_5xx: Counter,
    /// Runs of consecutive gateway failures detected.
    pub ejections_detected_consecutive_gateway_failure: Counter,
    /// Ejections for consecutive gateway failures.
    pub ejections_enforced_consecutive_gateway_failure: Counter,
    /// Runs of consecutive local-origin failures detected.
    pub ejections_detected_consecutive_local_origin_failure: Counter,
    /// Ejections for consecutive local-origin failures.
    pub ejections_enforced_consecutive_local_origin_failure: Counter,
}

/// Envoy's `circuit_breakers.default.*` gauges: 1 while the breaker is at its limit
/// and turns more away.
#[derive(Debug, Default)]
pub struct BreakerStats {
    /// `max_connections` reached.
    pub cx_open: Arc<Gauge>,
    /// `max_pending_requests` reached.
    pub rq_pending_open: Arc<Gauge>,
    /// `max_requests` reached.
    pub rq_open: Arc<Gauge>,
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
    /// The fault filter's (`http.<stat_prefix>.fault.…`).
    pub fault: FaultStats,
    /// Counters whose names config chooses (`rbac.<rules_stat_prefix>allowed`, …).
    named: Named,
}

impl HttpStats {
    /// The counter `http.<stat_prefix>.<name>` (the same one across updates).
    pub fn counter(&self, name: &str) -> Arc<Counter> {
        self.named.counter(name)
    }
}

/// Counters by a name that config chooses, made when config arrives.
#[derive(Debug, Default)]
struct Named(Mutex<BTreeMap<String, Arc<Counter>>>);

impl Named {
    fn counter(&self, name: &str) -> Arc<Counter> {
        lock(&self.0).entry(name.to_owned()).or_default().clone()
    }

    fn samples(&self) -> Vec<Sample> {
        lock(&self.0)
            .iter()
            .map(|(name, c)| Sample {
                name: Cow::Owned(name.clone()),
                gauge: false,
                class: None,
                value: c.get() as i64,
            })
            .collect()
    }
}

/// The fault injection filter's statistics, per connection manager stat prefix.
#[derive(Debug, Default)]
pub struct FaultStats {
    /// Requests delayed.
    pub delays_injected: Counter,
    /// Requests aborted.
    pub aborts_injected: Counter,
    /// Requests under a fault now (what `max_active_faults` limits).
    pub active_faults: Arc<Gauge>,
    /// Faults not injected because `max_active_faults` were active.
    pub faults_overflow: Counter,
}

/// TLS handshakes of a listener or cluster (Envoy's `ssl.*`).
#[derive(Debug, Default)]
pub struct SslStats {
    /// Whether the owner uses TLS at all; its `ssl.*` statistics show only then.
    enabled: AtomicBool,
    /// Handshakes that succeeded.
    pub handshake: Counter,
    /// Handshakes that failed.
    pub connection_error: Counter,
    /// Successful downstream handshakes without a client certificate.
    pub no_certificate: Counter,
    /// Handshakes refused for want of a client certificate.
    pub fail_verify_no_cert: Counter,
    /// Handshakes refused because no SAN of the peer's certificate matched.
    pub fail_verify_san: Counter,
    /// Handshakes refused because the peer's certificate did not verify.
    pub fail_verify_error: Counter,
}

impl SslStats {
    /// Shows the statistics from now on.
    pub fn enable(&self) {
        self.enabled.store(true, Ordering::Relaxed);
    }

    fn samples(&self) -> impl Iterator<Item = Sample> + '_ {
        let shown = self.enabled.load(Ordering::Relaxed);
        [
            counter("ssl.connection_error", &self.connection_error),
            counter("ssl.fail_verify_error", &self.fail_verify_error),
            counter("ssl.fail_verify_no_cert", &self.fail_verify_no_cert),
            counter("ssl.fail_verify_san", &self.fail_verify_san),
            counter("ssl.handshake", &self.handshake),
            counter("ssl.no_certificate", &self.no_certificate),
        ]
        .into_iter()
        .filter(move |_| shown)
    }
}

/// One listener's statistics (`listener.<address>.…`).
#[derive(Debug, Default)]
pub struct ListenerStats {
    /// Its TLS handshakes.
    pub ssl: Arc<SslStats>,
}

/// Every statistic of the proxy, by owner name.
#[derive(Debug, Default)]
pub struct Stats {
    clusters: Mutex<BTreeMap<String, Arc<ClusterStats>>>,
    http: Mutex<BTreeMap<String, Arc<HttpStats>>>,
    listeners: Mutex<BTreeMap<String, Arc<ListenerStats>>>,
    /// Counters named in full by config, owned by no cluster or connection manager
    /// (network filters': `<stat_prefix>rbac.allowed`).
    named: Named,
    istio: Arc<Registry>,
    node_id: String,
    node_cluster: String,
    zone: String,
}

impl Stats {
    /// The statistics of the proxy `node`, whose metadata names its workload in
    /// Istio's metrics.
    pub fn for_node(node: &Node) -> Stats {
        Stats {
            istio: Arc::new(Registry::for_node(node)),
            node_id: node.id.clone(),
            node_cluster: node.cluster.clone(),
            zone: node
                .locality
                .as_ref()
                .map(|l| l.zone.clone())
                .unwrap_or_default(),
            ..Stats::default()
        }
    }

    /// The proxy's node id (Envoy's `node_id` span tag).
    pub fn node_id(&self) -> &str {
        &self.node_id
    }

    /// The proxy's service cluster (the node's `cluster`; Zipkin's service name).
    pub fn node_cluster(&self) -> &str {
        &self.node_cluster
    }

    /// The proxy's zone (Envoy's `zone` span tag; empty when the node names none).
    pub fn zone(&self) -> &str {
        &self.zone
    }

    /// Istio's metrics.
    pub fn istio(&self) -> &Arc<Registry> {
        &self.istio
    }

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

    /// The statistics of the listener on `address` (Envoy names them by address:
    /// `listener.0.0.0.0_15006.…`).
    pub fn listener(&self, address: std::net::SocketAddr) -> Arc<ListenerStats> {
        let name = format!("{}_{}", address.ip(), address.port());
        lock(&self.listeners).entry(name).or_default().clone()
    }

    /// The counter named `name` in full (the same one across updates).
    pub fn counter(&self, name: &str) -> Arc<Counter> {
        self.named.counter(name)
    }

    /// Every statistic: its owner's scope and name, and the statistic.
    fn all(&self) -> Vec<(Scope, String, Sample)> {
        let clusters = lock(&self.clusters);
        let http = lock(&self.http);
        let listeners = lock(&self.listeners);
        let listeners = listeners.iter().flat_map(|(name, l)| {
            l.ssl
                .samples()
                .map(move |s| (Scope::Listener, name.clone(), s))
        });
        let clusters = clusters
            .iter()
            .flat_map(|(name, c)| c.samples().map(move |s| (Scope::Cluster, name.clone(), s)));
        let http = http
            .iter()
            .flat_map(|(prefix, h)| h.samples().map(move |s| (Scope::Http, prefix.clone(), s)));
        let root = self
            .named
            .samples()
            .into_iter()
            .map(|s| (Scope::Root, String::new(), s));
        clusters.chain(http).chain(listeners).chain(root).collect()
    }

    /// Envoy's `/stats` text: `name: value` per line, sorted.
    pub fn text(&self) -> String {
        let mut lines: Vec<String> = self
            .all()
            .into_iter()
            .map(|(scope, owner, s)| {
                if let Scope::Root = scope {
                    return format!("{}: {}\n", s.name, s.value);
                }
                let scope = scope.text();
                match s.class {
                    Some(class) => format!("{scope}.{owner}.{}_{class}xx: {}\n", s.name, s.value),
                    None => format!("{scope}.{owner}.{}: {}\n", s.name, s.value),
                }
            })
            .collect();
        lines.sort();
        lines.concat()
    }

    /// Envoy's `/stats/prometheus`: tags extracted into labels as Envoy names them, and
    /// Istio's metrics (which Istio's filters make Envoy stats too).
    pub fn prometheus(&self) -> String {
        let mut out = Families::default();
        for (scope, owner, s) in self.all() {
            if let Scope::Root = scope {
                let name = format!("envoy_{}", s.name.replace('.', "_"));
                out.add(name, "counter", "", s.value);
                continue;
            }
            let owner = format!("{}=\"{}\"", scope.label(), escape(&owner));
            let kind = if s.gauge { "gauge" } else { "counter" };
            // Prometheus names have no dots: `circuit_breakers.default.rq_open` becomes
            // `circuit_breakers_default_rq_open`, as in Envoy.
            let stat = s.name.replace('.', "_");
            let (name, labels) = match s.class {
                Some(class) => (
                    format!("envoy_{}_{stat}_xx", scope.text()),
                    format!("envoy_response_code_class=\"{class}\",{owner}"),
                ),
                None => (format!("envoy_{}_{stat}", scope.text()), owner),
            };
            out.add(name, kind, &labels, s.value);
        }
        let mut text = out.render();
        text.push_str(&self.istio.prometheus());
        text
    }
}

/// Who a statistic belongs to.
#[derive(Debug, Clone, Copy)]
enum Scope {
    Cluster,
    Http,
    Listener,
    /// Named in full, with no owner.
    Root,
}

impl Scope {
    /// The prefix in `/stats` and in Prometheus names.
    fn text(self) -> &'static str {
        match self {
            Scope::Cluster => "cluster",
            Scope::Http => "http",
            Scope::Listener => "listener",
            Scope::Root => "",
        }
    }

    /// The Prometheus label Envoy extracts the owner's name into.
    fn label(self) -> &'static str {
        match self {
            Scope::Cluster => "envoy_cluster_name",
            Scope::Http => "envoy_http_conn_manager_prefix",
            Scope::Listener => "envoy_listener_address",
            Scope::Root => "",
        }
    }
}

/// One statistic's value, by name (`upstream_rq` with a class is `upstream_rq_2xx`).
struct Sample {
    name: Cow<'static, str>,
    gauge: bool,
    class: Option<usize>,
    value: i64,
}

fn counter(name: &'static str, c: &Counter) -> Sample {
    Sample {
        name: Cow::Borrowed(name),
        gauge: false,
        class: None,
        value: c.get() as i64,
    }
}

fn gauge(name: &'static str, g: &Gauge) -> Sample {
    Sample {
        name: Cow::Borrowed(name),
        gauge: true,
        class: None,
        value: g.get(),
    }
}

fn by_class<'a>(name: &'static str, b: &'a ByClass) -> impl Iterator<Item = Sample> + 'a {
    b.classes().map(move |(class, n)| Sample {
        name: Cow::Borrowed(name),
        gauge: false,
        class: Some(class),
        value: n as i64,
    })
}

impl ClusterStats {
    fn samples(&self) -> impl Iterator<Item = Sample> + '_ {
        [
            gauge("upstream_cx_active", &self.upstream_cx_active),
            gauge(
                "circuit_breakers.default.cx_open",
                &self.circuit_breakers.cx_open,
            ),
            gauge(
                "circuit_breakers.default.rq_open",
                &self.circuit_breakers.rq_open,
            ),
            gauge(
                "circuit_breakers.default.rq_pending_open",
                &self.circuit_breakers.rq_pending_open,
            ),
            counter("upstream_cx_connect_fail", &self.upstream_cx_connect_fail),
            counter("upstream_cx_overflow", &self.upstream_cx_overflow),
            counter("upstream_cx_total", &self.upstream_cx_total),
            gauge("upstream_rq_active", &self.upstream_rq_active),
            gauge(
                "upstream_rq_pending_active",
                &self.upstream_rq_pending_active,
            ),
            counter(
                "upstream_rq_pending_overflow",
                &self.upstream_rq_pending_overflow,
            ),
            counter("upstream_rq_pending_total", &self.upstream_rq_pending_total),
            counter(
                "upstream_rq_per_try_timeout",
                &self.upstream_rq_per_try_timeout,
            ),
            counter("upstream_rq_retry", &self.upstream_rq_retry),
            counter(
                "upstream_rq_retry_limit_exceeded",
                &self.upstream_rq_retry_limit_exceeded,
            ),
            counter(
                "upstream_rq_retry_overflow",
                &self.upstream_rq_retry_overflow,
            ),
            counter("upstream_rq_retry_success", &self.upstream_rq_retry_success),
            counter("upstream_rq_timeout", &self.upstream_rq_timeout),
            counter("upstream_rq_total", &self.upstream_rq_total),
        ]
        .into_iter()
        .chain(self.outlier_detection.samples())
        .chain(self.ssl.samples())
        .chain(by_class("upstream_rq", &self.upstream_rq))
    }
}

impl OutlierStats {
    fn samples(&self) -> impl Iterator<Item = Sample> + '_ {
        [
            gauge("outlier_detection.ejections_active", &self.ejections_active),
            counter(
                "outlier_detection.ejections_detected_consecutive_5xx",
                &self.ejections_detected_consecutive_5xx,
            ),
            counter(
                "outlier_detection.ejections_detected_consecutive_gateway_failure",
                &self.ejections_detected_consecutive_gateway_failure,
            ),
            counter(
                "outlier_detection.ejections_detected_consecutive_local_origin_failure",
                &self.ejections_detected_consecutive_local_origin_failure,
            ),
            counter(
                "outlier_detection.ejections_enforced_consecutive_5xx",
                &self.ejections_enforced_consecutive_5xx,
            ),
            counter(
                "outlier_detection.ejections_enforced_consecutive_gateway_failure",
                &self.ejections_enforced_consecutive_gateway_failure,
            ),
            counter(
                "outlier_detection.ejections_enforced_consecutive_local_origin_failure",
                &self.ejections_enforced_consecutive_local_origin_failure,
            ),
            counter(
                "outlier_detection.ejections_enforced_total",
                &self.ejections_enforced_total,
            ),
            counter(
                "outlier_detection.ejections_overflow",
                &self.ejections_overflow,
            ),
        ]
        .into_iter()
    }
}

impl HttpStats {
    fn samples(&self) -> impl Iterator<Item = Sample> + '_ {
        [
            gauge("downstream_cx_active", &self.downstream_cx_active),
            counter("downstream_cx_total", &self.downstream_cx_total),
            gauge("downstream_rq_active", &self.downstream_rq_active),
            counter("downstream_rq_total", &self.downstream_rq_total),
            counter("fault.aborts_injected", &self.fault.aborts_injected),
            gauge("fault.active_faults", &self.fault.active_faults),
            counter("fault.delays_injected", &self.fault.delays_injected),
            counter("fault.faults_overflow", &self.fault.faults_overflow),
        ]
        .into_iter()
        .chain(by_class("downstream_rq", &self.downstream_rq))
        .chain(self.named.samples())
    }
}

/// Prometheus families: one `# TYPE` line, then every sample of the family.
#[derive(Default)]
struct Families(BTreeMap<String, (&'static str, Vec<String>)>);

impl Families {
    fn add(&mut self, name: String, kind: &'static str, labels: &str, value: i64) {
        let sample = if labels.is_empty() {
            format!("{name} {value}")
        } else {
            format!("{name}{{{labels}}} {value}")
        };
        self.0
            .entry(name)
            .or_insert((kind, Vec::new()))
            .1
            .push(sample);
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
pub(crate) fn escape(value: &str) -> String {
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
