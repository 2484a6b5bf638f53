//! `mizzen demo-app` as the local mesh runs it: bound to the replica's `POD_IP`, on
//! `PORT`, naming itself after `POD_NAME`.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

const MIZZEN: &str = env!("CARGO_BIN_EXE_mizzen");

/// A demo app process, killed when dropped.
struct App {
    child: Child,
    addr: String,
}

impl App {
    /// Starts `mizzen demo-app ARGS` with `env` and reads where it listens.
    fn start(args: &[&str], env: &[(&str, &str)]) -> App {
        let mut child = Command::new(MIZZEN)
            .arg("demo-app")
            .args(args)
            .envs(env.iter().copied())
            .env_remove("HTTP_PROXY")
            .env_remove("http_proxy")
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stderr.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line
            .trim()
            .rsplit_once("http://")
            .unwrap_or_else(|| panic!("no address in {line:?}"))
            .1
            .to_owned();
        App { child, addr }
    }

    /// GETs `path`: the whole HTTP/1.1 response as text.
    fn get(&self, path: &str) -> String {
        let mut stream = TcpStream::connect(&self.addr).unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nhost: app\r\nconnection: close\r\n\r\n"
        )
        .unwrap();
        let mut response = String::new();
        stream.read_to_string(&mut response).unwrap();
        response
    }
}

impl Drop for App {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn listens_on_the_pod_ip_and_port_from_the_environment() {
    let details = App::start(&["details"], &[("POD_IP", "127.0.9.9"), ("PORT", "0")]);
    assert!(details.addr.starts_with("127.0.9.9:"), "{}", details.addr);
    let response = details.get("/details/1");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    assert!(
        response.contains(r#""author":"William Shakespeare""#),
        "{response}"
    );
}

#[test]
fn reviews_reports_its_pod_name() {
    let reviews = App::start(
        &["reviews", "--version", "v1", "--port", "0"],
        &[("POD_NAME", "reviews-v1-abc")],
    );
    let response = reviews.get("/reviews/0");
    assert!(
        response.contains(r#""podname":"reviews-v1-abc""#),
        "{response}"
    );
}

#[test]
fn refuses_an_unknown_reviews_version() {
    let out = Command::new(MIZZEN)
        .args(["demo-app", "reviews", "--version", "v9", "--port", "0"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("reviews has versions v1, v2 and v3"),
        "{stderr}"
    );
}
