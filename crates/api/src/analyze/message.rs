//! Analysis messages: a type from the catalogue, the object it is about (and where that
//! object was written), and the arguments its template is rendered with.

use std::fmt;
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

use crate::object::ObjectKey;

/// Where Istio documents each message code.
pub const ANALYSIS_DOCS: &str = "https://istio.io/latest/docs/reference/config/analysis";

/// How serious a message is, least serious first (so thresholds compare with `>=`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Level {
    /// Worth knowing; nothing is wrong.
    Info,
    /// Probably not what the author meant.
    Warning,
    /// The configuration does not do what it says.
    Error,
}

impl Level {
    /// The level's name as istioctl prints it.
    pub const fn as_str(self) -> &'static str {
        match self {
            Level::Info => "Info",
            Level::Warning => "Warning",
            Level::Error => "Error",
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Level {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Level {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let name = String::deserialize(deserializer)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

/// A level name that is none of `Info`, `Warning`, `Error`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0:?} is not a level; use one of Info, Warning, Error")]
pub struct UnknownLevel(pub String);

impl FromStr for Level {
    type Err = UnknownLevel;

    /// Parses a level case-insensitively, as istioctl's `--failure-threshold` does.
    fn from_str(s: &str) -> Result<Self, UnknownLevel> {
        match s.to_ascii_lowercase().as_str() {
            "info" => Ok(Level::Info),
            "warning" | "warn" => Ok(Level::Warning),
            "error" => Ok(Level::Error),
            _ => Err(UnknownLevel(s.to_owned())),
        }
    }
}

/// One entry of the catalogue.
#[derive(Debug, PartialEq, Eq, Hash)]
pub struct MessageType {
    /// The type's name, e.g. `ReferencedResourceNotFound`.
    pub name: &'static str,
    /// The code, e.g. `IST0101`.
    pub code: &'static str,
    /// Its level.
    pub level: Level,
    /// What it means.
    pub description: &'static str,
    /// A Go format string (`%s`, `%v`, `%d`, `%q`) taking [`MessageType::args`] in order.
    pub template: &'static str,
    /// The names of the template's arguments.
    pub args: &'static [&'static str],
}

impl MessageType {
    /// The template rendered with `args`, as Go's `fmt.Sprintf` would.
    pub fn render(&self, args: &[String]) -> String {
        let mut out = String::with_capacity(self.template.len() + 32);
        let mut args = args.iter();
        let mut chars = self.template.chars();
        while let Some(c) = chars.next() {
            if c != '%' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some('%') => out.push('%'),
                Some(verb) => match (verb, args.next()) {
                    ('q', Some(arg)) => out.push_str(&go_quote(arg)),
                    (_, Some(arg)) => out.push_str(arg),
                    (_, None) => {
                        out.push_str("%!");
                        out.push(verb);
                        out.push_str("(MISSING)");
                    }
                },
                None => out.push_str("%!(NOVERB)"),
            }
        }
        out
    }
}

/// `s` in double quotes with Go's escapes (`strconv.Quote`).
fn go_quote(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The object a message is about, and where it was written.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Subject {
    /// Kind, namespace and name.
    pub key: ObjectKey,
    /// The file it came from, if any.
    pub file: Option<Arc<Path>>,
    /// The 1-based line the message points at (the field's, else the document's).
    pub line: Option<usize>,
}

impl Subject {
    /// `file:line` when the object came from a file.
    pub fn reference(&self) -> Option<String> {
        let file = self.file.as_ref()?;
        Some(match self.line {
            Some(line) => format!("{}:{line}", file.display()),
            None => file.display().to_string(),
        })
    }
}

/// One finding.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Message {
    /// What kind of finding.
    pub ty: &'static MessageType,
    /// The object it is about; `None` for findings about the mesh as a whole.
    pub subject: Option<Subject>,
    /// The template's arguments.
    pub args: Vec<String>,
}

impl Message {
    /// The message's level.
    pub fn level(&self) -> Level {
        self.ty.level
    }

    /// The text, rendered from the type's template.
    pub fn text(&self) -> String {
        self.ty.render(&self.args)
    }

    /// `Kind [namespace/]name` of the subject, as istioctl names it.
    pub fn origin(&self) -> Option<String> {
        self.subject.as_ref().map(|s| s.key.to_string())
    }
}

impl fmt::Display for Message {
    /// istioctl's log line: `Error [IST0101] (VirtualService ns/name file:12) text`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let subject = self.subject.as_ref();
        log_line(
            f,
            self.ty.level,
            self.ty.code,
            subject.map(|s| &s.key as &dyn fmt::Display),
            subject.and_then(Subject::reference).as_deref(),
            &self.text(),
        )
    }
}

/// A message as `istioctl analyze -o json` prints it, rendered to plain strings so that
/// it crosses processes: pilot serves these, `mizzen get` reads them.
///
/// The fields are in alphabetical order, the order in which Go's JSON encoder writes
/// istioctl's map, so that both print alike.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Finding {
    /// The code (`IST0101`).
    pub code: String,
    /// Where Istio documents the code.
    pub documentation_url: String,
    /// How serious it is.
    pub level: Level,
    /// What is wrong.
    pub message: String,
    /// The object it is about (`VirtualService default/reviews`), unless mesh-wide.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub origin: Option<String>,
    /// `file:line` when the object came from a file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reference: Option<String>,
}

impl From<&Message> for Finding {
    fn from(message: &Message) -> Finding {
        Finding {
            code: message.ty.code.to_owned(),
            documentation_url: format!(
                "{ANALYSIS_DOCS}/{}/?ref=mizzen-analyze",
                message.ty.code.to_ascii_lowercase()
            ),
            level: message.level(),
            message: message.text(),
            origin: message.origin(),
            reference: message.subject.as_ref().and_then(Subject::reference),
        }
    }
}

impl fmt::Display for Finding {
    /// istioctl's log line, as [`Message`] prints it.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        log_line(
            f,
            self.level,
            &self.code,
            self.origin.as_ref().map(|o| o as &dyn fmt::Display),
            self.reference.as_deref(),
            &self.message,
        )
    }
}

/// `Level [CODE] (origin reference) text`, the parenthesis only with an origin.
fn log_line(
    f: &mut fmt::Formatter<'_>,
    level: Level,
    code: &str,
    origin: Option<&dyn fmt::Display>,
    reference: Option<&str>,
    text: &str,
) -> fmt::Result {
    write!(f, "{level} [{code}]")?;
    if let Some(origin) = origin {
        write!(f, " ({origin}")?;
        if let Some(reference) = reference {
            write!(f, " {reference}")?;
        }
        f.write_str(")")?;
    }
    write!(f, " {text}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::analyze::catalogue;

    #[test]
    fn templates_render_as_go_sprintf() {
        let m = catalogue::REFERENCED_RESOURCE_NOT_FOUND;
        assert_eq!(
            m.render(&["host".into(), "re\"views2".into()]),
            r#"Referenced host not found: "re\"views2""#
        );
        assert_eq!(
            m.render(&["host".into()]),
            "Referenced host not found: %!q(MISSING)"
        );
    }

    #[test]
    fn log_lines_name_object_file_and_line() {
        let message = Message {
            ty: catalogue::REFERENCED_RESOURCE_NOT_FOUND,
            subject: Some(Subject {
                key: ObjectKey {
                    kind: "VirtualService".into(),
                    namespace: "default".into(),
                    name: "reviews".into(),
                },
                file: Some(Arc::from(Path::new("testdata/x.yaml"))),
                line: Some(12),
            }),
            args: vec!["host".into(), "reviews2".into()],
        };
        assert_eq!(
            message.to_string(),
            r#"Error [IST0101] (VirtualService default/reviews testdata/x.yaml:12) Referenced host not found: "reviews2""#
        );
        let finding = Finding::from(&message);
        assert_eq!(finding.to_string(), message.to_string());
        let json = serde_json::to_string(&finding).unwrap();
        assert_eq!(
            json,
            r#"{"code":"IST0101","documentationUrl":"https://istio.io/latest/docs/reference/config/analysis/ist0101/?ref=mizzen-analyze","level":"Error","message":"Referenced host not found: \"reviews2\"","origin":"VirtualService default/reviews","reference":"testdata/x.yaml:12"}"#
        );
        assert_eq!(serde_json::from_str::<Finding>(&json).unwrap(), finding);
        assert_eq!("ERROR".parse::<Level>(), Ok(Level::Error));
        assert!(Level::Warning > Level::Info && "x".parse::<Level>().is_err());
    }
}
