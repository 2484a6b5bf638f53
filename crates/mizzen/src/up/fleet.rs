//! The mesh's replicas, as its Deployments ask for them: each one an address, a
//! registration pilot reads, a sidecar and a supervised app. `up` registers them all
//! before pilot starts (so pilot knows every workload from its first push), then starts
//! them, and reconciles them whenever the config changes, as a Deployment controller
//! does: a new Deployment gets its replicas, a changed one has them replaced, a removed
//! one has them stopped.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::ops::RangeInclusive;
use std::path::PathBuf;
use std::sync::Arc;

use anyhow::Context;
use mizzen_api::Object;
use mizzen_pilot::ca::{LocalTokens, ServiceAccount};
use mizzen_proxy::Proxy;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::addr::{Addresses, free_port};
use super::pods::Pods;
use super::proxies::{self, Identity, PilotAccess, Ports};
use super::state::{self, StateDir};
use super::supervisor::{AppSpec, supervise};
use super::workload::{Replica, Workload};

/// A Deployment by namespace and name.
type Key = (String, String);

/// Every replica `up` runs for the config's Deployments.
pub struct Fleet {
    launcher: Launcher,
    deployed: BTreeMap<Key, Deployed>,
}

/// Registers, starts and stops replicas.
struct Launcher {
    state: StateDir,
    tokens: LocalTokens,
    addresses: Addresses,
    pods: Pods,
}

/// A Deployment's workload and its replicas.
struct Deployed {
    workload: Arc<Workload>,
    members: Vec<Member>,
}

/// A replica: registered with pilot and, once started, running.
struct Member {
    replica: Replica,
    running: Option<Running>,
}

/// A started replica's sidecar and app.
struct Running {
    proxy: Proxy,
    token: String,
    stop: watch::Sender<bool>,
    app: JoinHandle<()>,
    row: JoinHandle<()>,
}

impl Fleet {
    /// Registers every replica of `workloads` (an address each, and the objects that put
    /// it in the mesh); nothing runs yet.
    pub fn register(
        state: StateDir,
        tokens: LocalTokens,
        workloads: Vec<Workload>,
    ) -> anyhow::Result<Fleet> {
        let pods = Pods::new(&state);
        let mut launcher = Launcher {
            state,
            tokens,
            addresses: Addresses::default(),
            pods,
        };
        let mut deployed = BTreeMap::new();
        for workload in workloads {
            let workload = Arc::new(workload);
            let members = launcher.register(&workload, 1..=workload.replicas)?;
            deployed.insert(key(&workload), Deployed { workload, members });
        }
        Ok(Fleet { launcher, deployed })
    }

    /// Starts every registered replica that is not running yet.
    pub async fn start(&mut self, pilot: &PilotAccess) -> anyhow::Result<()> {
        for d in self.deployed.values_mut() {
            for member in &mut d.members {
                if member.running.is_none() {
                    member.running = Some(
                        self.launcher
                            .start(&d.workload, &member.replica, pilot)
                            .await?,
                    );
                }
            }
        }
        Ok(())
    }

    /// Every replica with its workload, by Deployment, then replica.
    pub fn replicas(&self) -> impl Iterator<Item = (&Workload, &Replica)> {
        self.deployed
            .values()
            .flat_map(|d| d.members.iter().map(|m| (&*d.workload, &m.replica)))
    }

    /// Every running sidecar, named `POD.NAMESPACE`.
    pub fn proxies(&self) -> impl Iterator<Item = (String, &Proxy)> {
        self.deployed.values().flat_map(|d| {
            d.members.iter().filter_map(|m| {
                let running = m.running.as_ref()?;
                Some((pod_name(&d.workload, &m.replica), &running.proxy))
            })
        })
    }

    /// Writes `STATE/proxies.json`: the fleet's sidecars and `others` (the gateway).
    pub fn record_proxies(&self, others: &[(String, SocketAddr)]) -> anyhow::Result<()> {
        let sidecars = self
            .proxies()
            .filter_map(|(name, proxy)| Some((name, proxy.admin_addr()?)));
        self.launcher
            .state
            .write_proxies(sidecars.chain(others.iter().cloned()))
    }

    /// Brings the replicas in line with the Deployments in `objects`; returns what it
    /// did, a line each. A Deployment that cannot run keeps what runs of it.
    pub async fn reconcile(&mut self, objects: &[&Object], pilot: &PilotAccess) -> Vec<String> {
        let mut said = Vec::new();
        let mut wanted = BTreeMap::new();
        for (key, workload) in Workload::each_in(objects) {
            match workload {
                Ok(w) => {
                    wanted.insert(key, w);
                }
                Err(e) => {
                    said.push(format!("error: {e:#}"));
                    wanted.remove(&key);
                    // Neither replaced nor stopped: it stays as it runs.
                    if let Some(d) = self.deployed.get(&key) {
                        wanted.insert(key, (*d.workload).clone());
                    }
                }
            }
        }
        // A change of `replicas` alone scales: replicas are added or stopped at the end.
        for (key, workload) in &wanted {
            let Some(d) = self.deployed.get_mut(key) else {
                continue;
            };
            if !only_replicas_differ(&d.workload, workload) {
                continue;
            }
            let have = d.members.len() as u32;
            let workload = Arc::new(workload.clone());
            while d.members.len() as u32 > workload.replicas {
                let member = d.members.pop().expect("more members than wanted");
                said.push(format!("  stopped {}", member.replica.pod));
                self.launcher.stop(&d.workload, member).await;
            }
            match self
                .launcher
                .register(&workload, have + 1..=workload.replicas)
            {
                Ok(added) => {
                    for mut member in added {
                        self.launcher
                            .start_member(&workload, &mut member, pilot, &mut said)
                            .await;
                        d.members.push(member);
                    }
                }
                Err(e) => said.push(format!("error: Deployment {}/{}: {e:#}", key.0, key.1)),
            }
            d.workload = workload;
        }
        let gone: Vec<Key> = self
            .deployed
            .iter()
            .filter(|(key, d)| wanted.get(*key) != Some(&*d.workload))
            .map(|(key, _)| key.clone())
            .collect();
        for key in gone {
            if let Some(d) = self.deployed.remove(&key) {
                for member in d.members {
                    said.push(format!("  stopped {}", member.replica.pod));
                    self.launcher.stop(&d.workload, member).await;
                }
            }
        }
        for (key, workload) in wanted {
            if self.deployed.contains_key(&key) {
                continue;
            }
            let workload = Arc::new(workload);
            let mut members = match self.launcher.register(&workload, 1..=workload.replicas) {
                Ok(members) => members,
                Err(e) => {
                    said.push(format!("error: Deployment {}/{}: {e:#}", key.0, key.1));
                    continue;
                }
            };
            for member in &mut members {
                self.launcher
                    .start_member(&workload, member, pilot, &mut said)
                    .await;
            }
            self.deployed.insert(key, Deployed { workload, members });
        }
        said
    }

    /// Stops every replica: apps first, then their sidecars.
    pub async fn stop(mut self) {
        for (_, d) in std::mem::take(&mut self.deployed) {
            for member in d.members {
                self.launcher.stop(&d.workload, member).await;
            }
        }
    }
}

impl Launcher {
    /// An address and app ports for replicas `numbers` of `workload`, and the
    /// registration that puts each in the mesh.
    fn register(
        &mut self,
        workload: &Workload,
        numbers: RangeInclusive<u32>,
    ) -> anyhow::Result<Vec<Member>> {
        numbers
            .map(|i| {
                let ip = self
                    .addresses
                    .allocate()
                    .context("no free loopback address left in 127.0.1.0-127.0.9.255")?;
                let app_ports = workload
                    .ports
                    .iter()
                    .map(|_| free_port(ip))
                    .collect::<std::io::Result<Vec<_>>>()?;
                let replica = Replica {
                    pod: format!("{}-{i}", workload.name),
                    ip,
                    app_ports,
                };
                let file = self.registration(workload, &replica);
                state::write_atomic(&file, workload.registration(&replica).as_bytes())?;
                Ok(Member {
                    replica,
                    running: None,
                })
            })
            .collect()
    }

    fn registration(&self, workload: &Workload, replica: &Replica) -> PathBuf {
        self.state
            .workloads_dir()
            .join(format!("{}.{}.yaml", workload.namespace, replica.pod))
    }

    /// Starts the replica's sidecar, then its app.
    async fn start(
        &mut self,
        workload: &Workload,
        replica: &Replica,
        pilot: &PilotAccess,
    ) -> anyhow::Result<Running> {
        let who = Identity {
            node_id: workload.node_id(replica),
            workload: workload.name.clone(),
            labels: workload.labels_of(replica),
            namespace: workload.namespace.clone(),
            service_account: workload.service_account.clone(),
            ip: replica.ip,
            uncaptured: true,
        };
        let token = self.tokens.issue(&ServiceAccount {
            namespace: who.namespace.clone(),
            name: who.service_account.clone(),
        })?;
        let proxy = proxies::start(&who, pilot, token.clone(), Ports::Pod(replica.ip.into()))
            .await
            .with_context(|| format!("starting the sidecar of {}", replica.pod))?;
        let (program, rest) = workload.program()?;
        let spec = AppSpec {
            name: replica.pod.clone(),
            program,
            args: rest.to_vec(),
            env: workload.env_of(replica),
            log: self.state.log_file(&replica.pod),
        };
        let (stop, stopped) = watch::channel(false);
        let (status, app) = supervise(spec, stopped);
        let row = self.pods.follow(workload, replica, status);
        Ok(Running {
            proxy,
            token,
            stop,
            app,
            row,
        })
    }

    /// Starts `member`, saying so (or why not) in `said`.
    async fn start_member(
        &mut self,
        workload: &Workload,
        member: &mut Member,
        pilot: &PilotAccess,
        said: &mut Vec<String>,
    ) {
        match self.start(workload, &member.replica, pilot).await {
            Ok(running) => {
                said.push(format!(
                    "  started {} at {}",
                    member.replica.pod, member.replica.ip
                ));
                member.running = Some(running);
            }
            Err(e) => said.push(format!("error: {e:#}")),
        }
    }

    /// Stops the replica's app, then its sidecar, and takes it out of the mesh.
    async fn stop(&mut self, workload: &Workload, member: Member) {
        if let Some(running) = member.running {
            running.stop.send_replace(true);
            let _ = running.app.await;
            let _ = running.row.await;
            running.proxy.shutdown();
            drop(running.proxy);
            let _ = self.tokens.revoke(&running.token);
        }
        self.pods.remove(workload, &member.replica);
        let _ = std::fs::remove_file(self.registration(workload, &member.replica));
        self.addresses.release(member.replica.ip);
    }
}

/// Whether `want` differs from `have` in its number of replicas alone.
fn only_replicas_differ(have: &Workload, want: &Workload) -> bool {
    have.replicas != want.replicas
        && *want
            == Workload {
                replicas: want.replicas,
                ..have.clone()
            }
}

fn key(workload: &Workload) -> Key {
    (workload.namespace.clone(), workload.name.clone())
}

/// `POD.NAMESPACE`, as istioctl names a proxy.
fn pod_name(workload: &Workload, replica: &Replica) -> String {
    format!("{}.{}", replica.pod, workload.namespace)
}
