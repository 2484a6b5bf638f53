//! Istio's CA API on pilot's TLS port (15012), over real TLS on 127.0.0.1: a caller
//! gets a certificate for its own identity only, and ADS is served there too.

mod common;

use std::sync::Arc;
use std::time::Duration;

use mizzen_pilot::ca::{Ca, LocalTokens, ServiceAccount};
use mizzen_pilot::server::{Pilot, PilotOptions, SecureOptions};
use mizzen_pilot::store::DirStore;
use mizzen_xds::ca::{IstioCertificateRequest, IstioCertificateServiceClient};
use mizzen_xds::tls::ClientTls;
use mizzen_xds::{AdsClient, ClientOptions, ResourceType};
use rcgen::{CertificateParams, DistinguishedName, KeyPair, SanType};
use tonic::Code;
use tonic::transport::Endpoint;
use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

const WAIT: Duration = Duration::from_secs(20);

/// A running pilot with its CA, the tokens it honours, and where it serves TLS.
struct Running {
    tls: std::net::SocketAddr,
    root: String,
    tokens: LocalTokens,
    _dir: tempfile::TempDir,
}

async fn start() -> Running {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config");
    std::fs::create_dir(&config).unwrap();
    std::fs::write(config.join("bookinfo.yaml"), common::BOOKINFO).unwrap();
    let ca = Arc::new(Ca::load_or_create(&dir.path().join("ca"), "cluster.local").unwrap());
    let tokens = LocalTokens::open(&dir.path().join("tokens")).unwrap();
    let options = PilotOptions {
        secure: Some(SecureOptions {
            addr: "127.0.0.1:0".parse().unwrap(),
            ca: ca.clone(),
            callers: Arc::new(tokens.clone()),
        }),
        ..PilotOptions::ephemeral()
    };
    let pilot = Pilot::bind(Arc::new(DirStore::open(&config).unwrap()), options)
        .await
        .unwrap();
    let tls = pilot.tls_addr().expect("pilot serves TLS");
    tokio::spawn(pilot.run(std::future::pending()));
    Running {
        tls,
        root: ca.root_pem().to_owned(),
        tokens,
        _dir: dir,
    }
}

impl Running {
    /// A CA client that trusts `root` and expects Istio's name for pilot.
    async fn client(&self, root: &str) -> Result<IstioCertificateServiceClient, String> {
        let tls = ClientTls::new(root.as_bytes(), "istiod.istio-system.svc").unwrap();
        let endpoint = Endpoint::from_shared(format!("https://{}", self.tls)).unwrap();
        tls.connect(endpoint)
            .await
            .map(IstioCertificateServiceClient::new)
            .map_err(|e| mizzen_xds::client::causes(&e))
    }

    fn token(&self, namespace: &str, name: &str) -> String {
        let account = ServiceAccount {
            namespace: namespace.into(),
            name: name.into(),
        };
        self.tokens.issue(&account).unwrap()
    }
}

/// A CSR for `uri`, sent with `token` (none when `None`).
fn request(uri: &str, token: Option<&str>) -> tonic::Request<IstioCertificateRequest> {
    let key = KeyPair::generate().unwrap();
    let mut params = CertificateParams::default();
    params.distinguished_name = DistinguishedName::new();
    params.subject_alt_names = vec![SanType::URI(uri.try_into().unwrap())];
    let csr = params.serialize_request(&key).unwrap().pem().unwrap();
    let mut request = tonic::Request::new(IstioCertificateRequest {
        csr,
        validity_duration: 3600,
        metadata: None,
    });
    if let Some(token) = token {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    request
}

fn leaf_uris(pem: &str) -> Vec<String> {
    let der = rustls::pki_types::pem::PemObject::from_pem_slice(pem.as_bytes()).unwrap();
    let der: rustls::pki_types::CertificateDer<'_> = der;
    let (_, cert) = X509Certificate::from_der(&der).unwrap();
    cert.subject_alternative_name()
        .unwrap()
        .unwrap()
        .value
        .general_names
        .iter()
        .filter_map(|n| match n {
            GeneralName::URI(uri) => Some((*uri).to_owned()),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn a_token_gets_a_certificate_for_its_own_identity() {
    let pilot = start().await;
    let token = pilot.token("a", "x");
    let mut client = pilot.client(&pilot.root).await.unwrap();
    let response = client
        .create_certificate(request("spiffe://cluster.local/ns/a/sa/x", Some(&token)))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(response.cert_chain.len(), 2, "leaf and root");
    assert_eq!(response.cert_chain[1], pilot.root);
    assert_eq!(
        leaf_uris(&response.cert_chain[0]),
        ["spiffe://cluster.local/ns/a/sa/x"]
    );
}

#[tokio::test]
async fn a_token_cannot_get_another_identitys_certificate() {
    let pilot = start().await;
    let token = pilot.token("a", "x");
    let mut client = pilot.client(&pilot.root).await.unwrap();
    let status = client
        .create_certificate(request("spiffe://cluster.local/ns/b/sa/y", Some(&token)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::PermissionDenied, "{status:?}");
    assert_eq!(
        status.message(),
        "the CSR asks for identity spiffe://cluster.local/ns/b/sa/y, \
         but the caller is spiffe://cluster.local/ns/a/sa/x"
    );
}

#[tokio::test]
async fn no_token_or_an_unknown_one_is_unauthenticated() {
    let pilot = start().await;
    let mut client = pilot.client(&pilot.root).await.unwrap();
    let id = "spiffe://cluster.local/ns/a/sa/x";
    let status = client
        .create_certificate(request(id, None))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
    let token = pilot.token("a", "x");
    pilot.tokens.revoke(&token).unwrap();
    let status = client
        .create_certificate(request(id, Some(&token)))
        .await
        .unwrap_err();
    assert_eq!(status.code(), Code::Unauthenticated, "{status:?}");
}

#[tokio::test]
async fn a_client_that_trusts_another_root_does_not_connect() {
    let pilot = start().await;
    let other = tempfile::tempdir().unwrap();
    let stranger = Ca::load_or_create(other.path(), "cluster.local").unwrap();
    let err = pilot.client(stranger.root_pem()).await.unwrap_err();
    assert!(err.contains("invalid peer certificate"), "{err}");
}

#[tokio::test]
async fn ads_is_served_over_tls_on_the_same_port() {
    let pilot = start().await;
    let mut options =
        ClientOptions::new(format!("https://{}", pilot.tls), common::productpage_node());
    options.tls = Some(ClientTls::new(pilot.root.as_bytes(), "127.0.0.1").unwrap());
    let client = AdsClient::start(options, |_, _| Ok(()));
    let state = tokio::time::timeout(
        WAIT,
        client.wait_until(|s| s.version(ResourceType::Cluster).is_some()),
    )
    .await
    .expect("clusters arrive over TLS");
    assert!(state.connected);
    assert!(!state.types[&ResourceType::Cluster].resources.is_empty());
}
