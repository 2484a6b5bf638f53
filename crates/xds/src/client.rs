//! An ADS client: what a proxy (ours, or a test) uses to take config from any xDS
//! server, in either protocol variant.
//!
//! It sends the node and its subscriptions, hands every response to an `apply`
//! callback that validates (and applies) the complete new set of that type, ACKs what
//! it accepts and NACKs what it rejects with the callback's reason. The last accepted
//! set keeps serving through rejections and disconnections; the client reconnects with
//! jittered exponential backoff and resumes where it was (last versions, held
//! resources).

mod delta;
mod sotw;
mod stream;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use tonic::transport::{Channel, Endpoint};

use crate::pb::envoy::config::core::v3::Node;
use crate::pb::google::protobuf::Any;
use crate::pb::google::rpc;
use crate::source::Subscription;
use crate::status::Protocol;
use crate::tls::ClientTls;
use crate::types::ResourceType;

/// Where to connect, as whom, and what to ask for.
#[derive(Debug, Clone)]
pub struct ClientOptions {
    /// The server's URI (`http://127.0.0.1:15010`, or `https://127.0.0.1:15012` with
    /// `tls`).
    pub endpoint: String,
    /// TLS to the server, verified against these roots and name; plaintext when `None`.
    pub tls: Option<ClientTls>,
    /// Who the client is; sent in the first request of every stream.
    pub node: Node,
    /// Which protocol variant to speak.
    pub protocol: Protocol,
    /// The initial subscriptions; [`AdsClient::subscribe`] changes them later.
    pub subscriptions: BTreeMap<ResourceType, Subscription>,
    /// How long to wait between reconnection attempts.
    pub backoff: Backoff,
}

impl ClientOptions {
    /// A State-of-the-World client for `endpoint` that subscribes to all clusters and
    /// listeners, as Envoy starts.
    pub fn new(endpoint: impl Into<String>, node: Node) -> ClientOptions {
        ClientOptions {
            endpoint: endpoint.into(),
            tls: None,
            node,
            protocol: Protocol::StateOfTheWorld,
            subscriptions: [
                (ResourceType::Cluster, Subscription::wildcard()),
                (ResourceType::Listener, Subscription::wildcard()),
            ]
            .into(),
            backoff: Backoff::default(),
        }
    }
}

/// Jittered exponential backoff between reconnection attempts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The first delay.
    pub initial: Duration,
    /// The longest delay.
    pub max: Duration,
}

impl Default for Backoff {
    /// Envoy's defaults for its management server stream: 500 ms doubling up to 30 s.
    fn default() -> Self {
        Backoff {
            initial: Duration::from_millis(500),
            max: Duration::from_secs(30),
        }
    }
}

impl Backoff {
    /// The delay before attempt `attempt` (0-based): the doubled delay capped at `max`,
    /// scaled by a random factor in [0.5, 1) so that many proxies do not reconnect
    /// in step after a control plane restart.
    pub fn delay(&self, attempt: u32) -> Duration {
        let doubled = self.initial.saturating_mul(1 << attempt.min(20));
        doubled.min(self.max).mul_f64(0.5 + fastrand::f64() / 2.0)
    }
}

/// What the client holds: the last accepted resources of every type.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClientState {
    /// True while a stream is open.
    pub connected: bool,
    /// How many streams have been opened so far (reconnections included).
    pub streams: u64,
    /// Per type, what was accepted.
    pub types: BTreeMap<ResourceType, TypeState>,
}

impl ClientState {
    /// The accepted version of `ty`, if any response of it was accepted.
    pub fn version(&self, ty: ResourceType) -> Option<&str> {
        self.types.get(&ty).and_then(|t| t.version.as_deref())
    }
}

/// The client's view of one type.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TypeState {
    /// The version of the last accepted response.
    pub version: Option<String>,
    /// The accepted resources by name.
    pub resources: Arc<BTreeMap<String, Any>>,
    /// The reason the last rejected response was rejected.
    pub last_nack: Option<String>,
    /// How many responses were rejected.
    pub nacks: u64,
}

/// Why a stream ended.
#[derive(Debug, thiserror::Error)]
enum StreamError {
    #[error("invalid endpoint {endpoint:?}: {source}")]
    Endpoint {
        endpoint: String,
        source: tonic::transport::Error,
    },
    #[error("cannot connect to {endpoint}: {}", causes(source))]
    Connect {
        endpoint: String,
        source: tonic::transport::Error,
    },
    #[error("stream failed: {0}")]
    Status(#[from] tonic::Status),
    #[error("the server closed the stream")]
    Closed,
}

/// A running client; dropping it stops it.
#[derive(Debug)]
pub struct AdsClient {
    commands: mpsc::UnboundedSender<Command>,
    state: watch::Receiver<Arc<ClientState>>,
    task: JoinHandle<()>,
}

/// A change asked of the running client.
#[derive(Debug)]
enum Command {
    Subscribe(ResourceType, Subscription),
}

impl AdsClient {
    /// Starts the client in the background. `apply` gets each type's complete new set
    /// of resources; `Ok` accepts (ACK), `Err(reason)` rejects (NACK) and keeps the
    /// last accepted set.
    pub fn start<F>(options: ClientOptions, apply: F) -> AdsClient
    where
        F: FnMut(ResourceType, &BTreeMap<String, Any>) -> Result<(), String> + Send + 'static,
    {
        let (commands, commands_rx) = mpsc::unbounded_channel();
        let (state_tx, state) = watch::channel(Arc::new(ClientState::default()));
        let worker = Worker {
            subscriptions: options.subscriptions.clone(),
            options,
            apply: Box::new(apply),
            commands: commands_rx,
            state: state_tx,
            held: BTreeMap::new(),
            connected: false,
            streams: 0,
        };
        let task = tokio::spawn(worker.run());
        AdsClient {
            commands,
            state,
            task,
        }
    }

    /// Replaces the subscription of `ty` (the names of the endpoints or route configs
    /// a new set of clusters or listeners refers to).
    pub fn subscribe(&self, ty: ResourceType, subscription: Subscription) {
        // The worker lives as long as this handle.
        let _ = self.commands.send(Command::Subscribe(ty, subscription));
    }

    /// What the client holds now.
    pub fn state(&self) -> Arc<ClientState> {
        self.state.borrow().clone()
    }

    /// Waits until `done` holds for the client's state and returns that state;
    /// callers bound the wait with `tokio::time::timeout`.
    pub async fn wait_until(&self, mut done: impl FnMut(&ClientState) -> bool) -> Arc<ClientState> {
        let mut state = self.state.clone();
        match state.wait_for(|s| done(s)).await {
            Ok(s) => s.clone(),
            // The worker is gone (it panicked): return what it left.
            Err(_) => self.state(),
        }
    }
}

impl Drop for AdsClient {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The callback that validates and applies one type's new set.
type Apply = Box<dyn FnMut(ResourceType, &BTreeMap<String, Any>) -> Result<(), String> + Send>;

/// The client's task and everything it keeps across streams.
struct Worker {
    options: ClientOptions,
    apply: Apply,
    commands: mpsc::UnboundedReceiver<Command>,
    state: watch::Sender<Arc<ClientState>>,
    subscriptions: BTreeMap<ResourceType, Subscription>,
    held: BTreeMap<ResourceType, Held>,
    connected: bool,
    streams: u64,
}

/// What the client holds of one type.
#[derive(Debug, Default)]
struct Held {
    version: Option<String>,
    resources: Arc<BTreeMap<String, Any>>,
    /// Per-resource versions (Delta), for `initial_resource_versions` on reconnect.
    versions: BTreeMap<String, String>,
    /// The last nonce received on the current stream (SotW requests echo it).
    nonce: String,
    last_nack: Option<String>,
    nacks: u64,
}

/// What one stream achieved before it ended.
struct StreamEnd {
    /// True when at least one response arrived: the server was healthy, so the next
    /// attempt starts from the shortest delay.
    received: bool,
    /// None when the client is shutting down.
    error: Option<StreamError>,
}

impl Worker {
    async fn run(mut self) {
        let mut attempt = 0;
        loop {
            let end = match self.options.protocol {
                Protocol::StateOfTheWorld => stream::run(&mut self, sotw::Sotw).await,
                Protocol::Delta => stream::run(&mut self, delta::Delta::default()).await,
            };
            self.set_connected(false);
            let Some(error) = end.error else {
                return;
            };
            if end.received {
                attempt = 0;
            }
            let delay = self.options.backoff.delay(attempt);
            attempt = attempt.saturating_add(1);
            tracing::warn!(endpoint = %self.options.endpoint, %error, ?delay, "xDS stream ended; reconnecting");
            let wake = tokio::time::sleep(delay);
            tokio::pin!(wake);
            loop {
                tokio::select! {
                    () = &mut wake => break,
                    command = self.commands.recv() => match command {
                        Some(Command::Subscribe(ty, sub)) => {
                            self.set_subscription(ty, sub);
                        }
                        None => return,
                    },
                }
            }
        }
    }

    /// Records a new subscription and drops held resources it no longer covers;
    /// returns the old one.
    fn set_subscription(&mut self, ty: ResourceType, sub: Subscription) -> Subscription {
        if let Some(held) = self.held.get_mut(&ty)
            && held.resources.keys().any(|name| !sub.wants(name))
        {
            let kept = held
                .resources
                .iter()
                .filter(|(name, _)| sub.wants(name))
                .map(|(n, r)| (n.clone(), r.clone()))
                .collect();
            held.resources = Arc::new(kept);
            held.versions.retain(|name, _| sub.wants(name));
        }
        let old = self.subscriptions.insert(ty, sub).unwrap_or_default();
        self.publish();
        old
    }

    /// Validates a candidate set through `apply`; on success it becomes the held set.
    fn offer(
        &mut self,
        ty: ResourceType,
        version: &str,
        candidate: BTreeMap<String, Any>,
        versions: BTreeMap<String, String>,
    ) -> Result<(), String> {
        let outcome = (self.apply)(ty, &candidate);
        let held = self.held.entry(ty).or_default();
        match &outcome {
            Ok(()) => {
                held.version = Some(version.to_string());
                held.resources = Arc::new(candidate);
                held.versions = versions;
            }
            Err(message) => {
                tracing::warn!(%ty, version, %message, "config rejected");
                held.last_nack = Some(message.clone());
                held.nacks += 1;
            }
        }
        self.publish();
        outcome
    }

    fn stream_opened(&mut self) {
        self.streams += 1;
        for held in self.held.values_mut() {
            held.nonce.clear();
        }
        self.set_connected(true);
    }

    fn set_connected(&mut self, connected: bool) {
        self.connected = connected;
        self.publish();
    }

    fn publish(&self) {
        let types = self
            .held
            .iter()
            .map(|(ty, held)| {
                let state = TypeState {
                    version: held.version.clone(),
                    resources: held.resources.clone(),
                    last_nack: held.last_nack.clone(),
                    nacks: held.nacks,
                };
                (*ty, state)
            })
            .collect();
        self.state.send_replace(Arc::new(ClientState {
            connected: self.connected,
            streams: self.streams,
            types,
        }));
    }
}

/// Opens a channel to the server, over TLS when `tls` says so.
async fn connect(endpoint: &str, tls: Option<&ClientTls>) -> Result<Channel, StreamError> {
    let target = Endpoint::from_shared(endpoint.to_string())
        .map_err(|source| StreamError::Endpoint {
            endpoint: endpoint.to_string(),
            source,
        })?
        .connect_timeout(Duration::from_secs(5))
        // A control plane that vanished without closing the connection is found out
        // here.
        .http2_keep_alive_interval(Duration::from_secs(30))
        .keep_alive_timeout(Duration::from_secs(10));
    match tls {
        Some(tls) => tls.connect(target).await,
        None => target.connect().await,
    }
    .map_err(|source| StreamError::Connect {
        endpoint: endpoint.to_string(),
        source,
    })
}

/// An error and its causes, `: `-separated: tonic's transport error alone says only
/// "transport error", its sources say what failed (refused, a certificate not trusted…).
pub fn causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        // An I/O error shows the error it wraps and names it as its source too.
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// The `error_detail` of a NACK.
fn rejection(message: String) -> rpc::Status {
    rpc::Status {
        // INVALID_ARGUMENT, as Envoy sends.
        code: 3,
        message,
        details: Vec::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_up_to_the_cap_with_jitter() {
        let b = Backoff {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(1),
        };
        for _ in 0..100 {
            let first = b.delay(0);
            assert!(first >= Duration::from_millis(50) && first < Duration::from_millis(100));
            let third = b.delay(2);
            assert!(third >= Duration::from_millis(200) && third < Duration::from_millis(400));
            let late = b.delay(40);
            assert!(late >= Duration::from_millis(500) && late < Duration::from_secs(1));
        }
    }
}
