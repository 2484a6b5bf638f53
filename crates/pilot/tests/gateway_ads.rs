//! An ingress gateway over ADS: Istio's Bookinfo gateway turns into a listener on the
//! gateway's own address in local mode, its `http.8080` routes and the clusters behind.

use std::collections::BTreeMap;
use std::time::Duration;

use mizzen_xds::pb::envoy::config::core::v3::Node;
use mizzen_xds::pb::envoy::config::route::v3::{RouteConfiguration, route, route_action};
use mizzen_xds::pb::google::protobuf::{Struct, Value, value::Kind};
use mizzen_xds::{AdsClient, ClientOptions, ResourceType, Subscription};
use prost::Message;

mod common;
use common::{BOOKINFO, start_pilot};

fn text(s: &str) -> Value {
    Value {
        kind: Some(Kind::StringValue(s.into())),
    }
}

/// The ingress gateway as `mizzen up` runs it: a router in istio-system, in local mode.
fn ingress_node() -> Node {
    let labels = Struct {
        fields: [("istio".to_owned(), text("ingressgateway"))].into(),
    };
    let mut fields: BTreeMap<String, Value> = [
        ("NAMESPACE", "istio-system"),
        ("INSTANCE_IPS", "127.0.0.1"),
        ("INTERCEPTION_MODE", "NONE"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), text(v)))
    .collect();
    fields.insert(
        "LABELS".into(),
        Value {
            kind: Some(Kind::StructValue(labels)),
        },
    );
    Node {
        id: "router~127.0.0.1~istio-ingressgateway-1.istio-system~istio-system.svc.cluster.local"
            .into(),
        metadata: Some(Struct {
            fields: fields.into_iter().collect(),
        }),
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_ingress_gateway_serves_bookinfo_through_istios_gateway() {
    let Some(data) = mizzen_api::testdata::istio_data() else {
        return;
    };
    let gateway =
        std::fs::read_to_string(data.join("samples/bookinfo/networking/bookinfo-gateway.yaml"))
            .expect("bookinfo-gateway.yaml");
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bookinfo.yaml"), BOOKINFO).unwrap();
    std::fs::write(dir.path().join("gateway.yaml"), gateway).unwrap();
    let (xds, _http, _status) = start_pilot(dir.path()).await;

    let client = AdsClient::start(
        ClientOptions::new(format!("http://{xds}"), ingress_node()),
        |_, _| Ok(()),
    );
    client.subscribe(ResourceType::Route, Subscription::names(["http.8080"]));
    let state = tokio::time::timeout(
        Duration::from_secs(20),
        client.wait_until(|s| {
            [
                ResourceType::Cluster,
                ResourceType::Listener,
                ResourceType::Route,
            ]
            .iter()
            .all(|&ty| s.version(ty).is_some())
        }),
    )
    .await
    .expect("the gateway gets its config");

    let listeners = &state.types[&ResourceType::Listener].resources;
    assert_eq!(
        listeners.keys().collect::<Vec<_>>(),
        ["127.0.0.1_8080"],
        "only the gateway's own listener, on its own address"
    );
    let clusters = &state.types[&ResourceType::Cluster].resources;
    assert!(clusters.contains_key("outbound|9080||productpage.default.svc.cluster.local"));
    assert!(!clusters.contains_key("PassthroughCluster"));

    let route = RouteConfiguration::decode(
        &state.types[&ResourceType::Route].resources["http.8080"].value[..],
    )
    .unwrap();
    let [vhost] = &route.virtual_hosts[..] else {
        panic!("one virtual host expected: {route:?}");
    };
    assert_eq!(
        (vhost.name.as_str(), &vhost.domains[..]),
        ("*:8080", &["*".to_owned()][..])
    );
    let clusters: Vec<&str> = vhost
        .routes
        .iter()
        .filter_map(|r| match &r.action {
            Some(route::Action::Route(a)) => match &a.cluster_specifier {
                Some(route_action::ClusterSpecifier::Cluster(c)) => Some(c.as_str()),
                _ => None,
            },
            _ => None,
        })
        .collect();
    assert_eq!(
        clusters,
        ["outbound|9080||productpage.default.svc.cluster.local"; 5]
    );
}
