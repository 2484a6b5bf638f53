//! An Envoy `/config_dump` as JSON, read leniently: its resources stay JSON so that
//! extension types this build has no descriptor for (Istio's own filters) never stop a
//! table from printing, and fields are found by their proto name (Envoy's spelling) or
//! their lowerCamelCase JSON name (protojson's, as istiod and istioctl write them).

use anyhow::{Context, bail};
use serde_json::Value;

/// A parsed config dump and where it came from, for error messages.
#[derive(Debug)]
pub(crate) struct Dump {
    value: Value,
    origin: String,
}

/// A section of the dump, named by the message in its `@type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Section {
    /// `BootstrapConfigDump`.
    Bootstrap,
    /// `ClustersConfigDump`.
    Clusters,
    /// `ListenersConfigDump`.
    Listeners,
    /// `RoutesConfigDump`.
    Routes,
    /// `EndpointsConfigDump`, only present when asked for (`?include_eds`).
    Endpoints,
    /// `SecretsConfigDump`.
    Secrets,
    /// `EcdsConfigDump`, one per filter type.
    Ecds,
}

impl Section {
    /// The message name ending the section's `@type`.
    pub(crate) fn message(self) -> &'static str {
        match self {
            Section::Bootstrap => "BootstrapConfigDump",
            Section::Clusters => "ClustersConfigDump",
            Section::Listeners => "ListenersConfigDump",
            Section::Routes => "RoutesConfigDump",
            Section::Endpoints => "EndpointsConfigDump",
            Section::Secrets => "SecretsConfigDump",
            Section::Ecds => "EcdsConfigDump",
        }
    }
}

impl Dump {
    /// Reads `text` (the body of `/config_dump`) from `origin`.
    pub(crate) fn parse(text: &str, origin: &str) -> anyhow::Result<Self> {
        let value: Value = serde_json::from_str(text)
            .with_context(|| format!("{origin}: not a JSON config dump"))?;
        Self::from_value(value, origin)
    }

    /// Wraps an already parsed document, checking it has the dump's `configs` list.
    pub(crate) fn from_value(value: Value, origin: &str) -> anyhow::Result<Self> {
        if !value.get("configs").is_some_and(Value::is_array) {
            bail!("{origin}: not an Envoy config dump (no \"configs\" list)");
        }
        Ok(Self {
            value,
            origin: origin.to_owned(),
        })
    }

    /// Where the dump came from (a path or a URL).
    pub(crate) fn origin(&self) -> &str {
        &self.origin
    }

    /// The whole document.
    pub(crate) fn value(&self) -> &Value {
        &self.value
    }

    /// The section, if the dump has one.
    pub(crate) fn section(&self, section: Section) -> Option<&Value> {
        self.sections(section).next()
    }

    /// Every section of this type (ECDS comes in several).
    pub(crate) fn sections(&self, section: Section) -> impl Iterator<Item = &Value> {
        list(&self.value, "configs").iter().filter(move |c| {
            str_field(c, "@type")
                .rsplit('.')
                .next()
                .is_some_and(|message| message == section.message())
        })
    }

    /// The section, or an error naming the dump and the missing section.
    pub(crate) fn require(&self, section: Section) -> anyhow::Result<&Value> {
        self.section(section).with_context(|| {
            format!(
                "{}: config dump has no {} section",
                self.origin,
                section.message()
            )
        })
    }

    /// The resources of a section: for each `(list, path)`, the value at `path`
    /// inside every entry of `list`, in order; entries without one are skipped (a
    /// listener still warming has no `active_state`). An absent section has none.
    pub(crate) fn resources(&self, section: Section, lists: &[(&str, &[&str])]) -> Vec<&Value> {
        let Some(section) = self.section(section) else {
            return Vec::new();
        };
        lists
            .iter()
            .flat_map(|(key, path)| {
                list(section, key)
                    .iter()
                    .filter_map(|entry| path.iter().try_fold(entry, |v, k| field(v, k)))
            })
            .collect()
    }
}

/// The field `name` (snake_case) of `v`, under that name or its lowerCamelCase one.
pub(crate) fn field<'a>(v: &'a Value, name: &str) -> Option<&'a Value> {
    let object = v.as_object()?;
    object.get(name).or_else(|| {
        name.contains('_')
            .then(|| object.get(&camel(name)))
            .flatten()
    })
}

/// `route_config_name` → `routeConfigName`.
fn camel(snake: &str) -> String {
    let mut out = String::with_capacity(snake.len());
    let mut upper = false;
    for c in snake.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

/// A string field, or `""` when absent (proto3's default).
pub(crate) fn str_field<'a>(v: &'a Value, name: &str) -> &'a str {
    field(v, name).and_then(Value::as_str).unwrap_or_default()
}

/// A list field, or an empty list when absent.
pub(crate) fn list<'a>(v: &'a Value, name: &str) -> &'a [Value] {
    field(v, name)
        .and_then(Value::as_array)
        .map(Vec::as_slice)
        .unwrap_or_default()
}

/// A numeric field (proto3 JSON may write 64-bit numbers as strings), or 0 when absent.
pub(crate) fn u64_field(v: &Value, name: &str) -> u64 {
    match field(v, name) {
        Some(Value::Number(n)) => n.as_u64().unwrap_or_default(),
        Some(Value::String(s)) => s.parse().unwrap_or_default(),
        _ => 0,
    }
}

/// A boolean field, or false when absent.
pub(crate) fn bool_field(v: &Value, name: &str) -> bool {
    field(v, name).and_then(Value::as_bool).unwrap_or_default()
}

/// The value at a path of snake_case field names.
pub(crate) fn path<'a>(v: &'a Value, names: &[&str]) -> Option<&'a Value> {
    names.iter().try_fold(v, |v, name| field(v, name))
}

/// A string at a path of field names, or `""`.
pub(crate) fn path_str<'a>(v: &'a Value, names: &[&str]) -> &'a str {
    path(v, names).and_then(Value::as_str).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn fields_are_found_by_proto_or_json_name() {
        let envoy = json!({"route_config_name": "9080", "port_value": 80});
        let protojson = json!({"routeConfigName": "9080", "portValue": "80"});
        for v in [&envoy, &protojson] {
            assert_eq!(str_field(v, "route_config_name"), "9080");
            assert_eq!(u64_field(v, "port_value"), 80);
        }
        assert_eq!(str_field(&envoy, "missing"), "");
    }

    #[test]
    fn sections_are_found_by_type_and_resources_by_path() {
        let dump = Dump::from_value(
            json!({"configs": [{
                "@type": "type.googleapis.com/envoy.admin.v3.ListenersConfigDump",
                "static_listeners": [{"listener": {"name": "s"}}],
                "dynamic_listeners": [
                    {"name": "warming", "warming_state": {"listener": {"name": "w"}}},
                    {"name": "a", "active_state": {"listener": {"name": "a"}}}
                ]
            }]}),
            "dump.json",
        )
        .unwrap();
        let names: Vec<&str> = dump
            .resources(
                Section::Listeners,
                &[
                    ("dynamic_listeners", &["active_state", "listener"]),
                    ("static_listeners", &["listener"]),
                ],
            )
            .into_iter()
            .map(|l| str_field(l, "name"))
            .collect();
        assert_eq!(names, ["a", "s"]);
        assert!(
            dump.resources(Section::Clusters, &[("static_clusters", &["cluster"])])
                .is_empty()
        );
        assert_eq!(
            dump.require(Section::Routes).unwrap_err().to_string(),
            "dump.json: config dump has no RoutesConfigDump section"
        );
    }

    #[test]
    fn a_document_without_configs_is_not_a_dump() {
        let err = Dump::parse("{\"cluster_statuses\": []}", "x.json").unwrap_err();
        assert_eq!(
            err.to_string(),
            "x.json: not an Envoy config dump (no \"configs\" list)"
        );
        let err = Dump::parse("{", "x.json").unwrap_err();
        assert!(format!("{err:#}").starts_with("x.json: not a JSON config dump: EOF"));
    }
}
