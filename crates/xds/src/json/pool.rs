//! The descriptor pool of every Envoy type, compiled by `build.rs` from the `.proto`
//! sources inside the `envoy-types` package, decoded when first needed.
//!
//! Decoded, the pool takes ~14 MiB. A process that converts rarely (the proxy reads its
//! bootstrap once, serves `/config_dump` now and then) calls [`release`] afterwards, and
//! the next conversion decodes it again.

use std::sync::Mutex;

use prost_reflect::{DescriptorPool, MessageDescriptor};

use super::JsonError;

static DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/envoy_descriptor_set.bin"));

static POOL: Mutex<Option<DescriptorPool>> = Mutex::new(None);

/// The pool, decoded if it is not held.
fn pool() -> DescriptorPool {
    let mut held = POOL.lock().unwrap_or_else(|e| e.into_inner());
    held.get_or_insert_with(|| {
        DescriptorPool::decode(DESCRIPTOR_SET).expect("build.rs wrote a valid descriptor set")
    })
    .clone()
}

/// Drops the decoded pool; it is freed once no conversion in progress holds it.
pub fn release() {
    *POOL.lock().unwrap_or_else(|e| e.into_inner()) = None;
}

/// The message type named `full_name` (`envoy.config.cluster.v3.Cluster`).
pub(crate) fn message(full_name: &str) -> Result<MessageDescriptor, JsonError> {
    pool()
        .get_message_by_name(full_name)
        .ok_or_else(|| JsonError::UnknownMessage(full_name.to_owned()))
}

/// The message type a type URL names (`type.googleapis.com/envoy.config.cluster.v3.Cluster`),
/// if the pool has it.
pub(crate) fn message_for_type_url(type_url: &str) -> Option<MessageDescriptor> {
    let name = type_url.rsplit_once('/').map_or(type_url, |(_, name)| name);
    pool().get_message_by_name(name)
}
