//! `mizzen proxy`: the data plane, started from an Envoy bootstrap file (`-c`, as
//! `envoy -c`) or from flags naming a pilot and the node to be.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use mizzen_proxy::{Bootstrap, Proxy, ProxyOptions};
use mizzen_xds::pb::envoy::config::core::v3::Node;
use mizzen_xds::pb::google::protobuf::{Struct, Value, value::Kind};

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
    /// Where to serve the admin API (Envoy's 15000), with `--pilot`.
    #[arg(long, default_value = "127.0.0.1:15000")]
    admin_addr: SocketAddr,
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
pub async fn run(args: Args) -> anyhow::Result<()> {
    let bootstrap = match (&args.config, &args.pilot) {
        (Some(path), _) => Bootstrap::from_file(path)?,
        (None, Some(pilot)) => {
            let node = node(args.node_id.as_deref().unwrap_or_default(), &args.metadata)?;
            Bootstrap::for_pilot(pilot, node, Some(args.admin_addr))
        }
        (None, None) => {
            anyhow::bail!("give a bootstrap file (-c FILE) or a pilot (--pilot ADDR --node-id ID)")
        }
    };
    let mut options = ProxyOptions::new(bootstrap);
    options.drain_time = Duration::from_secs(args.drain_time_s);
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
