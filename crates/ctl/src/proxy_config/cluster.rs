//! `proxy-config cluster`: the dump's clusters, one row per cluster, named by Istio's
//! `direction|port|subset|host` key when the name is one.

use serde_json::Value;

use super::dump::{self, Dump, Section, str_field};
use super::{Filters, Prefix};
use crate::table::Table;

/// The parts of an Istio cluster name `direction|port|subset|host`.
#[derive(Debug, Default, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct SubsetKey<'a> {
    /// The host (or the whole name, when it is not a subset key); sorted on first.
    pub(crate) host: &'a str,
    /// The subset, `""` for none.
    pub(crate) subset: &'a str,
    /// The port, 0 when not a number.
    pub(crate) port: u32,
    /// `outbound`, `inbound`, `inbound-vip`…
    pub(crate) direction: &'a str,
}

impl<'a> SubsetKey<'a> {
    /// Whether `name` has the four `|`-separated parts of a subset key.
    pub(crate) fn is_key(name: &str) -> bool {
        name.split('|').count() > 3
    }

    /// `name` read as istioctl reads it: a subset key when it has four or more parts
    /// (the host is left empty when there are more than four, as Istio's parser does),
    /// else a host on its own, so names sort the same way either form.
    pub(crate) fn of(name: &'a str) -> Self {
        if !Self::is_key(name) {
            return Self {
                host: name,
                ..Self::default()
            };
        }
        let mut parts = name.splitn(4, '|');
        let direction = parts.next().unwrap_or_default();
        let port = parts.next().unwrap_or_default().parse().unwrap_or(0);
        let subset = parts.next().unwrap_or_default();
        let rest = parts.next().unwrap_or_default();
        Self {
            host: if rest.contains('|') { "" } else { rest },
            subset,
            port,
            direction,
        }
    }
}

/// Every active cluster (dynamic first, then static), sorted as istioctl sorts them,
/// that passes the filters.
pub(crate) fn selected<'a>(dump: &'a Dump, filters: &Filters) -> anyhow::Result<Vec<&'a Value>> {
    dump.require(Section::Clusters)?;
    let mut clusters = dump.resources(
        Section::Clusters,
        &[
            ("dynamic_active_clusters", &["cluster"]),
            ("static_clusters", &["cluster"]),
        ],
    );
    if clusters.is_empty() {
        anyhow::bail!("{}: no clusters found", dump.origin());
    }
    clusters.sort_by(|a, b| SubsetKey::of(name(a)).cmp(&SubsetKey::of(name(b))));
    clusters.retain(|c| matches(filters, name(c)));
    Ok(clusters)
}

fn name(cluster: &Value) -> &str {
    str_field(cluster, "name")
}

/// istioctl's cluster filter: substrings of the name for FQDN, direction and subset,
/// `|PORT|` for the port.
fn matches(filters: &Filters, name: &str) -> bool {
    let contains = |part: &Option<String>| part.as_deref().is_none_or(|p| name.contains(p));
    contains(&filters.fqdn)
        && contains(&filters.direction)
        && contains(&filters.subset)
        && filters
            .port
            .is_none_or(|port| name.contains(&format!("|{port}|")))
}

/// The cluster table: SERVICE FQDN, PORT, SUBSET, DIRECTION, TYPE, DESTINATION RULE.
pub(crate) fn summary(clusters: &[&Value], prefix: Prefix) -> String {
    let mut header = prefix.header();
    header.extend([
        "SERVICE FQDN",
        "PORT",
        "SUBSET",
        "DIRECTION",
        "TYPE",
        "DESTINATION RULE",
    ]);
    let mut table = Table::new(header);
    for cluster in clusters {
        let name = name(cluster);
        let shown = prefix.name("cluster", name);
        let mut row = prefix.cells(&shown);
        if SubsetKey::is_key(name) {
            let key = SubsetKey::of(name);
            let subset = if key.subset.is_empty() {
                "-"
            } else {
                key.subset
            };
            row.extend([
                key.host.to_owned(),
                key.port.to_string(),
                subset.to_owned(),
                key.direction.to_owned(),
            ]);
        } else {
            // istioctl prints the (prefixed) name as the FQDN of a cluster that is no
            // subset key; kept so `all` matches it byte for byte.
            row.extend([shown, "-".into(), "-".into(), "-".into()]);
        }
        row.push(discovery_type(cluster).to_owned());
        row.push(config_owner(dump::field(cluster, "metadata")));
        table.row(row);
    }
    table.render()
}

/// The cluster's discovery type; proto3 leaves out the default, `STATIC`.
fn discovery_type(cluster: &Value) -> &str {
    match str_field(cluster, "type") {
        "" => "STATIC",
        t => t,
    }
}

/// The Istio config that produced a resource (its `istio` metadata's `config` path
/// `/apis/networking.istio.io/VERSION/namespaces/NS/KIND/NAME`) as `NAME.NS`.
pub(crate) fn config_owner(metadata: Option<&Value>) -> String {
    let Some(config) = metadata
        .and_then(|m| dump::path(m, &["filter_metadata", "istio", "config"]))
        .and_then(Value::as_str)
    else {
        return String::new();
    };
    if !config.starts_with("/apis/networking.istio.io/") {
        return "<unknown>".into();
    }
    let pieces: Vec<&str> = config.split('/').collect();
    match pieces.as_slice() {
        [_, _, _, _, "namespaces", namespace, _, name] => format!("{name}.{namespace}"),
        _ => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dump(clusters: Value) -> Dump {
        Dump::from_value(
            json!({"configs": [{
                "@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump",
                "dynamic_active_clusters": clusters,
                "static_clusters": [{"cluster": {"name": "prometheus_stats", "type": "STATIC"}}]
            }]}),
            "dump.json",
        )
        .unwrap()
    }

    fn bookinfo() -> Dump {
        let dr = "/apis/networking.istio.io/v1alpha3/namespaces/default/destination-rule/reviews";
        dump(json!([
            {"cluster": {"name": "outbound|9080|v2|reviews.default.svc.cluster.local", "type": "EDS",
                "metadata": {"filter_metadata": {"istio": {"config": dr}}}}},
            {"cluster": {"name": "outbound|9080||reviews.default.svc.cluster.local", "type": "EDS"}},
            {"cluster": {"name": "inbound|9080||", "type": "ORIGINAL_DST"}},
            {"cluster": {"name": "BlackHoleCluster"}},
            {"cluster": {"name": "outbound|9080||details.default.svc.cluster.local", "type": "EDS"}}
        ]))
    }

    #[test]
    fn lists_clusters_sorted_by_host_subset_port_direction() {
        let dump = bookinfo();
        let clusters = selected(&dump, &Filters::default()).unwrap();
        assert_eq!(
            summary(&clusters, Prefix::Off),
            "\
SERVICE FQDN                          PORT     SUBSET     DIRECTION     TYPE             DESTINATION RULE
                                      9080     -          inbound       ORIGINAL_DST     
BlackHoleCluster                      -        -          -             STATIC           
details.default.svc.cluster.local     9080     -          outbound      EDS              
prometheus_stats                      -        -          -             STATIC           
reviews.default.svc.cluster.local     9080     -          outbound      EDS              
reviews.default.svc.cluster.local     9080     v2         outbound      EDS              reviews.default
"
        );
    }

    #[test]
    fn filters_by_substrings_of_the_name_and_the_port_between_bars() {
        let dump = bookinfo();
        let names = |filters: Filters| -> Vec<String> {
            selected(&dump, &filters)
                .unwrap()
                .into_iter()
                .map(|c| name(c).to_owned())
                .collect()
        };
        assert_eq!(
            names(Filters {
                fqdn: Some("reviews".into()),
                subset: Some("v2".into()),
                ..Filters::default()
            }),
            ["outbound|9080|v2|reviews.default.svc.cluster.local"]
        );
        assert_eq!(
            names(Filters {
                direction: Some("inbound".into()),
                port: Some(9080),
                ..Filters::default()
            }),
            ["inbound|9080||"]
        );
        assert!(
            names(Filters {
                port: Some(908),
                ..Filters::default()
            })
            .is_empty()
        );
    }

    #[test]
    fn a_dump_without_clusters_is_an_error() {
        let none = Dump::from_value(
            json!({"configs": [{"@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump"}]}),
            "d.json",
        )
        .unwrap();
        assert_eq!(
            selected(&none, &Filters::default())
                .unwrap_err()
                .to_string(),
            "d.json: no clusters found"
        );
        let empty = Dump::from_value(json!({"configs": []}), "d.json").unwrap();
        assert_eq!(
            selected(&empty, &Filters::default())
                .unwrap_err()
                .to_string(),
            "d.json: config dump has no ClustersConfigDump section"
        );
    }

    #[test]
    fn names_the_owning_config_of_any_api_version() {
        let owner = |config: &str| {
            config_owner(Some(
                &json!({"filter_metadata": {"istio": {"config": config}}}),
            ))
        };
        assert_eq!(
            owner("/apis/networking.istio.io/v1/namespaces/shop/virtual-service/cart"),
            "cart.shop"
        );
        assert_eq!(owner("/apis/networking.istio.io/v1/cart"), "");
        assert_eq!(owner("/apis/gateway.networking.k8s.io/v1/x"), "<unknown>");
        assert_eq!(config_owner(None), "");
    }
}
