//! `security.istio.io` PeerAuthentication: which mutual TLS mode a workload accepts
//! traffic in, for the whole workload and per port.

use std::collections::BTreeMap;
use std::fmt;

use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};

use crate::types::{WorkloadSelector, is_default, string_enum};
use crate::validate::{Validate, Validator, check_policy_targets};

/// Annotation that puts an AuthorizationPolicy in dry-run mode; no other kind accepts it.
pub(crate) const DRY_RUN_ANNOTATION: &str = "istio.io/dry-run";

/// `PeerAuthentication`: the mutual TLS mode for the workloads it selects (or the whole
/// namespace, or the mesh from the root namespace).
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PeerAuthentication {
    /// The workloads the policy applies to; absent means every workload in its namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selector: Option<WorkloadSelector>,
    /// Mutual TLS settings for the workload.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mtls: Option<PeerAuthenticationMutualTls>,
    /// Per-port mutual TLS settings, keyed by the workload's port number; requires a
    /// selector. Absent and empty (`{}`) differ: an empty map is refused.
    #[serde(
        default,
        skip_serializing_if = "Option::is_none",
        deserialize_with = "port_level_mtls"
    )]
    pub port_level_mtls: Option<BTreeMap<u32, PeerAuthenticationMutualTls>>,
}

/// Istio's `PeerAuthentication.MutualTLS`: the mode for a workload or a port.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct PeerAuthenticationMutualTls {
    /// The mTLS mode; `UNSET` inherits from the parent (namespace, then mesh).
    #[serde(default, skip_serializing_if = "is_default")]
    pub mode: MtlsMode,
}

string_enum! {
    /// Istio's `PeerAuthentication.MutualTLS.Mode`.
    pub enum MtlsMode {
        /// Inherit from the parent; when nothing sets it, `PERMISSIVE`.
        Unset = "UNSET",
        /// Connections are not tunnelled through mTLS.
        Disable = "DISABLE",
        /// Connections may be mTLS or plain text.
        Permissive = "PERMISSIVE",
        /// Connections must be mTLS (with a client certificate).
        Strict = "STRICT",
    }
}

impl PeerAuthentication {
    /// The mode for `port`: the port-level setting when present and set, else the
    /// workload-level one (possibly `UNSET`).
    pub fn mode_for_port(&self, port: u32) -> MtlsMode {
        self.port_level_mtls
            .as_ref()
            .and_then(|ports| ports.get(&port))
            .map(|m| m.mode)
            .filter(|m| *m != MtlsMode::Unset)
            .unwrap_or_else(|| self.mtls.as_ref().map(|m| m.mode).unwrap_or_default())
    }
}

impl Validate for PeerAuthentication {
    fn validate(&self, v: &mut Validator<'_>) {
        refuse_dry_run_annotation(v, "PeerAuthentication");
        check_policy_targets(v, self.selector.as_ref(), None, &[], &[]);
        warn_empty_selector(v, self.selector.as_ref());
        let Some(ports) = &self.port_level_mtls else {
            return;
        };
        v.field("portLevelMtls", |v| {
            if ports.is_empty() {
                let path = v.path().to_owned();
                v.error(format!(
                    "Invalid value: 0: {path} in body should have at least 1 properties (port level mTLS, if defined, must have at least one element)"
                ));
            }
            for port in ports.keys() {
                if !(1..=65535).contains(port) {
                    v.key(&port.to_string(), |v| {
                        v.error(format!("port must be between 1-65535, got {port}"));
                    });
                }
            }
        });
        let selects = self
            .selector
            .as_ref()
            .is_some_and(|s| !s.match_labels.is_empty());
        if !ports.is_empty() && !selects {
            v.error(
                "portLevelMtls requires selector: mesh/namespace peer authentication cannot have port level mTLS",
            );
        }
    }
}

/// Warns, as Istio does, about a `selector` with no labels: it selects every workload.
pub(crate) fn warn_empty_selector(v: &mut Validator<'_>, selector: Option<&WorkloadSelector>) {
    if selector.is_some_and(|s| s.match_labels.is_empty()) {
        v.warn_at("selector", "workload selector specified without labels");
    }
}

/// Refuses Istio's dry-run annotation on kinds other than AuthorizationPolicy.
pub(crate) fn refuse_dry_run_annotation(v: &mut Validator<'_>, kind: &str) {
    let annotated = v
        .meta()
        .annotations
        .as_ref()
        .is_some_and(|a| a.contains_key(DRY_RUN_ANNOTATION));
    if annotated {
        v.error(format!(
            "{kind} has unsupported annotation {DRY_RUN_ANNOTATION}, please remove the annotation"
        ));
    }
}

/// Reads `portLevelMtls`, whose keys are port numbers written as strings (or, in YAML,
/// as integers). Keys that are not integers are refused as the API server's CEL rule
/// refuses them; integers beyond `u32` cannot be ports.
fn port_level_mtls<'de, D: Deserializer<'de>>(
    d: D,
) -> Result<Option<BTreeMap<u32, PeerAuthenticationMutualTls>>, D::Error> {
    struct Ports;

    impl<'de> Visitor<'de> for Ports {
        type Value = Option<BTreeMap<u32, PeerAuthenticationMutualTls>>;

        fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            f.write_str("a map from port number to mutual TLS settings")
        }

        fn visit_none<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }

        fn visit_some<D2: Deserializer<'de>>(self, d: D2) -> Result<Self::Value, D2::Error> {
            d.deserialize_map(self)
        }

        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            let mut ports = BTreeMap::new();
            while let Some(PortKey(port)) = map.next_key()? {
                let mtls: PeerAuthenticationMutualTls = map.next_value()?;
                if ports.insert(port, mtls).is_some() {
                    return Err(de::Error::custom(format!(
                        "Duplicate value: port {port} appears more than once"
                    )));
                }
            }
            Ok(Some(ports))
        }
    }

    d.deserialize_option(Ports)
}

/// A `portLevelMtls` key: a port number, as a string or an integer.
struct PortKey(u32);

impl<'de> Deserialize<'de> for PortKey {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct Key;

        impl Visitor<'_> for Key {
            type Value = PortKey;

            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a port number")
            }

            fn visit_u64<E: de::Error>(self, n: u64) -> Result<PortKey, E> {
                u32::try_from(n)
                    .map(PortKey)
                    .map_err(|_| E::custom(format!("port must be between 1-65535, got {n}")))
            }

            fn visit_i64<E: de::Error>(self, n: i64) -> Result<PortKey, E> {
                u32::try_from(n)
                    .map(PortKey)
                    .map_err(|_| E::custom(format!("port must be between 1-65535, got {n}")))
            }

            fn visit_str<E: de::Error>(self, s: &str) -> Result<PortKey, E> {
                match s.trim().parse::<i64>() {
                    Ok(n) => self.visit_i64(n),
                    Err(_) => Err(E::custom(format!(
                        "Invalid value: {s:?}: type conversion error from 'string' to 'int': port keys must be numbers"
                    ))),
                }
            }
        }

        d.deserialize_any(Key)
    }
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

    fn errors(issues: &[Issue]) -> Vec<String> {
        messages(issues, Severity::Error)
    }

    fn spec(body: &str) -> String {
        format!(
            "apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata:\n  name: pa\n  namespace: foo\nspec:\n{body}"
        )
    }

    fn validate(body: &str) -> Vec<String> {
        errors(&load(&spec(body)).expect("loads").validate())
    }

    #[test]
    fn valid_policies_load_validate_and_round_trip() {
        for body in [
            "  mtls:\n    mode: STRICT\n",
            "  selector:\n    matchLabels:\n      app: httpbin\n  mtls:\n    mode: PERMISSIVE\n  portLevelMtls:\n    \"80\":\n      mode: DISABLE\n    8080:\n      mode: STRICT\n",
            "  selector: {}\n",
            "  {}\n",
            "  mtls: {}\n",
        ] {
            let object = load(&spec(body)).expect("loads");
            assert_eq!(errors(&object.validate()), Vec::<String>::new(), "{body}");
            let text = serde_yaml_ng::to_string(&object).unwrap();
            assert_eq!(load(&text).unwrap(), object, "{text}");
        }
    }

    #[test]
    fn mode_for_port_falls_back_to_workload_mode() {
        let Object::PeerAuthentication(pa) = load(&spec(
            "  selector:\n    matchLabels:\n      app: a\n  mtls:\n    mode: STRICT\n  portLevelMtls:\n    \"80\":\n      mode: DISABLE\n    \"81\": {}\n",
        ))
        .unwrap() else {
            panic!("not a PeerAuthentication")
        };
        assert_eq!(pa.spec.mode_for_port(80), MtlsMode::Disable);
        assert_eq!(pa.spec.mode_for_port(81), MtlsMode::Strict);
        assert_eq!(pa.spec.mode_for_port(9090), MtlsMode::Strict);
    }

    #[test]
    fn unknown_mode_is_refused_at_load() {
        let err = load(&spec("  mtls:\n    mode: BLAH\n")).unwrap_err();
        assert!(err.contains(r#"Unsupported value: "BLAH""#), "{err}");
    }

    #[test]
    fn non_numeric_port_keys_are_refused() {
        let err = load(&spec(
            "  selector:\n    matchLabels:\n      foo: bar\n  portLevelMtls:\n    \"acd\":\n      mode: STRICT\n",
        ))
        .unwrap_err();
        assert!(err.contains("type conversion error from"), "{err}");
        assert!(err.contains("spec.portLevelMtls"), "{err}");
    }

    #[test]
    fn port_level_mtls_requires_selector_labels() {
        for body in [
            "  portLevelMtls:\n    \"80\":\n      mode: STRICT\n",
            "  selector: {}\n  portLevelMtls:\n    \"80\":\n      mode: STRICT\n",
        ] {
            let errs = validate(body);
            assert_eq!(errs.len(), 1, "{errs:?}");
            assert!(
                errs[0].starts_with("spec: portLevelMtls requires selector"),
                "{errs:?}"
            );
        }
    }

    #[test]
    fn empty_port_level_mtls_is_refused() {
        let errs = validate("  selector:\n    matchLabels:\n      foo: bar\n  portLevelMtls: {}\n");
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].contains("spec.portLevelMtls in body should have at least 1 properties"),
            "{errs:?}"
        );
    }

    #[test]
    fn ports_out_of_range_are_refused() {
        let errs = validate(
            "  selector:\n    matchLabels:\n      foo: bar\n  portLevelMtls:\n    \"0\":\n      mode: STRICT\n    \"65536\":\n      mode: STRICT\n    \"42949672\":\n      mode: STRICT\n",
        );
        assert_eq!(
            errs,
            [
                "spec.portLevelMtls[0]: port must be between 1-65535, got 0",
                "spec.portLevelMtls[65536]: port must be between 1-65535, got 65536",
                "spec.portLevelMtls[42949672]: port must be between 1-65535, got 42949672",
            ]
        );
        let err = load(&spec(
            "  selector:\n    matchLabels:\n      foo: bar\n  portLevelMtls:\n    \"-1\":\n      mode: STRICT\n",
        ))
        .unwrap_err();
        assert!(err.contains("port must be between 1-65535"), "{err}");
    }

    #[test]
    fn selector_rules_apply() {
        let errs = validate("  selector:\n    matchLabels:\n      app: \"*\"\n");
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].contains("wildcard is not supported in selector"),
            "{errs:?}"
        );
        let object = load(&spec("  selector: {}\n")).unwrap();
        let issues = object.validate();
        assert!(issues.iter().any(|i| i.severity == Severity::Warning
            && i.to_string() == "spec.selector: workload selector specified without labels"));
    }

    #[test]
    fn dry_run_annotation_is_refused() {
        let yaml = "apiVersion: security.istio.io/v1beta1\nkind: PeerAuthentication\nmetadata:\n  name: pa\n  annotations:\n    istio.io/dry-run: \"true\"\nspec: {}\n";
        let errs = errors(&load(yaml).unwrap().validate());
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(
            errs[0].contains("unsupported annotation istio.io/dry-run"),
            "{errs:?}"
        );
    }

    #[test]
    fn unknown_fields_are_refused() {
        let err = load(&spec("  mtls:\n    mode: STRICT\n    strict: true\n")).unwrap_err();
        assert!(err.contains("unknown field"), "{err}");
    }
}
