//! Rules that span objects: checked over a whole set (a directory, an `apply`) before it
//! is accepted, since each object alone may look fine.

use std::collections::HashMap;

use super::{Issue, Severity};
use crate::object::{Object, ObjectKey};

/// A problem with one object that only shows in the company of others.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SetIssue {
    /// Index of the offending object in the input slice.
    pub index: usize,
    /// The offending object.
    pub key: ObjectKey,
    /// What is wrong.
    pub issue: Issue,
}

/// Checks rules across `objects`. An object defined twice (same kind, namespace and name)
/// is a warning: applied together, the later definition silently replaces the earlier.
pub fn validate_set<'a>(objects: impl IntoIterator<Item = &'a Object>) -> Vec<SetIssue> {
    let mut issues = Vec::new();
    let mut first_seen: HashMap<ObjectKey, usize> = HashMap::new();
    for (index, object) in objects.into_iter().enumerate() {
        let key = object.key();
        if let Some(first) = first_seen.get(&key) {
            issues.push(SetIssue {
                index,
                issue: Issue {
                    severity: Severity::Warning,
                    path: "metadata.name".into(),
                    message: format!(
                        "Duplicate value: {key} is also defined by object #{}; the later definition wins",
                        first + 1
                    ),
                    finding: None,
                },
                key,
            });
        } else {
            first_seen.insert(key, index);
        }
    }
    issues
}
