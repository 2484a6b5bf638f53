//! LDS tests: Istio's capture-mode shapes, local mode's bound listeners, TCP and TLS
//! routes as filter chains.

use mizzen_api::types::Protocol;
use mizzen_xds::pb::envoy::config::core::v3::{address, socket_address};
use mizzen_xds::pb::envoy::config::listener::v3::{Filter, FilterChain, Listener, filter};
use mizzen_xds::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, http_connection_manager, http_filter,
};
use mizzen_xds::pb::envoy::extensions::filters::network::tcp_proxy::v3::{TcpProxy, tcp_proxy};
use prost::Message;

use super::*;
use crate::translate::route::tests::{bookinfo_registry, productpage_proxy, push_of, service};

fn find<'a>(listeners: &'a [Listener], name: &str) -> &'a Listener {
    listeners
        .iter()
        .find(|l| l.name == name)
        .unwrap_or_else(|| {
            let names: Vec<&str> = listeners.iter().map(|l| l.name.as_str()).collect();
            panic!("no listener {name} in {names:?}")
        })
}

fn socket(l: &Listener) -> (String, u32) {
    match l.address.as_ref().and_then(|a| a.address.as_ref()) {
        Some(address::Address::SocketAddress(s)) => match s.port_specifier {
            Some(socket_address::PortSpecifier::PortValue(p)) => (s.address.clone(), p),
            _ => panic!("no port"),
        },
        other => panic!("not a socket address: {other:?}"),
    }
}

fn typed(f: &Filter) -> &[u8] {
    match &f.config_type {
        Some(filter::ConfigType::TypedConfig(any)) => any.value.as_slice(),
        other => panic!("untyped filter {other:?}"),
    }
}

fn hcm(chain: &FilterChain) -> HttpConnectionManager {
    let f = chain.filters.last().expect("a filter");
    assert_eq!(f.name, "envoy.filters.network.http_connection_manager");
    HttpConnectionManager::decode(typed(f)).unwrap()
}

fn rds_name(h: &HttpConnectionManager) -> &str {
    match &h.route_specifier {
        Some(http_connection_manager::RouteSpecifier::Rds(rds)) => &rds.route_config_name,
        other => panic!("not RDS: {other:?}"),
    }
}

fn tcp(chain: &FilterChain) -> TcpProxy {
    let f = chain.filters.last().expect("a filter");
    assert_eq!(f.name, "envoy.filters.network.tcp_proxy");
    TcpProxy::decode(typed(f)).unwrap()
}

fn tcp_cluster(chain: &FilterChain) -> String {
    match tcp(chain).cluster_specifier {
        Some(tcp_proxy::ClusterSpecifier::Cluster(c)) => c,
        other => panic!("not one cluster: {other:?}"),
    }
}

#[test]
fn redirect_mode_has_istios_capture_listeners() {
    let push = push_of(bookinfo_registry(), "");
    let ls = listeners(&push, &productpage_proxy());

    let vo = find(&ls, "virtualOutbound");
    assert_eq!(socket(vo), ("0.0.0.0".into(), 15001));
    assert_eq!(vo.use_original_dst, Some(BoolValue { value: true }));
    assert_eq!(vo.filter_chains[0].name, "virtualOutbound-blackhole");
    assert_eq!(tcp_cluster(&vo.filter_chains[0]), "BlackHoleCluster");
    assert_eq!(tcp_cluster(&vo.filter_chains[1]), "PassthroughCluster");

    let http = find(&ls, "0.0.0.0_9080");
    assert_eq!(http.bind_to_port, Some(BoolValue { value: false }));
    assert_eq!(http.traffic_direction, TrafficDirection::Outbound as i32);
    let [chain] = http.filter_chains.as_slice() else {
        panic!("{http:?}")
    };
    let m = chain.filter_chain_match.as_ref().unwrap();
    assert_eq!(m.application_protocols, ["http/1.1", "h2c"]);
    let h = hcm(chain);
    assert_eq!(rds_name(&h), "9080");
    assert_eq!(h.stat_prefix, "outbound_0.0.0.0_9080");
    let filters: Vec<&str> = h.http_filters.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(
        filters,
        [
            "envoy.filters.http.fault",
            "envoy.filters.http.cors",
            "envoy.filters.http.router"
        ]
    );
    let fallback = http.default_filter_chain.as_ref().unwrap();
    assert_eq!(fallback.name, "PassthroughFilterChain");
    assert_eq!(tcp_cluster(fallback), "PassthroughCluster");
    let inspectors: Vec<&str> = http
        .listener_filters
        .iter()
        .map(|f| f.name.as_str())
        .collect();
    assert_eq!(
        inspectors,
        [
            "envoy.filters.listener.tls_inspector",
            "envoy.filters.listener.http_inspector"
        ]
    );

    let mysql = find(&ls, "10.0.0.9_3306");
    assert_eq!(mysql.filter_chains.len(), 1);
    assert_eq!(
        tcp_cluster(&mysql.filter_chains[0]),
        "outbound|3306||mysqldb.default.svc.cluster.local"
    );
    assert!(mysql.listener_filters.is_empty());

    let vi = find(&ls, "virtualInbound");
    assert_eq!(socket(vi), ("0.0.0.0".into(), 15006));
    assert_eq!(
        vi.listener_filters[0].name,
        "envoy.filters.listener.original_dst"
    );
    let chain = vi
        .filter_chains
        .iter()
        .find(|c| c.name == "0.0.0.0_9080")
        .expect("inbound chain for 9080");
    assert_eq!(
        chain.filter_chain_match.as_ref().unwrap().destination_port,
        Some(UInt32Value { value: 9080 })
    );
    let h = hcm(chain);
    let Some(http_connection_manager::RouteSpecifier::RouteConfig(rc)) = &h.route_specifier else {
        panic!()
    };
    assert_eq!(rc.name, "inbound|9080||");
    assert_eq!(rc.virtual_hosts[0].name, "inbound|http|9080");
    assert!(format!("{:?}", rc.virtual_hosts[0].routes[0]).contains("inbound|9080||"));
    assert_eq!(h.server_name, "istio-envoy");
    // The app learns its caller from x-forwarded-client-cert, as behind Istio.
    let xfcc = h.set_current_client_cert_details.as_ref().expect("set");
    assert!(xfcc.uri && xfcc.dns && xfcc.subject.is_some_and(|s| s.value));
    let last = vi.filter_chains.last().unwrap();
    assert_eq!(tcp_cluster(last), "InboundPassthroughCluster");
    assert!(ls.iter().all(|l| !l.name.ends_with("_15080")));
}

#[test]
fn sniffed_ports_get_tcp_and_http_chains_on_the_service_address() {
    let mut registry = bookinfo_registry();
    registry.insert_service(service("echo", "10.0.0.8", &[("web", 8000, None)]));
    let push = push_of(registry, "");
    let ls = listeners(&push, &productpage_proxy());
    let echo = find(&ls, "10.0.0.8_8000");
    let http = echo
        .filter_chains
        .iter()
        .find(|c| {
            !c.filter_chain_match
                .as_ref()
                .unwrap()
                .application_protocols
                .is_empty()
        })
        .expect("HTTP chain");
    assert_eq!(rds_name(&hcm(http)), "echo.default.svc.cluster.local:8000");
    let tcp_chain = echo
        .default_filter_chain
        .as_ref()
        .expect("TCP default chain");
    assert_eq!(
        tcp_cluster(tcp_chain),
        "outbound|8000||echo.default.svc.cluster.local"
    );
}

#[test]
fn capture_mode_none_binds_on_the_workload_address() {
    let yaml = r#"
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: productpage, namespace: default}
spec:
  workloadSelector: {labels: {app: productpage}}
  ingress:
  - port: {number: 9080, protocol: HTTP, name: http}
    defaultEndpoint: 127.0.0.1:19080
    captureMode: NONE
  egress:
  - port: {number: 9080, protocol: HTTP, name: http}
    bind: 127.0.2.1
    captureMode: NONE
    hosts: ["./*"]
  - port: {number: 3306, protocol: TCP, name: tcp}
    bind: 127.0.2.1
    captureMode: NONE
    hosts: ["./mysqldb.default.svc.cluster.local"]
"#;
    let push = push_of(bookinfo_registry(), yaml);
    let mut proxy = productpage_proxy();
    proxy.ips = vec!["127.0.1.5".parse().unwrap()];
    proxy.interception_mode = InterceptionMode::None;
    let ls = listeners(&push, &proxy);
    let names: Vec<&str> = ls.iter().map(|l| l.name.as_str()).collect();
    assert!(
        !names.contains(&"virtualOutbound") && !names.contains(&"virtualInbound"),
        "{names:?}"
    );

    let inbound = find(&ls, "127.0.1.5_9080");
    assert_eq!(socket(inbound), ("127.0.1.5".into(), 9080));
    assert_eq!(inbound.bind_to_port, None, "binds (Envoy's default)");
    assert_eq!(inbound.traffic_direction, TrafficDirection::Inbound as i32);
    let h = hcm(&inbound.filter_chains[0]);
    assert!(format!("{h:?}").contains("inbound|9080||"));

    let egress = find(&ls, "127.0.2.1_9080");
    assert_eq!(egress.bind_to_port, None);
    let [chain] = egress.filter_chains.as_slice() else {
        panic!("{egress:?}")
    };
    assert_eq!(rds_name(&hcm(chain)), "9080");
    assert!(egress.default_filter_chain.is_none());

    let mysql = find(&ls, "127.0.2.1_3306");
    assert_eq!(
        tcp_cluster(&mysql.filter_chains[0]),
        "outbound|3306||mysqldb.default.svc.cluster.local"
    );

    let proxy_listener = find(&ls, "127.0.1.5_15080");
    let h = hcm(&proxy_listener.filter_chains[0]);
    assert_eq!(rds_name(&h), HTTP_PROXY_ROUTE);
    assert_eq!(
        h.http_protocol_options.unwrap().allow_absolute_url,
        Some(BoolValue { value: true })
    );
}

#[test]
fn an_egress_listener_on_the_workloads_own_port_gives_way_to_the_inbound_one() {
    // As `mizzen up` registers a replica: ingress and egress both on its own address.
    let yaml = r#"
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: productpage, namespace: default}
spec:
  workloadSelector: {labels: {app: productpage}}
  ingress:
  - port: {number: 9080, protocol: HTTP, name: http}
    defaultEndpoint: 127.0.0.1:19080
    captureMode: NONE
  egress:
  - bind: 127.0.1.5
    captureMode: NONE
    hosts: ["*/*"]
"#;
    let push = push_of(bookinfo_registry(), yaml);
    let mut proxy = productpage_proxy();
    proxy.ips = vec!["127.0.1.5".parse().unwrap()];
    proxy.interception_mode = InterceptionMode::None;
    let ls = listeners(&push, &proxy);
    let own: Vec<&Listener> = ls.iter().filter(|l| l.name == "127.0.1.5_9080").collect();
    let [own] = own.as_slice() else {
        panic!("one listener named 127.0.1.5_9080: {own:?}")
    };
    assert_eq!(own.traffic_direction, TrafficDirection::Inbound as i32);
}

#[test]
fn local_mode_without_sidecar_binds_ingress_on_the_workload_address() {
    let push = push_of(bookinfo_registry(), "");
    let mut proxy = productpage_proxy();
    proxy.interception_mode = InterceptionMode::None;
    let ls = listeners(&push, &proxy);
    let inbound = find(&ls, "10.1.0.1_9080");
    assert_eq!(socket(inbound), ("10.1.0.1".into(), 9080));
    let egress = find(&ls, "127.0.0.1_9080");
    assert_eq!(egress.bind_to_port, None);
    find(&ls, "10.1.0.1_15080");
}

const TCP_AND_TLS: &str = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: mysql, namespace: default}
spec:
  hosts: [mysqldb]
  tcp:
  - match: [{port: 3306, destinationSubnets: [10.0.0.9/32], sourceLabels: {app: productpage}}]
    route:
    - {destination: {host: mysqldb, subset: v1}, weight: 75}
    - {destination: {host: mysqldb, subset: v2}, weight: 25}
  - match: [{sourceLabels: {app: nobody}}]
    route: [{destination: {host: mysqldb, subset: never}}]
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: secure, namespace: default}
spec:
  hosts: [secure]
  tls:
  - match: [{port: 443, sniHosts: [secure.default.svc.cluster.local]}]
    route: [{destination: {host: secure, subset: v2}}]
"#;

#[test]
fn tcp_and_tls_routes_become_filter_chains() {
    let mut registry = bookinfo_registry();
    registry.insert_service(service(
        "secure",
        "10.0.0.10",
        &[("tls", 443, Some(Protocol::Tls))],
    ));
    let push = push_of(registry, TCP_AND_TLS);
    let ls = listeners(&push, &productpage_proxy());

    let mysql = find(&ls, "10.0.0.9_3306");
    let routed = &mysql.filter_chains[0];
    let m = routed.filter_chain_match.as_ref().unwrap();
    assert_eq!(m.prefix_ranges[0].address_prefix, "10.0.0.9");
    assert_eq!(
        m.prefix_ranges[0].prefix_len,
        Some(UInt32Value { value: 32 })
    );
    let Some(tcp_proxy::ClusterSpecifier::WeightedClusters(w)) = tcp(routed).cluster_specifier
    else {
        panic!()
    };
    let weights: Vec<(&str, u32)> = w
        .clusters
        .iter()
        .map(|c| (c.name.as_str(), c.weight))
        .collect();
    assert_eq!(
        weights,
        [
            ("outbound|3306|v1|mysqldb.default.svc.cluster.local", 75),
            ("outbound|3306|v2|mysqldb.default.svc.cluster.local", 25),
        ]
    );
    // The non-matching source is left out; the service's default chain catches the rest.
    assert!(!format!("{mysql:?}").contains("never"));
    let default = mysql.default_filter_chain.as_ref().unwrap();
    assert_eq!(
        tcp_cluster(default),
        "outbound|3306||mysqldb.default.svc.cluster.local"
    );

    let secure = find(&ls, "10.0.0.10_443");
    let sni = &secure.filter_chains[0];
    assert_eq!(
        sni.filter_chain_match.as_ref().unwrap().server_names,
        ["secure.default.svc.cluster.local"]
    );
    assert_eq!(
        tcp_cluster(sni),
        "outbound|443|v2|secure.default.svc.cluster.local"
    );
    assert_eq!(
        secure.listener_filters[0].name,
        "envoy.filters.listener.tls_inspector"
    );
    assert_eq!(
        tcp_cluster(secure.default_filter_chain.as_ref().unwrap()),
        "outbound|443||secure.default.svc.cluster.local"
    );
}

fn filter_names(filters: &[Filter]) -> Vec<&str> {
    filters.iter().map(|f| f.name.as_str()).collect()
}

fn http_filter_names(h: &HttpConnectionManager) -> Vec<&str> {
    h.http_filters.iter().map(|f| f.name.as_str()).collect()
}

fn istio_productpage() -> Proxy {
    let mut p = productpage_proxy();
    p.istio_version = "1.28.0".into();
    p
}

fn stats_config(h: &HttpConnectionManager) -> mizzen_xds::istio::PluginConfig {
    let f = h
        .http_filters
        .iter()
        .find(|f| f.name == "istio.stats")
        .unwrap();
    match &f.config_type {
        Some(http_filter::ConfigType::TypedConfig(any)) => {
            assert_eq!(any.type_url, "type.googleapis.com/stats.PluginConfig");
            mizzen_xds::istio::PluginConfig::decode(any.value.as_slice()).unwrap()
        }
        other => panic!("untyped {other:?}"),
    }
}

/// The exchange's TypedStruct: its type and the discovery/propagation keys it sets.
fn exchange_keys(h: &HttpConnectionManager) -> (String, Vec<String>) {
    let f = &h.http_filters[0];
    assert_eq!(f.name, "istio.metadata_exchange");
    let Some(http_filter::ConfigType::TypedConfig(any)) = &f.config_type else {
        panic!("untyped exchange");
    };
    assert_eq!(any.type_url, "type.googleapis.com/udpa.type.v1.TypedStruct");
    let typed = mizzen_xds::istio::TypedStruct::decode(any.value.as_slice()).unwrap();
    let mut keys: Vec<String> = typed.value.unwrap().fields.into_keys().collect();
    keys.sort();
    (typed.type_url, keys)
}

#[test]
fn istio_proxies_get_the_telemetry_filters_where_istio_puts_them() {
    let mut registry = bookinfo_registry();
    registry.insert_service(service(
        "mongodb",
        "10.0.0.9",
        &[("mongo", 27017, Some(Protocol::Tcp))],
    ));
    let push = push_of(registry, "");
    let ls = listeners(&push, &istio_productpage());

    // Outbound HTTP: exchange first (upstream), stats last before the router, the Host
    // header a fallback for the service.
    let out = hcm(&find(&ls, "0.0.0.0_9080").filter_chains[0]);
    assert_eq!(
        http_filter_names(&out),
        [
            "istio.metadata_exchange",
            "envoy.filters.http.fault",
            "envoy.filters.http.cors",
            "istio.stats",
            "envoy.filters.http.router"
        ]
    );
    assert_eq!(
        exchange_keys(&out),
        (
            "type.googleapis.com/io.istio.http.peer_metadata.Config".to_owned(),
            vec![
                "upstream_discovery".to_owned(),
                "upstream_propagation".to_owned()
            ]
        )
    );
    assert!(!stats_config(&out).disable_host_header_fallback);

    // Outbound TCP: stats before the proxy; the exchange is the cluster's.
    let mongo = find(&ls, "10.0.0.9_27017");
    let chain = mongo
        .filter_chains
        .iter()
        .chain(&mongo.default_filter_chain)
        .find(|c| tcp_cluster(c).contains("mongodb"))
        .unwrap();
    assert_eq!(
        filter_names(&chain.filters),
        ["istio.stats", "envoy.filters.network.tcp_proxy"]
    );

    // Inbound: HTTP chains exchange downstream and skip the Host header; TCP ones (the
    // passthrough) exchange in band first.
    let vi = find(&ls, "virtualInbound");
    let http_in = vi
        .filter_chains
        .iter()
        .find(|c| c.filters.last().unwrap().name == "envoy.filters.network.http_connection_manager")
        .unwrap();
    let inbound = hcm(http_in);
    assert_eq!(inbound.http_filters[0].name, "istio.metadata_exchange");
    assert_eq!(
        exchange_keys(&inbound).1,
        ["downstream_discovery", "downstream_propagation"]
    );
    assert_eq!(
        http_filter_names(&inbound)[inbound.http_filters.len() - 2..],
        ["istio.stats", "envoy.filters.http.router"]
    );
    assert!(stats_config(&inbound).disable_host_header_fallback);
    let passthrough = vi.filter_chains.last().unwrap();
    assert_eq!(
        filter_names(&passthrough.filters),
        [
            "istio.metadata_exchange",
            "istio.stats",
            "envoy.filters.network.tcp_proxy"
        ]
    );
}

#[test]
fn a_plain_envoy_gets_none_of_istios_own_filters() {
    let push = push_of(bookinfo_registry(), "");
    let ls = listeners(&push, &productpage_proxy());
    let names: Vec<String> = ls
        .iter()
        .flat_map(|l| l.filter_chains.iter().chain(&l.default_filter_chain))
        .flat_map(|c| &c.filters)
        .flat_map(|f| {
            let mut names = vec![f.name.clone()];
            if f.name == "envoy.filters.network.http_connection_manager" {
                let h = HttpConnectionManager::decode(typed(f)).unwrap();
                names.extend(h.http_filters.into_iter().map(|f| f.name));
            }
            names
        })
        .collect();
    assert!(names.iter().all(|n| !n.starts_with("istio.")), "{names:?}");
}

/// Telemetry metrics as the stats config carries them: a client-side override of
/// REQUEST_COUNT (a tag removed, one set, one with an expression the proxy cannot
/// evaluate left out), and all metrics off on the server side (no stats filter).
#[test]
fn telemetry_metrics_shape_the_stats_config() {
    let push = push_of(
        bookinfo_registry(),
        r#"
apiVersion: telemetry.istio.io/v1
kind: Telemetry
metadata: {name: mesh-default, namespace: istio-system}
spec:
  metrics:
  - providers: [{name: prometheus}]
    overrides:
    - match: {metric: REQUEST_COUNT, mode: CLIENT}
      tagOverrides:
        request_protocol: {operation: REMOVE}
        request_host: {value: request.host}
        port: {value: "string(destination.port)"}
    - match: {mode: SERVER}
      disabled: true
"#,
    );
    let ls = listeners(&push, &istio_productpage());
    let out = hcm(&find(&ls, "0.0.0.0_9080").filter_chains[0]);
    let config = stats_config(&out);
    let [metric] = &config.metrics[..] else {
        panic!("one override expected: {:?}", config.metrics);
    };
    assert_eq!(metric.name, "requests_total");
    assert!(!metric.drop);
    assert_eq!(metric.tags_to_remove, ["request_protocol"]);
    assert_eq!(
        metric.dimensions,
        [("request_host".to_owned(), "request.host".to_owned())].into()
    );

    let vi = find(&ls, "virtualInbound");
    let inbound = vi
        .filter_chains
        .iter()
        .find(|c| c.filters.last().unwrap().name == "envoy.filters.network.http_connection_manager")
        .unwrap();
    let names: Vec<String> = hcm(inbound)
        .http_filters
        .into_iter()
        .map(|f| f.name)
        .collect();
    assert!(
        names.contains(&"istio.metadata_exchange".to_owned()),
        "{names:?}"
    );
    assert!(!names.contains(&"istio.stats".to_owned()), "{names:?}");
}
