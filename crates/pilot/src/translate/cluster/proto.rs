//! Small constructors for the protobuf values every builder needs (durations, wrappers,
//! `Any`, `Struct` metadata), so that builders read as the Envoy config they produce.

use std::collections::HashMap;

use mizzen_api::types::Duration;
use mizzen_xds::pb::envoy::config::core::v3::{
    AggregatedConfigSource, ApiConfigSource, ApiVersion, ConfigSource, GrpcService, Metadata,
    TransportSocket,
    api_config_source::ApiType,
    config_source::ConfigSourceSpecifier,
    grpc_service::{EnvoyGrpc, TargetSpecifier},
    transport_socket::ConfigType,
};
use mizzen_xds::pb::envoy::extensions::transport_sockets::raw_buffer::v3::RawBuffer;
use mizzen_xds::pb::google::protobuf::{self as pbuf, ListValue, Struct, Value, value::Kind};
use prost::{Message, Name};

/// Packs a message into an `Any` with its canonical type URL.
pub(crate) fn any<M: Message + Name>(message: &M) -> pbuf::Any {
    pbuf::Any {
        type_url: M::type_url(),
        value: message.encode_to_vec(),
    }
}

/// A protobuf duration from an Istio one.
pub(crate) fn duration(d: Duration) -> pbuf::Duration {
    std_duration(d.get())
}

/// A protobuf duration from a standard one.
pub(crate) fn std_duration(d: std::time::Duration) -> pbuf::Duration {
    pbuf::Duration {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    }
}

/// A protobuf duration of whole seconds.
pub(crate) fn seconds(s: i64) -> pbuf::Duration {
    pbuf::Duration {
        seconds: s,
        nanos: 0,
    }
}

/// `google.protobuf.UInt32Value`.
pub(crate) fn u32v(value: u32) -> pbuf::UInt32Value {
    pbuf::UInt32Value { value }
}

/// `google.protobuf.UInt64Value`.
pub(crate) fn u64v(value: u64) -> pbuf::UInt64Value {
    pbuf::UInt64Value { value }
}

/// A string `Value`.
pub(crate) fn string(s: impl Into<String>) -> Value {
    Value {
        kind: Some(Kind::StringValue(s.into())),
    }
}

/// A number `Value`.
pub(crate) fn number(n: f64) -> Value {
    Value {
        kind: Some(Kind::NumberValue(n)),
    }
}

/// A bool `Value`.
pub(crate) fn boolean(b: bool) -> Value {
    Value {
        kind: Some(Kind::BoolValue(b)),
    }
}

/// A list `Value`.
pub(crate) fn list(values: Vec<Value>) -> Value {
    Value {
        kind: Some(Kind::ListValue(ListValue { values })),
    }
}

/// A struct `Value` of `fields`.
pub(crate) fn object<'a>(fields: impl IntoIterator<Item = (&'a str, Value)>) -> Value {
    Value {
        kind: Some(Kind::StructValue(structure(fields))),
    }
}

/// A `Struct` of `fields`.
pub(crate) fn structure<'a>(fields: impl IntoIterator<Item = (&'a str, Value)>) -> Struct {
    Struct {
        fields: fields.into_iter().map(|(k, v)| (k.to_owned(), v)).collect(),
    }
}

/// The `filter_metadata[filter]` struct of `metadata`, created when absent.
pub(crate) fn filter_metadata<'m>(
    metadata: &'m mut Option<Metadata>,
    filter: &str,
) -> &'m mut Struct {
    metadata
        .get_or_insert_with(|| Metadata {
            filter_metadata: HashMap::new(),
            ..Metadata::default()
        })
        .filter_metadata
        .entry(filter.to_owned())
        .or_default()
}

/// Config from the ADS stream the proxy already has (`{ads: {}, resource_api_version: V3}`);
/// Istio sets `initial_fetch_timeout: 0s` on EDS so that clusters never wait to warm.
pub(crate) fn ads_config_source(initial_fetch_timeout: Option<pbuf::Duration>) -> ConfigSource {
    ConfigSource {
        config_source_specifier: Some(ConfigSourceSpecifier::Ads(AggregatedConfigSource {})),
        initial_fetch_timeout,
        resource_api_version: ApiVersion::V3 as i32,
        ..ConfigSource::default()
    }
}

/// The workload identity SDS server in the proxy's bootstrap (`sds-grpc`), as Istio's
/// sidecars reach it.
pub(crate) fn sds_grpc_config_source() -> ConfigSource {
    ConfigSource {
        config_source_specifier: Some(ConfigSourceSpecifier::ApiConfigSource(ApiConfigSource {
            api_type: ApiType::Grpc as i32,
            transport_api_version: ApiVersion::V3 as i32,
            grpc_services: vec![GrpcService {
                target_specifier: Some(TargetSpecifier::EnvoyGrpc(EnvoyGrpc {
                    cluster_name: SDS_CLUSTER.to_owned(),
                    ..EnvoyGrpc::default()
                })),
                ..GrpcService::default()
            }],
            set_node_on_first_message_only: true,
            ..ApiConfigSource::default()
        })),
        initial_fetch_timeout: Some(seconds(0)),
        resource_api_version: ApiVersion::V3 as i32,
        ..ConfigSource::default()
    }
}

/// The bootstrap cluster serving workload certificates over SDS, named as in Istio.
pub(crate) const SDS_CLUSTER: &str = "sds-grpc";

/// A transport socket named `name` with typed config `config`.
pub(crate) fn transport_socket<M: Message + Name>(name: &str, config: &M) -> TransportSocket {
    TransportSocket {
        name: name.to_owned(),
        config_type: Some(ConfigType::TypedConfig(any(config))),
    }
}

/// Plain text (`envoy.transport_sockets.raw_buffer`).
pub(crate) fn raw_buffer() -> TransportSocket {
    transport_socket("envoy.transport_sockets.raw_buffer", &RawBuffer {})
}
