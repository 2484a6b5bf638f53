//! The listeners' sockets, kept in step with the config: a new listener binds, a
//! changed one keeps its socket, serves its next connections with the new config and
//! drains the connections made with the old one (as Envoy drains a changed filter
//! chain: a new policy is never bypassed by a kept-alive connection), a removed one
//! stops accepting and drains its connections.

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use mizzen_xds::ResourceType;
use mizzen_xds::pb::google::protobuf::Any;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::{Listener, Snapshot};
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
    config: Arc<ArcSwap<Serving>>,
    /// Stops the accept loop.
    drain: DrainTrigger,
    /// Drains the connections accepted with the current config.
    connections: DrainTrigger,
}

/// What new connections of a listener are served with: its config, and the drain of
/// the connections made with it.
struct Serving {
    listener: Arc<Listener>,
    connections: DrainWatch,
}

/// The listeners with sockets, kept in step with the config.
pub struct Listeners {
    /// By name; None once the proxy shut down (config may still change, nothing binds).
    running: Mutex<Option<HashMap<String, Running>>>,
    /// How long a removed listener's connections may finish.
    drain_time: Duration,
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
    /// No listeners yet; removed ones will drain for `drain_time`.
    pub fn new(drain_time: Duration) -> Listeners {
        Listeners {
            running: Mutex::new(Some(HashMap::new())),
            drain_time,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Option<HashMap<String, Running>>> {
        self.running.lock().unwrap_or_else(|e| e.into_inner())
    }
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

/// Waits until the proxy shuts down, then drains every listener.
pub async fn run(shared: Arc<Shared>, shutdown: DrainWatch) {
    shutdown.signaled().await;
    let running = shared.listeners.lock().take();
    for (name, r) in running.into_iter().flatten() {
        r.drain.drain();
        r.connections.drain();
        shared.bound.set(&name, None);
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
/// ones that moved) drain, kept ones serve their next connections with their new
/// config, new ones accept on the sockets bound for them.
fn reconcile(
    shared: &Arc<Shared>,
    running: &mut HashMap<String, Running>,
    mut sockets: NewSockets,
) {
    let snapshot = shared.store.snapshot();
    let drain_time = shared.listeners.drain_time;
    running.retain(|name, r| {
        let keep = snapshot
            .listeners
            .get(name)
            .is_some_and(|l| l.bind_to_port && l.address == r.address);
        if !keep {
            tracing::info!(listener = %name, "listener removed; draining");
            shared.bound.set(name, None);
            r.drain.drain();
            drain_for(
                std::mem::replace(&mut r.connections, drain::channel().0),
                drain_time,
            );
        }
        keep
    });
    for (name, listener) in &snapshot.listeners {
        if let Some(r) = running.get_mut(name) {
            // Recompiled but equal config leaves the connections alone.
            if r.config.load().listener.raw == listener.raw {
                continue;
            }
            tracing::info!(listener = %name, "listener changed; draining its connections");
            let (trigger, connections) = drain::channel();
            r.config.store(Arc::new(Serving {
                listener: listener.clone(),
                connections,
            }));
            drain_for(std::mem::replace(&mut r.connections, trigger), drain_time);
            continue;
        }
        let Some(socket) = sockets.remove(name) else {
            continue;
        };
        let local = socket.local_addr().unwrap_or(listener.address);
        tracing::info!(listener = %name, address = %local, "listening");
        let (trigger, watch) = drain::channel();
        let (connections, serving) = drain::channel();
        let config = Arc::new(ArcSwap::from_pointee(Serving {
            listener: listener.clone(),
            connections: serving,
        }));
        tokio::spawn(accept(shared.clone(), socket, config.clone(), watch));
        running.insert(
            name.clone(),
            Running {
                address: listener.address,
                config,
                drain: trigger,
                connections,
            },
        );
        shared.bound.set(name, Some(local));
    }
}

/// Tells the connections made under `trigger` to finish their requests and close; the
/// trigger is held for `drain_time`, as a removed listener's.
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
    config: Arc<ArcSwap<Serving>>,
    drain: DrainWatch,
) {
    loop {
        tokio::select! {
            accepted = socket.accept() => match accepted {
                Ok((stream, peer)) => {
                    let serving = config.load();
                    let (listener, connections) = (serving.listener.clone(), serving.connections.clone());
                    tokio::spawn(conn::handle(shared.clone(), listener, stream, peer, connections));
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
