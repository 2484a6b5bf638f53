//! The descriptor pool of every Envoy type, compiled by `build.rs` from the `.proto`
//! sources inside the `envoy-types` package and decoded once per process.

use std::sync::LazyLock;

use prost_reflect::{DescriptorPool, MessageDescriptor};

use super::JsonError;

static DESCRIPTOR_SET: &[u8] =
    include_bytes!(concat!(env!("OUT_DIR"), "/envoy_descriptor_set.bin"));

static POOL: LazyLock<DescriptorPool> = LazyLock::new(|| {
    DescriptorPool::decode(DESCRIPTOR_SET).expect("build.rs wrote a valid descriptor set")
});

/// The message type named `full_name` (`envoy.config.cluster.v3.Cluster`).
pub(crate) fn message(full_name: &str) -> Result<MessageDescriptor, JsonError> {
    POOL.get_message_by_name(full_name)
        .ok_or_else(|| JsonError::UnknownMessage(full_name.to_owned()))
}

/// The message type a type URL names (`type.googleapis.com/envoy.config.cluster.v3.Cluster`),
/// if the pool has it.
pub(crate) fn message_for_type_url(type_url: &str) -> Option<MessageDescriptor> {
    let name = type_url.rsplit_once('/').map_or(type_url, |(_, name)| name);
    POOL.get_message_by_name(name)
}
