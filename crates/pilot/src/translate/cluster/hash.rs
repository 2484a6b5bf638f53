//! The route half of consistent hashing: a cluster with a ring hash or Maglev balancer
//! only balances by key when the route says what to hash (`route.hash_policy`). Route
//! builders call [`hash_policies`] for each destination.

use mizzen_api::networking::{ConsistentHashLb, DestinationRule, TrafficPolicy};
use mizzen_xds::pb::envoy::config::route::v3::route_action::{
    HashPolicy,
    hash_policy::{
        ConnectionProperties, Cookie, CookieAttribute, Header, PolicySpecifier, QueryParameter,
    },
};

use super::proto::duration;

/// The route hash policies for traffic to `port` (and `subset`, or `""`) of a service
/// whose DestinationRule is `rule`: at most one, from the most specific consistent-hash
/// setting (subset port level, subset, rule port level, rule), as Istio picks it.
pub fn hash_policies(rule: Option<&DestinationRule>, port: u16, subset: &str) -> Vec<HashPolicy> {
    let Some(rule) = rule else {
        return Vec::new();
    };
    let subset_policy = rule
        .subsets
        .iter()
        .find(|s| !subset.is_empty() && s.name == subset)
        .and_then(|s| s.traffic_policy.as_deref());
    let top = rule.traffic_policy.as_deref();
    let chosen = port_level_hash(subset_policy, port)
        .or_else(|| top_level_hash(subset_policy))
        .or_else(|| port_level_hash(top, port))
        .or_else(|| top_level_hash(top));
    chosen.and_then(hash_policy).into_iter().collect()
}

/// The consistent hash of a policy's top-level load balancer.
fn top_level_hash(policy: Option<&TrafficPolicy>) -> Option<&ConsistentHashLb> {
    policy?.load_balancer.as_ref()?.consistent_hash.as_ref()
}

/// The consistent hash of a policy's settings for `port`.
fn port_level_hash(policy: Option<&TrafficPolicy>, port: u16) -> Option<&ConsistentHashLb> {
    policy?
        .port_level_settings
        .iter()
        .find(|p| p.port.is_some_and(|s| s.number == u32::from(port)))?
        .load_balancer
        .as_ref()?
        .consistent_hash
        .as_ref()
}

/// One Envoy hash policy from the key a consistent hash names (header, cookie, source
/// IP or query parameter); `None` when it names none.
pub fn hash_policy(hash: &ConsistentHashLb) -> Option<HashPolicy> {
    let specifier = if let Some(name) = &hash.http_header_name {
        PolicySpecifier::Header(Header {
            header_name: name.clone(),
            ..Header::default()
        })
    } else if let Some(cookie) = &hash.http_cookie {
        PolicySpecifier::Cookie(Cookie {
            name: cookie.name.clone(),
            ttl: cookie.ttl.map(duration),
            path: cookie.path.clone(),
            attributes: cookie
                .attributes
                .iter()
                .map(|a| CookieAttribute {
                    name: a.name.clone(),
                    value: a.value.clone(),
                })
                .collect(),
        })
    } else if let Some(source_ip) = hash.use_source_ip {
        PolicySpecifier::ConnectionProperties(ConnectionProperties { source_ip })
    } else if let Some(name) = &hash.http_query_parameter_name {
        PolicySpecifier::QueryParameter(QueryParameter { name: name.clone() })
    } else {
        return None;
    };
    Some(HashPolicy {
        policy_specifier: Some(specifier),
        ..HashPolicy::default()
    })
}
