//! Named secrets and where they come from. A TLS context holds the [`SecretSlot`]s it
//! names; a slot's content is swapped whole when its secret arrives or changes, so the
//! next handshake uses the new certificate while connections made with the old one
//! live on. Handshakes read a slot with one atomic load.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use arc_swap::ArcSwapOption;
use mizzen_xds::pb::envoy::config::core::v3::{
    ConfigSource, config_source::ConfigSourceSpecifier, grpc_service::TargetSpecifier,
};
use mizzen_xds::pb::envoy::extensions::transport_sockets::tls::v3::{
    SdsSecretConfig, Secret as PbSecret,
};

use super::secret::{Identity, Material, SecretError, Trust};

/// The cluster Istio names for the SDS server of its node agent: secrets asked of it are
/// the proxy's own workload identity.
pub const AGENT_SDS_CLUSTER: &str = "sds-grpc";

/// Where a named secret comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SecretSource {
    /// The bootstrap's `static_resources.secrets` (an SDS config without `sds_config`).
    Static,
    /// SDS over the proxy's ADS stream.
    Ads,
    /// The proxy's own agent (`sds-grpc`): its workload identity.
    Agent,
}

impl SecretSource {
    /// Where the secret an `SdsSecretConfig` names comes from.
    pub fn of(config: &SdsSecretConfig) -> SecretSource {
        match &config.sds_config {
            None => SecretSource::Static,
            Some(source) if names_agent(source) => SecretSource::Agent,
            Some(_) => SecretSource::Ads,
        }
    }
}

fn names_agent(source: &ConfigSource) -> bool {
    let Some(ConfigSourceSpecifier::ApiConfigSource(api)) = &source.config_source_specifier else {
        return false;
    };
    api.grpc_services.iter().any(|g| {
        matches!(&g.target_specifier, Some(TargetSpecifier::EnvoyGrpc(e)) if e.cluster_name == AGENT_SDS_CLUSTER)
    })
}

/// One version of a secret.
#[derive(Debug)]
pub struct Provided {
    /// What it holds, parsed.
    pub material: Material,
    /// The resource as received, for `/config_dump`.
    pub raw: PbSecret,
    /// When it arrived.
    pub updated: SystemTime,
}

/// A named secret as TLS contexts see it: empty until it arrives.
#[derive(Debug)]
pub struct SecretSlot {
    name: String,
    source: Option<SecretSource>,
    current: ArcSwapOption<Provided>,
}

impl SecretSlot {
    fn named(name: &str, source: SecretSource) -> SecretSlot {
        SecretSlot {
            name: name.to_owned(),
            source: Some(source),
            current: ArcSwapOption::empty(),
        }
    }

    /// A slot of its own for a secret written inline in a TLS context.
    pub(super) fn inline(material: Material, raw: PbSecret) -> Arc<SecretSlot> {
        let slot = SecretSlot {
            name: String::new(),
            source: None,
            current: ArcSwapOption::empty(),
        };
        slot.store(material, raw);
        Arc::new(slot)
    }

    /// The secret's name (empty for an inline one).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Where it comes from; None for an inline secret.
    pub fn source(&self) -> Option<SecretSource> {
        self.source
    }

    /// The current version, if one arrived.
    pub fn current(&self) -> Option<Arc<Provided>> {
        self.current.load_full()
    }

    /// Whether the secret arrived.
    pub fn is_ready(&self) -> bool {
        self.current.load().is_some()
    }

    /// The certificate it holds now, if it holds one.
    pub fn identity(&self) -> Option<Arc<Identity>> {
        match self.current.load().as_deref().map(|p| &p.material) {
            Some(Material::Identity(i)) => Some(i.clone()),
            _ => None,
        }
    }

    /// The validation context it holds now, if it holds one.
    pub fn trust(&self) -> Option<Arc<Trust>> {
        match self.current.load().as_deref().map(|p| &p.material) {
            Some(Material::Trust(t)) => Some(t.clone()),
            _ => None,
        }
    }

    fn store(&self, material: Material, raw: PbSecret) {
        self.current.store(Some(Arc::new(Provided {
            material,
            raw,
            updated: SystemTime::now(),
        })));
    }
}

/// Every named secret the proxy knows, by source and name.
#[derive(Debug, Default)]
pub struct Secrets {
    slots: Mutex<BTreeMap<(SecretSource, String), Arc<SecretSlot>>>,
}

impl Secrets {
    /// The slot of `name` from `source`, made empty if it is new.
    pub fn slot(&self, source: SecretSource, name: &str) -> Arc<SecretSlot> {
        self.lock()
            .entry((source, name.to_owned()))
            .or_insert_with(|| Arc::new(SecretSlot::named(name, source)))
            .clone()
    }

    /// The slot of `name` from `source`, if something named or provided it.
    pub fn get(&self, source: SecretSource, name: &str) -> Option<Arc<SecretSlot>> {
        self.lock().get(&(source, name.to_owned())).cloned()
    }

    /// Every slot, by source and name.
    pub fn all(&self) -> Vec<Arc<SecretSlot>> {
        self.lock().values().cloned().collect()
    }

    /// Parses every secret of `secrets` and, only if all parse, makes them current;
    /// the first that does not parse is the error.
    pub fn provide(&self, source: SecretSource, secrets: Vec<PbSecret>) -> Result<(), SecretError> {
        let parsed = secrets
            .into_iter()
            .map(|s| Material::compile(&s).map(|m| (m, s)))
            .collect::<Result<Vec<_>, _>>()?;
        for (material, raw) in parsed {
            self.slot(source, &raw.name).store(material, raw);
        }
        Ok(())
    }

    /// Forgets the secrets of `source` no TLS context names any more.
    pub fn prune(&self, source: SecretSource) {
        self.lock()
            .retain(|(s, _), slot| *s != source || Arc::strong_count(slot) > 1);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<(SecretSource, String), Arc<SecretSlot>>> {
        self.slots.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tls::testing;

    #[test]
    fn a_set_with_one_bad_secret_changes_nothing() {
        let secrets = Secrets::default();
        let ca = testing::Ca::new();
        let slot = secrets.slot(SecretSource::Ads, "default");
        secrets
            .provide(
                SecretSource::Ads,
                vec![ca.leaf("spiffe://td/a").secret("default")],
            )
            .unwrap();
        let first = slot.identity().unwrap();
        let e = secrets
            .provide(
                SecretSource::Ads,
                vec![
                    ca.leaf("spiffe://td/b").secret("default"),
                    testing::root_secret("ROOTCA", "junk"),
                ],
            )
            .unwrap_err();
        assert!(e.to_string().starts_with("secret \"ROOTCA\""), "{e}");
        assert!(Arc::ptr_eq(&slot.identity().unwrap(), &first));
        assert!(secrets.get(SecretSource::Ads, "ROOTCA").is_none());
    }

    #[test]
    fn the_agent_is_the_sds_grpc_cluster() {
        let config = |yaml: &str| mizzen_xds::json::from_yaml::<SdsSecretConfig>(yaml).unwrap();
        let agent = config(
            "name: default\nsds_config: {api_config_source: {api_type: GRPC, grpc_services: [{envoy_grpc: {cluster_name: sds-grpc}}]}}",
        );
        assert_eq!(SecretSource::of(&agent), SecretSource::Agent);
        assert_eq!(
            SecretSource::of(&config("name: x\nsds_config: {ads: {}}")),
            SecretSource::Ads
        );
        assert_eq!(SecretSource::of(&config("name: x")), SecretSource::Static);
    }
}
