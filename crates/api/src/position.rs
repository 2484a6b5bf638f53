//! Finds where a field is in a YAML document, so that a problem found after loading
//! (by validation or analysis) can point at its line, not only at its document.
//!
//! Block-style YAML is walked by indentation; inside flow collections (`{…}`, `[…]`)
//! the line of the enclosing field is the answer.

/// One meaningful line: its number (from 0), indentation and text after it.
#[derive(Clone, Copy)]
struct Line<'a> {
    no: usize,
    indent: usize,
    text: &'a str,
}

/// A step of a field path: `.name` or `[index]` / `[key]`.
#[derive(Debug, PartialEq)]
enum Step<'p> {
    Key(&'p str),
    Index(&'p str),
}

fn steps(path: &str) -> Vec<Step<'_>> {
    let mut out = Vec::new();
    let mut rest = path;
    while !rest.is_empty() {
        if let Some(tail) = rest.strip_prefix('[') {
            let end = tail.find(']').unwrap_or(tail.len());
            out.push(Step::Index(&tail[..end]));
            rest = tail.get(end + 1..).unwrap_or("");
        } else {
            let rest_trimmed = rest.strip_prefix('.').unwrap_or(rest);
            let end = rest_trimmed.find(['.', '[']).unwrap_or(rest_trimmed.len());
            out.push(Step::Key(&rest_trimmed[..end]));
            rest = &rest_trimmed[end..];
        }
    }
    out
}

/// The 1-based line, within `document`, of the field at `path` (such as
/// `spec.http[0].route[1].weight`), or of its deepest ancestor present in the text.
/// `None` when not even the first step is found.
pub fn field_line(document: &str, path: &str) -> Option<usize> {
    let lines: Vec<Line<'_>> = document
        .lines()
        .enumerate()
        .filter_map(|(no, raw)| {
            let text = raw.trim_start();
            let meaningful = !text.is_empty() && !text.starts_with('#') && text != "---";
            meaningful.then(|| Line {
                no,
                indent: raw.len() - text.len(),
                text,
            })
        })
        .collect();
    let mut block: Vec<Line<'_>> = lines;
    let mut found = None;
    for step in steps(path) {
        let Some((line, child)) = descend(&block, &step) else {
            break;
        };
        found = Some(line + 1);
        block = child;
    }
    found
}

/// Finds `step` among the entries of `block` (a mapping or sequence), returning the
/// entry's line and the lines of its value.
fn descend<'a>(block: &[Line<'a>], step: &Step<'_>) -> Option<(usize, Vec<Line<'a>>)> {
    let first = block.first()?;
    let indent = first.indent;
    let sequence = is_item(first.text);
    // In a mapping, items at the keys' own indentation belong to the key above them.
    let entries: Vec<usize> = (0..block.len())
        .filter(|&i| block[i].indent == indent && (sequence || !is_item(block[i].text)))
        .collect();
    let pick = match (step, sequence) {
        (Step::Index(i), true) => {
            let i: usize = i.parse().ok()?;
            *entries.iter().filter(|&&e| is_item(block[e].text)).nth(i)?
        }
        (Step::Key(key) | Step::Index(key), false) => {
            *entries.iter().find(|&&e| has_key(block[e].text, key))?
        }
        _ => return None,
    };
    let end = entries
        .iter()
        .copied()
        .find(|&e| e > pick)
        .unwrap_or(block.len());
    let entry = block[pick];
    let mut child: Vec<Line<'a>> = block[pick + 1..end].to_vec();
    // (A mapping's value may be a sequence at the key's own indentation: `key:\n- a`.)
    if sequence {
        // The item's first field shares the `- ` line: give it its own line, indented.
        let text = entry.text[1..].trim_start();
        if !text.is_empty() {
            let indent = entry.indent + (entry.text.len() - text.len());
            child.insert(
                0,
                Line {
                    no: entry.no,
                    indent,
                    text,
                },
            );
        }
    }
    Some((entry.no, child))
}

fn is_item(text: &str) -> bool {
    text == "-" || text.starts_with("- ")
}

fn has_key(text: &str, key: &str) -> bool {
    let unquoted = [key.to_owned(), format!("\"{key}\""), format!("'{key}'")];
    unquoted.iter().any(|k| {
        text.strip_prefix(k.as_str()).is_some_and(|rest| {
            rest.starts_with(':') && (rest.len() == 1 || rest[1..].starts_with([' ', '\t']))
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const DOC: &str = "\
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
spec:
  hosts:
  - reviews
  http:
  - match:
    - headers:
        end-user:
          exact: jason
    route:
    - destination:
        host: reviews
        subset: v2
  - route:
    - destination: {host: reviews, subset: v1}
      weight: -10
    retries: {attempts: 3}
";

    #[test]
    fn finds_fields_through_mappings_and_sequences() {
        assert_eq!(field_line(DOC, "metadata.name"), Some(4));
        assert_eq!(field_line(DOC, "spec.hosts[0]"), Some(7));
        assert_eq!(
            field_line(DOC, "spec.http[0].match[0].headers[end-user]"),
            Some(11)
        );
        assert_eq!(
            field_line(DOC, "spec.http[0].route[0].destination.subset"),
            Some(16)
        );
        assert_eq!(field_line(DOC, "spec.http[1].route[0].weight"), Some(19));
    }

    #[test]
    fn stops_at_the_deepest_line_it_can_see() {
        // Inside a flow mapping: the line of the mapping.
        assert_eq!(
            field_line(DOC, "spec.http[1].route[0].destination.host"),
            Some(18)
        );
        assert_eq!(
            field_line(DOC, "spec.http[1].retries.perTryTimeout"),
            Some(20)
        );
        // Missing fields point at their parent.
        assert_eq!(field_line(DOC, "spec.tcp"), Some(5));
        assert_eq!(field_line(DOC, "status"), None);
    }

    #[test]
    fn sequences_at_their_key_indentation() {
        let doc = "spec:\n  hosts:\n  - a\n  - b\n  gateways:\n  - g\n";
        assert_eq!(field_line(doc, "spec.hosts[1]"), Some(4));
        assert_eq!(field_line(doc, "spec.gateways[0]"), Some(6));
    }
}
