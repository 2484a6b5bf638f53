//! MAGLEV: Google's Maglev consistent hashing, as Envoy builds its table.
//!
//! Endpoints, sorted by key, take turns claiming table slots along their own
//! permutation (`offset + skip × n` modulo the prime table size, with offset and skip
//! from xxHash64 of the key with seeds 0 and 1); an endpoint with a fraction of the
//! largest share takes a turn only that fraction of rounds. A request goes to the slot
//! at its hash modulo the table size. Built as Envoy builds it, so the same endpoints
//! and hash pick the same endpoint as Envoy.

use mizzen_xds::pb::envoy::config::cluster::v3::cluster::MaglevLbConfig;
use xxhash_rust::xxh64::xxh64;

use super::Reason;
use super::consistent::{HashTable, Share};

/// Envoy's default and largest table sizes.
const DEFAULT_TABLE_SIZE: u64 = 65537;
const MAX_TABLE_SIZE: u64 = 5_000_011;

/// The table's settings.
#[derive(Debug, Clone, Copy)]
pub(super) struct MaglevConfig {
    /// A prime.
    table_size: u64,
}

impl MaglevConfig {
    /// The settings from the cluster's `maglev_lb_config`; errors name the field below it.
    pub fn new(config: Option<&MaglevLbConfig>) -> Result<MaglevConfig, (&'static str, Reason)> {
        let table_size = config
            .and_then(|c| c.table_size)
            .map_or(DEFAULT_TABLE_SIZE, |v| v.value);
        if table_size > MAX_TABLE_SIZE {
            return Err((
                "table_size",
                Reason::TooLarge {
                    value: table_size,
                    max: MAX_TABLE_SIZE,
                },
            ));
        }
        if !is_prime(table_size) {
            return Err(("table_size", Reason::NotPrime(table_size)));
        }
        Ok(MaglevConfig { table_size })
    }
}

impl Default for MaglevConfig {
    fn default() -> Self {
        MaglevConfig {
            table_size: DEFAULT_TABLE_SIZE,
        }
    }
}

fn is_prime(n: u64) -> bool {
    n >= 2
        && (2..)
            .take_while(|d| d * d <= n)
            .all(|d| !n.is_multiple_of(d))
}

/// A Maglev lookup table of endpoint indices; empty when there are no endpoints.
#[derive(Debug)]
pub(super) struct Maglev {
    table: Box<[u32]>,
}

/// An endpoint's state while the table fills.
struct Builder {
    index: u32,
    offset: u64,
    skip: u64,
    weight: f64,
    target: f64,
    next: u64,
}

const EMPTY: u32 = u32::MAX;

impl HashTable for Maglev {
    type Config = MaglevConfig;

    fn new(
        shares: &[Share],
        _min: f64,
        max: f64,
        keys: &[String],
        config: &MaglevConfig,
    ) -> Maglev {
        if shares.is_empty() {
            return Maglev {
                table: Box::default(),
            };
        }
        let size = config.table_size;
        // The fill order must not depend on the order endpoints arrive in.
        let mut sorted: Vec<&Share> = shares.iter().collect();
        sorted.sort_by(|a, b| {
            keys[a.index as usize]
                .cmp(&keys[b.index as usize])
                .then(a.index.cmp(&b.index))
        });
        let mut builders: Vec<Builder> = sorted
            .into_iter()
            .map(|share| {
                let key = keys[share.index as usize].as_bytes();
                Builder {
                    index: share.index,
                    offset: xxh64(key, 0) % size,
                    skip: xxh64(key, 1) % (size - 1) + 1,
                    weight: share.weight,
                    target: 0.0,
                    next: 0,
                }
            })
            .collect();
        let mut table = vec![EMPTY; size as usize];
        let mut filled = 0;
        let mut round: u32 = 1;
        while filled < size {
            for b in builders.iter_mut() {
                if filled == size {
                    break;
                }
                // An endpoint with weight max/k takes a slot every k rounds.
                if f64::from(round) * b.weight < b.target {
                    continue;
                }
                b.target += max;
                let mut slot = (b.offset + b.skip * b.next) % size;
                while table[slot as usize] != EMPTY {
                    b.next += 1;
                    slot = (b.offset + b.skip * b.next) % size;
                }
                table[slot as usize] = b.index;
                b.next += 1;
                filled += 1;
            }
            round += 1;
        }
        Maglev {
            table: table.into_boxed_slice(),
        }
    }

    fn lookup(&self, hash: u64) -> Option<u32> {
        if self.table.is_empty() {
            return None;
        }
        Some(self.table[(hash % self.table.len() as u64) as usize])
    }
}

#[cfg(test)]
mod tests;
