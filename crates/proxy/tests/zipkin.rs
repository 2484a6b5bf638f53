//! Spans sent to a Zipkin collector (`envoy.tracers.zipkin`) as Envoy sends them: Zipkin
//! v2 JSON posted to the collector cluster, B3 context read and written, the SERVER span
//! sharing its caller's span unless `shared_span_context` is off (as Istio sets it).
//! Held to the real Envoy where `MIZZEN_ENVOY` names it.

mod common;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;
use common::*;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::TcpListener;
use tokio::sync::mpsc;

/// How long a test waits for spans: past the reporters' 5 s flush interval.
const EXPORT_DEADLINE: Duration = Duration::from_secs(20);
/// The caller's B3 context on every traced request.
const TRACE_ID: &str = "463ac35c9f6413ad48485a3953bb6124";
const CALLER_SPAN: &str = "a2fb4a1d1a96d312";
const CALLER_PARENT: &str = "0020000000000001";

/// One report as the collector received it.
#[derive(Debug)]
struct Report {
    path: String,
    host: String,
    content_type: String,
}

/// A Zipkin collector on 127.0.0.1 that accepts (202) every report and sends each span
/// on to the test, with the report it came in.
async fn collector() -> (SocketAddr, mpsc::UnboundedReceiver<(Value, Report)>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (spans, received) = mpsc::unbounded_channel();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let spans = spans.clone();
            let service = service_fn(move |req: Request<Incoming>| {
                let spans = spans.clone();
                async move {
                    let text = |name: &str| {
                        let value = req.headers().get(name).map(|v| v.to_str().unwrap());
                        value.unwrap_or_default().to_owned()
                    };
                    let (path, host) = (req.uri().path().to_owned(), text("host"));
                    let content_type = text("content-type");
                    let body = req.into_body().collect().await.unwrap().to_bytes();
                    let list: Vec<Value> = serde_json::from_slice(&body).unwrap();
                    for span in list {
                        let report = Report {
                            path: path.clone(),
                            host: host.clone(),
                            content_type: content_type.clone(),
                        };
                        let _ = spans.send((span, report));
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
    (addr, received)
}

/// Waits for `n` spans.
async fn receive(
    spans: &mut mpsc::UnboundedReceiver<(Value, Report)>,
    n: usize,
) -> Vec<(Value, Report)> {
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

/// One proxy reporting to Zipkin: its listener's direction, whether it shares span
/// context (`None`: Envoy's default), and where it routes.
fn hop(
    name: &str,
    direction: &str,
    shared: Option<bool>,
    next: SocketAddr,
    collector: SocketAddr,
) -> String {
    let shared = shared.map_or(String::new(), |s| format!("shared_span_context: {s}"));
    let provider = format!(
        "name: envoy.tracers.zipkin\ntyped_config:\n  \"@type\": type.googleapis.com/envoy.config.trace.v3.ZipkinConfig\n  collector_cluster: zipkin\n  collector_endpoint: /api/v2/spans\n  collector_endpoint_version: HTTP_JSON\n  collector_hostname: zipkin.istio-system.svc.cluster.local\n  trace_id_128bit: true\n  {shared}"
    );
    TracedHop {
        name,
        ip: "10.1.2.3",
        direction,
        sampling: "100",
        tags: "",
        provider: &provider,
        next,
        collector: ("zipkin", collector),
    }
    .yaml()
        + ADMIN
}

/// A request that continues the caller's B3 trace (multi headers).
fn traced() -> Request<Full<Bytes>> {
    let mut request = get("shop.example.com", "/cart?item=1");
    let headers = request.headers_mut();
    headers.insert("x-b3-traceid", TRACE_ID.parse().unwrap());
    headers.insert("x-b3-spanid", CALLER_SPAN.parse().unwrap());
    headers.insert("x-b3-parentspanid", CALLER_PARENT.parse().unwrap());
    headers.insert("x-b3-sampled", "1".parse().unwrap());
    headers.insert("user-agent", "curl/8".parse().unwrap());
    request
}

/// A span's shape, without what differs per run or per proxy: times, the request id,
/// the response size (the backend echoes headers each proxy adds its own to), and span
/// ids other than the caller's (whether they are new is kept).
fn shape(span: &Value) -> Value {
    let mut span = span.clone();
    let fields = span.as_object_mut().unwrap();
    for timing in ["timestamp", "duration"] {
        assert!(
            fields.remove(timing).unwrap().as_u64().is_some(),
            "{timing}"
        );
    }
    let annotations = fields["annotations"].as_array_mut().unwrap();
    for annotation in annotations {
        assert!(
            annotation
                .as_object_mut()
                .unwrap()
                .remove("timestamp")
                .is_some()
        );
    }
    for id in ["id", "parentId"] {
        let known = [CALLER_SPAN, CALLER_PARENT].map(Value::from);
        if fields.get(id).is_some_and(|v| !known.contains(v)) {
            fields.insert(id.into(), "(new)".into());
        }
    }
    let tags = fields["tags"].as_object_mut().unwrap();
    for masked in ["guid:x-request-id", "response_size"] {
        tags.insert(masked.into(), "*".into());
    }
    // The proxy's address is the machine's to Envoy, the node id's to Mizzen.
    fields["localEndpoint"]
        .as_object_mut()
        .unwrap()
        .remove("ipv4");
    span
}

#[tokio::test]
async fn zipkin_spans_are_shaped_as_envoys() {
    let backend = backend("backend").await;
    let (zipkin, mut spans) = collector().await;
    // Envoy's default (a shared SERVER span) and Istio's (a child span of its own).
    for (direction, shared) in [
        ("INBOUND", None),
        ("INBOUND", Some(false)),
        ("OUTBOUND", Some(false)),
    ] {
        let yaml = hop("b", direction, shared, backend, zipkin);
        let Some(envoy) = common::envoy::Envoy::start(&yaml).await else {
            return;
        };
        let ours = proxy(&yaml).await;
        let heard_by_ours = send(ours.listener_addr("http").await, traced())
            .await
            .seen();
        let [(mizzen, report)] = receive(&mut spans, 1).await.try_into().unwrap();
        let heard_by_envoy = send(envoy.listener_addr("http").await, traced())
            .await
            .seen();
        let [(envoy, _)] = receive(&mut spans, 1).await.try_into().unwrap();
        let case = format!("{direction} shared={shared:?}");
        assert_eq!(shape(&mizzen), shape(&envoy), "{case}");
        assert_eq!(report.path, "/api/v2/spans");
        assert_eq!(report.host, "zipkin.istio-system.svc.cluster.local");
        assert_eq!(report.content_type, "application/json");
        // The upstream hears this hop's span, as Envoy tells it.
        let b3 = |seen: &Seen| {
            let header = |name: &str| seen.headers.get(name).cloned();
            [
                header("x-b3-traceid"),
                header("x-b3-spanid").map(|id| {
                    if id == CALLER_SPAN {
                        id
                    } else {
                        "(new)".into()
                    }
                }),
                header("x-b3-parentspanid"),
                header("x-b3-sampled"),
            ]
        };
        assert_eq!(b3(&heard_by_ours), b3(&heard_by_envoy), "{case}");
        assert_eq!(
            heard_by_ours.headers["x-b3-spanid"],
            mizzen["id"].as_str().unwrap(),
            "{case}"
        );
        let expected_parent = match shared {
            None => CALLER_PARENT,
            Some(_) => CALLER_SPAN,
        };
        assert_eq!(mizzen["parentId"], expected_parent, "{case}");
    }
}

#[tokio::test]
async fn zipkin_spans_link_across_three_hops() {
    let backend = backend("backend").await;
    let (zipkin, mut spans) = collector().await;
    // As Istio configures each proxy: no shared span context.
    let b = proxy(&hop("b", "INBOUND", Some(false), backend, zipkin)).await;
    let a = proxy(&hop(
        "a",
        "OUTBOUND",
        Some(false),
        b.listener_addr("http").await,
        zipkin,
    ))
    .await;
    let gateway = hop(
        "gateway",
        "UNSPECIFIED",
        Some(false),
        a.listener_addr("http").await,
        zipkin,
    );
    let gateway = proxy(&gateway).await;
    // No context: the gateway starts a B3 trace, 128 bits, its root span id the low half.
    let seen = send(gateway.listener_addr("http").await, get("shop", "/"))
        .await
        .seen();
    let got = receive(&mut spans, 3).await;
    let by = |service: &str| {
        let found = got
            .iter()
            .find(|(s, _)| s["localEndpoint"]["serviceName"] == service);
        &found
            .unwrap_or_else(|| panic!("no span from {service}: {got:#?}"))
            .0
    };
    let (gateway_span, a_span, b_span) = (by("gateway.default"), by("a.default"), by("b.default"));
    let trace = gateway_span["traceId"].as_str().unwrap();
    assert_eq!(trace.len(), 32);
    assert_eq!(gateway_span["id"].as_str().unwrap(), &trace[16..]);
    assert!(gateway_span.get("parentId").is_none());
    assert_eq!(a_span["parentId"], gateway_span["id"]);
    assert_eq!(b_span["parentId"], a_span["id"]);
    for span in [gateway_span, a_span, b_span] {
        assert_eq!(span["traceId"], trace);
        assert!(span.get("shared").is_none());
        assert_eq!(span["tags"]["istio.mesh_id"], "mesh1");
        assert_eq!(span["localEndpoint"]["ipv4"], "10.1.2.3");
    }
    let kinds = [gateway_span, a_span, b_span].map(|s| s["kind"].as_str().unwrap().to_owned());
    assert_eq!(kinds, ["SERVER", "CLIENT", "SERVER"]);
    // The backend's parent is the last hop's span; no W3C header was made up.
    assert_eq!(seen.headers["x-b3-traceid"], trace);
    assert_eq!(seen.headers["x-b3-spanid"], b_span["id"].as_str().unwrap());
    assert!(!seen.headers.contains_key("traceparent"));

    // Counted as Envoy counts: a report is sent once the collector accepted it, which
    // the proxy learns just after the collector has the spans.
    let admin = gateway.admin_addr().unwrap();
    let stat = |stats: &str, name: &str| -> Option<u64> {
        let prefix = format!("tracing.zipkin.{name}: ");
        stats
            .lines()
            .find_map(|l| l.strip_prefix(prefix.as_str()))?
            .parse()
            .ok()
    };
    let stats = tokio::time::timeout(EXPORT_DEADLINE, async {
        loop {
            let stats = send(admin, get("admin", "/stats")).await.body;
            if stat(&stats, "reports_sent") == Some(1) {
                return stats;
            }
        }
    })
    .await
    .expect("the report is counted sent");
    assert_eq!(stat(&stats, "spans_sent"), Some(1));
    assert_eq!(stat(&stats, "reports_failed"), Some(0));
    assert_eq!(stat(&stats, "reports_dropped"), Some(0));
}

/// The span of `kind` among `spans`.
fn of_kind<'a>(spans: &'a [(Value, Report)], kind: &str) -> &'a Value {
    let mut found = spans.iter().filter(|(s, _)| s["kind"] == kind);
    let (span, _) = found
        .next()
        .unwrap_or_else(|| panic!("no {kind} span: {spans:#?}"));
    assert!(found.next().is_none(), "two {kind} spans: {spans:#?}");
    span
}

#[tokio::test]
async fn zipkin_upstream_spans_are_shaped_as_envoys() {
    let backend = backend("backend").await;
    let (zipkin, mut spans) = collector().await;
    // A gateway as istiod configures it: upstream spans of its own; shared context on.
    let yaml = hop("gateway", "OUTBOUND", None, backend, zipkin).replace(
        "            random_sampling:",
        "            spawn_upstream_span: true\n            random_sampling:",
    );
    let Some(envoy) = common::envoy::Envoy::start(&yaml).await else {
        return;
    };
    let ours = proxy(&yaml).await;
    let heard = send(ours.listener_addr("http").await, traced())
        .await
        .seen();
    let mizzen = receive(&mut spans, 2).await;
    send(envoy.listener_addr("http").await, traced()).await;
    let envoy = receive(&mut spans, 2).await;
    for kind in ["SERVER", "CLIENT"] {
        let (ours, theirs) = (of_kind(&mizzen, kind), of_kind(&envoy, kind));
        assert_eq!(shape(ours), shape(theirs), "{kind}");
    }
    // caller → SERVER (sharing the caller's span) → CLIENT → backend.
    let (server, client) = (of_kind(&mizzen, "SERVER"), of_kind(&mizzen, "CLIENT"));
    assert_eq!(server["id"], CALLER_SPAN);
    assert_eq!(client["parentId"], CALLER_SPAN);
    assert_eq!(heard.headers["x-b3-spanid"], client["id"].as_str().unwrap());
    assert_eq!(heard.headers["x-b3-parentspanid"], CALLER_SPAN);
}

#[tokio::test]
async fn zipkin_with_w3c_propagation_continues_a_traceparent_as_envoy_does() {
    let backend = backend("backend").await;
    let (zipkin, mut spans) = collector().await;
    let yaml = hop("b", "OUTBOUND", Some(false), backend, zipkin).replace(
        "trace_id_128bit: true",
        "trace_id_128bit: true\n                trace_context_option: USE_B3_WITH_W3C_PROPAGATION",
    );
    let Some(envoy) = common::envoy::Envoy::start(&yaml).await else {
        return;
    };
    let ours = proxy(&yaml).await;
    let request = || {
        let mut request = get("shop.example.com", "/cart?item=1");
        let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
        let headers = request.headers_mut();
        headers.insert("traceparent", traceparent.parse().unwrap());
        headers.insert("tracestate", "congo=t61".parse().unwrap());
        request
    };
    let heard = send(ours.listener_addr("http").await, request())
        .await
        .seen();
    let [(mizzen, _)] = receive(&mut spans, 1).await.try_into().unwrap();
    let heard_by_envoy = send(envoy.listener_addr("http").await, request())
        .await
        .seen();
    let [(envoy, _)] = receive(&mut spans, 1).await.try_into().unwrap();
    assert_eq!(shape(&mizzen), shape(&envoy));
    // The W3C caller's span is the parent; the upstream hears this span both ways.
    assert_eq!(mizzen["traceId"], "4bf92f3577b34da6a3ce929d0e0e4736");
    assert_eq!(mizzen["parentId"], "00f067aa0ba902b7");
    let id = mizzen["id"].as_str().unwrap();
    assert_eq!(
        heard.headers["traceparent"],
        format!("00-4bf92f3577b34da6a3ce929d0e0e4736-{id}-01")
    );
    assert_eq!(heard.headers["x-b3-spanid"], id);
    let propagated = |seen: &Seen| {
        let keys = [
            "x-b3-traceid",
            "x-b3-parentspanid",
            "x-b3-sampled",
            "tracestate",
        ];
        keys.map(|k| seen.headers.get(k).cloned())
    };
    assert_eq!(propagated(&heard), propagated(&heard_by_envoy));
}
