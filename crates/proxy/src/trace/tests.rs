use http::{HeaderMap, HeaderValue};

use super::*;

fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
    pairs
        .iter()
        .map(|(k, v)| {
            (
                http::HeaderName::from_static(k),
                HeaderValue::from_static(v),
            )
        })
        .collect()
}

fn always() -> Tracing {
    Tracing::propagating(100.0)
}

#[test]
fn a_w3c_trace_continues_with_a_child_span() {
    let mut h = headers(&[
        (
            "traceparent",
            "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        ),
        ("tracestate", "congo=t61rcWkgMzE"),
    ]);
    let hop = always().start(&mut h);
    assert_eq!(hop.span.trace_id, 0x4bf92f3577b34da6a3ce929d0e0e4736);
    assert_eq!(hop.parent, Some(0x00f067aa0ba902b7));
    assert_ne!(hop.span.span_id, 0x00f067aa0ba902b7);
    assert!(hop.span.sampled);
    assert_eq!(
        h["traceparent"],
        format!(
            "00-4bf92f3577b34da6a3ce929d0e0e4736-{:016x}-01",
            hop.span.span_id
        )
    );
    // Vendor state travels untouched; no B3 is added to a W3C trace.
    assert_eq!(h["tracestate"], "congo=t61rcWkgMzE");
    assert!(!h.contains_key("x-b3-traceid"));
}

#[test]
fn the_callers_decision_wins_over_the_percentage() {
    let mut h = headers(&[(
        "traceparent",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00",
    )]);
    let hop = always().start(&mut h);
    assert!(!hop.span.sampled);
    assert!(h["traceparent"].to_str().unwrap().ends_with("-00"));
}

#[test]
fn b3_multi_headers_continue_as_b3() {
    let mut h = headers(&[
        ("x-b3-traceid", "463ac35c9f6413ad"),
        ("x-b3-spanid", "a2fb4a1d1a96d312"),
        ("x-b3-parentspanid", "0020000000000001"),
        ("x-b3-sampled", "1"),
    ]);
    let hop = Tracing::propagating(0.0).start(&mut h);
    assert_eq!(hop.span.trace_id, 0x463ac35c9f6413ad);
    assert_eq!(hop.parent, Some(0xa2fb4a1d1a96d312));
    assert!(hop.span.sampled);
    assert_eq!(h["x-b3-traceid"], "463ac35c9f6413ad");
    assert_eq!(h["x-b3-spanid"], format!("{:016x}", hop.span.span_id));
    assert_eq!(h["x-b3-parentspanid"], "a2fb4a1d1a96d312");
    assert_eq!(h["x-b3-sampled"], "1");
    assert!(!h.contains_key("traceparent"));
}

#[test]
fn single_b3_continues_as_single_b3() {
    let mut h = headers(&[("b3", "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-0")]);
    let hop = always().start(&mut h);
    assert!(!hop.span.sampled);
    assert_eq!(
        h["b3"],
        format!(
            "80f198ee56343ba864fe8b2a57d3eff7-{:016x}-0-e457b5a2e4d86bd1",
            hop.span.span_id
        )
    );
}

#[test]
fn malformed_context_starts_a_new_trace_in_both_formats() {
    for bad in [
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
        "garbage",
    ] {
        let mut h = HeaderMap::new();
        h.insert("traceparent", HeaderValue::from_static(bad));
        let hop = always().start(&mut h);
        assert_eq!(hop.parent, None, "{bad}");
        let trace = format!("{:032x}", hop.span.trace_id);
        assert!(h["traceparent"].to_str().unwrap().contains(&trace), "{bad}");
        assert!(h.contains_key("x-b3-traceid") && !h.contains_key("x-b3-parentspanid"));
    }
}

#[test]
fn new_traces_are_sampled_at_the_percentage() {
    // 10,000 new traces at 50%: within 5 standard deviations of 5,000.
    let n = 10_000u32;
    let tracing = Tracing::propagating(50.0);
    let sampled = (0..n)
        .filter(|_| tracing.start(&mut HeaderMap::new()).span.sampled)
        .count() as f64;
    let (mean, sd) = (f64::from(n) * 0.5, (f64::from(n) * 0.25).sqrt());
    assert!(
        (sampled - mean).abs() <= 5.0 * sd,
        "{sampled} of {n} sampled"
    );
    let none = Tracing::propagating(0.0);
    assert!((0..1000).all(|_| !none.start(&mut HeaderMap::new()).span.sampled));
    assert!((0..1000).all(|_| always().start(&mut HeaderMap::new()).span.sampled));
}

/// A connection manager's tracing with a Zipkin provider, as pilot writes it for Istio's
/// `zipkin` providers unless told `shared_span_context`.
fn zipkin_tracing(
    operation: Operation,
    configure: impl FnOnce(&mut mizzen_xds::pb::envoy::config::trace::v3::ZipkinConfig),
) -> Result<Tracing, (String, String)> {
    use mizzen_xds::pb::envoy::config::trace::v3::{
        ZipkinConfig, tracing::Http, tracing::http::ConfigType, zipkin_config,
    };
    use mizzen_xds::pb::google::protobuf::Any;
    use prost::Message;

    let mut config = ZipkinConfig {
        collector_cluster: "outbound|9411||zipkin.istio-system.svc.cluster.local".into(),
        collector_endpoint: "/api/v2/spans".into(),
        collector_endpoint_version: zipkin_config::CollectorEndpointVersion::HttpJson as i32,
        collector_hostname: "zipkin.istio-system.svc.cluster.local".into(),
        trace_id_128bit: true,
        ..ZipkinConfig::default()
    };
    configure(&mut config);
    let raw = PbTracing {
        provider: Some(Http {
            name: "envoy.tracers.zipkin".into(),
            config_type: Some(ConfigType::TypedConfig(Any {
                type_url: "type.googleapis.com/envoy.config.trace.v3.ZipkinConfig".into(),
                value: config.encode_to_vec(),
            })),
        }),
        ..PbTracing::default()
    };
    Tracing::compile(&raw, operation, &Stats::default())
}

#[test]
fn zipkin_configs_envoy_cannot_send_are_refused_by_field() {
    use mizzen_xds::pb::envoy::config::trace::v3::zipkin_config::CollectorEndpointVersion;

    let refused =
        |configure: fn(&mut _)| zipkin_tracing(Operation::Ingress, configure).unwrap_err();
    let (field, reason) =
        refused(|c| c.collector_endpoint_version = CollectorEndpointVersion::Grpc as i32);
    assert_eq!(
        field,
        "tracing.provider.typed_config.collector_endpoint_version"
    );
    assert!(reason.contains("HTTP_JSON"), "{reason}");
    let (field, _) = refused(|c| c.collector_endpoint.clear());
    assert_eq!(field, "tracing.provider.typed_config.collector_endpoint");
    let (field, _) = refused(|c| c.collector_cluster.clear());
    assert_eq!(field, "tracing.provider.typed_config.collector_cluster");
}

#[test]
fn a_zipkin_server_shares_the_callers_span_and_a_client_is_its_child() {
    let b3 = || {
        headers(&[
            ("x-b3-traceid", "463ac35c9f6413ad48485a3953bb6124"),
            ("x-b3-spanid", "a2fb4a1d1a96d312"),
            ("x-b3-parentspanid", "0020000000000001"),
            ("x-b3-sampled", "1"),
        ])
    };
    // Envoy's default: shared span context.
    let server = zipkin_tracing(Operation::Ingress, |c| c.shared_span_context = None).unwrap();
    let mut h = b3();
    let hop = server.start(&mut h);
    assert_eq!(hop.span.span_id, 0xa2fb4a1d1a96d312);
    assert_eq!(hop.parent, Some(0x0020000000000001));
    assert_eq!(h, b3());
    // Istio's: a child span of its own, also for the SERVER span.
    let istio = zipkin_tracing(Operation::Ingress, |c| {
        c.shared_span_context = Some(mizzen_xds::pb::google::protobuf::BoolValue { value: false })
    })
    .unwrap();
    let client = zipkin_tracing(Operation::Egress, |_| {}).unwrap();
    for tracing in [istio, client] {
        let mut h = b3();
        let hop = tracing.start(&mut h);
        assert_eq!(hop.span.trace_id, 0x463ac35c9f6413ad48485a3953bb6124);
        assert_eq!(hop.parent, Some(0xa2fb4a1d1a96d312));
        assert_eq!(h["x-b3-spanid"], format!("{:016x}", hop.span.span_id));
        assert_eq!(h["x-b3-parentspanid"], "a2fb4a1d1a96d312");
    }
}

#[test]
fn zipkin_reads_and_writes_b3_only() {
    let tracing = zipkin_tracing(Operation::Egress, |_| {}).unwrap();
    // A W3C trace is not Zipkin's: a new B3 trace starts and `traceparent` passes on.
    let traceparent = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01";
    let mut h = headers(&[("traceparent", traceparent)]);
    let hop = tracing.start(&mut h);
    assert_eq!(hop.parent, None);
    assert_eq!(h["traceparent"], traceparent);
    // A new trace: 128 bits as configured, its root span id the low half.
    assert!(hop.span.trace_id >> 64 != 0);
    assert_eq!(
        hop.span.span_id as u128,
        hop.span.trace_id & u128::from(u64::MAX)
    );
    assert_eq!(h["x-b3-traceid"], format!("{:032x}", hop.span.trace_id));
    assert!(!h.contains_key("x-b3-parentspanid"));
    // Single `b3` continues as single `b3`, its parent the caller's span.
    let mut h = headers(&[(
        "b3",
        "80f198ee56343ba864fe8b2a57d3eff7-e457b5a2e4d86bd1-0-05e3ac9a4f6e3b90",
    )]);
    let hop = tracing.start(&mut h);
    assert!(!hop.span.sampled);
    assert_eq!(
        h["b3"],
        format!(
            "80f198ee56343ba864fe8b2a57d3eff7-{:016x}-0-e457b5a2e4d86bd1",
            hop.span.span_id
        )
    );
    assert!(!h.contains_key("x-b3-traceid"));
}

#[test]
fn a_b3_trace_without_a_decision_takes_the_local_one_under_zipkin() {
    let mut never = zipkin_tracing(Operation::Egress, |_| {}).unwrap();
    never.random_sampling = 0.0;
    let mut h = headers(&[
        ("x-b3-traceid", "463ac35c9f6413ad"),
        ("x-b3-spanid", "a2fb4a1d1a96d312"),
    ]);
    assert!(!never.start(&mut h).span.sampled);
    assert_eq!(h["x-b3-sampled"], "0");
    // Without a tracer a B3 trace id alone is sampled, as before.
    let mut h = headers(&[
        ("x-b3-traceid", "463ac35c9f6413ad"),
        ("x-b3-spanid", "a2fb4a1d1a96d312"),
    ]);
    assert!(Tracing::propagating(0.0).start(&mut h).span.sampled);
}

#[test]
fn metadata_tags_istiod_sends_give_their_default_or_no_tag() {
    use mizzen_xds::pb::envoy::r#type::tracing::v3::{CustomTag as PbCustomTag, custom_tag};

    let metadata = |default: &str| PbCustomTag {
        tag: "istio.authorization.dry_run.allow_policy.name".into(),
        r#type: Some(custom_tag::Type::Metadata(custom_tag::Metadata {
            default_value: default.into(),
            ..Default::default()
        })),
    };
    let headers = HeaderMap::new();
    let bare = super::tags::CustomTag::compile(&metadata("")).unwrap();
    assert!(bare.attribute(&headers).is_none());
    let defaulted = super::tags::CustomTag::compile(&metadata("none")).unwrap();
    assert!(defaulted.attribute(&headers).is_some());
}

#[test]
fn with_upstream_spans_the_hop_is_a_server_whatever_its_direction() {
    use mizzen_xds::pb::google::protobuf::BoolValue;

    let stats = Stats::default();
    let kind = |spawn: bool, operation| {
        let raw = PbTracing {
            spawn_upstream_span: Some(BoolValue { value: spawn }),
            ..PbTracing::default()
        };
        Tracing::compile(&raw, operation, &stats).unwrap().kind
    };
    assert_eq!(kind(false, Operation::Egress), SpanKind::Client);
    assert_eq!(kind(false, Operation::Ingress), SpanKind::Server);
    assert_eq!(kind(true, Operation::Egress), SpanKind::Server);
    assert_eq!(kind(true, Operation::Ingress), SpanKind::Server);
}
