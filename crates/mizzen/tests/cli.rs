//! The `mizzen` binary as a user runs it.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

const MIZZEN: &str = env!("CARGO_BIN_EXE_mizzen");

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap();
}

const SERVICE: &str = "apiVersion: v1\nkind: Service\nmetadata:\n  name: reviews\nspec:\n  ports:\n  - name: http\n    port: 9080\n";

#[test]
fn validate_exits_zero_on_valid_config_and_one_on_invalid() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("good.yaml"), SERVICE);
    let ok = Command::new(MIZZEN)
        .args(["validate", "-f"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(ok.status.success(), "{ok:?}");
    assert_eq!(
        String::from_utf8_lossy(&ok.stdout),
        "validation succeed: 1 objects\n"
    );

    let bad = dir.path().join("bad.yaml");
    write(&bad, &SERVICE.replace("9080", "0"));
    let out = Command::new(MIZZEN)
        .args(["validate", "-f"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.contains("bad.yaml:8 (document 1): Service default/reviews: spec.ports[0].port: port must be between 1-65535, got 0"), "{stdout}");
}

#[test]
fn every_example_is_valid_config() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    for example in std::fs::read_dir(&examples).unwrap().flatten() {
        // `proxy/` holds Envoy bootstraps, not Istio config.
        if example.file_name() == "proxy" {
            continue;
        }
        let out = Command::new(MIZZEN)
            .args(["validate", "-f"])
            .arg(example.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}: {}",
            example.path().display(),
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

#[test]
fn validate_reads_stdin() {
    let mut child = Command::new(MIZZEN)
        .args(["validate", "-f", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(SERVICE.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
}

#[test]
fn validate_refuses_a_missing_file_with_a_clear_message() {
    let out = Command::new(MIZZEN)
        .args(["validate", "-f", "/nonexistent/x.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&out.stdout)
            .contains("/nonexistent/x.yaml: No such file or directory")
    );
}

/// Reads the child's stdout lines on a thread so the test can wait with a timeout.
fn lines_of(child: &mut std::process::Child) -> mpsc::Receiver<String> {
    lines(child.stdout.take().unwrap())
}

/// Reads `output`'s lines on a thread so the test can wait with a timeout.
fn lines(output: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(output).lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    rx
}

fn wait_for(lines: &mpsc::Receiver<String>, want: &str) -> Vec<String> {
    let mut seen = Vec::new();
    loop {
        match lines.recv_timeout(Duration::from_secs(20)) {
            Ok(line) => {
                let done = line.contains(want);
                seen.push(line);
                if done {
                    return seen;
                }
            }
            Err(e) => panic!("waiting for {want:?}: {e}; saw {seen:#?}"),
        }
    }
}

#[test]
fn up_reports_config_changes_and_refused_edits() {
    let dir = tempfile::tempdir().unwrap();
    write(&dir.path().join("svc.yaml"), SERVICE);
    let state = tempfile::tempdir().unwrap();
    let mut child = Command::new(MIZZEN)
        .arg("up")
        .arg(dir.path())
        .arg("--state-dir")
        .arg(state.path())
        .args(["--xds-addr", "127.0.0.1:0", "--debug-addr", "127.0.0.1:0"])
        .args(["--ingress-ip", "127.0.0.1"])
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = lines_of(&mut child);
    let start = wait_for(&lines, "Watching");
    assert!(
        start[0].contains("at revision 1: 1 objects (1 Service)"),
        "{start:?}"
    );

    write(
        &dir.path().join("svc.yaml"),
        &SERVICE.replace("9080", "9081"),
    );
    wait_for(&lines, "revision 2: updated Service default/reviews");
    write(
        &dir.path().join("svc.yaml"),
        &SERVICE.replace("9080", "99999"),
    );
    let refused = wait_for(&lines, "refused");
    assert!(
        refused
            .last()
            .unwrap()
            .contains("port must be between 1-65535"),
        "{refused:?}"
    );
    std::fs::remove_file(dir.path().join("svc.yaml")).unwrap();
    wait_for(&lines, "revision 3: removed Service default/reviews");
    child.kill().unwrap();
    child.wait().unwrap();
}

#[test]
fn up_refuses_a_missing_directory() {
    let out = Command::new(MIZZEN)
        .args(["up", "/nonexistent/mesh"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr)
            .contains("config directory /nonexistent/mesh does not exist")
    );
}

/// Runs `mizzen ARGS` and returns its stdout, asserting it succeeded.
fn mizzen_ok(args: &[&str]) -> String {
    let out = Command::new(MIZZEN).args(args).output().unwrap();
    assert!(out.status.success(), "mizzen {args:?}: {out:?}");
    String::from_utf8(out.stdout).unwrap()
}

/// A sidecar's config dump, as Envoy's `/config_dump?include_eds` prints it.
const SIDECAR_DUMP: &str = r#"{"configs": [
  {"@type": "type.googleapis.com/envoy.admin.v3.ClustersConfigDump",
   "dynamic_active_clusters": [
     {"cluster": {"@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster",
       "name": "outbound|9080|v2|reviews.default.svc.cluster.local", "type": "EDS",
       "metadata": {"filter_metadata": {"istio": {"config": "/apis/networking.istio.io/v1/namespaces/default/destination-rule/reviews"}}}}},
     {"cluster": {"@type": "type.googleapis.com/envoy.config.cluster.v3.Cluster",
       "name": "outbound|9080||details.default.svc.cluster.local", "type": "EDS"}}]},
  {"@type": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump",
   "dynamic_listeners": [{"name": "0.0.0.0_9080", "active_state": {"listener": {
     "@type": "type.googleapis.com/envoy.config.listener.v3.Listener",
     "name": "0.0.0.0_9080",
     "address": {"socket_address": {"address": "0.0.0.0", "port_value": 9080}},
     "filter_chains": [{"filter_chain_match": {"application_protocols": ["http/1.0", "http/1.1", "h2c"]},
       "filters": [{"name": "envoy.filters.network.http_connection_manager",
         "typed_config": {"@type": "type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
           "rds": {"route_config_name": "9080"}}}]}]}}}]},
  {"@type": "type.googleapis.com/envoy.admin.v3.RoutesConfigDump",
   "dynamic_route_configs": [{"route_config": {"@type": "type.googleapis.com/envoy.config.route.v3.RouteConfiguration",
     "name": "9080", "virtual_hosts": [{"name": "reviews.default.svc.cluster.local:9080",
       "domains": ["reviews.default.svc.cluster.local", "reviews", "reviews.default"],
       "routes": [{"match": {"prefix": "/"}, "route": {"cluster": "outbound|9080|v2|reviews.default.svc.cluster.local"},
         "metadata": {"filter_metadata": {"istio": {"config": "/apis/networking.istio.io/v1/namespaces/default/virtual-service/reviews"}}}}]}]}}]},
  {"@type": "type.googleapis.com/envoy.admin.v3.EndpointsConfigDump",
   "dynamic_endpoint_configs": [{"endpoint_config": {"@type": "type.googleapis.com/envoy.config.endpoint.v3.ClusterLoadAssignment",
     "cluster_name": "outbound|9080|v2|reviews.default.svc.cluster.local",
     "endpoints": [{"locality": {"region": "us-east1"}, "lb_endpoints": [
       {"endpoint": {"address": {"socket_address": {"address": "10.0.0.7", "port_value": 9080}}}, "health_status": "HEALTHY"}]}]}}]}
]}"#;

#[test]
fn proxy_config_prints_istioctl_tables_from_a_saved_dump() {
    let dir = tempfile::tempdir().unwrap();
    let dump = dir.path().join("dump.json");
    write(&dump, SIDECAR_DUMP);
    let dump = dump.to_str().unwrap();
    assert_eq!(
        mizzen_ok(&["proxy-config", "cluster", "--file", dump]),
        "\
SERVICE FQDN                          PORT     SUBSET     DIRECTION     TYPE     DESTINATION RULE
details.default.svc.cluster.local     9080     -          outbound      EDS      
reviews.default.svc.cluster.local     9080     v2         outbound      EDS      reviews.default
"
    );
    assert_eq!(
        mizzen_ok(&[
            "pc",
            "listeners",
            "-f",
            dump,
            "--port",
            "9080",
            "--type",
            "http"
        ]),
        "ADDRESSES PORT MATCH     DESTINATION\n0.0.0.0   9080 App: HTTP Route: 9080\n"
    );
    assert_eq!(
        mizzen_ok(&["pc", "routes", "-f", dump, "--name", "9080"]),
        "\
NAME     VHOST NAME                                 DOMAINS                      MATCH     VIRTUAL SERVICE
9080     reviews.default.svc.cluster.local:9080     reviews, reviews.default     /*        reviews.default
"
    );
    assert_eq!(
        mizzen_ok(&["pc", "endpoints", "-f", dump, "--status", "healthy"]),
        "\
NAME              STATUS      LOCALITY     CLUSTER
10.0.0.7:9080     HEALTHY     us-east1     outbound|9080|v2|reviews.default.svc.cluster.local
"
    );
    assert_eq!(
        mizzen_ok(&[
            "pc", "clusters", "-f", dump, "--fqdn", "details", "-o", "yaml"
        ]),
        "- name: outbound|9080||details.default.svc.cluster.local\n  type: EDS\n"
    );
}

#[test]
fn proxy_config_matches_istioctl_on_its_own_golden() {
    let Some(data) = mizzen_api::testdata::istio_data() else {
        return;
    };
    let case = data
        .join("istioctl/writer/envoy/configdump/testdata/routes/istio-gateway-http-route-prefix");
    let got = mizzen_ok(&[
        "proxy-config",
        "route",
        "-f",
        case.join("configdump.json").to_str().unwrap(),
    ]);
    assert_eq!(
        got,
        std::fs::read_to_string(case.join("output.txt")).unwrap()
    );
}

#[test]
fn proxy_config_reads_a_running_mizzen_proxy() {
    let dir = tempfile::tempdir().unwrap();
    let bootstrap = dir.path().join("bootstrap.yaml");
    write(
        &bootstrap,
        r#"
node: {id: sidecar~127.0.0.1~reviews-v1.default~default.svc.cluster.local, metadata: {ISTIO_VERSION: "1.24.0"}}
admin: {address: {socket_address: {address: 127.0.0.1, port_value: 0}}}
static_resources:
  clusters:
  - name: outbound|9080||reviews.default.svc.cluster.local
    type: STATIC
    load_assignment:
      cluster_name: outbound|9080||reviews.default.svc.cluster.local
      endpoints: [{lb_endpoints: [{endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: 9}}}}]}]
  listeners:
  - name: web
    address: {socket_address: {address: 127.0.0.1, port_value: 0}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.tcp_proxy
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy
          stat_prefix: web
          cluster: outbound|9080||reviews.default.svc.cluster.local
"#,
    );
    let mut proxy = Command::new(MIZZEN)
        .arg("proxy")
        .arg("-c")
        .arg(&bootstrap)
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = lines(proxy.stderr.take().unwrap());
    let started = wait_for(&stderr, "admin on http://");
    let admin = started
        .last()
        .unwrap()
        .rsplit("http://")
        .next()
        .unwrap()
        .to_owned();

    let clusters = mizzen_ok(&["proxy-config", "cluster", &admin]);
    let listeners = mizzen_ok(&["proxy-config", "listener", "--admin", &admin]);
    // The proxy's text `/clusters`, read as istioctl reads Envoy's JSON one.
    let endpoints = mizzen_ok(&["proxy-config", "endpoint", &admin]);
    let versions = mizzen_ok(&["proxy-config", "bootstrap", &admin, "-o", "short"]);
    proxy.kill().unwrap();
    proxy.wait().unwrap();

    assert_eq!(
        clusters,
        "\
SERVICE FQDN                          PORT     SUBSET     DIRECTION     TYPE       DESTINATION RULE
reviews.default.svc.cluster.local     9080     -          outbound      STATIC     
"
    );
    assert_eq!(
        listeners,
        "\
ADDRESSES PORT MATCH DESTINATION
127.0.0.1 0    ALL   Cluster: outbound|9080||reviews.default.svc.cluster.local
"
    );
    assert_eq!(
        endpoints,
        "\
ENDPOINT        STATUS      OUTLIER CHECK     CLUSTER
127.0.0.1:9     HEALTHY     OK                outbound|9080||reviews.default.svc.cluster.local
"
    );
    assert_eq!(versions, "Istio Version: 1.24.0\nEnvoy Version: 0.0.0\n");
}

#[test]
fn proxy_config_names_a_missing_file_or_an_unreachable_admin() {
    let out = Command::new(MIZZEN)
        .args(["proxy-config", "cluster", "-f", "/nonexistent/dump.json"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "Error: reading config dump /nonexistent/dump.json: No such file or directory (os error 2)\n"
    );

    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.json");
    write(&bad, "{\"configs\": [");
    let out = Command::new(MIZZEN)
        .args(["proxy-config", "listener", "-f"])
        .arg(&bad)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("bad.json: not a JSON config dump: EOF while parsing"),
        "{stderr}"
    );

    // A port just released is refused: nothing listens there.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .to_string();
    let out = Command::new(MIZZEN)
        .args(["proxy-config", "route", "--admin", &addr])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.starts_with(&format!(
            "Error: reading the proxy's admin at {addr}: connecting to {addr} (is it running?): "
        )),
        "{stderr}"
    );
}

/// One HTTP/1.0 exchange with `addr`; the response's status line and body.
fn http(addr: &str, method: &str, path: &str) -> (String, String) {
    use std::io::Read;
    let mut stream = std::net::TcpStream::connect(addr).unwrap();
    write!(
        stream,
        "{method} {path} HTTP/1.0\r\nHost: admin\r\nContent-Length: 0\r\n\r\n"
    )
    .unwrap();
    let mut text = String::new();
    stream.read_to_string(&mut text).unwrap();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    (
        head.lines().next().unwrap_or("").to_owned(),
        body.to_owned(),
    )
}

#[test]
fn proxy_runs_an_envoy_bootstrap_and_changes_log_levels_at_run_time() {
    let dir = tempfile::tempdir().unwrap();
    let bootstrap = dir.path().join("bootstrap.yaml");
    write(
        &bootstrap,
        r#"
admin: {address: {socket_address: {address: 127.0.0.1, port_value: 0}}}
static_resources:
  listeners:
  - name: hello
    address: {socket_address: {address: 127.0.0.1, port_value: 0}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: hello
          http_filters:
          - name: envoy.filters.http.router
            typed_config: {"@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router}
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes: [{match: {prefix: "/"}, direct_response: {status: 200, body: {inline_string: "hello\n"}}}]
"#,
    );
    let mut child = Command::new(MIZZEN)
        .args(["proxy", "-c"])
        .arg(&bootstrap)
        .args(["--concurrency", "1", "-l", "warn"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, lines) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            if tx.send(line.unwrap()).is_err() {
                break;
            }
        }
    });
    let seen = wait_for(&lines, "admin on http://");
    let admin = seen
        .last()
        .unwrap()
        .rsplit("http://")
        .next()
        .unwrap()
        .to_owned();

    let (status, levels) = http(&admin, "GET", "/logging");
    assert!(status.contains("200"), "{status}");
    assert!(levels.contains("  upstream: warn\n"), "{levels}");
    let (status, levels) = http(&admin, "POST", "/logging?upstream=debug");
    assert!(status.contains("200"), "{status}");
    assert!(
        levels.contains("  upstream: debug\n") && levels.contains("  http: warn\n"),
        "{levels}"
    );
    let (status, body) = http(&admin, "POST", "/logging?upstream=loud");
    assert!(
        status.contains("400") && body.contains("unknown log level \"loud\""),
        "{status} {body}"
    );

    let (status, _) = http(&admin, "POST", "/quitquitquit");
    assert!(status.contains("200"), "{status}");
    let exit = child.wait().unwrap();
    assert!(exit.success(), "{exit}");
}
