//! Header manipulation (`Headers`), with Istio's rules on header names and on values as
//! Envoy's header formatter reads them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::validate::Validator;

/// `Headers`: request and response header manipulation.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Headers {
    /// Applied to the request before forwarding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub request: Option<HeaderOperations>,
    /// Applied to the response before returning it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response: Option<HeaderOperations>,
}

/// `Headers.HeaderOperations`: set, append and remove headers.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HeaderOperations {
    /// Overwrite these headers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub set: BTreeMap<String, String>,
    /// Append to these headers.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub add: BTreeMap<String, String>,
    /// Remove these headers.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

fn is_internal_header(name: &str) -> bool {
    name.starts_with(':') || name.eq_ignore_ascii_case("host")
}

pub(super) fn is_authority_header(name: &str) -> bool {
    name.eq_ignore_ascii_case(":authority") || name.eq_ignore_ascii_case("host")
}

impl Headers {
    pub(super) fn check(&self, v: &mut Validator<'_>) {
        if let Some(request) = &self.request {
            v.field("request", |v| request.check(v, true));
        }
        if let Some(response) = &self.response {
            v.field("response", |v| response.check(v, false));
        }
    }
}

impl HeaderOperations {
    /// `request` allows setting and adding the authority (`:authority`/`host`).
    fn check(&self, v: &mut Validator<'_>, request: bool) {
        for (field, map) in [("set", &self.set), ("add", &self.add)] {
            v.field(field, |v| {
                for (name, value) in map {
                    v.key(name, |v| {
                        if request {
                            check_authority_operation_name(v, name);
                        } else {
                            check_operation_name(v, name);
                        }
                        check_header_value(v, value);
                    });
                }
            });
        }
        v.each("remove", &self.remove, |v, name| {
            check_operation_name(v, name)
        });
    }
}

/// `ValidateHTTPHeaderWithAuthorityOperationName`: request `set`/`add`.
fn check_authority_operation_name(v: &mut Validator<'_>, name: &str) {
    if name.is_empty() {
        v.error("header name cannot be empty");
    } else if is_internal_header(name) && !is_authority_header(name) {
        v.error(format!(
            r#"invalid header {name:?}: header cannot have ":" prefix"#
        ));
    } else {
        warn_uppercase(v, name);
    }
}

/// `ValidateHTTPHeaderOperationName`: request `remove` and every response operation.
fn check_operation_name(v: &mut Validator<'_>, name: &str) {
    if name.is_empty() {
        v.error("header name cannot be empty");
    } else if name.eq_ignore_ascii_case("host") {
        v.error(format!("invalid header {name:?}: cannot set Host header"));
    } else if is_internal_header(name) {
        v.error(format!(
            r#"invalid header {name:?}: header cannot have ":" prefix"#
        ));
    } else {
        warn_uppercase(v, name);
    }
}

fn warn_uppercase(v: &mut Validator<'_>, name: &str) {
    if name.bytes().any(|b| b.is_ascii_uppercase()) {
        v.warn(format!("header name {name:?} should be lowercase"));
    }
}

/// A header value Envoy accepts: no control characters, and `%VAR%` expressions well formed
/// (`%%` escapes a percent sign), as Envoy's header parser reads them.
fn check_header_value(v: &mut Validator<'_>, value: &str) {
    crate::validate::check_header_value(v, value);
    if let Err(e) = parse_header_value(value.as_bytes()) {
        v.error(format!("header value configuration: {e}"));
    }
}

fn parse_header_value(value: &[u8]) -> Result<(), String> {
    #[derive(PartialEq)]
    enum State {
        Literal,
        VariableName,
        ExpectArray,
        ExpectString,
        InString,
        ExpectDelimiterOrEnd,
        ExpectArgsEnd,
        ExpectVariableEnd,
    }
    let mut state = State::Literal;
    let mut pos = 0;
    while pos < value.len() {
        let ch = value[pos];
        let has_next = pos + 1 < value.len();
        match state {
            State::Literal if ch == b'%' => {
                if !has_next {
                    return Err("invalid header configuration. Un-escaped %".into());
                }
                if value[pos + 1] == b'%' {
                    pos += 1;
                } else {
                    state = State::VariableName;
                }
            }
            State::Literal => {}
            State::VariableName => match ch {
                b'%' => state = State::Literal,
                b'(' => state = State::ExpectArray,
                _ => {}
            },
            State::ExpectArray => {
                if ch == b'[' {
                    state = State::ExpectString;
                } else if ch != b' ' {
                    state = State::InString;
                }
            }
            State::ExpectDelimiterOrEnd => match ch {
                b',' => state = State::ExpectString,
                b']' => state = State::ExpectArgsEnd,
                b' ' => {}
                _ => {
                    return Err(
                        "invalid header configuration. Expecting ',', ']', or whitespace".into(),
                    );
                }
            },
            State::ExpectString => match ch {
                b'"' => state = State::InString,
                b' ' => {}
                _ => return Err("invalid header configuration. Expecting '\"'".into()),
            },
            State::InString => match ch {
                b'\\' if !has_next => {
                    return Err(
                        "invalid header configuration. Un-terminated backslash in JSON string"
                            .into(),
                    );
                }
                b'\\' => pos += 1,
                b')' => state = State::ExpectVariableEnd,
                b'"' => state = State::ExpectDelimiterOrEnd,
                _ => {}
            },
            State::ExpectArgsEnd => match ch {
                b')' => state = State::ExpectVariableEnd,
                b' ' => {}
                _ => return Err("invalid header configuration. Expecting ')' or whitespace".into()),
            },
            State::ExpectVariableEnd => match ch {
                b'%' => state = State::Literal,
                b' ' => {}
                _ => {
                    return Err(
                        "invalid header configuration. Expecting '%' or whitespace after".into(),
                    );
                }
            },
        }
        pos += 1;
    }
    if state != State::Literal {
        return Err(format!(
            "invalid header configuration. Un-terminated variable expression '{}'",
            String::from_utf8_lossy(value)
        ));
    }
    Ok(())
}
