//! Dynamic metadata: what one filter learns about a request and leaves for the next
//! (the JWT filter's verified payload for RBAC, RBAC's shadow result for ext_authz),
//! by filter name and key, as Envoy keeps it.

use serde_json::{Map, Value};

/// One request's dynamic metadata: per filter name, a JSON object.
///
/// Few filters write it, and most requests none: a short list beats a map.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Metadata(Vec<(String, Map<String, Value>)>);

impl Metadata {
    /// The namespace of `filter`, if anything was written to it.
    pub fn filter(&self, filter: &str) -> Option<&Map<String, Value>> {
        self.0.iter().find(|(f, _)| f == filter).map(|(_, m)| m)
    }

    /// Sets `key` in the namespace of `filter`, as Envoy's `setDynamicMetadata` merges a
    /// struct into what is there.
    pub fn set(&mut self, filter: &str, key: &str, value: Value) {
        let namespace = match self.0.iter().position(|(f, _)| f == filter) {
            Some(i) => &mut self.0[i].1,
            None => {
                self.0.push((filter.to_owned(), Map::new()));
                &mut self.0.last_mut().expect("just pushed").1
            }
        };
        namespace.insert(key.to_owned(), value);
    }

    /// The value at `path` in the namespace of `filter`: each key selects a field of the
    /// object before it.
    pub fn lookup(&self, filter: &str, path: &[String]) -> Option<&Value> {
        let (first, rest) = path.split_first()?;
        let mut value = self.filter(filter)?.get(first)?;
        for key in rest {
            value = value.as_object()?.get(key)?;
        }
        Some(value)
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn values_are_found_by_filter_and_path() {
        let mut m = Metadata::default();
        m.set(
            "envoy.filters.http.jwt_authn",
            "payload",
            json!({"iss": "a", "nested": {"k": 1}}),
        );
        m.set("envoy.filters.http.rbac", "x", json!("y"));
        let path = |p: &[&str]| p.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let jwt = "envoy.filters.http.jwt_authn";
        assert_eq!(m.lookup(jwt, &path(&["payload", "iss"])), Some(&json!("a")));
        assert_eq!(
            m.lookup(jwt, &path(&["payload", "nested", "k"])),
            Some(&json!(1))
        );
        assert_eq!(m.lookup(jwt, &path(&["payload", "iss", "deeper"])), None);
        assert_eq!(m.lookup(jwt, &path(&[])), None);
        assert_eq!(m.lookup("other", &path(&["payload"])), None);
        // Setting merges into the namespace.
        m.set(jwt, "header", json!({}));
        assert!(m.lookup(jwt, &path(&["payload"])).is_some());
    }
}
