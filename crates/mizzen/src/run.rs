//! `mizzen run --name NAME … -- CMD…`: meshes a program into the running local mesh.
//! It gets an address and a sidecar like `up`'s replicas, is registered in
//! `STATE/workloads/` (which the mesh's pilot watches) and unregistered when it ends.
//! Its sidecar's token for the mesh's CA is minted in `STATE/tokens/` and revoked when
//! it ends too.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use mizzen_api::Object;
use mizzen_api::load::Loader;
use mizzen_pilot::ca::{ISTIOD_SAN, LocalTokens, ROOT_CERT, ServiceAccount};
use mizzen_pilot::model::MeshConfig;
use mizzen_xds::tls::ClientTls;

use crate::up::state::{StateDir, write_atomic};
use crate::up::workload::{Replica, Workload};
use crate::up::{Addresses, Identity, PilotAccess, Ports, free_port, signal_group};

/// `mizzen run`'s options.
#[derive(Debug, Clone, clap::Args)]
pub struct Args {
    /// The workload's name (its pod name and, unless `--labels` says otherwise, `app`).
    #[arg(long)]
    name: String,
    /// Pod labels, `k=v,k=v` (default `app=NAME`).
    #[arg(long, value_delimiter = ',')]
    labels: Vec<String>,
    /// The port the program serves (it gets its real port in `PORT`).
    #[arg(long)]
    port: Option<u16>,
    /// The service account.
    #[arg(long, default_value = "default")]
    service_account: String,
    /// The namespace.
    #[arg(short = 'n', long, default_value = "default")]
    namespace: String,
    /// The lifetime of the sidecar's certificate (Istio's `SECRET_TTL`).
    #[arg(long, env = "SECRET_TTL", default_value = "24h")]
    secret_ttl: mizzen_api::types::Duration,
    /// The state directory of the running mesh; default $MIZZEN_HOME or ~/.mizzen.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// The program and its arguments.
    #[arg(last = true, required = true)]
    command: Vec<String>,
}

/// Runs the program in the mesh until it exits or Ctrl-C; its exit status is ours.
pub async fn run(args: Args) -> anyhow::Result<ExitCode> {
    let state = StateDir::resolve(args.state_dir.clone())?;
    let mesh = state.mesh()?;
    let mut labels = BTreeMap::new();
    for entry in &args.labels {
        let (k, v) = entry
            .split_once('=')
            .with_context(|| format!("--labels {entry:?}: expected KEY=VALUE"))?;
        labels.insert(k.to_owned(), v.to_owned());
    }
    if labels.is_empty() {
        labels.insert("app".to_owned(), args.name.clone());
    }
    let config = Loader::new().load_path(&mesh.config_dir);
    let services: Vec<_> = config
        .objects
        .iter()
        .filter_map(|l| match &l.object {
            Object::Service(s) => Some(&**s),
            _ => None,
        })
        .collect();
    let workload = Workload::for_command(
        &args.name,
        &args.namespace,
        labels,
        &args.service_account,
        args.port,
        args.command.clone(),
        &services,
    );
    let ip = Addresses::default()
        .allocate()
        .context("no free loopback address left")?;
    let replica = Replica {
        pod: args.name.clone(),
        ip,
        app_ports: workload
            .ports
            .iter()
            .map(|_| free_port(ip))
            .collect::<std::io::Result<_>>()?,
    };
    let registration = state
        .workloads_dir()
        .join(format!("{}.{}.yaml", args.namespace, replica.pod));
    anyhow::ensure!(
        !registration.exists(),
        "a workload named {} already runs in namespace {}",
        args.name,
        args.namespace
    );
    let root_path = state.ca_dir().join(ROOT_CERT);
    let root = std::fs::read(&root_path).with_context(|| {
        format!(
            "reading the mesh's root certificate {}",
            root_path.display()
        )
    })?;
    let access = PilotAccess {
        addr: mesh.tls,
        tls: ClientTls::new(&root, ISTIOD_SAN)
            .with_context(|| format!("{}", root_path.display()))?,
        trust_domain: MeshConfig::default().trust_domain.clone(),
        secret_ttl: args.secret_ttl.get(),
    };
    let tokens = LocalTokens::open(&state.tokens_dir())?;
    let token = tokens.issue(&ServiceAccount {
        namespace: workload.namespace.clone(),
        name: workload.service_account.clone(),
    })?;
    write_atomic(&registration, workload.registration(&replica).as_bytes())?;
    let outcome = serve(&workload, &replica, &access, token.clone()).await;
    let _ = std::fs::remove_file(&registration);
    let _ = tokens.revoke(&token);
    outcome
}

async fn serve(
    workload: &Workload,
    replica: &Replica,
    pilot: &PilotAccess,
    token: String,
) -> anyhow::Result<ExitCode> {
    let who = Identity {
        node_id: workload.node_id(replica),
        workload: workload.name.clone(),
        labels: workload.labels_of(replica),
        namespace: workload.namespace.clone(),
        service_account: workload.service_account.clone(),
        ip: replica.ip,
        uncaptured: true,
    };
    let proxy = crate::up::start_proxy(&who, pilot, token, Ports::Pod(replica.ip.into())).await?;
    crate::up::ready(&proxy).await;
    let env = workload.env_of(replica);
    eprintln!(
        "mizzen run: {} joined the mesh at {} (HTTP_PROXY={}{})",
        replica.pod,
        replica.ip,
        env.iter()
            .find(|(k, _)| k == "HTTP_PROXY")
            .map_or("", |(_, v)| v),
        replica
            .app_ports
            .first()
            .map(|p| format!(", PORT={p}"))
            .unwrap_or_default()
    );
    let (program, rest) = workload.program()?;
    let mut child = tokio::process::Command::new(&program)
        .args(rest)
        .envs(env)
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("starting {}", program.display()))?;
    let pid = child.id().unwrap_or_default() as libc::pid_t;
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    let code = tokio::select! {
        status = child.wait() => {
            let status = status?;
            ExitCode::from(status.code().map_or(1, |c| c as u8))
        }
        _ = tokio::signal::ctrl_c() => ExitCode::SUCCESS,
        _ = term.recv() => ExitCode::SUCCESS,
    };
    signal_group(pid, libc::SIGTERM);
    if tokio::time::timeout(std::time::Duration::from_secs(3), child.wait())
        .await
        .is_err()
    {
        signal_group(pid, libc::SIGKILL);
        let _ = child.wait().await;
    }
    signal_group(pid, libc::SIGKILL);
    proxy.shutdown();
    Ok(code)
}
