//! Pilot and proxy together, as the local mesh runs them: Istio config in a directory,
//! a sidecar in local mode (`INTERCEPTION_MODE: NONE`: listeners on the workload's own
//! address and an HTTP-proxy listener), and requests that follow a VirtualService.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mizzen_pilot::model::MeshConfig;
use mizzen_pilot::server::{Pilot, PilotOptions};
use mizzen_pilot::store::DirStore;
use mizzen_proxy::{Bootstrap, Proxy, ProxyOptions};
use mizzen_xds::ResourceType;
use mizzen_xds::pb::envoy::config::core::v3::Node;
use mizzen_xds::pb::google::protobuf::{Struct, Value, value::Kind};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

/// An HTTP/1.1 backend on `ip` (port chosen by the system) answering with its name.
async fn backend(ip: &str, name: &'static str) -> u16 {
    let listener = TcpListener::bind((ip, 0)).await.unwrap();
    let port = listener.local_addr().unwrap().port();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                let mut seen = Vec::new();
                while !seen.windows(4).any(|w| w == b"\r\n\r\n") {
                    match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => seen.extend_from_slice(&buf[..n]),
                    }
                }
                let body = name;
                let response = format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.write_all(response.as_bytes()).await;
            });
        }
    });
    port
}

/// `GET http://HOST/` sent to the HTTP-proxy listener, as an app with `HTTP_PROXY` does;
/// the status line and body.
async fn via_proxy(proxy: SocketAddr, host: &str) -> (String, String) {
    let mut stream = TcpStream::connect(proxy).await.unwrap();
    let request =
        format!("GET http://{host}/ HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).await.unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (
        head.lines().next().unwrap_or_default().to_owned(),
        body.to_owned(),
    )
}

fn text(s: &str) -> Value {
    Value {
        kind: Some(Kind::StringValue(s.into())),
    }
}

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
        ("INSTANCE_IPS", "127.0.31.1"),
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
        id: "sidecar~127.0.31.1~productpage-v1-1.default~default.svc.cluster.local".into(),
        metadata: Some(Struct {
            fields: fields.into_iter().collect(),
        }),
        ..Node::default()
    }
}

#[tokio::test]
async fn a_local_sidecar_routes_by_the_meshs_virtual_services() {
    let v1 = backend("127.0.31.2", "reviews-v1").await;
    let v2 = backend("127.0.31.3", "reviews-v2").await;
    let dir = tempfile::tempdir().unwrap();
    let write = |name: &str, yaml: &str| std::fs::write(dir.path().join(name), yaml).unwrap();
    write(
        "mesh.yaml",
        &format!(
            r#"
apiVersion: v1
kind: Service
metadata: {{name: reviews, namespace: default}}
spec: {{selector: {{app: reviews}}, ports: [{{name: http, port: 9080}}]}}
---
apiVersion: v1
kind: Service
metadata: {{name: productpage, namespace: default}}
spec: {{selector: {{app: productpage}}, ports: [{{name: http, port: 9080}}]}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: productpage-v1, namespace: default}}
spec: {{address: 127.0.31.1, labels: {{app: productpage, version: v1}}, serviceAccount: bookinfo-productpage}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: reviews-v1, namespace: default}}
spec: {{address: 127.0.31.2, ports: {{http: {v1}}}, labels: {{app: reviews, version: v1}}}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {{name: reviews-v2, namespace: default}}
spec: {{address: 127.0.31.3, ports: {{http: {v2}}}, labels: {{app: reviews, version: v2}}}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: reviews, namespace: default}}
spec:
  host: reviews
  subsets: [{{name: v1, labels: {{version: v1}}}}, {{name: v2, labels: {{version: v2}}}}]
"#
        ),
    );
    let options = PilotOptions {
        xds_addr: "127.0.0.1:0".parse().unwrap(),
        http_addr: "127.0.0.1:0".parse().unwrap(),
        debounce: Duration::from_millis(10),
        mesh: MeshConfig::default(),
    };
    let pilot = Pilot::bind(Arc::new(DirStore::open(dir.path()).unwrap()), options)
        .await
        .unwrap();
    let xds = pilot.xds_addr();
    tokio::spawn(pilot.run(std::future::pending()));

    let bootstrap = Bootstrap::for_pilot(&xds.to_string(), productpage_node(), None);
    let proxy = Proxy::start(ProxyOptions::new(bootstrap)).await.unwrap();
    tokio::time::timeout(Duration::from_secs(20), proxy.ready())
        .await
        .unwrap_or_else(|_| {
            panic!(
                "the sidecar gets its config: {:?}",
                proxy.store().snapshot().warming()
            )
        });
    let state = proxy.xds_state().unwrap();
    for (ty, t) in &state.types {
        assert_eq!(t.nacks, 0, "{ty} rejected: {:?}", t.last_nack);
    }

    let http_proxy = proxy.listener_addr("127.0.31.1_15080").await;
    let mut seen = std::collections::BTreeSet::new();
    for _ in 0..20 {
        let (status, body) = via_proxy(http_proxy, "reviews:9080").await;
        assert!(status.ends_with("200 OK"), "{status} {body}");
        seen.insert(body);
    }
    // Round robin over two endpoints: both answer within 20 requests.
    assert_eq!(seen.len(), 2, "{seen:?}");

    // A VirtualService sends everything to v2; the sidecar follows once it acks.
    let before = state
        .version(ResourceType::Route)
        .unwrap_or_default()
        .to_owned();
    write(
        "vs.yaml",
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http: [{route: [{destination: {host: reviews, subset: v2}}]}]
"#,
    );
    tokio::time::timeout(
        Duration::from_secs(20),
        proxy.wait_xds(|s| s.version(ResourceType::Route).is_some_and(|v| v != before)),
    )
    .await
    .expect("the route change arrives");
    for _ in 0..10 {
        assert_eq!(via_proxy(http_proxy, "reviews:9080").await.1, "reviews-v2");
    }
}
