use mizzen_xds::pb::google::protobuf::UInt64Value;

use super::*;

fn config(min: u64, function: HashFunction) -> RingConfig {
    RingConfig::new(Some(&RingHashLbConfig {
        minimum_ring_size: Some(UInt64Value { value: min }),
        hash_function: function as i32,
        ..RingHashLbConfig::default()
    }))
    .unwrap()
}

/// A ring over `keys`, all equally weighted.
fn ring(keys: &[String], config: &RingConfig) -> Ring {
    let share = 1.0 / keys.len() as f64;
    let shares: Vec<Share> = (0..keys.len() as u32)
        .map(|index| Share {
            index,
            weight: share,
        })
        .collect();
    Ring::new(&shares, share, share, keys, config)
}

fn ports(range: std::ops::RangeInclusive<u16>) -> Vec<String> {
    range.map(|p| format!("127.0.0.1:{p}")).collect()
}

fn layout(ring: &Ring) -> Vec<(u64, u32)> {
    ring.entries.iter().map(|e| (e.position, e.index)).collect()
}

#[test]
fn the_ring_is_laid_out_as_envoys() {
    // From Envoy's ring hash tests: hosts 127.0.0.1:90 to :95, minimum ring size 12.
    let r = ring(&ports(90..=95), &config(12, HashFunction::XxHash));
    assert_eq!(
        layout(&r),
        vec![
            (833437586790550860, 4),
            (928266305478181108, 2),
            (1033482794131418490, 0),
            (3551244743356806947, 5),
            (3851675632748031481, 3),
            (5583722120771150861, 1),
            (6311230543546372928, 1),
            (7700377290971790572, 3),
            (13144177310400110813, 5),
            (13444792449719432967, 2),
            (15516499411664133160, 4),
            (16117243373044804889, 0),
        ]
    );
    // A hash goes to the first entry at or after it, wrapping around.
    assert_eq!(r.lookup(0), Some(4));
    assert_eq!(r.lookup(u64::MAX), Some(4));
    assert_eq!(r.lookup(3551244743356806947), Some(5));
    assert_eq!(r.lookup(3551244743356806948), Some(3));
    assert_eq!(r.lookup(16117243373044804880), Some(0));
}

#[test]
fn murmur_rings_match_envoys() {
    let r = ring(&ports(80..=85), &config(12, HashFunction::MurmurHash2));
    let positions: Vec<(u64, u32)> = layout(&r);
    assert_eq!(
        positions,
        vec![
            (1358027074129602068, 5),
            (4361834613929391114, 3),
            (7224494972555149682, 4),
            (7701421856454313576, 1),
            (8649315368077433379, 2),
            (8739448859063030639, 4),
            (9887544217113020895, 1),
            (10150910876324007731, 2),
            (15168472011420622455, 3),
            (15427156902705414897, 0),
            (16375050414328759093, 5),
            (17613279263364193813, 0),
        ]
    );
}

#[test]
fn hostnames_hash_as_envoy_hashes_them() {
    let keys: Vec<String> = (90..=95).map(|p: u16| p.to_string()).collect();
    let r = ring(&keys, &config(12, HashFunction::XxHash));
    assert_eq!(r.lookup(7225015537174310577), Some(2));
    assert_eq!(r.lookup(6803900775736438537), Some(3));
    assert_eq!(r.lookup(0), Some(5));
}

#[test]
fn murmur_hash2_is_libstdcxx_string_hash() {
    // std::hash<std::string> from libstdc++ on x86_64.
    for (key, hash) in [
        ("", 6142509188972423790),
        ("a", 4993892634952068459),
        ("abcdefg", 16063891478991045295),
        ("abcdefgh", 8664279048047335611),
        ("hello world, murmur", 5738258739684349930),
    ] {
        assert_eq!(murmur_hash2(key.as_bytes()), hash, "{key:?}");
    }
}

#[test]
fn weights_scale_each_endpoints_entries() {
    let keys = ports(1..=2);
    let shares = [
        Share {
            index: 0,
            weight: 0.25,
        },
        Share {
            index: 1,
            weight: 0.75,
        },
    ];
    let r = Ring::new(&shares, 0.25, 0.75, &keys, &RingConfig::default());
    let light = r.entries.iter().filter(|e| e.index == 0).count();
    // The minimum ring size is the whole ring's; the lighter endpoint gets its share.
    assert_eq!((light, r.entries.len() - light), (256, 768));
}

#[test]
fn the_maximum_ring_size_caps_the_ring() {
    let keys = ports(1..=3);
    let shares = [
        Share {
            index: 0,
            weight: 0.0001,
        },
        Share {
            index: 1,
            weight: 0.4999,
        },
        Share {
            index: 2,
            weight: 0.5,
        },
    ];
    let capped = RingConfig::new(Some(&RingHashLbConfig {
        maximum_ring_size: Some(UInt64Value { value: 4096 }),
        ..RingHashLbConfig::default()
    }))
    .unwrap();
    // Uncapped, the lightest endpoint's one entry would make a ring of 10,000.
    let r = Ring::new(&shares, 0.0001, 0.5, &keys, &capped);
    // Running sums may round up by an entry per endpoint.
    assert!(
        (4096..=4096 + 3).contains(&r.entries.len()),
        "{}",
        r.entries.len()
    );
    assert_eq!(r.entries.iter().filter(|e| e.index == 0).count(), 1);
}

#[test]
fn an_empty_ring_picks_nothing() {
    assert_eq!(ring(&[], &RingConfig::default()).lookup(7), None);
}

#[test]
fn sizes_are_validated_as_envoy_does() {
    let sizes = |min: Option<u64>, max: Option<u64>| {
        RingConfig::new(Some(&RingHashLbConfig {
            minimum_ring_size: min.map(|value| UInt64Value { value }),
            maximum_ring_size: max.map(|value| UInt64Value { value }),
            ..RingHashLbConfig::default()
        }))
    };
    assert_eq!(
        sizes(Some(20), Some(10)).unwrap_err(),
        (
            "minimum_ring_size",
            Reason::MinAboveMax { value: 20, max: 10 }
        )
    );
    assert_eq!(
        sizes(None, Some(MAX_RING_SIZE + 1)).unwrap_err(),
        (
            "maximum_ring_size",
            Reason::TooLarge {
                value: MAX_RING_SIZE + 1,
                max: MAX_RING_SIZE
            }
        )
    );
    assert!(sizes(Some(MAX_RING_SIZE), None).is_ok());
}
