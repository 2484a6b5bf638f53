//! Authorization in the proxy: Envoy's RBAC filters (HTTP and network), JWT
//! authentication (`envoy.filters.http.jwt_authn`) and external authorization
//! (`envoy.filters.http.ext_authz`), each compiled when config arrives into a small
//! evaluator. An HTTP chain runs its filters in the order of `http_filters`, before the
//! router; what one learns (a JWT's payload, RBAC's shadow result) is left for the next
//! in the request's dynamic [`Metadata`].

pub mod ext_authz;
mod filters;
pub mod jwt;
mod matcher;
mod metadata;
mod network;
pub mod rbac;
#[cfg(test)]
pub(crate) mod testdata;

use std::net::{IpAddr, SocketAddr};

use crate::route::RequestHead;

pub(crate) use filters::decode;
pub use filters::{FILTERS, HttpFilters, Outcome};
pub use metadata::Metadata;
pub use network::{NetworkAuthz, admit};

/// What authorization knows of a downstream connection.
#[derive(Debug, Clone, Copy)]
pub struct Connection<'a> {
    /// The connection's source address (RBAC's `direct_remote_ip`).
    pub source: SocketAddr,
    /// Where the client connected (its original destination when redirected).
    pub destination: SocketAddr,
    /// The peer's identity from its TLS certificate (URI SAN), when it presented one:
    /// what RBAC's `authenticated.principal_name` matches.
    pub principal: Option<&'a str>,
    /// The TLS server name the client asked for (RBAC's `requested_server_name`).
    pub server_name: Option<&'a str>,
    /// Whether the connection is TLS.
    pub tls: bool,
}

/// What a policy is evaluated on: a connection and, for HTTP, one request.
#[derive(Debug, Clone, Copy)]
pub struct Subject<'a> {
    /// The connection.
    pub connection: Connection<'a>,
    /// The client's address as the connection manager trusts it (`x-forwarded-for`
    /// within its trusted hops): RBAC's `remote_ip`. For a connection, its source.
    pub remote: IpAddr,
    /// The request, for HTTP.
    pub request: Option<&'a RequestHead<'a>>,
}
