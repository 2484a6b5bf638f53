//! Inbound clusters: `inbound|<port>||` towards the proxy's own workload, one per
//! workload port its services target, or one per ingress listener of its Sidecar.

use std::collections::BTreeMap;
use std::net::IpAddr;

use mizzen_api::networking::{ConnectionPoolSettings, Sidecar};
use mizzen_api::types::Protocol;
use mizzen_api::{Kind, Object};
use mizzen_xds::pb::envoy::config::cluster::v3::Cluster;
use mizzen_xds::pb::envoy::config::cluster::v3::cluster::{DiscoveryType, LbPolicy};
use mizzen_xds::pb::envoy::config::core::v3::BindConfig;
use mizzen_xds::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint::HostIdentifier,
};

use super::policy::{Building, apply_connection_pool};
use super::proto::{filter_metadata, list, seconds};
use super::rules::Policy;
use super::{
    Context, INBOUND_BIND_V4, INBOUND_BIND_V6, new_cluster, service_metadata,
    set_upstream_protocol, socket_address,
};
use crate::model::{InterceptionMode, Service, ServicePort};
use crate::translate::endpoint::endpoint_address;
use crate::translate::names::inbound_cluster;

/// Istio never cleans up inbound original-destination hosts: the longest duration a
/// protobuf `Duration` holds in nanoseconds, in whole seconds.
const NEVER_CLEAN_UP_SECS: i64 = 9_223_372_035;

/// One of the proxy's services on one of its ports, and the workload port it targets.
struct Target<'a> {
    service: &'a Service,
    port: &'a ServicePort,
    target_port: u16,
}

/// The inbound clusters of a sidecar: from its Sidecar's ingress listeners when it has
/// some, else one per workload port of the services its workload backs.
pub(super) fn clusters(ctx: &Context<'_>) -> Vec<Cluster> {
    let targets = service_targets(ctx);
    let sidecar = sidecar_for(ctx);
    if let Some(sidecar) = sidecar.filter(|s| !s.ingress.is_empty()) {
        return sidecar
            .ingress
            .iter()
            .filter_map(|ingress| {
                let port = ingress.port.as_ref()?;
                let number = u16::try_from(port.number).ok()?;
                let upstream = ingress_upstream(ctx, &ingress.default_endpoint)?;
                let primary = targets.iter().find(|t| t.target_port == number);
                let protocol = port.protocol.parse::<Protocol>().ok();
                let pool = ingress
                    .connection_pool
                    .as_ref()
                    .or(sidecar.inbound_connection_pool.as_ref());
                Some(inbound_cluster_for(
                    ctx,
                    number,
                    upstream,
                    primary.into_iter().collect(),
                    protocol,
                    pool,
                ))
            })
            .collect();
    }
    let mut by_port: BTreeMap<u16, Vec<&Target<'_>>> = BTreeMap::new();
    for t in &targets {
        by_port.entry(t.target_port).or_default().push(t);
    }
    let none_mode = ctx.proxy.interception_mode == InterceptionMode::None;
    by_port
        .into_iter()
        .map(|(port, instances)| {
            // Captured traffic goes to its original destination (the workload's own
            // address). Without capture there is none, so the workload is addressed
            // directly on the port its services target.
            let upstream = match ctx.proxy.ips.first() {
                Some(ip) if none_mode => Upstream::Fixed {
                    address: ip.to_string(),
                    port,
                    own_address: true,
                },
                _ => Upstream::OriginalDestination,
            };
            let pool = sidecar.and_then(|s| s.inbound_connection_pool.as_ref());
            let protocol = instances[0].port.protocol;
            inbound_cluster_for(ctx, port, upstream, instances, protocol, pool)
        })
        .collect()
}

/// Where an inbound cluster sends traffic.
enum Upstream {
    /// Where the connection was going (captured traffic).
    OriginalDestination,
    /// A fixed address.
    Fixed {
        /// IP address or `unix://` path.
        address: String,
        /// The port (unused for paths).
        port: u16,
        /// True when the address is the workload's own, which capture would catch again.
        own_address: bool,
    },
}

/// Where an ingress listener's `defaultEndpoint` sends traffic, as Istio reads it: empty
/// for the original destination, `127.0.0.1:P`/`[::1]:P` for loopback, `0.0.0.0:P`/`[::]:P`
/// for the workload's address, or a `unix://` path; `None` when it cannot be understood.
fn ingress_upstream(ctx: &Context<'_>, default_endpoint: &str) -> Option<Upstream> {
    if default_endpoint.is_empty() {
        return Some(Upstream::OriginalDestination);
    }
    let fixed = |address: String, port, own_address| Upstream::Fixed {
        address,
        port,
        own_address,
    };
    if default_endpoint.starts_with("unix://") {
        return Some(fixed(default_endpoint.to_owned(), 0, false));
    }
    let (host, port) = default_endpoint.rsplit_once(':')?;
    let port: u16 = port.parse().ok()?;
    let own = |v4: bool| {
        ctx.proxy
            .ips
            .iter()
            .find(|ip| ip.is_ipv4() == v4)
            .map(IpAddr::to_string)
    };
    Some(match host.trim_matches(|c| c == '[' || c == ']') {
        "127.0.0.1" => fixed("127.0.0.1".to_owned(), port, false),
        "::1" => fixed("::1".to_owned(), port, false),
        "0.0.0.0" => fixed(own(true).unwrap_or_else(|| "127.0.0.1".into()), port, true),
        "::" => fixed(own(false).unwrap_or_else(|| "::1".into()), port, true),
        _ => return None,
    })
}

/// One inbound cluster: STATIC to a fixed upstream, else ORIGINAL_DST; the
/// first target's protocol and DestinationRule connection pool (a Sidecar's pool wins);
/// telemetry metadata naming every service on the port.
fn inbound_cluster_for(
    ctx: &Context<'_>,
    port: u16,
    upstream: Upstream,
    instances: Vec<&Target<'_>>,
    protocol: Option<Protocol>,
    sidecar_pool: Option<&ConnectionPoolSettings>,
) -> Cluster {
    let name = inbound_cluster(port);
    let (discovery, assignment) = match &upstream {
        Upstream::Fixed { address, port, .. } => (
            DiscoveryType::Static,
            Some(ClusterLoadAssignment {
                cluster_name: name.clone(),
                endpoints: vec![LocalityLbEndpoints {
                    lb_endpoints: vec![LbEndpoint {
                        host_identifier: Some(HostIdentifier::Endpoint(Endpoint {
                            address: Some(endpoint_address(address, *port)),
                            ..Endpoint::default()
                        })),
                        ..LbEndpoint::default()
                    }],
                    ..LocalityLbEndpoints::default()
                }],
                ..ClusterLoadAssignment::default()
            }),
        ),
        Upstream::OriginalDestination => (DiscoveryType::OriginalDst, None),
    };
    let mut b: Building = new_cluster(&name, discovery, assignment);
    set_upstream_protocol(&mut b, ctx.proxy, protocol);
    if let Some(primary) = instances.first() {
        let mut seen = Vec::new();
        let services = instances
            .iter()
            .filter(|t| t.port.port == primary.port.port)
            .filter(|t| {
                let fresh = !seen.contains(&&t.service.hostname);
                seen.push(&t.service.hostname);
                fresh
            })
            .map(|t| service_metadata(ctx.push, t.service))
            .collect();
        filter_metadata(&mut b.cluster.metadata, "istio")
            .fields
            .insert("services".into(), list(services));
    }
    if discovery == DiscoveryType::OriginalDst {
        b.cluster.cleanup_interval = Some(seconds(NEVER_CLEAN_UP_SECS));
    }
    let rule_pool = instances.first().and_then(|t| {
        let rule = ctx.rules.for_service(ctx.proxy, t.service);
        Policy::for_cluster(rule, "", t.port.port).connection_pool
    });
    apply_connection_pool(&mut b, sidecar_pool.or(rule_pool));
    if discovery == DiscoveryType::OriginalDst {
        b.cluster.lb_policy = LbPolicy::ClusterProvided as i32;
    }
    // Traffic to the workload's own address would be captured again; Istio sends it
    // from an address the capture rules skip. Loopback and uncaptured proxies need not.
    let needs_bind = match upstream {
        Upstream::OriginalDestination => true,
        Upstream::Fixed { own_address, .. } => own_address,
    } && ctx.proxy.interception_mode != InterceptionMode::None;
    if needs_bind {
        let v4 = ctx.proxy.ips.is_empty() || ctx.proxy.ips.iter().any(IpAddr::is_ipv4);
        b.cluster.upstream_bind_config = Some(BindConfig {
            source_address: Some(socket_address(if v4 {
                INBOUND_BIND_V4
            } else {
                INBOUND_BIND_V6
            })),
            ..BindConfig::default()
        });
    }
    b.build()
}

/// The services the proxy's workload backs: every (service, port) with an endpoint at
/// one of the proxy's addresses, with the workload port it targets.
fn service_targets<'a>(ctx: &Context<'a>) -> Vec<Target<'a>> {
    let mut out: Vec<Target<'a>> = Vec::new();
    for found in ctx.push.registry.instances_at(&ctx.proxy.ips) {
        let seen = out
            .iter()
            .any(|t| std::ptr::eq(t.service, &**found.service) && t.port.port == found.port.port);
        if !seen {
            out.push(Target {
                service: found.service,
                port: found.port,
                target_port: found.endpoint.port,
            });
        }
    }
    out
}

/// The Sidecar resource governing the proxy: one in its namespace selecting it, else one
/// in its namespace without a selector, else one in the root namespace without a selector.
fn sidecar_for<'a>(ctx: &Context<'a>) -> Option<&'a Sidecar> {
    let sidecars: Vec<(&str, &Sidecar)> = ctx
        .push
        .config
        .of_kind(Kind::Sidecar)
        .filter_map(|o| match &**o {
            Object::Sidecar(r) => {
                Some((r.metadata.namespace.as_deref().unwrap_or_default(), &r.spec))
            }
            _ => None,
        })
        .collect();
    let proxy_ns = ctx.proxy.namespace.as_str();
    let find = |ns: &str, selected: bool| {
        sidecars.iter().find(|(n, s)| {
            *n == ns
                && match (&s.workload_selector, selected) {
                    (Some(sel), true) => sel
                        .labels
                        .iter()
                        .all(|(k, v)| ctx.proxy.labels.get(k) == Some(v)),
                    (None, false) => true,
                    _ => false,
                }
        })
    };
    find(proxy_ns, true)
        .or_else(|| find(proxy_ns, false))
        .or_else(|| find(&ctx.push.mesh.root_namespace, false))
        .map(|(_, s)| *s)
}
