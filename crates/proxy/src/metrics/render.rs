//! Istio's metrics in Prometheus' text format, labels in Istio's order, as each series'
//! chain's overrides rearrange them.

use std::collections::HashMap;
use std::fmt::Write;

use super::histogram::Histogram;
use super::overrides::{Custom, Family as Metric};
use super::series::{HttpKey, HttpSeries, Principals, Reporter, Service, TcpKey, TcpSeries};
use super::workload::{UNKNOWN, Workload};
use crate::stats::escape;

/// The labels of one series: names and values, in order.
type Labels<'a> = Vec<(&'a str, &'a str)>;

/// `name="value",…`, an empty value read as `unknown` except where `raw` allows it.
fn join(labels: &Labels<'_>) -> String {
    let mut out = String::with_capacity(1024);
    for (name, value) in labels {
        if !out.is_empty() {
            out.push(',');
        }
        let value = if value.is_empty() && *name != GRPC_STATUS {
            UNKNOWN
        } else {
            value
        };
        let _ = write!(out, "{name}=\"{}\"", escape(value));
    }
    out
}

/// The one label that is empty when there is nothing to say.
const GRPC_STATUS: &str = "grpc_response_status";

/// What every series of a family starts with: the reporter, both workloads and the
/// destination service, as Istio orders them.
fn ends<'a>(
    reporter: Reporter,
    local: &'a Workload,
    peer: &'a Workload,
    service: &'a Service,
    principals: &'a Principals,
) -> Labels<'a> {
    let principal = |p: &'a Option<std::sync::Arc<str>>| p.as_deref().unwrap_or(UNKNOWN);
    let (s, d) = match reporter {
        Reporter::Source => (local, peer),
        Reporter::Destination => (peer, local),
    };
    vec![
        ("reporter", reporter.as_str()),
        ("source_workload", &s.name),
        ("source_canonical_service", &s.canonical_service),
        ("source_canonical_revision", &s.canonical_revision),
        ("source_workload_namespace", &s.namespace),
        ("source_principal", principal(&principals.source)),
        ("source_app", &s.app),
        ("source_version", &s.version),
        ("source_cluster", &s.cluster),
        ("destination_workload", &d.name),
        ("destination_workload_namespace", &d.namespace),
        ("destination_principal", principal(&principals.destination)),
        ("destination_app", &d.app),
        ("destination_version", &d.version),
        ("destination_service", &service.host),
        ("destination_service_name", &service.name),
        ("destination_service_namespace", &service.namespace),
        ("destination_canonical_service", &d.canonical_service),
        ("destination_canonical_revision", &d.canonical_revision),
        ("destination_cluster", &d.cluster),
    ]
}

/// A series' labels for `metric`, None when its chain drops the metric.
fn labels_for(metric: Metric, base: &Labels<'_>, custom: Option<&Custom>) -> Option<String> {
    match custom {
        None => Some(join(base)),
        Some(c) if !c.overrides.keeps(metric) => None,
        Some(c) => {
            let mut labels = base.clone();
            c.overrides.apply(metric, &mut labels, &c.values);
            Some(join(&labels))
        }
    }
}

/// A histogram's buckets and sum, summed over the series that render alike.
#[derive(Default)]
struct Buckets {
    cumulative: Vec<(Option<f64>, u64)>,
    sum: f64,
}

impl Buckets {
    fn add(&mut self, h: &Histogram) {
        if self.cumulative.is_empty() {
            self.cumulative = h.cumulative().collect();
        } else {
            for (mine, (_, theirs)) in self.cumulative.iter_mut().zip(h.cumulative()) {
                mine.1 += theirs;
            }
        }
        self.sum += h.sum();
    }
}

/// One family: its header lines, then its samples, those with the same labels summed
/// (a removed label makes series alike).
struct Family<V> {
    metric: Metric,
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    samples: Vec<(String, V)>,
    index: HashMap<String, usize>,
}

impl<V: Default> Family<V> {
    fn new(metric: Metric, name: &'static str, kind: &'static str, help: &'static str) -> Self {
        Family {
            metric,
            name,
            kind,
            help,
            samples: Vec::new(),
            index: HashMap::new(),
        }
    }

    /// The sample of a series with `base` labels, None when its chain drops the metric.
    fn sample(&mut self, base: &Labels<'_>, custom: Option<&Custom>) -> Option<&mut V> {
        let labels = labels_for(self.metric, base, custom)?;
        let i = match self.index.get(&labels) {
            Some(i) => *i,
            None => {
                self.index.insert(labels.clone(), self.samples.len());
                self.samples.push((labels, V::default()));
                self.samples.len() - 1
            }
        };
        Some(&mut self.samples[i].1)
    }

    fn header(&self, out: &mut String) -> bool {
        if self.samples.is_empty() {
            return false;
        }
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} {}", self.name, self.kind);
        true
    }
}

impl Family<u64> {
    fn write(&self, out: &mut String) {
        if self.header(out) {
            for (labels, value) in &self.samples {
                let _ = writeln!(out, "{}{{{labels}}} {value}", self.name);
            }
        }
    }
}

impl Family<Buckets> {
    fn write(&self, out: &mut String) {
        if !self.header(out) {
            return;
        }
        let name = self.name;
        for (labels, b) in &self.samples {
            for (bound, cumulative) in &b.cumulative {
                let le = bound.map_or_else(|| "+Inf".to_owned(), |b| b.to_string());
                let _ = writeln!(out, "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}");
            }
            let count = b.cumulative.last().map_or(0, |(_, c)| *c);
            let _ = writeln!(out, "{name}_sum{{{labels}}} {}", b.sum);
            let _ = writeln!(out, "{name}_count{{{labels}}} {count}");
        }
    }
}

/// Renders the HTTP and TCP series of a proxy whose own workload is `local`.
pub fn prometheus(
    local: &Workload,
    http: &[(HttpKey, std::sync::Arc<HttpSeries>)],
    tcp: &[(TcpKey, std::sync::Arc<TcpSeries>)],
) -> String {
    let mut requests = Family::<u64>::new(
        Metric::Requests,
        "istio_requests_total",
        "counter",
        "Requests handled by an Istio proxy.",
    );
    let mut duration = Family::<Buckets>::new(
        Metric::Duration,
        "istio_request_duration_milliseconds",
        "histogram",
        "Duration of requests, until the response's last byte.",
    );
    let mut request_bytes = Family::<Buckets>::new(
        Metric::RequestBytes,
        "istio_request_bytes",
        "histogram",
        "Sizes of HTTP request headers and bodies.",
    );
    let mut response_bytes = Family::<Buckets>::new(
        Metric::ResponseBytes,
        "istio_response_bytes",
        "histogram",
        "Sizes of HTTP response headers and bodies.",
    );
    for (key, series) in http {
        let code = key.code.to_string();
        let grpc = key.grpc.map(|g| g.to_string()).unwrap_or_default();
        let flags = key.flags.to_string();
        let mut labels = ends(
            key.reporter,
            local,
            &key.peer,
            &key.service,
            &key.principals,
        );
        labels.extend([
            ("request_protocol", key.protocol.as_str()),
            ("response_code", code.as_str()),
            (GRPC_STATUS, grpc.as_str()),
            ("response_flags", flags.as_str()),
            ("connection_security_policy", key.security.as_str()),
        ]);
        let custom = key.custom.as_ref();
        if let Some(n) = requests.sample(&labels, custom) {
            *n += series.requests.get();
        }
        for (family, histogram) in [
            (&mut duration, &series.duration),
            (&mut request_bytes, &series.request_bytes),
            (&mut response_bytes, &series.response_bytes),
        ] {
            if let Some(b) = family.sample(&labels, custom) {
                b.add(histogram);
            }
        }
    }
    let mut opened = Family::<u64>::new(
        Metric::TcpOpened,
        "istio_tcp_connections_opened_total",
        "counter",
        "TCP connections opened.",
    );
    let mut closed = Family::<u64>::new(
        Metric::TcpClosed,
        "istio_tcp_connections_closed_total",
        "counter",
        "TCP connections closed.",
    );
    let mut received = Family::<u64>::new(
        Metric::TcpReceived,
        "istio_tcp_received_bytes_total",
        "counter",
        "Bytes received from the downstream of TCP connections.",
    );
    let mut sent = Family::<u64>::new(
        Metric::TcpSent,
        "istio_tcp_sent_bytes_total",
        "counter",
        "Bytes sent to the downstream of TCP connections.",
    );
    for (key, series) in tcp {
        let flags = key.flags.to_string();
        let mut labels = ends(
            key.reporter,
            local,
            &key.peer,
            &key.service,
            &key.principals,
        );
        labels.extend([
            ("request_protocol", "tcp"),
            ("response_flags", flags.as_str()),
            ("connection_security_policy", key.security.as_str()),
        ]);
        let custom = key.custom.as_ref();
        for (family, count) in [
            (&mut opened, &series.opened),
            (&mut closed, &series.closed),
            (&mut received, &series.received),
            (&mut sent, &series.sent),
        ] {
            if let Some(n) = family.sample(&labels, custom) {
                *n += count.get();
            }
        }
    }
    let mut out = String::new();
    requests.write(&mut out);
    duration.write(&mut out);
    request_bytes.write(&mut out);
    response_bytes.write(&mut out);
    for family in [&opened, &closed, &received, &sent] {
        family.write(&mut out);
    }
    out
}
