//! Weighted round-robin orders, computed once with Envoy's earliest-deadline-first (EDF)
//! scheduler and walked with an atomic cursor, so that a pick takes no lock.
//!
//! Envoy keeps one mutable EDF scheduler per worker thread. Its picks repeat with a
//! period of the weights' sum (divided by their greatest common divisor), so computing
//! one period up front and stepping through it yields the same sequence, shared by all
//! threads.

use std::cmp::{Ordering as CmpOrdering, Reverse};
use std::collections::BinaryHeap;
use std::sync::atomic::{AtomicUsize, Ordering};

/// The longest period kept; larger weight sums are scaled down to it, which moves
/// each entry's share by at most half a slot in this many.
const MAX_PERIOD: u64 = 1 << 16;

/// A weighted round-robin order over entries `0..n`.
#[derive(Debug)]
pub(super) struct Schedule {
    order: Order,
    cursor: AtomicUsize,
}

#[derive(Debug)]
enum Order {
    /// Every entry once, in turn: what EDF yields when all weights are equal.
    Rotation(usize),
    /// One period of EDF picks.
    Listed(Box<[u32]>),
}

impl Schedule {
    /// The order for `weights`; entries weighted 0 never come up. None when no weight
    /// is positive. The walk starts at a random point, as Envoy seeds each scheduler
    /// randomly so that proxies don't all start on the same entry.
    pub fn new(weights: &[u64]) -> Option<Schedule> {
        let first = *weights.iter().find(|&&w| w > 0)?;
        let order = if weights.iter().all(|&w| w == first) {
            Order::Rotation(weights.len())
        } else {
            Order::Listed(edf_period(&reduce(weights)).into_boxed_slice())
        };
        Some(Schedule {
            order,
            cursor: AtomicUsize::new(fastrand::usize(..)),
        })
    }

    /// The next entry.
    pub fn next(&self) -> usize {
        let turn = self.cursor.fetch_add(1, Ordering::Relaxed);
        match &self.order {
            Order::Rotation(len) => turn % len,
            Order::Listed(order) => order[turn % order.len()] as usize,
        }
    }

    /// The length of one period of the order.
    #[cfg(test)]
    pub fn period(&self) -> usize {
        match &self.order {
            Order::Rotation(len) => *len,
            Order::Listed(order) => order.len(),
        }
    }
}

/// The weights divided by their greatest common divisor, then scaled down (keeping
/// every positive weight at least 1) if their sum exceeds [`MAX_PERIOD`].
fn reduce(weights: &[u64]) -> Vec<u64> {
    let divided = divide_by_gcd(weights);
    let total: u128 = divided.iter().map(|&w| u128::from(w)).sum();
    if total <= u128::from(MAX_PERIOD) {
        return divided;
    }
    let scaled: Vec<u64> = divided
        .iter()
        .map(|&w| match w {
            0 => 0,
            w => {
                let share = (u128::from(w) * u128::from(MAX_PERIOD) + total / 2) / total;
                // At most MAX_PERIOD, so it fits.
                (share as u64).max(1)
            }
        })
        .collect();
    divide_by_gcd(&scaled)
}

fn divide_by_gcd(weights: &[u64]) -> Vec<u64> {
    let divisor = weights.iter().fold(0, |g, &w| gcd(g, w)).max(1);
    weights.iter().map(|&w| w / divisor).collect()
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// One EDF entry: its next deadline is `picks / weight`; ties go to the entry added
/// to the queue first, as in Envoy's scheduler.
#[derive(Debug, PartialEq, Eq)]
struct Entry {
    picks: u64,
    weight: u64,
    added: u64,
    index: u32,
}

impl Ord for Entry {
    fn cmp(&self, other: &Self) -> CmpOrdering {
        // Deadlines compared exactly: picks/weight against other.picks/other.weight.
        let mine = u128::from(self.picks) * u128::from(other.weight);
        let theirs = u128::from(other.picks) * u128::from(self.weight);
        mine.cmp(&theirs).then(self.added.cmp(&other.added))
    }
}

impl PartialOrd for Entry {
    fn partial_cmp(&self, other: &Self) -> Option<CmpOrdering> {
        Some(self.cmp(other))
    }
}

/// One period of EDF picks over `weights`: each entry appears exactly its weight times.
fn edf_period(weights: &[u64]) -> Vec<u32> {
    let mut queue = BinaryHeap::with_capacity(weights.len());
    let mut added = 0;
    for (index, &weight) in weights.iter().enumerate() {
        if weight > 0 {
            queue.push(Reverse(Entry {
                picks: 1,
                weight,
                added,
                index: index as u32,
            }));
            added += 1;
        }
    }
    let period: u64 = weights.iter().sum();
    let mut order = Vec::with_capacity(period as usize);
    for _ in 0..period {
        let Some(Reverse(mut entry)) = queue.pop() else {
            break;
        };
        order.push(entry.index);
        entry.picks += 1;
        entry.added = added;
        added += 1;
        queue.push(Reverse(entry));
    }
    order
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counts(schedule: &Schedule, n: usize, picks: usize) -> Vec<usize> {
        let mut counts = vec![0; n];
        for _ in 0..picks {
            counts[schedule.next()] += 1;
        }
        counts
    }

    #[test]
    fn equal_weights_rotate_through_every_entry() {
        let schedule = Schedule::new(&[3, 3, 3]).unwrap();
        let first = schedule.next();
        let next: Vec<usize> = (0..5).map(|_| schedule.next()).collect();
        let expected: Vec<usize> = (1..6).map(|k| (first + k) % 3).collect();
        assert_eq!(next, expected);
    }

    #[test]
    fn one_period_gives_each_entry_exactly_its_weight() {
        let schedule = Schedule::new(&[1, 2, 5]).unwrap();
        assert_eq!(schedule.period(), 8);
        assert_eq!(counts(&schedule, 3, 8 * 100), vec![100, 200, 500]);
    }

    #[test]
    fn edf_interleaves_rather_than_bunching() {
        // Envoy's EDF: deadlines k/weight, ties to the entry queued first.
        assert_eq!(edf_period(&[1, 3]), vec![1, 1, 0, 1]);
        assert_eq!(edf_period(&[2, 1]), vec![0, 1, 0]);
    }

    #[test]
    fn zero_weights_never_come_up() {
        let schedule = Schedule::new(&[0, 2, 0, 1]).unwrap();
        let c = counts(&schedule, 4, 300);
        assert_eq!(c, vec![0, 200, 0, 100]);
        assert!(Schedule::new(&[0, 0]).is_none());
        assert!(Schedule::new(&[]).is_none());
    }

    #[test]
    fn huge_weights_are_scaled_to_a_bounded_period_keeping_shares() {
        let weights = [u32::MAX as u64, (u32::MAX / 3) as u64, 1];
        let schedule = Schedule::new(&weights).unwrap();
        let period = schedule.period();
        assert!(period <= MAX_PERIOD as usize + weights.len(), "{period}");
        let c = counts(&schedule, 3, period);
        let share = c[0] as f64 / c[1] as f64;
        assert!((share - 3.0).abs() < 0.01, "{share}");
        assert!(c[2] >= 1, "a positive weight keeps at least one slot");
    }
}
