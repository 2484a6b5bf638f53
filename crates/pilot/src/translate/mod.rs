//! Istio config → Envoy resources, one builder per resource type. Every builder is a
//! pure function of the push context and the proxy: no I/O, tested with plain inputs.

pub mod authn;
pub mod authz;
pub mod cluster;
pub mod endpoint;
pub mod gateway;
pub mod listener;
pub mod names;
pub mod route;
pub(crate) mod security;
pub mod telemetry;
