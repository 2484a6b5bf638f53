//! Request mirroring (`request_mirror_policies`): a copy of a share of a route's
//! requests goes to another cluster, fire and forget. The copy's authority gets
//! Envoy's `-shadow` suffix; its response is read and dropped, and neither its latency
//! nor its failure reaches the client. The copy carries the whole body, sent once the
//! client sent it all (a body over the buffer limit is not mirrored).

use std::sync::Arc;
use std::time::Duration;

use http::request::Parts;
use http::{Request, Version};
use http_body_util::BodyExt;
use mizzen_xds::pb::envoy::config::route::v3::route_action::RequestMirrorPolicy as PbMirrorPolicy;
use mizzen_xds::pb::envoy::r#type::v3::fractional_percent::DenominatorType;

use super::request_body::{Follower, RequestBody};
use crate::Shared;
use crate::config::{ClusterState, Snapshot, UpstreamProtocol};
use crate::endpoint;
use crate::route::RequestHead;
use crate::upstream::{PoolKey, PoolSettings};

/// Why a mirror policy is refused.
#[derive(Debug, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct InvalidMirror {
    /// The field.
    pub field: &'static str,
    /// What is wrong with it.
    pub reason: String,
}

/// One compiled mirror policy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MirrorPolicy {
    target: MirrorTarget,
    /// Requests mirrored per million.
    per_million: u32,
    /// Whether the authority is sent unchanged (`disable_shadow_host_suffix_append`).
    keep_host: bool,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum MirrorTarget {
    Named(String),
    /// A request header names the cluster.
    Header(http::HeaderName),
}

impl MirrorPolicy {
    /// Compiles `p`.
    pub fn compile(p: &PbMirrorPolicy) -> Result<MirrorPolicy, InvalidMirror> {
        let target = match (p.cluster.is_empty(), p.cluster_header.is_empty()) {
            (false, true) => MirrorTarget::Named(p.cluster.clone()),
            (true, false) => MirrorTarget::Header(
                http::HeaderName::from_bytes(p.cluster_header.as_bytes()).map_err(|_| {
                    InvalidMirror {
                        field: "cluster_header",
                        reason: format!("invalid header name {:?}", p.cluster_header),
                    }
                })?,
            ),
            _ => {
                return Err(InvalidMirror {
                    field: "cluster",
                    reason: "exactly one of cluster and cluster_header must be set".into(),
                });
            }
        };
        // No fraction: every request is mirrored.
        let per_million = match p.runtime_fraction.as_ref().and_then(|f| f.default_value) {
            None => 1_000_000,
            Some(f) => {
                let scale = match DenominatorType::try_from(f.denominator) {
                    Ok(DenominatorType::Hundred) => 10_000,
                    Ok(DenominatorType::TenThousand) => 100,
                    Ok(DenominatorType::Million) => 1,
                    Err(_) => {
                        return Err(InvalidMirror {
                            field: "runtime_fraction.default_value.denominator",
                            reason: format!("unknown value {}", f.denominator),
                        });
                    }
                };
                f.numerator.saturating_mul(scale).min(1_000_000)
            }
        };
        Ok(MirrorPolicy {
            target,
            per_million,
            keep_host: p.disable_shadow_host_suffix_append,
        })
    }

    /// Whether a request whose random value is `random` is mirrored.
    fn admits(&self, random: u32) -> bool {
        random % 1_000_000 < self.per_million
    }
}

/// A mirror chosen for one request: its cluster and how to address it.
pub struct Mirror {
    cluster: Arc<ClusterState>,
    keep_host: bool,
}

/// The mirrors of `policies` that take a copy of this request: sampled by their
/// fraction, and only those whose cluster exists.
pub fn select(
    policies: &[MirrorPolicy],
    snapshot: &Snapshot,
    req: &RequestHead<'_>,
) -> Vec<Mirror> {
    policies
        .iter()
        .filter(|p| p.admits(fastrand::u32(..)))
        .filter_map(|p| {
            let name = match &p.target {
                MirrorTarget::Named(name) => name.as_str(),
                MirrorTarget::Header(header) => req.headers.get(header)?.to_str().ok()?,
            };
            Some(Mirror {
                cluster: snapshot.clusters.get(name)?.clone(),
                keep_host: p.keep_host,
            })
        })
        .collect()
}

/// Envoy's shadow authority: `-shadow` after the host, before any port.
pub fn shadow_host(authority: &str) -> String {
    let port_at = if authority.starts_with('[') {
        authority.rfind("]:").map(|i| i + 1)
    } else {
        authority.rfind(':')
    };
    match port_at {
        Some(i) => format!("{}-shadow{}", &authority[..i], &authority[i..]),
        None => format!("{authority}-shadow"),
    }
}

/// Sends a copy of the request (`parts` as sent upstream, with `authority` and `path`)
/// to each mirror, in the background; `body` yields the whole body once the client
/// sent it (`None`: the request has none).
pub fn launch(
    shared: &Arc<Shared>,
    mirrors: Vec<Mirror>,
    parts: &Parts,
    (authority, path): (&str, &str),
    body: Option<&Follower>,
    timeout: Option<Duration>,
) {
    for mirror in mirrors {
        let authority = if mirror.keep_host {
            authority.to_owned()
        } else {
            shadow_host(authority)
        };
        let http2 = match mirror.cluster.cluster.protocol {
            UpstreamProtocol::Http1 => false,
            UpstreamProtocol::Http2 => true,
            UpstreamProtocol::Downstream => parts.version == Version::HTTP_2,
        };
        let mut request = Request::new(());
        *request.method_mut() = parts.method.clone();
        *request.headers_mut() = parts.headers.clone();
        *request.version_mut() = parts.version;
        let (mut head, ()) = request.into_parts();
        super::forward::set_upstream_target(&mut head, &authority, path, http2);
        let body = body.cloned();
        let shared = shared.clone();
        // Counted now, as Envoy counts a shadow when the request goes upstream, whenever
        // its body lets it leave.
        let stats = &mirror.cluster.stats;
        stats.upstream_rq_total.inc();
        let active = stats.upstream_rq_active.track();
        tokio::spawn(async move {
            let _active = active;
            let body = match body {
                None => RequestBody::Empty,
                Some(follower) => match follower.complete().await {
                    Some(body) => body,
                    None => return,
                },
            };
            let send = shadow(
                &shared,
                &mirror.cluster,
                Request::from_parts(head, body),
                http2,
            );
            let outcome = match timeout {
                Some(t) => tokio::time::timeout(t, send).await.unwrap_or_else(|_| {
                    mirror.cluster.stats.upstream_rq_timeout.inc();
                    Err("timeout".into())
                }),
                None => send.await,
            };
            if let Err(e) = outcome {
                tracing::debug!(cluster = %mirror.cluster.cluster.name, error = %e, "mirrored request failed");
            }
        });
    }
}

/// One mirrored exchange, its response read to the end and dropped.
async fn shadow(
    shared: &Shared,
    state: &ClusterState,
    request: Request<RequestBody>,
    http2: bool,
) -> Result<(), Box<dyn std::error::Error + Send + Sync>> {
    // A mirror's connection is never the client's: a fixed destination does for
    // original-destination clusters, which cannot be mirrored to.
    let picked = endpoint::choose(state, std::net::SocketAddr::from(([0, 0, 0, 0], 0)), None)?;
    let cluster = &state.cluster;
    let key = PoolKey {
        endpoint: picked.address,
        http2,
        bind: cluster.bind,
        transport: state.transport(picked.address).clone(),
    };
    let settings = PoolSettings::of(cluster);
    let stats = &state.stats;
    let _in_flight = picked.into_in_flight();
    let response = shared.upstreams.send(key, settings, stats, request).await?;
    stats.upstream_rq.record(response.status().as_u16());
    response.into_body().collect().await?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use mizzen_xds::pb::envoy::config::core::v3::RuntimeFractionalPercent;
    use mizzen_xds::pb::envoy::r#type::v3::FractionalPercent;

    #[test]
    fn the_shadow_host_is_suffixed_before_the_port() {
        assert_eq!(shadow_host("reviews"), "reviews-shadow");
        assert_eq!(shadow_host("reviews:9080"), "reviews-shadow:9080");
        assert_eq!(shadow_host("[::1]:80"), "[::1]-shadow:80");
    }

    #[test]
    fn the_fraction_admits_its_share() {
        let policy = |numerator, denominator: DenominatorType| {
            MirrorPolicy::compile(&PbMirrorPolicy {
                cluster: "v2".into(),
                runtime_fraction: Some(RuntimeFractionalPercent {
                    default_value: Some(FractionalPercent {
                        numerator,
                        denominator: denominator as i32,
                    }),
                    runtime_key: String::new(),
                }),
                ..Default::default()
            })
            .unwrap()
        };
        assert_eq!(policy(25, DenominatorType::Hundred).per_million, 250_000);
        assert_eq!(policy(25, DenominatorType::TenThousand).per_million, 2_500);
        assert_eq!(policy(200, DenominatorType::Hundred).per_million, 1_000_000);
        let all = MirrorPolicy::compile(&PbMirrorPolicy {
            cluster: "v2".into(),
            ..Default::default()
        })
        .unwrap();
        assert!(all.admits(999_999) && all.admits(0));
        let quarter = policy(25, DenominatorType::Hundred);
        assert!(quarter.admits(249_999) && !quarter.admits(250_000));
        let neither = PbMirrorPolicy::default();
        assert!(MirrorPolicy::compile(&neither).is_err());
    }
}
