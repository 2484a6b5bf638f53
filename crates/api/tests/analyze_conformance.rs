//! Istio's analyzer test table (`analyze/expectations.json`, from istio/istio's
//! `analyzers_test.go` and `multicluster_analyzers_test.go`), run as Istio's harness runs
//! it: every kind in the input files loaded with no default namespace, the harness's
//! default ingress Pod and Service added unless ingress is off, the named analyzer
//! alone, and its messages compared with the expected `(code, Kind [namespace/]name)`
//! pairs as a multiset (order is irrelevant, duplicates count).

use std::collections::BTreeMap;
use std::path::Path;

use mizzen_api::analyze::{self, ContextBuilder, MeshConfig, MeshNetworks, analyzers};
use mizzen_api::load::Loader;
use mizzen_api::testdata::istio_data;
use serde_json::Value;

/// The analyzers built so far: their cases must all pass. Grows to every analyzer of
/// the table; a case naming an analyzer not listed here fails the run.
const IMPLEMENTED: &[&str] = &[
    "annotations.AlphaAnalyzer",
    "annotations.K8sAnalyzer",
    "applicationUID.Analyzer",
    "auth.AuthorizationPoliciesAnalyzer",
    "authn.BlockedCIDRsAnalyzer",
    "conditions.ConditionAnalyzer",
    "deployment.MultiServiceAnalyzer",
    "deprecation.DeprecationAnalyzer",
    "destinationrule.CaCertificateAnalyzer",
    "destinationrule.SubsetSelectPodAnalyzer",
    "envoyfilter.EnvoyPatchAnalyzer",
    "externalcontrolplane.ExternalControlPlaneAnalyzer",
    "gateway.CertificateAnalyzer",
    "gateway.ConflictingGatewayAnalyzer",
    "gateway.IngressGatewayPortAnalyzer",
    "gateway.SecretAnalyzer",
    "injection.Analyzer",
    "injection.ImageAnalyzer",
    "injection.ImageAutoAnalyzer",
    "k8sgateway.CRDVersionAnalyzer",
    "k8sgateway.SelectorAnalyzer",
    "meshnetworks.MeshNetworksAnalyzer",
    "schema.ValidationAnalyzer.VirtualService",
    "service.PortNameAnalyzer",
    "serviceentry.Analyzer",
    "serviceentry.ConflictingServiceEntryProtocolAnalyzer",
    "services.MultiClusterServiceAnalyzer",
    "sidecar.SelectorAnalyzer",
    "telemetry.DefaultSelectorAnalyzer",
    "telemetry.LightstepAnalyzer",
    "telemetry.ProviderAnalyzer",
    "telemetry.SelectorAnalyzer",
    "virtualservice.ConflictingMeshGatewayHostsAnalyzer",
    "virtualservice.DestinationHostAnalyzer",
    "virtualservice.DestinationRuleAnalyzer",
    "virtualservice.GatewayAnalyzer",
    "virtualservice.JWTClaimRouteAnalyzer",
    "webhook.Analyzer",
];

/// Runs one case, returning what differs from the expectation (empty when it passes).
fn run_case(dir: &Path, case: &Value) -> Result<(), String> {
    let name = case["analyzer"].as_str().expect("analyzer");
    let analyzer = analyzers::by_name(name).ok_or_else(|| format!("no analyzer {name}"))?;
    let testdata = dir.join("testdata");
    let mut builder = ContextBuilder::new();
    if let Some(file) = case["meshConfigFile"].as_str() {
        let mesh = MeshConfig::from_file(&testdata.join(file)).map_err(|e| e.to_string())?;
        builder = builder.mesh_config(mesh);
    }
    if let Some(file) = case["meshNetworksFile"].as_str() {
        let networks = MeshNetworks::from_file(&testdata.join(file)).map_err(|e| e.to_string())?;
        builder = builder.mesh_networks(networks);
    }
    let loader = Loader::new().default_namespace(None).lenient(true);
    let clusters: Vec<(String, Vec<String>)> = match case["clusters"].as_object() {
        Some(clusters) => clusters
            .iter()
            .map(|(cluster, files)| (cluster.clone(), strings(files)))
            .collect(),
        None => vec![(String::new(), strings(&case["inputFiles"]))],
    };
    let mut load_errors = Vec::new();
    for (cluster, files) in &clusters {
        builder.cluster(cluster);
        for file in files {
            let path = testdata.join(file);
            let text = std::fs::read_to_string(&path).map_err(|e| format!("{file}: {e}"))?;
            let errors = builder.add_text(&loader, &text, Some(Path::new(file)));
            load_errors.extend(errors.iter().map(ToString::to_string));
        }
        builder.add_default_resources();
    }
    let ctx = builder.build();
    let analysis = analyze::run(&ctx, &[analyzer]);
    let mut got: Vec<(String, String)> = analysis
        .messages
        .iter()
        .map(|m| (m.ty.code.to_owned(), m.origin().unwrap_or_default()))
        .collect();
    let mut want: Vec<(String, String)> = case["expected"]
        .as_array()
        .expect("expected")
        .iter()
        .map(|m| {
            let field = |k: &str| m[k].as_str().expect(k).to_owned();
            (field("code"), field("resource"))
        })
        .collect();
    got.sort();
    want.sort();
    if got == want {
        return Ok(());
    }
    let mut report = format!("want {want:?}\n      got  {got:?}");
    if !load_errors.is_empty() {
        report.push_str(&format!("\n      load errors: {load_errors:#?}"));
    }
    Err(report)
}

fn strings(value: &Value) -> Vec<String> {
    value
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(str::to_owned))
        .collect()
}

#[test]
fn istio_analyzer_table() {
    let Some(data) = istio_data() else { return };
    let dir = data.join("analyze");
    let text = std::fs::read_to_string(dir.join("expectations.json")).expect("expectations");
    let cases: Vec<Value> = serde_json::from_str(&text).expect("expectations parse");

    // analyzer -> (passed, total)
    let mut tally: BTreeMap<&str, (usize, usize)> = BTreeMap::new();
    let mut failures = Vec::new();
    let mut pending = BTreeMap::new();
    for case in &cases {
        let analyzer = case["analyzer"].as_str().expect("analyzer");
        let subtest = case["goSubtest"].as_str().expect("goSubtest");
        if !IMPLEMENTED.contains(&analyzer) {
            *pending.entry(analyzer).or_insert(0) += 1;
            continue;
        }
        let counts = tally.entry(analyzer).or_default();
        counts.1 += 1;
        match run_case(&dir, case) {
            Ok(()) => counts.0 += 1,
            Err(diff) => failures.push(format!("{subtest} ({analyzer}):\n      {diff}")),
        }
    }
    let (mut passed, mut total) = (0, 0);
    for (analyzer, (p, t)) in &tally {
        println!("{p:>3}/{t:<3} {analyzer}");
        passed += p;
        total += t;
    }
    println!("{passed}/{total} cases passed");
    for (analyzer, n) in &pending {
        println!("not built yet: {analyzer} ({n} cases)");
    }
    assert!(
        failures.is_empty(),
        "failing cases:\n{}",
        failures.join("\n")
    );
    let unknown: Vec<&&str> = IMPLEMENTED
        .iter()
        .filter(|a| !tally.contains_key(**a))
        .collect();
    assert!(unknown.is_empty(), "listed but in no case: {unknown:?}");
}

#[test]
fn catalogue_equals_istio_messages_yaml() {
    let Some(data) = istio_data() else { return };
    let text = std::fs::read_to_string(data.join("analyze/messages.yaml")).expect("messages");
    let doc: Value = serde_yaml_ng::from_str(&text).expect("messages parse");
    let want: Vec<Value> = doc["messages"].as_array().expect("messages").clone();
    let got = analyze::catalogue::ALL;
    assert_eq!(got.len(), want.len(), "catalogue size");
    for (m, w) in got.iter().zip(&want) {
        let args: Vec<&str> = w["args"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|a| a["name"].as_str().expect("arg name"))
            .collect();
        let expected = (
            w["name"].as_str(),
            w["code"].as_str(),
            w["level"].as_str(),
            w["description"].as_str().map(str::trim),
            w["template"].as_str(),
            args,
        );
        let actual = (
            Some(m.name),
            Some(m.code),
            Some(m.level.as_str()),
            Some(m.description),
            Some(m.template),
            m.args.to_vec(),
        );
        assert_eq!(actual, expected);
    }
}
