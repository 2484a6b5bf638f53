//! Calls from one demo app to another: through the sidecar's HTTP-proxy listener when
//! `HTTP_PROXY` is set (absolute-form requests, as any HTTP client behind a proxy
//! sends), else straight to the service's host.

use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http::{HeaderMap, HeaderValue, StatusCode, Uri, header};
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

/// The headers Bookinfo's services pass on from the request they serve to the calls they
/// make, so the mesh can join the spans into one trace and route by user.
pub const PROPAGATED: &[&str] = &[
    "x-request-id",
    "x-ot-span-context",
    "x-datadog-trace-id",
    "x-datadog-parent-id",
    "x-datadog-sampling-priority",
    "traceparent",
    "tracestate",
    "x-cloud-trace-context",
    "grpc-trace-bin",
    "b3",
    "x-b3-traceid",
    "x-b3-spanid",
    "x-b3-parentspanid",
    "x-b3-sampled",
    "x-b3-flags",
    "sw8",
    "user-agent",
];

/// The port every Bookinfo service listens on.
const SERVICE_PORT: u16 = 9080;

/// How this app reaches other services.
#[derive(Debug, Clone)]
pub struct Outbound {
    /// The proxy's `host:port`, when there is one.
    proxy: Option<String>,
}

impl Outbound {
    /// Reads `HTTP_PROXY` (or `http_proxy`): `http://HOST:PORT`.
    pub fn from_env() -> anyhow::Result<Outbound> {
        let proxy = ["HTTP_PROXY", "http_proxy"]
            .iter()
            .find_map(|name| Some((*name, std::env::var(name).ok()?)))
            .filter(|(_, value)| !value.is_empty());
        let Some((name, value)) = proxy else {
            return Ok(Outbound { proxy: None });
        };
        let uri: Uri = value
            .parse()
            .with_context(|| format!("{name}={value:?}: not a URL"))?;
        anyhow::ensure!(
            uri.scheme_str().is_none_or(|s| s == "http"),
            "{name}={value:?}: only http:// proxies are supported"
        );
        let authority = uri
            .authority()
            .with_context(|| format!("{name}={value:?}: no host:port"))?;
        let port = authority.port_u16().unwrap_or(80);
        Ok(Outbound {
            proxy: Some(format!("{}:{port}", authority.host())),
        })
    }

    /// Calls go through the HTTP proxy at `proxy` (`host:port`).
    #[cfg(test)]
    pub fn through(proxy: std::net::SocketAddr) -> Outbound {
        Outbound {
            proxy: Some(proxy.to_string()),
        }
    }

    /// Calls go straight to each service's host.
    #[cfg(test)]
    pub fn direct() -> Outbound {
        Outbound { proxy: None }
    }

    /// GETs `path` from `upstream` with `headers`, giving up after `timeout`.
    pub async fn get(
        &self,
        upstream: &Upstream,
        path: &str,
        headers: HeaderMap,
        timeout: Duration,
    ) -> anyhow::Result<Fetched> {
        let (connect_to, target) = match &self.proxy {
            Some(proxy) => (
                proxy.as_str(),
                format!("http://{}{path}", upstream.authority),
            ),
            None => (upstream.authority.as_str(), path.to_owned()),
        };
        let mut request = http::Request::get(&target)
            .body(Empty::<Bytes>::new())
            .with_context(|| format!("{}: bad request target {target:?}", upstream.name))?;
        *request.headers_mut() = headers;
        request.headers_mut().insert(
            header::HOST,
            HeaderValue::from_str(&upstream.authority)
                .with_context(|| format!("{}: bad host {:?}", upstream.name, upstream.authority))?,
        );
        let call = async {
            let (status, body) = send(connect_to, request).await?;
            anyhow::Ok(Fetched { status, body })
        };
        tokio::time::timeout(timeout, call)
            .await
            .map_err(|_| anyhow::anyhow!("no answer within {timeout:?}"))
            .and_then(|fetched| fetched)
            .with_context(|| match &self.proxy {
                Some(proxy) => format!("{} via proxy {proxy}: GET {target}", upstream.name),
                None => format!(
                    "{}: GET http://{}{path} (no HTTP_PROXY is set; {} names the host to call directly)",
                    upstream.name, upstream.authority, upstream.hostname_var
                ),
            })
    }
}

/// A service another app calls, as `host:port`.
#[derive(Debug, Clone)]
pub struct Upstream {
    name: &'static str,
    authority: String,
    hostname_var: &'static str,
}

impl Upstream {
    /// Service `name` on port 9080, its host taken from env `hostname_var` when set (as
    /// Bookinfo's `DETAILS_HOSTNAME`…); a value with a port keeps its port.
    pub fn from_env(name: &'static str, hostname_var: &'static str) -> Upstream {
        let host = std::env::var(hostname_var).unwrap_or_default();
        Upstream::at(
            name,
            hostname_var,
            if host.is_empty() { name } else { &host },
        )
    }

    /// Service `name` at `host` (`host` or `host:port`; port 9080 when not given).
    pub fn at(name: &'static str, hostname_var: &'static str, host: &str) -> Upstream {
        let authority = match host.parse::<http::uri::Authority>() {
            Ok(a) if a.port().is_some() => host.to_owned(),
            _ => format!("{host}:{SERVICE_PORT}"),
        };
        Upstream {
            name,
            authority,
            hostname_var,
        }
    }
}

/// A response from an upstream.
#[derive(Debug)]
pub struct Fetched {
    /// Its status.
    pub status: StatusCode,
    /// Its whole body.
    pub body: Bytes,
}

impl Fetched {
    /// The body as JSON, when the upstream answered 200 with JSON.
    pub fn ok_json(&self) -> Option<serde_json::Value> {
        (self.status == StatusCode::OK)
            .then(|| serde_json::from_slice(&self.body).ok())
            .flatten()
    }
}

/// The headers of `incoming` named in `names` (lowercase).
pub fn propagated(
    incoming: &HeaderMap,
    names: impl IntoIterator<Item = &'static str>,
) -> HeaderMap {
    let mut out = HeaderMap::new();
    for name in names {
        for value in incoming.get_all(name) {
            out.append(header::HeaderName::from_static(name), value.clone());
        }
    }
    out
}

/// Sends `request` on a new connection to `addr` (`host:port`) and reads the whole answer.
pub async fn send<B>(addr: &str, request: http::Request<B>) -> anyhow::Result<(StatusCode, Bytes)>
where
    B: hyper::body::Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let stream = TcpStream::connect(addr)
        .await
        .with_context(|| format!("connecting to {addr}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .with_context(|| format!("HTTP handshake with {addr}"))?;
    tokio::spawn(connection);
    let response = sender.send_request(request).await?;
    let status = response.status();
    let body = response.into_body().collect().await?.to_bytes();
    Ok((status, body))
}
