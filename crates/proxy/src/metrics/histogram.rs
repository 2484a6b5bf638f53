//! Prometheus histograms with fixed buckets, of atomics.

use std::sync::atomic::{AtomicU64, Ordering};

/// Istio's buckets for `istio_request_duration_milliseconds` (Envoy's defaults).
pub const DURATION_MS: &[f64] = &[
    0.5, 1.0, 5.0, 10.0, 25.0, 50.0, 100.0, 250.0, 500.0, 1000.0, 2500.0, 5000.0, 10000.0, 30000.0,
    60000.0, 300000.0, 600000.0, 1800000.0, 3600000.0,
];

/// Istio's buckets for `istio_request_bytes` and `istio_response_bytes`: powers of ten.
pub const BYTES: &[f64] = &[1.0, 10.0, 100.0, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9];

/// Observations counted per bucket; the sum is kept in thousandths of the unit so that
/// it stays an integer (sub-millisecond durations add up exactly).
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [f64],
    /// Per bucket (not cumulative), then one past the last bound (`+Inf`).
    counts: Box<[AtomicU64]>,
    sum_milli: AtomicU64,
}

impl Histogram {
    /// An empty histogram with `bounds` (ascending).
    pub fn new(bounds: &'static [f64]) -> Histogram {
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum_milli: AtomicU64::new(0),
        }
    }

    /// Counts `milli` thousandths of the unit (microseconds of a millisecond histogram).
    pub fn observe_milli(&self, milli: u64) {
        let value = milli as f64 / 1000.0;
        let bucket = self.bounds.partition_point(|b| *b < value);
        self.counts[bucket].fetch_add(1, Ordering::Relaxed);
        self.sum_milli.fetch_add(milli, Ordering::Relaxed);
    }

    /// Counts `value` whole units.
    pub fn observe(&self, value: u64) {
        self.observe_milli(value.saturating_mul(1000));
    }

    /// Each bound with its cumulative count, then `+Inf` (as `None`) with the total.
    pub fn cumulative(&self) -> impl Iterator<Item = (Option<f64>, u64)> + '_ {
        let bounds = self.bounds.iter().map(|b| Some(*b)).chain([None]);
        let mut total = 0;
        bounds.zip(self.counts.iter()).map(move |(bound, count)| {
            total += count.load(Ordering::Relaxed);
            (bound, total)
        })
    }

    /// The sum of the observations.
    pub fn sum(&self) -> f64 {
        self.sum_milli.load(Ordering::Relaxed) as f64 / 1000.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn observations_land_in_the_first_bucket_that_holds_them() {
        let h = Histogram::new(DURATION_MS);
        h.observe_milli(400); // 0.4 ms
        h.observe_milli(500); // 0.5 ms: `le` is inclusive
        h.observe(7);
        h.observe(4_000_000);
        let buckets: Vec<_> = h.cumulative().collect();
        assert_eq!(buckets[0], (Some(0.5), 2));
        assert_eq!(buckets[2], (Some(5.0), 2));
        assert_eq!(buckets[3], (Some(10.0), 3));
        assert_eq!(buckets[18], (Some(3600000.0), 3));
        assert_eq!(buckets[19], (None, 4));
        assert_eq!(h.sum(), 4_000_007.9);
    }
}
