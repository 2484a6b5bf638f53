//! Envoy config as the proxy holds it: every resource compiled when it arrives into an
//! immutable [`Snapshot`], swapped atomically, so a request reads one consistent view
//! without locks and finishes on the config it started with.

mod chain;
mod cidr;
mod cluster;
pub mod dns;
mod http;
mod listener;
mod store;
mod tcp;

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use mizzen_xds::pb::envoy::config::core::v3::{Address, SocketAddress, address, socket_address};
use mizzen_xds::pb::google::protobuf::Duration as PbDuration;

pub use chain::{ChainMatch, ConnectionInfo};
pub(crate) use cidr::Cidr;
pub use cluster::{
    CircuitBreakers, Cluster, Discovery, OutlierDetection, RetryLimit, UpstreamProtocol,
};
pub use dns::{Dns, DnsKind, LookupFamily, Resolve, SystemResolver};
pub use http::{Codec, Forwarding, HttpManager, RouteSource, ServerHeader};
pub use listener::{FilterChain, Listener, NetworkFilter};
pub use store::{ClusterState, ConfigStore, Snapshot, Wanted};
pub use tcp::{TcpProxy, TcpTarget};

/// A resource the proxy refuses, with the field at fault and why: what a NACK says.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} {name:?}: {field}: {reason}")]
pub struct ConfigError {
    kind: &'static str,
    name: String,
    field: String,
    reason: String,
}

impl ConfigError {
    /// An error in the field `field` of the `kind` named `name`.
    pub fn new(kind: &'static str, name: &str, field: &str, reason: impl Into<String>) -> Self {
        Self {
            kind,
            name: name.to_owned(),
            field: field.to_owned(),
            reason: reason.into(),
        }
    }
}

/// A protobuf duration as a `Duration`, refusing negative ones.
pub(crate) fn duration(d: &PbDuration) -> Result<Duration, String> {
    if d.seconds < 0 || d.nanos < 0 {
        return Err(format!("negative duration {}s {}ns", d.seconds, d.nanos));
    }
    Ok(Duration::new(d.seconds as u64, d.nanos as u32))
}

/// A socket address with a numeric IP and port.
pub(crate) fn socket_address(address: &Address) -> Result<SocketAddr, String> {
    match &address.address {
        Some(address::Address::SocketAddress(sa)) => ip_port(sa),
        Some(address::Address::Pipe(pipe)) => {
            Err(format!("unix socket {:?} is not supported", pipe.path))
        }
        Some(_) => Err("only socket addresses are supported".into()),
        None => Err("no address".into()),
    }
}

/// A protobuf socket address with a numeric IP (a port left out is 0).
pub(crate) fn ip_port(sa: &SocketAddress) -> Result<SocketAddr, String> {
    let ip: IpAddr = sa
        .address
        .parse()
        .map_err(|_| format!("{:?} is not an IP address", sa.address))?;
    let port = match sa.port_specifier {
        Some(socket_address::PortSpecifier::PortValue(p)) => {
            u16::try_from(p).map_err(|_| format!("port {p} is out of range"))?
        }
        Some(socket_address::PortSpecifier::NamedPort(ref name)) => {
            return Err(format!("named port {name:?} is not supported"));
        }
        None => 0,
    };
    Ok(SocketAddr::new(ip, port))
}
