//! The data plane: listeners, HTTP, TCP, TLS, routing, load balancing, admin.
//!
//! It reads standard Envoy xDS v3 (from an ADS server or a static bootstrap) and moves
//! bytes. Config is compiled when it arrives — matchers, regexes, route tables,
//! load-balancer state — so that the request path only looks things up.

pub mod balance;
pub mod route;
