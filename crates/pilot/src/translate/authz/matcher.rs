//! The Envoy matchers authorization rules are made of, in Istio's shapes (its
//! `security/authz/matcher` package): `*` is "present"/`.+`, a leading `*` a suffix, a
//! trailing `*` a prefix, anything else exact.

use mizzen_xds::pb::envoy::config::route::v3::{HeaderMatcher, header_matcher};
use mizzen_xds::pb::envoy::r#type::matcher::v3::{
    ListMatcher, MetadataMatcher, OrMatcher, PathMatcher, RegexMatcher, StringMatcher,
    ValueMatcher, list_matcher, metadata_matcher, path_matcher, string_matcher::MatchPattern,
    value_matcher,
};

/// The filter whose dynamic metadata holds verified JWT payloads.
pub(crate) const JWT_FILTER: &str = "envoy.filters.http.jwt_authn";
/// The key of the payload in [`JWT_FILTER`]'s metadata.
pub(crate) const JWT_PAYLOAD: &str = "payload";

/// A regex string matcher (RE2 syntax; Istio no longer names the engine).
pub(crate) fn regex(regex: impl Into<String>) -> StringMatcher {
    pattern(
        MatchPattern::SafeRegex(RegexMatcher {
            regex: regex.into(),
            ..RegexMatcher::default()
        }),
        false,
    )
}

/// An exact string matcher.
pub(crate) fn exact(value: impl Into<String>, ignore_case: bool) -> StringMatcher {
    pattern(MatchPattern::Exact(value.into()), ignore_case)
}

/// A prefix string matcher.
pub(crate) fn prefix(value: impl Into<String>, ignore_case: bool) -> StringMatcher {
    pattern(MatchPattern::Prefix(value.into()), ignore_case)
}

/// A suffix string matcher.
pub(crate) fn suffix(value: impl Into<String>, ignore_case: bool) -> StringMatcher {
    pattern(MatchPattern::Suffix(value.into()), ignore_case)
}

fn pattern(p: MatchPattern, ignore_case: bool) -> StringMatcher {
    StringMatcher {
        match_pattern: Some(p),
        ignore_case,
    }
}

/// Matches anything non-empty (`.+`).
pub(crate) fn any_value() -> StringMatcher {
    regex(".+")
}

/// Istio's `StringMatcher`: `*` → `.+`, `*x` → suffix, `x*` → prefix, else exact.
pub(crate) fn string(value: &str) -> StringMatcher {
    with_prefix(value, "")
}

/// Istio's `StringMatcherWithPrefix`: as [`string`] with `prefix` put before the value
/// (ignored for `*`); a suffix match with a prefix becomes a regex, the rest quoted.
pub(crate) fn with_prefix(value: &str, prefix_text: &str) -> StringMatcher {
    if value == "*" {
        return any_value();
    }
    if let Some(rest) = value.strip_prefix('*') {
        if prefix_text.is_empty() {
            return suffix(rest, false);
        }
        return regex(format!("{}.*{}", quote_meta(prefix_text), quote_meta(rest)));
    }
    if let Some(head) = value.strip_suffix('*') {
        return prefix(format!("{prefix_text}{head}"), false);
    }
    exact(format!("{prefix_text}{value}"), false)
}

/// Go's `regexp.QuoteMeta`: escapes every regex metacharacter.
pub(crate) fn quote_meta(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        if r"\.+*?()|[]{}^$".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// A header matcher: `*` means present, `*x` suffix, `x*` prefix, else exact.
pub(crate) fn header(name: &str, value: &str, ignore_case: bool) -> HeaderMatcher {
    let specifier = if value == "*" {
        header_matcher::HeaderMatchSpecifier::PresentMatch(true)
    } else if let Some(rest) = value.strip_prefix('*') {
        header_matcher::HeaderMatchSpecifier::StringMatch(suffix(rest, ignore_case))
    } else if let Some(head) = value.strip_suffix('*') {
        header_matcher::HeaderMatchSpecifier::StringMatch(prefix(head, ignore_case))
    } else {
        header_matcher::HeaderMatchSpecifier::StringMatch(exact(value, ignore_case))
    };
    HeaderMatcher {
        name: name.to_owned(),
        header_match_specifier: Some(specifier),
        ..HeaderMatcher::default()
    }
}

/// Istio's `HeaderMatcherWithRegex`: matches `value` as one element of a
/// comma-separated header (RFC 7230 list syntax).
// Istio writes the deprecated (still served) `safe_regex_match`.
#[allow(deprecated)]
pub(crate) fn inline_header(name: &str, value: &str) -> HeaderMatcher {
    if value == "*" {
        return header(name, value, false);
    }
    let re = if let Some(rest) = value.strip_prefix('*') {
        format!(".*{}", quote_meta(rest))
    } else if let Some(head) = value.strip_suffix('*') {
        format!("{}.*", quote_meta(head))
    } else {
        quote_meta(value)
    };
    HeaderMatcher {
        name: name.to_owned(),
        header_match_specifier: Some(header_matcher::HeaderMatchSpecifier::SafeRegexMatch(
            RegexMatcher {
                regex: format!("^{re}$|^{re},.*|.*,{re},.*|.*,{re}$"),
                ..RegexMatcher::default()
            },
        )),
        ..HeaderMatcher::default()
    }
}

/// A path matcher.
pub(crate) fn path(value: &str) -> PathMatcher {
    PathMatcher {
        rule: Some(path_matcher::Rule::Path(string(value))),
    }
}

/// A value matcher holding a string matcher.
pub(crate) fn string_value(m: StringMatcher) -> ValueMatcher {
    ValueMatcher {
        match_pattern: Some(value_matcher::MatchPattern::StringMatch(m)),
    }
}

/// One of `matchers`: the matcher itself when alone, else an OR.
pub(crate) fn or_values(mut matchers: Vec<ValueMatcher>) -> ValueMatcher {
    if matchers.len() == 1 {
        return matchers.remove(0);
    }
    ValueMatcher {
        match_pattern: Some(value_matcher::MatchPattern::OrMatch(OrMatcher {
            value_matchers: matchers,
        })),
    }
}

/// Any of `values` as strings, each in Istio's string syntax.
pub(crate) fn string_or(values: &[String]) -> ValueMatcher {
    or_values(values.iter().map(|v| string_value(string(v))).collect())
}

/// A list matcher: one element matches `value`.
pub(crate) fn list_one_of(value: ValueMatcher) -> ValueMatcher {
    ValueMatcher {
        match_pattern: Some(value_matcher::MatchPattern::ListMatch(Box::new(
            ListMatcher {
                match_pattern: Some(list_matcher::MatchPattern::OneOf(Box::new(value))),
            },
        ))),
    }
}

/// A metadata matcher on `filter`'s metadata at the key path `keys`.
pub(crate) fn metadata(filter: &str, keys: &[&str], value: ValueMatcher) -> MetadataMatcher {
    MetadataMatcher {
        filter: filter.to_owned(),
        path: keys
            .iter()
            .map(|k| metadata_matcher::PathSegment {
                segment: Some(metadata_matcher::path_segment::Segment::Key(
                    (*k).to_owned(),
                )),
            })
            .collect(),
        value: Some(value),
        ..MetadataMatcher::default()
    }
}

/// A JWT claim matched whether it holds a list or a single value (Istio's
/// `MetadataListValueMatcherForJWTClaims`): `claims` is the nested claim path.
pub(crate) fn jwt_claim_list(claims: &[String], value: ValueMatcher) -> MetadataMatcher {
    let mut keys = vec![JWT_PAYLOAD];
    keys.extend(claims.iter().map(String::as_str));
    let either = or_values_always(vec![list_one_of(value.clone()), value]);
    metadata(JWT_FILTER, &keys, either)
}

/// An OR even of one matcher (the list-or-scalar form always has two).
fn or_values_always(matchers: Vec<ValueMatcher>) -> ValueMatcher {
    ValueMatcher {
        match_pattern: Some(value_matcher::MatchPattern::OrMatch(OrMatcher {
            value_matchers: matchers,
        })),
    }
}

/// One JWT claim (`iss`, `sub`) matched as a string.
pub(crate) fn jwt_claim(claim: &str, m: StringMatcher) -> MetadataMatcher {
    metadata(JWT_FILTER, &[JWT_PAYLOAD, claim], string_value(m))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcards_follow_istio() {
        assert_eq!(string("*"), any_value());
        assert_eq!(string("*.x"), suffix(".x", false));
        assert_eq!(string("x.*"), prefix("x.", false));
        assert_eq!(
            with_prefix("*a[0]", "spiffe://"),
            regex(r"spiffe://.*a\[0\]")
        );
        assert_eq!(with_prefix("a*", "spiffe://"), prefix("spiffe://a", false));
        assert_eq!(quote_meta("a.b[c]"), r"a\.b\[c\]");
    }
}
