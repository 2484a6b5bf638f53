//! Message → JSON, the way Envoy prints config (`/config_dump`): proto field names,
//! fields at their default value left out, enums by name, 64-bit integers as strings,
//! `Any` expanded with `@type`, well-known types in their special forms.

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use prost_reflect::{DynamicMessage, Kind, MapKey, ReflectMessage, Value};
use serde_json::{Map, Number, Value as Json};

use super::path::Path;
use super::{JsonError, pool, wkt};

/// Converts `message` to JSON; `path` tracks where we are for errors.
pub(crate) fn message(message: &DynamicMessage, path: &mut Path) -> Result<Json, JsonError> {
    let desc = message.descriptor();
    if let Some(wkt) = wkt::WellKnown::of(desc.full_name()) {
        return well_known(wkt, message, path);
    }
    Ok(Json::Object(fields(message, path)?))
}

fn fields(message: &DynamicMessage, path: &mut Path) -> Result<Map<String, Json>, JsonError> {
    let mut object = Map::new();
    for (field, value) in message.fields() {
        path.push_key(field.name());
        let json = match value {
            Value::List(items) => {
                let kind = field.kind();
                let mut array = Vec::with_capacity(items.len());
                for (index, item) in items.iter().enumerate() {
                    path.push_index(index);
                    array.push(singular(&kind, item, path)?);
                    path.pop();
                }
                Json::Array(array)
            }
            Value::Map(entries) => {
                let kind = field
                    .kind()
                    .as_message()
                    .map(|entry| entry.map_entry_value_field().kind())
                    .expect("map fields have an entry message");
                let mut object = Map::new();
                for (key, item) in entries {
                    let key = map_key(key);
                    path.push_key(&key);
                    let json = singular(&kind, item, path)?;
                    path.pop();
                    object.insert(key, json);
                }
                Json::Object(object)
            }
            value => singular(&field.kind(), value, path)?,
        };
        path.pop();
        object.insert(field.name().to_owned(), json);
    }
    Ok(object)
}

fn map_key(key: &MapKey) -> String {
    match key {
        MapKey::Bool(b) => b.to_string(),
        MapKey::I32(n) => n.to_string(),
        MapKey::I64(n) => n.to_string(),
        MapKey::U32(n) => n.to_string(),
        MapKey::U64(n) => n.to_string(),
        MapKey::String(s) => s.clone(),
    }
}

fn singular(kind: &Kind, value: &Value, path: &mut Path) -> Result<Json, JsonError> {
    Ok(match value {
        Value::Bool(b) => Json::Bool(*b),
        Value::I32(n) => Json::from(*n),
        Value::U32(n) => Json::from(*n),
        Value::I64(n) => Json::String(n.to_string()),
        Value::U64(n) => Json::String(n.to_string()),
        // Shortest text that reads back as the same f32, as Envoy prints it (0.1, not
        // 0.10000000149011612).
        Value::F32(f) => float(f.to_string().parse().unwrap_or(f64::from(*f))),
        Value::F64(f) => float(*f),
        Value::String(s) => Json::String(s.clone()),
        Value::Bytes(b) => Json::String(STANDARD.encode(b)),
        Value::EnumNumber(number) => match kind.as_enum() {
            Some(e) if e.full_name() == "google.protobuf.NullValue" => Json::Null,
            Some(e) => match e.get_value(*number) {
                Some(v) => Json::String(v.name().to_owned()),
                None => Json::from(*number),
            },
            None => Json::from(*number),
        },
        Value::Message(m) => message(m, path)?,
        Value::List(_) | Value::Map(_) => {
            return Err(invalid(path, "a list or map nested in a list or map"));
        }
    })
}

/// A double as JSON: integral values without a fraction (`140`, as Envoy prints them),
/// and the proto3 JSON strings for the values JSON cannot hold.
pub(crate) fn float(f: f64) -> Json {
    const EXACT: f64 = 9_007_199_254_740_992.0; // 2^53
    if f.is_nan() {
        Json::String("NaN".into())
    } else if f.is_infinite() {
        Json::String(if f > 0.0 { "Infinity" } else { "-Infinity" }.into())
    } else if f.fract() == 0.0 && f.abs() < EXACT && !(f == 0.0 && f.is_sign_negative()) {
        Json::from(f as i64)
    } else {
        Number::from_f64(f).map_or(Json::Null, Json::Number)
    }
}

fn well_known(
    wkt: wkt::WellKnown,
    message: &DynamicMessage,
    path: &mut Path,
) -> Result<Json, JsonError> {
    use wkt::WellKnown as W;
    Ok(match wkt {
        W::Any => return any(message, path),
        W::Timestamp => {
            let ts: prost_types::Timestamp = transcode(message, path)?;
            if !wkt::timestamp_in_range(&ts) {
                return Err(invalid(path, format!("timestamp {ts:?} out of range")));
            }
            Json::String(ts.to_string())
        }
        W::Duration => {
            let d: prost_types::Duration = transcode(message, path)?;
            if !wkt::duration_in_range(&d) {
                return Err(invalid(path, format!("duration {d:?} out of range")));
            }
            Json::String(d.to_string())
        }
        W::Struct => {
            let mut object = Map::new();
            if let Some(Value::Map(entries)) = message.get_field_by_name("fields").as_deref() {
                for (key, value) in entries {
                    let key = map_key(key);
                    path.push_key(&key);
                    let json = struct_value(value, path)?;
                    path.pop();
                    object.insert(key, json);
                }
            }
            Json::Object(object)
        }
        W::Value => struct_value(&Value::Message(message.clone()), path)?,
        W::ListValue => list_value(message, path)?,
        W::Wrapper => match message.descriptor().get_field_by_name("value") {
            Some(field) => singular(&field.kind(), &message.get_field(&field), path)?,
            None => return Err(invalid(path, "wrapper without a `value` field")),
        },
        W::FieldMask => {
            let paths = match message.get_field_by_name("paths").as_deref() {
                Some(Value::List(paths)) => paths
                    .iter()
                    .filter_map(Value::as_str)
                    .map(wkt::snake_to_camel)
                    .collect::<Vec<_>>(),
                _ => Vec::new(),
            };
            Json::String(paths.join(","))
        }
        W::Empty => Json::Object(Map::new()),
    })
}

fn any(any: &DynamicMessage, path: &mut Path) -> Result<Json, JsonError> {
    let raw: prost_types::Any = transcode(any, path)?;
    // An `Any` that is present but empty prints as `{}` (Envoy's `configuration: {}`).
    if raw.type_url.is_empty() && raw.value.is_empty() {
        return Ok(Json::Object(Map::new()));
    }
    let Some(desc) = pool::message_for_type_url(&raw.type_url) else {
        return Err(JsonError::UnknownType {
            path: path.render(),
            type_url: raw.type_url,
        });
    };
    let payload = DynamicMessage::decode(desc, raw.value.as_slice()).map_err(|err| {
        invalid(
            path,
            format!("payload of `{}` does not decode: {err}", raw.type_url),
        )
    })?;
    let mut object = Map::new();
    object.insert("@type".into(), Json::String(raw.type_url));
    if wkt::WellKnown::of(payload.descriptor().full_name()).is_some() {
        object.insert("value".into(), message(&payload, path)?);
    } else {
        object.extend(fields(&payload, path)?);
    }
    Ok(Json::Object(object))
}

/// `google.protobuf.Value` (given as the message) to plain JSON.
fn struct_value(value: &Value, path: &mut Path) -> Result<Json, JsonError> {
    let Value::Message(value) = value else {
        return Err(invalid(path, "struct value is not a message"));
    };
    let Some((field, kind)) = value.fields().next() else {
        return Ok(Json::Null);
    };
    Ok(match (field.name(), kind) {
        ("number_value", Value::F64(f)) => float(*f),
        ("string_value", Value::String(s)) => Json::String(s.clone()),
        ("bool_value", Value::Bool(b)) => Json::Bool(*b),
        ("struct_value" | "list_value", Value::Message(inner)) => message(inner, path)?,
        _ => Json::Null,
    })
}

fn list_value(message: &DynamicMessage, path: &mut Path) -> Result<Json, JsonError> {
    let mut array = Vec::new();
    if let Some(Value::List(values)) = message.get_field_by_name("values").as_deref() {
        for (index, value) in values.iter().enumerate() {
            path.push_index(index);
            array.push(struct_value(value, path)?);
            path.pop();
        }
    }
    Ok(Json::Array(array))
}

fn transcode<T: prost::Message + Default>(
    message: &DynamicMessage,
    path: &Path,
) -> Result<T, JsonError> {
    message
        .transcode_to()
        .map_err(|err| invalid(path, format!("malformed well-known type: {err}")))
}

fn invalid(path: &Path, reason: impl Into<String>) -> JsonError {
    JsonError::Invalid {
        path: path.render(),
        reason: reason.into(),
    }
}
