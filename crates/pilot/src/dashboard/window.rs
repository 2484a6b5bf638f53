//! The recent samples of one counter and its rate over them, as Prometheus'
//! `rate(counter[window])` reads a range (without its extrapolation to the window's
//! edges: the dashboard shows what was measured).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

/// One counter's samples within the window, oldest first.
#[derive(Debug, Clone, Default)]
pub(crate) struct CounterWindow {
    samples: VecDeque<(Instant, f64)>,
}

impl CounterWindow {
    /// Records `value` scraped at `at`, forgetting samples older than `window` before it.
    pub fn push(&mut self, at: Instant, value: f64, window: Duration) {
        self.samples.push_back((at, value));
        self.expire(at, window);
    }

    /// Forgets samples older than `window` before `now`.
    pub fn expire(&mut self, now: Instant, window: Duration) {
        while let Some(&(at, _)) = self.samples.front() {
            if now.saturating_duration_since(at) <= window {
                break;
            }
            self.samples.pop_front();
        }
    }

    /// True when no sample is left.
    pub fn is_empty(&self) -> bool {
        self.samples.is_empty()
    }

    /// The per-second increase between the first and last sample, counting a drop as a
    /// restart from zero (a proxy restarted); `None` with fewer than two samples.
    pub fn rate(&self) -> Option<f64> {
        let (&(first_at, first), &(last_at, _)) = (self.samples.front()?, self.samples.back()?);
        let elapsed = last_at.checked_duration_since(first_at)?.as_secs_f64();
        if elapsed <= 0.0 {
            return None;
        }
        let mut increase = 0.0;
        let mut before = first;
        for &(_, value) in self.samples.iter().skip(1) {
            increase += if value < before {
                value
            } else {
                value - before
            };
            before = value;
        }
        Some(increase / elapsed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_is_the_increase_per_second_over_the_window() {
        let start = Instant::now();
        let at = |secs: u64| start + Duration::from_secs(secs);
        let window = Duration::from_secs(60);
        let mut counter = CounterWindow::default();
        counter.push(at(0), 100.0, window);
        assert_eq!(counter.rate(), None, "one sample is no rate");
        counter.push(at(5), 110.0, window);
        counter.push(at(10), 130.0, window);
        assert_eq!(counter.rate(), Some(3.0));

        // A restart: the counter drops to 4, which counts as 4 more.
        counter.push(at(20), 4.0, window);
        assert_eq!(counter.rate(), Some(34.0 / 20.0));

        // Past the window, the oldest samples no longer count.
        counter.push(at(70), 64.0, window);
        assert_eq!(counter.rate(), Some(64.0 / 60.0));
        counter.expire(at(200), window);
        assert!(counter.is_empty());
    }
}
