//! A CONNECT forwarded upstream as a request (Envoy's way with CONNECT on routes without
//! a `connect_config`): sent on a fresh HTTP/1.1 connection of its own, never pooled, for
//! a 2xx answer turns that connection into the tunnel.

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Method, Request, Response, Uri, Version};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// The CONNECT to send upstream for `authority` (the client's target), with `headers`
/// (the client's, as routed) and `Host` naming the target as HTTP/1.1 asks; `None`
/// when the authority is no valid request target.
pub fn request(authority: &str, mut headers: HeaderMap) -> Option<Request<Empty<Bytes>>> {
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
    upstream: TcpStream,
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_request_targets_the_authority_with_a_matching_host() {
        let mut headers = HeaderMap::new();
        headers.insert("x-request-id", HeaderValue::from_static("r1"));
        headers.insert(header::HOST, HeaderValue::from_static("stale"));
        let sent = request("db.example:5432", headers).unwrap();
        assert_eq!(sent.method(), Method::CONNECT);
        assert_eq!(sent.uri().to_string(), "db.example:5432");
        assert_eq!(sent.version(), Version::HTTP_11);
        assert_eq!(sent.headers()[header::HOST], "db.example:5432");
        assert_eq!(sent.headers()["x-request-id"], "r1");
        assert!(request("not a target", HeaderMap::new()).is_none());
    }
}
