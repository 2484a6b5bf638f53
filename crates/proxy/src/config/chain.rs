//! Filter chain matching, as Envoy narrows a listener's chains for a connection:
//! destination port, destination IP (longest prefix), server name (exact, then longest
//! wildcard), transport protocol, application protocol, source type, source IP (longest
//! prefix), source port. At each step the chains that match most specifically stay;
//! chains that leave the criterion empty stay only when none names it.

use std::net::{IpAddr, SocketAddr};

use mizzen_xds::pb::envoy::config::core::v3::CidrRange;
use mizzen_xds::pb::envoy::config::listener::v3::{FilterChainMatch, filter_chain_match};

use smallvec::SmallVec;

use super::cidr::Cidr;

/// What is known of a connection when its chain is chosen.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionInfo<'a> {
    /// Where the client meant to connect (the original destination when redirected).
    pub destination: SocketAddr,
    /// Where it comes from.
    pub source: SocketAddr,
    /// The TLS server name, when a TLS inspector read one.
    pub server_name: Option<&'a str>,
    /// `tls` or `raw_buffer`.
    pub transport_protocol: &'a str,
    /// ALPN offered by the client, or the HTTP version the HTTP inspector saw.
    pub application_protocols: &'a [&'a str],
}

/// One chain's criteria, compiled.
#[derive(Debug, Clone, Default)]
pub struct ChainMatch {
    destination_port: Option<u16>,
    prefix_ranges: Vec<Cidr>,
    server_names: Vec<String>,
    transport_protocol: Option<String>,
    application_protocols: Vec<String>,
    source_type: SourceType,
    source_prefix_ranges: Vec<Cidr>,
    source_ports: Vec<u16>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum SourceType {
    #[default]
    Any,
    Local,
    External,
}

impl ChainMatch {
    /// Compiles a `filter_chain_match`; errors name the field.
    pub fn compile(m: &FilterChainMatch) -> Result<ChainMatch, (String, String)> {
        let field = |f: &str, r: String| (format!("filter_chain_match.{f}"), r);
        let cidrs = |ranges: &[CidrRange], f: &str| {
            ranges
                .iter()
                .map(Cidr::parse)
                .collect::<Result<Vec<_>, _>>()
                .map_err(|r| field(f, r))
        };
        if !m.direct_source_prefix_ranges.is_empty() {
            return Err(field(
                "direct_source_prefix_ranges",
                "is not supported".into(),
            ));
        }
        let destination_port = m
            .destination_port
            .map(|p| {
                u16::try_from(p.value)
                    .map_err(|_| field("destination_port", format!("{} is out of range", p.value)))
            })
            .transpose()?;
        let source_ports = m
            .source_ports
            .iter()
            .map(|p| {
                u16::try_from(*p).map_err(|_| field("source_ports", format!("{p} is out of range")))
            })
            .collect::<Result<_, _>>()?;
        let source_type = match filter_chain_match::ConnectionSourceType::try_from(m.source_type) {
            Ok(filter_chain_match::ConnectionSourceType::Any) => SourceType::Any,
            Ok(filter_chain_match::ConnectionSourceType::SameIpOrLoopback) => SourceType::Local,
            Ok(filter_chain_match::ConnectionSourceType::External) => SourceType::External,
            Err(_) => {
                return Err(field(
                    "source_type",
                    format!("unknown value {}", m.source_type),
                ));
            }
        };
        Ok(ChainMatch {
            destination_port,
            prefix_ranges: cidrs(&m.prefix_ranges, "prefix_ranges")?,
            server_names: m
                .server_names
                .iter()
                .map(|s| s.to_ascii_lowercase())
                .collect(),
            transport_protocol: Some(m.transport_protocol.clone()).filter(|t| !t.is_empty()),
            application_protocols: m.application_protocols.clone(),
            source_type,
            source_prefix_ranges: cidrs(&m.source_prefix_ranges, "source_prefix_ranges")?,
            source_ports,
        })
    }

    /// True when a chain needs the TLS inspector to be chosen.
    pub fn needs_tls_inspection(&self) -> bool {
        !self.server_names.is_empty()
            || self.transport_protocol.as_deref() == Some("tls")
            || !self.application_protocols.is_empty()
    }
}

/// The index of the chain `conn` selects among `chains` (each matching on
/// `criteria(chain)`), if any (else the listener's default chain applies). Runs once
/// per connection: no allocation unless a listener has more chains than fit inline.
pub(crate) fn select<T>(
    chains: &[T],
    criteria: impl Fn(&T) -> &ChainMatch,
    conn: &ConnectionInfo<'_>,
) -> Option<usize> {
    let mut candidates: Candidates = (0..chains.len()).collect();
    // Each step scores candidates: None = excluded, Some(0) = criterion empty (wildcard),
    // higher = more specific. Those with the best score stay.
    let steps: [&Score<'_>; 7] = [
        &|m| match m.destination_port {
            None => Some(0),
            Some(p) => (p == conn.destination.port()).then_some(1),
        },
        &|m| longest_prefix(&m.prefix_ranges, conn.destination.ip()),
        &|m| server_name_score(&m.server_names, conn.server_name),
        &|m| match &m.transport_protocol {
            None => Some(0),
            Some(t) => (t == conn.transport_protocol).then_some(1),
        },
        &|m| {
            if m.application_protocols.is_empty() {
                Some(0)
            } else {
                let offered = |p: &String| conn.application_protocols.contains(&p.as_str());
                m.application_protocols.iter().any(offered).then_some(1)
            }
        },
        &|m| match m.source_type {
            SourceType::Any => Some(0),
            SourceType::Local => is_local(conn).then_some(1),
            SourceType::External => (!is_local(conn)).then_some(1),
        },
        &|m| longest_prefix(&m.source_prefix_ranges, conn.source.ip()),
    ];
    for step in steps {
        narrow(&mut candidates, |i| step(criteria(&chains[i])));
    }
    narrow(&mut candidates, |i| {
        let ports = &criteria(&chains[i]).source_ports;
        if ports.is_empty() {
            Some(0)
        } else {
            ports.contains(&conn.source.port()).then_some(1)
        }
    });
    candidates.first().copied()
}

/// How well a chain's criterion fits the connection: None excludes it.
type Score<'a> = dyn Fn(&ChainMatch) -> Option<u32> + 'a;

/// The chains still in the running, inline for listeners of up to 32 chains (Istio's
/// inbound listener has a few per port).
type Candidates = SmallVec<[usize; 32]>;

/// Keeps the candidates with the best score.
fn narrow(candidates: &mut Candidates, score: impl Fn(usize) -> Option<u32>) {
    let best = candidates.iter().filter_map(|&i| score(i)).max();
    match best {
        Some(best) => candidates.retain(|i| score(*i) == Some(best)),
        None => candidates.clear(),
    }
}

/// 0 for no ranges (wildcard), 1 + the longest matching prefix, or None.
fn longest_prefix(ranges: &[Cidr], ip: IpAddr) -> Option<u32> {
    if ranges.is_empty() {
        return Some(0);
    }
    let ip = match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    };
    ranges
        .iter()
        .filter(|c| c.contains(ip))
        .map(|c| 1 + u32::from(c.len()))
        .max()
}

/// Exact names beat wildcards, longer wildcards beat shorter ones.
fn server_name_score(names: &[String], sni: Option<&str>) -> Option<u32> {
    if names.is_empty() {
        return Some(0);
    }
    // Names are lowercased at config time; the SNI is compared without copying it.
    let sni = sni?.as_bytes();
    names
        .iter()
        .filter_map(|name| {
            if sni.eq_ignore_ascii_case(name.as_bytes()) {
                Some(u32::MAX)
            } else {
                let suffix = name.strip_prefix('*')?.as_bytes();
                let tail = sni.len().checked_sub(suffix.len()).map(|at| &sni[at..])?;
                tail.eq_ignore_ascii_case(suffix)
                    .then_some(1 + suffix.len() as u32)
            }
        })
        .max()
}

fn is_local(conn: &ConnectionInfo<'_>) -> bool {
    conn.source.ip().is_loopback() || conn.source.ip() == conn.destination.ip()
}

#[cfg(test)]
mod tests {
    use super::*;
    use mizzen_xds::pb::google::protobuf::UInt32Value;

    fn cidr(prefix: &str, len: u32) -> CidrRange {
        CidrRange {
            address_prefix: prefix.into(),
            prefix_len: Some(UInt32Value { value: len }),
        }
    }

    fn conn<'a>(
        dst: &str,
        sni: Option<&'a str>,
        transport: &'a str,
        alpn: &'a [&'a str],
    ) -> ConnectionInfo<'a> {
        ConnectionInfo {
            destination: dst.parse().unwrap(),
            source: "10.1.1.1:40000".parse().unwrap(),
            server_name: sni,
            transport_protocol: transport,
            application_protocols: alpn,
        }
    }

    fn compile(matches: &[FilterChainMatch]) -> Vec<ChainMatch> {
        matches
            .iter()
            .map(|m| ChainMatch::compile(m).unwrap())
            .collect()
    }

    fn pick(chains: &[ChainMatch], c: &ConnectionInfo<'_>) -> Option<usize> {
        select(chains, |m| m, c)
    }

    #[test]
    fn port_then_longest_prefix_wins() {
        let chains = compile(&[
            FilterChainMatch::default(),
            FilterChainMatch {
                destination_port: Some(UInt32Value { value: 9080 }),
                ..Default::default()
            },
            FilterChainMatch {
                destination_port: Some(UInt32Value { value: 9080 }),
                prefix_ranges: vec![cidr("10.0.0.0", 8)],
                ..Default::default()
            },
            FilterChainMatch {
                destination_port: Some(UInt32Value { value: 9080 }),
                prefix_ranges: vec![cidr("10.1.0.0", 16)],
                ..Default::default()
            },
        ]);
        assert_eq!(
            pick(&chains, &conn("10.1.2.3:9080", None, "raw_buffer", &[])),
            Some(3)
        );
        assert_eq!(
            pick(&chains, &conn("10.2.2.3:9080", None, "raw_buffer", &[])),
            Some(2)
        );
        assert_eq!(
            pick(&chains, &conn("192.168.0.1:9080", None, "raw_buffer", &[])),
            Some(1)
        );
        assert_eq!(
            pick(&chains, &conn("10.1.2.3:80", None, "raw_buffer", &[])),
            Some(0)
        );
    }

    #[test]
    fn server_names_exact_then_wildcard_then_none() {
        let names = |n: &[&str]| FilterChainMatch {
            server_names: n.iter().map(|s| s.to_string()).collect(),
            transport_protocol: "tls".into(),
            ..Default::default()
        };
        let chains = compile(&[
            names(&[]),
            names(&["*.example.com"]),
            names(&["api.example.com"]),
        ]);
        let tls = |sni| conn("1.1.1.1:443", Some(sni), "tls", &[]);
        assert_eq!(pick(&chains, &tls("api.example.com")), Some(2));
        assert_eq!(pick(&chains, &tls("www.example.com")), Some(1));
        assert_eq!(pick(&chains, &tls("other.org")), Some(0));
        // Server names compare case-insensitively, as DNS names do.
        assert_eq!(pick(&chains, &tls("API.Example.com")), Some(2));
        assert_eq!(pick(&chains, &tls("WWW.EXAMPLE.COM")), Some(1));
        // A name shorter than the wildcard's suffix is not under it.
        assert_eq!(pick(&chains, &tls("example.com")), Some(0));
        assert_eq!(
            pick(&chains, &conn("1.1.1.1:443", None, "raw_buffer", &[])),
            None
        );
    }

    #[test]
    fn istio_inbound_protocol_split() {
        // virtualInbound: HTTP chains by ALPN from the HTTP inspector, TCP otherwise.
        let chains = compile(&[
            FilterChainMatch {
                destination_port: Some(UInt32Value { value: 9080 }),
                transport_protocol: "raw_buffer".into(),
                application_protocols: vec!["http/1.1".into(), "h2c".into()],
                ..Default::default()
            },
            FilterChainMatch {
                destination_port: Some(UInt32Value { value: 9080 }),
                transport_protocol: "raw_buffer".into(),
                ..Default::default()
            },
        ]);
        assert_eq!(
            pick(
                &chains,
                &conn("10.0.0.1:9080", None, "raw_buffer", &["http/1.1"])
            ),
            Some(0)
        );
        assert_eq!(
            pick(&chains, &conn("10.0.0.1:9080", None, "raw_buffer", &[])),
            Some(1)
        );
    }

    #[test]
    fn bad_ranges_name_the_field() {
        let m = FilterChainMatch {
            prefix_ranges: vec![cidr("10.0.0.0", 40)],
            ..Default::default()
        };
        let (field, reason) = ChainMatch::compile(&m).unwrap_err();
        assert_eq!(field, "filter_chain_match.prefix_ranges");
        assert!(reason.contains("40"), "{reason}");
    }
}
