//! The State-of-the-World side of the client: every response replaces the held set of
//! CDS and LDS, and updates the named resources of the other types.

use std::collections::BTreeMap;

use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;

use super::{Command, StreamEnd, StreamError, Worker, rejection};
use crate::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use crate::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use crate::pb::google::protobuf::Any;
use crate::types::ResourceType;

/// Runs one stream until it ends.
pub(super) async fn run(worker: &mut Worker) -> StreamEnd {
    let mut received = false;
    let error = stream(worker, &mut received).await.err();
    StreamEnd { received, error }
}

async fn stream(worker: &mut Worker, received: &mut bool) -> Result<(), StreamError> {
    let endpoint = worker.options.endpoint.clone();
    let channel = super::connect(&endpoint).await?;
    let (tx, rx) = mpsc::unbounded_channel();
    let mut node = Some(worker.options.node.clone());
    let mut send = move |mut request: DiscoveryRequest| {
        // Envoy's default: the node goes in the stream's first request only.
        request.node = node.take();
        // The receiver lives until the stream ends, and then this closure is gone too.
        let _ = tx.send(request);
    };
    for ty in worker.subscriptions.keys() {
        send(request(worker, *ty));
    }
    let mut inbound = AggregatedDiscoveryServiceClient::new(channel)
        .stream_aggregated_resources(UnboundedReceiverStream::new(rx))
        .await?
        .into_inner();
    worker.stream_opened();
    loop {
        tokio::select! {
            message = inbound.message() => {
                let response = message?.ok_or(StreamError::Closed)?;
                *received = true;
                send(answer(worker, response));
            }
            command = worker.commands.recv() => match command {
                Some(Command::Subscribe(ty, sub)) => {
                    if worker.set_subscription(ty, sub.clone()) != sub {
                        send(request(worker, ty));
                    }
                }
                None => return Ok(()),
            },
        }
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
