//! Istio's `Percent` message: `{ value: 12.5 }`.

use serde::{Deserialize, Serialize};

/// A percentage in [0, 100] with fractional precision, written as `{value: N}`.
#[derive(Debug, Clone, Copy, PartialEq, PartialOrd, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Percent {
    /// The percentage; validation keeps it within 0..=100.
    #[serde(default)]
    pub value: f64,
}

impl Percent {
    /// True when the value lies in Istio's accepted range.
    pub fn in_range(self) -> bool {
        (0.0..=100.0).contains(&self.value)
    }

    /// The fraction in [0, 1] this percentage stands for.
    pub fn fraction(self) -> f64 {
        self.value / 100.0
    }
}
