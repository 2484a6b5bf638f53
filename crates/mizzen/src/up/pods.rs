//! `STATE/pods.json`: every replica's state as `mizzen get pods` shows it, rewritten
//! whenever one changes.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use serde_json::Value;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::state::{self, StateDir};
use super::supervisor::{AppState, Status};
use super::workload::{Replica, Workload};

/// The table, shared by the tasks that follow each replica.
#[derive(Clone)]
pub struct Pods {
    path: PathBuf,
    /// Rows by `NAMESPACE/POD`.
    rows: Arc<Mutex<BTreeMap<String, Value>>>,
}

impl Pods {
    /// An empty table written to `state`'s pods file.
    pub fn new(state: &StateDir) -> Pods {
        Pods {
            path: state.pods_file(),
            rows: Arc::default(),
        }
    }

    /// Follows `status` of the replica into its row until the replica stops.
    pub fn follow(
        &self,
        workload: &Workload,
        replica: &Replica,
        mut status: watch::Receiver<Status>,
    ) -> JoinHandle<()> {
        let key = format!("{}/{}", workload.namespace, replica.pod);
        let base = serde_json::json!({
            "name": replica.pod,
            "namespace": workload.namespace,
            "ip": replica.ip.to_string(),
            "port": replica.app_ports.first(),
        });
        let pods = self.clone();
        tokio::spawn(async move {
            loop {
                let now = status.borrow_and_update().clone();
                let mut row = base.clone();
                row["restarts"] = now.restarts.into();
                let (phase, detail) = match &now.state {
                    AppState::Starting => ("Starting", String::new()),
                    AppState::Running { pid } => ("Running", format!("pid {pid}")),
                    AppState::BackOff { status } => ("BackOff", status.clone()),
                    AppState::Stopped => ("Stopped", String::new()),
                };
                row["status"] = phase.into();
                row["detail"] = detail.into();
                pods.update(|rows| {
                    rows.insert(key.clone(), row);
                });
                if status.changed().await.is_err() || now.state == AppState::Stopped {
                    return;
                }
            }
        })
    }

    /// Drops the row of a replica that is gone.
    pub fn remove(&self, workload: &Workload, replica: &Replica) {
        let key = format!("{}/{}", workload.namespace, replica.pod);
        self.update(|rows| {
            rows.remove(&key);
        });
    }

    /// Changes the rows and writes the table, under the lock: replicas report from
    /// tasks of their own, and a stale table written last would hide the others.
    fn update(&self, change: impl FnOnce(&mut BTreeMap<String, Value>)) {
        let mut rows = self.rows.lock().unwrap_or_else(|e| e.into_inner());
        change(&mut rows);
        if let Ok(text) = serde_json::to_vec_pretty(&rows.values().collect::<Vec<_>>()) {
            let _ = state::write_atomic(&self.path, &text);
        }
    }
}
