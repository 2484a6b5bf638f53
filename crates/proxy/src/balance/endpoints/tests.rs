use mizzen_xds::pb::envoy::config::core::v3::{
    Address, HealthStatus, Pipe, SocketAddress, address, socket_address::PortSpecifier,
};
use mizzen_xds::pb::envoy::config::endpoint::v3::cluster_load_assignment::Policy;
use mizzen_xds::pb::google::protobuf::UInt32Value;

use super::*;
use crate::balance::testing::{assignment, endpoint, group, healthy, weighted, with_health};

fn compile(a: &ClusterLoadAssignment) -> Result<Assignment, BalanceError> {
    Assignment::new("c", a)
}

#[test]
fn endpoints_keep_address_weight_health_locality_and_priority() {
    let mut first = endpoint("10.0.0.1", 8080, 3, HealthStatus::Degraded);
    if let Some(HostIdentifier::Endpoint(e)) = &mut first.host_identifier {
        e.hostname = "pod-1".to_owned();
    }
    let mut unweighted = endpoint("fd00::2", 80, 1, HealthStatus::Unknown);
    unweighted.load_balancing_weight = None;
    let a = compile(&assignment(vec![
        group("z1", 0, None, vec![first]),
        group("z2", 1, None, vec![unweighted]),
    ]))
    .unwrap();
    let [e0, e1] = &*a.endpoints else {
        panic!("{:?}", a.endpoints)
    };
    assert_eq!(e0.address, "10.0.0.1:8080".parse().unwrap());
    assert_eq!(
        (e0.weight, e0.health, e0.priority),
        (3, Health::Degraded, 0)
    );
    assert_eq!(e0.hostname, "pod-1");
    assert_eq!(e0.locality.to_string(), "region/z1/");
    assert_eq!(e1.address, "[fd00::2]:80".parse().unwrap());
    assert_eq!((e1.weight, e1.health, e1.priority), (1, Health::Unknown, 1));
    assert_eq!(e0.outstanding(), 0);
}

#[test]
fn health_decides_which_lists_an_endpoint_joins() {
    let a = compile(&assignment(vec![group(
        "z",
        0,
        None,
        vec![
            with_health(1, HealthStatus::Healthy),
            with_health(2, HealthStatus::Unknown),
            with_health(3, HealthStatus::Degraded),
            with_health(4, HealthStatus::Unhealthy),
            with_health(5, HealthStatus::Timeout),
            with_health(6, HealthStatus::Draining),
        ],
    )]))
    .unwrap();
    let hosts = &a.priorities[0].hosts;
    assert_eq!(hosts.all, vec![0, 1, 2, 3, 4, 5]);
    assert_eq!(hosts.healthy, vec![0, 1]);
    assert_eq!(hosts.degraded, vec![2]);
    // Draining endpoints don't count towards the priority's health at all.
    assert_eq!(hosts.excluded, vec![5]);
    assert_eq!(hosts.counted(), 5);
}

#[test]
fn localities_are_sorted_and_merged_and_skipped_priorities_are_empty() {
    let a = compile(&assignment(vec![
        group("zb", 2, Some(5), vec![healthy(1)]),
        group("za", 2, Some(1), vec![healthy(2)]),
        group("zb", 2, Some(7), vec![healthy(3)]),
    ]))
    .unwrap();
    assert_eq!(a.priorities.len(), 3);
    assert!(a.priorities[0].hosts.all.is_empty() && a.priorities[1].hosts.all.is_empty());
    let localities: Vec<(String, u32, Vec<u32>)> = a.priorities[2]
        .localities
        .iter()
        .map(|l| (l.locality.zone.clone(), l.weight, l.hosts.all.clone()))
        .collect();
    // A locality given twice keeps all its endpoints and the last weight.
    assert_eq!(
        localities,
        vec![("za".into(), 1, vec![1]), ("zb".into(), 7, vec![0, 2])]
    );
}

#[test]
fn an_empty_assignment_has_one_empty_priority() {
    let a = compile(&assignment(vec![])).unwrap();
    assert_eq!(a.priorities.len(), 1);
    assert!(a.endpoints.is_empty());
    assert_eq!(a.overprovisioning_factor, 140);
}

#[test]
fn policy_sets_overprovisioning_and_weighted_health() {
    let mut a = assignment(vec![]);
    a.policy = Some(Policy {
        overprovisioning_factor: Some(UInt32Value { value: 100 }),
        weighted_priority_health: true,
        ..Policy::default()
    });
    let compiled = compile(&a).unwrap();
    assert_eq!(compiled.overprovisioning_factor, 100);
    assert!(compiled.weighted_priority_health);
    a.policy.as_mut().unwrap().overprovisioning_factor = Some(UInt32Value { value: 0 });
    assert_eq!(
        compile(&a).unwrap_err().to_string(),
        "cluster \"c\": load_assignment.policy.overprovisioning_factor: must be greater than 0"
    );
}

fn error_of(endpoint: LbEndpoint) -> String {
    compile(&assignment(vec![group(
        "z",
        0,
        None,
        vec![healthy(1), endpoint],
    )]))
    .unwrap_err()
    .to_string()
}

#[test]
fn hostnames_are_rejected_naming_the_endpoint() {
    assert_eq!(
        error_of(endpoint(
            "reviews.default.svc",
            9080,
            1,
            HealthStatus::Healthy
        )),
        "cluster \"c\": load_assignment.endpoints[0].lb_endpoints[1].endpoint.address\
         .socket_address.address: \"reviews.default.svc\" is not an IP address (host names \
         need a STRICT_DNS or LOGICAL_DNS cluster)"
    );
}

#[test]
fn invalid_endpoints_are_rejected_with_the_field_and_reason() {
    assert_eq!(
        error_of(weighted(2, 0)),
        "cluster \"c\": load_assignment.endpoints[0].lb_endpoints[1].load_balancing_weight: \
         must be at least 1"
    );
    assert_eq!(
        error_of(endpoint("10.0.0.1", 70000, 1, HealthStatus::Healthy)),
        "cluster \"c\": load_assignment.endpoints[0].lb_endpoints[1].endpoint.address\
         .socket_address.port_value: port 70000 is out of range"
    );
    let mut pipe = healthy(2);
    if let Some(HostIdentifier::Endpoint(e)) = &mut pipe.host_identifier {
        e.address = Some(Address {
            address: Some(address::Address::Pipe(Pipe::default())),
        });
    }
    assert_eq!(
        error_of(pipe),
        "cluster \"c\": load_assignment.endpoints[0].lb_endpoints[1].endpoint.address.pipe: \
         not supported: pipe addresses"
    );
    let mut named = healthy(2);
    if let Some(HostIdentifier::Endpoint(e)) = &mut named.host_identifier {
        e.address = Some(Address {
            address: Some(address::Address::SocketAddress(SocketAddress {
                address: "10.0.0.1".to_owned(),
                port_specifier: Some(PortSpecifier::NamedPort("http".to_owned())),
                ..SocketAddress::default()
            })),
        });
    }
    assert!(error_of(named).ends_with("named_port: named port \"http\" is not supported"));
    let mut missing = healthy(2);
    missing.host_identifier = None;
    assert!(error_of(missing).ends_with("lb_endpoints[1].endpoint: is required"));
}

#[test]
fn weights_must_fit_envoys_limits() {
    let err = compile(&assignment(vec![group("z", 0, Some(0), vec![healthy(1)])])).unwrap_err();
    assert_eq!(
        err.to_string(),
        "cluster \"c\": load_assignment.endpoints[0].load_balancing_weight: must be at least 1"
    );
    let heavy = vec![weighted(1, u32::MAX), weighted(2, 1)];
    let err = compile(&assignment(vec![group("z", 0, None, heavy)])).unwrap_err();
    assert_eq!(err.reason, Reason::WeightSumOverflow);
    assert!(err.field.contains("locality \"region/z/\""), "{err}");
    let err = compile(&assignment(vec![
        group("x", 0, Some(u32::MAX), vec![healthy(1)]),
        group("y", 0, Some(1), vec![healthy(2)]),
    ]))
    .unwrap_err();
    assert_eq!(err.reason, Reason::WeightSumOverflow);
}
