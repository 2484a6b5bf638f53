//! Istio's authorization builder conformance: every case of the builder test table
//! (`xds/expectations.json`, `authz.cases`) — AuthorizationPolicies in, RBAC and
//! ext_authz filters out — compared proto-semantically (both sides as Envoy JSON) with
//! Istio's golden filters, in order. Prints passed/total and requires all.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use mizzen_api::load::Loader;
use mizzen_api::mesh::ExtensionProvider;
use mizzen_pilot::model::{MeshConfig, Proxy, PushContext};
use mizzen_pilot::store::Snapshot;
use mizzen_pilot::translate::authz::Authorization;
use mizzen_xds::json::{from_yaml, to_json};
use mizzen_xds::pb::envoy::config::listener::v3::Filter;
use mizzen_xds::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpFilter;
use serde_json::Value;

/// The service the test table's extension providers point at (`extraServiceIndex`).
const EXT_AUTHZ_SERVICE: &str = "apiVersion: v1
kind: Service
metadata: {name: my-custom-ext-authz, namespace: foo}
spec: {ports: [{name: grpc, port: 9000}]}
";

/// The case table's proxy: `test-node` in `foo`, labelled `app: httpbin, version: v1`.
fn proxy(case: &Value) -> Proxy {
    let table = &case["proxy"];
    let ns = table["namespace"].as_str().unwrap();
    let mut proxy = Proxy::from_node_id(&format!(
        "sidecar~10.0.0.1~{}.{ns}~{ns}.svc.cluster.local",
        table["id"].as_str().unwrap()
    ))
    .unwrap();
    proxy.labels = table["labels"]
        .as_object()
        .unwrap()
        .iter()
        .map(|(k, v)| (k.clone(), v.as_str().unwrap().to_owned()))
        .collect::<BTreeMap<_, _>>();
    proxy
}

fn push(dir: &Path, table: &Value, case: &Value) -> PushContext {
    let input = std::fs::read_to_string(dir.join(case["input"].as_str().unwrap())).unwrap();
    let loaded = Loader::new().load_str(&format!("{input}\n---\n{EXT_AUTHZ_SERVICE}"), None);
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    let objects = loaded
        .objects
        .into_iter()
        .map(|l| (l.object.key(), Arc::new(l.object)))
        .collect();
    let mut mesh = MeshConfig::from(mizzen_api::mesh::MeshConfig {
        trust_domain: String::new(),
        ..Default::default()
    });
    if let Some(bundle) = case.get("trustDomainBundle") {
        mesh.trust_domain = bundle["trustDomain"].as_str().unwrap().to_owned();
        mesh.trust_domain_aliases = serde_json::from_value(bundle["aliases"].clone()).unwrap();
    }
    if let Some(name) = case.get("meshConfig").and_then(Value::as_str) {
        let providers = table["meshConfigs"][name]["extensionProviders"].clone();
        mesh.extension_providers =
            serde_json::from_value::<Vec<ExtensionProvider>>(providers).unwrap();
    }
    PushContext::new(Arc::new(Snapshot::new(1, objects)), Arc::new(mesh))
}

/// The golden filters of `files`, as JSON.
fn goldens<M>(dir: &Path, files: &Value) -> Vec<Value>
where
    M: prost::Message + prost::Name + Default,
{
    files
        .as_array()
        .unwrap()
        .iter()
        .map(|f| {
            let text = std::fs::read_to_string(dir.join(f.as_str().unwrap())).unwrap();
            to_json(&from_yaml::<M>(&text).unwrap()).unwrap()
        })
        .collect()
}

/// The first difference between two JSON values, as a path.
fn difference(path: &str, want: &Value, got: &Value) -> Option<String> {
    match (want, got) {
        (Value::Object(a), Value::Object(b)) => {
            a.keys()
                .chain(b.keys())
                .find_map(|k| match (a.get(k), b.get(k)) {
                    (Some(x), Some(y)) => difference(&format!("{path}.{k}"), x, y),
                    (x, _) => Some(format!(
                        "{path}.{k}: {}",
                        if x.is_some() { "missing" } else { "unexpected" }
                    )),
                })
        }
        (Value::Array(a), Value::Array(b)) if a.len() == b.len() => a
            .iter()
            .zip(b)
            .enumerate()
            .find_map(|(i, (x, y))| difference(&format!("{path}[{i}]"), x, y)),
        _ if want == got => None,
        _ => Some(format!("{path}: want {want}, got {got}")),
    }
}

fn compare(name: &str, want: &[Value], got: &[Value]) -> Result<(), String> {
    if want.len() != got.len() {
        return Err(format!(
            "{name}: want {} filters, got {}: {}",
            want.len(),
            got.len(),
            serde_json::to_string(got).unwrap()
        ));
    }
    for (i, (w, g)) in want.iter().zip(got).enumerate() {
        if let Some(d) = difference("", w, g) {
            return Err(format!("{name}: filter {i} differs at {d}"));
        }
    }
    Ok(())
}

#[test]
fn authorization_policies_build_istios_filters() {
    let Some(data) = mizzen_api::testdata::istio_data() else {
        return;
    };
    let dir = data.join("xds");
    let expectations: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("expectations.json")).unwrap())
            .unwrap();
    let table = &expectations["authz"];
    let mut total = 0;
    let mut failures = Vec::new();
    for case in table["cases"].as_array().unwrap() {
        let name = case["name"].as_str().unwrap();
        let push = push(&dir, table, case);
        let proxy = proxy(table);
        let authz = Authorization::new(&push, &proxy);
        let custom = case["customBuilder"].as_bool().unwrap_or(false);
        let results: Vec<(String, Result<(), String>)> = if case["kind"] == "tcp" {
            let built = if custom {
                authz.custom_network_filters()
            } else {
                authz.rbac_network_filters()
            };
            let got: Vec<Value> = built.iter().map(|f: &Filter| to_json(f).unwrap()).collect();
            let want = goldens::<Filter>(&dir, &case["wantNetworkFilters"]);
            vec![(format!("tcp/{name}"), compare(name, &want, &got))]
        } else {
            let built = if custom {
                authz.custom_http_filters()
            } else {
                authz.rbac_http_filters()
            };
            let got: Vec<Value> = built
                .iter()
                .map(|f: &HttpFilter| to_json(f).unwrap())
                .collect();
            // The extended pass is for an Envoy feature flag whose goldens are, at this
            // Istio commit, identical to the plain ones: the same build must meet both.
            ["wantHttpFilters", "wantHttpFiltersExtendedPass"]
                .into_iter()
                .map(|key| {
                    let want = goldens::<HttpFilter>(&dir, &case[key]);
                    (format!("http/{name} ({key})"), compare(name, &want, &got))
                })
                .collect()
        };
        for (label, result) in results {
            total += 1;
            if let Err(e) = result {
                failures.push(format!("{label}: {e}"));
            }
        }
    }
    println!("authz goldens: {}/{total} passed", total - failures.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
