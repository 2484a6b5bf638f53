//! Workload identity against a real pilot CA on 127.0.0.1: a proxy's certificate is
//! obtained over TLS, verifies against the mesh's root, renews with a new serial at
//! half its (forced-short) life, arrives once a CA that was away comes up, and the
//! sidecar takes its config over the same TLS port.

mod common;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use common::WAIT;
use mizzen_pilot::ca::{Ca, ISTIOD_SAN, LocalTokens, ServiceAccount};
use mizzen_pilot::server::{Pilot, PilotOptions, SecureOptions};
use mizzen_pilot::store::DirStore;
use mizzen_proxy::identity::{IdentityManager, IdentityOptions, ROOT_CA, WORKLOAD_CERT};
use mizzen_proxy::{Bootstrap, Proxy, ProxyOptions};
use mizzen_xds::pb::envoy::config::core::v3::Node;
use mizzen_xds::pb::envoy::config::core::v3::data_source::Specifier;
use mizzen_xds::pb::envoy::extensions::transport_sockets::tls::v3::{Secret, secret};
use mizzen_xds::pb::google::protobuf::{Struct, Value, value::Kind};
use mizzen_xds::tls::ClientTls;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, UnixTime};
use tokio::sync::mpsc;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// The sidecar's own address in these tests (its listeners bind there).
const SIDECAR_IP: &str = "127.0.77.1";

const CONFIG: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: reviews, namespace: default}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v1, namespace: default}
spec: {address: 127.0.77.2, labels: {app: reviews}}
---
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: curl, namespace: default}
spec:
  workloadSelector: {labels: {app: curl}}
  egress:
  - bind: 127.0.77.1
    captureMode: NONE
    hosts: ["./*"]
"#;

/// A pilot with its CA, and what a proxy needs to reach it.
struct Mesh {
    tls: SocketAddr,
    root: String,
    tokens: LocalTokens,
    _dir: tempfile::TempDir,
}

impl Mesh {
    /// Starts pilot with its TLS port on `tls` (a free port when it is 0).
    async fn start(tls: SocketAddr) -> Mesh {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("config");
        std::fs::create_dir(&config).unwrap();
        std::fs::write(config.join("mesh.yaml"), CONFIG).unwrap();
        let ca = Arc::new(Ca::load_or_create(&dir.path().join("ca"), "cluster.local").unwrap());
        let tokens = LocalTokens::open(&dir.path().join("tokens")).unwrap();
        let options = PilotOptions {
            secure: Some(SecureOptions {
                addr: tls,
                ca: ca.clone(),
                callers: Arc::new(tokens.clone()),
            }),
            ..PilotOptions::ephemeral()
        };
        let store = Arc::new(DirStore::open(&config).unwrap());
        let pilot = Pilot::bind(store, options).await.unwrap();
        let tls = pilot.tls_addr().unwrap();
        tokio::spawn(pilot.run(std::future::pending()));
        Mesh {
            tls,
            root: ca.root_pem().to_owned(),
            tokens,
            _dir: dir,
        }
    }

    fn client_tls(&self) -> ClientTls {
        ClientTls::new(self.root.as_bytes(), ISTIOD_SAN).unwrap()
    }

    /// The curl sidecar's identity options, with a token for its service account.
    fn identity(&self, ttl: Duration) -> IdentityOptions {
        identity_for(self.tls, self.client_tls(), &self.tokens, ttl)
    }
}

fn identity_for(
    tls_addr: SocketAddr,
    tls: ClientTls,
    tokens: &LocalTokens,
    ttl: Duration,
) -> IdentityOptions {
    let mut options = IdentityOptions::for_node(
        &curl_node(),
        "cluster.local",
        format!("https://{tls_addr}"),
        tls,
    )
    .unwrap();
    options.token = Some(
        tokens
            .issue(&ServiceAccount {
                namespace: "default".into(),
                name: "curl".into(),
            })
            .unwrap(),
    );
    options.ttl = ttl;
    options
}

fn text(s: &str) -> Value {
    Value {
        kind: Some(Kind::StringValue(s.into())),
    }
}

fn curl_node() -> Node {
    let mut fields: BTreeMap<String, Value> = [
        ("NAMESPACE", "default"),
        ("SERVICE_ACCOUNT", "curl"),
        ("INSTANCE_IPS", SIDECAR_IP),
        ("INTERCEPTION_MODE", "NONE"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), text(v)))
    .collect();
    fields.insert(
        "LABELS".into(),
        Value {
            kind: Some(Kind::StructValue(Struct {
                fields: [("app".to_owned(), text("curl"))].into_iter().collect(),
            })),
        },
    );
    Node {
        id: format!("sidecar~{SIDECAR_IP}~curl-1.default~default.svc.cluster.local"),
        metadata: Some(Struct {
            fields: fields.into_iter().collect(),
        }),
        ..Node::default()
    }
}

/// Starts a manager whose secrets come out of the returned channel.
fn manager(options: IdentityOptions) -> (IdentityManager, mpsc::UnboundedReceiver<Secret>) {
    let (tx, rx) = mpsc::unbounded_channel();
    let manager = IdentityManager::start(options, move |secret| {
        let _ = tx.send(secret);
    })
    .unwrap();
    (manager, rx)
}

/// The next secret handed on.
async fn next(secrets: &mut mpsc::UnboundedReceiver<Secret>) -> Secret {
    tokio::time::timeout(WAIT, secrets.recv())
        .await
        .expect("a secret is handed on")
        .expect("the manager runs")
}

fn inline(source: Option<&mizzen_xds::pb::envoy::config::core::v3::DataSource>) -> String {
    match source.and_then(|s| s.specifier.as_ref()) {
        Some(Specifier::InlineBytes(bytes)) => String::from_utf8(bytes.clone()).unwrap(),
        other => panic!("expected inline bytes, got {other:?}"),
    }
}

/// The `default` secret's chain and key.
fn workload_cert(secret: &Secret) -> (Vec<CertificateDer<'static>>, String) {
    assert_eq!(secret.name, WORKLOAD_CERT);
    let Some(secret::Type::TlsCertificate(cert)) = &secret.r#type else {
        panic!("default is a TLS certificate: {secret:?}");
    };
    let chain = CertificateDer::pem_slice_iter(inline(cert.certificate_chain.as_ref()).as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    (chain, inline(cert.private_key.as_ref()))
}

/// The `ROOTCA` secret's trusted CA.
fn root_ca(secret: &Secret) -> String {
    assert_eq!(secret.name, ROOT_CA);
    let Some(secret::Type::ValidationContext(context)) = &secret.r#type else {
        panic!("ROOTCA is a validation context: {secret:?}");
    };
    inline(context.trusted_ca.as_ref())
}

fn serial(der: &CertificateDer<'_>) -> Vec<u8> {
    let (_, cert) = X509Certificate::from_der(der).unwrap();
    cert.raw_serial().to_vec()
}

#[tokio::test]
async fn a_proxy_gets_a_certificate_for_its_identity_that_verifies_against_the_root() {
    let mesh = Mesh::start("127.0.0.1:0".parse().unwrap()).await;
    let (manager, mut secrets) = manager(mesh.identity(Duration::from_secs(3600)));
    let (chain, key) = workload_cert(&next(&mut secrets).await);
    assert_eq!(root_ca(&next(&mut secrets).await), mesh.root);
    assert!(key.contains("BEGIN PRIVATE KEY"));

    let (_, leaf) = X509Certificate::from_der(&chain[0]).unwrap();
    let uris: Vec<String> = leaf
        .subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::URI(uri) => Some((*uri).to_owned()),
            _ => None,
        })
        .collect();
    assert_eq!(uris, ["spiffe://cluster.local/ns/default/sa/curl"]);
    let validity = leaf.validity();
    assert_eq!(
        validity.not_after.timestamp() - validity.not_before.timestamp(),
        3600,
        "the lifetime asked for"
    );

    // As an mTLS peer verifies it: webpki, against the mesh's root.
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(CertificateDer::from_pem_slice(mesh.root.as_bytes()).unwrap())
        .unwrap();
    let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
        roots.into(),
        rustls::crypto::ring::default_provider().into(),
    )
    .build()
    .unwrap();
    verifier
        .verify_client_cert(&chain[0], &chain[1..chain.len() - 1], UnixTime::now())
        .expect("the workload certificate verifies against the root");

    let current = manager.current().expect("the manager holds it");
    assert_eq!(
        current.identity().to_string(),
        "spiffe://cluster.local/ns/default/sa/curl"
    );
}

#[tokio::test]
async fn a_short_secret_ttl_renews_with_a_new_serial() {
    let mesh = Mesh::start("127.0.0.1:0".parse().unwrap()).await;
    // SECRET_TTL=2s: renewed about a second in.
    let (_manager, mut secrets) = manager(mesh.identity(Duration::from_secs(2)));
    let (first, first_key) = workload_cert(&next(&mut secrets).await);
    root_ca(&next(&mut secrets).await);
    let (second, second_key) = workload_cert(&next(&mut secrets).await);
    assert_ne!(serial(&second[0]), serial(&first[0]), "a new certificate");
    assert_ne!(second_key, first_key, "a new key with it");
    assert_eq!(root_ca(&next(&mut secrets).await), mesh.root);
}

#[tokio::test]
async fn a_proxy_started_while_the_ca_is_away_gets_a_certificate_once_it_is_up() {
    // A port nobody listens on yet, where the CA will come up.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    // The CA's root is known beforehand, as a mounted root certificate is.
    let dir = tempfile::tempdir().unwrap();
    let root = Ca::load_or_create(dir.path(), "cluster.local").unwrap();
    let tokens = LocalTokens::open(&dir.path().join("tokens")).unwrap();
    let tls = ClientTls::new(root.root_pem().as_bytes(), ISTIOD_SAN).unwrap();
    let (manager, mut secrets) =
        manager(identity_for(addr, tls, &tokens, Duration::from_secs(3600)));
    assert!(manager.current().is_none());

    let options = PilotOptions {
        secure: Some(SecureOptions {
            addr,
            ca: Arc::new(Ca::load_or_create(dir.path(), "cluster.local").unwrap()),
            callers: Arc::new(tokens.clone()),
        }),
        ..PilotOptions::ephemeral()
    };
    let config = tempfile::tempdir().unwrap();
    let store = Arc::new(DirStore::open(config.path()).unwrap());
    let pilot = Pilot::bind(store, options).await.unwrap();
    tokio::spawn(pilot.run(std::future::pending()));

    workload_cert(&next(&mut secrets).await);
    assert_eq!(root_ca(&next(&mut secrets).await), root.root_pem());
}

#[tokio::test]
async fn a_sidecar_takes_its_config_and_certificate_over_tls() {
    let mesh = Mesh::start("127.0.0.1:0".parse().unwrap()).await;
    let bootstrap =
        Bootstrap::for_pilot_tls(&mesh.tls.to_string(), mesh.client_tls(), curl_node(), None);
    let mut options = ProxyOptions::new(bootstrap);
    options.identity = Some(mesh.identity(Duration::from_secs(3600)));
    let proxy = Proxy::start(options).await.unwrap();
    tokio::time::timeout(WAIT, proxy.ready())
        .await
        .expect("the sidecar gets its config over TLS");
    let state = proxy.xds_state().unwrap();
    assert!(state.connected);
    let cert = tokio::time::timeout(WAIT, proxy.identity().unwrap().issued())
        .await
        .expect("the sidecar gets its certificate");
    assert_eq!(
        cert.identity().to_string(),
        "spiffe://cluster.local/ns/default/sa/curl"
    );
    assert_eq!(cert.root(), mesh.root);
}
