//! Who talks to whom, how much and how well: Istio's standard metrics, as per-second
//! rates, folded into flows keyed by the labels the graph is drawn from.

use std::collections::BTreeMap;

use serde::Serialize;

use super::exposition::label;
use super::histogram::Histogram;

/// The rate of one series over the window: what a scrape window or Prometheus'
/// `rate()` yields.
#[derive(Debug, Clone, PartialEq)]
pub struct SeriesRate {
    /// The metric name (`istio_requests_total`, `…_bucket`…).
    pub name: String,
    /// Its labels, sorted by name.
    pub labels: Vec<(String, String)>,
    /// Per second.
    pub rate: f64,
}

/// A workload as Istio's metrics name it (`source_workload`, `…_namespace`, `…_app`,
/// `…_version`); `unknown` when the peer is outside the mesh.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct Workload {
    /// Its namespace.
    pub namespace: String,
    /// The workload's name (a Deployment's name).
    pub name: String,
    /// Its `app` label (or canonical service).
    pub app: String,
    /// Its `version` label (or canonical revision).
    pub version: String,
}

impl Workload {
    /// The workload `side` (`source` or `destination`) of a series.
    fn of(labels: &[(String, String)], side: &str) -> Workload {
        let get = |field: &str| label(labels, &format!("{side}_{field}")).to_owned();
        let or_unknown = |value: String, fallback: &str| match value.as_str() {
            "" | "unknown" => label(labels, &format!("{side}_{fallback}")).to_owned(),
            _ => value,
        };
        Workload {
            namespace: get("workload_namespace"),
            name: get("workload"),
            app: or_unknown(get("app"), "canonical_service"),
            version: or_unknown(get("version"), "canonical_revision"),
        }
    }

    /// True when the metrics could not name it (a caller outside the mesh, a request
    /// that never reached a workload).
    pub fn is_unknown(&self) -> bool {
        self.name.is_empty() || self.name == "unknown"
    }
}

/// A destination service as Istio's metrics name it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
pub struct ServiceName {
    /// `destination_service`: the host (`reviews.default.svc.cluster.local`).
    pub host: String,
    /// `destination_service_namespace`.
    pub namespace: String,
    /// `destination_service_name`.
    pub name: String,
}

/// Which proxy reported a series (Istio's `reporter` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Reporter {
    /// The caller's proxy: it also sees requests that never reached the destination.
    Source,
    /// The callee's proxy: the only one that knows the connection's mTLS.
    Destination,
}

/// What traffic of a flow speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// HTTP/1.1 or HTTP/2 requests.
    Http,
    /// gRPC requests.
    Grpc,
    /// Opaque TCP.
    Tcp,
}

/// One flow: a source workload calling a service, served by one destination workload,
/// as one reporter saw it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FlowKey {
    /// The caller.
    pub source: Workload,
    /// The service called.
    pub service: ServiceName,
    /// The workload that served it (unknown when none did).
    pub destination: Workload,
    /// HTTP, gRPC or TCP.
    pub protocol: Protocol,
    /// Who reported it.
    pub reporter: Reporter,
}

/// Whether a flow's connections used mutual TLS (`connection_security_policy`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Security {
    /// Some traffic was `mutual_tls`.
    pub mutual: bool,
    /// Some traffic was `none` (plaintext).
    pub plaintext: bool,
}

impl Security {
    /// Adds what `other` saw.
    pub fn merge(&mut self, other: Security) {
        self.mutual |= other.mutual;
        self.plaintext |= other.plaintext;
    }

    /// All traffic whose policy is known was mutual TLS.
    pub fn is_mtls(self) -> bool {
        self.mutual && !self.plaintext
    }
}

/// A flow's rates, summed over response codes and replicas.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Flow {
    /// Requests per second.
    pub requests: f64,
    /// Failed requests per second (5xx, no response, or a gRPC error status).
    pub errors: f64,
    /// Request duration bucket rates.
    pub latency: Histogram,
    /// TCP bytes per second, both directions.
    pub bytes: f64,
    /// The connections' security.
    pub security: Security,
}

impl Flow {
    /// Adds `other`'s rates.
    pub fn merge(&mut self, other: &Flow) {
        self.requests += other.requests;
        self.errors += other.errors;
        self.latency.merge(&other.latency);
        self.bytes += other.bytes;
        self.security.merge(other.security);
    }
}

/// Every flow seen in one window.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Traffic {
    flows: BTreeMap<FlowKey, Flow>,
}

impl Traffic {
    /// Folds series rates into flows; series of other metrics, other reporters, or
    /// without a rate are ignored.
    pub fn from_rates<'a>(rates: impl IntoIterator<Item = &'a SeriesRate>) -> Traffic {
        let mut flows: BTreeMap<FlowKey, Flow> = BTreeMap::new();
        for series in rates {
            let Some(metric) = Metric::named(&series.name) else {
                continue;
            };
            let labels = &series.labels;
            let reporter = match label(labels, "reporter") {
                "source" => Reporter::Source,
                "destination" => Reporter::Destination,
                _ => continue,
            };
            let protocol = match (metric, label(labels, "request_protocol")) {
                (Metric::TcpBytes, _) => Protocol::Tcp,
                (_, "grpc") => Protocol::Grpc,
                _ => Protocol::Http,
            };
            let key = FlowKey {
                source: Workload::of(labels, "source"),
                service: ServiceName {
                    host: label(labels, "destination_service").to_owned(),
                    namespace: label(labels, "destination_service_namespace").to_owned(),
                    name: label(labels, "destination_service_name").to_owned(),
                },
                destination: Workload::of(labels, "destination"),
                protocol,
                reporter,
            };
            let flow = flows.entry(key).or_default();
            let rate = series.rate;
            match metric {
                Metric::Requests => {
                    flow.requests += rate;
                    if is_error(labels) {
                        flow.errors += rate;
                    }
                }
                Metric::DurationBucket => {
                    let le = label(labels, "le");
                    match le
                        .parse::<f64>()
                        .ok()
                        .or((le == "+Inf").then_some(f64::INFINITY))
                    {
                        Some(le) => flow.latency.add(le, rate),
                        None => continue,
                    }
                }
                Metric::TcpBytes => flow.bytes += rate,
            }
            if rate > 0.0 {
                match label(labels, "connection_security_policy") {
                    "mutual_tls" => flow.security.mutual = true,
                    "none" => flow.security.plaintext = true,
                    _ => {}
                }
            }
        }
        Traffic { flows }
    }

    /// Every flow, as each reporter saw it.
    pub fn flows(&self) -> impl Iterator<Item = (&FlowKey, &Flow)> {
        self.flows.iter()
    }

    /// The flows to count, once each: for every caller and service, the caller's
    /// reports when its proxy made any (it also sees the requests that failed before
    /// reaching a workload), else the destination's (callers without a proxy, such as
    /// an unmeshed client or an unscraped gateway).
    pub fn counted(&self) -> impl Iterator<Item = (&FlowKey, &Flow)> {
        let reported_by_source: std::collections::BTreeSet<(&Workload, &ServiceName)> = self
            .flows
            .keys()
            .filter(|k| k.reporter == Reporter::Source)
            .map(|k| (&k.source, &k.service))
            .collect();
        self.flows.iter().filter(move |(k, _)| {
            k.reporter == Reporter::Source || !reported_by_source.contains(&(&k.source, &k.service))
        })
    }
}

/// True for the metrics the dashboard reads (the others need not be kept).
pub fn reads(name: &str) -> bool {
    Metric::named(name).is_some()
}

/// The metrics the dashboard reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Metric {
    Requests,
    DurationBucket,
    TcpBytes,
}

impl Metric {
    fn named(name: &str) -> Option<Metric> {
        match name {
            "istio_requests_total" => Some(Metric::Requests),
            "istio_request_duration_milliseconds_bucket" => Some(Metric::DurationBucket),
            "istio_tcp_sent_bytes_total" | "istio_tcp_received_bytes_total" => {
                Some(Metric::TcpBytes)
            }
            _ => None,
        }
    }
}

/// A failed request: a 5xx, no response at all (`0`), or a gRPC status other than OK.
fn is_error(labels: &[(String, String)]) -> bool {
    let code = label(labels, "response_code");
    let failed = match code.parse::<u16>() {
        Ok(code) => code == 0 || code >= 500,
        Err(_) => false,
    };
    let grpc = label(labels, "grpc_response_status");
    failed || !(grpc.is_empty() || grpc == "0")
}
