//! Webhook checks: Istio's sidecar-injector webhooks that overlap (so a pod would be
//! injected twice) or call a Service that does not exist.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::apimachinery::pkg::apis::meta::v1::LabelSelector;
use serde::Deserialize;

use super::util::{
    INJECTION_LABEL, REVISION_LABEL, SIDECAR_INJECT, go_list, label_selector_matches,
};
use crate::Kind;
use crate::analyze::{Analyzer, Collection, Context, Entry, Message, Metadata, args, catalogue};
use crate::types::Labels;

/// The fields of a Mutating- or ValidatingWebhookConfiguration analyzers read.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct WebhookConfiguration {
    /// Its webhooks.
    pub webhooks: Vec<Webhook>,
}

/// One webhook of a configuration.
#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
pub(super) struct Webhook {
    /// Its name, e.g. `namespace.sidecar-injector.istio.io`.
    pub name: String,
    /// How the API server reaches it.
    pub client_config: ClientConfig,
    /// The namespaces whose objects it sees (all when unset).
    pub namespace_selector: Option<LabelSelector>,
    /// The objects it sees (all when unset).
    pub object_selector: Option<LabelSelector>,
}

impl Webhook {
    /// True for webhooks of Istio's (named `….istio.io`).
    pub fn is_istio(&self) -> bool {
        self.name.ends_with("istio.io")
    }

    /// True when it sees objects labelled `object` in a namespace labelled `namespace`.
    pub fn selects(&self, namespace: &Labels, object: &Labels) -> bool {
        label_selector_matches(self.namespace_selector.as_ref(), namespace)
            && label_selector_matches(self.object_selector.as_ref(), object)
    }
}

/// Where a webhook is served: a URL or an in-cluster Service.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct ClientConfig {
    /// An external URL.
    pub url: Option<String>,
    /// An in-cluster Service.
    pub service: Option<ServiceRef>,
}

/// A webhook's Service.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct ServiceRef {
    /// Its name.
    pub name: String,
    /// Its namespace.
    pub namespace: String,
}

/// `webhook.Analyzer`: Istio's injection webhooks must not overlap for any combination
/// of the namespace and pod labels that control injection, and must call Services that
/// exist.
pub struct Webhooks;

/// The label sets injection is controlled by, each with and without every revision.
fn permutations(base: [(&str, &str); 2], revisions: &BTreeSet<String>) -> Vec<Labels> {
    let plain = [None, Some(base[0]), Some(base[1])];
    let mut sets = Vec::new();
    for revision in std::iter::once(None).chain(revisions.iter().map(Some)) {
        for label in plain {
            let mut set = Labels::new();
            if let Some((k, v)) = label {
                set.insert(k.into(), v.into());
            }
            if let Some(rev) = revision {
                set.insert(REVISION_LABEL.into(), rev.clone());
            }
            sets.push(set);
        }
    }
    sets
}

/// The revisions a webhook configuration serves: its `istio.io/rev` label and those its
/// webhooks' selectors name.
fn revisions(entry: &Entry, config: &WebhookConfiguration) -> BTreeSet<String> {
    let mut revisions: BTreeSet<String> = entry
        .label(REVISION_LABEL)
        .map(str::to_owned)
        .into_iter()
        .collect();
    let selectors = config
        .webhooks
        .iter()
        .flat_map(|w| [&w.namespace_selector, &w.object_selector])
        .flatten();
    for selector in selectors {
        revisions.extend(
            selector
                .match_labels
                .iter()
                .flatten()
                .filter(|(k, _)| *k == REVISION_LABEL)
                .map(|(_, v)| v.clone()),
        );
        for expr in selector.match_expressions.iter().flatten() {
            if expr.key == REVISION_LABEL {
                revisions.extend(expr.values.iter().flatten().cloned());
            }
        }
    }
    revisions
}

impl Analyzer for Webhooks {
    fn metadata(&self) -> Metadata {
        Metadata {
            name: "webhook.Analyzer".into(),
            description: "Checks the validity of Istio webhooks",
            inputs: vec![Collection::MUTATING_WEBHOOK, Collection::of(Kind::Service)],
        }
    }

    fn analyze(&self, ctx: &Context, out: &mut Vec<Message>) {
        let mut configs = Vec::new();
        let mut all_revisions = BTreeSet::new();
        for (entry, config) in ctx.decoded::<WebhookConfiguration>(Collection::MUTATING_WEBHOOK) {
            let revisions = revisions(entry, &config);
            if revisions.is_empty() && !config.webhooks.iter().any(Webhook::is_istio) {
                continue;
            }
            all_revisions.extend(revisions);
            configs.push((entry, config));
        }
        let namespaces = permutations(
            [(INJECTION_LABEL, "enabled"), (INJECTION_LABEL, "disabled")],
            &all_revisions,
        );
        let objects = permutations(
            [(SIDECAR_INJECT, "true"), (SIDECAR_INJECT, "false")],
            &all_revisions,
        );
        // Each overlapping webhook is reported once per label combination it overlaps in;
        // Istio's output dedupes identical messages, so this keeps distinct ones.
        let mut overlaps: BTreeMap<(usize, &str), BTreeSet<Vec<String>>> = BTreeMap::new();
        for ns in &namespaces {
            for object in &objects {
                let matches: Vec<(usize, &str)> = configs
                    .iter()
                    .enumerate()
                    .flat_map(|(i, (_, c))| c.webhooks.iter().map(move |w| (i, w)))
                    .filter(|(_, w)| w.selects(ns, object))
                    .map(|(i, w)| (i, w.name.as_str()))
                    .collect();
                if matches.len() < 2 {
                    continue;
                }
                for &hook in &matches {
                    let others: Vec<String> = matches
                        .iter()
                        .filter(|&&m| m != hook)
                        .map(|&(i, name)| format!("{}/{name}", configs[i].0.name()))
                        .collect();
                    overlaps.entry(hook).or_default().insert(others);
                }
            }
        }
        for ((i, _), all_others) in overlaps {
            for others in all_others {
                out.push(configs[i].0.message(
                    catalogue::INVALID_WEBHOOK,
                    args![format!(
                        "Webhook overlaps with others: {}. This may cause injection to occur twice.",
                        go_list(&others)
                    )],
                ));
            }
        }
        for (entry, config) in &configs {
            for hook in &config.webhooks {
                let Some(svc) = &hook.client_config.service else {
                    continue;
                };
                if !ctx.exists(Collection::of(Kind::Service), &svc.namespace, &svc.name) {
                    out.push(entry.message(
                        catalogue::INVALID_WEBHOOK,
                        args![format!(
                            "Injector refers to a control plane service that does not exist: {}/{}.",
                            svc.namespace, svc.name
                        )],
                    ));
                }
            }
        }
    }
}
