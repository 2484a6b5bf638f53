//! Subject alternative name matching, as Envoy's validation context does it: a peer
//! certificate passes when any of its SANs matches any matcher (none configured: any
//! certificate passes). `match_subject_alt_names` looks at every SAN type;
//! `match_typed_subject_alt_names` at one type each. An `exact` matcher on a DNS SAN
//! honours a wildcard in the certificate (`*.example.com` matches `api.example.com`).

use mizzen_xds::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, subject_alt_name_matcher::SanType,
};
use mizzen_xds::pb::envoy::r#type::matcher::v3::{StringMatcher, string_matcher::MatchPattern};

use super::cert::CertInfo;
use crate::route::StringMatch;

/// Which SANs a matcher looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Any,
    Dns,
    Uri,
    Email,
    Ip,
}

/// One compiled SAN matcher.
#[derive(Debug)]
pub struct SanMatcher {
    kind: Kind,
    test: StringMatch,
    /// The `exact` value, for wildcard DNS SANs.
    exact: Option<(String, bool)>,
}

impl SanMatcher {
    fn compile(kind: Kind, m: &StringMatcher) -> Result<SanMatcher, (String, String)> {
        let test = StringMatch::compile(m).map_err(|e| (e.field.clone(), e.problem.to_string()))?;
        let exact = match &m.match_pattern {
            Some(MatchPattern::Exact(e)) => Some((e.clone(), m.ignore_case)),
            _ => None,
        };
        Ok(SanMatcher { kind, test, exact })
    }

    fn matches(&self, cert: &CertInfo) -> bool {
        let test = |names: &[String]| names.iter().any(|n| self.test.matches(n.as_bytes()));
        let dns = || {
            test(&cert.dns_sans)
                || self
                    .exact
                    .as_ref()
                    .is_some_and(|(e, ci)| cert.dns_sans.iter().any(|n| wildcard(n, e, *ci)))
        };
        match self.kind {
            Kind::Any => {
                dns() || test(&cert.uri_sans) || test(&cert.email_sans) || test(&cert.ip_sans)
            }
            Kind::Dns => dns(),
            Kind::Uri => test(&cert.uri_sans),
            Kind::Email => test(&cert.email_sans),
            Kind::Ip => test(&cert.ip_sans),
        }
    }
}

/// Whether the DNS SAN `san` (maybe `*.domain`) covers the name `name`.
fn wildcard(san: &str, name: &str, ignore_case: bool) -> bool {
    let Some(domain) = san.strip_prefix("*.") else {
        return false;
    };
    match name.split_once('.') {
        Some((label, rest)) if !label.is_empty() => {
            if ignore_case {
                rest.eq_ignore_ascii_case(domain)
            } else {
                rest == domain
            }
        }
        _ => false,
    }
}

/// The SAN matchers of a validation context.
#[derive(Debug, Default)]
pub struct SanMatchers(Vec<SanMatcher>);

impl SanMatchers {
    /// Compiles `match_typed_subject_alt_names` and `match_subject_alt_names`; errors
    /// are `(field, reason)`.
    pub fn compile(v: &CertificateValidationContext) -> Result<SanMatchers, (String, String)> {
        let mut all = Vec::new();
        for (i, typed) in v.match_typed_subject_alt_names.iter().enumerate() {
            let at = |f: &str| format!("match_typed_subject_alt_names[{i}].{f}");
            let kind = match SanType::try_from(typed.san_type) {
                Ok(SanType::Dns) => Kind::Dns,
                Ok(SanType::Uri) => Kind::Uri,
                Ok(SanType::Email) => Kind::Email,
                Ok(SanType::IpAddress) => Kind::Ip,
                Ok(SanType::OtherName) => {
                    return Err((at("san_type"), "OTHER_NAME is not supported".into()));
                }
                _ => return Err((at("san_type"), "must be set".into())),
            };
            let Some(m) = &typed.matcher else {
                return Err((at("matcher"), "must be set".into()));
            };
            all.push(
                SanMatcher::compile(kind, m).map_err(|(f, r)| (at(&format!("matcher.{f}")), r))?,
            );
        }
        #[allow(deprecated)]
        for (i, m) in v.match_subject_alt_names.iter().enumerate() {
            all.push(
                SanMatcher::compile(Kind::Any, m)
                    .map_err(|(f, r)| (format!("match_subject_alt_names[{i}].{f}"), r))?,
            );
        }
        Ok(SanMatchers(all))
    }

    /// Whether there are none (any certificate passes).
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Whether `cert` passes `self` and `more` together (the default and the dynamic
    /// half of a combined validation context).
    pub fn accept(&self, more: &SanMatchers, cert: &CertInfo) -> bool {
        (self.is_empty() && more.is_empty())
            || self.0.iter().chain(&more.0).any(|m| m.matches(cert))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mizzen_xds::pb::envoy::extensions::transport_sockets::tls::v3::SubjectAltNameMatcher;

    fn matcher(pattern: MatchPattern) -> StringMatcher {
        StringMatcher {
            match_pattern: Some(pattern),
            ..Default::default()
        }
    }

    fn cert(uri: &[&str], dns: &[&str]) -> CertInfo {
        CertInfo {
            uri_sans: uri.iter().map(|s| s.to_string()).collect(),
            dns_sans: dns.iter().map(|s| s.to_string()).collect(),
            ..Default::default()
        }
    }

    #[test]
    fn any_san_of_any_type_may_match() {
        #[allow(deprecated)]
        let v = CertificateValidationContext {
            match_subject_alt_names: vec![
                matcher(MatchPattern::Exact("spiffe://td/ns/a/sa/x".into())),
                matcher(MatchPattern::Suffix(".example.com".into())),
            ],
            ..Default::default()
        };
        let m = SanMatchers::compile(&v).unwrap();
        let none = SanMatchers::default();
        assert!(m.accept(&none, &cert(&["spiffe://td/ns/a/sa/x"], &[])));
        assert!(m.accept(&none, &cert(&[], &["api.example.com"])));
        assert!(!m.accept(&none, &cert(&["spiffe://td/ns/a/sa/y"], &["example.org"])));
        assert!(none.accept(&none, &cert(&[], &[])));
    }

    #[test]
    fn typed_matchers_look_at_their_type_and_exact_dns_honours_wildcards() {
        let typed = |san_type: SanType, p| SubjectAltNameMatcher {
            san_type: san_type as i32,
            matcher: Some(matcher(p)),
            ..Default::default()
        };
        let v = CertificateValidationContext {
            match_typed_subject_alt_names: vec![
                typed(SanType::Dns, MatchPattern::Exact("api.example.com".into())),
                typed(SanType::Uri, MatchPattern::Prefix("spiffe://td/".into())),
            ],
            ..Default::default()
        };
        let m = SanMatchers::compile(&v).unwrap();
        let none = SanMatchers::default();
        assert!(m.accept(&none, &cert(&[], &["*.example.com"])));
        assert!(!m.accept(&none, &cert(&[], &["*.api.example.com"])));
        assert!(m.accept(&none, &cert(&["spiffe://td/ns/a"], &[])));
        // A URI matcher does not look at DNS SANs.
        assert!(!m.accept(&none, &cert(&[], &["spiffe://td/ns/a"])));
    }

    #[test]
    fn errors_name_the_matcher() {
        let v = CertificateValidationContext {
            match_typed_subject_alt_names: vec![SubjectAltNameMatcher {
                san_type: SanType::Uri as i32,
                matcher: Some(matcher(MatchPattern::Prefix(String::new()))),
                ..Default::default()
            }],
            ..Default::default()
        };
        let (field, reason) = SanMatchers::compile(&v).unwrap_err();
        assert_eq!(field, "match_typed_subject_alt_names[0].matcher.prefix");
        assert!(reason.contains("empty"), "{reason}");
    }
}
