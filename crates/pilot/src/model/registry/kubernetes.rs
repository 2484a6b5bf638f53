//! Kubernetes `Service` objects as registry services (Istio's `kube.ConvertService`), with
//! the WorkloadEntries their selectors match as endpoints (Istio's
//! `WorkloadInstanceHandler`: a Service may select WorkloadEntries as it selects Pods).

use std::collections::BTreeMap;

use mizzen_api::k8s_openapi::api::core::v1 as core;
use mizzen_api::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use mizzen_api::kube::service_port_protocol as protocol;
use mizzen_api::types::Protocol;
use mizzen_api::{Kind, Object};

use super::workload::{AddressKind, Workload};
use super::{Definition, export_to, host_endpoint, kubernetes_hostname, spiffe_identity};
use crate::model::push::MeshConfig;
use crate::model::service::{Location, Resolution, Service, ServicePort};
use crate::store::Snapshot;

/// The annotation naming the namespaces a Service is exported to (comma separated).
const EXPORT_TO_ANNOTATION: &str = "networking.istio.io/exportTo";
/// Identities (already SPIFFE or otherwise canonical) the Service's workloads run as.
const CANONICAL_SERVICE_ACCOUNTS_ANNOTATION: &str = "alpha.istio.io/canonical-serviceaccounts";
/// Kubernetes service accounts the Service's workloads run as, outside Kubernetes.
const KUBERNETES_SERVICE_ACCOUNTS_ANNOTATION: &str = "alpha.istio.io/kubernetes-serviceaccounts";

/// Every Kubernetes Service in `config`, oldest first, with its endpoints among
/// `workloads`.
pub(super) fn definitions(
    config: &Snapshot,
    mesh: &MeshConfig,
    workloads: &[Workload<'_>],
) -> Vec<Definition> {
    let mut services: Vec<&core::Service> = config
        .of_kind(Kind::Service)
        .filter_map(|object| match object.as_ref() {
            Object::Service(service) => Some(service.as_ref()),
            _ => None,
        })
        .collect();
    services.sort_by(|a, b| {
        a.metadata
            .creation_timestamp
            .cmp(&b.metadata.creation_timestamp)
    });
    services
        .into_iter()
        .map(|service| definition(service, mesh, workloads))
        .collect()
}

fn definition(object: &core::Service, mesh: &MeshConfig, workloads: &[Workload<'_>]) -> Definition {
    let meta = &object.metadata;
    let name = meta.name.as_deref().unwrap_or_default();
    let namespace = meta.namespace.as_deref().unwrap_or_default();
    let no_spec = core::ServiceSpec::default();
    let spec = object.spec.as_ref().unwrap_or(&no_spec);
    let empty = BTreeMap::new();
    let annotations = meta.annotations.as_ref().unwrap_or(&empty);

    let external_name = spec
        .external_name
        .as_deref()
        .filter(|n| spec.type_.as_deref() == Some("ExternalName") && !n.is_empty());
    let headless = spec.cluster_ip.as_deref() == Some("None");
    let resolution = match (external_name, headless) {
        (_, true) => Resolution::Passthrough,
        (Some(_), false) => Resolution::Dns,
        (None, false) => Resolution::ClientSideLb,
    };
    let addresses = match (&spec.cluster_ip, &spec.cluster_ips) {
        _ if headless => Vec::new(),
        (_, Some(ips)) if ips.len() > 1 => ips.clone(),
        (Some(ip), _) if !ip.is_empty() => vec![ip.clone()],
        _ => Vec::new(),
    };

    let mut service_accounts: Vec<String> = Vec::new();
    if let Some(list) = annotations.get(CANONICAL_SERVICE_ACCOUNTS_ANNOTATION) {
        service_accounts.extend(split_list(list).map(str::to_owned));
    }
    if let Some(list) = annotations.get(KUBERNETES_SERVICE_ACCOUNTS_ANNOTATION) {
        service_accounts.extend(split_list(list).map(|sa| spiffe_identity(mesh, namespace, sa)));
    }

    let ports: Vec<(&core::ServicePort, ServicePort)> = spec
        .ports
        .iter()
        .flatten()
        .filter_map(|p| {
            let port = ServicePort {
                name: p.name.clone().unwrap_or_default(),
                port: u16::try_from(p.port).ok()?,
                protocol: protocol(p),
            };
            Some((p, port))
        })
        .collect();

    let service = Service {
        hostname: kubernetes_hostname(name, namespace, mesh),
        namespace: namespace.to_owned(),
        ports: ports.iter().map(|(_, p)| p.clone()).collect(),
        addresses,
        resolution,
        location: if external_name.is_some() {
            Location::MeshExternal
        } else {
            Location::MeshInternal
        },
        export_to: annotations
            .get(EXPORT_TO_ANNOTATION)
            .map(|list| export_to(split_list(list), namespace))
            .unwrap_or_default(),
        labels: meta.labels.clone().unwrap_or_default(),
        service_accounts,
    };

    let mut endpoints = Vec::new();
    match (external_name, resolution) {
        (Some(target), _) => {
            // The external name is the one endpoint of every port, resolved by DNS.
            for port in &service.ports {
                endpoints.push((port.port, host_endpoint(target, port.port, &port.name)));
            }
        }
        (None, Resolution::ClientSideLb) => {
            let selector = spec.selector.as_ref().unwrap_or(&empty);
            // A Service without a selector selects nothing (its endpoints are managed by
            // hand); unlabelled entries cannot be selected.
            if !selector.is_empty() {
                let selected = workloads.iter().filter(|w| {
                    w.namespace == namespace
                        && !w.labels.is_empty()
                        && w.address_kind() == AddressKind::Ip
                        && w.selected_by(selector)
                });
                for workload in selected {
                    for (k8s_port, port) in &ports {
                        if port.protocol == Some(Protocol::Udp) {
                            continue;
                        }
                        if let Some(target) = target_port(k8s_port, port, workload) {
                            endpoints
                                .push((port.port, workload.endpoint(target, &port.name, mesh)));
                        }
                    }
                }
            }
        }
        (None, _) => {}
    }
    Definition {
        service,
        endpoints,
        from_kubernetes: true,
    }
}

/// The port on `workload` behind the service port, as Istio maps it for WorkloadEntries:
/// a numeric `targetPort` (Kubernetes defaults it to the port) unless the entry's
/// `ports` maps the service port's name; a named `targetPort` must be in the entry's
/// `ports`, or the entry does not serve this port.
fn target_port(
    k8s: &core::ServicePort,
    port: &ServicePort,
    workload: &Workload<'_>,
) -> Option<u16> {
    match &k8s.target_port {
        None => Some(workload.named_port(&port.name).unwrap_or(port.port)),
        Some(IntOrString::Int(n)) if *n > 0 => {
            let number = u16::try_from(*n).ok()?;
            Some(if port.name.is_empty() {
                number
            } else {
                workload.named_port(&port.name).unwrap_or(number)
            })
        }
        Some(IntOrString::String(name)) if !name.is_empty() => workload.named_port(name),
        Some(_) => Some(port.port),
    }
}

/// The items of a comma-separated annotation, trimmed, empty ones dropped.
fn split_list(list: &str) -> impl Iterator<Item = &str> {
    list.split(',').map(str::trim).filter(|s| !s.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn port(name: &str, number: i32) -> core::ServicePort {
        core::ServicePort {
            name: Some(name.to_owned()),
            port: number,
            ..Default::default()
        }
    }

    #[test]
    fn protocols_come_from_app_protocol_then_the_name_prefix() {
        let cases = [
            ("http", 80, None, Some(Protocol::Http)),
            ("http-web", 80, None, Some(Protocol::Http)),
            ("HTTP2-x", 80, None, Some(Protocol::Http2)),
            ("grpc", 80, None, Some(Protocol::Grpc)),
            ("grpc-web", 80, None, Some(Protocol::GrpcWeb)),
            ("grpc-web-ui", 80, None, Some(Protocol::GrpcWeb)),
            ("tcp-db", 80, None, Some(Protocol::Tcp)),
            ("tls", 443, None, Some(Protocol::Tls)),
            ("https-admin", 443, None, Some(Protocol::Https)),
            ("mongo", 27017, None, Some(Protocol::Mongo)),
            ("redis", 6379, None, Some(Protocol::Redis)),
            ("mysql", 3306, None, Some(Protocol::MySql)),
            ("web", 8080, None, None),
            ("", 8080, None, None),
            ("web", 3306, None, Some(Protocol::Tcp)),
            ("web", 8080, Some("http2"), Some(Protocol::Http2)),
            ("http", 8080, Some("grpc"), Some(Protocol::Grpc)),
            ("http", 8080, Some("custom.io/thing"), None),
        ];
        for (name, number, app, want) in cases {
            let mut p = port(name, number);
            p.app_protocol = app.map(str::to_owned);
            assert_eq!(protocol(&p), want, "{name} {number} {app:?}");
        }
        let mut udp = port("http", 53);
        udp.protocol = Some("UDP".into());
        assert_eq!(protocol(&udp), Some(Protocol::Udp));
    }
}
