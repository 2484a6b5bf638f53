//! Checks in the API server's words, for rules that Istio's CRD schemas state
//! (`maxItems`, `maxLength`, `type: object`, CEL rules) rather than its webhook.

use std::fmt::Display;

use super::Validator;

/// Reports a list field with more than the schema's `maxItems` entries.
pub fn check_max_items(v: &mut Validator<'_>, field: &str, len: usize, max: usize) {
    if len > max {
        v.error_at(
            field,
            format!("Too many: {len}: must have at most {max} items"),
        );
    }
}

/// Reports a failed CEL rule the way the API server words it.
pub fn cel_error(v: &mut Validator<'_>, type_name: &str, message: &str) {
    v.error(format!("Invalid value: {type_name:?}: {message}"));
}

/// Reports a string longer than the schema's `maxLength`.
pub fn check_max_len(v: &mut Validator<'_>, value: &str, max: usize) {
    if value.len() > max {
        v.error(format!("Too long: may not be more than {max} bytes"));
    }
}

/// Reports a value that is not a JSON object (the schema says `type: object`).
pub fn check_object(v: &mut Validator<'_>, value: &serde_json::Value) {
    let type_name = match value {
        serde_json::Value::Object(_) => return,
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(n) if n.is_f64() => "number",
        serde_json::Value::Number(_) => "integer",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
    };
    v.error(format!(
        "Invalid value: {type_name:?}: must be of type object"
    ));
}

/// The OpenAPI `minimum`/`maximum` checks on the number field `name`.
pub fn check_range<T: PartialOrd + Display + Copy>(
    v: &mut Validator<'_>,
    name: &str,
    value: T,
    min: T,
    max: T,
) {
    v.field(name, |v| {
        let path = v.path().to_owned();
        if value < min {
            v.error(format!(
                "Invalid value: {value}: {path} in body should be greater than or equal to {min}"
            ));
        } else if value > max {
            v.error(format!(
                "Invalid value: {value}: {path} in body should be less than or equal to {max}"
            ));
        }
    });
}
