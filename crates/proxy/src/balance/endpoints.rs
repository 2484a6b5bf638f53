//! The compiled load assignment: endpoints with their health and weight, grouped by
//! priority and, within a priority, by locality, as Envoy's host sets are.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use mizzen_xds::pb::envoy::config::core::v3::{
    HealthStatus, address, socket_address::PortSpecifier,
};
use mizzen_xds::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, LbEndpoint, LocalityLbEndpoints, lb_endpoint::HostIdentifier,
};

use mizzen_xds::pb::google::protobuf::value::Kind;

use super::outlier::Monitor;
use super::{BalanceError, Reason};
use crate::metrics::{Peer, Workload};

/// An upstream endpoint of a cluster. Clones share its live state (requests in
/// flight, outlier detection), so that a balancer rebuilt on an ejection keeps it.
#[derive(Debug, Clone)]
pub struct Endpoint {
    /// Where to connect.
    pub address: SocketAddr,
    /// The endpoint's load balancing weight (at least 1).
    pub weight: u32,
    /// The health EDS reported.
    pub health: Health,
    /// Where the endpoint runs.
    pub locality: Locality,
    /// The priority of the endpoint's group (0 is the highest).
    pub priority: u32,
    /// The endpoint's hostname from EDS, empty when none was given.
    pub hostname: String,
    /// The workload it belongs to, from Istio's `istio.workload` metadata, if given.
    pub workload: Option<Peer>,
    /// What requests did at the endpoint.
    live: Arc<Live>,
}

/// An endpoint's state that changes with traffic.
#[derive(Debug, Default)]
struct Live {
    /// Requests sent to the endpoint and not yet finished.
    outstanding: AtomicU64,
    /// Its runs of failures, and whether they got it ejected.
    monitor: Monitor,
}

impl Endpoint {
    /// Requests picked for this endpoint whose [`super::Picked`] is still alive.
    pub fn outstanding(&self) -> u64 {
        self.live.outstanding.load(Ordering::Relaxed)
    }

    /// Whether outlier detection ejected it (Envoy's `/failed_outlier_check`).
    pub fn failed_outlier_check(&self) -> bool {
        self.live.monitor.is_ejected()
    }

    /// Counts one more request in flight.
    pub(super) fn begin_request(&self) {
        self.live.outstanding.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a finished request.
    pub(super) fn end_request(&self) {
        self.live.outstanding.fetch_sub(1, Ordering::Relaxed);
    }

    /// Takes over `from`'s live state (the same endpoint in an earlier balancer); a
    /// fresh outlier monitor unless `outlier` (its ejection carried over too).
    pub(super) fn share_live(&mut self, from: &Endpoint, outlier: bool) {
        if !outlier {
            from.live.monitor.clear();
        }
        self.live = from.live.clone();
    }

    /// Its outlier detection counts.
    pub(super) fn monitor(&self) -> &Monitor {
        &self.live.monitor
    }
}

/// An endpoint's health as EDS reports it (`envoy.config.core.v3.HealthStatus`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Health {
    /// No health known; Envoy treats it as healthy.
    Unknown,
    /// Healthy.
    Healthy,
    /// Unhealthy: used only in panic mode.
    Unhealthy,
    /// Draining: excluded from the priority's health, used only in panic mode.
    Draining,
    /// Timed out health checks: treated as unhealthy.
    Timeout,
    /// Degraded: used only when there are too few healthy endpoints.
    Degraded,
}

/// How the balancer treats an endpoint of a given health, as Envoy's coarse health
/// and exclusion do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Usability {
    Healthy,
    Degraded,
    Unhealthy,
    /// Counted in no health ratio (Envoy's EDS_STATUS_DRAINING exclusion).
    Excluded,
}

impl Health {
    /// The health of an EDS `health_status`; values this build doesn't know are
    /// treated as UNKNOWN, as Envoy sets no health flag for them.
    fn from_eds(status: i32) -> Health {
        match HealthStatus::try_from(status) {
            Ok(HealthStatus::Healthy) => Health::Healthy,
            Ok(HealthStatus::Unhealthy) => Health::Unhealthy,
            Ok(HealthStatus::Draining) => Health::Draining,
            Ok(HealthStatus::Timeout) => Health::Timeout,
            Ok(HealthStatus::Degraded) => Health::Degraded,
            Ok(HealthStatus::Unknown) | Err(_) => Health::Unknown,
        }
    }

    /// The EDS name of the status (`HEALTHY`, `DRAINING`, ...), as Envoy's admin shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            Health::Unknown => "UNKNOWN",
            Health::Healthy => "HEALTHY",
            Health::Unhealthy => "UNHEALTHY",
            Health::Draining => "DRAINING",
            Health::Timeout => "TIMEOUT",
            Health::Degraded => "DEGRADED",
        }
    }

    pub(super) fn usability(self) -> Usability {
        match self {
            Health::Unknown | Health::Healthy => Usability::Healthy,
            Health::Degraded => Usability::Degraded,
            Health::Unhealthy | Health::Timeout => Usability::Unhealthy,
            Health::Draining => Usability::Excluded,
        }
    }
}

/// Where endpoints run. Ordered as Envoy orders localities: by region, zone, sub-zone.
#[derive(Debug, Clone, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Locality {
    /// The region (`us-east1`).
    pub region: String,
    /// The zone within the region.
    pub zone: String,
    /// The sub-zone within the zone.
    pub sub_zone: String,
}

impl fmt::Display for Locality {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.region, self.zone, self.sub_zone)
    }
}

/// The endpoints of one locality within one priority, as indices into the cluster's
/// endpoints.
#[derive(Debug, Clone, Default)]
pub(super) struct LocalityHosts {
    /// The locality.
    pub locality: Locality,
    /// The locality's weight; 0 when EDS gave none (it then receives no load when
    /// locality-weighted balancing is on).
    pub weight: u32,
    /// Its endpoints.
    pub hosts: HostLists,
}

/// One group of endpoints split by usability, in EDS order.
#[derive(Debug, Clone, Default)]
pub(super) struct HostLists {
    /// Every endpoint, whatever its health.
    pub all: Vec<u32>,
    /// Healthy (and unknown-health) endpoints.
    pub healthy: Vec<u32>,
    /// Degraded endpoints.
    pub degraded: Vec<u32>,
    /// Draining endpoints, which count in no health ratio.
    pub excluded: Vec<u32>,
}

impl HostLists {
    fn push(&mut self, index: u32, usability: Usability) {
        self.all.push(index);
        match usability {
            Usability::Healthy => self.healthy.push(index),
            Usability::Degraded => self.degraded.push(index),
            Usability::Excluded => self.excluded.push(index),
            Usability::Unhealthy => {}
        }
    }

    /// The endpoints that count in health ratios: all but the excluded ones.
    pub fn counted(&self) -> usize {
        self.all.len() - self.excluded.len()
    }

    /// Makes the `ejected` endpoints unhealthy, as Envoy's failed outlier check does.
    fn eject(&mut self, ejected: &impl Fn(u32) -> bool) {
        self.healthy.retain(|&i| !ejected(i));
        self.degraded.retain(|&i| !ejected(i));
    }
}

/// The endpoints of one priority level.
#[derive(Debug, Clone, Default)]
pub(super) struct HostSet {
    /// All of the priority's endpoints.
    pub hosts: HostLists,
    /// Sorted by locality.
    pub localities: Vec<LocalityHosts>,
}

/// A load assignment compiled for balancing.
#[derive(Debug, Clone)]
pub(super) struct Assignment {
    /// Every endpoint, in EDS order; the lists hold indices into it.
    pub endpoints: Box<[Endpoint]>,
    /// One set per priority from 0 to the highest given; priorities EDS skipped are
    /// empty, as in Envoy.
    pub priorities: Vec<HostSet>,
    /// In percent (140 means 1.4).
    pub overprovisioning_factor: u32,
    /// Whether priority health counts weights rather than endpoints.
    pub weighted_priority_health: bool,
}

impl Assignment {
    /// The assignment with the `ejected` endpoints unhealthy (in every list they are in).
    pub fn ejecting(&self, ejected: impl Fn(u32) -> bool) -> Assignment {
        let mut out = self.clone();
        for set in &mut out.priorities {
            set.hosts.eject(&ejected);
            for locality in &mut set.localities {
                locality.hosts.eject(&ejected);
            }
        }
        out
    }
}

/// Envoy's default overprovisioning factor, in percent.
const DEFAULT_OVERPROVISIONING_FACTOR: u32 = 140;

impl Assignment {
    /// Compiles `assignment`; `cluster` names the cluster in errors.
    pub fn new(
        cluster: &str,
        assignment: &ClusterLoadAssignment,
    ) -> Result<Assignment, BalanceError> {
        let policy = assignment.policy.as_ref();
        let overprovisioning_factor = match policy.and_then(|p| p.overprovisioning_factor) {
            None => DEFAULT_OVERPROVISIONING_FACTOR,
            Some(f) if f.value == 0 => {
                return Err(BalanceError::new(
                    cluster,
                    "load_assignment.policy.overprovisioning_factor",
                    Reason::NotPositive,
                ));
            }
            Some(f) => f.value,
        };
        let mut endpoints = Vec::new();
        let mut priorities: Vec<HostSet> = Vec::new();
        for (i, group) in assignment.endpoints.iter().enumerate() {
            let field = |rest: &str| format!("load_assignment.endpoints[{i}]{rest}");
            if group.lb_config.is_some() {
                return Err(BalanceError::new(
                    cluster,
                    field(".leds_cluster_locality_config"),
                    Reason::Unsupported("LEDS"),
                ));
            }
            let locality = group
                .locality
                .as_ref()
                .map(|l| Locality {
                    region: l.region.clone(),
                    zone: l.zone.clone(),
                    sub_zone: l.sub_zone.clone(),
                })
                .unwrap_or_default();
            let weight = locality_weight(group).map_err(|reason| {
                BalanceError::new(cluster, field(".load_balancing_weight"), reason)
            })?;
            let priority = group.priority as usize;
            if priorities.len() <= priority {
                priorities.resize_with(priority + 1, HostSet::default);
            }
            let set = &mut priorities[priority];
            let slot = match set
                .localities
                .binary_search_by(|l| l.locality.cmp(&locality))
            {
                Ok(slot) => slot,
                Err(slot) => {
                    set.localities.insert(
                        slot,
                        LocalityHosts {
                            locality: locality.clone(),
                            ..LocalityHosts::default()
                        },
                    );
                    slot
                }
            };
            // A locality listed twice at one priority keeps its hosts together and the
            // last weight given, as Envoy's per-priority locality map does.
            if let Some(weight) = weight {
                set.localities[slot].weight = weight;
            }
            for (j, lb_endpoint) in group.lb_endpoints.iter().enumerate() {
                let endpoint = compile_endpoint(lb_endpoint, &locality, group.priority).map_err(
                    |(rest, reason)| {
                        BalanceError::new(
                            cluster,
                            field(&format!(".lb_endpoints[{j}]{rest}")),
                            reason,
                        )
                    },
                )?;
                // u32::MAX is left free: Maglev marks empty slots with it.
                let index = u32::try_from(endpoints.len())
                    .ok()
                    .filter(|&i| i < u32::MAX)
                    .ok_or_else(|| {
                        BalanceError::new(cluster, field(".lb_endpoints"), Reason::TooManyEndpoints)
                    })?;
                let usability = endpoint.health.usability();
                set.hosts.push(index, usability);
                set.localities[slot].hosts.push(index, usability);
                endpoints.push(endpoint);
            }
        }
        if priorities.is_empty() {
            priorities.push(HostSet::default());
        }
        check_weight_sums(cluster, &priorities, &endpoints)?;
        Ok(Assignment {
            endpoints: endpoints.into_boxed_slice(),
            priorities,
            overprovisioning_factor,
            weighted_priority_health: policy.is_some_and(|p| p.weighted_priority_health),
        })
    }
}

/// The locality's weight, if given; Envoy requires at least 1.
fn locality_weight(group: &LocalityLbEndpoints) -> Result<Option<u32>, Reason> {
    match group.load_balancing_weight {
        Some(w) if w.value == 0 => Err(Reason::ZeroWeight),
        Some(w) => Ok(Some(w.value)),
        None => Ok(None),
    }
}

/// Compiles one endpoint; errors carry the field path below the `lb_endpoints` entry.
fn compile_endpoint(
    lb_endpoint: &LbEndpoint,
    locality: &Locality,
    priority: u32,
) -> Result<Endpoint, (&'static str, Reason)> {
    let endpoint = match &lb_endpoint.host_identifier {
        Some(HostIdentifier::Endpoint(e)) => e,
        Some(HostIdentifier::EndpointName(_)) => {
            return Err((".endpoint_name", Reason::Unsupported("named endpoints")));
        }
        None => return Err((".endpoint", Reason::Missing)),
    };
    let socket = match endpoint.address.as_ref().and_then(|a| a.address.as_ref()) {
        Some(address::Address::SocketAddress(s)) => s,
        Some(address::Address::Pipe(_)) => {
            return Err((
                ".endpoint.address.pipe",
                Reason::Unsupported("pipe addresses"),
            ));
        }
        Some(address::Address::EnvoyInternalAddress(_)) => {
            return Err((
                ".endpoint.address.envoy_internal_address",
                Reason::Unsupported("internal addresses"),
            ));
        }
        None => return Err((".endpoint.address", Reason::Missing)),
    };
    let ip: IpAddr = socket.address.parse().map_err(|_| {
        (
            ".endpoint.address.socket_address.address",
            Reason::NotAnIp(socket.address.clone()),
        )
    })?;
    let port = match &socket.port_specifier {
        Some(PortSpecifier::PortValue(p)) => u16::try_from(*p).map_err(|_| {
            (
                ".endpoint.address.socket_address.port_value",
                Reason::PortOutOfRange(*p),
            )
        })?,
        Some(PortSpecifier::NamedPort(name)) => {
            return Err((
                ".endpoint.address.socket_address.named_port",
                Reason::NamedPort(name.clone()),
            ));
        }
        None => 0,
    };
    let weight = match lb_endpoint.load_balancing_weight {
        Some(w) if w.value == 0 => return Err((".load_balancing_weight", Reason::ZeroWeight)),
        Some(w) => w.value,
        None => 1,
    };
    Ok(Endpoint {
        address: SocketAddr::new(ip, port),
        weight,
        health: Health::from_eds(lb_endpoint.health_status),
        locality: locality.clone(),
        priority,
        hostname: endpoint.hostname.clone(),
        workload: istio_workload(lb_endpoint),
        live: Arc::default(),
    })
}

/// The endpoint's workload, from its `istio.workload` metadata.
fn istio_workload(endpoint: &LbEndpoint) -> Option<Peer> {
    let istio = endpoint.metadata.as_ref()?.filter_metadata.get("istio")?;
    match istio.fields.get("workload")?.kind.as_ref()? {
        Kind::StringValue(compact) => Workload::from_compact(compact).map(Peer::new),
        _ => None,
    }
}

/// Envoy's limits: endpoint weights within a locality, and locality weights within a
/// priority, must each sum to at most `u32::MAX`.
fn check_weight_sums(
    cluster: &str,
    priorities: &[HostSet],
    endpoints: &[Endpoint],
) -> Result<(), BalanceError> {
    for (p, set) in priorities.iter().enumerate() {
        let locality_sum: u64 = set.localities.iter().map(|l| u64::from(l.weight)).sum();
        if locality_sum > u64::from(u32::MAX) {
            return Err(BalanceError::new(
                cluster,
                format!("load_assignment.endpoints (priority {p}): load_balancing_weight"),
                Reason::WeightSumOverflow,
            ));
        }
        for l in &set.localities {
            let sum: u64 = l
                .hosts
                .all
                .iter()
                .map(|&i| u64::from(endpoints[i as usize].weight))
                .sum();
            if sum > u64::from(u32::MAX) {
                return Err(BalanceError::new(
                    cluster,
                    format!(
                        "load_assignment.endpoints (priority {p}, locality \"{}\"): \
                         lb_endpoints.load_balancing_weight",
                        l.locality
                    ),
                    Reason::WeightSumOverflow,
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
