//! Pilot end to end: a config directory in, Envoy resources out over ADS, pushed again
//! when the config changes, with status and debug endpoints telling the story.

use std::sync::Arc;
use std::time::Duration;

use mizzen_xds::pb::envoy::config::route::v3::RouteConfiguration;
use mizzen_xds::{AdsClient, ClientOptions, ResourceType, Subscription, SyncState};
use prost::Message;

mod common;
use common::{ALL_V1, BOOKINFO, get, productpage_node, start_pilot};

/// Waits (bounded) until the client holds resources of every type in `want`.
async fn wait<F: FnMut(&mizzen_xds::ClientState) -> bool>(
    client: &AdsClient,
    done: F,
) -> Arc<mizzen_xds::ClientState> {
    tokio::time::timeout(Duration::from_secs(20), client.wait_until(done))
        .await
        .expect("the client converges")
}

fn route_clusters(route: &RouteConfiguration) -> Vec<String> {
    use mizzen_xds::pb::envoy::config::route::v3::{route::Action, route_action::ClusterSpecifier};
    route
        .virtual_hosts
        .iter()
        .filter(|vh| vh.name.starts_with("reviews."))
        .flat_map(|vh| &vh.routes)
        .filter_map(|r| match &r.action {
            Some(Action::Route(a)) => match &a.cluster_specifier {
                Some(ClusterSpecifier::Cluster(c)) => Some(c.clone()),
                _ => None,
            },
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sidecar_gets_bookinfo_config_and_follows_a_virtual_service_change() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bookinfo.yaml"), BOOKINFO).unwrap();
    let (xds, http, status) = start_pilot(dir.path()).await;

    let client = AdsClient::start(
        ClientOptions::new(format!("http://{xds}"), productpage_node()),
        |_, _| Ok(()),
    );
    let state = wait(&client, |s| {
        s.version(ResourceType::Cluster).is_some() && s.version(ResourceType::Listener).is_some()
    })
    .await;
    let clusters = &state.types[&ResourceType::Cluster].resources;
    for name in [
        "outbound|9080||reviews.default.svc.cluster.local",
        "outbound|9080|v1|reviews.default.svc.cluster.local",
        "outbound|9080|v2|reviews.default.svc.cluster.local",
        "PassthroughCluster",
        "BlackHoleCluster",
    ] {
        assert!(
            clusters.contains_key(name),
            "missing cluster {name}; have {:?}",
            clusters.keys()
        );
    }
    let listeners = &state.types[&ResourceType::Listener].resources;
    for name in ["virtualOutbound", "virtualInbound", "0.0.0.0_9080"] {
        assert!(
            listeners.contains_key(name),
            "missing listener {name}; have {:?}",
            listeners.keys()
        );
    }

    // Envoy asks for endpoints and routes by name once it has clusters and listeners.
    client.subscribe(
        ResourceType::Endpoint,
        Subscription::names(["outbound|9080|v1|reviews.default.svc.cluster.local"]),
    );
    client.subscribe(ResourceType::Route, Subscription::names(["9080"]));
    let state = wait(&client, |s| {
        s.version(ResourceType::Endpoint).is_some() && s.version(ResourceType::Route).is_some()
    })
    .await;
    let route =
        RouteConfiguration::decode(&state.types[&ResourceType::Route].resources["9080"].value[..])
            .unwrap();
    assert_eq!(
        route_clusters(&route),
        ["outbound|9080||reviews.default.svc.cluster.local"]
    );
    let first_version = state.version(ResourceType::Route).unwrap().to_owned();

    // Route all of reviews to v1: the new routes arrive, at a new version.
    std::fs::write(dir.path().join("reviews-v1.yaml"), ALL_V1).unwrap();
    let state = wait(&client, |s| {
        s.version(ResourceType::Route)
            .is_some_and(|v| v != first_version)
    })
    .await;
    let route =
        RouteConfiguration::decode(&state.types[&ResourceType::Route].resources["9080"].value[..])
            .unwrap();
    assert_eq!(
        route_clusters(&route),
        ["outbound|9080|v1|reviews.default.svc.cluster.local"]
    );

    // Pilot knows the proxy has everything.
    let synced = tokio::time::timeout(
        Duration::from_secs(20),
        status.wait_until(|proxies| {
            proxies.len() == 1
                && proxies[0]
                    .types
                    .values()
                    .all(|t| t.state() == SyncState::Synced)
        }),
    )
    .await
    .expect("pilot sees the proxy synced");
    assert_eq!(synced[0].types.len(), 4);

    // And says so on its debug endpoints.
    let syncz = get(http, "/debug/syncz").await;
    assert!(
        syncz.contains("productpage-v1-1.default") && syncz.contains("SYNCED"),
        "{syncz}"
    );
    let dump = get(http, "/debug/config_dump?proxyID=productpage-v1-1.default").await;
    assert!(
        dump.contains("\"outbound|9080|v1|reviews.default.svc.cluster.local\""),
        "{dump}"
    );
    assert!(dump.contains("type.googleapis.com/envoy.admin.v3.ClustersConfigDump"));
    let registryz = get(http, "/debug/registryz").await;
    assert!(
        registryz.contains("reviews.default.svc.cluster.local") && registryz.contains("127.0.10.3")
    );
    let metrics = get(http, "/metrics").await;
    assert!(
        metrics.contains("pilot_xds 1") && metrics.contains("pilot_xds_pushes_total{type=\"rds\"}"),
        "{metrics}"
    );
}

/// A proxy of namespace `shop`, otherwise like productpage's.
fn shop_node() -> mizzen_xds::pb::envoy::config::core::v3::Node {
    let mut node = productpage_node();
    node.id = "sidecar~127.0.10.9~cart-1.shop~shop.svc.cluster.local".into();
    if let Some(meta) = node.metadata.as_mut() {
        meta.fields.insert(
            "NAMESPACE".into(),
            mizzen_xds::pb::google::protobuf::Value {
                kind: Some(mizzen_xds::pb::google::protobuf::value::Kind::StringValue(
                    "shop".into(),
                )),
            },
        );
    }
    node
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_namespace_local_change_is_pushed_only_to_that_namespace() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bookinfo.yaml"), BOOKINFO).unwrap();
    let (xds, _http, status) = start_pilot(dir.path()).await;
    let start = |node| {
        let mut options = ClientOptions::new(format!("http://{xds}"), node);
        options
            .subscriptions
            .insert(ResourceType::Route, Subscription::names(["9080"]));
        AdsClient::start(options, |_, _| Ok(()))
    };
    let (default_client, shop_client) = (start(productpage_node()), start(shop_node()));
    for c in [&default_client, &shop_client] {
        wait(c, |s| s.version(ResourceType::Route).is_some()).await;
    }
    let routes_sent = || status.totals().sent[&ResourceType::Route];
    let baseline = routes_sent();

    // Exported to its own namespace only: only productpage (in `default`) gets new routes.
    let local = ALL_V1.replace(
        "  hosts: [reviews]",
        "  hosts: [reviews]\n  exportTo: [\".\"]",
    );
    std::fs::write(dir.path().join("reviews-v1.yaml"), local).unwrap();
    let before = default_client
        .state()
        .version(ResourceType::Route)
        .unwrap()
        .to_owned();
    wait(&default_client, |s| {
        s.version(ResourceType::Route).is_some_and(|v| v != before)
    })
    .await;

    // A public change reaches both; once both hold it, every route response is counted:
    // one for the local change, two for the public one.
    std::fs::write(dir.path().join("reviews-v1.yaml"), ALL_V1).unwrap();
    let target = {
        let s = default_client.state();
        s.version(ResourceType::Route).unwrap().to_owned()
    };
    for c in [&default_client, &shop_client] {
        wait(c, |s| {
            s.version(ResourceType::Route).is_some_and(|v| {
                v != target && v.parse::<u64>().unwrap() > target.parse::<u64>().unwrap()
            })
        })
        .await;
    }
    assert_eq!(
        routes_sent() - baseline,
        3,
        "the namespace-local change reached only its namespace"
    );
}
