//! `ProxyConfig` (`networking.istio.io/v1beta1`): per-workload proxy settings that
//! override MeshConfig's `defaultConfig`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::types::WorkloadSelector;
use crate::validate::{Validate, Validator, check_cel_selector, check_max_len};

/// Proxy settings for the selected workloads (or the namespace, or the mesh when in the
/// root namespace).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProxyConfig {
    /// Workloads this applies to; all workloads of the namespace when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<WorkloadSelector>,
    /// Number of worker threads; 0 means one per CPU core.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<i32>,
    /// Extra environment variables for the proxy process.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub environment_variables: BTreeMap<String, String>,
    /// Which flavour of the proxy image to use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<ProxyImage>,
}

/// The proxy image flavour.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProxyImage {
    /// `default`, `debug` or `distroless` (any value is accepted).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub image_type: String,
}

impl Validate for ProxyConfig {
    fn validate(&self, v: &mut Validator<'_>) {
        if let Some(selector) = &self.selector {
            v.field("selector", |v| check_cel_selector(v, selector));
        }
        if let Some(c) = self.concurrency.filter(|c| *c < 0) {
            v.error_at(
                "concurrency",
                format!("Invalid value: {c}: concurrency must be greater than or equal to 0"),
            );
        }
        v.field("environmentVariables", |v| {
            for (name, value) in &self.environment_variables {
                v.key(name, |v| check_max_len(v, value, 2048));
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use crate::Kind;
    use crate::testing::{issues, messages};
    use crate::validate::{Issue, Severity};

    fn check(spec: &str) -> Vec<Issue> {
        issues(Kind::ProxyConfig, spec)
    }

    fn errors(spec: &str) -> Vec<String> {
        messages(&check(spec), Severity::Error)
    }

    #[test]
    fn full_proxy_config_is_valid_and_round_trips() {
        let spec = "  concurrency: 0\n  selector:\n    matchLabels:\n      foo: bar\n  image:\n    imageType: distroless\n  environmentVariables:\n    FOO: baz\n";
        assert_eq!(check(spec), vec![]);
        let yaml = format!(
            "apiVersion: networking.istio.io/v1beta1\nkind: ProxyConfig\nmetadata:\n  name: p\nspec:\n{spec}"
        );
        let first = crate::load::Loader::new()
            .load_str(&yaml, None)
            .objects
            .remove(0)
            .object;
        let again = crate::load::Loader::new()
            .load_str(&serde_yaml_ng::to_string(&first).unwrap(), None)
            .objects
            .remove(0)
            .object;
        assert_eq!(first, again);
        let crate::Object::ProxyConfig(p) = first else {
            panic!()
        };
        assert_eq!(p.spec.concurrency, Some(0));
    }

    #[test]
    fn concurrency_not_negative() {
        assert_eq!(
            errors("  concurrency: -1\n"),
            ["spec.concurrency: Invalid value: -1: concurrency must be greater than or equal to 0"]
        );
    }

    #[test]
    fn selector_rules() {
        assert_eq!(
            errors("  selector:\n    matchLabels:\n      \"\": bar\n"),
            ["spec.selector.matchLabels: Invalid value: \"object\": key must not be empty"]
        );
        assert_eq!(
            errors("  selector:\n    matchLabels:\n      a: \"b*\"\n"),
            [
                "spec.selector.matchLabels[a]: Invalid value: \"string\": wildcard not allowed in label value match"
            ]
        );
        let empty = check("  selector:\n    matchLabels: {}\n");
        assert_eq!(empty.len(), 1);
        assert_eq!(empty[0].severity, Severity::Warning);
    }

    #[test]
    fn environment_values_are_bounded() {
        let long = "x".repeat(2049);
        assert_eq!(
            errors(&format!("  environmentVariables:\n    A: {long}\n")),
            ["spec.environmentVariables[A]: Too long: may not be more than 2048 bytes"]
        );
    }
}
