//! Actions: clusters (single, from a header, weighted), rewrites, timeouts, inherited
//! policies, redirects and direct responses.

use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use mizzen_xds::pb::envoy::config::core::v3::{DataSource, data_source};
use mizzen_xds::pb::envoy::r#type::matcher::v3::RegexMatchAndSubstitute;
use mizzen_xds::pb::google::protobuf::{BoolValue, Duration as PbDuration, UInt32Value};

use super::*;
use crate::route::{Action, DEFAULT_TIMEOUT, Forward, NewHost, Problem, Redirect, Timeout};

/// A table whose only virtual host (`*`) has the single route `r`.
fn one(r: pb::Route) -> RouteTable {
    table(vec![vhost("all", &["*"], vec![r])])
}

fn one_refused(r: pb::Route) -> RouteError {
    refused(config(vec![vhost("all", &["*"], vec![r])]))
}

fn forward_of(t: &RouteTable) -> &Forward {
    match &t.virtual_hosts()[0].routes()[0].action {
        Action::Forward(f) => f,
        other => panic!("not a forward: {other:?}"),
    }
}

fn redirect_of(t: &RouteTable) -> &Redirect {
    match &t.virtual_hosts()[0].routes()[0].action {
        Action::Redirect(r) => r,
        other => panic!("not a redirect: {other:?}"),
    }
}

fn cluster_weight(name: &str, weight: u32) -> pb::weighted_cluster::ClusterWeight {
    pb::weighted_cluster::ClusterWeight {
        name: name.to_owned(),
        weight: Some(UInt32Value { value: weight }),
        ..pb::weighted_cluster::ClusterWeight::default()
    }
}

fn weighted(clusters: Vec<pb::weighted_cluster::ClusterWeight>) -> pb::route::Action {
    weighted_with(pb::WeightedCluster {
        clusters,
        ..pb::WeightedCluster::default()
    })
}

fn weighted_with(w: pb::WeightedCluster) -> pb::route::Action {
    pb::route::Action::Route(pb::RouteAction {
        cluster_specifier: Some(pb::route_action::ClusterSpecifier::WeightedClusters(w)),
        ..pb::RouteAction::default()
    })
}

fn substitution(pattern: &str, with: &str) -> RegexMatchAndSubstitute {
    RegexMatchAndSubstitute {
        pattern: Some(regex_matcher(pattern)),
        substitution: with.to_owned(),
    }
}

fn seconds(seconds: i64, nanos: i32) -> PbDuration {
    PbDuration { seconds, nanos }
}

#[test]
fn a_cluster_route_forwards_to_that_cluster() {
    let t = one(route("reviews", prefix("/")));
    let req = Request::get("reviews", "/");
    assert_eq!(cluster_for(&t, &req, 0), Some("reviews"));
}

#[test]
fn cluster_header_names_the_cluster_per_request() {
    let action = pb::route::Action::Route(pb::RouteAction {
        cluster_specifier: Some(pb::route_action::ClusterSpecifier::ClusterHeader(
            "x-cluster".to_owned(),
        )),
        cluster_not_found_response_code: pb::route_action::ClusterNotFoundResponseCode::NotFound
            as i32,
        ..pb::RouteAction::default()
    });
    let t = one(routed("r", prefix("/"), action));
    let req = Request::get("h", "/")
        .header("x-cluster", "ratings")
        .header("x-cluster", "other");
    assert_eq!(cluster_for(&t, &req, 0), Some("ratings"));
    assert_eq!(cluster_for(&t, &Request::get("h", "/"), 0), None);
    assert_eq!(
        forward_of(&t).cluster_not_found_response_code,
        StatusCode::NOT_FOUND
    );
}

#[test]
fn the_default_cluster_not_found_response_is_503() {
    let t = one(route("r", prefix("/")));
    assert_eq!(
        forward_of(&t).cluster_not_found_response_code,
        StatusCode::SERVICE_UNAVAILABLE
    );
}

#[test]
fn weighted_clusters_split_the_random_value_by_weight() {
    let t = one(routed(
        "r",
        prefix("/"),
        weighted(vec![
            cluster_weight("v1", 80),
            cluster_weight("off", 0),
            cluster_weight("v2", 20),
        ]),
    ));
    let req = Request::get("h", "/");
    for (random, want) in [
        (0, "v1"),
        (79, "v1"),
        (80, "v2"),
        (99, "v2"),
        (100, "v1"),
        (u64::MAX, "v1"),
    ] {
        assert_eq!(cluster_for(&t, &req, random), Some(want), "random {random}");
    }
}

#[test]
fn weighted_picks_follow_the_weights() {
    let t = one(routed(
        "r",
        prefix("/"),
        weighted(vec![
            cluster_weight("v1", 50),
            cluster_weight("v2", 30),
            cluster_weight("v3", 20),
        ]),
    ));
    let req = Request::get("h", "/");
    let n = 10_000;
    let mut counts = std::collections::HashMap::new();
    for _ in 0..n {
        let picked = t.select(&req.head()).unwrap().cluster.unwrap();
        *counts.entry(picked.name(&req.head()).unwrap()).or_insert(0) += 1;
    }
    for (cluster, p) in [("v1", 0.5), ("v2", 0.3), ("v3", 0.2)] {
        assert_binomial(counts.get(cluster).copied().unwrap_or(0), n, p, cluster);
    }
}

#[test]
fn total_weight_is_ignored_like_envoy_does_since_it_was_deprecated() {
    #[allow(deprecated)]
    let w = pb::WeightedCluster {
        clusters: vec![cluster_weight("v1", 1), cluster_weight("v2", 1)],
        total_weight: Some(UInt32Value { value: 100 }),
        ..pb::WeightedCluster::default()
    };
    let t = one(routed("r", prefix("/"), weighted_with(w)));
    let req = Request::get("h", "/");
    assert_eq!(cluster_for(&t, &req, 0), Some("v1"));
    assert_eq!(cluster_for(&t, &req, 1), Some("v2"));
    assert_eq!(cluster_for(&t, &req, 2), Some("v1"));
}

#[test]
fn a_random_value_header_replaces_the_random_value() {
    let t = one(routed(
        "r",
        prefix("/"),
        weighted_with(pb::WeightedCluster {
            clusters: vec![cluster_weight("v1", 50), cluster_weight("v2", 50)],
            random_value_specifier: Some(pb::weighted_cluster::RandomValueSpecifier::HeaderName(
                "x-random".to_owned(),
            )),
            ..pb::WeightedCluster::default()
        }),
    ));
    let pinned = Request::get("h", "/").header("x-random", "75");
    assert_eq!(cluster_for(&t, &pinned, 0), Some("v2"));
    // A header that is not one integer is ignored.
    let bad = Request::get("h", "/").header("x-random", "x");
    assert_eq!(cluster_for(&t, &bad, 0), Some("v1"));
    let twice = Request::get("h", "/")
        .header("x-random", "75")
        .header("x-random", "75");
    assert_eq!(cluster_for(&t, &twice, 0), Some("v1"));
}

#[test]
fn weights_must_sum_to_more_than_zero_and_fit_in_u32() {
    let err = one_refused(routed(
        "r",
        prefix("/"),
        weighted(vec![cluster_weight("a", 0), cluster_weight("b", 0)]),
    ));
    assert_eq!(err.field(), "route.weighted_clusters.clusters");
    assert!(matches!(err.problem(), Problem::ZeroTotalWeight));
    let err = one_refused(routed(
        "r",
        prefix("/"),
        weighted(vec![cluster_weight("a", u32::MAX), cluster_weight("b", 1)]),
    ));
    assert!(matches!(err.problem(), Problem::TotalWeightOverflow));
}

#[test]
fn a_weighted_cluster_has_a_name_or_a_cluster_header() {
    let mut both = cluster_weight("a", 1);
    both.cluster_header = "x-c".to_owned();
    let err = one_refused(routed("r", prefix("/"), weighted(vec![both])));
    assert_eq!(err.field(), "route.weighted_clusters.clusters[0].name");
    let err = one_refused(routed(
        "r",
        prefix("/"),
        weighted(vec![cluster_weight("", 1)]),
    ));
    assert_eq!(err.field(), "route.weighted_clusters.clusters[0].name");
}

#[test]
fn prefix_rewrite_replaces_what_the_route_matched() {
    let rewrite = |m: pb::RouteMatch, path: &str| {
        let action = pb::RouteAction {
            prefix_rewrite: "/v2/".to_owned(),
            ..pb::RouteAction::default()
        };
        let t = one(routed("r", m, forward_with(action, "c")));
        forward_of(&t).rewrite_path(path)
    };
    assert_eq!(
        rewrite(prefix("/api/"), "/api/users?id=1").as_deref(),
        Some("/v2/users?id=1")
    );
    assert_eq!(
        rewrite(case_insensitive_prefix("/API/"), "/api/users").as_deref(),
        Some("/v2/users")
    );
    assert_eq!(
        rewrite(exact("/old"), "/old?x=1").as_deref(),
        Some("/v2/?x=1")
    );
    // After a regex match, the whole path (not the query) is replaced.
    assert_eq!(
        rewrite(regex("/[a-z]+/[0-9]+"), "/users/42?x=1").as_deref(),
        Some("/v2/?x=1")
    );
}

fn case_insensitive_prefix(p: &str) -> pb::RouteMatch {
    pb::RouteMatch {
        case_sensitive: Some(BoolValue { value: false }),
        ..prefix(p)
    }
}

#[test]
fn regex_rewrite_substitutes_in_the_path() {
    let action = pb::RouteAction {
        regex_rewrite: Some(substitution("^/service/([^/]+)(/.*)$", r"\2/instance/\1")),
        ..pb::RouteAction::default()
    };
    let t = one(routed("r", prefix("/"), forward_with(action, "c")));
    assert_eq!(
        forward_of(&t)
            .rewrite_path("/service/foo/v1/api?q=1")
            .as_deref(),
        Some("/v1/api/instance/foo?q=1")
    );
}

#[test]
fn no_rewrite_leaves_the_path_alone() {
    let t = one(route("r", prefix("/")));
    assert_eq!(forward_of(&t).rewrite_path("/a?b"), None);
}

#[test]
fn only_one_path_rewrite_may_be_set() {
    let action = pb::RouteAction {
        prefix_rewrite: "/a".to_owned(),
        regex_rewrite: Some(substitution("a", "b")),
        ..pb::RouteAction::default()
    };
    let err = one_refused(routed("r", prefix("/"), forward_with(action, "c")));
    assert_eq!(err.field(), "route.regex_rewrite");
}

fn host_rewritten(
    spec: Option<pb::route_action::HostRewriteSpecifier>,
    cluster_host: Option<&str>,
    req: &Request,
) -> Option<String> {
    let mut c = cluster_weight("c", 1);
    c.host_rewrite_specifier = cluster_host.map(|h| {
        pb::weighted_cluster::cluster_weight::HostRewriteSpecifier::HostRewriteLiteral(h.to_owned())
    });
    let t = one(routed(
        "r",
        prefix("/"),
        pb::route::Action::Route(pb::RouteAction {
            cluster_specifier: Some(pb::route_action::ClusterSpecifier::WeightedClusters(
                pb::WeightedCluster {
                    clusters: vec![c],
                    ..pb::WeightedCluster::default()
                },
            )),
            host_rewrite_specifier: spec,
            ..pb::RouteAction::default()
        }),
    ));
    let selected = t.select_with(&req.head(), 0).unwrap();
    forward_of(&t)
        .rewrite_host(selected.cluster.unwrap(), &req.head())
        .map(|h| h.as_str().to_owned())
}

#[test]
fn host_rewrites() {
    use pb::route_action::HostRewriteSpecifier as H;
    let req = Request::get("old", "/tenants/acme/x").header("x-host", "from-header");
    let literal = || Some(H::HostRewriteLiteral("new".into()));
    assert_eq!(
        host_rewritten(literal(), None, &req).as_deref(),
        Some("new")
    );
    let header = || Some(H::HostRewriteHeader("x-host".into()));
    assert_eq!(
        host_rewritten(header(), None, &req).as_deref(),
        Some("from-header")
    );
    let regex = Some(H::HostRewritePathRegex(substitution(
        "^/tenants/([^/]+)/.*$",
        r"\1.example.com",
    )));
    assert_eq!(
        host_rewritten(regex, None, &req).as_deref(),
        Some("acme.example.com")
    );
    assert_eq!(host_rewritten(None, None, &req), None);
}

#[test]
fn the_routes_host_rewrite_wins_over_the_clusters_unless_it_yields_nothing() {
    use pb::route_action::HostRewriteSpecifier as H;
    let req = Request::get("old", "/");
    let literal = Some(H::HostRewriteLiteral("route".into()));
    assert_eq!(
        host_rewritten(literal, Some("cluster"), &req).as_deref(),
        Some("route")
    );
    let absent_header = Some(H::HostRewriteHeader("x-host".into()));
    assert_eq!(
        host_rewritten(absent_header, Some("cluster"), &req).as_deref(),
        Some("cluster")
    );
    assert_eq!(
        host_rewritten(None, Some("cluster"), &req).as_deref(),
        Some("cluster")
    );
}

#[test]
fn only_the_routes_own_host_rewrite_counts_as_the_routes() {
    // Envoy records the original host for a route's rewrite, not for a weighted cluster's.
    use pb::route_action::HostRewriteSpecifier as H;
    let req = Request::get("old", "/");
    let rewrite = |spec: Option<H>, cluster_host: Option<&str>| {
        let mut c = cluster_weight("c", 1);
        c.host_rewrite_specifier = cluster_host.map(|h| {
            pb::weighted_cluster::cluster_weight::HostRewriteSpecifier::HostRewriteLiteral(
                h.to_owned(),
            )
        });
        let mut action = weighted(vec![c]);
        if let pb::route::Action::Route(a) = &mut action {
            a.host_rewrite_specifier = spec;
        }
        let t = one(routed("r", prefix("/"), action));
        let selected = t.select_with(&req.head(), 0).unwrap();
        let rewritten = forward_of(&t).rewrite_host(selected.cluster.unwrap(), &req.head());
        rewritten.map(|h| match h {
            NewHost::Route(host) => format!("route {host}"),
            NewHost::Cluster(host) => format!("cluster {host}"),
        })
    };
    let literal = Some(H::HostRewriteLiteral("new".into()));
    assert_eq!(rewrite(literal, Some("c")).as_deref(), Some("route new"));
    assert_eq!(rewrite(None, Some("c")).as_deref(), Some("cluster c"));
}

#[test]
fn auto_host_rewrite_is_a_flag_for_after_load_balancing() {
    let action = pb::RouteAction {
        host_rewrite_specifier: Some(pb::route_action::HostRewriteSpecifier::AutoHostRewrite(
            BoolValue { value: true },
        )),
        ..pb::RouteAction::default()
    };
    let t = one(routed("r", prefix("/"), forward_with(action, "c")));
    assert!(forward_of(&t).auto_host_rewrite());
    let plain = one(route("r", prefix("/")));
    assert!(!forward_of(&plain).auto_host_rewrite());
}

#[test]
fn timeouts_default_to_15s_and_0_disables() {
    let with = |timeout: Option<PbDuration>, idle: Option<PbDuration>| {
        let action = pb::RouteAction {
            timeout,
            idle_timeout: idle,
            ..pb::RouteAction::default()
        };
        let t = one(routed("r", prefix("/"), forward_with(action, "c")));
        let f = forward_of(&t);
        (f.timeout, f.idle_timeout)
    };
    assert_eq!(with(None, None), (Timeout::After(DEFAULT_TIMEOUT), None));
    assert_eq!(DEFAULT_TIMEOUT, Duration::from_secs(15));
    assert_eq!(
        with(Some(seconds(0, 0)), Some(seconds(0, 0))),
        (Timeout::Disabled, Some(Timeout::Disabled))
    );
    assert_eq!(
        with(Some(seconds(2, 500_000_000)), Some(seconds(60, 0))).1,
        Some(Timeout::After(Duration::from_secs(60)))
    );
    assert_eq!(
        with(Some(seconds(2, 500_000_000)), None).0,
        Timeout::After(Duration::from_millis(2500))
    );
    let action = pb::RouteAction {
        timeout: Some(seconds(-1, 0)),
        ..pb::RouteAction::default()
    };
    let err = one_refused(routed("r", prefix("/"), forward_with(action, "c")));
    assert_eq!(err.field(), "route.timeout");
}

#[test]
fn retry_and_mirror_policies_are_inherited_when_a_route_has_none() {
    let retry = |on: &str| pb::RetryPolicy {
        retry_on: on.to_owned(),
        ..pb::RetryPolicy::default()
    };
    let mirror = |cluster: &str| pb::route_action::RequestMirrorPolicy {
        cluster: cluster.to_owned(),
        ..pb::route_action::RequestMirrorPolicy::default()
    };
    let own = pb::RouteAction {
        retry_policy: Some(retry("5xx")),
        request_mirror_policies: vec![mirror("route-mirror")],
        ..pb::RouteAction::default()
    };
    let mut vh = vhost(
        "all",
        &["*"],
        vec![
            routed("own", prefix("/own"), forward_with(own, "c")),
            route("inherits", prefix("/")),
        ],
    );
    vh.retry_policy = Some(retry("connect-failure"));
    let mut c = config(vec![vh]);
    c.request_mirror_policies = vec![mirror("config-mirror")];
    let t = compile(c);
    let forward = |i: usize| match &t.virtual_hosts()[0].routes()[i].action {
        Action::Forward(f) => f,
        other => panic!("{other:?}"),
    };
    let compiled_retry = |on| crate::http::RetryPolicy::compile(&retry(on)).ok();
    let compiled_mirror = |cluster| crate::http::MirrorPolicy::compile(&mirror(cluster)).unwrap();
    assert_eq!(forward(0).retry_policy, compiled_retry("5xx"));
    assert_eq!(
        forward(0).request_mirror_policies,
        [compiled_mirror("route-mirror")]
    );
    assert_eq!(forward(1).retry_policy, compiled_retry("connect-failure"));
    assert_eq!(
        forward(1).request_mirror_policies,
        [compiled_mirror("config-mirror")]
    );
}

fn redirect(r: pb::RedirectAction, m: pb::RouteMatch) -> RouteTable {
    one(routed("r", m, pb::route::Action::Redirect(r)))
}

fn location(t: &RouteTable, req: &Request) -> (StatusCode, String) {
    redirect_of(t).location(&req.head())
}

#[test]
fn https_redirect_drops_the_default_port_and_keeps_the_rest() {
    let t = redirect(
        pb::RedirectAction {
            scheme_rewrite_specifier: Some(
                pb::redirect_action::SchemeRewriteSpecifier::HttpsRedirect(true),
            ),
            ..pb::RedirectAction::default()
        },
        prefix("/"),
    );
    let at = |authority: &str| location(&t, &Request::get(authority, "/a?b=1"));
    assert_eq!(
        at("shop.example.com:80"),
        (
            StatusCode::MOVED_PERMANENTLY,
            "https://shop.example.com/a?b=1".to_owned()
        )
    );
    assert_eq!(
        at("shop.example.com:8080").1,
        "https://shop.example.com:8080/a?b=1"
    );
    assert_eq!(at("shop.example.com").1, "https://shop.example.com/a?b=1");
    assert_eq!(at("[::1]:80").1, "https://[::1]/a?b=1");
}

#[test]
fn redirect_scheme_host_and_port() {
    let t = redirect(
        pb::RedirectAction {
            scheme_rewrite_specifier: Some(
                pb::redirect_action::SchemeRewriteSpecifier::SchemeRedirect("ftp".to_owned()),
            ),
            port_redirect: 2121,
            ..pb::RedirectAction::default()
        },
        prefix("/"),
    );
    let req = Request::get("files:8080", "/f").scheme("https");
    assert_eq!(location(&t, &req).1, "ftp://files:2121/f");
    let t = redirect(
        pb::RedirectAction {
            host_redirect: "new.example.com".to_owned(),
            ..pb::RedirectAction::default()
        },
        prefix("/"),
    );
    let req = Request::get("old.example.com:8080", "/f").scheme("https");
    assert_eq!(location(&t, &req).1, "https://new.example.com/f");
}

fn path_redirect(path: &str, strip_query: bool) -> RouteTable {
    redirect(
        pb::RedirectAction {
            path_rewrite_specifier: Some(pb::redirect_action::PathRewriteSpecifier::PathRedirect(
                path.to_owned(),
            )),
            strip_query,
            ..pb::RedirectAction::default()
        },
        prefix("/"),
    )
}

#[test]
fn path_redirect_and_the_query_as_envoy_documents() {
    let req = Request::get("h", "/old-path?bar=1");
    assert_eq!(
        location(&path_redirect("/new-path-1", false), &req).1,
        "http://h/new-path-1?bar=1"
    );
    assert_eq!(
        location(&path_redirect("/new-path-2", true), &req).1,
        "http://h/new-path-2"
    );
    assert_eq!(
        location(&path_redirect("/new-path-3?foo=1", true), &req).1,
        "http://h/new-path-3?foo=1"
    );
    assert_eq!(
        location(&path_redirect("relative", false), &Request::get("h", "/")).1,
        "http://h/relative"
    );
}

#[test]
fn strip_query_alone_drops_the_query() {
    let t = redirect(
        pb::RedirectAction {
            strip_query: true,
            ..pb::RedirectAction::default()
        },
        prefix("/"),
    );
    assert_eq!(location(&t, &Request::get("h", "/p?q=1")).1, "http://h/p");
}

#[test]
fn redirect_prefix_and_regex_rewrites() {
    let t = redirect(
        pb::RedirectAction {
            path_rewrite_specifier: Some(pb::redirect_action::PathRewriteSpecifier::PrefixRewrite(
                "/new/".to_owned(),
            )),
            ..pb::RedirectAction::default()
        },
        prefix("/old/"),
    );
    assert_eq!(
        location(&t, &Request::get("h", "/old/x?q=1")).1,
        "http://h/new/x?q=1"
    );
    let t = redirect(
        pb::RedirectAction {
            path_rewrite_specifier: Some(pb::redirect_action::PathRewriteSpecifier::RegexRewrite(
                substitution("^/v1/(.*)$", r"/v2/\1"),
            )),
            ..pb::RedirectAction::default()
        },
        prefix("/"),
    );
    assert_eq!(
        location(&t, &Request::get("h", "/v1/a?q=1")).1,
        "http://h/v2/a?q=1"
    );
}

#[test]
fn redirect_response_codes() {
    use pb::redirect_action::RedirectResponseCode as Code;
    for (code, status) in [
        (Code::MovedPermanently, StatusCode::MOVED_PERMANENTLY),
        (Code::Found, StatusCode::FOUND),
        (Code::SeeOther, StatusCode::SEE_OTHER),
        (Code::TemporaryRedirect, StatusCode::TEMPORARY_REDIRECT),
        (Code::PermanentRedirect, StatusCode::PERMANENT_REDIRECT),
    ] {
        let t = redirect(
            pb::RedirectAction {
                response_code: code as i32,
                ..pb::RedirectAction::default()
            },
            prefix("/"),
        );
        assert_eq!(location(&t, &Request::get("h", "/")).0, status);
    }
}

fn direct(status: u32, body: Option<data_source::Specifier>) -> pb::route::Action {
    pb::route::Action::DirectResponse(pb::DirectResponseAction {
        status,
        body: body.map(|specifier| DataSource {
            specifier: Some(specifier),
            ..DataSource::default()
        }),
        ..pb::DirectResponseAction::default()
    })
}

#[test]
fn direct_responses_carry_status_and_body() {
    let t = one(routed(
        "r",
        prefix("/"),
        direct(
            503,
            Some(data_source::Specifier::InlineString("down".to_owned())),
        ),
    ));
    let Action::DirectResponse(d) = &t.virtual_hosts()[0].routes()[0].action else {
        panic!("not a direct response");
    };
    assert_eq!(d.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(d.body, Bytes::from_static(b"down"));
    let selected = t.select(&Request::get("h", "/").head()).unwrap();
    assert!(selected.cluster.is_none());
}

#[test]
fn direct_responses_of_201_and_3xx_locate_the_request_itself() {
    // Envoy adds `Location: <the request's URL>` to these (RFC 7231, 7.1.2).
    let located = |status: u32, req: &Request| {
        let t = one(routed("r", prefix("/"), direct(status, None)));
        let Action::DirectResponse(d) = &t.virtual_hosts()[0].routes()[0].action else {
            panic!("not a direct response");
        };
        d.location(&req.head())
    };
    let req = Request::get("shop:8080", "/cart?item=1");
    for status in [201, 301, 302, 307] {
        assert_eq!(
            located(status, &req).as_deref(),
            Some("http://shop:8080/cart?item=1"),
            "{status}"
        );
    }
    for status in [200, 204, 404, 503] {
        assert_eq!(located(status, &req), None, "{status}");
    }
}

#[test]
fn direct_response_status_and_body_are_checked() {
    for status in [0, 199, 600] {
        let err = one_refused(routed("r", prefix("/"), direct(status, None)));
        assert_eq!(err.field(), "direct_response.status", "{status}");
    }
    let big = data_source::Specifier::InlineBytes(vec![b'x'; 4097]);
    let err = one_refused(routed("r", prefix("/"), direct(200, Some(big.clone()))));
    assert_eq!(err.field(), "direct_response.body");
    assert!(matches!(
        err.problem(),
        Problem::BodyTooLarge {
            size: 4097,
            max: 4096
        }
    ));
    let mut c = config(vec![vhost(
        "all",
        &["*"],
        vec![routed("r", prefix("/"), direct(200, Some(big)))],
    )]);
    c.max_direct_response_body_size_bytes = Some(UInt32Value { value: 1 << 20 });
    compile(c);
    let file = data_source::Specifier::Filename("/etc/motd".to_owned());
    let err = one_refused(routed("r", prefix("/"), direct(200, Some(file))));
    assert_eq!(err.field(), "direct_response.body.filename");
    assert!(matches!(err.problem(), Problem::Unsupported));
}
