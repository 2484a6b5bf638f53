//! `DestinationRule`: policies applied to traffic for a service after routing has
//! occurred (load balancing, connection pools, outlier detection, client TLS), and the
//! named subsets of its endpoints.

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::types::{Duration, Labels, WorkloadSelector, is_default, string_enum};
use crate::validate::{
    Validate, Validator, check_export_to, check_labels, check_max_items, check_max_len,
    check_proto_duration, check_range, check_wildcard_host, check_workload_selector, fqdn_error,
    is_istio_label,
};

/// `networking.istio.io/v1` DestinationRule spec.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct DestinationRule {
    /// The service the rule applies to: a registry name, short or fully qualified, possibly
    /// with a wildcard prefix.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub host: String,
    /// Policies for all traffic to the host (overridden per subset and per port).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_policy: Option<Box<TrafficPolicy>>,
    /// Named sets of endpoints, selected by labels, with optional policy overrides.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subsets: Vec<Subset>,
    /// Namespaces the rule is visible to (`.`, `*` or names); default: everywhere.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub export_to: Vec<String>,
    /// Restricts the rule to the selected workloads in its namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_selector: Option<WorkloadSelector>,
}

/// Traffic policies for a destination: load balancing, pools, ejection, TLS, tunnelling.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrafficPolicy {
    /// The load balancing algorithm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LoadBalancerSettings>,
    /// Limits on connections and requests to the upstream service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_pool: Option<ConnectionPoolSettings>,
    /// Ejection of unhealthy hosts from the load balancing pool.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlier_detection: Option<OutlierDetection>,
    /// TLS settings for connections to the upstream service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ClientTlsSettings>,
    /// Per-port overrides of the policies above.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub port_level_settings: Vec<PortTrafficPolicy>,
    /// Tunnels TCP traffic over HTTP CONNECT or POST to another host.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tunnel: Option<TunnelSettings>,
    /// Sends a PROXY protocol header on upstream connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy_protocol: Option<ProxyProtocol>,
    /// Limits concurrent retries relative to active requests.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry_budget: Option<RetryBudget>,
}

/// `TrafficPolicy.PortTrafficPolicy`: policies for one port of the destination.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PortTrafficPolicy {
    /// The destination port these settings apply to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<PolicyPortSelector>,
    /// The load balancing algorithm for this port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub load_balancer: Option<LoadBalancerSettings>,
    /// Connection pool limits for this port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_pool: Option<ConnectionPoolSettings>,
    /// Outlier detection for this port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outlier_detection: Option<OutlierDetection>,
    /// Client TLS settings for this port.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ClientTlsSettings>,
}

/// Istio's `PortSelector` as used by DestinationRule and Sidecar: `{number: N}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyPortSelector {
    /// A valid port number.
    #[serde(default, skip_serializing_if = "is_default")]
    pub number: u32,
}

/// `TrafficPolicy.TunnelSettings`: tunnel the connection through another proxy.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TunnelSettings {
    /// `CONNECT` (default) or `POST`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub protocol: String,
    /// The host (FQDN or IP) the connection is tunnelled to.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub target_host: String,
    /// The port the connection is tunnelled to.
    #[serde(default, skip_serializing_if = "is_default")]
    pub target_port: u32,
}

/// `TrafficPolicy.ProxyProtocol`: PROXY protocol on upstream connections.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProxyProtocol {
    /// The PROXY protocol version.
    #[serde(default, skip_serializing_if = "is_default")]
    pub version: ProxyProtocolVersion,
}

string_enum! {
    /// `TrafficPolicy.ProxyProtocol.VERSION`.
    pub enum ProxyProtocolVersion {
        /// PROXY protocol version 1 (human readable).
        V1 = "V1",
        /// PROXY protocol version 2 (binary).
        V2 = "V2",
    }
}

/// `TrafficPolicy.RetryBudget`: a cap on concurrent retries.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RetryBudget {
    /// Concurrent retries as a percentage of active (and pending) requests, 0–100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percent: Option<f64>,
    /// Retries always allowed regardless of the budget.
    #[serde(default, skip_serializing_if = "is_default")]
    pub min_retry_concurrency: u32,
    /// The window over which requests count towards the budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_interval: Option<Duration>,
}

/// A named set of the service's endpoints, selected by labels.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Subset {
    /// The subset's name (a DNS label), referenced by routes.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Labels selecting the subset's endpoints.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: Labels,
    /// Policies overriding the rule-level ones for this subset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub traffic_policy: Option<Box<TrafficPolicy>>,
}

/// Load balancing: a simple algorithm, consistent hashing or utilization-based, plus
/// locality and warmup settings. At most one of `simple`, `consistentHash` and
/// `backendUtilization` may be set.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LoadBalancerSettings {
    /// A standard algorithm.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub simple: Option<SimpleLb>,
    /// Consistent hashing (soft session affinity).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consistent_hash: Option<ConsistentHashLb>,
    /// Weights endpoints by the utilization they report (ORCA).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backend_utilization: Option<BackendUtilization>,
    /// Locality-aware load balancing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locality_lb_setting: Option<LocalityLoadBalancerSetting>,
    /// Zone-aware load balancing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone_aware_lb_setting: Option<ZoneAwareLoadBalancerSetting>,
    /// Deprecated in favour of `warmup`: slow-start window for new endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup_duration_secs: Option<Duration>,
    /// Slow start for new endpoints.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub warmup: Option<WarmupConfiguration>,
}

string_enum! {
    /// `LoadBalancerSettings.SimpleLB`: standard load balancing algorithms.
    pub enum SimpleLb {
        /// No algorithm chosen; the proxy picks its default.
        Unspecified = "UNSPECIFIED",
        /// Deprecated: use `LEAST_REQUEST`.
        LeastConn = "LEAST_CONN",
        /// A random healthy host.
        Random = "RANDOM",
        /// Forward to the address the caller asked for.
        Passthrough = "PASSTHROUGH",
        /// Round robin over healthy hosts.
        RoundRobin = "ROUND_ROBIN",
        /// The host with fewer active requests among random picks.
        LeastRequest = "LEAST_REQUEST",
    }
}

/// `LoadBalancerSettings.ConsistentHashLB`: hash on a request property.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConsistentHashLb {
    /// Hash on this HTTP header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_header_name: Option<String>,
    /// Hash on this cookie, generating it when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_cookie: Option<HttpCookie>,
    /// Hash on the source IP address.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub use_source_ip: Option<bool>,
    /// Hash on this query parameter.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_query_parameter_name: Option<String>,
    /// Ring hash algorithm settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ring_hash: Option<RingHash>,
    /// Maglev algorithm settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub maglev: Option<MagLev>,
    /// Deprecated: use `ringHash.minimumRingSize`.
    #[serde(default, skip_serializing_if = "is_default")]
    pub minimum_ring_size: u64,
}

/// `ConsistentHashLB.HTTPCookie`: the cookie hashed on.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpCookie {
    /// The cookie's name (required).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// The path set on a generated cookie.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    /// Lifetime of a generated cookie.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ttl: Option<Duration>,
    /// Extra attributes set on a generated cookie.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub attributes: Vec<HttpCookieAttribute>,
}

/// `ConsistentHashLB.HTTPCookie.Attribute`: one cookie attribute.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpCookieAttribute {
    /// The attribute's name (required).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// The attribute's value, if any.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub value: String,
}

/// `ConsistentHashLB.RingHash`: ring hash settings.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RingHash {
    /// Minimum number of virtual nodes on the ring (default 1024).
    #[serde(default, skip_serializing_if = "is_default")]
    pub minimum_ring_size: u64,
}

/// `ConsistentHashLB.MagLev`: Maglev settings.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MagLev {
    /// Lookup table size: a prime below 5000011.
    #[serde(default, skip_serializing_if = "is_default")]
    pub table_size: u64,
}

/// Utilization-based load balancing from backend-reported (ORCA) metrics.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct BackendUtilization {
    /// Extra penalty for endpoints returning errors, as a percentage of utilization.
    #[serde(default, skip_serializing_if = "is_default")]
    pub error_utilization_penalty_percent: u32,
    /// Custom ORCA metric names used to compute utilization.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub metric_names_for_computing_utilization: Vec<String>,
    /// After this long without reports an endpoint's weight reverts to the default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight_expiration_period: Option<Duration>,
    /// How long after its first report an endpoint's weight is trusted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight_stabilization_period: Option<Duration>,
    /// How often weights are recomputed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub weight_update_period: Option<Duration>,
}

/// `LocalityLoadBalancerSetting`: how traffic is spread or fails over across localities.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LocalityLoadBalancerSetting {
    /// Explicit weights per destination locality, per source locality.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub distribute: Vec<LocalityDistribute>,
    /// Region to fail over to when a region's endpoints are unhealthy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failover: Vec<LocalityFailover>,
    /// Ordered labels used to prioritise endpoints.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failover_priority: Vec<String>,
    /// Turns locality load balancing on or off (unset: mesh default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
}

/// `LocalityLoadBalancerSetting.Distribute`: weights from one source locality.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LocalityDistribute {
    /// Source locality, `region/zone/subzone`, with an optional trailing `*`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub from: String,
    /// Destination locality to weight (the weights sum to 100).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub to: BTreeMap<String, u32>,
}

/// `LocalityLoadBalancerSetting.Failover`: a region and the region it fails over to.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct LocalityFailover {
    /// The originating region.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub from: String,
    /// The region traffic fails over to.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub to: String,
}

/// Zone-aware load balancing settings.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ZoneAwareLoadBalancerSetting {
    /// Turns zone-aware load balancing on or off.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enabled: Option<bool>,
    /// Region to fail over to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failover: Vec<LocalityFailover>,
    /// Ordered labels used to prioritise endpoints.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub failover_priority: Vec<String>,
    /// Minimum hosts in the local region for zone awareness to apply (at least 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_cluster_size: Option<u32>,
}

/// `WarmupConfiguration`: slow start for newly added endpoints.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WarmupConfiguration {
    /// How long the warmup lasts (required, at least 1ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration: Option<Duration>,
    /// Traffic share a new endpoint starts with, 0–100.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub minimum_percent: Option<f64>,
    /// How fast traffic ramps up (≥ 0; 1 is linear).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub aggression: Option<f64>,
}

/// `ConnectionPoolSettings`: limits on upstream connections and requests.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ConnectionPoolSettings {
    /// Settings common to TCP and HTTP.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp: Option<TcpSettings>,
    /// HTTP connection pool settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http: Option<HttpSettings>,
}

/// `ConnectionPoolSettings.TCPSettings`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpSettings {
    /// Maximum HTTP/1 or TCP connections to a destination host.
    #[serde(default, skip_serializing_if = "is_default")]
    pub max_connections: i32,
    /// TCP connect timeout.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_timeout: Option<Duration>,
    /// TCP keepalive on upstream sockets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_keepalive: Option<TcpKeepalive>,
    /// Maximum lifetime of a connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_connection_duration: Option<Duration>,
    /// Idle timeout of TCP connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<Duration>,
}

/// `ConnectionPoolSettings.TCPSettings.TcpKeepalive`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpKeepalive {
    /// Unanswered probes before the connection is dead.
    #[serde(default, skip_serializing_if = "is_default")]
    pub probes: u32,
    /// Idle time before probes start.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<Duration>,
    /// Time between probes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
}

/// `ConnectionPoolSettings.HTTPSettings`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpSettings {
    /// Maximum requests queued waiting for a connection.
    #[serde(default, skip_serializing_if = "is_default")]
    pub http1_max_pending_requests: i32,
    /// Maximum active requests to a destination.
    #[serde(default, skip_serializing_if = "is_default")]
    pub http2_max_requests: i32,
    /// Maximum requests per connection (1 disables keep-alive).
    #[serde(default, skip_serializing_if = "is_default")]
    pub max_requests_per_connection: i32,
    /// Maximum outstanding retries to all hosts.
    #[serde(default, skip_serializing_if = "is_default")]
    pub max_retries: i32,
    /// Idle timeout of pooled connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub idle_timeout: Option<Duration>,
    /// Whether HTTP/1.1 connections are upgraded to HTTP/2.
    #[serde(default, skip_serializing_if = "is_default")]
    pub h2_upgrade_policy: H2UpgradePolicy,
    /// Keep the client's protocol on upstream connections.
    #[serde(default, skip_serializing_if = "is_default")]
    pub use_client_protocol: bool,
    /// Maximum concurrent streams per HTTP/2 connection.
    #[serde(default, skip_serializing_if = "is_default")]
    pub max_concurrent_streams: i32,
    /// HTTP/2 PING keepalive on upstream connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http2_keep_alive: Option<Http2KeepAlive>,
}

string_enum! {
    /// `ConnectionPoolSettings.HTTPSettings.H2UpgradePolicy`.
    pub enum H2UpgradePolicy {
        /// Use the mesh-wide default.
        Default = "DEFAULT",
        /// Never upgrade to HTTP/2.
        DoNotUpgrade = "DO_NOT_UPGRADE",
        /// Upgrade to HTTP/2.
        Upgrade = "UPGRADE",
    }
}

/// `ConnectionPoolSettings.HTTPSettings.HTTP2KeepAlive`: HTTP/2 PING settings.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Http2KeepAlive {
    /// PING interval.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
    /// How long to wait for a PING reply before closing the connection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
}

/// `OutlierDetection`: circuit breaking by ejecting failing hosts.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OutlierDetection {
    /// Deprecated: use `consecutiveGatewayErrors` or `consecutive5xxErrors`.
    #[serde(default, skip_serializing_if = "is_default")]
    pub consecutive_errors: i32,
    /// Count locally originated failures separately from upstream errors.
    #[serde(default, skip_serializing_if = "is_default")]
    pub split_external_local_origin_errors: bool,
    /// Consecutive local-origin failures before ejection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_local_origin_failures: Option<u32>,
    /// Consecutive gateway errors (502/503/504) before ejection.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub consecutive_gateway_errors: Option<u32>,
    /// Consecutive 5xx errors before ejection.
    #[serde(
        default,
        rename = "consecutive5xxErrors",
        skip_serializing_if = "Option::is_none"
    )]
    pub consecutive_5xx_errors: Option<u32>,
    /// Time between ejection sweeps.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub interval: Option<Duration>,
    /// Minimum ejection time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_ejection_time: Option<Duration>,
    /// Maximum percentage of hosts that may be ejected.
    #[serde(default, skip_serializing_if = "is_default")]
    pub max_ejection_percent: i32,
    /// Outlier detection only runs while this percentage of hosts is healthy.
    #[serde(default, skip_serializing_if = "is_default")]
    pub min_health_percent: i32,
    /// HTTP status codes (100–599) counted as errors.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub outlier_detection_http_error_codes: Vec<u32>,
}

/// `ClientTLSSettings`: TLS on connections to the upstream.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ClientTlsSettings {
    /// Whether and how connections are secured.
    #[serde(default, skip_serializing_if = "is_default")]
    pub mode: ClientTlsMode,
    /// Client certificate file (MUTUAL without credentialName).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub client_certificate: String,
    /// Client private key file (MUTUAL without credentialName).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub private_key: String,
    /// CA certificates file to verify the server.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ca_certificates: String,
    /// Secret (or `configmap://`) holding the client's certificates.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub credential_name: String,
    /// Names the server certificate must carry.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subject_alt_names: Vec<String>,
    /// SNI presented to the server.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sni: String,
    /// Skip verifying the server's certificate chain and names.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure_skip_verify: Option<bool>,
    /// Certificate revocation list file.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ca_crl: String,
}

string_enum! {
    /// `ClientTLSSettings.TLSmode`.
    pub enum ClientTlsMode {
        /// Plain text.
        Disable = "DISABLE",
        /// TLS to the upstream.
        Simple = "SIMPLE",
        /// Mutual TLS with given client certificates.
        Mutual = "MUTUAL",
        /// Mutual TLS with Istio's workload certificates.
        IstioMutual = "ISTIO_MUTUAL",
    }
}

// ---------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------

impl Validate for DestinationRule {
    fn validate(&self, v: &mut Validator<'_>) {
        if self.host.is_empty() {
            v.required("host");
        } else {
            v.field("host", |v| check_wildcard_host(v, &self.host));
        }
        if let Some(policy) = &self.traffic_policy {
            v.check("trafficPolicy", &**policy);
        }
        let mut names: HashSet<String> = HashSet::new();
        v.each("subsets", &self.subsets, |v, subset| {
            if !subset.name.is_empty() && !names.insert(subset.name.clone()) {
                v.error_at("name", format!("duplicate subset names: {}", subset.name));
            }
            subset.validate(v);
        });
        check_export_to(v, &self.export_to);
        v.field("exportTo", |v| {
            if self.export_to.iter().any(|e| e == "~") {
                v.error("exportTo ~ (none) is not allowed for Istio configuration objects");
            }
            if self.workload_selector.is_some() && !self.export_to.is_empty() {
                let ns = v.namespace();
                let keys: HashSet<&str> = self
                    .export_to
                    .iter()
                    .map(|e| if e == "." { ns } else { e.as_str() })
                    .collect();
                if !keys.contains(ns) {
                    v.error("destination rule with workload selector cannot have exportTo beyond current namespace");
                } else if keys.len() > 1 {
                    v.error("destination rule with workload selector cannot have multiple entries in exportTo");
                }
            }
        });
        if let Some(selector) = &self.workload_selector {
            v.field("workloadSelector", |v| {
                check_workload_selector(v, selector);
                check_max_items(v, "matchLabels", selector.match_labels.len(), 4096);
                for (key, value) in &selector.match_labels {
                    v.field("matchLabels", |v| {
                        v.key(key, |v| check_max_len(v, value, 63))
                    });
                }
                if selector.match_labels.is_empty() {
                    v.warn("workload selector specified without labels");
                }
            });
        }
    }
}

impl Validate for Subset {
    fn validate(&self, v: &mut Validator<'_>) {
        if self.name.is_empty() {
            v.error_at("name", "Required value: subset name cannot be empty");
        } else if !is_istio_label(&self.name) {
            v.error_at("name", format!("subset name is invalid: {}", self.name));
        }
        v.field("labels", |v| check_labels(v, &self.labels));
        if let Some(policy) = &self.traffic_policy {
            v.check("trafficPolicy", &**policy);
        }
    }
}

impl Validate for TrafficPolicy {
    fn validate(&self, v: &mut Validator<'_>) {
        if self.outlier_detection.is_none()
            && self.connection_pool.is_none()
            && self.load_balancer.is_none()
            && self.tls.is_none()
            && self.port_level_settings.is_empty()
            && self.tunnel.is_none()
            && self.proxy_protocol.is_none()
            && self.retry_budget.is_none()
        {
            v.error("traffic policy must have at least one field");
            return;
        }
        if self.tunnel.is_some() && self.proxy_protocol.is_some() {
            v.error("tunnel and proxyProtocol must not be set together");
        }
        v.check_opt("outlierDetection", &self.outlier_detection);
        v.check_opt("connectionPool", &self.connection_pool);
        if let Some(lb) = &self.load_balancer {
            v.field("loadBalancer", |v| {
                check_load_balancer(v, lb, self.outlier_detection.is_some())
            });
        }
        v.check_opt("tls", &self.tls);
        check_max_items(v, "portLevelSettings", self.port_level_settings.len(), 4096);
        v.each("portLevelSettings", &self.port_level_settings, |v, p| {
            p.validate(v)
        });
        v.check_opt("tunnel", &self.tunnel);
        v.check_opt("retryBudget", &self.retry_budget);
    }
}

impl Validate for PortTrafficPolicy {
    fn validate(&self, v: &mut Validator<'_>) {
        if self.port.is_none() {
            v.error_at(
                "port",
                "Required value: portTrafficPolicy must have valid port",
            );
        }
        if self.outlier_detection.is_none()
            && self.connection_pool.is_none()
            && self.load_balancer.is_none()
            && self.tls.is_none()
        {
            v.error("port traffic policy must have at least one field");
            return;
        }
        v.check_opt("outlierDetection", &self.outlier_detection);
        v.check_opt("connectionPool", &self.connection_pool);
        if let Some(lb) = &self.load_balancer {
            v.field("loadBalancer", |v| {
                check_load_balancer(v, lb, self.outlier_detection.is_some())
            });
        }
        v.check_opt("tls", &self.tls);
    }
}

impl Validate for TunnelSettings {
    fn validate(&self, v: &mut Validator<'_>) {
        if !matches!(self.protocol.as_str(), "" | "CONNECT" | "POST") {
            v.error_at(
                "protocol",
                "tunnel protocol must be \"CONNECT\" or \"POST\"",
            );
        }
        if self.target_host.is_empty() {
            v.required("targetHost");
        } else if let Some(e) = fqdn_error(&self.target_host)
            && self.target_host.parse::<std::net::IpAddr>().is_err()
        {
            v.error_at(
                "targetHost",
                format!(
                    "tunnel target host must be valid FQDN or IP address: {e}; {} is not a valid IP",
                    self.target_host
                ),
            );
        }
        if self.target_port == 0 {
            v.required("targetPort");
        } else if self.target_port > 65535 {
            v.error_at(
                "targetPort",
                format!(
                    "tunnel target port is invalid: port number {} must be in the range 1..65535",
                    self.target_port
                ),
            );
        }
    }
}

impl Validate for RetryBudget {
    fn validate(&self, v: &mut Validator<'_>) {
        if let Some(percent) = self.percent {
            check_range(v, "percent", percent, 0.0, 100.0);
        }
        if let Some(d) = self.budget_interval {
            v.field("budgetInterval", |v| check_proto_duration(v, d));
        }
    }
}

impl Validate for OutlierDetection {
    fn validate(&self, v: &mut Validator<'_>) {
        if let Some(d) = self.base_ejection_time {
            v.field("baseEjectionTime", |v| check_proto_duration(v, d));
        }
        if self.consecutive_errors != 0 {
            v.warn_at(
                "consecutiveErrors",
                "outlier detection consecutive errors is deprecated, use consecutiveGatewayErrors or consecutive5xxErrors instead",
            );
        }
        if !self.split_external_local_origin_errors
            && self.consecutive_local_origin_failures.unwrap_or(0) > 0
        {
            v.error_at(
                "consecutiveLocalOriginFailures",
                "outlier detection consecutive local origin failures is specified, but split external local origin errors is set to false",
            );
        }
        if let Some(d) = self.interval {
            v.field("interval", |v| check_proto_duration(v, d));
        }
        for (name, value) in [
            ("maxEjectionPercent", self.max_ejection_percent),
            ("minHealthPercent", self.min_health_percent),
        ] {
            if !(0..=100).contains(&value) {
                v.error_at(name, format!("percentage {value} is not in range 0..100"));
            }
        }
        v.each("outlierDetectionHttpErrorCodes", &self.outlier_detection_http_error_codes, |v, code| {
            let path = v.path().to_owned();
            if *code < 100 {
                v.error(format!("Invalid value: {code}: {path} in body should be greater than or equal to 100"));
            } else if *code > 599 {
                v.error(format!("Invalid value: {code}: {path} in body should be less than or equal to 599"));
            }
        });
    }
}

impl Validate for ConnectionPoolSettings {
    fn validate(&self, v: &mut Validator<'_>) {
        if self.http.is_none() && self.tcp.is_none() {
            v.error("connection pool must have at least one field");
            return;
        }
        if let Some(http) = &self.http {
            v.field("http", |v| {
                for (name, value, what) in [
                    (
                        "http1MaxPendingRequests",
                        http.http1_max_pending_requests,
                        "http1 max pending requests",
                    ),
                    (
                        "http2MaxRequests",
                        http.http2_max_requests,
                        "http2 max requests",
                    ),
                    (
                        "maxRequestsPerConnection",
                        http.max_requests_per_connection,
                        "max requests per connection",
                    ),
                    ("maxRetries", http.max_retries, "max retries"),
                    (
                        "maxConcurrentStreams",
                        http.max_concurrent_streams,
                        "max concurrent streams",
                    ),
                ] {
                    if value < 0 {
                        v.error_at(name, format!("{what} must be non-negative"));
                    }
                }
                if let Some(d) = http.idle_timeout {
                    v.field("idleTimeout", |v| check_proto_duration(v, d));
                }
                if http.h2_upgrade_policy == H2UpgradePolicy::Upgrade && http.use_client_protocol {
                    v.error_at(
                        "useClientProtocol",
                        "use client protocol must not be true when H2UpgradePolicy is UPGRADE",
                    );
                }
                if let Some(ka) = &http.http2_keep_alive {
                    v.field("http2KeepAlive", |v| {
                        for (name, d) in [("interval", ka.interval), ("timeout", ka.timeout)] {
                            if let Some(d) = d {
                                v.field(name, |v| check_proto_duration(v, d));
                            }
                        }
                    });
                }
            });
        }
        if let Some(tcp) = &self.tcp {
            v.field("tcp", |v| {
                if tcp.max_connections < 0 {
                    v.error_at("maxConnections", "max connections must be non-negative");
                }
                for (name, d) in [
                    ("connectTimeout", tcp.connect_timeout),
                    ("maxConnectionDuration", tcp.max_connection_duration),
                    ("idleTimeout", tcp.idle_timeout),
                ] {
                    if let Some(d) = d {
                        v.field(name, |v| check_proto_duration(v, d));
                    }
                }
                if let Some(ka) = &tcp.tcp_keepalive {
                    v.field("tcpKeepalive", |v| {
                        for (name, d) in [("time", ka.time), ("interval", ka.interval)] {
                            if let Some(d) = d {
                                v.field(name, |v| check_proto_duration(v, d));
                            }
                        }
                    });
                }
            });
        }
    }
}

/// The topology labels `failoverPriority` may not use together with `failover`.
const TOPOLOGY_LABELS: [&str; 3] = [
    "topology.kubernetes.io/region",
    "topology.kubernetes.io/zone",
    "topology.istio.io/subzone",
];

fn check_load_balancer(v: &mut Validator<'_>, lb: &LoadBalancerSettings, has_outlier: bool) {
    let policies = usize::from(lb.simple.is_some())
        + usize::from(lb.consistent_hash.is_some())
        + usize::from(lb.backend_utilization.is_some());
    if policies > 1 {
        v.error("Invalid value: \"object\": must validate one and only one schema (oneOf): only one of simple, consistentHash or backendUtilization may be set");
    }
    if let Some(hash) = &lb.consistent_hash {
        v.field("consistentHash", |v| check_consistent_hash(v, hash));
    }
    if let Some(locality) = &lb.locality_lb_setting {
        v.field("localityLbSetting", |v| {
            check_locality_lb(v, locality, has_outlier)
        });
    }
    if let Some(zone) = &lb.zone_aware_lb_setting {
        v.field("zoneAwareLbSetting", |v| {
            if let Some(size) = zone.min_cluster_size {
                check_range(v, "minClusterSize", size, 1, u32::MAX);
            }
        });
    }
    if let Some(d) = lb.warmup_duration_secs {
        v.field("warmupDurationSecs", |v| check_proto_duration(v, d));
    }
    if let Some(warmup) = &lb.warmup {
        v.field("warmup", |v| {
            match warmup.duration {
                None => v.required("duration"),
                Some(d) => v.field("duration", |v| check_proto_duration(v, d)),
            }
            if let Some(p) = warmup.minimum_percent {
                check_range(v, "minimumPercent", p, 0.0, 100.0);
            }
            if let Some(a) = warmup.aggression {
                check_range(v, "aggression", a, 0.0, f64::MAX);
            }
        });
    }
}

fn check_consistent_hash(v: &mut Validator<'_>, hash: &ConsistentHashLb) {
    let keys = usize::from(hash.http_header_name.is_some())
        + usize::from(hash.http_cookie.is_some())
        + usize::from(hash.use_source_ip.is_some())
        + usize::from(hash.http_query_parameter_name.is_some());
    if keys > 1 {
        v.error("Invalid value: \"object\": must validate one and only one schema (oneOf): only one of httpHeaderName, httpCookie, useSourceIp or httpQueryParameterName may be set");
    }
    let algorithms = usize::from(hash.ring_hash.is_some()) + usize::from(hash.maglev.is_some());
    if algorithms > 1 {
        v.error("Invalid value: \"object\": must validate one and only one schema (oneOf): only one of ringHash or maglev may be set");
    }
    if let Some(cookie) = &hash.http_cookie {
        v.field("httpCookie", |v| {
            if cookie.name.is_empty() {
                v.error_at("name", "Required value: name required for HttpCookie");
            }
            v.each("attributes", &cookie.attributes, |v, a| {
                if a.name.is_empty() {
                    v.required("name");
                }
            });
        });
    }
    if hash.minimum_ring_size != 0 {
        v.warn_at(
            "minimumRingSize",
            "consistent hash MinimumRingSize is deprecated, use ConsistentHashLB's RingHash configuration instead",
        );
        if algorithms > 0 {
            v.error("only one of MinimumRingSize or Maglev/Ringhash can be specified");
        }
    }
    if let Some(maglev) = &hash.maglev {
        v.field("maglev", |v| {
            let size = maglev.table_size;
            if size == 0 {
                v.error_at("tableSize", "tableSize must be set for maglev");
            } else {
                if size >= 5_000_011 {
                    v.error_at(
                        "tableSize",
                        "tableSize must be less than 5000011 for maglev",
                    );
                }
                if !is_prime(size) {
                    v.error_at("tableSize", "tableSize must be a prime number for maglev");
                }
            }
        });
    }
}

/// Primality as Envoy tests Maglev table sizes.
fn is_prime(x: u64) -> bool {
    if x != 0 && x < 4 {
        return true;
    }
    if x & 1 == 0 {
        return false;
    }
    let mut factor = 3;
    while factor * factor <= x {
        if x.is_multiple_of(factor) {
            return false;
        }
        factor += 2;
    }
    true
}

fn check_locality_lb(v: &mut Validator<'_>, lb: &LocalityLoadBalancerSetting, has_outlier: bool) {
    if !lb.distribute.is_empty() && !lb.failover.is_empty() {
        v.error("can not simultaneously specify 'distribute' and 'failover'");
        return;
    }
    if !lb.failover.is_empty()
        && let Some(label) = lb
            .failover_priority
            .iter()
            .find(|l| TOPOLOGY_LABELS.contains(&l.as_str()))
    {
        v.error_at(
            "failoverPriority",
            format!("can not simultaneously set 'failover' and topology label '{label}' in 'failover_priority'"),
        );
        return;
    }
    let mut failed = false;
    v.each("distribute", &lb.distribute, |v, d| {
        if failed {
            return;
        }
        if d.to.values().any(|w| !(1..=100).contains(w)) {
            v.error_at("to", "locality weight must be in range [1, 100]");
            failed = true;
            return;
        }
        let total: u64 = d.to.values().map(|w| u64::from(*w)).sum();
        if total != 100 {
            v.error_at("to", format!("total locality weight {total} != 100"));
            failed = true;
            return;
        }
        if let Some(e) = localities_error(d.to.keys().map(String::as_str)) {
            v.error_at("to", e);
        }
    });
    if failed {
        return;
    }
    if let Some(e) = localities_error(lb.distribute.iter().map(|d| d.from.as_str())) {
        v.error_at("distribute", e);
    }
    if (!lb.failover.is_empty() || !lb.failover_priority.is_empty()) && !has_outlier {
        v.warn("outlier detection policy must be provided for failover");
    }
    v.each("failover", &lb.failover, |v, f| {
        if f.from == f.to {
            v.error("locality lb failover settings must specify different regions");
        }
        if f.from.contains('/') || f.to.contains('/') {
            v.error("locality lb failover only specify region");
        }
        if f.from.contains('*') || f.to.contains('*') {
            v.error("locality lb failover region should not contain '*' wildcard");
        }
    });
}

/// Checks a list of localities (`region/zone/subzone`, trailing `*` allowed) for bad
/// wildcards, empty parts and overlaps, as Istio's `validateLocalities`.
fn localities_error<'a>(localities: impl Iterator<Item = &'a str>) -> Option<String> {
    // region -> zone -> subzones; "*" marks "everything below".
    let mut seen: BTreeMap<&str, BTreeMap<&str, HashSet<&str>>> = BTreeMap::new();
    for locality in localities {
        let stars = locality.matches('*').count();
        if stars > 1 || (stars == 1 && !locality.ends_with('*')) {
            return Some(format!(
                "locality {locality} wildcard '*' number can not exceed 1 and must be in the end"
            ));
        }
        let overlap = || {
            Some(format!(
                "locality {locality} overlap with previous specified ones"
            ))
        };
        if seen.contains_key("*") {
            return overlap();
        }
        let parts: Vec<&str> = locality.splitn(3, '/').collect();
        if parts.iter().any(|p| p.is_empty()) {
            return Some(format!(
                "locality {locality} must not contain empty region/zone/subzone info"
            ));
        }
        match parts[..] {
            [region] => {
                if seen.contains_key(region) {
                    return overlap();
                }
                seen.insert(region, BTreeMap::from([("*", HashSet::from(["*"]))]));
            }
            [region, zone] => {
                let zones = seen.entry(region).or_default();
                if zones.contains_key("*") || zones.contains_key(zone) {
                    return overlap();
                }
                zones.insert(zone, HashSet::from(["*"]));
            }
            [region, zone, subzone] => {
                let zones = seen.entry(region).or_default();
                if zones.contains_key("*") {
                    return overlap();
                }
                let subzones = zones.entry(zone).or_default();
                if subzones.contains("*") || !subzones.insert(subzone) {
                    return overlap();
                }
            }
            _ => {}
        }
    }
    None
}

impl Validate for ClientTlsSettings {
    fn validate(&self, v: &mut Validator<'_>) {
        let ns = v.namespace();
        if let Some(resource) = self.credential_name.strip_prefix("configmap://") {
            let parsed = match resource.split('/').collect::<Vec<_>>()[..] {
                [name] if !name.is_empty() => Ok(ns),
                [namespace, name] if !namespace.is_empty() && !name.is_empty() => Ok(namespace),
                _ => Err(()),
            };
            match parsed {
                Err(()) => v.error_at(
                    "credentialName",
                    format!("invalid configmap:// credentialName: invalid resource name {:?}, expected configmap://[namespace/]name", self.credential_name),
                ),
                Ok(namespace) if namespace != ns => v.error_at(
                    "credentialName",
                    format!("invalid configmap:// credentialName: namespace must match the configuration namespace {ns:?}"),
                ),
                Ok(_) => {}
            }
        }
        let simple = self.mode == ClientTlsMode::Simple;
        let mutual = self.mode == ClientTlsMode::Mutual;
        if self.insecure_skip_verify == Some(true) {
            let sans = !self.subject_alt_names.is_empty();
            if simple
                && (!self.ca_certificates.is_empty() || !self.credential_name.is_empty() || sans)
            {
                v.error("cannot specify CaCertificates or CredentialName or SubjectAltNames when InsecureSkipVerify is set true");
            }
            if mutual && (!self.ca_certificates.is_empty() || sans) {
                v.error("cannot specify CaCertificates or SubjectAltNames when InsecureSkipVerify is set true");
            }
        }
        if (simple || mutual) && !self.credential_name.is_empty() {
            if !self.client_certificate.is_empty()
                || !self.ca_certificates.is_empty()
                || !self.private_key.is_empty()
                || !self.ca_crl.is_empty()
            {
                v.error("cannot specify client certificates or CA certificate or CA CRL If credentialName is set");
            }
            return;
        }
        if mutual {
            if self.client_certificate.is_empty() {
                v.error_at(
                    "clientCertificate",
                    "client certificate required for mutual tls",
                );
            }
            if self.private_key.is_empty() {
                v.error_at("privateKey", "private key required for mutual tls");
            }
        }
    }
}

// ---------------------------------------------------------------------------------------
// Shared checks for the kinds in this module's sibling files (schema limits as the API
// server words them, and Istio's duration rule).
// ---------------------------------------------------------------------------------------

#[cfg(test)]
mod tests {
    use crate::testing::{load, messages};
    use crate::validate::{Issue, Severity};

    fn issues(yaml: &str) -> Vec<Issue> {
        load(yaml).expect("loads").validate()
    }

    fn errors(yaml: &str) -> Vec<String> {
        messages(&issues(yaml), Severity::Error)
    }

    fn warnings(yaml: &str) -> Vec<String> {
        messages(&issues(yaml), Severity::Warning)
    }

    fn dr(spec: &str) -> String {
        format!(
            "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: r\n  namespace: ns\nspec:\n{}",
            spec.lines().map(|l| format!("  {l}\n")).collect::<String>()
        )
    }

    fn assert_error(spec: &str, path: &str, message: &str) {
        let errs = errors(&dr(spec));
        assert!(
            errs.iter()
                .any(|e| e.starts_with(path) && e.contains(message)),
            "expected {path}: …{message}… in {errs:#?}"
        );
    }

    fn assert_valid(spec: &str) {
        let errs = errors(&dr(spec));
        assert!(errs.is_empty(), "{errs:#?}");
    }

    #[test]
    fn full_destination_rule_round_trips_and_validates() {
        let spec = r#"
host: reviews.prod.svc.cluster.local
exportTo: ["."]
workloadSelector:
  matchLabels:
    app: reviews
trafficPolicy:
  loadBalancer:
    consistentHash:
      httpCookie:
        name: user
        path: /
        ttl: 10s
        attributes:
        - name: SameSite
          value: Strict
      ringHash:
        minimumRingSize: 1024
    localityLbSetting:
      enabled: true
      distribute:
      - from: us-west/zone1/*
        to:
          us-west/zone1/*: 80
          us-west/zone2/*: 20
    warmup:
      duration: 60s
      minimumPercent: 10
      aggression: 1.5
  connectionPool:
    tcp:
      maxConnections: 100
      connectTimeout: 30ms
      idleTimeout: 1h
      maxConnectionDuration: 10m
      tcpKeepalive:
        time: 7200s
        interval: 75s
        probes: 9
    http:
      http1MaxPendingRequests: 10
      http2MaxRequests: 100
      maxRequestsPerConnection: 10
      maxRetries: 3
      idleTimeout: 30s
      h2UpgradePolicy: UPGRADE
      maxConcurrentStreams: 100
      http2KeepAlive:
        interval: 15s
        timeout: 5s
  outlierDetection:
    consecutive5xxErrors: 7
    consecutiveGatewayErrors: 3
    splitExternalLocalOriginErrors: true
    consecutiveLocalOriginFailures: 2
    interval: 5m
    baseEjectionTime: 15m
    maxEjectionPercent: 50
    minHealthPercent: 10
    outlierDetectionHttpErrorCodes: [500, 503]
  tls:
    mode: SIMPLE
    credentialName: client-cert
    sni: reviews.example.com
    subjectAltNames: [reviews.example.com]
  portLevelSettings:
  - port:
      number: 9080
    loadBalancer:
      simple: LEAST_REQUEST
    tls:
      mode: ISTIO_MUTUAL
  proxyProtocol:
    version: V2
  retryBudget:
    percent: 20
    minRetryConcurrency: 3
    budgetInterval: 10s
subsets:
- name: v1
  labels:
    version: v1
- name: v2
  labels:
    version: v2
  trafficPolicy:
    loadBalancer:
      simple: ROUND_ROBIN
"#;
        // `load` also checks the round trip.
        let object = load(&dr(spec)).expect("loads");
        assert!(object.validate().is_empty(), "{:#?}", object.validate());
    }

    #[test]
    fn host_is_required_and_checked() {
        assert_error(
            "trafficPolicy:\n  tls:\n    mode: ISTIO_MUTUAL",
            "spec.host",
            "Required value",
        );
        assert_error("host: foo.*.com", "spec.host", "invalid");
        assert_valid("host: \"*.example.com\"");
        assert_valid("host: reviews");
    }

    #[test]
    fn traffic_policy_needs_a_field() {
        assert_error(
            "host: r\ntrafficPolicy: {}",
            "spec.trafficPolicy",
            "traffic policy must have at least one field",
        );
        assert_error(
            "host: r\nsubsets:\n- name: v1\n  trafficPolicy: {}",
            "spec.subsets[0].trafficPolicy",
            "at least one field",
        );
        assert_error(
            "host: r\ntrafficPolicy:\n  tunnel:\n    targetHost: example.com\n    targetPort: 8443\n  proxyProtocol:\n    version: V1",
            "spec.trafficPolicy",
            "tunnel and proxyProtocol must not be set together",
        );
    }

    #[test]
    fn subsets_follow_istio() {
        // Istio's DNS label check accepts uppercase letters.
        assert_valid("host: r\nsubsets:\n- name: V1");
        assert_error(
            "host: r\nsubsets:\n- name: v1\n- name: v1",
            "spec.subsets[1].name",
            "duplicate subset names: v1",
        );
        assert_error(
            "host: r\nsubsets:\n- labels: {a: b}",
            "spec.subsets[0].name",
            "Required value",
        );
        assert_error(
            "host: r\nsubsets:\n- name: V_1",
            "spec.subsets[0].name",
            "subset name is invalid: V_1",
        );
        assert_error(
            "host: r\nsubsets:\n- name: v1\n  labels:\n    \"bad key\": x",
            "spec.subsets[0].labels[bad key]",
            "invalid tag key",
        );
    }

    #[test]
    fn load_balancer_rules() {
        assert_error(
            "host: r\ntrafficPolicy:\n  loadBalancer:\n    simple: RANDOM\n    consistentHash:\n      useSourceIp: true",
            "spec.trafficPolicy.loadBalancer",
            "one and only one schema",
        );
        assert_error(
            "host: r\ntrafficPolicy:\n  loadBalancer:\n    consistentHash:\n      httpHeaderName: x\n      useSourceIp: true",
            "spec.trafficPolicy.loadBalancer.consistentHash",
            "only one of httpHeaderName",
        );
        assert_error(
            "host: r\ntrafficPolicy:\n  loadBalancer:\n    consistentHash:\n      httpCookie:\n        ttl: 0s",
            "spec.trafficPolicy.loadBalancer.consistentHash.httpCookie.name",
            "name required for HttpCookie",
        );
        assert_error(
            "host: r\ntrafficPolicy:\n  loadBalancer:\n    consistentHash:\n      useSourceIp: true\n      minimumRingSize: 10\n      maglev:\n        tableSize: 65537",
            "spec.trafficPolicy.loadBalancer.consistentHash",
            "only one of MinimumRingSize or Maglev/Ringhash can be specified",
        );
        for (size, message) in [
            (0, "tableSize must be set for maglev"),
            (1000, "tableSize must be a prime number for maglev"),
            (5000011, "tableSize must be less than 5000011 for maglev"),
        ] {
            assert_error(
                &format!(
                    "host: r\ntrafficPolicy:\n  loadBalancer:\n    consistentHash:\n      useSourceIp: true\n      maglev:\n        tableSize: {size}"
                ),
                "spec.trafficPolicy.loadBalancer.consistentHash.maglev.tableSize",
                message,
            );
        }
        assert_valid(
            "host: r\ntrafficPolicy:\n  loadBalancer:\n    consistentHash:\n      httpQueryParameterName: u\n      maglev:\n        tableSize: 65537",
        );
        let warns = warnings(&dr(
            "host: r\ntrafficPolicy:\n  loadBalancer:\n    consistentHash:\n      useSourceIp: true\n      minimumRingSize: 10",
        ));
        assert!(
            warns
                .iter()
                .any(|w| w.contains("MinimumRingSize is deprecated")),
            "{warns:?}"
        );
        assert_error(
            "host: r\ntrafficPolicy:\n  loadBalancer:\n    warmupDurationSecs: 0s",
            "spec.trafficPolicy.loadBalancer.warmupDurationSecs",
            "greater than 1ms",
        );
        let unknown = load(&dr(
            "host: r\ntrafficPolicy:\n  loadBalancer:\n    simple: FASTEST",
        ));
        assert!(
            unknown
                .as_ref()
                .is_err_and(|e| e.contains("Unsupported value: \"FASTEST\"")),
            "{unknown:?}"
        );
    }

    #[test]
    fn warmup_schema() {
        assert_error(
            "host: r\ntrafficPolicy:\n  loadBalancer:\n    warmup:\n      duration: 300s\n      minimumPercent: 150.0",
            "spec.trafficPolicy.loadBalancer.warmup.minimumPercent",
            "Invalid value: 150",
        );
        assert_error(
            "host: r\ntrafficPolicy:\n  loadBalancer:\n    warmup:\n      minimumPercent: 5.0",
            "spec.trafficPolicy.loadBalancer.warmup.duration",
            "Required value",
        );
        assert_error(
            "host: r\ntrafficPolicy:\n  loadBalancer:\n    warmup:\n      duration: 300s\n      aggression: -0.1",
            "spec.trafficPolicy.loadBalancer.warmup.aggression",
            "Invalid value: -0.1",
        );
    }

    #[test]
    fn locality_rules() {
        let lb = |body: &str| {
            format!(
                "host: r\ntrafficPolicy:\n  outlierDetection:\n    interval: 1s\n  loadBalancer:\n    localityLbSetting:\n{}",
                body.lines()
                    .map(|l| format!("      {l}\n"))
                    .collect::<String>()
            )
        };
        assert_error(
            &lb("distribute:\n- from: a/b/c\n  to: {a/b/c: 100}\nfailover:\n- from: a\n  to: b"),
            "spec.trafficPolicy.loadBalancer.localityLbSetting",
            "can not simultaneously specify 'distribute' and 'failover'",
        );
        assert_error(
            &lb("failover:\n- from: a\n  to: b\nfailoverPriority: [topology.kubernetes.io/zone]"),
            "spec.trafficPolicy.loadBalancer.localityLbSetting.failoverPriority",
            "can not simultaneously set 'failover' and topology label",
        );
        assert_error(
            &lb("distribute:\n- from: a/b/c\n  to: {a/b/c: 0}"),
            "spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[0].to",
            "locality weight must be in range [1, 100]",
        );
        assert_error(
            &lb("distribute:\n- from: a/b/c\n  to: {a/b/c: 60, a/b/d: 30}"),
            "spec.trafficPolicy.loadBalancer.localityLbSetting.distribute[0].to",
            "total locality weight 90 != 100",
        );
        assert_error(
            &lb("distribute:\n- from: a/*/c\n  to: {a/b/c: 100}"),
            "spec.trafficPolicy.loadBalancer.localityLbSetting.distribute",
            "wildcard '*' number can not exceed 1",
        );
        assert_error(
            &lb("distribute:\n- from: a/*\n  to: {a/b/c: 100}\n- from: a/b\n  to: {a/b/c: 100}"),
            "spec.trafficPolicy.loadBalancer.localityLbSetting.distribute",
            "overlap with previous specified ones",
        );
        assert_error(
            &lb("distribute:\n- from: a//c\n  to: {a/b/c: 100}"),
            "spec.trafficPolicy.loadBalancer.localityLbSetting.distribute",
            "must not contain empty region/zone/subzone info",
        );
        assert_error(
            &lb("failover:\n- from: a\n  to: a"),
            "spec.trafficPolicy.loadBalancer.localityLbSetting.failover[0]",
            "must specify different regions",
        );
        assert_error(
            &lb("failover:\n- from: a/b\n  to: c"),
            "spec.trafficPolicy.loadBalancer.localityLbSetting.failover[0]",
            "only specify region",
        );
        assert_error(
            &lb("failover:\n- from: a*\n  to: c"),
            "spec.trafficPolicy.loadBalancer.localityLbSetting.failover[0]",
            "should not contain '*' wildcard",
        );
        assert_valid(&lb(
            "failover:\n- from: us-east\n  to: eu-west\nfailoverPriority: [topology.istio.io/network]",
        ));
        let warns = warnings(&dr(
            "host: r\ntrafficPolicy:\n  loadBalancer:\n    localityLbSetting:\n      failoverPriority: [x]",
        ));
        assert!(
            warns
                .iter()
                .any(|w| w.contains("outlier detection policy must be provided for failover")),
            "{warns:?}"
        );
    }

    #[test]
    fn connection_pool_rules() {
        let cp = |body: &str| {
            format!(
                "host: r\ntrafficPolicy:\n  connectionPool:\n{}",
                body.lines()
                    .map(|l| format!("    {l}\n"))
                    .collect::<String>()
            )
        };
        assert_error(
            "host: r\ntrafficPolicy:\n  connectionPool: {}",
            "spec.trafficPolicy.connectionPool",
            "connection pool must have at least one field",
        );
        assert_error(
            &cp("http:\n  http1MaxPendingRequests: -1"),
            "spec.trafficPolicy.connectionPool.http.http1MaxPendingRequests",
            "must be non-negative",
        );
        assert_error(
            &cp("http:\n  maxRetries: -1"),
            "spec.trafficPolicy.connectionPool.http.maxRetries",
            "max retries must be non-negative",
        );
        assert_error(
            &cp("http:\n  maxConcurrentStreams: -1"),
            "spec.trafficPolicy.connectionPool.http.maxConcurrentStreams",
            "non-negative",
        );
        assert_error(
            &cp("http:\n  h2UpgradePolicy: UPGRADE\n  useClientProtocol: true"),
            "spec.trafficPolicy.connectionPool.http.useClientProtocol",
            "must not be true when H2UpgradePolicy is UPGRADE",
        );
        assert_error(
            &cp("http:\n  idleTimeout: 1.5ms"),
            "spec.trafficPolicy.connectionPool.http.idleTimeout",
            "only durations to ms precision",
        );
        assert_error(
            &cp("http:\n  http2KeepAlive:\n    interval: 0s"),
            "spec.trafficPolicy.connectionPool.http.http2KeepAlive.interval",
            "greater than 1ms",
        );
        assert_error(
            &cp("tcp:\n  maxConnections: -1"),
            "spec.trafficPolicy.connectionPool.tcp.maxConnections",
            "max connections must be non-negative",
        );
        assert_error(
            &cp("tcp:\n  connectTimeout: 0s"),
            "spec.trafficPolicy.connectionPool.tcp.connectTimeout",
            "greater than 1ms",
        );
        assert_error(
            &cp("tcp:\n  tcpKeepalive:\n    time: 0s"),
            "spec.trafficPolicy.connectionPool.tcp.tcpKeepalive.time",
            "greater than 1ms",
        );
    }

    #[test]
    fn outlier_detection_rules() {
        let od = |body: &str| {
            format!(
                "host: r\ntrafficPolicy:\n  outlierDetection:\n{}",
                body.lines()
                    .map(|l| format!("    {l}\n"))
                    .collect::<String>()
            )
        };
        assert_error(
            &od("maxEjectionPercent: 101"),
            "spec.trafficPolicy.outlierDetection.maxEjectionPercent",
            "percentage 101 is not in range 0..100",
        );
        assert_error(
            &od("minHealthPercent: -1"),
            "spec.trafficPolicy.outlierDetection.minHealthPercent",
            "not in range",
        );
        assert_error(
            &od("baseEjectionTime: 0s"),
            "spec.trafficPolicy.outlierDetection.baseEjectionTime",
            "greater than 1ms",
        );
        assert_error(
            &od("interval: 0s"),
            "spec.trafficPolicy.outlierDetection.interval",
            "greater than 1ms",
        );
        assert_error(
            &od("consecutiveLocalOriginFailures: 3"),
            "spec.trafficPolicy.outlierDetection.consecutiveLocalOriginFailures",
            "split external local origin errors is set to false",
        );
        assert_error(
            &od("outlierDetectionHttpErrorCodes: [600]"),
            "spec.trafficPolicy.outlierDetection.outlierDetectionHttpErrorCodes[0]",
            "less than or equal to 599",
        );
        let warns = warnings(&dr(&od("consecutiveErrors: 5")));
        assert!(
            warns
                .iter()
                .any(|w| w.contains("consecutive errors is deprecated")),
            "{warns:?}"
        );
        assert!(errors(&dr(&od("consecutiveErrors: 5"))).is_empty());
    }

    #[test]
    fn client_tls_rules() {
        let tls = |body: &str| {
            format!(
                "host: r\ntrafficPolicy:\n  tls:\n{}",
                body.lines()
                    .map(|l| format!("    {l}\n"))
                    .collect::<String>()
            )
        };
        assert_error(
            &tls("mode: MUTUAL"),
            "spec.trafficPolicy.tls.clientCertificate",
            "client certificate required for mutual tls",
        );
        assert_error(
            &tls("mode: MUTUAL"),
            "spec.trafficPolicy.tls.privateKey",
            "private key required for mutual tls",
        );
        assert_valid(&tls(
            "mode: MUTUAL\nclientCertificate: /c.pem\nprivateKey: /k.pem",
        ));
        assert_valid(&tls("mode: MUTUAL\ncredentialName: cert"));
        assert_error(
            &tls("mode: SIMPLE\ncredentialName: cert\ncaCertificates: /ca.pem"),
            "spec.trafficPolicy.tls",
            "cannot specify client certificates or CA certificate or CA CRL If credentialName is set",
        );
        assert_error(
            &tls("mode: SIMPLE\ninsecureSkipVerify: true\nsubjectAltNames: [a]"),
            "spec.trafficPolicy.tls",
            "when InsecureSkipVerify is set true",
        );
        assert_error(
            &tls(
                "mode: MUTUAL\ninsecureSkipVerify: true\ncaCertificates: /ca.pem\nclientCertificate: /c\nprivateKey: /k",
            ),
            "spec.trafficPolicy.tls",
            "cannot specify CaCertificates or SubjectAltNames",
        );
        assert_valid(&tls("mode: SIMPLE\ninsecureSkipVerify: true"));
        assert_valid(&tls("mode: SIMPLE\ncredentialName: configmap://ca"));
        assert_valid(&tls("mode: SIMPLE\ncredentialName: configmap://ns/ca"));
        assert_error(
            &tls("mode: SIMPLE\ncredentialName: configmap://other/ca"),
            "spec.trafficPolicy.tls.credentialName",
            "namespace must match the configuration namespace",
        );
    }

    #[test]
    fn port_level_and_tunnel_rules() {
        assert_error(
            "host: r\ntrafficPolicy:\n  portLevelSettings:\n  - port: {number: 80}",
            "spec.trafficPolicy.portLevelSettings[0]",
            "port traffic policy must have at least one field",
        );
        assert_error(
            "host: r\ntrafficPolicy:\n  portLevelSettings:\n  - tls: {mode: ISTIO_MUTUAL}",
            "spec.trafficPolicy.portLevelSettings[0].port",
            "portTrafficPolicy must have valid port",
        );
        let tunnel = |body: &str| {
            format!(
                "host: r\ntrafficPolicy:\n  tunnel:\n{}",
                body.lines()
                    .map(|l| format!("    {l}\n"))
                    .collect::<String>()
            )
        };
        assert_valid(&tunnel(
            "protocol: POST\ntargetHost: 10.0.0.1\ntargetPort: 8080",
        ));
        assert_error(
            &tunnel("protocol: GET\ntargetHost: a.com\ntargetPort: 80"),
            "spec.trafficPolicy.tunnel.protocol",
            "tunnel protocol must be \"CONNECT\" or \"POST\"",
        );
        assert_error(
            &tunnel("targetHost: a..com\ntargetPort: 80"),
            "spec.trafficPolicy.tunnel.targetHost",
            "tunnel target host must be valid FQDN or IP address",
        );
        assert_error(
            &tunnel("targetHost: a.com\ntargetPort: 70000"),
            "spec.trafficPolicy.tunnel.targetPort",
            "tunnel target port is invalid",
        );
        assert_error(
            &tunnel("targetHost: a.com"),
            "spec.trafficPolicy.tunnel.targetPort",
            "Required value",
        );
        assert_error(
            "host: r\ntrafficPolicy:\n  retryBudget:\n    percent: 120",
            "spec.trafficPolicy.retryBudget.percent",
            "less than or equal to 100",
        );
    }

    #[test]
    fn export_to_and_selector_rules() {
        assert_valid("host: r\nexportTo: [\".\", \"other\"]");
        assert_error(
            "host: r\nexportTo: [\"~\"]",
            "spec.exportTo",
            "exportTo ~ (none) is not allowed",
        );
        assert_error(
            "host: r\nexportTo: [\"*\", \"a\"]",
            "spec.exportTo",
            "cannot have both public",
        );
        assert_valid("host: r\nworkloadSelector:\n  matchLabels: {app: a}\nexportTo: [\".\"]");
        assert_valid("host: r\nworkloadSelector:\n  matchLabels: {app: a}\nexportTo: [ns]");
        assert_error(
            "host: r\nworkloadSelector:\n  matchLabels: {app: a}\nexportTo: [other]",
            "spec.exportTo",
            "cannot have exportTo beyond current namespace",
        );
        assert_error(
            "host: r\nworkloadSelector:\n  matchLabels: {app: a}\nexportTo: [\".\", other]",
            "spec.exportTo",
            "cannot have multiple entries in exportTo",
        );
        assert_error(
            "host: r\nworkloadSelector:\n  matchLabels: {app: \"*\"}",
            "spec.workloadSelector.matchLabels[app]",
            "wildcard",
        );
        let warns = warnings(&dr("host: r\nworkloadSelector: {}"));
        assert!(
            warns
                .iter()
                .any(|w| w.contains("workload selector specified without labels")),
            "{warns:?}"
        );
    }

    #[test]
    fn primes_match_envoy() {
        assert!(super::is_prime(2) && super::is_prime(3) && super::is_prime(65537));
        assert!(!super::is_prime(0) && !super::is_prime(9) && !super::is_prime(65536));
    }
}
