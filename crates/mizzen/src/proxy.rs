//! `mizzen proxy`: the data plane, started from an Envoy bootstrap file (`-c`, as
//! `envoy -c`) or from flags naming a pilot and the node to be. With a CA address and
//! root (Istio's agent's `CA_ADDR` and `CA_ROOT_CA`) it gets its workload's certificate.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context;
use mizzen_proxy::admin::LogLevels;
use mizzen_proxy::identity::IdentityOptions;
use mizzen_proxy::{Bootstrap, Proxy, ProxyOptions};
use mizzen_xds::pb::envoy::config::core::v3::Node;
use mizzen_xds::pb::google::protobuf::{Struct, Value, value::Kind};
use mizzen_xds::tls::ClientTls;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::{EnvFilter, reload};

/// The proxy's command line, shaped after Envoy's where they overlap.
#[derive(clap::Args)]
pub struct Args {
    /// An Envoy bootstrap file (YAML or JSON), as `envoy -c` reads.
    #[arg(short = 'c', long = "config-path", conflicts_with = "pilot")]
    config: Option<PathBuf>,
    /// Take config over ADS from this pilot (`host:port`) instead of a bootstrap file.
    #[arg(long, requires = "node_id")]
    pilot: Option<String>,
    /// The node id to present, in Istio's format
    /// (`sidecar~10.0.0.1~productpage-v1.default~default.svc.cluster.local`).
    #[arg(long)]
    node_id: Option<String>,
    /// Node metadata (`NAMESPACE=default`, `LABELS={"app":"productpage"}`); values
    /// that parse as JSON objects are sent as structs. Repeatable.
    #[arg(long = "meta", value_name = "KEY=VALUE")]
    metadata: Vec<String>,
    /// Take config from `--pilot` over TLS, verified against this root certificate
    /// (Istio's `XDS_ROOT_CA`), as from Istio's 15012.
    #[arg(long, env = "XDS_ROOT_CA", value_name = "FILE", requires = "pilot")]
    xds_root_cert: Option<PathBuf>,
    /// The CA that signs the workload's certificate (Istio's `CA_ADDR`; by default
    /// `--pilot` when config comes over TLS).
    #[arg(long, env = "CA_ADDR", value_name = "HOST:PORT")]
    ca_addr: Option<String>,
    /// The root the CA's own certificate is verified against (Istio's `CA_ROOT_CA`; by
    /// default `--xds-root-cert`).
    #[arg(long, env = "CA_ROOT_CA", value_name = "FILE")]
    ca_root_cert: Option<PathBuf>,
    /// The name pilot's (and the CA's) certificate must carry (Istio's `ISTIOD_SAN`).
    #[arg(long, env = "ISTIOD_SAN", default_value = mizzen_pilot::ca::ISTIOD_SAN)]
    istiod_san: String,
    /// A file holding the token the proxy authenticates to the CA with.
    #[arg(long, value_name = "FILE")]
    token_file: Option<PathBuf>,
    /// The SPIFFE trust domain of the workload's identity (Istio's `TRUST_DOMAIN`).
    #[arg(long, env = "TRUST_DOMAIN", default_value = "cluster.local")]
    trust_domain: String,
    /// The certificate lifetime to ask for (Istio's `SECRET_TTL`: `24h`, `10s`).
    #[arg(long, env = "SECRET_TTL", default_value = "24h")]
    secret_ttl: mizzen_api::types::Duration,
    /// The share of a certificate's life left when it is renewed (Istio's
    /// `SECRET_GRACE_PERIOD_RATIO`).
    #[arg(long, env = "SECRET_GRACE_PERIOD_RATIO", default_value_t = mizzen_proxy::identity::DEFAULT_GRACE_RATIO)]
    secret_grace_period_ratio: f64,
    /// Where to serve the admin API (Envoy's 15000), with `--pilot`.
    #[arg(long, default_value = "127.0.0.1:15000")]
    admin_addr: SocketAddr,
    /// Where to answer `/healthz/ready` (Istio's 15021), if anywhere.
    #[arg(long)]
    health_addr: Option<SocketAddr>,
    /// Worker threads (Envoy's `--concurrency`); 0 means one per core.
    #[arg(long, default_value_t = 0)]
    pub concurrency: usize,
    /// How long a removed listener's connections may finish (Envoy's `--drain-time-s`).
    #[arg(long = "drain-time-s", default_value_t = 600)]
    drain_time_s: u64,
    /// The log level (`trace`, `debug`, `info`, `warn`, `error`, `off`), as Envoy's `-l`.
    #[arg(short = 'l', long = "log-level", default_value = "info")]
    pub log_level: String,
}

/// Runs the proxy until `/quitquitquit` or Ctrl-C.
pub async fn run(args: Args, levels: LogControl) -> anyhow::Result<()> {
    let xds_tls = args
        .xds_root_cert
        .as_deref()
        .map(|path| client_tls(path, &args.istiod_san))
        .transpose()?;
    let bootstrap = match (&args.config, &args.pilot) {
        (Some(path), _) => Bootstrap::from_file(path)?,
        (None, Some(pilot)) => {
            let node = node(args.node_id.as_deref().unwrap_or_default(), &args.metadata)?;
            let admin = Some(args.admin_addr);
            match &xds_tls {
                Some(tls) => Bootstrap::for_pilot_tls(pilot, tls.clone(), node, admin),
                None => Bootstrap::for_pilot(pilot, node, admin),
            }
        }
        (None, None) => {
            anyhow::bail!("give a bootstrap file (-c FILE) or a pilot (--pilot ADDR --node-id ID)")
        }
    };
    let identity = identity(&args, &bootstrap, xds_tls)?;
    let mut options = ProxyOptions::new(bootstrap);
    options.identity = identity;
    options.drain_time = Duration::from_secs(args.drain_time_s);
    options.health_addr = args.health_addr;
    options.logging = Some(Arc::new(levels));
    let proxy = Proxy::start(options).await?;
    if let Some(admin) = proxy.admin_addr() {
        eprintln!("mizzen proxy: admin on http://{admin}");
    }
    tokio::select! {
        () = proxy.stopped() => eprintln!("mizzen proxy: stopping (quitquitquit)"),
        r = tokio::signal::ctrl_c() => { r.context("waiting for Ctrl-C")?; }
    }
    proxy.shutdown();
    Ok(())
}

/// TLS verified against the roots in `path`, for `name`.
fn client_tls(path: &std::path::Path, name: &str) -> anyhow::Result<ClientTls> {
    let roots = std::fs::read(path)
        .with_context(|| format!("reading root certificate {}", path.display()))?;
    ClientTls::new(&roots, name).with_context(|| format!("{}", path.display()))
}

/// Where the workload's certificate comes from, as Istio's agent decides it: the CA at
/// `CA_ADDR` (else the pilot config comes from over TLS), verified against `CA_ROOT_CA`
/// (else the xDS root). No CA, no identity.
fn identity(
    args: &Args,
    bootstrap: &Bootstrap,
    xds_tls: Option<ClientTls>,
) -> anyhow::Result<Option<IdentityOptions>> {
    let addr = match (&args.ca_addr, &xds_tls) {
        (Some(addr), _) => addr.clone(),
        (None, Some(_)) => args.pilot.clone().unwrap_or_default(),
        (None, None) => return Ok(None),
    };
    let tls = match &args.ca_root_cert {
        Some(path) => client_tls(path, &args.istiod_san)?,
        None => xds_tls.context(
            "the CA needs a root certificate to verify it: --ca-root-cert (CA_ROOT_CA) or --xds-root-cert",
        )?,
    };
    let uri = match addr.contains("://") {
        true => addr,
        false => format!("https://{addr}"),
    };
    let mut options = IdentityOptions::for_node(&bootstrap.node, &args.trust_domain, uri, tls)?;
    if let Some(path) = &args.token_file {
        let token = std::fs::read_to_string(path)
            .with_context(|| format!("reading token file {}", path.display()))?;
        options.token = Some(token.trim().to_owned());
    }
    options.ttl = args.secret_ttl.get();
    options.grace_ratio = args.secret_grace_period_ratio;
    Ok(Some(options))
}

/// A node from an id and `KEY=VALUE` metadata.
fn node(id: &str, metadata: &[String]) -> anyhow::Result<Node> {
    let mut fields = std::collections::BTreeMap::new();
    for entry in metadata {
        let (key, value) = entry
            .split_once('=')
            .with_context(|| format!("--meta {entry:?}: expected KEY=VALUE"))?;
        let kind = match serde_json::from_str::<serde_json::Value>(value) {
            Ok(serde_json::Value::Object(map)) => Kind::StructValue(Struct {
                fields: map
                    .into_iter()
                    .map(|(k, v)| {
                        let text = match v {
                            serde_json::Value::String(s) => s,
                            other => other.to_string(),
                        };
                        (
                            k,
                            Value {
                                kind: Some(Kind::StringValue(text)),
                            },
                        )
                    })
                    .collect(),
            }),
            _ => Kind::StringValue(value.to_owned()),
        };
        fields.insert(key.to_owned(), Value { kind: Some(kind) });
    }
    Ok(Node {
        id: id.to_owned(),
        metadata: Some(Struct {
            fields: fields.into_iter().collect(),
        }),
        ..Node::default()
    })
}

/// The proxy's components, as `/logging` names them, and the modules they cover.
const COMPONENTS: [(&str, &str); 8] = [
    ("admin", "mizzen_proxy::admin"),
    ("config", "mizzen_proxy::config"),
    ("connection", "mizzen_proxy::conn"),
    ("http", "mizzen_proxy::http"),
    ("listener", "mizzen_proxy::listeners"),
    ("tcp", "mizzen_proxy::tcp"),
    ("upstream", "mizzen_proxy::upstream"),
    ("xds", "mizzen_xds"),
];

/// The process's log filter, changeable at run time (the admin `/logging` endpoint).
pub struct LogControl {
    handle: reload::Handle<EnvFilter, tracing_subscriber::Registry>,
    /// `RUST_LOG`, when set: it stays in force under the levels set at run time.
    base: String,
    levels: Mutex<BTreeMap<&'static str, String>>,
}

impl LogControl {
    /// Installs the global logger on stderr at `default` (or `RUST_LOG`), reloadable.
    pub fn install(default: &str) -> LogControl {
        let base = std::env::var("RUST_LOG").unwrap_or_else(|_| default.to_owned());
        let filter = EnvFilter::try_new(&base).unwrap_or_else(|_| EnvFilter::new(default));
        let (layer, handle) = reload::Layer::new(filter);
        tracing_subscriber::registry()
            .with(layer)
            .with(tracing_subscriber::fmt::layer().with_writer(std::io::stderr))
            .init();
        let level = tracing::level_filters::LevelFilter::current()
            .to_string()
            .to_lowercase();
        let levels = COMPONENTS
            .iter()
            .map(|(name, _)| (*name, level.clone()))
            .collect();
        LogControl {
            handle,
            base,
            levels: Mutex::new(levels),
        }
    }
}

impl LogLevels for LogControl {
    fn levels(&self) -> Vec<(String, String)> {
        let levels = self.levels.lock().unwrap_or_else(|e| e.into_inner());
        levels
            .iter()
            .map(|(c, l)| (c.to_string(), l.clone()))
            .collect()
    }

    fn set(&self, component: Option<&str>, level: &str) -> Result<(), String> {
        let level = level.to_ascii_lowercase();
        if ![
            "trace", "debug", "info", "warn", "warning", "error", "critical", "off",
        ]
        .contains(&level.as_str())
        {
            return Err(format!(
                "unknown log level {level:?} (trace, debug, info, warn, error, critical, off)"
            ));
        }
        // Envoy's names for what tracing calls warn and error.
        let level = match level.as_str() {
            "warning" => "warn".to_owned(),
            "critical" => "error".to_owned(),
            _ => level,
        };
        let mut levels = self.levels.lock().unwrap_or_else(|e| e.into_inner());
        match component {
            None => levels.values_mut().for_each(|l| l.clone_from(&level)),
            Some(name) => match levels.get_mut(name) {
                Some(l) => *l = level,
                None => {
                    let known: Vec<&str> = COMPONENTS.iter().map(|(n, _)| *n).collect();
                    return Err(format!(
                        "unknown component {name:?} (one of {})",
                        known.join(", ")
                    ));
                }
            },
        }
        let directives: Vec<String> = std::iter::once(self.base.clone())
            .chain(
                COMPONENTS
                    .iter()
                    .map(|(name, target)| format!("{target}={}", levels[name])),
            )
            .collect();
        let filter = EnvFilter::try_new(directives.join(",")).map_err(|e| e.to_string())?;
        self.handle.reload(filter).map_err(|e| e.to_string())
    }
}
