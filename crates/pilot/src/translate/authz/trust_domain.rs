//! Trust domain aliases (Istio's `trustdomain.Bundle`): a principal naming the mesh's
//! trust domain, `cluster.local` or an alias also matches the same identity under every
//! other one, so policies survive a trust domain migration unchanged.

/// The local trust domain first, then its aliases.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TrustDomainBundle {
    domains: Vec<String>,
}

/// The trust domain Istio treats as "the local one, whatever it is called".
const CLUSTER_LOCAL: &str = "cluster.local";

impl TrustDomainBundle {
    /// `trust_domain` and its `aliases`; an empty trust domain is left out.
    pub fn new(trust_domain: &str, aliases: &[String]) -> Self {
        let domains = std::iter::once(trust_domain)
            .filter(|td| !td.is_empty())
            .chain(aliases.iter().map(String::as_str))
            .map(str::to_owned)
            .collect();
        Self { domains }
    }

    /// `principals` (`td/ns/NS/sa/SA`, possibly with `*`) with, for each that names a
    /// trust domain of the bundle (or `cluster.local`), the same identity in every
    /// trust domain of the bundle instead.
    pub fn expand(&self, principals: &[String]) -> Vec<String> {
        let mut out = Vec::new();
        for principal in principals {
            let parts: Vec<&str> = principal.split('/').collect();
            let td = match parts.as_slice() {
                [td, _, _, _, _] if *td != "*" => *td,
                _ => {
                    out.push(principal.clone());
                    continue;
                }
            };
            if td == CLUSTER_LOCAL || self.domains.iter().any(|d| patterns_meet(td, d)) {
                out.extend(self.replace(principal, td, &parts[1..]));
            } else {
                out.push(principal.clone());
            }
        }
        out
    }

    /// The principal under each trust domain, keeping it as written for domains its
    /// own (possibly `*`-prefixed) trust domain already covers.
    fn replace(&self, principal: &str, td: &str, rest: &[&str]) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for domain in &self.domains {
            let candidate = if suffix_match(domain, td) {
                principal.to_owned()
            } else {
                format!("{domain}/{}", rest.join("/"))
            };
            if !out.contains(&candidate) {
                out.push(candidate);
            }
        }
        out
    }
}

/// Istio's `trustdomain.stringMatch` for one pair: either side may be the pattern.
fn patterns_meet(a: &str, b: &str) -> bool {
    a == b
        || b == "*"
        || prefix_match(a, b)
        || prefix_match(b, a)
        || suffix_match(a, b)
        || suffix_match(b, a)
}

/// True when `pattern` is `x*` and `a` starts with `x`.
fn prefix_match(a: &str, pattern: &str) -> bool {
    pattern
        .strip_suffix('*')
        .is_some_and(|head| a.starts_with(head))
}

/// True when `pattern` is `*x` and `a` ends with `x`.
fn suffix_match(a: &str, pattern: &str) -> bool {
    pattern
        .strip_prefix('*')
        .is_some_and(|tail| a.ends_with(tail))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bundle(td: &str, aliases: &[&str]) -> TrustDomainBundle {
        let aliases: Vec<String> = aliases.iter().map(|s| (*s).to_owned()).collect();
        TrustDomainBundle::new(td, &aliases)
    }

    fn expand(b: &TrustDomainBundle, p: &str) -> Vec<String> {
        b.expand(&[p.to_owned()])
    }

    #[test]
    fn aliases_expand_principals_of_known_trust_domains() {
        let b = bundle("td1", &["cluster.local"]);
        assert_eq!(
            expand(&b, "cluster.local/ns/a/sa/b"),
            ["td1/ns/a/sa/b", "cluster.local/ns/a/sa/b"]
        );
        // Unknown trust domains and wildcard ones stay as written.
        assert_eq!(expand(&b, "other/ns/a/sa/b"), ["other/ns/a/sa/b"]);
        assert_eq!(expand(&b, "*/ns/a/sa/b"), ["*/ns/a/sa/b"]);
        assert_eq!(expand(&b, "sa/b"), ["sa/b"]);
        // A suffix wildcard keeps its form for the domains it covers.
        let b = bundle("new-td", &["old-td", "some-trustdomain"]);
        assert_eq!(
            expand(&b, "*-td/ns/foo/sa/x"),
            ["*-td/ns/foo/sa/x", "some-trustdomain/ns/foo/sa/x"]
        );
    }
}
