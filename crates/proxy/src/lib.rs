//! The data plane: listeners, HTTP, TCP, routing, load balancing, admin.
//!
//! It reads standard Envoy xDS v3 (from an ADS server or a static bootstrap) and moves
//! bytes. Config is compiled when it arrives — matchers, regexes, route tables,
//! load-balancer state — so that the request path only looks things up. One request's
//! path: [`listeners`] accepts → [`conn`] picks the filter chain → [`http`] serves it
//! through the router (or [`tcp`] relays it) → [`balance`] picks an endpoint →
//! [`upstream`] sends it on a pooled connection.

pub mod access_log;
mod activity;
pub mod admin;
pub mod authz;
pub mod balance;
pub mod bootstrap;
pub mod config;
mod conn;
pub mod drain;
pub mod endpoint;
pub mod flags;
pub mod http;
pub mod identity;
pub mod inspect;
pub mod listeners;
pub mod metrics;
mod original_dst;
pub mod route;
pub mod stats;
pub mod tcp;
pub mod tls;
pub mod trace;
pub mod upstream;
mod xds;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use mizzen_xds::{AdsClient, ClientState};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use bootstrap::Bootstrap;
use config::{ConfigError, ConfigStore};
use drain::{DrainTrigger, DrainWatch};

/// Frees what rare work (JSON conversion of Envoy types) took, and gives the freed heap
/// back to the system: a sidecar's memory is what it holds while serving.
pub fn release_memory() {
    mizzen_xds::json::release_descriptors();
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns free heap pages to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// What every connection of the proxy shares.
pub struct Shared {
    /// The current config.
    pub store: Arc<ConfigStore>,
    /// Upstream connection pools.
    pub upstreams: upstream::Upstreams,
    /// Where listeners are bound.
    pub bound: listeners::Bound,
    /// The listeners' sockets.
    pub listeners: listeners::Listeners,
}

/// Drops the connection pools of endpoints that left every cluster, or whose transport
/// changed, after each config change (pools of original-destination endpoints go too;
/// the next request makes a new one).
async fn prune_pools(shared: Arc<Shared>) {
    let mut changes = shared.store.changes();
    while changes.changed().await.is_ok() {
        let snapshot = shared.store.snapshot();
        let endpoints: std::collections::HashSet<(SocketAddr, &tls::Transport)> = snapshot
            .clusters
            .values()
            .filter_map(|c| Some((c, c.balancer.as_ref()?)))
            .flat_map(|(c, b)| {
                b.endpoints()
                    .iter()
                    .map(|e| (e.address, c.transport(e.address)))
            })
            .collect();
        shared
            .upstreams
            .retain(|key| endpoints.contains(&(key.endpoint, &key.transport)));
    }
}

/// How to run a proxy.
#[derive(Clone)]
pub struct ProxyOptions {
    /// Node, static resources, ADS server, admin address.
    pub bootstrap: Bootstrap,
    /// How long a removed listener's connections may finish (Envoy's `--drain-time-s`).
    pub drain_time: Duration,
    /// Where to answer `/healthz/ready` (Istio's agent port 15021), if anywhere.
    pub health_addr: Option<SocketAddr>,
    /// Run-time log levels for the admin `/logging` endpoint, when the process has them.
    pub logging: Option<Arc<dyn admin::LogLevels>>,
    /// Resolves the host names of DNS clusters (the system's resolver by default).
    pub resolver: Arc<dyn config::Resolve>,
    /// Where the workload's certificate comes from, if it has one.
    pub identity: Option<identity::IdentityOptions>,
    /// Where to serve `/stats/prometheus` for Prometheus (Istio's 15020 and 15090), if
    /// anywhere.
    pub prometheus_addrs: Vec<SocketAddr>,
}

impl ProxyOptions {
    /// Runs `bootstrap` with Envoy's default drain time (600 s).
    pub fn new(bootstrap: Bootstrap) -> Self {
        Self {
            bootstrap,
            drain_time: Duration::from_secs(600),
            health_addr: None,
            logging: None,
            resolver: Arc::new(config::SystemResolver),
            identity: None,
            prometheus_addrs: Vec::new(),
        }
    }
}

/// Why a proxy could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A static resource is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A static listener cannot be bound.
    #[error(transparent)]
    Listener(#[from] listeners::BindError),
    /// The workload identity is misconfigured.
    #[error(transparent)]
    Identity(#[from] identity::IdentityError),
    /// The admin or health address cannot be bound.
    #[error("cannot bind {address}")]
    Admin {
        /// The address.
        address: SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// A running proxy; dropping it stops it.
pub struct Proxy {
    shared: Arc<Shared>,
    client: Option<Arc<AdsClient>>,
    identity: Option<identity::IdentityManager>,
    admin: Option<SocketAddr>,
    prometheus: Vec<SocketAddr>,
    shutdown: Arc<DrainTrigger>,
    stopped: DrainWatch,
    tasks: Vec<JoinHandle<()>>,
}

impl Proxy {
    /// Starts serving: static listeners at once, dynamic ones as they arrive.
    pub async fn start(options: ProxyOptions) -> Result<Proxy, StartError> {
        let bootstrap = options.bootstrap;
        let store = Arc::new(ConfigStore::with_stats(
            bootstrap.secrets.clone(),
            bootstrap.listeners.clone(),
            bootstrap.clusters.clone(),
            bootstrap.ads.is_some(),
            stats::Stats::for_node(&bootstrap.node),
        )?);
        let shared = Arc::new(Shared {
            store: store.clone(),
            upstreams: upstream::Upstreams::default(),
            bound: listeners::Bound::default(),
            listeners: listeners::Listeners::new(options.drain_time),
        });
        listeners::start(&shared)?;
        let identity = options
            .identity
            .map(|options| {
                let store = store.clone();
                identity::IdentityManager::start(options, move |secret| {
                    let name = secret.name.clone();
                    // Served to the TLS contexts that name `sds-grpc`, as istio-agent does.
                    match store.provide_secret(secret) {
                        Ok(()) => tracing::debug!(%name, "workload secret ready"),
                        Err(e) => tracing::error!(%name, error = %e, "workload secret refused"),
                    }
                })
            })
            .transpose()?;
        let (shutdown, stopped) = drain::channel();
        let shutdown = Arc::new(shutdown);
        let client = bootstrap
            .ads
            .as_ref()
            .map(|ads| xds::start(ads, bootstrap.node.clone(), shared.clone()));
        let mut tasks = vec![
            tokio::spawn(listeners::run(shared.clone(), stopped.clone())),
            tokio::spawn(prune_pools(shared.clone())),
            tokio::spawn(config::dns::run(store.clone(), options.resolver.clone())),
            tokio::spawn(metrics::follow_endpoints(shared.clone())),
        ];
        if identity.is_none() {
            tasks.push(tokio::spawn(identity::report_missing(store.clone())));
        }
        let admin = match bootstrap.admin {
            Some(address) => {
                let socket = TcpListener::bind(address)
                    .await
                    .map_err(|source| StartError::Admin { address, source })?;
                let local = socket
                    .local_addr()
                    .map_err(|source| StartError::Admin { address, source })?;
                let state = admin::Admin {
                    shared: shared.clone(),
                    client: client.clone(),
                    bootstrap: Arc::new(bootstrap.clone()),
                    shutdown: shutdown.clone(),
                    logging: options.logging.clone(),
                };
                tasks.push(tokio::spawn(admin::serve(socket, state, stopped.clone())));
                Some(local)
            }
            None => None,
        };
        let mut prometheus = Vec::new();
        for &address in &options.prometheus_addrs {
            let socket = TcpListener::bind(address)
                .await
                .map_err(|source| StartError::Admin { address, source })?;
            prometheus.push(
                socket
                    .local_addr()
                    .map_err(|source| StartError::Admin { address, source })?,
            );
            tasks.push(tokio::spawn(admin::serve_prometheus(
                socket,
                shared.clone(),
                stopped.clone(),
            )));
        }
        if let Some(address) = options.health_addr {
            let socket = TcpListener::bind(address)
                .await
                .map_err(|source| StartError::Admin { address, source })?;
            tasks.push(tokio::spawn(admin::serve_health(
                socket,
                shared.clone(),
                stopped.clone(),
            )));
        }
        Ok(Proxy {
            shared,
            client,
            identity,
            admin,
            prometheus,
            shutdown,
            stopped,
            tasks,
        })
    }

    /// The config store.
    pub fn store(&self) -> &ConfigStore {
        &self.shared.store
    }

    /// Where the admin server listens.
    pub fn admin_addr(&self) -> Option<SocketAddr> {
        self.admin
    }

    /// Where the listener `name` is bound, once it is.
    pub async fn listener_addr(&self, name: &str) -> SocketAddr {
        self.shared.bound.wait(name).await
    }

    /// Where it serves `/stats/prometheus` for Prometheus, in [`ProxyOptions`] order.
    pub fn prometheus_addrs(&self) -> &[SocketAddr] {
        &self.prometheus
    }

    /// Where its listeners are bound now, in address order.
    pub fn listener_addrs(&self) -> Vec<SocketAddr> {
        let mut addrs: Vec<SocketAddr> = self.shared.bound.all().into_values().collect();
        addrs.sort();
        addrs
    }

    /// What the ADS client holds, when config comes over ADS.
    pub fn xds_state(&self) -> Option<Arc<ClientState>> {
        self.client.as_ref().map(|c| c.state())
    }

    /// The workload's certificate manager, when the proxy has an identity.
    pub fn identity(&self) -> Option<&identity::IdentityManager> {
        self.identity.as_ref()
    }

    /// Waits until the initial config is complete (Envoy's `LIVE`).
    pub async fn ready(&self) {
        let mut changes = self.shared.store.changes();
        while !self.shared.store.is_ready() {
            if changes.changed().await.is_err() {
                return;
            }
        }
    }

    /// Waits until the ADS client holds `done`.
    pub async fn wait_xds(&self, done: impl FnMut(&ClientState) -> bool) {
        if let Some(client) = &self.client {
            client.wait_until(done).await;
        }
    }

    /// Resolves when the proxy was told to stop (`/quitquitquit`).
    pub async fn stopped(&self) {
        self.stopped.clone().signaled().await;
    }

    /// Stops accepting and drains every listener.
    pub fn shutdown(&self) {
        self.shutdown.drain();
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.shutdown.drain();
        for task in &self.tasks {
            task.abort();
        }
    }
}
