//! A cluster's circuit breakers (`circuit_breakers.thresholds`) at the default routing
//! priority: how many connections, pending and active requests it may have at once.

use mizzen_xds::pb::envoy::config::cluster::v3::CircuitBreakers as PbCircuitBreakers;
use mizzen_xds::pb::envoy::config::core::v3::RoutingPriority;

/// Envoy's default for each of `max_connections`, `max_pending_requests` and
/// `max_requests`.
const DEFAULT_LIMIT: u32 = 1024;

/// The default-priority thresholds of a cluster's circuit breakers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CircuitBreakers {
    /// Connections open to all of the cluster's endpoints (Istio's
    /// `tcp.maxConnections`).
    pub max_connections: u32,
    /// Requests waiting for a connection (Istio's `http.http1MaxPendingRequests`).
    pub max_pending_requests: u32,
    /// Requests in flight (Istio's `http.http2MaxRequests`).
    pub max_requests: u32,
}

impl Default for CircuitBreakers {
    fn default() -> Self {
        Self {
            max_connections: DEFAULT_LIMIT,
            max_pending_requests: DEFAULT_LIMIT,
            max_requests: DEFAULT_LIMIT,
        }
    }
}

impl CircuitBreakers {
    /// The thresholds of the first entry for the DEFAULT priority, as Envoy picks them;
    /// Envoy's defaults for what it leaves unset. HIGH-priority thresholds apply to
    /// routes with `priority: HIGH`, which the proxy treats as default.
    pub fn compile(raw: Option<&PbCircuitBreakers>) -> CircuitBreakers {
        let defaults = CircuitBreakers::default();
        let Some(thresholds) = raw.and_then(|b| {
            b.thresholds
                .iter()
                .find(|t| t.priority == RoutingPriority::Default as i32)
        }) else {
            return defaults;
        };
        let or = |v: Option<mizzen_xds::pb::google::protobuf::UInt32Value>, d: u32| {
            v.map_or(d, |v| v.value)
        };
        CircuitBreakers {
            max_connections: or(thresholds.max_connections, defaults.max_connections),
            max_pending_requests: or(
                thresholds.max_pending_requests,
                defaults.max_pending_requests,
            ),
            max_requests: or(thresholds.max_requests, defaults.max_requests),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mizzen_xds::pb::envoy::config::cluster::v3::circuit_breakers::Thresholds;
    use mizzen_xds::pb::google::protobuf::UInt32Value;

    #[test]
    fn istio_connection_pool_thresholds_are_read_and_envoy_defaults_fill_the_rest() {
        assert_eq!(CircuitBreakers::compile(None), CircuitBreakers::default());
        let raw = PbCircuitBreakers {
            thresholds: vec![
                Thresholds {
                    priority: RoutingPriority::High as i32,
                    max_connections: Some(UInt32Value { value: 9 }),
                    ..Default::default()
                },
                Thresholds {
                    max_connections: Some(UInt32Value { value: 1 }),
                    max_pending_requests: Some(UInt32Value { value: 2 }),
                    ..Default::default()
                },
            ],
            ..Default::default()
        };
        assert_eq!(
            CircuitBreakers::compile(Some(&raw)),
            CircuitBreakers {
                max_connections: 1,
                max_pending_requests: 2,
                max_requests: 1024,
            }
        );
    }
}
