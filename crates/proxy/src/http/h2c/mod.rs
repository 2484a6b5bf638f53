//! h2c by Upgrade (RFC 7540 section 3.2): an HTTP/1.1 request with `Upgrade: h2c` is
//! answered `101 Switching Protocols`, and the connection goes on in HTTP/2 with the
//! request as stream 1. hyper has no such upgrade, so its HTTP/2 server is handed the
//! request as the HEADERS frame the client would have sent (see `inject`).

mod headers_frame;
mod inject;

use std::convert::Infallible;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderValue};
use http::{Request, Response, StatusCode, Version};
use hyper::body::{Body, Incoming};
use hyper::service::service_fn;
use hyper::upgrade::OnUpgrade;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};

use super::ProxyBody;
use crate::drain::DrainWatch;
use inject::Injecting;

/// The upgrade a connection's request asked for and was granted, once it was; shared by
/// the connection's HTTP/1.1 service (which grants it) and its server (which continues
/// the connection in HTTP/2 after the 101).
#[derive(Clone, Default)]
pub struct Slot(Arc<Mutex<Option<Granted>>>);

/// A granted upgrade: the connection once the 101 is sent, and the frames that carry
/// the request that asked for it.
pub struct Granted {
    upgrade: OnUpgrade,
    frames: Bytes,
}

impl Slot {
    /// Grants the upgrade `request` asks for, if it validly asks for one; the caller
    /// then answers [`switching_protocols`]. A request with a body or an invalid
    /// `HTTP2-Settings` is not upgraded (it is served as HTTP/1.1, as the RFC allows).
    pub fn grant(&self, request: &mut Request<Incoming>) -> bool {
        if request.version() != Version::HTTP_11
            || !request.headers().contains_key(header::UPGRADE)
            || !asks_for_h2c(request.headers())
            || !request.body().is_end_stream()
        {
            return false;
        }
        let frames = headers_frame::headers_frames(request);
        let upgrade = hyper::upgrade::on(request);
        let granted = Granted { upgrade, frames };
        *self.0.lock().unwrap_or_else(|e| e.into_inner()) = Some(granted);
        true
    }

    /// The granted upgrade, if any.
    pub fn take(&self) -> Option<Granted> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).take()
    }
}

/// Whether the headers ask for h2c: `Upgrade` offers `h2c`, `Connection` names both
/// `Upgrade` and `HTTP2-Settings`, and exactly one `HTTP2-Settings` holds a SETTINGS
/// payload in base64url.
fn asks_for_h2c(headers: &HeaderMap) -> bool {
    let tokens = |name| {
        headers
            .get_all(name)
            .into_iter()
            .filter_map(|v: &HeaderValue| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
    };
    let offers_h2c = tokens(header::UPGRADE).any(|t| t.eq_ignore_ascii_case("h2c"));
    let names = |wanted: &str| tokens(header::CONNECTION).any(|t| t.eq_ignore_ascii_case(wanted));
    let mut settings = headers.get_all("http2-settings").into_iter();
    let settings_valid = match (settings.next(), settings.next()) {
        (Some(value), None) => is_settings_payload(value.as_bytes()),
        _ => false,
    };
    offers_h2c && names("upgrade") && names("http2-settings") && settings_valid
}

/// Whether `value` is base64url (RFC 4648 section 5, unpadded as RFC 7540 asks) of a
/// whole number of 6-octet settings: 6 octets are exactly 8 digits, so the digits come
/// in eights (and padding never appears).
fn is_settings_payload(value: &[u8]) -> bool {
    let alphabet = |b: &u8| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_';
    value.len().is_multiple_of(8) && value.iter().all(alphabet)
}

/// The answer that grants the upgrade.
pub fn switching_protocols() -> Response<ProxyBody> {
    let mut response = Response::new(ProxyBody::empty());
    *response.status_mut() = StatusCode::SWITCHING_PROTOCOLS;
    let headers = response.headers_mut();
    headers.insert(header::CONNECTION, HeaderValue::from_static("Upgrade"));
    headers.insert(header::UPGRADE, HeaderValue::from_static("h2c"));
    response
}

/// Serves the upgraded connection in HTTP/2, `route` answering each stream (the
/// request that asked for the upgrade first), until the client closes it or it is
/// drained.
pub async fn serve<R, F>(granted: Granted, route: R, drain: DrainWatch, peer: SocketAddr)
where
    R: Fn(Request<Incoming>) -> F + Send + Sync + 'static,
    F: Future<Output = Result<Response<ProxyBody>, Infallible>> + Send + 'static,
{
    let upgraded = match granted.upgrade.await {
        Ok(upgraded) => upgraded,
        Err(e) => {
            tracing::debug!(error = %e, %peer, "h2c upgrade failed");
            return;
        }
    };
    let io = Injecting::new(TokioIo::new(upgraded), granted.frames);
    let connection = hyper::server::conn::http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .serve_connection(TokioIo::new(io), service_fn(route));
    super::until_drained(connection, drain, |c| c.graceful_shutdown(), peer).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&'static str, &'static str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(*name, HeaderValue::from_static(value));
        }
        map
    }

    // curl's: SETTINGS_MAX_CONCURRENT_STREAMS 100, INITIAL_WINDOW_SIZE 32 MiB,
    // ENABLE_PUSH 0.
    const CURL_SETTINGS: &str = "AAMAAABkAAQCAAAAAAIAAAAA";

    #[test]
    fn an_upgrade_needs_the_h2c_token_both_connection_options_and_one_valid_settings() {
        let asks = |pairs: &[(&'static str, &'static str)]| asks_for_h2c(&headers(pairs));
        let complete = [
            ("upgrade", "h2c"),
            ("connection", "Upgrade, HTTP2-Settings"),
            ("http2-settings", CURL_SETTINGS),
        ];
        assert!(asks(&complete));
        assert!(asks(&[
            ("upgrade", "foo/2, H2C"),
            ("connection", "keep-alive"),
            ("connection", "upgrade,http2-settings"),
            ("http2-settings", ""),
        ]));
        assert!(!asks(&[("upgrade", "websocket"), complete[1], complete[2]]));
        assert!(!asks(&[
            complete[0],
            ("connection", "Upgrade"),
            complete[2]
        ]));
        assert!(!asks(&[
            complete[0],
            ("connection", "HTTP2-Settings"),
            complete[2]
        ]));
        assert!(!asks(&[complete[0], complete[1]]));
        assert!(!asks(&[complete[0], complete[1], complete[2], complete[2]]));
        assert!(!asks(&[
            complete[0],
            complete[1],
            ("http2-settings", "AAMAAABk+AQ")
        ]));
    }

    #[test]
    fn settings_are_unpadded_base64url_of_whole_six_octet_settings() {
        for valid in ["", CURL_SETTINGS, "AAMAAABk", "AAMAAABkAAQ-_-__"] {
            assert!(is_settings_payload(valid.as_bytes()), "{valid}");
        }
        // 4 octets; 7 octets; a lone sextet; not the url alphabet; padded.
        for invalid in [
            "AAMAAA",
            "AAMAAABkAA",
            "AAMAAABkA",
            "AAMAAABkAAQ+/+//",
            "AAMAAA==",
        ] {
            assert!(!is_settings_payload(invalid.as_bytes()), "{invalid}");
        }
    }

    #[test]
    fn the_grant_answers_101_with_upgrade_h2c() {
        let response = switching_protocols();
        assert_eq!(response.status(), StatusCode::SWITCHING_PROTOCOLS);
        assert_eq!(response.headers()[header::UPGRADE], "h2c");
        assert_eq!(response.headers()[header::CONNECTION], "Upgrade");
    }
}
