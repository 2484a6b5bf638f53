//! gRPC through the proxy: a bidirectional stream (ADS itself, from Mizzen's own xDS
//! client to its own server) crosses it over HTTP/2 both ways, and a status sent in
//! trailers reaches the client unchanged.

mod common;

use std::time::Duration;

use common::*;
use mizzen_xds::pb::envoy::config::cluster::v3::Cluster;
use mizzen_xds::pb::envoy::config::core::v3::Node;
use mizzen_xds::{
    AdsClient, AdsServer, ClientOptions, Generated, NamedResource, ResourceSource, ResourceType,
    Subscription,
};
use tokio::net::TcpListener;
use tokio_stream::StreamExt;

/// Serves one cluster to every node but those whose id starts with `refused`.
struct OneCluster;

impl ResourceSource for OneCluster {
    type Proxy = ();
    fn connect(&self, node: &Node) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
        if node.id.starts_with("refused") {
            return Err("not welcome".into());
        }
        Ok(())
    }
    fn generate(&self, _: &(), ty: ResourceType, _: &Subscription) -> Generated {
        let resources = match ty {
            ResourceType::Cluster => vec![NamedResource::new(
                "through-the-proxy",
                &Cluster {
                    name: "through-the-proxy".into(),
                    ..Default::default()
                },
            )],
            _ => Vec::new(),
        };
        Generated {
            version: "1".into(),
            resources,
        }
    }
}

#[tokio::test]
async fn grpc_streams_and_trailers_cross_the_proxy() {
    let socket = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let server_addr = socket.local_addr().unwrap();
    let server = AdsServer::new(OneCluster);
    tokio::spawn(async move { server.serve(socket, std::future::pending()).await });

    let http2_cluster = cluster("xds", &[server_addr]).replace(
        "  connect_timeout: 1s\n",
        "  connect_timeout: 1s\n  typed_extension_protocol_options:\n    envoy.extensions.upstreams.http.v3.HttpProtocolOptions:\n      \"@type\": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions\n      explicit_http_config: {http2_protocol_options: {}}\n",
    );
    let yaml = http_bootstrap(
        r#"- name: all
  domains: ["*"]
  routes: [{match: {prefix: "/", grpc: {}}, route: {cluster: xds, timeout: 0s}}]
"#,
        &http2_cluster,
    );
    let proxy = proxy(&yaml).await;
    let addr = proxy.listener_addr("http").await;

    let node = |id: &str| Node {
        id: id.into(),
        ..Node::default()
    };
    let client = AdsClient::start(
        ClientOptions::new(
            format!("http://{addr}"),
            node("sidecar~1.1.1.1~a.default~default.svc.cluster.local"),
        ),
        |_, _| Ok(()),
    );
    let state = tokio::time::timeout(
        Duration::from_secs(10),
        client.wait_until(|s| s.version(ResourceType::Cluster).is_some()),
    )
    .await
    .expect("the stream delivers through the proxy");
    assert!(
        state.types[&ResourceType::Cluster]
            .resources
            .contains_key("through-the-proxy")
    );

    // A refused node: the server ends the stream with INVALID_ARGUMENT in its trailers.
    let channel = tonic::transport::Endpoint::from_shared(format!("http://{addr}"))
        .unwrap()
        .connect()
        .await
        .unwrap();
    let mut raw = mizzen_xds::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient::new(channel);
    let first = mizzen_xds::pb::envoy::service::discovery::v3::DiscoveryRequest {
        node: Some(node("refused~x")),
        type_url: ResourceType::Cluster.type_url().into(),
        ..Default::default()
    };
    let mut responses = raw
        .stream_aggregated_resources(tokio_stream::iter([first]).chain(tokio_stream::pending()))
        .await
        .unwrap()
        .into_inner();
    let status = responses.message().await.unwrap_err();
    assert_eq!(status.code(), tonic::Code::InvalidArgument);
    assert!(
        status.message().contains("not welcome"),
        "{}",
        status.message()
    );
}
