//! `proxy-config route`: the dump's route configurations, one row per route of each
//! virtual host (`--verbose`, the default), or one row per configuration.

use std::collections::HashSet;

use serde_json::Value;

use super::cluster::config_owner;
use super::dump::{Dump, Section, field, list, path_str, str_field};
use super::{Filters, Prefix};
use crate::table::Table;

/// How many domains a row shows before `+ N more...`.
const DOMAINS_SHOWN: usize = 2;

/// Every route configuration (dynamic first, then static) with the name asked for,
/// numeric names (ports) in numeric order.
pub(crate) fn selected<'a>(dump: &'a Dump, filters: &Filters) -> anyhow::Result<Vec<&'a Value>> {
    dump.require(Section::Routes)?;
    let mut routes = dump.resources(
        Section::Routes,
        &[
            ("dynamic_route_configs", &["route_config"]),
            ("static_route_configs", &["route_config"]),
        ],
    );
    if routes.is_empty() {
        anyhow::bail!("{}: no routes found", dump.origin());
    }
    sort_numeric_runs(&mut routes);
    routes.retain(|r| {
        filters
            .name
            .as_deref()
            .is_none_or(|n| n == str_field(r, "name"))
    });
    Ok(routes)
}

/// istioctl orders two configurations only when both names are numbers; a named one
/// stays where it is and the numbered ones between named ones are put in order.
fn sort_numeric_runs(routes: &mut [&Value]) {
    let number = |r: &Value| str_field(r, "name").parse::<i64>().ok();
    for run in routes.split_mut(|r| number(r).is_none()) {
        run.sort_by_key(|r| number(r));
    }
}

/// The route table: NAME, VHOST NAME, DOMAINS, MATCH, VIRTUAL SERVICE with `verbose`,
/// else NAME and the number of VIRTUAL HOSTS.
pub(crate) fn summary(routes: &[&Value], verbose: bool, prefix: Prefix) -> String {
    let mut table = if verbose {
        Table::new(["NAME", "VHOST NAME", "DOMAINS", "MATCH", "VIRTUAL SERVICE"])
    } else {
        Table::new(["NAME", "VIRTUAL HOSTS"])
    };
    for config in routes {
        let name = prefix.name("route", str_field(config, "name"));
        let hosts = list(config, "virtual_hosts");
        if !verbose {
            table.row([name, hosts.len().to_string()]);
            continue;
        }
        for vh in hosts {
            let vh_name = str_field(vh, "name");
            let domains = describe_domains(list(vh, "domains"));
            let rules = list(vh, "routes");
            for rule in rules.iter().filter(|r| !is_passthrough(r)) {
                table.row([
                    name.clone(),
                    vh_name.to_owned(),
                    domains.clone(),
                    describe_match(field(rule, "match")),
                    config_owner(field(rule, "metadata")),
                ]);
            }
            if rules.is_empty() {
                table.row([
                    name.clone(),
                    vh_name.to_owned(),
                    domains.clone(),
                    "/*".into(),
                    "404".into(),
                ]);
            }
        }
    }
    table.render()
}

/// Istio's catch-all route to `PassthroughCluster`, which istioctl leaves out.
fn is_passthrough(rule: &Value) -> bool {
    path_str(rule, &["route", "cluster"]) == "PassthroughCluster"
}

/// A route's match as istioctl shows it: `prefix*`, `PathPrefix:path`, the path, or
/// `regex …` (headers and query parameters are left out).
pub(crate) fn describe_match(m: Option<&Value>) -> String {
    let Some(m) = m else {
        return String::new();
    };
    let mut parts = Vec::new();
    let prefix = str_field(m, "prefix");
    if !prefix.is_empty() {
        parts.push(format!("{prefix}*"));
    }
    let separated = str_field(m, "path_separated_prefix");
    if !separated.is_empty() {
        parts.push(format!("PathPrefix:{separated}"));
    }
    let path = str_field(m, "path");
    if !path.is_empty() {
        parts.push(path.to_owned());
    }
    if let Some(regex) = field(m, "safe_regex") {
        parts.push(format!("regex {}", str_field(regex, "regex")));
    }
    parts.join(" ")
}

/// A virtual host's domains, shortened as istioctl does: one as it is; several without
/// the `:port` forms and the longer spellings of the same service (`reviews` over
/// `reviews.default.svc.cluster.local`), at most two and a count of the rest.
fn describe_domains(domains: &[Value]) -> String {
    let domains: Vec<&str> = domains.iter().filter_map(Value::as_str).collect();
    if let [one] = domains.as_slice() {
        return (*one).to_owned();
    }
    let without_port: Vec<&str> = domains
        .into_iter()
        .filter(|d| !d.contains(':') || (d.matches(':').count() > 2 && d.ends_with(']')))
        .collect();
    let unique: HashSet<&str> = without_port.iter().copied().collect();
    let shortest: Vec<&str> = without_port
        .iter()
        .copied()
        .filter(|d| {
            let shorter = |suffix| d.strip_suffix(suffix).is_some_and(|s| unique.contains(s));
            !shorter(".svc.cluster.local") && !shorter(".svc")
        })
        .collect();
    if shortest.len() > DOMAINS_SHOWN {
        return format!(
            "{} + {} more...",
            shortest[..DOMAINS_SHOWN].join(", "),
            shortest.len() - DOMAINS_SHOWN
        );
    }
    shortest.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn dump(dynamic: Value) -> Dump {
        Dump::from_value(
            json!({"configs": [{
                "@type": "type.googleapis.com/envoy.admin.v3.RoutesConfigDump",
                "dynamic_route_configs": dynamic,
                "static_route_configs": [{"route_config": {"virtual_hosts": [
                    {"name": "backend", "domains": ["*"], "routes": [{"match": {"prefix": "/healthz/ready"}, "route": {"cluster": "agent"}}]}]}}]
            }]}),
            "dump.json",
        )
        .unwrap()
    }

    fn sidecar() -> Dump {
        let vs = "/apis/networking.istio.io/v1/namespaces/default/virtual-service/reviews";
        dump(json!([
            {"route_config": {"name": "9080", "virtual_hosts": [
                {"name": "reviews.default.svc.cluster.local:9080",
                 "domains": ["reviews.default.svc.cluster.local", "reviews.default.svc.cluster.local:9080", "reviews", "reviews:9080",
                             "reviews.default.svc", "reviews.default.svc:9080", "reviews.default", "reviews.default:9080", "10.96.0.7", "10.96.0.7:9080"],
                 "routes": [
                    {"match": {"prefix": "/", "headers": [{"name": "end-user"}]}, "route": {"cluster": "outbound|9080|v2|reviews.default.svc.cluster.local"},
                     "metadata": {"filter_metadata": {"istio": {"config": vs}}}},
                    {"match": {"prefix": "/"}, "route": {"cluster": "outbound|9080|v1|reviews.default.svc.cluster.local"},
                     "metadata": {"filter_metadata": {"istio": {"config": vs}}}}]},
                {"name": "allow_any", "domains": ["*"], "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "PassthroughCluster"}}]},
                {"name": "block_all", "domains": ["*"]}
            ]}},
            {"route_config": {"name": "80", "virtual_hosts": [
                {"name": "web.example.com:80", "domains": ["web.example.com"], "routes": [{"match": {"path_separated_prefix": "/api"}}]}]}}
        ]))
    }

    #[test]
    fn verbose_lists_every_route_of_every_virtual_host() {
        let dump = sidecar();
        let routes = selected(&dump, &Filters::default()).unwrap();
        assert_eq!(
            summary(&routes, true, Prefix::Off),
            "\
NAME     VHOST NAME                                 DOMAINS                                  MATCH               VIRTUAL SERVICE
80       web.example.com:80                         web.example.com                          PathPrefix:/api     
9080     reviews.default.svc.cluster.local:9080     reviews, reviews.default + 1 more...     /*                  reviews.default
9080     reviews.default.svc.cluster.local:9080     reviews, reviews.default + 1 more...     /*                  reviews.default
9080     block_all                                  *                                        /*                  404
         backend                                    *                                        /healthz/ready*     
"
        );
    }

    #[test]
    fn short_form_counts_virtual_hosts() {
        let dump = sidecar();
        let routes = selected(&dump, &Filters::default()).unwrap();
        assert_eq!(
            summary(&routes, false, Prefix::Off),
            "NAME     VIRTUAL HOSTS\n80       1\n9080     3\n         1\n"
        );
    }

    #[test]
    fn filters_by_exact_name() {
        let dump = sidecar();
        let only = |name: &str| {
            selected(
                &dump,
                &Filters {
                    name: Some(name.into()),
                    ..Filters::default()
                },
            )
            .unwrap()
            .len()
        };
        assert_eq!(only("9080"), 1);
        assert_eq!(only("908"), 0);
    }

    #[test]
    fn numbered_configurations_sort_between_named_ones() {
        let named = |n: &str| json!({"name": n});
        let values = [
            named("9080"),
            named("80"),
            named("x"),
            named("15010"),
            named("443"),
        ];
        let mut refs: Vec<&Value> = values.iter().collect();
        sort_numeric_runs(&mut refs);
        let names: Vec<&str> = refs.iter().map(|r| str_field(r, "name")).collect();
        assert_eq!(names, ["80", "9080", "x", "443", "15010"]);
    }
}
