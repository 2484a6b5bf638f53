//! TODO-REPLACED-BY-OWNER

use serde::{Deserialize, Serialize};

use crate::validate::{Validate, Validator};

/// Placeholder.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct Sidecar {}

impl Validate for Sidecar {
    fn validate(&self, _v: &mut Validator<'_>) {}
}
