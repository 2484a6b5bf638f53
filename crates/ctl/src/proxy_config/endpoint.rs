//! `proxy-config endpoint`: endpoints as the proxy was told them (the dump's EDS
//! section: NAME, STATUS, LOCALITY, CLUSTER, as istioctl prints EDS), or as the proxy
//! sees them (`/clusters`: ENDPOINT, STATUS, OUTLIER CHECK, CLUSTER, as istioctl's
//! `endpoint` prints them). `/clusters` is read in Envoy's JSON form or its text form.

use serde_json::{Value, json};

use super::cluster::SubsetKey;
use super::dump::{self, Dump, Section, bool_field, field, list, str_field, u64_field};
use super::{Filters, Prefix};
use crate::table::Table;

/// The EDS assignments with at least one endpoint passing the filters, holding only
/// those endpoints, sorted by cluster as the cluster table is.
pub(crate) fn assignments(dump: &Dump, filters: &Filters) -> Vec<Value> {
    let mut kept: Vec<Value> = dump
        .resources(
            Section::Endpoints,
            &[
                ("dynamic_endpoint_configs", &["endpoint_config"]),
                ("static_endpoint_configs", &["endpoint_config"]),
            ],
        )
        .into_iter()
        .filter_map(|cla| {
            let cluster = str_field(cla, "cluster_name");
            let mut cla = cla.clone();
            let mut count = 0;
            for locality in endpoints_mut(&mut cla).filter_map(Value::as_object_mut) {
                let key = if locality.contains_key("lb_endpoints") {
                    "lb_endpoints"
                } else {
                    "lbEndpoints"
                };
                if let Some(Value::Array(lb)) = locality.get_mut(key) {
                    lb.retain(|ep| eds_matches(filters, ep, cluster));
                    count += lb.len();
                }
            }
            (count > 0).then_some(cla)
        })
        .collect();
    kept.sort_by(|a, b| {
        SubsetKey::of(str_field(a, "cluster_name"))
            .cmp(&SubsetKey::of(str_field(b, "cluster_name")))
    });
    kept
}

fn endpoints_mut(cla: &mut Value) -> impl Iterator<Item = &mut Value> {
    cla.get_mut("endpoints")
        .and_then(Value::as_array_mut)
        .into_iter()
        .flatten()
}

/// An EDS endpoint's address: `ip:port`, a pipe's path, or Envoy's internal address
/// `envoy://listener/id`.
fn eds_address(lb_endpoint: &Value) -> String {
    let Some(address) = dump::path(lb_endpoint, &["endpoint", "address"]) else {
        return String::new();
    };
    if let Some(socket) = field(address, "socket_address") {
        return format!(
            "{}:{}",
            str_field(socket, "address"),
            u64_field(socket, "port_value")
        );
    }
    if let Some(pipe) = field(address, "pipe") {
        return str_field(pipe, "path").to_owned();
    }
    if let Some(internal) = field(address, "envoy_internal_address") {
        return format!(
            "envoy://{}/{}",
            str_field(internal, "server_listener_name"),
            str_field(internal, "endpoint_id")
        );
    }
    String::new()
}

fn eds_port(lb_endpoint: &Value) -> u32 {
    dump::path(lb_endpoint, &["endpoint", "address", "socket_address"])
        .map_or(0, |s| u64_field(s, "port_value") as u32)
}

/// An EDS health status; proto3 leaves out the default, `UNKNOWN`.
fn eds_status(lb_endpoint: &Value) -> &str {
    match str_field(lb_endpoint, "health_status") {
        "" => "UNKNOWN",
        s => s,
    }
}

/// The endpoint filter on EDS: the address matches the bare IP or `ip:port` (istioctl
/// compares `ip:port` only, so a bare IP never matched there).
fn eds_matches(filters: &Filters, lb_endpoint: &Value, cluster: &str) -> bool {
    let address = eds_address(lb_endpoint);
    let ip = address
        .rsplit_once(':')
        .map_or(address.as_str(), |(ip, _)| ip);
    common_matches(
        filters,
        cluster,
        eds_status(lb_endpoint),
        eds_port(lb_endpoint),
    ) && filters
        .address
        .as_deref()
        .is_none_or(|want| want.eq_ignore_ascii_case(&address) || want.eq_ignore_ascii_case(ip))
}

/// The cluster (case-insensitively), status (likewise) and port filters.
fn common_matches(filters: &Filters, cluster: &str, status: &str, port: u32) -> bool {
    filters
        .cluster
        .as_deref()
        .is_none_or(|c| c.eq_ignore_ascii_case(cluster))
        && filters
            .status
            .as_deref()
            .is_none_or(|s| s.eq_ignore_ascii_case(status))
        && filters.port.is_none_or(|p| p == port)
}

/// The EDS table: NAME, STATUS, LOCALITY, CLUSTER.
pub(crate) fn eds_summary(assignments: &[Value], prefix: Prefix) -> String {
    let mut table = Table::new(["NAME", "STATUS", "LOCALITY", "CLUSTER"]);
    for cla in assignments {
        let cluster = str_field(cla, "cluster_name");
        for locality in list(cla, "endpoints") {
            let place = describe_locality(field(locality, "locality"));
            for ep in list(locality, "lb_endpoints") {
                table.row([
                    prefix.name("endpoint", &eds_address(ep)),
                    eds_status(ep).to_owned(),
                    place.clone(),
                    cluster.to_owned(),
                ]);
            }
        }
    }
    table.render()
}

/// `region/zone/sub_zone`, stopping at the first empty part.
fn describe_locality(locality: Option<&Value>) -> String {
    let Some(l) = locality else {
        return String::new();
    };
    let parts = [
        str_field(l, "region"),
        str_field(l, "zone"),
        str_field(l, "sub_zone"),
    ];
    let mut out = parts[0].to_owned();
    for part in &parts[1..] {
        if part.is_empty() {
            break;
        }
        out.push('/');
        out.push_str(part);
    }
    out
}

/// `/clusters` as Envoy's JSON form (`{"cluster_statuses": [...]}`), converting the
/// text form (`cluster::host::stat::value` lines) into it.
pub(crate) fn host_statuses(body: &str, origin: &str) -> anyhow::Result<Value> {
    if body.trim_start().starts_with('{') {
        let value: Value = serde_json::from_str(body)
            .map_err(|e| anyhow::anyhow!("{origin}: not valid JSON: {e}"))?;
        // Envoy leaves an empty list out, so `{}` is a proxy without clusters.
        anyhow::ensure!(
            value.as_object().is_some_and(|o| o
                .keys()
                .all(|k| k == "cluster_statuses" || k == "clusterStatuses")),
            "{origin}: neither a config dump (no \"configs\") nor Envoy's /clusters (no \"cluster_statuses\")"
        );
        return Ok(value);
    }
    from_text(body, origin)
}

/// Envoy's text `/clusters` in the JSON form's shape, hosts in order of appearance.
fn from_text(body: &str, origin: &str) -> anyhow::Result<Value> {
    let mut clusters: Vec<(String, Vec<(String, Value)>)> = Vec::new();
    for (n, line) in body
        .lines()
        .enumerate()
        .filter(|(_, l)| !l.trim().is_empty())
    {
        let parsed = line.split_once("::").and_then(|(cluster, rest)| {
            let (rest, value) = rest.rsplit_once("::")?;
            Some((cluster, rest, value))
        });
        let Some((cluster, rest, value)) = parsed else {
            anyhow::bail!(
                "{origin}: line {}: not a `cluster::host::stat::value` line: {line:?}",
                n + 1
            );
        };
        if clusters.last().is_none_or(|(name, _)| name != cluster) {
            clusters.push((cluster.to_owned(), Vec::new()));
        }
        let hosts = &mut clusters.last_mut().expect("pushed above").1;
        // Cluster-wide facts (`added_via_api::true`) have no host part.
        let Some((host, stat)) = rest.rsplit_once("::") else {
            continue;
        };
        if hosts.last().is_none_or(|(h, _)| h != host) {
            hosts.push((host.to_owned(), json!({"address": text_address(host)})));
        }
        let status = &mut hosts.last_mut().expect("pushed above").1;
        match stat {
            "health_flags" => status["health_status"] = text_health(value),
            "weight" => status["weight"] = value.parse::<u64>().map_or(json!(value), |w| json!(w)),
            "region" | "zone" | "sub_zone" if !value.is_empty() => {
                status["locality"][stat] = json!(value);
            }
            _ => {}
        }
    }
    let statuses: Vec<Value> = clusters
        .into_iter()
        .map(|(name, hosts)| {
            json!({
                "name": name,
                "host_statuses": hosts.into_iter().map(|(_, s)| s).collect::<Vec<_>>(),
            })
        })
        .collect();
    Ok(json!({ "cluster_statuses": statuses }))
}

/// `10.0.0.1:9080`, `[fd00::1]:80` or `unix://path` as an Envoy address.
fn text_address(host: &str) -> Value {
    if let Some(path) = host.strip_prefix("unix://") {
        return json!({"pipe": {"path": path}});
    }
    match host.rsplit_once(':') {
        Some((ip, port)) if port.parse::<u32>().is_ok() => json!({"socket_address": {
            "address": ip.trim_start_matches('[').trim_end_matches(']'),
            "port_value": port.parse::<u32>().unwrap_or_default(),
        }}),
        _ => json!({"socket_address": {"address": host}}),
    }
}

/// The text form's `health_flags` (`healthy`, `/failed_outlier_check/failed_eds_health`)
/// as the JSON form's `health_status`, the way Envoy derives one from the other.
fn text_health(flags: &str) -> Value {
    let eds = if flags.contains("/failed_eds_health") {
        "UNHEALTHY"
    } else if flags.contains("/degraded_eds_health") {
        "DEGRADED"
    } else if flags.contains("/eds_status_draining") {
        "DRAINING"
    } else {
        "HEALTHY"
    };
    let mut status = json!({"eds_health_status": eds});
    if flags.contains("/failed_outlier_check") {
        status["failed_outlier_check"] = json!(true);
    }
    status
}

/// A host of `/clusters`, as the table shows it.
struct Host<'a> {
    address: String,
    port: u32,
    status: &'a str,
    outlier_failed: bool,
    cluster: &'a str,
}

impl<'a> Host<'a> {
    fn of(host: &'a Value, cluster: &'a str) -> Self {
        let address = field(host, "address");
        let socket = address.and_then(|a| field(a, "socket_address"));
        let (address, port) = match socket {
            Some(s) => (
                str_field(s, "address").to_owned(),
                u64_field(s, "port_value") as u32,
            ),
            None => (
                format!(
                    "unix://{}",
                    address.map_or("", |a| dump::path_str(a, &["pipe", "path"]))
                ),
                0,
            ),
        };
        let health = field(host, "health_status").unwrap_or(&Value::Null);
        let status = match str_field(health, "eds_health_status") {
            "" => "UNKNOWN",
            s => s,
        };
        Self {
            address,
            port,
            status,
            outlier_failed: bool_field(health, "failed_outlier_check"),
            cluster,
        }
    }

    fn matches(&self, filters: &Filters) -> bool {
        common_matches(filters, self.cluster, self.status, self.port)
            && filters
                .address
                .as_deref()
                .is_none_or(|a| a.eq_ignore_ascii_case(&self.address))
    }
}

fn clusters_of(statuses: &Value) -> &[Value] {
    list(statuses, "cluster_statuses")
}

/// The `/clusters` entries with at least one host passing the filters, whole.
pub(crate) fn selected_statuses<'a>(statuses: &'a Value, filters: &Filters) -> Vec<&'a Value> {
    clusters_of(statuses)
        .iter()
        .filter(|c| {
            let name = str_field(c, "name");
            list(c, "host_statuses")
                .iter()
                .any(|h| Host::of(h, name).matches(filters))
        })
        .collect()
}

/// The `/clusters` table: ENDPOINT, STATUS, OUTLIER CHECK, CLUSTER, sorted by address,
/// port and cluster.
pub(crate) fn hosts_summary(statuses: &Value, filters: &Filters) -> String {
    let mut hosts: Vec<Host> = clusters_of(statuses)
        .iter()
        .flat_map(|c| {
            let name = str_field(c, "name");
            list(c, "host_statuses")
                .iter()
                .map(move |h| Host::of(h, name))
        })
        .filter(|h| h.matches(filters))
        .collect();
    hosts.sort_by(|a, b| (&a.address, a.port, a.cluster).cmp(&(&b.address, b.port, b.cluster)));
    let mut table = Table::new(["ENDPOINT", "STATUS", "OUTLIER CHECK", "CLUSTER"]);
    for h in hosts {
        let endpoint = if h.port == 0 {
            h.address.clone()
        } else {
            format!("{}:{}", h.address, h.port)
        };
        let outlier = if h.outlier_failed { "FAILED" } else { "OK" };
        table.row([
            endpoint,
            h.status.to_owned(),
            outlier.to_owned(),
            h.cluster.to_owned(),
        ]);
    }
    table.render()
}

#[cfg(test)]
mod tests {
    use super::*;

    const TEXT: &str = "\
outbound|9080||reviews.default.svc.cluster.local::observability_name::outbound|9080||reviews.default.svc.cluster.local
outbound|9080||reviews.default.svc.cluster.local::added_via_api::true
outbound|9080||reviews.default.svc.cluster.local::10.0.0.7:9080::weight::1
outbound|9080||reviews.default.svc.cluster.local::10.0.0.7:9080::health_flags::healthy
outbound|9080||reviews.default.svc.cluster.local::10.0.0.7:9080::region::us-east1
outbound|9080||reviews.default.svc.cluster.local::[fd00::6]:9080::health_flags::/failed_outlier_check/failed_eds_health
agent::observability_name::agent
agent::127.0.0.1:15020::health_flags::healthy
";

    #[test]
    fn reads_the_text_form_of_clusters_like_the_json_form() {
        let statuses = host_statuses(TEXT, "admin").unwrap();
        assert_eq!(
            hosts_summary(&statuses, &Filters::default()),
            "\
ENDPOINT            STATUS        OUTLIER CHECK     CLUSTER
10.0.0.7:9080       HEALTHY       OK                outbound|9080||reviews.default.svc.cluster.local
127.0.0.1:15020     HEALTHY       OK                agent
fd00::6:9080        UNHEALTHY     FAILED            outbound|9080||reviews.default.svc.cluster.local
"
        );
        assert_eq!(
            statuses["cluster_statuses"][0]["host_statuses"][0],
            json!({"address": {"socket_address": {"address": "10.0.0.7", "port_value": 9080}},
                   "weight": 1, "health_status": {"eds_health_status": "HEALTHY"},
                   "locality": {"region": "us-east1"}})
        );
    }

    #[test]
    fn filters_hosts_by_address_port_cluster_and_status() {
        let statuses = host_statuses(TEXT, "admin").unwrap();
        let rows = |filters: Filters| hosts_summary(&statuses, &filters).lines().count() - 1;
        assert_eq!(
            rows(Filters {
                status: Some("unhealthy".into()),
                ..Filters::default()
            }),
            1
        );
        assert_eq!(
            rows(Filters {
                address: Some("127.0.0.1".into()),
                port: Some(15020),
                cluster: Some("AGENT".into()),
                ..Filters::default()
            }),
            1
        );
        assert_eq!(
            selected_statuses(
                &statuses,
                &Filters {
                    port: Some(9080),
                    ..Filters::default()
                }
            )
            .len(),
            1
        );
    }

    #[test]
    fn a_malformed_text_line_is_reported_with_its_number() {
        let err =
            host_statuses("agent::observability_name::agent\nnonsense\n", "admin").unwrap_err();
        assert_eq!(
            err.to_string(),
            "admin: line 2: not a `cluster::host::stat::value` line: \"nonsense\""
        );
    }

    #[test]
    fn eds_rows_show_locality_and_any_address_kind() {
        let dump = Dump::from_value(
            json!({"configs": [{
                "@type": "type.googleapis.com/envoy.admin.v3.EndpointsConfigDump",
                "dynamic_endpoint_configs": [{"endpoint_config": {
                    "cluster_name": "outbound|9080||reviews.default.svc.cluster.local",
                    "endpoints": [{"locality": {"region": "us", "zone": "us-east1-b"},
                        "lb_endpoints": [
                            {"endpoint": {"address": {"socket_address": {"address": "10.0.0.7", "port_value": 9080}}}, "health_status": "HEALTHY"},
                            {"endpoint": {"address": {"envoy_internal_address": {"server_listener_name": "connect_originate", "endpoint_id": "10.0.0.8:9080"}}}}
                        ]}]}}],
                "static_endpoint_configs": [{"endpoint_config": {"cluster_name": "sds-grpc", "endpoints": [{"lb_endpoints": [
                    {"endpoint": {"address": {"pipe": {"path": "./etc/istio/proxy/SDS"}}}, "health_status": "HEALTHY"}]}]}},
                    {"endpoint_config": {"cluster_name": "zipkin"}}]
            }]}),
            "dump.json",
        )
        .unwrap();
        let all = assignments(&dump, &Filters::default());
        assert_eq!(
            eds_summary(&all, Prefix::Off),
            "\
NAME                                        STATUS      LOCALITY          CLUSTER
10.0.0.7:9080                               HEALTHY     us/us-east1-b     outbound|9080||reviews.default.svc.cluster.local
envoy://connect_originate/10.0.0.8:9080     UNKNOWN     us/us-east1-b     outbound|9080||reviews.default.svc.cluster.local
./etc/istio/proxy/SDS                       HEALTHY                       sds-grpc
"
        );
        let by_ip = assignments(
            &dump,
            &Filters {
                address: Some("10.0.0.7".into()),
                ..Filters::default()
            },
        );
        assert_eq!(by_ip.len(), 1);
        assert_eq!(
            by_ip[0]["endpoints"][0]["lb_endpoints"]
                .as_array()
                .unwrap()
                .len(),
            1
        );
    }
}
