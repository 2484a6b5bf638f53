//! Istio's debug endpoints on 15014: `/debug/syncz`, `/debug/registryz`,
//! `/debug/configz`, `/debug/config_dump?proxyID=…`, and `/metrics`; and Mizzen's
//! `/debug/dashboardz`, where `mizzen dashboard` finds the dashboard, and
//! `/debug/analyzez`, what the analyzers found in the config.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::Json;
use axum::extract::{Query, State as Extract};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use mizzen_xds::pb::envoy::admin::v3::{
    ClustersConfigDump, ConfigDump, EndpointsConfigDump, ListenersConfigDump, RoutesConfigDump,
    clusters_config_dump, endpoints_config_dump, listeners_config_dump, routes_config_dump,
};
use mizzen_xds::pb::google::protobuf::Any;
use mizzen_xds::{ProxyStatus, ResourceType, Subscription, json};
use prost::Name;
use serde_json::{Value, json};

use super::State;
use super::source::proxy_from_node;
use crate::model::{HealthStatus, Resolution, Service};

/// The debug router.
pub(crate) fn router(state: Arc<State>) -> axum::Router {
    axum::Router::new()
        .route("/debug/syncz", get(syncz))
        .route("/debug/registryz", get(registryz))
        .route("/debug/configz", get(configz))
        .route("/debug/config_dump", get(config_dump))
        .route("/debug/dashboardz", get(dashboardz))
        .route("/debug/analyzez", get(analyzez))
        .route("/metrics", get(metrics))
        .with_state(state)
}

async fn syncz(Extract(state): Extract<Arc<State>>) -> Json<Vec<mizzen_xds::ProxySync>> {
    Json(
        state
            .status
            .snapshot()
            .iter()
            .map(|p| p.to_sync(&state.name))
            .collect(),
    )
}

/// The dashboard's URL, or 404 when this pilot serves none.
async fn dashboardz(Extract(state): Extract<Arc<State>>) -> Response {
    match state.dashboard {
        Some(addr) => Json(json!({ "url": format!("http://{addr}/") })).into_response(),
        None => (StatusCode::NOT_FOUND, "this pilot serves no dashboard\n").into_response(),
    }
}

/// The findings of the last analysis, as `mizzen analyze -o json` prints them, with the
/// config version they are about.
async fn analyzez(Extract(state): Extract<Arc<State>>) -> Json<Value> {
    let findings = state.findings.borrow().clone();
    Json(json!({
        "version": findings.revision.to_string(),
        "messages": findings.messages,
    }))
}

async fn configz(Extract(state): Extract<Arc<State>>) -> Json<Value> {
    let current = state.current.load();
    let objects: Vec<Value> = current
        .push
        .config
        .iter()
        .filter_map(|(_, object)| serde_json::to_value(&**object).ok())
        .collect();
    Json(json!({ "revision": current.version, "objects": objects }))
}

async fn registryz(Extract(state): Extract<Arc<State>>) -> Json<Vec<Value>> {
    let current = state.current.load();
    let registry = &current.push.registry;
    Json(
        registry
            .services()
            .map(|s| service_json(s, registry))
            .collect(),
    )
}

fn service_json(service: &Service, registry: &crate::model::Registry) -> Value {
    let endpoints: BTreeMap<String, Vec<Value>> = service
        .ports
        .iter()
        .map(|p| {
            let list = registry
                .endpoints(service, p.port)
                .iter()
                .map(|e| {
                    json!({
                        "address": e.address,
                        "port": e.port,
                        "labels": e.labels,
                        "locality": e.locality,
                        "weight": e.weight,
                        "serviceAccount": e.service_account,
                        "healthy": e.health == HealthStatus::Healthy,
                        "workload": format!("{}/{}", e.workload_namespace, e.workload),
                    })
                })
                .collect();
            (p.port.to_string(), list)
        })
        .collect();
    json!({
        "hostname": service.hostname.as_str(),
        "namespace": service.namespace,
        "ports": service.ports.iter().map(|p| json!({
            "name": p.name,
            "port": p.port,
            "protocol": p.protocol.map(|p| p.as_str()),
        })).collect::<Vec<_>>(),
        "addresses": service.addresses,
        "resolution": match service.resolution {
            Resolution::ClientSideLb => "ClientSideLB",
            Resolution::Dns => "DNS",
            Resolution::DnsRoundRobin => "DNSRoundRobin",
            Resolution::Passthrough => "Passthrough",
        },
        "exportTo": service.export_to,
        "serviceAccounts": service.service_accounts,
        "endpoints": endpoints,
    })
}

#[derive(serde::Deserialize)]
struct DumpQuery {
    #[serde(rename = "proxyID")]
    proxy_id: String,
}

/// What pilot would send the proxy now, in the shape of Envoy's `/config_dump`.
async fn config_dump(Extract(state): Extract<Arc<State>>, Query(q): Query<DumpQuery>) -> Response {
    let connected = state.status.snapshot();
    let Some(status) = find_proxy(&connected, &q.proxy_id) else {
        return (
            StatusCode::NOT_FOUND,
            format!("no connected proxy {:?}\n", q.proxy_id),
        )
            .into_response();
    };
    let proxy = match proxy_from_node(&status.node) {
        Ok(proxy) => proxy,
        Err(e) => return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response(),
    };
    let current = state.current.load();
    let version = current.version.clone();
    let generate = |ty: ResourceType| {
        let subscription = status
            .types
            .get(&ty)
            .map(|t| t.subscription.clone())
            .unwrap_or_else(|| {
                if ty.is_wildcard_type() {
                    Subscription::wildcard()
                } else {
                    Subscription::default()
                }
            });
        current.resources(&proxy, ty, &subscription)
    };
    let dump = ConfigDump {
        configs: vec![
            pack(&ClustersConfigDump {
                version_info: version.clone(),
                dynamic_active_clusters: generate(ResourceType::Cluster)
                    .into_iter()
                    .map(|r| clusters_config_dump::DynamicCluster {
                        version_info: version.clone(),
                        cluster: Some(r.to_any()),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }),
            pack(&ListenersConfigDump {
                version_info: version.clone(),
                dynamic_listeners: generate(ResourceType::Listener)
                    .into_iter()
                    .map(|r| listeners_config_dump::DynamicListener {
                        name: r.name().to_owned(),
                        active_state: Some(listeners_config_dump::DynamicListenerState {
                            version_info: version.clone(),
                            listener: Some(r.to_any()),
                            ..Default::default()
                        }),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }),
            pack(&RoutesConfigDump {
                dynamic_route_configs: generate(ResourceType::Route)
                    .into_iter()
                    .map(|r| routes_config_dump::DynamicRouteConfig {
                        version_info: version.clone(),
                        route_config: Some(r.to_any()),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }),
            pack(&EndpointsConfigDump {
                dynamic_endpoint_configs: generate(ResourceType::Endpoint)
                    .into_iter()
                    .map(|r| endpoints_config_dump::DynamicEndpointConfig {
                        version_info: version.clone(),
                        endpoint_config: Some(r.to_any()),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }),
        ],
    };
    match json::to_json(&dump) {
        Ok(value) => Json(value).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

/// A connected proxy by full node id, or by `name.namespace` as istioctl passes it.
fn find_proxy<'a>(connected: &'a [ProxyStatus], id: &str) -> Option<&'a ProxyStatus> {
    connected
        .iter()
        .rev()
        .find(|p| p.node_id == id || p.node_id.split('~').nth(2) == Some(id))
}

fn pack<M: prost::Message + Name>(message: &M) -> Any {
    Any {
        type_url: M::type_url(),
        value: message.encode_to_vec(),
    }
}

async fn metrics(Extract(state): Extract<Arc<State>>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        state.metrics.encode(&state.status),
    )
        .into_response()
}
