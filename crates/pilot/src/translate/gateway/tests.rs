//! Gateway LDS and RDS: Istio's Bookinfo gateway, host intersection and namespaces,
//! gateway selection, merging and collapsing of virtual hosts.

use mizzen_api::testdata::istio_data;
use mizzen_api::types::Labels;
use mizzen_xds::pb::envoy::config::core::v3::{address, socket_address};
use mizzen_xds::pb::envoy::config::listener::v3::{Listener, filter};
use mizzen_xds::pb::envoy::config::route::v3::{
    Route, RouteConfiguration, VirtualHost, route, route_action, route_match,
};
use mizzen_xds::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, http_connection_manager, http_filter,
};
use prost::Message;

use super::servers::resolve_gateway_name;
use super::*;
use crate::model::{InterceptionMode, Proxy, PushContext};
use crate::translate::route::tests::{bookinfo_registry, push_of};

/// The ingress gateway as Mizzen's local mesh runs it (see the issue 6 contract).
fn ingress(mode: InterceptionMode) -> Proxy {
    let mut p = Proxy::from_node_id(
        "router~127.0.0.1~istio-ingressgateway-1.istio-system~istio-system.svc.cluster.local",
    )
    .expect("valid node id");
    p.labels = Labels::from([("istio".to_owned(), "ingressgateway".to_owned())]);
    p.interception_mode = mode;
    p
}

fn route_config(push: &PushContext, name: &str) -> RouteConfiguration {
    let mut all = routes(
        push,
        &ingress(InterceptionMode::Redirect),
        &[name.to_owned()],
    );
    assert_eq!(all.len(), 1);
    all.remove(0)
}

fn hcm(listener: &Listener) -> HttpConnectionManager {
    let [chain] = &listener.filter_chains[..] else {
        panic!("one filter chain expected: {listener:?}");
    };
    match &chain.filters[0].config_type {
        Some(filter::ConfigType::TypedConfig(any)) => {
            HttpConnectionManager::decode(&any.value[..]).expect("an HCM")
        }
        other => panic!("no typed config: {other:?}"),
    }
}

fn rds_name(h: &HttpConnectionManager) -> &str {
    match &h.route_specifier {
        Some(http_connection_manager::RouteSpecifier::Rds(rds)) => &rds.route_config_name,
        other => panic!("not RDS: {other:?}"),
    }
}

fn bound(listener: &Listener) -> (String, u32) {
    match listener.address.as_ref().and_then(|a| a.address.as_ref()) {
        Some(address::Address::SocketAddress(s)) => {
            let Some(socket_address::PortSpecifier::PortValue(port)) = s.port_specifier else {
                panic!("no port: {s:?}");
            };
            (s.address.clone(), port)
        }
        other => panic!("not a socket address: {other:?}"),
    }
}

fn cluster(r: &Route) -> &str {
    match &r.action {
        Some(route::Action::Route(a)) => match &a.cluster_specifier {
            Some(route_action::ClusterSpecifier::Cluster(c)) => c,
            other => panic!("not one cluster: {other:?}"),
        },
        other => panic!("not a route action: {other:?}"),
    }
}

fn path(r: &Route) -> String {
    match r.r#match.as_ref().and_then(|m| m.path_specifier.as_ref()) {
        Some(route_match::PathSpecifier::Path(p)) => format!("={p}"),
        Some(route_match::PathSpecifier::Prefix(p)) => format!("{p}*"),
        other => format!("{other:?}"),
    }
}

fn vhost<'a>(rc: &'a RouteConfiguration, name: &str) -> &'a VirtualHost {
    rc.virtual_hosts
        .iter()
        .find(|v| v.name == name)
        .unwrap_or_else(|| {
            let names: Vec<&str> = rc.virtual_hosts.iter().map(|v| v.name.as_str()).collect();
            panic!("no virtual host {name} in {names:?}")
        })
}

fn bookinfo_gateway_push() -> Option<PushContext> {
    let file = istio_data()?.join("samples/bookinfo/networking/bookinfo-gateway.yaml");
    let yaml = std::fs::read_to_string(&file).expect("bookinfo-gateway.yaml");
    Some(push_of(bookinfo_registry(), &yaml))
}

#[test]
fn bookinfo_gateway_exposes_productpage_on_8080() {
    let Some(push) = bookinfo_gateway_push() else {
        return;
    };
    let proxy = ingress(InterceptionMode::Redirect);
    let [listener] = &listeners(&push, &proxy)[..] else {
        panic!("one listener expected");
    };
    assert_eq!(listener.name, "0.0.0.0_8080");
    assert_eq!(bound(listener), ("0.0.0.0".to_owned(), 8080));
    let h = hcm(listener);
    assert_eq!(rds_name(&h), "http.8080");
    assert_eq!(h.stat_prefix, "outbound_0.0.0.0_8080");
    assert_eq!(h.use_remote_address.map(|b| b.value), Some(true));

    let rc = route_config(&push, "http.8080");
    assert_eq!(rc.name, "http.8080");
    assert!(rc.ignore_port_in_host_matching);
    let [vh] = &rc.virtual_hosts[..] else {
        panic!("one virtual host expected: {rc:?}");
    };
    assert_eq!(vh.name, "*:8080");
    assert_eq!(vh.domains, ["*"]);
    let paths: Vec<String> = vh.routes.iter().map(path).collect();
    assert_eq!(
        paths,
        [
            "=/productpage",
            "/static*",
            "=/login",
            "=/logout",
            "/api/v1/products*"
        ]
    );
    for r in &vh.routes {
        assert_eq!(
            cluster(r),
            "outbound|9080||productpage.default.svc.cluster.local"
        );
    }
}

#[test]
fn in_local_mode_the_gateway_binds_its_own_address() {
    let Some(push) = bookinfo_gateway_push() else {
        return;
    };
    let proxy = ingress(InterceptionMode::None);
    assert!(binds_own_address(&proxy));
    let [listener] = &listeners(&push, &proxy)[..] else {
        panic!("one listener expected");
    };
    assert_eq!(listener.name, "127.0.0.1_8080");
    assert_eq!(bound(listener), ("127.0.0.1".to_owned(), 8080));
    assert_eq!(rds_name(&hcm(listener)), "http.8080");
}

#[test]
fn only_gateways_selecting_the_proxy_apply() {
    let push = push_of(
        bookinfo_registry(),
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: egress, namespace: istio-system}\nspec:\n  selector: {istio: egressgateway}\n  servers:\n  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: ['*']\n",
    );
    assert!(listeners(&push, &ingress(InterceptionMode::Redirect)).is_empty());
    // A route nobody serves is answered empty, as Istio does while a listener drains.
    let rc = route_config(&push, "http.80");
    assert_eq!(rc.name, "http.80");
    assert!(rc.virtual_hosts.is_empty());
}

const GATEWAY: &str = r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: gw, namespace: istio-system, creationTimestamp: '2024-01-02T00:00:00Z'}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: [bookinfo.example.com, "other/*.other.com", "./local.example.com"]
  - port: {number: 443, name: https, protocol: HTTPS}
    hosts: ["*"]
    tls: {mode: SIMPLE, credentialName: cert}
  - port: {number: 8443, name: http-on-tls, protocol: HTTP}
    hosts: ["*"]
---
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: tls-first, namespace: istio-system, creationTimestamp: '2024-01-01T00:00:00Z'}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 8443, name: tls, protocol: TLS}
    hosts: ["*"]
    tls: {mode: PASSTHROUGH}
"#;

#[test]
fn server_hosts_meet_virtual_service_hosts_by_namespace() {
    let yaml = format!(
        "{GATEWAY}---\n{}---\n{}---\n{}---\n{}",
        // Bound by `ns/name`; its wildcard narrows to the server's host.
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: bookinfo, namespace: default}\nspec:\n  hosts: ['*.example.com']\n  gateways: [istio-system/gw]\n  http:\n  - route:\n    - destination: {host: productpage}\n",
        // `other/*.other.com` admits VirtualServices of namespace other only.
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: a, namespace: other}\nspec:\n  hosts: [a.other.com]\n  gateways: [istio-system/gw]\n  http:\n  - route:\n    - destination: {host: reviews.default.svc.cluster.local}\n",
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: b, namespace: third}\nspec:\n  hosts: [b.other.com]\n  gateways: [istio-system/gw]\n  http:\n  - route:\n    - destination: {host: ratings.default.svc.cluster.local}\n",
        // A short gateway name resolves in the VirtualService's own namespace.
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: c, namespace: default}\nspec:\n  hosts: [bookinfo.example.com]\n  gateways: [gw]\n  http:\n  - route:\n    - destination: {host: details}\n",
    );
    let push = push_of(bookinfo_registry(), &yaml);
    let names: Vec<String> = listeners(&push, &ingress(InterceptionMode::Redirect))
        .into_iter()
        .map(|l| l.name)
        .collect();
    // 443 is TLS (not served yet); 8443 belongs to the TLS server that came first.
    assert_eq!(names, ["0.0.0.0_80"]);

    let rc = route_config(&push, "http.80");
    let got: Vec<(&str, &[String])> = rc
        .virtual_hosts
        .iter()
        .map(|v| (v.name.as_str(), &v.domains[..]))
        .collect();
    assert_eq!(
        got,
        [
            ("a.other.com:80", &["a.other.com".to_owned()][..]),
            (
                "bookinfo.example.com:80",
                &["bookinfo.example.com".to_owned()][..]
            ),
        ]
    );
    // The destination names no port: its service's only port.
    assert_eq!(
        cluster(&vhost(&rc, "bookinfo.example.com:80").routes[0]),
        "outbound|9080||productpage.default.svc.cluster.local"
    );
    assert_eq!(
        cluster(&vhost(&rc, "a.other.com:80").routes[0]),
        "outbound|9080||reviews.default.svc.cluster.local"
    );
}

#[test]
fn virtual_services_on_one_host_merge_with_catch_alls_last() {
    let yaml = format!(
        "{GATEWAY}---\n{}---\n{}",
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: first, namespace: istio-system, creationTimestamp: '2024-01-01T00:00:00Z'}\nspec:\n  hosts: [bookinfo.example.com]\n  gateways: [gw]\n  http:\n  - match: [{uri: {prefix: /mesh-only}, gateways: [mesh]}, {uri: {prefix: /gw-only}, gateways: [gw]}]\n    route:\n    - destination: {host: reviews.default.svc.cluster.local}\n  - route:\n    - destination: {host: productpage.default.svc.cluster.local}\n",
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: second, namespace: istio-system, creationTimestamp: '2024-01-02T00:00:00Z'}\nspec:\n  hosts: [bookinfo.example.com]\n  gateways: [gw]\n  http:\n  - match: [{uri: {prefix: /ratings}}]\n    route:\n    - destination: {host: ratings.default.svc.cluster.local}\n",
    );
    let push = push_of(bookinfo_registry(), &yaml);
    let rc = route_config(&push, "http.80");
    let vh = vhost(&rc, "bookinfo.example.com:80");
    let got: Vec<(String, &str)> = vh.routes.iter().map(|r| (path(r), cluster(r))).collect();
    assert_eq!(
        got,
        [
            (
                "/gw-only*".to_owned(),
                "outbound|9080||reviews.default.svc.cluster.local"
            ),
            (
                "/ratings*".to_owned(),
                "outbound|9080||ratings.default.svc.cluster.local"
            ),
            (
                "/*".to_owned(),
                "outbound|9080||productpage.default.svc.cluster.local"
            ),
        ]
    );
}

#[test]
fn hosts_with_the_same_routes_share_a_virtual_host() {
    let yaml = "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec:\n  selector: {istio: ingressgateway}\n  servers:\n  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: ['*']\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: vs}\nspec:\n  hosts: [b.example.com, a.example.com]\n  gateways: [gw]\n  http:\n  - route:\n    - destination: {host: productpage}\n";
    let push = push_of(bookinfo_registry(), yaml);
    let rc = route_config(&push, "http.80");
    let [vh] = &rc.virtual_hosts[..] else {
        panic!("one virtual host expected: {rc:?}");
    };
    assert_eq!(vh.name, "a.example.com:80");
    assert_eq!(vh.domains, ["a.example.com", "b.example.com"]);
}

#[test]
fn a_port_no_virtual_service_serves_answers_404() {
    let yaml = "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: gw}\nspec:\n  selector: {istio: ingressgateway}\n  servers:\n  - port: {number: 80, name: http, protocol: HTTP}\n    hosts: ['*']\n---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: mesh-only}\nspec:\n  hosts: [productpage]\n  http:\n  - route:\n    - destination: {host: productpage}\n";
    let push = push_of(bookinfo_registry(), yaml);
    let rc = route_config(&push, "http.80");
    let [vh] = &rc.virtual_hosts[..] else {
        panic!("one virtual host expected: {rc:?}");
    };
    assert_eq!(vh.name, "blackhole:80");
    assert_eq!(vh.domains, ["*"]);
    assert!(vh.routes.is_empty(), "no route, so Envoy answers 404 NR");
}

#[test]
fn gateway_names_resolve_as_istio_does() {
    for (name, want) in [
        ("gw", "bookinfo/gw"),
        ("istio-system/gw", "istio-system/gw"),
        ("./gw", "bookinfo/gw"),
        ("gw.istio-system.svc.cluster.local", "istio-system/gw"),
        ("gw.istio-system", "istio-system/gw"),
        ("mesh", "mesh"),
    ] {
        assert_eq!(resolve_gateway_name(name, "bookinfo"), want, "{name}");
    }
}

/// An Istio gateway reports as the source (no `SERVER_GATEWAY`: that is a waypoint's),
/// sends its metadata upstream, and trusts no `Host` header for the service.
#[test]
fn an_istio_gateway_gets_the_telemetry_filters_as_istio_does() {
    let Some(push) = bookinfo_gateway_push() else {
        return;
    };
    let mut proxy = ingress(InterceptionMode::Redirect);
    proxy.istio_version = "1.28.0".into();
    let [listener] = &listeners(&push, &proxy)[..] else {
        panic!("one listener expected");
    };
    let h = hcm(listener);
    let names: Vec<&str> = h.http_filters.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names[0], "istio.metadata_exchange");
    assert_eq!(
        names[names.len() - 2..],
        ["istio.stats", "envoy.filters.http.router"]
    );
    let stats = &h.http_filters[names.len() - 2];
    let Some(http_filter::ConfigType::TypedConfig(any)) = &stats.config_type else {
        panic!("untyped stats filter");
    };
    let config = mizzen_xds::istio::PluginConfig::decode(any.value.as_slice()).unwrap();
    assert!(config.disable_host_header_fallback);
    assert_eq!(config.reporter, 0, "UNSPECIFIED");
}
