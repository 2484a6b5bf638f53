//! The resource types ADS serves, their type URLs, and small sets of them.

use std::fmt;

use crate::pb::google::protobuf::Any;

/// One xDS resource type.
///
/// The order of the variants is the order pushes go out in: clusters before their
/// endpoints and listeners before their routes, because Envoy warms a new cluster until
/// its endpoints arrive and a new listener until its routes arrive.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceType {
    /// `Cluster` (CDS).
    Cluster,
    /// `ClusterLoadAssignment` (EDS).
    Endpoint,
    /// `Listener` (LDS).
    Listener,
    /// `RouteConfiguration` (RDS).
    Route,
    /// TLS `Secret` (SDS).
    Secret,
}

impl ResourceType {
    /// Every type, in push order.
    pub const ALL: [ResourceType; 5] = [
        ResourceType::Cluster,
        ResourceType::Endpoint,
        ResourceType::Listener,
        ResourceType::Route,
        ResourceType::Secret,
    ];

    /// The type's position in [`ResourceType::ALL`].
    pub const fn index(self) -> usize {
        self as usize
    }

    /// The type URL Envoy uses in requests, responses and `Any`s.
    pub const fn type_url(self) -> &'static str {
        match self {
            ResourceType::Cluster => "type.googleapis.com/envoy.config.cluster.v3.Cluster",
            ResourceType::Endpoint => {
                "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment"
            }
            ResourceType::Listener => "type.googleapis.com/envoy.config.listener.v3.Listener",
            ResourceType::Route => "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
            ResourceType::Secret => {
                "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret"
            }
        }
    }

    /// The short name `proxy-status` shows (`CDS`, `EDS`, `LDS`, `RDS`, `SDS`).
    pub const fn short_name(self) -> &'static str {
        match self {
            ResourceType::Cluster => "CDS",
            ResourceType::Endpoint => "EDS",
            ResourceType::Listener => "LDS",
            ResourceType::Route => "RDS",
            ResourceType::Secret => "SDS",
        }
    }

    /// The type with this type URL, if it is one Mizzen serves.
    pub fn from_type_url(url: &str) -> Option<ResourceType> {
        ResourceType::ALL.into_iter().find(|t| t.type_url() == url)
    }

    /// True for the types a client may subscribe to as a whole (CDS and LDS): an empty
    /// list of names in their first request means "everything" (legacy wildcard), while
    /// for the others it means "nothing".
    pub const fn is_wildcard_type(self) -> bool {
        matches!(self, ResourceType::Cluster | ResourceType::Listener)
    }

    /// The resource's name, read from the packed message without decoding the rest:
    /// every type here keeps its name in field 1 (`name`, or `cluster_name` for EDS).
    pub fn resource_name(self, resource: &Any) -> Result<String, NameError> {
        if resource.type_url != self.type_url() {
            return Err(NameError::WrongType {
                expected: self,
                found: resource.type_url.clone(),
            });
        }
        let named: NameOnly = prost::Message::decode(resource.value.as_slice())
            .map_err(|source| NameError::Decode { kind: self, source })?;
        Ok(named.name)
    }
}

impl fmt::Display for ResourceType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.short_name())
    }
}

/// Field 1 of any served resource; prost skips the fields it does not know.
#[derive(Clone, PartialEq, prost::Message)]
struct NameOnly {
    #[prost(string, tag = "1")]
    name: String,
}

/// Why a resource's name could not be read.
#[derive(Debug, thiserror::Error)]
pub enum NameError {
    /// The `Any` holds another type.
    #[error("resource of type {found:?} in a {expected} response (expected {})", expected.type_url())]
    WrongType {
        /// The type the response announced.
        expected: ResourceType,
        /// The type URL inside the `Any`.
        found: String,
    },
    /// The bytes are not a valid message.
    #[error("{kind} resource does not decode: {source}")]
    Decode {
        /// The type being read.
        kind: ResourceType,
        /// What prost said.
        source: prost::DecodeError,
    },
}

/// A set of resource types; iterates in push order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct TypeSet(u8);

impl TypeSet {
    /// No types.
    pub const EMPTY: TypeSet = TypeSet(0);
    /// Every type.
    pub const ALL: TypeSet = TypeSet(0b1_1111);

    /// The set of the given types.
    pub fn of(types: impl IntoIterator<Item = ResourceType>) -> TypeSet {
        types.into_iter().fold(TypeSet::EMPTY, TypeSet::with)
    }

    /// This set plus `ty`.
    pub const fn with(self, ty: ResourceType) -> TypeSet {
        TypeSet(self.0 | TypeSet::bit(ty))
    }

    /// Both sets' types.
    pub const fn union(self, other: TypeSet) -> TypeSet {
        TypeSet(self.0 | other.0)
    }

    /// True when `ty` is in the set.
    pub const fn contains(self, ty: ResourceType) -> bool {
        self.0 & TypeSet::bit(ty) != 0
    }

    /// True when the set has no types.
    pub const fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// The types, in push order.
    pub fn iter(self) -> impl Iterator<Item = ResourceType> {
        ResourceType::ALL
            .into_iter()
            .filter(move |t| self.contains(*t))
    }

    const fn bit(ty: ResourceType) -> u8 {
        1 << ty as u8
    }
}

impl FromIterator<ResourceType> for TypeSet {
    fn from_iter<I: IntoIterator<Item = ResourceType>>(iter: I) -> Self {
        TypeSet::of(iter)
    }
}

impl From<ResourceType> for TypeSet {
    fn from(ty: ResourceType) -> Self {
        TypeSet::EMPTY.with(ty)
    }
}

#[cfg(test)]
mod tests {
    use prost::Message;

    use super::*;
    use crate::pb::envoy::config::cluster::v3::Cluster;
    use crate::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;

    #[test]
    fn type_urls_round_trip() {
        for ty in ResourceType::ALL {
            assert_eq!(ResourceType::from_type_url(ty.type_url()), Some(ty));
        }
        assert_eq!(ResourceType::from_type_url("type.googleapis.com/x"), None);
    }

    #[test]
    fn names_come_from_field_one() {
        let cluster = Cluster {
            name: "outbound|9080||reviews.default.svc.cluster.local".into(),
            connect_timeout: Some(crate::pb::google::protobuf::Duration {
                seconds: 10,
                nanos: 0,
            }),
            ..Default::default()
        };
        let any = Any {
            type_url: ResourceType::Cluster.type_url().into(),
            value: cluster.encode_to_vec(),
        };
        assert_eq!(
            ResourceType::Cluster.resource_name(&any).unwrap(),
            cluster.name
        );
        let err = ResourceType::Endpoint.resource_name(&any).unwrap_err();
        assert!(err.to_string().contains("in a EDS response"), "{err}");

        let cla = ClusterLoadAssignment {
            cluster_name: "outbound|9080||reviews.default.svc.cluster.local".into(),
            ..Default::default()
        };
        let any = Any {
            type_url: ResourceType::Endpoint.type_url().into(),
            value: cla.encode_to_vec(),
        };
        assert_eq!(
            ResourceType::Endpoint.resource_name(&any).unwrap(),
            cla.cluster_name
        );
    }

    #[test]
    fn type_sets_iterate_in_push_order() {
        let set = TypeSet::of([ResourceType::Route, ResourceType::Cluster]);
        assert_eq!(
            set.iter().collect::<Vec<_>>(),
            [ResourceType::Cluster, ResourceType::Route]
        );
        assert_eq!(TypeSet::ALL.iter().count(), 5);
        assert!(TypeSet::EMPTY.is_empty());
        assert!(
            set.union(ResourceType::Secret.into())
                .contains(ResourceType::Secret)
        );
    }
}
