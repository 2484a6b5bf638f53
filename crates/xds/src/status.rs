//! Who is connected and how far each proxy got, per type: the version and nonce sent,
//! the version acked, the last NACK. It is what `proxy-status` and `/debug/syncz` show.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::SystemTime;

use tokio::sync::watch;

use crate::pb::envoy::config::core::v3::Node;
use crate::source::Subscription;
use crate::types::ResourceType;

/// Which variant of the xDS protocol a stream speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// `StreamAggregatedResources`: every response is the whole state of a type.
    StateOfTheWorld,
    /// `DeltaAggregatedResources`: responses carry what changed and what was removed.
    Delta,
}

/// One connected proxy.
#[derive(Debug, Clone, PartialEq)]
pub struct ProxyStatus {
    /// The server's id for this stream; a reconnecting proxy gets a new one.
    pub connection_id: u64,
    /// The node id the proxy sent.
    pub node_id: String,
    /// The whole node (metadata, locality, user agent) from the first request.
    pub node: Node,
    /// The stream's protocol variant.
    pub protocol: Protocol,
    /// When the stream opened.
    pub connected_at: SystemTime,
    /// Per requested type, how far the proxy got.
    pub types: BTreeMap<ResourceType, TypeStatus>,
}

/// One proxy's progress on one type.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct TypeStatus {
    /// What the proxy asked for.
    pub subscription: Subscription,
    /// The version of the last response sent.
    pub version_sent: Option<String>,
    /// The nonce of the last response sent.
    pub nonce_sent: Option<String>,
    /// When the last response was sent.
    pub sent_at: Option<SystemTime>,
    /// How many resources the last response carried.
    pub resources_sent: usize,
    /// The last version the proxy accepted.
    pub version_acked: Option<String>,
    /// The nonce of the last response the proxy accepted.
    pub nonce_acked: Option<String>,
    /// When the proxy last accepted a response.
    pub acked_at: Option<SystemTime>,
    /// The last response the proxy rejected, if any ever was.
    pub last_nack: Option<Nack>,
}

impl TypeStatus {
    /// True when the proxy has accepted the last response sent (Istio's `SYNCED`).
    pub fn is_synced(&self) -> bool {
        self.nonce_sent.is_some() && self.nonce_sent == self.nonce_acked
    }
}

/// A rejected response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nack {
    /// The version that was rejected.
    pub version: String,
    /// The nonce of the rejected response.
    pub nonce: String,
    /// The proxy's reason.
    pub message: String,
    /// When the rejection arrived.
    pub at: SystemTime,
}

/// The shared registry of connected proxies; cheap to clone.
#[derive(Debug, Clone)]
pub struct StatusRegistry {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    proxies: Mutex<BTreeMap<u64, ProxyStatus>>,
    /// Responses sent and rejected since start, by type (index in `ResourceType::ALL`).
    sent_total: [AtomicU64; ResourceType::ALL.len()],
    nacked_total: [AtomicU64; ResourceType::ALL.len()],
    /// Bumped on every change so that waiters wake.
    changes: watch::Sender<u64>,
}

impl Default for StatusRegistry {
    fn default() -> Self {
        StatusRegistry {
            inner: Arc::new(Inner {
                proxies: Mutex::default(),
                sent_total: Default::default(),
                nacked_total: Default::default(),
                changes: watch::channel(0).0,
            }),
        }
    }
}

/// Counts since the server started, for metrics.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Totals {
    /// Responses sent, by type.
    pub sent: BTreeMap<ResourceType, u64>,
    /// Responses rejected (NACKed), by type.
    pub nacked: BTreeMap<ResourceType, u64>,
}

impl StatusRegistry {
    /// Responses sent and rejected since start, by type.
    pub fn totals(&self) -> Totals {
        let read = |counters: &[AtomicU64]| {
            ResourceType::ALL
                .iter()
                .zip(counters)
                .map(|(ty, n)| (*ty, n.load(Ordering::Relaxed)))
                .collect()
        };
        Totals {
            sent: read(&self.inner.sent_total),
            nacked: read(&self.inner.nacked_total),
        }
    }

    /// How many proxies are connected.
    pub fn connected(&self) -> usize {
        self.lock().len()
    }

    /// Every connected proxy, oldest connection first.
    pub fn snapshot(&self) -> Vec<ProxyStatus> {
        self.lock().values().cloned().collect()
    }

    /// The newest connection of the node with this id.
    pub fn proxy(&self, node_id: &str) -> Option<ProxyStatus> {
        self.lock()
            .values()
            .rev()
            .find(|p| p.node_id == node_id)
            .cloned()
    }

    /// Waits until `done` holds for the connected proxies and returns them; callers
    /// bound the wait with `tokio::time::timeout`.
    pub async fn wait_until(
        &self,
        mut done: impl FnMut(&[ProxyStatus]) -> bool,
    ) -> Vec<ProxyStatus> {
        let mut changes = self.inner.changes.subscribe();
        loop {
            changes.borrow_and_update();
            let now = self.snapshot();
            if done(&now) {
                return now;
            }
            // The registry holds the sender, so this only fails if it is gone too.
            if changes.changed().await.is_err() {
                return now;
            }
        }
    }

    pub(crate) fn connect(&self, connection_id: u64, node: &Node, protocol: Protocol) {
        let status = ProxyStatus {
            connection_id,
            node_id: node.id.clone(),
            node: node.clone(),
            protocol,
            connected_at: SystemTime::now(),
            types: BTreeMap::new(),
        };
        self.change(|proxies| {
            proxies.insert(connection_id, status);
        });
    }

    pub(crate) fn disconnect(&self, connection_id: u64) {
        self.change(|proxies| {
            proxies.remove(&connection_id);
        });
    }

    pub(crate) fn subscribed(&self, connection_id: u64, ty: ResourceType, sub: &Subscription) {
        self.update(connection_id, ty, |t| t.subscription = sub.clone());
    }

    pub(crate) fn sent(
        &self,
        connection_id: u64,
        ty: ResourceType,
        version: &str,
        nonce: &str,
        resources: usize,
    ) {
        self.inner.sent_total[ty.index()].fetch_add(1, Ordering::Relaxed);
        self.update(connection_id, ty, |t| {
            t.version_sent = Some(version.to_string());
            t.nonce_sent = Some(nonce.to_string());
            t.sent_at = Some(SystemTime::now());
            t.resources_sent = resources;
        });
    }

    pub(crate) fn acked(&self, connection_id: u64, ty: ResourceType, version: &str, nonce: &str) {
        self.update(connection_id, ty, |t| {
            t.version_acked = Some(version.to_string());
            t.nonce_acked = Some(nonce.to_string());
            t.acked_at = Some(SystemTime::now());
        });
    }

    pub(crate) fn nacked(
        &self,
        connection_id: u64,
        ty: ResourceType,
        version: &str,
        nonce: &str,
        message: &str,
    ) {
        self.inner.nacked_total[ty.index()].fetch_add(1, Ordering::Relaxed);
        self.update(connection_id, ty, |t| {
            t.last_nack = Some(Nack {
                version: version.to_string(),
                nonce: nonce.to_string(),
                message: message.to_string(),
                at: SystemTime::now(),
            });
        });
    }

    fn update(&self, connection_id: u64, ty: ResourceType, f: impl FnOnce(&mut TypeStatus)) {
        self.change(|proxies| {
            if let Some(p) = proxies.get_mut(&connection_id) {
                f(p.types.entry(ty).or_default());
            }
        });
    }

    fn change(&self, f: impl FnOnce(&mut BTreeMap<u64, ProxyStatus>)) {
        f(&mut self.lock());
        self.inner.changes.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<u64, ProxyStatus>> {
        // A panic while holding the lock leaves plain data behind; keep serving it.
        self.inner
            .proxies
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// How far one proxy got on one type, as `proxy-status` names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum SyncState {
    /// Nothing of this type was sent (not subscribed, or nothing to send yet).
    NotSent,
    /// The last response sent was accepted.
    Synced,
    /// The last response sent was rejected.
    Nacked,
    /// A response was sent and not answered yet.
    Stale,
}

impl SyncState {
    /// The words istioctl prints (`SYNCED`, `NOT SENT`…).
    pub fn as_str(self) -> &'static str {
        match self {
            SyncState::NotSent => "NOT SENT",
            SyncState::Synced => "SYNCED",
            SyncState::Nacked => "NACKED",
            SyncState::Stale => "STALE",
        }
    }
}

/// One type's progress as served at `/debug/syncz` (JSON) and read by `proxy-status`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct TypeSync {
    /// Summary state.
    pub state: SyncState,
    /// The version of the last response sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_sent: Option<String>,
    /// The last version accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version_acked: Option<String>,
    /// Resources in the last response.
    pub resources_sent: usize,
    /// The proxy's reason for the last rejection, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_nack: Option<String>,
}

/// One proxy's progress as served at `/debug/syncz` (JSON) and read by `proxy-status`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct ProxySync {
    /// The node id.
    pub proxy: String,
    /// The node's cluster (`CLUSTER_ID` metadata), or empty.
    #[serde(default)]
    pub cluster_id: String,
    /// The proxy's version (`ISTIO_VERSION` metadata, else Envoy's build version), or empty.
    #[serde(default)]
    pub version: String,
    /// The control plane instance serving it.
    #[serde(default)]
    pub control_plane: String,
    /// Progress per type, by short name (`CDS`, `LDS`…).
    pub types: BTreeMap<String, TypeSync>,
}

impl TypeStatus {
    /// Where this type stands.
    pub fn state(&self) -> SyncState {
        if self.nonce_sent.is_none() {
            SyncState::NotSent
        } else if self.is_synced() {
            SyncState::Synced
        } else if self
            .last_nack
            .as_ref()
            .is_some_and(|n| Some(&n.nonce) == self.nonce_sent.as_ref())
        {
            SyncState::Nacked
        } else {
            SyncState::Stale
        }
    }

    /// The JSON view of this type's progress.
    pub fn to_sync(&self) -> TypeSync {
        TypeSync {
            state: self.state(),
            version_sent: self.version_sent.clone(),
            version_acked: self.version_acked.clone(),
            resources_sent: self.resources_sent,
            last_nack: self.last_nack.as_ref().map(|n| n.message.clone()),
        }
    }
}

impl ProxyStatus {
    /// The JSON view of this proxy's progress, served by `control_plane`.
    pub fn to_sync(&self, control_plane: &str) -> ProxySync {
        let metadata = |key: &str| -> String {
            use crate::pb::google::protobuf::value::Kind;
            self.node
                .metadata
                .as_ref()
                .and_then(|m| m.fields.get(key))
                .and_then(|v| match &v.kind {
                    Some(Kind::StringValue(s)) => Some(s.clone()),
                    _ => None,
                })
                .unwrap_or_default()
        };
        let mut version = metadata("ISTIO_VERSION");
        if version.is_empty() {
            version = envoy_version(&self.node);
        }
        ProxySync {
            proxy: self.node_id.clone(),
            cluster_id: metadata("CLUSTER_ID"),
            version,
            control_plane: control_plane.to_owned(),
            types: self
                .types
                .iter()
                .map(|(ty, status)| (ty.short_name().to_owned(), status.to_sync()))
                .collect(),
        }
    }
}

/// `major.minor.patch` from the node's `user_agent_build_version`, or empty.
fn envoy_version(node: &Node) -> String {
    use crate::pb::envoy::config::core::v3::node::UserAgentVersionType;
    match &node.user_agent_version_type {
        Some(UserAgentVersionType::UserAgentBuildVersion(b)) => b
            .version
            .as_ref()
            .map(|v| format!("{}.{}.{}", v.major_number, v.minor_number, v.patch))
            .unwrap_or_default(),
        Some(UserAgentVersionType::UserAgentVersion(v)) => v.clone(),
        None => String::new(),
    }
}
