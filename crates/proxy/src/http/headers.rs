//! The headers the proxy itself adds or removes, as Envoy does: hop-by-hop headers
//! stripped, `x-forwarded-for`, `x-forwarded-proto`, `x-request-id`, and the `x-envoy-*`
//! headers Istio users rely on.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use http::header::{self, HeaderMap, HeaderName, HeaderValue};

use super::host_address::host_address;
use crate::config::HttpManager;

/// `x-forwarded-for`.
pub const X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
/// `x-forwarded-proto`.
pub const X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
/// `x-request-id`.
pub const X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
/// `x-envoy-upstream-service-time`: milliseconds the upstream took to answer.
pub const X_ENVOY_UPSTREAM_SERVICE_TIME: HeaderName =
    HeaderName::from_static("x-envoy-upstream-service-time");
/// `x-envoy-expected-rq-timeout-ms`: the route's timeout, told to the upstream.
pub const X_ENVOY_EXPECTED_RQ_TIMEOUT_MS: HeaderName =
    HeaderName::from_static("x-envoy-expected-rq-timeout-ms");
/// `x-envoy-original-path`: the path before a rewrite.
pub const X_ENVOY_ORIGINAL_PATH: HeaderName = HeaderName::from_static("x-envoy-original-path");
/// `x-envoy-original-host`: the authority before a route's host rewrite.
pub const X_ENVOY_ORIGINAL_HOST: HeaderName = HeaderName::from_static("x-envoy-original-host");
/// `x-forwarded-host`: the authorities a request had before proxies rewrote them.
pub const X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");

/// `x-envoy-internal`: the request comes from inside the mesh.
pub const X_ENVOY_INTERNAL: HeaderName = HeaderName::from_static("x-envoy-internal");
/// `x-envoy-external-address`: the client of a request that entered the mesh here.
pub const X_ENVOY_EXTERNAL_ADDRESS: HeaderName =
    HeaderName::from_static("x-envoy-external-address");

/// `x-envoy-*` request headers that steer Envoy (retries, timeouts, tracing), which only a
/// client inside the mesh may send: Envoy removes them from every other request.
static INTERNAL_ONLY: [HeaderName; 14] = [
    HeaderName::from_static("x-envoy-retriable-status-codes"),
    HeaderName::from_static("x-envoy-retriable-header-names"),
    HeaderName::from_static("x-envoy-retry-on"),
    HeaderName::from_static("x-envoy-retry-grpc-on"),
    HeaderName::from_static("x-envoy-max-retries"),
    HeaderName::from_static("x-envoy-upstream-alt-stat-name"),
    HeaderName::from_static("x-envoy-upstream-rq-timeout-ms"),
    HeaderName::from_static("x-envoy-upstream-rq-per-try-timeout-ms"),
    HeaderName::from_static("x-envoy-upstream-rq-timeout-alt-response"),
    X_ENVOY_EXPECTED_RQ_TIMEOUT_MS,
    HeaderName::from_static("x-envoy-force-trace"),
    HeaderName::from_static("x-envoy-ip-tags"),
    HeaderName::from_static("x-envoy-original-url"),
    HeaderName::from_static("x-envoy-hedge-on-per-try-timeout"),
];

/// `x-envoy-*` request headers that describe the request's way through the mesh, which
/// an edge proxy does not take from its clients.
static EDGE_STRIPPED: [HeaderName; 4] = [
    HeaderName::from_static("x-envoy-decorator-operation"),
    HeaderName::from_static("x-envoy-downstream-service-cluster"),
    HeaderName::from_static("x-envoy-downstream-service-node"),
    X_ENVOY_ORIGINAL_PATH,
];

/// Headers that describe one connection, not the request, and never cross a proxy.
static HOP_BY_HOP: [HeaderName; 6] = [
    header::CONNECTION,
    HeaderName::from_static("keep-alive"),
    HeaderName::from_static("proxy-connection"),
    header::TRANSFER_ENCODING,
    header::UPGRADE,
    header::TE,
];

/// Whether a request asks to become a WebSocket (`upgrade: websocket` with
/// `connection: upgrade`).
pub fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    let upgrade = headers
        .get(header::UPGRADE)
        .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"websocket"));
    let connection = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case("upgrade"));
    upgrade && connection
}

/// Sets the headers that carry an upgrade across the proxy (hop-by-hop, so stripped
/// with the others).
pub fn keep_upgrade(headers: &mut HeaderMap, protocol: HeaderValue) {
    headers.insert(header::CONNECTION, HeaderValue::from_static("upgrade"));
    headers.insert(header::UPGRADE, protocol);
}

/// Removes hop-by-hop headers, including those the `connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // Most messages carry none, or `connection` and `keep-alive` alone: one pass over
    // the names finds those present, and only they are removed by hash.
    let mut present = [false; HOP_BY_HOP.len()];
    for name in headers.keys() {
        if let Some(i) = HOP_BY_HOP.iter().position(|h| h == name) {
            present[i] = true;
        }
    }
    if !present.contains(&true) {
        return;
    }
    // Names `connection` lists beyond the usual ones (which go anyway).
    let named: Vec<HeaderName> = headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
        .filter(|name| !HOP_BY_HOP.contains(name))
        .collect();
    for (name, _) in HOP_BY_HOP.iter().zip(present).filter(|(_, p)| *p) {
        headers.remove(name);
    }
    for name in &named {
        headers.remove(name);
    }
}

/// What Envoy's connection manager does to a request's headers before routing it, with
/// `peer` the connection's client, `tls` whether the connection is TLS and `internal_only`
/// the route configuration's `internal_only_headers`:
///
/// - hop-by-hop headers go;
/// - at the edge (`use_remote_address`), the client's address is appended to
///   `x-forwarded-for` (the host's own address for a client on loopback, as Envoy does),
///   `x-forwarded-proto` comes from the connection and `x-envoy-external-address` names
///   the client; elsewhere `x-forwarded-proto` is set only when absent;
/// - a request from an address the config trusts as internal is marked
///   `x-envoy-internal: true`; from any other (every one, by default), the `x-envoy-*`
///   headers that steer proxies and the `internal_only_headers` go;
/// - a request without an `x-request-id`, or any edge request, gets a new one.
///
/// Returns the client's address as the connection manager trusts it (Envoy's
/// downstream remote address, which RBAC's `remote_ip` matches): from
/// `x-forwarded-for` within the trusted hops, else the connection's peer.
pub fn sanitize_request(
    headers: &mut HeaderMap,
    manager: &HttpManager,
    internal_only: &[HeaderName],
    peer: SocketAddr,
    tls: bool,
) -> IpAddr {
    strip_hop_by_hop(headers);
    // Most requests carry no `x-envoy-*` header: look before removing any by hash.
    let envoy_headers = headers
        .keys()
        .any(|name| name.as_str().starts_with("x-envoy-"));
    if envoy_headers {
        headers.remove(X_ENVOY_INTERNAL);
    }
    let forwarding = &manager.forwarding;
    let proto = HeaderValue::from_static(if tls { "https" } else { "http" });
    // The client as far as this proxy can trust `x-forwarded-for`, and whether it is the
    // only address there.
    let (client, single) = if forwarding.use_remote_address {
        let single = !headers.contains_key(&X_FORWARDED_FOR);
        let peer = peer.ip().to_canonical();
        let trusted = match forwarding.xff_num_trusted_hops {
            0 => None,
            hops => last_forwarded_for(headers, hops - 1).map(|(ip, _)| ip),
        };
        if !forwarding.skip_xff_append {
            append_forwarded_for(
                headers,
                if peer.is_loopback() {
                    host_address()
                } else {
                    peer
                },
            );
        }
        if forwarding.xff_num_trusted_hops == 0 || !headers.contains_key(&X_FORWARDED_PROTO) {
            headers.insert(X_FORWARDED_PROTO, proto.clone());
        }
        (Some(trusted.unwrap_or(peer)), single)
    } else {
        match last_forwarded_for(headers, forwarding.xff_num_trusted_hops) {
            Some((ip, single)) => (Some(ip), single),
            None => (None, false),
        }
    };
    if !headers.contains_key(&X_FORWARDED_PROTO) {
        headers.insert(X_FORWARDED_PROTO, proto);
    }
    let internal = single && client.is_some_and(|ip| forwarding.is_internal(ip));
    let edge = forwarding.use_remote_address && !internal;
    if internal {
        headers.insert(X_ENVOY_INTERNAL, HeaderValue::from_static("true"));
    } else {
        if envoy_headers {
            strip_envoy_headers(headers, edge);
        }
        for name in internal_only {
            headers.remove(name);
        }
    }
    if edge
        && let Some(client) = client
        && let Ok(value) = HeaderValue::from_str(&client.to_string())
    {
        headers.insert(X_ENVOY_EXTERNAL_ADDRESS, value);
    }
    let replace_id = edge && !forwarding.preserve_external_request_id;
    if manager.generate_request_id && (replace_id || !headers.contains_key(&X_REQUEST_ID)) {
        headers.insert(X_REQUEST_ID, uuid_v4());
    }
    client.unwrap_or_else(|| peer.ip().to_canonical())
}

/// Removes the internal-only `x-envoy-*` headers (and at the `edge` the edge-stripped
/// ones) that the request carries. Only those present: a request usually carries at most
/// the peer metadata, and each removal by name costs a hash of it.
fn strip_envoy_headers(headers: &mut HeaderMap, edge: bool) {
    let stripped = |name: &HeaderName| {
        name.as_str().starts_with("x-envoy-")
            && (INTERNAL_ONLY.contains(name) || edge && EDGE_STRIPPED.contains(name))
    };
    while let Some(name) = headers.keys().find(|name| stripped(name)).cloned() {
        headers.remove(name);
    }
}

/// The address `skip` entries from the end of `x-forwarded-for`, as Envoy reads it, and
/// whether it is the only one there; `None` when there is no such entry or it is not an
/// IP address.
fn last_forwarded_for(headers: &HeaderMap, skip: u32) -> Option<(IpAddr, bool)> {
    let mut lines = headers.get_all(&X_FORWARDED_FOR).iter();
    let first = lines.next()?.to_str().ok()?;
    // Usually one line: read in place; several are read as one, joined.
    let joined;
    let mut rest = if lines.next().is_none() {
        first
    } else {
        joined = headers
            .get_all(&X_FORWARDED_FOR)
            .iter()
            .map(|v| v.to_str().ok())
            .collect::<Option<Vec<_>>>()?
            .join(",");
        joined.as_str()
    };
    for _ in 0..skip {
        rest = &rest[..rest.rfind(',')?];
    }
    let (last, single) = match rest.rfind(',') {
        Some(comma) => (&rest[comma + 1..], false),
        None => (rest, true),
    };
    let ip: IpAddr = last.trim().parse().ok()?;
    Some((ip.to_canonical(), single))
}

/// Appends `client` to `x-forwarded-for` (every line of it, joined, as Envoy joins them).
fn append_forwarded_for(headers: &mut HeaderMap, client: IpAddr) {
    let mut value = headers
        .get_all(&X_FORWARDED_FOR)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter(|v| !v.is_empty())
        .collect::<Vec<_>>()
        .join(",");
    if !value.is_empty() {
        value.push(',');
    }
    value.push_str(&client.to_canonical().to_string());
    if let Ok(value) = HeaderValue::from_str(&value) {
        headers.insert(X_FORWARDED_FOR, value);
    }
}

/// Records the authority a route's host rewrite replaces, as Envoy does: in
/// `x-envoy-original-host` and, when `append_forwarded_host`, at the end of
/// `x-forwarded-host` (unless it already ends with that host).
pub fn record_original_host(headers: &mut HeaderMap, original: &str, append_forwarded_host: bool) {
    if original.is_empty() {
        return;
    }
    let Ok(value) = HeaderValue::from_str(original) else {
        return;
    };
    headers.insert(X_ENVOY_ORIGINAL_HOST, value.clone());
    if !append_forwarded_host {
        return;
    }
    let forwarded = headers
        .get_all(&X_FORWARDED_HOST)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .collect::<Vec<_>>()
        .join(",");
    let value = if forwarded.is_empty() {
        value
    } else if forwarded.rsplit(',').next().map(str::trim) == Some(original) {
        return;
    } else {
        match HeaderValue::from_str(&format!("{forwarded},{original}")) {
            Ok(value) => value,
            Err(_) => return,
        }
    };
    headers.insert(X_FORWARDED_HOST, value);
}

/// A random UUID, version 4.
pub fn uuid_v4() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let hi = (fastrand::u64(..) & 0xffff_ffff_ffff_0fff) | 0x0000_0000_0000_4000;
    let lo = (fastrand::u64(..) & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000;
    let mut bytes = [0u8; 16];
    bytes[..8].copy_from_slice(&hi.to_be_bytes());
    bytes[8..].copy_from_slice(&lo.to_be_bytes());
    // Written in place, a byte (two digits) at a time: one request, one allocation (the
    // header's own).
    let mut text = [b'-'; 36];
    let mut at = 0;
    for (i, byte) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            at += 1;
        }
        text[at] = HEX[usize::from(byte >> 4)];
        text[at + 1] = HEX[usize::from(byte & 0xf)];
        at += 2;
    }
    HeaderValue::from_bytes(&text).expect("hex digits and dashes")
}

/// A duration in whole milliseconds, as a header value.
pub fn millis(d: Duration) -> HeaderValue {
    HeaderValue::from(d.as_millis() as u64)
}

#[cfg(test)]
mod tests {
    use mizzen_xds::pb::envoy::config::core::v3::CidrRange;
    use mizzen_xds::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
        HttpConnectionManager, HttpFilter, Rds,
        http_connection_manager::{InternalAddressConfig, RouteSpecifier},
    };
    use mizzen_xds::pb::google::protobuf::{BoolValue, UInt32Value};

    use super::*;

    #[test]
    fn hop_by_hop_headers_and_those_connection_names_go() {
        let mut h = HeaderMap::new();
        h.insert(
            header::CONNECTION,
            HeaderValue::from_static("keep-alive, x-secret"),
        );
        h.insert("keep-alive", HeaderValue::from_static("timeout=5"));
        h.insert("x-secret", HeaderValue::from_static("1"));
        h.insert("x-kept", HeaderValue::from_static("1"));
        strip_hop_by_hop(&mut h);
        assert_eq!(h.len(), 1);
        assert!(h.contains_key("x-kept"));
    }

    #[test]
    fn forwarded_for_appends() {
        let mut h = HeaderMap::new();
        append_forwarded_for(&mut h, "10.0.0.1".parse().unwrap());
        append_forwarded_for(&mut h, "::ffff:10.0.0.2".parse().unwrap());
        assert_eq!(h[&X_FORWARDED_FOR], "10.0.0.1,10.0.0.2");
    }

    #[test]
    fn a_rewritten_host_is_recorded_as_envoy_records_it() {
        let recorded = |before: &[&str], append: bool| {
            let mut h = HeaderMap::new();
            for v in before {
                h.append(X_FORWARDED_HOST, HeaderValue::from_str(v).unwrap());
            }
            record_original_host(&mut h, "shop.test", append);
            assert_eq!(h[&X_ENVOY_ORIGINAL_HOST], "shop.test");
            let forwarded: Vec<_> = h.get_all(&X_FORWARDED_HOST).iter().collect();
            forwarded
                .iter()
                .map(|v| v.to_str().unwrap().to_owned())
                .collect::<Vec<_>>()
        };
        assert_eq!(recorded(&[], false), Vec::<String>::new());
        assert_eq!(recorded(&["edge.test"], false), ["edge.test"]);
        assert_eq!(recorded(&[], true), ["shop.test"]);
        assert_eq!(recorded(&["edge.test"], true), ["edge.test,shop.test"]);
        // Not twice in a row; a host that merely ends the same way is another host.
        assert_eq!(recorded(&["a,shop.test"], true), ["a,shop.test"]);
        assert_eq!(recorded(&["myshop.test"], true), ["myshop.test,shop.test"]);
    }

    #[test]
    fn request_ids_are_uuid_v4() {
        let id = uuid_v4();
        let s = id.to_str().unwrap();
        assert_eq!(s.len(), 36);
        assert_eq!(&s[14..15], "4");
        assert!(matches!(&s[19..20], "8" | "9" | "a" | "b"), "{s}");
    }

    /// A connection manager compiled from `hcm` (which needs no routes or filters).
    fn manager(hcm: HttpConnectionManager) -> HttpManager {
        HttpManager::compile(
            &HttpConnectionManager {
                route_specifier: Some(RouteSpecifier::Rds(Rds {
                    route_config_name: "r".to_owned(),
                    ..Rds::default()
                })),
                http_filters: vec![HttpFilter {
                    name: "envoy.filters.http.router".to_owned(),
                    ..HttpFilter::default()
                }],
                ..hcm
            },
            &crate::stats::Stats::default(),
            crate::metrics::ReporterChoice::Outbound,
            crate::trace::Operation::Egress,
        )
        .unwrap()
    }

    fn edge() -> HttpManager {
        manager(HttpConnectionManager {
            use_remote_address: Some(BoolValue { value: true }),
            ..HttpConnectionManager::default()
        })
    }

    fn request(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    const PEER: SocketAddr =
        SocketAddr::new(IpAddr::V4(std::net::Ipv4Addr::new(203, 0, 113, 5)), 40000);

    /// What a client outside the mesh might send to steer proxies.
    const STEERING: [(&str, &str); 5] = [
        ("x-envoy-retry-on", "5xx"),
        ("x-envoy-upstream-rq-timeout-ms", "1"),
        ("x-envoy-internal", "true"),
        ("x-envoy-original-path", "/spoofed"),
        ("x-request-id", "client-id"),
    ];

    #[test]
    fn inside_the_mesh_forwarding_headers_are_kept_and_steering_ones_dropped() {
        let mut h = request(&STEERING);
        h.append("x-forwarded-proto", HeaderValue::from_static("https"));
        h.append("x-secret", HeaderValue::from_static("1"));
        h.append("x-envoy-peer-metadata", HeaderValue::from_static("CgA="));
        let secret = [HeaderName::from_static("x-secret")];
        sanitize_request(
            &mut h,
            &manager(HttpConnectionManager::default()),
            &secret,
            PEER,
            false,
        );
        assert_eq!(h[&X_FORWARDED_PROTO], "https");
        assert!(!h.contains_key(&X_FORWARDED_FOR));
        for gone in [
            "x-envoy-retry-on",
            "x-envoy-upstream-rq-timeout-ms",
            "x-envoy-internal",
            "x-secret",
        ] {
            assert!(!h.contains_key(gone), "{gone}");
        }
        assert_eq!(h[&X_ENVOY_ORIGINAL_PATH], "/spoofed");
        // Istio's metadata exchange reads it after sanitizing.
        assert_eq!(h["x-envoy-peer-metadata"], "CgA=");
        assert_eq!(h[&X_REQUEST_ID], "client-id");
        assert!(!h.contains_key(&X_ENVOY_EXTERNAL_ADDRESS));

        let mut h = HeaderMap::new();
        sanitize_request(
            &mut h,
            &manager(HttpConnectionManager::default()),
            &[],
            PEER,
            true,
        );
        assert_eq!(h[&X_FORWARDED_PROTO], "https");
        assert_eq!(h[&X_REQUEST_ID].len(), 36);
    }

    #[test]
    fn at_the_edge_the_connection_says_who_the_client_is() {
        let mut h = request(&STEERING);
        h.append("x-forwarded-for", HeaderValue::from_static("198.51.100.1"));
        h.append("x-forwarded-proto", HeaderValue::from_static("https"));
        sanitize_request(&mut h, &edge(), &[], PEER, false);
        assert_eq!(h[&X_FORWARDED_FOR], "198.51.100.1,203.0.113.5");
        assert_eq!(h[&X_FORWARDED_PROTO], "http");
        assert_eq!(h[&X_ENVOY_EXTERNAL_ADDRESS], "203.0.113.5");
        for gone in [
            "x-envoy-retry-on",
            "x-envoy-internal",
            "x-envoy-original-path",
        ] {
            assert!(!h.contains_key(gone), "{gone}");
        }
        assert_ne!(
            h[&X_REQUEST_ID], "client-id",
            "an edge request gets its own id"
        );
    }

    #[test]
    fn an_edge_client_on_loopback_is_forwarded_as_the_host() {
        let mut h = HeaderMap::new();
        let peer = SocketAddr::from(([127, 0, 0, 1], 40000));
        sanitize_request(&mut h, &edge(), &[], peer, false);
        assert_eq!(h[&X_FORWARDED_FOR], host_address().to_string().as_str());
        assert_eq!(h[&X_ENVOY_EXTERNAL_ADDRESS], "127.0.0.1");
    }

    #[test]
    fn trusted_hops_and_internal_addresses_are_honoured() {
        let trusting = manager(HttpConnectionManager {
            use_remote_address: Some(BoolValue { value: true }),
            xff_num_trusted_hops: 1,
            preserve_external_request_id: true,
            ..HttpConnectionManager::default()
        });
        let mut h = request(&[
            ("x-forwarded-for", "198.51.100.7"),
            ("x-forwarded-proto", "https"),
            ("x-request-id", "kept"),
        ]);
        sanitize_request(&mut h, &trusting, &[], PEER, false);
        assert_eq!(h[&X_ENVOY_EXTERNAL_ADDRESS], "198.51.100.7");
        assert_eq!(h[&X_FORWARDED_PROTO], "https");
        assert_eq!(h[&X_REQUEST_ID], "kept");

        let internal = manager(HttpConnectionManager {
            use_remote_address: Some(BoolValue { value: true }),
            internal_address_config: Some(InternalAddressConfig {
                cidr_ranges: vec![CidrRange {
                    address_prefix: "203.0.113.0".to_owned(),
                    prefix_len: Some(UInt32Value { value: 24 }),
                }],
                ..InternalAddressConfig::default()
            }),
            ..HttpConnectionManager::default()
        });
        let mut h = request(&STEERING);
        sanitize_request(&mut h, &internal, &[], PEER, false);
        assert_eq!(h[&X_ENVOY_INTERNAL], "true");
        assert_eq!(h["x-envoy-retry-on"], "5xx");
        assert!(!h.contains_key(&X_ENVOY_EXTERNAL_ADDRESS));
    }

    #[test]
    fn the_trusted_address_is_read_from_the_end_of_x_forwarded_for() {
        let h = request(&[
            ("x-forwarded-for", "10.0.0.1, 10.0.0.2"),
            ("x-forwarded-for", "10.0.0.3"),
        ]);
        let ip = |s: &str| s.parse::<IpAddr>().unwrap();
        assert_eq!(last_forwarded_for(&h, 0), Some((ip("10.0.0.3"), false)));
        assert_eq!(last_forwarded_for(&h, 2), Some((ip("10.0.0.1"), true)));
        assert_eq!(last_forwarded_for(&h, 3), None);
        assert_eq!(
            last_forwarded_for(&request(&[("x-forwarded-for", "junk")]), 0),
            None
        );
    }
}
