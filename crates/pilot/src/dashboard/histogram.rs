//! Latency quantiles from `istio_request_duration_milliseconds_bucket` rates, computed
//! as Prometheus' `histogram_quantile` computes them, so the dashboard and a Grafana
//! panel over the same data agree.

/// Cumulative bucket rates by upper bound (`le`), sorted, `+Inf` last when present.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Histogram {
    buckets: Vec<(f64, f64)>,
}

impl Histogram {
    /// Adds `rate` to the bucket `le` (series of one edge are summed by `le`).
    pub fn add(&mut self, le: f64, rate: f64) {
        match self.buckets.binary_search_by(|(b, _)| b.total_cmp(&le)) {
            Ok(i) => self.buckets[i].1 += rate,
            Err(i) => self.buckets.insert(i, (le, rate)),
        }
    }

    /// Adds every bucket of `other`.
    pub fn merge(&mut self, other: &Histogram) {
        for &(le, rate) in &other.buckets {
            self.add(le, rate);
        }
    }

    /// The `q`-quantile (0 ≤ q ≤ 1): found in the bucket where the cumulative count
    /// reaches `q` of the total, interpolated linearly within it; the highest finite
    /// bound when it falls in `+Inf`. `None` without a `+Inf` bucket or observations.
    pub fn quantile(&self, q: f64) -> Option<f64> {
        let &(last, total) = self.buckets.last()?;
        if last != f64::INFINITY || self.buckets.len() < 2 || total <= 0.0 {
            return None;
        }
        let rank = q * total;
        // Rates of separately scraped series can be slightly non-monotonic.
        let mut cumulative = Vec::with_capacity(self.buckets.len());
        let mut max = 0.0f64;
        for &(le, count) in &self.buckets {
            max = max.max(count);
            cumulative.push((le, max));
        }
        let b = cumulative
            .iter()
            .position(|&(_, count)| count >= rank)
            .unwrap_or(cumulative.len() - 1);
        if b == cumulative.len() - 1 {
            return Some(cumulative[b - 1].0);
        }
        let (upper, count) = cumulative[b];
        if b == 0 && upper <= 0.0 {
            return Some(upper);
        }
        let (lower, below) = match b {
            0 => (0.0, 0.0),
            _ => cumulative[b - 1],
        };
        let in_bucket = count - below;
        if in_bucket <= 0.0 {
            return Some(upper);
        }
        Some(lower + (upper - lower) * (rank - below) / in_bucket)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn histogram(buckets: &[(f64, f64)]) -> Histogram {
        let mut h = Histogram::default();
        for &(le, rate) in buckets {
            h.add(le, rate);
        }
        h
    }

    #[test]
    fn quantiles_interpolate_within_the_bucket_as_prometheus_does() {
        // 10 req/s: 4 under 5 ms, 4 more under 10 ms, 2 more under 25 ms.
        let h = histogram(&[(f64::INFINITY, 10.0), (5.0, 4.0), (10.0, 8.0), (25.0, 10.0)]);
        assert_eq!(h.quantile(0.5), Some(5.0 + 5.0 * (1.0 / 4.0)));
        assert_eq!(h.quantile(0.2), Some(2.5));
        assert_eq!(
            h.quantile(0.99),
            Some(10.0 + 15.0 * (0.99 * 10.0 - 8.0) / 2.0)
        );
    }

    #[test]
    fn a_quantile_in_the_inf_bucket_is_the_highest_finite_bound() {
        let h = histogram(&[(100.0, 5.0), (f64::INFINITY, 10.0)]);
        assert_eq!(h.quantile(0.99), Some(100.0));
    }

    #[test]
    fn no_quantile_without_observations_or_an_inf_bucket() {
        assert_eq!(
            histogram(&[(5.0, 0.0), (f64::INFINITY, 0.0)]).quantile(0.5),
            None
        );
        assert_eq!(histogram(&[(5.0, 3.0)]).quantile(0.5), None);
        assert_eq!(Histogram::default().quantile(0.5), None);
    }

    #[test]
    fn merged_series_add_by_bound() {
        let mut a = histogram(&[(5.0, 1.0), (f64::INFINITY, 2.0)]);
        a.merge(&histogram(&[(5.0, 3.0), (f64::INFINITY, 6.0)]));
        assert_eq!(a, histogram(&[(5.0, 4.0), (f64::INFINITY, 8.0)]));
    }
}
