//! Istio's standard metrics through two sidecars: a client workload's proxy
//! (`productpage-v1`, reporter `source`) and a server workload's proxy (`reviews-v2`,
//! reporter `destination`), with the filters pilot puts in their chains. The peers learn
//! each other from the metadata exchange headers (HTTP) or from EDS endpoint metadata
//! (TCP), and both proxies serve the counters at their Prometheus address.

mod common;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use common::*;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use mizzen_proxy::{Bootstrap, Proxy, ProxyOptions};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

const STATS: &str = r#"- name: istio.stats
  typed_config:
    "@type": type.googleapis.com/udpa.type.v1.TypedStruct
    type_url: type.googleapis.com/stats.PluginConfig
    value: {}
"#;

const EXCHANGE: &str = r#"- name: istio.metadata_exchange
  typed_config:
    "@type": type.googleapis.com/udpa.type.v1.TypedStruct
    type_url: type.googleapis.com/io.istio.http.peer_metadata.Config
    value: {}
"#;

/// A node of workload `name` (`app` and `version` labels), as Istio's agent presents it.
fn node(pod: &str, workload: &str, app: &str, version: &str) -> String {
    format!(
        "node:
  id: sidecar~127.0.0.1~{pod}.default~default.svc.cluster.local
  metadata:
    WORKLOAD_NAME: {workload}
    NAMESPACE: default
    CLUSTER_ID: Kubernetes
    LABELS: {{app: {app}, version: {version}}}
"
    )
}

/// An HTTP listener named `http` on 127.0.0.1:0 with Istio's telemetry filters, routing
/// everything to `cluster`.
fn http_listener(direction: &str, cluster: &str) -> String {
    http_listener_with(direction, cluster, STATS)
}

/// [`http_listener`] with its own `istio.stats` filter.
fn http_listener_with(direction: &str, cluster: &str, stats: &str) -> String {
    format!(
        r#"- name: http
  address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
  traffic_direction: {direction}
  filter_chains:
  - filters:
    - name: envoy.filters.network.http_connection_manager
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
        stat_prefix: {direction}
        http_filters:
{}
{}
        - name: envoy.filters.http.router
          typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
        route_config:
          virtual_hosts:
{}
"#,
        nest(EXCHANGE, 8),
        nest(stats, 8),
        nest(
            &format!(
                "- name: all\n  domains: [\"*\"]\n  routes: [{{match: {{prefix: \"/\"}}, route: {{cluster: \"{cluster}\"}}}}]\n"
            ),
            10
        ),
    )
}

/// A TCP listener named `tcp` on 127.0.0.1:0 behind `istio.stats`.
fn tcp_listener(direction: &str, cluster: &str) -> String {
    format!(
        r#"- name: tcp
  address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
  traffic_direction: {direction}
  filter_chains:
  - filters:
{}
    - name: envoy.filters.network.tcp_proxy
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
        stat_prefix: {cluster}
        cluster: "{cluster}"
"#,
        nest(STATS, 4),
    )
}

/// A static cluster of one endpoint, with Istio's `istio.workload` metadata when given,
/// connecting from `bind` when given.
fn istio_cluster(
    name: &str,
    endpoint: SocketAddr,
    workload: Option<&str>,
    bind: Option<&str>,
) -> String {
    let metadata = workload.map_or(String::new(), |w| {
        format!(", metadata: {{filter_metadata: {{istio: {{workload: \"{w}\"}}}}}}")
    });
    let bind = bind.map_or(String::new(), |ip| {
        format!("  upstream_bind_config: {{source_address: {{address: {ip}, port_value: 0}}}}\n")
    });
    format!(
        r#"- name: "{name}"
  type: STATIC
  connect_timeout: 1s
{bind}  metadata: {{filter_metadata: {{istio: {{services: [{{host: reviews.default.svc.cluster.local, name: reviews, namespace: default}}]}}}}}}
  load_assignment:
    cluster_name: "{name}"
    endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: {}, port_value: {}}}}}}}{metadata}}}]}}]
"#,
        endpoint.ip(),
        endpoint.port()
    )
}

/// `text` indented by `n` spaces, ending its line.
fn nest(text: &str, n: usize) -> String {
    indent(text, n) + "\n"
}

async fn start(yaml: String) -> Proxy {
    let raw =
        mizzen_xds::json::bootstrap_from_yaml(&yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    let mut options = ProxyOptions::new(Bootstrap::from_pb(raw).unwrap());
    options.prometheus_addrs = vec!["127.0.0.1:0".parse().unwrap()];
    Proxy::start(options).await.unwrap()
}

/// An app answering `/status/N` with status N, and with the names of the request
/// headers it received in its body.
async fn app() -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let service = service_fn(|req: Request<Incoming>| async move {
                    let status: u16 = req
                        .uri()
                        .path()
                        .strip_prefix("/status/")
                        .and_then(|s| s.parse().ok())
                        .unwrap_or(200);
                    let names: Vec<&str> = req.headers().keys().map(|k| k.as_str()).collect();
                    let mut response = Response::new(Full::new(Bytes::from(names.join(","))));
                    *response.status_mut() = status.try_into().unwrap();
                    Ok::<_, Infallible>(response)
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// The client's and the server's sidecars: productpage-v1 calls reviews-v2.
struct Mesh {
    client: Proxy,
    server: Proxy,
}

const OUTBOUND: &str = "outbound|9080||reviews.default.svc.cluster.local";
const PRODUCTPAGE: &str = "productpage-v1;default;productpage;v1;Kubernetes";
const REVIEWS: &str = "reviews-v2;default;reviews;v2;Kubernetes";

async fn mesh() -> Mesh {
    let app = app().await;
    let echo = echo("reviews").await;
    // The server knows the client's address from EDS (productpage's endpoints): the
    // client's proxy connects from 127.0.0.2.
    let server = start(format!(
        "{}static_resources:\n  listeners:\n{}{}  clusters:\n{}{}{}",
        node("reviews-v2-1", "reviews-v2", "reviews", "v2"),
        nest(&http_listener("INBOUND", "inbound|9080||"), 2),
        nest(&tcp_listener("INBOUND", "inbound|9090||"), 2),
        nest(&istio_cluster("inbound|9080||", app, None, None), 2),
        nest(&istio_cluster("inbound|9090||", echo, None, None), 2),
        nest(
            &istio_cluster(
                "outbound|9080||productpage.default.svc.cluster.local",
                "127.0.0.2:9080".parse().unwrap(),
                Some(PRODUCTPAGE),
                None
            ),
            2
        ),
    ))
    .await;
    let server_http = server.listener_addr("http").await;
    let server_tcp = server.listener_addr("tcp").await;
    let client = start(format!(
        "{}static_resources:\n  listeners:\n{}{}  clusters:\n{}{}",
        node("productpage-v1-1", "productpage-v1", "productpage", "v1"),
        nest(&http_listener("OUTBOUND", OUTBOUND), 2),
        nest(
            &tcp_listener(
                "OUTBOUND",
                "outbound|9090||reviews.default.svc.cluster.local"
            ),
            2
        ),
        nest(
            &istio_cluster(OUTBOUND, server_http, Some(REVIEWS), Some("127.0.0.2")),
            2
        ),
        nest(
            &istio_cluster(
                "outbound|9090||reviews.default.svc.cluster.local",
                server_tcp,
                Some(REVIEWS),
                Some("127.0.0.2")
            ),
            2
        ),
    ))
    .await;
    Mesh { client, server }
}

/// Scrapes a proxy's Prometheus address and checks the text with `promtool`.
async fn scrape(proxy: &Proxy) -> String {
    let text = send(
        proxy.prometheus_addrs()[0],
        get("prometheus", "/stats/prometheus"),
    )
    .await
    .body;
    promtool_check(&text);
    text
}

/// `promtool check metrics`, Prometheus' own parser and linter: the text must parse,
/// and Istio's families must lint clean, but for the unit Istio chose for durations
/// (Envoy's `envoy_*` names are Envoy's, help-less and suffix-less).
fn promtool_check(text: &str) {
    use std::io::Write;
    use std::process::{Command, Stdio};
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("promtool (Debian package prometheus) runs");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    let report =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    // 1: the text does not parse; 3: it parses, with lint problems.
    assert_ne!(out.status.code(), Some(1), "promtool: {report}\n{text}");
    let istio: Vec<&str> = report
        .lines()
        .filter(|l| l.starts_with("istio_"))
        .filter(|l| !l.starts_with("istio_request_duration_milliseconds use base unit"))
        .collect();
    assert!(istio.is_empty(), "promtool: {report}");
}

/// The value of the sample `name` whose labels include every one of `labels`; panics
/// unless exactly one sample matches.
fn sample(text: &str, name: &str, labels: &[(&str, &str)]) -> f64 {
    let found: Vec<f64> = text
        .lines()
        .filter_map(|line| {
            let rest = line.strip_prefix(name)?.strip_prefix('{')?;
            let (set, value) = rest.rsplit_once("} ")?;
            let set: BTreeMap<&str, &str> = set
                .split("\",")
                .filter_map(|kv| {
                    let (k, v) = kv.split_once("=\"")?;
                    Some((k, v.trim_end_matches('"')))
                })
                .collect();
            labels
                .iter()
                .all(|(k, v)| set.get(k) == Some(v))
                .then(|| value.parse().unwrap())
        })
        .collect();
    assert_eq!(found.len(), 1, "{name} {labels:?} in\n{text}");
    found[0]
}

/// Istio's labels for productpage-v1 calling reviews-v2, as `reporter` sees them.
fn edge(reporter: &'static str) -> Vec<(&'static str, &'static str)> {
    vec![
        ("reporter", reporter),
        ("source_workload", "productpage-v1"),
        ("source_canonical_service", "productpage"),
        ("source_canonical_revision", "v1"),
        ("source_workload_namespace", "default"),
        ("source_principal", "unknown"),
        ("source_app", "productpage"),
        ("source_version", "v1"),
        ("source_cluster", "Kubernetes"),
        ("destination_workload", "reviews-v2"),
        ("destination_workload_namespace", "default"),
        ("destination_principal", "unknown"),
        ("destination_app", "reviews"),
        ("destination_version", "v2"),
        ("destination_service", "reviews.default.svc.cluster.local"),
        ("destination_service_name", "reviews"),
        ("destination_service_namespace", "default"),
        ("destination_canonical_service", "reviews"),
        ("destination_canonical_revision", "v2"),
        ("destination_cluster", "Kubernetes"),
        (
            "connection_security_policy",
            if reporter == "source" {
                "unknown"
            } else {
                "none"
            },
        ),
    ]
}

fn with<'a>(
    mut labels: Vec<(&'a str, &'a str)>,
    more: &[(&'a str, &'a str)],
) -> Vec<(&'a str, &'a str)> {
    labels.extend_from_slice(more);
    labels
}

#[tokio::test]
async fn both_sidecars_count_requests_with_istios_labels() {
    let mesh = mesh().await;
    let entry = mesh.client.listener_addr("http").await;
    for _ in 0..7 {
        let got = send(entry, get("reviews:9080", "/reviews/0")).await;
        assert_eq!(got.status, 200);
        // Neither app sees the proxies' metadata.
        assert!(!got.body.contains("x-envoy-peer-metadata"), "{}", got.body);
        assert!(!got.headers.contains_key("x-envoy-peer-metadata"));
        assert!(!got.headers.contains_key("x-envoy-peer-metadata-id"));
    }
    for _ in 0..3 {
        assert_eq!(
            send(entry, get("reviews:9080", "/status/503")).await.status,
            503
        );
    }

    for (proxy, reporter) in [(&mesh.client, "source"), (&mesh.server, "destination")] {
        let text = scrape(proxy).await;
        for (code, n) in [("200", 7.0), ("503", 3.0)] {
            let labels = with(
                edge(reporter),
                &[
                    ("request_protocol", "http"),
                    ("response_code", code),
                    ("grpc_response_status", ""),
                    ("response_flags", "-"),
                ],
            );
            assert_eq!(
                sample(&text, "istio_requests_total", &labels),
                n,
                "{reporter}"
            );
            for histogram in [
                "istio_request_duration_milliseconds_count",
                "istio_request_bytes_count",
                "istio_response_bytes_count",
            ] {
                assert_eq!(sample(&text, histogram, &labels), n, "{histogram}");
            }
            let le_inf = with(labels.clone(), &[("le", "+Inf")]);
            assert_eq!(
                sample(&text, "istio_request_duration_milliseconds_bucket", &le_inf),
                n
            );
            // Every response has headers and a body: none fits in one byte.
            let le_1 = with(labels.clone(), &[("le", "1")]);
            assert_eq!(sample(&text, "istio_response_bytes_bucket", &le_1), 0.0);
            assert!(sample(&text, "istio_response_bytes_sum", &labels) > 10.0 * n);
        }
        // Labels come in Istio's order.
        let first = text
            .lines()
            .find(|l| l.starts_with("istio_requests_total{"))
            .unwrap();
        let names: Vec<&str> = first
            .split(['{', ','])
            .skip(1)
            .filter_map(|kv| kv.split_once('=').map(|(k, _)| k))
            .collect();
        assert_eq!(
            names,
            [
                "reporter",
                "source_workload",
                "source_canonical_service",
                "source_canonical_revision",
                "source_workload_namespace",
                "source_principal",
                "source_app",
                "source_version",
                "source_cluster",
                "destination_workload",
                "destination_workload_namespace",
                "destination_principal",
                "destination_app",
                "destination_version",
                "destination_service",
                "destination_service_name",
                "destination_service_namespace",
                "destination_canonical_service",
                "destination_canonical_revision",
                "destination_cluster",
                "request_protocol",
                "response_code",
                "grpc_response_status",
                "response_flags",
                "connection_security_policy",
            ]
        );
    }
}

#[tokio::test]
async fn tcp_connections_and_bytes_are_counted_on_both_sides() {
    let mesh = mesh().await;
    let entry = mesh.client.listener_addr("tcp").await;
    for _ in 0..2 {
        let mut conn = TcpStream::connect(entry).await.unwrap();
        conn.write_all(b"hello").await.unwrap();
        let mut reply = [0u8; 13];
        conn.read_exact(&mut reply).await.unwrap();
        assert_eq!(&reply, b"reviews:hello");
        conn.shutdown().await.unwrap();
        // The relay closes its side once the echo server closes its own.
        assert_eq!(conn.read(&mut [0u8; 1]).await.unwrap(), 0);
    }
    for (proxy, reporter) in [(&mesh.client, "source"), (&mesh.server, "destination")] {
        let labels = with(
            edge(reporter),
            &[("request_protocol", "tcp"), ("response_flags", "-")],
        );
        let text = scrape(proxy).await;
        let value = |name| sample(&text, name, &labels);
        assert_eq!(
            value("istio_tcp_connections_opened_total"),
            2.0,
            "{reporter}"
        );
        assert_eq!(value("istio_tcp_received_bytes_total"), 10.0, "{reporter}");
        assert_eq!(value("istio_tcp_sent_bytes_total"), 26.0, "{reporter}");
        // Closed once both ends of the relay are done: wait for it, it is counted as
        // the relay task ends.
        let mut closed = value("istio_tcp_connections_closed_total");
        while closed < 2.0 {
            tokio::task::yield_now().await;
            closed = sample(
                &scrape(proxy).await,
                "istio_tcp_connections_closed_total",
                &labels,
            );
        }
        assert_eq!(closed, 2.0);
    }
}

/// A stats config's overrides, as pilot writes them from Telemetry: labels removed, set
/// from the request or a literal, a metric dropped; series made alike are summed.
#[tokio::test]
async fn stats_overrides_remove_set_and_drop() {
    const OVERRIDES: &str = r#"- name: istio.stats
  typed_config:
    "@type": type.googleapis.com/stats.PluginConfig
    metrics:
    - dimensions: {mesh: "'local'"}
    - name: requests_total
      tags_to_remove: [response_code]
      dimensions: {request_host: request.host}
    - name: request_bytes
      drop: true
"#;
    let app = app().await;
    let client = start(format!(
        "{}static_resources:\n  listeners:\n{}  clusters:\n{}",
        node("productpage-v1-1", "productpage-v1", "productpage", "v1"),
        nest(&http_listener_with("OUTBOUND", OUTBOUND, OVERRIDES), 2),
        nest(&istio_cluster(OUTBOUND, app, None, None), 2),
    ))
    .await;
    let entry = client.listener_addr("http").await;
    for (host, path, status) in [
        ("a.example", "/status/200", 200),
        ("a.example", "/status/200", 200),
        ("a.example", "/status/200", 200),
        ("a.example", "/status/503", 503),
        ("b.example", "/", 200),
        ("b.example", "/", 200),
    ] {
        assert_eq!(send(entry, get(host, path)).await.status, status);
    }
    let text = scrape(&client).await;
    let a = [("request_host", "a.example"), ("mesh", "local")];
    assert_eq!(sample(&text, "istio_requests_total", &a), 4.0);
    assert_eq!(
        sample(
            &text,
            "istio_requests_total",
            &[("request_host", "b.example")]
        ),
        2.0
    );
    let requests = text
        .lines()
        .find(|l| l.starts_with("istio_requests_total{"))
        .unwrap();
    assert!(!requests.contains("response_code="), "{requests}");
    let ok = [("response_code", "200"), ("mesh", "local")];
    assert_eq!(
        sample(&text, "istio_request_duration_milliseconds_count", &ok),
        5.0
    );
    let duration = text
        .lines()
        .find(|l| l.starts_with("istio_request_duration_milliseconds_count{"))
        .unwrap();
    assert!(!duration.contains("request_host="), "{duration}");
    assert!(!text.contains("istio_request_bytes"), "{text}");
}
