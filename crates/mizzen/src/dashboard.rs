//! `mizzen dashboard`: the URL of the running mesh's dashboard, which pilot serves (as
//! `istioctl dashboard` finds Kiali's), and, if asked, the desktop's browser on it.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;

use crate::up::state::StateDir;

/// `mizzen dashboard`'s options.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The control plane's debug address; default: that of the mesh `mizzen up` runs.
    #[arg(long)]
    pilot: Option<SocketAddr>,
    /// The state directory of the running mesh; default $MIZZEN_HOME or ~/.mizzen.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Also open it in the desktop's browser (`xdg-open`).
    #[arg(long)]
    browser: bool,
}

/// Prints the dashboard's URL (alone on its line, for scripts), and opens it if asked.
pub fn run(args: &Args, out: &mut impl Write) -> anyhow::Result<()> {
    let pilot = match args.pilot {
        Some(addr) => addr,
        None => StateDir::resolve(args.state_dir.clone())?.mesh()?.debug,
    };
    let answer = mizzen_ctl::http::get(pilot, "/debug/dashboardz")
        .with_context(|| format!("asking pilot at {pilot} where its dashboard is"))?;
    let answer: serde_json::Value =
        serde_json::from_str(&answer).context("pilot's /debug/dashboardz is not JSON")?;
    let url = answer["url"]
        .as_str()
        .context("pilot's /debug/dashboardz names no url")?;
    writeln!(out, "{url}")?;
    if args.browser {
        let opened = std::process::Command::new("xdg-open")
            .arg(url)
            .status()
            .context("running xdg-open (open the URL above by hand)")?;
        anyhow::ensure!(opened.success(), "xdg-open {url}: {opened}");
    }
    Ok(())
}
