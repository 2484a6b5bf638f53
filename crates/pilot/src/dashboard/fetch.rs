//! One HTTP GET, as a scraper makes it: a proxy's `/stats/prometheus` or a Prometheus
//! server's query API, over plain HTTP/1.1, with a deadline.

use std::time::Duration;

use axum::http::{Request, StatusCode, Uri, header};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;

/// Why a GET failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("GET {uri}: {reason}")]
pub struct FetchError {
    /// What was asked for.
    pub uri: Uri,
    /// Why it failed.
    pub reason: String,
}

/// The body of a 200 answer to `GET uri`, within `timeout`.
pub async fn get(uri: &Uri, timeout: Duration) -> Result<String, FetchError> {
    let fail = |reason: String| FetchError {
        uri: uri.clone(),
        reason,
    };
    match tokio::time::timeout(timeout, exchange(uri)).await {
        Ok(result) => result.map_err(fail),
        Err(_) => Err(fail(format!("no answer within {timeout:?}"))),
    }
}

async fn exchange(uri: &Uri) -> Result<String, String> {
    if uri.scheme_str() != Some("http") {
        return Err("only http:// is supported".to_owned());
    }
    let authority = uri.authority().ok_or("no host")?;
    let port = authority.port_u16().unwrap_or(80);
    let stream = tokio::net::TcpStream::connect((authority.host(), port))
        .await
        .map_err(|e| format!("connecting: {e}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| e.to_string())?;
    // The connection is driven until the answer is read; it closes when dropped.
    let connection = tokio::spawn(connection);
    let path = uri.path_and_query().map_or("/", |p| p.as_str());
    let request = Request::get(path)
        .header(header::HOST, authority.as_str())
        .body(Empty::<hyper::body::Bytes>::new())
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    let status = response.status();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("reading the body: {e}"))?
        .to_bytes();
    connection.abort();
    let text = String::from_utf8(body.to_vec()).map_err(|_| "the body is not UTF-8")?;
    match status {
        StatusCode::OK => Ok(text),
        _ => Err(format!("{status}: {}", text.trim())),
    }
}
