//! The `ext_authz` filters a CUSTOM AuthorizationPolicy delegates to, built from the
//! mesh config's extension provider (Istio's `builder/extauthz.go`): they run only for
//! requests the RBAC filter before them marked as matching a CUSTOM rule.

use mizzen_api::mesh::{ExtAuthzGrpc, ExtAuthzHttp, Provider, RequestBody};
use mizzen_xds::pb::envoy::config::core::v3::{
    ApiVersion, GrpcService, HeaderValue, HttpUri, grpc_service, http_uri,
};
use mizzen_xds::pb::envoy::extensions::filters::http::ext_authz::v3::{
    AuthorizationRequest, AuthorizationResponse, BufferSettings, ExtAuthz as HttpExtAuthz,
    HttpService, ext_authz::Services,
};
use mizzen_xds::pb::envoy::extensions::filters::network::ext_authz::v3::ExtAuthz as TcpExtAuthz;
use mizzen_xds::pb::envoy::r#type::matcher::v3::{
    ListStringMatcher, MetadataMatcher, StringMatcher,
};
use mizzen_xds::pb::envoy::r#type::v3::{HttpStatus, StatusCode};
use mizzen_xds::pb::google::protobuf::Duration;

use super::matcher;
use crate::model::{PushContext, Registry};
use crate::translate::names::outbound_cluster;

/// The prefix of the RBAC policy names of CUSTOM rules, which `ext_authz` keys on.
pub(crate) const EXT_AUTHZ_PREFIX: &str = "istio-ext-authz";
/// The stat prefix of the RBAC shadow rules of CUSTOM rules; also names the metadata.
pub(crate) const EXT_AUTHZ_STAT_PREFIX: &str = "istio_ext_authz_";
/// A check's timeout when the provider sets none.
const DEFAULT_TIMEOUT_SECONDS: i64 = 600;

/// Why a provider cannot be used; CUSTOM rules naming it then deny instead.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ProviderError {
    /// No provider of that name in the mesh config.
    #[error("extension provider {0:?} not found in meshConfig.extensionProviders")]
    NotFound(String),
    /// CUSTOM policies of one workload name several providers.
    #[error("CUSTOM policies name several extension providers for one workload: {0:?}")]
    Several(Vec<String>),
    /// The provider is not an ext_authz one.
    #[error("extension provider {0:?} is not envoyExtAuthzHttp or envoyExtAuthzGrpc")]
    Unsupported(String),
    /// A field of the provider is invalid.
    #[error("extension provider {provider:?}: {field}: {reason}")]
    Invalid {
        /// The provider.
        provider: String,
        /// The field.
        field: &'static str,
        /// Why.
        reason: String,
    },
}

/// The filters one provider needs: HTTP always, TCP only for gRPC providers.
#[derive(Debug, Clone)]
pub(crate) struct BuiltExtAuthz {
    /// For HTTP connection managers.
    pub http: HttpExtAuthz,
    /// For TCP chains.
    pub tcp: Option<TcpExtAuthz>,
}

/// The ext_authz filters of the provider named `name`.
pub(crate) fn build(push: &PushContext, name: &str) -> Result<BuiltExtAuthz, ProviderError> {
    let provider = push
        .mesh
        .extension_providers
        .iter()
        .find(|p| p.name == name)
        .ok_or_else(|| ProviderError::NotFound(name.to_owned()))?;
    match &provider.provider {
        Provider::EnvoyExtAuthzHttp(http) => http_provider(&push.registry, name, http),
        Provider::EnvoyExtAuthzGrpc(grpc) => grpc_provider(&push.registry, name, grpc),
        _ => Err(ProviderError::Unsupported(name.to_owned())),
    }
}

fn http_provider(
    registry: &Registry,
    name: &str,
    config: &ExtAuthzHttp,
) -> Result<BuiltExtAuthz, ProviderError> {
    let invalid = invalid(name);
    let port = port(config.port).map_err(|r| invalid("port", r))?;
    let (hostname, cluster) =
        service(registry, &config.service, port).map_err(|r| invalid("service", r))?;
    let status =
        status_on_error(&config.status_on_error).map_err(|r| invalid("statusOnError", r))?;
    if !config.path_prefix.is_empty() && !config.path_prefix.starts_with('/') {
        return Err(invalid(
            "pathPrefix",
            format!("must begin with `/`, found {:?}", config.path_prefix),
        ));
    }
    let request_headers = if config.include_request_headers_in_check.is_empty() {
        &config.include_headers_in_check
    } else {
        &config.include_request_headers_in_check
    };
    let authorization_request =
        (!config.include_additional_headers_in_check.is_empty()).then(|| AuthorizationRequest {
            headers_to_add: config
                .include_additional_headers_in_check
                .iter()
                .map(|(key, value)| HeaderValue {
                    key: key.clone(),
                    value: value.clone(),
                    ..HeaderValue::default()
                })
                .collect(),
            ..AuthorizationRequest::default()
        });
    let responds = !config.headers_to_upstream_on_allow.is_empty()
        || !config.headers_to_downstream_on_deny.is_empty()
        || !config.headers_to_downstream_on_allow.is_empty();
    let authorization_response = responds.then(|| AuthorizationResponse {
        allowed_upstream_headers: headers(&config.headers_to_upstream_on_allow),
        allowed_client_headers: headers(&config.headers_to_downstream_on_deny),
        allowed_client_headers_on_success: headers(&config.headers_to_downstream_on_allow),
        ..AuthorizationResponse::default()
    });
    let service = HttpService {
        path_prefix: config.path_prefix.clone(),
        server_uri: Some(HttpUri {
            uri: format!("http://{hostname}"),
            timeout: Some(timeout(config.timeout)),
            http_upstream_type: Some(http_uri::HttpUpstreamType::Cluster(cluster)),
        }),
        authorization_request,
        authorization_response,
        ..HttpService::default()
    };
    let http = HttpExtAuthz {
        status_on_error: status,
        failure_mode_allow: config.fail_open,
        transport_api_version: ApiVersion::V3 as i32,
        services: Some(Services::HttpService(service)),
        allowed_headers: headers(request_headers),
        with_request_body: config.include_request_body_in_check.map(buffer),
        filter_enabled_metadata: Some(enabled_metadata(super::HTTP_RBAC, name)),
        ..HttpExtAuthz::default()
    };
    Ok(BuiltExtAuthz { http, tcp: None })
}

fn grpc_provider(
    registry: &Registry,
    name: &str,
    config: &ExtAuthzGrpc,
) -> Result<BuiltExtAuthz, ProviderError> {
    let invalid = invalid(name);
    let port = port(config.port).map_err(|r| invalid("port", r))?;
    let (hostname, cluster) =
        service(registry, &config.service, port).map_err(|r| invalid("service", r))?;
    let status =
        status_on_error(&config.status_on_error).map_err(|r| invalid("statusOnError", r))?;
    let grpc = GrpcService {
        target_specifier: Some(grpc_service::TargetSpecifier::EnvoyGrpc(
            grpc_service::EnvoyGrpc {
                cluster_name: cluster,
                authority: hostname,
                ..grpc_service::EnvoyGrpc::default()
            },
        )),
        timeout: Some(timeout(config.timeout)),
        ..GrpcService::default()
    };
    let http = HttpExtAuthz {
        status_on_error: status,
        failure_mode_allow: config.fail_open,
        transport_api_version: ApiVersion::V3 as i32,
        services: Some(Services::GrpcService(grpc.clone())),
        with_request_body: config.include_request_body_in_check.map(buffer),
        filter_enabled_metadata: Some(enabled_metadata(super::HTTP_RBAC, name)),
        ..HttpExtAuthz::default()
    };
    let tcp = TcpExtAuthz {
        stat_prefix: super::TCP_STAT_PREFIX.to_owned(),
        grpc_service: Some(grpc),
        failure_mode_allow: config.fail_open,
        transport_api_version: ApiVersion::V3 as i32,
        filter_enabled_metadata: Some(enabled_metadata(super::NETWORK_RBAC, name)),
        ..TcpExtAuthz::default()
    };
    Ok(BuiltExtAuthz {
        http,
        tcp: Some(tcp),
    })
}

fn invalid(provider: &str) -> impl Fn(&'static str, String) -> ProviderError + '_ {
    move |field, reason| ProviderError::Invalid {
        provider: provider.to_owned(),
        field,
        reason,
    }
}

fn port(port: u32) -> Result<u16, String> {
    u16::try_from(port)
        .ok()
        .filter(|p| *p > 0)
        .ok_or_else(|| format!("must be in [1, 65535], found {port}"))
}

/// `[NAMESPACE/]HOSTNAME` → the hostname and its outbound cluster; without a namespace
/// the hostname must be defined in exactly one.
pub(crate) fn service(
    registry: &Registry,
    service: &str,
    port: u16,
) -> Result<(String, String), String> {
    if service.is_empty() {
        return Err("must not be empty".to_owned());
    }
    let (namespace, host) = match service.split_once('/') {
        Some((ns, host)) => (Some(ns), host),
        None => (None, service),
    };
    let candidates: Vec<_> = registry
        .services_named(&crate::model::Hostname::new(host))
        .iter()
        .filter(|s| !s.hostname.is_wildcard() && namespace.is_none_or(|ns| s.namespace == ns))
        .collect();
    match candidates.as_slice() {
        [one] => Ok((
            one.hostname.to_string(),
            outbound_cluster(port, "", one.hostname.as_str()),
        )),
        [] => Err(format!("no service {service:?} in the registry")),
        _ => Err(format!(
            "{host:?} is defined in several namespaces; name one as NAMESPACE/{host}"
        )),
    }
}

fn status_on_error(status: &str) -> Result<Option<HttpStatus>, String> {
    if status.is_empty() {
        return Ok(None);
    }
    let code: i32 = status
        .parse()
        .map_err(|_| format!("{status:?} is not a number"))?;
    match StatusCode::try_from(code) {
        Ok(StatusCode::Empty) | Err(_) => {
            Err(format!("{status} is not an HTTP status Envoy knows"))
        }
        Ok(code) => Ok(Some(HttpStatus { code: code as i32 })),
    }
}

fn timeout(timeout: Option<mizzen_api::types::Duration>) -> Duration {
    match timeout {
        Some(t) => Duration {
            seconds: i64::try_from(t.get().as_secs()).unwrap_or(i64::MAX),
            nanos: i32::try_from(t.get().subsec_nanos()).unwrap_or_default(),
        },
        None => Duration {
            seconds: DEFAULT_TIMEOUT_SECONDS,
            nanos: 0,
        },
    }
}

fn buffer(body: RequestBody) -> BufferSettings {
    BufferSettings {
        max_request_bytes: body.max_request_bytes,
        allow_partial_message: body.allow_partial_message,
        pack_as_bytes: body.pack_as_bytes,
    }
}

/// Header names, case-insensitively, with Istio's `*` prefix/suffix forms.
fn headers(names: &[String]) -> Option<ListStringMatcher> {
    if names.is_empty() {
        return None;
    }
    let patterns = names
        .iter()
        .map(|h| {
            if let Some(rest) = h.strip_prefix('*') {
                matcher::suffix(rest, true)
            } else if let Some(head) = h.strip_suffix('*') {
                matcher::prefix(head, true)
            } else {
                matcher::exact(h, true)
            }
        })
        .collect::<Vec<StringMatcher>>();
    Some(ListStringMatcher { patterns })
}

/// Runs ext_authz only when the RBAC filter `rbac_filter` recorded a CUSTOM rule of
/// `provider` as the effective shadow policy.
fn enabled_metadata(rbac_filter: &str, provider: &str) -> MetadataMatcher {
    matcher::metadata(
        rbac_filter,
        &[&format!(
            "{EXT_AUTHZ_STAT_PREFIX}shadow_effective_policy_id"
        )],
        matcher::string_value(matcher::prefix(
            format!("{EXT_AUTHZ_PREFIX}-{provider}"),
            false,
        )),
    )
}
