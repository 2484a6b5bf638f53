//! Zero trust on the local mesh, end to end: a real `mizzen up` running httpbin (the
//! built-in demo app) and two client workloads, `sleep` and `other`, each with a
//! sidecar and an identity of its own (service accounts `sleep` and `other`). The test
//! plays the clients' apps: it sends their requests through their sidecars' HTTP-proxy
//! port, as an app with `HTTP_PROXY` set does, and calls httpbin's address straight,
//! as a client outside the mesh does. Policies are applied with `mizzen apply` and
//! judged once httpbin's sidecar has acknowledged them.
//!
//! Tests wait on what the mesh prints, on acknowledged config and on answers; they never
//! sleep.

mod common;

use std::future::Future;
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt;
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use common::client::{Client, Response};
use common::up::{ONE_MESH, Up, WAIT, http_get, mizzen};
use ring::rand::SystemRandom;
use ring::signature::{ECDSA_P256_SHA256_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use serde_json::json;
use tokio::sync::mpsc;
use x509_parser::prelude::{FromDer, X509Certificate};

/// The authority the clients call.
const HTTPBIN: &str = "httpbin:8000";
/// httpbin's pod (its sidecar is the one the policies select).
const HTTPBIN_POD: &str = "httpbin-1";
/// The identity of the `sleep` workload.
const SLEEP: &str = "spiffe://cluster.local/ns/default/sa/sleep";
/// What Istio answers a request authorization denies.
const DENIED: (u16, &str) = (403, "RBAC: access denied");

/// httpbin, and two clients that idle (the test plays their apps through their
/// sidecars).
fn mesh_yaml() -> String {
    let client = |name: &str| {
        format!(
            r#"---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, namespace: default}}
spec:
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}}}}}
    spec:
      serviceAccountName: {name}
      containers:
      - name: {name}
        command: ["sleep", "infinity"]
"#
        )
    };
    let httpbin = r#"apiVersion: v1
kind: Service
metadata: {name: httpbin, namespace: default}
spec:
  selector: {app: httpbin}
  ports: [{name: http, port: 8000}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: httpbin, namespace: default}
spec:
  selector: {matchLabels: {app: httpbin}}
  template:
    metadata: {labels: {app: httpbin}}
    spec:
      serviceAccountName: httpbin
      containers:
      - name: httpbin
        command: ["mizzen", "demo-app", "httpbin"]
        ports: [{containerPort: 8000}]
"#;
    // Every request on a new connection to httpbin's sidecar, so that each one meets
    // the config of the moment: a changed policy drains the connections made before it
    // (crates/proxy/tests/xds_config.rs), and a request racing that close would judge
    // the race, not the policy.
    let one_request_per_connection = "---
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: httpbin, namespace: default}
spec:
  host: httpbin
  trafficPolicy: {connectionPool: {http: {maxRequestsPerConnection: 1}}}
";
    [
        httpbin,
        &client("sleep"),
        &client("other"),
        one_request_per_connection,
    ]
    .concat()
}

/// The running mesh and where its workloads are.
struct Mesh {
    up: Up,
    /// httpbin's address (its sidecar's inbound port), as seen from outside the mesh.
    httpbin: SocketAddr,
    /// The sidecar HTTP-proxy port of `sleep`.
    sleep: SocketAddr,
    /// The sidecar HTTP-proxy port of `other`.
    other: SocketAddr,
}

impl Mesh {
    /// `mizzen up` on [`mesh_yaml`], `env` added to its environment; returns once
    /// httpbin answers through the mesh.
    fn start(env: &[(&str, &str)]) -> Mesh {
        let config = tempfile::tempdir().unwrap();
        std::fs::write(config.path().join("mesh.yaml"), mesh_yaml()).unwrap();
        let up = Up::start_with_env(config, None, "127.0.0.1", env);
        let at = |pod: &str, port: u16| -> SocketAddr {
            format!("{}:{port}", up.pod_ip(pod)).parse().unwrap()
        };
        let mesh = Mesh {
            httpbin: at(HTTPBIN_POD, 8000),
            sleep: at("sleep-1", 15080),
            other: at("other-1", 15080),
            up,
        };
        // The mesh is ready before httpbin's process listens: wait for its answer.
        block_on(async {
            loop {
                let answer = Client::new(mesh.sleep)
                    .try_send("GET", HTTPBIN, "/health", &[])
                    .await;
                if answer.is_some_and(|r| r.status == 200) {
                    return;
                }
            }
        });
        mesh
    }

    /// `mizzen apply` of `yaml`, in force at httpbin's sidecar on return.
    fn apply(&self, yaml: &str) {
        self.up.apply(yaml, &[(HTTPBIN_POD, "LDS")]);
    }

    /// `mizzen delete` of `yaml`, gone from httpbin's sidecar on return.
    fn delete(&self, yaml: &str) {
        self.up.delete(yaml, &[(HTTPBIN_POD, "LDS")]);
    }
}

/// Runs `future` to completion on a runtime of its own (the mesh itself runs in
/// another process; the test only plays clients).
fn block_on<F: Future>(future: F) -> F::Output {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    runtime.block_on(async { tokio::time::timeout(WAIT, future).await.expect("in time") })
}

/// `METHOD http://httpbin:8000PATH` with `headers`, sent through the sidecar HTTP-proxy
/// port `from` (or straight to httpbin's address); `None` when the connection is
/// closed unanswered.
fn call(from: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> Option<Response> {
    block_on(Client::new(from).try_send(method, HTTPBIN, path, headers))
}

/// The status and body of an answered call.
fn answer(from: SocketAddr, method: &str, path: &str, headers: &[(&str, &str)]) -> (u16, String) {
    let response = call(from, method, path, headers)
        .unwrap_or_else(|| panic!("{method} {path} from {from}: closed unanswered"));
    (response.status, response.body)
}

/// The status of `GET PATH` from `from`, and whether authorization denied it.
fn get_status(from: SocketAddr, path: &str, headers: &[(&str, &str)]) -> (u16, bool) {
    let (status, body) = answer(from, "GET", path, headers);
    (status, (status, body.as_str()) == DENIED)
}

#[test]
fn plaintext_from_outside_is_refused_by_strict_served_by_permissive_and_mesh_traffic_always_passes()
{
    let _one = ONE_MESH.lock().unwrap_or_else(|e| e.into_inner());
    let mesh = Mesh::start(&[]);

    // Sidecars talk mTLS to each other by default (auto mTLS): httpbin's sidecar saw
    // sleep's certificate and says so in x-forwarded-client-cert.
    let (status, body) = answer(mesh.sleep, "GET", "/headers", &[]);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&format!("URI={SLEEP}")), "{body}");
    // PERMISSIVE (no policy): a client outside the mesh is served in plain text.
    let (status, body) = answer(mesh.httpbin, "GET", "/headers", &[]);
    assert_eq!(status, 200, "{body}");
    assert!(!body.contains("spiffe://"), "{body}");

    // What `proxy-config secret` shows: httpbin's certificate and the mesh's root.
    let admin = format!("{}:15000", mesh.httpbin.ip());
    let secrets = mizzen()
        .args(["proxy-config", "secret", &admin])
        .output()
        .unwrap();
    assert!(
        secrets.status.success(),
        "{}",
        String::from_utf8_lossy(&secrets.stderr)
    );
    let secrets = String::from_utf8_lossy(&secrets.stdout);
    let row = |name: &str| {
        secrets
            .lines()
            .find(|l| l.split_whitespace().next() == Some(name))
            .unwrap_or_else(|| panic!("no {name} in {secrets}"))
            .to_owned()
    };
    assert!(row("default").contains("ACTIVE"), "{secrets}");
    assert!(row("default").contains("true"), "{secrets}");
    assert!(row("ROOTCA").contains("ACTIVE"), "{secrets}");
    // Every connection from sleep was a TLS handshake at httpbin's sidecar.
    let (_, stats) = http_get(SocketAddr::new(mesh.httpbin.ip(), 15000), "/stats");
    let handshakes = stats
        .lines()
        .find_map(|l| {
            l.strip_prefix(&format!(
                "listener.{}_8000.ssl.handshake: ",
                mesh.httpbin.ip()
            ))
        })
        .unwrap_or_else(|| panic!("no handshakes counted: {stats}"));
    assert!(handshakes.parse::<u64>().unwrap() > 0, "{handshakes}");

    // The mesh's CA key is its owner's alone.
    let key = mesh.up.state.path().join("ca/ca-key.pem");
    let mode = std::fs::metadata(&key).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600, "{}", key.display());

    // STRICT for the namespace: plain text from outside is refused, mesh traffic passes.
    mesh.apply(
        "apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: default}
spec: {mtls: {mode: STRICT}}
",
    );
    let refused = call(mesh.httpbin, "GET", "/headers", &[]);
    assert!(refused.is_none(), "plain text answered: {refused:?}");
    let (status, body) = answer(mesh.sleep, "GET", "/headers", &[]);
    assert_eq!(status, 200, "{body}");
    assert!(body.contains(&format!("URI={SLEEP}")), "{body}");

    // DISABLE: httpbin takes plain text only, and its clients follow it (auto mTLS
    // reads the server's policy), so mesh traffic still passes.
    mesh.up.apply(
        "apiVersion: security.istio.io/v1
kind: PeerAuthentication
metadata: {name: default, namespace: default}
spec: {mtls: {mode: DISABLE}}
",
        &[(HTTPBIN_POD, "LDS"), ("sleep-1", "EDS")],
    );
    let (status, body) = answer(mesh.sleep, "GET", "/headers", &[]);
    assert_eq!(status, 200, "{body}");
    assert!(!body.contains("spiffe://"), "plain text: {body}");
    assert_eq!(get_status(mesh.httpbin, "/headers", &[]), (200, false));
}

#[test]
fn a_workload_with_another_identity_is_denied_by_an_allow_rule_naming_one_principal() {
    let _one = ONE_MESH.lock().unwrap_or_else(|e| e.into_inner());
    let mesh = Mesh::start(&[]);
    mesh.apply(
        "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: only-sleep, namespace: default}
spec:
  selector: {matchLabels: {app: httpbin}}
  action: ALLOW
  rules:
  - from: [{source: {principals: [cluster.local/ns/default/sa/sleep]}}]
",
    );
    assert_eq!(get_status(mesh.sleep, "/headers", &[]), (200, false));
    let (status, body) = answer(mesh.other, "GET", "/headers", &[]);
    assert_eq!((status, body.as_str()), DENIED, "other is not sleep");
    // Plain text carries no identity at all.
    let (status, body) = answer(mesh.httpbin, "GET", "/headers", &[]);
    assert_eq!((status, body.as_str()), DENIED, "no identity from outside");
}

#[test]
fn deny_beats_allow_and_paths_methods_and_headers_match_at_their_boundaries() {
    let _one = ONE_MESH.lock().unwrap_or_else(|e| e.into_inner());
    let mesh = Mesh::start(&[]);
    mesh.apply(
        "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow, namespace: default}
spec:
  selector: {matchLabels: {app: httpbin}}
  action: ALLOW
  rules:
  - to: [{operation: {paths: [/headers], methods: [GET]}}]
  - to: [{operation: {paths: [/a/*]}}]
  - to: [{operation: {paths: ['*.txt']}}]
  - to: [{operation: {paths: [/get]}}]
    when: [{key: 'request.headers[x-token]', values: [letmein]}]
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: deny, namespace: default}
spec:
  selector: {matchLabels: {app: httpbin}}
  action: DENY
  rules:
  - to: [{operation: {paths: [/a/deny]}}]
",
    );
    let allowed = |path: &str, headers: &[(&str, &str)]| {
        let (status, denied) = get_status(mesh.sleep, path, headers);
        assert!(!denied, "GET {path} {headers:?} is allowed (got {status})");
        status
    };
    let denied = |method: &str, path: &str, headers: &[(&str, &str)]| {
        let (status, body) = answer(mesh.sleep, method, path, headers);
        assert_eq!(
            (status, body.as_str()),
            DENIED,
            "{method} {path} {headers:?} is denied"
        );
    };

    // Exact path, with the method: the query is not part of the path.
    assert_eq!(allowed("/headers", &[]), 200);
    assert_eq!(allowed("/headers?x=1", &[]), 200);
    denied("POST", "/headers", &[]);
    for path in ["/headers/", "/header", "/Headers", "/headersx"] {
        denied("GET", path, &[]);
    }
    // Prefix `/a/*`: `/a/` and below, nothing beside; httpbin answers 404 to what it
    // does not serve, which shows the request got through.
    for path in ["/a/", "/a/x", "/a/b/c"] {
        assert_eq!(allowed(path, &[]), 404, "{path}");
    }
    for path in ["/a", "/ab", "/A/x"] {
        denied("GET", path, &[]);
    }
    // Suffix `*.txt`, case-sensitive.
    for path in ["/f.txt", "/dir/f.txt", "/.txt"] {
        assert_eq!(allowed(path, &[]), 404, "{path}");
    }
    for path in ["/f.TXT", "/f.txt/x", "/ftxt"] {
        denied("GET", path, &[]);
    }
    // A header condition: the exact value only.
    assert_eq!(allowed("/get", &[("x-token", "letmein")]), 200);
    denied("GET", "/get", &[]);
    denied("GET", "/get", &[("x-token", "LetMeIn")]);
    denied("GET", "/get", &[("x-token", "letmein2")]);
    // DENY beats ALLOW: `/a/deny` is under `/a/*`, and denied; its neighbours are not.
    denied("GET", "/a/deny", &[]);
    assert_eq!(allowed("/a/deny/x", &[]), 404);
    assert_eq!(allowed("/a/denyx", &[]), 404);

    // Without the ALLOW policy, nothing but the DENY rule applies.
    mesh.delete(
        "apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: allow, namespace: default}
",
    );
    assert_eq!(allowed("/Headers", &[]), 404);
    denied("GET", "/a/deny", &[]);
}

/// An issuer of ES256 JWTs: its key and the JWKS naming it.
struct Issuer {
    key: EcdsaKeyPair,
    rng: SystemRandom,
}

/// Where the tests' tokens say they come from.
const ISSUER: &str = "https://issuer.mizzen.test";

impl Issuer {
    fn new() -> Issuer {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng).unwrap();
        let key = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8.as_ref(), &rng)
            .unwrap();
        Issuer { key, rng }
    }

    /// The public key as a JWKS.
    fn jwks(&self) -> String {
        // An uncompressed P-256 point: 0x04, x, y.
        let point = self.key.public_key().as_ref();
        json!({"keys": [{
            "kty": "EC",
            "crv": "P-256",
            "alg": "ES256",
            "kid": "test",
            "x": URL_SAFE_NO_PAD.encode(&point[1..33]),
            "y": URL_SAFE_NO_PAD.encode(&point[33..]),
        }]})
        .to_string()
    }

    /// A token for `alice` from `iss` to `aud`, expiring `expires_in` seconds from now
    /// (in the past when negative).
    fn token(&self, iss: &str, aud: &str, expires_in: i64) -> String {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap()
            .as_secs() as i64;
        let header = json!({"alg": "ES256", "typ": "JWT", "kid": "test"});
        let claims = json!({
            "iss": iss,
            "sub": "alice",
            "aud": aud,
            "iat": now - 600,
            "exp": now + expires_in,
        });
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let signature = self.key.sign(&self.rng, input.as_bytes()).unwrap();
        format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature.as_ref()))
    }
}

#[test]
fn jwt_valid_passes_invalid_is_refused_and_none_is_left_to_authorization() {
    let _one = ONE_MESH.lock().unwrap_or_else(|e| e.into_inner());
    let mesh = Mesh::start(&[]);
    let issuer = Issuer::new();
    mesh.apply(&format!(
        "apiVersion: security.istio.io/v1
kind: RequestAuthentication
metadata: {{name: jwt, namespace: default}}
spec:
  selector: {{matchLabels: {{app: httpbin}}}}
  jwtRules:
  - issuer: {ISSUER}
    audiences: [httpbin]
    jwks: '{}'
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {{name: require-jwt, namespace: default}}
spec:
  selector: {{matchLabels: {{app: httpbin}}}}
  action: ALLOW
  rules:
  - from: [{{source: {{requestPrincipals: ['{ISSUER}/alice']}}}}]
",
        issuer.jwks()
    ));
    let with = |token: &str| {
        let bearer = format!("Bearer {token}");
        answer(mesh.sleep, "GET", "/headers", &[("authorization", &bearer)])
    };

    let valid = issuer.token(ISSUER, "httpbin", 3600);
    let (status, body) = with(&valid);
    assert_eq!(status, 200, "{body}");

    // Past the 60 s of clock skew Envoy allows.
    let expired = issuer.token(ISSUER, "httpbin", -300);
    let wrong_issuer = issuer.token("https://elsewhere.mizzen.test", "httpbin", 3600);
    let wrong_audience = issuer.token(ISSUER, "reviews", 3600);
    // One character of the signature changed: the token no longer verifies.
    let mut tampered = valid.clone().into_bytes();
    let at = tampered.len() - 10;
    tampered[at] = if tampered[at] == b'A' { b'B' } else { b'A' };
    let tampered = String::from_utf8(tampered).unwrap();
    for (what, token) in [
        ("expired", &expired),
        ("wrong issuer", &wrong_issuer),
        ("wrong audience", &wrong_audience),
        ("tampered signature", &tampered),
    ] {
        let (status, body) = with(token);
        assert_eq!(status, 401, "{what}: {body}");
    }
    // Envoy's reason for a token meant for someone else, with Istio's 401.
    let (_, body) = with(&wrong_audience);
    assert_eq!(body, "Audiences in Jwt are not allowed");

    // No token: authentication lets it through, authorization wants a principal.
    let (status, body) = answer(mesh.sleep, "GET", "/headers", &[]);
    assert_eq!((status, body.as_str()), DENIED);
}

/// Records the serial number of the certificate a server presents, then ends the
/// handshake: a probe has no certificate of its own to finish it with.
#[derive(Debug)]
struct SerialProbe(Arc<Mutex<Option<Vec<u8>>>>);

impl ServerCertVerifier for SerialProbe {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let (_, cert) = X509Certificate::from_der(end_entity)
            .map_err(|e| rustls::Error::General(e.to_string()))?;
        *self.0.lock().unwrap() = Some(cert.raw_serial().to_vec());
        Err(rustls::Error::General("seen".into()))
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("a probe verifies nothing".into()))
    }

    fn verify_tls13_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("a probe verifies nothing".into()))
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        rustls::crypto::ring::default_provider()
            .signature_verification_algorithms
            .supported_schemes()
    }
}

/// The serial number of the certificate the sidecar at `addr` presents to a new mesh
/// peer (a full handshake, offering Istio's ALPN).
async fn presented_serial(addr: SocketAddr) -> Vec<u8> {
    let seen = Arc::new(Mutex::new(None));
    let mut config = rustls::ClientConfig::builder_with_provider(
        rustls::crypto::ring::default_provider().into(),
    )
    .with_safe_default_protocol_versions()
    .unwrap()
    .dangerous()
    .with_custom_certificate_verifier(Arc::new(SerialProbe(seen.clone())))
    .with_no_client_auth();
    config.alpn_protocols = vec![b"istio-peer-exchange".to_vec(), b"istio".to_vec()];
    let stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    let name = ServerName::try_from("httpbin.default.svc.cluster.local").unwrap();
    let refused = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(name, stream)
        .await;
    assert!(refused.is_err(), "the probe ends every handshake");
    let serial = seen.lock().unwrap().take();
    serial.expect("the sidecar presents a certificate")
}

#[test]
fn certificates_rotating_every_two_seconds_under_load_fail_no_request() {
    let _one = ONE_MESH.lock().unwrap_or_else(|e| e.into_inner());
    // Certificates live 4 s and are renewed at half their life.
    let mesh = Mesh::start(&[("SECRET_TTL", "4s")]);
    let (sleep, httpbin) = (mesh.sleep, mesh.httpbin);

    let rotations = 3;
    let (failed, total, serials) = block_on(async move {
        let (stop_tx, stop) = tokio::sync::watch::channel(false);
        let (answered_tx, mut answered) = mpsc::unbounded_channel();
        let clients: Vec<_> = (0..4)
            .map(|_| {
                let answered = answered_tx.clone();
                let mut stop = stop.clone();
                tokio::spawn(async move {
                    let mut client = Client::new(sleep);
                    let (mut failed, mut total) = (Vec::new(), 0usize);
                    while !*stop.borrow_and_update() {
                        total += 1;
                        match client.try_send("GET", HTTPBIN, "/get", &[]).await {
                            Some(r) if r.status == 200 => {}
                            other => failed.push(other),
                        }
                        let _ = answered.send(());
                    }
                    (failed, total)
                })
            })
            .collect();
        drop(answered_tx);
        // The load runs until httpbin's sidecar has presented `rotations` certificates
        // after its first, looked at after every 50 requests.
        let mut serials = vec![presented_serial(httpbin).await];
        while serials.len() <= rotations {
            for _ in 0..50 {
                answered.recv().await.expect("the load runs");
            }
            let serial = presented_serial(httpbin).await;
            if serials.last() != Some(&serial) {
                serials.push(serial);
            }
        }
        stop_tx.send_replace(true);
        let mut failed = Vec::new();
        let mut total = 0;
        for client in clients {
            let (f, t) = client.await.unwrap();
            failed.extend(f);
            total += t;
        }
        (failed, total, serials)
    });
    assert!(
        failed.is_empty(),
        "{} of {total} requests failed across {rotations} rotations: {:?}",
        failed.len(),
        &failed[..failed.len().min(5)]
    );
    assert_eq!(serials.len(), rotations + 1);
    // Steady load: far more requests than rotations.
    assert!(total > 100, "only {total} requests");
}

#[test]
fn a_proxy_without_a_ca_says_which_secret_waits_and_how_to_get_one() {
    // A bootstrap whose cluster asks the agent for `default` and `ROOTCA`, as pilot's
    // mTLS clusters do, run with no CA.
    let sds = "sds_config: {api_config_source: {api_type: GRPC, grpc_services: [{envoy_grpc: {cluster_name: sds-grpc}}]}}";
    let bootstrap = format!(
        "static_resources:
  clusters:
  - name: httpbin
    type: STATIC
    load_assignment: {{cluster_name: httpbin, endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: 8000}}}}}}}}]}}]}}
    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        '@type': type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        common_tls_context:
          tls_certificate_sds_secret_configs: [{{name: default, {sds}}}]
          validation_context_sds_secret_config: {{name: ROOTCA, {sds}}}
"
    );
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bootstrap.yaml");
    std::fs::write(&path, bootstrap).unwrap();
    let mut proxy = mizzen()
        .args(["proxy", "-c", path.to_str().unwrap()])
        .env_remove("CA_ADDR")
        .env_remove("XDS_ROOT_CA")
        .env("RUST_LOG", "warn")
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = proxy.stderr.take().unwrap();
    let (tx, lines) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    // Bounded: a proxy that never says it would run on.
    let deadline = std::time::Instant::now() + WAIT;
    let said = std::iter::from_fn(|| {
        lines
            .recv_timeout(deadline.saturating_duration_since(std::time::Instant::now()))
            .ok()
    })
    .find(|line| line.contains("no CA is configured"));
    let _ = proxy.kill();
    let _ = proxy.wait();
    let line = said.expect("the proxy says it has no CA");
    assert!(line.contains("secret \"ROOTCA\" and \"default\""), "{line}");
    for flag in [
        "--ca-addr (CA_ADDR)",
        "--xds-root-cert (XDS_ROOT_CA)",
        "--token-file",
    ] {
        assert!(line.contains(flag), "{flag} in {line}");
    }
}
