//! `mizzen up` end to end, driven as a user drives it: the built binary on a small
//! mesh of Python apps (a `hello` service and a `client` that calls it through its
//! sidecar), then `apply`, `get`, `logs`, a second `up`, and Ctrl-C; and on the
//! Bookinfo demo, with Istio's own routing samples applied and judged from the product
//! page a user sees through the ingress.
//!
//! Tests wait on what the mesh prints and on answers; they never sleep.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Instant;

use common::up::{ONE_MESH, Up, WAIT, mizzen};

const HELLO: &str = r#"
import http.server, os
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        body = ("hello from " + os.environ["POD_NAME"]).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
    def log_message(self, *args):
        print("hello served", self.path, flush=True)
print("hello listening on", os.environ["POD_IP"], os.environ["PORT"], flush=True)
http.server.HTTPServer((os.environ["POD_IP"], int(os.environ["PORT"])), H).serve_forever()
"#;

/// Calls `http://hello:9080/` through `HTTP_PROXY` (urllib reads it) and says what
/// it got.
const CLIENT: &str = r#"
import http.server, os, urllib.request, urllib.error
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        try:
            with urllib.request.urlopen("http://hello:9080/", timeout=10) as r:
                status, text = r.status, r.read().decode()
        except urllib.error.HTTPError as e:
            status, text = e.code, e.read().decode()
        body = ("client got %d: %s" % (status, text)).encode()
        self.send_response(200)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)
http.server.HTTPServer((os.environ["POD_IP"], int(os.environ["PORT"])), H).serve_forever()
"#;

/// A Deployment of one replica running `python3 DIR/SCRIPT`, its pods labelled
/// `app: APP, version: VERSION`.
fn deployment(dir: &Path, name: &str, app: &str, version: &str, script: &str) -> String {
    format!(
        r#"---
apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}}}
spec:
  replicas: 1
  selector: {{matchLabels: {{app: {app}}}}}
  template:
    metadata: {{labels: {{app: {app}, version: {version}}}}}
    spec:
      serviceAccountName: {app}
      containers:
      - name: {app}
        command: ["python3", "{}"]
        ports: [{{containerPort: 9080}}]
"#,
        dir.join(script).display()
    )
}

fn mesh_yaml(dir: &Path) -> String {
    let service = |app: &str| {
        format!(
            "---\napiVersion: v1\nkind: Service\nmetadata: {{name: {app}}}\nspec:\n  selector: {{app: {app}}}\n  ports: [{{name: http, port: 9080}}]\n"
        )
    };
    [
        service("hello"),
        deployment(dir, "hello-v1", "hello", "v1", "hello.py"),
        service("client"),
        deployment(dir, "client-v1", "client", "v1", "client.py"),
    ]
    .concat()
}

impl Up {
    /// The mesh of the two Python apps.
    fn start() -> Up {
        let apps = tempfile::tempdir().unwrap();
        std::fs::write(apps.path().join("hello.py"), HELLO).unwrap();
        std::fs::write(apps.path().join("client.py"), CLIENT).unwrap();
        let config = tempfile::tempdir().unwrap();
        std::fs::write(config.path().join("mesh.yaml"), mesh_yaml(apps.path())).unwrap();
        Up::start_on(config, Some(apps), "127.0.0.1")
    }
}

/// `GET http://ADDR/` over a new connection: the status and body.
fn get(addr: SocketAddr) -> (u16, String) {
    let mut stream = TcpStream::connect_timeout(&addr, WAIT).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    write!(
        stream,
        "GET / HTTP/1.1\r\nhost: client:9080\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    let status = response[9..12].parse().unwrap();
    let body = response
        .split_once("\r\n\r\n")
        .map_or("", |(_, b)| b)
        .to_owned();
    (status, body)
}

/// Calls the client app (through its sidecar's inbound port) until `done` holds for
/// what it says, returning that answer.
fn call_client_until(up: &Up, done: impl Fn(&str) -> bool) -> String {
    let addr: SocketAddr = format!("{}:9080", up.pod_ip("client-v1-1"))
        .parse()
        .unwrap();
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, body) = get(addr);
        if status == 200 && done(&body) {
            return body;
        }
        assert!(Instant::now() < deadline, "still {status} {body:?}");
    }
}

/// The live processes in process group `group`.
fn in_group(group: u32) -> Vec<String> {
    std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|stat| {
            // State, then parent, then process group; a zombie is dead, waiting only
            // for init to reap it.
            let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
            let mut fields = after.split_whitespace();
            fields.next() != Some("Z") && fields.nth(1) == Some(group.to_string().as_str())
        })
        .collect()
}

/// The files under `dir` and their contents (the store may leave an empty namespace
/// directory behind, which holds no config).
fn files_in(dir: &Path) -> Vec<(PathBuf, String)> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .flatten()
        .flat_map(|e| match e.path().is_dir() {
            true => files_in(&e.path()).into_iter().map(|(p, _)| p).collect(),
            false => vec![e.path()],
        })
        .map(|p| {
            let text = std::fs::read_to_string(&p).unwrap_or_default();
            (p, text)
        })
        .collect();
    files.sort();
    files
}

#[test]
fn up_runs_the_mesh_and_ctrl_c_stops_it_all() {
    let _one = ONE_MESH.lock().unwrap_or_else(|e| e.into_inner());
    let mut up = Up::start();
    let config_before = files_in(up.config.path());

    // The client app reaches the hello service through its sidecar.
    let body = call_client_until(&up, |b| b.starts_with("client got 200"));
    assert_eq!(body, "client got 200: hello from hello-v1-1");

    // A second `up` on the same state directory is refused, naming the first.
    let second = up.ctl(&["up", up.config.path().to_str().unwrap()]);
    assert!(!second.status.success());
    let err = String::from_utf8_lossy(&second.stderr);
    assert!(err.contains(&format!("pid {}", up.child.id())), "{err}");
    assert!(
        err.contains(&up.state.path().display().to_string()),
        "{err}"
    );

    // An invalid object is refused, naming it, and nothing is written.
    let rules = tempfile::tempdir().unwrap();
    let invalid = rules.path().join("invalid.yaml");
    std::fs::write(
        &invalid,
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: hello}\nspec:\n  hosts: [hello]\n  http:\n  - route:\n    - destination: {host: hello}\n      weight: -5\n",
    )
    .unwrap();
    let refused = up.ctl(&["apply", "-f", invalid.to_str().unwrap()]);
    assert!(!refused.status.success());
    let err = String::from_utf8_lossy(&refused.stderr);
    assert!(err.contains("VirtualService default/hello"), "{err}");
    assert!(err.contains("weight"), "{err}");
    assert_eq!(files_in(up.config.path()), config_before, "nothing written");

    // A VirtualService takes effect through the mesh: hello now answers 418.
    let fault = rules.path().join("fault.yaml");
    std::fs::write(
        &fault,
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: hello}\nspec:\n  hosts: [hello]\n  http:\n  - fault: {abort: {httpStatus: 418, percentage: {value: 100}}}\n    route:\n    - destination: {host: hello}\n",
    )
    .unwrap();
    let applied = up.ctl(&["apply", "-f", fault.to_str().unwrap()]);
    assert!(
        applied.status.success(),
        "{}",
        String::from_utf8_lossy(&applied.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&applied.stdout),
        "virtualservice/hello created\n"
    );
    call_client_until(&up, |b| b.starts_with("client got 418"));
    let listed = up.ctl(&["get", "vs", "-o", "yaml"]);
    assert!(String::from_utf8_lossy(&listed.stdout).contains("httpStatus: 418"));
    let deleted = up.ctl(&["delete", "-f", fault.to_str().unwrap()]);
    assert!(
        deleted.status.success(),
        "{}",
        String::from_utf8_lossy(&deleted.stderr)
    );
    call_client_until(&up, |b| b.starts_with("client got 200"));
    assert_eq!(
        files_in(up.config.path()),
        config_before,
        "the user's files as they were"
    );

    // `mizzen run` meshes a program of one's own: it reaches hello through a sidecar
    // of its own, and its exit status is run's.
    let ran = mizzen()
        .args(["run", "--name", "visitor", "--state-dir"])
        .arg(up.state.path())
        .args([
            "--",
            "python3",
            "-c",
            "import urllib.request; print(urllib.request.urlopen('http://hello:9080/', timeout=10).read().decode()); raise SystemExit(7)",
        ])
        .output()
        .unwrap();
    assert_eq!(
        ran.status.code(),
        Some(7),
        "{}",
        String::from_utf8_lossy(&ran.stderr)
    );
    assert!(
        String::from_utf8_lossy(&ran.stdout).contains("hello from hello-v1-1"),
        "{}",
        String::from_utf8_lossy(&ran.stdout)
    );

    // The app's output is in its log.
    let logs = up.ctl(&["logs", "hello-v1"]);
    assert!(String::from_utf8_lossy(&logs.stdout).contains("hello served /"));

    // `proxy-config` finds a proxy by its pod's name, as istioctl does: sidecars and the
    // ingress gateway (whose admin has a port of its own).
    let secrets = up.ctl(&["proxy-config", "secret", "hello-v1-1"]);
    let secrets = String::from_utf8_lossy(&secrets.stdout);
    assert!(
        secrets
            .lines()
            .any(|l| l.starts_with("default") && l.contains("Cert Chain") && l.contains("ACTIVE")),
        "{secrets}"
    );
    let routes = up.ctl(&[
        "pc",
        "routes",
        "client-v1-1.default",
        "--name",
        "http_proxy",
    ]);
    assert!(
        String::from_utf8_lossy(&routes.stdout).contains("hello.default.svc.cluster.local:9080")
    );
    let gateway = up.ctl(&["pc", "bootstrap", "istio-ingressgateway-1.istio-system"]);
    assert!(
        gateway.status.success(),
        "{}",
        String::from_utf8_lossy(&gateway.stderr)
    );
    assert!(
        String::from_utf8_lossy(&gateway.stdout).contains("istio-ingressgateway-1.istio-system")
    );
    // `proxy-status` finds the mesh's pilot (here on a free port) from the state directory.
    let status = up.ctl(&["proxy-status"]);
    let status = String::from_utf8_lossy(&status.stdout);
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("hello-v1-1.default") && l.contains("SYNCED")),
        "{status}"
    );
    let unknown = up.ctl(&["pc", "clusters", "nosuch-v1-1"]);
    assert!(!unknown.status.success());
    let err = String::from_utf8_lossy(&unknown.stderr);
    assert!(
        err.contains("no proxy \"nosuch-v1-1\"") && err.contains("hello-v1-1.default"),
        "{err}"
    );

    // A Deployment applied while the mesh runs gets its replica, sidecar and all: the
    // client's calls reach hello-v2 beside hello-v1. Deleted, its replicas stop and
    // leave the mesh: their apps are gone and every call is hello-v1's again.
    let apps_dir = up.apps.as_ref().unwrap().path().to_owned();
    let v2 = rules.path().join("hello-v2.yaml");
    std::fs::write(
        &v2,
        deployment(&apps_dir, "hello-v2", "hello", "v2", "hello.py"),
    )
    .unwrap();
    up.ctl_ok(&["apply", "-f", v2.to_str().unwrap()]);
    up.wait_for_line("  started hello-v2-1 at ");
    call_client_until(&up, |b| b == "client got 200: hello from hello-v2-1");
    let pods: serde_json::Value =
        serde_json::from_str(&up.ctl_ok(&["get", "pods", "hello-v2-1", "-o", "json"])).unwrap();
    assert_eq!(pods[0]["status"], "Running", "{pods}");
    let v2_pid: u32 = pods[0]["detail"]
        .as_str()
        .unwrap()
        .trim_start_matches("pid ")
        .parse()
        .unwrap();
    // Scaled to two replicas, it gets a second one; the first runs on untouched.
    let scaled = std::fs::read_to_string(&v2)
        .unwrap()
        .replace("replicas: 1", "replicas: 2");
    std::fs::write(&v2, scaled).unwrap();
    up.ctl_ok(&["apply", "-f", v2.to_str().unwrap()]);
    up.wait_for_line("  started hello-v2-2 at ");
    call_client_until(&up, |b| b == "client got 200: hello from hello-v2-2");
    let pods: serde_json::Value =
        serde_json::from_str(&up.ctl_ok(&["get", "pods", "hello-v2-1", "-o", "json"])).unwrap();
    assert_eq!(pods[0]["detail"], format!("pid {v2_pid}"), "{pods}");
    up.ctl_ok(&["delete", "-f", v2.to_str().unwrap()]);
    up.wait_for_line("  stopped hello-v2-1");
    up.wait_for_line("  stopped hello-v2-2");
    assert!(in_group(v2_pid).is_empty(), "left: {:?}", in_group(v2_pid));
    let listed = up.ctl_ok(&["get", "pods"]);
    assert!(!listed.contains("hello-v2"), "{listed}");
    // Once the client's sidecar has the endpoint gone, every call is v1's: ten in a row.
    let deadline = Instant::now() + WAIT;
    let mut in_a_row = 0;
    while in_a_row < 10 {
        let body = call_client_until(&up, |_| true);
        in_a_row = if body == "client got 200: hello from hello-v1-1" {
            in_a_row + 1
        } else {
            0
        };
        assert!(Instant::now() < deadline, "still {body:?}");
    }

    // Ctrl-C: every app process gone, every address free, the lock released.
    let pods: serde_json::Value =
        serde_json::from_slice(&up.ctl(&["get", "pods", "-o", "json"]).stdout).unwrap();
    let apps: Vec<(u32, String)> = pods
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            assert_eq!(p["status"], "Running", "{pods}");
            let pid = p["detail"]
                .as_str()
                .unwrap()
                .trim_start_matches("pid ")
                .parse()
                .unwrap();
            (pid, p["ip"].as_str().unwrap().to_owned())
        })
        .collect();
    assert_eq!(apps.len(), 2, "{pods}");
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(up.child.id() as libc::pid_t, libc::SIGINT) };
    let status = up.child.wait().unwrap();
    assert!(status.success(), "{status}");
    for (pid, ip) in &apps {
        assert!(in_group(*pid).is_empty(), "left: {:?}", in_group(*pid));
        for port in [9080, 15080, 15000] {
            TcpListener::bind(format!("{ip}:{port}"))
                .unwrap_or_else(|e| panic!("{ip}:{port} still bound: {e}"));
        }
    }
    let again = up.ctl(&["get", "pods"]);
    assert!(!again.status.success(), "no mesh runs any more");
}

/// What the product page shows of the reviews: who served them and the stars' colour
/// (`None` for reviews v1, which shows no stars).
#[derive(Debug, PartialEq, Eq)]
struct Reviews {
    served_by: String,
    stars: Option<String>,
}

/// `GET /productpage` through the ingress at `ingress`, as `user` (signed in with the
/// session cookie `/login` sets) or signed out.
fn product_page(ingress: SocketAddr, user: Option<&str>) -> Reviews {
    let mut stream = TcpStream::connect_timeout(&ingress, WAIT).unwrap();
    stream.set_read_timeout(Some(WAIT)).unwrap();
    let cookie = user.map_or(String::new(), |u| format!("cookie: session={u}\r\n"));
    write!(
        stream,
        "GET /productpage HTTP/1.1\r\nhost: bookinfo.local\r\n{cookie}connection: close\r\n\r\n"
    )
    .unwrap();
    let mut page = String::new();
    stream.read_to_string(&mut page).unwrap();
    assert!(page.starts_with("HTTP/1.1 200"), "{page}");
    let served_by = page
        .split_once("Reviews served by:")
        .and_then(|(_, rest)| rest.split_once("<u>"))
        .and_then(|(_, rest)| rest.split_once("</u>"))
        .map(|(pod, _)| pod.to_owned())
        .unwrap_or_else(|| panic!("no reviews in {page}"));
    let stars = page
        .split_once("class=\"stars\" style=\"color: ")
        .map(|(_, rest)| rest.split('"').next().unwrap_or_default().to_owned());
    Reviews { served_by, stars }
}

/// Asks for the product page until `done` holds for `in_a_row` pages in a row (the
/// rule being waited for has reached the product page's sidecar), returning the last.
fn product_page_until(
    ingress: SocketAddr,
    user: Option<&str>,
    in_a_row: usize,
    done: impl Fn(&Reviews) -> bool,
) -> Reviews {
    let deadline = Instant::now() + WAIT;
    let mut streak = 0;
    loop {
        let page = product_page(ingress, user);
        streak = if done(&page) { streak + 1 } else { 0 };
        if streak == in_a_row {
            return page;
        }
        assert!(Instant::now() < deadline, "still {page:?}");
    }
}

#[test]
fn bookinfo_routes_as_istios_samples_say() {
    let Some(istio) = mizzen_api::testdata::istio_data() else {
        return;
    };
    let _one = ONE_MESH.lock().unwrap_or_else(|e| e.into_inner());
    let networking = istio.join("samples/bookinfo/networking");
    // A copy of the demo's config, so that the rules applied here stay out of the repo.
    let config = tempfile::tempdir().unwrap();
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/bookinfo");
    for file in std::fs::read_dir(&demo).unwrap().flatten() {
        std::fs::copy(file.path(), config.path().join(file.file_name())).unwrap();
    }
    // Bookinfo's Gateway serves port 8080; an address of its own keeps it clear of
    // anything else on this machine's 127.0.0.1:8080.
    let mut up = Up::start_on(config, None, "127.0.77.1");
    let ingress: SocketAddr = up
        .wait_for_line("Ingress: ")
        .trim_start_matches("Ingress: http://")
        .trim_end_matches('/')
        .parse()
        .unwrap();
    assert_eq!(ingress, "127.0.77.1:8080".parse().unwrap());
    let apply = |file: &str| {
        let out = up.ctl(&["apply", "-f", networking.join(file).to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
    };

    // No rule yet: every version of reviews answers in turn (round robin).
    let page = product_page_until(ingress, None, 1, |r| r.stars.as_deref() == Some("red"));
    assert_eq!(page.served_by, "reviews-v3-1");

    // Istio's "route all to v1": no stars, page after page.
    apply("destination-rule-all.yaml");
    apply("virtual-service-all-v1.yaml");
    product_page_until(ingress, None, 30, |r| r.served_by == "reviews-v1-1");
    assert_eq!(product_page(ingress, None).stars, None);

    // The canary: 10 % to v2 (black stars), judged from the pages (5σ binomial bound).
    apply("virtual-service-reviews-90-10.yaml");
    product_page_until(ingress, None, 1, |r| r.served_by == "reviews-v2-1");
    let n = 400;
    let v2 = (0..n)
        .map(|_| product_page(ingress, None))
        .inspect(|r| {
            assert!(
                r.served_by == "reviews-v1-1" || r.served_by == "reviews-v2-1",
                "{r:?}"
            )
        })
        .filter(|r| r.stars.as_deref() == Some("black"))
        .count();
    let (mean, sd) = (n as f64 * 0.1, (n as f64 * 0.1 * 0.9).sqrt());
    assert!(
        (v2 as f64 - mean).abs() <= 5.0 * sd,
        "{v2} of {n} pages from v2 at 90/10"
    );

    // The "jason" rule: signed in as jason, v2's black stars; signed out, v1.
    apply("virtual-service-reviews-test-v2.yaml");
    let jason = product_page_until(ingress, Some("jason"), 20, |r| {
        r.served_by == "reviews-v2-1"
    });
    assert_eq!(jason.stars.as_deref(), Some("black"));
    product_page_until(ingress, None, 20, |r| r.served_by == "reviews-v1-1");

    // Ctrl-C stops the whole demo: every app gone.
    let pods: serde_json::Value =
        serde_json::from_slice(&up.ctl(&["get", "pods", "-o", "json"]).stdout).unwrap();
    let pids: Vec<u32> = pods
        .as_array()
        .unwrap()
        .iter()
        .map(|p| {
            p["detail"]
                .as_str()
                .unwrap()
                .trim_start_matches("pid ")
                .parse()
                .unwrap()
        })
        .collect();
    assert_eq!(pids.len(), 6, "{pods}");
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(up.child.id() as libc::pid_t, libc::SIGINT) };
    assert!(up.child.wait().unwrap().success());
    for pid in pids {
        assert!(in_group(pid).is_empty(), "left: {:?}", in_group(pid));
    }
}
