//! `mizzen validate -f FILE|DIR|-…`: check config as Istio's webhook would, before it is
//! applied. Like `istioctl validate`, it prints every problem and fails when any object
//! is invalid.

use std::collections::{BTreeSet, HashMap};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use mizzen_api::load::{LoadResult, Loader, Origin};
use mizzen_api::validate::{Severity, validate_set};

/// What a validation run found.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Summary {
    /// Objects read.
    pub objects: usize,
    /// Objects (or documents) with at least one error.
    pub invalid: usize,
    /// Warnings printed.
    pub warnings: usize,
}

impl Summary {
    /// True when nothing was invalid.
    pub fn ok(&self) -> bool {
        self.invalid == 0
    }
}

/// Loads `inputs` (files, directories, or `-` for stdin), validates every object and the
/// set as a whole, and writes one line per problem to `out`, then a summary line.
pub fn run(inputs: &[PathBuf], out: &mut impl Write) -> anyhow::Result<Summary> {
    let loader = Loader::new();
    let mut result = LoadResult::default();
    for input in inputs {
        let part = if input == Path::new("-") {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading config from stdin")?;
            loader.load_str(&text, Some(Path::new("<stdin>")))
        } else {
            loader.load_path(input)
        };
        result.objects.extend(part.objects);
        result.errors.extend(part.errors);
    }
    report(&result, out)
}

/// Writes the findings for already-loaded input.
pub fn report(result: &LoadResult, out: &mut impl Write) -> anyhow::Result<Summary> {
    let mut summary = Summary {
        objects: result.objects.len(),
        invalid: result.errors.len(),
        ..Summary::default()
    };
    for error in &result.errors {
        writeln!(out, "Error: {error}")?;
    }
    let mut invalid_objects = BTreeSet::new();
    let mut files = FileTexts::default();
    let object_issues = result
        .objects
        .iter()
        .enumerate()
        .flat_map(|(index, loaded)| {
            let key = loaded.object.key();
            loaded
                .object
                .validate()
                .into_iter()
                .map(move |issue| (index, key.clone(), issue))
        });
    let set_issues = validate_set(result.objects.iter().map(|l| &l.object))
        .into_iter()
        .map(|found| (found.index, found.key, found.issue));
    for (index, key, issue) in object_issues.chain(set_issues) {
        let label = match issue.severity {
            Severity::Error => {
                invalid_objects.insert(index);
                "Error"
            }
            Severity::Warning => {
                summary.warnings += 1;
                "Warning"
            }
        };
        let origin = files.locate(&result.objects[index].origin, &issue.path);
        writeln!(out, "{label}: {origin}: {key}: {issue}")?;
    }
    summary.invalid += invalid_objects.len();

    let unmodeled: BTreeSet<String> = result
        .objects
        .iter()
        .filter(|l| l.object.kind().is_none())
        .map(|l| l.object.key().kind)
        .collect();
    if !unmodeled.is_empty() {
        let kinds: Vec<String> = unmodeled.into_iter().collect();
        writeln!(
            out,
            "Note: not checked (kinds Mizzen does not model): {}",
            kinds.join(", ")
        )?;
    }
    let unsupported: BTreeSet<&str> = result
        .objects
        .iter()
        .filter_map(|l| l.object.kind())
        .filter(|k| k.unsupported())
        .map(|k| k.name())
        .collect();
    if !unsupported.is_empty() {
        let kinds: Vec<&str> = unsupported.into_iter().collect();
        writeln!(
            out,
            "Note: valid but not applied by Mizzen's proxy: {}",
            kinds.join(", ")
        )?;
    }
    if summary.ok() {
        writeln!(out, "validation succeed: {} objects", summary.objects)?;
    } else {
        writeln!(
            out,
            "validation failed: {} of {} objects or documents invalid",
            summary.invalid,
            summary.objects + result.errors.len()
        )?;
    }
    Ok(summary)
}

/// The texts of the files problems were found in, read once, to point at fields' lines.
#[derive(Default)]
struct FileTexts(HashMap<Arc<Path>, Option<String>>);

impl FileTexts {
    /// `origin` moved to the line of the field at `path`, when the file can be read.
    fn locate(&mut self, origin: &Origin, path: &str) -> Origin {
        let Some(file) = &origin.file else {
            return origin.clone();
        };
        let text = self
            .0
            .entry(file.clone())
            .or_insert_with(|| std::fs::read_to_string(file).ok());
        match text {
            Some(text) => origin.at_field(text, path),
            None => origin.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn validate_text(text: &str) -> (Summary, String) {
        let result = Loader::new().load_str(text, Some(Path::new("in.yaml")));
        let mut out = Vec::new();
        let summary = report(&result, &mut out).unwrap();
        (summary, String::from_utf8(out).unwrap())
    }

    #[test]
    fn valid_input_succeeds_with_a_summary() {
        let (summary, out) =
            validate_text("apiVersion: v1\nkind: Namespace\nmetadata:\n  name: shop\n");
        assert!(summary.ok());
        assert_eq!(out, "validation succeed: 1 objects\n");
    }

    #[test]
    fn every_problem_is_printed_and_the_run_fails() {
        let text = "apiVersion: v1\nkind: Service\nmetadata:\n  name: a\nspec:\n  ports:\n  - port: 70000\n---\napiVersion: v1\nkind: Service\nmetadata:\n  name: a\n---\nkind: Service\n---\napiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata:\n  name: r\n";
        let (summary, out) = validate_text(text);
        assert_eq!(
            summary,
            Summary {
                objects: 3,
                invalid: 2,
                warnings: 1
            }
        );
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(
            lines,
            [
                "Error: in.yaml:14 (document 3): apiVersion: Required value",
                "Error: in.yaml:1 (document 1): Service default/a: spec.ports[0].port: port must be between 1-65535, got 70000",
                "Warning: in.yaml:9 (document 2): Service default/a: metadata.name: Duplicate value: Service default/a is also defined by object #1; the later definition wins",
                "Note: not checked (kinds Mizzen does not model): HTTPRoute",
                "validation failed: 2 of 4 objects or documents invalid",
            ]
        );
    }
}
