//! EnvoyFilter checks: patch operations that Istio ignores for what they apply to, and
//! relative operations whose outcome depends on the order filters happen to apply in.

use crate::analyze::{Analyzer, Collection, Context, Entry, Message, Metadata, catalogue};
use crate::networking::{
    EnvoyApplyTo, EnvoyConfigObjectPatch, EnvoyFilter, EnvoyObjectMatch, EnvoyPatchOperation,
};
use crate::{Kind, Resource};

/// `envoyfilter.EnvoyPatchAnalyzer`: ADD and REMOVE are ignored for route configurations
/// and routes, REPLACE works only on filters, and relative operations (INSERT_BEFORE/AFTER,
/// REPLACE, REMOVE) without a priority may apply in either order.
pub struct EnvoyPatch;

/// The name a patch's filter is known by, to spot the same filter patched again once a
/// patch has pinned it to a proxy version: the value's `name`, else the matched filter's.
fn filter_name(patch: &EnvoyConfigObjectPatch) -> String {
    let Some(value) = patch.patch.as_ref().and_then(|p| p.value.as_ref()) else {
        return String::new();
    };
    if let Some(name) = value.get("name") {
        return name.to_string();
    }
    match patch.match_.as_ref().and_then(|m| m.object.as_ref()) {
        Some(EnvoyObjectMatch::Listener(listener)) => listener
            .filter_chain
            .as_ref()
            .and_then(|chain| chain.filter.as_ref())
            .map(|filter| filter.name.clone())
            .unwrap_or_default(),
        _ => String::new(),
    }
}

fn is_route_level(apply_to: EnvoyApplyTo) -> bool {
    matches!(
        apply_to,
        EnvoyApplyTo::RouteConfiguration | EnvoyApplyTo::HttpRoute
    )
}

impl Analyzer for EnvoyPatch {
    fn metadata(&self) -> Metadata {
        Metadata {
            name: "envoyfilter.EnvoyPatchAnalyzer".into(),
            description: "Checks an envoyFilters ",
            inputs: vec![Collection::of(Kind::EnvoyFilter)],
        }
    }

    fn analyze(&self, ctx: &Context, out: &mut Vec<Message>) {
        // Filters patched by a version-pinned patch so far, across every EnvoyFilter.
        let mut pinned: Vec<String> = Vec::new();
        for (entry, ef) in ctx.each::<Resource<EnvoyFilter>>() {
            analyze_filter(entry, &ef.spec, &mut pinned, out);
        }
    }
}

fn analyze_filter(
    entry: &Entry,
    ef: &EnvoyFilter,
    pinned: &mut Vec<String>,
    out: &mut Vec<Message>,
) {
    for (index, config) in ef.config_patches.iter().enumerate() {
        let Some(patch) = &config.patch else { break };
        let name = filter_name(config);
        let path = format!("spec.configPatches[{index}].patch.operation");
        let incorrect = match patch.operation {
            EnvoyPatchOperation::Add if is_route_level(config.apply_to) => {
                Some(catalogue::ENVOY_FILTER_USES_ADD_OPERATION_INCORRECTLY)
            }
            EnvoyPatchOperation::Remove if is_route_level(config.apply_to) => {
                Some(catalogue::ENVOY_FILTER_USES_REMOVE_OPERATION_INCORRECTLY)
            }
            EnvoyPatchOperation::Replace
                if !matches!(
                    config.apply_to,
                    EnvoyApplyTo::NetworkFilter | EnvoyApplyTo::HttpFilter
                ) =>
            {
                Some(catalogue::ENVOY_FILTER_USES_REPLACE_OPERATION_INCORRECTLY)
            }
            _ => None,
        };
        let relative = matches!(
            patch.operation,
            EnvoyPatchOperation::Remove
                | EnvoyPatchOperation::Replace
                | EnvoyPatchOperation::InsertBefore
                | EnvoyPatchOperation::InsertAfter
        );
        if let Some(ty) = incorrect {
            out.push(entry.message_at(&path, ty, Vec::new()));
        } else if relative && ef.priority == 0 {
            let ty = if pinned.contains(&name) {
                catalogue::ENVOY_FILTER_USES_RELATIVE_OPERATION_WITH_PROXY_VERSION
            } else {
                catalogue::ENVOY_FILTER_USES_RELATIVE_OPERATION
            };
            out.push(entry.message_at(&path, ty, Vec::new()));
        }
        let version_pinned = config
            .match_
            .as_ref()
            .and_then(|m| m.proxy.as_ref())
            .is_some_and(|p| !p.proxy_version.is_empty());
        if version_pinned {
            pinned.push(name);
        }
    }
}
