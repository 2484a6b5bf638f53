//! EDS: the endpoints of each requested cluster, grouped by locality, with Istio's
//! metadata and, when a DestinationRule's locality settings apply, weights and failover
//! priorities relative to the requesting proxy's locality.

use std::collections::{BTreeMap, HashMap};

use mizzen_api::networking::{LocalityDistribute, LocalityFailover, LocalityLoadBalancerSetting};
use mizzen_api::types::Labels;
use mizzen_xds::pb::envoy::config::core::v3::{
    Address, HealthStatus as EnvoyHealth, Locality, Pipe, SocketAddress, address,
    socket_address::PortSpecifier,
};
use mizzen_xds::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint as EnvoyEndpoint, LbEndpoint, LocalityLbEndpoints,
    lb_endpoint::HostIdentifier,
};

use super::cluster::proto::{filter_metadata, string, u32v};
use super::cluster::rules::{DestinationRules, Policy};
use super::cluster::tls::{TLS_MODE_KEY, TLS_MODE_LABEL};
use super::names::{ClusterName, Direction};
use crate::model::security::{MutualTls, workload_peer_authentication};
use crate::model::{Endpoint, HealthStatus, Proxy, PushContext, Service};

/// The cluster load assignment of each of `cluster_names`, in the order asked. A name
/// that is not an outbound cluster of a service the proxy can see gets an assignment with
/// no endpoints, which is how Istio answers for clusters that went away.
pub fn endpoints(
    push: &PushContext,
    proxy: &Proxy,
    cluster_names: &[String],
) -> Vec<ClusterLoadAssignment> {
    let rules = DestinationRules::new(push);
    let locality = proxy_locality(push, proxy);
    let visible: HashMap<&str, &Service> = push
        .visible_services(proxy)
        .map(|s| (s.hostname.as_str(), &**s))
        .collect();
    let scope = Scope {
        push,
        proxy,
        rules: &rules,
        locality: &locality,
        visible: &visible,
    };
    cluster_names
        .iter()
        .map(|name| {
            assignment(&scope, name).unwrap_or_else(|| ClusterLoadAssignment {
                cluster_name: name.clone(),
                ..ClusterLoadAssignment::default()
            })
        })
        .collect()
}

/// What every assignment for one proxy reads.
struct Scope<'a> {
    push: &'a PushContext,
    proxy: &'a Proxy,
    rules: &'a DestinationRules<'a>,
    locality: &'a Locality,
    /// The services the proxy sees, by hostname.
    visible: &'a HashMap<&'a str, &'a Service>,
}

/// The assignment of one outbound cluster, if it names a visible service port.
fn assignment(scope: &Scope<'_>, name: &str) -> Option<ClusterLoadAssignment> {
    let Scope {
        push,
        proxy,
        rules,
        locality,
        ..
    } = *scope;
    let parsed = ClusterName::parse(name)?;
    if parsed.direction != Direction::Outbound {
        return None;
    }
    let service = *scope
        .visible
        .get(parsed.host)
        .filter(|s| s.port(parsed.port).is_some())?;
    let rule = rules.for_service(proxy, service);
    let labels = match parsed.subset {
        "" => None,
        subset => Some(&rule?.subset(subset)?.labels),
    };
    let policy = Policy::for_cluster(rule, parsed.subset, parsed.port);
    let setting = locality_setting(&policy);
    Some(load_assignment(&LoadAssignmentInput {
        push,
        proxy,
        locality,
        cluster_name: name,
        service,
        port: parsed.port,
        subset_labels: labels,
        locality_setting: setting,
        failover: policy.outlier_detection.is_some(),
    }))
}

/// The locality settings in force for a cluster: the rule's unless it disables them, else
/// the mesh default (enabled, no explicit distribution or failover).
pub(crate) fn locality_setting<'a>(policy: &Policy<'a>) -> Option<&'a LocalityLoadBalancerSetting> {
    static MESH_DEFAULT: LocalityLoadBalancerSetting = LocalityLoadBalancerSetting {
        distribute: Vec::new(),
        failover: Vec::new(),
        failover_priority: Vec::new(),
        enabled: Some(true),
    };
    match policy
        .load_balancer
        .and_then(|lb| lb.locality_lb_setting.as_ref())
    {
        Some(s) if s.enabled == Some(false) => None,
        Some(s) => Some(s),
        None => Some(&MESH_DEFAULT),
    }
}

/// What an assignment is built from.
pub(crate) struct LoadAssignmentInput<'a> {
    /// The push.
    pub push: &'a PushContext,
    /// The proxy asking.
    pub proxy: &'a Proxy,
    /// The proxy's locality.
    pub locality: &'a Locality,
    /// The cluster's name.
    pub cluster_name: &'a str,
    /// The service.
    pub service: &'a Service,
    /// The service port.
    pub port: u16,
    /// The subset's labels, when the cluster is a subset's.
    pub subset_labels: Option<&'a Labels>,
    /// Locality load balancing in force.
    pub locality_setting: Option<&'a LocalityLoadBalancerSetting>,
    /// True when failover can happen (the policy has outlier detection).
    pub failover: bool,
}

/// A locality's endpoints, with the registry endpoints they came from (failover by
/// label needs their labels).
struct Group<'a> {
    lb: LocalityLbEndpoints,
    sources: Vec<&'a Endpoint>,
}

/// The endpoints of `service`'s `port` (those of the subset only, when given), grouped by
/// locality in locality order, with locality settings applied.
pub(crate) fn load_assignment(input: &LoadAssignmentInput<'_>) -> ClusterLoadAssignment {
    let mut by_locality: BTreeMap<&str, Group<'_>> = BTreeMap::new();
    for ep in input.push.registry.endpoints(input.service, input.port) {
        if let Some(labels) = input.subset_labels
            && !labels.iter().all(|(k, v)| ep.labels.get(k) == Some(v))
        {
            continue;
        }
        let group = by_locality.entry(&ep.locality).or_insert_with(|| Group {
            lb: LocalityLbEndpoints {
                locality: Some(parse_locality(&ep.locality)),
                ..LocalityLbEndpoints::default()
            },
            sources: Vec::new(),
        });
        group
            .lb
            .lb_endpoints
            .push(lb_endpoint(ep, &input.proxy.cluster_id, input.push));
        group.sources.push(ep);
    }
    let mut groups: Vec<Group<'_>> = by_locality.into_values().collect();
    for g in &mut groups {
        let weight = g.sources.iter().map(|e| e.weight.max(1)).sum();
        g.lb.load_balancing_weight = Some(u32v(weight));
    }
    if let Some(setting) = input.locality_setting {
        apply_locality_setting(
            &mut groups,
            input.locality,
            &input.proxy.labels,
            setting,
            input.failover,
        );
    }
    ClusterLoadAssignment {
        cluster_name: input.cluster_name.to_owned(),
        endpoints: groups.into_iter().map(|g| g.lb).collect(),
        ..ClusterLoadAssignment::default()
    }
}

/// True when the PeerAuthentication in force for the endpoint's workload disables mTLS
/// on its port.
fn mtls_disabled(ep: &Endpoint, push: &PushContext) -> bool {
    let peer = workload_peer_authentication(
        &push.config,
        &push.mesh.root_namespace,
        &ep.workload_namespace,
        &ep.labels,
    );
    peer.mode_for(ep.port) == MutualTls::Disable
}

/// One endpoint: its address, health, weight and Istio's metadata (`istio.workload` for
/// telemetry, `envoy.transport_socket_match.tlsMode` for auto mTLS).
fn lb_endpoint(ep: &Endpoint, cluster_id: &str, push: &PushContext) -> LbEndpoint {
    let mut metadata = None;
    // Istio's `GetTLSModeFromEndpointLabels`: only `istio` marks a workload with a
    // proxy; any other value is plain text. A workload whose PeerAuthentication
    // disables mTLS on the port is not marked either, so its clients talk plain text to
    // it (Istio's `ENABLE_AUTO_MTLS_CHECK_POLICIES`).
    let marked = ep.labels.get(TLS_MODE_LABEL).filter(|m| *m == "istio");
    if let Some(mode) = marked.filter(|_| !mtls_disabled(ep, push)) {
        filter_metadata(&mut metadata, "envoy.transport_socket_match")
            .fields
            .insert(TLS_MODE_KEY.into(), string(mode.clone()));
    }
    if !ep.workload.is_empty() {
        filter_metadata(&mut metadata, "istio")
            .fields
            .insert("workload".into(), string(workload_metadata(ep, cluster_id)));
    }
    LbEndpoint {
        host_identifier: Some(HostIdentifier::Endpoint(EnvoyEndpoint {
            address: Some(endpoint_address(&ep.address, ep.port)),
            ..EnvoyEndpoint::default()
        })),
        health_status: match ep.health {
            HealthStatus::Healthy => EnvoyHealth::Healthy as i32,
            HealthStatus::Unhealthy => EnvoyHealth::Unhealthy as i32,
        },
        load_balancing_weight: Some(u32v(ep.weight.max(1))),
        metadata,
    }
}

/// Istio's compact workload metadata: `name;namespace;canonical name;canonical
/// revision;cluster`, the revision left empty when it would be `latest`.
fn workload_metadata(ep: &Endpoint, cluster_id: &str) -> String {
    let label = |keys: &[&str]| keys.iter().find_map(|k| ep.labels.get(*k).cloned());
    let name = label(&[
        "service.istio.io/canonical-name",
        "app.kubernetes.io/name",
        "app",
    ])
    .unwrap_or_else(|| ep.workload.clone());
    let revision = label(&[
        "service.istio.io/canonical-revision",
        "app.kubernetes.io/version",
        "version",
    ])
    .filter(|r| r != "latest")
    .unwrap_or_default();
    format!(
        "{};{};{name};{revision};{cluster_id}",
        ep.workload, ep.workload_namespace
    )
}

/// A socket address, or a pipe for `unix://` paths.
pub(crate) fn endpoint_address(address: &str, port: u16) -> Address {
    let inner = match address.strip_prefix("unix://") {
        Some(path) => address::Address::Pipe(Pipe {
            path: path.to_owned(),
            ..Pipe::default()
        }),
        None => address::Address::SocketAddress(SocketAddress {
            address: address.to_owned(),
            port_specifier: Some(PortSpecifier::PortValue(u32::from(port))),
            ..SocketAddress::default()
        }),
    };
    Address {
        address: Some(inner),
    }
}

/// `region/zone/subzone` (any part may be missing) as an Envoy locality.
pub(crate) fn parse_locality(s: &str) -> Locality {
    let mut parts = s.splitn(3, '/');
    let mut next = || parts.next().unwrap_or_default().to_owned();
    Locality {
        region: next(),
        zone: next(),
        sub_zone: next(),
    }
}

/// Topology labels Istio puts on endpoints and proxies, used by `failoverPriority`.
const REGION_LABEL: &str = "topology.kubernetes.io/region";
const ZONE_LABEL: &str = "topology.kubernetes.io/zone";
const SUBZONE_LABEL: &str = "topology.istio.io/subzone";
const NETWORK_LABEL: &str = "topology.istio.io/network";

/// Where the proxy runs: the locality of its own workload's endpoint in the registry
/// (matched by address), else its topology labels, else nowhere in particular.
pub(crate) fn proxy_locality(push: &PushContext, proxy: &Proxy) -> Locality {
    if let Some(locality) = push.registry.locality_of(&proxy.ips) {
        return parse_locality(locality);
    }
    let label = |k: &str| proxy.labels.get(k).cloned().unwrap_or_default();
    Locality {
        region: label(REGION_LABEL),
        zone: label(ZONE_LABEL),
        sub_zone: label(SUBZONE_LABEL),
    }
}

/// Istio's `ApplyLocalityLoadBalancer`: explicit distribution, else (when failover can
/// happen) priorities by failover labels and/or locality.
fn apply_locality_setting(
    groups: &mut Vec<Group<'_>>,
    locality: &Locality,
    proxy_labels: &Labels,
    setting: &LocalityLoadBalancerSetting,
    failover: bool,
) {
    if !setting.distribute.is_empty() {
        apply_distribute(groups, locality, &setting.distribute);
    } else if failover {
        if !setting.failover_priority.is_empty() {
            apply_failover_priority(groups, locality, proxy_labels, &setting.failover_priority);
            if !setting.failover.is_empty() {
                apply_locality_failover(groups, locality, &setting.failover);
            }
        } else {
            apply_locality_failover(groups, locality, &setting.failover);
        }
    }
}

/// True when `locality` matches a rule locality (`region/zone/subzone`, `*` matching any
/// part, missing parts matching anything), as Istio's `LocalityMatch`.
fn locality_matches(locality: &Locality, rule: &str) -> bool {
    let mut parts = rule.splitn(3, '/');
    let (region, zone, subzone) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let part = |rule: &str, actual: &str, optional: bool| {
        rule == "*" || (optional && rule.is_empty()) || rule == actual
    };
    part(region, &locality.region, false)
        && part(zone, &locality.zone, true)
        && part(subzone, &locality.sub_zone, true)
}

/// `distribute`: the first rule whose `from` matches the proxy weights the destination
/// localities (a wildcard destination's weight split by the groups' own weights, rounded
/// up); localities it does not name get no traffic (their endpoints are dropped).
fn apply_distribute(
    groups: &mut [Group<'_>],
    locality: &Locality,
    distribute: &[LocalityDistribute],
) {
    let Some(rule) = distribute
        .iter()
        .find(|d| locality_matches(locality, &d.from))
    else {
        return;
    };
    let mut unmatched: Vec<bool> = vec![true; groups.len()];
    for (to, weight) in &rule.to {
        let mut matched: Vec<(usize, u32)> = Vec::new();
        for (i, g) in groups.iter().enumerate() {
            let g_locality = g.lb.locality.clone().unwrap_or_default();
            if unmatched[i] && locality_matches(&g_locality, to) {
                unmatched[i] = false;
                matched.push((i, g.lb.load_balancing_weight.map_or(1, |w| w.value)));
            }
        }
        let total: u32 = matched.iter().map(|(_, w)| w).sum();
        for (i, original) in matched {
            let share = f64::from(original) * f64::from(*weight) / f64::from(total.max(1));
            if share > 0.0 {
                // Weights are at most 100 × the group weight, so the cast cannot truncate.
                groups[i].lb.load_balancing_weight = Some(u32v(share.ceil() as u32));
            }
        }
    }
    for (g, unmatched) in groups.iter_mut().zip(unmatched) {
        if unmatched {
            g.lb.lb_endpoints.clear();
        }
    }
}

/// Istio's `LbPriority`: 0 same subzone, 1 same zone, 2 same region, 3 elsewhere.
fn lb_priority(proxy: &Locality, ep: &Locality) -> u32 {
    if proxy.region != ep.region {
        3
    } else if proxy.zone != ep.zone {
        2
    } else if proxy.sub_zone != ep.sub_zone {
        1
    } else {
        0
    }
}

/// Locality failover: priority by closeness to the proxy, a region other than the
/// configured failover target of the proxy's region pushed one further, composed with
/// priorities already assigned, then renumbered densely from 0.
fn apply_locality_failover(
    groups: &mut [Group<'_>],
    locality: &Locality,
    failover: &[LocalityFailover],
) {
    for g in groups.iter_mut() {
        let ep_locality = g.lb.locality.clone().unwrap_or_default();
        let mut priority = lb_priority(locality, &ep_locality);
        if priority == 3
            && let Some(f) = failover.iter().find(|f| f.from == locality.region)
            && ep_locality.region != f.to
        {
            priority = 4;
        }
        g.lb.priority = g.lb.priority * 5 + priority;
    }
    compact_priorities(groups);
}

/// `failoverPriority`: each locality's endpoints split by how many of the listed labels
/// (`key` or `key=value`) they share with the proxy, in order; sharing all is priority 0.
fn apply_failover_priority(
    groups: &mut Vec<Group<'_>>,
    locality: &Locality,
    proxy_labels: &Labels,
    priorities: &[String],
) {
    if proxy_labels.is_empty() || groups.is_empty() {
        return;
    }
    let proxy_value = |key: &str| -> String {
        proxy_labels
            .get(key)
            .cloned()
            .unwrap_or_else(|| topology_value(key, locality, ""))
    };
    let wanted: Vec<(&str, String)> = priorities
        .iter()
        .map(|p| match p.split_once('=') {
            Some((k, v)) => (k, v.to_owned()),
            None => (p.as_str(), proxy_value(p)),
        })
        .collect();
    let lowest = u32::try_from(wanted.len()).unwrap_or(u32::MAX);
    let mut out: Vec<Group<'_>> = Vec::new();
    for group in groups.drain(..) {
        let ep_locality = group.lb.locality.clone().unwrap_or_default();
        let mut by_priority: BTreeMap<u32, Group<'_>> = BTreeMap::new();
        for (lb, source) in group.lb.lb_endpoints.iter().zip(&group.sources) {
            let priority = wanted
                .iter()
                .enumerate()
                .find(|(_, (k, v))| {
                    let actual = source
                        .labels
                        .get(*k)
                        .cloned()
                        .unwrap_or_else(|| topology_value(k, &ep_locality, &source.network));
                    &actual != v
                })
                .map_or(0, |(j, _)| lowest - u32::try_from(j).unwrap_or(0));
            let split = by_priority.entry(priority).or_insert_with(|| Group {
                lb: LocalityLbEndpoints {
                    lb_endpoints: Vec::new(),
                    priority,
                    ..group.lb.clone()
                },
                sources: Vec::new(),
            });
            split.lb.lb_endpoints.push(lb.clone());
            split.sources.push(source);
        }
        for mut split in by_priority.into_values() {
            let weight = split
                .lb
                .lb_endpoints
                .iter()
                .map(|e| e.load_balancing_weight.map_or(0, |w| w.value))
                .sum();
            split.lb.load_balancing_weight = Some(u32v(weight));
            out.push(split);
        }
    }
    *groups = out;
    compact_priorities(groups);
}

/// The value Istio's topology labels take for an endpoint or proxy without the label.
fn topology_value(key: &str, locality: &Locality, network: &str) -> String {
    match key {
        REGION_LABEL => locality.region.clone(),
        ZONE_LABEL => locality.zone.clone(),
        SUBZONE_LABEL => locality.sub_zone.clone(),
        NETWORK_LABEL => network.to_owned(),
        _ => String::new(),
    }
}

/// Renumbers priorities 0..N without gaps, keeping their order (Envoy requires it).
fn compact_priorities(groups: &mut [Group<'_>]) {
    let mut used: Vec<u32> = groups.iter().map(|g| g.lb.priority).collect();
    used.sort_unstable();
    used.dedup();
    for g in groups.iter_mut() {
        let rank = used.binary_search(&g.lb.priority).unwrap_or_default();
        g.lb.priority = u32::try_from(rank).unwrap_or(u32::MAX);
    }
}

#[cfg(test)]
mod tests {
    use mizzen_xds::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
    use mizzen_xds::pb::google::protobuf::value::Kind;

    use super::endpoints;
    use crate::model::{HealthStatus, Hostname, Registry};
    use crate::translate::cluster::tests::{
        REVIEWS, bookinfo, endpoint, productpage, push, reviews_rule, service,
    };

    const SUBSETS: &str = "subsets:\n- name: v1\n  labels: {version: v1}\n- name: v2\n  labels: {version: v2}\n- name: v3\n  labels: {version: v3}";

    /// Reviews spread over three localities; productpage (the proxy) in `us-east/a/1`.
    fn spread() -> Registry {
        let mut r = Registry::default();
        r.insert_service(service(
            REVIEWS,
            9080,
            Some(mizzen_api::types::Protocol::Http),
        ));
        let host = Hostname::new(REVIEWS);
        for (i, (v, locality)) in [
            ("v1", "us-east/a/1"),
            ("v2", "us-east/b/1"),
            ("v3", "eu-west/a/1"),
        ]
        .iter()
        .enumerate()
        {
            let mut ep = endpoint(
                &format!("10.0.0.{}", i + 1),
                9080,
                &format!("reviews-{v}"),
                &[("app", "reviews"), ("version", v)],
            );
            ep.locality = (*locality).into();
            r.insert_endpoint(&host, "default", 9080, ep);
        }
        let pp = "productpage.default.svc.cluster.local";
        r.insert_service(service(pp, 9080, Some(mizzen_api::types::Protocol::Http)));
        let mut me = endpoint(
            "10.0.0.9",
            9080,
            "productpage-v1",
            &[("app", "productpage")],
        );
        me.locality = "us-east/a/1".into();
        r.insert_endpoint(&Hostname::new(pp), "default", 9080, me);
        r
    }

    fn eds(yaml: &str, registry: Registry, names: &[&str]) -> Vec<ClusterLoadAssignment> {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        endpoints(&push(yaml, registry), &productpage(), &names)
    }

    fn addresses(cla: &ClusterLoadAssignment) -> Vec<String> {
        cla.endpoints
            .iter()
            .flat_map(|l| &l.lb_endpoints)
            .map(|e| {
                let debug = format!("{:?}", e.host_identifier);
                let start = debug.find("address: \"").unwrap() + 10;
                debug[start..start + debug[start..].find('"').unwrap()].to_owned()
            })
            .collect()
    }

    /// `(region/zone/subzone, priority, weight)` of each locality group.
    fn groups(cla: &ClusterLoadAssignment) -> Vec<(String, u32, u32)> {
        cla.endpoints
            .iter()
            .map(|l| {
                let loc = l.locality.clone().unwrap_or_default();
                (
                    format!("{}/{}/{}", loc.region, loc.zone, loc.sub_zone),
                    l.priority,
                    l.load_balancing_weight.map_or(0, |w| w.value),
                )
            })
            .collect()
    }

    #[test]
    fn subsets_select_their_endpoints() {
        let out = eds(
            &reviews_rule(SUBSETS),
            bookinfo(),
            &[
                "outbound|9080||reviews.default.svc.cluster.local",
                "outbound|9080|v1|reviews.default.svc.cluster.local",
                "outbound|9080|v3|reviews.default.svc.cluster.local",
                "outbound|9080|v9|reviews.default.svc.cluster.local",
                "outbound|9080||unknown.default.svc.cluster.local",
                "inbound|9080||",
            ],
        );
        assert_eq!(out.len(), 6);
        assert_eq!(
            out[0].cluster_name,
            "outbound|9080||reviews.default.svc.cluster.local"
        );
        assert_eq!(addresses(&out[0]), ["10.0.0.1", "10.0.0.2", "10.0.0.3"]);
        assert_eq!(addresses(&out[1]), ["10.0.0.1"]);
        assert_eq!(addresses(&out[2]), ["10.0.0.3"]);
        for unknown in &out[3..] {
            assert!(unknown.endpoints.is_empty(), "{unknown:?}");
        }
    }

    #[test]
    fn endpoints_carry_weight_health_and_istio_metadata() {
        let mut r = bookinfo();
        let mut ep = endpoint(
            "10.0.0.7",
            9080,
            "reviews-v4",
            &[("app", "reviews"), ("version", "v4")],
        );
        ep.weight = 5;
        ep.health = HealthStatus::Unhealthy;
        ep.labels.remove("security.istio.io/tlsMode");
        r.insert_endpoint(&Hostname::new(REVIEWS), "default", 9080, ep);
        let out = eds("", r, &["outbound|9080||reviews.default.svc.cluster.local"]);
        let group = &out[0].endpoints[0];
        assert_eq!(group.load_balancing_weight.unwrap().value, 8);
        let by_addr = |a: &str| {
            group
                .lb_endpoints
                .iter()
                .find(|e| format!("{:?}", e.host_identifier).contains(a))
                .unwrap()
                .clone()
        };
        let v1 = by_addr("10.0.0.1");
        assert_eq!(
            (v1.health_status, v1.load_balancing_weight.unwrap().value),
            (1, 1)
        );
        let meta = v1.metadata.unwrap();
        let workload = meta.filter_metadata["istio"].fields["workload"]
            .kind
            .clone();
        assert_eq!(
            workload,
            Some(Kind::StringValue("reviews-v1;default;reviews;v1;".into()))
        );
        let tls = meta.filter_metadata["envoy.transport_socket_match"].fields["tlsMode"]
            .kind
            .clone();
        assert_eq!(tls, Some(Kind::StringValue("istio".into())));
        let v4 = by_addr("10.0.0.7");
        assert_eq!(
            (v4.health_status, v4.load_balancing_weight.unwrap().value),
            (2, 5)
        );
        assert!(
            !v4.metadata
                .unwrap()
                .filter_metadata
                .contains_key("envoy.transport_socket_match")
        );
    }

    #[test]
    fn workloads_whose_peer_authentication_disables_mtls_are_not_marked_for_auto_mtls() {
        let name = ["outbound|9080||reviews.default.svc.cluster.local"];
        // The addresses of the reviews endpoints auto mTLS reaches (v1..v3: .1..3).
        let marked = |yaml: &str| -> Vec<String> {
            let out = eds(yaml, bookinfo(), &name);
            let mut marked: Vec<String> = out[0]
                .endpoints
                .iter()
                .flat_map(|l| &l.lb_endpoints)
                .filter(|e| {
                    e.metadata.as_ref().is_some_and(|m| {
                        m.filter_metadata
                            .contains_key("envoy.transport_socket_match")
                    })
                })
                .map(|e| format!("{:?}", e.host_identifier))
                .map(|d| d[d.find("10.0.0.").unwrap()..][..8].to_owned())
                .collect();
            marked.sort();
            marked
        };
        let policy = |name: &str, spec: &str| {
            format!(
                "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {{name: {name}, namespace: default}}\nspec: {spec}\n---\n"
            )
        };
        assert_eq!(marked(""), ["10.0.0.1", "10.0.0.2", "10.0.0.3"]);
        // A workload's own policy.
        let v2_off = policy(
            "v2",
            "{selector: {matchLabels: {version: v2}}, mtls: {mode: DISABLE}}",
        );
        assert_eq!(marked(&v2_off), ["10.0.0.1", "10.0.0.3"]);
        // The namespace's, with one workload back on STRICT.
        let mostly_off = policy("default", "{mtls: {mode: DISABLE}}")
            + &policy(
                "v1",
                "{selector: {matchLabels: {version: v1}}, mtls: {mode: STRICT}}",
            );
        assert_eq!(marked(&mostly_off), ["10.0.0.1"]);
        // By port: the endpoints' port (9080) is off, another one would not matter.
        let port_off = policy(
            "reviews",
            "{selector: {matchLabels: {app: reviews}}, mtls: {mode: STRICT}, portLevelMtls: {9080: {mode: DISABLE}}}",
        );
        assert!(marked(&port_off).is_empty());
        let other_port = policy(
            "reviews",
            "{selector: {matchLabels: {app: reviews}}, portLevelMtls: {9090: {mode: DISABLE}}}",
        );
        assert_eq!(marked(&other_port).len(), 3);
    }

    #[test]
    fn localities_group_endpoints_and_fail_over_from_the_proxys_locality() {
        let name = ["outbound|9080||reviews.default.svc.cluster.local"];
        // Without outlier detection nothing can fail over: one priority.
        let out = eds("", spread(), &name);
        assert_eq!(
            groups(&out[0]),
            [
                ("eu-west/a/1".into(), 0, 1),
                ("us-east/a/1".into(), 0, 1),
                ("us-east/b/1".into(), 0, 1)
            ]
        );
        // With it, the mesh default: same zone first, then same region, then elsewhere.
        let od = reviews_rule("trafficPolicy:\n  outlierDetection:\n    consecutive5xxErrors: 1");
        let out = eds(&od, spread(), &name);
        assert_eq!(
            groups(&out[0]),
            [
                ("eu-west/a/1".into(), 2, 1),
                ("us-east/a/1".into(), 0, 1),
                ("us-east/b/1".into(), 1, 1)
            ]
        );
        // An explicit failover region: regions other than its target drop below it.
        let mut r = spread();
        let mut ap = endpoint("10.0.0.4", 9080, "reviews-v4", &[("version", "v4")]);
        ap.locality = "ap-south/a/1".into();
        r.insert_endpoint(&Hostname::new(REVIEWS), "default", 9080, ap);
        let failover = reviews_rule(
            "trafficPolicy:\n  outlierDetection:\n    consecutive5xxErrors: 1\n  loadBalancer:\n    localityLbSetting:\n      failover:\n      - from: us-east\n        to: eu-west",
        );
        let out = eds(&failover, r, &name);
        assert_eq!(
            groups(&out[0]),
            [
                ("ap-south/a/1".into(), 3, 1),
                ("eu-west/a/1".into(), 2, 1),
                ("us-east/a/1".into(), 0, 1),
                ("us-east/b/1".into(), 1, 1),
            ]
        );
    }

    #[test]
    fn distribute_weights_localities_and_drops_the_rest() {
        let rule = reviews_rule(
            "trafficPolicy:\n  loadBalancer:\n    localityLbSetting:\n      distribute:\n      - from: us-east/a/*\n        to:\n          us-east/*: 80\n          eu-west/a/1: 20",
        );
        let out = eds(
            &rule,
            spread(),
            &["outbound|9080||reviews.default.svc.cluster.local"],
        );
        assert_eq!(
            groups(&out[0]),
            [
                ("eu-west/a/1".into(), 0, 20),
                ("us-east/a/1".into(), 0, 40),
                ("us-east/b/1".into(), 0, 40)
            ]
        );
        let rule = reviews_rule(
            "trafficPolicy:\n  loadBalancer:\n    localityLbSetting:\n      distribute:\n      - from: us-east/a/1\n        to:\n          us-east/b/1: 100",
        );
        let out = eds(
            &rule,
            spread(),
            &["outbound|9080||reviews.default.svc.cluster.local"],
        );
        let sizes: Vec<usize> = out[0]
            .endpoints
            .iter()
            .map(|l| l.lb_endpoints.len())
            .collect();
        assert_eq!(sizes, [0, 0, 1]);
    }

    #[test]
    fn failover_priority_splits_by_matching_labels() {
        let rule = reviews_rule(
            "trafficPolicy:\n  outlierDetection:\n    consecutive5xxErrors: 1\n  loadBalancer:\n    localityLbSetting:\n      failoverPriority:\n      - topology.kubernetes.io/region\n      - version=v2",
        );
        let out = eds(
            &rule,
            spread(),
            &["outbound|9080||reviews.default.svc.cluster.local"],
        );
        // Same region and v2 first, same region next, the other region last.
        assert_eq!(
            groups(&out[0]),
            [
                ("eu-west/a/1".into(), 2, 1),
                ("us-east/a/1".into(), 1, 1),
                ("us-east/b/1".into(), 0, 1)
            ]
        );
    }
}
