//! LDS and RDS for gateway proxies (node type `router`), as Istio's `gateway.go` builds
//! them: the plain HTTP servers of the Gateways selecting the proxy become one listener
//! per port (`0.0.0.0_8080`) whose routes (`http.8080`) come from the VirtualServices
//! bound to those Gateways. Clusters and endpoints are the ones sidecars get.

mod listener;
mod route;
mod servers;

#[cfg(test)]
mod tests;

pub use listener::{binds_own_address, listeners};
pub use route::routes;
pub(crate) use servers::resolve_gateway_name;
