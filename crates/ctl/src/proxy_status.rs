//! `mizzen proxy-status [PROXY]`: each proxy's sync state with pilot, as
//! `istioctl proxy-status` shows it.

use std::net::SocketAddr;

use anyhow::Context;
use mizzen_xds::ProxySync;

use crate::table::Table;

/// The types shown, in istioctl's column order.
const TYPES: [&str; 4] = ["CDS", "LDS", "EDS", "RDS"];

/// Reads pilot's `/debug/syncz` at `pilot` and renders the table, or one proxy's detail.
pub fn run(pilot: SocketAddr, proxy: Option<&str>) -> anyhow::Result<String> {
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
            Ok(detail(found))
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
}
