//! Where in a document a conversion is, for error messages (`$.static_resources.clusters[0]`).

use std::fmt::Write;

/// A JSONPath-like location that grows and shrinks as a conversion walks a message.
#[derive(Debug, Default)]
pub(crate) struct Path {
    text: String,
    marks: Vec<usize>,
}

impl Path {
    /// Enters the field or map entry named `key`.
    pub(crate) fn push_key(&mut self, key: &str) {
        self.marks.push(self.text.len());
        if key
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '@')
        {
            self.text.push('.');
            self.text.push_str(key);
        } else {
            // Map keys can be anything (`"envoy.filters.http.router"`, `"*"`).
            let _ = write!(self.text, "[{key:?}]");
        }
    }

    /// Enters element `index` of a list.
    pub(crate) fn push_index(&mut self, index: usize) {
        self.marks.push(self.text.len());
        let _ = write!(self.text, "[{index}]");
    }

    /// Leaves the innermost key or index.
    pub(crate) fn pop(&mut self) {
        if let Some(mark) = self.marks.pop() {
            self.text.truncate(mark);
        }
    }

    /// The location as text, `$` being the document itself.
    pub(crate) fn render(&self) -> String {
        format!("${}", self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::Path;

    #[test]
    fn renders_fields_indexes_and_odd_keys() {
        let mut path = Path::default();
        assert_eq!(path.render(), "$");
        path.push_key("static_resources");
        path.push_key("clusters");
        path.push_index(2);
        assert_eq!(path.render(), "$.static_resources.clusters[2]");
        path.push_key("envoy.filters.http.router");
        assert_eq!(
            path.render(),
            "$.static_resources.clusters[2][\"envoy.filters.http.router\"]"
        );
        path.pop();
        path.pop();
        assert_eq!(path.render(), "$.static_resources.clusters");
    }
}
