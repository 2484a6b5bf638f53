//! The Delta side of the client: responses add, replace and remove single resources,
//! and a reconnecting client tells the server what it already holds.

use std::collections::{BTreeMap, BTreeSet};

use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::Streaming;

use super::stream::{Ads, Flavor};
use super::{Worker, rejection};
use crate::pb::envoy::config::core::v3::Node;
use crate::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DeltaDiscoveryResponse};
use crate::pb::google::protobuf::Any;
use crate::source::Subscription;
use crate::types::ResourceType;

/// The Delta protocol.
#[derive(Default)]
pub(super) struct Delta {
    /// Types asked for on this stream: the first request of a type is different.
    requested: BTreeSet<ResourceType>,
}

impl Flavor for Delta {
    type Request = DeltaDiscoveryRequest;
    type Response = DeltaDiscoveryResponse;

    fn set_node(request: &mut DeltaDiscoveryRequest, node: Node) {
        request.node = Some(node);
    }

    async fn open(
        mut ads: Ads,
        requests: UnboundedReceiverStream<DeltaDiscoveryRequest>,
    ) -> Result<Streaming<DeltaDiscoveryResponse>, tonic::Status> {
        Ok(ads.delta_aggregated_resources(requests).await?.into_inner())
    }

    fn opening(&mut self, worker: &Worker) -> Vec<DeltaDiscoveryRequest> {
        self.requested.extend(worker.subscriptions.keys().copied());
        worker
            .subscriptions
            .keys()
            .map(|ty| first_request(worker, *ty))
            .collect()
    }

    fn answer(
        &mut self,
        worker: &mut Worker,
        response: DeltaDiscoveryResponse,
    ) -> DeltaDiscoveryRequest {
        answer(worker, response)
    }

    fn subscribe(
        &mut self,
        worker: &mut Worker,
        ty: ResourceType,
        sub: Subscription,
    ) -> Option<DeltaDiscoveryRequest> {
        let old = worker.set_subscription(ty, sub.clone());
        if self.requested.insert(ty) {
            Some(first_request(worker, ty))
        } else {
            (old != sub).then(|| change(ty, &old, &sub))
        }
    }
}

/// The first request of `ty` on a stream: everything wanted, and what is held.
fn first_request(worker: &Worker, ty: ResourceType) -> DeltaDiscoveryRequest {
    let sub = worker.subscriptions.get(&ty).cloned().unwrap_or_default();
    DeltaDiscoveryRequest {
        type_url: ty.type_url().to_string(),
        resource_names_subscribe: star(sub.wildcard)
            .chain(sub.names.iter().cloned())
            .collect(),
        initial_resource_versions: worker
            .held
            .get(&ty)
            .map(|h| h.versions.clone().into_iter().collect())
            .unwrap_or_default(),
        ..Default::default()
    }
}

/// The request that turns subscription `old` into `new`.
fn change(ty: ResourceType, old: &Subscription, new: &Subscription) -> DeltaDiscoveryRequest {
    DeltaDiscoveryRequest {
        type_url: ty.type_url().to_string(),
        resource_names_subscribe: star(new.wildcard && !old.wildcard)
            .chain(new.names.difference(&old.names).cloned())
            .collect(),
        resource_names_unsubscribe: star(old.wildcard && !new.wildcard)
            .chain(old.names.difference(&new.names).cloned())
            .collect(),
        ..Default::default()
    }
}

fn star(yes: bool) -> impl Iterator<Item = String> {
    yes.then(|| "*".to_string()).into_iter()
}

/// Applies a response and returns its ACK or NACK.
fn answer(worker: &mut Worker, response: DeltaDiscoveryResponse) -> DeltaDiscoveryRequest {
    let outcome = match ResourceType::from_type_url(&response.type_url) {
        None => Err(format!(
            "type {:?} is not one this client knows",
            response.type_url
        )),
        Some(ty) => candidate(worker, ty, &response).and_then(|(set, versions)| {
            worker.offer(ty, &response.system_version_info, set, versions)
        }),
    };
    DeltaDiscoveryRequest {
        type_url: response.type_url,
        response_nonce: response.nonce,
        error_detail: outcome.err().map(rejection),
        ..Default::default()
    }
}

/// Resource name → version.
type Versions = BTreeMap<String, String>;

/// The held set of `ty`, and its versions, as the response would leave them.
fn candidate(
    worker: &Worker,
    ty: ResourceType,
    response: &DeltaDiscoveryResponse,
) -> Result<(BTreeMap<String, Any>, Versions), String> {
    if !worker.subscriptions.contains_key(&ty) {
        return Err(format!("{ty} was not subscribed to"));
    }
    let (mut set, mut versions) = match worker.held.get(&ty) {
        Some(held) => ((*held.resources).clone(), held.versions.clone()),
        None => Default::default(),
    };
    for resource in &response.resources {
        let Some(body) = &resource.resource else {
            return Err(format!("{ty} resource {:?} has no body", resource.name));
        };
        let name = ty.resource_name(body).map_err(|e| e.to_string())?;
        if name != resource.name {
            return Err(format!(
                "{ty} resource {:?} holds one named {name:?}",
                resource.name
            ));
        }
        set.insert(name.clone(), body.clone());
        versions.insert(name, resource.version.clone());
    }
    for name in &response.removed_resources {
        set.remove(name);
        versions.remove(name);
    }
    Ok((set, versions))
}
