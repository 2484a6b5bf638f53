//! The TCP proxy at run time: a connection relayed byte for byte to an endpoint of its
//! cluster, until either side closes or the idle timeout passes.

use std::io;

use tokio::io::{AsyncRead, AsyncWrite, copy_bidirectional};

use crate::Shared;
use crate::activity::{Activity, IdleTimer, Tracked};
use crate::authz::{self, Connection};
use crate::config::TcpProxy;
use crate::http::Downstream;
use crate::{endpoint, upstream};

/// Relays `stream` to the proxy's target, once its network authorization filters allow the
/// connection `downstream` describes (a denied one is closed: an error here).
pub async fn relay<S>(
    shared: &Shared,
    proxy: &TcpProxy,
    mut stream: S,
    downstream: Downstream,
) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    if !proxy.authz.is_empty() && !admitted(shared, proxy, &downstream).await {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "denied by network authorization",
        ));
    }
    let destination = downstream.destination;
    let snapshot = shared.store.snapshot();
    let name = proxy.target.pick(fastrand::u64(..));
    let Some(state) = snapshot.clusters.get(name) else {
        return Err(io::Error::other(format!("cluster {name:?} not found")));
    };
    let cluster = &state.cluster;
    let chosen = endpoint::choose(state, destination, None)
        .map_err(|e| io::Error::other(format!("cluster {name:?}: {e}")))?;
    let mut upstream = upstream::connect(
        chosen.address,
        cluster.bind,
        cluster.connect_timeout,
        &state.stats,
    )
    .await
    .map_err(io::Error::other)?;
    let _open = state.stats.upstream_cx_active.track();
    let Some(idle) = proxy.idle_timeout else {
        return copy_bidirectional(&mut stream, &mut upstream)
            .await
            .map(|_| ());
    };
    let activity = Activity::new();
    let mut downstream = Tracked::new(stream, activity.clone());
    let mut idle = IdleTimer::new(idle, activity);
    tokio::select! {
        done = copy_bidirectional(&mut downstream, &mut upstream) => done.map(|_| ()),
        // Idle: close both sides.
        () = idle.expired() => Ok(()),
    }
}

/// Whether the chain's network authorization filters let the connection through.
/// Envoy decides on the connection's first bytes; everything a policy can read of a
/// connection is known at accept, so the decision is made then and a denied client
/// never reaches an upstream.
async fn admitted(shared: &Shared, proxy: &TcpProxy, downstream: &Downstream) -> bool {
    let connection = Connection {
        source: downstream.peer,
        destination: downstream.destination,
        principal: downstream.principal(),
        server_name: None,
        tls: downstream.tls,
    };
    authz::admit(&proxy.authz, shared, connection).await
}
