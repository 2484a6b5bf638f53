//! The TCP proxy at run time: a connection relayed byte for byte to an endpoint of its
//! cluster, until either side closes, the idle timeout passes, or its filter chain's
//! drain time is over (a TCP relay cannot wind down gracefully, so it is closed then, as
//! Envoy closes a drained tcp_proxy connection).

use std::io;

use tokio::io::{AsyncRead, AsyncWrite, copy_bidirectional};

use crate::Shared;
use crate::access_log::Connection;
use crate::activity::{Activity, IdleTimer, Tracked};
use crate::authz;
use crate::config::TcpProxy;
use crate::drain::DrainWatch;
use crate::flags::ResponseFlags;
use crate::http::Downstream;
use crate::metrics::Metering;
use crate::tls::Carried;
use crate::{endpoint, upstream};

/// Relays `stream` to the proxy's target, once its network authorization filters allow the
/// connection `downstream` describes (a denied one is closed: an error here): where the
/// client meant to connect, for original-destination clusters, and its TLS session.
/// Both sides are closed when `drain`'s drain time is over.
pub async fn relay<S>(
    shared: &Shared,
    proxy: &TcpProxy,
    stream: S,
    downstream: &Downstream,
    drain: DrainWatch,
) -> io::Result<()>
where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut logged = Connection::begin(&proxy.access_log, downstream);
    if !proxy.authz.is_empty() && !admitted(shared, proxy, downstream).await {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "denied by network authorization",
        ));
    }
    let snapshot = shared.store.snapshot();
    let name = proxy.target.pick(fastrand::u64(..));
    logged.cluster(name);
    let Some(state) = snapshot.clusters.get(name) else {
        logged.flag(ResponseFlags::NC);
        return Err(io::Error::other(format!("cluster {name:?} not found")));
    };
    let cluster = &state.cluster;
    let chosen = endpoint::choose(state, downstream.destination, None).map_err(|e| {
        logged.flag(ResponseFlags::UH);
        io::Error::other(format!("cluster {name:?}: {e}"))
    })?;
    logged.upstream_host(chosen.address);
    if let Some(principal) = downstream.principal() {
        tracing::debug!(peer = %downstream.peer, principal, cluster = %name, "relaying an mTLS connection");
    }
    let mut upstream = upstream::connect(
        chosen.address,
        cluster.bind,
        (state.transport(chosen.address), Carried::Opaque),
        cluster.connect_timeout,
        &state.stats,
    )
    .await
    .map_err(|e| {
        // Envoy's TCP proxy makes one connect attempt by default: a failed one has
        // also exhausted its retries.
        logged.flag(match e {
            upstream::UpstreamError::Overflow => ResponseFlags::UO,
            _ => ResponseFlags::UF | ResponseFlags::URX,
        });
        io::Error::other(e)
    })?;
    let _open = state.stats.upstream_cx_active.track();
    let stream = logged.count(stream);
    let transport = state.transport(chosen.address);
    let identities = || upstream::Identities::of(&upstream, transport);
    let stream = Metering::new(
        proxy.telemetry.as_deref(),
        stream,
        downstream,
        (chosen.address, identities),
        cluster,
    );
    let activity = Activity::new();
    let mut tracked = Tracked::new(stream, activity.clone());
    let mut idle = IdleTimer::new(proxy.idle_timeout, activity);
    tokio::select! {
        done = copy_bidirectional(&mut tracked, &mut upstream) => done.map(|_| ()),
        // Idle, or drained: close both sides.
        () = idle.expired() => Ok(()),
        () = drain.closed() => {
            tracing::debug!(peer = %downstream.peer, cluster = %name, "drain time over; closing the TCP relay");
            Ok(())
        }
    }
}

/// Whether the chain's network authorization filters let the connection through.
/// Envoy decides on the connection's first bytes; everything a policy can read of a
/// connection is known at accept, so the decision is made then and a denied client
/// never reaches an upstream.
async fn admitted(shared: &Shared, proxy: &TcpProxy, downstream: &Downstream) -> bool {
    let connection = downstream.authz_connection();
    authz::admit(&proxy.authz, shared, connection).await
}
