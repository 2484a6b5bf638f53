//! One series of each Istio metric family: what labels it (its key) and what it counts.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::histogram::{BYTES, DURATION_MS, Histogram};
use super::interned::Digested;
use super::overrides::Custom;
use super::workload::Peer;
use crate::flags::ResponseFlags;
use crate::tls::Session;
use crate::upstream::Identities;

/// Which side of a request reports it (Istio's `reporter` label).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reporter {
    /// The client's proxy, or a gateway.
    Source,
    /// The server's proxy.
    Destination,
}

impl Reporter {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Reporter::Source => "source",
            Reporter::Destination => "destination",
        }
    }
}

/// `connection_security_policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Security {
    /// The downstream connection was mutual TLS.
    MutualTls,
    /// Plain text at the destination.
    None,
    /// What the source reporter says: it cannot know.
    Unknown,
}

impl Security {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Security::MutualTls => "mutual_tls",
            Security::None => "none",
            Security::Unknown => "unknown",
        }
    }
}

/// `source_principal` and `destination_principal`: the SPIFFE identities of the ends, as
/// the destination's mutual TLS connection shows them.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Principals {
    /// The client's certificate's URI SAN.
    pub source: Option<Arc<str>>,
    /// The URI SAN of the certificate this proxy presented.
    pub destination: Option<Arc<str>>,
}

impl Principals {
    /// What a downstream connection secured by `tls` shows `reporter`, and how it was
    /// secured: at the destination, the client's certificate and this proxy's own; the
    /// source's proxy, whose downstream is its own app, knows neither (`unknown`): its
    /// principals come from the upstream connection ([`Principals::upstream`]).
    pub fn of(reporter: Reporter, tls: Option<&Session>) -> (Principals, Security) {
        match (reporter, tls) {
            (Reporter::Source, _) => (Principals::default(), Security::Unknown),
            (Reporter::Destination, None) => (Principals::default(), Security::None),
            (Reporter::Destination, Some(session)) => {
                let first = |sans: &[String]| sans.first().map(|s| Arc::<str>::from(s.as_str()));
                let principals = Principals {
                    source: session.peer.as_ref().and_then(|p| first(&p.info.uri_sans)),
                    destination: first(&session.local_uri_sans),
                };
                (principals, Security::MutualTls)
            }
        }
    }
}

impl Principals {
    /// What the source's proxy knows of an upstream TLS connection, as Istio reads it
    /// at the source: its own certificate's identity and the upstream's.
    pub fn upstream(identities: &Identities) -> Principals {
        Principals {
            source: identities.local.clone(),
            destination: identities.peer.clone(),
        }
    }
}

/// `request_protocol` of an HTTP request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// HTTP.
    Http,
    /// gRPC (`content-type: application/grpc…`).
    Grpc,
}

impl Protocol {
    /// The label value.
    pub fn as_str(self) -> &'static str {
        match self {
            Protocol::Http => "http",
            Protocol::Grpc => "grpc",
        }
    }
}

/// The service a request was for (`destination_service*`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Service {
    /// Its host (`reviews.default.svc.cluster.local`).
    pub host: String,
    /// Its short name (`reviews`).
    pub name: String,
    /// Its namespace.
    pub namespace: String,
}

impl Service {
    /// The service of a host name: a Kubernetes service's name and namespace are its
    /// first two labels; any other host names itself.
    pub fn of_host(host: &str) -> Service {
        let host = host.split(':').next().unwrap_or(host);
        let mut labels = host.split('.');
        let (name, namespace) = match (labels.next(), labels.next(), labels.next()) {
            (Some(name), Some(namespace), Some("svc")) => (name, namespace),
            _ => (host, ""),
        };
        Service {
            host: host.to_owned(),
            name: name.to_owned(),
            namespace: namespace.to_owned(),
        }
    }

    /// The service of an Istio cluster name (`outbound|9080|v1|reviews.default.svc…`),
    /// None for clusters that name no service (`inbound|9080||`, `PassthroughCluster`).
    pub fn of_cluster(cluster: &str) -> Option<Service> {
        let host = cluster.split('|').nth(3).filter(|h| !h.is_empty())?;
        Some(Service::of_host(host))
    }
}

/// The labels of an HTTP series besides the proxy's own workload.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct HttpKey {
    /// Who reports it.
    pub reporter: Reporter,
    /// The workload at the other end.
    pub peer: Peer,
    /// The service asked for.
    pub service: Digested<Service>,
    /// HTTP or gRPC.
    pub protocol: Protocol,
    /// The response's status.
    pub code: u16,
    /// gRPC's status, for gRPC responses that carry one.
    pub grpc: Option<u32>,
    /// Why the proxy ended the request as it did.
    pub flags: ResponseFlags,
    /// How the downstream connection was secured.
    pub security: Security,
    /// The ends' identities.
    pub principals: Principals,
    /// The chain's overrides and their values for this series, if it has any.
    pub custom: Option<Custom>,
}

/// The labels of a TCP series besides the proxy's own workload.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TcpKey {
    /// Who reports it.
    pub reporter: Reporter,
    /// The workload at the other end.
    pub peer: Peer,
    /// The service connected to.
    pub service: Digested<Service>,
    /// Why the proxy ended the connection as it did.
    pub flags: ResponseFlags,
    /// How the downstream connection was secured.
    pub security: Security,
    /// The ends' identities.
    pub principals: Principals,
    /// The chain's overrides and their values for this series, if it has any.
    pub custom: Option<Custom>,
}

/// A monotonic count.
#[derive(Debug, Default)]
pub struct Count(AtomicU64);

impl Count {
    /// Adds `n`.
    pub fn add(&self, n: u64) {
        self.0.fetch_add(n, Ordering::Relaxed);
    }

    /// The count.
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// The HTTP metrics of one label set.
#[derive(Debug)]
pub struct HttpSeries {
    /// `istio_requests_total`.
    pub requests: Count,
    /// `istio_request_duration_milliseconds`.
    pub duration: Histogram,
    /// `istio_request_bytes`.
    pub request_bytes: Histogram,
    /// `istio_response_bytes`.
    pub response_bytes: Histogram,
}

impl Default for HttpSeries {
    fn default() -> Self {
        HttpSeries {
            requests: Count::default(),
            duration: Histogram::new(DURATION_MS),
            request_bytes: Histogram::new(BYTES),
            response_bytes: Histogram::new(BYTES),
        }
    }
}

/// The TCP metrics of one label set.
#[derive(Debug, Default)]
pub struct TcpSeries {
    /// `istio_tcp_connections_opened_total`.
    pub opened: Count,
    /// `istio_tcp_connections_closed_total`.
    pub closed: Count,
    /// `istio_tcp_received_bytes_total`: from the downstream.
    pub received: Count,
    /// `istio_tcp_sent_bytes_total`: to the downstream.
    pub sent: Count,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn services_come_from_istio_cluster_names() {
        let s = Service::of_cluster("outbound|9080|v1|reviews.default.svc.cluster.local");
        assert_eq!(
            s,
            Some(Service {
                host: "reviews.default.svc.cluster.local".into(),
                name: "reviews".into(),
                namespace: "default".into(),
            })
        );
        assert_eq!(Service::of_cluster("inbound|9080||"), None);
        assert_eq!(Service::of_cluster("PassthroughCluster"), None);
        assert_eq!(Service::of_host("httpbin.org:443").name, "httpbin.org");
    }
}
