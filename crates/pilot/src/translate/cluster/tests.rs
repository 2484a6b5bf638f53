//! Golden-style tests of CDS: hand-built registries, DestinationRules from YAML, field
//! values compared where that reads clearer than whole protos.

use mizzen_api::testdata::istio_data;
use std::collections::BTreeMap;
use std::sync::Arc;

use mizzen_api::load::Loader;
use mizzen_api::types::{Labels, Protocol};
use mizzen_xds::pb::envoy::config::cluster::v3::{
    Cluster,
    cluster::{ClusterDiscoveryType, DiscoveryType, LbConfig, LbPolicy},
};
use mizzen_xds::pb::envoy::config::core::v3::{address, config_source::ConfigSourceSpecifier};
use mizzen_xds::pb::envoy::config::endpoint::v3::lb_endpoint::HostIdentifier;
use mizzen_xds::pb::envoy::config::route::v3::route_action::hash_policy::PolicySpecifier;
use mizzen_xds::pb::envoy::extensions::transport_sockets::tls::v3::{
    UpstreamTlsContext, common_tls_context::ValidationContextType,
};
use mizzen_xds::pb::envoy::extensions::upstreams::http::v3::{
    HttpProtocolOptions,
    http_protocol_options::{UpstreamProtocolOptions, explicit_http_config::ProtocolConfig},
};
use mizzen_xds::pb::google::protobuf::{Any, Value, value::Kind};
use prost::Message;

use super::clusters;
use super::hash::hash_policies;
use super::rules::DestinationRules;
use crate::model::service::Location;
use crate::model::{
    Endpoint, HealthStatus, Hostname, InterceptionMode, MeshConfig, NodeType, Proxy, PushContext,
    Registry, Resolution, Service, ServicePort,
};
use crate::store::Snapshot;

pub(crate) const REVIEWS: &str = "reviews.default.svc.cluster.local";

/// A mesh service in `default` with one port.
pub(crate) fn service(host: &str, port: u16, protocol: Option<Protocol>) -> Service {
    Service {
        hostname: Hostname::new(host),
        namespace: "default".into(),
        ports: vec![ServicePort {
            name: protocol.map_or("tcp".into(), |p| p.as_str().to_ascii_lowercase()),
            port,
            protocol,
        }],
        addresses: Vec::new(),
        resolution: Resolution::ClientSideLb,
        location: Location::MeshInternal,
        export_to: Vec::new(),
        labels: Labels::new(),
        service_accounts: Vec::new(),
    }
}

/// An injected workload's endpoint.
pub(crate) fn endpoint(
    address: &str,
    port: u16,
    workload: &str,
    labels: &[(&str, &str)],
) -> Endpoint {
    let mut labels: Labels = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    labels.insert("security.istio.io/tlsMode".into(), "istio".into());
    Endpoint {
        address: address.into(),
        port,
        service_port_name: "http".into(),
        labels,
        locality: String::new(),
        weight: 1,
        service_account: String::new(),
        network: String::new(),
        health: HealthStatus::Healthy,
        workload: workload.into(),
        workload_namespace: "default".into(),
    }
}

/// Bookinfo's reviews (three versions) and productpage, whose sidecar asks.
pub(crate) fn bookinfo() -> Registry {
    let mut r = Registry::default();
    r.insert_service(service(REVIEWS, 9080, Some(Protocol::Http)));
    let host = Hostname::new(REVIEWS);
    for (i, v) in ["v1", "v2", "v3"].iter().enumerate() {
        let mut ep = endpoint(
            &format!("10.0.0.{}", i + 1),
            9080,
            &format!("reviews-{v}"),
            &[("app", "reviews"), ("version", v)],
        );
        ep.service_account = "bookinfo-reviews".into();
        r.insert_endpoint(&host, "default", 9080, ep);
    }
    let pp = "productpage.default.svc.cluster.local";
    r.insert_service(service(pp, 9080, Some(Protocol::Http)));
    r.insert_endpoint(
        &Hostname::new(pp),
        "default",
        9080,
        endpoint(
            "10.0.0.9",
            9080,
            "productpage-v1",
            &[("app", "productpage"), ("version", "v1")],
        ),
    );
    r
}

/// A push of `yaml` (objects in `default` unless they say otherwise) over `registry`.
pub(crate) fn push(yaml: &str, registry: Registry) -> PushContext {
    let loaded = Loader::new().load_str(yaml, None);
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    let objects = loaded
        .objects
        .into_iter()
        .map(|l| (l.object.key(), Arc::new(l.object)))
        .collect::<BTreeMap<_, _>>();
    PushContext::with_registry(
        Arc::new(Snapshot::new(1, objects)),
        Arc::new(registry),
        Arc::new(MeshConfig::default()),
    )
}

/// productpage's sidecar at 10.0.0.9.
pub(crate) fn productpage() -> Proxy {
    let mut p = Proxy::from_node_id(
        "sidecar~10.0.0.9~productpage-v1-abc.default~default.svc.cluster.local",
    )
    .unwrap();
    p.labels = [("app", "productpage"), ("version", "v1")]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    p
}

/// A DestinationRule for reviews with `body` indented under `spec`.
pub(crate) fn reviews_rule(body: &str) -> String {
    let body: String = body.lines().map(|l| format!("  {l}\n")).collect();
    format!(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: reviews\nspec:\n  host: reviews\n{body}"
    )
}

fn find<'a>(clusters: &'a [Cluster], name: &str) -> &'a Cluster {
    clusters
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no cluster {name} in {:?}", names(clusters)))
}

fn names(clusters: &[Cluster]) -> Vec<&str> {
    clusters.iter().map(|c| c.name.as_str()).collect()
}

fn discovery(c: &Cluster) -> DiscoveryType {
    match c.cluster_discovery_type {
        Some(ClusterDiscoveryType::Type(t)) => DiscoveryType::try_from(t).unwrap(),
        _ => panic!("no discovery type"),
    }
}

fn decode<M: Message + Default>(any: &Any) -> M {
    M::decode(any.value.as_slice()).unwrap()
}

fn http_options(c: &Cluster) -> Option<HttpProtocolOptions> {
    c.typed_extension_protocol_options
        .get("envoy.extensions.upstreams.http.v3.HttpProtocolOptions")
        .map(decode)
}

fn tls_context(c: &Cluster) -> Option<UpstreamTlsContext> {
    let socket = c.transport_socket.as_ref()?;
    assert_eq!(socket.name, "envoy.transport_sockets.tls");
    match socket.config_type.as_ref()? {
        mizzen_xds::pb::envoy::config::core::v3::transport_socket::ConfigType::TypedConfig(any) => {
            assert_eq!(
                any.type_url,
                "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
            );
            Some(decode(any))
        }
    }
}

/// The TLS context auto mTLS uses for endpoints labelled `tlsMode: istio`.
fn auto_mtls_context(c: &Cluster) -> UpstreamTlsContext {
    let m = &c.transport_socket_matches[0];
    assert_eq!(m.name, "tlsMode-istio");
    tls_context(&Cluster {
        transport_socket: m.transport_socket.clone(),
        ..Cluster::default()
    })
    .unwrap()
}

fn istio_field<'a>(c: &'a Cluster, key: &str) -> Option<&'a Value> {
    c.metadata
        .as_ref()?
        .filter_metadata
        .get("istio")?
        .fields
        .get(key)
}

fn str_value(v: Option<&Value>) -> Option<&str> {
    match v?.kind.as_ref()? {
        Kind::StringValue(s) => Some(s),
        _ => None,
    }
}

fn clusters_for(yaml: &str) -> Vec<Cluster> {
    clusters(&push(yaml, bookinfo()), &productpage())
}

#[test]
fn bookinfo_reviews_subsets_each_get_an_eds_cluster() {
    let rule = reviews_rule(
        "subsets:\n- name: v1\n  labels: {version: v1}\n- name: v2\n  labels: {version: v2}\n- name: v3\n  labels: {version: v3}",
    );
    let out = clusters_for(&rule);
    let outbound: Vec<&str> = names(&out)
        .into_iter()
        .filter(|n| n.contains(REVIEWS))
        .collect();
    assert_eq!(
        outbound,
        [
            "outbound|9080||reviews.default.svc.cluster.local",
            "outbound|9080|v1|reviews.default.svc.cluster.local",
            "outbound|9080|v2|reviews.default.svc.cluster.local",
            "outbound|9080|v3|reviews.default.svc.cluster.local",
        ]
    );
    let v2 = find(&out, "outbound|9080|v2|reviews.default.svc.cluster.local");
    assert_eq!(discovery(v2), DiscoveryType::Eds);
    let eds = v2.eds_cluster_config.as_ref().unwrap();
    assert_eq!(eds.service_name, v2.name);
    let source = eds.eds_config.as_ref().unwrap();
    assert!(matches!(
        source.config_source_specifier,
        Some(ConfigSourceSpecifier::Ads(_))
    ));
    assert_eq!(source.initial_fetch_timeout.unwrap().seconds, 0);
    assert_eq!(v2.connect_timeout.unwrap().seconds, 10);
    assert_eq!(v2.lb_policy, LbPolicy::LeastRequest as i32);
    assert_eq!(v2.alt_stat_name, format!("{};", v2.name));
    let t = &v2.circuit_breakers.as_ref().unwrap().thresholds[0];
    for v in [
        t.max_connections,
        t.max_pending_requests,
        t.max_requests,
        t.max_retries,
    ] {
        assert_eq!(v.unwrap().value, u32::MAX);
    }
    assert!(t.track_remaining);
    assert_eq!(str_value(istio_field(v2, "subset")), Some("v2"));
    assert_eq!(
        str_value(istio_field(v2, "config")),
        Some("/apis/networking.istio.io/v1alpha3/namespaces/default/destination-rule/reviews")
    );
    assert!(matches!(
        istio_field(v2, "default_original_port").and_then(|v| v.kind.as_ref()),
        Some(Kind::NumberValue(n)) if *n == 9080.0
    ));
    let Some(Kind::ListValue(services)) = istio_field(v2, "services").and_then(|v| v.kind.clone())
    else {
        panic!("services metadata");
    };
    let Some(Kind::StructValue(svc)) = services.values[0].kind.clone() else {
        panic!()
    };
    let field = |k: &str| str_value(svc.fields.get(k)).unwrap().to_owned();
    assert_eq!(
        (field("host"), field("name"), field("namespace")),
        (REVIEWS.into(), "reviews".into(), "default".into())
    );
    // No policy TLS: auto mTLS to endpoints that carry the tlsMode label, plain otherwise.
    let matches: Vec<&str> = v2
        .transport_socket_matches
        .iter()
        .map(|m| m.name.as_str())
        .collect();
    assert_eq!(matches, ["tlsMode-istio", "tlsMode-disabled"]);
    let ctx = auto_mtls_context(v2);
    assert_eq!(
        ctx.sni,
        "outbound_.9080_.v2_.reviews.default.svc.cluster.local"
    );
    let common = ctx.common_tls_context.unwrap();
    assert_eq!(common.tls_certificate_sds_secret_configs[0].name, "default");
    assert_eq!(common.alpn_protocols, ["istio-peer-exchange", "istio"]);
    let Some(ValidationContextType::CombinedValidationContext(v)) = common.validation_context_type
    else {
        panic!("combined validation");
    };
    assert_eq!(
        v.validation_context_sds_secret_config.unwrap().name,
        "ROOTCA"
    );
    #[allow(deprecated)]
    let sans = v
        .default_validation_context
        .unwrap()
        .match_subject_alt_names;
    assert_eq!(sans.len(), 1, "{sans:?}");
    assert!(format!("{sans:?}").contains("spiffe://cluster.local/ns/default/sa/bookinfo-reviews"));
}

#[test]
fn sidecars_get_passthrough_blackhole_and_inbound_passthrough() {
    let out = clusters_for("");
    let black = find(&out, "BlackHoleCluster");
    assert_eq!(discovery(black), DiscoveryType::Static);
    assert!(black.load_assignment.is_none());
    assert_eq!(black.connect_timeout.unwrap().seconds, 10);
    let pass = find(&out, "PassthroughCluster");
    assert_eq!(discovery(pass), DiscoveryType::OriginalDst);
    assert_eq!(pass.lb_policy, LbPolicy::ClusterProvided as i32);
    let options = http_options(pass).unwrap();
    assert_eq!(
        options
            .common_http_protocol_options
            .unwrap()
            .idle_timeout
            .unwrap()
            .seconds,
        300
    );
    assert!(matches!(
        options.upstream_protocol_options,
        Some(UpstreamProtocolOptions::UseDownstreamProtocolConfig(_))
    ));
    assert!(pass.circuit_breakers.is_some());
    let inbound = find(&out, "InboundPassthroughCluster");
    assert_eq!(discovery(inbound), DiscoveryType::OriginalDst);
    let bind = inbound.upstream_bind_config.as_ref().unwrap();
    assert_eq!(bind.source_address.as_ref().unwrap().address, "127.0.0.6");
    // Gateways have neither passthrough cluster nor inbound ones.
    let mut gw = productpage();
    gw.node_type = NodeType::Router;
    let gw_clusters = clusters(&push("", bookinfo()), &gw);
    let gw_names = names(&gw_clusters);
    assert!(gw_names.contains(&"BlackHoleCluster"));
    assert!(
        !gw_names
            .iter()
            .any(|n| n.contains("Passthrough") || n.starts_with("inbound"))
    );
}

#[test]
fn inbound_clusters_follow_interception_mode() {
    let out = clusters_for("");
    let inbound = find(&out, "inbound|9080||");
    assert_eq!(discovery(inbound), DiscoveryType::OriginalDst);
    assert_eq!(inbound.lb_policy, LbPolicy::ClusterProvided as i32);
    assert_eq!(inbound.cleanup_interval.unwrap().seconds, 9_223_372_035);
    assert_eq!(
        inbound
            .upstream_bind_config
            .as_ref()
            .unwrap()
            .source_address
            .as_ref()
            .unwrap()
            .address,
        "127.0.0.6"
    );
    assert!(istio_field(inbound, "default_original_port").is_none());
    assert!(format!("{:?}", istio_field(inbound, "services")).contains("productpage"));
    // Without capture, straight to the workload's address and port.
    let mut local = productpage();
    local.interception_mode = InterceptionMode::None;
    let out = clusters(&push("", bookinfo()), &local);
    let inbound = find(&out, "inbound|9080||");
    assert_eq!(discovery(inbound), DiscoveryType::Static);
    assert!(inbound.upstream_bind_config.is_none());
    let lb = &inbound.load_assignment.as_ref().unwrap().endpoints[0].lb_endpoints[0];
    let Some(HostIdentifier::Endpoint(e)) = &lb.host_identifier else {
        panic!()
    };
    let Some(address::Address::SocketAddress(sa)) = &e.address.as_ref().unwrap().address else {
        panic!()
    };
    assert_eq!(sa.address, "10.0.0.9");
    assert_eq!(format!("{:?}", sa.port_specifier), "Some(PortValue(9080))");
}

#[test]
fn sidecar_ingress_default_endpoint_makes_static_inbound_clusters() {
    let yaml = "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata:\n  name: pp\nspec:\n  workloadSelector:\n    labels: {app: productpage}\n  ingress:\n  - port: {number: 9080, protocol: HTTP, name: http}\n    defaultEndpoint: 127.0.0.1:8080\n  egress:\n  - hosts: [\"./*\"]\n";
    let out = clusters_for(yaml);
    let inbound = find(&out, "inbound|9080||");
    assert_eq!(discovery(inbound), DiscoveryType::Static);
    assert!(inbound.upstream_bind_config.is_none());
    let lb = &inbound.load_assignment.as_ref().unwrap().endpoints[0].lb_endpoints[0];
    assert!(
        format!("{lb:?}").contains("127.0.0.1") && format!("{lb:?}").contains("PortValue(8080)")
    );
}

#[test]
fn each_simple_load_balancer() {
    for (simple, policy) in [
        ("ROUND_ROBIN", LbPolicy::RoundRobin),
        ("LEAST_REQUEST", LbPolicy::LeastRequest),
        ("LEAST_CONN", LbPolicy::LeastRequest),
        ("RANDOM", LbPolicy::Random),
    ] {
        let out = clusters_for(&reviews_rule(&format!(
            "trafficPolicy:\n  loadBalancer:\n    simple: {simple}"
        )));
        let c = find(&out, "outbound|9080||reviews.default.svc.cluster.local");
        assert_eq!(c.lb_policy, policy as i32, "{simple}");
        assert_eq!(discovery(c), DiscoveryType::Eds);
    }
    let out = clusters_for(&reviews_rule(
        "trafficPolicy:\n  loadBalancer:\n    simple: PASSTHROUGH",
    ));
    let c = find(&out, "outbound|9080||reviews.default.svc.cluster.local");
    assert_eq!(discovery(c), DiscoveryType::OriginalDst);
    assert_eq!(c.lb_policy, LbPolicy::ClusterProvided as i32);
    assert!(c.eds_cluster_config.is_none());
    // Original-destination clusters get no auto mTLS (they are headless).
    assert!(c.transport_socket_matches.is_empty());
    let out = clusters_for(&reviews_rule(
        "trafficPolicy:\n  loadBalancer:\n    simple: ROUND_ROBIN\n    warmupDurationSecs: 30s",
    ));
    let c = find(&out, "outbound|9080||reviews.default.svc.cluster.local");
    let Some(LbConfig::RoundRobinLbConfig(rr)) = &c.lb_config else {
        panic!("{:?}", c.lb_config)
    };
    assert_eq!(
        rr.slow_start_config
            .as_ref()
            .unwrap()
            .slow_start_window
            .unwrap()
            .seconds,
        30
    );
}

#[test]
fn consistent_hash_sets_the_cluster_balancer() {
    let cluster = |lb: &str| {
        let out = clusters_for(&reviews_rule(&format!(
            "trafficPolicy:\n  loadBalancer:\n    consistentHash:\n{lb}"
        )));
        find(&out, "outbound|9080||reviews.default.svc.cluster.local").clone()
    };
    let c = cluster("      httpHeaderName: x-user\n      maglev:\n        tableSize: 65537");
    assert_eq!(c.lb_policy, LbPolicy::Maglev as i32);
    let Some(LbConfig::MaglevLbConfig(m)) = c.lb_config else {
        panic!()
    };
    assert_eq!(m.table_size.unwrap().value, 65537);
    let c = cluster("      useSourceIp: true\n      ringHash:\n        minimumRingSize: 2048");
    assert_eq!(c.lb_policy, LbPolicy::RingHash as i32);
    let Some(LbConfig::RingHashLbConfig(r)) = c.lb_config else {
        panic!()
    };
    assert_eq!(r.minimum_ring_size.unwrap().value, 2048);
    let c = cluster("      httpQueryParameterName: u");
    let Some(LbConfig::RingHashLbConfig(r)) = c.lb_config else {
        panic!()
    };
    assert_eq!(
        (c.lb_policy, r.minimum_ring_size.unwrap().value),
        (LbPolicy::RingHash as i32, 1024)
    );
}

#[test]
fn consistent_hash_becomes_route_hash_policies_most_specific_first() {
    let yaml = reviews_rule(
        "trafficPolicy:\n  loadBalancer:\n    consistentHash:\n      httpHeaderName: x-user\n  portLevelSettings:\n  - port: {number: 9080}\n    loadBalancer:\n      consistentHash:\n        httpQueryParameterName: q\nsubsets:\n- name: v1\n  labels: {version: v1}\n  trafficPolicy:\n    loadBalancer:\n      consistentHash:\n        httpCookie: {name: session, path: /, ttl: 60s}\n- name: v2\n  labels: {version: v2}\n  trafficPolicy:\n    loadBalancer:\n      consistentHash:\n        useSourceIp: true\n    portLevelSettings:\n    - port: {number: 9080}\n      loadBalancer:\n        consistentHash:\n          httpHeaderName: x-v2\n- name: v3\n  labels: {version: v3}",
    );
    let push = push(&yaml, bookinfo());
    let proxy = productpage();
    let rules = DestinationRules::new(&push);
    let svc = push.registry.services_named(&Hostname::new(REVIEWS))[0].clone();
    let rule = rules.for_service(&proxy, &svc).map(|r| r.spec);
    let spec = |port, subset| {
        let p = hash_policies(rule, port, subset);
        assert_eq!(p.len(), 1);
        p[0].policy_specifier.clone().unwrap()
    };
    assert!(
        matches!(spec(9080, "v1"), PolicySpecifier::Cookie(c) if c.name == "session" && c.path == "/" && c.ttl.unwrap().seconds == 60)
    );
    assert!(matches!(spec(9080, "v2"), PolicySpecifier::Header(h) if h.header_name == "x-v2"));
    assert!(matches!(spec(8080, "v2"), PolicySpecifier::ConnectionProperties(c) if c.source_ip));
    assert!(matches!(spec(9080, "v3"), PolicySpecifier::QueryParameter(q) if q.name == "q"));
    assert!(matches!(spec(9080, ""), PolicySpecifier::QueryParameter(_)));
    assert!(matches!(spec(8080, ""), PolicySpecifier::Header(h) if h.header_name == "x-user"));
    assert!(hash_policies(None, 9080, "").is_empty());
}

#[test]
fn connection_pool_fields_map_as_istio_maps_them() {
    let out = clusters_for(&reviews_rule(
        "trafficPolicy:\n  connectionPool:\n    tcp:\n      maxConnections: 100\n      connectTimeout: 30ms\n      maxConnectionDuration: 1h\n      idleTimeout: 5m\n      tcpKeepalive:\n        probes: 3\n        time: 7200s\n        interval: 75s\n    http:\n      http1MaxPendingRequests: 10\n      http2MaxRequests: 1000\n      maxRequestsPerConnection: 10\n      maxRetries: 3\n      idleTimeout: 30s",
    ));
    let c = find(&out, "outbound|9080||reviews.default.svc.cluster.local");
    assert_eq!(c.connect_timeout.unwrap().nanos, 30_000_000);
    let t = &c.circuit_breakers.as_ref().unwrap().thresholds[0];
    assert_eq!(t.max_connections.unwrap().value, 100);
    assert_eq!(t.max_pending_requests.unwrap().value, 10);
    assert_eq!(t.max_requests.unwrap().value, 1000);
    assert_eq!(t.max_retries.unwrap().value, 3);
    let keepalive = c
        .upstream_connection_options
        .as_ref()
        .unwrap()
        .tcp_keepalive
        .unwrap();
    assert_eq!(
        (
            keepalive.keepalive_probes.unwrap().value,
            keepalive.keepalive_time.unwrap().value,
            keepalive.keepalive_interval.unwrap().value
        ),
        (3, 7200, 75)
    );
    let common = http_options(c)
        .unwrap()
        .common_http_protocol_options
        .unwrap();
    // HTTP idle timeout wins over TCP's.
    assert_eq!(common.idle_timeout.unwrap().seconds, 30);
    assert_eq!(common.max_requests_per_connection.unwrap().value, 10);
    assert_eq!(common.max_connection_duration.unwrap().seconds, 3600);
}

#[test]
fn http2_ports_upgrades_and_client_protocol() {
    let mut registry = bookinfo();
    registry.insert_service(service(
        "grpc.default.svc.cluster.local",
        7070,
        Some(Protocol::Grpc),
    ));
    registry.insert_service(service("sniffed.default.svc.cluster.local", 8000, None));
    let out = clusters(&push("", registry.clone()), &productpage());
    let is_h2 = |c: &Cluster| {
        matches!(
            http_options(c).and_then(|o| o.upstream_protocol_options),
            Some(UpstreamProtocolOptions::ExplicitHttpConfig(e)) if matches!(e.protocol_config, Some(ProtocolConfig::Http2ProtocolOptions(_)))
        )
    };
    assert!(is_h2(find(
        &out,
        "outbound|7070||grpc.default.svc.cluster.local"
    )));
    assert!(matches!(
        http_options(find(
            &out,
            "outbound|8000||sniffed.default.svc.cluster.local"
        ))
        .and_then(|o| o.upstream_protocol_options),
        Some(UpstreamProtocolOptions::UseDownstreamProtocolConfig(_))
    ));
    assert!(
        http_options(find(
            &out,
            "outbound|9080||reviews.default.svc.cluster.local"
        ))
        .is_none()
    );
    let grpc_rule = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: grpc\nspec:\n  host: grpc\n  trafficPolicy:\n    connectionPool:\n      http:\n        maxConcurrentStreams: 50\n        h2UpgradePolicy: DO_NOT_UPGRADE\n";
    let out = clusters(&push(grpc_rule, registry.clone()), &productpage());
    let Some(UpstreamProtocolOptions::ExplicitHttpConfig(e)) =
        http_options(find(&out, "outbound|7070||grpc.default.svc.cluster.local"))
            .unwrap()
            .upstream_protocol_options
    else {
        panic!()
    };
    let Some(ProtocolConfig::Http2ProtocolOptions(h2)) = e.protocol_config else {
        panic!()
    };
    assert_eq!(h2.max_concurrent_streams.unwrap().value, 50);
    let out = clusters_for(&reviews_rule(
        "trafficPolicy:\n  connectionPool:\n    http:\n      h2UpgradePolicy: UPGRADE",
    ));
    let c = find(&out, "outbound|9080||reviews.default.svc.cluster.local");
    assert!(is_h2(c));
    // mTLS to an HTTP/2 upstream offers h2 in ALPN.
    let alpn = auto_mtls_context(c)
        .common_tls_context
        .unwrap()
        .alpn_protocols;
    assert_eq!(alpn, ["istio-peer-exchange", "istio-h2", "istio", "h2"]);
    let out = clusters_for(&reviews_rule(
        "trafficPolicy:\n  connectionPool:\n    http:\n      useClientProtocol: true",
    ));
    assert!(matches!(
        http_options(find(
            &out,
            "outbound|9080||reviews.default.svc.cluster.local"
        ))
        .and_then(|o| o.upstream_protocol_options),
        Some(UpstreamProtocolOptions::UseDownstreamProtocolConfig(_))
    ));
}

#[test]
fn outlier_detection_fields_map_as_istio_maps_them() {
    let out = clusters_for(&reviews_rule(
        "trafficPolicy:\n  outlierDetection:\n    consecutive5xxErrors: 7\n    consecutiveGatewayErrors: 0\n    splitExternalLocalOriginErrors: true\n    consecutiveLocalOriginFailures: 4\n    interval: 5m\n    baseEjectionTime: 15m\n    maxEjectionPercent: 30\n    minHealthPercent: 20",
    ));
    let c = find(&out, "outbound|9080||reviews.default.svc.cluster.local");
    let od = c.outlier_detection.as_ref().unwrap();
    assert_eq!(od.enforcing_success_rate.unwrap().value, 0);
    assert_eq!(
        (
            od.consecutive_5xx.unwrap().value,
            od.enforcing_consecutive_5xx.unwrap().value
        ),
        (7, 100)
    );
    assert_eq!(
        (
            od.consecutive_gateway_failure.unwrap().value,
            od.enforcing_consecutive_gateway_failure.unwrap().value
        ),
        (0, 0)
    );
    assert!(od.split_external_local_origin_errors);
    assert_eq!(od.consecutive_local_origin_failure.unwrap().value, 4);
    assert_eq!(
        od.enforcing_consecutive_local_origin_failure.unwrap().value,
        100
    );
    assert_eq!(od.enforcing_local_origin_success_rate.unwrap().value, 0);
    assert_eq!(od.interval.unwrap().seconds, 300);
    assert_eq!(od.base_ejection_time.unwrap().seconds, 900);
    assert_eq!(od.max_ejection_percent.unwrap().value, 30);
    // Unready endpoints are sent (marked so), hence no panic routing, as Istio does then.
    let panic = c
        .common_lb_config
        .as_ref()
        .unwrap()
        .healthy_panic_threshold
        .unwrap();
    assert_eq!(panic.value, 0.0);
}

#[test]
fn tls_modes() {
    let tls = |body: &str| {
        let out = clusters_for(&reviews_rule(&format!("trafficPolicy:\n  tls:\n{body}")));
        find(&out, "outbound|9080||reviews.default.svc.cluster.local").clone()
    };
    let c = tls("    mode: DISABLE");
    assert!(c.transport_socket.is_none() && c.transport_socket_matches.is_empty());

    let c = tls("    mode: ISTIO_MUTUAL");
    assert!(c.transport_socket_matches.is_empty());
    let ctx = tls_context(&c).unwrap();
    assert_eq!(
        ctx.sni,
        "outbound_.9080_._.reviews.default.svc.cluster.local"
    );
    let common = ctx.common_tls_context.unwrap();
    assert_eq!(common.tls_certificate_sds_secret_configs[0].name, "default");
    let sds = common.tls_certificate_sds_secret_configs[0]
        .sds_config
        .clone()
        .unwrap();
    assert!(format!("{sds:?}").contains("sds-grpc"));
    let params = common.tls_params.unwrap();
    assert_eq!(
        (
            params.tls_minimum_protocol_version,
            params.tls_maximum_protocol_version
        ),
        (3, 4)
    );

    let c = tls("    mode: SIMPLE");
    let ctx = tls_context(&c).unwrap();
    assert_eq!(ctx.sni, "");
    let Some(ValidationContextType::CombinedValidationContext(v)) =
        ctx.common_tls_context.unwrap().validation_context_type
    else {
        panic!()
    };
    assert_eq!(
        v.validation_context_sds_secret_config.unwrap().name,
        "file-root:system"
    );
    let upstream = http_options(&c)
        .unwrap()
        .upstream_http_protocol_options
        .unwrap();
    assert!(upstream.auto_sni && upstream.auto_san_validation);

    let c = tls(
        "    mode: MUTUAL\n    clientCertificate: /etc/certs/cert.pem\n    privateKey: /etc/certs/key.pem\n    caCertificates: /etc/certs/ca.pem\n    sni: reviews.example.com\n    subjectAltNames: [reviews.example.com]",
    );
    let ctx = tls_context(&c).unwrap();
    assert_eq!(ctx.sni, "reviews.example.com");
    let common = ctx.common_tls_context.unwrap();
    assert_eq!(
        common.tls_certificate_sds_secret_configs[0].name,
        "file-cert:/etc/certs/cert.pem~/etc/certs/key.pem"
    );
    let Some(ValidationContextType::CombinedValidationContext(v)) = common.validation_context_type
    else {
        panic!()
    };
    assert_eq!(
        v.validation_context_sds_secret_config.unwrap().name,
        "file-root:/etc/certs/ca.pem"
    );
    assert!(http_options(&c).is_none());

    let c = tls("    mode: SIMPLE\n    insecureSkipVerify: true");
    let ctx = tls_context(&c).unwrap();
    assert!(matches!(
        ctx.common_tls_context.unwrap().validation_context_type,
        Some(ValidationContextType::ValidationContext(_))
    ));

    // A named credential is not given to every sidecar the rule reaches; gateways fetch
    // it over ADS.
    let c = tls("    mode: SIMPLE\n    credentialName: reviews-ca");
    assert!(c.transport_socket.is_none());
    let mut gw = productpage();
    gw.node_type = NodeType::Router;
    let rule = reviews_rule(
        "trafficPolicy:\n  tls:\n    mode: MUTUAL\n    credentialName: reviews-client",
    );
    let out = clusters(&push(&rule, bookinfo()), &gw);
    let ctx = tls_context(find(
        &out,
        "outbound|9080||reviews.default.svc.cluster.local",
    ))
    .unwrap();
    let common = ctx.common_tls_context.unwrap();
    let cert = &common.tls_certificate_sds_secret_configs[0];
    assert_eq!(cert.name, "kubernetes://reviews-client");
    assert!(matches!(
        cert.sds_config.as_ref().unwrap().config_source_specifier,
        Some(ConfigSourceSpecifier::Ads(_))
    ));
    let Some(ValidationContextType::CombinedValidationContext(v)) = common.validation_context_type
    else {
        panic!()
    };
    assert_eq!(
        v.validation_context_sds_secret_config.unwrap().name,
        "kubernetes://reviews-client-cacert"
    );
}

#[test]
fn port_level_policy_replaces_the_top_level_one() {
    let mut registry = bookinfo();
    let mut svc = service(REVIEWS, 9080, Some(Protocol::Http));
    svc.ports.push(ServicePort {
        name: "http-admin".into(),
        port: 9090,
        protocol: Some(Protocol::Http),
    });
    registry.insert_service(svc);
    let yaml = reviews_rule(
        "trafficPolicy:\n  loadBalancer:\n    simple: RANDOM\n  connectionPool:\n    tcp:\n      maxConnections: 5\n  portLevelSettings:\n  - port: {number: 9090}\n    loadBalancer:\n      simple: ROUND_ROBIN\nsubsets:\n- name: v1\n  labels: {version: v1}\n  trafficPolicy:\n    connectionPool:\n      tcp:\n        maxConnections: 7",
    );
    let out = clusters(&push(&yaml, registry), &productpage());
    let max_conn = |c: &Cluster| {
        c.circuit_breakers.as_ref().unwrap().thresholds[0]
            .max_connections
            .unwrap()
            .value
    };
    let main = find(&out, "outbound|9080||reviews.default.svc.cluster.local");
    assert_eq!(
        (main.lb_policy, max_conn(main)),
        (LbPolicy::Random as i32, 5)
    );
    let admin = find(&out, "outbound|9090||reviews.default.svc.cluster.local");
    // The port's settings stand alone: its pool falls back to defaults, not to the top level.
    assert_eq!(
        (admin.lb_policy, max_conn(admin)),
        (LbPolicy::RoundRobin as i32, u32::MAX)
    );
    let v1 = find(&out, "outbound|9080|v1|reviews.default.svc.cluster.local");
    assert_eq!((v1.lb_policy, max_conn(v1)), (LbPolicy::Random as i32, 7));
    let v1_admin = find(&out, "outbound|9090|v1|reviews.default.svc.cluster.local");
    assert_eq!(
        (v1_admin.lb_policy, max_conn(v1_admin)),
        (LbPolicy::RoundRobin as i32, 7)
    );
}

#[test]
fn service_entries_by_resolution() {
    let mut registry = Registry::default();
    let mut dns = service("api.example.com", 443, Some(Protocol::Tls));
    dns.resolution = Resolution::Dns;
    dns.location = Location::MeshExternal;
    registry.insert_service(dns);
    let mut ep = endpoint("api.example.com", 443, "", &[]);
    ep.labels.clear();
    registry.insert_endpoint(&Hostname::new("api.example.com"), "default", 443, ep);
    let mut rr = service("rr.example.com", 80, Some(Protocol::Http));
    rr.resolution = Resolution::DnsRoundRobin;
    rr.location = Location::MeshExternal;
    registry.insert_service(rr);
    registry.insert_endpoint(
        &Hostname::new("rr.example.com"),
        "default",
        80,
        endpoint("rr.example.com", 80, "", &[]),
    );
    let mut empty = service("nowhere.example.com", 80, Some(Protocol::Http));
    empty.resolution = Resolution::Dns;
    registry.insert_service(empty);
    let mut pass = service("*.internal.example.com", 5432, Some(Protocol::Tcp));
    pass.resolution = Resolution::Passthrough;
    registry.insert_service(pass);
    let out = clusters(&push("", registry), &productpage());

    let c = find(&out, "outbound|443||api.example.com");
    assert_eq!(discovery(c), DiscoveryType::StrictDns);
    assert!(c.eds_cluster_config.is_none());
    let la = c.load_assignment.as_ref().unwrap();
    assert_eq!(la.cluster_name, c.name);
    assert!(format!("{:?}", la.endpoints[0].lb_endpoints[0]).contains("api.example.com"));
    #[allow(deprecated)]
    let (refresh, ttl) = (c.dns_refresh_rate.unwrap().seconds, c.respect_dns_ttl);
    assert_eq!((refresh, ttl), (60, true));
    assert_eq!(c.dns_lookup_family, 1, "V4_ONLY for an IPv4 proxy");
    assert_eq!(
        c.typed_dns_resolver_config.as_ref().unwrap().name,
        "envoy.network.dns_resolver.cares"
    );
    assert!(matches!(
        istio_field(c, "external").and_then(|v| v.kind.as_ref()),
        Some(Kind::BoolValue(true))
    ));
    // Outside the mesh: no automatic mTLS.
    assert!(c.transport_socket.is_none() && c.transport_socket_matches.is_empty());
    assert_eq!(
        str_value(istio_field(c, "services").and_then(|v| match &v.kind {
            Some(Kind::ListValue(l)) => match &l.values[0].kind {
                Some(Kind::StructValue(s)) => s.fields.get("name"),
                _ => None,
            },
            _ => None,
        })),
        Some("api.example.com")
    );

    assert_eq!(
        discovery(find(&out, "outbound|80||rr.example.com")),
        DiscoveryType::LogicalDns
    );
    assert!(
        !names(&out).contains(&"outbound|80||nowhere.example.com"),
        "DNS clusters without endpoints are dropped"
    );
    let p = find(&out, "outbound|5432||*.internal.example.com");
    assert_eq!(discovery(p), DiscoveryType::OriginalDst);
    assert_eq!(p.lb_policy, LbPolicy::ClusterProvided as i32);
}

#[test]
fn rule_lookup_prefers_proxy_namespace_then_service_then_root_and_honours_export() {
    let rule = |ns: &str, name: &str, host: &str, extra: &str| {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: {name}\n  namespace: {ns}\nspec:\n  host: \"{host}\"\n{extra}---\n"
        )
    };
    let mut proxy = productpage();
    proxy.namespace = "frontend".into();
    let svc = service(REVIEWS, 9080, Some(Protocol::Http));
    let lookup = |yaml: &str, proxy: &Proxy| {
        let push = push(yaml, bookinfo());
        let rules = DestinationRules::new(&push);
        rules
            .for_service(proxy, &svc)
            .map(|r| format!("{}/{}", r.namespace, r.name))
    };
    let all = [
        rule("istio-system", "root", "*.svc.cluster.local", ""),
        rule("default", "svc-ns", "reviews", ""),
        rule("frontend", "local-wild", "*.default.svc.cluster.local", ""),
    ]
    .concat();
    assert_eq!(lookup(&all, &proxy).as_deref(), Some("frontend/local-wild"));
    assert_eq!(
        lookup(&all, &productpage()).as_deref(),
        Some("default/svc-ns")
    );
    let private = [
        rule("istio-system", "root", "*.svc.cluster.local", ""),
        rule("default", "svc-ns", "reviews", "  exportTo: [\".\"]\n"),
    ]
    .concat();
    assert_eq!(
        lookup(&private, &proxy).as_deref(),
        Some("istio-system/root")
    );
    let specific = [
        rule("istio-system", "a-wide", "*.local", ""),
        rule("istio-system", "b-narrow", "*.cluster.local", ""),
    ]
    .concat();
    assert_eq!(
        lookup(&specific, &proxy).as_deref(),
        Some("istio-system/b-narrow")
    );
    let selected = [
        rule("default", "all", "reviews", ""),
        rule(
            "default",
            "selected",
            "reviews",
            "  workloadSelector:\n    matchLabels: {app: productpage}\n",
        ),
    ]
    .concat();
    assert_eq!(
        lookup(&selected, &productpage()).as_deref(),
        Some("default/selected")
    );
    assert_eq!(lookup(&selected, &proxy).as_deref(), Some("default/all"));
}

#[test]
fn istios_destination_rule_all_sample() {
    let Some(dir) = istio_data() else { return };
    let yaml =
        std::fs::read_to_string(dir.join("samples/bookinfo/networking/destination-rule-all.yaml"))
            .unwrap();
    let mut registry = bookinfo();
    for (name, versions) in [("ratings", &["v1", "v2"][..]), ("details", &["v1"][..])] {
        let host = format!("{name}.default.svc.cluster.local");
        registry.insert_service(service(&host, 9080, Some(Protocol::Http)));
        for v in versions {
            registry.insert_endpoint(
                &Hostname::new(&host),
                "default",
                9080,
                endpoint(
                    "10.0.1.1",
                    9080,
                    &format!("{name}-{v}"),
                    &[("app", name), ("version", v)],
                ),
            );
        }
    }
    let push = push(&yaml, registry);
    let out = clusters(&push, &productpage());
    let outbound: Vec<&str> = names(&out)
        .into_iter()
        .filter(|n| n.starts_with("outbound|"))
        .collect();
    assert_eq!(
        outbound,
        [
            "outbound|9080||details.default.svc.cluster.local",
            "outbound|9080|v1|details.default.svc.cluster.local",
            "outbound|9080|v2|details.default.svc.cluster.local",
            "outbound|9080||productpage.default.svc.cluster.local",
            "outbound|9080|v1|productpage.default.svc.cluster.local",
            "outbound|9080||ratings.default.svc.cluster.local",
            "outbound|9080|v1|ratings.default.svc.cluster.local",
            "outbound|9080|v2|ratings.default.svc.cluster.local",
            "outbound|9080|v2-mysql|ratings.default.svc.cluster.local",
            "outbound|9080|v2-mysql-vm|ratings.default.svc.cluster.local",
            "outbound|9080||reviews.default.svc.cluster.local",
            "outbound|9080|v1|reviews.default.svc.cluster.local",
            "outbound|9080|v2|reviews.default.svc.cluster.local",
            "outbound|9080|v3|reviews.default.svc.cluster.local",
        ]
    );
    let names_owned: Vec<String> = outbound.iter().map(|s| s.to_string()).collect();
    let eds = crate::translate::endpoint::endpoints(&push, &productpage(), &names_owned);
    let count = |name: &str| {
        eds.iter()
            .find(|c| c.cluster_name == name)
            .map(|c| {
                c.endpoints
                    .iter()
                    .map(|l| l.lb_endpoints.len())
                    .sum::<usize>()
            })
            .unwrap()
    };
    assert_eq!(count("outbound|9080||reviews.default.svc.cluster.local"), 3);
    assert_eq!(
        count("outbound|9080|v3|reviews.default.svc.cluster.local"),
        1
    );
    assert_eq!(
        count("outbound|9080|v2-mysql|ratings.default.svc.cluster.local"),
        0
    );
}

#[test]
fn every_cluster_encodes() {
    let out = clusters_for(&reviews_rule(
        "trafficPolicy:\n  tls:\n    mode: ISTIO_MUTUAL\nsubsets:\n- name: v1\n  labels: {version: v1}",
    ));
    for c in &out {
        let bytes = c.encode_to_vec();
        assert_eq!(&Cluster::decode(bytes.as_slice()).unwrap(), c);
    }
}

#[test]
fn without_auto_mtls_mesh_clusters_are_plain_text() {
    let mut p = push(&reviews_rule(""), bookinfo());
    p.mesh = Arc::new(MeshConfig::from(mizzen_api::mesh::MeshConfig {
        enable_auto_mtls: false,
        ..Default::default()
    }));
    let out = clusters(&p, &productpage());
    let c = find(&out, "outbound|9080||reviews.default.svc.cluster.local");
    assert!(c.transport_socket_matches.is_empty() && c.transport_socket.is_none());
}
