//! The set of objects an analysis reads: built from files, from a live mesh, or both
//! (later sources win, so files layer over the live state), with the mesh's settings.

use std::collections::{HashMap, HashSet};
use std::path::Path;
use std::sync::Arc;

use crate::ObjectMeta;
use crate::kind::Kind;
use crate::load::{LoadError, Loader, Origin};
use crate::object::{Object, ObjectKey, OtherObject, Typed};

use super::mesh::{IngressControllerMode, MeshConfig, MeshNetworks};
use super::message::{Message, MessageType, Subject};

/// A kind of object, named by API group and kind: what an analyzer declares it reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Collection {
    /// The API group; empty for Kubernetes' core group.
    pub group: &'static str,
    /// The kind.
    pub kind: &'static str,
}

impl Collection {
    /// The collection of a kind Mizzen models.
    pub const fn of(kind: Kind) -> Self {
        Self {
            group: kind.group(),
            kind: kind.name(),
        }
    }

    /// Kubernetes ConfigMaps.
    pub const CONFIG_MAP: Self = Self::other("", "ConfigMap");
    /// Kubernetes Nodes.
    pub const NODE: Self = Self::other("", "Node");
    /// MutatingWebhookConfigurations.
    pub const MUTATING_WEBHOOK: Self = Self::other(
        "admissionregistration.k8s.io",
        "MutatingWebhookConfiguration",
    );
    /// ValidatingWebhookConfigurations.
    pub const VALIDATING_WEBHOOK: Self = Self::other(
        "admissionregistration.k8s.io",
        "ValidatingWebhookConfiguration",
    );
    /// CustomResourceDefinitions.
    pub const CRD: Self = Self::other("apiextensions.k8s.io", "CustomResourceDefinition");
    /// Gateway API Gateways.
    pub const K8S_GATEWAY: Self = Self::other("gateway.networking.k8s.io", "Gateway");
    /// Gateway API HTTPRoutes.
    pub const HTTP_ROUTE: Self = Self::other("gateway.networking.k8s.io", "HTTPRoute");
    /// Gateway API GRPCRoutes.
    pub const GRPC_ROUTE: Self = Self::other("gateway.networking.k8s.io", "GRPCRoute");
    /// The mesh's MeshConfig, always present.
    pub const MESH_CONFIG: Self = Self::other("mesh.istio.io", "MeshConfig");
    /// The mesh's MeshNetworks, always present.
    pub const MESH_NETWORKS: Self = Self::other("mesh.istio.io", "MeshNetworks");

    /// A collection of a kind Mizzen keeps opaque.
    pub const fn other(group: &'static str, kind: &'static str) -> Self {
        Self { group, kind }
    }
}

/// The Kubernetes kinds `istioctl analyze` does not read from files unless it also reads
/// a cluster (`kuberesource.DefaultExcludedSchemas`).
const FILE_EXCLUDED: &[Collection] = &[
    Collection::of(Kind::Service),
    Collection::of(Kind::Namespace),
    Collection::of(Kind::Pod),
    Collection::of(Kind::Secret),
    Collection::NODE,
];

/// Namespaces whose objects Istio never analyses (`inject.IgnoredNamespaces`).
const IGNORED_NAMESPACES: &[&str] = &[
    "kube-system",
    "kube-public",
    "kube-node-lease",
    "local-path-storage",
];

/// The ingress gateway Pod and Service `istioctl` assumes exist when it reads only files
/// (Istio's `defaultIstioIngressGateway`).
const DEFAULT_INGRESS: &str = "\
apiVersion: v1
kind: Pod
metadata:
  labels:
    istio: ingressgateway
  name: {service}-dummypod
  namespace: {namespace}
spec:
  containers:
    - name: istio-proxy
---
apiVersion: v1
kind: Service
metadata:
  name: {service}
  namespace: {namespace}
spec:
  ports:
  - {name: http2, nodePort: 31380, port: 80, protocol: TCP, targetPort: 80}
  - {name: https, nodePort: 31390, port: 443, protocol: TCP, targetPort: 443}
  - {name: tcp, nodePort: 31400, port: 31400, protocol: TCP, targetPort: 31400}
  - {name: tls, nodePort: 31447, port: 15443, protocol: TCP, targetPort: 15443}
  selector:
    istio: ingressgateway
";

/// One object of the set.
#[derive(Debug, Clone)]
pub struct Entry {
    /// The object.
    pub object: Object,
    /// Where it was read from; `None` for objects of a live mesh or built-in defaults.
    pub origin: Option<Origin>,
    /// The cluster it belongs to (empty unless several clusters are analysed together).
    pub cluster: Arc<str>,
    /// True when read by the file reader (files and the built-in defaults).
    from_files: bool,
    key: ObjectKey,
    group: String,
    /// The text of the origin's file, to find a field's line.
    text: Option<Arc<str>>,
}

impl Entry {
    /// Kind, namespace and name.
    pub fn key(&self) -> &ObjectKey {
        &self.key
    }

    /// The namespace; empty when the object has none.
    pub fn namespace(&self) -> &str {
        &self.key.namespace
    }

    /// The name.
    pub fn name(&self) -> &str {
        &self.key.name
    }

    /// The object's metadata.
    pub fn meta(&self) -> &ObjectMeta {
        self.object.meta()
    }

    /// A label's value.
    pub fn label(&self, name: &str) -> Option<&str> {
        self.meta().labels.as_ref()?.get(name).map(String::as_str)
    }

    /// An annotation's value.
    pub fn annotation(&self, name: &str) -> Option<&str> {
        self.meta()
            .annotations
            .as_ref()?
            .get(name)
            .map(String::as_str)
    }

    /// A message about this object, pointing at the object's document.
    pub fn message(&self, ty: &'static MessageType, args: Vec<String>) -> Message {
        self.message_at("", ty, args)
    }

    /// A message about the field at `path` of this object (such as
    /// `spec.http[0].route[1].destination.host`), pointing at that field's line.
    pub fn message_at(&self, path: &str, ty: &'static MessageType, args: Vec<String>) -> Message {
        let line = self.origin.as_ref().map(|origin| match &self.text {
            Some(text) if origin.file.is_some() => origin.at_field(text, path).line,
            _ => origin.line,
        });
        Message {
            ty,
            subject: Some(Subject {
                key: self.key.clone(),
                file: self.origin.as_ref().and_then(|o| o.file.clone()),
                line,
            }),
            args,
        }
    }

    fn collection_key(&self) -> (&str, &str) {
        (&self.group, &self.key.kind)
    }
}

/// Builds a [`Context`]: add sources in ascending precedence, then [`ContextBuilder::build`].
#[derive(Debug, Default)]
pub struct ContextBuilder {
    entries: Vec<Entry>,
    mesh: MeshConfig,
    networks: MeshNetworks,
    istio_namespace: Option<String>,
    cli_files: bool,
    live: bool,
    cluster: Arc<str>,
}

impl ContextBuilder {
    /// An empty set, with Istio's default mesh settings.
    pub fn new() -> Self {
        Self::default()
    }

    /// Replaces the mesh config.
    pub fn mesh_config(mut self, mesh: MeshConfig) -> Self {
        self.mesh = mesh;
        self
    }

    /// Replaces the mesh networks.
    pub fn mesh_networks(mut self, networks: MeshNetworks) -> Self {
        self.networks = networks;
        self
    }

    /// The namespace Istio's control plane runs in (default `istio-system`).
    pub fn istio_namespace(mut self, namespace: impl Into<String>) -> Self {
        self.istio_namespace = Some(namespace.into());
        self
    }

    /// Reads files as `istioctl analyze` does (its tests read every kind): Services,
    /// Namespaces, Nodes, Pods and Secrets in files are dropped, and unless a live source
    /// ([`ContextBuilder::add_object`]) provides those kinds, analyzers reading them are
    /// skipped.
    pub fn cli_files(mut self, cli_files: bool) -> Self {
        self.cli_files = cli_files;
        self
    }

    /// Objects added from now on belong to `cluster` (for multi-cluster analysis).
    pub fn cluster(&mut self, cluster: &str) -> &mut Self {
        self.cluster = Arc::from(cluster);
        self
    }

    /// Loads the objects in `text` (YAML or JSON) with `loader`, keeping the text to
    /// report fields' lines; returns what could not be loaded.
    pub fn add_text(&mut self, loader: &Loader, text: &str, file: Option<&Path>) -> Vec<LoadError> {
        let result = loader.load_str(text, file);
        let text: Option<Arc<str>> = file.map(|_| Arc::from(text));
        for loaded in result.objects {
            self.push(loaded.object, Some(loaded.origin), text.clone(), true);
        }
        result.errors
    }

    /// Adds an object of the live mesh.
    pub fn add_object(&mut self, object: Object) {
        self.live = true;
        self.push(object, None, None, false);
    }

    /// Adds the ingress gateway Pod and Service istioctl assumes for file-only analysis,
    /// unless the mesh config turns ingress off.
    pub fn add_default_resources(&mut self) {
        if self.mesh.ingress_controller_mode == IngressControllerMode::Off {
            return;
        }
        let text = DEFAULT_INGRESS
            .replace("{service}", &self.mesh.ingress_service)
            .replace("{namespace}", self.istio_ns());
        let loaded = Loader::new().default_namespace(None).load_str(&text, None);
        debug_assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        for loaded in loaded.objects {
            self.push(loaded.object, None, None, true);
        }
    }

    fn istio_ns(&self) -> &str {
        self.istio_namespace.as_deref().unwrap_or("istio-system")
    }

    fn push(
        &mut self,
        object: Object,
        origin: Option<Origin>,
        text: Option<Arc<str>>,
        from_files: bool,
    ) {
        let key = object.key();
        let group = match &object {
            Object::Other(o) => o
                .api_version
                .rsplit_once('/')
                .map_or("", |(g, _)| g)
                .to_owned(),
            other => other.kind().map(Kind::group).unwrap_or_default().to_owned(),
        };
        self.entries.push(Entry {
            object,
            origin,
            cluster: self.cluster.clone(),
            from_files,
            key,
            group,
            text,
        });
    }

    /// The set: objects of ignored namespaces (and, files-only, of excluded kinds)
    /// dropped; for objects defined more than once, the last definition.
    pub fn build(self) -> Context {
        let istio_namespace = self.istio_ns().to_owned();
        let excluded = |e: &Entry| {
            let namespace = if e.key.kind == "Namespace" {
                &e.key.name
            } else {
                &e.key.namespace
            };
            IGNORED_NAMESPACES.contains(&namespace.as_str())
                || (self.cli_files
                    && e.from_files
                    && FILE_EXCLUDED
                        .iter()
                        .any(|c| (c.group, c.kind) == e.collection_key()))
        };
        let mut last: HashMap<(&str, &str, &ObjectKey), usize> = HashMap::new();
        for (i, e) in self.entries.iter().enumerate() {
            if !excluded(e) {
                last.insert((&e.cluster, &e.group, &e.key), i);
            }
        }
        let keep: HashSet<usize> = last.into_values().collect();
        let entries: Vec<Entry> = self
            .entries
            .into_iter()
            .enumerate()
            .filter(|(i, _)| keep.contains(i))
            .map(|(_, e)| e)
            .collect();
        let mut by_collection: HashMap<(String, String), Vec<usize>> = HashMap::new();
        let mut by_name: HashMap<(String, String, String, String), usize> = HashMap::new();
        for (i, e) in entries.iter().enumerate() {
            let (group, kind) = e.collection_key();
            by_collection
                .entry((group.to_owned(), kind.to_owned()))
                .or_default()
                .push(i);
            by_name.insert(
                (
                    group.to_owned(),
                    kind.to_owned(),
                    e.key.namespace.clone(),
                    e.key.name.clone(),
                ),
                i,
            );
        }
        Context {
            istio_namespace,
            entries,
            by_collection,
            by_name,
            mesh: self.mesh,
            networks: self.networks,
            core_kinds_missing: self.cli_files && !self.live,
        }
    }
}

/// The objects and settings an analysis reads.
#[derive(Debug)]
pub struct Context {
    entries: Vec<Entry>,
    by_collection: HashMap<(String, String), Vec<usize>>,
    by_name: HashMap<(String, String, String, String), usize>,
    mesh: MeshConfig,
    networks: MeshNetworks,
    istio_namespace: String,
    /// True when no source provides the kinds files do not (Pods, Services…).
    core_kinds_missing: bool,
}

impl Context {
    /// Every object, in input order.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// The mesh config.
    pub fn mesh(&self) -> &MeshConfig {
        &self.mesh
    }

    /// The mesh networks.
    pub fn mesh_networks(&self) -> &MeshNetworks {
        &self.networks
    }

    /// The namespace of Istio's control plane.
    pub fn istio_namespace(&self) -> &str {
        &self.istio_namespace
    }

    /// True when a source can provide objects of `collection` (even if none exist):
    /// analyzers reading a collection no source provides are skipped.
    pub fn provides(&self, collection: Collection) -> bool {
        !(self.core_kinds_missing && FILE_EXCLUDED.contains(&collection))
    }

    /// Every object of a collection, in input order.
    pub fn collection(&self, collection: Collection) -> impl Iterator<Item = &Entry> + '_ {
        let key = (collection.group.to_owned(), collection.kind.to_owned());
        self.by_collection
            .get(&key)
            .into_iter()
            .flatten()
            .map(|&i| &self.entries[i])
    }

    /// Every object of a modelled kind, typed.
    pub fn each<T: Typed>(&self) -> impl Iterator<Item = (&Entry, &T)> + '_ {
        self.collection(Collection::of(T::KIND))
            .filter_map(|e| T::from_object(&e.object).map(|t| (e, t)))
    }

    /// Every object of an opaque collection.
    pub fn others(
        &self,
        collection: Collection,
    ) -> impl Iterator<Item = (&Entry, &OtherObject)> + '_ {
        self.collection(collection).filter_map(|e| match &e.object {
            Object::Other(o) => Some((e, o)),
            _ => None,
        })
    }

    /// Every object of an opaque collection with its top-level fields other than
    /// `metadata` (`data`, `webhooks`…) read as `T`; objects that do not fit `T` are left
    /// out, as Istio's typed informers would not have them.
    pub fn decoded<T: serde::de::DeserializeOwned>(
        &self,
        collection: Collection,
    ) -> impl Iterator<Item = (&Entry, T)> + '_ {
        self.others(collection).filter_map(|(e, o)| {
            let fields = serde_json::Value::Object(o.rest.clone());
            serde_json::from_value(fields).ok().map(|t| (e, t))
        })
    }

    /// The object of `collection` named `namespace/name` (`namespace` empty for
    /// cluster-scoped objects).
    pub fn find(&self, collection: Collection, namespace: &str, name: &str) -> Option<&Entry> {
        let key = (
            collection.group.to_owned(),
            collection.kind.to_owned(),
            namespace.to_owned(),
            name.to_owned(),
        );
        self.by_name.get(&key).map(|&i| &self.entries[i])
    }

    /// The object of a modelled kind named `namespace/name`, typed.
    pub fn find_typed<T: Typed>(&self, namespace: &str, name: &str) -> Option<(&Entry, &T)> {
        let entry = self.find(Collection::of(T::KIND), namespace, name)?;
        T::from_object(&entry.object).map(|t| (entry, t))
    }

    /// True when the object exists.
    pub fn exists(&self, collection: Collection, namespace: &str, name: &str) -> bool {
        self.find(collection, namespace, name).is_some()
    }
}
