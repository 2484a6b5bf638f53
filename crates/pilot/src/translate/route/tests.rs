//! RDS tests: Bookinfo's VirtualServices, every match kind and action, the default
//! route. Also the fixtures the listener tests share.

use mizzen_api::testdata::istio_data;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;

use mizzen_api::load::Loader;
use mizzen_api::types::{Labels, Protocol};
use mizzen_api::{Object, networking::VirtualService};
use mizzen_xds::pb::envoy::config::route::v3::{
    HeaderMatcher, Route, RouteAction, RouteConfiguration, VirtualHost, header_matcher,
    query_parameter_matcher, redirect_action, route, route_action, route_match,
};
use mizzen_xds::pb::envoy::extensions::filters::http::cors::v3::CorsPolicy as EnvoyCors;
use mizzen_xds::pb::envoy::extensions::filters::http::fault::v3::{HttpFault, fault_abort};
use mizzen_xds::pb::envoy::r#type::matcher::v3::string_matcher::MatchPattern;
use prost::Message;

use super::*;
use crate::model::service::Location;
use crate::model::{
    Endpoint, Hostname, InterceptionMode, MeshConfig, Proxy, PushContext, Registry, Resolution,
    Service, ServicePort,
};
use crate::store::Snapshot;

/// A service `name.default.svc.cluster.local` with one VIP and `ports`.
pub(crate) fn service(name: &str, vip: &str, ports: &[(&str, u16, Option<Protocol>)]) -> Service {
    Service {
        hostname: Hostname::new(&format!("{name}.default.svc.cluster.local")),
        namespace: "default".into(),
        ports: ports
            .iter()
            .map(|(n, p, proto)| ServicePort {
                name: (*n).into(),
                port: *p,
                protocol: *proto,
            })
            .collect(),
        addresses: vec![vip.into()],
        resolution: Resolution::ClientSideLb,
        location: Location::MeshInternal,
        export_to: Vec::new(),
        labels: Labels::new(),
        service_accounts: Vec::new(),
    }
}

/// An endpoint at `ip:port` with labels `app=<app>, version=<version>`.
pub(crate) fn endpoint(ip: &str, port: u16, app: &str, version: &str) -> Endpoint {
    Endpoint {
        address: ip.into(),
        port,
        service_port_name: "http".into(),
        labels: Labels::from([
            ("app".to_owned(), app.to_owned()),
            ("version".to_owned(), version.to_owned()),
        ]),
        locality: String::new(),
        weight: 1,
        service_account: String::new(),
        network: String::new(),
        health: Default::default(),
        workload: format!("{app}-{version}"),
        workload_namespace: "default".into(),
    }
}

/// Bookinfo's four HTTP services (VIPs 10.0.0.1-4, endpoints 10.1.0.x) and a MySQL.
pub(crate) fn bookinfo_registry() -> Registry {
    let http = Some(Protocol::Http);
    let mut r = Registry::default();
    let services = [
        ("productpage", "10.0.0.1", &[("10.1.0.1", "v1")][..]),
        (
            "reviews",
            "10.0.0.2",
            &[("10.1.0.2", "v1"), ("10.1.0.3", "v2"), ("10.1.0.4", "v3")][..],
        ),
        ("ratings", "10.0.0.3", &[("10.1.0.5", "v1")][..]),
        ("details", "10.0.0.4", &[("10.1.0.6", "v1")][..]),
    ];
    for (name, vip, endpoints) in services {
        let s = service(name, vip, &[("http", 9080, http)]);
        for (ip, version) in endpoints {
            r.insert_endpoint(
                &s.hostname,
                "default",
                9080,
                endpoint(ip, 9080, name, version),
            );
        }
        r.insert_service(s);
    }
    r.insert_service(service(
        "mysqldb",
        "10.0.0.9",
        &[("tcp", 3306, Some(Protocol::Tcp))],
    ));
    r
}

/// The productpage sidecar (10.1.0.1, `app=productpage`).
pub(crate) fn productpage_proxy() -> Proxy {
    let mut p = Proxy::from_node_id(
        "sidecar~10.1.0.1~productpage-v1-abc.default~default.svc.cluster.local",
    )
    .expect("valid node id");
    p.labels = Labels::from([
        ("app".to_owned(), "productpage".to_owned()),
        ("version".to_owned(), "v1".to_owned()),
    ]);
    p.interception_mode = InterceptionMode::Redirect;
    p
}

/// A push context of `registry` and the objects in `yaml`.
pub(crate) fn push_of(registry: Registry, yaml: &str) -> PushContext {
    let loaded = Loader::new().load_str(yaml, None);
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    push_with(registry, loaded.objects.into_iter().map(|l| l.object))
}

fn push_with(registry: Registry, objects: impl IntoIterator<Item = Object>) -> PushContext {
    let objects: BTreeMap<_, _> = objects
        .into_iter()
        .map(|o| (o.key(), Arc::new(o)))
        .collect();
    PushContext::with_registry(
        Arc::new(Snapshot::new(1, objects)),
        Arc::new(registry),
        Arc::new(MeshConfig::default()),
    )
}

fn route_9080(push: &PushContext) -> RouteConfiguration {
    let mut all = routes(push, &productpage_proxy(), &["9080".to_owned()]);
    assert_eq!(all.len(), 1);
    all.remove(0)
}

fn vhost<'a>(rc: &'a RouteConfiguration, name: &str) -> &'a VirtualHost {
    rc.virtual_hosts
        .iter()
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("no virtual host {name} in {:?}", names(rc)))
}

fn names(rc: &RouteConfiguration) -> Vec<&str> {
    rc.virtual_hosts.iter().map(|v| v.name.as_str()).collect()
}

fn action(r: &Route) -> &RouteAction {
    match &r.action {
        Some(route::Action::Route(a)) => a,
        other => panic!("not a route action: {other:?}"),
    }
}

/// The clusters a route action sends to, with weights (single cluster: weight 0).
fn clusters(r: &Route) -> Vec<(String, u32)> {
    match &action(r).cluster_specifier {
        Some(route_action::ClusterSpecifier::Cluster(c)) => vec![(c.clone(), 0)],
        Some(route_action::ClusterSpecifier::WeightedClusters(w)) => w
            .clusters
            .iter()
            .map(|c| (c.name.clone(), c.weight.as_ref().map_or(0, |w| w.value)))
            .collect(),
        other => panic!("no cluster: {other:?}"),
    }
}

fn header<'a>(r: &'a Route, name: &str) -> &'a HeaderMatcher {
    r.r#match
        .as_ref()
        .and_then(|m| m.headers.iter().find(|h| h.name == name))
        .unwrap_or_else(|| panic!("no header matcher {name}"))
}

fn string_pattern(h: &HeaderMatcher) -> &MatchPattern {
    match &h.header_match_specifier {
        Some(header_matcher::HeaderMatchSpecifier::StringMatch(m)) => {
            m.match_pattern.as_ref().expect("pattern")
        }
        other => panic!("not a string match: {other:?}"),
    }
}

const REVIEWS: &str = "reviews.default.svc.cluster.local:9080";

#[test]
fn bookinfo_virtual_services_translate_route_by_route() {
    let Some(data) = istio_data() else { return };
    let dir = data.join("samples/bookinfo/networking");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .expect("bookinfo networking folder")
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("virtual-service-") && n.ends_with(".yaml"))
        })
        .collect();
    files.sort();
    assert!(files.len() >= 10, "{files:?}");
    for file in files {
        let loaded = Loader::new().load_path(&file);
        assert!(loaded.errors.is_empty(), "{file:?}: {:?}", loaded.errors);
        let objects: Vec<Object> = loaded.objects.into_iter().map(|l| l.object).collect();
        let push = push_with(bookinfo_registry(), objects.clone());
        let rc = route_9080(&push);
        assert_eq!(rc.name, "9080");
        assert_eq!(
            rc.virtual_hosts.last().map(|v| v.name.as_str()),
            Some(ALLOW_ANY_VHOST)
        );
        for object in &objects {
            let Object::VirtualService(vs) = object else {
                continue;
            };
            check_bookinfo_vs(&rc, &vs.spec, &file);
        }
    }
}

/// Every route of `vs` appears in order with the destinations it names.
fn check_bookinfo_vs(rc: &RouteConfiguration, vs: &VirtualService, file: &std::path::Path) {
    let host = format!("{}.default.svc.cluster.local", vs.hosts[0]);
    let vh = vhost(rc, &format!("{host}:9080"));
    let expected: Vec<Vec<(String, u32)>> = vs
        .http
        .iter()
        .flat_map(|h| {
            let dests: Vec<(String, u32)> = h
                .route
                .iter()
                .map(|d| {
                    let cluster = format!(
                        "outbound|9080|{}|{}.default.svc.cluster.local",
                        d.destination.subset, d.destination.host
                    );
                    let weight = if h.route.len() == 1 {
                        0
                    } else {
                        d.weight as u32
                    };
                    (cluster, weight)
                })
                .collect();
            std::iter::repeat_n(dests, h.r#match.len().max(1))
        })
        .collect();
    let got: Vec<Vec<(String, u32)>> = vh.routes.iter().map(clusters).collect();
    assert_eq!(got, expected, "{file:?}");
    for (r, m) in vh.routes.iter().zip(vs.http.iter().flat_map(|h| {
        h.r#match
            .iter()
            .map(Some)
            .chain(h.r#match.is_empty().then_some(None))
    })) {
        match m {
            Some(m) => {
                for (name, value) in &m.headers {
                    let pattern = string_pattern(header(r, name));
                    assert_eq!(
                        pattern,
                        &MatchPattern::Exact(value.value().unwrap_or_default().to_owned())
                    );
                }
            }
            None => assert!(matches::is_catch_all(r.r#match.as_ref().unwrap())),
        }
    }
}

#[test]
fn bookinfo_reviews_domains_weights_and_faults() {
    let Some(data) = istio_data() else { return };
    let dir = data.join("samples/bookinfo/networking");
    let text = |f: &str| std::fs::read_to_string(dir.join(f)).expect("sample file");

    let push = push_of(
        bookinfo_registry(),
        &text("virtual-service-reviews-80-20.yaml"),
    );
    let rc = route_9080(&push);
    assert_eq!(
        names(&rc),
        [
            "details.default.svc.cluster.local:9080",
            "productpage.default.svc.cluster.local:9080",
            "ratings.default.svc.cluster.local:9080",
            REVIEWS,
            ALLOW_ANY_VHOST,
        ]
    );
    let reviews = vhost(&rc, REVIEWS);
    assert_eq!(
        reviews.domains,
        [
            "reviews.default.svc.cluster.local",
            "reviews.default.svc.cluster.local:9080",
            "reviews",
            "reviews:9080",
            "reviews.default.svc",
            "reviews.default.svc:9080",
            "reviews.default",
            "reviews.default:9080",
            "10.0.0.2",
            "10.0.0.2:9080",
        ]
    );
    assert_eq!(
        clusters(&reviews.routes[0]),
        [
            (
                "outbound|9080|v1|reviews.default.svc.cluster.local".to_owned(),
                80
            ),
            (
                "outbound|9080|v2|reviews.default.svc.cluster.local".to_owned(),
                20
            ),
        ]
    );
    let op = &reviews.routes[0].decorator.as_ref().unwrap().operation;
    assert_eq!(op, "reviews:9080/*");

    let push = push_of(
        bookinfo_registry(),
        &text("virtual-service-ratings-test-abort.yaml"),
    );
    let rc = route_9080(&push);
    let ratings = vhost(&rc, "ratings.default.svc.cluster.local:9080");
    assert_eq!(ratings.routes.len(), 2);
    let fault = HttpFault::decode(
        ratings.routes[0].typed_per_filter_config[FAULT_FILTER]
            .value
            .as_slice(),
    )
    .unwrap();
    let abort = fault.abort.unwrap();
    assert_eq!(
        abort.error_type,
        Some(fault_abort::ErrorType::HttpStatus(500))
    );
    assert_eq!(abort.percentage.unwrap().numerator, 1_000_000);
    assert!(ratings.routes[1].typed_per_filter_config.is_empty());

    let push = push_of(
        bookinfo_registry(),
        &text("virtual-service-ratings-test-delay.yaml"),
    );
    let rc = route_9080(&push);
    let ratings = vhost(&rc, "ratings.default.svc.cluster.local:9080");
    let any = &ratings.routes[0].typed_per_filter_config[FAULT_FILTER];
    assert_eq!(
        any.type_url,
        "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"
    );
    let delay = HttpFault::decode(any.value.as_slice())
        .unwrap()
        .delay
        .unwrap();
    assert!(format!("{delay:?}").contains("seconds: 7"));
}

#[test]
fn services_without_virtual_service_get_istios_default_route() {
    let push = push_of(bookinfo_registry(), "");
    let rc = route_9080(&push);
    assert_eq!(rc.validate_clusters, Some(BoolValue { value: false }));
    let details = vhost(&rc, "details.default.svc.cluster.local:9080");
    let [r] = details.routes.as_slice() else {
        panic!("{details:?}")
    };
    assert_eq!(r.name, "default");
    assert!(matches::is_catch_all(r.r#match.as_ref().unwrap()));
    let a = action(r);
    assert_eq!(
        clusters(r),
        [(
            "outbound|9080||details.default.svc.cluster.local".to_owned(),
            0
        )]
    );
    assert_eq!(a.timeout, Some(Default::default()));
    let retry = a.retry_policy.as_ref().unwrap();
    assert_eq!(
        retry.retry_on,
        "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
    );
    assert_eq!(retry.num_retries.as_ref().unwrap().value, 2);
    assert_eq!(retry.retriable_status_codes, [503]);
    assert_eq!(
        retry.retry_host_predicate[0].name,
        "envoy.retry_host_predicates.previous_hosts"
    );
    assert_eq!(
        r.decorator.as_ref().unwrap().operation,
        "details.default.svc.cluster.local:9080/*"
    );
    // The TCP service has no virtual host; unknown hosts pass through.
    assert!(!names(&rc).iter().any(|n| n.contains("mysqldb")));
    let any = rc.virtual_hosts.last().unwrap();
    assert_eq!(
        (any.name.as_str(), any.domains.as_slice()),
        (ALLOW_ANY_VHOST, &["*".to_owned()][..])
    );
    assert_eq!(
        clusters(&any.routes[0]),
        [("PassthroughCluster".to_owned(), 0)]
    );
    // Unknown route names get an empty configuration.
    let empty = routes(&push, &productpage_proxy(), &["nonsense".to_owned()]);
    assert!(empty[0].virtual_hosts.is_empty());
}

const MATCHES: &str = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - name: exact
    match:
    - name: m1
      uri: {exact: /exact}
      method: {exact: GET}
      scheme: {prefix: ht}
      authority: {regex: "rev.*"}
      ignoreUriCase: true
    route: [{destination: {host: reviews, subset: v1}}]
  - name: headers
    match:
    - uri: {regex: "/r/[0-9]+"}
      headers:
        x-exact: {exact: a}
        x-prefix: {prefix: b}
        x-regex: {regex: "c+"}
        x-present: {}
      withoutHeaders:
        x-not: {exact: d}
        x-absent: {}
      queryParams:
        q: {exact: "1"}
        p: {}
    route: [{destination: {host: reviews, subset: v2}}]
  - name: ports
    match:
    - {port: 9080, uri: {prefix: /port}}
    - {port: 9999, uri: {prefix: /other-port}}
    - {sourceLabels: {app: productpage}, uri: {prefix: /from-productpage}}
    - {sourceLabels: {app: other}, uri: {prefix: /from-other}}
    - {sourceNamespace: default, uri: {prefix: /from-default}}
    - {sourceNamespace: elsewhere, uri: {prefix: /from-elsewhere}}
    - {gateways: [my-gateway], uri: {prefix: /gateway-only}}
    route: [{destination: {host: reviews, subset: v3}}]
  - route: [{destination: {host: reviews}}]
  - name: never-reached
    route: [{destination: {host: ratings}}]
"#;

#[test]
fn every_match_kind_translates() {
    let push = push_of(bookinfo_registry(), MATCHES);
    let rc = route_9080(&push);
    let routes = &vhost(&rc, REVIEWS).routes;
    let names: Vec<&str> = routes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(
        names,
        ["exact.m1", "headers", "ports", "ports", "ports", ""]
    );

    let m = routes[0].r#match.as_ref().unwrap();
    assert_eq!(
        m.path_specifier,
        Some(route_match::PathSpecifier::Path("/exact".into()))
    );
    assert_eq!(m.case_sensitive, Some(BoolValue { value: false }));
    assert_eq!(
        string_pattern(header(&routes[0], ":method")),
        &MatchPattern::Exact("GET".into())
    );
    assert_eq!(
        string_pattern(header(&routes[0], ":scheme")),
        &MatchPattern::Prefix("ht".into())
    );
    assert!(matches!(
        string_pattern(header(&routes[0], ":authority")),
        MatchPattern::SafeRegex(r) if r.regex == "rev.*"
    ));

    let r = &routes[1];
    let m = r.r#match.as_ref().unwrap();
    assert!(
        matches!(&m.path_specifier, Some(route_match::PathSpecifier::SafeRegex(re)) if re.regex == "/r/[0-9]+")
    );
    assert_eq!(m.case_sensitive, Some(BoolValue { value: true }));
    assert_eq!(
        string_pattern(header(r, "x-exact")),
        &MatchPattern::Exact("a".into())
    );
    assert_eq!(
        string_pattern(header(r, "x-prefix")),
        &MatchPattern::Prefix("b".into())
    );
    assert!(
        matches!(string_pattern(header(r, "x-regex")), MatchPattern::SafeRegex(re) if re.regex == "c+")
    );
    assert_eq!(
        header(r, "x-present").header_match_specifier,
        Some(header_matcher::HeaderMatchSpecifier::PresentMatch(true))
    );
    let not = header(r, "x-not");
    assert!(not.invert_match && not.treat_missing_header_as_empty);
    let absent = header(r, "x-absent");
    assert!(absent.invert_match && !absent.treat_missing_header_as_empty);
    let header_names: Vec<&str> = m.headers.iter().map(|h| h.name.as_str()).collect();
    assert_eq!(
        header_names,
        [
            "x-absent",
            "x-exact",
            "x-not",
            "x-prefix",
            "x-present",
            "x-regex"
        ]
    );
    let q: Vec<(&str, &query_parameter_matcher::QueryParameterMatchSpecifier)> = m
        .query_parameters
        .iter()
        .map(|q| {
            (
                q.name.as_str(),
                q.query_parameter_match_specifier.as_ref().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        q[0],
        (
            "p",
            &query_parameter_matcher::QueryParameterMatchSpecifier::PresentMatch(true)
        )
    );
    assert_eq!(q[1].0, "q");

    // Port, source labels and source namespace keep only what applies to productpage on
    // 9080; a gateway-only match is not for sidecars.
    let prefixes: Vec<&str> = routes[2..5]
        .iter()
        .map(|r| match &r.r#match.as_ref().unwrap().path_specifier {
            Some(route_match::PathSpecifier::Prefix(p)) => p.as_str(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(prefixes, ["/port", "/from-productpage", "/from-default"]);
    // The route without match catches all; nothing after it is sent.
    assert!(matches::is_catch_all(routes[5].r#match.as_ref().unwrap()));
    assert_eq!(
        clusters(&routes[5])[0].0,
        "outbound|9080||reviews.default.svc.cluster.local"
    );

    // Another proxy (not productpage, other namespace) loses the source-bound matches.
    let mut other = productpage_proxy();
    other.labels = Labels::new();
    other.namespace = "elsewhere".into();
    other.dns_domain = "elsewhere.svc.cluster.local".into();
    let rc = super::routes(&push, &other, &["9080".to_owned()]).remove(0);
    let vh = vhost(&rc, REVIEWS);
    let prefixes: Vec<String> = vh
        .routes
        .iter()
        .map(|r| format!("{:?}", r.r#match.as_ref().unwrap().path_specifier))
        .collect();
    assert_eq!(vh.routes.len(), 5, "{prefixes:?}");
    assert!(prefixes[3].contains("/from-elsewhere"), "{prefixes:?}");
    assert!(vh.domains.contains(&"reviews.default".to_owned()));
    assert!(!vh.domains.contains(&"reviews".to_owned()));
}

const ACTIONS: &str = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - name: everything
    match: [{uri: {prefix: /all}}]
    timeout: 3s
    retries: {attempts: 4, perTryTimeout: 500ms, retryOn: "gateway-error,503,connect-failure", retryRemoteLocalities: true}
    mirror: {host: ratings, subset: v1}
    mirrorPercentage: {value: 12.5}
    rewrite: {uri: /new, authority: reviews.internal}
    headers:
      request: {set: {x-set: s}, add: {x-add: a}, remove: [x-gone, host]}
      response: {set: {x-rset: s}, remove: [x-rgone]}
    corsPolicy:
      allowOrigins: [{exact: "https://a.example"}, {prefix: "https://b."}]
      allowMethods: [GET, POST]
      allowHeaders: [x-a]
      exposeHeaders: [x-b]
      maxAge: 24h
      allowCredentials: true
    fault:
      delay: {percentage: {value: 50}, fixedDelay: 2s}
      abort: {percentage: {value: 0.1}, grpcStatus: UNAVAILABLE}
    route:
    - destination: {host: reviews, subset: v1}
      weight: 70
      headers: {request: {set: {x-dest: one}}}
    - destination: {host: reviews, subset: v2, port: {number: 9081}}
      weight: 30
    - destination: {host: reviews, subset: v3}
      weight: 0
  - match: [{uri: {prefix: /no-retries}}]
    retries: {attempts: 0}
    mirrors:
    - destination: {host: ratings}
    - destination: {host: details}
      percentage: {value: 0}
    rewrite: {uriRegexRewrite: {match: "^/no-retries/(.*)", rewrite: "/\\1"}}
    route: [{destination: {host: reviews}, headers: {request: {set: {":authority": dest.example}}}}]
  - match: [{uri: {prefix: /redirect}}]
    redirect: {uri: /elsewhere, authority: other.example, scheme: https, port: 8443, redirectCode: 302}
  - match: [{uri: {prefix: /derive}}]
    redirect: {uri: /x, derivePort: FROM_REQUEST_PORT}
  - match: [{uri: {exact: /direct}}]
    directResponse: {status: 418, body: {string: teapot}}
  - match: [{uri: {exact: /bytes}}]
    directResponse: {status: 200, body: {bytes: aGVsbG8=}}
"#;

#[test]
fn every_action_translates() {
    let push = push_of(bookinfo_registry(), ACTIONS);
    let rc = route_9080(&push);
    let routes = &vhost(&rc, REVIEWS).routes;
    assert_eq!(routes.len(), 6);

    let r = &routes[0];
    let a = action(r);
    assert_eq!(
        clusters(r),
        [
            (
                "outbound|9080|v1|reviews.default.svc.cluster.local".to_owned(),
                70
            ),
            (
                "outbound|9081|v2|reviews.default.svc.cluster.local".to_owned(),
                30
            ),
        ]
    );
    let Some(route_action::ClusterSpecifier::WeightedClusters(w)) = &a.cluster_specifier else {
        panic!()
    };
    assert_eq!(
        w.clusters[0].request_headers_to_add[0]
            .header
            .as_ref()
            .unwrap()
            .key,
        "x-dest"
    );
    assert_eq!(a.timeout.unwrap().seconds, 3);
    assert_eq!(
        a.max_stream_duration
            .as_ref()
            .unwrap()
            .grpc_timeout_header_max
            .unwrap()
            .seconds,
        3
    );
    let retry = a.retry_policy.as_ref().unwrap();
    assert_eq!(retry.num_retries.as_ref().unwrap().value, 4);
    assert_eq!(retry.per_try_timeout.unwrap().nanos, 500_000_000);
    assert_eq!(
        retry.retry_on,
        "gateway-error,connect-failure,retriable-status-codes"
    );
    assert_eq!(retry.retriable_status_codes, [503]);
    assert_eq!(
        retry.retry_priority.as_ref().unwrap().name,
        "envoy.retry_priorities.previous_priorities"
    );
    let mirror = &a.request_mirror_policies[0];
    assert_eq!(
        mirror.cluster,
        "outbound|9080|v1|ratings.default.svc.cluster.local"
    );
    let fraction = mirror
        .runtime_fraction
        .as_ref()
        .unwrap()
        .default_value
        .unwrap();
    assert_eq!(fraction.numerator, 125_000);
    assert_eq!(a.prefix_rewrite, "/new");
    assert_eq!(
        a.host_rewrite_specifier,
        Some(route_action::HostRewriteSpecifier::HostRewriteLiteral(
            "reviews.internal".into()
        ))
    );
    let added: Vec<(&str, i32)> = r
        .request_headers_to_add
        .iter()
        .map(|h| (h.header.as_ref().unwrap().key.as_str(), h.append_action))
        .collect();
    use mizzen_xds::pb::envoy::config::core::v3::header_value_option::HeaderAppendAction;
    assert_eq!(
        added,
        [
            ("x-set", HeaderAppendAction::OverwriteIfExistsOrAdd as i32),
            ("x-add", HeaderAppendAction::AppendIfExistsOrAdd as i32),
        ]
    );
    assert_eq!(r.request_headers_to_remove, ["x-gone"]);
    assert_eq!(
        r.response_headers_to_add[0].header.as_ref().unwrap().key,
        "x-rset"
    );
    assert_eq!(r.response_headers_to_remove, ["x-rgone"]);
    let cors = EnvoyCors::decode(r.typed_per_filter_config[CORS_FILTER].value.as_slice()).unwrap();
    assert_eq!(cors.allow_origin_string_match.len(), 2);
    assert_eq!(cors.allow_methods, "GET,POST");
    assert_eq!(cors.max_age, "86400");
    assert_eq!(cors.allow_credentials, Some(BoolValue { value: true }));
    let fault =
        HttpFault::decode(r.typed_per_filter_config[FAULT_FILTER].value.as_slice()).unwrap();
    assert_eq!(fault.delay.unwrap().percentage.unwrap().numerator, 500_000);
    let abort = fault.abort.unwrap();
    assert_eq!(
        abort.error_type,
        Some(fault_abort::ErrorType::GrpcStatus(14))
    );
    assert_eq!(abort.percentage.unwrap().numerator, 1_000);
    assert_eq!(r.decorator.as_ref().unwrap().operation, "reviews:9080/all*");
    assert!(
        format!("{:?}", r.metadata)
            .contains("/apis/networking.istio.io/v1/namespaces/default/virtual-service/reviews")
    );

    let r = &routes[1];
    let a = action(r);
    assert_eq!(a.retry_policy, None);
    let mirrors: Vec<&str> = a
        .request_mirror_policies
        .iter()
        .map(|m| m.cluster.as_str())
        .collect();
    assert_eq!(
        mirrors,
        ["outbound|9080||ratings.default.svc.cluster.local"]
    );
    let rr = a.regex_rewrite.as_ref().unwrap();
    assert_eq!(
        (
            rr.pattern.as_ref().unwrap().regex.as_str(),
            rr.substitution.as_str()
        ),
        ("^/no-retries/(.*)", "/\\1")
    );
    assert_eq!(
        a.host_rewrite_specifier,
        Some(route_action::HostRewriteSpecifier::HostRewriteLiteral(
            "dest.example".into()
        ))
    );
    assert_eq!(
        r.decorator.as_ref().unwrap().operation,
        "reviews.default.svc.cluster.local:9080/no-retries*"
    );

    let Some(route::Action::Redirect(redirect)) = &routes[2].action else {
        panic!()
    };
    assert_eq!(redirect.host_redirect, "other.example");
    assert_eq!(redirect.port_redirect, 8443);
    assert_eq!(
        redirect.response_code,
        redirect_action::RedirectResponseCode::Found as i32
    );
    assert_eq!(
        redirect.scheme_rewrite_specifier,
        Some(redirect_action::SchemeRewriteSpecifier::SchemeRedirect(
            "https".into()
        ))
    );
    assert_eq!(
        redirect.path_rewrite_specifier,
        Some(redirect_action::PathRewriteSpecifier::PathRedirect(
            "/elsewhere".into()
        ))
    );
    let Some(route::Action::Redirect(derived)) = &routes[3].action else {
        panic!()
    };
    assert_eq!(derived.port_redirect, 9080);

    let Some(route::Action::DirectResponse(direct)) = &routes[4].action else {
        panic!()
    };
    assert_eq!(direct.status, 418);
    assert!(format!("{:?}", direct.body).contains("teapot"));
    let Some(route::Action::DirectResponse(bytes)) = &routes[5].action else {
        panic!()
    };
    assert!(format!("{:?}", bytes.body).contains("[104, 101, 108, 108, 111]"));
    assert_eq!(
        rc.max_direct_response_body_size_bytes.unwrap().value,
        1024 * 1024
    );
}

#[test]
fn http_proxy_route_serves_every_port_with_port_qualified_domains() {
    let mut registry = bookinfo_registry();
    registry.insert_service(service(
        "web",
        "10.0.0.7",
        &[("http", 80, Some(Protocol::Http))],
    ));
    let push = push_of(registry, "");
    let rc = routes(&push, &productpage_proxy(), &[HTTP_PROXY_ROUTE.to_owned()]).remove(0);
    let reviews = vhost(&rc, REVIEWS);
    assert!(
        reviews.domains.iter().all(|d| d.contains(':')),
        "{:?}",
        reviews.domains
    );
    assert!(reviews.domains.contains(&"reviews:9080".to_owned()));
    let web = vhost(&rc, "web.default.svc.cluster.local:80");
    assert!(web.domains.contains(&"web".to_owned()));
}

#[test]
fn sniffed_service_routes_are_per_service_with_wildcard_domain() {
    let mut registry = bookinfo_registry();
    registry.insert_service(service("echo", "10.0.0.8", &[("web", 8000, None)]));
    let push = push_of(registry, "");
    let name = "echo.default.svc.cluster.local:8000".to_owned();
    let rc = routes(&push, &productpage_proxy(), std::slice::from_ref(&name)).remove(0);
    assert_eq!(rc.name, name);
    let [vh] = rc.virtual_hosts.as_slice() else {
        panic!("{rc:?}")
    };
    assert_eq!(vh.domains, ["*"]);
    assert_eq!(
        clusters(&vh.routes[0])[0].0,
        "outbound|8000||echo.default.svc.cluster.local"
    );
}

#[test]
fn registry_only_sidecar_blocks_unknown_hosts_and_limits_services() {
    let yaml = r#"
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: default}
spec:
  egress: [{hosts: ["./ratings.default.svc.cluster.local"]}]
  outboundTrafficPolicy: {mode: REGISTRY_ONLY}
"#;
    let push = push_of(bookinfo_registry(), yaml);
    let rc = route_9080(&push);
    assert_eq!(
        names(&rc),
        ["ratings.default.svc.cluster.local:9080", BLOCK_ALL_VHOST]
    );
    let block = rc.virtual_hosts.last().unwrap();
    assert!(
        matches!(&block.routes[0].action, Some(route::Action::DirectResponse(d)) if d.status == 502)
    );
}

#[test]
fn a_destination_rules_consistent_hash_goes_on_its_routes() {
    use mizzen_xds::pb::envoy::config::route::v3::route_action::hash_policy::PolicySpecifier;
    let push = push_of(
        bookinfo_registry(),
        r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: reviews, namespace: default}
spec:
  host: reviews
  trafficPolicy:
    loadBalancer:
      consistentHash: {httpCookie: {name: user, ttl: 3600s}}
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ratings, namespace: default}
spec:
  host: ratings
  trafficPolicy:
    loadBalancer:
      consistentHash: {httpHeaderName: x-user}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews, namespace: default}
spec:
  hosts: [reviews]
  http:
  - route:
    - {destination: {host: reviews, subset: v1}, weight: 50}
    - {destination: {host: reviews, subset: v2}, weight: 50}
"#,
    );
    let rc = route_9080(&push);
    // A VirtualService's route, its destinations hashing alike: the cookie, and retries
    // no longer avoid previous hosts (they would break the hashing).
    let reviews = &vhost(&rc, "reviews.default.svc.cluster.local:9080").routes[0];
    let a = action(reviews);
    let [hash] = a.hash_policy.as_slice() else {
        panic!("one hash policy: {:?}", a.hash_policy);
    };
    match &hash.policy_specifier {
        Some(PolicySpecifier::Cookie(c)) => {
            assert_eq!(c.name, "user");
            assert_eq!(c.ttl.as_ref().map(|t| t.seconds), Some(3600));
        }
        other => panic!("a cookie hash: {other:?}"),
    }
    assert!(
        a.retry_policy
            .as_ref()
            .unwrap()
            .retry_host_predicate
            .is_empty()
    );
    // A service without VirtualService: its default route hashes the header.
    let ratings = &vhost(&rc, "ratings.default.svc.cluster.local:9080").routes[0];
    let a = action(ratings);
    assert!(matches!(
        a.hash_policy.as_slice(),
        [h] if matches!(&h.policy_specifier, Some(PolicySpecifier::Header(h)) if h.header_name == "x-user")
    ));
    // No DestinationRule, no hash; retries keep avoiding previous hosts.
    let details = &vhost(&rc, "details.default.svc.cluster.local:9080").routes[0];
    assert!(action(details).hash_policy.is_empty());
    assert_eq!(
        action(details)
            .retry_policy
            .as_ref()
            .unwrap()
            .retry_host_predicate
            .len(),
        1
    );
}

#[test]
fn a_root_virtual_service_routes_through_its_delegate() {
    let push = push_of(
        bookinfo_registry(),
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews-root, namespace: default}
spec:
  hosts: [reviews]
  http:
  - name: api
    match:
    - uri: {prefix: /api}
    timeout: 2s
    delegate: {name: reviews-api, namespace: team}
  - route:
    - destination: {host: reviews, subset: v1}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: reviews-api, namespace: team}
spec:
  exportTo: [default]
  http:
  - name: beta
    match:
    - headers: {end-user: {exact: jason}}
    route:
    - destination: {host: reviews.default.svc.cluster.local, subset: v2}
  - name: rest
    route:
    - destination: {host: reviews.default.svc.cluster.local, subset: v3}
"#,
    );
    let rc = route_9080(&push);
    let routes = &vhost(&rc, REVIEWS).routes;
    let names: Vec<&str> = routes.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["api-beta", "api-rest", ""]);
    let subset = |r: &Route| clusters(r)[0].0.split('|').nth(2).unwrap().to_owned();
    assert_eq!(
        routes.iter().map(subset).collect::<Vec<_>>(),
        ["v2", "v3", "v1"]
    );
    // The delegate's header match is ANDed with the root's path prefix.
    let beta = routes[0].r#match.as_ref().expect("match");
    assert_eq!(
        beta.path_specifier,
        Some(route_match::PathSpecifier::Prefix("/api".into()))
    );
    assert!(matches!(
        string_pattern(header(&routes[0], "end-user")),
        MatchPattern::Exact(v) if v == "jason"
    ));
    // The root route's timeout applies to the delegate's routes.
    let timeout = |r: &Route| action(r).timeout.as_ref().map(|t| t.seconds);
    assert_eq!(timeout(&routes[0]), Some(2));
    assert_eq!(timeout(&routes[1]), Some(2));
}
