//! Test authorization servers for `envoy.filters.http.ext_authz` and the proxy config
//! that checks with them: an HTTP server answering each check as the test decides, a
//! gRPC one (`envoy.service.auth.v3.Authorization/Check`) likewise, and the bootstrap
//! putting the filter before the router.

use std::convert::Infallible;
use std::net::SocketAddr;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::{TokioExecutor, TokioIo};
use mizzen_xds::pb::envoy::config::core::v3::{HeaderValue, HeaderValueOption};
use mizzen_xds::pb::envoy::service::auth::v3::attribute_context::HttpRequest;
use mizzen_xds::pb::envoy::service::auth::v3::authorization_server::{
    Authorization, AuthorizationServer,
};
use mizzen_xds::pb::envoy::service::auth::v3::{
    CheckRequest, CheckResponse, DeniedHttpResponse, OkHttpResponse, check_response,
};
use mizzen_xds::pb::envoy::r#type::v3::HttpStatus;
use mizzen_xds::pb::google::rpc::Status;
use tokio::net::TcpListener;

use super::{all_to, cluster, http_bootstrap};

/// The HTTP filter's config type.
pub const EXT_AUTHZ: &str =
    "type.googleapis.com/envoy.extensions.filters.http.ext_authz.v3.ExtAuthz";

/// Serves `service` (HTTP/1.1 and h2c) on a fresh 127.0.0.1 port: an HTTP
/// authorization server, or a backend.
pub async fn serve<F, R>(service: F) -> SocketAddr
where
    F: Fn(Request<Incoming>) -> R + Clone + Send + Sync + 'static,
    R: Future<Output = Response<Full<Bytes>>> + Send + 'static,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let service = service.clone();
            let service = service_fn(move |r| {
                let answer = service(r);
                async move { Ok::<_, Infallible>(answer.await) }
            });
            tokio::spawn(async move {
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), service)
                    .await;
            });
        }
    });
    addr
}

/// What a gRPC check answers.
pub enum Decision {
    /// `OK`: headers for the upstream request, and for the client's response.
    Allow {
        upstream: Vec<(&'static str, String)>,
        client: Vec<(&'static str, String)>,
    },
    /// `PERMISSION_DENIED`, with the HTTP answer the client gets.
    Deny {
        status: u32,
        headers: Vec<(&'static str, String)>,
        body: String,
    },
}

/// The gRPC service, deciding on the HTTP request each check describes.
struct Grpc<D>(D);

#[tonic::async_trait]
impl<D> Authorization for Grpc<D>
where
    D: Fn(HttpRequest) -> Decision + Send + Sync + 'static,
{
    async fn check(
        &self,
        request: tonic::Request<CheckRequest>,
    ) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
        let http = request
            .into_inner()
            .attributes
            .and_then(|a| a.request)
            .and_then(|r| r.http)
            .unwrap_or_default();
        let headers = |list: Vec<(&str, String)>| -> Vec<HeaderValueOption> {
            list.into_iter()
                .map(|(key, value)| HeaderValueOption {
                    header: Some(HeaderValue {
                        key: key.into(),
                        value,
                        ..Default::default()
                    }),
                    ..Default::default()
                })
                .collect()
        };
        let response = match (self.0)(http) {
            Decision::Allow { upstream, client } => CheckResponse {
                status: Some(Status::default()),
                http_response: Some(check_response::HttpResponse::OkResponse(OkHttpResponse {
                    headers: headers(upstream),
                    response_headers_to_add: headers(client),
                    ..Default::default()
                })),
                ..Default::default()
            },
            Decision::Deny {
                status,
                headers: denied,
                body,
            } => CheckResponse {
                status: Some(Status {
                    code: tonic::Code::PermissionDenied as i32,
                    ..Default::default()
                }),
                http_response: Some(check_response::HttpResponse::DeniedResponse(
                    DeniedHttpResponse {
                        status: Some(HttpStatus {
                            code: status as i32,
                        }),
                        headers: headers(denied),
                        body,
                    },
                )),
                ..Default::default()
            },
        };
        Ok(tonic::Response::new(response))
    }
}

/// A gRPC authorization server on a fresh 127.0.0.1 port, answering each check with
/// `decide` of the HTTP request it describes.
pub async fn grpc_authz(
    decide: impl Fn(HttpRequest) -> Decision + Send + Sync + 'static,
) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(AuthorizationServer::new(Grpc(decide)))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );
    addr
}

/// The HTTP/2 cluster `authz` of `addr` (YAML list item), as a gRPC service needs.
pub fn h2_cluster(addr: SocketAddr) -> String {
    cluster("authz", &[addr]).replace(
        "  connect_timeout: 1s\n",
        "  connect_timeout: 1s\n  typed_extension_protocol_options:\n    envoy.extensions.upstreams.http.v3.HttpProtocolOptions:\n      \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions\n      explicit_http_config: {http2_protocol_options: {}}\n",
    )
}

/// The `envoy.filters.http.ext_authz` item of an `http_filters` list, its `ExtAuthz`
/// fields in YAML flow style.
pub fn ext_authz_filter(fields: &str) -> String {
    format!(
        "          - name: envoy.filters.http.ext_authz\n            typed_config: {{\"@type\": {EXT_AUTHZ}, {fields}}}\n"
    )
}

/// A bootstrap whose listener `http` runs `filters` (`http_filters` items) before
/// routing everything to the cluster `b` of `backend`, with `clusters` beside it.
pub fn bootstrap(filters: &str, backend: SocketAddr, clusters: &str) -> String {
    http_bootstrap(
        &all_to("b"),
        &format!("{}{clusters}", cluster("b", &[backend])),
    )
    .replace(
        "          http_filters:\n",
        &format!("          http_filters:\n{filters}"),
    )
}
