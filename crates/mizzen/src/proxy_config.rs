//! `mizzen proxy-config KIND`'s arguments, istioctl's flags for each kind.

use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;

use clap::{ArgAction, Subcommand, ValueEnum};
use mizzen_ctl::proxy_config::log::{self, LogChange};
use mizzen_ctl::proxy_config::{Encoding, Filters, Format, Kind, Request, Source};

use crate::up::ADMIN_PORT;
use crate::up::state::StateDir;

/// Envoy's (and so Istio's) admin port on the local host.
const DEFAULT_ADMIN: &str = "127.0.0.1:15000";

/// What to show and from where.
#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    kind: KindArgs,
}

#[derive(Subcommand)]
enum KindArgs {
    /// Clusters: SERVICE FQDN, PORT, SUBSET, DIRECTION, TYPE, DESTINATION RULE.
    #[command(visible_aliases = ["clusters", "c"])]
    Cluster {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        clusters: ClusterFlags,
        #[command(flatten)]
        port: Port,
    },
    /// Listeners: ADDRESSES, PORT, MATCH, DESTINATION per filter chain.
    #[command(visible_aliases = ["listeners", "l"])]
    Listener {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        listeners: ListenerFlags,
        #[command(flatten)]
        port: Port,
        #[command(flatten)]
        verbose: Verbose,
    },
    /// Routes: NAME, VHOST NAME, DOMAINS, MATCH, VIRTUAL SERVICE.
    #[command(visible_aliases = ["routes", "r"])]
    Route {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        routes: RouteFlags,
        #[command(flatten)]
        verbose: Verbose,
    },
    /// Endpoints: from a proxy's `/clusters` (ENDPOINT, STATUS, OUTLIER CHECK, CLUSTER),
    /// or from a file: a dump's EDS section (NAME, STATUS, LOCALITY, CLUSTER) or a saved
    /// `/clusters?format=json`.
    #[command(visible_aliases = ["endpoints", "ep"])]
    Endpoint {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        endpoints: EndpointFlags,
    },
    /// SDS secrets: RESOURCE NAME, TYPE, STATUS, VALID CERT, SERIAL NUMBER, NOT AFTER,
    /// NOT BEFORE.
    #[command(visible_aliases = ["secrets", "s"])]
    Secret {
        #[command(flatten)]
        common: Common,
    },
    /// The bootstrap, as JSON by default; `-o short` prints the Istio and Envoy versions.
    #[command(visible_alias = "b")]
    Bootstrap {
        #[command(flatten)]
        common: Common,
    },
    /// Filter configurations the proxy took from ECDS: ECDS NAME, TYPE.
    Ecds {
        #[command(flatten)]
        common: Common,
    },
    /// Every section: bootstrap, clusters, listeners, routes, secrets, endpoints.
    #[command(visible_alias = "a")]
    All {
        #[command(flatten)]
        common: Common,
        #[command(flatten)]
        clusters: ClusterFlags,
        #[command(flatten)]
        listeners: ListenerFlags,
        #[command(flatten)]
        port: Port,
        #[command(flatten)]
        routes: RouteFlags,
        #[command(flatten)]
        verbose: Verbose,
        /// Title each section (`------ CLUSTER INFO ------`).
        #[arg(long)]
        with_headers: bool,
    },
    /// Show, or change, a proxy's logger levels.
    Log {
        #[command(flatten)]
        proxy: Proxy,
        /// `LEVEL` for every logger, or `LOGGER:LEVEL,…`; levels are trace, debug,
        /// info, warning, error, critical, off.
        #[arg(long)]
        level: Option<String>,
        /// Set every logger back to `warning`.
        #[arg(short, long, conflicts_with = "level")]
        reset: bool,
    },
}

/// Which proxy: its admin address, or in the local mesh its pod's name.
#[derive(clap::Args)]
struct Proxy {
    /// The proxy: its admin address (`127.0.1.2:15000`; an IP alone means port 15000),
    /// or a pod of the running local mesh as istioctl names it (`productpage-v1-1`,
    /// `istio-ingressgateway-1.istio-system`).
    #[arg(value_name = "PROXY")]
    proxy: Option<String>,
    /// The proxy's admin address [default: 127.0.0.1:15000].
    #[arg(long, conflicts_with = "proxy")]
    admin: Option<SocketAddr>,
    /// The local mesh's state directory, where pod names are looked up; default
    /// $MIZZEN_HOME or ~/.mizzen.
    #[arg(long)]
    state_dir: Option<PathBuf>,
}

impl Proxy {
    fn admin(&self) -> anyhow::Result<SocketAddr> {
        let Some(proxy) = &self.proxy else {
            return Ok(self
                .admin
                .unwrap_or_else(|| DEFAULT_ADMIN.parse().expect("a valid address")));
        };
        if let Ok(admin) = proxy.parse() {
            return Ok(admin);
        }
        if let Ok(ip) = proxy.parse::<IpAddr>() {
            return Ok(SocketAddr::new(ip, ADMIN_PORT));
        }
        StateDir::resolve(self.state_dir.clone())?.proxy_admin(proxy)
    }
}

/// Where the config comes from and how to print it.
#[derive(clap::Args)]
struct Common {
    #[command(flatten)]
    proxy: Proxy,
    /// A saved config dump (`curl localhost:15000/config_dump > dump.json`) instead of
    /// a live proxy; `-` reads stdin.
    #[arg(short = 'f', long, conflicts_with_all = ["proxy", "admin"])]
    file: Option<PathBuf>,
    /// Output format [default: short; json for bootstrap].
    #[arg(short, long, value_enum)]
    output: Option<Output>,
}

impl Common {
    fn source(&self) -> anyhow::Result<Source> {
        Ok(match &self.file {
            Some(file) => Source::File(file.clone()),
            None => Source::Admin(self.proxy.admin()?),
        })
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum Output {
    /// istioctl's tables.
    Short,
    /// The selected resources as JSON.
    Json,
    /// The selected resources as YAML.
    Yaml,
}

#[derive(clap::Args)]
struct ClusterFlags {
    /// Only clusters whose name contains this FQDN.
    #[arg(long)]
    fqdn: Option<String>,
    /// Only clusters whose name contains this subset.
    #[arg(long)]
    subset: Option<String>,
    /// Only clusters whose name contains this direction (inbound, outbound).
    #[arg(long)]
    direction: Option<String>,
}

#[derive(clap::Args)]
struct ListenerFlags {
    /// Only listeners (and, with `all`, endpoints) with this address.
    #[arg(long)]
    address: Option<String>,
    /// Only listeners of this type (HTTP, TCP, HTTP+TCP).
    #[arg(long = "type")]
    listener_type: Option<String>,
}

#[derive(clap::Args)]
struct Port {
    /// Only clusters (`|PORT|` in the name), listeners or endpoints on this port.
    #[arg(long)]
    port: Option<u32>,
}

#[derive(clap::Args)]
struct RouteFlags {
    /// Only the route configuration with this name.
    #[arg(long)]
    name: Option<String>,
}

#[derive(clap::Args)]
struct EndpointFlags {
    /// Only endpoints with this address.
    #[arg(long)]
    address: Option<String>,
    /// Only endpoints on this port.
    #[arg(long)]
    port: Option<u32>,
    /// Only endpoints of this cluster.
    #[arg(long)]
    cluster: Option<String>,
    /// Only endpoints with this health status (healthy, unhealthy, draining…).
    #[arg(long)]
    status: Option<String>,
}

#[derive(clap::Args)]
struct Verbose {
    /// One line per filter chain or route (`--verbose=false`: one per listener or
    /// route configuration).
    #[arg(long, action = ArgAction::Set, num_args = 0..=1, default_value_t = true,
          default_missing_value = "true")]
    verbose: bool,
}

/// Runs the command and returns what to print.
pub fn run(args: Args) -> anyhow::Result<String> {
    let (kind, common, filters, verbose, with_headers) = match args.kind {
        KindArgs::Log {
            proxy,
            level,
            reset,
        } => {
            let change = match (level, reset) {
                (Some(level), _) => LogChange::Levels(level),
                (None, true) => LogChange::Reset,
                (None, false) => LogChange::Show,
            };
            return log::run(proxy.admin()?, &change);
        }
        KindArgs::Cluster {
            common,
            clusters,
            port,
        } => (
            Kind::Cluster,
            common,
            Filters {
                port: port.port,
                ..cluster_filters(clusters)
            },
            true,
            false,
        ),
        KindArgs::Listener {
            common,
            listeners,
            port,
            verbose,
        } => (
            Kind::Listener,
            common,
            Filters {
                port: port.port,
                ..listener_filters(listeners)
            },
            verbose.verbose,
            false,
        ),
        KindArgs::Route {
            common,
            routes,
            verbose,
        } => (
            Kind::Route,
            common,
            Filters {
                name: routes.name,
                ..Filters::default()
            },
            verbose.verbose,
            false,
        ),
        KindArgs::Endpoint { common, endpoints } => (
            Kind::Endpoint,
            common,
            Filters {
                address: endpoints.address,
                port: endpoints.port,
                cluster: endpoints.cluster,
                status: endpoints.status,
                ..Filters::default()
            },
            true,
            false,
        ),
        KindArgs::Secret { common } => (Kind::Secret, common, Filters::default(), true, false),
        KindArgs::Bootstrap { common } => {
            (Kind::Bootstrap, common, Filters::default(), true, false)
        }
        KindArgs::Ecds { common } => (Kind::Ecds, common, Filters::default(), true, false),
        KindArgs::All {
            common,
            clusters,
            listeners,
            port,
            routes,
            verbose,
            with_headers,
        } => {
            let listeners = listener_filters(listeners);
            let filters = Filters {
                port: port.port,
                address: listeners.address,
                listener_type: listeners.listener_type,
                name: routes.name,
                ..cluster_filters(clusters)
            };
            (Kind::All, common, filters, verbose.verbose, with_headers)
        }
    };
    let default_output = if kind == Kind::Bootstrap {
        Output::Json
    } else {
        Output::Short
    };
    let format = match common.output.unwrap_or(default_output) {
        Output::Short => Format::Short,
        Output::Json => Format::Raw(Encoding::Json),
        Output::Yaml => Format::Raw(Encoding::Yaml),
    };
    mizzen_ctl::proxy_config::run(&Request {
        kind,
        source: common.source()?,
        format,
        filters,
        verbose,
        with_headers,
    })
}

fn cluster_filters(flags: ClusterFlags) -> Filters {
    Filters {
        fqdn: flags.fqdn,
        subset: flags.subset,
        direction: flags.direction,
        ..Filters::default()
    }
}

fn listener_filters(flags: ListenerFlags) -> Filters {
    Filters {
        address: flags.address,
        listener_type: flags.listener_type,
        ..Filters::default()
    }
}
