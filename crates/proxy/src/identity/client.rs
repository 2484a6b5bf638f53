//! One certificate request to the CA, over TLS verified against its root.

use std::time::Duration;

use mizzen_xds::ca::{IstioCertificateRequest, IstioCertificateServiceClient};
use tonic::transport::Endpoint;

use super::IdentityOptions;

/// How long one request may take, connection included.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(10);

/// Why the CA did not sign.
#[derive(Debug, thiserror::Error)]
pub(super) enum RequestError {
    /// The CA address is not a URI.
    #[error("CA address {addr:?}: {source}")]
    Address {
        addr: String,
        source: tonic::transport::Error,
    },
    /// The CA cannot be reached, or did not prove who it is.
    #[error(
        "cannot connect to the CA at {addr}: {}",
        mizzen_xds::client::causes(source)
    )]
    Connect {
        addr: String,
        source: tonic::transport::Error,
    },
    /// The token cannot be sent as a header.
    #[error("the token holds characters a header cannot carry")]
    Token,
    /// The CA refused.
    #[error("the CA refused: {}: {}", .0.code(), .0.message())]
    Refused(tonic::Status),
}

/// Sends `csr` to the CA and returns its chain, leaf first.
pub(super) async fn sign(
    options: &IdentityOptions,
    csr: String,
) -> Result<Vec<String>, RequestError> {
    let addr = &options.ca_addr;
    let endpoint = Endpoint::from_shared(addr.clone())
        .map_err(|source| RequestError::Address {
            addr: addr.clone(),
            source,
        })?
        .connect_timeout(REQUEST_TIMEOUT)
        .timeout(REQUEST_TIMEOUT);
    let channel = options
        .tls
        .connect(endpoint)
        .await
        .map_err(|source| RequestError::Connect {
            addr: addr.clone(),
            source,
        })?;
    let mut request = tonic::Request::new(IstioCertificateRequest {
        csr,
        validity_duration: i64::try_from(options.ttl.as_secs()).unwrap_or(i64::MAX),
        metadata: None,
    });
    if let Some(token) = &options.token {
        let value = format!("Bearer {token}")
            .parse()
            .map_err(|_| RequestError::Token)?;
        request.metadata_mut().insert("authorization", value);
    }
    let response = IstioCertificateServiceClient::new(channel)
        .create_certificate(request)
        .await
        .map_err(RequestError::Refused)?;
    Ok(response.into_inner().cert_chain)
}
