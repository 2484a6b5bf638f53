//! A real `mizzen up` in a test: the built binary on a config directory, its output
//! read line by line, the mesh's commands (`apply`, `get`, `proxy-config`…) run against
//! its state directory, and waits on what pilot says its proxies acknowledged.
//!
//! One mesh at a time ([`ONE_MESH`]): meshes started at the same moment would race for
//! the same workload addresses (each `up` takes the first free ones it finds).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use mizzen_api::load::Loader;
use serde_json::Value;

/// Held by a test while its mesh runs.
pub static ONE_MESH: std::sync::Mutex<()> = std::sync::Mutex::new(());

/// Far longer than startup or a config push should take: only a lost event hits it.
pub const WAIT: Duration = Duration::from_secs(60);

/// The `mizzen` binary under test.
pub fn mizzen() -> Command {
    Command::new(env!("CARGO_BIN_EXE_mizzen"))
}

/// A copy of the Bookinfo demo's config (`examples/bookinfo`), so that the rules a test
/// adds or applies stay out of the repository.
pub fn bookinfo_config() -> tempfile::TempDir {
    let config = tempfile::tempdir().unwrap();
    let demo = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/bookinfo");
    for file in std::fs::read_dir(&demo).unwrap().flatten() {
        std::fs::copy(file.path(), config.path().join(file.file_name())).unwrap();
    }
    config
}

/// A running `mizzen up` and what it printed; stopped (SIGINT) when dropped.
pub struct Up {
    /// The `mizzen up` process.
    pub child: Child,
    /// Its state directory.
    pub state: tempfile::TempDir,
    /// Its config directory.
    pub config: tempfile::TempDir,
    /// The apps' files, when the test has any.
    pub apps: Option<tempfile::TempDir>,
    lines: mpsc::Receiver<String>,
    printed: Vec<String>,
}

impl Up {
    /// The mesh of the config in `config`, its ingress gateway on the address `ingress`
    /// (on the ports its Gateways' servers name); `apps` lives as long as the mesh.
    pub fn start_on(
        config: tempfile::TempDir,
        apps: Option<tempfile::TempDir>,
        ingress: &str,
    ) -> Up {
        Up::start_with_env(config, apps, ingress, &[])
    }

    /// [`Up::start_on`], with `env` added to `up`'s environment (`SECRET_TTL`, say).
    pub fn start_with_env(
        config: tempfile::TempDir,
        apps: Option<tempfile::TempDir>,
        ingress: &str,
        env: &[(&str, &str)],
    ) -> Up {
        let state = tempfile::tempdir().unwrap();
        let mut child = mizzen()
            .arg("up")
            .arg(config.path())
            .arg("--state-dir")
            .arg(state.path())
            .args(["--xds-addr", "127.0.0.1:0", "--debug-addr", "127.0.0.1:0"])
            .args(["--tls-addr", "127.0.0.1:0"])
            .args(["--ingress-ip", ingress])
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                if tx.send(line).is_err() {
                    return;
                }
            }
        });
        let mut up = Up {
            child,
            state,
            config,
            apps,
            lines,
            printed: Vec::new(),
        };
        up.wait_for_line("Mesh ready in");
        up
    }

    /// Waits for a line of output starting with `prefix`.
    pub fn wait_for_line(&mut self, prefix: &str) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.printed.push(line.clone());
                    if line.starts_with(prefix) {
                        return line;
                    }
                }
                Err(e) => panic!("no line {prefix:?} ({e}); printed: {:#?}", self.printed),
            }
        }
    }

    /// Where the ingress gateway listens, from the `Ingress: http://ADDR/` line `up`
    /// prints once ready.
    pub fn ingress(&mut self) -> SocketAddr {
        let line = self.wait_for_line("Ingress: ");
        line.trim_start_matches("Ingress: http://")
            .trim_end_matches('/')
            .parse()
            .unwrap_or_else(|e| panic!("{line:?}: {e}"))
    }

    /// `mizzen ARGS… --state-dir STATE`.
    pub fn ctl(&self, args: &[&str]) -> Output {
        mizzen()
            .args(args)
            .arg("--state-dir")
            .arg(self.state.path())
            .output()
            .unwrap()
    }

    /// `mizzen ARGS… --state-dir STATE`, which must succeed: its standard output.
    pub fn ctl_ok(&self, args: &[&str]) -> String {
        let out = self.ctl(args);
        assert!(
            out.status.success(),
            "mizzen {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    /// Every proxy connected to pilot (the gateway's included): its pod
    /// (`details-v1-1.default`) and address, read from the node ids
    /// (`sidecar~IP~POD.NAMESPACE~DOMAIN`) of pilot's `/debug/syncz`.
    pub fn proxies(&self) -> Vec<(String, IpAddr)> {
        let (_, body) = http_get(self.pilot_debug(), "/debug/syncz");
        let syncz: Value = serde_json::from_str(&body).unwrap();
        syncz
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                let node = p["proxy"].as_str().unwrap();
                let mut parts = node.split('~').skip(1);
                let ip = parts.next().and_then(|ip| ip.parse().ok());
                match (ip, parts.next()) {
                    (Some(ip), Some(pod)) => (pod.to_owned(), ip),
                    _ => panic!("node id {node:?} is not TYPE~IP~POD.NAMESPACE~DOMAIN"),
                }
            })
            .collect()
    }

    /// The pod IP of replica `pod`, from `mizzen get pods -o json`.
    pub fn pod_ip(&self, pod: &str) -> String {
        let out = self.ctl(&["get", "pods", pod, "-o", "json"]);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let pods: Value = serde_json::from_slice(&out.stdout).unwrap();
        pods[0]["ip"].as_str().unwrap().to_owned()
    }

    /// Where pilot serves its debug endpoints, from `STATE/mesh.json`.
    pub fn pilot_debug(&self) -> SocketAddr {
        let text = std::fs::read_to_string(self.state.path().join("mesh.json")).unwrap();
        let mesh: Value = serde_json::from_str(&text).unwrap();
        mesh["debug"].as_str().unwrap().parse().unwrap()
    }

    /// `mizzen apply -f` of `yaml`; returns once pilot serves every object in it as
    /// written and each `(pod, type)` of `acks` has been acknowledged from then on (the
    /// sidecar of `httpbin-1`, `LDS`, say).
    pub fn apply(&self, yaml: &str, acks: &[(&str, &str)]) {
        self.write("apply", yaml, acks);
    }

    /// `mizzen delete -f` of `yaml`; returns once pilot no longer serves its objects
    /// and each `(pod, type)` of `acks` has been acknowledged from then on.
    pub fn delete(&self, yaml: &str, acks: &[(&str, &str)]) {
        self.write("delete", yaml, acks);
    }

    fn write(&self, verb: &str, yaml: &str, acks: &[(&str, &str)]) {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("objects.yaml");
        std::fs::write(&file, yaml).unwrap();
        let out = self.ctl(&[verb, "-f", file.to_str().unwrap()]);
        assert!(
            out.status.success(),
            "{verb}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let present = verb == "apply";
        let wanted = objects(yaml);
        let debug = self.pilot_debug();
        // The first revision pilot serves with the change; every push from then on
        // carries it.
        let deadline = Instant::now() + WAIT;
        let revision = loop {
            let (_, body) = http_get(debug, "/debug/configz");
            let configz: Value = serde_json::from_str(&body).unwrap();
            let served = configz["objects"].as_array().unwrap();
            let serves = |want: &Value| {
                served.iter().any(|o| {
                    o["kind"] == want["kind"]
                        && o["metadata"]["name"] == want["metadata"]["name"]
                        && o["metadata"]["namespace"] == want["metadata"]["namespace"]
                        && (!present || o["spec"] == want["spec"])
                })
            };
            if wanted.iter().all(|w| serves(w) == present) {
                break configz["revision"]
                    .as_str()
                    .unwrap()
                    .parse::<u64>()
                    .unwrap();
            }
            assert!(
                Instant::now() < deadline,
                "pilot never served {verb} {yaml}"
            );
        };
        for (pod, ty) in acks {
            self.wait_acked(pod, ty, revision);
        }
    }

    /// Waits until the sidecar of `pod` has acknowledged `ty` (`LDS`, `CDS`…) at
    /// `revision` or later.
    pub fn wait_acked(&self, pod: &str, ty: &str, revision: u64) {
        let debug = self.pilot_debug();
        let node = format!("~{pod}.");
        let deadline = Instant::now() + WAIT;
        loop {
            let (_, body) = http_get(debug, "/debug/syncz");
            let proxies: Value = serde_json::from_str(&body).unwrap();
            let status = proxies
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["proxy"].as_str().unwrap().contains(&node))
                .map(|p| p["types"][ty].clone())
                .unwrap_or(Value::Null);
            assert!(
                status["last_nack"].is_null(),
                "{pod} rejected {ty}: {status}"
            );
            let acked = status["version_acked"]
                .as_str()
                .and_then(|v| v.parse::<u64>().ok());
            if acked.is_some_and(|v| v >= revision) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{pod} never acknowledged {ty} {revision}: {status}"
            );
        }
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        // A failed test still stops its mesh.
        if self.child.try_wait().ok().flatten().is_none() {
            // SAFETY: kill has no memory-safety preconditions.
            unsafe { libc::kill(self.child.id() as libc::pid_t, libc::SIGINT) };
            let _ = self.child.wait();
        }
    }
}

/// Every object in `yaml` as pilot shows it (`/debug/configz`), in namespace `default`
/// unless it names one.
fn objects(yaml: &str) -> Vec<Value> {
    let loaded = Loader::new().load_str(yaml, None);
    assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
    loaded
        .objects
        .iter()
        .map(|l| {
            let mut object = serde_json::to_value(&l.object).unwrap();
            if object["metadata"]["namespace"].is_null() {
                object["metadata"]["namespace"] = "default".into();
            }
            object
        })
        .collect()
}

/// `GET PATH` of the server at `addr` over a new connection: the status and body.
pub fn http_get(addr: SocketAddr, path: &str) -> (u16, String) {
    try_http_get(addr, path).unwrap_or_else(|e| panic!("GET http://{addr}{path}: {e}"))
}

/// [`http_get`], for callers that carry on past a failed request (load that runs while
/// the mesh changes).
pub fn try_http_get(addr: SocketAddr, path: &str) -> std::io::Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, WAIT)?;
    stream.set_read_timeout(Some(WAIT))?;
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n"
    )?;
    let mut response = Vec::new();
    stream.read_to_end(&mut response)?;
    let response = String::from_utf8_lossy(&response);
    let status = response
        .get(9..12)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| std::io::Error::other(format!("not HTTP: {response:?}")))?;
    let (head, body) = response.split_once("\r\n\r\n").unwrap_or((&response, ""));
    let body = match head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        true => dechunk(body),
        false => body.to_owned(),
    };
    Ok((status, body))
}

/// The body of a chunked message.
fn dechunk(mut chunked: &str) -> String {
    let mut body = String::new();
    while let Some((size, rest)) = chunked.split_once("\r\n") {
        let size = usize::from_str_radix(size.split(';').next().unwrap().trim(), 16).unwrap();
        if size == 0 {
            break;
        }
        body.push_str(&rest[..size]);
        chunked = &rest[size + 2..];
    }
    body
}
