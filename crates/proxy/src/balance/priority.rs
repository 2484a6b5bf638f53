//! Envoy's priority load: how much of the traffic each priority level receives given
//! its health, the overprovisioning factor and the panic threshold.
//!
//! A level's health is `min(100, overprovisioning_factor × healthy / total)` percent.
//! Levels take load in order until 100% is assigned; what healthy endpoints can't take
//! goes to degraded ones; when the total is below 100 the loads are scaled up to sum to
//! 100. A level whose healthy-or-degraded share is below the panic threshold balances
//! over all of its endpoints; when every level panics, load follows endpoint counts.

use super::endpoints::{Assignment, HostSet};

/// Which endpoints of the chosen priority a pick targets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Availability {
    Healthy,
    Degraded,
}

/// The per-priority traffic split, in whole percent summing to 100.
#[derive(Debug)]
pub(super) struct PriorityLoad {
    healthy: Box<[u32]>,
    degraded: Box<[u32]>,
    panic: Box<[bool]>,
}

impl PriorityLoad {
    /// The split for `assignment`; `panic_threshold` is in whole percent (0 disables
    /// panic mode).
    pub fn new(assignment: &Assignment, panic_threshold: u32) -> PriorityLoad {
        let sets = &assignment.priorities;
        let n = sets.len();
        let (health, degraded): (Vec<u32>, Vec<u32>) =
            sets.iter().map(|set| availability(assignment, set)).unzip();
        let total_availability =
            (health.iter().sum::<u32>() + degraded.iter().sum::<u32>()).min(100);

        let mut healthy_load = vec![0; n];
        let mut degraded_load = vec![0; n];
        if total_availability > 0 {
            let (first_healthy, left) =
                distribute(&mut healthy_load, &health, 100, total_availability);
            let (first_degraded, left) =
                distribute(&mut degraded_load, &degraded, left, total_availability);
            // Rounding leftovers go to the first level that has anything available.
            if left > 0 {
                match (first_healthy, first_degraded) {
                    (Some(p), _) => healthy_load[p] += left,
                    (None, Some(p)) => degraded_load[p] += left,
                    (None, None) => {}
                }
            }
        }

        let mut panic = vec![false; n];
        if panic_threshold == 0 && total_availability == 0 {
            // Nothing is available and panic is off: the load must still sum to 100,
            // and P0 (with nothing to pick) takes it.
            healthy_load[0] = 100;
        } else {
            for (p, set) in sets.iter().enumerate() {
                panic[p] = total_availability < 100 && in_panic(set, panic_threshold);
            }
            if panic.iter().all(|&p| p) {
                split_by_endpoint_count(sets, &mut healthy_load, &mut degraded_load);
            }
        }
        PriorityLoad {
            healthy: healthy_load.into_boxed_slice(),
            degraded: degraded_load.into_boxed_slice(),
            panic: panic.into_boxed_slice(),
        }
    }

    /// The priority (and which of its endpoints) that `hash` lands on; Envoy uses a
    /// random number here, or the request hash for hashing balancers.
    pub fn choose(&self, hash: u64) -> (usize, Availability) {
        let point = (hash % 100) as u32 + 1;
        let mut reached = 0;
        for (p, &load) in self.healthy.iter().enumerate() {
            reached += load;
            if point <= reached {
                return (p, Availability::Healthy);
            }
        }
        for (p, &load) in self.degraded.iter().enumerate() {
            reached += load;
            if point <= reached {
                return (p, Availability::Degraded);
            }
        }
        (0, Availability::Healthy)
    }

    /// Whether the priority balances over all of its endpoints, healthy or not.
    pub fn in_panic(&self, priority: usize) -> bool {
        self.panic[priority]
    }

    /// The percentage of traffic each priority's healthy endpoints receive.
    #[cfg(test)]
    pub fn healthy(&self) -> &[u32] {
        &self.healthy
    }

    /// The percentage of traffic each priority's degraded endpoints receive.
    #[cfg(test)]
    pub fn degraded(&self) -> &[u32] {
        &self.degraded
    }
}

/// A level's healthy and degraded availability in percent, capped at 100.
fn availability(assignment: &Assignment, set: &HostSet) -> (u32, u32) {
    let hosts = &set.hosts;
    if hosts.counted() == 0 {
        return (0, 0);
    }
    let (healthy, degraded, total) = if assignment.weighted_priority_health {
        let weight = |list: &[u32]| -> u64 {
            list.iter()
                .map(|&i| u64::from(assignment.endpoints[i as usize].weight))
                .sum()
        };
        (
            weight(&hosts.healthy),
            weight(&hosts.degraded),
            weight(&hosts.all) - weight(&hosts.excluded),
        )
    } else {
        (
            hosts.healthy.len() as u64,
            hosts.degraded.len() as u64,
            hosts.counted() as u64,
        )
    };
    let factor = u64::from(assignment.overprovisioning_factor);
    let percent = |count: u64| (factor * count / total).min(100) as u32;
    (percent(healthy), percent(degraded))
}

/// Gives each level `availability × 100 / total_availability` of what is left, in
/// order; returns the first level with any availability and the load left over.
fn distribute(
    load: &mut [u32],
    availability: &[u32],
    mut left: u32,
    total_availability: u32,
) -> (Option<usize>, u32) {
    let mut first = None;
    for (p, &available) in availability.iter().enumerate() {
        if first.is_none() && available > 0 {
            first = Some(p);
        }
        load[p] = left.min(available * 100 / total_availability);
        left -= load[p];
    }
    (first, left)
}

/// Whether a level's healthy and degraded share (by count) is below the threshold.
fn in_panic(set: &HostSet, threshold: u32) -> bool {
    let counted = set.hosts.counted();
    let usable = if counted == 0 {
        0.0
    } else {
        100.0 * set.hosts.healthy.len() as f64 / counted as f64
            + 100.0 * set.hosts.degraded.len() as f64 / counted as f64
    };
    usable < f64::from(threshold)
}

/// Total panic: each level gets its share of all endpoints, whatever their health.
fn split_by_endpoint_count(sets: &[HostSet], healthy: &mut [u32], degraded: &mut [u32]) {
    let total: usize = sets.iter().map(|s| s.hosts.all.len()).sum();
    if total == 0 {
        healthy[0] = 100;
        return;
    }
    let mut left = 100;
    let mut first_nonempty = None;
    for (p, set) in sets.iter().enumerate() {
        let count = set.hosts.all.len();
        if first_nonempty.is_none() && count > 0 {
            first_nonempty = Some(p);
        }
        healthy[p] = (100 * count / total) as u32;
        degraded[p] = 0;
        left -= healthy[p];
    }
    if let Some(p) = first_nonempty {
        healthy[p] += left;
    }
}

#[cfg(test)]
mod tests;
