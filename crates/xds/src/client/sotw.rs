//! The State-of-the-World side of the client: every response replaces the held set of
//! CDS and LDS, and updates the named resources of the other types.

use std::collections::BTreeMap;

use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::Streaming;

use super::stream::{Ads, Flavor};
use super::{Worker, rejection};
use crate::pb::envoy::config::core::v3::Node;
use crate::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use crate::pb::google::protobuf::Any;
use crate::source::Subscription;
use crate::types::ResourceType;

/// The State-of-the-World protocol.
pub(super) struct Sotw;

impl Flavor for Sotw {
    type Request = DiscoveryRequest;
    type Response = DiscoveryResponse;

    fn set_node(request: &mut DiscoveryRequest, node: Node) {
        request.node = Some(node);
    }

    async fn open(
        mut ads: Ads,
        requests: UnboundedReceiverStream<DiscoveryRequest>,
    ) -> Result<Streaming<DiscoveryResponse>, tonic::Status> {
        Ok(ads
            .stream_aggregated_resources(requests)
            .await?
            .into_inner())
    }

    fn opening(&mut self, worker: &Worker) -> Vec<DiscoveryRequest> {
        worker
            .subscriptions
            .keys()
            .map(|ty| request(worker, *ty))
            .collect()
    }

    fn answer(&mut self, worker: &mut Worker, response: DiscoveryResponse) -> DiscoveryRequest {
        answer(worker, response)
    }

    fn subscribe(
        &mut self,
        worker: &mut Worker,
        ty: ResourceType,
        sub: Subscription,
    ) -> Option<DiscoveryRequest> {
        (worker.set_subscription(ty, sub.clone()) != sub).then(|| request(worker, ty))
    }
}

/// A request for `ty` as things stand: the names wanted, the version held, and the
/// last nonce seen (so that the server does not take it for a stale one).
fn request(worker: &Worker, ty: ResourceType) -> DiscoveryRequest {
    let held = worker.held.get(&ty);
    DiscoveryRequest {
        version_info: held.and_then(|h| h.version.clone()).unwrap_or_default(),
        resource_names: worker
            .subscriptions
            .get(&ty)
            .map(|s| s.to_sotw(ty))
            .unwrap_or_default(),
        type_url: ty.type_url().to_string(),
        response_nonce: held.map(|h| h.nonce.clone()).unwrap_or_default(),
        ..Default::default()
    }
}

/// Applies a response and returns its ACK or NACK.
fn answer(worker: &mut Worker, response: DiscoveryResponse) -> DiscoveryRequest {
    let Some(ty) = ResourceType::from_type_url(&response.type_url) else {
        return DiscoveryRequest {
            type_url: response.type_url.clone(),
            response_nonce: response.nonce,
            error_detail: Some(rejection(format!(
                "type {:?} is not one this client knows",
                response.type_url
            ))),
            ..Default::default()
        };
    };
    worker.held.entry(ty).or_default().nonce = response.nonce.clone();
    let outcome = candidate(worker, ty, &response.resources)
        .and_then(|set| worker.offer(ty, &response.version_info, set, BTreeMap::new()));
    DiscoveryRequest {
        error_detail: outcome.err().map(rejection),
        ..request(worker, ty)
    }
}

/// The held set of `ty` as the response would leave it.
fn candidate(
    worker: &Worker,
    ty: ResourceType,
    resources: &[Any],
) -> Result<BTreeMap<String, Any>, String> {
    let Some(sub) = worker.subscriptions.get(&ty) else {
        return Err(format!("{ty} was not subscribed to"));
    };
    // CDS and LDS responses are complete; the others name only what they carry.
    let mut set = match worker.held.get(&ty) {
        Some(held) if !ty.is_wildcard_type() => held
            .resources
            .iter()
            .filter(|(name, _)| sub.wants(name))
            .map(|(n, r)| (n.clone(), r.clone()))
            .collect(),
        _ => BTreeMap::new(),
    };
    for resource in resources {
        let name = ty.resource_name(resource).map_err(|e| e.to_string())?;
        if sub.wants(&name) {
            set.insert(name, resource.clone());
        }
    }
    Ok(set)
}
