//! Test helpers: backends that say who they are, a client, and bootstraps for a proxy
//! bound on 127.0.0.1 port 0.

#![allow(dead_code)]

pub mod envoy;
pub mod ext_authz;

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use mizzen_proxy::{Bootstrap, Proxy, ProxyOptions};
use tokio::net::{TcpListener, TcpStream};

/// What a backend saw of a request, as it reports it back (JSON body).
#[derive(Debug, serde::Deserialize)]
pub struct Seen {
    pub backend: String,
    pub method: String,
    pub path: String,
    pub version: String,
    /// The last value of each header.
    pub headers: BTreeMap<String, String>,
    /// Every value of each header, in the order received.
    pub header_values: BTreeMap<String, Vec<String>>,
}

/// An HTTP/1.1 + h2c backend on 127.0.0.1 that answers every request with what it saw,
/// naming itself in `x-backend` and sending back every `x-echo-*` request header (so a
/// test can have it send any response header).
pub async fn backend(name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                let service = service_fn(move |req: Request<Incoming>| async move {
                    let headers = req
                        .headers()
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_str().unwrap_or("").to_string()))
                        .collect::<BTreeMap<_, _>>();
                    let header_values = values_by_name(req.headers());
                    let body = serde_json::json!({
                        "backend": name,
                        "method": req.method().as_str(),
                        "path": req.uri().path_and_query().map(|p| p.as_str()).unwrap_or("/"),
                        "version": format!("{:?}", req.version()),
                        "headers": headers,
                        "header_values": header_values,
                    });
                    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
                    for (header, value) in req.headers() {
                        if header.as_str().starts_with("x-echo-") {
                            response.headers_mut().append(header, value.clone());
                        }
                    }
                    response
                        .headers_mut()
                        .insert("x-backend", name.parse().unwrap());
                    Ok::<_, Infallible>(response)
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// A backend that accepts connections, reads what comes and never answers.
pub async fn silent() -> SocketAddr {
    use tokio::io::AsyncReadExt;
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            tokio::spawn(async move {
                let mut buf = [0u8; 1024];
                while matches!(stream.read(&mut buf).await, Ok(n) if n > 0) {}
            });
        }
    });
    addr
}

/// A TCP backend that writes back what it reads, prefixed with its name.
pub async fn echo(name: &'static str) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        loop {
            let Ok((mut stream, _)) = listener.accept().await else {
                return;
            };
            tokio::spawn(async move {
                use tokio::io::{AsyncReadExt, AsyncWriteExt};
                let mut buf = vec![0u8; 4096];
                loop {
                    let n = match stream.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    let mut out = format!("{name}:").into_bytes();
                    out.extend_from_slice(&buf[..n]);
                    if stream.write_all(&out).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
    addr
}

/// A response as the client got it.
pub struct Got {
    pub status: u16,
    pub headers: http::HeaderMap,
    pub body: String,
}

impl Got {
    /// The backend's report of the request.
    pub fn seen(&self) -> Seen {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }
}

/// Every value of each header, in the order received.
pub fn values_by_name(headers: &http::HeaderMap) -> BTreeMap<String, Vec<String>> {
    let mut by_name = BTreeMap::<String, Vec<String>>::new();
    for (name, value) in headers {
        by_name
            .entry(name.to_string())
            .or_default()
            .push(String::from_utf8_lossy(value.as_bytes()).into_owned());
    }
    by_name
}

/// Sends one HTTP/1.1 request on a fresh connection.
pub async fn send(addr: SocketAddr, request: Request<Full<Bytes>>) -> Got {
    send_from(addr, request).await.0
}

/// [`send`], also giving the local address the connection came from.
pub async fn send_from(addr: SocketAddr, request: Request<Full<Bytes>>) -> (Got, SocketAddr) {
    let stream = TcpStream::connect(addr).await.unwrap();
    let local = stream.local_addr().unwrap();
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .unwrap();
    tokio::spawn(conn);
    let response = sender.send_request(request).await.unwrap();
    (collect(response).await, local)
}

/// Sends one HTTP/2 (prior knowledge) request on a fresh connection.
pub async fn send_h2(addr: SocketAddr, request: Request<Full<Bytes>>) -> Got {
    let stream = TcpStream::connect(addr).await.unwrap();
    let (mut sender, conn) =
        hyper::client::conn::http2::handshake(TokioExecutor::new(), TokioIo::new(stream))
            .await
            .unwrap();
    tokio::spawn(conn);
    let response = sender.send_request(request).await.unwrap();
    collect(response).await
}

async fn collect(response: Response<Incoming>) -> Got {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let body = response.into_body().collect().await.unwrap().to_bytes();
    Got {
        status,
        headers,
        body: String::from_utf8_lossy(&body).into_owned(),
    }
}

/// A GET for `path` with the given host.
pub fn get(host: &str, path: &str) -> Request<Full<Bytes>> {
    Request::get(path)
        .header("host", host)
        .body(Full::new(Bytes::new()))
        .unwrap()
}

/// Starts a proxy on a static bootstrap given as YAML.
pub async fn proxy(yaml: &str) -> Proxy {
    let raw = mizzen_xds::json::bootstrap_from_yaml(yaml).unwrap_or_else(|e| panic!("{e}\n{yaml}"));
    let bootstrap = Bootstrap::from_pb(raw).unwrap();
    Proxy::start(ProxyOptions::new(bootstrap)).await.unwrap()
}

/// A static cluster of `endpoints` in YAML (for a bootstrap's `clusters:` list).
pub fn cluster(name: &str, endpoints: &[SocketAddr]) -> String {
    let eps: Vec<String> = endpoints
        .iter()
        .map(|a| {
            format!(
                "{{endpoint: {{address: {{socket_address: {{address: {}, port_value: {}}}}}}}}}",
                a.ip(),
                a.port()
            )
        })
        .collect();
    format!(
        "- name: {name}\n  type: STATIC\n  connect_timeout: 1s\n  load_assignment:\n    cluster_name: {name}\n    endpoints: [{{lb_endpoints: [{}]}}]\n",
        eps.join(", ")
    )
}

/// A virtual host list sending every request to `cluster`.
pub fn all_to(cluster: &str) -> String {
    format!(
        "- name: all\n  domains: [\"*\"]\n  routes: [{{match: {{prefix: \"/\"}}, route: {{cluster: {cluster}}}}}]\n"
    )
}

/// An admin server on a free port, to append to a bootstrap.
pub const ADMIN: &str = "admin: {address: {socket_address: {address: 127.0.0.1, port_value: 0}}}\n";

/// A bootstrap with one HTTP listener named `http` on 127.0.0.1:0 whose inline route
/// config holds `virtual_hosts` (YAML list), and the given clusters (YAML list items).
pub fn http_bootstrap(virtual_hosts: &str, clusters: &str) -> String {
    format!(
        r#"
static_resources:
  listeners:
  - name: http
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: ingress
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
          route_config:
            name: local
            virtual_hosts:
{}
  clusters:
{}
"#,
        indent(virtual_hosts, 12),
        indent(clusters, 2)
    )
}

/// `text` with every non-empty line indented by `n` spaces, to nest YAML.
pub fn indent(text: &str, n: usize) -> String {
    let pad = " ".repeat(n);
    text.lines()
        .map(|l| {
            if l.is_empty() {
                String::new()
            } else {
                format!("{pad}{l}")
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// One traced hop of a test chain: a proxy whose listener `http` (a sidecar's, by
/// `direction`) traces with `provider` and routes everything to cluster `next`; the
/// tracer reports to cluster `collector` (named by the provider).
pub struct TracedHop<'a> {
    /// The workload (`NAME.default`) and its operation's service.
    pub name: &'a str,
    /// The node's IP in its Istio node id.
    pub ip: &'a str,
    /// `INBOUND`, `OUTBOUND` or `UNSPECIFIED` (a gateway).
    pub direction: &'a str,
    /// Percent of requests sampled.
    pub sampling: &'a str,
    /// Custom tags after Istio's `istio.mesh_id`, as YAML list items (may be empty).
    pub tags: &'a str,
    /// The `provider:` block's body (`name:` and `typed_config:`), unindented.
    pub provider: &'a str,
    /// Where requests go.
    pub next: SocketAddr,
    /// The tracer's cluster: its name and address.
    pub collector: (&'a str, SocketAddr),
}

impl TracedHop<'_> {
    /// The hop's bootstrap (no admin).
    pub fn yaml(&self) -> String {
        let TracedHop {
            name,
            ip,
            direction,
            sampling,
            ..
        } = self;
        format!(
            r#"
node: {{id: "sidecar~{ip}~{name}.default~default.svc.cluster.local", cluster: {name}.default, locality: {{zone: zone-a}}}}
static_resources:
  listeners:
  - name: http
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    traffic_direction: {direction}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: {name}
          tracing:
            random_sampling: {{value: {sampling}}}
            custom_tags:
            - {{tag: istio.mesh_id, literal: {{value: mesh1}}}}
{tags}
            provider:
{provider}
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
          route_config:
            name: local
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{prefix: "/"}}
                route: {{cluster: next}}
                decorator: {{operation: "{name}.default.svc.cluster.local:80/*"}}
  clusters:
{next}
{collector}
"#,
            tags = indent(self.tags, 12),
            provider = indent(self.provider, 14),
            next = indent(&cluster("next", &[self.next]), 2),
            collector = indent(&cluster(self.collector.0, &[self.collector.1]), 2),
        )
    }
}
