//! Envoy's HTTP fault filter on one routed request: it runs before the router, so a
//! delay holds the request before it goes upstream (the route's timeout starts after),
//! and an abort answers in the upstream's stead. Delay and abort are sampled
//! independently; a request may get both, the abort after the delay.

use http::{Response, StatusCode};

use super::body::ProxyBody;
use super::local_reply::{local, set_grpc_status};
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
        injected.abort = Some(abort_response(aborted));
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

/// Envoy's local reply for an abort: the configured HTTP status, or 200 with the
/// configured gRPC status for a gRPC client (see [`local_reply`](super::local_reply)).
fn abort_response(aborted: Aborted) -> Response<ProxyBody> {
    match aborted.status {
        AbortStatus::Http(status) => local(status, aborted.body),
        AbortStatus::Grpc(code) => {
            let mut response = local(StatusCode::OK, aborted.body);
            set_grpc_status(&mut response, code);
            response
        }
    }
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;
    use crate::http::local_reply::for_grpc;

    #[test]
    fn a_grpc_abort_is_a_200_that_grpc_clients_hear_with_its_status() {
        let aborted = |status| Aborted {
            status,
            body: Bytes::from_static(b"fault filter abort"),
        };
        let plain = abort_response(aborted(AbortStatus::Grpc(14)));
        assert_eq!(plain.status(), StatusCode::OK);
        assert_eq!(plain.headers()["content-type"], "text/plain");
        assert!(plain.headers().get("grpc-status").is_none());
        let grpc = for_grpc(abort_response(aborted(AbortStatus::Grpc(14))));
        assert_eq!(grpc.headers()["grpc-status"], "14");
        assert_eq!(grpc.headers()["grpc-message"], "fault filter abort");
        let mapped = for_grpc(abort_response(aborted(AbortStatus::Http(
            StatusCode::NOT_FOUND,
        ))));
        assert_eq!(mapped.headers()["grpc-status"], "12");
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
