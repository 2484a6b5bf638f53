//! Route tables compiled from RDS: virtual hosts, matches and actions.
//!
//! [`RouteTable::compile`] turns an Envoy `RouteConfiguration` into an immutable table once,
//! when config arrives: regexes, matchers, domain indexes and header mutations are built
//! then, and config Envoy would refuse (or that this proxy cannot honour) is a
//! [`RouteError`], so the proxy NACKs it. Per request, the HTTP router:
//!
//! 1. [`RouteTable::select`]s the virtual host, route and (for forwards) cluster;
//! 2. reads the route's [`Action`];
//! 3. applies header mutations: [`Selected::apply_request_headers`] before forwarding,
//!    [`Selected::apply_response_headers`] on the response (local replies included);
//! 4. for forwards, sends to [`WeightedCluster::name`], with [`Forward::rewrite_path`] and
//!    [`Forward::rewrite_host`] applied.

mod action;
mod domain;
mod error;
mod fault;
mod format;
mod headers;
mod matcher;
mod pattern;
mod request;
mod rewrite;

#[cfg(test)]
mod tests;

use std::collections::HashMap;

use http::{HeaderMap, HeaderName};
use mizzen_xds::pb::envoy::config::core::v3::Metadata;
use mizzen_xds::pb::envoy::config::route::v3 as pb;
use mizzen_xds::pb::google::protobuf::Any;

pub use action::{
    Action, AttemptCount, DEFAULT_REQUEST_BUFFER_LIMIT, DEFAULT_TIMEOUT, DirectResponse, Forward,
    NewHost, Redirect, Timeout, WeightedCluster,
};
pub use error::{Problem, RouteError};
pub use fault::{AbortStatus, Aborted, FAULT_FILTER, Fault};
pub use request::{RequestHead, is_grpc};
// The authorization filters match requests as routes do.
pub(crate) use error::{Invalid, Within};
pub(crate) use matcher::{HeaderMatch, RouteMatch, StringMatch};

use action::Inherited;
use domain::DomainIndex;
use error::unsupported;
use headers::{HeaderMutations, HeaderOps};
use request::HeaderSource;

/// Envoy's `max_direct_response_body_size_bytes` when a route configuration sets none.
const DEFAULT_MAX_DIRECT_RESPONSE_BODY: u32 = 4096;

/// A route configuration, compiled: what the HTTP router consults per request.
#[derive(Debug)]
pub struct RouteTable {
    name: String,
    virtual_hosts: Vec<VirtualHost>,
    domains: DomainIndex,
    headers: HeaderMutations,
    most_specific_header_mutations_wins: bool,
    ignore_port_in_host_matching: bool,
    ignore_path_parameters_in_path_matching: bool,
    vhost_header: Option<HeaderSource>,
    internal_only_headers: Vec<HeaderName>,
    typed_per_filter_config: HashMap<String, Any>,
    fault: Option<Fault>,
    raw: pb::RouteConfiguration,
}

/// A virtual host: the routes for a set of domains.
#[derive(Debug)]
pub struct VirtualHost {
    /// The virtual host's name.
    pub name: String,
    routes: Vec<Route>,
    headers: HeaderMutations,
    /// Per-filter config for the virtual host, by filter name, as configured.
    pub typed_per_filter_config: HashMap<String, Any>,
    fault: Option<Fault>,
    /// The virtual host's metadata, as configured.
    pub metadata: Option<Metadata>,
}

/// A route: its conditions, its action and what it carries for filters.
#[derive(Debug)]
pub struct Route {
    /// The route's name (may be empty).
    pub name: String,
    matcher: RouteMatch,
    /// What the route does with requests it matches.
    pub action: Action,
    headers: HeaderMutations,
    /// Per-filter config for the route, by filter name, as configured.
    pub typed_per_filter_config: HashMap<String, Any>,
    fault: Option<Fault>,
    /// The route's tracing decorator, as configured.
    pub decorator: Option<pb::Decorator>,
    /// The route's metadata, as configured.
    pub metadata: Option<Metadata>,
}

/// What a request was routed to.
#[derive(Debug, Clone, Copy)]
pub struct Selected<'a> {
    /// The virtual host whose domains matched the authority.
    pub virtual_host: &'a VirtualHost,
    /// The first route of that virtual host that matched the request.
    pub route: &'a Route,
    /// The cluster picked, exactly when the route forwards. Envoy picks it when it matches
    /// the route, and its header mutations are part of the request's.
    pub cluster: Option<&'a WeightedCluster>,
    table: &'a RouteTable,
}

impl RouteTable {
    /// Compiles `config`, or says which field of which object Envoy would refuse.
    pub fn compile(config: &pb::RouteConfiguration) -> Result<RouteTable, RouteError> {
        let place = format!("route config {:?}", config.name);
        unsupported(&[
            ("vhds", config.vhds.is_some()),
            (
                "cluster_specifier_plugins",
                !config.cluster_specifier_plugins.is_empty(),
            ),
            ("route_specifiers", !config.route_specifiers.is_empty()),
        ])
        .map_err(|e| e.placed(&place))?;
        let vhost_header = match config.vhost_header.as_str() {
            "" => None,
            name => Some(
                HeaderSource::parse(name)
                    .within("vhost_header")
                    .map_err(|e| e.placed(&place))?,
            ),
        };
        let internal_only_headers = config
            .internal_only_headers
            .iter()
            .enumerate()
            .map(|(i, name)| {
                HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
                    Problem::InvalidHeaderName(name.clone())
                        .at(format!("internal_only_headers[{i}]"))
                        .placed(&place)
                })
            })
            .collect::<Result<_, _>>()?;
        let domains = DomainIndex::build(
            config
                .virtual_hosts
                .iter()
                .map(|vh| (vh.name.as_str(), vh.domains.as_slice())),
        )
        .map_err(|(i, e)| e.placed(vhost_place(&place, i, &config.virtual_hosts[i])))?;
        let inherited = Inherited {
            retry_policy: None,
            request_mirror_policies: &config.request_mirror_policies,
            max_direct_response_body: config
                .max_direct_response_body_size_bytes
                .as_ref()
                .map_or(DEFAULT_MAX_DIRECT_RESPONSE_BODY, |v| v.value),
            attempt_count: AttemptCount::default(),
            buffer_limit: None,
        };
        let virtual_hosts = config
            .virtual_hosts
            .iter()
            .enumerate()
            .map(|(i, vh)| VirtualHost::compile(vh, inherited, &vhost_place(&place, i, vh)))
            .collect::<Result<_, _>>()?;
        Ok(RouteTable {
            name: config.name.clone(),
            virtual_hosts,
            domains,
            headers: HeaderMutations::compile(config).map_err(|e| e.placed(&place))?,
            most_specific_header_mutations_wins: config.most_specific_header_mutations_wins,
            ignore_port_in_host_matching: config.ignore_port_in_host_matching,
            ignore_path_parameters_in_path_matching: config.ignore_path_parameters_in_path_matching,
            vhost_header,
            internal_only_headers,
            typed_per_filter_config: config.typed_per_filter_config.clone(),
            fault: per_filter_fault(&config.typed_per_filter_config)
                .map_err(|e| e.placed(&place))?,
            raw: config.clone(),
        })
    }

    /// The route configuration as received, for `/config_dump`.
    pub fn raw(&self) -> &pb::RouteConfiguration {
        &self.raw
    }

    /// The route configuration's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The virtual hosts, in config order.
    pub fn virtual_hosts(&self) -> &[VirtualHost] {
        &self.virtual_hosts
    }

    /// Headers only requests from inside the mesh may carry: the connection manager
    /// removes them from every other request before routing.
    pub fn internal_only_headers(&self) -> &[HeaderName] {
        &self.internal_only_headers
    }

    /// Per-filter config for the whole route configuration, by filter name, as configured.
    pub fn typed_per_filter_config(&self) -> &HashMap<String, Any> {
        &self.typed_per_filter_config
    }

    /// The virtual host and route for a request, and the cluster if it forwards; `None`
    /// when nothing matches (Envoy answers 404, `NR`).
    pub fn select(&self, req: &RequestHead<'_>) -> Option<Selected<'_>> {
        self.select_with(req, fastrand::u64(..))
    }

    /// [`RouteTable::select`] with the request's random value given. Like Envoy, routing
    /// draws one random value per request and uses it for every `runtime_fraction` and for
    /// the weighted cluster pick.
    pub fn select_with(&self, req: &RequestHead<'_>, random: u64) -> Option<Selected<'_>> {
        let virtual_host = self.virtual_host(req)?;
        let path = self.path_for_matching(req.path);
        let route = virtual_host
            .routes
            .iter()
            .find(|r| r.matcher.matches(req, path, random))?;
        let cluster = match &route.action {
            Action::Forward(forward) => Some(forward.pick_cluster_for(req, random)),
            Action::Redirect(_) | Action::DirectResponse(_) => None,
        };
        Some(Selected {
            virtual_host,
            route,
            cluster,
            table: self,
        })
    }

    fn virtual_host(&self, req: &RequestHead<'_>) -> Option<&VirtualHost> {
        if let Some(only) = self.domains.only_default() {
            return Some(&self.virtual_hosts[only]);
        }
        let mut host = match &self.vhost_header {
            Some(header) => header.first_text(req)?,
            None => req.authority,
        };
        if self.ignore_port_in_host_matching {
            host = without_port(host);
        }
        // Lower-casing allocates, so only when needed: authorities are mostly lower-case.
        let lowered;
        if host.bytes().any(|b| b.is_ascii_uppercase()) {
            lowered = host.to_ascii_lowercase();
            host = &lowered;
        }
        self.domains.find(host).map(|i| &self.virtual_hosts[i])
    }

    /// The part of `path` path conditions look at: no query or fragment and, if so
    /// configured, no path parameters (`;...`).
    fn path_for_matching<'p>(&self, path: &'p str) -> &'p str {
        let end = if self.ignore_path_parameters_in_path_matching {
            path.find([';', '?', '#'])
        } else {
            path.find(['?', '#'])
        };
        end.map_or(path, |end| &path[..end])
    }
}

/// `host` without a `:port`, minding IPv6 literals (`[::1]:80`).
fn without_port(host: &str) -> &str {
    match host.rfind(':') {
        Some(colon) if host.rfind(']').is_none_or(|bracket| bracket < colon) => &host[..colon],
        _ => host,
    }
}

/// The fault injection settings among per-filter config, compiled.
fn per_filter_fault(config: &HashMap<String, Any>) -> Result<Option<Fault>, error::Invalid> {
    config
        .get(FAULT_FILTER)
        .map(|any| {
            Fault::from_any(any).within(&format!("typed_per_filter_config[{FAULT_FILTER:?}]"))
        })
        .transpose()
}

fn vhost_place(config_place: &str, i: usize, vh: &pb::VirtualHost) -> String {
    if vh.name.is_empty() {
        format!("{config_place}: virtual host {i}")
    } else {
        format!("{config_place}: virtual host {:?}", vh.name)
    }
}

impl VirtualHost {
    fn compile(
        vh: &pb::VirtualHost,
        config: Inherited<'_>,
        place: &str,
    ) -> Result<VirtualHost, RouteError> {
        unsupported(&[
            ("matcher", vh.matcher.is_some()),
            ("require_tls", vh.require_tls != 0),
            (
                "retry_policy_typed_config",
                vh.retry_policy_typed_config.is_some(),
            ),
            ("route_specifiers", !vh.route_specifiers.is_empty()),
        ])
        .map_err(|e| e.placed(place))?;
        if vh.name.is_empty() {
            return Err(Problem::invalid("must not be empty")
                .at("name")
                .placed(place));
        }
        let inherited = Inherited {
            retry_policy: vh.retry_policy.as_ref(),
            request_mirror_policies: if vh.request_mirror_policies.is_empty() {
                config.request_mirror_policies
            } else {
                &vh.request_mirror_policies
            },
            attempt_count: AttemptCount {
                request: vh.include_request_attempt_count,
                response: vh.include_attempt_count_in_response,
            },
            #[allow(deprecated)]
            buffer_limit: action::buffer_limit(
                vh.request_body_buffer_limit,
                vh.per_request_buffer_limit_bytes,
            ),
            ..config
        };
        let routes = vh
            .routes
            .iter()
            .enumerate()
            .map(|(i, r)| {
                Route::compile(r, inherited).map_err(|e| e.placed(format!("{place}: route {i}")))
            })
            .collect::<Result<_, _>>()?;
        Ok(VirtualHost {
            name: vh.name.clone(),
            routes,
            headers: HeaderMutations::compile(vh).map_err(|e| e.placed(place))?,
            typed_per_filter_config: vh.typed_per_filter_config.clone(),
            fault: per_filter_fault(&vh.typed_per_filter_config).map_err(|e| e.placed(place))?,
            metadata: vh.metadata.clone(),
        })
    }

    /// The routes, in the order they are tried.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }
}

impl Route {
    fn compile(r: &pb::Route, inherited: Inherited<'_>) -> Result<Route, error::Invalid> {
        use pb::route::Action as A;
        if !r.route_specifiers.is_empty() {
            return Err(Problem::Unsupported.at("route_specifiers"));
        }
        let Some(m) = &r.r#match else {
            return Err(Problem::Missing.at("match"));
        };
        let matcher = RouteMatch::compile(m).within("match")?;
        let action = match &r.action {
            None => return Err(Problem::Missing.at("action")),
            Some(A::Route(a)) => {
                #[allow(deprecated)]
                let route_limit = action::buffer_limit(
                    r.request_body_buffer_limit,
                    r.per_request_buffer_limit_bytes,
                );
                let inherited = Inherited {
                    buffer_limit: route_limit.or(inherited.buffer_limit),
                    ..inherited
                };
                Action::Forward(Box::new(
                    Forward::compile(a, matcher.matched(), inherited).within("route")?,
                ))
            }
            Some(A::Redirect(redirect)) => {
                Action::Redirect(Redirect::compile(redirect, matcher.matched()).within("redirect")?)
            }
            Some(A::DirectResponse(d)) => Action::DirectResponse(
                DirectResponse::compile(d, inherited.max_direct_response_body)
                    .within("direct_response")?,
            ),
            Some(A::FilterAction(_)) => return Err(Problem::Unsupported.at("filter_action")),
            Some(A::NonForwardingAction(_)) => {
                return Err(Problem::Unsupported.at("non_forwarding_action"));
            }
        };
        Ok(Route {
            name: r.name.clone(),
            matcher,
            action,
            headers: HeaderMutations::compile(r)?,
            typed_per_filter_config: r.typed_per_filter_config.clone(),
            fault: per_filter_fault(&r.typed_per_filter_config)?,
            decorator: r.decorator.clone(),
            metadata: r.metadata.clone(),
        })
    }
}

impl<'a> Selected<'a> {
    /// The most specific fault injection settings for the request: the route's, else its
    /// virtual host's, else the route configuration's (Envoy does not merge them).
    pub fn fault(&self) -> Option<&'a Fault> {
        self.route
            .fault
            .as_ref()
            .or(self.virtual_host.fault.as_ref())
            .or(self.table.fault.as_ref())
    }

    /// Applies the request header mutations in Envoy's order: the picked weighted cluster's,
    /// then the route's, the virtual host's and the route configuration's, each level
    /// winning over the ones before (reversed to configuration, virtual host, route when
    /// `most_specific_header_mutations_wins`).
    pub fn apply_request_headers(&self, headers: &mut HeaderMap) {
        self.apply(headers, |level| &level.request);
    }

    /// Applies the response header mutations, in the same order as the request's.
    pub fn apply_response_headers(&self, headers: &mut HeaderMap) {
        self.apply(headers, |level| &level.response);
    }

    fn apply(&self, headers: &mut HeaderMap, side: impl Fn(&HeaderMutations) -> &HeaderOps) {
        if let Some(cluster) = self.cluster {
            side(&cluster.headers).apply(headers);
        }
        let mut levels = [
            &self.route.headers,
            &self.virtual_host.headers,
            &self.table.headers,
        ];
        if self.table.most_specific_header_mutations_wins {
            levels.reverse();
        }
        for level in levels {
            side(level).apply(headers);
        }
    }
}
