use std::sync::Arc;

use mizzen_api::mesh::MeshConfig as UserMesh;

use super::*;
use crate::model::testing::snapshot;
use crate::model::{MeshConfig, NodeType};

const PROVIDERS: &str = r#"
extensionProviders:
- name: otel
  opentelemetry: {service: otel.observability.svc.cluster.local, port: 4317}
- name: zipkin
  zipkin: {service: zipkin.istio-system.svc.cluster.local, port: 9411}
- name: logs
  envoyFileAccessLog:
    path: /tmp/logs
    logFormat: {text: "%RESPONSE_CODE%"}
- name: als
  envoyOtelAls: {service: otel.observability.svc.cluster.local, port: 4317}
"#;

fn telemetry(ns: &str, name: &str, spec: &str) -> String {
    format!(
        "apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {{name: {name}, namespace: {ns}}}\nspec:\n{spec}\n---\n"
    )
}

fn push(mesh_yaml: &str, objects: &str) -> PushContext {
    let mesh = UserMesh::from_yaml(&format!("{PROVIDERS}{mesh_yaml}")).unwrap();
    PushContext::new(
        Arc::new(snapshot(objects)),
        Arc::new(MeshConfig::from(mesh)),
    )
}

fn reviews() -> Proxy {
    let mut p =
        Proxy::from_node_id("sidecar~10.0.0.1~reviews-1.shop~shop.svc.cluster.local").unwrap();
    p.labels.insert("app".into(), "reviews".into());
    p
}

fn log_names(push: &PushContext, side: TrafficSide) -> Vec<(String, Option<String>)> {
    push.telemetry()
        .access_logs(&reviews(), side)
        .into_iter()
        .map(|l| {
            let name = match l.sink {
                LogSink::MeshFormat { path } => format!("mesh:{path}"),
                LogSink::File(f) => format!("file:{}", f.path),
            };
            (name, l.filter)
        })
        .collect()
}

#[test]
fn without_telemetry_the_mesh_access_log_file_decides() {
    assert_eq!(log_names(&push("", ""), TrafficSide::Client), []);
    let p = push("accessLogFile: /dev/stdout\n", "");
    assert_eq!(
        log_names(&p, TrafficSide::Server),
        [("mesh:/dev/stdout".to_owned(), None)]
    );
}

#[test]
fn default_access_log_providers_apply_without_telemetry() {
    let p = push("defaultProviders:\n  accessLogging: [envoy, logs]\n", "");
    assert_eq!(
        log_names(&p, TrafficSide::Client),
        [
            ("mesh:/dev/stdout".to_owned(), None),
            ("file:/tmp/logs".to_owned(), None)
        ]
    );
}

#[test]
fn access_logging_scopes_override_by_provider() {
    let objects = [
        telemetry(
            "istio-system",
            "mesh",
            "  accessLogging:\n  - providers: [{name: envoy}]\n",
        ),
        telemetry(
            "shop",
            "ns",
            "  accessLogging:\n  - providers: [{name: logs}]\n    filter: {expression: 'response.code >= 400'}\n",
        ),
    ]
    .concat();
    // The namespace names its own provider: the mesh's is out of scope for it.
    assert_eq!(
        log_names(&push("", &objects), TrafficSide::Client),
        [(
            "file:/tmp/logs".to_owned(),
            Some("response.code >= 400".to_owned())
        )]
    );
    // A workload entry without providers disables what its parent named, for servers.
    let off = format!(
        "{objects}{}",
        telemetry(
            "shop",
            "reviews",
            "  selector: {matchLabels: {app: reviews}}\n  accessLogging:\n  - disabled: true\n    match: {mode: SERVER}\n",
        )
    );
    let p = push("", &off);
    assert_eq!(log_names(&p, TrafficSide::Server), []);
    assert_eq!(log_names(&p, TrafficSide::Client).len(), 1);
    // Other namespaces only see the mesh-wide one.
    let mut other = reviews();
    other.namespace = "web".into();
    assert_eq!(
        p.telemetry().access_logs(&other, TrafficSide::Client).len(),
        1
    );
}

#[test]
fn non_file_log_providers_are_left_out() {
    let objects = telemetry(
        "istio-system",
        "mesh",
        "  accessLogging:\n  - providers: [{name: als}, {name: missing}, {name: envoy}]\n",
    );
    assert_eq!(
        log_names(&push("", &objects), TrafficSide::Client),
        [("mesh:/dev/stdout".to_owned(), None)]
    );
}

#[test]
fn mesh_tracing_without_telemetry_reports_nothing() {
    let p = push(
        "defaultConfig:\n  tracing:\n    sampling: 10\n    customTags:\n      team: {literal: {value: a}}\n",
        "",
    );
    let t = p
        .telemetry()
        .tracing(&reviews(), TrafficSide::Client)
        .unwrap();
    assert_eq!(t.provider, None);
    assert_eq!(t.sampling, 10.0);
    assert!(t.istio_tags);
    assert_eq!(t.custom_tags.len(), 1);
    let off = push("enableTracing: false\n", "");
    assert_eq!(
        off.telemetry().tracing(&reviews(), TrafficSide::Client),
        None
    );
}

#[test]
fn tracing_merges_scopes_and_modes() {
    let objects = [
        telemetry(
            "istio-system",
            "mesh",
            "  tracing:\n  - providers: [{name: otel}]\n    randomSamplingPercentage: 50\n",
        ),
        telemetry(
            "shop",
            "reviews",
            "  selector: {matchLabels: {app: reviews}}\n  tracing:\n  - match: {mode: SERVER}\n    randomSamplingPercentage: 5\n    customTags:\n      env: {environment: {name: ENV}}\n  - match: {mode: CLIENT}\n    disableSpanReporting: true\n",
        ),
    ]
    .concat();
    let p = push("", &objects);
    let server = p
        .telemetry()
        .tracing(&reviews(), TrafficSide::Server)
        .unwrap();
    assert_eq!(server.provider.unwrap().name, "otel");
    assert_eq!(server.sampling, 5.0);
    assert_eq!(server.custom_tags.keys().collect::<Vec<_>>(), ["env"]);
    assert_eq!(p.telemetry().tracing(&reviews(), TrafficSide::Client), None);
    let mut other = reviews();
    other.labels.clear();
    let client = p.telemetry().tracing(&other, TrafficSide::Client).unwrap();
    assert_eq!(client.sampling, 50.0);
}

#[test]
fn default_tracing_provider_and_missing_providers() {
    let p = push("defaultProviders:\n  tracing: [zipkin]\n", "");
    let t = p
        .telemetry()
        .tracing(&reviews(), TrafficSide::Client)
        .unwrap();
    assert_eq!(t.provider.unwrap().name, "zipkin");
    assert_eq!(t.sampling, 1.0);
    // A provider that does not trace, or does not exist, turns tracing off.
    for name in ["logs", "nope"] {
        let objects = telemetry(
            "shop",
            "ns",
            &format!("  tracing:\n  - providers: [{{name: {name}}}]\n"),
        );
        let p = push("", &objects);
        assert_eq!(p.telemetry().tracing(&reviews(), TrafficSide::Client), None);
    }
}

#[test]
fn metrics_default_to_prometheus_and_merge_overrides() {
    let p = push("", "");
    let m = p.telemetry().metrics(&reviews(), TrafficSide::Client);
    assert_eq!(m.providers.len(), 1);
    assert_eq!(m.providers[0].provider.name, "prometheus");
    assert!(m.providers[0].overrides.is_empty());

    let objects = [
        telemetry(
            "istio-system",
            "mesh",
            "  metrics:\n  - providers: [{name: prometheus}]\n    overrides:\n    - match: {metric: REQUEST_COUNT}\n      tagOverrides:\n        request_host: {value: request.host}\n",
        ),
        telemetry(
            "shop",
            "ns",
            "  metrics:\n  - overrides:\n    - match: {metric: REQUEST_COUNT, mode: SERVER}\n      disabled: true\n      tagOverrides:\n        request_host: {operation: REMOVE}\n",
        ),
    ]
    .concat();
    let p = push("", &objects);
    let client = p.telemetry().metrics(&reviews(), TrafficSide::Client);
    assert_eq!(
        client.providers[0].overrides,
        [MetricOverride {
            metric: "REQUEST_COUNT".into(),
            disabled: false,
            tags: vec![TagOverride {
                name: "request_host".into(),
                value: Some("request.host".into())
            }],
        }]
    );
    let server = p.telemetry().metrics(&reviews(), TrafficSide::Server);
    assert_eq!(
        server.providers[0].overrides,
        [MetricOverride {
            metric: "REQUEST_COUNT".into(),
            disabled: true,
            tags: vec![TagOverride {
                name: "request_host".into(),
                value: None
            }],
        }]
    );
}

#[test]
fn disabling_all_metrics_drops_the_provider_for_that_side() {
    let objects = telemetry(
        "shop",
        "ns",
        "  metrics:\n  - overrides:\n    - match: {mode: CLIENT}\n      disabled: true\n",
    );
    let p = push("", &objects);
    assert!(
        p.telemetry()
            .metrics(&reviews(), TrafficSide::Client)
            .providers
            .is_empty()
    );
    assert_eq!(
        p.telemetry()
            .metrics(&reviews(), TrafficSide::Server)
            .providers
            .len(),
        1
    );
}

#[test]
fn gateway_target_refs_select_the_gateway() {
    let objects = telemetry(
        "shop",
        "gw",
        "  targetRefs:\n  - {group: gateway.networking.k8s.io, kind: Gateway, name: edge}\n  accessLogging:\n  - providers: [{name: logs}]\n",
    );
    let p = push("", &objects);
    let mut gw = Proxy::from_node_id("router~10.0.0.2~edge-1.shop~shop.svc.cluster.local").unwrap();
    gw.node_type = NodeType::Router;
    assert!(
        p.telemetry()
            .access_logs(&gw, TrafficSide::Client)
            .is_empty()
    );
    gw.labels.insert(
        "gateway.networking.k8s.io/gateway-name".into(),
        "edge".into(),
    );
    assert_eq!(p.telemetry().access_logs(&gw, TrafficSide::Client).len(), 1);
    assert!(
        p.telemetry()
            .access_logs(&reviews(), TrafficSide::Client)
            .is_empty()
    );
}
