//! `mizzen apply`, `mizzen delete` and `mizzen get`: the running mesh's config, as
//! `kubectl` edits a cluster's. Writes go to the config directory of the mesh
//! (`mesh.json`) or `--dir`, validated first (nothing is written if anything is
//! invalid) and atomically; the mesh's pilot watches that directory. `get` shows what
//! the analyzers found beside each object, and `get findings` lists it all.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use anyhow::Context;
use mizzen_api::analyze::Finding;
use mizzen_api::load::{LoadResult, Loader};
use mizzen_api::{Kind, Object, ObjectKey};
use mizzen_pilot::server::Findings;
use mizzen_pilot::store::{ConfigStore, DirStore, Snapshot, admit};

use crate::up::state::StateDir;

/// Which config directory to use.
#[derive(Debug, Clone, clap::Args)]
pub struct Target {
    /// The config directory; default: that of the mesh `mizzen up` runs.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// The state directory of the running mesh; default $MIZZEN_HOME or ~/.mizzen.
    #[arg(long)]
    state_dir: Option<PathBuf>,
}

/// `apply` and `delete`'s options.
#[derive(Debug, Clone, clap::Args)]
pub struct WriteArgs {
    /// Files or directories of YAML (directories are read recursively; `-` reads stdin).
    #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
    files: Vec<PathBuf>,
    /// The namespace of objects that name none.
    #[arg(short = 'n', long, default_value = "default")]
    namespace: String,
    #[command(flatten)]
    target: Target,
}

/// `get`'s options.
#[derive(Debug, Clone, clap::Args)]
pub struct GetArgs {
    /// The kind (`virtualservice`, `virtualservices`, `vs`, `pods`…), or `findings`
    /// (`messages`): what the analyzers found, as `istioctl analyze` prints it.
    kind: String,
    /// Only the object of this name (for findings: about objects of this name).
    name: Option<String>,
    /// Only this namespace (default: all).
    #[arg(short = 'n', long)]
    namespace: Option<String>,
    /// `yaml` or `json`; a table when not given.
    #[arg(short = 'o', long)]
    output: Option<Output>,
    #[command(flatten)]
    target: Target,
}

/// How `get` prints objects.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum Output {
    /// YAML documents.
    Yaml,
    /// JSON: the object, or a `List` of them.
    Json,
}

impl Target {
    fn dir(&self) -> anyhow::Result<PathBuf> {
        match &self.dir {
            Some(dir) => Ok(dir.clone()),
            None => Ok(StateDir::resolve(self.state_dir.clone())?
                .mesh()?
                .config_dir),
        }
    }

    /// The debug address of the running mesh's pilot, if that mesh's config is `dir`.
    fn pilot_of(&self, dir: &Path) -> Option<SocketAddr> {
        let mesh = StateDir::resolve(self.state_dir.clone())
            .ok()?
            .mesh()
            .ok()?;
        let same = dir.canonicalize().ok()? == mesh.config_dir.canonicalize().ok()?;
        same.then_some(mesh.debug)
    }
}

/// Reads every object of `files`; any file or document that does not load fails it all.
fn load(files: &[PathBuf], namespace: &str) -> anyhow::Result<Vec<Object>> {
    let loader = Loader::new().default_namespace(Some(namespace.to_owned()));
    let mut loaded = LoadResult::default();
    for file in files {
        let part = if file == Path::new("-") {
            let mut text = String::new();
            std::io::stdin()
                .read_to_string(&mut text)
                .context("reading stdin")?;
            loader.load_str(&text, None)
        } else {
            loader.load_path(file)
        };
        loaded.objects.extend(part.objects);
        loaded.errors.extend(part.errors);
    }
    if !loaded.errors.is_empty() {
        let errors: Vec<String> = loaded.errors.iter().map(ToString::to_string).collect();
        anyhow::bail!("refused, nothing was written:\n  {}", errors.join("\n  "));
    }
    Ok(loaded.objects.into_iter().map(|l| l.object).collect())
}

fn open(target: &Target) -> anyhow::Result<DirStore> {
    open_dir(&target.dir()?)
}

fn open_dir(dir: &Path) -> anyhow::Result<DirStore> {
    DirStore::open(dir).with_context(|| format!("opening config directory {}", dir.display()))
}

fn block_on<T>(f: impl std::future::Future<Output = T>) -> anyhow::Result<T> {
    Ok(tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?
        .block_on(f))
}

/// `mizzen apply -f …`: creates or replaces the objects, all or none.
pub fn apply(args: &WriteArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let objects = load(&args.files, &args.namespace)?;
    // Refused before the directory is even opened: nothing can be written.
    admit(&objects)?;
    let store = open(&args.target)?;
    let before = store.snapshot();
    let keys: Vec<ObjectKey> = objects.iter().map(Object::key).collect();
    let unchanged: Vec<bool> = objects
        .iter()
        .map(|o| before.get(&o.key()).is_some_and(|b| **b == *o))
        .collect();
    block_on(store.apply(objects))??;
    for (key, same) in keys.iter().zip(unchanged) {
        let verb = match (same, before.get(key).is_some()) {
            (true, _) => "unchanged",
            (false, true) => "configured",
            (false, false) => "created",
        };
        writeln!(out, "{} {verb}", name_of(key))?;
    }
    Ok(())
}

/// `mizzen delete -f …`: removes the objects, all or none.
pub fn delete(args: &WriteArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let keys: Vec<ObjectKey> = load(&args.files, &args.namespace)?
        .iter()
        .map(Object::key)
        .collect();
    let store = open(&args.target)?;
    block_on(store.delete(keys.clone()))??;
    for key in &keys {
        writeln!(out, "{} deleted", name_of(key))?;
    }
    Ok(())
}

/// `kind/name` (namespaced: `kind/name -n ns` is implied by the object).
fn name_of(key: &ObjectKey) -> String {
    format!("{}/{}", key.kind.to_ascii_lowercase(), key.name)
}

/// The kind a user means by `name`: any case, singular or plural, or a kubectl short
/// name.
fn kind_named(name: &str) -> anyhow::Result<Kind> {
    let lower = name.to_ascii_lowercase();
    let short = match lower.as_str() {
        "vs" => Some(Kind::VirtualService),
        "dr" => Some(Kind::DestinationRule),
        "gw" => Some(Kind::Gateway),
        "se" => Some(Kind::ServiceEntry),
        "we" => Some(Kind::WorkloadEntry),
        "svc" => Some(Kind::Service),
        "deploy" => Some(Kind::Deployment),
        "sa" => Some(Kind::ServiceAccount),
        "ns" => Some(Kind::Namespace),
        _ => None,
    };
    let found = short.or_else(|| {
        Kind::ALL.iter().copied().find(|k| {
            let k = k.name().to_ascii_lowercase();
            lower == k || lower == format!("{k}s") || lower == format!("{k}es")
        })
    });
    found.with_context(|| {
        let known: Vec<&str> = Kind::ALL.iter().map(|k| k.name()).collect();
        format!("unknown kind {name:?} (one of pods, {})", known.join(", "))
    })
}

/// `mizzen get KIND [NAME]`: the objects in force, as a table (with what the analyzers
/// found about each), YAML or JSON; or the findings themselves.
pub fn get(args: &GetArgs, out: &mut impl Write) -> anyhow::Result<()> {
    match args.kind.to_ascii_lowercase().as_str() {
        "pod" | "pods" | "po" => return get_pods(args, out),
        "finding" | "findings" | "message" | "messages" => return get_findings(args, out),
        _ => {}
    }
    let kind = kind_named(&args.kind)?;
    let dir = args.target.dir()?;
    let snapshot = open_dir(&dir)?.snapshot();
    let objects: Vec<&Object> = snapshot
        .of_kind(kind)
        .map(|o| &**o)
        .filter(|o| {
            let key = o.key();
            args.name.as_ref().is_none_or(|n| *n == key.name)
                && args.namespace.as_ref().is_none_or(|n| *n == key.namespace)
        })
        .collect();
    if let Some(name) = &args.name {
        anyhow::ensure!(
            !objects.is_empty(),
            "{} {name:?} not found{}",
            kind.name(),
            args.namespace
                .as_ref()
                .map(|n| format!(" in namespace {n}"))
                .unwrap_or_default()
        );
    }
    match args.output {
        Some(Output::Yaml) => {
            for (i, object) in objects.iter().enumerate() {
                if i > 0 {
                    writeln!(out, "---")?;
                }
                out.write_all(serde_yaml_ng::to_string(object)?.as_bytes())?;
            }
        }
        Some(Output::Json) => {
            let value = match objects.as_slice() {
                [one] if args.name.is_some() => serde_json::to_value(one)?,
                _ => serde_json::json!({"apiVersion": "v1", "kind": "List", "items": objects}),
            };
            writeln!(out, "{}", serde_json::to_string_pretty(&value)?)?;
        }
        None => {
            let findings = findings(&args.target, &dir, &snapshot);
            let mut codes: HashMap<&str, Vec<&str>> = HashMap::new();
            for finding in &findings {
                if let Some(origin) = &finding.origin {
                    let codes = codes.entry(origin).or_default();
                    if !codes.contains(&finding.code.as_str()) {
                        codes.push(&finding.code);
                    }
                }
            }
            let keys: Vec<ObjectKey> = objects.iter().map(|o| o.key()).collect();
            let width = keys.iter().map(|k| k.name.len()).max().unwrap_or(0).max(20);
            writeln!(out, "{:<20} {:<width$} FINDINGS", "NAMESPACE", "NAME")?;
            for key in keys {
                let found = codes
                    .get(key.to_string().as_str())
                    .map_or_else(|| "-".to_owned(), |codes| codes.join(","));
                writeln!(out, "{:<20} {:<width$} {found}", key.namespace, key.name)?;
            }
        }
    }
    Ok(())
}

/// `mizzen get findings`: what the analyzers found, one istioctl log line each.
fn get_findings(args: &GetArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let dir = args.target.dir()?;
    let snapshot = open_dir(&dir)?.snapshot();
    let findings: Vec<Finding> = findings(&args.target, &dir, &snapshot)
        .into_iter()
        .filter(|f| {
            let (namespace, name) = f.origin.as_deref().map_or(("", ""), namespace_and_name);
            // As istioctl scopes them: cluster-scoped objects are in every namespace.
            args.name.as_ref().is_none_or(|n| n == name)
                && args
                    .namespace
                    .as_ref()
                    .is_none_or(|n| namespace.is_empty() || n == namespace)
        })
        .collect();
    match args.output {
        Some(Output::Json) => writeln!(out, "{}", serde_json::to_string_pretty(&findings)?)?,
        Some(Output::Yaml) => out.write_all(serde_yaml_ng::to_string(&findings)?.as_bytes())?,
        None if findings.is_empty() => {
            let target = match &args.namespace {
                Some(namespace) => format!("namespace: {namespace}"),
                None => "all namespaces".to_owned(),
            };
            eprintln!("\u{2714} No validation issues found when analyzing {target}.");
        }
        None => {
            for finding in findings {
                writeln!(out, "{finding}")?;
            }
        }
    }
    Ok(())
}

/// The namespace (empty if cluster-scoped) and name in an origin, `Kind [ns/]name`.
fn namespace_and_name(origin: &str) -> (&str, &str) {
    let object = origin.split_once(' ').map_or(origin, |(_, object)| object);
    object.split_once('/').unwrap_or(("", object))
}

/// What the analyzers found in the config of `dir`: the running mesh's pilot analyses
/// it after every change; with no mesh on `dir` (or no answer), the files are analysed
/// here as pilot would.
fn findings(target: &Target, dir: &Path, snapshot: &Snapshot) -> Vec<Finding> {
    if let Some(pilot) = target.pilot_of(dir) {
        match from_pilot(pilot) {
            Ok(findings) => return findings,
            Err(e) => eprintln!("note: analysing the files here, as pilot did not say: {e:#}"),
        }
    }
    Findings::of(snapshot, &Default::default()).messages
}

/// Pilot's `/debug/analyzez`.
fn from_pilot(pilot: SocketAddr) -> anyhow::Result<Vec<Finding>> {
    let body = mizzen_ctl::http::get(pilot, "/debug/analyzez")
        .with_context(|| format!("asking pilot at {pilot} what the analyzers found"))?;
    let mut answer: serde_json::Value =
        serde_json::from_str(&body).context("pilot's /debug/analyzez is not JSON")?;
    serde_json::from_value(answer["messages"].take())
        .context("pilot's /debug/analyzez has no list of messages")
}

/// The replicas `mizzen up` runs, from `STATE/pods.json`.
fn get_pods(args: &GetArgs, out: &mut impl Write) -> anyhow::Result<()> {
    let state = StateDir::resolve(args.target.state_dir.clone())?;
    state.mesh()?;
    let path = state.pods_file();
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    let pods: Vec<serde_json::Value> = serde_json::from_str(&text)?;
    let pods: Vec<&serde_json::Value> = pods
        .iter()
        .filter(|p| args.name.as_ref().is_none_or(|n| p["name"] == **n))
        .filter(|p| {
            args.namespace
                .as_ref()
                .is_none_or(|n| p["namespace"] == **n)
        })
        .collect();
    match args.output {
        Some(Output::Json) => writeln!(out, "{}", serde_json::to_string_pretty(&pods)?)?,
        Some(Output::Yaml) => out.write_all(serde_yaml_ng::to_string(&pods)?.as_bytes())?,
        None => {
            writeln!(
                out,
                "{:<28} {:<12} {:<15} {:<9} {:<8} DETAIL",
                "NAME", "NAMESPACE", "IP", "STATUS", "RESTARTS"
            )?;
            let s = |v: &serde_json::Value| v.as_str().unwrap_or_default().to_owned();
            for p in pods {
                writeln!(
                    out,
                    "{:<28} {:<12} {:<15} {:<9} {:<8} {}",
                    s(&p["name"]),
                    s(&p["namespace"]),
                    s(&p["ip"]),
                    s(&p["status"]),
                    p["restarts"],
                    s(&p["detail"])
                )?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_are_named_as_kubectl_names_them() {
        for name in ["virtualservice", "VirtualServices", "vs"] {
            assert_eq!(kind_named(name).unwrap(), Kind::VirtualService);
        }
        assert_eq!(
            kind_named("destinationrules").unwrap(),
            Kind::DestinationRule
        );
        assert!(
            kind_named("widgets")
                .unwrap_err()
                .to_string()
                .contains("widgets")
        );
    }

    #[test]
    fn origins_name_namespace_and_object() {
        assert_eq!(
            namespace_and_name("VirtualService default/reviews"),
            ("default", "reviews")
        );
        assert_eq!(namespace_and_name("Namespace frod"), ("", "frod"));
    }
}
