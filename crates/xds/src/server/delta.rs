//! Delta (incremental) xDS: responses carry only the resources that changed, with a
//! version each, and the names of those removed.
//!
//! The server remembers, per type, the version of each resource the proxy holds
//! (seeded from `initial_resource_versions` on reconnect), so a regeneration sends only
//! what differs. Subscription changes apply whatever the nonce; the nonce only decides
//! which response an ACK or NACK is about.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;

use super::{Ended, Session, StreamHandler, response};
use crate::pb::envoy::config::core::v3::Node;
use crate::pb::envoy::service::discovery::v3::DeltaDiscoveryRequest;
use crate::source::{ResourceSource, Subscription};
use crate::status::Protocol;
use crate::types::{ResourceType, TypeSet};

/// One Delta stream.
pub(super) struct Delta<S: ResourceSource> {
    session: Session<S>,
    watches: BTreeMap<ResourceType, Watch>,
}

/// What the proxy asked for of one type and what it holds.
#[derive(Default)]
struct Watch {
    subscription: Subscription,
    /// Name → version of every resource the proxy was sent and still holds.
    held: HashMap<String, String>,
    nonce: String,
    version: String,
}

impl<S: ResourceSource> StreamHandler<S> for Delta<S> {
    type Request = DeltaDiscoveryRequest;
    const PROTOCOL: Protocol = Protocol::Delta;

    fn node(request: &DeltaDiscoveryRequest) -> Option<&Node> {
        request.node.as_ref()
    }

    fn new(session: Session<S>) -> Self {
        Delta {
            session,
            watches: BTreeMap::new(),
        }
    }

    fn session(&mut self) -> &mut Session<S> {
        &mut self.session
    }

    async fn handle(&mut self, request: DeltaDiscoveryRequest) -> Result<(), Ended> {
        let Some(ty) = ResourceType::from_type_url(&request.type_url) else {
            tracing::debug!(node = %self.session.node_id(), type_url = %request.type_url, "request for a type not served");
            return Ok(());
        };
        let id = self.session.id();
        let first = !self.watches.contains_key(&ty);
        let watch = self.watches.entry(ty).or_default();
        if first {
            watch.held = request.initial_resource_versions.clone();
            // Legacy wildcard: a first request naming nothing for CDS or LDS.
            watch.subscription.wildcard =
                ty.is_wildcard_type() && request.resource_names_subscribe.is_empty();
        }

        if !request.response_nonce.is_empty() && request.response_nonce == watch.nonce {
            match &request.error_detail {
                Some(error) => {
                    tracing::warn!(node = %self.session.node_id(), %ty, version = %watch.version, message = %error.message, "config rejected");
                    self.session.status().nacked(
                        id,
                        ty,
                        &watch.version,
                        &watch.nonce,
                        &error.message,
                    );
                }
                None => {
                    self.session
                        .status()
                        .acked(id, ty, &watch.version, &watch.nonce);
                }
            }
        }

        let before = watch.subscription.clone();
        let mut added = BTreeSet::new();
        for name in &request.resource_names_subscribe {
            if name == "*" {
                watch.subscription.wildcard = true;
            } else if Arc::make_mut(&mut watch.subscription.names).insert(name.clone()) {
                added.insert(name.clone());
            }
        }
        for name in &request.resource_names_unsubscribe {
            if name == "*" {
                watch.subscription.wildcard = false;
            } else {
                Arc::make_mut(&mut watch.subscription.names).remove(name);
            }
        }
        // The proxy drops what it unsubscribed from; forget that it held them.
        let sub = &watch.subscription;
        watch.held.retain(|name, _| sub.wants(name));

        let widened = sub.wildcard && !before.wildcard;
        if first || *sub != before {
            self.session.intern(&mut watch.subscription);
            let sub = watch.subscription.clone();
            self.session.status().subscribed(id, ty, &sub);
        }
        if first || widened || !added.is_empty() {
            self.respond(ty, first, &added).await?;
        }
        Ok(())
    }

    async fn push(&mut self, types: TypeSet) -> Result<(), Ended> {
        for ty in types.iter() {
            if self.watches.contains_key(&ty) {
                self.respond(ty, false, &BTreeSet::new()).await?;
            }
        }
        Ok(())
    }
}

impl<S: ResourceSource> Delta<S> {
    /// Sends what changed since the proxy's last view, if anything did (or always,
    /// when `always`: a first request must be answered). Names in `added` that do not
    /// exist are reported removed, so the proxy stops waiting for them.
    async fn respond(
        &mut self,
        ty: ResourceType,
        always: bool,
        added: &BTreeSet<String>,
    ) -> Result<(), Ended> {
        let Some(watch) = self.watches.get(&ty) else {
            return Ok(());
        };
        let (version, generated) = self.session.generate(ty, &watch.subscription);
        let nonce = self.session.next_nonce();
        let Some(watch) = self.watches.get_mut(&ty) else {
            return Ok(());
        };

        let mut present = BTreeSet::new();
        let mut resources = Vec::new();
        for r in generated {
            let v = r.version();
            present.insert(r.name().to_owned());
            if watch.held.get(r.name()) != Some(&v) {
                watch.held.insert(r.name().to_owned(), v.clone());
                resources.push((r, v));
            }
        }
        let mut removed: Vec<String> = watch
            .held
            .keys()
            .filter(|name| !present.contains(*name))
            .cloned()
            .collect();
        for name in &removed {
            watch.held.remove(name);
        }
        let missing: Vec<String> = added
            .iter()
            .filter(|name| !present.contains(*name) && !removed.contains(name))
            .cloned()
            .collect();
        removed.extend(missing);
        removed.sort();
        if resources.is_empty() && removed.is_empty() && !always {
            return Ok(());
        }

        watch.nonce.clone_from(&nonce);
        watch.version.clone_from(&version);
        let count = resources.len();
        let response = response::delta(&version, ty.type_url(), &nonce, &resources, &removed);
        self.session.send(response).await?;
        let id = self.session.id();
        self.session.status().sent(id, ty, &version, &nonce, count);
        Ok(())
    }
}
