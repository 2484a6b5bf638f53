//! The control plane's view of the mesh, computed once per config change and shared by
//! every proxy's translation (Istio's `PushContext`): services and their endpoints, the
//! config that applies to them, and who is asking.

pub mod delegation;
pub mod jwks;
pub mod proxy;
pub mod push;
pub mod registry;
pub mod security;
pub mod service;
pub mod telemetry;
pub mod visibility;

#[cfg(test)]
mod testing;

pub use proxy::{InterceptionMode, NodeType, Proxy, ProxyError};
pub use push::{MeshConfig, MeshSource, PushContext};
pub use registry::{Registry, resolve_host};
pub use service::{Endpoint, HealthStatus, Hostname, Location, Resolution, Service, ServicePort};
pub use visibility::EgressImports;
