//! Which security policies apply to a proxy (Istio's `AuthorizationPolicies`,
//! `PeerAuthentication` and `RequestAuthentication` indexes): the root namespace's for
//! the whole mesh, then the proxy's namespace's, narrowed by selector or target.

use std::collections::BTreeMap;

use mizzen_api::security::{
    AuthorizationAction, AuthorizationPolicy, MtlsMode, PeerAuthentication, RequestAuthentication,
};
use mizzen_api::telemetry::Telemetry;
use mizzen_api::types::{PolicyTargetReference, WorkloadSelector};
use mizzen_api::{Kind, Object, Resource};

use super::proxy::{NodeType, Proxy};
use crate::store::Snapshot;

/// The annotation that turns an AuthorizationPolicy into a dry run.
pub const DRY_RUN_ANNOTATION: &str = "istio.io/dry-run";
/// The label naming the Gateway API Gateway a gateway proxy serves.
const GATEWAY_NAME_LABEL: &str = "gateway.networking.k8s.io/gateway-name";

/// The mutual TLS a workload accepts on a port, once inheritance is resolved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MutualTls {
    /// Only mTLS.
    Strict,
    /// mTLS or plain text, told apart by the TLS inspector.
    Permissive,
    /// Only plain text.
    Disable,
}

impl MutualTls {
    /// The mode a policy sets, or `None` when it inherits (`UNSET`).
    fn of(mode: MtlsMode) -> Option<MutualTls> {
        match mode {
            MtlsMode::Unset => None,
            MtlsMode::Strict => Some(MutualTls::Strict),
            MtlsMode::Permissive => Some(MutualTls::Permissive),
            MtlsMode::Disable => Some(MutualTls::Disable),
        }
    }
}

/// A workload's effective PeerAuthentication (Istio's `MergedPeerAuthentication`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerAuthn {
    /// The mode for every port without its own.
    pub mode: MutualTls,
    /// Modes of single ports (by the workload's port number), from a workload policy.
    pub per_port: BTreeMap<u32, MutualTls>,
}

impl PeerAuthn {
    /// The mode on `port`.
    pub fn mode_for(&self, port: u16) -> MutualTls {
        self.per_port
            .get(&u32::from(port))
            .copied()
            .unwrap_or(self.mode)
    }
}

/// The PeerAuthentication in force for `proxy`, by Istio's precedence: the oldest
/// workload policy (a selector matching it, in its namespace) over the oldest namespace
/// policy over the oldest mesh policy (root namespace, no selector); `UNSET` inherits;
/// nothing set is PERMISSIVE. Port-level modes count only on workload policies.
pub fn peer_authentication(config: &Snapshot, root_namespace: &str, proxy: &Proxy) -> PeerAuthn {
    let mut mesh = None;
    let mut namespace = None;
    let mut workload = None;
    for policy in sorted::<PeerAuthentication>(config, Kind::PeerAuthentication) {
        let ns = policy.metadata.namespace.as_deref().unwrap_or_default();
        let selector = policy
            .spec
            .selector
            .as_ref()
            .filter(|s| !s.match_labels.is_empty());
        match selector {
            None if ns == root_namespace => {
                mesh.get_or_insert(policy);
            }
            None if ns == proxy.namespace => {
                namespace.get_or_insert(policy);
            }
            Some(s)
                if ns == proxy.namespace && ns != root_namespace && s.matches(&proxy.labels) =>
            {
                workload.get_or_insert(policy);
            }
            _ => {}
        }
    }
    let level = |p: Option<&Resource<PeerAuthentication>>| {
        p.and_then(|p| p.spec.mtls.as_ref())
            .and_then(|m| MutualTls::of(m.mode))
    };
    let mut mode = MutualTls::Permissive;
    for inherited in [level(mesh), level(namespace), level(workload)] {
        mode = inherited.unwrap_or(mode);
    }
    let per_port = workload
        .and_then(|w| w.spec.port_level_mtls.as_ref())
        .map(|ports| {
            ports
                .iter()
                .map(|(port, m)| (*port, MutualTls::of(m.mode).unwrap_or(mode)))
                .collect()
        })
        .unwrap_or_default();
    PeerAuthn { mode, per_port }
}

/// The AuthorizationPolicies that apply to one proxy, by action.
#[derive(Debug, Clone, Default)]
pub struct AuthorizationPolicies<'a> {
    /// CUSTOM: delegated to an extension provider.
    pub custom: Vec<&'a Resource<AuthorizationPolicy>>,
    /// DENY from the root namespace (evaluated first, by their own filter).
    pub root_deny: Vec<&'a Resource<AuthorizationPolicy>>,
    /// DENY from the proxy's namespace.
    pub deny: Vec<&'a Resource<AuthorizationPolicy>>,
    /// ALLOW.
    pub allow: Vec<&'a Resource<AuthorizationPolicy>>,
    /// AUDIT.
    pub audit: Vec<&'a Resource<AuthorizationPolicy>>,
}

impl AuthorizationPolicies<'_> {
    /// True when no policy applies.
    pub fn is_empty(&self) -> bool {
        self.custom.is_empty()
            && self.root_deny.is_empty()
            && self.deny.is_empty()
            && self.allow.is_empty()
            && self.audit.is_empty()
    }
}

/// The AuthorizationPolicies that select `proxy` (root namespace first, then its own;
/// oldest first within each).
pub fn authorization_policies<'a>(
    config: &'a Snapshot,
    root_namespace: &str,
    proxy: &Proxy,
) -> AuthorizationPolicies<'a> {
    let mut out = AuthorizationPolicies::default();
    for policy in in_scope::<AuthorizationPolicy>(
        config,
        Kind::AuthorizationPolicy,
        root_namespace,
        proxy,
        |p| (p.selector.as_ref(), targets(&p.target_ref, &p.target_refs)),
    ) {
        let from_root = policy.metadata.namespace.as_deref() == Some(root_namespace);
        let list = match policy.spec.action {
            AuthorizationAction::Allow => &mut out.allow,
            AuthorizationAction::Deny if from_root => &mut out.root_deny,
            AuthorizationAction::Deny => &mut out.deny,
            AuthorizationAction::Audit => &mut out.audit,
            AuthorizationAction::Custom => &mut out.custom,
        };
        list.push(policy);
    }
    out
}

/// The RequestAuthentications that select `proxy`.
pub fn request_authentications<'a>(
    config: &'a Snapshot,
    root_namespace: &str,
    proxy: &Proxy,
) -> Vec<&'a Resource<RequestAuthentication>> {
    in_scope::<RequestAuthentication>(
        config,
        Kind::RequestAuthentication,
        root_namespace,
        proxy,
        |p| (p.selector.as_ref(), targets(&p.target_ref, &p.target_refs)),
    )
}

/// True when an AuthorizationPolicy carries `istio.io/dry-run` set true (Go's
/// `strconv.ParseBool`; anything else is not a dry run).
pub fn is_dry_run(policy: &Resource<AuthorizationPolicy>) -> bool {
    policy
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(DRY_RUN_ANNOTATION))
        .and_then(|v| parse_go_bool(v))
        .unwrap_or(false)
}

/// Go's `strconv.ParseBool`, which Istio uses for boolean annotations.
pub(crate) fn parse_go_bool(value: &str) -> Option<bool> {
    match value {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

fn targets<'a>(
    one: &'a Option<PolicyTargetReference>,
    many: &'a [PolicyTargetReference],
) -> Vec<&'a PolicyTargetReference> {
    one.iter().chain(many).collect()
}

/// The policies of `kind` that apply to `proxy` (Istio's `WorkloadPolicyMatcher`): from
/// the root namespace or the proxy's; with target references, only to the gateway
/// they name; with a selector, to workloads carrying its labels; else to every one.
fn in_scope<'a, S: 'static>(
    config: &'a Snapshot,
    kind: Kind,
    root_namespace: &str,
    proxy: &Proxy,
    scope: impl Fn(&'a S) -> (Option<&'a WorkloadSelector>, Vec<&'a PolicyTargetReference>),
) -> Vec<&'a Resource<S>>
where
    Object: AsResource<S>,
{
    let all = sorted::<S>(config, kind);
    let mut out = Vec::new();
    for ns in [root_namespace, proxy.namespace.as_str()] {
        for policy in all.iter().copied() {
            if policy.metadata.namespace.as_deref() != Some(ns) {
                continue;
            }
            let (selector, refs) = scope(&policy.spec);
            let applies = if !refs.is_empty() {
                refs.iter().any(|r| targets_gateway(r, ns, proxy))
            } else {
                selector.is_none_or(|s| s.matches(&proxy.labels))
            };
            if applies {
                out.push(policy);
            }
        }
        if proxy.namespace == root_namespace {
            break;
        }
    }
    out
}

/// True when `reference` (from a policy in `namespace`) names the Gateway `proxy` serves.
pub(crate) fn targets_gateway(
    reference: &PolicyTargetReference,
    namespace: &str,
    proxy: &Proxy,
) -> bool {
    reference.kind == "Gateway"
        && proxy.node_type == NodeType::Router
        && proxy.namespace == namespace
        && proxy.labels.get(GATEWAY_NAME_LABEL) == Some(&reference.name)
}

/// Objects of one kind as their typed resource.
pub trait AsResource<S> {
    /// The resource, when the object is of that kind.
    fn as_resource(&self) -> Option<&Resource<S>>;
}

macro_rules! as_resource {
    ($($kind:ident),*) => {$(
        impl AsResource<$kind> for Object {
            fn as_resource(&self) -> Option<&Resource<$kind>> {
                match self {
                    Object::$kind(r) => Some(r),
                    _ => None,
                }
            }
        }
    )*};
}
as_resource!(
    PeerAuthentication,
    AuthorizationPolicy,
    RequestAuthentication,
    Telemetry
);

/// Every object of `kind`, oldest first, then by namespace and name.
pub(crate) fn sorted<S>(config: &Snapshot, kind: Kind) -> Vec<&Resource<S>>
where
    Object: AsResource<S>,
{
    let mut out: Vec<&Resource<S>> = config
        .of_kind(kind)
        .filter_map(|o| o.as_ref().as_resource())
        .collect();
    out.sort_by(|a, b| {
        (
            &a.metadata.creation_timestamp,
            &a.metadata.namespace,
            &a.metadata.name,
        )
            .cmp(&(
                &b.metadata.creation_timestamp,
                &b.metadata.namespace,
                &b.metadata.name,
            ))
    });
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use mizzen_api::load::Loader;
    use std::sync::Arc;

    fn snapshot(yaml: &str) -> Snapshot {
        let objects = Loader::new()
            .load_str(yaml, None)
            .objects
            .into_iter()
            .map(|l| (l.object.key(), Arc::new(l.object)))
            .collect();
        Snapshot::new(1, objects)
    }

    fn proxy() -> Proxy {
        let mut p =
            Proxy::from_node_id("sidecar~10.0.0.1~reviews-1.shop~shop.svc.cluster.local").unwrap();
        p.labels.insert("app".into(), "reviews".into());
        p
    }

    fn pa(ns: &str, name: &str, spec: &str) -> String {
        format!(
            "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {spec}\n---\n"
        )
    }

    fn mode(yaml: &str) -> PeerAuthn {
        peer_authentication(&snapshot(yaml), "istio-system", &proxy())
    }

    #[test]
    fn peer_authentication_follows_istios_precedence() {
        assert_eq!(mode("").mode, MutualTls::Permissive);
        let mesh = pa("istio-system", "default", "{mtls: {mode: STRICT}}");
        assert_eq!(mode(&mesh).mode, MutualTls::Strict);
        let ns = pa("shop", "ns", "{mtls: {mode: DISABLE}}");
        assert_eq!(mode(&(mesh.clone() + &ns)).mode, MutualTls::Disable);
        // UNSET inherits from the level above.
        let unset = pa("shop", "ns", "{mtls: {mode: UNSET}}");
        assert_eq!(mode(&(mesh.clone() + &unset)).mode, MutualTls::Strict);
        let workload = pa(
            "shop",
            "w",
            "{selector: {matchLabels: {app: reviews}}, mtls: {mode: PERMISSIVE}, portLevelMtls: {8080: {mode: DISABLE}, 9090: {mode: UNSET}}}",
        );
        let merged = mode(&(mesh.clone() + &ns + &workload));
        assert_eq!(merged.mode, MutualTls::Permissive);
        assert_eq!(merged.mode_for(8080), MutualTls::Disable);
        assert_eq!(merged.mode_for(9090), MutualTls::Permissive);
        assert_eq!(merged.mode_for(9080), MutualTls::Permissive);
        // Another workload's selector, and another namespace's policy, do not apply.
        let other = pa(
            "shop",
            "o",
            "{selector: {matchLabels: {app: ratings}}, mtls: {mode: DISABLE}}",
        );
        let elsewhere = pa("default", "d", "{mtls: {mode: DISABLE}}");
        assert_eq!(mode(&(mesh + &other + &elsewhere)).mode, MutualTls::Strict);
    }

    #[test]
    fn authorization_policies_apply_by_scope() {
        let ap = |ns: &str, name: &str, spec: &str| {
            format!(
                "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata: {{name: {name}, namespace: {ns}}}\nspec: {spec}\n---\n"
            )
        };
        let yaml = ap("istio-system", "root-deny", "{action: DENY, rules: [{}]}")
            + &ap(
                "istio-system",
                "root-sel",
                "{selector: {matchLabels: {app: reviews}}}",
            )
            + &ap("shop", "ns", "{}")
            + &ap("shop", "other", "{selector: {matchLabels: {app: ratings}}}")
            + &ap("default", "elsewhere", "{}")
            + &ap(
                "shop",
                "gw",
                "{targetRefs: [{kind: Gateway, group: gateway.networking.k8s.io, name: gw}]}",
            );
        let config = snapshot(&yaml);
        let p = authorization_policies(&config, "istio-system", &proxy());
        let names = |l: &[&Resource<AuthorizationPolicy>]| {
            l.iter()
                .map(|p| p.metadata.name.clone().unwrap())
                .collect::<Vec<_>>()
        };
        assert_eq!(names(&p.root_deny), ["root-deny"]);
        assert_eq!(names(&p.allow), ["root-sel", "ns"]);
        assert!(p.deny.is_empty() && p.custom.is_empty() && p.audit.is_empty());
    }
}
