//! The listeners' sockets, kept in step with the config: a new listener binds, a
//! changed one keeps its socket and serves its next connections with the new config, a
//! removed one stops accepting.
//!
//! Connections drain as Envoy drains them: each watches the drain of the filter chain
//! that admitted it. When only a listener's filter chains change, a chain whose
//! protobuf is unchanged keeps its connections and a changed or removed one drains
//! them; any other change, and removal, drains every chain of the listener. A drained
//! HTTP connection finishes its requests and closes; a TCP relay closes when the drain
//! time (`--drain-time-s`) is over. A new policy is never bypassed by a kept-alive
//! connection.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use mizzen_xds::ResourceType;
use mizzen_xds::pb::envoy::config::listener::v3::{
    FilterChain as PbFilterChain, Listener as PbListener,
};
use mizzen_xds::pb::google::protobuf::Any;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::{FilterChain, Listener, Snapshot};
use crate::drain::{self, DrainTrigger, DrainWatch};
use crate::{Shared, conn};

/// How long an accept loop pauses after a failed accept (out of file descriptors, say).
const ACCEPT_RETRY: Duration = Duration::from_millis(50);

/// The addresses listeners are bound to, by name (port 0 resolved).
#[derive(Debug, Default)]
pub struct Bound {
    addrs: Mutex<HashMap<String, SocketAddr>>,
    changed: watch::Sender<u64>,
}

impl Bound {
    /// The address the listener `name` accepts on, if it is bound.
    pub fn get(&self, name: &str) -> Option<SocketAddr> {
        self.lock().get(name).copied()
    }

    /// Every bound listener.
    pub fn all(&self) -> HashMap<String, SocketAddr> {
        self.lock().clone()
    }

    /// Waits until `name` is bound, and returns its address.
    pub async fn wait(&self, name: &str) -> SocketAddr {
        let mut changes = self.changed.subscribe();
        loop {
            if let Some(addr) = self.get(name) {
                return addr;
            }
            if changes.changed().await.is_err() {
                std::future::pending::<()>().await;
            }
        }
    }

    fn set(&self, name: &str, addr: Option<SocketAddr>) {
        match addr {
            Some(addr) => self.lock().insert(name.to_owned(), addr),
            None => self.lock().remove(name),
        };
        self.changed.send_modify(|n| *n += 1);
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, SocketAddr>> {
        self.addrs.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A listener with its own socket.
struct Running {
    address: SocketAddr,
    /// What its next connections are served with.
    config: Arc<ArcSwap<Listener>>,
    /// Stops the accept loop.
    drain: DrainTrigger,
}

/// The listeners with sockets, kept in step with the config, and the drains of every
/// listener's filter chains.
pub struct Listeners {
    /// By name; None once the proxy shut down (config may still change, nothing binds).
    running: Mutex<Option<HashMap<String, Running>>>,
    /// The chains' drain triggers by listener name, bound or not (a listener that
    /// receives connections handed over serves them with its own chains).
    chains: Mutex<HashMap<String, Chains>>,
    /// What connections watch, by listener name: read once per connection.
    watches: ArcSwap<HashMap<String, Arc<Watches>>>,
    /// How long a drained chain's connections may finish.
    drain_time: Duration,
}

/// The drains of a listener's filter chains, in order, the default chain's last.
struct Chains {
    listener: Arc<Listener>,
    drains: Vec<(DrainTrigger, DrainWatch)>,
}

/// The drain watches of a listener's filter chains, for the listener as compiled.
struct Watches {
    listener: Arc<Listener>,
    chains: Vec<DrainWatch>,
}

/// A listener whose address cannot be bound.
#[derive(Debug, thiserror::Error)]
#[error("listener {name:?}: cannot bind {address}: {source}")]
pub struct BindError {
    /// The listener's name.
    pub name: String,
    /// Its address.
    pub address: SocketAddr,
    /// Why.
    pub source: std::io::Error,
}

/// Sockets bound for listeners about to be committed, by name.
type NewSockets = HashMap<String, TcpListener>;

impl Listeners {
    /// No listeners yet; drained filter chains' connections get `drain_time`.
    pub fn new(drain_time: Duration) -> Listeners {
        Listeners {
            running: Mutex::new(Some(HashMap::new())),
            chains: Mutex::default(),
            watches: ArcSwap::default(),
            drain_time,
        }
    }

    /// The drain a connection that `listener` (as compiled) admitted by `chain` watches.
    /// One whose listener config was replaced while it was being admitted gets a drain
    /// already over: the config that admitted it is no longer in force.
    pub fn drain_of(&self, listener: &Arc<Listener>, chain: &FilterChain) -> DrainWatch {
        let index = listener
            .chains
            .iter()
            .position(|c| std::ptr::eq(c, chain))
            .unwrap_or(listener.chains.len());
        self.watches
            .load()
            .get(&listener.name)
            .filter(|w| Arc::ptr_eq(&w.listener, listener))
            .and_then(|w| w.chains.get(index).cloned())
            .unwrap_or_else(drain::drained)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<HashMap<String, Running>>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn lock_chains(&self) -> std::sync::MutexGuard<'_, HashMap<String, Chains>> {
        self.chains.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Brings the chains' drains in step with `snapshot`: a listener updated in its
    /// filter chains only keeps the drains (and connections) of its unchanged chains;
    /// every other chain of a changed or removed listener drains.
    fn update_chains(&self, snapshot: &Snapshot) {
        let mut held = self.lock_chains();
        let mut next = HashMap::with_capacity(snapshot.listeners.len());
        for (name, listener) in &snapshot.listeners {
            let chains = match held.remove(name) {
                Some(old) if Arc::ptr_eq(&old.listener, listener) => old,
                old => self.carry_over(old, listener),
            };
            next.insert(name.clone(), chains);
        }
        for (name, removed) in held.drain() {
            tracing::info!(listener = %name, "listener removed; draining its connections");
            self.drain_all(removed.drains);
        }
        let watches = next
            .iter()
            .map(|(name, c)| {
                let watches = Watches {
                    listener: c.listener.clone(),
                    chains: c.drains.iter().map(|(_, w)| w.clone()).collect(),
                };
                (name.clone(), Arc::new(watches))
            })
            .collect();
        self.watches.store(Arc::new(watches));
        *held = next;
    }

    /// The drains of `listener`'s chains: those of `old`'s equal chains when only filter
    /// chains changed, new ones otherwise; `old`'s others drain.
    fn carry_over(&self, old: Option<Chains>, listener: &Arc<Listener>) -> Chains {
        let mut kept: Vec<_> = match old {
            Some(old) if same_but_chains(&old.listener.raw, &listener.raw) => {
                let raws: Vec<_> = raw_chains(&old.listener.raw).map(|c| c.cloned()).collect();
                raws.into_iter().zip(old.drains).map(Some).collect()
            }
            Some(old) => {
                tracing::info!(listener = %listener.name, "listener changed; draining its connections");
                self.drain_all(old.drains);
                Vec::new()
            }
            None => Vec::new(),
        };
        let drains = raw_chains(&listener.raw)
            .map(|raw| {
                kept.iter_mut()
                    .find(|k| k.as_ref().is_some_and(|(r, _)| r.as_ref() == raw))
                    .and_then(Option::take)
                    .map_or_else(drain::channel, |(_, drain)| drain)
            })
            .collect();
        let changed: Vec<_> = kept.into_iter().flatten().map(|(_, d)| d).collect();
        if !changed.is_empty() {
            tracing::info!(listener = %listener.name, chains = changed.len(), "filter chains changed; draining their connections");
            self.drain_all(changed);
        }
        Chains {
            listener: listener.clone(),
            drains,
        }
    }

    fn drain_all(&self, drains: Vec<(DrainTrigger, DrainWatch)>) {
        for (trigger, _) in drains {
            drain_for(trigger, self.drain_time);
        }
    }
}

/// A listener's filter chains as received, in the order of its compiled chains, the
/// default chain last (None when it has none).
fn raw_chains(raw: &PbListener) -> impl Iterator<Item = Option<&PbFilterChain>> {
    raw.filter_chains
        .iter()
        .map(Some)
        .chain(std::iter::once(raw.default_filter_chain.as_ref()))
}

/// Whether two listeners differ in their filter chains only (Envoy's filter chain only
/// update).
fn same_but_chains(a: &PbListener, b: &PbListener) -> bool {
    let without = |l: &PbListener| PbListener {
        filter_chains: Vec::new(),
        default_filter_chain: None,
        ..l.clone()
    };
    without(a) == without(b)
}

/// Binds the listeners of the config as it is (the bootstrap's static ones).
pub fn start(shared: &Arc<Shared>) -> Result<(), BindError> {
    let mut running = shared.listeners.lock();
    let snapshot = shared.store.snapshot();
    let sockets = match running.as_ref() {
        Some(running) => bind_new(running, &snapshot)?,
        None => return Ok(()),
    };
    if let Some(running) = running.as_mut() {
        reconcile(shared, running, sockets);
    }
    Ok(())
}

/// Applies an LDS update: the new listeners' sockets are bound before anything is
/// committed, so one that cannot bind rejects the update (the NACK's message names it)
/// and the previous listeners keep serving, as in Envoy.
pub fn apply(shared: &Arc<Shared>, resources: &BTreeMap<String, Any>) -> Result<(), String> {
    let mut running = shared.listeners.lock();
    let sockets = shared
        .store
        .apply_if(ResourceType::Listener, resources, |next| {
            running
                .as_ref()
                .map(|r| bind_new(r, next))
                .transpose()
                .map_err(|e| e.to_string())
        })?;
    if let (Some(running), Some(sockets)) = (running.as_mut(), sockets) {
        reconcile(shared, running, sockets);
    }
    Ok(())
}

/// Waits until the proxy shuts down, then drains every listener and closes its
/// connections.
pub async fn run(shared: Arc<Shared>, shutdown: DrainWatch) {
    shutdown.signaled().await;
    let running = shared.listeners.lock().take();
    for (name, r) in running.into_iter().flatten() {
        r.drain.drain();
        shared.bound.set(&name, None);
    }
    for (trigger, _) in shared
        .listeners
        .lock_chains()
        .drain()
        .flat_map(|(_, c)| c.drains)
    {
        trigger.drain();
    }
}

/// Binds the listeners of `snapshot` that have no socket at their address yet.
fn bind_new(
    running: &HashMap<String, Running>,
    snapshot: &Snapshot,
) -> Result<NewSockets, BindError> {
    let mut sockets = NewSockets::new();
    for (name, listener) in &snapshot.listeners {
        let address = listener.address;
        if !listener.bind_to_port || running.get(name).is_some_and(|r| r.address == address) {
            continue;
        }
        let socket = bind(address).map_err(|source| BindError {
            name: name.clone(),
            address,
            source,
        })?;
        sockets.insert(name.clone(), socket);
    }
    Ok(sockets)
}

/// Brings the running listeners in step with the committed config: removed ones (and
/// ones that moved) stop accepting, kept ones serve their next connections with their
/// new config, new ones accept on the sockets bound for them; then the filter chains'
/// drains follow.
fn reconcile(
    shared: &Arc<Shared>,
    running: &mut HashMap<String, Running>,
    mut sockets: NewSockets,
) {
    let snapshot = shared.store.snapshot();
    running.retain(|name, r| {
        let keep = snapshot
            .listeners
            .get(name)
            .is_some_and(|l| l.bind_to_port && l.address == r.address);
        if !keep {
            tracing::info!(listener = %name, "listener removed; no longer accepting");
            shared.bound.set(name, None);
            r.drain.drain();
        }
        keep
    });
    for (name, listener) in &snapshot.listeners {
        if let Some(r) = running.get_mut(name) {
            r.config.store(listener.clone());
            continue;
        }
        let Some(socket) = sockets.remove(name) else {
            continue;
        };
        let local = socket.local_addr().unwrap_or(listener.address);
        tracing::info!(listener = %name, address = %local, "listening");
        let (trigger, watch) = drain::channel();
        let config = Arc::new(ArcSwap::new(listener.clone()));
        tokio::spawn(accept(shared.clone(), socket, config.clone(), watch));
        running.insert(
            name.clone(),
            Running {
                address: listener.address,
                config,
                drain: trigger,
            },
        );
        shared.bound.set(name, Some(local));
    }
    shared.listeners.update_chains(&snapshot);
}

/// Drains the connections watching `trigger`: HTTP ones finish their requests and
/// close; the trigger is held for `drain_time`, after which TCP relays close.
fn drain_for(trigger: DrainTrigger, drain_time: Duration) {
    tokio::spawn(async move {
        trigger.drain();
        tokio::time::sleep(drain_time).await;
        drop(trigger);
    });
}

fn bind(address: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = if address.is_ipv4() {
        tokio::net::TcpSocket::new_v4()?
    } else {
        tokio::net::TcpSocket::new_v6()?
    };
    socket.set_reuseaddr(true)?;
    socket.bind(address)?;
    socket.listen(1024)
}

/// Accepts connections until drained; each is served in its own task.
async fn accept(
    shared: Arc<Shared>,
    socket: TcpListener,
    config: Arc<ArcSwap<Listener>>,
    drain: DrainWatch,
) {
    loop {
        tokio::select! {
            accepted = socket.accept() => match accepted {
                Ok((stream, peer)) => {
                    tokio::spawn(conn::handle(shared.clone(), config.load_full(), stream, peer));
                }
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    // Out of file descriptors and the like: give the system a moment.
                    tokio::time::sleep(ACCEPT_RETRY).await;
                }
            },
            () = drain.clone().signaled() => return,
        }
    }
}
