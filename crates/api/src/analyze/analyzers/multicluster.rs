//! Checks across clusters: MeshNetworks naming registries that do not exist, and a
//! Service defined differently in different clusters.

use std::collections::{BTreeMap, BTreeSet};

use k8s_openapi::api::core::v1::{Secret, Service, ServicePort, ServiceSpec};

use crate::Kind;
use crate::analyze::{Analyzer, Collection, Context, Message, Metadata, Subject, args, catalogue};
use crate::object::ObjectKey;

use super::util::go_list;

/// The registries Istio always knows (`provider.Mock`, `Kubernetes`, `External`).
const BUILT_IN_REGISTRIES: [&str; 3] = ["Mock", "Kubernetes", "External"];

/// The label of a Secret holding remote clusters' kubeconfigs, one cluster per key.
const MULTI_CLUSTER_SECRET_LABEL: &str = "istio/multiCluster";

/// `meshnetworks.MeshNetworksAnalyzer`: network endpoints `fromRegistry` a registry
/// that is neither built in nor a remote cluster of a multi-cluster Secret.
pub struct MeshNetworks;

impl Analyzer for MeshNetworks {
    fn metadata(&self) -> Metadata {
        Metadata {
            name: "meshnetworks.MeshNetworksAnalyzer".into(),
            description: "Check the validity of MeshNetworks in the cluster",
            inputs: vec![Collection::MESH_NETWORKS, Collection::of(Kind::Secret)],
        }
    }

    fn analyze(&self, ctx: &Context, out: &mut Vec<Message>) {
        let remote: BTreeSet<&str> = ctx
            .each::<Secret>()
            .filter(|(entry, _)| entry.label(MULTI_CLUSTER_SECRET_LABEL) == Some("true"))
            .flat_map(|(_, secret)| secret.data.iter().flatten().map(|(k, _)| k.as_str()))
            .collect();
        let subject = Subject {
            key: ObjectKey {
                kind: Collection::MESH_NETWORKS.kind.into(),
                namespace: ctx.istio_namespace().into(),
                name: "meshnetworks".into(),
            },
            file: None,
            line: None,
        };
        for (network, endpoint) in ctx.mesh_networks().endpoints() {
            let Some(registry) = endpoint.get("fromRegistry").and_then(|r| r.as_str()) else {
                continue;
            };
            if !BUILT_IN_REGISTRIES.contains(&registry) && !remote.contains(registry) {
                out.push(Message {
                    ty: catalogue::UNKNOWN_MESH_NETWORKS_SERVICE_REGISTRY,
                    subject: Some(subject.clone()),
                    args: args![registry, network],
                });
            }
        }
    }
}

/// `services.MultiClusterServiceAnalyzer`: a Service whose type, headlessness or ports
/// differ between the clusters that define it.
pub struct MultiClusterService;

/// A Service's ports in name order, as Istio compares them.
fn sorted_ports(spec: &ServiceSpec) -> Vec<&ServicePort> {
    let mut ports: Vec<&ServicePort> = spec.ports.iter().flatten().collect();
    ports.sort_by(|a, b| a.name.cmp(&b.name));
    ports
}

fn headless(spec: &ServiceSpec) -> bool {
    spec.cluster_ip.as_deref() == Some("None")
}

impl Analyzer for MultiClusterService {
    fn metadata(&self) -> Metadata {
        Metadata {
            name: "services.MultiClusterServiceAnalyzer".into(),
            description: "Check the validity of services in the multi-cluster environment",
            inputs: vec![Collection::of(Kind::Service)],
        }
    }

    fn analyze(&self, ctx: &Context, out: &mut Vec<Message>) {
        // namespace/name -> cluster -> definition, first-defined first.
        let mut by_name = BTreeMap::<(&str, &str), Vec<_>>::new();
        for (entry, svc) in ctx.each::<Service>() {
            if !entry.cluster.is_empty() {
                by_name
                    .entry((entry.namespace(), entry.name()))
                    .or_default()
                    .push((entry, svc));
            }
        }
        for ((namespace, name), defs) in by_name {
            let Some(((first_entry, first), rest)) = defs.split_first() else {
                continue;
            };
            let spec = |svc: &Service| -> ServiceSpec { svc.spec.clone().unwrap_or_default() };
            let base = &spec(first);
            let mut clusters = BTreeSet::new();
            let mut reasons = BTreeSet::new();
            for (entry, svc) in rest {
                let other = &spec(svc);
                if headless(base) != headless(other) {
                    clusters.extend(defs.iter().map(|(e, _)| &*e.cluster));
                    reasons.insert("service has mixed mode like headless and clusterIP");
                }
                if base.type_ != other.type_ {
                    clusters.insert(&*entry.cluster);
                    reasons.insert("service type is inconsistent");
                }
                if sorted_ports(base) != sorted_ports(other) {
                    clusters.insert(&*entry.cluster);
                    reasons.insert("service ports are inconsistent");
                }
            }
            if clusters.is_empty() {
                continue;
            }
            clusters.insert(&*first_entry.cluster);
            let clusters: Vec<String> = clusters.iter().map(|c| format!("{c:?}")).collect();
            let reasons: Vec<&str> = reasons.into_iter().collect();
            out.push(first_entry.message(
                catalogue::MULTI_CLUSTER_INCONSISTENT_SERVICE,
                args![name, namespace, go_list(&clusters), reasons.join("; ")],
            ));
        }
    }
}
