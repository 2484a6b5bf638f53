//! State of the World: every response carries all the subscribed resources of its type.
//!
//! A request whose nonce is the last one sent is an ACK (no `error_detail`) or a NACK
//! (with one); if it also changes the names it asks for, it gets a fresh response.
//! A request with an older nonce was overtaken by a newer response and is ignored:
//! the proxy will answer that one with its current names. A request without a nonce
//! starts (or restarts) a subscription.

use std::collections::BTreeMap;

use super::{Ended, Session, StreamHandler, response};
use crate::pb::envoy::config::core::v3::Node;
use crate::pb::envoy::service::discovery::v3::DiscoveryRequest;
use crate::source::{ResourceSource, Subscription};
use crate::status::Protocol;
use crate::types::{ResourceType, TypeSet};

/// One SotW stream.
pub(super) struct Sotw<S: ResourceSource> {
    session: Session<S>,
    watches: BTreeMap<ResourceType, Watch>,
}

/// What the proxy asked for of one type and what it was last sent.
struct Watch {
    subscription: Subscription,
    nonce: String,
    version: String,
}

impl<S: ResourceSource> StreamHandler<S> for Sotw<S> {
    type Request = DiscoveryRequest;
    const PROTOCOL: Protocol = Protocol::StateOfTheWorld;

    fn node(request: &DiscoveryRequest) -> Option<&Node> {
        request.node.as_ref()
    }

    fn new(session: Session<S>) -> Self {
        Sotw {
            session,
            watches: BTreeMap::new(),
        }
    }

    fn session(&mut self) -> &mut Session<S> {
        &mut self.session
    }

    async fn handle(&mut self, request: DiscoveryRequest) -> Result<(), Ended> {
        let Some(ty) = ResourceType::from_type_url(&request.type_url) else {
            tracing::debug!(node = %self.session.node_id(), type_url = %request.type_url, "request for a type not served");
            return Ok(());
        };
        let subscription = Subscription::from_sotw(ty, &request.resource_names);
        let id = self.session.id();
        let Some(watch) = self.watches.get_mut(&ty) else {
            return self.subscribe(ty, subscription).await;
        };
        if request.response_nonce.is_empty() {
            return self.subscribe(ty, subscription).await;
        }
        if request.response_nonce != watch.nonce {
            tracing::debug!(node = %self.session.node_id(), %ty, nonce = %request.response_nonce, "stale nonce ignored");
            return Ok(());
        }
        match &request.error_detail {
            Some(error) => {
                tracing::warn!(node = %self.session.node_id(), %ty, version = %watch.version, message = %error.message, "config rejected");
                self.session
                    .status()
                    .nacked(id, ty, &watch.version, &watch.nonce, &error.message);
            }
            None => {
                self.session
                    .status()
                    .acked(id, ty, &request.version_info, &watch.nonce);
            }
        }
        if subscription != watch.subscription {
            return self.subscribe(ty, subscription).await;
        }
        Ok(())
    }

    async fn push(&mut self, types: TypeSet) -> Result<(), Ended> {
        for ty in types.iter() {
            if self.watches.contains_key(&ty) {
                self.respond(ty).await?;
            }
        }
        Ok(())
    }
}

impl<S: ResourceSource> Sotw<S> {
    async fn subscribe(
        &mut self,
        ty: ResourceType,
        mut subscription: Subscription,
    ) -> Result<(), Ended> {
        self.session.intern(&mut subscription);
        self.session
            .status()
            .subscribed(self.session.id(), ty, &subscription);
        self.watches.insert(
            ty,
            Watch {
                subscription,
                nonce: String::new(),
                version: String::new(),
            },
        );
        self.respond(ty).await
    }

    async fn respond(&mut self, ty: ResourceType) -> Result<(), Ended> {
        let nonce = self.session.next_nonce();
        let Some(watch) = self.watches.get_mut(&ty) else {
            return Ok(());
        };
        let (version, resources) = self.session.generate(ty, &watch.subscription);
        watch.nonce.clone_from(&nonce);
        watch.version.clone_from(&version);
        let count = resources.len();
        let response = response::sotw(&version, ty.type_url(), &nonce, &resources);
        self.session.send(response).await?;
        let id = self.session.id();
        self.session.status().sent(id, ty, &version, &nonce, count);
        Ok(())
    }
}
