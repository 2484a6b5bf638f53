//! TODO-REPLACED-BY-OWNER

use serde::{Deserialize, Serialize};

use crate::validate::{Validate, Validator};

/// Placeholder.
#[derive(Debug, Clone, PartialEq, Default, Serialize, Deserialize)]
pub struct WasmPlugin {}

impl Validate for WasmPlugin {
    fn validate(&self, _v: &mut Validator<'_>) {}
}
