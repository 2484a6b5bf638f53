//! Mutual TLS between proxies, Istio's way: a client sidecar originates mTLS to endpoints
//! labelled `tlsMode: istio` (transport socket matches), a server sidecar terminates it
//! (STRICT, or PERMISSIVE beside plaintext), certificates with SPIFFE URI SANs from a CA
//! made in the test, served as `default` and `ROOTCA` by the proxy's agent or as static
//! secrets.

mod common;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use common::*;
use mizzen_proxy::Proxy;
use mizzen_xds::ResourceType;
use mizzen_xds::pb::envoy::config::core::v3::{DataSource, data_source::Specifier};
use mizzen_xds::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, Secret, TlsCertificate, secret::Type,
};
use mizzen_xds::pb::google::protobuf::Any;
use prost::{Message, Name};
use rcgen::{
    BasicConstraints, CertificateParams, DnType, IsCa, Issuer, KeyPair, SanType, SerialNumber,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::Notify;

const CLIENT_ID: &str = "spiffe://cluster.local/ns/default/sa/sleep";
const SERVER_ID: &str = "spiffe://cluster.local/ns/default/sa/httpbin";

/// A CA made for the test.
struct Ca {
    issuer: Issuer<'static, KeyPair>,
    pem: String,
}

/// A certificate signed by the test CA, with its key.
struct Leaf {
    cert: String,
    key: String,
}

impl Ca {
    fn new() -> Ca {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        // A subject of its own: a leaf named like its issuer looks self-signed to OpenSSL.
        params
            .distinguished_name
            .push(DnType::CommonName, "Mizzen test CA");
        let key = KeyPair::generate().unwrap();
        let pem = params.self_signed(&key).unwrap().pem();
        Ca {
            issuer: Issuer::new(params, key),
            pem,
        }
    }

    /// A workload certificate for the SPIFFE identity `id`, with serial `serial`.
    fn leaf(&self, id: &str, serial: u8) -> Leaf {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params
            .subject_alt_names
            .push(SanType::URI(id.try_into().unwrap()));
        params.serial_number = Some(SerialNumber::from_slice(&[serial]));
        params
            .distinguished_name
            .push(DnType::CommonName, "workload");
        let key = KeyPair::generate().unwrap();
        Leaf {
            cert: params.signed_by(&key, &self.issuer).unwrap().pem(),
            key: key.serialize_pem(),
        }
    }
}

fn inline(pem: &str) -> DataSource {
    DataSource {
        specifier: Some(Specifier::InlineString(pem.to_owned())),
        ..Default::default()
    }
}

/// Istio's `default` secret: the workload's certificate.
fn identity_secret(leaf: &Leaf) -> Secret {
    Secret {
        name: "default".into(),
        r#type: Some(Type::TlsCertificate(TlsCertificate {
            certificate_chain: Some(inline(&leaf.cert)),
            private_key: Some(inline(&leaf.key)),
            ..Default::default()
        })),
    }
}

/// Istio's `ROOTCA` secret: the mesh's trust bundle.
fn root_secret(ca: &Ca) -> Secret {
    Secret {
        name: "ROOTCA".into(),
        r#type: Some(Type::ValidationContext(CertificateValidationContext {
            trusted_ca: Some(inline(&ca.pem)),
            ..Default::default()
        })),
    }
}

/// Where TLS contexts take `default` and `ROOTCA` from.
#[derive(Clone, Copy)]
enum Source {
    /// The bootstrap's `static_resources.secrets`.
    Static,
    /// The proxy's agent (`sds-grpc`), as Istio writes it.
    Agent,
    /// SDS over ADS.
    Ads,
}

impl Source {
    fn sds_config(self) -> &'static str {
        match self {
            Source::Static => "",
            Source::Agent => {
                ", sds_config: {api_config_source: {api_type: GRPC, transport_api_version: V3, set_node_on_first_message_only: true, grpc_services: [{envoy_grpc: {cluster_name: sds-grpc}}]}, initial_fetch_timeout: 0s, resource_api_version: V3}"
            }
            Source::Ads => ", sds_config: {ads: {}, resource_api_version: V3}",
        }
    }
}

/// `static_resources.secrets` holding `leaf` as `default` and the CA as `ROOTCA`.
fn static_secrets(ca: &Ca, leaf: &Leaf) -> String {
    format!(
        "  secrets:\n  - {{name: default, tls_certificate: {{certificate_chain: {{inline_string: {:?}}}, private_key: {{inline_string: {:?}}}}}}}\n  - {{name: ROOTCA, validation_context: {{trusted_ca: {{inline_string: {:?}}}}}}}\n",
        leaf.cert, leaf.key, ca.pem
    )
}

/// A `common_tls_context` naming `default` (when `with_cert`) and `ROOTCA` from
/// `source`, with `sans` to match and `alpn`.
fn common_context(source: Source, with_cert: bool, sans: &[&str], alpn: &str) -> String {
    let sds = source.sds_config();
    let cert = if with_cert {
        format!("tls_certificate_sds_secret_configs: [{{name: default{sds}}}], ")
    } else {
        String::new()
    };
    let sans: Vec<String> = sans.iter().map(|s| format!("{{exact: {s:?}}}")).collect();
    format!(
        "{{alpn_protocols: [{alpn}], {cert}combined_validation_context: {{default_validation_context: {{match_subject_alt_names: [{}]}}, validation_context_sds_secret_config: {{name: ROOTCA{sds}}}}}}}",
        sans.join(", ")
    )
}

/// An HTTP connection manager sending everything to `cluster`, appending to
/// `x-forwarded-client-cert` as Istio's sidecars do.
fn hcm(prefix: &str, cluster: &str) -> String {
    format!(
        r#"- name: envoy.filters.network.http_connection_manager
  typed_config:
    "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
    stat_prefix: {prefix}
    forward_client_cert_details: APPEND_FORWARD
    set_current_client_cert_details: {{subject: true, dns: true, uri: true}}
    http_filters:
    - name: envoy.filters.http.router
      typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}}
    route_config:
      name: local
      virtual_hosts:
{}"#,
        indent(&all_to(cluster), 6)
    )
}

/// How the server sidecar treats plaintext.
#[derive(Clone, Copy, PartialEq)]
enum Mode {
    Strict,
    Permissive,
}

/// A server sidecar: an `inbound` listener terminating mTLS (and, PERMISSIVE, serving
/// plaintext beside it) in front of `backend`, spoken to in the client's HTTP version.
fn server_yaml(mode: Mode, source: Source, backend: SocketAddr, secrets: &str) -> String {
    let tls_chain = format!(
        r#"- filter_chain_match:
    transport_protocol: tls
    application_protocols: [istio-peer-exchange, istio, istio-http/1.0, istio-http/1.1, istio-h2]
  transport_socket:
    name: envoy.transport_sockets.tls
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext
      require_client_certificate: true
      common_tls_context: {}
  filters:
{}"#,
        common_context(source, true, &[], "h2, http/1.1"),
        indent(&hcm("inbound_tls", "backend"), 2)
    );
    let plain_chain = format!(
        "- filter_chain_match: {{transport_protocol: raw_buffer}}\n  filters:\n{}",
        indent(&hcm("inbound_plain", "backend"), 2)
    );
    let chains = match mode {
        Mode::Strict => tls_chain,
        Mode::Permissive => format!("{tls_chain}\n{plain_chain}"),
    };
    format!(
        r#"{ADMIN}static_resources:
{secrets}  listeners:
  - name: inbound
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    listener_filters:
    - name: envoy.filters.listener.tls_inspector
      typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector}}
    filter_chains:
{}
  clusters:
{}
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        use_downstream_protocol_config: {{}}
"#,
        indent(&chains, 4),
        indent(&cluster("backend", &[backend]), 2)
    )
}

/// How the client sidecar originates TLS to the server.
struct Origination<'a> {
    source: Source,
    with_cert: bool,
    sans: &'a [&'a str],
    http2: bool,
    /// Each request on a connection of its own (a handshake per request).
    one_request_per_connection: bool,
}

impl Default for Origination<'_> {
    fn default() -> Self {
        Origination {
            source: Source::Agent,
            with_cert: true,
            sans: &[SERVER_ID],
            http2: false,
            one_request_per_connection: false,
        }
    }
}

/// A client sidecar: a plaintext `outbound` listener for the app, sending to `server`
/// with Istio's auto mTLS (the endpoint is labelled `tlsMode: istio`).
fn client_yaml(o: &Origination<'_>, server: SocketAddr, secrets: &str) -> String {
    let protocol = if o.http2 {
        "explicit_http_config: {http2_protocol_options: {}}"
    } else {
        "explicit_http_config: {http_protocol_options: {}}"
    };
    let per_connection = if o.one_request_per_connection {
        "\n        common_http_protocol_options: {max_requests_per_connection: 1}"
    } else {
        ""
    };
    format!(
        r#"{ADMIN}static_resources:
{secrets}  listeners:
  - name: outbound
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    filter_chains:
    - filters:
{}
  clusters:
  - name: server
    type: STATIC
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        {protocol}{per_connection}
    transport_socket_matches:
    - name: tlsMode-istio
      match: {{tlsMode: istio}}
      transport_socket:
        name: envoy.transport_sockets.tls
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
          sni: outbound_.8000_._.httpbin.default.svc.cluster.local
          common_tls_context: {}
    - name: tlsMode-disabled
      match: {{}}
      transport_socket:
        name: envoy.transport_sockets.raw_buffer
        typed_config: {{"@type": type.googleapis.com/envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer}}
    load_assignment:
      cluster_name: server
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: {}, port_value: {}}}}}}}
          metadata: {{filter_metadata: {{envoy.transport_socket_match: {{tlsMode: istio}}}}}}
"#,
        indent(&hcm("outbound", "server"), 6),
        common_context(o.source, o.with_cert, o.sans, "istio-peer-exchange, istio"),
        server.ip(),
        server.port()
    )
}

/// A started proxy whose agent-served secrets were provided, ready to serve.
async fn start(yaml: &str, agent: &[Secret]) -> Proxy {
    let proxy = proxy(yaml).await;
    for secret in agent {
        proxy.store().provide_secret(secret.clone()).unwrap();
    }
    proxy.ready().await;
    proxy
}

/// A server sidecar (identity `SERVER_ID`, serial 1) in front of a backend, and its
/// inbound address.
async fn server(ca: &Ca, mode: Mode) -> (Proxy, SocketAddr) {
    let backend = backend("httpbin").await;
    let yaml = server_yaml(mode, Source::Agent, backend, "");
    let proxy = start(
        &yaml,
        &[identity_secret(&ca.leaf(SERVER_ID, 1)), root_secret(ca)],
    )
    .await;
    let addr = proxy.listener_addr("inbound").await;
    (proxy, addr)
}

/// A client sidecar (identity `CLIENT_ID`) originating as `o` says to `server`, and
/// its outbound address.
async fn client(ca: &Ca, o: &Origination<'_>, server: SocketAddr) -> (Proxy, SocketAddr) {
    let yaml = client_yaml(o, server, "");
    let proxy = start(
        &yaml,
        &[identity_secret(&ca.leaf(CLIENT_ID, 7)), root_secret(ca)],
    )
    .await;
    let addr = proxy.listener_addr("outbound").await;
    (proxy, addr)
}

fn counter(proxy: &Proxy, name: &str) -> u64 {
    let text = proxy.store().stats().text();
    text.lines()
        .find_map(|l| l.strip_prefix(&format!("{name}: ")))
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
        .parse()
        .unwrap()
}

/// A direct TLS connection to `addr` presenting `leaf` (if any) and trusting `ca`;
/// what the server's certificate says, and the stream.
async fn handshake(
    addr: SocketAddr,
    ca: &Ca,
    leaf: Option<&Leaf>,
) -> std::io::Result<(String, tokio_rustls::client::TlsStream<TcpStream>)> {
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(ca.pem.as_bytes()).unwrap())
        .unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots.clone());
    let mut config = match leaf {
        Some(l) => builder
            .with_client_auth_cert(
                vec![CertificateDer::from_pem_slice(l.cert.as_bytes()).unwrap()],
                PrivateKeyDer::from_pem_slice(l.key.as_bytes()).unwrap(),
            )
            .unwrap(),
        None => builder.with_no_client_auth(),
    };
    // The server's SAN is a SPIFFE URI, which webpki does not match: the chain is
    // checked, not the name.
    config
        .dangerous()
        .set_certificate_verifier(Arc::new(CaOnly(Arc::new(roots))));
    // Istio's ALPN, which the server's chain asks for, and HTTP/1.1 to speak.
    config.alpn_protocols = vec![b"istio".to_vec(), b"http/1.1".to_vec()];
    let tcp = TcpStream::connect(addr).await?;
    let stream = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(ServerName::try_from("httpbin.default").unwrap(), tcp)
        .await?;
    let serial = {
        let (_, conn) = stream.get_ref();
        let der = &conn.peer_certificates().unwrap()[0];
        x509_serial(der)
    };
    Ok((serial, stream))
}

fn x509_serial(der: &[u8]) -> String {
    use x509_parser::prelude::FromDer;
    let (_, cert) = x509_parser::certificate::X509Certificate::from_der(der).unwrap();
    cert.raw_serial()
        .iter()
        .skip_while(|b| **b == 0)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// Verifies the chain against the CA and ignores the name (the server's identity is a
/// SPIFFE URI, which webpki does not match).
#[derive(Debug)]
struct CaOnly(Arc<rustls::RootCertStore>);

impl CaOnly {
    fn algorithms() -> rustls::crypto::WebPkiSupportedAlgorithms {
        rustls::crypto::ring::default_provider().signature_verification_algorithms
    }
}

impl rustls::client::danger::ServerCertVerifier for CaOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        now: rustls::pki_types::UnixTime,
    ) -> Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        let parsed = rustls::server::ParsedCertificate::try_from(end_entity)?;
        rustls::client::verify_server_cert_signed_by_trust_anchor(
            &parsed,
            &self.0,
            intermediates,
            now,
            Self::algorithms().all,
        )?;
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &Self::algorithms())
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &Self::algorithms())
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        Self::algorithms().supported_schemes()
    }
}

#[tokio::test]
async fn mtls_between_two_sidecars_carries_http1_and_h2_with_the_clients_identity() {
    let ca = Ca::new();
    let (server, inbound) = server(&ca, Mode::Strict).await;
    for http2 in [false, true] {
        let o = Origination {
            http2,
            ..Default::default()
        };
        let (_client, outbound) = client(&ca, &o, inbound).await;
        let got = send(outbound, get("httpbin", "/headers")).await;
        assert_eq!(got.status, 200, "{}", got.body);
        let seen = got.seen();
        assert_eq!(seen.backend, "httpbin");
        // The server sidecar speaks to its app what the mTLS hop carried.
        let version = if http2 { "HTTP/2.0" } else { "HTTP/1.1" };
        assert_eq!(seen.version, version);
        let xfcc = &seen.headers["x-forwarded-client-cert"];
        assert!(xfcc.starts_with(&format!("By={SERVER_ID};Hash=")), "{xfcc}");
        assert!(
            xfcc.ends_with(&format!(";Subject=\"CN=workload\";URI={CLIENT_ID}")),
            "{xfcc}"
        );
    }
    assert_eq!(counter(&server, "listener.127.0.0.1_0.ssl.handshake"), 2);
}

#[tokio::test]
async fn permissive_serves_plaintext_and_mtls_on_one_port() {
    let ca = Ca::new();
    let (_server, inbound) = server(&ca, Mode::Permissive).await;
    let plain = send(inbound, get("httpbin", "/")).await;
    assert_eq!(plain.status, 200);
    assert!(!plain.seen().headers.contains_key("x-forwarded-client-cert"));
    let (_client, outbound) = client(&ca, &Origination::default(), inbound).await;
    let mtls = send(outbound, get("httpbin", "/")).await;
    assert_eq!(mtls.status, 200);
    assert!(mtls.seen().headers["x-forwarded-client-cert"].contains(CLIENT_ID));
}

#[tokio::test]
async fn strict_refuses_plaintext_and_clients_without_a_certificate() {
    let ca = Ca::new();
    let (server, inbound) = server(&ca, Mode::Strict).await;
    // Plaintext matches no chain: the connection is closed without an answer.
    let mut plain = TcpStream::connect(inbound).await.unwrap();
    plain
        .write_all(b"GET / HTTP/1.1\r\nhost: httpbin\r\n\r\n")
        .await
        .unwrap();
    let mut buf = Vec::new();
    let read = plain.read_to_end(&mut buf).await;
    assert!(read.is_err() || buf.is_empty(), "{buf:?}");
    // A sidecar with no certificate to present (TLS 1.2, as Envoy's clients default to,
    // fails in the handshake): a connect failure.
    let o = Origination {
        with_cert: false,
        ..Default::default()
    };
    let (client, outbound) = client(&ca, &o, inbound).await;
    let got = send(outbound, get("httpbin", "/")).await;
    assert_eq!(got.status, 503, "{}", got.body);
    assert_eq!(
        counter(&client, "cluster.server.upstream_cx_connect_fail"),
        1
    );
    assert_eq!(
        counter(&server, "listener.127.0.0.1_0.ssl.fail_verify_no_cert"),
        1
    );
    // A TLS 1.3 client without a certificate finishes its half; the server's refusal
    // ends the connection before any answer.
    let (_, mut tls) = handshake(inbound, &ca, None).await.unwrap();
    let _ = tls
        .write_all(b"GET / HTTP/1.1\r\nhost: httpbin\r\n\r\n")
        .await;
    let mut buf = Vec::new();
    let read = tls.read_to_end(&mut buf).await;
    assert!(
        read.is_err() || buf.is_empty(),
        "{}",
        String::from_utf8_lossy(&buf)
    );
}

#[tokio::test]
async fn a_server_whose_san_is_not_listed_is_refused_with_503_uf() {
    let ca = Ca::new();
    let (_server, inbound) = server(&ca, Mode::Strict).await;
    let o = Origination {
        sans: &["spiffe://cluster.local/ns/default/sa/someone-else"],
        ..Default::default()
    };
    let (client, outbound) = client(&ca, &o, inbound).await;
    let got = send(outbound, get("httpbin", "/")).await;
    assert_eq!(got.status, 503);
    assert!(
        got.body.starts_with("upstream connect error"),
        "{}",
        got.body
    );
    assert_eq!(counter(&client, "cluster.server.ssl.fail_verify_san"), 1);
    assert_eq!(
        counter(&client, "cluster.server.upstream_cx_connect_fail"),
        1
    );
}

#[tokio::test]
async fn sni_passthrough_relays_tls_it_does_not_terminate() {
    // The server sidecar is the TLS backend; a passthrough proxy in front of it picks
    // the chain by SNI and relays the bytes untouched.
    let ca = Ca::new();
    let (_server, inbound) = server(&ca, Mode::Strict).await;
    let yaml = format!(
        r#"static_resources:
  listeners:
  - name: passthrough
    address: {{socket_address: {{address: 127.0.0.1, port_value: 0}}}}
    listener_filters:
    - name: envoy.filters.listener.tls_inspector
      typed_config: {{"@type": type.googleapis.com/envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector}}
    filter_chains:
    - filter_chain_match: {{server_names: [httpbin.default]}}
      filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: passthrough
          cluster: server
  clusters:
{}"#,
        indent(&cluster("server", &[inbound]), 2)
    );
    let passthrough = proxy(&yaml).await;
    let addr = passthrough.listener_addr("passthrough").await;
    let (serial, mut tls) = handshake(addr, &ca, Some(&ca.leaf(CLIENT_ID, 9)))
        .await
        .unwrap();
    assert_eq!(serial, "01");
    tls.write_all(b"GET / HTTP/1.1\r\nhost: httpbin\r\nconnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    tls.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
}

#[tokio::test]
async fn a_rotated_certificate_serves_new_handshakes_with_no_failed_request() {
    let ca = Ca::new();
    let (server, inbound) = server(&ca, Mode::Strict).await;
    let o = Origination {
        one_request_per_connection: true,
        ..Default::default()
    };
    let (_client, outbound) = client(&ca, &o, inbound).await;
    let me = ca.leaf(CLIENT_ID, 3);
    assert_eq!(handshake(inbound, &ca, Some(&me)).await.unwrap().0, "01");

    let done = Arc::new(AtomicUsize::new(0));
    let failed = Arc::new(AtomicUsize::new(0));
    let progress = Arc::new(Notify::new());
    let stop = Arc::new(tokio::sync::watch::channel(false).0);
    let load: Vec<_> = (0..4)
        .map(|_| {
            let (done, failed, progress) = (done.clone(), failed.clone(), progress.clone());
            let mut stopped = stop.subscribe();
            tokio::spawn(async move {
                while !*stopped.borrow_and_update() {
                    let got = send(outbound, get("httpbin", "/")).await;
                    if got.status == 200 {
                        done.fetch_add(1, Ordering::Relaxed);
                    } else {
                        failed.fetch_add(1, Ordering::Relaxed);
                    }
                    progress.notify_waiters();
                }
            })
        })
        .collect();
    let reach = |n: usize| {
        let (done, progress) = (done.clone(), progress.clone());
        async move {
            loop {
                let notified = progress.notified();
                if done.load(Ordering::Relaxed) >= n {
                    return;
                }
                notified.await;
            }
        }
    };
    reach(50).await;
    server
        .store()
        .provide_secret(identity_secret(&ca.leaf(SERVER_ID, 2)))
        .unwrap();
    // The next handshake presents the new certificate.
    assert_eq!(handshake(inbound, &ca, Some(&me)).await.unwrap().0, "02");
    let rotated_at = done.load(Ordering::Relaxed);
    reach(rotated_at + 50).await;
    stop.send_replace(true);
    for task in load {
        task.await.unwrap();
    }
    assert_eq!(failed.load(Ordering::Relaxed), 0);
}

#[tokio::test]
async fn a_bad_pem_over_sds_is_nacked_and_the_old_secret_keeps_serving() {
    let ca = Ca::new();
    let backend = backend("httpbin").await;
    let yaml = server_yaml(Mode::Strict, Source::Ads, backend, "");
    let server = proxy(&yaml).await;
    let sds = |secrets: &[Secret]| {
        secrets
            .iter()
            .map(|s| {
                let any = Any {
                    type_url: Secret::type_url(),
                    value: s.encode_to_vec(),
                };
                (s.name.clone(), any)
            })
            .collect()
    };
    // Warming until its secrets arrive.
    assert!(!server.store().is_ready());
    let good = [identity_secret(&ca.leaf(SERVER_ID, 1)), root_secret(&ca)];
    server
        .store()
        .apply(ResourceType::Secret, &sds(&good))
        .unwrap();
    server.ready().await;
    let inbound = server.listener_addr("inbound").await;
    let me = ca.leaf(CLIENT_ID, 3);
    assert_eq!(handshake(inbound, &ca, Some(&me)).await.unwrap().0, "01");

    let mut bad = identity_secret(&ca.leaf(SERVER_ID, 2));
    if let Some(Type::TlsCertificate(c)) = &mut bad.r#type {
        c.private_key = Some(inline(
            "-----BEGIN PRIVATE KEY-----\nbm9wZQ==\n-----END PRIVATE KEY-----\n",
        ));
    }
    let nack = server
        .store()
        .apply(ResourceType::Secret, &sds(&[bad, root_secret(&ca)]))
        .unwrap_err();
    assert!(
        nack.starts_with("secret \"default\": tls_certificate.private_key: "),
        "{nack}"
    );
    assert_eq!(handshake(inbound, &ca, Some(&me)).await.unwrap().0, "01");
    let (_client, outbound) = client(&ca, &Origination::default(), inbound).await;
    assert_eq!(send(outbound, get("httpbin", "/")).await.status, 200);
}

#[tokio::test]
async fn config_dump_shows_secrets_with_keys_redacted_and_certs_lists_contexts() {
    let ca = Ca::new();
    let (server, _) = server(&ca, Mode::Strict).await;
    let admin = server.admin_addr().unwrap();
    let dump = send(admin, get("admin", "/config_dump")).await;
    let dump: serde_json::Value = serde_json::from_str(&dump.body).unwrap();
    let secrets = dump["configs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["@type"] == "type.googleapis.com/envoy.admin.v3.SecretsConfigDump")
        .unwrap();
    let active = secrets["dynamic_active_secrets"].as_array().unwrap();
    let names: Vec<&str> = active.iter().map(|s| s["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["ROOTCA", "default"]);
    let default = &active[1]["secret"]["tls_certificate"];
    assert_eq!(default["private_key"]["inline_string"], "[redacted]");
    assert!(
        default["certificate_chain"]["inline_string"]
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN CERTIFICATE-----")
    );

    let certs = send(admin, get("admin", "/certs")).await;
    let certs: serde_json::Value = serde_json::from_str(&certs.body).unwrap();
    let context = &certs["certificates"][0];
    assert_eq!(context["cert_chain"][0]["serial_number"], "01");
    assert_eq!(
        context["cert_chain"][0]["subject_alt_names"][0]["uri"],
        SERVER_ID
    );
    assert_eq!(context["ca_cert"].as_array().unwrap().len(), 1);
}

/// What a client sidecar answers for `case` when its server sidecar is STRICT, the
/// same bootstrap given to Mizzen and to Envoy.
mod envoy_parity {
    use super::*;
    use common::envoy::Envoy;

    /// The cases: the client's certificate, the SANs it expects, the status Envoy gives.
    fn cases(ca: &Ca) -> Vec<(&'static str, Option<Leaf>, &'static str)> {
        vec![
            ("mutual", Some(ca.leaf(CLIENT_ID, 7)), SERVER_ID),
            ("no-client-cert", None, SERVER_ID),
            (
                "wrong-server-san",
                Some(ca.leaf(CLIENT_ID, 7)),
                "spiffe://cluster.local/ns/default/sa/other",
            ),
        ]
    }

    fn client_bootstrap(ca: &Ca, leaf: Option<&Leaf>, san: &str, server: SocketAddr) -> String {
        let fallback = ca.leaf(CLIENT_ID, 8);
        let o = Origination {
            source: Source::Static,
            with_cert: leaf.is_some(),
            sans: &[san],
            ..Default::default()
        };
        client_yaml(&o, server, &static_secrets(ca, leaf.unwrap_or(&fallback)))
    }

    #[tokio::test]
    async fn strict_mtls_accepts_and_refuses_as_envoy_does() {
        let ca = Ca::new();
        let backend = backend("httpbin").await;
        let server_secrets = static_secrets(&ca, &ca.leaf(SERVER_ID, 1));
        let server = server_yaml(Mode::Strict, Source::Static, backend, &server_secrets);
        let Some(envoy_server) = Envoy::start(&server).await else {
            return;
        };
        let mizzen_server = start(&server, &[]).await;
        let envoy_inbound = envoy_server.listener_addr("inbound").await;
        let mizzen_inbound = mizzen_server.listener_addr("inbound").await;
        let mut differences = Vec::new();
        for (case, leaf, san) in cases(&ca) {
            let envoy = Envoy::start(&client_bootstrap(&ca, leaf.as_ref(), san, envoy_inbound))
                .await
                .unwrap();
            let mizzen = start(
                &client_bootstrap(&ca, leaf.as_ref(), san, mizzen_inbound),
                &[],
            )
            .await;
            let via_envoy = send(envoy.listener_addr("outbound").await, get("httpbin", "/")).await;
            let via_mizzen =
                send(mizzen.listener_addr("outbound").await, get("httpbin", "/")).await;
            if via_envoy.status != via_mizzen.status {
                differences.push(format!(
                    "{case}: Envoy {} ({}), Mizzen {} ({})",
                    via_envoy.status, via_envoy.body, via_mizzen.status, via_mizzen.body
                ));
            }
        }
        assert!(differences.is_empty(), "{}", differences.join("\n"));
    }
}

/// `yaml` with Istio's stats filter before every router, its `inbound` listener
/// inbound and its `outbound` one outbound.
fn with_stats(yaml: &str) -> String {
    let mut out = String::new();
    for line in yaml.lines() {
        if line.trim_start() == "- name: envoy.filters.http.router" {
            let indent = &line[..line.len() - line.trim_start().len()];
            out.push_str(&format!(
                "{indent}- name: istio.stats\n{indent}  typed_config: {{\"@type\": type.googleapis.com/stats.PluginConfig}}\n"
            ));
        }
        out.push_str(line);
        out.push('\n');
        if line == "  - name: inbound" {
            out.push_str("    traffic_direction: INBOUND\n");
        }
        if line == "  - name: outbound" {
            out.push_str("    traffic_direction: OUTBOUND\n");
        }
    }
    out
}

/// Both sidecars' metrics name both ends by their certificates' SPIFFE ids, as Istio's
/// do: the server's from its downstream connection (`mutual_tls`), the client's from
/// the upstream connection its request went on (its security `unknown`, as Istio
/// reports it at the source), over HTTP/1.1 and HTTP/2 alike; a plaintext request on
/// the server's port has neither.
#[tokio::test]
async fn both_reporters_name_both_principals_of_an_mtls_request() {
    let ca = Ca::new();
    let backend = backend("httpbin").await;
    let yaml = with_stats(&server_yaml(Mode::Permissive, Source::Agent, backend, ""));
    let server = start(
        &yaml,
        &[identity_secret(&ca.leaf(SERVER_ID, 1)), root_secret(&ca)],
    )
    .await;
    let inbound = server.listener_addr("inbound").await;
    let mut clients = Vec::new();
    for http2 in [false, true] {
        let o = Origination {
            http2,
            ..Origination::default()
        };
        let yaml = with_stats(&client_yaml(&o, inbound, ""));
        let client = start(
            &yaml,
            &[identity_secret(&ca.leaf(CLIENT_ID, 7)), root_secret(&ca)],
        )
        .await;
        let outbound = client.listener_addr("outbound").await;
        for _ in 0..3 {
            assert_eq!(send(outbound, get("httpbin", "/get")).await.status, 200);
        }
        clients.push(client);
    }
    assert_eq!(send(inbound, get("httpbin", "/get")).await.status, 200);

    let mtls = format!("source_principal=\"{CLIENT_ID}\",destination_principal=\"{SERVER_ID}\"");
    let plain = "source_principal=\"unknown\",destination_principal=\"unknown\"";
    let mut want = vec![
        format!("destination,{mtls},connection_security_policy=\"mutual_tls\" 6"),
        format!("destination,{plain},connection_security_policy=\"none\" 1"),
    ];
    want.sort();
    assert_eq!(requests(&server).await, want);
    for client in &clients {
        assert_eq!(
            requests(client).await,
            [format!(
                "source,{mtls},connection_security_policy=\"unknown\" 3"
            )]
        );
    }
}

/// A TCP connection relayed by the client's sidecar over mTLS is reported at the source
/// with both principals, from the upstream connection, and security `unknown`.
#[tokio::test]
async fn the_source_names_both_principals_of_an_mtls_tcp_connection() {
    let ca = Ca::new();
    let (_server, inbound) = server(&ca, Mode::Strict).await;
    let o = Origination::default();
    // The client's listener relays bytes (TCP proxy) to the server's cluster.
    let relay = "- name: istio.stats\n  typed_config: {\"@type\": type.googleapis.com/stats.PluginConfig}\n- name: envoy.filters.network.tcp_proxy\n  typed_config: {\"@type\": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy, stat_prefix: outbound, cluster: server}\n";
    let yaml = with_stats(
        &client_yaml(&o, inbound, "")
            .replace(&indent(&hcm("outbound", "server"), 6), &indent(relay, 6)),
    );
    let client = start(
        &yaml,
        &[identity_secret(&ca.leaf(CLIENT_ID, 7)), root_secret(&ca)],
    )
    .await;
    let outbound = client.listener_addr("outbound").await;
    assert_eq!(send(outbound, get("httpbin", "/get")).await.status, 200);
    let text = send(
        client.admin_addr().unwrap(),
        get("admin", "/stats/prometheus"),
    )
    .await
    .body;
    let opened: Vec<&str> = text
        .lines()
        .filter(|l| l.starts_with("istio_tcp_connections_opened_total{"))
        .collect();
    let [opened] = opened[..] else {
        panic!("one TCP series: {text}");
    };
    for label in [
        "reporter=\"source\"".to_owned(),
        format!("source_principal=\"{CLIENT_ID}\""),
        format!("destination_principal=\"{SERVER_ID}\""),
        "connection_security_policy=\"unknown\"".to_owned(),
    ] {
        assert!(opened.contains(&label), "{label} in {opened}");
    }
}

/// A proxy's `istio_requests_total` series, each as its reporter, the labels this test
/// is about (in order) and its count, sorted.
async fn requests(proxy: &Proxy) -> Vec<String> {
    let text = send(
        proxy.admin_addr().unwrap(),
        get("admin", "/stats/prometheus"),
    )
    .await
    .body;
    let strip = |line: &str| {
        let reporter = line
            .split(['{', ','])
            .find_map(|kv| kv.strip_prefix("reporter="))
            .unwrap()
            .trim_matches('"');
        let labels: Vec<&str> = line
            .split(['{', ','])
            .filter(|kv| {
                kv.starts_with("source_principal=")
                    || kv.starts_with("destination_principal=")
                    || kv.starts_with("connection_security_policy=")
            })
            .map(|kv| kv.trim_end_matches(|c: char| c == '}' || c.is_ascii_digit() || c == ' '))
            .collect();
        format!(
            "{reporter},{} {}",
            labels.join(","),
            line.rsplit(' ').next().unwrap()
        )
    };
    let mut got: Vec<String> = text
        .lines()
        .filter(|l| l.starts_with("istio_requests_total{"))
        .map(strip)
        .collect();
    got.sort();
    got
}
