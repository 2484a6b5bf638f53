//! Everything one push needs, computed once per config change and shared by all
//! proxies (Istio's `PushContext`). Per-proxy work only filters it.

use std::sync::Arc;

use mizzen_api::Resource;
use mizzen_api::networking::Sidecar;

use super::extension::ExtensionProvider;
use super::jwks::JwksKeys;
use super::proxy::Proxy;
use super::registry::Registry;
use super::service::Service;
use super::visibility::{self, EgressImports};
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
    /// Other trust domains whose identities count as this one's
    /// (`trustDomainAliases`), for authorization during a trust domain migration.
    pub trust_domain_aliases: Vec<String>,
    /// Whether clients use mTLS to endpoints whose workloads have a proxy without being
    /// told (Istio's `enableAutoMtls`, on by default).
    pub enable_auto_mtls: bool,
    /// External authorizers CUSTOM AuthorizationPolicies delegate to.
    pub extension_providers: Vec<ExtensionProvider>,
}

impl Default for MeshConfig {
    fn default() -> Self {
        Self {
            root_namespace: "istio-system".into(),
            trust_domain: "cluster.local".into(),
            domain_suffix: "cluster.local".into(),
            trust_domain_aliases: Vec::new(),
            enable_auto_mtls: true,
            extension_providers: Vec::new(),
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
    /// Public keys fetched for RequestAuthentication `jwksUri`s.
    pub jwks: Arc<JwksKeys>,
}

impl PushContext {
    /// The config of one revision, with its registry built from it.
    pub fn new(config: Arc<Snapshot>, mesh: Arc<MeshConfig>) -> Self {
        let registry = Arc::new(Registry::build(&config, &mesh));
        Self {
            config,
            registry,
            mesh,
            jwks: Arc::default(),
        }
    }

    /// This push with the key sets fetched for `jwksUri`s.
    pub fn with_jwks(mut self, jwks: Arc<JwksKeys>) -> Self {
        self.jwks = jwks;
        self
    }

    /// The Sidecar resource that configures `proxy` (its workload's, else its
    /// namespace's, else the root namespace's), or `None` for gateways and proxies that
    /// have none. Translation reads its ingress listeners, egress listeners and capture
    /// mode.
    pub fn sidecar_for(&self, proxy: &Proxy) -> Option<&Resource<Sidecar>> {
        visibility::sidecar_for(&self.config, &self.mesh.root_namespace, proxy)
    }

    /// The services `proxy` may reach, by hostname, one per hostname: those exported to
    /// its namespace (`exportTo`) and imported by an egress listener of its Sidecar
    /// (`hosts`), preferring a definition in its own namespace, then a Kubernetes
    /// Service.
    pub fn visible_services<'a>(
        &'a self,
        proxy: &'a Proxy,
    ) -> impl Iterator<Item = &'a Arc<Service>> + 'a {
        let imports = self
            .sidecar_for(proxy)
            .map(|sidecar| visibility::egress_imports(&sidecar.spec, &proxy.namespace));
        let candidates = self.registry.services().filter(move |s| {
            visibility::exported_to(s, &proxy.namespace)
                && imports
                    .as_ref()
                    .is_none_or(|listeners| listeners.iter().any(|l| l.imports(s)))
        });
        visibility::one_per_hostname(candidates, &proxy.namespace).into_iter()
    }

    /// The services one egress listener of `proxy`'s Sidecar imports: exported to the
    /// proxy's namespace, imported by `imports`, one per hostname.
    pub fn services_imported_by<'a>(
        &'a self,
        proxy: &Proxy,
        imports: &EgressImports,
    ) -> Vec<&'a Arc<Service>> {
        let candidates = self
            .registry
            .services()
            .filter(|s| visibility::exported_to(s, &proxy.namespace) && imports.imports(s));
        visibility::one_per_hostname(candidates, &proxy.namespace)
    }
}
