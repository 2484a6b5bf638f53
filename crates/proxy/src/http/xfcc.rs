//! `x-forwarded-client-cert`: what the connection manager tells the next hop of the
//! client's certificate (`forward_client_cert_details`, `set_current_client_cert_details`),
//! as Envoy writes it: `By=<our URI SAN>;Hash=<sha256>;Subject="…";URI=…;DNS=…`, elements
//! of successive proxies joined by `,`.

use std::fmt::Write;

use http::HeaderMap;
use http::header::{HeaderName, HeaderValue};
use mizzen_xds::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, http_connection_manager::ForwardClientCertDetails as Mode,
};

use crate::tls::Session;

/// The header.
pub const X_FORWARDED_CLIENT_CERT: HeaderName = HeaderName::from_static("x-forwarded-client-cert");

/// What becomes of `x-forwarded-client-cert`, compiled from the connection manager.
#[derive(Debug, Clone, Default)]
pub struct ClientCertPolicy {
    mode: Forwarding,
    subject: bool,
    cert: bool,
    chain: bool,
    dns: bool,
    uri: bool,
}

/// `forward_client_cert_details`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
enum Forwarding {
    /// Removed (Envoy's default).
    #[default]
    Sanitize,
    /// Kept as the client sent it, when the connection is mTLS.
    ForwardOnly,
    /// This hop's element appended, when the connection is mTLS.
    AppendForward,
    /// Replaced by this hop's element, when the connection is mTLS.
    SanitizeSet,
    /// Kept as the client sent it, always.
    AlwaysForwardOnly,
}

impl ClientCertPolicy {
    /// Reads the connection manager's settings; errors are `(field, reason)`.
    pub fn compile(hcm: &HttpConnectionManager) -> Result<ClientCertPolicy, (String, String)> {
        let mode = match Mode::try_from(hcm.forward_client_cert_details) {
            Ok(Mode::Sanitize) => Forwarding::Sanitize,
            Ok(Mode::ForwardOnly) => Forwarding::ForwardOnly,
            Ok(Mode::AppendForward) => Forwarding::AppendForward,
            Ok(Mode::SanitizeSet) => Forwarding::SanitizeSet,
            Ok(Mode::AlwaysForwardOnly) => Forwarding::AlwaysForwardOnly,
            Err(_) => {
                return Err((
                    "forward_client_cert_details".into(),
                    format!("unknown value {}", hcm.forward_client_cert_details),
                ));
            }
        };
        if hcm.forward_client_cert_matcher.is_some() {
            return Err((
                "forward_client_cert_matcher".into(),
                "is not supported".into(),
            ));
        }
        let details = hcm.set_current_client_cert_details.unwrap_or_default();
        Ok(ClientCertPolicy {
            mode,
            subject: details.subject.is_some_and(|b| b.value),
            cert: details.cert,
            chain: details.chain,
            dns: details.dns,
            uri: details.uri,
        })
    }

    /// Applies the policy to a request's headers, for a connection with `tls`.
    pub fn apply(&self, headers: &mut HeaderMap, tls: Option<&Session>) {
        if self.mode == Forwarding::AlwaysForwardOnly {
            return;
        }
        let Some((session, peer)) = tls.and_then(|s| Some((s, s.peer.as_ref()?))) else {
            headers.remove(X_FORWARDED_CLIENT_CERT);
            return;
        };
        match self.mode {
            Forwarding::ForwardOnly | Forwarding::AlwaysForwardOnly => return,
            Forwarding::Sanitize => {
                headers.remove(X_FORWARDED_CLIENT_CERT);
                return;
            }
            Forwarding::AppendForward | Forwarding::SanitizeSet => {}
        }
        let mut element = String::new();
        for by in &session.local_uri_sans {
            push(&mut element, "By", by);
        }
        push(&mut element, "Hash", &peer.sha256());
        if self.cert {
            push(
                &mut element,
                "Cert",
                &quoted(&url_encoded(&pem(&peer.chain[..1]))),
            );
        }
        if self.chain {
            push(
                &mut element,
                "Chain",
                &quoted(&url_encoded(&pem(&peer.chain))),
            );
        }
        if self.subject {
            push(&mut element, "Subject", &quoted(&peer.info.subject));
        }
        if self.uri {
            // The key is there even when the certificate has no URI SAN, as in Envoy.
            push(&mut element, "URI", session.uri_san().unwrap_or_default());
        }
        if self.dns {
            for dns in session.dns_sans() {
                push(&mut element, "DNS", dns);
            }
        }
        let value = match (self.mode, headers.get(X_FORWARDED_CLIENT_CERT)) {
            (Forwarding::AppendForward, Some(before)) => {
                format!("{},{element}", String::from_utf8_lossy(before.as_bytes()))
            }
            _ => element,
        };
        match HeaderValue::try_from(value) {
            Ok(value) => {
                headers.insert(X_FORWARDED_CLIENT_CERT, value);
            }
            Err(_) => {
                headers.remove(X_FORWARDED_CLIENT_CERT);
            }
        }
    }
}

fn push(element: &mut String, key: &str, value: &str) {
    if !element.is_empty() {
        element.push(';');
    }
    let _ = write!(element, "{key}={value}");
}

/// A value in double quotes, its own quotes escaped, as Envoy writes `Subject`.
fn quoted(value: &str) -> String {
    format!("\"{}\"", value.replace('"', "\\\""))
}

/// Certificates in PEM.
fn pem(chain: &[rustls::pki_types::CertificateDer<'_>]) -> String {
    let mut out = String::new();
    for cert in chain {
        out.push_str("-----BEGIN CERTIFICATE-----\n");
        let encoded = base64(cert);
        for line in encoded.as_bytes().chunks(64) {
            out.push_str(std::str::from_utf8(line).unwrap_or_default());
            out.push('\n');
        }
        out.push_str("-----END CERTIFICATE-----\n");
    }
    out
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = u32::from(b[0]) << 16 | u32::from(b[1]) << 8 | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Percent-encodes all but RFC 3986's unreserved characters.
fn url_encoded(text: &str) -> String {
    let mut out = String::with_capacity(text.len() * 3 / 2);
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
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
    use crate::tls::{CertInfo, PeerCertificate};
    use rustls::pki_types::CertificateDer;

    fn session() -> Session {
        Session {
            peer: Some(PeerCertificate {
                info: CertInfo {
                    subject: "CN=sleep,O=example".into(),
                    uri_sans: vec!["spiffe://cluster.local/ns/default/sa/sleep".into()],
                    dns_sans: vec!["sleep.default".into(), "sleep".into()],
                    ..Default::default()
                },
                chain: vec![CertificateDer::from(b"not really DER".to_vec())],
            }),
            local_uri_sans: vec!["spiffe://cluster.local/ns/default/sa/productpage".into()],
            ..Default::default()
        }
    }

    fn policy(mode: Mode) -> ClientCertPolicy {
        ClientCertPolicy::compile(&HttpConnectionManager {
            forward_client_cert_details: mode as i32,
            set_current_client_cert_details: Some(
                mizzen_xds::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_connection_manager::SetCurrentClientCertDetails {
                    subject: Some(mizzen_xds::pb::google::protobuf::BoolValue { value: true }),
                    dns: true,
                    uri: true,
                    ..Default::default()
                },
            ),
            ..Default::default()
        })
        .unwrap()
    }

    fn sent(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(
            X_FORWARDED_CLIENT_CERT,
            HeaderValue::from_str(value).unwrap(),
        );
        h
    }

    #[test]
    fn istio_sidecars_append_subject_uri_and_dns() {
        let mut headers = sent("By=spiffe://a;URI=spiffe://b");
        policy(Mode::AppendForward).apply(&mut headers, Some(&session()));
        let hash = session().peer.unwrap().sha256();
        assert_eq!(
            headers[X_FORWARDED_CLIENT_CERT],
            format!(
                "By=spiffe://a;URI=spiffe://b,By=spiffe://cluster.local/ns/default/sa/productpage;Hash={hash};Subject=\"CN=sleep,O=example\";URI=spiffe://cluster.local/ns/default/sa/sleep;DNS=sleep.default;DNS=sleep"
            )
        );
        let mut headers = sent("forged");
        policy(Mode::SanitizeSet).apply(&mut headers, Some(&session()));
        assert!(
            headers[X_FORWARDED_CLIENT_CERT]
                .to_str()
                .unwrap()
                .starts_with("By=")
        );
    }

    #[test]
    fn without_mtls_only_always_forward_only_keeps_the_header() {
        for mode in [
            Mode::Sanitize,
            Mode::ForwardOnly,
            Mode::AppendForward,
            Mode::SanitizeSet,
        ] {
            let mut headers = sent("forged");
            policy(mode).apply(&mut headers, None);
            assert!(headers.get(X_FORWARDED_CLIENT_CERT).is_none(), "{mode:?}");
        }
        let mut headers = sent("forged");
        policy(Mode::AlwaysForwardOnly).apply(&mut headers, None);
        assert_eq!(headers[X_FORWARDED_CLIENT_CERT], "forged");
        let mut headers = sent("kept");
        policy(Mode::ForwardOnly).apply(&mut headers, Some(&session()));
        assert_eq!(headers[X_FORWARDED_CLIENT_CERT], "kept");
        let mut headers = sent("dropped");
        policy(Mode::Sanitize).apply(&mut headers, Some(&session()));
        assert!(headers.get(X_FORWARDED_CLIENT_CERT).is_none());
    }

    #[test]
    fn base64_pads_as_pem_needs() {
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(url_encoded("a b/c=\n"), "a%20b%2Fc%3D%0A");
    }
}
