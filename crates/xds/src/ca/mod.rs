//! Istio's CA API, `istio.v1.auth.IstioCertificateService`: a proxy sends a CSR for its
//! workload's identity and gets back the signed certificate chain.
//!
//! The messages are Istio's public contract (`security/v1alpha1/ca.proto` in istio/api),
//! written out here rather than generated: two messages and one unary method are less
//! code than a proto build. The client and the server both come from them.

mod client;
mod identity;
mod server;

pub use client::IstioCertificateServiceClient;
pub use identity::{SpiffeId, SpiffeIdError};
pub use server::{IstioCertificateService, IstioCertificateServiceServer};

use crate::pb::google::protobuf::Struct;

/// The service's full name.
pub const SERVICE: &str = "istio.v1.auth.IstioCertificateService";
/// The path of its one method.
pub const CREATE_CERTIFICATE: &str = "/istio.v1.auth.IstioCertificateService/CreateCertificate";

/// A certificate signing request, as istio-agent sends it.
#[derive(Clone, PartialEq, prost::Message)]
pub struct IstioCertificateRequest {
    /// The PEM-encoded CSR; its public key goes into the certificate.
    #[prost(string, tag = "1")]
    pub csr: String,
    /// The requested validity in seconds; 0 asks for the CA's default.
    #[prost(int64, tag = "3")]
    pub validity_duration: i64,
    /// Opaque metadata from the caller's node.
    #[prost(message, optional, tag = "4")]
    pub metadata: Option<Struct>,
}

/// The signed certificate chain.
#[derive(Clone, PartialEq, prost::Message)]
pub struct IstioCertificateResponse {
    /// PEM certificates, one per element: the leaf first, the root last.
    #[prost(string, repeated, tag = "1")]
    pub cert_chain: Vec<String>,
}
