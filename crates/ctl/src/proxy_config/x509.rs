//! Just enough X.509 to describe a proxy's certificates as istioctl does: the first
//! certificate of a PEM bundle (itself base64 inside the dump), read for its serial
//! number, validity, whether it is a CA, and its SPIFFE identity. Nothing is verified;
//! this only reads what the proxy already holds.

use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail, ensure};

/// What the secret table shows of a certificate.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Certificate {
    /// The serial number's bytes in hex, leading zero bytes dropped.
    pub(crate) serial: String,
    /// Start of validity.
    pub(crate) not_before: Time,
    /// End of validity.
    pub(crate) not_after: Time,
    /// Whether basic constraints mark it a CA.
    pub(crate) is_ca: bool,
    /// The trust domain of its `spiffe://` URI SAN, if it has one.
    pub(crate) trust_domain: Option<String>,
}

impl Certificate {
    /// Whether `now` lies strictly inside the validity period, as istioctl compares
    /// (Go's `After`/`Before` on full-precision time against whole-second bounds).
    pub(crate) fn valid_at(&self, now: SystemTime) -> bool {
        let Ok(now) = now.duration_since(UNIX_EPOCH) else {
            return false;
        };
        let (secs, fraction) = (now.as_secs() as i64, now.subsec_nanos());
        // A certificate issued this very second is valid once any of it has passed.
        let after_start =
            secs > self.not_before.unix || (secs == self.not_before.unix && fraction > 0);
        after_start && secs < self.not_after.unix
    }
}

/// A certificate time, kept both for printing and comparing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Time {
    /// RFC 3339 in UTC, as Go prints it: `2023-05-16T01:32:52Z`.
    pub(crate) rfc3339: String,
    /// Seconds since the Unix epoch.
    unix: i64,
}

/// The first certificate in `pem` (the text of a PEM bundle).
pub(crate) fn first_certificate(pem: &[u8]) -> anyhow::Result<Certificate> {
    let text = std::str::from_utf8(pem).context("PEM is not text")?;
    let start = text
        .find("-----BEGIN ")
        .context("failed to parse certificate PEM")?;
    let body = &text[start..];
    let body = &body[body.find('\n').context("truncated PEM")? + 1..];
    let end = body.find("-----END ").context("truncated PEM")?;
    parse(&base64(&body[..end])?)
}

/// Standard base64 (with or without padding), ignoring whitespace.
pub(crate) fn base64(text: &str) -> anyhow::Result<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let mut bits = 0u32;
    let mut count = 0;
    for c in text.bytes().filter(|c| !c.is_ascii_whitespace()) {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' | b'-' => 62,
            b'/' | b'_' => 63,
            b'=' => break,
            _ => bail!("invalid base64 character {:?}", c as char),
        };
        bits = (bits << 6) | u32::from(v);
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
        }
    }
    Ok(out)
}

/// A DER element: its tag and contents.
struct Element<'a> {
    tag: u8,
    contents: &'a [u8],
}

/// Reads DER elements one after another.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn next(&mut self) -> anyhow::Result<Element<'a>> {
        let [tag, first, rest @ ..] = self.0 else {
            bail!("truncated DER");
        };
        let (len, rest) = if first & 0x80 == 0 {
            (usize::from(*first), rest)
        } else {
            let n = usize::from(first & 0x7f);
            ensure!(n > 0 && n <= 4 && rest.len() >= n, "bad DER length");
            let len = rest[..n]
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            (len, &rest[n..])
        };
        ensure!(rest.len() >= len, "truncated DER");
        self.0 = &rest[len..];
        Ok(Element {
            tag: *tag,
            contents: &rest[..len],
        })
    }

    /// The next element, which must have `tag`.
    fn expect(&mut self, tag: u8, what: &str) -> anyhow::Result<&'a [u8]> {
        let e = self.next()?;
        ensure!(
            e.tag == tag,
            "{what}: expected DER tag {tag:#04x}, got {:#04x}",
            e.tag
        );
        Ok(e.contents)
    }

    fn peek_tag(&self) -> Option<u8> {
        self.0.first().copied()
    }

    fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
const BOOLEAN: u8 = 0x01;
const OID: u8 = 0x06;
const OCTET_STRING: u8 = 0x04;
const UTC_TIME: u8 = 0x17;
const GENERALIZED_TIME: u8 = 0x18;
const VERSION: u8 = 0xa0;
const EXTENSIONS: u8 = 0xa3;
const URI_NAME: u8 = 0x86;
/// 2.5.29.19
const BASIC_CONSTRAINTS: &[u8] = &[0x55, 0x1d, 0x13];
/// 2.5.29.17
const SUBJECT_ALT_NAME: &[u8] = &[0x55, 0x1d, 0x11];

/// Reads a DER certificate.
pub(crate) fn parse(der: &[u8]) -> anyhow::Result<Certificate> {
    let certificate = Reader(der).expect(SEQUENCE, "certificate")?;
    let mut tbs = Reader(Reader(certificate).expect(SEQUENCE, "tbsCertificate")?);
    if tbs.peek_tag() == Some(VERSION) {
        tbs.next()?;
    }
    let serial = tbs.expect(INTEGER, "serialNumber")?;
    let first_nonzero = serial.iter().position(|b| *b != 0).unwrap_or(serial.len());
    let serial = serial[first_nonzero..]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    tbs.expect(SEQUENCE, "signature")?;
    tbs.expect(SEQUENCE, "issuer")?;
    let mut validity = Reader(tbs.expect(SEQUENCE, "validity")?);
    let not_before = time(validity.next()?)?;
    let not_after = time(validity.next()?)?;
    tbs.expect(SEQUENCE, "subject")?;
    tbs.expect(SEQUENCE, "subjectPublicKeyInfo")?;
    let mut is_ca = false;
    let mut trust_domain = None;
    while !tbs.is_empty() {
        let e = tbs.next()?;
        if e.tag != EXTENSIONS {
            continue;
        }
        let mut extensions = Reader(Reader(e.contents).expect(SEQUENCE, "extensions")?);
        while !extensions.is_empty() {
            let mut ext = Reader(extensions.expect(SEQUENCE, "extension")?);
            let id = ext.expect(OID, "extnID")?;
            if ext.peek_tag() == Some(BOOLEAN) {
                ext.next()?;
            }
            let value = ext.expect(OCTET_STRING, "extnValue")?;
            if id == BASIC_CONSTRAINTS {
                let mut constraints = Reader(Reader(value).expect(SEQUENCE, "basicConstraints")?);
                is_ca = constraints.peek_tag() == Some(BOOLEAN)
                    && constraints
                        .next()?
                        .contents
                        .first()
                        .is_some_and(|b| *b != 0);
            } else if id == SUBJECT_ALT_NAME {
                let mut names = Reader(Reader(value).expect(SEQUENCE, "subjectAltName")?);
                while !names.is_empty() {
                    let name = names.next()?;
                    let uri = String::from_utf8_lossy(name.contents);
                    if let Some(id) = uri
                        .strip_prefix("spiffe://")
                        .filter(|_| name.tag == URI_NAME)
                    {
                        trust_domain = Some(id.split('/').next().unwrap_or(id).to_owned());
                    }
                }
            }
        }
    }
    Ok(Certificate {
        serial,
        not_before,
        not_after,
        is_ca,
        trust_domain,
    })
}

/// A UTCTime (`YYMMDDHHMMSSZ`, 1950–2049) or GeneralizedTime (`YYYYMMDDHHMMSSZ`).
fn time(e: Element) -> anyhow::Result<Time> {
    let text = std::str::from_utf8(e.contents).context("certificate time is not text")?;
    let digits = text
        .strip_suffix('Z')
        .context("certificate time is not in UTC")?;
    let (year, rest) = match e.tag {
        UTC_TIME => {
            let yy: i64 = num(digits.get(..2))?;
            (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &digits[2..])
        }
        GENERALIZED_TIME => (num(digits.get(..4))?, &digits[4..]),
        tag => bail!("expected a certificate time, got DER tag {tag:#04x}"),
    };
    ensure!(rest.len() == 10, "unsupported certificate time {text:?}");
    let field = |i: usize| num(rest.get(i..i + 2));
    let (month, day, hour, minute, second) =
        (field(0)?, field(2)?, field(4)?, field(6)?, field(8)?);
    let unix = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second;
    Ok(Time {
        rfc3339: format!("{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}Z"),
        unix,
    })
}

fn num(digits: Option<&str>) -> anyhow::Result<i64> {
    let digits = digits.context("truncated certificate time")?;
    ensure!(
        digits.bytes().all(|b| b.is_ascii_digit()),
        "bad certificate time digits {digits:?}"
    );
    Ok(digits.parse()?)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn decodes_base64_with_and_without_padding() {
        assert_eq!(base64("aGVsbG8=").unwrap(), b"hello");
        assert_eq!(base64("aGVs\nbG8").unwrap(), b"hello");
        assert!(base64("a*b").is_err());
    }

    #[test]
    fn converts_civil_dates_to_unix_days() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(days_from_civil(2033, 5, 2), 23_132);
    }

    /// A certificate built by hand: serial 0x00ff01, valid 2020-01-01 to 2049-12-31, a CA
    /// with the SPIFFE identity of trust domain `example.org`.
    fn ca_der() -> Vec<u8> {
        fn tlv(tag: u8, contents: &[u8]) -> Vec<u8> {
            let mut out = vec![tag, contents.len() as u8];
            out.extend_from_slice(contents);
            out
        }
        let validity = [
            tlv(UTC_TIME, b"200101000000Z"),
            tlv(GENERALIZED_TIME, b"20491231235959Z"),
        ]
        .concat();
        let constraints = tlv(SEQUENCE, &tlv(BOOLEAN, &[0xff]));
        let san = tlv(SEQUENCE, &tlv(URI_NAME, b"spiffe://example.org/ns/a/sa/b"));
        let extensions = tlv(
            EXTENSIONS,
            &tlv(
                SEQUENCE,
                &[
                    tlv(
                        SEQUENCE,
                        &[
                            tlv(OID, BASIC_CONSTRAINTS),
                            tlv(BOOLEAN, &[0xff]),
                            tlv(OCTET_STRING, &constraints),
                        ]
                        .concat(),
                    ),
                    tlv(
                        SEQUENCE,
                        &[tlv(OID, SUBJECT_ALT_NAME), tlv(OCTET_STRING, &san)].concat(),
                    ),
                ]
                .concat(),
            ),
        );
        let tbs = [
            tlv(VERSION, &tlv(INTEGER, &[2])),
            tlv(INTEGER, &[0x00, 0xff, 0x01]),
            tlv(SEQUENCE, &[]),
            tlv(SEQUENCE, &[]),
            tlv(SEQUENCE, &validity),
            tlv(SEQUENCE, &[]),
            tlv(SEQUENCE, &[]),
            extensions,
        ]
        .concat();
        tlv(
            SEQUENCE,
            &[tlv(SEQUENCE, &tbs), tlv(SEQUENCE, &[]), tlv(0x03, &[0])].concat(),
        )
    }

    #[test]
    fn reads_serial_validity_ca_and_spiffe_trust_domain() {
        let cert = parse(&ca_der()).unwrap();
        assert_eq!(cert.serial, "ff01");
        assert_eq!(cert.not_before.rfc3339, "2020-01-01T00:00:00Z");
        assert_eq!(cert.not_after.rfc3339, "2049-12-31T23:59:59Z");
        assert!(cert.is_ca);
        assert_eq!(cert.trust_domain.as_deref(), Some("example.org"));
        let at = |days: u64| UNIX_EPOCH + Duration::from_secs(days * 86_400);
        assert!(cert.valid_at(at(20_000)));
        assert!(!cert.valid_at(at(18_000)));
        assert!(!cert.valid_at(at(29_300)));
        // Issued this second: valid once any of it has passed, as istioctl sees it.
        let start = UNIX_EPOCH + Duration::from_secs(cert.not_before.unix as u64);
        assert!(!cert.valid_at(start));
        assert!(cert.valid_at(start + Duration::from_millis(1)));
    }

    #[test]
    fn truncated_input_is_an_error_not_a_panic() {
        let der = ca_der();
        for len in 0..der.len() {
            assert!(parse(&der[..len]).is_err(), "prefix of {len} bytes");
        }
    }
}
