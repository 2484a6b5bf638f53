//! The end-to-end harness: a local mesh (pilot, the client's sidecar, controllable
//! backends) configured from `examples/traffic/`, an application client, and the
//! statistics the scenario tests judge traffic with; and a real `mizzen up` (`up.rs`).
//!
//! Tests synchronise on events (config acknowledged, requests arrived, responses
//! received), bounded by [`WAIT`]; they never sleep.

// Each test binary uses the part of the harness its scenarios need.
#![allow(dead_code)]

pub mod backend;
pub mod client;
pub mod mesh;
pub mod up;

use std::time::Duration;

/// Far longer than any config push or request should take: only a lost event hits it.
pub const WAIT: Duration = Duration::from_secs(20);

/// The authority the examples' client calls.
pub const REVIEWS: &str = "reviews:9080";

/// Asserts that `count` successes in `n` trials fit a binomial distribution of
/// probability `p`, within 5 standard deviations (a false alarm about once in 1.7
/// million runs).
#[track_caller]
pub fn assert_binomial(what: &str, count: usize, n: usize, p: f64) {
    let expected = n as f64 * p;
    let tolerance = 5.0 * (n as f64 * p * (1.0 - p)).sqrt();
    assert!(
        (count as f64 - expected).abs() <= tolerance,
        "{what}: {count} of {n}, expected {expected:.0} ± {tolerance:.1} (p = {p})"
    );
}

/// Asserts every response is a 200.
#[track_caller]
pub fn assert_all_ok(responses: &[client::Response]) {
    if let Some(bad) = responses.iter().find(|r| r.status != 200) {
        panic!("every request succeeds; one got {bad:?}");
    }
}

/// How many of `responses` the backend instance `name` answered.
pub fn answered_by(responses: &[client::Response], name: &str) -> usize {
    responses
        .iter()
        .filter(|r| r.instance() == Some(name))
        .count()
}
