use mizzen_xds::pb::envoy::config::core::v3::HealthStatus;
use mizzen_xds::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, LbEndpoint, LocalityLbEndpoints, cluster_load_assignment::Policy,
};

use super::*;
use crate::balance::testing::{assignment, endpoint, group};

/// A priority group with endpoints of the given healths, in that order.
fn level(priority: u32, healths: &[(usize, HealthStatus)]) -> LocalityLbEndpoints {
    let endpoints: Vec<LbEndpoint> = healths
        .iter()
        .flat_map(|&(n, health)| std::iter::repeat_n(health, n))
        .enumerate()
        .map(|(i, health)| endpoint("10.0.0.1", 1000 * priority + i as u32, 1, health))
        .collect();
    group("z", priority, None, endpoints)
}

fn healthy_of(priority: u32, healthy: usize, total: usize) -> LocalityLbEndpoints {
    level(
        priority,
        &[
            (healthy, HealthStatus::Healthy),
            (total - healthy, HealthStatus::Unhealthy),
        ],
    )
}

fn load_of(a: &ClusterLoadAssignment, threshold: u32) -> PriorityLoad {
    PriorityLoad::new(&Assignment::new("c", a).unwrap(), threshold)
}

fn load(levels: Vec<LocalityLbEndpoints>, threshold: u32) -> PriorityLoad {
    load_of(&assignment(levels), threshold)
}

#[test]
fn overprovisioning_spills_load_to_the_next_priority_as_envoy_documents() {
    // Envoy's priority levels table: P0's healthy share against the traffic it keeps.
    for (healthy, p0, p1) in [
        (100, 100, 0),
        (72, 100, 0),
        (71, 99, 1),
        (50, 70, 30),
        (25, 35, 65),
        (0, 0, 100),
    ] {
        let l = load(vec![healthy_of(0, healthy, 100), healthy_of(1, 10, 10)], 50);
        assert_eq!(l.healthy(), [p0, p1], "P0 {healthy}% healthy");
        assert_eq!(l.degraded(), [0, 0]);
        assert!(!l.in_panic(0) && !l.in_panic(1));
    }
}

#[test]
fn load_spills_through_several_priorities() {
    // 20% healthy at P0 and P1 (28% each after overprovisioning), P2 takes the rest.
    let l = load(
        vec![
            healthy_of(0, 2, 10),
            healthy_of(1, 2, 10),
            healthy_of(2, 10, 10),
        ],
        0,
    );
    assert_eq!(l.healthy(), [28, 28, 44]);
}

#[test]
fn load_is_normalized_when_all_priorities_together_fall_short() {
    // 28% + 28% of capacity: each level gets half, scaled up to 100.
    let l = load(vec![healthy_of(0, 2, 10), healthy_of(1, 2, 10)], 0);
    assert_eq!(l.healthy(), [50, 50]);
}

#[test]
fn degraded_endpoints_take_what_healthy_ones_cannot() {
    // 1 healthy of 5 (28%) and 4 degraded (112%, capped at 100).
    let l = load(
        vec![level(
            0,
            &[(1, HealthStatus::Healthy), (4, HealthStatus::Degraded)],
        )],
        50,
    );
    assert_eq!((l.healthy(), l.degraded()), (&[28][..], &[72][..]));
    // A healthy P1 is preferred over P0's degraded endpoints.
    let l = load(
        vec![
            level(
                0,
                &[(1, HealthStatus::Healthy), (4, HealthStatus::Degraded)],
            ),
            healthy_of(1, 5, 5),
        ],
        50,
    );
    assert_eq!((l.healthy(), l.degraded()), (&[28, 72][..], &[0, 0][..]));
}

#[test]
fn a_level_below_the_panic_threshold_balances_over_all_its_endpoints() {
    // 4 of 10 healthy is below 50%: P0 panics; with P1 absent it is total panic.
    let l = load(vec![healthy_of(0, 4, 10)], 50);
    assert!(l.in_panic(0));
    assert_eq!(l.healthy(), [100]);
    // Above the threshold there is no panic even though P0 is short of capacity.
    let l = load(vec![healthy_of(0, 6, 10)], 50);
    assert!(!l.in_panic(0));
    assert_eq!(l.healthy(), [100]);
}

#[test]
fn no_level_panics_while_priorities_together_have_full_capacity() {
    let l = load(vec![healthy_of(0, 1, 10), healthy_of(1, 10, 10)], 50);
    assert!(!l.in_panic(0) && !l.in_panic(1));
    assert_eq!(l.healthy(), [14, 86]);
}

#[test]
fn in_total_panic_load_follows_endpoint_counts() {
    let l = load(vec![healthy_of(0, 1, 10), healthy_of(1, 3, 30)], 50);
    assert!(l.in_panic(0) && l.in_panic(1));
    assert_eq!((l.healthy(), l.degraded()), (&[25, 75][..], &[0, 0][..]));
}

#[test]
fn with_panic_disabled_nothing_usable_sends_everything_to_p0() {
    let l = load(vec![healthy_of(0, 0, 3), healthy_of(1, 0, 3)], 0);
    assert!(!l.in_panic(0) && !l.in_panic(1));
    assert_eq!(l.healthy(), [100, 0]);
}

#[test]
fn draining_endpoints_do_not_count_against_health() {
    let l = load(
        vec![level(
            0,
            &[(3, HealthStatus::Healthy), (7, HealthStatus::Draining)],
        )],
        50,
    );
    assert!(!l.in_panic(0));
    assert_eq!(l.healthy(), [100]);
}

#[test]
fn weighted_priority_health_counts_weights() {
    let mut a = assignment(vec![
        group(
            "z",
            0,
            None,
            vec![
                endpoint("10.0.0.1", 1, 3, HealthStatus::Healthy),
                endpoint("10.0.0.1", 2, 1, HealthStatus::Unhealthy),
                endpoint("10.0.0.1", 3, 1, HealthStatus::Unhealthy),
            ],
        ),
        healthy_of(1, 1, 1),
    ]);
    // By count: 1 of 3 healthy, 46% of capacity.
    assert_eq!(load_of(&a, 0).healthy(), [46, 54]);
    a.policy = Some(Policy {
        weighted_priority_health: true,
        ..Policy::default()
    });
    // By weight: 3 of 5, 84%.
    assert_eq!(load_of(&a, 0).healthy(), [84, 16]);
}

#[test]
fn the_hash_chooses_a_priority_by_cumulative_load() {
    let l = load(vec![healthy_of(0, 1, 2), healthy_of(1, 1, 1)], 50);
    assert_eq!(l.healthy(), [70, 30]);
    // As in Envoy's ring hash failover test: 69 lands on P0, 71 on P1.
    assert_eq!(l.choose(69), (0, Availability::Healthy));
    assert_eq!(l.choose(71), (1, Availability::Healthy));
    assert_eq!(l.choose(169), (0, Availability::Healthy));
    let degraded = load(
        vec![level(
            0,
            &[(1, HealthStatus::Healthy), (4, HealthStatus::Degraded)],
        )],
        50,
    );
    assert_eq!(degraded.choose(27), (0, Availability::Healthy));
    assert_eq!(degraded.choose(28), (0, Availability::Degraded));
}
