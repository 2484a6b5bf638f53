//! `Sidecar`: what a sidecar proxy accepts (ingress listeners) and which services it can
//! reach (egress listeners), plus its outbound traffic policy.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use serde::{Deserialize, Serialize};

use super::destination_rule::{ConnectionPoolSettings, PolicyPortSelector};
use super::gateway::{ServerTlsMode, ServerTlsSettings};
use super::service_entry::{protocol_error, protocol_is};
use super::workload_entry::{check_port_name, unix_address_error};
use crate::types::{Labels, Protocol, is_default, string_enum};
use crate::validate::{
    Validate, Validator, check_ip, check_max_items, check_max_len, check_port, check_port_at,
    check_wildcard_host, fqdn_error, is_istio_label, wildcard_domain_error,
};

/// The prefix of a Unix domain socket address.
const UNIX_PREFIX: &str = "unix://";

/// `networking.istio.io/v1` Sidecar spec.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Sidecar {
    /// The workloads this Sidecar applies to; unset: every workload in the namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_selector: Option<WorkloadLabelSelector>,
    /// Listeners for inbound traffic.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ingress: Vec<IstioIngressListener>,
    /// Listeners for outbound traffic, and the services they can reach.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub egress: Vec<IstioEgressListener>,
    /// Connection pool settings for all inbound connections.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inbound_connection_pool: Option<ConnectionPoolSettings>,
    /// What to do with outbound traffic to unknown destinations.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbound_traffic_policy: Option<OutboundTrafficPolicy>,
}

/// Istio's `networking.v1alpha3.WorkloadSelector` (`labels:`), used by Sidecar and
/// ServiceEntry (policies use `crate::types::WorkloadSelector`'s `matchLabels:` instead).
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadLabelSelector {
    /// Labels a workload must carry, all of them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: Labels,
}

/// `IstioIngressListener`: a listener for inbound traffic to the workload.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IstioIngressListener {
    /// The port the listener accepts traffic on (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<SidecarPort>,
    /// The IP address the listener binds to.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub bind: String,
    /// How traffic reaches the listener.
    #[serde(default, skip_serializing_if = "is_default")]
    pub capture_mode: CaptureMode,
    /// Where traffic is forwarded: `127.0.0.1:PORT`, `0.0.0.0:PORT`, `[::1]:PORT`,
    /// `[::]:PORT` or `unix:///path`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub default_endpoint: String,
    /// TLS termination for the listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ServerTlsSettings>,
    /// Connection pool settings for this listener.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connection_pool: Option<ConnectionPoolSettings>,
}

/// `IstioEgressListener`: a listener for outbound traffic and the hosts it reaches.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct IstioEgressListener {
    /// The port; unset: a catch-all listener (only as the last one).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<SidecarPort>,
    /// The IP address or `unix://` socket the listener binds to.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub bind: String,
    /// How traffic reaches the listener.
    #[serde(default, skip_serializing_if = "is_default")]
    pub capture_mode: CaptureMode,
    /// Reachable services as `namespace/dnsName` (`*`, `.` and `~` namespaces allowed).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
}

/// `SidecarPort`: a listener's port.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SidecarPort {
    /// Port number (0 only for Unix socket egress listeners).
    #[serde(default, skip_serializing_if = "is_default")]
    pub number: u32,
    /// Protocol (`HTTP`, `HTTP2`, `GRPC`, `TCP`…).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub protocol: String,
    /// Port name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Deprecated and rejected on Sidecars.
    #[serde(default, skip_serializing_if = "is_default")]
    pub target_port: u32,
}

string_enum! {
    /// `CaptureMode`: how traffic reaches a listener.
    pub enum CaptureMode {
        /// The environment's default capture mode.
        Default = "DEFAULT",
        /// Captured with iptables redirection.
        Iptables = "IPTABLES",
        /// Not captured: applications connect to the listener directly.
        None = "NONE",
    }
}

/// `OutboundTrafficPolicy`: handling of outbound traffic to unknown destinations.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct OutboundTrafficPolicy {
    /// Registry-only or allow-any.
    #[serde(default, skip_serializing_if = "is_default")]
    pub mode: OutboundTrafficPolicyMode,
    /// Where unknown traffic goes in `ALLOW_ANY` mode.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub egress_proxy: Option<EgressProxy>,
}

string_enum! {
    /// `OutboundTrafficPolicy.Mode`.
    pub enum OutboundTrafficPolicyMode {
        /// Only services in the registry are reachable.
        RegistryOnly = "REGISTRY_ONLY",
        /// Unknown destinations are passed through.
        AllowAny = "ALLOW_ANY",
    }
}

/// The `egressProxy` destination (an Istio `Destination`): a service in the registry.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EgressProxy {
    /// The proxy service's host name (required, fully qualified).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub host: String,
    /// A subset of the service, defined by a DestinationRule.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub subset: String,
    /// The proxy service's port (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<PolicyPortSelector>,
}

// ---------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------

impl WorkloadLabelSelector {
    /// Istio's `ValidateAlphaWorkloadSelector` plus the CRD limits; `owner` prefixes the
    /// empty-selector warning (`sidecar`, `service entry`).
    pub(super) fn check(&self, v: &mut Validator<'_>, owner: &str) {
        check_max_items(v, "labels", self.labels.len(), 256);
        v.field("labels", |v| {
            for (key, value) in &self.labels {
                v.key(key, |v| {
                    if key.is_empty() {
                        v.error(format!(
                            "empty key is not supported in selector: \"={value}\""
                        ));
                    }
                    if key.contains('*') || value.contains('*') {
                        v.error(format!(
                            "wildcard is not supported in selector: \"{key}={value}\""
                        ));
                    }
                    check_max_len(v, value, 63);
                });
            }
        });
        if self.labels.is_empty() {
            v.warn(format!(
                "{owner}: workload selector specified without labels, will be applied to all services in namespace"
            ));
        }
    }
}

impl Validate for Sidecar {
    fn validate(&self, v: &mut Validator<'_>) {
        if let Some(selector) = &self.workload_selector {
            v.field("workloadSelector", |v| selector.check(v, "sidecar"));
        }
        if self.egress.is_empty()
            && self.ingress.is_empty()
            && self.outbound_traffic_policy.is_none()
            && self.inbound_connection_pool.is_none()
        {
            v.error("sidecar: empty configuration provided");
            return;
        }

        let mut ports = HashSet::new();
        v.each("ingress", &self.ingress, |v, listener| {
            let Some(port) = &listener.port else {
                v.error_at("port", "Required value: sidecar: port is required for ingress listeners");
                return;
            };
            v.field("port", |v| {
                check_sidecar_port_common(v, port);
                check_port_at(v, "number", port.number);
                if !ports.insert(port.number) {
                    v.error("sidecar: ports on IP bound listeners must be unique");
                }
            });
            if !listener.bind.is_empty() {
                v.field("bind", |v| check_ip(v, &listener.bind));
            }
            if !listener.default_endpoint.is_empty() {
                v.field("defaultEndpoint", |v| check_default_endpoint(v, &listener.default_endpoint));
            }
            if let Some(tls) = &listener.tls {
                v.field("tls", |v| check_ingress_tls(v, tls));
            }
            v.check_opt("connectionPool", &listener.connection_pool);
            if listener.connection_pool.as_ref().is_some_and(|p| p.http.is_some())
                && !protocol_is(&port.protocol, Protocol::is_http)
            {
                v.warn_at(
                    "connectionPool",
                    format!(
                        "sidecar: HTTP connection pool settings are configured for port {} ({:?}) but its protocol is not HTTP ({}); only TCP settings will apply",
                        port.number, port.name, port.protocol
                    ),
                );
            }
        });

        v.check_opt("inboundConnectionPool", &self.inbound_connection_pool);

        let mut ports = HashSet::new();
        let mut sockets = HashSet::new();
        let mut catch_all = false;
        let last = self.egress.len().saturating_sub(1);
        let namespace = v.namespace();
        v.field("egress", |v| {
            for (i, listener) in self.egress.iter().enumerate() {
                v.index(i, |v| {
                    match &listener.port {
                        None if catch_all => {
                            v.error("sidecar: egress can have only one listener with empty port");
                            return;
                        }
                        None if i == last => catch_all = true,
                        None => v.error("sidecar: the egress listener with empty port should be the last listener in the list"),
                        Some(port) => {
                            v.field("port", |v| check_sidecar_port_common(v, port));
                            check_egress_port_bind(v, port, listener);
                            if port.number == 0 {
                                if !sockets.insert(listener.bind.clone()) {
                                    v.error_at("bind", "sidecar: unix domain socket values for listeners must be unique");
                                }
                            } else if !ports.insert(port.number) {
                                v.error_at("port", "sidecar: ports on IP bound listeners must be unique");
                            }
                        }
                    }
                    if listener.hosts.is_empty() {
                        v.error_at("hosts", "Required value: sidecar: egress listener must contain at least one host");
                    } else {
                        check_egress_hosts(v, &listener.hosts, namespace);
                    }
                });
            }
        });

        v.check_opt("outboundTrafficPolicy", &self.outbound_traffic_policy);
    }
}

/// The port checks shared by ingress and egress listeners: no `targetPort`, a valid name
/// and protocol.
fn check_sidecar_port_common(v: &mut Validator<'_>, port: &SidecarPort) {
    if port.target_port > 0 {
        v.error_at("targetPort", "targetPort has no impact on Sidecars");
    }
    if !port.name.is_empty() {
        v.field("name", |v| check_port_name(v, &port.name));
    }
    if let Some(e) = protocol_error(&port.protocol) {
        v.error_at("protocol", e);
    }
}

/// Istio's `validateSidecarEgressPortBindAndCaptureMode`: port 0 means a Unix socket bind.
fn check_egress_port_bind(
    v: &mut Validator<'_>,
    port: &SidecarPort,
    listener: &IstioEgressListener,
) {
    if port.number == 0 {
        match listener.bind.strip_prefix(UNIX_PREFIX) {
            None => v.error_at(
                "bind",
                "sidecar: ports with 0 value must have a unix domain socket bind address",
            ),
            Some(path) => {
                if let Some(e) = unix_address_error(path) {
                    v.error_at("bind", e);
                }
            }
        }
        if !matches!(
            listener.capture_mode,
            CaptureMode::Default | CaptureMode::None
        ) {
            v.error_at(
                "captureMode",
                "sidecar: captureMode must be DEFAULT/NONE for unix domain socket listeners",
            );
        }
    } else {
        v.field("port", |v| check_port_at(v, "number", port.number));
        if !listener.bind.is_empty() {
            v.field("bind", |v| check_ip(v, &listener.bind));
        }
    }
}

/// Checks a `defaultEndpoint`: `unix://` path, or `HOST:PORT` with a loopback or
/// unspecified host.
fn check_default_endpoint(v: &mut Validator<'_>, endpoint: &str) {
    if let Some(path) = endpoint.strip_prefix(UNIX_PREFIX) {
        if let Some(e) = unix_address_error(path) {
            v.error(e);
        }
        return;
    }
    let (host, port) = match split_host_port(endpoint) {
        Ok(parts) => parts,
        Err(e) => {
            v.error(e);
            return;
        }
    };
    if !matches!(host, "" | "127.0.0.1" | "0.0.0.0" | "::1" | "::") {
        v.error("sidecar: defaultEndpoint must be of form 127.0.0.1:<port>,0.0.0.0:<port>,[::1]:port,[::]:port,unix://filepath or unset");
    }
    match port.parse::<u32>() {
        Ok(port) => check_port(v, port),
        Err(_) => v.error(format!(
            "sidecar: defaultEndpoint port ({port}) is not a number"
        )),
    }
}

/// Splits `host:port` or `[host]:port` as Go's `net.SplitHostPort` does.
fn split_host_port(address: &str) -> Result<(&str, &str), String> {
    let fail = |why: &str| Err(format!("address {address}: {why}"));
    if let Some(rest) = address.strip_prefix('[') {
        let Some((host, tail)) = rest.split_once(']') else {
            return fail("missing ']' in address");
        };
        return match tail.strip_prefix(':') {
            Some(port) if !port.contains(':') => Ok((host, port)),
            Some(_) => fail("too many colons in address"),
            None => fail("missing port in address"),
        };
    }
    match address.rsplit_once(':') {
        None => fail("missing port in address"),
        Some((host, _)) if host.contains(':') => fail("too many colons in address"),
        Some((host, port)) => Ok((host, port)),
    }
}

/// Checks egress `hosts` (`namespace/dnsName`) and warns about overlapping entries.
fn check_egress_hosts(v: &mut Validator<'_>, hosts: &[String], namespace: &str) {
    let mut by_namespace: HashMap<&str, BTreeSet<&str>> = HashMap::new();
    v.field("hosts", |v| {
        for (i, host) in hosts.iter().enumerate() {
            v.index(i, |v| {
                if let Some((ns, name)) = host.split_once('/') {
                    let ns = if ns == "." { namespace } else { ns };
                    let names = by_namespace.entry(ns).or_default();
                    let duplicate = if name == "*" {
                        !names.is_empty()
                    } else {
                        names.contains(name) || names.contains("*")
                    };
                    if duplicate {
                        v.warn(format!("duplicated egress host: {host}"));
                    }
                    names.insert(name);
                }
                check_sidecar_host(v, host);
            });
        }
    });
    if by_namespace
        .get("*")
        .is_some_and(|names| names.contains("*"))
        && by_namespace.len() != 1
    {
        v.warn_at(
            "hosts",
            "`*/*` host select all resources, no other hosts can be added",
        );
    }
}

/// Istio's `ValidateNamespaceSlashWildcardHostname` for sidecars.
fn check_sidecar_host(v: &mut Validator<'_>, host: &str) {
    let Some((ns, name)) = host.split_once('/') else {
        v.error("host must be of form namespace/dnsName");
        return;
    };
    if ns.is_empty() || name.is_empty() {
        v.error("config namespace and dnsName in host entry cannot be empty");
    }
    if !matches!(ns, "*" | "." | "~") && !is_istio_label(ns) {
        v.error(format!("invalid namespace value {ns:?} in sidecar"));
    }
    if name != "*" && !name.contains('.') {
        v.error("short names (non FQDN) are not allowed");
    }
    if let Some(e) = wildcard_domain_error(name) {
        v.error(e);
    }
    if name.contains('*') && name.len() != 1 && !name.starts_with("*.") {
        v.error(format!("partial wildcard {name:?} not allowed"));
    }
}

impl Validate for OutboundTrafficPolicy {
    fn validate(&self, v: &mut Validator<'_>) {
        let Some(proxy) = &self.egress_proxy else {
            return;
        };
        v.field("egressProxy", |v| {
            if self.mode != OutboundTrafficPolicyMode::AllowAny {
                v.error("sidecar: egress_proxy must be set only with ALLOW_ANY outbound_traffic_policy mode");
                return;
            }
            if proxy.host.is_empty() {
                v.required("host");
            } else if proxy.host == "*" {
                v.error_at("host", "invalid destination host *");
            } else if let Some(e) = fqdn_error(&proxy.host) {
                v.error_at("host", e);
            } else {
                v.field("host", |v| check_wildcard_host(v, &proxy.host));
            }
            if !proxy.subset.is_empty() && !is_istio_label(&proxy.subset) {
                v.error_at("subset", format!("subset name is invalid: {}", proxy.subset));
            }
            match &proxy.port {
                None => v.error_at("port", "Required value: sidecar: egress_proxy port must be non-nil"),
                Some(port) => v.field("port", |v| check_port_at(v, "number", port.number)),
            }
        });
    }
}

/// A Sidecar ingress listener's `tls`: Gateway's server TLS rules, minus what only a
/// gateway can do.
fn check_ingress_tls(v: &mut Validator<'_>, tls: &ServerTlsSettings) {
    if !tls.subject_alt_names.is_empty() {
        v.error_at(
            "subjectAltNames",
            "sidecar: subjectAltNames is not supported in ingress tls",
        );
    }
    if tls.https_redirect {
        v.error_at("httpsRedirect", "sidecar: httpsRedirect is not supported");
    }
    if !tls.credential_name.is_empty() {
        v.error_at(
            "credentialName",
            "sidecar: credentialName is not currently supported",
        );
    }
    if matches!(
        tls.mode,
        ServerTlsMode::IstioMutual | ServerTlsMode::AutoPassthrough
    ) {
        v.error_at(
            "mode",
            format!(
                "configuration is invalid: cannot set mode to {} in sidecar ingress tls",
                tls.mode
            ),
        );
    }
    tls.check(v);
}

#[cfg(test)]
mod tests {
    use crate::Kind;
    use crate::testing::{errors_and_warnings, issues};

    fn check(spec: &str) -> (Vec<String>, Vec<String>) {
        errors_and_warnings(&issues(Kind::Sidecar, spec))
    }

    fn assert_error(spec: &str, path: &str, message: &str) {
        let (errs, _) = check(spec);
        assert!(
            errs.iter()
                .any(|e| e.starts_with(path) && e.contains(message)),
            "expected {path}: …{message}… in {errs:#?}"
        );
    }

    fn assert_valid(spec: &str) {
        let (errs, _) = check(spec);
        assert!(errs.is_empty(), "{errs:#?}");
    }

    fn assert_warning(spec: &str, message: &str) {
        let (errs, warns) = check(spec);
        assert!(errs.is_empty(), "{errs:#?}");
        assert!(
            warns.iter().any(|w| w.contains(message)),
            "expected …{message}… in {warns:#?}"
        );
    }

    #[test]
    fn full_sidecar_is_valid() {
        assert_valid(
            r#"workloadSelector:
  labels: {app: ratings}
ingress:
- port: {number: 9080, protocol: HTTP, name: http}
  defaultEndpoint: 127.0.0.1:8080
  captureMode: IPTABLES
  connectionPool:
    http: {http1MaxPendingRequests: 10}
  tls:
    mode: SIMPLE
    serverCertificate: /etc/certs/cert.pem
    privateKey: /etc/certs/key.pem
- port: {number: 9443, protocol: TCP, name: tcp}
  bind: 0.0.0.0
  defaultEndpoint: unix:///var/run/app.sock
inboundConnectionPool:
  tcp: {maxConnections: 100}
egress:
- port: {number: 0, protocol: HTTP, name: uds}
  bind: unix:///var/run/egress.sock
  captureMode: NONE
  hosts: ["*/*.example.com"]
- port: {number: 3306, protocol: MYSQL, name: mysql}
  bind: 127.0.0.2
  hosts: ["*/mysql.foo.com"]
- hosts: ["./*", "istio-system/*", "~/*"]
outboundTrafficPolicy:
  mode: ALLOW_ANY
  egressProxy:
    host: egress.example.com
    subset: v1
    port: {number: 3128}"#,
        );
    }

    #[test]
    fn empty_and_selector() {
        assert_error("{}", "spec", "sidecar: empty configuration provided");
        assert_error(
            "workloadSelector:\n  labels: {app: \"*\"}\negress:\n- hosts: [\"*/*\"]",
            "spec.workloadSelector.labels[app]",
            "wildcard is not supported in selector",
        );
        assert_warning(
            "workloadSelector: {}\negress:\n- hosts: [\"*/*\"]",
            "sidecar: workload selector specified without labels",
        );
    }

    #[test]
    fn ingress_rules() {
        assert_error(
            "ingress:\n- defaultEndpoint: 127.0.0.1:80",
            "spec.ingress[0].port",
            "port is required for ingress listeners",
        );
        assert_error(
            "ingress:\n- port: {number: 80, protocol: HTTP, name: h, targetPort: 8080}",
            "spec.ingress[0].port.targetPort",
            "targetPort has no impact on Sidecars",
        );
        assert_error(
            "ingress:\n- port: {number: 0, protocol: HTTP}",
            "spec.ingress[0].port.number",
            "port must be between 1-65535",
        );
        assert_error(
            "ingress:\n- port: {number: 80, protocol: FOO}",
            "spec.ingress[0].port.protocol",
            "unsupported protocol: FOO",
        );
        assert_error(
            "ingress:\n- port: {number: 80, name: http_1}",
            "spec.ingress[0].port.name",
            "invalid port name: http_1",
        );
        assert_error(
            "ingress:\n- port: {number: 80}\n- port: {number: 80}",
            "spec.ingress[1].port",
            "ports on IP bound listeners must be unique",
        );
        assert_error(
            "ingress:\n- port: {number: 80}\n  bind: not-an-ip",
            "spec.ingress[0].bind",
            "is not a valid IP address",
        );
        assert_error(
            "ingress:\n- port: {number: 80}\n  defaultEndpoint: 1.1.1.1:80",
            "spec.ingress[0].defaultEndpoint",
            "defaultEndpoint must be of form",
        );
        assert_error(
            "ingress:\n- port: {number: 80}\n  defaultEndpoint: 127.0.0.1",
            "spec.ingress[0].defaultEndpoint",
            "missing port in address",
        );
        assert_error(
            "ingress:\n- port: {number: 80}\n  defaultEndpoint: 127.0.0.1:x",
            "spec.ingress[0].defaultEndpoint",
            "is not a number",
        );
        assert_error(
            "ingress:\n- port: {number: 80}\n  defaultEndpoint: \"[::1]:70000\"",
            "spec.ingress[0].defaultEndpoint",
            "port must be between 1-65535",
        );
        assert_error(
            "ingress:\n- port: {number: 80}\n  defaultEndpoint: unix://relative",
            "spec.ingress[0].defaultEndpoint",
            "not an absolute path",
        );
        assert_valid("ingress:\n- port: {number: 80}\n  defaultEndpoint: \"[::]:8080\"");
        assert_valid("ingress:\n- port: {number: 80}\n  defaultEndpoint: \":8080\"");
        assert_warning(
            "ingress:\n- port: {number: 80, protocol: TCP, name: tcp}\n  connectionPool:\n    http: {maxRetries: 1}",
            "HTTP connection pool settings are configured for port 80",
        );
        assert_error(
            "ingress:\n- port: {number: 80}\n  connectionPool: {}",
            "spec.ingress[0].connectionPool",
            "connection pool must have at least one field",
        );
        assert_error(
            "inboundConnectionPool:\n  tcp: {maxConnections: -1}",
            "spec.inboundConnectionPool.tcp.maxConnections",
            "non-negative",
        );
    }

    #[test]
    fn ingress_tls_rules() {
        let tls = |body: &str| {
            format!(
                "ingress:\n- port: {{number: 443, protocol: HTTPS, name: https}}\n  tls:\n{}",
                body.lines()
                    .map(|l| format!("    {l}\n"))
                    .collect::<String>()
            )
        };
        assert_error(
            &tls("mode: ISTIO_MUTUAL"),
            "spec.ingress[0].tls.mode",
            "cannot set mode to ISTIO_MUTUAL in sidecar ingress tls",
        );
        assert_error(
            &tls("mode: SIMPLE\ncredentialName: c"),
            "spec.ingress[0].tls.credentialName",
            "credentialName is not currently supported",
        );
        assert_error(
            &tls("mode: SIMPLE\nserverCertificate: a\nprivateKey: b\nsubjectAltNames: [x]"),
            "spec.ingress[0].tls.subjectAltNames",
            "not supported in ingress tls",
        );
        assert_error(
            &tls("mode: SIMPLE\nserverCertificate: a\nprivateKey: b\nhttpsRedirect: true"),
            "spec.ingress[0].tls.httpsRedirect",
            "httpsRedirect is not supported",
        );
        assert_error(
            &tls("mode: SIMPLE\nserverCertificate: a"),
            "spec.ingress[0].tls",
            "SIMPLE TLS requires a private key",
        );
        assert_error(
            &tls("mode: MUTUAL\nserverCertificate: a\nprivateKey: b"),
            "spec.ingress[0].tls",
            "MUTUAL TLS requires a client CA bundle",
        );
        assert_error(
            &tls("mode: SIMPLE\nserverCertificate: a\nprivateKey: b\ncaCrl: c"),
            "spec.ingress[0].tls.caCrl",
            "CRL is not supported with SIMPLE TLS",
        );
        assert_error(
            &tls(
                "mode: SIMPLE\ncredentialNames: [a]\ntlsCertificates:\n- serverCertificate: a\n  privateKey: b",
            ),
            "spec.ingress[0].tls",
            "only one of credentialNames or tlsCertificates can be set",
        );
        assert_valid(&tls(
            "mode: SIMPLE\ntlsCertificates:\n- serverCertificate: a\n  privateKey: b",
        ));
        assert_valid(&tls(
            "mode: OPTIONAL_MUTUAL\nserverCertificate: a\nprivateKey: b\ncaCertificates: c",
        ));
        assert_warning(
            &tls("mode: SIMPLE\nserverCertificate: a\nprivateKey: b\nminProtocolVersion: TLSV1_1"),
            "TLS version below TLSV1_2",
        );
    }

    #[test]
    fn egress_rules() {
        assert_error(
            "egress:\n- hosts: [\"*/*\"]\n- port: {number: 80}\n  hosts: [\"*/*\"]",
            "spec.egress[0]",
            "egress listener with empty port should be the last listener",
        );
        assert_error(
            "egress:\n- port: {number: 80}\n  hosts: []",
            "spec.egress[0].hosts",
            "egress listener must contain at least one host",
        );
        assert_error(
            "egress:\n- port: {number: 80}\n  hosts: [\"*/*\"]\n- port: {number: 80}\n  hosts: [\"*/*\"]",
            "spec.egress[1].port",
            "ports on IP bound listeners must be unique",
        );
        assert_error(
            "egress:\n- port: {number: 0}\n  hosts: [\"*/*\"]",
            "spec.egress[0].bind",
            "ports with 0 value must have a unix domain socket bind address",
        );
        assert_error(
            "egress:\n- port: {number: 0}\n  bind: unix://@a\n  captureMode: IPTABLES\n  hosts: [\"*/*\"]",
            "spec.egress[0].captureMode",
            "captureMode must be DEFAULT/NONE",
        );
        assert_error(
            "egress:\n- port: {number: 0}\n  bind: unix://@a\n  hosts: [\"*/*\"]\n- port: {number: 0}\n  bind: unix://@a\n  hosts: [\"*/*\"]",
            "spec.egress[1].bind",
            "unix domain socket values for listeners must be unique",
        );
        assert_error(
            "egress:\n- port: {number: 80, targetPort: 8080}\n  hosts: [\"*/*\"]",
            "spec.egress[0].port.targetPort",
            "targetPort has no impact on Sidecars",
        );
        assert_error(
            "egress:\n- port: {number: 80}\n  bind: foo\n  hosts: [\"*/*\"]",
            "spec.egress[0].bind",
            "is not a valid IP address",
        );
        for (host, message) in [
            ("foo.com", "host must be of form namespace/dnsName"),
            (
                "/foo.com",
                "config namespace and dnsName in host entry cannot be empty",
            ),
            (
                "Bad_NS/foo.com",
                "invalid namespace value \"Bad_NS\" in sidecar",
            ),
            ("ns/foo", "short names (non FQDN) are not allowed"),
            ("ns/*foo.com", "partial wildcard \"*foo.com\" not allowed"),
            ("ns/foo.*.com", "invalid"),
        ] {
            assert_error(
                &format!("egress:\n- hosts: [\"{host}\"]"),
                "spec.egress[0].hosts[0]",
                message,
            );
        }
        assert_warning(
            "egress:\n- hosts: [\"ns/a.com\", \"ns/a.com\"]",
            "duplicated egress host: ns/a.com",
        );
        assert_warning(
            "egress:\n- hosts: [\"./a.com\", \"ns/*\"]",
            "duplicated egress host: ns/*",
        );
        assert_warning(
            "egress:\n- hosts: [\"*/*\", \"ns/a.com\"]",
            "`*/*` host select all resources",
        );
    }

    #[test]
    fn outbound_traffic_policy_rules() {
        assert_valid("outboundTrafficPolicy:\n  mode: REGISTRY_ONLY");
        assert_error(
            "outboundTrafficPolicy:\n  egressProxy:\n    host: a.com\n    port: {number: 80}",
            "spec.outboundTrafficPolicy.egressProxy",
            "egress_proxy must be set only with ALLOW_ANY",
        );
        assert_error(
            "outboundTrafficPolicy:\n  mode: ALLOW_ANY\n  egressProxy:\n    host: a.com",
            "spec.outboundTrafficPolicy.egressProxy.port",
            "egress_proxy port must be non-nil",
        );
        assert_error(
            "outboundTrafficPolicy:\n  mode: ALLOW_ANY\n  egressProxy:\n    host: \"*.a.com\"\n    port: {number: 80}",
            "spec.outboundTrafficPolicy.egressProxy.host",
            "invalid",
        );
        assert_error(
            "outboundTrafficPolicy:\n  mode: ALLOW_ANY\n  egressProxy:\n    host: a.com\n    subset: V_1\n    port: {number: 80}",
            "spec.outboundTrafficPolicy.egressProxy.subset",
            "subset name is invalid",
        );
        assert_error(
            "outboundTrafficPolicy:\n  mode: ALLOW_ANY\n  egressProxy:\n    host: a.com\n    port: {number: 0}",
            "spec.outboundTrafficPolicy.egressProxy.port.number",
            "port must be between 1-65535",
        );
    }

    #[test]
    fn host_port_split() {
        use super::split_host_port;
        assert_eq!(split_host_port("127.0.0.1:80"), Ok(("127.0.0.1", "80")));
        assert_eq!(split_host_port("[::1]:80"), Ok(("::1", "80")));
        assert_eq!(split_host_port(":80"), Ok(("", "80")));
        assert!(split_host_port("::1:80").is_err());
        assert!(split_host_port("[::1]").is_err());
    }
}
