use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Mutex;

use mizzen_xds::ResourceType;
use mizzen_xds::pb::google::protobuf::Any;
use prost::Message;
use tokio::sync::mpsc;

use super::*;
use crate::endpoint;
use crate::tls::Secrets;

fn v4(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(10, 0, 0, last))
}

fn v6(last: u16) -> IpAddr {
    IpAddr::V6(Ipv6Addr::new(0xfd00, 0, 0, 0, 0, 0, 0, last))
}

/// A DNS cluster named `name` whose load assignment is the YAML `endpoints` list.
fn cluster(name: &str, kind: &str, refresh: &str, endpoints: &str) -> PbCluster {
    mizzen_xds::json::from_yaml(&format!(
        "{{name: {name}, type: {kind}, dns_refresh_rate: {refresh}, dns_lookup_family: V4_ONLY,
          load_assignment: {{cluster_name: {name}, endpoints: {endpoints}}}}}"
    ))
    .unwrap()
}

fn socket(host: &str, port: u16) -> String {
    format!(
        "{{endpoint: {{address: {{socket_address: {{address: {host}, port_value: {port}}}}}}}}}"
    )
}

#[test]
fn lookup_families_keep_the_addresses_envoy_would() {
    let both = vec![v6(1), v4(1), v4(2)];
    let only_v4 = vec![v4(1)];
    assert_eq!(LookupFamily::Auto.select(both.clone()), vec![v6(1)]);
    assert_eq!(LookupFamily::Auto.select(only_v4.clone()), only_v4);
    assert_eq!(
        LookupFamily::V4Only.select(both.clone()),
        vec![v4(1), v4(2)]
    );
    assert!(LookupFamily::V6Only.select(only_v4.clone()).is_empty());
    assert_eq!(
        LookupFamily::V4Preferred.select(both.clone()),
        vec![v4(1), v4(2)]
    );
    assert_eq!(LookupFamily::V4Preferred.select(vec![v6(1)]), vec![v6(1)]);
    assert_eq!(LookupFamily::All.select(both.clone()), both);
}

#[test]
fn strict_dns_makes_an_endpoint_of_every_address_keeping_weight_locality_and_priority() {
    let raw = cluster(
        "c",
        "STRICT_DNS",
        "5s",
        &format!(
            "[{{locality: {{zone: a}}, lb_endpoints: [{{endpoint: {{address: {{socket_address: \
             {{address: one.test, port_value: 80}}}}}}, load_balancing_weight: 3}}]}},
              {{priority: 1, lb_endpoints: [{}]}}]",
            socket("two.test", 81)
        ),
    );
    let dns = Dns::compile(&raw, DnsKind::Strict).unwrap();
    assert_eq!(dns.names, ["one.test", "two.test"]);
    assert_eq!(dns.refresh, Duration::from_secs(5));
    let addresses = BTreeMap::from([
        ("one.test".to_owned(), vec![v4(1), v4(2)]),
        ("two.test".to_owned(), vec![v4(3)]),
    ]);
    let strict =
        crate::balance::Balancer::new(&raw, &assignment(&raw, dns.kind, &addresses)).unwrap();
    let got: Vec<_> = strict
        .endpoints()
        .iter()
        .map(|e| {
            (
                e.address,
                e.weight,
                e.locality.zone.as_str(),
                e.priority,
                e.hostname.as_str(),
            )
        })
        .collect();
    let at = |ip, port| SocketAddr::new(ip, port);
    assert_eq!(
        got,
        [
            (at(v4(1), 80), 3, "a", 0, "one.test"),
            (at(v4(2), 80), 3, "a", 0, "one.test"),
            (at(v4(3), 81), 1, "", 1, "two.test"),
        ]
    );
    // A name that resolved to nothing gives no endpoint.
    let none = BTreeMap::from([("one.test".to_owned(), vec![])]);
    let empty = assignment(&raw, dns.kind, &none);
    assert_eq!(
        empty
            .endpoints
            .iter()
            .map(|g| g.lb_endpoints.len())
            .sum::<usize>(),
        0
    );
}

#[test]
fn logical_dns_uses_the_first_address_of_its_one_host() {
    let raw = cluster(
        "c",
        "LOGICAL_DNS",
        "5s",
        &format!("[{{lb_endpoints: [{}]}}]", socket("one.test", 80)),
    );
    let dns = Dns::compile(&raw, DnsKind::Logical).unwrap();
    let addresses = BTreeMap::from([("one.test".to_owned(), vec![v4(7), v4(8)])]);
    let a = assignment(&raw, dns.kind, &addresses);
    let b = crate::balance::Balancer::new(&raw, &a).unwrap();
    let got: Vec<_> = b.endpoints().iter().map(|e| e.address).collect();
    assert_eq!(got, [SocketAddr::new(v4(7), 80)]);
}

#[test]
fn dns_clusters_are_refused_naming_the_field() {
    let two = format!(
        "[{{lb_endpoints: [{}, {}]}}]",
        socket("one.test", 80),
        socket("two.test", 80)
    );
    let e = Cluster::compile(cluster("c", "LOGICAL_DNS", "5s", &two), &Secrets::default())
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "cluster \"c\": load_assignment: a LOGICAL_DNS cluster must have exactly one endpoint"
    );
    let one = format!("[{{lb_endpoints: [{}]}}]", socket("one.test", 80));
    let e = Cluster::compile(cluster("c", "STRICT_DNS", "0s", &one), &Secrets::default())
        .unwrap_err()
        .to_string();
    assert_eq!(e, "cluster \"c\": dns_refresh_rate: 0ns is less than 1ms");
    let e = Cluster::compile(cluster("c", "STRICT_DNS", "1s", "[]"), &Secrets::default())
        .unwrap_err()
        .to_string();
    assert_eq!(
        e,
        "cluster \"c\": load_assignment: a DNS cluster needs at least one endpoint"
    );
}

/// A resolver answering from a table, reporting every name it is asked.
struct Fake {
    answers: Mutex<HashMap<String, Vec<IpAddr>>>,
    asked: mpsc::UnboundedSender<String>,
}

impl Fake {
    fn new(answers: &[(&str, Vec<IpAddr>)]) -> (Arc<Fake>, mpsc::UnboundedReceiver<String>) {
        let (asked, calls) = mpsc::unbounded_channel();
        let answers = answers
            .iter()
            .map(|(n, ips)| (n.to_string(), ips.clone()))
            .collect();
        let fake = Fake {
            answers: Mutex::new(answers),
            asked,
        };
        (Arc::new(fake), calls)
    }

    fn answer(&self, name: &str, ips: Vec<IpAddr>) {
        self.answers.lock().unwrap().insert(name.to_owned(), ips);
    }
}

impl Resolve for Fake {
    fn resolve<'a>(&'a self, name: &'a str) -> Resolution<'a> {
        let _ = self.asked.send(name.to_owned());
        let answer = self.answers.lock().unwrap().get(name).cloned();
        Box::pin(async move { answer.ok_or_else(|| io::ErrorKind::NotFound.into()) })
    }
}

/// Waits until `store`'s config changes and satisfies `done`.
async fn until(store: &ConfigStore, done: impl Fn(&ConfigStore) -> bool) {
    let mut changes = store.changes();
    while !done(store) {
        changes.changed().await.unwrap();
    }
}

fn addresses(store: &ConfigStore, cluster: &str) -> Vec<SocketAddr> {
    let snapshot = store.snapshot();
    let state = &snapshot.clusters[cluster];
    state
        .balancer
        .as_ref()
        .map(|b| b.endpoints().iter().map(|e| e.address).collect())
        .unwrap_or_default()
}

#[tokio::test(start_paused = true)]
async fn requests_pick_resolved_endpoints_and_refreshes_follow_dns() {
    let raw = cluster(
        "web",
        "STRICT_DNS",
        "1s",
        &format!("[{{lb_endpoints: [{}]}}]", socket("web.test", 80)),
    );
    let store = Arc::new(ConfigStore::new(vec![], vec![], vec![raw], false).unwrap());
    let (fake, mut asked) = Fake::new(&[("web.test", vec![v4(1), v4(2)])]);
    assert!(
        !store.is_ready(),
        "a DNS cluster warms on its first resolution"
    );
    let _run = tokio::spawn(run(store.clone(), fake.clone()));
    until(&store, ConfigStore::is_ready).await;
    assert_eq!(asked.recv().await.as_deref(), Some("web.test"));

    // Requests pick from the resolved endpoints, all of them, and never resolve.
    let snapshot = store.snapshot();
    let state = &snapshot.clusters["web"];
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..1000 {
        let chosen = endpoint::choose(state, SocketAddr::from(([0, 0, 0, 0], 0)), None).unwrap();
        assert_eq!(chosen.hostname, "web.test");
        seen.insert(chosen.address);
    }
    let expected = vec![SocketAddr::new(v4(1), 80), SocketAddr::new(v4(2), 80)];
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), expected);
    assert!(asked.try_recv().is_err(), "no lookup per request");

    // The name moves: the next refresh moves the endpoints.
    fake.answer("web.test", vec![v4(3)]);
    assert_eq!(asked.recv().await.as_deref(), Some("web.test"));
    until(&store, |s| {
        addresses(s, "web") == [SocketAddr::new(v4(3), 80)]
    })
    .await;

    // A failed resolution keeps the last addresses.
    fake.answers.lock().unwrap().clear();
    assert_eq!(asked.recv().await.as_deref(), Some("web.test"));
    assert_eq!(asked.recv().await.as_deref(), Some("web.test"));
    assert_eq!(addresses(&store, "web"), [SocketAddr::new(v4(3), 80)]);
}

#[tokio::test(start_paused = true)]
async fn a_name_that_never_resolves_warms_the_cluster_with_no_endpoint() {
    let raw = cluster(
        "web",
        "STRICT_DNS",
        "1s",
        &format!("[{{lb_endpoints: [{}]}}]", socket("nowhere.test", 80)),
    );
    let store = Arc::new(ConfigStore::new(vec![], vec![], vec![raw], false).unwrap());
    let (fake, _asked) = Fake::new(&[]);
    let _run = tokio::spawn(run(store.clone(), fake));
    until(&store, ConfigStore::is_ready).await;
    let snapshot = store.snapshot();
    let chosen = endpoint::choose(
        &snapshot.clusters["web"],
        SocketAddr::from(([0, 0, 0, 0], 0)),
        None,
    );
    assert!(matches!(
        chosen,
        Err(endpoint::Unreachable::NoHealthyEndpoint)
    ));
}

fn cds(clusters: &[PbCluster]) -> BTreeMap<String, Any> {
    clusters
        .iter()
        .map(|c| {
            let any = Any {
                type_url: String::new(),
                value: c.encode_to_vec(),
            };
            (c.name.clone(), any)
        })
        .collect()
}

#[tokio::test(start_paused = true)]
async fn removing_or_changing_a_cluster_stops_its_resolver() {
    let gone = cluster(
        "gone",
        "STRICT_DNS",
        "1s",
        &format!("[{{lb_endpoints: [{}]}}]", socket("gone.test", 80)),
    );
    let kept = cluster(
        "kept",
        "STRICT_DNS",
        "10s",
        &format!("[{{lb_endpoints: [{}]}}]", socket("kept.test", 80)),
    );
    let store = Arc::new(ConfigStore::new(vec![], vec![], vec![], true).unwrap());
    let (fake, mut asked) = Fake::new(&[("gone.test", vec![v4(1)]), ("kept.test", vec![v4(2)])]);
    let _run = tokio::spawn(run(store.clone(), fake));
    store
        .apply(ResourceType::Cluster, &cds(&[gone.clone(), kept.clone()]))
        .unwrap();
    until(&store, |s| s.snapshot().warming().is_empty()).await;
    let mut first: Vec<_> = vec![asked.recv().await.unwrap(), asked.recv().await.unwrap()];
    first.sort();
    assert_eq!(first, ["gone.test", "kept.test"]);

    // The same clusters again change nothing: no new resolution, no re-warming.
    let before = store.snapshot().clusters["kept"].clone();
    store
        .apply(ResourceType::Cluster, &cds(&[gone, kept.clone()]))
        .unwrap();
    assert!(Arc::ptr_eq(&store.snapshot().clusters["kept"], &before));

    // Without `gone`, only `kept` is resolved (every 10 s; `gone` would be every 1 s).
    store
        .apply(ResourceType::Cluster, &cds(std::slice::from_ref(&kept)))
        .unwrap();
    for _ in 0..3 {
        assert_eq!(asked.recv().await.as_deref(), Some("kept.test"));
    }

    // A changed cluster gets a new resolver; the old endpoints serve until it resolves.
    let mut changed = kept;
    changed.connect_timeout = Some(mizzen_xds::pb::google::protobuf::Duration {
        seconds: 3,
        nanos: 0,
    });
    store
        .apply(ResourceType::Cluster, &cds(&[changed]))
        .unwrap();
    assert_eq!(addresses(&store, "kept"), [SocketAddr::new(v4(2), 80)]);
    assert_eq!(asked.recv().await.as_deref(), Some("kept.test"));
    until(&store, |s| s.snapshot().clusters["kept"].warm).await;
}
