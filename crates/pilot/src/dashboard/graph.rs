//! The service graph served at `/api/graph`, drawn as Kiali draws its versioned-app
//! graph: workloads (with their version) call services, services are served by
//! workloads, so a traffic split shows as one service with an edge to each version.

use std::collections::BTreeMap;

use serde::Serialize;

use super::histogram::Histogram;
use super::traffic::{Flow, Protocol, Security, ServiceName, Traffic, Workload};
use crate::model::{Registry, Service};

/// The graph of one window's traffic.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Graph {
    /// Workloads and services, by id.
    pub nodes: Vec<Node>,
    /// Edges, by source then target.
    pub edges: Vec<Edge>,
}

/// What a node stands for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum NodeKind {
    /// A workload (Deployment), with its app and version.
    Workload,
    /// A service (host).
    Service,
    /// Callers the metrics could not name (outside the mesh).
    Unknown,
}

/// A node of the graph.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Node {
    /// `workload:NS/NAME`, `service:HOST` or `unknown`.
    pub id: String,
    /// What it stands for.
    pub kind: NodeKind,
    /// Its namespace (empty for unknown).
    pub namespace: String,
    /// The workload's or service's name.
    pub name: String,
    /// A workload's `app`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub app: String,
    /// A workload's `version`.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub version: String,
    /// A service's host.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub host: String,
    /// True for a service in the registry that had no traffic in the window.
    pub idle: bool,
}

/// Traffic from one node to another.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Edge {
    /// The caller's node id.
    pub source: String,
    /// The callee's node id.
    pub target: String,
    /// HTTP, gRPC or TCP.
    pub protocol: Protocol,
    /// Requests per second.
    pub rps: f64,
    /// Failed requests, in percent of all.
    pub error_pct: f64,
    /// Median request duration, milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p50_ms: Option<f64>,
    /// 99th percentile request duration, milliseconds.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub p99_ms: Option<f64>,
    /// TCP bytes per second (TCP edges).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes_per_sec: Option<f64>,
    /// All traffic whose security is known was mutual TLS.
    pub mtls: bool,
}

/// Request rate, errors and latency of some traffic, rounded for display.
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize)]
pub struct Summary {
    /// Requests per second.
    pub rps: f64,
    /// Failed requests, in percent of all.
    pub error_pct: f64,
    /// Median request duration, milliseconds.
    pub p50_ms: Option<f64>,
    /// 99th percentile request duration, milliseconds.
    pub p99_ms: Option<f64>,
}

impl Summary {
    /// The summary of `flow`.
    pub fn of(flow: &Flow) -> Summary {
        let quantile = |h: &Histogram, q: f64| h.quantile(q).map(round);
        Summary {
            rps: round(flow.requests),
            error_pct: match flow.requests > 0.0 {
                true => round(100.0 * flow.errors / flow.requests),
                false => 0.0,
            },
            p50_ms: quantile(&flow.latency, 0.5),
            p99_ms: quantile(&flow.latency, 0.99),
        }
    }
}

/// Three decimals: what a person reads, and a JSON number that compares exactly.
pub fn round(value: f64) -> f64 {
    (value * 1000.0).round() / 1000.0
}

/// The id of a workload's node (`unknown` for callers the metrics could not name).
pub fn workload_id(workload: &Workload) -> String {
    match workload.is_unknown() {
        true => "unknown".to_owned(),
        false => format!("workload:{}/{}", workload.namespace, workload.name),
    }
}

/// The id of a service's node.
pub fn service_id(host: &str) -> String {
    format!("service:{host}")
}

impl Graph {
    /// The graph of `traffic`, with the registry's services that had none as idle nodes.
    pub fn build(traffic: &Traffic, registry: &Registry) -> Graph {
        let mut nodes: BTreeMap<String, Node> = BTreeMap::new();
        let mut edges: BTreeMap<(String, String, Protocol), Flow> = BTreeMap::new();
        for (key, flow) in traffic.counted() {
            let source = workload_node(&key.source);
            let service = service_node(&key.service, registry);
            edges
                .entry((source.id.clone(), service.id.clone(), key.protocol))
                .or_default()
                .merge(flow);
            if !key.destination.is_unknown() {
                let destination = workload_node(&key.destination);
                edges
                    .entry((service.id.clone(), destination.id.clone(), key.protocol))
                    .or_default()
                    .merge(flow);
                nodes.insert(destination.id.clone(), destination);
            }
            nodes.insert(source.id.clone(), source);
            nodes.insert(service.id.clone(), service);
        }
        // The destination's reports carry the connections' security, whichever
        // reporter's rates an edge counts.
        let mut security: BTreeMap<(String, String, Protocol), Security> = BTreeMap::new();
        for (key, flow) in traffic.flows() {
            let service = service_id(&key.service.host);
            let mut add = |from: String, to: String| {
                security
                    .entry((from, to, key.protocol))
                    .or_default()
                    .merge(flow.security);
            };
            add(workload_id(&key.source), service.clone());
            if !key.destination.is_unknown() {
                add(service, workload_id(&key.destination));
            }
        }
        for service in registry.services() {
            let id = service_id(service.hostname.as_str());
            nodes.entry(id).or_insert_with(|| Node {
                idle: true,
                ..registry_node(service)
            });
        }
        let edges = edges
            .into_iter()
            .map(|((source, target, protocol), flow)| {
                let summary = Summary::of(&flow);
                let mtls = security
                    .get(&(source.clone(), target.clone(), protocol))
                    .is_some_and(|s| s.is_mtls());
                let tcp = protocol == Protocol::Tcp;
                Edge {
                    source,
                    target,
                    protocol,
                    rps: summary.rps,
                    error_pct: summary.error_pct,
                    p50_ms: summary.p50_ms,
                    p99_ms: summary.p99_ms,
                    bytes_per_sec: tcp.then(|| round(flow.bytes)),
                    mtls,
                }
            })
            .collect();
        Graph {
            nodes: nodes.into_values().collect(),
            edges,
        }
    }
}

fn workload_node(workload: &Workload) -> Node {
    let id = workload_id(workload);
    match workload.is_unknown() {
        true => Node {
            id,
            kind: NodeKind::Unknown,
            namespace: String::new(),
            name: "unknown".to_owned(),
            app: String::new(),
            version: String::new(),
            host: String::new(),
            idle: false,
        },
        false => Node {
            id,
            kind: NodeKind::Workload,
            namespace: workload.namespace.clone(),
            name: workload.name.clone(),
            app: workload.app.clone(),
            version: workload.version.clone(),
            host: String::new(),
            idle: false,
        },
    }
}

/// A service's node, named as the registry names it when it knows the host.
fn service_node(service: &ServiceName, registry: &Registry) -> Node {
    let host = crate::model::Hostname::new(&service.host);
    match registry.services_named(&host).first() {
        Some(known) => registry_node(known),
        None => Node {
            id: service_id(&service.host),
            kind: NodeKind::Service,
            namespace: service.namespace.clone(),
            name: match service.name.as_str() {
                "" | "unknown" => service.host.clone(),
                name => name.to_owned(),
            },
            app: String::new(),
            version: String::new(),
            host: service.host.clone(),
            idle: false,
        },
    }
}

fn registry_node(service: &Service) -> Node {
    Node {
        id: service_id(service.hostname.as_str()),
        kind: NodeKind::Service,
        namespace: service.namespace.clone(),
        name: short_name(service).to_owned(),
        app: String::new(),
        version: String::new(),
        host: service.hostname.as_str().to_owned(),
        idle: false,
    }
}

/// A Kubernetes service's name (`reviews` of `reviews.default.svc.cluster.local`);
/// the host for other services.
pub fn short_name(service: &Service) -> &str {
    let host = service.hostname.as_str();
    let kubernetes = |rest: &str| {
        rest.strip_prefix(service.namespace.as_str())
            .is_some_and(|r| r.starts_with(".svc."))
    };
    match host.split_once('.') {
        Some((name, rest)) if kubernetes(rest) => name,
        _ => host,
    }
}
