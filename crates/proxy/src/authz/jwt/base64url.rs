//! Base64url (RFC 4648 §5), as JWTs and JWKs write their parts: decoded with or without
//! padding, encoded without.

/// The alphabet, by value.
const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

/// Decodes `text`; `None` when it is not base64url (padding, when present, must be
/// right).
pub fn decode(text: &str) -> Option<Vec<u8>> {
    let bytes = text.as_bytes();
    let unpadded = match bytes.iter().position(|&b| b == b'=') {
        Some(at) => {
            let pad = &bytes[at..];
            if !bytes.len().is_multiple_of(4) || pad.len() > 2 || pad.iter().any(|&b| b != b'=') {
                return None;
            }
            &bytes[..at]
        }
        None => bytes,
    };
    if unpadded.len() % 4 == 1 {
        return None;
    }
    let mut out = Vec::with_capacity(unpadded.len() * 3 / 4);
    let mut bits: u32 = 0;
    let mut count = 0;
    for &b in unpadded {
        let value = ALPHABET.iter().position(|&a| a == b)? as u32;
        bits = (bits << 6) | value;
        count += 6;
        if count >= 8 {
            count -= 8;
            out.push((bits >> count) as u8);
            bits &= (1 << count) - 1;
        }
    }
    // Leftover bits must be zero, as RFC 4648 §3.5 asks of canonical encodings.
    (bits == 0).then_some(out)
}

/// Encodes `bytes`, padded with `=` when `pad`.
pub fn encode(bytes: &[u8], pad: bool) -> String {
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, &b)| acc | u32::from(b) << (16 - 8 * i));
        let chars = chunk.len() + 1;
        for i in 0..4 {
            if i < chars {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else if pad {
                out.push('=');
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_rfc_4648_vectors() {
        for (plain, encoded) in [
            ("", ""),
            ("f", "Zg"),
            ("fo", "Zm8"),
            ("foo", "Zm9v"),
            ("foob", "Zm9vYg"),
            ("fooba", "Zm9vYmE"),
            ("foobar", "Zm9vYmFy"),
        ] {
            assert_eq!(encode(plain.as_bytes(), false), encoded);
            assert_eq!(decode(encoded).unwrap(), plain.as_bytes());
        }
        assert_eq!(encode(b"f", true), "Zg==");
        assert_eq!(decode("Zg==").unwrap(), b"f");
        assert_eq!(decode("-_8").unwrap(), [0xfb, 0xff]);
    }

    #[test]
    fn refuses_what_is_not_base64url() {
        assert!(decode("Zg=").is_none(), "bad padding");
        assert!(decode("Z").is_none(), "a lone sextet");
        assert!(decode("Zh").is_none(), "non-zero leftover bits");
        assert!(decode("+/8").is_none(), "standard alphabet");
        assert!(decode("Zm9v YmFy").is_none());
    }
}
