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

/// A TLS ClientHello naming `sni`, as a client's first bytes.
fn client_hello(sni: &str) -> Vec<u8> {
    let name = sni.as_bytes();
    let mut sni_ext = Vec::new();
    sni_ext.extend((name.len() as u16 + 3).to_be_bytes());
    sni_ext.push(0);
    sni_ext.extend((name.len() as u16).to_be_bytes());
    sni_ext.extend(name);
    let mut exts = Vec::new();
    exts.extend(0u16.to_be_bytes());
    exts.extend((sni_ext.len() as u16).to_be_bytes());
    exts.extend(sni_ext);
    let mut body = vec![3, 3];
    body.extend([7u8; 32]);
    body.push(0);
    body.extend(2u16.to_be_bytes());
    body.extend([0x13, 0x01]);
    body.extend([1, 0]);
    body.extend((exts.len() as u16).to_be_bytes());
    body.extend(exts);
    let mut handshake = vec![1];
    handshake.extend(&(body.len() as u32).to_be_bytes()[1..]);
    handshake.extend(body);
    let mut record = vec![0x16, 3, 1];
    record.extend((handshake.len() as u16).to_be_bytes());
    record.extend(handshake);
    record
}

#[tokio::test]
async fn tls_passthrough_is_routed_by_sni() {
    let api = echo("api").await;
    let web = echo("web").await;
    let chain = |names: &str, cluster: &str| {
        format!(
            r#"    - filter_chain_match: {{server_names: [{names}], transport_protocol: tls}}
      filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: {cluster}
          cluster: {cluster}
"#
        )
    };
    let clusters: String = (cluster("api", &[api]) + &cluster("web", &[web]))
        .lines()
        .map(|l| format!("  {l}\n"))
        .collect();
    let yaml = format!(
        r#"
static_resources:
  listeners:
  - name: tls
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    listener_filters:
    - name: envoy.filters.listener.tls_inspector
      typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector}}
    filter_chains:
{}{}  clusters:
{clusters}"#,
        chain("api.example.com", "api"),
        chain("\"*.example.com\"", "web"),
    );
    let proxy = proxy(&yaml).await;
    let addr = proxy.listener_addr("tls").await;
    for (sni, expected) in [("api.example.com", "api"), ("www.example.com", "web")] {
        let hello = client_hello(sni);
        let mut stream = TcpStream::connect(addr).await.unwrap();
        stream.write_all(&hello).await.unwrap();
        let mut reply = vec![0u8; expected.len() + 1 + hello.len()];
        stream.read_exact(&mut reply).await.unwrap();
        assert_eq!(
            &reply[..expected.len() + 1],
            format!("{expected}:").as_bytes(),
            "{sni}"
        );
        assert_eq!(
            &reply[expected.len() + 1..],
            &hello[..],
            "the ClientHello arrives untouched"
        );
    }
    // No chain for other names: the connection is closed (reset, as the proxy never
    // read the ClientHello it peeked at).
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream.write_all(&client_hello("other.org")).await.unwrap();
    let mut buf = [0u8; 1];
    match stream.read(&mut buf).await {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("expected the connection closed, got {other:?}"),
    }
}
