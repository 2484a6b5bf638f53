//! The mesh's proxies, in `up`'s own process: a sidecar per replica and the ingress
//! gateway, each an xDS client of the in-process pilot over TLS, with a certificate
//! from pilot's CA for its workload's identity.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::Duration;

use mizzen_pilot::server::analysis::{INGRESS_LABELS, INGRESS_NAMESPACE};
use mizzen_proxy::identity::IdentityOptions;
use mizzen_proxy::{Bootstrap, Proxy, ProxyOptions};
use mizzen_xds::pb::envoy::config::core::v3::Node;
use mizzen_xds::pb::google::protobuf::{Struct, Value, value::Kind};
use mizzen_xds::tls::ClientTls;

/// The admin port each sidecar serves on its pod's address (Envoy's 15000).
pub const ADMIN_PORT: u16 = 15000;
/// Where Prometheus scrapes a sidecar: Istio's agent (merged metrics) and Envoy's own
/// stats port.
pub const PROMETHEUS_PORTS: [u16; 2] = [15020, 15090];

/// The cluster id Istio gives a cluster nobody named.
const CLUSTER_ID: &str = "Kubernetes";
/// The Istio release whose agent Mizzen's proxies present themselves as: pilot sends
/// istio-proxy's own filters (telemetry) only to proxies that report one.
const ISTIO_VERSION: &str = "1.28.0";
/// The labels Istio's injector gives every pod, which its metrics read.
const CANONICAL_NAME: &str = "service.istio.io/canonical-name";
const CANONICAL_REVISION: &str = "service.istio.io/canonical-revision";

/// Who a proxy is, as Istio's agent presents it.
#[derive(Debug, Clone)]
pub struct Identity {
    /// The node id.
    pub node_id: String,
    /// Its workload (a Deployment's name), as Istio's metrics name it.
    pub workload: String,
    /// The workload's labels.
    pub labels: BTreeMap<String, String>,
    /// Its namespace.
    pub namespace: String,
    /// Its service account.
    pub service_account: String,
    /// Its address.
    pub ip: Ipv4Addr,
    /// True for a sidecar in local mode (no traffic capture).
    pub uncaptured: bool,
}

impl Identity {
    /// `POD.NAMESPACE`, the node id's third part, as istioctl names a proxy.
    pub fn pod(&self) -> &str {
        self.node_id.split('~').nth(2).unwrap_or(&self.workload)
    }
}

/// How the mesh's proxies reach pilot: xDS and the CA over TLS (Istio's 15012),
/// verified against the mesh's root; and the certificates they ask its CA for.
#[derive(Debug, Clone)]
pub struct PilotAccess {
    /// Pilot's TLS address.
    pub addr: SocketAddr,
    /// The mesh's root and the name pilot proves.
    pub tls: ClientTls,
    /// The SPIFFE trust domain.
    pub trust_domain: String,
    /// The certificate lifetime to ask for (Istio's `SECRET_TTL`).
    pub secret_ttl: Duration,
}

/// Where a proxy serves its admin API and its Prometheus ports.
#[derive(Debug, Clone, Copy)]
pub enum Ports {
    /// A sidecar, on its pod's own address: admin on 15000, Prometheus on 15020 and 15090.
    Pod(IpAddr),
    /// Admin only, on a free port of an address others share (the ingress gateway's).
    AdminOnly(IpAddr),
}

/// Istio's default `ProxyConfig.drainDuration`, the sidecars' `--drain-time-s`.
const DRAIN_DURATION: Duration = Duration::from_secs(45);

/// Starts a proxy for `who` taking its config and its certificate from `pilot`,
/// authenticated by `token`, serving its admin API (and Prometheus) on `ports`.
pub async fn start(
    who: &Identity,
    pilot: &PilotAccess,
    token: String,
    ports: Ports,
) -> anyhow::Result<Proxy> {
    let admin = match ports {
        Ports::Pod(ip) => SocketAddr::new(ip, ADMIN_PORT),
        Ports::AdminOnly(ip) => SocketAddr::new(ip, 0),
    };
    let node = node(who, &pilot.trust_domain);
    let mut identity = IdentityOptions::for_node(
        &node,
        &pilot.trust_domain,
        format!("https://{}", pilot.addr),
        pilot.tls.clone(),
    )?;
    identity.token = Some(token);
    identity.ttl = pilot.secret_ttl;
    let bootstrap = Bootstrap::for_pilot_tls(
        &pilot.addr.to_string(),
        pilot.tls.clone(),
        node,
        Some(admin),
    );
    let mut options = ProxyOptions::new(bootstrap);
    options.identity = Some(identity);
    // When a config change replaces a filter chain, its HTTP connections close after
    // their requests at once; TCP relays get Istio's default `drainDuration` to finish.
    // A stopping mesh does not wait for them (dropping a proxy aborts its tasks).
    options.drain_time = DRAIN_DURATION;
    if let Ports::Pod(ip) = ports {
        options.prometheus_addrs = PROMETHEUS_PORTS
            .map(|port| SocketAddr::new(ip, port))
            .to_vec();
    }
    Ok(Proxy::start(options).await?)
}

fn text(s: &str) -> Value {
    Value {
        kind: Some(Kind::StringValue(s.into())),
    }
}

/// The node metadata Istio's agent sends, as far as Mizzen's proxies and pilot read it:
/// who the workload is (its metrics' labels), its identity and addresses, the mesh.
fn node(who: &Identity, mesh_id: &str) -> Node {
    let labels = Struct {
        fields: canonical_labels(who)
            .iter()
            .map(|(k, v)| (k.clone(), text(v)))
            .collect(),
    };
    let ip = who.ip.to_string();
    let pod = who
        .pod()
        .rsplit_once('.')
        .map_or(who.workload.as_str(), |(pod, _)| pod);
    let mut fields: BTreeMap<String, Value> = [
        ("NAME", pod),
        ("NAMESPACE", who.namespace.as_str()),
        ("WORKLOAD_NAME", who.workload.as_str()),
        ("CLUSTER_ID", CLUSTER_ID),
        ("MESH_ID", mesh_id),
        ("ISTIO_VERSION", ISTIO_VERSION),
        ("SERVICE_ACCOUNT", who.service_account.as_str()),
        ("INSTANCE_IPS", ip.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), text(v)))
    .collect();
    if who.uncaptured {
        fields.insert("INTERCEPTION_MODE".into(), text("NONE"));
    }
    fields.insert(
        "LABELS".into(),
        Value {
            kind: Some(Kind::StructValue(labels)),
        },
    );
    Node {
        id: who.node_id.clone(),
        metadata: Some(Struct {
            fields: fields.into_iter().collect(),
        }),
        ..Node::default()
    }
}

/// The workload's labels with the canonical service and revision Istio's injector adds
/// when the pod has none: the `app` label (else the workload's name) and the `version`
/// label (else `latest`).
fn canonical_labels(who: &Identity) -> BTreeMap<String, String> {
    let mut labels = who.labels.clone();
    let label = |keys: &[&str]| keys.iter().find_map(|k| who.labels.get(*k).cloned());
    let name = label(&["app.kubernetes.io/name", "app"]).unwrap_or_else(|| who.workload.clone());
    let revision =
        label(&["app.kubernetes.io/version", "version"]).unwrap_or_else(|| "latest".to_owned());
    labels.entry(CANONICAL_NAME.to_owned()).or_insert(name);
    labels
        .entry(CANONICAL_REVISION.to_owned())
        .or_insert(revision);
    labels
}

/// The ingress gateway's identity (Istio's `istio-ingressgateway` in `istio-system`).
pub fn ingress_gateway(ip: Ipv4Addr) -> Identity {
    Identity {
        node_id: format!(
            "router~{ip}~istio-ingressgateway-1.istio-system~istio-system.svc.cluster.local"
        ),
        workload: "istio-ingressgateway".into(),
        labels: INGRESS_LABELS
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        namespace: INGRESS_NAMESPACE.into(),
        service_account: "istio-ingressgateway-service-account".into(),
        ip,
        // Local mode: its Gateways' ports bind on its own address, not on every one.
        uncaptured: true,
    }
}
