//! `mizzen`: one binary for the control plane, the proxy, the local mesh and the CLI.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli.command) {
        Ok(code) => code,
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
            Ok(if summary.ok() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
    }
}
