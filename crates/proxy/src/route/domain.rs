//! Virtual host selection by authority, in Envoy's order: exact domains, then `*.suffix`
//! wildcards (longest first), then `prefix.*` wildcards (longest first), then `*`.
//! Domains are case-insensitive and matched against the authority as received, port and
//! all, unless the route configuration says to ignore the port.

use std::collections::{HashMap, HashSet};

use super::error::{Invalid, Problem};

/// Which virtual host (by position) serves which domain.
#[derive(Debug, Default)]
pub(crate) struct DomainIndex {
    exact: HashMap<Box<str>, usize>,
    /// `*.foo.com` stored as `.foo.com`, grouped by length, longest first.
    suffixes: Vec<(usize, HashMap<Box<str>, usize>)>,
    /// `foo.*` stored as `foo.`, grouped by length, longest first.
    prefixes: Vec<(usize, HashMap<Box<str>, usize>)>,
    any: Option<usize>,
}

impl DomainIndex {
    /// Indexes every virtual host's domains (`vhosts` gives each one's name and domains).
    /// On error, returns the position of the virtual host at fault, whose `domains` field the
    /// error names.
    pub(crate) fn build<'a>(
        vhosts: impl IntoIterator<Item = (&'a str, &'a [String])>,
    ) -> Result<DomainIndex, (usize, Invalid)> {
        let mut index = DomainIndex::default();
        let mut names = Vec::new();
        for (vhost, (name, domains)) in vhosts.into_iter().enumerate() {
            names.push(name);
            if domains.is_empty() {
                return Err((vhost, Problem::invalid("must list a domain").at("domains")));
            }
            let mut own = HashSet::new();
            for domain in domains {
                let domain = domain.to_ascii_lowercase();
                if !own.insert(domain.clone()) {
                    return Err((vhost, Problem::RepeatedDomain(domain).at("domains")));
                }
                let owner = index.insert(&domain, vhost);
                if owner != vhost {
                    let problem = Problem::DuplicateDomain {
                        domain,
                        other: names[owner].to_owned(),
                    };
                    return Err((vhost, problem.at("domains")));
                }
            }
        }
        Ok(index)
    }

    /// Records that `vhost` serves `domain` (lower-cased), unless another virtual host
    /// already does; returns the domain's owner either way.
    fn insert(&mut self, domain: &str, vhost: usize) -> usize {
        let (map, key) = if domain == "*" {
            return *self.any.get_or_insert(vhost);
        } else if let Some(suffix) = domain.strip_prefix('*') {
            (group(&mut self.suffixes, suffix.len()), suffix)
        } else if let Some(prefix) = domain.strip_suffix('*') {
            (group(&mut self.prefixes, prefix.len()), prefix)
        } else {
            (&mut self.exact, domain)
        };
        *map.entry(key.into()).or_insert(vhost)
    }

    /// Whether every authority goes to one virtual host, so none needs reading.
    pub(crate) fn only_default(&self) -> Option<usize> {
        (self.exact.is_empty() && self.suffixes.is_empty() && self.prefixes.is_empty())
            .then_some(self.any)
            .flatten()
    }

    /// The virtual host for `host`, which must already be lower-cased.
    pub(crate) fn find(&self, host: &str) -> Option<usize> {
        if let Some(&vhost) = self.exact.get(host) {
            return Some(vhost);
        }
        wildcard(&self.suffixes, host, |len| host.get(host.len() - len..))
            .or_else(|| wildcard(&self.prefixes, host, |len| host.get(..len)))
            .or(self.any)
    }
}

/// The longest wildcard in `groups` matching `host`, `part(len)` being the part of `host` a
/// wildcard of that length compares with (`None` if it would split a character).
fn wildcard<'h>(
    groups: &[(usize, HashMap<Box<str>, usize>)],
    host: &'h str,
    part: impl Fn(usize) -> Option<&'h str>,
) -> Option<usize> {
    groups
        .iter()
        // A wildcard never matches the empty string: `*.foo.com` does not match `.foo.com`.
        .filter(|(len, _)| *len < host.len())
        .find_map(|(len, map)| map.get(part(*len)?).copied())
}

/// The map for wildcards of length `len`, created in place to keep `groups` longest first.
fn group(
    groups: &mut Vec<(usize, HashMap<Box<str>, usize>)>,
    len: usize,
) -> &mut HashMap<Box<str>, usize> {
    let at = match groups.binary_search_by(|(l, _)| len.cmp(l)) {
        Ok(at) => at,
        Err(at) => {
            groups.insert(at, (len, HashMap::new()));
            at
        }
    };
    &mut groups[at].1
}
