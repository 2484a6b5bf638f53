//! Everything one push needs, computed once per config change and shared by all
//! proxies (Istio's `PushContext`). Per-proxy work only filters it.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use mizzen_api::Resource;
use mizzen_api::mesh::{MeshError, Provider};
use mizzen_api::networking::Sidecar;

use super::delegation::Delegation;
use super::jwks::JwksKeys;
use super::proxy::Proxy;
use super::registry::Registry;
use super::service::Service;
use super::visibility::{self, EgressImports};
use crate::store::Snapshot;

/// Mesh-wide settings as pilot uses them: the user's MeshConfig (read through
/// `Deref`) and pilot's own settings that Istio takes from flags rather than MeshConfig.
#[derive(Debug, Clone, PartialEq)]
pub struct MeshConfig {
    /// What the user set (the `istio` ConfigMap or `--mesh-config`), with Istio's
    /// defaults.
    pub config: mizzen_api::mesh::MeshConfig,
    /// The DNS suffix of Kubernetes services (`cluster.local`; istiod's `--domain`).
    pub domain_suffix: String,
    /// Where `config` comes from.
    pub source: MeshSource,
}

/// Where the user's MeshConfig comes from, as istiod decides it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum MeshSource {
    /// The `istio` ConfigMap (`data.mesh`) in the root namespace of the config, read
    /// again on every change; Istio's defaults while there is none.
    #[default]
    ConfigMap,
    /// A file (`--mesh-config`), as istiod reads the ConfigMap mounted as a file: a
    /// ConfigMap in the config is then not read.
    File(PathBuf),
}

impl Default for MeshConfig {
    fn default() -> Self {
        Self::from(mizzen_api::mesh::MeshConfig::default())
    }
}

impl From<mizzen_api::mesh::MeshConfig> for MeshConfig {
    fn from(config: mizzen_api::mesh::MeshConfig) -> Self {
        Self {
            config,
            domain_suffix: "cluster.local".into(),
            source: MeshSource::ConfigMap,
        }
    }
}

impl MeshConfig {
    /// The settings of the MeshConfig file at `path`.
    pub fn from_file(path: &Path) -> Result<Self, MeshError> {
        let config = mizzen_api::mesh::MeshConfig::from_file(path)?;
        Ok(Self {
            source: MeshSource::File(path.to_owned()),
            ..Self::from(config)
        })
    }

    /// The settings in force for `snapshot`: with [`MeshSource::ConfigMap`], its
    /// `istio` ConfigMap over Istio's defaults (pilot's own settings kept); `previous`
    /// (the last push's) is reused when nothing changed, and kept when the ConfigMap
    /// does not parse, as istiod keeps its last good mesh config.
    pub fn in_force(
        self: &Arc<Self>,
        snapshot: &Snapshot,
        previous: Option<&Arc<MeshConfig>>,
    ) -> Arc<MeshConfig> {
        if self.source != MeshSource::ConfigMap {
            return self.clone();
        }
        let key = mizzen_api::mesh::MeshConfig::config_map_key(&self.root_namespace);
        let read = snapshot
            .get(&key)
            .and_then(|o| mizzen_api::mesh::MeshConfig::from_config_map(o));
        let config = match read {
            None => return self.clone(),
            Some(Ok(config)) => config,
            Some(Err(e)) => {
                tracing::error!(error = %e, "mesh config not applied; keeping the last good one");
                return previous.unwrap_or(self).clone();
            }
        };
        if let Some(previous) = previous.filter(|p| p.config == config) {
            return previous.clone();
        }
        let mesh = Self {
            config,
            ..(**self).clone()
        };
        mesh.warn_unsupported();
        Arc::new(mesh)
    }

    /// Warns once per (re)load about providers Mizzen reads but does not act on, so
    /// that a Telemetry naming one is not silently without effect.
    pub fn warn_unsupported(&self) {
        for p in &self.config.extension_providers {
            if matches!(
                p.provider,
                Provider::EnvoyOtelAls(_) | Provider::Unsupported(_)
            ) && !BUILTIN_UNSUPPORTED.contains(&p.name.as_str())
            {
                tracing::warn!(
                    provider = %p.name,
                    kind = p.provider.key(),
                    "extension provider kind is not supported by Mizzen; Telemetry naming it has no effect"
                );
            }
        }
    }
}

/// Built-in providers of unsupported kinds that Istio always declares.
const BUILTIN_UNSUPPORTED: [&str; 1] = ["stackdriver"];

impl std::ops::Deref for MeshConfig {
    type Target = mizzen_api::mesh::MeshConfig;

    fn deref(&self) -> &Self::Target {
        &self.config
    }
}

impl std::ops::DerefMut for MeshConfig {
    fn deref_mut(&mut self) -> &mut Self::Target {
        &mut self.config
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
    /// Root VirtualServices with their delegates merged in.
    pub delegation: Arc<Delegation>,
}

impl PushContext {
    /// The config of one revision, with its registry built from it.
    pub fn new(config: Arc<Snapshot>, mesh: Arc<MeshConfig>) -> Self {
        let registry = Arc::new(Registry::build(&config, &mesh));
        Self::with_registry(config, registry, mesh)
    }

    /// The config of one revision with a registry built elsewhere.
    pub fn with_registry(
        config: Arc<Snapshot>,
        registry: Arc<Registry>,
        mesh: Arc<MeshConfig>,
    ) -> Self {
        let delegation = Arc::new(Delegation::build(&config, &mesh));
        Self {
            config,
            registry,
            mesh,
            jwks: Arc::default(),
            delegation,
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::testing::snapshot;

    fn config_map(mesh: &str) -> Snapshot {
        snapshot(&format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata: {{name: istio, namespace: istio-system}}\ndata:\n  mesh: '{mesh}'\n"
        ))
    }

    #[test]
    fn the_config_map_overrides_defaults_and_a_bad_one_keeps_the_last_good() {
        let base = Arc::new(MeshConfig::default());
        assert!(Arc::ptr_eq(&base.in_force(&snapshot(""), None), &base));
        let good = base.in_force(&config_map("accessLogFile: /dev/stdout"), None);
        assert_eq!(good.access_log_file, "/dev/stdout");
        assert_eq!(good.domain_suffix, "cluster.local");
        let again = base.in_force(&config_map("accessLogFile: /dev/stdout"), Some(&good));
        assert!(
            Arc::ptr_eq(&again, &good),
            "unchanged config keeps the push's mesh"
        );
        let bad = base.in_force(&config_map("accessLogEncoding: XML"), Some(&good));
        assert!(Arc::ptr_eq(&bad, &good));
        // Removed: back to the defaults.
        assert!(Arc::ptr_eq(
            &base.in_force(&snapshot(""), Some(&good)),
            &base
        ));
    }

    #[test]
    fn a_mesh_config_file_ignores_the_config_map() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("mesh.yaml");
        std::fs::write(&path, "accessLogFile: /tmp/file.log\n").unwrap();
        let base = Arc::new(MeshConfig::from_file(&path).unwrap());
        let mesh = base.in_force(&config_map("accessLogFile: /dev/stdout"), None);
        assert_eq!(mesh.access_log_file, "/tmp/file.log");
    }
}
