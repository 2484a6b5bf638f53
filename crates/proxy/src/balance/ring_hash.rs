//! RING_HASH: Envoy's ketama-style consistent hash ring.
//!
//! Each endpoint is hashed onto the ring at the keys `"<address>_0"`, `"<address>_1"`,
//! ... as many times as its share of the ring (scaled so the smallest share gets at
//! least `minimum_ring_size × share` entries, bounded by `maximum_ring_size`). A request
//! goes to the first entry at or after its hash, wrapping around. Built as Envoy builds
//! it, so the same endpoints and hash pick the same endpoint as Envoy.

use std::fmt::Write as _;

use mizzen_xds::pb::envoy::config::cluster::v3::cluster::{
    RingHashLbConfig, ring_hash_lb_config::HashFunction,
};
use xxhash_rust::xxh64::xxh64;

use super::Reason;
use super::consistent::{HashTable, Share};

/// Envoy's default and largest ring sizes.
const DEFAULT_MIN_RING_SIZE: u64 = 1024;
const MAX_RING_SIZE: u64 = 8 * 1024 * 1024;

/// The ring's settings.
#[derive(Debug, Clone, Copy)]
pub(super) struct RingConfig {
    min_size: u64,
    max_size: u64,
    function: KeyHash,
}

/// How endpoint keys are hashed onto the ring.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum KeyHash {
    XxHash,
    /// `std::hash<std::string>` of libstdc++, for rings compatible with older proxies.
    MurmurHash2,
}

impl RingConfig {
    /// The settings from the cluster's `ring_hash_lb_config`; errors name the field
    /// below it.
    pub fn new(config: Option<&RingHashLbConfig>) -> Result<RingConfig, (&'static str, Reason)> {
        let min_size = config
            .and_then(|c| c.minimum_ring_size)
            .map_or(DEFAULT_MIN_RING_SIZE, |v| v.value);
        let max_size = config
            .and_then(|c| c.maximum_ring_size)
            .map_or(MAX_RING_SIZE, |v| v.value);
        for (field, value) in [
            ("minimum_ring_size", min_size),
            ("maximum_ring_size", max_size),
        ] {
            if value > MAX_RING_SIZE {
                return Err((
                    field,
                    Reason::TooLarge {
                        value,
                        max: MAX_RING_SIZE,
                    },
                ));
            }
        }
        if min_size > max_size {
            return Err((
                "minimum_ring_size",
                Reason::MinAboveMax {
                    value: min_size,
                    max: max_size,
                },
            ));
        }
        let function = match config.map(|c| HashFunction::try_from(c.hash_function)) {
            None | Some(Ok(HashFunction::XxHash)) => KeyHash::XxHash,
            Some(Ok(HashFunction::MurmurHash2)) => KeyHash::MurmurHash2,
            Some(Err(_)) => {
                let value = config.map_or(0, |c| c.hash_function);
                return Err(("hash_function", Reason::UnknownEnum(value)));
            }
        };
        Ok(RingConfig {
            min_size,
            max_size,
            function,
        })
    }
}

impl Default for RingConfig {
    fn default() -> Self {
        RingConfig {
            min_size: DEFAULT_MIN_RING_SIZE,
            max_size: MAX_RING_SIZE,
            function: KeyHash::XxHash,
        }
    }
}

/// A hash ring, sorted by position.
#[derive(Debug)]
pub(super) struct Ring {
    entries: Box<[Entry]>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Entry {
    position: u64,
    index: u32,
}

impl HashTable for Ring {
    type Config = RingConfig;

    fn new(shares: &[Share], min: f64, _max: f64, keys: &[String], config: &RingConfig) -> Ring {
        if shares.is_empty() {
            return Ring {
                entries: Box::default(),
            };
        }
        // Scale so the least-weighted endpoint gets a whole number of entries.
        let scale = ((min * config.min_size as f64).ceil() / min).min(config.max_size as f64);
        let mut entries = Vec::with_capacity(scale.ceil() as usize);
        // Running totals across all endpoints keep fractional entries stable.
        let mut current = 0.0;
        let mut target = 0.0;
        let mut key = String::new();
        for share in shares {
            key.clear();
            key.push_str(&keys[share.index as usize]);
            key.push('_');
            let prefix = key.len();
            target += scale * share.weight;
            let mut n: u64 = 0;
            while current < target {
                key.truncate(prefix);
                write!(key, "{n}").expect("writing to a String cannot fail");
                let position = match config.function {
                    KeyHash::XxHash => xxh64(key.as_bytes(), 0),
                    KeyHash::MurmurHash2 => murmur_hash2(key.as_bytes()),
                };
                entries.push(Entry {
                    position,
                    index: share.index,
                });
                n += 1;
                current += 1.0;
            }
        }
        entries.sort_by_key(|e| e.position);
        Ring {
            entries: entries.into_boxed_slice(),
        }
    }

    fn lookup(&self, hash: u64) -> Option<u32> {
        if self.entries.is_empty() {
            return None;
        }
        let at = self.entries.partition_point(|e| e.position < hash);
        let entry = self.entries.get(at).unwrap_or(&self.entries[0]);
        Some(entry.index)
    }
}

/// libstdc++'s 64-bit `_Hash_bytes` (MurmurHash2 with its string seed), which Envoy's
/// MURMUR_HASH_2 ring option uses.
fn murmur_hash2(key: &[u8]) -> u64 {
    const SEED: u64 = 0xc70f_6907;
    const MUL: u64 = 0xc6a4_a793_5bd1_e995;
    let shift_mix = |v: u64| v ^ (v >> 47);
    let mut hash = SEED ^ (key.len() as u64).wrapping_mul(MUL);
    let mut chunks = key.chunks_exact(8);
    for chunk in &mut chunks {
        let word = u64::from_le_bytes(chunk.try_into().expect("chunks are 8 bytes"));
        hash ^= shift_mix(word.wrapping_mul(MUL)).wrapping_mul(MUL);
        hash = hash.wrapping_mul(MUL);
    }
    let rest = chunks.remainder();
    if !rest.is_empty() {
        let word = rest
            .iter()
            .rev()
            .fold(0u64, |acc, &b| (acc << 8) | u64::from(b));
        hash ^= word;
        hash = hash.wrapping_mul(MUL);
    }
    hash = shift_mix(hash).wrapping_mul(MUL);
    shift_mix(hash)
}

#[cfg(test)]
mod tests;
