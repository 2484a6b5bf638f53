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
    let (tx, rx) = mpsc::channel();
    let stdout = child.stdout.take().unwrap();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
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
    let mut child = Command::new(MIZZEN)
        .arg("up")
        .arg(dir.path())
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
