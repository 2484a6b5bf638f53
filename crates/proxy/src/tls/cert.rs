//! What the proxy reads of an X.509 certificate: its names (subject and SANs) for peer
//! identity, SAN matching and `x-forwarded-client-cert`, its digest for the latter, and
//! its serial number and validity for `/certs`. Certificates are verified by rustls;
//! this only reads them, once per handshake, so that requests only look things up.

use std::net::IpAddr;
use std::sync::Arc;

use x509_parser::extensions::GeneralName;
use x509_parser::prelude::{FromDer, X509Certificate};

/// A certificate's names and dates.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CertInfo {
    /// The serial number in lowercase hex, leading zeros dropped (as Envoy prints it).
    pub serial: String,
    /// Start of validity, in seconds since the Unix epoch.
    pub not_before: i64,
    /// End of validity, in seconds since the Unix epoch.
    pub not_after: i64,
    /// The subject as RFC 2253 writes it (`CN=client,O=example`), as Envoy does.
    pub subject: String,
    /// URI SANs (`spiffe://cluster.local/ns/default/sa/sleep`), in certificate order.
    pub uri_sans: Vec<String>,
    /// DNS SANs, in certificate order.
    pub dns_sans: Vec<String>,
    /// Email (RFC 822) SANs.
    pub email_sans: Vec<String>,
    /// IP address SANs, written as addresses.
    pub ip_sans: Vec<String>,
    /// Whether basic constraints mark it a CA.
    pub is_ca: bool,
    /// The SHA-256 digest of its DER in lowercase hex (`x-forwarded-client-cert`'s
    /// `Hash`); shared, as every request of a connection names it.
    pub sha256: Arc<str>,
}

impl CertInfo {
    /// Reads a DER certificate.
    pub fn parse(der: &[u8]) -> Result<CertInfo, String> {
        let (_, cert) =
            X509Certificate::from_der(der).map_err(|e| format!("not an X.509 certificate: {e}"))?;
        let raw = cert.raw_serial();
        let first = raw.iter().position(|b| *b != 0).unwrap_or(raw.len());
        let serial = hex(&raw[first..]);
        let mut info = CertInfo {
            serial: if serial.is_empty() {
                "0".into()
            } else {
                serial
            },
            not_before: cert.validity().not_before.timestamp(),
            not_after: cert.validity().not_after.timestamp(),
            subject: rfc2253(&cert),
            is_ca: cert
                .basic_constraints()
                .ok()
                .flatten()
                .is_some_and(|b| b.value.ca),
            sha256: hex(ring::digest::digest(&ring::digest::SHA256, der).as_ref()).into(),
            ..CertInfo::default()
        };
        if let Ok(Some(sans)) = cert.subject_alternative_name() {
            for name in &sans.value.general_names {
                match name {
                    GeneralName::URI(uri) => info.uri_sans.push((*uri).to_owned()),
                    GeneralName::DNSName(dns) => info.dns_sans.push((*dns).to_owned()),
                    GeneralName::RFC822Name(email) => info.email_sans.push((*email).to_owned()),
                    GeneralName::IPAddress(bytes) => {
                        if let Some(ip) = ip_address(bytes) {
                            info.ip_sans.push(ip.to_string());
                        }
                    }
                    _ => {}
                }
            }
        }
        Ok(info)
    }

    /// The principal Envoy's RBAC `authenticated` matches: the first URI SAN, else the
    /// first DNS SAN, else the subject.
    pub fn principal(&self) -> &str {
        self.uri_sans
            .first()
            .or(self.dns_sans.first())
            .map_or(&self.subject, String::as_str)
    }
}

fn ip_address(bytes: &[u8]) -> Option<IpAddr> {
    match bytes.len() {
        4 => Some(IpAddr::from(<[u8; 4]>::try_from(bytes).ok()?)),
        16 => Some(IpAddr::from(<[u8; 16]>::try_from(bytes).ok()?)),
        _ => None,
    }
}

/// The subject in RFC 2253 form: the last RDN first, attributes by their short names.
fn rfc2253(cert: &X509Certificate<'_>) -> String {
    let rdns: Vec<String> = cert
        .subject()
        .iter_rdn()
        .map(|rdn| {
            rdn.iter()
                .map(|attr| {
                    let oid = attr.attr_type().to_id_string();
                    let name = match oid.as_str() {
                        "2.5.4.3" => "CN",
                        "2.5.4.6" => "C",
                        "2.5.4.7" => "L",
                        "2.5.4.8" => "ST",
                        "2.5.4.9" => "STREET",
                        "2.5.4.10" => "O",
                        "2.5.4.11" => "OU",
                        "0.9.2342.19200300.100.1.25" => "DC",
                        "0.9.2342.19200300.100.1.1" => "UID",
                        other => other,
                    };
                    let value = attr.as_str().map(escape).unwrap_or_default();
                    format!("{name}={value}")
                })
                .collect::<Vec<_>>()
                .join("+")
        })
        .collect();
    rdns.into_iter().rev().collect::<Vec<_>>().join(",")
}

/// An attribute value escaped as RFC 2253 asks.
fn escape(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    let last = value.chars().count().saturating_sub(1);
    for (i, c) in value.chars().enumerate() {
        let special = matches!(c, ',' | '+' | '"' | '\\' | '<' | '>' | ';')
            || (i == 0 && (c == '#' || c == ' '))
            || (i == last && c == ' ');
        if special {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// `bytes` in lowercase hex.
fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(char::from(DIGITS[usize::from(b >> 4)]));
        out.push(char::from(DIGITS[usize::from(b & 0xf)]));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use rcgen::{CertificateParams, DistinguishedName, DnType, KeyPair, SanType};

    #[test]
    fn reads_names_serial_and_dates() {
        let mut params = CertificateParams::new(vec!["api.example.com".to_owned()]).unwrap();
        params.subject_alt_names.push(SanType::URI(
            "spiffe://cluster.local/ns/default/sa/sleep"
                .try_into()
                .unwrap(),
        ));
        params
            .subject_alt_names
            .push(SanType::IpAddress("10.0.0.1".parse().unwrap()));
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "Example, Inc.");
        dn.push(DnType::CommonName, "client");
        params.distinguished_name = dn;
        params.serial_number = Some(rcgen::SerialNumber::from_slice(&[0, 0x1f, 0xa0]));
        let cert = params.self_signed(&KeyPair::generate().unwrap()).unwrap();
        let info = CertInfo::parse(cert.der()).unwrap();
        assert_eq!(info.serial, "1fa0");
        assert_eq!(info.dns_sans, ["api.example.com"]);
        assert_eq!(
            info.uri_sans,
            ["spiffe://cluster.local/ns/default/sa/sleep"]
        );
        assert_eq!(info.ip_sans, ["10.0.0.1"]);
        assert_eq!(info.subject, "CN=client,O=Example\\, Inc.");
        assert_eq!(
            info.principal(),
            "spiffe://cluster.local/ns/default/sa/sleep"
        );
        assert!(info.not_before < info.not_after);
        assert!(!info.is_ca);
        let digest = ring::digest::digest(&ring::digest::SHA256, cert.der());
        let expected: String = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(&*info.sha256, expected);
    }
}
