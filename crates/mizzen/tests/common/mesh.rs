//! A local mesh in a test: pilot on a config directory, a backend per WorkloadEntry,
//! and the client's sidecar in local mode (`INTERCEPTION_MODE: NONE`), all in the
//! test's process, configured from the Istio YAML under `examples/traffic/`.
//!
//! The examples put the mesh on `127.0.50.0/24`. Tests in one binary run at once, so
//! each mesh is moved to a subnet of its own (`127.0.N.0/24`) as it is read.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use mizzen_api::Object;
use mizzen_api::load::Loader;
use mizzen_pilot::server::{Pilot, PilotOptions, types_for};
use mizzen_pilot::store::{ConfigStore, DirStore};
use mizzen_proxy::{Bootstrap, Proxy, ProxyOptions};
use mizzen_xds::pb::envoy::config::core::v3::Node;
use mizzen_xds::pb::google::protobuf::{Struct, Value, value::Kind};
use mizzen_xds::{ClientState, TypeSet};

use super::WAIT;
use super::backend::Backend;
use super::client::{Client, Response};

/// The examples' subnet.
const EXAMPLE_NET: &str = "127.0.50.";
/// The client workload's host number in every subnet (its sidecar's address).
const CLIENT_HOST: u8 = 1;
/// The sidecar's HTTP-proxy listener port (Istio's local-mode 15080).
const HTTP_PROXY_PORT: u16 = 15080;
/// The port the examples' services and workloads use.
const SERVICE_PORT: u16 = 9080;

/// The next unused subnet; each test binary starts over, and binaries run one by one.
static NEXT_NET: AtomicU8 = AtomicU8::new(60);

/// A mesh-wide PeerAuthentication turning mTLS off.
const PLAINTEXT_MESH: &str = "apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: istio-system}
spec: {mtls: {mode: DISABLE}}
";

/// A running mesh; it stops with the test's runtime.
pub struct Mesh {
    net: String,
    store: Arc<DirStore>,
    proxy: Proxy,
    backends: BTreeMap<String, Backend>,
    http_proxy: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Mesh {
    /// Starts pilot on `examples/traffic/mesh.yaml` and then `files` (names under
    /// `examples/traffic/`), a backend for every WorkloadEntry, and the client's
    /// sidecar; returns once the sidecar has its whole config.
    pub async fn start(files: &[&str]) -> Mesh {
        let net = format!("127.0.{}.", NEXT_NET.fetch_add(1, Ordering::SeqCst));
        let dir = tempfile::tempdir().unwrap();
        let mut backends = BTreeMap::new();
        for file in std::iter::once("mesh.yaml").chain(files.iter().copied()) {
            let (text, objects) = read(file, &net);
            for object in &objects {
                if let Object::WorkloadEntry(entry) = object {
                    let name = entry.metadata.name.clone().unwrap_or_default();
                    let ip = entry.spec.address.parse().unwrap();
                    let backend = Backend::start(&name, SocketAddr::new(ip, SERVICE_PORT)).await;
                    backends.insert(name, backend);
                }
            }
            std::fs::write(dir.path().join(file), text).unwrap();
        }
        // The backends are plain servers without sidecars, and the client's sidecar has
        // no workload certificate: mTLS off mesh-wide (and no auto mTLS, whose TLS
        // branch would wait for the certificate), as for workloads outside the mesh.
        std::fs::write(dir.path().join("plaintext.yaml"), PLAINTEXT_MESH).unwrap();
        let store = Arc::new(DirStore::open(dir.path()).unwrap());
        let problems = store.problems().borrow().clone();
        assert!(problems.is_empty(), "the examples load: {problems:?}");
        let mut options = PilotOptions::ephemeral();
        options.mesh.enable_auto_mtls = false;
        let pilot = Pilot::bind(store.clone(), options).await.unwrap();
        let xds = pilot.xds_addr();
        tokio::spawn(pilot.run(std::future::pending()));

        let client_ip = format!("{net}{CLIENT_HOST}");
        let bootstrap = Bootstrap::for_pilot(&xds.to_string(), client_node(&client_ip), None);
        let proxy = Proxy::start(ProxyOptions::new(bootstrap)).await.unwrap();
        // Ready, or a rejection for assert_no_nacks to report.
        let settled = async {
            tokio::select! {
                () = proxy.ready() => {}
                () = proxy.wait_xds(|s| s.types.values().any(|t| t.nacks > 0)) => {}
            }
        };
        tokio::time::timeout(WAIT, settled)
            .await
            .unwrap_or_else(|_| {
                panic!(
                    "the sidecar gets its config; still warming: {:?}",
                    proxy.store().snapshot().warming()
                )
            });
        let mesh = Mesh {
            http_proxy: proxy
                .listener_addr(&format!("{client_ip}_{HTTP_PROXY_PORT}"))
                .await,
            net,
            store,
            proxy,
            backends,
            _dir: dir,
        };
        mesh.assert_no_nacks();
        mesh
    }

    /// Applies `file` (under `examples/traffic/`) as `kubectl apply -f` would, and
    /// returns once the sidecar has acknowledged every resource type the change
    /// makes pilot push.
    pub async fn apply(&self, file: &str) {
        let (_, objects) = read(file, &self.net);
        let mut changes = self.store.subscribe();
        let revision = self
            .store
            .apply(objects)
            .await
            .unwrap_or_else(|e| panic!("{file}: {e}"));
        let mut types = TypeSet::EMPTY;
        let mut reported = changes.initial.revision;
        while reported < revision {
            let batch = tokio::time::timeout(WAIT, changes.next())
                .await
                .ok()
                .flatten()
                .unwrap_or_else(|| panic!("{file}: revision {revision} is not reported"));
            for change in &batch.changes {
                types = types.union(types_for(&change.key.kind));
            }
            reported = batch.revision();
        }
        // A rejection ends the wait too, for assert_no_nacks to report.
        let acked = |state: &ClientState| {
            state.types.values().any(|t| t.nacks > 0)
                || types.iter().all(|ty| {
                    !state.types.contains_key(&ty)
                        || state
                            .version(ty)
                            .and_then(|v| v.parse::<u64>().ok())
                            .is_some_and(|v| v >= revision)
                })
        };
        let waited = tokio::time::timeout(WAIT, self.proxy.wait_xds(acked)).await;
        assert!(
            waited.is_ok(),
            "{file}: the sidecar did not acknowledge revision {revision}: {:?}",
            self.proxy.xds_state()
        );
        self.assert_no_nacks();
        // New clusters (subsets) get their endpoints after the clusters are acked.
        let warmed = tokio::time::timeout(WAIT, self.proxy.ready()).await;
        assert!(
            warmed.is_ok(),
            "{file}: still warming: {:?}",
            self.proxy.store().snapshot().warming()
        );
    }

    /// The backend of WorkloadEntry `name`.
    pub fn backend(&self, name: &str) -> &Backend {
        self.backends
            .get(name)
            .unwrap_or_else(|| panic!("no workload {name} in the mesh"))
    }

    /// Every backend, by WorkloadEntry name.
    pub fn backends(&self) -> impl Iterator<Item = &Backend> {
        self.backends.values()
    }

    /// A new application connection through the client's sidecar.
    pub fn client(&self) -> Client {
        Client::new(self.http_proxy)
    }

    /// `n` requests `GET http://AUTHORITY/` with `headers`, sent by `connections`
    /// clients at once (each waiting for its answer before the next); the responses in
    /// no particular order.
    pub async fn send(
        &self,
        authority: &str,
        headers: &[(&str, &str)],
        n: usize,
        connections: usize,
    ) -> Vec<Response> {
        let tasks: Vec<_> = (0..connections)
            .map(|i| {
                let mut client = self.client();
                let authority = authority.to_owned();
                let headers: Vec<(String, String)> = headers
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect();
                let share = n / connections + usize::from(i < n % connections);
                tokio::spawn(async move {
                    let headers: Vec<(&str, &str)> = headers
                        .iter()
                        .map(|(k, v)| (k.as_str(), v.as_str()))
                        .collect();
                    let mut out = Vec::with_capacity(share);
                    for _ in 0..share {
                        out.push(client.get(&authority, &headers).await);
                    }
                    out
                })
            })
            .collect();
        let mut responses = Vec::with_capacity(n);
        for task in tasks {
            responses.extend(task.await.unwrap());
        }
        responses
    }

    fn assert_no_nacks(&self) {
        let state = self.proxy.xds_state().unwrap();
        for (ty, t) in &state.types {
            assert_eq!(t.nacks, 0, "the sidecar rejected {ty}: {:?}", t.last_nack);
        }
    }
}

/// `examples/traffic/FILE`, moved to subnet `net`, and its objects.
fn read(file: &str, net: &str) -> (String, Vec<Object>) {
    let path: PathBuf = [env!("CARGO_MANIFEST_DIR"), "../../examples/traffic", file]
        .iter()
        .collect();
    let text = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .replace(EXAMPLE_NET, net);
    let loaded = Loader::new().load_str(&text, Some(&path));
    assert!(loaded.errors.is_empty(), "{file}: {:?}", loaded.errors);
    (text, loaded.objects.into_iter().map(|l| l.object).collect())
}

fn text(s: &str) -> Value {
    Value {
        kind: Some(Kind::StringValue(s.into())),
    }
}

/// The client workload's node, as Istio's agent presents it in local mode.
fn client_node(ip: &str) -> Node {
    let labels = Struct {
        fields: [("app", "curl")]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), text(v)))
            .collect(),
    };
    let mut fields: BTreeMap<String, Value> = [
        ("NAMESPACE", "default"),
        ("SERVICE_ACCOUNT", "curl"),
        ("INSTANCE_IPS", ip),
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
        id: format!("sidecar~{ip}~curl-1.default~default.svc.cluster.local"),
        metadata: Some(Struct {
            fields: fields.into_iter().collect(),
        }),
        ..Node::default()
    }
}
