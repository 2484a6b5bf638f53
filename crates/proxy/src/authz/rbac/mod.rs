//! Envoy's RBAC filters (`envoy.filters.http.rbac`, `envoy.filters.network.rbac`):
//! policies of permissions × principals, compiled once into an [`Engine`], enforced
//! (`rules`) or only evaluated and counted (`shadow_rules`, Istio's dry run and the
//! CUSTOM action's selector for ext_authz).

mod rule;
mod uri_template;

#[cfg(test)]
mod tests;

use std::collections::BTreeMap;
use std::sync::Arc;

use mizzen_xds::pb::envoy::config::rbac::v3::{Policy as PbPolicy, Rbac as PbRules, rbac::Action};
use mizzen_xds::pb::envoy::extensions::filters::http::rbac::v3::Rbac as PbHttpRbac;
use mizzen_xds::pb::envoy::extensions::filters::network::rbac::v3::Rbac as PbNetworkRbac;
use serde_json::Value;

use super::{Metadata, Subject};
use crate::route::{Invalid, Problem, Within};
use crate::stats::{Counter, HttpStats, Stats};
use rule::Rule;

/// The HTTP RBAC filter's name, and its namespace in dynamic metadata.
pub const HTTP_RBAC: &str = "envoy.filters.http.rbac";
/// The network RBAC filter's name, and its namespace in dynamic metadata.
pub const NETWORK_RBAC: &str = "envoy.filters.network.rbac";
/// The body of Envoy's answer to a request RBAC denies.
pub const DENIED_BODY: &str = "RBAC: access denied";
/// Where Envoy records that a LOG policy matched: `envoy.common`'s `access_log_hint`.
const LOG_NAMESPACE: &str = "envoy.common";

/// One RBAC filter, compiled: its enforced and shadow engines and its counters.
#[derive(Debug)]
pub struct Rbac {
    enforced: Option<Engine>,
    shadow: Option<Engine>,
    /// The filter's namespace in dynamic metadata.
    namespace: &'static str,
    /// `<shadow_rules_stat_prefix>shadow_effective_policy_id`.
    shadow_policy_key: String,
    /// `<shadow_rules_stat_prefix>shadow_engine_result`.
    shadow_result_key: String,
    stats: RbacStats,
}

/// Envoy's RBAC counters.
#[derive(Debug)]
struct RbacStats {
    allowed: Arc<Counter>,
    denied: Arc<Counter>,
    shadow_allowed: Arc<Counter>,
    shadow_denied: Arc<Counter>,
}

impl RbacStats {
    /// The four counters, named by `counter` after Envoy's `rbac.<rules_stat_prefix>allowed`
    /// and `rbac.<shadow_rules_stat_prefix>shadow_allowed` (within the owner's prefix).
    fn new(rules: &str, shadow: &str, counter: impl Fn(&str) -> Arc<Counter>) -> RbacStats {
        RbacStats {
            allowed: counter(&format!("rbac.{rules}allowed")),
            denied: counter(&format!("rbac.{rules}denied")),
            shadow_allowed: counter(&format!("rbac.{shadow}shadow_allowed")),
            shadow_denied: counter(&format!("rbac.{shadow}shadow_denied")),
        }
    }
}

impl Rbac {
    /// Compiles an HTTP RBAC filter whose counters live under its connection manager's
    /// `http.<stat_prefix>.`; errors name fields within the filter's config.
    pub(crate) fn http(config: &PbHttpRbac, stats: &HttpStats) -> Result<Rbac, Invalid> {
        if config.matcher.is_some() {
            return Err(Problem::Unsupported.at("matcher"));
        }
        if config.shadow_matcher.is_some() {
            return Err(Problem::Unsupported.at("shadow_matcher"));
        }
        Rbac::compile(
            config.rules.as_ref(),
            config.shadow_rules.as_ref(),
            HTTP_RBAC,
            &config.shadow_rules_stat_prefix,
            RbacStats::new(
                &config.rules_stat_prefix,
                &config.shadow_rules_stat_prefix,
                |name| stats.counter(name),
            ),
        )
    }

    /// Compiles a network RBAC filter, whose counters are `<stat_prefix>rbac.…`; errors
    /// name fields within the filter's config.
    pub(crate) fn network(config: &PbNetworkRbac, stats: &Stats) -> Result<Rbac, Invalid> {
        if config.matcher.is_some() {
            return Err(Problem::Unsupported.at("matcher"));
        }
        if config.shadow_matcher.is_some() {
            return Err(Problem::Unsupported.at("shadow_matcher"));
        }
        if config.stat_prefix.is_empty() {
            return Err(Problem::invalid("must not be empty").at("stat_prefix"));
        }
        if config.delay_deny.is_some() {
            return Err(Problem::Unsupported.at("delay_deny"));
        }
        // Envoy joins a prefix and `rbac.` with a dot unless the prefix ends with one.
        let prefix = config.stat_prefix.trim_end_matches('.');
        Rbac::compile(
            config.rules.as_ref(),
            config.shadow_rules.as_ref(),
            NETWORK_RBAC,
            &config.shadow_rules_stat_prefix,
            RbacStats::new("", &config.shadow_rules_stat_prefix, |name| {
                stats.counter(&format!("{prefix}.{name}"))
            }),
        )
    }

    fn compile(
        rules: Option<&PbRules>,
        shadow: Option<&PbRules>,
        namespace: &'static str,
        shadow_prefix: &str,
        stats: RbacStats,
    ) -> Result<Rbac, Invalid> {
        Ok(Rbac {
            enforced: rules
                .map(|r| Engine::compile(r).within("rules"))
                .transpose()?,
            shadow: shadow
                .map(|r| Engine::compile(r).within("shadow_rules"))
                .transpose()?,
            namespace,
            shadow_policy_key: format!("{shadow_prefix}shadow_effective_policy_id"),
            shadow_result_key: format!("{shadow_prefix}shadow_engine_result"),
            stats,
        })
    }

    /// Decides whether `subject` may go on, as Envoy's filter does: the shadow engine is
    /// evaluated and counted and its result left in `metadata`; then the enforced one
    /// decides (no enforced rules: allowed).
    pub fn check(&self, subject: &Subject<'_>, metadata: &mut Metadata) -> bool {
        if let Some(shadow) = &self.shadow {
            let verdict = shadow.evaluate(subject, metadata);
            let (counter, result) = match verdict.allowed {
                true => (&self.stats.shadow_allowed, "allowed"),
                false => (&self.stats.shadow_denied, "denied"),
            };
            counter.inc();
            if let Some(policy) = verdict.policy {
                metadata.set(
                    self.namespace,
                    &self.shadow_policy_key,
                    Value::String(policy.to_owned()),
                );
            }
            metadata.set(
                self.namespace,
                &self.shadow_result_key,
                Value::String(result.to_owned()),
            );
        }
        let Some(engine) = &self.enforced else {
            return true;
        };
        let verdict = engine.evaluate(subject, metadata);
        if engine.action == Action::Log {
            metadata.set(
                LOG_NAMESPACE,
                "access_log_hint",
                Value::Bool(verdict.policy.is_some()),
            );
        }
        if verdict.allowed {
            self.stats.allowed.inc();
        } else {
            self.stats.denied.inc();
            tracing::debug!(policy = verdict.policy, "rbac: access denied");
        }
        verdict.allowed
    }
}

/// A set of policies and what a match means.
#[derive(Debug)]
pub struct Engine {
    action: Action,
    /// By name: Envoy tries its policies in name order and stops at the first match.
    policies: Vec<(String, Policy)>,
}

/// What an engine decided, and the policy that decided it, if one matched.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Verdict<'e> {
    /// Whether the request or connection may go on.
    pub allowed: bool,
    /// The first policy (by name) that matched.
    pub policy: Option<&'e str>,
}

#[derive(Debug)]
struct Policy {
    permissions: Rule,
    principals: Rule,
}

impl Engine {
    /// Compiles a `config.rbac.v3.RBAC`; errors name fields within it.
    pub(crate) fn compile(rules: &PbRules) -> Result<Engine, Invalid> {
        let action = Action::try_from(rules.action).map_err(|_| {
            Problem::invalid(format!("unknown action {}", rules.action)).at("action")
        })?;
        if rules.audit_logging_options.is_some() {
            return Err(Problem::Unsupported.at("audit_logging_options"));
        }
        let sorted: BTreeMap<&String, &PbPolicy> = rules.policies.iter().collect();
        let policies = sorted
            .into_iter()
            .map(|(name, policy)| {
                Policy::compile(policy)
                    .within(&format!("policies[{name:?}]"))
                    .map(|p| (name.clone(), p))
            })
            .collect::<Result<_, _>>()?;
        Ok(Engine { action, policies })
    }

    /// Evaluates the policies: ALLOW allows what a policy matches, DENY what none
    /// matches, LOG allows everything.
    pub fn evaluate(&self, subject: &Subject<'_>, metadata: &Metadata) -> Verdict<'_> {
        let policy = self
            .policies
            .iter()
            .find(|(_, p)| p.matches(subject, metadata))
            .map(|(name, _)| name.as_str());
        let allowed = match self.action {
            Action::Allow => policy.is_some(),
            Action::Deny => policy.is_none(),
            Action::Log => true,
        };
        Verdict { allowed, policy }
    }
}

impl Policy {
    fn compile(p: &PbPolicy) -> Result<Policy, Invalid> {
        if p.condition.is_some() || p.checked_condition.is_some() {
            return Err(Problem::Unsupported.at("condition"));
        }
        let permissions = p
            .permissions
            .iter()
            .enumerate()
            .map(|(i, perm)| Rule::permission(perm).within(&format!("permissions[{i}]")))
            .collect::<Result<_, _>>()?;
        let principals = p
            .principals
            .iter()
            .enumerate()
            .map(|(i, id)| Rule::principal(id).within(&format!("principals[{i}]")))
            .collect::<Result<_, _>>()?;
        Ok(Policy {
            permissions: Rule::Or(permissions),
            principals: Rule::Or(principals),
        })
    }

    fn matches(&self, subject: &Subject<'_>, metadata: &Metadata) -> bool {
        self.permissions.matches(subject, metadata) && self.principals.matches(subject, metadata)
    }
}
