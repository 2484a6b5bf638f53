//! What a matched route does: forward to a cluster (one, weighted, or named by a header),
//! redirect, or answer directly.

use crate::balance::RequestHasher;
use std::borrow::Cow;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderValue, StatusCode};
use mizzen_xds::pb::envoy::config::core::v3::{DataSource, data_source};
use mizzen_xds::pb::envoy::config::route::v3::{
    DirectResponseAction, RedirectAction, RetryPolicy, RouteAction,
    WeightedCluster as PbWeightedCluster, redirect_action, route_action, weighted_cluster,
};
use mizzen_xds::pb::google::protobuf::{Any, Duration as PbDuration, UInt32Value, UInt64Value};

use super::error::{Invalid, Problem, Within, unsupported};
use super::format;
use super::headers::HeaderMutations;
use super::pattern::Substitution;
use super::request::{HeaderSource, RequestHead};
use super::rewrite::{Matched, PathRewrite};
use crate::http::{InvalidPolicy, MirrorPolicy, RetryPolicy as CompiledRetryPolicy};

/// What a route does with a request it matches.
#[derive(Debug)]
pub enum Action {
    /// Send the request upstream.
    Forward(Box<Forward>),
    /// Answer with a redirect.
    Redirect(Redirect),
    /// Answer with a fixed status and body.
    DirectResponse(DirectResponse),
}

/// Envoy's route timeout when a route sets none.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(15);

/// A timeout that config may turn off with 0.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Timeout {
    /// No limit.
    Disabled,
    /// Give up after this long.
    After(Duration),
}

impl Timeout {
    fn compile(d: &PbDuration) -> Result<Timeout, Invalid> {
        let seconds = u64::try_from(d.seconds).ok();
        let nanos = u32::try_from(d.nanos).ok().filter(|n| *n < 1_000_000_000);
        match (seconds, nanos) {
            (Some(0), Some(0)) => Ok(Timeout::Disabled),
            (Some(s), Some(n)) => Ok(Timeout::After(Duration::new(s, n))),
            _ => Err(Problem::invalid("must be a non-negative duration").at("")),
        }
    }
}

/// What a route inherits from its virtual host and route configuration.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Inherited<'a> {
    /// The virtual host's retry policy, used when the route has none.
    pub(crate) retry_policy: Option<&'a RetryPolicy>,
    /// The virtual host's mirror policies, or the route configuration's when it has none;
    /// used when the route has none.
    pub(crate) request_mirror_policies: &'a [route_action::RequestMirrorPolicy],
    /// The route configuration's `max_direct_response_body_size_bytes`.
    pub(crate) max_direct_response_body: u32,
    /// Where the virtual host sends `x-envoy-attempt-count`.
    pub(crate) attempt_count: AttemptCount,
    /// The route's request buffer limit, else its virtual host's, if set.
    pub(crate) buffer_limit: Option<u64>,
}

/// Where `x-envoy-attempt-count` goes (the virtual host's `include_request_attempt_count`
/// and `include_attempt_count_in_response`).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AttemptCount {
    /// In each upstream request.
    pub request: bool,
    /// In the response to the client.
    pub response: bool,
}

/// How much of a request body Envoy keeps for retries and mirrors when no
/// `per_request_buffer_limit_bytes` is set: its default connection buffer limit, 1 MiB.
pub const DEFAULT_REQUEST_BUFFER_LIMIT: usize = 1 << 20;

/// A forward: where to send the request and how to rewrite it on the way.
#[derive(Debug)]
pub struct Forward {
    clusters: Clusters,
    path_rewrite: Option<PathRewrite>,
    host_rewrite: Option<HostRewrite>,
    /// Whether a host rewrite appends the original host to `x-forwarded-host`.
    pub append_x_forwarded_host: bool,
    /// The upstream timeout for the whole exchange, retries included (Envoy: 15 s by default).
    pub timeout: Timeout,
    /// The stream idle timeout; `None` leaves the connection manager's in force.
    pub idle_timeout: Option<Timeout>,
    /// The status to answer when the picked cluster does not exist (503 by default).
    pub cluster_not_found_response_code: StatusCode,
    /// The route's retry policy, or else its virtual host's.
    pub retry_policy: Option<CompiledRetryPolicy>,
    /// How to hash requests for consistent-hash load balancing (`hash_policy`).
    pub hasher: RequestHasher,
    /// The route's mirror policies, or else its virtual host's, or else its route
    /// configuration's.
    pub request_mirror_policies: Vec<MirrorPolicy>,
    /// Where `x-envoy-attempt-count` goes.
    pub attempt_count: AttemptCount,
    /// How many request body bytes may be kept for retries and mirrors.
    pub buffer_limit: usize,
    /// Stream duration limits and gRPC timeout handling, as configured.
    pub max_stream_duration: Option<route_action::MaxStreamDuration>,
    /// Whether a CONNECT request is terminated here and its payload relayed as TCP to
    /// the cluster (`upgrade_configs` CONNECT with a `connect_config`).
    pub terminate_connect: bool,
}

#[derive(Debug)]
enum Clusters {
    One(WeightedCluster),
    /// Clusters with their weights; `total` is the weights' sum, in `1..=u32::MAX`.
    Weighted {
        clusters: Vec<(u32, WeightedCluster)>,
        total: u64,
        /// A header whose integer value replaces the request's random value.
        random_value_header: Option<HeaderSource>,
    },
}

#[derive(Debug)]
enum HostRewrite {
    Literal(String),
    /// `auto_host_rewrite`: the hostname of the upstream host picked, known only then.
    UpstreamHostname,
    Header(HeaderSource),
    PathRegex(Substitution),
}

impl Forward {
    /// Compiles `a`; `matched` is what the route's path condition matches, which
    /// `prefix_rewrite` replaces. Errors name fields within `route`.
    pub(crate) fn compile(
        a: &RouteAction,
        matched: Matched,
        inherited: Inherited<'_>,
    ) -> Result<Forward, Invalid> {
        use route_action::ClusterSpecifier as C;
        unsupported(&[
            ("metadata_match", a.metadata_match.is_some()),
            ("path_rewrite_policy", a.path_rewrite_policy.is_some()),
            (
                "internal_redirect_policy",
                a.internal_redirect_policy.is_some(),
            ),
            ("internal_redirect_action", handles_redirects(a)),
            (
                "retry_policy_typed_config",
                a.retry_policy_typed_config.is_some(),
            ),
        ])?;
        let clusters = match &a.cluster_specifier {
            None => return Err(Problem::Missing.at("cluster_specifier")),
            Some(C::Cluster(name)) => Clusters::One(WeightedCluster::named(name, "cluster")?),
            Some(C::ClusterHeader(header)) => Clusters::One(WeightedCluster::plain(
                ClusterTarget::Header(from_header(header).within("cluster_header")?),
            )),
            Some(C::WeightedClusters(w)) => weighted(w).within("weighted_clusters")?,
            Some(C::ClusterSpecifierPlugin(_)) => {
                return Err(Problem::Unsupported.at("cluster_specifier_plugin"));
            }
            Some(C::InlineClusterSpecifierPlugin(_)) => {
                return Err(Problem::Unsupported.at("inline_cluster_specifier_plugin"));
            }
        };
        let mirrors = if a.request_mirror_policies.is_empty() {
            inherited.request_mirror_policies
        } else {
            &a.request_mirror_policies
        };
        let mirror_field = if a.request_mirror_policies.is_empty() {
            "inherited request_mirror_policies"
        } else {
            "request_mirror_policies"
        };
        let request_mirror_policies = mirrors
            .iter()
            .enumerate()
            .map(|(i, m)| {
                MirrorPolicy::compile(m).map_err(|e| {
                    Problem::invalid(e.reason).at(format!("{mirror_field}[{i}].{}", e.field))
                })
            })
            .collect::<Result<_, _>>()?;
        let retry_policy = match (&a.retry_policy, inherited.retry_policy) {
            (Some(p), _) => Some(retry_policy(p).within("retry_policy")?),
            (None, Some(p)) => Some(retry_policy(p).within("virtual host retry_policy")?),
            (None, None) => None,
        };
        Ok(Forward {
            clusters,
            path_rewrite: path_rewrite(a, matched)?,
            host_rewrite: host_rewrite(a.host_rewrite_specifier.as_ref())?,
            append_x_forwarded_host: a.append_x_forwarded_host,
            timeout: match &a.timeout {
                Some(d) => Timeout::compile(d).within("timeout")?,
                None => Timeout::After(DEFAULT_TIMEOUT),
            },
            idle_timeout: a
                .idle_timeout
                .as_ref()
                .map(|d| Timeout::compile(d).within("idle_timeout"))
                .transpose()?,
            cluster_not_found_response_code: not_found_code(a.cluster_not_found_response_code)?,
            retry_policy,
            hasher: RequestHasher::new(&a.hash_policy).map_err(|e| {
                Problem::invalid(&e.reason).at(format!("hash_policy[{}].{}", e.index, e.field))
            })?,
            request_mirror_policies,
            attempt_count: inherited.attempt_count,
            buffer_limit: inherited
                .buffer_limit
                .map_or(DEFAULT_REQUEST_BUFFER_LIMIT, |l| {
                    usize::try_from(l).unwrap_or(usize::MAX)
                }),
            max_stream_duration: a.max_stream_duration,
            terminate_connect: a.upgrade_configs.iter().any(|u| {
                u.upgrade_type.eq_ignore_ascii_case("CONNECT")
                    && u.connect_config.is_some()
                    && u.enabled.is_none_or(|e| e.value)
            }),
        })
    }

    /// The cluster for a request whose random value is `random`: with weighted clusters,
    /// `random % total weight` falls in one cluster's share, as in Envoy.
    pub fn pick_cluster(&self, random: u64) -> &WeightedCluster {
        match &self.clusters {
            Clusters::One(cluster) => cluster,
            Clusters::Weighted {
                clusters, total, ..
            } => {
                let mut value = random % total;
                for (weight, cluster) in clusters {
                    match value.checked_sub(u64::from(*weight)) {
                        Some(rest) => value = rest,
                        None => return cluster,
                    }
                }
                unreachable!("the weights sum to total, so the value falls in one's share")
            }
        }
    }

    /// [`Forward::pick_cluster`], with the random value read from the configured header
    /// when there is one and it holds exactly one integer.
    pub(crate) fn pick_cluster_for(&self, req: &RequestHead<'_>, random: u64) -> &WeightedCluster {
        let from_header = match &self.clusters {
            Clusters::Weighted {
                random_value_header: Some(header),
                ..
            } => header
                .single(req)
                .and_then(|v| std::str::from_utf8(v).ok()?.parse().ok()),
            _ => None,
        };
        self.pick_cluster(from_header.unwrap_or(random))
    }

    /// The path to send upstream, or `None` to send it unchanged.
    pub fn rewrite_path(&self, path: &str) -> Option<String> {
        self.path_rewrite.as_ref().map(|rw| rw.apply(path))
    }

    /// The authority to send upstream when `cluster` was picked, or `None` to send it
    /// unchanged. The route's rewrite wins over the cluster's; a rewrite from a header that
    /// is absent or empty, or from a regex that yields nothing, leaves the cluster's (or
    /// nothing) in force. `auto_host_rewrite` is not applied here: see
    /// [`Forward::auto_host_rewrite`].
    pub fn rewrite_host<'r>(
        &'r self,
        cluster: &'r WeightedCluster,
        req: &RequestHead<'r>,
    ) -> Option<NewHost<'r>> {
        let route = match &self.host_rewrite {
            Some(HostRewrite::Literal(host)) => Some(Cow::Borrowed(host.as_str())),
            Some(HostRewrite::Header(header)) => header.first_text(req).map(Cow::Borrowed),
            Some(HostRewrite::PathRegex(s)) => {
                let host = s.replace_all(req.path_only());
                (!host.is_empty()).then_some(Cow::Owned(host))
            }
            Some(HostRewrite::UpstreamHostname) | None => None,
        };
        route.map(NewHost::Route).or_else(|| {
            cluster
                .host_rewrite
                .as_deref()
                .map(|host| NewHost::Cluster(Cow::Borrowed(host)))
        })
    }

    /// Whether the authority becomes the hostname of the upstream host picked by load
    /// balancing (`auto_host_rewrite`).
    pub fn auto_host_rewrite(&self) -> bool {
        matches!(self.host_rewrite, Some(HostRewrite::UpstreamHostname))
    }
}

/// The authority a forwarded request is sent with, when config rewrites it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NewHost<'r> {
    /// The route's rewrite: Envoy keeps the original authority in `x-envoy-original-host`
    /// (and appends it to `x-forwarded-host` when the route asks).
    Route(Cow<'r, str>),
    /// The picked weighted cluster's `host_rewrite_literal`, which Envoy applies without
    /// recording the original.
    Cluster(Cow<'r, str>),
}

impl NewHost<'_> {
    /// The new authority.
    pub fn as_str(&self) -> &str {
        match self {
            NewHost::Route(host) | NewHost::Cluster(host) => host,
        }
    }

    /// The same, owning its text (a rewrite may borrow from the request).
    pub fn into_owned(self) -> NewHost<'static> {
        match self {
            NewHost::Route(host) => NewHost::Route(Cow::Owned(host.into_owned())),
            NewHost::Cluster(host) => NewHost::Cluster(Cow::Owned(host.into_owned())),
        }
    }
}

/// A retry policy, compiled; errors name fields within it.
fn retry_policy(p: &RetryPolicy) -> Result<CompiledRetryPolicy, Invalid> {
    CompiledRetryPolicy::compile(p).map_err(|e| match e {
        InvalidPolicy::Unsupported(field) => Problem::Unsupported.at(field),
        InvalidPolicy::Invalid { field, reason } => Problem::invalid(reason).at(field),
    })
}

/// A route's or virtual host's request buffer limit: `request_body_buffer_limit`, else
/// the deprecated `per_request_buffer_limit_bytes`.
pub(crate) fn buffer_limit(
    request_body: Option<UInt64Value>,
    per_request: Option<UInt32Value>,
) -> Option<u64> {
    request_body
        .map(|v| v.value)
        .or(per_request.map(|v| u64::from(v.value)))
}

/// Whether the deprecated `internal_redirect_action` asks Envoy to follow redirects.
#[allow(deprecated)] // Envoy still honours it, so it must not be ignored.
fn handles_redirects(a: &RouteAction) -> bool {
    a.internal_redirect_action
        == route_action::InternalRedirectAction::HandleInternalRedirect as i32
}

fn weighted(w: &PbWeightedCluster) -> Result<Clusters, Invalid> {
    use weighted_cluster::RandomValueSpecifier as R;
    if w.clusters.is_empty() {
        return Err(Problem::invalid("must list a cluster").at("clusters"));
    }
    // `total_weight` is deprecated and ignored: Envoy uses the sum of the weights.
    let mut total = 0u64;
    let mut clusters = Vec::with_capacity(w.clusters.len());
    for (i, c) in w.clusters.iter().enumerate() {
        let weight = c.weight.as_ref().map_or(0, |w| w.value);
        total += u64::from(weight);
        if total > u64::from(u32::MAX) {
            return Err(Problem::TotalWeightOverflow.at("clusters"));
        }
        clusters.push((
            weight,
            WeightedCluster::compile(c).within(&format!("clusters[{i}]"))?,
        ));
    }
    if total == 0 {
        return Err(Problem::ZeroTotalWeight.at("clusters"));
    }
    let random_value_header = match &w.random_value_specifier {
        Some(R::HeaderName(name)) => Some(from_header(name).within("header_name")?),
        Some(R::UseHashPolicy(b)) if b.value => {
            return Err(Problem::Unsupported.at("use_hash_policy"));
        }
        Some(R::UseHashPolicy(_)) | None => None,
    };
    Ok(Clusters::Weighted {
        clusters,
        total,
        random_value_header,
    })
}

/// A header that names something per request (a cluster, a host, a random value).
fn from_header(name: &str) -> Result<HeaderSource, Invalid> {
    if name.is_empty() {
        return Err(Problem::invalid("must not be empty").at(""));
    }
    HeaderSource::parse(name)
}

/// One of the route's clusters: its name (or the header naming it) and what happens to
/// requests and responses when it is picked.
#[derive(Debug)]
pub struct WeightedCluster {
    target: ClusterTarget,
    pub(crate) headers: HeaderMutations,
    host_rewrite: Option<String>,
    /// Per-filter config for this cluster, by filter name, as configured.
    pub typed_per_filter_config: HashMap<String, Any>,
}

#[derive(Debug)]
enum ClusterTarget {
    Named(String),
    Header(HeaderSource),
}

impl WeightedCluster {
    fn plain(target: ClusterTarget) -> WeightedCluster {
        WeightedCluster {
            target,
            headers: HeaderMutations::default(),
            host_rewrite: None,
            typed_per_filter_config: HashMap::new(),
        }
    }

    fn named(name: &str, field: &str) -> Result<WeightedCluster, Invalid> {
        if name.is_empty() {
            return Err(Problem::invalid("must not be empty").at(field));
        }
        Ok(WeightedCluster::plain(ClusterTarget::Named(
            name.to_owned(),
        )))
    }

    fn compile(c: &weighted_cluster::ClusterWeight) -> Result<WeightedCluster, Invalid> {
        use weighted_cluster::cluster_weight::HostRewriteSpecifier as H;
        if c.metadata_match.is_some() {
            return Err(Problem::Unsupported.at("metadata_match"));
        }
        let mut cluster = match (c.name.is_empty(), c.cluster_header.is_empty()) {
            (false, true) => WeightedCluster::named(&c.name, "name")?,
            (true, false) => WeightedCluster::plain(ClusterTarget::Header(
                from_header(&c.cluster_header).within("cluster_header")?,
            )),
            (false, false) => {
                return Err(
                    Problem::invalid("only one of name and cluster_header may be set").at("name"),
                );
            }
            (true, true) => {
                return Err(
                    Problem::invalid("one of name and cluster_header must be set").at("name"),
                );
            }
        };
        cluster.headers = HeaderMutations::compile(c)?;
        cluster.host_rewrite = match &c.host_rewrite_specifier {
            Some(H::HostRewriteLiteral(host)) if !host.is_empty() => {
                Some(host_value(host).within("host_rewrite_literal")?)
            }
            _ => None,
        };
        cluster.typed_per_filter_config = c.typed_per_filter_config.clone();
        Ok(cluster)
    }

    /// The cluster's name: as configured, or read from the request's `cluster_header` (first
    /// value). `None` when that header is absent, empty or not text: Envoy then answers with
    /// the route's `cluster_not_found_response_code`.
    pub fn name<'r>(&'r self, req: &RequestHead<'r>) -> Option<&'r str> {
        match &self.target {
            ClusterTarget::Named(name) => Some(name),
            ClusterTarget::Header(header) => header.first_text(req),
        }
    }
}

fn path_rewrite(a: &RouteAction, matched: Matched) -> Result<Option<PathRewrite>, Invalid> {
    let set = [
        ("prefix_rewrite", !a.prefix_rewrite.is_empty()),
        ("regex_rewrite", a.regex_rewrite.is_some()),
        ("path_rewrite", !a.path_rewrite.is_empty()),
    ];
    if let Some((second, _)) = set.iter().filter(|(_, on)| *on).nth(1) {
        return Err(Problem::invalid(
            "only one of prefix_rewrite, regex_rewrite and path_rewrite may be set",
        )
        .at(*second));
    }
    Ok(if !a.prefix_rewrite.is_empty() {
        Some(PathRewrite::Prefix {
            matched,
            with: a.prefix_rewrite.clone(),
        })
    } else if let Some(s) = &a.regex_rewrite {
        Some(PathRewrite::Regex(
            Substitution::compile(s).within("regex_rewrite")?,
        ))
    } else if !a.path_rewrite.is_empty() {
        Some(PathRewrite::Whole(
            text(&a.path_rewrite).within("path_rewrite")?,
        ))
    } else {
        None
    })
}

fn host_rewrite(
    spec: Option<&route_action::HostRewriteSpecifier>,
) -> Result<Option<HostRewrite>, Invalid> {
    use route_action::HostRewriteSpecifier as H;
    Ok(match spec {
        None => None,
        Some(H::HostRewriteLiteral(host)) if host.is_empty() => None,
        Some(H::HostRewriteLiteral(host)) => Some(HostRewrite::Literal(
            host_value(host).within("host_rewrite_literal")?,
        )),
        Some(H::AutoHostRewrite(on)) => on.value.then_some(HostRewrite::UpstreamHostname),
        Some(H::HostRewriteHeader(name)) => Some(HostRewrite::Header(
            from_header(name).within("host_rewrite_header")?,
        )),
        Some(H::HostRewritePathRegex(s)) => Some(HostRewrite::PathRegex(
            Substitution::compile(s).within("host_rewrite_path_regex")?,
        )),
        Some(H::HostRewrite(format)) => {
            let host = text(format).within("host_rewrite")?;
            // Envoy ignores a rewrite that comes out empty.
            (!host.is_empty())
                .then(|| {
                    host_value(&host)
                        .within("host_rewrite")
                        .map(HostRewrite::Literal)
                })
                .transpose()?
        }
    })
}

/// A substitution format string that must be literal text.
fn text(format: &str) -> Result<String, Invalid> {
    let bytes = format::literal(format.as_bytes()).map_err(|p| p.at(""))?;
    // `%%` → `%` keeps UTF-8 valid.
    Ok(String::from_utf8(bytes).expect("literal of a str is UTF-8"))
}

/// A host to put in `:authority`, checked to be a valid header value.
fn host_value(host: &str) -> Result<String, Invalid> {
    HeaderValue::from_str(host)
        .map(|_| host.to_owned())
        .map_err(|_| Problem::InvalidHeaderValue(host.to_owned()).at(""))
}

fn not_found_code(code: i32) -> Result<StatusCode, Invalid> {
    use route_action::ClusterNotFoundResponseCode as C;
    match C::try_from(code) {
        Ok(C::ServiceUnavailable) => Ok(StatusCode::SERVICE_UNAVAILABLE),
        Ok(C::NotFound) => Ok(StatusCode::NOT_FOUND),
        Ok(C::InternalServerError) => Ok(StatusCode::INTERNAL_SERVER_ERROR),
        Err(_) => {
            Err(Problem::invalid(format!("unknown value {code}"))
                .at("cluster_not_found_response_code"))
        }
    }
}

/// A redirect: where to send the client, built from the request.
#[derive(Debug)]
pub struct Redirect {
    status: StatusCode,
    scheme: Option<String>,
    host: Option<String>,
    port: Option<u16>,
    path: RedirectPath,
    strip_query: bool,
}

#[derive(Debug)]
enum RedirectPath {
    Keep,
    /// `path_redirect`; a query of its own replaces the request's and is never stripped.
    Replace {
        path: String,
        has_query: bool,
    },
    /// `prefix_rewrite` or `regex_rewrite` of the request's path.
    Rewrite(PathRewrite),
}

impl Redirect {
    /// Compiles `r`; errors name fields within `redirect`.
    pub(crate) fn compile(r: &RedirectAction, matched: Matched) -> Result<Redirect, Invalid> {
        use redirect_action::{
            PathRewriteSpecifier as P, RedirectResponseCode as Code, SchemeRewriteSpecifier as S,
        };
        let status = match Code::try_from(r.response_code) {
            Ok(Code::MovedPermanently) => StatusCode::MOVED_PERMANENTLY,
            Ok(Code::Found) => StatusCode::FOUND,
            Ok(Code::SeeOther) => StatusCode::SEE_OTHER,
            Ok(Code::TemporaryRedirect) => StatusCode::TEMPORARY_REDIRECT,
            Ok(Code::PermanentRedirect) => StatusCode::PERMANENT_REDIRECT,
            Err(_) => {
                return Err(
                    Problem::invalid(format!("unknown value {}", r.response_code))
                        .at("response_code"),
                );
            }
        };
        let scheme = match &r.scheme_rewrite_specifier {
            Some(S::HttpsRedirect(true)) => Some("https".to_owned()),
            Some(S::SchemeRedirect(s)) if !s.is_empty() => Some(s.clone()),
            _ => None,
        };
        let port =
            match r.port_redirect {
                0 => None,
                p => Some(u16::try_from(p).map_err(|_| {
                    Problem::invalid(format!("{p} is not a port")).at("port_redirect")
                })?),
            };
        let path = match &r.path_rewrite_specifier {
            Some(P::PathRedirect(p)) if !p.is_empty() => RedirectPath::Replace {
                has_query: p.contains('?'),
                path: p.clone(),
            },
            Some(P::PrefixRewrite(p)) if !p.is_empty() => {
                RedirectPath::Rewrite(PathRewrite::Prefix {
                    matched,
                    with: p.clone(),
                })
            }
            Some(P::RegexRewrite(s)) => RedirectPath::Rewrite(PathRewrite::Regex(
                Substitution::compile(s).within("regex_rewrite")?,
            )),
            Some(P::PathRewrite(_)) => return Err(Problem::Unsupported.at("path_rewrite")),
            _ => RedirectPath::Keep,
        };
        Ok(Redirect {
            status,
            scheme,
            host: (!r.host_redirect.is_empty()).then(|| r.host_redirect.clone()),
            port,
            path,
            strip_query: r.strip_query,
        })
    }

    /// A redirect that changes nothing: its `Location` is the request's own URL.
    fn to_same_url(status: StatusCode) -> Redirect {
        Redirect {
            status,
            scheme: None,
            host: None,
            port: None,
            path: RedirectPath::Keep,
            strip_query: false,
        }
    }

    /// The redirect's status and `Location` for `req`, as Envoy builds them.
    pub fn location(&self, req: &RequestHead<'_>) -> (StatusCode, String) {
        let scheme = self.scheme.as_deref().unwrap_or(req.scheme);
        let host = match &self.host {
            Some(host) => host.as_str(),
            None => request_host(req, scheme, self.port.is_some()),
        };
        let current = match &self.path {
            RedirectPath::Rewrite(rw) => Cow::Owned(rw.apply(req.path)),
            _ => Cow::Borrowed(req.path),
        };
        let path = match &self.path {
            RedirectPath::Replace {
                path,
                has_query: false,
            } => match current.find('?') {
                Some(query) => Cow::Owned([path, &current[query..]].concat()),
                None => Cow::Borrowed(path.as_str()),
            },
            RedirectPath::Replace { path, .. } => Cow::Borrowed(path.as_str()),
            RedirectPath::Keep | RedirectPath::Rewrite(_) => current,
        };
        // A query that `path_redirect` brings is never stripped.
        let strip = self.strip_query
            && !matches!(
                self.path,
                RedirectPath::Replace {
                    has_query: true,
                    ..
                }
            );
        let path = if strip {
            path.split('?').next().unwrap_or_default()
        } else {
            &path
        };
        let mut location = String::with_capacity(scheme.len() + host.len() + path.len() + 16);
        location.push_str(scheme);
        location.push_str("://");
        location.push_str(host);
        if let Some(port) = self.port {
            let _ = write!(location, ":{port}");
        }
        if !path.starts_with('/') {
            location.push('/');
        }
        location.push_str(path);
        (self.status, location)
    }
}

/// The request's authority for a redirect: without its port when the redirect sets one, or
/// when the scheme changes and the port is the old scheme's default.
fn request_host<'r>(req: &RequestHead<'r>, new_scheme: &str, new_port: bool) -> &'r str {
    let authority = req.authority;
    let port_start = if authority.starts_with('[') {
        authority.rfind("]:").map(|i| i + 1)
    } else {
        authority.rfind(':')
    };
    let Some(start) = port_start else {
        return authority;
    };
    let port = &authority[start..];
    let default_port = (req.scheme.eq_ignore_ascii_case("https") && port == ":443")
        || (req.scheme.eq_ignore_ascii_case("http") && port == ":80");
    if new_port || (new_scheme != req.scheme && default_port) {
        &authority[..start]
    } else {
        authority
    }
}

/// A fixed answer.
#[derive(Debug, Clone)]
pub struct DirectResponse {
    /// The response status.
    pub status: StatusCode,
    /// The response body (empty when config has none).
    pub body: Bytes,
}

impl DirectResponse {
    /// Compiles `d`; errors name fields within `direct_response`.
    pub(crate) fn compile(
        d: &DirectResponseAction,
        max_body: u32,
    ) -> Result<DirectResponse, Invalid> {
        if d.body_format.is_some() {
            return Err(Problem::Unsupported.at("body_format"));
        }
        let status = u16::try_from(d.status)
            .ok()
            .filter(|s| (200..600).contains(s))
            .and_then(|s| StatusCode::from_u16(s).ok())
            .ok_or_else(|| {
                Problem::invalid(format!("{} is not in 200..=599", d.status)).at("status")
            })?;
        let body = match &d.body {
            None => Bytes::new(),
            Some(body) => inline(body).within("body")?,
        };
        if body.len() > max_body as usize {
            return Err(Problem::BodyTooLarge {
                size: body.len(),
                max: max_body,
            }
            .at("body"));
        }
        Ok(DirectResponse { status, body })
    }

    /// The `Location` Envoy gives a direct response whose status is 201 or 3xx (RFC 7231,
    /// 7.1.2): the request's own URL.
    pub fn location(&self, req: &RequestHead<'_>) -> Option<String> {
        (self.status == StatusCode::CREATED || self.status.is_redirection())
            .then(|| Redirect::to_same_url(self.status).location(req).1)
    }
}

/// An inline data source's bytes; files and environment variables are not read.
fn inline(source: &DataSource) -> Result<Bytes, Invalid> {
    use data_source::Specifier as S;
    match &source.specifier {
        None => Err(Problem::Missing.at("specifier")),
        Some(S::InlineString(s)) => Ok(Bytes::from(s.clone())),
        Some(S::InlineBytes(b)) => Ok(Bytes::from(b.clone())),
        Some(S::Filename(_)) => Err(Problem::Unsupported.at("filename")),
        Some(S::EnvironmentVariable(_)) => Err(Problem::Unsupported.at("environment_variable")),
    }
}
