//! RBAC through the proxy, as Istio's AuthorizationPolicy configures it: HTTP requests a
//! policy denies get Envoy's `403 RBAC: access denied` without reaching the backend;
//! allowed ones go through; DENY filters run before ALLOW ones; shadow rules (dry run)
//! are counted and never enforced; a TCP connection a network policy denies is closed.

mod common;

use std::net::SocketAddr;

use common::*;
use mizzen_proxy::Proxy;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const HTTP_RBAC: &str = "type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC";

/// A proxy with the HTTP RBAC filters `filters` (each an `RBAC` in YAML flow style) before
/// the router, routing everything to a backend.
async fn proxy_with(filters: &[&str]) -> (Proxy, SocketAddr) {
    let backend = backend("b").await;
    let proxy = proxy(&bootstrap(filters, backend)).await;
    let addr = proxy.listener_addr("http").await;
    (proxy, addr)
}

/// The bootstrap of [`proxy_with`], to a backend at `backend`.
fn bootstrap(filters: &[&str], backend: SocketAddr) -> String {
    let list: String = filters
        .iter()
        .map(|f| {
            format!(
                "          - name: envoy.filters.http.rbac\n            typed_config: {{\"@type\": {HTTP_RBAC}, {f}}}\n"
            )
        })
        .collect();
    http_bootstrap(&all_to("b"), &cluster("b", &[backend])).replace(
        "          http_filters:\n",
        &format!("          http_filters:\n{list}"),
    )
}

/// An RBAC `rules` field with `action` and one policy on `permission`, for anyone.
fn rules(action: &str, permission: &str) -> String {
    format!(
        "rules: {{action: {action}, policies: {{p: {{permissions: [{permission}], principals: [{{any: true}}]}}}}}}"
    )
}

#[tokio::test]
async fn a_denied_request_gets_403_and_never_reaches_the_backend() {
    let (proxy, addr) = proxy_with(&[&rules("DENY", "{url_path: {path: {prefix: /admin}}}")]).await;
    let denied = send(addr, get("shop", "/admin/users?all=1")).await;
    assert_eq!(denied.status, 403);
    assert_eq!(denied.body, "RBAC: access denied");
    assert_eq!(denied.headers["content-type"], "text/plain");
    let allowed = send(addr, get("shop", "/cart")).await;
    assert_eq!(allowed.status, 200);
    assert_eq!(allowed.seen().path, "/cart");
    let stats = proxy.store().stats().http("ingress");
    assert_eq!(stats.counter("rbac.denied").get(), 1);
    assert_eq!(stats.counter("rbac.allowed").get(), 1);
    assert_eq!(
        proxy.store().stats().cluster("b").upstream_rq_total.get(),
        1
    );
}

#[tokio::test]
async fn allow_admits_only_what_its_policies_match() {
    let (_proxy, addr) = proxy_with(&[&rules(
        "ALLOW",
        "{and_rules: {rules: [{header: {name: ':method', string_match: {exact: GET}}}, {url_path: {path: {prefix: /api/}}}]}}",
    )])
    .await;
    assert_eq!(send(addr, get("shop", "/api/items")).await.status, 200);
    assert_eq!(send(addr, get("shop", "/api")).await.status, 403);
    let post = hyper::Request::post("/api/items")
        .header("host", "shop")
        .body(http_body_util::Full::new(bytes::Bytes::new()))
        .unwrap();
    assert_eq!(send(addr, post).await.status, 403);
}

#[tokio::test]
async fn deny_beats_allow() {
    // Istio's order: the DENY filter, then the ALLOW one.
    let (_proxy, addr) = proxy_with(&[
        &rules(
            "DENY",
            "{header: {name: x-user, string_match: {exact: mallory}}}",
        ),
        &rules("ALLOW", "{url_path: {path: {prefix: /}}}"),
    ])
    .await;
    let mut as_mallory = get("shop", "/");
    as_mallory
        .headers_mut()
        .insert("x-user", "mallory".parse().unwrap());
    assert_eq!(send(addr, as_mallory).await.status, 403);
    let mut as_alice = get("shop", "/");
    as_alice
        .headers_mut()
        .insert("x-user", "alice".parse().unwrap());
    assert_eq!(send(addr, as_alice).await.status, 200);
}

#[tokio::test]
async fn dry_run_rules_are_counted_not_enforced() {
    let (proxy, addr) = proxy_with(&[&format!(
        "shadow_{}, shadow_rules_stat_prefix: istio_dry_run_allow_",
        rules("ALLOW", "{url_path: {path: {exact: /allowed}}}")
    )])
    .await;
    assert_eq!(send(addr, get("shop", "/allowed")).await.status, 200);
    assert_eq!(send(addr, get("shop", "/other")).await.status, 200);
    let stats = proxy.store().stats().http("ingress");
    assert_eq!(
        stats
            .counter("rbac.istio_dry_run_allow_shadow_allowed")
            .get(),
        1
    );
    assert_eq!(
        stats
            .counter("rbac.istio_dry_run_allow_shadow_denied")
            .get(),
        1
    );
    let text = proxy.store().stats().text();
    assert!(
        text.contains("http.ingress.rbac.istio_dry_run_allow_shadow_denied: 1\n"),
        "{text}"
    );
}

#[tokio::test]
async fn remote_ip_reads_the_trusted_forwarded_address() {
    // A sidecar (no `use_remote_address`) trusts the last `x-forwarded-for` entry, as
    // Envoy does; `direct_remote_ip` is the connection's own address.
    let (_proxy, addr) = proxy_with(&[
        "rules: {action: DENY, policies: {p: {permissions: [{any: true}], principals: [{remote_ip: {address_prefix: 203.0.113.0, prefix_len: 24}}]}}}",
    ])
    .await;
    let mut forwarded = get("shop", "/");
    forwarded.headers_mut().insert(
        "x-forwarded-for",
        "198.51.100.1,203.0.113.9".parse().unwrap(),
    );
    assert_eq!(send(addr, forwarded).await.status, 403);
    let mut other = get("shop", "/");
    other.headers_mut().insert(
        "x-forwarded-for",
        "203.0.113.9,198.51.100.1".parse().unwrap(),
    );
    assert_eq!(send(addr, other).await.status, 200);
    assert_eq!(send(addr, get("shop", "/")).await.status, 200);
}

#[tokio::test]
async fn a_bad_policy_is_refused_by_field() {
    let backend = backend("b").await;
    let yaml = http_bootstrap(&all_to("b"), &cluster("b", &[backend])).replace(
        "          http_filters:\n",
        &format!(
            "          http_filters:\n          - name: envoy.filters.http.rbac\n            typed_config: {{\"@type\": {HTTP_RBAC}, {}}}\n",
            rules("ALLOW", "{header: {name: x, safe_regex_match: {regex: '('}}}")
        ),
    );
    let raw = mizzen_xds::json::bootstrap_from_yaml(&yaml).unwrap();
    let bootstrap = mizzen_proxy::Bootstrap::from_pb(raw).unwrap();
    let error = mizzen_proxy::Proxy::start(mizzen_proxy::ProxyOptions::new(bootstrap))
        .await
        .err()
        .expect("refused")
        .to_string();
    assert!(
        error.contains("http_filters[0].typed_config.rules.policies[\"p\"].permissions[0].header.safe_regex_match"),
        "{error}"
    );
}

/// A TCP proxy to an echo backend behind a network RBAC filter (`RBAC` fields in YAML
/// flow style).
async fn tcp_proxy_with(rbac: &str) -> (Proxy, SocketAddr) {
    let echo = echo("db").await;
    let yaml = format!(
        r#"
static_resources:
  listeners:
  - name: tcp
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.rbac
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.rbac.v3.RBAC
          {rbac}
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: db
          cluster: db
  clusters:
{}
"#,
        indent(&cluster("db", &[echo]), 2)
    );
    let proxy = proxy(&yaml).await;
    let addr = proxy.listener_addr("tcp").await;
    (proxy, addr)
}

/// Whether a connection to `addr` is relayed (its ping echoed) rather than closed.
async fn relayed(addr: SocketAddr) -> bool {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    // A closed connection may refuse the write, or end (or reset) the read.
    if stream.write_all(b"ping").await.is_err() {
        return false;
    }
    let mut buf = [0u8; 7];
    match stream.read_exact(&mut buf).await {
        Ok(_) => &buf == b"db:ping",
        Err(_) => false,
    }
}

#[tokio::test]
async fn tcp_rbac_closes_a_denied_connection() {
    let (proxy, addr) = tcp_proxy_with(
        "stat_prefix: tcp.\n          rules: {action: DENY, policies: {p: {permissions: [{any: true}], principals: [{direct_remote_ip: {address_prefix: 127.0.0.0, prefix_len: 8}}]}}}",
    )
    .await;
    assert!(!relayed(addr).await);
    assert_eq!(proxy.store().stats().counter("tcp.rbac.denied").get(), 1);
    // Denied before an upstream was chosen.
    assert_eq!(
        proxy.store().stats().cluster("db").upstream_cx_total.get(),
        0
    );
}

#[tokio::test]
async fn tcp_rbac_relays_an_allowed_connection() {
    let (proxy, addr) = tcp_proxy_with(
        "stat_prefix: tcp\n          rules: {action: ALLOW, policies: {p: {permissions: [{destination_port_range: {start: 1, end: 65536}}], principals: [{direct_remote_ip: {address_prefix: 127.0.0.1}}]}}}",
    )
    .await;
    assert!(relayed(addr).await);
    assert_eq!(proxy.store().stats().counter("tcp.rbac.allowed").get(), 1);
}

#[tokio::test]
async fn envoy_decides_every_request_alike() {
    let backend = backend("b").await;
    // Istio's shapes: a DENY filter, then an ALLOW one, with dry-run rules beside.
    let deny = rules(
        "DENY",
        "{or_rules: {rules: [{url_path: {path: {prefix: /admin/}}}, {header: {name: x-user, string_match: {exact: mallory, ignore_case: true}}}, {uri_template: {name: t, typed_config: {'@type': type.googleapis.com/envoy.extensions.path.match.uri_template.v3.UriTemplateMatchConfig, path_template: '/**/internal'}}}, {uri_template: {name: t, typed_config: {'@type': type.googleapis.com/envoy.extensions.path.match.uri_template.v3.UriTemplateMatchConfig, path_template: '/debug/*'}}}]}}",
    );
    let allow = format!(
        "{}, shadow_rules_stat_prefix: istio_dry_run_allow_",
        rules(
            "ALLOW",
            "{and_rules: {rules: [{or_rules: {rules: [{header: {name: ':method', string_match: {exact: GET}}}, {header: {name: ':method', string_match: {exact: HEAD}}}]}}, {not_rule: {url_path: {path: {suffix: .secret}}}}, {header: {name: ':authority', string_match: {suffix: .shop, ignore_case: true}}}]}}",
        )
    );
    let yaml = format!("{}{ADMIN}", bootstrap(&[&deny, &allow], backend));
    let Some(envoy) = common::envoy::Envoy::start(&yaml).await else {
        return;
    };
    let mizzen = proxy(&yaml).await;
    let (ours, theirs) = (
        mizzen.listener_addr("http").await,
        envoy.listener_addr("http").await,
    );
    let asks: Vec<(&str, &str, &str, Option<&str>)> = vec![
        ("GET", "www.shop", "/", None),
        ("GET", "WWW.SHOP", "/items?q=1", None),
        ("HEAD", "www.shop", "/items", None),
        ("POST", "www.shop", "/items", None),
        ("GET", "www.shop", "/admin/users", None),
        ("GET", "www.shop", "/admin", None),
        ("GET", "www.shop", "/keys.secret", None),
        ("GET", "www.shop", "/keys.secret?x", None),
        ("GET", "other.host", "/", None),
        ("GET", "www.shop", "/", Some("Mallory")),
        ("GET", "www.shop", "/", Some("alice")),
        ("GET", "www.shop", "/a/b/internal", None),
        ("GET", "www.shop", "/internal", None),
        ("GET", "www.shop", "//internal?x", None),
        ("GET", "www.shop", "/debug/x", None),
        ("GET", "www.shop", "/debug/x/y", None),
        ("GET", "www.shop", "/debug/", None),
    ];
    let mut differences = Vec::new();
    for (method, host, path, user) in asks {
        let request = || {
            let mut r = hyper::Request::builder()
                .method(method)
                .uri(path)
                .header("host", host);
            if let Some(user) = user {
                r = r.header("x-user", user);
            }
            r.body(http_body_util::Full::new(bytes::Bytes::new()))
                .unwrap()
        };
        let answer = |got: Got| {
            let body = if got.status == 403 {
                got.body
            } else {
                String::new()
            };
            (got.status, body)
        };
        let (a, b) = (
            answer(send(ours, request()).await),
            answer(send(theirs, request()).await),
        );
        if a != b {
            differences.push(format!(
                "{method} {host}{path} {user:?}: mizzen {a:?}, envoy {b:?}"
            ));
        }
    }
    assert!(differences.is_empty(), "{}", differences.join("\n"));
}
