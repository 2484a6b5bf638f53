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
