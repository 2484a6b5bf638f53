//! One VirtualService HTTP route (with one of its matches) → one Envoy `Route`: where it
//! goes and what happens on the way (Istio's `translateRoute` and helpers).

use std::collections::{BTreeMap, HashMap};

use mizzen_api::networking::{
    CorsPolicy, Destination, HeaderOperations, Headers, HttpBody, HttpDirectResponse,
    HttpFaultInjection, HttpMatchRequest, HttpRedirect, HttpRetry, HttpRoute,
    RedirectPortSelection, UnmatchedPreflights,
};
use mizzen_api::types::{Duration, Percent};
use mizzen_xds::pb::envoy::config::core::v3::{
    DataSource, HeaderValue, HeaderValueOption, Metadata, RuntimeFractionalPercent, data_source,
    header_value_option::HeaderAppendAction,
};
use mizzen_xds::pb::envoy::config::route::v3::route_action::HashPolicy;
use mizzen_xds::pb::envoy::config::route::v3::{
    Decorator, DirectResponseAction, RedirectAction, RetryPolicy, Route, RouteAction,
    WeightedCluster, redirect_action, retry_policy, route, route_action, weighted_cluster,
};
use mizzen_xds::pb::envoy::extensions::filters::common::fault::v3::{FaultDelay, fault_delay};
use mizzen_xds::pb::envoy::extensions::filters::http::cors::v3::CorsPolicy as EnvoyCors;
use mizzen_xds::pb::envoy::extensions::filters::http::fault::v3::{
    FaultAbort, HttpFault, fault_abort,
};
use mizzen_xds::pb::envoy::extensions::retry::host::previous_hosts::v3::PreviousHostsPredicate;
use mizzen_xds::pb::envoy::extensions::retry::priority::previous_priorities::v3::PreviousPrioritiesConfig;
use mizzen_xds::pb::envoy::r#type::matcher::v3::{RegexMatchAndSubstitute, StringMatcher};
use mizzen_xds::pb::envoy::r#type::v3::{FractionalPercent, fractional_percent};
use mizzen_xds::pb::google::protobuf::{self as pbuf, BoolValue, UInt32Value};

use super::matches::{regex, route_match, string_matcher_of};
use super::scope::{Binding, MeshVirtualService};
use super::{Hashes, to_any};
use crate::model::{Hostname, Proxy, PushContext};
use crate::translate::names::{ClusterName, outbound_cluster};

/// The HTTP filter names Istio keys per-route config by.
pub(crate) const FAULT_FILTER: &str = "envoy.filters.http.fault";
/// See [`FAULT_FILTER`].
pub(crate) const CORS_FILTER: &str = "envoy.filters.http.cors";
/// The name Istio gives routes it makes up (no VirtualService).
pub(crate) const DEFAULT_ROUTE_NAME: &str = "default";

/// Istio's default `retryOn` when a route has no retry policy.
const DEFAULT_RETRY_ON: &str =
    "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes";
/// Istio's default number of retries (outbound and inbound).
const DEFAULT_RETRIES: u32 = 2;
/// Istio's inbound `retryOn` (`ENABLE_INBOUND_RETRY_POLICY`, on by default): only requests
/// reset before they reached the workload are retried, which is always safe.
const INBOUND_RETRY_ON: &str = "reset-before-request";
/// Istio's default `host_selection_retry_max_attempts`.
const HOST_SELECTION_RETRY_MAX_ATTEMPTS: i64 = 5;

/// Translates `http` with its match `m` for a listener on `port` of `binding`; `None`
/// when the match does not apply to this proxy or port.
#[allow(clippy::too_many_arguments)] // Istio's translateRoute reads all of these.
pub(crate) fn translate_route(
    push: &PushContext,
    proxy: &Proxy,
    binding: Binding<'_>,
    hashes: &Hashes<'_>,
    vs: &MeshVirtualService<'_>,
    http: &HttpRoute,
    m: Option<&HttpMatchRequest>,
    port: u16,
) -> Option<Route> {
    if let Some(m) = m {
        if m.port != 0 && m.port != u32::from(port) {
            return None;
        }
        if !binding.matches(proxy, vs.namespace, m) {
            return None;
        }
    }
    let mut name = http.name.clone();
    if let Some(match_name) = m.map(|m| m.name.as_str()).filter(|n| !n.is_empty()) {
        name = format!("{name}.{match_name}");
    }
    let mut out = Route {
        name,
        r#match: Some(route_match(m)),
        metadata: Some(config_metadata(vs)),
        stat_prefix: m.map(|m| m.stat_prefix.clone()).unwrap_or_default(),
        ..Route::default()
    };
    let mut authority = String::new();
    if let Some(headers) = &http.headers {
        authority = apply_headers(&mut out, headers);
    }
    if let Some(redirect) = &http.redirect {
        out.action = redirect_action(redirect, port).map(route::Action::Redirect);
    } else if let Some(direct) = &http.direct_response {
        out.action = Some(route::Action::DirectResponse(direct_response(direct)));
    } else {
        let action = route_action(push, hashes, vs, http, &mut out, authority, port);
        out.action = Some(route::Action::Route(action));
    }
    out.decorator = Some(Decorator {
        operation: operation(&out, vs.name, port),
        ..Decorator::default()
    });
    if let Some(fault) = http.fault.as_ref().and_then(fault) {
        out.typed_per_filter_config
            .insert(FAULT_FILTER.to_owned(), to_any(&fault));
    }
    if let Some(cors) = &http.cors_policy {
        out.typed_per_filter_config
            .insert(CORS_FILTER.to_owned(), to_any(&cors_policy(cors)));
    }
    Some(out)
}

/// The route of a service without VirtualService: everything to its cluster, with
/// Istio's default retries, no timeout, and the consistent hash of its DestinationRule.
pub(crate) fn default_outbound_route(
    cluster: String,
    operation: String,
    hash_policy: Vec<HashPolicy>,
) -> Route {
    let mut action = RouteAction {
        cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(cluster)),
        retry_policy: Some(default_retry_policy()),
        ..RouteAction::default()
    };
    set_timeout(&mut action, None);
    set_hash_policy(&mut action, hash_policy);
    default_route(action, operation)
}

/// Hashes the route's requests by `hash_policy` (when there is one); retries then stop
/// avoiding previous hosts, which would break the hashing (Istio's `ConvertPolicy`).
fn set_hash_policy(action: &mut RouteAction, hash_policy: Vec<HashPolicy>) {
    if hash_policy.is_empty() {
        return;
    }
    if let Some(retry) = &mut action.retry_policy {
        retry.retry_host_predicate.clear();
    }
    action.hash_policy = hash_policy;
}

/// The inbound route: everything to the local workload's cluster, no timeouts, and
/// retries of requests reset before they reached the workload.
pub(crate) fn default_inbound_route(cluster: String, operation: String) -> Route {
    let action = RouteAction {
        retry_policy: Some(RetryPolicy {
            retry_on: INBOUND_RETRY_ON.to_owned(),
            num_retries: Some(UInt32Value {
                value: DEFAULT_RETRIES,
            }),
            ..RetryPolicy::default()
        }),
        cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(cluster)),
        timeout: Some(duration(Duration::default())),
        max_stream_duration: Some(route_action::MaxStreamDuration {
            max_stream_duration: Some(duration(Duration::default())),
            grpc_timeout_header_max: Some(duration(Duration::default())),
            ..route_action::MaxStreamDuration::default()
        }),
        ..RouteAction::default()
    };
    default_route(action, operation)
}

fn default_route(action: RouteAction, operation: String) -> Route {
    Route {
        name: DEFAULT_ROUTE_NAME.to_owned(),
        r#match: Some(route_match(None)),
        decorator: Some(Decorator {
            operation,
            ..Decorator::default()
        }),
        action: Some(route::Action::Route(action)),
        ..Route::default()
    }
}

/// Where a route goes: its destinations (one cluster or weighted clusters), rewrites,
/// mirrors, timeout and retries.
fn route_action(
    push: &PushContext,
    hashes: &Hashes<'_>,
    vs: &MeshVirtualService<'_>,
    http: &HttpRoute,
    out: &mut Route,
    mut authority: String,
    port: u16,
) -> RouteAction {
    let mut action = RouteAction::default();
    set_timeout(&mut action, http.timeout);
    if let Some(rewrite) = &http.rewrite {
        if let Some(r) = &rewrite.uri_regex_rewrite {
            action.regex_rewrite = Some(RegexMatchAndSubstitute {
                pattern: Some(regex(&r.r#match)),
                substitution: r.rewrite.clone(),
            });
        } else if !rewrite.uri.is_empty() {
            action.prefix_rewrite = rewrite.uri.clone();
        }
        if !rewrite.authority.is_empty() {
            authority = rewrite.authority.clone();
        }
    }
    if !authority.is_empty() {
        action.host_rewrite_specifier = Some(
            route_action::HostRewriteSpecifier::HostRewriteLiteral(authority),
        );
    }
    if let Some(mirror) = &http.mirror {
        let percent = match (http.mirror_percentage, http.mirror_percent) {
            (Some(p), _) => (p.value > 0.0).then(|| percent_fraction(p)),
            (None, Some(p)) => (p > 0).then(|| integer_fraction(p)),
            (None, None) => Some(integer_fraction(100)),
        };
        if let Some(p) = percent {
            action
                .request_mirror_policies
                .push(mirror_policy(push, vs, mirror, port, p));
        }
    }
    for mirror in &http.mirrors {
        let percent = match mirror.percentage {
            Some(p) => (p.value > 0.0).then(|| percent_fraction(p)),
            None => Some(integer_fraction(100)),
        };
        if let Some(p) = percent {
            action.request_mirror_policies.push(mirror_policy(
                push,
                vs,
                &mirror.destination,
                port,
                p,
            ));
        }
    }
    if let [only] = http.route.as_slice() {
        action.cluster_specifier = Some(route_action::ClusterSpecifier::Cluster(
            destination_cluster(push, vs, &only.destination, port),
        ));
        if let Some(headers) = &only.headers {
            let authority = apply_headers(out, headers);
            if !authority.is_empty() && action.host_rewrite_specifier.is_none() {
                action.host_rewrite_specifier = Some(
                    route_action::HostRewriteSpecifier::HostRewriteLiteral(authority),
                );
            }
        }
    } else {
        let clusters = http
            .route
            .iter()
            .filter(|d| d.weight != 0)
            .map(|d| {
                let mut weight = weighted_cluster::ClusterWeight {
                    name: destination_cluster(push, vs, &d.destination, port),
                    weight: Some(UInt32Value {
                        value: u32::try_from(d.weight).unwrap_or(0),
                    }),
                    ..weighted_cluster::ClusterWeight::default()
                };
                if let Some(headers) = &d.headers {
                    let ops = HeaderOps::new(headers);
                    weight.request_headers_to_add = ops.request_add;
                    weight.request_headers_to_remove = ops.request_remove;
                    weight.response_headers_to_add = ops.response_add;
                    weight.response_headers_to_remove = ops.response_remove;
                    if !ops.authority.is_empty() {
                        weight.host_rewrite_specifier = Some(
                            weighted_cluster::cluster_weight::HostRewriteSpecifier::HostRewriteLiteral(
                                ops.authority,
                            ),
                        );
                    }
                }
                weight
            })
            .collect();
        action.cluster_specifier = Some(route_action::ClusterSpecifier::WeightedClusters(
            WeightedCluster {
                clusters,
                ..WeightedCluster::default()
            },
        ));
    }
    action.retry_policy = retry_policy(http.retries.as_ref());
    set_hash_policy(&mut action, route_hashes(push, hashes, vs, http, port));
    action
}

/// The hash policies of a route's destinations when they agree (one destination, or
/// several whose DestinationRules hash alike); none otherwise.
fn route_hashes(
    push: &PushContext,
    hashes: &Hashes<'_>,
    vs: &MeshVirtualService<'_>,
    http: &HttpRoute,
    port: u16,
) -> Vec<HashPolicy> {
    let mut each = http
        .route
        .iter()
        .filter(|d| d.weight != 0 || http.route.len() == 1)
        .map(|d| {
            let dest = &d.destination;
            let host = vs.resolve(&dest.host, push);
            hashes.of_host(
                push,
                &host,
                destination_port(push, &host, dest, port),
                &dest.subset,
            )
        });
    let Some(first) = each.next() else {
        return Vec::new();
    };
    if each.all(|other| other == first) {
        first
    } else {
        Vec::new()
    }
}

/// The cluster of a destination: its host resolved in the VirtualService's namespace,
/// its port, else its service's only port, else the listener's (Istio's
/// `GetDestinationCluster`).
pub(crate) fn destination_cluster(
    push: &PushContext,
    vs: &MeshVirtualService<'_>,
    dest: &Destination,
    port: u16,
) -> String {
    let host = vs.resolve(&dest.host, push);
    let port = destination_port(push, &host, dest, port);
    outbound_cluster(port, &dest.subset, host.as_str())
}

/// A destination's port: its own, else the only port of its service `host` (what a
/// gateway on another port relies on), else the listener's.
fn destination_port(push: &PushContext, host: &Hostname, dest: &Destination, port: u16) -> u16 {
    let own = dest
        .port
        .as_ref()
        .and_then(|p| u16::try_from(p.number).ok())
        .filter(|p| *p != 0);
    own.or_else(
        || match push.registry.services_named(host).first()?.ports[..] {
            [ref only] => Some(only.port),
            _ => None,
        },
    )
    .unwrap_or(port)
}

fn mirror_policy(
    push: &PushContext,
    vs: &MeshVirtualService<'_>,
    dest: &Destination,
    port: u16,
    percent: FractionalPercent,
) -> route_action::RequestMirrorPolicy {
    route_action::RequestMirrorPolicy {
        cluster: destination_cluster(push, vs, dest, port),
        runtime_fraction: Some(RuntimeFractionalPercent {
            default_value: Some(percent),
            ..RuntimeFractionalPercent::default()
        }),
        trace_sampled: Some(BoolValue { value: false }),
        ..route_action::RequestMirrorPolicy::default()
    }
}

/// Timeout (Istio's default: 0, disabled) and the matching gRPC timeout header cap.
///
/// Istio sets the deprecated `max_grpc_timeout`; its replacement
/// `max_stream_duration.grpc_timeout_header_max` has the same meaning.
fn set_timeout(action: &mut RouteAction, timeout: Option<Duration>) {
    let timeout = timeout.unwrap_or_default();
    action.timeout = Some(duration(timeout));
    action.max_stream_duration = Some(route_action::MaxStreamDuration {
        grpc_timeout_header_max: Some(duration(timeout)),
        ..route_action::MaxStreamDuration::default()
    });
}

/// Istio's default retry policy, with 503 among its retriable status codes as Istio
/// documents it and as the issue asks (newer Istio releases can leave 503 out, behind
/// `EXCLUDE_UNSAFE_503_FROM_DEFAULT_RETRY`).
pub(crate) fn default_retry_policy() -> RetryPolicy {
    RetryPolicy {
        retry_on: DEFAULT_RETRY_ON.to_owned(),
        num_retries: Some(UInt32Value {
            value: DEFAULT_RETRIES,
        }),
        retry_host_predicate: vec![previous_hosts()],
        host_selection_retry_max_attempts: HOST_SELECTION_RETRY_MAX_ATTEMPTS,
        retriable_status_codes: vec![503],
        ..RetryPolicy::default()
    }
}

fn previous_hosts() -> retry_policy::RetryHostPredicate {
    retry_policy::RetryHostPredicate {
        name: "envoy.retry_host_predicates.previous_hosts".to_owned(),
        config_type: Some(retry_policy::retry_host_predicate::ConfigType::TypedConfig(
            to_any(&PreviousHostsPredicate {}),
        )),
    }
}

/// Istio's `ConvertPolicy`: the default when unset, none when `attempts` is 0, else the
/// default with the user's fields.
fn retry_policy(retry: Option<&HttpRetry>) -> Option<RetryPolicy> {
    let mut out = default_retry_policy();
    let Some(retry) = retry else {
        return Some(out);
    };
    if retry.attempts <= 0 {
        return None;
    }
    out.num_retries = Some(UInt32Value {
        value: retry.attempts.unsigned_abs(),
    });
    if !retry.retry_on.is_empty() {
        let (on, codes): (Vec<&str>, Vec<&str>) = retry
            .retry_on
            .split(',')
            .map(str::trim)
            .filter(|p| !p.is_empty())
            .partition(|p| !is_status_code(p));
        out.retry_on = on.join(",");
        out.retriable_status_codes = codes.iter().filter_map(|c| c.parse().ok()).collect();
        // Appended with its comma even to an empty list, as Istio does (`retryOn: "503"`
        // gives `,retriable-status-codes`); Envoy skips the empty name.
        if !out.retriable_status_codes.is_empty()
            && !out.retry_on.contains("retriable-status-codes")
        {
            out.retry_on.push_str(",retriable-status-codes");
        }
    }
    out.per_try_timeout = retry.per_try_timeout.map(duration);
    if let Some(ignore) = retry.retry_ignore_previous_hosts {
        out.retry_host_predicate = if ignore {
            vec![previous_hosts()]
        } else {
            Vec::new()
        };
    }
    if retry.retry_remote_localities == Some(true) {
        out.retry_priority = Some(retry_policy::RetryPriority {
            name: "envoy.retry_priorities.previous_priorities".to_owned(),
            config_type: Some(retry_policy::retry_priority::ConfigType::TypedConfig(
                to_any(&PreviousPrioritiesConfig {
                    update_frequency: 2,
                }),
            )),
        });
    }
    if let Some(backoff) = retry.backoff {
        out.retry_back_off = Some(retry_policy::RetryBackOff {
            base_interval: Some(duration(backoff)),
            ..retry_policy::RetryBackOff::default()
        });
    }
    Some(out)
}

/// A number Go's `http.StatusText` knows (Istio treats those as status codes).
fn is_status_code(part: &str) -> bool {
    part.parse::<u16>().is_ok_and(|c| {
        matches!(c, 100..=103 | 200..=208 | 226 | 300..=305 | 307 | 308 | 400..=418 | 421..=426 | 428 | 429 | 431 | 451 | 500..=508 | 510 | 511)
    })
}

/// Istio's `ApplyRedirect`; `None` for a redirect code Envoy cannot send.
fn redirect_action(r: &HttpRedirect, port: u16) -> Option<RedirectAction> {
    use redirect_action::RedirectResponseCode as Code;
    let response_code = match r.redirect_code {
        0 | 301 => Code::MovedPermanently,
        302 => Code::Found,
        303 => Code::SeeOther,
        307 => Code::TemporaryRedirect,
        308 => Code::PermanentRedirect,
        _ => return None,
    };
    let mut out = RedirectAction {
        host_redirect: r.authority.clone(),
        path_rewrite_specifier: Some(redirect_action::PathRewriteSpecifier::PathRedirect(
            r.uri.clone(),
        )),
        response_code: response_code as i32,
        ..RedirectAction::default()
    };
    if !r.scheme.is_empty() {
        out.scheme_rewrite_specifier = Some(
            redirect_action::SchemeRewriteSpecifier::SchemeRedirect(r.scheme.clone()),
        );
    }
    let port_redirect = match (r.port, r.derive_port) {
        (Some(p), _) => Some(p),
        (None, Some(RedirectPortSelection::FromRequestPort)) => Some(u32::from(port)),
        (None, Some(_)) => Some(0),
        (None, None) => None,
    };
    if let Some(p) = port_redirect {
        // Sidecars never terminate TLS, so the implied scheme is http.
        let scheme = if r.scheme.is_empty() {
            "http"
        } else {
            &r.scheme
        };
        let default_port = (p == 80 && scheme == "http") || (p == 443 && scheme == "https");
        out.port_redirect = if default_port { 0 } else { p };
    }
    Some(out)
}

fn direct_response(d: &HttpDirectResponse) -> DirectResponseAction {
    let body = d.body.as_ref().map(|b| DataSource {
        specifier: Some(match b {
            HttpBody::Empty => data_source::Specifier::InlineString(String::new()),
            HttpBody::String(s) => data_source::Specifier::InlineString(s.clone()),
            HttpBody::Bytes(b) => data_source::Specifier::InlineBytes(decode_base64(b)),
        }),
        ..DataSource::default()
    });
    DirectResponseAction {
        status: d.status,
        body,
        ..DirectResponseAction::default()
    }
}

/// Decodes standard base64 (validation has already checked it).
fn decode_base64(text: &str) -> Vec<u8> {
    let value = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            _ => return None,
        } as u32)
    };
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0u32);
    for v in text.bytes().filter_map(value) {
        acc = (acc << 6) | v;
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
            acc &= (1 << bits) - 1;
        }
    }
    out
}

/// Istio's `TranslateFault`; `None` when neither a fixed delay nor an HTTP/gRPC abort
/// remains.
fn fault(f: &HttpFaultInjection) -> Option<HttpFault> {
    let delay = f.delay.as_ref().and_then(|d| {
        let fixed = d.fixed_delay?;
        Some(FaultDelay {
            percentage: Some(match d.percentage {
                Some(p) => percent_fraction(p),
                None => integer_fraction(u32::try_from(d.percent).unwrap_or(0)),
            }),
            fault_delay_secifier: Some(fault_delay::FaultDelaySecifier::FixedDelay(duration(
                fixed,
            ))),
        })
    });
    let abort = f.abort.as_ref().and_then(|a| {
        let error_type = match (&a.http_status, &a.grpc_status) {
            (Some(status), _) => fault_abort::ErrorType::HttpStatus(status.unsigned_abs()),
            (None, Some(grpc)) => fault_abort::ErrorType::GrpcStatus(grpc_code(grpc)?),
            (None, None) => return None,
        };
        Some(FaultAbort {
            percentage: a.percentage.map(percent_fraction),
            error_type: Some(error_type),
            ..FaultAbort::default()
        })
    });
    (delay.is_some() || abort.is_some()).then(|| HttpFault {
        delay,
        abort,
        ..HttpFault::default()
    })
}

/// The numeric code of a gRPC status name.
fn grpc_code(name: &str) -> Option<u32> {
    const CODES: [&str; 17] = [
        "OK",
        "CANCELLED",
        "UNKNOWN",
        "INVALID_ARGUMENT",
        "DEADLINE_EXCEEDED",
        "NOT_FOUND",
        "ALREADY_EXISTS",
        "PERMISSION_DENIED",
        "RESOURCE_EXHAUSTED",
        "FAILED_PRECONDITION",
        "ABORTED",
        "OUT_OF_RANGE",
        "UNIMPLEMENTED",
        "INTERNAL",
        "UNAVAILABLE",
        "DATA_LOSS",
        "UNAUTHENTICATED",
    ];
    CODES
        .iter()
        .position(|c| *c == name)
        .and_then(|i| u32::try_from(i).ok())
}

/// Istio's `TranslateCORSPolicy`.
fn cors_policy(c: &CorsPolicy) -> EnvoyCors {
    let origins: Vec<StringMatcher> = if !c.allow_origins.is_empty() {
        c.allow_origins
            .iter()
            .filter_map(string_matcher_of)
            .collect()
    } else {
        c.allow_origin
            .iter()
            .filter_map(|o| string_matcher_of(&mizzen_api::types::StringMatch::Exact(o.clone())))
            .collect()
    };
    EnvoyCors {
        allow_origin_string_match: origins,
        allow_methods: c.allow_methods.join(","),
        allow_headers: c.allow_headers.join(","),
        expose_headers: c.expose_headers.join(","),
        max_age: c
            .max_age
            .map(|d| d.get().as_secs().to_string())
            .unwrap_or_default(),
        allow_credentials: c.allow_credentials.map(|value| BoolValue { value }),
        filter_enabled: Some(RuntimeFractionalPercent {
            default_value: Some(integer_fraction(100)),
            ..RuntimeFractionalPercent::default()
        }),
        forward_not_matching_preflights: Some(BoolValue {
            value: c.unmatched_preflights != UnmatchedPreflights::Ignore,
        }),
        ..EnvoyCors::default()
    }
}

/// Header operations of a route or destination, in Envoy's terms.
struct HeaderOps {
    request_add: Vec<HeaderValueOption>,
    request_remove: Vec<String>,
    response_add: Vec<HeaderValueOption>,
    response_remove: Vec<String>,
    /// A `set`/`add` of `:authority`/`host`, which Envoy does as a host rewrite.
    authority: String,
}

impl HeaderOps {
    /// Istio's `TranslateHeadersOperations`: `set` overwrites, `add` appends, both sorted
    /// by name; pseudo-headers and `host` cannot be changed, only `host` rewritten.
    fn new(h: &Headers) -> HeaderOps {
        let empty = HeaderOperations::default();
        let req = h.request.as_ref().unwrap_or(&empty);
        let resp = h.response.as_ref().unwrap_or(&empty);
        let (mut request_add, set_authority) =
            header_values(&req.set, HeaderAppendAction::OverwriteIfExistsOrAdd);
        let (add, add_authority) = header_values(&req.add, HeaderAppendAction::AppendIfExistsOrAdd);
        request_add.extend(add);
        let (mut response_add, _) =
            header_values(&resp.set, HeaderAppendAction::OverwriteIfExistsOrAdd);
        response_add.extend(header_values(&resp.add, HeaderAppendAction::AppendIfExistsOrAdd).0);
        let removable = |keys: &[String]| -> Vec<String> {
            keys.iter().filter(|k| !is_internal(k)).cloned().collect()
        };
        HeaderOps {
            request_add,
            request_remove: removable(&req.remove),
            response_add,
            response_remove: removable(&resp.remove),
            authority: if set_authority.is_empty() {
                add_authority
            } else {
                set_authority
            },
        }
    }
}

/// Applies route-level header operations to `out`, returning the authority to rewrite to.
fn apply_headers(out: &mut Route, headers: &Headers) -> String {
    let ops = HeaderOps::new(headers);
    out.request_headers_to_add.extend(ops.request_add);
    out.request_headers_to_remove.extend(ops.request_remove);
    out.response_headers_to_add.extend(ops.response_add);
    out.response_headers_to_remove.extend(ops.response_remove);
    ops.authority
}

fn header_values(
    headers: &BTreeMap<String, String>,
    action: HeaderAppendAction,
) -> (Vec<HeaderValueOption>, String) {
    let mut authority = String::new();
    let mut out = Vec::new();
    for (key, value) in headers {
        if key.eq_ignore_ascii_case(":authority") || key.eq_ignore_ascii_case("host") {
            authority = value.clone();
        }
        if is_internal(key) {
            continue;
        }
        out.push(HeaderValueOption {
            header: Some(HeaderValue {
                key: key.clone(),
                value: value.clone(),
                ..HeaderValue::default()
            }),
            append_action: action as i32,
            ..HeaderValueOption::default()
        });
    }
    (out, authority)
}

fn is_internal(key: &str) -> bool {
    key.starts_with(':') || key.eq_ignore_ascii_case("host")
}

/// Istio's trace operation: `host:port/path` when the route has one cluster, else the
/// VirtualService's name.
fn operation(route: &Route, vs_name: &str, port: u16) -> String {
    let path = match route
        .r#match
        .as_ref()
        .and_then(|m| m.path_specifier.as_ref())
    {
        Some(mizzen_xds::pb::envoy::config::route::v3::route_match::PathSpecifier::Prefix(p)) => {
            format!("{p}*")
        }
        Some(mizzen_xds::pb::envoy::config::route::v3::route_match::PathSpecifier::Path(p)) => {
            p.clone()
        }
        Some(mizzen_xds::pb::envoy::config::route::v3::route_match::PathSpecifier::SafeRegex(
            r,
        )) => r.regex.clone(),
        _ => "/*".to_owned(),
    };
    let cluster = match &route.action {
        Some(route::Action::Route(RouteAction {
            cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(c)),
            ..
        })) => ClusterName::parse(c),
        _ => None,
    };
    match cluster {
        Some(c) => format!("{}:{}{path}", c.host, c.port),
        None => format!("{vs_name}:{port}{path}"),
    }
}

/// `istio.config` metadata naming the VirtualService a route came from, as istioctl and
/// Kiali read it.
fn config_metadata(vs: &MeshVirtualService<'_>) -> Metadata {
    let config = pbuf::Value {
        kind: Some(pbuf::value::Kind::StringValue(format!(
            "/apis/networking.istio.io/v1/namespaces/{}/virtual-service/{}",
            vs.namespace, vs.name
        ))),
    };
    let istio = pbuf::Struct {
        fields: HashMap::from([("config".to_owned(), config)]),
    };
    Metadata {
        filter_metadata: HashMap::from([("istio".to_owned(), istio)]),
        ..Metadata::default()
    }
}

/// A protobuf duration.
pub(crate) fn duration(d: Duration) -> pbuf::Duration {
    let d = d.get();
    pbuf::Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

/// An Istio `Percent` as parts per million.
fn percent_fraction(p: Percent) -> FractionalPercent {
    FractionalPercent {
        numerator: (p.value * 10_000.0) as u32,
        denominator: fractional_percent::DenominatorType::Million as i32,
    }
}

/// A whole percentage.
fn integer_fraction(p: u32) -> FractionalPercent {
    FractionalPercent {
        numerator: p,
        denominator: fractional_percent::DenominatorType::Hundred as i32,
    }
}

#[cfg(test)]
mod tests {
    use mizzen_api::networking::{HttpFaultInjectionAbort, HttpFaultInjectionDelay};

    use super::*;

    #[test]
    fn status_codes_alone_in_retry_on_get_istios_retriable_status_codes() {
        let retry = HttpRetry {
            attempts: 3,
            retry_on: "503, 504".to_owned(),
            ..HttpRetry::default()
        };
        let out = retry_policy(Some(&retry)).unwrap();
        // Istio appends with the comma, to the empty list too.
        assert_eq!(out.retry_on, ",retriable-status-codes");
        assert_eq!(out.retriable_status_codes, [503, 504]);
        assert_eq!(out.num_retries, Some(UInt32Value { value: 3 }));
        let named = HttpRetry {
            attempts: 1,
            retry_on: "5xx,retriable-status-codes,409".to_owned(),
            ..HttpRetry::default()
        };
        let out = retry_policy(Some(&named)).unwrap();
        assert_eq!(out.retry_on, "5xx,retriable-status-codes");
        assert_eq!(out.retriable_status_codes, [409]);
    }

    #[test]
    fn the_default_retry_policy_retries_503() {
        let out = retry_policy(None).unwrap();
        assert_eq!(
            out.retry_on,
            "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
        );
        assert_eq!(out.retriable_status_codes, [503]);
        assert_eq!(out.host_selection_retry_max_attempts, 5);
        // Attempts set without retryOn keep the default conditions.
        let attempts = HttpRetry {
            attempts: 5,
            ..HttpRetry::default()
        };
        let out = retry_policy(Some(&attempts)).unwrap();
        assert_eq!(out.retry_on, DEFAULT_RETRY_ON);
        assert_eq!(out.retry_host_predicate.len(), 1);
        let off = HttpRetry {
            attempts: 1,
            retry_ignore_previous_hosts: Some(false),
            ..HttpRetry::default()
        };
        assert!(
            retry_policy(Some(&off))
                .unwrap()
                .retry_host_predicate
                .is_empty()
        );
    }

    #[test]
    fn the_inbound_route_retries_only_requests_reset_before_the_workload() {
        let route = default_inbound_route("inbound|9080||".to_owned(), "op".to_owned());
        let Some(route::Action::Route(action)) = &route.action else {
            panic!("{route:?}")
        };
        let retry = action.retry_policy.as_ref().unwrap();
        assert_eq!(retry.retry_on, "reset-before-request");
        assert_eq!(retry.num_retries, Some(UInt32Value { value: 2 }));
        assert!(retry.retry_host_predicate.is_empty());
    }

    #[test]
    fn fault_percentages_follow_istio_with_the_deprecated_integer_percent() {
        let f = HttpFaultInjection {
            delay: Some(HttpFaultInjectionDelay {
                percent: 30,
                fixed_delay: Some(Duration::from_secs(1)),
                ..HttpFaultInjectionDelay::default()
            }),
            abort: Some(HttpFaultInjectionAbort {
                http_status: Some(503),
                ..HttpFaultInjectionAbort::default()
            }),
        };
        let out = fault(&f).unwrap();
        let delay = out.delay.unwrap();
        assert_eq!(
            delay.percentage,
            Some(FractionalPercent {
                numerator: 30,
                denominator: fractional_percent::DenominatorType::Hundred as i32,
            })
        );
        // An abort without a percentage has none (Envoy: 0%), as Istio leaves it.
        assert_eq!(out.abort.unwrap().percentage, None);
        let exponential = HttpFaultInjection {
            delay: Some(HttpFaultInjectionDelay {
                exponential_delay: Some(Duration::from_secs(1)),
                ..HttpFaultInjectionDelay::default()
            }),
            abort: None,
        };
        assert!(
            fault(&exponential).is_none(),
            "Istio drops what Envoy lacks"
        );
    }
}
