//! Pilot end to end: a config directory in, Envoy resources out over ADS, pushed again
//! when the config changes, with status and debug endpoints telling the story.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use mizzen_pilot::model::MeshConfig;
use mizzen_pilot::server::{Pilot, PilotOptions};
use mizzen_pilot::store::DirStore;
use mizzen_xds::pb::envoy::config::core::v3::Node;
use mizzen_xds::pb::envoy::config::route::v3::RouteConfiguration;
use mizzen_xds::pb::google::protobuf::{Struct, Value, value::Kind};
use mizzen_xds::{AdsClient, ClientOptions, ResourceType, Subscription, SyncState};
use prost::Message;

const BOOKINFO: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: reviews, labels: {app: reviews}}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: v1
kind: Service
metadata: {name: productpage, labels: {app: productpage}}
spec:
  selector: {app: productpage}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: productpage-v1}
spec: {address: 127.0.10.1, labels: {app: productpage, version: v1}, serviceAccount: bookinfo-productpage}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v1}
spec: {address: 127.0.10.2, labels: {app: reviews, version: v1}, serviceAccount: bookinfo-reviews}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v2}
spec: {address: 127.0.10.3, labels: {app: reviews, version: v2}, serviceAccount: bookinfo-reviews}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews}
spec:
  host: reviews
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
"#;

const ALL_V1: &str = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews}
spec:
  hosts: [reviews]
  http:
  - route:
    - destination: {host: reviews, subset: v1}
"#;

fn text(s: &str) -> Value {
    Value {
        kind: Some(Kind::StringValue(s.into())),
    }
}

/// productpage's sidecar, identified as Istio's agent identifies it.
fn productpage_node() -> Node {
    let labels = Struct {
        fields: [("app", "productpage"), ("version", "v1")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), text(v)))
            .collect(),
    };
    let mut fields: BTreeMap<String, Value> = [
        ("NAMESPACE", "default"),
        ("SERVICE_ACCOUNT", "bookinfo-productpage"),
        ("INSTANCE_IPS", "127.0.10.1"),
        ("CLUSTER_ID", "Kubernetes"),
        ("INTERCEPTION_MODE", "REDIRECT"),
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
        id: "sidecar~127.0.10.1~productpage-v1-1.default~default.svc.cluster.local".into(),
        metadata: Some(Struct {
            fields: fields.into_iter().collect(),
        }),
        ..Default::default()
    }
}

async fn start_pilot(
    dir: &std::path::Path,
) -> (
    std::net::SocketAddr,
    std::net::SocketAddr,
    mizzen_xds::StatusRegistry,
) {
    let store = DirStore::open(dir).unwrap();
    let options = PilotOptions {
        xds_addr: "127.0.0.1:0".parse().unwrap(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        debounce: Duration::from_millis(10),
        mesh: MeshConfig::default(),
    };
    let pilot = Pilot::bind(Arc::new(store), options).await.unwrap();
    let (xds, http, status) = (pilot.xds_addr(), pilot.http_addr(), pilot.status());
    tokio::spawn(pilot.run(std::future::pending()));
    (xds, http, status)
}

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

/// GET over a plain socket: the debug endpoints are meant for any HTTP client.
async fn get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_string(&mut out))
        .await
        .expect("the debug endpoint answers")
        .unwrap();
    assert!(
        out.starts_with("HTTP/1.0 200") || out.starts_with("HTTP/1.1 200"),
        "{path}: {out}"
    );
    out
}
