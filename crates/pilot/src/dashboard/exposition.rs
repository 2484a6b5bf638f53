//! Prometheus' text exposition format (version 0.0.4), the format every proxy serves at
//! `/stats/prometheus`: `name{label="value",…} value [timestamp]` lines, `#` comments.
//!
//! Written here rather than taken from a crate: the format is a dozen rules, the
//! maintained crates for it (`prometheus-parse`) are thin and pull in regex and chrono,
//! and the dashboard only needs samples, not the metadata of `# HELP`/`# TYPE` lines.

use std::borrow::Cow;

/// One sample: a series (name and labels) and its value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The metric name, with its `_bucket`/`_sum`/`_count` suffix for histograms.
    pub name: String,
    /// The labels, sorted by name, so that equal series compare equal.
    pub labels: Vec<(String, String)>,
    /// The value (`NaN` and `±Inf` included).
    pub value: f64,
}

impl Sample {
    /// The value of label `name`, or `""` when absent (Prometheus' own reading).
    pub fn label(&self, name: &str) -> &str {
        label(&self.labels, name)
    }
}

/// The value of label `name` in `labels` (sorted by name), or `""` when absent.
pub fn label<'a>(labels: &'a [(String, String)], name: &str) -> &'a str {
    labels
        .binary_search_by(|(k, _)| k.as_str().cmp(name))
        .map_or("", |i| labels[i].1.as_str())
}

/// Why a line is not a sample.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("line {line}: {reason}")]
pub struct ParseError {
    /// The 1-based line number.
    pub line: usize,
    /// What is wrong with it.
    pub reason: &'static str,
}

/// Every sample of `text`; comments and blank lines are skipped.
pub fn parse(text: &str) -> Result<Vec<Sample>, ParseError> {
    text.lines()
        .enumerate()
        .filter(|(_, line)| {
            let line = line.trim_start();
            !line.is_empty() && !line.starts_with('#')
        })
        .map(|(i, line)| {
            sample(line.trim()).map_err(|reason| ParseError {
                line: i + 1,
                reason,
            })
        })
        .collect()
}

fn sample(line: &str) -> Result<Sample, &'static str> {
    let name_end = line
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(line.len());
    let (name, mut rest) = line.split_at(name_end);
    if name.is_empty() || name.starts_with(|c: char| c.is_ascii_digit()) {
        return Err("expected a metric name");
    }
    let mut labels = Vec::new();
    rest = rest.trim_start();
    if let Some(after) = rest.strip_prefix('{') {
        rest = read_labels(after, &mut labels)?;
    }
    labels.sort();
    let mut fields = rest.split_whitespace();
    let value = fields.next().ok_or("expected a value")?;
    let value = parse_value(value).ok_or("the value is not a number")?;
    // An optional timestamp (milliseconds) follows; the scrape time is used instead.
    if fields.nth(1).is_some() {
        return Err("unexpected text after the timestamp");
    }
    Ok(Sample {
        name: name.to_owned(),
        labels,
        value,
    })
}

/// Reads `name="value",…}` and returns what follows the closing brace.
fn read_labels<'a>(
    mut rest: &'a str,
    labels: &mut Vec<(String, String)>,
) -> Result<&'a str, &'static str> {
    loop {
        rest = rest.trim_start();
        if let Some(after) = rest.strip_prefix('}') {
            return Ok(after);
        }
        let (name, after) = rest.split_once('=').ok_or("expected label=\"value\"")?;
        let name = name.trim();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err("bad label name");
        }
        let after = after
            .trim_start()
            .strip_prefix('"')
            .ok_or("label value must be quoted")?;
        let (value, after) = quoted(after)?;
        labels.push((name.to_owned(), value.into_owned()));
        rest = after.trim_start();
        rest = match rest.strip_prefix(',') {
            Some(after) => after,
            None if rest.starts_with('}') => rest,
            None => return Err("expected , or } after a label"),
        };
    }
}

/// A label value up to its closing quote (`\\`, `\"` and `\n` unescaped), and the rest.
fn quoted(text: &str) -> Result<(Cow<'_, str>, &str), &'static str> {
    let bytes = text.as_bytes();
    let mut escaped = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            // The escaped character, possibly a quote, is skipped over.
            b'\\' => {
                escaped = true;
                i += 2;
            }
            b'"' => {
                let raw = &text[..i];
                let value = match escaped {
                    true => Cow::Owned(unescape(raw)?),
                    false => Cow::Borrowed(raw),
                };
                return Ok((value, &text[i + 1..]));
            }
            _ => i += 1,
        }
    }
    Err("unterminated label value")
}

fn unescape(raw: &str) -> Result<String, &'static str> {
    let mut out = String::with_capacity(raw.len());
    let mut chars = raw.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next() {
            Some('n') => out.push('\n'),
            Some('\\') => out.push('\\'),
            Some('"') => out.push('"'),
            _ => return Err("bad escape in a label value"),
        }
    }
    Ok(out)
}

/// A sample value: Go's float syntax plus `NaN`, `+Inf`, `-Inf`.
pub(crate) fn parse_value(text: &str) -> Option<f64> {
    match text {
        "+Inf" | "Inf" => Some(f64::INFINITY),
        "-Inf" => Some(f64::NEG_INFINITY),
        "NaN" => Some(f64::NAN),
        _ => text.parse().ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn labels(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn samples_with_labels_comments_and_timestamps() {
        let text = "# HELP istio_requests_total Requests.\n\
            # TYPE istio_requests_total counter\n\
            istio_requests_total{response_code=\"200\",reporter=\"source\"} 42 1700000000000\n\
            \n\
            istio_request_duration_milliseconds_bucket{le=\"+Inf\"} 7\n\
            envoy_server_live 1\n";
        let samples = parse(text).unwrap();
        assert_eq!(samples.len(), 3);
        assert_eq!(samples[0].name, "istio_requests_total");
        assert_eq!(
            samples[0].labels,
            labels(&[("reporter", "source"), ("response_code", "200")])
        );
        assert_eq!(samples[0].value, 42.0);
        assert_eq!(samples[0].label("reporter"), "source");
        assert_eq!(samples[0].label("missing"), "");
        assert_eq!(samples[1].label("le"), "+Inf");
        assert_eq!(samples[2].labels, vec![]);
    }

    #[test]
    fn label_values_are_unescaped() {
        let samples =
            parse(r#"m{a="say \"hi\"",b="back\\slash",c="two\nlines",d="",} +Inf"#).unwrap();
        assert_eq!(
            samples[0].labels,
            labels(&[
                ("a", "say \"hi\""),
                ("b", "back\\slash"),
                ("c", "two\nlines"),
                ("d", "")
            ])
        );
        assert_eq!(samples[0].value, f64::INFINITY);
        assert!(parse("m NaN").unwrap()[0].value.is_nan());
        assert_eq!(parse("m{a=\"x,}y\"} -1.5e3").unwrap()[0].value, -1500.0);
    }

    #[test]
    fn malformed_lines_are_refused_with_their_number() {
        let cases = [
            ("ok 1\n{a=\"b\"} 1", 2, "expected a metric name"),
            ("m{a=b} 1", 1, "label value must be quoted"),
            ("m{a=\"b} 1", 1, "unterminated label value"),
            ("m{a=\"b\" c=\"d\"} 1", 1, "expected , or } after a label"),
            ("m{a=\"\\x\"} 1", 1, "bad escape in a label value"),
            ("m", 1, "expected a value"),
            ("m one", 1, "the value is not a number"),
            ("m 1 2 3", 1, "unexpected text after the timestamp"),
        ];
        for (text, line, reason) in cases {
            assert_eq!(parse(text), Err(ParseError { line, reason }), "{text}");
        }
    }
}
