//! `ServiceEntry`: adds services (inside or outside the mesh) to Istio's registry.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::sidecar::WorkloadLabelSelector;
use super::workload_entry::{AddressRule, WorkloadEntry, check_port_name};
use crate::types::{Protocol, is_default, string_enum};
use crate::validate::{
    Validate, Validator, cel_error, check_export_to, check_ip_or_cidr, check_max_items,
    check_max_len, check_port_at, check_wildcard_host, fqdn_error,
};

/// The label that opts a ServiceEntry out of automatic VIP allocation.
const AUTO_ALLOCATE_LABEL: &str = "networking.istio.io/enable-autoallocate-ip";

/// `networking.istio.io/v1` ServiceEntry spec.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServiceEntry {
    /// Host names of the service (at least one; wildcard prefixes allowed, `*` alone not).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Virtual IPs or CIDR blocks of the service.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub addresses: Vec<String>,
    /// The service's ports.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<ServicePort>,
    /// Whether the service is inside or outside the mesh.
    #[serde(default, skip_serializing_if = "is_default")]
    pub location: ServiceEntryLocation,
    /// How the service's endpoints are found.
    #[serde(default, skip_serializing_if = "is_default")]
    pub resolution: ServiceEntryResolution,
    /// The service's endpoints, given inline.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub endpoints: Vec<WorkloadEntry>,
    /// Selects the service's endpoints among Pods and WorkloadEntries (instead of
    /// `endpoints`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_selector: Option<WorkloadLabelSelector>,
    /// Namespaces the service is visible to (`.`, `*`, `~` or names).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub export_to: Vec<String>,
    /// Identities the service's servers may present.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subject_alt_names: Vec<String>,
}

/// `ServicePort`: a port of a ServiceEntry.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServicePort {
    /// The port number (required).
    #[serde(default, skip_serializing_if = "is_default")]
    pub number: u32,
    /// `HTTP`, `HTTP2`, `GRPC`, `HTTPS`, `TLS`, `TCP`, `MONGO`, `REDIS`, `MYSQL`…
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub protocol: String,
    /// The port's name (required, unique).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// The port on the endpoints, when it differs from `number`.
    #[serde(default, skip_serializing_if = "is_default")]
    pub target_port: u32,
}

string_enum! {
    /// `ServiceEntry.Location`.
    pub enum ServiceEntryLocation {
        /// Outside the mesh: no mTLS, treated as external.
        MeshExternal = "MESH_EXTERNAL",
        /// Part of the mesh.
        MeshInternal = "MESH_INTERNAL",
    }
}

string_enum! {
    /// `ServiceEntry.Resolution`.
    pub enum ServiceEntryResolution {
        /// Forward to the connection's original destination address.
        None = "NONE",
        /// Use the given endpoint addresses.
        Static = "STATIC",
        /// Resolve the hosts (or endpoint names) asynchronously, using every address.
        Dns = "DNS",
        /// Resolve lazily, using the first address.
        DnsRoundRobin = "DNS_ROUND_ROBIN",
        /// Resolve each request's host at the proxy (dynamic forward proxy).
        DynamicDns = "DYNAMIC_DNS",
    }
}

/// Istio's `ValidateProtocol`: empty (sniffed) or a known protocol name.
pub(super) fn protocol_error(protocol: &str) -> Option<String> {
    if protocol.is_empty() {
        return None;
    }
    protocol.parse::<Protocol>().err().map(|e| e.to_string())
}

/// True when `protocol` names one of `class`'s protocols.
pub(super) fn protocol_is(protocol: &str, class: fn(Protocol) -> bool) -> bool {
    protocol.parse().is_ok_and(class)
}

impl Validate for ServiceEntry {
    fn validate(&self, v: &mut Validator<'_>) {
        use ServiceEntryResolution as R;
        if let Some(selector) = &self.workload_selector {
            v.field("workloadSelector", |v| selector.check(v, "service entry"));
            if !self.endpoints.is_empty() {
                cel_error(
                    v,
                    "object",
                    "only one of WorkloadSelector or Endpoints can be set",
                );
            }
        }

        if self.hosts.is_empty() {
            v.required("hosts");
        }
        check_max_items(v, "hosts", self.hosts.len(), 256);
        v.each("hosts", &self.hosts, |v, host| {
            if host == "*" {
                cel_error(v, "string", "hostname cannot be wildcard");
                return;
            }
            check_wildcard_host(v, host);
            if host.contains('*') && !host.starts_with("*.") {
                v.warn(format!("partial wildcard {host:?} not allowed"));
            }
        });

        check_max_items(v, "addresses", self.addresses.len(), 256);
        v.each("addresses", &self.addresses, |v, address| {
            check_max_len(v, address, 64);
            check_ip_or_cidr(v, address);
        });
        if self.addresses.iter().any(|a| a.contains('/'))
            && !matches!(self.resolution, R::None | R::Static)
        {
            cel_error(
                v,
                "object",
                "CIDR addresses are allowed only for NONE/STATIC resolution types",
            );
        }

        self.check_ports(v);
        let service_ports: HashSet<&str> = self.ports.iter().map(|p| p.name.as_str()).collect();

        check_max_items(v, "endpoints", self.endpoints.len(), 4096);
        v.each("endpoints", &self.endpoints, |v, e| e.check_schema(v, true));
        match self.resolution {
            R::None => {
                if !self.endpoints.is_empty() {
                    cel_error(v, "object", "NONE mode cannot set endpoints");
                }
                if self.workload_selector.is_some() {
                    v.warn_at(
                        "workloadSelector",
                        "workloadSelector should not be set when resolution mode is NONE",
                    );
                }
            }
            R::Static => {
                v.each("endpoints", &self.endpoints, |v, e| {
                    e.check_endpoint(v, Some(&service_ports), AddressRule::Static)
                });
            }
            R::Dns | R::DnsRoundRobin => {
                if self.endpoints.is_empty() {
                    v.each("hosts", &self.hosts, |v, host| {
                        if host != "*" && fqdn_error(host).is_some() {
                            v.error(format!(
                                "hosts must be FQDN if no endpoints are provided for resolution mode {}",
                                self.resolution
                            ));
                        }
                    });
                }
                if self.resolution == R::DnsRoundRobin && self.endpoints.len() > 1 {
                    cel_error(
                        v,
                        "object",
                        "DNS_ROUND_ROBIN mode cannot have multiple endpoints",
                    );
                }
                v.each("endpoints", &self.endpoints, |v, e| {
                    e.check_endpoint(v, Some(&service_ports), AddressRule::Dns)
                });
                if self.workload_selector.is_some() {
                    v.warn_at(
                        "workloadSelector",
                        format!(
                            "workloadSelector should not be set when resolution mode is {}",
                            self.resolution
                        ),
                    );
                }
                if !self.addresses.is_empty()
                    && self.hosts.len() > 1
                    && self
                        .ports
                        .iter()
                        .any(|p| protocol_is(&p.protocol, Protocol::is_tcp))
                {
                    v.warn("service entry can not have more than one host specified simultaneously with address and tcp port");
                }
            }
            R::DynamicDns => {}
        }

        if self.resolution != R::None
            && self.hosts.len() > 1
            && self.ports.iter().any(|p| {
                !protocol_is(&p.protocol, Protocol::is_http)
                    && !protocol_is(&p.protocol, Protocol::is_tls)
            })
        {
            v.error("multiple hosts provided with non-HTTP, non-TLS ports");
        }

        check_export_to(v, &self.export_to);
    }
}

impl ServiceEntry {
    fn check_ports(&self, v: &mut Validator<'_>) {
        check_max_items(v, "ports", self.ports.len(), 256);
        let mut numbers = HashSet::new();
        if !self.ports.iter().all(|p| numbers.insert(p.number)) {
            v.field("ports", |v| {
                cel_error(v, "array", "port number cannot be duplicated")
            });
        }
        let auto_allocate = v
            .meta()
            .labels
            .as_ref()
            .and_then(|l| l.get(AUTO_ALLOCATE_LABEL))
            .is_none_or(|value| value != "false");
        let mut names = HashSet::new();
        v.each("ports", &self.ports, |v, port| {
            if port.name.is_empty() {
                v.required("name");
            } else {
                if !names.insert(port.name.clone()) {
                    v.error(format!("Duplicate value: {{\"name\":{:?}}}", port.name));
                }
                v.field("name", |v| {
                    check_max_len(v, &port.name, 256);
                    check_port_name(v, &port.name);
                });
            }
            v.field("protocol", |v| {
                check_max_len(v, &port.protocol, 256);
                if let Some(e) = protocol_error(&port.protocol) {
                    v.error(e);
                }
            });
            check_port_at(v, "number", port.number);
            if port.target_port != 0 {
                check_port_at(v, "targetPort", port.target_port);
                if self.resolution == ServiceEntryResolution::None {
                    v.warn_at("targetPort", "targetPort has no effect when resolution mode is NONE");
                }
            }
            if self.addresses.is_empty()
                && !auto_allocate
                && (port.protocol.is_empty() || port.protocol == "TCP")
            {
                v.warn("addresses are required for ports serving TCP (or unset) protocol when ISTIO_META_DNS_AUTO_ALLOCATE is not set on a proxy");
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use crate::load::Loader;
    use crate::validate::Severity;

    fn check(spec: &str, labels: &str) -> (Vec<String>, Vec<String>) {
        let yaml = format!(
            "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: se\n  namespace: ns\n{labels}spec:\n{}",
            spec.lines().map(|l| format!("  {l}\n")).collect::<String>()
        );
        let loaded = Loader::new().load_str(&yaml, None);
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        let issues = loaded.objects[0].object.validate();
        let pick = |s: Severity| {
            issues
                .iter()
                .filter(|i| i.severity == s)
                .map(|i| i.to_string())
                .collect::<Vec<_>>()
        };
        (pick(Severity::Error), pick(Severity::Warning))
    }

    fn assert_error(spec: &str, path: &str, message: &str) {
        let (errs, _) = check(spec, "");
        assert!(
            errs.iter()
                .any(|e| e.starts_with(path) && e.contains(message)),
            "expected {path}: …{message}… in {errs:#?}"
        );
    }

    fn assert_valid(spec: &str) {
        let (errs, _) = check(spec, "");
        assert!(errs.is_empty(), "{errs:#?}");
    }

    fn assert_warning(spec: &str, labels: &str, message: &str) {
        let (errs, warns) = check(spec, labels);
        assert!(errs.is_empty(), "{errs:#?}");
        assert!(
            warns.iter().any(|w| w.contains(message)),
            "expected …{message}… in {warns:#?}"
        );
    }

    #[test]
    fn valid_service_entries() {
        assert_valid(
            "hosts: [api.example.com]\naddresses: [10.0.0.1, 2001:db8::/64]\nlocation: MESH_EXTERNAL\nresolution: STATIC\nports:\n- number: 443\n  name: https\n  protocol: TLS\nendpoints:\n- address: 10.1.1.1\n  ports: {https: 8443}\n  labels: {v: a}\nsubjectAltNames: [spiffe://a/b]\nexportTo: [\"~\"]",
        );
        assert_valid(
            "hosts: [api.example.com, www.example.com]\nresolution: DNS\nports:\n- number: 80\n  name: http\n  protocol: HTTP\n- number: 443\n  name: https\n  protocol: HTTPS",
        );
        assert_valid(
            "hosts: [\"*.example.com\"]\nresolution: DNS\nendpoints:\n- address: proxy.example.com\nports:\n- {number: 80, name: http, protocol: http}",
        );
        assert_valid(
            "hosts: [db.internal]\nlocation: MESH_INTERNAL\nresolution: STATIC\nworkloadSelector:\n  labels: {app: db}\nports:\n- {number: 5432, name: tcp-pg, protocol: TCP}",
        );
        assert_valid(
            "hosts: [\"*.example.com\"]\nresolution: DYNAMIC_DNS\nports:\n- {number: 443, name: tls, protocol: TLS}",
        );
    }

    #[test]
    fn hosts_and_addresses() {
        assert_error("ports: []", "spec.hosts", "Required value");
        assert_error(
            "hosts: [\"*\"]",
            "spec.hosts[0]",
            "hostname cannot be wildcard",
        );
        assert_error("hosts: [foo.*.com]", "spec.hosts[0]", "invalid");
        assert_warning("hosts: [\"*x\"]", "", "partial wildcard \"*x\" not allowed");
        assert_error(
            "hosts: [a.com]\naddresses: [1.2.3.4/99]",
            "spec.addresses[0]",
            "not a valid IP address or CIDR block",
        );
        assert_error(
            "hosts: [a.com]\naddresses: [1.2.3.4/16]\nresolution: DNS",
            "spec",
            "CIDR addresses are allowed only for NONE/STATIC resolution types",
        );
        assert_valid("hosts: [a.com]\naddresses: [1.1.1.1/32]");
        assert_error(
            "hosts: [a.com, b.com]\nresolution: DNS\nports:\n- {number: 5432, name: pg, protocol: TCP}",
            "spec",
            "multiple hosts provided with non-HTTP, non-TLS ports",
        );
        assert_error(
            "hosts: [a.com]\nexportTo: [\"*\", a]",
            "spec.exportTo",
            "cannot have both public",
        );
    }

    #[test]
    fn ports() {
        assert_error(
            "hosts: [a.com]\nports:\n- {name: a, number: 1}\n- {name: a, number: 12}",
            "spec.ports[1]",
            "Duplicate value",
        );
        assert_error(
            "hosts: [a.com]\nports:\n- {name: a, number: 1}\n- {name: b, number: 1}",
            "spec.ports",
            "port number cannot be duplicated",
        );
        assert_error(
            "hosts: [a.com]\nports:\n- {name: a, number: 99999}",
            "spec.ports[0].number",
            "port must be between 1-65535",
        );
        assert_error(
            "hosts: [a.com]\nports:\n- {name: a, number: 1, targetPort: 99999}",
            "spec.ports[0].targetPort",
            "port must be between 1-65535",
        );
        assert_error(
            "hosts: [a.com]\nports:\n- {number: 1}",
            "spec.ports[0].name",
            "Required value",
        );
        assert_error(
            "hosts: [a.com]\nports:\n- {name: Bad_Name, number: 1}",
            "spec.ports[0].name",
            "invalid port name: Bad_Name",
        );
        assert_error(
            "hosts: [a.com]\nports:\n- {name: a, number: 1, protocol: SMTP}",
            "spec.ports[0].protocol",
            "unsupported protocol: SMTP",
        );
        assert_warning(
            "hosts: [a.com]\nports:\n- {name: a, number: 1, targetPort: 2}",
            "",
            "targetPort has no effect when resolution mode is NONE",
        );
        assert_warning(
            "hosts: [a.com]\nports:\n- {name: a, number: 1}",
            "  labels:\n    networking.istio.io/enable-autoallocate-ip: \"false\"\n",
            "addresses are required for ports serving TCP",
        );
    }

    #[test]
    fn resolution_rules() {
        assert_error(
            "hosts: [a.com]\nendpoints:\n- address: 1.2.3.4\nresolution: NONE",
            "spec",
            "NONE mode cannot set endpoints",
        );
        assert_error(
            "hosts: [a.com]\nresolution: DNS_ROUND_ROBIN\nendpoints:\n- address: s1.a.com\n- address: s2.a.com",
            "spec",
            "DNS_ROUND_ROBIN mode cannot have multiple endpoints",
        );
        assert_error(
            "hosts: [\"*.a.com\"]\nresolution: DNS",
            "spec.hosts[0]",
            "hosts must be FQDN if no endpoints are provided for resolution mode DNS",
        );
        assert_error(
            "hosts: [a.com]\nresolution: STATIC\nendpoints:\n- address: a.example.com",
            "spec.endpoints[0].address",
            "is not a valid IP address",
        );
        assert_error(
            "hosts: [a.com]\nresolution: DNS\nendpoints:\n- address: bad..host",
            "spec.endpoints[0].address",
            "is not a valid FQDN or an IP address",
        );
        assert_error(
            "hosts: [a.com]\nresolution: STATIC\nports:\n- {name: http, number: 80}\nendpoints:\n- address: 1.1.1.1\n  ports: {grpc: 90}",
            "spec.endpoints[0].ports[grpc]",
            "endpoint port 90 is not defined by the service entry",
        );
        assert_error(
            "hosts: [a.com]\nresolution: STATIC\nendpoints:\n- address: unix:///sock",
            "spec.endpoints[0]",
            "exactly 1 service port required for unix endpoints",
        );
        assert_valid(
            "hosts: [a.com]\nresolution: STATIC\nports:\n- {name: http, number: 80}\nendpoints:\n- address: unix:///sock",
        );
        assert_error(
            "hosts: [a.com]\nresolution: STATIC\nendpoints:\n- labels: {a: b}",
            "spec.endpoints[0]",
            "Address is required",
        );
        assert_error(
            "hosts: [a.com]\nresolution: STATIC\nworkloadSelector:\n  labels: {a: b}\nendpoints:\n- address: 1.1.1.1",
            "spec",
            "only one of WorkloadSelector or Endpoints can be set",
        );
        assert_warning(
            "hosts: [a.com]\nresolution: DNS\nworkloadSelector:\n  labels: {a: b}",
            "",
            "workloadSelector should not be set when resolution mode is DNS",
        );
    }

    #[test]
    fn selector_rules() {
        assert_error(
            "hosts: [a.com]\nworkloadSelector:\n  labels: {val: \"*\"}",
            "spec.workloadSelector.labels[val]",
            "wildcard is not supported in selector",
        );
        assert_warning(
            "hosts: [a.com]\nworkloadSelector: {}",
            "",
            "service entry: workload selector specified without labels, will be applied to all services in namespace",
        );
    }
}
