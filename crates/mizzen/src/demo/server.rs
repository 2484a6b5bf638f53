//! The HTTP/1.1 server every demo app runs on, and the replies apps build.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderValue, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::Service;

/// Request bodies beyond this are refused: the demo apps take small forms at most.
const MAX_BODY: usize = 64 * 1024;

/// A request as an app sees it: head, whole body and the caller's address.
pub struct Request {
    /// Method, URI and headers.
    pub head: http::request::Parts,
    /// The whole body.
    pub body: Bytes,
    /// The caller's address (httpbin reports it as `origin`).
    pub peer: SocketAddr,
}

impl Request {
    /// The path, without the query.
    pub fn path(&self) -> &str {
        self.head.uri.path()
    }

    /// The query string, empty when there is none.
    pub fn query(&self) -> &str {
        self.head.uri.query().unwrap_or("")
    }
}

/// What an app does with a request.
pub enum Reply {
    /// Answer with this response.
    Response(Response<Full<Bytes>>),
    /// Close the connection without answering, as a crashed or reset server does.
    Reset,
}

impl Reply {
    /// A response with this status, content type and body.
    pub fn new(status: StatusCode, content_type: &'static str, body: impl Into<Bytes>) -> Reply {
        Reply::Response(response(status, content_type, body))
    }

    /// A JSON response.
    pub fn json(status: StatusCode, value: &serde_json::Value) -> Reply {
        Reply::new(status, "application/json", value.to_string())
    }

    /// A 200 HTML page.
    pub fn html(page: String) -> Reply {
        Reply::new(StatusCode::OK, "text/html; charset=utf-8", page)
    }

    /// A plain-text response.
    pub fn text(status: StatusCode, text: impl Into<Bytes>) -> Reply {
        Reply::new(status, "text/plain; charset=utf-8", text)
    }

    /// 404 for a path the app does not serve.
    pub fn not_found(path: &str) -> Reply {
        Reply::text(
            StatusCode::NOT_FOUND,
            format!("404 page not found: {path}\n"),
        )
    }
}

fn response(
    status: StatusCode,
    content_type: &'static str,
    body: impl Into<Bytes>,
) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(body.into()));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    response
}

/// Serves `service` on `listener` until the task is dropped.
pub async fn serve(listener: TcpListener, service: Arc<Service>) -> std::io::Result<()> {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            // Out of descriptors or a connection gone before accept: keep serving the rest.
            Err(e) => {
                tracing::warn!("accept: {e}");
                continue;
            }
        };
        let service = Arc::clone(&service);
        tokio::spawn(async move {
            let handler = service_fn(move |request: http::Request<hyper::body::Incoming>| {
                let service = Arc::clone(&service);
                async move { respond(&service, request, peer).await }
            });
            // A failed connection concerns only its client.
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), handler)
                .await;
        });
    }
}

/// Reads the whole request and asks the app; an `Err` makes hyper drop the connection
/// unanswered, which is how [`Reply::Reset`] reaches the client.
async fn respond(
    service: &Service,
    request: http::Request<hyper::body::Incoming>,
    peer: SocketAddr,
) -> Result<Response<Full<Bytes>>, std::io::Error> {
    let (head, body) = request.into_parts();
    let body = match Limited::new(body, MAX_BODY).collect().await {
        Ok(body) => body.to_bytes(),
        Err(e) => {
            return Ok(response(
                StatusCode::PAYLOAD_TOO_LARGE,
                "text/plain; charset=utf-8",
                format!("request body: {e}\n"),
            ));
        }
    };
    match service.handle(Request { head, body, peer }).await {
        Reply::Response(response) => Ok(response),
        Reply::Reset => Err(std::io::Error::new(
            std::io::ErrorKind::ConnectionReset,
            "reset requested",
        )),
    }
}
