//! Fetches the key sets RequestAuthentications name by `jwksUri`, outside translation:
//! new URIs when config changes, every URI again each refresh interval (Istio's
//! `PILOT_JWT_PUB_KEY_REFRESH_INTERVAL`, 20 minutes). A push then inlines what was
//! fetched; a URI that cannot be fetched gets a key nobody holds (fail closed).

use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwap;
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::{Instant, sleep_until, timeout};

use crate::model::jwks::{JwksKeys, jwks_uris};
use crate::store::ConfigStore;

/// How often every key set is fetched again.
pub const REFRESH_INTERVAL: Duration = Duration::from_secs(20 * 60);
/// How long one fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
/// The largest key set accepted.
const MAX_JWKS_BYTES: usize = 1 << 20;

/// The fetched key sets, shared with push building, and the way to ask for a refetch.
#[derive(Debug, Clone, Default)]
pub struct JwksResolver {
    keys: Arc<ArcSwap<JwksKeys>>,
    config_changed: Arc<Notify>,
}

impl JwksResolver {
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
        let mut next_refresh = Instant::now() + REFRESH_INTERVAL;
        let mut refresh_all = false;
        loop {
            let uris = jwks_uris(&store.snapshot());
            let known = self.keys.load_full();
            let mut next = JwksKeys::default();
            let mut changed = false;
            for uri in &uris {
                let fetched = match known.get(uri) {
                    Some(previous) if !refresh_all => previous.clone(),
                    _ => fetch(uri).await,
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
                    next_refresh = Instant::now() + REFRESH_INTERVAL;
                }
            }
        }
    }
}

/// GETs `uri` (`http://` only: this pilot carries no CA bundle to verify `https://`
/// issuers with) and returns the body of a 200 response.
pub async fn fetch(uri: &str) -> Result<String, String> {
    let parsed: http::Uri = uri.parse().map_err(|e| format!("jwksUri {uri:?}: {e}"))?;
    if parsed.scheme_str() != Some("http") {
        return Err(format!(
            "jwksUri {uri:?}: only http:// is fetched (no CA bundle to verify https with)"
        ));
    }
    let host = parsed
        .host()
        .ok_or_else(|| format!("jwksUri {uri:?}: no host"))?;
    let port = parsed.port_u16().unwrap_or(80);
    let get = async {
        let stream = TcpStream::connect((host, port))
            .await
            .map_err(|e| e.to_string())?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| e.to_string())?;
        tokio::spawn(connection);
        let path = parsed.path_and_query().map_or("/", |p| p.as_str());
        let request = http::Request::get(path)
            .header(http::header::HOST, host)
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
    };
    timeout(FETCH_TIMEOUT, get)
        .await
        .map_err(|_| format!("jwksUri {uri:?}: no answer within {FETCH_TIMEOUT:?}"))?
        .map_err(|e| format!("jwksUri {uri:?}: {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    #[tokio::test]
    async fn fetches_keys_over_http_and_fails_closed_when_unreachable() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let jwks = r#"{"keys":[]}"#;
        tokio::spawn(async move {
            let (mut s, _) = listener.accept().await.unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).await.unwrap();
            let reply = format!(
                "HTTP/1.1 200 OK\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{jwks}",
                jwks.len()
            );
            s.write_all(reply.as_bytes()).await.unwrap();
        });
        assert_eq!(
            fetch(&format!("http://{addr}/jwks.json")).await.as_deref(),
            Ok(jwks)
        );

        // A port nobody listens on: the fetch fails, and translation inlines a key
        // nobody holds.
        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let dead = format!("http://{}/jwks.json", closed.local_addr().unwrap());
        drop(closed);
        let mut keys = JwksKeys::default();
        keys.insert(&dead, fetch(&dead).await);
        assert!(keys.get(&dead).unwrap().is_err());
        assert_eq!(keys.inline_for(&dead), crate::model::jwks::FAIL_CLOSED_JWKS);
    }
}
