//! The ADS server: Envoy's `AggregatedDiscoveryService` over gRPC, both variants.
//!
//! Each stream runs in its own task with a one-message outbox, so a proxy that reads
//! slowly (or not at all) only holds up its own task; pushes meanwhile pile up as
//! pending types on its connection and go out as one regeneration when it catches up.

mod delta;
mod grpc;
mod names;
mod response;
mod sotw;

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::TcpListenerStream;
use tonic::{Status, Streaming};

pub use self::grpc::AdsService;
use self::grpc::Outgoing;
use self::response::Framed;
use crate::pb::envoy::config::core::v3::Node;
use crate::push::{Connection, Connections, Pusher};
use crate::resource::NamedResource;
use crate::source::{ResourceSource, Subscription};
use crate::status::{Protocol, StatusRegistry};
use crate::types::{ResourceType, TypeSet};

/// The ADS server for one [`ResourceSource`]; cheap to clone.
pub struct AdsServer<S: ResourceSource> {
    shared: Arc<Shared<S>>,
}

impl<S: ResourceSource> Clone for AdsServer<S> {
    fn clone(&self) -> Self {
        AdsServer {
            shared: self.shared.clone(),
        }
    }
}

struct Shared<S: ResourceSource> {
    source: S,
    connections: Arc<Connections<S::Proxy>>,
    status: StatusRegistry,
    names: names::NameSets,
    next_id: AtomicU64,
}

impl<S: ResourceSource> AdsServer<S> {
    /// A server that serves what `source` generates.
    pub fn new(source: S) -> AdsServer<S> {
        AdsServer {
            shared: Arc::new(Shared {
                source,
                connections: Arc::default(),
                status: StatusRegistry::default(),
                names: names::NameSets::default(),
                next_id: AtomicU64::new(1),
            }),
        }
    }

    /// The handle that wakes connected proxies when their config changed.
    pub fn pusher(&self) -> Pusher<S::Proxy> {
        Pusher::new(self.shared.connections.clone())
    }

    /// The registry of connected proxies and their sync state.
    pub fn status(&self) -> StatusRegistry {
        self.shared.status.clone()
    }

    /// The gRPC service, to add to a `tonic` router next to others (the CA).
    pub fn service(&self) -> AdsService<S> {
        AdsService::new(self.clone())
    }

    /// Ends every open stream (`UNAVAILABLE`, so proxies reconnect elsewhere or later)
    /// and refuses new ones; what a graceful shutdown calls before draining.
    pub fn close_streams(&self) {
        self.shared.connections.close_all();
    }

    /// Serves ADS alone on `listener` until `shutdown` resolves, then ends the streams
    /// and waits for the connections to finish. A proxy that is alive but stopped reading
    /// keeps its connection (and this wait) open; bound the wait with a timeout where
    /// that matters.
    pub async fn serve(
        &self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> Result<(), tonic::transport::Error> {
        let server = self.clone();
        tonic::transport::Server::builder()
            // A proxy that vanished without closing its connection is found out here.
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .http2_keepalive_timeout(Some(Duration::from_secs(10)))
            .add_service(self.service())
            .serve_with_incoming_shutdown(TcpListenerStream::new(listener), async move {
                shutdown.await;
                server.close_streams();
            })
            .await
    }

    /// Starts a stream's task; its responses come out of the returned receiver.
    fn spawn<H: StreamHandler<S>>(
        &self,
        inbound: Streaming<H::Request>,
    ) -> mpsc::Receiver<Outgoing> {
        // One slot: the stream's task waits on its own proxy, nobody else does.
        let (tx, rx) = mpsc::channel(1);
        tokio::spawn(run::<S, H>(self.shared.clone(), inbound, tx));
        rx
    }
}

/// The stream ended: the proxy went away or the server is closing.
#[derive(Debug)]
struct Ended;

/// One protocol variant's state machine over a [`Session`].
trait StreamHandler<S: ResourceSource>: Sized + Send + 'static {
    type Request: Send + 'static;
    const PROTOCOL: Protocol;

    /// The node, which Envoy sends in the first request.
    fn node(request: &Self::Request) -> Option<&Node>;

    /// A handler for a freshly accepted stream.
    fn new(session: Session<S>) -> Self;

    /// The stream's session.
    fn session(&mut self) -> &mut Session<S>;

    /// Handles one request from the proxy.
    fn handle(&mut self, request: Self::Request) -> impl Future<Output = Result<(), Ended>> + Send;

    /// Regenerates and sends the pending `types` the proxy has asked for.
    fn push(&mut self, types: TypeSet) -> impl Future<Output = Result<(), Ended>> + Send;
}

/// Runs one stream from its first request to its end.
async fn run<S: ResourceSource, H: StreamHandler<S>>(
    shared: Arc<Shared<S>>,
    mut inbound: Streaming<H::Request>,
    tx: mpsc::Sender<Outgoing>,
) {
    let mut closing = shared.connections.closing();
    let first = tokio::select! {
        first = inbound.message() => first,
        () = closed(&mut closing) => return,
    };
    let first = match first {
        Ok(Some(first)) => first,
        Ok(None) => return,
        Err(status) => {
            tracing::debug!(%status, "xDS stream failed before its first request");
            return;
        }
    };
    let session = match Session::open(shared, H::node(&first), H::PROTOCOL, tx.clone()) {
        Ok(session) => session,
        Err(status) => {
            tracing::warn!(%status, "xDS stream refused");
            let _ = tx.send(Err(status)).await;
            return;
        }
    };
    drop(tx);
    let mut handler = H::new(session);
    if handler.handle(first).await.is_err() {
        return;
    }
    let conn = handler.session().conn.clone();
    loop {
        let step = tokio::select! {
            message = inbound.message() => match message {
                Ok(Some(request)) => handler.handle(request).await,
                Ok(None) => Err(Ended),
                Err(status) => {
                    tracing::debug!(node = %conn.node_id, %status, "xDS stream failed");
                    Err(Ended)
                }
            },
            types = conn.next() => handler.push(types).await,
            () = closed(&mut closing) => {
                handler.session().goodbye();
                Err(Ended)
            }
        };
        if step.is_err() {
            return;
        }
    }
}

/// Resolves once the server is closing.
async fn closed(closing: &mut watch::Receiver<bool>) {
    // The sender lives in the server's shared state, which this stream holds too.
    let _ = closing.wait_for(|closed| *closed).await;
}

/// What every stream has: its connection, its outbox, its nonces. Dropping it
/// unregisters the stream.
struct Session<S: ResourceSource> {
    shared: Arc<Shared<S>>,
    conn: Arc<Connection<S::Proxy>>,
    tx: mpsc::Sender<Outgoing>,
    closing: watch::Receiver<bool>,
    nonces: u64,
}

impl<S: ResourceSource> Session<S> {
    fn open(
        shared: Arc<Shared<S>>,
        node: Option<&Node>,
        protocol: Protocol,
        tx: mpsc::Sender<Outgoing>,
    ) -> Result<Session<S>, Status> {
        let node = node.ok_or_else(|| Status::invalid_argument("the first request has no node"))?;
        let proxy = shared
            .source
            .connect(node)
            .map_err(|e| Status::invalid_argument(format!("node {:?} refused: {e}", node.id)))?;
        let id = shared.next_id.fetch_add(1, Ordering::Relaxed);
        let conn = Arc::new(Connection::new(id, node.id.clone(), proxy));
        let closing = shared.connections.closing();
        if !shared.connections.add(conn.clone()) {
            return Err(Status::unavailable("the control plane is shutting down"));
        }
        shared.status.connect(id, node, protocol);
        tracing::info!(node = %node.id, connection = id, ?protocol, "proxy connected");
        Ok(Session {
            shared,
            conn,
            tx,
            closing,
            nonces: 0,
        })
    }

    fn id(&self) -> u64 {
        self.conn.id
    }

    fn node_id(&self) -> &str {
        &self.conn.node_id
    }

    fn status(&self) -> &StatusRegistry {
        &self.shared.status
    }

    /// The resources of `ty` the proxy wants; a source may return more than asked
    /// for explicitly, and those are dropped here.
    fn generate(&self, ty: ResourceType, sub: &Subscription) -> (String, Vec<NamedResource>) {
        let mut generated = self.shared.source.generate(&self.conn.proxy, ty, sub);
        if !sub.wildcard {
            generated.resources.retain(|r| sub.names.contains(r.name()));
        }
        (generated.version, generated.resources)
    }

    /// Shares `subscription`'s names with other streams that subscribe to the same.
    fn intern(&self, subscription: &mut Subscription) {
        self.shared.names.intern(&mut subscription.names);
    }

    /// A nonce unique within the stream.
    fn next_nonce(&mut self) -> String {
        self.nonces += 1;
        self.nonces.to_string()
    }

    /// Hands `message` to the proxy's stream, waiting as long as the proxy takes to
    /// read, unless the server closes meanwhile.
    async fn send(&mut self, message: Framed) -> Result<(), Ended> {
        tokio::select! {
            sent = self.tx.send(Ok(message)) => sent.map_err(|_| Ended),
            () = closed(&mut self.closing) => Err(Ended),
        }
    }

    /// Tells the proxy the server is going, if its outbox has room.
    fn goodbye(&self) {
        let _ = self.tx.try_send(Err(Status::unavailable(
            "the control plane is shutting down",
        )));
    }
}

impl<S: ResourceSource> Drop for Session<S> {
    fn drop(&mut self) {
        self.shared.connections.remove(self.conn.id);
        self.shared.status.disconnect(self.conn.id);
        tracing::info!(node = %self.conn.node_id, connection = self.conn.id, "proxy disconnected");
    }
}
