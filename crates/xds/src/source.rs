//! What the ADS server serves: the control plane implements [`ResourceSource`], and the
//! server asks it for one proxy's resources of one type whenever it must respond.

use std::collections::BTreeSet;
use std::error::Error;
use std::sync::Arc;

use crate::pb::envoy::config::core::v3::Node;
use crate::resource::NamedResource;
use crate::types::ResourceType;

/// Which resources of one type a client wants.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Subscription {
    /// Everything of the type (CDS and LDS as Envoy asks for them).
    pub wildcard: bool,
    /// Names asked for explicitly (EDS clusters, RDS route configs); shared, as a
    /// thousand sidecars of one namespace ask for the same thousand clusters.
    pub names: Arc<BTreeSet<String>>,
}

impl Subscription {
    /// Every resource of the type.
    pub fn wildcard() -> Subscription {
        Subscription {
            wildcard: true,
            names: Arc::default(),
        }
    }

    /// Just these names.
    pub fn names<I, N>(names: I) -> Subscription
    where
        I: IntoIterator<Item = N>,
        N: Into<String>,
    {
        Subscription {
            wildcard: false,
            names: Arc::new(names.into_iter().map(Into::into).collect()),
        }
    }

    /// The subscription a State-of-the-World request's `resource_names` describe: `*`
    /// subscribes to everything, and so does an empty list for CDS and LDS.
    pub fn from_sotw(ty: ResourceType, resource_names: &[String]) -> Subscription {
        let names: BTreeSet<String> = resource_names
            .iter()
            .filter(|name| *name != "*")
            .cloned()
            .collect();
        Subscription {
            wildcard: resource_names.iter().any(|name| name == "*")
                || (resource_names.is_empty() && ty.is_wildcard_type()),
            names: Arc::new(names),
        }
    }

    /// True when a resource named `name` is wanted.
    pub fn wants(&self, name: &str) -> bool {
        self.wildcard || self.names.contains(name)
    }

    /// The `resource_names` a State-of-the-World request sends for this subscription:
    /// the legacy empty list where that means everything (so that any server
    /// understands it), `*` otherwise.
    pub fn to_sotw(&self, ty: ResourceType) -> Vec<String> {
        let star = self.wildcard && (!self.names.is_empty() || !ty.is_wildcard_type());
        star.then(|| "*".to_string())
            .into_iter()
            .chain(self.names.iter().cloned())
            .collect()
    }
}

/// One proxy's resources of one type.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Generated {
    /// The version the response carries (`version_info`, `system_version_info`).
    pub version: String,
    /// The resources. For explicitly subscribed types the server drops those the
    /// client did not ask for, so a source may return more than was asked.
    pub resources: Vec<NamedResource>,
}

/// The control plane's side of ADS: who may connect and what each proxy is sent.
///
/// Called from the connection's task, so `generate` should be cheap: work shared by
/// every proxy belongs in the source's own precomputed state.
pub trait ResourceSource: Send + Sync + 'static {
    /// What the source makes of a connecting node (for pilot, its parsed proxy), kept
    /// for the connection's life and matched by [`crate::Affected::Matching`].
    type Proxy: Send + Sync + 'static;

    /// Accepts a node, or refuses it with the reason the client is told.
    fn connect(&self, node: &Node) -> Result<Self::Proxy, Box<dyn Error + Send + Sync>>;

    /// The proxy's current resources of type `ty` for `subscription`.
    fn generate(
        &self,
        proxy: &Self::Proxy,
        ty: ResourceType,
        subscription: &Subscription,
    ) -> Generated;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn empty_names_are_wildcard_only_for_cds_and_lds() {
        assert!(Subscription::from_sotw(ResourceType::Cluster, &[]).wildcard);
        assert!(Subscription::from_sotw(ResourceType::Listener, &[]).wildcard);
        assert!(!Subscription::from_sotw(ResourceType::Endpoint, &[]).wildcard);
        assert!(!Subscription::from_sotw(ResourceType::Route, &[]).wildcard);
    }

    #[test]
    fn star_subscribes_to_everything_plus_names() {
        let sub = Subscription::from_sotw(ResourceType::Endpoint, &names(&["*", "a"]));
        assert!(sub.wildcard && sub.wants("b"));
        assert_eq!(sub.to_sotw(ResourceType::Endpoint), names(&["*", "a"]));
        let all = Subscription::wildcard();
        assert_eq!(all.to_sotw(ResourceType::Cluster), Vec::<String>::new());
        assert_eq!(all.to_sotw(ResourceType::Endpoint), names(&["*"]));
        let sub = Subscription::names(["a"]);
        assert!(sub.wants("a") && !sub.wants("b"));
    }
}
