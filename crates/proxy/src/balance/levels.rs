//! The path of a host-by-host pick (round robin, least request, random), as Envoy's
//! zone-aware balancer takes it: a priority by load, then (when locality-weighted
//! balancing is on) a locality by weighted round robin, then an endpoint by the
//! policy over the chosen group.

use super::endpoints::{Assignment, Endpoint, HostLists, HostSet};
use super::priority::{Availability, PriorityLoad};
use super::schedule::Schedule;

/// A policy's picker over one fixed group of endpoints.
pub(super) trait SourcePicker: Sized {
    /// The policy's settings, shared by all of its groups.
    type Config;

    /// The picker for `hosts` (indices into `endpoints`).
    fn new(hosts: &[u32], endpoints: &[Endpoint], config: &Self::Config) -> Self;

    /// An endpoint index, or None when the group is empty.
    fn pick(&self, endpoints: &[Endpoint]) -> Option<u32>;
}

/// Pickers for every group a pick can land on, per priority.
#[derive(Debug)]
pub(super) struct Levels<P> {
    load: PriorityLoad,
    levels: Box<[Level<P>]>,
}

#[derive(Debug)]
enum Level<P> {
    /// Too few usable endpoints: balance over all of them.
    Panic(P),
    Normal {
        healthy: P,
        degraded: P,
        /// Present when locality-weighted balancing is on.
        localities: Option<Localities<P>>,
    },
}

/// Locality-weighted balancing within one priority.
#[derive(Debug)]
struct Localities<P> {
    healthy: Option<LocalityChoice<P>>,
    degraded: Option<LocalityChoice<P>>,
}

/// A weighted round robin over localities, each with its own picker.
#[derive(Debug)]
struct LocalityChoice<P> {
    schedule: Schedule,
    pickers: Box<[P]>,
}

impl<P: SourcePicker> Levels<P> {
    /// Pickers for `assignment`.
    pub fn new(
        assignment: &Assignment,
        load: PriorityLoad,
        locality_weighted: bool,
        config: &P::Config,
    ) -> Levels<P> {
        let endpoints = &assignment.endpoints;
        let levels = assignment
            .priorities
            .iter()
            .enumerate()
            .map(|(p, set)| {
                if load.in_panic(p) {
                    return Level::Panic(P::new(&set.hosts.all, endpoints, config));
                }
                Level::Normal {
                    healthy: P::new(&set.hosts.healthy, endpoints, config),
                    degraded: P::new(&set.hosts.degraded, endpoints, config),
                    localities: locality_weighted.then(|| Localities {
                        healthy: LocalityChoice::new(assignment, set, |h| &h.healthy, config),
                        degraded: LocalityChoice::new(assignment, set, |h| &h.degraded, config),
                    }),
                }
            })
            .collect();
        Levels { load, levels }
    }

    /// An endpoint index, or None when the chosen group is empty.
    pub fn pick(&self, endpoints: &[Endpoint]) -> Option<u32> {
        let (priority, availability) = self.load.choose(fastrand::u64(..));
        match &self.levels[priority] {
            Level::Panic(all) => all.pick(endpoints),
            Level::Normal {
                healthy,
                degraded,
                localities,
            } => {
                let locality = localities.as_ref().and_then(|l| match availability {
                    Availability::Healthy => l.healthy.as_ref(),
                    Availability::Degraded => l.degraded.as_ref(),
                });
                match (locality, availability) {
                    (Some(choice), _) => choice.pickers[choice.schedule.next()].pick(endpoints),
                    (None, Availability::Healthy) => healthy.pick(endpoints),
                    (None, Availability::Degraded) => degraded.pick(endpoints),
                }
            }
        }
    }
}

impl<P: SourcePicker> LocalityChoice<P> {
    /// The choice among `set`'s localities of their `eligible` endpoints, weighted by
    /// Envoy's effective locality weight: `weight × min(1, factor × eligible / total)`.
    /// None when no locality has weight, and the pick then ignores localities, as Envoy
    /// does when it builds no locality scheduler.
    fn new(
        assignment: &Assignment,
        set: &HostSet,
        eligible: fn(&HostLists) -> &Vec<u32>,
        config: &P::Config,
    ) -> Option<LocalityChoice<P>> {
        if eligible(&set.hosts).is_empty() {
            return None;
        }
        let factor = f64::from(assignment.overprovisioning_factor) / 100.0;
        let weights: Vec<u64> = set
            .localities
            .iter()
            .map(|l| {
                let counted = l.hosts.counted();
                if counted == 0 {
                    return 0;
                }
                let ratio = eligible(&l.hosts).len() as f64 / counted as f64;
                let effective = f64::from(l.weight) * (factor * ratio).min(1.0);
                quantize(effective)
            })
            .collect();
        let schedule = Schedule::new(&weights)?;
        let pickers = set
            .localities
            .iter()
            .map(|l| P::new(eligible(&l.hosts), &assignment.endpoints, config))
            .collect();
        Some(LocalityChoice { schedule, pickers })
    }
}

/// An effective locality weight (a real number) as an integer scheduler weight, to a
/// millionth of a weight unit; positive weights stay positive.
fn quantize(effective: f64) -> u64 {
    if effective <= 0.0 {
        0
    } else {
        ((effective * 1e6).round() as u64).max(1)
    }
}
