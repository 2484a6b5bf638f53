//! Route matching: first match wins, over path, headers, query parameters, runtime fraction
//! and gRPC conditions.

use mizzen_xds::pb::envoy::config::core::v3::RuntimeFractionalPercent;
use mizzen_xds::pb::envoy::r#type::matcher::v3::{StringMatcher, string_matcher::MatchPattern};
use mizzen_xds::pb::envoy::r#type::v3::{
    FractionalPercent, Int64Range, fractional_percent::DenominatorType,
};
use mizzen_xds::pb::google::protobuf::BoolValue;

use super::*;
use crate::route::Problem;

/// A table whose only virtual host (`*`) has these routes.
fn routes(routes: Vec<pb::Route>) -> RouteTable {
    table(vec![vhost("all", &["*"], routes)])
}

/// Whether a table with the single route `m` routes `req`.
fn matches(m: pb::RouteMatch, req: &Request) -> bool {
    route_for(&routes(vec![route("r", m)]), req).is_some()
}

fn get(path: &str) -> Request {
    Request::get("host", path)
}

fn case_insensitive(mut m: pb::RouteMatch) -> pb::RouteMatch {
    m.case_sensitive = Some(BoolValue { value: false });
    m
}

fn with_header(h: pb::HeaderMatcher) -> pb::RouteMatch {
    pb::RouteMatch {
        headers: vec![h],
        ..prefix("/")
    }
}

fn header(name: &str, spec: pb::header_matcher::HeaderMatchSpecifier) -> pb::HeaderMatcher {
    pb::HeaderMatcher {
        name: name.to_owned(),
        header_match_specifier: Some(spec),
        ..pb::HeaderMatcher::default()
    }
}

fn string(pattern: MatchPattern, ignore_case: bool) -> pb::header_matcher::HeaderMatchSpecifier {
    pb::header_matcher::HeaderMatchSpecifier::StringMatch(StringMatcher {
        match_pattern: Some(pattern),
        ignore_case,
    })
}

fn exact_header(name: &str, value: &str) -> pb::HeaderMatcher {
    header(name, string(MatchPattern::Exact(value.to_owned()), false))
}

fn present(name: &str, present: bool) -> pb::HeaderMatcher {
    header(
        name,
        pb::header_matcher::HeaderMatchSpecifier::PresentMatch(present),
    )
}

#[test]
fn routes_are_tried_in_order_and_the_first_match_wins() {
    let t = routes(vec![
        route("login", exact("/login")),
        route("api", prefix("/api")),
        route("api-v2", prefix("/api/v2")),
        route("rest", prefix("/")),
    ]);
    for (path, want) in [
        ("/login", "login"),
        ("/api/v2/users", "api"),
        ("/apiary", "api"),
        ("/about", "rest"),
    ] {
        assert_eq!(route_for(&t, &get(path)), Some(want), "{path}");
    }
}

#[test]
fn no_matching_route_means_no_route() {
    let t = routes(vec![route("api", prefix("/api"))]);
    assert!(t.select(&get("/other").head()).is_none());
}

#[test]
fn prefix_matches_the_start_of_the_path_without_the_query() {
    assert!(matches(prefix("/api"), &get("/api/users?x=1")));
    assert!(matches(prefix("/api"), &get("/api")));
    assert!(!matches(prefix("/api"), &get("/ap")));
    assert!(!matches(prefix("/api?"), &get("/api?x")));
    assert!(!matches(prefix("/API"), &get("/api")));
}

#[test]
fn path_matches_the_whole_path_without_the_query() {
    assert!(matches(exact("/login"), &get("/login")));
    assert!(matches(exact("/login"), &get("/login?next=/home")));
    assert!(matches(exact("/login"), &get("/login#top")));
    assert!(!matches(exact("/login"), &get("/login/")));
    assert!(!matches(exact("/login"), &get("/Login")));
}

#[test]
fn case_sensitive_false_ignores_ascii_case_of_prefix_and_path() {
    assert!(matches(case_insensitive(prefix("/API")), &get("/api/x")));
    assert!(matches(case_insensitive(exact("/Login")), &get("/LOGIN")));
    // Regexes ignore `case_sensitive`: only `(?i)` makes them insensitive.
    assert!(!matches(case_insensitive(regex("/api")), &get("/API")));
    assert!(matches(regex("(?i)/api"), &get("/API")));
}

#[test]
fn safe_regex_fully_matches_the_path_without_the_query() {
    let m = || regex("/reviews/[0-9]+");
    assert!(matches(m(), &get("/reviews/12")));
    assert!(matches(m(), &get("/reviews/12?user=jason")));
    assert!(!matches(m(), &get("/reviews/12/stars")));
    assert!(!matches(m(), &get("/v1/reviews/12")));
}

#[test]
fn path_separated_prefix_matches_whole_segments() {
    let m = || {
        path_match(pb::route_match::PathSpecifier::PathSeparatedPrefix(
            "/api/dev".into(),
        ))
    };
    for path in [
        "/api/dev",
        "/api/dev/",
        "/api/dev/v1",
        "/api/dev?param=true",
    ] {
        assert!(matches(m(), &get(path)), "{path}");
    }
    assert!(!matches(m(), &get("/api/developer")));
    assert!(!matches(m(), &get("/api")));
}

#[test]
fn path_separated_prefix_must_be_a_clean_prefix() {
    for bad in ["/api/", "/a?b", "/a#b", ""] {
        let m = path_match(pb::route_match::PathSpecifier::PathSeparatedPrefix(
            bad.into(),
        ));
        let err = refused(config(vec![vhost("all", &["*"], vec![route("r", m)])]));
        assert_eq!(err.field(), "match.path_separated_prefix", "{bad:?}");
    }
}

#[test]
fn connect_matcher_matches_connect_requests_only() {
    let connect = || {
        path_match(pb::route_match::PathSpecifier::ConnectMatcher(
            pb::route_match::ConnectMatcher {},
        ))
    };
    let tunnel = Request::get("host:443", "").method(Method::CONNECT);
    assert!(matches(connect(), &tunnel));
    assert!(!matches(connect(), &get("/")));
    // Routes with a path condition never see a request without a path.
    assert!(!matches(prefix(""), &tunnel));
    assert!(!matches(regex(".*"), &tunnel));
}

#[test]
fn path_parameters_can_be_ignored_when_matching() {
    let build = |ignore: bool| {
        let mut c = config(vec![vhost("all", &["*"], vec![route("r", exact("/cart"))])]);
        c.ignore_path_parameters_in_path_matching = ignore;
        compile(c)
    };
    let req = get("/cart;jsessionid=42?x=1");
    assert_eq!(route_for(&build(true), &req), Some("r"));
    assert_eq!(route_for(&build(false), &req), None);
}

#[test]
fn header_string_matchers() {
    use MatchPattern::*;
    let req = get("/").header("x-user", "Jason-Smith");
    let cases = [
        (Exact("Jason-Smith".into()), false, true),
        (Exact("jason-smith".into()), false, false),
        (Exact("jason-smith".into()), true, true),
        (Prefix("Jason".into()), false, true),
        (Prefix("jason".into()), true, true),
        (Suffix("Smith".into()), false, true),
        (Suffix("SMITH".into()), false, false),
        (Contains("n-S".into()), false, true),
        (Contains("N-S".into()), true, true),
        (Contains("x".into()), true, false),
        (
            SafeRegex(regex_matcher("[A-Z][a-z]+-[A-Z][a-z]+")),
            false,
            true,
        ),
        (SafeRegex(regex_matcher("Jason")), false, false),
    ];
    for (pattern, ignore_case, want) in cases {
        let m = with_header(header("x-user", string(pattern.clone(), ignore_case)));
        assert_eq!(
            matches(m, &req),
            want,
            "{pattern:?} ignore_case={ignore_case}"
        );
    }
}

#[test]
#[allow(deprecated)] // Envoy still honours the deprecated matchers.
fn deprecated_header_matchers() {
    use pb::header_matcher::HeaderMatchSpecifier::*;
    let req = get("/").header("x-user", "jason");
    let cases = [
        (ExactMatch("jason".into()), true),
        (ExactMatch("json".into()), false),
        // An empty exact_match matches any value of a present header.
        (ExactMatch(String::new()), true),
        (SafeRegexMatch(regex_matcher("j.*n")), true),
        (PrefixMatch("ja".into()), true),
        (SuffixMatch("on".into()), true),
        (ContainsMatch("so".into()), true),
        (ContainsMatch("os".into()), false),
    ];
    for (spec, want) in cases {
        let m = with_header(header("x-user", spec.clone()));
        assert_eq!(matches(m, &req), want, "{spec:?}");
    }
    let absent = with_header(header("x-user", ExactMatch(String::new())));
    assert!(!matches(absent, &get("/")));
}

#[test]
fn present_match_true_and_false() {
    let with = get("/").header("x-debug", "");
    let without = get("/");
    assert!(matches(with_header(present("x-debug", true)), &with));
    assert!(!matches(with_header(present("x-debug", true)), &without));
    assert!(!matches(with_header(present("x-debug", false)), &with));
    assert!(matches(with_header(present("x-debug", false)), &without));
}

#[test]
fn a_header_matcher_without_a_specifier_means_present() {
    let m = || {
        with_header(pb::HeaderMatcher {
            name: "x-debug".to_owned(),
            ..pb::HeaderMatcher::default()
        })
    };
    assert!(matches(m(), &get("/").header("x-debug", "1")));
    assert!(!matches(m(), &get("/")));
}

#[test]
fn range_match_wants_a_whole_integer_in_the_half_open_range() {
    let m = || {
        with_header(header(
            "x-n",
            pb::header_matcher::HeaderMatchSpecifier::RangeMatch(Int64Range { start: -10, end: 0 }),
        ))
    };
    for (value, want) in [
        ("-1", true),
        ("-10", true),
        ("0", false),
        ("somestring", false),
        ("10.9", false),
        ("-1somestring", false),
        ("", false),
    ] {
        assert_eq!(
            matches(m(), &get("/").header("x-n", value)),
            want,
            "{value:?}"
        );
    }
}

#[test]
fn invert_match_inverts_but_an_absent_header_still_fails() {
    let inverted = || {
        let mut h = exact_header("x-user", "jason");
        h.invert_match = true;
        with_header(h)
    };
    assert!(!matches(inverted(), &get("/").header("x-user", "jason")));
    assert!(matches(inverted(), &get("/").header("x-user", "sam")));
    // Envoy: without treat_missing_header_as_empty, the rule for an absent header does not
    // match, inverted or not.
    assert!(!matches(inverted(), &get("/")));
    let mut inverted_presence = present("x-user", true);
    inverted_presence.invert_match = true;
    assert!(matches(with_header(inverted_presence), &get("/")));
}

#[test]
fn treat_missing_header_as_empty_matches_an_absent_header_as_empty() {
    let empty_regex = || {
        let mut h = header(
            "x-user",
            string(MatchPattern::SafeRegex(regex_matcher("^$")), false),
        );
        h.treat_missing_header_as_empty = true;
        with_header(h)
    };
    assert!(matches(empty_regex(), &get("/")));
    assert!(!matches(empty_regex(), &get("/").header("x-user", "a")));
    // Istio's withoutHeaders: an inverted exact match that an absent header passes.
    let mut without = exact_header("x-user", "jason");
    without.invert_match = true;
    without.treat_missing_header_as_empty = true;
    assert!(matches(with_header(without), &get("/")));
}

#[test]
fn a_repeated_header_matches_when_any_one_of_its_values_does() {
    // As Envoy 1.40 does (checked against it in tests/envoy_parity.rs): value by value,
    // never joined, with `invert_match` inverting the whole.
    let req = get("/").header("x-tag", "a").header("x-tag", "b");
    assert!(matches(with_header(exact_header("x-tag", "a")), &req));
    assert!(matches(with_header(exact_header("x-tag", "b")), &req));
    assert!(!matches(with_header(exact_header("x-tag", "a,b")), &req));
    let mut not_a = exact_header("x-tag", "a");
    not_a.invert_match = true;
    assert!(!matches(with_header(not_a), &req));
    let in_range = || {
        with_header(header(
            "x-n",
            pb::header_matcher::HeaderMatchSpecifier::RangeMatch(Int64Range { start: 5, end: 10 }),
        ))
    };
    assert!(matches(
        in_range(),
        &get("/").header("x-n", "1").header("x-n", "7")
    ));
    // One value holding a comma is one value.
    assert!(!matches(
        with_header(exact_header("x-tag", "b")),
        &get("/").header("x-tag", "a,b")
    ));
}

#[test]
fn pseudo_headers_and_host_can_be_matched() {
    let req = Request::get("reviews:9080", "/a?b=1")
        .method(Method::POST)
        .scheme("https");
    for (name, value) in [
        (":method", "POST"),
        (":authority", "reviews:9080"),
        ("host", "reviews:9080"),
        (":scheme", "https"),
        (":path", "/a?b=1"),
    ] {
        assert!(
            matches(with_header(exact_header(name, value)), &req),
            "{name}"
        );
    }
    assert!(!matches(with_header(exact_header(":method", "GET")), &req));
}

#[test]
fn all_header_matchers_must_match() {
    let m = || pb::RouteMatch {
        headers: vec![exact_header("x-a", "1"), exact_header("x-b", "2")],
        ..prefix("/")
    };
    assert!(matches(
        m(),
        &get("/").header("x-a", "1").header("x-b", "2")
    ));
    assert!(!matches(m(), &get("/").header("x-a", "1")));
}

fn query(
    name: &str,
    spec: pb::query_parameter_matcher::QueryParameterMatchSpecifier,
) -> pb::RouteMatch {
    pb::RouteMatch {
        query_parameters: vec![pb::QueryParameterMatcher {
            name: name.to_owned(),
            query_parameter_match_specifier: Some(spec),
        }],
        ..prefix("/")
    }
}

fn query_exact(name: &str, value: &str) -> pb::RouteMatch {
    query(
        name,
        pb::query_parameter_matcher::QueryParameterMatchSpecifier::StringMatch(StringMatcher {
            match_pattern: Some(MatchPattern::Exact(value.to_owned())),
            ignore_case: false,
        }),
    )
}

#[test]
fn query_parameters_match_their_first_raw_value() {
    assert!(matches(query_exact("u", "jason"), &get("/p?a=1&u=jason")));
    assert!(!matches(
        query_exact("u", "jason"),
        &get("/p?u=sam&u=jason")
    ));
    assert!(!matches(query_exact("u", "jason"), &get("/p")));
    // Values are compared as received, not percent-decoded.
    assert!(matches(query_exact("q", "a%20b"), &get("/p?q=a%20b")));
    assert!(!matches(query_exact("q", "a b"), &get("/p?q=a%20b")));
    assert!(matches(query_exact("flag", ""), &get("/p?flag")));
}

#[test]
fn query_present_match_wants_the_parameter() {
    let m = || {
        query(
            "debug",
            pb::query_parameter_matcher::QueryParameterMatchSpecifier::PresentMatch(true),
        )
    };
    assert!(matches(m(), &get("/?debug")));
    assert!(matches(m(), &get("/?x=1&debug=0")));
    assert!(!matches(m(), &get("/?debugger=1")));
    assert!(!matches(m(), &get("/")));
}

fn percent(numerator: u32, denominator: DenominatorType) -> pb::RouteMatch {
    pb::RouteMatch {
        runtime_fraction: Some(RuntimeFractionalPercent {
            default_value: Some(FractionalPercent {
                numerator,
                denominator: denominator as i32,
            }),
            runtime_key: "routing.canary".to_owned(),
        }),
        ..prefix("/")
    }
}

#[test]
fn runtime_fraction_admits_random_values_below_the_numerator() {
    let t = routes(vec![
        route("canary", percent(50, DenominatorType::Hundred)),
        route("stable", prefix("/")),
    ]);
    let req = get("/");
    let picked = |random| {
        t.select_with(&req.head(), random)
            .unwrap()
            .route
            .name
            .clone()
    };
    assert_eq!(picked(49), "canary");
    assert_eq!(picked(50), "stable");
    assert_eq!(picked(149), "canary");
    assert_eq!(picked(199), "stable");
}

#[test]
fn runtime_fraction_is_sampled_per_request() {
    let t = routes(vec![
        route("canary", percent(2_500, DenominatorType::TenThousand)),
        route("stable", prefix("/")),
    ]);
    let req = get("/");
    let n = 10_000;
    let hits = (0..n)
        .filter(|_| t.select(&req.head()).unwrap().route.name == "canary")
        .count();
    assert_binomial(hits, n, 0.25, "canary share");
}

#[test]
fn grpc_matches_grpc_content_types_only() {
    let m = || pb::RouteMatch {
        grpc: Some(pb::route_match::GrpcRouteMatchOptions {}),
        ..prefix("/")
    };
    for (content_type, want) in [
        ("application/grpc", true),
        ("application/grpc+proto", true),
        ("application/grpc;charset=utf-8", true),
        ("application/grpc-web", false),
        ("application/json", false),
    ] {
        let req = get("/").header("content-type", content_type);
        assert_eq!(matches(m(), &req), want, "{content_type}");
    }
    assert!(!matches(m(), &get("/")));
}

#[test]
fn unsupported_match_kinds_are_refused_by_field() {
    use mizzen_xds::pb::envoy::config::core::v3::TypedExtensionConfig;
    use mizzen_xds::pb::envoy::r#type::matcher::v3::MetadataMatcher;
    let cases = [
        (
            pb::RouteMatch {
                dynamic_metadata: vec![MetadataMatcher::default()],
                ..prefix("/")
            },
            "match.dynamic_metadata",
        ),
        (
            pb::RouteMatch {
                cookies: vec![pb::CookieMatcher::default()],
                ..prefix("/")
            },
            "match.cookies",
        ),
        (
            pb::RouteMatch {
                tls_context: Some(pb::route_match::TlsContextMatchOptions::default()),
                ..prefix("/")
            },
            "match.tls_context",
        ),
        (
            path_match(pb::route_match::PathSpecifier::PathMatchPolicy(
                TypedExtensionConfig::default(),
            )),
            "match.path_match_policy",
        ),
    ];
    for (m, field) in cases {
        let err = refused(config(vec![vhost("all", &["*"], vec![route("r", m)])]));
        assert_eq!(err.field(), field);
        assert!(matches!(err.problem(), Problem::Unsupported), "{err}");
    }
}
