//! Regexes as Istio and Envoy read them: RE2 syntax, checked the way Go's `regexp` does.

use super::Validator;

/// Reports a regex that is not valid RE2 (as Go parses it).
pub fn check_regex(v: &mut Validator<'_>, pattern: &str) {
    if let Some(e) = regex_error(pattern) {
        v.error(format!("{pattern:?} is not a valid regex: {e}"));
    }
}

/// Why `pattern` is not a valid Go (RE2) regexp, if it is not. Go refuses a repetition
/// of a repetition (`a**`, `a++`) that Rust's regex crate accepts, so that is checked
/// first, worded as Go does.
pub fn regex_error(pattern: &str) -> Option<String> {
    if let Some(op) = nested_repetition(pattern) {
        return Some(format!(
            "error parsing regexp: invalid nested repetition operator: `{op}`"
        ));
    }
    regex::Regex::new(pattern).err().map(|e| {
        let reason = e.to_string();
        reason.lines().last().unwrap_or(&reason).trim().to_owned()
    })
}

/// The first repetition operator applied to a repetition, with the one before it.
fn nested_repetition(pattern: &str) -> Option<String> {
    let chars: Vec<char> = pattern.chars().collect();
    let mut i = 0;
    // Where the previous token, if a repetition operator (plus its lazy `?`), started.
    let mut last_repeat: Option<usize> = None;
    while i < chars.len() {
        let start = i;
        let repeat_len = match chars[i] {
            '*' | '+' | '?' => 1,
            '{' => {
                let close = chars[i..].iter().position(|&c| c == '}');
                let counted = close.is_some_and(|n| {
                    let body: String = chars[i + 1..i + n].iter().collect();
                    let (lo, hi) = body.split_once(',').unwrap_or((&body, "0"));
                    let digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
                    !lo.is_empty() && digits(lo) && digits(hi)
                });
                if counted {
                    close.map_or(0, |n| n + 1)
                } else {
                    0
                }
            }
            _ => 0,
        };
        if repeat_len > 0 {
            i += repeat_len;
            if chars.get(i) == Some(&'?') {
                i += 1;
            }
            if let Some(prev) = last_repeat {
                return Some(chars[prev..i].iter().collect());
            }
            last_repeat = Some(start);
            continue;
        }
        last_repeat = None;
        match chars[i] {
            '\\' => i += 2,
            '(' if chars.get(i + 1) == Some(&'?') => i += 2,
            '[' => {
                // Skip the class; a `]` right after `[` or `[^` is literal.
                i += 1;
                if chars.get(i) == Some(&'^') {
                    i += 1;
                }
                if chars.get(i) == Some(&']') {
                    i += 1;
                }
                while i < chars.len() && chars[i] != ']' {
                    i += if chars[i] == '\\' { 2 } else { 1 };
                }
                i += 1;
            }
            _ => i += 1,
        }
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_nested_repetition() {
        let n = nested_repetition;
        assert_eq!(n("a++"), Some("++".into()));
        assert_eq!(n("a**"), Some("**".into()));
        assert_eq!(n("a{2}*"), Some("{2}*".into()));
        assert_eq!(n("a+?+"), Some("+?+".into()));
        for ok in [
            "a+?",
            "a*b+",
            r"\++",
            "[+*]+",
            "(?i)a+",
            "a{x}+",
            r"^1\.2[0-9].*$",
        ] {
            assert_eq!(n(ok), None, "{ok}");
        }
    }

    #[test]
    fn go_refuses_what_rust_would_accept() {
        assert_eq!(
            regex_error("a++").as_deref(),
            Some("error parsing regexp: invalid nested repetition operator: `++`")
        );
        assert!(regex_error("(unclosed").is_some());
        assert_eq!(regex_error("^/api/v[0-9]+$"), None);
    }
}
