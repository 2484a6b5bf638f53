//! The Delta side of the client: responses add, replace and remove single resources,
//! and a reconnecting client tells the server what it already holds.

use std::collections::{BTreeMap, BTreeSet};

use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;

use super::{Command, StreamEnd, StreamError, Worker, rejection};
use crate::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use crate::pb::envoy::service::discovery::v3::{DeltaDiscoveryRequest, DeltaDiscoveryResponse};
use crate::pb::google::protobuf::Any;
use crate::source::Subscription;
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
    let mut send = move |mut request: DeltaDiscoveryRequest| {
        request.node = node.take();
        // The receiver lives until the stream ends, and then this closure is gone too.
        let _ = tx.send(request);
    };
    // Types asked for on this stream: the first request of a type is different.
    let mut requested = BTreeSet::new();
    for ty in worker.subscriptions.keys() {
        send(first_request(worker, *ty));
        requested.insert(*ty);
    }
    let mut inbound = AggregatedDiscoveryServiceClient::new(channel)
        .delta_aggregated_resources(UnboundedReceiverStream::new(rx))
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
                    let old = worker.set_subscription(ty, sub.clone());
                    if requested.insert(ty) {
                        send(first_request(worker, ty));
                    } else if old != sub {
                        send(change(ty, &old, &sub));
                    }
                }
                None => return Ok(()),
            },
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
