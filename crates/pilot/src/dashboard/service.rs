//! A service's page, served at `/api/services/{ns}/{name}`: its traffic in and out over
//! time, the VirtualServices and DestinationRules that apply to it, and what the
//! analyzers found about it.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use mizzen_api::analyze::Finding;
use mizzen_api::{Kind, Object};
use serde::Serialize;
use serde_json::Value;

use super::graph::{Summary, short_name};
use super::history::History;
use super::traffic::{Flow, Workload};
use crate::model::{PushContext, Service, resolve_host};
use crate::server::Findings;

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
    /// What the analyzers found about the objects that define the service or apply
    /// to it.
    pub findings: Vec<Finding>,
}

impl ServicePage {
    /// The page of the service `name` in `namespace`, or `None` if the registry has none.
    pub fn build(
        push: &PushContext,
        history: &History,
        findings: &Findings,
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
        let config = Config::of(push, service);
        let origins: HashSet<String> = config.all().map(|o| o.key().to_string()).collect();
        let json = |objects: Vec<&Arc<Object>>| {
            objects
                .into_iter()
                .filter_map(|o| serde_json::to_value(&**o).ok())
                .collect()
        };
        Some(ServicePage {
            namespace: namespace.to_owned(),
            name: name.to_owned(),
            host: host.to_owned(),
            workloads: workloads.iter().map(|w| (*w).clone()).collect(),
            inbound,
            outbound,
            findings: findings
                .messages
                .iter()
                .filter(|f| f.origin.as_ref().is_some_and(|o| origins.contains(o)))
                .cloned()
                .collect(),
            virtual_services: json(config.virtual_services),
            destination_rules: json(config.destination_rules),
        })
    }
}

/// The config objects of a service: what defines it and what applies to it. The page
/// lists the latter, and shows the findings about any of them.
struct Config<'a> {
    /// The Kubernetes Service or the ServiceEntries that define its host.
    defining: Vec<&'a Arc<Object>>,
    /// See [`applying`].
    virtual_services: Vec<&'a Arc<Object>>,
    /// See [`applying`].
    destination_rules: Vec<&'a Arc<Object>>,
}

impl<'a> Config<'a> {
    fn of(push: &'a PushContext, service: &Service) -> Config<'a> {
        let defines = |host: &str, namespace: &str| {
            namespace == service.namespace
                && resolve_host(host, namespace, &push.mesh) == service.hostname
        };
        let defining = push
            .config
            .of_kind(Kind::Service)
            .chain(push.config.of_kind(Kind::ServiceEntry))
            .filter(|object| match object.as_ref() {
                Object::Service(s) => {
                    let meta = &s.metadata;
                    defines(
                        meta.name.as_deref().unwrap_or_default(),
                        meta.namespace.as_deref().unwrap_or_default(),
                    )
                }
                Object::ServiceEntry(se) => {
                    let namespace = se.metadata.namespace.as_deref().unwrap_or_default();
                    se.spec.hosts.iter().any(|h| defines(h, namespace))
                }
                _ => false,
            })
            .collect();
        Config {
            defining,
            virtual_services: applying(push, service, Kind::VirtualService),
            destination_rules: applying(push, service, Kind::DestinationRule),
        }
    }

    fn all(&self) -> impl Iterator<Item = &&'a Arc<Object>> {
        self.defining
            .iter()
            .chain(&self.virtual_services)
            .chain(&self.destination_rules)
    }
}

/// The VirtualServices that route for `service` (bound to the mesh, with a host that
/// matches it) or to it (a route's destination), as Kiali lists them; the
/// DestinationRules whose host matches it.
fn applying<'a>(push: &'a PushContext, service: &Service, kind: Kind) -> Vec<&'a Arc<Object>> {
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
        .collect()
}
