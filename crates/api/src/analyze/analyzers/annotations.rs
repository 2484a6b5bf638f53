//! Annotation checks on Kubernetes objects: Istio annotations that do not exist, sit on
//! the wrong kind, hold invalid values, are deprecated, or belong to alpha features.

use std::net::IpAddr;

use k8s_openapi::api::core::v1::Pod;

use super::util::SIDECAR_INJECT;
use crate::analyze::{Analyzer, Collection, Context, Entry, Message, Metadata, args, catalogue};
use crate::{Kind, Object};

/// How mature the feature an annotation controls is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Maturity {
    Alpha,
    Beta,
    Stable,
}

/// One of Istio's resource annotations (istio.io/api `annotation.AllResourceAnnotations`).
struct Annotation {
    name: &'static str,
    maturity: Maturity,
    deprecated: bool,
    /// The kinds it may be set on; `Any` for all.
    kinds: &'static [&'static str],
}

macro_rules! annotations {
    ($($name:literal $maturity:ident $deprecated:literal [$($kind:ident),+];)+) => {
        /// Istio's annotations, by name.
        const ANNOTATIONS: &[Annotation] = &[$(Annotation {
            name: $name,
            maturity: Maturity::$maturity,
            deprecated: $deprecated,
            kinds: &[$(stringify!($kind)),+],
        }),+];
    };
}

annotations! {
    "alpha.istio.io/canonical-serviceaccounts" Alpha true [Service];
    "alpha.istio.io/kubernetes-serviceaccounts" Alpha true [Service];
    "ambient.istio.io/bypass-inbound-capture" Alpha false [Pod];
    "ambient.istio.io/redirection" Beta false [Pod];
    "ambient.istio.io/waypoint-inbound-binding" Alpha false [GatewayClass, Gateway];
    "galley.istio.io/analyze-suppress" Alpha false [Any];
    "gateway.istio.io/controller-version" Alpha false [Any];
    "gateway.istio.io/name-override" Alpha false [Gateway];
    "gateway.istio.io/service-account" Alpha false [Gateway];
    "inject.istio.io/templates" Alpha false [Pod];
    "istio.io/autoRegistrationGroup" Alpha false [WorkloadEntry];
    "istio.io/connectedAt" Alpha false [WorkloadEntry];
    "istio.io/disconnectedAt" Alpha false [WorkloadEntry];
    "istio.io/dry-run" Alpha false [AuthorizationPolicy];
    "istio.io/rev" Alpha false [Pod];
    "istio.io/workloadController" Alpha false [WorkloadEntry];
    "kubernetes.io/ingress.class" Stable false [Ingress];
    "networking.istio.io/exportTo" Alpha false [Service];
    "networking.istio.io/service-type" Alpha false [Gateway];
    "networking.istio.io/traffic-distribution" Alpha false [Service, ServiceEntry];
    "prometheus.istio.io/merge-metrics" Alpha false [Pod];
    "proxy.istio.io/config" Beta false [Pod];
    "proxy.istio.io/overrides" Alpha false [Pod];
    "readiness.status.sidecar.istio.io/applicationPorts" Alpha false [Pod];
    "readiness.status.sidecar.istio.io/failureThreshold" Alpha false [Pod];
    "readiness.status.sidecar.istio.io/initialDelaySeconds" Alpha false [Pod];
    "readiness.status.sidecar.istio.io/periodSeconds" Alpha false [Pod];
    "sidecar.istio.io/agentLogLevel" Alpha false [Pod];
    "sidecar.istio.io/bootstrapOverride" Alpha false [Pod];
    "sidecar.istio.io/componentLogLevel" Alpha false [Pod];
    "sidecar.istio.io/discoveryAddress" Alpha true [Pod];
    "sidecar.istio.io/enableCoreDump" Alpha false [Pod];
    "sidecar.istio.io/extraStatTags" Alpha true [Pod];
    "sidecar.istio.io/inject" Beta true [Pod];
    "sidecar.istio.io/interceptionMode" Alpha false [Pod];
    "sidecar.istio.io/logLevel" Alpha false [Pod];
    "sidecar.istio.io/nativeSidecar" Alpha false [Pod];
    "sidecar.istio.io/proxyCPU" Alpha false [Pod];
    "sidecar.istio.io/proxyCPULimit" Alpha false [Pod];
    "sidecar.istio.io/proxyImage" Alpha false [Pod];
    "sidecar.istio.io/proxyImageType" Alpha false [Pod];
    "sidecar.istio.io/proxyMemory" Alpha false [Pod];
    "sidecar.istio.io/proxyMemoryLimit" Alpha false [Pod];
    "sidecar.istio.io/rewriteAppHTTPProbers" Alpha false [Pod];
    "sidecar.istio.io/statsHistogramBuckets" Alpha false [Pod];
    "sidecar.istio.io/statsInclusionPrefixes" Alpha true [Pod];
    "sidecar.istio.io/statsInclusionRegexps" Alpha true [Pod];
    "sidecar.istio.io/statsInclusionSuffixes" Alpha true [Pod];
    "sidecar.istio.io/status" Alpha false [Pod];
    "sidecar.istio.io/userVolume" Alpha false [Pod];
    "sidecar.istio.io/userVolumeMount" Alpha false [Pod];
    "status.sidecar.istio.io/port" Alpha false [Pod];
    "topology.istio.io/controlPlaneClusters" Alpha false [Namespace];
    "traffic.istio.io/nodeSelector" Stable false [Service];
    "traffic.sidecar.istio.io/excludeInboundPorts" Alpha false [Pod];
    "traffic.sidecar.istio.io/excludeInterfaces" Alpha false [Pod];
    "traffic.sidecar.istio.io/excludeOutboundIPRanges" Alpha false [Pod];
    "traffic.sidecar.istio.io/excludeOutboundPorts" Alpha false [Pod];
    "traffic.sidecar.istio.io/includeInboundPorts" Alpha false [Pod];
    "traffic.sidecar.istio.io/includeOutboundIPRanges" Alpha false [Pod];
    "traffic.sidecar.istio.io/includeOutboundPorts" Alpha false [Pod];
    "traffic.sidecar.istio.io/kubevirtInterfaces" Alpha false [Pod];
}

/// Annotations Istio's controllers set themselves, never reported.
const ALWAYS_IGNORED: [&str; 3] = [
    "sidecar.istio.io/status",
    "gateway.istio.io/controller-version",
    "istio.io/rev",
];

/// Alpha annotations injection sets on pods when capture is done by the CNI plugin
/// rather than an `istio-init` container; reported only where `istio-init` runs.
const SET_BY_CNI: [&str; 4] = [
    "sidecar.istio.io/interceptionMode",
    "traffic.sidecar.istio.io/includeInboundPorts",
    "traffic.sidecar.istio.io/excludeInboundPorts",
    "traffic.sidecar.istio.io/includeOutboundIPRanges",
];

/// The kinds whose annotations are checked.
const ANNOTATED: [Kind; 4] = [Kind::Namespace, Kind::Service, Kind::Pod, Kind::Deployment];

/// True for annotations in Istio's domain (and the Ingress class Istio documents).
fn is_istio(name: &str) -> bool {
    name == "kubernetes.io/ingress.class"
        || name
            .split('/')
            .next()
            .is_some_and(|d| d.ends_with("istio.io"))
}

fn lookup(name: &str) -> Option<&'static Annotation> {
    ANNOTATIONS.iter().find(|a| a.name == name)
}

/// Every Istio annotation of every checked object, with its definition if it has one.
fn istio_annotations(ctx: &Context) -> impl Iterator<Item = (&Entry, &str, &str)> {
    ANNOTATED
        .into_iter()
        .flat_map(|kind| ctx.collection(Collection::of(kind)))
        .flat_map(|entry| {
            entry
                .meta()
                .annotations
                .iter()
                .flatten()
                .filter(|(name, _)| is_istio(name) && !ALWAYS_IGNORED.contains(&name.as_str()))
                .map(move |(name, value)| (entry, name.as_str(), value.as_str()))
        })
}

fn annotation_path(name: &str) -> String {
    format!("metadata.annotations[{name}]")
}

/// `annotations.K8sAnalyzer`: unknown, misplaced, invalid and deprecated Istio
/// annotations on Namespaces, Services, Pods and Deployments.
pub struct K8sAnnotations;

impl Analyzer for K8sAnnotations {
    fn metadata(&self) -> Metadata {
        Metadata {
            name: "annotations.K8sAnalyzer".into(),
            description: "Checks for misplaced and invalid Istio annotations in Kubernetes resources",
            inputs: ANNOTATED.into_iter().map(Collection::of).collect(),
        }
    }

    fn analyze(&self, ctx: &Context, out: &mut Vec<Message>) {
        for (entry, name, value) in istio_annotations(ctx) {
            let path = annotation_path(name);
            let Some(def) = lookup(name) else {
                out.push(entry.message_at(&path, catalogue::UNKNOWN_ANNOTATION, args![name]));
                continue;
            };
            // Both the deprecated annotation and the label replacing it: the author
            // knows, and keeps both for older Istio versions.
            let replaced_too = name == SIDECAR_INJECT && entry.label(SIDECAR_INJECT).is_some();
            if def.deprecated && !replaced_too {
                let extra = if name == SIDECAR_INJECT {
                    r#" in favor of the "sidecar.istio.io/inject" label"#
                } else {
                    ""
                };
                out.push(entry.message_at(
                    &path,
                    catalogue::DEPRECATED_ANNOTATION,
                    args![name, extra],
                ));
            }
            if def.kinds.contains(&"Any") {
                continue;
            }
            if !def.kinds.contains(&entry.key().kind.as_str()) {
                out.push(entry.message_at(
                    &path,
                    catalogue::MISPLACED_ANNOTATION,
                    args![name, def.kinds.join(", ")],
                ));
                continue;
            }
            if let Err(problem) = validate(name, value) {
                out.push(entry.message_at(
                    &path,
                    catalogue::INVALID_ANNOTATION,
                    args![name, problem],
                ));
            }
        }
    }
}

/// `annotations.AlphaAnalyzer` (opt-in): annotations of alpha features, which may
/// change or go away.
pub struct AlphaAnnotations;

/// True for pods whose traffic capture is the CNI plugin's (no `istio-init` container).
fn captured_by_cni(entry: &Entry) -> bool {
    match &entry.object {
        Object::Pod(pod) => !pod_has_init(pod),
        _ => false,
    }
}

fn pod_has_init(pod: &Pod) -> bool {
    pod.spec
        .iter()
        .flat_map(|s| s.init_containers.iter().flatten())
        .any(|c| c.name == "istio-init")
}

impl Analyzer for AlphaAnnotations {
    fn metadata(&self) -> Metadata {
        Metadata {
            name: "annotations.AlphaAnalyzer".into(),
            description: "Checks for alpha Istio annotations in Kubernetes resources",
            inputs: ANNOTATED.into_iter().map(Collection::of).collect(),
        }
    }

    fn analyze(&self, ctx: &Context, out: &mut Vec<Message>) {
        for (entry, name, _) in istio_annotations(ctx) {
            if lookup(name).is_none_or(|def| def.maturity != Maturity::Alpha) {
                continue;
            }
            if SET_BY_CNI.contains(&name) && captured_by_cni(entry) {
                continue;
            }
            out.push(entry.message_at(
                &annotation_path(name),
                catalogue::ALPHA_ANNOTATION,
                args![name],
            ));
        }
    }
}

/// Checks an annotation's value as Istio's injector does (`inject.AnnotationValidation`).
fn validate(name: &str, value: &str) -> Result<(), String> {
    match name {
        "sidecar.istio.io/interceptionMode" => match value {
            "REDIRECT" | "TPROXY" | "NONE" => Ok(()),
            _ => Err(format!(
                "interceptionMode {value:?} is not one of REDIRECT, TPROXY, NONE"
            )),
        },
        "sidecar.istio.io/enableCoreDump" | "prometheus.istio.io/merge-metrics" => match value {
            "1" | "t" | "T" | "TRUE" | "true" | "True" | "0" | "f" | "F" | "FALSE" | "false"
            | "False" => Ok(()),
            _ => Err(format!("{value:?} is not a boolean")),
        },
        "status.sidecar.istio.io/port" => value
            .parse::<u16>()
            .map(drop)
            .map_err(|_| format!("{value:?} is not a port")),
        "readiness.status.sidecar.istio.io/initialDelaySeconds"
        | "readiness.status.sidecar.istio.io/periodSeconds"
        | "readiness.status.sidecar.istio.io/failureThreshold" => value
            .parse::<u32>()
            .map(drop)
            .map_err(|_| format!("{value:?} is not an unsigned 32-bit integer")),
        "traffic.sidecar.istio.io/includeOutboundIPRanges" if value == "*" => Ok(()),
        "traffic.sidecar.istio.io/includeOutboundIPRanges"
        | "traffic.sidecar.istio.io/excludeOutboundIPRanges" => list(value, cidr),
        "traffic.sidecar.istio.io/includeInboundPorts" if value == "*" => Ok(()),
        "traffic.sidecar.istio.io/includeInboundPorts"
        | "traffic.sidecar.istio.io/excludeInboundPorts"
        | "traffic.sidecar.istio.io/includeOutboundPorts"
        | "traffic.sidecar.istio.io/excludeOutboundPorts" => list(value, port),
        "proxy.istio.io/config" => match serde_yaml_ng::from_str::<serde_json::Value>(value) {
            Ok(serde_json::Value::Object(_) | serde_json::Value::Null) => Ok(()),
            Ok(_) => Err("proxy config must be a mapping".into()),
            Err(e) => Err(format!("proxy config: {e}")),
        },
        _ => Ok(()),
    }
}

/// Checks each non-empty item of a comma-separated list.
fn list(value: &str, item: fn(&str) -> Result<(), String>) -> Result<(), String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|i| !i.is_empty())
        .try_for_each(item)
}

fn cidr(range: &str) -> Result<(), String> {
    let invalid = || format!("{range:?} is not a CIDR range");
    let (addr, bits) = range.split_once('/').ok_or_else(invalid)?;
    let addr: IpAddr = addr.parse().map_err(|_| invalid())?;
    let bits: u8 = bits.parse().map_err(|_| invalid())?;
    let max = if addr.is_ipv4() { 32 } else { 128 };
    (bits <= max).then_some(()).ok_or_else(invalid)
}

fn port(port: &str) -> Result<(), String> {
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err(format!("{port:?} is not a port")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_are_checked_as_the_injector_checks_them() {
        assert!(validate("readiness.status.sidecar.istio.io/periodSeconds", "10").is_ok());
        assert!(validate("readiness.status.sidecar.istio.io/periodSeconds", "bar").is_err());
        assert!(validate("traffic.sidecar.istio.io/includeOutboundIPRanges", "*").is_ok());
        assert!(
            validate(
                "traffic.sidecar.istio.io/excludeOutboundIPRanges",
                "10.0.0.0/8, ::1/128"
            )
            .is_ok()
        );
        assert!(
            validate(
                "traffic.sidecar.istio.io/excludeOutboundIPRanges",
                "10.0.0.0/33"
            )
            .is_err()
        );
        assert!(validate("traffic.sidecar.istio.io/excludeInboundPorts", "15020,0").is_err());
        assert!(validate("sidecar.istio.io/interceptionMode", "TPROXY").is_ok());
        assert!(validate("proxy.istio.io/config", "{}").is_ok());
    }
}
