//! The TCP proxy at run time: a connection relayed byte for byte to an endpoint of its
//! cluster, until either side closes or the idle timeout passes.

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncWrite, copy_bidirectional};

use crate::Shared;
use crate::activity::{Activity, IdleTimer, Tracked};
use crate::config::TcpProxy;
use crate::metrics::Metering;
use crate::{endpoint, upstream};

/// Relays `downstream` (from `peer`) to the proxy's target; `destination` is where the
/// client meant to connect (used by original-destination clusters).
pub async fn relay<S>(
    shared: &Shared,
    proxy: &TcpProxy,
    downstream: S,
    peer: SocketAddr,
    destination: SocketAddr,
) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
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
    let ends = (peer, chosen.address);
    let mut downstream = Metering::new(proxy.telemetry.as_deref(), downstream, ends, cluster);
    let Some(idle) = proxy.idle_timeout else {
        return copy_bidirectional(&mut downstream, &mut upstream)
            .await
            .map(|_| ());
    };
    let activity = Activity::new();
    let mut downstream = Tracked::new(downstream, activity.clone());
    let mut idle = IdleTimer::new(idle, activity);
    tokio::select! {
        done = copy_bidirectional(&mut downstream, &mut upstream) => done.map(|_| ()),
        // Idle: close both sides.
        () = idle.expired() => Ok(()),
    }
}
