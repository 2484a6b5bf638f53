//! `EnvoyFilter` (`networking.istio.io/v1alpha3`): raw patches to the Envoy configuration
//! Istio generates. Mizzen loads and validates them; its proxy does not apply them.
//!
//! Validation covers Istio's webhook rules that need no Envoy protos (the patch values
//! themselves are kept as free-form JSON) plus the CRD schema and CEL rules.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::types::{PolicyTargetReference, is_default, string_enum};
use crate::validate::{
    Validate, Validator, cel_error, check_max_items, check_max_len, check_object,
    check_policy_targets, check_port, regex_error,
};

/// Patches to the Envoy configuration of the selected workloads.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvoyFilter {
    /// Workloads the patches apply to; all workloads of the namespace when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_selector: Option<EnvoyFilterWorkloadSelector>,
    /// Resources (e.g. Gateways) the patches apply to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_refs: Vec<PolicyTargetReference>,
    /// The patches, each with its match conditions.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub config_patches: Vec<EnvoyConfigObjectPatch>,
    /// Order among EnvoyFilters of the same context; lower applies first.
    #[serde(default, skip_serializing_if = "is_default")]
    pub priority: i32,
}

/// `workloadSelector: {labels}`: the workloads an EnvoyFilter applies to.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvoyFilterWorkloadSelector {
    /// Labels a workload must carry, all of them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

string_enum! {
    /// The kind of Envoy object a patch applies to.
    pub enum EnvoyApplyTo {
        /// Unset; refused by validation.
        Invalid = "INVALID",
        /// A listener.
        Listener = "LISTENER",
        /// A filter chain of a listener.
        FilterChain = "FILTER_CHAIN",
        /// A network filter of a filter chain.
        NetworkFilter = "NETWORK_FILTER",
        /// An HTTP filter of the HTTP connection manager.
        HttpFilter = "HTTP_FILTER",
        /// A route configuration (RDS output).
        RouteConfiguration = "ROUTE_CONFIGURATION",
        /// A virtual host of a route configuration.
        VirtualHost = "VIRTUAL_HOST",
        /// A route of a virtual host.
        HttpRoute = "HTTP_ROUTE",
        /// A cluster (CDS output).
        Cluster = "CLUSTER",
        /// An extension config (ECDS output).
        ExtensionConfig = "EXTENSION_CONFIG",
        /// The bootstrap configuration.
        Bootstrap = "BOOTSTRAP",
        /// A listener filter.
        ListenerFilter = "LISTENER_FILTER",
    }
}

string_enum! {
    /// The traffic flow / workload type whose configuration is patched.
    pub enum EnvoyPatchContext {
        /// Sidecars and gateways alike.
        Any = "ANY",
        /// Inbound listeners/routes/clusters of sidecars.
        SidecarInbound = "SIDECAR_INBOUND",
        /// Outbound listeners/routes/clusters of sidecars.
        SidecarOutbound = "SIDECAR_OUTBOUND",
        /// Gateways.
        Gateway = "GATEWAY",
        /// Waypoint proxies (requires a `waypoint` match).
        Waypoint = "WAYPOINT",
    }
}

/// One patch: what it applies to, when, and how.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvoyConfigObjectPatch {
    /// The kind of object patched.
    #[serde(default, skip_serializing_if = "is_default")]
    pub apply_to: EnvoyApplyTo,
    /// Which objects of that kind.
    #[serde(default, rename = "match", skip_serializing_if = "Option::is_none")]
    pub match_: Option<EnvoyConfigObjectMatch>,
    /// The change.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patch: Option<EnvoyPatch>,
}

/// Conditions an object must meet to be patched.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(
    try_from = "RawEnvoyConfigObjectMatch",
    into = "RawEnvoyConfigObjectMatch"
)]
pub struct EnvoyConfigObjectMatch {
    /// The generation context (sidecar inbound/outbound, gateway, waypoint).
    pub context: EnvoyPatchContext,
    /// Properties of the proxy.
    pub proxy: Option<EnvoyProxyMatch>,
    /// At most one of a listener, route configuration, cluster or waypoint match.
    pub object: Option<EnvoyObjectMatch>,
}

/// The object-type part of a match (proto `oneof object_types`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvoyObjectMatch {
    /// `listener:`.
    Listener(EnvoyListenerMatch),
    /// `routeConfiguration:`.
    RouteConfiguration(EnvoyRouteConfigurationMatch),
    /// `cluster:`.
    Cluster(EnvoyClusterMatch),
    /// `waypoint:` (only with `context: WAYPOINT`).
    Waypoint(EnvoyWaypointMatch),
}

#[derive(Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct RawEnvoyConfigObjectMatch {
    #[serde(default, skip_serializing_if = "is_default")]
    context: EnvoyPatchContext,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    proxy: Option<EnvoyProxyMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    listener: Option<EnvoyListenerMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    route_configuration: Option<EnvoyRouteConfigurationMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    cluster: Option<EnvoyClusterMatch>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    waypoint: Option<EnvoyWaypointMatch>,
}

impl TryFrom<RawEnvoyConfigObjectMatch> for EnvoyConfigObjectMatch {
    type Error = &'static str;

    fn try_from(raw: RawEnvoyConfigObjectMatch) -> Result<Self, Self::Error> {
        use EnvoyObjectMatch as O;
        let object = match (
            raw.listener,
            raw.route_configuration,
            raw.cluster,
            raw.waypoint,
        ) {
            (None, None, None, None) => None,
            (Some(l), None, None, None) => Some(O::Listener(l)),
            (None, Some(r), None, None) => Some(O::RouteConfiguration(r)),
            (None, None, Some(c), None) => Some(O::Cluster(c)),
            (None, None, None, Some(w)) => Some(O::Waypoint(w)),
            _ => {
                return Err(
                    "only one of listener, routeConfiguration, cluster or waypoint may be set",
                );
            }
        };
        Ok(EnvoyConfigObjectMatch {
            context: raw.context,
            proxy: raw.proxy,
            object,
        })
    }
}

impl From<EnvoyConfigObjectMatch> for RawEnvoyConfigObjectMatch {
    fn from(m: EnvoyConfigObjectMatch) -> Self {
        let mut raw = RawEnvoyConfigObjectMatch {
            context: m.context,
            proxy: m.proxy,
            ..Default::default()
        };
        match m.object {
            None => {}
            Some(EnvoyObjectMatch::Listener(l)) => raw.listener = Some(l),
            Some(EnvoyObjectMatch::RouteConfiguration(r)) => raw.route_configuration = Some(r),
            Some(EnvoyObjectMatch::Cluster(c)) => raw.cluster = Some(c),
            Some(EnvoyObjectMatch::Waypoint(w)) => raw.waypoint = Some(w),
        }
        raw
    }
}

/// Properties of the proxy a patch applies to.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvoyProxyMatch {
    /// RE2 regex over the proxy's Istio version.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub proxy_version: String,
    /// Node metadata the proxy must report, exactly.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, String>,
}

/// Conditions on a cluster.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvoyClusterMatch {
    /// Service port the cluster was generated for.
    #[serde(default, skip_serializing_if = "is_default")]
    pub port_number: u32,
    /// Fully qualified service name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service: String,
    /// Subset of the service.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subset: String,
    /// Exact cluster name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
}

/// Conditions on a route configuration, and optionally a virtual host and route in it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvoyRouteConfigurationMatch {
    /// Service or gateway server port the route configuration was generated for.
    #[serde(default, skip_serializing_if = "is_default")]
    pub port_number: u32,
    /// Gateway server port name (GATEWAY context).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub port_name: String,
    /// Gateway `namespace/name` (GATEWAY context).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub gateway: String,
    /// A virtual host in the route configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vhost: Option<EnvoyVirtualHostMatch>,
    /// Exact route configuration name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
}

/// Conditions on a virtual host.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvoyVirtualHostMatch {
    /// Virtual host name (`host:port` for Istio-generated ones).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// A domain the virtual host serves.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub domain_name: String,
    /// A route in the virtual host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<EnvoyRouteMatch>,
}

string_enum! {
    /// The action of a route.
    pub enum EnvoyRouteAction {
        /// Any action.
        Any = "ANY",
        /// Routes to a cluster.
        Route = "ROUTE",
        /// Redirects.
        Redirect = "REDIRECT",
        /// Responds directly.
        DirectResponse = "DIRECT_RESPONSE",
    }
}

/// Conditions on a route.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvoyRouteMatch {
    /// Route name (`default`, or the VirtualService HTTP route's name).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Route action.
    #[serde(default, skip_serializing_if = "is_default")]
    pub action: EnvoyRouteAction,
}

/// Conditions on a listener, and optionally a filter chain and filter in it.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvoyListenerMatch {
    /// Service or gateway port of the listener.
    #[serde(default, skip_serializing_if = "is_default")]
    pub port_number: u32,
    /// Service port name (not implemented by Istio).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub port_name: String,
    /// A filter chain of the listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter_chain: Option<EnvoyFilterChainMatch>,
    /// A listener filter, by name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub listener_filter: String,
    /// Exact listener name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
}

/// Conditions on a filter chain.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvoyFilterChainMatch {
    /// Filter chain name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// SNI of the chain's match.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sni: String,
    /// `raw_buffer` or `tls`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub transport_protocol: String,
    /// Comma-separated application protocols (`h2`, `http/1.1`…).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub application_protocols: String,
    /// A filter of the chain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<EnvoyFilterMatch>,
    /// Destination port of the chain's match.
    #[serde(default, skip_serializing_if = "is_default")]
    pub destination_port: u32,
    /// Transport socket name (`tls`…).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub transport_socket: String,
}

/// Conditions on a network filter.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvoyFilterMatch {
    /// Filter name (canonical, e.g. `envoy.filters.network.http_connection_manager`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// A filter inside it (an HTTP filter of the HTTP connection manager).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sub_filter: Option<EnvoySubFilterMatch>,
}

/// Conditions on a filter inside another filter.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvoySubFilterMatch {
    /// Filter name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
}

/// Conditions on a waypoint's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvoyWaypointMatch {
    /// A filter of the waypoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<EnvoyFilterMatch>,
    /// Service port, 1–65535.
    #[serde(default, skip_serializing_if = "is_default")]
    pub port_number: u32,
    /// A route of the waypoint.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub route: Option<EnvoyWaypointRouteMatch>,
}

/// A waypoint route, by name.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvoyWaypointRouteMatch {
    /// Route name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
}

string_enum! {
    /// How a patch is applied.
    pub enum EnvoyPatchOperation {
        /// Unset; refused by validation.
        Invalid = "INVALID",
        /// Proto-merge the value into the object.
        Merge = "MERGE",
        /// Add the value to a list (listeners, clusters, filters…).
        Add = "ADD",
        /// Remove the object (no value needed).
        Remove = "REMOVE",
        /// Insert before the matched filter.
        InsertBefore = "INSERT_BEFORE",
        /// Insert after the matched filter.
        InsertAfter = "INSERT_AFTER",
        /// Insert first in the list.
        InsertFirst = "INSERT_FIRST",
        /// Replace the matched object.
        Replace = "REPLACE",
        /// Merge, replacing lists instead of appending to them.
        MergeAndReplaceList = "MERGE_AND_REPLACE_LIST",
    }
}

string_enum! {
    /// Where an added filter goes relative to Istio's own filters.
    pub enum EnvoyFilterClass {
        /// Decided by the control plane.
        Unspecified = "UNSPECIFIED",
        /// After Istio's authentication filters.
        Authn = "AUTHN",
        /// After Istio's authorization filters.
        Authz = "AUTHZ",
        /// Before Istio's stats filters.
        Stats = "STATS",
    }
}

/// The change a patch makes.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvoyPatch {
    /// How.
    #[serde(default, skip_serializing_if = "is_default")]
    pub operation: EnvoyPatchOperation,
    /// The Envoy configuration (JSON of the patched object's proto); free-form.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<serde_json::Value>,
    /// Insertion point for `ADD`ed filters.
    #[serde(default, skip_serializing_if = "is_default")]
    pub filter_class: EnvoyFilterClass,
}

const HTTP_CONNECTION_MANAGER: &str = "envoy.filters.network.http_connection_manager";

/// Deprecated filter names Istio still accepts, with their canonical names.
const DEPRECATED_FILTER_NAMES: &[(&str, &str)] = &[
    ("envoy.buffer", "envoy.filters.http.buffer"),
    ("envoy.cors", "envoy.filters.http.cors"),
    ("envoy.csrf", "envoy.filters.http.csrf"),
    ("envoy.http_dynamo_filter", "envoy.filters.http.dynamo"),
    ("envoy.ext_authz", "envoy.filters.http.ext_authz"),
    ("envoy.fault", "envoy.filters.http.fault"),
    (
        "envoy.grpc_http1_bridge",
        "envoy.filters.http.grpc_http1_bridge",
    ),
    (
        "envoy.grpc_json_transcoder",
        "envoy.filters.http.grpc_json_transcoder",
    ),
    ("envoy.grpc_web", "envoy.filters.http.grpc_web"),
    ("envoy.gzip", "envoy.filters.http.gzip"),
    ("envoy.health_check", "envoy.filters.http.health_check"),
    ("envoy.ip_tagging", "envoy.filters.http.ip_tagging"),
    ("envoy.lua", "envoy.filters.http.lua"),
    ("envoy.rate_limit", "envoy.filters.http.ratelimit"),
    ("envoy.router", "envoy.filters.http.router"),
    ("envoy.squash", "envoy.filters.http.squash"),
    (
        "envoy.listener.http_inspector",
        "envoy.filters.listener.http_inspector",
    ),
    (
        "envoy.listener.original_dst",
        "envoy.filters.listener.original_dst",
    ),
    (
        "envoy.listener.original_src",
        "envoy.filters.listener.original_src",
    ),
    (
        "envoy.listener.proxy_protocol",
        "envoy.filters.listener.proxy_protocol",
    ),
    (
        "envoy.listener.tls_inspector",
        "envoy.filters.listener.tls_inspector",
    ),
    (
        "envoy.client_ssl_auth",
        "envoy.filters.network.client_ssl_auth",
    ),
    ("envoy.http_connection_manager", HTTP_CONNECTION_MANAGER),
    ("envoy.mongo_proxy", "envoy.filters.network.mongo_proxy"),
    ("envoy.ratelimit", "envoy.filters.network.ratelimit"),
    ("envoy.redis_proxy", "envoy.filters.network.redis_proxy"),
    ("envoy.tcp_proxy", "envoy.filters.network.tcp_proxy"),
];

impl Validate for EnvoyFilter {
    fn validate(&self, v: &mut Validator<'_>) {
        v.warn(
            "EnvoyFilter exposes internal implementation details that may change at any time. \
             Prefer other APIs if possible, and exercise extreme caution, especially around upgrades.",
        );
        if self.workload_selector.is_some() && !self.target_refs.is_empty() {
            cel_error(
                v,
                "object",
                "only one of targetRefs or workloadSelector can be set",
            );
        }
        v.check_opt("workloadSelector", &self.workload_selector);
        check_policy_targets(v, None, None, &self.target_refs, &[]);
        check_max_items(v, "targetRefs", self.target_refs.len(), 16);
        v.each("configPatches", &self.config_patches, |v, p| p.validate(v));
    }
}

impl Validate for EnvoyFilterWorkloadSelector {
    fn validate(&self, v: &mut Validator<'_>) {
        if self.labels.is_empty() {
            v.warn("Envoy filter: workload selector specified without labels, will be applied to all services in namespace");
        }
        v.field("labels", |v| {
            if self.labels.len() > 256 {
                v.error(format!(
                    "Too many: {}: must have at most 256 items",
                    self.labels.len()
                ));
            }
            for (key, value) in &self.labels {
                v.key(key, |v| {
                    if key.is_empty() {
                        v.error(format!(
                            "empty key is not supported in selector: \"={value}\""
                        ));
                    }
                    if key.contains('*') || value.contains('*') {
                        v.error(format!(
                            "wildcard is not supported in selector: \"{key}={value}\""
                        ));
                    }
                    check_max_len(v, value, 63);
                });
            }
        });
    }
}

impl Validate for EnvoyConfigObjectPatch {
    fn validate(&self, v: &mut Validator<'_>) {
        // The CRD's schema and CEL rules hold whatever else is wrong.
        if let Some(m) = &self.match_ {
            v.field("match", |v| check_match_schema(v, m));
        }
        // Like Istio's webhook, stop at the first problem of a patch: later checks assume
        // the earlier ones passed.
        if self.apply_to == EnvoyApplyTo::Invalid {
            return v.error_at("applyTo", "Envoy filter: missing applyTo");
        }
        let Some(patch) = &self.patch else {
            return v.error_at("patch", "Envoy filter: missing patch");
        };
        if patch.operation == EnvoyPatchOperation::Invalid {
            return v.error_at("patch.operation", "Envoy filter: missing patch operation");
        }
        match &patch.value {
            None if patch.operation != EnvoyPatchOperation::Remove => {
                return v.error_at(
                    "patch.value",
                    "Envoy filter: missing patch value for non-remove operation",
                );
            }
            None => {}
            Some(value) => v.field("patch.value", |v| {
                check_object(v, value);
                check_type_urls(v, value);
            }),
        }
        if let Some(m) = &self.match_
            && !v.field("match", |v| check_match(v, self.apply_to, m))
        {
            return;
        }
        check_operation(v, self.apply_to, patch.operation);
    }
}

/// The CRD's rules for a match: a waypoint match goes with (and only with) the
/// WAYPOINT context, and its port is a real port.
fn check_match_schema(v: &mut Validator<'_>, m: &EnvoyConfigObjectMatch) {
    use EnvoyObjectMatch as O;
    if (m.context == EnvoyPatchContext::Waypoint) != matches!(m.object, Some(O::Waypoint(_))) {
        cel_error(
            v,
            "object",
            "only support waypointMatch when context is WAYPOINT",
        );
    }
    match &m.object {
        None => {}
        Some(O::Listener(l)) => v.field("listener", |v| {
            check_port_number(v, "portNumber", l.port_number);
            if let Some(fc) = &l.filter_chain {
                v.field("filterChain", |v| {
                    check_port_number(v, "destinationPort", fc.destination_port);
                });
            }
        }),
        Some(O::RouteConfiguration(r)) => v.field("routeConfiguration", |v| {
            check_port_number(v, "portNumber", r.port_number);
        }),
        Some(O::Cluster(c)) => v.field("cluster", |v| {
            check_port_number(v, "portNumber", c.port_number);
        }),
        Some(O::Waypoint(w)) if w.port_number != 0 => {
            v.field("waypoint.portNumber", |v| check_port(v, w.port_number));
        }
        Some(O::Waypoint(_)) => {}
    }
}

/// The webhook's checks of a match against its `applyTo`; false when a problem ends
/// the patch's validation, as it does in Istio's webhook.
fn check_match(v: &mut Validator<'_>, apply_to: EnvoyApplyTo, m: &EnvoyConfigObjectMatch) -> bool {
    use EnvoyApplyTo as A;
    use EnvoyObjectMatch as O;
    if let Some(proxy) = &m.proxy
        && let Some(reason) = regex_error(&proxy.proxy_version)
    {
        v.error_at(
            "proxy.proxyVersion",
            format!("Envoy filter: invalid regex for proxy version, [{reason}]"),
        );
        return false;
    }
    let Some(object) = &m.object else {
        return true;
    };
    if let O::Waypoint(EnvoyWaypointMatch {
        filter: Some(f), ..
    }) = object
    {
        v.field("waypoint.filter", |v| warn_deprecated_names(v, f));
    }
    // A waypoint match can select any class of object.
    let waypoint = matches!(object, O::Waypoint(_));
    match apply_to {
        A::Listener | A::FilterChain | A::NetworkFilter | A::HttpFilter => match object {
            O::Listener(l) => v.field("listener", |v| check_listener_filter(v, apply_to, l)),
            _ if waypoint => true,
            _ => {
                v.error("Envoy filter: applyTo for listener class objects cannot have non listener match");
                false
            }
        },
        A::RouteConfiguration | A::VirtualHost | A::HttpRoute => {
            if !waypoint && !matches!(object, O::RouteConfiguration(_)) {
                v.error("Envoy filter: applyTo for http route class objects cannot have non route configuration match");
            }
            true
        }
        A::Cluster => {
            if !waypoint && !matches!(object, O::Cluster(_)) {
                v.error(
                    "Envoy filter: applyTo for cluster class objects cannot have non cluster match",
                );
            }
            true
        }
        _ => true,
    }
}

/// Ports in listener/route/cluster matches are `uint32` in the schema, but only
/// 1–65535 can ever match.
fn check_port_number(v: &mut Validator<'_>, field: &str, port: u32) {
    if port > 65535 {
        v.warn_at(
            field,
            format!("port {port} is outside 1-65535 and never matches"),
        );
    }
}

/// The filter/sub-filter rules of a listener match.
fn check_listener_filter(
    v: &mut Validator<'_>,
    apply_to: EnvoyApplyTo,
    l: &EnvoyListenerMatch,
) -> bool {
    let Some(filter) = l.filter_chain.as_ref().and_then(|fc| fc.filter.as_ref()) else {
        return true;
    };
    v.field("filterChain.filter", |v| {
        if matches!(apply_to, EnvoyApplyTo::Listener | EnvoyApplyTo::FilterChain) {
            // An error in principle; Istio keeps it a warning for compatibility.
            v.warn(format!("Envoy filter: filter match has no effect when used with {apply_to}"));
        }
        if filter.name.is_empty() {
            v.error("Envoy filter: filter match has no name to match on");
            return false;
        }
        if let Some(sub) = &filter.sub_filter {
            if apply_to != EnvoyApplyTo::HttpFilter {
                v.error("Envoy filter: subfilter match can be used with applyTo HTTP_FILTER only");
                return false;
            }
            if filter.name != HTTP_CONNECTION_MANAGER && filter.name != "envoy.http_connection_manager" {
                v.error(format!("Envoy filter: subfilter match requires filter match with {HTTP_CONNECTION_MANAGER}"));
                return false;
            }
            if sub.name.is_empty() {
                v.error("Envoy filter: subfilter match has no name to match on");
                return false;
            }
        }
        warn_deprecated_names(v, filter);
        true
    })
}

fn warn_deprecated_names(v: &mut Validator<'_>, filter: &EnvoyFilterMatch) {
    let warn = |v: &mut Validator<'_>, field: &str, name: &str| {
        if let Some((_, canonical)) = DEPRECATED_FILTER_NAMES.iter().find(|(old, _)| *old == name) {
            v.warn_at(
                field,
                format!("using deprecated filter name {name:?}; use {canonical:?} instead"),
            );
        }
    };
    warn(v, "name", &filter.name);
    if let Some(sub) = &filter.sub_filter {
        warn(v, "subFilter.name", &sub.name);
    }
}

/// Reports `@type` URLs of Envoy's removed v2 API, which Istio cannot resolve.
fn check_type_urls(v: &mut Validator<'_>, value: &serde_json::Value) {
    match value {
        serde_json::Value::Object(map) => {
            if let Some(serde_json::Value::String(url)) = map.get("@type")
                && url.contains(".v2.")
            {
                v.error(format!(
                    "referenced type unknown (hint: try using the v3 XDS API): unable to resolve {url:?}"
                ));
            }
            map.values().for_each(|child| check_type_urls(v, child));
        }
        serde_json::Value::Array(items) => items.iter().for_each(|child| check_type_urls(v, child)),
        _ => {}
    }
}

/// Warns about operations Istio ignores for an `applyTo`.
fn check_operation(v: &mut Validator<'_>, apply_to: EnvoyApplyTo, op: EnvoyPatchOperation) {
    use EnvoyPatchOperation as P;
    let supported: &[P] = match apply_to {
        EnvoyApplyTo::RouteConfiguration => &[P::Merge],
        EnvoyApplyTo::VirtualHost => &[P::Merge, P::Add, P::Remove, P::Replace],
        EnvoyApplyTo::HttpRoute => &[
            P::Merge,
            P::Add,
            P::Remove,
            P::InsertBefore,
            P::InsertAfter,
            P::InsertFirst,
        ],
        EnvoyApplyTo::Cluster => &[P::Merge, P::Add, P::Remove, P::MergeAndReplaceList],
        EnvoyApplyTo::ExtensionConfig => &[P::Add],
        _ => return,
    };
    if !supported.contains(&op) {
        let names: Vec<&str> = supported.iter().map(|p| p.as_str()).collect();
        v.warn_at(
            "patch.operation",
            format!(
                "Envoy filter: operation {op} is ignored when applyTo is {apply_to}; supported: {}",
                names.join(", ")
            ),
        );
    }
}

#[cfg(test)]
mod tests {
    use crate::Kind;
    use crate::testing::{issues, messages};
    use crate::validate::{Issue, Severity};

    fn check(spec: &str) -> Vec<Issue> {
        issues(Kind::EnvoyFilter, spec)
    }

    fn by(spec: &str, severity: Severity) -> Vec<String> {
        messages(&check(spec), severity)
    }

    fn errors(spec: &str) -> Vec<String> {
        by(spec, Severity::Error)
    }

    /// Warnings other than the one every EnvoyFilter gets.
    fn warnings(spec: &str) -> Vec<String> {
        let mut w = by(spec, Severity::Warning);
        assert!(
            w.remove(0)
                .starts_with("spec: EnvoyFilter exposes internal implementation details")
        );
        w
    }

    fn patch(apply_to: &str, matches: &str, patch: &str) -> String {
        format!(
            "  configPatches:\n  - applyTo: {apply_to}\n    match:\n{matches}    patch:\n{patch}"
        )
    }

    const FULL: &str = r#"
  workloadSelector:
    labels:
      app: productpage
  priority: -5
  configPatches:
  - applyTo: HTTP_FILTER
    match:
      context: SIDECAR_INBOUND
      proxy:
        proxyVersion: '^1\.2[0-9].*'
        metadata:
          ROUTER_MODE: sni-dnat
      listener:
        portNumber: 8080
        name: virtualInbound
        filterChain:
          name: chain
          sni: example.com
          transportProtocol: tls
          applicationProtocols: h2
          destinationPort: 9080
          transportSocket: tls
          filter:
            name: envoy.filters.network.http_connection_manager
            subFilter:
              name: envoy.filters.http.router
    patch:
      operation: INSERT_BEFORE
      filterClass: AUTHZ
      value:
        name: envoy.filters.http.lua
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.http.lua.v3.Lua
          inlineCode: "function envoy_on_request(h) end"
  - applyTo: HTTP_ROUTE
    match:
      context: GATEWAY
      routeConfiguration:
        portNumber: 443
        portName: https
        gateway: istio-system/gw
        name: rc
        vhost:
          name: "example.com:443"
          domainName: example.com
          route:
            name: default
            action: ROUTE
    patch:
      operation: MERGE
      value:
        route:
          timeout: 5s
  - applyTo: CLUSTER
    match:
      cluster:
        service: reviews.default.svc.cluster.local
        subset: v1
        portNumber: 9080
        name: outbound|9080|v1|reviews.default.svc.cluster.local
    patch:
      operation: REMOVE
  - applyTo: LISTENER_FILTER
    match:
      listener:
        listenerFilter: envoy.filters.listener.tls_inspector
    patch:
      operation: REMOVE
  - applyTo: BOOTSTRAP
    patch:
      operation: MERGE
      value: {}
"#;

    #[test]
    fn full_envoy_filter_is_valid_and_round_trips() {
        assert_eq!(errors(FULL), Vec::<String>::new());
        assert_eq!(warnings(FULL), Vec::<String>::new());
        let yaml = format!(
            "apiVersion: networking.istio.io/v1alpha3\nkind: EnvoyFilter\nmetadata:\n  name: ef\nspec:\n{FULL}"
        );
        let first = crate::load::Loader::new()
            .load_str(&yaml, None)
            .objects
            .remove(0)
            .object;
        let again = crate::load::Loader::new()
            .load_str(&serde_yaml_ng::to_string(&first).unwrap(), None)
            .objects
            .remove(0)
            .object;
        assert_eq!(first, again);
        let crate::Object::EnvoyFilter(ef) = first else {
            panic!()
        };
        assert!(matches!(
            ef.spec.config_patches[2].match_.as_ref().unwrap().object,
            Some(super::EnvoyObjectMatch::Cluster(_))
        ));
    }

    #[test]
    fn patches_need_apply_to_operation_and_value() {
        assert_eq!(
            errors("  configPatches:\n  - patch:\n      operation: ADD\n"),
            ["spec.configPatches[0].applyTo: Envoy filter: missing applyTo"]
        );
        assert_eq!(
            errors("  configPatches:\n  - applyTo: LISTENER\n"),
            ["spec.configPatches[0].patch: Envoy filter: missing patch"]
        );
        assert_eq!(
            errors("  configPatches:\n  - applyTo: LISTENER\n    patch: {}\n"),
            ["spec.configPatches[0].patch.operation: Envoy filter: missing patch operation"]
        );
        assert_eq!(
            errors("  configPatches:\n  - applyTo: LISTENER\n    patch:\n      operation: ADD\n"),
            [
                "spec.configPatches[0].patch.value: Envoy filter: missing patch value for non-remove operation"
            ]
        );
        assert_eq!(
            errors(
                "  configPatches:\n  - applyTo: LISTENER\n    patch:\n      operation: ADD\n      value: [1]\n"
            ),
            ["spec.configPatches[0].patch.value: Invalid value: \"array\": must be of type object"]
        );
    }

    #[test]
    fn proxy_version_must_compile() {
        let spec = patch(
            "LISTENER",
            "      proxy:\n        proxyVersion: \"%#@~++==`24c234`\"\n",
            "      operation: REMOVE\n",
        );
        let errs = errors(&spec);
        assert_eq!(errs.len(), 1);
        assert_eq!(
            errs[0],
            "spec.configPatches[0].match.proxy.proxyVersion: Envoy filter: invalid regex for proxy version, [error parsing regexp: invalid nested repetition operator: `++`]"
        );
        let unclosed = patch(
            "LISTENER",
            "      proxy:\n        proxyVersion: \"1.(2\"\n",
            "      operation: REMOVE\n",
        );
        assert_eq!(errors(&unclosed).len(), 1);
        let ok = patch(
            "LISTENER",
            "      proxy:\n        proxyVersion: 'release-1\\.2-23434'\n",
            "      operation: REMOVE\n",
        );
        assert!(errors(&ok).is_empty());
    }

    #[test]
    fn apply_to_must_fit_the_match() {
        let remove = "      operation: REMOVE\n";
        assert_eq!(
            errors(&patch("LISTENER", "      cluster: {}\n", remove)),
            [
                "spec.configPatches[0].match: Envoy filter: applyTo for listener class objects cannot have non listener match"
            ]
        );
        assert_eq!(
            errors(&patch("VIRTUAL_HOST", "      listener: {}\n", remove)),
            [
                "spec.configPatches[0].match: Envoy filter: applyTo for http route class objects cannot have non route configuration match"
            ]
        );
        assert_eq!(
            errors(&patch("CLUSTER", "      routeConfiguration: {}\n", remove)),
            [
                "spec.configPatches[0].match: Envoy filter: applyTo for cluster class objects cannot have non cluster match"
            ]
        );
        let two = "  configPatches:\n  - applyTo: CLUSTER\n    match:\n      cluster: {}\n      listener: {}\n";
        let yaml = format!(
            "apiVersion: networking.istio.io/v1alpha3\nkind: EnvoyFilter\nmetadata:\n  name: ef\nspec:\n{two}"
        );
        let loaded = crate::load::Loader::new().load_str(&yaml, None);
        assert!(
            loaded.errors[0]
                .to_string()
                .contains("only one of listener, routeConfiguration, cluster or waypoint")
        );
    }

    #[test]
    fn filter_and_subfilter_matches() {
        let hcm = "envoy.filters.network.http_connection_manager";
        let m = |filter: &str| {
            format!("      listener:\n        filterChain:\n          filter:\n{filter}")
        };
        let add = "      operation: ADD\n      value: {name: x}\n";
        assert_eq!(
            errors(&patch(
                "NETWORK_FILTER",
                &m("            subFilter:\n              name: a\n"),
                add
            )),
            [
                "spec.configPatches[0].match.listener.filterChain.filter: Envoy filter: filter match has no name to match on"
            ]
        );
        assert_eq!(
            errors(&patch(
                "NETWORK_FILTER",
                &m(&format!(
                    "            name: {hcm}\n            subFilter:\n              name: a\n"
                )),
                add
            )),
            [
                "spec.configPatches[0].match.listener.filterChain.filter: Envoy filter: subfilter match can be used with applyTo HTTP_FILTER only"
            ]
        );
        assert_eq!(
            errors(&patch(
                "HTTP_FILTER",
                &m(
                    "            name: envoy.tcp_proxy\n            subFilter:\n              name: a\n"
                ),
                add
            )),
            [
                "spec.configPatches[0].match.listener.filterChain.filter: Envoy filter: subfilter match requires filter match with envoy.filters.network.http_connection_manager"
            ]
        );
        assert_eq!(
            errors(&patch(
                "HTTP_FILTER",
                &m(&format!(
                    "            name: {hcm}\n            subFilter: {{}}\n"
                )),
                add
            )),
            [
                "spec.configPatches[0].match.listener.filterChain.filter: Envoy filter: subfilter match has no name to match on"
            ]
        );
        assert_eq!(
            warnings(&patch(
                "HTTP_FILTER",
                &m(
                    "            name: envoy.http_connection_manager\n            subFilter:\n              name: envoy.router\n"
                ),
                add
            )),
            [
                "spec.configPatches[0].match.listener.filterChain.filter.name: using deprecated filter name \"envoy.http_connection_manager\"; use \"envoy.filters.network.http_connection_manager\" instead",
                "spec.configPatches[0].match.listener.filterChain.filter.subFilter.name: using deprecated filter name \"envoy.router\"; use \"envoy.filters.http.router\" instead",
            ]
        );
        assert_eq!(
            warnings(&patch(
                "FILTER_CHAIN",
                &m(&format!("            name: {hcm}\n")),
                add
            )),
            [
                "spec.configPatches[0].match.listener.filterChain.filter: Envoy filter: filter match has no effect when used with FILTER_CHAIN"
            ]
        );
    }

    #[test]
    fn waypoint_rules() {
        let remove = "      operation: REMOVE\n";
        let wrong = "spec.configPatches[0].match: Invalid value: \"object\": only support waypointMatch when context is WAYPOINT";
        assert_eq!(
            errors(&patch(
                "HTTP_FILTER",
                "      context: SIDECAR_INBOUND\n      waypoint: {}\n",
                remove
            )),
            [wrong]
        );
        assert_eq!(
            errors(&patch("HTTP_FILTER", "      waypoint: {}\n", remove)),
            [wrong]
        );
        assert_eq!(
            errors(&patch(
                "HTTP_FILTER",
                "      context: WAYPOINT\n      listener: {}\n",
                remove
            )),
            [wrong]
        );
        assert_eq!(
            errors(&patch(
                "HTTP_FILTER",
                "      context: WAYPOINT\n      waypoint:\n        portNumber: 65536\n",
                remove
            )),
            [
                "spec.configPatches[0].match.waypoint.portNumber: port must be between 1-65535, got 65536"
            ]
        );
        // The CRD rules are reported even when the webhook stops early.
        assert_eq!(
            errors(
                "  configPatches:\n  - applyTo: HTTP_FILTER\n    match:\n      context: GATEWAY\n      waypoint: {}\n"
            ),
            [
                wrong,
                "spec.configPatches[0].patch: Envoy filter: missing patch"
            ]
        );
        assert!(errors(&patch("CLUSTER", "      context: WAYPOINT\n      waypoint:\n        portNumber: 80\n        route:\n          name: r\n", remove)).is_empty());
    }

    #[test]
    fn selector_and_target_refs() {
        assert_eq!(
            errors(
                "  workloadSelector:\n    labels:\n      app: a\n  targetRefs:\n  - kind: Gateway\n    group: gateway.networking.k8s.io\n    name: gw\n"
            ),
            [
                "spec: Invalid value: \"object\": only one of targetRefs or workloadSelector can be set"
            ]
        );
        assert_eq!(
            errors("  workloadSelector:\n    labels:\n      app: \"a*\"\n      \"\": b\n"),
            [
                "spec.workloadSelector.labels[]: empty key is not supported in selector: \"=b\"",
                "spec.workloadSelector.labels[app]: wildcard is not supported in selector: \"app=a*\"",
            ]
        );
        assert_eq!(
            warnings("  workloadSelector: {}\n"),
            [
                "spec.workloadSelector: Envoy filter: workload selector specified without labels, will be applied to all services in namespace"
            ]
        );
        assert_eq!(
            errors(
                "  targetRefs:\n  - kind: Gateway\n    group: gateway.networking.k8s.io\n    namespace: other\n"
            ),
            [
                "spec.targetRefs[0].name: Required value",
                "spec.targetRefs[0].namespace: cross namespace referencing is not currently supported",
            ]
        );
    }

    #[test]
    fn operations_istio_ignores_and_v2_types() {
        let rc = patch(
            "ROUTE_CONFIGURATION",
            "      routeConfiguration: {}\n",
            "      operation: ADD\n      value: {}\n",
        );
        assert_eq!(
            warnings(&rc),
            [
                "spec.configPatches[0].patch.operation: Envoy filter: operation ADD is ignored when applyTo is ROUTE_CONFIGURATION; supported: MERGE"
            ]
        );
        let v2 = "  configPatches:\n  - applyTo: HTTP_FILTER\n    patch:\n      operation: ADD\n      value:\n        name: x\n        typed_config:\n          \"@type\": type.googleapis.com/envoy.config.filter.http.lua.v2.Lua\n";
        assert_eq!(
            errors(v2),
            [
                "spec.configPatches[0].patch.value: referenced type unknown (hint: try using the v3 XDS API): unable to resolve \"type.googleapis.com/envoy.config.filter.http.lua.v2.Lua\""
            ]
        );
    }
}
