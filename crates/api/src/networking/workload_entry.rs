//! TODO-REPLACED-BY-OWNER

use serde::{Deserialize, Serialize};

use crate::validate::{Validate, Validator};

/// Placeholder.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct WorkloadEntry {}

impl Validate for WorkloadEntry {
    fn validate(&self, _v: &mut Validator<'_>) {}
}

/// Placeholder.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct WorkloadGroup {}

impl Validate for WorkloadGroup {
    fn validate(&self, _v: &mut Validator<'_>) {}
}
