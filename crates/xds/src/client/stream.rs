//! One ADS stream, whichever its protocol: connect, send the opening requests (the node
//! in the first one only, as Envoy does), then answer every response and follow
//! subscription changes until the stream or the client ends.

use std::future::Future;

use tokio::sync::mpsc;
use tokio_stream::wrappers::UnboundedReceiverStream;
use tonic::Streaming;
use tonic::transport::Channel;

use super::{Command, StreamEnd, StreamError, Worker};
use crate::pb::envoy::config::core::v3::Node;
use crate::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use crate::source::Subscription;
use crate::types::ResourceType;

/// The ADS client of a channel.
pub(super) type Ads = AggregatedDiscoveryServiceClient<Channel>;

/// What differs between the State-of-the-World and the Delta protocol.
pub(super) trait Flavor {
    /// The protocol's request.
    type Request: Send + 'static;
    /// The protocol's response.
    type Response;

    /// Puts the node in a request.
    fn set_node(request: &mut Self::Request, node: Node);

    /// Opens the stream that sends `requests`.
    fn open(
        ads: Ads,
        requests: UnboundedReceiverStream<Self::Request>,
    ) -> impl Future<Output = Result<Streaming<Self::Response>, tonic::Status>> + Send;

    /// The requests that open a stream: one per subscribed type.
    fn opening(&mut self, worker: &Worker) -> Vec<Self::Request>;

    /// Applies a response and returns its ACK or NACK.
    fn answer(&mut self, worker: &mut Worker, response: Self::Response) -> Self::Request;

    /// Records subscription `sub` of `ty` and returns the request it takes, if any.
    fn subscribe(
        &mut self,
        worker: &mut Worker,
        ty: ResourceType,
        sub: Subscription,
    ) -> Option<Self::Request>;
}

/// Runs one stream until it ends.
pub(super) async fn run<F: Flavor>(worker: &mut Worker, flavor: F) -> StreamEnd {
    let mut received = false;
    let error = stream(worker, flavor, &mut received).await.err();
    StreamEnd { received, error }
}

async fn stream<F: Flavor>(
    worker: &mut Worker,
    mut flavor: F,
    received: &mut bool,
) -> Result<(), StreamError> {
    let channel = super::connect(&worker.options.endpoint, worker.options.tls.as_ref()).await?;
    let (tx, rx) = mpsc::unbounded_channel();
    let mut node = Some(worker.options.node.clone());
    let mut send = move |mut request: F::Request| {
        if let Some(node) = node.take() {
            F::set_node(&mut request, node);
        }
        // The receiver lives until the stream ends, and then this closure is gone too.
        let _ = tx.send(request);
    };
    for request in flavor.opening(worker) {
        send(request);
    }
    let mut inbound = F::open(Ads::new(channel), UnboundedReceiverStream::new(rx)).await?;
    worker.stream_opened();
    loop {
        tokio::select! {
            message = inbound.message() => {
                let response = message?.ok_or(StreamError::Closed)?;
                *received = true;
                send(flavor.answer(worker, response));
            }
            command = worker.commands.recv() => match command {
                Some(Command::Subscribe(ty, sub)) => {
                    if let Some(request) = flavor.subscribe(worker, ty, sub) {
                        send(request);
                    }
                }
                None => return Ok(()),
            },
        }
    }
}
