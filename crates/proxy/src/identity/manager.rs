//! The task that keeps the proxy's certificate current.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use mizzen_xds::pb::envoy::extensions::transport_sockets::tls::v3::Secret;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::certificate::Certificate;
use super::{IdentityError, IdentityOptions, client, csr, secrets};

/// The shortest wait before a renewal, so that a CA handing out certificates that are
/// about to expire cannot spin the task.
const MIN_RENEWAL_WAIT: Duration = Duration::from_millis(100);

/// What receives each new secret.
type OnSecret = Arc<dyn Fn(Secret) + Send + Sync>;

/// Keeps the proxy's certificate current; dropping it stops renewals (the secrets
/// already handed on stay where they went).
#[derive(Debug)]
pub struct IdentityManager {
    current: watch::Receiver<Option<Arc<Certificate>>>,
    task: JoinHandle<()>,
}

impl IdentityManager {
    /// Starts getting certificates as `options` say. Each new certificate is handed to
    /// `on_secret` as two secrets, `default` then `ROOTCA`.
    pub fn start(
        options: IdentityOptions,
        on_secret: impl Fn(Secret) + Send + Sync + 'static,
    ) -> Result<IdentityManager, IdentityError> {
        options.validate()?;
        let (tx, current) = watch::channel(None);
        let task = tokio::spawn(run(options, Arc::new(on_secret), tx));
        Ok(IdentityManager { current, task })
    }

    /// The certificate in force, once there is one.
    pub fn current(&self) -> Option<Arc<Certificate>> {
        self.current.borrow().clone()
    }

    /// Waits for the first certificate; callers bound the wait with a timeout.
    pub async fn issued(&self) -> Arc<Certificate> {
        let mut current = self.current.clone();
        loop {
            if let Some(cert) = current.borrow_and_update().clone() {
                return cert;
            }
            if current.changed().await.is_err() {
                // The task is gone (it panicked) before any certificate came.
                return std::future::pending().await;
            }
        }
    }
}

impl Drop for IdentityManager {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn run(
    options: IdentityOptions,
    on_secret: OnSecret,
    current: watch::Sender<Option<Arc<Certificate>>>,
) {
    let mut attempt = 0;
    loop {
        match obtain(&options).await {
            Ok(cert) => {
                attempt = 0;
                tracing::info!(
                    identity = %cert.identity(),
                    serial = cert.serial(),
                    not_after = ?cert.not_after(),
                    "workload certificate issued"
                );
                for secret in secrets::secrets(&cert) {
                    on_secret(secret);
                }
                let renew_at = cert.renewal_time(options.grace_ratio);
                current.send_replace(Some(Arc::new(cert)));
                let wait = renew_at
                    .duration_since(SystemTime::now())
                    .unwrap_or_default()
                    .max(MIN_RENEWAL_WAIT);
                // Time itself is the behaviour here: renew at that point of the life.
                tokio::time::sleep(wait).await;
            }
            Err(error) => {
                let delay = options.backoff.delay(attempt);
                attempt = attempt.saturating_add(1);
                tracing::warn!(
                    identity = %options.identity,
                    %error,
                    ?delay,
                    "workload certificate not obtained; the current one stays in force"
                );
                tokio::time::sleep(delay).await;
            }
        }
    }
}

/// A new key, its CSR signed, the result checked.
async fn obtain(options: &IdentityOptions) -> Result<Certificate, String> {
    let (key, csr) =
        csr::key_and_csr(&options.identity).map_err(|e| format!("making the CSR: {e}"))?;
    let chain = client::sign(options, csr)
        .await
        .map_err(|e| e.to_string())?;
    Certificate::new(chain, &key, &options.identity)
        .map_err(|reason| format!("the CA's answer is unusable: {reason}"))
}
