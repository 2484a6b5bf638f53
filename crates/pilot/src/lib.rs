//! The control plane ("pilot"): config stores, the service registry, translation of
//! Istio config into Envoy resources, serving them to proxies, and the mesh's CA.

pub mod ca;
pub mod dashboard;
pub mod model;
pub mod server;
pub mod store;
pub mod translate;
