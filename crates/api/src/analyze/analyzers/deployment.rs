//! Workload checks: applications running as the sidecar's user, and Deployments whose
//! pods several Services reach in contradicting ways.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{Pod, PodSpec, Service};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;

use super::util::{PROXY_CONTAINER, go_list, in_mesh, is_control_plane, selects};
use crate::Kind;
use crate::analyze::{Analyzer, Collection, Context, Entry, Message, Metadata, args, catalogue};

/// The user ID Istio's sidecar runs as; applications must not use it.
const PROXY_UID: i64 = 1337;

/// The container Istio's operator runs in, exempt like the sidecar.
const OPERATOR_CONTAINER: &str = "istio-operator";

/// `applicationUID.Analyzer`: pods (and Deployments' pod templates) that run an
/// application as UID 1337, which the sidecar's traffic capture exempts.
pub struct ApplicationUid;

/// True when the pod, or one of its application containers, runs as the proxy's UID.
fn runs_as_proxy_uid(spec: &PodSpec) -> bool {
    let pod = spec.security_context.as_ref().and_then(|s| s.run_as_user);
    pod == Some(PROXY_UID)
        || spec
            .containers
            .iter()
            .filter(|c| c.name != PROXY_CONTAINER && c.name != OPERATOR_CONTAINER)
            .any(|c| c.security_context.as_ref().and_then(|s| s.run_as_user) == Some(PROXY_UID))
}

impl Analyzer for ApplicationUid {
    fn metadata(&self) -> Metadata {
        Metadata {
            name: "applicationUID.Analyzer".into(),
            description: "Checks invalid application UID",
            inputs: vec![Collection::of(Kind::Pod), Collection::of(Kind::Deployment)],
        }
    }

    fn analyze(&self, ctx: &Context, out: &mut Vec<Message>) {
        let pods = ctx
            .each::<Pod>()
            .map(|(entry, pod)| (entry, pod.spec.as_ref()));
        let deployments = ctx
            .each::<Deployment>()
            .map(|(entry, d)| (entry, d.spec.template.spec.as_ref()));
        for (entry, spec) in pods.chain(deployments) {
            // Istio reports the pod and each such container alike; its output dedupes
            // identical messages, leaving one per object.
            if !is_control_plane(entry) && spec.is_some_and(runs_as_proxy_uid) {
                out.push(entry.message(catalogue::INVALID_APPLICATION_UID, args![]));
            }
        }
    }
}

/// `deployment.MultiServiceAnalyzer`: a meshed Deployment's pods reached by several
/// Services on one port with different protocols, or on one target port from
/// different ports.
pub struct MultiService;

/// A Service selecting a Deployment's pods: its `namespace/name` and spec.
type Selecting<'a> = (String, &'a Service);

impl MultiService {
    /// The Services of the Deployment's namespace whose (non-empty) selector matches its
    /// pods, in input order.
    fn selecting<'a>(
        ctx: &'a Context,
        entry: &Entry,
        deployment: &Deployment,
    ) -> Vec<Selecting<'a>> {
        let labels = deployment
            .spec
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.as_ref());
        ctx.each::<Service>()
            .filter(|(svc_entry, svc)| {
                let selector = svc.spec.as_ref().and_then(|s| s.selector.as_ref());
                svc_entry.namespace() == entry.namespace()
                    && selector.is_some_and(|s| !s.is_empty() && selects(s, labels))
            })
            .map(|(svc_entry, svc)| {
                (
                    format!("{}/{}", svc_entry.namespace(), svc_entry.name()),
                    svc,
                )
            })
            .collect()
    }
}

impl Analyzer for MultiService {
    fn metadata(&self) -> Metadata {
        Metadata {
            name: "deployment.MultiServiceAnalyzer".into(),
            description: "Checks association between services and pods",
            inputs: vec![
                Collection::of(Kind::Service),
                Collection::of(Kind::Deployment),
                Collection::of(Kind::Namespace),
            ],
        }
    }

    fn analyze(&self, ctx: &Context, out: &mut Vec<Message>) {
        for (entry, deployment) in ctx.each::<Deployment>() {
            let waypoint =
                entry.label("gateway.istio.io/managed") == Some("istio.io-mesh-controller");
            let template = &deployment.spec.template;
            let meta = template.metadata.as_ref();
            let containers = template.spec.as_ref().map_or(&[][..], |s| &s.containers);
            if waypoint
                || !in_mesh(
                    ctx,
                    entry.namespace(),
                    meta.and_then(|m| m.labels.as_ref()),
                    meta.and_then(|m| m.annotations.as_ref()),
                    containers,
                )
            {
                continue;
            }
            let services = Self::selecting(ctx, entry, deployment);
            // port -> protocol -> services; target port -> port -> service.
            let mut protocols: BTreeMap<i32, BTreeMap<&str, Vec<&str>>> = BTreeMap::new();
            let mut targets: BTreeMap<String, BTreeMap<i32, &str>> = BTreeMap::new();
            for (name, svc) in &services {
                let ports = svc.spec.as_ref().and_then(|s| s.ports.as_deref());
                for port in ports.unwrap_or_default() {
                    let protocol = port.protocol.as_deref().unwrap_or("TCP");
                    protocols
                        .entry(port.port)
                        .or_default()
                        .entry(protocol)
                        .or_default()
                        .push(name);
                    let target = match &port.target_port {
                        Some(IntOrString::Int(n)) if *n != 0 => n.to_string(),
                        Some(IntOrString::String(s)) if !s.is_empty() => s.clone(),
                        _ => port.port.to_string(),
                    };
                    targets.entry(target).or_default().insert(port.port, name);
                }
            }
            let name = entry.name();
            for (port, by_protocol) in &protocols {
                if by_protocol.len() > 1 {
                    let mut names: Vec<&str> = by_protocol.values().flatten().copied().collect();
                    names.sort_unstable();
                    out.push(entry.message_at(
                        "metadata.name",
                        catalogue::DEPLOYMENT_ASSOCIATED_TO_MULTIPLE_SERVICES,
                        args![name, port, go_list(&names)],
                    ));
                }
            }
            for (target, by_port) in &targets {
                if by_port.len() > 1 {
                    let names: BTreeSet<&str> = by_port.values().copied().collect();
                    let ports: Vec<String> = by_port.keys().map(i32::to_string).collect();
                    out.push(entry.message_at(
                        "metadata.name",
                        catalogue::DEPLOYMENT_CONFLICTING_PORTS,
                        args![name, go_list(names), target, go_list(&ports)],
                    ));
                }
            }
        }
    }
}
