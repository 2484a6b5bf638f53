//! Workloads as the registry sees them: a `WorkloadEntry` object or a ServiceEntry's
//! inline endpoint, with its labels, identity, health and locality settled once, ready
//! to become one [`Endpoint`] per service port.

use std::collections::BTreeMap;
use std::net::IpAddr;

use mizzen_api::networking::WorkloadEntry;
use mizzen_api::types::Labels;
use mizzen_api::{Kind, Object, Resource};

use super::spiffe_identity;
use crate::model::push::MeshConfig;
use crate::model::security::parse_go_bool;
use crate::model::service::{Endpoint, HealthStatus};
use crate::store::Snapshot;

/// The annotation that turns on health checking for a WorkloadEntry; with it, only the
/// `Healthy` condition set to `True` makes the entry healthy.
const HEALTH_CHECKS_ANNOTATION: &str = "proxy.istio.io/health-checks-enabled";
/// The status condition health checks report.
const HEALTHY_CONDITION: &str = "Healthy";
/// The label Istio reads a locality from (`region.zone.subzone`) when none is set.
const LOCALITY_LABEL: &str = "istio-locality";
/// The prefix of a Unix domain socket address.
const UNIX_PREFIX: &str = "unix://";

/// One workload: where it is, what it is called and how it is labelled.
#[derive(Debug, Clone)]
pub(super) struct Workload<'a> {
    /// The WorkloadEntry's name; empty for inline endpoints.
    pub name: &'a str,
    /// The namespace it belongs to.
    pub namespace: &'a str,
    /// Address, port map, network, weight, service account.
    pub spec: &'a WorkloadEntry,
    /// The spec's labels overlaid by the object's metadata labels (metadata wins, as in
    /// Istio).
    pub labels: Labels,
    /// Ready or not.
    pub health: HealthStatus,
    /// `region/zone/subzone`.
    pub locality: String,
}

/// What kind of address a workload has, which decides the services that may use it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AddressKind {
    /// An IP address: any service.
    Ip,
    /// A Unix domain socket or a DNS name: only DNS-resolved ServiceEntries, since a
    /// Kubernetes Service or a STATIC entry needs IPs.
    DnsOnly,
    /// No address (a workload reached through its network's gateway, which Mizzen does
    /// not model): no service.
    None,
}

impl<'a> Workload<'a> {
    /// The WorkloadEntry `entry`.
    pub fn from_entry(entry: &'a Resource<WorkloadEntry>) -> Self {
        let meta = &entry.metadata;
        let mut labels = entry.spec.labels.clone();
        labels.extend(
            meta.labels
                .iter()
                .flatten()
                .map(|(k, v)| (k.clone(), v.clone())),
        );
        let health = if health_checked(meta.annotations.as_ref()) && !healthy(entry) {
            HealthStatus::Unhealthy
        } else {
            HealthStatus::Healthy
        };
        Self::new(
            meta.name.as_deref().unwrap_or_default(),
            meta.namespace.as_deref().unwrap_or_default(),
            &entry.spec,
            labels,
            health,
        )
    }

    /// A ServiceEntry's inline endpoint, in the entry's `namespace`.
    pub fn inline(spec: &'a WorkloadEntry, namespace: &'a str) -> Self {
        Self::new(
            "",
            namespace,
            spec,
            spec.labels.clone(),
            HealthStatus::Healthy,
        )
    }

    fn new(
        name: &'a str,
        namespace: &'a str,
        spec: &'a WorkloadEntry,
        labels: Labels,
        health: HealthStatus,
    ) -> Self {
        let locality = if spec.locality.is_empty() {
            labels
                .get(LOCALITY_LABEL)
                .map(|l| l.replace('.', "/"))
                .unwrap_or_default()
        } else {
            spec.locality.clone()
        };
        Self {
            name,
            namespace,
            spec,
            labels,
            health,
            locality,
        }
    }

    /// What kind of address the workload has.
    pub fn address_kind(&self) -> AddressKind {
        let address = self.spec.address.as_str();
        if address.is_empty() {
            AddressKind::None
        } else if address.parse::<IpAddr>().is_ok() {
            AddressKind::Ip
        } else {
            AddressKind::DnsOnly
        }
    }

    /// True for a Unix domain socket address (which has no port).
    pub fn is_unix(&self) -> bool {
        self.spec.address.starts_with(UNIX_PREFIX)
    }

    /// The workload's own port for the service port named `name`, when it maps one.
    pub fn named_port(&self, name: &str) -> Option<u16> {
        self.spec
            .ports
            .get(name)
            .and_then(|&p| u16::try_from(p).ok())
            .filter(|&p| p > 0)
    }

    /// True when the workload carries every label `selector` asks for (an empty selector
    /// selects every workload).
    pub fn selected_by(&self, selector: &BTreeMap<String, String>) -> bool {
        selector
            .iter()
            .all(|(k, v)| self.labels.get(k).is_some_and(|have| have == v))
    }

    /// The endpoint serving the service port `service_port_name` on `port`.
    pub fn endpoint(&self, port: u16, service_port_name: &str, mesh: &MeshConfig) -> Endpoint {
        Endpoint {
            address: self.spec.address.clone(),
            port,
            service_port_name: service_port_name.to_owned(),
            labels: self.labels.clone(),
            locality: self.locality.clone(),
            weight: self.spec.weight.max(1),
            service_account: if self.spec.service_account.is_empty() {
                String::new()
            } else {
                spiffe_identity(mesh, self.namespace, &self.spec.service_account)
            },
            network: self.spec.network.clone(),
            health: self.health,
            workload: self.name.to_owned(),
            workload_namespace: if self.name.is_empty() {
                String::new()
            } else {
                self.namespace.to_owned()
            },
        }
    }
}

/// Every WorkloadEntry in `config`, by namespace and name.
pub(super) fn entries(config: &Snapshot) -> Vec<Workload<'_>> {
    config
        .of_kind(Kind::WorkloadEntry)
        .filter_map(|object| match object.as_ref() {
            Object::WorkloadEntry(entry) => Some(Workload::from_entry(entry)),
            _ => None,
        })
        .collect()
}

fn health_checked(annotations: Option<&BTreeMap<String, String>>) -> bool {
    annotations
        .and_then(|a| a.get(HEALTH_CHECKS_ANNOTATION))
        .is_some_and(|v| parse_go_bool(v) == Some(true))
}

/// True when the status carries the `Healthy` condition set to `True`; unset counts as
/// unhealthy, so that a new entry receives traffic only once a probe succeeded.
fn healthy(entry: &Resource<WorkloadEntry>) -> bool {
    let Some(conditions) = entry
        .status
        .as_ref()
        .and_then(|s| s.get("conditions"))
        .and_then(|c| c.as_array())
    else {
        return false;
    };
    conditions.iter().any(|c| {
        c.get("type").and_then(|t| t.as_str()) == Some(HEALTHY_CONDITION)
            && c.get("status").and_then(|s| s.as_str()) == Some("True")
    })
}
