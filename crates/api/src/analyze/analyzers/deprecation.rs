//! Deprecation checks: fields Istio ignores or replaced, and removed kinds still defined.

use serde::Deserialize;

use crate::analyze::{Analyzer, Collection, Context, Message, Metadata, args, catalogue};
use crate::networking::{Sidecar, VirtualService};
use crate::{Kind, Resource};

/// Istio kinds whose definitions were removed (`rbac.istio.io`, replaced by
/// AuthorizationPolicy), as `(group, kind)`.
const REMOVED_KINDS: [(&str, &str); 4] = [
    ("rbac.istio.io", "ClusterRbacConfig"),
    ("rbac.istio.io", "RbacConfig"),
    ("rbac.istio.io", "ServiceRole"),
    ("rbac.istio.io", "ServiceRoleBinding"),
];

/// The fields of a CustomResourceDefinition that name its kind.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct CrdFields {
    spec: CrdSpec,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct CrdSpec {
    group: String,
    names: CrdNames,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct CrdNames {
    kind: String,
}

/// `deprecation.DeprecationAnalyzer`: the integer `fault.delay.percent` of
/// VirtualServices, the ignored `egressProxy` of Sidecars, and CRDs of removed kinds.
pub struct Deprecation;

impl Analyzer for Deprecation {
    fn metadata(&self) -> Metadata {
        Metadata {
            name: "deprecation.DeprecationAnalyzer".into(),
            description: "Checks for deprecated Istio types and fields",
            inputs: vec![
                Collection::of(Kind::VirtualService),
                Collection::of(Kind::Sidecar),
                Collection::CRD,
            ],
        }
    }

    fn analyze(&self, ctx: &Context, out: &mut Vec<Message>) {
        for (entry, vs) in ctx.each::<Resource<VirtualService>>() {
            for (i, route) in vs.spec.http.iter().enumerate() {
                let delay = route.fault.as_ref().and_then(|f| f.delay.as_ref());
                if delay.is_some_and(|d| d.percent > 0) {
                    out.push(entry.message_at(
                        &format!("spec.http[{i}].fault.delay.percent"),
                        catalogue::DEPRECATED,
                        args!["HTTPRoute.fault.delay.percent is deprecated; use HTTPRoute.fault.delay.percentage"],
                    ));
                }
            }
        }
        for (entry, sidecar) in ctx.each::<Resource<Sidecar>>() {
            let policy = sidecar.spec.outbound_traffic_policy.as_ref();
            if policy.is_some_and(|p| p.egress_proxy.is_some()) {
                out.push(entry.message_at(
                    "spec.outboundTrafficPolicy.egressProxy",
                    catalogue::DEPRECATED,
                    args!["OutboundTrafficPolicy.EgressProxy ignored"],
                ));
            }
        }
        for (entry, crd) in ctx.decoded::<CrdFields>(Collection::CRD) {
            let (group, kind) = (crd.spec.group.as_str(), crd.spec.names.kind.as_str());
            if REMOVED_KINDS.contains(&(group, kind)) {
                out.push(entry.message(
                    catalogue::DEPRECATED,
                    args![format!("Custom resource type {group} {kind} is removed")],
                ));
            }
        }
    }
}
