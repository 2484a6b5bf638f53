//! Fault injection settings carried by routes (`typed_per_filter_config`), as Istio puts
//! a VirtualService's `fault` there: compiled with the table, most specific wins, and
//! sampled per request.

use std::time::Duration;

use http::StatusCode;
use mizzen_xds::pb::envoy::extensions::filters::common::fault::v3::{
    FaultDelay, fault_delay::FaultDelaySecifier,
};
use mizzen_xds::pb::envoy::extensions::filters::http::fault::v3::{
    FaultAbort, HttpFault, fault_abort,
};
use mizzen_xds::pb::envoy::r#type::v3::{FractionalPercent, fractional_percent::DenominatorType};
use mizzen_xds::pb::google::protobuf::{Any, Duration as PbDuration};
use prost::{Message, Name};

use super::*;
use crate::route::{AbortStatus, FAULT_FILTER, Fault};

fn percent(numerator: u32, denominator: DenominatorType) -> Option<FractionalPercent> {
    Some(FractionalPercent {
        numerator,
        denominator: denominator as i32,
    })
}

fn abort(error: fault_abort::ErrorType, pct: Option<FractionalPercent>) -> HttpFault {
    HttpFault {
        abort: Some(FaultAbort {
            error_type: Some(error),
            percentage: pct,
            ..FaultAbort::default()
        }),
        ..HttpFault::default()
    }
}

fn delay(millis: i32, pct: Option<FractionalPercent>) -> HttpFault {
    HttpFault {
        delay: Some(FaultDelay {
            fault_delay_secifier: Some(FaultDelaySecifier::FixedDelay(PbDuration {
                seconds: 0,
                nanos: millis * 1_000_000,
            })),
            percentage: pct,
        }),
        ..HttpFault::default()
    }
}

fn any(fault: &HttpFault) -> Any {
    Any {
        type_url: HttpFault::type_url(),
        value: fault.encode_to_vec(),
    }
}

fn with_fault(mut route: pb::Route, fault: &HttpFault) -> pb::Route {
    route
        .typed_per_filter_config
        .insert(FAULT_FILTER.to_owned(), any(fault));
    route
}

fn compiled(fault: &HttpFault) -> Fault {
    Fault::compile(fault).unwrap_or_else(|e| panic!("{}: {}", e.field, e.problem))
}

#[test]
fn the_routes_fault_wins_over_its_virtual_hosts() {
    let mut vh = vhost(
        "reviews",
        &["*"],
        vec![
            with_fault(
                route("own", prefix("/own")),
                &abort(
                    fault_abort::ErrorType::HttpStatus(503),
                    percent(100, DenominatorType::Hundred),
                ),
            ),
            route("inherits", prefix("/")),
        ],
    );
    vh.typed_per_filter_config.insert(
        FAULT_FILTER.to_owned(),
        any(&abort(
            fault_abort::ErrorType::HttpStatus(418),
            percent(100, DenominatorType::Hundred),
        )),
    );
    let table = table(vec![vh]);
    let status = |path: &str| {
        let req = Request::get("x", path);
        let selected = table.select_with(&req.head(), 0).unwrap();
        selected
            .fault()
            .unwrap()
            .abort(&req.head(), 0)
            .unwrap()
            .status
    };
    assert_eq!(
        status("/own"),
        AbortStatus::Http(StatusCode::SERVICE_UNAVAILABLE)
    );
    assert_eq!(status("/other"), AbortStatus::Http(StatusCode::IM_A_TEAPOT));
    let plain = super::table(vec![vhost("v", &["*"], vec![route("r", prefix("/"))])]);
    let req = Request::get("x", "/");
    assert!(plain.select_with(&req.head(), 0).unwrap().fault().is_none());
}

#[test]
fn percentages_sample_the_requests_random_value_per_denominator() {
    let req = Request::get("x", "/");
    let fault = compiled(&delay(10, percent(25, DenominatorType::TenThousand)));
    assert_eq!(
        fault.delay(&req.head(), 24),
        Some(Duration::from_millis(10))
    );
    assert_eq!(fault.delay(&req.head(), 25), None);
    assert_eq!(
        fault.delay(&req.head(), 10_024),
        Some(Duration::from_millis(10))
    );
    // Envoy reads an unset percentage as 0%.
    let never = compiled(&delay(10, None));
    assert_eq!(never.delay(&req.head(), 0), None);
    let n = 10_000;
    let hits = (0..n)
        .filter(|_| fault.delay(&req.head(), fastrand::u64(..)).is_some())
        .count();
    assert_binomial(hits, n, 0.0025, "delays at 25 per 10000");
}

#[test]
fn header_faults_read_the_request_capped_by_config() {
    let fault = compiled(&abort(
        fault_abort::ErrorType::HeaderAbort(fault_abort::HeaderAbort {}),
        percent(50, DenominatorType::Hundred),
    ));
    let none = Request::get("x", "/");
    assert!(
        fault.abort(&none.head(), 0).is_none(),
        "no header, no abort"
    );
    let http = Request::get("x", "/").header("x-envoy-fault-abort-request", "429");
    assert_eq!(
        fault.abort(&http.head(), 0).unwrap().status,
        AbortStatus::Http(StatusCode::TOO_MANY_REQUESTS)
    );
    assert!(fault.abort(&http.head(), 50).is_none(), "configured 50%");
    // The request may lower the percentage, not raise it.
    let lowered = Request::get("x", "/")
        .header("x-envoy-fault-abort-request", "429")
        .header("x-envoy-fault-abort-request-percentage", "10");
    assert!(fault.abort(&lowered.head(), 10).is_none());
    let raised = Request::get("x", "/")
        .header("x-envoy-fault-abort-request", "429")
        .header("x-envoy-fault-abort-request-percentage", "90");
    assert!(fault.abort(&raised.head(), 60).is_none());
    // An HTTP status out of range gives way to the gRPC header.
    let grpc = Request::get("x", "/")
        .header("x-envoy-fault-abort-request", "100")
        .header("x-envoy-fault-abort-grpc-request", "4");
    assert_eq!(
        fault.abort(&grpc.head(), 0).unwrap().status,
        AbortStatus::Grpc(4)
    );
}

#[test]
fn a_fault_applies_only_to_its_upstream_cluster_nodes_and_headers() {
    let mut f = abort(
        fault_abort::ErrorType::HttpStatus(503),
        percent(100, DenominatorType::Hundred),
    );
    f.upstream_cluster = "reviews".to_owned();
    f.downstream_nodes = vec!["productpage".to_owned()];
    f.headers = vec![pb::HeaderMatcher {
        name: "x-user".to_owned(),
        ..pb::HeaderMatcher::default()
    }];
    let fault = compiled(&f);
    let good = Request::get("x", "/")
        .header("x-envoy-downstream-service-node", "productpage")
        .header("x-user", "jason");
    assert!(fault.applies(&good.head(), Some("reviews")));
    assert!(!fault.applies(&good.head(), Some("ratings")));
    assert!(!fault.applies(&good.head(), None), "a direct response");
    let stranger = Request::get("x", "/")
        .header("x-envoy-downstream-service-node", "details")
        .header("x-user", "jason");
    assert!(!fault.applies(&stranger.head(), Some("reviews")));
    let anonymous = Request::get("x", "/").header("x-envoy-downstream-service-node", "productpage");
    assert!(!fault.applies(&anonymous.head(), Some("reviews")));
}

#[test]
fn invalid_faults_are_refused_naming_the_field() {
    let err = refused(config(vec![vhost(
        "reviews",
        &["*"],
        vec![
            route("ok", prefix("/ok")),
            with_fault(
                route("bad", prefix("/")),
                &abort(fault_abort::ErrorType::HttpStatus(100), None),
            ),
        ],
    )]));
    assert_eq!(
        err.to_string(),
        r#"route config "9080": virtual host "reviews": route 1: typed_per_filter_config["envoy.filters.http.fault"].abort.http_status: 100 is not in [200, 600)"#
    );
    let zero = Fault::compile(&delay(0, None)).unwrap_err();
    assert_eq!(zero.field, "delay.fixed_delay");
    let throttled = HttpFault {
        response_rate_limit: Some(Default::default()),
        ..HttpFault::default()
    };
    assert_eq!(
        Fault::compile(&throttled).unwrap_err().field,
        "response_rate_limit"
    );
    let mut wrong_type = any(&HttpFault::default());
    wrong_type.type_url =
        "type.googleapis.com/envoy.extensions.filters.http.cors.v3.CorsPolicy".into();
    assert_eq!(Fault::from_any(&wrong_type).unwrap_err().field, "@type");
}
