//! Envoy's local replies: the answers the proxy makes itself (authorization denials,
//! direct responses, redirects, routing and upstream failures, fault aborts). A client
//! that speaks gRPC hears every one of them as gRPC, as Envoy's `sendLocalReply` does: a
//! trailers-only `200` whose `grpc-status` is mapped from the HTTP status and whose
//! `grpc-message` carries the body text.

use bytes::Bytes;
use http::header::{self, HeaderValue};
use http::{Response, StatusCode};

use super::body::ProxyBody;

const GRPC_STATUS: &str = "grpc-status";
const GRPC_MESSAGE: &str = "grpc-message";

/// A response the proxy makes itself.
pub fn local(status: StatusCode, body: impl Into<Bytes>) -> Response<ProxyBody> {
    let body = body.into();
    let mut response = Response::new(ProxyBody::local(body.clone()));
    *response.status_mut() = status;
    if !body.is_empty() {
        response
            .headers_mut()
            .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    }
    response
}

/// The gRPC status a gRPC client hears for a local reply instead of the one its HTTP
/// status maps to (a fault abort's configured `grpc_status`).
#[derive(Debug, Clone, Copy)]
struct GrpcStatus(u32);

/// Has a gRPC client hear `response` (a [`local`] reply) with gRPC status `code`; other
/// clients hear it as it is.
pub(super) fn set_grpc_status(response: &mut Response<ProxyBody>, code: u32) {
    response.extensions_mut().insert(GrpcStatus(code));
}

/// `response` as a gRPC client hears it: a local reply becomes trailers-only gRPC (the
/// body moves to `grpc-message`); an upstream's answer is left alone.
pub(super) fn for_grpc(mut response: Response<ProxyBody>) -> Response<ProxyBody> {
    let ProxyBody::Local(body) = response.body_mut() else {
        return response;
    };
    let body = body.take();
    let code = response
        .extensions()
        .get::<GrpcStatus>()
        .map_or_else(|| grpc_status_for(response.status()), |s| s.0);
    *response.status_mut() = StatusCode::OK;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/grpc"),
    );
    // A status already set stands, as in Envoy.
    headers
        .entry(GRPC_STATUS)
        .or_insert(HeaderValue::from(code));
    if let Some(message) = body.and_then(|b| HeaderValue::from_str(&grpc_message(&b)).ok()) {
        headers.insert(GRPC_MESSAGE, message);
    }
    headers.remove(header::CONTENT_LENGTH);
    response
}

/// Envoy's `httpToGrpcStatus` (gRPC's mapping for intermediaries): the gRPC status a gRPC
/// client is told for an HTTP one.
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
    use std::fmt::Write;
    let mut out = String::with_capacity(body.len());
    for &b in body {
        if (b' '..=b'~').contains(&b) && b != b'%' {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_local_reply_becomes_trailers_only_grpc() {
        let denied = for_grpc(local(StatusCode::FORBIDDEN, "RBAC: access denied"));
        assert_eq!(denied.status(), StatusCode::OK);
        assert_eq!(denied.headers()["content-type"], "application/grpc");
        assert_eq!(denied.headers()["grpc-status"], "7");
        assert_eq!(denied.headers()["grpc-message"], "RBAC: access denied");
        assert!(http_body::Body::is_end_stream(denied.body()));
        let unauthenticated = for_grpc(local(StatusCode::UNAUTHORIZED, "Jwt is expired"));
        assert_eq!(unauthenticated.headers()["grpc-status"], "16");
        // No body, no message.
        let not_found = for_grpc(local(StatusCode::NOT_FOUND, ""));
        assert_eq!(not_found.headers()["grpc-status"], "12");
        assert!(not_found.headers().get("grpc-message").is_none());
    }

    #[test]
    fn a_configured_grpc_status_beats_the_mapped_one() {
        let mut aborted = local(StatusCode::OK, "fault filter abort");
        set_grpc_status(&mut aborted, 14);
        let grpc = for_grpc(aborted);
        assert_eq!(grpc.headers()["grpc-status"], "14");
        assert_eq!(grpc.headers()["grpc-message"], "fault filter abort");
    }

    #[test]
    fn http_statuses_map_as_envoy_maps_them() {
        let mapped = |s: u16| grpc_status_for(StatusCode::from_u16(s).unwrap());
        let expected = [
            (400, 13),
            (401, 16),
            (403, 7),
            (404, 12),
            (429, 14),
            (502, 14),
            (503, 14),
            (504, 14),
            (500, 2),
            (413, 2),
            (301, 2),
        ];
        for (http, grpc) in expected {
            assert_eq!(mapped(http), grpc, "{http}");
        }
    }

    #[test]
    fn grpc_messages_are_percent_encoded() {
        assert_eq!(grpc_message(b"fault filter abort"), "fault filter abort");
        assert_eq!(grpc_message("100% é\n".as_bytes()), "100%25 %C3%A9%0A");
    }
}
