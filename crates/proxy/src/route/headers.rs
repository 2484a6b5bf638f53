//! Header mutations (`*_headers_to_add`, `*_headers_to_remove`) of a route configuration,
//! virtual host, route or weighted cluster, as Envoy's `HeaderParser` applies them.

use http::{HeaderMap, HeaderName, HeaderValue};
use mizzen_xds::pb::envoy::config::core::v3::HeaderValueOption;
use mizzen_xds::pb::envoy::config::core::v3::header_value_option::HeaderAppendAction;
use mizzen_xds::pb::envoy::config::route::v3::{
    Route, RouteConfiguration, VirtualHost, weighted_cluster::ClusterWeight,
};

use super::error::{Invalid, Problem, Within};
use super::format;

/// The request and response header mutations of one level: route configuration, virtual
/// host, route or weighted cluster.
#[derive(Debug, Default)]
pub(crate) struct HeaderMutations {
    pub(crate) request: HeaderOps,
    pub(crate) response: HeaderOps,
}

impl HeaderMutations {
    /// Compiles the four header mutation fields of `level`.
    pub(crate) fn compile(level: &impl MutatesHeaders) -> Result<HeaderMutations, Invalid> {
        let (add, remove) = level.request_headers();
        let request = HeaderOps::compile("request", add, remove)?;
        let (add, remove) = level.response_headers();
        let response = HeaderOps::compile("response", add, remove)?;
        Ok(HeaderMutations { request, response })
    }
}

/// A config message with `{request,response}_headers_to_{add,remove}`.
pub(crate) trait MutatesHeaders {
    /// `request_headers_to_add` and `request_headers_to_remove`.
    fn request_headers(&self) -> (&[HeaderValueOption], &[String]);
    /// `response_headers_to_add` and `response_headers_to_remove`.
    fn response_headers(&self) -> (&[HeaderValueOption], &[String]);
}

macro_rules! mutates_headers {
    ($($level:ty),*) => {$(
        impl MutatesHeaders for $level {
            fn request_headers(&self) -> (&[HeaderValueOption], &[String]) {
                (&self.request_headers_to_add, &self.request_headers_to_remove)
            }
            fn response_headers(&self) -> (&[HeaderValueOption], &[String]) {
                (&self.response_headers_to_add, &self.response_headers_to_remove)
            }
        }
    )*};
}

mutates_headers!(RouteConfiguration, VirtualHost, Route, ClusterWeight);

/// One level's header mutations, compiled.
#[derive(Debug, Default)]
pub(crate) struct HeaderOps {
    remove: Vec<HeaderName>,
    /// Additions grouped by header, in the order each header first appears.
    add: Vec<HeaderAdds>,
}

/// The additions to one header. Overwrites come first: Envoy applies a level's overwrites
/// before its appends, whatever their order in config.
#[derive(Debug)]
struct HeaderAdds {
    name: HeaderName,
    adds: Vec<(Mode, HeaderValue)>,
}

/// How an addition treats the header's existing values (Envoy's `HeaderAppendAction`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    AppendIfExistsOrAdd,
    AddIfAbsent,
    OverwriteIfExistsOrAdd,
    OverwriteIfExists,
}

impl Mode {
    fn overwrites(self) -> bool {
        matches!(self, Mode::OverwriteIfExistsOrAdd | Mode::OverwriteIfExists)
    }
}

impl HeaderOps {
    /// Compiles one level's `{direction}_headers_to_add` and `{direction}_headers_to_remove`,
    /// `direction` being `request` or `response`.
    pub(crate) fn compile(
        direction: &str,
        add: &[HeaderValueOption],
        remove: &[String],
    ) -> Result<HeaderOps, Invalid> {
        let mut ops = HeaderOps {
            remove: remove
                .iter()
                .enumerate()
                .map(|(i, name)| {
                    modifiable(name).within(&format!("{direction}_headers_to_remove[{i}]"))
                })
                .collect::<Result<_, _>>()?,
            add: Vec::new(),
        };
        for (i, option) in add.iter().enumerate() {
            let Some((name, append, value)) =
                addition(option).within(&format!("{direction}_headers_to_add[{i}]"))?
            else {
                continue;
            };
            match ops.add.iter_mut().find(|h| h.name == name) {
                Some(h) => h.adds.push((append, value)),
                None => ops.add.push(HeaderAdds {
                    name,
                    adds: vec![(append, value)],
                }),
            }
        }
        for h in &mut ops.add {
            // Stable: overwrites keep their order among themselves, and so do appends.
            h.adds.sort_by_key(|(append, _)| !append.overwrites());
        }
        Ok(ops)
    }

    /// Applies the mutations: removals first, then additions, every `ADD_IF_ABSENT` and
    /// `OVERWRITE_IF_EXISTS` judged on the headers as they were before this level added any.
    pub(crate) fn apply(&self, headers: &mut HeaderMap) {
        for name in &self.remove {
            headers.remove(name);
        }
        for h in &self.add {
            let present = headers.contains_key(&h.name);
            for (append, value) in &h.adds {
                match append {
                    Mode::AppendIfExistsOrAdd => {
                        headers.append(&h.name, value.clone());
                    }
                    Mode::AddIfAbsent if !present => {
                        headers.append(&h.name, value.clone());
                    }
                    Mode::OverwriteIfExistsOrAdd => {
                        headers.insert(&h.name, value.clone());
                    }
                    Mode::OverwriteIfExists if present => {
                        headers.insert(&h.name, value.clone());
                    }
                    Mode::AddIfAbsent | Mode::OverwriteIfExists => {}
                }
            }
        }
    }
}

/// One `HeaderValueOption`, or `None` when Envoy would drop it: an empty value without
/// `keep_empty_value`.
fn addition(
    option: &HeaderValueOption,
) -> Result<Option<(HeaderName, Mode, HeaderValue)>, Invalid> {
    let Some(header) = &option.header else {
        return Err(Problem::Missing.at("header"));
    };
    let name = modifiable(&header.key).within("header.key")?;
    let append = append_action(option)?;
    let (field, raw) = match (header.value.is_empty(), header.raw_value.is_empty()) {
        (false, false) => {
            return Err(
                Problem::invalid("only one of value and raw_value may be set").at("header"),
            );
        }
        (true, false) => ("header.raw_value", header.raw_value.as_slice()),
        _ => ("header.value", header.value.as_bytes()),
    };
    let bytes = format::literal(raw).map_err(|p| p.at(field))?;
    if bytes.is_empty() && !option.keep_empty_value {
        return Ok(None);
    }
    let value = HeaderValue::from_bytes(&bytes).map_err(|_| {
        Problem::InvalidHeaderValue(String::from_utf8_lossy(&bytes).into_owned()).at(field)
    })?;
    Ok(Some((name, append, value)))
}

/// `append_action`, or the deprecated `append` (true: append, false: overwrite) it replaces.
fn append_action(option: &HeaderValueOption) -> Result<Mode, Invalid> {
    #[allow(deprecated)] // Envoy still honours `append`, and so must we.
    let legacy = option.append.as_ref().map(|b| b.value);
    let action = HeaderAppendAction::try_from(option.append_action).map_err(|_| {
        Problem::invalid(format!("unknown value {}", option.append_action)).at("append_action")
    })?;
    Ok(match (legacy, action) {
        (Some(_), a) if a != HeaderAppendAction::AppendIfExistsOrAdd => {
            return Err(
                Problem::invalid("append and append_action may not both be set").at("append"),
            );
        }
        (Some(true), _) => Mode::AppendIfExistsOrAdd,
        (Some(false), _) => Mode::OverwriteIfExistsOrAdd,
        (None, HeaderAppendAction::AppendIfExistsOrAdd) => Mode::AppendIfExistsOrAdd,
        (None, HeaderAppendAction::AddIfAbsent) => Mode::AddIfAbsent,
        (None, HeaderAppendAction::OverwriteIfExistsOrAdd) => Mode::OverwriteIfExistsOrAdd,
        (None, HeaderAppendAction::OverwriteIfExists) => Mode::OverwriteIfExists,
    })
}

/// A header route config may change: not a pseudo-header, not `host`.
fn modifiable(name: &str) -> Result<HeaderName, Invalid> {
    if name.starts_with(':') || name.eq_ignore_ascii_case("host") {
        return Err(Problem::ReservedHeader(name.to_owned()).at(""));
    }
    HeaderName::from_bytes(name.as_bytes())
        .map_err(|_| Problem::InvalidHeaderName(name.to_owned()).at(""))
}

#[cfg(test)]
mod tests {
    use mizzen_xds::pb::envoy::config::core::v3::HeaderValue as PbHeaderValue;
    use mizzen_xds::pb::google::protobuf::BoolValue;

    use super::*;

    fn option(key: &str, value: &str, action: HeaderAppendAction) -> HeaderValueOption {
        HeaderValueOption {
            header: Some(PbHeaderValue {
                key: key.to_owned(),
                value: value.to_owned(),
                ..PbHeaderValue::default()
            }),
            append_action: action as i32,
            ..HeaderValueOption::default()
        }
    }

    fn legacy(key: &str, value: &str, append: bool) -> HeaderValueOption {
        #[allow(deprecated)]
        HeaderValueOption {
            append: Some(BoolValue { value: append }),
            ..option(key, value, HeaderAppendAction::AppendIfExistsOrAdd)
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (k, v) in pairs {
            map.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        map
    }

    fn values<'a>(map: &'a HeaderMap, name: &str) -> Vec<&'a str> {
        map.get_all(name)
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect()
    }

    fn applied(add: &[HeaderValueOption], remove: &[&str], before: &[(&str, &str)]) -> HeaderMap {
        let remove: Vec<String> = remove.iter().map(|s| s.to_string()).collect();
        let ops = HeaderOps::compile("request", add, &remove).unwrap();
        let mut map = headers(before);
        ops.apply(&mut map);
        map
    }

    #[test]
    fn each_append_action_does_what_envoy_documents() {
        use HeaderAppendAction::*;
        let cases = [
            (AppendIfExistsOrAdd, vec!["old", "new"], vec!["new"]),
            (AddIfAbsent, vec!["old"], vec!["new"]),
            (OverwriteIfExistsOrAdd, vec!["new"], vec!["new"]),
            (OverwriteIfExists, vec!["new"], vec![]),
        ];
        for (action, when_present, when_absent) in cases {
            let add = [option("x-a", "new", action)];
            let map = applied(&add, &[], &[("x-a", "old")]);
            assert_eq!(values(&map, "x-a"), when_present, "{action:?} present");
            let map = applied(&add, &[], &[]);
            assert_eq!(values(&map, "x-a"), when_absent, "{action:?} absent");
        }
    }

    #[test]
    fn legacy_append_true_appends_and_false_overwrites() {
        let map = applied(&[legacy("x-a", "new", true)], &[], &[("x-a", "old")]);
        assert_eq!(values(&map, "x-a"), ["old", "new"]);
        let map = applied(&[legacy("x-a", "new", false)], &[], &[("x-a", "old")]);
        assert_eq!(values(&map, "x-a"), ["new"]);
    }

    #[test]
    fn legacy_append_next_to_a_non_default_append_action_is_refused() {
        #[allow(deprecated)]
        let both = HeaderValueOption {
            append: Some(BoolValue { value: true }),
            ..option("x-a", "v", HeaderAppendAction::AddIfAbsent)
        };
        let err = HeaderOps::compile("request", &[both], &[]).unwrap_err();
        assert_eq!(err.field, "request_headers_to_add[0].append");
    }

    #[test]
    fn removals_happen_before_additions() {
        let add = [option("x-a", "new", HeaderAppendAction::AddIfAbsent)];
        let map = applied(&add, &["x-a"], &[("x-a", "old")]);
        assert_eq!(values(&map, "x-a"), ["new"]);
    }

    #[test]
    fn conditions_see_the_headers_before_this_level_added_any() {
        use HeaderAppendAction::*;
        // Envoy decides ADD_IF_ABSENT and OVERWRITE_IF_EXISTS against the incoming headers.
        let add = [
            option("x-a", "set", OverwriteIfExistsOrAdd),
            option("x-a", "if-absent", AddIfAbsent),
            option("x-b", "first", AddIfAbsent),
            option("x-b", "second", AddIfAbsent),
            option("x-c", "or-add", OverwriteIfExistsOrAdd),
            option("x-c", "if-exists", OverwriteIfExists),
        ];
        let map = applied(&add, &[], &[]);
        assert_eq!(values(&map, "x-a"), ["set", "if-absent"]);
        assert_eq!(values(&map, "x-b"), ["first", "second"]);
        assert_eq!(values(&map, "x-c"), ["or-add"]);
    }

    #[test]
    fn overwrites_apply_before_appends_of_the_same_level() {
        use HeaderAppendAction::*;
        let add = [
            option("x-a", "appended", AppendIfExistsOrAdd),
            option("x-a", "set", OverwriteIfExistsOrAdd),
        ];
        let map = applied(&add, &[], &[("x-a", "old")]);
        assert_eq!(values(&map, "x-a"), ["set", "appended"]);
    }

    #[test]
    fn empty_values_are_dropped_unless_kept() {
        let add = [option(
            "x-a",
            "",
            HeaderAppendAction::OverwriteIfExistsOrAdd,
        )];
        let map = applied(&add, &[], &[("x-a", "old")]);
        assert_eq!(values(&map, "x-a"), ["old"]);
        let keep = [HeaderValueOption {
            keep_empty_value: true,
            ..add[0].clone()
        }];
        let map = applied(&keep, &[], &[("x-a", "old")]);
        assert_eq!(values(&map, "x-a"), [""]);
    }

    #[test]
    fn values_are_literal_with_percent_escapes() {
        let add = [option(
            "x-a",
            "100%%",
            HeaderAppendAction::AppendIfExistsOrAdd,
        )];
        assert_eq!(values(&applied(&add, &[], &[]), "x-a"), ["100%"]);
        let add = [option(
            "x-a",
            "%DOWNSTREAM_REMOTE_ADDRESS%",
            HeaderAppendAction::AppendIfExistsOrAdd,
        )];
        let err = HeaderOps::compile("response", &add, &[]).unwrap_err();
        assert_eq!(err.field, "response_headers_to_add[0].header.value");
        assert!(matches!(err.problem, Problem::UnsupportedOperator(_)));
    }

    #[test]
    fn header_names_are_case_insensitive() {
        let add = [option(
            "X-Version",
            "v2",
            HeaderAppendAction::AppendIfExistsOrAdd,
        )];
        assert_eq!(values(&applied(&add, &[], &[]), "x-version"), ["v2"]);
    }

    #[test]
    fn pseudo_headers_and_host_cannot_be_touched() {
        for key in [":path", ":authority", "host", "Host"] {
            let add = [option(key, "v", HeaderAppendAction::AppendIfExistsOrAdd)];
            let err = HeaderOps::compile("request", &add, &[]).unwrap_err();
            assert_eq!(err.field, "request_headers_to_add[0].header.key", "{key}");
            assert!(matches!(err.problem, Problem::ReservedHeader(_)), "{key}");
            let err = HeaderOps::compile("request", &[], &[key.to_owned()]).unwrap_err();
            assert_eq!(err.field, "request_headers_to_remove[0]", "{key}");
        }
    }

    #[test]
    fn invalid_names_and_values_are_refused() {
        let add = [option(
            "bad header",
            "v",
            HeaderAppendAction::AppendIfExistsOrAdd,
        )];
        let err = HeaderOps::compile("request", &add, &[]).unwrap_err();
        assert!(matches!(err.problem, Problem::InvalidHeaderName(_)));
        let add = [option(
            "x-a",
            "a\nb",
            HeaderAppendAction::AppendIfExistsOrAdd,
        )];
        let err = HeaderOps::compile("request", &add, &[]).unwrap_err();
        assert_eq!(err.field, "request_headers_to_add[0].header.value");
        assert!(matches!(err.problem, Problem::InvalidHeaderValue(_)));
    }
}
