//! Istio's CA API served: authenticate the caller by its bearer token, then sign its CSR
//! for that caller's identity and nobody else's.

use std::sync::Arc;
use std::time::Duration;

use mizzen_xds::ca::{
    IstioCertificateRequest, IstioCertificateResponse, IstioCertificateService, SpiffeId,
};
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status};

use super::{AuthError, Ca, CallerAuthenticator, SignError};

/// `IstioCertificateService/CreateCertificate` for a CA and an authenticator.
pub struct CaService {
    ca: Arc<Ca>,
    callers: Arc<dyn CallerAuthenticator>,
    trust_domain: String,
}

impl CaService {
    /// Signs with `ca` for callers `callers` knows, in `trust_domain`.
    pub fn new(
        ca: Arc<Ca>,
        callers: Arc<dyn CallerAuthenticator>,
        trust_domain: impl Into<String>,
    ) -> CaService {
        CaService {
            ca,
            callers,
            trust_domain: trust_domain.into(),
        }
    }

    async fn caller(&self, metadata: &MetadataMap) -> Result<SpiffeId, Status> {
        let token = bearer(metadata).ok_or_else(|| {
            Status::unauthenticated(
                "no bearer token (authorization: Bearer <token>) in the request",
            )
        })?;
        let account = self
            .callers
            .authenticate(token)
            .await
            .map_err(|e| match e {
                AuthError::Invalid => Status::unauthenticated(e.to_string()),
                AuthError::Unavailable(_) => Status::unavailable(e.to_string()),
            })?;
        SpiffeId::new(&self.trust_domain, account.namespace, account.name).map_err(|e| {
            Status::permission_denied(format!("the caller has no valid identity: {e}"))
        })
    }
}

impl IstioCertificateService for CaService {
    async fn create_certificate(
        &self,
        request: Request<IstioCertificateRequest>,
    ) -> Result<Response<IstioCertificateResponse>, Status> {
        let caller = self.caller(request.metadata()).await?;
        let request = request.into_inner();
        let ttl = match request.validity_duration {
            ..=0 => None,
            seconds => Some(Duration::from_secs(seconds.unsigned_abs())),
        };
        match self.ca.sign_workload(&request.csr, &caller, ttl) {
            Ok(signed) => {
                tracing::debug!(%caller, ?ttl, "signed a workload certificate");
                Ok(Response::new(IstioCertificateResponse {
                    cert_chain: signed.chain,
                }))
            }
            Err(e) => {
                tracing::warn!(%caller, error = %e, "refused a certificate request");
                Err(match e {
                    SignError::Identity { .. } => Status::permission_denied(e.to_string()),
                    SignError::Csr { .. } | SignError::Ttl { .. } => {
                        Status::invalid_argument(e.to_string())
                    }
                    SignError::Sign(_) => Status::internal(e.to_string()),
                })
            }
        }
    }
}

/// The token of an `authorization: Bearer <token>` header.
fn bearer(metadata: &MetadataMap) -> Option<&str> {
    let value = metadata.get("authorization")?.to_str().ok()?;
    let (scheme, token) = value.split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bearer_tokens_are_read_as_istio_agent_sends_them() {
        let mut metadata = MetadataMap::new();
        assert_eq!(bearer(&metadata), None);
        metadata.insert("authorization", "Bearer abc".parse().unwrap());
        assert_eq!(bearer(&metadata), Some("abc"));
        metadata.insert("authorization", "bearer  abc ".parse().unwrap());
        assert_eq!(bearer(&metadata), Some("abc"));
        metadata.insert("authorization", "Basic abc".parse().unwrap());
        assert_eq!(bearer(&metadata), None);
        metadata.insert("authorization", "Bearer ".parse().unwrap());
        assert_eq!(bearer(&metadata), None);
    }
}
