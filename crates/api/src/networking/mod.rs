//! `networking.istio.io`: traffic management kinds.

mod destination_rule;
mod envoy_filter;
mod gateway;
mod proxy_config;
mod service_entry;
mod sidecar;
mod virtual_service;
mod workload_entry;

pub use destination_rule::*;
pub use envoy_filter::*;
pub use gateway::*;
pub use proxy_config::*;
pub use service_entry::*;
pub use sidecar::*;
pub use virtual_service::*;
pub use workload_entry::*;
