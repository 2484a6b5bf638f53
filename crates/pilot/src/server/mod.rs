//! The running control plane: watches a config store, rebuilds the push context on
//! each (debounced) change, pushes to the proxies it affects over ADS, and serves the
//! debug endpoints.

mod affected;
pub mod analysis;
mod debug;
pub mod jwks;
mod metrics;
mod secure;
pub mod source;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use mizzen_xds::{AdsServer, Affected, Debounce, Debouncer, PushRequest, StatusRegistry};
use tokio::net::TcpListener;
use tokio::sync::watch;

pub use affected::types_for;
pub use analysis::Findings;
pub use jwks::{IssuerTrust, JwksOptions, JwksResolver};
pub use secure::SecureOptions;
pub use source::{Current, Source};

use crate::dashboard::{Dashboard, DashboardOptions};
use crate::model::{MeshConfig, PushContext};
use crate::store::ConfigStore;
use metrics::Metrics;

/// Where and how pilot serves.
#[derive(Debug, Clone)]
pub struct PilotOptions {
    /// ADS (xDS over gRPC), plaintext: Istio's 15010.
    pub xds_addr: SocketAddr,
    /// Debug endpoints and metrics: Istio's 15014.
    pub http_addr: SocketAddr,
    /// How long config must be quiet before a push (Istio's `PILOT_DEBOUNCE_AFTER`).
    pub debounce: Duration,
    /// Mesh-wide settings.
    pub mesh: MeshConfig,
    /// Where the dashboard is served (`127.0.0.1:20001` in local mode); none if `None`.
    pub dashboard_addr: Option<SocketAddr>,
    /// What the dashboard reads, and how often.
    pub dashboard: DashboardOptions,
    /// xDS and the CA over TLS (Istio's 15012); none when `None`.
    pub secure: Option<SecureOptions>,
    /// How RequestAuthentication `jwksUri`s are fetched.
    pub jwks: JwksOptions,
}

impl PilotOptions {
    /// Every port free on 127.0.0.1, no TLS port, no dashboard, a short debounce: pilot
    /// embedded in tests and tools. Set the fields that matter with `..ephemeral()`.
    pub fn ephemeral() -> Self {
        let free: SocketAddr = (std::net::Ipv4Addr::LOCALHOST, 0).into();
        Self {
            xds_addr: free,
            http_addr: free,
            debounce: Duration::from_millis(10),
            mesh: MeshConfig::default(),
            dashboard_addr: None,
            dashboard: DashboardOptions::default(),
            secure: None,
            jwks: JwksOptions::from_env(),
        }
    }
}

/// Why pilot stopped or could not start.
#[derive(Debug, thiserror::Error)]
pub enum PilotError {
    /// A listening address could not be bound.
    #[error("cannot listen on {addr} for {what}: {source}")]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// `xDS`, `debug HTTP` or `dashboard`.
        what: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// The gRPC server failed.
    #[error("xDS server: {0}")]
    Xds(#[from] tonic::transport::Error),
    /// The debug HTTP server failed.
    #[error("debug HTTP server: {0}")]
    Http(std::io::Error),
    /// The dashboard's HTTP server failed.
    #[error("dashboard HTTP server: {0}")]
    Dashboard(std::io::Error),
    /// Pilot's serving certificate could not be signed.
    #[error("signing pilot's TLS certificate: {0}")]
    ServingCert(#[from] crate::ca::SignError),
}

/// A bound, not yet running, control plane; its addresses are known (port 0 resolved).
pub struct Pilot {
    xds: TcpListener,
    http: TcpListener,
    secure: Option<secure::Secure>,
    ads: AdsServer<Source>,
    dashboard: Option<(TcpListener, Dashboard)>,
    state: Arc<State>,
    store: Arc<dyn ConfigStore>,
    debounce: Duration,
    jwks: JwksResolver,
    analyst: analysis::Analyst,
    /// The options' mesh settings, which the `istio` ConfigMap may override per push.
    mesh: Arc<MeshConfig>,
}

/// What the debug endpoints read.
pub(crate) struct State {
    pub current: Arc<ArcSwap<Current>>,
    pub status: StatusRegistry,
    pub metrics: Metrics,
    /// This instance's name, shown by `proxy-status` in the ISTIOD column.
    pub name: String,
    /// Where the dashboard is served, if it is.
    pub dashboard: Option<SocketAddr>,
    /// What the analyzers last found in the config.
    pub findings: watch::Receiver<Arc<Findings>>,
}

impl Pilot {
    /// Binds the listeners and builds the first push context from `store`.
    pub async fn bind(
        store: Arc<dyn ConfigStore>,
        options: PilotOptions,
    ) -> Result<Pilot, PilotError> {
        let bind = |addr: SocketAddr, what: &'static str| async move {
            TcpListener::bind(addr)
                .await
                .map_err(|source| PilotError::Bind { addr, what, source })
        };
        let xds = bind(options.xds_addr, "xDS").await?;
        let http = bind(options.http_addr, "debug HTTP").await?;
        let secure = match options.secure {
            Some(secure) => {
                let listener = bind(secure.addr, "xDS and CA over TLS").await?;
                Some(secure::Secure::new(
                    listener,
                    secure,
                    &options.mesh.trust_domain,
                )?)
            }
            None => None,
        };
        let mesh = Arc::new(options.mesh);
        let jwks = JwksResolver::new(options.jwks);
        mesh.warn_unsupported();
        let current = Arc::new(ArcSwap::from_pointee(build(&*store, &mesh, None, &jwks)));
        let analyst = analysis::Analyst::start(&*store, mesh.clone());
        let ads = AdsServer::new(Source::new(current.clone()));
        let name = format!("mizzen-pilot-{}", xds.local_addr().map_or(0, |a| a.port()));
        let dashboard = match options.dashboard_addr {
            Some(addr) => {
                let listener = bind(addr, "dashboard").await?;
                let dashboard = Dashboard::new(
                    options.dashboard,
                    current.clone(),
                    ads.status(),
                    name.clone(),
                    analyst.findings(),
                );
                Some((listener, dashboard))
            }
            None => None,
        };
        let state = Arc::new(State {
            current,
            status: ads.status(),
            metrics: Metrics::default(),
            name,
            dashboard: dashboard.as_ref().and_then(|(l, _)| l.local_addr().ok()),
            findings: analyst.findings(),
        });
        Ok(Pilot {
            xds,
            http,
            secure,
            ads,
            dashboard,
            state,
            store,
            debounce: options.debounce,
            jwks,
            analyst,
            mesh,
        })
    }

    /// The address ADS is served on.
    pub fn xds_addr(&self) -> SocketAddr {
        self.xds
            .local_addr()
            .expect("bound listener has an address")
    }

    /// The address xDS and the CA are served on over TLS, when they are.
    pub fn tls_addr(&self) -> Option<SocketAddr> {
        self.secure.as_ref().map(secure::Secure::addr)
    }

    /// The address the debug endpoints are served on.
    pub fn http_addr(&self) -> SocketAddr {
        self.http
            .local_addr()
            .expect("bound listener has an address")
    }

    /// The address the dashboard is served on, if it is.
    pub fn dashboard_addr(&self) -> Option<SocketAddr> {
        self.state.dashboard
    }

    /// Who is connected and how far each proxy got.
    pub fn status(&self) -> StatusRegistry {
        self.state.status.clone()
    }

    /// What the analyzers found in the config, republished after every change.
    pub fn findings(&self) -> watch::Receiver<Arc<Findings>> {
        self.state.findings.clone()
    }

    /// Serves until `shutdown` completes.
    pub async fn run(
        self,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), PilotError> {
        let Pilot {
            xds,
            http,
            secure,
            ads,
            dashboard,
            state,
            store,
            debounce,
            jwks,
            analyst,
            mesh,
        } = self;
        let debounce = Debounce {
            quiet: debounce,
            ..Debounce::default()
        };
        tokio::spawn(analyst.run(debounce));
        let pusher = ads.pusher();
        let push_state = state.clone();
        let push_store = store.clone();
        let push_jwks = jwks.clone();
        let debouncer = Debouncer::spawn(
            debounce,
            move |request: PushRequest<crate::model::Proxy>| {
                let started = Instant::now();
                let previous = push_state.current.load().push.mesh.clone();
                push_state.current.store(Arc::new(build(
                    &*push_store,
                    &mesh,
                    Some(&previous),
                    &push_jwks,
                )));
                let woken = pusher.push(&request);
                push_state
                    .metrics
                    .record_push(&request.types, woken, started.elapsed());
            },
        );
        // Fetched keys reach proxies in their listeners (the jwt_authn filter), and only
        // the proxies whose policies name the URIs that changed. Policies are read from
        // the store, not the last push: one that named a new URI may not be pushed yet.
        let keys_pushed = debouncer.clone();
        let (keys_state, keys_store) = (state.clone(), store.clone());
        let resolver = jwks.clone();
        tokio::spawn(resolver.run(store.clone(), move |uris| {
            let root_namespace = keys_state.current.load().push.mesh.root_namespace.clone();
            keys_pushed.request(PushRequest {
                affected: affected::proxies_using_jwks(keys_store.snapshot(), root_namespace, uris),
                types: mizzen_xds::TypeSet::of([mizzen_xds::ResourceType::Listener]),
            });
        }));
        let mut changes = store.subscribe();
        let root_namespace = state.current.load().push.mesh.root_namespace.clone();
        tokio::spawn(async move {
            let mut before = changes.initial.clone();
            while let Some(batch) = changes.next().await {
                jwks.config_changed();
                let types = affected::types_for_changes(&batch.changes);
                if !types.is_empty() {
                    let proxies = batch
                        .changes
                        .iter()
                        .map(|c| {
                            affected::proxies_for(c, &before, &batch.snapshot, &root_namespace)
                        })
                        .reduce(Affected::union)
                        .unwrap_or(Affected::All);
                    debouncer.request(PushRequest {
                        affected: proxies,
                        types,
                    });
                }
                before = batch.snapshot.clone();
            }
        });

        let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
        tokio::spawn(async move {
            shutdown.await;
            let _ = stop_tx.send(true);
        });
        let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
            let _ = rx.wait_for(|s| *s).await;
        };
        let http_server = axum::serve(http, debug::router(state))
            .with_graceful_shutdown(stopped(stop_rx.clone()));
        let dashboard_server = async {
            match dashboard {
                Some((listener, dashboard)) => dashboard
                    .serve(listener, stopped(stop_rx.clone()))
                    .await
                    .map_err(PilotError::Dashboard),
                None => Ok(()),
            }
        };
        let secure_server = async {
            match secure {
                Some(secure) => secure.serve(&ads, stopped(stop_rx.clone())).await,
                None => Ok(()),
            }
        };
        let xds_server = ads.serve(xds, stopped(stop_rx.clone()));
        let (x, s, h, d) = tokio::join!(xds_server, secure_server, http_server, dashboard_server);
        x?;
        s?;
        h.map_err(PilotError::Http)?;
        d
    }
}

/// The push context for the store's current snapshot, with the mesh config in force
/// for it (from `mesh`, the options' settings, and the `previous` push's) and the key
/// sets fetched so far, versioned by its revision.
fn build(
    store: &dyn ConfigStore,
    mesh: &Arc<MeshConfig>,
    previous: Option<&Arc<MeshConfig>>,
    jwks: &JwksResolver,
) -> Current {
    let snapshot = store.snapshot();
    let version = snapshot.revision.to_string();
    let mesh = mesh.in_force(&snapshot, previous);
    let push = PushContext::new(snapshot, mesh).with_jwks(jwks.keys());
    Current::new(push, version)
}
