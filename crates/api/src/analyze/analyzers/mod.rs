//! Every analyzer, named as Istio names them (what `--analyzer` selects).

mod annotations;
mod authn;
mod authz;
mod conditions;
mod deployment;
mod deprecation;
mod destination_rule;
mod envoy_filter;
mod external_control_plane;
mod gateway;
mod injection;
mod k8s_gateway;
mod multicluster;
mod schema;
mod service;
mod service_entry;
mod sidecar;
mod telemetry;
mod util;
mod virtual_service;
mod webhook;

use super::Analyzer;

/// The analyzers `istioctl analyze` runs by default (Istio's `analyzers.All()`).
pub fn all() -> Vec<Box<dyn Analyzer>> {
    let mut all: Vec<Box<dyn Analyzer>> = vec![
        Box::new(annotations::K8sAnnotations),
        Box::new(authn::BlockedCidrs),
        Box::new(authz::AuthorizationPolicies),
        Box::new(conditions::Conditions),
        Box::new(deployment::ApplicationUid),
        Box::new(deployment::MultiService),
        Box::new(deprecation::Deprecation),
        Box::new(destination_rule::CaCertificate),
        Box::new(destination_rule::SubsetSelectsPods),
        Box::new(envoy_filter::EnvoyPatch),
        Box::new(external_control_plane::ExternalControlPlane),
        Box::new(gateway::Certificate),
        Box::new(gateway::ConflictingGateway),
        Box::new(gateway::IngressGatewayPort),
        Box::new(gateway::SecretRefs),
        Box::new(injection::Image),
        Box::new(injection::ImageAuto),
        Box::new(injection::Injection),
        Box::new(k8s_gateway::CrdVersion),
        Box::new(k8s_gateway::Selector),
        Box::new(multicluster::MeshNetworks),
        Box::new(service::PortName),
        Box::new(service_entry::AddressesRequired),
        Box::new(service_entry::ConflictingProtocol),
        Box::new(sidecar::Selector),
        Box::new(telemetry::DefaultSelector),
        Box::new(telemetry::Lightstep),
        Box::new(telemetry::Provider),
        Box::new(telemetry::Selector),
        Box::new(virtual_service::ConflictingMeshGatewayHosts),
        Box::new(virtual_service::DestinationHosts),
        Box::new(virtual_service::DestinationRules),
        Box::new(virtual_service::Gateways),
        Box::new(virtual_service::JwtClaimRoute),
        Box::new(webhook::Webhooks),
    ];
    all.extend(schema::all().map(|s| Box::new(s) as Box<dyn Analyzer>));
    all
}

/// The analyzers that compare clusters (Istio's `AllMultiCluster()`).
pub fn multi_cluster() -> Vec<Box<dyn Analyzer>> {
    vec![Box::new(multicluster::MultiClusterService)]
}

/// Analyzers that run only when asked for by name.
fn opt_in() -> Vec<Box<dyn Analyzer>> {
    vec![Box::new(annotations::AlphaAnnotations)]
}

/// The analyzer named `name` (single- or multi-cluster, default or opt-in).
pub fn by_name(name: &str) -> Option<Box<dyn Analyzer>> {
    all()
        .into_iter()
        .chain(multi_cluster())
        .chain(opt_in())
        .find(|a| a.metadata().name == name)
}
