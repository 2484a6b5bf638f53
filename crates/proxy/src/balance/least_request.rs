//! LEAST_REQUEST: the power of `choice_count` choices. Sample that many endpoints and
//! keep the one with the fewest outstanding requests.
//!
//! With equal weights this is exactly Envoy's algorithm: uniform samples, compared by
//! outstanding requests. With unequal weights Envoy feeds the dynamic weight
//! `weight / (active + 1)^bias` to a per-thread EDF scheduler that every pick mutates;
//! a shared balancer can't do that without a lock, so here samples are drawn in
//! proportion to weight and compared by `active^bias / weight` (load per unit of
//! weight). Idle endpoints then receive traffic in proportion to weight, busier ones
//! (relative to weight) lose picks the more the larger the bias, and a bias of 0
//! ignores load, as Envoy's documentation describes.

use mizzen_xds::pb::envoy::config::cluster::v3::cluster::LeastRequestLbConfig;

use super::Reason;
use super::endpoints::Endpoint;
use super::levels::SourcePicker;

/// Envoy's default number of choices.
const DEFAULT_CHOICE_COUNT: u32 = 2;

/// The policy's settings.
#[derive(Debug, Clone, Copy)]
pub(super) struct LeastRequestConfig {
    /// At least 2.
    choice_count: u32,
    bias: Bias,
}

/// How strongly outstanding requests count against a weighted endpoint.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Bias {
    /// Load is ignored: weighted random.
    Zero,
    /// Envoy's default.
    One,
    /// Any other finite positive exponent.
    Other(f64),
}

impl LeastRequestConfig {
    /// The settings from the cluster's `least_request_lb_config`; errors name the
    /// field below it.
    pub fn new(
        config: Option<&LeastRequestLbConfig>,
    ) -> Result<LeastRequestConfig, (&'static str, Reason)> {
        let choice_count = config
            .and_then(|c| c.choice_count)
            .map_or(DEFAULT_CHOICE_COUNT, |c| c.value);
        if choice_count < 2 {
            return Err(("choice_count", Reason::ChoiceCount(choice_count)));
        }
        let bias = match config.and_then(|c| c.active_request_bias.as_ref()) {
            None => Bias::One,
            Some(b) if b.default_value == 0.0 => Bias::Zero,
            Some(b) if b.default_value == 1.0 => Bias::One,
            Some(b) if b.default_value.is_finite() && b.default_value > 0.0 => {
                Bias::Other(b.default_value)
            }
            Some(b) => {
                return Err((
                    "active_request_bias.default_value",
                    Reason::Bias(b.default_value),
                ));
            }
        };
        Ok(LeastRequestConfig { choice_count, bias })
    }
}

impl Default for LeastRequestConfig {
    fn default() -> Self {
        LeastRequestConfig {
            choice_count: DEFAULT_CHOICE_COUNT,
            bias: Bias::One,
        }
    }
}

/// Least request over one group of endpoints.
#[derive(Debug)]
pub(super) struct LeastRequest {
    hosts: Box<[u32]>,
    config: LeastRequestConfig,
    /// Weighted sampling, present when the group's weights differ.
    weighted: Option<Alias>,
}

impl SourcePicker for LeastRequest {
    type Config = LeastRequestConfig;

    fn new(hosts: &[u32], endpoints: &[Endpoint], config: &LeastRequestConfig) -> LeastRequest {
        let weights: Vec<u64> = hosts
            .iter()
            .map(|&i| u64::from(endpoints[i as usize].weight))
            .collect();
        let equal = weights.windows(2).all(|w| w[0] == w[1]);
        LeastRequest {
            hosts: hosts.into(),
            config: *config,
            weighted: (!equal).then(|| Alias::new(&weights)),
        }
    }

    fn pick(&self, endpoints: &[Endpoint]) -> Option<u32> {
        if self.hosts.is_empty() {
            return None;
        }
        let mut best = self.sample();
        for _ in 1..self.config.choice_count {
            let other = self.sample();
            if self.lighter(&endpoints[other as usize], &endpoints[best as usize]) {
                best = other;
            }
        }
        Some(best)
    }
}

impl LeastRequest {
    fn sample(&self) -> u32 {
        let slot = match &self.weighted {
            None => fastrand::usize(..self.hosts.len()),
            Some(alias) => alias.sample(),
        };
        self.hosts[slot]
    }

    /// Whether `a` should replace the current choice `b`: strictly less loaded, so
    /// ties keep the earlier sample (which keeps idle picks proportional to weight).
    fn lighter(&self, a: &Endpoint, b: &Endpoint) -> bool {
        let (load_a, load_b) = (a.outstanding(), b.outstanding());
        if self.weighted.is_none() {
            return load_a < load_b;
        }
        let (weight_a, weight_b) = (u128::from(a.weight), u128::from(b.weight));
        match self.config.bias {
            Bias::Zero => false,
            Bias::One => u128::from(load_a) * weight_b < u128::from(load_b) * weight_a,
            Bias::Other(bias) => {
                let cost = |load: u64, weight: u32| (load as f64).powf(bias) / f64::from(weight);
                cost(load_a, a.weight) < cost(load_b, b.weight)
            }
        }
    }
}

/// Vose's alias table: O(1) sampling of slots in proportion to their weights.
#[derive(Debug)]
struct Alias {
    /// Out of 2^32: below it the column's own slot is taken, else its alias.
    threshold: Box<[u64]>,
    alias: Box<[u32]>,
}

const ONE: f64 = (1u64 << 32) as f64;

impl Alias {
    /// The table for positive `weights`.
    fn new(weights: &[u64]) -> Alias {
        let n = weights.len();
        let total: f64 = weights.iter().map(|&w| w as f64).sum();
        let mut scaled: Vec<f64> = weights
            .iter()
            .map(|&w| w as f64 * n as f64 / total)
            .collect();
        let (mut small, mut large): (Vec<usize>, Vec<usize>) =
            (0..n).partition(|&i| scaled[i] < 1.0);
        let mut threshold = vec![1u64 << 32; n];
        let mut alias: Vec<u32> = (0..n as u32).collect();
        while let (Some(&s), Some(&l)) = (small.last(), large.last()) {
            small.pop();
            large.pop();
            threshold[s] = (scaled[s] * ONE) as u64;
            alias[s] = l as u32;
            scaled[l] -= 1.0 - scaled[s];
            if scaled[l] < 1.0 {
                small.push(l);
            } else {
                large.push(l);
            }
        }
        // Whatever is left is 1 up to rounding, and keeps its own slot.
        Alias {
            threshold: threshold.into_boxed_slice(),
            alias: alias.into_boxed_slice(),
        }
    }

    fn sample(&self) -> usize {
        let r = fastrand::u64(..);
        let column = (((r >> 32) * self.threshold.len() as u64) >> 32) as usize;
        if r & 0xffff_ffff < self.threshold[column] {
            column
        } else {
            self.alias[column] as usize
        }
    }
}

#[cfg(test)]
mod tests;
