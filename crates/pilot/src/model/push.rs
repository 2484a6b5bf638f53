//! Everything one push needs, computed once per config change and shared by all
//! proxies (Istio's `PushContext`). Per-proxy work only filters it.

use std::sync::Arc;

use super::proxy::Proxy;
use super::registry::Registry;
use super::service::Service;
use crate::store::Snapshot;

/// Mesh-wide settings (Istio's MeshConfig, the parts Mizzen uses).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeshConfig {
    /// The namespace whose config applies mesh-wide (`istio-system`).
    pub root_namespace: String,
    /// The SPIFFE trust domain (`cluster.local`).
    pub trust_domain: String,
    /// The DNS suffix of Kubernetes services (`cluster.local`).
    pub domain_suffix: String,
}

impl Default for MeshConfig {
    fn default() -> Self {
        Self {
            root_namespace: "istio-system".into(),
            trust_domain: "cluster.local".into(),
            domain_suffix: "cluster.local".into(),
        }
    }
}

/// The config and registry of one revision.
#[derive(Debug, Clone)]
pub struct PushContext {
    /// The config objects.
    pub config: Arc<Snapshot>,
    /// Services and endpoints built from them.
    pub registry: Arc<Registry>,
    /// Mesh-wide settings.
    pub mesh: Arc<MeshConfig>,
}

impl PushContext {
    /// The services `proxy` may reach: those exported to its namespace (`exportTo`).
    pub fn visible_services<'a>(
        &'a self,
        proxy: &'a Proxy,
    ) -> impl Iterator<Item = &'a Arc<Service>> + 'a {
        self.registry
            .services()
            .filter(move |s| exported_to(s, &proxy.namespace))
    }
}

/// True when `service` is visible from `namespace` under its `exportTo` (empty: all).
fn exported_to(service: &Service, namespace: &str) -> bool {
    service.export_to.is_empty()
        || service
            .export_to
            .iter()
            .any(|e| e == "*" || e == namespace || (e == "." && service.namespace == namespace))
}
