//! Istio's port protocols (`protocol.Instance`), as ports and port names declare them.

use std::fmt;
use std::str::FromStr;

/// A port protocol, parsed case-insensitively as Istio does (`http`, `HTTP`, `Http`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Protocol {
    /// `GRPC`.
    Grpc,
    /// `GRPC-Web`.
    GrpcWeb,
    /// `HTTP` (HTTP/1.1).
    Http,
    /// `HTTP_PROXY`.
    HttpProxy,
    /// `HTTP2`.
    Http2,
    /// `HTTPS`: TLS carrying HTTP.
    Https,
    /// `TCP`.
    Tcp,
    /// `TLS`.
    Tls,
    /// `UDP`.
    Udp,
    /// `Mongo`.
    Mongo,
    /// `Redis`.
    Redis,
    /// `MySQL`.
    MySql,
}

const NAMES: [(Protocol, &str); 12] = [
    (Protocol::Grpc, "GRPC"),
    (Protocol::GrpcWeb, "GRPC-Web"),
    (Protocol::Http, "HTTP"),
    (Protocol::HttpProxy, "HTTP_PROXY"),
    (Protocol::Http2, "HTTP2"),
    (Protocol::Https, "HTTPS"),
    (Protocol::Tcp, "TCP"),
    (Protocol::Tls, "TLS"),
    (Protocol::Udp, "UDP"),
    (Protocol::Mongo, "Mongo"),
    (Protocol::Redis, "Redis"),
    (Protocol::MySql, "MySQL"),
];

impl Protocol {
    /// True for protocols proxied as HTTP: HTTP, HTTP2, HTTP_PROXY, GRPC, GRPC-Web.
    pub fn is_http(self) -> bool {
        matches!(
            self,
            Protocol::Http
                | Protocol::Http2
                | Protocol::HttpProxy
                | Protocol::Grpc
                | Protocol::GrpcWeb
        )
    }

    /// True for TLS-carrying protocols: HTTPS and TLS.
    pub fn is_tls(self) -> bool {
        matches!(self, Protocol::Https | Protocol::Tls)
    }

    /// True for protocols proxied as opaque TCP streams (TLS included).
    pub fn is_tcp(self) -> bool {
        matches!(
            self,
            Protocol::Tcp
                | Protocol::Https
                | Protocol::Tls
                | Protocol::Mongo
                | Protocol::Redis
                | Protocol::MySql
        )
    }

    /// The canonical spelling, as Istio prints it.
    pub fn as_str(self) -> &'static str {
        NAMES
            .iter()
            .find(|(p, _)| *p == self)
            .map(|(_, n)| *n)
            .expect("every protocol is named")
    }
}

/// An unknown protocol name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unsupported protocol: {0}")]
pub struct UnknownProtocol(pub String);

impl FromStr for Protocol {
    type Err = UnknownProtocol;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        NAMES
            .iter()
            .find(|(_, name)| name.eq_ignore_ascii_case(s))
            .map(|(p, _)| *p)
            .ok_or_else(|| UnknownProtocol(s.to_owned()))
    }
}

impl fmt::Display for Protocol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_case_insensitively_and_classifies() {
        assert_eq!("http".parse(), Ok(Protocol::Http));
        assert_eq!("grpc-web".parse(), Ok(Protocol::GrpcWeb));
        assert_eq!("MYSQL".parse(), Ok(Protocol::MySql));
        assert!("h3".parse::<Protocol>().is_err());
        assert!(Protocol::Grpc.is_http() && !Protocol::Grpc.is_tcp());
        assert!(Protocol::Https.is_tls() && Protocol::Https.is_tcp());
        assert_eq!(Protocol::HttpProxy.to_string(), "HTTP_PROXY");
    }
}
