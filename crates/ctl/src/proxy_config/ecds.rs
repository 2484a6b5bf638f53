//! `proxy-config ecds`: the filter configurations the proxy took from ECDS (Istio's
//! telemetry and WasmPlugin filters), by name and type.

use serde_json::{Value, json};

use super::dump::{Dump, Section, field, list, path_str, str_field};
use crate::table::Table;

/// What every type URL starts with; the table shows the message name alone.
const TYPE_URL_PREFIX: &str = "type.googleapis.com/";

/// Every `ecds_filters` entry of every ECDS section, in dump order (Envoy writes one
/// section per filter type).
pub(crate) fn entries(dump: &Dump) -> Vec<&Value> {
    dump.sections(Section::Ecds)
        .flat_map(|s| list(s, "ecds_filters"))
        .collect()
}

/// The entries as one `EcdsConfigDump`, as istioctl merges the sections.
pub(crate) fn merged(entries: &[&Value]) -> Value {
    json!({ "ecds_filters": entries })
}

/// ECDS NAME and TYPE, ordered by type, then name, as istioctl orders them.
pub(crate) fn summary(entries: &[&Value]) -> String {
    let mut rows: Vec<(&str, &str)> = entries
        .iter()
        .filter_map(|e| field(e, "ecds_filter"))
        .map(|f| {
            let type_url = path_str(f, &["typed_config", "@type"]);
            (str_field(f, "name"), type_url)
        })
        .collect();
    rows.sort_by(|a, b| (a.1, a.0).cmp(&(b.1, b.0)));
    let mut table = Table::new(["ECDS NAME", "TYPE"]);
    for (name, type_url) in rows {
        table.row([
            name,
            type_url.strip_prefix(TYPE_URL_PREFIX).unwrap_or(type_url),
        ]);
    }
    table.render()
}
