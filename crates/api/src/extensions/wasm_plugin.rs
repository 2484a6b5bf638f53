//! `WasmPlugin` (`extensions.istio.io/v1alpha1`): WebAssembly filters added to proxies.
//! Mizzen loads and validates them; its proxy does not run them.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use crate::telemetry::POLICY_TARGET_KINDS;
use crate::types::{PolicyTargetReference, WorkloadSelector, is_default, string_enum};
use crate::validate::{
    Validate, Validator, cel_error, check_max_items, check_max_len, check_object, check_port,
    check_selector_and_targets,
};

/// A Wasm module to load into the selected proxies, with its configuration.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WasmPlugin {
    /// Workloads this applies to; all workloads of the namespace when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<WorkloadSelector>,
    /// A single resource (Gateway, Service…) this applies to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target_ref: Option<PolicyTargetReference>,
    /// Resources this applies to.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub target_refs: Vec<PolicyTargetReference>,
    /// Where the module is: `oci://`, `file://`, `http(s)://`, or an OCI image reference.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub url: String,
    /// Expected SHA-256 of the module (or OCI image), hex.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub sha256: String,
    /// When to fetch the module again.
    #[serde(default, skip_serializing_if = "is_default")]
    pub image_pull_policy: PullPolicy,
    /// Name of the Secret holding OCI registry credentials.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_pull_secret: Option<String>,
    /// The plugin's root id in Envoy's configuration.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin_name: Option<String>,
    /// Free-form configuration passed to the plugin.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub plugin_config: Option<serde_json::Value>,
    /// Where in the filter chain the plugin goes.
    #[serde(default, skip_serializing_if = "is_default")]
    pub phase: PluginPhase,
    /// Order among plugins of the same phase; higher runs first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
    /// What happens to traffic when the plugin fails fatally.
    #[serde(default, skip_serializing_if = "is_default")]
    pub fail_strategy: FailStrategy,
    /// Settings of the Wasm VM.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub vm_config: Option<VmConfig>,
    /// The traffic the plugin applies to; all traffic when empty.
    #[serde(default, rename = "match", skip_serializing_if = "Vec::is_empty")]
    pub match_: Vec<TrafficSelector>,
    /// HTTP or network (L4) filter.
    #[serde(default, rename = "type", skip_serializing_if = "is_default")]
    pub type_: PluginType,
    /// Key used to verify the module's signature.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub verification_key: String,
}

string_enum! {
    /// When the module is fetched again.
    pub enum PullPolicy {
        /// `IfNotPresent`, except `Always` for images tagged `latest`.
        UnspecifiedPolicy = "UNSPECIFIED_POLICY",
        /// Use the cached module when there is one.
        IfNotPresent = "IfNotPresent",
        /// Fetch on every change of the plugin.
        Always = "Always",
    }
}

string_enum! {
    /// Where in the filter chain the plugin is inserted.
    pub enum PluginPhase {
        /// At the end of the chain, before the router.
        UnspecifiedPhase = "UNSPECIFIED_PHASE",
        /// Before Istio's authentication filters.
        Authn = "AUTHN",
        /// Before Istio's authorization filters, after authentication.
        Authz = "AUTHZ",
        /// Before Istio's stats filters, after authorization.
        Stats = "STATS",
    }
}

string_enum! {
    /// Behaviour on fatal plugin errors.
    pub enum FailStrategy {
        /// Fail the request (or connection).
        FailClose = "FAIL_CLOSE",
        /// Skip the plugin.
        FailOpen = "FAIL_OPEN",
        /// Reload the VM and retry.
        FailReload = "FAIL_RELOAD",
    }
}

string_enum! {
    /// The kind of filter the plugin is.
    pub enum PluginType {
        /// HTTP (the default).
        UnspecifiedPluginType = "UNSPECIFIED_PLUGIN_TYPE",
        /// An HTTP filter.
        Http = "HTTP",
        /// A network (L4) filter.
        Network = "NETWORK",
    }
}

/// Settings of the Wasm VM.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct VmConfig {
    /// Environment variables visible to the VM (names unique).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<EnvVar>,
}

string_enum! {
    /// Where an environment variable's value comes from.
    pub enum EnvValueSource {
        /// From `value`.
        Inline = "INLINE",
        /// From the proxy's own environment.
        Host = "HOST",
    }
}

/// One environment variable for the VM.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvVar {
    /// The variable's name.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub name: String,
    /// Where the value comes from.
    #[serde(default, skip_serializing_if = "is_default")]
    pub value_from: EnvValueSource,
    /// The value, for `INLINE`.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub value: String,
}

string_enum! {
    /// Traffic direction a plugin applies to.
    pub enum WorkloadMode {
        /// Both directions.
        Undefined = "UNDEFINED",
        /// Outbound (client side).
        Client = "CLIENT",
        /// Inbound (server side).
        Server = "SERVER",
        /// Both directions.
        ClientAndServer = "CLIENT_AND_SERVER",
    }
}

/// Selects traffic by direction and port.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct TrafficSelector {
    /// Direction.
    #[serde(default, skip_serializing_if = "is_default")]
    pub mode: WorkloadMode,
    /// Destination ports (any when empty).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub ports: Vec<WasmPortSelector>,
}

/// A port, by number.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct WasmPortSelector {
    /// The port number, 1–65535.
    #[serde(default, skip_serializing_if = "is_default")]
    pub number: u32,
}

const SHA256_PATTERN: &str = "(^$|^[a-f0-9]{64}$)";

impl Validate for WasmPlugin {
    fn validate(&self, v: &mut Validator<'_>) {
        check_selector_and_targets(
            v,
            self.selector.as_ref(),
            self.target_ref.as_ref(),
            &self.target_refs,
            POLICY_TARGET_KINDS,
        );
        v.field("url", |v| check_url(v, &self.url));
        let sha_ok = self.sha256.is_empty()
            || (self.sha256.len() == 64
                && self
                    .sha256
                    .bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)));
        if !sha_ok {
            v.error_at(
                "sha256",
                format!(
                    "Invalid value: {:?}: sha256 in body should match '{SHA256_PATTERN}'",
                    self.sha256
                ),
            );
        }
        if let Some(secret) = &self.image_pull_secret {
            v.field("imagePullSecret", |v| check_len_between(v, secret, 253));
        }
        if let Some(name) = &self.plugin_name {
            v.field("pluginName", |v| check_len_between(v, name, 256));
        }
        if let Some(config) = &self.plugin_config {
            v.field("pluginConfig", |v| check_object(v, config));
        }
        v.check_opt("vmConfig", &self.vm_config);
        v.each("match", &self.match_, |v, m| m.validate(v));
    }
}

fn check_len_between(v: &mut Validator<'_>, value: &str, max: usize) {
    if value.is_empty() {
        v.error("Invalid value: \"\": should be at least 1 chars long");
    }
    check_max_len(v, value, max);
}

fn check_url(v: &mut Validator<'_>, url: &str) {
    if url.is_empty() {
        v.error("Required value: url field needs to be set");
        return;
    }
    // The CRD's rule: the URL parses (or does once `http://` is put in front) and its
    // scheme is one Istio can fetch from.
    let scheme = match parse_request_uri(url) {
        Ok(scheme) => Some(scheme),
        Err(_) => parse_request_uri(&format!("http://{url}")).ok(),
    };
    match scheme {
        Some(s) if matches!(s.as_str(), "" | "http" | "https" | "oci" | "file") => {}
        _ => cel_error(
            v,
            "string",
            "url must have schema one of [http, https, file, oci]",
        ),
    }
}

/// Parses `raw` as Go's `url.ParseRequestURI` does (which is what the CRD's `isURL`
/// uses), returning the lowercased scheme.
fn parse_request_uri(raw: &str) -> Result<String, &'static str> {
    if raw.bytes().any(|b| b < 0x20 || b == 0x7f) {
        return Err("invalid control character in URL");
    }
    if raw == "*" {
        return Ok(String::new());
    }
    let (scheme, rest) = split_scheme(raw)?;
    let rest = rest.split_once('?').map_or(rest, |(path, _query)| path);
    if !rest.starts_with('/') {
        return if scheme.is_empty() {
            Err("invalid URI for request")
        } else {
            Ok(scheme)
        };
    }
    let mut path = rest;
    if !scheme.is_empty()
        && let Some(after) = rest.strip_prefix("//")
    {
        let (authority, tail) = after.find('/').map_or((after, ""), |i| after.split_at(i));
        check_authority(authority)?;
        path = tail;
    }
    check_escapes(path)?;
    Ok(scheme)
}

/// Splits off a scheme (`[a-zA-Z][a-zA-Z0-9+.-]*:`), as Go's `getScheme`.
fn split_scheme(raw: &str) -> Result<(String, &str), &'static str> {
    for (i, c) in raw.char_indices() {
        match c {
            'a'..='z' | 'A'..='Z' => {}
            '0'..='9' | '+' | '-' | '.' if i > 0 => {}
            ':' if i == 0 => return Err("missing protocol scheme"),
            ':' => return Ok((raw[..i].to_ascii_lowercase(), &raw[i + 1..])),
            _ => return Ok((String::new(), raw)),
        }
    }
    Ok((String::new(), raw))
}

fn check_authority(authority: &str) -> Result<(), &'static str> {
    let host = match authority.rfind('@') {
        Some(at) => {
            let userinfo = &authority[..at];
            let ok = userinfo
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"-._:~!$&'()*+,;=%@".contains(&b));
            if !ok {
                return Err("net/url: invalid userinfo");
            }
            check_escapes(userinfo)?;
            &authority[at + 1..]
        }
        None => authority,
    };
    let (name, port) = if let Some(inner) = host.strip_prefix('[') {
        let end = inner.find(']').ok_or("missing ']' in host")?;
        (&inner[..end], &inner[end + 1..])
    } else {
        host.rfind(':').map_or((host, ""), |i| host.split_at(i))
    };
    let port_ok =
        port.is_empty() || (port.starts_with(':') && port[1..].bytes().all(|b| b.is_ascii_digit()));
    if !port_ok {
        return Err("invalid port after host");
    }
    let host_ok = name.bytes().all(|b| {
        !b.is_ascii() || b.is_ascii_alphanumeric() || b"-_.~!$&'()*+,;=:[]<>\"%".contains(&b)
    });
    if !host_ok {
        return Err("invalid character in host name");
    }
    check_escapes(name)
}

/// Every `%` must start a two-digit hex escape.
fn check_escapes(s: &str) -> Result<(), &'static str> {
    let b = s.as_bytes();
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = |j: usize| b.get(j).is_some_and(u8::is_ascii_hexdigit);
            if !(hex(i + 1) && hex(i + 2)) {
                return Err("invalid URL escape");
            }
            i += 3;
        } else {
            i += 1;
        }
    }
    Ok(())
}

impl Validate for VmConfig {
    fn validate(&self, v: &mut Validator<'_>) {
        check_max_items(v, "env", self.env.len(), 256);
        let mut seen = HashSet::new();
        v.each("env", &self.env, |v, e| {
            if e.name.is_empty() {
                v.required("name");
            } else if !seen.insert(e.name.clone()) {
                v.error(format!("Duplicate value: {{\"name\":{:?}}}", e.name));
            }
            v.field("name", |v| check_max_len(v, &e.name, 256));
            v.field("value", |v| check_max_len(v, &e.value, 2048));
            if e.value_from != EnvValueSource::Inline && !e.value.is_empty() {
                cel_error(
                    v,
                    "object",
                    "value may only be set when valueFrom is INLINE",
                );
            }
        });
    }
}

impl Validate for TrafficSelector {
    fn validate(&self, v: &mut Validator<'_>) {
        let mut seen = HashSet::new();
        v.each("ports", &self.ports, |v, p| {
            if p.number == 0 {
                v.required("number");
                return;
            }
            v.field("number", |v| check_port(v, p.number));
            if !seen.insert(p.number) {
                v.error(format!("Duplicate value: {{\"number\":{}}}", p.number));
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::parse_request_uri;
    use crate::Kind;
    use crate::testing::{issues, messages};
    use crate::validate::{Issue, Severity};

    fn check(spec: &str) -> Vec<Issue> {
        issues(Kind::WasmPlugin, spec)
    }

    fn errors(spec: &str) -> Vec<String> {
        messages(&check(spec), Severity::Error)
    }

    const FULL: &str = r#"
  selector:
    matchLabels:
      istio: ingressgateway
  url: oci://ghcr.io/istio/openid:1.0
  sha256: 1ef0c9a92b0420cf25f7fe5d481b231464bc88f486ca3b9c83ed5cc21d2f6210
  imagePullPolicy: Always
  imagePullSecret: pull-secret
  pluginName: openid
  phase: AUTHN
  priority: -10
  failStrategy: FAIL_OPEN
  type: HTTP
  verificationKey: key
  pluginConfig:
    openid_server: authn
    nested:
      list: [1, 2]
  vmConfig:
    env:
    - name: POD_NAME
      valueFrom: HOST
    - name: TRUST_DOMAIN
      value: cluster.local
  match:
  - mode: SERVER
    ports:
    - number: 8080
    - number: 9090
"#;

    #[test]
    fn full_plugin_is_valid_and_round_trips() {
        assert_eq!(check(FULL), vec![]);
        let yaml = format!(
            "apiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\nmetadata:\n  name: w\nspec:\n{FULL}"
        );
        let first = crate::load::Loader::new()
            .load_str(&yaml, None)
            .objects
            .remove(0)
            .object;
        let again = crate::load::Loader::new()
            .load_str(&serde_yaml_ng::to_string(&first).unwrap(), None)
            .objects
            .remove(0)
            .object;
        assert_eq!(first, again);
        let crate::Object::WasmPlugin(w) = first else {
            panic!()
        };
        assert_eq!(w.spec.priority, Some(-10));
        assert_eq!(w.spec.phase, super::PluginPhase::Authn);
    }

    #[test]
    fn url_is_required_and_needs_a_known_scheme() {
        assert_eq!(
            errors("  url: \"\"\n"),
            ["spec.url: Required value: url field needs to be set"]
        );
        let bad = "spec.url: Invalid value: \"string\": url must have schema one of [http, https, file, oci]";
        assert_eq!(errors("  url: \"#%blah$#@\"\n"), [bad]);
        assert_eq!(errors("  url: fake://example.com\n"), [bad]);
        assert_eq!(errors("  url: localhost:5000/plugin\n"), [bad]);
        for ok in [
            "http://test",
            "test",
            "file:///opt/filters/openid.wasm",
            "ghcr.io/istio/wasm:1.0",
            "https://user:pw@host:8443/a%20b?x=1",
            "HTTP://Example.com",
        ] {
            assert!(errors(&format!("  url: {ok:?}\n")).is_empty(), "{ok}");
        }
    }

    #[test]
    fn go_request_uri_parsing() {
        assert_eq!(parse_request_uri("oci://x/y"), Ok("oci".into()));
        assert_eq!(parse_request_uri("/only/path"), Ok(String::new()));
        assert!(parse_request_uri("relative").is_err());
        assert!(parse_request_uri(":nope").is_err());
        assert!(parse_request_uri("http://bad host").is_err());
        assert!(parse_request_uri("http://host:port").is_err());
        assert!(parse_request_uri("http://[::1]:80/").is_ok());
        assert!(parse_request_uri("http://h/%zz").is_err());
    }

    #[test]
    fn sha_and_lengths() {
        assert_eq!(
            errors("  url: http://test\n  sha256: foo\n"),
            [
                "spec.sha256: Invalid value: \"foo\": sha256 in body should match '(^$|^[a-f0-9]{64}$)'"
            ]
        );
        assert_eq!(
            errors("  url: http://test\n  imagePullSecret: \"\"\n"),
            ["spec.imagePullSecret: Invalid value: \"\": should be at least 1 chars long"]
        );
        assert_eq!(
            errors("  url: http://test\n  pluginName: \"\"\n"),
            ["spec.pluginName: Invalid value: \"\": should be at least 1 chars long"]
        );
        assert_eq!(
            errors(&format!(
                "  url: http://test\n  pluginName: {}\n",
                "a".repeat(257)
            )),
            ["spec.pluginName: Too long: may not be more than 256 bytes"]
        );
        assert_eq!(
            errors("  url: http://test\n  pluginConfig: 5\n"),
            ["spec.pluginConfig: Invalid value: \"integer\": must be of type object"]
        );
    }

    #[test]
    fn vm_env_rules() {
        assert_eq!(
            errors("  url: http://test\n  vmConfig:\n    env:\n    - name: a\n    - name: a\n"),
            ["spec.vmConfig.env[1]: Duplicate value: {\"name\":\"a\"}"]
        );
        assert_eq!(
            errors("  url: http://test\n  vmConfig:\n    env:\n    - name: \"\"\n"),
            ["spec.vmConfig.env[0].name: Required value"]
        );
        assert_eq!(
            errors(
                "  url: http://test\n  vmConfig:\n    env:\n    - name: t\n      valueFrom: HOST\n      value: v\n"
            ),
            [
                "spec.vmConfig.env[0]: Invalid value: \"object\": value may only be set when valueFrom is INLINE"
            ]
        );
    }

    #[test]
    fn match_ports() {
        assert_eq!(
            errors("  url: http://test\n  match:\n  - ports:\n    - {}\n"),
            ["spec.match[0].ports[0].number: Required value"]
        );
        assert_eq!(
            errors(
                "  url: http://test\n  match:\n  - ports:\n    - number: 70000\n    - number: 80\n    - number: 80\n"
            ),
            [
                "spec.match[0].ports[0].number: port must be between 1-65535, got 70000",
                "spec.match[0].ports[2]: Duplicate value: {\"number\":80}"
            ]
        );
    }

    #[test]
    fn selector_uses_cel_wording() {
        assert_eq!(
            errors("  url: http://test\n  selector:\n    matchLabels:\n      istio: \"bar*\"\n"),
            [
                "spec.selector.matchLabels[istio]: Invalid value: \"string\": wildcard not allowed in label value match"
            ]
        );
        assert_eq!(
            errors("  url: http://test\n  selector:\n    matchLabels:\n      \"istio*\": bar\n"),
            [
                "spec.selector.matchLabels: Invalid value: \"object\": wildcard not allowed in label key match"
            ]
        );
        assert_eq!(
            errors(
                "  url: http://test\n  selector:\n    matchLabels:\n      a: b\n  targetRef:\n    kind: Gateway\n    group: gateway.networking.k8s.io\n    name: gw\n"
            ),
            ["spec: only one of targetRefs or selector can be set"]
        );
    }

    #[test]
    fn null_spec_or_url_is_refused() {
        let yaml = "apiVersion: extensions.istio.io/v1alpha1\nkind: WasmPlugin\nmetadata:\n  name: w\nspec:\n";
        assert_eq!(
            crate::load::Loader::new().load_str(yaml, None).errors.len(),
            1
        );
        // YAML reads an empty `url:` as an empty string for a string field.
        assert_eq!(
            errors("  url:\n"),
            ["spec.url: Required value: url field needs to be set"]
        );
    }
}
