//! RequestAuthentication `jwksUri`s through pilot, with issuers on 127.0.0.1: key sets
//! are fetched (over `https://` only from an issuer pilot trusts, else the proxy gets a
//! key nobody holds), inlined into the listeners of the proxies a policy selects, and a
//! rotated key set is pushed to those proxies alone.

use std::sync::Arc;
use std::time::Duration;

use mizzen_pilot::model::jwks::{FAIL_CLOSED_JWKS, JwksKeys};
use mizzen_pilot::server::{IssuerTrust, JwksOptions, JwksResolver, Pilot, PilotOptions};
use mizzen_pilot::store::DirStore;
use mizzen_xds::pb::envoy::config::core::v3::Node;
use mizzen_xds::pb::google::protobuf::{Struct, Value, value::Kind};
use mizzen_xds::{AdsClient, ClientOptions, ClientState, ResourceType, Subscription};
use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

mod common;
use common::{BOOKINFO, PRODUCTPAGE_NODE_ID, productpage_node};

const REVIEWS_NODE_ID: &str = "sidecar~127.0.10.2~reviews-v1-1.default~default.svc.cluster.local";

/// A JWKS issuer on 127.0.0.1.
struct KeyServer {
    /// Its `jwksUri`.
    uri: String,
    /// How many TLS handshakes it refused (the client did not trust it).
    refused: watch::Receiver<usize>,
}

/// Serves the key set `keys` holds now, over TLS when given an acceptor.
async fn key_server(keys: watch::Receiver<String>, tls: Option<TlsAcceptor>) -> KeyServer {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let scheme = if tls.is_some() { "https" } else { "http" };
    let uri = format!("{scheme}://{}/jwks.json", listener.local_addr().unwrap());
    let (refusals, refused) = watch::channel(0);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let jwks = keys.borrow().clone();
            match &tls {
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(stream) => answer(stream, &jwks).await,
                    Err(_) => refusals.send_modify(|n| *n += 1),
                },
                None => answer(stream, &jwks).await,
            }
        }
    });
    KeyServer { uri, refused }
}

/// Answers the request on `stream` with `jwks`, then closes.
async fn answer<S: AsyncRead + AsyncWrite + Unpin>(mut stream: S, jwks: &str) {
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.ends_with(b"\r\n\r\n") {
        match stream.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    let reply = format!(
        "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{jwks}",
        jwks.len()
    );
    let _ = stream.write_all(reply.as_bytes()).await;
    let _ = stream.shutdown().await;
}

/// A fresh CA no system trusts, and a TLS acceptor for `127.0.0.1` with a certificate
/// it signed.
fn private_ca() -> (rcgen::Certificate, TlsAcceptor) {
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let signer = Issuer::new(ca_params, ca_key);
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
        .unwrap()
        .signed_by(&key, &signer)
        .unwrap();
    let config = rustls::ServerConfig::builder_with_provider(
        rustls::crypto::ring::default_provider().into(),
    )
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_no_client_auth()
    .with_single_cert(
        vec![cert.der().clone()],
        rustls::pki_types::PrivatePkcs8KeyDer::from(key.serialize_der()).into(),
    )
    .unwrap();
    (ca, TlsAcceptor::from(Arc::new(config)))
}

/// A config directory with Bookinfo and a RequestAuthentication for productpage whose
/// keys are at `jwks_uri`.
fn config_naming(jwks_uri: &str) -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("bookinfo.yaml"), BOOKINFO).unwrap();
    let policy = format!(
        "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {{name: jwt, namespace: default}}\nspec:\n  selector: {{matchLabels: {{app: productpage}}}}\n  jwtRules:\n  - {{issuer: https://issuer.test, jwksUri: '{jwks_uri}'}}\n"
    );
    std::fs::write(dir.path().join("jwt.yaml"), policy).unwrap();
    dir
}

/// A running pilot on `dir` fetching with `jwks`: its xDS address and proxy status.
async fn start_pilot(
    dir: &std::path::Path,
    jwks: JwksOptions,
) -> (std::net::SocketAddr, mizzen_xds::StatusRegistry) {
    let options = PilotOptions {
        jwks,
        ..PilotOptions::ephemeral()
    };
    let pilot = Pilot::bind(Arc::new(DirStore::open(dir).unwrap()), options)
        .await
        .unwrap();
    let (xds, status) = (pilot.xds_addr(), pilot.status());
    tokio::spawn(pilot.run(std::future::pending()));
    (xds, status)
}

/// A client of `xds` as `node`, with listeners, clusters and the routes of port 9080.
fn client(xds: std::net::SocketAddr, node: Node) -> AdsClient {
    let mut options = ClientOptions::new(format!("http://{xds}"), node);
    options
        .subscriptions
        .insert(ResourceType::Route, Subscription::names(["9080"]));
    AdsClient::start(options, |_, _| Ok(()))
}

/// Options with the system's roots and a refresh interval of `every`.
fn refreshing(every: Duration, trust: IssuerTrust) -> JwksOptions {
    JwksOptions {
        refresh_interval: every,
        trust,
    }
}

#[tokio::test]
async fn keys_are_fetched_over_http_and_an_unreachable_issuer_fails_closed() {
    let jwks = r#"{"keys":[]}"#;
    let (_keys, served) = watch::channel(jwks.to_owned());
    let uri = key_server(served, None).await.uri;
    let resolver = JwksResolver::new(JwksOptions::from_env());
    assert_eq!(resolver.fetch(&uri).await.as_deref(), Ok(jwks));

    // A port nobody listens on: the fetch fails, and translation inlines a key
    // nobody holds.
    let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let dead = format!("http://{}/jwks.json", closed.local_addr().unwrap());
    drop(closed);
    let mut keys = JwksKeys::default();
    keys.insert(&dead, resolver.fetch(&dead).await);
    assert!(keys.get(&dead).unwrap().is_err());
    assert_eq!(keys.inline_for(&dead), FAIL_CLOSED_JWKS);
}

#[tokio::test]
async fn an_https_issuer_is_trusted_only_through_an_extra_root_ca() {
    let (ca, acceptor) = private_ca();
    let (_keys, served) = watch::channel(r#"{"keys":[]}"#.to_owned());
    let uri = key_server(served, Some(acceptor)).await.uri;
    let dir = tempfile::tempdir().unwrap();
    let extra = dir.path().join("extra.pem");
    std::fs::write(&extra, ca.pem()).unwrap();
    let mut options = JwksOptions::from_env();
    options.trust_extra_root_ca(&extra).unwrap();
    let trusting = JwksResolver::new(options);
    assert_eq!(trusting.fetch(&uri).await.as_deref(), Ok(r#"{"keys":[]}"#));
    // The system's roots alone do not know the CA: fail closed.
    let error = JwksResolver::new(JwksOptions::from_env())
        .fetch(&uri)
        .await
        .unwrap_err();
    assert!(
        error.contains("TLS") && error.contains("UnknownIssuer"),
        "{error}"
    );
    // istiod's JWKS_RESOLVER_INSECURE_SKIP_VERIFY: any certificate will do.
    let insecure = JwksResolver::new(refreshing(
        Duration::from_secs(60),
        IssuerTrust::InsecureSkipVerify,
    ));
    assert_eq!(insecure.fetch(&uri).await.as_deref(), Ok(r#"{"keys":[]}"#));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_proxy_gets_the_keys_of_a_private_ca_issuer_only_when_pilot_trusts_the_ca() {
    let (ca, acceptor) = private_ca();
    let (_keys, served) = watch::channel(r#"{"keys":[{"kid":"k1"}]}"#.to_owned());
    let mut server = key_server(served, Some(acceptor)).await;
    let dir = config_naming(&server.uri);
    let every = Duration::from_secs(60);

    // Untrusted: once pilot's fetch was refused, the listener keeps the key nobody
    // holds (its kid below), so a token that would be valid gets 401.
    let (xds, _status) = start_pilot(dir.path(), refreshing(every, IssuerTrust::default())).await;
    let productpage = client(xds, productpage_node());
    tokio::time::timeout(Duration::from_secs(20), server.refused.wait_for(|n| *n > 0))
        .await
        .expect("pilot tries the issuer")
        .unwrap();
    wait(&productpage, |s| {
        listeners_hold(s, "mizzen-unreachable-jwks")
    })
    .await;
    assert!(!listeners_hold(&productpage.state(), r#""kid":"k1""#));

    let trusting = IssuerTrust::Roots(vec![ca.der().clone()]);
    let (xds, _status) = start_pilot(dir.path(), refreshing(every, trusting)).await;
    let productpage = client(xds, productpage_node());
    wait(&productpage, |s| listeners_hold(s, r#""kid":"k1""#)).await;
}

/// reviews-v1's sidecar: productpage's node with its own id and labels.
fn reviews_node() -> Node {
    let mut node = productpage_node();
    node.id = REVIEWS_NODE_ID.into();
    let labels = Struct {
        fields: [("app", "reviews"), ("version", "v1")]
            .into_iter()
            .map(|(k, v)| {
                let value = Value {
                    kind: Some(Kind::StringValue(v.into())),
                };
                (k.to_owned(), value)
            })
            .collect(),
    };
    let metadata = node.metadata.as_mut().unwrap();
    metadata.fields.insert(
        "LABELS".into(),
        Value {
            kind: Some(Kind::StructValue(labels)),
        },
    );
    metadata.fields.insert(
        "INSTANCE_IPS".into(),
        Value {
            kind: Some(Kind::StringValue("127.0.10.2".into())),
        },
    );
    node
}

/// True when one of the client's listeners holds `text` (an inlined key set does,
/// verbatim, inside its jwt_authn filter).
fn listeners_hold(state: &ClientState, text: &str) -> bool {
    state.types.get(&ResourceType::Listener).is_some_and(|t| {
        t.resources.values().any(|any| {
            any.value
                .windows(text.len())
                .any(|window| window == text.as_bytes())
        })
    })
}

/// Waits (bounded: a hang becomes a failure) until the client's state satisfies `done`.
async fn wait(client: &AdsClient, done: impl FnMut(&ClientState) -> bool) {
    tokio::time::timeout(Duration::from_secs(20), client.wait_until(done))
        .await
        .expect("the client converges");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotated_keys_are_pushed_only_to_the_proxies_whose_policy_names_them() {
    let (keys, served) = watch::channel(r#"{"keys":[{"kid":"k1"}]}"#.to_owned());
    let dir = config_naming(&key_server(served, None).await.uri);
    // Refetched often: the refresh is what is tested.
    let every = Duration::from_millis(100);
    let (xds, status) = start_pilot(dir.path(), refreshing(every, IssuerTrust::default())).await;
    let (productpage, reviews) = (client(xds, productpage_node()), client(xds, reviews_node()));
    wait(&productpage, |s| listeners_hold(s, r#""kid":"k1""#)).await;
    wait(&reviews, |s| s.version(ResourceType::Route).is_some()).await;
    let listeners_sent = |node: &str| {
        status.proxy(node).unwrap().types[&ResourceType::Listener]
            .nonce_sent
            .clone()
    };
    let reviews_listeners = listeners_sent(REVIEWS_NODE_ID);
    let productpage_listeners = listeners_sent(PRODUCTPAGE_NODE_ID);

    keys.send_replace(r#"{"keys":[{"kid":"k2"}]}"#.to_owned());
    wait(&productpage, |s| listeners_hold(s, r#""kid":"k2""#)).await;
    assert_ne!(listeners_sent(PRODUCTPAGE_NODE_ID), productpage_listeners);

    // A change every proxy gets after it: had reviews been woken for the keys, its
    // listeners would have gone out no later than these routes (LDS before RDS).
    let routes = reviews
        .state()
        .version(ResourceType::Route)
        .unwrap()
        .to_owned();
    std::fs::write(
        dir.path().join("ratings.yaml"),
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: ratings}\nspec: {host: ratings}\n",
    )
    .unwrap();
    wait(&reviews, |s| {
        s.version(ResourceType::Route)
            .is_some_and(|v| v.parse::<u64>().unwrap() > routes.parse::<u64>().unwrap())
    })
    .await;
    assert_eq!(
        listeners_sent(REVIEWS_NODE_ID),
        reviews_listeners,
        "reviews's listeners were not sent again"
    );
    assert!(!listeners_hold(&reviews.state(), "kid"));
}
