//! Envoy's substitution format strings (header values, `host_rewrite`, `path_rewrite`):
//! `%%` is a literal `%`, and `%NAME%` / `%NAME(args)%` / `%NAME(args):N%` are command
//! operators filled in per request.
//!
//! Values are literal for now: [`literal`] resolves the escapes and refuses every command
//! operator at config time, so a config that needs one is NACKed rather than sent with the
//! operator's text. Supporting an operator starts in [`literal`]'s `Part::Operator` arm, which
//! would compile it into a per-request part instead of refusing it.

use super::error::Problem;

/// One piece of a format string.
enum Part<'a> {
    /// Bytes copied as they are (`%%` already reduced to `%`).
    Literal(&'a [u8]),
    /// A command operator, with its `%`s: `%REQ(x-user)%`.
    Operator(&'a [u8]),
}

/// The bytes `format` stands for, when it has no command operators.
pub(crate) fn literal(format: &[u8]) -> Result<Vec<u8>, Problem> {
    let mut out = Vec::with_capacity(format.len());
    let mut rest = format;
    while !rest.is_empty() {
        let (part, len) = next_part(rest, format.len() - rest.len())?;
        match part {
            Part::Literal(bytes) => out.extend_from_slice(bytes),
            Part::Operator(op) => {
                return Err(Problem::UnsupportedOperator(
                    String::from_utf8_lossy(op).into_owned(),
                ));
            }
        }
        rest = &rest[len..];
    }
    Ok(out)
}

/// The part `rest` starts with and how many bytes of `rest` it spans; `offset` is where
/// `rest` starts in the whole format, for errors.
fn next_part(rest: &[u8], offset: usize) -> Result<(Part<'_>, usize), Problem> {
    if rest[0] != b'%' {
        let len = rest.iter().position(|&b| b == b'%').unwrap_or(rest.len());
        return Ok((Part::Literal(&rest[..len]), len));
    }
    if rest.get(1) == Some(&b'%') {
        return Ok((Part::Literal(&rest[..1]), 2));
    }
    match operator_len(rest) {
        Some(len) => Ok((Part::Operator(&rest[..len]), len)),
        None => Err(Problem::UnescapedPercent(offset)),
    }
}

/// The length of the command operator `s` starts with (`%NAME%`, `%NAME(args)%` or
/// `%NAME(args):N%`), or `None` when the `%` starts none.
fn operator_len(s: &[u8]) -> Option<usize> {
    let name = s[1..]
        .iter()
        .take_while(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || **b == b'_')
        .count();
    if name == 0 {
        return None;
    }
    let mut i = 1 + name;
    if s.get(i) == Some(&b'(') {
        i += s[i..].iter().position(|&b| b == b')')? + 1;
        if s.get(i) == Some(&b':') {
            let digits = s[i + 1..].iter().take_while(|b| b.is_ascii_digit()).count();
            if digits == 0 {
                return None;
            }
            i += 1 + digits;
        }
    }
    (s.get(i) == Some(&b'%')).then_some(i + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lit(s: &str) -> Result<String, Problem> {
        literal(s.as_bytes()).map(|v| String::from_utf8(v).unwrap())
    }

    #[test]
    fn plain_text_is_kept() {
        assert_eq!(lit("v1, v2 ; q=0.5").unwrap(), "v1, v2 ; q=0.5");
        assert_eq!(lit("").unwrap(), "");
    }

    #[test]
    fn double_percent_is_one_percent() {
        assert_eq!(lit("100%%").unwrap(), "100%");
        assert_eq!(lit("%%%%x%%").unwrap(), "%%x%");
    }

    #[test]
    fn command_operators_are_refused_by_name() {
        for (format, op) in [
            ("%DOWNSTREAM_REMOTE_ADDRESS%", "%DOWNSTREAM_REMOTE_ADDRESS%"),
            ("id=%REQ(x-request-id)%;", "%REQ(x-request-id)%"),
            ("%REQ(x-long):10%", "%REQ(x-long):10%"),
            ("%%%START_TIME%", "%START_TIME%"),
        ] {
            match lit(format) {
                Err(Problem::UnsupportedOperator(got)) => assert_eq!(got, op, "{format}"),
                other => panic!("{format}: {other:?}"),
            }
        }
    }

    #[test]
    fn a_lone_percent_is_refused_with_its_position() {
        for (format, at) in [
            ("50%", 2),
            ("%", 0),
            ("a%b", 1),
            ("%lower%", 0),
            ("%%x%", 3),
        ] {
            match lit(format) {
                Err(Problem::UnescapedPercent(got)) => assert_eq!(got, at, "{format}"),
                other => panic!("{format}: {other:?}"),
            }
        }
    }
}
