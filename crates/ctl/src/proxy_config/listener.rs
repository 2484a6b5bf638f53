//! `proxy-config listener`: the dump's listeners, one row per filter chain with what it
//! matches and where it sends traffic (`--verbose`, the default), or one row per
//! listener with its type.

use serde_json::Value;

use super::dump::{self, Dump, Section, field, list, str_field, u64_field};
use super::route::describe_match;
use super::{Filters, Prefix};
use crate::table::Table;

/// The network filter that makes a chain HTTP.
const HTTP_CONNECTION_MANAGER: &str = "envoy.filters.network.http_connection_manager";
/// The network filter that makes a chain TCP.
const TCP_PROXY: &str = "envoy.filters.network.tcp_proxy";
/// Istio's cluster that drops traffic; a TCP proxy to it does not make a listener TCP.
const BLACK_HOLE: &str = "BlackHoleCluster";

/// Istio's ALPN lists, named as istioctl names them.
const KNOWN_ALPNS: [(&str, &[&str]); 4] = [
    (
        "App: HTTP TLS",
        &[
            "http/1.0",
            "http/1.1",
            "h2c",
            "istio-http/1.0",
            "istio-http/1.1",
            "istio-h2",
        ],
    ),
    (
        "App: Istio HTTP Plain",
        &["istio", "istio-http/1.0", "istio-http/1.1", "istio-h2"],
    ),
    ("App: TCP TLS", &["istio-peer-exchange", "istio"]),
    ("App: HTTP", &["http/1.0", "http/1.1", "h2c"]),
];

/// Every active listener (dynamic first, then static) that passes the filters, sorted
/// by port, address and type as istioctl's summary sorts them.
pub(crate) fn selected<'a>(dump: &'a Dump, filters: &Filters) -> anyhow::Result<Vec<&'a Value>> {
    dump.require(Section::Listeners)?;
    let mut listeners = dump.resources(
        Section::Listeners,
        &[
            ("dynamic_listeners", &["active_state", "listener"]),
            ("static_listeners", &["listener"]),
        ],
    );
    if listeners.is_empty() {
        anyhow::bail!("{}: no listeners found", dump.origin());
    }
    listeners.retain(|l| matches(filters, l));
    Ok(listeners)
}

/// istioctl's listener filter: any of the addresses (case-insensitively), the port, the
/// type.
fn matches(filters: &Filters, listener: &Value) -> bool {
    filters.address.as_deref().is_none_or(|want| {
        addresses(listener)
            .iter()
            .any(|a| a.eq_ignore_ascii_case(want))
    }) && filters.port.is_none_or(|p| port(listener) == p)
        && filters
            .listener_type
            .as_deref()
            .is_none_or(|t| listener_type(listener).eq_ignore_ascii_case(t))
}

/// The listener's socket address (or pipe path) and then its additional addresses.
fn addresses(listener: &Value) -> Vec<&str> {
    let address = field(listener, "address");
    let main = address
        .and_then(|a| field(a, "socket_address"))
        .map(|s| str_field(s, "address"))
        .or_else(|| address.and_then(|a| dump::path(a, &["pipe", "path"])?.as_str()))
        .unwrap_or_default();
    let mut all = vec![main];
    all.extend(
        list(listener, "additional_addresses")
            .iter()
            .map(|a| dump::path_str(a, &["address", "socket_address", "address"])),
    );
    all
}

fn port(listener: &Value) -> u32 {
    dump::path(listener, &["address", "socket_address"])
        .map_or(0, |s| u64_field(s, "port_value") as u32)
}

/// The filter chains, the default one last.
fn chains(listener: &Value) -> impl Iterator<Item = &Value> {
    list(listener, "filter_chains")
        .iter()
        .chain(field(listener, "default_filter_chain"))
}

fn filters_of(chain: &Value) -> &[Value] {
    list(chain, "filters")
}

/// A TCP proxy to Istio's black hole, which istioctl does not count as TCP.
fn is_black_hole(filter: &Value) -> bool {
    field(filter, "typed_config").is_some_and(|c| c.to_string().contains(BLACK_HOLE))
}

/// HTTP, TCP, HTTP+TCP or UNKNOWN, by the network filters of all chains.
fn listener_type(listener: &Value) -> &'static str {
    let (mut http, mut tcp) = (false, false);
    for filter in chains(listener).flat_map(filters_of) {
        match str_field(filter, "name") {
            HTTP_CONNECTION_MANAGER => http = true,
            TCP_PROXY if !is_black_hole(filter) => tcp = true,
            _ => {}
        }
    }
    match (http, tcp) {
        (true, false) => "HTTP",
        (true, true) => "HTTP+TCP",
        (false, true) => "TCP",
        (false, false) => "UNKNOWN",
    }
}

/// The listener table: with `verbose`, ADDRESSES, PORT, MATCH, DESTINATION per chain;
/// else ADDRESSES, PORT, TYPE per listener.
pub(crate) fn summary(listeners: &[&Value], verbose: bool, prefix: Prefix) -> String {
    let mut sorted = listeners.to_vec();
    sorted.sort_by(|a, b| {
        (port(a), addresses(a)[0], listener_type(a)).cmp(&(
            port(b),
            addresses(b)[0],
            listener_type(b),
        ))
    });
    let mut header = prefix.header();
    header.extend(["ADDRESSES", "PORT"]);
    header.extend(if verbose {
        &["MATCH", "DESTINATION"][..]
    } else {
        &["TYPE"][..]
    });
    let mut table = Table::new(header).with_padding(1);
    for listener in sorted {
        let mut lead = prefix.cells(&prefix.name("listener", str_field(listener, "name")));
        lead.extend([addresses(listener).join(","), port(listener).to_string()]);
        if !verbose {
            let mut row = lead;
            row.push(listener_type(listener).to_owned());
            table.row(row);
            continue;
        }
        let mut rows: Vec<(String, String)> = chains(listener)
            .map(|chain| {
                (
                    chain_match(field(chain, "filter_chain_match")),
                    destination(chain),
                )
            })
            .collect();
        rows.sort_by(|a, b| b.1.cmp(&a.1));
        for (matched, destination) in rows {
            let mut row = lead.clone();
            row.extend([matched, destination]);
            table.row(row);
        }
    }
    table.render()
}

/// What a chain matches: `SNI: …; Trans: …; App: …; Addr: …`, or `ALL`.
fn chain_match(m: Option<&Value>) -> String {
    let Some(m) = m else {
        return "ALL".into();
    };
    let mut parts = Vec::new();
    let strings = |name| -> Vec<&str> { list(m, name).iter().filter_map(Value::as_str).collect() };
    let server_names = strings("server_names");
    if !server_names.is_empty() {
        parts.push(format!("SNI: {}", server_names.join(",")));
    }
    let transport = str_field(m, "transport_protocol");
    if !transport.is_empty() {
        parts.push(format!("Trans: {transport}"));
    }
    let alpns = strings("application_protocols");
    if !alpns.is_empty() {
        parts.push(
            KNOWN_ALPNS
                .iter()
                .find(|(_, known)| *known == alpns.as_slice())
                .map_or_else(
                    || format!("App: {}", alpns.join(",")),
                    |(name, _)| (*name).to_owned(),
                ),
        );
    }
    let port = field(m, "destination_port")
        .map(|p| format!(":{}", p.as_u64().unwrap_or_default()))
        .unwrap_or_default();
    let ranges = list(m, "prefix_ranges");
    if !ranges.is_empty() {
        let prefixes: Vec<String> = ranges
            .iter()
            .map(|r| {
                format!(
                    "{}/{}",
                    str_field(r, "address_prefix"),
                    u64_field(r, "prefix_len")
                )
            })
            .collect();
        parts.push(format!("Addr: {}{port}", prefixes.join(",")));
    } else if !port.is_empty() {
        parts.push(format!("Addr: *{port}"));
    }
    if parts.is_empty() {
        return "ALL".into();
    }
    parts.join("; ")
}

/// Where a chain sends traffic: its HTTP routes or its TCP cluster.
fn destination(chain: &Value) -> String {
    for filter in filters_of(chain) {
        let config = field(filter, "typed_config").unwrap_or(&Value::Null);
        match str_field(filter, "name") {
            HTTP_CONNECTION_MANAGER => {
                if let Some(routes) = field(config, "route_config") {
                    return describe_route_config(routes);
                }
                let rds = dump::path_str(config, &["rds", "route_config_name"]);
                if !rds.is_empty() {
                    return format!("Route: {rds}");
                }
                return "HTTP".into();
            }
            TCP_PROXY if !is_black_hole(filter) => {
                return cluster_label(str_field(config, "cluster"));
            }
            _ => {}
        }
    }
    "Non-HTTP/Non-TCP".into()
}

/// Istio's own clusters (`PassthroughCluster`…) by name, others as `Cluster: NAME`.
fn cluster_label(cluster: &str) -> String {
    if cluster.contains("Cluster") {
        cluster.to_owned()
    } else {
        format!("Cluster: {cluster}")
    }
}

/// An inline route configuration: the cluster when it sends everything to one, else
/// `Inline Route: ` and each virtual host's domains and matches.
fn describe_route_config(routes: &Value) -> String {
    if let Some(cluster) = match_all_cluster(routes) {
        return cluster_label(cluster);
    }
    let hosts: Vec<String> = list(routes, "virtual_hosts")
        .iter()
        .map(|vh| {
            let matches: Vec<String> = list(vh, "routes")
                .iter()
                .map(|r| describe_match(field(r, "match")))
                .collect();
            let matches = matches.join(", ");
            let domains: Vec<&str> = list(vh, "domains")
                .iter()
                .filter_map(Value::as_str)
                .collect();
            if domains == ["*"] {
                matches
            } else {
                format!("{} {matches}", domains.join("/"))
            }
        })
        .collect();
    format!("Inline Route: {}", hosts.join("; "))
}

/// The cluster of a configuration with one virtual host for `*` whose one route sends
/// prefix `/` to one cluster.
fn match_all_cluster(routes: &Value) -> Option<&str> {
    let [vh] = list(routes, "virtual_hosts") else {
        return None;
    };
    let domains = list(vh, "domains");
    let [route] = list(vh, "routes") else {
        return None;
    };
    let is_all = domains.len() == 1 && domains[0] == "*";
    let prefix = dump::path_str(route, &["match", "prefix"]);
    let cluster = dump::path(route, &["route", "cluster"])?.as_str()?;
    (is_all && prefix == "/").then_some(cluster)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn hcm(config: Value) -> Value {
        json!({"name": HTTP_CONNECTION_MANAGER, "typed_config": config})
    }

    fn tcp(cluster: &str) -> Value {
        json!({"name": TCP_PROXY, "typed_config": {"stat_prefix": cluster, "cluster": cluster}})
    }

    fn sidecar() -> Dump {
        Dump::from_value(
            json!({"configs": [{
                "@type": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump",
                "dynamic_listeners": [
                    {"name": "virtualOutbound", "active_state": {"listener": {
                        "name": "virtualOutbound",
                        "address": {"socket_address": {"address": "0.0.0.0", "port_value": 15001}},
                        "filter_chains": [
                            {"filter_chain_match": {"prefix_ranges": [{"address_prefix": "10.0.0.1", "prefix_len": 32}]},
                             "filters": [tcp("BlackHoleCluster")]},
                            {"filters": [tcp("PassthroughCluster")]}
                        ]}}},
                    {"name": "0.0.0.0_9080", "active_state": {"listener": {
                        "name": "0.0.0.0_9080",
                        "address": {"socket_address": {"address": "0.0.0.0", "port_value": 9080}},
                        "filter_chains": [
                            {"filter_chain_match": {"transport_protocol": "tls", "application_protocols": ["istio-peer-exchange", "istio"]},
                             "filters": [tcp("outbound|9080||reviews.default.svc.cluster.local")]},
                            {"filter_chain_match": {"application_protocols": ["http/1.0", "http/1.1", "h2c"]},
                             "filters": [hcm(json!({"rds": {"route_config_name": "9080"}}))]}
                        ],
                        "default_filter_chain": {"filters": [tcp("PassthroughCluster")]}
                    }}},
                    {"name": "10.0.0.5_3306", "active_state": {"listener": {
                        "name": "10.0.0.5_3306",
                        "address": {"socket_address": {"address": "10.0.0.5", "port_value": 3306}},
                        "additional_addresses": [{"address": {"socket_address": {"address": "fd00::5", "port_value": 3306}}}],
                        "filter_chains": [{"filter_chain_match": {"destination_port": 3306, "server_names": ["db.example.com"]},
                                           "filters": [tcp("outbound|3306||db.example.com")]}]
                    }}}
                ],
                "static_listeners": [{"listener": {
                    "address": {"socket_address": {"address": "0.0.0.0", "port_value": 15021}},
                    "filter_chains": [{"filters": [hcm(json!({"route_config": {"virtual_hosts": [
                        {"name": "backend", "domains": ["*"], "routes": [{"match": {"prefix": "/healthz/ready"}, "route": {"cluster": "agent"}}]}
                    ]}}))]}]
                }}]
            }]}),
            "dump.json",
        )
        .unwrap()
    }

    #[test]
    fn verbose_lists_each_chain_with_its_match_and_destination() {
        let dump = sidecar();
        let listeners = selected(&dump, &Filters::default()).unwrap();
        assert_eq!(
            summary(&listeners, true, Prefix::Off),
            "\
ADDRESSES        PORT  MATCH                             DESTINATION
10.0.0.5,fd00::5 3306  SNI: db.example.com; Addr: *:3306 Cluster: outbound|3306||db.example.com
0.0.0.0          9080  App: HTTP                         Route: 9080
0.0.0.0          9080  ALL                               PassthroughCluster
0.0.0.0          9080  Trans: tls; App: TCP TLS          Cluster: outbound|9080||reviews.default.svc.cluster.local
0.0.0.0          15001 ALL                               PassthroughCluster
0.0.0.0          15001 Addr: 10.0.0.1/32                 Non-HTTP/Non-TCP
0.0.0.0          15021 ALL                               Inline Route: /healthz/ready*
"
        );
    }

    #[test]
    fn short_form_lists_each_listener_with_its_type() {
        let dump = sidecar();
        let listeners = selected(&dump, &Filters::default()).unwrap();
        assert_eq!(
            summary(&listeners, false, Prefix::Off),
            "\
ADDRESSES        PORT  TYPE
10.0.0.5,fd00::5 3306  TCP
0.0.0.0          9080  HTTP+TCP
0.0.0.0          15001 TCP
0.0.0.0          15021 HTTP
"
        );
    }

    #[test]
    fn filters_by_any_address_port_and_type() {
        let dump = sidecar();
        let count = |filters: Filters| selected(&dump, &filters).unwrap().len();
        let by_address = |a: &str| Filters {
            address: Some(a.into()),
            ..Filters::default()
        };
        assert_eq!(count(by_address("FD00::5")), 1);
        assert_eq!(count(by_address("0.0.0.0")), 3);
        assert_eq!(
            count(Filters {
                port: Some(15001),
                listener_type: Some("tcp".into()),
                ..Filters::default()
            }),
            1
        );
        assert_eq!(
            count(Filters {
                listener_type: Some("HTTP".into()),
                ..Filters::default()
            }),
            1
        );
    }

    #[test]
    fn an_inline_route_to_one_cluster_names_the_cluster() {
        let routes = json!({"virtual_hosts": [{"domains": ["*"], "routes": [
            {"match": {"prefix": "/"}, "route": {"cluster": "inbound|8000||"}}]}]});
        assert_eq!(describe_route_config(&routes), "Cluster: inbound|8000||");
        let routes = json!({"virtual_hosts": [
            {"domains": ["a.com", "b.com"], "routes": [{"match": {"path": "/x"}}, {"match": {"prefix": "/"}}]},
            {"domains": ["*"], "routes": [{"match": {"safe_regex": {"regex": "/v[0-9]+"}}}]}]});
        assert_eq!(
            describe_route_config(&routes),
            "Inline Route: a.com/b.com /x, /*; regex /v[0-9]+"
        );
    }
}
