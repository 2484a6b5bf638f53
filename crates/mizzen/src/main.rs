//! `mizzen`: one binary for the control plane, the proxy, the local mesh and the CLI.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod up;

/// Mizzen, a service mesh that speaks Istio.
#[derive(Parser)]
#[command(name = "mizzen", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Check Istio and Kubernetes config without applying it, like `istioctl validate`.
    ///
    /// Prints every problem (file, document, line, object, field and reason) and exits
    /// with status 1 when any object is invalid.
    Validate {
        /// Files or directories to check (directories are read recursively; `-` reads stdin).
        #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
        files: Vec<PathBuf>,
    },
    /// Start the local mesh on a directory of Istio and Kubernetes YAML.
    ///
    /// Today this runs the config store: it loads and validates DIR, prints the objects
    /// in force, and reports every change made to the files until Ctrl-C. An invalid edit
    /// is reported and the last good version of that file stays in force.
    Up {
        /// The mesh's config directory.
        #[arg(default_value = "examples/bookinfo")]
        dir: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Logs go to stderr; RUST_LOG (e.g. `RUST_LOG=mizzen_pilot=debug`) turns them up.
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .with_writer(std::io::stderr)
        .init();
    match run(cli.command) {
        Ok(code) => code,
        // Output piped into `head` and closed early: not an error worth a message.
        Err(e)
            if e.downcast_ref::<std::io::Error>()
                .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe) =>
        {
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("Error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Validate { files } => {
            let summary = mizzen_ctl::validate::run(&files, &mut std::io::stdout().lock())?;
            Ok(if summary.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Up { dir } => {
            tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()?
                .block_on(up::run(&dir))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
