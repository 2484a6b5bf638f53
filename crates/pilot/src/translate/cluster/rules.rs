//! Which DestinationRule applies to a service for a proxy, and the traffic policy in
//! force for one cluster after Istio's merge (rule < rule port < subset < subset port).

use std::collections::HashMap;

use mizzen_api::networking::{
    ClientTlsSettings, ConnectionPoolSettings, DestinationRule, LoadBalancerSettings,
    OutlierDetection, Subset, TrafficPolicy,
};
use mizzen_api::{Kind, Object};

use crate::model::{Hostname, Proxy, PushContext, Service, resolve_host};

/// A DestinationRule with its host resolved to a fully qualified name.
#[derive(Debug, Clone)]
pub struct RuleRef<'a> {
    /// The rule's name.
    pub name: &'a str,
    /// The rule's namespace.
    pub namespace: &'a str,
    /// `host`, short names expanded as Istio does (`reviews` in `default` →
    /// `reviews.default.svc.cluster.local`).
    pub host: Hostname,
    /// The rule.
    pub spec: &'a DestinationRule,
}

impl RuleRef<'_> {
    /// The subset named `name`.
    pub fn subset(&self, name: &str) -> Option<&Subset> {
        self.spec.subsets.iter().find(|s| s.name == name)
    }

    /// The path Istio records in cluster metadata (`istio.config`).
    pub fn config_path(&self) -> String {
        format!(
            "/apis/networking.istio.io/v1alpha3/namespaces/{}/destination-rule/{}",
            self.namespace, self.name
        )
    }

    /// True when the rule is exported to `namespace` (`exportTo`; empty means everywhere).
    fn exported_to(&self, namespace: &str) -> bool {
        self.spec.export_to.is_empty()
            || self
                .spec
                .export_to
                .iter()
                .any(|e| e == "*" || e == namespace || (e == "." && self.namespace == namespace))
    }
}

/// Every DestinationRule of a push, indexed for lookup by service. Build it once per
/// translation and share it between the clusters, endpoints and routes of a proxy.
#[derive(Debug, Clone, Default)]
pub struct DestinationRules<'a> {
    rules: Vec<RuleRef<'a>>,
    /// Indexes into `rules` by exact host, so a lookup costs the rules of one host, not
    /// of the whole mesh.
    by_host: HashMap<Hostname, Vec<usize>>,
    /// Indexes into `rules` of wildcard hosts (`*.example.com`), few in practice.
    wildcards: Vec<usize>,
    root_namespace: String,
}

impl<'a> DestinationRules<'a> {
    /// Indexes the DestinationRules of `push`, in namespace then name order.
    pub fn new(push: &'a PushContext) -> Self {
        let rules = push
            .config
            .of_kind(Kind::DestinationRule)
            .filter_map(|object| match &**object {
                Object::DestinationRule(r) => {
                    let namespace = r.metadata.namespace.as_deref().unwrap_or_default();
                    Some(RuleRef {
                        name: r.metadata.name.as_deref().unwrap_or_default(),
                        namespace,
                        host: resolve_host(&r.spec.host, namespace, &push.mesh),
                        spec: &r.spec,
                    })
                }
                _ => None,
            })
            .collect::<Vec<RuleRef<'a>>>();
        let mut by_host: HashMap<Hostname, Vec<usize>> = HashMap::new();
        let mut wildcards = Vec::new();
        for (i, rule) in rules.iter().enumerate() {
            if rule.host.is_wildcard() {
                wildcards.push(i);
            } else {
                by_host.entry(rule.host.clone()).or_default().push(i);
            }
        }
        Self {
            rules,
            by_host,
            wildcards,
            root_namespace: push.mesh.root_namespace.clone(),
        }
    }

    /// The rule for `service` as seen by `proxy`, looked up as Istio does: the most
    /// specific host match among the rules in the proxy's namespace, then among those the
    /// service's namespace exports to it, then among those the root namespace exports.
    /// A rule with a workload selector only applies to matching proxies of its namespace,
    /// and wins over one without.
    pub fn for_service(&self, proxy: &Proxy, service: &Service) -> Option<&RuleRef<'a>> {
        let applies = |r: &&RuleRef<'a>| match &r.spec.workload_selector {
            Some(selector) => r.namespace == proxy.namespace && selector.matches(&proxy.labels),
            None => true,
        };
        let local = self
            .most_specific(&service.hostname, |r| {
                r.namespace == proxy.namespace && applies(&r) && r.spec.workload_selector.is_some()
            })
            .or_else(|| {
                self.most_specific(&service.hostname, |r| {
                    r.namespace == proxy.namespace && r.spec.workload_selector.is_none()
                })
            });
        local
            .or_else(|| {
                self.most_specific(&service.hostname, |r| {
                    r.namespace == service.namespace
                        && r.spec.workload_selector.is_none()
                        && r.exported_to(&proxy.namespace)
                })
            })
            .or_else(|| {
                self.most_specific(&service.hostname, |r| {
                    r.namespace == self.root_namespace
                        && r.spec.workload_selector.is_none()
                        && r.exported_to(&proxy.namespace)
                })
            })
    }

    /// Among the rules accepted by `filter`, the one whose host equals `host`, else the
    /// longest wildcard host covering it; the first in name order on ties.
    fn most_specific(
        &self,
        host: &Hostname,
        filter: impl Fn(&RuleRef<'a>) -> bool,
    ) -> Option<&RuleRef<'a>> {
        let exact = self.by_host.get(host).map_or(&[][..], Vec::as_slice);
        let rule = |i: &usize| &self.rules[*i];
        exact.iter().map(rule).find(|r| filter(r)).or_else(|| {
            self.wildcards
                .iter()
                .map(rule)
                .filter(|r| filter(r) && r.host.matches(host))
                .fold(None, |best: Option<&RuleRef<'a>>, r| match best {
                    Some(b) if b.host.as_str().len() >= r.host.as_str().len() => Some(b),
                    _ => Some(r),
                })
        })
    }
}

/// The parts of a traffic policy that shape one cluster, after merging.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Policy<'a> {
    /// Load balancing.
    pub load_balancer: Option<&'a LoadBalancerSettings>,
    /// Connection pool limits.
    pub connection_pool: Option<&'a ConnectionPoolSettings>,
    /// Ejection of failing hosts.
    pub outlier_detection: Option<&'a OutlierDetection>,
    /// Client TLS.
    pub tls: Option<&'a ClientTlsSettings>,
}

impl<'a> Policy<'a> {
    /// The policy for `port`: the port-level settings for it when there are some (which
    /// replace the top-level ones wholesale, unset fields falling back to defaults, as
    /// Istio documents), else the top-level ones. The flag tells which.
    pub fn for_port(policy: Option<&'a TrafficPolicy>, port: u16) -> (Option<Self>, bool) {
        let Some(policy) = policy else {
            return (None, false);
        };
        let port_level = policy
            .port_level_settings
            .iter()
            .find(|p| p.port.is_some_and(|s| s.number == u32::from(port)));
        match port_level {
            Some(p) => (
                Some(Policy {
                    load_balancer: p.load_balancer.as_ref(),
                    connection_pool: p.connection_pool.as_ref(),
                    outlier_detection: p.outlier_detection.as_ref(),
                    tls: p.tls.as_ref(),
                }),
                true,
            ),
            None => (
                Some(Policy {
                    load_balancer: policy.load_balancer.as_ref(),
                    connection_pool: policy.connection_pool.as_ref(),
                    outlier_detection: policy.outlier_detection.as_ref(),
                    tls: policy.tls.as_ref(),
                }),
                false,
            ),
        }
    }

    /// The policy for `port` of the subset with policy `subset` of a rule whose policy is
    /// `rule`: a subset field overrides the rule's when set, and all of them do when the
    /// subset has port-level settings for the port (Istio's `MergeSubsetTrafficPolicy`).
    pub fn merged(
        rule: Option<&'a TrafficPolicy>,
        subset: Option<&'a TrafficPolicy>,
        port: u16,
    ) -> Option<Self> {
        let (base, _) = Self::for_port(rule, port);
        let (over, port_level) = Self::for_port(subset, port);
        let Some(over) = over else {
            return base;
        };
        let Some(base) = base else {
            return Some(over);
        };
        fn pick<T>(over: Option<T>, base: Option<T>, port_level: bool) -> Option<T> {
            if port_level { over } else { over.or(base) }
        }
        Some(Policy {
            load_balancer: pick(over.load_balancer, base.load_balancer, port_level),
            connection_pool: pick(over.connection_pool, base.connection_pool, port_level),
            outlier_detection: pick(over.outlier_detection, base.outlier_detection, port_level),
            tls: pick(over.tls, base.tls, port_level),
        })
    }

    /// The policy for one cluster of `rule`: the whole service's (`subset` empty) or a
    /// subset's.
    pub fn for_cluster(rule: Option<&RuleRef<'a>>, subset: &str, port: u16) -> Policy<'a> {
        let Some(rule) = rule else {
            return Policy::default();
        };
        let top = rule.spec.traffic_policy.as_deref();
        let merged = if subset.is_empty() {
            Self::for_port(top, port).0
        } else {
            let sub = rule
                .spec
                .subsets
                .iter()
                .find(|s| s.name == subset)
                .and_then(|s| s.traffic_policy.as_deref());
            Self::merged(top, sub, port)
        };
        merged.unwrap_or_default()
    }
}
