//! `proxy-config bootstrap`: the proxy's bootstrap, whole (the default, as JSON) or as
//! the Istio and Envoy versions it reports (`-o short`).

use serde_json::Value;

use super::dump::{field, path, str_field, u64_field};
use crate::table::Table;

/// `Istio Version`, `Istio Proxy Version` and `Envoy Version` lines, each only when the
/// node's metadata and build version say.
pub(crate) fn summary(section: &Value) -> String {
    let node = path(section, &["bootstrap", "node"]).unwrap_or(&Value::Null);
    let metadata = field(node, "metadata").unwrap_or(&Value::Null);
    let istio_version = str_field(metadata, "ISTIO_VERSION");
    // `istio-proxy:SHA` in older proxies, the bare SHA in newer ones.
    let proxy_sha = str_field(metadata, "ISTIO_PROXY_SHA");
    let proxy_sha = proxy_sha.split(':').nth(1).unwrap_or(proxy_sha);

    let mut lines = Vec::new();
    if !istio_version.is_empty() {
        lines.push(["Istio Version:".to_owned(), istio_version.to_owned()]);
    }
    if !proxy_sha.is_empty() {
        lines.push(["Istio Proxy Version:".to_owned(), proxy_sha.to_owned()]);
    }
    lines.push(["Envoy Version:".to_owned(), envoy_version(node)]);
    // A table without a header: its first line takes the header's place.
    let mut lines = lines.into_iter();
    let mut table = Table::new(lines.next().unwrap_or_default()).with_padding(1);
    for line in lines {
        table.row(line);
    }
    table.render()
}

/// `MAJOR.MINOR.PATCH[-label][/status][/type][/ssl]` from the node's build version.
fn envoy_version(node: &Value) -> String {
    let build = field(node, "user_agent_build_version").unwrap_or(&Value::Null);
    let version = field(build, "version").unwrap_or(&Value::Null);
    let mut out = format!(
        "{}.{}.{}",
        u64_field(version, "major_number"),
        u64_field(version, "minor_number"),
        u64_field(version, "patch")
    );
    let metadata = field(build, "metadata").unwrap_or(&Value::Null);
    let label = str_field(metadata, "build.label");
    if !label.is_empty() {
        out.push('-');
        out.push_str(label);
    }
    for key in ["revision.status", "build.type", "ssl.version"] {
        if let Some(value) = metadata.get(key).and_then(Value::as_str) {
            out.push('/');
            out.push_str(value);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn prints_only_the_versions_the_node_reports() {
        let bare = json!({"bootstrap": {"node": {"id": "sidecar~10.0.0.1~a.default~default.svc.cluster.local"}}});
        assert_eq!(summary(&bare), "Envoy Version: 0.0.0\n");
        let full = json!({"bootstrap": {"node": {
            "metadata": {"ISTIO_VERSION": "1.24.0", "ISTIO_PROXY_SHA": "istio-proxy:abc"},
            "user_agent_build_version": {"version": {"major_number": 1, "minor_number": 32, "patch": 2},
                "metadata": {"build.label": "dev", "build.type": "RELEASE", "ssl.version": "BoringSSL"}}}}});
        assert_eq!(
            summary(&full),
            "Istio Version:       1.24.0\nIstio Proxy Version: abc\nEnvoy Version:       1.32.2-dev/RELEASE/BoringSSL\n"
        );
    }
}
