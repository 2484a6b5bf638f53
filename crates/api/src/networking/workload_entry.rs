//! `WorkloadEntry` (a workload outside Kubernetes, e.g. a VM) and `WorkloadGroup` (the
//! template and health probe from which WorkloadEntries are created).

use std::collections::{BTreeMap, HashSet};
use std::net::IpAddr;

use serde::{Deserialize, Serialize};

use crate::types::{Labels, is_default};
use crate::validate::{
    Validate, Validator, cel_error, check_labels, check_max_items, check_max_len, check_port_at,
    fqdn_error, is_istio_label,
};

/// The prefix of a Unix domain socket address.
const UNIX_PREFIX: &str = "unix://";

/// `networking.istio.io/v1` WorkloadEntry spec; also a ServiceEntry's `endpoints` item.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadEntry {
    /// IP address, DNS name (DNS resolution only) or `unix://` socket path.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub address: String,
    /// Port name (of the service) to the workload's port number.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub ports: BTreeMap<String, u32>,
    /// The workload's labels.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: Labels,
    /// The network the workload is on (endpoints on other networks go through gateways).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub network: String,
    /// Locality, `region/zone/subzone`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub locality: String,
    /// Load balancing weight relative to the service's other endpoints.
    #[serde(default, skip_serializing_if = "is_default")]
    pub weight: u32,
    /// The workload's service account (its identity).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service_account: String,
}

/// `networking.istio.io/v1` WorkloadGroup spec.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadGroup {
    /// Labels and annotations copied to the generated WorkloadEntries.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub metadata: Option<WorkloadGroupObjectMeta>,
    /// The WorkloadEntry template; `address` and `labels` are filled in per instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template: Option<WorkloadEntry>,
    /// How the workloads' readiness is checked.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub probe: Option<Box<ReadinessProbe>>,
}

/// `WorkloadGroup.ObjectMeta`: metadata given to the generated WorkloadEntries.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WorkloadGroupObjectMeta {
    /// Labels for the entries.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: Labels,
    /// Annotations for the entries.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

/// `ReadinessProbe`: a health check run by the proxy next to the workload. Exactly one
/// of `httpGet`, `tcpSocket`, `exec` and `grpc` is set.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ReadinessProbe {
    /// Seconds after start before the first probe.
    #[serde(default, skip_serializing_if = "is_default")]
    pub initial_delay_seconds: i32,
    /// Seconds after which a probe times out.
    #[serde(default, skip_serializing_if = "is_default")]
    pub timeout_seconds: i32,
    /// Seconds between probes.
    #[serde(default, skip_serializing_if = "is_default")]
    pub period_seconds: i32,
    /// Consecutive successes needed to be considered healthy.
    #[serde(default, skip_serializing_if = "is_default")]
    pub success_threshold: i32,
    /// Consecutive failures needed to be considered unhealthy.
    #[serde(default, skip_serializing_if = "is_default")]
    pub failure_threshold: i32,
    /// An HTTP GET probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub http_get: Option<HttpHealthCheckConfig>,
    /// A TCP connect probe.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tcp_socket: Option<TcpHealthCheckConfig>,
    /// A command run in the workload's environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exec: Option<ExecHealthCheckConfig>,
    /// A gRPC health check.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub grpc: Option<GrpcHealthCheckConfig>,
}

/// `HTTPHealthCheckConfig`: an HTTP GET probe.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct HttpHealthCheckConfig {
    /// Path to request.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub path: String,
    /// Port to connect to (required).
    #[serde(default, skip_serializing_if = "is_default")]
    pub port: u32,
    /// Host to connect to (default: the workload's IP).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub host: String,
    /// `HTTP` (default) or `HTTPS`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub scheme: String,
    /// Headers sent with the request.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http_headers: Vec<ProbeHttpHeader>,
}

/// `HTTPHeader`: a header sent by an HTTP probe.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProbeHttpHeader {
    /// Header name (`[-_A-Za-z0-9]+`).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Header value.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub value: String,
}

/// `TCPHealthCheckConfig`: a TCP connect probe.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TcpHealthCheckConfig {
    /// Host to connect to (default: the workload's IP).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub host: String,
    /// Port to connect to (required).
    #[serde(default, skip_serializing_if = "is_default")]
    pub port: u32,
}

/// `ExecHealthCheckConfig`: a command whose success means ready.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExecHealthCheckConfig {
    /// The command and its arguments (required).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub command: Vec<String>,
}

/// `GrpcHealthCheckConfig`: a gRPC health check (grpc.health.v1).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct GrpcHealthCheckConfig {
    /// Port of the gRPC service.
    #[serde(default, skip_serializing_if = "is_default")]
    pub port: u32,
    /// Service name sent in the health check request.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub service: String,
}

// ---------------------------------------------------------------------------------------
// Validation
// ---------------------------------------------------------------------------------------

/// Which kinds of address an entry may have, depending on where it is used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum AddressRule {
    /// A standalone WorkloadEntry: IP, FQDN or Unix socket; may be empty with a network.
    Any,
    /// A `STATIC` ServiceEntry endpoint: IP or Unix socket.
    Static,
    /// A `DNS`/`DNS_ROUND_ROBIN` ServiceEntry endpoint: IP or FQDN.
    Dns,
}

impl Validate for WorkloadEntry {
    fn validate(&self, v: &mut Validator<'_>) {
        self.check_schema(v, true);
        self.check_endpoint(v, None, AddressRule::Any);
    }
}

impl WorkloadEntry {
    /// The CRD schema's rules (OpenAPI limits and CEL); `require_address` adds the
    /// "Address is required" rule, which a WorkloadGroup template does not have.
    pub(super) fn check_schema(&self, v: &mut Validator<'_>, require_address: bool) {
        if require_address && self.address.is_empty() && self.network.is_empty() {
            cel_error(v, "object", "Address is required");
        }
        v.field("address", |v| {
            check_max_len(v, &self.address, 256);
            if let Some(path) = self.address.strip_prefix(UNIX_PREFIX) {
                if !(path.starts_with('/') || path.starts_with('@')) {
                    cel_error(
                        v,
                        "string",
                        "UDS must be an absolute path or abstract socket",
                    );
                }
                if path.ends_with('/') {
                    cel_error(v, "string", "UDS may not be a dir");
                }
            }
        });
        if self.address.starts_with(UNIX_PREFIX) && !self.ports.is_empty() {
            cel_error(v, "object", "UDS may not include ports");
        }
        check_max_items(v, "ports", self.ports.len(), 128);
        v.field("ports", |v| {
            if !self.ports.keys().all(|name| is_cel_port_name(name)) {
                cel_error(v, "object", "port name must be valid");
            }
            for (name, port) in &self.ports {
                v.key(name, |v| crate::validate::check_port(v, *port));
            }
        });
        check_max_items(v, "labels", self.labels.len(), 256);
        v.field("locality", |v| check_max_len(v, &self.locality, 2048));
        v.field("network", |v| check_max_len(v, &self.network, 2048));
        v.field("serviceAccount", |v| {
            check_max_len(v, &self.service_account, 253)
        });
    }

    /// Istio's webhook rules for an entry (`validateWorkloadEntry`); `service_ports`
    /// are the port names of the ServiceEntry the entry belongs to, if any.
    pub(super) fn check_endpoint(
        &self,
        v: &mut Validator<'_>,
        service_ports: Option<&HashSet<&str>>,
        rule: AddressRule,
    ) {
        let addr = self.address.as_str();
        let is_ip = addr.parse::<IpAddr>().is_ok();
        let unix = addr.starts_with(UNIX_PREFIX) && rule != AddressRule::Dns;
        if addr.is_empty() && rule != AddressRule::Dns {
            if !self.network.is_empty() {
                v.warn_at(
                    "address",
                    format!("address is unset with network {:?}", self.network),
                );
            }
        } else if !unix && !is_ip {
            match rule {
                AddressRule::Static => v.error_at(
                    "address",
                    format!("endpoint address {addr:?} is not a valid IP address"),
                ),
                AddressRule::Any | AddressRule::Dns if fqdn_error(addr).is_some() => v.error_at(
                    "address",
                    format!("endpoint address {addr:?} is not a valid FQDN or an IP address"),
                ),
                _ => {}
            }
        }
        v.field("ports", |v| {
            for (name, port) in &self.ports {
                v.key(name, |v| {
                    if service_ports.is_some_and(|known| !known.contains(name.as_str())) {
                        v.error(format!(
                            "endpoint port {port} is not defined by the service entry"
                        ));
                    }
                    if is_cel_port_name(name) {
                        check_port_name(v, name);
                    }
                });
            }
        });
        v.field("labels", |v| check_labels(v, &self.labels));
        if unix && service_ports.is_some_and(|known| known.len() != 1) {
            v.error("exactly 1 service port required for unix endpoints");
        }
    }
}

/// The CRD's rule for `ports` keys: shorter than 63 characters, alphanumerics and `-`,
/// alphanumeric at both ends.
fn is_cel_port_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && b.len() < 63
        && b[0].is_ascii_alphanumeric()
        && b[b.len() - 1].is_ascii_alphanumeric()
        && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
}

/// Istio's `ValidatePortName`: a port name must be a DNS-1123 label (any case).
pub(super) fn check_port_name(v: &mut Validator<'_>, name: &str) {
    if !is_istio_label(name) {
        v.error(format!("invalid port name: {name}"));
    }
}

/// Istio's `ValidateUnixAddress` on the path after `unix://`: an abstract socket
/// (`@name`) or an absolute path to a file.
pub(super) fn unix_address_error(path: &str) -> Option<String> {
    if path.is_empty() {
        Some("unix address must not be empty".into())
    } else if path.starts_with('@') {
        None
    } else if !path.starts_with('/') || path.ends_with('/') {
        Some(format!("{path} is not an absolute path to a file"))
    } else {
        None
    }
}

impl Validate for WorkloadGroup {
    fn validate(&self, v: &mut Validator<'_>) {
        match &self.template {
            None => v.error_at("template", "Required value: template is required"),
            Some(template) => v.field("template", |v| template.check_schema(v, false)),
        }
        if let Some(meta) = &self.metadata {
            v.field("metadata", |v| {
                check_max_items(v, "labels", meta.labels.len(), 256);
                check_max_items(v, "annotations", meta.annotations.len(), 256);
                v.field("labels", |v| check_labels(v, &meta.labels));
            });
        }
        if let Some(probe) = &self.probe {
            v.check("probe", &**probe);
        }
    }
}

impl Validate for ReadinessProbe {
    fn validate(&self, v: &mut Validator<'_>) {
        for (name, value) in [
            ("periodSeconds", self.period_seconds),
            ("initialDelaySeconds", self.initial_delay_seconds),
            ("timeoutSeconds", self.timeout_seconds),
            ("successThreshold", self.success_threshold),
            ("failureThreshold", self.failure_threshold),
        ] {
            if value < 0 {
                v.error_at(name, format!("{name} must be non-negative"));
            }
        }
        let methods = usize::from(self.http_get.is_some())
            + usize::from(self.tcp_socket.is_some())
            + usize::from(self.exec.is_some())
            + usize::from(self.grpc.is_some());
        match methods {
            0 => v.error("unknown health check method: one of httpGet, tcpSocket, exec or grpc must be set"),
            1 => {}
            _ => v.error("Invalid value: \"object\": must validate one and only one schema (oneOf): only one of httpGet, tcpSocket, exec or grpc may be set"),
        }
        if let Some(http) = &self.http_get {
            v.field("httpGet", |v| {
                check_port_at(v, "port", http.port);
                if !matches!(http.scheme.as_str(), "" | "HTTP" | "HTTPS") {
                    v.field("scheme", |v| cel_error(v, "string", "scheme must be one of [HTTP, HTTPS]"));
                }
                v.each("httpHeaders", &http.http_headers, |v, header| {
                    v.field("name", |v| {
                        let valid = !header.name.is_empty()
                            && header
                                .name
                                .bytes()
                                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
                        if header.name.is_empty() {
                            v.error("header name cannot be empty");
                        } else if !valid {
                            let path = v.path().to_owned();
                            v.error(format!(
                                "Invalid value: {:?}: {path} in body should match '^[-_A-Za-z0-9]+$'",
                                header.name
                            ));
                        }
                    });
                });
            });
        }
        if let Some(tcp) = &self.tcp_socket {
            v.field("tcpSocket", |v| check_port_at(v, "port", tcp.port));
        }
        if let Some(exec) = &self.exec {
            v.field("exec", |v| {
                if exec.command.is_empty() {
                    v.error_at("command", "Required value: exec.command is required");
                }
                v.each("command", &exec.command, |v, arg| {
                    if arg.is_empty() {
                        v.error("Invalid value: \"\": should be at least 1 chars long");
                    }
                });
            });
        }
        if let Some(grpc) = &self.grpc {
            v.field("grpc", |v| check_port_at(v, "port", grpc.port));
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::testing::{errors_and_warnings, issues};

    fn check(kind: &str, spec: &str) -> (Vec<String>, Vec<String>) {
        errors_and_warnings(&issues(kind.parse().expect("a kind"), spec))
    }

    fn assert_error(kind: &str, spec: &str, path: &str, message: &str) {
        let (errs, _) = check(kind, spec);
        assert!(
            errs.iter()
                .any(|e| e.starts_with(path) && e.contains(message)),
            "expected {path}: …{message}… in {errs:#?}"
        );
    }

    fn assert_valid(kind: &str, spec: &str) {
        let (errs, _) = check(kind, spec);
        assert!(errs.is_empty(), "{errs:#?}");
    }

    #[test]
    fn workload_entry_addresses() {
        assert_valid(
            "WorkloadEntry",
            "address: 1.2.3.4\nserviceAccount: sa\nnetwork: net\nlabels: {app: a}\nports: {http: 80}\nweight: 2\nlocality: a/b/c",
        );
        assert_valid("WorkloadEntry", "address: 2001:db8::1");
        assert_valid("WorkloadEntry", "address: vm.example.com");
        assert_valid("WorkloadEntry", "address: unix:///var/run/app.sock");
        assert_valid("WorkloadEntry", "address: unix://@abstract");
        assert_error(
            "WorkloadEntry",
            "labels: {a: b}",
            "spec",
            "Address is required",
        );
        let (errs, warns) = check("WorkloadEntry", "network: net");
        assert!(errs.is_empty(), "{errs:?}");
        assert!(
            warns
                .iter()
                .any(|w| w.contains("address is unset with network \"net\"")),
            "{warns:?}"
        );
        assert_error(
            "WorkloadEntry",
            "address: unix:///dir/",
            "spec.address",
            "UDS may not be a dir",
        );
        assert_error(
            "WorkloadEntry",
            "address: unix://relative",
            "spec.address",
            "UDS must be an absolute path or abstract socket",
        );
        assert_error(
            "WorkloadEntry",
            "address: unix://@foo\nports: {http: 80}",
            "spec",
            "UDS may not include ports",
        );
        assert_error(
            "WorkloadEntry",
            "address: not_a_host!",
            "spec.address",
            "is not a valid FQDN or an IP address",
        );
    }

    #[test]
    fn workload_entry_ports_and_labels() {
        assert_error(
            "WorkloadEntry",
            "address: 1.1.1.1\nports: {http: 99999}",
            "spec.ports[http]",
            "port must be between 1-65535",
        );
        assert_error(
            "WorkloadEntry",
            "address: 1.1.1.1\nports: {\"@\": 80}",
            "spec.ports",
            "Invalid value: \"object\": port name must be valid",
        );
        assert_valid("WorkloadEntry", "address: 1.1.1.1\nports: {HTTP: 80}");
        let long = "a".repeat(63);
        assert_error(
            "WorkloadEntry",
            &format!("address: 1.1.1.1\nports: {{{long}: 80}}"),
            "spec.ports",
            "port name must be valid",
        );
        assert_error(
            "WorkloadEntry",
            "address: 1.1.1.1\nlabels: {\"bad key\": v}",
            "spec.labels[bad key]",
            "invalid tag key",
        );
        assert_error(
            "WorkloadEntry",
            &format!("address: 1.1.1.1\nserviceAccount: {}", "a".repeat(254)),
            "spec.serviceAccount",
            "Too long",
        );
    }

    #[test]
    fn workload_group_rules() {
        assert_valid(
            "WorkloadGroup",
            "metadata:\n  labels: {foo: bar}\n  annotations: {foo: bar}\nprobe:\n  periodSeconds: 1\n  httpGet:\n    port: 8080\n    scheme: HTTPS\n    path: /ready\n    httpHeaders:\n    - name: x-probe\n      value: a\ntemplate:\n  serviceAccount: sa\n  ports: {http: 1}",
        );
        assert_valid(
            "WorkloadGroup",
            "template: {}\nprobe:\n  exec:\n    command: [true]",
        );
        assert_valid(
            "WorkloadGroup",
            "template: {}\nprobe:\n  grpc:\n    port: 9090\n    service: health",
        );
        assert_error(
            "WorkloadGroup",
            "probe:\n  tcpSocket:\n    port: 80",
            "spec.template",
            "Required value",
        );
        assert_error(
            "WorkloadGroup",
            "template: {}\nprobe:\n  tcpSocket:\n    port: 65536",
            "spec.probe.tcpSocket.port",
            "port must be between 1-65535",
        );
        assert_error(
            "WorkloadGroup",
            "template: {}\nprobe:\n  httpGet:\n    port: 80\n    httpHeaders:\n    - name: \"**\"",
            "spec.probe.httpGet.httpHeaders[0].name",
            "spec.probe.httpGet.httpHeaders[0].name in body should match",
        );
        assert_error(
            "WorkloadGroup",
            "template: {}\nprobe:\n  httpGet:\n    port: 80\n    scheme: FTP",
            "spec.probe.httpGet.scheme",
            "scheme must be one of [HTTP, HTTPS]",
        );
        assert_error(
            "WorkloadGroup",
            "template: {}\nprobe:\n  exec: {}",
            "spec.probe.exec.command",
            "exec.command is required",
        );
        assert_error(
            "WorkloadGroup",
            "template: {}\nprobe:\n  periodSeconds: -1\n  exec:\n    command: [x]",
            "spec.probe.periodSeconds",
            "periodSeconds must be non-negative",
        );
        assert_error(
            "WorkloadGroup",
            "template: {}\nprobe:\n  exec:\n    command: [x]\n  tcpSocket:\n    port: 80",
            "spec.probe",
            "only one of httpGet",
        );
        assert_error(
            "WorkloadGroup",
            "template: {}\nprobe:\n  periodSeconds: 1",
            "spec.probe",
            "unknown health check method",
        );
        assert_error(
            "WorkloadGroup",
            "template: {}\nmetadata:\n  labels: {\"bad key\": v}",
            "spec.metadata.labels[bad key]",
            "invalid tag key",
        );
        assert_error(
            "WorkloadGroup",
            "template:\n  address: unix://@s\n  ports: {http: 80}",
            "spec.template",
            "UDS may not include ports",
        );
    }

    #[test]
    fn unix_addresses() {
        use super::unix_address_error;
        assert_eq!(unix_address_error("@abc"), None);
        assert_eq!(unix_address_error("/a/b"), None);
        assert!(unix_address_error("").is_some());
        assert!(unix_address_error("a/b").is_some());
        assert!(unix_address_error("/a/").is_some());
    }
}
