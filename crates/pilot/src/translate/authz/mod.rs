//! AuthorizationPolicy → Envoy RBAC and ext_authz filters, as Istio's authz builder
//! writes them: CUSTOM policies become a shadow RBAC filter that marks requests for
//! `ext_authz`; AUDIT, DENY (the root namespace's first) and ALLOW policies become one
//! RBAC filter each, in that order; dry-run policies go to shadow rules.

pub(crate) mod extauthz;
mod matcher;
mod rule;
mod trust_domain;

use std::collections::BTreeMap;

use mizzen_api::Resource;
use mizzen_api::security::AuthorizationPolicy;
use mizzen_xds::pb::envoy::config::listener::v3::{Filter, filter};
use mizzen_xds::pb::envoy::config::rbac::v3::{Policy, Rbac, rbac::Action};
use mizzen_xds::pb::envoy::extensions::filters::http::rbac::v3::Rbac as HttpRbac;
use mizzen_xds::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpFilter, http_filter,
};
use mizzen_xds::pb::envoy::extensions::filters::network::rbac::v3::Rbac as NetworkRbac;

pub use extauthz::ProviderError;
pub(crate) use matcher::{JWT_FILTER, JWT_PAYLOAD};
pub use rule::RuleError;
pub use trust_domain::TrustDomainBundle;

use crate::model::security::{AuthorizationPolicies, authorization_policies, is_dry_run};
use crate::model::{Proxy, PushContext};
use crate::translate::route::to_any;
use extauthz::{BuiltExtAuthz, EXT_AUTHZ_PREFIX, EXT_AUTHZ_STAT_PREFIX};
use rule::{Generation, RuleModel, match_never};

/// `envoy.filters.http.rbac`.
pub const HTTP_RBAC: &str = "envoy.filters.http.rbac";
/// `envoy.filters.network.rbac`.
pub const NETWORK_RBAC: &str = "envoy.filters.network.rbac";
/// `envoy.filters.http.ext_authz`.
pub const HTTP_EXT_AUTHZ: &str = "envoy.filters.http.ext_authz";
/// `envoy.filters.network.ext_authz`.
pub const NETWORK_EXT_AUTHZ: &str = "envoy.filters.network.ext_authz";
/// The stat prefix of RBAC and ext_authz on TCP chains.
const TCP_STAT_PREFIX: &str = "tcp.";
/// Shadow-rule stat prefixes of dry-run ALLOW and DENY policies.
const DRY_RUN_ALLOW_PREFIX: &str = "istio_dry_run_allow_";
const DRY_RUN_DENY_PREFIX: &str = "istio_dry_run_deny_";
/// Appended to the names of CUSTOM rules that deny because their provider is unusable.
const BAD_CUSTOM_SUFFIX: &str = "-deny-due-to-bad-CUSTOM-action";

/// The authorization of one proxy: the policies selecting it and how to build them.
#[derive(Debug)]
pub struct Authorization<'a> {
    push: &'a PushContext,
    policies: AuthorizationPolicies<'a>,
    trust_domains: TrustDomainBundle,
}

impl<'a> Authorization<'a> {
    /// The policies of `push` that apply to `proxy`.
    pub fn new(push: &'a PushContext, proxy: &Proxy) -> Self {
        Self {
            push,
            policies: authorization_policies(&push.config, &push.mesh.root_namespace, proxy),
            trust_domains: TrustDomainBundle::new(
                &push.mesh.trust_domain,
                &push.mesh.trust_domain_aliases,
            ),
        }
    }

    /// The HTTP filters, CUSTOM ones first, to put before the router.
    pub fn http_filters(&self) -> Vec<HttpFilter> {
        let mut out = self.custom_http_filters();
        out.extend(self.rbac_http_filters());
        out
    }

    /// The network filters, CUSTOM ones first, to put before `tcp_proxy`.
    pub fn network_filters(&self) -> Vec<Filter> {
        let mut out = self.custom_network_filters();
        out.extend(self.rbac_network_filters());
        out
    }

    /// The RBAC HTTP filters of AUDIT, DENY and ALLOW policies.
    pub fn rbac_http_filters(&self) -> Vec<HttpFilter> {
        self.by_action(false)
            .into_iter()
            .map(|built| {
                http(
                    HTTP_RBAC,
                    &HttpRbac {
                        shadow_rules_stat_prefix: shadow_prefix(built.shadow.as_ref()).to_owned(),
                        rules: built.rules,
                        shadow_rules: built.shadow,
                        ..HttpRbac::default()
                    },
                )
            })
            .collect()
    }

    /// The RBAC network filters of AUDIT, DENY and ALLOW policies.
    pub fn rbac_network_filters(&self) -> Vec<Filter> {
        self.by_action(true)
            .into_iter()
            .map(|built| {
                network(
                    NETWORK_RBAC,
                    &NetworkRbac {
                        stat_prefix: TCP_STAT_PREFIX.to_owned(),
                        shadow_rules_stat_prefix: shadow_prefix(built.shadow.as_ref()).to_owned(),
                        rules: built.rules,
                        shadow_rules: built.shadow,
                        ..NetworkRbac::default()
                    },
                )
            })
            .collect()
    }

    /// The filters of CUSTOM policies on HTTP chains: per provider, a shadow RBAC filter
    /// marking matching requests and the `ext_authz` filter acting on the mark.
    pub fn custom_http_filters(&self) -> Vec<HttpFilter> {
        let mut out = Vec::new();
        for (rules, built) in self.custom(false) {
            match built {
                Ok(ext) => {
                    out.push(http(HTTP_RBAC, &custom_rbac(rules)));
                    out.push(http(HTTP_EXT_AUTHZ, &ext.http));
                }
                Err(_) => out.push(http(
                    HTTP_RBAC,
                    &HttpRbac {
                        rules: Some(bad_custom(&rules.enforce)),
                        ..HttpRbac::default()
                    },
                )),
            }
        }
        out
    }

    /// The filters of CUSTOM policies on TCP chains (gRPC providers only; HTTP
    /// providers cannot check a TCP connection and are left out).
    pub fn custom_network_filters(&self) -> Vec<Filter> {
        let mut out = Vec::new();
        for (rules, built) in self.custom(true) {
            match built {
                Ok(BuiltExtAuthz { tcp: Some(tcp), .. }) => {
                    let rbac = custom_rbac(rules);
                    out.push(network(
                        NETWORK_RBAC,
                        &NetworkRbac {
                            stat_prefix: TCP_STAT_PREFIX.to_owned(),
                            rules: rbac.rules,
                            shadow_rules: rbac.shadow_rules,
                            shadow_rules_stat_prefix: rbac.shadow_rules_stat_prefix,
                            ..NetworkRbac::default()
                        },
                    ));
                    out.push(network(NETWORK_EXT_AUTHZ, &tcp));
                }
                Ok(_) => {}
                Err(_) => out.push(network(
                    NETWORK_RBAC,
                    &NetworkRbac {
                        stat_prefix: TCP_STAT_PREFIX.to_owned(),
                        rules: Some(bad_custom(&rules.enforce)),
                        ..NetworkRbac::default()
                    },
                )),
            }
        }
        out
    }

    /// AUDIT, root DENY, DENY and ALLOW rule sets, those with policies.
    fn by_action(&self, for_tcp: bool) -> Vec<Built> {
        let p = &self.policies;
        [
            (&p.audit, Action::Log),
            (&p.root_deny, Action::Deny),
            (&p.deny, Action::Deny),
            (&p.allow, Action::Allow),
        ]
        .into_iter()
        .filter(|(policies, _)| !policies.is_empty())
        .map(|(policies, action)| self.build(policies, action, for_tcp))
        .collect()
    }

    /// One action's policies as enforced and dry-run rules.
    fn build(
        &self,
        policies: &[&Resource<AuthorizationPolicy>],
        action: Action,
        for_tcp: bool,
    ) -> Built {
        let mut enforce = None;
        let mut shadow = None;
        for policy in policies {
            let target = if is_dry_run(policy) {
                &mut shadow
            } else {
                &mut enforce
            };
            let rules = target.get_or_insert_with(|| rbac(action));
            self.add_policy(rules, policy, action, for_tcp, "");
        }
        Built {
            rules: enforce,
            shadow,
        }
    }

    /// CUSTOM policies by provider, sorted by provider name, each with its ext_authz
    /// filters or why there are none. Several providers on one workload are refused
    /// (every rule then denies), as Istio does without its multi-provider flag.
    fn custom(&self, for_tcp: bool) -> Vec<(CustomRules, Result<BuiltExtAuthz, ProviderError>)> {
        let mut by_provider: BTreeMap<String, CustomRules> = BTreeMap::new();
        for policy in &self.policies.custom {
            let provider = policy
                .spec
                .provider
                .as_ref()
                .map(|p| p.name.clone())
                .unwrap_or_default();
            let rules = by_provider
                .entry(provider.clone())
                .or_insert_with(|| CustomRules {
                    enforce: rbac(Action::Deny),
                    dry_run: rbac(Action::Deny),
                });
            let target = if is_dry_run(policy) {
                &mut rules.dry_run
            } else {
                &mut rules.enforce
            };
            self.add_policy(target, policy, Action::Deny, for_tcp, &provider);
        }
        let providers: Vec<String> = by_provider.keys().cloned().collect();
        by_provider
            .into_iter()
            .map(|(provider, rules)| {
                let ext = if providers.len() > 1 {
                    Err(ProviderError::Several(providers.clone()))
                } else {
                    extauthz::build(self.push, &provider)
                };
                (rules, ext)
            })
            .collect()
    }

    /// Adds the RBAC policies of `policy`'s rules to `rules`: one per rule that can be
    /// expressed, a never-matching one for a policy without rules.
    fn add_policy(
        &self,
        rules: &mut Rbac,
        policy: &Resource<AuthorizationPolicy>,
        action: Action,
        for_tcp: bool,
        provider: &str,
    ) {
        let namespace = policy.metadata.namespace.as_deref().unwrap_or_default();
        let name = policy.metadata.name.as_deref().unwrap_or_default();
        let custom = policy.spec.action == mizzen_api::security::AuthorizationAction::Custom;
        let policy_name = |i: usize| {
            let prefix = match (custom, provider) {
                (false, _) => String::new(),
                (true, "") => format!("{EXT_AUTHZ_PREFIX}-"),
                (true, p) => format!("{EXT_AUTHZ_PREFIX}-{p}-"),
            };
            format!("{prefix}ns[{namespace}]-policy[{name}]-rule[{i}]")
        };
        let generation = Generation {
            for_tcp,
            strict: action == Action::Allow,
        };
        for (i, rule) in policy.spec.rules.iter().enumerate() {
            let Ok(mut model) = RuleModel::new(namespace, rule) else {
                continue;
            };
            model.migrate_trust_domain(&self.trust_domains);
            if let Ok(generated) = model.generate(generation) {
                rules.policies.insert(policy_name(i), generated);
            }
        }
        if policy.spec.rules.is_empty() {
            rules.policies.insert(policy_name(0), match_never());
        }
    }
}

/// Enforced and dry-run rules of one action.
struct Built {
    rules: Option<Rbac>,
    shadow: Option<Rbac>,
}

/// One CUSTOM provider's rules.
#[derive(Debug, Clone)]
struct CustomRules {
    enforce: Rbac,
    dry_run: Rbac,
}

fn rbac(action: Action) -> Rbac {
    Rbac {
        action: action as i32,
        ..Rbac::default()
    }
}

/// The RBAC filter in front of ext_authz: it never enforces; matching CUSTOM rules only
/// mark the request (shadow rules), dry-run ones as its enforced rules do the same.
fn custom_rbac(rules: CustomRules) -> HttpRbac {
    HttpRbac {
        shadow_rules: Some(rules.enforce),
        shadow_rules_stat_prefix: EXT_AUTHZ_STAT_PREFIX.to_owned(),
        rules: (!rules.dry_run.policies.is_empty()).then_some(rules.dry_run),
        ..HttpRbac::default()
    }
}

/// CUSTOM rules whose provider is unusable, as DENY rules: fail closed.
fn bad_custom(rules: &Rbac) -> Rbac {
    Rbac {
        action: Action::Deny as i32,
        policies: rules
            .policies
            .iter()
            .map(|(name, policy): (&String, &Policy)| {
                (format!("{name}{BAD_CUSTOM_SUFFIX}"), policy.clone())
            })
            .collect(),
        ..Rbac::default()
    }
}

/// Istio's shadow stat prefix: by the shadow rules' action, ALLOW's when there are none.
fn shadow_prefix(shadow: Option<&Rbac>) -> &'static str {
    match shadow.map_or(Action::Allow as i32, |s| s.action) {
        a if a == Action::Allow as i32 => DRY_RUN_ALLOW_PREFIX,
        a if a == Action::Deny as i32 => DRY_RUN_DENY_PREFIX,
        _ => "",
    }
}

fn http<M: prost::Name + prost::Message>(name: &str, config: &M) -> HttpFilter {
    HttpFilter {
        name: name.to_owned(),
        config_type: Some(http_filter::ConfigType::TypedConfig(to_any(config))),
        ..HttpFilter::default()
    }
}

fn network<M: prost::Name + prost::Message>(name: &str, config: &M) -> Filter {
    Filter {
        name: name.to_owned(),
        config_type: Some(filter::ConfigType::TypedConfig(to_any(config))),
    }
}
