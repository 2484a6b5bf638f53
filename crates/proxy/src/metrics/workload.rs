//! Who a proxy or its peer is, as Istio's metrics label it: from the proxy's own node
//! metadata, from the peer metadata headers Istio's metadata exchange sends
//! (`x-envoy-peer-metadata`: base64 of a protobuf `Struct` of node metadata), or from an
//! EDS endpoint's compact `istio.workload` metadata (`NAME;NS;CANONICAL;REV;CLUSTER`).

use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use http::HeaderValue;
use mizzen_xds::pb::envoy::config::core::v3::Node;
use mizzen_xds::pb::google::protobuf::{Struct, Value, value::Kind};
use prost::Message;

use super::interned::Digested;

/// The label value Istio writes where nothing is known.
pub const UNKNOWN: &str = "unknown";

const CANONICAL_NAME: &str = "service.istio.io/canonical-name";
const CANONICAL_REVISION: &str = "service.istio.io/canonical-revision";

/// A workload's labels in Istio's metrics; an empty field renders as `unknown`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Hash)]
pub struct Workload {
    /// The workload (a Deployment's name).
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// `service.istio.io/canonical-name`.
    pub canonical_service: String,
    /// `service.istio.io/canonical-revision`.
    pub canonical_revision: String,
    /// The `app` label.
    pub app: String,
    /// The `version` label.
    pub version: String,
    /// The cluster it runs in (`CLUSTER_ID`).
    pub cluster: String,
}

/// A workload shared by the series that name it.
pub type Peer = Digested<Workload>;

impl Workload {
    /// The proxy's own workload, from its node metadata as Istio's agent writes it:
    /// `WORKLOAD_NAME`, `NAMESPACE`, `CLUSTER_ID` and `LABELS`; the namespace and pod
    /// come from the node id (`sidecar~IP~POD.NS~…`) when the metadata lacks them.
    pub fn from_node(node: &Node) -> Workload {
        let empty = Struct::default();
        let metadata = node.metadata.as_ref().unwrap_or(&empty);
        let text = |key: &str| string(metadata.fields.get(key)).unwrap_or_default();
        let labels: BTreeMap<&str, &str> = match metadata.fields.get("LABELS").and_then(kind) {
            Some(Kind::StructValue(s)) => s
                .fields
                .iter()
                .filter_map(|(k, v)| Some((k.as_str(), string(Some(v))?)))
                .collect(),
            _ => BTreeMap::new(),
        };
        let (pod, namespace_of_id) = node
            .id
            .split('~')
            .nth(2)
            .and_then(|pod| pod.split_once('.'))
            .unwrap_or_default();
        let namespace = Some(text("NAMESPACE"))
            .filter(|n| !n.is_empty())
            .unwrap_or(namespace_of_id);
        let name = [text("WORKLOAD_NAME"), text("NAME"), pod]
            .into_iter()
            .find(|n| !n.is_empty())
            .unwrap_or_default();
        Workload::from_labels(name, namespace, text("CLUSTER_ID"), &labels)
    }

    /// A workload from its name, namespace, cluster and pod labels, with Istio's
    /// fallbacks for the canonical service (the `app` label, else the workload's name)
    /// and revision (the `version` label, else `latest`).
    pub fn from_labels(
        name: &str,
        namespace: &str,
        cluster: &str,
        labels: &BTreeMap<&str, &str>,
    ) -> Workload {
        let label = |keys: &[&str]| {
            keys.iter()
                .find_map(|k| labels.get(k).filter(|v| !v.is_empty()))
                .map(|v| (*v).to_owned())
        };
        let app = label(&["app", "app.kubernetes.io/name"]).unwrap_or_default();
        let version = label(&["version", "app.kubernetes.io/version"]).unwrap_or_default();
        Workload {
            canonical_service: label(&[CANONICAL_NAME, "app.kubernetes.io/name", "app"])
                .unwrap_or_else(|| name.to_owned()),
            canonical_revision: label(&[
                CANONICAL_REVISION,
                "app.kubernetes.io/version",
                "version",
            ])
            .unwrap_or_else(|| "latest".to_owned()),
            name: name.to_owned(),
            namespace: namespace.to_owned(),
            cluster: cluster.to_owned(),
            app,
            version,
        }
    }

    /// A workload from an endpoint's `istio.workload` metadata
    /// (`NAME;NAMESPACE;CANONICAL_NAME;CANONICAL_REVISION;CLUSTER`, the revision empty
    /// for `latest`); app and version are the canonical name and revision, as Istio's
    /// workload discovery reads them. None when it has not five fields.
    pub fn from_compact(compact: &str) -> Option<Workload> {
        let mut parts = compact.split(';');
        let mut next = || parts.next();
        let (name, namespace, service, revision, cluster) =
            (next()?, next()?, next()?, next()?, next()?);
        if next().is_some() {
            return None;
        }
        let revision = if revision.is_empty() {
            "latest"
        } else {
            revision
        };
        Some(Workload {
            name: name.to_owned(),
            namespace: namespace.to_owned(),
            canonical_service: service.to_owned(),
            canonical_revision: revision.to_owned(),
            app: service.to_owned(),
            version: revision.to_owned(),
            cluster: cluster.to_owned(),
        })
    }

    /// The workload as Istio's metadata exchange sends it in `x-envoy-peer-metadata`.
    pub fn to_header(&self) -> HeaderValue {
        let labels = [
            ("app", &self.app),
            ("version", &self.version),
            (CANONICAL_NAME, &self.canonical_service),
            (CANONICAL_REVISION, &self.canonical_revision),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.to_owned(), text(v)));
        let fields = [
            ("WORKLOAD_NAME", &self.name),
            ("NAMESPACE", &self.namespace),
            ("CLUSTER_ID", &self.cluster),
        ]
        .into_iter()
        .filter(|(_, v)| !v.is_empty())
        .map(|(k, v)| (k.to_owned(), text(v)))
        .chain([(
            "LABELS".to_owned(),
            Value {
                kind: Some(Kind::StructValue(Struct {
                    fields: labels.collect(),
                })),
            },
        )]);
        let encoded = STANDARD.encode(
            Struct {
                fields: fields.collect(),
            }
            .encode_to_vec(),
        );
        HeaderValue::try_from(encoded).expect("base64 is a valid header value")
    }

    /// The workload a peer sent in `x-envoy-peer-metadata`; None when the value is not
    /// base64 of a protobuf `Struct`.
    pub fn from_header(value: &[u8]) -> Option<Workload> {
        let bytes = STANDARD.decode(value).ok()?;
        let metadata = Struct::decode(bytes.as_slice()).ok()?;
        Some(Workload::from_node(&Node {
            metadata: Some(metadata),
            ..Node::default()
        }))
    }
}

fn kind(value: &Value) -> Option<&Kind> {
    value.kind.as_ref()
}

fn string(value: Option<&Value>) -> Option<&str> {
    match value.and_then(kind) {
        Some(Kind::StringValue(s)) => Some(s),
        _ => None,
    }
}

fn text(s: &str) -> Value {
    Value {
        kind: Some(Kind::StringValue(s.to_owned())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(id: &str, fields: &[(&str, &str)], labels: &[(&str, &str)]) -> Node {
        let mut metadata: std::collections::HashMap<String, Value> = fields
            .iter()
            .map(|(k, v)| ((*k).to_owned(), text(v)))
            .collect();
        metadata.insert(
            "LABELS".into(),
            Value {
                kind: Some(Kind::StructValue(Struct {
                    fields: labels
                        .iter()
                        .map(|(k, v)| ((*k).to_owned(), text(v)))
                        .collect(),
                })),
            },
        );
        Node {
            id: id.into(),
            metadata: Some(Struct {
                fields: metadata.into_iter().collect(),
            }),
            ..Node::default()
        }
    }

    #[test]
    fn node_metadata_gives_the_labels_with_istios_fallbacks() {
        let reviews = Workload::from_node(&node(
            "sidecar~10.0.0.3~reviews-v2-1.default~default.svc.cluster.local",
            &[
                ("WORKLOAD_NAME", "reviews-v2"),
                ("CLUSTER_ID", "Kubernetes"),
            ],
            &[("app", "reviews"), ("version", "v2")],
        ));
        assert_eq!(
            reviews,
            Workload {
                name: "reviews-v2".into(),
                namespace: "default".into(),
                canonical_service: "reviews".into(),
                canonical_revision: "v2".into(),
                app: "reviews".into(),
                version: "v2".into(),
                cluster: "Kubernetes".into(),
            }
        );
        let bare = Workload::from_node(&node("sidecar~10.0.0.4~curl-7.tools~x", &[], &[]));
        assert_eq!(
            (bare.name.as_str(), bare.namespace.as_str()),
            ("curl-7", "tools")
        );
        assert_eq!(bare.canonical_service, "curl-7");
        assert_eq!(bare.canonical_revision, "latest");
    }

    #[test]
    fn the_peer_header_round_trips() {
        let w = Workload::from_compact("ratings-v1;default;ratings;v1;Kubernetes").unwrap();
        assert_eq!(Workload::from_header(w.to_header().as_bytes()), Some(w));
        assert_eq!(Workload::from_header(b"not base64!"), None);
    }

    #[test]
    fn compact_metadata_has_five_fields_and_an_empty_revision_is_latest() {
        let w = Workload::from_compact("details-v1;default;details;;Kubernetes").unwrap();
        assert_eq!(w.canonical_revision, "latest");
        assert_eq!(w.app, "details");
        assert_eq!(Workload::from_compact("a;b;c"), None);
        assert_eq!(Workload::from_compact("a;b;c;d;e;f"), None);
    }
}
