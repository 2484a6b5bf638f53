//! The control plane ("pilot"): config stores, the service registry, translation of
//! Istio config into Envoy resources, and serving them to proxies.

pub mod dashboard;
pub mod model;
pub mod server;
pub mod store;
pub mod translate;
