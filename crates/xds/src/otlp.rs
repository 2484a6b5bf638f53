//! OpenTelemetry's trace export contract (OTLP), the part a proxy sends and a collector
//! receives: `opentelemetry.proto.collector.trace.v1.TraceService/Export` over gRPC, or
//! the same request as protobuf `POST /v1/traces` over HTTP.
//!
//! The messages are from `opentelemetry-proto` (`trace/v1/trace.proto`,
//! `resource/v1/resource.proto`, `collector/trace/v1/trace_service.proto`), written out
//! here with the fields a proxy fills, as `ca` writes Istio's CA messages: `envoy-types`
//! ships only the common package, which these reuse. Fields left out are skipped by
//! decoders, as protobuf skips unknown fields.

use crate::pb::opentelemetry::proto::common::v1::{InstrumentationScope, KeyValue};

/// The gRPC path of the export method.
pub const EXPORT_PATH: &str = "/opentelemetry.proto.collector.trace.v1.TraceService/Export";
/// The HTTP path collectors serve OTLP/HTTP traces on by default.
pub const HTTP_PATH: &str = "/v1/traces";

/// A batch of spans, grouped by the resource (process) that made them.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExportTraceServiceRequest {
    /// The spans, by resource.
    #[prost(message, repeated, tag = "1")]
    pub resource_spans: Vec<ResourceSpans>,
}

/// The collector's answer; a rejection of part of the batch, if any.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExportTraceServiceResponse {
    /// Spans the collector refused, and why.
    #[prost(message, optional, tag = "1")]
    pub partial_success: Option<ExportTracePartialSuccess>,
}

/// Spans a collector refused.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ExportTracePartialSuccess {
    /// How many.
    #[prost(int64, tag = "1")]
    pub rejected_spans: i64,
    /// Why.
    #[prost(string, tag = "2")]
    pub error_message: String,
}

/// The spans of one resource.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ResourceSpans {
    /// What made them.
    #[prost(message, optional, tag = "1")]
    pub resource: Option<Resource>,
    /// The spans, by instrumentation scope.
    #[prost(message, repeated, tag = "2")]
    pub scope_spans: Vec<ScopeSpans>,
    /// The schema of the resource's attributes.
    #[prost(string, tag = "3")]
    pub schema_url: String,
}

/// An entity that makes telemetry (`service.name` and other attributes).
#[derive(Clone, PartialEq, prost::Message)]
pub struct Resource {
    /// Its attributes.
    #[prost(message, repeated, tag = "1")]
    pub attributes: Vec<KeyValue>,
    /// Attributes left out.
    #[prost(uint32, tag = "2")]
    pub dropped_attributes_count: u32,
}

/// The spans of one instrumentation scope.
#[derive(Clone, PartialEq, prost::Message)]
pub struct ScopeSpans {
    /// The scope.
    #[prost(message, optional, tag = "1")]
    pub scope: Option<InstrumentationScope>,
    /// Its spans.
    #[prost(message, repeated, tag = "2")]
    pub spans: Vec<Span>,
    /// The schema of the spans' attributes.
    #[prost(string, tag = "3")]
    pub schema_url: String,
}

/// One operation of a trace.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Span {
    /// The trace, 16 bytes.
    #[prost(bytes = "vec", tag = "1")]
    pub trace_id: Vec<u8>,
    /// This span, 8 bytes.
    #[prost(bytes = "vec", tag = "2")]
    pub span_id: Vec<u8>,
    /// The W3C `tracestate` of the span's context.
    #[prost(string, tag = "3")]
    pub trace_state: String,
    /// The caller's span, 8 bytes; empty for a trace's first span.
    #[prost(bytes = "vec", tag = "4")]
    pub parent_span_id: Vec<u8>,
    /// What the operation is.
    #[prost(string, tag = "5")]
    pub name: String,
    /// Its role: server, client, …
    #[prost(enumeration = "SpanKind", tag = "6")]
    pub kind: i32,
    /// When it started, in nanoseconds since the Unix epoch.
    #[prost(fixed64, tag = "7")]
    pub start_time_unix_nano: u64,
    /// When it ended, in nanoseconds since the Unix epoch.
    #[prost(fixed64, tag = "8")]
    pub end_time_unix_nano: u64,
    /// Its attributes.
    #[prost(message, repeated, tag = "9")]
    pub attributes: Vec<KeyValue>,
    /// Attributes left out.
    #[prost(uint32, tag = "10")]
    pub dropped_attributes_count: u32,
    /// How it ended.
    #[prost(message, optional, tag = "15")]
    pub status: Option<Status>,
    /// W3C trace flags (bit 0: sampled) and OTLP's context bits.
    #[prost(fixed32, tag = "16")]
    pub flags: u32,
}

/// A span's role in the operation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum SpanKind {
    /// Not said.
    Unspecified = 0,
    /// Internal to an application.
    Internal = 1,
    /// Serves a remote request.
    Server = 2,
    /// Makes a remote request.
    Client = 3,
    /// Sends a message.
    Producer = 4,
    /// Receives a message.
    Consumer = 5,
}

/// How a span ended.
#[derive(Clone, PartialEq, prost::Message)]
pub struct Status {
    /// A description, for errors.
    #[prost(string, tag = "2")]
    pub message: String,
    /// Unset, ok or error.
    #[prost(enumeration = "StatusCode", tag = "3")]
    pub code: i32,
}

/// A span's status code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, prost::Enumeration)]
#[repr(i32)]
pub enum StatusCode {
    /// The default: nothing said.
    Unset = 0,
    /// Verified as successful.
    Ok = 1,
    /// Failed.
    Error = 2,
}
