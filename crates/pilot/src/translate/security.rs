//! What a proxy's server side is made of for security: the filters its HTTP and TCP
//! chains carry (Istio's order: CUSTOM authorization, JWT authentication, then RBAC,
//! all before the router or `tcp_proxy`) and the TLS it terminates for mTLS.

use mizzen_xds::pb::envoy::config::core::v3::TransportSocket;
use mizzen_xds::pb::envoy::config::listener::v3::Filter;
use mizzen_xds::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpFilter;
use mizzen_xds::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, DownstreamTlsContext,
    common_tls_context::{CombinedCertificateValidationContext, ValidationContextType},
};
use mizzen_xds::pb::google::protobuf::BoolValue;

use crate::model::{Proxy, PushContext};
use crate::translate::authn;
use crate::translate::authz::Authorization;
use crate::translate::cluster::proto::transport_socket;
use crate::translate::cluster::tls::{
    SDS_DEFAULT, SDS_ROOT, TLS_SOCKET, default_common_tls_context, sds,
};

/// ALPN the server side offers on mTLS chains.
const ALPN_DOWNSTREAM: [&str; 2] = ["h2", "http/1.1"];

/// The security filters of one proxy's server-side chains, built once per proxy.
#[derive(Debug, Clone, Default)]
pub(crate) struct ServerFilters {
    /// For HTTP connection managers, before the router.
    pub http: Vec<HttpFilter>,
    /// For TCP chains, before `tcp_proxy`.
    pub network: Vec<Filter>,
}

impl ServerFilters {
    /// The filters the policies selecting `proxy` ask for.
    pub fn new(push: &PushContext, proxy: &Proxy) -> Self {
        let authz = Authorization::new(push, proxy);
        let mut http = authz.custom_http_filters();
        http.extend(authn::jwt_filter(push, proxy));
        http.extend(authz.rbac_http_filters());
        Self {
            http,
            network: authz.network_filters(),
        }
    }
}

/// The server side of Istio mTLS: the workload certificate (`default`) and the mesh
/// root (`ROOTCA`) from the proxy's own SDS, a client certificate required, any mesh
/// identity accepted (authorization decides who may do what).
pub(crate) fn mtls_transport_socket() -> TransportSocket {
    let mut common = default_common_tls_context();
    common.tls_certificate_sds_secret_configs = vec![sds(SDS_DEFAULT)];
    common.validation_context_type = Some(ValidationContextType::CombinedValidationContext(
        CombinedCertificateValidationContext {
            default_validation_context: Some(CertificateValidationContext::default()),
            validation_context_sds_secret_config: Some(sds(SDS_ROOT)),
            ..CombinedCertificateValidationContext::default()
        },
    ));
    common.alpn_protocols = ALPN_DOWNSTREAM.map(String::from).to_vec();
    transport_socket(
        TLS_SOCKET,
        &DownstreamTlsContext {
            common_tls_context: Some(common),
            require_client_certificate: Some(BoolValue { value: true }),
            ..DownstreamTlsContext::default()
        },
    )
}
