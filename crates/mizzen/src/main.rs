//! `mizzen`: one binary for the control plane, the proxy, the local mesh and the CLI.

use std::io::Write;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod analyze;
mod config;
mod dashboard;
mod demo;
mod jwks;
mod logs;
mod proxy;
mod proxy_config;
mod run;
mod up;

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use mizzen_pilot::ca::{Ca, LocalTokens, ROOT_CERT};
use mizzen_pilot::dashboard::{DashboardOptions, MetricsSource};
use mizzen_pilot::model::MeshConfig;
use mizzen_pilot::server::{Pilot, PilotOptions, SecureOptions};
use mizzen_pilot::store::DirStore;

/// Where a `mizzen pilot` serves its debug endpoints unless told (Istio's 15014).
const PILOT_DEBUG: &str = "127.0.0.1:15014";

/// Mizzen, a service mesh that speaks Istio.
#[derive(Parser)]
#[command(name = "mizzen", version, about, long_about = None)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Start the local mesh: pilot on DIR, every Deployment in it as local replicas
    /// with their sidecars, and the ingress gateway; Ctrl-C stops it all.
    ///
    /// Each replica gets a loopback address of its own (its pod IP), `PORT`,
    /// `HTTP_PROXY` pointing at its sidecar, and a log file (`mizzen logs NAME`).
    Up(up::UpArgs),
    /// Run a program in the running local mesh, with an address and a sidecar of its own.
    ///
    /// `mizzen run --name web --port 8000 -- python3 -m http.server $PORT` (the program
    /// gets its port in `PORT` and its proxy in `HTTP_PROXY`); ends when it does.
    Run(run::Args),
    /// Print the output of a replica (`reviews-v2-1`) or a Deployment's replicas.
    Logs(logs::Args),
    /// Create or replace objects in the running mesh's config, like `kubectl apply`.
    ///
    /// Everything is validated first: if any object is invalid, nothing is written.
    Apply(config::WriteArgs),
    /// Remove objects from the running mesh's config, like `kubectl delete -f`.
    Delete(config::WriteArgs),
    /// List the objects in force (or the local replicas: `mizzen get pods`).
    Get(config::GetArgs),
    /// Check Istio and Kubernetes config without applying it, like `istioctl validate`.
    ///
    /// Prints every problem (file, document, line, object, field and reason) and exits
    /// with status 1 when any object is invalid.
    Validate {
        /// Files or directories to check (directories are read recursively; `-` reads stdin).
        #[arg(short = 'f', long = "filename", required = true, num_args = 1..)]
        files: Vec<PathBuf>,
    },
    /// Find problems in Istio config, like `istioctl analyze`: files, the running mesh,
    /// or files layered over the running mesh.
    ///
    /// Prints `Level [CODE] (Kind namespace/name file:line) message` per finding and exits
    /// with 79 when one is at or above `--failure-threshold`, 65 when files do not parse.
    Analyze(analyze::Args),
    /// Run the control plane: serve Envoy xDS (ADS) for the config in DIR, and the CA.
    ///
    /// Watches DIR, translates Istio config into Envoy clusters, endpoints, listeners and
    /// routes for each connected proxy, and pushes changes. Debug endpoints
    /// (`/debug/syncz`, `/debug/registryz`, `/debug/configz`,
    /// `/debug/config_dump?proxyID=…`) and `/metrics` are on the HTTP address; the
    /// dashboard on its own.
    ///
    /// Over TLS (the TLS address) it also serves Istio's CA API: a caller with a token
    /// from the tokens directory gets a certificate for its own service account.
    Pilot {
        /// The config directory.
        #[arg(default_value = "examples/bookinfo")]
        dir: PathBuf,
        /// Where to serve ADS (Istio's 15010).
        #[arg(long, default_value = "127.0.0.1:15010")]
        xds_addr: SocketAddr,
        /// Where to serve debug endpoints and metrics (Istio's 15014).
        #[arg(long, default_value = "127.0.0.1:15014")]
        http_addr: SocketAddr,
        /// Quiet time after a config change before pushing (`100ms`, `1s`).
        #[arg(long, default_value = "100ms")]
        debounce: mizzen_api::types::Duration,
        /// Where to serve the dashboard.
        #[arg(long, default_value = "127.0.0.1:20001")]
        dashboard_addr: SocketAddr,
        /// Read the dashboard's metrics from this Prometheus server
        /// (`http://127.0.0.1:9090`) instead of scraping the proxies.
        #[arg(long)]
        prometheus: Option<http::Uri>,
        /// Where to serve xDS and the CA over TLS (Istio's 15012).
        #[arg(long, default_value = "127.0.0.1:15012")]
        tls_addr: SocketAddr,
        /// A plugged-in CA in Istio's `cacerts` layout: `ca-cert.pem`, `ca-key.pem`,
        /// `root-cert.pem` and (for an intermediate) `cert-chain.pem`.
        #[arg(long, value_name = "DIR", conflicts_with = "ca_dir")]
        cacerts: Option<PathBuf>,
        /// Where the self-signed root is kept, made on first start
        /// (default $MIZZEN_HOME/ca or ~/.mizzen/ca, as `mizzen up` keeps it).
        #[arg(long, value_name = "DIR")]
        ca_dir: Option<PathBuf>,
        /// The workloads' tokens for the CA (default $MIZZEN_HOME/tokens or
        /// ~/.mizzen/tokens, where `mizzen up` and `mizzen run` mint them).
        #[arg(long, value_name = "DIR")]
        tokens: Option<PathBuf>,
        /// A MeshConfig file (YAML: what the `mesh` key of Istio's `istio` ConfigMap
        /// holds), read as istiod reads its mounted ConfigMap. Without it, the `istio`
        /// ConfigMap in DIR's root namespace is read and followed as it changes.
        #[arg(long, value_name = "FILE")]
        mesh_config: Option<PathBuf>,
        #[command(flatten)]
        jwks: jwks::JwksArgs,
    },
    /// Print the URL of the running mesh's dashboard (`--browser` opens it).
    ///
    /// The dashboard, served by pilot, shows the service graph live (requests per
    /// second, errors, latency, mTLS), a page per service, and the proxies' sync status.
    Dashboard(dashboard::Args),
    /// Run the data plane: a proxy that takes Envoy config from a bootstrap file or a pilot.
    ///
    /// `mizzen proxy -c bootstrap.yaml` runs like `envoy -c bootstrap.yaml`;
    /// `mizzen proxy --pilot 127.0.0.1:15010 --node-id sidecar~IP~NAME.NS~NS.svc.cluster.local`
    /// runs as a sidecar of a Mizzen (or any xDS) control plane.
    Proxy(proxy::Args),
    /// Show each proxy's sync state with the control plane, like `istioctl proxy-status`.
    ProxyStatus {
        /// Only this proxy (its node id, or `name.namespace`).
        proxy: Option<String>,
        /// The control plane's debug address; default: that of the mesh `mizzen up` runs,
        /// else 127.0.0.1:15014 (a `mizzen pilot` of its own).
        #[arg(long)]
        pilot: Option<SocketAddr>,
        /// The state directory of the running mesh; default $MIZZEN_HOME or ~/.mizzen.
        #[arg(long)]
        state_dir: Option<PathBuf>,
        /// With PROXY: its admin address (15000), to compare what pilot sent with what
        /// the proxy holds.
        #[arg(long, requires = "proxy")]
        proxy_admin: Option<SocketAddr>,
    },
    /// Show what a proxy holds, like `istioctl proxy-config`.
    ///
    /// Reads a running proxy's admin (127.0.0.1:15000 unless told) or a saved
    /// `/config_dump` (`--file`, from Mizzen's proxy or any Envoy), and prints its
    /// clusters, listeners, routes, endpoints, secrets or bootstrap as istioctl's
    /// tables, or as JSON or YAML (`-o`).
    #[command(visible_alias = "pc")]
    ProxyConfig(proxy_config::Args),
    /// Run one of the demo apps: Istio's Bookinfo services, or an httpbin.
    ///
    /// Listens on `$POD_IP:$PORT` (127.0.0.1 and 9080 unless set); productpage and
    /// reviews call the other services through `$HTTP_PROXY` when set.
    DemoApp(demo::Args),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Logs go to stderr; RUST_LOG (e.g. `RUST_LOG=mizzen_pilot=debug`) turns them up,
    // and the proxy's `--log-level` sets the default.
    let default_level = match &cli.command {
        Command::Proxy(args) => args.log_level.as_str(),
        // Failed calls to other services are worth seeing in the replica's log.
        Command::DemoApp(_) => "warn",
        _ => "error",
    };
    let levels = proxy::LogControl::install(default_level);
    match run(cli.command, levels) {
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

fn run(command: Command, levels: proxy::LogControl) -> anyhow::Result<ExitCode> {
    match command {
        Command::Validate { files } => {
            let summary = mizzen_ctl::validate::run(&files, &mut std::io::stdout().lock())?;
            Ok(if summary.ok() {
                ExitCode::SUCCESS
            } else {
                ExitCode::FAILURE
            })
        }
        Command::Analyze(args) => analyze::run(args),
        Command::Up(args) => {
            runtime()?.block_on(up::run(args))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Run(args) => runtime()?.block_on(run::run(args)),
        Command::Logs(args) => {
            logs::run(&args, &mut std::io::stdout().lock())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Apply(args) => {
            config::apply(&args, &mut std::io::stdout().lock())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Delete(args) => {
            config::delete(&args, &mut std::io::stdout().lock())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Get(args) => {
            config::get(&args, &mut std::io::stdout().lock())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Pilot {
            dir,
            xds_addr,
            http_addr,
            debounce,
            dashboard_addr,
            prometheus,
            tls_addr,
            cacerts,
            ca_dir,
            tokens,
            mesh_config,
            jwks,
        } => {
            let mut dashboard = DashboardOptions::default();
            if let Some(url) = prometheus {
                dashboard.metrics = MetricsSource::Prometheus(url);
            }
            let mesh = match mesh_config {
                Some(path) => MeshConfig::from_file(&path)?,
                None => MeshConfig::default(),
            };
            let state = up::state::StateDir::resolve(None)?;
            let (ca, ca_dir) = match cacerts {
                Some(dir) => (Ca::load(&dir), dir),
                None => {
                    let dir = ca_dir.unwrap_or_else(|| state.ca_dir());
                    (Ca::load_or_create(&dir, &mesh.trust_domain), dir)
                }
            };
            let ca = ca.with_context(|| format!("setting up the CA from {}", ca_dir.display()))?;
            let tokens = LocalTokens::open(&tokens.unwrap_or_else(|| state.tokens_dir()))?;
            let options = PilotOptions {
                xds_addr,
                http_addr,
                debounce: debounce.get(),
                mesh,
                dashboard_addr: Some(dashboard_addr),
                dashboard,
                secure: Some(SecureOptions {
                    addr: tls_addr,
                    ca: Arc::new(ca),
                    callers: Arc::new(tokens),
                }),
                jwks: jwks.options()?,
            };
            runtime()?.block_on(pilot(&dir, &ca_dir, options))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Proxy(args) => {
            // One worker is one thread, as Envoy's `--concurrency 1` is one event loop:
            // no cross-thread wakeups on the request path.
            let mut builder = match args.concurrency {
                1 => tokio::runtime::Builder::new_current_thread(),
                _ => tokio::runtime::Builder::new_multi_thread(),
            };
            if args.concurrency > 1 {
                builder.worker_threads(args.concurrency);
            }
            builder
                .enable_all()
                .build()?
                .block_on(proxy::run(args, levels))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Dashboard(args) => {
            dashboard::run(&args, &mut std::io::stdout().lock())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::ProxyStatus {
            proxy,
            pilot,
            state_dir,
            proxy_admin,
        } => {
            let pilot = match pilot {
                Some(pilot) => pilot,
                None => up::state::StateDir::resolve(state_dir)?
                    .mesh()
                    .map_or_else(|_| PILOT_DEBUG.parse().expect("an address"), |m| m.debug),
            };
            let out = mizzen_ctl::proxy_status::run(pilot, proxy.as_deref(), proxy_admin)?;
            print!("{out}");
            Ok(ExitCode::SUCCESS)
        }
        Command::ProxyConfig(args) => {
            // Not `print!`, which panics when `| head` closes the pipe.
            std::io::stdout().write_all(proxy_config::run(args)?.as_bytes())?;
            Ok(ExitCode::SUCCESS)
        }
        Command::DemoApp(args) => {
            // Many replicas share the machine: one thread each is plenty.
            tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?
                .block_on(demo::run(args))?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

fn runtime() -> std::io::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
}

/// Runs pilot on the directory store at `dir`, its CA from `ca_dir`, until Ctrl-C.
async fn pilot(
    dir: &std::path::Path,
    ca_dir: &std::path::Path,
    options: PilotOptions,
) -> anyhow::Result<()> {
    anyhow::ensure!(
        dir.is_dir(),
        "config directory {} does not exist",
        dir.display()
    );
    let store = DirStore::open(dir)
        .with_context(|| format!("opening config directory {}", dir.display()))?;
    let pilot = Pilot::bind(Arc::new(store), options).await?;
    eprintln!(
        "pilot: config from {}, xDS on {}, xDS and CA over TLS on {} (root {}), debug on http://{}",
        dir.display(),
        pilot.xds_addr(),
        pilot.tls_addr().map_or("-".to_owned(), |a| a.to_string()),
        ca_dir.join(ROOT_CERT).display(),
        pilot.http_addr()
    );
    if let Some(dashboard) = pilot.dashboard_addr() {
        eprintln!("Dashboard: http://{dashboard}/");
    }
    pilot
        .run(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    Ok(())
}
