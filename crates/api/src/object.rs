//! Objects: Istio resources (`Resource<Spec>`), Kubernetes objects, and opaque others.

use std::fmt;

use k8s_openapi::api::{apps, core, discovery};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::de::DeserializeOwned;
use serde::ser::SerializeMap;
use serde::{Deserialize, Serialize, Serializer};

use crate::kind::Kind;
use crate::validate::{Issue, Validate, Validator};
use crate::{extensions, networking, security, telemetry};

/// The spec of an Istio kind.
pub trait Spec:
    Validate + Serialize + DeserializeOwned + Default + Clone + PartialEq + fmt::Debug
{
    /// The kind whose `spec` this is.
    const KIND: Kind;
}

/// An Istio object: type and object metadata around a typed spec.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Resource<S> {
    /// The `apiVersion` it was written with; every served version loads the same spec type.
    pub api_version: String,
    #[serde(default, rename = "kind")]
    _kind: IgnoredKind,
    /// Name, namespace, labels, annotations…
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// The typed spec.
    #[serde(default)]
    pub spec: S,
    /// Status as reported by a controller; kept opaque and never validated.
    #[serde(default)]
    pub status: Option<serde_json::Value>,
}

/// The `kind` field, already checked by the loader and implied by the spec type.
#[derive(Debug, Clone, PartialEq, Default)]
struct IgnoredKind;

impl<'de> Deserialize<'de> for IgnoredKind {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        serde::de::IgnoredAny::deserialize(d).map(|_| IgnoredKind)
    }
}

impl<S: Spec> Resource<S> {
    /// A resource of this kind at its preferred version.
    pub fn new(metadata: ObjectMeta, spec: S) -> Self {
        Self {
            api_version: S::KIND.api_version(),
            _kind: IgnoredKind,
            metadata,
            spec,
            status: None,
        }
    }
}

impl<S: Spec> Serialize for Resource<S> {
    fn serialize<Z: Serializer>(&self, s: Z) -> Result<Z::Ok, Z::Error> {
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("apiVersion", &self.api_version)?;
        map.serialize_entry("kind", S::KIND.name())?;
        map.serialize_entry("metadata", &self.metadata)?;
        map.serialize_entry("spec", &self.spec)?;
        if let Some(status) = &self.status {
            map.serialize_entry("status", status)?;
        }
        map.end()
    }
}

/// An object of a kind Mizzen does not model (Gateway API routes, ConfigMaps…), kept as
/// loaded so nothing is lost.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OtherObject {
    /// As written.
    pub api_version: String,
    /// As written.
    pub kind: String,
    /// Name, namespace, labels…
    #[serde(default)]
    pub metadata: ObjectMeta,
    /// Every other top-level field.
    #[serde(flatten)]
    pub rest: serde_json::Map<String, serde_json::Value>,
}

/// A value an [`Object`] of one known kind holds: an Istio `Resource<Spec>` or a
/// Kubernetes object, so that code can ask a set of objects for one kind, typed.
pub trait Typed: Sized + 'static {
    /// The kind.
    const KIND: Kind;
    /// The value, when `object` is of this kind.
    fn from_object(object: &Object) -> Option<&Self>;
}

/// Identifies an object: kind, namespace and name.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectKey {
    /// The kind's name (for opaque objects, as written).
    pub kind: String,
    /// Empty for cluster-scoped kinds.
    pub namespace: String,
    /// The object's name.
    pub name: String,
}

impl fmt::Display for ObjectKey {
    /// `Kind namespace/name`, the way istioctl names objects in its messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.namespace.is_empty() {
            write!(f, "{} {}", self.kind, self.name)
        } else {
            write!(f, "{} {}/{}", self.kind, self.namespace, self.name)
        }
    }
}

macro_rules! objects {
    (
        istio { $($ikind:ident($ispec:ty)),+ $(,)? }
        kube { $($kkind:ident($ktype:ty)),+ $(,)? }
    ) => {
        /// Any object Mizzen reads.
        #[derive(Debug, Clone, PartialEq, Serialize)]
        #[serde(untagged)]
        pub enum Object {
            $(
                #[doc = concat!("An Istio `", stringify!($ikind), "`.")]
                $ikind(Resource<$ispec>),
            )+
            $(
                #[doc = concat!("A Kubernetes `", stringify!($kkind), "`.")]
                $kkind(Box<$ktype>),
            )+
            /// A kind Mizzen does not model.
            Other(OtherObject),
        }

        $( impl Spec for $ispec { const KIND: Kind = Kind::$ikind; } )+

        $(
            impl Typed for Resource<$ispec> {
                const KIND: Kind = Kind::$ikind;
                fn from_object(object: &Object) -> Option<&Self> {
                    match object {
                        Object::$ikind(r) => Some(r),
                        _ => None,
                    }
                }
            }
        )+
        $(
            impl Typed for $ktype {
                const KIND: Kind = Kind::$kkind;
                fn from_object(object: &Object) -> Option<&Self> {
                    match object {
                        Object::$kkind(o) => Some(o),
                        _ => None,
                    }
                }
            }
        )+

        impl Object {
            /// The kind, or `None` for an opaque object.
            pub fn kind(&self) -> Option<Kind> {
                match self {
                    $(Object::$ikind(_) => Some(Kind::$ikind),)+
                    $(Object::$kkind(_) => Some(Kind::$kkind),)+
                    Object::Other(_) => None,
                }
            }

            /// The object's metadata.
            pub fn meta(&self) -> &ObjectMeta {
                match self {
                    $(Object::$ikind(r) => &r.metadata,)+
                    $(Object::$kkind(o) => &o.metadata,)+
                    Object::Other(o) => &o.metadata,
                }
            }

            /// The object's metadata, mutably.
            pub fn meta_mut(&mut self) -> &mut ObjectMeta {
                match self {
                    $(Object::$ikind(r) => &mut r.metadata,)+
                    $(Object::$kkind(o) => &mut o.metadata,)+
                    Object::Other(o) => &mut o.metadata,
                }
            }

            /// The `apiVersion` as written.
            pub fn api_version(&self) -> String {
                match self {
                    $(Object::$ikind(r) => r.api_version.clone(),)+
                    $(Object::$kkind(_) => Kind::$kkind.api_version(),)+
                    Object::Other(o) => o.api_version.clone(),
                }
            }

            /// Deserializes an object of a known kind from any serde source.
            pub(crate) fn deserialize_kind<'de, D: serde::Deserializer<'de>>(
                kind: Kind,
                d: D,
            ) -> Result<Object, D::Error> {
                Ok(match kind {
                    $(Kind::$ikind => Object::$ikind(Deserialize::deserialize(d)?),)+
                    $(Kind::$kkind => Object::$kkind(Deserialize::deserialize(d)?),)+
                })
            }

            fn validate_spec(&self, v: &mut Validator<'_>) {
                match self {
                    $(Object::$ikind(r) => v.check("spec", &r.spec),)+
                    $(Object::$kkind(o) => o.validate(v),)+
                    Object::Other(_) => {}
                }
            }
        }
    };
}

objects! {
    istio {
        VirtualService(networking::VirtualService),
        DestinationRule(networking::DestinationRule),
        Gateway(networking::Gateway),
        ServiceEntry(networking::ServiceEntry),
        WorkloadEntry(networking::WorkloadEntry),
        WorkloadGroup(networking::WorkloadGroup),
        Sidecar(networking::Sidecar),
        ProxyConfig(networking::ProxyConfig),
        EnvoyFilter(networking::EnvoyFilter),
        PeerAuthentication(security::PeerAuthentication),
        RequestAuthentication(security::RequestAuthentication),
        AuthorizationPolicy(security::AuthorizationPolicy),
        Telemetry(telemetry::Telemetry),
        WasmPlugin(extensions::WasmPlugin),
    }
    kube {
        Service(core::v1::Service),
        Namespace(core::v1::Namespace),
        ServiceAccount(core::v1::ServiceAccount),
        Pod(core::v1::Pod),
        Secret(core::v1::Secret),
        Deployment(apps::v1::Deployment),
        EndpointSlice(discovery::v1::EndpointSlice),
    }
}

impl Object {
    /// Kind, namespace and name.
    pub fn key(&self) -> ObjectKey {
        let meta = self.meta();
        ObjectKey {
            kind: match self {
                Object::Other(o) => o.kind.clone(),
                _ => self.kind().map(Kind::name).unwrap_or_default().to_owned(),
            },
            namespace: meta.namespace.clone().unwrap_or_default(),
            name: meta.name.clone().unwrap_or_default(),
        }
    }

    /// Checks the object as Istio's validation webhook (and the API server's schema
    /// checks) would, returning every finding.
    pub fn validate(&self) -> Vec<Issue> {
        let meta = self.meta();
        let mut v = Validator::new(meta);
        v.field("metadata", |v| check_metadata(v, meta, self.kind()));
        self.validate_spec(&mut v);
        v.into_issues()
    }
}

fn check_metadata(v: &mut Validator<'_>, meta: &ObjectMeta, kind: Option<Kind>) {
    use crate::validate::{check_labels, is_dns1123_label, is_dns1123_subdomain};
    match meta.name.as_deref() {
        None | Some("") if meta.generate_name.is_none() => v.required("name"),
        Some(name) if !name.is_empty() && !is_dns1123_subdomain(name) => v.error_at(
            "name",
            format!("Invalid value: {name:?}: a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, '-' or '.', and must start and end with an alphanumeric character"),
        ),
        _ => {}
    }
    if let Some(ns) = meta.namespace.as_deref() {
        if kind.is_some_and(Kind::cluster_scoped) && !ns.is_empty() {
            v.error_at(
                "namespace",
                "Invalid value: a cluster-scoped object has no namespace",
            );
        } else if !is_dns1123_label(ns) {
            v.error_at(
                "namespace",
                format!("Invalid value: {ns:?}: a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', and must start and end with an alphanumeric character"),
            );
        }
    }
    if let Some(labels) = &meta.labels {
        v.field("labels", |v| check_labels(v, labels));
    }
}
