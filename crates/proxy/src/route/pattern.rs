//! Envoy's RE2 regexes, compiled with the `regex` crate once, when config arrives.
//!
//! The `regex` crate reads RE2 syntax; the one difference a route is likely to meet is that
//! `\d`, `\w`, `\s` and `\b` are Unicode-aware here and ASCII-only in RE2, which matters only
//! for non-ASCII input.

use mizzen_xds::pb::envoy::r#type::matcher::v3::{RegexMatchAndSubstitute, RegexMatcher};

use super::error::{Invalid, Problem};

/// A regex that must match the whole input (Envoy's `safe_regex` matchers).
#[derive(Debug)]
pub(crate) struct FullMatch(regex::bytes::Regex);

impl FullMatch {
    /// Compiles `m.regex`; errors name the `RegexMatcher` itself, whose one field is the regex.
    pub(crate) fn compile(m: &RegexMatcher) -> Result<FullMatch, Invalid> {
        // Checked alone first: wrapped, a pattern such as `a)|(b` would become valid.
        checked(&m.regex)?;
        regex::bytes::Regex::new(&format!("^(?:{})$", m.regex))
            .map(FullMatch)
            .map_err(|e| invalid_regex(&m.regex, e))
    }

    /// Whether the regex matches all of `value`.
    pub(crate) fn matches(&self, value: &[u8]) -> bool {
        self.0.is_match(value)
    }
}

/// A regex and what to replace its matches with (Envoy's `RegexMatchAndSubstitute`).
#[derive(Debug)]
pub(crate) struct Substitution {
    pattern: regex::Regex,
    /// The substitution in the `regex` crate's syntax: `\1` became `${1}`, `$` became `$$`.
    replacement: String,
}

impl Substitution {
    /// Compiles `s`; errors name `pattern` or `substitution`.
    pub(crate) fn compile(s: &RegexMatchAndSubstitute) -> Result<Substitution, Invalid> {
        let Some(pattern) = &s.pattern else {
            return Err(Problem::Missing.at("pattern"));
        };
        let regex = checked(&pattern.regex).map_err(|e| e.within("pattern"))?;
        let replacement =
            replacement(&s.substitution, regex.captures_len() - 1).map_err(|reason| {
                Problem::InvalidSubstitution {
                    substitution: s.substitution.clone(),
                    reason,
                }
                .at("substitution")
            })?;
        Ok(Substitution {
            pattern: regex,
            replacement,
        })
    }

    /// `input` with every match replaced, as RE2's `GlobalReplace`.
    pub(crate) fn replace_all(&self, input: &str) -> String {
        self.pattern
            .replace_all(input, self.replacement.as_str())
            .into_owned()
    }
}

fn checked(pattern: &str) -> Result<regex::Regex, Invalid> {
    regex::Regex::new(pattern).map_err(|e| invalid_regex(pattern, e))
}

fn invalid_regex(pattern: &str, e: regex::Error) -> Invalid {
    Problem::InvalidRegex {
        pattern: pattern.to_owned(),
        source: Box::new(e),
    }
    .at("")
}

/// Translates a RE2 rewrite string (`\0`..`\9` are groups, `\\` is a backslash, anything else
/// is literal) for a pattern with `groups` capture groups.
fn replacement(substitution: &str, groups: usize) -> Result<String, String> {
    let mut out = String::with_capacity(substitution.len() + 8);
    let mut chars = substitution.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => match chars.next() {
                Some('\\') => out.push('\\'),
                Some(d @ '0'..='9') => {
                    let group = d as usize - '0' as usize;
                    if group > groups {
                        return Err(format!(
                            "\\{group} refers to a group the pattern does not have ({groups} groups)"
                        ));
                    }
                    out.push_str(&format!("${{{group}}}"));
                }
                Some(other) => return Err(format!("\\{other} is not \\0-\\9 or \\\\")),
                None => return Err("ends with a lone backslash".to_owned()),
            },
            '$' => out.push_str("$$"),
            c => out.push(c),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full(re: &str) -> FullMatch {
        FullMatch::compile(&RegexMatcher {
            regex: re.to_owned(),
            ..RegexMatcher::default()
        })
        .unwrap()
    }

    fn sub(pattern: &str, substitution: &str) -> Result<Substitution, Invalid> {
        Substitution::compile(&RegexMatchAndSubstitute {
            pattern: Some(RegexMatcher {
                regex: pattern.to_owned(),
                ..RegexMatcher::default()
            }),
            substitution: substitution.to_owned(),
        })
    }

    #[test]
    fn safe_regex_must_match_the_whole_value() {
        let re = full("/api/v[0-9]+");
        assert!(re.matches(b"/api/v12"));
        assert!(!re.matches(b"/api/v12/users"));
        assert!(!re.matches(b"x/api/v1"));
        let alternation = full("a|b");
        assert!(alternation.matches(b"a"));
        assert!(!alternation.matches(b"ab"));
    }

    #[test]
    fn an_unbalanced_regex_is_refused_even_if_wrapping_would_balance_it() {
        let err = FullMatch::compile(&RegexMatcher {
            regex: "a)|(b".to_owned(),
            ..RegexMatcher::default()
        })
        .unwrap_err();
        assert!(
            matches!(err.problem, Problem::InvalidRegex { .. }),
            "{err:?}"
        );
    }

    #[test]
    fn substitutions_follow_envoys_examples() {
        let s = sub("^/service/([^/]+)(/.*)$", r"\2/instance/\1").unwrap();
        assert_eq!(s.replace_all("/service/foo/v1/api"), "/v1/api/instance/foo");
        let s = sub("one", "two").unwrap();
        assert_eq!(
            s.replace_all("/xxx/one/yyy/one/zzz"),
            "/xxx/two/yyy/two/zzz"
        );
        let s = sub("^(.*?)one(.*)$", r"\1two\2").unwrap();
        assert_eq!(
            s.replace_all("/xxx/one/yyy/one/zzz"),
            "/xxx/two/yyy/one/zzz"
        );
        let s = sub("(?i)/xxx/", "/yyy/").unwrap();
        assert_eq!(s.replace_all("/aaa/XxX/bbb"), "/aaa/yyy/bbb");
    }

    #[test]
    fn dollars_and_escaped_backslashes_are_literal() {
        let s = sub("(a)", r"$1\\\0").unwrap();
        assert_eq!(s.replace_all("xay"), r"x$1\ay");
    }

    #[test]
    fn bad_substitutions_name_the_field() {
        for (pattern, substitution) in [("(a)", r"\2"), ("a", r"\q"), ("a", "x\\")] {
            let err = sub(pattern, substitution).unwrap_err();
            assert_eq!(err.field, "substitution", "{substitution}");
            assert!(matches!(err.problem, Problem::InvalidSubstitution { .. }));
        }
        let err = sub("(", "x").unwrap_err();
        assert_eq!(err.field, "pattern");
    }
}
