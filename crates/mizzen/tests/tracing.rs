//! Tracing as pilot configures it and the sidecar carries it out: a mesh whose default
//! tracer is a `zipkin` extension provider (`examples/traffic/zipkin.yaml`). The
//! sidecar takes pilot's `envoy.tracers.zipkin` without a rejection and posts the
//! spans of the requests it carries to the collector, as Zipkin v2 JSON.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use common::mesh::Mesh;
use common::{REVIEWS, WAIT};
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// The collector's port, as the example's Service names it.
const ZIPKIN_PORT: u16 = 9411;

/// A Zipkin collector at `addr` that accepts every report and sends on each span with
/// the path it was posted to.
async fn collector(addr: SocketAddr) -> mpsc::UnboundedReceiver<(String, Value)> {
    let listener = TcpListener::bind(addr).await.unwrap();
    let (spans, received) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let spans = spans.clone();
            let service = service_fn(move |req: Request<Incoming>| {
                let spans = spans.clone();
                async move {
                    let path = req.uri().path().to_owned();
                    let body = req.into_body().collect().await.unwrap().to_bytes();
                    let list: Vec<Value> = serde_json::from_slice(&body).unwrap();
                    for span in list {
                        let _ = spans.send((path.clone(), span));
                    }
                    let mut accepted = Response::new(Full::new(Bytes::new()));
                    *accepted.status_mut() = http::StatusCode::ACCEPTED;
                    Ok::<_, Infallible>(accepted)
                }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    received
}

#[tokio::test]
async fn the_sidecar_sends_pilots_zipkin_spans_to_the_collector() {
    // Starting asserts the sidecar rejected nothing pilot sent.
    let mesh = Mesh::start(&["zipkin.yaml"]).await;
    let ip = mesh.backend("zipkin").addr().ip();
    let mut spans = collector(SocketAddr::new(ip, ZIPKIN_PORT)).await;
    let responses = mesh.send(REVIEWS, &[], 1, 1).await;
    assert_eq!(responses[0].status, 200, "{responses:?}");

    let (path, span) = tokio::time::timeout(WAIT, spans.recv())
        .await
        .expect("a span within the flush interval")
        .unwrap();
    assert_eq!(path, "/api/v2/spans");
    // The client's outbound hop, as Istio names and tags it.
    assert_eq!(span["kind"], "CLIENT");
    assert_eq!(span["name"], "reviews.default.svc.cluster.local:9080/*");
    assert_eq!(span["traceId"].as_str().unwrap().len(), 32, "128-bit ids");
    assert_eq!(span["tags"]["istio.canonical_service"], "curl");
    assert_eq!(span["tags"]["istio.namespace"], "default");
    assert_eq!(span["tags"]["http.status_code"], "200");
    assert_eq!(
        span["tags"]["upstream_cluster"],
        "outbound|9080||reviews.default.svc.cluster.local"
    );
    assert!(span.get("shared").is_none(), "Istio shares no span context");
}
