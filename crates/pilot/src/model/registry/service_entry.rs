//! ServiceEntries as registry services, one per host (Istio's `convertServices`), with
//! their endpoints: inline `endpoints`, the WorkloadEntries their `workloadSelector`
//! matches, or, for DNS resolution with neither, the host itself (Istio's
//! `convertServiceEntryToInstances`).

use std::net::IpAddr;

use mizzen_api::networking::{
    ServiceEntry, ServiceEntryLocation, ServiceEntryResolution, ServicePort as EntryPort,
};
use mizzen_api::{Kind, Object, Resource};

use super::workload::{AddressKind, Workload};
use super::{Definition, export_to, host_endpoint};
use crate::model::push::MeshConfig;
use crate::model::service::{Hostname, Location, Resolution, Service, ServicePort};
use crate::store::Snapshot;

/// Every ServiceEntry host in `config`, oldest entry first, with its endpoints
/// (`workloads` are the WorkloadEntries a selector may pick).
pub(super) fn definitions(
    config: &Snapshot,
    mesh: &MeshConfig,
    workloads: &[Workload<'_>],
) -> Vec<Definition> {
    let mut entries: Vec<&Resource<ServiceEntry>> = config
        .of_kind(Kind::ServiceEntry)
        .filter_map(|object| match object.as_ref() {
            Object::ServiceEntry(entry) => Some(entry),
            _ => None,
        })
        .collect();
    entries.sort_by(|a, b| {
        a.metadata
            .creation_timestamp
            .cmp(&b.metadata.creation_timestamp)
    });
    entries
        .into_iter()
        .flat_map(|entry| entry_definitions(entry, mesh, workloads))
        .collect()
}

fn entry_definitions(
    entry: &Resource<ServiceEntry>,
    mesh: &MeshConfig,
    workloads: &[Workload<'_>],
) -> Vec<Definition> {
    let spec = &entry.spec;
    let namespace = entry.metadata.namespace.as_deref().unwrap_or_default();
    let resolution = match spec.resolution {
        ServiceEntryResolution::None => Resolution::Passthrough,
        ServiceEntryResolution::Static => Resolution::ClientSideLb,
        ServiceEntryResolution::Dns => Resolution::Dns,
        ServiceEntryResolution::DnsRoundRobin => Resolution::DnsRoundRobin,
        // The proxy resolves each request's own host: to the registry that is traffic
        // to wherever the caller asked, with no endpoints of its own.
        ServiceEntryResolution::DynamicDns => Resolution::Passthrough,
    };
    let dns = matches!(resolution, Resolution::Dns | Resolution::DnsRoundRobin);
    let ports: Vec<(&EntryPort, ServicePort)> = spec
        .ports
        .iter()
        .filter_map(|p| {
            let port = ServicePort {
                name: p.name.clone(),
                port: u16::try_from(p.number).ok()?,
                protocol: p.protocol.parse().ok(),
            };
            Some((p, port))
        })
        .collect();

    // The endpoints' workloads, shared by every host of the entry.
    let selected: Vec<Workload<'_>> = if !spec.endpoints.is_empty() {
        spec.endpoints
            .iter()
            .map(|e| Workload::inline(e, namespace))
            .collect()
    } else if let Some(selector) = &spec.workload_selector {
        workloads
            .iter()
            .filter(|w| {
                w.namespace == namespace
                    && w.selected_by(&selector.labels)
                    && match w.address_kind() {
                        AddressKind::Ip => true,
                        AddressKind::DnsOnly => dns,
                        AddressKind::None => false,
                    }
            })
            .cloned()
            .collect()
    } else {
        Vec::new()
    };
    let host_is_endpoint = dns && spec.endpoints.is_empty() && spec.workload_selector.is_none();

    spec.hosts
        .iter()
        .map(|host| {
            let service = Service {
                hostname: Hostname::new(host),
                namespace: namespace.to_owned(),
                ports: ports.iter().map(|(_, p)| p.clone()).collect(),
                addresses: spec.addresses.iter().map(|a| address(a)).collect(),
                resolution,
                location: match spec.location {
                    ServiceEntryLocation::MeshExternal => Location::MeshExternal,
                    ServiceEntryLocation::MeshInternal => Location::MeshInternal,
                },
                export_to: export_to(spec.export_to.iter().map(String::as_str), namespace),
                labels: entry.metadata.labels.clone().unwrap_or_default(),
                service_accounts: spec.subject_alt_names.clone(),
            };
            let mut endpoints = Vec::new();
            for (entry_port, port) in &ports {
                if host_is_endpoint {
                    let target = target_port(entry_port).unwrap_or(port.port);
                    endpoints.push((
                        port.port,
                        host_endpoint(service.hostname.as_str(), target, &port.name),
                    ));
                    continue;
                }
                for workload in &selected {
                    if let Some(target) = endpoint_port(workload, entry_port, port) {
                        endpoints.push((port.port, workload.endpoint(target, &port.name, mesh)));
                    }
                }
            }
            Definition {
                service,
                endpoints,
                from_kubernetes: false,
            }
        })
        .collect()
}

/// The port on `workload` behind the entry's port, in Istio's order: none for a Unix
/// socket, the workload's `ports[name]`, the port's `targetPort`, the port itself.
fn endpoint_port(
    workload: &Workload<'_>,
    entry_port: &EntryPort,
    port: &ServicePort,
) -> Option<u16> {
    if workload.is_unix() {
        return Some(0);
    }
    Some(
        workload
            .named_port(&port.name)
            .or_else(|| target_port(entry_port))
            .unwrap_or(port.port),
    )
}

fn target_port(port: &EntryPort) -> Option<u16> {
    u16::try_from(port.target_port).ok().filter(|&p| p > 0)
}

/// An address as Istio keeps it: a single-address CIDR (`/32`, `/128`) becomes the IP.
fn address(address: &str) -> String {
    let single = address.split_once('/').and_then(|(ip, bits)| {
        let ip: IpAddr = ip.parse().ok()?;
        let full = if ip.is_ipv4() { "32" } else { "128" };
        (bits == full).then_some(ip)
    });
    single.map_or_else(|| address.to_owned(), |ip| ip.to_string())
}
