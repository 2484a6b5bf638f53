use super::*;

#[test]
fn defaults_are_istios() {
    let mesh = MeshConfig::from_yaml("").unwrap();
    assert_eq!(mesh, MeshConfig::default());
    assert_eq!(mesh.root_namespace, "istio-system");
    assert_eq!(mesh.trust_domain, "cluster.local");
    assert!(mesh.enable_auto_mtls);
    assert!(mesh.enable_tracing);
    assert_eq!(mesh.access_log_file, "");
    assert_eq!(mesh.access_log_encoding, AccessLogEncoding::Text);
    assert_eq!(mesh.default_providers.metrics, ["prometheus"]);
    assert_eq!(
        mesh.outbound_traffic_policy.mode,
        OutboundTrafficMode::AllowAny
    );
    assert_eq!(mesh.ingress_controller_mode, IngressControllerMode::Strict);
    assert_eq!(mesh.default_sampling(), 1.0);
    assert_eq!(mesh.mesh_id(), "cluster.local");
    let names: Vec<&str> = mesh
        .extension_providers
        .iter()
        .map(|p| p.name.as_str())
        .collect();
    assert_eq!(names, ["prometheus", "stackdriver", "envoy"]);
    assert_eq!(
        mesh.provider("ENVOY").unwrap().provider,
        Provider::EnvoyFileAccessLog(FileAccessLog {
            path: "/dev/stdout".into(),
            ..FileAccessLog::default()
        })
    );
}

const FULL: &str = r#"
rootNamespace: mesh-root
trustDomain: example.org
trustDomainAliases: [old.org]
enableAutoMtls: false
accessLogFile: /dev/stdout
accessLogEncoding: JSON
accessLogFormat: '{"code":"%RESPONSE_CODE%"}'
enableTracing: false
enablePrometheusMerge: true
defaultConfig:
  meshId: m1
  discoveryAddress: istiod.istio-system.svc:15012
  tracing:
    sampling: 25
    customTags:
      team:
        literal:
          value: a
  proxyMetadata:
    ISTIO_META_DNS_CAPTURE: "true"
defaultProviders:
  tracing: [otel]
  accessLogging: [logs]
outboundTrafficPolicy:
  mode: REGISTRY_ONLY
extensionProviders:
- name: otel
  opentelemetry:
    service: otel-collector.observability.svc.cluster.local
    port: 4318
    maxTagLength: 99
    http:
      path: /v1/traces
      timeout: 3s
      headers:
      - name: x-token
        value: abc
    resourceDetectors:
      environment: {}
- name: logs
  envoyFileAccessLog:
    path: /tmp/access.log
    logFormat:
      labels:
        code: "%RESPONSE_CODE%"
- name: zipkin
  zipkin:
    service: zipkin.istio-system.svc.cluster.local
    port: 9411
- name: als
  envoyOtelAls:
    service: otel.observability.svc.cluster.local
    port: 4317
- name: sky
  skywalking:
    service: sky
    port: 11800
- name: authz
  envoyExtAuthzGrpc:
    service: authz.default.svc.cluster.local
    port: 9000
    futureField: ignored
"#;

#[test]
fn every_field_mizzen_uses_is_read() {
    let mesh = MeshConfig::from_yaml(FULL).unwrap();
    assert_eq!(mesh.root_namespace, "mesh-root");
    assert_eq!(mesh.trust_domain_aliases, ["old.org"]);
    assert!(!mesh.enable_auto_mtls && !mesh.enable_tracing);
    assert_eq!(mesh.access_log_encoding, AccessLogEncoding::Json);
    assert_eq!(mesh.access_log_format, r#"{"code":"%RESPONSE_CODE%"}"#);
    assert_eq!(mesh.other["enablePrometheusMerge"], Value::Bool(true));
    assert_eq!(
        mesh.default_config.other["discoveryAddress"],
        "istiod.istio-system.svc:15012"
    );
    assert_eq!(mesh.default_sampling(), 25.0);
    assert_eq!(mesh.mesh_id(), "m1");
    assert_eq!(mesh.default_providers.metrics, ["prometheus"]);
    assert_eq!(mesh.default_providers.tracing, ["otel"]);
    assert_eq!(
        mesh.outbound_traffic_policy.mode,
        OutboundTrafficMode::RegistryOnly
    );
    let Provider::Opentelemetry(otel) = &mesh.provider("otel").unwrap().provider else {
        panic!("not opentelemetry");
    };
    assert_eq!(otel.port, 4318);
    assert_eq!(otel.max_tag_length, 99);
    let http = otel.http.as_ref().unwrap();
    assert_eq!(http.path, "/v1/traces");
    assert_eq!(http.headers[0].value, "abc");
    assert!(
        otel.resource_detectors
            .as_ref()
            .unwrap()
            .environment
            .is_some()
    );
    let Provider::EnvoyFileAccessLog(file) = &mesh.provider("logs").unwrap().provider else {
        panic!("not a file provider");
    };
    assert_eq!(file.path, "/tmp/access.log");
    assert!(file.log_format.as_ref().unwrap().labels.is_some());
    assert_eq!(
        mesh.provider("sky").unwrap().provider,
        Provider::Unsupported(UnsupportedKind::Skywalking)
    );
    assert!(matches!(
        mesh.provider("authz").unwrap().provider,
        Provider::EnvoyExtAuthzGrpc(ExtAuthzGrpc { port: 9000, .. })
    ));
    // Built-ins are added after the declared ones.
    assert!(mesh.provider("envoy").is_some() && mesh.provider("prometheus").is_some());
}

fn error(yaml: &str) -> String {
    MeshConfig::from_yaml(yaml).unwrap_err().to_string()
}

#[test]
fn errors_name_the_field() {
    assert_eq!(
        error("accessLogEncoding: XML\n"),
        "mesh config: accessLogEncoding: Unsupported value: \"XML\": supported values: \"TEXT\", \"JSON\""
    );
    assert_eq!(
        error("extensionProviders:\n- name: o\n  opentelemetry:\n    port: x\n"),
        "mesh config: extensionProviders[0]: provider \"o\": opentelemetry.port: invalid type: string \"x\", expected u32"
    );
    assert_eq!(
        error(
            "extensionProviders:\n- name: o\n  opentelemetry:\n    service: s\n    port: 70000\n"
        ),
        "mesh config: extensionProviders[0].opentelemetry.port: must be between 1 and 65535, found 70000"
    );
    assert_eq!(
        error("extensionProviders:\n- name: a\n  prometheus: {}\n- name: A\n  prometheus: {}\n"),
        "mesh config: extensionProviders[1].name: duplicate provider name \"A\""
    );
    assert!(
        error(
            "extensionProviders:\n- name: a\n  zipkin: {service: z, port: 1}\n  prometheus: {}\n"
        )
        .contains("only one provider kind may be set")
    );
    assert!(error("extensionProviders:\n- name: a\n").contains("no provider kind is set"));
    assert_eq!(
        error("defaultConfig:\n  tracing:\n    sampling: 101\n"),
        "mesh config: defaultConfig.tracing.sampling: must be between 0.0 and 100.0"
    );
    assert!(error("- a\n").starts_with("mesh config: .: invalid type"));
}

#[test]
fn sampling_above_a_hundred_reads_as_one_percent() {
    let mut mesh = MeshConfig::default();
    mesh.default_config.tracing = Some(ProxyTracing {
        sampling: 250.0,
        ..ProxyTracing::default()
    });
    assert_eq!(mesh.default_sampling(), 1.0);
}

#[test]
fn read_from_the_istio_config_map() {
    let loaded = crate::load::Loader::new().load_str(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: istio\n  namespace: istio-system\ndata:\n  mesh: |-\n    accessLogFile: /dev/stdout\n",
        None,
    );
    let object = &loaded.objects[0].object;
    assert_eq!(object.key(), MeshConfig::config_map_key("istio-system"));
    let mesh = MeshConfig::from_config_map(object).unwrap().unwrap();
    assert_eq!(mesh.access_log_file, "/dev/stdout");
    let bad = crate::load::Loader::new().load_str(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: istio\n  namespace: istio-system\ndata:\n  mesh: 'rootNamespace: [1]'\n",
        None,
    );
    let err = MeshConfig::from_config_map(&bad.objects[0].object)
        .unwrap()
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("mesh config ConfigMap istio-system/istio: rootNamespace: invalid type"),
        "{err}"
    );
}
