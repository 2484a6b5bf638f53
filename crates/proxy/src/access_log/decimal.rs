//! Numbers and addresses appended to a line in decimal without `core::fmt`: a log line
//! prints several per request, and the formatting machinery costs many times the digits.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};

/// Appends `n` in decimal, at least `width` digits (zero-padded; at most 20).
pub fn push_padded(out: &mut String, n: u64, width: usize) {
    let mut digits = [b'0'; 20];
    let mut at = digits.len();
    let mut rest = n;
    loop {
        at -= 1;
        digits[at] = b'0' + (rest % 10) as u8;
        rest /= 10;
        if rest == 0 {
            break;
        }
    }
    let start = at.min(digits.len() - width.min(digits.len()));
    out.extend(digits[start..].iter().map(|&d| char::from(d)));
}

/// Appends `n` in decimal.
pub fn push(out: &mut String, n: u64) {
    push_padded(out, n, 1);
}

/// Appends `address` as `Display` writes it, with its port or without.
pub fn push_address(out: &mut String, address: SocketAddr, port: bool) {
    match address {
        SocketAddr::V4(v4) => {
            push_ipv4(out, *v4.ip());
            if port {
                out.push(':');
                push(out, u64::from(v4.port()));
            }
        }
        // Rare in a mesh; the standard formatting handles IPv6's compression rules.
        SocketAddr::V6(v6) => {
            use std::fmt::Write as _;
            // Writing to a String cannot fail.
            let _ = if port {
                write!(out, "{v6}")
            } else {
                write!(out, "{}", IpAddr::V6(*v6.ip()))
            };
        }
    }
}

fn push_ipv4(out: &mut String, ip: Ipv4Addr) {
    for (i, octet) in ip.octets().into_iter().enumerate() {
        if i > 0 {
            out.push('.');
        }
        push(out, u64::from(octet));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_print_as_display_does() {
        for n in [0, 7, 10, 99, 100, 65_535, 1_000_000_007, u64::MAX] {
            let mut out = String::new();
            push(&mut out, n);
            assert_eq!(out, n.to_string());
        }
    }

    #[test]
    fn padded_numbers_print_as_zero_filled_display() {
        for (n, width) in [
            (0, 2),
            (7, 2),
            (42, 2),
            (123, 2),
            (5, 4),
            (2026, 4),
            (12, 9),
        ] {
            let mut out = String::new();
            push_padded(&mut out, n, width);
            assert_eq!(out, format!("{n:0width$}"));
        }
    }

    #[test]
    fn addresses_print_as_display_does() {
        for text in [
            "127.0.0.1:8080",
            "10.244.0.255:0",
            "[::1]:15006",
            "[fe80::1:2]:80",
        ] {
            let address: SocketAddr = text.parse().unwrap();
            let (mut with, mut without) = (String::new(), String::new());
            push_address(&mut with, address, true);
            push_address(&mut without, address, false);
            assert_eq!(with, address.to_string());
            assert_eq!(without, address.ip().to_string());
        }
    }
}
