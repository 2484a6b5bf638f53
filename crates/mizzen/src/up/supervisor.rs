//! Runs a replica's app as a child process: in a process group of its own (so stopping
//! it stops whatever it started), output appended to its log file, restarted with
//! exponential backoff when it exits on its own.

use std::path::PathBuf;
use std::process::{ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::io::AsyncWriteExt;
use tokio::sync::watch;

/// The first restart delay; it doubles with each quick exit.
const FIRST_BACKOFF: Duration = Duration::from_millis(500);
/// The longest restart delay.
const MAX_BACKOFF: Duration = Duration::from_secs(30);
/// A run this long counts as healthy: the next exit restarts after [`FIRST_BACKOFF`].
const HEALTHY_RUN: Duration = Duration::from_secs(10);
/// How long an app has to exit after SIGTERM before it is killed.
const GRACE: Duration = Duration::from_secs(3);

/// What to start, and with what.
#[derive(Debug, Clone)]
pub struct AppSpec {
    /// The replica's name, for messages.
    pub name: String,
    /// The program.
    pub program: PathBuf,
    /// Its arguments.
    pub args: Vec<String>,
    /// Environment on top of this process's.
    pub env: Vec<(String, String)>,
    /// Where its output goes (appended).
    pub log: PathBuf,
}

/// A supervised app's state, as `mizzen get pods` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AppState {
    /// Not started yet.
    Starting,
    /// Running as this process.
    Running {
        /// Its pid (and process group).
        pid: u32,
    },
    /// Exited; restarting after a delay.
    BackOff {
        /// How it ended.
        status: String,
    },
    /// Stopped by `up`.
    Stopped,
}

/// The state of a supervised app and how often it restarted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Status {
    /// Now.
    pub state: AppState,
    /// Restarts so far.
    pub restarts: u32,
}

/// Runs `spec` until `stop` turns true, restarting it when it exits; reports each
/// change on the returned receiver. The returned task ends once the app is stopped
/// and reaped.
pub fn supervise(
    spec: AppSpec,
    stop: watch::Receiver<bool>,
) -> (watch::Receiver<Status>, tokio::task::JoinHandle<()>) {
    let (tx, rx) = watch::channel(Status {
        state: AppState::Starting,
        restarts: 0,
    });
    let task = tokio::spawn(run(Arc::new(spec), stop, tx));
    (rx, task)
}

async fn run(spec: Arc<AppSpec>, mut stop: watch::Receiver<bool>, status: watch::Sender<Status>) {
    let mut backoff = FIRST_BACKOFF;
    let mut restarts = 0;
    loop {
        let started = Instant::now();
        let outcome = match start(&spec).await {
            Ok(mut child) => {
                let pid = child.id().unwrap_or_default();
                status.send_replace(Status {
                    state: AppState::Running { pid },
                    restarts,
                });
                tokio::select! {
                    exit = child.wait() => exit.map(describe).unwrap_or_else(|e| e.to_string()),
                    () = stopped(&mut stop) => {
                        terminate(pid, &mut child).await;
                        status.send_replace(Status { state: AppState::Stopped, restarts });
                        return;
                    }
                }
            }
            Err(e) => format!("{e:#}"),
        };
        if started.elapsed() >= HEALTHY_RUN {
            backoff = FIRST_BACKOFF;
        }
        log_line(
            &spec.log,
            &format!("mizzen: {} {outcome}; restarting in {backoff:?}", spec.name),
        )
        .await;
        status.send_replace(Status {
            state: AppState::BackOff { status: outcome },
            restarts,
        });
        tokio::select! {
            () = tokio::time::sleep(backoff) => {}
            () = stopped(&mut stop) => {
                status.send_replace(Status { state: AppState::Stopped, restarts });
                return;
            }
        }
        backoff = (backoff * 2).min(MAX_BACKOFF);
        restarts += 1;
    }
}

/// Returns once `stop` is true.
async fn stopped(stop: &mut watch::Receiver<bool>) {
    while !*stop.borrow_and_update() {
        if stop.changed().await.is_err() {
            // `up` always says stop before it goes; without it, nothing stops us.
            std::future::pending::<()>().await;
        }
    }
}

async fn start(spec: &AppSpec) -> anyhow::Result<tokio::process::Child> {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&spec.log)
        .with_context(|| format!("opening {}", spec.log.display()))?;
    let err = log.try_clone()?;
    let mut command = tokio::process::Command::new(&spec.program);
    command
        .args(&spec.args)
        .envs(spec.env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err)
        .process_group(0)
        .kill_on_drop(true);
    command
        .spawn()
        .with_context(|| format!("starting {}", spec.program.display()))
}

/// SIGTERM to the app's process group, SIGKILL after [`GRACE`], then reaps it. The
/// group gets SIGKILL in any case, for children the app left behind.
async fn terminate(pid: u32, child: &mut tokio::process::Child) {
    let group = pid as libc::pid_t;
    signal_group(group, libc::SIGTERM);
    if tokio::time::timeout(GRACE, child.wait()).await.is_err() {
        signal_group(group, libc::SIGKILL);
        let _ = child.wait().await;
    }
    signal_group(group, libc::SIGKILL);
}

/// Sends `signal` to process group `group`.
pub fn signal_group(group: libc::pid_t, signal: libc::c_int) {
    // SAFETY: killpg has no memory-safety preconditions; a group already gone is ESRCH.
    unsafe {
        libc::killpg(group, signal);
    }
}

fn describe(status: ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exited with status {code}"),
        (None, Some(signal)) => format!("was killed by signal {signal}"),
        _ => "exited".to_owned(),
    }
}

async fn log_line(path: &std::path::Path, line: &str) {
    if let Ok(mut file) = tokio::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .await
    {
        let _ = file.write_all(format!("{line}\n").as_bytes()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(dir: &std::path::Path, script: &str) -> AppSpec {
        AppSpec {
            name: "app-1".into(),
            program: "/bin/sh".into(),
            args: vec!["-c".into(), script.into()],
            env: vec![("GREETING".into(), "hello".into())],
            log: dir.join("app-1.log"),
        }
    }

    #[tokio::test]
    async fn a_crashed_app_restarts_and_says_so_in_its_log() {
        let dir = tempfile::tempdir().unwrap();
        let (_stop_tx, stop) = watch::channel(false);
        let (mut status, _task) = supervise(spec(dir.path(), "echo $GREETING; exit 3"), stop);
        tokio::time::timeout(
            Duration::from_secs(20),
            status.wait_for(|s| s.restarts >= 1),
        )
        .await
        .unwrap()
        .unwrap();
        let log = std::fs::read_to_string(dir.path().join("app-1.log")).unwrap();
        assert!(log.starts_with("hello\n"), "{log}");
        assert!(
            log.contains("app-1 exited with status 3; restarting in 500ms"),
            "{log}"
        );
    }

    #[tokio::test]
    async fn stopping_kills_the_whole_group() {
        let dir = tempfile::tempdir().unwrap();
        let (stop_tx, stop) = watch::channel(false);
        // The shell ignores SIGTERM and leaves a grandchild: both must still go.
        let (mut status, task) =
            supervise(spec(dir.path(), "trap '' TERM; sleep 1000 & wait"), stop);
        let running = status
            .wait_for(|s| matches!(s.state, AppState::Running { .. }))
            .await
            .unwrap()
            .clone();
        let AppState::Running { pid } = running.state else {
            unreachable!()
        };
        stop_tx.send_replace(true);
        task.await.unwrap();
        assert_eq!(status.borrow().state, AppState::Stopped);
        let left: Vec<String> = std::fs::read_dir("/proc")
            .unwrap()
            .flatten()
            .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
            .filter(|stat| {
                // Field 3 is the state, field 5 the process group. A zombie is dead:
                // it waits only for its new parent (init) to reap it.
                let after = stat.rsplit_once(')').map_or("", |(_, r)| r);
                let mut fields = after.split_whitespace();
                fields.next() != Some("Z") && fields.nth(1) == Some(&pid.to_string())
            })
            .collect();
        assert!(left.is_empty(), "left in the group: {left:?}");
    }
}
