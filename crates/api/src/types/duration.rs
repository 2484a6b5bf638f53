//! Durations as Istio writes them: `5s`, `1.5s`, `100ms`, `1h30m`.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

/// A non-negative span of time, parsed from Go's duration syntax (`300ms`, `1.5h`, `2h45m`),
/// which is what Istio's CRDs accept, and written back in the shortest exact unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Duration(std::time::Duration);

/// Why a duration string could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationError {
    #[error("invalid duration {0:?}: empty")]
    Empty(String),
    #[error("invalid duration {0:?}: negative durations are not allowed")]
    Negative(String),
    #[error(
        "invalid duration {0:?}: expected a number followed by a unit (ns, us, ms, s, m, h), e.g. 100ms or 1.5s"
    )]
    Syntax(String),
    #[error("invalid duration {0:?}: out of range")]
    Overflow(String),
}

const UNITS: [(&str, u128); 7] = [
    ("ns", 1),
    ("us", 1_000),
    ("µs", 1_000),
    ("ms", 1_000_000),
    ("s", 1_000_000_000),
    ("m", 60_000_000_000),
    ("h", 3_600_000_000_000),
];

impl Duration {
    /// Wraps a standard duration.
    pub const fn new(d: std::time::Duration) -> Self {
        Self(d)
    }

    /// A duration of `ms` milliseconds.
    pub const fn from_millis(ms: u64) -> Self {
        Self(std::time::Duration::from_millis(ms))
    }

    /// A duration of `s` seconds.
    pub const fn from_secs(s: u64) -> Self {
        Self(std::time::Duration::from_secs(s))
    }

    /// The standard-library value.
    pub const fn get(self) -> std::time::Duration {
        self.0
    }

    /// True for a zero duration.
    pub fn is_zero(self) -> bool {
        self.0.is_zero()
    }
}

impl From<std::time::Duration> for Duration {
    fn from(d: std::time::Duration) -> Self {
        Self(d)
    }
}

impl FromStr for Duration {
    type Err = DurationError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let text = s.trim();
        let syntax = || DurationError::Syntax(s.to_owned());
        if text.is_empty() {
            return Err(DurationError::Empty(s.to_owned()));
        }
        let (negative, rest) = match text.as_bytes()[0] {
            b'-' => (true, &text[1..]),
            b'+' => (false, &text[1..]),
            _ => (false, text),
        };
        if rest.is_empty() {
            return Err(syntax());
        }
        if rest == "0" {
            return Ok(Self::default());
        }
        let mut nanos: u128 = 0;
        let mut rest = rest;
        while !rest.is_empty() {
            let num_len = rest
                .find(|c: char| !(c.is_ascii_digit() || c == '.'))
                .ok_or_else(syntax)?;
            let (number, tail) = rest.split_at(num_len);
            let unit_len = tail
                .find(|c: char| c.is_ascii_digit() || c == '.')
                .unwrap_or(tail.len());
            let (unit, tail) = tail.split_at(unit_len);
            let scale = UNITS
                .iter()
                .find(|(name, _)| *name == unit)
                .map(|(_, scale)| *scale)
                .ok_or_else(syntax)?;
            let (whole, frac) = number.split_once('.').unwrap_or((number, ""));
            let digits = |t: &str| t.bytes().all(|b| b.is_ascii_digit());
            if (whole.is_empty() && frac.is_empty()) || !digits(whole) || !digits(frac) {
                return Err(syntax());
            }
            let whole: u128 = if whole.is_empty() {
                0
            } else {
                whole
                    .parse()
                    .map_err(|_| DurationError::Overflow(s.to_owned()))?
            };
            let mut part = whole
                .checked_mul(scale)
                .ok_or_else(|| DurationError::Overflow(s.to_owned()))?;
            // Fractions beyond nanosecond precision are truncated, as Go does.
            let mut unit_scale = scale;
            for digit in frac.bytes() {
                unit_scale /= 10;
                part += u128::from(digit - b'0') * unit_scale;
            }
            nanos = nanos
                .checked_add(part)
                .ok_or_else(|| DurationError::Overflow(s.to_owned()))?;
            rest = tail;
        }
        if negative && nanos > 0 {
            return Err(DurationError::Negative(s.to_owned()));
        }
        let secs = u64::try_from(nanos / 1_000_000_000)
            .map_err(|_| DurationError::Overflow(s.to_owned()))?;
        Ok(Self(std::time::Duration::new(
            secs,
            (nanos % 1_000_000_000) as u32,
        )))
    }
}

impl fmt::Display for Duration {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nanos = self.0.as_nanos();
        if nanos == 0 {
            return f.write_str("0s");
        }
        let (unit, scale) = UNITS
            .iter()
            .rev()
            .filter(|(name, _)| *name != "µs")
            .find(|(_, scale)| nanos.is_multiple_of(*scale))
            .expect("nanoseconds always divide");
        if *scale < 1_000_000_000 && nanos >= 1_000_000_000 {
            // Sub-second precision above a second reads best as fractional seconds.
            let secs = self.0.as_secs();
            let frac = format!("{:09}", self.0.subsec_nanos());
            return write!(f, "{secs}.{}s", frac.trim_end_matches('0'));
        }
        write!(f, "{}{unit}", nanos / scale)
    }
}

impl Serialize for Duration {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Duration {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let text = String::deserialize(deserializer)?;
        text.parse().map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ms(s: &str) -> u128 {
        s.parse::<Duration>().unwrap().get().as_millis()
    }

    #[test]
    fn parses_go_durations() {
        assert_eq!(ms("5s"), 5_000);
        assert_eq!(ms("1.5s"), 1_500);
        assert_eq!(ms("100ms"), 100);
        assert_eq!(ms("1h"), 3_600_000);
        assert_eq!(ms("1h30m"), 5_400_000);
        assert_eq!(ms("0"), 0);
        assert_eq!(ms(".5s"), 500);
        assert_eq!("10us".parse::<Duration>().unwrap().get().as_nanos(), 10_000);
    }

    #[test]
    fn rejects_bad_durations() {
        for bad in ["", "5", "s", "5x", "-1s", "1.s5", "1..5s", "ms"] {
            assert!(bad.parse::<Duration>().is_err(), "{bad:?} parsed");
        }
        assert!(matches!(
            "-1s".parse::<Duration>(),
            Err(DurationError::Negative(_))
        ));
        assert!("-0s".parse::<Duration>().is_ok());
    }

    #[test]
    fn displays_shortest_exact_unit_and_round_trips() {
        for (input, shown) in [
            ("5s", "5s"),
            ("1.5s", "1.5s"),
            ("100ms", "100ms"),
            ("1h", "1h"),
            ("90m", "90m"),
            ("0s", "0s"),
            ("1500us", "1500us"),
        ] {
            let d: Duration = input.parse().unwrap();
            assert_eq!(d.to_string(), shown);
            assert_eq!(shown.parse::<Duration>().unwrap(), d);
        }
    }
}
