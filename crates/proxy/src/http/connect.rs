//! A CONNECT forwarded upstream as a request (Envoy's way with CONNECT on routes without
//! a `connect_config`): sent on a fresh HTTP/1.1 connection of its own, never pooled, for
//! a 2xx answer turns that connection into the tunnel.

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, Uri, Version};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;

use std::time::Duration;

use http::StatusCode;

use super::body::ProxyBody;
use super::forward::Failure;
use super::headers;
use super::local_reply::local;
use super::request_body::ClientBody;
use super::router::{Downstream, tunnel};
use crate::config::ClusterState;
use crate::endpoint;
use crate::tls::{Carried, Stream};

/// The CONNECT to send upstream for `authority` (the client's target), with `headers`
/// (the client's, as routed) and `Host` naming the target as HTTP/1.1 asks; `None`
/// when the authority is no valid request target.
pub fn upstream_request(authority: &str, mut headers: HeaderMap) -> Option<Request<Empty<Bytes>>> {
    let target: Uri = authority.parse().ok()?;
    headers.insert(header::HOST, HeaderValue::from_str(authority).ok()?);
    let mut request = Request::new(Empty::new());
    *request.method_mut() = Method::CONNECT;
    *request.uri_mut() = target;
    *request.version_mut() = Version::HTTP_11;
    *request.headers_mut() = headers;
    Some(request)
}

/// Sends `request` on `upstream` and returns the response head; the connection serves
/// nothing else, and a 2xx response's upgrade hands it over whole.
pub async fn send(
    upstream: Stream,
    request: Request<Empty<Bytes>>,
) -> Result<Response<Incoming>, hyper::Error> {
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(upstream)).await?;
    tokio::spawn(async move {
        if let Err(e) = connection.with_upgrades().await {
            tracing::debug!(error = %e, "forwarded CONNECT connection ended");
        }
    });
    sender.send_request(request).await
}

/// A TCP connection to an endpoint of `state`'s cluster, for a CONNECT's tunnel; else
/// the answer the client gets.
async fn connect_upstream(
    state: &ClusterState,
    downstream: Downstream,
) -> Result<Stream, Response<ProxyBody>> {
    let picked = endpoint::choose(state, downstream.destination, None)
        .map_err(|unreachable| Failure::from(unreachable).response())?;
    let cluster = &state.cluster;
    crate::upstream::connect(
        picked.address,
        cluster.bind,
        (state.transport(picked.address), Carried::Opaque),
        cluster.connect_timeout,
        &state.stats,
    )
    .await
    .map_err(|e| Failure::Upstream(e).response())
}

/// A CONNECT the route terminates: a TCP connection to an endpoint of the cluster, then
/// 200 to the client and the tunnel's bytes relayed both ways.
pub(super) async fn terminate_connect(
    state: &ClusterState,
    downstream: Downstream,
    mut request: Request<ClientBody>,
) -> Response<ProxyBody> {
    let upstream = match connect_upstream(state, downstream).await {
        Ok(stream) => stream,
        Err(response) => return response,
    };
    let client = hyper::upgrade::on(&mut request);
    let open = state.stats.upstream_cx_active.track();
    tokio::spawn(async move {
        let _open = open;
        match client.await {
            Ok(client) => {
                let mut client = TokioIo::new(client);
                let mut upstream = upstream;
                if let Err(e) = tokio::io::copy_bidirectional(&mut client, &mut upstream).await {
                    tracing::debug!(error = %e, "CONNECT tunnel ended");
                }
            }
            Err(e) => tracing::debug!(error = %e, "CONNECT upgrade failed"),
        }
    });
    local(StatusCode::OK, "")
}

/// A CONNECT forwarded as a request to an endpoint of the cluster, on a connection of
/// its own: a 2xx answer opens the tunnel between the client and that connection; any
/// other answer is the client's response. `timeout` bounds the wait for the answer.
pub(super) async fn forward_connect(
    state: &ClusterState,
    downstream: Downstream,
    mut request: Request<ClientBody>,
    authority: &str,
    timeout: Option<Duration>,
) -> Response<ProxyBody> {
    let client = hyper::upgrade::on(&mut request);
    // The headers were sanitized (hop-by-hop ones gone) before routing.
    let Some(connect) = upstream_request(authority, request.into_parts().0.headers) else {
        return local(StatusCode::BAD_REQUEST, "");
    };
    let upstream = match connect_upstream(state, downstream).await {
        Ok(stream) => stream,
        Err(response) => return response,
    };
    let stats = &state.stats;
    stats.upstream_rq_total.inc();
    let active = stats.upstream_rq_active.track();
    let send = send(upstream, connect);
    let sent = match timeout {
        Some(t) => tokio::time::timeout(t, send).await.map_err(|_| {
            stats.upstream_rq_timeout.inc();
            Failure::Timeout
        }),
        None => Ok(send.await),
    };
    drop(active);
    let mut response = match sent.and_then(|r| r.map_err(|e| Failure::Upstream(e.into()))) {
        Ok(response) => response,
        Err(failure) => return failure.response(),
    };
    stats.upstream_rq.record(response.status().as_u16());
    headers::strip_hop_by_hop(response.headers_mut());
    if response.status().is_success() {
        let upstream = hyper::upgrade::on(&mut response);
        let open = stats.upstream_cx_active.track();
        tokio::spawn(async move {
            let _open = open;
            tunnel(client, upstream).await;
        });
        // The tunnel carries what follows; a 2xx answer to CONNECT has no body.
        return response.map(|_| ProxyBody::empty());
    }
    response.map(ProxyBody::Unpooled)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_targets_the_authority_with_a_matching_host() {
        let mut headers = HeaderMap::new();
        headers.insert("x-request-id", HeaderValue::from_static("r1"));
        headers.insert(header::HOST, HeaderValue::from_static("stale"));
        let sent = upstream_request("db.example:5432", headers).unwrap();
        assert_eq!(sent.method(), Method::CONNECT);
        assert_eq!(sent.uri().to_string(), "db.example:5432");
        assert_eq!(sent.version(), Version::HTTP_11);
        assert_eq!(sent.headers()[header::HOST], "db.example:5432");
        assert_eq!(sent.headers()["x-request-id"], "r1");
        assert!(upstream_request("not a target", HeaderMap::new()).is_none());
    }
}
