//! Path rewrites (`prefix_rewrite`, `regex_rewrite`, `path_rewrite`), for forwarded requests
//! and redirects alike. Each keeps the query string.

use super::pattern::Substitution;
use super::request::path_only;

/// The part of the path a route matched, which `prefix_rewrite` replaces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Matched {
    /// The first so many bytes: a prefix or exact-path route's literal.
    Prefix(usize),
    /// The whole path without the query: a regex or CONNECT route.
    WholePath,
}

/// A compiled path rewrite.
#[derive(Debug)]
pub(crate) enum PathRewrite {
    /// `prefix_rewrite`: the matched part becomes `with`.
    Prefix { matched: Matched, with: String },
    /// `regex_rewrite`: every match in the path (query excluded) is substituted.
    Regex(Substitution),
    /// `path_rewrite`: the path (query excluded) becomes this.
    Whole(String),
}

impl PathRewrite {
    /// `path` (with its query) rewritten.
    pub(crate) fn apply(&self, path: &str) -> String {
        let head = path_only(path);
        let query = &path[head.len()..];
        match self {
            PathRewrite::Prefix {
                matched: Matched::Prefix(len),
                with,
            } => match path.get(*len..) {
                Some(rest) => [with.as_str(), rest].concat(),
                // The route matched these bytes, so this cannot happen; keep the path.
                None => path.to_owned(),
            },
            PathRewrite::Prefix {
                matched: Matched::WholePath,
                with,
            }
            | PathRewrite::Whole(with) => [with.as_str(), query].concat(),
            PathRewrite::Regex(s) => s.replace_all(head) + query,
        }
    }
}

#[cfg(test)]
mod tests {
    use mizzen_xds::pb::envoy::r#type::matcher::v3::{RegexMatchAndSubstitute, RegexMatcher};

    use super::*;

    fn prefix(len: usize, with: &str) -> PathRewrite {
        PathRewrite::Prefix {
            matched: Matched::Prefix(len),
            with: with.to_owned(),
        }
    }

    #[test]
    fn prefix_rewrite_replaces_only_the_matched_prefix() {
        // Envoy's documented trailing-slash example: prefix "/prefix/" and "/prefix" → "/".
        assert_eq!(prefix("/prefix/".len(), "/").apply("/prefix/etc"), "/etc");
        assert_eq!(prefix("/prefix".len(), "/").apply("/prefix"), "/");
        assert_eq!(prefix(4, "/v2").apply("/api/users?id=7"), "/v2/users?id=7");
    }

    #[test]
    fn prefix_rewrite_after_a_regex_replaces_the_whole_path_and_keeps_the_query() {
        let rw = PathRewrite::Prefix {
            matched: Matched::WholePath,
            with: "/new".to_owned(),
        };
        assert_eq!(rw.apply("/a/b/c?x=1"), "/new?x=1");
    }

    #[test]
    fn path_rewrite_keeps_the_query() {
        assert_eq!(
            PathRewrite::Whole("/fixed".to_owned()).apply("/a?b=1"),
            "/fixed?b=1"
        );
    }

    #[test]
    fn regex_rewrite_leaves_the_query_alone() {
        let s = Substitution::compile(&RegexMatchAndSubstitute {
            pattern: Some(RegexMatcher {
                regex: "a".to_owned(),
                ..RegexMatcher::default()
            }),
            substitution: "b".to_owned(),
        })
        .unwrap();
        assert_eq!(PathRewrite::Regex(s).apply("/aa?a=a"), "/bb?a=a");
    }
}
