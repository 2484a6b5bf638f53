//! Who is calling the CA. A caller proves its identity with a bearer token, as
//! istio-agent presents its service account's JWT; an authenticator maps the token to
//! a service account. Local mode's [`LocalTokens`] are minted by `mizzen up` and
//! `mizzen run` for each workload; Kubernetes' TokenReview fits the same trait.

use std::fmt;
use std::future::Future;
use std::io::ErrorKind;
use std::path::{Path, PathBuf};
use std::pin::Pin;

use ring::digest::{SHA256, digest};
use ring::rand::{SecureRandom, SystemRandom};
use serde::{Deserialize, Serialize};

use super::CaError;
use super::files::{create_private_dir, write_private};

/// A Kubernetes service account: who a workload runs as.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ServiceAccount {
    /// Its namespace.
    pub namespace: String,
    /// Its name.
    #[serde(rename = "serviceAccount")]
    pub name: String,
}

/// Why a caller is not authenticated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    /// The token stands for nobody.
    #[error("the bearer token is not valid")]
    Invalid,
    /// The authenticator could not decide (its backend is away).
    #[error("cannot check the bearer token: {0}")]
    Unavailable(String),
}

/// Maps a caller's bearer token to the service account it runs as.
pub trait CallerAuthenticator: Send + Sync + 'static {
    /// The service account `token` belongs to.
    fn authenticate<'a>(
        &'a self,
        token: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<ServiceAccount, AuthError>> + Send + 'a>>;
}

/// Local mode's tokens: random secrets, one per workload, kept in a directory that only
/// the mesh's user can read. Each is a file named by the token's SHA-256 (so a listing
/// reveals no token) holding the service account as JSON, mode 0600.
#[derive(Clone)]
pub struct LocalTokens {
    dir: PathBuf,
}

impl LocalTokens {
    /// The tokens kept in `dir`, which is made (mode 0700) if it does not exist.
    pub fn open(dir: &Path) -> Result<LocalTokens, CaError> {
        create_private_dir(dir)?;
        Ok(LocalTokens {
            dir: dir.to_owned(),
        })
    }

    /// Mints a token for `account`; it is valid until revoked.
    pub fn issue(&self, account: &ServiceAccount) -> Result<String, CaError> {
        let mut secret = [0u8; 32];
        SystemRandom::new()
            .fill(&mut secret)
            .expect("the system's random source works");
        let token = hex(&secret);
        let record = serde_json::to_vec(account).expect("a service account serializes");
        write_private(&self.path(&token), &record)?;
        Ok(token)
    }

    /// Makes `token` invalid; revoking an unknown token is not an error.
    pub fn revoke(&self, token: &str) -> Result<(), CaError> {
        let path = self.path(token);
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != ErrorKind::NotFound => Err(CaError::Write { path, source: e }),
            _ => Ok(()),
        }
    }

    /// Revokes every token, as a new mesh starts.
    pub fn revoke_all(&self) -> Result<(), CaError> {
        let error = |source| CaError::Write {
            path: self.dir.clone(),
            source,
        };
        for entry in std::fs::read_dir(&self.dir).map_err(error)? {
            std::fs::remove_file(entry.map_err(error)?.path()).map_err(error)?;
        }
        Ok(())
    }

    fn path(&self, token: &str) -> PathBuf {
        self.dir
            .join(hex(digest(&SHA256, token.as_bytes()).as_ref()))
    }
}

impl fmt::Debug for LocalTokens {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("LocalTokens")
            .field("dir", &self.dir)
            .finish()
    }
}

impl CallerAuthenticator for LocalTokens {
    fn authenticate<'a>(
        &'a self,
        token: &'a str,
    ) -> Pin<Box<dyn Future<Output = Result<ServiceAccount, AuthError>> + Send + 'a>> {
        Box::pin(async move {
            // A small file read once per certificate (a day per workload): no need to
            // leave the runtime's thread.
            let record = match std::fs::read(self.path(token)) {
                Ok(record) => record,
                Err(e) if e.kind() == ErrorKind::NotFound => return Err(AuthError::Invalid),
                Err(e) => return Err(AuthError::Unavailable(e.to_string())),
            };
            serde_json::from_slice(&record)
                .map_err(|e| AuthError::Unavailable(format!("token record is damaged: {e}")))
        })
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt;

    use super::*;

    #[tokio::test]
    async fn issued_tokens_authenticate_until_revoked() {
        let dir = tempfile::tempdir().unwrap();
        let tokens = LocalTokens::open(&dir.path().join("tokens")).unwrap();
        let sleep = ServiceAccount {
            namespace: "default".into(),
            name: "sleep".into(),
        };
        let token = tokens.issue(&sleep).unwrap();
        assert_eq!(token.len(), 64);
        assert_eq!(tokens.authenticate(&token).await, Ok(sleep.clone()));
        assert_eq!(
            tokens.authenticate("not-a-token").await,
            Err(AuthError::Invalid)
        );

        let file = std::fs::read_dir(dir.path().join("tokens"))
            .unwrap()
            .next()
            .unwrap()
            .unwrap();
        let name = file.file_name().into_string().unwrap();
        assert!(!name.contains(&token), "the file name hides the token");
        let mode = file.metadata().unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600);

        tokens.revoke(&token).unwrap();
        assert_eq!(tokens.authenticate(&token).await, Err(AuthError::Invalid));
    }
}
