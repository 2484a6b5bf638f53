//! Telemetry checks: selectors no pod matches, pods selected by several Telemetries,
//! several Telemetries for a whole namespace, access logging with no provider, and the
//! deprecated Lightstep provider.

use std::collections::BTreeMap;

use super::util::{first_label_path, go_list, selected_pods, selector_string};
use crate::analyze::{Analyzer, Collection, Context, Entry, Message, Metadata, args, catalogue};
use crate::mesh;
use crate::object::ObjectKey;
use crate::telemetry::Telemetry;
use crate::{Kind, Resource};

type IstioTelemetry = Resource<Telemetry>;

/// `telemetry.SelectorAnalyzer`: a selector must match a pod of its namespace, and no
/// pod may be selected by two Telemetries.
pub struct Selector;

impl Analyzer for Selector {
    fn metadata(&self) -> Metadata {
        Metadata {
            name: "telemetry.SelectorAnalyzer".into(),
            description: "Validates that telemetries that define a selector match at least one pod, and that there aren't multiple telemetry resources that select overlapping pods",
            inputs: vec![Collection::of(Kind::Telemetry), Collection::of(Kind::Pod)],
        }
    }

    fn analyze(&self, ctx: &Context, out: &mut Vec<Message>) {
        let mut by_pod: BTreeMap<&ObjectKey, (&Entry, Vec<&Entry>)> = BTreeMap::new();
        for (entry, telemetry) in ctx.each::<IstioTelemetry>() {
            let Some(selector) = telemetry
                .spec
                .selector
                .as_ref()
                .map(|s| &s.match_labels)
                .filter(|labels| !labels.is_empty())
            else {
                continue;
            };
            let mut found = false;
            for pod in selected_pods(ctx, entry.namespace(), selector) {
                found = true;
                by_pod
                    .entry(pod.key())
                    .or_insert((pod, Vec::new()))
                    .1
                    .push(entry);
            }
            if !found {
                out.push(entry.message_at(
                    &first_label_path("spec.selector.matchLabels", selector),
                    catalogue::REFERENCED_RESOURCE_NOT_FOUND,
                    args!["selector", selector_string(selector)],
                ));
            }
        }
        for (pod, telemetries) in by_pod.values() {
            if telemetries.len() < 2 {
                continue;
            }
            let names = go_list(telemetries.iter().map(|t| t.name()));
            for telemetry in telemetries {
                out.push(telemetry.message_at(
                    "metadata.name",
                    catalogue::CONFLICTING_TELEMETRY_WORKLOAD_SELECTORS,
                    args![names, pod.namespace(), pod.name()],
                ));
            }
        }
    }
}

/// `telemetry.DefaultSelectorAnalyzer`: a namespace has at most one Telemetry without a
/// selector.
pub struct DefaultSelector;

impl Analyzer for DefaultSelector {
    fn metadata(&self) -> Metadata {
        Metadata {
            name: "telemetry.DefaultSelectorAnalyzer".into(),
            description: "Validates that there aren't multiple telemetry resources that have no selector",
            inputs: vec![Collection::of(Kind::Telemetry)],
        }
    }

    fn analyze(&self, ctx: &Context, out: &mut Vec<Message>) {
        let mut by_namespace: BTreeMap<&str, Vec<&Entry>> = BTreeMap::new();
        for (entry, telemetry) in ctx.each::<IstioTelemetry>() {
            if telemetry.spec.selector.is_none() {
                by_namespace
                    .entry(entry.namespace())
                    .or_default()
                    .push(entry);
            }
        }
        for (namespace, telemetries) in by_namespace {
            if telemetries.len() < 2 {
                continue;
            }
            let names = go_list(telemetries.iter().map(|t| t.name()));
            for telemetry in telemetries {
                out.push(telemetry.message(
                    catalogue::MULTIPLE_TELEMETRIES_WITHOUT_WORKLOAD_SELECTORS,
                    args![names, namespace],
                ));
            }
        }
    }
}

/// `telemetry.ProviderAnalyzer`: without default access log providers in the mesh
/// config, an enabled access logging entry must name a provider.
pub struct Provider;

impl Analyzer for Provider {
    fn metadata(&self) -> Metadata {
        Metadata {
            name: "telemetry.ProviderAnalyzer".into(),
            description: "Validates that providers in telemetry resource is valid",
            inputs: vec![Collection::of(Kind::Telemetry), Collection::MESH_CONFIG],
        }
    }

    fn analyze(&self, ctx: &Context, out: &mut Vec<Message>) {
        if !ctx.mesh().default_providers.access_logging.is_empty() {
            return;
        }
        for (entry, telemetry) in ctx.each::<IstioTelemetry>() {
            for (i, logging) in telemetry.spec.access_logging.iter().enumerate() {
                if logging.disabled != Some(true) && logging.providers.is_empty() {
                    out.push(entry.message_at(
                        &format!("spec.accessLogging[{i}]"),
                        catalogue::INVALID_TELEMETRY_PROVIDER,
                        args![entry.name(), entry.namespace()],
                    ));
                }
            }
        }
    }
}

/// `telemetry.LightstepAnalyzer`: tracing to a Lightstep provider, which Istio deprecated
/// in favour of OpenTelemetry.
pub struct Lightstep;

impl Analyzer for Lightstep {
    fn metadata(&self) -> Metadata {
        Metadata {
            name: "telemetry.LightstepAnalyzer".into(),
            description: "Validates that lightstep provider is still used",
            inputs: vec![Collection::of(Kind::Telemetry), Collection::MESH_CONFIG],
        }
    }

    fn analyze(&self, ctx: &Context, out: &mut Vec<Message>) {
        let lightstep: Vec<&str> = ctx
            .mesh()
            .extension_providers
            .iter()
            .filter(|p| p.provider == mesh::Provider::Unsupported(mesh::UnsupportedKind::Lightstep))
            .map(|p| p.name.as_str())
            .collect();
        if lightstep.is_empty() {
            return;
        }
        for (entry, telemetry) in ctx.each::<IstioTelemetry>() {
            for (i, tracing) in telemetry.spec.tracing.iter().enumerate() {
                for (j, provider) in tracing.providers.iter().enumerate() {
                    if lightstep.contains(&provider.name.as_str()) {
                        out.push(entry.message_at(
                            &format!("spec.tracing[{i}].providers[{j}].name"),
                            catalogue::DEPRECATED,
                            args![format!(
                                "The Lightstep provider {} is deprecated, please migrate to OpenTelemetry provider.",
                                provider.name
                            )],
                        ));
                    }
                }
            }
        }
    }
}
