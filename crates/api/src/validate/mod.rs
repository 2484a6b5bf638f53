//! Validation equivalent to Istio's admission webhook: a pure function over one object
//! ([`Validate`]) plus a pass over a whole set for the rules that span objects ([`validate_set`]).

mod common;
mod regex;
mod schema;
mod set;

pub use common::*;
pub use regex::{check_regex, regex_error};
pub use schema::*;
pub use set::{SetIssue, validate_set};

use std::fmt;

use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;

/// How serious a finding is: errors reject the object, warnings only inform.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Severity {
    /// The object is refused.
    Error,
    /// The object is accepted, but probably not what the author meant.
    Warning,
}

/// One finding about one field of an object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    /// Error or warning.
    pub severity: Severity,
    /// Path of the field, e.g. `spec.http[0].route[1].weight`; empty for the whole object.
    pub path: String,
    /// Why the value is wrong, in Istio's words where Istio has some.
    pub message: String,
    /// What the warning means to the analyzers, when they report it under a message type
    /// of its own rather than as a schema warning.
    pub finding: Option<Finding>,
}

/// A warning with a meaning of its own for configuration analysis (Istio's
/// `AnalysisAwareError`): reported by `mizzen analyze` under its own code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Finding {
    /// A VirtualService rule no request can reach (IST0130).
    UnreachableRule {
        /// The rule: `"name"` or `#index`.
        rule: String,
        /// Why it is unreachable.
        reason: String,
    },
    /// A VirtualService match that an earlier match already takes (IST0131).
    IneffectiveMatch {
        /// The rule: `"name"` or `#index`.
        rule: String,
        /// The match: `"name"` or `#index`, with its prefix when that is what overlaps.
        matched: String,
        /// The earlier rule (or match) that takes its requests.
        earlier: String,
    },
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Finding::UnreachableRule { rule, reason } => {
                write!(f, "virtualService rule {rule} not used ({reason})")
            }
            Finding::IneffectiveMatch {
                rule,
                matched,
                earlier,
            } => write!(
                f,
                "virtualService rule {rule} match {matched} is not used (duplicate/overlapping match in rule {earlier})"
            ),
        }
    }
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// Something that can check itself, reporting problems to a [`Validator`].
pub trait Validate {
    /// Reports every problem in `self` at the validator's current path.
    fn validate(&self, v: &mut Validator<'_>);
}

/// Walks an object, tracking the field path, and collects [`Issue`]s.
pub struct Validator<'a> {
    meta: &'a ObjectMeta,
    path: String,
    issues: Vec<Issue>,
}

impl<'a> Validator<'a> {
    /// A validator for the object with metadata `meta`, starting at the object's root.
    pub fn new(meta: &'a ObjectMeta) -> Self {
        Self {
            meta,
            path: String::new(),
            issues: Vec::new(),
        }
    }

    /// The metadata of the object being validated.
    pub fn meta(&self) -> &'a ObjectMeta {
        self.meta
    }

    /// The object's namespace, `default` when unset.
    pub fn namespace(&self) -> &'a str {
        self.meta.namespace.as_deref().unwrap_or("default")
    }

    /// The current field path.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// Runs `f` with `.name` appended to the path.
    pub fn field<R>(&mut self, name: &str, f: impl FnOnce(&mut Self) -> R) -> R {
        let len = self.path.len();
        if !self.path.is_empty() {
            self.path.push('.');
        }
        self.path.push_str(name);
        let r = f(self);
        self.path.truncate(len);
        r
    }

    /// Runs `f` with `[index]` appended to the path.
    pub fn index<R>(&mut self, index: usize, f: impl FnOnce(&mut Self) -> R) -> R {
        self.suffixed(format_args!("[{index}]"), f)
    }

    /// Runs `f` with `[key]` appended to the path (for map entries).
    pub fn key<R>(&mut self, key: &str, f: impl FnOnce(&mut Self) -> R) -> R {
        self.suffixed(format_args!("[{key}]"), f)
    }

    /// Validates every element of the list field `name`, each at `name[i]`.
    pub fn each<T>(&mut self, name: &str, items: &[T], mut f: impl FnMut(&mut Self, &T)) {
        self.field(name, |v| {
            for (i, item) in items.iter().enumerate() {
                v.index(i, |v| f(v, item));
            }
        });
    }

    /// Validates `value` at the field `name`.
    pub fn check<T: Validate + ?Sized>(&mut self, name: &str, value: &T) {
        self.field(name, |v| value.validate(v));
    }

    /// Validates `value` at the field `name` when it is present.
    pub fn check_opt<T: Validate>(&mut self, name: &str, value: &Option<T>) {
        if let Some(value) = value {
            self.check(name, value);
        }
    }

    /// Reports an error at the current path.
    pub fn error(&mut self, message: impl fmt::Display) {
        self.push(Severity::Error, message.to_string());
    }

    /// Reports a warning at the current path.
    pub fn warn(&mut self, message: impl fmt::Display) {
        self.push(Severity::Warning, message.to_string());
    }

    /// Reports a warning the analyzers report under a code of its own.
    pub fn warn_finding(&mut self, finding: Finding) {
        self.issues.push(Issue {
            severity: Severity::Warning,
            path: self.path.clone(),
            message: finding.to_string(),
            finding: Some(finding),
        });
    }

    /// Reports an error at the child field `name`.
    pub fn error_at(&mut self, name: &str, message: impl fmt::Display) {
        self.field(name, |v| v.error(message));
    }

    /// Reports a warning at the child field `name`.
    pub fn warn_at(&mut self, name: &str, message: impl fmt::Display) {
        self.field(name, |v| v.warn(message));
    }

    /// Reports that the child field `name` must be set (`Required value`, as Kubernetes says).
    pub fn required(&mut self, name: &str) {
        self.error_at(name, "Required value");
    }

    /// True when no error has been reported so far.
    pub fn is_clean(&self) -> bool {
        self.issues.iter().all(|i| i.severity != Severity::Error)
    }

    /// The findings, in the order they were reported.
    pub fn into_issues(self) -> Vec<Issue> {
        self.issues
    }

    fn suffixed<R>(&mut self, suffix: fmt::Arguments<'_>, f: impl FnOnce(&mut Self) -> R) -> R {
        use fmt::Write;
        let len = self.path.len();
        let _ = self.path.write_fmt(suffix);
        let r = f(self);
        self.path.truncate(len);
        r
    }

    fn push(&mut self, severity: Severity, message: String) {
        self.issues.push(Issue {
            severity,
            path: self.path.clone(),
            message,
            finding: None,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_nest_and_unwind() {
        let meta = ObjectMeta::default();
        let mut v = Validator::new(&meta);
        v.field("spec", |v| {
            v.each("http", &[1, 2], |v, n| {
                if *n == 2 {
                    v.field("route", |v| v.index(0, |v| v.error_at("weight", "bad")));
                }
            });
            v.key("80", |v| v.warn("odd"));
            v.required("hosts");
        });
        let shown: Vec<String> = v.into_issues().iter().map(|i| i.to_string()).collect();
        assert_eq!(
            shown,
            [
                "spec.http[1].route[0].weight: bad",
                "spec[80]: odd",
                "spec.hosts: Required value"
            ]
        );
    }
}
