//! Envoy's URI template path matcher (`envoy.path.match.uri_template`), which Istio
//! emits for `{*}` and `{**}` in AuthorizationPolicy paths: `*` is one path segment,
//! `**` any number of them (slashes included), `{name}` and `{name=…}` bind the same
//! patterns. Compiled to one anchored regex, as Envoy compiles it.

use mizzen_xds::pb::envoy::extensions::path::r#match::uri_template::v3::UriTemplateMatchConfig;
use mizzen_xds::pb::google::protobuf::Any;
use prost::{Message, Name};

use crate::route::{Invalid, Problem};

/// What one segment of `*` may hold: RFC 3986's unreserved and sub-delimiter
/// characters, `:`, `@` and percent-escapes, as in Envoy.
const SEGMENT: &str = r"[a-zA-Z0-9\-._~%!$&'()+,;:@=]+";
/// What `**` may hold: the same, with slashes, and possibly nothing.
const SEGMENTS: &str = r"[a-zA-Z0-9\-._~%!$&'()+,;:@=/]*";

/// A compiled `UriTemplateMatchConfig`.
#[derive(Debug)]
pub(crate) struct UriTemplate(regex::Regex);

impl UriTemplate {
    /// Compiles a template given as an `Any`; errors name fields within it.
    pub(crate) fn from_any(any: &Any) -> Result<UriTemplate, Invalid> {
        let type_name = any.type_url.rsplit('/').next().unwrap_or_default();
        if type_name != UriTemplateMatchConfig::full_name() {
            return Err(Problem::invalid(format!(
                "expected {}, not {:?}",
                UriTemplateMatchConfig::full_name(),
                any.type_url
            ))
            .at("@type"));
        }
        let config = UriTemplateMatchConfig::decode(any.value.as_slice())
            .map_err(|e| Problem::invalid(format!("cannot decode: {e}")).at(""))?;
        UriTemplate::compile(&config.path_template)
            .map_err(|reason| Problem::invalid(reason).at("path_template"))
    }

    /// Compiles `template`; errors say what is wrong with it.
    pub(crate) fn compile(template: &str) -> Result<UriTemplate, String> {
        let Some(rest) = template.strip_prefix('/') else {
            return Err(format!("{template:?} does not start with '/'"));
        };
        let mut regex = String::from("^/");
        let mut seen_segments = false;
        for (i, segment) in split_segments(rest)?.into_iter().enumerate() {
            if i > 0 {
                regex.push('/');
            }
            let pattern = match segment.strip_prefix('{').and_then(|s| s.strip_suffix('}')) {
                Some(variable) => match variable.split_once('=') {
                    Some((name, inner)) => {
                        check_name(name, template)?;
                        inner.to_owned()
                    }
                    None => {
                        check_name(variable, template)?;
                        "*".to_owned()
                    }
                },
                None => segment.to_owned(),
            };
            for (j, part) in pattern.split('/').enumerate() {
                if j > 0 {
                    regex.push('/');
                }
                match part {
                    "*" if seen_segments => {
                        return Err(format!("{template:?}: '*' may not follow '**'"));
                    }
                    "*" => regex.push_str(SEGMENT),
                    "**" if seen_segments => {
                        return Err(format!("{template:?}: '**' may appear once"));
                    }
                    "**" => {
                        seen_segments = true;
                        regex.push_str(SEGMENTS);
                    }
                    literal if literal.contains(['*', '{', '}']) => {
                        return Err(format!("{template:?}: invalid segment {literal:?}"));
                    }
                    literal => regex.push_str(&regex::escape(literal)),
                }
            }
        }
        regex.push('$');
        regex::Regex::new(&regex)
            .map(UriTemplate)
            .map_err(|e| format!("{template:?}: {e}"))
    }

    /// Whether `path` (without its query) matches.
    pub(crate) fn matches(&self, path: &str) -> bool {
        self.0.is_match(path)
    }
}

/// The template's segments, a variable's `=…` (which may hold slashes) kept whole.
fn split_segments(rest: &str) -> Result<Vec<&str>, String> {
    let mut segments = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    for (i, c) in rest.char_indices() {
        match c {
            '{' if depth == 0 => depth = 1,
            '}' if depth == 1 => depth = 0,
            '{' | '}' => return Err(format!("unbalanced braces in {rest:?}")),
            '/' if depth == 0 => {
                segments.push(&rest[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    if depth != 0 {
        return Err(format!("unbalanced braces in {rest:?}"));
    }
    segments.push(&rest[start..]);
    Ok(segments)
}

fn check_name(name: &str, template: &str) -> Result<(), String> {
    let valid = !name.is_empty()
        && name.len() <= 16
        && name.starts_with(|c: char| c.is_ascii_alphabetic())
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    if valid {
        Ok(())
    } else {
        Err(format!("{template:?}: invalid variable name {name:?}"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn template(t: &str) -> UriTemplate {
        UriTemplate::compile(t).unwrap()
    }

    #[test]
    fn one_star_is_one_segment() {
        let t = template("/path/template/*");
        assert!(t.matches("/path/template/a"));
        assert!(!t.matches("/path/template/"));
        assert!(!t.matches("/path/template/a/b"));
        assert!(!t.matches("/path/templatex/a"));
    }

    #[test]
    fn two_stars_are_any_number_of_segments() {
        let t = template("/**/path/template");
        assert!(t.matches("/a/path/template"));
        assert!(t.matches("/a/b/c/path/template"));
        assert!(!t.matches("/a/path/template/x"));
        let tail = template("/api/**");
        assert!(tail.matches("/api/"));
        assert!(tail.matches("/api/v1/users"));
        assert!(!tail.matches("/apix"));
    }

    #[test]
    fn variables_bind_the_same_patterns() {
        let t = template("/users/{id}/books/{rest=**}");
        assert!(t.matches("/users/42/books/a/b"));
        assert!(!t.matches("/users/4/2/books/a"));
        let literal = template("/v/{name=a/*}");
        assert!(literal.matches("/v/a/x") && !literal.matches("/v/b/x"));
    }

    #[test]
    fn literals_are_literal_and_bad_templates_are_refused() {
        assert!(!template("/a.b").matches("/aXb"));
        assert!(UriTemplate::compile("no-slash").is_err());
        assert!(UriTemplate::compile("/**/x/*").is_err());
        assert!(UriTemplate::compile("/{unclosed").is_err());
        assert!(UriTemplate::compile("/a*b").is_err());
        assert!(UriTemplate::compile("/{1bad}").is_err());
    }
}
