//! Config Envoy would refuse, or this proxy cannot honour: errors name object, field, reason.

use mizzen_xds::pb::envoy::r#type::matcher::v3::{StringMatcher, string_matcher::MatchPattern};
use mizzen_xds::pb::google::protobuf::BoolValue;

use super::*;
use crate::route::Problem;

fn reviews(routes: Vec<pb::Route>) -> pb::RouteConfiguration {
    config(vec![vhost("reviews", &["reviews"], routes)])
}

#[test]
fn a_bad_regex_names_the_route_config_virtual_host_route_and_field() {
    let err = refused(reviews(vec![
        route("v1", prefix("/v1")),
        route("v2", prefix("/v2")),
        route("bad", regex("(")),
    ]));
    assert_eq!(
        err.place(),
        r#"route config "9080": virtual host "reviews": route 2"#
    );
    assert_eq!(err.field(), "match.safe_regex");
    assert_eq!(
        err.to_string(),
        r#"route config "9080": virtual host "reviews": route 2: match.safe_regex: invalid regex "(": unclosed group"#
    );
}

#[test]
fn nested_fields_are_named_by_their_path() {
    let m = pb::RouteMatch {
        headers: vec![
            pb::HeaderMatcher {
                name: "x-ok".to_owned(),
                ..pb::HeaderMatcher::default()
            },
            pb::HeaderMatcher {
                name: "x-user".to_owned(),
                header_match_specifier: Some(
                    pb::header_matcher::HeaderMatchSpecifier::StringMatch(StringMatcher {
                        match_pattern: Some(MatchPattern::SafeRegex(regex_matcher("[a-"))),
                        ignore_case: false,
                    }),
                ),
                ..pb::HeaderMatcher::default()
            },
        ],
        ..prefix("/")
    };
    let err = refused(reviews(vec![route("r", m)]));
    assert_eq!(err.field(), "match.headers[1].string_match.safe_regex");
    assert!(matches!(err.problem(), Problem::InvalidRegex { pattern, .. } if pattern == "[a-"));
}

#[test]
fn empty_string_matchers_are_refused() {
    let m = pb::RouteMatch {
        headers: vec![pb::HeaderMatcher {
            name: "x-user".to_owned(),
            header_match_specifier: Some(pb::header_matcher::HeaderMatchSpecifier::StringMatch(
                StringMatcher {
                    match_pattern: Some(MatchPattern::Prefix(String::new())),
                    ignore_case: false,
                },
            )),
            ..pb::HeaderMatcher::default()
        }],
        ..prefix("/")
    };
    let err = refused(reviews(vec![route("r", m)]));
    assert_eq!(err.field(), "match.headers[0].string_match.prefix");
}

#[test]
fn required_fields() {
    let no_match = pb::Route {
        r#match: None,
        ..route("r", prefix("/"))
    };
    let no_action = pb::Route {
        action: None,
        ..route("r", prefix("/"))
    };
    let no_path = route("r", pb::RouteMatch::default());
    let no_cluster = routed(
        "r",
        prefix("/"),
        pb::route::Action::Route(pb::RouteAction::default()),
    );
    for (r, field) in [
        (no_match, "match"),
        (no_action, "action"),
        (no_path, "match.path_specifier"),
        (no_cluster, "route.cluster_specifier"),
    ] {
        let err = refused(reviews(vec![r]));
        assert_eq!(err.field(), field);
        assert!(matches!(err.problem(), Problem::Missing), "{err}");
    }
    let err = refused(reviews(vec![route("", prefix("/"))]));
    assert_eq!(err.field(), "route.cluster");
}

#[test]
fn a_virtual_host_needs_a_name() {
    let err = refused(config(vec![vhost("", &["a"], vec![])]));
    assert_eq!(err.place(), r#"route config "9080": virtual host 0"#);
    assert_eq!(err.field(), "name");
}

#[test]
fn features_this_proxy_lacks_are_refused_rather_than_ignored() {
    let mut require_tls = vhost("reviews", &["reviews"], vec![]);
    require_tls.require_tls = pb::virtual_host::TlsRequirementType::All as i32;
    let err = refused(config(vec![require_tls]));
    assert_eq!(err.field(), "require_tls");
    assert!(matches!(err.problem(), Problem::Unsupported));

    let mut vhds = config(vec![]);
    vhds.vhds = Some(pb::Vhds::default());
    assert_eq!(refused(vhds).field(), "vhds");

    let plugin = routed(
        "r",
        prefix("/"),
        pb::route::Action::Route(pb::RouteAction {
            cluster_specifier: Some(pb::route_action::ClusterSpecifier::ClusterSpecifierPlugin(
                "lua".to_owned(),
            )),
            ..pb::RouteAction::default()
        }),
    );
    assert_eq!(
        refused(reviews(vec![plugin])).field(),
        "route.cluster_specifier_plugin"
    );

    let subset = routed(
        "r",
        prefix("/"),
        forward_with(
            pb::RouteAction {
                metadata_match: Some(Default::default()),
                ..pb::RouteAction::default()
            },
            "c",
        ),
    );
    assert_eq!(
        refused(reviews(vec![subset])).field(),
        "route.metadata_match"
    );

    let hashed = routed(
        "r",
        prefix("/"),
        pb::route::Action::Route(pb::RouteAction {
            cluster_specifier: Some(pb::route_action::ClusterSpecifier::WeightedClusters(
                pb::WeightedCluster {
                    clusters: vec![pb::weighted_cluster::ClusterWeight {
                        name: "c".to_owned(),
                        weight: Some(mizzen_xds::pb::google::protobuf::UInt32Value { value: 1 }),
                        ..Default::default()
                    }],
                    random_value_specifier: Some(
                        pb::weighted_cluster::RandomValueSpecifier::UseHashPolicy(BoolValue {
                            value: true,
                        }),
                    ),
                    ..pb::WeightedCluster::default()
                },
            )),
            ..pb::RouteAction::default()
        }),
    );
    assert_eq!(
        refused(reviews(vec![hashed])).field(),
        "route.weighted_clusters.use_hash_policy"
    );

    let filter = routed(
        "r",
        prefix("/"),
        pb::route::Action::FilterAction(pb::FilterAction::default()),
    );
    assert_eq!(refused(reviews(vec![filter])).field(), "filter_action");
}

#[test]
fn command_operators_in_rewrites_are_refused() {
    let host = routed(
        "r",
        prefix("/"),
        forward_with(
            pb::RouteAction {
                host_rewrite_specifier: Some(pb::route_action::HostRewriteSpecifier::HostRewrite(
                    "%REQ(x-host)%".to_owned(),
                )),
                ..pb::RouteAction::default()
            },
            "c",
        ),
    );
    let err = refused(reviews(vec![host]));
    assert_eq!(err.field(), "route.host_rewrite");
    assert!(matches!(err.problem(), Problem::UnsupportedOperator(op) if op == "%REQ(x-host)%"));
}
