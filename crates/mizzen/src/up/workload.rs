//! Local workloads from the Kubernetes objects a user knows: a `Deployment` says what
//! to run and how many replicas, its pod labels and service account say who they are,
//! and the `Service`s that select them say which protocol their ports speak.

use std::collections::BTreeMap;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use anyhow::Context;
use mizzen_api::Object;
use mizzen_api::k8s_openapi::api::apps::v1::Deployment;
use mizzen_api::k8s_openapi::api::core::v1::Service;
use mizzen_api::k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use mizzen_pilot::translate::cluster::tls::TLS_MODE_LABEL;
use serde_json::json;

pub use mizzen_pilot::server::analysis::POD_LABEL;

/// What a Deployment (or `mizzen run`) asks to run.
#[derive(Debug, Clone, PartialEq)]
pub struct Workload {
    /// The Deployment's name (pods are named after it).
    pub name: String,
    /// Its namespace.
    pub namespace: String,
    /// How many replicas.
    pub replicas: u32,
    /// The pods' labels.
    pub labels: BTreeMap<String, String>,
    /// The pods' service account.
    pub service_account: String,
    /// The ports the app serves, first is `PORT`.
    pub ports: Vec<AppPort>,
    /// Extra environment for the app.
    pub env: Vec<(String, String)>,
    /// The program and its arguments.
    pub command: Vec<String>,
}

/// A port the app serves, and what it speaks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppPort {
    /// The container port (what Services target).
    pub number: u16,
    /// `HTTP`, `HTTP2`, `GRPC` or `TCP`.
    pub protocol: &'static str,
}

/// One replica: a workload at an address, its app listening behind its sidecar.
#[derive(Debug, Clone)]
pub struct Replica {
    /// The pod's name (`reviews-v2-1`).
    pub pod: String,
    /// The pod's address.
    pub ip: Ipv4Addr,
    /// The port the app really listens on for each of the workload's ports, in order;
    /// the sidecar listens on the workload's ports and forwards there.
    pub app_ports: Vec<u16>,
}

impl Workload {
    /// The workload a Deployment describes; `services` are all Services in the config.
    pub fn from_deployment(d: &Deployment, services: &[&Service]) -> anyhow::Result<Workload> {
        let name = d.metadata.name.clone().unwrap_or_default();
        let namespace = d
            .metadata
            .namespace
            .clone()
            .unwrap_or_else(|| "default".into());
        let what = format!("Deployment {namespace}/{name}");
        let pod = d.spec.template.spec.as_ref().context(format!(
            "{what}: spec.template.spec: required (the pod to run)"
        ))?;
        let container = pod.containers.first().with_context(|| {
            format!("{what}: spec.template.spec.containers: at least one container is required")
        })?;
        let mut command: Vec<String> = container.command.clone().unwrap_or_default();
        command.extend(container.args.clone().unwrap_or_default());
        anyhow::ensure!(
            !command.is_empty(),
            "{what}: spec.template.spec.containers[0].command: required (a local workload runs a command, not an image)"
        );
        let labels: BTreeMap<String, String> = d
            .spec
            .template
            .metadata
            .as_ref()
            .and_then(|m| m.labels.clone())
            .unwrap_or_default();
        let selecting: Vec<&Service> = services
            .iter()
            .copied()
            .filter(|s| selects(s, &namespace, &labels))
            .collect();
        let ports = container
            .ports
            .iter()
            .flatten()
            .map(|p| {
                let number = u16::try_from(p.container_port).with_context(|| {
                    format!(
                        "{what}: containers[0].ports: containerPort {} out of range",
                        p.container_port
                    )
                })?;
                Ok(AppPort {
                    number,
                    protocol: protocol_for(number, &selecting),
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        let env = container
            .env
            .iter()
            .flatten()
            .filter_map(|e| Some((e.name.clone(), e.value.clone()?)))
            .collect();
        Ok(Workload {
            name,
            namespace,
            replicas: d.spec.replicas.map_or(1, |r| r.max(0) as u32),
            labels,
            service_account: pod
                .service_account_name
                .clone()
                .unwrap_or_else(|| "default".into()),
            ports,
            env,
            command,
        })
    }

    /// A workload for `mizzen run`: one replica of `command`, serving `port` if given.
    pub fn for_command(
        name: &str,
        namespace: &str,
        labels: BTreeMap<String, String>,
        service_account: &str,
        port: Option<u16>,
        command: Vec<String>,
        services: &[&Service],
    ) -> Workload {
        let selecting: Vec<&Service> = services
            .iter()
            .copied()
            .filter(|s| selects(s, namespace, &labels))
            .collect();
        Workload {
            name: name.to_owned(),
            namespace: namespace.to_owned(),
            replicas: 1,
            service_account: service_account.to_owned(),
            ports: port
                .map(|number| AppPort {
                    number,
                    protocol: protocol_for(number, &selecting),
                })
                .into_iter()
                .collect(),
            labels,
            env: Vec::new(),
            command,
        }
    }

    /// Every Deployment in `objects` as a workload.
    pub fn all_in(objects: &[&Object]) -> anyhow::Result<Vec<Workload>> {
        Self::each_in(objects).into_iter().map(|(_, w)| w).collect()
    }

    /// Every Deployment in `objects`, by namespace and name, as a workload or why it
    /// cannot run.
    pub fn each_in(objects: &[&Object]) -> Vec<((String, String), anyhow::Result<Workload>)> {
        let services: Vec<&Service> = objects
            .iter()
            .filter_map(|o| match o {
                Object::Service(s) => Some(&**s),
                _ => None,
            })
            .collect();
        objects
            .iter()
            .filter_map(|o| match o {
                Object::Deployment(d) => {
                    let meta = &d.metadata;
                    let key = (
                        meta.namespace.clone().unwrap_or_else(|| "default".into()),
                        meta.name.clone().unwrap_or_default(),
                    );
                    Some((key, Workload::from_deployment(d, &services)))
                }
                _ => None,
            })
            .collect()
    }

    /// The program to start: `mizzen` means this executable.
    pub fn program(&self) -> anyhow::Result<(PathBuf, &[String])> {
        let (first, rest) = self.command.split_first().context("no command")?;
        let program = if first == "mizzen" {
            std::env::current_exe().context("finding the mizzen executable")?
        } else {
            PathBuf::from(first)
        };
        Ok((program, rest))
    }

    /// The Envoy node id of a replica's sidecar.
    pub fn node_id(&self, replica: &Replica) -> String {
        format!(
            "sidecar~{}~{}.{ns}~{ns}.svc.cluster.local",
            replica.ip,
            replica.pod,
            ns = self.namespace
        )
    }

    /// The replica's labels: the pod's, [`POD_LABEL`], and `security.istio.io/tlsMode:
    /// istio`, which Istio's injector gives every pod with a sidecar so that meshed
    /// clients talk mTLS to it (auto mTLS).
    pub fn labels_of(&self, replica: &Replica) -> BTreeMap<String, String> {
        let mut labels = self.labels.clone();
        labels.insert(POD_LABEL.into(), replica.pod.clone());
        labels.insert(TLS_MODE_LABEL.into(), "istio".into());
        labels
    }

    /// The environment the replica's app gets on top of `up`'s own.
    pub fn env_of(&self, replica: &Replica) -> Vec<(String, String)> {
        let mut env = vec![
            ("POD_IP".to_owned(), replica.ip.to_string()),
            ("POD_NAME".to_owned(), replica.pod.clone()),
            ("POD_NAMESPACE".to_owned(), self.namespace.clone()),
            ("SERVICE_ACCOUNT".to_owned(), self.service_account.clone()),
            (
                "HTTP_PROXY".to_owned(),
                format!(
                    "http://{}:{}",
                    replica.ip,
                    mizzen_pilot::translate::listener::HTTP_PROXY_PORT
                ),
            ),
        ];
        env.push(("http_proxy".to_owned(), env[4].1.clone()));
        // The app's own address is local; only calls to services go through the proxy.
        env.push(("NO_PROXY".to_owned(), replica.ip.to_string()));
        if let Some(port) = replica.app_ports.first() {
            env.push(("PORT".to_owned(), port.to_string()));
        }
        for (port, app_port) in self.ports.iter().zip(&replica.app_ports).skip(1) {
            env.push((format!("PORT_{}", port.number), app_port.to_string()));
        }
        env.extend(self.env.iter().cloned());
        env
    }

    /// The objects that put a replica in the mesh: a WorkloadEntry, so the Services
    /// selecting its labels reach it, and a Sidecar for it alone that binds its
    /// listeners on its address without capture (local mode) and forwards each
    /// workload port to the port its app really listens on.
    pub fn registration(&self, replica: &Replica) -> String {
        let ip = replica.ip.to_string();
        let entry = json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": "WorkloadEntry",
            "metadata": {"name": replica.pod, "namespace": self.namespace},
            "spec": {
                "address": ip,
                "labels": self.labels_of(replica),
                "serviceAccount": self.service_account,
            },
        });
        let ingress: Vec<serde_json::Value> = self
            .ports
            .iter()
            .zip(&replica.app_ports)
            .map(|(port, app_port)| {
                json!({
                    "port": {
                        "number": port.number,
                        "protocol": port.protocol,
                        "name": format!("{}-{}", port.protocol.to_ascii_lowercase(), port.number),
                    },
                    "bind": ip,
                    "captureMode": "NONE",
                    "defaultEndpoint": format!("0.0.0.0:{app_port}"),
                })
            })
            .collect();
        let sidecar = json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": "Sidecar",
            "metadata": {"name": replica.pod, "namespace": self.namespace},
            "spec": {
                "workloadSelector": {"labels": {POD_LABEL: replica.pod}},
                "ingress": ingress,
                "egress": [{
                    "bind": ip,
                    "captureMode": "NONE",
                    "hosts": ["*/*"],
                }],
            },
        });
        format!("{entry}\n---\n{sidecar}\n")
    }
}

/// True when Service `s` selects pods with `labels` in `namespace`.
fn selects(s: &Service, namespace: &str, labels: &BTreeMap<String, String>) -> bool {
    s.metadata.namespace.as_deref().unwrap_or("default") == namespace
        && s.spec
            .as_ref()
            .and_then(|spec| spec.selector.as_ref())
            .is_some_and(|sel| sel.iter().all(|(k, v)| labels.get(k) == Some(v)))
}

/// The protocol of container port `number`, from the first Service port targeting it
/// (`appProtocol`, else the port name's prefix, as Istio reads them); TCP otherwise.
fn protocol_for(number: u16, services: &[&Service]) -> &'static str {
    let port = services
        .iter()
        .filter_map(|s| s.spec.as_ref()?.ports.as_ref())
        .flatten()
        .find(|p| match &p.target_port {
            Some(IntOrString::Int(n)) => *n == i32::from(number),
            Some(IntOrString::String(_)) => false,
            None => p.port == i32::from(number),
        });
    let Some(port) = port else { return "TCP" };
    let name = port
        .app_protocol
        .clone()
        .or_else(|| port.name.clone())
        .unwrap_or_default()
        .to_ascii_lowercase();
    let prefix = name.split('-').next().unwrap_or_default();
    match prefix {
        "http" => "HTTP",
        "http2" | "h2c" => "HTTP2",
        "grpc" => "GRPC",
        _ => "TCP",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mizzen_api::load::Loader;

    const OBJECTS: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: reviews}
spec:
  selector: {app: reviews}
  ports: [{name: http, port: 9080}]
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: reviews-v2}
spec:
  replicas: 2
  selector: {matchLabels: {app: reviews, version: v2}}
  template:
    metadata: {labels: {app: reviews, version: v2}}
    spec:
      serviceAccountName: bookinfo-reviews
      containers:
      - name: reviews
        command: ["mizzen", "demo-app", "reviews"]
        args: ["--version", "v2"]
        ports: [{containerPort: 9080}]
        env: [{name: STARS, value: black}]
"#;

    fn workloads() -> Vec<Workload> {
        let loaded = Loader::new().load_str(OBJECTS, None);
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        let objects: Vec<Object> = loaded.objects.into_iter().map(|l| l.object).collect();
        Workload::all_in(&objects.iter().collect::<Vec<_>>()).unwrap()
    }

    #[test]
    fn a_deployment_says_what_to_run_and_who_it_is() {
        let [w] = &workloads()[..] else { panic!() };
        assert_eq!(w.name, "reviews-v2");
        assert_eq!(w.namespace, "default");
        assert_eq!(w.replicas, 2);
        assert_eq!(w.service_account, "bookinfo-reviews");
        assert_eq!(
            w.command,
            ["mizzen", "demo-app", "reviews", "--version", "v2"]
        );
        assert_eq!(
            w.ports,
            [AppPort {
                number: 9080,
                protocol: "HTTP"
            }]
        );
        assert_eq!(w.env, [("STARS".to_owned(), "black".to_owned())]);
        assert_eq!(w.program().unwrap().0, std::env::current_exe().unwrap());
    }

    #[test]
    fn a_replica_registers_a_valid_entry_and_sidecar_of_its_own() {
        let [w] = &workloads()[..] else { panic!() };
        let replica = Replica {
            pod: "reviews-v2-1".into(),
            ip: Ipv4Addr::new(127, 0, 1, 7),
            app_ports: vec![40000],
        };
        assert_eq!(
            w.node_id(&replica),
            "sidecar~127.0.1.7~reviews-v2-1.default~default.svc.cluster.local"
        );
        let loaded = Loader::new().load_str(&w.registration(&replica), None);
        assert!(loaded.errors.is_empty(), "{:?}", loaded.errors);
        for l in &loaded.objects {
            let issues = l.object.validate();
            assert!(issues.is_empty(), "{:?}", issues);
        }
        let text = w.registration(&replica);
        assert!(
            text.contains("\"security.istio.io/tlsMode\":\"istio\""),
            "a replica has a sidecar, so meshed clients talk mTLS to it: {text}"
        );
        assert!(
            text.contains("\"defaultEndpoint\":\"0.0.0.0:40000\""),
            "{text}"
        );
        let env = w.env_of(&replica);
        assert!(env.contains(&("PORT".into(), "40000".into())));
        assert!(env.contains(&("HTTP_PROXY".into(), "http://127.0.1.7:15080".into())));
    }
}
