//! `mizzen up [DIR]`: the whole mesh on one machine. Pilot serves the config in DIR
//! (watched), every Deployment in it runs as local replicas, each with a loopback
//! address of its own and a sidecar (started, replaced and stopped as Deployments are
//! applied, changed and deleted), and an ingress gateway fronts them; Ctrl-C stops it
//! all.
//!
//! Replicas are registered in `STATE/workloads/` (a WorkloadEntry and a Sidecar each),
//! never in DIR: pilot serves the union of both directories, so `mizzen run` can add
//! workloads the same way and the user's files stay theirs.
//!
//! Pilot's CA keeps its root in `STATE/ca/`. Each proxy gets a token of its own
//! (`STATE/tokens/`) for its workload's service account, takes its config over TLS
//! verified against that root, and gets its certificate at start.

mod addr;
mod fleet;
mod pods;
mod proxies;
pub mod state;
mod supervisor;
pub mod workload;

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use mizzen_pilot::ca::{Ca, ISTIOD_SAN, LocalTokens, ServiceAccount};
use mizzen_pilot::model::MeshConfig;
use mizzen_pilot::server::{Pilot, PilotOptions, SecureOptions};
use mizzen_pilot::store::{ChangeKind, ConfigStore, DirStore, Problem, Snapshot, UnionStore};
use mizzen_proxy::Proxy;
use mizzen_xds::tls::ClientTls;
use tokio::sync::watch;

pub use addr::{Addresses, free_port};
use fleet::Fleet;
use proxies::PROMETHEUS_PORTS;
pub use proxies::{ADMIN_PORT, Identity, PilotAccess, Ports, start as start_proxy};
use state::{MeshInfo, StateDir};
pub use supervisor::signal_group;
use workload::Workload;

/// How long proxies have to get their config before `up` says which did not.
const READY_WAIT: Duration = Duration::from_secs(30);

/// `mizzen up`'s options.
#[derive(Debug, Clone, clap::Args)]
pub struct UpArgs {
    /// The mesh's config directory (Istio and Kubernetes YAML).
    #[arg(default_value = "examples/bookinfo")]
    pub dir: PathBuf,
    /// A MeshConfig file (YAML: what the `mesh` key of Istio's `istio` ConfigMap
    /// holds), read as istiod reads its mounted ConfigMap. Without it, the `istio`
    /// ConfigMap in DIR's root namespace is read and followed as it changes.
    #[arg(long, value_name = "FILE")]
    pub mesh_config: Option<PathBuf>,
    /// The state directory (lock, mesh.json, logs); default $MIZZEN_HOME or ~/.mizzen.
    #[arg(long)]
    pub state_dir: Option<PathBuf>,
    /// The ingress gateway's address (its pod IP): it listens there on the ports the
    /// Gateways that select it name (8080 for Bookinfo's), as Istio's gateway pod does.
    #[arg(long, default_value = "127.0.0.1")]
    pub ingress_ip: Ipv4Addr,
    /// Where pilot serves xDS; a busy default falls back to a free port.
    #[arg(long, default_value = "127.0.0.1:15010")]
    pub xds_addr: SocketAddr,
    /// Where pilot serves xDS and its CA over TLS, which the mesh's proxies use; a
    /// busy default falls back to a free port.
    #[arg(long, default_value = "127.0.0.1:15012")]
    pub tls_addr: SocketAddr,
    /// Where pilot serves its debug endpoints; a busy default falls back to a free port.
    #[arg(long, default_value = "127.0.0.1:15014")]
    pub debug_addr: SocketAddr,
    /// The lifetime of the proxies' certificates (Istio's `SECRET_TTL`: `24h`; `4s`
    /// to watch them rotate); each renews at half its life.
    #[arg(long, env = "SECRET_TTL", default_value = "24h")]
    pub secret_ttl: mizzen_api::types::Duration,
    /// How pilot fetches `jwksUri`s.
    #[command(flatten)]
    pub jwks: crate::jwks::JwksArgs,
}

/// Runs the mesh until Ctrl-C or SIGTERM.
pub async fn run(args: UpArgs) -> anyhow::Result<()> {
    let started = Instant::now();
    anyhow::ensure!(
        args.dir.is_dir(),
        "config directory {} does not exist (run `mizzen up DIR` with a directory of Istio/Kubernetes YAML)",
        args.dir.display()
    );
    let state = StateDir::resolve(args.state_dir.clone())?;
    let _lock = state.lock()?;
    let workloads_dir = state.workloads_dir();
    // What an earlier mesh registered is stale: its proxies and apps are gone.
    match std::fs::remove_dir_all(&workloads_dir) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("clearing {}", workloads_dir.display()));
        }
        _ => {}
    }
    std::fs::create_dir_all(&workloads_dir)?;
    std::fs::create_dir_all(state.logs_dir())?;
    let mesh_config = match &args.mesh_config {
        Some(path) => MeshConfig::from_file(path)?,
        None => MeshConfig::default(),
    };
    let ca_dir = state.ca_dir();
    let ca = Arc::new(
        Ca::load_or_create(&ca_dir, &mesh_config.trust_domain)
            .with_context(|| format!("setting up the mesh's CA in {}", ca_dir.display()))?,
    );
    let tokens = LocalTokens::open(&state.tokens_dir())?;
    // Tokens of an earlier mesh are stale: its proxies are gone.
    tokens.revoke_all()?;

    let config = Arc::new(
        DirStore::open(&args.dir)
            .with_context(|| format!("opening config directory {}", args.dir.display()))?,
    );
    let mut out = std::io::stdout().lock();
    let mut changes = config.subscribe();
    let mut problems = config.problems();
    let snapshot = changes.initial.clone();
    print_config(&mut out, &args.dir, &snapshot)?;
    print_problems(&mut out, &problems.borrow_and_update())?;
    let objects: Vec<&mizzen_api::Object> = snapshot.iter().map(|(_, o)| &**o).collect();
    let workloads = Workload::all_in(&objects)?;

    // Addresses and registrations first, so pilot starts with every workload known.
    let mut fleet = Fleet::register(state.clone(), tokens.clone(), workloads)?;
    let registered = Arc::new(DirStore::open(&workloads_dir)?);
    let store = Arc::new(UnionStore::new(config.clone(), vec![registered]));

    let secure = SecureOptions {
        addr: args.tls_addr,
        ca: ca.clone(),
        callers: Arc::new(tokens.clone()),
    };
    let trust_domain = mesh_config.trust_domain.clone();
    let pilot = bind_pilot(store, &args, mesh_config, secure).await?;
    let (xds, debug) = (pilot.xds_addr(), pilot.http_addr());
    let dashboard = pilot.dashboard_addr();
    let tls = pilot.tls_addr().context("pilot serves TLS")?;
    let access = PilotAccess {
        addr: tls,
        tls: ClientTls::new(ca.root_pem().as_bytes(), ISTIOD_SAN)?,
        trust_domain,
        secret_ttl: args.secret_ttl.get(),
    };
    let (stop_tx, stop) = watch::channel(false);
    let mut pilot_stop = stop.clone();
    let pilot_task = tokio::spawn(pilot.run(async move {
        let _ = pilot_stop.wait_for(|s| *s).await;
    }));
    let mesh = MeshInfo {
        config_dir: args.dir.canonicalize()?,
        xds,
        tls,
        debug,
        dashboard,
        ingress: args.ingress_ip,
        pid: std::process::id(),
    };
    state.write_mesh(&mesh)?;

    fleet.start(&access).await?;
    let ingress_ip = args.ingress_ip;
    let gateway_identity = proxies::ingress_gateway(ingress_ip);
    let token = tokens.issue(&service_account(&gateway_identity))?;
    // Istio's gateways serve their admin and Prometheus ports (15020 /stats/prometheus,
    // where the dashboard scrapes) as sidecars do. On an address other processes share
    // (127.0.0.1, say) those may be taken: the gateway then serves its admin on a free
    // port and no metrics, rather than failing the mesh.
    let ports = [ADMIN_PORT, PROMETHEUS_PORTS[0], PROMETHEUS_PORTS[1]];
    let gateway_ports = if addr::ports_free(ingress_ip, &ports) {
        Ports::Pod(ingress_ip.into())
    } else {
        writeln!(
            out,
            "warning: the ingress gateway serves no metrics and its admin on a free port: one of {ports:?} on {ingress_ip} is taken"
        )?;
        Ports::AdminOnly(ingress_ip.into())
    };
    let gateway = proxies::start(&gateway_identity, &access, token, gateway_ports)
        .await
        .context("starting the ingress gateway")?;
    let gateway_name = gateway_identity.pod().to_owned();
    let others: Vec<(String, SocketAddr)> = gateway
        .admin_addr()
        .map(|admin| (gateway_name.clone(), admin))
        .into_iter()
        .collect();
    fleet.record_proxies(&others)?;

    let all_proxies = || fleet.proxies().chain([(gateway_name.clone(), &gateway)]);
    let waited = tokio::time::timeout(
        READY_WAIT,
        futures_all(all_proxies().map(|(_, p)| ready(p))),
    )
    .await;
    if waited.is_err() {
        for (name, proxy) in all_proxies() {
            let warming = proxy.store().snapshot().warming();
            if !warming.is_empty() {
                writeln!(
                    out,
                    "warning: proxy {name} still waits for config: {warming:?}"
                )?;
            }
            if proxy.identity().is_some_and(|id| id.current().is_none()) {
                writeln!(out, "warning: proxy {name} has no certificate yet")?;
            }
        }
    }
    let elapsed = started.elapsed();
    // Where the Gateways that select the ingress made it listen.
    let ingress = gateway.listener_addrs();
    print_ready(
        &mut out,
        &mesh,
        &state,
        &ingress,
        &fleet,
        all_proxies().count(),
        elapsed,
    )?;
    writeln!(
        out,
        "Watching {} for changes (Ctrl-C to stop)",
        args.dir.display()
    )?;
    out.flush()?;
    drop(out);

    let signal = wait_for_signal();
    tokio::pin!(signal);
    loop {
        let mut out = std::io::stdout().lock();
        tokio::select! {
            r = &mut signal => { r?; break }
            batch = changes.next() => {
                let Some(batch) = batch else { break };
                for change in &batch.changes {
                    let verb = match change.kind {
                        ChangeKind::Added => "added",
                        ChangeKind::Updated => "updated",
                        ChangeKind::Removed => "removed",
                    };
                    writeln!(out, "revision {}: {verb} {}", batch.revision(), change.key)?;
                }
                out.flush()?;
                drop(out);
                // Deployments (and the Services that name their ports) as they are now.
                let objects: Vec<&mizzen_api::Object> =
                    batch.snapshot.iter().map(|(_, o)| &**o).collect();
                let said = fleet.reconcile(&objects, &access).await;
                if !said.is_empty() {
                    fleet.record_proxies(&others)?;
                }
                let mut out = std::io::stdout().lock();
                for line in said {
                    writeln!(out, "{line}")?;
                }
                out.flush()?;
                continue;
            }
            changed = problems.changed() => {
                if changed.is_err() { break }
                print_problems(&mut out, &problems.borrow_and_update())?;
            }
        }
        out.flush()?;
    }
    println!("Stopping…");
    fleet.stop().await;
    gateway.shutdown();
    drop(gateway);
    stop_tx.send_replace(true);
    let _ = pilot_task.await;
    let _ = std::fs::remove_dir_all(&workloads_dir);
    let _ = tokens.revoke_all();
    println!("Stopped.");
    Ok(())
}

/// What the config holds, by kind.
fn print_config(out: &mut impl Write, dir: &Path, snapshot: &Snapshot) -> std::io::Result<()> {
    let mut by_kind: BTreeMap<String, usize> = BTreeMap::new();
    for (key, _) in snapshot.iter() {
        *by_kind.entry(key.kind.clone()).or_default() += 1;
    }
    let counts: Vec<String> = by_kind.iter().map(|(k, n)| format!("{n} {k}")).collect();
    writeln!(
        out,
        "Config from {} at revision {}: {} objects ({})",
        dir.display(),
        snapshot.revision,
        snapshot.len(),
        counts.join(", ")
    )
}

fn print_problems(out: &mut impl Write, problems: &[Problem]) -> std::io::Result<()> {
    for problem in problems {
        writeln!(out, "refused (last good version stays in force): {problem}")?;
    }
    Ok(())
}

/// Binds pilot on the given addresses, or free ports where they are taken.
async fn bind_pilot(
    store: Arc<dyn ConfigStore>,
    args: &UpArgs,
    mesh: MeshConfig,
    secure: SecureOptions,
) -> anyhow::Result<Pilot> {
    let mut options = PilotOptions {
        xds_addr: args.xds_addr,
        http_addr: args.debug_addr,
        debounce: Duration::from_millis(20),
        mesh,
        secure: Some(secure),
        dashboard_addr: Some(mizzen_pilot::dashboard::DEFAULT_ADDR),
        dashboard: Default::default(),
        jwks: args.jwks.options()?,
    };
    let secure = options.secure.as_mut().expect("set above");
    let dashboard = options.dashboard_addr.as_mut();
    for addr in [
        &mut options.xds_addr,
        &mut options.http_addr,
        &mut secure.addr,
    ]
    .into_iter()
    .chain(dashboard)
    {
        if std::net::TcpListener::bind(*addr).is_err() {
            addr.set_port(0);
        }
    }
    Ok(Pilot::bind(store, options).await?)
}

/// The service account a proxy's workload runs as, which its token stands for.
fn service_account(who: &Identity) -> ServiceAccount {
    ServiceAccount {
        namespace: who.namespace.clone(),
        name: who.service_account.clone(),
    }
}

/// Waits until `proxy` has its config and, when it has an identity, its certificate.
pub async fn ready(proxy: &Proxy) {
    proxy.ready().await;
    if let Some(identity) = proxy.identity() {
        identity.issued().await;
    }
}

/// Waits for every future.
async fn futures_all<F: std::future::Future<Output = ()>>(futures: impl Iterator<Item = F>) {
    for future in futures {
        future.await;
    }
}

/// Ctrl-C or SIGTERM.
async fn wait_for_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    tokio::select! {
        r = tokio::signal::ctrl_c() => r?,
        _ = term.recv() => {}
    }
    Ok(())
}

fn print_ready(
    out: &mut impl Write,
    mesh: &MeshInfo,
    state: &StateDir,
    ingress: &[SocketAddr],
    fleet: &Fleet,
    proxies: usize,
    elapsed: Duration,
) -> std::io::Result<()> {
    writeln!(
        out,
        "Mesh ready in {} ms: {} replicas, {proxies} proxies, config from {}",
        elapsed.as_millis(),
        fleet.replicas().count(),
        mesh.config_dir.display()
    )?;
    for (_, replica) in fleet.replicas() {
        writeln!(
            out,
            "  {:<28} {:<15} sidecar admin http://{}:{ADMIN_PORT}  log {}",
            replica.pod,
            replica.ip,
            replica.ip,
            state.log_file(&replica.pod).display()
        )?;
    }
    writeln!(
        out,
        "Pilot: xDS {} (plaintext), xDS and CA over TLS {}, debug http://{}",
        mesh.xds, mesh.tls, mesh.debug
    )?;
    writeln!(
        out,
        "Mesh root certificate: {}",
        state.ca_dir().join(mizzen_pilot::ca::ROOT_CERT).display()
    )?;
    if let Some(dashboard) = mesh.dashboard {
        writeln!(out, "Dashboard: http://{dashboard}/")?;
    }
    if ingress.is_empty() {
        writeln!(
            out,
            "Ingress: not listening (no Gateway selects istio=ingressgateway)"
        )?;
    }
    for addr in ingress {
        writeln!(out, "Ingress: http://{addr}/")?;
    }
    writeln!(
        out,
        "Apply a rule: mizzen apply -f FILE (Istio's samples/bookinfo/networking/virtual-service-all-v1.yaml, say)"
    )?;
    writeln!(
        out,
        "Watch proxies: mizzen proxy-status --pilot {}",
        mesh.debug
    )?;
    writeln!(out, "Ctrl-C stops the mesh.")
}
