//! Helpers for the demo apps' tests: start an app on 127.0.0.1:0 and call it.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::Empty;
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

/// GETs `path` from `addr`: the status and the body as text.
pub async fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    let request = http::Request::get(path)
        .header(http::header::HOST, addr.to_string())
        .body(Empty::<Bytes>::new())
        .unwrap();
    let (status, body) = send(&addr.to_string(), request).await.unwrap();
    (status.as_u16(), String::from_utf8(body.to_vec()).unwrap())
}
