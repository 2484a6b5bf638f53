//! Client TLS towards the upstream (`envoy.transport_sockets.tls`), as Istio builds it
//! (`cluster_tls.go`): ISTIO_MUTUAL with the workload certificate (`default`) and mesh
//! root (`ROOTCA`) over SDS, SIMPLE and MUTUAL with files served over SDS as
//! `file-cert:`/`file-root:` resources, and auto mTLS for mesh services without a policy.

use mizzen_api::networking::{ClientTlsMode, ClientTlsSettings};
use mizzen_xds::pb::envoy::config::cluster::v3::{
    cluster::DiscoveryType, cluster::TransportSocketMatch,
};
use mizzen_xds::pb::envoy::config::core::v3::{
    DataSource, UpstreamHttpProtocolOptions, data_source,
};
use mizzen_xds::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, CommonTlsContext, SdsSecretConfig, TlsParameters,
    UpstreamTlsContext,
    common_tls_context::{CombinedCertificateValidationContext, ValidationContextType},
    tls_parameters::TlsProtocol,
};
use mizzen_xds::pb::envoy::r#type::matcher::v3::{StringMatcher, string_matcher::MatchPattern};

use super::policy::Building;
use super::proto::{
    ads_config_source, raw_buffer, sds_grpc_config_source, string, structure, transport_socket,
};

/// The SDS name of the workload's own certificate.
pub const SDS_DEFAULT: &str = "default";
/// The SDS name of the mesh's root certificate.
pub const SDS_ROOT: &str = "ROOTCA";
/// The transport socket name of TLS.
pub(crate) const TLS_SOCKET: &str = "envoy.transport_sockets.tls";
/// Endpoint label (and its short metadata key) saying the workload accepts Istio mTLS.
pub const TLS_MODE_LABEL: &str = "security.istio.io/tlsMode";
/// The metadata key of [`TLS_MODE_LABEL`] in `envoy.transport_socket_match`.
pub const TLS_MODE_KEY: &str = "tlsMode";
/// The ALPN Istio's sidecars offer each other (metadata exchange first).
const ALPN_IN_MESH: [&str; 2] = ["istio-peer-exchange", "istio"];
/// The same for HTTP/2 upstreams.
const ALPN_IN_MESH_H2: [&str; 4] = ["istio-peer-exchange", "istio-h2", "istio", "h2"];

/// What the TLS settings apply to.
pub(crate) struct TlsTarget<'a> {
    /// Identities the upstream may present (service accounts as SPIFFE URIs, or a
    /// ServiceEntry's `subjectAltNames`), used when the settings name none.
    pub service_accounts: &'a [String],
    /// The SNI Istio derives for mesh mTLS (`outbound_.9080_.v1_.reviews…`).
    pub istio_sni: String,
    /// True for a service outside the mesh (no auto mTLS).
    pub mesh_external: bool,
    /// True when mesh services get mTLS without a DestinationRule asking for it
    /// (`MeshConfig::enable_auto_mtls`).
    pub auto_mtls: bool,
    /// True when the proxy is a sidecar (credentials by name need a selector there).
    pub sidecar: bool,
    /// True when the DestinationRule has a workload selector.
    pub rule_has_selector: bool,
}

/// Applies `tls` (after Istio's defaulting) to the cluster: a transport socket, or for
/// auto-detected mTLS a match on the endpoints' `tlsMode` with plain text as fallback.
pub(crate) fn apply_tls(b: &mut Building, tls: Option<&ClientTlsSettings>, target: &TlsTarget<'_>) {
    let (settings, auto) = match tls {
        Some(t) if t.mode == ClientTlsMode::IstioMutual => (Some(istio_mutual(t, target)), false),
        Some(t) => (Some(t.clone()), false),
        None if target.mesh_external || !target.auto_mtls => (None, false),
        None => (
            Some(ClientTlsSettings {
                mode: ClientTlsMode::IstioMutual,
                subject_alt_names: target.service_accounts.to_vec(),
                sni: target.istio_sni.clone(),
                ..ClientTlsSettings::default()
            }),
            true,
        ),
    };
    let Some(settings) = settings else {
        return;
    };
    let Some(context) = upstream_tls_context(b, &settings, target) else {
        return;
    };
    let socket = transport_socket(TLS_SOCKET, &context);
    if !auto {
        b.cluster.transport_socket = Some(socket);
    } else if b.discovery_type() != Some(DiscoveryType::OriginalDst) {
        // Auto mTLS: endpoints labelled `security.istio.io/tlsMode: istio` get mTLS,
        // everything else plain text. Headless (original destination) clusters get neither.
        b.cluster.transport_socket_matches = vec![
            TransportSocketMatch {
                name: "tlsMode-istio".into(),
                r#match: Some(structure([(TLS_MODE_KEY, string("istio"))])),
                transport_socket: Some(socket),
            },
            TransportSocketMatch {
                name: "tlsMode-disabled".into(),
                r#match: Some(structure([])),
                transport_socket: Some(raw_buffer()),
            },
        ];
    }
}

/// ISTIO_MUTUAL with the SNI and SANs filled in as Istio does when the rule leaves them
/// empty.
fn istio_mutual(t: &ClientTlsSettings, target: &TlsTarget<'_>) -> ClientTlsSettings {
    let mut out = t.clone();
    if out.sni.is_empty() {
        out.sni = target.istio_sni.clone();
    }
    if out.subject_alt_names.is_empty() {
        out.subject_alt_names = target.service_accounts.to_vec();
    }
    out
}

/// The `UpstreamTlsContext` for settings, or `None` for plain text (DISABLE, or a
/// credential a sidecar may not read).
fn upstream_tls_context(
    b: &mut Building,
    tls: &ClientTlsSettings,
    target: &TlsTarget<'_>,
) -> Option<UpstreamTlsContext> {
    let by_name =
        !tls.credential_name.is_empty() && !tls.credential_name.starts_with("configmap://");
    // Istio does not hand named credentials to every sidecar a rule reaches; only to
    // the workloads a rule selects (and to gateways).
    let user_mode = matches!(tls.mode, ClientTlsMode::Simple | ClientTlsMode::Mutual);
    if by_name && user_mode && target.sidecar && !target.rule_has_selector {
        return None;
    }
    match tls.mode {
        ClientTlsMode::Disable => None,
        ClientTlsMode::IstioMutual => {
            let mut common = default_common_tls_context();
            common.tls_certificate_sds_secret_configs = vec![sds(SDS_DEFAULT)];
            common.validation_context_type =
                Some(ValidationContextType::CombinedValidationContext(
                    CombinedCertificateValidationContext {
                        default_validation_context: Some(san_validation(&tls.subject_alt_names)),
                        validation_context_sds_secret_config: Some(sds(SDS_ROOT)),
                        ..CombinedCertificateValidationContext::default()
                    },
                ));
            common.alpn_protocols = if b.is_http2() {
                ALPN_IN_MESH_H2.map(String::from).to_vec()
            } else {
                ALPN_IN_MESH.map(String::from).to_vec()
            };
            let sni = if tls.sni.is_empty() {
                b.cluster.name.clone()
            } else {
                tls.sni.clone()
            };
            Some(UpstreamTlsContext {
                common_tls_context: Some(common),
                sni,
                ..UpstreamTlsContext::default()
            })
        }
        ClientTlsMode::Simple | ClientTlsMode::Mutual => {
            Some(user_tls(b, tls, target, tls.mode == ClientTlsMode::Mutual))
        }
    }
}

/// SIMPLE or MUTUAL TLS from the rule's own certificates.
fn user_tls(
    b: &mut Building,
    tls: &ClientTlsSettings,
    target: &TlsTarget<'_>,
    mutual: bool,
) -> UpstreamTlsContext {
    let mut common = default_common_tls_context();
    let skip_verify = tls.insecure_skip_verify == Some(true);
    // Without an explicit SNI, the proxy sends the request's host and (unless told not to
    // verify, or given names) checks the certificate against it.
    let auto_sni = tls.sni.is_empty();
    let auto_san = auto_sni && tls.subject_alt_names.is_empty() && !skip_verify;
    if auto_sni || auto_san {
        let upstream = b
            .http
            .get_or_insert_with(Default::default)
            .upstream_http_protocol_options
            .get_or_insert_with(UpstreamHttpProtocolOptions::default);
        upstream.auto_sni |= auto_sni;
        upstream.auto_san_validation |= auto_san;
    }
    let sans = if tls.subject_alt_names.is_empty() && target.mesh_external {
        target.service_accounts.to_vec()
    } else {
        tls.subject_alt_names.clone()
    };
    if !tls.credential_name.is_empty() {
        let name = credential_resource(&tls.credential_name);
        if mutual {
            common.tls_certificate_sds_secret_configs = vec![SdsSecretConfig {
                name: name.clone(),
                sds_config: Some(ads_config_source(None)),
            }];
        }
        if !skip_verify {
            common.validation_context_type =
                Some(ValidationContextType::CombinedValidationContext(
                    CombinedCertificateValidationContext {
                        default_validation_context: Some(san_validation(&sans)),
                        validation_context_sds_secret_config: Some(SdsSecretConfig {
                            name: format!("{name}-cacert"),
                            sds_config: Some(ads_config_source(None)),
                        }),
                        ..CombinedCertificateValidationContext::default()
                    },
                ));
        }
    } else {
        if mutual {
            common.tls_certificate_sds_secret_configs = vec![sds(&format!(
                "file-cert:{}~{}",
                tls.client_certificate, tls.private_key
            ))];
        }
        if skip_verify {
            common.validation_context_type = Some(ValidationContextType::ValidationContext(
                CertificateValidationContext::default(),
            ));
        } else {
            let ca = if tls.ca_certificates.is_empty() {
                "system"
            } else {
                &tls.ca_certificates
            };
            let mut validation = san_validation(&sans);
            if !tls.ca_crl.is_empty() {
                validation.crl = Some(DataSource {
                    specifier: Some(data_source::Specifier::Filename(tls.ca_crl.clone())),
                    ..DataSource::default()
                });
            }
            common.validation_context_type =
                Some(ValidationContextType::CombinedValidationContext(
                    CombinedCertificateValidationContext {
                        default_validation_context: Some(validation),
                        validation_context_sds_secret_config: Some(sds(&format!("file-root:{ca}"))),
                        ..CombinedCertificateValidationContext::default()
                    },
                ));
        }
    }
    if b.is_http2() {
        common.alpn_protocols = vec!["h2".into()];
    }
    UpstreamTlsContext {
        common_tls_context: Some(common),
        sni: tls.sni.clone(),
        ..UpstreamTlsContext::default()
    }
}

/// A credential's SDS resource name (`kubernetes://name` unless it names its scheme).
fn credential_resource(name: &str) -> String {
    if name.contains("://") {
        name.to_owned()
    } else {
        format!("kubernetes://{name}")
    }
}

/// TLS 1.2 to 1.3, as Istio pins its contexts.
pub(crate) fn default_common_tls_context() -> CommonTlsContext {
    CommonTlsContext {
        tls_params: Some(TlsParameters {
            tls_minimum_protocol_version: TlsProtocol::TlSv12 as i32,
            tls_maximum_protocol_version: TlsProtocol::TlSv13 as i32,
            ..TlsParameters::default()
        }),
        ..CommonTlsContext::default()
    }
}

/// A secret from the proxy's SDS server.
pub(crate) fn sds(name: &str) -> SdsSecretConfig {
    SdsSecretConfig {
        name: name.to_owned(),
        sds_config: Some(sds_grpc_config_source()),
    }
}

/// Verification that the peer presents one of `sans` exactly (any name when empty).
fn san_validation(sans: &[String]) -> CertificateValidationContext {
    // Istio still writes the (deprecated, still supported) untyped SAN matcher list.
    #[allow(deprecated)]
    CertificateValidationContext {
        match_subject_alt_names: sans
            .iter()
            .map(|s| StringMatcher {
                match_pattern: Some(MatchPattern::Exact(s.clone())),
                ..StringMatcher::default()
            })
            .collect(),
        ..CertificateValidationContext::default()
    }
}

/// The SNI Istio uses for mesh mTLS to a service port (and subset):
/// `outbound_.9080_.v1_.reviews.default.svc.cluster.local`.
pub fn istio_sni(port: u16, subset: &str, host: &str) -> String {
    format!("outbound_.{port}_.{subset}_.{host}")
}
