//! Span tags: the names Envoy gives its standard tags, and the connection manager's
//! `custom_tags` (Istio's `istio.*` tags and the Telemetry API's), compiled.

use http::{HeaderMap, HeaderName};
use mizzen_xds::pb::envoy::r#type::tracing::v3::{CustomTag as PbCustomTag, custom_tag::Type};
use mizzen_xds::pb::opentelemetry::proto::common::v1::{AnyValue, KeyValue, any_value};

/// The `node_id` tag.
pub(super) const NODE_ID: &str = "node_id";
/// The `zone` tag.
pub(super) const ZONE: &str = "zone";
/// The `guid:x-request-id` tag.
pub(super) const REQUEST_ID: &str = "guid:x-request-id";
/// The `http.url` tag.
pub(super) const HTTP_URL: &str = "http.url";
/// The `http.method` tag.
pub(super) const HTTP_METHOD: &str = "http.method";
/// The `http.protocol` tag.
pub(super) const HTTP_PROTOCOL: &str = "http.protocol";
/// The `http.status_code` tag.
pub(super) const HTTP_STATUS_CODE: &str = "http.status_code";
/// The `downstream_cluster` tag.
pub(super) const DOWNSTREAM_CLUSTER: &str = "downstream_cluster";
/// The `user_agent` tag.
pub(super) const USER_AGENT: &str = "user_agent";
/// The `peer.address` tag.
pub(super) const PEER_ADDRESS: &str = "peer.address";
/// The `request_size` tag.
pub(super) const REQUEST_SIZE: &str = "request_size";
/// The `response_size` tag.
pub(super) const RESPONSE_SIZE: &str = "response_size";
/// The `response_flags` tag.
pub(super) const RESPONSE_FLAGS: &str = "response_flags";
/// The `component` tag.
pub(super) const COMPONENT: &str = "component";
/// The `upstream_cluster` tag.
pub(super) const UPSTREAM_CLUSTER: &str = "upstream_cluster";
/// The `upstream_cluster.name` tag.
pub(super) const UPSTREAM_CLUSTER_NAME: &str = "upstream_cluster.name";
/// The `upstream_address` tag (an upstream span's endpoint).
pub(super) const UPSTREAM_ADDRESS: &str = "upstream_address";
/// The `retry.count` tag (an upstream span's retries before it).
pub(super) const RETRY_COUNT: &str = "retry.count";
/// The `error.reason` tag (why an upstream stream was reset).
pub(super) const ERROR_REASON: &str = "error.reason";
/// The `canceled` tag (an upstream attempt the proxy gave up on).
pub(super) const CANCELED: &str = "canceled";
/// The `error` tag.
pub(super) const ERROR: &str = "error";

/// A string attribute, as Envoy's OpenTelemetry tracer sets every tag.
pub(super) fn tag(key: &str, value: impl Into<String>) -> KeyValue {
    KeyValue {
        key: key.to_owned(),
        value: Some(AnyValue {
            value: Some(any_value::Value::StringValue(value.into())),
        }),
        key_strindex: 0,
    }
}

/// A custom tag: a name and where its value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomTag {
    name: String,
    value: TagValue,
}

/// Where a custom tag's value comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum TagValue {
    /// Known at config time: a literal, or an environment variable read then (as
    /// Envoy reads it, once).
    Fixed(String),
    /// A request header, else the default (no tag when neither).
    RequestHeader {
        name: HeaderName,
        default: Option<String>,
    },
    /// Metadata the proxy does not keep per request (such as the dry-run results of
    /// RBAC shadow rules that istiod tags spans with): the default, else no tag.
    Unrecorded(Option<String>),
}

impl CustomTag {
    /// Compiles a custom tag; errors are `(field, reason)` within it.
    pub fn compile(raw: &PbCustomTag) -> Result<CustomTag, (String, String)> {
        if raw.tag.is_empty() {
            return Err(("tag".into(), "is empty".into()));
        }
        let value = match &raw.r#type {
            Some(Type::Literal(literal)) => TagValue::Fixed(literal.value.clone()),
            Some(Type::Environment(env)) => TagValue::Fixed(
                std::env::var(&env.name).unwrap_or_else(|_| env.default_value.clone()),
            ),
            Some(Type::RequestHeader(header)) => TagValue::RequestHeader {
                name: HeaderName::try_from(header.name.as_str()).map_err(|_| {
                    (
                        "request_header.name".to_owned(),
                        format!("{:?} is not a header name", header.name),
                    )
                })?,
                default: Some(header.default_value.clone()).filter(|d| !d.is_empty()),
            },
            Some(Type::Value(text)) if !text.contains('%') => TagValue::Fixed(text.clone()),
            Some(Type::Value(_)) => {
                return Err((
                    "value".into(),
                    "substitution formatters in tag values are not supported".into(),
                ));
            }
            Some(Type::Metadata(metadata)) => {
                TagValue::Unrecorded(Some(metadata.default_value.clone()).filter(|d| !d.is_empty()))
            }
            None => return Err(("type".into(), "is missing".into())),
        };
        Ok(CustomTag {
            name: raw.tag.clone(),
            value,
        })
    }

    /// The tag's attribute for a request with `headers`, if it has a value.
    pub fn attribute(&self, headers: &HeaderMap) -> Option<KeyValue> {
        let value = match &self.value {
            TagValue::Fixed(value) => value.clone(),
            TagValue::RequestHeader { name, default } => headers
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
                .or_else(|| default.clone())?,
            TagValue::Unrecorded(default) => default.clone()?,
        };
        Some(tag(&self.name, value))
    }
}
