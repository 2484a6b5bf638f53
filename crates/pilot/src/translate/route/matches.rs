//! VirtualService `match` blocks → Envoy `RouteMatch`, as Istio's `TranslateRouteMatch`.

use mizzen_api::networking::HttpMatchRequest;
use mizzen_api::types::StringMatch;
use mizzen_xds::pb::envoy::config::route::v3::{
    HeaderMatcher, QueryParameterMatcher, RouteMatch, header_matcher, query_parameter_matcher,
    route_match,
};
use mizzen_xds::pb::envoy::r#type::matcher::v3::{RegexMatcher, StringMatcher, string_matcher};
use mizzen_xds::pb::google::protobuf::BoolValue;

/// Matches every request: `prefix: /`.
pub(crate) fn match_all() -> RouteMatch {
    RouteMatch {
        path_specifier: Some(route_match::PathSpecifier::Prefix("/".into())),
        ..RouteMatch::default()
    }
}

/// Translates one Istio match (`None`: a route without `match`, which matches all).
pub(crate) fn route_match(m: Option<&HttpMatchRequest>) -> RouteMatch {
    let mut out = match_all();
    let Some(m) = m else {
        return out;
    };
    for (name, value) in &m.headers {
        out.headers.push(header(name, value));
    }
    for (name, value) in &m.without_headers {
        let mut h = header(name, value);
        h.invert_match = true;
        // Envoy refuses treat_missing_header_as_empty next to present_match.
        h.treat_missing_header_as_empty = !is_presence(value);
        out.headers.push(h);
    }
    out.headers.sort_by(|a, b| a.name.cmp(&b.name));
    if let Some(uri) = &m.uri {
        out.path_specifier = match uri {
            StringMatch::Exact(p) => Some(route_match::PathSpecifier::Path(p.clone())),
            StringMatch::Prefix(p) => Some(route_match::PathSpecifier::Prefix(p.clone())),
            StringMatch::Regex(r) => Some(route_match::PathSpecifier::SafeRegex(regex(r))),
            StringMatch::Any => out.path_specifier,
        };
    }
    out.case_sensitive = Some(BoolValue {
        value: !m.ignore_uri_case,
    });
    for (pseudo, value) in [
        (":method", &m.method),
        (":authority", &m.authority),
        (":scheme", &m.scheme),
    ] {
        if let Some(v) = value {
            out.headers.push(header(pseudo, v));
        }
    }
    for (name, value) in &m.query_params {
        let specifier = if is_presence(value) {
            query_parameter_matcher::QueryParameterMatchSpecifier::PresentMatch(true)
        } else {
            query_parameter_matcher::QueryParameterMatchSpecifier::StringMatch(
                string_matcher_of(value).unwrap_or_default(),
            )
        };
        out.query_parameters.push(QueryParameterMatcher {
            name: name.clone(),
            query_parameter_match_specifier: Some(specifier),
        });
    }
    out
}

/// True when a route matches everything, so later routes can never match (Istio's
/// `IsCatchAllRoute`).
pub(crate) fn is_catch_all(m: &RouteMatch) -> bool {
    let all_paths = match &m.path_specifier {
        Some(route_match::PathSpecifier::Prefix(p)) => p == "/",
        Some(route_match::PathSpecifier::PathSeparatedPrefix(p)) => p == "/",
        Some(route_match::PathSpecifier::SafeRegex(r)) => r.regex == ".*",
        _ => false,
    };
    all_paths
        && m.headers.is_empty()
        && m.query_parameters.is_empty()
        && m.dynamic_metadata.is_empty()
}

/// An Envoy string matcher, or `None` for Istio's empty matcher.
pub(crate) fn string_matcher_of(m: &StringMatch) -> Option<StringMatcher> {
    let pattern = match m {
        StringMatch::Any => return None,
        StringMatch::Exact(v) => string_matcher::MatchPattern::Exact(v.clone()),
        StringMatch::Prefix(v) => string_matcher::MatchPattern::Prefix(v.clone()),
        StringMatch::Regex(v) => string_matcher::MatchPattern::SafeRegex(regex(v)),
    };
    Some(StringMatcher {
        match_pattern: Some(pattern),
        ..StringMatcher::default()
    })
}

/// A RE2 regex matcher (Envoy's default engine, as Istio leaves `engine_type` unset).
pub(crate) fn regex(r: &str) -> RegexMatcher {
    RegexMatcher {
        regex: r.to_owned(),
        ..RegexMatcher::default()
    }
}

/// `{}` and `regex: "*"` mean "present" in Istio.
fn is_presence(m: &StringMatch) -> bool {
    matches!(m, StringMatch::Any) || m.regex() == Some("*")
}

fn header(name: &str, value: &StringMatch) -> HeaderMatcher {
    let specifier = if is_presence(value) {
        header_matcher::HeaderMatchSpecifier::PresentMatch(true)
    } else {
        header_matcher::HeaderMatchSpecifier::StringMatch(
            string_matcher_of(value).unwrap_or_default(),
        )
    };
    HeaderMatcher {
        name: name.to_owned(),
        header_match_specifier: Some(specifier),
        ..HeaderMatcher::default()
    }
}
