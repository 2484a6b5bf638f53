//! The state directory shared by `mizzen up` and the commands that join its mesh:
//! the lock `up` holds, `mesh.json` saying where the mesh is, the logs, the workloads
//! registered from outside the user's config directory, the mesh's CA (its root and
//! key, `ca/`) and the workloads' tokens for it (`tokens/`).

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions, TryLockError};
use std::io::{Read, Seek, Write};
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};

use anyhow::Context;
use serde_json::json;

/// A state directory (`--state-dir`, else `$MIZZEN_HOME`, else `$HOME/.mizzen`).
#[derive(Debug, Clone)]
pub struct StateDir {
    root: PathBuf,
}

/// Where a running mesh is, as `mesh.json` records it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MeshInfo {
    /// The user's config directory, where `apply` writes.
    pub config_dir: PathBuf,
    /// Pilot's ADS address (plaintext).
    pub xds: SocketAddr,
    /// Pilot's xDS and CA address over TLS.
    pub tls: SocketAddr,
    /// Pilot's debug address.
    pub debug: SocketAddr,
    /// The dashboard's address, if it is served.
    pub dashboard: Option<SocketAddr>,
    /// The ingress gateway's address (its pod IP).
    pub ingress: Ipv4Addr,
    /// The `mizzen up` process.
    pub pid: u32,
}

/// The exclusive lock of a running `mizzen up`; released when dropped (or the process
/// ends, however it ends).
#[derive(Debug)]
pub struct UpLock {
    _file: File,
}

impl StateDir {
    /// `dir` if given, else `$MIZZEN_HOME`, else `$HOME/.mizzen`.
    pub fn resolve(dir: Option<PathBuf>) -> anyhow::Result<StateDir> {
        let root = match dir {
            Some(dir) => dir,
            None => match std::env::var_os("MIZZEN_HOME") {
                Some(home) => PathBuf::from(home),
                None => PathBuf::from(
                    std::env::var_os("HOME")
                        .context("neither --state-dir, MIZZEN_HOME nor HOME is set")?,
                )
                .join(".mizzen"),
            },
        };
        Ok(StateDir { root })
    }

    /// Where replica `name` logs.
    pub fn log_file(&self, name: &str) -> PathBuf {
        self.logs_dir().join(format!("{name}.log"))
    }

    /// The logs directory.
    pub fn logs_dir(&self) -> PathBuf {
        self.root.join("logs")
    }

    /// Where local workloads are registered (WorkloadEntries and their Sidecars); the
    /// running mesh's pilot watches it along with the user's config directory.
    pub fn workloads_dir(&self) -> PathBuf {
        self.root.join("workloads")
    }

    /// The mesh's CA: its self-made root, `ca-key.pem` readable by the owner only.
    pub fn ca_dir(&self) -> PathBuf {
        self.root.join("ca")
    }

    /// The workloads' tokens for the CA, readable by the owner only.
    pub fn tokens_dir(&self) -> PathBuf {
        self.root.join("tokens")
    }

    /// The replicas' states, rewritten by `up` as they change.
    pub fn pods_file(&self) -> PathBuf {
        self.root.join("pods.json")
    }

    /// The admin address of each proxy `up` runs, by `POD.NAMESPACE`.
    fn proxies_file(&self) -> PathBuf {
        self.root.join("proxies.json")
    }

    fn mesh_file(&self) -> PathBuf {
        self.root.join("mesh.json")
    }

    /// Takes the lock only one `mizzen up` per state directory may hold, and records
    /// this process in it; refuses, naming the holder, if another `up` has it.
    pub fn lock(&self) -> anyhow::Result<UpLock> {
        std::fs::create_dir_all(&self.root)
            .with_context(|| format!("creating state directory {}", self.root.display()))?;
        let path = self.root.join("up.lock");
        let mut file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(&path)
            .with_context(|| format!("opening {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => {}
            Err(TryLockError::WouldBlock) => {
                let mut holder = String::new();
                let _ = file.read_to_string(&mut holder);
                let holder = holder.trim();
                anyhow::bail!(
                    "another `mizzen up` (pid {}) is running with state directory {}; stop it first, or give this one another --state-dir",
                    if holder.is_empty() { "unknown" } else { holder },
                    self.root.display()
                );
            }
            Err(TryLockError::Error(e)) => {
                return Err(e).with_context(|| format!("locking {}", path.display()));
            }
        }
        file.set_len(0)?;
        file.rewind()?;
        writeln!(file, "{}", std::process::id())?;
        Ok(UpLock { _file: file })
    }

    /// Records where the mesh is.
    pub fn write_mesh(&self, info: &MeshInfo) -> anyhow::Result<()> {
        let text = json!({
            "config_dir": info.config_dir,
            "xds": info.xds.to_string(),
            "tls": info.tls.to_string(),
            "debug": info.debug.to_string(),
            "dashboard": info.dashboard.map(|a| a.to_string()),
            "ingress": info.ingress.to_string(),
            "pid": info.pid,
        });
        write_atomic(&self.mesh_file(), &serde_json::to_vec_pretty(&text)?)
    }

    /// Records the admin address of each proxy, by `POD.NAMESPACE`.
    pub fn write_proxies(
        &self,
        admins: impl IntoIterator<Item = (String, SocketAddr)>,
    ) -> anyhow::Result<()> {
        let admins: BTreeMap<String, String> = admins
            .into_iter()
            .map(|(pod, admin)| (pod, admin.to_string()))
            .collect();
        write_atomic(&self.proxies_file(), &serde_json::to_vec_pretty(&admins)?)
    }

    /// The admin address of the running mesh's proxy `name`, named as istioctl names a
    /// pod: `POD.NAMESPACE`, or `POD` alone for one in `default` or the only one so named.
    pub fn proxy_admin(&self, name: &str) -> anyhow::Result<SocketAddr> {
        self.mesh()?;
        let path = self.proxies_file();
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let admins: BTreeMap<String, SocketAddr> =
            serde_json::from_str(&text).with_context(|| format!("{}", path.display()))?;
        let exact = admins
            .get(name)
            .or_else(|| admins.get(&format!("{name}.default")));
        if let Some(admin) = exact {
            return Ok(*admin);
        }
        let prefix = format!("{name}.");
        let mut matching = admins.iter().filter(|(pod, _)| pod.starts_with(&prefix));
        match (matching.next(), matching.next()) {
            (Some((_, admin)), None) => Ok(*admin),
            (Some(_), Some(_)) => anyhow::bail!(
                "{name:?} names a pod in several namespaces: say which (`{name}.NAMESPACE`)"
            ),
            (None, _) => anyhow::bail!(
                "no proxy {name:?} in the running mesh (`mizzen up` in {}); its proxies are: {}",
                self.root.display(),
                admins
                    .keys()
                    .map(String::as_str)
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    /// Where the running mesh is; an error if no `mizzen up` runs on this directory.
    pub fn mesh(&self) -> anyhow::Result<MeshInfo> {
        let path = self.mesh_file();
        let running = self.is_up_running()?;
        anyhow::ensure!(
            running,
            "no `mizzen up` is running with state directory {} (start one, or pass --state-dir)",
            self.root.display()
        );
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let value: serde_json::Value =
            serde_json::from_str(&text).with_context(|| format!("{}", path.display()))?;
        let field = |name: &str| {
            value[name]
                .as_str()
                .with_context(|| format!("{}: no {name:?}", path.display()))
        };
        let addr = |name: &str| -> anyhow::Result<SocketAddr> {
            field(name)?
                .parse()
                .with_context(|| format!("{}: {name:?}", path.display()))
        };
        Ok(MeshInfo {
            config_dir: PathBuf::from(field("config_dir")?),
            xds: addr("xds")?,
            tls: addr("tls")?,
            debug: addr("debug")?,
            dashboard: value["dashboard"].as_str().and_then(|a| a.parse().ok()),
            ingress: field("ingress")?
                .parse()
                .with_context(|| format!("{}: \"ingress\"", path.display()))?,
            pid: value["pid"].as_u64().unwrap_or_default() as u32,
        })
    }

    /// True while some process holds `up.lock`.
    fn is_up_running(&self) -> anyhow::Result<bool> {
        let path = self.root.join("up.lock");
        let file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e).with_context(|| format!("opening {}", path.display())),
        };
        match file.try_lock_shared() {
            Ok(()) => Ok(false),
            Err(TryLockError::WouldBlock) => Ok(true),
            Err(TryLockError::Error(e)) => Err(e).with_context(|| format!("{}", path.display())),
        }
    }
}

/// Writes `path` whole or not at all (a temporary file renamed over it).
pub fn write_atomic(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().unwrap_or_default().to_string_lossy()
    ));
    std::fs::write(&tmp, bytes).with_context(|| format!("writing {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("writing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_second_lock_names_the_holder() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::resolve(Some(dir.path().to_owned())).unwrap();
        let held = state.lock().unwrap();
        let err = state.lock().unwrap_err().to_string();
        assert!(
            err.contains(&format!("pid {}", std::process::id())),
            "{err}"
        );
        assert!(err.contains(&dir.path().display().to_string()), "{err}");
        drop(held);
        state.lock().unwrap();
    }

    #[test]
    fn mesh_json_round_trips_only_while_up_runs() {
        let dir = tempfile::tempdir().unwrap();
        let state = StateDir::resolve(Some(dir.path().to_owned())).unwrap();
        let info = MeshInfo {
            config_dir: "/tmp/mesh".into(),
            xds: "127.0.0.1:15010".parse().unwrap(),
            tls: "127.0.0.1:15012".parse().unwrap(),
            debug: "127.0.0.1:15014".parse().unwrap(),
            dashboard: Some("127.0.0.1:20001".parse().unwrap()),
            ingress: "127.0.0.1".parse().unwrap(),
            pid: 42,
        };
        state.write_mesh(&info).unwrap();
        assert!(state.mesh().is_err(), "no up holds the lock");
        let _lock = state.lock().unwrap();
        assert_eq!(state.mesh().unwrap(), info);
    }
}
