//! The service registry: every service the mesh knows and the endpoints of each port.
//! Built from a config snapshot by [`Registry::build`] (Kubernetes Services selecting
//! WorkloadEntries, ServiceEntries, WorkloadEntries).

mod kubernetes;
mod service_entry;
mod workload;

#[cfg(test)]
mod tests;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::net::IpAddr;
use std::sync::{Arc, OnceLock};

use super::push::MeshConfig;
use super::service::{Endpoint, EndpointsByPort, HealthStatus, Hostname, Service, ServicePort};
use crate::store::Snapshot;

/// Services by hostname (a ServiceEntry host may be defined in several namespaces), and
/// endpoints by service and port.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    services: BTreeMap<Hostname, Vec<Arc<Service>>>,
    /// By hostname, then namespace: looked up by reference, without building a key.
    endpoints: BTreeMap<Hostname, BTreeMap<String, EndpointsByPort>>,
    /// Endpoints by address, built on first use.
    by_address: OnceLock<HashMap<IpAddr, Vec<Located>>>,
}

/// Where an endpoint at some address lies: its service, service port and index, and
/// its rank in registry order.
#[derive(Debug, Clone)]
struct Located {
    rank: usize,
    service: Arc<Service>,
    port: u16,
    index: usize,
}

/// One endpoint of one service port, found by its address.
#[derive(Debug, Clone, Copy)]
pub struct Instance<'a> {
    /// The service.
    pub service: &'a Arc<Service>,
    /// The service port the endpoint serves.
    pub port: &'a ServicePort,
    /// The endpoint.
    pub endpoint: &'a Endpoint,
}

impl Registry {
    /// The registry of `config` (pure): a service for every Kubernetes Service, named
    /// `<name>.<namespace>.svc.<domain suffix>`, with the WorkloadEntries its selector
    /// matches as endpoints; a service for every ServiceEntry host, with its inline
    /// endpoints, the WorkloadEntries its `workloadSelector` matches, or (DNS resolution
    /// with neither) the host itself.
    ///
    /// One hostname defined twice in one namespace keeps one definition, as Istio's
    /// sidecars see it: a Kubernetes Service over a ServiceEntry (whose
    /// `subjectAltNames` then decorate the Service), else the oldest ServiceEntry. A
    /// service's `service_accounts` also list its endpoints' identities.
    pub fn build(config: &Snapshot, mesh: &MeshConfig) -> Registry {
        let workloads = workload::entries(config);
        let mut kept: Vec<Definition> = Vec::new();
        let mut index: HashMap<(Hostname, String), usize> = HashMap::new();
        let definitions = kubernetes::definitions(config, mesh, &workloads)
            .into_iter()
            .chain(service_entry::definitions(config, mesh, &workloads));
        for definition in definitions {
            let key = (
                definition.service.hostname.clone(),
                definition.service.namespace.clone(),
            );
            match index.get(&key) {
                None => {
                    index.insert(key, kept.len());
                    kept.push(definition);
                }
                Some(&i) if kept[i].from_kubernetes && !definition.from_kubernetes => {
                    let sans = definition.service.service_accounts;
                    kept[i].service.service_accounts.extend(sans);
                }
                Some(_) => {}
            }
        }

        let mut registry = Registry::default();
        for Definition {
            mut service,
            endpoints,
            ..
        } in kept
        {
            let identities: BTreeSet<String> = service
                .service_accounts
                .drain(..)
                .chain(
                    endpoints
                        .iter()
                        .map(|(_, e)| e.service_account.clone())
                        .filter(|sa| !sa.is_empty()),
                )
                .collect();
            service.service_accounts = identities.into_iter().collect();
            for (port, endpoint) in endpoints {
                registry.insert_endpoint(&service.hostname, &service.namespace, port, endpoint);
            }
            registry.insert_service(service);
        }
        registry
    }

    /// Adds a service (replacing one with the same hostname and namespace).
    pub fn insert_service(&mut self, service: Service) {
        self.by_address = OnceLock::new();
        let list = self.services.entry(service.hostname.clone()).or_default();
        list.retain(|s| s.namespace != service.namespace);
        list.push(Arc::new(service));
    }

    /// Adds an endpoint to the service `hostname` in `namespace` on `port`.
    pub fn insert_endpoint(
        &mut self,
        hostname: &Hostname,
        namespace: &str,
        port: u16,
        endpoint: Endpoint,
    ) {
        self.by_address = OnceLock::new();
        self.endpoints
            .entry(hostname.clone())
            .or_default()
            .entry(namespace.to_owned())
            .or_default()
            .entry(port)
            .or_default()
            .push(endpoint);
    }

    /// The endpoints at any of `ips` (a workload's own addresses), in registry order:
    /// services by hostname, then namespace, then port.
    pub fn instances_at(&self, ips: &[IpAddr]) -> Vec<Instance<'_>> {
        let index = self.by_address.get_or_init(|| self.index_by_address());
        let mut found: Vec<&Located> = ips
            .iter()
            .filter_map(|ip| index.get(ip))
            .flatten()
            .collect();
        if ips.len() > 1 {
            found.sort_by_key(|l| l.rank);
        }
        found
            .into_iter()
            .filter_map(|l| {
                Some(Instance {
                    service: &l.service,
                    port: l.service.port(l.port)?,
                    endpoint: self.endpoints(&l.service, l.port).get(l.index)?,
                })
            })
            .collect()
    }

    /// The locality of the workload at `ips`: that of its first endpoint that has one.
    pub fn locality_of(&self, ips: &[IpAddr]) -> Option<&str> {
        self.instances_at(ips)
            .into_iter()
            .map(|i| i.endpoint.locality.as_str())
            .find(|l| !l.is_empty())
    }

    fn index_by_address(&self) -> HashMap<IpAddr, Vec<Located>> {
        let mut index: HashMap<IpAddr, Vec<Located>> = HashMap::new();
        let mut rank = 0;
        for service in self.services() {
            for port in &service.ports {
                for (i, ep) in self.endpoints(service, port.port).iter().enumerate() {
                    if let Some(ip) = ep.ip() {
                        index.entry(ip).or_default().push(Located {
                            rank,
                            service: service.clone(),
                            port: port.port,
                            index: i,
                        });
                    }
                    rank += 1;
                }
            }
        }
        index
    }

    /// Every service, by hostname then namespace.
    pub fn services(&self) -> impl Iterator<Item = &Arc<Service>> {
        self.services.values().flatten()
    }

    /// The services named `hostname` (one per defining namespace).
    pub fn services_named(&self, hostname: &Hostname) -> &[Arc<Service>] {
        self.services.get(hostname).map_or(&[], Vec::as_slice)
    }

    /// The endpoints of `service` on its port `port`.
    pub fn endpoints(&self, service: &Service, port: u16) -> &[Endpoint] {
        self.endpoints
            .get(&service.hostname)
            .and_then(|by_namespace| by_namespace.get(&service.namespace))
            .and_then(|by_port| by_port.get(&port))
            .map_or(&[], Vec::as_slice)
    }
}

/// One definition of a service, before definitions of the same name are reconciled.
#[derive(Debug)]
struct Definition {
    /// The service.
    service: Service,
    /// Its endpoints, by service port.
    endpoints: Vec<(u16, Endpoint)>,
    /// True for a Kubernetes Service (which wins over ServiceEntries of its name).
    from_kubernetes: bool,
}

/// Istio's `ResolveShortnameToFQDN`: a name without dots is a Kubernetes service of
/// `namespace` (`reviews` → `reviews.default.svc.cluster.local`); `*`, IP addresses and
/// names with a dot (`reviews.default`, `api.example.com`, `*.example.com`) stay as
/// written.
pub fn resolve_host(name: &str, namespace: &str, mesh: &MeshConfig) -> Hostname {
    if name.is_empty() || name == "*" || name.contains('.') || name.parse::<IpAddr>().is_ok() {
        return Hostname::new(name);
    }
    let mut out = name.to_owned();
    if !namespace.is_empty() {
        out.push('.');
        out.push_str(namespace);
    }
    if !mesh.domain_suffix.is_empty() {
        out.push_str(".svc.");
        out.push_str(&mesh.domain_suffix);
    }
    Hostname::new(&out)
}

/// The hostname of the Kubernetes Service `name` in `namespace`.
fn kubernetes_hostname(name: &str, namespace: &str, mesh: &MeshConfig) -> Hostname {
    Hostname::new(&format!("{name}.{namespace}.svc.{}", mesh.domain_suffix))
}

/// The SPIFFE identity of service account `account` in `namespace`.
fn spiffe_identity(mesh: &MeshConfig, namespace: &str, account: &str) -> String {
    format!("spiffe://{}/ns/{namespace}/sa/{account}", mesh.trust_domain)
}

/// `exportTo` values as the registry keeps them: `.` becomes the defining namespace.
fn export_to<'a>(values: impl Iterator<Item = &'a str>, namespace: &str) -> Vec<String> {
    values
        .map(|v| if v == "." { namespace } else { v }.to_owned())
        .collect()
}

/// An endpoint whose address is a DNS name resolved by the proxy (a DNS ServiceEntry's
/// own host, a Kubernetes ExternalName).
fn host_endpoint(host: &str, port: u16, service_port_name: &str) -> Endpoint {
    Endpoint {
        address: host.to_owned(),
        port,
        service_port_name: service_port_name.to_owned(),
        labels: Default::default(),
        locality: String::new(),
        weight: 1,
        service_account: String::new(),
        network: String::new(),
        health: HealthStatus::Healthy,
        workload: String::new(),
        workload_namespace: String::new(),
    }
}
