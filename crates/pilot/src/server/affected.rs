//! Which resource types a config change can affect, so a push regenerates only those.

use mizzen_api::Kind;
use mizzen_xds::{ResourceType, TypeSet};

use crate::store::Change;

/// The types a change to an object of `kind` (by name; opaque kinds included) affects.
pub fn types_for(kind: &str) -> TypeSet {
    use ResourceType::{Cluster, Endpoint, Listener, Route};
    match kind.parse::<Kind>() {
        // Routing: listeners (TCP/TLS routes live there) and routes.
        Ok(Kind::VirtualService | Kind::Gateway) => TypeSet::of([Listener, Route]),
        // Policies after routing: clusters, their endpoints (subsets) and routes (hash
        // policies for consistent hashing).
        Ok(Kind::DestinationRule) => TypeSet::of([Cluster, Endpoint, Route]),
        // Kinds the translation does not read yet.
        Ok(
            Kind::PeerAuthentication
            | Kind::RequestAuthentication
            | Kind::AuthorizationPolicy
            | Kind::Telemetry
            | Kind::ProxyConfig
            | Kind::EnvoyFilter
            | Kind::WasmPlugin
            | Kind::Secret
            | Kind::Namespace
            | Kind::ServiceAccount,
        ) => TypeSet::EMPTY,
        // Services, workloads, Sidecars, and anything unknown: everything.
        _ => TypeSet::ALL,
    }
}

/// The union of the types `changes` affect.
pub fn types_for_changes<'a>(changes: impl IntoIterator<Item = &'a Change>) -> TypeSet {
    changes.into_iter().fold(TypeSet::EMPTY, |set, change| {
        set.union(types_for(&change.key.kind))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn routing_changes_touch_only_listeners_and_routes() {
        let t = types_for("VirtualService");
        assert!(t.contains(ResourceType::Route) && !t.contains(ResourceType::Cluster));
        assert!(types_for("DestinationRule").contains(ResourceType::Endpoint));
        assert_eq!(types_for("ServiceEntry"), TypeSet::ALL);
        assert_eq!(types_for("HTTPRoute"), TypeSet::ALL);
        assert!(types_for("PeerAuthentication").is_empty());
    }
}
