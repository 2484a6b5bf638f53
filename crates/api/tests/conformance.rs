//! Conformance with Istio's own inputs (`../shared/istio`, or `$MIZZEN_ISTIO_DATA`):
//! every sample Istio accepts loads, validates and round-trips; every document of
//! Istio's CRD validation corpus is judged as Istio judges it.

use mizzen_api::testdata::istio_data;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use mizzen_api::load::{LoadResult, Loader};
use mizzen_api::validate::{Severity, validate_set};

fn yaml_files(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                pending.push(path);
            } else if path.extension().is_some_and(|e| e == "yaml" || e == "yml") {
                files.push(path);
            }
        }
    }
    files.sort();
    files
}

fn error_lines(result: &LoadResult) -> Vec<String> {
    let mut lines: Vec<String> = result.errors.iter().map(|e| e.to_string()).collect();
    for loaded in &result.objects {
        for issue in loaded.object.validate() {
            if issue.severity == Severity::Error {
                lines.push(format!(
                    "{}: {}: {issue}",
                    loaded.origin,
                    loaded.object.key()
                ));
            }
        }
    }
    lines
}

#[test]
fn istio_samples_load_validate_and_round_trip() {
    let Some(data) = istio_data() else { return };
    let samples = data.join("samples");
    let mut per_kind: BTreeMap<String, usize> = BTreeMap::new();
    let mut failures = Vec::new();
    // Every sample is plain YAML that Istio accepts (no Go templates among them), so
    // none is excluded.
    let mut files = 0;
    for file in yaml_files(&samples) {
        files += 1;
        let result = Loader::new().load_path(&file);
        failures.extend(error_lines(&result));
        let set_issues = validate_set(result.objects.iter().map(|l| &l.object));
        for issue in set_issues
            .iter()
            .filter(|i| i.issue.severity == Severity::Error)
        {
            failures.push(format!(
                "{}: {}: {}",
                file.display(),
                issue.key,
                issue.issue
            ));
        }
        for loaded in &result.objects {
            *per_kind.entry(loaded.object.key().kind).or_default() += 1;
            let yaml = serde_yaml_ng::to_string(&loaded.object).unwrap();
            let again = Loader::new().load_str(&yaml, None);
            match again.objects.as_slice() {
                [one] if one.object == loaded.object => {}
                _ => failures.push(format!(
                    "{}: {} does not round-trip: {:?}\n{yaml}",
                    loaded.origin,
                    loaded.object.key(),
                    error_lines(&again)
                )),
            }
        }
    }
    let total: usize = per_kind.values().sum();
    eprintln!("samples: {files} files, {total} objects; by kind: {per_kind:?}");
    assert!(
        failures.is_empty(),
        "{} failures:\n{}",
        failures.len(),
        failures.join("\n")
    );
    assert!(
        total > 200,
        "expected Istio's samples to hold hundreds of objects, found {total}"
    );
}

#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct Expectation {
    file: String,
    index: usize,
    kind: String,
    name: String,
    expect_valid: bool,
    #[serde(default)]
    error_contains: Option<String>,
}

/// True when one of `errors` is about the same thing as Istio's expected error: the same
/// field when Istio names one, else the same words. Istio's CRD errors use the API
/// server's vocabulary; the table maps the few phrases it words differently from ours.
fn same_subject(expected: &str, errors: &[String]) -> bool {
    let lower = |s: &str| s.to_lowercase();
    if errors.iter().any(|e| lower(e).contains(&lower(expected))) {
        return true;
    }
    if let Some(field) = field_of(expected) {
        return errors.iter().any(|e| {
            e.split(": ")
                .any(|part| within(part.rsplit(' ').next().unwrap_or(part), field))
        });
    }
    const SYNONYMS: &[(&str, &[&str])] = &[(
        "type conversion error",
        &["invalid type", "invalid digit", "invalid value: string"],
    )];
    SYNONYMS.iter().any(|(theirs, ours)| {
        expected.contains(theirs)
            && errors
                .iter()
                .any(|e| ours.iter().any(|o| lower(e).contains(o)))
    })
}

/// True when `path` is `field` or lies inside it (`spec.a[0].b` is within `a[0]`),
/// matching whole path segments only.
fn within(path: &str, field: &str) -> bool {
    path.match_indices(field).any(|(at, _)| {
        let before = path[..at].chars().last();
        let after = path[at + field.len()..].chars().next();
        matches!(before, None | Some('.')) && matches!(after, None | Some('.' | '['))
    })
}

/// The field an API-server message names: `spec.a.b: Required value`, `a[0] in body …`.
fn field_of(expected: &str) -> Option<&str> {
    let head = expected
        .split_once(" in body")
        .map(|(h, _)| h)
        .or_else(|| expected.split_once(": ").map(|(h, _)| h))?;
    let is_path = !head.is_empty()
        && head
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '[' | ']' | '_'));
    is_path.then_some(head)
}

#[test]
fn istio_crd_validation_corpus_is_judged_as_istio_judges_it() {
    let Some(data) = istio_data() else { return };
    let dir = data.join("validation");
    let table: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expectations.json")).unwrap())
            .unwrap();
    let expectations: Vec<Expectation> =
        serde_json::from_value(table["documents"].clone()).unwrap();

    let mut documents: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut mismatches = Vec::new();
    let (mut valid_ok, mut invalid_ok) = (0, 0);
    for exp in &expectations {
        let docs = documents.entry(exp.file.clone()).or_insert_with(|| {
            let text = std::fs::read_to_string(dir.join("crds").join(&exp.file)).unwrap();
            // Documents as written, minus the corpus's `_err:` annotation line.
            text.split("\n---\n")
                .map(|doc| {
                    doc.lines()
                        .filter(|l| !l.starts_with("_err:"))
                        .collect::<Vec<_>>()
                        .join("\n")
                })
                .filter(|doc| {
                    doc.lines()
                        .any(|l| !l.trim().is_empty() && !l.trim_start().starts_with('#'))
                })
                .collect()
        });
        let label = format!("{}[{}] {} {}", exp.file, exp.index, exp.kind, exp.name);
        let result = Loader::new().load_str(&docs[exp.index], Some(Path::new(&exp.file)));
        let errors = error_lines(&result);
        match (exp.expect_valid, errors.is_empty()) {
            (true, true) => valid_ok += 1,
            (true, false) => mismatches.push(format!(
                "{label}: Istio accepts it, we reject it: {errors:?}"
            )),
            (false, true) => mismatches.push(format!(
                "{label}: Istio rejects it ({:?}), we accept it",
                exp.error_contains
            )),
            (false, false) => {
                let expected = exp.error_contains.as_deref().unwrap_or_default();
                if same_subject(expected, &errors) {
                    invalid_ok += 1;
                } else {
                    mismatches.push(format!(
                        "{label}: rejected for another reason; Istio: {expected:?}, we: {errors:?}"
                    ));
                }
            }
        }
    }
    let valid = expectations.iter().filter(|e| e.expect_valid).count();
    eprintln!(
        "validation corpus: {valid_ok}/{valid} valid documents accepted, {invalid_ok}/{} invalid documents rejected for the same reason",
        expectations.len() - valid
    );
    assert!(
        mismatches.is_empty(),
        "{} mismatches:\n{}",
        mismatches.len(),
        mismatches.join("\n")
    );
}

#[test]
fn field_extraction_reads_api_server_messages() {
    assert_eq!(
        field_of("spec.targetRef.name: Required value"),
        Some("spec.targetRef.name")
    );
    assert_eq!(
        field_of("audiences[0] in body should be at least 1 chars long"),
        Some("audiences[0]")
    );
    assert_eq!(field_of("port must be between 1-65535"), None);
    assert_eq!(field_of("Unsupported value: \"BLAH\""), None);
    assert!(same_subject(
        "spec.hosts: Required value",
        &["x.yaml:1: ServiceEntry a/b: spec.hosts: Required value".into()]
    ));
    assert!(!same_subject(
        "spec.hosts: Required value",
        &["x.yaml:1: ServiceEntry a/b: spec.ports: Required value".into()]
    ));
    assert!(within("spec.jwtRules[0].issuer", "spec.jwtRules[0]"));
    assert!(within("spec.jwtRules[0].audiences[0]", "audiences[0]"));
    assert!(within("spec.jwtRules[0].audiences[0]", "audiences"));
    assert!(!within("spec.xhosts", "hosts"));
    assert!(!within("spec.hosts2", "hosts"));
}
