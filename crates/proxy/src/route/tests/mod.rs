//! Route tables end to end: compile a route configuration, select, act.

mod actions;
mod bookinfo;
mod domains;
mod errors;
mod faults;
mod header_order;
mod matches;

use http::{HeaderMap, HeaderName, HeaderValue, Method};
use mizzen_xds::pb::envoy::config::route::v3 as pb;
use mizzen_xds::pb::envoy::r#type::matcher::v3::RegexMatcher;

use super::{RequestHead, RouteError, RouteTable};

/// A route configuration named `9080` (as Istio names a port's) with these virtual hosts.
fn config(virtual_hosts: Vec<pb::VirtualHost>) -> pb::RouteConfiguration {
    pb::RouteConfiguration {
        name: "9080".to_owned(),
        virtual_hosts,
        ..pb::RouteConfiguration::default()
    }
}

fn table(virtual_hosts: Vec<pb::VirtualHost>) -> RouteTable {
    compile(config(virtual_hosts))
}

fn compile(config: pb::RouteConfiguration) -> RouteTable {
    RouteTable::compile(&config).unwrap_or_else(|e| panic!("{e}"))
}

fn refused(config: pb::RouteConfiguration) -> RouteError {
    RouteTable::compile(&config).expect_err("config should be refused")
}

fn vhost(name: &str, domains: &[&str], routes: Vec<pb::Route>) -> pb::VirtualHost {
    pb::VirtualHost {
        name: name.to_owned(),
        domains: domains.iter().map(|d| d.to_string()).collect(),
        routes,
        ..pb::VirtualHost::default()
    }
}

/// A route named `name` that forwards what `m` matches to cluster `name`.
fn route(name: &str, m: pb::RouteMatch) -> pb::Route {
    routed(name, m, forward(name))
}

fn routed(name: &str, m: pb::RouteMatch, action: pb::route::Action) -> pb::Route {
    pb::Route {
        name: name.to_owned(),
        r#match: Some(m),
        action: Some(action),
        ..pb::Route::default()
    }
}

fn forward(cluster: &str) -> pb::route::Action {
    forward_with(pb::RouteAction::default(), cluster)
}

fn forward_with(action: pb::RouteAction, cluster: &str) -> pb::route::Action {
    pb::route::Action::Route(pb::RouteAction {
        cluster_specifier: Some(pb::route_action::ClusterSpecifier::Cluster(
            cluster.to_owned(),
        )),
        ..action
    })
}

fn prefix(p: &str) -> pb::RouteMatch {
    path_match(pb::route_match::PathSpecifier::Prefix(p.to_owned()))
}

fn exact(p: &str) -> pb::RouteMatch {
    path_match(pb::route_match::PathSpecifier::Path(p.to_owned()))
}

fn regex(r: &str) -> pb::RouteMatch {
    path_match(pb::route_match::PathSpecifier::SafeRegex(regex_matcher(r)))
}

fn path_match(specifier: pb::route_match::PathSpecifier) -> pb::RouteMatch {
    pb::RouteMatch {
        path_specifier: Some(specifier),
        ..pb::RouteMatch::default()
    }
}

fn regex_matcher(r: &str) -> RegexMatcher {
    RegexMatcher {
        regex: r.to_owned(),
        ..RegexMatcher::default()
    }
}

/// A request as the HTTP router would describe it.
struct Request {
    authority: String,
    method: Method,
    path: String,
    scheme: String,
    headers: HeaderMap,
}

impl Request {
    fn get(authority: &str, path: &str) -> Request {
        Request {
            authority: authority.to_owned(),
            method: Method::GET,
            path: path.to_owned(),
            scheme: "http".to_owned(),
            headers: HeaderMap::new(),
        }
    }

    fn header(mut self, name: &str, value: &str) -> Request {
        self.headers.append(
            HeaderName::from_bytes(name.as_bytes()).unwrap(),
            HeaderValue::from_str(value).unwrap(),
        );
        self
    }

    fn method(mut self, method: Method) -> Request {
        self.method = method;
        self
    }

    fn scheme(mut self, scheme: &str) -> Request {
        self.scheme = scheme.to_owned();
        self
    }

    fn head(&self) -> RequestHead<'_> {
        RequestHead {
            authority: &self.authority,
            method: &self.method,
            path: &self.path,
            scheme: &self.scheme,
            headers: &self.headers,
        }
    }
}

/// The name of the route `req` selects with random value 0.
fn route_for<'t>(table: &'t RouteTable, req: &Request) -> Option<&'t str> {
    table
        .select_with(&req.head(), 0)
        .map(|s| s.route.name.as_str())
}

/// The name of the virtual host `req` selects.
fn vhost_for<'t>(table: &'t RouteTable, req: &Request) -> Option<&'t str> {
    table
        .select_with(&req.head(), 0)
        .map(|s| s.virtual_host.name.as_str())
}

/// The name of the cluster `req` is forwarded to with random value `random`.
fn cluster_for<'t>(table: &'t RouteTable, req: &'t Request, random: u64) -> Option<&'t str> {
    table
        .select_with(&req.head(), random)?
        .cluster?
        .name(&req.head())
}

#[test]
fn a_table_can_be_shared_across_threads() {
    // The router swaps whole tables (arc-swap) and reads them from every worker.
    fn shared<T: Send + Sync>() {}
    shared::<RouteTable>();
}

/// Asserts that `hits` out of `n` draws fit probability `p`, within 5 standard deviations of
/// the binomial distribution.
fn assert_binomial(hits: usize, n: usize, p: f64, what: &str) {
    let expected = n as f64 * p;
    let tolerance = 5.0 * (n as f64 * p * (1.0 - p)).sqrt();
    assert!(
        (hits as f64 - expected).abs() <= tolerance,
        "{what}: {hits} of {n}, expected {expected} ± {tolerance}"
    );
}
