//! Checks shared by many kinds: names, hosts, ports, labels, regexes, headers, durations.
//! Messages follow Istio's webhook and CRD wording so that users recognise them.

use std::net::IpAddr;

use super::Validator;
use super::schema::{cel_error, check_max_items, check_max_len};
use crate::types::{Duration, Labels, Percent, PolicyTargetReference, WorkloadSelector};

const DNS1123_LABEL_MAX: usize = 63;
const DNS1123_SUBDOMAIN_MAX: usize = 253;

/// True for an RFC 1123 label: lowercase alphanumerics and `-`, alphanumeric at both ends.
pub fn is_dns1123_label(s: &str) -> bool {
    is_label_of(s, |b| b.is_ascii_lowercase())
}

/// True for an RFC 1123 subdomain: dot-separated [`is_dns1123_label`]s, at most 253 bytes.
pub fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty() && s.len() <= DNS1123_SUBDOMAIN_MAX && s.split('.').all(is_dns1123_label)
}

/// Istio's `labels.IsDNS1123Label`, which, unlike Kubernetes', accepts uppercase letters:
/// at most 63 alphanumerics and `-`, alphanumeric at both ends. Used for subset, port
/// and namespace names in Istio's webhook rules.
pub fn is_istio_label(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() <= 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
}

/// Like [`is_dns1123_label`] but also accepting uppercase, as Istio does for host labels.
fn is_host_label(s: &str) -> bool {
    is_label_of(s, |b| b.is_ascii_alphabetic())
}

fn is_label_of(s: &str, letter: impl Fn(u8) -> bool) -> bool {
    let b = s.as_bytes();
    let alnum = |c: u8| c.is_ascii_digit() || letter(c);
    !b.is_empty()
        && b.len() <= DNS1123_LABEL_MAX
        && alnum(b[0])
        && alnum(b[b.len() - 1])
        && b.iter().all(|&c| alnum(c) || c == b'-')
}

/// Checks a fully qualified domain name (no wildcard), as Istio's `ValidateFQDN`.
pub fn fqdn_error(name: &str) -> Option<String> {
    if name.is_empty() {
        return Some("empty domain name not allowed".into());
    }
    if name.len() > 255 {
        return Some(format!("domain name {name:?} too long (max 255)"));
    }
    dns_labels_error(name, name)
}

fn dns_labels_error(full: &str, domain: &str) -> Option<String> {
    let labels: Vec<&str> = domain.split('.').collect();
    let last = labels[labels.len() - 1];
    if !last.is_empty() && last.bytes().all(|b| b.is_ascii_digit()) {
        return Some(format!(
            "domain name {full:?} invalid (top level domain {last:?} cannot be all-numeric)"
        ));
    }
    labels.iter().enumerate().find_map(|(i, label)| {
        // A trailing dot (`istio.io.`) is an unambiguous absolute name.
        let trailing = i == labels.len() - 1 && label.is_empty() && i > 0;
        (!trailing && !is_host_label(label))
            .then(|| format!("domain name {full:?} invalid (label {label:?} invalid)"))
    })
}

/// Checks a domain that may start with a wildcard label (`*`, `*.example.com`,
/// `*foo.example.com`), as Istio's `ValidateWildcardDomain`.
pub fn wildcard_domain_error(domain: &str) -> Option<String> {
    if domain.is_empty() {
        return Some("empty domain name not allowed".into());
    }
    if domain.len() > 255 {
        return Some(format!("domain name {domain:?} too long (max 255)"));
    }
    let (first, rest) = match domain.split_once('.') {
        Some((first, rest)) => (first, Some(rest)),
        None => (domain, None),
    };
    let wildcard_ok = first == "*"
        || first
            .strip_prefix('*')
            .map(|tail| is_host_label(tail.strip_prefix('-').unwrap_or(tail)))
            .unwrap_or_else(|| is_host_label(first));
    if !wildcard_ok {
        return Some(format!(
            "domain name {domain:?} invalid (label {first:?} invalid)"
        ));
    }
    rest.and_then(|rest| dns_labels_error(domain, rest))
}

/// Reports `host` unless it is a valid, possibly wildcarded, domain.
pub fn check_wildcard_host(v: &mut Validator<'_>, host: &str) {
    if let Some(e) = wildcard_domain_error(host) {
        v.error(e);
    }
}

/// Reports a port outside 1..=65535.
pub fn check_port(v: &mut Validator<'_>, port: u32) {
    if !(1..=65535).contains(&port) {
        v.error(format!("port must be between 1-65535, got {port}"));
    }
}

/// Reports a port number outside 1..=65535 on the field `name`.
pub fn check_port_at(v: &mut Validator<'_>, name: &str, port: u32) {
    v.field(name, |v| check_port(v, port));
}

/// Reports an IP address that does not parse.
pub fn check_ip(v: &mut Validator<'_>, ip: &str) {
    if ip.parse::<IpAddr>().is_err() {
        v.error(format!("{ip:?} is not a valid IP address"));
    }
}

/// Reports a value that is neither an IP address nor a CIDR block.
pub fn check_ip_or_cidr(v: &mut Validator<'_>, value: &str) {
    if value.parse::<IpAddr>().is_err() && value.parse::<ipnet::IpNet>().is_err() {
        v.error(format!("{value:?} is not a valid IP address or CIDR block"));
    }
}

/// True for an HTTP header name token (RFC 7230 `tchar`s).
pub fn is_header_token(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// Reports a header name that is empty, not an HTTP token, or not lowercase
/// (Istio requires lowercase header names in matches and manipulations).
pub fn check_header_name(v: &mut Validator<'_>, name: &str) {
    if name.is_empty() {
        v.error("header name must not be empty");
    } else if !is_header_token(name.strip_prefix(':').unwrap_or(name)) {
        v.error(format!(
            "header name {name:?} is not a valid HTTP header name"
        ));
    } else if name.bytes().any(|b| b.is_ascii_uppercase()) {
        v.error(format!("header name {name:?} must be lowercase"));
    }
}

/// Reports a header value with control characters other than tab.
pub fn check_header_value(v: &mut Validator<'_>, value: &str) {
    if value.bytes().any(|b| (b < 0x20 && b != b'\t') || b == 0x7f) {
        v.error(format!(
            "header value {value:?} contains invalid characters"
        ));
    }
}

/// Reports a duration shorter than `min`.
pub fn check_duration_at_least(v: &mut Validator<'_>, d: Duration, min: Duration) {
    if d < min {
        v.error(format!(
            "must be a valid duration greater than {min}, got {d}"
        ));
    }
}

/// Istio's `ValidateDuration` together with the CRD's `>= 1ms` rule: at least 1ms, and
/// whole milliseconds.
pub fn check_proto_duration(v: &mut Validator<'_>, d: Duration) {
    let ms = Duration::from_millis(1);
    if d < ms {
        check_duration_at_least(v, d, ms);
    } else if !d.get().subsec_nanos().is_multiple_of(1_000_000) {
        v.error("only durations to ms precision are supported");
    }
}

/// Reports a percentage outside 0..=100.
pub fn check_percent(v: &mut Validator<'_>, p: Percent) {
    if !p.in_range() {
        v.error(format!(
            "percentage must be in range [0, 100], got {}",
            p.value
        ));
    }
}

/// True for a Kubernetes qualified name (`name` or `prefix/name`), as label keys are.
pub fn is_qualified_name(key: &str) -> bool {
    let (prefix, name) = match key.split_once('/') {
        Some((prefix, name)) => (Some(prefix), name),
        None => (None, key),
    };
    let name_ok = !name.is_empty()
        && name.len() <= 63
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.as_bytes()[name.len() - 1].is_ascii_alphanumeric()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    name_ok && prefix.is_none_or(is_dns1123_subdomain)
}

/// True for a Kubernetes label value: empty, or ≤ 63 alphanumerics, `-`, `_`, `.`,
/// alphanumeric at both ends.
pub fn is_label_value(value: &str) -> bool {
    value.is_empty()
        || (value.len() <= 63
            && value.as_bytes()[0].is_ascii_alphanumeric()
            && value.as_bytes()[value.len() - 1].is_ascii_alphanumeric()
            && value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.')))
}

/// Reports label keys and values Kubernetes would not accept (`invalid tag key`/`value`,
/// as Istio words it).
pub fn check_labels(v: &mut Validator<'_>, labels: &Labels) {
    for (key, value) in labels {
        v.key(key, |v| {
            if !is_qualified_name(key) {
                v.error(format!("invalid tag key: {key:?}"));
            }
            if !is_label_value(value) {
                v.error(format!("invalid tag value: {value:?}"));
            }
        });
    }
}

/// Reports a workload selector with empty keys, wildcards, or invalid labels.
pub fn check_workload_selector(v: &mut Validator<'_>, selector: &WorkloadSelector) {
    v.field("matchLabels", |v| {
        for (key, value) in &selector.match_labels {
            v.key(key, |v| {
                if key.is_empty() {
                    v.error("empty key is not supported in selector: key must not be empty");
                } else if key.contains('*') || value.contains('*') {
                    v.error("wildcard is not supported in selector");
                } else {
                    if !is_qualified_name(key) {
                        v.error(format!("invalid label key: {key:?}"));
                    }
                    if !is_label_value(value) {
                        v.error(format!("invalid label value: {value:?}"));
                    }
                }
            });
        }
    });
}

/// Checks `selector`, `targetRef` and `targetRefs` together, as Istio's policy kinds do:
/// at most one of them is set, and references stay in the policy's namespace.
///
/// `kinds` lists the `(group, kind)` pairs the policy may target.
pub fn check_policy_targets(
    v: &mut Validator<'_>,
    selector: Option<&WorkloadSelector>,
    target_ref: Option<&PolicyTargetReference>,
    target_refs: &[PolicyTargetReference],
    kinds: &[(&str, &str)],
) {
    let set = usize::from(selector.is_some())
        + usize::from(target_ref.is_some())
        + usize::from(!target_refs.is_empty());
    if set > 1 {
        v.error("only one of targetRefs or selector can be set");
    }
    if let Some(selector) = selector {
        v.field("selector", |v| check_workload_selector(v, selector));
    }
    if let Some(r) = target_ref {
        v.field("targetRef", |v| check_target_ref(v, r, kinds));
    }
    v.each("targetRefs", target_refs, |v, r| {
        check_target_ref(v, r, kinds)
    });
}

fn check_target_ref(v: &mut Validator<'_>, r: &PolicyTargetReference, kinds: &[(&str, &str)]) {
    let token = |s: &str, max: usize| {
        s.len() <= max
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
    };
    if !(r.group.is_empty() || (token(&r.group, 253) && is_dns1123_subdomain(&r.group))) {
        v.error_at("group", format!("Invalid value: {:?}: group in body should match '^$|^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$'", r.group));
    }
    let kind_ok = r.kind.len() <= 63
        && r.kind
            .as_bytes()
            .first()
            .is_some_and(u8::is_ascii_alphabetic)
        && r.kind
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-');
    if r.kind.is_empty() {
        v.required("kind");
    } else if !kind_ok {
        v.error_at("kind", format!("Invalid value: {:?}: kind in body should match '^[a-zA-Z]([-a-zA-Z0-9]*[a-zA-Z0-9])?$'", r.kind));
    } else if !kinds.is_empty() && !kinds.iter().any(|(g, k)| *g == r.group && *k == r.kind) {
        let allowed: Vec<String> = kinds
            .iter()
            .map(|(g, k)| {
                if g.is_empty() {
                    (*k).to_owned()
                } else {
                    format!("{g}/{k}")
                }
            })
            .collect();
        v.error(format!(
            "Unsupported value: target kind {:?}: supported: {}",
            r.kind,
            allowed.join(", ")
        ));
    }
    if r.name.is_empty() {
        v.required("name");
    }
    if !r.namespace.is_empty() && r.namespace != v.namespace() {
        v.error_at(
            "namespace",
            "cross namespace referencing is not currently supported",
        );
    }
}

/// Checks `selector`, `targetRef` and `targetRefs` of a policy-style kind whose CRD
/// words selector problems with CEL messages (`key must not be empty`, `wildcard not
/// allowed in label key match`…): at most one of them set, references like
/// [`check_policy_targets`], and the selector as its CEL rules and Istio's webhook do.
pub fn check_selector_and_targets(
    v: &mut Validator<'_>,
    selector: Option<&WorkloadSelector>,
    target_ref: Option<&PolicyTargetReference>,
    target_refs: &[PolicyTargetReference],
    kinds: &[(&str, &str)],
) {
    // The shared check counts targetRef against targetRefs; add the selector here so
    // that its own label wording applies.
    check_policy_targets(v, None, target_ref, target_refs, kinds);
    check_max_items(v, "targetRefs", target_refs.len(), 16);
    if selector.is_some() && target_ref.is_some() == target_refs.is_empty() {
        v.error("only one of targetRefs or selector can be set");
    }
    if let Some(selector) = selector {
        v.field("selector", |v| check_cel_selector(v, selector));
    }
}

/// A `selector: {matchLabels}` checked with the CEL rules of the newer CRDs (ProxyConfig,
/// Telemetry, WasmPlugin) plus the webhook's warning for a selector without labels.
pub fn check_cel_selector(v: &mut Validator<'_>, selector: &WorkloadSelector) {
    let labels = &selector.match_labels;
    if labels.is_empty() {
        v.warn("workload selector specified without labels");
    }
    v.field("matchLabels", |v| {
        if labels.len() > 4096 {
            v.error(format!(
                "Too many: {}: must have at most 4096 items",
                labels.len()
            ));
        }
        if labels.keys().any(String::is_empty) {
            cel_error(v, "object", "key must not be empty");
        }
        if labels.keys().any(|k| k.contains('*')) {
            cel_error(v, "object", "wildcard not allowed in label key match");
        }
        for (key, value) in labels {
            v.key(key, |v| {
                if value.contains('*') {
                    cel_error(v, "string", "wildcard not allowed in label value match");
                }
                check_max_len(v, value, 63);
            });
        }
    });
}

/// Checks an `exportTo` list: `.`, `*`, `~` or namespace names, with `*`/`~` alone.
pub fn check_export_to(v: &mut Validator<'_>, export_to: &[String]) {
    v.field("exportTo", |v| {
        let mut seen = std::collections::HashSet::new();
        for (i, ns) in export_to.iter().enumerate() {
            v.index(i, |v| {
                if !seen.insert(ns.as_str()) {
                    v.error(format!("duplicate entries in exportTo: {ns:?}"));
                } else if !matches!(ns.as_str(), "." | "*" | "~") && !is_dns1123_label(ns) {
                    v.error(format!("only .,*,~ or a valid DNS-1123 namespace name are allowed in exportTo, got {ns:?}"));
                }
            });
        }
        let public = export_to.iter().any(|ns| ns == "*");
        let none = export_to.iter().any(|ns| ns == "~");
        if (public || none) && export_to.len() > 1 {
            v.error("cannot have both public (*) or none (~) and other exportTo values for a resource");
        }
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_follow_istio() {
        for ok in [
            "reviews",
            "reviews.default.svc.cluster.local",
            "*",
            "*.example.com",
            "*foo.example.com",
            "istio.io.",
            "Foo.COM",
        ] {
            assert_eq!(wildcard_domain_error(ok), None, "{ok}");
        }
        for bad in [
            "",
            "foo.*.com",
            "*.1",
            "a..b",
            "-a.com",
            "foo_bar.com",
            "*.*",
        ] {
            assert!(wildcard_domain_error(bad).is_some(), "{bad}");
        }
        assert!(fqdn_error("*.example.com").is_some());
        assert_eq!(fqdn_error("example.com"), None);
    }

    #[test]
    fn labels_and_names() {
        assert!(is_dns1123_label("reviews-v1"));
        assert!(!is_dns1123_label("Reviews"));
        assert!(is_qualified_name("app.kubernetes.io/name"));
        assert!(!is_qualified_name("bad key"));
        assert!(is_label_value("v1.2_x"));
        assert!(!is_label_value("-v1"));
    }

    #[test]
    fn header_names() {
        let meta = Default::default();
        let mut v = Validator::new(&meta);
        check_header_name(&mut v, "x-user");
        check_header_name(&mut v, ":authority");
        assert!(v.is_clean());
        check_header_name(&mut v, "X-User");
        check_header_name(&mut v, "bad header");
        assert_eq!(v.into_issues().len(), 2);
    }
}
