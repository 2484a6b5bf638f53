use http::{HeaderMap, HeaderValue, Method};

use super::*;
use crate::authz::Connection;
use crate::authz::decode;
use crate::authz::testdata::{istio_data, istio_filters};
use crate::route::RequestHead;

/// A request to evaluate, with what its connection says.
struct Ask {
    method: Method,
    authority: &'static str,
    path: &'static str,
    headers: HeaderMap,
    source: &'static str,
    remote: &'static str,
    destination: &'static str,
    principal: Option<&'static str>,
    sni: Option<&'static str>,
}

impl Ask {
    fn get(path: &'static str) -> Ask {
        Ask {
            method: Method::GET,
            authority: "httpbin.foo",
            path,
            headers: HeaderMap::new(),
            source: "10.0.0.1:40000",
            remote: "10.0.0.1",
            destination: "10.0.0.2:8000",
            principal: None,
            sni: None,
        }
    }

    fn header(mut self, name: &'static str, value: &'static str) -> Ask {
        self.headers.append(name, HeaderValue::from_static(value));
        self
    }

    fn principal(mut self, p: &'static str) -> Ask {
        self.principal = Some(p);
        self
    }

    /// Runs `f` on the subject this request makes.
    fn with<T>(&self, f: impl FnOnce(&Subject<'_>) -> T) -> T {
        let head = RequestHead {
            authority: self.authority,
            method: &self.method,
            path: self.path,
            scheme: "http",
            headers: &self.headers,
        };
        let subject = Subject {
            connection: Connection {
                source: self.source.parse().unwrap(),
                destination: self.destination.parse().unwrap(),
                principal: self.principal,
                server_name: self.sni,
                tls: false,
            },
            remote: self.remote.parse().unwrap(),
            request: Some(&head),
        };
        f(&subject)
    }
}

/// An ALLOW engine whose one policy has `permission` and `principal` (YAML).
fn allow(permission: &str, principal: &str) -> Engine {
    let yaml = format!(
        "action: ALLOW\npolicies:\n  p:\n    permissions: [{permission}]\n    principals: [{principal}]\n"
    );
    Engine::compile(&mizzen_xds::json::from_yaml(&yaml).unwrap()).unwrap()
}

fn permits(engine: &Engine, ask: &Ask) -> bool {
    ask.with(|s| engine.evaluate(s, &Metadata::default()).allowed)
}

fn permission(rule: &str) -> Engine {
    allow(rule, "{any: true}")
}

fn principal(rule: &str) -> Engine {
    allow("{any: true}", rule)
}

#[test]
fn header_matches_at_their_boundaries() {
    let exact = permission("{header: {name: x-user, string_match: {exact: Alice}}}");
    assert!(permits(&exact, &Ask::get("/").header("x-user", "Alice")));
    assert!(!permits(&exact, &Ask::get("/").header("x-user", "alice")));
    assert!(!permits(&exact, &Ask::get("/").header("x-user", "Alice2")));
    assert!(!permits(&exact, &Ask::get("/")));
    let prefix =
        permission("{header: {name: x-user, string_match: {prefix: al, ignore_case: true}}}");
    assert!(permits(&prefix, &Ask::get("/").header("x-user", "ALICE")));
    assert!(permits(&prefix, &Ask::get("/").header("x-user", "al")));
    assert!(!permits(&prefix, &Ask::get("/").header("x-user", "a")));
    let suffix = permission("{header: {name: x-user, string_match: {suffix: ce}}}");
    assert!(permits(&suffix, &Ask::get("/").header("x-user", "alice")));
    assert!(!permits(&suffix, &Ask::get("/").header("x-user", "aliCE")));
    let contains = permission("{header: {name: x-user, string_match: {contains: lic}}}");
    assert!(permits(&contains, &Ask::get("/").header("x-user", "alice")));
    let regex = permission("{header: {name: x-user, safe_regex_match: {regex: 'a.+e'}}}");
    assert!(permits(&regex, &Ask::get("/").header("x-user", "alice")));
    assert!(!permits(&regex, &Ask::get("/").header("x-user", "alice!")));
    let present = permission("{header: {name: x-user, present_match: true}}");
    assert!(permits(&present, &Ask::get("/").header("x-user", "")));
    assert!(!permits(&present, &Ask::get("/")));
    let inverted =
        permission("{header: {name: x-user, string_match: {exact: alice}, invert_match: true}}");
    assert!(!permits(
        &inverted,
        &Ask::get("/").header("x-user", "alice")
    ));
    assert!(permits(&inverted, &Ask::get("/").header("x-user", "bob")));
}

#[test]
fn pseudo_headers_are_the_requests() {
    let host = permission(
        "{header: {name: ':authority', string_match: {suffix: .foo, ignore_case: true}}}",
    );
    assert!(permits(&host, &Ask::get("/")));
    let method = permission("{header: {name: ':method', string_match: {exact: POST}}}");
    assert!(!permits(&method, &Ask::get("/")));
    // `:path` keeps the query; `url_path` drops it.
    let path = permission("{header: {name: ':path', string_match: {exact: '/a?b=1'}}}");
    assert!(permits(&path, &Ask::get("/a?b=1")));
    let url = permission("{url_path: {path: {exact: /a}}}");
    assert!(permits(&url, &Ask::get("/a?b=1")));
    assert!(permits(&url, &Ask::get("/a#frag")));
    assert!(!permits(&url, &Ask::get("/a/")));
    let prefix = permission("{url_path: {path: {prefix: /api/}}}");
    assert!(permits(&prefix, &Ask::get("/api/")));
    assert!(!permits(&prefix, &Ask::get("/api")));
    let case = permission("{url_path: {path: {exact: /API, ignore_case: true}}}");
    assert!(permits(&case, &Ask::get("/api")));
}

#[test]
fn combinators_and_not() {
    let and = permission(
        "{and_rules: {rules: [{url_path: {path: {prefix: /a}}}, {not_rule: {url_path: {path: {prefix: /a/b}}}}]}}",
    );
    assert!(permits(&and, &Ask::get("/a/c")));
    assert!(!permits(&and, &Ask::get("/a/b/c")));
    assert!(!permits(&and, &Ask::get("/c")));
    let or = principal(
        "{or_ids: {ids: [{header: {name: x-a, present_match: true}}, {header: {name: x-b, present_match: true}}]}}",
    );
    assert!(permits(&or, &Ask::get("/").header("x-b", "1")));
    assert!(!permits(&or, &Ask::get("/")));
    let not = principal("{not_id: {any: true}}");
    assert!(!permits(&not, &Ask::get("/")));
}

#[test]
fn addresses_at_the_edges_of_their_ranges() {
    let direct = principal("{direct_remote_ip: {address_prefix: 10.0.0.0, prefix_len: 31}}");
    let from = |source: &'static str| Ask {
        source,
        ..Ask::get("/")
    };
    assert!(permits(&direct, &from("10.0.0.0:1")));
    assert!(permits(&direct, &from("10.0.0.1:1")));
    assert!(!permits(&direct, &from("10.0.0.2:1")));
    assert!(permits(&direct, &from("[::ffff:10.0.0.1]:1")));
    let v6 = principal("{direct_remote_ip: {address_prefix: 'fd00::', prefix_len: 8}}");
    assert!(permits(&v6, &from("[fdff::1]:1")));
    assert!(!permits(&v6, &from("[fe00::1]:1")));
    assert!(!permits(&v6, &from("10.0.0.1:1")));
    // remote_ip is the trusted client address; direct_remote_ip the connection's.
    let remote = principal("{remote_ip: {address_prefix: 192.168.1.7, prefix_len: 32}}");
    let forwarded = Ask {
        remote: "192.168.1.7",
        ..Ask::get("/")
    };
    assert!(permits(&remote, &forwarded));
    assert!(!permits(&remote, &Ask::get("/")));
    let destination = permission("{destination_ip: {address_prefix: 10.0.0.2}}");
    assert!(permits(&destination, &Ask::get("/")));
    let elsewhere = Ask {
        destination: "10.0.0.3:8000",
        ..Ask::get("/")
    };
    assert!(!permits(&destination, &elsewhere));
}

#[test]
fn ports_and_port_ranges() {
    let at = |destination: &'static str| Ask {
        destination,
        ..Ask::get("/")
    };
    let port = permission("{destination_port: 8000}");
    assert!(permits(&port, &at("10.0.0.2:8000")));
    assert!(!permits(&port, &at("10.0.0.2:8001")));
    // [start, end)
    let range = permission("{destination_port_range: {start: 8000, end: 8002}}");
    assert!(permits(&range, &at("10.0.0.2:8000")));
    assert!(permits(&range, &at("10.0.0.2:8001")));
    assert!(!permits(&range, &at("10.0.0.2:8002")));
    assert!(!permits(&range, &at("10.0.0.2:7999")));
}

#[test]
fn authenticated_needs_a_principal() {
    let any = principal("{authenticated: {}}");
    assert!(!permits(&any, &Ask::get("/")));
    assert!(permits(
        &any,
        &Ask::get("/").principal("spiffe://td/ns/a/sa/b")
    ));
    let named = principal(
        "{authenticated: {principal_name: {safe_regex: {regex: 'spiffe://.+/ns/foo/(.+/|)sa/sleep(/.+)?'}}}}",
    );
    assert!(permits(
        &named,
        &Ask::get("/").principal("spiffe://cluster.local/ns/foo/sa/sleep")
    ));
    assert!(!permits(
        &named,
        &Ask::get("/").principal("spiffe://cluster.local/ns/bar/sa/sleep")
    ));
    assert!(!permits(&named, &Ask::get("/")));
    // No TLS: the server name is matched as empty.
    let sni = permission("{requested_server_name: {exact: ''}}");
    assert!(permits(&sni, &Ask::get("/")));
    let named_sni = permission("{requested_server_name: {suffix: .local}}");
    let tls = Ask {
        sni: Some("outbound_.80_._.httpbin.foo.svc.cluster.local"),
        ..Ask::get("/")
    };
    assert!(permits(&named_sni, &tls) && !permits(&named_sni, &Ask::get("/")));
}

#[test]
fn actions_and_the_first_policy_by_name() {
    let engine = |action: &str| -> Engine {
        let yaml = format!(
            "action: {action}\npolicies:\n  b: {{permissions: [{{url_path: {{path: {{prefix: /}}}}}}], principals: [{{any: true}}]}}\n  a: {{permissions: [{{url_path: {{path: {{prefix: /x}}}}}}], principals: [{{any: true}}]}}\n"
        );
        Engine::compile(&mizzen_xds::json::from_yaml(&yaml).unwrap()).unwrap()
    };
    let decide = |e: &Engine, path| {
        Ask::get(path).with(|s| {
            let v = e.evaluate(s, &Metadata::default());
            (v.allowed, v.policy.map(str::to_owned))
        })
    };
    assert_eq!(decide(&engine("ALLOW"), "/x"), (true, Some("a".into())));
    assert_eq!(decide(&engine("ALLOW"), "/y"), (true, Some("b".into())));
    assert_eq!(decide(&engine("DENY"), "/x"), (false, Some("a".into())));
    assert_eq!(decide(&engine("LOG"), "/x"), (true, Some("a".into())));
    let none: Engine =
        Engine::compile(&mizzen_xds::json::from_yaml("action: ALLOW").unwrap()).unwrap();
    assert!(
        !permits(&none, &Ask::get("/")),
        "ALLOW with no policy denies all"
    );
    let none: Engine =
        Engine::compile(&mizzen_xds::json::from_yaml("action: DENY").unwrap()).unwrap();
    assert!(
        permits(&none, &Ask::get("/")),
        "DENY with no policy allows all"
    );
}

#[test]
fn unsupported_and_invalid_rules_name_their_field() {
    let compile = |yaml: &str| {
        Engine::compile(&mizzen_xds::json::from_yaml(yaml).unwrap())
            .unwrap_err()
            .field
    };
    assert_eq!(
        compile(
            "policies: {p: {permissions: [{and_rules: {rules: [{any: true}, {header: {name: x, safe_regex_match: {regex: '('}}}]}}], principals: [{any: true}]}}"
        ),
        "policies[\"p\"].permissions[0].and_rules.rules[1].header.safe_regex_match"
    );
    assert_eq!(
        compile(
            "policies: {p: {permissions: [{any: true}], principals: [{filter_state: {key: k}}]}}"
        ),
        "policies[\"p\"].principals[0].filter_state"
    );
    assert_eq!(
        compile(
            "policies: {p: {permissions: [{any: true}], principals: [{remote_ip: {address_prefix: 10.0.0.0, prefix_len: 33}}]}}"
        ),
        "policies[\"p\"].principals[0].remote_ip"
    );
}

/// An HTTP RBAC filter and its counters.
fn http_filter(yaml: &str) -> (Rbac, Arc<HttpStats>) {
    let config: PbHttpRbac = mizzen_xds::json::from_yaml(yaml).unwrap();
    let stats = Arc::new(HttpStats::default());
    (Rbac::http(&config, &stats).unwrap(), stats)
}

#[test]
fn shadow_rules_are_counted_and_recorded_but_never_enforced() {
    let (rbac, stats) = http_filter(
        "shadow_rules: {action: DENY, policies: {istio-ext-authz-p: {permissions: [{url_path: {path: {exact: /checked}}}], principals: [{any: true}]}}}\nshadow_rules_stat_prefix: istio_ext_authz_",
    );
    let mut metadata = Metadata::default();
    assert!(Ask::get("/checked").with(|s| rbac.check(s, &mut metadata)));
    let ns = metadata.filter(HTTP_RBAC).unwrap();
    assert_eq!(
        ns["istio_ext_authz_shadow_effective_policy_id"],
        "istio-ext-authz-p"
    );
    assert_eq!(ns["istio_ext_authz_shadow_engine_result"], "denied");
    let mut metadata = Metadata::default();
    assert!(Ask::get("/other").with(|s| rbac.check(s, &mut metadata)));
    let ns = metadata.filter(HTTP_RBAC).unwrap();
    assert!(!ns.contains_key("istio_ext_authz_shadow_effective_policy_id"));
    assert_eq!(ns["istio_ext_authz_shadow_engine_result"], "allowed");
    assert_eq!(stats.counter("rbac.istio_ext_authz_shadow_denied").get(), 1);
    assert_eq!(
        stats.counter("rbac.istio_ext_authz_shadow_allowed").get(),
        1
    );
    // No enforced rules: nothing to count, as in Envoy.
    assert_eq!(stats.counter("rbac.allowed").get(), 0);
}

#[test]
fn enforced_rules_count_as_envoy_names_them() {
    let (rbac, stats) = http_filter(
        "rules: {action: ALLOW, policies: {p: {permissions: [{url_path: {path: {prefix: /ok}}}], principals: [{any: true}]}}}\nrules_stat_prefix: mine_",
    );
    let mut metadata = Metadata::default();
    assert!(Ask::get("/ok").with(|s| rbac.check(s, &mut metadata)));
    assert!(!Ask::get("/no").with(|s| rbac.check(s, &mut metadata)));
    assert_eq!(stats.counter("rbac.mine_allowed").get(), 1);
    assert_eq!(stats.counter("rbac.mine_denied").get(), 1);
}

/// The RBAC filters Istio's authz builder emits (its golden `*-out*.yaml` files), HTTP
/// and network, by file name.
fn goldens(kind: &str) -> Vec<(String, Rbac)> {
    let stats = Stats::default();
    let wanted = if kind == "http" {
        HTTP_RBAC
    } else {
        NETWORK_RBAC
    };
    istio_filters(kind)
        .into_iter()
        .filter(|f| f.name == wanted)
        .map(|f| {
            let compiled = if kind == "http" {
                decode::<PbHttpRbac>(&f.config).and_then(|c| Rbac::http(&c, &stats.http("x")))
            } else {
                decode::<PbNetworkRbac>(&f.config).and_then(|c| Rbac::network(&c, &stats))
            };
            match compiled {
                Ok(rbac) => (f.file, rbac),
                Err(e) => panic!("{}: {}: {}", f.file, e.field, e.problem),
            }
        })
        .collect()
}

fn golden<'a>(all: &'a [(String, Rbac)], name: &str) -> &'a Rbac {
    &all.iter()
        .find(|(n, _)| n == name)
        .unwrap_or_else(|| panic!("{name}"))
        .1
}

#[test]
fn every_rbac_filter_istio_generates_compiles() {
    let http = goldens("http");
    let tcp = goldens("tcp");
    if istio_data().is_some() {
        assert!(http.len() >= 50, "{} HTTP RBAC goldens", http.len());
        assert!(tcp.len() >= 6, "{} network RBAC goldens", tcp.len());
    }
}

#[test]
fn istio_deny_and_allow_policies_decide_by_principal() {
    let http = goldens("http");
    if http.is_empty() {
        return;
    }
    let deny = golden(&http, "deny-and-allow-out1.yaml");
    let allow = golden(&http, "deny-and-allow-out2.yaml");
    // Istio chains them: DENY first, then ALLOW.
    let decide = |ask: Ask| {
        ask.with(|s| {
            let mut m = Metadata::default();
            deny.check(s, &mut m) && allow.check(s, &mut m)
        })
    };
    assert!(decide(Ask::get("/").principal("spiffe://allow")));
    assert!(!decide(Ask::get("/").principal("spiffe://deny")));
    assert!(!decide(Ask::get("/").principal("spiffe://other")));
    assert!(!decide(Ask::get("/")));
}

#[test]
fn istio_path_policies_with_a_catch_all_not_path_deny_every_path() {
    let http = goldens("http");
    if http.is_empty() {
        return;
    }
    // `paths: [/exact, /prefix/*, */suffix, ...]` with `notPaths` holding the regex `.+`:
    // every path is excluded, so the ALLOW policy matches nothing.
    let paths = golden(&http, "allow-path-out.yaml");
    for path in ["/exact", "/prefix/a", "/a/suffix", "/path/template/x", "/"] {
        let allowed = Ask::get(path).with(|s| paths.check(s, &mut Metadata::default()));
        assert!(!allowed, "{path}");
    }
}

#[test]
fn istio_dry_run_counts_without_denying() {
    let http = goldens("http");
    if http.is_empty() {
        return;
    }
    let mixed = golden(&http, "dry-run-mix-out.yaml");
    let decide = |path| {
        Ask::get(path).with(|s| {
            let mut m = Metadata::default();
            let allowed = mixed.check(s, &mut m);
            let shadow =
                m.filter(HTTP_RBAC).unwrap()["istio_dry_run_allow_shadow_engine_result"].clone();
            (allowed, shadow)
        })
    };
    assert_eq!(decide("/another"), (true, "denied".into()));
    assert_eq!(decide("/allow"), (false, "allowed".into()));
}

#[test]
fn istio_tcp_policies_decide_by_port_and_principal() {
    let tcp = goldens("tcp");
    if tcp.is_empty() {
        return;
    }
    let allow = golden(&tcp, "allow-both-http-tcp-out.yaml");
    let connect = |destination: &str, principal: Option<&str>| {
        let connection = Connection {
            source: "10.0.0.1:40000".parse().unwrap(),
            destination: destination.parse().unwrap(),
            principal,
            server_name: None,
            tls: false,
        };
        let subject = Subject {
            connection,
            remote: connection.source.ip(),
            request: None,
        };
        allow.check(&subject, &mut Metadata::default())
    };
    let ns1 = Some("spiffe://cluster.local/ns/ns-1/sa/default");
    assert!(connect("10.0.0.2:80", ns1));
    assert!(!connect("10.0.0.2:81", ns1));
    assert!(!connect(
        "10.0.0.2:80",
        Some("spiffe://cluster.local/ns/ns-2/sa/default")
    ));
    assert!(!connect("10.0.0.2:80", None));
    // Istio's DENY with an empty rule denies every connection.
    let deny = golden(&tcp, "deny-both-http-tcp-out.yaml");
    let subject = Subject {
        connection: Connection {
            source: "10.0.0.1:40000".parse().unwrap(),
            destination: "10.0.0.2:9000".parse().unwrap(),
            principal: None,
            server_name: None,
            tls: false,
        },
        remote: "10.0.0.1".parse().unwrap(),
        request: None,
    };
    assert!(!deny.check(&subject, &mut Metadata::default()));
}
