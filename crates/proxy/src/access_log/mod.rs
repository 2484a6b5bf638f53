//! Access logs (`access_log` of the HTTP connection manager and the TCP proxy): one line
//! per request or connection, in Envoy's formats, to a file or the standard streams.
//!
//! Everything is compiled with the listener: formats into templates, filters into
//! predicates, destinations into writer handles. An exchange copies only the header
//! values its formats read; when it ends, each logger whose filter passes formats its
//! line and hands it to the destination's writer thread.

mod cel;
mod connection;
mod decimal;
mod exchange;
mod filter;
mod format;
mod record;
mod sink;
mod time;

use mizzen_xds::pb::envoy::config::accesslog::v3::{AccessLog as PbAccessLog, access_log};
use mizzen_xds::pb::envoy::extensions::access_loggers::file::v3::{FileAccessLog, file_access_log};
use mizzen_xds::pb::envoy::extensions::access_loggers::stream::v3::{
    StderrAccessLog, StdoutAccessLog, stderr_access_log, stdout_access_log,
};
use prost::Message;

pub use cel::Expression;
pub use connection::{Connection, Counted};
pub use exchange::{Details, Exchange, Observed};
pub use filter::{Comparison, Filter};
pub use format::{DEFAULT_FORMAT, Format};
pub use record::{Headers, Record};
pub use sink::{Destination, Sink};
pub use time::TimeFormat;

const FILE: &str = "type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog";
const STDOUT: &str =
    "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StdoutAccessLog";
const STDERR: &str =
    "type.googleapis.com/envoy.extensions.access_loggers.stream.v3.StderrAccessLog";

/// The access loggers of one connection manager or TCP proxy.
#[derive(Debug, Default)]
pub struct AccessLog {
    loggers: Vec<Logger>,
    /// The headers their formats read.
    headers: Headers,
}

/// One access logger: which exchanges, in which format, to where.
#[derive(Debug)]
struct Logger {
    filter: Option<Filter>,
    format: Format,
    sink: Sink,
}

/// An access log config Envoy would refuse, or this proxy cannot honour.
#[derive(Debug, thiserror::Error)]
#[error("access_log[{index}] {name:?}: {field}: {reason}")]
pub struct AccessLogError {
    /// The logger's position in the list.
    pub index: usize,
    /// The logger's name.
    pub name: String,
    /// The field at fault, within the logger.
    pub field: String,
    /// What is wrong with it.
    pub reason: String,
}

impl AccessLogError {
    /// Where the error is, from the list: `access_log[2].typed_config`.
    pub fn field_path(&self) -> String {
        format!("access_log[{}].{}", self.index, self.field)
    }
}

impl AccessLog {
    /// Compiles a list of access loggers.
    pub fn compile(raw: &[PbAccessLog]) -> Result<AccessLog, AccessLogError> {
        let mut headers = Headers::default();
        let loggers = raw
            .iter()
            .enumerate()
            .map(|(index, log)| {
                Logger::compile(log, &mut headers).map_err(|(field, reason)| AccessLogError {
                    index,
                    name: log.name.clone(),
                    field,
                    reason,
                })
            })
            .collect::<Result<_, _>>()?;
        Ok(AccessLog { loggers, headers })
    }

    /// Whether no logger is configured (exchanges need not be recorded).
    pub fn is_empty(&self) -> bool {
        self.loggers.is_empty()
    }

    /// The headers the formats read.
    pub fn headers(&self) -> &Headers {
        &self.headers
    }

    /// Writes `record` to every logger whose filter passes it.
    pub fn log(&self, record: &Record) {
        for logger in &self.loggers {
            if logger.filter.as_ref().is_none_or(|f| f.passes(record)) {
                // Istio's default line runs past 300 bytes: room for it in one allocation.
                let mut line = String::with_capacity(512);
                logger.format.write(record, &mut line);
                logger.sink.send(line);
            }
        }
    }
}

impl Logger {
    fn compile(raw: &PbAccessLog, headers: &mut Headers) -> Result<Logger, (String, String)> {
        let filter = raw
            .filter
            .as_ref()
            .map(|f| Filter::compile(f, headers))
            .transpose()
            .map_err(|e| ("filter".to_owned(), e))?;
        let Some(access_log::ConfigType::TypedConfig(any)) = &raw.config_type else {
            return Err(("typed_config".into(), "is missing".into()));
        };
        let field = |reason: String| ("typed_config".to_owned(), reason);
        let decode_error = |e: prost::DecodeError| field(format!("cannot decode: {e}"));
        let format_error = |e: String| field(format!("log_format: {e}"));
        let (destination, format) = match any.type_url.as_str() {
            FILE => {
                let file = FileAccessLog::decode(any.value.as_slice()).map_err(decode_error)?;
                if file.path.is_empty() {
                    return Err(field("path: is empty".into()));
                }
                let destination = match file.path.as_str() {
                    "/dev/stdout" => Destination::Stdout,
                    "/dev/stderr" => Destination::Stderr,
                    path => Destination::File(path.into()),
                };
                #[expect(deprecated, reason = "older configs still use format and json_format")]
                let format = match &file.access_log_format {
                    Some(file_access_log::AccessLogFormat::LogFormat(f)) => {
                        Format::compile(f, headers)
                    }
                    Some(file_access_log::AccessLogFormat::Format(text)) => {
                        Format::text(text, headers)
                    }
                    Some(
                        file_access_log::AccessLogFormat::JsonFormat(json)
                        | file_access_log::AccessLogFormat::TypedJsonFormat(json),
                    ) => Format::json(json, headers),
                    None => Ok(Format::envoy_default(headers)),
                };
                (destination, format.map_err(format_error)?)
            }
            STDOUT => {
                let raw = StdoutAccessLog::decode(any.value.as_slice()).map_err(decode_error)?;
                let format = match &raw.access_log_format {
                    Some(stdout_access_log::AccessLogFormat::LogFormat(f)) => {
                        Format::compile(f, headers)
                    }
                    None => Ok(Format::envoy_default(headers)),
                };
                (Destination::Stdout, format.map_err(format_error)?)
            }
            STDERR => {
                let raw = StderrAccessLog::decode(any.value.as_slice()).map_err(decode_error)?;
                let format = match &raw.access_log_format {
                    Some(stderr_access_log::AccessLogFormat::LogFormat(f)) => {
                        Format::compile(f, headers)
                    }
                    None => Ok(Format::envoy_default(headers)),
                };
                (Destination::Stderr, format.map_err(format_error)?)
            }
            other => return Err(field(format!("access logger {other:?} is not supported"))),
        };
        Ok(Logger {
            filter,
            format,
            sink: Sink::to(&destination),
        })
    }
}
