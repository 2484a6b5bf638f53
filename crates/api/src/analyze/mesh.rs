//! Mesh-wide settings the analyzers read: MeshConfig (the typed [`crate::mesh`] one,
//! shared with pilot) and MeshNetworks, kept as the document the user wrote since the
//! analyzers read only its endpoints.

use std::path::Path;

use serde_json::Value;

pub use crate::mesh::{IngressControllerMode, MeshConfig, MeshError};

/// Reads a YAML mapping from `text`; an empty document is an empty mapping.
fn parse_mapping(text: &str, what: &str) -> Result<serde_json::Map<String, Value>, MeshError> {
    let value: Value = serde_yaml_ng::from_str(text).map_err(|e| MeshError::Parse {
        what: what.to_owned(),
        field: ".".into(),
        reason: e.to_string(),
    })?;
    match value {
        Value::Null => Ok(Default::default()),
        Value::Object(doc) => Ok(doc),
        _ => Err(MeshError::Parse {
            what: what.to_owned(),
            field: ".".into(),
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
        Self::from_yaml(&read(path)?).map_err(|e| e.from_source(&path.display().to_string()))
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn networks_list_endpoints_by_network() {
        let networks = MeshNetworks::from_yaml(
            "networks:\n  n1:\n    endpoints:\n    - fromRegistry: c1\n    - fromCidr: 10.0.0.0/8\n",
        )
        .unwrap();
        let found: Vec<&str> = networks.endpoints().map(|(n, _)| n).collect();
        assert_eq!(found, ["n1", "n1"]);
        assert!(MeshNetworks::from_yaml("- a").is_err());
    }
}
