//! Taking config over ADS: every response is compiled into the store (an error is the
//! NACK's message; for listeners, so is a socket that cannot be bound), and the EDS, RDS
//! and SDS names the new clusters and listeners refer to become the client's
//! subscriptions.

use std::sync::Arc;

use mizzen_xds::{AdsClient, ClientOptions, ResourceType, Subscription};

use crate::bootstrap::Ads;
use crate::{Shared, listeners};
use mizzen_xds::pb::envoy::config::core::v3::Node;

/// Starts the ADS client for `shared`'s config and listeners; it runs until the
/// returned client is dropped.
pub fn start(ads: &Ads, node: Node, shared: Arc<Shared>) -> Arc<AdsClient> {
    let mut options = ClientOptions::new(ads.endpoint.clone(), node);
    options.protocol = ads.protocol;
    options.tls = ads.tls.clone();
    let store = shared.store.clone();
    let client = Arc::new(AdsClient::start(options, move |ty, resources| {
        match ty {
            ResourceType::Listener => listeners::apply(&shared, resources),
            _ => shared.store.apply(ty, resources),
        }
        .inspect_err(|reason| {
            tracing::warn!(%ty, %reason, "config rejected");
        })
    }));
    let subscriber = Arc::downgrade(&client);
    let mut wanted = store.wanted();
    tokio::spawn(async move {
        // Nothing is asked of a type until something refers to it: an empty EDS
        // request reads as "everything" to some servers.
        let mut asked = [false; 3];
        loop {
            let names = wanted.borrow_and_update().clone();
            let Some(client) = subscriber.upgrade() else {
                return;
            };
            let types = [
                (ResourceType::Endpoint, names.endpoints),
                (ResourceType::Route, names.routes),
                (ResourceType::Secret, names.secrets),
            ];
            for ((ty, names), asked) in types.into_iter().zip(&mut asked) {
                if *asked || !names.is_empty() {
                    *asked = true;
                    client.subscribe(ty, Subscription::names(names));
                }
            }
            drop(client);
            if wanted.changed().await.is_err() {
                return;
            }
        }
    });
    client
}
