//! Envoy's matchers of dynamic metadata (`MetadataMatcher`, `ValueMatcher`), compiled:
//! RBAC's `metadata` rules and ext_authz's `filter_enabled_metadata` use them.

use mizzen_xds::pb::envoy::r#type::matcher::v3::{
    DoubleMatcher, ListMatcher, MetadataMatcher, ValueMatcher, double_matcher, list_matcher,
    metadata_matcher::path_segment::Segment, value_matcher::MatchPattern,
};
use serde_json::Value;

use super::Metadata;
use crate::route::{Invalid, Problem, StringMatch, Within};

/// A `MetadataMatcher`: the value at a path in one filter's metadata, tested.
#[derive(Debug)]
pub(crate) struct MetadataMatch {
    filter: String,
    path: Vec<String>,
    value: ValueMatch,
    invert: bool,
}

impl MetadataMatch {
    /// Compiles `m`; errors name fields within it.
    pub(crate) fn compile(m: &MetadataMatcher) -> Result<MetadataMatch, Invalid> {
        if m.filter.is_empty() {
            return Err(Problem::invalid("must not be empty").at("filter"));
        }
        if m.path.is_empty() {
            return Err(Problem::invalid("must have at least one key").at("path"));
        }
        let path = m
            .path
            .iter()
            .enumerate()
            .map(|(i, segment)| match &segment.segment {
                Some(Segment::Key(key)) if !key.is_empty() => Ok(key.clone()),
                _ => Err(Problem::invalid("must be a non-empty key").at(format!("path[{i}]"))),
            })
            .collect::<Result<_, _>>()?;
        let value = m
            .value
            .as_ref()
            .ok_or_else(|| Problem::Missing.at("value"))?;
        Ok(MetadataMatch {
            filter: m.filter.clone(),
            path,
            value: ValueMatch::compile(value).within("value")?,
            invert: m.invert,
        })
    }

    /// Whether the request's metadata matches (a missing value matches only tests that
    /// expect nothing, then `invert` applies).
    pub(crate) fn matches(&self, metadata: &Metadata) -> bool {
        self.value
            .matches(metadata.lookup(&self.filter, &self.path))
            != self.invert
    }
}

/// A `ValueMatcher`, compiled.
#[derive(Debug)]
enum ValueMatch {
    Null,
    Double(DoubleTest),
    String(StringMatch),
    Bool(bool),
    /// Envoy's `present_match`: true matches any value that is set; false matches none.
    Present(bool),
    /// A list with an element that matches.
    OneOf(Box<ValueMatch>),
    Or(Vec<ValueMatch>),
}

#[derive(Debug)]
enum DoubleTest {
    Exact(f64),
    /// `[start, end)`.
    Range(f64, f64),
}

impl ValueMatch {
    fn compile(m: &ValueMatcher) -> Result<ValueMatch, Invalid> {
        Ok(match &m.match_pattern {
            None => return Err(Problem::Missing.at("match_pattern")),
            Some(MatchPattern::NullMatch(_)) => ValueMatch::Null,
            Some(MatchPattern::DoubleMatch(d)) => {
                ValueMatch::Double(DoubleTest::compile(d).within("double_match")?)
            }
            Some(MatchPattern::StringMatch(s)) => {
                ValueMatch::String(StringMatch::compile(s).within("string_match")?)
            }
            Some(MatchPattern::BoolMatch(b)) => ValueMatch::Bool(*b),
            Some(MatchPattern::PresentMatch(p)) => ValueMatch::Present(*p),
            Some(MatchPattern::ListMatch(list)) => {
                ValueMatch::OneOf(Box::new(one_of(list).within("list_match")?))
            }
            Some(MatchPattern::OrMatch(or)) => ValueMatch::Or(
                or.value_matchers
                    .iter()
                    .enumerate()
                    .map(|(i, v)| {
                        ValueMatch::compile(v).within(&format!("or_match.value_matchers[{i}]"))
                    })
                    .collect::<Result<_, _>>()?,
            ),
        })
    }

    fn matches(&self, value: Option<&Value>) -> bool {
        match (self, value) {
            (ValueMatch::Present(present), value) => *present && value.is_some(),
            (_, None) => false,
            (ValueMatch::Null, Some(v)) => v.is_null(),
            (ValueMatch::Double(test), Some(v)) => v.as_f64().is_some_and(|n| test.matches(n)),
            (ValueMatch::String(m), Some(v)) => v.as_str().is_some_and(|s| m.matches(s.as_bytes())),
            (ValueMatch::Bool(b), Some(v)) => v.as_bool() == Some(*b),
            (ValueMatch::OneOf(m), Some(v)) => v
                .as_array()
                .is_some_and(|items| items.iter().any(|item| m.matches(Some(item)))),
            (ValueMatch::Or(ms), v) => ms.iter().any(|m| m.matches(v)),
        }
    }
}

fn one_of(list: &ListMatcher) -> Result<ValueMatch, Invalid> {
    match &list.match_pattern {
        Some(list_matcher::MatchPattern::OneOf(v)) => ValueMatch::compile(v).within("one_of"),
        None => Err(Problem::Missing.at("one_of")),
    }
}

impl DoubleTest {
    fn compile(d: &DoubleMatcher) -> Result<DoubleTest, Invalid> {
        match &d.match_pattern {
            Some(double_matcher::MatchPattern::Exact(x)) => Ok(DoubleTest::Exact(*x)),
            Some(double_matcher::MatchPattern::Range(r)) => Ok(DoubleTest::Range(r.start, r.end)),
            None => Err(Problem::Missing.at("match_pattern")),
        }
    }

    fn matches(&self, n: f64) -> bool {
        match *self {
            DoubleTest::Exact(x) => n == x,
            DoubleTest::Range(start, end) => start <= n && n < end,
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const JWT: &str = "envoy.filters.http.jwt_authn";

    fn compile(yaml: &str) -> MetadataMatch {
        let m: MetadataMatcher = mizzen_xds::json::from_yaml(yaml).unwrap();
        MetadataMatch::compile(&m).unwrap()
    }

    fn payload(value: Value) -> Metadata {
        let mut m = Metadata::default();
        m.set(JWT, "payload", value);
        m
    }

    #[test]
    fn strings_match_strings_only() {
        let m = compile(
            "filter: envoy.filters.http.jwt_authn\npath: [{key: payload}, {key: iss}]\nvalue: {string_match: {exact: issuer}}",
        );
        assert!(m.matches(&payload(json!({"iss": "issuer"}))));
        assert!(!m.matches(&payload(json!({"iss": "issuer2"}))));
        assert!(!m.matches(&payload(json!({"iss": ["issuer"]}))));
        assert!(!m.matches(&payload(json!({}))));
        assert!(!m.matches(&Metadata::default()));
    }

    #[test]
    fn lists_match_by_one_element_and_or_takes_either_shape() {
        // Istio's audience rule: a string or a list holding it.
        let m = compile(
            "filter: envoy.filters.http.jwt_authn\npath: [{key: payload}, {key: aud}]\nvalue: {or_match: {value_matchers: [{string_match: {exact: a}}, {list_match: {one_of: {string_match: {exact: a}}}}]}}",
        );
        assert!(m.matches(&payload(json!({"aud": "a"}))));
        assert!(m.matches(&payload(json!({"aud": ["b", "a"]}))));
        assert!(!m.matches(&payload(json!({"aud": ["b"]}))));
        assert!(!m.matches(&payload(json!({}))));
    }

    #[test]
    fn presence_null_bool_double_and_invert() {
        let path = "filter: f\npath: [{key: k}]\n";
        let with = |v: Value| {
            let mut m = Metadata::default();
            m.set("f", "k", v);
            m
        };
        let present = compile(&format!("{path}value: {{present_match: true}}"));
        assert!(present.matches(&with(json!(null))));
        assert!(!present.matches(&Metadata::default()));
        // Envoy's present_match: false matches nothing.
        let absent = compile(&format!("{path}value: {{present_match: false}}"));
        assert!(!absent.matches(&Metadata::default()));
        assert!(!absent.matches(&with(json!(1))));
        let null = compile(&format!("{path}value: {{null_match: {{}}}}"));
        assert!(null.matches(&with(json!(null))) && !null.matches(&with(json!(0))));
        let boolean = compile(&format!("{path}value: {{bool_match: true}}"));
        assert!(boolean.matches(&with(json!(true))) && !boolean.matches(&with(json!("true"))));
        let range = compile(&format!(
            "{path}value: {{double_match: {{range: {{start: 1, end: 2}}}}}}"
        ));
        assert!(range.matches(&with(json!(1))) && range.matches(&with(json!(1.5))));
        assert!(!range.matches(&with(json!(2))));
        let inverted = compile(&format!(
            "{path}value: {{string_match: {{exact: x}}}}\ninvert: true"
        ));
        assert!(!inverted.matches(&with(json!("x"))));
        assert!(inverted.matches(&with(json!("y"))));
        assert!(inverted.matches(&Metadata::default()));
    }

    #[test]
    fn bad_matchers_name_the_field() {
        let m: MetadataMatcher = mizzen_xds::json::from_yaml(
            "filter: f\npath: [{key: k}]\nvalue: {string_match: {safe_regex: {regex: '('}}}",
        )
        .unwrap();
        let e = MetadataMatch::compile(&m).unwrap_err();
        assert_eq!(e.field, "value.string_match.safe_regex");
        let m: MetadataMatcher =
            mizzen_xds::json::from_yaml("filter: f\nvalue: {present_match: true}").unwrap();
        assert_eq!(MetadataMatch::compile(&m).unwrap_err().field, "path");
    }
}
