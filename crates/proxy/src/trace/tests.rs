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

#[test]
fn what_tracing_cannot_honour_is_refused_by_field() {
    use mizzen_xds::pb::envoy::config::trace::v3::tracing::{Http, http::ConfigType};
    use mizzen_xds::pb::google::protobuf::Any;

    let stats = Stats::default();
    let refused = |raw: PbTracing| Tracing::compile(&raw, Operation::Ingress, &stats).unwrap_err();
    let zipkin = PbTracing {
        provider: Some(Http {
            name: "envoy.tracers.zipkin".into(),
            config_type: Some(ConfigType::TypedConfig(Any {
                type_url: "type.googleapis.com/envoy.config.trace.v3.ZipkinConfig".into(),
                value: Vec::new(),
            })),
        }),
        ..PbTracing::default()
    };
    let (field, reason) = refused(zipkin);
    assert_eq!(field, "tracing.provider.typed_config.type_url");
    assert!(reason.contains("ZipkinConfig"), "{reason}");
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
