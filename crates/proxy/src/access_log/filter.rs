//! Access log filters (`AccessLogFilter`): which exchanges a logger writes. The ones
//! Istio's configs use are supported: status code, duration, response flags, CEL
//! expressions (the Telemetry API's `filter.expression`), and their `and`/`or`
//! combinations; `not_health_check` passes everything (the proxy makes no health-check
//! requests of its own to exclude).

use mizzen_xds::pb::envoy::config::accesslog::v3::{
    AccessLogFilter, ComparisonFilter, ExtensionFilter, access_log_filter::FilterSpecifier,
    comparison_filter::Op, extension_filter::ConfigType,
};

use mizzen_xds::pb::envoy::extensions::access_loggers::filters::cel::v3::ExpressionFilter;
use prost::Message;

use super::cel::Expression;
use super::record::{Headers, Record};
use crate::flags::ResponseFlags;

/// The CEL filter's type URL.
const CEL_FILTER: &str =
    "type.googleapis.com/envoy.extensions.access_loggers.filters.cel.v3.ExpressionFilter";

/// A compiled access log filter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Filter {
    /// The response status compared with a value (0 when no response was sent).
    StatusCode(Comparison),
    /// The duration in milliseconds compared with a value.
    Duration(Comparison),
    /// Any of these flags set (any flag at all when empty).
    ResponseFlags(Option<ResponseFlags>),
    /// A CEL expression is true.
    Cel(Expression),
    /// Every filter passes.
    And(Vec<Filter>),
    /// Some filter passes.
    Or(Vec<Filter>),
    /// Always passes.
    Always,
}

/// `op value`, as in Envoy's `ComparisonFilter`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Comparison {
    op: Op,
    value: u64,
}

impl Comparison {
    fn compile(raw: Option<&ComparisonFilter>) -> Result<Comparison, String> {
        let raw = raw.ok_or("comparison is missing")?;
        let op =
            Op::try_from(raw.op).map_err(|_| format!("comparison.op {} is unknown", raw.op))?;
        let value = raw.value.as_ref().map_or(0, |v| u64::from(v.default_value));
        Ok(Comparison { op, value })
    }

    fn holds(self, actual: u64) -> bool {
        match self.op {
            Op::Eq => actual == self.value,
            Op::Ge => actual >= self.value,
            Op::Le => actual <= self.value,
            Op::Ne => actual != self.value,
        }
    }
}

impl Filter {
    /// Compiles a filter, registering the headers it reads in `headers`; errors name
    /// the field within it.
    pub fn compile(raw: &AccessLogFilter, headers: &mut Headers) -> Result<Filter, String> {
        let mut all = |filters: &[AccessLogFilter], field: &str| {
            filters
                .iter()
                .enumerate()
                .map(|(i, f)| {
                    Filter::compile(f, headers).map_err(|e| format!("{field}.filters[{i}].{e}"))
                })
                .collect::<Result<Vec<_>, _>>()
        };
        match &raw.filter_specifier {
            Some(FilterSpecifier::StatusCodeFilter(f)) => {
                Comparison::compile(f.comparison.as_ref())
                    .map(Filter::StatusCode)
                    .map_err(|e| format!("status_code_filter: {e}"))
            }
            Some(FilterSpecifier::DurationFilter(f)) => Comparison::compile(f.comparison.as_ref())
                .map(Filter::Duration)
                .map_err(|e| format!("duration_filter: {e}")),
            Some(FilterSpecifier::ResponseFlagFilter(f)) => {
                if f.flags.is_empty() {
                    return Ok(Filter::ResponseFlags(None));
                }
                let mut flags = ResponseFlags::NONE;
                for (i, name) in f.flags.iter().enumerate() {
                    let flag = ResponseFlags::by_name(name).ok_or_else(|| {
                        format!("response_flag_filter.flags[{i}]: {name:?} is not a response flag")
                    })?;
                    flags.insert(flag);
                }
                Ok(Filter::ResponseFlags(Some(flags)))
            }
            Some(FilterSpecifier::AndFilter(f)) => all(&f.filters, "and_filter").map(Filter::And),
            Some(FilterSpecifier::OrFilter(f)) => all(&f.filters, "or_filter").map(Filter::Or),
            Some(FilterSpecifier::NotHealthCheckFilter(_)) => Ok(Filter::Always),
            Some(FilterSpecifier::ExtensionFilter(extension)) => cel(extension, headers)
                .map(Filter::Cel)
                .map_err(|e| format!("extension_filter.{e}")),
            Some(other) => Err(format!("{}: not supported", filter_name(other))),
            None => Err("filter_specifier: is missing".into()),
        }
    }

    /// Whether `record` is logged.
    pub fn passes(&self, record: &Record) -> bool {
        match self {
            Filter::StatusCode(c) => c.holds(record.status.map_or(0, |s| u64::from(s.as_u16()))),
            Filter::Duration(c) => c.holds(record.duration.as_millis() as u64),
            Filter::ResponseFlags(None) => !record.flags.is_empty(),
            Filter::ResponseFlags(Some(flags)) => record.flags.intersects(*flags),
            Filter::And(filters) => filters.iter().all(|f| f.passes(record)),
            Filter::Or(filters) => filters.iter().any(|f| f.passes(record)),
            Filter::Cel(expression) => expression.passes(record),
            Filter::Always => true,
        }
    }
}

/// The CEL filter of an `extension_filter`; errors name the field within it.
fn cel(extension: &ExtensionFilter, headers: &mut Headers) -> Result<Expression, String> {
    let Some(ConfigType::TypedConfig(any)) = &extension.config_type else {
        return Err("typed_config: is missing".into());
    };
    if any.type_url != CEL_FILTER {
        return Err(format!(
            "typed_config: extension filter {:?} ({}) is not supported; expected {CEL_FILTER}",
            extension.name, any.type_url
        ));
    }
    let raw = ExpressionFilter::decode(any.value.as_slice())
        .map_err(|e| format!("typed_config: cannot decode: {e}"))?;
    Expression::compile(&raw.expression, headers)
        .map_err(|reason| format!("typed_config.expression: {:?}: {reason}", raw.expression))
}

fn filter_name(specifier: &FilterSpecifier) -> &'static str {
    match specifier {
        FilterSpecifier::TraceableFilter(_) => "traceable_filter",
        FilterSpecifier::RuntimeFilter(_) => "runtime_filter",
        FilterSpecifier::HeaderFilter(_) => "header_filter",
        FilterSpecifier::GrpcStatusFilter(_) => "grpc_status_filter",
        FilterSpecifier::ExtensionFilter(_) => "extension_filter",
        FilterSpecifier::MetadataFilter(_) => "metadata_filter",
        FilterSpecifier::LogTypeFilter(_) => "log_type_filter",
        FilterSpecifier::StatusCodeFilter(_) => "status_code_filter",
        FilterSpecifier::DurationFilter(_) => "duration_filter",
        FilterSpecifier::NotHealthCheckFilter(_) => "not_health_check_filter",
        FilterSpecifier::AndFilter(_) => "and_filter",
        FilterSpecifier::OrFilter(_) => "or_filter",
        FilterSpecifier::ResponseFlagFilter(_) => "response_flag_filter",
    }
}
