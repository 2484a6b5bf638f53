//! `mizzen proxy-status [PROXY]`: each proxy's sync state with pilot, as
//! `istioctl proxy-status` shows it.

use std::net::SocketAddr;

use std::collections::BTreeMap;

use anyhow::Context;
use mizzen_xds::ProxySync;
use serde_json::Value;

use crate::table::Table;

/// The types shown, in istioctl's column order.
const TYPES: [&str; 4] = ["CDS", "LDS", "EDS", "RDS"];

/// Reads pilot's `/debug/syncz` at `pilot` and renders the table, or one proxy's detail;
/// with the proxy's admin address, also compares what pilot sends it with what it holds.
pub fn run(
    pilot: SocketAddr,
    proxy: Option<&str>,
    proxy_admin: Option<SocketAddr>,
) -> anyhow::Result<String> {
    let body = crate::http::get(pilot, "/debug/syncz")?;
    let proxies: Vec<ProxySync> =
        serde_json::from_str(&body).context("pilot's /debug/syncz is not the expected JSON")?;
    match proxy {
        None => Ok(table(&proxies)),
        Some(name) => {
            let found = proxies
                .iter()
                .find(|p| p.proxy == name || short_name(&p.proxy) == name)
                .with_context(|| format!("proxy {name:?} is not connected to pilot at {pilot}"))?;
            let mut out = detail(found);
            if let Some(admin) = proxy_admin {
                let sent = crate::http::get(
                    pilot,
                    &format!("/debug/config_dump?proxyID={}", short_name(&found.proxy)),
                )?;
                let held = crate::http::get(admin, "/config_dump")?;
                let parse = |what: &str, text: &str| -> anyhow::Result<Value> {
                    serde_json::from_str(text).with_context(|| format!("{what} is not JSON"))
                };
                out.push_str(&compare(
                    &parse("pilot's config dump", &sent)?,
                    &parse("the proxy's config dump", &held)?,
                ));
            }
            Ok(out)
        }
    }
}

/// `name.namespace` from `sidecar~ip~name.namespace~domain`.
fn short_name(node_id: &str) -> &str {
    node_id.split('~').nth(2).unwrap_or(node_id)
}

/// The table of every proxy, sorted by name.
pub fn table(proxies: &[ProxySync]) -> String {
    let mut header = vec!["NAME", "CLUSTER"];
    header.extend(TYPES);
    header.extend(["ISTIOD", "VERSION"]);
    let mut t = Table::new(header);
    let mut sorted: Vec<&ProxySync> = proxies.iter().collect();
    sorted.sort_by(|a, b| short_name(&a.proxy).cmp(short_name(&b.proxy)));
    for p in sorted {
        let mut row = vec![short_name(&p.proxy).to_owned(), p.cluster_id.clone()];
        for ty in TYPES {
            let state = p.types.get(ty).map_or("NOT SENT", |t| t.state.as_str());
            row.push(state.to_owned());
        }
        row.push(p.control_plane.clone());
        row.push(p.version.clone());
        t.row(row);
    }
    t.render()
}

/// One proxy's per-type versions and last rejection.
fn detail(p: &ProxySync) -> String {
    let mut t = Table::new(["TYPE", "STATE", "SENT", "ACKED", "RESOURCES", "LAST NACK"]);
    for (ty, sync) in &p.types {
        t.row([
            ty.clone(),
            sync.state.as_str().to_owned(),
            sync.version_sent.clone().unwrap_or_default(),
            sync.version_acked.clone().unwrap_or_default(),
            sync.resources_sent.to_string(),
            sync.last_nack.clone().unwrap_or_default(),
        ]);
    }
    format!(
        "Proxy {} (pilot {}):\n{}",
        p.proxy,
        p.control_plane,
        t.render()
    )
}

/// The resources of one kind in an Envoy config dump, by name.
fn section(dump: &Value, dump_type: &str, list: &str, item: &str) -> BTreeMap<String, Value> {
    let configs = dump["configs"]
        .as_array()
        .map(Vec::as_slice)
        .unwrap_or_default();
    configs
        .iter()
        .filter(|c| c["@type"].as_str().is_some_and(|t| t.ends_with(dump_type)))
        .flat_map(|c| c[list].as_array().cloned().unwrap_or_default())
        .filter_map(|entry| {
            // Listeners nest their resource one level deeper (`active_state.listener`).
            let resource = match entry.get("active_state") {
                Some(state) => state[item].clone(),
                None => entry[item].clone(),
            };
            let name = resource["name"].as_str()?.to_owned();
            Some((name, resource))
        })
        .collect()
}

/// istioctl's `proxy-status NAME` comparison: for clusters, listeners and routes,
/// whether what pilot sends matches what the proxy holds, and if not, which resources
/// differ.
pub fn compare(sent: &Value, held: &Value) -> String {
    let mut out = String::new();
    for (label, dump_type, list, item) in [
        (
            "Clusters",
            "ClustersConfigDump",
            "dynamic_active_clusters",
            "cluster",
        ),
        (
            "Listeners",
            "ListenersConfigDump",
            "dynamic_listeners",
            "listener",
        ),
        (
            "Routes",
            "RoutesConfigDump",
            "dynamic_route_configs",
            "route_config",
        ),
    ] {
        let ours = section(sent, dump_type, list, item);
        let theirs = section(held, dump_type, list, item);
        if ours == theirs {
            out.push_str(&format!("{label} Match\n"));
            continue;
        }
        out.push_str(&format!("{label} Don't Match\n"));
        for (name, resource) in &ours {
            match theirs.get(name) {
                None => out.push_str(&format!(
                    "  - {name}: sent by pilot, not held by the proxy\n"
                )),
                Some(held) if held != resource => out.push_str(&format!(
                    "  ~ {name}: differs at {}\n",
                    first_difference(resource, held, "")
                )),
                Some(_) => {}
            }
        }
        for name in theirs.keys().filter(|n| !ours.contains_key(*n)) {
            out.push_str(&format!(
                "  + {name}: held by the proxy, not sent by pilot\n"
            ));
        }
    }
    out
}

/// The JSON path of the first place `a` and `b` differ.
fn first_difference(a: &Value, b: &Value, path: &str) -> String {
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let keys: std::collections::BTreeSet<&String> = x.keys().chain(y.keys()).collect();
            keys.into_iter()
                .find(|k| x.get(*k) != y.get(*k))
                .map(|k| match (x.get(k), y.get(k)) {
                    (Some(xa), Some(yb)) => first_difference(xa, yb, &format!("{path}.{k}")),
                    _ => format!("{path}.{k}"),
                })
                .unwrap_or_else(|| path.to_owned())
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => x
            .iter()
            .zip(y)
            .position(|(p, q)| p != q)
            .map(|i| first_difference(&x[i], &y[i], &format!("{path}[{i}]")))
            .unwrap_or_else(|| path.to_owned()),
        _ => path.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_istioctl_columns_and_states() {
        let json = r#"[{"proxy":"sidecar~10.0.0.2~reviews-v1.default~default.svc.cluster.local","cluster_id":"Kubernetes","version":"1.40.0","control_plane":"mizzen-pilot","types":{
            "CDS":{"state":"SYNCED","version_sent":"3","version_acked":"3","resources_sent":9},
            "LDS":{"state":"NACKED","version_sent":"3","version_acked":"2","resources_sent":4,"last_nack":"bad listener"},
            "EDS":{"state":"STALE","version_sent":"3","resources_sent":5}}}]"#;
        let proxies: Vec<ProxySync> = serde_json::from_str(json).unwrap();
        assert_eq!(
            table(&proxies),
            "NAME                   CLUSTER        CDS        LDS        EDS       RDS          ISTIOD           VERSION\n\
             reviews-v1.default     Kubernetes     SYNCED     NACKED     STALE     NOT SENT     mizzen-pilot     1.40.0\n"
        );
        assert!(
            detail(&proxies[0])
                .contains("LDS      NACKED     3        2         4             bad listener")
        );
    }

    #[test]
    fn compares_config_dumps_resource_by_resource() {
        let dump = |clusters: Value| {
            serde_json::json!({"configs": [
                {"@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump", "dynamic_active_clusters": clusters},
                {"@type": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump", "dynamic_listeners": [
                    {"name": "l", "active_state": {"listener": {"name": "l", "address": {}}}}]}
            ]})
        };
        let a = dump(
            serde_json::json!([{"cluster": {"name": "c1", "connect_timeout": "10s"}}, {"cluster": {"name": "c2"}}]),
        );
        assert_eq!(
            compare(&a, &a),
            "Clusters Match\nListeners Match\nRoutes Match\n"
        );
        let b = dump(
            serde_json::json!([{"cluster": {"name": "c1", "connect_timeout": "1s"}}, {"cluster": {"name": "c3"}}]),
        );
        assert_eq!(
            compare(&a, &b),
            "Clusters Don't Match\n  ~ c1: differs at .connect_timeout\n  - c2: sent by pilot, not held by the proxy\n  + c3: held by the proxy, not sent by pilot\nListeners Match\nRoutes Match\n"
        );
    }
}
