use mizzen_api::networking::{HttpRoute, VirtualService};
use mizzen_api::types::StringMatch;
use mizzen_api::{Kind, Object, Resource};

use super::*;
use crate::model::testing::snapshot;

const ROOT: &str = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: root, namespace: front}
spec:
  hosts: [shop.example.com]
  http:
  - name: catalog
    match:
    - uri: {prefix: /catalog}
    timeout: 3s
    headers:
      request:
        set: {x-from: root}
    delegate: {name: catalog, namespace: back}
  - name: rest
    route:
    - destination: {host: home}
"#;

/// The root VirtualService of `yaml` as proxies see it, after delegation.
fn merged(yaml: &str) -> VirtualService {
    let config = snapshot(yaml);
    let delegation = Delegation::build(&config, &MeshConfig::default());
    let root = config
        .of_kind(Kind::VirtualService)
        .find_map(|o| match o.as_ref() {
            Object::VirtualService(vs) if vs.metadata.name.as_deref() == Some("root") => Some(vs),
            _ => None,
        })
        .expect("a VirtualService named root");
    delegation.resolve(root).spec.clone()
}

fn route_names(vs: &VirtualService) -> Vec<&str> {
    vs.http.iter().map(|r| r.name.as_str()).collect()
}

fn uri(route: &HttpRoute) -> Vec<Option<&StringMatch>> {
    route.r#match.iter().map(|m| m.uri.as_ref()).collect()
}

#[test]
fn delegate_routes_replace_the_delegating_route_narrowed_by_its_matches() {
    let vs = merged(&format!(
        r#"{ROOT}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: catalog, namespace: back}}
spec:
  http:
  - name: v2
    match:
    - uri: {{prefix: /catalog/v2}}
      headers: {{x-beta: {{exact: "1"}}}}
    retries: {{attempts: 5}}
    route:
    - destination: {{host: catalog, subset: v2}}
  - name: default
    route:
    - destination: {{host: catalog.back.svc.cluster.local, subset: v1}}
"#
    ));
    assert_eq!(route_names(&vs), ["catalog-v2", "catalog-default", "rest"]);
    let v2 = &vs.http[0];
    assert_eq!(uri(v2), [Some(&StringMatch::Prefix("/catalog/v2".into()))]);
    assert_eq!(
        v2.r#match[0].headers["x-beta"],
        StringMatch::Exact("1".into())
    );
    // The delegate's short host resolves in the delegate's namespace, not the root's.
    assert_eq!(
        v2.route[0].destination.host,
        "catalog.back.svc.cluster.local"
    );
    // What the delegate sets wins; what it leaves unset comes from the root route.
    assert_eq!(v2.retries.as_ref().map(|r| r.attempts), Some(5));
    assert_eq!(v2.timeout, vs.http[1].timeout);
    assert!(v2.timeout.is_some(), "the root's timeout is inherited");
    assert!(
        v2.headers.is_some(),
        "the root's header operations are inherited"
    );
    assert!(v2.delegate.is_none());
    // A delegate route without matches takes the root route's.
    assert_eq!(
        uri(&vs.http[1]),
        [Some(&StringMatch::Prefix("/catalog".into()))]
    );
    // Routes that delegate nothing are kept as they are, with their own short hosts.
    assert_eq!(vs.http[2].route[0].destination.host, "home");
}

#[test]
fn a_delegate_route_outside_the_root_match_is_left_out() {
    let vs = merged(&format!(
        r#"{ROOT}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: catalog, namespace: back}}
spec:
  http:
  - name: elsewhere
    match:
    - uri: {{prefix: /cart}}
    route:
    - destination: {{host: cart}}
  - name: inside
    match:
    - uri: {{exact: /catalog/index}}
    route:
    - destination: {{host: catalog}}
"#
    ));
    assert_eq!(route_names(&vs), ["catalog-inside", "rest"]);
}

#[test]
fn a_missing_or_unexported_delegate_drops_only_its_route() {
    assert_eq!(route_names(&merged(ROOT)), ["rest"], "missing delegate");
    let private = format!(
        r#"{ROOT}
---
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: catalog, namespace: back}}
spec:
  exportTo: ["."]
  http:
  - route:
    - destination: {{host: catalog}}
"#
    );
    assert_eq!(
        route_names(&merged(&private)),
        ["rest"],
        "exported to back only"
    );
    let exported = private.replace(r#"exportTo: ["."]"#, "exportTo: [front]");
    assert_eq!(route_names(&merged(&exported)), ["catalog", "rest"]);
}

#[test]
fn virtual_services_without_delegation_are_served_as_stored() {
    let config = snapshot(
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: plain, namespace: front}
spec:
  hosts: [plain]
  http:
  - route:
    - destination: {host: plain}
"#,
    );
    let delegation = Delegation::build(&config, &MeshConfig::default());
    let stored: Vec<&Resource<VirtualService>> = config
        .of_kind(Kind::VirtualService)
        .filter_map(|o| match o.as_ref() {
            Object::VirtualService(vs) => Some(vs),
            _ => None,
        })
        .collect();
    assert!(std::ptr::eq(delegation.resolve(stored[0]), stored[0]));
}

#[test]
fn matchers_conflict_unless_the_delegate_narrows_the_root() {
    let exact = |v: &str| StringMatch::Exact(v.into());
    let prefix = |v: &str| StringMatch::Prefix(v.into());
    let regex = |v: &str| StringMatch::Regex(v.into());
    let cases = [
        (None, Some(exact("/a")), false),
        (Some(prefix("/a")), None, false),
        (Some(exact("/a")), Some(exact("/a")), false),
        (Some(exact("/a")), Some(exact("/b")), true),
        (Some(exact("/a")), Some(prefix("/a")), true),
        (Some(prefix("/a")), Some(prefix("/a/b")), false),
        (Some(prefix("/a/b")), Some(prefix("/a")), true),
        (Some(prefix("/a")), Some(exact("/a/x")), false),
        (Some(prefix("/a")), Some(exact("/b")), true),
        (Some(regex("/a.*")), Some(exact("/a")), true),
        (Some(prefix("/a")), Some(regex("/a.*")), true),
        (Some(regex("/a.*")), Some(regex("/a.*")), true),
    ];
    for (root, leaf, conflict) in cases {
        assert_eq!(
            string_match_conflict(root.as_ref(), leaf.as_ref()),
            conflict,
            "root {root:?}, delegate {leaf:?}"
        );
    }
}

#[test]
fn match_fields_merge_as_istio_merges_them() {
    let root = HttpMatchRequest {
        name: "r".into(),
        method: Some(StringMatch::Exact("GET".into())),
        headers: [("a".to_owned(), StringMatch::Exact("1".into()))].into(),
        port: 8080,
        ..Default::default()
    };
    let leaf = HttpMatchRequest {
        name: "d".into(),
        headers: [("b".to_owned(), StringMatch::Prefix("x".into()))].into(),
        ..Default::default()
    };
    assert!(!conflicts(&root, &leaf));
    let out = merge_match(&root, &leaf);
    assert_eq!(out.name, "r-d");
    assert_eq!(out.method, root.method);
    assert_eq!(out.port, 8080);
    assert_eq!(out.headers.len(), 2);
    let other_port = HttpMatchRequest {
        port: 9090,
        ..Default::default()
    };
    assert!(conflicts(&root, &other_port));
    let case_blind = HttpMatchRequest {
        ignore_uri_case: true,
        ..Default::default()
    };
    assert!(conflicts(&root, &case_blind));
}
