//! The ADS server and client together over real gRPC on 127.0.0.1: subscriptions,
//! ACKs and NACKs, targeted pushes, stalled proxies, restarts, and Delta.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use mizzen_xds::pb::envoy::config::cluster::v3::Cluster;
use mizzen_xds::pb::envoy::config::core::v3::Node;
use mizzen_xds::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use mizzen_xds::pb::envoy::config::listener::v3::Listener;
use mizzen_xds::pb::envoy::config::route::v3::RouteConfiguration;
use mizzen_xds::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use mizzen_xds::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use mizzen_xds::pb::google::protobuf::Any;
use mizzen_xds::pb::google::rpc;
use mizzen_xds::{
    AdsClient, AdsServer, Affected, Backoff, ClientOptions, ClientState, Generated, NamedResource,
    Protocol, ProxyStatus, PushRequest, ResourceSource, ResourceType, Subscription, TypeSet,
};
use prost::Message;
use tokio::net::TcpListener;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::Streaming;

use ResourceType::{Cluster as CDS, Endpoint as EDS, Listener as LDS, Route as RDS};

// ---------------------------------------------------------------------------------
// State of the World
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn client_subscribes_to_all_four_types_and_acks_them() {
    let mesh = Mesh::new(["reviews", "ratings"], ["0.0.0.0_9080"]);
    let server = Running::start(mesh).await;
    let client = AdsClient::start(server.options("a~ns1"), accept_all);

    let state =
        within(client.wait_until(|s| s.version(CDS).is_some() && s.version(LDS).is_some())).await;
    client.subscribe(EDS, Subscription::names(names_of(&state, CDS)));
    client.subscribe(RDS, Subscription::names(names_of(&state, LDS)));
    let state =
        within(client.wait_until(|s| s.version(EDS).is_some() && s.version(RDS).is_some())).await;

    assert_eq!(names_of(&state, CDS), ["ratings", "reviews"]);
    assert_eq!(names_of(&state, EDS), ["ratings", "reviews"]);
    assert_eq!(names_of(&state, LDS), ["0.0.0.0_9080"]);
    assert_eq!(names_of(&state, RDS), ["0.0.0.0_9080"]);
    let proxy = within(server.synced("a~ns1", TypeSet::of([CDS, EDS, LDS, RDS]))).await;
    assert_eq!(proxy.protocol, Protocol::StateOfTheWorld);
    assert_eq!(proxy.node.cluster, "ns1");
    for (ty, status) in &proxy.types {
        assert_eq!(status.version_acked.as_deref(), Some("1"), "{ty}");
        assert!(status.last_nack.is_none(), "{ty}");
    }
    assert_eq!(
        proxy.types[&EDS].subscription,
        Subscription::names(["ratings", "reviews"])
    );
}

#[tokio::test]
async fn a_rejected_push_is_recorded_and_the_last_good_version_stays() {
    let mesh = Mesh::new(["reviews"], ["0.0.0.0_9080"]);
    let server = Running::start(mesh.clone()).await;
    let client = AdsClient::start(server.options("a~ns1"), refuse_bad_clusters);
    within(server.synced("a~ns1", TypeSet::of([CDS, LDS]))).await;

    mesh.set_clusters(["reviews", "bad"]);
    assert_eq!(server.ads.pusher().push(&PushRequest::all(CDS.into())), 1);

    let proxy = within(server.proxy_where("a~ns1", |p| p.types[&CDS].last_nack.is_some())).await;
    let cds = &proxy.types[&CDS];
    let nack = cds.last_nack.as_ref().unwrap();
    assert_eq!(nack.version, "2");
    assert_eq!(nack.message, "cluster \"bad\" is not allowed");
    assert_eq!(cds.version_sent.as_deref(), Some("2"));
    assert_eq!(cds.version_acked.as_deref(), Some("1"));
    assert!(!cds.is_synced());

    let state = within(client.wait_until(|s| s.types[&CDS].nacks == 1)).await;
    assert_eq!(state.version(CDS), Some("1"));
    assert_eq!(names_of(&state, CDS), ["reviews"]);

    // A fixed config is accepted again.
    mesh.set_clusters(["reviews", "details"]);
    server.ads.pusher().push(&PushRequest::all(CDS.into()));
    let proxy = within(server.proxy_where("a~ns1", |p| {
        p.types[&CDS].version_acked.as_deref() == Some("3")
    }))
    .await;
    assert_eq!(proxy.types[&CDS].last_nack.as_ref().unwrap().version, "2");
}

#[tokio::test]
async fn pushes_reach_only_the_proxies_they_affect() {
    let mesh = Mesh::new(["reviews"], ["0.0.0.0_9080"]);
    let server = Running::start(mesh.clone()).await;
    let a = AdsClient::start(server.options("a~ns1"), accept_all);
    let b = AdsClient::start(server.options("b~ns2"), accept_all);
    within(server.synced("a~ns1", TypeSet::of([CDS, LDS]))).await;
    within(server.synced("b~ns2", TypeSet::of([CDS, LDS]))).await;
    let b_before = server.ads.status().proxy("b~ns2").unwrap();
    let b_generated = mesh.generated("b~ns2");

    mesh.set_clusters(["reviews", "ratings"]);
    let only_a = PushRequest {
        affected: Affected::Nodes(["a~ns1".to_string()].into()),
        types: CDS.into(),
    };
    assert_eq!(server.ads.pusher().push(&only_a), 1);
    let state = within(a.wait_until(|s| s.version(CDS) == Some("2"))).await;
    assert_eq!(names_of(&state, CDS), ["ratings", "reviews"]);
    within(server.synced("a~ns1", CDS.into())).await;

    assert_eq!(mesh.generated("b~ns2"), b_generated);
    assert_eq!(
        server.ads.status().proxy("b~ns2").unwrap().types,
        b_before.types
    );
    assert_eq!(b.state().version(CDS), Some("1"));

    // A predicate over what the source made of each node: namespace ns2 only.
    let ns2 = PushRequest {
        affected: Affected::Matching(Arc::new(|p: &TestProxy| p.namespace == "ns2")),
        types: LDS.into(),
    };
    assert_eq!(server.ads.pusher().push(&ns2), 1);
    within(b.wait_until(|s| s.version(LDS) == Some("2"))).await;
    assert_eq!(a.state().version(LDS), Some("1"));
}

#[tokio::test]
async fn a_proxy_that_never_reads_does_not_hold_up_pushes_to_others() {
    let mesh = Mesh::new(["reviews"], ["0.0.0.0_9080"]);
    // Every response to the stalled proxy is 2 MB: a few fill every buffer between.
    mesh.pad("stalled~ns1", 2 << 20);
    let server = Running::start(mesh.clone()).await;
    let mut stalled = RawSotw::open(server.addr).await;
    stalled.send(request(Some("stalled~ns1"), CDS, &[], "", ""));
    let healthy = AdsClient::start(server.options("healthy~ns1"), accept_all);
    within(server.synced("healthy~ns1", CDS.into())).await;

    for version in 2..=20 {
        mesh.set_clusters(["reviews".to_string(), format!("c{version}")]);
        assert_eq!(server.ads.pusher().push(&PushRequest::all(CDS.into())), 2);
        let want = version.to_string();
        within(healthy.wait_until(|s| s.version(CDS) == Some(want.as_str()))).await;
    }

    let stalled_status = server.ads.status().proxy("stalled~ns1").unwrap();
    let sent = stalled_status.types[&CDS]
        .version_sent
        .as_deref()
        .unwrap_or("0");
    assert!(
        sent.parse::<u32>().unwrap() < 20,
        "the stalled proxy was sent everything: {sent}"
    );
    // It is still there, and its first response is intact when it finally reads.
    let first = stalled.recv().await;
    assert_eq!(first.type_url, CDS.type_url());
}

#[tokio::test]
async fn the_client_keeps_its_config_and_reconnects_after_a_server_restart() {
    let mesh = Mesh::new(["reviews"], ["0.0.0.0_9080"]);
    let first = Running::start(mesh.clone()).await;
    let addr = first.addr;
    let client = AdsClient::start(first.options("a~ns1"), accept_all);
    within(client.wait_until(|s| s.version(CDS) == Some("1"))).await;

    within(first.stop()).await;
    let down = within(client.wait_until(|s| !s.connected)).await;
    assert_eq!(down.version(CDS), Some("1"));
    assert_eq!(names_of(&down, CDS), ["reviews"]);

    mesh.set_clusters(["reviews", "ratings"]);
    let _second = Running::start_on(mesh, TcpListener::bind(addr).await.unwrap()).await;
    let state = within(client.wait_until(|s| s.connected && s.version(CDS) == Some("2"))).await;
    assert_eq!(state.streams, 2);
    assert_eq!(names_of(&state, CDS), ["ratings", "reviews"]);
}

#[tokio::test]
async fn the_server_follows_the_sotw_protocol_on_a_raw_stream() {
    let mesh = Mesh::new(["reviews", "ratings"], ["0.0.0.0_9080"]);
    let server = Running::start(mesh.clone()).await;
    let mut raw = RawSotw::open(server.addr).await;

    raw.send(request(Some("raw~ns1"), CDS, &[], "", ""));
    let cds = raw.recv().await;
    assert_eq!((cds.version_info.as_str(), cds.resources.len()), ("1", 2));
    raw.send(request(None, CDS, &[], "1", &cds.nonce));

    // EDS gets only the names asked for, though the source makes all of them.
    raw.send(request(None, EDS, &["reviews"], "", ""));
    let eds = raw.recv().await;
    assert_eq!(cla_names(&eds), ["reviews"]);
    // Asking for more names with the current nonce is an ACK and a new request.
    raw.send(request(None, EDS, &["reviews", "ratings"], "1", &eds.nonce));
    let eds2 = raw.recv().await;
    assert_eq!(cla_names(&eds2), ["ratings", "reviews"]);
    let proxy =
        within(server.proxy_where("raw~ns1", |p| p.types[&EDS].nonce_acked.is_some())).await;
    assert_eq!(
        proxy.types[&EDS].nonce_acked.as_deref(),
        Some(eds.nonce.as_str())
    );

    // A request with an overtaken nonce is ignored, names and all; the ACK of the
    // current response then gets the pending change answered.
    raw.send(request(None, EDS, &["ratings"], "1", &eds.nonce));
    raw.send(request(None, EDS, &["ratings"], "1", &eds2.nonce));
    let eds3 = raw.recv().await;
    assert_eq!(cla_names(&eds3), ["ratings"]);
    raw.send(request(None, EDS, &["ratings"], "1", &eds3.nonce));

    raw.send(request(None, LDS, &[], "", ""));
    let lds = raw.recv().await;
    raw.send(request(None, LDS, &[], "1", &lds.nonce));
    raw.send(request(None, RDS, &["0.0.0.0_9080"], "", ""));
    let rds = raw.recv().await;
    raw.send(request(None, RDS, &["0.0.0.0_9080"], "1", &rds.nonce));
    within(server.synced("raw~ns1", TypeSet::of([CDS, EDS, LDS, RDS]))).await;

    // A push of everything goes out clusters, endpoints, listeners, routes.
    mesh.set_clusters(["ratings"]);
    server.ads.pusher().push(&PushRequest::all(TypeSet::ALL));
    let mut order = Vec::new();
    for _ in 0..4 {
        let r = raw.recv().await;
        assert_eq!(r.version_info, "2");
        order.push(ResourceType::from_type_url(&r.type_url).unwrap());
    }
    assert_eq!(order, [CDS, EDS, LDS, RDS]);

    // A CDS push alone brings EDS along: changed clusters re-warm.
    server.ads.pusher().push(&PushRequest::all(CDS.into()));
    let (c, e) = (raw.recv().await, raw.recv().await);
    assert_eq!(
        (c.type_url.as_str(), e.type_url.as_str()),
        (CDS.type_url(), EDS.type_url())
    );
}

#[tokio::test]
async fn nodes_are_required_and_may_be_refused() {
    let server = Running::start(Mesh::new(["reviews"], ["0.0.0.0_9080"])).await;

    let mut nameless = RawSotw::open(server.addr).await;
    nameless.send(request(None, CDS, &[], "", ""));
    let status = nameless.error().await;
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("no node"), "{status}");

    let mut refused = RawSotw::open(server.addr).await;
    refused.send(request(Some("refused~ns1"), CDS, &[], "", ""));
    let status = refused.error().await;
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(status.message().contains("not welcome"), "{status}");
    assert!(server.ads.status().snapshot().is_empty());
}

// ---------------------------------------------------------------------------------
// Delta
// ---------------------------------------------------------------------------------

#[tokio::test]
async fn delta_sends_changes_removals_and_nothing_unchanged() {
    let mesh = Mesh::new(["reviews", "ratings", "details"], ["0.0.0.0_9080"]);
    let server = Running::start(mesh.clone()).await;
    let mut raw = RawDelta::open(server.addr).await;

    // Legacy wildcard: the first CDS request names nothing.
    raw.send(delta_request(Some("d~ns1"), CDS, &[], &[], ""));
    let first = raw.recv().await;
    assert_eq!(delta_names(&first), ["details", "ratings", "reviews"]);
    assert_eq!(first.system_version_info, "1");
    raw.send(delta_request(None, CDS, &[], &[], &first.nonce));

    // One cluster changed, one removed, one untouched: only the first two go out.
    mesh.set_clusters(["reviews", "ratings"]);
    mesh.pad("d~ns1", 10);
    mesh.keep_unpadded("reviews");
    server.ads.pusher().push(&PushRequest::all(CDS.into()));
    let change = raw.recv().await;
    assert_eq!(delta_names(&change), ["ratings"]);
    assert_eq!(change.removed_resources, ["details"]);
    assert_eq!(change.system_version_info, "2");
    raw.send(delta_request(None, CDS, &[], &[], &change.nonce));
    let proxy = within(server.synced("d~ns1", CDS.into())).await;
    assert_eq!(proxy.protocol, Protocol::Delta);
    assert_eq!(proxy.types[&CDS].version_acked.as_deref(), Some("2"));

    // Subscribing names: what exists comes, what does not is reported removed.
    raw.send(delta_request(None, EDS, &["reviews", "nowhere"], &[], ""));
    let eds = raw.recv().await;
    assert_eq!(delta_names(&eds), ["reviews"]);
    assert_eq!(eds.removed_resources, ["nowhere"]);
    raw.send(delta_request(None, EDS, &[], &[], &eds.nonce));
    raw.send(delta_request(None, EDS, &["ratings"], &["reviews"], ""));
    let eds2 = raw.recv().await;
    assert_eq!(delta_names(&eds2), ["ratings"]);
    assert!(eds2.removed_resources.is_empty());
    raw.send(delta_request(None, EDS, &[], &[], &eds2.nonce));
    let proxy = within(server.synced("d~ns1", EDS.into())).await;
    assert_eq!(
        proxy.types[&EDS].subscription,
        Subscription::names(["nowhere", "ratings"])
    );

    // A NACK is recorded against the version it rejected.
    mesh.set_clusters(["reviews", "ratings", "bad"]);
    server.ads.pusher().push(&PushRequest::all(CDS.into()));
    let bad = raw.recv().await;
    assert_eq!(delta_names(&bad), ["bad"]);
    let mut nack = delta_request(None, CDS, &[], &[], &bad.nonce);
    nack.error_detail = Some(rpc::Status {
        code: 3,
        message: "no bad clusters".into(),
        details: vec![],
    });
    raw.send(nack);
    let proxy = within(server.proxy_where("d~ns1", |p| p.types[&CDS].last_nack.is_some())).await;
    let cds = &proxy.types[&CDS];
    assert_eq!(cds.last_nack.as_ref().unwrap().message, "no bad clusters");
    assert_eq!(
        (cds.version_sent.as_deref(), cds.version_acked.as_deref()),
        (Some("3"), Some("2"))
    );
}

#[tokio::test]
async fn a_reconnecting_delta_client_is_sent_only_what_it_lacks() {
    let mesh = Mesh::new(["reviews", "ratings"], ["0.0.0.0_9080"]);
    let server = Running::start(mesh.clone()).await;
    let mut raw = RawDelta::open(server.addr).await;
    raw.send(delta_request(Some("d~ns1"), CDS, &["*"], &[], ""));
    let first = raw.recv().await;
    let held: HashMap<String, String> = first
        .resources
        .iter()
        .map(|r| (r.name.clone(), r.version.clone()))
        .collect();
    drop(raw);

    let mut again = RawDelta::open(server.addr).await;
    let mut resume = delta_request(Some("d~ns1"), CDS, &["*"], &[], "");
    resume.initial_resource_versions = held;
    resume
        .initial_resource_versions
        .insert("gone".into(), "0".into());
    again.send(resume);
    let answer = again.recv().await;
    assert!(
        answer.resources.is_empty(),
        "resent {:?}",
        delta_names(&answer)
    );
    assert_eq!(answer.removed_resources, ["gone"]);
}

#[tokio::test]
async fn the_delta_client_follows_subscriptions_and_removals() {
    let mesh = Mesh::new(["reviews", "ratings", "details"], ["0.0.0.0_9080"]);
    let server = Running::start(mesh.clone()).await;
    let mut options = server.options("d~ns1");
    options.protocol = Protocol::Delta;
    options
        .subscriptions
        .insert(EDS, Subscription::names(["reviews"]));
    let client = AdsClient::start(options, accept_all);

    let state =
        within(client.wait_until(|s| s.version(EDS).is_some() && s.version(LDS).is_some())).await;
    assert_eq!(names_of(&state, CDS), ["details", "ratings", "reviews"]);
    assert_eq!(names_of(&state, EDS), ["reviews"]);

    client.subscribe(EDS, Subscription::names(["ratings"]));
    let state = within(client.wait_until(|s| names_of(s, EDS) == ["ratings"])).await;
    assert_eq!(state.version(EDS), Some("1"));

    mesh.set_clusters(["reviews"]);
    server.ads.pusher().push(&PushRequest::all(CDS.into()));
    let state = within(client.wait_until(|s| s.version(CDS) == Some("2"))).await;
    assert_eq!(names_of(&state, CDS), ["reviews"]);
    // Its subscribed endpoints went with the cluster.
    let state = within(client.wait_until(|s| names_of(s, EDS).is_empty())).await;
    assert_eq!(state.version(EDS), Some("2"));
    within(server.synced("d~ns1", TypeSet::of([CDS, EDS, LDS]))).await;
}

#[tokio::test]
async fn the_delta_client_nacks_and_keeps_its_last_good_config() {
    let mesh = Mesh::new(["reviews"], ["0.0.0.0_9080"]);
    let server = Running::start(mesh.clone()).await;
    let mut options = server.options("d~ns1");
    options.protocol = Protocol::Delta;
    let client = AdsClient::start(options, refuse_bad_clusters);
    within(server.synced("d~ns1", TypeSet::of([CDS, LDS]))).await;

    mesh.set_clusters(["reviews", "bad"]);
    server.ads.pusher().push(&PushRequest::all(CDS.into()));
    let proxy = within(server.proxy_where("d~ns1", |p| p.types[&CDS].last_nack.is_some())).await;
    assert_eq!(proxy.types[&CDS].version_acked.as_deref(), Some("1"));
    let state = within(client.wait_until(|s| s.types[&CDS].nacks == 1)).await;
    assert_eq!(names_of(&state, CDS), ["reviews"]);
    assert_eq!(
        state.types[&CDS].last_nack.as_deref(),
        Some("cluster \"bad\" is not allowed")
    );
}

// ---------------------------------------------------------------------------------
// The test mesh: a source with clusters and listeners, and helpers.
// ---------------------------------------------------------------------------------

const WAIT: Duration = Duration::from_secs(20);

async fn within<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(WAIT, f).await.expect("timed out")
}

/// A source: every proxy sees the same clusters (and their endpoints) and listeners
/// (and their routes); each change bumps the version.
#[derive(Clone, Default)]
struct Mesh(Arc<Mutex<MeshState>>);

#[derive(Default)]
struct MeshState {
    version: u64,
    clusters: BTreeSet<String>,
    listeners: BTreeSet<String>,
    /// Bytes of padding in every cluster sent to a node.
    padding: HashMap<String, usize>,
    /// Clusters never padded.
    unpadded: BTreeSet<String>,
    /// How many times each node's resources were generated.
    generated: HashMap<String, usize>,
}

/// What the mesh makes of a node.
struct TestProxy {
    id: String,
    namespace: String,
}

impl Mesh {
    fn new<const C: usize, const L: usize>(clusters: [&str; C], listeners: [&str; L]) -> Mesh {
        let mesh = Mesh::default();
        {
            let mut s = mesh.lock();
            s.version = 1;
            s.clusters = clusters.iter().map(|c| c.to_string()).collect();
            s.listeners = listeners.iter().map(|l| l.to_string()).collect();
        }
        mesh
    }

    fn set_clusters<I: IntoIterator<Item = S>, S: Into<String>>(&self, clusters: I) {
        let mut s = self.lock();
        s.version += 1;
        s.clusters = clusters.into_iter().map(Into::into).collect();
    }

    fn pad(&self, node: &str, bytes: usize) {
        self.lock().padding.insert(node.to_string(), bytes);
    }

    fn keep_unpadded(&self, cluster: &str) {
        self.lock().unpadded.insert(cluster.to_string());
    }

    fn generated(&self, node: &str) -> usize {
        self.lock().generated.get(node).copied().unwrap_or(0)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, MeshState> {
        self.0.lock().unwrap()
    }
}

impl ResourceSource for Mesh {
    type Proxy = TestProxy;

    fn connect(&self, node: &Node) -> Result<TestProxy, Box<dyn std::error::Error + Send + Sync>> {
        if node.id.starts_with("refused") {
            return Err(format!("{} is not welcome", node.id).into());
        }
        Ok(TestProxy {
            id: node.id.clone(),
            namespace: node.cluster.clone(),
        })
    }

    fn generate(&self, proxy: &TestProxy, ty: ResourceType, _: &Subscription) -> Generated {
        let mut s = self.lock();
        *s.generated.entry(proxy.id.clone()).or_default() += 1;
        let padding = s.padding.get(&proxy.id).copied().unwrap_or(0);
        let resources = match ty {
            CDS => s
                .clusters
                .iter()
                .map(|c| {
                    let pad = if s.unpadded.contains(c) { 0 } else { padding };
                    named(
                        c,
                        ty,
                        Cluster {
                            name: c.clone(),
                            alt_stat_name: "x".repeat(pad),
                            ..Default::default()
                        },
                    )
                })
                .collect(),
            EDS => s
                .clusters
                .iter()
                .map(|c| {
                    named(
                        c,
                        ty,
                        ClusterLoadAssignment {
                            cluster_name: c.clone(),
                            ..Default::default()
                        },
                    )
                })
                .collect(),
            LDS => s
                .listeners
                .iter()
                .map(|l| {
                    named(
                        l,
                        ty,
                        Listener {
                            name: l.clone(),
                            ..Default::default()
                        },
                    )
                })
                .collect(),
            RDS => s
                .listeners
                .iter()
                .map(|l| {
                    named(
                        l,
                        ty,
                        RouteConfiguration {
                            name: l.clone(),
                            ..Default::default()
                        },
                    )
                })
                .collect(),
            ResourceType::Secret => Vec::new(),
        };
        Generated {
            version: s.version.to_string(),
            resources,
        }
    }
}

fn named(name: &str, ty: ResourceType, message: impl Message) -> NamedResource {
    let any = Any {
        type_url: ty.type_url().to_string(),
        value: message.encode_to_vec(),
    };
    NamedResource::from_any(name, &any)
}

fn accept_all(_: ResourceType, _: &BTreeMap<String, Any>) -> Result<(), String> {
    Ok(())
}

fn refuse_bad_clusters(ty: ResourceType, resources: &BTreeMap<String, Any>) -> Result<(), String> {
    match resources.keys().find(|name| *name == "bad") {
        Some(name) if ty == CDS => Err(format!("cluster {name:?} is not allowed")),
        _ => Ok(()),
    }
}

fn names_of(state: &ClientState, ty: ResourceType) -> Vec<String> {
    state
        .types
        .get(&ty)
        .map(|t| t.resources.keys().cloned().collect())
        .unwrap_or_default()
}

/// A server on 127.0.0.1 that stops when told or dropped.
struct Running {
    ads: AdsServer<Mesh>,
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<Result<(), tonic::transport::Error>>,
}

impl Running {
    async fn start(mesh: Mesh) -> Running {
        Running::start_on(mesh, TcpListener::bind("127.0.0.1:0").await.unwrap()).await
    }

    async fn start_on(mesh: Mesh, listener: TcpListener) -> Running {
        let addr = listener.local_addr().unwrap();
        let ads = AdsServer::new(mesh.clone());
        let (stop, stopped) = oneshot::channel::<()>();
        let serving = ads.clone();
        let task = tokio::spawn(async move {
            serving
                .serve(listener, async {
                    let _ = stopped.await;
                })
                .await
        });
        Running {
            ads,
            addr,
            stop: Some(stop),
            task,
        }
    }

    /// Stops gracefully: streams end, then the listener closes.
    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        (&mut self.task).await.unwrap().unwrap();
    }

    fn options(&self, node_id: &str) -> ClientOptions {
        let namespace = node_id.split('~').nth(1).unwrap_or_default();
        let node = Node {
            id: node_id.to_string(),
            cluster: namespace.to_string(),
            ..Default::default()
        };
        let mut options = ClientOptions::new(format!("http://{}", self.addr), node);
        options.backoff = Backoff {
            initial: Duration::from_millis(10),
            max: Duration::from_millis(200),
        };
        options
    }

    /// Waits until the node's newest stream satisfies `done`.
    async fn proxy_where(&self, node_id: &str, done: impl Fn(&ProxyStatus) -> bool) -> ProxyStatus {
        let proxies = self
            .ads
            .status()
            .wait_until(|all| newest(all, node_id).is_some_and(&done))
            .await;
        newest(&proxies, node_id).unwrap().clone()
    }

    /// Waits until the node has accepted the last response of each of `types`.
    async fn synced(&self, node_id: &str, types: TypeSet) -> ProxyStatus {
        self.proxy_where(node_id, |p| {
            types
                .iter()
                .all(|ty| p.types.get(&ty).is_some_and(|t| t.is_synced()))
        })
        .await
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn newest<'a>(all: &'a [ProxyStatus], node_id: &str) -> Option<&'a ProxyStatus> {
    all.iter().rev().find(|p| p.node_id == node_id)
}

/// A SotW stream driven by hand.
struct RawSotw {
    tx: mpsc::UnboundedSender<DiscoveryRequest>,
    rx: Streaming<DiscoveryResponse>,
}

impl RawSotw {
    async fn open(addr: SocketAddr) -> RawSotw {
        let mut client = AggregatedDiscoveryServiceClient::connect(format!("http://{addr}"))
            .await
            .unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        let rx = client
            .stream_aggregated_resources(UnboundedReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        RawSotw { tx, rx }
    }

    fn send(&self, request: DiscoveryRequest) {
        self.tx.send(request).unwrap();
    }

    async fn recv(&mut self) -> DiscoveryResponse {
        within(self.rx.message())
            .await
            .unwrap()
            .expect("stream ended")
    }

    async fn error(&mut self) -> tonic::Status {
        within(self.rx.message()).await.unwrap_err()
    }
}

fn request(
    node: Option<&str>,
    ty: ResourceType,
    names: &[&str],
    version: &str,
    nonce: &str,
) -> DiscoveryRequest {
    DiscoveryRequest {
        node: node.map(|id| Node {
            id: id.to_string(),
            cluster: "ns1".into(),
            ..Default::default()
        }),
        type_url: ty.type_url().to_string(),
        resource_names: names.iter().map(|n| n.to_string()).collect(),
        version_info: version.to_string(),
        response_nonce: nonce.to_string(),
        ..Default::default()
    }
}

fn cla_names(response: &DiscoveryResponse) -> Vec<String> {
    let mut names: Vec<String> = response
        .resources
        .iter()
        .map(|any| {
            ClusterLoadAssignment::decode(any.value.as_slice())
                .unwrap()
                .cluster_name
        })
        .collect();
    names.sort();
    names
}

/// A Delta stream driven by hand.
struct RawDelta {
    tx: mpsc::UnboundedSender<DeltaDiscoveryRequest>,
    rx: Streaming<DeltaDiscoveryResponse>,
}

impl RawDelta {
    async fn open(addr: SocketAddr) -> RawDelta {
        let mut client = AggregatedDiscoveryServiceClient::connect(format!("http://{addr}"))
            .await
            .unwrap();
        let (tx, rx) = mpsc::unbounded_channel();
        let rx = client
            .delta_aggregated_resources(UnboundedReceiverStream::new(rx))
            .await
            .unwrap()
            .into_inner();
        RawDelta { tx, rx }
    }

    fn send(&self, request: DeltaDiscoveryRequest) {
        self.tx.send(request).unwrap();
    }

    async fn recv(&mut self) -> DeltaDiscoveryResponse {
        within(self.rx.message())
            .await
            .unwrap()
            .expect("stream ended")
    }
}

fn delta_request(
    node: Option<&str>,
    ty: ResourceType,
    subscribe: &[&str],
    unsubscribe: &[&str],
    nonce: &str,
) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        node: node.map(|id| Node {
            id: id.to_string(),
            ..Default::default()
        }),
        type_url: ty.type_url().to_string(),
        resource_names_subscribe: subscribe.iter().map(|n| n.to_string()).collect(),
        resource_names_unsubscribe: unsubscribe.iter().map(|n| n.to_string()).collect(),
        response_nonce: nonce.to_string(),
        ..Default::default()
    }
}

fn delta_names(response: &DeltaDiscoveryResponse) -> Vec<String> {
    let mut names: Vec<String> = response.resources.iter().map(|r| r.name.clone()).collect();
    names.sort();
    names
}
