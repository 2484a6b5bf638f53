//! Workload selectors and policy target references.

use serde::{Deserialize, Serialize};

use super::Labels;

/// `selector: {matchLabels: …}`: the workloads a policy or config applies to.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadSelector {
    /// Labels a workload must carry, all of them.
    #[serde(default)]
    pub match_labels: Labels,
}

impl WorkloadSelector {
    /// True when `labels` carry every label this selector asks for.
    pub fn matches(&self, labels: &Labels) -> bool {
        self.match_labels
            .iter()
            .all(|(k, v)| labels.get(k).is_some_and(|have| have == v))
    }
}

/// `targetRef`/`targetRefs`: a Kubernetes object (Gateway, Service…) a policy attaches to.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PolicyTargetReference {
    /// API group of the target; empty for the core group.
    #[serde(default)]
    pub group: String,
    /// Kind of the target, e.g. `Service` or `Gateway`.
    #[serde(default)]
    pub kind: String,
    /// Name of the target.
    #[serde(default)]
    pub name: String,
    /// Namespace of the target; must be the policy's own when set.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
}
