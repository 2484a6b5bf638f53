//! `security.istio.io` AuthorizationPolicy: access control on workloads, matching
//! requests by source, operation and conditions.

use serde::{Deserialize, Serialize};

use super::peer_authentication::{DRY_RUN_ANNOTATION, warn_empty_selector};
use super::request_authentication::POLICY_TARGET_KINDS;
use crate::types::{PolicyTargetReference, WorkloadSelector, is_default, string_enum};
use crate::validate::{Validate, Validator, check_max_items, check_policy_targets};

/// The CRD's `maxItems` for `rules` and for a rule's `from`.
const MAX_RULES: usize = 512;
/// The CRD's `maxItems` for `targetRefs`.
const MAX_TARGET_REFS: usize = 16;
/// The CRD's `maxItems` for `serviceAccounts` (and Istio's own limit).
const MAX_SERVICE_ACCOUNTS: usize = 16;
/// The CRD's `maxLength` for a service account entry.
const MAX_SERVICE_ACCOUNT_LEN: usize = 320;

/// `AuthorizationPolicy`: allows, denies, audits or delegates (CUSTOM) requests to the
/// workloads it selects when one of its rules matches.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct AuthorizationPolicy {
    /// The workloads the policy applies to; absent means every workload in its namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<WorkloadSelector>,
    /// A single resource (Gateway, Service…) the policy attaches to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_ref: Option<PolicyTargetReference>,
    /// The resources the policy attaches to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_refs: Vec<PolicyTargetReference>,
    /// The rules; a request matching any of them gets the action. No rules: an ALLOW
    /// policy denies everything, other actions never trigger.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<Rule>,
    /// What happens to a matching request; ALLOW when unset.
    #[serde(default, skip_serializing_if = "is_default")]
    pub action: AuthorizationAction,
    /// The extension provider that decides, for the CUSTOM action only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provider: Option<ExtensionProvider>,
}

string_enum! {
    /// Istio's `AuthorizationPolicy.Action`.
    pub enum AuthorizationAction {
        /// Allow a request only if it matches a rule.
        Allow = "ALLOW",
        /// Deny a request if it matches a rule.
        Deny = "DENY",
        /// Audit a request if it matches a rule.
        Audit = "AUDIT",
        /// Hand the decision to the extension provider named in `provider`.
        Custom = "CUSTOM",
    }
}

/// Istio's `AuthorizationPolicy.ExtensionProvider`: a mesh-config extension provider.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExtensionProvider {
    /// The provider's name in MeshConfig `extensionProviders`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
}

/// Istio's `Rule`: a request matches when it matches any `from`, any `to` and every
/// `when` (absent parts match everything).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Rule {
    /// Where the request comes from.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub from: Vec<RuleFrom>,
    /// What the request does.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub to: Vec<RuleTo>,
    /// Further conditions on request attributes.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub when: Vec<Condition>,
}

/// Istio's `Rule.From`: one source specification.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleFrom {
    /// The source; required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<Source>,
}

/// Istio's `Rule.To`: one operation specification.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RuleTo {
    /// The operation; required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub operation: Option<Operation>,
}

/// Istio's `Source`: the peer and request identities a request comes from. Fields are
/// ANDed; values within a field are ORed; `not*` fields exclude. Strings may use a
/// leading or trailing `*`.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Source {
    /// Peer identities (`<trust-domain>/ns/<ns>/sa/<sa>`); need mTLS.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub principals: Vec<String>,
    /// Excluded peer identities.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_principals: Vec<String>,
    /// Request identities (`<iss>/<sub>` from a verified JWT).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub request_principals: Vec<String>,
    /// Excluded request identities.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_request_principals: Vec<String>,
    /// Namespaces of the peer workload; need mTLS.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub namespaces: Vec<String>,
    /// Excluded peer namespaces.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_namespaces: Vec<String>,
    /// Peer service accounts (`sa` in the policy's namespace, or `ns/sa`); no
    /// wildcards, at most 16; exclusive with principals and namespaces.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub service_accounts: Vec<String>,
    /// Excluded peer service accounts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_service_accounts: Vec<String>,
    /// Peer IPs or CIDR blocks (the connection's source address).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ip_blocks: Vec<String>,
    /// Excluded peer IPs or CIDR blocks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_ip_blocks: Vec<String>,
    /// Original client IPs or CIDR blocks (from `X-Forwarded-For` or PROXY protocol).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remote_ip_blocks: Vec<String>,
    /// Excluded original client IPs or CIDR blocks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_remote_ip_blocks: Vec<String>,
    /// Trust domains of the peer identity; need mTLS.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub trust_domains: Vec<String>,
    /// Excluded peer trust domains.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_trust_domains: Vec<String>,
}

/// Istio's `Operation`: what a request does. Fields are ANDed; values within a field
/// are ORed; `not*` fields exclude. Only `ports` apply to plain TCP.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Operation {
    /// Hosts (`Host`/`:authority`), matched case-insensitively; `*` prefix or suffix.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Excluded hosts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_hosts: Vec<String>,
    /// Destination ports, as strings.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<String>,
    /// Excluded destination ports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_ports: Vec<String>,
    /// HTTP methods (gRPC requests are always `POST`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub methods: Vec<String>,
    /// Excluded HTTP methods.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_methods: Vec<String>,
    /// Paths (normalized per mesh config); `*` prefix or suffix, or `{*}`/`{**}` templates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    /// Excluded paths.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_paths: Vec<String>,
}

/// Istio's `Condition`: an attribute (`key`) and the values it must, or must not, have.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Condition {
    /// The attribute, e.g. `request.headers[x-token]` or `source.ip`; required.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub key: String,
    /// Values the attribute must match one of.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub values: Vec<String>,
    /// Values the attribute must match none of.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub not_values: Vec<String>,
}

impl Source {
    /// True when no field is set (Istio refuses such a source).
    pub fn is_empty(&self) -> bool {
        self == &Source::default()
    }

    /// True when a field matches attributes of the connection (peer identity or
    /// address), which plain TCP traffic carries, as opposed to JWT request principals.
    fn has_tcp_attributes(&self) -> bool {
        [
            &self.principals,
            &self.not_principals,
            &self.namespaces,
            &self.not_namespaces,
            &self.service_accounts,
            &self.not_service_accounts,
            &self.ip_blocks,
            &self.not_ip_blocks,
            &self.remote_ip_blocks,
            &self.not_remote_ip_blocks,
            &self.trust_domains,
            &self.not_trust_domains,
        ]
        .iter()
        .any(|values| !values.is_empty())
    }
}

impl Operation {
    /// True when no field is set (Istio refuses such an operation).
    pub fn is_empty(&self) -> bool {
        self == &Operation::default()
    }
}

impl Validate for AuthorizationPolicy {
    fn validate(&self, v: &mut Validator<'_>) {
        self.check_dry_run(v);
        check_policy_targets(
            v,
            self.selector.as_ref(),
            self.target_ref.as_ref(),
            &self.target_refs,
            POLICY_TARGET_KINDS,
        );
        warn_empty_selector(v, self.selector.as_ref());
        check_max_items(v, "targetRefs", self.target_refs.len(), MAX_TARGET_REFS);
        check_max_items(v, "rules", self.rules.len(), MAX_RULES);
        const NEVER_TRIGGERED: &str = "action without `rules` is meaningless as it will never be triggered, add an empty rule `{}` if you want it be triggered for every request";
        match self.action {
            AuthorizationAction::Custom if self.rules.is_empty() => {
                v.error_at("rules", format!("CUSTOM {NEVER_TRIGGERED}"));
            }
            AuthorizationAction::Custom
                if self.provider.as_ref().is_none_or(|p| p.name.is_empty()) =>
            {
                v.field("provider", |v| {
                    v.error_at("name", "Required value: `provider.name` must not be empty");
                });
            }
            AuthorizationAction::Deny if self.rules.is_empty() => {
                v.error_at("rules", format!("DENY {NEVER_TRIGGERED}"));
            }
            _ => {}
        }
        if self.provider.is_some() && self.action != AuthorizationAction::Custom {
            v.error_at(
                "provider",
                format!(
                    "`provider` must not be with non CUSTOM action, found {}",
                    self.action
                ),
            );
        }
        v.each("rules", &self.rules, |v, rule| rule.check(v, self.action));
    }
}

impl AuthorizationPolicy {
    /// Istio's `istio.io/dry-run` annotation: a boolean, for ALLOW and DENY only.
    fn check_dry_run(&self, v: &mut Validator<'_>) {
        let meta = v.meta();
        let Some(value) = meta
            .annotations
            .as_ref()
            .and_then(|a| a.get(DRY_RUN_ANNOTATION))
        else {
            return;
        };
        let name = format!(
            "{}/{}",
            v.namespace(),
            meta.name.as_deref().unwrap_or_default()
        );
        match self.action {
            AuthorizationAction::Allow | AuthorizationAction::Deny => {
                if parse_go_bool(value).is_none() {
                    v.error(format!(
                        "{name} has annotation {DRY_RUN_ANNOTATION} with invalid value ({value}): strconv.ParseBool: parsing {value:?}: invalid syntax"
                    ));
                }
            }
            action => v.error_at(
                "action",
                format!(
                    "the annotation {DRY_RUN_ANNOTATION} currently only supports action ALLOW/DENY, found action {action} in {name}"
                ),
            ),
        }
    }

    /// True when the `istio.io/dry-run` annotation asks for dry-run mode: the policy is
    /// evaluated and logged, but not enforced. `meta` is the policy's metadata.
    pub fn is_dry_run(meta: &crate::ObjectMeta) -> bool {
        meta.annotations
            .as_ref()
            .and_then(|a| a.get(DRY_RUN_ANNOTATION))
            .and_then(|value| parse_go_bool(value))
            .unwrap_or(false)
    }
}

/// Go's `strconv.ParseBool`, which Istio reads the dry-run annotation with.
fn parse_go_bool(value: &str) -> Option<bool> {
    match value {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

impl Rule {
    fn check(&self, v: &mut Validator<'_>, action: AuthorizationAction) {
        check_max_items(v, "from", self.from.len(), MAX_RULES);
        let custom = action == AuthorizationAction::Custom;
        v.each("from", &self.from, |v, from| match &from.source {
            None => v.error_at("source", "Required value: `from.source` must not be nil"),
            Some(source) => v.field("source", |v| source.check(v, custom)),
        });
        v.each("to", &self.to, |v, to| match &to.operation {
            None => v.error_at(
                "operation",
                "Required value: `to.operation` must not be nil",
            ),
            Some(operation) => v.check("operation", operation),
        });
        v.each("when", &self.when, |v, condition| {
            condition.check(v, custom)
        });

        let sources = || self.from.iter().filter_map(|f| f.source.as_ref());
        let operations = || self.to.iter().filter_map(|t| t.operation.as_ref());
        let from_exists = sources().next().is_some();
        let to_exists = operations().next().is_some();
        let tcp_in_from = sources().any(Source::has_tcp_attributes);
        let tcp_in_to = operations().any(|o| !o.ports.is_empty() || !o.not_ports.is_empty());
        let http_only = (from_exists && !to_exists && !tcp_in_from) || (to_exists && !tcp_in_to);
        if action == AuthorizationAction::Deny && http_only {
            v.warn("configured AuthorizationPolicy will deny all traffic to TCP ports under its scope due to the use of only HTTP attributes in a DENY rule; it is recommended to explicitly specify the port");
        }
    }
}

impl Source {
    fn check(&self, v: &mut Validator<'_>, custom: bool) {
        if self.is_empty() {
            v.error("`from.source` must not be empty");
        }
        let identities = [
            &self.principals,
            &self.not_principals,
            &self.namespaces,
            &self.not_namespaces,
        ];
        let accounts = !self.service_accounts.is_empty() || !self.not_service_accounts.is_empty();
        if accounts && identities.iter().any(|values| !values.is_empty()) {
            v.error("Cannot set serviceAccounts with namespaces or principals");
        }
        for (name, values) in [
            ("principals", &self.principals),
            ("notPrincipals", &self.not_principals),
            ("requestPrincipals", &self.request_principals),
            ("notRequestPrincipals", &self.not_request_principals),
            ("namespaces", &self.namespaces),
            ("notNamespaces", &self.not_namespaces),
            ("trustDomains", &self.trust_domains),
            ("notTrustDomains", &self.not_trust_domains),
        ] {
            v.each(name, values, |v, value| check_not_empty(v, value));
        }
        for (name, values) in [
            ("ipBlocks", &self.ip_blocks),
            ("notIpBlocks", &self.not_ip_blocks),
            ("remoteIpBlocks", &self.remote_ip_blocks),
            ("notRemoteIpBlocks", &self.not_remote_ip_blocks),
        ] {
            v.each(name, values, |v, value| {
                if let Err(e) = check_empty_then(value, ip_error) {
                    v.error(e);
                }
            });
        }
        for (name, values) in [
            ("serviceAccounts", &self.service_accounts),
            ("notServiceAccounts", &self.not_service_accounts),
        ] {
            check_service_accounts(v, name, values);
        }
        if custom {
            for (name, istio, values) in [
                ("namespaces", "From.Namespaces", &self.namespaces),
                ("notNamespaces", "From.NotNamespaces", &self.not_namespaces),
                (
                    "serviceAccounts",
                    "From.ServiceAccounts",
                    &self.service_accounts,
                ),
                (
                    "notServiceAccounts",
                    "From.NotServiceAccounts",
                    &self.not_service_accounts,
                ),
                ("principals", "From.Principals", &self.principals),
                ("notPrincipals", "From.NotPrincipals", &self.not_principals),
                (
                    "requestPrincipals",
                    "From.RequestPrincipals",
                    &self.request_principals,
                ),
                (
                    "notRequestPrincipals",
                    "From.NotRequestPrincipals",
                    &self.not_request_principals,
                ),
            ] {
                if !values.is_empty() {
                    v.error_at(
                        name,
                        format!("{istio} is currently not supported with CUSTOM action"),
                    );
                }
            }
        }
    }
}

impl Validate for Operation {
    fn validate(&self, v: &mut Validator<'_>) {
        if self.is_empty() {
            v.error("`to.operation` must not be empty");
        }
        for (name, values) in [("ports", &self.ports), ("notPorts", &self.not_ports)] {
            v.each(name, values, |v, value| {
                if let Err(e) = check_empty_then(value, port_error) {
                    v.error(e);
                }
            });
        }
        for (name, values) in [
            ("hosts", &self.hosts),
            ("notHosts", &self.not_hosts),
            ("methods", &self.methods),
            ("notMethods", &self.not_methods),
        ] {
            v.each(name, values, |v, value| check_not_empty(v, value));
        }
        for (name, values) in [("paths", &self.paths), ("notPaths", &self.not_paths)] {
            v.each(name, values, |v, value| {
                if let Err(e) = check_empty_then(value, |p| path_template_error(p, name)) {
                    v.error(e);
                }
            });
        }
    }
}

/// The shape a condition's values must have, by attribute.
#[derive(Clone, Copy, PartialEq)]
enum Values {
    /// Any non-empty string.
    Any,
    /// IPs or CIDR blocks.
    Ips,
    /// Port numbers.
    Ports,
    /// Service accounts (`sa` or `ns/sa`).
    ServiceAccounts,
}

/// Classifies a condition key as Istio's `ValidateAttribute` does, or says why it is not
/// one of the documented attributes.
fn condition_key(key: &str) -> Result<Values, String> {
    let map_key = |key: &str| {
        let open = key.find('[');
        match open {
            Some(open) if key.ends_with(']') && open > 0 && open + 2 < key.len() => Ok(Values::Any),
            _ => Err(format!("bad key ({key}): should have format a[b]")),
        }
    };
    match key {
        _ if key.starts_with("request.headers") => map_key(key),
        _ if key.starts_with("request.experimental.inline.headers") => map_key(key),
        "source.ip" | "remote.ip" | "destination.ip" => Ok(Values::Ips),
        "destination.port" => Ok(Values::Ports),
        "source.serviceAccount" => Ok(Values::ServiceAccounts),
        "source.namespace"
        | "source.principal"
        | "source.trustDomain"
        | "request.auth.principal"
        | "request.auth.audiences"
        | "request.auth.presenter"
        | "connection.sni" => Ok(Values::Any),
        _ if key.starts_with("request.auth.claims") => map_key(key),
        _ if key.starts_with("experimental.envoy.filters.") => map_key(key),
        "destination.namespace" => Err(format!(
            "attribute {key} is replaced by the metadata.namespace"
        )),
        _ if key.starts_with("destination.labels") => Err(format!(
            "attribute {key} is replaced by the workload selector"
        )),
        "destination.name" | "destination.user" => Err(format!(
            "deprecated attribute {key}: only supported in v1alpha1"
        )),
        _ => Err(format!("unknown attribute: {key}")),
    }
}

impl Condition {
    fn check(&self, v: &mut Validator<'_>, custom: bool) {
        if self.key.is_empty() {
            v.error_at("key", "Required value: `key` must not be empty");
            return;
        }
        let key = self.key.as_str();
        if self.values.is_empty() && self.not_values.is_empty() {
            v.error(format!(
                "at least one of `values` or `notValues` must be set for key {key}"
            ));
        }
        let shape = match condition_key(key) {
            Ok(shape) => shape,
            Err(e) => {
                v.error_at("key", e);
                Values::Any
            }
        };
        if custom
            && (matches!(
                key,
                "source.namespace" | "source.serviceAccount" | "source.principal"
            ) || key.starts_with("request.auth."))
        {
            v.error_at(
                "key",
                format!("{key} is currently not supported with CUSTOM action"),
            );
        }
        for (name, label, values) in [
            ("values", "value", &self.values),
            ("notValues", "notValue", &self.not_values),
        ] {
            if shape == Values::ServiceAccounts {
                report_service_account_error(v, name, service_account_error(key, values), |e| {
                    format!("invalid `{label}` for `key` {key}: {e}")
                });
                continue;
            }
            v.each(name, values, |v, value| {
                let checked = check_empty_then(value, |value| match shape {
                    Values::Ips => ip_error(value),
                    Values::Ports => port_error(value),
                    Values::Any | Values::ServiceAccounts => None,
                });
                if let Err(e) = checked {
                    v.error(format!("invalid `{label}` for `key` {key}: {e}"));
                }
            });
        }
    }
}

/// Istio's `CheckEmptyValues`, then `check` on a non-empty value.
fn check_empty_then(value: &str, check: impl FnOnce(&str) -> Option<String>) -> Result<(), String> {
    if value.is_empty() {
        return Err("empty value not allowed".into());
    }
    check(value).map_or(Ok(()), Err)
}

fn check_not_empty(v: &mut Validator<'_>, value: &str) {
    if value.is_empty() {
        v.error("empty value not allowed");
    }
}

/// Istio's `ValidateIPs` for one value: an address, or a CIDR block when it has a `/`.
fn ip_error(value: &str) -> Option<String> {
    if value.contains('/') {
        value.parse::<ipnet::IpNet>().is_err().then(|| {
            format!("bad CIDR range ({value}): netip.ParsePrefix({value:?}): invalid prefix")
        })
    } else {
        value
            .parse::<std::net::IpAddr>()
            .is_err()
            .then(|| format!("bad IP address ({value})"))
    }
}

/// Istio's `ValidatePorts` for one value: a decimal number up to 65535.
fn port_error(value: &str) -> Option<String> {
    match value.parse::<u32>() {
        Ok(port) if port <= 65535 => None,
        Ok(_) => Some(format!("bad port ({value}): must be between 0 and 65535")),
        Err(_) => Some(format!(
            "bad port ({value}): strconv.ParseUint: parsing {value:?}: invalid syntax"
        )),
    }
}

/// Checks a `serviceAccounts`/`notServiceAccounts` list as Istio's `CheckServiceAccount`
/// and the CRD's `maxItems`/`maxLength` do.
fn check_service_accounts(v: &mut Validator<'_>, name: &str, values: &[String]) {
    report_service_account_error(v, name, service_account_error(name, values), |e| e);
}

/// Reports a problem found by [`service_account_error`] in the list field `name`, at the
/// offending entry when there is one, with its message passed through `message`.
fn report_service_account_error(
    v: &mut Validator<'_>,
    name: &str,
    problem: Option<(Option<usize>, String)>,
    message: impl FnOnce(String) -> String,
) {
    if let Some((index, e)) = problem {
        v.field(name, |v| match index {
            Some(i) => v.index(i, |v| v.error(message(e))),
            None => v.error(message(e)),
        });
    }
}

/// The first problem in a service account list, with the offending entry's index
/// (`None` for the list as a whole); like Istio, stops at the first.
fn service_account_error(field: &str, values: &[String]) -> Option<(Option<usize>, String)> {
    if values.len() > MAX_SERVICE_ACCOUNTS {
        return Some((
            None,
            format!(
                "Too many: {}: must have at most {MAX_SERVICE_ACCOUNTS} items (may not have more than {MAX_SERVICE_ACCOUNTS} values)",
                values.len()
            ),
        ));
    }
    const FORMAT: &str = "expected format 'serviceAccount' or 'namespace/serviceAccount'";
    values.iter().enumerate().find_map(|(i, value)| {
        let e = if value.is_empty() {
            format!("empty value not allowed, found in {field}")
        } else if value.contains('*') {
            format!("wildcard not allowed, found in {field}")
        } else if value.matches('/').count() > 1 {
            format!("{FORMAT}, found {value:?} in {field}")
        } else if value.len() > MAX_SERVICE_ACCOUNT_LEN {
            format!("value cannot exceed {MAX_SERVICE_ACCOUNT_LEN} characters, found {value:?} in {field}")
        } else {
            match value.split_once('/') {
                Some(("", _)) => format!("{FORMAT}, found empty namespace {value:?} in {field}"),
                Some((_, "")) => format!("{FORMAT}, found empty serviceAccount {value:?} in {field}"),
                _ => return None,
            }
        };
        Some((Some(i), e))
    })
}

/// Istio's `CheckValidPathTemplate` for one path: `{*}` and `{**}` must be whole
/// segments, `{**}` the last template, and the other segments of a template path
/// literal `pchar`s.
fn path_template_error(path: &str, field: &str) -> Option<String> {
    let template = path.contains("{*}") || path.contains("{**}");
    let trimmed = path.trim_matches('/');
    let mut match_any = false;
    for glob in trimmed.split('/') {
        match glob {
            "{*}" | "{**}" if match_any => {
                return Some(format!(
                    "invalid or unsupported path {trimmed}, found in {field}. {{**}} is not the last operator"
                ));
            }
            "{*}" => continue,
            "{**}" => {
                match_any = true;
                continue;
            }
            _ => {}
        }
        if glob.contains(['{', '}']) {
            return Some(format!(
                "invalid or unsupported path {trimmed}, found in {field}. Contains '{{' or '}}' beyond a supported path template"
            ));
        }
        let literal = !glob.is_empty()
            && glob
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._~%!$&'()+,;:@=".contains(&b));
        if template && !literal {
            return Some(format!(
                "invalid or unsupported path {trimmed}, found in {field}. Contains segment {glob} with invalid string literal"
            ));
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::object::Object;
    use crate::testing::{self, messages};
    use crate::validate::{Issue, Severity};

    fn load(yaml: &str) -> Result<Object, String> {
        testing::load(yaml)
    }

    fn issues(body: &str) -> Vec<Issue> {
        load(&spec(body)).expect("loads").validate()
    }

    fn of(issues: &[Issue], severity: Severity) -> Vec<String> {
        messages(issues, severity)
    }

    fn errors(body: &str) -> Vec<String> {
        of(&issues(body), Severity::Error)
    }

    fn spec(body: &str) -> String {
        format!(
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: ap\n  namespace: foo\nspec:\n{body}"
        )
    }

    /// A policy with one rule holding one source, written as flow-style YAML fields.
    fn source(fields: &str) -> Vec<String> {
        errors(&format!(
            "  rules:\n  - from:\n    - source: {{{fields}}}\n"
        ))
    }

    /// A policy with one rule holding one operation.
    fn operation(fields: &str) -> Vec<String> {
        errors(&format!(
            "  rules:\n  - to:\n    - operation: {{{fields}}}\n"
        ))
    }

    /// A policy with one rule holding one condition.
    fn condition(fields: &str) -> Vec<String> {
        errors(&format!("  rules:\n  - when:\n    - {{{fields}}}\n"))
    }

    const FULL: &str = r#"  selector:
    matchLabels:
      app: httpbin
  action: ALLOW
  rules:
  - from:
    - source:
        principals: ["cluster.local/ns/default/sa/sleep", "*"]
        requestPrincipals: ["issuer/subject", "*"]
        namespaces: ["ns", "ns-prefix-*"]
        ipBlocks: ["1.2.3.4", "5.6.0.0/16", "2001:db8::/32"]
        remoteIpBlocks: ["1.2.3.4"]
        notPrincipals: ["x"]
        notRequestPrincipals: ["y"]
        notNamespaces: ["z"]
        notIpBlocks: ["9.0.0.1"]
        notRemoteIpBlocks: ["9.2.0.0/16"]
        trustDomains: ["cluster.local"]
        notTrustDomains: ["other.local"]
    - source:
        serviceAccounts: ["bar/sa", "sa"]
        notServiceAccounts: ["baz/sa"]
    to:
    - operation:
        methods: ["GET", "*"]
        hosts: ["exact.com", "*.suffix.com"]
        ports: ["80", "0"]
        paths: ["/exact", "/prefix/*", "/path/template/{*}", "/{**}/path/template", "/a/{*}/{**}"]
        notMethods: ["DELETE"]
        notHosts: ["not.com"]
        notPorts: ["8000"]
        notPaths: ["/admin"]
    when:
    - key: request.headers[X-header]
      values: ["header"]
    - key: source.ip
      notValues: ["10.0.0.0/8"]
    - key: remote.ip
      values: ["10.10.10.10"]
    - key: source.namespace
      values: ["ns"]
    - key: source.principal
      values: ["p"]
    - key: source.serviceAccount
      values: ["ns/sa"]
    - key: source.trustDomain
      values: ["cluster.local"]
    - key: request.auth.principal
      values: ["https://example.com/*"]
    - key: request.auth.audiences
      values: ["a"]
    - key: request.auth.presenter
      values: ["p"]
    - key: request.auth.claims[nested1][nested2]
      values: ["n"]
    - key: destination.ip
      values: ["10.10.10.10"]
    - key: destination.port
      values: ["91"]
    - key: connection.sni
      values: ["*.suffix.com"]
    - key: experimental.envoy.filters.a.b[c]
      values: ["exact"]
    - key: request.experimental.inline.headers[x-y]
      values: ["v"]
"#;

    #[test]
    fn valid_policies_load_validate_and_round_trip() {
        for body in [
            FULL,
            "  {}\n",
            "  action: DENY\n  rules:\n  - {}\n",
            "  action: AUDIT\n  rules:\n  - to:\n    - operation:\n        ports: [\"80\"]\n",
            "  action: CUSTOM\n  provider:\n    name: ext-authz\n  rules:\n  - to:\n    - operation:\n        paths: [\"/admin\"]\n",
            "  targetRefs:\n  - group: gateway.networking.k8s.io\n    kind: Gateway\n    name: gw\n  rules:\n  - {}\n",
            "  rules:\n  - from:\n    - source:\n        serviceAccounts: [\"baz/sa\"]\n    - source:\n        principals: [\"bar\"]\n",
        ] {
            let object = load(&spec(body)).expect("loads");
            let found = object.validate();
            assert_eq!(of(&found, Severity::Error), Vec::<String>::new(), "{body}");
            let text = serde_yaml_ng::to_string(&object).unwrap();
            assert_eq!(load(&text).unwrap(), object, "{text}");
        }
    }

    #[test]
    fn unknown_action_is_refused_at_load() {
        let err = load(&spec("  action: REJECT\n")).unwrap_err();
        assert!(err.contains(r#"Unsupported value: "REJECT""#), "{err}");
    }

    #[test]
    fn deny_and_custom_need_rules() {
        let errs = errors("  action: DENY\n");
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with("spec.rules: DENY action without `rules` is meaningless"),
            "{errs:?}"
        );
        let errs = errors("  action: CUSTOM\n  provider:\n    name: p\n");
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].starts_with("spec.rules: CUSTOM action without `rules`"),
            "{errs:?}"
        );
    }

    #[test]
    fn provider_goes_with_custom_only() {
        assert_eq!(
            errors("  action: CUSTOM\n  rules:\n  - {}\n"),
            ["spec.provider.name: Required value: `provider.name` must not be empty"]
        );
        assert_eq!(
            errors("  action: CUSTOM\n  provider: {}\n  rules:\n  - {}\n"),
            ["spec.provider.name: Required value: `provider.name` must not be empty"]
        );
        assert_eq!(
            errors("  provider:\n    name: p\n  rules:\n  - {}\n"),
            ["spec.provider: `provider` must not be with non CUSTOM action, found ALLOW"]
        );
    }

    #[test]
    fn custom_refuses_identity_matches() {
        let errs = errors(
            "  action: CUSTOM\n  provider:\n    name: p\n  rules:\n  - from:\n    - source:\n        principals: [a]\n        ipBlocks: [1.2.3.4]\n    when:\n    - key: request.auth.claims[iss]\n      values: [x]\n    - key: source.ip\n      values: [1.2.3.4]\n",
        );
        assert_eq!(
            errs,
            [
                "spec.rules[0].from[0].source.principals: From.Principals is currently not supported with CUSTOM action",
                "spec.rules[0].when[0].key: request.auth.claims[iss] is currently not supported with CUSTOM action",
            ]
        );
    }

    #[test]
    fn from_and_to_need_content() {
        assert_eq!(
            errors("  rules:\n  - from:\n    - {}\n    to:\n    - {}\n"),
            [
                "spec.rules[0].from[0].source: Required value: `from.source` must not be nil",
                "spec.rules[0].to[0].operation: Required value: `to.operation` must not be nil",
            ]
        );
        assert_eq!(
            source(""),
            ["spec.rules[0].from[0].source: `from.source` must not be empty"]
        );
        assert_eq!(
            operation(""),
            ["spec.rules[0].to[0].operation: `to.operation` must not be empty"]
        );
    }

    #[test]
    fn service_accounts_exclude_principals_and_namespaces() {
        for fields in [
            "serviceAccounts: [bar/sa], namespaces: [bar]",
            "notServiceAccounts: [sa], principals: [bar]",
        ] {
            assert_eq!(
                source(fields),
                [
                    "spec.rules[0].from[0].source: Cannot set serviceAccounts with namespaces or principals"
                ],
                "{fields}"
            );
        }
    }

    #[test]
    fn service_accounts_have_a_shape() {
        for (value, message) in [
            ("\"*\"", "wildcard not allowed"),
            (
                "a/b/c",
                "expected format 'serviceAccount' or 'namespace/serviceAccount', found \"a/b/c\"",
            ),
            ("/sa", "found empty namespace"),
            ("ns/", "found empty serviceAccount"),
            ("\"\"", "empty value not allowed"),
        ] {
            let errs = source(&format!("serviceAccounts: [ok, {value}]"));
            assert_eq!(errs.len(), 1, "{value}: {errs:?}");
            assert!(
                errs[0].starts_with("spec.rules[0].from[0].source.serviceAccounts[1]: "),
                "{errs:?}"
            );
            assert!(errs[0].contains(message), "{errs:?}");
        }
        let many: Vec<String> = (0..17).map(|i| format!("sa{i}")).collect();
        let errs = source(&format!("serviceAccounts: [{}]", many.join(", ")));
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].contains("Too many: 17: must have at most 16 items"),
            "{errs:?}"
        );
        let errs = source(&format!("notServiceAccounts: [{}]", "a".repeat(321)));
        assert!(
            errs[0].contains("value cannot exceed 320 characters"),
            "{errs:?}"
        );
    }

    #[test]
    fn empty_strings_and_bad_ips_are_refused() {
        assert_eq!(
            source("principals: [\"\"], notNamespaces: [ok, \"\"], trustDomains: [\"\"]"),
            [
                "spec.rules[0].from[0].source.principals[0]: empty value not allowed",
                "spec.rules[0].from[0].source.notNamespaces[1]: empty value not allowed",
                "spec.rules[0].from[0].source.trustDomains[0]: empty value not allowed",
            ]
        );
        assert_eq!(
            source("ipBlocks: [1.2.3.4, 1.2.3.256], notRemoteIpBlocks: [10.0.0.0/33, \"\"]"),
            [
                "spec.rules[0].from[0].source.ipBlocks[1]: bad IP address (1.2.3.256)",
                "spec.rules[0].from[0].source.notRemoteIpBlocks[0]: bad CIDR range (10.0.0.0/33): netip.ParsePrefix(\"10.0.0.0/33\"): invalid prefix",
                "spec.rules[0].from[0].source.notRemoteIpBlocks[1]: empty value not allowed",
            ]
        );
    }

    #[test]
    fn operation_values_are_checked() {
        assert_eq!(
            operation("ports: [\"80\", \"65536\", http], notMethods: [\"\"], hosts: [\"\"]"),
            [
                "spec.rules[0].to[0].operation.ports[1]: bad port (65536): must be between 0 and 65535",
                "spec.rules[0].to[0].operation.ports[2]: bad port (http): strconv.ParseUint: parsing \"http\": invalid syntax",
                "spec.rules[0].to[0].operation.hosts[0]: empty value not allowed",
                "spec.rules[0].to[0].operation.notMethods[0]: empty value not allowed",
            ]
        );
    }

    #[test]
    fn path_templates_are_checked() {
        for (path, message) in [
            ("/{**}/{*}", "{**} is not the last operator"),
            (
                "/a/{x}",
                "Contains '{' or '}' beyond a supported path template",
            ),
            (
                "/foo{*}",
                "Contains '{' or '}' beyond a supported path template",
            ),
            ("/a/*/{*}", "Contains segment * with invalid string literal"),
        ] {
            let errs = operation(&format!("notPaths: [\"{path}\"]"));
            assert_eq!(errs.len(), 1, "{path}: {errs:?}");
            assert!(
                errs[0].starts_with(
                    "spec.rules[0].to[0].operation.notPaths[0]: invalid or unsupported path"
                ),
                "{errs:?}"
            );
            assert!(errs[0].contains(message), "{errs:?}");
        }
        assert_eq!(
            operation("paths: [\"/a/*\", \"*/b\", \"/{*}/x/{**}\"]"),
            Vec::<String>::new()
        );
    }

    #[test]
    fn condition_keys_are_istio_attributes() {
        assert_eq!(
            condition("values: [a]"),
            ["spec.rules[0].when[0].key: Required value: `key` must not be empty"]
        );
        assert_eq!(
            condition("key: source.ip"),
            [
                "spec.rules[0].when[0]: at least one of `values` or `notValues` must be set for key source.ip"
            ]
        );
        for (key, message) in [
            ("foo", "unknown attribute: foo"),
            (
                "request.headers",
                "bad key (request.headers): should have format a[b]",
            ),
            (
                "request.auth.claims[]",
                "bad key (request.auth.claims[]): should have format a[b]",
            ),
            ("experimental.envoy.filters.a", "should have format a[b]"),
            (
                "destination.namespace",
                "attribute destination.namespace is replaced by the metadata.namespace",
            ),
            (
                "destination.labels[app]",
                "is replaced by the workload selector",
            ),
            (
                "destination.name",
                "deprecated attribute destination.name: only supported in v1alpha1",
            ),
        ] {
            let errs = condition(&format!("key: \"{key}\", values: [x]"));
            assert_eq!(errs.len(), 1, "{key}: {errs:?}");
            assert!(
                errs[0].starts_with("spec.rules[0].when[0].key: "),
                "{errs:?}"
            );
            assert!(errs[0].contains(message), "{errs:?}");
        }
    }

    #[test]
    fn condition_values_have_the_attribute_shape() {
        assert_eq!(
            condition("key: source.ip, values: [1.2.3.4, nope], notValues: [\"\"]"),
            [
                "spec.rules[0].when[0].values[1]: invalid `value` for `key` source.ip: bad IP address (nope)",
                "spec.rules[0].when[0].notValues[0]: invalid `notValue` for `key` source.ip: empty value not allowed",
            ]
        );
        assert_eq!(
            condition("key: destination.port, values: [\"80\", \"99999\"]"),
            [
                "spec.rules[0].when[0].values[1]: invalid `value` for `key` destination.port: bad port (99999): must be between 0 and 65535"
            ]
        );
        assert_eq!(
            condition("key: source.serviceAccount, notValues: [\"ns/*\"]"),
            [
                "spec.rules[0].when[0].notValues[0]: invalid `notValue` for `key` source.serviceAccount: wildcard not allowed, found in source.serviceAccount"
            ]
        );
    }

    #[test]
    fn deny_with_only_http_attributes_warns() {
        let found = issues(
            "  action: DENY\n  rules:\n  - to:\n    - operation:\n        methods: [POST]\n",
        );
        assert_eq!(of(&found, Severity::Error), Vec::<String>::new());
        let warnings = of(&found, Severity::Warning);
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        assert!(warnings[0].starts_with(
            "spec.rules[0]: configured AuthorizationPolicy will deny all traffic to TCP ports"
        ));
        for quiet in [
            "  action: DENY\n  rules:\n  - to:\n    - operation:\n        methods: [POST]\n        ports: [\"80\"]\n",
            "  action: DENY\n  rules:\n  - from:\n    - source:\n        ipBlocks: [1.2.3.4]\n",
            "  action: ALLOW\n  rules:\n  - to:\n    - operation:\n        methods: [POST]\n",
        ] {
            assert_eq!(
                of(&issues(quiet), Severity::Warning),
                Vec::<String>::new(),
                "{quiet}"
            );
        }
        let warnings = of(
            &issues(
                "  action: DENY\n  rules:\n  - from:\n    - source:\n        requestPrincipals: [\"*\"]\n",
            ),
            Severity::Warning,
        );
        assert_eq!(warnings.len(), 1, "{warnings:?}");
    }

    #[test]
    fn targets_and_limits_are_checked() {
        let errs = errors(
            "  selector:\n    matchLabels:\n      a: b\n  targetRefs:\n  - kind: Service\n    name: s\n",
        );
        assert_eq!(
            errs,
            ["spec: only one of targetRefs or selector can be set"]
        );
        let rules = "  - {}\n".repeat(513);
        assert_eq!(
            errors(&format!("  rules:\n{rules}")),
            ["spec.rules: Too many: 513: must have at most 512 items"]
        );
    }

    fn with_annotation(action: &str, value: &str) -> Vec<String> {
        let yaml = format!(
            "apiVersion: security.istio.io/v1\nkind: AuthorizationPolicy\nmetadata:\n  name: ap\n  namespace: foo\n  annotations:\n    istio.io/dry-run: \"{value}\"\nspec:\n  action: {action}\n  provider:\n    name: p\n  rules:\n  - {{}}\n"
        );
        let object = load(&yaml).unwrap();
        let Object::AuthorizationPolicy(ap) = &object else {
            panic!("not an AuthorizationPolicy")
        };
        assert_eq!(
            AuthorizationPolicy::is_dry_run(&ap.metadata),
            value == "true"
        );
        of(&object.validate(), Severity::Error)
            .into_iter()
            .filter(|e| !e.contains("provider"))
            .collect()
    }

    #[test]
    fn dry_run_annotation_is_for_allow_and_deny() {
        assert_eq!(with_annotation("ALLOW", "true"), Vec::<String>::new());
        assert_eq!(with_annotation("DENY", "F"), Vec::<String>::new());
        let errs = with_annotation("ALLOW", "yes");
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].contains("foo/ap has annotation istio.io/dry-run with invalid value (yes)"),
            "{errs:?}"
        );
        let errs = with_annotation("CUSTOM", "true");
        assert_eq!(
            errs,
            [
                "spec.action: the annotation istio.io/dry-run currently only supports action ALLOW/DENY, found action CUSTOM in foo/ap"
            ]
        );
    }
}
