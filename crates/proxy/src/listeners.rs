//! The listeners' sockets, kept in step with the config: a new listener binds, a
//! changed one keeps its socket and serves its next connections with the new config,
//! a removed one stops accepting and drains its connections.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::config::Listener;
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
    config: Arc<ArcSwap<Listener>>,
    drain: DrainTrigger,
}

/// Keeps sockets in step with the config until the proxy drains; removed listeners
/// drain for `drain_time` before their connections are cut.
pub async fn run(shared: Arc<Shared>, drain_time: Duration, shutdown: DrainWatch) {
    let mut running: HashMap<String, Running> = HashMap::new();
    let mut changes = shared.store.changes();
    loop {
        reconcile(&shared, &mut running, drain_time);
        tokio::select! {
            changed = changes.changed() => if changed.is_err() { break },
            () = shutdown.clone().signaled() => break,
        }
    }
    for (name, r) in running.drain() {
        r.drain.drain();
        shared.bound.set(&name, None);
    }
}

fn reconcile(shared: &Arc<Shared>, running: &mut HashMap<String, Running>, drain_time: Duration) {
    let snapshot = shared.store.snapshot();
    running.retain(|name, r| {
        let keep = snapshot
            .listeners
            .get(name)
            .is_some_and(|l| l.bind_to_port && l.address == r.address);
        if !keep {
            tracing::info!(listener = %name, "listener removed; draining");
            shared.bound.set(name, None);
            let drain = std::mem::replace(&mut r.drain, drain::channel().0);
            tokio::spawn(async move {
                drain.drain();
                tokio::time::sleep(drain_time).await;
                drop(drain);
            });
        }
        keep
    });
    for (name, listener) in &snapshot.listeners {
        if !listener.bind_to_port {
            continue;
        }
        if let Some(r) = running.get(name) {
            r.config.store(listener.clone());
            continue;
        }
        match bind(listener.address) {
            Ok(socket) => {
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
            Err(e) => {
                tracing::error!(listener = %name, address = %listener.address, error = %e, "cannot bind listener");
            }
        }
    }
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
                    let listener = config.load_full();
                    tokio::spawn(conn::handle(shared.clone(), listener, stream, peer, drain.clone()));
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
