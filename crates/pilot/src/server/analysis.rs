//! Istio's analyzers over the config pilot serves, run again after every change: what
//! `/debug/analyzez`, the dashboard's service pages and `mizzen get` show.
//!
//! The analysis follows the store on a subscription of its own, debounced as pushes
//! are, and runs on a blocking thread: a push never waits for it, and a large config
//! (10,000 objects take a fraction of a second) holds up no other task.

use std::sync::Arc;

use mizzen_api::analyze::{self, Analyzer, ContextBuilder, Finding, analyzers};
use mizzen_api::k8s_openapi::api::apps::v1::Deployment;
use mizzen_api::k8s_openapi::api::core::v1::Pod;
use mizzen_api::{Object, ObjectMeta};
use mizzen_xds::Debounce;
use serde_json::{Map, Value};
use tokio::sync::watch;
use tokio::time::Instant;

use crate::model::MeshConfig;
use crate::store::{ConfigStore, Snapshot, Subscription};

/// What the analyzers found in one revision of the config.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Findings {
    /// The revision analysed; pilot's xDS version for it is this number.
    pub revision: u64,
    /// What was found, most serious first, as `istioctl analyze` reports it.
    pub messages: Vec<Finding>,
}

impl Findings {
    /// Every analyzer over `snapshot`, read as a running mesh (see [`live_objects`])
    /// with pilot's mesh settings.
    pub fn of(snapshot: &Snapshot, mesh: &MeshConfig) -> Findings {
        analyse(snapshot, &analyzed_mesh(mesh), &analyzers::all())
    }
}

fn analyse(
    snapshot: &Snapshot,
    mesh: &analyze::MeshConfig,
    analyzers: &[Box<dyn Analyzer>],
) -> Findings {
    let mut builder = ContextBuilder::new()
        .cli_files(true)
        .mesh_config(mesh.clone());
    for object in live_objects(snapshot) {
        builder.add_object(object);
    }
    let ctx = builder.build();
    let messages = analyze::reportable(analyze::run(&ctx, analyzers).messages, &ctx);
    Findings {
        revision: snapshot.revision,
        messages: messages.iter().map(Finding::from).collect(),
    }
}

/// The objects of `snapshot` with a Pod for each replica of its Deployments, named as
/// `mizzen up` names the replicas it runs: the mesh as the analyzers see a cluster.
pub fn live_objects(snapshot: &Snapshot) -> Vec<Object> {
    let mut objects: Vec<Object> = snapshot.iter().map(|(_, o)| (**o).clone()).collect();
    let pods: Vec<Object> = objects
        .iter()
        .filter_map(|o| match o {
            Object::Deployment(d) => Some(replica_pods(d)),
            _ => None,
        })
        .flatten()
        .collect();
    objects.extend(pods);
    objects
}

/// The Pods `mizzen up` runs for a Deployment: its template, once per replica.
fn replica_pods(deployment: &Deployment) -> Vec<Object> {
    let name = deployment.metadata.name.clone().unwrap_or_default();
    let replicas = deployment.spec.replicas.unwrap_or(1).max(0);
    let template = &deployment.spec.template;
    (1..=replicas)
        .map(|i| {
            let labels = template.metadata.as_ref().and_then(|m| m.labels.clone());
            Object::Pod(Box::new(Pod {
                metadata: ObjectMeta {
                    name: Some(format!("{name}-{i}")),
                    namespace: deployment.metadata.namespace.clone(),
                    labels,
                    ..ObjectMeta::default()
                },
                spec: template.spec.clone(),
                status: None,
            }))
        })
        .collect()
}

/// Pilot's mesh settings as the analyzers read them: MeshConfig's fields. Of each
/// extension provider only its name and kind are carried, which is all analyzers read.
fn analyzed_mesh(mesh: &MeshConfig) -> analyze::MeshConfig {
    let providers: Vec<Value> = mesh
        .extension_providers
        .iter()
        .map(|p| {
            let mut provider = Map::new();
            provider.insert("name".into(), p.name.clone().into());
            if p.envoy_ext_authz_http.is_some() {
                provider.insert("envoyExtAuthzHttp".into(), Map::new().into());
            }
            if p.envoy_ext_authz_grpc.is_some() {
                provider.insert("envoyExtAuthzGrpc".into(), Map::new().into());
            }
            provider.into()
        })
        .collect();
    let mut doc = Map::new();
    doc.insert("rootNamespace".into(), mesh.root_namespace.clone().into());
    doc.insert("trustDomain".into(), mesh.trust_domain.clone().into());
    doc.insert(
        "trustDomainAliases".into(),
        mesh.trust_domain_aliases.clone().into(),
    );
    doc.insert("enableAutoMtls".into(), mesh.enable_auto_mtls.into());
    doc.insert("extensionProviders".into(), providers.into());
    doc.into()
}

/// Keeps the [`Findings`] of the store's latest config published.
pub(crate) struct Analyst {
    changes: Subscription,
    mesh: Arc<analyze::MeshConfig>,
    analyzers: Arc<[Box<dyn Analyzer>]>,
    published: watch::Sender<Arc<Findings>>,
}

impl Analyst {
    /// Analyses the store's config as it is now; [`Analyst::run`] follows its changes.
    pub(crate) fn start(store: &dyn ConfigStore, mesh: &MeshConfig) -> Analyst {
        let changes = store.subscribe();
        let mesh = Arc::new(analyzed_mesh(mesh));
        let analyzers: Arc<[Box<dyn Analyzer>]> = analyzers::all().into();
        let first = analyse(&changes.initial, &mesh, &analyzers);
        Analyst {
            changes,
            mesh,
            analyzers,
            published: watch::Sender::new(Arc::new(first)),
        }
    }

    /// The findings, as they are published.
    pub(crate) fn findings(&self) -> watch::Receiver<Arc<Findings>> {
        self.published.subscribe()
    }

    /// Analyses each burst of changes once it has settled, until the store is gone.
    pub(crate) async fn run(mut self, debounce: Debounce) {
        while let Some(batch) = self.changes.next().await {
            let mut latest = batch.snapshot.clone();
            let started = Instant::now();
            let mut last = started;
            let mut open = true;
            while open {
                let deadline = (last + debounce.quiet).min(started + debounce.max_delay);
                tokio::select! {
                    next = self.changes.next() => match next {
                        Some(batch) => {
                            latest = batch.snapshot.clone();
                            last = Instant::now();
                        }
                        None => open = false,
                    },
                    () = tokio::time::sleep_until(deadline) => break,
                }
            }
            let (mesh, analyzers) = (self.mesh.clone(), self.analyzers.clone());
            let revision = latest.revision;
            match tokio::task::spawn_blocking(move || analyse(&latest, &mesh, &analyzers)).await {
                Ok(findings) => {
                    self.published.send_replace(Arc::new(findings));
                }
                // The last findings stay published; the panic has been reported.
                Err(e) => tracing::error!(revision, "analysing the config failed: {e}"),
            }
            if !open {
                return;
            }
        }
    }
}
