//! VirtualService delegation, merged once per push as istiod merges it: a root
//! VirtualService's HTTP route with `delegate` is replaced by the delegate's routes, each
//! narrowed by the root route's matches and filling in the actions it leaves unset.
//! A delegate (a VirtualService without hosts) is used only through its roots.

use std::collections::{BTreeMap, HashMap};

use mizzen_api::networking::{HttpMatchRequest, HttpRoute, VirtualService};
use mizzen_api::types::StringMatch;
use mizzen_api::{Kind, Object, Resource};

use super::{MeshConfig, resolve_host};
use crate::store::Snapshot;

/// The root VirtualServices of one config revision with their delegates merged in.
#[derive(Debug, Default)]
pub struct Delegation {
    /// Merged roots by (namespace, name); VirtualServices that delegate nothing are not here.
    merged: HashMap<(String, String), Resource<VirtualService>>,
}

impl Delegation {
    /// Merges every root VirtualService of `config` with its delegates.
    pub fn build(config: &Snapshot, mesh: &MeshConfig) -> Self {
        let virtual_services = || {
            config
                .of_kind(Kind::VirtualService)
                .filter_map(|o| match o.as_ref() {
                    Object::VirtualService(vs) => Some(vs),
                    _ => None,
                })
        };
        let delegates: HashMap<(&str, &str), &Resource<VirtualService>> = virtual_services()
            .filter(|vs| vs.spec.hosts.is_empty())
            .map(|vs| ((namespace_of(vs), name_of(vs)), vs))
            .collect();
        let merged = virtual_services()
            .filter(|vs| !vs.spec.hosts.is_empty())
            .filter(|vs| vs.spec.http.iter().any(|r| r.delegate.is_some()))
            .map(|root| {
                let key = (namespace_of(root).to_owned(), name_of(root).to_owned());
                (key, merge_root(root, &delegates, mesh))
            })
            .collect();
        Self { merged }
    }

    /// `vs` as the proxies see it: merged with its delegates when it is a root.
    pub fn resolve<'a>(&'a self, vs: &'a Resource<VirtualService>) -> &'a Resource<VirtualService> {
        if self.merged.is_empty() {
            return vs;
        }
        let key = (namespace_of(vs).to_owned(), name_of(vs).to_owned());
        self.merged.get(&key).unwrap_or(vs)
    }
}

fn namespace_of(vs: &Resource<VirtualService>) -> &str {
    vs.metadata.namespace.as_deref().unwrap_or("")
}

fn name_of(vs: &Resource<VirtualService>) -> &str {
    vs.metadata.name.as_deref().unwrap_or("")
}

/// `root` with each delegating route replaced by its delegate's routes; a delegate that is
/// missing or not exported to the root's namespace drops that route only.
fn merge_root(
    root: &Resource<VirtualService>,
    delegates: &HashMap<(&str, &str), &Resource<VirtualService>>,
    mesh: &MeshConfig,
) -> Resource<VirtualService> {
    let root_namespace = namespace_of(root);
    let mut out = root.clone();
    out.spec.http = Vec::with_capacity(root.spec.http.len());
    for route in &root.spec.http {
        let Some(d) = &route.delegate else {
            out.spec.http.push(route.clone());
            continue;
        };
        let namespace = if d.namespace.is_empty() {
            root_namespace
        } else {
            &d.namespace
        };
        let Some(delegate) = delegates.get(&(namespace, d.name.as_str())) else {
            tracing::warn!(
                root = %format_args!("{root_namespace}/{}", name_of(root)),
                delegate = %format_args!("{namespace}/{}", d.name),
                "delegate VirtualService not found; its route is left out"
            );
            continue;
        };
        if !exported_to(delegate, root_namespace) {
            tracing::warn!(
                root = %format_args!("{root_namespace}/{}", name_of(root)),
                delegate = %format_args!("{namespace}/{}", d.name),
                "delegate VirtualService is not exported to the root's namespace; its route is left out"
            );
            continue;
        }
        for sub in &delegate.spec.http {
            let mut sub = sub.clone();
            qualify_destinations(&mut sub, namespace, mesh);
            match merge_route(route, sub) {
                Some(merged) => out.spec.http.push(merged),
                None => tracing::warn!(
                    root = %format_args!("{root_namespace}/{}", name_of(root)),
                    delegate = %format_args!("{namespace}/{}", d.name),
                    "a delegate route's matches conflict with the root route's; it is left out"
                ),
            }
        }
    }
    out
}

/// Whether `delegate` is visible to `namespace` (no `exportTo` means everywhere, as
/// Istio's default `defaultVirtualServiceExportTo: ["*"]`).
fn exported_to(delegate: &Resource<VirtualService>, namespace: &str) -> bool {
    let export_to = &delegate.spec.export_to;
    export_to.is_empty()
        || export_to.iter().any(|e| {
            e == "*" || e == namespace || (e == "." && namespace_of(delegate) == namespace)
        })
}

/// Short destination hosts resolve in the delegate's namespace, not the root's.
fn qualify_destinations(route: &mut HttpRoute, namespace: &str, mesh: &MeshConfig) {
    let destinations = route
        .route
        .iter_mut()
        .map(|r| &mut r.destination)
        .chain(route.mirror.as_mut())
        .chain(route.mirrors.iter_mut().map(|m| &mut m.destination));
    for d in destinations {
        d.host = resolve_host(&d.host, namespace, mesh).to_string();
    }
}

/// The delegate's route narrowed by the root's matches, with the actions it leaves unset
/// taken from the root; `None` when the matches conflict.
fn merge_route(root: &HttpRoute, mut sub: HttpRoute) -> Option<HttpRoute> {
    sub.r#match = merge_matches(&root.r#match, std::mem::take(&mut sub.r#match))?;
    sub.name = joined(&root.name, &sub.name);
    fill(&mut sub.rewrite, &root.rewrite);
    fill(&mut sub.direct_response, &root.direct_response);
    fill(&mut sub.timeout, &root.timeout);
    fill(&mut sub.retries, &root.retries);
    fill(&mut sub.fault, &root.fault);
    fill(&mut sub.mirror, &root.mirror);
    fill(&mut sub.mirror_percent, &root.mirror_percent);
    fill(&mut sub.mirror_percentage, &root.mirror_percentage);
    fill(&mut sub.cors_policy, &root.cors_policy);
    fill(&mut sub.headers, &root.headers);
    if sub.mirrors.is_empty() {
        sub.mirrors = root.mirrors.clone();
    }
    Some(sub)
}

fn fill<T: Clone>(field: &mut Option<T>, root: &Option<T>) {
    if field.is_none() {
        field.clone_from(root);
    }
}

/// Istio's name joining: `root-delegate`, or whichever is set.
fn joined(root: &str, delegate: &str) -> String {
    match (root.is_empty(), delegate.is_empty()) {
        (_, true) => root.to_owned(),
        (true, false) => delegate.to_owned(),
        (false, false) => format!("{root}-{delegate}"),
    }
}

/// Each delegate match merged with every root match it does not conflict with; `None`
/// when some delegate match fits no root match.
fn merge_matches(
    root: &[HttpMatchRequest],
    delegate: Vec<HttpMatchRequest>,
) -> Option<Vec<HttpMatchRequest>> {
    if root.is_empty() {
        return Some(delegate);
    }
    if delegate.is_empty() {
        return Some(root.to_vec());
    }
    let mut out = Vec::new();
    for sub in &delegate {
        let before = out.len();
        out.extend(
            root.iter()
                .filter(|r| !conflicts(r, sub))
                .map(|r| merge_match(r, sub)),
        );
        if out.len() == before {
            return None;
        }
    }
    Some(out)
}

/// The delegate's match with the conditions it leaves unset taken from the root's.
fn merge_match(root: &HttpMatchRequest, sub: &HttpMatchRequest) -> HttpMatchRequest {
    let mut out = sub.clone();
    out.name = joined(&root.name, &sub.name);
    fill(&mut out.uri, &root.uri);
    fill(&mut out.scheme, &root.scheme);
    fill(&mut out.method, &root.method);
    fill(&mut out.authority, &root.authority);
    out.headers = union(&root.headers, &sub.headers);
    out.without_headers = union(&root.without_headers, &sub.without_headers);
    out.query_params = union(&root.query_params, &sub.query_params);
    out.source_labels = union(&root.source_labels, &sub.source_labels);
    if out.port == 0 {
        out.port = root.port;
    }
    if out.source_namespace.is_empty() {
        out.source_namespace.clone_from(&root.source_namespace);
    }
    if out.gateways.is_empty() {
        out.gateways.clone_from(&root.gateways);
    }
    if out.stat_prefix.is_empty() {
        out.stat_prefix.clone_from(&root.stat_prefix);
    }
    out
}

/// The root's entries overridden by the delegate's.
fn union<V: Clone>(root: &BTreeMap<String, V>, sub: &BTreeMap<String, V>) -> BTreeMap<String, V> {
    let mut out = root.clone();
    out.extend(sub.iter().map(|(k, v)| (k.clone(), v.clone())));
    out
}

/// Whether the delegate's match asks for something outside the root's (Istio's
/// `hasConflict`): the delegate may only narrow what the root matches.
fn conflicts(root: &HttpMatchRequest, leaf: &HttpMatchRequest) -> bool {
    let pairs = [
        (&root.uri, &leaf.uri),
        (&root.scheme, &leaf.scheme),
        (&root.method, &leaf.method),
        (&root.authority, &leaf.authority),
    ];
    if pairs
        .into_iter()
        .any(|(r, l)| string_match_conflict(r.as_ref(), l.as_ref()))
    {
        return true;
    }
    let keyed = [
        (&root.headers, &leaf.headers),
        (&root.without_headers, &leaf.without_headers),
        (&root.query_params, &leaf.query_params),
    ];
    if keyed.into_iter().any(|(r, l)| {
        l.iter()
            .any(|(k, leaf)| string_match_conflict(r.get(k), Some(leaf)))
    }) {
        return true;
    }
    if root.ignore_uri_case != leaf.ignore_uri_case
        || (root.port > 0 && leaf.port > 0 && root.port != leaf.port)
        || (!root.source_namespace.is_empty() && leaf.source_namespace != root.source_namespace)
    {
        return true;
    }
    if leaf
        .source_labels
        .iter()
        .any(|(k, v)| root.source_labels.get(k).is_some_and(|r| r != v))
    {
        return true;
    }
    !root.gateways.is_empty()
        && !leaf.gateways.is_empty()
        && leaf.gateways.iter().any(|g| !root.gateways.contains(g))
}

/// Istio's `stringMatchConflict`: a delegate's matcher must select a subset of the
/// root's — an equal exact, an exact or prefix under the root's prefix; regexes cannot
/// be compared, so a regex on one side conflicts with any matcher on the other.
fn string_match_conflict(root: Option<&StringMatch>, leaf: Option<&StringMatch>) -> bool {
    let (Some(root), Some(leaf)) = (root, leaf) else {
        return false;
    };
    let (exact, prefix, regex) = parts(root);
    let (leaf_exact, leaf_prefix, leaf_regex) = parts(leaf);
    let leaf_any = !leaf_exact.is_empty() || !leaf_prefix.is_empty() || !leaf_regex.is_empty();
    let root_any = !exact.is_empty() || !prefix.is_empty() || !regex.is_empty();
    if (!regex.is_empty() && leaf_any) || (!leaf_regex.is_empty() && root_any) {
        return true;
    }
    if !exact.is_empty() {
        return !leaf_prefix.is_empty() || leaf_exact != exact;
    }
    if !prefix.is_empty() {
        if !leaf_prefix.is_empty() {
            return !leaf_prefix.starts_with(prefix);
        }
        if !leaf_exact.is_empty() {
            return !leaf_exact.starts_with(prefix);
        }
    }
    true
}

/// (exact, prefix, regex), empty where not set, as Go's getters read a `StringMatch`.
fn parts(m: &StringMatch) -> (&str, &str, &str) {
    match m {
        StringMatch::Any => ("", "", ""),
        StringMatch::Exact(v) => (v, "", ""),
        StringMatch::Prefix(v) => ("", v, ""),
        StringMatch::Regex(v) => ("", "", v),
    }
}

#[cfg(test)]
mod tests;
