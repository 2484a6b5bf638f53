//! MeshConfig from the `istio` ConfigMap in the config directory: a change to it
//! reaches connected proxies with a push, as istiod's mesh watcher does.

use std::sync::Arc;
use std::time::Duration;

use mizzen_xds::pb::envoy::config::listener::v3::{Listener, filter};
use mizzen_xds::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
use mizzen_xds::{AdsClient, ClientOptions, ClientState, ResourceType};
use prost::Message;

mod common;
use common::{BOOKINFO, productpage_node, start_pilot};

const HCM: &str = "envoy.filters.network.http_connection_manager";

fn config_map(mesh: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: istio\n  namespace: istio-system\ndata:\n  mesh: |\n{}",
        mesh.lines()
            .map(|l| format!("    {l}\n"))
            .collect::<String>()
    )
}

/// The access log paths of the outbound 9080 listener's connection manager.
fn access_logs(state: &ClientState) -> Option<Vec<String>> {
    use mizzen_xds::pb::envoy::config::accesslog::v3::access_log::ConfigType;
    use mizzen_xds::pb::envoy::extensions::access_loggers::file::v3::FileAccessLog;
    let any = state
        .types
        .get(&ResourceType::Listener)?
        .resources
        .get("0.0.0.0_9080")?;
    let listener = Listener::decode(any.value.as_slice()).ok()?;
    let f = listener
        .filter_chains
        .iter()
        .flat_map(|c| &c.filters)
        .find(|f| f.name == HCM)?;
    let Some(filter::ConfigType::TypedConfig(any)) = &f.config_type else {
        return None;
    };
    let hcm = HttpConnectionManager::decode(any.value.as_slice()).ok()?;
    Some(
        hcm.access_log
            .iter()
            .filter_map(|l| match &l.config_type {
                Some(ConfigType::TypedConfig(any)) => FileAccessLog::decode(any.value.as_slice())
                    .ok()
                    .map(|f| f.path),
                _ => None,
            })
            .collect(),
    )
}

async fn wait(client: &AdsClient, done: impl FnMut(&ClientState) -> bool) -> Arc<ClientState> {
    tokio::time::timeout(Duration::from_secs(20), client.wait_until(done))
        .await
        .expect("the client converges")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_config_map_change_reaches_the_proxies() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bookinfo.yaml"), BOOKINFO).unwrap();
    let (xds, _http, _status) = start_pilot(dir.path()).await;
    let client = AdsClient::start(
        ClientOptions::new(format!("http://{xds}"), productpage_node()),
        |_, _| Ok(()),
    );
    let first = wait(&client, |s| access_logs(s).is_some()).await;
    assert_eq!(access_logs(&first).unwrap(), Vec::<String>::new());
    let version = first.version(ResourceType::Listener).unwrap().to_owned();

    let mesh = dir.path().join("mesh.yaml");
    std::fs::write(&mesh, config_map("accessLogFile: /tmp/mesh-access.log\n")).unwrap();
    let on = wait(&client, |s| {
        s.version(ResourceType::Listener) != Some(version.as_str())
            && access_logs(s).is_some_and(|l| !l.is_empty())
    })
    .await;
    assert_eq!(access_logs(&on).unwrap(), ["/tmp/mesh-access.log"]);

    std::fs::write(&mesh, config_map("accessLogFile: \"\"\n")).unwrap();
    let off = wait(&client, |s| access_logs(s).is_some_and(|l| l.is_empty())).await;
    assert_eq!(access_logs(&off).unwrap(), Vec::<String>::new());
}
