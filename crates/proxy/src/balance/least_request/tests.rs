use mizzen_xds::pb::envoy::config::core::v3::RuntimeDouble;
use mizzen_xds::pb::google::protobuf::UInt32Value;

use super::*;
use crate::balance::endpoints::Assignment;
use crate::balance::testing::{assert_binomial, flat, healthy, weighted};

const N: usize = 20_000;

fn endpoints(
    list: Vec<mizzen_xds::pb::envoy::config::endpoint::v3::LbEndpoint>,
) -> Box<[Endpoint]> {
    Assignment::new("c", &flat(list)).unwrap().endpoints
}

fn config(choice_count: Option<u32>, bias: Option<f64>) -> LeastRequestConfig {
    LeastRequestConfig::new(Some(&LeastRequestLbConfig {
        choice_count: choice_count.map(|value| UInt32Value { value }),
        active_request_bias: bias.map(|default_value| RuntimeDouble {
            default_value,
            runtime_key: String::new(),
        }),
        ..LeastRequestLbConfig::default()
    }))
    .unwrap()
}

fn counts(picker: &LeastRequest, endpoints: &[Endpoint]) -> Vec<usize> {
    let mut counts = vec![0; endpoints.len()];
    for _ in 0..N {
        counts[picker.pick(endpoints).unwrap() as usize] += 1;
    }
    counts
}

fn picker(endpoints: &[Endpoint], config: &LeastRequestConfig) -> LeastRequest {
    let hosts: Vec<u32> = (0..endpoints.len() as u32).collect();
    LeastRequest::new(&hosts, endpoints, config)
}

#[test]
fn idle_equal_endpoints_share_traffic_evenly() {
    let e = endpoints((1..=4).map(healthy).collect());
    let c = counts(&picker(&e, &LeastRequestConfig::default()), &e);
    for (i, &count) in c.iter().enumerate() {
        assert_binomial(count, N, 0.25, &format!("endpoint {i}"));
    }
}

#[test]
fn two_choices_avoid_the_busier_endpoint() {
    let e = endpoints((1..=3).map(healthy).collect());
    e[0].begin_request();
    let c = counts(&picker(&e, &LeastRequestConfig::default()), &e);
    // The busy endpoint wins only when both samples are it: (1/3)².
    assert_binomial(c[0], N, 1.0 / 9.0, "busy endpoint");
    // More choices make it rarer: (1/3)⁴.
    let c = counts(&picker(&e, &config(Some(4), None)), &e);
    assert_binomial(c[0], N, 1.0 / 81.0, "busy endpoint, 4 choices");
}

#[test]
fn idle_weighted_endpoints_get_traffic_in_proportion_to_weight() {
    let e = endpoints(vec![weighted(1, 1), weighted(2, 3)]);
    let c = counts(&picker(&e, &LeastRequestConfig::default()), &e);
    assert_binomial(c[0], N, 0.25, "weight 1 of 4");
}

#[test]
fn busy_weighted_endpoints_lose_picks_in_proportion_to_load_per_weight() {
    let e = endpoints(vec![weighted(1, 1), weighted(2, 3)]);
    for _ in 0..3 {
        e[1].begin_request();
    }
    // The heavy endpoint carries load where the light one carries none: the light one
    // wins whenever it is sampled at all, 1 - (3/4)².
    let c = counts(&picker(&e, &LeastRequestConfig::default()), &e);
    assert_binomial(c[0], N, 1.0 - 0.75 * 0.75, "idle light endpoint");
    // Equal load per unit of weight: back to proportions.
    e[0].begin_request();
    let c = counts(&picker(&e, &LeastRequestConfig::default()), &e);
    assert_binomial(c[0], N, 0.25, "equally loaded light endpoint");
    // A bias of 0 ignores load altogether.
    e[0].end_request();
    let c = counts(&picker(&e, &config(None, Some(0.0))), &e);
    assert_binomial(c[0], N, 0.25, "bias 0");
    // A bias between 0 and 1 still prefers the idle endpoint.
    let c = counts(&picker(&e, &config(None, Some(0.5))), &e);
    assert_binomial(c[0], N, 1.0 - 0.75 * 0.75, "bias 0.5");
}

#[test]
fn an_empty_group_picks_nothing() {
    let e = endpoints(vec![healthy(1)]);
    assert_eq!(
        LeastRequest::new(&[], &e, &LeastRequestConfig::default()).pick(&e),
        None
    );
}

#[test]
fn settings_are_validated_as_envoy_does() {
    let with = |choice_count: Option<u32>, bias: Option<f64>| {
        LeastRequestConfig::new(Some(&LeastRequestLbConfig {
            choice_count: choice_count.map(|value| UInt32Value { value }),
            active_request_bias: bias.map(|default_value| RuntimeDouble {
                default_value,
                runtime_key: String::new(),
            }),
            ..LeastRequestLbConfig::default()
        }))
    };
    assert_eq!(
        with(Some(1), None).unwrap_err(),
        ("choice_count", Reason::ChoiceCount(1))
    );
    assert!(matches!(
        with(None, Some(-1.0)).unwrap_err(),
        ("active_request_bias.default_value", Reason::Bias(b)) if b == -1.0
    ));
    assert!(with(None, Some(f64::NAN)).is_err());
    let defaults = LeastRequestConfig::new(None).unwrap();
    assert_eq!((defaults.choice_count, defaults.bias), (2, Bias::One));
    assert_eq!(config(Some(5), Some(2.5)).bias, Bias::Other(2.5));
}

#[test]
fn the_alias_table_samples_in_proportion_to_weight() {
    let alias = Alias::new(&[1, 2, 3, 4]);
    let mut c = [0; 4];
    for _ in 0..N {
        c[alias.sample()] += 1;
    }
    for (i, &count) in c.iter().enumerate() {
        assert_binomial(count, N, (i + 1) as f64 / 10.0, &format!("slot {i}"));
    }
}
