//! TCP through the proxy: bytes relayed both ways to the cluster's endpoint.

mod common;

use common::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[tokio::test]
async fn relays_bytes_both_ways() {
    let echo = echo("db").await;
    let yaml = format!(
        r#"
static_resources:
  listeners:
  - name: tcp
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: db
          cluster: db
  clusters:
{}
"#,
        cluster("db", &[echo])
            .lines()
            .map(|l| format!("  {l}\n"))
            .collect::<String>()
    );
    let proxy = proxy(&yaml).await;
    let addr = proxy.listener_addr("tcp").await;
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(b"ping").await.unwrap();
    let mut buf = [0u8; 7];
    stream.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"db:ping");
}
