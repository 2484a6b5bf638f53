//! Route matches: a `RouteMatch`'s path, header, query parameter, runtime fraction and gRPC
//! conditions, compiled; a route matches when all of them do.

use http::Method;
use mizzen_xds::pb::envoy::config::route::v3::{
    HeaderMatcher, QueryParameterMatcher, RouteMatch as PbRouteMatch, header_matcher,
    query_parameter_matcher, route_match::PathSpecifier,
};
use mizzen_xds::pb::envoy::r#type::matcher::v3::{StringMatcher, string_matcher::MatchPattern};
use mizzen_xds::pb::envoy::r#type::v3::{FractionalPercent, fractional_percent::DenominatorType};

use super::error::{Invalid, Problem, Within, unsupported};
use super::pattern::FullMatch;
use super::request::{HeaderSource, RequestHead};
use super::rewrite::Matched;

/// A route's conditions, compiled.
#[derive(Debug)]
pub(crate) struct RouteMatch {
    path: PathMatch,
    headers: Vec<HeaderMatch>,
    query_parameters: Vec<QueryMatch>,
    fraction: Option<Fraction>,
    grpc: bool,
}

#[derive(Debug)]
enum PathMatch {
    Prefix(Literal),
    Exact(Literal),
    /// The whole path (query excluded) must match; `case_sensitive` does not apply.
    Regex(FullMatch),
    /// The prefix, followed by `/` or nothing.
    SeparatedPrefix(Literal),
    /// CONNECT requests, whatever their path.
    Connect,
}

impl RouteMatch {
    /// Compiles `m`; errors name fields within `match`.
    pub(crate) fn compile(m: &PbRouteMatch) -> Result<RouteMatch, Invalid> {
        unsupported(&[
            ("cookies", !m.cookies.is_empty()),
            ("tls_context", m.tls_context.is_some()),
            ("dynamic_metadata", !m.dynamic_metadata.is_empty()),
            ("filter_state", !m.filter_state.is_empty()),
        ])?;
        let ignore_case = !m.case_sensitive.as_ref().is_none_or(|b| b.value);
        let literal = |text: &str| Literal::new(text, ignore_case);
        let path = match &m.path_specifier {
            None => return Err(Problem::Missing.at("path_specifier")),
            Some(PathSpecifier::Prefix(p)) => PathMatch::Prefix(literal(p)),
            Some(PathSpecifier::Path(p)) => PathMatch::Exact(literal(p)),
            Some(PathSpecifier::SafeRegex(r)) => {
                PathMatch::Regex(FullMatch::compile(r).within("safe_regex")?)
            }
            Some(PathSpecifier::ConnectMatcher(_)) => PathMatch::Connect,
            Some(PathSpecifier::PathSeparatedPrefix(p)) => {
                if p.is_empty() || p.contains(['?', '#']) || p.ends_with('/') {
                    return Err(Problem::invalid(
                        "must be non-empty, without '?' or '#', and not end in '/'",
                    )
                    .at("path_separated_prefix"));
                }
                PathMatch::SeparatedPrefix(literal(p))
            }
            Some(PathSpecifier::PathMatchPolicy(_)) => {
                return Err(Problem::Unsupported.at("path_match_policy"));
            }
        };
        let fraction = match &m.runtime_fraction {
            None => None,
            // There is no runtime here: Envoy uses the default when the key has no value.
            Some(rf) => match &rf.default_value {
                Some(percent) => {
                    Some(Fraction::compile(percent).within("runtime_fraction.default_value")?)
                }
                None => return Err(Problem::Missing.at("runtime_fraction.default_value")),
            },
        };
        Ok(RouteMatch {
            path,
            headers: m
                .headers
                .iter()
                .enumerate()
                .map(|(i, h)| HeaderMatch::compile(h).within(&format!("headers[{i}]")))
                .collect::<Result<_, _>>()?,
            query_parameters: m
                .query_parameters
                .iter()
                .enumerate()
                .map(|(i, q)| QueryMatch::compile(q).within(&format!("query_parameters[{i}]")))
                .collect::<Result<_, _>>()?,
            fraction,
            grpc: m.grpc.is_some(),
        })
    }

    /// Whether `req` matches. `path` is the request's path as path conditions see it (no
    /// query, fragment or, if so configured, path parameters); `random` is the request's
    /// random value, the same for every route as in Envoy.
    pub(crate) fn matches(&self, req: &RequestHead<'_>, path: &str, random: u64) -> bool {
        let path_matches = match &self.path {
            PathMatch::Connect => *req.method == Method::CONNECT,
            // Envoy offers requests without a path (CONNECT) to CONNECT routes only.
            _ if req.path.is_empty() => false,
            PathMatch::Prefix(p) => p.is_prefix_of(path.as_bytes()),
            PathMatch::Exact(p) => p.equals(path.as_bytes()),
            PathMatch::Regex(r) => r.matches(path.as_bytes()),
            PathMatch::SeparatedPrefix(p) => {
                p.is_prefix_of(path.as_bytes())
                    && path.as_bytes().get(p.len()).is_none_or(|&b| b == b'/')
            }
        };
        path_matches
            && self.fraction.as_ref().is_none_or(|f| f.admits(random))
            && (!self.grpc || req.is_grpc())
            && self.headers.iter().all(|h| h.matches(req))
            && (self.query_parameters.is_empty() || {
                let query = query(req.path);
                self.query_parameters.iter().all(|q| q.matches(query))
            })
    }

    /// The part of the path this route matched, which `prefix_rewrite` replaces.
    pub(crate) fn matched(&self) -> Matched {
        match &self.path {
            PathMatch::Prefix(l) | PathMatch::Exact(l) | PathMatch::SeparatedPrefix(l) => {
                Matched::Prefix(l.len())
            }
            PathMatch::Regex(_) | PathMatch::Connect => Matched::WholePath,
        }
    }
}

/// The query string of `path`: after the `?`, before any fragment.
fn query(path: &str) -> &str {
    let Some(start) = path.find('?') else {
        return "";
    };
    let query = &path[start + 1..];
    query.find('#').map_or(query, |end| &query[..end])
}

/// A `FractionalPercent`: `numerator` out of every `denominator` requests (a runtime
/// fraction's default, a fault's percentage).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Fraction {
    numerator: u64,
    denominator: u64,
}

impl Fraction {
    /// Compiles `p`; errors name fields within it.
    pub(crate) fn compile(p: &FractionalPercent) -> Result<Fraction, Invalid> {
        let denominator = match DenominatorType::try_from(p.denominator) {
            Ok(DenominatorType::Hundred) => 100,
            Ok(DenominatorType::TenThousand) => 10_000,
            Ok(DenominatorType::Million) => 1_000_000,
            Err(_) => {
                return Err(
                    Problem::invalid(format!("unknown denominator {}", p.denominator))
                        .at("denominator"),
                );
            }
        };
        Ok(Fraction {
            numerator: u64::from(p.numerator),
            denominator,
        })
    }

    /// This fraction with its numerator capped at `numerator` (Envoy's header-given
    /// fault percentages cannot exceed the configured one).
    pub(crate) fn at_most(self, numerator: u64) -> Fraction {
        Fraction {
            numerator: self.numerator.min(numerator),
            ..self
        }
    }

    /// Envoy's test: `random % denominator < numerator`.
    pub(crate) fn admits(&self, random: u64) -> bool {
        random % self.denominator < self.numerator
    }
}

/// A condition on one header (`HeaderMatcher`).
#[derive(Debug)]
pub(crate) struct HeaderMatch {
    source: HeaderSource,
    test: HeaderTest,
    invert: bool,
    missing_as_empty: bool,
}

#[derive(Debug)]
enum HeaderTest {
    Value(StringMatch),
    /// The deprecated `exact_match: ""`, which Envoy lets match any value.
    AnyValue,
    /// A base-10 integer in `start..end`.
    Range {
        start: i64,
        end: i64,
    },
    /// `present_match`: true matches a present header, false an absent one.
    Present(bool),
}

impl HeaderMatch {
    /// Compiles `h`; errors name fields within it.
    #[allow(deprecated)] // Envoy still honours the deprecated matchers.
    pub(crate) fn compile(h: &HeaderMatcher) -> Result<HeaderMatch, Invalid> {
        use header_matcher::HeaderMatchSpecifier as S;
        let test = match &h.header_match_specifier {
            None => HeaderTest::Present(true),
            Some(S::ExactMatch(v)) if v.is_empty() => HeaderTest::AnyValue,
            Some(S::ExactMatch(v)) => HeaderTest::Value(StringMatch::Exact(Literal::new(v, false))),
            Some(S::SafeRegexMatch(r)) => HeaderTest::Value(StringMatch::Regex(
                FullMatch::compile(r).within("safe_regex_match")?,
            )),
            Some(S::RangeMatch(r)) => HeaderTest::Range {
                start: r.start,
                end: r.end,
            },
            Some(S::PresentMatch(present)) => HeaderTest::Present(*present),
            Some(S::PrefixMatch(p)) => {
                HeaderTest::Value(StringMatch::Prefix(non_empty(p, false, "prefix_match")?))
            }
            Some(S::SuffixMatch(s)) => {
                HeaderTest::Value(StringMatch::Suffix(non_empty(s, false, "suffix_match")?))
            }
            Some(S::ContainsMatch(c)) => HeaderTest::Value(StringMatch::Contains(non_empty(
                c,
                false,
                "contains_match",
            )?)),
            Some(S::StringMatch(m)) => {
                HeaderTest::Value(StringMatch::compile(m).within("string_match")?)
            }
        };
        Ok(HeaderMatch {
            source: HeaderSource::parse(&h.name).within("name")?,
            test,
            invert: h.invert_match,
            missing_as_empty: h.treat_missing_header_as_empty,
        })
    }

    /// Envoy's `HeaderUtility::matchHeaders` for one matcher: a repeated header matches
    /// when any one of its values does (the values are not joined), and `invert_match`
    /// inverts that.
    pub(crate) fn matches(&self, req: &RequestHead<'_>) -> bool {
        let mut values = self.source.values(req).peekable();
        let matched = if values.peek().is_some() {
            values.any(|value| self.test(value))
        } else if self.missing_as_empty {
            self.test(b"")
        } else {
            // An absent header fails every test, inverted or not, except presence tests.
            return matches!(self.test, HeaderTest::Present(p) if p == self.invert);
        };
        matched != self.invert
    }

    /// Whether one value passes the test, before any inversion.
    fn test(&self, value: &[u8]) -> bool {
        match &self.test {
            HeaderTest::Value(m) => m.matches(value),
            HeaderTest::AnyValue => true,
            HeaderTest::Range { start, end } => {
                integer(value).is_some_and(|n| *start <= n && n < *end)
            }
            HeaderTest::Present(present) => *present,
        }
    }
}

/// The integer a header value spells, as `absl::SimpleAtoi` reads it (surrounding ASCII
/// whitespace allowed).
fn integer(value: &[u8]) -> Option<i64> {
    std::str::from_utf8(value.trim_ascii()).ok()?.parse().ok()
}

/// A condition on one query parameter: its first value must match, or with no test, the
/// parameter must be present.
#[derive(Debug)]
struct QueryMatch {
    name: String,
    test: Option<StringMatch>,
}

impl QueryMatch {
    fn compile(q: &QueryParameterMatcher) -> Result<QueryMatch, Invalid> {
        use query_parameter_matcher::QueryParameterMatchSpecifier as S;
        if q.name.is_empty() {
            return Err(Problem::invalid("must not be empty").at("name"));
        }
        let test = match &q.query_parameter_match_specifier {
            Some(S::StringMatch(m)) => Some(StringMatch::compile(m).within("string_match")?),
            // Envoy treats `present_match: false` like true, and no specifier as presence.
            Some(S::PresentMatch(_)) | None => None,
        };
        Ok(QueryMatch {
            name: q.name.clone(),
            test,
        })
    }

    /// `query` is the raw query string; names and values are compared undecoded, as Envoy does.
    fn matches(&self, query: &str) -> bool {
        let first = query.split('&').find_map(|param| {
            let (name, value) = param.split_once('=').unwrap_or((param, ""));
            (name == self.name).then_some(value)
        });
        first.is_some_and(|value| {
            self.test
                .as_ref()
                .is_none_or(|t| t.matches(value.as_bytes()))
        })
    }
}

/// Envoy's `StringMatcher`, compiled.
#[derive(Debug)]
pub(crate) enum StringMatch {
    Exact(Literal),
    Prefix(Literal),
    Suffix(Literal),
    Contains(Literal),
    Regex(FullMatch),
}

impl StringMatch {
    /// Compiles `m`; errors name fields within it.
    pub(crate) fn compile(m: &StringMatcher) -> Result<StringMatch, Invalid> {
        Ok(match &m.match_pattern {
            None => return Err(Problem::Missing.at("match_pattern")),
            Some(MatchPattern::Exact(e)) => StringMatch::Exact(Literal::new(e, m.ignore_case)),
            Some(MatchPattern::Prefix(p)) => {
                StringMatch::Prefix(non_empty(p, m.ignore_case, "prefix")?)
            }
            Some(MatchPattern::Suffix(s)) => {
                StringMatch::Suffix(non_empty(s, m.ignore_case, "suffix")?)
            }
            Some(MatchPattern::Contains(c)) => {
                StringMatch::Contains(non_empty(c, m.ignore_case, "contains")?)
            }
            // `ignore_case` does not apply to regexes; `(?i)` does.
            Some(MatchPattern::SafeRegex(r)) => {
                StringMatch::Regex(FullMatch::compile(r).within("safe_regex")?)
            }
            Some(MatchPattern::Custom(_)) => return Err(Problem::Unsupported.at("custom")),
        })
    }

    /// Whether `value` matches.
    pub(crate) fn matches(&self, value: &[u8]) -> bool {
        match self {
            StringMatch::Exact(l) => l.equals(value),
            StringMatch::Prefix(l) => l.is_prefix_of(value),
            StringMatch::Suffix(l) => l.is_suffix_of(value),
            StringMatch::Contains(l) => l.is_in(value),
            StringMatch::Regex(r) => r.matches(value),
        }
    }
}

/// The literal of a prefix, suffix or contains match, which Envoy wants non-empty (a
/// regex or presence test says "anything").
fn non_empty(text: &str, ignore_case: bool, field: &str) -> Result<Literal, Invalid> {
    if text.is_empty() {
        return Err(Problem::invalid("must not be empty").at(field));
    }
    Ok(Literal::new(text, ignore_case))
}

/// Literal text to compare, maybe ignoring ASCII case (as Envoy does: never Unicode case).
#[derive(Debug)]
pub(crate) struct Literal {
    text: Box<[u8]>,
    ignore_case: bool,
}

impl Literal {
    fn new(text: &str, ignore_case: bool) -> Literal {
        Literal {
            text: text.as_bytes().into(),
            ignore_case,
        }
    }

    fn len(&self) -> usize {
        self.text.len()
    }

    fn same(&self, bytes: &[u8]) -> bool {
        if self.ignore_case {
            self.text.eq_ignore_ascii_case(bytes)
        } else {
            *self.text == *bytes
        }
    }

    fn equals(&self, value: &[u8]) -> bool {
        self.same(value)
    }

    fn is_prefix_of(&self, value: &[u8]) -> bool {
        value.get(..self.len()).is_some_and(|head| self.same(head))
    }

    fn is_suffix_of(&self, value: &[u8]) -> bool {
        value.len() >= self.len() && self.same(&value[value.len() - self.len()..])
    }

    fn is_in(&self, value: &[u8]) -> bool {
        value.windows(self.len()).any(|w| self.same(w))
    }
}
