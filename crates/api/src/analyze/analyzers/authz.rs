//! AuthorizationPolicy checks: policies that select no workload in the mesh, and source
//! namespaces that do not exist.

use k8s_openapi::api::core::v1::Pod;

use super::util::{pod_in_ambient, pod_in_mesh, selector_string, selects};
use crate::analyze::{Analyzer, Collection, Context, Message, Metadata, args, catalogue};
use crate::security::AuthorizationPolicy;
use crate::types::Labels;
use crate::{Kind, Resource};

/// `auth.AuthorizationPoliciesAnalyzer`: a policy must apply to some workload of the mesh
/// (sidecar-injected or ambient) and name only namespaces that exist.
pub struct AuthorizationPolicies;

/// True when namespace `ns` matches `pattern`: `*`, a `*suffix`, a `prefix*`, or a name
/// compared without case.
fn namespace_matches(ns: &str, pattern: &str) -> bool {
    if pattern == "*" {
        true
    } else if let Some(suffix) = pattern.strip_prefix('*') {
        ns.ends_with(suffix)
    } else if let Some(prefix) = pattern.strip_suffix('*') {
        ns.starts_with(prefix)
    } else {
        ns.eq_ignore_ascii_case(pattern)
    }
}

impl Analyzer for AuthorizationPolicies {
    fn metadata(&self) -> Metadata {
        Metadata {
            name: "auth.AuthorizationPoliciesAnalyzer".into(),
            description: "Checks the validity of authorization policies",
            inputs: vec![
                Collection::MESH_CONFIG,
                Collection::of(Kind::AuthorizationPolicy),
                Collection::of(Kind::Namespace),
                Collection::of(Kind::Pod),
            ],
        }
    }

    fn analyze(&self, ctx: &Context, out: &mut Vec<Message>) {
        // (namespace, labels) of every pod in the mesh.
        let meshed: Vec<(&str, Option<&Labels>)> = ctx
            .each::<Pod>()
            .filter(|(entry, pod)| pod_in_mesh(ctx, entry, pod) || pod_in_ambient(entry))
            .map(|(entry, pod)| (entry.namespace(), pod.metadata.labels.as_ref()))
            .collect();
        let namespaces: Vec<&str> = ctx
            .collection(Collection::of(Kind::Namespace))
            .map(|ns| ns.name())
            .collect();
        let root = ctx.mesh().root_namespace.as_str();
        for (entry, policy) in ctx.each::<Resource<AuthorizationPolicy>>() {
            let spec = &policy.spec;
            let ns = entry.namespace();
            let selector = spec.selector.as_ref().map(|s| &s.match_labels);
            // Policies of the root namespace apply mesh-wide.
            let mesh_wide = ns == root;
            let selects_pod = |selector: &Labels| {
                meshed.iter().any(|(pod_ns, labels)| {
                    (mesh_wide || *pod_ns == ns) && selects(selector, *labels)
                })
            };
            let unmatched = match selector {
                None if mesh_wide => None,
                None => (!meshed.iter().any(|(pod_ns, _)| *pod_ns == ns)).then(String::new),
                Some(selector) => (!selects_pod(selector)).then(|| selector_string(selector)),
            };
            if let Some(labels) = unmatched {
                out.push(entry.message(catalogue::NO_MATCHING_WORKLOADS_FOUND, args![labels]));
            }

            for (i, rule) in spec.rules.iter().enumerate() {
                for (j, from) in rule.from.iter().enumerate() {
                    let Some(source) = &from.source else { continue };
                    let listed = [
                        ("namespaces", &source.namespaces),
                        ("notNamespaces", &source.not_namespaces),
                    ];
                    for (field, patterns) in listed {
                        for (k, pattern) in patterns.iter().enumerate() {
                            if !namespaces.iter().any(|n| namespace_matches(n, pattern)) {
                                out.push(entry.message_at(
                                    &format!("spec.rules[{i}].from[{j}].source.{field}[{k}]"),
                                    catalogue::REFERENCED_RESOURCE_NOT_FOUND,
                                    args!["namespace", pattern],
                                ));
                            }
                        }
                    }
                }
            }
        }
    }
}
