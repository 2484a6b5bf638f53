//! Istio's `StringMatch`: exactly one of `exact`, `prefix` or `regex`.

use serde::{Deserialize, Serialize};

/// How a string (a path, a header, a query parameter) is matched.
///
/// An empty matcher (`{}`) is legal in Istio and constrains nothing; for a header it
/// means the header must be present.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(try_from = "RawStringMatch", into = "RawStringMatch")]
pub enum StringMatch {
    /// `{}`: any value.
    #[default]
    Any,
    /// `{exact: v}`.
    Exact(String),
    /// `{prefix: v}`.
    Prefix(String),
    /// `{regex: v}`, in RE2 syntax; validation checks it compiles.
    Regex(String),
}

impl StringMatch {
    /// The regex, when this is a regex matcher.
    pub fn regex(&self) -> Option<&str> {
        match self {
            StringMatch::Regex(r) => Some(r),
            _ => None,
        }
    }

    /// The literal or pattern, or `None` for [`StringMatch::Any`].
    pub fn value(&self) -> Option<&str> {
        match self {
            StringMatch::Any => None,
            StringMatch::Exact(v) | StringMatch::Prefix(v) | StringMatch::Regex(v) => Some(v),
        }
    }
}

#[derive(Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStringMatch {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    exact: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    prefix: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    regex: Option<String>,
}

impl TryFrom<RawStringMatch> for StringMatch {
    type Error = &'static str;

    fn try_from(raw: RawStringMatch) -> Result<Self, Self::Error> {
        match (raw.exact, raw.prefix, raw.regex) {
            (None, None, None) => Ok(StringMatch::Any),
            (Some(v), None, None) => Ok(StringMatch::Exact(v)),
            (None, Some(v), None) => Ok(StringMatch::Prefix(v)),
            (None, None, Some(v)) => Ok(StringMatch::Regex(v)),
            _ => Err("only one of exact, prefix or regex may be set"),
        }
    }
}

impl From<StringMatch> for RawStringMatch {
    fn from(m: StringMatch) -> Self {
        let mut raw = RawStringMatch::default();
        match m {
            StringMatch::Any => {}
            StringMatch::Exact(v) => raw.exact = Some(v),
            StringMatch::Prefix(v) => raw.prefix = Some(v),
            StringMatch::Regex(v) => raw.regex = Some(v),
        }
        raw
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_of_is_enforced() {
        let m: StringMatch = serde_json::from_str(r#"{"prefix":"/api"}"#).unwrap();
        assert_eq!(m, StringMatch::Prefix("/api".into()));
        let any: StringMatch = serde_json::from_str("{}").unwrap();
        assert_eq!(any, StringMatch::Any);
        let both = serde_json::from_str::<StringMatch>(r#"{"exact":"a","regex":"b"}"#);
        assert!(both.unwrap_err().to_string().contains("only one of"));
        assert_eq!(serde_json::to_string(&m).unwrap(), r#"{"prefix":"/api"}"#);
    }
}
