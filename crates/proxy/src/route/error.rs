//! Why a route configuration was refused, and where.

use std::fmt;

/// A route configuration that Envoy would refuse, or that this proxy cannot honour, naming
/// the object, the field and the reason:
/// `route config "9080": virtual host "reviews": route 2: match.safe_regex: invalid regex "(": ...`.
///
/// Routes are counted from 0, as the `routes` list indexes them.
#[derive(Debug, thiserror::Error)]
#[error("{place}: {field}: {problem}")]
pub struct RouteError {
    place: String,
    field: String,
    problem: Problem,
}

impl RouteError {
    /// The object at fault: `route config "9080": virtual host "reviews": route 2`.
    pub fn place(&self) -> &str {
        &self.place
    }

    /// The field at fault, as a path of protobuf field names: `match.headers[1].string_match`.
    pub fn field(&self) -> &str {
        &self.field
    }

    /// What is wrong with the field.
    pub fn problem(&self) -> &Problem {
        &self.problem
    }
}

/// What is wrong with a field.
#[derive(Debug, thiserror::Error)]
pub enum Problem {
    /// A field that must be set is not.
    #[error("must be set")]
    Missing,
    /// Valid Envoy config this proxy does not implement; refused so that the proxy NACKs
    /// instead of routing differently from Envoy.
    #[error("not supported by this proxy")]
    Unsupported,
    /// A RE2 regex the `regex` crate cannot compile.
    #[error("invalid regex {pattern:?}: {}", one_line(source))]
    InvalidRegex {
        /// The regex as configured.
        pattern: String,
        /// Why it does not compile.
        source: Box<regex::Error>,
    },
    /// A regex substitution string that is not valid RE2 rewrite syntax for its pattern.
    #[error("invalid substitution {substitution:?}: {reason}")]
    InvalidSubstitution {
        /// The substitution as configured.
        substitution: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Not a valid HTTP header name.
    #[error("invalid header name {0:?}")]
    InvalidHeaderName(String),
    /// Not a valid HTTP header value (control characters, say).
    #[error("invalid header value {0:?}")]
    InvalidHeaderValue(String),
    /// Envoy does not let route config add, change or remove pseudo-headers or `host`.
    #[error("{0:?}: :-prefixed and host headers may not be modified")]
    ReservedHeader(String),
    /// A `%` that starts no command operator and is not escaped as `%%`.
    #[error("unescaped '%' at byte {0} (write %% for a literal %)")]
    UnescapedPercent(usize),
    /// An Envoy command operator (`%REQ(x)%`, `%START_TIME%`, ...); values are literal here.
    #[error("command operator {0} is not supported; values are literal (write %% for a literal %)")]
    UnsupportedOperator(String),
    /// Two virtual hosts claim the same domain.
    #[error("domain {domain:?} is also a domain of virtual host {other:?}")]
    DuplicateDomain {
        /// The domain, lower-cased as it is matched.
        domain: String,
        /// The virtual host that listed it first.
        other: String,
    },
    /// A virtual host lists the same domain twice.
    #[error("domain {0:?} is listed twice")]
    RepeatedDomain(String),
    /// The weights of weighted clusters sum to 0, so no cluster can be picked.
    #[error("the cluster weights sum to 0")]
    ZeroTotalWeight,
    /// The weights of weighted clusters sum to more than `u32::MAX`.
    #[error("the cluster weights sum to more than {}", u32::MAX)]
    TotalWeightOverflow,
    /// A direct response body larger than `max_direct_response_body_size_bytes`.
    #[error("body of {size} bytes exceeds max_direct_response_body_size_bytes ({max})")]
    BodyTooLarge {
        /// The body's size.
        size: usize,
        /// The route configuration's limit (Envoy's default: 4096).
        max: u32,
    },
    /// Any other invalid value, with the rule it breaks.
    #[error("{0}")]
    Invalid(String),
}

/// The gist of a regex error on one line: the `regex` crate draws the pattern and a caret
/// over several lines before saying what is wrong.
fn one_line(e: &regex::Error) -> String {
    let text = e.to_string();
    let last = text
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or_default();
    last.trim().trim_start_matches("error: ").to_owned()
}

impl Problem {
    /// This problem, found at `field`.
    pub(crate) fn at(self, field: impl Into<String>) -> Invalid {
        Invalid {
            field: field.into(),
            problem: self,
        }
    }

    /// An [`Problem::Invalid`] with the rule broken.
    pub(crate) fn invalid(rule: impl fmt::Display) -> Problem {
        Problem::Invalid(rule.to_string())
    }
}

/// Refuses the first of `fields` that is set (`(name, set)` pairs): config this proxy does
/// not implement, which it must NACK rather than ignore.
pub(crate) fn unsupported(fields: &[(&str, bool)]) -> Result<(), Invalid> {
    match fields.iter().find(|(_, set)| *set) {
        Some((field, _)) => Err(Problem::Unsupported.at(*field)),
        None => Ok(()),
    }
}

/// A problem at a field path, before it is known which object holds the field.
#[derive(Debug)]
pub(crate) struct Invalid {
    pub(crate) field: String,
    pub(crate) problem: Problem,
}

impl Invalid {
    /// The same problem seen from the parent message: `parent.field`.
    pub(crate) fn within(mut self, parent: &str) -> Invalid {
        self.field = if self.field.is_empty() {
            parent.to_owned()
        } else {
            format!("{parent}.{}", self.field)
        };
        self
    }

    /// The error, placed in the object that holds the field.
    pub(crate) fn placed(self, place: impl Into<String>) -> RouteError {
        RouteError {
            place: place.into(),
            field: self.field,
            problem: self.problem,
        }
    }
}

/// `within` for results.
pub(crate) trait Within<T> {
    /// Prefixes the error's field path with `parent`.
    fn within(self, parent: &str) -> Result<T, Invalid>;
}

impl<T> Within<T> for Result<T, Invalid> {
    fn within(self, parent: &str) -> Result<T, Invalid> {
        self.map_err(|e| e.within(parent))
    }
}
