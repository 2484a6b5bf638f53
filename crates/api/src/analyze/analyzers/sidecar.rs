//! Sidecar checks: selectors no pod matches, pods selected by several Sidecars, several
//! Sidecars for a whole namespace, and Sidecars that ambient mode makes pointless.

use std::collections::{BTreeMap, BTreeSet};

use super::util::{
    first_label_path, go_list, namespace_in_ambient, pod_in_ambient, selected_pods, selector_string,
};
use crate::analyze::{Analyzer, Collection, Context, Entry, Message, Metadata, args, catalogue};
use crate::networking::Sidecar;
use crate::object::ObjectKey;
use crate::{Kind, Resource};

/// `sidecar.SelectorAnalyzer`: a workload selector must match a pod of its namespace, no
/// pod may be selected by two Sidecars, and a namespace has at most one Sidecar without
/// a selector; in ambient mode, where there is no sidecar, each is only ineffective.
pub struct Selector;

impl Analyzer for Selector {
    fn metadata(&self) -> Metadata {
        Metadata {
            name: "sidecar.SelectorAnalyzer".into(),
            description: "Validates that sidecars that define a workload selector match at least one pod, and that there aren't multiple sidecar resources that select overlapping pods",
            inputs: vec![
                Collection::of(Kind::Sidecar),
                Collection::of(Kind::Pod),
                Collection::of(Kind::Namespace),
            ],
        }
    }

    fn analyze(&self, ctx: &Context, out: &mut Vec<Message>) {
        let mut by_pod: BTreeMap<&ObjectKey, (&Entry, Vec<&Entry>)> = BTreeMap::new();
        let mut namespace_wide: BTreeMap<&str, Vec<&Entry>> = BTreeMap::new();
        for (entry, sidecar) in ctx.each::<Resource<Sidecar>>() {
            let selector = match &sidecar.spec.workload_selector {
                Some(s) if !s.labels.is_empty() => &s.labels,
                _ => {
                    namespace_wide
                        .entry(entry.namespace())
                        .or_default()
                        .push(entry);
                    continue;
                }
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
                    &first_label_path("spec.workloadSelector.labels", selector),
                    catalogue::REFERENCED_RESOURCE_NOT_FOUND,
                    args!["selector", selector_string(selector)],
                ));
            }
        }

        let mut ineffective = BTreeSet::new();
        let mut report_ineffective = |entry: &Entry, reason: &str, out: &mut Vec<Message>| {
            if ineffective.insert(entry.key().clone()) {
                out.push(entry.message(catalogue::INEFFECTIVE_POLICY, args![reason]));
            }
        };
        for (pod, sidecars) in by_pod.values() {
            let ambient = pod_in_ambient(pod);
            if sidecars.len() == 1 && !ambient {
                continue;
            }
            let names = go_list(sidecars.iter().map(|s| s.name()));
            for sidecar in sidecars {
                if ambient {
                    report_ineffective(
                        sidecar,
                        "selected workload is in ambient mode, the policy has no impact",
                        out,
                    );
                    continue;
                }
                out.push(sidecar.message_at(
                    "metadata.name",
                    catalogue::CONFLICTING_SIDECAR_WORKLOAD_SELECTORS,
                    args![names, pod.namespace(), pod.name()],
                ));
            }
        }
        for (namespace, sidecars) in namespace_wide {
            let ns = ctx.find(Collection::of(Kind::Namespace), "", namespace);
            if namespace_in_ambient(ns) {
                for sidecar in sidecars {
                    report_ineffective(
                        sidecar,
                        "namespace is in ambient mode, the policy has no impact",
                        out,
                    );
                }
                continue;
            }
            if sidecars.len() > 1 {
                let names = go_list(sidecars.iter().map(|s| s.name()));
                for sidecar in sidecars {
                    out.push(sidecar.message(
                        catalogue::MULTIPLE_SIDECARS_WITHOUT_WORKLOAD_SELECTORS,
                        args![names, namespace],
                    ));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::analyze::{ContextBuilder, run};
    use crate::load::Loader;

    fn analyze(text: &str) -> Vec<Message> {
        let mut builder = ContextBuilder::new();
        let loader = Loader::new().default_namespace(None);
        builder.add_text(&loader, text, Some(Path::new("sidecars.yaml")));
        run(&builder.build(), &[Box::new(Selector)]).messages
    }

    #[test]
    fn selector_matching_no_pod_points_at_its_label() {
        let text = "apiVersion: v1\nkind: Pod\nmetadata: {name: p, namespace: default, labels: {app: a}}\n---\napiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata:\n  name: s\n  namespace: default\nspec:\n  workloadSelector:\n    labels:\n      app: b\n";
        let messages = analyze(text);
        assert_eq!(messages.len(), 1);
        assert_eq!(
            messages[0].to_string(),
            r#"Error [IST0101] (Sidecar default/s sidecars.yaml:13) Referenced selector not found: "app=b""#
        );
    }

    #[test]
    fn pod_selected_twice_names_both_sidecars() {
        let sidecar = |name: &str| {
            format!(
                "apiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata: {{name: {name}, namespace: default}}\nspec:\n  workloadSelector:\n    labels: {{app: a}}\n---\n"
            )
        };
        let text = format!(
            "{}{}apiVersion: v1\nkind: Pod\nmetadata: {{name: p, namespace: default, labels: {{app: a}}}}\n",
            sidecar("one"),
            sidecar("two")
        );
        let texts: Vec<String> = analyze(&text).iter().map(Message::text).collect();
        let want = r#"The Sidecars [one two] in namespace "default" select the same workload pod "p", which can lead to undefined behavior."#;
        assert_eq!(texts, [want, want]);
    }
}
