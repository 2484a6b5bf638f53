//! How the control plane tells connected proxies that their config changed.
//!
//! A push marks the affected connections' types as pending and wakes their tasks;
//! it never waits on a connection. Each connection regenerates its pending types when
//! it is next free, so pushes that arrive while it is busy (or while its proxy is slow
//! to read) coalesce into one, and a stalled proxy holds up nobody else.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use tokio::sync::{Notify, mpsc, watch};
use tokio::time::Instant;

use crate::types::TypeSet;

/// Which proxies a change can affect.
pub enum Affected<P> {
    /// Every connected proxy.
    All,
    /// The proxies with these node ids.
    Nodes(BTreeSet<String>),
    /// The proxies for which the predicate holds (given what the source made of them).
    Matching(Arc<dyn Fn(&P) -> bool + Send + Sync>),
    /// The proxies any of these affect (what merged requests become).
    AnyOf(Vec<Affected<P>>),
}

impl<P> Affected<P> {
    /// The proxies affected by either change.
    pub fn union(self, other: Affected<P>) -> Affected<P> {
        match (self, other) {
            (Affected::All, _) | (_, Affected::All) => Affected::All,
            (Affected::Nodes(mut a), Affected::Nodes(b)) => {
                a.extend(b);
                Affected::Nodes(a)
            }
            (Affected::AnyOf(mut list), other) | (other, Affected::AnyOf(mut list)) => {
                list.push(other);
                Affected::AnyOf(list)
            }
            (a, b) => Affected::AnyOf(vec![a, b]),
        }
    }

    /// True when the proxy with this node id (and this source's view of it) is affected.
    pub fn matches(&self, node_id: &str, proxy: &P) -> bool {
        match self {
            Affected::All => true,
            Affected::Nodes(ids) => ids.contains(node_id),
            Affected::Matching(f) => f(proxy),
            Affected::AnyOf(list) => list.iter().any(|a| a.matches(node_id, proxy)),
        }
    }
}

impl<P> Clone for Affected<P> {
    fn clone(&self) -> Self {
        match self {
            Affected::All => Affected::All,
            Affected::Nodes(ids) => Affected::Nodes(ids.clone()),
            Affected::Matching(f) => Affected::Matching(f.clone()),
            Affected::AnyOf(list) => Affected::AnyOf(list.clone()),
        }
    }
}

impl<P> fmt::Debug for Affected<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Affected::All => f.write_str("All"),
            Affected::Nodes(ids) => f.debug_tuple("Nodes").field(ids).finish(),
            Affected::Matching(_) => f.write_str("Matching(..)"),
            Affected::AnyOf(list) => f.debug_tuple("AnyOf").field(list).finish(),
        }
    }
}

/// A change to push: which proxies it can affect and which types they must regenerate.
#[derive(Debug, Clone)]
pub struct PushRequest<P> {
    /// The proxies to wake.
    pub affected: Affected<P>,
    /// The types they regenerate. Clusters imply endpoints and listeners imply routes,
    /// since Envoy re-warms a changed cluster or listener and waits for those.
    pub types: TypeSet,
}

impl<P> PushRequest<P> {
    /// Every proxy regenerates `types`.
    pub fn all(types: TypeSet) -> PushRequest<P> {
        PushRequest {
            affected: Affected::All,
            types,
        }
    }

    /// One request that does the work of both.
    ///
    /// The merge may regenerate more than either asked for (a proxy affected by one
    /// request regenerates the other's types too), never less.
    pub fn merge(self, other: PushRequest<P>) -> PushRequest<P> {
        PushRequest {
            affected: self.affected.union(other.affected),
            types: self.types.union(other.types),
        }
    }
}

/// Wakes connections; cheap to clone, never blocks on a connection.
pub struct Pusher<P> {
    connections: Arc<Connections<P>>,
}

impl<P> Clone for Pusher<P> {
    fn clone(&self) -> Self {
        Pusher {
            connections: self.connections.clone(),
        }
    }
}

impl<P> Pusher<P> {
    pub(crate) fn new(connections: Arc<Connections<P>>) -> Pusher<P> {
        Pusher { connections }
    }

    /// Marks `request.types` pending on every affected connection and wakes them;
    /// returns how many connections were woken.
    pub fn push(&self, request: &PushRequest<P>) -> usize {
        if request.types.is_empty() {
            return 0;
        }
        let types = with_dependents(request.types);
        let mut woken = 0;
        for conn in self.connections.all() {
            if request.affected.matches(&conn.node_id, &conn.proxy) {
                conn.mark(types);
                woken += 1;
            }
        }
        woken
    }
}

/// CDS pushes carry EDS and LDS pushes carry RDS: see [`PushRequest::types`].
fn with_dependents(types: TypeSet) -> TypeSet {
    use crate::types::ResourceType::{Cluster, Endpoint, Listener, Route};
    let mut out = types;
    if types.contains(Cluster) {
        out = out.with(Endpoint);
    }
    if types.contains(Listener) {
        out = out.with(Route);
    }
    out
}

/// The open connections, shared by the server (which adds and removes them) and every
/// [`Pusher`].
pub(crate) struct Connections<P> {
    open: RwLock<HashMap<u64, Arc<Connection<P>>>>,
    /// Set once when the server shuts down; every stream watches it.
    closed: watch::Sender<bool>,
}

impl<P> Default for Connections<P> {
    fn default() -> Self {
        Connections {
            open: RwLock::default(),
            closed: watch::channel(false).0,
        }
    }
}

impl<P> Connections<P> {
    /// Adds a connection, unless the server is shutting down.
    pub(crate) fn add(&self, conn: Arc<Connection<P>>) -> bool {
        let mut open = self.open.write().unwrap_or_else(|p| p.into_inner());
        if *self.closed.borrow() {
            return false;
        }
        open.insert(conn.id, conn);
        true
    }

    pub(crate) fn remove(&self, id: u64) {
        let mut open = self.open.write().unwrap_or_else(|p| p.into_inner());
        open.remove(&id);
    }

    /// Refuses new connections and tells the open ones to end.
    pub(crate) fn close_all(&self) {
        // Under the lock, so that no stream is added after it was told.
        let _open = self.open.write().unwrap_or_else(|p| p.into_inner());
        self.closed.send_replace(true);
    }

    /// Resolves once the server is shutting down.
    pub(crate) fn closing(&self) -> watch::Receiver<bool> {
        self.closed.subscribe()
    }

    fn all(&self) -> Vec<Arc<Connection<P>>> {
        let open = self.open.read().unwrap_or_else(|p| p.into_inner());
        open.values().cloned().collect()
    }
}

/// One stream's mailbox: the types it must regenerate.
pub(crate) struct Connection<P> {
    pub(crate) id: u64,
    pub(crate) node_id: String,
    pub(crate) proxy: P,
    pending: Mutex<TypeSet>,
    wake: Notify,
}

impl<P> Connection<P> {
    pub(crate) fn new(id: u64, node_id: String, proxy: P) -> Connection<P> {
        Connection {
            id,
            node_id,
            proxy,
            pending: Mutex::default(),
            wake: Notify::new(),
        }
    }

    /// Waits until some types are pending and takes them. Cancel-safe: the types are
    /// taken only in the poll that returns them.
    pub(crate) async fn next(&self) -> TypeSet {
        loop {
            let pending = std::mem::take(&mut *self.lock());
            if !pending.is_empty() {
                return pending;
            }
            self.wake.notified().await;
        }
    }

    fn mark(&self, types: TypeSet) {
        {
            let mut pending = self.lock();
            *pending = pending.union(types);
        }
        // Stores a permit if the task is busy, so the wake is not lost.
        self.wake.notify_one();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, TypeSet> {
        self.pending.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// How long pushes wait for more changes before going out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Debounce {
    /// Quiet time after the last change (Istio's `PILOT_DEBOUNCE_AFTER`, 100 ms).
    pub quiet: Duration,
    /// The longest a change waits while others keep arriving (`PILOT_DEBOUNCE_MAX`, 10 s).
    pub max_delay: Duration,
}

impl Default for Debounce {
    fn default() -> Self {
        Debounce {
            quiet: Duration::from_millis(100),
            max_delay: Duration::from_secs(10),
        }
    }
}

/// Coalesces bursts of push requests into one; requesting never blocks.
pub struct Debouncer<P> {
    requests: mpsc::UnboundedSender<PushRequest<P>>,
}

impl<P> Clone for Debouncer<P> {
    fn clone(&self) -> Self {
        Debouncer {
            requests: self.requests.clone(),
        }
    }
}

impl<P: Send + 'static> Debouncer<P> {
    /// Starts a task that hands each merged burst to `sink` (typically
    /// `move |r| pusher.push(&r)`); it ends once every `Debouncer` clone is dropped,
    /// after handing over what it holds.
    pub fn spawn(
        debounce: Debounce,
        mut sink: impl FnMut(PushRequest<P>) + Send + 'static,
    ) -> Debouncer<P> {
        let (requests, mut rx) = mpsc::unbounded_channel::<PushRequest<P>>();
        tokio::spawn(async move {
            while let Some(first) = rx.recv().await {
                let started = Instant::now();
                let mut merged = first;
                let mut last = started;
                let ended = loop {
                    let deadline = (last + debounce.quiet).min(started + debounce.max_delay);
                    tokio::select! {
                        next = rx.recv() => match next {
                            Some(next) => {
                                merged = merged.merge(next);
                                last = Instant::now();
                            }
                            None => break true,
                        },
                        () = tokio::time::sleep_until(deadline) => break false,
                    }
                };
                sink(merged);
                if ended {
                    return;
                }
            }
        });
        Debouncer { requests }
    }

    /// Queues a change; it goes out once changes have been quiet for a while.
    pub fn request(&self, request: PushRequest<P>) {
        // The task only ends when every sender is gone, and this is one.
        let _ = self.requests.send(request);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::types::ResourceType;

    fn nodes(ids: &[&str]) -> Affected<String> {
        Affected::Nodes(ids.iter().map(|s| s.to_string()).collect())
    }

    #[test]
    fn unions_of_node_sets_stay_node_sets() {
        let a = nodes(&["a"]).union(nodes(&["b"]));
        assert!(matches!(&a, Affected::Nodes(ids) if ids.len() == 2));
        assert!(matches!(a.union(Affected::All), Affected::All));
    }

    #[test]
    fn unions_with_predicates_match_either() {
        let ns: Affected<String> = Affected::Matching(Arc::new(|p: &String| p == "default"));
        let both = ns.union(nodes(&["a"]));
        assert!(both.matches("x", &"default".to_string()));
        assert!(both.matches("a", &"other".to_string()));
        assert!(!both.matches("b", &"other".to_string()));
    }

    #[test]
    fn clusters_bring_endpoints_and_listeners_bring_routes() {
        let types = with_dependents(TypeSet::of([ResourceType::Cluster, ResourceType::Listener]));
        assert_eq!(types.iter().count(), 4);
        assert_eq!(
            with_dependents(ResourceType::Endpoint.into()),
            ResourceType::Endpoint.into()
        );
    }

    #[tokio::test(start_paused = true)]
    async fn bursts_coalesce_into_one_push() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let debouncer = Debouncer::<String>::spawn(Debounce::default(), move |r| {
            tx.send(r).unwrap();
        });
        debouncer.request(PushRequest {
            affected: nodes(&["a"]),
            types: ResourceType::Cluster.into(),
        });
        debouncer.request(PushRequest {
            affected: nodes(&["b"]),
            types: ResourceType::Listener.into(),
        });
        let merged = rx.recv().await.unwrap();
        assert!(matches!(&merged.affected, Affected::Nodes(ids) if ids.len() == 2));
        assert_eq!(
            merged.types,
            TypeSet::of([ResourceType::Cluster, ResourceType::Listener])
        );
        drop(debouncer);
        assert!(rx.recv().await.is_none());
    }

    #[tokio::test(start_paused = true)]
    async fn a_steady_stream_of_changes_still_goes_out_after_the_max_delay() {
        let (tx, mut rx) = mpsc::unbounded_channel();
        let debounce = Debounce::default();
        let debouncer = Debouncer::<String>::spawn(debounce, move |r| {
            tx.send(r).unwrap();
        });
        let start = Instant::now();
        let pushed = loop {
            debouncer.request(PushRequest::all(ResourceType::Endpoint.into()));
            // Paused time: an expired wait only moves the clock forward.
            if let Ok(r) = tokio::time::timeout(debounce.quiet / 2, rx.recv()).await {
                break r.unwrap();
            }
        };
        assert!(matches!(pushed.affected, Affected::All));
        assert!(start.elapsed() >= debounce.max_delay);
        assert!(start.elapsed() < debounce.max_delay + debounce.quiet);
    }
}
