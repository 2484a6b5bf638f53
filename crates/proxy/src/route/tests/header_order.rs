//! Header mutations across levels: weighted cluster, route, virtual host, route config.

use mizzen_xds::pb::envoy::config::core::v3::header_value_option::HeaderAppendAction;
use mizzen_xds::pb::envoy::config::core::v3::{HeaderValue as PbHeaderValue, HeaderValueOption};
use mizzen_xds::pb::google::protobuf::UInt32Value;

use super::*;

fn op(key: &str, value: &str, action: HeaderAppendAction) -> HeaderValueOption {
    HeaderValueOption {
        header: Some(PbHeaderValue {
            key: key.to_owned(),
            value: value.to_owned(),
            ..PbHeaderValue::default()
        }),
        append_action: action as i32,
        ..HeaderValueOption::default()
    }
}

/// Every level sets `x-level` to its name and appends its name to `x-trail`.
fn marks(level: &str) -> Vec<HeaderValueOption> {
    vec![
        op("x-level", level, HeaderAppendAction::OverwriteIfExistsOrAdd),
        op("x-trail", level, HeaderAppendAction::AppendIfExistsOrAdd),
    ]
}

/// A route config whose every level marks requests and responses; the route forwards to a
/// weighted cluster that marks them too.
fn marked(most_specific_wins: bool) -> RouteTable {
    let mut cluster = pb::weighted_cluster::ClusterWeight {
        name: "reviews-v2".to_owned(),
        weight: Some(UInt32Value { value: 1 }),
        ..pb::weighted_cluster::ClusterWeight::default()
    };
    cluster.request_headers_to_add = marks("cluster");
    cluster.response_headers_to_add = marks("cluster");
    let mut r = routed(
        "r",
        prefix("/"),
        pb::route::Action::Route(pb::RouteAction {
            cluster_specifier: Some(pb::route_action::ClusterSpecifier::WeightedClusters(
                pb::WeightedCluster {
                    clusters: vec![cluster],
                    ..pb::WeightedCluster::default()
                },
            )),
            ..pb::RouteAction::default()
        }),
    );
    r.request_headers_to_add = marks("route");
    r.response_headers_to_add = marks("route");
    let mut vh = vhost("reviews", &["*"], vec![r]);
    vh.request_headers_to_add = marks("vhost");
    vh.response_headers_to_add = marks("vhost");
    let mut c = config(vec![vh]);
    c.request_headers_to_add = marks("config");
    c.response_headers_to_add = marks("config");
    c.most_specific_header_mutations_wins = most_specific_wins;
    compile(c)
}

/// `x-level` and `x-trail` after the request (or response) mutations.
fn after(t: &RouteTable, response: bool) -> (String, Vec<String>) {
    let req = Request::get("reviews", "/");
    let selected = t.select_with(&req.head(), 0).unwrap();
    let mut headers = HeaderMap::new();
    if response {
        selected.apply_response_headers(&mut headers);
    } else {
        selected.apply_request_headers(&mut headers);
    }
    let level = headers["x-level"].to_str().unwrap().to_owned();
    let trail = headers
        .get_all("x-trail")
        .iter()
        .map(|v| v.to_str().unwrap().to_owned())
        .collect();
    (level, trail)
}

#[test]
fn by_default_the_least_specific_level_wins() {
    let t = marked(false);
    for response in [false, true] {
        let (level, trail) = after(&t, response);
        assert_eq!(level, "config");
        assert_eq!(trail, ["cluster", "route", "vhost", "config"]);
    }
}

#[test]
fn most_specific_header_mutations_wins_reverses_the_levels() {
    let t = marked(true);
    for response in [false, true] {
        let (level, trail) = after(&t, response);
        // Envoy applies a weighted cluster's mutations first either way.
        assert_eq!(level, "route");
        assert_eq!(trail, ["cluster", "config", "vhost", "route"]);
    }
}

#[test]
fn a_later_level_can_remove_what_an_earlier_one_added() {
    let mut r = route("r", prefix("/"));
    r.request_headers_to_add = vec![op("x-debug", "1", HeaderAppendAction::AppendIfExistsOrAdd)];
    let mut c = config(vec![vhost("all", &["*"], vec![r])]);
    c.request_headers_to_remove = vec!["x-debug".to_owned()];
    let t = compile(c);
    let req = Request::get("h", "/").header("x-debug", "0");
    let mut headers = req.headers.clone();
    t.select(&req.head())
        .unwrap()
        .apply_request_headers(&mut headers);
    assert!(!headers.contains_key("x-debug"));
}

#[test]
fn response_mutations_apply_to_direct_responses_too() {
    let mut r = routed(
        "r",
        prefix("/"),
        pb::route::Action::DirectResponse(pb::DirectResponseAction {
            status: 200,
            ..pb::DirectResponseAction::default()
        }),
    );
    r.response_headers_to_add = vec![op(
        "x-served-by",
        "mesh",
        HeaderAppendAction::AppendIfExistsOrAdd,
    )];
    let t = table(vec![vhost("all", &["*"], vec![r])]);
    let mut headers = HeaderMap::new();
    t.select(&Request::get("h", "/").head())
        .unwrap()
        .apply_response_headers(&mut headers);
    assert_eq!(headers["x-served-by"], "mesh");
}

#[test]
fn mutation_errors_name_the_level_and_field() {
    let mut vh = vhost("reviews", &["*"], vec![]);
    vh.response_headers_to_add = vec![op(
        ":status",
        "200",
        HeaderAppendAction::AppendIfExistsOrAdd,
    )];
    let err = refused(config(vec![vh]));
    assert_eq!(
        err.to_string(),
        r#"route config "9080": virtual host "reviews": response_headers_to_add[0].header.key: ":status": :-prefixed and host headers may not be modified"#
    );
    let mut c = config(vec![]);
    c.request_headers_to_remove = vec!["host".to_owned()];
    let err = refused(c);
    assert_eq!(err.place(), r#"route config "9080""#);
    assert_eq!(err.field(), "request_headers_to_remove[0]");
}
