//! `proxy-config` against istioctl's own goldens: real Envoy config dumps and the text,
//! JSON and YAML istioctl prints for them (read from Istio's data folder, never copied),
//! plus whole-command behaviour on small dumps.

use std::path::{Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

use mizzen_xds::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use serde_json::{Value, json};

use super::*;

/// istioctl's `writer/envoy/configdump/testdata`, when this clone has Istio's data.
fn goldens() -> Option<PathBuf> {
    mizzen_api::testdata::istio_data().map(|d| d.join("istioctl/writer/envoy/configdump/testdata"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn request(kind: Kind, file: &Path) -> Request {
    Request {
        kind,
        source: Source::File(file.to_owned()),
        format: Format::Short,
        filters: Filters::default(),
        verbose: true,
        with_headers: false,
    }
}

/// 2025-01-01, after the goldens' leaf certificates expired and before their CAs do.
fn golden_now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_735_689_600)
}

/// `request` on its file with certificates judged at `golden_now`.
fn render_file(request: &Request) -> String {
    let Source::File(file) = &request.source else {
        unreachable!("goldens are files");
    };
    let dump = Dump::parse(&read(file), &file.display().to_string()).unwrap();
    render(&dump, request, golden_now()).unwrap()
}

#[test]
fn route_tables_match_istioctl() {
    let Some(dir) = goldens() else { return };
    for case in [
        "empty-gateway",
        "istio-gateway-http-route-prefix",
        "k8s-gateway-http-route-path-prefix",
    ] {
        let case = dir.join("routes").join(case);
        let got = run(&request(Kind::Route, &case.join("configdump.json"))).unwrap();
        assert_eq!(got, read(&case.join("output.txt")), "{}", case.display());
    }
}

#[test]
fn endpoint_tables_match_istioctl_with_and_without_a_port_filter() {
    let Some(dir) = goldens() else { return };
    let dump = dir.join("endpoint/configdump.json");
    let all = run(&request(Kind::Endpoint, &dump)).unwrap();
    assert_eq!(all, read(&dir.join("endpoint/emptyfilter_output.txt")));
    let mut on_8080 = request(Kind::Endpoint, &dump);
    on_8080.filters.port = Some(8080);
    assert_eq!(
        run(&on_8080).unwrap(),
        read(&dir.join("endpoint/portfilter_output.txt"))
    );
}

/// istioctl prints protojson (lowerCamelCase); we print the dump's own resources
/// (Envoy's snake_case). Read both as Envoy messages, they must be the same.
fn assignments(json_text: &str) -> Vec<ClusterLoadAssignment> {
    let value: Value = serde_json::from_str(json_text).unwrap();
    value
        .as_array()
        .unwrap()
        .iter()
        .map(|cla| {
            let mut cla = cla.clone();
            cla.as_object_mut().unwrap().remove("@type");
            mizzen_xds::json::from_json(&cla).unwrap()
        })
        .collect()
}

#[test]
fn endpoint_json_holds_the_same_assignments_as_istioctls() {
    let Some(dir) = goldens() else { return };
    let dump = dir.join("endpoint/configdump.json");
    for (port, golden) in [
        (None, "emptyfilter_output.json"),
        (Some(8080), "portfilter_output.json"),
    ] {
        let mut json = request(Kind::Endpoint, &dump);
        json.format = Format::Raw(Encoding::Json);
        json.filters.port = port;
        let got = run(&json).unwrap();
        assert!(got.starts_with("[\n    {\n        \""), "{got}");
        assert_eq!(
            assignments(&got),
            assignments(&read(&dir.join("endpoint").join(golden))),
            "{golden}"
        );
    }
}

/// istioctl's YAML with its lowerCamelCase field names spelled as Envoy spells them;
/// keys under `filterMetadata` are data (a `Struct`) and stay as they are.
fn snake_keys(yaml: &str) -> String {
    let mut data_below: Option<usize> = None;
    let mut out = String::new();
    for line in yaml.lines() {
        let body = line.trim_start_matches([' ', '-']);
        let lead = &line[..line.len() - body.len()];
        let key = body
            .split_once(':')
            .map(|(key, _)| key)
            .filter(|key| key.chars().all(|c| c.is_ascii_alphanumeric()));
        match key {
            Some(_) if data_below.is_some_and(|depth| lead.len() > depth) => out.push_str(line),
            Some(key) => {
                data_below = (key == "filterMetadata").then_some(lead.len());
                out.push_str(lead);
                for c in key.chars() {
                    if c.is_ascii_uppercase() {
                        out.push('_');
                    }
                    out.push(c.to_ascii_lowercase());
                }
                out.push_str(&body[key.len()..]);
            }
            None => out.push_str(line),
        }
        out.push('\n');
    }
    out
}

#[test]
fn endpoint_yaml_is_written_as_istioctl_writes_it() {
    let Some(dir) = goldens() else { return };
    let dump = dir.join("endpoint/configdump.json");
    for (port, golden) in [
        (None, "emptyfilter_output.yaml"),
        (Some(8080), "portfilter_output.yaml"),
    ] {
        let mut yaml = request(Kind::Endpoint, &dump);
        yaml.format = Format::Raw(Encoding::Yaml);
        yaml.filters.port = port;
        // istioctl ends its YAML with an extra blank line (Println of text ending in
        // a newline).
        let want = snake_keys(read(&dir.join("endpoint").join(golden)).trim_end());
        assert_eq!(run(&yaml).unwrap(), want, "{golden}");
    }
}

#[test]
fn bootstrap_versions_and_dump_match_istioctl() {
    let Some(dir) = goldens() else { return };
    let dump = dir.join("configdump.json");
    let mut short = request(Kind::Bootstrap, &dump);
    short.format = Format::Short;
    assert_eq!(run(&short).unwrap(), read(&dir.join("versionsummary.txt")));
    let mut json = request(Kind::Bootstrap, &dump);
    json.format = Format::Raw(Encoding::Json);
    let got: Value = serde_json::from_str(&run(&json).unwrap()).unwrap();
    let want: Value = serde_json::from_str(&read(&dir.join("bootstrapdump.json"))).unwrap();
    assert_eq!(got, want);
}

/// A protojson document (lowerCamelCase field names) with Envoy's snake_case names;
/// map keys that are data (`ISTIO_META_…`, `@type`) have no lowercase-uppercase pair
/// and stay as they are.
fn snake_case_fields(value: &Value) -> Value {
    match value {
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| {
                let mut key = String::new();
                let mut prev_lower = false;
                for c in k.chars() {
                    if c.is_ascii_uppercase() && prev_lower {
                        key.push('_');
                    }
                    prev_lower = c.is_ascii_lowercase();
                    key.push(c.to_ascii_lowercase());
                }
                let key = if k.contains('_') || k.starts_with('@') {
                    k.clone()
                } else {
                    key
                };
                (key, snake_case_fields(v))
            })
            .collect(),
        Value::Array(items) => items.iter().map(snake_case_fields).collect(),
        other => other.clone(),
    }
}

#[test]
fn ecds_table_json_and_yaml_match_istioctl() {
    let Some(dir) = goldens() else { return };
    let dump = dir.join("ecds/configdump.json");
    assert_eq!(
        run(&request(Kind::Ecds, &dump)).unwrap(),
        read(&dir.join("ecds/output.txt"))
    );
    // istioctl merges the dump's ECDS sections into one, in dump order.
    let mut json = request(Kind::Ecds, &dump);
    json.format = Format::Raw(Encoding::Json);
    let got: Value = serde_json::from_str(&run(&json).unwrap()).unwrap();
    let want: Value = serde_json::from_str(&read(&dir.join("ecds/output.json"))).unwrap();
    assert_eq!(got, snake_case_fields(&want));
    let mut yaml = json;
    yaml.format = Format::Raw(Encoding::Yaml);
    let want = snake_keys(read(&dir.join("ecds/output.yaml")).trim_end());
    assert_eq!(run(&yaml).unwrap(), want);
}

#[test]
fn a_dump_without_ecds_prints_the_header_alone() {
    let Some(dir) = goldens() else { return };
    let got = run(&request(Kind::Ecds, &dir.join("configdump.json"))).unwrap();
    assert_eq!(got, "ECDS NAME     TYPE\n");
}

#[test]
fn secret_tables_match_istioctl_including_spiffe_trust_domains() {
    let Some(dir) = goldens() else { return };
    for case in ["istio", "spire"] {
        let case = dir.join("secret").join(case);
        let got = render_file(&request(Kind::Secret, &case.join("config_dump.json")));
        assert_eq!(got, read(&case.join("output")), "{}", case.display());
    }
}

#[test]
fn secrets_written_inline_as_pem_strings_read_like_base64_bytes() {
    // Mizzen's proxy keeps a PEM given as `inline_string` as it came.
    let Some(dir) = goldens() else { return };
    let path = dir.join("secret").join("istio").join("config_dump.json");
    let mut dump: Value = serde_json::from_str(&read(&path)).unwrap();
    for config in dump["configs"].as_array_mut().unwrap() {
        for secret in config["dynamic_active_secrets"]
            .as_array_mut()
            .into_iter()
            .flatten()
        {
            for (source, field) in [
                ("tls_certificate", "certificate_chain"),
                ("validation_context", "trusted_ca"),
            ] {
                let Some(data) = secret["secret"]
                    .get_mut(source)
                    .and_then(|s| s.get_mut(field))
                else {
                    continue;
                };
                if let Some(bytes) = data["inline_bytes"].as_str() {
                    let pem = super::x509::base64(bytes).unwrap();
                    *data = json!({"inline_string": String::from_utf8(pem).unwrap()});
                }
            }
        }
    }
    let as_strings = Dump::from_value(dump, "strings.json").unwrap();
    let golden = Dump::parse(&read(&path), "golden.json").unwrap();
    let request = request(Kind::Secret, &path);
    assert_eq!(
        render(&as_strings, &request, golden_now()).unwrap(),
        render(&golden, &request, golden_now()).unwrap()
    );
}

/// A sidecar's dump with every section, to exercise `all`.
fn sidecar_dump() -> Value {
    json!({"configs": [
        {"@type": "type.googleapis.com/envoy.admin.v3.BootstrapConfigDump",
         "bootstrap": {"node": {"metadata": {"ISTIO_VERSION": "1.24.0"}}}},
        {"@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump",
         "static_clusters": [{"cluster": {"name": "agent", "type": "STATIC"}}],
         "dynamic_active_clusters": [{"cluster": {"name": "outbound|9080||reviews.default.svc.cluster.local", "type": "EDS"}}]},
        {"@type": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump",
         "dynamic_listeners": [{"name": "0.0.0.0_9080", "active_state": {"listener": {
            "name": "0.0.0.0_9080",
            "address": {"socket_address": {"address": "0.0.0.0", "port_value": 9080}},
            "filter_chains": [{"filters": [{"name": "envoy.filters.network.http_connection_manager",
                "typed_config": {"rds": {"route_config_name": "9080"}}}]}]}}}]},
        {"@type": "type.googleapis.com/envoy.admin.v3.RoutesConfigDump",
         "dynamic_route_configs": [{"route_config": {"name": "9080", "virtual_hosts": [
            {"name": "reviews.default.svc.cluster.local:9080", "domains": ["reviews.default.svc.cluster.local"],
             "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "outbound|9080||reviews.default.svc.cluster.local"}}]}]}}]},
        {"@type": "type.googleapis.com/envoy.admin.v3.EndpointsConfigDump",
         "dynamic_endpoint_configs": [{"endpoint_config": {
            "cluster_name": "outbound|9080||reviews.default.svc.cluster.local",
            "endpoints": [{"lb_endpoints": [{"endpoint": {"address": {"socket_address": {"address": "10.0.0.7", "port_value": 9080}}},
                "health_status": "HEALTHY"}]}]}}]}
    ]})
}

fn sidecar_request(kind: Kind) -> (Dump, Request) {
    let dump = Dump::from_value(sidecar_dump(), "sidecar.json").unwrap();
    (dump, request(kind, Path::new("sidecar.json")))
}

#[test]
fn all_prints_every_section_with_kind_prefixed_names() {
    let (dump, request) = sidecar_request(Kind::All);
    assert_eq!(
        render(&dump, &request, golden_now()).unwrap(),
        "\
Istio Version: 1.24.0
Envoy Version: 0.0.0

NAME                                                         SERVICE FQDN                          PORT     SUBSET     DIRECTION     TYPE       DESTINATION RULE
cluster/agent                                                cluster/agent                         -        -          -             STATIC     
cluster/outbound|9080||reviews.default.svc.cluster.local     reviews.default.svc.cluster.local     9080     -          outbound      EDS        

NAME                  ADDRESSES PORT MATCH DESTINATION
listener/0.0.0.0_9080 0.0.0.0   9080 ALL   Route: 9080

NAME           VHOST NAME                                 DOMAINS                               MATCH     VIRTUAL SERVICE
route/9080     reviews.default.svc.cluster.local:9080     reviews.default.svc.cluster.local     /*        

No active or warming secrets found.

NAME                       STATUS      LOCALITY     CLUSTER
endpoint/10.0.0.7:9080     HEALTHY                  outbound|9080||reviews.default.svc.cluster.local
"
    );
}

#[test]
fn all_with_headers_titles_each_section() {
    let (dump, mut request) = sidecar_request(Kind::All);
    request.with_headers = true;
    let out = render(&dump, &request, golden_now()).unwrap();
    let titles: Vec<&str> = out.lines().filter(|l| l.starts_with("------")).collect();
    assert_eq!(
        titles,
        [
            "------ BOOTSTRAP INFO ------",
            "------ CLUSTER INFO ------",
            "------ LISTENER INFO ------",
            "------ ROUTE INFO ------",
            "------ SECRET INFO ------",
            "------ ENDPOINTS INFO ------",
        ]
    );
    assert!(out.starts_with("------ BOOTSTRAP INFO ------\n\nIstio Version: 1.24.0\n"));
    assert!(out.contains("Envoy Version: 0.0.0\n\n------ CLUSTER INFO ------\n\nNAME"));
}

#[test]
fn json_and_yaml_print_the_selected_resources() {
    let (dump, mut request) = sidecar_request(Kind::Cluster);
    request.format = Format::Raw(Encoding::Json);
    request.filters.fqdn = Some("reviews".into());
    let json: Value =
        serde_json::from_str(&render(&dump, &request, golden_now()).unwrap()).unwrap();
    assert_eq!(
        json,
        json!([{"name": "outbound|9080||reviews.default.svc.cluster.local", "type": "EDS"}])
    );
    request.format = Format::Raw(Encoding::Yaml);
    assert_eq!(
        render(&dump, &request, golden_now()).unwrap(),
        "- name: outbound|9080||reviews.default.svc.cluster.local\n  type: EDS\n"
    );
    let (dump, mut request) = sidecar_request(Kind::Route);
    request.format = Format::Raw(Encoding::Json);
    request.filters.name = Some("none".into());
    assert_eq!(render(&dump, &request, golden_now()).unwrap(), "[]\n");
}

#[test]
fn a_missing_file_names_the_path_and_the_reason() {
    let err = run(&request(Kind::Cluster, Path::new("/nonexistent/dump.json"))).unwrap_err();
    let message = format!("{err:#}");
    assert!(
        message.starts_with("reading config dump /nonexistent/dump.json: No such file"),
        "{message}"
    );
}

#[test]
fn an_unreachable_admin_names_the_address() {
    // A port just released by the OS is as sure to refuse as a test can make it.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mut req = request(Kind::Listener, Path::new("-"));
    req.source = Source::Admin(addr);
    let message = format!("{:#}", run(&req).unwrap_err());
    assert!(
        message.starts_with(&format!(
            "reading the proxy's admin at {addr}: connecting to {addr} (is it running?)"
        )),
        "{message}"
    );
}

#[test]
fn endpoints_of_a_dump_without_eds_say_how_to_get_them() {
    let dir = std::env::temp_dir().join(format!("mizzen-pc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("no-eds.json");
    std::fs::write(&file, r#"{"configs": []}"#).unwrap();
    let message = format!("{:#}", run(&request(Kind::Endpoint, &file)).unwrap_err());
    std::fs::remove_dir_all(&dir).unwrap();
    assert!(
        message.ends_with(
            "no-eds.json: config dump has no EndpointsConfigDump section \
             (Envoy includes one with /config_dump?include_eds)"
        ),
        "{message}"
    );
}
