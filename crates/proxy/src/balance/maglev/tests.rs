use mizzen_xds::pb::google::protobuf::UInt64Value;

use super::*;

fn sized(table_size: u64) -> MaglevConfig {
    MaglevConfig::new(Some(&MaglevLbConfig {
        table_size: Some(UInt64Value { value: table_size }),
    }))
    .unwrap()
}

fn ports(range: std::ops::RangeInclusive<u16>) -> Vec<String> {
    range.map(|p| format!("127.0.0.1:{p}")).collect()
}

fn shares(weights: &[f64]) -> Vec<Share> {
    let total: f64 = weights.iter().sum();
    weights
        .iter()
        .enumerate()
        .map(|(i, w)| Share {
            index: i as u32,
            weight: w / total,
        })
        .collect()
}

fn table(keys: &[String], weights: &[f64], config: &MaglevConfig) -> Maglev {
    let shares = shares(weights);
    let min = shares.iter().map(|s| s.weight).fold(1.0, f64::min);
    let max = shares.iter().map(|s| s.weight).fold(0.0, f64::max);
    Maglev::new(&shares, min, max, keys, config)
}

#[test]
fn the_table_is_laid_out_as_envoys() {
    // From Envoy's Maglev tests: hosts 127.0.0.1:90 to :95, table size 7.
    let t = table(&ports(90..=95), &[1.0; 6], &sized(7));
    assert_eq!(&*t.table, [2, 4, 0, 1, 5, 0, 3]);
    assert_eq!(t.lookup(10), Some(1));
}

#[test]
fn the_layout_does_not_depend_on_endpoint_order() {
    let mut keys = ports(90..=95);
    keys.reverse();
    let t = table(&keys, &[1.0; 6], &sized(7));
    let by_key: Vec<&str> = t.table.iter().map(|&i| keys[i as usize].as_str()).collect();
    assert_eq!(
        by_key,
        [
            "127.0.0.1:92",
            "127.0.0.1:94",
            "127.0.0.1:90",
            "127.0.0.1:91",
            "127.0.0.1:95",
            "127.0.0.1:90",
            "127.0.0.1:93"
        ]
    );
}

#[test]
fn weighted_tables_match_envoys() {
    let t = table(&ports(90..=91), &[1.0, 2.0], &sized(17));
    assert_eq!(
        &*t.table,
        [1, 0, 0, 1, 0, 1, 1, 0, 1, 1, 1, 1, 1, 0, 1, 0, 1]
    );
}

#[test]
fn hostnames_hash_as_envoy_hashes_them() {
    let keys: Vec<String> = (90..=95).map(|p: u16| p.to_string()).collect();
    let t = table(&keys, &[1.0; 6], &sized(7));
    assert_eq!(&*t.table, [2, 5, 0, 3, 4, 1, 0]);
}

#[test]
fn every_slot_is_filled_in_proportion_to_weight() {
    let keys = ports(1..=3);
    let t = table(&keys, &[1.0, 2.0, 1.0], &MaglevConfig::default());
    let mut counts = [0usize; 3];
    for &i in t.table.iter() {
        counts[i as usize] += 1;
    }
    assert_eq!(counts.iter().sum::<usize>(), 65537);
    // Each endpoint takes a slot per turn, so shares are exact to a slot per endpoint.
    for (count, share) in counts.iter().zip([0.25, 0.5, 0.25]) {
        assert!((*count as f64 - 65537.0 * share).abs() <= 3.0, "{counts:?}");
    }
}

#[test]
fn an_empty_table_picks_nothing() {
    assert_eq!(table(&[], &[], &sized(7)).lookup(3), None);
}

#[test]
fn the_table_size_must_be_a_prime_within_envoys_limit() {
    let err = |size| {
        MaglevConfig::new(Some(&MaglevLbConfig {
            table_size: Some(UInt64Value { value: size }),
        }))
        .unwrap_err()
    };
    assert_eq!(err(8), ("table_size", Reason::NotPrime(8)));
    assert_eq!(err(1), ("table_size", Reason::NotPrime(1)));
    assert_eq!(
        err(5_000_012),
        (
            "table_size",
            Reason::TooLarge {
                value: 5_000_012,
                max: 5_000_011
            }
        )
    );
    assert_eq!(sized(5_000_011).table_size, 5_000_011);
    assert_eq!(MaglevConfig::new(None).unwrap().table_size, 65537);
}
