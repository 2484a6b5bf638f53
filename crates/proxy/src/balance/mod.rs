//! Load balancing over EDS endpoints, as Envoy balances for the same cluster and load
//! assignment: priorities with overprovisioning and panic mode, locality-weighted
//! balancing, and the ROUND_ROBIN, LEAST_REQUEST, RANDOM, RING_HASH and MAGLEV
//! policies.
//!
//! A [`Balancer`] is built once per cluster and load assignment and shared by every
//! request: all tables and schedules are computed in [`Balancer::new`], and
//! [`Balancer::pick`] takes no lock and allocates nothing. A new assignment (say, a
//! health change) means a new balancer; an outlier ejection or return rebuilds its
//! tables in place (see [`outlier`]).
//!
//! Endpoints must be IP addresses: DNS clusters are balanced over the addresses their
//! names resolved to (see [`crate::config::dns`]).

mod consistent;
mod endpoints;
mod hash;
mod least_request;
mod levels;
mod maglev;
mod outlier;
mod priority;
mod random;
mod ring_hash;
mod round_robin;
mod schedule;
#[cfg(test)]
mod testing;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use arc_swap::ArcSwap;

use mizzen_xds::pb::envoy::config::cluster::v3::Cluster;
use mizzen_xds::pb::envoy::config::cluster::v3::cluster::{
    CommonLbConfig, LbConfig, LbPolicy, common_lb_config::LocalityConfigSpecifier,
};
use mizzen_xds::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;

pub use endpoints::{Endpoint, Health, Locality};
pub use hash::{HashInput, HashPolicyError, HashPolicyReason, RequestHash, RequestHasher};
pub use outlier::Outcome;

use consistent::HashLevels;
use endpoints::Assignment;
use least_request::{LeastRequest, LeastRequestConfig};
use levels::Levels;
use maglev::{Maglev, MaglevConfig};
use outlier::Detector;
use priority::PriorityLoad;
use random::Random;
use ring_hash::{Ring, RingConfig};
use round_robin::RoundRobin;

use crate::config::OutlierDetection;
use crate::stats::OutlierStats;

/// A cluster's load balancer over one load assignment. Immutable; share it (it is
/// `Send + Sync`) between all requests.
#[derive(Debug)]
pub struct Balancer {
    /// The assignment as EDS gave it (health included); its endpoints are the ones
    /// picked, whatever is ejected.
    assignment: Assignment,
    settings: Settings,
    /// Each endpoint's key on rings and tables (consistent-hash policies only).
    keys: Vec<String>,
    /// The tables over the assignment, ejected endpoints made unhealthy.
    policy: ArcSwap<Policy>,
    detector: Detector,
}

#[derive(Debug)]
enum Policy {
    RoundRobin(Levels<RoundRobin>),
    LeastRequest(Levels<LeastRequest>),
    Random(Levels<Random>),
    RingHash(HashLevels<Ring>),
    Maglev(HashLevels<Maglev>),
}

impl Balancer {
    /// The balancer for `cluster`'s policy over `assignment`'s endpoints.
    pub fn new(
        cluster: &Cluster,
        assignment: &ClusterLoadAssignment,
    ) -> Result<Balancer, BalanceError> {
        let settings = Settings::new(cluster)?;
        let assignment = Assignment::new(&cluster.name, assignment)?;
        let keys = match settings.kind {
            Kind::RingHash(_) | Kind::Maglev(_) => {
                hash_keys(&cluster.name, &assignment, settings.hash_by_hostname)?
            }
            _ => Vec::new(),
        };
        let policy = ArcSwap::from_pointee(build(&settings, &assignment, &keys));
        Ok(Balancer {
            detector: Detector::new(assignment.endpoints.len()),
            assignment,
            settings,
            keys,
            policy,
        })
    }

    /// Counts the outcome of a request to endpoint `index` for outlier detection;
    /// a run of failures long enough ejects the endpoint.
    pub fn report(
        &self,
        index: usize,
        outcome: Outcome,
        od: &OutlierDetection,
        stats: &OutlierStats,
    ) {
        if self
            .detector
            .report(self.endpoints(), index, outcome, od, stats)
        {
            self.rebuild();
        }
    }

    /// Brings back the ejected endpoints whose time is over, when a sweep `interval`
    /// has passed since the last one. Cheap when none is due.
    pub fn sweep(&self, od: &OutlierDetection, stats: &OutlierStats, now: Instant) {
        if self.detector.sweep_if_due(self.endpoints(), od, stats, now) {
            self.rebuild();
        }
    }

    /// This balancer with what the endpoints it shares with `previous` (by address)
    /// had there: requests in flight and, when `ejections`, their ejections.
    pub fn carry_over(mut self, previous: &Balancer, ejections: bool) -> Balancer {
        let before: std::collections::HashMap<SocketAddr, usize> = previous
            .endpoints()
            .iter()
            .enumerate()
            .map(|(i, e)| (e.address, i))
            .collect();
        let matches: Vec<Option<usize>> = self
            .assignment
            .endpoints
            .iter_mut()
            .map(|endpoint| {
                let j = *before.get(&endpoint.address)?;
                endpoint.share_live(&previous.endpoints()[j], ejections);
                Some(j)
            })
            .collect();
        if ejections {
            self.detector = previous.detector.carried(&matches);
            self.rebuild();
        }
        self
    }

    /// The tables again, with the endpoints ejected now made unhealthy.
    fn rebuild(&self) {
        self.detector.with_ejections(|ejections| {
            let assignment = self
                .assignment
                .ejecting(|i| ejections.is_ejected(i as usize));
            self.policy
                .store(Arc::new(build(&self.settings, &assignment, &self.keys)));
        });
    }

    /// Picks an endpoint. `hash` is the request hash for RING_HASH and MAGLEV (None
    /// picks at random, as Envoy does); other policies ignore it. None when no endpoint
    /// is usable.
    pub fn pick(&self, hash: Option<u64>) -> Option<Picked<'_>> {
        let endpoints = self.endpoints();
        let index = match &**self.policy.load() {
            Policy::RoundRobin(levels) => levels.pick(endpoints),
            Policy::LeastRequest(levels) => levels.pick(endpoints),
            Policy::Random(levels) => levels.pick(endpoints),
            Policy::RingHash(levels) => levels.pick(hash),
            Policy::Maglev(levels) => levels.pick(hash),
        }?;
        let endpoint = &endpoints[index as usize];
        endpoint.begin_request();
        Some(Picked {
            endpoint,
            index: index as usize,
        })
    }

    /// [`Balancer::pick`], with a guard that owns the balancer, so that it may outlive
    /// the borrow (in a response body, say).
    pub fn pick_owned(self: &Arc<Self>, hash: Option<u64>) -> Option<InFlight> {
        let picked = self.pick(hash)?;
        let index = picked.index;
        // The request's count moves to the owned guard, which ends it when dropped.
        std::mem::forget(picked);
        Some(InFlight {
            balancer: self.clone(),
            index,
        })
    }

    /// Whether picks use the request hash (RING_HASH, MAGLEV): only then should the
    /// route's hash policies be evaluated, and any generated cookie be set.
    pub fn hashes_requests(&self) -> bool {
        matches!(self.settings.kind, Kind::RingHash(_) | Kind::Maglev(_))
    }

    /// All endpoints of the assignment, in EDS order, for admin `/clusters`.
    pub fn endpoints(&self) -> &[Endpoint] {
        &self.assignment.endpoints
    }
}

/// The tables of `settings`' policy over `assignment`.
fn build(settings: &Settings, assignment: &Assignment, keys: &[String]) -> Policy {
    let load = PriorityLoad::new(assignment, settings.panic_threshold);
    let by_locality = settings.locality_weighted;
    match &settings.kind {
        Kind::RoundRobin => Policy::RoundRobin(Levels::new(assignment, load, by_locality, &())),
        Kind::LeastRequest(config) => {
            Policy::LeastRequest(Levels::new(assignment, load, by_locality, config))
        }
        Kind::Random => Policy::Random(Levels::new(assignment, load, by_locality, &())),
        Kind::RingHash(config) => {
            Policy::RingHash(HashLevels::new(assignment, load, by_locality, keys, config))
        }
        Kind::Maglev(config) => {
            Policy::Maglev(HashLevels::new(assignment, load, by_locality, keys, config))
        }
    }
}

/// A picked endpoint; counts as one of its outstanding requests (which LEAST_REQUEST
/// balances on) until dropped, so keep it for the life of the request.
#[derive(Debug)]
pub struct Picked<'a> {
    endpoint: &'a Endpoint,
    index: usize,
}

impl<'a> Picked<'a> {
    /// The endpoint.
    pub fn endpoint(&self) -> &'a Endpoint {
        self.endpoint
    }

    /// The endpoint's position in [`Balancer::endpoints`].
    pub fn index(&self) -> usize {
        self.index
    }
}

impl Drop for Picked<'_> {
    fn drop(&mut self) {
        self.endpoint.end_request();
    }
}

/// An owned [`Picked`]: counts as one of the endpoint's outstanding requests until
/// dropped.
#[derive(Debug)]
pub struct InFlight {
    balancer: Arc<Balancer>,
    index: usize,
}

impl InFlight {
    /// The endpoint.
    pub fn endpoint(&self) -> &Endpoint {
        &self.balancer.endpoints()[self.index]
    }

    /// The endpoint's position in [`Balancer::endpoints`].
    pub fn index(&self) -> usize {
        self.index
    }

    /// The balancer it was picked by.
    pub fn balancer(&self) -> &Balancer {
        &self.balancer
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        self.endpoint().end_request();
    }
}

/// The cluster's balancing settings.
#[derive(Debug)]
struct Settings {
    kind: Kind,
    /// Whole percent; 0 turns panic mode off.
    panic_threshold: u32,
    locality_weighted: bool,
    hash_by_hostname: bool,
}

#[derive(Debug)]
enum Kind {
    RoundRobin,
    LeastRequest(LeastRequestConfig),
    Random,
    RingHash(RingConfig),
    Maglev(MaglevConfig),
}

/// Envoy's default healthy panic threshold, in percent.
const DEFAULT_PANIC_THRESHOLD: u32 = 50;

impl Settings {
    fn new(cluster: &Cluster) -> Result<Settings, BalanceError> {
        let error = |field: &str, reason| BalanceError::new(&cluster.name, field, reason);
        if cluster.load_balancing_policy.is_some() {
            return Err(error(
                "load_balancing_policy",
                Reason::Unsupported("load balancing policy extensions"),
            ));
        }
        let policy = LbPolicy::try_from(cluster.lb_policy)
            .map_err(|_| error("lb_policy", Reason::UnknownEnum(cluster.lb_policy)))?;
        let config = cluster.lb_config.as_ref();
        let kind = match policy {
            LbPolicy::RoundRobin => {
                if let Some(LbConfig::RoundRobinLbConfig(c)) = config {
                    ignore_slow_start(&cluster.name, c.slow_start_config.is_some());
                }
                Kind::RoundRobin
            }
            LbPolicy::LeastRequest => {
                let c = match config {
                    Some(LbConfig::LeastRequestLbConfig(c)) => Some(c),
                    _ => None,
                };
                ignore_slow_start(
                    &cluster.name,
                    c.is_some_and(|c| c.slow_start_config.is_some()),
                );
                Kind::LeastRequest(LeastRequestConfig::new(c).map_err(|(field, reason)| {
                    error(&format!("least_request_lb_config.{field}"), reason)
                })?)
            }
            LbPolicy::Random => Kind::Random,
            LbPolicy::RingHash => {
                let c = match config {
                    Some(LbConfig::RingHashLbConfig(c)) => Some(c),
                    _ => None,
                };
                Kind::RingHash(RingConfig::new(c).map_err(|(field, reason)| {
                    error(&format!("ring_hash_lb_config.{field}"), reason)
                })?)
            }
            LbPolicy::Maglev => {
                let c = match config {
                    Some(LbConfig::MaglevLbConfig(c)) => Some(c),
                    _ => None,
                };
                Kind::Maglev(MaglevConfig::new(c).map_err(|(field, reason)| {
                    error(&format!("maglev_lb_config.{field}"), reason)
                })?)
            }
            LbPolicy::ClusterProvided => {
                return Err(error(
                    "lb_policy",
                    Reason::Unsupported("CLUSTER_PROVIDED (the cluster type chooses endpoints)"),
                ));
            }
            LbPolicy::LoadBalancingPolicyConfig => {
                return Err(error(
                    "lb_policy",
                    Reason::Unsupported("LOAD_BALANCING_POLICY_CONFIG"),
                ));
            }
        };
        let common = cluster.common_lb_config.as_ref();
        let consistent = common.and_then(|c| c.consistent_hashing_lb_config);
        if consistent.is_some_and(|c| c.hash_balance_factor.is_some()) {
            tracing::warn!(
                cluster = %cluster.name,
                "hash_balance_factor (bounded-load consistent hashing) is not supported; ignored"
            );
        }
        Ok(Settings {
            kind,
            panic_threshold: panic_threshold(common).map_err(|reason| {
                error("common_lb_config.healthy_panic_threshold.value", reason)
            })?,
            locality_weighted: matches!(
                common.and_then(|c| c.locality_config_specifier),
                Some(LocalityConfigSpecifier::LocalityWeightedLbConfig(_))
            ),
            hash_by_hostname: consistent.is_some_and(|c| c.use_hostname_for_hashing),
        })
    }
}

/// Slow start needs weights that change with time, which an immutable balancer can't
/// have; endpoints get their full weight at once.
fn ignore_slow_start(cluster: &str, configured: bool) {
    if configured {
        tracing::warn!(cluster, "slow_start_config is not supported; ignored");
    }
}

/// The panic threshold in whole percent (Envoy truncates), 50 when unset.
fn panic_threshold(common: Option<&CommonLbConfig>) -> Result<u32, Reason> {
    match common.and_then(|c| c.healthy_panic_threshold) {
        None => Ok(DEFAULT_PANIC_THRESHOLD),
        Some(p) if (0.0..=100.0).contains(&p.value) => Ok(p.value as u32),
        Some(p) => Err(Reason::Percent(p.value)),
    }
}

/// The string each endpoint is hashed by onto rings and tables: its address
/// (`10.0.0.1:8080`, `[::1]:80`) or, with `use_hostname_for_hashing`, its hostname.
fn hash_keys(
    cluster: &str,
    assignment: &Assignment,
    by_hostname: bool,
) -> Result<Vec<String>, BalanceError> {
    assignment
        .endpoints
        .iter()
        .map(|e| match (by_hostname, e.hostname.is_empty()) {
            (false, _) => Ok(e.address.to_string()),
            (true, false) => Ok(e.hostname.clone()),
            (true, true) => Err(BalanceError::new(
                cluster,
                "common_lb_config.consistent_hashing_lb_config.use_hostname_for_hashing",
                Reason::NoHostname(e.address),
            )),
        })
        .collect()
}

/// Why a cluster's balancer could not be built.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("cluster {cluster:?}: {field}: {reason}")]
pub struct BalanceError {
    /// The cluster's name.
    pub cluster: String,
    /// The offending field, as a path in the cluster or its load assignment.
    pub field: String,
    /// What is wrong with it.
    pub reason: Reason,
}

impl BalanceError {
    fn new(cluster: &str, field: impl Into<String>, reason: Reason) -> BalanceError {
        BalanceError {
            cluster: cluster.to_owned(),
            field: field.into(),
            reason,
        }
    }
}

/// What is wrong with a cluster or load assignment field.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Reason {
    /// A required field is absent.
    #[error("is required")]
    Missing,
    /// A feature this balancer doesn't implement.
    #[error("not supported: {0}")]
    Unsupported(&'static str),
    /// A hostname where an IP address is needed.
    #[error("{0:?} is not an IP address (host names need a STRICT_DNS or LOGICAL_DNS cluster)")]
    NotAnIp(String),
    /// A named port, which only listeners' original destinations resolve.
    #[error("named port {0:?} is not supported")]
    NamedPort(String),
    /// A port above 65535.
    #[error("port {0} is out of range")]
    PortOutOfRange(u32),
    /// A weight of 0 where Envoy requires at least 1.
    #[error("must be at least 1")]
    ZeroWeight,
    /// A zero where Envoy requires a positive number.
    #[error("must be greater than 0")]
    NotPositive,
    /// Weights whose sum exceeds Envoy's limit.
    #[error("the weights sum to more than 4294967295")]
    WeightSumOverflow,
    /// More endpoints than indices can address.
    #[error("more than 4294967295 endpoints")]
    TooManyEndpoints,
    /// An enum value this build doesn't know.
    #[error("unknown value {0}")]
    UnknownEnum(i32),
    /// A percentage outside 0 to 100.
    #[error("{0} is not a percentage between 0 and 100")]
    Percent(f64),
    /// Fewer than two least-request choices.
    #[error("{0} is less than 2")]
    ChoiceCount(u32),
    /// A negative or non-finite active request bias.
    #[error("{0} is not a finite number of at least 0")]
    Bias(f64),
    /// A size above Envoy's limit.
    #[error("{value} exceeds the limit of {max}")]
    TooLarge {
        /// The size given.
        value: u64,
        /// The largest allowed.
        max: u64,
    },
    /// A minimum ring size above the maximum ring size.
    #[error("{value} exceeds maximum_ring_size ({max})")]
    MinAboveMax {
        /// The minimum given.
        value: u64,
        /// The maximum.
        max: u64,
    },
    /// A Maglev table size that isn't prime.
    #[error("{0} is not a prime number")]
    NotPrime(u64),
    /// Hashing by hostname, and an endpoint has none.
    #[error("endpoint {0} has no hostname to hash by")]
    NoHostname(SocketAddr),
}

#[cfg(test)]
mod tests;
