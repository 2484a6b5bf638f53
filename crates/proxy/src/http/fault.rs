//! Envoy's HTTP fault filter on one routed request: it runs before the router, so a
//! delay holds the request before it goes upstream (the route's timeout starts after),
//! and an abort answers in the upstream's stead. Delay and abort are sampled
//! independently; a request may get both, the abort after the delay.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

use super::body::ProxyBody;
use super::router::local;
use crate::flags::ResponseFlags;
use crate::route::{AbortStatus, Aborted, Fault, RequestHead, Selected};
use crate::stats::{FaultStats, GaugeGuard};

/// What the fault filter did to a request.
#[derive(Default)]
pub(super) struct Injected {
    /// `DI` when delayed, `FI` when aborted.
    pub(super) flags: ResponseFlags,
    /// The answer in the upstream's stead, when aborted.
    pub(super) abort: Option<Response<ProxyBody>>,
}

/// Applies the request's fault, if any: the route's settings (most specific first), else
/// the filter's own `defaults`.
pub(super) async fn inject(
    defaults: &Fault,
    selected: &Selected<'_>,
    head: &RequestHead<'_>,
    stats: &FaultStats,
) -> Injected {
    let fault = selected.fault().unwrap_or(defaults);
    let mut injected = Injected::default();
    let cluster = || selected.cluster.and_then(|c| c.name(head));
    if !fault.applies(head, cluster()) {
        return injected;
    }
    if let Some(delay) = fault.delay(head, fastrand::u64(..))
        && let Some(_active) = activate(fault, stats)
    {
        stats.delays_injected.inc();
        injected.flags.insert(ResponseFlags::DI);
        tracing::debug!(?delay, "fault: delaying request");
        tokio::time::sleep(delay).await;
    }
    if let Some(aborted) = fault.abort(head, fastrand::u64(..))
        && let Some(_active) = activate(fault, stats)
    {
        stats.aborts_injected.inc();
        injected.flags.insert(ResponseFlags::FI);
        injected.abort = Some(abort_response(aborted, head.is_grpc()));
    }
    injected
}

/// Counts a fault as active while the guard lives, unless `max_active_faults` are already
/// active (then the fault is skipped and counted as an overflow). As in Envoy, the limit
/// is fuzzy: the check and the increment are not one atomic step.
fn activate(fault: &Fault, stats: &FaultStats) -> Option<GaugeGuard> {
    if let Some(max) = fault.max_active_faults
        && u64::try_from(stats.active_faults.get()).unwrap_or(0) >= max
    {
        stats.faults_overflow.inc();
        return None;
    }
    Some(stats.active_faults.track())
}

/// Adds `flags` to a response's response flags.
pub(super) fn add_flags(response: &mut Response<ProxyBody>, flags: ResponseFlags) {
    if flags.is_empty() {
        return;
    }
    let extensions = response.extensions_mut();
    match extensions.get_mut::<ResponseFlags>() {
        Some(existing) => existing.insert(flags),
        None => {
            extensions.insert(flags);
        }
    }
}

/// Envoy's local reply for an abort. A gRPC request hears gRPC: status 200 with
/// `grpc-status` (the configured one, or the HTTP status mapped as Envoy maps it) and the
/// body as `grpc-message`; anything else hears the HTTP status (200 for a gRPC status)
/// with the body as text.
fn abort_response(aborted: Aborted, grpc_request: bool) -> Response<ProxyBody> {
    if !grpc_request {
        let status = match aborted.status {
            AbortStatus::Http(status) => status,
            AbortStatus::Grpc(_) => StatusCode::OK,
        };
        return local(status, aborted.body);
    }
    let code = match aborted.status {
        AbortStatus::Grpc(code) => code,
        AbortStatus::Http(status) => grpc_status_for(status),
    };
    let mut response = local(StatusCode::OK, Bytes::new());
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    headers.insert("grpc-status", HeaderValue::from(code));
    if let Ok(message) = HeaderValue::from_str(&grpc_message(&aborted.body)) {
        headers.insert("grpc-message", message);
    }
    response
}

/// Envoy's `httpToGrpcStatus`: the gRPC status a gRPC client is told for an HTTP one.
fn grpc_status_for(status: StatusCode) -> u32 {
    match status.as_u16() {
        400 => 13,             // INTERNAL
        401 => 16,             // UNAUTHENTICATED
        403 => 7,              // PERMISSION_DENIED
        404 => 12,             // UNIMPLEMENTED
        429 | 502..=504 => 14, // UNAVAILABLE
        _ => 2,                // UNKNOWN
    }
}

/// gRPC's percent-encoding of `grpc-message`: printable ASCII but `%` as is, every other
/// byte as `%XX`.
fn grpc_message(body: &[u8]) -> String {
    let mut out = String::with_capacity(body.len());
    for &b in body {
        if (b' '..=b'~').contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grpc_clients_hear_grpc_statuses() {
        let aborted = |status| Aborted {
            status,
            body: Bytes::from_static(b"fault filter abort"),
        };
        let grpc = abort_response(aborted(AbortStatus::Grpc(14)), true);
        assert_eq!(grpc.status(), StatusCode::OK);
        assert_eq!(grpc.headers()["content-type"], "application/grpc");
        assert_eq!(grpc.headers()["grpc-status"], "14");
        assert_eq!(grpc.headers()["grpc-message"], "fault filter abort");
        // An HTTP status, mapped for a gRPC client.
        let mapped = abort_response(aborted(AbortStatus::Http(StatusCode::NOT_FOUND)), true);
        assert_eq!(mapped.headers()["grpc-status"], "12");
        // A gRPC status for a client that does not speak gRPC: 200 with the text.
        let plain = abort_response(aborted(AbortStatus::Grpc(14)), false);
        assert_eq!(plain.status(), StatusCode::OK);
        assert_eq!(plain.headers()["content-type"], "text/plain");
        assert!(plain.headers().get("grpc-status").is_none());
    }

    #[test]
    fn grpc_messages_are_percent_encoded() {
        assert_eq!(grpc_message(b"fault filter abort"), "fault filter abort");
        assert_eq!(grpc_message("100% é\n".as_bytes()), "100%25 %C3%A9%0A");
    }

    #[test]
    fn injected_flags_join_those_already_set() {
        let mut response = local(StatusCode::SERVICE_UNAVAILABLE, "no healthy upstream");
        response.extensions_mut().insert(ResponseFlags::UH);
        add_flags(&mut response, ResponseFlags::DI);
        let flags = response.extensions().get::<ResponseFlags>().unwrap();
        assert_eq!(flags.to_string(), "UH,DI");
    }
}
