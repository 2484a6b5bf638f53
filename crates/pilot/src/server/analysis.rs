//! Istio's analyzers over the config pilot serves, run again after every change: what
//! `/debug/analyzez`, the dashboard's service pages and `mizzen get` show.
//!
//! The analysis follows the store on a subscription of its own, debounced as pushes
//! are, and runs on a blocking thread: a push never waits for it, and a large config
//! (10,000 objects take a fraction of a second) holds up no other task.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use mizzen_api::analyze::{self, Analyzer, ContextBuilder, Finding, analyzers};
use mizzen_api::k8s_openapi::api::apps::v1::Deployment;
use mizzen_api::k8s_openapi::api::core::v1::{Pod, Service, ServicePort, ServiceSpec};
use mizzen_api::{Object, ObjectMeta};
use mizzen_xds::Debounce;
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
    pub fn of(snapshot: &Snapshot, mesh: &Arc<MeshConfig>) -> Findings {
        analyse(snapshot, mesh, &analyzers::all())
    }
}

/// Analyses `snapshot` with the mesh config in force for it (the `istio` ConfigMap's,
/// when pilot follows it).
fn analyse(
    snapshot: &Snapshot,
    mesh: &Arc<MeshConfig>,
    analyzers: &[Box<dyn Analyzer>],
) -> Findings {
    let in_force = mesh.in_force(snapshot, None);
    let mut builder = ContextBuilder::new()
        .cli_files(true)
        .mesh_config(analyze::MeshConfig::clone(&in_force));
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

/// The label `mizzen up` gives each replica it runs: the pod's name, by which its
/// registration's Sidecar selects it alone.
pub const POD_LABEL: &str = "mizzen.io/pod";

/// The namespace of the ingress gateway `mizzen up` runs.
pub const INGRESS_NAMESPACE: &str = "istio-system";
/// The labels of the ingress gateway `mizzen up` runs (Istio's `istio-ingressgateway`).
pub const INGRESS_LABELS: [(&str, &str); 2] =
    [("istio", "ingressgateway"), ("app", "istio-ingressgateway")];

/// The objects of `snapshot` and the Pods `mizzen up` runs for them: the mesh as the
/// analyzers see a cluster. A Pod per replica of each Deployment, named and labelled
/// as `mizzen up` names and labels it, and the ingress gateway's Pod with a Service in
/// front of it on every port the Gateways selecting it name (it listens on each).
pub fn live_objects(snapshot: &Snapshot) -> Vec<Object> {
    let mut objects: Vec<Object> = snapshot.iter().map(|(_, o)| (**o).clone()).collect();
    let mut pods: Vec<Object> = objects
        .iter()
        .filter_map(|o| match o {
            Object::Deployment(d) => Some(replica_pods(d)),
            _ => None,
        })
        .flatten()
        .collect();
    pods.extend(ingress_gateway(&objects));
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
            let pod = format!("{name}-{i}");
            let mut labels = template
                .metadata
                .as_ref()
                .and_then(|m| m.labels.clone())
                .unwrap_or_default();
            labels.insert(POD_LABEL.to_owned(), pod.clone());
            Object::Pod(Box::new(Pod {
                metadata: ObjectMeta {
                    name: Some(pod),
                    namespace: deployment.metadata.namespace.clone(),
                    labels: Some(labels),
                    ..ObjectMeta::default()
                },
                spec: template.spec.clone(),
                status: None,
            }))
        })
        .collect()
}

/// The ingress gateway's Pod, and its Service on the ports of the Gateways it serves.
fn ingress_gateway(objects: &[Object]) -> [Object; 2] {
    let labels: BTreeMap<String, String> = INGRESS_LABELS
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    let ports: BTreeSet<u32> = objects
        .iter()
        .filter_map(|o| match o {
            Object::Gateway(gw) => Some(&gw.spec),
            _ => None,
        })
        .filter(|gw| gw.selector.iter().all(|(k, v)| labels.get(k) == Some(v)))
        .flat_map(|gw| gw.servers.iter().filter_map(|s| s.port.as_ref()))
        .map(|port| port.number)
        .collect();
    let meta = |name: &str| ObjectMeta {
        name: Some(name.to_owned()),
        namespace: Some(INGRESS_NAMESPACE.to_owned()),
        labels: Some(labels.clone()),
        ..ObjectMeta::default()
    };
    let pod = Pod {
        metadata: meta("istio-ingressgateway-1"),
        ..Pod::default()
    };
    let service = Service {
        metadata: meta("istio-ingressgateway"),
        spec: Some(ServiceSpec {
            selector: Some(labels.clone()),
            ports: Some(
                ports
                    .into_iter()
                    .map(|port| ServicePort {
                        name: Some(format!("port-{port}")),
                        port: port as i32,
                        protocol: Some("TCP".to_owned()),
                        ..ServicePort::default()
                    })
                    .collect(),
            ),
            ..ServiceSpec::default()
        }),
        status: None,
    };
    [
        Object::Pod(Box::new(pod)),
        Object::Service(Box::new(service)),
    ]
}

/// Keeps the [`Findings`] of the store's latest config published.
pub(crate) struct Analyst {
    changes: Subscription,
    mesh: Arc<MeshConfig>,
    analyzers: Arc<[Box<dyn Analyzer>]>,
    published: watch::Sender<Arc<Findings>>,
}

impl Analyst {
    /// Analyses the store's config as it is now; [`Analyst::run`] follows its changes.
    pub(crate) fn start(store: &dyn ConfigStore, mesh: Arc<MeshConfig>) -> Analyst {
        let changes = store.subscribe();
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

#[cfg(test)]
mod tests {
    use std::path::Path;

    use mizzen_api::load::Loader;

    use super::*;

    /// What `mizzen up` registers for a replica, beside its WorkloadEntry.
    const REPLICA_SIDECAR: &str = r#"
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: reviews-v1-1, namespace: default}
spec:
  workloadSelector: {labels: {mizzen.io/pod: reviews-v1-1}}
  egress: [{hosts: ["*/*"]}]
"#;

    #[test]
    fn bookinfo_as_up_runs_it_has_its_pods_and_ingress_gateway() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/bookinfo");
        let mut loaded = Loader::new().load_path(&dir);
        loaded
            .objects
            .extend(Loader::new().load_str(REPLICA_SIDECAR, None).objects);
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        let objects = loaded
            .objects
            .into_iter()
            .map(|l| (l.object.key(), Arc::new(l.object)))
            .collect();
        let findings = Findings::of(&Snapshot::new(7, objects), &Arc::default());
        // Without the replicas' pods, the Sidecar and the Gateway would select nothing
        // (IST0101); without a Service on 8080, the Gateway's port would be IST0162.
        assert_eq!(findings.revision, 7);
        assert_eq!(findings.messages, []);
    }
}
