//! The emitted shapes, against Istio's config dump golden where it shows them.

use std::sync::Arc;

use mizzen_api::mesh::MeshConfig as UserMesh;
use mizzen_api::testdata::istio_data;
use mizzen_api::types::Protocol;
use mizzen_xds::json::to_json;
use mizzen_xds::pb::envoy::config::listener::v3::{Filter, Listener, filter};
use serde_json::{Value, json};

use super::*;
use crate::model::{Hostname, MeshConfig};
use crate::translate::listener::{inbound_side, outbound_side};
use crate::translate::route::tests::{bookinfo_registry, productpage_proxy, push_of, service};

const OTEL: &str = "extensionProviders:\n- name: otel\n  opentelemetry: {service: otel-collector.observability.svc.cluster.local, port: 4317}\n- name: otel-http\n  opentelemetry:\n    service: observability/otel-collector.observability.svc.cluster.local\n    port: 4318\n    maxTagLength: 64\n    http:\n      path: /v1/traces\n      timeout: 2s\n      headers: [{name: x-tenant, value: blue}]\n";

fn push(mesh: &str, objects: &str) -> PushContext {
    let mut registry = bookinfo_registry();
    let mut otel = service(
        "otel-collector",
        "10.0.0.20",
        &[("grpc", 4317, Some(Protocol::Grpc))],
    );
    otel.hostname = Hostname::new("otel-collector.observability.svc.cluster.local");
    otel.namespace = "observability".into();
    registry.insert_service(otel);
    let mut push = push_of(registry, objects);
    push.mesh = Arc::new(MeshConfig::from(UserMesh::from_yaml(mesh).unwrap()));
    push
}

fn managers(listeners: &[Listener]) -> Vec<HttpConnectionManager> {
    filters(listeners, HTTP_CONNECTION_MANAGER)
        .map(|f| HttpConnectionManager::decode(typed(f)).unwrap())
        .collect()
}

fn filters<'a>(listeners: &'a [Listener], name: &'a str) -> impl Iterator<Item = &'a Filter> {
    listeners
        .iter()
        .flat_map(|l| &l.filter_chains)
        .flat_map(|c| &c.filters)
        .filter(move |f| f.name == name)
}

fn typed(f: &Filter) -> &[u8] {
    match &f.config_type {
        Some(filter::ConfigType::TypedConfig(any)) => &any.value,
        other => panic!("untyped {other:?}"),
    }
}

/// The first outbound connection manager's `field`, as Envoy's JSON.
fn outbound_json(push: &PushContext, field: &str) -> Value {
    let out = outbound_side(push, &productpage_proxy()).listeners;
    let hcm = managers(&out).remove(0);
    to_json(&hcm).unwrap()[field].clone()
}

/// The config dump golden's first connection manager's `field`.
fn golden(field: &str) -> Option<Value> {
    let text = std::fs::read_to_string(
        istio_data()?.join("istioctl/writer/compare/testdata/configdump.json"),
    )
    .ok()?;
    let dump: Value = serde_json::from_str(&text).unwrap();
    let hcm = &dump["configs"][1]["dynamic_listeners"][1]["active_state"]["listener"]["filter_chains"]
        [0]["filters"][0]["typed_config"];
    Some(hcm[field].clone())
}

#[test]
fn without_telemetry_or_access_log_file_nothing_is_logged() {
    let p = push("", "");
    let out = outbound_side(&p, &productpage_proxy()).listeners;
    assert!(managers(&out).iter().all(|h| h.access_log.is_empty()));
}

#[test]
fn mesh_access_log_file_is_istios_file_logger() {
    let p = push("accessLogFile: /dev/stdout\n", "");
    let got = outbound_json(&p, "access_log");
    assert_eq!(
        got,
        json!([{
            "name": "envoy.access_loggers.file",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog",
                "path": "/dev/stdout",
                "log_format": {"text_format_source": {"inline_string": ISTIO_TEXT_FORMAT}},
            },
        }])
    );
    // The golden predates `%UPSTREAM_CLUSTER_RAW%` in Istio's default format.
    if let Some(mut want) = golden("access_log") {
        let format =
            &mut want[0]["typed_config"]["log_format"]["text_format_source"]["inline_string"];
        *format = Value::String(
            format
                .as_str()
                .unwrap()
                .replace("%UPSTREAM_CLUSTER%", "%UPSTREAM_CLUSTER_RAW%"),
        );
        assert_eq!(got, want);
    }
    // TCP proxies log too, on every listener.
    let out = outbound_side(&p, &productpage_proxy()).listeners;
    let tcp: Vec<TcpProxy> = filters(&out, TCP_PROXY)
        .map(|f| TcpProxy::decode(typed(f)).unwrap())
        .collect();
    assert!(!tcp.is_empty() && tcp.iter().all(|t| t.access_log.len() == 1));
    let inbound = inbound_side(&p, &productpage_proxy());
    assert!(managers(&inbound).iter().all(|h| h.access_log.len() == 1));
}

#[test]
fn json_encoding_uses_istios_labels_or_the_mesh_format() {
    let p = push("accessLogFile: /tmp/a.log\naccessLogEncoding: JSON\n", "");
    let log = &outbound_json(&p, "access_log")[0]["typed_config"];
    assert_eq!(log["path"], "/tmp/a.log");
    let labels = log["log_format"]["json_format"].as_object().unwrap();
    assert_eq!(labels.len(), 24);
    assert_eq!(labels["upstream_cluster"], "%UPSTREAM_CLUSTER_RAW%");
    let p = push(
        "accessLogFile: /tmp/a.log\naccessLogEncoding: JSON\naccessLogFormat: '{\"code\": \"%RESPONSE_CODE%\"}'\n",
        "",
    );
    assert_eq!(
        outbound_json(&p, "access_log")[0]["typed_config"]["log_format"]["json_format"],
        json!({"code": "%RESPONSE_CODE%"})
    );
}

#[test]
fn telemetry_filter_is_envoys_cel_extension_filter() {
    let telemetry = "apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: mesh, namespace: istio-system}\nspec:\n  accessLogging:\n  - providers: [{name: envoy}]\n    filter: {expression: 'response.code >= 400'}\n";
    let p = push("", telemetry);
    let log = &outbound_json(&p, "access_log")[0];
    assert_eq!(
        log["filter"],
        json!({"extension_filter": {
            "name": "envoy.access_loggers.extension_filters.cel",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.extensions.access_loggers.filters.cel.v3.ExpressionFilter",
                "expression": "response.code >= 400",
            },
        }})
    );
    // The built-in `envoy` provider: stdout in the mesh's format.
    assert_eq!(log["typed_config"]["path"], "/dev/stdout");
}

#[test]
fn file_provider_formats() {
    let mesh = "extensionProviders:\n- name: text\n  envoyFileAccessLog: {path: /tmp/t.log, logFormat: {text: '%RESPONSE_CODE%'}}\n- name: labels\n  envoyFileAccessLog: {logFormat: {labels: {code: '%RESPONSE_CODE%', n: 1}}}\ndefaultProviders:\n  accessLogging: [text, labels]\n";
    let logs = outbound_json(&push(mesh, ""), "access_log");
    assert_eq!(logs[0]["typed_config"]["path"], "/dev/stdout");
    assert_eq!(
        logs[0]["typed_config"]["log_format"]["json_format"],
        json!({"code": "%RESPONSE_CODE%", "n": 1})
    );
    assert_eq!(
        logs[1]["typed_config"]["log_format"],
        json!({"text_format_source": {"inline_string": "%RESPONSE_CODE%\n"}})
    );
}

#[test]
fn mesh_tracing_is_istios_propagation_only_shape() {
    let p = push("", "");
    // The golden's waypoint: no revision label, so `latest`.
    let mut proxy = productpage_proxy();
    proxy.labels.remove("version");
    proxy.labels.insert(
        "service.istio.io/canonical-name".into(),
        "namespace-istio-waypoint".into(),
    );
    proxy.cluster_id = "Kubernetes".into();
    let out = outbound_side(&p, &proxy).listeners;
    let got = to_json(&managers(&out).remove(0)).unwrap()["tracing"].clone();
    assert_eq!(got["random_sampling"], json!({"value": 1}));
    assert!(got.get("provider").is_none());
    if let Some(want) = golden("tracing") {
        assert_eq!(got, want);
    }
    let off = push("enableTracing: false\n", "");
    let out = outbound_side(&off, &proxy).listeners;
    assert!(managers(&out).iter().all(|h| h.tracing.is_none()));
}

#[test]
fn opentelemetry_over_grpc_to_the_collectors_cluster() {
    let telemetry = "apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: mesh, namespace: istio-system}\nspec:\n  tracing:\n  - providers: [{name: otel}]\n    randomSamplingPercentage: 10\n    customTags:\n      team: {literal: {value: blue}}\n      user: {header: {name: x-user, defaultValue: none}}\n      pod: {environment: {name: POD_NAME}}\n";
    let p = push(OTEL, telemetry);
    let tracing = outbound_json(&p, "tracing");
    assert_eq!(
        tracing["provider"],
        json!({
            "name": "envoy.tracers.opentelemetry",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.config.trace.v3.OpenTelemetryConfig",
                "grpc_service": {"envoy_grpc": {
                    "cluster_name": "outbound|4317||otel-collector.observability.svc.cluster.local",
                    "authority": "otel-collector.observability.svc.cluster.local",
                }},
                "service_name": "productpage.default",
            },
        })
    );
    assert_eq!(tracing["random_sampling"], json!({"value": 10}));
    assert_eq!(tracing["client_sampling"], json!({"value": 100}));
    let tags: Vec<&str> = tracing["custom_tags"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["tag"].as_str().unwrap())
        .collect();
    assert!(tags.windows(2).all(|w| w[0] <= w[1]), "{tags:?}");
    assert!(tags.contains(&"istio.canonical_service") && tags.contains(&"istio.mesh_id"));
    let tag = |name: &str| {
        tracing["custom_tags"]
            .as_array()
            .unwrap()
            .iter()
            .find(|t| t["tag"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(tag("team")["literal"], json!({"value": "blue"}));
    assert_eq!(
        tag("user")["request_header"],
        json!({"name": "x-user", "default_value": "none"})
    );
    assert_eq!(tag("pod")["environment"], json!({"name": "POD_NAME"}));
    assert_eq!(
        tag("istio.canonical_revision")["literal"],
        json!({"value": "v1"})
    );
    // Sidecars do not spawn upstream spans.
    assert!(tracing.get("spawn_upstream_span").is_none());
}

#[test]
fn opentelemetry_over_http_and_default_sampling() {
    let p = push(
        &format!(
            "{OTEL}defaultProviders:\n  tracing: [otel-http]\ndefaultConfig:\n  tracing: {{sampling: 30}}\n"
        ),
        "",
    );
    let tracing = outbound_json(&p, "tracing");
    assert_eq!(
        tracing["provider"]["typed_config"]["http_service"],
        json!({
            "http_uri": {
                "uri": "otel-collector.observability.svc.cluster.local/v1/traces",
                "cluster": "outbound|4318||otel-collector.observability.svc.cluster.local",
                "timeout": "2s",
            },
            "request_headers_to_add": [{
                "header": {"key": "x-tenant", "value": "blue"},
                "append_action": "OVERWRITE_IF_EXISTS_OR_ADD",
            }],
        })
    );
    assert_eq!(tracing["random_sampling"], json!({"value": 30}));
    assert_eq!(tracing["max_path_tag_length"], json!(64));
}

#[test]
fn zipkin_as_istio_configures_it_with_its_trace_context_option() {
    let mesh = |option: &str| {
        format!(
            "extensionProviders:\n- name: z\n  zipkin:\n    service: otel-collector.observability.svc.cluster.local\n    port: 4317\n{option}defaultProviders:\n  tracing: [z]\n"
        )
    };
    let provider =
        |option: &str| outbound_json(&push(&mesh(option), ""), "tracing")["provider"].clone();
    assert_eq!(
        provider(""),
        json!({
            "name": "envoy.tracers.zipkin",
            "typed_config": {
                "@type": "type.googleapis.com/envoy.config.trace.v3.ZipkinConfig",
                "collector_cluster": "outbound|4317||otel-collector.observability.svc.cluster.local",
                "collector_endpoint": "/api/v2/spans",
                "collector_endpoint_version": "HTTP_JSON",
                "collector_hostname": "otel-collector.observability.svc.cluster.local",
                "trace_id_128bit": true,
                "shared_span_context": false,
            },
        })
    );
    let w3c = provider("    traceContextOption: USE_B3_WITH_W3C_PROPAGATION\n");
    assert_eq!(
        w3c["typed_config"]["trace_context_option"],
        "USE_B3_WITH_W3C_PROPAGATION"
    );
    let err = UserMesh::from_yaml(&mesh("    traceContextOption: W3C\n")).unwrap_err();
    assert!(
        format!("{err:#}").contains("Unsupported value: \"W3C\""),
        "{err:#}"
    );
}

#[test]
fn a_collector_outside_the_registry_turns_tracing_off() {
    let mesh = "extensionProviders:\n- name: z\n  zipkin: {service: zipkin.nowhere.svc.cluster.local, port: 9411}\ndefaultProviders:\n  tracing: [z]\n";
    let p = push(mesh, "");
    let out = outbound_side(&p, &productpage_proxy()).listeners;
    assert!(managers(&out).iter().all(|h| h.tracing.is_none()));
}

#[test]
fn server_side_follows_server_mode_entries() {
    let telemetry = "apiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: mesh, namespace: istio-system}\nspec:\n  tracing:\n  - providers: [{name: otel}]\n  - match: {mode: SERVER}\n    disableSpanReporting: true\n  accessLogging:\n  - providers: [{name: envoy}]\n    match: {mode: SERVER}\n";
    let p = push(OTEL, telemetry);
    let inbound = inbound_side(&p, &productpage_proxy());
    let servers = managers(&inbound);
    assert!(!servers.is_empty());
    assert!(
        servers
            .iter()
            .all(|h| h.tracing.is_none() && h.access_log.len() == 1)
    );
    let out = outbound_side(&p, &productpage_proxy()).listeners;
    assert!(
        managers(&out)
            .iter()
            .all(|h| h.tracing.is_some() && h.access_log.is_empty())
    );
}

#[test]
fn gateways_trace_as_clients_and_spawn_upstream_spans() {
    let gateway = "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw, namespace: istio-system}\nspec:\n  selector: {istio: ingressgateway}\n  servers:\n  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: ['*']\n---\napiVersion: telemetry.istio.io/v1\nkind: Telemetry\nmetadata: {name: mesh, namespace: istio-system}\nspec:\n  tracing:\n  - providers: [{name: otel}]\n  - match: {mode: SERVER}\n    disableSpanReporting: true\n";
    let p = push(OTEL, gateway);
    let mut proxy = Proxy::from_node_id(
        "router~10.2.0.1~istio-ingressgateway-1.istio-system~istio-system.svc.cluster.local",
    )
    .unwrap();
    proxy.labels.insert("istio".into(), "ingressgateway".into());
    let listeners = crate::translate::gateway::listeners(&p, &proxy);
    let hcm = managers(&listeners).remove(0);
    let tracing = hcm.tracing.expect("gateways are the client side");
    assert_eq!(tracing.spawn_upstream_span, Some(BoolValue { value: true }));
}
