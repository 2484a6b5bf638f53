//! What the analyzers find in a running mesh, where a user looks for it: a bad
//! `mizzen apply` shows up beside the object in `mizzen get`, as istioctl's line in
//! `mizzen get findings`, and on the service's dashboard page; with the mesh stopped,
//! `mizzen get --dir` analyses the files itself.
//!
//! The test waits on what the mesh prints and on answers; it never sleeps.

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

/// Far longer than startup or an analysis should take: only a lost event hits it.
const WAIT: Duration = Duration::from_secs(60);

const SERVICE: &str = "apiVersion: v1\nkind: Service\nmetadata: {name: reviews}\nspec:\n  selector: {app: reviews}\n  ports: [{name: http, port: 9080}]\n";

/// A VirtualService for reviews that routes to a host no Service defines.
const TO_REVIEWS2: &str = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: reviews}\nspec:\n  hosts: [reviews]\n  http:\n  - route:\n    - destination: {host: reviews2}\n";

const LINE: &str =
    r#"Error [IST0101] (VirtualService default/reviews) Referenced host not found: "reviews2""#;

/// `mizzen up` on a config of one Service (no apps), stopped with Ctrl-C when dropped.
struct Mesh {
    child: Child,
    state: tempfile::TempDir,
    config: tempfile::TempDir,
}

fn mizzen() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mizzen"))
}

impl Mesh {
    fn start() -> Mesh {
        let config = tempfile::tempdir().unwrap();
        std::fs::write(config.path().join("reviews.yaml"), SERVICE).unwrap();
        let state = tempfile::tempdir().unwrap();
        let mut child = mizzen()
            .arg("up")
            .arg(config.path())
            .arg("--state-dir")
            .arg(state.path())
            .args(["--xds-addr", "127.0.0.1:0", "--debug-addr", "127.0.0.1:0"])
            .args(["--tls-addr", "127.0.0.1:0", "--ingress-ip", "127.0.0.1"])
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        // Read to the end, so that the mesh never writes into a closed pipe.
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        let mesh = Mesh {
            child,
            state,
            config,
        };
        let mut printed = Vec::new();
        while !printed
            .last()
            .is_some_and(|l: &String| l.starts_with("Watching"))
        {
            match lines.recv_timeout(WAIT) {
                Ok(line) => printed.push(line),
                Err(e) => panic!("`mizzen up` did not start ({e}): {printed:#?}"),
            }
        }
        mesh
    }

    /// `mizzen ARGS… --state-dir STATE`, which must succeed.
    fn ctl(&self, args: &[&str]) -> Output {
        let out = mizzen()
            .args(args)
            .arg("--state-dir")
            .arg(self.state.path())
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "mizzen {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        out
    }

    /// Stops the mesh as Ctrl-C does.
    fn stop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGINT) };
            let _ = self.child.wait();
        }
    }
}

impl Drop for Mesh {
    fn drop(&mut self) {
        self.stop();
    }
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The FINDINGS column of `name`'s row in a `mizzen get` table.
fn findings_of(table: &str, name: &str) -> Option<String> {
    let mut lines = table.lines();
    assert!(lines.next()?.ends_with(" FINDINGS"), "{table}");
    lines
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|row| row.get(1) == Some(&name))
        .map(|row| row[2].to_owned())
}

fn write_file(dir: &Path, name: &str, text: &str) -> String {
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path.to_str().unwrap().to_owned()
}

#[test]
fn a_bad_apply_shows_in_get_in_get_findings_and_on_the_dashboard() {
    let mut mesh = Mesh::start();
    let services = stdout(&mesh.ctl(&["get", "services"]));
    assert_eq!(findings_of(&services, "reviews").as_deref(), Some("-"));

    let files = tempfile::tempdir().unwrap();
    let bad = write_file(files.path(), "bad.yaml", TO_REVIEWS2);
    mesh.ctl(&["apply", "-f", &bad]);

    // Pilot analyses the change after its debounce; `get` shows what pilot last found.
    let deadline = Instant::now() + WAIT;
    let table = loop {
        let table = stdout(&mesh.ctl(&["get", "virtualservices"]));
        if findings_of(&table, "reviews").as_deref() != Some("-") {
            break table;
        }
        assert!(Instant::now() < deadline, "no finding yet: {table}");
    };
    assert_eq!(
        findings_of(&table, "reviews").as_deref(),
        Some("IST0101"),
        "{table}"
    );
    assert_eq!(
        table
            .lines()
            .next()
            .unwrap()
            .split_whitespace()
            .collect::<Vec<_>>(),
        ["NAMESPACE", "NAME", "FINDINGS"]
    );

    let listed = stdout(&mesh.ctl(&["get", "findings"]));
    assert!(listed.lines().any(|l| l == LINE), "{listed}");
    let json: serde_json::Value = serde_json::from_str(&stdout(
        &mesh.ctl(&["get", "messages", "reviews", "-o", "json"]),
    ))
    .unwrap();
    assert_eq!(json[0]["code"], "IST0101", "{json}");
    assert_eq!(
        json[0]["origin"], "VirtualService default/reviews",
        "{json}"
    );

    // The service's page on the dashboard lists it: the VirtualService applies there.
    let url = stdout(&mesh.ctl(&["dashboard"]));
    let dashboard: SocketAddr = url
        .trim()
        .trim_start_matches("http://")
        .trim_end_matches('/')
        .parse()
        .unwrap();
    let page = mizzen_ctl::http::get(dashboard, "/api/services/default/reviews").unwrap();
    let page: serde_json::Value = serde_json::from_str(&page).unwrap();
    let findings = page["findings"].as_array().unwrap();
    assert!(
        findings.iter().any(|f| f["code"] == "IST0101"
            && f["origin"] == "VirtualService default/reviews"
            && f["message"] == r#"Referenced host not found: "reviews2""#),
        "{page}"
    );

    // With no mesh running, `get --dir` analyses the stored files itself, alike.
    mesh.stop();
    let config = mesh.config.path().to_str().unwrap().to_owned();
    let offline = stdout(&mesh.ctl(&["get", "vs", "--dir", &config]));
    assert_eq!(findings_of(&offline, "reviews").as_deref(), Some("IST0101"));
    let listed = stdout(&mesh.ctl(&["get", "findings", "--dir", &config]));
    assert!(listed.lines().any(|l| l == LINE), "{listed}");
}
