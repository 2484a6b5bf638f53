//! Fetches the key sets RequestAuthentications name by `jwksUri`, outside translation:
//! new URIs when config changes, every URI again each refresh interval (Istio's
//! `PILOT_JWT_PUB_KEY_REFRESH_INTERVAL`, 20 minutes unless the variable says otherwise).
//! A changed key set starts a push, which inlines what was fetched; a URI that cannot be
//! fetched gets a key nobody holds (fail closed, Istio's fake JWKS).
//!
//! `https://` issuers are verified against the system's roots, as istiod's Go client
//! verifies them, plus any extra CA the resolver is given.

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::{Instant, sleep_until, timeout};
use tokio_rustls::TlsConnector;

use crate::model::jwks::{JwksKeys, jwks_uris};
use crate::store::ConfigStore;

/// How often every key set is fetched again, unless `PILOT_JWT_PUB_KEY_REFRESH_INTERVAL`
/// says otherwise.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(20 * 60);
/// The environment variable that sets the refresh interval, a Go duration (`20m`, `1h30m`).
pub const REFRESH_INTERVAL_ENV: &str = "PILOT_JWT_PUB_KEY_REFRESH_INTERVAL";
/// How long one fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest key set accepted.
const MAX_JWKS_BYTES: usize = 1 << 20;

/// How a [`JwksResolver`] fetches.
#[derive(Debug, Clone)]
pub struct JwksOptions {
    /// How often every key set is fetched again.
    pub refresh_interval: Duration,
    /// CAs trusted for `https://` issuers beside the system's roots.
    pub extra_roots: Vec<CertificateDer<'static>>,
}

impl JwksOptions {
    /// The refresh interval from `PILOT_JWT_PUB_KEY_REFRESH_INTERVAL`, else
    /// [`REFRESH_INTERVAL`]; no extra roots.
    pub fn from_env() -> JwksOptions {
        let refresh_interval = match std::env::var(REFRESH_INTERVAL_ENV) {
            Ok(value) => go_duration(&value).unwrap_or_else(|| {
                tracing::warn!(
                    %value,
                    "{REFRESH_INTERVAL_ENV} is not a positive duration; using {REFRESH_INTERVAL:?}"
                );
                REFRESH_INTERVAL
            }),
            Err(_) => REFRESH_INTERVAL,
        };
        JwksOptions {
            refresh_interval,
            extra_roots: Vec::new(),
        }
    }
}

/// The fetched key sets, shared with push building, and the way to ask for a refetch.
#[derive(Debug, Clone)]
pub struct JwksResolver {
    keys: Arc<ArcSwap<JwksKeys>>,
    config_changed: Arc<Notify>,
    refresh_interval: Duration,
    /// Built once: the roots are read when the resolver is made, not per fetch.
    tls: Arc<rustls::ClientConfig>,
}

impl Default for JwksResolver {
    /// A resolver on [`JwksOptions::from_env`].
    fn default() -> Self {
        JwksResolver::new(JwksOptions::from_env())
    }
}

impl JwksResolver {
    /// A resolver that has fetched nothing yet.
    pub fn new(options: JwksOptions) -> JwksResolver {
        JwksResolver {
            keys: Arc::default(),
            config_changed: Arc::default(),
            refresh_interval: options.refresh_interval,
            tls: Arc::new(client_config(options.extra_roots)),
        }
    }

    /// The key sets fetched so far.
    pub fn keys(&self) -> Arc<JwksKeys> {
        self.keys.load_full()
    }

    /// Tells the resolver that config changed (URIs may have appeared).
    pub fn config_changed(&self) {
        self.config_changed.notify_one();
    }

    /// Keeps the key sets of `store`'s RequestAuthentications fetched until the task is
    /// dropped; `on_change` runs whenever a fetch changed what is known.
    pub async fn run(self, store: Arc<dyn ConfigStore>, on_change: impl Fn() + Send + 'static) {
        let mut next_refresh = Instant::now() + self.refresh_interval;
        let mut refresh_all = false;
        loop {
            let uris = jwks_uris(&store.snapshot());
            let known = self.keys.load_full();
            let mut next = JwksKeys::default();
            let mut changed = false;
            for uri in &uris {
                let fetched = match known.get(uri) {
                    Some(previous) if !refresh_all => previous.clone(),
                    _ => self.fetch(uri).await,
                };
                changed |= known.get(uri) != Some(&fetched);
                next.insert(uri, fetched);
            }
            if changed {
                self.keys.store(Arc::new(next));
                on_change();
            }
            tokio::select! {
                () = self.config_changed.notified() => refresh_all = false,
                () = sleep_until(next_refresh) => {
                    refresh_all = true;
                    next_refresh = Instant::now() + self.refresh_interval;
                }
            }
        }
    }

    /// GETs `uri` (`http://`, or `https://` verified against the resolver's roots) and
    /// returns the body of a 200 response.
    pub async fn fetch(&self, uri: &str) -> Result<String, String> {
        timeout(FETCH_TIMEOUT, self.get(uri))
            .await
            .map_err(|_| format!("no answer within {FETCH_TIMEOUT:?}"))
            .flatten()
            .map_err(|e| format!("jwksUri {uri:?}: {e}"))
    }

    async fn get(&self, uri: &str) -> Result<String, String> {
        let parsed: http::Uri = uri.parse().map_err(|e| format!("{e}"))?;
        let tls = match parsed.scheme_str() {
            Some("http") => false,
            Some("https") => true,
            _ => return Err("neither http:// nor https://".to_owned()),
        };
        let authority = parsed.authority().ok_or("no host")?;
        // `[::1]` connects and is verified as `::1`.
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']');
        let port = parsed.port_u16().unwrap_or(if tls { 443 } else { 80 });
        let stream = TcpStream::connect((host, port))
            .await
            .map_err(|e| e.to_string())?;
        let path = parsed.path_and_query().map_or("/", |p| p.as_str());
        if !tls {
            return get_on(stream, authority.as_str(), path).await;
        }
        let name = ServerName::try_from(host.to_owned()).map_err(|e| e.to_string())?;
        let stream = TlsConnector::from(self.tls.clone())
            .connect(name, stream)
            .await
            .map_err(|e| format!("TLS: {e}"))?;
        get_on(stream, authority.as_str(), path).await
    }
}

/// GETs `path` from `authority` over HTTP/1.1 on `io`; the body of a 200 response.
async fn get_on<I>(io: I, authority: &str, path: &str) -> Result<String, String>
where
    I: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(io))
        .await
        .map_err(|e| e.to_string())?;
    tokio::spawn(connection);
    let request = http::Request::get(path)
        .header(http::header::HOST, authority)
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?;
    if response.status() != http::StatusCode::OK {
        return Err(format!("status {}", response.status()));
    }
    let body = http_body_util::Limited::new(response.into_body(), MAX_JWKS_BYTES)
        .collect()
        .await
        .map_err(|e| e.to_string())?
        .to_bytes();
    String::from_utf8(body.to_vec()).map_err(|_| "body is not UTF-8".to_owned())
}

/// TLS to issuers: the system's roots (what it cannot parse is skipped, as Go's
/// `SystemCertPool` skips it) and `extra_roots`.
fn client_config(extra_roots: Vec<CertificateDer<'static>>) -> rustls::ClientConfig {
    let mut roots = rustls::RootCertStore::empty();
    let system = rustls_native_certs::load_native_certs();
    for error in &system.errors {
        tracing::debug!(%error, "system root certificates");
    }
    roots.add_parsable_certificates(system.certs);
    roots.add_parsable_certificates(extra_roots);
    rustls::ClientConfig::builder_with_provider(rustls::crypto::ring::default_provider().into())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions")
        .with_root_certificates(roots)
        .with_no_client_auth()
}

/// A positive Go duration (`time.ParseDuration`): numbers with units `ns`, `us`, `ms`,
/// `s`, `m`, `h`, as in `20m` or `1h30m` or `1.5s`.
fn go_duration(text: &str) -> Option<Duration> {
    let mut rest = text.trim();
    let mut total = Duration::ZERO;
    if rest.is_empty() {
        return None;
    }
    while !rest.is_empty() {
        let number_end = rest
            .find(|c: char| !(c.is_ascii_digit() || c == '.'))
            .unwrap_or(rest.len());
        let number: f64 = rest[..number_end].parse().ok()?;
        rest = &rest[number_end..];
        let unit_end = rest
            .find(|c: char| c.is_ascii_digit() || c == '.')
            .unwrap_or(rest.len());
        let seconds = match &rest[..unit_end] {
            "ns" => 1e-9,
            "us" | "µs" => 1e-6,
            "ms" => 1e-3,
            "s" => 1.0,
            "m" => 60.0,
            "h" => 3600.0,
            _ => return None,
        };
        rest = &rest[unit_end..];
        total += Duration::try_from_secs_f64(number * seconds).ok()?;
    }
    (!total.is_zero()).then_some(total)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{BasicConstraints, CertificateParams, IsCa, Issuer, KeyPair};
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;
    use tokio::sync::{mpsc, watch};

    use crate::model::jwks::FAIL_CLOSED_JWKS;
    use crate::store::DirStore;

    /// Answers every request on `stream` with `jwks`, then closes.
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

    /// An issuer on 127.0.0.1 serving the key set `keys` holds over TLS, with a
    /// certificate from a fresh CA; its address and the CA.
    async fn https_issuer(keys: watch::Receiver<String>) -> (String, CertificateDer<'static>) {
        let ca_key = KeyPair::generate().unwrap();
        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        let ca = ca_params.self_signed(&ca_key).unwrap();
        let issuer = Issuer::new(ca_params, ca_key);
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["127.0.0.1".to_owned()])
            .unwrap()
            .signed_by(&key, &issuer)
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
        let acceptor = tokio_rustls::TlsAcceptor::from(Arc::new(config));
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let uri = format!("https://{}/jwks.json", listener.local_addr().unwrap());
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let (acceptor, jwks) = (acceptor.clone(), keys.borrow().clone());
                tokio::spawn(async move {
                    if let Ok(tls) = acceptor.accept(stream).await {
                        answer(tls, &jwks).await;
                    }
                });
            }
        });
        (uri, ca.der().clone())
    }

    /// A config store holding one RequestAuthentication whose keys are at `jwks_uri`.
    fn store_naming(dir: &tempfile::TempDir, jwks_uri: &str) -> Arc<dyn ConfigStore> {
        let yaml = format!(
            "apiVersion: security.istio.io/v1\nkind: RequestAuthentication\nmetadata: {{name: jwt, namespace: default}}\nspec:\n  jwtRules:\n  - issuer: https://issuer.test\n    jwksUri: {jwks_uri}\n"
        );
        std::fs::write(dir.path().join("jwt.yaml"), yaml).unwrap();
        Arc::new(DirStore::open(dir.path()).unwrap())
    }

    #[tokio::test]
    async fn fetches_keys_over_http_and_fails_closed_when_unreachable() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let jwks = r#"{"keys":[]}"#;
        tokio::spawn(async move {
            let (stream, _) = listener.accept().await.unwrap();
            answer(stream, jwks).await;
        });
        let resolver = JwksResolver::new(JwksOptions::from_env());
        assert_eq!(
            resolver
                .fetch(&format!("http://{addr}/jwks.json"))
                .await
                .as_deref(),
            Ok(jwks)
        );

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
    async fn an_https_issuer_is_trusted_only_through_a_known_ca() {
        let (_keys, served) = watch::channel(r#"{"keys":[]}"#.to_owned());
        let (uri, ca) = https_issuer(served).await;
        let trusting = JwksResolver::new(JwksOptions {
            refresh_interval: REFRESH_INTERVAL,
            extra_roots: vec![ca],
        });
        assert_eq!(trusting.fetch(&uri).await.as_deref(), Ok(r#"{"keys":[]}"#));
        // The system's roots alone do not know the test CA: fail closed.
        let error = JwksResolver::new(JwksOptions::from_env())
            .fetch(&uri)
            .await
            .unwrap_err();
        assert!(
            error.contains("TLS") && error.contains("UnknownIssuer"),
            "{error}"
        );
    }

    #[tokio::test]
    async fn rotated_keys_are_pushed_after_a_refresh() {
        let (keys, served) = watch::channel(r#"{"keys":[{"kid":"old"}]}"#.to_owned());
        let (uri, ca) = https_issuer(served).await;
        let dir = tempfile::tempdir().unwrap();
        let store = store_naming(&dir, &uri);
        // A short interval: the refresh itself is what is tested.
        let resolver = JwksResolver::new(JwksOptions {
            refresh_interval: Duration::from_millis(50),
            extra_roots: vec![ca],
        });
        let (pushed, mut pushes) = mpsc::unbounded_channel();
        let task = tokio::spawn(resolver.clone().run(store, move || {
            let _ = pushed.send(());
        }));
        next_push(&mut pushes).await;
        assert_eq!(
            resolver.keys().inline_for(&uri),
            r#"{"keys":[{"kid":"old"}]}"#
        );
        keys.send_replace(r#"{"keys":[{"kid":"new"}]}"#.to_owned());
        next_push(&mut pushes).await;
        assert_eq!(
            resolver.keys().inline_for(&uri),
            r#"{"keys":[{"kid":"new"}]}"#
        );
        task.abort();
    }

    /// Waits for the resolver's next push (the bound only turns a hang into a failure).
    async fn next_push(pushes: &mut mpsc::UnboundedReceiver<()>) {
        tokio::time::timeout(Duration::from_secs(10), pushes.recv())
            .await
            .expect("a push within 10 s")
            .expect("the resolver runs");
    }

    #[test]
    fn refresh_intervals_read_as_go_durations() {
        assert_eq!(go_duration("20m"), Some(Duration::from_secs(1200)));
        assert_eq!(go_duration("1h30m"), Some(Duration::from_secs(5400)));
        assert_eq!(go_duration("1.5s"), Some(Duration::from_millis(1500)));
        assert_eq!(go_duration("250ms"), Some(Duration::from_millis(250)));
        for bad in ["", "20", "m", "5x", "0s", "-1m"] {
            assert_eq!(go_duration(bad), None, "{bad:?}");
        }
    }
}
