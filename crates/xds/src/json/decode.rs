//! JSON → message, accepting what Envoy accepts in config files: proto field names or
//! their lowerCamelCase JSON names, enums by name or number, 64-bit integers as numbers
//! or strings, `Any` with `@type`, and the well-known types' special forms. Unknown
//! fields and unknown `@type`s are errors, as they are for Envoy's static config.

use std::collections::{HashMap, HashSet};

use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE};
use prost::Message;
use prost_reflect::{
    DynamicMessage, FieldDescriptor, Kind, MapKey, MessageDescriptor, ReflectMessage, Value,
};
use serde_json::{Map, Value as Json};

use super::path::Path;
use super::{JsonError, pool, wkt};

/// Reads `json` as a message of type `desc`; `path` tracks where we are for errors.
pub(crate) fn message(
    desc: &MessageDescriptor,
    json: &Json,
    path: &mut Path,
) -> Result<DynamicMessage, JsonError> {
    if let Some(wkt) = wkt::WellKnown::of(desc.full_name()) {
        return well_known(wkt, desc, json, path);
    }
    let object = expect_object(desc, json, path)?;
    let mut message = DynamicMessage::new(desc.clone());
    fields(&mut message, object.iter(), path)?;
    Ok(message)
}

fn fields<'a>(
    message: &mut DynamicMessage,
    entries: impl Iterator<Item = (&'a String, &'a Json)>,
    path: &mut Path,
) -> Result<(), JsonError> {
    let desc = message.descriptor();
    let mut seen = HashSet::new();
    let mut oneofs: HashMap<String, String> = HashMap::new();
    for (key, json) in entries {
        let Some(field) = desc
            .get_field_by_name(key)
            .or_else(|| desc.get_field_by_json_name(key))
        else {
            return Err(JsonError::UnknownField {
                path: path.render(),
                field: key.clone(),
                message: desc.full_name().to_owned(),
                hint: closest_field(&desc, key),
            });
        };
        path.push_key(key);
        if !seen.insert(field.number()) {
            return Err(invalid(
                path,
                format!("`{}` is given twice (as proto and JSON name)", field.name()),
            ));
        }
        // proto3 JSON: null means "not set", except where null is the value itself.
        if json.is_null() && !is_struct_value(&field.kind()) {
            path.pop();
            continue;
        }
        if let Some(oneof) = field.containing_oneof().filter(|o| !o.is_synthetic())
            && let Some(other) = oneofs.insert(oneof.name().to_owned(), field.name().to_owned())
        {
            return Err(invalid(
                path,
                format!(
                    "`{}` and `{other}` are both set, but oneof `{}` takes one",
                    field.name(),
                    oneof.name()
                ),
            ));
        }
        let value = field_value(&field, json, path)?;
        path.pop();
        message.set_field(&field, value);
    }
    Ok(())
}

fn field_value(field: &FieldDescriptor, json: &Json, path: &mut Path) -> Result<Value, JsonError> {
    if field.is_map() {
        let entry = field
            .kind()
            .as_message()
            .cloned()
            .expect("map fields have an entry message");
        let key_kind = entry.map_entry_key_field().kind();
        let value_kind = entry.map_entry_value_field().kind();
        let Json::Object(object) = json else {
            return Err(invalid(
                path,
                format!("expected an object, found {}", shape(json)),
            ));
        };
        let mut map = HashMap::with_capacity(object.len());
        for (key, json) in object {
            path.push_key(key);
            let key = map_key(&key_kind, key, path)?;
            let value = singular(&value_kind, json, path)?;
            path.pop();
            map.insert(key, value);
        }
        Ok(Value::Map(map))
    } else if field.is_list() {
        let Json::Array(items) = json else {
            return Err(invalid(
                path,
                format!("expected a list, found {}", shape(json)),
            ));
        };
        let kind = field.kind();
        let mut list = Vec::with_capacity(items.len());
        for (index, item) in items.iter().enumerate() {
            path.push_index(index);
            list.push(singular(&kind, item, path)?);
            path.pop();
        }
        Ok(Value::List(list))
    } else {
        singular(&field.kind(), json, path)
    }
}

fn map_key(kind: &Kind, key: &str, path: &Path) -> Result<MapKey, JsonError> {
    let bad = |what: &str| invalid(path, format!("map key `{key}` is not {what}"));
    Ok(match kind {
        Kind::String => MapKey::String(key.to_owned()),
        Kind::Bool => MapKey::Bool(key.parse().map_err(|_| bad("a bool"))?),
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => {
            MapKey::I32(key.parse().map_err(|_| bad("an int32"))?)
        }
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => {
            MapKey::I64(key.parse().map_err(|_| bad("an int64"))?)
        }
        Kind::Uint32 | Kind::Fixed32 => MapKey::U32(key.parse().map_err(|_| bad("a uint32"))?),
        Kind::Uint64 | Kind::Fixed64 => MapKey::U64(key.parse().map_err(|_| bad("a uint64"))?),
        _ => return Err(bad("of a key type")),
    })
}

fn singular(kind: &Kind, json: &Json, path: &mut Path) -> Result<Value, JsonError> {
    Ok(match kind {
        Kind::Double => Value::F64(float(json, path)?),
        Kind::Float => {
            let f = float(json, path)?;
            if f.is_finite() && f.abs() > f64::from(f32::MAX) {
                return Err(invalid(path, format!("{f} is out of range for a float")));
            }
            Value::F32(f as f32)
        }
        Kind::Int32 | Kind::Sint32 | Kind::Sfixed32 => Value::I32(integer(json, "int32", path)?),
        Kind::Int64 | Kind::Sint64 | Kind::Sfixed64 => Value::I64(integer(json, "int64", path)?),
        Kind::Uint32 | Kind::Fixed32 => Value::U32(integer(json, "uint32", path)?),
        Kind::Uint64 | Kind::Fixed64 => Value::U64(integer(json, "uint64", path)?),
        Kind::Bool => match json {
            Json::Bool(b) => Value::Bool(*b),
            other => return Err(expected("true or false", other, path)),
        },
        Kind::String => match json {
            Json::String(s) => Value::String(s.clone()),
            other => return Err(expected("a string", other, path)),
        },
        Kind::Bytes => match json {
            Json::String(s) => Value::Bytes(bytes(s, path)?.into()),
            other => return Err(expected("a base64 string", other, path)),
        },
        Kind::Enum(e) => match json {
            Json::Null if e.full_name() == "google.protobuf.NullValue" => Value::EnumNumber(0),
            Json::String(name) => match e.get_value_by_name(name) {
                Some(v) => Value::EnumNumber(v.number()),
                None => {
                    let names: Vec<_> = e.values().map(|v| v.name().to_owned()).collect();
                    return Err(invalid(
                        path,
                        format!(
                            "`{name}` is not a value of {} (one of {})",
                            e.full_name(),
                            names.join(", ")
                        ),
                    ));
                }
            },
            Json::Number(_) => Value::EnumNumber(integer(json, "enum number", path)?),
            other => return Err(expected("an enum name", other, path)),
        },
        Kind::Message(desc) => Value::Message(message(desc, json, path)?),
    })
}

fn float(json: &Json, path: &Path) -> Result<f64, JsonError> {
    match json {
        Json::Number(n) => n
            .as_f64()
            .ok_or_else(|| invalid(path, format!("{n} is not a number"))),
        Json::String(s) => match s.as_str() {
            "NaN" => Ok(f64::NAN),
            "Infinity" => Ok(f64::INFINITY),
            "-Infinity" => Ok(f64::NEG_INFINITY),
            s => s
                .trim()
                .parse()
                .map_err(|_| invalid(path, format!("`{s}` is not a number"))),
        },
        other => Err(expected("a number", other, path)),
    }
}

/// An integer given as a JSON number (`5`, `5.0`, `5e2`) or a string (`"5"`), range-checked.
fn integer<T>(json: &Json, what: &str, path: &Path) -> Result<T, JsonError>
where
    T: TryFrom<i128>,
{
    let wide: Option<i128> = match json {
        Json::Number(n) => n
            .as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
            .or_else(|| n.as_f64().and_then(integral)),
        Json::String(s) => s
            .trim()
            .parse::<i128>()
            .ok()
            .or_else(|| s.trim().parse::<f64>().ok().and_then(integral)),
        other => return Err(expected(&format!("an {what}"), other, path)),
    };
    wide.and_then(|n| T::try_from(n).ok())
        .ok_or_else(|| invalid(path, format!("{json} is not a valid {what}")))
}

fn integral(f: f64) -> Option<i128> {
    (f.is_finite() && f.fract() == 0.0 && f.abs() < 1.9e19).then_some(f as i128)
}

fn bytes(s: &str, path: &Path) -> Result<Vec<u8>, JsonError> {
    let unpadded = s.trim_end_matches('=');
    let padded = format!("{unpadded}{}", "=".repeat((4 - unpadded.len() % 4) % 4));
    STANDARD
        .decode(&padded)
        .or_else(|_| URL_SAFE.decode(&padded))
        .map_err(|err| invalid(path, format!("not base64: {err}")))
}

fn well_known(
    wkt: wkt::WellKnown,
    desc: &MessageDescriptor,
    json: &Json,
    path: &mut Path,
) -> Result<DynamicMessage, JsonError> {
    use wkt::WellKnown as W;
    let mut message = DynamicMessage::new(desc.clone());
    match wkt {
        W::Any => return any(desc, json, path),
        W::Timestamp => {
            let Json::String(text) = json else {
                return Err(expected("an RFC 3339 timestamp string", json, path));
            };
            let ts: prost_types::Timestamp = text
                .parse()
                .ok()
                .filter(wkt::timestamp_in_range)
                .ok_or_else(|| invalid(path, format!("`{text}` is not an RFC 3339 timestamp")))?;
            transcode(&mut message, &ts);
        }
        W::Duration => {
            let Json::String(text) = json else {
                return Err(expected("a duration string like \"1.5s\"", json, path));
            };
            let d: prost_types::Duration = text
                .parse()
                .ok()
                .filter(wkt::duration_in_range)
                .ok_or_else(|| {
                    invalid(path, format!("`{text}` is not a duration like \"1.5s\""))
                })?;
            transcode(&mut message, &d);
        }
        W::Struct => {
            let Json::Object(object) = json else {
                return Err(expected("an object", json, path));
            };
            message.set_field_by_name("fields", struct_fields(desc, object, path)?);
        }
        W::Value => return struct_value(desc, json, path),
        W::ListValue => {
            let Json::Array(items) = json else {
                return Err(expected("a list", json, path));
            };
            message.set_field_by_name("values", list_values(desc, items, path)?);
        }
        W::Wrapper => {
            let field = desc
                .get_field_by_name("value")
                .ok_or_else(|| invalid(path, "wrapper without a `value` field"))?;
            message.set_field(&field, singular(&field.kind(), json, path)?);
        }
        W::FieldMask => {
            let Json::String(text) = json else {
                return Err(expected("a comma-separated string", json, path));
            };
            let paths = text
                .split(',')
                .filter(|p| !p.is_empty())
                .map(|p| Value::String(wkt::camel_to_snake(p)))
                .collect();
            message.set_field_by_name("paths", Value::List(paths));
        }
        W::Empty => {
            let object = expect_object(desc, json, path)?;
            fields(&mut message, object.iter(), path)?;
        }
    }
    Ok(message)
}

fn any(
    desc: &MessageDescriptor,
    json: &Json,
    path: &mut Path,
) -> Result<DynamicMessage, JsonError> {
    let object = expect_object(desc, json, path)?;
    let mut any = DynamicMessage::new(desc.clone());
    // `{}` is an Any that is present but empty, as Envoy prints it.
    if object.is_empty() {
        return Ok(any);
    }
    let type_url = match object.get("@type") {
        Some(Json::String(url)) => url.clone(),
        Some(other) => {
            path.push_key("@type");
            return Err(expected("a type URL string", other, path));
        }
        None => return Err(invalid(path, "an Any needs `@type`")),
    };
    let Some(payload_desc) = pool::message_for_type_url(&type_url) else {
        path.push_key("@type");
        return Err(JsonError::UnknownType {
            path: path.render(),
            type_url,
        });
    };
    let rest = object.iter().filter(|(key, _)| *key != "@type");
    let payload = if wkt::WellKnown::of(payload_desc.full_name()).is_some() {
        // Well-known payloads carry their special form under `value`.
        let mut value = None;
        for (key, json) in rest {
            if key != "value" {
                return Err(JsonError::UnknownField {
                    path: path.render(),
                    field: key.clone(),
                    message: format!("Any of {}", payload_desc.full_name()),
                    hint: Some("value".into()),
                });
            }
            value = Some(json);
        }
        let value =
            value.ok_or_else(|| invalid(path, "a well-known type in an Any needs `value`"))?;
        path.push_key("value");
        let payload = message(&payload_desc, value, path)?;
        path.pop();
        payload
    } else {
        let mut payload = DynamicMessage::new(payload_desc);
        fields(&mut payload, rest, path)?;
        payload
    };
    transcode(
        &mut any,
        &prost_types::Any {
            type_url,
            value: payload.encode_to_vec(),
        },
    );
    Ok(any)
}

/// Plain JSON to `google.protobuf.Value`, whose descriptor is `desc`.
fn struct_value(
    desc: &MessageDescriptor,
    json: &Json,
    path: &mut Path,
) -> Result<DynamicMessage, JsonError> {
    let mut value = DynamicMessage::new(desc.clone());
    let (field, inner) = match json {
        Json::Null => ("null_value", Value::EnumNumber(0)),
        Json::Bool(b) => ("bool_value", Value::Bool(*b)),
        Json::Number(n) => ("number_value", Value::F64(n.as_f64().unwrap_or(f64::NAN))),
        Json::String(s) => ("string_value", Value::String(s.clone())),
        Json::Array(items) => {
            let list_desc = sibling(desc, "list_value");
            let mut list = DynamicMessage::new(list_desc.clone());
            list.set_field_by_name("values", list_values(&list_desc, items, path)?);
            ("list_value", Value::Message(list))
        }
        Json::Object(object) => {
            let struct_desc = sibling(desc, "struct_value");
            let mut fields = DynamicMessage::new(struct_desc.clone());
            fields.set_field_by_name("fields", struct_fields(&struct_desc, object, path)?);
            ("struct_value", Value::Message(fields))
        }
    };
    value.set_field_by_name(field, inner);
    Ok(value)
}

/// The message type of `field` in `google.protobuf.Value`.
fn sibling(value_desc: &MessageDescriptor, field: &str) -> MessageDescriptor {
    value_desc
        .get_field_by_name(field)
        .and_then(|f| f.kind().as_message().cloned())
        .expect("google.protobuf.Value has its struct and list fields")
}

/// `Struct.fields` from a JSON object; `struct_desc` is `google.protobuf.Struct`.
fn struct_fields(
    struct_desc: &MessageDescriptor,
    object: &Map<String, Json>,
    path: &mut Path,
) -> Result<Value, JsonError> {
    let value_desc = struct_desc
        .get_field_by_name("fields")
        .and_then(|f| f.kind().as_message().cloned())
        .map(|entry| entry.map_entry_value_field().kind())
        .and_then(|kind| kind.as_message().cloned())
        .expect("google.protobuf.Struct maps to Value");
    let mut map = HashMap::with_capacity(object.len());
    for (key, json) in object {
        path.push_key(key);
        let value = struct_value(&value_desc, json, path)?;
        path.pop();
        map.insert(MapKey::String(key.clone()), Value::Message(value));
    }
    Ok(Value::Map(map))
}

/// `ListValue.values` from a JSON array; `list_desc` is `google.protobuf.ListValue`.
fn list_values(
    list_desc: &MessageDescriptor,
    items: &[Json],
    path: &mut Path,
) -> Result<Value, JsonError> {
    let value_desc = list_desc
        .get_field_by_name("values")
        .and_then(|f| f.kind().as_message().cloned())
        .expect("google.protobuf.ListValue holds Values");
    let mut list = Vec::with_capacity(items.len());
    for (index, json) in items.iter().enumerate() {
        path.push_index(index);
        list.push(Value::Message(struct_value(&value_desc, json, path)?));
        path.pop();
    }
    Ok(Value::List(list))
}

fn is_struct_value(kind: &Kind) -> bool {
    kind.as_message()
        .is_some_and(|m| m.full_name() == "google.protobuf.Value")
}

fn transcode<T: Message>(message: &mut DynamicMessage, value: &T) {
    message
        .transcode_from(value)
        .expect("a well-known type transcodes to its own descriptor");
}

fn expect_object<'a>(
    desc: &MessageDescriptor,
    json: &'a Json,
    path: &Path,
) -> Result<&'a Map<String, Json>, JsonError> {
    match json {
        Json::Object(object) => Ok(object),
        other => Err(expected(
            &format!("an object for {}", desc.full_name()),
            other,
            path,
        )),
    }
}

/// The field of `desc` nearest to the unknown `key` by edit distance, if one is close.
fn closest_field(desc: &MessageDescriptor, key: &str) -> Option<String> {
    let wanted = wkt::camel_to_snake(key);
    desc.fields()
        .map(|f| (edit_distance(&wanted, f.name()), f.name().to_owned()))
        .filter(|(distance, name)| *distance <= (name.len() / 3).max(1))
        .min()
        .map(|(_, name)| name)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let substitute = diagonal + usize::from(ca != *cb);
            diagonal = row[j + 1];
            row[j + 1] = substitute.min(row[j] + 1).min(diagonal + 1);
        }
    }
    row[b.len()]
}

fn shape(json: &Json) -> &'static str {
    match json {
        Json::Null => "null",
        Json::Bool(_) => "a bool",
        Json::Number(_) => "a number",
        Json::String(_) => "a string",
        Json::Array(_) => "a list",
        Json::Object(_) => "an object",
    }
}

fn expected(what: &str, found: &Json, path: &Path) -> JsonError {
    invalid(path, format!("expected {what}, found {}", shape(found)))
}

fn invalid(path: &Path, reason: impl Into<String>) -> JsonError {
    JsonError::Invalid {
        path: path.render(),
        reason: reason.into(),
    }
}
