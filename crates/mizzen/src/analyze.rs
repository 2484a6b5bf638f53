//! `mizzen analyze`: the arguments of `istioctl analyze`, and the running mesh's config
//! as the live source.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use mizzen_api::Object;
use mizzen_api::analyze::Level;
use mizzen_ctl::analyze::{self, Format, Options, Scope, Suppression};
use mizzen_pilot::server::analysis::live_objects;
use mizzen_pilot::store::{ConfigStore, DirStore};

use crate::up::state::StateDir;

/// `mizzen analyze`'s options, istioctl's names.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// Files or directories of config to analyse (directories are read recursively).
    inputs: Vec<PathBuf>,
    /// The namespace to report on, and of objects in files that name none.
    #[arg(short = 'n', long, default_value = "default")]
    namespace: String,
    /// Report on every namespace.
    #[arg(short = 'A', long)]
    all_namespaces: bool,
    /// Also analyse the running mesh (`mizzen up`), with the files layered over it.
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    use_kube: bool,
    /// `log`, `json` or `yaml`.
    #[arg(short = 'o', long, default_value = "log")]
    output: Format,
    /// Exit with status 79 when a message is at least this serious (Info, Warning, Error).
    #[arg(long, default_value = "Error")]
    failure_threshold: Level,
    /// Print only messages at least this serious.
    #[arg(long, default_value = "Info")]
    output_threshold: Level,
    /// Do not report CODE about matching resources: `IST0102=Namespace frod`, globs with `*`.
    #[arg(short = 'S', long = "suppress")]
    suppress: Vec<Suppression>,
    /// Run only this analyzer.
    #[arg(long)]
    analyzer: Option<String>,
    /// List the analyzers and exit.
    #[arg(long)]
    list_analyzers: bool,
    /// Read directories recursively.
    #[arg(short = 'R', long, default_value_t = true, action = clap::ArgAction::Set)]
    recursive: bool,
    /// A MeshConfig file to use instead of the defaults.
    #[arg(long = "meshConfigFile")]
    mesh_config_file: Option<PathBuf>,
    /// Succeed even when some files cannot be parsed.
    #[arg(long, default_value_t = false, action = clap::ArgAction::Set)]
    ignore_unknown: bool,
    /// The state directory of the running mesh; default $MIZZEN_HOME or ~/.mizzen.
    #[arg(long)]
    state_dir: Option<PathBuf>,
}

/// Runs the analysis; the exit code is istioctl's.
pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let mut out = std::io::stdout().lock();
    if args.list_analyzers {
        analyze::list_analyzers(&mut out)?;
        return Ok(ExitCode::SUCCESS);
    }
    let live = if args.use_kube {
        Some(running_mesh_objects(
            args.state_dir.clone(),
            !args.inputs.is_empty(),
        )?)
    } else {
        None
    };
    anyhow::ensure!(
        live.is_some() || !args.inputs.is_empty(),
        "nothing to analyse: give files or directories, or analyse the running mesh (--use-kube)"
    );
    let options = Options {
        inputs: args.inputs,
        scope: if args.all_namespaces {
            Scope::All
        } else {
            Scope::Namespace(args.namespace)
        },
        live: live.flatten(),
        failure_threshold: args.failure_threshold,
        output_threshold: args.output_threshold,
        format: args.output,
        suppressions: args.suppress,
        analyzer: args.analyzer,
        mesh_config: args.mesh_config_file,
        recursive: args.recursive,
        ignore_unknown: args.ignore_unknown,
    };
    let code = analyze::run(options, &mut out, &mut std::io::stderr().lock())?;
    Ok(ExitCode::from(code))
}

/// The running mesh's objects, with a Pod for each replica of its Deployments; `None`
/// (with a notice) when no mesh runs but files were given, as there is still work.
fn running_mesh_objects(
    state_dir: Option<PathBuf>,
    have_files: bool,
) -> anyhow::Result<Option<Vec<Object>>> {
    let mesh = StateDir::resolve(state_dir).and_then(|state| state.mesh());
    let mesh = match mesh {
        Ok(mesh) => mesh,
        Err(e) if have_files => {
            eprintln!("note: not analysing a running mesh ({e:#}); files only");
            return Ok(None);
        }
        Err(e) => {
            return Err(e.context(
                "no running mesh to analyse (start one with `mizzen up`, or give files)",
            ));
        }
    };
    let dir = &mesh.config_dir;
    let store = DirStore::open(dir)
        .with_context(|| format!("opening config directory {}", dir.display()))?;
    Ok(Some(live_objects(&store.snapshot())))
}
