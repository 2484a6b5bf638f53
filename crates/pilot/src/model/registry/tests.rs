use mizzen_api::testdata::istio_data;
use mizzen_api::types::Protocol;

use super::*;
use crate::model::service::{Location, Resolution};
use crate::model::testing::snapshot;

fn build(yaml: &str) -> Registry {
    Registry::build(&snapshot(yaml), &MeshConfig::default())
}

fn service<'a>(registry: &'a Registry, host: &str) -> &'a Service {
    let found = registry.services_named(&Hostname::new(host));
    assert_eq!(found.len(), 1, "{host}: {found:?}");
    &found[0]
}

/// `address:port` of each endpoint of `host`'s `port`.
fn targets(registry: &Registry, host: &str, port: u16) -> Vec<String> {
    registry
        .endpoints(service(registry, host), port)
        .iter()
        .map(|e| format!("{}:{}", e.address, e.port))
        .collect()
}

const BOOKINFO_LIKE: &str = r#"
apiVersion: v1
kind: Service
metadata: {name: reviews, labels: {app: reviews}}
spec:
  clusterIP: 10.96.0.20
  ports:
  - {name: http, port: 9080}
  selector: {app: reviews}
---
apiVersion: v1
kind: Service
metadata: {name: ratings}
spec:
  ports:
  - {name: http, port: 9080}
  - {name: tcp-metrics, port: 9090}
  - {name: web, port: 8080}
  - {name: grpc-web, port: 8081, appProtocol: http2}
  selector: {app: ratings}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v1, labels: {version: v1}}
spec:
  address: 127.0.10.1
  labels: {app: reviews, version: v0}
  serviceAccount: bookinfo-reviews
  locality: eu-west/zone-a
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-v2}
spec:
  address: 127.0.10.2
  labels: {app: reviews, version: v2, istio-locality: eu-west.zone-b}
  weight: 3
  network: net-2
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-vm, namespace: other}
spec:
  address: 127.0.10.3
  labels: {app: reviews}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: reviews-dns}
spec:
  address: reviews.vm.example.com
  labels: {app: reviews}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: ratings-v1}
spec:
  address: 127.0.11.1
  labels: {app: ratings}
"#;

#[test]
fn kubernetes_services_take_workload_entries_their_selector_matches() {
    let registry = build(BOOKINFO_LIKE);
    let reviews = service(&registry, "reviews.default.svc.cluster.local");
    assert_eq!(reviews.namespace, "default");
    assert_eq!(reviews.addresses, ["10.96.0.20"]);
    assert_eq!(reviews.resolution, Resolution::ClientSideLb);
    assert_eq!(reviews.location, Location::MeshInternal);
    assert!(reviews.export_to.is_empty());
    assert_eq!(
        reviews.labels.get("app").map(String::as_str),
        Some("reviews")
    );
    assert_eq!(
        reviews.service_accounts,
        ["spiffe://cluster.local/ns/default/sa/bookinfo-reviews"]
    );
    // Same namespace, labelled, IP-addressed entries only.
    assert_eq!(
        targets(&registry, "reviews.default.svc.cluster.local", 9080),
        ["127.0.10.1:9080", "127.0.10.2:9080"]
    );

    let endpoints = registry.endpoints(reviews, 9080);
    let v1 = &endpoints[0];
    assert_eq!(
        v1.labels.get("version").map(String::as_str),
        Some("v1"),
        "metadata labels win"
    );
    assert_eq!(v1.service_port_name, "http");
    assert_eq!(v1.locality, "eu-west/zone-a");
    assert_eq!(v1.weight, 1);
    assert_eq!(
        v1.service_account,
        "spiffe://cluster.local/ns/default/sa/bookinfo-reviews"
    );
    assert_eq!(v1.health, HealthStatus::Healthy);
    assert_eq!(
        (v1.workload.as_str(), v1.workload_namespace.as_str()),
        ("reviews-v1", "default")
    );
    let v2 = &endpoints[1];
    assert_eq!(
        v2.locality, "eu-west/zone-b",
        "from the istio-locality label"
    );
    assert_eq!((v2.weight, v2.network.as_str()), (3, "net-2"));
    assert_eq!(v2.service_account, "");

    let ratings = service(&registry, "ratings.default.svc.cluster.local");
    assert!(ratings.addresses.is_empty(), "no clusterIP given");
    let protocols: Vec<(u16, Option<Protocol>)> =
        ratings.ports.iter().map(|p| (p.port, p.protocol)).collect();
    assert_eq!(
        protocols,
        [
            (9080, Some(Protocol::Http)),
            (9090, Some(Protocol::Tcp)),
            (8080, None),
            (8081, Some(Protocol::Http2)),
        ]
    );
    assert_eq!(
        targets(&registry, "ratings.default.svc.cluster.local", 9090),
        ["127.0.11.1:9090"]
    );
}

#[test]
fn target_ports_map_by_number_and_name() {
    let registry = build(
        r#"
apiVersion: v1
kind: Service
metadata: {name: app}
spec:
  selector: {app: app}
  ports:
  - {name: http, port: 80, targetPort: 8080}
  - {name: grpc, port: 81, targetPort: grpc-port}
  - {name: tcp, port: 82}
  - {name: dns, port: 53, protocol: UDP}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: a-plain}
spec:
  address: 10.0.0.1
  labels: {app: app}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: b-mapped}
spec:
  address: 10.0.0.2
  labels: {app: app}
  ports: {http: 9000, grpc-port: 7000, tcp: 7100}
"#,
    );
    let host = "app.default.svc.cluster.local";
    // A numeric targetPort, unless the entry maps the service port's name.
    assert_eq!(
        targets(&registry, host, 80),
        ["10.0.0.1:8080", "10.0.0.2:9000"]
    );
    // A named targetPort must be in the entry's ports.
    assert_eq!(targets(&registry, host, 81), ["10.0.0.2:7000"]);
    // No targetPort: the port itself, or the entry's port of that name.
    assert_eq!(
        targets(&registry, host, 82),
        ["10.0.0.1:82", "10.0.0.2:7100"]
    );
    assert!(
        targets(&registry, host, 53).is_empty(),
        "UDP is not proxied"
    );
}

#[test]
fn headless_external_name_and_export_to_annotation() {
    let registry = build(
        r#"
apiVersion: v1
kind: Service
metadata:
  name: db
  namespace: data
  annotations: {networking.istio.io/exportTo: ".,  web"}
spec:
  clusterIP: None
  selector: {app: db}
  ports: [{name: tcp, port: 5432}]
---
apiVersion: v1
kind: Service
metadata: {name: search}
spec:
  type: ExternalName
  externalName: search.example.com
  ports: [{name: https, port: 443}]
---
apiVersion: v1
kind: Service
metadata: {name: dual}
spec:
  clusterIP: 10.96.0.9
  clusterIPs: [10.96.0.9, "fd00::9"]
  ports: [{name: http, port: 80}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: db-1, namespace: data}
spec: {address: 10.0.0.5, labels: {app: db}}
"#,
    );
    let db = service(&registry, "db.data.svc.cluster.local");
    assert_eq!(db.resolution, Resolution::Passthrough);
    assert!(db.addresses.is_empty());
    assert_eq!(db.export_to, ["data", "web"]);
    assert!(targets(&registry, "db.data.svc.cluster.local", 5432).is_empty());

    let search = service(&registry, "search.default.svc.cluster.local");
    assert_eq!(
        (search.resolution, search.location),
        (Resolution::Dns, Location::MeshExternal)
    );
    assert_eq!(
        targets(&registry, "search.default.svc.cluster.local", 443),
        ["search.example.com:443"]
    );
    let dual = service(&registry, "dual.default.svc.cluster.local");
    assert_eq!(dual.addresses, ["10.96.0.9", "fd00::9"]);
}

#[test]
fn service_entries_in_every_resolution_mode() {
    let registry = build(
        r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: passthrough, namespace: egress}
spec:
  hosts: [db.internal]
  addresses: [10.1.0.0/16, 10.2.0.7/32]
  ports: [{number: 5432, name: tcp, protocol: TCP}]
  resolution: NONE
  location: MESH_INTERNAL
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: static, namespace: egress, labels: {team: a}}
spec:
  hosts: [api.internal]
  ports:
  - {number: 80, name: http, protocol: HTTP, targetPort: 8080}
  - {number: 9090, name: metrics}
  resolution: STATIC
  exportTo: ["."]
  subjectAltNames: ["spiffe://example.org/api"]
  endpoints:
  - address: 10.3.0.1
    ports: {http: 8888}
    labels: {version: v1}
    locality: us/east
    weight: 5
    network: n1
    serviceAccount: api
  - address: 10.3.0.2
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: dns, namespace: egress}
spec:
  hosts: [mirror.example.com]
  ports: [{number: 443, name: tls, protocol: TLS}]
  resolution: DNS
  endpoints:
  - address: eu.mirror.example.com
  - address: us.mirror.example.com
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: dns-hosts, namespace: egress}
spec:
  hosts: [a.example.com, b.example.com]
  ports: [{number: 80, name: http, protocol: HTTP, targetPort: 8080}]
  resolution: DNS_ROUND_ROBIN
"#,
    );
    let passthrough = service(&registry, "db.internal");
    assert_eq!(passthrough.resolution, Resolution::Passthrough);
    assert_eq!(passthrough.location, Location::MeshInternal);
    assert_eq!(passthrough.addresses, ["10.1.0.0/16", "10.2.0.7"]);
    assert!(targets(&registry, "db.internal", 5432).is_empty());

    let api = service(&registry, "api.internal");
    assert_eq!(api.resolution, Resolution::ClientSideLb);
    assert_eq!(
        api.location,
        Location::MeshExternal,
        "MESH_EXTERNAL by default"
    );
    assert_eq!(api.export_to, ["egress"]);
    assert_eq!(api.labels.get("team").map(String::as_str), Some("a"));
    assert_eq!(api.ports[0].protocol, Some(Protocol::Http));
    assert_eq!(api.ports[1].protocol, None, "no protocol: sniffed");
    assert_eq!(
        api.service_accounts,
        [
            "spiffe://cluster.local/ns/egress/sa/api",
            "spiffe://example.org/api"
        ]
    );
    // The entry's named port, else targetPort, else the port.
    assert_eq!(
        targets(&registry, "api.internal", 80),
        ["10.3.0.1:8888", "10.3.0.2:8080"]
    );
    assert_eq!(
        targets(&registry, "api.internal", 9090),
        ["10.3.0.1:9090", "10.3.0.2:9090"]
    );
    let first = &registry.endpoints(api, 80)[0];
    assert_eq!(
        (
            first.locality.as_str(),
            first.weight,
            first.network.as_str()
        ),
        ("us/east", 5, "n1")
    );
    assert_eq!(first.labels.get("version").map(String::as_str), Some("v1"));
    assert_eq!(
        first.service_account,
        "spiffe://cluster.local/ns/egress/sa/api"
    );

    let mirror = service(&registry, "mirror.example.com");
    assert_eq!(mirror.resolution, Resolution::Dns);
    assert_eq!(
        targets(&registry, "mirror.example.com", 443),
        ["eu.mirror.example.com:443", "us.mirror.example.com:443"]
    );

    // DNS without endpoints: each host is its own endpoint, on the target port.
    for host in ["a.example.com", "b.example.com"] {
        assert_eq!(
            service(&registry, host).resolution,
            Resolution::DnsRoundRobin
        );
        assert_eq!(targets(&registry, host, 80), [format!("{host}:8080")]);
    }
}

#[test]
fn service_entry_workload_selector_picks_entries_of_its_namespace() {
    let registry = build(
        r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: vm-static}
spec:
  hosts: [vm.static.internal]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: STATIC
  location: MESH_INTERNAL
  workloadSelector: {labels: {app: vm}}
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: vm-dns}
spec:
  hosts: [vm.dns.internal]
  ports: [{number: 80, name: http, protocol: HTTP}]
  resolution: DNS
  location: MESH_INTERNAL
  workloadSelector: {labels: {app: vm}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm-1}
spec: {address: 10.0.0.1, labels: {app: vm}, ports: {http: 8080}, serviceAccount: vm}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm-2}
spec: {address: vm2.example.com, labels: {app: vm}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm-3}
spec: {address: "unix:///var/run/vm.sock", labels: {app: vm}}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: vm-4
  annotations: {proxy.istio.io/health-checks-enabled: "true"}
spec: {address: 10.0.0.4, labels: {app: vm}}
status:
  conditions: [{type: Healthy, status: "False"}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: vm-5
  annotations: {proxy.istio.io/health-checks-enabled: "true"}
spec: {address: 10.0.0.5, labels: {app: vm}}
status:
  conditions: [{type: Healthy, status: "True"}]
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata: {name: vm-6, namespace: other}
spec: {address: 10.0.0.6, labels: {app: vm}}
"#,
    );
    // STATIC takes IP-addressed entries only; DNS also names and sockets.
    assert_eq!(
        targets(&registry, "vm.static.internal", 80),
        ["10.0.0.1:8080", "10.0.0.4:80", "10.0.0.5:80"]
    );
    assert_eq!(
        targets(&registry, "vm.dns.internal", 80),
        [
            "10.0.0.1:8080",
            "vm2.example.com:80",
            "unix:///var/run/vm.sock:0",
            "10.0.0.4:80",
            "10.0.0.5:80"
        ]
    );
    let vm = service(&registry, "vm.static.internal");
    let health: Vec<HealthStatus> = registry
        .endpoints(vm, 80)
        .iter()
        .map(|e| e.health)
        .collect();
    assert_eq!(
        health,
        [
            HealthStatus::Healthy,
            HealthStatus::Unhealthy,
            HealthStatus::Healthy
        ]
    );
    assert_eq!(
        vm.service_accounts,
        ["spiffe://cluster.local/ns/default/sa/vm"]
    );
    assert_eq!(registry.endpoints(vm, 80)[0].workload, "vm-1");
}

#[test]
fn one_definition_per_hostname_and_namespace() {
    let registry = build(
        r#"
apiVersion: v1
kind: Service
metadata: {name: reviews}
spec:
  ports: [{name: http, port: 9080}]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: decorate}
spec:
  hosts: [reviews.default.svc.cluster.local]
  ports: [{number: 9080, name: http, protocol: HTTP}]
  resolution: STATIC
  subjectAltNames: ["spiffe://legacy/reviews"]
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: newer, creationTimestamp: "2024-02-01T00:00:00Z"}
spec:
  hosts: [api.example.com]
  ports: [{number: 8443, name: tls, protocol: TLS}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: older, creationTimestamp: "2024-01-01T00:00:00Z"}
spec:
  hosts: [api.example.com]
  ports: [{number: 443, name: tls, protocol: TLS}]
  resolution: DNS
---
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: elsewhere, namespace: other}
spec:
  hosts: [api.example.com]
  ports: [{number: 443, name: tls, protocol: TLS}]
  resolution: DNS
"#,
    );
    let reviews = service(&registry, "reviews.default.svc.cluster.local");
    assert_eq!(
        reviews.location,
        Location::MeshInternal,
        "the Kubernetes Service"
    );
    assert_eq!(reviews.service_accounts, ["spiffe://legacy/reviews"]);

    let api = registry.services_named(&Hostname::new("api.example.com"));
    let kept: Vec<(&str, u16)> = api
        .iter()
        .map(|s| (s.namespace.as_str(), s.ports[0].port))
        .collect();
    // The oldest entry wins in `default`; no timestamp counts as oldest, as in Istio.
    assert_eq!(kept, [("other", 443), ("default", 443)]);
}

#[test]
fn short_names_resolve_as_istio_resolves_them() {
    let mesh = MeshConfig::default();
    let cases = [
        ("reviews", "default", "reviews.default.svc.cluster.local"),
        ("Reviews", "prod", "reviews.prod.svc.cluster.local"),
        ("reviews.default", "prod", "reviews.default"),
        (
            "reviews.default.svc.cluster.local",
            "prod",
            "reviews.default.svc.cluster.local",
        ),
        ("*.example.com", "prod", "*.example.com"),
        ("*", "prod", "*"),
        ("10.0.0.1", "prod", "10.0.0.1"),
        ("::1", "prod", "::1"),
        ("", "prod", ""),
    ];
    for (name, namespace, want) in cases {
        assert_eq!(
            resolve_host(name, namespace, &mesh).as_str(),
            want,
            "{name}"
        );
    }
    let custom = MeshConfig {
        domain_suffix: "corp.internal".into(),
        ..MeshConfig::default()
    };
    assert_eq!(
        resolve_host("ratings", "default", &custom).as_str(),
        "ratings.default.svc.corp.internal"
    );
}

#[test]
fn istio_bookinfo_services_with_workload_entries() {
    let Some(data) = istio_data() else { return };
    let bookinfo =
        std::fs::read_to_string(data.join("samples/bookinfo/platform/kube/bookinfo.yaml"))
            .expect("bookinfo.yaml is readable");
    let mut yaml = bookinfo;
    for (i, (app, version)) in [
        ("details", "v1"),
        ("ratings", "v1"),
        ("reviews", "v1"),
        ("reviews", "v2"),
        ("reviews", "v3"),
        ("productpage", "v1"),
    ]
    .into_iter()
    .enumerate()
    {
        yaml.push_str(&format!(
            "\n---\napiVersion: networking.istio.io/v1\nkind: WorkloadEntry\n\
             metadata: {{name: {app}-{version}}}\n\
             spec: {{address: 127.0.1.{}, labels: {{app: {app}, version: {version}}}, \
             serviceAccount: bookinfo-{app}}}\n",
            i + 1
        ));
    }
    let registry = build(&yaml);
    let hosts: Vec<&str> = registry.services().map(|s| s.hostname.as_str()).collect();
    assert_eq!(
        hosts,
        [
            "details.default.svc.cluster.local",
            "productpage.default.svc.cluster.local",
            "ratings.default.svc.cluster.local",
            "reviews.default.svc.cluster.local",
        ]
    );
    for service in registry.services() {
        let ports: Vec<(&str, u16, Option<Protocol>)> = service
            .ports
            .iter()
            .map(|p| (p.name.as_str(), p.port, p.protocol))
            .collect();
        assert_eq!(
            ports,
            [("http", 9080, Some(Protocol::Http))],
            "{}",
            service.hostname
        );
    }
    let reviews = service(&registry, "reviews.default.svc.cluster.local");
    let versions: Vec<(&str, &str)> = registry
        .endpoints(reviews, 9080)
        .iter()
        .map(|e| (e.address.as_str(), e.labels["version"].as_str()))
        .collect();
    assert_eq!(
        versions,
        [
            ("127.0.1.3", "v1"),
            ("127.0.1.4", "v2"),
            ("127.0.1.5", "v3")
        ]
    );
    assert_eq!(
        reviews.service_accounts,
        ["spiffe://cluster.local/ns/default/sa/bookinfo-reviews"]
    );
    assert_eq!(
        targets(&registry, "productpage.default.svc.cluster.local", 9080),
        ["127.0.1.6:9080"]
    );
}
