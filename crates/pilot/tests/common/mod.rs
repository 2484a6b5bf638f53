//! Fixtures shared by pilot's end-to-end tests: Bookinfo config, a Bookinfo sidecar's
//! node, a running pilot, and a GET for debug endpoints.

#![allow(dead_code)] // Each test binary uses its own subset.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use mizzen_pilot::model::MeshConfig;
use mizzen_pilot::server::{Pilot, PilotOptions};
use mizzen_pilot::store::DirStore;
use mizzen_xds::pb::envoy::config::core::v3::Node;
use mizzen_xds::pb::google::protobuf::{Struct, Value, value::Kind};

pub const BOOKINFO: &str = r#"
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
kind: WorkloadEntry
metadata: {name: reviews-v3}
spec: {address: 127.0.10.4, labels: {app: reviews, version: v3}, serviceAccount: bookinfo-reviews}
---
apiVersion: v1
kind: Service
metadata: {name: ratings, labels: {app: ratings}}
spec:
  selector: {app: ratings}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: ratings-v1}
spec: {address: 127.0.10.5, labels: {app: ratings, version: v1}, serviceAccount: bookinfo-ratings}
---
apiVersion: v1
kind: Service
metadata: {name: details, labels: {app: details}}
spec:
  selector: {app: details}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: details-v1}
spec: {address: 127.0.10.6, labels: {app: details, version: v1}, serviceAccount: bookinfo-details}
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

pub const ALL_V1: &str = r#"
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
pub fn productpage_node() -> Node {
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
        id: PRODUCTPAGE_NODE_ID.into(),
        metadata: Some(Struct {
            fields: fields.into_iter().collect(),
        }),
        ..Default::default()
    }
}

/// A running pilot on `dir`: its xDS and debug addresses, and its proxy status.
pub async fn start_pilot(
    dir: &std::path::Path,
) -> (
    std::net::SocketAddr,
    std::net::SocketAddr,
    mizzen_xds::StatusRegistry,
) {
    start_pilot_with(dir, MeshConfig::default()).await
}

/// [`start_pilot`] with its own mesh config.
pub async fn start_pilot_with(
    dir: &std::path::Path,
    mesh: MeshConfig,
) -> (
    std::net::SocketAddr,
    std::net::SocketAddr,
    mizzen_xds::StatusRegistry,
) {
    let store = DirStore::open(dir).unwrap();
    let options = PilotOptions {
        mesh,
        ..PilotOptions::ephemeral()
    };
    let pilot = Pilot::bind(Arc::new(store), options).await.unwrap();
    let (xds, http, status) = (pilot.xds_addr(), pilot.http_addr(), pilot.status());
    tokio::spawn(pilot.run(std::future::pending()));
    (xds, http, status)
}

/// The Bookinfo sidecar's metadata fields, for Envoy bootstraps written as YAML.
pub const PRODUCTPAGE_NODE_ID: &str =
    "sidecar~127.0.10.1~productpage-v1-1.default~default.svc.cluster.local";

/// GET over a plain socket (HTTP/1.1, `Connection: close`, chunked bodies decoded):
/// the debug endpoints are meant for any HTTP client. Returns the body of a 200.
pub async fn get(addr: std::net::SocketAddr, path: &str) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let request = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(request.as_bytes()).await.unwrap();
    let mut raw = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut raw))
        .await
        .expect("the endpoint answers")
        .unwrap();
    let text = String::from_utf8(raw).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").expect("a complete response");
    assert!(head.starts_with("HTTP/1.1 200"), "{path}: {head}\n{body}");
    if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        dechunk(body)
    } else {
        body.to_owned()
    }
}

fn dechunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let size = usize::from_str_radix(size.trim(), 16).expect("chunk size");
        if size == 0 {
            break;
        }
        out.push_str(&rest[..size]);
        body = &rest[size + 2..];
    }
    out
}
