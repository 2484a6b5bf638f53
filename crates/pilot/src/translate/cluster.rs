//! CDS: the clusters a proxy needs, shaped as Istio generates them
//! (`pilot/pkg/networking/core/cluster*.go`): one outbound cluster per visible service
//! port and DestinationRule subset, the inbound clusters of the proxy's own workload,
//! and the `PassthroughCluster`, `BlackHoleCluster` and `InboundPassthroughCluster`.

pub mod hash;
mod inbound;
pub(crate) mod policy;
pub(crate) mod proto;
pub mod rules;
pub mod tls;

use std::collections::HashSet;

use mizzen_api::types::Protocol;
use mizzen_xds::pb::envoy::config::cluster::v3::{
    Cluster,
    cluster::{DiscoveryType, DnsLookupFamily, EdsClusterConfig, LbPolicy},
};
use mizzen_xds::pb::envoy::config::core::v3::{
    BindConfig, ExtraSourceAddress, HttpProtocolOptions as CommonHttpOptions, Locality,
    SocketAddress, TypedExtensionConfig, socket_address::PortSpecifier,
};
use mizzen_xds::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use mizzen_xds::pb::envoy::extensions::network::dns_resolver::cares::v3::CaresDnsResolverConfig;
use mizzen_xds::pb::envoy::extensions::upstreams::http::v3::HttpProtocolOptions;

pub use hash::hash_policies;
pub use rules::{DestinationRules, Policy, RuleRef};

use self::policy::{
    Building, HTTP_PROTOCOL_OPTIONS, apply_connection_pool, apply_h2_upgrade, apply_load_balancer,
    apply_locality_weighted, apply_outlier_detection, common_lb_config, is_http2_protocol,
    use_downstream_protocol,
};
use self::proto::{any, boolean, filter_metadata, list, number, object, seconds, string, u32v};
use self::tls::{TlsTarget, apply_tls, istio_sni};
use super::endpoint::{LoadAssignmentInput, load_assignment, locality_setting, proxy_locality};
use super::names::{
    BLACKHOLE_CLUSTER, INBOUND_PASSTHROUGH_CLUSTER, PASSTHROUGH_CLUSTER, outbound_cluster,
};
use crate::model::service::Location;
use crate::model::{NodeType, Proxy, PushContext, Resolution, Service, ServicePort};

/// Istio's default DNS refresh rate (MeshConfig `dnsRefreshRate`).
const DNS_REFRESH_RATE_SECS: i64 = 60;
/// Istio's default DNS jitter (`PILOT_DNS_JITTER_DURATION`).
const DNS_JITTER_MILLIS: u64 = 100;
/// Istio's default c-ares UDP query limit (`PILOT_DNS_CARES_UDP_MAX_QUERIES`).
const DNS_UDP_MAX_QUERIES: u32 = 100;
/// Idle timeout of passthrough clusters.
const PASSTHROUGH_IDLE_TIMEOUT_SECS: i64 = 300;
/// Source address of traffic the sidecar sends to its own workload, which capture rules
/// let through (IPv4 and IPv6).
const INBOUND_BIND_V4: &str = "127.0.0.6";
const INBOUND_BIND_V6: &str = "::6";

/// Everything a cluster builder reads, computed once per call.
struct Context<'a> {
    push: &'a PushContext,
    proxy: &'a Proxy,
    rules: DestinationRules<'a>,
    locality: Locality,
}

impl<'a> Context<'a> {
    fn new(push: &'a PushContext, proxy: &'a Proxy) -> Self {
        Context {
            push,
            proxy,
            rules: DestinationRules::new(push),
            locality: proxy_locality(push, proxy),
        }
    }
}

/// The clusters for `proxy`: its [`outbound_side`], then its [`inbound_side`].
pub fn clusters(push: &PushContext, proxy: &Proxy) -> Vec<Cluster> {
    let mut out = outbound_side(push, proxy);
    out.extend(inbound_side(push, proxy));
    out
}

/// The clusters that do not depend on the proxy's own workload: outbound ones for every
/// visible service, then `BlackHoleCluster` and (sidecars) `PassthroughCluster`. Names
/// are unique; on a clash the first wins, as in Istio.
pub fn outbound_side(push: &PushContext, proxy: &Proxy) -> Vec<Cluster> {
    let ctx = Context::new(push, proxy);
    let mut out = Vec::new();
    for service in push.visible_services(proxy) {
        outbound_clusters(&ctx, service, &mut out);
    }
    out.push(blackhole_cluster());
    if proxy.node_type == NodeType::Sidecar {
        out.push(passthrough_cluster());
    }
    let mut seen = HashSet::new();
    out.retain(|c| seen.insert(c.name.clone()));
    out
}

/// A sidecar's clusters for its own workload: the inbound clusters and
/// `InboundPassthroughCluster` (none for gateways).
pub fn inbound_side(push: &PushContext, proxy: &Proxy) -> Vec<Cluster> {
    if proxy.node_type != NodeType::Sidecar {
        return Vec::new();
    }
    let mut out = inbound::clusters(&Context::new(push, proxy));
    out.push(inbound_passthrough_cluster(proxy));
    out
}

/// The clusters of every port of `service` (UDP excepted): the service's and one per
/// subset of its DestinationRule.
fn outbound_clusters(ctx: &Context<'_>, service: &Service, out: &mut Vec<Cluster>) {
    let rule = ctx.rules.for_service(ctx.proxy, service);
    let accounts = service_accounts(ctx.push, service);
    for port in &service.ports {
        if port.protocol == Some(Protocol::Udp) {
            continue;
        }
        let discovery = discovery_type(ctx.proxy, service);
        let name = outbound_cluster(port.port, "", service.hostname.as_str());
        let policy = Policy::for_cluster(rule, "", port.port);
        let Some(mut base) = outbound_base(ctx, service, port, &name, discovery, None, &policy)
        else {
            continue;
        };
        let target = TlsTarget {
            service_accounts: &accounts,
            istio_sni: istio_sni(port.port, "", service.hostname.as_str()),
            mesh_external: service.location == Location::MeshExternal,
            auto_mtls: ctx.push.mesh.enable_auto_mtls,
            sidecar: ctx.proxy.node_type == NodeType::Sidecar,
            rule_has_selector: rule.is_some_and(|r| r.spec.workload_selector.is_some()),
        };
        apply_outbound_policy(&mut base, &policy, &target);
        if service.location == Location::MeshExternal {
            filter_metadata(&mut base.cluster.metadata, "istio")
                .fields
                .insert("external".into(), boolean(true));
        }
        if let Some(rule) = rule {
            add_rule_metadata(&mut base, rule, None);
        }
        let base_type = base.discovery_type().unwrap_or(discovery);
        out.push(finish(base));
        let Some(rule) = rule else { continue };
        for subset in &rule.spec.subsets {
            let subset_policy = Policy::for_cluster(Some(rule), &subset.name, port.port);
            let passthrough = subset
                .traffic_policy
                .as_ref()
                .and_then(|p| p.load_balancer.as_ref())
                .and_then(|lb| lb.simple)
                == Some(mizzen_api::networking::SimpleLb::Passthrough);
            let subset_type = if passthrough {
                DiscoveryType::OriginalDst
            } else {
                base_type
            };
            let name = outbound_cluster(port.port, &subset.name, service.hostname.as_str());
            let Some(mut b) = outbound_base(
                ctx,
                service,
                port,
                &name,
                subset_type,
                Some(&subset.labels),
                &subset_policy,
            ) else {
                continue;
            };
            let target = TlsTarget {
                istio_sni: istio_sni(port.port, &subset.name, service.hostname.as_str()),
                ..target
            };
            apply_outbound_policy(&mut b, &subset_policy, &target);
            add_rule_metadata(&mut b, rule, Some(&subset.name));
            out.push(finish(b));
        }
    }
}

/// How Istio discovers a service's endpoints: EDS, DNS, or the original destination
/// (which gateways cannot use, so they get EDS).
fn discovery_type(proxy: &Proxy, service: &Service) -> DiscoveryType {
    match service.resolution {
        Resolution::ClientSideLb => DiscoveryType::Eds,
        Resolution::Dns => DiscoveryType::StrictDns,
        Resolution::DnsRoundRobin => DiscoveryType::LogicalDns,
        Resolution::Passthrough if proxy.node_type == NodeType::Router => DiscoveryType::Eds,
        Resolution::Passthrough => DiscoveryType::OriginalDst,
    }
}

/// An outbound cluster before its traffic policy: type, inline endpoints for DNS and
/// static types (`None` when there are none, as Istio drops such clusters), upstream
/// protocol and telemetry metadata.
fn outbound_base(
    ctx: &Context<'_>,
    service: &Service,
    port: &ServicePort,
    name: &str,
    discovery: DiscoveryType,
    subset_labels: Option<&mizzen_api::types::Labels>,
    policy: &Policy<'_>,
) -> Option<Building> {
    let assignment = match discovery {
        DiscoveryType::StrictDns | DiscoveryType::LogicalDns | DiscoveryType::Static => {
            let cla = load_assignment(&LoadAssignmentInput {
                push: ctx.push,
                proxy: ctx.proxy,
                locality: &ctx.locality,
                cluster_name: name,
                service,
                port: port.port,
                subset_labels,
                locality_setting: locality_setting(policy),
                failover: policy.outlier_detection.is_some(),
            });
            if cla.endpoints.iter().all(|l| l.lb_endpoints.is_empty()) {
                return None;
            }
            Some(cla)
        }
        DiscoveryType::Eds | DiscoveryType::OriginalDst => None,
    };
    let mut b = new_cluster(name, discovery, assignment);
    if matches!(
        discovery,
        DiscoveryType::StrictDns | DiscoveryType::LogicalDns
    ) {
        apply_dns_settings(&mut b.cluster, ctx.proxy);
    }
    set_upstream_protocol(&mut b, ctx.proxy, port.protocol);
    let istio = filter_metadata(&mut b.cluster.metadata, "istio");
    istio.fields.insert(
        "services".into(),
        list(vec![service_metadata(ctx.push, service)]),
    );
    istio
        .fields
        .insert("default_original_port".into(), number(f64::from(port.port)));
    Some(b)
}

/// A cluster of `discovery` type with Istio's common fields.
fn new_cluster(
    name: &str,
    discovery: DiscoveryType,
    load_assignment: Option<ClusterLoadAssignment>,
) -> Building {
    let mut b = Building {
        cluster: Cluster {
            name: name.to_owned(),
            alt_stat_name: format!("{name};"),
            load_assignment,
            ..Cluster::default()
        },
        http: None,
    };
    b.set_discovery_type(discovery);
    common_lb_config(&mut b.cluster);
    b
}

/// Istio's DNS cluster settings: address family by the proxy's addresses, the c-ares
/// resolver, refresh rate and jitter, and respecting record TTLs. (Envoy deprecates the
/// refresh fields in favour of the DNS cluster extension but still accepts them; Istio
/// writes them, so we do.)
#[allow(deprecated)]
fn apply_dns_settings(cluster: &mut Cluster, proxy: &Proxy) {
    let all_v6 = !proxy.ips.is_empty() && proxy.ips.iter().all(|ip| ip.is_ipv6());
    cluster.dns_lookup_family = if all_v6 {
        DnsLookupFamily::V6Only
    } else {
        DnsLookupFamily::V4Only
    } as i32;
    cluster.typed_dns_resolver_config = Some(TypedExtensionConfig {
        name: "envoy.network.dns_resolver.cares".into(),
        typed_config: Some(any(&CaresDnsResolverConfig {
            udp_max_queries: Some(u32v(DNS_UDP_MAX_QUERIES)),
            ..CaresDnsResolverConfig::default()
        })),
    });
    cluster.dns_jitter = Some(proto::std_duration(std::time::Duration::from_millis(
        DNS_JITTER_MILLIS,
    )));
    cluster.dns_refresh_rate = Some(seconds(DNS_REFRESH_RATE_SECS));
    cluster.respect_dns_ttl = true;
}

/// HTTP/2 for HTTP/2 and gRPC ports; on sidecars, the downstream's protocol for ports
/// whose protocol is sniffed.
fn set_upstream_protocol(b: &mut Building, proxy: &Proxy, protocol: Option<Protocol>) {
    if is_http2_protocol(protocol) {
        b.set_http2();
    } else if protocol.is_none() && proxy.node_type == NodeType::Sidecar {
        b.set_use_downstream_protocol();
    }
}

/// The outbound traffic policy, in Istio's order: connection pool, HTTP/2 upgrade,
/// outlier detection, load balancer (with locality), TLS.
fn apply_outbound_policy(b: &mut Building, policy: &Policy<'_>, target: &TlsTarget<'_>) {
    apply_connection_pool(b, policy.connection_pool);
    apply_h2_upgrade(b, policy.connection_pool);
    apply_outlier_detection(&mut b.cluster, policy.outlier_detection);
    apply_locality_weighted(
        &mut b.cluster,
        policy
            .load_balancer
            .and_then(|lb| lb.locality_lb_setting.as_ref()),
    );
    // Endpoints that are not ready are sent too (their health says so); a panic
    // threshold would route to them, so Istio turns it off in that mode.
    common_lb_config(&mut b.cluster).healthy_panic_threshold =
        Some(mizzen_xds::pb::envoy::r#type::v3::Percent { value: 0.0 });
    apply_load_balancer(b, policy.load_balancer);
    apply_tls(b, policy.tls, target);
}

/// Records the DestinationRule (and subset) in `istio` metadata.
fn add_rule_metadata(b: &mut Building, rule: &RuleRef<'_>, subset: Option<&str>) {
    let istio = filter_metadata(&mut b.cluster.metadata, "istio");
    istio
        .fields
        .insert("config".into(), string(rule.config_path()));
    if let Some(subset) = subset {
        istio.fields.insert("subset".into(), string(subset));
    }
}

/// Adds the EDS source to EDS clusters and packs the protocol options.
fn finish(mut b: Building) -> Cluster {
    if b.discovery_type() == Some(DiscoveryType::Eds) {
        b.cluster.eds_cluster_config = Some(EdsClusterConfig {
            service_name: b.cluster.name.clone(),
            eds_config: Some(proto::ads_config_source(Some(seconds(0)))),
        });
    }
    if b.discovery_type() == Some(DiscoveryType::OriginalDst) {
        b.cluster.lb_policy = LbPolicy::ClusterProvided as i32;
    }
    b.build()
}

/// `{host, name, namespace}` of a service, as telemetry reads it from cluster metadata.
fn service_metadata(
    push: &PushContext,
    service: &Service,
) -> mizzen_xds::pb::google::protobuf::Value {
    object([
        ("host", string(service.hostname.as_str())),
        ("name", string(service_name(push, service))),
        ("namespace", string(service.namespace.clone())),
    ])
}

/// A service's short name: the Kubernetes name for `name.namespace.svc.<suffix>` hosts,
/// else the host itself (as for ServiceEntries).
fn service_name(push: &PushContext, service: &Service) -> String {
    let suffix = format!(".{}.svc.{}", service.namespace, push.mesh.domain_suffix);
    service
        .hostname
        .as_str()
        .strip_suffix(&suffix)
        .filter(|n| !n.contains('.'))
        .unwrap_or(service.hostname.as_str())
        .to_owned()
}

/// The identities a service's workloads may present: its declared ones and the SPIFFE
/// URIs of its endpoints' service accounts, sorted.
fn service_accounts(push: &PushContext, service: &Service) -> Vec<String> {
    let mut out: Vec<String> = service.service_accounts.clone();
    for port in &service.ports {
        for ep in push.registry.endpoints(service, port.port) {
            if ep.service_account.is_empty() {
                continue;
            }
            out.push(if ep.service_account.starts_with("spiffe://") {
                ep.service_account.clone()
            } else {
                format!(
                    "spiffe://{}/ns/{}/sa/{}",
                    push.mesh.trust_domain, ep.workload_namespace, ep.service_account
                )
            });
        }
    }
    out.sort();
    out.dedup();
    out
}

/// Drops traffic: a static cluster with no endpoints.
fn blackhole_cluster() -> Cluster {
    let mut b = new_cluster(BLACKHOLE_CLUSTER, DiscoveryType::Static, None);
    b.cluster.common_lb_config = None;
    b.cluster.connect_timeout = Some(seconds(policy::DEFAULT_CONNECT_TIMEOUT_SECS));
    b.cluster.lb_policy = LbPolicy::RoundRobin as i32;
    b.cluster
}

/// Sends traffic to where it was going: original destination, the downstream's HTTP
/// protocol, a 5 minute idle timeout.
fn passthrough_cluster() -> Cluster {
    let mut b = new_cluster(PASSTHROUGH_CLUSTER, DiscoveryType::OriginalDst, None);
    b.cluster.common_lb_config = None;
    b.cluster.lb_policy = LbPolicy::ClusterProvided as i32;
    b.cluster.typed_extension_protocol_options.insert(
        HTTP_PROTOCOL_OPTIONS.to_owned(),
        any(&HttpProtocolOptions {
            common_http_protocol_options: Some(CommonHttpOptions {
                idle_timeout: Some(seconds(PASSTHROUGH_IDLE_TIMEOUT_SECS)),
                ..CommonHttpOptions::default()
            }),
            upstream_protocol_options: Some(use_downstream_protocol()),
            ..HttpProtocolOptions::default()
        }),
    );
    // Defaults only (connect timeout, circuit breakers); the options above are final.
    let mut defaults = Building {
        cluster: b.cluster,
        http: None,
    };
    apply_connection_pool(&mut defaults, None);
    defaults.cluster
}

/// The passthrough cluster for inbound traffic to undeclared ports, sent from the
/// address capture rules let through. (Istio keeps the outbound one's stat name.)
fn inbound_passthrough_cluster(proxy: &Proxy) -> Cluster {
    let mut c = passthrough_cluster();
    c.name = INBOUND_PASSTHROUGH_CLUSTER.to_owned();
    let v4 = proxy.ips.is_empty() || proxy.ips.iter().any(|ip| ip.is_ipv4());
    let v6 = proxy.ips.iter().any(|ip| ip.is_ipv6());
    c.upstream_bind_config = Some(BindConfig {
        source_address: Some(socket_address(if v4 {
            INBOUND_BIND_V4
        } else {
            INBOUND_BIND_V6
        })),
        extra_source_addresses: if v4 && v6 {
            vec![ExtraSourceAddress {
                address: Some(socket_address(INBOUND_BIND_V6)),
                ..ExtraSourceAddress::default()
            }]
        } else {
            Vec::new()
        },
        ..BindConfig::default()
    });
    c
}

/// `address:0`.
fn socket_address(address: &str) -> SocketAddress {
    SocketAddress {
        address: address.to_owned(),
        port_specifier: Some(PortSpecifier::PortValue(0)),
        ..SocketAddress::default()
    }
}

#[cfg(test)]
pub(crate) mod tests;
