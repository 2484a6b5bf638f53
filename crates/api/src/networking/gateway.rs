//! `networking.istio.io` Gateway: a load balancer at the edge of the mesh, with validation
//! equivalent to Istio's webhook (`ValidateGateway`) and the CRD schema (OpenAPI + CEL).

use std::collections::{BTreeMap, HashSet};

use serde::{Deserialize, Serialize};

use crate::types::{Protocol, is_default, string_enum};
use crate::validate::{
    Validate, Validator, check_ip, check_port, is_dns1123_label, wildcard_domain_error,
};

/// `Gateway`: the servers (ports, hosts, TLS) a set of gateway workloads exposes.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Gateway {
    /// The servers to expose.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub servers: Vec<Server>,
    /// Labels of the gateway pods/VMs this configuration applies to.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub selector: BTreeMap<String, String>,
}

/// `Server`: a port, the hosts served on it and its TLS settings.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Server {
    /// The port to listen on (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub port: Option<Port>,
    /// IP address or `unix://` socket to bind to; all addresses when empty.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub bind: String,
    /// Hosts exposed (`[namespace/]dnsName`, wildcards allowed; required).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// TLS settings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tls: Option<ServerTlsSettings>,
    /// Loopback address or socket traffic is forwarded to (sidecar ingress only).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub default_endpoint: String,
    /// Optional name of the server, unique across servers.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
}

/// `Port`: a port a gateway server listens on.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Port {
    /// Port number (required; 0 only with a `unix://` bind).
    #[serde(default, skip_serializing_if = "is_default")]
    pub number: u32,
    /// Protocol: HTTP, HTTPS, GRPC, GRPC-WEB, HTTP2, MONGO, REDIS, MYSQL, TCP or TLS (required).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub protocol: String,
    /// Name of the port, unique across servers (required).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Deprecated and ignored on gateways.
    #[serde(default, skip_serializing_if = "is_default")]
    pub target_port: u32,
}

string_enum! {
    /// `ServerTLSSettings.TLSmode`: how a server handles TLS.
    pub enum ServerTlsMode {
        /// Forward TLS untouched, routed by SNI (the proto default).
        Passthrough = "PASSTHROUGH",
        /// Terminate TLS with a server certificate.
        Simple = "SIMPLE",
        /// Terminate TLS and require a client certificate.
        Mutual = "MUTUAL",
        /// Passthrough with routing from the SNI only (no VirtualService needed).
        AutoPassthrough = "AUTO_PASSTHROUGH",
        /// Mutual TLS with Istio's own certificates.
        IstioMutual = "ISTIO_MUTUAL",
        /// Like MUTUAL, but a client certificate is optional.
        OptionalMutual = "OPTIONAL_MUTUAL",
    }
}

string_enum! {
    /// `ServerTLSSettings.TLSProtocol`: a TLS protocol version.
    pub enum TlsProtocol {
        /// Envoy's default.
        TlsAuto = "TLS_AUTO",
        /// TLS 1.0.
        TlsV1_0 = "TLSV1_0",
        /// TLS 1.1.
        TlsV1_1 = "TLSV1_1",
        /// TLS 1.2.
        TlsV1_2 = "TLSV1_2",
        /// TLS 1.3.
        TlsV1_3 = "TLSV1_3",
    }
}

/// `ServerTLSSettings`: TLS settings of a gateway server (or sidecar ingress listener).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ServerTlsSettings {
    /// Redirect plain HTTP requests to HTTPS with a 301.
    #[serde(default, skip_serializing_if = "is_default")]
    pub https_redirect: bool,
    /// How TLS is handled.
    #[serde(default, skip_serializing_if = "is_default")]
    pub mode: ServerTlsMode,
    /// Path of the server certificate file (SIMPLE/MUTUAL without credentialName).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub server_certificate: String,
    /// Path of the private key file.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub private_key: String,
    /// Path of the CA bundle to verify client certificates with.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ca_certificates: String,
    /// Path of a certificate revocation list.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ca_crl: String,
    /// Secret holding the certificate, key (and CA).
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub credential_name: String,
    /// Up to two secrets (e.g. RSA and ECDSA certificates).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub credential_names: Vec<String>,
    /// Up to two certificate/key file pairs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tls_certificates: Vec<TlsCertificate>,
    /// Secret or ConfigMap holding the CA certificates for client verification.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ca_cert_credential_name: String,
    /// Subject alternative names accepted in client certificates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub subject_alt_names: Vec<String>,
    /// Base64 SHA-256 hashes of the SPKIs of accepted client certificates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub verify_certificate_spki: Vec<String>,
    /// Hex SHA-256 hashes of accepted client certificates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub verify_certificate_hash: Vec<String>,
    /// Minimum TLS version.
    #[serde(default, skip_serializing_if = "is_default")]
    pub min_protocol_version: TlsProtocol,
    /// Maximum TLS version.
    #[serde(default, skip_serializing_if = "is_default")]
    pub max_protocol_version: TlsProtocol,
    /// Cipher suites allowed (BoringSSL names).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub cipher_suites: Vec<String>,
    /// ECDH curves allowed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ecdh_curves: Vec<String>,
    /// Accept client certificates that fail verification (still verifying them).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub insecure_skip_verify: Option<bool>,
}

/// `ServerTLSSettings.TLSCertificate`: one certificate/key pair from files.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TlsCertificate {
    /// Path of the server certificate file.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub server_certificate: String,
    /// Path of the private key file.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub private_key: String,
    /// Path of the CA bundle.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub ca_certificates: String,
}

/// Cipher suites Envoy's BoringSSL accepts on gateways.
const CIPHER_SUITES: &[&str] = &[
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-CHACHA20-POLY1305",
    "ECDHE-ECDSA-AES128-SHA",
    "ECDHE-RSA-AES128-SHA",
    "ECDHE-ECDSA-AES256-SHA",
    "ECDHE-RSA-AES256-SHA",
    "AES128-GCM-SHA256",
    "AES256-GCM-SHA384",
    "AES128-SHA",
    "AES256-SHA",
    "DES-CBC3-SHA",
];

const UNIX_PREFIX: &str = "unix://";

impl ServerTlsSettings {
    /// True for PASSTHROUGH and AUTO_PASSTHROUGH.
    pub fn is_passthrough(&self) -> bool {
        matches!(
            self.mode,
            ServerTlsMode::Passthrough | ServerTlsMode::AutoPassthrough
        )
    }
}

impl Validate for Gateway {
    fn validate(&self, v: &mut Validator<'_>) {
        let name = v.meta().name.clone().unwrap_or_default();
        if !name.is_empty() && !is_dns1123_label(&name) {
            v.error(format!("invalid gateway name: {name:?}"));
        }
        if self.servers.is_empty() {
            v.error_at("servers", "gateway must have at least one server");
        }
        let mut port_names = HashSet::new();
        v.each("servers", &self.servers, |v, server| {
            server.check(v);
            if let Some(port) = &server.port {
                if !port_names.insert(port.name.clone()) {
                    v.error_at(
                        "port.name",
                        format!(
                            "port names in servers must be unique: duplicate name {}",
                            port.name
                        ),
                    );
                }
                let https_redirect = server.tls.as_ref().is_some_and(|t| t.https_redirect);
                if !port.protocol.parse().is_ok_and(Protocol::is_http) && https_redirect {
                    v.warn_at(
                        "tls.httpsRedirect",
                        "tls.httpsRedirect should only be used with http servers",
                    );
                }
            }
        });
    }
}

impl Server {
    fn check(&self, v: &mut Validator<'_>) {
        if self.hosts.is_empty() {
            v.error_at(
                "hosts",
                "Required value: server config must contain at least one host",
            );
        }
        v.each("hosts", &self.hosts, |v, host| check_gateway_host(v, host));
        let port_ok = match &self.port {
            None => {
                v.error_at("port", "Required value: port is required");
                false
            }
            Some(port) => v.field("port", |v| port.check(v, &self.bind)),
        };
        self.check_bind(v);
        if let Some(tls) = &self.tls {
            v.field("tls", |v| tls.check(v));
        }
        let Some(port) = self.port.as_ref().filter(|_| port_ok) else {
            return;
        };
        match (port.protocol.parse::<Protocol>().ok(), &self.tls) {
            (Some(p), None) if p.is_tls() => {
                v.error("server must have TLS settings for HTTPS/TLS protocols")
            }
            (Some(p), Some(tls)) if p.is_http() => {
                let files = !tls.ca_certificates.is_empty()
                    || !tls.private_key.is_empty()
                    || !tls.server_certificate.is_empty();
                if !tls.is_passthrough() || files {
                    v.error_at(
                        "tls",
                        "server cannot have TLS settings for plain text HTTP ports",
                    );
                }
            }
            (Some(p), Some(_)) if !p.is_tls() => v.error_at(
                "tls",
                "server cannot have TLS settings for non HTTPS/TLS ports",
            ),
            _ => {}
        }
    }

    fn check_bind(&self, v: &mut Validator<'_>) {
        if let Some(path) = self.bind.strip_prefix(UNIX_PREFIX) {
            v.field("bind", |v| {
                if path.is_empty() {
                    v.error("unix address must not be empty");
                } else if !path.starts_with('@') && (!path.starts_with('/') || path.ends_with('/'))
                {
                    v.error(format!("{path} is not an absolute path to a file"));
                }
            });
            if let Some(port) = self.port.as_ref().filter(|p| p.number != 0) {
                v.error_at(
                    "port.number",
                    format!(
                        "port number must be 0 for unix domain socket: {}",
                        port.number
                    ),
                );
            }
        } else if !self.bind.is_empty() {
            v.field("bind", |v| check_ip(v, &self.bind));
        }
    }
}

impl Port {
    /// Checks the port; true when it has no error (the TLS/protocol checks need a good port).
    fn check(&self, v: &mut Validator<'_>, bind: &str) -> bool {
        let mut ok = true;
        if self.protocol.is_empty() {
            v.required("protocol");
            ok = false;
        } else if self.protocol.parse::<Protocol>().is_err() {
            v.error_at(
                "protocol",
                format!("invalid protocol {:?}, supported protocols are HTTP, HTTP2, GRPC, GRPC-WEB, MONGO, REDIS, MYSQL, TCP", self.protocol),
            );
            ok = false;
        }
        if self.number > 0 || !bind.starts_with(UNIX_PREFIX) {
            if !(1..=65535).contains(&self.number) {
                ok = false;
            }
            v.field("number", |v| check_port(v, self.number));
        }
        if self.target_port > 0 {
            v.error_at("targetPort", "targetPort has no impact on Gateways");
            ok = false;
        }
        if self.name.is_empty() {
            v.error_at("name", "Required value: port name must be set");
            ok = false;
        }
        ok
    }
}

/// Istio's `ValidateNamespaceSlashWildcardHostname` for gateways: `[namespace/]dnsName`,
/// where the namespace is `*`, `.` or a name and the DNS name a (wildcard) FQDN or an IP.
fn check_gateway_host(v: &mut Validator<'_>, host: &str) {
    let name = match host.split_once('/') {
        None => host,
        Some((namespace, name)) => {
            if namespace.is_empty() || name.is_empty() {
                v.error("config namespace and dnsName in host entry cannot be empty");
            }
            if namespace != "*"
                && namespace != "."
                && !is_dns1123_label(&namespace.to_ascii_lowercase())
            {
                v.error(format!("invalid namespace value {namespace:?} in gateway"));
            }
            name
        }
    };
    if name != "*" && !name.contains('.') {
        v.error("short names (non FQDN) are not allowed");
    }
    if let Some(e) = wildcard_domain_error(name)
        && name.parse::<std::net::IpAddr>().is_err()
    {
        v.error(e);
    }
    if name.contains('*') && name.len() != 1 && !name.starts_with("*.") {
        v.error(format!("partial wildcard {name:?} not allowed"));
    }
}

impl ServerTlsSettings {
    /// The TLS rules shared by Gateway servers and Sidecar ingress listeners: the CRD's
    /// rules and Istio's `validateTLSOptions`/`validateServerTLS`.
    pub(super) fn check(&self, v: &mut Validator<'_>) {
        self.check_schema(v);
        if matches!(
            self.min_protocol_version,
            TlsProtocol::TlsV1_0 | TlsProtocol::TlsV1_1
        ) && self.cipher_suites.is_empty()
        {
            v.warn_at(
                "minProtocolVersion",
                "TLS version below TLSV1_2 require setting compatible ciphers as by default they no longer include compatible ciphers.",
            );
        }
        self.check_cipher_suites(v);
        if self.mode == ServerTlsMode::IstioMutual {
            for (set, what) in [
                (!self.server_certificate.is_empty(), "server certificate"),
                (!self.private_key.is_empty(), "private key"),
                (!self.ca_certificates.is_empty(), "CA bundle"),
                (!self.tls_certificates.is_empty(), "tlsCertificates"),
                (!self.credential_name.is_empty(), "credentialName"),
                (!self.credential_names.is_empty(), "credentialNames"),
            ] {
                if set {
                    v.error(format!("ISTIO_MUTUAL TLS cannot have associated {what}"));
                }
            }
            return;
        }
        let has_credential = !self.credential_name.is_empty() || !self.credential_names.is_empty();
        if self.is_passthrough()
            && (has_credential
                || !self.ca_crl.is_empty()
                || !self.server_certificate.is_empty()
                || !self.private_key.is_empty()
                || !self.ca_certificates.is_empty()
                || !self.tls_certificates.is_empty())
        {
            v.warn(format!(
                "{} mode does not use certificates, they will be ignored",
                self.mode
            ));
        }
        let sources = [
            !self.server_certificate.is_empty() && !self.private_key.is_empty(),
            !self.credential_name.is_empty(),
            !self.credential_names.is_empty(),
            !self.tls_certificates.is_empty(),
        ];
        if sources.iter().filter(|s| **s).count() > 1 {
            v.error("only one of credential_name, credential_names, server_certificate/private_key, tls_certificates should be specified");
        }
        let terminating = matches!(
            self.mode,
            ServerTlsMode::Simple | ServerTlsMode::Mutual | ServerTlsMode::OptionalMutual
        );
        if terminating && has_credential {
            // Certificates come from the secret(s).
            return;
        }
        if terminating {
            let prefix = if self.mode == ServerTlsMode::Simple {
                "SIMPLE TLS"
            } else {
                "MUTUAL TLS"
            };
            if self.mode != ServerTlsMode::Simple && self.ca_certificates.is_empty() {
                v.error(format!("{prefix} requires a client CA bundle"));
            }
            let pairs: Vec<(&str, &str)> = if self.tls_certificates.is_empty() {
                vec![(&self.server_certificate, &self.private_key)]
            } else {
                self.tls_certificates
                    .iter()
                    .map(|c| (c.server_certificate.as_str(), c.private_key.as_str()))
                    .collect()
            };
            for (certificate, key) in pairs {
                if certificate.is_empty() {
                    v.error(format!("{prefix} requires a server certificate"));
                }
                if key.is_empty() {
                    v.error(format!("{prefix} requires a private key"));
                }
            }
        }
        if !self.ca_crl.is_empty() {
            if !self.credential_name.is_empty() {
                v.error_at("caCrl", "CRL is not supported with credentialName. CRL has to be specified in the credential");
            }
            if self.mode == ServerTlsMode::Simple {
                v.error_at("caCrl", "CRL is not supported with SIMPLE TLS");
            }
        }
    }

    /// The CRD's list bounds and CEL rules.
    fn check_schema(&self, v: &mut Validator<'_>) {
        for (field, len) in [
            ("credentialNames", self.credential_names.len()),
            ("tlsCertificates", self.tls_certificates.len()),
        ] {
            if len > 2 {
                v.error_at(field, format!("Too many: {len}: must have at most 2 items"));
            }
        }
        let names = !self.credential_names.is_empty();
        let certificates = !self.tls_certificates.is_empty();
        if names && certificates {
            v.error("only one of credentialNames or tlsCertificates can be set");
        }
        if !self.credential_name.is_empty() && names {
            v.error("only one of credentialName or credentialNames can be set");
        }
        // The CRD's third rule repeats the first with this message.
        if names && certificates {
            v.error("only one of credentialName or tlsCertificates can be set");
        }
    }

    fn check_cipher_suites(&self, v: &mut Validator<'_>) {
        let mut valid = HashSet::new();
        let mut invalid = Vec::new();
        let mut duplicate = Vec::new();
        for cs in &self.cipher_suites {
            // `ALL`, and expressions starting with an operator (`-`, `+`, `!`), pass as is.
            let expression =
                cs.is_empty() || cs == "ALL" || !cs.starts_with(|c: char| c.is_alphanumeric());
            if !expression && !CIPHER_SUITES.contains(&cs.as_str()) {
                invalid.push(cs.as_str());
            } else if !valid.insert(cs.as_str()) {
                duplicate.push(cs.as_str());
            }
        }
        for (list, what) in [(&mut invalid, "invalid"), (&mut duplicate, "duplicate")] {
            if !list.is_empty() {
                list.sort_unstable();
                list.dedup();
                v.warn_at(
                    "cipherSuites",
                    format!("ignoring {what} cipher suites: [{}]", list.join(" ")),
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::Kind;
    use crate::testing::{self, messages};
    use crate::validate::{Issue, Severity};

    fn issues(spec: &str) -> Vec<Issue> {
        testing::issues(Kind::Gateway, spec)
    }

    fn errors(spec: &str) -> Vec<String> {
        messages(&issues(spec), Severity::Error)
    }

    fn warnings(spec: &str) -> Vec<String> {
        messages(&issues(spec), Severity::Warning)
    }

    fn server(port: &str, tls: &str, hosts: &str) -> String {
        format!("  servers:\n  - port: {{{port}}}\n    hosts: [{hosts}]\n{tls}")
    }

    fn assert_error(spec: &str, path: &str, message: &str) {
        let errs = errors(spec);
        assert!(
            errs.iter()
                .any(|e| e.starts_with(path) && e.contains(message)),
            "expected {path}: {message} in {errs:?}"
        );
    }

    const HTTP: &str = "number: 80, name: http, protocol: HTTP";
    const HTTPS: &str = "number: 443, name: https, protocol: HTTPS";

    #[test]
    fn valid_gateways_pass() {
        let ok = [
            server(HTTP, "", "\"*\""),
            server(
                HTTP,
                "    tls: {httpsRedirect: true}\n",
                "uk.bookinfo.com, ns/*.example.com, ./foo.com, \"*/bar.com\"",
            ),
            server(
                HTTPS,
                "    tls: {mode: SIMPLE, credentialName: bookinfo-secret}\n",
                "bookinfo.com",
            ),
            server(
                HTTPS,
                "    tls: {mode: SIMPLE, serverCertificate: /etc/cert.pem, privateKey: /etc/key.pem}\n",
                "a.com",
            ),
            server(
                HTTPS,
                "    tls: {mode: MUTUAL, serverCertificate: /c, privateKey: /k, caCertificates: /ca}\n",
                "a.com",
            ),
            server(
                HTTPS,
                "    tls: {mode: MUTUAL, credentialNames: [a, b]}\n",
                "a.com",
            ),
            server(
                HTTPS,
                "    tls: {mode: SIMPLE, tlsCertificates: [{serverCertificate: /c, privateKey: /k}]}\n",
                "a.com",
            ),
            server(
                "number: 443, name: tls, protocol: TLS",
                "    tls: {mode: AUTO_PASSTHROUGH}\n",
                "\"*.local\"",
            ),
            server(
                "number: 15443, name: tls, protocol: tls",
                "    tls: {mode: ISTIO_MUTUAL}\n",
                "\"*\"",
            ),
            server(
                "number: 0, name: uds, protocol: HTTP",
                "    bind: unix:///var/run/gw.sock\n",
                "a.com",
            ),
            server(HTTP, "    bind: 10.0.0.1\n", "192.168.1.1"),
        ];
        for spec in ok {
            assert_eq!(errors(&spec), Vec::<String>::new(), "{spec}");
        }
    }

    #[test]
    fn servers_and_ports_are_required() {
        assert_error(
            "  selector: {istio: ingressgateway}\n",
            "spec.servers",
            "gateway must have at least one server",
        );
        assert_error(
            "  servers:\n  - hosts: [a.com]\n",
            "spec.servers[0].port",
            "port is required",
        );
        assert_error(
            &server(HTTP, "", ""),
            "spec.servers[0].hosts",
            "at least one host",
        );
        assert_error(
            &server("number: 80, protocol: HTTP", "", "a.com"),
            "spec.servers[0].port.name",
            "port name must be set",
        );
        assert_error(
            &server("number: 80, name: x", "", "a.com"),
            "spec.servers[0].port.protocol",
            "Required value",
        );
        assert_error(
            &server("number: 80, name: x, protocol: FOO", "", "a.com"),
            "spec.servers[0].port.protocol",
            "invalid protocol \"FOO\"",
        );
        assert_error(
            &server("number: 70000, name: x, protocol: HTTP", "", "a.com"),
            "spec.servers[0].port.number",
            "65535",
        );
        assert_error(
            &server(
                "number: 80, name: x, protocol: HTTP, targetPort: 8080",
                "",
                "a.com",
            ),
            "spec.servers[0].port.targetPort",
            "no impact",
        );
        let dup = format!(
            "{}  - port: {{{HTTP}}}\n    hosts: [b.com]\n",
            server(HTTP, "", "a.com")
        );
        assert_error(
            &dup,
            "spec.servers[1].port.name",
            "port names in servers must be unique: duplicate name http",
        );
    }

    #[test]
    fn hosts_follow_istio() {
        for (host, message) in [
            ("foo", "short names (non FQDN) are not allowed"),
            (
                "bad_ns/a.com",
                "invalid namespace value \"bad_ns\" in gateway",
            ),
            ("/a.com", "cannot be empty"),
            ("*foo.com", "partial wildcard"),
            ("a.*.com", "invalid"),
        ] {
            assert_error(
                &server(HTTP, "", &format!("{host:?}")),
                "spec.servers[0].hosts[0]",
                message,
            );
        }
    }

    #[test]
    fn bind_addresses() {
        assert_error(
            &server(HTTP, "    bind: not-an-ip\n", "a.com"),
            "spec.servers[0].bind",
            "not a valid IP",
        );
        assert_error(
            &server(HTTP, "    bind: unix://relative\n", "a.com"),
            "spec.servers[0].bind",
            "not an absolute path",
        );
        assert_error(
            &server(HTTP, "    bind: unix:///a.sock\n", "a.com"),
            "spec.servers[0].port.number",
            "must be 0 for unix domain socket",
        );
    }

    #[test]
    fn tls_settings_match_the_protocol() {
        assert_error(
            &server(HTTPS, "", "a.com"),
            "spec.servers[0]",
            "server must have TLS settings for HTTPS/TLS protocols",
        );
        assert_error(
            &server(
                HTTP,
                "    tls: {mode: SIMPLE, credentialName: x}\n",
                "a.com",
            ),
            "spec.servers[0].tls",
            "plain text HTTP ports",
        );
        assert_error(
            &server(
                HTTP,
                "    tls: {httpsRedirect: true, privateKey: /k}\n",
                "a.com",
            ),
            "spec.servers[0].tls",
            "plain text HTTP ports",
        );
        assert_error(
            &server(
                "number: 27017, name: mongo, protocol: MONGO",
                "    tls: {mode: SIMPLE}\n",
                "a.com",
            ),
            "spec.servers[0].tls",
            "non HTTPS/TLS ports",
        );
        let w = warnings(&server(
            HTTPS,
            "    tls: {httpsRedirect: true, mode: SIMPLE, credentialName: x}\n",
            "a.com",
        ));
        assert!(
            w.iter()
                .any(|w| w.contains("tls.httpsRedirect should only be used with http servers")),
            "{w:?}"
        );
    }

    #[test]
    fn tls_modes_and_certificates() {
        let tls = |t: &str| server(HTTPS, &format!("    tls: {{{t}}}\n"), "a.com");
        assert_error(
            &tls("mode: SIMPLE"),
            "spec.servers[0].tls",
            "SIMPLE TLS requires a server certificate",
        );
        assert_error(
            &tls("mode: SIMPLE, serverCertificate: /c"),
            "spec.servers[0].tls",
            "SIMPLE TLS requires a private key",
        );
        assert_error(
            &tls("mode: MUTUAL, serverCertificate: /c, privateKey: /k"),
            "spec.servers[0].tls",
            "MUTUAL TLS requires a client CA bundle",
        );
        assert_error(
            &tls("mode: OPTIONAL_MUTUAL, serverCertificate: /c, privateKey: /k"),
            "spec.servers[0].tls",
            "MUTUAL TLS requires a client CA bundle",
        );
        assert_error(
            &tls("mode: ISTIO_MUTUAL, credentialName: x"),
            "spec.servers[0].tls",
            "ISTIO_MUTUAL TLS cannot have associated credentialName",
        );
        assert_error(
            &tls("mode: ISTIO_MUTUAL, privateKey: /k"),
            "spec.servers[0].tls",
            "ISTIO_MUTUAL TLS cannot have associated private key",
        );
        assert_error(
            &tls("mode: SIMPLE, credentialName: x, serverCertificate: /c, privateKey: /k"),
            "spec.servers[0].tls",
            "only one of credential_name, credential_names",
        );
        assert_error(
            &tls("mode: SIMPLE, tlsCertificates: [{serverCertificate: /c}]"),
            "spec.servers[0].tls",
            "SIMPLE TLS requires a private key",
        );
        // Terminating modes with a credential skip the remaining checks, as in Istio.
        assert_error(
            &tls("mode: PASSTHROUGH, caCrl: /crl, credentialName: x"),
            "spec.servers[0].tls.caCrl",
            "CRL is not supported with credentialName",
        );
        assert_error(
            &tls("mode: SIMPLE, serverCertificate: /c, privateKey: /k, caCrl: /crl"),
            "spec.servers[0].tls.caCrl",
            "CRL is not supported with SIMPLE TLS",
        );
        let w = warnings(&tls("mode: PASSTHROUGH, credentialName: x"));
        assert!(
            w.iter()
                .any(|w| w.contains("PASSTHROUGH mode does not use certificates")),
            "{w:?}"
        );
    }

    #[test]
    fn crd_rules_on_credentials() {
        let tls = |t: &str| server(HTTPS, &format!("    tls: {{{t}}}\n"), "a.com");
        assert_error(
            &tls("mode: SIMPLE, credentialName: a, credentialNames: [b]"),
            "spec.servers[0].tls",
            "only one of credentialName or credentialNames can be set",
        );
        assert_error(
            &tls(
                "mode: SIMPLE, credentialNames: [b], tlsCertificates: [{serverCertificate: /c, privateKey: /k}]",
            ),
            "spec.servers[0].tls",
            "only one of credentialNames or tlsCertificates can be set",
        );
        assert_error(
            &tls("mode: SIMPLE, credentialNames: [a, b, c]"),
            "spec.servers[0].tls.credentialNames",
            "must have at most 2 items",
        );
    }

    #[test]
    fn protocol_versions_and_ciphers_warn() {
        let tls = |t: &str| {
            server(
                HTTPS,
                &format!("    tls: {{mode: SIMPLE, credentialName: x, {t}}}\n"),
                "a.com",
            )
        };
        let w = warnings(&tls("minProtocolVersion: TLSV1_1"));
        assert!(
            w.iter().any(|w| w.contains("TLS version below TLSV1_2")),
            "{w:?}"
        );
        let w = warnings(&tls(
            "cipherSuites: [ECDHE-RSA-AES128-SHA, FOO, ECDHE-RSA-AES128-SHA, \"-AES128-SHA\"]",
        ));
        assert_eq!(
            w,
            [
                "spec.servers[0].tls.cipherSuites: ignoring invalid cipher suites: [FOO]",
                "spec.servers[0].tls.cipherSuites: ignoring duplicate cipher suites: [ECDHE-RSA-AES128-SHA]"
            ]
        );
        let result = crate::load::Loader::new().load_str(
            "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: g}\nspec:\n  servers:\n  - port: {number: 443, name: h, protocol: HTTPS}\n    hosts: [a.com]\n    tls: {mode: BOGUS}\n",
            None,
        );
        assert!(
            result.errors[0]
                .to_string()
                .contains("Unsupported value: \"BOGUS\"")
        );
    }

    #[test]
    fn dotted_name_is_rejected_and_round_trip_is_stable() {
        let yaml = "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {name: a.b}\nspec:\n  selector: {istio: ingressgateway}\n  servers:\n  - port: {number: 443, name: https, protocol: HTTPS, targetPort: 0}\n    hosts: [a.com]\n    name: main\n    tls: {mode: MUTUAL, credentialName: c, subjectAltNames: [x], minProtocolVersion: TLSV1_2, insecureSkipVerify: true, caCertCredentialName: ca}\n";
        let loaded = crate::load::Loader::new().load_str(yaml, None);
        let object = &loaded.objects[0].object;
        let issues: Vec<String> = object.validate().iter().map(ToString::to_string).collect();
        assert_eq!(issues, ["spec: invalid gateway name: \"a.b\""]);
        let text = serde_yaml_ng::to_string(object).unwrap();
        let again = crate::load::Loader::new().load_str(&text, None);
        assert_eq!(&again.objects[0].object, object);
    }
}
