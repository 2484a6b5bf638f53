//! A service's page, served at `/api/services/{ns}/{name}`: its traffic in and out over
//! time, the VirtualServices and DestinationRules that apply to it, and what an
//! analyzer found about it.

use std::collections::BTreeSet;
use std::sync::Arc;

use mizzen_api::{Kind, Object};
use serde::Serialize;
use serde_json::Value;

use super::graph::{Summary, short_name};
use super::history::History;
use super::traffic::{Flow, Workload};
use crate::model::{PushContext, Service, resolve_host};

/// One finding about the config, as `istioctl analyze -o json` prints it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Finding {
    /// `Error`, `Warning` or `Info`.
    pub level: String,
    /// The message code (`IST0101`).
    pub code: String,
    /// The object it is about (`VirtualService default/reviews`).
    pub origin: String,
    /// What is wrong.
    pub message: String,
}

/// What an analyzer finds about a service; the dashboard shows it on the service's page.
pub trait Findings: Send + Sync + 'static {
    /// The findings about `service` in the config of `push`.
    fn for_service(&self, push: &PushContext, service: &Service) -> Vec<Finding>;
}

/// No analyzer: no findings.
#[derive(Debug, Clone, Copy, Default)]
pub struct NoFindings;

impl Findings for NoFindings {
    fn for_service(&self, _: &PushContext, _: &Service) -> Vec<Finding> {
        Vec::new()
    }
}

/// One point of a chart.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Point {
    /// Milliseconds since the Unix epoch.
    pub t: u64,
    /// The traffic's rate, errors and latency then.
    #[serde(flatten)]
    pub summary: Summary,
}

/// Everything the service page shows.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ServicePage {
    /// The service's namespace.
    pub namespace: String,
    /// Its name.
    pub name: String,
    /// Its host.
    pub host: String,
    /// The workloads that served it within the history.
    pub workloads: Vec<Workload>,
    /// Requests to it, over time.
    pub inbound: Vec<Point>,
    /// Requests its workloads made, over time.
    pub outbound: Vec<Point>,
    /// The VirtualServices whose hosts include it.
    pub virtual_services: Vec<Value>,
    /// The DestinationRules whose host matches it.
    pub destination_rules: Vec<Value>,
    /// What the analyzer found.
    pub findings: Vec<Finding>,
}

impl ServicePage {
    /// The page of the service `name` in `namespace`, or `None` if the registry has none.
    pub fn build(
        push: &PushContext,
        history: &History,
        findings: &dyn Findings,
        namespace: &str,
        name: &str,
    ) -> Option<ServicePage> {
        let service = push
            .registry
            .services()
            .find(|s| s.namespace == namespace && short_name(s) == name)?;
        let host = service.hostname.as_str();
        let workloads: BTreeSet<&Workload> = history
            .ticks()
            .flat_map(|tick| tick.traffic.counted())
            .filter(|(key, _)| key.service.host == host && !key.destination.is_unknown())
            .map(|(key, _)| &key.destination)
            .collect();
        let series = |include: &dyn Fn(&super::traffic::FlowKey) -> bool| -> Vec<Point> {
            history
                .ticks()
                .map(|tick| {
                    let mut total = Flow::default();
                    for (_, flow) in tick.traffic.counted().filter(|(key, _)| include(key)) {
                        total.merge(flow);
                    }
                    Point {
                        t: tick.unix_ms(),
                        summary: Summary::of(&total),
                    }
                })
                .collect()
        };
        let inbound = series(&|key| key.service.host == host);
        let outbound = series(&|key| workloads.contains(&key.source));
        Some(ServicePage {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            host: host.to_owned(),
            workloads: workloads.iter().map(|w| (*w).clone()).collect(),
            inbound,
            outbound,
            virtual_services: applying(push, service, Kind::VirtualService),
            destination_rules: applying(push, service, Kind::DestinationRule),
            findings: findings.for_service(push, service),
        })
    }
}

/// The VirtualServices that route for `service` (bound to the mesh, with a host that
/// matches it) or to it (a route's destination), as Kiali lists them; the
/// DestinationRules whose host matches it.
fn applying(push: &PushContext, service: &Arc<Service>, kind: Kind) -> Vec<Value> {
    let matches = |host: &str, namespace: &str| {
        resolve_host(host, namespace, &push.mesh).matches(&service.hostname)
    };
    push.config
        .of_kind(kind)
        .filter(|object| match object.as_ref() {
            Object::VirtualService(vs) => {
                let namespace = vs.metadata.namespace.as_deref().unwrap_or_default();
                let spec = &vs.spec;
                let mesh = spec.gateways.is_empty() || spec.gateways.iter().any(|g| g == "mesh");
                let destinations = spec
                    .http
                    .iter()
                    .flat_map(|r| r.route.iter().map(|d| &d.destination))
                    .chain(
                        spec.tcp
                            .iter()
                            .flat_map(|r| r.route.iter().map(|d| &d.destination)),
                    )
                    .chain(
                        spec.tls
                            .iter()
                            .flat_map(|r| r.route.iter().map(|d| &d.destination)),
                    );
                (mesh && spec.hosts.iter().any(|h| matches(h, namespace)))
                    || destinations
                        .into_iter()
                        .any(|d| resolve_host(&d.host, namespace, &push.mesh) == service.hostname)
            }
            Object::DestinationRule(dr) => matches(
                &dr.spec.host,
                dr.metadata.namespace.as_deref().unwrap_or_default(),
            ),
            _ => false,
        })
        .filter_map(|object| serde_json::to_value(&**object).ok())
        .collect()
}
