//! Spans across three proxies, exported over OTLP: an ingress gateway, the caller's
//! sidecar (outbound) and the callee's sidecar (inbound) in a chain to a backend, each
//! exporting to a test collector that speaks OTLP/gRPC and OTLP/HTTP. Every hop's span
//! arrives, in one trace, each the child of the hop before; the backend hears the last
//! span as its parent.

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::{Buf, Bytes};
use common::*;
use http_body_util::{BodyExt, StreamBody};
use hyper::body::{Frame, Incoming};
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use mizzen_proxy::Proxy;
use mizzen_xds::otlp::{ExportTraceServiceRequest, Span, SpanKind, StatusCode};
use mizzen_xds::pb::opentelemetry::proto::common::v1::{KeyValue, any_value};
use prost::Message;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// How long a test waits for spans: past the exporters' 5 s flush interval.
const EXPORT_DEADLINE: Duration = Duration::from_secs(20);

/// A span as the collector received it.
#[derive(Debug, Clone)]
struct Exported {
    /// `grpc` or `http`.
    protocol: &'static str,
    /// The resource's `service.name`.
    service: String,
    /// The resource's attributes.
    resource: BTreeMap<String, String>,
    /// The export request's `x-tenant` header (the HTTP exporter's added header).
    tenant: Option<String>,
    span: Span,
}

impl Exported {
    fn attribute(&self, key: &str) -> Option<&str> {
        attribute(&self.span.attributes, key)
    }
}

fn attribute<'a>(attributes: &'a [KeyValue], key: &str) -> Option<&'a str> {
    attributes.iter().find(|kv| kv.key == key).and_then(|kv| {
        match kv.value.as_ref()?.value.as_ref()? {
            any_value::Value::StringValue(s) => Some(s.as_str()),
            _ => None,
        }
    })
}

/// An OTLP collector on 127.0.0.1: `TraceService/Export` over h2c gRPC and
/// `POST /v1/traces` over HTTP/1.1, every span sent on to the test.
async fn collector() -> (SocketAddr, mpsc::UnboundedReceiver<Exported>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (spans, received) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let spans = spans.clone();
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| {
                    let spans = spans.clone();
                    async move { Ok::<_, Infallible>(export(req, &spans).await) }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    (addr, received)
}

type CollectorBody =
    StreamBody<tokio_stream::Iter<std::vec::IntoIter<Result<Frame<Bytes>, Infallible>>>>;

async fn export(
    req: Request<Incoming>,
    spans: &mpsc::UnboundedSender<Exported>,
) -> Response<CollectorBody> {
    let grpc = req.uri().path() == mizzen_xds::otlp::EXPORT_PATH;
    assert!(grpc || req.uri().path() == "/v1/traces", "{}", req.uri());
    let tenant = req
        .headers()
        .get("x-tenant")
        .map(|v| v.to_str().unwrap().to_owned());
    let mut body = req.into_body().collect().await.unwrap().to_bytes();
    if grpc {
        assert_eq!(body.get_u8(), 0, "uncompressed");
        let len = body.get_u32() as usize;
        assert_eq!(len, body.len());
    }
    let request = ExportTraceServiceRequest::decode(body).unwrap();
    for resource in request.resource_spans {
        let scope_spans = resource.scope_spans;
        let resource = resource.resource.unwrap().attributes;
        let service = attribute(&resource, "service.name").unwrap().to_owned();
        // The SDK's language, name and version are each proxy's own.
        let resource: BTreeMap<String, String> = resource
            .iter()
            .map(|kv| {
                let value = match kv.key.starts_with("telemetry.sdk.") {
                    true => "*",
                    false => attribute(std::slice::from_ref(kv), &kv.key).unwrap_or("?"),
                };
                (kv.key.clone(), value.to_owned())
            })
            .collect();
        for span in scope_spans.into_iter().flat_map(|s| s.spans) {
            let exported = Exported {
                protocol: if grpc { "grpc" } else { "http" },
                service: service.clone(),
                resource: resource.clone(),
                tenant: tenant.clone(),
                span,
            };
            let _ = spans.send(exported);
        }
    }
    let frames: Vec<Result<Frame<Bytes>, Infallible>> = if grpc {
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", "0".parse().unwrap());
        vec![
            Ok(Frame::data(Bytes::from_static(&[0, 0, 0, 0, 0]))),
            Ok(Frame::trailers(trailers)),
        ]
    } else {
        vec![Ok(Frame::data(Bytes::new()))]
    };
    Response::builder()
        .header(
            "content-type",
            if grpc {
                "application/grpc"
            } else {
                "application/x-protobuf"
            },
        )
        .body(StreamBody::new(tokio_stream::iter(frames)))
        .unwrap()
}

/// Waits for `n` spans.
async fn receive(spans: &mut mpsc::UnboundedReceiver<Exported>, n: usize) -> Vec<Exported> {
    let mut got = Vec::with_capacity(n);
    tokio::time::timeout(EXPORT_DEADLINE, async {
        while got.len() < n {
            got.push(spans.recv().await.unwrap());
        }
    })
    .await
    .unwrap_or_else(|_| panic!("{} of {n} spans arrived: {got:#?}", got.len()));
    got
}

/// How a hop exports.
#[derive(Clone, Copy)]
enum Exporter {
    Grpc,
    Http,
}

/// One proxy of the chain: its listener's direction, and where it routes.
fn hop(
    name: &str,
    direction: &str,
    exporter: Exporter,
    sampling: &str,
    next: SocketAddr,
    collector: SocketAddr,
) -> String {
    let exporter = match exporter {
        Exporter::Grpc => "grpc_service: {envoy_grpc: {cluster_name: otel}, timeout: 1s}".to_owned(),
        Exporter::Http => "http_service: {http_uri: {uri: \"http://otel-collector:4318/v1/traces\", cluster: otel, timeout: 1s}, request_headers_to_add: [{header: {key: x-tenant, value: mesh}}]}".to_owned(),
    };
    let provider = format!(
        "name: envoy.tracers.opentelemetry\ntyped_config:\n  \"@type\": type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig\n  service_name: {name}.default\n  {exporter}"
    );
    TracedHop {
        name,
        ip: "127.0.0.1",
        direction,
        sampling,
        tags: "- {tag: istio.canonical_service, request_header: {name: x-canonical, default_value: unknown}}",
        provider: &provider,
        next,
        collector: ("otel", collector),
    }
    .yaml()
}

/// `hop` with `spawn_upstream_span: true`: each upstream attempt is a CLIENT span.
fn spawning(hop: String) -> String {
    hop.replace(
        "            random_sampling:",
        "            spawn_upstream_span: true\n            random_sampling:",
    )
}

/// `hop` with the route retrying `5xx` answers up to twice.
fn retrying(hop: String) -> String {
    hop.replace(
        "route: {cluster: next}",
        "route: {cluster: next, retry_policy: {retry_on: 5xx, num_retries: 2}}",
    )
}

/// The three proxies, first to last, and the chain's entry.
struct Chain {
    _proxies: Vec<Proxy>,
    entry: SocketAddr,
    /// Where the gateway sends: sidecar A's listener.
    outbound: SocketAddr,
}

/// ingress gateway (SERVER, gRPC) → sidecar A outbound (CLIENT, HTTP) → sidecar B
/// inbound (SERVER, gRPC) → backend; the gateway's upstream requests are CLIENT spans
/// of their own when `gateway_spawns`.
async fn chain(
    sampling: &str,
    backend: SocketAddr,
    collector: SocketAddr,
    gateway_spawns: bool,
) -> Chain {
    let inbound = proxy(&hop(
        "b",
        "INBOUND",
        Exporter::Grpc,
        sampling,
        backend,
        collector,
    ))
    .await;
    let b = inbound.listener_addr("http").await;
    let outbound = proxy(&hop(
        "a",
        "OUTBOUND",
        Exporter::Http,
        sampling,
        b,
        collector,
    ))
    .await;
    let a = outbound.listener_addr("http").await;
    let gateway = hop(
        "gateway",
        "UNSPECIFIED",
        Exporter::Grpc,
        sampling,
        a,
        collector,
    );
    let gateway = proxy(&match gateway_spawns {
        true => spawning(gateway),
        false => gateway,
    })
    .await;
    let entry = gateway.listener_addr("http").await;
    Chain {
        _proxies: vec![gateway, outbound, inbound],
        entry,
        outbound: a,
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The spans of one trace in hop order (gateway, a, b), checked to be its chain:
/// one trace id, each hop's parent the hop before.
fn in_hop_order(spans: &[Exported]) -> [&Exported; 3] {
    let by = |service: &str| {
        spans
            .iter()
            .find(|s| s.service == service)
            .unwrap_or_else(|| panic!("no span from {service}: {spans:#?}"))
    };
    let hops = [by("gateway.default"), by("a.default"), by("b.default")];
    assert!(
        hops.iter()
            .all(|h| h.span.trace_id == hops[0].span.trace_id)
    );
    assert_eq!(hops[1].span.parent_span_id, hops[0].span.span_id);
    assert_eq!(hops[2].span.parent_span_id, hops[1].span.span_id);
    hops
}

#[tokio::test]
async fn every_hop_exports_its_span_each_the_child_of_the_one_before() {
    let backend = backend("backend").await;
    let (otel, mut spans) = collector().await;
    let chain = chain("100", backend, otel, false).await;

    // A request that continues the caller's trace.
    let mut request = get("shop.example.com", "/cart?item=1");
    request.headers_mut().insert(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            .parse()
            .unwrap(),
    );
    request
        .headers_mut()
        .insert("x-canonical", "shop".parse().unwrap());
    request
        .headers_mut()
        .insert("user-agent", "curl/8".parse().unwrap());
    let got = send(chain.entry, request).await;
    assert_eq!(got.status, 200);
    let seen = got.seen();
    let continued = receive(&mut spans, 3).await;
    let [gateway, a, b] = in_hop_order(&continued);
    assert_eq!(
        hex(&gateway.span.trace_id),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert_eq!(hex(&gateway.span.parent_span_id), "00f067aa0ba902b7");
    // The backend's parent is the last hop's span.
    let traceparent: Vec<&str> = seen.headers["traceparent"].split('-').collect();
    assert_eq!(traceparent[1], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(traceparent[2], hex(&b.span.span_id));

    // Kinds by listener direction, names by route decorator, exporters as configured.
    assert_eq!(gateway.span.kind, SpanKind::Server as i32);
    assert_eq!(a.span.kind, SpanKind::Client as i32);
    assert_eq!(b.span.kind, SpanKind::Server as i32);
    assert_eq!(gateway.span.name, "gateway.default.svc.cluster.local:80/*");
    assert_eq!(a.span.name, "a.default.svc.cluster.local:80/*");
    // The outbound hop tells the inbound one its decorator, which names the inbound
    // span and goes no further.
    assert_eq!(b.span.name, "a.default.svc.cluster.local:80/*");
    assert!(!seen.headers.contains_key("x-envoy-decorator-operation"));
    assert_eq!(
        [gateway.protocol, a.protocol, b.protocol],
        ["grpc", "http", "grpc"]
    );
    assert_eq!(a.tenant.as_deref(), Some("mesh"));

    // Envoy's tags, and the custom ones.
    for hop in [gateway, a, b] {
        assert_eq!(hop.attribute("http.method"), Some("GET"));
        assert_eq!(
            hop.attribute("http.url"),
            Some("http://shop.example.com/cart?item=1")
        );
        assert_eq!(hop.attribute("http.status_code"), Some("200"));
        assert_eq!(hop.attribute("http.protocol"), Some("HTTP/1.1"));
        assert_eq!(hop.attribute("upstream_cluster"), Some("next"));
        assert_eq!(hop.attribute("component"), Some("proxy"));
        assert_eq!(hop.attribute("response_flags"), Some("-"));
        assert_eq!(hop.attribute("user_agent"), Some("curl/8"));
        assert_eq!(hop.attribute("peer.address"), Some("127.0.0.1"));
        assert_eq!(hop.attribute("zone"), Some("zone-a"));
        assert_eq!(hop.attribute("istio.mesh_id"), Some("mesh1"));
        assert_eq!(hop.attribute("istio.canonical_service"), Some("shop"));
        assert!(hop.attribute("node_id").unwrap().starts_with("sidecar~"));
        assert_eq!(hop.attribute("error"), None);
        assert_eq!(hop.span.status, None);
        assert!(hop.span.start_time_unix_nano <= hop.span.end_time_unix_nano);
        assert!(hop.span.start_time_unix_nano > 0);
    }
    // One request id across the hops, the one the backend heard.
    assert_eq!(
        [gateway, a, b].map(|h| h.attribute("guid:x-request-id")),
        [Some(seen.headers["x-request-id"].as_str()); 3]
    );
    // Each hop's span lies within its caller's.
    assert!(gateway.span.start_time_unix_nano <= a.span.start_time_unix_nano);
    assert!(b.span.end_time_unix_nano <= gateway.span.end_time_unix_nano);

    // A request with no context: the gateway starts the trace.
    let seen = send(chain.entry, get("shop.example.com", "/")).await.seen();
    let started = receive(&mut spans, 3).await;
    let [gateway, _, b] = in_hop_order(&started);
    assert!(gateway.span.parent_span_id.is_empty());
    assert_ne!(
        hex(&gateway.span.trace_id),
        "4bf92f3577b34da6a3ce929d0e0e4736"
    );
    assert_eq!(
        seen.headers["traceparent"],
        format!("00-{}-{}-01", hex(&b.span.trace_id), hex(&b.span.span_id))
    );
    assert_eq!(
        gateway.attribute("istio.canonical_service"),
        Some("unknown")
    );
}

#[tokio::test]
async fn a_failed_request_is_an_error_span() {
    let (otel, mut spans) = collector().await;
    // Nothing listens where the last hop sends: it answers 503 itself.
    let closed = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let proxy = proxy(&(hop("b", "INBOUND", Exporter::Grpc, "100", closed, otel) + ADMIN)).await;
    let got = send(proxy.listener_addr("http").await, get("shop", "/")).await;
    assert_eq!(got.status, 503);
    let [span] = receive(&mut spans, 1).await.try_into().unwrap();
    assert_eq!(span.attribute("http.status_code"), Some("503"));
    assert_eq!(span.attribute("response_flags"), Some("UF"));
    assert_eq!(span.attribute("error"), Some("true"));
    assert_eq!(span.span.status.unwrap().code, StatusCode::Error as i32);
    // Counted as Envoy counts: sent when its batch went, by the flush timer (one lone
    // span never fills a batch).
    let stats = send(proxy.admin_addr().unwrap(), get("admin", "/stats"))
        .await
        .body;
    let stat = |name: &str| {
        let prefix = format!("tracing.opentelemetry.{name}: ");
        let line = stats.lines().find_map(|l| l.strip_prefix(prefix.as_str()));
        line.unwrap_or_else(|| panic!("no {name} in\n{stats}"))
            .parse::<u64>()
            .unwrap()
    };
    assert_eq!(stat("spans_sent"), 1);
    assert_eq!(stat("spans_dropped"), 0);
    assert!(stat("timer_flushed") >= 1);
}

#[tokio::test]
async fn unsampled_traces_propagate_and_export_nothing() {
    let backend = backend("backend").await;
    let (otel, mut spans) = collector().await;
    let chain = chain("0", backend, otel, false).await;
    for _ in 0..20 {
        let seen = send(chain.entry, get("shop", "/")).await.seen();
        assert!(seen.headers["traceparent"].ends_with("-00"));
    }
    // A sampled trace after them: its spans arrive behind anything queued before, at
    // every hop, so once they are in, nothing else was exported.
    let mut marked = get("shop", "/");
    marked.headers_mut().insert(
        "traceparent",
        "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01"
            .parse()
            .unwrap(),
    );
    send(chain.entry, marked).await;
    let got = receive(&mut spans, 3).await;
    in_hop_order(&got);
    assert!(
        got.iter()
            .all(|s| hex(&s.span.trace_id) == "0af7651916cd43dd8448eb211c80319c")
    );
    assert!(spans.try_recv().is_err(), "an unsampled trace was exported");
}

#[tokio::test]
async fn half_of_new_traces_are_sampled_and_only_those_exported() {
    let backend = backend("backend").await;
    let (otel, mut spans) = collector().await;
    let chain = chain("50", backend, otel, false).await;
    let n = 200u32;
    let mut sampled = BTreeSet::new();
    for _ in 0..n {
        let seen = send(chain.entry, get("shop", "/")).await.seen();
        let parts: Vec<String> = seen.headers["traceparent"]
            .split('-')
            .map(str::to_owned)
            .collect();
        if parts[3] == "01" {
            sampled.insert(parts[1].clone());
        }
    }
    // Binomial(200, 0.5): within 5 standard deviations of 100.
    let k = sampled.len() as f64;
    let (mean, sd) = (f64::from(n) * 0.5, (f64::from(n) * 0.25).sqrt());
    assert!((k - mean).abs() <= 5.0 * sd, "{k} of {n} sampled");
    // Every sampled trace arrives whole, and no other.
    let got = receive(&mut spans, 3 * sampled.len()).await;
    let mut traces: BTreeMap<String, Vec<Exported>> = BTreeMap::new();
    for span in got {
        traces
            .entry(hex(&span.span.trace_id))
            .or_default()
            .push(span);
    }
    assert_eq!(traces.keys().cloned().collect::<BTreeSet<_>>(), sampled);
    for spans in traces.values() {
        in_hop_order(spans);
    }
}

/// A span's attributes as a map, with the request id (random per request) and the
/// response size (the backend echoes the request's headers, which each proxy adds its
/// own to) masked.
fn attributes(exported: &Exported) -> BTreeMap<String, String> {
    exported
        .span
        .attributes
        .iter()
        .map(|kv| {
            let value = attribute(std::slice::from_ref(kv), &kv.key).unwrap_or("?");
            let masked = ["guid:x-request-id", "response_size"].contains(&kv.key.as_str());
            let value = if masked { "*" } else { value };
            (kv.key.clone(), value.to_owned())
        })
        .collect()
}

#[tokio::test]
async fn spans_are_shaped_as_envoys() {
    let backend = backend("backend").await;
    let (otel, mut spans) = collector().await;
    let yaml = |direction: &str| hop("b", direction, Exporter::Grpc, "100", backend, otel) + ADMIN;
    let Some(envoy) = common::envoy::Envoy::start(&yaml("INBOUND")).await else {
        return;
    };
    let ours = proxy(&yaml("INBOUND")).await;
    let request = || {
        let mut request = get("shop.example.com", "/cart?item=1");
        request.headers_mut().insert(
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
                .parse()
                .unwrap(),
        );
        request
            .headers_mut()
            .insert("user-agent", "curl/8".parse().unwrap());
        request
    };
    send(ours.listener_addr("http").await, request()).await;
    let [mizzen] = receive(&mut spans, 1).await.try_into().unwrap();
    send(envoy.listener_addr("http").await, request()).await;
    let [envoy] = receive(&mut spans, 1).await.try_into().unwrap();
    assert_eq!(mizzen.span.name, envoy.span.name);
    assert_eq!(mizzen.span.kind, envoy.span.kind);
    assert_eq!(mizzen.span.parent_span_id, envoy.span.parent_span_id);
    assert_eq!(mizzen.span.status, envoy.span.status);
    assert_eq!(attributes(&mizzen), attributes(&envoy));
    assert_eq!(mizzen.resource, envoy.resource);
}

/// The request the trace tests send: it continues a sampled W3C trace.
fn traced_request() -> Request<http_body_util::Full<Bytes>> {
    let mut request = get("shop.example.com", "/cart?item=1");
    let headers = request.headers_mut();
    headers.insert(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
            .parse()
            .unwrap(),
    );
    headers.insert("x-canonical", "shop".parse().unwrap());
    headers.insert("user-agent", "curl/8".parse().unwrap());
    request
}

/// The one span of `kind` among `spans`.
fn of_kind(spans: &[Exported], kind: SpanKind) -> &Exported {
    let mut found = spans.iter().filter(|s| s.span.kind == kind as i32);
    let span = found
        .next()
        .unwrap_or_else(|| panic!("no {kind:?} span: {spans:#?}"));
    assert!(found.next().is_none(), "two {kind:?} spans: {spans:#?}");
    span
}

#[tokio::test]
async fn a_gateway_spawning_upstream_spans_is_a_hop_of_its_own() {
    let backend = backend("backend").await;
    let (otel, mut spans) = collector().await;
    let chain = chain("100", backend, otel, true).await;
    let seen = send(chain.entry, traced_request()).await.seen();
    let got = receive(&mut spans, 4).await;
    let (gateway, rest): (Vec<Exported>, Vec<Exported>) = got
        .into_iter()
        .partition(|s| s.service == "gateway.default");
    let (server, client) = (
        of_kind(&gateway, SpanKind::Server),
        of_kind(&gateway, SpanKind::Client),
    );
    let by = |service: &str| rest.iter().find(|s| s.service == service).unwrap();
    let (a, b) = (by("a.default"), by("b.default"));

    // caller → gateway SERVER → gateway CLIENT → a → b → backend, one trace.
    assert_eq!(hex(&server.span.parent_span_id), "00f067aa0ba902b7");
    assert_eq!(client.span.parent_span_id, server.span.span_id);
    assert_eq!(a.span.parent_span_id, client.span.span_id);
    assert_eq!(b.span.parent_span_id, a.span.span_id);
    for span in [server, client, a, b] {
        assert_eq!(hex(&span.span.trace_id), "4bf92f3577b34da6a3ce929d0e0e4736");
    }
    assert!(seen.headers["traceparent"].contains(&hex(&b.span.span_id)));

    // The CLIENT span: Envoy's router span, tagged with the attempt's endpoint and
    // answer, and the custom tags as the upstream request has them.
    assert_eq!(client.span.name, "router next egress");
    assert_eq!(server.span.name, "gateway.default.svc.cluster.local:80/*");
    let endpoint = chain.outbound.to_string();
    assert_eq!(
        client.attribute("upstream_address"),
        Some(endpoint.as_str())
    );
    assert_eq!(client.attribute("peer.address"), Some(endpoint.as_str()));
    assert_eq!(client.attribute("http.status_code"), Some("200"));
    assert_eq!(client.attribute("http.protocol"), Some("HTTP/1.1"));
    assert_eq!(client.attribute("upstream_cluster"), Some("next"));
    assert_eq!(client.attribute("upstream_cluster.name"), Some("next"));
    assert_eq!(client.attribute("response_flags"), Some("-"));
    assert_eq!(client.attribute("component"), Some("proxy"));
    assert_eq!(client.attribute("istio.mesh_id"), Some("mesh1"));
    assert_eq!(client.attribute("istio.canonical_service"), Some("shop"));
    for absent in ["error", "retry.count", "node_id", "http.url"] {
        assert_eq!(client.attribute(absent), None, "{absent}");
    }
    assert_eq!(client.span.status, None);
    // The SERVER span is tagged as before, its peer the client.
    assert_eq!(server.attribute("peer.address"), Some("127.0.0.1"));
    assert_eq!(
        server.attribute("http.url"),
        Some("http://shop.example.com/cart?item=1")
    );
    // Each span lies within its parent's.
    let within = |child: &Exported, parent: &Exported| {
        parent.span.start_time_unix_nano <= child.span.start_time_unix_nano
            && child.span.end_time_unix_nano <= parent.span.end_time_unix_nano
    };
    assert!(within(client, server));
    assert!(within(a, client));
}

/// A backend that answers its first request 503 and the rest as [`backend`] does,
/// telling the test the `traceparent` of each.
async fn flaky() -> (SocketAddr, mpsc::UnboundedReceiver<String>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (heard, traceparents) = mpsc::unbounded_channel();
    let answered = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (heard, answered) = (heard.clone(), answered.clone());
            let service = service_fn(move |req: Request<Incoming>| {
                let traceparent = req.headers()["traceparent"].to_str().unwrap().to_owned();
                let _ = heard.send(traceparent);
                let first = answered.fetch_add(1, std::sync::atomic::Ordering::SeqCst) == 0;
                let mut response = Response::new(http_body_util::Full::new(Bytes::new()));
                if first {
                    *response.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
                }
                async move { Ok::<_, Infallible>(response) }
            });
            tokio::spawn(
                hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(stream), service),
            );
        }
    });
    (addr, traceparents)
}

#[tokio::test]
async fn every_upstream_attempt_is_a_span_of_its_own() {
    let (backend, mut traceparents) = flaky().await;
    let (otel, mut spans) = collector().await;
    let yaml = hop(
        "gateway",
        "UNSPECIFIED",
        Exporter::Grpc,
        "100",
        backend,
        otel,
    );
    let gateway = proxy(&retrying(spawning(yaml))).await;
    let got = send(gateway.listener_addr("http").await, traced_request()).await;
    assert_eq!(got.status, 200);
    let got = receive(&mut spans, 3).await;
    let server = of_kind(&got, SpanKind::Server);
    let mut attempts: Vec<&Exported> = got
        .iter()
        .filter(|s| s.span.kind == SpanKind::Client as i32)
        .collect();
    attempts.sort_by_key(|s| s.span.start_time_unix_nano);
    let [first, retry] = attempts.try_into().unwrap();
    assert!(
        [first, retry]
            .iter()
            .all(|a| a.span.parent_span_id == server.span.span_id)
    );
    // The failed attempt is an error; the retry says it is one.
    assert_eq!(first.attribute("http.status_code"), Some("503"));
    assert_eq!(first.attribute("error"), Some("true"));
    assert_eq!(
        first.span.status.as_ref().unwrap().code,
        StatusCode::Error as i32
    );
    assert_eq!(first.attribute("retry.count"), None);
    assert_eq!(retry.attribute("http.status_code"), Some("200"));
    assert_eq!(retry.attribute("retry.count"), Some("1"));
    assert_eq!(retry.attribute("error"), None);
    assert!(first.span.end_time_unix_nano <= retry.span.start_time_unix_nano);
    // The downstream span has the answer the client got.
    assert_eq!(server.attribute("http.status_code"), Some("200"));
    assert_eq!(server.attribute("error"), None);
    // Each attempt told the upstream its own span.
    for attempt in [first, retry] {
        let traceparent = traceparents.recv().await.unwrap();
        assert_eq!(
            traceparent,
            format!(
                "00-4bf92f3577b34da6a3ce929d0e0e4736-{}-01",
                hex(&attempt.span.span_id)
            )
        );
    }
}

#[tokio::test]
async fn upstream_spans_are_shaped_as_envoys() {
    let backend = backend("backend").await;
    let (otel, mut spans) = collector().await;
    // Outbound: with upstream spans of its own, the hop's span is a SERVER span.
    let yaml = spawning(hop("b", "OUTBOUND", Exporter::Grpc, "100", backend, otel)) + ADMIN;
    let Some(envoy) = common::envoy::Envoy::start(&yaml).await else {
        return;
    };
    let ours = proxy(&yaml).await;
    send(ours.listener_addr("http").await, traced_request()).await;
    let mizzen = receive(&mut spans, 2).await;
    send(envoy.listener_addr("http").await, traced_request()).await;
    let envoy = receive(&mut spans, 2).await;
    for kind in [SpanKind::Server, SpanKind::Client] {
        let (mizzen, envoy) = (of_kind(&mizzen, kind), of_kind(&envoy, kind));
        assert_eq!(mizzen.span.name, envoy.span.name, "{kind:?}");
        assert_eq!(mizzen.span.status, envoy.span.status, "{kind:?}");
        assert_eq!(attributes(mizzen), attributes(envoy), "{kind:?}");
        assert_eq!(mizzen.resource, envoy.resource, "{kind:?}");
    }
    for spans in [&mizzen, &envoy] {
        let server = of_kind(spans, SpanKind::Server);
        let client = of_kind(spans, SpanKind::Client);
        assert_eq!(hex(&server.span.parent_span_id), "00f067aa0ba902b7");
        assert_eq!(client.span.parent_span_id, server.span.span_id);
        assert_eq!(client.span.trace_id, server.span.trace_id);
    }
}

#[tokio::test]
async fn a_failed_upstream_attempt_is_shaped_as_envoys() {
    let (otel, mut spans) = collector().await;
    // Nothing listens where the hop sends: the attempt's connection fails.
    let closed = TcpListener::bind("127.0.0.1:0")
        .await
        .unwrap()
        .local_addr()
        .unwrap();
    let yaml = spawning(hop("b", "INBOUND", Exporter::Grpc, "100", closed, otel)) + ADMIN;
    let Some(envoy) = common::envoy::Envoy::start(&yaml).await else {
        return;
    };
    let ours = proxy(&yaml).await;
    send(ours.listener_addr("http").await, traced_request()).await;
    let mizzen = receive(&mut spans, 2).await;
    send(envoy.listener_addr("http").await, traced_request()).await;
    let envoy = receive(&mut spans, 2).await;
    let (mizzen, envoy) = (
        of_kind(&mizzen, SpanKind::Client),
        of_kind(&envoy, SpanKind::Client),
    );
    assert_eq!(
        mizzen.attribute("error.reason"),
        Some("remote connection failure")
    );
    assert_eq!(mizzen.attribute("response_flags"), Some("UF"));
    // An error, yet no status: Envoy's status follows `http.status_code`, here 0.
    assert_eq!(mizzen.span.status, None);
    assert_eq!(mizzen.span.status, envoy.span.status);
    assert_eq!(attributes(mizzen), attributes(envoy));
}
