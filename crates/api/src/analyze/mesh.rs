//! Mesh-wide settings the analyzers read: MeshConfig (the `mesh` key of the `istio`
//! ConfigMap) and MeshNetworks. Kept as the document the user wrote, with Istio's
//! defaults answered by the accessors, since analyzers read only a few fields of each.

use std::path::Path;

use serde_json::Value;

/// A MeshConfig or MeshNetworks document that could not be read.
#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    /// The file could not be read.
    #[error("reading {}: {source}", path.display())]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The text is not a YAML mapping.
    #[error("{what}: {reason}")]
    Parse {
        /// `mesh config` or `mesh networks`, and the file when there is one.
        what: String,
        /// Why.
        reason: String,
    },
}

/// Reads a YAML mapping from `text`; an empty document is an empty mapping.
fn parse_mapping(text: &str, what: &str) -> Result<serde_json::Map<String, Value>, MeshError> {
    let value: Value = serde_yaml_ng::from_str(text).map_err(|e| MeshError::Parse {
        what: what.to_owned(),
        reason: e.to_string(),
    })?;
    match value {
        Value::Null => Ok(Default::default()),
        Value::Object(doc) => Ok(doc),
        _ => Err(MeshError::Parse {
            what: what.to_owned(),
            reason: "expected a mapping of fields".into(),
        }),
    }
}

fn read(path: &Path) -> Result<String, MeshError> {
    std::fs::read_to_string(path).map_err(|source| MeshError::Io {
        path: path.to_owned(),
        source,
    })
}

/// How Istio treats Kubernetes Ingress objects (`ingressControllerMode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IngressControllerMode {
    /// Ingress objects are ignored: no default ingress gateway exists.
    Off,
    /// Only Ingress objects of Istio's class are handled.
    Strict,
    /// Ingress objects of Istio's class or of no class are handled.
    Default,
}

/// MeshConfig with Istio's defaults for the fields analyzers read.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MeshConfig {
    doc: serde_json::Map<String, Value>,
}

impl From<serde_json::Map<String, Value>> for MeshConfig {
    /// MeshConfig from its fields, as a control plane holding them parsed hands them over.
    fn from(doc: serde_json::Map<String, Value>) -> Self {
        Self { doc }
    }
}

impl MeshConfig {
    /// Parses MeshConfig YAML; unset fields keep Istio's defaults.
    pub fn from_yaml(text: &str) -> Result<Self, MeshError> {
        parse_mapping(text, "mesh config").map(|doc| Self { doc })
    }

    /// Reads MeshConfig from a YAML file.
    pub fn from_file(path: &Path) -> Result<Self, MeshError> {
        Self::from_yaml(&read(path)?).map_err(|e| with_file(e, path))
    }

    fn str_field(&self, name: &str) -> Option<&str> {
        self.doc.get(name).and_then(Value::as_str)
    }

    /// The field as written, if set.
    pub fn get(&self, name: &str) -> Option<&Value> {
        self.doc.get(name)
    }

    /// The Service of the ingress gateway (`ingressService`, default `istio-ingressgateway`).
    pub fn ingress_service(&self) -> &str {
        self.str_field("ingressService")
            .filter(|s| !s.is_empty())
            .unwrap_or("istio-ingressgateway")
    }

    /// `ingressControllerMode`, default STRICT.
    pub fn ingress_controller_mode(&self) -> IngressControllerMode {
        match self.str_field("ingressControllerMode") {
            Some("OFF") => IngressControllerMode::Off,
            Some("DEFAULT") => IngressControllerMode::Default,
            _ => IngressControllerMode::Strict,
        }
    }

    /// `rootNamespace`: where mesh-wide policies live (default `istio-system`).
    pub fn root_namespace(&self) -> &str {
        self.str_field("rootNamespace")
            .filter(|s| !s.is_empty())
            .unwrap_or("istio-system")
    }

    /// `defaultConfig.proxyMetadata[name]`.
    pub fn proxy_metadata(&self, name: &str) -> Option<&str> {
        self.doc
            .get("defaultConfig")?
            .get("proxyMetadata")?
            .get(name)?
            .as_str()
    }

    /// `defaultConfig.image.imageType` (e.g. `distroless`), if set.
    pub fn default_image_type(&self) -> Option<&str> {
        self.doc
            .get("defaultConfig")?
            .get("image")?
            .get("imageType")?
            .as_str()
    }

    /// The `extensionProviders`, each as written.
    pub fn extension_providers(&self) -> &[Value] {
        self.doc
            .get("extensionProviders")
            .and_then(Value::as_array)
            .map_or(&[], Vec::as_slice)
    }

    /// `defaultProviders.<signal>` (`metrics`, `tracing`, `accessLogging`).
    pub fn default_providers(&self, signal: &str) -> Vec<&str> {
        self.doc
            .get("defaultProviders")
            .and_then(|d| d.get(signal))
            .and_then(Value::as_array)
            .map(|names| names.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default()
    }
}

/// MeshNetworks: which network each registry's endpoints are on.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct MeshNetworks {
    doc: serde_json::Map<String, Value>,
}

impl MeshNetworks {
    /// Parses MeshNetworks YAML.
    pub fn from_yaml(text: &str) -> Result<Self, MeshError> {
        parse_mapping(text, "mesh networks").map(|doc| Self { doc })
    }

    /// Reads MeshNetworks from a YAML file.
    pub fn from_file(path: &Path) -> Result<Self, MeshError> {
        Self::from_yaml(&read(path)?).map_err(|e| with_file(e, path))
    }

    /// `(network, endpoint)` for every network's endpoints, in the document's order.
    pub fn endpoints(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.doc
            .get("networks")
            .and_then(Value::as_object)
            .into_iter()
            .flat_map(|networks| networks.iter())
            .flat_map(|(name, network)| {
                network
                    .get("endpoints")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .map(move |e| (name.as_str(), e))
            })
    }
}

fn with_file(e: MeshError, path: &Path) -> MeshError {
    match e {
        MeshError::Parse { what, reason } => MeshError::Parse {
            what: format!("{what} {}", path.display()),
            reason,
        },
        io => io,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_answer_for_unset_fields() {
        let mesh = MeshConfig::default();
        assert_eq!(mesh.ingress_service(), "istio-ingressgateway");
        assert_eq!(
            mesh.ingress_controller_mode(),
            IngressControllerMode::Strict
        );
        let mesh = MeshConfig::from_yaml(
            "ingressControllerMode: OFF\ndefaultConfig:\n  proxyMetadata:\n    A: \"true\"\n",
        )
        .unwrap();
        assert_eq!(mesh.ingress_controller_mode(), IngressControllerMode::Off);
        assert_eq!(mesh.proxy_metadata("A"), Some("true"));
        assert!(MeshConfig::from_yaml("- a").is_err());
    }
}
