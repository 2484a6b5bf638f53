//! Envoy's proto3 JSON mapping for every Envoy type, both ways.
//!
//! Out: the shape Envoy's admin `/config_dump` prints — proto (snake_case) field names,
//! fields at their default left out, enums by name, 64-bit integers as strings, `Any`
//! expanded with `"@type"`. In: what Envoy accepts in a bootstrap file — YAML or JSON,
//! snake_case or lowerCamelCase names, typed `Any`s — with errors that name the path
//! (`$.static_resources.clusters[0].connect_timeout`) and the reason.
//!
//! Every type comes from one descriptor pool that `build.rs` compiles from the `.proto`
//! sources shipped in the `envoy-types` package, decoded once on first use.

mod decode;
mod encode;
mod path;
mod pool;

pub use pool::release as release_descriptors;
mod wkt;

#[cfg(test)]
mod tests;

use prost::Message;
use prost_reflect::DynamicMessage;
use serde_json::Value;

use crate::pb::envoy::config::bootstrap::v3::Bootstrap;
use crate::pb::google::protobuf::Any;
use path::Path;

/// Why a message could not be converted to or from JSON.
#[derive(Debug, thiserror::Error)]
pub enum JsonError {
    /// A key that names no field of the message at `path`.
    #[error("{path}: unknown field `{field}` in {message}{}", .hint.as_ref().map(|h| format!(" (did you mean `{h}`?)")).unwrap_or_default())]
    UnknownField {
        /// Where the message with the unknown key is.
        path: String,
        /// The key as written.
        field: String,
        /// The message's full name.
        message: String,
        /// The nearest real field name, if one is close.
        hint: Option<String>,
    },
    /// An `Any` whose type URL names no type this build knows.
    #[error("{path}: unknown type `{type_url}` (not an Envoy, xDS or Google protobuf type)")]
    UnknownType {
        /// Where the `Any` (or its `@type`) is.
        path: String,
        /// The type URL as written.
        type_url: String,
    },
    /// A value of the wrong shape or out of range.
    #[error("{path}: {reason}")]
    Invalid {
        /// Where the value is.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The Rust type asked for has no descriptor (it is not an Envoy or Google type).
    #[error("{0} is not in Envoy's descriptor set")]
    UnknownMessage(String),
    /// The text is not YAML (or JSON).
    #[error("not valid YAML or JSON: {0}")]
    Syntax(#[from] serde_yaml_ng::Error),
    /// The document has keys JSON cannot hold (YAML allows non-string keys).
    #[error("not representable as JSON: {0}")]
    NotJson(#[from] serde_json::Error),
    /// The bytes between the generated type and its descriptor disagree.
    #[error("{message}: {source}")]
    Decode {
        /// The message's full name.
        message: String,
        /// What prost reported.
        #[source]
        source: prost::DecodeError,
    },
}

/// `message` as Envoy prints it in `/config_dump`.
pub fn to_json<M: Message + prost::Name>(message: &M) -> Result<Value, JsonError> {
    let desc = pool::message(&M::full_name())?;
    let dynamic =
        DynamicMessage::decode(desc, message.encode_to_vec().as_slice()).map_err(|source| {
            JsonError::Decode {
                message: M::full_name(),
                source,
            }
        })?;
    encode::message(&dynamic, &mut Path::default())
}

/// An `Any` as Envoy prints it: `{"@type": "type.googleapis.com/...", ...fields}`.
pub fn any_to_json(any: &Any) -> Result<Value, JsonError> {
    to_json(any)
}

/// Reads `value` (proto or JSON field names) as a message of type `M`.
pub fn from_json<M: Message + Default + prost::Name>(value: &Value) -> Result<M, JsonError> {
    let desc = pool::message(&M::full_name())?;
    let dynamic = decode::message(&desc, value, &mut Path::default())?;
    M::decode(dynamic.encode_to_vec().as_slice()).map_err(|source| JsonError::Decode {
        message: M::full_name(),
        source,
    })
}

/// Reads a typed `{"@type": ..., ...}` object into an `Any`.
pub fn any_from_json(value: &Value) -> Result<Any, JsonError> {
    from_json(value)
}

/// Reads YAML or JSON text (JSON is YAML) as a message of type `M`, as Envoy reads a
/// config file. YAML anchors and `<<` merge keys are resolved first.
pub fn from_yaml<M: Message + Default + prost::Name>(text: &str) -> Result<M, JsonError> {
    let mut yaml: serde_yaml_ng::Value = serde_yaml_ng::from_str(text)?;
    yaml.apply_merge()?;
    from_json(&serde_json::to_value(yaml)?)
}

/// Reads an Envoy bootstrap file (YAML or JSON).
pub fn bootstrap_from_yaml(text: &str) -> Result<Bootstrap, JsonError> {
    from_yaml(text)
}
