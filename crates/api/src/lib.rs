//! Istio and Kubernetes config as typed Rust values: the kinds a user writes, how they
//! are loaded from YAML/JSON files, and their validation, equivalent to Istio's webhook.
//!
//! This crate does no I/O beyond reading files and is fully synchronous.

pub mod analyze;
pub mod extensions;
pub mod kind;
pub mod kube;
pub mod load;
pub mod mesh;
pub mod networking;
pub mod object;
pub mod position;
pub mod security;
pub mod telemetry;
pub mod testdata;
pub mod types;
pub mod validate;

#[cfg(test)]
mod testing;

pub use k8s_openapi;
pub use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
pub use kind::Kind;
pub use object::{Object, ObjectKey, OtherObject, Resource, Spec, Typed};
