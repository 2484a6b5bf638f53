//! `application/x-www-form-urlencoded` decoding (query strings and login forms) and the
//! percent-encoding of a cookie value.

/// The decoded `name=value` pairs of a query string or form body.
pub fn pairs(encoded: &str) -> impl Iterator<Item = (String, String)> + '_ {
    encoded.split('&').filter(|p| !p.is_empty()).map(|pair| {
        let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
        (decode(name), decode(value))
    })
}

/// The first value of `name` in `encoded`.
pub fn value(encoded: &str, name: &str) -> Option<String> {
    pairs(encoded).find(|(n, _)| n == name).map(|(_, v)| v)
}

/// Decodes `+` and `%XX`; a malformed escape stays as it is.
pub fn decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'+' => out.push(b' '),
            b'%' => match (
                bytes.get(i + 1).copied().and_then(hex),
                bytes.get(i + 2).copied().and_then(hex),
            ) {
                (Some(high), Some(low)) => {
                    out.push(high << 4 | low);
                    i += 2;
                }
                _ => out.push(b'%'),
            },
            b => out.push(b),
        }
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Percent-encodes every byte that is not unreserved, so any text is a valid cookie value.
pub fn encode(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

fn hex(b: u8) -> Option<u8> {
    (b as char).to_digit(16).map(|d| d as u8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_forms_and_round_trips_cookie_values() {
        assert_eq!(
            pairs("username=jason+b&passwd=a%26b&flag").collect::<Vec<_>>(),
            [
                ("username".into(), "jason b".into()),
                ("passwd".into(), "a&b".into()),
                ("flag".into(), String::new())
            ]
        );
        assert_eq!(value("a=1&b=2", "b").as_deref(), Some("2"));
        assert_eq!(decode("100%"), "100%");
        assert_eq!(decode("%zz%4"), "%zz%4");
        for text in ["jason", "Zoë; x=1", "a b,c"] {
            let encoded = encode(text);
            assert!(!encoded.contains([';', ' ', ',', '=']), "{encoded}");
            assert_eq!(decode(&encoded), text);
        }
    }
}
