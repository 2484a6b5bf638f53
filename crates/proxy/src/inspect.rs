//! Listener filters that read a connection's first bytes without consuming them: the
//! TLS inspector (SNI and ALPN from a ClientHello) and the HTTP inspector (HTTP/1.x or
//! h2c preface).

/// What the first bytes told.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Inspected {
    /// `tls` or `raw_buffer`.
    pub tls: bool,
    /// The ClientHello's server name.
    pub server_name: Option<String>,
    /// ALPN from the ClientHello, or `http/1.1` / `h2c` from the HTTP inspector.
    pub application_protocols: Vec<String>,
}

/// How much of a ClientHello the TLS inspector reads at most (Envoy: 64 KiB).
pub const MAX_CLIENT_HELLO: usize = 64 * 1024;

/// The verdict on the bytes seen so far.
#[derive(Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Enough was read.
    Done(Inspected),
    /// More bytes could change the answer.
    NeedMore,
}

/// Inspects `bytes` (all peeked so far); `eof` when the peer sent nothing more.
pub fn inspect(bytes: &[u8], tls: bool, http: bool, eof: bool) -> Verdict {
    if tls && bytes.first() == Some(&0x16) {
        return match client_hello(bytes) {
            Hello::Complete(inspected) => Verdict::Done(inspected),
            Hello::Partial if !eof && bytes.len() < MAX_CLIENT_HELLO => Verdict::NeedMore,
            _ => Verdict::Done(Inspected {
                tls: true,
                ..Inspected::default()
            }),
        };
    }
    if tls && bytes.is_empty() && !eof {
        return Verdict::NeedMore;
    }
    if http {
        return match http_version(bytes) {
            Some(alpn) => Verdict::Done(Inspected {
                application_protocols: vec![alpn.to_owned()],
                ..Inspected::default()
            }),
            None if !eof && could_be_http(bytes) => Verdict::NeedMore,
            None => Verdict::Done(Inspected::default()),
        };
    }
    Verdict::Done(Inspected::default())
}

const H2_PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

/// `h2c` for the HTTP/2 preface, `http/1.1` for an HTTP/1.x request line.
fn http_version(bytes: &[u8]) -> Option<&'static str> {
    if bytes.len() >= H2_PREFACE.len() && bytes.starts_with(H2_PREFACE) {
        return Some("h2c");
    }
    let line_end = bytes.windows(2).position(|w| w == b"\r\n")?;
    let line = std::str::from_utf8(&bytes[..line_end]).ok()?;
    let mut parts = line.split(' ');
    let (method, target, version) = (parts.next()?, parts.next()?, parts.next()?);
    let token = !method.is_empty() && method.bytes().all(|b| b.is_ascii_uppercase() || b == b'-');
    (token
        && !target.is_empty()
        && parts.next().is_none()
        && (version == "HTTP/1.1" || version == "HTTP/1.0"))
        .then_some("http/1.1")
}

/// Whether more bytes could still make an HTTP request line or the h2 preface.
fn could_be_http(bytes: &[u8]) -> bool {
    if H2_PREFACE.starts_with(bytes) {
        return true;
    }
    // A request line, not yet complete: printable ASCII, no line end yet, not too long.
    bytes.len() < 8 * 1024
        && !bytes.windows(2).any(|w| w == b"\r\n")
        && bytes
            .iter()
            .all(|b| b.is_ascii_graphic() || *b == b' ' || *b == b'\r')
}

enum Hello {
    Complete(Inspected),
    Partial,
    Invalid,
}

/// Reads SNI and ALPN from a TLS record holding a ClientHello.
fn client_hello(bytes: &[u8]) -> Hello {
    let mut r = Reader(bytes);
    let (Some(0x16), Some(_version), Some(record_len)) = (r.u8(), r.u16(), r.u16()) else {
        return Hello::Partial;
    };
    let Some(record) = r.take(usize::from(record_len)) else {
        return Hello::Partial;
    };
    match parse_hello(record) {
        Some(inspected) => Hello::Complete(inspected),
        None => Hello::Invalid,
    }
}

fn parse_hello(record: &[u8]) -> Option<Inspected> {
    let mut r = Reader(record);
    if r.u8()? != 1 {
        return None; // not a ClientHello
    }
    let len = r.u24()?;
    let mut hello = Reader(r.take(len)?);
    hello.take(2 + 32)?; // version, random
    let session = usize::from(hello.u8()?);
    hello.take(session)?;
    let suites = usize::from(hello.u16()?);
    hello.take(suites)?;
    let compression = usize::from(hello.u8()?);
    hello.take(compression)?;
    let mut inspected = Inspected {
        tls: true,
        ..Inspected::default()
    };
    if hello.0.is_empty() {
        return Some(inspected);
    }
    let ext_len = usize::from(hello.u16()?);
    let mut exts = Reader(hello.take(ext_len)?);
    while !exts.0.is_empty() {
        let kind = exts.u16()?;
        let len = usize::from(exts.u16()?);
        let mut data = Reader(exts.take(len)?);
        match kind {
            0 => {
                // server_name: list of (type, name); type 0 is a host name.
                let len = usize::from(data.u16()?);
                let mut list = Reader(data.take(len)?);
                while !list.0.is_empty() {
                    let name_type = list.u8()?;
                    let len = usize::from(list.u16()?);
                    let name = list.take(len)?;
                    if name_type == 0 {
                        inspected.server_name =
                            Some(std::str::from_utf8(name).ok()?.to_ascii_lowercase());
                    }
                }
            }
            16 => {
                let len = usize::from(data.u16()?);
                let mut list = Reader(data.take(len)?);
                while !list.0.is_empty() {
                    let len = usize::from(list.u8()?);
                    let proto = list.take(len)?;
                    inspected
                        .application_protocols
                        .push(String::from_utf8_lossy(proto).into_owned());
                }
            }
            _ => {}
        }
    }
    Some(inspected)
}

/// A cursor over bytes; every read is checked.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Some(head)
    }
    fn u8(&mut self) -> Option<u8> {
        self.take(1).map(|b| b[0])
    }
    fn u16(&mut self) -> Option<u16> {
        self.take(2).map(|b| u16::from_be_bytes([b[0], b[1]]))
    }
    fn u24(&mut self) -> Option<usize> {
        self.take(3)
            .map(|b| usize::from(b[0]) << 16 | usize::from(b[1]) << 8 | usize::from(b[2]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A minimal ClientHello with SNI and ALPN, as a client would send it.
    fn hello(sni: &str, alpn: &[&str]) -> Vec<u8> {
        let mut exts = Vec::new();
        let name = sni.as_bytes();
        let mut sni_ext = Vec::new();
        sni_ext.extend((name.len() as u16 + 3).to_be_bytes());
        sni_ext.push(0);
        sni_ext.extend((name.len() as u16).to_be_bytes());
        sni_ext.extend(name);
        exts.extend(0u16.to_be_bytes());
        exts.extend((sni_ext.len() as u16).to_be_bytes());
        exts.extend(sni_ext);
        let mut list = Vec::new();
        for p in alpn {
            list.push(p.len() as u8);
            list.extend(p.as_bytes());
        }
        exts.extend(16u16.to_be_bytes());
        exts.extend((list.len() as u16 + 2).to_be_bytes());
        exts.extend((list.len() as u16).to_be_bytes());
        exts.extend(list);

        let mut body = vec![3, 3];
        body.extend([7u8; 32]);
        body.push(0); // session id
        body.extend(2u16.to_be_bytes());
        body.extend([0x13, 0x01]);
        body.extend([1, 0]); // compression: null
        body.extend((exts.len() as u16).to_be_bytes());
        body.extend(exts);
        let mut handshake = vec![1];
        handshake.extend(&(body.len() as u32).to_be_bytes()[1..]);
        handshake.extend(body);
        let mut record = vec![0x16, 3, 1];
        record.extend((handshake.len() as u16).to_be_bytes());
        record.extend(handshake);
        record
    }

    #[test]
    fn client_hello_gives_sni_and_alpn() {
        let bytes = hello("Reviews.Example.com", &["h2", "http/1.1"]);
        let Verdict::Done(i) = inspect(&bytes, true, true, false) else {
            panic!()
        };
        assert!(i.tls);
        assert_eq!(i.server_name.as_deref(), Some("reviews.example.com"));
        assert_eq!(i.application_protocols, ["h2", "http/1.1"]);
        // Cut short, it asks for more; at EOF it settles for "tls" alone.
        assert_eq!(inspect(&bytes[..40], true, true, false), Verdict::NeedMore);
        let Verdict::Done(cut) = inspect(&bytes[..40], true, true, true) else {
            panic!()
        };
        assert!(cut.tls && cut.server_name.is_none());
    }

    #[test]
    fn http_inspector_tells_versions_apart() {
        let done = |b: &[u8]| match inspect(b, false, true, false) {
            Verdict::Done(i) => i.application_protocols,
            Verdict::NeedMore => vec!["more".into()],
        };
        assert_eq!(
            done(b"GET /index.html HTTP/1.1\r\nHost: x\r\n"),
            ["http/1.1"]
        );
        assert_eq!(done(H2_PREFACE), ["h2c"]);
        assert_eq!(done(b"PRI * HT"), ["more"]);
        assert_eq!(done(b"GET /ind"), ["more"]);
        assert!(done(b"\x00\x01binary").is_empty());
        assert!(done(b"SSH-2.0-OpenSSH\r\n").is_empty());
    }
}
