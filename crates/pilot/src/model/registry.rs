//! The service registry: every service the mesh knows and the endpoints of each port.
//! Built from a config snapshot by [`Registry::build`] (Kubernetes Services selecting
//! WorkloadEntries, ServiceEntries, WorkloadEntries).

use std::collections::BTreeMap;
use std::sync::Arc;

use super::service::{Endpoint, EndpointsByPort, Hostname, Service};

/// Services by hostname (a ServiceEntry host may be defined in several namespaces), and
/// endpoints by service and port.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    services: BTreeMap<Hostname, Vec<Arc<Service>>>,
    endpoints: BTreeMap<(Hostname, String), EndpointsByPort>,
}

impl Registry {
    /// Adds a service (replacing one with the same hostname and namespace).
    pub fn insert_service(&mut self, service: Service) {
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
        self.endpoints
            .entry((hostname.clone(), namespace.to_owned()))
            .or_default()
            .entry(port)
            .or_default()
            .push(endpoint);
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
            .get(&(service.hostname.clone(), service.namespace.clone()))
            .and_then(|by_port| by_port.get(&port))
            .map_or(&[], Vec::as_slice)
    }
}
