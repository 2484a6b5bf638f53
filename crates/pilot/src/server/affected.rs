//! What a config change can affect — which resource types, and which proxies — so a
//! push regenerates only those, only for them.

use std::collections::BTreeSet;
use std::sync::Arc;

use mizzen_api::{Kind, Object};
use mizzen_xds::{Affected, ResourceType, TypeSet};

use crate::model::Proxy;
use crate::model::jwks::fetched_uri;
use crate::model::security::request_authentications;
use crate::store::{Change, Snapshot};

/// The types a change to an object of `kind` (by name; opaque kinds included) affects.
pub fn types_for(kind: &str) -> TypeSet {
    use ResourceType::{Cluster, Endpoint, Listener, Route};
    match kind.parse::<Kind>() {
        // Routing: listeners (TCP/TLS routes live there) and routes.
        Ok(Kind::VirtualService | Kind::Gateway) => TypeSet::of([Listener, Route]),
        // Policies after routing: clusters, their endpoints (subsets) and routes (hash
        // policies for consistent hashing).
        Ok(Kind::DestinationRule) => TypeSet::of([Cluster, Endpoint, Route]),
        // mTLS modes shape inbound listeners; clusters follow as Istio pushes them, and
        // endpoints, whose auto mTLS marks follow their workloads' modes.
        Ok(Kind::PeerAuthentication) => TypeSet::of([Listener, Cluster, Endpoint]),
        // Authentication and authorization filters live in listeners.
        Ok(Kind::RequestAuthentication | Kind::AuthorizationPolicy) => TypeSet::of([Listener]),
        // Access logging and tracing live in listeners.
        Ok(Kind::Telemetry) => TypeSet::of([Listener]),
        // Kinds the translation does not read yet.
        Ok(
            Kind::ProxyConfig
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

/// The proxies `change` can affect, from the object as it was (`before`) and is
/// (`after`): a Sidecar configures only its namespace's proxies (unless it is the root
/// namespace's mesh default), and so do request authentication and authorization
/// policies; a VirtualService or DestinationRule reaches only the namespaces it is
/// exported to (a delegate VirtualService, whoever sees its roots: every proxy);
/// anything else may touch every proxy (a PeerAuthentication does: the clients of its
/// workloads, wherever they are, follow its mode by auto mTLS).
pub fn proxies_for(
    change: &Change,
    before: &Snapshot,
    after: &Snapshot,
    root_namespace: &str,
) -> Affected<Proxy> {
    let versions = [before.get(&change.key), after.get(&change.key)];
    if versions.iter().all(Option::is_none) {
        return Affected::All;
    }
    let mut namespaces = BTreeSet::new();
    for object in versions.into_iter().flatten() {
        let own = object.meta().namespace.clone().unwrap_or_default();
        let export_to: &[String] = match &**object {
            Object::Sidecar(_)
            | Object::RequestAuthentication(_)
            | Object::AuthorizationPolicy(_)
                if own != root_namespace =>
            {
                namespaces.insert(own);
                continue;
            }
            // A delegate reaches whoever sees its roots.
            Object::VirtualService(vs) if vs.spec.hosts.is_empty() => return Affected::All,
            Object::VirtualService(vs) => &vs.spec.export_to,
            Object::DestinationRule(dr) => &dr.spec.export_to,
            _ => return Affected::All,
        };
        if export_to.is_empty() || export_to.iter().any(|e| e == "*") {
            return Affected::All;
        }
        for e in export_to {
            match e.as_str() {
                "." => namespaces.insert(own.clone()),
                "~" => false,
                other => namespaces.insert(other.to_owned()),
            };
        }
    }
    Affected::Matching(Arc::new(move |proxy: &Proxy| {
        namespaces.contains(&proxy.namespace)
    }))
}

/// The proxies selected by a RequestAuthentication in `config` whose keys come from one
/// of `uris`: only their listeners inline those key sets, so only they need a push when
/// the sets change.
pub fn proxies_using_jwks(
    config: Arc<Snapshot>,
    root_namespace: String,
    uris: BTreeSet<String>,
) -> Affected<Proxy> {
    Affected::Matching(Arc::new(move |proxy: &Proxy| {
        request_authentications(&config, &root_namespace, proxy)
            .iter()
            .flat_map(|policy| &policy.spec.jwt_rules)
            .filter_map(fetched_uri)
            .any(|uri| uris.contains(uri))
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::ChangeKind;
    use mizzen_api::load::Loader;

    #[test]
    fn routing_changes_touch_only_listeners_and_routes() {
        let t = types_for("VirtualService");
        assert!(t.contains(ResourceType::Route) && !t.contains(ResourceType::Cluster));
        assert!(types_for("DestinationRule").contains(ResourceType::Endpoint));
        assert_eq!(types_for("ServiceEntry"), TypeSet::ALL);
        assert_eq!(types_for("HTTPRoute"), TypeSet::ALL);
        let peer = types_for("PeerAuthentication");
        assert!(peer.contains(ResourceType::Listener) && peer.contains(ResourceType::Cluster));
        assert!(peer.contains(ResourceType::Endpoint), "auto mTLS marks");
        let authz = types_for("AuthorizationPolicy");
        assert!(authz.contains(ResourceType::Listener) && !authz.contains(ResourceType::Route));
        assert!(types_for("RequestAuthentication").contains(ResourceType::Listener));
        assert_eq!(
            types_for("Telemetry"),
            TypeSet::of([ResourceType::Listener])
        );
        assert!(types_for("WasmPlugin").is_empty());
    }

    fn snapshot(yaml: &str) -> Snapshot {
        let objects = Loader::new()
            .load_str(yaml, None)
            .objects
            .into_iter()
            .map(|l| (l.object.key(), Arc::new(l.object)))
            .collect();
        Snapshot::new(1, objects)
    }

    fn proxy_in(namespace: &str) -> Proxy {
        Proxy::from_node_id(&format!(
            "sidecar~10.0.0.1~app-1.{namespace}~{namespace}.svc.cluster.local"
        ))
        .unwrap()
    }

    fn reaches(affected: &Affected<Proxy>, namespace: &str) -> bool {
        affected.matches("id", &proxy_in(namespace))
    }

    fn change(kind: &str, namespace: &str, name: &str) -> Change {
        Change {
            kind: ChangeKind::Updated,
            key: mizzen_api::ObjectKey {
                kind: kind.into(),
                namespace: namespace.into(),
                name: name.into(),
            },
        }
    }

    #[test]
    fn namespace_local_config_reaches_only_its_namespace() {
        let before = snapshot(
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r, namespace: shop}\nspec: {hosts: [r], exportTo: ['.'], http: [{route: [{destination: {host: r}}]}]}\n",
        );
        let after = snapshot(
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: r, namespace: shop}\nspec: {hosts: [r], exportTo: ['.', audit], http: [{route: [{destination: {host: r}}]}]}\n",
        );
        let a = proxies_for(
            &change("VirtualService", "shop", "r"),
            &before,
            &after,
            "istio-system",
        );
        assert!(reaches(&a, "shop") && reaches(&a, "audit") && !reaches(&a, "default"));

        let sidecar = snapshot(
            "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: s, namespace: shop}\nspec: {egress: [{hosts: ['./*']}]}\n",
        );
        let a = proxies_for(
            &change("Sidecar", "shop", "s"),
            &Snapshot::default(),
            &sidecar,
            "istio-system",
        );
        assert!(reaches(&a, "shop") && !reaches(&a, "default"));

        let policy = snapshot(
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {name: p, namespace: shop}\nspec: {}\n",
        );
        let a = proxies_for(
            &change("AuthorizationPolicy", "shop", "p"),
            &Snapshot::default(),
            &policy,
            "istio-system",
        );
        assert!(reaches(&a, "shop") && !reaches(&a, "default"));
        let mesh_wide = snapshot(
            "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: istio-system}\nspec: {mtls: {mode: STRICT}}\n",
        );
        let a = proxies_for(
            &change("PeerAuthentication", "istio-system", "default"),
            &Snapshot::default(),
            &mesh_wide,
            "istio-system",
        );
        assert!(matches!(a, Affected::All));
        // A namespace's PeerAuthentication reaches the clients of its workloads too.
        let namespaced = snapshot(
            "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {name: default, namespace: shop}\nspec: {mtls: {mode: DISABLE}}\n",
        );
        let a = proxies_for(
            &change("PeerAuthentication", "shop", "default"),
            &Snapshot::default(),
            &namespaced,
            "istio-system",
        );
        assert!(matches!(a, Affected::All));
    }

    #[test]
    fn public_and_mesh_wide_config_reaches_everyone() {
        let public = snapshot(
            "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: r, namespace: shop}\nspec: {host: r}\n",
        );
        let a = proxies_for(
            &change("DestinationRule", "shop", "r"),
            &Snapshot::default(),
            &public,
            "istio-system",
        );
        assert!(matches!(a, Affected::All));
        let root = snapshot(
            "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {name: default, namespace: istio-system}\nspec: {}\n",
        );
        let a = proxies_for(
            &change("Sidecar", "istio-system", "default"),
            &Snapshot::default(),
            &root,
            "istio-system",
        );
        assert!(matches!(a, Affected::All));
        // A delegate exported to one namespace still reaches the proxies of its roots,
        // which may be anywhere.
        let delegate = snapshot(
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: d, namespace: team}\nspec: {exportTo: ['.'], http: [{route: [{destination: {host: r}}]}]}\n",
        );
        let a = proxies_for(
            &change("VirtualService", "team", "d"),
            &Snapshot::default(),
            &delegate,
            "istio-system",
        );
        assert!(matches!(a, Affected::All));
        let a = proxies_for(
            &change("Service", "shop", "r"),
            &Snapshot::default(),
            &Snapshot::default(),
            "istio-system",
        );
        assert!(matches!(a, Affected::All));
    }

    #[test]
    fn changed_keys_reach_only_the_proxies_whose_policies_name_them() {
        let config = Arc::new(snapshot(
            "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: jwt, namespace: default}\nspec:\n  selector: {matchLabels: {app: productpage}}\n  jwtRules:\n  - {issuer: a, jwksUri: 'https://a.test/jwks'}\n---\napiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {name: inline, namespace: default}\nspec:\n  selector: {matchLabels: {app: reviews}}\n  jwtRules:\n  - {issuer: b, jwksUri: 'https://b.test/jwks', jwks: '{\"keys\":[]}'}\n",
        ));
        let labelled = |app: &str| {
            let mut proxy = proxy_in("default");
            proxy.labels.insert("app".into(), app.into());
            proxy
        };
        let (productpage, reviews) = (labelled("productpage"), labelled("reviews"));
        let uris = |list: &[&str]| list.iter().map(|u| (*u).to_owned()).collect();
        let a = proxies_using_jwks(
            config.clone(),
            "istio-system".into(),
            uris(&["https://a.test/jwks"]),
        );
        assert!(a.matches("p", &productpage) && !a.matches("r", &reviews));
        // Inline keys win over a jwksUri: nothing fetched reaches reviews.
        let b = proxies_using_jwks(
            config,
            "istio-system".into(),
            uris(&["https://b.test/jwks"]),
        );
        assert!(!b.matches("p", &productpage) && !b.matches("r", &reviews));
    }
}
