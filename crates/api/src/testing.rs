//! Helpers for the kinds' unit tests: build an object around a spec, load it (checking
//! that it round-trips), and read its findings.

use crate::kind::Kind;
use crate::load::Loader;
use crate::object::Object;
use crate::validate::{Issue, Severity};

/// A YAML object of `kind` named `x` in namespace `ns` with `spec` (indented or not).
pub(crate) fn object_yaml(kind: Kind, spec: &str) -> String {
    let indented = spec
        .lines()
        .filter(|l| !l.trim().is_empty())
        .all(|l| l.starts_with("  "));
    let spec: String = if indented {
        spec.to_owned()
    } else {
        spec.lines().map(|l| format!("  {l}\n")).collect()
    };
    format!(
        "apiVersion: {}\nkind: {kind}\nmetadata:\n  name: x\n  namespace: ns\nspec:\n{spec}",
        kind.api_version()
    )
}

/// Loads the one object in `yaml`, or returns the first load error; a loaded object must
/// come back equal from serialize → load.
pub(crate) fn load(yaml: &str) -> Result<Object, String> {
    let mut result = Loader::new().load_str(yaml, None);
    if let Some(e) = result.errors.first() {
        return Err(e.to_string());
    }
    assert_eq!(result.objects.len(), 1, "expected one object in {yaml}");
    let object = result.objects.remove(0).object;
    let text = serde_yaml_ng::to_string(&object).expect("serializes");
    let again = Loader::new().load_str(&text, None);
    assert_eq!(
        again.objects.first().map(|l| &l.object),
        Some(&object),
        "round trip of {text}"
    );
    Ok(object)
}

/// The findings for an object of `kind` with `spec`, which must load.
pub(crate) fn issues(kind: Kind, spec: &str) -> Vec<Issue> {
    load(&object_yaml(kind, spec)).expect("loads").validate()
}

/// The findings of one severity, as `path: message` lines.
pub(crate) fn messages(issues: &[Issue], severity: Severity) -> Vec<String> {
    issues
        .iter()
        .filter(|i| i.severity == severity)
        .map(ToString::to_string)
        .collect()
}

/// Errors and warnings, as `path: message` lines.
pub(crate) fn errors_and_warnings(issues: &[Issue]) -> (Vec<String>, Vec<String>) {
    (
        messages(issues, Severity::Error),
        messages(issues, Severity::Warning),
    )
}
