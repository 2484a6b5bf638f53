//! The workload's identity: the proxy makes its own key (it never leaves the process),
//! asks the mesh's CA to sign a CSR for its SPIFFE identity, and hands the certificate
//! on as the Envoy secrets Istio's agent serves, `default` and `ROOTCA`. It renews at
//! half the certificate's life (Istio's `SECRET_GRACE_PERIOD_RATIO`), retries with
//! jittered backoff while the CA is away, and keeps the current certificate meanwhile.
//! A proxy with no CA to ask whose config wants those secrets says so once.

mod certificate;
mod client;
mod csr;
mod manager;
mod missing;
mod secrets;

use std::time::Duration;

use mizzen_xds::Backoff;
use mizzen_xds::ca::SpiffeId;
use mizzen_xds::pb::envoy::config::core::v3::Node;
use mizzen_xds::pb::google::protobuf::value::Kind;
use mizzen_xds::tls::ClientTls;

pub use certificate::Certificate;
pub use manager::IdentityManager;
pub(crate) use missing::report as report_missing;
pub use secrets::{ROOT_CA, WORKLOAD_CERT};

/// Istio's default certificate lifetime (`SECRET_TTL`).
pub const DEFAULT_TTL: Duration = Duration::from_secs(24 * 3600);
/// Istio's default share of a certificate's life left when it is renewed
/// (`SECRET_GRACE_PERIOD_RATIO`).
pub const DEFAULT_GRACE_RATIO: f64 = 0.5;

/// Where the proxy gets its certificate, and as whom.
#[derive(Debug, Clone)]
pub struct IdentityOptions {
    /// The CA's URI (`https://istiod.istio-system.svc:15012`; Istio's `CA_ADDR`).
    pub ca_addr: String,
    /// Whom the CA must prove to be: the root (`CA_ROOT_CA`) and the name (`ISTIOD_SAN`).
    pub tls: ClientTls,
    /// The token the proxy authenticates with, sent as `authorization: Bearer`.
    pub token: Option<String>,
    /// The identity to ask for.
    pub identity: SpiffeId,
    /// The lifetime to ask for (`SECRET_TTL`).
    pub ttl: Duration,
    /// The share of the lifetime left when the certificate is renewed
    /// (`SECRET_GRACE_PERIOD_RATIO`, between 0 and 1).
    pub grace_ratio: f64,
    /// The waits between failed attempts.
    pub backoff: Backoff,
}

/// Why the proxy's identity cannot be set up.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum IdentityError {
    /// The node does not say who the workload is.
    #[error("node metadata {field} is missing; the proxy's identity needs it")]
    MissingMetadata {
        /// The metadata field (`NAMESPACE`, `SERVICE_ACCOUNT`).
        field: &'static str,
    },
    /// The identity is malformed.
    #[error(transparent)]
    Identity(#[from] mizzen_xds::ca::SpiffeIdError),
    /// The renewal ratio is out of range.
    #[error("SECRET_GRACE_PERIOD_RATIO {0} must be between 0 and 1")]
    GraceRatio(f64),
}

impl IdentityOptions {
    /// The identity `node` runs as (its `NAMESPACE` and `SERVICE_ACCOUNT` metadata, as
    /// Istio's agent sets them) in `trust_domain`, signed by the CA at `ca_addr`, with
    /// Istio's defaults for lifetime, renewal and retries.
    pub fn for_node(
        node: &Node,
        trust_domain: &str,
        ca_addr: impl Into<String>,
        tls: ClientTls,
    ) -> Result<IdentityOptions, IdentityError> {
        let field = |field: &'static str| {
            node.metadata
                .as_ref()
                .and_then(|m| m.fields.get(field))
                .and_then(|v| match &v.kind {
                    Some(Kind::StringValue(s)) if !s.is_empty() => Some(s.clone()),
                    _ => None,
                })
                .ok_or(IdentityError::MissingMetadata { field })
        };
        let identity = SpiffeId::new(trust_domain, field("NAMESPACE")?, field("SERVICE_ACCOUNT")?)?;
        Ok(IdentityOptions {
            ca_addr: ca_addr.into(),
            tls,
            token: None,
            identity,
            ttl: DEFAULT_TTL,
            grace_ratio: DEFAULT_GRACE_RATIO,
            backoff: Backoff {
                initial: Duration::from_millis(200),
                max: Duration::from_secs(30),
            },
        })
    }

    /// Checks what a struct literal could have got wrong.
    fn validate(&self) -> Result<(), IdentityError> {
        if !(self.grace_ratio > 0.0 && self.grace_ratio < 1.0) {
            return Err(IdentityError::GraceRatio(self.grace_ratio));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use mizzen_xds::pb::google::protobuf::{Struct, Value};

    use super::*;

    fn node(fields: &[(&str, &str)]) -> Node {
        let fields = fields
            .iter()
            .map(|(k, v)| {
                let value = Value {
                    kind: Some(Kind::StringValue((*v).into())),
                };
                ((*k).to_owned(), value)
            })
            .collect();
        Node {
            metadata: Some(Struct { fields }),
            ..Node::default()
        }
    }

    fn tls() -> ClientTls {
        let key = rcgen::KeyPair::generate().unwrap();
        let mut params = rcgen::CertificateParams::default();
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let root = params.self_signed(&key).unwrap();
        ClientTls::new(root.pem().as_bytes(), "istiod.istio-system.svc").unwrap()
    }

    #[test]
    fn the_identity_comes_from_the_nodes_namespace_and_service_account() {
        let sleep = node(&[("NAMESPACE", "default"), ("SERVICE_ACCOUNT", "sleep")]);
        let options =
            IdentityOptions::for_node(&sleep, "cluster.local", "https://ca", tls()).unwrap();
        assert_eq!(
            options.identity.to_string(),
            "spiffe://cluster.local/ns/default/sa/sleep"
        );
        assert_eq!(options.ttl, DEFAULT_TTL);
        assert_eq!(options.grace_ratio, DEFAULT_GRACE_RATIO);

        let anonymous = node(&[("NAMESPACE", "default")]);
        let err = IdentityOptions::for_node(&anonymous, "cluster.local", "https://ca", tls())
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "node metadata SERVICE_ACCOUNT is missing; the proxy's identity needs it"
        );
    }

    #[test]
    fn a_grace_ratio_outside_zero_to_one_is_refused() {
        let sleep = node(&[("NAMESPACE", "default"), ("SERVICE_ACCOUNT", "sleep")]);
        let mut options =
            IdentityOptions::for_node(&sleep, "cluster.local", "https://ca", tls()).unwrap();
        options.grace_ratio = 1.5;
        assert_eq!(options.validate(), Err(IdentityError::GraceRatio(1.5)));
    }
}
