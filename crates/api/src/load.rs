//! Loading objects from YAML or JSON: multi-document text, `kind: List`, files and
//! directories (recursively). Problems name the file, the document and the line.

use std::borrow::Cow;
use std::fmt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::LazyLock;

use serde::Deserialize;
use serde::de::IgnoredAny;

use crate::kind::Kind;
use crate::object::{Object, OtherObject};

/// Where an object came from.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Origin {
    /// The file, when it came from one.
    pub file: Option<Arc<Path>>,
    /// Index of the document within the file, from 0, counting non-empty documents.
    pub document: usize,
    /// The 1-based line where the document (or the problem) is.
    pub line: usize,
    /// Index within a `kind: List` document's `items`.
    pub item: Option<usize>,
}

impl Origin {
    /// This origin moved to the line of the field at `path` (as validation reports it,
    /// e.g. `spec.http[0].route`), given the text of the origin's file. Unchanged for
    /// list items and when the field cannot be found.
    pub fn at_field(&self, file_text: &str, path: &str) -> Origin {
        if self.item.is_some() || path.is_empty() || self.line == 0 {
            return self.clone();
        }
        let document: String = file_text
            .lines()
            .skip(self.line - 1)
            .take_while(|l| !is_document_marker(l))
            .collect::<Vec<_>>()
            .join("\n");
        match crate::position::field_line(&document, path) {
            Some(line) => Origin {
                line: self.line + line - 1,
                ..self.clone()
            },
            None => self.clone(),
        }
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.file {
            Some(file) => write!(f, "{}:{}", file.display(), self.line)?,
            None => write!(f, "<input>:{}", self.line)?,
        }
        write!(f, " (document {}", self.document + 1)?;
        if let Some(item) = self.item {
            write!(f, ", items[{item}]")?;
        }
        f.write_str(")")
    }
}

/// An object and where it was read from.
#[derive(Debug, Clone, PartialEq)]
pub struct Loaded {
    /// The object.
    pub object: Object,
    /// Its origin.
    pub origin: Origin,
}

/// A document or file that could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    /// The file or directory could not be read.
    #[error("{}: {source}", path.display())]
    Io {
        /// The path that failed.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A document is not a valid object.
    #[error("{origin}: {}{}{message}", object.as_deref().map(|o| format!("{o}: ")).unwrap_or_default(), if field.is_empty() { String::new() } else { format!("{field}: ") })]
    Document {
        /// Where.
        origin: Origin,
        /// `Kind namespace/name` when the document got that far.
        object: Option<String>,
        /// Path of the offending field, e.g. `spec.http[0].route`; empty for the document.
        field: String,
        /// Why, in Kubernetes' words where it has some (`Required value`, `unknown field`).
        message: String,
    },
}

/// Everything read from some input: the objects that loaded and the problems met.
#[derive(Debug, Default)]
pub struct LoadResult {
    /// Objects, in input order.
    pub objects: Vec<Loaded>,
    /// Problems, in input order.
    pub errors: Vec<LoadError>,
}

impl LoadResult {
    fn extend(&mut self, other: LoadResult) {
        self.objects.extend(other.objects);
        self.errors.extend(other.errors);
    }
}

/// Reads objects from text, files and directories.
#[derive(Debug, Clone)]
pub struct Loader {
    default_namespace: Option<String>,
    lenient: bool,
}

impl Default for Loader {
    fn default() -> Self {
        Self {
            default_namespace: Some("default".into()),
            lenient: false,
        }
    }
}

/// The start of every document: enough to know what it is.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Head {
    #[serde(default)]
    api_version: Option<String>,
    #[serde(default)]
    kind: Option<String>,
    #[serde(default)]
    metadata: Option<HeadMeta>,
    #[serde(default)]
    spec: Option<IgnoredAny>,
}

#[derive(Deserialize, Default)]
struct HeadMeta {
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    namespace: Option<String>,
}

#[derive(Deserialize)]
struct List {
    #[serde(default)]
    items: Vec<serde_json::Value>,
}

/// One document's text and where it starts.
#[derive(Clone, Copy)]
struct Chunk<'a> {
    text: &'a str,
    /// The line `text` starts at, to turn parser lines into file lines.
    first_line: usize,
    /// The document's first line of content, to report it at.
    content_line: usize,
}

impl Loader {
    /// A loader that puts objects without a namespace into `default`.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the namespace given to namespaced objects that name none (`None` leaves it unset).
    pub fn default_namespace(mut self, namespace: Option<String>) -> Self {
        self.default_namespace = namespace;
        self
    }

    /// Reads Istio objects as Istio's own file reader does (for analysis): unknown fields
    /// are dropped instead of refused, and a missing `spec` is an empty one.
    pub fn lenient(mut self, lenient: bool) -> Self {
        self.lenient = lenient;
        self
    }

    /// Loads every file or directory in `paths`.
    pub fn load_paths<P: AsRef<Path>>(&self, paths: &[P]) -> LoadResult {
        let mut result = LoadResult::default();
        for path in paths {
            result.extend(self.load_path(path.as_ref()));
        }
        result
    }

    /// Loads a file, or every `.yaml`, `.yml` and `.json` file under a directory,
    /// recursively, in name order; hidden files and directories are skipped.
    pub fn load_path(&self, path: &Path) -> LoadResult {
        let io_error = |source| LoadResult {
            errors: vec![LoadError::Io {
                path: path.to_owned(),
                source,
            }],
            ..LoadResult::default()
        };
        match std::fs::metadata(path) {
            Err(e) => io_error(e),
            Ok(meta) if meta.is_dir() => match config_files(path) {
                Ok(files) => self.load_paths(&files),
                Err(e) => io_error(e),
            },
            Ok(_) => match std::fs::read_to_string(path) {
                Ok(text) => self.load_str(&text, Some(path)),
                Err(e) => io_error(e),
            },
        }
    }

    /// Loads every document in `text` (YAML, which includes JSON); `file` names it in
    /// errors.
    pub fn load_str(&self, text: &str, file: Option<&Path>) -> LoadResult {
        let file: Option<Arc<Path>> = file.map(Arc::from);
        let mut result = LoadResult::default();
        for (document, chunk) in split_documents(text).enumerate() {
            let origin = Origin {
                file: file.clone(),
                document,
                line: chunk.content_line,
                item: None,
            };
            self.load_document(&chunk, origin, &mut result);
        }
        result
    }

    fn load_document(&self, chunk: &Chunk<'_>, origin: Origin, out: &mut LoadResult) {
        let head: Head = match serde_yaml_ng::from_str(chunk.text) {
            Ok(head) => head,
            Err(e) => {
                if let Some(text) = quote_flow_ipv6(chunk.text) {
                    return self.load_document(
                        &Chunk {
                            text: &text,
                            ..*chunk
                        },
                        origin,
                        out,
                    );
                }
                let line = e
                    .location()
                    .map_or(origin.line, |l| chunk.first_line + l.line() - 1);
                let message = if e.to_string().starts_with("invalid type") {
                    "document is not an object (expected apiVersion, kind, metadata…)".to_owned()
                } else {
                    strip_location(&e.to_string())
                };
                out.errors.push(document_error(
                    Origin { line, ..origin },
                    None,
                    String::new(),
                    message,
                ));
                return;
            }
        };
        if head.kind.as_deref() == Some("List") {
            match serde_yaml_ng::from_str::<List>(chunk.text) {
                Ok(list) => {
                    for (i, item) in list.items.into_iter().enumerate() {
                        let origin = Origin {
                            item: Some(i),
                            ..origin.clone()
                        };
                        let head = match Head::deserialize(&item) {
                            Ok(head) => head,
                            Err(_) => {
                                out.errors.push(document_error(
                                    origin,
                                    None,
                                    String::new(),
                                    "list item is not an object".into(),
                                ));
                                continue;
                            }
                        };
                        if let Some(loaded) = self.typed(&head, origin, out, |kind| {
                            parse_kind(kind, &item)
                                .map_err(|(path, e)| Failure::new(&path, &e.to_string(), None))
                        }) {
                            out.objects.push(loaded);
                        }
                    }
                }
                Err(e) => out.errors.push(document_error(
                    origin,
                    None,
                    "items".into(),
                    strip_location(&e.to_string()),
                )),
            }
            return;
        }
        let first_line = chunk.first_line;
        let lenient = self.lenient;
        let loaded = self.typed(&head, origin, out, |kind| {
            let text = match kind {
                Some(kind) if !kind.is_istio() => yaml11_octals(chunk.text),
                _ => Cow::Borrowed(chunk.text),
            };
            let strict = parse_kind(kind, serde_yaml_ng::Deserializer::from_str(&text)).map_err(
                |(path, e)| {
                    let line = e.location().map(|l| first_line + l.line() - 1);
                    Failure::new(&path, &e.to_string(), line)
                },
            );
            match strict {
                Err(failure) if lenient && failure.is_unknown_field() => {
                    parse_dropping_unknown(kind, &text).unwrap_or(Err(failure))
                }
                parsed => parsed,
            }
        });
        if let Some(loaded) = loaded {
            out.objects.push(loaded);
        }
    }

    /// Resolves the head's kind and runs `parse` for it, turning failures into errors.
    fn typed(
        &self,
        head: &Head,
        origin: Origin,
        out: &mut LoadResult,
        parse: impl FnOnce(Option<Kind>) -> Result<Object, Failure>,
    ) -> Option<Loaded> {
        let meta = head.metadata.as_ref();
        let (api_version, kind_name) = match (&head.api_version, &head.kind) {
            (Some(a), Some(k)) if !a.is_empty() && !k.is_empty() => (a, k),
            (a, _) => {
                let missing = if a.as_deref().is_none_or(str::is_empty) {
                    "apiVersion"
                } else {
                    "kind"
                };
                out.errors.push(document_error(
                    origin,
                    None,
                    missing.into(),
                    "Required value".into(),
                ));
                return None;
            }
        };
        let name = meta.and_then(|m| m.name.as_deref()).unwrap_or("");
        let label = match meta.and_then(|m| m.namespace.as_deref()) {
            Some(ns) => format!("{kind_name} {ns}/{name}"),
            None => format!("{kind_name} {name}"),
        };
        let kind = match Kind::resolve(api_version, kind_name) {
            Ok(kind) => kind,
            Err(message) => {
                out.errors.push(document_error(
                    origin,
                    Some(label),
                    "apiVersion".into(),
                    message,
                ));
                return None;
            }
        };
        if kind.is_some_and(Kind::spec_required) && head.spec.is_none() && !self.lenient {
            out.errors.push(document_error(
                origin,
                Some(label),
                "spec".into(),
                "Required value".into(),
            ));
            return None;
        }
        match parse(kind) {
            Ok(mut object) => {
                if !kind.is_some_and(Kind::cluster_scoped) {
                    let meta = object.meta_mut();
                    if meta.namespace.as_deref().is_none_or(str::is_empty) {
                        meta.namespace.clone_from(&self.default_namespace);
                    }
                }
                Some(Loaded { object, origin })
            }
            Err(Failure {
                field,
                message,
                line,
            }) => {
                let origin = Origin {
                    line: line.unwrap_or(origin.line),
                    ..origin
                };
                out.errors
                    .push(document_error(origin, Some(label), field, message));
                None
            }
        }
    }
}

fn document_error(
    origin: Origin,
    object: Option<String>,
    field: String,
    message: String,
) -> LoadError {
    LoadError::Document {
        origin,
        object,
        field,
        message,
    }
}

/// A typed deserialization that failed: the field, the reason and (maybe) the line.
struct Failure {
    field: String,
    message: String,
    line: Option<usize>,
}

impl Failure {
    fn new(path: &str, raw: &str, line: Option<usize>) -> Self {
        let (field, message) = field_and_message(path, raw);
        Self {
            field,
            message,
            line,
        }
    }
}

impl Failure {
    fn is_unknown_field(&self) -> bool {
        self.message.starts_with("unknown field")
    }
}

/// Parses `text` as `kind`, removing each unknown field the parse meets and trying
/// again, as Go's protobuf JSON decoding with unknown fields allowed reads it. `None`
/// when the text is not even a document.
fn parse_dropping_unknown(kind: Option<Kind>, text: &str) -> Option<Result<Object, Failure>> {
    let mut value: serde_json::Value = serde_yaml_ng::from_str(text).ok()?;
    loop {
        match parse_kind(kind, &value) {
            Ok(object) => return Some(Ok(object)),
            Err((path, e)) => {
                let failure = Failure::new(&path, &e.to_string(), None);
                if !failure.is_unknown_field() || !remove_field(&mut value, &failure.field) {
                    return Some(Err(failure));
                }
            }
        }
    }
}

/// Removes the field at `path` (`spec.configPatches[0].match.app`); false when absent.
fn remove_field(value: &mut serde_json::Value, path: &str) -> bool {
    let mut steps: Vec<&str> = path
        .split('.')
        .flat_map(|part| part.split('['))
        .map(|step| step.trim_end_matches(']'))
        .filter(|step| !step.is_empty())
        .collect();
    let Some(last) = steps.pop() else {
        return false;
    };
    let mut at = value;
    for step in steps {
        let next = match at {
            serde_json::Value::Array(items) => {
                step.parse::<usize>().ok().and_then(|i| items.get_mut(i))
            }
            serde_json::Value::Object(map) => map.get_mut(step),
            _ => None,
        };
        match next {
            Some(next) => at = next,
            None => return false,
        }
    }
    at.as_object_mut()
        .and_then(|map| map.remove(last))
        .is_some()
}

/// Deserializes an object of `kind` (or an opaque one) from `de`, tracking the field path.
fn parse_kind<'de, D: serde::Deserializer<'de>>(
    kind: Option<Kind>,
    de: D,
) -> Result<Object, (String, D::Error)> {
    let mut track = serde_path_to_error::Track::new();
    let de = serde_path_to_error::Deserializer::new(de, &mut track);
    let parsed = match kind {
        Some(kind) => Object::deserialize_kind(kind, de),
        None => OtherObject::deserialize(de).map(Object::Other),
    };
    parsed.map_err(|e| (track.path().to_string(), e))
}

/// Rewrites serde's wording into Kubernetes' (`missing field` → `Required value`).
fn field_and_message(path: &str, raw: &str) -> (String, String) {
    let path = if path == "." { "" } else { path };
    let raw = strip_location(raw);
    // serde_yaml already prefixes some messages with the path it was at (which may be
    // the parent of ours, for unknown fields).
    let raw = match raw.split_once(": ") {
        Some((head, rest)) if !head.is_empty() && path.starts_with(head) => rest.to_owned(),
        _ => raw,
    };
    let join = |field: &str| {
        if path.is_empty() {
            field.to_owned()
        } else if path.ends_with(&format!(".{field}")) || path == field {
            path.to_owned()
        } else {
            format!("{path}.{field}")
        }
    };
    if let Some(field) = backticked(&raw, "missing field `") {
        return (join(field), "Required value".into());
    }
    if let Some(field) = backticked(&raw, "unknown field `") {
        let message = match closest(field, expected_fields(&raw)) {
            Some(near) => format!("unknown field {field:?} (did you mean {near:?}?)"),
            None => format!("unknown field {field:?}"),
        };
        return (join(field), message);
    }
    (path.to_owned(), raw)
}

/// The field names serde lists after `expected one of`.
fn expected_fields(raw: &str) -> impl Iterator<Item = &str> {
    raw.split_once("expected one of ")
        .map_or("", |(_, list)| list)
        .split(", ")
        .map(|f| f.trim_matches('`'))
        .filter(|f| !f.is_empty())
}

/// The candidate closest to `word` by edit distance, if it is close enough to be a typo.
fn closest<'a>(word: &str, candidates: impl Iterator<Item = &'a str>) -> Option<&'a str> {
    let limit = (word.len() / 3).max(1);
    candidates
        .map(|c| {
            (
                edit_distance(&word.to_ascii_lowercase(), &c.to_ascii_lowercase()),
                c,
            )
        })
        .filter(|(d, _)| *d <= limit)
        .min_by_key(|(d, _)| *d)
        .map(|(_, c)| c)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut row: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut diagonal = row[0];
        row[0] = i + 1;
        for (j, cb) in b.iter().enumerate() {
            let above = row[j + 1];
            row[j + 1] = (diagonal + usize::from(ca != *cb))
                .min(row[j] + 1)
                .min(above + 1);
            diagonal = above;
        }
    }
    row[b.len()]
}

fn backticked<'a>(raw: &'a str, prefix: &str) -> Option<&'a str> {
    raw.strip_prefix(prefix)?.split('`').next()
}

/// Drops serde_yaml's ` at line L column C` suffix: the origin already says where.
fn strip_location(message: &str) -> String {
    match message.find(" at line ") {
        Some(i) => message[..i].to_owned(),
        None => message.to_owned(),
    }
}

/// True for a line that starts or ends a YAML document (`---`, `--- …`, `...`).
fn is_document_marker(line: &str) -> bool {
    line == "---" || line.starts_with("--- ") || line.starts_with("---\t") || line == "..."
}

/// Splits multi-document YAML at `---` lines, dropping documents with no content.
fn split_documents(text: &str) -> impl Iterator<Item = Chunk<'_>> {
    let mut chunks = Vec::new();
    let mut start = 0;
    let mut first_line = 1;
    let mut offset = 0;
    for (i, line) in text.split_inclusive('\n').enumerate() {
        if is_document_marker(line.trim_end_matches(['\n', '\r'])) {
            chunks.push(Chunk {
                text: &text[start..offset],
                first_line,
                content_line: first_line,
            });
            start = offset + line.len();
            first_line = i + 2;
        }
        offset += line.len();
    }
    chunks.push(Chunk {
        text: &text[start..],
        first_line,
        content_line: first_line,
    });
    chunks.into_iter().filter_map(|chunk| {
        // Report the document at its first line of content, not at a leading comment.
        (chunk.first_line..)
            .zip(chunk.text.lines())
            .find(|(_, l)| {
                let t = l.trim();
                !t.is_empty() && !t.starts_with('#')
            })
            .map(|(content_line, _)| Chunk {
                content_line,
                ..chunk
            })
    })
}

/// Rewrites plain YAML 1.1 octal integers (`defaultMode: 0400`) to decimal.
///
/// Kubernetes reads manifests as YAML 1.1, where a leading zero means octal; the YAML
/// parser here follows 1.2 and would read such a value as a string. Line numbers are kept.
fn yaml11_octals(text: &str) -> Cow<'_, str> {
    static OCTAL: LazyLock<regex::Regex> = LazyLock::new(|| {
        regex::Regex::new(r"(?m)^(\s*(?:-\s+)?[A-Za-z0-9_.-]+:[ \t]+)0([0-7]+)([ \t]*(?:#.*)?)$")
            .expect("static regex")
    });
    OCTAL.replace_all(text, |c: &regex::Captures<'_>| {
        let value = u64::from_str_radix(&c[2], 8).expect("octal digits");
        format!("{}{value}{}", &c[1], &c[3])
    })
}

/// Quotes IPv6 addresses written plain inside one-line flow sequences
/// (`addresses: [1.2.3.4, 2001:db8::]`), which Go's YAML reader (and so Kubernetes)
/// accepts but a strict YAML parser refuses. Returns `None` when nothing changes; only
/// used to retry a document that failed to parse.
fn quote_flow_ipv6(text: &str) -> Option<String> {
    static FLOW: LazyLock<regex::Regex> =
        LazyLock::new(|| regex::Regex::new(r"\[([^\[\]\n]*)\]").expect("static regex"));
    let looks_ipv6 = |item: &str| {
        item.contains(':')
            && item
                .bytes()
                .all(|b| b.is_ascii_hexdigit() || matches!(b, b':' | b'.' | b'/'))
    };
    let fixed = FLOW.replace_all(text, |c: &regex::Captures<'_>| {
        let items: Vec<String> = c[1]
            .split(',')
            .map(|item| {
                let bare = item.trim();
                if looks_ipv6(bare) {
                    item.replace(bare, &format!("\"{bare}\""))
                } else {
                    item.to_owned()
                }
            })
            .collect();
        format!("[{}]", items.join(","))
    });
    (fixed != text).then(|| fixed.into_owned())
}

/// Every config file under `dir`, recursively, sorted by path; hidden entries skipped.
fn config_files(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let mut files = Vec::new();
    let mut pending = vec![dir.to_owned()];
    while let Some(dir) = pending.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            let hidden = path
                .file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with('.'));
            if hidden {
                continue;
            }
            if path.is_dir() {
                pending.push(path);
            } else if is_config_file(&path) {
                files.push(path);
            }
        }
    }
    files.sort();
    Ok(files)
}

/// True for the file extensions config is read from: `.yaml`, `.yml`, `.json`.
pub fn is_config_file(path: &Path) -> bool {
    matches!(
        path.extension().and_then(|e| e.to_str()),
        Some("yaml" | "yml" | "json")
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn messages(result: &LoadResult) -> Vec<String> {
        result.errors.iter().map(ToString::to_string).collect()
    }

    const SERVICE: &str = "apiVersion: v1\nkind: Service\nmetadata:\n  name: reviews\nspec:\n  ports:\n  - port: 9080\n";

    #[test]
    fn multi_document_yaml_with_comments_and_empty_documents() {
        let text =
            format!("# leading comment\n---\n{SERVICE}---\n# only a comment\n---\n{SERVICE}...\n");
        let result = Loader::new().load_str(&text, Some(Path::new("a.yaml")));
        assert!(result.errors.is_empty(), "{:?}", messages(&result));
        assert_eq!(result.objects.len(), 2);
        let origins: Vec<(usize, usize)> = result
            .objects
            .iter()
            .map(|o| (o.origin.document, o.origin.line))
            .collect();
        assert_eq!(origins, [(0, 3), (1, 13)]);
        assert_eq!(
            result.objects[0].object.meta().namespace.as_deref(),
            Some("default")
        );
    }

    #[test]
    fn kind_list_and_json() {
        let json = r#"{"apiVersion":"v1","kind":"List","items":[
            {"apiVersion":"v1","kind":"Namespace","metadata":{"name":"shop"}},
            {"apiVersion":"v1","kind":"ServiceAccount","metadata":{"name":"bookinfo-reviews","namespace":"shop"}},
            {"apiVersion":"networking.istio.io/v9","kind":"Sidecar","metadata":{"name":"x"}}
        ]}"#;
        let result = Loader::new().load_str(json, Some(Path::new("list.json")));
        assert_eq!(result.objects.len(), 2);
        let ns = &result.objects[0].object;
        assert_eq!(ns.kind(), Some(Kind::Namespace));
        assert_eq!(
            ns.meta().namespace,
            None,
            "cluster-scoped kinds get no namespace"
        );
        assert_eq!(result.objects[1].origin.item, Some(1));
        let errors = messages(&result);
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0].starts_with("list.json:1 (document 1, items[2]): Sidecar x: apiVersion: "),
            "{}",
            errors[0]
        );
        assert!(errors[0].contains(
            "networking.istio.io/v1, networking.istio.io/v1beta1, networking.istio.io/v1alpha3"
        ));
    }

    #[test]
    fn errors_name_file_document_line_and_field() {
        let text = format!(
            "{SERVICE}---\napiVersion: networking.istio.io/v1\nkind: Sidecar\nmetadata:\n  name: s\nspek: {{}}\n---\nkind: Service\n---\n- a\n- b\n---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: se\n"
        );
        let result = Loader::new().load_str(&text, Some(Path::new("bad.yaml")));
        assert_eq!(result.objects.len(), 1);
        assert_eq!(
            messages(&result),
            [
                "bad.yaml:13 (document 2): Sidecar s: spek: unknown field \"spek\" (did you mean \"spec\"?)",
                "bad.yaml:15 (document 3): apiVersion: Required value",
                "bad.yaml:17 (document 4): document is not an object (expected apiVersion, kind, metadata…)",
                "bad.yaml:20 (document 5): ServiceEntry se: spec: Required value",
            ]
        );
    }

    #[test]
    fn unknown_nested_fields_name_their_path_once() {
        let text = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: r\nspec:\n  http:\n  - websocketUpgrade: true\n";
        let errors = messages(&Loader::new().load_str(text, None));
        assert_eq!(
            errors,
            [
                "<input>:7 (document 1): VirtualService r: spec.http[0].websocketUpgrade: unknown field \"websocketUpgrade\""
            ]
        );
    }

    #[test]
    fn unknown_fields_suggest_the_closest_known_one() {
        let text = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: r\nspec:\n  hots: [r]\n";
        let errors = messages(&Loader::new().load_str(text, None));
        assert!(
            errors[0].ends_with("spec.hots: unknown field \"hots\" (did you mean \"hosts\"?)"),
            "{errors:?}"
        );
        assert_eq!(edit_distance("kitten", "sitting"), 3);
        assert_eq!(closest("zzzz", ["hosts", "http"].into_iter()), None);
    }

    #[test]
    fn wrong_types_are_reported_at_their_field() {
        let text = "apiVersion: v1\nkind: Service\nmetadata:\n  name: r\nspec:\n  ports:\n  - port: many\n";
        let result = Loader::new().load_str(text, None);
        let errors = messages(&result);
        assert_eq!(errors.len(), 1);
        assert!(
            errors[0]
                .starts_with("<input>:7 (document 1): Service r: spec.ports[0].port: invalid type"),
            "{}",
            errors[0]
        );
    }

    #[test]
    fn kubernetes_manifests_read_yaml_1_1_octals() {
        let text = "apiVersion: v1\nkind: Secret\nmetadata:\n  name: s\n---\napiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: d\nspec:\n  selector: {}\n  template:\n    spec:\n      containers: []\n      volumes:\n      - name: v\n        secret:\n          defaultMode: 0400 # r--\n";
        let result = Loader::new().load_str(text, None);
        assert!(result.errors.is_empty(), "{:?}", messages(&result));
        let Object::Deployment(d) = &result.objects[1].object else {
            panic!()
        };
        let volumes = d
            .spec
            .template
            .spec
            .as_ref()
            .unwrap()
            .volumes
            .as_ref()
            .unwrap();
        assert_eq!(
            volumes[0].secret.as_ref().unwrap().default_mode,
            Some(0o400)
        );
    }

    #[test]
    fn ipv6_in_flow_sequences_reads_as_go_reads_it() {
        let text = "apiVersion: v1\nkind: Service\nmetadata:\n  name: s\nspec:\n  clusterIPs: [1.2.3.4, 2001:db8::]\n";
        let result = Loader::new().load_str(text, None);
        assert!(result.errors.is_empty(), "{:?}", messages(&result));
        let Object::Service(s) = &result.objects[0].object else {
            panic!()
        };
        assert_eq!(
            s.spec.as_ref().unwrap().cluster_ips.as_deref().unwrap(),
            ["1.2.3.4", "2001:db8::"]
        );
    }

    #[test]
    fn origins_move_to_the_line_of_a_field() {
        let text = format!("{SERVICE}---\n{SERVICE}");
        let result = Loader::new().load_str(&text, Some(Path::new("a.yaml")));
        let second = &result.objects[1].origin;
        assert_eq!(second.line, 9);
        assert_eq!(second.at_field(&text, "spec.ports[0].port").line, 15);
        assert_eq!(
            second.at_field(&text, "spec.nothing").line,
            13,
            "the parent when absent"
        );
        assert_eq!(second.at_field(&text, "").line, 9);
    }

    #[test]
    fn lenient_loading_drops_unknown_fields_as_istio_reads_files() {
        let text = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: r\nspec:\n  hosts: [r]\n  http:\n  - bogus: 1\n    route:\n    - destination: {host: r, extra: 2}\n---\napiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata:\n  name: se\n";
        let result = Loader::new().lenient(true).load_str(text, None);
        assert!(result.errors.is_empty(), "{:?}", messages(&result));
        let Object::VirtualService(vs) = &result.objects[0].object else {
            panic!()
        };
        assert_eq!(vs.spec.http[0].route[0].destination.host, "r");
        assert_eq!(result.objects.len(), 2);
        assert_eq!(Loader::new().load_str(text, None).errors.len(), 2);
    }

    #[test]
    fn opaque_kinds_load_untouched_and_round_trip() {
        let text = "apiVersion: gateway.networking.k8s.io/v1\nkind: HTTPRoute\nmetadata:\n  name: r\nspec:\n  parentRefs:\n  - name: gw\n";
        let result = Loader::new().load_str(text, None);
        let object = &result.objects[0].object;
        assert!(matches!(object, Object::Other(o) if o.rest.contains_key("spec")));
        let again = Loader::new().load_str(&serde_yaml_ng::to_string(object).unwrap(), None);
        assert_eq!(&again.objects[0].object, object);
    }

    #[test]
    fn directories_are_read_recursively_in_order_skipping_hidden_and_other_files() {
        let dir = tempfile::tempdir().unwrap();
        let write = |rel: &str, body: &str| {
            let path = dir.path().join(rel);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, body).unwrap();
        };
        let named = |name: &str| SERVICE.replace("reviews", name);
        write("b.yaml", &named("b"));
        write("nested/deeper/a.yml", &named("a"));
        write(
            "c.json",
            r#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"c"}}"#,
        );
        write(".hidden.yaml", &named("hidden"));
        write(".git/x.yaml", &named("git"));
        write("notes.txt", "not config");
        let result = Loader::new().load_path(dir.path());
        assert!(result.errors.is_empty());
        let names: Vec<String> = result.objects.iter().map(|o| o.object.key().name).collect();
        assert_eq!(names, ["b", "c", "a"]);
        let missing = Loader::new().load_path(&dir.path().join("nope"));
        assert!(matches!(missing.errors[0], LoadError::Io { .. }));
    }
}
