//! Istio's metrics in Prometheus' text format, labels in Istio's order.

use std::fmt::Write;

use super::histogram::Histogram;
use super::series::{HttpKey, HttpSeries, Reporter, Security, Service, TcpKey, TcpSeries};
use super::workload::{UNKNOWN, Workload};
use crate::flags::ResponseFlags;
use crate::stats::escape;

/// The labels of one series, rendered once per scrape: `name="value",…`.
struct Labels(String);

impl Labels {
    fn new() -> Labels {
        Labels(String::with_capacity(1024))
    }

    fn add(&mut self, name: &str, value: &str) {
        if !self.0.is_empty() {
            self.0.push(',');
        }
        let value = if value.is_empty() { UNKNOWN } else { value };
        let _ = write!(self.0, "{name}=\"{}\"", escape(value));
    }

    /// Labels that are empty when there is nothing to say (`grpc_response_status`).
    fn add_raw(&mut self, name: &str, value: &str) {
        self.0.push(',');
        let _ = write!(self.0, "{name}=\"{}\"", escape(value));
    }
}

/// What every series of a family starts with: the reporter, both workloads and the
/// destination service, as Istio orders them.
struct Ends<'a> {
    reporter: Reporter,
    source: &'a Workload,
    destination: &'a Workload,
    service: &'a Service,
}

impl Ends<'_> {
    fn labels(&self) -> Labels {
        let (s, d) = (self.source, self.destination);
        let mut l = Labels::new();
        l.add("reporter", self.reporter.as_str());
        l.add("source_workload", &s.name);
        l.add("source_canonical_service", &s.canonical_service);
        l.add("source_canonical_revision", &s.canonical_revision);
        l.add("source_workload_namespace", &s.namespace);
        l.add("source_principal", UNKNOWN);
        l.add("source_app", &s.app);
        l.add("source_version", &s.version);
        l.add("source_cluster", &s.cluster);
        l.add("destination_workload", &d.name);
        l.add("destination_workload_namespace", &d.namespace);
        l.add("destination_principal", UNKNOWN);
        l.add("destination_app", &d.app);
        l.add("destination_version", &d.version);
        l.add("destination_service", &self.service.host);
        l.add("destination_service_name", &self.service.name);
        l.add("destination_service_namespace", &self.service.namespace);
        l.add("destination_canonical_service", &d.canonical_service);
        l.add("destination_canonical_revision", &d.canonical_revision);
        l.add("destination_cluster", &d.cluster);
        l
    }
}

fn ends<'a>(
    reporter: Reporter,
    local: &'a Workload,
    peer: &'a Workload,
    service: &'a Service,
) -> Ends<'a> {
    let (source, destination) = match reporter {
        Reporter::Source => (local, peer),
        Reporter::Destination => (peer, local),
    };
    Ends {
        reporter,
        source,
        destination,
        service,
    }
}

fn tail(labels: &mut Labels, protocol: &str, flags: ResponseFlags, security: Security) {
    labels.add("request_protocol", protocol);
    let _ = write!(labels.0, ",response_flags=\"{flags}\"");
    labels.add("connection_security_policy", security.as_str());
}

/// One family: its header lines, then its samples.
struct Family {
    name: &'static str,
    kind: &'static str,
    help: &'static str,
    samples: String,
}

impl Family {
    fn new(name: &'static str, kind: &'static str, help: &'static str) -> Family {
        Family {
            name,
            kind,
            help,
            samples: String::new(),
        }
    }

    fn counter(&mut self, labels: &str, value: u64) {
        let _ = writeln!(self.samples, "{}{{{labels}}} {value}", self.name);
    }

    fn histogram(&mut self, labels: &str, h: &Histogram) {
        let name = self.name;
        let mut count = 0;
        for (bound, cumulative) in h.cumulative() {
            let le = bound.map_or_else(|| "+Inf".to_owned(), |b| b.to_string());
            let _ = writeln!(
                self.samples,
                "{name}_bucket{{{labels},le=\"{le}\"}} {cumulative}"
            );
            count = cumulative;
        }
        let _ = writeln!(self.samples, "{name}_sum{{{labels}}} {}", h.sum());
        let _ = writeln!(self.samples, "{name}_count{{{labels}}} {count}");
    }

    fn write(&self, out: &mut String) {
        if self.samples.is_empty() {
            return;
        }
        let _ = writeln!(out, "# HELP {} {}", self.name, self.help);
        let _ = writeln!(out, "# TYPE {} {}", self.name, self.kind);
        out.push_str(&self.samples);
    }
}

/// Renders the HTTP and TCP series of a proxy whose own workload is `local`.
pub fn prometheus(
    local: &Workload,
    http: &[(HttpKey, std::sync::Arc<HttpSeries>)],
    tcp: &[(TcpKey, std::sync::Arc<TcpSeries>)],
) -> String {
    let mut requests = Family::new(
        "istio_requests_total",
        "counter",
        "Requests handled by an Istio proxy.",
    );
    let mut duration = Family::new(
        "istio_request_duration_milliseconds",
        "histogram",
        "Duration of requests, until the response's last byte.",
    );
    let mut request_bytes = Family::new(
        "istio_request_bytes",
        "histogram",
        "Sizes of HTTP request headers and bodies.",
    );
    let mut response_bytes = Family::new(
        "istio_response_bytes",
        "histogram",
        "Sizes of HTTP response headers and bodies.",
    );
    for (key, series) in http {
        let mut labels = ends(key.reporter, local, &key.peer, &key.service).labels();
        labels.add("request_protocol", key.protocol.as_str());
        let _ = write!(labels.0, ",response_code=\"{}\"", key.code);
        let grpc = key.grpc.map(|g| g.to_string()).unwrap_or_default();
        labels.add_raw("grpc_response_status", &grpc);
        let _ = write!(labels.0, ",response_flags=\"{}\"", key.flags);
        labels.add("connection_security_policy", key.security.as_str());
        requests.counter(&labels.0, series.requests.get());
        duration.histogram(&labels.0, &series.duration);
        request_bytes.histogram(&labels.0, &series.request_bytes);
        response_bytes.histogram(&labels.0, &series.response_bytes);
    }
    let mut opened = Family::new(
        "istio_tcp_connections_opened_total",
        "counter",
        "TCP connections opened.",
    );
    let mut closed = Family::new(
        "istio_tcp_connections_closed_total",
        "counter",
        "TCP connections closed.",
    );
    let mut received = Family::new(
        "istio_tcp_received_bytes_total",
        "counter",
        "Bytes received from the downstream of TCP connections.",
    );
    let mut sent = Family::new(
        "istio_tcp_sent_bytes_total",
        "counter",
        "Bytes sent to the downstream of TCP connections.",
    );
    for (key, series) in tcp {
        let mut labels = ends(key.reporter, local, &key.peer, &key.service).labels();
        tail(&mut labels, "tcp", key.flags, key.security);
        opened.counter(&labels.0, series.opened.get());
        closed.counter(&labels.0, series.closed.get());
        received.counter(&labels.0, series.received.get());
        sent.counter(&labels.0, series.sent.get());
    }
    let mut out = String::new();
    for family in [
        &requests,
        &duration,
        &request_bytes,
        &response_bytes,
        &opened,
        &closed,
        &received,
        &sent,
    ] {
        family.write(&mut out);
    }
    out
}
