//! Helpers for the demo apps' tests: start an app on 127.0.0.1:0, call it, and a tiny
//! HTTP proxy that records the absolute-form requests apps send and passes them on.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{HeaderMap, Method, Response, StatusCode};
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;

use super::outbound::{Outbound, send};
use super::{App, Service, server};

/// Starts `app` at `version` with no proxy; returns its address.
pub async fn start(app: App, version: &str) -> SocketAddr {
    serve(Service::new(app, version, None, Outbound::direct()).unwrap()).await
}

/// Serves `service` on 127.0.0.1:0 for the rest of the test; returns its address.
pub async fn serve(service: Service) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(server::serve(listener, Arc::new(service)));
    addr
}

/// A response as a test reads it.
#[derive(Debug)]
pub struct Answer {
    /// The status code.
    pub status: u16,
    /// The headers.
    pub headers: HeaderMap,
    /// The body as text.
    pub body: String,
}

/// Sends `method path` to `addr` with `headers` and `body`.
pub async fn call(
    addr: SocketAddr,
    method: Method,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> Answer {
    let mut request = http::Request::builder()
        .method(method)
        .uri(path)
        .header(http::header::HOST, addr.to_string());
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let request = request
        .body(Full::new(Bytes::from(body.to_owned())))
        .unwrap();
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(connection);
    let response = sender.send_request(request).await.unwrap();
    let (head, body) = response.into_parts();
    let body = http_body_util::BodyExt::collect(body)
        .await
        .unwrap()
        .to_bytes();
    Answer {
        status: head.status.as_u16(),
        headers: head.headers,
        body: String::from_utf8(body.to_vec()).unwrap(),
    }
}

/// GETs `path` from `addr`: the status and the body.
pub async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let answer = call(addr, Method::GET, path, &[], "").await;
    (answer.status, answer.body)
}

/// One request as the proxy received it.
#[derive(Debug, Clone)]
pub struct Seen {
    /// The request target, absolute-form as a client behind a proxy sends it.
    pub target: String,
    /// Its headers.
    pub headers: HeaderMap,
}

impl Seen {
    /// Header `name`'s value.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Where the proxy sends each `host:port`.
type Routes = Arc<Mutex<HashMap<String, SocketAddr>>>;

/// A recording HTTP proxy in front of the apps: `host:port` → where that app listens;
/// any other host gets a 502.
pub struct Proxy {
    /// Where it listens.
    pub addr: SocketAddr,
    routes: Routes,
    seen: Arc<Mutex<Vec<Seen>>>,
}

impl Proxy {
    /// Starts a proxy that knows no service yet.
    pub async fn start() -> Proxy {
        let routes = Routes::default();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let recorded = Arc::clone(&seen);
        let known = Arc::clone(&routes);
        tokio::spawn(async move {
            loop {
                let (stream, _) = listener.accept().await.unwrap();
                let routes = Arc::clone(&known);
                let seen = Arc::clone(&recorded);
                let handler = service_fn(move |request: http::Request<hyper::body::Incoming>| {
                    let routes = Arc::clone(&routes);
                    let seen = Arc::clone(&seen);
                    async move { Ok::<_, std::convert::Infallible>(pass(&routes, &seen, request).await) }
                });
                tokio::spawn(http1::Builder::new().serve_connection(TokioIo::new(stream), handler));
            }
        });
        Proxy { addr, routes, seen }
    }

    /// Passes requests for `authority` (`host:port`) to `addr`.
    pub fn route(&self, authority: &str, addr: SocketAddr) {
        self.routes
            .lock()
            .unwrap()
            .insert(authority.to_owned(), addr);
    }

    /// The requests received so far, in order.
    pub fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }

    /// The request received for `target`.
    pub fn request_for(&self, target: &str) -> Seen {
        let seen = self.seen();
        seen.iter()
            .find(|s| s.target == target)
            .cloned()
            .unwrap_or_else(|| panic!("no request for {target}; the proxy saw {seen:#?}"))
    }
}

async fn pass(
    routes: &Mutex<HashMap<String, SocketAddr>>,
    seen: &Mutex<Vec<Seen>>,
    request: http::Request<hyper::body::Incoming>,
) -> Response<Full<Bytes>> {
    let (head, _) = request.into_parts();
    seen.lock().unwrap().push(Seen {
        target: head.uri.to_string(),
        headers: head.headers.clone(),
    });
    let upstream = head
        .uri
        .authority()
        .and_then(|authority| routes.lock().unwrap().get(authority.as_str()).copied());
    let Some(upstream) = upstream else {
        let mut response = Response::new(Full::default());
        *response.status_mut() = StatusCode::BAD_GATEWAY;
        return response;
    };
    let path = head.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut request = http::Request::get(path)
        .body(http_body_util::Empty::<Bytes>::new())
        .unwrap();
    *request.headers_mut() = head.headers;
    let (status, body) = send(&upstream.to_string(), request).await.unwrap();
    let mut response = Response::new(Full::new(body));
    *response.status_mut() = status;
    response
}
