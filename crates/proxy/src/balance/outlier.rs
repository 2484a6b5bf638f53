//! Outlier detection (passive health checking), as Envoy's consecutive-error detectors
//! do it: each request's outcome bumps a few atomics of its endpoint; a run of failures
//! long enough ejects the endpoint (the balancer is rebuilt with it unhealthy, so the
//! panic threshold still applies); a sweep every `interval` brings back the endpoints
//! whose ejection time is over. Ejections and sweeps are rare and take a lock; reports
//! never do.

use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::time::Instant;

use super::Endpoint;
use crate::config::OutlierDetection;
use crate::stats::OutlierStats;

/// What became of a request sent to an endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The endpoint answered with this status.
    Response(u16),
    /// Connecting failed or the connection was reset before the response (Envoy's
    /// local-origin connect failure).
    LocalFailure,
    /// The route's timeout passed first (Envoy's local-origin timeout).
    Timeout,
}

/// Which run of failures was detected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Run {
    Consecutive5xx,
    GatewayFailure,
    LocalOrigin,
}

/// An endpoint's runs of failures.
#[derive(Debug, Default)]
pub(super) struct Monitor {
    consecutive_5xx: AtomicU32,
    gateway_failures: AtomicU32,
    local_failures: AtomicU32,
    ejected: AtomicBool,
}

impl Monitor {
    /// Whether the endpoint is ejected.
    pub(super) fn is_ejected(&self) -> bool {
        self.ejected.load(Ordering::Relaxed)
    }

    /// Forgets runs and ejection (outlier detection was turned off).
    pub(super) fn clear(&self) {
        for count in [
            &self.consecutive_5xx,
            &self.gateway_failures,
            &self.local_failures,
        ] {
            count.store(0, Ordering::Relaxed);
        }
        self.ejected.store(false, Ordering::Relaxed);
    }

    /// Counts `outcome`; the runs it completes (each detected once, its count restarting).
    fn record(&self, outcome: Outcome, od: &OutlierDetection) -> [Option<Run>; 2] {
        // Without the split, local failures count as the 5xx Envoy would answer for
        // them: 503 for a connect failure or reset, 504 for a timeout.
        let status = match outcome {
            Outcome::Response(status) => Some(status),
            Outcome::LocalFailure if !od.split_external_local_origin_errors => Some(503),
            Outcome::Timeout if !od.split_external_local_origin_errors => Some(504),
            Outcome::LocalFailure | Outcome::Timeout => None,
        };
        let Some(status) = status else {
            let run = bump(&self.local_failures, od.consecutive_local_origin_failure);
            return [run.then_some(Run::LocalOrigin), None];
        };
        if od.split_external_local_origin_errors {
            // The endpoint answered: its connection works.
            self.local_failures.store(0, Ordering::Relaxed);
        }
        if !(500..600).contains(&status) {
            self.consecutive_5xx.store(0, Ordering::Relaxed);
            self.gateway_failures.store(0, Ordering::Relaxed);
            return [None, None];
        }
        let five = bump(&self.consecutive_5xx, od.consecutive_5xx);
        let gateway = if matches!(status, 502..=504) {
            bump(&self.gateway_failures, od.consecutive_gateway_failure)
        } else {
            self.gateway_failures.store(0, Ordering::Relaxed);
            false
        };
        [
            five.then_some(Run::Consecutive5xx),
            gateway.then_some(Run::GatewayFailure),
        ]
    }
}

/// Adds one to a run; true when it reaches `threshold` (and then starts over).
fn bump(count: &AtomicU32, threshold: u32) -> bool {
    let now = count.fetch_add(1, Ordering::Relaxed) + 1;
    if threshold > 0 && now >= threshold {
        count.store(0, Ordering::Relaxed);
        return true;
    }
    false
}

/// One endpoint's ejection history.
#[derive(Debug, Default, Clone, Copy)]
struct History {
    /// When the current ejection began, while ejected.
    ejected_at: Option<Instant>,
    /// Multiplies the base ejection time: up with each ejection, down with each
    /// interval spent healthy.
    backoff: u32,
    /// When it last came back.
    returned_at: Option<Instant>,
}

/// The cluster's ejections, changed under the detector's lock.
#[derive(Debug, Default)]
pub(super) struct Ejections {
    /// Per endpoint, in the balancer's order.
    hosts: Vec<History>,
}

/// What a report or sweep changed, for the balancer to act on.
enum Change {
    /// Nothing about ejections.
    None,
    /// Some endpoint was ejected or brought back: the balancer must be rebuilt.
    Ejections,
}

impl Ejections {
    /// Whether endpoint `index` is ejected.
    pub(super) fn is_ejected(&self, index: usize) -> bool {
        self.hosts
            .get(index)
            .is_some_and(|h| h.ejected_at.is_some())
    }

    fn active(&self) -> usize {
        self.hosts.iter().filter(|h| h.ejected_at.is_some()).count()
    }

    /// Ejects endpoint `index` for the detected `run`, if enforced and allowed.
    fn eject(
        &mut self,
        index: usize,
        monitor: &Monitor,
        run: Run,
        od: &OutlierDetection,
        stats: &OutlierStats,
        now: Instant,
    ) -> Change {
        let (enforcing, detected, enforced) = match run {
            Run::Consecutive5xx => (
                od.enforcing_consecutive_5xx,
                &stats.ejections_detected_consecutive_5xx,
                &stats.ejections_enforced_consecutive_5xx,
            ),
            Run::GatewayFailure => (
                od.enforcing_consecutive_gateway_failure,
                &stats.ejections_detected_consecutive_gateway_failure,
                &stats.ejections_enforced_consecutive_gateway_failure,
            ),
            Run::LocalOrigin => (
                od.enforcing_consecutive_local_origin_failure,
                &stats.ejections_detected_consecutive_local_origin_failure,
                &stats.ejections_enforced_consecutive_local_origin_failure,
            ),
        };
        detected.inc();
        let Some(host) = self.hosts.get(index) else {
            return Change::None;
        };
        if host.ejected_at.is_some() {
            return Change::None;
        }
        // Envoy counts the endpoint about to go: (active + 1) of all, within the maximum.
        let active = self.active();
        let share = 100.0 * (active + 1) as f64 / self.hosts.len() as f64;
        let allowed = share <= f64::from(od.max_ejection_percent)
            || (od.always_eject_one_host && active == 0);
        if !allowed {
            stats.ejections_overflow.inc();
            return Change::None;
        }
        if fastrand::u32(0..100) >= enforcing {
            return Change::None;
        }
        let host = &mut self.hosts[index];
        host.ejected_at = Some(now);
        // Bounded, as Envoy bounds it: beyond max_ejection_time it changes nothing.
        if u128::from(host.backoff) * od.base_ejection_time.as_nanos()
            < od.max_ejection_time.as_nanos() + od.base_ejection_time.as_nanos()
        {
            host.backoff += 1;
        }
        monitor.ejected.store(true, Ordering::Relaxed);
        enforced.inc();
        stats.ejections_enforced_total.inc();
        stats.ejections_active.set(self.active() as i64);
        Change::Ejections
    }

    /// Brings back the endpoints whose ejection is over, and eases the backoff of those
    /// healthy for a base ejection time since they came back.
    fn sweep(
        &mut self,
        endpoints: &[Endpoint],
        od: &OutlierDetection,
        stats: &OutlierStats,
        now: Instant,
    ) -> Change {
        let mut change = Change::None;
        for (host, endpoint) in self.hosts.iter_mut().zip(endpoints) {
            let Some(since) = host.ejected_at else {
                if host.backoff > 0
                    && host
                        .returned_at
                        .is_some_and(|t| now.duration_since(t) >= od.base_ejection_time)
                {
                    host.backoff -= 1;
                }
                continue;
            };
            let term = od
                .base_ejection_time
                .saturating_mul(host.backoff)
                .min(od.max_ejection_time);
            if now.duration_since(since) >= term {
                host.ejected_at = None;
                host.returned_at = Some(now);
                endpoint.monitor().ejected.store(false, Ordering::Relaxed);
                change = Change::Ejections;
            }
        }
        stats.ejections_active.set(self.active() as i64);
        change
    }
}

/// A cluster's outlier detection over its balancer's endpoints.
#[derive(Debug)]
pub(super) struct Detector {
    ejections: Mutex<Ejections>,
    /// When the next sweep is due, in nanoseconds since `epoch` (read without the lock).
    next_sweep: AtomicU64,
    epoch: Instant,
}

impl Detector {
    /// A detector with nothing ejected over `count` endpoints.
    pub(super) fn new(count: usize) -> Detector {
        Detector {
            ejections: Mutex::new(Ejections {
                hosts: vec![History::default(); count],
            }),
            next_sweep: AtomicU64::new(0),
            epoch: Instant::now(),
        }
    }

    /// A detector for a new balancer whose endpoint `i` was `matches[i]` in this one:
    /// their histories carry over, new endpoints start afresh; the next sweep is due
    /// as it was.
    pub(super) fn carried(&self, matches: &[Option<usize>]) -> Detector {
        let ejections = lock(&self.ejections);
        let hosts = matches
            .iter()
            .map(|j| {
                j.and_then(|j| ejections.hosts.get(j).copied())
                    .unwrap_or_default()
            })
            .collect();
        Detector {
            ejections: Mutex::new(Ejections { hosts }),
            next_sweep: AtomicU64::new(self.next_sweep.load(Ordering::Relaxed)),
            epoch: self.epoch,
        }
    }

    /// Counts `outcome` for endpoint `index`; true when it got ejected.
    pub(super) fn report(
        &self,
        endpoints: &[Endpoint],
        index: usize,
        outcome: Outcome,
        od: &OutlierDetection,
        stats: &OutlierStats,
    ) -> bool {
        let Some(endpoint) = endpoints.get(index) else {
            return false;
        };
        let monitor = endpoint.monitor();
        let mut ejected = false;
        for run in monitor.record(outcome, od).into_iter().flatten() {
            let mut ejections = lock(&self.ejections);
            let change = ejections.eject(index, monitor, run, od, stats, Instant::now());
            ejected |= matches!(change, Change::Ejections);
        }
        ejected
    }

    /// Runs the sweep when its interval is over; true when an endpoint came back.
    pub(super) fn sweep_if_due(
        &self,
        endpoints: &[Endpoint],
        od: &OutlierDetection,
        stats: &OutlierStats,
        now: Instant,
    ) -> bool {
        let at = u64::try_from(now.duration_since(self.epoch).as_nanos()).unwrap_or(u64::MAX);
        if at < self.next_sweep.load(Ordering::Relaxed) {
            return false;
        }
        let mut ejections = lock(&self.ejections);
        // Another caller may have swept meanwhile.
        if at < self.next_sweep.load(Ordering::Relaxed) {
            return false;
        }
        let next = at.saturating_add(u64::try_from(od.interval.as_nanos()).unwrap_or(u64::MAX));
        self.next_sweep.store(next, Ordering::Relaxed);
        matches!(
            ejections.sweep(endpoints, od, stats, now),
            Change::Ejections
        )
    }

    /// Runs `f` on the ejection state (to rebuild the balancer consistently with it).
    pub(super) fn with_ejections<T>(&self, f: impl FnOnce(&Ejections) -> T) -> T {
        f(&lock(&self.ejections))
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use mizzen_xds::pb::envoy::config::cluster::v3::OutlierDetection as PbOutlierDetection;
    use mizzen_xds::pb::envoy::config::cluster::v3::cluster::LbPolicy;
    use mizzen_xds::pb::google::protobuf::UInt32Value;

    use super::*;
    use crate::balance::Balancer;
    use crate::balance::testing::{cluster, flat, healthy, panic_threshold, pick_counts};

    fn detection(consecutive_5xx: u32, max_ejection_percent: u32) -> OutlierDetection {
        let mut od = OutlierDetection::compile(&PbOutlierDetection {
            consecutive_5xx: Some(UInt32Value {
                value: consecutive_5xx,
            }),
            max_ejection_percent: Some(UInt32Value {
                value: max_ejection_percent,
            }),
            ..Default::default()
        })
        .unwrap();
        // Every sweep call runs: the tests give their own times.
        od.interval = Duration::from_nanos(1);
        od.base_ejection_time = Duration::from_millis(100);
        od
    }

    fn fail(b: &Balancer, index: usize, times: u32, od: &OutlierDetection, s: &OutlierStats) {
        for _ in 0..times {
            b.report(index, Outcome::Response(500), od, s);
        }
    }

    #[test]
    fn a_run_of_5xx_ejects_the_endpoint_until_its_time_is_over() {
        let b = Balancer::new(
            &cluster(LbPolicy::RoundRobin),
            &flat(vec![healthy(1), healthy(2)]),
        )
        .unwrap();
        let (od, stats) = (detection(3, 50), OutlierStats::default());
        // A success in the middle of a run starts it over.
        fail(&b, 0, 2, &od, &stats);
        b.report(0, Outcome::Response(200), &od, &stats);
        fail(&b, 0, 2, &od, &stats);
        assert!(!b.endpoints()[0].failed_outlier_check());
        fail(&b, 0, 1, &od, &stats);
        assert!(b.endpoints()[0].failed_outlier_check());
        assert_eq!(stats.ejections_enforced_consecutive_5xx.get(), 1);
        assert_eq!(stats.ejections_active.get(), 1);
        assert_eq!(pick_counts(&b, 100, || None), [0, 100]);

        let ejected = Instant::now();
        b.sweep(&od, &stats, ejected + Duration::from_millis(50));
        assert!(b.endpoints()[0].failed_outlier_check(), "not yet");
        b.sweep(&od, &stats, ejected + Duration::from_millis(150));
        assert!(!b.endpoints()[0].failed_outlier_check());
        assert_eq!(stats.ejections_active.get(), 0);
        assert_eq!(pick_counts(&b, 100, || None), [50, 50]);
    }

    #[test]
    fn a_second_ejection_lasts_twice_the_base_time() {
        let b = Balancer::new(
            &cluster(LbPolicy::RoundRobin),
            &flat(vec![healthy(1), healthy(2)]),
        )
        .unwrap();
        let (od, stats) = (detection(1, 50), OutlierStats::default());
        fail(&b, 0, 1, &od, &stats);
        let start = Instant::now();
        b.sweep(&od, &stats, start + Duration::from_millis(150));
        assert!(!b.endpoints()[0].failed_outlier_check());
        fail(&b, 0, 1, &od, &stats);
        let again = Instant::now();
        b.sweep(&od, &stats, again + Duration::from_millis(150));
        assert!(b.endpoints()[0].failed_outlier_check(), "200 ms this time");
        b.sweep(&od, &stats, again + Duration::from_millis(250));
        assert!(!b.endpoints()[0].failed_outlier_check());
    }

    #[test]
    fn an_ejection_outlives_a_new_endpoint_list() {
        let c = cluster(LbPolicy::RoundRobin);
        let b = Balancer::new(&c, &flat(vec![healthy(1), healthy(2)])).unwrap();
        let (od, stats) = (detection(1, 50), OutlierStats::default());
        fail(&b, 1, 1, &od, &stats);
        // EDS adds an endpoint; the ejected one stays out, the others share the load.
        let next = Balancer::new(&c, &flat(vec![healthy(3), healthy(2), healthy(1)]))
            .unwrap()
            .carry_over(&b, true);
        assert!(next.endpoints()[1].failed_outlier_check());
        assert_eq!(pick_counts(&next, 100, || None), [50, 0, 50]);
    }

    #[test]
    fn max_ejection_percent_keeps_endpoints_in() {
        let b = Balancer::new(
            &cluster(LbPolicy::RoundRobin),
            &flat(vec![healthy(1), healthy(2)]),
        )
        .unwrap();
        // Envoy's default of 10% ejects nothing of two endpoints.
        let (od, stats) = (detection(1, 10), OutlierStats::default());
        fail(&b, 0, 1, &od, &stats);
        assert!(!b.endpoints()[0].failed_outlier_check());
        assert_eq!(stats.ejections_overflow.get(), 1);
        assert_eq!(stats.ejections_detected_consecutive_5xx.get(), 1);
    }

    #[test]
    fn too_few_healthy_endpoints_left_balance_over_all_in_panic() {
        let b = Balancer::new(
            &panic_threshold(cluster(LbPolicy::RoundRobin), 50.0),
            &flat(vec![healthy(1), healthy(2), healthy(3)]),
        )
        .unwrap();
        let (od, stats) = (detection(1, 100), OutlierStats::default());
        fail(&b, 0, 1, &od, &stats);
        assert_eq!(pick_counts(&b, 100, || None), [0, 50, 50]);
        // One of three healthy is under 50%: Envoy's panic mode uses every endpoint.
        fail(&b, 1, 1, &od, &stats);
        assert_eq!(stats.ejections_active.get(), 2);
        let counts = pick_counts(&b, 300, || None);
        assert_eq!(counts, [100, 100, 100]);
    }

    #[test]
    fn local_failures_count_as_5xx_unless_split() {
        let od = detection(2, 100);
        let monitor = Monitor::default();
        assert_eq!(monitor.record(Outcome::LocalFailure, &od), [None, None]);
        assert_eq!(
            monitor.record(Outcome::Timeout, &od),
            [Some(Run::Consecutive5xx), None]
        );
        let split = OutlierDetection {
            split_external_local_origin_errors: true,
            consecutive_local_origin_failure: 2,
            ..od
        };
        let monitor = Monitor::default();
        monitor.record(Outcome::LocalFailure, &split);
        // An answer, even a 5xx, shows the connection works: the local run restarts.
        monitor.record(Outcome::Response(503), &split);
        assert_eq!(monitor.record(Outcome::LocalFailure, &split), [None, None]);
        assert_eq!(
            monitor.record(Outcome::Timeout, &split),
            [Some(Run::LocalOrigin), None]
        );
    }
}
