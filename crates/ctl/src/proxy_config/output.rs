//! `-o json` and `-o yaml`: resources printed as istioctl prints them, JSON indented by
//! four spaces, YAML as Go's `sigs.k8s.io/yaml` writes it (block style, keys sorted,
//! lists flush with their key, strings quoted only when they would read back as
//! something else).

use serde_json::Value;

/// `value` as JSON indented by four spaces, ending in a newline.
pub(crate) fn json(value: &Value) -> String {
    // Pretty JSON indents by two; strings cannot hold raw newlines, so every line's
    // leading spaces are indentation and doubling them gives four.
    let pretty = serde_json::to_string_pretty(value).unwrap_or_default();
    let mut out = String::with_capacity(pretty.len() * 2);
    for line in pretty.lines() {
        let body = line.trim_start_matches(' ');
        push_indent(&mut out, 2 * (line.len() - body.len()));
        out.push_str(body);
        out.push('\n');
    }
    out
}

/// `value` as a YAML document.
pub(crate) fn yaml(value: &Value) -> String {
    let mut out = String::new();
    match value {
        Value::Object(map) if !map.is_empty() => mapping(&mut out, map, 0),
        Value::Array(items) if !items.is_empty() => sequence(&mut out, items, 0),
        other => {
            out.push_str(&inline(other));
            out.push('\n');
        }
    }
    out
}

/// A value that fits on its key's line: a scalar or an empty collection.
fn inline(value: &Value) -> String {
    match value {
        Value::Null => "null".into(),
        Value::Bool(b) => b.to_string(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => string(s),
        Value::Array(_) => "[]".into(),
        Value::Object(_) => "{}".into(),
    }
}

fn is_block(value: &Value) -> bool {
    match value {
        Value::Array(items) => !items.is_empty(),
        Value::Object(map) => !map.is_empty(),
        _ => false,
    }
}

fn mapping(out: &mut String, map: &serde_json::Map<String, Value>, indent: usize) {
    for (i, (key, value)) in map.iter().enumerate() {
        // The first key of a mapping inside a list item sits on the `- ` line.
        if i > 0 || !out.ends_with("- ") {
            push_indent(out, indent);
        }
        out.push_str(&string(key));
        out.push(':');
        match value {
            Value::Object(inner) if !inner.is_empty() => {
                out.push('\n');
                mapping(out, inner, indent + 2);
            }
            Value::Array(items) if !items.is_empty() => {
                out.push('\n');
                sequence(out, items, indent);
            }
            scalar => {
                out.push(' ');
                out.push_str(&inline(scalar));
                out.push('\n');
            }
        }
    }
}

fn sequence(out: &mut String, items: &[Value], indent: usize) {
    for item in items {
        if !out.ends_with("- ") {
            push_indent(out, indent);
        }
        out.push_str("- ");
        match item {
            Value::Object(map) if is_block(item) => mapping(out, map, indent + 2),
            Value::Array(inner) if is_block(item) => sequence(out, inner, indent + 2),
            scalar => {
                out.push_str(&inline(scalar));
                out.push('\n');
            }
        }
    }
}

fn push_indent(out: &mut String, indent: usize) {
    out.extend(std::iter::repeat_n(' ', indent));
}

/// A string as a YAML scalar: plain when YAML reads it back as this string, single-
/// quoted when only its first character or a `: `/` #` would confuse a reader, and
/// double-quoted when it would read back as another type or holds control characters.
fn string(s: &str) -> String {
    if s.is_empty() || reads_as_other_type(s) || s.chars().any(|c| c.is_control()) {
        return serde_json::to_string(s).unwrap_or_default();
    }
    if needs_quotes(s) {
        return format!("'{}'", s.replace('\'', "''"));
    }
    s.to_owned()
}

/// Whether plain `s` would be read by YAML 1.1 (Go's reader) as a bool, null, number
/// or timestamp.
fn reads_as_other_type(s: &str) -> bool {
    const WORDS: [&str; 22] = [
        "y", "Y", "yes", "Yes", "YES", "n", "N", "no", "No", "NO", "true", "True", "TRUE", "false",
        "False", "FALSE", "on", "On", "ON", "off", "Off", "OFF",
    ];
    if WORDS.contains(&s) || matches!(s, "~" | "null" | "Null" | "NULL") {
        return true;
    }
    let unsigned = s.strip_prefix(['-', '+']).unwrap_or(s);
    if matches!(unsigned.to_ascii_lowercase().as_str(), ".inf" | ".nan") {
        return true;
    }
    let digits = unsigned.replace('_', "");
    let number = digits.parse::<f64>().is_ok() && !digits.starts_with(['i', 'I', 'n', 'N'])
        || digits
            .strip_prefix("0x")
            .is_some_and(|h| !h.is_empty() && h.chars().all(|c| c.is_ascii_hexdigit()))
        || digits
            .strip_prefix("0b")
            .is_some_and(|b| !b.is_empty() && b.chars().all(|c| c == '0' || c == '1'))
        // Base-60 numbers (`1:30`) are numbers to YAML 1.1.
        || (digits.contains(':')
            && digits
                .split(':')
                .all(|part| !part.is_empty() && part.chars().all(|c| c.is_ascii_digit())));
    number || is_timestamp(s)
}

/// `2023-05-15`, `2023-05-15T01:32:52Z`, `2023-05-15 01:32:52.262Z`…
fn is_timestamp(s: &str) -> bool {
    let b = s.as_bytes();
    let digits =
        |r: std::ops::Range<usize>| b.get(r).is_some_and(|d| d.iter().all(u8::is_ascii_digit));
    if !(digits(0..4) && b.get(4) == Some(&b'-')) {
        return false;
    }
    let rest = &s[5..];
    let (date, time) = rest.split_once(['T', 't', ' ']).unwrap_or((rest, ""));
    let date_ok = date.split('-').count() == 2
        && date
            .split('-')
            .all(|p| (1..=2).contains(&p.len()) && p.bytes().all(|c| c.is_ascii_digit()));
    let time_ok = time.is_empty()
        || time.bytes().all(|c| {
            c.is_ascii_digit() || matches!(c, b':' | b'.' | b'Z' | b'z' | b'+' | b'-' | b' ')
        }) && time.contains(':');
    date_ok && time_ok
}

/// Whether plain `s` would be misread: an indicator first, `: ` or ` #` inside, a
/// trailing `:`, or spaces at either end.
fn needs_quotes(s: &str) -> bool {
    let first = s.chars().next().unwrap_or(' ');
    let second = s.chars().nth(1);
    let starts_badly = matches!(
        first,
        '#' | ','
            | '['
            | ']'
            | '{'
            | '}'
            | '&'
            | '*'
            | '!'
            | '|'
            | '>'
            | '\''
            | '"'
            | '%'
            | '@'
            | '`'
    ) || (matches!(first, '-' | '?' | ':') && second.is_none_or(|c| c == ' '));
    starts_badly
        || s.starts_with("---")
        || s.starts_with("...")
        || s.contains(": ")
        || s.contains(" #")
        || s.ends_with(':')
        || s.starts_with(' ')
        || s.ends_with(' ')
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn json_is_indented_by_four_spaces() {
        assert_eq!(
            json(&json!([{"a": 1}])),
            "[\n    {\n        \"a\": 1\n    }\n]\n"
        );
        assert_eq!(json(&json!([])), "[]\n");
    }

    #[test]
    fn yaml_lists_sit_flush_with_their_key() {
        let value = json!([{
            "cluster_name": "outbound|80||web.default.svc.cluster.local",
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "10.0.0.1", "port_value": 80}}, "health_check_config": {}}}],
                           "locality": {}}],
            "domains": ["*", "web"],
            "nested": [[1, 2], []]
        }]);
        assert_eq!(
            yaml(&value),
            "\
- cluster_name: outbound|80||web.default.svc.cluster.local
  domains:
  - '*'
  - web
  endpoints:
  - lb_endpoints:
    - endpoint:
        address:
          socket_address:
            address: 10.0.0.1
            port_value: 80
        health_check_config: {}
    locality: {}
  nested:
  - - 1
    - 2
  - []
"
        );
        assert_eq!(yaml(&json!([])), "[]\n");
    }

    #[test]
    fn yaml_quotes_only_strings_that_would_read_back_differently() {
        let cases = [
            ("type.googleapis.com/x", "type.googleapis.com/x"),
            ("@type", "'@type'"),
            ("", "\"\""),
            ("1605", "\"1605\""),
            ("0.250s", "0.250s"),
            ("true", "\"true\""),
            ("on", "\"on\""),
            ("2022-12-08T11:03:53.361Z", "\"2022-12-08T11:03:53.361Z\""),
            ("2022-12-08T09:07:09Z/10", "2022-12-08T09:07:09Z/10"),
            ("{\"a\":1}", "'{\"a\":1}'"),
            ("it's: odd", "'it''s: odd'"),
            ("a\nb", "\"a\\nb\""),
            ("-", "'-'"),
            ("-1", "\"-1\""),
            ("-x", "-x"),
            (":8000/*", ":8000/*"),
            ("1:30", "\"1:30\""),
            ("fd00::1", "fd00::1"),
            ("[::1]:80", "'[::1]:80'"),
        ];
        for (s, want) in cases {
            assert_eq!(string(s), want, "{s:?}");
        }
    }
}
