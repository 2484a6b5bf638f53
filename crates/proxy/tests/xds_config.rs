//! The proxy taking its config over ADS: it serves once listeners, clusters, endpoints
//! and routes arrived; follows endpoint changes; NACKs a bad route table, or a listener
//! that cannot bind, and keeps serving on the last good config; keeps serving when the
//! server is gone; and closes the connections a changed listener accepted (HTTP ones at
//! once, TCP relays after the drain time), keeping those of unchanged filter chains.

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::*;
use mizzen_proxy::{Bootstrap, Proxy, ProxyOptions};
use mizzen_xds::pb::envoy::config::cluster::v3::Cluster;
use mizzen_xds::pb::envoy::config::core::v3::Node;
use mizzen_xds::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use mizzen_xds::pb::envoy::config::listener::v3::Listener;
use mizzen_xds::pb::envoy::config::route::v3::RouteConfiguration;
use mizzen_xds::{
    AdsServer, Generated, NamedResource, Protocol, PushRequest, ResourceSource, ResourceType,
    Subscription, TypeSet, json,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

/// An xDS server's resources, by type, with one version for all.
#[derive(Default)]
struct Resources {
    version: u64,
    by_type: std::collections::BTreeMap<ResourceType, Vec<NamedResource>>,
}

#[derive(Clone, Default)]
struct Source(Arc<Mutex<Resources>>);

impl ResourceSource for Source {
    type Proxy = ();
    fn connect(&self, _: &Node) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        Ok(())
    }
    fn generate(&self, _: &(), ty: ResourceType, _: &Subscription) -> Generated {
        let r = self.0.lock().unwrap();
        Generated {
            version: r.version.to_string(),
            resources: r.by_type.get(&ty).cloned().unwrap_or_default(),
        }
    }
}

impl Source {
    fn set(&self, ty: ResourceType, resources: Vec<NamedResource>) {
        let mut r = self.0.lock().unwrap();
        r.version += 1;
        r.by_type.insert(ty, resources);
    }
}

fn listener() -> NamedResource {
    listener_on("http", 0, "outbound")
}

/// The listener `name` on 127.0.0.1:`port`, routing with RDS "9080", its statistics
/// under `stat_prefix`.
fn listener_on(name: &str, port: u16, stat_prefix: &str) -> NamedResource {
    let l: Listener = json::from_yaml(&format!(
        r#"
name: {name}
address: {{socket_address: {{address: 127.0.0.1, port_value: {port}}}}}
filter_chains:
- filters:
  - name: envoy.filters.network.http_connection_manager
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
      stat_prefix: {stat_prefix}
      rds: {{route_config_name: "9080", config_source: {{ads: {{}}}}}}
      http_filters:
      - name: envoy.filters.http.router
        typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
"#
    ))
    .unwrap();
    NamedResource::new(name, &l)
}

fn cluster() -> NamedResource {
    let c: Cluster = json::from_yaml(
        "{name: svc, type: EDS, eds_cluster_config: {eds_config: {ads: {}}}, connect_timeout: 1s}",
    )
    .unwrap();
    NamedResource::new("svc", &c)
}

fn endpoints(addr: std::net::SocketAddr) -> NamedResource {
    let a: ClusterLoadAssignment = json::from_yaml(&format!(
        "{{cluster_name: svc, endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: {}, port_value: {}}}}}}}}}]}}]}}",
        addr.ip(),
        addr.port()
    ))
    .unwrap();
    NamedResource::new("svc", &a)
}

fn routes(path_regex: &str) -> NamedResource {
    let r: RouteConfiguration = json::from_yaml(&format!(
        r#"
name: "9080"
virtual_hosts:
- name: svc
  domains: ["*"]
  routes: [{{match: {{safe_regex: {{regex: "{path_regex}"}}}}, route: {{cluster: svc}}}}]
"#
    ))
    .unwrap();
    NamedResource::new("9080", &r)
}

/// A source serving one listener, one cluster with `endpoint`, and routes matching
/// every path.
fn source_with(endpoint: std::net::SocketAddr) -> Source {
    let source = Source::default();
    source.set(ResourceType::Listener, vec![listener()]);
    source.set(ResourceType::Cluster, vec![cluster()]);
    source.set(ResourceType::Endpoint, vec![endpoints(endpoint)]);
    source.set(ResourceType::Route, vec![routes("/.*")]);
    source
}

/// Serves ADS for `server` on a port of its own until `stop` resolves.
async fn serve_ads(
    server: &AdsServer<Source>,
    stop: impl std::future::Future<Output = ()> + Send + 'static,
) -> (std::net::SocketAddr, tokio::task::JoinHandle<()>) {
    let socket = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let xds = socket.local_addr().unwrap();
    let server = server.clone();
    let serving = tokio::spawn(async move {
        let _ = server.serve(socket, stop).await;
    });
    (xds, serving)
}

/// A proxy following the ADS server at `xds` over `protocol`, once it has its whole
/// config, and the address of its `http` listener.
async fn proxy_following(
    xds: std::net::SocketAddr,
    protocol: Protocol,
) -> (Proxy, std::net::SocketAddr) {
    let proxy = follow(xds, protocol, None).await;
    let addr = proxy.listener_addr("http").await;
    (proxy, addr)
}

/// A proxy following the ADS server at `xds` over `protocol`, once it has its whole
/// config; drained connections get `drain_time` when given.
async fn follow(
    xds: std::net::SocketAddr,
    protocol: Protocol,
    drain_time: Option<Duration>,
) -> Proxy {
    let node = Node {
        id: "sidecar~127.0.0.1~client.default~default.svc.cluster.local".into(),
        ..Node::default()
    };
    let mut bootstrap = Bootstrap::for_pilot(&xds.to_string(), node, None);
    bootstrap.ads.as_mut().unwrap().protocol = protocol;
    let mut options = ProxyOptions::new(bootstrap);
    if let Some(drain_time) = drain_time {
        options.drain_time = drain_time;
    }
    let proxy = Proxy::start(options).await.unwrap();
    tokio::time::timeout(Duration::from_secs(10), proxy.ready())
        .await
        .expect("the proxy gets its whole config");
    proxy
}

#[tokio::test]
async fn config_over_ads_follows_changes_and_survives_nacks_and_server_loss() {
    follows_changes_and_survives_nacks_and_server_loss(Protocol::StateOfTheWorld).await;
}

#[tokio::test]
async fn config_over_delta_ads_does_the_same() {
    follows_changes_and_survives_nacks_and_server_loss(Protocol::Delta).await;
}

async fn follows_changes_and_survives_nacks_and_server_loss(protocol: Protocol) {
    let v1 = backend("v1").await;
    let v2 = backend("v2").await;
    let source = source_with(v1);
    let server = AdsServer::new(source.clone());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let (xds, serving) = serve_ads(&server, async {
        let _ = stopped.await;
    })
    .await;
    let (proxy, addr) = proxy_following(xds, protocol).await;
    assert_eq!(send(addr, get("svc", "/a")).await.seen().backend, "v1");

    // Endpoints move: the proxy follows once it acked them.
    source.set(ResourceType::Endpoint, vec![endpoints(v2)]);
    let version = source.0.lock().unwrap().version.to_string();
    server
        .pusher()
        .push(&PushRequest::all(TypeSet::of([ResourceType::Endpoint])));
    proxy
        .wait_xds(|s| s.version(ResourceType::Endpoint) == Some(&version))
        .await;
    assert_eq!(send(addr, get("svc", "/a")).await.seen().backend, "v2");

    // A route table with an invalid regex is NACKed; the old table keeps routing.
    source.set(ResourceType::Route, vec![routes("(")]);
    server
        .pusher()
        .push(&PushRequest::all(TypeSet::of([ResourceType::Route])));
    proxy
        .wait_xds(|s| {
            s.types
                .get(&ResourceType::Route)
                .is_some_and(|t| t.nacks > 0)
        })
        .await;
    let state = proxy.xds_state().unwrap();
    let nack = state.types[&ResourceType::Route].last_nack.clone().unwrap();
    assert!(
        nack.contains("\"9080\""),
        "the NACK names the route config: {nack}"
    );
    assert_eq!(send(addr, get("svc", "/b")).await.seen().backend, "v2");

    // The control plane goes away; traffic keeps flowing on the last config.
    let _ = stop.send(());
    server.close_streams();
    let _ = serving.await;
    proxy.wait_xds(|s| !s.connected).await;
    assert_eq!(send(addr, get("svc", "/c")).await.seen().backend, "v2");
}

#[tokio::test]
async fn config_updates_under_load_fail_no_request() {
    let v1 = backend("v1").await;
    let v2 = backend("v2").await;
    let source = source_with(v1);
    let server = AdsServer::new(source.clone());
    let (xds, _serving) = serve_ads(&server, std::future::pending()).await;
    let (proxy, addr) = proxy_following(xds, Protocol::StateOfTheWorld).await;

    let (stop, mut stopped) = tokio::sync::watch::channel(false);
    let load: Vec<_> = (0..4)
        .map(|_| {
            let mut stopped = stopped.clone();
            tokio::spawn(async move {
                let (mut ok, mut failed) = (0u32, Vec::new());
                while !*stopped.borrow_and_update() {
                    let got = send(addr, get("svc", "/load")).await;
                    if got.status == 200 {
                        ok += 1;
                    } else {
                        failed.push((got.status, got.body));
                    }
                }
                (ok, failed)
            })
        })
        .collect();

    // Endpoints, routes and the listener itself change ten times while load runs.
    for round in 0..10 {
        let backend = if round % 2 == 0 { v2 } else { v1 };
        source.set(ResourceType::Endpoint, vec![endpoints(backend)]);
        source.set(
            ResourceType::Route,
            vec![routes(if round % 2 == 0 { "/l.*" } else { "/.*" })],
        );
        source.set(ResourceType::Listener, vec![listener()]);
        let version = source.0.lock().unwrap().version.to_string();
        server.pusher().push(&PushRequest::all(TypeSet::of([
            ResourceType::Listener,
            ResourceType::Endpoint,
            ResourceType::Route,
        ])));
        proxy
            .wait_xds(|s| {
                [ResourceType::Endpoint, ResourceType::Route]
                    .iter()
                    .all(|t| s.version(*t) == Some(&version))
            })
            .await;
    }
    stop.send(true).unwrap();
    let _ = stopped.changed().await;
    let mut total = 0;
    for task in load {
        let (ok, failed) = task.await.unwrap();
        assert!(
            failed.is_empty(),
            "failed requests during updates: {failed:?}"
        );
        total += ok;
    }
    assert!(total > 0, "the load ran");
}

#[tokio::test]
async fn a_listener_that_cannot_bind_is_nacked_and_the_old_listeners_keep_serving() {
    let v1 = backend("v1").await;
    let source = source_with(v1);
    let server = AdsServer::new(source.clone());
    let (xds, _serving) = serve_ads(&server, std::future::pending()).await;
    let (proxy, addr) = proxy_following(xds, Protocol::StateOfTheWorld).await;

    // Another process holds the port a new listener wants.
    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = taken.local_addr().unwrap().port();
    source.set(
        ResourceType::Listener,
        vec![listener(), listener_on("taken", port, "outbound")],
    );
    server
        .pusher()
        .push(&PushRequest::all(TypeSet::of([ResourceType::Listener])));
    proxy
        .wait_xds(|s| {
            s.types
                .get(&ResourceType::Listener)
                .is_some_and(|t| t.nacks > 0)
        })
        .await;
    let state = proxy.xds_state().unwrap();
    let nack = state.types[&ResourceType::Listener]
        .last_nack
        .clone()
        .unwrap();
    let expected =
        format!("listener \"taken\": cannot bind 127.0.0.1:{port}: Address already in use");
    assert!(nack.starts_with(&expected), "{nack}");
    assert!(
        !proxy.store().snapshot().listeners.contains_key("taken"),
        "nothing of the rejected update is applied"
    );
    assert_eq!(send(addr, get("svc", "/a")).await.seen().backend, "v1");

    // Once the port is free, the same listener binds and serves.
    drop(taken);
    let version = {
        let mut r = source.0.lock().unwrap();
        r.version += 1;
        r.version.to_string()
    };
    server
        .pusher()
        .push(&PushRequest::all(TypeSet::of([ResourceType::Listener])));
    proxy
        .wait_xds(|s| s.version(ResourceType::Listener) == Some(&version))
        .await;
    let taken = proxy.listener_addr("taken").await;
    assert_eq!(taken.port(), port);
    assert_eq!(send(taken, get("svc", "/b")).await.seen().backend, "v1");
    assert_eq!(send(addr, get("svc", "/c")).await.seen().backend, "v1");
}

#[tokio::test]
async fn a_changed_listener_drains_the_connections_it_accepted_before() {
    let v1 = backend("v1").await;
    let source = source_with(v1);
    let server = AdsServer::new(source.clone());
    let (xds, _serving) = serve_ads(&server, std::future::pending()).await;
    let (proxy, addr) = proxy_following(xds, Protocol::StateOfTheWorld).await;

    // A kept-alive connection, idle after its first answer.
    let mut kept = tokio::net::TcpStream::connect(addr).await.unwrap();
    kept.write_all(b"GET /a HTTP/1.1\r\nhost: svc\r\n\r\n")
        .await
        .unwrap();
    let mut answer = vec![0; 4096];
    let n = kept.read(&mut answer).await.unwrap();
    assert!(answer[..n].starts_with(b"HTTP/1.1 200"));

    // The same listener sent again: the connection stays.
    let push = |listener: NamedResource| {
        source.set(ResourceType::Listener, vec![listener]);
        server
            .pusher()
            .push(&PushRequest::all(TypeSet::of([ResourceType::Listener])));
        source.0.lock().unwrap().version.to_string()
    };
    let version = push(listener());
    proxy
        .wait_xds(|s| s.version(ResourceType::Listener) == Some(&version))
        .await;
    kept.write_all(b"GET /b HTTP/1.1\r\nhost: svc\r\n\r\n")
        .await
        .unwrap();
    let n = kept.read(&mut answer).await.unwrap();
    assert!(answer[..n].starts_with(b"HTTP/1.1 200"), "still served");

    // A changed listener (a policy, say) must not be bypassed by the connections made
    // before it: the proxy closes them, as Envoy drains a changed filter chain.
    let version = push(listener_on("http", 0, "changed"));
    proxy
        .wait_xds(|s| s.version(ResourceType::Listener) == Some(&version))
        .await;
    let closed = tokio::time::timeout(Duration::from_secs(10), kept.read(&mut answer)).await;
    assert!(
        matches!(closed, Ok(Ok(0)) | Ok(Err(_))),
        "the old connection is closed: {closed:?}"
    );
    assert_eq!(send(addr, get("svc", "/c")).await.seen().backend, "v1");
}

/// The listener `tcp` relaying to cluster `svc`: chain `a` for clients from 127.0.0.1,
/// chain `b` for those from 127.0.0.2, which denies every connection when `deny` (a
/// DENY AuthorizationPolicy on a TCP port, as Istio writes it); `stat_prefix` is the
/// listener's own.
fn tcp_listener(deny: bool, stat_prefix: &str) -> NamedResource {
    let rbac = if deny {
        r#"
  - name: envoy.filters.network.rbac
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC
      stat_prefix: tcp.
      rules: {action: DENY, policies: {"ns[default]-policy[deny-all]-rule[0]": {permissions: [{any: true}], principals: [{any: true}]}}}"#
    } else {
        ""
    };
    let chain = |name: &str, source: &str, filters: &str| {
        format!(
            r#"
- name: {name}
  filter_chain_match: {{source_prefix_ranges: [{{address_prefix: {source}, prefix_len: 32}}]}}
  filters:{filters}
  - name: envoy.filters.network.tcp_proxy
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
      stat_prefix: svc
      cluster: svc"#
        )
    };
    let l: Listener = json::from_yaml(&format!(
        "name: tcp\nstat_prefix: {stat_prefix}\naddress: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}\nfilter_chains:{}{}",
        chain("a", "127.0.0.1", ""),
        chain("b", "127.0.0.2", rbac),
    ))
    .unwrap();
    NamedResource::new("tcp", &l)
}

/// A connection to `addr` from `source`, relaying: one round trip through the echo
/// backend made.
async fn relaying(source: &str, addr: std::net::SocketAddr) -> tokio::net::TcpStream {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{source}:0").parse().unwrap()).unwrap();
    let mut stream = socket.connect(addr).await.unwrap();
    assert!(round_trip(&mut stream).await, "{source} relays");
    stream
}

/// Whether `stream` still relays: a ping comes back through the echo backend.
async fn round_trip(stream: &mut tokio::net::TcpStream) -> bool {
    if stream.write_all(b"ping").await.is_err() {
        return false;
    }
    let mut buf = [0u8; 7];
    stream.read_exact(&mut buf).await.is_ok() && &buf == b"db:ping"
}

/// Waits (10 s at most) until the proxy closes `stream`.
async fn closed(stream: &mut tokio::net::TcpStream) {
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_secs(10), stream.read(&mut buf)).await;
    assert!(
        matches!(read, Ok(Ok(0)) | Ok(Err(_))),
        "the proxy closes the connection: {read:?}"
    );
}

#[tokio::test]
async fn tcp_relays_of_a_changed_filter_chain_close_after_the_drain_time() {
    const DRAIN: Duration = Duration::from_secs(2);
    let source = source_with(echo("db").await);
    source.set(ResourceType::Listener, vec![tcp_listener(false, "tcp")]);
    let server = AdsServer::new(source.clone());
    let (xds, _serving) = serve_ads(&server, std::future::pending()).await;
    let proxy = follow(xds, Protocol::StateOfTheWorld, Some(DRAIN)).await;
    let addr = proxy.listener_addr("tcp").await;
    let push = |listener: NamedResource| {
        source.set(ResourceType::Listener, vec![listener]);
        server
            .pusher()
            .push(&PushRequest::all(TypeSet::of([ResourceType::Listener])));
        source.0.lock().unwrap().version.to_string()
    };
    let mut a = relaying("127.0.0.1", addr).await;
    let mut b = relaying("127.0.0.2", addr).await;

    // A DENY policy on chain b only (a filter chain only update): b's relay is closed
    // once the drain time is over, not before; a's chain is unchanged and keeps its.
    let pushed = tokio::time::Instant::now();
    let version = push(tcp_listener(true, "tcp"));
    proxy
        .wait_xds(|s| s.version(ResourceType::Listener) == Some(&version))
        .await;
    closed(&mut b).await;
    assert!(
        pushed.elapsed() >= DRAIN,
        "closed {:?} after the update, within the drain time",
        pushed.elapsed()
    );
    assert!(
        round_trip(&mut a).await,
        "the unchanged chain's relay stays"
    );
    // The policy is in force for new connections at once.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut denied = socket.connect(addr).await.unwrap();
    let _ = denied.write_all(b"ping").await;
    closed(&mut denied).await;

    // A change beyond the filter chains drains every chain of the listener.
    let pushed = tokio::time::Instant::now();
    let version = push(tcp_listener(true, "renamed"));
    proxy
        .wait_xds(|s| s.version(ResourceType::Listener) == Some(&version))
        .await;
    closed(&mut a).await;
    assert!(pushed.elapsed() >= DRAIN);
    relaying("127.0.0.1", addr).await;
}
