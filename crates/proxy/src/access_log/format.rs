//! Envoy's access log formats: format strings of command operators (`%REQ(:METHOD)%`,
//! `%RESPONSE_CODE%`, …) and JSON dictionaries of them, compiled once into templates
//! that print a [`Record`].

use std::fmt::Write as _;

use http::{HeaderName, Version};
use mizzen_xds::pb::envoy::config::core::v3::{
    SubstitutionFormatString, data_source, substitution_format_string,
};
use mizzen_xds::pb::google::protobuf::{Struct, Value, value};

use super::decimal;
use super::record::{Headers, Record};
use super::time::TimeFormat;

/// Envoy's default access log format.
pub const DEFAULT_FORMAT: &str = "[%START_TIME%] \"%REQ(:METHOD)% %REQ(X-ENVOY-ORIGINAL-PATH?:PATH)% %PROTOCOL%\" %RESPONSE_CODE% %RESPONSE_FLAGS% %BYTES_RECEIVED% %BYTES_SENT% %DURATION% %RESP(X-ENVOY-UPSTREAM-SERVICE-TIME)% \"%REQ(X-FORWARDED-FOR)%\" \"%REQ(USER-AGENT)%\" \"%REQ(X-REQUEST-ID)%\" \"%REQ(:AUTHORITY)%\" \"%UPSTREAM_HOST%\"\n";

/// A compiled access log format.
#[derive(Debug, Clone)]
pub struct Format {
    body: Body,
    /// `omit_empty_values`: missing values print as nothing (text) or not at all (JSON).
    omit_empty: bool,
}

#[derive(Debug, Clone)]
enum Body {
    Text(Template),
    Json(Object),
}

/// A format string: literal text and command operators.
#[derive(Debug, Clone)]
struct Template(Vec<Part>);

#[derive(Debug, Clone)]
enum Part {
    Literal(String),
    Operator(Operator),
}

/// A JSON dictionary: keys in order, each a template or a literal JSON value.
#[derive(Debug, Clone)]
struct Object(Vec<(String, Entry)>);

#[derive(Debug, Clone)]
enum Entry {
    Template(Template),
    /// A number, boolean or null, already in JSON.
    Literal(String),
    Object(Object),
}

/// One command operator.
#[derive(Debug, Clone)]
enum Operator {
    StartTime(TimeFormat),
    Request(HeaderOp),
    Response(HeaderOp),
    ResponseCode,
    ResponseFlags,
    ResponseCodeDetails,
    BytesReceived,
    BytesSent,
    Duration,
    UpstreamHost,
    UpstreamCluster,
    RouteName,
    Protocol,
    DownstreamLocal {
        port: bool,
    },
    DownstreamRemote {
        port: bool,
    },
    Hostname(String),
    /// Operators Envoy knows that this proxy has no value for (`%UPSTREAM_LOCAL_ADDRESS%`,
    /// `%REQUESTED_SERVER_NAME%` on plain text, …): always missing.
    Unknown,
}

/// `%REQ(X?Y):Z%`: a header, a fallback header, a length limit.
#[derive(Debug, Clone)]
struct HeaderOp {
    header: Lookup,
    fallback: Option<Lookup>,
    max_len: Option<usize>,
}

#[derive(Debug, Clone, Copy)]
enum Lookup {
    Method,
    Path,
    /// `:authority`, with the slot of `host`.
    Authority(usize),
    Slot(usize),
}

/// What an operator printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Printed {
    Missing,
    Number,
    Text,
}

impl Format {
    /// Envoy's default text format.
    pub fn envoy_default(headers: &mut Headers) -> Format {
        Format {
            body: Body::Text(Template::parse(DEFAULT_FORMAT, headers).expect("the default parses")),
            omit_empty: false,
        }
    }

    /// A text format string.
    pub fn text(format: &str, headers: &mut Headers) -> Result<Format, String> {
        Ok(Format {
            body: Body::Text(Template::parse(format, headers)?),
            omit_empty: false,
        })
    }

    /// A JSON dictionary format.
    pub fn json(dictionary: &Struct, headers: &mut Headers) -> Result<Format, String> {
        Ok(Format {
            body: Body::Json(Object::compile(dictionary, headers)?),
            omit_empty: false,
        })
    }

    /// A `SubstitutionFormatString` (an access logger's `log_format`).
    pub fn compile(
        config: &SubstitutionFormatString,
        headers: &mut Headers,
    ) -> Result<Format, String> {
        use substitution_format_string::Format as F;
        if let Some(f) = config.formatters.first() {
            return Err(format!(
                "formatters: extension {:?} is not supported",
                f.name
            ));
        }
        #[expect(deprecated, reason = "Istio still sends text_format")]
        let mut format = match &config.format {
            Some(F::TextFormat(text)) => Format::text(text, headers),
            Some(F::TextFormatSource(source)) => match &source.specifier {
                Some(data_source::Specifier::InlineString(text)) => Format::text(text, headers),
                Some(data_source::Specifier::InlineBytes(bytes)) => {
                    Format::text(&String::from_utf8_lossy(bytes), headers)
                }
                _ => Err(
                    "text_format_source: only inline_string and inline_bytes are supported".into(),
                ),
            },
            Some(F::JsonFormat(dictionary)) => Format::json(dictionary, headers),
            None => Ok(Format::envoy_default(headers)),
        }?;
        format.omit_empty = config.omit_empty_values;
        Ok(format)
    }

    /// Appends the line for `record` to `out`.
    pub fn write(&self, record: &Record, out: &mut String) {
        match &self.body {
            Body::Text(template) => template.write_text(record, self.omit_empty, out),
            Body::Json(object) => {
                object.write(record, self.omit_empty, out);
                out.push('\n');
            }
        }
    }
}

impl Template {
    /// Parses a format string; names the operator it does not know.
    fn parse(format: &str, headers: &mut Headers) -> Result<Template, String> {
        let mut parts = Vec::new();
        let mut literal = String::new();
        let mut rest = format;
        while let Some(at) = rest.find('%') {
            literal.push_str(&rest[..at]);
            let after = &rest[at + 1..];
            match command(after) {
                Some((command, len)) => {
                    if !literal.is_empty() {
                        parts.push(Part::Literal(std::mem::take(&mut literal)));
                    }
                    parts.push(Part::Operator(Operator::parse(command, headers)?));
                    rest = &after[len..];
                }
                // Not a command: a plain percent sign.
                None => {
                    literal.push('%');
                    rest = after;
                }
            }
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            parts.push(Part::Literal(literal));
        }
        Ok(Template(parts))
    }

    /// The only operator, when the template is exactly one (JSON prints it typed).
    fn single(&self) -> Option<&Operator> {
        match self.0.as_slice() {
            [Part::Operator(op)] => Some(op),
            _ => None,
        }
    }

    fn write_text(&self, record: &Record, omit_empty: bool, out: &mut String) {
        for part in &self.0 {
            match part {
                Part::Literal(text) => out.push_str(text),
                Part::Operator(op) => {
                    if op.write(record, out) == Printed::Missing && !omit_empty {
                        out.push('-');
                    }
                }
            }
        }
    }
}

/// The command at the start of `s` (just after a `%`): its text without the closing
/// `%`, and the length consumed including it. Envoy's grammar:
/// `NAME[(ARGS)][:MAX]%`, NAME in `[A-Z0-9_]`.
fn command(s: &str) -> Option<(&str, usize)> {
    let name_len = s
        .find(|c: char| !(c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'))
        .unwrap_or(s.len());
    if name_len == 0 {
        return None;
    }
    let mut end = name_len;
    if s[end..].starts_with('(') {
        end += s[end..].find(')')? + 1;
    }
    if s[end..].starts_with(':') {
        let digits = s[end + 1..]
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(s.len() - end - 1);
        end += 1 + digits;
    }
    s[end..].starts_with('%').then(|| (&s[..end], end + 1))
}

impl Operator {
    fn parse(command: &str, headers: &mut Headers) -> Result<Operator, String> {
        let bad_len = |max: &str| format!("%{command}%: bad length {max:?}");
        let (head, max_len) = match command.rfind(')').map_or_else(
            || command.split_once(':'),
            |close| {
                command[close + 1..]
                    .strip_prefix(':')
                    .map(|m| (&command[..=close], m))
            },
        ) {
            Some((head, max)) => (head, Some(max.parse().map_err(|_| bad_len(max))?)),
            None => (command, None),
        };
        let (name, args) = match head.split_once('(') {
            Some((name, args)) => (name, Some(args.trim_end_matches(')'))),
            None => (head, None),
        };
        let no_args = |op: Operator| match args {
            None => Ok(op),
            Some(_) => Err(format!("%{command}%: {name} takes no argument")),
        };
        match name {
            "START_TIME" => Ok(Operator::StartTime(match args {
                None | Some("") => TimeFormat::default(),
                Some(format) => {
                    TimeFormat::parse(format).map_err(|e| format!("%{command}%: {e}"))?
                }
            })),
            "REQ" | "RESP" => {
                let args =
                    args.ok_or_else(|| format!("%{command}%: {name} needs a header name"))?;
                let request = name == "REQ";
                let (first, second) = match args.split_once('?') {
                    Some((a, b)) => (a, Some(b)),
                    None => (args, None),
                };
                let mut lookup = |header: &str| {
                    lookup(header, request, headers).map_err(|e| format!("%{command}%: {e}"))
                };
                let op = HeaderOp {
                    header: lookup(first)?,
                    fallback: second.map(&mut lookup).transpose()?,
                    max_len,
                };
                Ok(if request {
                    Operator::Request(op)
                } else {
                    Operator::Response(op)
                })
            }
            "RESPONSE_CODE" => no_args(Operator::ResponseCode),
            "RESPONSE_FLAGS" => no_args(Operator::ResponseFlags),
            "RESPONSE_CODE_DETAILS" => no_args(Operator::ResponseCodeDetails),
            "BYTES_RECEIVED" => no_args(Operator::BytesReceived),
            "BYTES_SENT" => no_args(Operator::BytesSent),
            "DURATION" => no_args(Operator::Duration),
            "UPSTREAM_HOST" => no_args(Operator::UpstreamHost),
            "UPSTREAM_CLUSTER" | "UPSTREAM_CLUSTER_RAW" => no_args(Operator::UpstreamCluster),
            "ROUTE_NAME" => no_args(Operator::RouteName),
            "PROTOCOL" => no_args(Operator::Protocol),
            "DOWNSTREAM_LOCAL_ADDRESS" => no_args(Operator::DownstreamLocal { port: true }),
            "DOWNSTREAM_LOCAL_ADDRESS_WITHOUT_PORT" => {
                no_args(Operator::DownstreamLocal { port: false })
            }
            "DOWNSTREAM_REMOTE_ADDRESS" | "DOWNSTREAM_DIRECT_REMOTE_ADDRESS" => {
                no_args(Operator::DownstreamRemote { port: true })
            }
            "DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT"
            | "DOWNSTREAM_DIRECT_REMOTE_ADDRESS_WITHOUT_PORT" => {
                no_args(Operator::DownstreamRemote { port: false })
            }
            "HOSTNAME" => no_args(Operator::Hostname(hostname())),
            "UPSTREAM_LOCAL_ADDRESS"
            | "UPSTREAM_TRANSPORT_FAILURE_REASON"
            | "CONNECTION_TERMINATION_DETAILS"
            | "REQUESTED_SERVER_NAME"
            | "DOWNSTREAM_PEER_URI_SAN"
            | "DOWNSTREAM_LOCAL_URI_SAN"
            | "UPSTREAM_PEER_URI_SAN"
            | "DOWNSTREAM_TLS_VERSION"
            | "UPSTREAM_TLS_VERSION" => no_args(Operator::Unknown),
            _ => Err(format!("%{command}%: command {name} is not supported")),
        }
    }

    /// Prints the operator's value (nothing when missing) and says what it printed.
    fn write(&self, record: &Record, out: &mut String) -> Printed {
        // Writing to a String cannot fail.
        let number = |out: &mut String, n: u64| {
            decimal::push(out, n);
            Printed::Number
        };
        let text = |out: &mut String, s: Option<&str>| match s {
            Some(s) if !s.is_empty() => {
                out.push_str(s);
                Printed::Text
            }
            _ => Printed::Missing,
        };
        match self {
            Operator::StartTime(format) => {
                format.write(record.start, out);
                Printed::Text
            }
            Operator::Request(op) => op.write(record, &record.request_headers, out),
            Operator::Response(op) => op.write(record, &record.response_headers, out),
            Operator::ResponseCode => {
                number(out, record.status.map_or(0, |s| u64::from(s.as_u16())))
            }
            // Envoy prints `-` for no flags, in JSON too.
            Operator::ResponseFlags => {
                let _ = write!(out, "{}", record.flags);
                Printed::Text
            }
            Operator::ResponseCodeDetails => text(out, record.details.as_deref()),
            Operator::BytesReceived => number(out, record.bytes_received),
            Operator::BytesSent => number(out, record.bytes_sent),
            Operator::Duration => number(out, record.duration.as_millis() as u64),
            Operator::UpstreamHost => match record.upstream_host {
                Some(host) => {
                    decimal::push_address(out, host, true);
                    Printed::Text
                }
                None => Printed::Missing,
            },
            Operator::UpstreamCluster => text(out, record.upstream_cluster.as_deref()),
            Operator::RouteName => text(out, record.route_name.as_deref()),
            Operator::Protocol => text(out, record.protocol.map(protocol)),
            Operator::DownstreamLocal { port } => address(record.downstream_local, *port, out),
            Operator::DownstreamRemote { port } => address(record.downstream_remote, *port, out),
            Operator::Hostname(name) => text(out, Some(name)),
            Operator::Unknown => Printed::Missing,
        }
    }

    /// Whether the operator prints a number (JSON prints it unquoted).
    fn numeric(&self) -> bool {
        matches!(
            self,
            Operator::ResponseCode
                | Operator::BytesReceived
                | Operator::BytesSent
                | Operator::Duration
        )
    }
}

impl HeaderOp {
    fn write(
        &self,
        record: &Record,
        slots: &[Option<http::HeaderValue>],
        out: &mut String,
    ) -> Printed {
        let value = lookup_value(self.header, record, slots)
            .or_else(|| self.fallback.and_then(|f| lookup_value(f, record, slots)));
        match value {
            Some(v) if !v.is_empty() => {
                let v = match self.max_len {
                    Some(max) if v.len() > max => {
                        let mut end = max;
                        while !v.is_char_boundary(end) {
                            end -= 1;
                        }
                        &v[..end]
                    }
                    _ => v,
                };
                out.push_str(v);
                Printed::Text
            }
            _ => Printed::Missing,
        }
    }
}

fn lookup_value<'r>(
    lookup: Lookup,
    record: &'r Record,
    slots: &'r [Option<http::HeaderValue>],
) -> Option<&'r str> {
    match lookup {
        Lookup::Method => record.request.as_ref().map(|(m, _)| m.as_str()),
        Lookup::Path => record
            .request
            .as_ref()
            .and_then(|(_, uri)| uri.path_and_query())
            .map(|p| p.as_str()),
        Lookup::Authority(host) => record.authority(Some(host)),
        Lookup::Slot(slot) => slots.get(slot)?.as_ref()?.to_str().ok(),
    }
}

/// Where a header's value comes from; pseudo-headers exist for requests only.
fn lookup(header: &str, request: bool, headers: &mut Headers) -> Result<Lookup, String> {
    let lower = header.to_ascii_lowercase();
    Ok(match (lower.as_str(), request) {
        (":method", true) => Lookup::Method,
        (":path", true) => Lookup::Path,
        (":authority" | "host", true) => {
            Lookup::Authority(headers.request_slot(http::header::HOST))
        }
        (pseudo, _) if pseudo.starts_with(':') => {
            return Err(format!("pseudo-header {header:?} is not supported here"));
        }
        (name, _) => {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| format!("{header:?} is not a header name"))?;
            Lookup::Slot(if request {
                headers.request_slot(name)
            } else {
                headers.response_slot(name)
            })
        }
    })
}

fn address(address: std::net::SocketAddr, port: bool, out: &mut String) -> Printed {
    decimal::push_address(out, address, port);
    Printed::Text
}

/// `%PROTOCOL%` as Envoy prints it.
fn protocol(version: Version) -> &'static str {
    match version {
        Version::HTTP_10 => "HTTP/1.0",
        Version::HTTP_2 => "HTTP/2",
        Version::HTTP_3 => "HTTP/3",
        _ => "HTTP/1.1",
    }
}

fn hostname() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it
    // or truncates, and the last byte is never written.
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len() - 1) };
    if rc != 0 {
        return String::new();
    }
    let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..end]).into_owned()
}

impl Object {
    fn compile(dictionary: &Struct, headers: &mut Headers) -> Result<Object, String> {
        // Sorted: a protobuf Struct has no order, and output should not change from run
        // to run.
        let mut keys: Vec<&String> = dictionary.fields.keys().collect();
        keys.sort();
        keys.into_iter()
            .map(|key| {
                let entry = entry(&dictionary.fields[key], headers)
                    .map_err(|e| format!("json_format.{key}: {e}"))?;
                Ok((key.clone(), entry))
            })
            .collect::<Result<_, String>>()
            .map(Object)
    }

    fn write(&self, record: &Record, omit_empty: bool, out: &mut String) {
        out.push('{');
        let mut first = true;
        let mut scratch = String::new();
        for (key, entry) in &self.0 {
            let mark = out.len();
            if !first {
                out.push(',');
            }
            escape(key, out);
            out.push(':');
            let printed = match entry {
                Entry::Literal(json) => {
                    out.push_str(json);
                    Printed::Text
                }
                Entry::Object(object) => {
                    object.write(record, omit_empty, out);
                    Printed::Text
                }
                Entry::Template(template) => match template.single() {
                    Some(op) => {
                        scratch.clear();
                        let printed = op.write(record, &mut scratch);
                        match printed {
                            Printed::Missing => out.push_str("null"),
                            Printed::Number if op.numeric() => out.push_str(&scratch),
                            _ => escape(&scratch, out),
                        }
                        printed
                    }
                    None => {
                        scratch.clear();
                        template.write_text(record, omit_empty, &mut scratch);
                        escape(&scratch, out);
                        Printed::Text
                    }
                },
            };
            if omit_empty && printed == Printed::Missing {
                out.truncate(mark);
            } else {
                first = false;
            }
        }
        out.push('}');
    }
}

fn entry(value: &Value, headers: &mut Headers) -> Result<Entry, String> {
    Ok(match &value.kind {
        Some(value::Kind::StringValue(s)) => Entry::Template(Template::parse(s, headers)?),
        Some(value::Kind::StructValue(s)) => Entry::Object(Object::compile(s, headers)?),
        Some(value::Kind::NumberValue(n)) => Entry::Literal(
            serde_json::Number::from_f64(*n).map_or_else(|| "null".to_owned(), |n| n.to_string()),
        ),
        Some(value::Kind::BoolValue(b)) => Entry::Literal(b.to_string()),
        Some(value::Kind::NullValue(_)) | None => Entry::Literal("null".to_owned()),
        Some(value::Kind::ListValue(_)) => return Err("lists are not supported".into()),
    })
}

/// Appends `s` as a JSON string.
fn escape(s: &str, out: &mut String) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c < ' ' => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

#[cfg(test)]
mod tests;
