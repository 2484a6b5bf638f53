//! What ring hash and Maglev share, as Envoy's thread-aware balancers do: a table per
//! priority built from normalized endpoint weights, and a pick that lets the request
//! hash choose both the priority and the table entry.

use super::endpoints::{Assignment, HostLists};
use super::priority::PriorityLoad;

/// An endpoint and its share of its priority's traffic; the shares of a priority sum to
/// at most 1.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) struct Share {
    /// The endpoint's index.
    pub index: u32,
    /// Its share.
    pub weight: f64,
}

/// A consistent-hashing table over one priority's endpoints.
pub(super) trait HashTable: Sized {
    /// The policy's settings.
    type Config;

    /// The table for `shares`, hashing each endpoint by `keys[index]`; `min` and `max`
    /// are the smallest and largest share (1 and 0 when there are none).
    fn new(shares: &[Share], min: f64, max: f64, keys: &[String], config: &Self::Config) -> Self;

    /// The endpoint index for `hash`, or None when the table is empty.
    fn lookup(&self, hash: u64) -> Option<u32>;
}

/// A table per priority.
#[derive(Debug)]
pub(super) struct HashLevels<T> {
    load: PriorityLoad,
    tables: Box<[T]>,
}

impl<T: HashTable> HashLevels<T> {
    /// Tables for `assignment`. As in Envoy, a table holds a priority's healthy
    /// endpoints (all of them in panic mode); degraded endpoints are never hashed to.
    pub fn new(
        assignment: &Assignment,
        load: PriorityLoad,
        locality_weighted: bool,
        keys: &[String],
        config: &T::Config,
    ) -> HashLevels<T> {
        let tables = assignment
            .priorities
            .iter()
            .enumerate()
            .map(|(p, set)| {
                let pick: fn(&HostLists) -> &Vec<u32> = if load.in_panic(p) {
                    |h| &h.all
                } else {
                    |h| &h.healthy
                };
                let mut shares = Vec::new();
                if locality_weighted && !set.localities.is_empty() {
                    let total: u64 = set.localities.iter().map(|l| u64::from(l.weight)).sum();
                    // A locality without weight gets nothing; if none has weight, nothing
                    // at all is hashed to, as in Envoy.
                    if total > 0 {
                        for l in set.localities.iter().filter(|l| l.weight > 0) {
                            let share = f64::from(l.weight) / total as f64;
                            normalize(assignment, pick(&l.hosts), share, &mut shares);
                        }
                    }
                } else {
                    normalize(assignment, pick(&set.hosts), 1.0, &mut shares);
                }
                let min = shares.iter().map(|s| s.weight).fold(1.0, f64::min);
                let max = shares.iter().map(|s| s.weight).fold(0.0, f64::max);
                T::new(&shares, min, max, keys, config)
            })
            .collect();
        HashLevels { load, tables }
    }

    /// The endpoint for `hash`; without one, a random hash picks (Envoy's behaviour,
    /// which makes the hashing balancers random when no hash policy applies).
    pub fn pick(&self, hash: Option<u64>) -> Option<u32> {
        let hash = hash.unwrap_or_else(|| fastrand::u64(..));
        let (priority, _) = self.load.choose(hash);
        self.tables[priority].lookup(hash)
    }
}

/// Appends each host's share of `group_share`, in proportion to its weight. The
/// arithmetic follows Envoy's, so that tables come out the same.
fn normalize(assignment: &Assignment, hosts: &[u32], group_share: f64, out: &mut Vec<Share>) {
    let sum: u64 = hosts
        .iter()
        .map(|&i| u64::from(assignment.endpoints[i as usize].weight))
        .sum();
    for &index in hosts {
        let weight = f64::from(assignment.endpoints[index as usize].weight);
        out.push(Share {
            index,
            weight: weight * group_share / sum as f64,
        });
    }
}
