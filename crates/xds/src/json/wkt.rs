//! Google's well-known types, which proto3 JSON writes in special forms
//! (`"10s"`, `"2023-05-15T01:32:52.262Z"`, bare wrapper values, free-form `Struct`).

/// A well-known type with a special JSON form.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum WellKnown {
    Any,
    Timestamp,
    Duration,
    Struct,
    Value,
    ListValue,
    /// `DoubleValue`, `UInt32Value`, `BoolValue`, ...: the bare `value`.
    Wrapper,
    FieldMask,
    Empty,
}

impl WellKnown {
    /// The special form for the message named `full_name`, if it has one.
    pub(crate) fn of(full_name: &str) -> Option<Self> {
        Some(match full_name.strip_prefix("google.protobuf.")? {
            "Any" => Self::Any,
            "Timestamp" => Self::Timestamp,
            "Duration" => Self::Duration,
            "Struct" => Self::Struct,
            "Value" => Self::Value,
            "ListValue" => Self::ListValue,
            "DoubleValue" | "FloatValue" | "Int64Value" | "UInt64Value" | "Int32Value"
            | "UInt32Value" | "BoolValue" | "StringValue" | "BytesValue" => Self::Wrapper,
            "FieldMask" => Self::FieldMask,
            "Empty" => Self::Empty,
            _ => return None,
        })
    }
}

/// proto3 JSON's bound on durations: ±10,000 years.
const MAX_DURATION_SECONDS: i64 = 315_576_000_000;
/// 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z.
const TIMESTAMP_SECONDS: std::ops::RangeInclusive<i64> = -62_135_596_800..=253_402_300_799;

pub(crate) fn duration_in_range(d: &prost_types::Duration) -> bool {
    d.seconds.abs() <= MAX_DURATION_SECONDS && d.nanos.abs() < 1_000_000_000
}

pub(crate) fn timestamp_in_range(ts: &prost_types::Timestamp) -> bool {
    TIMESTAMP_SECONDS.contains(&ts.seconds) && (0..1_000_000_000).contains(&ts.nanos)
}

/// `FieldMask` paths are snake_case in protos and lowerCamelCase in JSON.
pub(crate) fn snake_to_camel(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut upper = false;
    for c in path.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.push(c.to_ascii_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// The inverse of [`snake_to_camel`].
pub(crate) fn camel_to_snake(path: &str) -> String {
    let mut out = String::with_capacity(path.len() + 4);
    for c in path.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
            out.push(c.to_ascii_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}
