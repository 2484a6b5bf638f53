//! One accepted connection: find its listener (by original destination when
//! redirected), read its first bytes if a listener filter asks, choose its filter
//! chain, terminate TLS if the chain says so, and serve it as HTTP or relay it as TCP.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, Interest};
use tokio::net::TcpStream;

use crate::config::{ConnectionInfo, Listener, NetworkFilter, Snapshot};
use crate::drain::DrainWatch;
use crate::inspect::{self, Inspected, Verdict};
use crate::{Shared, http, original_dst, tcp};

/// How long listener filters may wait for a connection's first bytes (Envoy's
/// `listener_filters_timeout` default); after it the connection is served on what is
/// known (`continue_on_listener_filters_timeout`, as Istio sets it).
const INSPECT_TIMEOUT: Duration = Duration::from_secs(15);

/// Serves one accepted connection to its end.
pub async fn handle(
    shared: Arc<Shared>,
    accepted_by: Arc<Listener>,
    stream: TcpStream,
    peer: SocketAddr,
) {
    let _ = stream.set_nodelay(true);
    let destination = if accepted_by.use_original_dst {
        original_dst::original_dst(&stream)
    } else {
        stream.local_addr()
    };
    let Ok(destination) = destination else { return };
    let snapshot = shared.store.snapshot();
    let listener = match accepted_by.use_original_dst {
        true => handed_over(&snapshot, &accepted_by, destination),
        false => accepted_by,
    };
    let inspected = if listener.inspect_tls || listener.inspect_http {
        match inspect_stream(&stream, &listener).await {
            Ok(i) => i,
            Err(e) => {
                tracing::debug!(%peer, error = %e, "connection closed while inspected");
                return;
            }
        }
    } else {
        Inspected::default()
    };
    let alpn: Vec<&str> = inspected
        .application_protocols
        .iter()
        .map(String::as_str)
        .collect();
    let info = ConnectionInfo {
        destination,
        source: peer,
        server_name: inspected.server_name.as_deref(),
        transport_protocol: if inspected.tls { "tls" } else { "raw_buffer" },
        application_protocols: &alpn,
    };
    let Some(chain) = listener.select(&info) else {
        tracing::debug!(listener = %listener.name, %peer, %destination, "no filter chain matches; closing");
        return;
    };
    let drain = shared.listeners.drain_of(&listener, chain);
    let mut downstream = http::Downstream {
        peer,
        destination,
        tls: None,
    };
    let Some(tls) = &chain.tls else {
        return serve(&shared, &listener, &chain.filter, stream, downstream, drain).await;
    };
    match tls.accept(stream).await {
        Ok((stream, session)) => {
            downstream.tls = Some(Arc::new(session));
            serve(&shared, &listener, &chain.filter, stream, downstream, drain).await;
        }
        Err(e) => {
            tracing::debug!(listener = %listener.name, %peer, error = %e, "TLS handshake failed");
        }
    }
}

/// Serves a connection (its TLS, if any, terminated) with its chain's network filter.
async fn serve<IO>(
    shared: &Arc<Shared>,
    listener: &Listener,
    filter: &NetworkFilter,
    io: IO,
    downstream: http::Downstream,
    drain: DrainWatch,
) where
    IO: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    match filter {
        NetworkFilter::Http(manager) => {
            http::serve(shared.clone(), manager.clone(), downstream, io, drain).await;
        }
        NetworkFilter::Tcp(proxy) => {
            if let Err(e) = tcp::relay(shared, proxy, io, &downstream, drain).await {
                let peer = downstream.peer;
                tracing::debug!(listener = %listener.name, %peer, error = %e, "TCP relay ended");
            }
        }
    }
}

/// The listener that serves a redirected connection: the one whose address is the
/// original destination, else one on that port of any address, else the accepting one.
fn handed_over(
    snapshot: &Snapshot,
    accepted_by: &Arc<Listener>,
    destination: SocketAddr,
) -> Arc<Listener> {
    let exact = snapshot
        .listeners
        .values()
        .find(|l| l.address == destination);
    let any_ip = || {
        snapshot
            .listeners
            .values()
            .find(|l| l.address.ip().is_unspecified() && l.address.port() == destination.port())
    };
    match exact.or_else(any_ip) {
        Some(l) if l.name != accepted_by.name => l.clone(),
        _ => accepted_by.clone(),
    }
}

/// Peeks at the first bytes until the inspectors have their answer.
async fn inspect_stream(stream: &TcpStream, listener: &Listener) -> io::Result<Inspected> {
    let mut buf = vec![0u8; 4096];
    let work = async {
        loop {
            stream.readable().await?;
            let n = stream.peek(&mut buf).await?;
            let eof = n == 0;
            match inspect::inspect(&buf[..n], listener.inspect_tls, listener.inspect_http, eof) {
                Verdict::Done(inspected) => return Ok(inspected),
                Verdict::NeedMore => {
                    if n == buf.len() {
                        buf.resize((buf.len() * 2).min(inspect::MAX_CLIENT_HELLO), 0);
                    }
                    // Peeking leaves the socket readable; clear that so the next wait
                    // is for new bytes, not the ones already seen.
                    let _ = stream.try_io(Interest::READABLE, || {
                        Err::<(), _>(io::ErrorKind::WouldBlock.into())
                    });
                }
            }
        }
    };
    match tokio::time::timeout(INSPECT_TIMEOUT, work).await {
        Ok(result) => result,
        Err(_) => Ok(Inspected::default()),
    }
}
