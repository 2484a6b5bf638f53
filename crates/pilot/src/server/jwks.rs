//! Fetches the key sets RequestAuthentications name by `jwksUri`, outside translation:
//! new URIs when config changes, every URI again each refresh interval (Istio's
//! `PILOT_JWT_PUB_KEY_REFRESH_INTERVAL`, 20 minutes unless the variable says otherwise).
//! A changed key set starts a push to the proxies whose policies name its URI, which
//! inlines what was fetched; a URI that cannot be fetched gets a key nobody holds (fail
//! closed, Istio's fake JWKS).
//!
//! `https://` issuers are verified against the system's roots, as istiod's Go client
//! verifies them, plus the extra CAs istiod reads from `/cacerts/extra.pem` (or a file
//! given instead); istiod's `JWKS_RESOLVER_INSECURE_SKIP_VERIFY` turns verification off.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::{CryptoProvider, verify_tls12_signature, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::{Instant, sleep_until, timeout};
use tokio_rustls::TlsConnector;

use crate::model::jwks::{JwksKeys, jwks_uris};
use crate::model::security::parse_go_bool;
use crate::store::ConfigStore;

/// How often every key set is fetched again, unless `PILOT_JWT_PUB_KEY_REFRESH_INTERVAL`
/// says otherwise.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(20 * 60);
/// The environment variable that sets the refresh interval, a Go duration (`20m`, `1h30m`).
pub const REFRESH_INTERVAL_ENV: &str = "PILOT_JWT_PUB_KEY_REFRESH_INTERVAL";
/// The environment variable that turns off the verification of `https://` issuers, a Go
/// boolean (istiod's name).
pub const INSECURE_SKIP_VERIFY_ENV: &str = "JWKS_RESOLVER_INSECURE_SKIP_VERIFY";
/// Where istiod reads extra CAs for `https://` issuers (Istio's chart mounts its
/// `pilot.jwksResolverExtraRootCA` value there); read when it exists.
pub const EXTRA_ROOT_CA_PATH: &str = "/cacerts/extra.pem";
/// How long one fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest key set accepted.
const MAX_JWKS_BYTES: usize = 1 << 20;

/// How a [`JwksResolver`] fetches.
#[derive(Debug, Clone)]
pub struct JwksOptions {
    /// How often every key set is fetched again.
    pub refresh_interval: Duration,
    /// How `https://` issuers are verified.
    pub trust: IssuerTrust,
}

/// How `https://` issuers are verified.
#[derive(Debug, Clone)]
pub enum IssuerTrust {
    /// Against the system's roots and these CAs.
    Roots(Vec<CertificateDer<'static>>),
    /// Not at all: any certificate is taken for any name, as with istiod's
    /// `JWKS_RESOLVER_INSECURE_SKIP_VERIFY=true`.
    InsecureSkipVerify,
}

impl Default for IssuerTrust {
    /// The system's roots alone.
    fn default() -> Self {
        IssuerTrust::Roots(Vec::new())
    }
}

/// Why the extra CAs for `https://` issuers cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum ExtraRootCaError {
    /// The file cannot be read.
    #[error("JWKS extra root CA file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file holds no PEM certificate, or a broken one.
    #[error("JWKS extra root CA file {path}: {reason}")]
    Pem {
        /// The file.
        path: PathBuf,
        /// What is wrong with its contents.
        reason: String,
    },
}

impl JwksOptions {
    /// As istiod: the refresh interval from `PILOT_JWT_PUB_KEY_REFRESH_INTERVAL` (else
    /// [`REFRESH_INTERVAL`]); no verification when `JWKS_RESOLVER_INSECURE_SKIP_VERIFY`
    /// is true, else the system's roots and the CAs in [`EXTRA_ROOT_CA_PATH`] if it
    /// exists.
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
        let skip_verify = std::env::var(INSECURE_SKIP_VERIFY_ENV).is_ok_and(|value| {
            parse_go_bool(&value).unwrap_or_else(|| {
                tracing::warn!(%value, "{INSECURE_SKIP_VERIFY_ENV} is not a boolean; verifying");
                false
            })
        });
        let trust = if skip_verify {
            IssuerTrust::InsecureSkipVerify
        } else {
            // istiod skips a bundle it cannot read; say why, at least.
            match extra_root_ca(Path::new(EXTRA_ROOT_CA_PATH)) {
                Ok(roots) => IssuerTrust::Roots(roots),
                Err(ExtraRootCaError::Read { source, .. })
                    if source.kind() == std::io::ErrorKind::NotFound =>
                {
                    IssuerTrust::default()
                }
                Err(error) => {
                    tracing::warn!(%error, "using the system's roots alone");
                    IssuerTrust::default()
                }
            }
        };
        JwksOptions {
            refresh_interval,
            trust,
        }
    }

    /// Trusts the CAs in the PEM file at `path` too (unless nothing is verified).
    pub fn trust_extra_root_ca(&mut self, path: &Path) -> Result<(), ExtraRootCaError> {
        let roots = extra_root_ca(path)?;
        if let IssuerTrust::Roots(extra) = &mut self.trust {
            extra.extend(roots);
        }
        Ok(())
    }
}

/// The certificates in the PEM file at `path`; at least one.
pub fn extra_root_ca(path: &Path) -> Result<Vec<CertificateDer<'static>>, ExtraRootCaError> {
    let pem = std::fs::read(path).map_err(|source| ExtraRootCaError::Read {
        path: path.to_owned(),
        source,
    })?;
    let invalid = |reason: String| ExtraRootCaError::Pem {
        path: path.to_owned(),
        reason,
    };
    let roots = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| invalid(e.to_string()))?;
    if roots.is_empty() {
        return Err(invalid("no PEM certificate in it".to_owned()));
    }
    Ok(roots)
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

impl JwksResolver {
    /// A resolver that has fetched nothing yet.
    pub fn new(options: JwksOptions) -> JwksResolver {
        JwksResolver {
            keys: Arc::default(),
            config_changed: Arc::default(),
            refresh_interval: options.refresh_interval,
            tls: Arc::new(client_config(options.trust)),
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
    /// dropped; `on_change` gets the URIs whose key sets a fetch changed (or first had).
    pub async fn run(
        self,
        store: Arc<dyn ConfigStore>,
        on_change: impl Fn(BTreeSet<String>) + Send + 'static,
    ) {
        let mut next_refresh = Instant::now() + self.refresh_interval;
        let mut refresh_all = false;
        loop {
            let uris = jwks_uris(&store.snapshot());
            let known = self.keys.load_full();
            let mut next = JwksKeys::default();
            let mut changed = BTreeSet::new();
            for uri in uris {
                let fetched = match known.get(&uri) {
                    Some(previous) if !refresh_all => previous.clone(),
                    _ => self.fetch(&uri).await,
                };
                let differs = known.get(&uri) != Some(&fetched);
                next.insert(&uri, fetched);
                if differs {
                    changed.insert(uri);
                }
            }
            if !changed.is_empty() {
                self.keys.store(Arc::new(next));
                on_change(changed);
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
/// `SystemCertPool` skips it) and the extra ones, or no verification at all.
fn client_config(trust: IssuerTrust) -> rustls::ClientConfig {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("ring supports the default protocol versions");
    let extra = match trust {
        IssuerTrust::Roots(extra) => extra,
        IssuerTrust::InsecureSkipVerify => {
            tracing::warn!(
                "{INSECURE_SKIP_VERIFY_ENV} is set: https:// jwksUri issuers are not verified"
            );
            return builder
                .dangerous()
                .with_custom_certificate_verifier(Arc::new(AnyCertificate(provider)))
                .with_no_client_auth();
        }
    };
    let mut roots = rustls::RootCertStore::empty();
    let system = rustls_native_certs::load_native_certs();
    for error in &system.errors {
        tracing::debug!(%error, "system root certificates");
    }
    roots.add_parsable_certificates(system.certs);
    roots.add_parsable_certificates(extra);
    builder.with_root_certificates(roots).with_no_client_auth()
}

/// Takes any certificate for any name, as Go's `InsecureSkipVerify` does; the handshake
/// must still be signed by the certificate's key.
#[derive(Debug)]
struct AnyCertificate(Arc<CryptoProvider>);

impl ServerCertVerifier for AnyCertificate {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
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

    #[test]
    fn an_extra_root_ca_file_without_a_certificate_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing.pem");
        let error = JwksOptions::from_env()
            .trust_extra_root_ca(&missing)
            .unwrap_err();
        assert!(matches!(error, ExtraRootCaError::Read { .. }), "{error}");
        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let error = extra_root_ca(&empty).unwrap_err().to_string();
        assert_eq!(
            error,
            format!(
                "JWKS extra root CA file {}: no PEM certificate in it",
                empty.display()
            )
        );
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
