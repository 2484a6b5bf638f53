//! The admin server (port 15000), in Envoy's shapes: `/ready`, `/server_info`,
//! `/config_dump`, `/clusters`, `/listeners`, `/certs`, `/quitquitquit`.

use std::fmt::Write;
use std::sync::Arc;
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use mizzen_xds::pb::envoy::admin::v3::{
    BootstrapConfigDump, Certificate, CertificateDetails, Certificates, ClustersConfigDump,
    ConfigDump, EndpointsConfigDump, ListenersConfigDump, RoutesConfigDump, SecretsConfigDump,
    SubjectAlternateName, clusters_config_dump, endpoints_config_dump, listeners_config_dump,
    routes_config_dump, secrets_config_dump, subject_alternate_name,
};
use mizzen_xds::pb::envoy::config::core::v3::{DataSource, data_source::Specifier};
use mizzen_xds::pb::envoy::extensions::transport_sockets::tls::v3::{
    Secret as PbSecret, secret::Type,
};
use mizzen_xds::pb::google::protobuf::{Any, Timestamp};
use mizzen_xds::{AdsClient, ResourceType, json};
use prost::{Message, Name};
use tokio::net::TcpListener;

use crate::Shared;
use crate::balance::Health;
use crate::bootstrap::Bootstrap;
use crate::drain::{DrainTrigger, DrainWatch};
use crate::tls::{CertInfo, Held, SecretSource, Transport};

/// What the admin handlers read.
#[derive(Clone)]
pub struct Admin {
    /// The proxy's shared state.
    pub shared: Arc<Shared>,
    /// The ADS client, for versions.
    pub client: Option<Arc<AdsClient>>,
    /// The bootstrap, for `/config_dump`.
    pub bootstrap: Arc<Bootstrap>,
    /// Stops the proxy (`/quitquitquit`).
    pub shutdown: Arc<DrainTrigger>,
    /// Run-time log levels, when the process offers them.
    pub logging: Option<Arc<dyn LogLevels>>,
}

/// Log levels that can change while the proxy runs (the process owns its logger).
pub trait LogLevels: Send + Sync {
    /// Each component and its level, sorted.
    fn levels(&self) -> Vec<(String, String)>;
    /// Sets `level` for `component`, or for every component when `None`.
    fn set(&self, component: Option<&str>, level: &str) -> Result<(), String>;
}

/// Serves Istio's agent health endpoint (`/healthz/ready` on 15021): 200 once the
/// proxy's config is complete, 503 before.
pub async fn serve_health(socket: TcpListener, shared: Arc<Shared>, stopped: DrainWatch) {
    let app = Router::new()
        .route(
            "/healthz/ready",
            get(|State(shared): State<Arc<Shared>>| async move {
                if shared.store.is_ready() {
                    StatusCode::OK
                } else {
                    StatusCode::SERVICE_UNAVAILABLE
                }
            }),
        )
        .with_state(shared);
    let served = axum::serve(socket, app).with_graceful_shutdown(stopped.signaled());
    if let Err(e) = served.await {
        tracing::warn!(error = %e, "health server stopped");
    }
}

/// Serves `/stats/prometheus` alone, as Istio's agent (15020) and Envoy's stats port
/// (15090) do for Prometheus' scrapes.
pub async fn serve_prometheus(socket: TcpListener, shared: Arc<Shared>, stopped: DrainWatch) {
    let app = Router::new()
        .route(
            "/stats/prometheus",
            get(|State(shared): State<Arc<Shared>>| async move { prometheus_text(&shared) }),
        )
        .with_state(shared);
    let served = axum::serve(socket, app).with_graceful_shutdown(stopped.signaled());
    if let Err(e) = served.await {
        tracing::warn!(error = %e, "metrics server stopped");
    }
}

/// Serves the admin API on `socket` until the proxy stops.
pub async fn serve(socket: TcpListener, admin: Admin, stopped: DrainWatch) {
    let app = Router::new()
        .route("/ready", get(ready))
        .route("/server_info", get(server_info))
        .route("/config_dump", get(config_dump))
        .route("/clusters", get(clusters))
        .route("/listeners", get(listeners))
        .route("/certs", get(certs))
        .route("/stats", get(stats))
        .route("/stats/prometheus", get(prometheus))
        .route("/quitquitquit", post(quit))
        .route("/logging", get(logging).post(set_logging))
        .with_state(admin);
    let served = axum::serve(socket, app).with_graceful_shutdown(stopped.signaled());
    if let Err(e) = served.await {
        tracing::warn!(error = %e, "admin server stopped");
    }
}

/// Envoy's server states.
fn state(admin: &Admin) -> &'static str {
    if admin.shared.store.is_ready() {
        "LIVE"
    } else {
        "PRE_INITIALIZING"
    }
}

async fn ready(State(admin): State<Admin>) -> Response {
    let state = state(&admin);
    let code = if state == "LIVE" {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (code, format!("{state}\n")).into_response()
}

async fn server_info(State(admin): State<Admin>) -> Response {
    let node = json::to_json(&admin.bootstrap.node).unwrap_or_default();
    axum::Json(serde_json::json!({
        "version": format!("mizzen/{}", env!("CARGO_PKG_VERSION")),
        "state": state(&admin),
        "node": node,
    }))
    .into_response()
}

/// `GET /logging`: every component's level, as Envoy lists its loggers.
async fn logging(State(admin): State<Admin>) -> Response {
    let Some(logging) = &admin.logging else {
        return (
            StatusCode::NOT_FOUND,
            "run-time log levels are not available\n",
        )
            .into_response();
    };
    let mut out = String::from("active loggers:\n");
    for (component, level) in logging.levels() {
        let _ = writeln!(out, "  {component}: {level}");
    }
    out.into_response()
}

/// `POST /logging?level=debug` (every component) or `?upstream=debug` (one).
async fn set_logging(
    State(admin): State<Admin>,
    Query(query): Query<std::collections::BTreeMap<String, String>>,
) -> Response {
    let Some(levels) = &admin.logging else {
        return (
            StatusCode::NOT_FOUND,
            "run-time log levels are not available\n",
        )
            .into_response();
    };
    if query.is_empty() {
        return (
            StatusCode::BAD_REQUEST,
            "usage: /logging?level=LEVEL or /logging?COMPONENT=LEVEL\n",
        )
            .into_response();
    }
    for (key, level) in &query {
        let component = (key != "level").then_some(key.as_str());
        if let Err(e) = levels.set(component, level) {
            return (StatusCode::BAD_REQUEST, format!("{e}\n")).into_response();
        }
    }
    logging(State(admin)).await
}

async fn quit(State(admin): State<Admin>) -> Response {
    admin.shutdown.drain();
    "OK\n".into_response()
}

fn pack<M: Message + Name>(message: &M) -> Any {
    Any {
        type_url: M::type_url(),
        value: message.encode_to_vec(),
    }
}

/// `/config_dump`: bootstrap, clusters, listeners and routes, static and dynamic,
/// each dynamic resource with the version it was accepted at.
async fn config_dump(
    State(admin): State<Admin>,
    Query(query): Query<std::collections::BTreeMap<String, String>>,
) -> Response {
    let snapshot = admin.shared.store.snapshot();
    let xds = admin.client.as_ref().map(|c| c.state());
    let version = |ty: ResourceType| {
        xds.as_ref()
            .and_then(|s| s.version(ty))
            .unwrap_or_default()
            .to_owned()
    };
    let is_static = |name: &str| snapshot.static_names.contains(name);

    let mut clusters: Vec<_> = snapshot
        .clusters
        .values()
        .map(|s| s.cluster.clone())
        .collect();
    clusters.sort_by(|a, b| a.name.cmp(&b.name));
    let mut cluster_dump = ClustersConfigDump {
        version_info: version(ResourceType::Cluster),
        ..Default::default()
    };
    for c in clusters {
        let packed = Some(pack(&*c.raw));
        if is_static(&c.name) {
            cluster_dump
                .static_clusters
                .push(clusters_config_dump::StaticCluster {
                    cluster: packed,
                    ..Default::default()
                });
        } else {
            cluster_dump
                .dynamic_active_clusters
                .push(clusters_config_dump::DynamicCluster {
                    version_info: version(ResourceType::Cluster),
                    cluster: packed,
                    ..Default::default()
                });
        }
    }

    let mut listener_dump = ListenersConfigDump {
        version_info: version(ResourceType::Listener),
        ..Default::default()
    };
    for (name, l) in &snapshot.listeners {
        let packed = Some(pack(&*l.raw));
        if is_static(name) {
            listener_dump
                .static_listeners
                .push(listeners_config_dump::StaticListener {
                    listener: packed,
                    ..Default::default()
                });
        } else {
            listener_dump
                .dynamic_listeners
                .push(listeners_config_dump::DynamicListener {
                    name: name.clone(),
                    active_state: Some(listeners_config_dump::DynamicListenerState {
                        version_info: version(ResourceType::Listener),
                        listener: packed,
                        ..Default::default()
                    }),
                    ..Default::default()
                });
        }
    }

    let mut routes: Vec<_> = snapshot.routes.iter().collect();
    routes.sort_by(|a, b| a.0.cmp(b.0));
    let route_dump = RoutesConfigDump {
        dynamic_route_configs: routes
            .into_iter()
            .map(|(_, table)| routes_config_dump::DynamicRouteConfig {
                version_info: version(ResourceType::Route),
                route_config: Some(pack(table.raw())),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };

    let mut dump = ConfigDump {
        configs: vec![
            pack(&BootstrapConfigDump {
                bootstrap: Some(admin.bootstrap.raw.clone()),
                ..Default::default()
            }),
            pack(&cluster_dump),
            pack(&listener_dump),
            pack(&route_dump),
            pack(&secrets_dump(&admin, &version(ResourceType::Secret))),
        ],
    };
    // Envoy leaves endpoints out unless asked (`?include_eds`).
    if query.contains_key("include_eds") {
        let mut assignments: Vec<_> = snapshot.assignments.iter().collect();
        assignments.sort_by(|a, b| a.0.cmp(b.0));
        let mut endpoints = EndpointsConfigDump::default();
        for state in snapshot.clusters.values() {
            if let Some(a) = state.cluster.static_assignment() {
                endpoints.static_endpoint_configs.push(
                    endpoints_config_dump::StaticEndpointConfig {
                        endpoint_config: Some(pack(a)),
                        ..Default::default()
                    },
                );
            }
        }
        for (_, a) in assignments {
            endpoints
                .dynamic_endpoint_configs
                .push(endpoints_config_dump::DynamicEndpointConfig {
                    version_info: version(ResourceType::Endpoint),
                    endpoint_config: Some(pack(&**a)),
                    ..Default::default()
                });
        }
        dump.configs.push(pack(&endpoints));
    }
    let response = match json::to_json(&dump) {
        Ok(value) => axum::Json(value).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    };
    crate::release_memory();
    response
}

/// The secrets section: static ones, and the dynamic ones (over ADS or from the agent)
/// active or still awaited, private keys redacted as Envoy redacts them.
fn secrets_dump(admin: &Admin, ads_version: &str) -> SecretsConfigDump {
    let mut dump = SecretsConfigDump::default();
    for slot in admin.shared.store.secrets().all() {
        let Some(source) = slot.source() else {
            continue;
        };
        let current = slot.current();
        let secret = current.as_ref().map_or_else(
            || PbSecret {
                name: slot.name().to_owned(),
                r#type: None,
            },
            |c| redacted(&c.raw),
        );
        let last_updated = current.as_ref().map(|c| timestamp(c.updated));
        let secret = Some(pack(&secret));
        let name = slot.name().to_owned();
        match (source, current.is_some()) {
            (SecretSource::Static, _) => {
                dump.static_secrets.push(secrets_config_dump::StaticSecret {
                    name,
                    last_updated,
                    secret,
                });
            }
            (_, true) => {
                dump.dynamic_active_secrets
                    .push(secrets_config_dump::DynamicSecret {
                        name,
                        version_info: match source {
                            SecretSource::Ads => ads_version.to_owned(),
                            _ => String::new(),
                        },
                        last_updated,
                        secret,
                        ..Default::default()
                    });
            }
            (_, false) => {
                dump.dynamic_warming_secrets
                    .push(secrets_config_dump::DynamicSecret {
                        name,
                        version_info: "uninitialized".into(),
                        secret,
                        ..Default::default()
                    });
            }
        }
    }
    dump
}

/// `secret` with its private key (and its password) replaced by `[redacted]`.
fn redacted(secret: &PbSecret) -> PbSecret {
    let redact = |source: &mut Option<DataSource>| {
        if let Some(source) = source {
            source.specifier = match source.specifier.take() {
                Some(Specifier::InlineBytes(_)) => {
                    Some(Specifier::InlineBytes(b"[redacted]".to_vec()))
                }
                Some(Specifier::InlineString(_)) => {
                    Some(Specifier::InlineString("[redacted]".into()))
                }
                other => other,
            };
        }
    };
    let mut secret = secret.clone();
    if let Some(Type::TlsCertificate(c)) = &mut secret.r#type {
        redact(&mut c.private_key);
        redact(&mut c.password);
    }
    secret
}

fn timestamp(t: SystemTime) -> Timestamp {
    let since = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    Timestamp {
        seconds: since.as_secs() as i64,
        nanos: since.subsec_nanos() as i32,
    }
}

/// `/certs`: the certificates of every TLS context (listener chains, then clusters),
/// in Envoy's shape.
async fn certs(State(admin): State<Admin>) -> Response {
    let snapshot = admin.shared.store.snapshot();
    let servers = snapshot
        .listeners
        .values()
        .flat_map(|l| l.chains.iter().chain(&l.default_chain))
        .filter_map(|c| c.tls.as_ref())
        .map(|tls| tls.held());
    let mut clusters: Vec<_> = snapshot.clusters.values().collect();
    clusters.sort_by(|a, b| a.cluster.name.cmp(&b.cluster.name));
    let clients = clusters
        .into_iter()
        .flat_map(|s| s.cluster.transports.all())
        .filter_map(|t| match t {
            Transport::Tls(t) => Some(t.tls.held()),
            Transport::Plaintext => None,
        });
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64);
    let certificates = Certificates {
        certificates: servers
            .chain(clients)
            .map(|held: Held| Certificate {
                ca_cert: held.cas.iter().map(|c| details(c, now)).collect(),
                cert_chain: held.chain.iter().map(|c| details(c, now)).collect(),
            })
            .collect(),
    };
    match json::to_json(&certificates) {
        Ok(value) => axum::Json(value).into_response(),
        Err(e) => (StatusCode::INTERNAL_SERVER_ERROR, format!("{e}\n")).into_response(),
    }
}

/// One certificate as `/certs` describes it.
fn details(cert: &CertInfo, now: i64) -> CertificateDetails {
    use subject_alternate_name::Name;
    let sans = cert
        .uri_sans
        .iter()
        .map(|u| Name::Uri(u.clone()))
        .chain(cert.dns_sans.iter().map(|d| Name::Dns(d.clone())))
        .chain(cert.ip_sans.iter().map(|i| Name::IpAddress(i.clone())))
        .map(|name| SubjectAlternateName { name: Some(name) })
        .collect();
    CertificateDetails {
        path: "<inline>".into(),
        serial_number: cert.serial.clone(),
        subject_alt_names: sans,
        days_until_expiration: u64::try_from((cert.not_after - now) / 86_400).unwrap_or(0),
        valid_from: Some(Timestamp {
            seconds: cert.not_before,
            nanos: 0,
        }),
        expiration_time: Some(Timestamp {
            seconds: cert.not_after,
            nanos: 0,
        }),
        ocsp_details: None,
    }
}

/// `/clusters`: Envoy's text form, one `cluster::host::stat::value` line per fact.
async fn clusters(State(admin): State<Admin>) -> Response {
    let snapshot = admin.shared.store.snapshot();
    let mut names: Vec<&String> = snapshot.clusters.keys().collect();
    names.sort();
    let mut out = String::new();
    for name in names {
        let state = &snapshot.clusters[name];
        let _ = writeln!(out, "{name}::observability_name::{name}");
        let _ = writeln!(
            out,
            "{name}::added_via_api::{}",
            !snapshot.static_names.contains(name)
        );
        if let Some(balancer) = &state.balancer {
            if let Some(od) = &state.cluster.outlier_detection {
                // Ejections whose time is over end here too, not only on traffic.
                balancer.sweep(od, &state.stats.outlier_detection, Instant::now());
            }
            for ep in balancer.endpoints() {
                let host = ep.address;
                let _ = writeln!(out, "{name}::{host}::weight::{}", ep.weight);
                let outlier = if ep.failed_outlier_check() {
                    "/failed_outlier_check"
                } else {
                    ""
                };
                let _ = writeln!(
                    out,
                    "{name}::{host}::health_flags::{}",
                    health_flags(ep.health, outlier)
                );
                let _ = writeln!(out, "{name}::{host}::region::{}", ep.locality.region);
                let _ = writeln!(out, "{name}::{host}::zone::{}", ep.locality.zone);
                let _ = writeln!(out, "{name}::{host}::sub_zone::{}", ep.locality.sub_zone);
                let _ = writeln!(out, "{name}::{host}::priority::{}", ep.priority);
            }
        }
    }
    ([(header::CONTENT_TYPE, "text/plain")], out).into_response()
}

/// Envoy's `health_flags` for an endpoint's EDS health status and `outlier` flag
/// (`/failed_outlier_check` or empty), in Envoy's order.
fn health_flags(health: Health, outlier: &str) -> String {
    let eds = match health {
        Health::Unknown | Health::Healthy => "",
        Health::Unhealthy | Health::Timeout => "/failed_eds_health",
        Health::Draining => "/eds_status_draining",
        Health::Degraded => "/degraded_eds_health",
    };
    match (outlier, eds) {
        ("", "") => "healthy".to_owned(),
        _ => format!("{outlier}{eds}"),
    }
}

/// `/stats`: every counter and gauge, `name: value` per line.
async fn stats(State(admin): State<Admin>) -> Response {
    let text = admin.shared.store.stats().text();
    ([(header::CONTENT_TYPE, "text/plain")], text).into_response()
}

/// `/stats/prometheus`: the same in Prometheus' text format, named as Envoy names them.
async fn prometheus(State(admin): State<Admin>) -> Response {
    prometheus_text(&admin.shared)
}

fn prometheus_text(shared: &Shared) -> Response {
    let text = shared.store.stats().prometheus();
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// `/listeners`: `name::address` per listener, as Envoy prints them.
async fn listeners(State(admin): State<Admin>) -> Response {
    let snapshot = admin.shared.store.snapshot();
    let bound = admin.shared.bound.all();
    let mut out = String::new();
    for (name, l) in &snapshot.listeners {
        let address = bound.get(name).copied().unwrap_or(l.address);
        let _ = writeln!(out, "{name}::{address}");
    }
    ([(header::CONTENT_TYPE, "text/plain")], out).into_response()
}
