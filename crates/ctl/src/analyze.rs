//! `mizzen analyze`: Istio's configuration analysis over files, the running mesh, or
//! both (files layered over the live state), printed as `istioctl analyze` prints it and
//! ending with istioctl's exit codes.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use mizzen_api::Object;
use mizzen_api::analyze::{
    self, ANALYSIS_DOCS, Analyzer, ContextBuilder, Finding, Level, MeshConfig, Message, analyzers,
};
use mizzen_api::load::{Loader, is_config_file};

/// istioctl's exit code when analysis found messages at or above the failure threshold.
pub const EXIT_ISSUES_FOUND: u8 = 79;
/// istioctl's exit code when some input could not be parsed.
pub const EXIT_PARSE_ERROR: u8 = 65;

/// How findings are printed (`-o`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// One istioctl log line per message.
    #[default]
    Log,
    /// A JSON array of messages.
    Json,
    /// A YAML list of messages.
    Yaml,
}

impl FromStr for Format {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "log" => Ok(Format::Log),
            "json" => Ok(Format::Json),
            "yaml" => Ok(Format::Yaml),
            _ => Err(format!(
                "{s:?} is not an output format; use log, json or yaml"
            )),
        }
    }
}

/// `-S CODE=RESOURCE`: messages of `code` about resources matching `resource` (a glob
/// over `Kind [namespace/]name`, `*` matching any text) are not reported.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Suppression {
    code: String,
    resource: String,
}

impl FromStr for Suppression {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.split_once('=') {
            Some((code, resource)) if !code.is_empty() && !resource.is_empty() => Ok(Self {
                code: code.to_owned(),
                resource: resource.to_owned(),
            }),
            _ => Err(format!(
                "{s:?} is not a suppression; write CODE=RESOURCE, e.g. \"IST0102=Namespace frod\""
            )),
        }
    }
}

impl Suppression {
    fn matches(&self, message: &Message) -> bool {
        let Some(origin) = message.origin() else {
            return false;
        };
        self.code == message.ty.code && glob(&self.resource, &origin)
    }
}

/// `*`-only glob matching, as istioctl's suppressions use.
fn glob(pattern: &str, text: &str) -> bool {
    let parts: Vec<&str> = pattern.split('*').collect();
    let [first, middle @ .., last] = parts.as_slice() else {
        return pattern == text;
    };
    if parts.len() == 1 {
        return pattern == text;
    }
    let Some(mut rest) = text.strip_prefix(first) else {
        return false;
    };
    for part in middle {
        match rest.find(part) {
            Some(i) => rest = &rest[i + part.len()..],
            None => return false,
        }
    }
    rest.ends_with(last)
}

/// Which namespaces to report on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Scope {
    /// One namespace (objects without a namespace are always reported).
    Namespace(String),
    /// Every namespace (`-A`).
    All,
}

impl Scope {
    fn describe(&self) -> String {
        match self {
            Scope::Namespace(ns) => format!("namespace: {ns}"),
            Scope::All => "all namespaces".into(),
        }
    }
}

/// What to analyse and how to report it.
#[derive(Debug, Clone)]
pub struct Options {
    /// Files and directories to read.
    pub inputs: Vec<PathBuf>,
    /// Which namespaces to report on; objects without one in files get this one.
    pub scope: Scope,
    /// The live mesh's objects, when analysing it (files are layered over them).
    pub live: Option<Vec<Object>>,
    /// Exit with [`EXIT_ISSUES_FOUND`] when a message is at least this serious.
    pub failure_threshold: Level,
    /// Print only messages at least this serious.
    pub output_threshold: Level,
    /// How to print.
    pub format: Format,
    /// Messages not to report.
    pub suppressions: Vec<Suppression>,
    /// Run only this analyzer (by Istio's name).
    pub analyzer: Option<String>,
    /// A MeshConfig file replacing the defaults.
    pub mesh_config: Option<PathBuf>,
    /// Read directories recursively.
    pub recursive: bool,
    /// Carry on (and succeed) when some files cannot be parsed.
    pub ignore_unknown: bool,
}

/// Writes the name and description of every analyzer.
pub fn list_analyzers(out: &mut impl Write) -> std::io::Result<()> {
    writeln!(out, "Available analyzers:")?;
    for analyzer in analyzers::all() {
        let meta = analyzer.metadata();
        writeln!(out, "* {}: {}", meta.name, meta.description)?;
    }
    Ok(())
}

/// Runs the analysis, writing findings to `out` and notices to `err`; returns the exit code.
pub fn run(options: Options, out: &mut impl Write, err: &mut impl Write) -> anyhow::Result<u8> {
    let selected: Vec<Box<dyn Analyzer>> = match &options.analyzer {
        Some(name) => vec![analyzers::by_name(name).ok_or_else(|| {
            anyhow::anyhow!(
                "unknown analyzer {name:?}; `mizzen analyze --list-analyzers` lists them"
            )
        })?],
        None => analyzers::all(),
    };
    let mut builder = ContextBuilder::new().cli_files(true);
    if let Some(path) = &options.mesh_config {
        builder = builder.mesh_config(MeshConfig::from_file(path)?);
    }
    let live = options.live.is_some();
    for object in options.live.into_iter().flatten() {
        builder.add_object(object);
    }
    if !live {
        builder.add_default_resources();
    }
    let namespace = match &options.scope {
        Scope::Namespace(ns) => ns.clone(),
        Scope::All => "default".into(),
    };
    let loader = Loader::new()
        .default_namespace(Some(namespace))
        .lenient(true);
    let mut parse_errors = Vec::new();
    for file in gather_files(&options.inputs, options.recursive, err)? {
        let text = std::fs::read_to_string(&file)
            .map_err(|e| anyhow::anyhow!("reading {}: {e}", file.display()))?;
        let errors = builder.add_text(&loader, &text, Some(&file));
        if !errors.is_empty() {
            let details: Vec<String> = errors.iter().map(ToString::to_string).collect();
            parse_errors.push(format!(
                "errors parsing content {:?}: {}",
                file.display().to_string(),
                details.join("; ")
            ));
        }
    }
    if !parse_errors.is_empty() {
        writeln!(err, "Error(s) adding files: {}", parse_errors.join("\n"))?;
        if !options.ignore_unknown {
            writeln!(err, "Error: Some files couldn't be parsed.")?;
            return Ok(EXIT_PARSE_ERROR);
        }
    }
    let ctx = builder.build();
    let analysis = analyze::run(&ctx, &selected);
    let messages = report(
        analysis.messages,
        &ctx,
        &options.scope,
        &options.suppressions,
    );

    let failed = messages
        .iter()
        .any(|m| m.level() >= options.failure_threshold);
    let shown: Vec<&Message> = messages
        .iter()
        .filter(|m| m.level() >= options.output_threshold)
        .collect();
    match options.format {
        Format::Log => {
            for message in &shown {
                writeln!(out, "{message}")?;
            }
        }
        Format::Json => writeln!(out, "{}", serde_json::to_string_pretty(&findings(&shown))?)?,
        Format::Yaml => {
            if !shown.is_empty() {
                out.write_all(serde_yaml_ng::to_string(&findings(&shown))?.as_bytes())?;
            } else {
                writeln!(out, "[]")?;
            }
        }
    }
    let target = options.scope.describe();
    if shown.is_empty() {
        writeln!(
            err,
            "\u{2714} No validation issues found when analyzing {target}."
        )?;
    }
    if failed {
        writeln!(
            err,
            "Error: Analyzers found issues when analyzing {target}.\nSee {ANALYSIS_DOCS} for more information about causes and resolutions."
        )?;
        return Ok(EXIT_ISSUES_FOUND);
    }
    Ok(0)
}

/// The messages to report: in the scope, not suppressed (by flag or by the object's
/// annotation), sorted as istioctl sorts them (most serious first), without duplicates.
fn report(
    messages: Vec<Message>,
    ctx: &analyze::Context,
    scope: &Scope,
    suppressions: &[Suppression],
) -> Vec<Message> {
    let in_scope = |m: &Message| match (scope, &m.subject) {
        (Scope::Namespace(ns), Some(s)) => s.key.namespace.is_empty() || s.key.namespace == *ns,
        _ => true,
    };
    let kept = messages
        .into_iter()
        .filter(|m| in_scope(m) && !suppressions.iter().any(|s| s.matches(m)))
        .collect();
    analyze::reportable(kept, ctx)
}

/// Messages as istioctl's JSON/YAML output has them.
fn findings(messages: &[&Message]) -> Vec<Finding> {
    messages.iter().map(|m| Finding::from(*m)).collect()
}

/// The files to read: each input file with a config extension (others are skipped
/// with a notice), and those under each directory (recursively unless told not to).
fn gather_files(
    inputs: &[PathBuf],
    recursive: bool,
    err: &mut impl Write,
) -> anyhow::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    for input in inputs {
        let meta =
            std::fs::metadata(input).map_err(|e| anyhow::anyhow!("{}: {e}", input.display()))?;
        if meta.is_dir() {
            walk(input, recursive, &mut files, err)?;
        } else {
            keep_config_file(input, &mut files, err)?;
        }
    }
    Ok(files)
}

fn walk(
    dir: &Path,
    recursive: bool,
    files: &mut Vec<PathBuf>,
    err: &mut impl Write,
) -> anyhow::Result<()> {
    let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
        .map_err(|e| anyhow::anyhow!("{}: {e}", dir.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<_, _>>()?;
    entries.sort();
    for path in entries {
        if path.is_dir() {
            if recursive {
                walk(&path, recursive, files, err)?;
            }
        } else {
            keep_config_file(&path, files, err)?;
        }
    }
    Ok(())
}

fn keep_config_file(
    path: &Path,
    files: &mut Vec<PathBuf>,
    err: &mut impl Write,
) -> std::io::Result<()> {
    if is_config_file(path) {
        files.push(path.to_owned());
    } else {
        writeln!(
            err,
            "Skipping file {}, recognized file extensions are: [.json .yaml .yml]",
            path.display()
        )?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_match_like_istioctl_suppressions() {
        assert!(glob("*", "Pod default/x"));
        assert!(glob(
            "CustomResourceDefinition *",
            "CustomResourceDefinition crd"
        ));
        assert!(glob("Pod *.baz", "Pod a.baz"));
        assert!(!glob("Pod *.baz", "Pod a.bar"));
        assert!(glob("Namespace frod", "Namespace frod"));
        assert!("IST0102".parse::<Suppression>().is_err());
    }
}
