//! A cluster's transport sockets: how connections to each of its endpoints are made.
//! `transport_socket` says it for every endpoint; `transport_socket_matches` pick one
//! by the endpoint's `envoy.transport_socket_match` metadata (Istio's auto mTLS: TLS to
//! endpoints labelled `tlsMode: istio`, plaintext to the others).

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use mizzen_xds::pb::envoy::config::cluster::v3::Cluster as PbCluster;
use mizzen_xds::pb::envoy::config::core::v3::{
    Metadata, TransportSocket, transport_socket::ConfigType,
};
use mizzen_xds::pb::envoy::extensions::transport_sockets::tls::v3::UpstreamTlsContext;
use mizzen_xds::pb::google::protobuf::{Struct, Value};
use prost::Message;

use super::client::ClientTls;
use super::secrets::{SecretSlot, Secrets};

/// The transport socket that terminates or originates TLS.
pub const TLS: &str = "envoy.transport_sockets.tls";
/// The plaintext transport socket.
pub const RAW_BUFFER: &str = "envoy.transport_sockets.raw_buffer";
/// The endpoint metadata key that transport socket matches read.
const MATCH_KEY: &str = "envoy.transport_socket_match";

/// How a connection to an endpoint is made.
#[derive(Debug, Clone, Default)]
pub enum Transport {
    /// Plain TCP.
    #[default]
    Plaintext,
    /// TLS with this context.
    Tls(Arc<UpstreamTls>),
}

/// A TLS context and the identity of its configuration, by which pools are told apart
/// (the same configuration in a cluster update keeps its pools).
#[derive(Debug)]
pub struct UpstreamTls {
    /// The context.
    pub tls: ClientTls,
    id: u64,
}

impl PartialEq for Transport {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Transport::Plaintext, Transport::Plaintext) => true,
            (Transport::Tls(a), Transport::Tls(b)) => a.id == b.id,
            _ => false,
        }
    }
}

impl Eq for Transport {}

impl Hash for Transport {
    fn hash<H: Hasher>(&self, state: &mut H) {
        match self {
            Transport::Plaintext => state.write_u64(0),
            Transport::Tls(t) => state.write_u64(t.id),
        }
    }
}

impl Transport {
    /// Compiles a `TransportSocket`; errors are `(field, reason)`.
    pub fn compile(
        socket: &TransportSocket,
        secrets: &Secrets,
    ) -> Result<Transport, (String, String)> {
        let any = socket
            .config_type
            .as_ref()
            .map(|ConfigType::TypedConfig(any)| any);
        let type_name = any.map(|a| a.type_url.rsplit('/').next().unwrap_or_default());
        match (socket.name.as_str(), type_name) {
            (_, Some("envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"))
            | (TLS, None) => {
                let bytes = any.map_or(&[][..], |a| a.value.as_slice());
                let ctx = UpstreamTlsContext::decode(bytes)
                    .map_err(|e| ("typed_config".to_owned(), e.to_string()))?;
                let tls = ClientTls::compile(&ctx, secrets)
                    .map_err(|(f, r)| (format!("typed_config.{f}"), r))?;
                Ok(Transport::Tls(Arc::new(UpstreamTls {
                    tls,
                    id: xxhash_rust::xxh64::xxh64(&socket.encode_to_vec(), 0),
                })))
            }
            (_, Some("envoy.extensions.transport_sockets.raw_buffer.v3.RawBuffer"))
            | (RAW_BUFFER, None) => Ok(Transport::Plaintext),
            (name, _) => Err((
                "name".into(),
                format!(
                    "transport socket {name:?} is not supported; expected {TLS} or {RAW_BUFFER}"
                ),
            )),
        }
    }

    /// The secret slots its TLS context reads.
    pub fn slots(&self) -> impl Iterator<Item = &Arc<SecretSlot>> {
        match self {
            Transport::Plaintext => None,
            Transport::Tls(t) => Some(t.tls.slots()),
        }
        .into_iter()
        .flatten()
    }
}

/// A cluster's transport sockets.
#[derive(Debug, Default)]
pub struct Transports {
    /// For endpoints no match selects (`transport_socket`, plaintext when unset).
    pub default: Transport,
    matches: Vec<(Vec<(String, Value)>, Transport)>,
}

impl Transports {
    /// Compiles the cluster's `transport_socket` and `transport_socket_matches`; errors
    /// are `(field, reason)`.
    pub fn compile(raw: &PbCluster, secrets: &Secrets) -> Result<Transports, (String, String)> {
        let default = match &raw.transport_socket {
            Some(socket) => Transport::compile(socket, secrets)
                .map_err(|(f, r)| (format!("transport_socket.{f}"), r))?,
            None => Transport::Plaintext,
        };
        let matches = raw
            .transport_socket_matches
            .iter()
            .enumerate()
            .map(|(i, m)| {
                let at = |f: &str| format!("transport_socket_matches[{i}].{f}");
                let socket = m
                    .transport_socket
                    .as_ref()
                    .ok_or_else(|| (at("transport_socket"), "must be set".to_owned()))?;
                let transport = Transport::compile(socket, secrets)
                    .map_err(|(f, r)| (at(&format!("transport_socket.{f}")), r))?;
                let criteria = m.r#match.as_ref().map_or_else(Vec::new, fields);
                Ok((criteria, transport))
            })
            .collect::<Result<_, (String, String)>>()?;
        Ok(Transports { default, matches })
    }

    /// Whether endpoints may differ in transport (their metadata decides).
    pub fn by_endpoint(&self) -> bool {
        !self.matches.is_empty()
    }

    /// The transport for an endpoint with `metadata`: the first match all of whose
    /// fields the endpoint's `envoy.transport_socket_match` metadata has, else the
    /// default.
    pub fn select(&self, metadata: Option<&Metadata>) -> &Transport {
        let labels = metadata.and_then(|m| m.filter_metadata.get(MATCH_KEY));
        self.matches
            .iter()
            .find(|(criteria, _)| {
                criteria
                    .iter()
                    .all(|(k, v)| labels.and_then(|l| l.fields.get(k)) == Some(v))
            })
            .map_or(&self.default, |(_, t)| t)
    }

    /// Every transport (the default and each match's).
    pub fn all(&self) -> impl Iterator<Item = &Transport> {
        std::iter::once(&self.default).chain(self.matches.iter().map(|(_, t)| t))
    }
}

fn fields(s: &Struct) -> Vec<(String, Value)> {
    let mut fields: Vec<_> = s
        .fields
        .iter()
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    fields.sort_by(|a, b| a.0.cmp(&b.0));
    fields
}
