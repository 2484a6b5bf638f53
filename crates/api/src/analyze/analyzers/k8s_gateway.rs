//! Gateway API checks: policies selecting a Gateway API gateway's pods by label (they
//! must name the Gateway with `targetRef`), and Gateway API CRDs too old for Istio.

use std::collections::BTreeMap;

use super::util::selects;
use crate::analyze::{Analyzer, Collection, Context, Entry, Message, Metadata, args, catalogue};
use crate::extensions::WasmPlugin;
use crate::security::{AuthorizationPolicy, RequestAuthentication};
use crate::telemetry::Telemetry;
use crate::types::{Labels, WorkloadSelector};
use crate::{Kind, Resource, Typed};

/// The label Istio puts on the pods it deploys for a Gateway API Gateway.
const GATEWAY_NAME_LABEL: &str = "gateway.networking.k8s.io/gateway-name";

/// A policy that picks its workloads by label selector or by reference.
trait Policy: Typed {
    /// The label selector, if any.
    fn selector(&self) -> Option<&WorkloadSelector>;
    /// True when the policy names the objects it attaches to.
    fn targets(&self) -> bool;
}

macro_rules! policies {
    ($($spec:ty),+) => {$(
        impl Policy for Resource<$spec> {
            fn selector(&self) -> Option<&WorkloadSelector> {
                self.spec.selector.as_ref()
            }

            fn targets(&self) -> bool {
                self.spec.target_ref.is_some() || !self.spec.target_refs.is_empty()
            }
        }
    )+};
}

policies!(
    AuthorizationPolicy,
    RequestAuthentication,
    Telemetry,
    WasmPlugin
);

/// `k8sgateway.SelectorAnalyzer`: a selector matching a Gateway API gateway's pods has no
/// effect there.
pub struct Selector;

impl Selector {
    fn check<T: Policy>(
        ctx: &Context,
        gateway_pods: &BTreeMap<&str, Vec<&Labels>>,
        out: &mut Vec<Message>,
    ) {
        for (entry, policy) in ctx.each::<T>() {
            if policy.targets() {
                continue;
            }
            let Some(selector) = policy.selector() else {
                continue;
            };
            let pods = gateway_pods.get(entry.namespace()).into_iter().flatten();
            for labels in pods {
                if selects(&selector.match_labels, Some(labels)) {
                    out.push(entry.message_at(
                        "spec.selector",
                        catalogue::INEFFECTIVE_SELECTOR,
                        args![labels[GATEWAY_NAME_LABEL]],
                    ));
                }
            }
        }
    }
}

impl Analyzer for Selector {
    fn metadata(&self) -> Metadata {
        Metadata {
            name: "k8sgateway.SelectorAnalyzer".into(),
            description: "Check that selectors are effective for Kubernetes gateway",
            inputs: vec![
                Collection::of(Kind::AuthorizationPolicy),
                Collection::of(Kind::RequestAuthentication),
                Collection::of(Kind::Telemetry),
                Collection::of(Kind::WasmPlugin),
                Collection::of(Kind::Pod),
            ],
        }
    }

    fn analyze(&self, ctx: &Context, out: &mut Vec<Message>) {
        let mut gateway_pods: BTreeMap<&str, Vec<&Labels>> = BTreeMap::new();
        let labelled = ctx
            .collection(Collection::of(Kind::Pod))
            .filter_map(|pod| Some((pod.namespace(), pod.meta().labels.as_ref()?)));
        for (namespace, labels) in labelled {
            if labels.contains_key(GATEWAY_NAME_LABEL) {
                gateway_pods.entry(namespace).or_default().push(labels);
            }
        }
        Self::check::<Resource<AuthorizationPolicy>>(ctx, &gateway_pods, out);
        Self::check::<Resource<RequestAuthentication>>(ctx, &gateway_pods, out);
        Self::check::<Resource<Telemetry>>(ctx, &gateway_pods, out);
        Self::check::<Resource<WasmPlugin>>(ctx, &gateway_pods, out);
    }
}

/// The Gateway API bundle version each CRD must have at least for Istio to watch it
/// (`gatewayapi.MinimumCRDVersions`).
const MINIMUM_CRD_VERSIONS: &[(&str, Version)] = &[
    ("grpcroutes.gateway.networking.k8s.io", Version(1, 1, 0)),
    (
        "backendtlspolicies.gateway.networking.k8s.io",
        Version(1, 4, 0),
    ),
    ("tlsroutes.gateway.networking.k8s.io", Version(1, 5, 0)),
];

/// The annotation carrying a Gateway API CRD's bundle version.
const BUNDLE_VERSION: &str = "gateway.networking.k8s.io/bundle-version";

/// A release version, major.minor.patch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Version(u64, u64, u64);

impl Version {
    /// Parses `v1.4.1`, `1.4` or `1.5.0-rc.1` as semver's lenient parser does; the
    /// pre-release and build parts are dropped, as the comparison ignores them.
    fn parse(text: &str) -> Option<Version> {
        let text = text.strip_prefix('v').unwrap_or(text);
        let release = text.split(['-', '+']).next()?;
        let mut parts = release.split('.').map(str::parse::<u64>);
        let major = parts.next()?.ok()?;
        let minor = parts.next().transpose().ok()?.unwrap_or(0);
        let patch = parts.next().transpose().ok()?.unwrap_or(0);
        parts
            .next()
            .is_none()
            .then_some(Version(major, minor, patch))
    }
}

impl std::fmt::Display for Version {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.0, self.1, self.2)
    }
}

/// `k8sgateway.CRDVersionAnalyzer`: Istio ignores Gateway API CRDs older than it needs,
/// so their resources are silently not processed.
pub struct CrdVersion;

impl Analyzer for CrdVersion {
    fn metadata(&self) -> Metadata {
        Metadata {
            name: "k8sgateway.CRDVersionAnalyzer".into(),
            description: "Checks Gateway API CRDs are at the minimum version required by this Istio version",
            inputs: vec![Collection::CRD],
        }
    }

    fn analyze(&self, ctx: &Context, out: &mut Vec<Message>) {
        for crd in ctx.collection(Collection::CRD) {
            if let Some(message) = crd_too_old(crd) {
                out.push(message);
            }
        }
    }
}

fn crd_too_old(crd: &Entry) -> Option<Message> {
    let (_, minimum) = MINIMUM_CRD_VERSIONS
        .iter()
        .find(|(name, _)| *name == crd.name())?;
    let annotated = crd.annotation(BUNDLE_VERSION)?;
    let installed = Version::parse(annotated)?;
    (installed < *minimum).then(|| {
        let shown = annotated.strip_prefix('v').unwrap_or(annotated);
        crd.message_at(
            &format!("metadata.annotations[{BUNDLE_VERSION}]"),
            catalogue::GATEWAY_APICRD_VERSION_BELOW_MINIMUM,
            args![crd.name(), shown, minimum],
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bundle_versions_parse_leniently() {
        assert_eq!(Version::parse("v1.4.1"), Some(Version(1, 4, 1)));
        assert_eq!(Version::parse("1.5"), Some(Version(1, 5, 0)));
        assert_eq!(Version::parse("v1.5.0-rc.1"), Some(Version(1, 5, 0)));
        assert_eq!(Version::parse("one"), None);
        assert!(Version(1, 4, 1) < Version(1, 5, 0));
    }
}
